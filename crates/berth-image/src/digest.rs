//! sha256 digests: formatting, validation, and readers/writers that hash what passes through.

use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};

pub(crate) const SHA256_PREFIX: &str = "sha256:";

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", hex(&Sha256::digest(bytes)))
}

/// True for exactly 64 lowercase hex characters.
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for 1..=64 lowercase hex characters.
pub(crate) fn is_hex_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex part of a valid `sha256:<64 hex>` digest.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix(SHA256_PREFIX).filter(|h| is_hex64(h))
}

/// Incremental sha256 with a byte count.
#[derive(Default, Clone)]
pub(crate) struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub(crate) fn update(&mut self, buf: &[u8]) {
        self.sha.update(buf);
        self.len += buf.len() as u64;
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// `(sha256:<hex>, byte count)`.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("{SHA256_PREFIX}{}", hex(&self.sha.finalize())),
            self.len,
        )
    }
}

/// A reader that hashes every byte read through it.
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Hasher::default(),
        }
    }

    /// Reads the rest of the stream (tar padding after the end-of-archive marker counts
    /// in a diff id) and returns `(digest, size)`.
    pub(crate) fn drain_and_finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that copies every byte read through it into `sink`.
pub(crate) struct TeeReader<'a, R, W> {
    inner: R,
    sink: &'a mut W,
}

impl<'a, R: Read, W: Write> TeeReader<'a, R, W> {
    pub(crate) fn new(inner: R, sink: &'a mut W) -> Self {
        TeeReader { inner, sink }
    }
}

impl<R: Read, W: Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Hasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish().0, sha256_digest(b"abc"));
        assert!(is_hex64(&"a".repeat(64)));
        assert!(!is_hex64(&"A".repeat(64)));
        assert!(is_hex_prefix("0f"));
        assert!(!is_hex_prefix(""));
        assert!(sha256_hex("sha256:xyz").is_none());
    }

    #[test]
    fn hash_reader_counts_everything() {
        let data = vec![7u8; 5000];
        let mut r = HashReader::new(&data[..]);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.drain_and_finish().unwrap();
        assert_eq!(n, 5000);
        assert_eq!(d, sha256_digest(&data));
    }
}
