//! The registry client's error type: not found, unauthorized, denied, network, TLS, digest and
//! manifest errors, carrying the registry's own error codes and messages.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// One entry of a registry's JSON error body (`{"errors":[{"code","message","detail"}]}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    /// Upper-case code such as `MANIFEST_UNKNOWN`, `UNAUTHORIZED`, `DENIED`.
    pub code: String,
    /// Human-readable message from the registry.
    pub message: String,
    /// The `detail` member, re-serialized as JSON (empty when absent).
    pub detail: String,
}

impl fmt::Display for RegistryError {
    /// As Docker prints them: `manifest unknown: manifest unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code.to_lowercase().replace('_', " ");
        match (code.is_empty(), self.message.is_empty()) {
            (true, true) => f.write_str("unknown error"),
            (true, false) => f.write_str(&self.message),
            (false, true) => f.write_str(&code),
            (false, false) => write!(f, "{code}: {}", self.message),
        }
    }
}

/// Errors of the registry client. Messages name the registry, repository or blob involved and
/// include the registry's own explanation, e.g.
/// `registry.example.com/app:1.0: unauthorized: authentication required`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied value (digest, repository, tag, registry name) is malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The client configuration (insecure registries, mirrors, certs.d) is unusable.
    #[error("invalid registry client configuration: {0}")]
    Config(String),
    /// The registry (or its token server) wants other or valid credentials.
    #[error(
        "{target}: {}",
        describe(errors, "unauthorized: authentication required")
    )]
    Unauthorized {
        target: String,
        errors: Vec<RegistryError>,
    },
    /// The credentials are valid but lack access to the resource.
    #[error(
        "{target}: {}",
        describe(errors, "denied: requested access to the resource is denied")
    )]
    Denied {
        target: String,
        errors: Vec<RegistryError>,
    },
    /// Manifest, blob or repository unknown to the registry.
    #[error("{target}: not found: {}", describe(errors, "not found"))]
    NotFound {
        target: String,
        errors: Vec<RegistryError>,
    },
    /// Any other HTTP error status from the registry.
    #[error("{target}: {}", describe_status(*status, errors))]
    Registry {
        target: String,
        status: u16,
        errors: Vec<RegistryError>,
    },
    /// The registry could not be reached or the connection broke.
    #[error("{target}: {message}")]
    Network { target: String, message: String },
    /// TLS handshake or certificate failure (or an unusable certs.d file).
    #[error("{target}: TLS: {message}")]
    Tls { target: String, message: String },
    /// The registry answered something that does not follow the distribution spec.
    #[error("{target}: invalid registry response: {message}")]
    InvalidResponse { target: String, message: String },
    /// Content does not hash to the digest it was asked for or announced under.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// Content length differs from the descriptor's size.
    #[error("{digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// A manifest or index that is not valid JSON of the expected shape.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// A manifest media type this client does not handle.
    #[error("unsupported manifest media type {0:?} (expected an OCI or Docker schema 2 manifest or index)")]
    UnsupportedMediaType(String),
    /// A Docker schema 1 manifest, which Docker itself no longer pulls.
    #[error("Docker schema 1 manifests are not supported ({0}): push the image again with a current client")]
    Schema1(String),
    /// A manifest over the size cap.
    #[error("manifest too large: {size} bytes exceed the limit of {limit} bytes")]
    ManifestTooLarge { size: u64, limit: u64 },
    /// Reading a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the manifest, blob or repository does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether authentication failed or is missing.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    /// Whether access was denied to authenticated credentials.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Denied { .. })
    }

    /// Whether the registry could not be reached (network or TLS), so another endpoint may work.
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Network { .. } | Error::Tls { .. })
    }

    /// The registry's error entries, if the error came from a registry response.
    pub fn registry_errors(&self) -> &[RegistryError] {
        match self {
            Error::Unauthorized { errors, .. }
            | Error::Denied { errors, .. }
            | Error::NotFound { errors, .. }
            | Error::Registry { errors, .. } => errors,
            _ => &[],
        }
    }

    /// Build the error for an HTTP error status and its (possibly empty) body.
    pub(crate) fn from_status(target: String, status: u16, body: &[u8]) -> Error {
        let errors = parse_error_body(body);
        let has = |code: &str| errors.iter().any(|e| e.code == code);
        if status == 403 || has("DENIED") {
            Error::Denied { target, errors }
        } else if status == 401 || has("UNAUTHORIZED") {
            Error::Unauthorized { target, errors }
        } else if status == 404 {
            Error::NotFound { target, errors }
        } else {
            Error::Registry {
                target,
                status,
                errors,
            }
        }
    }
}

