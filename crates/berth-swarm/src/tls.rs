//! rustls configurations (ring provider, TLS 1.3) for node-to-node RPC: the manager's server,
//! a client that verifies managers against the cluster roots (two during a root rotation),
//! and the root-CA download client.

use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
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

fn roots(trusted: &[&RootCa]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for root in trusted {
        store
            .add(root.cert_der().clone())
            .map_err(|e| TlsError::Config(format!("root CA as trust anchor: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// The node certificate and the intermediates after it (a cross-signed root during a root
/// rotation), and the key.
fn chain_and_key(
    identity: &NodeIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = crate::ca::pem_certs(&identity.cert_pem)
        .map_err(|e| TlsError::Identity(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsError::Identity(format!("key: {e}")))?;
    Ok((chain, key))
}

/// The root CAs this node trusts, replaceable while servers and clients built on them keep
/// running: the cluster root, and during a root rotation the next root beside it.
pub struct LiveTrust {
    current: RwLock<Verifiers>,
}

#[derive(Clone)]
struct Verifiers {
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<WebPkiServerVerifier>,
}

impl std::fmt::Debug for LiveTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveTrust")
    }
}

fn verifiers(trusted: &[&RootCa]) -> Result<Verifiers, TlsError> {
    let provider = provider();
    let store = roots(trusted)?;
    let client = WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let server = WebPkiServerVerifier::builder_with_provider(store, provider)
        .build()
        .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
    Ok(Verifiers { client, server })
}

impl LiveTrust {
    /// Trust in `trusted` (at least one root).
    pub fn new(trusted: &[&RootCa]) -> Result<Arc<LiveTrust>, TlsError> {
        Ok(Arc::new(LiveTrust {
            current: RwLock::new(verifiers(trusted)?),
        }))
    }

    /// Trusts `trusted` from the next handshake on.
    pub fn set(&self, trusted: &[&RootCa]) -> Result<(), TlsError> {
        let next = verifiers(trusted)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn get(&self) -> Verifiers {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Verifies client certificates against whatever a [`LiveTrust`] holds at each handshake.
#[derive(Debug)]
struct LiveClientVerifier(Arc<LiveTrust>);

impl ClientCertVerifier for LiveClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the roots change at run time and every client presents the
        // one certificate it has anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .client
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .client
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .client
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().client.supported_verify_schemes()
    }
}

/// Verifies server certificates against whatever a [`LiveTrust`] holds at each handshake.
#[derive(Debug)]
struct LiveServerVerifier(Arc<LiveTrust>);

impl ServerCertVerifier for LiveServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.get().server.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .server
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .server
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().server.supported_verify_schemes()
    }
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

    /// The certificate chain presented now (node certificate first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.get().cert.clone()
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
    server_config_trust(LiveTrust::new(&[root])?, live)
}

/// [`server_config_live`] verifying clients against whatever `trust` holds at each handshake.
pub fn server_config_trust(
    trust: Arc<LiveTrust>,
    live: Arc<LiveIdentity>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(LiveClientVerifier(trust)))
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
    client_config_trust(LiveTrust::new(&[root])?, live)
}

/// [`client_config_live`] verifying managers against whatever `trust` holds at each
/// handshake.
pub fn client_config_trust(
    trust: Arc<LiveTrust>,
    live: Option<Arc<LiveIdentity>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LiveServerVerifier(trust)));
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
