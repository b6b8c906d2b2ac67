//! The cluster CA: the root certificate made at `swarm init`, node certificates issued from the
//! joiner's CSR (the node key never leaves the node), node identities on disk, and peer info.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber, SubjectPublicKeyInfo, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Common name of the root certificate.
pub const ROOT_CN: &str = "swarm-ca";
/// Lifetime of a root certificate made by [`RootCa::generate`].
pub const ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Node certificate lifetime when the cluster spec sets none (2160h, as Docker).
pub const DEFAULT_NODE_EXPIRY: Duration = Duration::from_secs(2160 * 3600);
/// Shortest node certificate lifetime accepted.
pub const MIN_NODE_EXPIRY: Duration = Duration::from_secs(3600);
/// How far in the past a new certificate's validity starts, for clocks a little apart.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// File names of a node identity inside its directory.
pub const NODE_CERT_FILE: &str = "swarm-node.crt";
pub const NODE_KEY_FILE: &str = "swarm-node.key";

/// A failure of the cluster CA or of reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot create the certificate: {0}")]
    Generate(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The role a node certificate grants, carried in its OU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    /// The certificate OU (and first DNS SAN) of the role.
    pub fn ou(self) -> &'static str {
        match self {
            NodeRole::Manager => "swarm-manager",
            NodeRole::Worker => "swarm-worker",
        }
    }

    /// The role named by a certificate OU.
    pub fn from_ou(ou: &str) -> Option<NodeRole> {
        match ou {
            "swarm-manager" => Some(NodeRole::Manager),
            "swarm-worker" => Some(NodeRole::Worker),
            _ => None,
        }
    }
}

/// What a verified node certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub node_id: String,
    pub role: NodeRole,
    pub cluster_id: String,
    pub not_after: OffsetDateTime,
}

/// The cluster root CA: its certificate, and its key on the nodes that can issue.
pub struct RootCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_after: OffsetDateTime,
    issuer: Option<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("not_after", &self.not_after)
            .field("can_issue", &self.issuer.is_some())
            .finish()
    }
}

