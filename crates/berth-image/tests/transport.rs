//! save/load system tests: round trip between stores, the saved archive's structure (both a
//! docker-archive and an OCI layout), OCI layouts and legacy docker archives made by hand,
//! and broken archives that must leave nothing behind.

mod common;

use berth_image::{Error, ImportOptions, Store};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;

fn store_with_busybox(root: &TempDir) -> (Store, berth_image::Image) {
    let store = Store::open(root.path()).unwrap();
    let img = store
        .import(
            &mut &busybox_tar()[..],
            &ImportOptions {
                reference: Some("busybox:latest".into()),
                changes: vec!["CMD [\"sh\"]".into()],
                ..Default::default()
            },
        )
        .unwrap();
    (store, img)
}

/// Checks that `archive` is a docker-archive and an OCI layout whose blobs match.
fn validate_saved(archive: &[u8]) -> (Value, Value, BTreeMap<String, Vec<u8>>) {
    let entries = tar_entries(archive);
    let mut files = BTreeMap::new();
    for (name, kind, data) in entries {
        if kind == tar::EntryType::Regular {
            files.insert(name, data);
        }
    }
    let layout: Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    for (name, data) in &files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_hex(data), hex, "blob {name} matches its name");
        }
    }
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let manifest_json: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for item in manifest_json.as_array().unwrap() {
        let cfg_path = item["Config"].as_str().unwrap();
        let cfg: Value = serde_json::from_slice(&files[cfg_path]).unwrap();
        let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
        let layers = item["Layers"].as_array().unwrap();
        assert_eq!(diff_ids.len(), layers.len());
        for (d, l) in diff_ids.iter().zip(layers) {
            let data = &files[l.as_str().unwrap()];
            assert_eq!(d.as_str().unwrap(), format!("sha256:{}", sha256_hex(data)));
        }
    }
    for m in index["manifests"].as_array().unwrap() {
        let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let blob = &files[&format!("blobs/sha256/{hex}")];
        assert_eq!(m["size"].as_u64().unwrap(), blob.len() as u64);
        let manifest: Value = serde_json::from_slice(blob).unwrap();
        for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap())
        {
            let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
            assert_eq!(
                files[&format!("blobs/sha256/{hex}")].len() as u64,
                d["size"].as_u64().unwrap()
            );
        }
    }
    (index, manifest_json, files)
}

