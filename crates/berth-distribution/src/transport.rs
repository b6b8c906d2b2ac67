//! The HTTP(S) connector under the pooled hyper client: TCP via hyper-util, then rustls with
//! system CAs plus certs.d CAs and client certificates per registry, or no verification for
//! insecure registries.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::Insecure;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failure to set up TLS for a host (bad certs.d file, bad server name); reported as a TLS error.
#[derive(Debug)]
pub(crate) struct TlsSetupError(pub String);

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// TLS configurations, built once per (authority, insecure) and shared by all connections.
pub(crate) struct TlsConfigs {
    certs_dir: PathBuf,
    insecure: Arc<Insecure>,
    provider: Arc<CryptoProvider>,
    system_roots: OnceLock<Arc<Vec<CertificateDer<'static>>>>,
    cache: Mutex<HashMap<(String, bool), Arc<rustls::ClientConfig>>>,
}

impl TlsConfigs {
    pub(crate) fn new(certs_dir: PathBuf, insecure: Arc<Insecure>) -> TlsConfigs {
        TlsConfigs {
            certs_dir,
            insecure,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            system_roots: OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn system_roots(&self) -> Arc<Vec<CertificateDer<'static>>> {
        self.system_roots
            .get_or_init(|| {
                let loaded = rustls_native_certs::load_native_certs();
                for e in &loaded.errors {
                    tracing::warn!("loading system CA certificates: {e}");
                }
                Arc::new(loaded.certs)
            })
            .clone()
    }

    /// The client config for `authority` (`host[:port]`, the certs.d directory name).
    fn config_for(
        &self,
        authority: &str,
        insecure: bool,
    ) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        let key = (authority.to_string(), insecure);
        if let Some(c) = lock(&self.cache).get(&key) {
            return Ok(c.clone());
        }
        let config = Arc::new(self.build(authority, insecure)?);
        lock(&self.cache).insert(key, config.clone());
        Ok(config)
    }

