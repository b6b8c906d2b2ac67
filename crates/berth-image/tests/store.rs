//! Store system tests: import, lookups, tags, delete/prune semantics, layer sharing,
//! history, crash cleanup.

mod common;

use berth_image::{DeleteItem, Error, ImportOptions, Store};
use common::*;
use std::fs;

fn import_tagged(store: &Store, tar: &[u8], reference: &str) -> berth_image::Image {
    store
        .import(
            &mut &tar[..],
            &ImportOptions {
                reference: Some(reference.to_string()),
                ..Default::default()
            },
        )
        .unwrap()
}

#[test]
fn import_plain_and_gzip_and_lookups() {
    let root = TempDir::new("import");
    let store = Store::open(root.path()).unwrap();
    let tar = busybox_tar();
    let img = import_tagged(&store, &tar, "busybox");
    assert!(img.id.starts_with("sha256:"));
    assert_eq!(img.repo_tags, vec!["busybox:latest"]);
    assert!(img.repo_digests.is_empty());
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0], format!("sha256:{}", sha256_hex(&tar)));
    assert!(img.size >= fs::metadata("/bin/busybox").unwrap().len());
    assert!(img.created.is_some());
    let hist = img.config.history().clone().unwrap();
    assert_eq!(hist[0].comment().as_deref(), Some("Imported from -"));

    let hex = img.id.trim_start_matches("sha256:").to_string();
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        "library/busybox",
        img.id.as_str(),
        hex.as_str(),
        &hex[..12],
        &hex[..1],
        &format!("sha256:{}", &hex[..5]),
    ] {
        assert_eq!(store.get(name).unwrap().id, img.id, "lookup {name}");
    }
    match store.get("nosuch") {
        Err(Error::NotFound(m)) => assert_eq!(m, "No such image: nosuch"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        store.get("busybox:other"),
        Err(Error::NotFound(_))
    ));

    // The rootfs is there, with the binary and the symlinks.
    let lowers = store.rootfs_layers(&img.id).unwrap();
    assert_eq!(lowers.len(), 1);
    assert!(lowers[0].starts_with(store.snapshot_root()));
    assert!(lowers[0].join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(lowers[0].join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );

    // gzip: same diff id, so the same snapshot; another blob.
    let gz = import_tagged(&store, &gzip(&tar), "busybox:gz");
    assert_eq!(gz.layers, img.layers);
    assert_ne!(gz.id, img.id);
    assert_eq!(count(&store.snapshot_root()), 1);
    assert_eq!(count(&root.join("content/sha256")), 6); // 2 layers, 2 configs, 2 manifests
    let (manifest, media_type) = store.manifest(&gz.id).unwrap();
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // A reopened store sees the same.
    drop(store);
    let store = Store::open(root.path()).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(store.get("busybox:gz").unwrap().id, gz.id);

    // Ambiguous prefixes find nothing.
    let a = img.id.trim_start_matches("sha256:");
    let b = gz.id.trim_start_matches("sha256:");
    let common_len = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    if common_len > 0 {
        assert!(matches!(
            store.get(&a[..common_len]),
            Err(Error::NotFound(_))
        ));
    }
}

