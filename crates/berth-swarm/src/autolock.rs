//! Autolock: the unlock key (Docker's `SWMKEY-1-…`) that seals each manager's Raft data key
//! and TLS node key on its disk, so that a restarted manager stays locked until `swarm unlock`.

use crate::error::{Error, Result};
use crate::raft::seal::Sealer;
use base64::Engine;

const PREFIX: &str = "SWMKEY-1-";
/// The sealed record's kind (associated data): a data key, never a Raft record.
const KIND_DEK: u8 = 0xD0;
/// The sealed record's kind for a node's TLS private key.
const KIND_NODE_KEY: u8 = 0xD1;
/// How a sealed node key file begins (a PEM key begins with `-----BEGIN`).
const SEALED_KEY_PREFIX: &str = "berth-sealed-node-key:";
/// dockerd's answer to a wrong or malformed key.
pub const INVALID_KEY: &str = "swarm could not be unlocked: invalid key provided";

/// A new unlock key, as the CLI shows it.
pub fn new_key() -> String {
    let key = crate::ids::random_bytes::<32>();
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(key)
    )
}

fn parse(key: &str) -> Result<[u8; 32]> {
    let body = key
        .trim()
        .strip_prefix(PREFIX)
        .ok_or_else(|| Error::invalid(INVALID_KEY))?;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(body)
        .map_err(|_| Error::invalid(INVALID_KEY))?;
    raw.try_into().map_err(|_| Error::invalid(INVALID_KEY))
}

/// The data key sealed under the unlock key (hex of nonce and ciphertext).
pub fn seal_dek(key: &str, dek: &[u8; 32]) -> Result<String> {
    let sealer = Sealer::new(&parse(key)?).map_err(Error::internal)?;
    let (nonce, sealed) = sealer.seal(KIND_DEK, 0, dek).map_err(Error::internal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(crate::ids::hex(&out))
}

/// The data key [`seal_dek`] sealed; Docker's invalid-key error when `key` is not the one.
pub fn open_dek(key: &str, sealed: &str) -> Result<[u8; 32]> {
    let sealer = Sealer::new(&parse(key)?).map_err(Error::internal)?;
    let raw = crate::ids::unhex_vec(sealed)
        .filter(|r| r.len() > ring::aead::NONCE_LEN)
        .ok_or_else(|| Error::internal("the sealed raft data key is damaged"))?;
    let (nonce, body) = raw.split_at(ring::aead::NONCE_LEN);
    let nonce: [u8; ring::aead::NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| Error::internal("the sealed raft data key is damaged"))?;
    let plain = sealer
        .open(KIND_DEK, 0, nonce, body)
        .ok_or_else(|| Error::invalid(INVALID_KEY))?;
    plain
        .try_into()
        .map_err(|_| Error::internal("the sealed raft data key is damaged"))
}

/// The node's TLS private key (PEM) sealed under the unlock key, as its key file holds it.
pub fn seal_node_key(key: &str, key_pem: &str) -> Result<String> {
    let sealer = Sealer::new(&parse(key)?).map_err(Error::internal)?;
    let (nonce, sealed) = sealer
        .seal(KIND_NODE_KEY, 0, key_pem.as_bytes())
        .map_err(Error::internal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(format!("{SEALED_KEY_PREFIX}{}\n", crate::ids::hex(&out)))
}

/// Whether a key file's text is a key sealed by [`seal_node_key`].
pub fn is_sealed_node_key(text: &str) -> bool {
    text.trim_start().starts_with(SEALED_KEY_PREFIX)
}

/// The PEM key a key file holds: opened with `key` when sealed, as is otherwise. Docker's
/// invalid-key error when the unlock key is not the one it was sealed under.
pub fn open_node_key(key: &str, text: &str) -> Result<String> {
    let Some(body) = text.trim().strip_prefix(SEALED_KEY_PREFIX) else {
        return Ok(text.to_string());
    };
    let damaged = || Error::internal("the sealed swarm node key is damaged");
    let sealer = Sealer::new(&parse(key)?).map_err(Error::internal)?;
    let raw = crate::ids::unhex_vec(body)
        .filter(|r| r.len() > ring::aead::NONCE_LEN)
        .ok_or_else(damaged)?;
    let (nonce, sealed) = raw.split_at(ring::aead::NONCE_LEN);
    let nonce: [u8; ring::aead::NONCE_LEN] = nonce.try_into().map_err(|_| damaged())?;
    let plain = sealer
        .open(KIND_NODE_KEY, 0, nonce, sealed)
        .ok_or_else(|| Error::invalid(INVALID_KEY))?;
    String::from_utf8(plain).map_err(|_| damaged())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_dockers_and_seal_the_data_key() {
        let key = new_key();
        assert!(key.starts_with("SWMKEY-1-") && key.len() == 9 + 43, "{key}");
        let dek = [9u8; 32];
        let sealed = seal_dek(&key, &dek).unwrap();
        assert_eq!(open_dek(&key, &sealed).unwrap(), dek);
        assert_eq!(open_dek(&format!(" {key}\n"), &sealed).unwrap(), dek);
        let other = new_key();
        assert_eq!(open_dek(&other, &sealed).unwrap_err().message, INVALID_KEY);
        for bad in ["", "SWMKEY-1-", "SWMKEY-2-abc", "SWMKEY-1-!!!!", &key[..20]] {
            assert_eq!(
                open_dek(bad, &sealed).unwrap_err().message,
                INVALID_KEY,
                "{bad}"
            );
        }
    }

    #[test]
    fn node_keys_seal_under_the_unlock_key() {
        let key = new_key();
        let pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let sealed = seal_node_key(&key, pem).unwrap();
        assert!(is_sealed_node_key(&sealed), "{sealed}");
        assert!(!sealed.contains("PRIVATE KEY"), "{sealed}");
        assert!(!is_sealed_node_key(pem));
        assert_eq!(open_node_key(&key, &sealed).unwrap(), pem);
        // A PEM key passes through; a wrong key or a damaged file is refused.
        assert_eq!(open_node_key(&key, pem).unwrap(), pem);
        assert_eq!(
            open_node_key(&new_key(), &sealed).unwrap_err().message,
            INVALID_KEY
        );
        let damaged = format!("{}00", sealed.trim());
        assert!(open_node_key(&key, &damaged).is_err());
        assert!(open_node_key(&key, "berth-sealed-node-key:zz").is_err());
    }
}
