//! Container filesystem endpoints: archive (stat, get, put for `cp`), export, changes (`diff`),
//! commit, and top. Thin adapters: they parse the request and stream the body; the container
//! service (`container::archive`) does the work. They must not open a container's root themselves.

use super::St;
use crate::container::archive::{CommitRequest, ExtractOptions};
use crate::error::{Error, Result};
use crate::util::{json, json_body, Query};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use berth_api::container::ChangeItem;
use std::path::PathBuf;

fn container_path(q: &Query) -> Result<PathBuf> {
    let p = q.get("path").unwrap_or("");
    if p.is_empty() {
        return Err(Error::bad_request("path is required"));
    }
    if p.contains('\0') {
        return Err(Error::bad_request(format!(
            "invalid path {p:?}: it contains a NUL byte"
        )));
    }
    Ok(PathBuf::from(p))
}

/// How much of a refused upload is read before the answer (Go's server reads up to 256 KiB
/// of an unread body so the connection can be reused).
const DRAIN_BEFORE_REFUSAL: usize = 256 << 10;

fn tar_response(body: axum::body::Body) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
        body,
    )
        .into_response()
}

/// `HEAD|GET|PUT /containers/{id}/archive`.
pub async fn archive(
    State(d): St,
    Path(id): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let path = container_path(&q)?;
    match method {
        Method::HEAD | Method::GET => {
            let stat = d.path_stat(&c, &path).await?;
            let mut resp = if method == Method::GET {
                d.container_event(&c, "archive-path", &[]);
                // The tar is streamed as it is written.
                let svc = d.containers.clone();
                tar_response(crate::util::stream_body(move |out| {
                    svc.archive_path(&c, &path, out)
                }))
            } else {
                axum::http::StatusCode::OK.into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&stat) {
                resp.headers_mut().insert("X-Docker-Container-Path-Stat", v);
            }
            Ok(resp)
        }
        Method::PUT => {
            let writable = crate::container::archive::check_writable(&c.rec(), &path);
            if let Err(e) = writable {
                // As Go's server, read what a small upload sent before refusing it, so the
                // client is not cut off mid-write and gets the answer, not a broken pipe.
                crate::body::drain(req.into_body(), DRAIN_BEFORE_REFUSAL).await;
                return Err(e);
            }
            let body = crate::util::BodyReader::new(req.into_body());
            let opts = ExtractOptions {
                no_overwrite_dir_non_dir: q.bool("noOverwriteDirNonDir"),
                copy_uid_gid: q.bool("copyUIDGID"),
            };
            d.extract_to(&c, path, body, opts).await?;
            Ok(axum::http::StatusCode::OK.into_response())
        }
        _ => Err(Error::not_found("page not found")),
    }
}

/// `GET /containers/{id}/export`: the merged filesystem as a tar.
pub async fn export(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let c = d.find(&id)?;
    d.container_event(&c, "export", &[]);
    let svc = d.containers.clone();
    Ok(tar_response(crate::util::stream_body(move |out| {
        svc.export(&c, out)
    })))
}

/// `GET /containers/{id}/changes`.
pub async fn changes(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let c = d.find(&id)?;
    let out: Vec<ChangeItem> = d
        .changes(&c)
        .await?
        .iter()
        .map(|ch| ChangeItem {
            path: ch.path().to_string(),
            kind: ch.kind(),
        })
        .collect();
    Ok(json(200, &out))
}

/// `POST /commit?container=...`: the container's upper dir as a new image layer.
pub async fn commit(
    State(d): St,
    RawQuery(raw): RawQuery,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let c = d.find(q.get("container").unwrap_or(""))?;
    let config: berth_api::container::Config = json_body(&body)?;
    let reference = q.get("repo").filter(|r| !r.is_empty()).map(|r| {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{r}:{t}"),
            None => r.to_string(),
        }
    });
    let req = CommitRequest {
        reference,
        comment: q.get("comment").unwrap_or("").to_string(),
        author: q.get("author").unwrap_or("").to_string(),
        changes: crate::util::query_all(raw.as_deref(), "changes"),
        config,
        pause: q.get("pause").is_none_or(|p| p != "0" && p != "false"),
    };
    let id = d.commit(&c, req).await?;
    Ok(json(201, &serde_json::json!({ "Id": id })))
}

/// `GET /containers/{id}/top`: host `ps` output restricted to the container's processes.
pub async fn top(State(d): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    Ok(json(200, &d.top(&c, q.get("ps_args").unwrap_or("")).await?))
}
