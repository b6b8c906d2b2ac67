//! Swarm object identifiers as Docker makes them (25 characters of base 36 from 128 random
//! bits) and the random numbers the cluster needs (raft ids, secrets).

use ring::rand::{SecureRandom, SystemRandom};

/// 16 random bytes from the system's generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system generator only fails when the kernel cannot give randomness at all; a zeroed
    // buffer would be a predictable id, so such a failure is fatal for the cluster's safety.
    if SystemRandom::new().fill(&mut b).is_err() {
        panic!("the kernel's random number generator failed");
    }
    b
}

/// A new object id: 25 base-36 characters, as swarmkit's identity.NewID.
pub fn new_id() -> String {
    crate::token::to_base36(&random_bytes::<16>(), 25)
}

/// A raft member id: random, non-zero, never reused (ids of removed members stay retired).
pub fn new_raft_id() -> u64 {
    loop {
        let v = u64::from_be_bytes(random_bytes::<8>());
        if v != 0 {
            return v;
        }
    }
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex; None for anything else.
pub fn unhex_vec(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

/// A 32-byte key from 64 hex digits.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    unhex_vec(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_25_chars_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 25);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_ne!(a, b);
        assert_ne!(new_raft_id(), 0);
    }
}