#[test]
fn import_with_changes_and_message() {
    let root = TempDir::new("changes");
    let store = Store::open(root.path()).unwrap();
    let img = store
        .import(
            &mut &busybox_tar()[..],
            &ImportOptions {
                reference: Some("example.com:5000/tools/bb:v1".into()),
                changes: vec![
                    "CMD [\"/bin/sh\"]".into(),
                    "ENV PATH=/bin".into(),
                    "EXPOSE 8080".into(),
                    "WORKDIR /tmp".into(),
                    "LABEL a=b".into(),
                    "USER nobody".into(),
                    "ONBUILD RUN true".into(),
                ],
                message: Some("hello".into()),
            },
        )
        .unwrap();
    assert_eq!(img.repo_tags, vec!["example.com:5000/tools/bb:v1"]);
    let c = img.config.config().clone().unwrap();
    assert_eq!(c.cmd().clone().unwrap(), vec!["/bin/sh"]);
    assert_eq!(c.env().clone().unwrap(), vec!["PATH=/bin"]);
    assert_eq!(c.exposed_ports().clone().unwrap(), vec!["8080/tcp"]);
    assert_eq!(c.working_dir().as_deref(), Some("/tmp"));
    assert_eq!(c.user().as_deref(), Some("nobody"));
    assert_eq!(c.labels().clone().unwrap()["a"], "b");
    let hist = store.history(&img.id).unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].comment, "hello");
    assert_eq!(hist[0].id, img.id);
    assert_eq!(hist[0].tags, vec!["example.com:5000/tools/bb:v1"]);
    // ONBUILD survives in the stored config blob.
    let raw: serde_json::Value =
        serde_json::from_slice(&store.config_blob(&img.id).unwrap()).unwrap();
    assert_eq!(raw["config"]["OnBuild"][0], "RUN true");

    // Bad change lines and bad references fail before anything is stored.
    let e = store
        .import(
            &mut &busybox_tar()[..],
            &ImportOptions {
                changes: vec!["BOGUS x".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput(ref m) if m.contains("unknown instruction")),
        "{e}"
    );
    let e = store
        .import(
            &mut &busybox_tar()[..],
            &ImportOptions {
                reference: Some("Bad/Name".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)));
    assert_eq!(store.list().unwrap().len(), 1);
    // Empty input.
    let e = store
        .import(&mut &b""[..], &ImportOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    // Not a tar.
    let e = store
        .import(
            &mut &b"this is not a tar archive at all, just text...."[..],
            &ImportOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    assert_eq!(count(&root.join("content/sha256")), 3);
    assert_eq!(count(&root.join("content/tmp")), 0);
    assert_eq!(count(&store.snapshot_root()), 1);
}

#[test]
fn tag_untag_delete_and_force() {
    let root = TempDir::new("tags");
    let store = Store::open(root.path()).unwrap();
    let img = import_tagged(&store, &busybox_tar(), "busybox");
    store.tag("busybox", "mybox:1").unwrap();
    store.tag(&img.id, "other/repo").unwrap();
    assert!(store
        .tag("busybox", "x@sha256:".to_string().as_str())
        .is_err());
    assert!(matches!(store.tag("nosuch", "a"), Err(Error::NotFound(_))));
    let got = store.get("busybox").unwrap();
    assert_eq!(
        got.repo_tags,
        vec!["busybox:latest", "mybox:1", "other/repo:latest"]
    );

    // By tag while other tags exist: only untags.
    let r = store.delete("mybox:1", false, &never).unwrap();
    assert_eq!(r, vec![DeleteItem::Untagged("mybox:1".into())]);
    assert!(store.get(&img.id).is_ok());

    // By id with several references: must be forced.
    let e = store.delete(&img.id, false, &never).unwrap_err();
    let short12 = &img.id[7..19];
    match &e {
        Error::Conflict(m) => assert_eq!(
            m,
            &format!("conflict: unable to delete {short12} (must be forced) - image is referenced in multiple repositories")
        ),
        other => panic!("{other:?}"),
    }
    // In use: cannot be forced.
    let e = store.delete(&img.id, true, &|id| id == img.id).unwrap_err();
    assert!(
        matches!(&e, Error::Conflict(m) if m.contains("(cannot be forced) - image is being used")),
        "{e}"
    );
    // Forced: untag all, delete the image, its layer and blobs.
    let r = store.delete(&img.id[7..19], true, &never).unwrap();
    assert_eq!(
        r,
        vec![
            DeleteItem::Untagged("busybox:latest".into()),
            DeleteItem::Untagged("other/repo:latest".into()),
            DeleteItem::Deleted(img.id.clone()),
            DeleteItem::Deleted(img.layers[0].clone()),
        ]
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&store.snapshot_root()), 0);
    assert_eq!(count(&root.join("content/sha256")), 0);
    assert!(matches!(
        store.delete("busybox", false, &never),
        Err(Error::NotFound(_))
    ));

    // A single tag in use: untagging needs force; forced, the image stays (dangling).
    let img = import_tagged(&store, &busybox_tar(), "busybox");
    let e = store.delete("busybox", false, &|_| true).unwrap_err();
    assert!(
        matches!(&e, Error::Conflict(m) if m.contains("unable to remove repository reference \"busybox\" (must force)")),
        "{e}"
    );
    let r = store.delete("busybox", true, &|_| true).unwrap();
    assert_eq!(r, vec![DeleteItem::Untagged("busybox:latest".into())]);
    assert!(store.get(&img.id).unwrap().repo_tags.is_empty());
    // Not in use any more: deleting by id removes it.
    let r = store.delete(&img.id, false, &never).unwrap();
    assert_eq!(r[0], DeleteItem::Deleted(img.id.clone()));
    // One tag, by name: untag + delete.
    let img = import_tagged(&store, &busybox_tar(), "solo:1");
    let r = store.delete("solo:1", false, &never).unwrap();
    assert_eq!(r[0], DeleteItem::Untagged("solo:1".into()));
    assert_eq!(r[1], DeleteItem::Deleted(img.id.clone()));
    assert_eq!(count(&root.join("content/sha256")), 0);
}

#[test]
fn layer_sharing_keeps_one_snapshot() {
    let root = TempDir::new("share");
    let store = Store::open(root.path()).unwrap();
    let tar = busybox_tar();
    let a = import_tagged(&store, &tar, "a");
    let b = import_tagged(&store, &tar, "b");
    assert_ne!(a.id, b.id);
    assert_eq!(a.layers, b.layers);
    assert_eq!(count(&store.snapshot_root()), 1);
    // Same blob too (identical bytes): 1 layer + 2 configs + 2 manifests.
    assert_eq!(count(&root.join("content/sha256")), 5);
    let r = store.delete("a", false, &never).unwrap();
    assert_eq!(
        r,
        vec![
            DeleteItem::Untagged("a:latest".into()),
            DeleteItem::Deleted(a.id.clone())
        ]
    );
    assert_eq!(count(&store.snapshot_root()), 1);
    assert!(store.rootfs_layers("b").unwrap()[0]
        .join("bin/busybox")
        .exists());
    store.delete("b", false, &never).unwrap();
    assert_eq!(count(&store.snapshot_root()), 0);
    assert_eq!(count(&root.join("content/sha256")), 0);
}

#[test]
fn rootfs_layers_reunpacks_missing_snapshots() {
    let root = TempDir::new("reunpack");
    let store = Store::open(root.path()).unwrap();
    let img = import_tagged(&store, &gzip(&busybox_tar()), "bb");
    let lowers = store.rootfs_layers("bb").unwrap();
    fs::remove_dir_all(lowers[0].parent().unwrap()).unwrap();
    let again = store.rootfs_layers(&img.id).unwrap();
    assert_eq!(again, lowers);
    assert!(again[0].join("etc/passwd").is_file());
}

#[test]
fn prune_dangling_and_all() {
    let root = TempDir::new("prune");
    let store = Store::open(root.path()).unwrap();
    let tar = busybox_tar();
    let tagged = import_tagged(&store, &tar, "keep");
    let dangling = store
        .import(&mut &tar[..], &ImportOptions::default())
        .unwrap();
    let used = store
        .import(&mut &gzip(&tar)[..], &ImportOptions::default())
        .unwrap();
    let in_use = |id: &str| id == used.id;
    let (items, freed) = store.prune(false, &in_use).unwrap();
    assert_eq!(items, vec![DeleteItem::Deleted(dangling.id.clone())]);
    assert!(freed > 0);
    assert_eq!(store.list().unwrap().len(), 2);
    let (items, _) = store.prune(true, &in_use).unwrap();
    assert!(items.contains(&DeleteItem::Untagged("keep:latest".into())));
    assert!(items.contains(&DeleteItem::Deleted(tagged.id.clone())));
    let left: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left, vec![used.id.clone()]);
}

