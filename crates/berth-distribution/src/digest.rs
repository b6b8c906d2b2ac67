//! Content digests (`sha256:<hex>`, `sha512:<hex>`): validation, hashing, and `DigestVerifier`,
//! a stream wrapper that checks a blob's digest and size while it is consumed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use sha2::{Digest as _, Sha256, Sha512};

use crate::Error;

/// A digest algorithm the client can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Check that `digest` is `sha256:` + 64 or `sha512:` + 128 lower-case hex digits; return its
/// algorithm.
pub fn parse_digest(digest: &str) -> Result<Algorithm, Error> {
    let invalid = |reason| Error::InvalidInput {
        what: "digest",
        value: digest.to_string(),
        reason,
    };
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid("expected <algorithm>:<hex>"))?;
    let alg = match alg {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => return Err(invalid("only sha256 and sha512 are supported")),
    };
    if hex.len() != alg.hex_len() {
        return Err(invalid("wrong length of the hex part"));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("the hex part must be lower-case hexadecimal"));
    }
    Ok(alg)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut d = Digester::new(Algorithm::Sha256);
    d.update(data);
    d.finish()
}

/// Digest of `data` with `alg`.
pub fn digest_with(alg: Algorithm, data: &[u8]) -> String {
    let mut d = Digester::new(alg);
    d.update(data);
    d.finish()
}

