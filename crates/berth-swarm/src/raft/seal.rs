//! AES-256-GCM sealing of every Raft record written to disk: a fresh random 96-bit nonce per
//! record, the record's kind and index bound in as associated data.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of the authentication tag appended to every sealed payload.
pub(crate) const TAG_LEN: usize = 16;

/// Seals and opens records under the node's data encryption key.
pub(crate) struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

/// Associated data of a record: its kind and index, so that a record cannot be replayed
/// under another kind or at another position without failing authentication.
fn aad(kind: u8, index: u64) -> [u8; 9] {
    let mut ad = [0u8; 9];
    ad[0] = kind;
    ad[1..].copy_from_slice(&index.to_le_bytes());
    ad
}

impl Sealer {
    pub(crate) fn new(dek: &[u8; 32]) -> Result<Sealer, String> {
        let key = UnboundKey::new(&AES_256_GCM, dek)
            .map_err(|_| "the raft data encryption key is not a valid AES-256 key".to_string())?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Fresh random bytes from the system generator.
    pub(crate) fn random(&self, buf: &mut [u8]) -> Result<(), String> {
        self.rng
            .fill(buf)
            .map_err(|_| "the system random generator failed".to_string())
    }

    /// Returns the nonce and the ciphertext with its tag.
    pub(crate) fn seal(
        &self,
        kind: u8,
        index: u64,
        plain: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random(&mut nonce)?;
        let mut buf = Vec::with_capacity(plain.len() + TAG_LEN);
        buf.extend_from_slice(plain);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind, index)),
                &mut buf,
            )
            .map_err(|_| "sealing a raft record failed".to_string())?;
        Ok((nonce, buf))
    }

    /// Opens a sealed payload; `None` when authentication fails (wrong key or damaged data).
    pub(crate) fn open(
        &self,
        kind: u8,
        index: u64,
        nonce: [u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind, index)),
                &mut buf,
            )
            .ok()?;
        let len = plain.len();
        buf.truncate(len);
        Some(buf)
    }
}
