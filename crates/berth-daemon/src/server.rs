//! HTTP serving: unix/TCP listeners, HTTP/1.1 with upgrades, the `/vX.Y` prefix, the headers
//! Docker puts on every response, and the route table.

use crate::config::DaemonConfig;
use crate::error::Error;
use crate::listen;
use crate::routes;
use crate::state::Daemon;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use axum::Router;
use berth_api::version::ApiVersion;
use std::sync::Arc;
use tower::ServiceExt;

/// The API version a request asked for (from its path prefix), or the maximum.
#[derive(Debug, Clone, Copy)]
pub struct RequestVersion(pub ApiVersion);

pub async fn run(mut cfg: DaemonConfig) -> Result<(), String> {
    // Hosts are checked before anything else happens: a refused one stops the daemon.
    let mut tcp = Vec::new();
    for host in &cfg.hosts {
        if let Some(addr) = host.strip_prefix("tcp://") {
            tcp.push(listen::check_tcp(host, addr, &cfg.api).await?);
        } else if !host.starts_with("unix://") {
            return Err(format!(
                "unsupported host {host:?}: use unix://PATH or tcp://HOST:PORT"
            ));
        }
    }
    for dir in [&mut cfg.data_root, &mut cfg.exec_root] {
        std::fs::create_dir_all(&*dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Real paths: mount points below the roots are recognised in /proc/self/mountinfo.
        *dir = std::fs::canonicalize(&*dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // One daemon per data root: a second one would restore and monitor the same shims.
    let lock_path = cfg.data_root.join("berth.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| {
            format!(
                "another berth daemon is using {} ({e})",
                cfg.data_root.display()
            )
        })?;
    std::fs::create_dir_all(cfg.data_root.join("containers"))
        .map_err(|e| format!("{}: {e}", cfg.data_root.display()))?;
    // Containers removed while the daemon was down to their last files. The directory itself
    // stays: boot needs no free space (making a directory can take a block).
    let trash = cfg.data_root.join("trash");
    for e in std::fs::read_dir(&trash).into_iter().flatten().flatten() {
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(e.path()),
            _ => std::fs::remove_file(e.path()),
        };
    }
    // Run dirs of stopped containers whose deletion did not finish.
    let _ = std::fs::remove_dir_all(cfg.exec_root.join("trash"));
    // Contexts and staging dirs of builds the last run did not finish.
    let _ = std::fs::remove_dir_all(cfg.data_root.join("builder").join("tmp"));
    std::fs::create_dir_all(&trash).map_err(|e| format!("{}: {e}", trash.display()))?;
    crate::container::rootfs::make_init_layer(&cfg.data_root)
        .map_err(|e| format!("init layer: {}", e.0.message))?;
    let images = berth_image::Store::open(&cfg.data_root).map_err(|e| e.to_string())?;
    std::fs::write(&cfg.pidfile, format!("{}\n", std::process::id()))
        .map_err(|e| format!("pidfile {}: {e}", cfg.pidfile.display()))?;
    let net = crate::network::open(&cfg).await?;
    let registry = berth_distribution::Client::new(berth_distribution::ClientConfig {
        insecure_registries: cfg.insecure_registries.clone(),
        mirrors: cfg.mirrors.clone().into_iter().collect(),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        ..Default::default()
    })
    .map_err(|e| format!("registry client: {e}"))?;
    let remap = match cfg.userns_remap.as_deref() {
        Some(spec) => {
            let r = crate::userns::Remap::setup(spec)?;
            let (uid, gid) = r.root();
            tracing::info!(
                "user namespaces: containers' root is {uid}:{gid} ({})",
                r.name
            );
            Some(r)
        }
        None => None,
    };
    let volumes = crate::volume::Volumes::load(&cfg.data_root, remap.as_ref().map(|r| r.root()))
        .map_err(|e| format!("volumes: {e}"))?;
    let daemon = Arc::new(Daemon::new(
        cfg.clone(),
        images,
        net,
        registry,
        volumes,
        remap,
    ));
    let to_restart = crate::container::lifecycle::restore(&daemon)
        .await
        .map_err(|e| e.0.message)?;
    tokio::spawn(crate::state::retry_unsaved(Arc::downgrade(&daemon)));
    let router = Api {
        router: routes::router(daemon.clone()),
        cors: Arc::new(cfg.api.cors_origins.clone()),
    };
    let cap = Arc::new(tokio::sync::Semaphore::new(listen::connection_cap()));
    let tls = match &cfg.api.tls {
        Some(t) => Some(listen::acceptor(t)?),
        None => None,
    };
    for host in &cfg.hosts {
        if let Some(path) = host.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{path}: {e}"))?;
            }
            let l = tokio::net::UnixListener::bind(path).map_err(|e| format!("{path}: {e}"))?;
            listen::secure_socket(path, &cfg.api.group);
            tracing::info!("API listening on {host}");
            listen::serve_unix(l, router.clone(), cap.clone());
        }
    }
    for host in tcp {
        listen::serve_tcp(host, tls.clone(), router.clone(), cap.clone()).await?;
    }
    crate::container::lifecycle::boot_restarts(&daemon, to_restart);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; containers keep running under their shims");
    for host in &cfg.hosts {
        if let Some(path) = host.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = std::fs::remove_file(&cfg.pidfile);
    Ok(())
}

