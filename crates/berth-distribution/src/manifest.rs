//! Typed OCI / Docker schema 2 manifests and indexes: parsing with media-type checks and a size
//! cap, and platform selection from an index.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::parse_digest;
use crate::media;
use crate::Error;

/// Largest manifest or index accepted, in bytes.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Default platform of [`select_platform`].
pub const DEFAULT_OS: &str = "linux";
/// Default architecture of [`select_platform`].
pub const DEFAULT_ARCH: &str = "amd64";

/// A content descriptor: what a manifest says about a config, layer or sub-manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// Alternate download locations (Docker foreign layers, OCI non-distributable layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// Platform of an index entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// A single-platform image manifest (OCI image manifest or Docker schema 2 manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    /// The effective media type (from the body, the `Content-Type`, or inferred).
    #[serde(default)]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A multi-platform index (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    /// The effective media type (from the body, the `Content-Type`, or inferred).
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedManifest {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

impl ParsedManifest {
    /// The effective media type.
    pub fn media_type(&self) -> &str {
        match self {
            ParsedManifest::Image(m) => &m.media_type,
            ParsedManifest::Index(i) => &i.media_type,
        }
    }
}

/// A manifest as fetched from a registry: the exact bytes (hash them, store them), the media type,
/// the verified digest and the parsed form.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: String,
    pub parsed: ParsedManifest,
}

/// Parse a manifest or index. `content_type` is the HTTP `Content-Type` (or the media type the
/// caller means to push), if any. The media type is taken from it when it names a manifest type,
/// otherwise from the body's `mediaType`, otherwise inferred from the shape (`manifests` → index,
/// `config` → manifest). Rejects bodies over [`MAX_MANIFEST_SIZE`], schema 1, unknown media types,
/// a `Content-Type` contradicting the body's `mediaType`, ambiguous shapes, and malformed
/// descriptors.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, Error> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(Error::ManifestTooLarge {
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_SIZE as u64,
        });
    }
    let declared = match content_type.map(media::base_type) {
        None | Some("" | "application/json" | "text/plain" | "application/octet-stream") => None,
        Some(ct) if media::is_schema1(ct) => return Err(Error::Schema1(ct.to_string())),
        Some(ct) if media::is_index(ct) || media::is_image_manifest(ct) => Some(ct),
        Some(ct) => return Err(Error::UnsupportedMediaType(ct.to_string())),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidManifest(format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::InvalidManifest("not a JSON object".into()))?;
    let body_type = match obj.get("mediaType") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(mt)) => Some(mt.as_str()),
        Some(_) => return Err(Error::InvalidManifest("mediaType is not a string".into())),
    };
    if let Some(mt) = body_type {
        if media::is_schema1(mt) {
            return Err(Error::Schema1(mt.to_string()));
        }
        if !media::is_index(mt) && !media::is_image_manifest(mt) {
            return Err(Error::UnsupportedMediaType(mt.to_string()));
        }
    }
    match obj.get("schemaVersion").and_then(serde_json::Value::as_u64) {
        Some(2) => {}
        Some(1) => return Err(Error::Schema1("schemaVersion 1".into())),
        Some(v) => {
            return Err(Error::InvalidManifest(format!(
                "unsupported schemaVersion {v}"
            )))
        }
        None => {
            return Err(Error::InvalidManifest(
                "schemaVersion is missing or not a number".into(),
            ))
        }
    }
    let media_type = match (declared, body_type) {
        (Some(d), Some(b)) if d != b => {
            return Err(Error::InvalidManifest(format!(
                "Content-Type {d} does not match the manifest's mediaType {b}"
            )))
        }
        (Some(d), _) => d,
        (None, Some(b)) => b,
        (None, None) if obj.contains_key("manifests") => media::OCI_INDEX,
        (None, None) if obj.contains_key("config") => media::OCI_MANIFEST,
        (None, None) => {
            return Err(Error::InvalidManifest(
                "no mediaType and neither manifests nor config".into(),
            ))
        }
    }
    .to_string();
    if media::is_index(&media_type) {
        if obj.contains_key("config") || obj.contains_key("layers") {
            return Err(Error::InvalidManifest(
                "an index must not have config or layers".into(),
            ));
        }
        let mut index: ImageIndex = serde_json::from_value(value)
            .map_err(|e| Error::InvalidManifest(format!("{media_type}: {e}")))?;
        index.media_type = media_type;
        for d in &index.manifests {
            check_descriptor(d, "manifests")?;
        }
        if let Some(s) = &index.subject {
            check_descriptor(s, "subject")?;
        }
        Ok(ParsedManifest::Index(Box::new(index)))
    } else {
        if obj.contains_key("manifests") {
            return Err(Error::InvalidManifest(
                "an image manifest must not have manifests".into(),
            ));
        }
        let mut manifest: ImageManifest = serde_json::from_value(value)
            .map_err(|e| Error::InvalidManifest(format!("{media_type}: {e}")))?;
        manifest.media_type = media_type;
        check_descriptor(&manifest.config, "config")?;
        for d in &manifest.layers {
            check_descriptor(d, "layers")?;
        }
        if let Some(s) = &manifest.subject {
            check_descriptor(s, "subject")?;
        }
        Ok(ParsedManifest::Image(Box::new(manifest)))
    }
}

