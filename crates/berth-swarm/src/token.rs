//! Swarm join tokens in Docker's format: `SWMTKN-1-<root CA digest>-<secret>`, both parts
//! base36; the digest pins the root CA a joiner downloads, the secret admits it.

use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "SWMTKN";
const VERSION: &str = "1";
/// Base36 width of a 256-bit digest.
const DIGEST_CHARS: usize = 50;
/// Base36 width of a 128-bit secret.
const SECRET_CHARS: usize = 25;
const SECRET_BYTES: usize = 16;

/// A join token that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid join token")]
    Malformed,
    #[error("unrecognized join token version {0:?}")]
    Version(String),
    #[error("invalid join token: the root CA digest is not a base36 number of {DIGEST_CHARS} characters")]
    Digest,
    #[error("invalid join token: the secret is not a base36 number of {SECRET_CHARS} characters")]
    Secret,
    /// The token's digest, hex, as swarmkit shows the one it expected.
    #[error("remote CA does not match fingerprint. Expected: {0}")]
    RootMismatch(String),
    #[error("no randomness available for a join token secret")]
    Random,
}

/// The parts of a join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the root CA certificate's PEM.
    pub ca_digest: [u8; 32],
    /// The secret that admits the joiner as a worker or as a manager.
    pub secret: [u8; SECRET_BYTES],
}

impl JoinToken {
    /// A fresh token for the root CA with digest `ca_digest` (see `RootCa::digest`). Workers
    /// and managers each get their own, so a role's token is just a separate call.
    pub fn generate(ca_digest: &[u8; 32]) -> Result<JoinToken, TokenError> {
        let mut secret = [0u8; SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| TokenError::Random)?;
        Ok(JoinToken {
            ca_digest: *ca_digest,
            secret,
        })
    }

    /// Parses `SWMTKN-1-<digest>-<secret>`.
    pub fn parse(token: &str) -> Result<JoinToken, TokenError> {
        let parts: Vec<&str> = token.trim().split('-').collect();
        if parts.len() != 4 || parts[0] != PREFIX {
            return Err(TokenError::Malformed);
        }
        if parts[1] != VERSION {
            return Err(TokenError::Version(parts[1].to_string()));
        }
        if parts[2].len() != DIGEST_CHARS {
            return Err(TokenError::Digest);
        }
        if parts[3].len() != SECRET_CHARS {
            return Err(TokenError::Secret);
        }
        let mut ca_digest = [0u8; 32];
        from_base36(parts[2], &mut ca_digest).ok_or(TokenError::Digest)?;
        let mut secret = [0u8; SECRET_BYTES];
        from_base36(parts[3], &mut secret).ok_or(TokenError::Secret)?;
        Ok(JoinToken { ca_digest, secret })
    }

    /// Whether this token pins the root CA whose digest is `root_digest`.
    pub fn check_root(&self, root_digest: &[u8; 32]) -> Result<(), TokenError> {
        if ct_eq(&self.ca_digest, root_digest) {
            Ok(())
        } else {
            Err(TokenError::RootMismatch(crate::ids::hex(&self.ca_digest)))
        }
    }

    /// Whether both tokens carry the same secret and root digest, compared in constant time.
    pub fn matches(&self, other: &JoinToken) -> bool {
        // Both comparisons always run, so timing says nothing about which part differed.
        let secret = ct_eq(&self.secret, &other.secret);
        let digest = ct_eq(&self.ca_digest, &other.ca_digest);
        secret & digest
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}-{VERSION}-{}-{}",
            crate::ids::to_base36(&self.ca_digest, DIGEST_CHARS),
            crate::ids::to_base36(&self.secret, SECRET_CHARS)
        )
    }
}

/// A new token secret, as the cluster record keeps it (hex of 16 random bytes).
pub fn new_secret() -> String {
    crate::ids::hex(&crate::ids::random_bytes::<16>())
}

/// The join token for a stored secret (hex) under `root`.
pub fn token_string(root: &crate::ca::RootCa, secret_hex: &str) -> String {
    let mut secret = [0u8; 16];
    if let Some(raw) = crate::ids::unhex_vec(secret_hex) {
        for (s, r) in secret.iter_mut().zip(raw) {
            *s = r;
        }
    }
    JoinToken {
        ca_digest: root.digest(),
        secret,
    }
    .to_string()
}