fn describe(errors: &[RegistryError], default: &str) -> String {
    if errors.is_empty() {
        default.to_string()
    } else {
        join(errors)
    }
}

fn describe_status(status: u16, errors: &[RegistryError]) -> String {
    if errors.is_empty() {
        format!("unexpected HTTP status {status}")
    } else {
        format!("{} (HTTP {status})", join(errors))
    }
}

fn join(errors: &[RegistryError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    // Token servers answer in OAuth2 or ad-hoc shapes.
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Parse a registry or token-server error body; anything unparsable yields no entries.
pub(crate) fn parse_error_body(body: &[u8]) -> Vec<RegistryError> {
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return Vec::new();
    };
    if !parsed.errors.is_empty() {
        return parsed
            .errors
            .into_iter()
            .map(|e| RegistryError {
                code: e.code,
                message: e.message,
                detail: e
                    .detail
                    .filter(|d| !d.is_null())
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            })
            .collect();
    }
    let message = parsed
        .details
        .or(parsed.error_description)
        .or(parsed.message)
        .unwrap_or_default();
    let code = parsed.error.unwrap_or_default();
    if code.is_empty() && message.is_empty() {
        return Vec::new();
    }
    vec![RegistryError {
        code: code.to_uppercase(),
        message,
        detail: String::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_body_is_parsed_and_shown_like_docker() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let err = Error::from_status("reg/app:x".into(), 404, body);
        assert!(err.is_not_found());
        assert_eq!(err.registry_errors()[0].detail, r#"{"Tag":"x"}"#);
        assert_eq!(
            err.to_string(),
            "reg/app:x: not found: manifest unknown: manifest unknown"
        );
    }

    #[test]
    fn statuses_and_codes_map_to_kinds() {
        let e = Error::from_status("reg".into(), 401, b"");
        assert!(e.is_unauthorized());
        assert_eq!(e.to_string(), "reg: unauthorized: authentication required");
        let e = Error::from_status(
            "reg/x".into(),
            401,
            br#"{"errors":[{"code":"DENIED","message":"no"}]}"#,
        );
        assert!(e.is_denied());
        assert_eq!(e.to_string(), "reg/x: denied: no");
        let e = Error::from_status("reg".into(), 403, b"<html>");
        assert!(e.is_denied());
        let e = Error::from_status(
            "reg".into(),
            429,
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        );
        assert_eq!(e.to_string(), "reg: toomanyrequests: slow down (HTTP 429)");
        let e = Error::from_status("reg".into(), 500, b"oops");
        assert_eq!(e.to_string(), "reg: unexpected HTTP status 500");
    }

    #[test]
    fn token_server_bodies() {
        let e = Error::from_status(
            "auth".into(),
            401,
            br#"{"details":"incorrect username or password"}"#,
        );
        assert_eq!(e.to_string(), "auth: incorrect username or password");
        let e = Error::from_status(
            "auth".into(),
            400,
            br#"{"error":"invalid_grant","error_description":"bad refresh token"}"#,
        );
        assert_eq!(
            e.to_string(),
            "auth: invalid grant: bad refresh token (HTTP 400)"
        );
    }
}
