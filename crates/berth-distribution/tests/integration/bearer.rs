//! The bearer-token flow against a minimal in-test registry, token server and blob storage on
//! 127.0.0.1 (Debian's docker-registry only does token auth with signed JWTs): scopes, token
//! caching and refresh, identity tokens, redirects that must not carry credentials, and `Link`
//! pagination (which docker-registry 2.8 does not implement for tags).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use berth_distribution::{
    media, sha256_digest, Client, ClientConfig, Credentials, Error, ParsedManifest,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::common::read_verified;

const SERVICE: &str = "test-registry";
const BLOB: &[u8] = b"blob content served from storage";

#[derive(Default)]
struct State {
    /// Issued token → granted (repository, action) pairs.
    tokens: HashMap<String, HashSet<(String, String)>>,
    /// Every token request: method, query or form, Authorization.
    token_requests: Vec<(String, String, Option<String>)>,
    /// Authorization headers seen by the storage server.
    storage_auth: Vec<Option<String>>,
    auth_port: u16,
    storage_port: u16,
    manifest: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Role {
    Registry,
    Auth,
    Storage,
}

type Shared = Arc<Mutex<State>>;

fn resp(status: u16, headers: &[(&str, String)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(body.into())).unwrap()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Grant what `scopes` ask for (`repository:<name>:<actions>`), for known users only.
fn grant(state: &mut State, scopes: &[String], user_ok: bool) -> Response<Full<Bytes>> {
    let mut granted = HashSet::new();
    if user_ok {
        for s in scopes {
            let parts: Vec<&str> = s.splitn(3, ':').collect();
            if let ["repository", name, actions] = parts[..] {
                for a in actions.split(',') {
                    granted.insert((name.to_string(), a.to_string()));
                }
            }
        }
    }
    let token = format!("tok-{}", state.token_requests.len());
    state.tokens.insert(token.clone(), granted);
    resp(
        200,
        &[("content-type", "application/json".into())],
        format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#),
    )
}

async fn handle(
    state: Shared,
    role: Role,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authz = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut st = state.lock().unwrap();
    Ok(match role {
        Role::Storage => {
            st.storage_auth.push(authz);
            resp(200, &[], Bytes::from_static(BLOB))
        }
        Role::Auth => {
            let form = if method == "POST" {
                String::from_utf8_lossy(&body).into_owned()
            } else {
                query.clone()
            };
            st.token_requests
                .push((method.clone(), form.clone(), authz.clone()));
            let pairs = query_pairs(&form);
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("service").as_deref() != Some(SERVICE) {
                return Ok(resp(400, &[], r#"{"details":"wrong service"}"#));
            }
            if method == "POST" {
                if get("grant_type").as_deref() != Some("refresh_token")
                    || get("refresh_token").as_deref() != Some("refresh-abc")
                {
                    return Ok(resp(
                        401,
                        &[],
                        r#"{"error":"invalid_grant","error_description":"refresh token rejected"}"#,
                    ));
                }
                let scopes: Vec<String> = get("scope")
                    .unwrap_or_default()
                    .split(' ')
                    .map(str::to_string)
                    .collect();
                grant(&mut st, &scopes, true)
            } else {
                let scopes: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .collect();
                match authz.as_deref() {
                    // alice:secret
                    Some("Basic YWxpY2U6c2VjcmV0") => grant(&mut st, &scopes, true),
                    Some(_) => resp(401, &[], r#"{"details":"incorrect username or password"}"#),
                    // Anonymous: a token that grants nothing, like Docker Hub for private repos.
                    None => grant(&mut st, &scopes, false),
                }
            }
        }
        Role::Registry => registry(&mut st, &method, &path, &query, authz.as_deref()),
    })
}

fn registry(
    st: &mut State,
    method: &str,
    path: &str,
    query: &str,
    authz: Option<&str>,
) -> Response<Full<Bytes>> {
    let token = authz.and_then(|a| a.strip_prefix("Bearer "));
    let granted = token.and_then(|t| st.tokens.get(t)).cloned();
    let pairs = query_pairs(query);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // What this request needs.
    let mut need: Vec<(String, String)> = Vec::new();
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let repo = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .find_map(|m| rest.find(m).map(|i| rest[..i].to_string()));
    if let Some(repo) = &repo {
        let action = if method == "POST" || method == "PUT" {
            "push"
        } else {
            "pull"
        };
        need.push((repo.clone(), action.into()));
        if let Some(from) = get("from") {
            need.push((from, "pull".into()));
        }
    }
    let ok = granted
        .as_ref()
        .is_some_and(|g| need.iter().all(|n| g.contains(n)));
    if !ok {
        let scope = repo
            .map(|r| format!(r#",scope="repository:{r}:pull""#))
            .unwrap_or_default();
        return resp(
            401,
            &[(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://127.0.0.1:{}/token",service="{SERVICE}"{scope}"#,
                    st.auth_port
                ),
            )],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
        );
    }
    let blob_digest = sha256_digest(BLOB);
    match (method, path) {
        ("GET", "/v2/") => resp(200, &[], "{}"),
        ("GET", "/v2/foo/tags/list") => {
            let all = ["a", "b", "c", "d", "e"];
            let start = match get("last") {
                Some(l) => all
                    .iter()
                    .position(|t| *t == l)
                    .map_or(all.len(), |i| i + 1),
                None => 0,
            };
            let page: Vec<&str> = all.iter().skip(start).take(2).copied().collect();
            let mut headers = vec![("content-type", "application/json".to_string())];
            if start + page.len() < all.len() {
                headers.push((
                    "link",
                    format!(
                        r#"</v2/foo/tags/list?n=2&last={}>; rel="next""#,
                        page[page.len() - 1]
                    ),
                ));
            }
            let tags: Vec<String> = page.iter().map(|t| format!("\"{t}\"")).collect();
            resp(
                200,
                &headers,
                format!(r#"{{"name":"foo","tags":[{}]}}"#, tags.join(",")),
            )
        }
        ("GET", "/v2/foo/manifests/latest") => resp(
            200,
            &[
                ("content-type", media::OCI_MANIFEST.to_string()),
                ("docker-content-digest", sha256_digest(&st.manifest)),
            ],
            st.manifest.clone(),
        ),
        ("GET", "/v2/foo/manifests/lying") => resp(
            200,
            &[
                ("content-type", media::OCI_MANIFEST.to_string()),
                ("docker-content-digest", sha256_digest(b"other")),
            ],
            st.manifest.clone(),
        ),
        ("GET", p) if p == format!("/v2/foo/blobs/{blob_digest}") => resp(
            307,
            &[(
                "location",
                format!(
                    "http://127.0.0.1:{}/storage/{blob_digest}?sig=abc",
                    st.storage_port
                ),
            )],
            "",
        ),
        ("POST", "/v2/foo/blobs/uploads/") if get("mount").is_some() => resp(
            201,
            &[(
                "location",
                format!("/v2/foo/blobs/{}", get("mount").unwrap_or_default()),
            )],
            "",
        ),
        _ => resp(
            404,
            &[],
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}"#,
        ),
    }
}

async fn serve(state: Shared, role: Role) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), role, req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

struct Fixture {
    state: Shared,
    registry: String,
}

impl Fixture {
    async fn start() -> Fixture {
        let state: Shared = Arc::default();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            sha256_digest(BLOB),
            BLOB.len()
        );
        state.lock().unwrap().manifest = manifest.into_bytes();
        let reg_port = serve(state.clone(), Role::Registry).await;
        let auth_port = serve(state.clone(), Role::Auth).await;
        let storage_port = serve(state.clone(), Role::Storage).await;
        {
            let mut st = state.lock().unwrap();
            st.auth_port = auth_port;
            st.storage_port = storage_port;
        }
        Fixture {
            state,
            registry: format!("127.0.0.1:{reg_port}"),
        }
    }

    fn token_requests(&self) -> Vec<(String, String, Option<String>)> {
        self.state.lock().unwrap().token_requests.clone()
    }
}

fn alice() -> Credentials {
    Credentials::Basic {
        username: "alice".into(),
        password: "secret".into(),
    }
}

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_scopes_and_cached() {
    let f = Fixture::start().await;
    let c = client();
    c.login(&f.registry, &alice()).await.unwrap();
    let reqs = f.token_requests();
    assert_eq!(reqs.len(), 1);
    let (method, query, authz) = &reqs[0];
    assert_eq!(method, "GET");
    assert!(
        query.contains("service=test-registry") && query.contains("account=alice"),
        "{query}"
    );
    assert!(
        !query.contains("scope="),
        "login asks for no scope: {query}"
    );
    assert_eq!(authz.as_deref(), Some("Basic YWxpY2U6c2VjcmV0"));

    let m = c
        .get_manifest(&f.registry, "foo", "latest", &alice())
        .await
        .unwrap();
    assert!(matches!(m.parsed, ParsedManifest::Image(_)));
    let reqs = f.token_requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].1.contains("scope=repository%3Afoo%3Apull"),
        "{}",
        reqs[1].1
    );

    // Same scope and credentials: the cached token is used, also by clones.
    c.get_manifest(&f.registry, "foo", "latest", &alice())
        .await
        .unwrap();
    c.clone()
        .get_manifest(&f.registry, "foo", "latest", &alice())
        .await
        .unwrap();
    assert_eq!(f.token_requests().len(), 2);

    // Tags: same pull scope, five tags over three pages.
    let tags = c.tags(&f.registry, "foo", &alice()).await.unwrap();
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    assert_eq!(f.token_requests().len(), 2);

    // Tokens revoked server-side: the 401 triggers one fresh token and a retry.
    f.state.lock().unwrap().tokens.clear();
    c.get_manifest(&f.registry, "foo", "latest", &alice())
        .await
        .unwrap();
    assert_eq!(f.token_requests().len(), 3);

    // Other credentials never reuse alice's token.
    let err = c
        .get_manifest(&f.registry, "foo", "latest", &Credentials::None)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}/foo:latest: unauthorized: authentication required",
            f.registry
        )
    );
    let reqs = f.token_requests();
    assert_eq!(reqs.last().unwrap().2, None, "anonymous token request");
}

