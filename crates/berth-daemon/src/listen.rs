//! The API's listeners: unix sockets (0660, owned by root and the daemon's group) and TCP (with
//! TLS and optional client certificates), accept loops that back off on errors and cap the
//! number of connections, and HTTP/1.1 connections with header and idle timeouts. Each request
//! goes to `front`; this module must not know the routes or the daemon's state.

use crate::config::{ApiConfig, TlsConfig};
use crate::front::Api;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The unix socket a request came on (its descriptor, valid while the connection is served),
/// which hijacked streams use to see when the client has read the `101` head.
#[derive(Clone, Copy, Debug)]
pub struct UnixClient(pub std::os::fd::RawFd);

/// How long a client may take to send a request's headers; also how long a kept-alive
/// connection may sit idle between requests (hyper starts the same timer for both).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dockerd 27+ delays its start when it serves the API on TCP without TLS.
const PLAIN_TCP_DELAY: Duration = Duration::from_secs(15);

/// A TCP host of `-H`, checked and resolved before anything is bound.
pub struct TcpHost {
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

/// Parse `tcp://HOST:PORT` (dockerd's defaults: port 2375, or 2376 with TLS; an empty host is
/// every address) and refuse plain TCP beyond loopback unless TLS was turned off explicitly.
pub async fn check_tcp(host: &str, addr: &str, api: &ApiConfig) -> Result<TcpHost, String> {
    let default_port = if api.tls.is_some() { 2376 } else { 2375 };
    let addr = addr.trim_end_matches('/');
    let (h, port) = match addr.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => {
            let port: u16 = if p.is_empty() {
                default_port
            } else {
                p.parse()
                    .map_err(|_| format!("invalid host {host:?}: bad port {p:?}"))?
            };
            (h, port)
        }
        _ => (addr, default_port),
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let h = if h.is_empty() { "0.0.0.0" } else { h };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((h, port))
        .await
        .map_err(|e| format!("invalid host {host:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("invalid host {host:?}: no address"));
    }
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    if api.tls.is_none() && !loopback && !api.tls_disabled {
        return Err(format!(
            "refusing to serve the API on {host} without TLS: anyone who can reach it gets root \
             on this host. Use --tlsverify with --tlscacert/--tlscert/--tlskey, or pass \
             --tls=false to accept the risk"
        ));
    }
    Ok(TcpHost {
        host: host.to_string(),
        addrs,
    })
}

/// The server side of `--tls`/`--tlsverify`: our certificate, and with a client CA, only
/// clients whose certificate it signed.
pub fn acceptor(tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate found",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("TLS key {}: {e}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
            for c in cas {
                roots
                    .add(c)
                    .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("TLS CA {}: no certificate found", ca.display()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Connections served at once: half the descriptors the daemon may open (the rest are for
/// containers, shims, logs and the store), at least 64.
pub fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    usize::try_from(soft / 2)
        .unwrap_or(usize::MAX)
        .clamp(64, 1 << 16)
}

/// Give the unix socket to root and `group` with mode 0660, as dockerd does with `docker`;
/// without that group only root may use it.
pub fn secure_socket(path: &str, group: &str) {
    use std::os::unix::fs::PermissionsExt;
    let gid = std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|t| group_id(&t, group));
    if gid.is_none() {
        tracing::warn!("group {group:?} not found: {path} is usable by root only");
    }
    let gid = gid.map(nix::unistd::Gid::from_raw);
    if let Err(e) = nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), gid) {
        tracing::warn!("{path}: chown: {e}");
    }
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!("{path}: chmod: {e}");
    }
}

/// A group's id from /etc/group's text (read directly: the binary is static, and glibc's NSS
/// lookups do not work there).
fn group_id(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.trim().parse().ok()
    })
}