fn check_descriptor(d: &Descriptor, field: &str) -> Result<(), Error> {
    parse_digest(&d.digest).map_err(|e| Error::InvalidManifest(format!("{field}: {e}")))?;
    if d.media_type.is_empty() {
        return Err(Error::InvalidManifest(format!(
            "{field}: descriptor {} has no mediaType",
            d.digest
        )));
    }
    Ok(())
}

/// Pick the manifest for a platform from an index. Empty `os` / `arch` mean linux / amd64.
/// Architectures and variants are normalized as Docker does (`x86_64` → amd64, `aarch64` → arm64,
/// `armhf` → arm/v7, `armel` → arm/v6; arm64 defaults to v8, arm to v7). An exact variant wins,
/// then the newest older compatible arm variant, then an entry without a variant. Attestation
/// manifests (`unknown/unknown`) never match.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> Option<&'a Descriptor> {
    let os = if os.is_empty() { DEFAULT_OS } else { os }.to_ascii_lowercase();
    let arch = if arch.is_empty() { DEFAULT_ARCH } else { arch };
    let (want_arch, want_variant) = normalize_arch(arch, variant.filter(|v| !v.is_empty()));
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in &index.manifests {
        let Some(p) = &d.platform else { continue };
        if p.os.to_ascii_lowercase() != os {
            continue;
        }
        let (arch, var) = normalize_arch(&p.architecture, p.variant.as_deref());
        if arch != want_arch {
            continue;
        }
        let Some(rank) = variant_rank(&want_arch, want_variant.as_deref(), var.as_deref()) else {
            continue;
        };
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, d));
        }
    }
    best.map(|(_, d)| d)
}

/// Normalize an architecture / variant pair the way Docker and containerd spell them.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase);
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant),
        "i386" | "i686" | "386" => ("386".into(), None),
        "aarch64" | "arm64" => {
            // v8 is arm64's default; spell it as "no variant".
            let v = variant.filter(|v| v != "v8" && v != "8");
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let v = match variant.as_deref() {
                None | Some("" | "7" | "v7") => "v7".to_string(),
                Some("5" | "v5") => "v5".into(),
                Some("6" | "v6") => "v6".into(),
                Some("8" | "v8") => "v8".into(),
                Some(other) => other.to_string(),
            };
            ("arm".into(), Some(v))
        }
        _ => (arch, variant),
    }
}

