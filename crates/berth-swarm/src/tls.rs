//! rustls configurations (ring provider, TLS 1.3) for node-to-node RPC: the manager's server,
//! a client that verifies managers against the cluster root, and the root-CA download client.

use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::ca::{NodeIdentity, RootCa};

/// The name every manager's certificate carries and clients verify.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";

/// A TLS configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("node certificate or key for TLS: {0}")]
    Identity(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn roots(root: &RootCa) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    store
        .add(root.cert_der().clone())
        .map_err(|e| TlsError::Config(format!("root CA as trust anchor: {e}")))?;
    Ok(Arc::new(store))
}

fn chain_and_key(
    identity: &NodeIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert = CertificateDer::from_pem_slice(identity.cert_pem.as_bytes())
        .map_err(|e| TlsError::Identity(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsError::Identity(format!("key: {e}")))?;
    Ok((vec![cert], key))
}

/// This node's certificate and key as TLS presents them, replaceable while servers and
/// clients built on it keep running (a renewed certificate is used by the next handshake).
#[derive(Debug)]
pub struct LiveIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl LiveIdentity {
    pub fn new(identity: &NodeIdentity) -> Result<Arc<LiveIdentity>, TlsError> {
        Ok(Arc::new(LiveIdentity {
            current: RwLock::new(certified(identity)?),
        }))
    }

    /// Presents `identity` from the next handshake on.
    pub fn set(&self, identity: &NodeIdentity) -> Result<(), TlsError> {
        let next = certified(identity)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn certified(identity: &NodeIdentity) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = chain_and_key(identity)?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Identity(format!("key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

impl ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for LiveIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The RPC server's configuration: presents this node's certificate, asks clients for theirs
/// and verifies any it gets against the root, but also admits clients without one (joining
/// nodes, root CA downloads).
pub fn server_config(
    root: &RootCa,
    identity: &NodeIdentity,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_live(root, LiveIdentity::new(identity)?)
}

/// [`server_config`] presenting whatever `live` holds at each handshake.
pub fn server_config_live(
    root: &RootCa,
    live: Arc<LiveIdentity>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(root)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(live);
    // No resumption: a resumed session would carry the client's old certificate (its old
    // role after a promotion or demotion, or after a renewal).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client configuration that accepts only managers of this cluster (certificates from
/// `root` naming `swarm-manager`), presenting `identity` when given.
pub fn client_config(
    root: &RootCa,
    identity: Option<&NodeIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_live(root, identity.map(LiveIdentity::new).transpose()?)
}

/// [`client_config`] presenting whatever `live` holds at each handshake.
pub fn client_config_live(
    root: &RootCa,
    live: Option<Arc<LiveIdentity>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(root)?);
    let mut config = match live {
        Some(live) => builder.with_client_cert_resolver(live),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A client configuration that accepts any server certificate. Only for downloading the root
/// CA, whose digest the caller then checks against the join token before trusting it.
pub fn insecure_root_fetch_config() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyServerCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts whatever certificate the server shows, but still checks the handshake signature
/// against it (so the session is at least with the holder of that certificate's key).
#[derive(Debug)]
struct AnyServerCert {
    algorithms: crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
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
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
