//! What a registry request carries from the client: `X-Registry-Auth` credentials and a
//! `platform` query value. Parsing only, beside `error`: it never contacts a registry (that is the
//! registry client's, held by `state`).

use crate::error::{Error, Result};
use berth_distribution::{AuthConfig, Credentials};

/// Credentials from the `X-Registry-Auth` header (none when absent).
pub fn from_headers(h: &axum::http::HeaderMap) -> Result<Credentials> {
    let Some(v) = h.get("X-Registry-Auth") else {
        return Ok(Credentials::None);
    };
    let s = v
        .to_str()
        .map_err(|_| Error::bad_request("invalid X-Registry-Auth header"))?;
    let cfg = AuthConfig::decode(s)
        .map_err(|e| Error::bad_request(format!("invalid X-Registry-Auth header: {e}")))?;
    cfg.credentials()
        .map_err(|e| Error::bad_request(format!("invalid X-Registry-Auth header: {e}")))
}

/// `os[/arch[/variant]]` (empty: the daemon's own platform; an OS alone: the daemon's
/// architecture, as dockerd takes it).
pub fn platform(p: Option<&str>) -> Result<(String, String, Option<String>)> {
    let Some(p) = p.filter(|p| !p.is_empty()) else {
        return Ok((String::new(), String::new(), None));
    };
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os] => Ok((os.to_string(), String::new(), None)),
        [os, arch] if !os.is_empty() && !arch.is_empty() => {
            Ok((os.to_string(), arch.to_string(), None))
        }
        [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
            Ok((os.to_string(), arch.to_string(), Some(v.to_string())))
        }
        _ => Err(Error::bad_request(format!(
            "invalid platform {p:?}: want os[/arch[/variant]]"
        ))),
    }
}