#[tokio::test]
async fn wrong_password_is_reported_from_the_token_server() {
    let f = Fixture::start().await;
    let bad = Credentials::Basic {
        username: "alice".into(),
        password: "nope".into(),
    };
    let err = client().login(&f.registry, &bad).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: incorrect username or password", f.registry)
    );
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_refresh_grant() {
    let f = Fixture::start().await;
    let c = client();
    let creds = Credentials::IdentityToken("refresh-abc".into());
    c.get_manifest(&f.registry, "foo", "latest", &creds)
        .await
        .unwrap();
    let reqs = f.token_requests();
    let (method, form, authz) = reqs.last().unwrap();
    assert_eq!(method, "POST");
    assert!(authz.is_none(), "no Basic header with an identity token");
    assert!(
        form.contains("grant_type=refresh_token")
            && form.contains("refresh_token=refresh-abc")
            && form.contains("scope=repository%3Afoo%3Apull"),
        "{form}"
    );
    let err = c
        .get_manifest(
            &f.registry,
            "foo",
            "latest",
            &Credentials::IdentityToken("stale".into()),
        )
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(err.to_string().contains("refresh token rejected"), "{err}");
}

#[tokio::test]
async fn registry_tokens_are_sent_as_is() {
    let f = Fixture::start().await;
    let granted = HashSet::from([("foo".to_string(), "pull".to_string())]);
    f.state
        .lock()
        .unwrap()
        .tokens
        .insert("given".into(), granted);
    let creds = Credentials::RegistryToken("given".into());
    client()
        .get_manifest(&f.registry, "foo", "latest", &creds)
        .await
        .unwrap();
    assert!(f.token_requests().is_empty());
}

