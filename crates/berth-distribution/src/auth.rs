//! Credentials, the Docker `X-Registry-Auth` / `POST /auth` auth config, and parsing of
//! `WWW-Authenticate` challenges.

use std::fmt;

use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Credentials for one registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous.
    #[default]
    None,
    /// Username and password (sent as HTTP Basic to the registry or its token server).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token, exchanged at the token server (`grant_type=refresh_token`).
    IdentityToken(String),
    /// A bearer token sent as is to the registry.
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// A hash identifying the credentials, so cached tokens are never shared between
    /// different credentials.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |tag: &[u8], value: &str| {
            h.update(tag);
            h.update((value.len() as u64).to_le_bytes());
            h.update(value.as_bytes());
        };
        match self {
            Credentials::None => field(b"none", ""),
            Credentials::Basic { username, password } => {
                field(b"user", username);
                field(b"pass", password);
            }
            Credentials::IdentityToken(t) => field(b"identity", t),
            Credentials::RegistryToken(t) => field(b"registry", t),
        }
        h.finalize().into()
    }

    /// `Basic <base64(user:pass)>` for Basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                BASE64.encode(format!("{username}:{password}").as_bytes())
            )),
            _ => None,
        }
    }
}

/// A string field that may be `null` (docker-py sends `"email": null`): Go decodes that as "".
fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<String>::deserialize(d).map(Option::unwrap_or_default)
}

/// Docker's auth config: the JSON of the `X-Registry-Auth` header (base64url-encoded) and of the
/// `POST /auth` body. Field names are Docker's; Go decodes them case-insensitively, so the
/// capitalized spellings are accepted too; `null` is an empty field.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "Username",
        skip_serializing_if = "String::is_empty"
    )]
    pub username: String,
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "Password",
        skip_serializing_if = "String::is_empty"
    )]
    pub password: String,
    /// base64(`username:password`), used when username/password are empty.
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "Auth",
        skip_serializing_if = "String::is_empty"
    )]
    pub auth: String,
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "Email",
        skip_serializing_if = "String::is_empty"
    )]
    pub email: String,
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "ServerAddress",
        alias = "serverAddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub serveraddress: String,
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "IdentityToken",
        alias = "identityToken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identitytoken: String,
    #[serde(
        default,
        deserialize_with = "null_is_empty",
        alias = "RegistryToken",
        alias = "registryToken",
        skip_serializing_if = "String::is_empty"
    )]
    pub registrytoken: String,
}

impl fmt::Debug for AuthConfig {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("auth", &secret(&self.auth))
            .field("email", &self.email)
            .field("serveraddress", &self.serveraddress)
            .field("identitytoken", &secret(&self.identitytoken))
            .field("registrytoken", &secret(&self.registrytoken))
            .finish()
    }
}

fn invalid(value: &str, reason: &'static str) -> Error {
    let mut shown: String = value.chars().take(16).collect();
    if value.len() > shown.len() {
        shown.push('…');
    }
    Error::InvalidInput {
        what: "X-Registry-Auth header",
        value: shown,
        reason,
    }
}

impl AuthConfig {
    /// Decode an `X-Registry-Auth` header: base64url (padded or not; the standard alphabet is
    /// accepted too) of the JSON auth config. An empty header is an anonymous config.
    pub fn decode(header: &str) -> Result<AuthConfig, Error> {
        let trimmed = header.trim();
        if trimmed.is_empty() {
            return Ok(AuthConfig::default());
        }
        let normalized: String = trimmed
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let json = BASE64URL_NOPAD
            .decode(normalized.as_bytes())
            .map_err(|_| invalid(header, "not base64url"))?;
        berth_api::decode::from_slice(&json).map_err(|_| invalid(header, "not a JSON auth config"))
    }

    /// Encode as an `X-Registry-Auth` header value (base64url with padding, as the docker CLI).
    pub fn encode(&self) -> String {
        // Serializing a struct of strings cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        BASE64URL.encode(&json)
    }