#[test]
fn save_then_load_into_another_store() {
    let a = TempDir::new("save-a");
    let (store, img) = store_with_busybox(&a);
    store.tag("busybox", "busybox:1.36").unwrap();
    let mut out = Vec::new();
    store.save(&["busybox".to_string()], &mut out).unwrap();
    let (index, manifest_json, files) = validate_saved(&out);
    assert_eq!(
        manifest_json[0]["RepoTags"],
        json!(["busybox:1.36", "busybox:latest"])
    );
    assert_eq!(
        manifest_json[0]["Config"],
        format!("blobs/sha256/{}", &img.id[7..])
    );
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["io.containerd.image.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:latest"
        ]
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.36"
    );
    assert_eq!(
        index["manifests"][0]["digest"].as_str().unwrap(),
        img.manifest_digest
    );
    let repos: Value = serde_json::from_slice(&files["repositories"]).unwrap();
    assert!(repos["busybox"]["latest"].is_string());

    let b = TempDir::new("save-b");
    let other = Store::open(b.path()).unwrap();
    let lines = other.load(&mut &out[..]).unwrap();
    assert_eq!(
        lines,
        ["Loaded image: busybox:1.36", "Loaded image: busybox:latest"]
    );
    let loaded = other.get("busybox:1.36").unwrap();
    assert_eq!(loaded.id, img.id);
    assert_eq!(loaded.layers, img.layers);
    assert_eq!(loaded.manifest_digest, img.manifest_digest);
    assert_eq!(
        loaded
            .config
            .config()
            .clone()
            .unwrap()
            .cmd()
            .clone()
            .unwrap(),
        ["sh"]
    );
    let lowers = other.rootfs_layers(&loaded.id).unwrap();
    assert!(lowers[0].join("bin/busybox").is_file());
    // The staged metadata files did not stay as blobs: config + layer + manifest.
    assert_eq!(count(&b.join("content/sha256")), 3);
    // Loading again changes nothing.
    other.load(&mut &out[..]).unwrap();
    assert_eq!(other.list().unwrap().len(), 1);
    assert_eq!(count(&b.join("content/sha256")), 3);

    // Saved by id: no tags, "Loaded image ID".
    let mut by_id = Vec::new();
    store
        .save(&[img.id[7..19].to_string()], &mut by_id)
        .unwrap();
    let (index, manifest_json, _) = validate_saved(&by_id);
    assert_eq!(manifest_json[0]["RepoTags"], Value::Null);
    assert!(index["manifests"][0]["annotations"].is_null());
    let c = TempDir::new("save-c");
    let third = Store::open(c.path()).unwrap();
    assert_eq!(
        third.load(&mut &by_id[..]).unwrap(),
        [format!("Loaded image ID: {}", img.id)]
    );
    assert!(third.get(&img.id).unwrap().repo_tags.is_empty());

    assert!(matches!(
        store.save(&["nosuch".to_string()], &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn saved_archive_is_readable_as_a_plain_oci_layout() {
    // Drop manifest.json: what remains must load through index.json alone.
    let a = TempDir::new("oci-only-a");
    let (store, img) = store_with_busybox(&a);
    let mut out = Vec::new();
    store
        .save(&["busybox:latest".to_string()], &mut out)
        .unwrap();
    let mut tb = TarBuf::new();
    for (name, kind, data) in tar_entries(&out) {
        if kind == tar::EntryType::Regular && name != "manifest.json" && name != "repositories" {
            tb = tb.file(&name, &data);
        }
    }
    let oci = tb.finish();
    let b = TempDir::new("oci-only-b");
    let other = Store::open(b.path()).unwrap();
    assert_eq!(
        other.load(&mut &oci[..]).unwrap(),
        ["Loaded image: busybox:latest"]
    );
    assert_eq!(other.get("busybox").unwrap().id, img.id);
}

/// An OCI layout with a gzip layer, made by hand, optionally under a nested index.
fn oci_layout_archive(rootfs_tar: &[u8], nested: bool, annotations: Value) -> (Vec<u8>, String) {
    let layer = gzip(rootfs_tar);
    let diff_id = {
        let mut d = flate2::read::MultiGzDecoder::new(&layer[..]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
        format!("sha256:{}", sha256_hex(&raw))
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "hand"}],
        "created": "2024-01-01T00:00:00Z",
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len()}],
    }))
    .unwrap();
    let mdesc = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", sha256_hex(&manifest)), "size": manifest.len(),
        "platform": {"architecture": berth_arch(), "os": "linux"},
    });
    let mut tb = TarBuf::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .dir("blobs/")
        .dir("blobs/sha256/");
    for blob in [&layer, &config, &manifest] {
        tb = tb.file(&format!("blobs/sha256/{}", sha256_hex(blob)), blob);
    }
    let mut top = mdesc.clone();
    if nested {
        let inner = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": format!("sha256:{}", "0".repeat(64)), "size": 10,
                 "platform": {"architecture": "s390x", "os": "linux"}},
                mdesc,
            ],
        }))
        .unwrap();
        tb = tb.file(&format!("blobs/sha256/{}", sha256_hex(&inner)), &inner);
        top = json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&inner)), "size": inner.len(),
        });
    }
    top["annotations"] = annotations;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap();
    tb = tb.file("index.json", &index);
    (tb.finish(), format!("sha256:{}", sha256_hex(&config)))
}