#[test]
fn open_cleans_crash_leftovers() {
    let root = TempDir::new("crash");
    let keep_id;
    {
        let store = Store::open(root.path()).unwrap();
        keep_id = import_tagged(&store, &busybox_tar(), "keep").id;
    }
    fs::write(root.join("content/tmp/123-half-written"), b"partial").unwrap();
    fs::create_dir_all(root.join("snapshots/.tmp-1-2-3/fs/bin")).unwrap();
    fs::write(root.join("snapshots/.tmp-1-2-3/fs/bin/x"), b"x").unwrap();
    fs::write(root.join("images/.tmp-9-9-9"), b"{").unwrap();
    fs::write(root.join(".tmp-repos"), b"{").unwrap();
    // A complete but unreferenced blob and snapshot (crash between unpack and record).
    let orphan = "ab".repeat(32);
    fs::write(root.join("content/sha256").join(&orphan), b"orphan").unwrap();
    fs::create_dir_all(root.join("snapshots").join(&orphan).join("fs")).unwrap();

    let store = Store::open(root.path()).unwrap();
    assert_eq!(count(&root.join("content/tmp")), 0);
    assert!(!root.join("snapshots/.tmp-1-2-3").exists());
    assert!(!root.join("images/.tmp-9-9-9").exists());
    assert!(!root.join(".tmp-repos").exists());
    assert!(!root.join("content/sha256").join(&orphan).exists());
    assert!(!root.join("snapshots").join(&orphan).exists());
    assert_eq!(store.get("keep").unwrap().id, keep_id);
    assert!(store.rootfs_layers("keep").unwrap()[0]
        .join("bin/busybox")
        .exists());
}

