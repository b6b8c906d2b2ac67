//! Manifest endpoints: HEAD/GET by tag or digest, PUT (size cap, JSON checks, referenced blobs
//! and manifests present, `?tag=` on digest pushes), DELETE, and the referrers list.

use super::{blocking, digest_error, empty, App, Req};
use crate::error::{ApiError, Code};
use crate::manifest::{Manifest, MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::names::{valid_tag, Digest, DigestError, Reference};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

fn manifest_unknown(reference: &str) -> ApiError {
    ApiError::new(Code::ManifestUnknown, "manifest unknown to registry")
        .with_detail(serde_json::json!({ "reference": reference }))
}

fn name_unknown(name: &str) -> ApiError {
    ApiError::new(Code::NameUnknown, "repository name not known to registry")
        .with_detail(serde_json::json!({ "name": name }))
}

/// The digest a URL reference names in `name`, or the matching 404.
fn resolve(app: &App, name: &str, reference: &str) -> Result<Digest, ApiError> {
    let unknown = || {
        if app.store.repo_exists(name) {
            manifest_unknown(reference)
        } else {
            name_unknown(name)
        }
    };
    match Reference::parse(reference) {
        Ok(Reference::Digest(d)) => Ok(d),
        Ok(Reference::Tag(t)) => app.store.resolve_tag(name, &t)?.ok_or_else(unknown),
        // Another algorithm names nothing stored here.
        Err(DigestError::Unsupported) => Err(unknown()),
        Err(e) if reference.contains(':') => Err(digest_error(reference, e)),
        Err(DigestError::Invalid) => Err(unknown()),
    }
}

pub async fn get(app: &App, name: &str, reference: &str, head: bool) -> Result<Response, ApiError> {
    let d = resolve(app, name, reference)?;
    let (store, n, dd) = (app.store.clone(), name.to_string(), d.clone());
    let stored = blocking(move || store.read_manifest(&n, &dd))
        .await?
        .ok_or_else(|| manifest_unknown(reference))?;
    let headers = [
        ("content-type", stored.media_type.clone()),
        ("content-length", stored.bytes.len().to_string()),
        ("docker-content-digest", d.to_string()),
        ("etag", format!("\"{d}\"")),
    ];
    if head {
        return Ok(empty(StatusCode::OK, &headers));
    }
    let mut resp = (StatusCode::OK, stored.bytes).into_response();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

fn too_large() -> ApiError {
    ApiError::new(
        Code::ManifestInvalid,
        format!("manifest larger than {MAX_MANIFEST_SIZE} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// An oversized manifest body up to this size is read and dropped before the 413, so that the
/// client gets the answer rather than a reset connection.
const DRAIN_MAX: u64 = 16 << 20;

/// Reads a request body of at most `MAX_MANIFEST_SIZE` bytes.
async fn read_manifest_body(req: &Req, body: Body) -> Result<Vec<u8>, ApiError> {
    let announced = req
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if announced.is_some_and(|n| n > MAX_MANIFEST_SIZE as u64) {
        if announced.is_some_and(|n| n <= DRAIN_MAX) {
            while let Some(Ok(_)) = stream.next().await {}
        }
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(Code::ManifestInvalid, format!("reading the manifest: {e}"))
        })?;
        if out.len() + chunk.len() > MAX_MANIFEST_SIZE {
            let mut seen = (out.len() + chunk.len()) as u64;
            drop(out);
            while seen <= DRAIN_MAX {
                match stream.next().await {
                    Some(Ok(c)) => seen += c.len() as u64,
                    _ => break,
                }
            }
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Checks that the blobs and manifests `m` references are in repository `name`.
fn check_references(app: &App, name: &str, m: &Manifest) -> Result<(), ApiError> {
    let mut missing: Vec<String> = Vec::new();
    let mut wrong_size: Vec<String> = Vec::new();
    for b in m.blobs() {
        match &b.digest {
            Ok(d) => match app.store.linked_blob_size(name, d)? {
                None => missing.push(d.to_string()),
                Some(len) if len != b.size => wrong_size.push(d.to_string()),
                Some(_) => {}
            },
            Err(other) => missing.push(other.clone()),
        }
    }
    for c in &m.manifests {
        match &c.digest {
            Ok(d) => {
                if app.store.manifest_media_type(name, d)?.is_none() {
                    missing.push(d.to_string());
                } else if app.store.blob_size(d)? != Some(c.size) {
                    wrong_size.push(d.to_string());
                }
            }
            Err(other) => missing.push(other.clone()),
        }
    }
    if !missing.is_empty() {
        let mut err = ApiError::new(Code::ManifestBlobUnknown, "");
        err.errors = missing
            .into_iter()
            .map(|d| {
                (
                    Code::ManifestBlobUnknown,
                    "manifest references a manifest or blob unknown to registry".to_string(),
                    serde_json::json!({ "digest": d }),
                )
            })
            .collect();
        return Err(err);
    }
    if !wrong_size.is_empty() {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "a descriptor's size does not match the stored content",
        )
        .with_detail(serde_json::json!({ "digests": wrong_size })));
    }
    Ok(())
}

pub async fn put(
    app: &App,
    name: &str,
    reference: &str,
    req: &Req,
    body: Body,
) -> Result<Response, ApiError> {
    let (expected, mut tags) = match Reference::parse(reference) {
        Ok(Reference::Tag(t)) => (None, vec![t]),
        Ok(Reference::Digest(d)) => (Some(d), Vec::new()),
        Err(e) if reference.contains(':') => return Err(digest_error(reference, e)),
        Err(_) => {
            return Err(ApiError::new(Code::ManifestInvalid, "invalid tag")
                .with_detail(serde_json::json!({ "tag": reference })))
        }
    };
    // `PUT .../manifests/<digest>?tag=a&tag=b` also sets those tags.
    if expected.is_some() {
        for t in req.query.all("tag") {
            if !valid_tag(t) {
                return Err(ApiError::new(Code::ManifestInvalid, "invalid tag")
                    .with_detail(serde_json::json!({ "tag": t })));
            }
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }
    }
    let bytes = read_manifest_body(req, body).await?;
    let d = Digest::of(&bytes);
    if let Some(e) = &expected {
        if e != &d {
            return Err(ApiError::new(
                Code::DigestInvalid,
                "the manifest's digest does not match the reference",
            )
            .with_detail(serde_json::json!({"expected": e.to_string(), "actual": d.to_string()})));
        }
    }
    let m = Manifest::parse(&bytes, req.header(header::CONTENT_TYPE))?;
    check_references(app, name, &m)?;
    let (store, n, dd) = (app.store.clone(), name.to_string(), d.clone());
    let (media_type, subject, t) = (m.media_type.clone(), m.subject.clone(), tags.clone());
    blocking(move || {
        store.put_blob_bytes(&bytes)?;
        store.link_manifest(&n, &dd, &media_type, subject.as_ref(), &t)
    })
    .await?;
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{d}")),
        ("docker-content-digest", d.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(s) = &m.subject {
        headers.push(("oci-subject", s.to_string()));
    }
    if expected.is_some() {
        headers.extend(tags.iter().map(|t| ("oci-tag", t.clone())));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

pub async fn delete(app: &App, name: &str, reference: &str) -> Result<Response, ApiError> {
    if !app.store.repo_exists(name) {
        return Err(name_unknown(name));
    }
    let (store, n) = (app.store.clone(), name.to_string());
    let removed = match Reference::parse(reference) {
        Ok(Reference::Tag(t)) => blocking(move || store.delete_tag(&n, &t)).await?,
        Ok(Reference::Digest(d)) => blocking(move || store.delete_manifest(&n, &d)).await?,
        Err(DigestError::Unsupported) => false,
        Err(e) if reference.contains(':') => return Err(digest_error(reference, e)),
        Err(DigestError::Invalid) => false,
    };
    if removed {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(manifest_unknown(reference))
    }
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`: an OCI index of the manifests of `name`
/// whose subject is `<digest>`; empty (never 404) when there are none.
pub async fn referrers(
    app: &App,
    name: &str,
    digest: &str,
    req: &Req,
) -> Result<Response, ApiError> {
    let subject = match Digest::parse(digest) {
        Ok(d) => Some(d),
        Err(DigestError::Unsupported) => None,
        Err(e) => return Err(digest_error(digest, e)),
    };
    let filter = req.query.get("artifactType").map(str::to_string);
    let (store, n) = (app.store.clone(), name.to_string());
    let f = filter.clone();
    let list = blocking(move || {
        let mut out = Vec::new();
        let Some(subject) = subject else {
            return Ok(out);
        };
        for d in store.referrers(&n, &subject)? {
            let Some(stored) = store.read_manifest(&n, &d)? else {
                continue;
            };
            let Ok(m) = Manifest::parse(&stored.bytes, Some(&stored.media_type)) else {
                continue;
            };
            let artifact_type = m.referrer_artifact_type();
            if f.as_ref()
                .is_some_and(|want| artifact_type.as_ref() != Some(want))
            {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": stored.media_type,
                "digest": d.to_string(),
                "size": stored.bytes.len(),
            });
            if let Some(a) = artifact_type {
                desc["artifactType"] = a.into();
            }
            if let Some(a) = m.annotations {
                desc["annotations"] = a.into();
            }
            out.push(desc);
        }
        Ok(out)
    })
    .await?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": list,
    });
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OCI_INDEX)],
        body.to_string(),
    )
        .into_response();
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
