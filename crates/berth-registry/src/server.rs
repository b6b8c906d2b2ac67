//! Listening: option checks, the storage lock, the TCP (optionally TLS) accept loop and one
//! HTTP/1.1 connection per task, and the periodic sweep of abandoned upload sessions, all owned
//! by the serving future so that dropping it stops everything.

use crate::auth::Htpasswd;
use crate::error::Error;
use crate::fsutil::RootLock;
use crate::routes::{self, App};
use crate::storage::Store;
use crate::upload::Uploads;
use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How the registry serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Storage directory (created if missing).
    pub root: PathBuf,
    /// htpasswd file with bcrypt entries; without it, no authentication.
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key`, the registry speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Upload sessions nothing was written to for this long are removed (an interrupted push
    /// would otherwise stay forever) ...
    pub upload_max_age: Duration,
    /// ... by a sweep this often.
    pub upload_sweep: Duration,
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the options, takes the storage root, binds, and returns the bound address with the
/// future that serves (until dropped).
pub async fn bind(
    opts: ServeOptions,
) -> Result<
    (
        SocketAddr,
        impl Future<Output = Result<(), Error>> + Send + 'static,
    ),
    Error,
> {
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(Error::Tls(
                "--tls-cert and --tls-key must be given together".into(),
            ))
        }
    };
    let auth = opts.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
    std::fs::create_dir_all(&opts.root).map_err(|e| Error::io(&opts.root, e))?;
    let lock = RootLock::try_acquire(&opts.root)
        .map_err(|e| Error::io(&opts.root, e))?
        .ok_or_else(|| Error::Locked(opts.root.clone()))?;
    let store = Store::open(&opts.root).map_err(|e| Error::io(&opts.root, e))?;
    // Under the lock no other process writes temp files: leftovers are from a crash.
    store
        .clear_tmp()
        .map_err(|e| Error::io(store.tmp_dir(), e))?;
    let listener = TcpListener::bind(opts.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: opts.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: opts.addr,
        source,
    })?;
    let uploads = Arc::new(Uploads::new(store.clone()));
    let app = Arc::new(App {
        uploads: uploads.clone(),
        store,
        auth,
    });
    let router = routes::router(app);
    let sweep = sweep_uploads(uploads, opts.upload_max_age, opts.upload_sweep);
    Ok((addr, async move {
        tokio::select! {
            r = accept_loop(listener, router, tls, lock) => r,
            never = sweep => match never {},
        }
    }))
}

/// Every `every`, removes the upload sessions left alone for `max_age` (never ends).
async fn sweep_uploads(
    uploads: Arc<Uploads>,
    max_age: Duration,
    every: Duration,
) -> std::convert::Infallible {
    // A zero period would make the interval panic.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let u = uploads.clone();
        match tokio::task::spawn_blocking(move || u.expire(max_age, SystemTime::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!("registry: removed {n} abandoned upload session(s)"),
            Ok(Err(e)) => tracing::warn!("registry: expiring upload sessions: {e}"),
            Err(e) => tracing::warn!("registry: upload sweep: {e}"),
        }
    }
}

/// Serves until the returned future is dropped or ctrl-c arrives.
pub async fn serve(opts: ServeOptions) -> Result<(), Error> {
    let (_, serving) = bind(opts).await?;
    tokio::select! {
        r = serving => r,
        () = ctrl_c() => Ok(()),
    }
}

/// Resolves on ctrl-c; never if the signal cannot be watched.
pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    _lock: RootLock,
) -> Result<(), Error> {
    // Connections live in this set: dropping the future aborts them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, router.clone(), tls.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait for connections to finish.
                    tracing::warn!("registry accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, router: Router, tls: Option<tokio_rustls::TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => http(TokioIo::new(stream), router).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => http(TokioIo::new(s), router).await,
                Ok(Err(e)) => tracing::debug!("registry TLS handshake: {e}"),
                Err(_) => tracing::debug!("registry TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(io: I, router: Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        router.clone().oneshot(req.map(Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        tracing::debug!("registry connection: {e}");
    }
}