impl RootCa {
    /// A new root: CN `swarm-ca`, ECDSA P-256, valid 20 years.
    pub fn generate() -> Result<RootCa, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ROOT_CN);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + ROOT_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        RootCa::from_pem(&cert.pem(), Some(&key.serialize_pem()))
    }

    /// A root from its PEM certificate and, on nodes that issue certificates, its PEM key.
    /// The certificate must be a CA, currently valid, and match the key.
    pub fn from_pem(cert_pem: &str, key_pem: Option<&str>) -> Result<RootCa, CaError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::InvalidCertificate(format!("root CA PEM: {e}")))?;
        let x509 = parse_cert(&cert_der)?;
        let is_ca = x509
            .basic_constraints()
            .map_err(|e| CaError::InvalidCertificate(format!("root CA basic constraints: {e}")))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaError::InvalidCertificate(
                "the root certificate is not a CA certificate".into(),
            ));
        }
        let not_after = asn1_time(x509.validity().not_after.timestamp())?;
        if not_after <= OffsetDateTime::now_utc() {
            return Err(CaError::InvalidCertificate(format!(
                "the root CA certificate expired at {not_after}"
            )));
        }
        let issuer = match key_pem {
            None => None,
            Some(key_pem) => {
                let key = KeyPair::from_pem(key_pem)
                    .map_err(|e| CaError::InvalidKey(format!("root CA key: {e}")))?;
                if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
                    return Err(CaError::InvalidKey(
                        "the root CA key does not match the root CA certificate".into(),
                    ));
                }
                Some(
                    Issuer::from_ca_cert_der(&cert_der, key)
                        .map_err(|e| CaError::InvalidCertificate(format!("root CA: {e}")))?,
                )
            }
        };
        Ok(RootCa {
            cert_pem: cert_pem.to_string(),
            cert_der,
            not_after,
            issuer,
        })
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The root key, PEM, when this node holds it.
    pub fn key_pem(&self) -> Option<String> {
        self.issuer.as_ref().map(|i| i.key().serialize_pem())
    }

    /// Whether this node holds the root key and so can issue node certificates.
    pub fn can_issue(&self) -> bool {
        self.issuer.is_some()
    }

    /// When the root certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// SHA-256 of the root certificate's PEM bytes (what join tokens carry).
    pub fn digest(&self) -> [u8; 32] {
        pem_digest(&self.cert_pem)
    }

    /// A node certificate for the key in `csr_pem`: CN = node id, OU = the role, O = cluster id,
    /// DNS SANs = [OU, node id]. Only the CSR's public key is used; the subject is ours.
    /// `expiry` defaults to 2160h; below 1h is refused; it never outlives the root.
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        expiry: Option<Duration>,
    ) -> Result<String, CaError> {
        if self.issuer.is_none() {
            return Err(CaError::Refused(
                "this node does not hold the root CA key and cannot issue".into(),
            ));
        }
        let expiry = expiry.unwrap_or(DEFAULT_NODE_EXPIRY);
        if expiry < MIN_NODE_EXPIRY {
            return Err(CaError::Refused(format!(
                "node certificate expiry must be at least 1h, not {}s",
                expiry.as_secs()
            )));
        }
        check_id("node id", node_id)?;
        check_id("cluster id", cluster_id)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let expiry = time::Duration::try_from(expiry)
            .map_err(|_| CaError::Refused("node certificate expiry is too large".into()))?;
        let not_after = now
            .checked_add(expiry)
            .map_or(self.not_after, |t| t.min(self.not_after));
        if not_after - now < time::Duration::try_from(MIN_NODE_EXPIRY).unwrap_or_default() {
            return Err(CaError::Refused(format!(
                "the root CA expires at {}, too soon to issue node certificates",
                self.not_after
            )));
        }
        self.sign_node(&csr, node_id, role, cluster_id, now - BACKDATE, not_after)
    }

    /// Signs a node certificate for the CSR's key with our subject and the given validity.
    fn sign_node(
        &self,
        csr: &CertificateSigningRequestParams,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<String, CaError> {
        let issuer = self.issuer.as_ref().ok_or_else(|| {
            CaError::Refused("this node does not hold the root CA key and cannot issue".into())
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role.ou());
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![dns_san(role.ou())?, dns_san(node_id)?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.public_key, issuer)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(cert.pem())
    }

    /// A CA certificate with `next`'s subject, key and validity, signed by this root: the
    /// intermediate that lets nodes still trusting this root accept certificates `next` issues
    /// while the cluster moves to it.
    pub fn cross_sign(&self, next: &RootCa) -> Result<String, CaError> {
        let issuer = self.issuer.as_ref().ok_or_else(|| {
            CaError::Refused("this node does not hold the root CA key and cannot cross-sign".into())
        })?;
        let x509 = parse_cert(next.cert_der())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(x509.subject())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = asn1_time(x509.validity().not_before.timestamp())?;
        params.not_after = next.not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        for ext in x509.extensions() {
            if let ParsedExtension::SubjectKeyIdentifier(ski) = ext.parsed_extension() {
                params.key_identifier_method = KeyIdMethod::PreSpecified(ski.0.to_vec());
            }
        }
        let public = SubjectPublicKeyInfo::from_der(x509.public_key().raw)
            .map_err(|e| CaError::InvalidCertificate(format!("root CA public key: {e}")))?;
        let cert = params
            .signed_by(&public, issuer)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(cert.pem())
    }

    /// The raw (DER) subject and SubjectPublicKeyInfo of this root: the issuer facts the
    /// Engine API's `TLSInfo` shows.
    pub fn issuer_info(&self) -> Result<IssuerInfo, CaError> {
        let x509 = parse_cert(&self.cert_der)?;
        Ok(IssuerInfo {
            subject: x509.subject().as_raw().to_vec(),
            public_key: x509.public_key().raw.to_vec(),
        })
    }

    /// Checks that `cert_der` was signed by this root.
    pub fn verify_signed(&self, cert_der: &[u8]) -> Result<(), CaError> {
        let root = parse_cert(&self.cert_der)?;
        let cert = parse_cert(cert_der)?;
        cert.verify_signature(Some(root.public_key()))
            .map_err(|_| CaError::Refused("the certificate was not issued by this root CA".into()))
    }
}

/// SHA-256 of PEM text, as a join token's digest part.
pub fn pem_digest(pem: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, pem.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Who issued a certificate: the issuer's raw subject and SubjectPublicKeyInfo (DER).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerInfo {
    pub subject: Vec<u8>,
    pub public_key: Vec<u8>,
}

/// Every certificate of a PEM bundle, DER, in order.
pub fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::InvalidCertificate(format!("PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CaError::InvalidCertificate(
            "no certificate in the PEM text".into(),
        ));
    }
    Ok(certs)
}

