//! Where the CLI reaches the daemon: a unix socket, or TCP with or without TLS, chosen as the
//! docker CLI chooses (`-H`, `DOCKER_HOST`, `--tls`, `--tlsverify`, `DOCKER_TLS_VERIFY`,
//! `DOCKER_CERT_PATH`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The connection flags of the command line.
#[derive(Debug, Default, Clone)]
pub struct ConnOpts {
    pub host: Option<String>,
    pub tls: bool,
    pub tlsverify: bool,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
}

/// A byte stream to the daemon, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone)]
pub enum Target {
    Unix(PathBuf),
    Tcp {
        addr: String,
        tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
            Target::Tcp { addr, .. } => write!(f, "tcp://{addr}"),
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

impl Target {
    /// `-H`, then `$BERTH_HOST`, then `$DOCKER_HOST`, then the default socket.
    pub fn from_opts(o: &ConnOpts) -> Result<Target, String> {
        let host = o
            .host
            .clone()
            .or_else(|| std::env::var("BERTH_HOST").ok().filter(|h| !h.is_empty()))
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///run/berth/berth.sock".into());
        let verify = o.tlsverify || env_set("DOCKER_TLS_VERIFY");
        let tls = verify || o.tls || env_set("DOCKER_TLS");
        if let Some(p) = host.strip_prefix("unix://") {
            return Ok(Target::Unix(PathBuf::from(p)));
        }
        let Some(rest) = host.strip_prefix("tcp://") else {
            return Err(format!(
                "unsupported host {host:?}: use unix://PATH or tcp://HOST:PORT"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { "2376" } else { "2375" };
        let (name, addr) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (h.starts_with('[') || !h.contains(':')) => {
                let p = if p.is_empty() { default_port } else { p };
                (h.to_string(), format!("{h}:{p}"))
            }
            _ if rest.is_empty() => return Err(format!("invalid host {host:?}")),
            _ => (rest.to_string(), format!("{rest}:{default_port}")),
        };
        if !tls {
            return Ok(Target::Tcp { addr, tls: None });
        }
        let name = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server = ServerName::try_from(name.clone())
            .map_err(|e| format!("invalid host {host:?}: {e}"))?;
        let connector = connector(o, verify)?;
        Ok(Target::Tcp {
            addr,
            tls: Some((connector, server)),
        })
    }

    pub async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        match self {
            Target::Unix(p) => Ok(Box::new(tokio::net::UnixStream::connect(p).await?)),
            Target::Tcp { addr, tls } => {
                let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                let _ = s.set_nodelay(true);
                match tls {
                    None => Ok(Box::new(s)),
                    Some((c, name)) => Ok(Box::new(c.connect(name.clone(), s).await?)),
                }
            }
        }
    }
}

/// A file given on the command line must exist; a default one is used only if it does.
fn pick(given: &Option<PathBuf>, default: PathBuf) -> Option<PathBuf> {
    match given {
        Some(p) => Some(p.clone()),
        None => default.exists().then_some(default),
    }
}

fn certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let v = CertificateDer::pem_file_iter(p)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("could not read {}: {e}", p.display()))?;
    if v.is_empty() {
        return Err(format!("{}: no certificate found", p.display()));
    }
    Ok(v)
}

fn connector(o: &ConnOpts, verify: bool) -> Result<tokio_rustls::TlsConnector, String> {
    let dir = berth_api::tls::cert_dir();
    let ca = pick(&o.tlscacert, dir.join("ca.pem"));
    let cert = pick(&o.tlscert, dir.join("cert.pem"));
    let key = pick(&o.tlskey, dir.join("key.pem"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if verify {
        let ca = ca.ok_or_else(|| {
            format!(
                "--tlsverify needs a CA certificate: --tlscacert or {}",
                dir.join("ca.pem").display()
            )
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&ca)? {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        builder.with_root_certificates(roots)
    } else {
        // --tls alone encrypts but, as with the docker CLI, does not check who answers.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(berth_distribution::NoVerify(provider)))
    };
    let config = match (cert, key) {
        (Some(c), Some(k)) => {
            let key = PrivateKeyDer::from_pem_file(&k)
                .map_err(|e| format!("could not read {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(certs(&c)?, key)
                .map_err(|e| format!("client certificate and key do not fit: {e}"))?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("a client certificate needs both --tlscert and --tlskey".into())
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(host: &str) -> ConnOpts {
        ConnOpts {
            host: Some(host.into()),
            ..Default::default()
        }
    }

    #[test]
    fn hosts() {
        match Target::from_opts(&opts("unix:///x/y.sock")).unwrap() {
            Target::Unix(p) => assert_eq!(p, PathBuf::from("/x/y.sock")),
            Target::Tcp { .. } => panic!("unix expected"),
        }
        match Target::from_opts(&opts("tcp://127.0.0.1")).unwrap() {
            Target::Tcp { addr, tls } => {
                assert_eq!(addr, "127.0.0.1:2375");
                assert!(tls.is_none());
            }
            Target::Unix(_) => panic!("tcp expected"),
        }
        match Target::from_opts(&opts("tcp://[::1]:99/")).unwrap() {
            Target::Tcp { addr, .. } => assert_eq!(addr, "[::1]:99"),
            Target::Unix(_) => panic!("tcp expected"),
        }
        assert!(Target::from_opts(&opts("ssh://x")).is_err());
        assert!(Target::from_opts(&opts("tcp://")).is_err());
    }

    #[test]
    fn tlsverify_needs_a_ca() {
        let o = ConnOpts {
            host: Some("tcp://127.0.0.1:1".into()),
            tlsverify: true,
            tlscacert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = Target::from_opts(&o).err().unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