/// Compares two byte strings without branching on their contents.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses base36 (either case) into the big-endian `out`; None on a bad digit or overflow.
fn from_base36(s: &str, out: &mut [u8]) -> Option<()> {
    out.fill(0);
    for c in s.chars() {
        let mut carry = c.to_digit(36)?;
        for byte in out.iter_mut().rev() {
            let cur = u32::from(*byte) * 36 + carry;
            *byte = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::pem_digest;

    #[test]
    fn generate_format_and_parse_round_trip() {
        let digest = pem_digest("-----BEGIN CERTIFICATE-----\nroot\n");
        let token = JoinToken::generate(&digest).unwrap();
        let text = token.to_string();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.len(), 4, "{text}");
        assert_eq!(&parts[..2], ["SWMTKN", "1"]);
        assert_eq!(parts[2].len(), 50);
        assert_eq!(parts[3].len(), 25);
        assert!(text[9..]
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_lowercase()));
        let back = JoinToken::parse(&text).unwrap();
        assert_eq!(back, token);
        assert!(back.matches(&token));
        back.check_root(&digest).unwrap();
        // Uppercase parses to the same token, as Go's big.Int does.
        let upper = format!("SWMTKN-1-{}-{}", parts[2].to_uppercase(), parts[3]);
        assert_eq!(JoinToken::parse(&upper).unwrap(), token);
        // A second token for the same root has another secret.
        let other = JoinToken::generate(&digest).unwrap();
        assert!(!other.matches(&token));
    }

    #[test]
    fn base36_known_values() {
        assert_eq!(crate::ids::to_base36(&[0, 0], 3), "000");
        assert_eq!(crate::ids::to_base36(&[0, 35], 1), "z");
        assert_eq!(crate::ids::to_base36(&[0, 36], 1), "10");
        assert_eq!(crate::ids::to_base36(&[0xff; 32], 50).len(), 50);
        assert_eq!(crate::ids::to_base36(&[0xff; 16], 25).len(), 25);
        let mut out = [0u8; 2];
        from_base36("10", &mut out).unwrap();
        assert_eq!(out, [0, 36]);
        // 2^16 does not fit two bytes.
        assert!(from_base36("1ekg", &mut out).is_none());
    }

    #[test]
    fn malformed_and_mismatched_tokens_refused() {
        let digest = [7u8; 32];
        let good = JoinToken::generate(&digest).unwrap().to_string();
        assert_eq!(JoinToken::parse(""), Err(TokenError::Malformed));
        assert_eq!(JoinToken::parse("SWMTKN-1-abc"), Err(TokenError::Malformed));
        assert_eq!(
            JoinToken::parse(&good.replacen("SWMTKN", "SWMTKX", 1)),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            JoinToken::parse(&good.replacen("-1-", "-2-", 1)),
            Err(TokenError::Version("2".into()))
        );
        // A digest that is too long, has a bad digit, or overflows 256 bits.
        let parts: Vec<&str> = good.split('-').collect();
        let with_digest = |d: &str| format!("SWMTKN-1-{d}-{}", parts[3]);
        assert_eq!(
            JoinToken::parse(&with_digest(&format!("{}0", parts[2]))),
            Err(TokenError::Digest)
        );
        assert_eq!(
            JoinToken::parse(&with_digest(&format!("{}!", &parts[2][1..]))),
            Err(TokenError::Digest)
        );
        assert_eq!(
            JoinToken::parse(&with_digest(&"z".repeat(50))),
            Err(TokenError::Digest)
        );
        assert_eq!(
            JoinToken::parse(&format!("SWMTKN-1-{}-{}", parts[2], "z".repeat(25))),
            Err(TokenError::Secret)
        );
        // A tampered digest parses but no longer pins the root.
        let mut tampered: Vec<char> = parts[2].chars().collect();
        tampered[10] = if tampered[10] == 'a' { 'b' } else { 'a' };
        let tampered: String = tampered.into_iter().collect();
        let token = JoinToken::parse(&with_digest(&tampered)).unwrap();
        let err = token.check_root(&digest).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "remote CA does not match fingerprint. Expected: {}",
                crate::ids::hex(&token.ca_digest)
            )
        );
        assert_eq!(
            JoinToken::parse(&good).unwrap().check_root(&[8u8; 32]),
            Err(TokenError::RootMismatch("07".repeat(32)))
        );
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"abc", b"abc"));
    }
}