    fn build(
        &self,
        authority: &str,
        insecure: bool,
    ) -> Result<rustls::ClientConfig, TlsSetupError> {
        let files = HostFiles::load(&self.certs_dir, authority)?;
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(format!("TLS protocol setup: {e}")))?;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(self.provider.clone())))
        } else {
            let mut roots = RootCertStore::empty();
            let (_, ignored) = roots.add_parsable_certificates(self.system_roots().iter().cloned());
            if ignored > 0 {
                tracing::debug!("{ignored} system CA certificates could not be parsed");
            }
            for (path, cert) in files.cas {
                roots.add(cert).map_err(|e| {
                    TlsSetupError(format!("CA certificate {}: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots)
        };
        match files.client {
            Some((chain, key, path)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsSetupError(format!("client certificate {}: {e}", path.display()))),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Lock a mutex, ignoring poisoning (the guarded maps stay consistent across panics).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type ClientCert = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    PathBuf,
);

/// The TLS files of one registry in certs.d, as Docker lays them out: `*.crt` are CA
/// certificates, `<name>.cert` with `<name>.key` is a client certificate (the first pair by name).
struct HostFiles {
    cas: Vec<(PathBuf, CertificateDer<'static>)>,
    client: Option<ClientCert>,
}

impl HostFiles {
    fn load(certs_dir: &Path, authority: &str) -> Result<HostFiles, TlsSetupError> {
        let mut out = HostFiles {
            cas: Vec::new(),
            client: None,
        };
        // A registry name never contains a path separator (checked by RegistryName), but a
        // redirect or mirror authority is only as safe as the URL parser; refuse oddities.
        if authority.is_empty() || authority.contains(['/', '\\']) || authority.starts_with('.') {
            return Ok(out);
        }
        let dir = certs_dir.join(authority);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(TlsSetupError(format!("{}: {e}", dir.display()))),
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in &names {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    let iter = CertificateDer::pem_file_iter(path)
                        .map_err(|e| TlsSetupError(format!("{}: {e}", path.display())))?;
                    let mut any = false;
                    for cert in iter {
                        let cert =
                            cert.map_err(|e| TlsSetupError(format!("{}: {e}", path.display())))?;
                        out.cas.push((path.clone(), cert));
                        any = true;
                    }
                    if !any {
                        return Err(TlsSetupError(format!(
                            "{}: no PEM certificate found",
                            path.display()
                        )));
                    }
                }
                Some("cert") if out.client.is_none() => {
                    let key_path = path.with_extension("key");
                    if !key_path.exists() {
                        return Err(TlsSetupError(format!(
                            "{}: client certificate without {}",
                            path.display(),
                            key_path.display()
                        )));
                    }
                    let chain = CertificateDer::pem_file_iter(path)
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| TlsSetupError(format!("{}: {e}", path.display())))?;
                    let key = PrivateKeyDer::from_pem_file(&key_path)
                        .map_err(|e| TlsSetupError(format!("{}: {e}", key_path.display())))?;
                    out.client = Some((chain, key, path.clone()));
                }
                Some("key") => {
                    let cert_path = path.with_extension("cert");
                    if !cert_path.exists() {
                        return Err(TlsSetupError(format!(
                            "{}: client key without {}",
                            path.display(),
                            cert_path.display()
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Accepts any server certificate (insecure registries, the CLI's `--tls` without
/// `--tlsverify`) but still checks handshake signatures.
#[derive(Debug)]
pub struct NoVerify(pub Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connector for hyper-util's client: plain TCP for `http`, TLS over TCP for `https`.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    tls: Arc<TlsConfigs>,
}

impl Connector {
    pub(crate) fn new(tls: Arc<TlsConfigs>) -> Connector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(30)));
        http.set_keepalive(Some(Duration::from_secs(60)));
        Connector { http, tls }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeTls;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<MaybeTls, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_ascii_lowercase())
                .unwrap_or_default();
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tcp = http.call(uri).await?;
            if !https {
                return Ok(MaybeTls::Plain(tcp));
            }
            let tcp: TcpStream = tcp.into_inner();
            let peer: Option<IpAddr> = tcp.peer_addr().ok().map(|a| a.ip());
            let insecure = tls.insecure.matches_name(&authority)
                || peer.is_some_and(|ip| tls.insecure.matches_ip(ip));
            let config = tls.config_for(&authority, insecure)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| TlsSetupError(format!("invalid TLS server name {host:?}")))?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(MaybeTls::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A plain or TLS connection.
pub(crate) enum MaybeTls {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for MaybeTls {
    fn connected(&self) -> Connected {
        match self {
            MaybeTls::Plain(s) => s.connected(),
            MaybeTls::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// Describe a transport error from its source chain, and tell whether TLS caused it.
pub(crate) fn describe_transport_error(err: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let mut parts: Vec<String> = Vec::new();
    let mut tls = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let mut text = e.to_string();
        if e.is::<rustls::Error>() || e.is::<TlsSetupError>() {
            tls = true;
        }
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            // io::Error hides its payload from source(); look inside.
            if let Some(inner) = ioe.get_ref() {
                if inner.is::<rustls::Error>() || inner.is::<TlsSetupError>() {
                    tls = true;
                }
                text = inner.to_string();
            }
        }
        let generic = text.starts_with("client error (") || text.is_empty();
        if !generic && parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    (parts.join(": "), tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_described_and_tls_detected() {
        let inner = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let (msg, tls) = describe_transport_error(&inner);
        assert!(tls);
        assert!(msg.contains("UnknownIssuer"), "{msg}");
        let plain = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let (msg, tls) = describe_transport_error(&plain);
        assert!(!tls);
        assert_eq!(msg, "connection refused");
        let setup = io::Error::other(TlsSetupError("ca.crt: no PEM certificate found".into()));
        assert!(describe_transport_error(&setup).1);
    }

    #[test]
    fn certs_dir_files_are_loaded_and_checked() {
        let dir = std::env::temp_dir().join(format!("berth-dist-certs-{}", std::process::id()));
        let host = dir.join("reg.example:5000");
        fs::create_dir_all(&host).unwrap();
        // No directory for the host: nothing to load.
        let none = HostFiles::load(&dir, "other.example").unwrap();
        assert!(none.cas.is_empty() && none.client.is_none());
        // A .crt file that is not PEM is an error naming the file.
        fs::write(host.join("ca.crt"), "garbage").unwrap();
        let err = HostFiles::load(&dir, "reg.example:5000").err().unwrap();
        assert!(err.0.contains("ca.crt"), "{}", err.0);
        // A key without its certificate is an error.
        fs::remove_file(host.join("ca.crt")).unwrap();
        fs::write(host.join("client.key"), "x").unwrap();
        let err = HostFiles::load(&dir, "reg.example:5000").err().unwrap();
        assert!(err.0.contains("client key without"), "{}", err.0);
        // Path-like authorities are never looked up.
        assert!(HostFiles::load(&dir, "../etc").unwrap().cas.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
