//! Blob endpoints: HEAD/GET (with `Range`), DELETE, and uploads (monolithic POST, sessions
//! with PATCH chunks, the closing PUT, status, cancel, and cross-repository mounts).

use super::{blocking, empty, parse_digest, App, Req};
use crate::error::{ApiError, Code};
use crate::names::Digest;
use crate::range::{parse_content_range, parse_range, upload_range, ByteRange};
use crate::upload::{receive_blob, Session};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Size of the reads that feed a blob download.
const READ_CHUNK: u64 = 256 * 1024;

fn blob_unknown(d: &Digest) -> ApiError {
    ApiError::new(Code::BlobUnknown, "blob unknown to registry")
        .with_detail(serde_json::json!({ "digest": d.to_string() }))
}

/// `len` bytes of `file` from its current position, read as the client takes them.
fn file_body(file: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left.min(READ_CHUNK)).unwrap_or(64 * 1024);
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob shorter than its size",
            ));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, left - n as u64))))
    });
    Body::from_stream(stream)
}

pub async fn get(
    app: &App,
    name: &str,
    digest: &str,
    head: bool,
    req: &Req,
) -> Result<Response, ApiError> {
    let d = parse_digest(digest)?;
    let size = app
        .store
        .linked_blob_size(name, &d)?
        .ok_or_else(|| blob_unknown(&d))?;
    let range = match req.header(header::RANGE) {
        Some(h) if !head => parse_range(h, size),
        _ => ByteRange::Full,
    };
    let (status, start, len) = match range {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        ByteRange::Unsatisfiable => {
            return Ok(empty(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &[("content-range", format!("bytes */{size}"))],
            ))
        }
    };
    let mut headers = vec![
        ("content-length", len.to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", d.to_string()),
        ("etag", format!("\"{d}\"")),
        ("accept-ranges", "bytes".to_string()),
        ("cache-control", "max-age=31536000".to_string()),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        headers.push((
            "content-range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        ));
    }
    if head {
        return Ok(empty(status, &headers));
    }
    let mut file = match tokio::fs::File::open(app.store.blob_path(&d)).await {
        Ok(f) => f,
        // Removed by gc between the check and the open.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(blob_unknown(&d)),
        Err(e) => return Err(e.into()),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    let mut resp = (status, file_body(file, len)).into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    Ok(resp)
}

pub async fn delete(app: &App, name: &str, digest: &str) -> Result<Response, ApiError> {
    let d = parse_digest(digest)?;
    let (store, n, dd) = (app.store.clone(), name.to_string(), d.clone());
    if blocking(move || store.unlink_blob(&n, &dd)).await? {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(blob_unknown(&d))
    }
}

fn created(name: &str, d: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
            ("content-length", "0".into()),
        ],
    )
}

fn session_headers(name: &str, s: &Session) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{}", s.id)),
        ("range", upload_range(s.size)),
        ("docker-upload-uuid", s.id.clone()),
        ("content-length", "0".into()),
    ]
}

/// `POST /v2/<name>/blobs/uploads/`: mount, monolithic upload, or a new session.
pub async fn start(app: &App, name: &str, req: &Req, body: Body) -> Result<Response, ApiError> {
    if let Some(alg) = req.query.get("digest-algorithm") {
        if alg != "sha256" {
            return Err(ApiError::new(
                Code::DigestInvalid,
                "unsupported digest algorithm (only sha256)",
            ));
        }
    }
    if let Some(mount) = req.query.get("mount") {
        // A mount that cannot be done falls back to a new session, as the spec asks.
        if let Ok(d) = Digest::parse(mount) {
            let present = match req.query.get("from") {
                Some(from) if crate::names::valid_name(from) => {
                    app.store.linked_blob_size(from, &d)?.is_some()
                }
                Some(_) => false,
                // `from` is optional: this registry has no per-repository read permissions.
                None => app.store.blob_size(&d)?.is_some(),
            };
            if present {
                let (store, n, dd) = (app.store.clone(), name.to_string(), d.clone());
                blocking(move || store.link_blob(&n, &dd)).await?;
                return Ok(created(name, &d));
            }
        }
    } else if let Some(digest) = req.query.get("digest") {
        let d = parse_digest(digest)?;
        let (tmp, actual) = receive_blob(&app.store, body).await?;
        if actual != d {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ApiError::new(
                Code::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .with_detail(
                serde_json::json!({"expected": d.to_string(), "actual": actual.to_string()}),
            ));
        }
        let (store, n, dd) = (app.store.clone(), name.to_string(), d.clone());
        blocking(move || {
            store.publish_blob(&tmp, &dd)?;
            store.link_blob(&n, &dd)
        })
        .await?;
        return Ok(created(name, &d));
    }
    let (uploads, n) = (app.uploads.clone(), name.to_string());
    let id = blocking(move || uploads.create(&n)).await?;
    let h = app.uploads.get(name, &id)?;
    let s = h.session.lock().await;
    Ok(empty(StatusCode::ACCEPTED, &session_headers(name, &s)))
}