#[test]
fn history_of_an_import() {
    let root = TempDir::new("history");
    let store = Store::open(root.path()).unwrap();
    let img = import_tagged(&store, &busybox_tar(), "h:1");
    let h = store.history("h:1").unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].id, img.id);
    assert_eq!(h[0].tags, vec!["h:1"]);
    assert_eq!(h[0].size as u64, img.size);
    assert!(h[0].created > 1_600_000_000);
}

#[test]
fn summaries_are_kept_in_records_and_configs_read_on_demand() {
    let root = TempDir::new("summary");
    let small_id;
    let big_id;
    let big_value = "v".repeat(5000);
    {
        let store = Store::open(root.path()).unwrap();
        let import = |reference: &str, changes: Vec<String>| {
            store
                .import(
                    &mut &busybox_tar()[..],
                    &ImportOptions {
                        reference: Some(reference.to_string()),
                        changes,
                        ..Default::default()
                    },
                )
                .unwrap()
        };
        small_id = import("small:1", vec!["LABEL a=b".into()]).id;
        big_id = import("big:1", vec![format!("LABEL big={big_value} c=d")]).id;
    }
    let record = |id: &str| root.join(&format!("images/{}.json", id.trim_start_matches("sha256:")));
    let small_rec: serde_json::Value =
        serde_json::from_slice(&fs::read(record(&small_id)).unwrap()).unwrap();
    assert_eq!(small_rec["summary"]["labels"]["a"], "b");
    assert!(small_rec["summary"]["created"].is_string());
    // Large labels stay in the config only.
    let big_rec: serde_json::Value =
        serde_json::from_slice(&fs::read(record(&big_id)).unwrap()).unwrap();
    assert_eq!(big_rec["summary"]["labels_in_config"], true);
    assert!(big_rec["summary"].get("labels").is_none());
    // A record written before summaries were kept gets one at boot.
    let mut old = small_rec.clone();
    old.as_object_mut().unwrap().remove("summary");
    fs::write(record(&small_id), serde_json::to_vec(&old).unwrap()).unwrap();

    let store = Store::open(root.path()).unwrap();
    let again: serde_json::Value =
        serde_json::from_slice(&fs::read(record(&small_id)).unwrap()).unwrap();
    assert_eq!(again["summary"], small_rec["summary"]);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    let small = list.iter().find(|i| i.id == small_id).unwrap();
    assert_eq!(small.labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(small.repo_tags, vec!["small:1"]);
    assert!(small.created.is_some());
    let big = store.summary("big:1").unwrap();
    assert_eq!(big.labels.get("big"), Some(&big_value));
    assert_eq!(big.labels.get("c").map(String::as_str), Some("d"));
    assert_eq!(store.resolve_id("big:1").unwrap(), big_id);
    // The whole config is read when asked for.
    let full = store.get("small:1").unwrap();
    let labels = full
        .config
        .config()
        .clone()
        .unwrap()
        .labels()
        .clone()
        .unwrap();
    assert_eq!(labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(full.created, small.created);
}
