//! Request dispatch: authentication, the `Docker-Distribution-API-Version` header, and the
//! parsing of `/v2/<name>/...` paths whose `<name>` spans several segments.

mod blobs;
mod lists;
mod manifests;

use crate::auth::Htpasswd;
use crate::error::{ApiError, Code};
use crate::names::{valid_name, Digest, DigestError};
use crate::storage::Store;
use crate::upload::Uploads;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    pub store: Store,
    pub uploads: Arc<Uploads>,
    pub auth: Option<Htpasswd>,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

const API_VERSION: &str = "docker-distribution-api-version";

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    // `docker search` pings `/v1/_ping` before searching; the answer reveals nothing.
    let ping = req.uri().path() == "/v1/_ping";
    let authorized = match &app.auth {
        None => true,
        Some(_) if ping => true,
        Some(auth) => {
            auth.check(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )
            .await
        }
    };
    let mut resp = if authorized {
        let method = req.method().clone();
        match route(&app, req).await {
            Ok(r) => r,
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::error!("{method}: {:?}", e.errors);
                }
                e.into_response()
            }
        }
    } else {
        ApiError::new(Code::Unauthorized, "authentication required")
            .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"berth-registry\"")
            .into_response()
    };
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    resp
}

/// The endpoints under `/v2/`.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

/// Splits `/v2/...` (already percent-decoded) into an endpoint. The name is everything before
/// the fixed suffix, so names with any number of components work; `None` for other paths.
fn parse_path(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    if n < 3 {
        return None;
    }
    let name = |k: usize| segs[..n - k].join("/");
    let (last, prev) = (segs[n - 1], segs[n - 2]);
    Some(match prev {
        "tags" if last == "list" => Endpoint::Tags(name(2)),
        "manifests" => Endpoint::Manifest(name(2), last.to_string()),
        "referrers" => Endpoint::Referrers(name(2), last.to_string()),
        "blobs" if last == "uploads" => Endpoint::UploadStart(name(2)),
        "blobs" => Endpoint::Blob(name(2), last.to_string()),
        "uploads" if n >= 4 && segs[n - 3] == "blobs" => {
            if last.is_empty() {
                Endpoint::UploadStart(name(3))
            } else {
                Endpoint::Upload(name(3), last.to_string())
            }
        }
        _ => return None,
    })
}

/// Decodes `%XX` escapes; `None` for bad escapes or non-UTF-8 results.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Query parameters in order (repeated keys kept).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    fn from_uri(uri: &Uri) -> Query {
        Query(
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                .map(|q| q.0)
                .unwrap_or_default(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The request's head, as handlers get it (the body is passed apart: it is not `Sync`).
pub struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
}

impl Req {
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn not_found() -> ApiError {
    ApiError::new(Code::Unsupported, "no such endpoint").with_status(StatusCode::NOT_FOUND)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(Code::Unsupported, "method not allowed for this endpoint")
}

async fn route(app: &App, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = percent_decode(parts.uri.path()).ok_or_else(not_found)?;
    let r = Req {
        method: parts.method,
        headers: parts.headers,
        query: Query::from_uri(&parts.uri),
    };
    let get_or_head = r.method == Method::GET || r.method == Method::HEAD;
    if path == "/v1/_ping" {
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::HeaderName::from_static("x-docker-registry-standalone"),
                    "true",
                ),
            ],
            r#"{"standalone":true}"#,
        )
            .into_response());
    }
    if path == "/v1/search" {
        return if r.method == Method::GET {
            lists::search(app, &r).await
        } else {
            Err(method_not_allowed())
        };
    }
    let endpoint = parse_path(&path).ok_or_else(not_found)?;
    let name = match &endpoint {
        Endpoint::Base | Endpoint::Catalog => None,
        Endpoint::Tags(n)
        | Endpoint::Manifest(n, _)
        | Endpoint::Blob(n, _)
        | Endpoint::UploadStart(n)
        | Endpoint::Upload(n, _)
        | Endpoint::Referrers(n, _) => Some(n.as_str()),
    };
    if let Some(n) = name {
        if !valid_name(n) {
            return Err(ApiError::new(Code::NameInvalid, "invalid repository name")
                .with_detail(serde_json::json!({ "name": n })));
        }
    }
    match (endpoint, r.method.clone()) {
        (Endpoint::Base, _) if get_or_head => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        (Endpoint::Catalog, Method::GET) => lists::catalog(app, &r).await,
        (Endpoint::Tags(n), Method::GET) => lists::tags(app, &n, &r).await,
        (Endpoint::Referrers(n, d), Method::GET) => manifests::referrers(app, &n, &d, &r).await,
        (Endpoint::Manifest(n, re), m) if get_or_head => {
            manifests::get(app, &n, &re, m == Method::HEAD).await
        }
        (Endpoint::Manifest(n, re), Method::PUT) => manifests::put(app, &n, &re, &r, body).await,
        (Endpoint::Manifest(n, re), Method::DELETE) => manifests::delete(app, &n, &re).await,
        (Endpoint::Blob(n, d), m) if get_or_head => {
            blobs::get(app, &n, &d, m == Method::HEAD, &r).await
        }
        (Endpoint::Blob(n, d), Method::DELETE) => blobs::delete(app, &n, &d).await,
        (Endpoint::UploadStart(n), Method::POST) => blobs::start(app, &n, &r, body).await,
        (Endpoint::Upload(n, id), Method::PATCH) => blobs::patch(app, &n, &id, &r, body).await,
        (Endpoint::Upload(n, id), Method::PUT) => blobs::finish(app, &n, &id, &r, body).await,
        (Endpoint::Upload(n, id), Method::GET) => blobs::status(app, &n, &id).await,
        (Endpoint::Upload(n, id), Method::DELETE) => blobs::cancel(app, &n, &id).await,
        _ => Err(method_not_allowed()),
    }
}