/// Checks a chunk's `Content-Range` against the session: the expected length, or 416.
fn check_range(name: &str, s: &Session, req: &Req) -> Result<Option<u64>, ApiError> {
    let Some(h) = req.header(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let out_of_order = |msg: String| {
        let mut e = ApiError::new(Code::BlobUploadInvalid, msg)
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
        for (k, v) in session_headers(name, s) {
            if k != "content-length" {
                e = e.with_header(header::HeaderName::from_static(k), v);
            }
        }
        e
    };
    let (start, end) = parse_content_range(h)
        .ok_or_else(|| out_of_order(format!("invalid Content-Range {h:?}")))?;
    if start != s.size {
        return Err(out_of_order(format!(
            "chunk starts at {start}, the upload is at {}",
            s.size
        )));
    }
    Ok(Some(end - start + 1))
}

fn upload_unknown() -> ApiError {
    ApiError::new(Code::BlobUploadUnknown, "blob upload unknown to registry")
}

pub async fn patch(
    app: &App,
    name: &str,
    id: &str,
    req: &Req,
    body: Body,
) -> Result<Response, ApiError> {
    let h = app.uploads.get(name, id)?;
    let mut s = h.session.lock().await;
    if s.closed {
        return Err(upload_unknown());
    }
    let expect = check_range(name, &s, req)?;
    app.uploads.append(&mut s, body, expect).await?;
    Ok(empty(StatusCode::ACCEPTED, &session_headers(name, &s)))
}

/// The closing `PUT ...?digest=`, with an optional last chunk.
pub async fn finish(
    app: &App,
    name: &str,
    id: &str,
    req: &Req,
    body: Body,
) -> Result<Response, ApiError> {
    let h = app.uploads.get(name, id)?;
    let mut s = h.session.lock().await;
    if s.closed {
        return Err(upload_unknown());
    }
    let d = parse_digest(req.query.get("digest").ok_or_else(|| {
        ApiError::new(
            Code::DigestInvalid,
            "the digest query parameter is required",
        )
    })?)?;
    let expect = check_range(name, &s, req)?;
    app.uploads.append(&mut s, body, expect).await?;
    match app.uploads.finish(name, &mut s, &d).await {
        Ok(()) => {
            app.uploads.remove(&mut s)?;
            Ok(created(name, &d))
        }
        Err(e) => {
            // A digest mismatch ends the session (as registry:2): nothing was published.
            if e.code() == Some(Code::DigestInvalid) {
                app.uploads.remove(&mut s)?;
            }
            Err(e)
        }
    }
}

pub async fn status(app: &App, name: &str, id: &str) -> Result<Response, ApiError> {
    let h = app.uploads.get(name, id)?;
    let s = h.session.lock().await;
    if s.closed {
        return Err(upload_unknown());
    }
    Ok(empty(StatusCode::NO_CONTENT, &session_headers(name, &s)))
}

pub async fn cancel(app: &App, name: &str, id: &str) -> Result<Response, ApiError> {
    let h = app.uploads.get(name, id)?;
    let mut s = h.session.lock().await;
    if s.closed {
        return Err(upload_unknown());
    }
    app.uploads.remove(&mut s)?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}
