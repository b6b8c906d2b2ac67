//! The registry client: endpoint choice (scheme, mirrors), the 401 challenge / token flow with a
//! token cache, redirects, and the pull, push, login and tags operations.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, LINK, LOCATION, RANGE, USER_AGENT, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use url::Url;

use crate::auth::{parse_www_authenticate, Challenge, Credentials};
use crate::body::{self, BlobStream, Body, FileBody};
use crate::config::{parse_mirror, ClientConfig, Insecure, RegistryName};
use crate::digest::{digest_with, parse_digest, sha256_digest, Algorithm};
use crate::manifest::{parse_manifest, Manifest, MAX_MANIFEST_SIZE};
use crate::media::MANIFEST_ACCEPT;
use crate::transport::{describe_transport_error, lock, Connector, TlsConfigs};
use crate::Error;

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
const MAX_REDIRECTS: usize = 10;
const MAX_TAG_PAGES: usize = 10_000;
const MAX_TAGS_PAGE: usize = 16 << 20;
const MAX_TOKEN_RESPONSE: usize = 1 << 20;
const MAX_CACHED_TOKENS: usize = 1024;
/// Shortest token lifetime assumed, as the token spec prescribes.
const MIN_TOKEN_LIFETIME: u64 = 60;
const CLIENT_ID: &str = "berth";

/// A registry client. Cheap to clone (clones share the connection pool, the learned
/// challenges and the token cache).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HyperClient<Connector, Body>,
    insecure: Arc<Insecure>,
    mirrors: HashMap<String, Vec<Url>>,
    certs_dir: PathBuf,
    user_agent: HeaderValue,
    monolithic_threshold: u64,
    chunk_size: u64,
    /// Challenge last seen per origin, to authorize the next request up front.
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Scheme that worked for an insecure registry (https or http), tried first next time.
    schemes: Mutex<HashMap<String, &'static str>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    origin: String,
    realm: String,
    service: String,
    scopes: String,
    creds: [u8; 32],
}

struct CachedToken {
    token: String,
    valid_until: Instant,
}

/// Where a request may go: a mirror or the registry over one scheme.
#[derive(Clone, Debug)]
struct Endpoint {
    base: Url,
    /// Any failure moves on to the next endpoint (mirrors); otherwise only transport failures
    /// do (the HTTPS attempt of an insecure registry).
    fallback_on_any_error: bool,
    /// Remember this endpoint's scheme on success (insecure registries).
    remember_scheme: Option<String>,
}

impl Endpoint {
    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u
    }
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// One HTTP exchange to make, with what the auth flow needs.
struct Req<'a> {
    method: Method,
    url: Url,
    /// Origin of the endpoint: credentials are only ever sent there.
    auth_origin: String,
    headers: HeaderMap,
    body: BodySource,
    scopes: Vec<String>,
    creds: &'a Credentials,
    target: &'a str,
    follow_redirects: bool,
}

enum BodySource {
    Empty,
    Bytes(Bytes),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        sent: Arc<AtomicU64>,
    },
}

impl<'a> Req<'a> {
    fn new(
        method: Method,
        ep: &Endpoint,
        url: Url,
        creds: &'a Credentials,
        target: &'a str,
    ) -> Req<'a> {
        Req {
            method,
            url,
            auth_origin: origin(&ep.base),
            headers: HeaderMap::new(),
            body: BodySource::Empty,
            scopes: Vec::new(),
            creds,
            target,
            follow_redirects: false,
        }
    }

    fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    fn scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    fn body(mut self, body: BodySource) -> Self {
        self.body = body;
        self
    }

    fn redirects(mut self) -> Self {
        self.follow_redirects = true;
        self
    }
}

fn hv(s: &str, target: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(s).map_err(|_| Error::InvalidResponse {
        target: target.to_string(),
        message: format!("value not usable in an HTTP header: {s:?}"),
    })
}