/// The issuer of the first certificate of `chain` (a node certificate, maybe followed by
/// intermediates): its subject as the certificate names it, and the public key of whichever
/// of the chain's other certificates or of `roots` signed it. None when none of them did.
pub fn leaf_issuer(chain: &[CertificateDer<'_>], roots: &[&RootCa]) -> Option<IssuerInfo> {
    let leaf = parse_cert(chain.first()?).ok()?;
    let candidates = chain[1..]
        .iter()
        .map(|c| c.as_ref())
        .chain(roots.iter().map(|r| r.cert_der().as_ref()));
    for der in candidates {
        let Ok(cand) = parse_cert(der) else { continue };
        if cand.subject().as_raw() == leaf.issuer().as_raw()
            && leaf.verify_signature(Some(cand.public_key())).is_ok()
        {
            return Some(IssuerInfo {
                subject: leaf.issuer().as_raw().to_vec(),
                public_key: cand.public_key().raw.to_vec(),
            });
        }
    }
    None
}

/// Whether two PEM texts hold the same first certificate (whatever their line layout).
pub fn same_cert(a: &str, b: &str) -> bool {
    match (pem_certs(a), pem_certs(b)) {
        (Ok(a), Ok(b)) => a[0] == b[0],
        _ => false,
    }
}

/// A node's new private key and the CSR that carries its public key.
pub struct NodeKey {
    pub key_pem: String,
    pub csr_pem: String,
}

impl NodeKey {
    /// A fresh ECDSA P-256 key and its CSR.
    pub fn generate() -> Result<NodeKey, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(NodeKey {
            key_pem: key.serialize_pem(),
            csr_pem: csr,
        })
    }
}

/// This node's certificate and key, with what the certificate says.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub node_id: String,
    pub role: NodeRole,
    pub cluster_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
    renew_at: OffsetDateTime,
}

impl NodeIdentity {
    /// An identity from a node certificate and its key; the key must match the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<NodeIdentity, CaError> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::InvalidCertificate(format!("node certificate PEM: {e}")))?;
        let info = peer_info(&der)?;
        let x509 = parse_cert(&der)?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CaError::InvalidKey(format!("node key: {e}")))?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(CaError::InvalidKey(
                "the node key does not match the node certificate".into(),
            ));
        }
        let not_before = asn1_time(x509.validity().not_before.timestamp())?;
        let renew_at = renewal_point(&der, not_before, info.not_after);
        Ok(NodeIdentity {
            node_id: info.node_id,
            role: info.role,
            cluster_id: info.cluster_id,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            not_after: info.not_after,
            renew_at,
        })
    }

    /// Reads `swarm-node.crt` and `swarm-node.key` from `dir`.
    pub fn load(dir: &Path) -> Result<NodeIdentity, CaError> {
        NodeIdentity::load_with(dir, Ok)
    }

    /// [`NodeIdentity::load`] with the key file's text passed through `open_key` first (a key
    /// sealed under autolock's unlock key is opened there).
    pub fn load_with(
        dir: &Path,
        open_key: impl FnOnce(String) -> Result<String, CaError>,
    ) -> Result<NodeIdentity, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| CaError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let key = open_key(read(NODE_KEY_FILE)?)?;
        NodeIdentity::from_pem(&read(NODE_CERT_FILE)?, &key)
    }

    /// Writes `swarm-node.crt` and `swarm-node.key` (mode 0600) into `dir` (made 0700 if
    /// missing), each replaced atomically.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        self.save_with(dir, &self.key_pem)
    }

    /// [`NodeIdentity::save`] with `key_file` as the key file's content (the key sealed under
    /// autolock's unlock key, or the PEM key itself).
    pub fn save_with(&self, dir: &Path, key_file: &str) -> Result<(), CaError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CaError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        write_atomic(&dir.join(NODE_KEY_FILE), key_file.as_bytes(), 0o600)?;
        write_atomic(&dir.join(NODE_CERT_FILE), self.cert_pem.as_bytes(), 0o644)
    }

    /// Whether the certificate should be renewed now: past a point between 50% and 80% of its
    /// life, chosen once per certificate (from its hash, so it stays put across restarts).
    pub fn needs_renewal(&self, now: OffsetDateTime) -> bool {
        now >= self.renew_at
    }

    /// The moment [`NodeIdentity::needs_renewal`] turns true.
    pub fn renew_at(&self) -> OffsetDateTime {
        self.renew_at
    }
}

