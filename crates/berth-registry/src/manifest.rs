//! Manifests: the media types accepted (OCI image manifest and index, Docker schema2 manifest
//! and list), their JSON checks, and the digests they reference (for push checks and gc).

use crate::error::{ApiError, Code};
use crate::names::{Digest, DigestError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest manifest accepted (the spec asks registries to take at least 4 MB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Layers a registry does not have to hold (their `urls` point elsewhere).
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

pub fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Map<String, Value>>,
}

/// A reference from a manifest to content: a digest (or why it is unusable) and a size.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub digest: Result<Digest, String>,
    pub size: u64,
    pub media_type: Option<String>,
}

impl Descriptor {
    fn from_raw(raw: RawDescriptor) -> Result<Descriptor, String> {
        let size = u64::try_from(raw.size).map_err(|_| "negative descriptor size".to_string())?;
        let digest = match Digest::parse(&raw.digest) {
            Ok(d) => Ok(d),
            Err(DigestError::Invalid) => return Err(format!("invalid digest {:?}", raw.digest)),
            // Well formed but another algorithm: this registry cannot hold it.
            Err(DigestError::Unsupported) => Err(raw.digest),
        };
        Ok(Descriptor {
            digest,
            size,
            media_type: raw.media_type,
        })
    }

    pub fn is_foreign(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|m| FOREIGN_LAYERS.contains(&m))
    }
}

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

impl Manifest {
    /// Parses and checks `bytes`, pushed with `content_type` (parameters ignored). Without a
    /// usable content type, the `mediaType` field decides, else the shape (as registry:2).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ApiError> {
        let invalid = |m: String| ApiError::new(Code::ManifestInvalid, m);
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| {
                !c.is_empty() && *c != "application/octet-stream" && *c != "application/json"
            });
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(h), Some(f)) if h != f => {
                return Err(invalid(format!(
                    "mediaType {f:?} does not match Content-Type {h:?}"
                )))
            }
            (Some(h), _) => h.to_string(),
            (None, Some(f)) => f.to_string(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
            (None, None) => return Err(invalid("manifest media type unknown".into())),
        };
        let kind = kind_of(&media_type)
            .ok_or_else(|| invalid(format!("unsupported manifest media type {media_type:?}")))?;
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2".into()));
        }
        let desc = |r: RawDescriptor| Descriptor::from_raw(r).map_err(invalid);
        let subject = match raw.subject.map(desc).transpose()? {
            None => None,
            Some(d) => Some(
                d.digest
                    .map_err(|s| invalid(format!("unsupported subject digest {s}")))?,
            ),
        };
        let (config, layers, manifests) = match kind {
            Kind::Image => {
                let config = raw
                    .config
                    .ok_or_else(|| invalid("image manifest has no config".into()))?;
                if raw.manifests.is_some() {
                    return Err(invalid("image manifest has a manifests list".into()));
                }
                let layers = raw.layers.into_iter().map(desc).collect::<Result<_, _>>()?;
                (Some(desc(config)?), layers, Vec::new())
            }
            Kind::Index => {
                let list = raw
                    .manifests
                    .ok_or_else(|| invalid("index has no manifests list".into()))?;
                if raw.config.is_some() {
                    return Err(invalid("index has a config".into()));
                }
                let list = list.into_iter().map(desc).collect::<Result<_, _>>()?;
                (None, Vec::new(), list)
            }
        };
        Ok(Manifest {
            media_type,
            kind,
            config,
            layers,
            manifests,
            subject,
            artifact_type: raw.artifact_type.filter(|a| !a.is_empty()),
            annotations: raw.annotations,
        })
    }

    /// The blobs this manifest needs in its repository: the config and the layers that are not
    /// foreign.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.is_foreign()))
    }

    /// The referrers API's `artifactType` of this manifest: its own, else (for an image) its
    /// config's media type.
    pub fn referrer_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| match self.kind {
            Kind::Image => self.config.as_ref().and_then(|c| c.media_type.clone()),
            Kind::Index => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn image_manifest_references() {
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 10},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d(2), "size": 20},
                {"mediaType": FOREIGN_LAYERS[0], "digest": d(3), "size": 30, "urls": ["http://x"]}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d(4), "size": 1}
        });
        let m = Manifest::parse(m.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, Kind::Image);
        let blobs: Vec<_> = m
            .blobs()
            .map(|b| b.digest.clone().unwrap().to_string())
            .collect();
        assert_eq!(blobs, [d(1), d(2)]);
        assert_eq!(m.subject.as_ref().unwrap().to_string(), d(4));
        assert_eq!(
            m.referrer_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn index_and_guessing() {
        let body = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": d(5), "size": 3}]});
        let m = Manifest::parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        assert_eq!(m.manifests.len(), 1);
        let m = Manifest::parse(body.to_string().as_bytes(), Some(DOCKER_LIST)).unwrap();
        assert_eq!(m.media_type, DOCKER_LIST);
        assert_eq!(m.referrer_artifact_type(), None);
    }

    #[test]
    fn rejects() {
        let code = |body: Value, ct: Option<&str>| {
            Manifest::parse(body.to_string().as_bytes(), ct)
                .unwrap_err()
                .code()
        };
        let cfg = json!({"mediaType": "x", "digest": d(1), "size": 1});
        assert_eq!(
            code(
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "config": cfg}),
                Some(OCI_MANIFEST)
            ),
            Some(Code::ManifestInvalid)
        );
        assert_eq!(
            code(
                json!({"schemaVersion": 1, "config": cfg}),
                Some(OCI_MANIFEST)
            ),
            Some(Code::ManifestInvalid)
        );
        assert_eq!(
            code(
                json!({"schemaVersion": 2, "config": cfg}),
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Some(Code::ManifestInvalid)
        );
        assert_eq!(
            code(
                json!({"schemaVersion": 2, "config": {"digest": "nope", "size": 1}}),
                Some(OCI_MANIFEST)
            ),
            Some(Code::ManifestInvalid)
        );
        assert_eq!(
            code(
                json!({"schemaVersion": 2, "config": {"digest": d(1), "size": -1}}),
                Some(OCI_MANIFEST)
            ),
            Some(Code::ManifestInvalid)
        );
        assert_eq!(
            code(json!({"schemaVersion": 2}), Some(OCI_INDEX)),
            Some(Code::ManifestInvalid)
        );
        assert!(Manifest::parse(b"{not json", Some(OCI_MANIFEST)).is_err());
        // Another digest algorithm parses, but names nothing this registry can hold.
        let m = Manifest::parse(
            json!({"schemaVersion": 2, "config": {"digest": "sha512:abcd", "size": 1}})
                .to_string()
                .as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert!(m.config.unwrap().digest.is_err());
    }
}
