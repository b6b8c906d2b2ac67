//! Autolock: the unlock key (Docker's `SWMKEY-1-…`) that seals each manager's Raft data key
//! on its disk, so that a restarted manager stays locked until `swarm unlock` gives the key.

use crate::error::{Error, Result};
use crate::raft::seal::Sealer;
use base64::Engine;

const PREFIX: &str = "SWMKEY-1-";
/// The sealed record's kind (associated data): a data key, never a Raft record.
const KIND_DEK: u8 = 0xD0;
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
}
