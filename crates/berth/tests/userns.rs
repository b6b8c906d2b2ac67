//! `--userns-remap default`: containers' root is an unprivileged host uid (the subordinate ids
//! of berthremap), the image's layers are idmapped rather than copied, volumes belong to the
//! remapped root while binds keep their owners (and are opened on the host side, so their
//! path need not be searchable by the mapped ids), and `--userns=host` opts out.

mod common;
use common::{stderr, Daemon};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The first host uid and gid of berthremap's ranges: container root on the host.
fn mapped_root() -> (u32, u32) {
    let first = |file: &str| -> u32 {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| {
                let mut f = l.split(':');
                (f.next() == Some("berthremap")).then(|| f.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no berthremap range in {file}"))
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

fn remapped() -> Daemon {
    Daemon::start_with(&["--userns-remap", "default"])
}

/// The real, effective, saved and fs uids of a host process.
fn host_uids(pid: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect()
}

/// A host directory removed at the end of the test (pass or fail).
struct HostDir(PathBuf);

impl HostDir {
    fn new(tag: &str) -> HostDir {
        let p = std::env::temp_dir().join(format!("berth-userns-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        HostDir(p)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn container_root_is_an_unprivileged_host_uid() {
    let d = remapped();
    let (uid, gid) = mapped_root();
    assert!(uid >= 100_000, "berthremap's range starts at {uid}");
    let (code, info) = d.curl("GET", "/info", None);
    assert_eq!(code, 200);
    assert!(info.contains("name=userns"), "{info}");

    d.ok(&["run", "-d", "--name", "mapped1", "busybox", "sleep", "300"]);
    assert_eq!(d.ok(&["exec", "mapped1", "id", "-u"]), "0");
    assert_eq!(d.ok(&["exec", "mapped1", "id", "-g"]), "0");
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "mapped1"]);
    assert_eq!(host_uids(&pid), vec![uid; 4]);
    let map = d.ok(&["exec", "mapped1", "cat", "/proc/self/uid_map"]);
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields, ["0", &uid.to_string(), "65536"]);
    // An exec'd process is in the container's user namespace too.
    let exec_ns = d.ok(&["exec", "mapped1", "readlink", "/proc/self/ns/user"]);
    let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_eq!(exec_ns, init_ns.to_str().unwrap());
    let own_ns = std::fs::read_link("/proc/self/ns/user").unwrap();
    assert_ne!(init_ns, own_ns);

    // The image's files show as root's, and what root writes is the mapped uid's on the host.
    assert_eq!(
        d.ok(&[
            "exec",
            "mapped1",
            "stat",
            "-c",
            "%u:%g",
            "/bin/busybox",
            "/"
        ]),
        "0:0\n0:0"
    );
    d.ok(&[
        "exec",
        "mapped1",
        "sh",
        "-c",
        "echo hi > /new && echo more >> /etc/passwd",
    ]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "mapped1"]);
    let upper = d.data_root.join("containers").join(&id).join("upper");
    for f in ["new", "etc/passwd", "etc", "."] {
        let m = std::fs::symlink_metadata(upper.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "upper/{f}");
    }
    // /etc/hosts is the container root's to write, as in Docker.
    d.ok(&[
        "exec",
        "mapped1",
        "sh",
        "-c",
        "echo 10.9.9.9 extra >> /etc/hosts",
    ]);

    // sysfs, proc, devpts, mqueue and the cgroup mounts are the container's own.
    let mounts = d.ok(&["exec", "mapped1", "cat", "/proc/self/mounts"]);
    for (dst, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev/pts", "devpts"),
        ("/dev/mqueue", "mqueue"),
        ("/dev", "tmpfs"),
    ] {
        assert!(
            mounts
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(dst) && l.split(' ').nth(2) == Some(fstype)),
            "{dst} ({fstype}) missing:\n{mounts}"
        );
    }
    // The container's own sysfs shows its network namespace's interfaces only.
    let nets = d.ok(&["exec", "mapped1", "ls", "/sys/class/net"]);
    let mut nets: Vec<&str> = nets.split_whitespace().collect();
    nets.sort_unstable();
    assert_eq!(nets, ["eth0", "lo"]);
    assert!(!d
        .ok(&["exec", "mapped1", "ls", "/sys/fs/cgroup"])
        .trim()
        .is_empty());
    // A PTY works in the user namespace.
    assert_eq!(d.ok(&["exec", "-t", "mapped1", "id", "-u"]).trim(), "0");

    // A container sharing the network namespace joins the user namespace that owns it.
    let shared = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:mapped1",
        "busybox",
        "readlink",
        "/proc/self/ns/user",
    ]);
    assert_eq!(shared, init_ns.to_str().unwrap());
    d.ok(&["rm", "-f", "mapped1"]);
}