fn berth_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn load_oci_layouts() {
    let root = TempDir::new("oci");
    let store = Store::open(root.path()).unwrap();
    let rootfs = busybox_tar();
    let (ar, id) = oci_layout_archive(
        &rootfs,
        false,
        json!({"io.containerd.image.name": "docker.io/library/hand:1"}),
    );
    assert_eq!(store.load(&mut &ar[..]).unwrap(), ["Loaded image: hand:1"]);
    let img = store.get("hand:1").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.created.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert!(store.rootfs_layers(&id).unwrap()[0]
        .join("etc/group")
        .is_file());

    // Nested index, full reference in ref.name, gzip-compressed archive.
    let (ar, id2) = oci_layout_archive(
        &rootfs,
        true,
        json!({"org.opencontainers.image.ref.name": "quay.io/x/nested:2"}),
    );
    assert_eq!(id, id2);
    assert_eq!(
        store.load(&mut &gzip(&ar)[..]).unwrap(),
        ["Loaded image: quay.io/x/nested:2"]
    );
    assert_eq!(store.get("quay.io/x/nested:2").unwrap().id, id);

    // A bare tag in ref.name names no repository.
    let other = TempDir::new("oci-bare");
    let s2 = Store::open(other.path()).unwrap();
    let (ar, id) = oci_layout_archive(
        &rootfs,
        false,
        json!({"org.opencontainers.image.ref.name": "latest"}),
    );
    assert_eq!(
        s2.load(&mut &ar[..]).unwrap(),
        [format!("Loaded image ID: {id}")]
    );
}

#[test]
fn load_legacy_docker_archive_with_symlinked_layers() {
    // Pre-25 layout: <id>/layer.tar, <config hex>.json, manifest.json; one layer dir is a
    // symlink to another layer file as in Docker 25+ compatibility dirs.
    let tar = busybox_tar();
    let diff = format!("sha256:{}", sha256_hex(&tar));
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": [diff, diff]},
    }))
    .unwrap();
    let cfg_hex = sha256_hex(&config);
    let manifest = json!([{
        "Config": format!("{cfg_hex}.json"),
        "RepoTags": ["legacy:v1", "127.0.0.1:5000/legacy:v1"],
        "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"],
    }]);
    let ar = TarBuf::new()
        .dir("aaaa/")
        .file("aaaa/VERSION", b"1.0")
        .file("aaaa/json", b"{}")
        .file("aaaa/layer.tar", &tar)
        .dir("bbbb/")
        .symlink("bbbb/layer.tar", "../aaaa/layer.tar")
        .file(&format!("{cfg_hex}.json"), &config)
        .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .file("repositories", b"{}")
        .finish();
    let root = TempDir::new("legacy");
    let store = Store::open(root.path()).unwrap();
    let lines = store.load(&mut &ar[..]).unwrap();
    assert_eq!(
        lines,
        [
            "Loaded image: legacy:v1",
            "Loaded image: 127.0.0.1:5000/legacy:v1"
        ]
    );
    let img = store.get("127.0.0.1:5000/legacy:v1").unwrap();
    assert_eq!(img.id, format!("sha256:{cfg_hex}"));
    assert_eq!(img.layers.len(), 2);
    // Two chain ids (same diff id twice), two snapshots; one layer blob.
    assert_eq!(count(&store.snapshot_root()), 2);
    assert_eq!(store.rootfs_layers("legacy:v1").unwrap().len(), 2);
    // layer blob + config + generated manifest; VERSION/json staged files were dropped.
    assert_eq!(count(&root.join("content/sha256")), 3);
    assert_eq!(store.history("legacy:v1").unwrap().len(), 0);
}