fn header_str(headers: &HeaderMap, name: impl hyper::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

fn invalid_response(target: &str, message: impl Into<String>) -> Error {
    Error::InvalidResponse {
        target: target.to_string(),
        message: message.into(),
    }
}

/// Repository names as the distribution spec allows them: lower-case alphanumeric path
/// components separated by `/`, with single `.`/`_`/`__`/`-`… separators inside components.
fn check_repo(repo: &str) -> Result<(), Error> {
    let bad = |reason| Error::InvalidInput {
        what: "repository name",
        value: repo.to_string(),
        reason,
    };
    if repo.is_empty() || repo.len() > 255 {
        return Err(bad("must be 1 to 255 characters"));
    }
    for comp in repo.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty()
            || !b.first().is_some_and(alnum)
            || !b.last().is_some_and(alnum)
            || !b
                .iter()
                .all(|c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
            || comp.contains("..")
        {
            return Err(bad(
                "components must be lower-case letters and digits joined by '.', '_' or '-'",
            ));
        }
    }
    Ok(())
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest; returns the digest algorithm for a
/// digest.
fn check_reference(reference: &str) -> Result<Option<Algorithm>, Error> {
    if reference.contains(':') {
        return parse_digest(reference).map(Some);
    }
    let b = reference.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    if b.is_empty()
        || b.len() > 128
        || !b.first().is_some_and(word)
        || !b.iter().all(|c| word(c) || *c == b'.' || *c == b'-')
    {
        return Err(Error::InvalidInput {
            what: "tag",
            value: reference.to_string(),
            reason: "must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        });
    }
    Ok(None)
}

fn manifest_target(registry: &str, repo: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("{registry}/{repo}@{reference}")
    } else {
        format!("{registry}/{repo}:{reference}")
    }
}

/// The `rel="next"` URL of a `Link` header.
pub(crate) fn link_next(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let url = &after[..end];
        let params_end = after[end + 1..]
            .find('<')
            .map_or(after.len(), |i| end + 1 + i);
        let params = &after[end + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(url.trim().to_string());
        }
        rest = &after[params_end..];
    }
    None
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Run `fut`, reporting `base + sent` through `progress` every 200 ms while it runs.
async fn with_progress<F: Future>(
    fut: F,
    base: u64,
    sent: &AtomicU64,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> F::Output {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = None;
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                let now = base + sent.load(Ordering::Relaxed);
                if last != Some(now) {
                    progress(now);
                    last = Some(now);
                }
            }
        }
    }
}

impl Client {
    /// Build a client; validates the insecure-registry entries and mirror URLs.
    pub fn new(cfg: ClientConfig) -> Result<Client, Error> {
        let insecure = Arc::new(Insecure::parse(&cfg.insecure_registries)?);
        let mut mirrors = HashMap::new();
        for (registry, urls) in &cfg.mirrors {
            let name = RegistryName::parse(registry)
                .map_err(|e| Error::Config(format!("mirrors of {registry:?}: {e}")))?;
            let parsed = urls
                .iter()
                .map(|u| parse_mirror(u))
                .collect::<Result<Vec<_>, _>>()?;
            mirrors.insert(name.authority, parsed);
        }
        if cfg.chunk_size == 0 {
            return Err(Error::Config("chunk_size must be at least 1".into()));
        }
        let user_agent = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|_| Error::Config(format!("invalid user agent {:?}", cfg.user_agent)))?;
        let tls = Arc::new(TlsConfigs::new(cfg.certs_dir.clone(), insecure.clone()));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(8)
            .build(Connector::new(tls));
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                insecure,
                mirrors,
                certs_dir: cfg.certs_dir,
                user_agent,
                monolithic_threshold: cfg.monolithic_threshold,
                chunk_size: cfg.chunk_size,
                challenges: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                schemes: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Check credentials against a registry: `GET /v2/`, answering its challenge. A registry
    /// that asks for no authentication accepts any credentials, as with Docker.
    pub async fn login(&self, registry: &str, creds: &Credentials) -> Result<(), Error> {
        let eps = self.endpoints(registry, false).await?;
        self.attempt(&eps, |ep| async move {
            let url = ep.url("/v2/");
            let resp = self
                .execute(Req::new(Method::GET, &ep, url, creds, registry))
                .await?;
            let resp = self.check_status(resp, &[StatusCode::OK], registry).await?;
            body::drain(resp.into_body()).await;
            Ok(())
        })
        .await
    }

    /// A manifest or index by tag or digest. The digest is computed from the bytes and checked
    /// against the requested digest, or against `Docker-Content-Digest` for a tag.
    pub async fn get_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
        creds: &Credentials,
    ) -> Result<Manifest, Error> {
        check_repo(repo)?;
        let by_digest = check_reference(reference)?;
        let eps = self.endpoints(registry, true).await?;
        let target = manifest_target(registry, repo, reference);
        self.attempt(&eps, |ep| {
            self.manifest_at(ep, repo, reference, by_digest, creds, &target)
        })
        .await
    }

    async fn manifest_at(
        &self,
        ep: Endpoint,
        repo: &str,
        reference: &str,
        by_digest: Option<Algorithm>,
        creds: &Credentials,
        target: &str,
    ) -> Result<Manifest, Error> {
        let url = ep.url(&format!("/v2/{repo}/manifests/{reference}"));
        let req = Req::new(Method::GET, &ep, url, creds, target)
            .header(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT))
            .scopes(vec![pull_scope(repo)])
            .redirects();
        let resp = self.execute(req).await?;
        let resp = self.check_status(resp, &[StatusCode::OK], target).await?;
        let headers = resp.headers().clone();
        let limit = MAX_MANIFEST_SIZE as u64;
        if let Some(len) = content_length(&headers).filter(|l| *l > limit) {
            return Err(Error::ManifestTooLarge { size: len, limit });
        }
        let bytes = body::read_limited(resp.into_body(), MAX_MANIFEST_SIZE, target)
            .await?
            .ok_or(Error::ManifestTooLarge {
                size: limit + 1,
                limit,
            })?;
        let parsed = parse_manifest(&bytes, header_str(&headers, CONTENT_TYPE))?;
        let digest = match (by_digest, header_str(&headers, DOCKER_CONTENT_DIGEST)) {
            (Some(alg), _) => {
                let actual = digest_with(alg, &bytes);
                if actual != reference {
                    return Err(Error::DigestMismatch {
                        expected: reference.to_string(),
                        actual,
                    });
                }
                actual
            }
            (None, Some(announced)) => {
                let alg = parse_digest(announced)
                    .map_err(|e| invalid_response(target, format!("Docker-Content-Digest: {e}")))?;
                let actual = digest_with(alg, &bytes);
                if actual != announced {
                    return Err(Error::DigestMismatch {
                        expected: announced.to_string(),
                        actual,
                    });
                }
                actual
            }
            (None, None) => sha256_digest(&bytes),
        };
        Ok(Manifest {
            bytes,
            media_type: parsed.media_type().to_string(),
            digest,
            parsed,
        })
    }

    /// A blob as a stream of chunks with its declared size. Redirects (to storage) are
    /// followed without sending credentials to other hosts. The caller checks the content with
    /// [`crate::DigestVerifier`].
    pub async fn get_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &str,
        size_hint: Option<u64>,
        creds: &Credentials,
    ) -> Result<BlobStream, Error> {
        check_repo(repo)?;
        parse_digest(digest)?;
        let eps = self.endpoints(registry, true).await?;
        let target = format!("{registry}/{repo}@{digest}");
        self.attempt(&eps, |ep| {
            let target = target.clone();
            async move {
                let url = ep.url(&format!("/v2/{repo}/blobs/{digest}"));
                let req = Req::new(Method::GET, &ep, url, creds, &target)
                    .scopes(vec![pull_scope(repo)])
                    .redirects();
                let resp = self.execute(req).await?;
                let resp = self.check_status(resp, &[StatusCode::OK], &target).await?;
                let declared = content_length(resp.headers());
                if let (Some(declared), Some(hint)) = (declared, size_hint) {
                    if declared != hint {
                        return Err(Error::SizeMismatch {
                            digest: digest.to_string(),
                            expected: hint,
                            actual: declared,
                        });
                    }
                }
                Ok(BlobStream::new(
                    resp.into_body(),
                    declared.or(size_hint),
                    target,
                ))
            }
        })
        .await
    }

    /// Size of a blob if the repository has it (`HEAD`), `None` if not.
    pub async fn blob_exists(
        &self,
        registry: &str,
        repo: &str,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Option<u64>, Error> {
        check_repo(repo)?;
        parse_digest(digest)?;
        let eps = self.endpoints(registry, false).await?;
        let target = format!("{registry}/{repo}@{digest}");
        self.attempt(&eps, |ep| {
            let target = target.clone();
            async move {
                let url = ep.url(&format!("/v2/{repo}/blobs/{digest}"));
                let req = Req::new(Method::HEAD, &ep, url, creds, &target)
                    .scopes(vec![pull_scope(repo)])
                    .redirects();
                let resp = self.execute(req).await?;
                if resp.status() == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let resp = self.check_status(resp, &[StatusCode::OK], &target).await?;
                content_length(resp.headers()).map(Some).ok_or_else(|| {
                    invalid_response(&target, "HEAD of a blob without Content-Length")
                })
            }
        })
        .await
    }

    /// Ask the registry to mount a blob from another repository (cross-repository mount).
    /// `true` if it did; `false` if it declined (the upload it opened instead is cancelled).
    pub async fn mount_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &str,
        from_repo: &str,
        creds: &Credentials,
    ) -> Result<bool, Error> {
        check_repo(repo)?;
        check_repo(from_repo)?;
        parse_digest(digest)?;
        let eps = self.endpoints(registry, false).await?;
        let target = format!("{registry}/{repo}@{digest}");
        self.attempt(&eps, |ep| {
            let target = target.clone();
            async move {
                let mut url = ep.url(&format!("/v2/{repo}/blobs/uploads/"));
                url.query_pairs_mut()
                    .append_pair("mount", digest)
                    .append_pair("from", from_repo);
                let req = Req::new(Method::POST, &ep, url.clone(), creds, &target)
                    .header(CONTENT_LENGTH, HeaderValue::from_static("0"))
                    .scopes(vec![push_scope(repo), pull_scope(from_repo)]);
                let resp = self.execute(req).await?;
                let resp = self
                    .check_status(resp, &[StatusCode::CREATED, StatusCode::ACCEPTED], &target)
                    .await?;
                if resp.status() == StatusCode::CREATED {
                    body::drain(resp.into_body()).await;
                    return Ok(true);
                }
                let location = self.location(&resp, &url, &target);
                body::drain(resp.into_body()).await;
                if let Ok(location) = location {
                    self.cancel_upload(&ep, location, repo, creds, &target)
                        .await;
                }
                Ok(false)
            }
        })
        .await
    }

    /// Upload a blob from a file: one `PUT` up to the monolithic threshold, `PATCH` chunks
    /// beyond it. `progress` receives the number of bytes sent so far (monotonic within an
    /// attempt; it ends at the file size on success).
    pub async fn push_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &str,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
        creds: &Credentials,
    ) -> Result<(), Error> {
        check_repo(repo)?;
        parse_digest(digest)?;
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let eps = self.endpoints(registry, false).await?;
        let target = format!("{registry}/{repo}@{digest}");
        self.attempt(&eps, |ep| {
            self.push_blob_at(ep, repo, digest, path, size, progress, creds, &target)
        })
        .await?;
        progress(size);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_blob_at(
        &self,
        ep: Endpoint,
        repo: &str,
        digest: &str,
        path: &Path,
        size: u64,
        progress: &(dyn Fn(u64) + Send + Sync),
        creds: &Credentials,
        target: &str,
    ) -> Result<(), Error> {
        let start = ep.url(&format!("/v2/{repo}/blobs/uploads/"));
        let req = Req::new(Method::POST, &ep, start.clone(), creds, target)
            .header(CONTENT_LENGTH, HeaderValue::from_static("0"))
            .scopes(vec![push_scope(repo)]);
        let resp = self.execute(req).await?;
        let resp = self
            .check_status(resp, &[StatusCode::ACCEPTED], target)
            .await?;
        let mut location = self.location(&resp, &start, target)?;
        body::drain(resp.into_body()).await;
        let up = Upload {
            ep: &ep,
            repo,
            digest,
            path,
            size,
            progress,
            creds,
            target,
        };
        let result = self.upload(&up, &mut location).await;
        if result.is_err() {
            self.cancel_upload(&ep, location, repo, creds, target).await;
        }
        result
    }

    async fn upload(&self, up: &Upload<'_>, location: &mut Url) -> Result<(), Error> {
        let octets = HeaderValue::from_static("application/octet-stream");
        let sent = Arc::new(AtomicU64::new(0));
        let mut offset = 0;
        if up.size > self.inner.monolithic_threshold {
            while offset < up.size {
                let len = self.inner.chunk_size.min(up.size - offset);
                let range = format!("{offset}-{}", offset + len - 1);
                let req = Req::new(Method::PATCH, up.ep, location.clone(), up.creds, up.target)
                    .header(CONTENT_TYPE, octets.clone())
                    .header(CONTENT_LENGTH, HeaderValue::from(len))
                    .header(CONTENT_RANGE, hv(&range, up.target)?)
                    .scopes(vec![push_scope(up.repo)])
                    .body(BodySource::File {
                        path: up.path.to_path_buf(),
                        offset,
                        len,
                        sent: sent.clone(),
                    });
                let resp = with_progress(self.execute(req), offset, &sent, up.progress).await?;
                let resp = self
                    .check_status(resp, &[StatusCode::ACCEPTED], up.target)
                    .await?;
                // `Range: 0-<last byte>` tells how much the registry holds.
                if let Some(r) = header_str(resp.headers(), RANGE) {
                    let end = r
                        .trim()
                        .trim_start_matches("bytes=")
                        .split_once('-')
                        .and_then(|(_, e)| e.parse::<u64>().ok());
                    if end != Some(offset + len - 1) {
                        return Err(invalid_response(
                            up.target,
                            format!(
                                "after a chunk up to byte {} the registry reports Range {r:?}",
                                offset + len - 1
                            ),
                        ));
                    }
                }
                *location = self.location(&resp, location, up.target)?;
                body::drain(resp.into_body()).await;
                offset += len;
                (up.progress)(offset);
            }
        }
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", up.digest);
        let mut req = Req::new(Method::PUT, up.ep, url, up.creds, up.target)
            .header(CONTENT_TYPE, octets)
            .scopes(vec![push_scope(up.repo)]);
        if offset < up.size {
            req = req
                .header(CONTENT_LENGTH, HeaderValue::from(up.size))
                .body(BodySource::File {
                    path: up.path.to_path_buf(),
                    offset: 0,
                    len: up.size,
                    sent: sent.clone(),
                });
        } else {
            req = req.header(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        let resp = with_progress(self.execute(req), 0, &sent, up.progress).await?;
        let resp = self
            .check_status(resp, &[StatusCode::CREATED], up.target)
            .await?;
        if let Some(announced) = header_str(resp.headers(), DOCKER_CONTENT_DIGEST) {
            if announced != up.digest {
                return Err(Error::DigestMismatch {
                    expected: up.digest.to_string(),
                    actual: announced.to_string(),
                });
            }
        }
        body::drain(resp.into_body()).await;
        Ok(())
    }

    /// Best-effort `DELETE` of an unfinished upload.
    async fn cancel_upload(
        &self,
        ep: &Endpoint,
        location: Url,
        repo: &str,
        creds: &Credentials,
        target: &str,
    ) {
        let req =
            Req::new(Method::DELETE, ep, location, creds, target).scopes(vec![push_scope(repo)]);
        match tokio::time::timeout(Duration::from_secs(10), self.execute(req)).await {
            Ok(Ok(resp)) => {
                body::drain(resp.into_body()).await;
            }
            Ok(Err(e)) => tracing::debug!("cancelling upload: {e}"),
            Err(_) => tracing::debug!("cancelling upload of {target}: timed out"),
        }
    }

    /// Push a manifest under a tag or digest; returns its digest. The bytes must parse as a
    /// manifest or index of `media_type` (generic types like `application/json` defer to the
    /// body's `mediaType`).
    pub async fn put_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        creds: &Credentials,
    ) -> Result<String, Error> {
        check_repo(repo)?;
        let by_digest = check_reference(reference)?;
        let parsed = parse_manifest(bytes, Some(media_type))?;
        let digest = match by_digest {
            Some(alg) => {
                let actual = digest_with(alg, bytes);
                if actual != reference {
                    return Err(Error::DigestMismatch {
                        expected: reference.to_string(),
                        actual,
                    });
                }
                actual
            }
            None => sha256_digest(bytes),
        };
        let eps = self.endpoints(registry, false).await?;
        let target = manifest_target(registry, repo, reference);
        let content_type = hv(parsed.media_type(), &target)?;
        let body = Bytes::copy_from_slice(bytes);
        self.attempt(&eps, |ep| {
            let target = target.clone();
            let content_type = content_type.clone();
            let body = body.clone();
            let digest = digest.clone();
            async move {
                let url = ep.url(&format!("/v2/{repo}/manifests/{reference}"));
                let req = Req::new(Method::PUT, &ep, url, creds, &target)
                    .header(CONTENT_TYPE, content_type)
                    .header(CONTENT_LENGTH, HeaderValue::from(body.len()))
                    .scopes(vec![push_scope(repo)])
                    .body(BodySource::Bytes(body.clone()));
                let resp = self.execute(req).await?;
                let resp = self
                    .check_status(resp, &[StatusCode::CREATED], &target)
                    .await?;
                // The registry's digest may use another algorithm; compare like with like.
                if let Some(announced) = header_str(resp.headers(), DOCKER_CONTENT_DIGEST) {
                    let alg = parse_digest(announced).map_err(|e| {
                        invalid_response(&target, format!("Docker-Content-Digest: {e}"))
                    })?;
                    let mine = digest_with(alg, &body);
                    if mine != announced {
                        return Err(Error::DigestMismatch {
                            expected: mine,
                            actual: announced.to_string(),
                        });
                    }
                }
                body::drain(resp.into_body()).await;
                Ok(digest)
            }
        })
        .await
    }

    /// All tags of a repository, following `Link: <…>; rel="next"` pagination.
    /// The registry's v1 search (`GET /v1/search?q=&n=`), as `docker search` uses it: the
    /// JSON answer as the registry gives it (`{"num_results","query","results":[…]}`).
    pub async fn search(
        &self,
        registry: &str,
        query: &str,
        limit: u32,
        creds: &Credentials,
    ) -> Result<serde_json::Value, Error> {
        let eps = self.endpoints(registry, false).await?;
        let target = format!("{registry} search");
        self.attempt(&eps, |ep| {
            let target = target.clone();
            async move {
                let mut url = ep.url("/v1/search");
                url.query_pairs_mut()
                    .append_pair("q", query)
                    .append_pair("n", &limit.to_string());
                let req = Req::new(Method::GET, &ep, url, creds, &target);
                let resp = self.execute(req).await?;
                let resp = self.check_status(resp, &[StatusCode::OK], &target).await?;
                let body = body::read_limited(resp.into_body(), MAX_TAGS_PAGE, &target)
                    .await?
                    .ok_or_else(|| invalid_response(&target, "search answer over 16 MiB"))?;
                serde_json::from_slice(&body).map_err(|e| {
                    invalid_response(&target, format!("search answer is not valid JSON: {e}"))
                })
            }
        })
        .await
    }

    pub async fn tags(
        &self,
        registry: &str,
        repo: &str,
        creds: &Credentials,
    ) -> Result<Vec<String>, Error> {
        check_repo(repo)?;
        let eps = self.endpoints(registry, false).await?;
        let target = format!("{registry}/{repo}");
        self.attempt(&eps, |ep| {
            let target = target.clone();
            async move {
                let mut url = ep.url(&format!("/v2/{repo}/tags/list"));
                let mut seen = HashSet::new();
                let mut tags = Vec::new();
                for _ in 0..MAX_TAG_PAGES {
                    seen.insert(url.to_string());
                    let req = Req::new(Method::GET, &ep, url.clone(), creds, &target)
                        .scopes(vec![pull_scope(repo)]);
                    let resp = self.execute(req).await?;
                    let resp = self.check_status(resp, &[StatusCode::OK], &target).await?;
                    let next = header_str(resp.headers(), LINK).and_then(link_next);
                    let page = body::read_limited(resp.into_body(), MAX_TAGS_PAGE, &target)
                        .await?
                        .ok_or_else(|| invalid_response(&target, "tag list page over 16 MiB"))?;
                    let list: TagList = serde_json::from_slice(&page).map_err(|e| {
                        invalid_response(&target, format!("tag list is not valid JSON: {e}"))
                    })?;
                    tags.extend(list.tags.unwrap_or_default());
                    let Some(next) = next else {
                        return Ok(tags);
                    };
                    let next_url = url
                        .join(&next)
                        .map_err(|e| invalid_response(&target, format!("Link {next:?}: {e}")))?;
                    if origin(&next_url) != origin(&url) {
                        return Err(invalid_response(
                            &target,
                            format!("Link {next:?} leaves the registry"),
                        ));
                    }
                    if seen.contains(next_url.as_str()) {
                        return Ok(tags);
                    }
                    url = next_url;
                }
                Err(invalid_response(
                    &target,
                    format!("more than {MAX_TAG_PAGES} tag list pages"),
                ))
            }
        })
        .await
    }

    /// The endpoints to try for a registry, in order: mirrors (pulls only), then the registry
    /// over HTTPS or HTTP. Loopback registries use plain HTTP unless certs.d has a directory for
    /// them; insecure registries try HTTPS without verification, then HTTP (the working scheme
    /// is remembered); everything else is HTTPS.
    async fn endpoints(&self, registry: &str, with_mirrors: bool) -> Result<Vec<Endpoint>, Error> {
        let name = RegistryName::parse(registry)?;
        let mut eps = Vec::new();
        if with_mirrors {
            if let Some(mirrors) = self.inner.mirrors.get(&name.authority) {
                eps.extend(mirrors.iter().map(|m| Endpoint {
                    base: m.clone(),
                    fallback_on_any_error: true,
                    remember_scheme: None,
                }));
            }
        }
        let base = |scheme: &str| -> Result<Url, Error> {
            Url::parse(&format!("{scheme}://{}", name.authority)).map_err(|_| Error::InvalidInput {
                what: "registry",
                value: registry.to_string(),
                reason: "not host[:port]",
            })
        };
        let plain = |scheme: &str| -> Result<Endpoint, Error> {
            Ok(Endpoint {
                base: base(scheme)?,
                fallback_on_any_error: false,
                remember_scheme: None,
            })
        };
        let insecure = if self.inner.insecure.matches_name(&name.authority) {
            true
        } else if name.is_loopback() {
            let https = self.inner.certs_dir.join(&name.authority).is_dir();
            eps.push(plain(if https { "https" } else { "http" })?);
            return Ok(eps);
        } else {
            self.matches_insecure_net(&name).await
        };
        if insecure {
            let remembered = lock(&self.inner.schemes).get(&name.authority).copied();
            let order = if remembered == Some("http") {
                ["http", "https"]
            } else {
                ["https", "http"]
            };
            for scheme in order {
                eps.push(Endpoint {
                    base: base(scheme)?,
                    fallback_on_any_error: false,
                    remember_scheme: Some(name.authority.clone()),
                });
            }
        } else {
            eps.push(plain("https")?);
        }
        Ok(eps)
    }

    async fn matches_insecure_net(&self, name: &RegistryName) -> bool {
        let insecure = &self.inner.insecure;
        if !insecure.has_nets() {
            return false;
        }
        if let Some(ip) = name.ip() {
            return insecure.matches_ip(ip);
        }
        match tokio::net::lookup_host((name.host.as_str(), name.port.unwrap_or(443))).await {
            Ok(mut addrs) => addrs.any(|a| insecure.matches_ip(a.ip())),
            Err(e) => {
                tracing::debug!("resolving {}: {e}", name.host);
                false
            }
        }
    }

    /// Try `op` on each endpoint in turn until one succeeds or an error may not fall back.
    async fn attempt<T, F, Fut>(&self, eps: &[Endpoint], op: F) -> Result<T, Error>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut last = None;
        for (i, ep) in eps.iter().enumerate() {
            match op(ep.clone()).await {
                Ok(v) => {
                    if let Some(authority) = &ep.remember_scheme {
                        let scheme = if ep.base.scheme() == "http" {
                            "http"
                        } else {
                            "https"
                        };
                        lock(&self.inner.schemes).insert(authority.clone(), scheme);
                    }
                    return Ok(v);
                }
                Err(e) => {
                    let more = i + 1 < eps.len();
                    if !more || !(ep.fallback_on_any_error || e.is_transport()) {
                        return Err(e);
                    }
                    tracing::debug!("{}: {e}; trying the next endpoint", ep.base);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no endpoint to try".into())))
    }

    /// Check the status; turn anything else into the matching error with the registry's body.
    async fn check_status(
        &self,
        resp: Response<Incoming>,
        ok: &[StatusCode],
        target: &str,
    ) -> Result<Response<Incoming>, Error> {
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = body::drain(resp.into_body()).await;
        Err(Error::from_status(target.to_string(), status, &body))
    }

    /// The `Location` of a response, resolved against the request URL.
    fn location(&self, resp: &Response<Incoming>, base: &Url, target: &str) -> Result<Url, Error> {
        let loc = header_str(resp.headers(), LOCATION).ok_or_else(|| {
            invalid_response(target, format!("{} without Location", resp.status()))
        })?;
        let url = base
            .join(loc)
            .map_err(|e| invalid_response(target, format!("Location {loc:?}: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid_response(
                target,
                format!("Location {loc:?}: not http(s)"),
            ));
        }
        Ok(url)
    }

    /// Send a request through the auth flow: authorize up front from the last challenge seen
    /// for the origin; on 401 learn the challenge, get credentials or a token, retry once.
    /// Then follow redirects if asked, keeping `Authorization` only within the same origin.
    async fn execute(&self, req: Req<'_>) -> Result<Response<Incoming>, Error> {
        let req_origin = origin(&req.url);
        let auth_applies = req_origin == req.auth_origin;
        let mut authz = if auth_applies {
            self.authorization(&req_origin, None, &req, false).await?
        } else {
            None
        };
        let mut retried = false;
        let mut resp = loop {
            let resp = self
                .send(
                    &req.method,
                    &req.url,
                    &req.headers,
                    &req.body,
                    authz.as_ref(),
                    req.target,
                )
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !auth_applies || retried {
                break resp;
            }
            retried = true;
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            let chosen = challenges
                .iter()
                .find(|c| c.scheme == "bearer")
                .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
                .cloned();
            let Some(challenge) = chosen else { break resp };
            lock(&self.inner.challenges).insert(req_origin.clone(), challenge.clone());
            let next = self
                .authorization(&req_origin, Some(&challenge), &req, true)
                .await?;
            match next {
                Some(n) if Some(&n) != authz.as_ref() => {
                    body::drain(resp.into_body()).await;
                    authz = Some(n);
                }
                _ => break resp,
            }
        };
        if !req.follow_redirects {
            return Ok(resp);
        }
        let mut url = req.url.clone();
        for _ in 0..MAX_REDIRECTS {
            if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(resp);
            }
            let next = self.location(&resp, &url, req.target)?;
            body::drain(resp.into_body()).await;
            let keep_auth = origin(&next) == req_origin;
            tracing::debug!(
                "{}: redirected to {}",
                req.target,
                next.origin().ascii_serialization()
            );
            resp = self
                .send(
                    &req.method,
                    &next,
                    &req.headers,
                    &BodySource::Empty,
                    authz.as_ref().filter(|_| keep_auth),
                    req.target,
                )
                .await?;
            url = next;
        }
        Err(invalid_response(req.target, "too many redirects"))
    }

    /// One HTTP exchange.
    async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &BodySource,
        authz: Option<&HeaderValue>,
        target: &str,
    ) -> Result<Response<Incoming>, Error> {
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e| invalid_response(target, format!("URL {url}: {e}")))?;
        let body = match body {
            BodySource::Empty => body::empty(),
            BodySource::Bytes(b) => body::full(b.clone()),
            BodySource::File {
                path,
                offset,
                len,
                sent,
            } => http_body_util::BodyExt::boxed_unsync(
                FileBody::open(path, *offset, *len, sent.clone()).await?,
            ),
        };
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if let Some(h) = builder.headers_mut() {
            h.extend(headers.clone());
            h.insert(USER_AGENT, self.inner.user_agent.clone());
            if let Some(a) = authz {
                h.insert(AUTHORIZATION, a.clone());
            }
        }
        let request = builder
            .body(body)
            .map_err(|e| invalid_response(target, format!("building the request: {e}")))?;
        self.inner.http.request(request).await.map_err(|e| {
            let (message, tls) = describe_transport_error(&e);
            let message = format!("{} {url}: {message}", method.as_str());
            if tls {
                Error::Tls {
                    target: target.to_string(),
                    message,
                }
            } else {
                Error::Network {
                    target: target.to_string(),
                    message,
                }
            }
        })
    }

    /// The `Authorization` header for a request to `origin`, from `challenge` or the last one
    /// seen there: Basic credentials, a cached bearer token, or a new token from the realm
    /// (`refresh` skips the cache).
    async fn authorization(
        &self,
        origin: &str,
        challenge: Option<&Challenge>,
        req: &Req<'_>,
        refresh: bool,
    ) -> Result<Option<HeaderValue>, Error> {
        if let Credentials::RegistryToken(t) = req.creds {
            return hv(&format!("Bearer {t}"), req.target).map(Some);
        }
        let challenge = match challenge {
            Some(c) => c.clone(),
            None => match lock(&self.inner.challenges).get(origin) {
                Some(c) => c.clone(),
                None => return Ok(None),
            },
        };
        match challenge.scheme.as_str() {
            "basic" => req
                .creds
                .basic_header()
                .map(|h| hv(&h, req.target))
                .transpose(),
            "bearer" => {
                let realm = challenge
                    .param("realm")
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| invalid_response(req.target, "Bearer challenge without realm"))?
                    .to_string();
                let service = challenge.param("service").unwrap_or_default().to_string();
                let mut scopes = req.scopes.clone();
                if let Some(extra) = challenge.param("scope") {
                    scopes.extend(extra.split_ascii_whitespace().map(str::to_string));
                }
                scopes.sort();
                scopes.dedup();
                let key = TokenKey {
                    origin: origin.to_string(),
                    realm: realm.clone(),
                    service: service.clone(),
                    scopes: scopes.join(" "),
                    creds: req.creds.fingerprint(),
                };
                if !refresh {
                    let now = Instant::now();
                    if let Some(t) = lock(&self.inner.tokens)
                        .get(&key)
                        .filter(|t| t.valid_until > now)
                    {
                        return hv(&format!("Bearer {}", t.token), req.target).map(Some);
                    }
                }
                let (token, lifetime) = self
                    .fetch_token(&realm, &service, &scopes, req.creds, req.target)
                    .await?;
                let header = hv(&format!("Bearer {token}"), req.target)?;
                // Refresh a little early so a token does not expire in flight.
                let margin = (lifetime / 10).clamp(1, 30);
                let valid_until = Instant::now() + Duration::from_secs(lifetime - margin);
                let mut tokens = lock(&self.inner.tokens);
                let now = Instant::now();
                tokens.retain(|_, t| t.valid_until > now);
                if tokens.len() >= MAX_CACHED_TOKENS {
                    tokens.clear();
                }
                tokens.insert(key, CachedToken { token, valid_until });
                Ok(Some(header))
            }
            _ => Ok(None),
        }
    }

    /// Get a bearer token from the realm: `GET` with Basic credentials (or anonymously), or an
    /// OAuth2 `POST` with `grant_type=refresh_token` for an identity token. Returns the token
    /// and its lifetime in seconds.
    async fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scopes: &[String],
        creds: &Credentials,
        target: &str,
    ) -> Result<(String, u64), Error> {
        let mut url = Url::parse(realm)
            .map_err(|e| invalid_response(target, format!("token realm {realm:?}: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid_response(
                target,
                format!("token realm {realm:?}: not http(s)"),
            ));
        }
        let mut headers = HeaderMap::new();
        let (method, body) = match creds {
            Credentials::IdentityToken(refresh) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh)
                    .append_pair("client_id", CLIENT_ID);
                if !service.is_empty() {
                    form.append_pair("service", service);
                }
                if !scopes.is_empty() {
                    form.append_pair("scope", &scopes.join(" "));
                }
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                (Method::POST, BodySource::Bytes(Bytes::from(form.finish())))
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", service);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                    if let Credentials::Basic { username, .. } = creds {
                        q.append_pair("account", username);
                    }
                }
                (Method::GET, BodySource::Empty)
            }
        };
        let authz = creds.basic_header().map(|h| hv(&h, target)).transpose()?;
        let resp = self
            .send(&method, &url, &headers, &body, authz.as_ref(), target)
            .await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = body::drain(resp.into_body()).await;
            let err = Error::from_status(target.to_string(), status.as_u16(), &body);
            return Err(match err {
                Error::Unauthorized { .. } | Error::Denied { .. } => err,
                _ => Error::from_status(
                    format!("{target} (token server {})", origin(&url)),
                    status.as_u16(),
                    &body,
                ),
            });
        }
        let bytes = body::read_limited(resp.into_body(), MAX_TOKEN_RESPONSE, target)
            .await?
            .ok_or_else(|| invalid_response(target, "token response over 1 MiB"))?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| invalid_response(target, format!("token response: {e}")))?;
        let token = if parsed.token.is_empty() {
            parsed.access_token
        } else {
            parsed.token
        };
        if token.is_empty() {
            return Err(invalid_response(target, "token response without a token"));
        }
        let lifetime = parsed
            .expires_in
            .unwrap_or(MIN_TOKEN_LIFETIME)
            .clamp(MIN_TOKEN_LIFETIME, 365 * 24 * 3600);
        Ok((token, lifetime))
    }
}