#[test]
fn binds_keep_their_owners_and_volumes_belong_to_the_mapped_root() {
    let d = remapped();
    let (uid, gid) = mapped_root();
    let dir = HostDir::new("bind");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.0.join("f"), "host\n").unwrap();
    let bind = format!("{}:/b", dir.0.display());
    // Root in the container is not root of a host-root-owned directory.
    let out = d.berth(&["run", "--rm", "-v", &bind, "busybox", "touch", "/b/x"]);
    assert!(
        !out.status.success(),
        "container root wrote a root-owned bind"
    );
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.0.join("x").exists());
    // It still reads it; the host's root shows as the overflow id (binds are not chowned).
    assert_eq!(
        d.ok(&["run", "--rm", "-v", &bind, "busybox", "cat", "/b/f"]),
        "host"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "-v", &bind, "busybox", "stat", "-c", "%u", "/b/f"]),
        "65534"
    );
    assert_eq!(std::fs::metadata(dir.0.join("f")).unwrap().uid(), 0);

    // A named volume's _data belongs to the remapped root, and so does what it writes.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "vol:/v",
        "busybox",
        "sh",
        "-c",
        "echo x > /v/f && mkdir /v/d && chown 1:2 /v/d",
    ]);
    let data = d.data_root.join("volumes/vol/_data");
    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&data), (uid, gid));
    assert_eq!(owner(&data.join("f")), (uid, gid));
    assert_eq!(owner(&data.join("d")), (uid + 1, gid + 2));
    // A volume made before any container is the remapped root's too.
    d.ok(&["volume", "create", "early"]);
    assert_eq!(owner(&d.data_root.join("volumes/early/_data")), (uid, gid));
    d.ok(&["run", "--rm", "-v", "early:/e", "busybox", "touch", "/e/ok"]);

    // Copy-up of an image directory into a new volume gives the mapped owners.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "etc:/etc",
            "busybox",
            "stat",
            "-c",
            "%u:%g",
            "/etc/passwd"
        ]),
        "0:0"
    );
    assert_eq!(
        owner(&d.data_root.join("volumes/etc/_data/passwd")),
        (uid, gid)
    );
}

#[test]
fn binds_under_a_directory_the_mapped_ids_cannot_search() {
    use std::os::unix::fs::PermissionsExt;
    let d = remapped();
    let (uid, _) = mapped_root();
    // <tmp>/private (0700, host root's) holds data (0755) and data/f: only the host side can
    // reach them, as with a bind of a directory under /root.
    let private = HostDir::new("private");
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m)).unwrap();
    mode(&private.0, 0o700);
    let data = private.0.join("data");
    std::fs::create_dir(&data).unwrap();
    mode(&data, 0o755);
    std::fs::write(data.join("f"), "kept\n").unwrap();
    let bind = format!("{}:/b", data.display());

    assert_eq!(
        d.ok(&["run", "--rm", "-v", &bind, "busybox", "cat", "/b/f"]),
        "kept"
    );
    // A file bind, and --mount, go the same way.
    let file = format!("{}:/f", data.join("f").display());
    assert_eq!(
        d.ok(&["run", "--rm", "-v", &file, "busybox", "cat", "/f"]),
        "kept"
    );
    let mount = format!("type=bind,source={},target=/m", data.display());
    assert_eq!(
        d.ok(&["run", "--rm", "--mount", &mount, "busybox", "cat", "/m/f"]),
        "kept"
    );
    let slave = format!("{mount},bind-propagation=rslave");
    assert_eq!(
        d.ok(&["run", "--rm", "--mount", &slave, "busybox", "cat", "/m/f"]),
        "kept"
    );
    // The bind is not idmapped: host root's files are the overflow id's, not container root's.
    assert_eq!(
        d.ok(&["run", "--rm", "-v", &bind, "busybox", "stat", "-c", "%u", "/b/f"]),
        "65534"
    );
    let out = d.berth(&["run", "--rm", "-v", &bind, "busybox", "touch", "/b/x"]);
    assert!(
        !out.status.success(),
        "container root wrote host root's dir"
    );
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!data.join("x").exists());

    // Writable by anyone, it is written to (as the mapped root on the host) unless read-only.
    mode(&data, 0o777);
    d.ok(&["run", "--rm", "-v", &bind, "busybox", "touch", "/b/w"]);
    assert_eq!(std::fs::metadata(data.join("w")).unwrap().uid(), uid);
    let ro = format!("{}:/b:ro", data.display());
    let ro_mount = format!("{mount},readonly");
    for args in [
        ["-v", &ro, "busybox", "touch", "/b/y"],
        ["--mount", &ro_mount, "busybox", "touch", "/m/y"],
    ] {
        let out = d.berth(&[&["run", "--rm"][..], &args[..]].concat());
        assert!(!out.status.success(), "wrote a read-only bind: {args:?}");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!data.join("y").exists());
    // Nothing of it shows in the host's mount table.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.contains(data.to_str().unwrap()),
        "{host_mounts}"
    );
}

