//! Manifest, index and descriptor JSON (OCI and Docker schema 2), the docker-archive
//! `manifest.json` items, and media type constants.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Annotation with the full image name (containerd, Docker 25+ `docker save`).
pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation with the reference name (a tag, or a full reference for some tools).
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub(crate) fn new(media_type: &str, digest: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            annotations: None,
            platform: None,
        }
    }
}

/// An image manifest (OCI or Docker schema 2; same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// One item of a docker-archive `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ArchiveItem {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// The OCI manifest of a config and its layer blobs.
pub(crate) fn oci_manifest(
    config_digest: &str,
    config_size: u64,
    layers: &[Descriptor],
) -> Vec<u8> {
    let m = Manifest {
        schema_version: 2,
        media_type: Some(MT_OCI_MANIFEST.to_string()),
        config: Descriptor::new(MT_OCI_CONFIG, config_digest, config_size),
        layers: layers.to_vec(),
    };
    serde_json::to_vec(&m).unwrap_or_default()
}

/// The media type a manifest declares, or the one its shape implies.
pub(crate) fn manifest_kind(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = p.media_type {
        return Some(mt);
    }
    if p.manifests.is_some() {
        Some(MT_OCI_INDEX.to_string())
    } else if p.config.is_some() {
        Some(MT_OCI_MANIFEST.to_string())
    } else {
        None
    }
}

pub(crate) fn is_index_type(mt: &str) -> bool {
    mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST
}

pub(crate) fn is_manifest_type(mt: &str) -> bool {
    mt == MT_OCI_MANIFEST || mt == MT_DOCKER_MANIFEST
}

pub(crate) use berth_api::platform::go_arch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            manifest_kind(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(MT_OCI_INDEX)
        );
        assert_eq!(
            manifest_kind(br#"{"schemaVersion":2,"mediaType":"x","config":{}}"#).as_deref(),
            Some("x")
        );
        assert!(manifest_kind(b"[]").is_none());
        let m = oci_manifest("sha256:00", 3, &[Descriptor::new("t", "sha256:11", 4)]);
        let back: Manifest = serde_json::from_slice(&m).unwrap();
        assert_eq!(back.config.size, 3);
        assert_eq!(back.layers[0].media_type, "t");
    }
}