/// Reads node id, role, cluster id and expiry from a node certificate (DER).
pub fn peer_info(cert_der: &[u8]) -> Result<PeerInfo, CaError> {
    let x509 = parse_cert(cert_der)?;
    let subject = x509.subject();
    let node_id = single("common name", subject.iter_common_name())?;
    let ou = single("organizational unit", subject.iter_organizational_unit())?;
    let cluster_id = single("organization", subject.iter_organization())?;
    let role = NodeRole::from_ou(&ou)
        .ok_or_else(|| CaError::InvalidCertificate(format!("unknown node role {ou:?}")))?;
    let not_after = asn1_time(x509.validity().not_after.timestamp())?;
    Ok(PeerInfo {
        node_id,
        role,
        cluster_id,
        not_after,
    })
}

/// The one value of a subject attribute that must appear exactly once.
fn single<'a>(
    what: &str,
    mut values: impl Iterator<Item = &'a AttributeTypeAndValue<'a>>,
) -> Result<String, CaError> {
    let attr = values
        .next()
        .ok_or_else(|| CaError::InvalidCertificate(format!("no {what} in the subject")))?;
    if values.next().is_some() {
        return Err(CaError::InvalidCertificate(format!(
            "more than one {what} in the subject"
        )));
    }
    attr.as_str()
        .map(str::to_string)
        .map_err(|e| CaError::InvalidCertificate(format!("{what}: {e}")))
}

/// A certificate's subject as rcgen writes names: attribute by attribute, each string in its
/// original type, so that a name written from it is the name an `Issuer` made from the same
/// certificate writes.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, CaError> {
    let bad = |what: &str| CaError::InvalidCertificate(format!("root CA subject: {what}"));
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(bad("only one attribute per name component is supported"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| bad("an attribute type is not an object identifier"))?
            .collect();
        let data = attr.attr_value().data;
        let text = || std::str::from_utf8(data).map_err(|_| bad("a value is not text"));
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_string()),
            Tag::PrintableString => DnValue::PrintableString(
                text()?
                    .try_into()
                    .map_err(|_| bad("a value is not a printable string"))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text()?
                    .try_into()
                    .map_err(|_| bad("a value is not an IA5 string"))?,
            ),
            Tag::T61String => DnValue::TeletexString(
                text()?
                    .try_into()
                    .map_err(|_| bad("a value is not a teletex string"))?,
            ),
            Tag::BmpString => DnValue::BmpString(
                rcgen::string::BmpString::from_utf16be(data.to_vec())
                    .map_err(|_| bad("a value is not a BMP string"))?,
            ),
            Tag::UniversalString => DnValue::UniversalString(
                rcgen::string::UniversalString::from_utf32be(data.to_vec())
                    .map_err(|_| bad("a value is not a universal string"))?,
            ),
            _ => return Err(bad("a value has an unsupported string type")),
        };
        dn.push(DnType::CustomDnType(oid), value);
    }
    Ok(dn)
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, CaError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CaError::InvalidCertificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(CaError::InvalidCertificate(e.to_string())),
    }
}

fn asn1_time(ts: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(ts)
        .map_err(|e| CaError::InvalidCertificate(format!("validity time: {e}")))
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 20];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Generate("no randomness for the serial number".into()))?;
    // Positive and without a leading zero byte, so it encodes in 20 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn dns_san(name: &str) -> Result<SanType, CaError> {
    Ia5String::try_from(name)
        .map(SanType::DnsName)
        .map_err(|e| CaError::Refused(format!("{name:?} cannot be a DNS name: {e}")))
}

/// Node and cluster ids go into DNS SANs and file names: 1..=64 of [A-Za-z0-9-].
fn check_id(what: &str, id: &str) -> Result<(), CaError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CaError::Refused(format!(
            "invalid {what} {id:?}: 1 to 64 letters, digits or '-'"
        )))
    }
}

/// A point between 50% and 80% of the validity, fixed by the certificate's hash.
fn renewal_point(
    der: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> OffsetDateTime {
    let hash = ring::digest::digest(&ring::digest::SHA256, der);
    let h = hash.as_ref();
    let x = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let fraction = 0.5 + 0.3 * (f64::from(x) / f64::from(u32::MAX));
    let life = (not_after - not_before).max(time::Duration::ZERO);
    not_before + life * fraction
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err)?;
    f.write_all(data).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err)
}