/// 400 `DIGEST_INVALID` for a digest that is malformed or not sha256.
pub fn digest_error(s: &str, e: DigestError) -> ApiError {
    let msg = match e {
        DigestError::Invalid => "invalid digest",
        DigestError::Unsupported => "unsupported digest algorithm (only sha256)",
    };
    ApiError::new(Code::DigestInvalid, msg).with_detail(serde_json::json!({ "digest": s }))
}

/// Parses a digest from a URL or query.
pub fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| digest_error(s, e))
}

/// Runs blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(std::io::Error::other(e)))?
        .map_err(ApiError::internal)
}

/// A response without body, with the given headers.
pub fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut resp = (status, Body::empty()).into_response();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Option<Endpoint> {
        parse_path(path)
    }

    #[test]
    fn paths_with_multi_component_names() {
        assert_eq!(p("/v2/"), Some(Endpoint::Base));
        assert_eq!(p("/v2"), Some(Endpoint::Base));
        assert_eq!(p("/v2/_catalog"), Some(Endpoint::Catalog));
        assert_eq!(
            p("/v2/a/b/c/tags/list"),
            Some(Endpoint::Tags("a/b/c".into()))
        );
        assert_eq!(
            p("/v2/a/manifests/latest"),
            Some(Endpoint::Manifest("a".into(), "latest".into()))
        );
        assert_eq!(
            p("/v2/x/blobs/manifests/v1"),
            Some(Endpoint::Manifest("x/blobs".into(), "v1".into()))
        );
        assert_eq!(
            p("/v2/a/b/blobs/sha256:00"),
            Some(Endpoint::Blob("a/b".into(), "sha256:00".into()))
        );
        assert_eq!(
            p("/v2/a/b/blobs/uploads/"),
            Some(Endpoint::UploadStart("a/b".into()))
        );
        assert_eq!(
            p("/v2/a/blobs/uploads"),
            Some(Endpoint::UploadStart("a".into()))
        );
        assert_eq!(
            p("/v2/a/b/blobs/uploads/abc"),
            Some(Endpoint::Upload("a/b".into(), "abc".into()))
        );
        // A repository called `<x>/blobs/uploads` still has blobs.
        assert_eq!(
            p("/v2/x/blobs/uploads/blobs/sha256:00"),
            Some(Endpoint::Blob("x/blobs/uploads".into(), "sha256:00".into()))
        );
        assert_eq!(
            p("/v2/a/referrers/sha256:00"),
            Some(Endpoint::Referrers("a".into(), "sha256:00".into()))
        );
        assert_eq!(p("/v2/a/b"), None);
        assert_eq!(p("/v2/a/nothing/here"), None);
        assert_eq!(p("/v1/other"), None);
        assert_eq!(p("/v2x/a/tags/list"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("sha256%3Aab").as_deref(), Some("sha256:ab"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
