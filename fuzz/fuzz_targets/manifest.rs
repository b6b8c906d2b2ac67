//! Registry manifests and indexes (with each Content-Type a registry may send), platform
//! selection, and image configs as the image store reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    for ct in TYPES {
        if let Ok(berth_distribution::ParsedManifest::Index(i)) =
            berth_distribution::parse_manifest(data, *ct)
        {
            for (arch, variant) in [("amd64", None), ("arm", Some("v6")), ("aarch64", None)] {
                let _ = berth_distribution::select_platform(&i, "linux", arch, variant);
            }
        }
    }
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for layers in [0, 1, 3] {
        let _ = berth_image::config_diff_ids(data, digest, layers);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = berth_image::reference::Reference::parse(s);
        let _ = berth_distribution::parse_digest(s);
        let _ = berth_distribution::parse_www_authenticate(s);
    }
});