/// A node certificate that expired an hour ago, for tests of the TLS verifiers.
#[cfg(test)]
pub(crate) fn expired_identity(ca: &RootCa, node_id: &str, role: NodeRole) -> NodeIdentity {
    let key = NodeKey::generate().unwrap();
    let csr = CertificateSigningRequestParams::from_pem(&key.csr_pem).unwrap();
    let now = OffsetDateTime::now_utc();
    let cert = ca
        .sign_node(
            &csr,
            node_id,
            role,
            "cluster1",
            now - time::Duration::days(2),
            now - time::Duration::hours(1),
        )
        .unwrap();
    NodeIdentity::from_pem(&cert, &key.key_pem).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(ca: &RootCa, role: NodeRole, expiry: Option<Duration>) -> NodeIdentity {
        let key = NodeKey::generate().unwrap();
        let cert = ca
            .issue(&key.csr_pem, "node1abc", role, "cluster9", expiry)
            .unwrap();
        NodeIdentity::from_pem(&cert, &key.key_pem).unwrap()
    }

    #[test]
    fn issue_and_peer_info_round_trip() {
        let ca = RootCa::generate().unwrap();
        assert!(ca.can_issue());
        let id = issue(&ca, NodeRole::Manager, None);
        assert_eq!(id.node_id, "node1abc");
        assert_eq!(id.role, NodeRole::Manager);
        assert_eq!(id.cluster_id, "cluster9");
        let life = id.not_after - OffsetDateTime::now_utc();
        assert!(life > time::Duration::hours(2159) && life <= time::Duration::hours(2160));

        let der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap();
        let info = peer_info(&der).unwrap();
        assert_eq!(info.node_id, "node1abc");
        assert_eq!(info.role, NodeRole::Manager);
        assert_eq!(info.cluster_id, "cluster9");
        ca.verify_signed(&der).unwrap();

        let x509 = parse_cert(&der).unwrap();
        let sans: Vec<String> = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(sans, ["DNSName(swarm-manager)", "DNSName(node1abc)"]);

        let worker = issue(&ca, NodeRole::Worker, Some(Duration::from_secs(7200)));
        assert_eq!(worker.role, NodeRole::Worker);

        // Another root did not sign it.
        let other = RootCa::generate().unwrap();
        assert!(other.verify_signed(&der).is_err());
    }

    #[test]
    fn root_reloads_from_pem_and_digest_is_of_the_pem() {
        let ca = RootCa::generate().unwrap();
        let again = RootCa::from_pem(ca.cert_pem(), ca.key_pem().as_deref()).unwrap();
        assert_eq!(again.digest(), ca.digest());
        assert_eq!(ca.digest(), pem_digest(ca.cert_pem()));
        let x509 = parse_cert(ca.cert_der()).unwrap();
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), ROOT_CN);
        let days = (ca.not_after() - OffsetDateTime::now_utc()).whole_days();
        assert!(days == 20 * 365 - 1 || days == 20 * 365, "{days} days");
        // Reloaded without its key it verifies but cannot issue.
        let public = RootCa::from_pem(ca.cert_pem(), None).unwrap();
        assert!(!public.can_issue());
        let key = NodeKey::generate().unwrap();
        let err = public
            .issue(&key.csr_pem, "n", NodeRole::Worker, "c", None)
            .unwrap_err();
        assert!(err.to_string().contains("cannot issue"), "{err}");
        // A key that is not the root's is refused.
        let other = RootCa::generate().unwrap();
        let err = RootCa::from_pem(ca.cert_pem(), other.key_pem().as_deref()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        // A node certificate is not a root.
        let id = issue(&ca, NodeRole::Worker, None);
        let err = RootCa::from_pem(&id.cert_pem, None).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn short_expiry_and_bad_input_refused() {
        let ca = RootCa::generate().unwrap();
        let key = NodeKey::generate().unwrap();
        let err = ca
            .issue(
                &key.csr_pem,
                "n1",
                NodeRole::Worker,
                "c1",
                Some(Duration::from_secs(3599)),
            )
            .unwrap_err();
        assert!(err.to_string().contains("at least 1h"), "{err}");
        let err = ca
            .issue("garbage", "n1", NodeRole::Worker, "c1", None)
            .unwrap_err();
        assert!(
            matches!(err, CaError::InvalidCsr(_)),
            "{err}: garbage is not a CSR"
        );
        let err = ca
            .issue(&key.csr_pem, "bad id!", NodeRole::Worker, "c1", None)
            .unwrap_err();
        assert!(err.to_string().contains("invalid node id"), "{err}");
        assert!(peer_info(b"\x30\x03\x02\x01\x01").is_err());
    }

    #[test]
    fn expired_root_refused() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(10);
        params.not_after = OffsetDateTime::now_utc() - time::Duration::days(1);
        let cert = params.self_signed(&key).unwrap();
        let err = RootCa::from_pem(&cert.pem(), Some(&key.serialize_pem())).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn identity_save_load_and_renewal_window() {
        let ca = RootCa::generate().unwrap();
        let id = issue(&ca, NodeRole::Worker, Some(Duration::from_secs(100 * 3600)));
        let dir = std::env::temp_dir().join(format!("berth-swarm-ca-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        id.save(&dir).unwrap();
        let mode = fs::metadata(dir.join(NODE_KEY_FILE)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let back = NodeIdentity::load(&dir).unwrap();
        assert_eq!(back.node_id, id.node_id);
        assert_eq!(back.renew_at(), id.renew_at());
        fs::remove_dir_all(&dir).unwrap();

        let x509_der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap();
        let x509 = parse_cert(&x509_der).unwrap();
        let nb = asn1_time(x509.validity().not_before.timestamp()).unwrap();
        let life = id.not_after - nb;
        assert!(id.renew_at() >= nb + life * 0.5 && id.renew_at() <= nb + life * 0.8);
        assert!(!id.needs_renewal(OffsetDateTime::now_utc()));
        assert!(!id.needs_renewal(nb + life * 0.49));
        assert!(id.needs_renewal(nb + life * 0.81));

        // A mismatched key is refused.
        let other = NodeKey::generate().unwrap();
        let err = NodeIdentity::from_pem(&id.cert_pem, &other.key_pem).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn cross_signed_root_links_the_next_root_to_the_current_one() {
        let old = RootCa::generate().unwrap();
        let next = RootCa::generate().unwrap();
        let cross_pem = old.cross_sign(&next).unwrap();
        let cross_der = CertificateDer::from_pem_slice(cross_pem.as_bytes()).unwrap();
        let cross = parse_cert(&cross_der).unwrap();
        let next_x509 = parse_cert(next.cert_der()).unwrap();
        // The next root's name and key, signed by the current root, still a CA.
        assert_eq!(cross.subject().as_raw(), next_x509.subject().as_raw());
        assert_eq!(cross.public_key().raw, next_x509.public_key().raw);
        old.verify_signed(&cross_der).unwrap();
        assert!(next.verify_signed(&cross_der).is_err());
        assert!(cross.basic_constraints().unwrap().unwrap().value.ca);
        // Only a root holding its key cross-signs.
        let public = RootCa::from_pem(old.cert_pem(), None).unwrap();
        assert!(public.cross_sign(&next).is_err());

        // A certificate from the next root names it as issuer, found through the
        // cross-signed certificate after it or through the next root itself.
        let id = issue(&next, NodeRole::Worker, None);
        let leaf = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap();
        let want = next.issuer_info().unwrap();
        let chain = [leaf.clone(), cross_der.clone()];
        assert_eq!(leaf_issuer(&chain, &[]), Some(want.clone()));
        assert_eq!(leaf_issuer(&chain, &[&old]), Some(want.clone()));
        assert_eq!(
            leaf_issuer(std::slice::from_ref(&leaf), &[&old, &next]),
            Some(want)
        );
        assert_eq!(leaf_issuer(std::slice::from_ref(&leaf), &[&old]), None);
        let old_leaf = issue(&old, NodeRole::Worker, None);
        let old_der = CertificateDer::from_pem_slice(old_leaf.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            leaf_issuer(&[old_der], &[&old, &next]),
            Some(old.issuer_info().unwrap())
        );
        assert_ne!(old.issuer_info().unwrap(), next.issuer_info().unwrap());
        assert_eq!(leaf_issuer(&[], &[&old]), None);

        // A chain in PEM keeps its order; the identity is the first certificate's.
        let bundle = format!("{}{}", id.cert_pem, cross_pem);
        let certs = pem_certs(&bundle).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1], cross_der);
        let again = NodeIdentity::from_pem(&bundle, &id.key_pem).unwrap();
        assert_eq!(again.node_id, id.node_id);
        assert!(same_cert(
            next.cert_pem(),
            &format!("\n{}", next.cert_pem())
        ));
        assert!(!same_cert(next.cert_pem(), old.cert_pem()));
        assert!(pem_certs("no pem here").is_err());
    }
}