    /// The credentials this config carries: the registry token, else the identity token, else
    /// username/password (from `auth` when the fields are empty), else anonymous.
    pub fn credentials(&self) -> Result<Credentials, Error> {
        if !self.registrytoken.is_empty() {
            return Ok(Credentials::RegistryToken(self.registrytoken.clone()));
        }
        if !self.identitytoken.is_empty() {
            return Ok(Credentials::IdentityToken(self.identitytoken.clone()));
        }
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Credentials::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            });
        }
        if !self.auth.is_empty() {
            let bad = || Error::InvalidInput {
                what: "auth field",
                value: String::new(),
                reason: "expected base64 of username:password",
            };
            let raw = BASE64
                .decode(self.auth.trim().as_bytes())
                .map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            let (username, password) = text.split_once(':').ok_or_else(bad)?;
            return Ok(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        Ok(Credentials::None)
    }

    /// The registry host the config is for: `serveraddress` without scheme and path, with
    /// Docker Hub's addresses (`https://index.docker.io/v1/`, empty) mapped to `docker.io`.
    pub fn registry(&self) -> String {
        normalize_registry(&self.serveraddress)
    }
}

/// Registry host of a server address such as `https://index.docker.io/v1/`, `myreg:5000`,
/// `http://myreg:5000/v2/`; Docker Hub's spellings and the empty address become `docker.io`.
pub fn normalize_registry(address: &str) -> String {
    let s = address.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased scheme: `basic`, `bearer`, …
    pub scheme: String,
    /// Parameters with lower-cased names, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Value of a parameter (name case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a `WWW-Authenticate` value into its challenges (RFC 9110 §11.6.1): several challenges
/// may share one header, parameters may be quoted (with `\` escapes) or bare tokens.
/// Unparsable trailing text is ignored.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        let Some(scheme) = p.token() else { break };
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            p.skip_ws();
            let save = p.i;
            let Some(name) = p.token() else { break };
            p.skip_ws();
            if p.peek() != Some(b'=') {
                // A new challenge's scheme.
                p.i = save;
                break;
            }
            p.i += 1;
            if matches!(p.peek(), Some(b'=')) || p.at_item_end() {
                // token68 (`Basic dXNlcg==`): not used by registries; skip it.
                p.skip(|b| b == b'=');
                p.skip_ws();
                p.skip(|b| b == b',');
                continue;
            }
            p.skip_ws();
            let val = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            ch.params.push((name.to_ascii_lowercase(), val));
            p.skip_ws();
            if p.peek() == Some(b',') {
                p.i += 1;
            } else {
                break;
            }
        }
        out.push(ch);
        if p.i >= p.s.len() {
            break;
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn skip_ws(&mut self) {
        self.skip(|b| b == b' ' || b == b'\t');
    }

    fn at_item_end(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j).is_some_and(|b| *b == b' ' || *b == b'\t') {
            j += 1;
        }
        matches!(self.s.get(j), None | Some(b','))
    }

    /// An RFC 9110 token (plus `/` for token68-ish values and bare URLs some servers send).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b));
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_fields_of_an_auth_header_are_empty() {
        // docker-py's header after `client.login(...)`: its email is null.
        let json = br#"{"username": "u", "password": "p", "email": null, "serveraddress": "127.0.0.1:5000", "auth": null}"#;
        let cfg = AuthConfig::decode(&BASE64URL.encode(json)).unwrap();
        assert_eq!((cfg.username.as_str(), cfg.email.as_str()), ("u", ""));
        assert_eq!(cfg.serveraddress, "127.0.0.1:5000");
        assert!(AuthConfig::decode(&BASE64URL.encode(br#"{"username": 1}"#)).is_err());
    }

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("Service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn parses_basic_and_several_challenges() {
        let c = parse_www_authenticate(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            c,
            vec![Challenge {
                scheme: "basic".into(),
                params: vec![("realm".into(), "Registry Realm".into())]
            }]
        );
        let c = parse_www_authenticate(
            r#"BASIC realm=basic-realm, Bearer realm="http://a/t", service="s", scope="repository:a:pull,push""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("s"));
        // A comma inside quotes stays in the value.
        assert_eq!(c[1].param("scope"), Some("repository:a:pull,push"));
    }

    #[test]
    fn parses_escapes_bare_schemes_and_token68() {
        let c = parse_www_authenticate(r#"Bearer realm="a\"b\\c" , error="invalid_token""#);
        assert_eq!(c[0].param("realm"), Some(r#"a"b\c"#));
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        let c = parse_www_authenticate("Negotiate, Basic");
        assert_eq!(
            c.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
            ["negotiate", "basic"]
        );
        assert!(c.iter().all(|c| c.params.is_empty()));
        let c = parse_www_authenticate("Basic dXNlcjpwYXNz==, Bearer realm=\"r\"");
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].param("realm"), Some("r"));
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate("  ,, ").is_empty());
    }

    #[test]
    fn x_registry_auth_round_trips() {
        let cfg = AuthConfig {
            username: "alice".into(),
            password: "p@ss:wörd/+?".into(),
            serveraddress: "registry.example.com:5000".into(),
            ..AuthConfig::default()
        };
        let header = cfg.encode();
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let back = AuthConfig::decode(&header).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(
            back.credentials().unwrap(),
            Credentials::Basic {
                username: "alice".into(),
                password: "p@ss:wörd/+?".into()
            }
        );
        assert_eq!(back.registry(), "registry.example.com:5000");
        // Empty fields are omitted, as the docker CLI does.
        let json = String::from_utf8(BASE64URL.decode(header.as_bytes()).unwrap()).unwrap();
        assert!(
            !json.contains("email") && !json.contains("identitytoken"),
            "{json}"
        );
    }

    #[test]
    fn x_registry_auth_decodes_docker_cli_variants() {
        let json = r#"{"username":"bob","password":"secret","serveraddress":"https://index.docker.io/v1/"}"#;
        for header in [
            BASE64URL.encode(json.as_bytes()),
            BASE64URL_NOPAD.encode(json.as_bytes()),
            BASE64.encode(json.as_bytes()),
        ] {
            let cfg = AuthConfig::decode(&header).unwrap();
            assert_eq!(cfg.username, "bob");
            assert_eq!(cfg.registry(), "docker.io");
        }
        let json = r#"{"Username":"u","ServerAddress":"r.io","IdentityToken":"tok"}"#;
        let cfg = AuthConfig::decode(&BASE64URL.encode(json.as_bytes())).unwrap();
        assert_eq!(
            cfg.credentials().unwrap(),
            Credentials::IdentityToken("tok".into())
        );
        // Null members are empty, as Go decodes them.
        let json = r#"{"username":"n","password":"p","email":null,"IdentityToken":null}"#;
        let cfg = AuthConfig::decode(&BASE64URL.encode(json.as_bytes())).unwrap();
        assert_eq!(
            cfg.credentials().unwrap(),
            Credentials::Basic {
                username: "n".into(),
                password: "p".into()
            }
        );
        let json = r#"{"registrytoken":"rt","identitytoken":"it"}"#;
        let cfg = serde_json::from_str::<AuthConfig>(json).unwrap();
        assert_eq!(
            cfg.credentials().unwrap(),
            Credentials::RegistryToken("rt".into())
        );
        let json = format!(r#"{{"auth":"{}"}}"#, BASE64.encode(b"carol:pw:with:colons"));
        let cfg = serde_json::from_str::<AuthConfig>(&json).unwrap();
        assert_eq!(
            cfg.credentials().unwrap(),
            Credentials::Basic {
                username: "carol".into(),
                password: "pw:with:colons".into()
            }
        );
        assert_eq!(AuthConfig::decode("").unwrap(), AuthConfig::default());
        assert_eq!(
            AuthConfig::default().credentials().unwrap(),
            Credentials::None
        );
    }

    #[test]
    fn x_registry_auth_rejects_garbage() {
        assert!(AuthConfig::decode("!!!not base64!!!").is_err());
        assert!(AuthConfig::decode(&BASE64URL.encode(b"[1,2]")).is_err());
        let cfg = AuthConfig {
            auth: BASE64.encode(b"no-colon"),
            ..AuthConfig::default()
        };
        assert!(cfg.credentials().is_err());
        // Secrets never show in Debug output.
        let cfg = AuthConfig {
            username: "u".into(),
            password: "hunter2".into(),
            ..AuthConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let creds = cfg.credentials().unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
    }

    #[test]
    fn registry_addresses_normalize() {
        assert_eq!(normalize_registry(""), "docker.io");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(
            normalize_registry("http://Reg.Example:5000/v2/"),
            "reg.example:5000"
        );
        assert_eq!(normalize_registry("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn fingerprints_differ_per_credentials() {
        let a = Credentials::Basic {
            username: "a".into(),
            password: "bc".into(),
        };
        let b = Credentials::Basic {
            username: "ab".into(),
            password: "c".into(),
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(
            Credentials::IdentityToken("x".into()).fingerprint(),
            Credentials::RegistryToken("x".into()).fingerprint()
        );
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_eq!(a.basic_header().unwrap(), "Basic YTpiYw==");
    }
}