/// Rank of a candidate variant for a wanted variant (lower is better); `None` = incompatible.
fn variant_rank(arch: &str, want: Option<&str>, have: Option<&str>) -> Option<u32> {
    if want == have {
        return Some(0);
    }
    if arch == "arm" {
        // An arm/vN machine runs arm/vM images for M <= N; prefer the newest.
        let level = |v: Option<&str>| -> Option<u32> {
            v.and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse().ok())
        };
        let (w, h) = (level(want)?, level(have)?);
        return (h < w).then(|| 1 + (w - h));
    }
    match (want, have) {
        // No variant asked: any variant is acceptable, after the variant-less entry.
        (None, Some(_)) => Some(100),
        // A variant asked: a variant-less entry is acceptable, after exact matches.
        (Some(_), None) => Some(50),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn oci_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":123}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{D2}","size":456,
              "urls":["https://example.com/layer"],"annotations":{{"a":"b"}}}}]}}"#
        )
    }

    #[test]
    fn parses_oci_manifest() {
        let m = parse_manifest(oci_manifest().as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        let ParsedManifest::Image(m) = m else {
            panic!("not an image manifest")
        };
        assert_eq!(m.media_type, media::OCI_MANIFEST);
        assert_eq!(m.config.digest, D1);
        assert_eq!(m.config.size, 123);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(
            m.layers[0].urls,
            vec!["https://example.com/layer".to_string()]
        );
        assert_eq!(
            media::layer_compression(&m.layers[0].media_type),
            Some(media::Compression::Zstd)
        );
        // Generic content types fall back to the body.
        let m = parse_manifest(
            oci_manifest().as_bytes(),
            Some("application/json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type(), media::OCI_MANIFEST);
    }

    #[test]
    fn parses_docker_manifest_and_list() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D1}","size":1}},
            "layers":[{{"mediaType":"{}","digest":"{D2}","size":2}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP
        );
        let m = parse_manifest(body.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type(), media::DOCKER_MANIFEST);
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{}","digest":"{D1}","size":10,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{}","digest":"{D2}","size":10,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#,
            media::DOCKER_MANIFEST_LIST,
            media::DOCKER_MANIFEST,
            media::DOCKER_MANIFEST
        );
        let ParsedManifest::Index(i) =
            parse_manifest(list.as_bytes(), Some(media::DOCKER_MANIFEST_LIST)).unwrap()
        else {
            panic!("not an index")
        };
        assert_eq!(i.manifests.len(), 2);
        assert_eq!(
            i.manifests[1].platform.as_ref().unwrap().variant.as_deref(),
            Some("v7")
        );
    }

    #[test]
    fn infers_media_type_without_one() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D1}","size":1}}]}}"#,
            media::OCI_MANIFEST
        );
        assert_eq!(
            parse_manifest(index.as_bytes(), None).unwrap().media_type(),
            media::OCI_INDEX
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{D1}","size":1}},"layers":[]}}"#,
            media::OCI_CONFIG
        );
        assert_eq!(
            parse_manifest(manifest.as_bytes(), None)
                .unwrap()
                .media_type(),
            media::OCI_MANIFEST
        );
    }

    #[test]
    fn rejects_schema1_unknown_and_mismatched_types() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest(s1.as_bytes(), Some(media::DOCKER_SCHEMA1_SIGNED)),
            Err(Error::Schema1(_))
        ));
        assert!(matches!(
            parse_manifest(s1.as_bytes(), None),
            Err(Error::Schema1(_))
        ));
        assert!(matches!(
            parse_manifest(oci_manifest().as_bytes(), Some("application/vnd.cncf.helm.chart")),
            Err(Error::UnsupportedMediaType(t)) if t == "application/vnd.cncf.helm.chart"
        ));
        let odd = r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json","config":{}}"#;
        assert!(matches!(
            parse_manifest(odd.as_bytes(), None),
            Err(Error::UnsupportedMediaType(_))
        ));
        let err =
            parse_manifest(oci_manifest().as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn rejects_malformed_and_oversized() {
        for (body, needle) in [
            ("not json", "not valid JSON"),
            ("[1,2]", "not a JSON object"),
            (
                r#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                "schemaVersion",
            ),
            (r#"{"schemaVersion":3,"manifests":[]}"#, "schemaVersion 3"),
            (r#"{"schemaVersion":2}"#, "neither manifests nor config"),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[]}"#,
                "must not have config or layers",
            ),
            (
                r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:abc","size":1}}"#,
                "config: invalid digest",
            ),
            (
                r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":-1}}"#,
                "invalid value",
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                "missing field `config`",
            ),
        ] {
            let err = parse_manifest(body.as_bytes(), None).unwrap_err();
            assert!(
                matches!(err, Error::InvalidManifest(_)) && err.to_string().contains(needle),
                "{body}: {err}"
            );
        }
        let mut big = oci_manifest().into_bytes();
        big.resize(MAX_MANIFEST_SIZE + 1, b' ');
        assert!(matches!(
            parse_manifest(&big, None),
            Err(Error::ManifestTooLarge { size, .. }) if size == MAX_MANIFEST_SIZE as u64 + 1
        ));
    }

    fn entry(digest: &str, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            urls: vec![],
            annotations: BTreeMap::new(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
                ..Platform::default()
            }),
            artifact_type: None,
        }
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: media::OCI_INDEX.into(),
            manifests: entries,
            subject: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    fn pick<'a>(i: &'a ImageIndex, os: &str, arch: &str, v: Option<&str>) -> Option<&'a str> {
        select_platform(i, os, arch, v).map(|d| d.digest.as_str())
    }

    #[test]
    fn selects_platforms() {
        let i = index(vec![
            entry("unknown", "unknown", "unknown", None),
            entry("arm-v6", "linux", "arm", Some("v6")),
            entry("arm-v7", "linux", "arm", Some("v7")),
            entry("arm64", "linux", "arm64", Some("v8")),
            entry("amd64", "linux", "amd64", None),
            entry("win", "windows", "amd64", None),
            entry("ppc", "linux", "ppc64le", None),
        ]);
        assert_eq!(pick(&i, "", "", None), Some("amd64"));
        assert_eq!(pick(&i, "linux", "x86_64", None), Some("amd64"));
        assert_eq!(pick(&i, "windows", "amd64", None), Some("win"));
        assert_eq!(pick(&i, "linux", "aarch64", None), Some("arm64"));
        assert_eq!(pick(&i, "linux", "arm64", Some("v8")), Some("arm64"));
        assert_eq!(pick(&i, "linux", "arm", None), Some("arm-v7"));
        assert_eq!(pick(&i, "linux", "arm", Some("v6")), Some("arm-v6"));
        assert_eq!(pick(&i, "linux", "armel", None), Some("arm-v6"));
        assert_eq!(pick(&i, "linux", "arm", Some("v5")), None);
        assert_eq!(pick(&i, "linux", "s390x", None), None);
        assert_eq!(pick(&i, "linux", "ppc64le", None), Some("ppc"));
        assert_eq!(pick(&i, "darwin", "amd64", None), None);

        // arm/v8 falls back to the newest older arm variant.
        let i = index(vec![
            entry("v5", "linux", "arm", Some("v5")),
            entry("v6", "linux", "arm", Some("v6")),
        ]);
        assert_eq!(pick(&i, "linux", "arm", Some("v8")), Some("v6"));
        assert_eq!(pick(&i, "linux", "arm", None), Some("v6"));

        // amd64 variants: exact first, otherwise the variant-less entry.
        let i = index(vec![
            entry("plain", "linux", "amd64", None),
            entry("v3", "linux", "amd64", Some("v3")),
        ]);
        assert_eq!(pick(&i, "linux", "amd64", Some("v3")), Some("v3"));
        assert_eq!(pick(&i, "linux", "amd64", Some("v2")), Some("plain"));
        assert_eq!(pick(&i, "linux", "amd64", None), Some("plain"));
        let i = index(vec![entry("v3", "linux", "amd64", Some("v3"))]);
        assert_eq!(pick(&i, "linux", "amd64", None), Some("v3"));
    }
}
