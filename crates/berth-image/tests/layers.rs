//! Layer system tests: commit of an overlay upper dir (whiteouts, opaque dirs) and diff,
//! malicious layer tars, and the `archive` module (safe extraction, tars of paths, stat).

mod common;

use berth_image::archive::{self, ExtractOptions};
use berth_image::{Change, CommitOptions, DeleteItem, Error, ImportOptions, Store};
use common::*;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

fn set_opaque(path: &Path) {
    rustix::fs::lsetxattr(
        path,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf[..]), Ok(1) if buf[0] == b'y')
}

/// Gives `dst` the mode and mtime of `src`.
fn copy_dir_meta(src: &Path, dst: &Path) {
    let m = fs::metadata(src).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777)).unwrap();
    File::open(dst)
        .unwrap()
        .set_modified(m.modified().unwrap())
        .unwrap();
}

#[test]
fn commit_and_diff_an_upper_dir() {
    let root = TempDir::new("commit");
    let store = Store::open(root.path()).unwrap();
    let base = store
        .import(
            &mut &busybox_tar()[..],
            &ImportOptions {
                reference: Some("busybox".into()),
                changes: vec!["CMD [\"sh\"]".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let lowers = store.rootfs_layers(&base.id).unwrap();

    let upper = TempDir::new("upper");
    let u = upper.path();
    fs::create_dir(u.join("etc")).unwrap();
    fs::write(u.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    whiteout(&u.join("etc/group"));
    copy_dir_meta(&lowers[0].join("etc"), &u.join("etc"));
    fs::write(u.join("newfile"), "new\n").unwrap();
    fs::create_dir_all(u.join("opt/old")).unwrap();
    set_opaque(&u.join("opt/old"));
    fs::write(u.join("opt/old/new"), "n\n").unwrap();

    let changes = store.diff(u, &lowers).unwrap();
    assert_eq!(
        changes,
        vec![
            Change::Modified("/etc".into()),
            Change::Deleted("/etc/group".into()),
            Change::Modified("/etc/passwd".into()),
            Change::Added("/newfile".into()),
            Change::Modified("/opt".into()),
            Change::Deleted("/opt/old".into()),
            Change::Added("/opt/old/new".into()),
        ]
    );
    assert_eq!(changes[1].kind(), 2);
    assert_eq!(changes[3].path(), "/newfile");

    let cfg = base.config.config().clone().unwrap();
    let img = store
        .commit(
            u,
            Some("busybox"),
            &CommitOptions {
                reference: Some("committed:1".into()),
                comment: Some("my change".into()),
                author: Some("me".into()),
                changes: vec!["ENV X=1".into()],
                config: Some(cfg),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(img.repo_tags, vec!["committed:1"]);
    assert_eq!(img.parent.as_deref(), Some(base.id.as_str()));
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[0], base.layers[0]);
    assert_eq!(img.config.author().as_deref(), Some("me"));
    let c = img.config.config().clone().unwrap();
    assert_eq!(c.env().clone().unwrap(), vec!["X=1"]);
    assert_eq!(c.cmd().clone().unwrap(), vec!["sh"]);

    let hist = store.history("committed:1").unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].id, img.id);
    assert_eq!(hist[0].created_by, "sh");
    assert_eq!(hist[0].comment, "my change");
    assert_eq!(hist[0].tags, vec!["committed:1"]);
    assert_eq!(hist[1].id, base.id);
    assert_eq!(hist[1].tags, vec!["busybox:latest"]);
    // Regular files of the layer: passwd (26) + newfile (4) + opt/old/new (2).
    assert_eq!(hist[0].size, 32);

    // The layer tar carries Docker's whiteout form.
    let (manifest, _) = store.manifest(&img.id).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let top = m["layers"][1]["digest"].as_str().unwrap();
    let blob = fs::read(store.blob_path(top).unwrap()).unwrap();
    let names: Vec<String> = tar_entries(&blob).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/.wh.group",
            "etc/passwd",
            "newfile",
            "opt/",
            "opt/old/",
            "opt/old/.wh..wh..opq",
            "opt/old/new"
        ]
    );

    // Its snapshot is in overlay form again.
    let lowers2 = store.rootfs_layers(&img.id).unwrap();
    assert_eq!(lowers2.len(), 2);
    assert_eq!(lowers2[1], lowers[0]);
    let wh = fs::symlink_metadata(lowers2[0].join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(is_opaque(&lowers2[0].join("opt/old")));
    assert_eq!(
        fs::read_to_string(lowers2[0].join("newfile")).unwrap(),
        "new\n"
    );

    // An empty upper dir: an empty-layer history entry, no new layer.
    let empty = TempDir::new("empty-upper");
    let e = store
        .commit(empty.path(), Some(&img.id), &CommitOptions::default())
        .unwrap();
    assert_eq!(e.layers, img.layers);
    let eh = e.config.history().clone().unwrap();
    assert_eq!(eh.len(), 3);
    assert_eq!(eh[2].empty_layer(), Some(true));
    assert_eq!(
        e.config.config().clone().unwrap().env().clone().unwrap(),
        vec!["X=1"]
    );

    // Parents with children cannot go; children can, and take untagged parents along.
    let err = store.delete(&base.id, true, &never).unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("image has dependent child images")),
        "{err}"
    );
    let r = store.delete(&e.id, false, &never).unwrap();
    assert_eq!(r, vec![DeleteItem::Deleted(e.id.clone())]);
    let r = store.delete("committed:1", false, &never).unwrap();
    assert_eq!(r[0], DeleteItem::Untagged("committed:1".into()));
    assert_eq!(r[1], DeleteItem::Deleted(img.id.clone()));
    assert_eq!(r.len(), 3); // + its own layer; the tagged parent stays
    assert!(store.get("busybox").is_ok());
    assert!(lowers[0].join("bin/busybox").exists());
}

