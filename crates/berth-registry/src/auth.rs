//! HTTP Basic authentication against an htpasswd file of bcrypt entries (`htpasswd -B`).

use crate::error::Error;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// Successful checks remembered, so that a push does not pay bcrypt on every request.
const CACHE_MAX: usize = 1024;

#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of `user \0 password \0 hash` for credentials that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Htpasswd::parse(&text).map_err(|msg| Error::Htpasswd {
            path: path.to_path_buf(),
            msg,
        })
    }

    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", i + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(format!(
                    "line {}: only bcrypt entries are supported (htpasswd -B)",
                    i + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err("no users".into());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether an `Authorization` header value carries valid Basic credentials.
    pub async fn check(&self, header: Option<&[u8]>) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        // An unknown user still costs one bcrypt verification (against some entry's hash, the
        // result ignored), so response times do not tell which users exist.
        let (known, hash) = match self.users.get(&user) {
            Some(h) => (true, h.clone()),
            None => match self.users.values().next() {
                Some(h) => (false, h.clone()),
                None => return false,
            },
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if known && self.cache().contains(&key) {
            return true;
        }
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok && known {
            let mut cache = self.cache();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
        }
        ok && known
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // Inserts and clears cannot leave the set half-updated: a poisoned lock is usable.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Basic base64(user:password)` → `(user, password)`.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `htpasswd -nbB -C 4 alice secret`
    const ALICE: &str = "alice:$2y$04$6q5ka5/9qTkLFors4P9lh.5rrzvjqZGU/WLfPvlPDltE5PV71Zg/q";

    fn basic(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn parses_credentials() {
        assert_eq!(
            basic_credentials(&basic("u:p:with:colons")),
            Some(("u".into(), "p:with:colons".into()))
        );
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(&basic("nocolon")), None);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(Htpasswd::parse("").is_err());
        assert!(Htpasswd::parse("# only a comment\n").is_err());
        assert!(Htpasswd::parse("bob:{SHA}abc").is_err());
        assert!(Htpasswd::parse("no-colon").is_err());
        assert!(Htpasswd::parse(&format!("# users\n\n{ALICE}\n")).is_ok());
    }

    #[tokio::test]
    async fn checks_passwords() {
        let h = Htpasswd::parse(ALICE).unwrap();
        assert!(h.check(Some(&basic("alice:secret"))).await);
        // Cached now, and still right.
        assert!(h.check(Some(&basic("alice:secret"))).await);
        assert!(!h.check(Some(&basic("alice:wrong"))).await);
        assert!(!h.check(Some(&basic("bob:secret"))).await);
        assert!(!h.check(None).await);
    }
}
