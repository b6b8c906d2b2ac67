//! Media types of manifests, indexes, configs and layers, and helpers that tell
//! layer compressions (gzip, zstd, none) apart.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform), schema 2.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest (deprecated; rejected by this crate).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed Docker schema 1 manifest (deprecated; rejected by this crate).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Uncompressed OCI layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Uncompressed non-distributable OCI layer (deprecated in the spec, still seen).
pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// gzip-compressed non-distributable OCI layer.
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// zstd-compressed non-distributable OCI layer.
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// gzip-compressed Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// gzip-compressed Docker "foreign" layer (Windows base layers; usually has `urls`).
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Uncompressed Docker layer, as written by some older tools.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// `Accept` header for manifest requests: OCI manifest and index, Docker schema 2 manifest and
/// list. Schema 1 is deliberately absent.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// A gzip stream of a tar.
    Gzip,
    /// A zstd stream of a tar.
    Zstd,
}

/// Compression of a layer media type, or `None` when `media_type` is not a known layer type.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match base_type(media_type) {
        OCI_LAYER | OCI_LAYER_NONDIST | DOCKER_LAYER => Some(Compression::None),
        OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => {
            Some(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// Whether `media_type` is a known layer type.
pub fn is_layer(media_type: &str) -> bool {
    layer_compression(media_type).is_some()
}

/// Whether `media_type` is an image index or Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    matches!(base_type(media_type), OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether `media_type` is a single-platform image manifest (OCI or Docker schema 2).
pub fn is_image_manifest(media_type: &str) -> bool {
    matches!(base_type(media_type), OCI_MANIFEST | DOCKER_MANIFEST)
}

/// Whether `media_type` is a Docker schema 1 manifest.
pub fn is_schema1(media_type: &str) -> bool {
    matches!(
        base_type(media_type),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED
    )
}

/// Whether `media_type` is an image configuration.
pub fn is_config(media_type: &str) -> bool {
    matches!(base_type(media_type), OCI_CONFIG | DOCKER_CONFIG)
}

/// The media type without parameters (`; charset=utf-8`) and surrounding blanks.
pub fn base_type(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions() {
        assert_eq!(layer_compression(OCI_LAYER), Some(Compression::None));
        assert_eq!(layer_compression(DOCKER_LAYER), Some(Compression::None));
        assert_eq!(layer_compression(OCI_LAYER_GZIP), Some(Compression::Gzip));
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression(DOCKER_FOREIGN_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(layer_compression(OCI_LAYER_ZSTD), Some(Compression::Zstd));
        assert_eq!(
            layer_compression(OCI_LAYER_NONDIST_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(layer_compression(OCI_CONFIG), None);
        assert_eq!(layer_compression("application/octet-stream"), None);
        assert!(is_layer(
            "application/vnd.oci.image.layer.v1.tar+gzip; foo=bar"
        ));
        assert!(!is_layer(OCI_MANIFEST));
    }

    #[test]
    fn kinds() {
        assert!(is_index(OCI_INDEX));
        assert!(is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(OCI_MANIFEST));
        assert!(is_image_manifest(OCI_MANIFEST));
        assert!(is_image_manifest(
            "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"
        ));
        assert!(!is_image_manifest(DOCKER_SCHEMA1));
        assert!(is_schema1(DOCKER_SCHEMA1_SIGNED));
        assert!(is_config(DOCKER_CONFIG));
        assert!(!is_config(OCI_LAYER));
        for mt in [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ] {
            assert!(MANIFEST_ACCEPT.contains(mt));
        }
        assert!(!MANIFEST_ACCEPT.contains(DOCKER_SCHEMA1));
    }
}