/// Incremental hasher producing `<algorithm>:<hex>`.
#[derive(Clone)]
pub struct Digester {
    alg: Algorithm,
    state: State,
}

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Digester {
    /// A fresh hasher for `alg`.
    pub fn new(alg: Algorithm) -> Digester {
        let state = match alg {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        Digester { alg, state }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// The digest string of everything fed.
    pub fn finish(self) -> String {
        let raw: Vec<u8> = match self.state {
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
        };
        let mut out = String::with_capacity(self.alg.hex_len() + 7);
        out.push_str(self.alg.name());
        out.push(':');
        for b in raw {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Wraps a stream of blob chunks, hashing them as they pass. Yields the chunks unchanged; fails
/// with [`Error::SizeMismatch`] as soon as more bytes than `expected_size` arrive or when the
/// stream ends short, and with [`Error::DigestMismatch`] (naming both digests) when the stream
/// ends with content of another digest. After an error the stream ends.
pub struct DigestVerifier<S> {
    inner: S,
    expected: String,
    expected_size: Option<u64>,
    digester: Option<Digester>,
    seen: u64,
}

impl<S> DigestVerifier<S>
where
    S: Stream<Item = Result<Bytes, Error>> + Unpin,
{
    /// Verify `inner` against `expected` (`sha256:…` or `sha512:…`) and, if given, its size.
    pub fn new(
        inner: S,
        expected: &str,
        expected_size: Option<u64>,
    ) -> Result<DigestVerifier<S>, Error> {
        let alg = parse_digest(expected)?;
        Ok(DigestVerifier {
            inner,
            expected: expected.to_string(),
            expected_size,
            digester: Some(Digester::new(alg)),
            seen: 0,
        })
    }

    /// Bytes passed through so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    fn size_error(&mut self, actual: u64) -> Poll<Option<Result<Bytes, Error>>> {
        self.digester = None;
        Poll::Ready(Some(Err(Error::SizeMismatch {
            digest: self.expected.clone(),
            expected: self.expected_size.unwrap_or(0),
            actual,
        })))
    }
}

impl<S> Stream for DigestVerifier<S>
where
    S: Stream<Item = Result<Bytes, Error>> + Unpin,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.digester.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                this.digester = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen = this.seen.saturating_add(chunk.len() as u64);
                if let Some(limit) = this.expected_size {
                    if this.seen > limit {
                        let seen = this.seen;
                        return this.size_error(seen);
                    }
                }
                if let Some(d) = this.digester.as_mut() {
                    d.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                if let Some(limit) = this.expected_size {
                    if this.seen != limit {
                        let seen = this.seen;
                        return this.size_error(seen);
                    }
                }
                let Some(d) = this.digester.take() else {
                    return Poll::Ready(None);
                };
                let actual = d.finish();
                if actual == this.expected {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(Error::DigestMismatch {
                        expected: this.expected.clone(),
                        actual,
                    })))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    struct Chunks(VecDeque<Result<Bytes, Error>>);

    impl Stream for Chunks {
        type Item = Result<Bytes, Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect())
    }

    /// Drain synchronously (the test stream never returns Pending).
    fn drain<S: Stream<Item = Result<Bytes, Error>> + Unpin>(mut s: S) -> (Vec<u8>, Option<Error>) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut s).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(b))) => out.extend_from_slice(&b),
                Poll::Ready(Some(Err(e))) => {
                    // The stream must end after an error.
                    assert!(matches!(
                        Pin::new(&mut s).poll_next(&mut cx),
                        Poll::Ready(None)
                    ));
                    return (out, Some(e));
                }
                Poll::Ready(None) => return (out, None),
                Poll::Pending => panic!("test stream is never pending"),
            }
        }
    }

    const HELLO_SHA256: &str =
        "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    #[test]
    fn digests_are_computed_and_validated() {
        assert_eq!(sha256_digest(b"hello world"), HELLO_SHA256);
        assert_eq!(
            digest_with(Algorithm::Sha512, b"").len(),
            "sha512:".len() + 128
        );
        assert_eq!(parse_digest(HELLO_SHA256).unwrap(), Algorithm::Sha256);
        for bad in [
            "sha256",
            "md5:abcd",
            "sha256:abc",
            &HELLO_SHA256.to_uppercase(),
            &format!("{HELLO_SHA256}0"),
            "sha256:../../../../etc/passwd000000000000000000000000000000000000000",
        ] {
            assert!(parse_digest(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn verifier_accepts_matching_content() {
        let v = DigestVerifier::new(chunks(&[b"hello", b" ", b"world"]), HELLO_SHA256, Some(11))
            .unwrap();
        let (data, err) = drain(v);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(data, b"hello world");
        let v = DigestVerifier::new(chunks(&[b"hello world"]), HELLO_SHA256, None).unwrap();
        assert!(drain(v).1.is_none());
    }

    #[test]
    fn verifier_names_both_digests_on_mismatch() {
        let v = DigestVerifier::new(chunks(&[b"hello", b" ", b"wOrld"]), HELLO_SHA256, Some(11))
            .unwrap();
        let (_, err) = drain(v);
        let err = err.expect("mismatch must fail");
        let actual = sha256_digest(b"hello wOrld");
        assert!(matches!(&err, Error::DigestMismatch { expected, actual: a }
            if expected == HELLO_SHA256 && *a == actual));
        let msg = err.to_string();
        assert!(msg.contains(HELLO_SHA256) && msg.contains(&actual), "{msg}");
    }

    #[test]
    fn verifier_checks_size() {
        // Too long: fails as soon as the limit is passed, before the end.
        let v = DigestVerifier::new(
            chunks(&[b"hello world", b"!!!", b"never read"]),
            HELLO_SHA256,
            Some(11),
        )
        .unwrap();
        let (data, err) = drain(v);
        assert_eq!(data, b"hello world");
        assert!(matches!(
            err,
            Some(Error::SizeMismatch {
                expected: 11,
                actual: 14,
                ..
            })
        ));
        // Too short.
        let v = DigestVerifier::new(chunks(&[b"hello"]), HELLO_SHA256, Some(11)).unwrap();
        let err = drain(v).1.expect("short stream must fail");
        assert_eq!(
            err.to_string(),
            format!("{HELLO_SHA256}: size mismatch: expected 11 bytes, got 5")
        );
    }

    #[test]
    fn verifier_passes_inner_errors_through() {
        let mut inner = chunks(&[b"hello"]);
        inner.0.push_back(Err(Error::Network {
            target: "reg".into(),
            message: "connection reset".into(),
        }));
        let v = DigestVerifier::new(inner, HELLO_SHA256, None).unwrap();
        assert!(matches!(drain(v).1, Some(Error::Network { .. })));
        assert!(DigestVerifier::new(chunks(&[]), "sha1:abc", None).is_err());
    }
}
