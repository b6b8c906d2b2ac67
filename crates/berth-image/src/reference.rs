//! Image references (`[registry/]path[:tag][@digest]`): parsing, Docker's normalization
//! (`busybox` = `docker.io/library/busybox:latest`) and Docker's familiar display form.

use crate::digest::{is_hex64, sha256_hex};
use crate::error::{Error, Result};
use std::fmt;

/// The default registry of unqualified names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn invalid(input: &str, why: &str) -> Error {
    if why.is_empty() {
        Error::InvalidInput(format!("invalid reference format: {input:?}"))
    } else {
        Error::InvalidInput(format!("invalid reference format: {why}"))
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A registry host: DNS labels or an IPv4 address or a bracketed IPv6 address, with an
/// optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, tail)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        if tail.is_empty() {
            return true;
        }
        match tail.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
            })
    })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

impl Reference {
    /// Parses and normalizes `input` like Docker's `ParseNormalizedNamed`; no tag is
    /// added (see [`Reference::with_default_tag`]).
    pub fn parse(input: &str) -> Result<Reference> {
        if input.is_empty() {
            return Err(invalid(input, ""));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if sha256_hex(d).is_none() {
                    return Err(invalid(input, &format!("invalid digest {d:?}")));
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(input, ""));
            }
        }
        if name.is_empty() {
            return Err(invalid(input, ""));
        }
        if is_hex64(name) {
            return Err(Error::InvalidInput(format!(
                "invalid repository name ({name}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                if !valid_domain(first) {
                    return Err(invalid(input, ""));
                }
                let domain = if first == LEGACY_DEFAULT_DOMAIN {
                    DEFAULT_DOMAIN
                } else {
                    first
                };
                (domain.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path
        };
        if path.to_lowercase() != path {
            return Err(invalid(
                input,
                &format!("repository name ({path}) must be lowercase"),
            ));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid(input, ""));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                input,
                &format!(
                    "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
                ),
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Adds the tag `latest` when the reference has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_string());
        }
        self
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same repository with a digest and no tag.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// True when the input named only a repository (no tag, no digest).
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `busybox`, `user/app`, `127.0.0.1:5000/foo`
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// `busybox:latest`, as Docker shows references.
    pub fn familiar(&self) -> String {
        format!("{}{}", self.familiar_name(), self.suffix())
    }
}

/// Parses the target of `docker tag`/`import`/`commit`: a name with an optional tag
/// (default `latest`), no digest.
pub(crate) fn parse_tag_target(input: &str) -> Result<Reference> {
    let r = Reference::parse(input)?;
    if r.digest().is_some() {
        return Err(Error::InvalidInput(format!(
            "refusing to create a tag with a digest reference: {input}"
        )));
    }
    Ok(r.with_default_tag())
}

/// The full normalized form: `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name(), self.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().with_default_tag().to_string()
    }

    fn fam(s: &str) -> String {
        Reference::parse(s).unwrap().with_default_tag().familiar()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            full("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/library/busybox:x"),
            "docker.io/library/busybox:x"
        );
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b:c"), "localhost:5000/a/b:c");
        assert_eq!(full("127.0.0.1:5000/foo:bar"), "127.0.0.1:5000/foo:bar");
        assert_eq!(full("quay.io/coreos/etcd"), "quay.io/coreos/etcd:latest");
        assert_eq!(full("[::1]:5000/foo"), "[::1]:5000/foo:latest");
        assert_eq!(full("a__b-c--d/x_y.z"), "docker.io/a__b-c--d/x_y.z:latest");
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(fam("busybox"), "busybox:latest");
        assert_eq!(fam("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(fam("user/app:v"), "user/app:v");
        assert_eq!(fam("library/a/b"), "library/a/b:latest");
        assert_eq!(fam("127.0.0.1:5000/foo:bar"), "127.0.0.1:5000/foo:bar");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}"))
            .unwrap()
            .with_default_tag();
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        let both = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(both.tag(), Some("1"));
        assert_eq!(both.familiar_name(), "busybox");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            ":tag",
            "busybox@sha256:abc",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "busybox:-x",
            "busybox:a/b",
            "/busybox",
            "busybox/",
            "a b",
            "UPPER.io/Repo",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let hex = "a".repeat(64);
        let e = Reference::parse(&hex).unwrap_err().to_string();
        assert!(e.contains("64-byte hexadecimal"), "{e}");
        let e = Reference::parse("library/Busybox").unwrap_err().to_string();
        assert!(e.contains("must be lowercase"), "{e}");
        assert!(Reference::parse(&format!("busybox:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse(&format!("busybox:{}", "t".repeat(128))).is_ok());
        assert!(Reference::parse(&format!("{}a", "a/".repeat(130))).is_err());
    }

    #[test]
    fn uppercase_first_component_is_a_domain() {
        // Docker treats an uppercase first component as a registry host.
        let r = Reference::parse("Registry/foo").unwrap();
        assert_eq!(r.domain(), "Registry");
        assert_eq!(r.path(), "foo");
    }
}