/// Check the request's origin, then route it.
pub async fn handle(api: Api, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let allowed = match cross_origin(&api.cors, req.headers()) {
        Ok(a) => a,
        Err(e) => return finish(e),
    };
    if allowed && req.method() == axum::http::Method::OPTIONS {
        return cors_headers(&api.cors, headers(Response::new(Body::empty())));
    }
    let resp = route(api.router, req).await;
    if allowed {
        cors_headers(&api.cors, resp)
    } else {
        resp
    }
}

/// What a connection serves: the routes, and the origins allowed to make cross-origin calls.
#[derive(Clone)]
pub struct Api {
    pub router: Router,
    pub cors: Arc<Vec<String>>,
}

/// Browsers send `Origin` on cross-origin requests, and a page may send "simple" ones (a
/// form post) without asking first: such a request is served only if its origin is listed
/// in `--api-cors-header`. Ok(true): an allowed cross-origin request.
fn cross_origin(allowed: &[String], h: &axum::http::HeaderMap) -> Result<bool, Error> {
    let Some(origin) = h.get(axum::http::header::ORIGIN) else {
        return Ok(false);
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let o = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(o))
    {
        return Ok(true);
    }
    Err(Error(berth_api::ApiError {
        status: 403,
        message: format!(
            "cross-origin request from {origin:?} refused: the daemon allows only the origins \
             given with --api-cors-header"
        ),
    }))
}

/// The CORS answer headers dockerd sends when `--api-cors-header` is set.
fn cors_headers(allowed: &[String], mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&allowed.join(",")) {
        h.insert("Access-Control-Allow-Origin", v);
    }
    h.insert(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth"),
    );
    h.insert(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static("HEAD, GET, POST, DELETE, PUT, OPTIONS"),
    );
    resp
}

/// Strip the version prefix, route, and add Docker's response headers.
async fn route(router: Router, req: Request<hyper::body::Incoming>) -> Response<Body> {
    // Most requests have no body: they need no idle timer.
    let mut req = req.map(|b| {
        if http_body::Body::is_end_stream(&b) {
            Body::new(b)
        } else {
            Body::new(crate::body::Idle::new(b))
        }
    });
    let path = req.uri().path().to_string();
    let mut version = ApiVersion::max();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((v, tail)) = rest.split_once('/') {
            if let Some(parsed) = ApiVersion::parse(v) {
                if parsed > ApiVersion::max() {
                    return finish(Error::bad_request(format!(
                        "client version {v} is too new. Maximum supported API version is {}",
                        ApiVersion::max()
                    )));
                }
                if parsed < ApiVersion::min() {
                    return finish(Error::bad_request(format!(
                        "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                        ApiVersion::min()
                    )));
                }
                version = parsed;
                let new_path = format!("/{tail}");
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                if let Ok(uri) = pq.parse() {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req.extensions_mut().insert(RequestVersion(version));
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    headers(resp)
}

fn finish(e: Error) -> Response<Body> {
    headers(axum::response::IntoResponse::into_response(e))
}

fn headers(mut resp: Response<Body>) -> Response<Body> {
    if resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        HeaderValue::from_static(berth_api::version::API_MAX),
    );
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}