#[test]
fn committed_whiteouts_survive_save_and_load() {
    let root = TempDir::new("wh-roundtrip");
    let store = Store::open(root.path()).unwrap();
    store
        .import(
            &mut &busybox_tar()[..],
            &ImportOptions {
                reference: Some("bb".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let upper = TempDir::new("wh-upper");
    fs::create_dir(upper.join("etc")).unwrap();
    whiteout(&upper.join("etc/passwd"));
    fs::create_dir(upper.join("opt")).unwrap();
    set_opaque(&upper.join("opt"));
    let img = store
        .commit(
            upper.path(),
            Some("bb"),
            &CommitOptions {
                reference: Some("bb:wh".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mut out = Vec::new();
    store.save(&["bb:wh".to_string()], &mut out).unwrap();
    let other_root = TempDir::new("wh-other");
    let other = Store::open(other_root.path()).unwrap();
    assert_eq!(other.load(&mut &out[..]).unwrap(), ["Loaded image: bb:wh"]);
    let lowers = other.rootfs_layers(&img.id).unwrap();
    let wh = fs::symlink_metadata(lowers[0].join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(is_opaque(&lowers[0].join("opt")));
    assert!(lowers[1].join("etc/passwd").is_file());
}

#[test]
fn malicious_layers_are_refused_and_leave_nothing() {
    let root = TempDir::new("evil");
    let store = Store::open(root.path()).unwrap();
    let outside = TempDir::new("outside");
    let outside_s = outside.path().to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            TarBuf::new()
                .file("ok", b"1")
                .file("../evil", b"x")
                .finish(),
            "\"../evil\"",
        ),
        (
            "nested dotdot",
            TarBuf::new().file("a/../../evil", b"x").finish(),
            "escapes",
        ),
        (
            "absolute symlink then write through it",
            TarBuf::new()
                .symlink("link", &outside_s)
                .file("link/pwned", b"x")
                .finish(),
            "\"link/pwned\"",
        ),
        (
            "relative symlink out then write through it",
            TarBuf::new()
                .symlink("up", "../../../../../../..")
                .file("up/tmp/pwned", b"x")
                .finish(),
            "symlink",
        ),
        (
            "hardlink outside",
            TarBuf::new()
                .hardlink("h", "../../../../etc/passwd")
                .finish(),
            "outside",
        ),
        (
            "hardlink to a missing file",
            TarBuf::new().hardlink("h", "etc/passwd").finish(),
            "does not exist",
        ),
        (
            "hardlink through a symlink",
            TarBuf::new()
                .symlink("s", "/etc")
                .hardlink("h", "s/passwd")
                .finish(),
            "symlink",
        ),
        (
            "char device",
            TarBuf::new()
                .dir("dev/")
                .device("dev/null", tar::EntryType::Char, 1, 3)
                .finish(),
            "\"dev/null\": device nodes (1:3) are not allowed",
        ),
        (
            "block device",
            TarBuf::new()
                .device("sda", tar::EntryType::Block, 8, 0)
                .finish(),
            "device nodes",
        ),
    ];
    for (what, tar, expect) in cases {
        let e = store
            .import(
                &mut &tar[..],
                &ImportOptions {
                    reference: Some("evil".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{what}: {e}");
        assert!(e.to_string().contains(expect), "{what}: {e}");
        assert_eq!(count(&root.join("content/sha256")), 0, "{what}");
        assert_eq!(count(&root.join("content/tmp")), 0, "{what}");
        assert_eq!(count(&store.snapshot_root()), 0, "{what}");
        assert_eq!(count(&root.join("images")), 0, "{what}");
        assert_eq!(count(outside.path()), 0, "{what}: wrote outside");
        assert!(
            !root.join("evil").exists() && !root.join("snapshots/evil").exists(),
            "{what}"
        );
        assert!(store.list().unwrap().is_empty());
    }
    // The same tar through a gzip stream fails the same way.
    let e = store
        .import(
            &mut &gzip(&TarBuf::new().file("../x", b"1").finish())[..],
            &ImportOptions::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("escapes"), "{e}");
    // A whiteout device (0/0) in a tar is accepted as a whiteout.
    let ok = TarBuf::new()
        .device("gone", tar::EntryType::Char, 0, 0)
        .file(".wh.other", b"")
        .finish();
    let img = store
        .import(&mut &ok[..], &ImportOptions::default())
        .unwrap();
    let l = store.rootfs_layers(&img.id).unwrap();
    assert!(fs::symlink_metadata(l[0].join("gone"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(fs::symlink_metadata(l[0].join("other"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn extract_resolves_symlinks_inside_the_root() {
    let dest = TempDir::new("extract");
    let outside = TempDir::new("extract-outside");
    fs::create_dir(dest.join("sub")).unwrap();
    let tar = TarBuf::new()
        .symlink("abs", "/sub")
        .file("abs/file", b"inside")
        .symlink("esc", &format!("{}/../..", outside.path().display()))
        .finish();
    archive::extract(&mut &tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read_to_string(dest.join("sub/file")).unwrap(), "inside");
    assert_eq!(count(outside.path()), 0);

    // Writing through a symlink that points far outside stays inside too.
    let tar = TarBuf::new()
        .symlink("up", "../../../../../../../../..")
        .dir("up/made/")
        .file("up/made/here", b"x")
        .finish();
    archive::extract(&mut &tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert!(dest.join("made/here").is_file());

    for (tar, expect) in [
        (TarBuf::new().file("../x", b"1").finish(), "escapes"),
        (
            TarBuf::new().hardlink("h", "nothere").finish(),
            "does not exist",
        ),
        (
            TarBuf::new()
                .device("null", tar::EntryType::Char, 1, 3)
                .finish(),
            "device",
        ),
    ] {
        let e =
            archive::extract(&mut &tar[..], dest.path(), &ExtractOptions::default()).unwrap_err();
        assert!(e.to_string().contains(expect), "{e}");
    }
    // Hardlink targets are archive paths inside the root, even when absolute.
    fs::write(dest.join("target"), b"t").unwrap();
    let tar = TarBuf::new().hardlink("hl", "/target").finish();
    archive::extract(&mut &tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(
        fs::metadata(dest.join("hl")).unwrap().ino(),
        fs::metadata(dest.join("target")).unwrap().ino()
    );
    // Devices when allowed.
    let tar = TarBuf::new()
        .device("null", tar::EntryType::Char, 1, 3)
        .finish();
    archive::extract(
        &mut &tar[..],
        dest.path(),
        &ExtractOptions {
            allow_devices: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        fs::symlink_metadata(dest.join("null")).unwrap().rdev(),
        rustix::fs::makedev(1, 3)
    );
}

#[test]
fn extract_overwrite_rules_owner_and_metadata() {
    let dest = TempDir::new("extract-meta");
    fs::create_dir(dest.join("d")).unwrap();
    let tar = TarBuf::new().file("d", b"file").finish();
    let e = archive::extract(
        &mut &tar[..],
        dest.path(),
        &ExtractOptions {
            no_overwrite_dir_non_dir: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("cannot overwrite a directory"),
        "{e}"
    );
    archive::extract(&mut &tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert!(dest.join("d").is_file());

    // Modes, owners, mtimes and xattrs, through our own tar writer.
    let src = TempDir::new("extract-src");
    let f = src.join("data/f");
    fs::create_dir(src.join("data")).unwrap();
    fs::write(&f, b"12345").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    rustix::fs::chown(
        &f,
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(5678)),
    )
    .unwrap();
    rustix::fs::lsetxattr(&f, "user.berth", b"v", rustix::fs::XattrFlags::empty()).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let mut buf = Vec::new();
    archive::tar_path(&src.join("data"), &mut buf).unwrap();
    let out = TempDir::new("extract-out");
    archive::extract(&mut &buf[..], out.path(), &ExtractOptions::default()).unwrap();
    let m = fs::metadata(out.join("data/f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(m.mtime(), 1_600_000_000);
    let mut v = [0u8; 8];
    assert_eq!(
        rustix::fs::lgetxattr(out.join("data/f"), "user.berth", &mut v[..]).unwrap(),
        1
    );
    // chown option (docker cp without -a).
    let out2 = TempDir::new("extract-out2");
    archive::extract(
        &mut &buf[..],
        out2.path(),
        &ExtractOptions {
            chown: Some((0, 0)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fs::metadata(out2.join("data/f")).unwrap().uid(), 0);
}

#[test]
fn tar_of_paths_and_path_stat() {
    let d = TempDir::new("tarpath");
    let data = d.join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("a"), b"aaa").unwrap();
    fs::write(data.join("sub/b"), b"b").unwrap();
    std::os::unix::fs::symlink("a", data.join("l")).unwrap();
    fs::hard_link(data.join("a"), data.join("h")).unwrap();

    let mut buf = Vec::new();
    archive::tar_path(&data, &mut buf).unwrap();
    let entries: Vec<(String, tar::EntryType)> = tar_entries(&buf)
        .into_iter()
        .map(|(n, k, _)| (n, k))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("data/".to_string(), tar::EntryType::Directory),
            ("data/a".to_string(), tar::EntryType::Regular),
            ("data/h".to_string(), tar::EntryType::Link),
            ("data/l".to_string(), tar::EntryType::Symlink),
            ("data/sub/".to_string(), tar::EntryType::Directory),
            ("data/sub/b".to_string(), tar::EntryType::Regular),
        ]
    );
    let mut buf = Vec::new();
    archive::tar_path(&data.join("a"), &mut buf).unwrap();
    assert_eq!(tar_entries(&buf)[0].0, "a");
    let mut buf = Vec::new();
    archive::tar_dir(&data, &mut buf).unwrap();
    let names: Vec<String> = tar_entries(&buf).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["a", "h", "l", "sub/", "sub/b"]);

    let st = archive::stat_path(&data.join("l"), "l").unwrap();
    assert_eq!(st.link_target, "a");
    assert_eq!(st.mode & (1 << 27), 1 << 27);
    let hdr = archive::path_stat(&data, "data").unwrap();
    let decoded = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{hdr}' | base64 -d"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert_eq!(v["name"], "data");
    assert_eq!(v["mode"].as_u64().unwrap() & (1 << 31), 1 << 31);
    assert_eq!(v["linkTarget"], "");
    assert!(v["mtime"].as_str().unwrap().ends_with('Z'));
    assert!(v["size"].is_i64());
}

#[test]
fn extract_at_and_resolve_in_a_container_root() {
    // A container-like root where /var/run -> /run (absolute) and /etc exists.
    let root = TempDir::new("ctr-root");
    fs::create_dir_all(root.join("run")).unwrap();
    fs::create_dir_all(root.join("var")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etclink")).unwrap();
    let croot = archive::Root::open(root.path()).unwrap();

    // The destination resolves inside the root, and so do symlinks in the archive.
    let tar = TarBuf::new()
        .file("pidfile", b"1")
        .symlink("cfg", "/etc")
        .file("cfg/app.conf", b"x")
        .finish();
    archive::extract_at(
        &mut &tar[..],
        &croot,
        Path::new("/var/run"),
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(root.join("run/pidfile")).unwrap(), b"1");
    assert_eq!(fs::read(root.join("etc/app.conf")).unwrap(), b"x");
    // Entries may not climb above the destination.
    let tar = TarBuf::new().file("../escape", b"1").finish();
    assert!(archive::extract_at(
        &mut &tar[..],
        &croot,
        Path::new("run"),
        &ExtractOptions::default()
    )
    .is_err());
    assert!(!root.join("escape").exists());
    // A missing destination is NotFound.
    let e = archive::extract_at(
        &mut &tar[..],
        &croot,
        Path::new("/nope"),
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");

    let p = archive::resolve_in_root(root.path(), Path::new("/var/run/pidfile")).unwrap();
    assert_eq!(
        p,
        fs::canonicalize(root.join("run")).unwrap().join("pidfile")
    );
    // The final component is not followed.
    let p = archive::resolve_in_root(root.path(), Path::new("etclink")).unwrap();
    assert_eq!(p, fs::canonicalize(root.path()).unwrap().join("etclink"));
    // ".." cannot leave the root: it stops at the root like in the container.
    let p = archive::resolve_in_root(root.path(), Path::new("../../etc/passwd")).unwrap();
    assert_eq!(
        p,
        fs::canonicalize(root.join("etc")).unwrap().join("passwd")
    );
    let p = archive::resolve_in_root(root.path(), Path::new("/")).unwrap();
    assert_eq!(p, fs::canonicalize(root.path()).unwrap());
    let p = archive::resolve_in_root(root.path(), Path::new("/etclink/../../../etc/x")).unwrap();
    assert_eq!(p, fs::canonicalize(root.join("etc")).unwrap().join("x"));
}
