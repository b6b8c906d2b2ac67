//! `/plugins`: berth has no managed (v2) plugins, so the list is empty and a plugin named by a
//! client is not found, as on a dockerd with none installed; installing one is refused. It keeps no
//! plugin state and imports only `error` and `util`.

use crate::error::{Error, Result};
use crate::util::{json, Query};
use axum::extract::RawQuery;
use axum::http::Uri;
use axum::response::Response;

/// `GET /plugins`: the filters are checked as dockerd checks them.
pub async fn list(RawQuery(q): RawQuery) -> Result<Response> {
    let filters = Query::parse(q.as_deref()).filters()?;
    if let Some(k) = filters
        .keys()
        .find(|k| !matches!(k.as_str(), "capability" | "enable"))
    {
        return Err(Error::bad_request(format!("invalid filter '{k}'")));
    }
    if let Some(v) = filters.get("enable").and_then(|vals| {
        vals.iter()
            .find(|v| !matches!(v.as_str(), "true" | "false"))
    }) {
        return Err(Error::bad_request(format!("Invalid filter 'enable={v}'")));
    }
    Ok(json(200, &serde_json::json!([])))
}

/// `/plugins/{name}/…` (inspect, remove, enable, disable, push, set, upgrade): no such plugin.
pub async fn by_name(uri: Uri) -> Error {
    let rest = crate::util::decode(uri.path().trim_start_matches("/plugins/"));
    let name = match rest.rsplit_once('/') {
        Some((n, "json" | "enable" | "disable" | "push" | "set" | "upgrade")) => n.to_string(),
        _ => rest,
    };
    Error::not_found(format!("plugin \"{name}\" not found"))
}

/// `POST /plugins/pull`, `/plugins/create`, `GET /plugins/privileges`: refused.
pub async fn unsupported() -> Error {
    Error::bad_request("berth does not support managed plugins")
}