#[test]
fn broken_archives_store_nothing() {
    let root = TempDir::new("broken");
    let store = Store::open(root.path()).unwrap();
    let tar = busybox_tar();
    let good_config = |diff: &str| {
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff]},
        }))
        .unwrap()
    };
    let archive = |config: &[u8], layers: &[(&str, &[u8])], tags: Value| {
        let mut tb = TarBuf::new();
        for (name, data) in layers {
            tb = tb.file(name, data);
        }
        let item = json!([{
            "Config": "config.json",
            "RepoTags": tags,
            "Layers": layers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        }]);
        tb.file("config.json", config)
            .file("manifest.json", &serde_json::to_vec(&item).unwrap())
            .finish()
    };
    let wrong_diff = format!("sha256:{}", "1".repeat(64));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "diff id mismatch",
            archive(
                &good_config(&wrong_diff),
                &[("l.tar", &tar)],
                json!(["x:1"]),
            ),
            "diff id",
        ),
        (
            "missing layer",
            {
                let item = json!([{"Config": "config.json", "Layers": ["nothere.tar"]}]);
                TarBuf::new()
                    .file("config.json", &good_config(&wrong_diff))
                    .file("manifest.json", &serde_json::to_vec(&item).unwrap())
                    .finish()
            },
            "not in the archive",
        ),
        (
            "layer count mismatch",
            archive(
                &good_config(&wrong_diff),
                &[("a.tar", &tar), ("b.tar", &tar)],
                json!(null),
            ),
            "lists 1 layers",
        ),
        (
            "bad tag",
            archive(
                &good_config(&format!("sha256:{}", sha256_hex(&tar))),
                &[("l.tar", &tar)],
                json!(["Bad:Tag"]),
            ),
            "tag",
        ),
        (
            "blob not matching its name",
            TarBuf::new()
                .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                .file(&format!("blobs/sha256/{}", "2".repeat(64)), b"data")
                .finish(),
            "does not match its digest",
        ),
        (
            "no metadata",
            TarBuf::new().file("hello", b"x").finish(),
            "neither",
        ),
        ("empty", Vec::new(), "empty"),
        (
            "garbage",
            b"not a tar archive, definitely".repeat(40),
            "reading the archive",
        ),
    ];
    for (what, ar, expect) in cases {
        let e = store.load(&mut &ar[..]).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{what}: {e}");
        assert!(e.to_string().contains(expect), "{what}: {e}");
        assert_eq!(count(&root.join("content/sha256")), 0, "{what}: blobs left");
        assert_eq!(
            count(&root.join("content/tmp")),
            0,
            "{what}: temp files left"
        );
        assert_eq!(count(&store.snapshot_root()), 0, "{what}: snapshots left");
        assert_eq!(count(&root.join("images")), 0, "{what}: records left");
        assert!(store.list().unwrap().is_empty());
    }

    // Two images where the second is broken: the first is not stored either.
    let ok_cfg = good_config(&format!("sha256:{}", sha256_hex(&tar)));
    let bad_cfg = good_config(&wrong_diff);
    let item = json!([
        {"Config": "ok.json", "RepoTags": ["ok:1"], "Layers": ["l.tar"]},
        {"Config": "bad.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]},
    ]);
    let ar = TarBuf::new()
        .file("l.tar", &tar)
        .file("ok.json", &ok_cfg)
        .file("bad.json", &bad_cfg)
        .file("manifest.json", &serde_json::to_vec(&item).unwrap())
        .finish();
    assert!(store.load(&mut &ar[..]).is_err());
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&root.join("content/sha256")), 0);
    assert_eq!(count(&store.snapshot_root()), 0);
    assert!(!fs::read_to_string(root.join("repositories.json"))
        .unwrap_or_default()
        .contains("ok"));
}

#[test]
fn interop_with_skopeo() {
    // An independent OCI reader; scripts/test.sh installs it.
    assert!(
        std::process::Command::new("skopeo")
            .arg("--version")
            .output()
            .is_ok(),
        "skopeo is needed for this test (apt-get install skopeo)"
    );
    let a = TempDir::new("skopeo");
    let (store, img) = store_with_busybox(&a);
    let mut out = Vec::new();
    store.save(&["busybox".to_string()], &mut out).unwrap();
    let file = a.join("saved.tar");
    fs::write(&file, &out).unwrap();
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", file.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        cfg["rootfs"]["diff_ids"][0].as_str().unwrap(),
        img.layers[0]
    );
    let dir = a.join("copied");
    let o = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", file.display()))
        .arg(format!("oci:{}:copied", dir.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // And the other way: archives skopeo writes load here.
    let b = TempDir::new("skopeo-load");
    let other = Store::open(b.path()).unwrap();
    for (dest, expect) in [
        ("docker-archive", "skopeo/img:1"),
        ("oci-archive", "skopeo/img:2"),
    ] {
        let out = a.join(&format!("{dest}.tar"));
        let o = std::process::Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:copied", dir.display()))
            .arg(format!("{dest}:{}:{expect}", out.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lines = other.load(&mut fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(lines, [format!("Loaded image: {expect}")]);
        assert_eq!(other.get(expect).unwrap().layers, img.layers);
    }
    // skopeo rewrites the config on the way (so the id differs); the layers are the same.
    assert_eq!(other.get("skopeo/img:1").unwrap().layers, img.layers);
}