#[tokio::test]
async fn blob_redirects_do_not_carry_credentials() {
    let f = Fixture::start().await;
    let digest = sha256_digest(BLOB);
    let blob = client()
        .get_blob(
            &f.registry,
            "foo",
            &digest,
            Some(BLOB.len() as u64),
            &alice(),
        )
        .await
        .unwrap();
    assert_eq!(
        read_verified(blob, &digest, Some(BLOB.len() as u64))
            .await
            .unwrap(),
        BLOB
    );
    assert_eq!(f.state.lock().unwrap().storage_auth, vec![None]);
}

#[tokio::test]
async fn mounts_ask_for_both_repositories() {
    let f = Fixture::start().await;
    let mounted = client()
        .mount_blob(&f.registry, "foo", &sha256_digest(BLOB), "bar", &alice())
        .await
        .unwrap();
    assert!(mounted);
    let reqs = f.token_requests();
    let query = &reqs.last().unwrap().1;
    assert!(
        query.contains("scope=repository%3Afoo%3Apull%2Cpush")
            && query.contains("scope=repository%3Abar%3Apull"),
        "{query}"
    );
}

#[tokio::test]
async fn a_lying_content_digest_is_refused() {
    let f = Fixture::start().await;
    let err = client()
        .get_manifest(&f.registry, "foo", "lying", &alice())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == sha256_digest(b"other")),
        "{err:?}"
    );
}