#[test]
fn userns_host_runs_unmapped_and_privileged_needs_it() {
    let d = remapped();
    let map = d.ok(&[
        "run",
        "--rm",
        "--userns=host",
        "busybox",
        "cat",
        "/proc/self/uid_map",
    ]);
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields, ["0", "0", "4294967295"]);
    d.ok(&["create", "--name", "hostns", "--userns=host", "busybox"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", "hostns"]),
        "host"
    );

    let out = d.berth(&["run", "--rm", "--privileged", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode"),
        "{}",
        stderr(&out)
    );
    let (code, body) = d.curl(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "--userns=host",
        "busybox",
        "true",
    ]);
    let out = d.berth(&["run", "--rm", "--network", "host", "busybox", "true"]);
    assert!(stderr(&out)
        .contains("cannot share the host's network namespace when user namespaces are enabled"));
    let out = d.berth(&["run", "--rm", "--userns", "bogus", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("UsernsMode"), "{}", stderr(&out));
}

/// The lower dirs of a running container, from the overlay options of its config.json.
fn lowers(d: &Daemon, name: &str) -> Vec<String> {
    let id = d.ok(&["inspect", "-f", "{{.Id}}", name]);
    let cfg = std::fs::read_to_string(d.exec_root.join("c").join(&id).join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let opts = v["annotations"]["berth.overlay"]
        .as_str()
        .unwrap()
        .to_string();
    let lower = opts
        .split(',')
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap()
        .to_string();
    lower.split(':').map(String::from).collect()
}

fn dirs_under(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn image_layers_are_shared_not_copied() {
    let d = remapped();
    let snapshots = d.data_root.join("snapshots");
    let before = dirs_under(&snapshots);
    let data_before = dirs_under(&d.data_root);
    d.ok(&["run", "-d", "--name", "mapped", "busybox", "sleep", "300"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--userns=host",
        "busybox",
        "sleep",
        "300",
    ]);
    // Both containers' overlays have the very same lower dirs, in the image store.
    let (m, p) = (lowers(&d, "mapped"), lowers(&d, "plain"));
    assert_eq!(m, p);
    assert!(m.len() >= 2, "{m:?}");
    assert!(m[1..].iter().all(|l| Path::new(l).starts_with(&snapshots)));
    // No snapshot was added and nothing new sits in the data root (no per-mapping copy).
    assert_eq!(dirs_under(&snapshots), before);
    let data_after: Vec<PathBuf> = dirs_under(&d.data_root)
        .into_iter()
        .filter(|p| !p.ends_with("volumes") && !p.ends_with("networks"))
        .collect();
    let data_before: Vec<PathBuf> = data_before
        .into_iter()
        .filter(|p| !p.ends_with("volumes") && !p.ends_with("networks"))
        .collect();
    assert_eq!(data_after, data_before);
    // The layers keep their on-disk owners; each container sees them as its root's.
    let busybox = m
        .iter()
        .map(|l| Path::new(l).join("bin/busybox"))
        .find(|p| p.exists())
        .expect("busybox in a lower layer");
    assert_eq!(std::fs::metadata(&busybox).unwrap().uid(), 0);
    for name in ["mapped", "plain"] {
        assert_eq!(
            d.ok(&["exec", name, "stat", "-c", "%u", "/bin/busybox"]),
            "0"
        );
    }
    // The same inode serves both: the page cache and the disk are shared.
    let ino = |name: &str| d.ok(&["exec", name, "stat", "-L", "-c", "%i", "/bin/busybox"]);
    assert_eq!(ino("mapped"), ino("plain"));
    // The idmapped mounts live in the containers' mount namespaces only.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains("idmapped"), "{host_mounts}");
    d.ok(&["rm", "-f", "mapped", "plain"]);
}

/// Owners of a tar's entries by name.
fn tar_owners(tar: &Path) -> std::collections::HashMap<String, (u64, u64)> {
    let mut a = tar::Archive::new(std::fs::File::open(tar).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string(),
                (h.uid().unwrap(), h.gid().unwrap()),
            )
        })
        .collect()
}

#[test]
fn commit_build_cp_and_export_use_the_containers_ids() {
    let d = remapped();
    let (uid, gid) = mapped_root();
    let dir = HostDir::new("files");
    d.ok(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "echo x > /f && mkdir /d && chown 5:6 /d",
    ]);
    // The upper dir holds host ids; the image records the container's.
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "writer"]);
    let upper = d.data_root.join("containers").join(&id).join("upper");
    assert_eq!(std::fs::metadata(upper.join("d")).unwrap().uid(), uid + 5);
    d.ok(&["commit", "writer", "committed:1"]);
    for userns in ["--userns=host", "--userns="] {
        assert_eq!(
            d.ok(&[
                "run",
                "--rm",
                userns,
                "committed:1",
                "stat",
                "-c",
                "%u:%g",
                "/f",
                "/d"
            ]),
            "0:0\n5:6",
            "{userns}"
        );
    }

    // export and cp out write the container's ids (of a stopped container here).
    let tar = dir.0.join("export.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "writer"]);
    let owners = tar_owners(&tar);
    assert_eq!(owners["f"], (0, 0));
    assert_eq!(owners["d"], (5, 6));
    assert_eq!(owners["bin/busybox"], (0, 0));
    // cp in: the file is the container root's inside, the mapped uid's on the host.
    std::fs::write(dir.0.join("in.txt"), "from host\n").unwrap();
    d.ok(&[
        "cp",
        dir.0.join("in.txt").to_str().unwrap(),
        "writer:/in.txt",
    ]);
    let m = std::fs::metadata(upper.join("in.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (uid, gid));
    // cp out of a running container: the archive API's tar has the container's ids.
    d.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "300"]);
    d.ok(&[
        "exec",
        "live",
        "sh",
        "-c",
        "mkdir -p /x/y && chown 3:4 /x/y",
    ]);
    let tar = dir.0.join("cp.tar");
    let st = std::process::Command::new("curl")
        .args(["-sf", "-o"])
        .arg(&tar)
        .arg("--unix-socket")
        .arg(&d.sock)
        .arg("http://berth/containers/live/archive?path=/x")
        .status()
        .unwrap();
    assert!(st.success());
    let owners = tar_owners(&tar);
    assert_eq!(owners["x"], (0, 0));
    assert_eq!(owners["x/y"], (3, 4));
    // export of a running container too: its layers, with the container's ids.
    let tar = dir.0.join("live.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "live"]);
    let owners = tar_owners(&tar);
    assert_eq!(owners["x/y"], (3, 4));
    assert_eq!(owners["bin/busybox"], (0, 0));
    assert!(!owners.contains_key("dev/null"), "{owners:?}");

    // A build's RUN steps run remapped; its layers record the container's ids.
    let ctx = HostDir::new("ctx");
    std::fs::write(
        ctx.0.join("Dockerfile"),
        "FROM busybox\nRUN touch /built && mkdir /owned && chown 7:8 /owned && id -u > /uid\n",
    )
    .unwrap();
    let out = d.berth(&["build", "-t", "built:1", ctx.0.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--userns=host",
            "built:1",
            "stat",
            "-c",
            "%u:%g",
            "/built",
            "/owned"
        ]),
        "0:0\n7:8"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "--userns=host", "built:1", "cat", "/uid"]),
        "0"
    );
    d.ok(&["rm", "-f", "writer", "live"]);
}

#[test]
fn a_container_starts_only_under_the_mapping_it_was_made_with() {
    let mut d = remapped();
    d.ok(&["create", "--name", "made-mapped", "busybox", "true"]);
    d.ok(&[
        "create",
        "--name",
        "made-host",
        "--userns=host",
        "busybox",
        "true",
    ]);
    d.crash();
    d.flags.clear();
    d.spawn();
    let out = d.berth(&["start", "made-mapped"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another --userns-remap setting"),
        "{}",
        stderr(&out)
    );
    // --userns=host has no mapping under either setting.
    d.ok(&["start", "made-host"]);
    d.ok(&["create", "--name", "made-plain", "busybox", "true"]);
    d.crash();
    d.flags = vec!["--userns-remap".into(), "default".into()];
    d.spawn();
    let out = d.berth(&["start", "made-plain"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("without --userns-remap"),
        "{}",
        stderr(&out)
    );
    d.ok(&["start", "made-mapped"]);
}