/// A listening socket the accept loop can take connections from.
trait Accept: Send + 'static {
    type Stream: Send + 'static;
    fn next(&self) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn next(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn next(&self) -> std::io::Result<Self::Stream> {
        let (s, _) = self.accept().await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

/// Take connections while the cap allows (backing off on errors); each is served on a task of
/// its own that holds its place under the cap until it ends.
async fn accept_loop<L, F, Fut>(l: L, cap: Arc<Semaphore>, serve: F)
where
    L: Accept,
    F: Fn(L::Stream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff = Backoff::default();
    loop {
        let Ok(permit) = cap.clone().acquire_owned().await else {
            return;
        };
        match l.next().await {
            Ok(s) => {
                backoff.reset();
                let conn = serve(s);
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(e) => backoff.wait(&e).await,
        }
    }
}

/// Serve a unix listener until the daemon stops.
pub fn serve_unix(l: tokio::net::UnixListener, router: Api, cap: Arc<Semaphore>) {
    tokio::spawn(accept_loop(l, cap, move |s| {
        let client = UnixClient(std::os::fd::AsRawFd::as_raw_fd(&s));
        http(TokioIo::new(s), router.clone(), Some(client))
    }));
}

/// Serve a TCP host (every address it resolved to), after dockerd's delay when it has no TLS.
pub async fn serve_tcp(
    host: TcpHost,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Api,
    cap: Arc<Semaphore>,
) -> Result<(), String> {
    let mut listeners = Vec::new();
    for a in &host.addrs {
        let l = tokio::net::TcpListener::bind(a)
            .await
            .map_err(|e| format!("{}: {e}", host.host))?;
        listeners.push(l);
    }
    let name = host.host.clone();
    tokio::spawn(async move {
        if tls.is_none() {
            tracing::warn!(
                "API on {name} is not encrypted and has no authentication: anything that can \
                 connect to it is root on this host. Starting in {} s; use --tlsverify",
                PLAIN_TCP_DELAY.as_secs()
            );
            tokio::time::sleep(PLAIN_TCP_DELAY).await;
        }
        tracing::info!("API listening on {name}");
        for l in listeners {
            let (r, c, t) = (router.clone(), cap.clone(), tls.clone());
            tokio::spawn(accept_tcp(l, r, c, t));
        }
    });
    Ok(())
}

async fn accept_tcp(
    l: tokio::net::TcpListener,
    router: Api,
    cap: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    accept_loop(l, cap, move |s| {
        let (r, t) = (router.clone(), tls.clone());
        async move {
            match t {
                None => http(TokioIo::new(s), r, None).await,
                Some(acc) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(s)).await {
                    Ok(Ok(s)) => http(TokioIo::new(s), r, None).await,
                    Ok(Err(e)) => tracing::debug!("TLS handshake: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        }
    })
    .await
}

/// Go net/http's answer to accept errors (out of descriptors, mostly): wait 5 ms, doubling to
/// 1 s, instead of retrying at once and spinning.
#[derive(Default)]
struct Backoff {
    delay: Duration,
}

impl Backoff {
    fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }

    async fn wait(&mut self, e: &std::io::Error) {
        self.delay = if self.delay.is_zero() {
            Duration::from_millis(5)
        } else {
            (self.delay * 2).min(Duration::from_secs(1))
        };
        if self.delay == Duration::from_millis(5) || self.delay == Duration::from_secs(1) {
            tracing::warn!("API accept: {e}; retrying in {:?}", self.delay);
        }
        tokio::time::sleep(self.delay).await;
    }
}

/// Serve one connection; requests on a unix socket carry its descriptor (see
/// [`UnixClient`]).
async fn http<IO>(io: TokioIo<IO>, router: Api, unix: Option<UnixClient>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        if let Some(u) = unix {
            req.extensions_mut().insert(u);
        }
        let r = router.clone();
        async move { Ok::<_, std::convert::Infallible>(crate::front::handle(r, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(tls: bool, disabled: bool) -> ApiConfig {
        ApiConfig {
            tls: tls.then(|| TlsConfig {
                cert: "c".into(),
                key: "k".into(),
                client_ca: None,
            }),
            tls_disabled: disabled,
            cors_origins: Vec::new(),
            group: "berth".into(),
        }
    }

    #[tokio::test]
    async fn plain_tcp_only_on_loopback_unless_tls_is_off_explicitly() {
        let h = check_tcp("tcp://127.0.0.1:2375", "127.0.0.1:2375", &api(false, false))
            .await
            .unwrap();
        assert_eq!(h.addrs, vec!["127.0.0.1:2375".parse().unwrap()]);
        let e = check_tcp("tcp://0.0.0.0:2375", "0.0.0.0:2375", &api(false, false))
            .await
            .err()
            .unwrap();
        assert!(e.contains("without TLS"), "{e}");
        assert!(check_tcp("tcp://:2375", ":2375", &api(false, false))
            .await
            .is_err());
        assert!(
            check_tcp("tcp://0.0.0.0:2375", "0.0.0.0:2375", &api(false, true))
                .await
                .is_ok()
        );
        assert!(
            check_tcp("tcp://0.0.0.0:2376", "0.0.0.0:2376", &api(true, false))
                .await
                .is_ok()
        );
    }

    #[test]
    fn groups_from_etc_group() {
        let t = "root:x:0:\nberth:x:995:alice,bob\n# comment\nbad\n";
        assert_eq!(group_id(t, "berth"), Some(995));
        assert_eq!(group_id(t, "root"), Some(0));
        assert_eq!(group_id(t, "nobody"), None);
        assert_eq!(group_id(t, "bad"), None);
    }

    #[tokio::test]
    async fn default_ports_follow_tls() {
        let h = check_tcp("tcp://127.0.0.1", "127.0.0.1", &api(false, false))
            .await
            .unwrap();
        assert_eq!(h.addrs[0].port(), 2375);
        let h = check_tcp("tcp://127.0.0.1:", "127.0.0.1:", &api(true, false))
            .await
            .unwrap();
        assert_eq!(h.addrs[0].port(), 2376);
        let h = check_tcp("tcp://[::1]:7", "[::1]:7", &api(false, false))
            .await
            .unwrap();
        assert_eq!(h.addrs[0], "[::1]:7".parse().unwrap());
        assert!(check_tcp("tcp://h:x", "127.0.0.1:x", &api(false, false))
            .await
            .is_err());
    }
}
