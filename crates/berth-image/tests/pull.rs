//! Pull ingestion: layers streamed into the content store and a snapshot in one pass, checked
//! against their digest, size and diff id; nothing is kept when a check fails.

mod common;

use berth_image::reference::Reference;
use berth_image::{PullLayer, Store};
use common::{gzip, sha256_hex, TarBuf, TempDir};
use std::io::Cursor;

struct Image {
    layers: Vec<(Vec<u8>, PullLayer, String)>,
    config: Vec<u8>,
    config_digest: String,
    manifest: Vec<u8>,
}

fn image(files: &[(&str, &[u8])]) -> Image {
    let mut layers = Vec::new();
    for (name, data) in files {
        let tar = TarBuf::new().file(name, data).finish();
        let blob = gzip(&tar);
        let digest = format!("sha256:{}", sha256_hex(&blob));
        let diff_id = format!("sha256:{}", sha256_hex(&tar));
        let l = PullLayer {
            digest,
            size: blob.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        };
        layers.push((blob, l, diff_id));
    }
    let diff_ids: Vec<&str> = layers.iter().map(|(_, _, d)| d.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|(_, l, _)| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        layers,
        config,
        config_digest,
        manifest,
    }
}

fn pull(store: &Store, img: &Image, name: &str) -> berth_image::Result<berth_image::Image> {
    let pl: Vec<PullLayer> = img.layers.iter().map(|(_, l, _)| l.clone()).collect();
    let needs = store.pull_needs(&img.config, &img.config_digest, &pl)?;
    let mut fetched = Vec::new();
    for (i, (blob, l, diff_id)) in img.layers.iter().enumerate() {
        if needs[i] {
            fetched.push(store.fetch_layer(&mut Cursor::new(blob), l, diff_id, "test")?);
        }
    }
    store.publish_pull(
        &img.manifest,
        "application/vnd.oci.image.manifest.v1+json",
        &img.config,
        &img.config_digest,
        &pl,
        fetched,
        vec![Reference::parse(name).unwrap()],
    )
}

fn blob_count(root: &TempDir) -> usize {
    common::count(&root.join("content/sha256"))
}

#[test]
fn pulled_layers_are_stored_unpacked_and_shared() {
    let root = TempDir::new("pull");
    let store = Store::open(root.path()).unwrap();
    let a = image(&[("a.txt", b"one"), ("b.txt", b"two")]);
    let img = pull(&store, &a, "reg.test/x:1").unwrap();
    assert_eq!(img.id, a.config_digest);
    let dirs = store.rootfs_layers(&img.id).unwrap();
    assert_eq!(dirs.len(), 2);
    let found: Vec<String> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        found.contains(&"a.txt".into()) && found.contains(&"b.txt".into()),
        "{found:?}"
    );
    assert_eq!(blob_count(&root), 4, "two layers, config, manifest");
    assert_eq!(store.manifest("reg.test/x:1").unwrap().0, a.manifest);
    // A second image sharing the first layer needs only its own.
    let b = image(&[("a.txt", b"one"), ("c.txt", b"three")]);
    let pl: Vec<PullLayer> = b.layers.iter().map(|(_, l, _)| l.clone()).collect();
    assert_eq!(
        store.pull_needs(&b.config, &b.config_digest, &pl).unwrap(),
        vec![false, true]
    );
    pull(&store, &b, "reg.test/y:1").unwrap();
    assert_eq!(blob_count(&root), 7);
}

#[test]
fn bad_blobs_are_refused_and_leave_nothing() {
    let root = TempDir::new("pullbad");
    let store = Store::open(root.path()).unwrap();
    let img = image(&[("a.txt", b"one")]);
    let (blob, l, diff_id) = &img.layers[0];
    // Wrong digest.
    let mut wrong = l.clone();
    wrong.digest = format!("sha256:{}", "0".repeat(64));
    let e = store
        .fetch_layer(&mut Cursor::new(blob), &wrong, diff_id, "layer")
        .err()
        .unwrap();
    assert!(e.to_string().contains(&"0".repeat(64)), "{e}");
    // Truncated.
    let e = store
        .fetch_layer(
            &mut Cursor::new(&blob[..blob.len() - 5]),
            l,
            diff_id,
            "layer",
        )
        .err()
        .unwrap();
    assert!(!e.to_string().is_empty());
    // Right blob, wrong diff id.
    let other = format!("sha256:{}", "1".repeat(64));
    let e = store
        .fetch_layer(&mut Cursor::new(blob), l, &other, "layer")
        .err()
        .unwrap();
    assert!(e.to_string().contains("diff id"), "{e}");
    // A fetched layer that is never published is given back.
    let f = store
        .fetch_layer(&mut Cursor::new(blob), l, diff_id, "layer")
        .unwrap();
    drop(f);
    assert_eq!(blob_count(&root), 0);
    assert_eq!(common::count(&root.join("snapshots")), 0);
    // A config that does not match the manifest's layers.
    let two = image(&[("a", b"1"), ("b", b"2")]);
    let e = store
        .pull_needs(&two.config, &two.config_digest, std::slice::from_ref(l))
        .unwrap_err();
    assert!(e.to_string().contains("lists 2 layers"), "{e}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn zstd_layers_of_several_frames_unpack() {
    let root = TempDir::new("pullzstd");
    let store = Store::open(root.path()).unwrap();
    let tar = TarBuf::new().file("z.txt", b"zstd layer").finish();
    // Two frames, as zstd:chunked layers have; made with the zstd CLI, independent of ours.
    let (a, b) = tar.split_at(700);
    let mut blob = Vec::new();
    for part in [a, b] {
        let mut child = std::process::Command::new("zstd")
            .args(["-q", "-c", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("zstd (apt-get install zstd)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(part).unwrap();
        blob.extend(child.wait_with_output().unwrap().stdout);
    }
    let l = PullLayer {
        digest: format!("sha256:{}", sha256_hex(&blob)),
        size: blob.len() as u64,
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
    };
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let f = store
        .fetch_layer(&mut Cursor::new(&blob), &l, &diff_id, "zstd layer")
        .unwrap();
    assert_eq!(f.digest(), l.digest);
    // Corrupt data inside a frame is refused.
    let mut bad = blob.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let bl = PullLayer {
        digest: format!("sha256:{}", sha256_hex(&bad)),
        size: bad.len() as u64,
        ..l.clone()
    };
    assert!(store
        .fetch_layer(&mut Cursor::new(&bad), &bl, &diff_id, "bad")
        .is_err());
}
