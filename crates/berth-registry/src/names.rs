//! Repository names and tags as the distribution spec allows them, and sha256 digests (the
//! only algorithm this registry stores).

use sha2::{Digest as _, Sha256};
use std::fmt;

/// Longest repository name accepted (Docker clients cap `host/name` at 255 characters).
pub const MAX_NAME_LEN: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255 long.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", then an alphanumeric.
        let start = i;
        let sep = b[i];
        while i < b.len() && b[i] == sep {
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Why a string is not a usable digest.
#[derive(Debug, PartialEq, Eq)]
pub enum DigestError {
    /// Not `algorithm:encoded` as the image spec's grammar has it.
    Invalid,
    /// Well formed, but not sha256.
    Unsupported,
}

/// A sha256 content digest, kept as its 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, enc) = s.split_once(':').ok_or(DigestError::Invalid)?;
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
        let enc_ok = !enc.is_empty()
            && enc
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Invalid);
        }
        if alg != "sha256" {
            return Err(DigestError::Unsupported);
        }
        if enc.len() != 64
            || !enc
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(DigestError::Invalid);
        }
        Ok(Digest(enc.to_string()))
    }

    /// From a file name in the store: the bare hex.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        Digest::parse(&format!("sha256:{hex}")).ok()
    }

    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    pub fn from_hasher(h: Sha256) -> Digest {
        let out = h.finalize();
        let mut s = String::with_capacity(64);
        for b in out {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Digest(s)
    }

    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A manifest reference from a URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// Fails for something that is neither a valid tag nor a well-formed digest.
    pub fn parse(s: &str) -> Result<Reference, DigestError> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(DigestError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_regex() {
        for ok in [
            "a",
            "busybox",
            "library/busybox",
            "a/b/c/d",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "my.app",
            "0x/1.2",
            "a-b.c_d__e",
        ] {
            assert!(valid_name(ok), "{ok} should be valid");
        }
        for bad in [
            "",
            "A",
            "Busybox",
            "a/",
            "/a",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "_a",
            "a._b",
            "a/b c",
            "a:b",
            "..",
            "a/../b",
            "a/_manifests",
            "é",
        ] {
            assert!(!valid_name(bad), "{bad:?} should be invalid");
        }
        assert!(valid_name(&"a".repeat(255)));
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags_follow_the_spec_regex() {
        for ok in ["latest", "v1.0", "_x", "1", "A-b_c.d", &"t".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", &"t".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn digests_parse_and_print() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(d.hex(), hex);
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(Digest::of(b""), d);
        assert_eq!(Digest::from_hex(hex), Some(d));
        assert_eq!(Digest::parse("sha256:abc"), Err(DigestError::Invalid));
        assert_eq!(
            Digest::parse(&format!("sha256:{}", hex.to_uppercase())),
            Err(DigestError::Invalid)
        );
        assert_eq!(Digest::parse("sha512:abcd"), Err(DigestError::Unsupported));
        assert_eq!(Digest::parse("nocolon"), Err(DigestError::Invalid));
        assert_eq!(Digest::parse("sha256:"), Err(DigestError::Invalid));
        assert_eq!(Digest::parse("SHA256:ab"), Err(DigestError::Invalid));
        assert_eq!(Digest::from_hex("../etc/passwd"), None);
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("latest"),
            Ok(Reference::Tag("latest".into()))
        );
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "0".repeat(64))),
            Ok(Reference::Digest(_))
        ));
        assert_eq!(
            Reference::parse("sha256:baddigeststring"),
            Err(DigestError::Invalid)
        );
        assert_eq!(Reference::parse("a/b"), Err(DigestError::Invalid));
    }
}