struct Upload<'a> {
    ep: &'a Endpoint,
    repo: &'a str,
    digest: &'a str,
    path: &'a Path,
    size: u64,
    progress: &'a (dyn Fn(u64) + Send + Sync),
    creds: &'a Credentials,
    target: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_checked() {
        for ok in ["library/busybox", "a", "a/b/c", "my-org/app_1.2", "a__b"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "Upper", "/a", "a/", "a//b", "-a", "a-", "../x", "a/../b", "a b", "a?b", "a..b",
        ] {
            assert!(check_repo(bad).is_err(), "{bad:?}");
        }
        assert!(check_repo(&"a".repeat(256)).is_err());
    }

    #[test]
    fn references_are_checked() {
        assert_eq!(check_reference("latest").unwrap(), None);
        assert_eq!(check_reference("v1.2-rc_3").unwrap(), None);
        assert_eq!(
            check_reference(
                "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
            )
            .unwrap(),
            Some(Algorithm::Sha256)
        );
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a?b",
            "sha256:zz",
            &"t".repeat(129),
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_headers_are_parsed() {
        assert_eq!(
            link_next(r#"</v2/foo/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/foo/tags/list?n=2&last=b")
        );
        assert_eq!(
            link_next(r#"<https://r/a>; rel="prev", <https://r/b?x=1,2>; rel=next"#).as_deref(),
            Some("https://r/b?x=1,2")
        );
        assert_eq!(link_next(r#"<https://r/a>; rel="prev""#), None);
        assert_eq!(link_next("garbage"), None);
        assert_eq!(link_next("<unterminated; rel=next"), None);
    }

    #[test]
    fn endpoint_urls_keep_mirror_prefixes() {
        let ep = Endpoint {
            base: parse_mirror("https://m.example/prefix/").unwrap(),
            fallback_on_any_error: true,
            remember_scheme: None,
        };
        assert_eq!(
            ep.url("/v2/a/manifests/b").as_str(),
            "https://m.example/prefix/v2/a/manifests/b"
        );
    }

    #[tokio::test]
    async fn endpoints_pick_schemes_and_mirrors() {
        let dir = std::env::temp_dir().join(format!("berth-dist-ep-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("127.0.0.1:6000")).unwrap();
        let cfg = ClientConfig {
            insecure_registries: vec!["10.0.0.0/8".into(), "127.0.0.1:7000".into()],
            mirrors: HashMap::from([(
                "docker.io".to_string(),
                vec!["http://127.0.0.1:5001".to_string()],
            )]),
            certs_dir: dir.clone(),
            ..ClientConfig::default()
        };
        let c = Client::new(cfg).unwrap();
        let urls = |eps: Vec<Endpoint>| -> Vec<String> {
            eps.into_iter().map(|e| e.base.to_string()).collect()
        };
        assert_eq!(
            urls(c.endpoints("docker.io", true).await.unwrap()),
            ["http://127.0.0.1:5001/", "https://registry-1.docker.io/"]
        );
        assert_eq!(
            urls(c.endpoints("docker.io", false).await.unwrap()),
            ["https://registry-1.docker.io/"]
        );
        assert_eq!(
            urls(c.endpoints("127.0.0.1:5000", true).await.unwrap()),
            ["http://127.0.0.1:5000/"]
        );
        assert_eq!(
            urls(c.endpoints("localhost", false).await.unwrap()),
            ["http://localhost/"]
        );
        assert_eq!(
            urls(c.endpoints("[::1]:5000", false).await.unwrap()),
            ["http://[::1]:5000/"]
        );
        // certs.d has a directory for it: HTTPS even on loopback.
        assert_eq!(
            urls(c.endpoints("127.0.0.1:6000", false).await.unwrap()),
            ["https://127.0.0.1:6000/"]
        );
        // Listed as insecure by name: HTTPS first, then HTTP.
        assert_eq!(
            urls(c.endpoints("127.0.0.1:7000", false).await.unwrap()),
            ["https://127.0.0.1:7000/", "http://127.0.0.1:7000/"]
        );
        // Insecure by CIDR (IP literal, nothing resolved).
        assert_eq!(
            urls(c.endpoints("10.1.2.3:5000", false).await.unwrap()),
            ["https://10.1.2.3:5000/", "http://10.1.2.3:5000/"]
        );
        assert_eq!(
            urls(c.endpoints("11.1.2.3", false).await.unwrap()),
            ["https://11.1.2.3/"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn operations_are_send() {
        // The daemon runs these on spawned tasks; futures are lazy, so nothing is sent here.
        fn send<T: Send>(_: T) {}
        let c = Client::new(ClientConfig::default()).unwrap();
        let creds = Credentials::None;
        let noop = |_: u64| {};
        send(c.login("r", &creds));
        send(c.get_manifest("r", "a", "t", &creds));
        send(c.get_blob("r", "a", "d", None, &creds));
        send(c.blob_exists("r", "a", "d", &creds));
        send(c.mount_blob("r", "a", "d", "b", &creds));
        send(c.push_blob("r", "a", "d", Path::new("/"), &noop, &creds));
        send(c.put_manifest("r", "a", "t", "m", b"", &creds));
        send(c.tags("r", "a", &creds));
    }

    #[test]
    fn bad_configs_are_rejected() {
        let cfg = |f: fn(&mut ClientConfig)| {
            let mut c = ClientConfig::default();
            f(&mut c);
            Client::new(c)
        };
        assert!(cfg(|c| c.insecure_registries = vec!["https://x".into()]).is_err());
        assert!(
            cfg(|c| c.mirrors = HashMap::from([("docker.io".into(), vec!["ftp://m".into()])]))
                .is_err()
        );
        assert!(cfg(|c| c.chunk_size = 0).is_err());
        assert!(cfg(|c| c.user_agent = "bad\nagent".into()).is_err());
        assert!(cfg(|_| {}).is_ok());
    }
}
