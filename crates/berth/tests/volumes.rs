//! Volumes as Docker users know them: named and anonymous volumes, image VOLUMEs with copy-up,
//! `--mount`, `--volumes-from`, `rm -v`, `volume create|ls|inspect|rm|prune`, local volumes
//! with driver options, Docker's errors, and the docker CLI against berth.

mod common;
use common::{stderr, stdout, Daemon};
use std::path::PathBuf;

/// A host directory for bind mounts, removed at the end of the test (pass or fail).
struct HostDir(PathBuf);

impl HostDir {
    fn new(tag: &str) -> HostDir {
        let p = std::env::temp_dir().join(format!("berth-vol-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        HostDir(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn volume_names(d: &Daemon) -> Vec<String> {
    d.ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect()
}

fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path))
}

#[test]
fn named_volumes_persist_and_read_only_refuses_writes() {
    let mut d = Daemon::start();
    assert_eq!(d.ok(&["volume", "create", "keep"]), "keep");
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo persisted > /data/f",
    ]);
    // Another container sees it; the file is in the volume's directory on the host.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "keep:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "persisted"
    );
    let mountpoint = d.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "keep"]);
    assert_eq!(
        PathBuf::from(&mountpoint),
        d.data_root.join("volumes/keep/_data")
    );
    assert_eq!(
        std::fs::read_to_string(PathBuf::from(&mountpoint).join("f")).unwrap(),
        "persisted\n"
    );
    // Nested destinations are mounted parents first, whatever order they are given in.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "inner:/n/sub",
        "-v",
        "outer:/n",
        "busybox",
        "sh",
        "-c",
        "echo in > /n/sub/f && echo out > /n/g",
    ]);
    let vols = d.data_root.join("volumes");
    assert_eq!(
        std::fs::read_to_string(vols.join("inner/_data/f")).unwrap(),
        "in\n"
    );
    assert_eq!(
        std::fs::read_to_string(vols.join("outer/_data/g")).unwrap(),
        "out\n"
    );
    assert!(!vols.join("outer/_data/sub/f").exists());
    // A volume named in -v that does not exist is made.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "madeonrun:/x",
        "busybox",
        "touch",
        "/x/y",
    ]);
    assert!(volume_names(&d).contains(&"madeonrun".to_string()));

    // :ro refuses writes, and inspect shows the mount.
    let out = d.berth(&[
        "run",
        "--name",
        "reader",
        "-v",
        "keep:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; echo no > /data/g",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("persisted"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    let m: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", "reader"])).unwrap();
    assert_eq!(m[0]["Type"], "volume");
    assert_eq!(m[0]["Name"], "keep");
    assert_eq!(m[0]["Destination"], "/data");
    assert_eq!(m[0]["Driver"], "local");
    assert_eq!(m[0]["RW"], false);
    assert_eq!(m[0]["Source"], mountpoint.as_str());
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .HostConfig.Binds}}", "reader"]),
        r#"["keep:/data:ro"]"#
    );
    d.ok(&["rm", "reader"]);

    // The volume, its content and its record survive a daemon restart.
    d.crash();
    d.spawn();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "keep:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "persisted"
    );
    let created = d.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.CreatedAt}} {{.Scope}} {{.Driver}}",
        "keep",
    ]);
    assert!(created.ends_with(" local local"), "{created}");
    // Containers keep their volumes referenced across the restart too.
    d.ok(&["create", "--name", "holder", "-v", "keep:/data", "busybox"]);
    d.crash();
    d.spawn();
    let out = d.berth(&["volume", "rm", "keep"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    d.ok(&["rm", "holder"]);
    assert_eq!(d.ok(&["volume", "rm", "keep"]), "keep");
    assert!(!d.data_root.join("volumes/keep").exists());
}

#[test]
fn anonymous_and_image_volumes_with_copy_up() {
    let d = Daemon::start();
    // An image with content under a VOLUME: ownership, modes and symlinks kept.
    d.ok(&[
        "run",
        "--name",
        "base",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo from-image > /data/sub/f && chown 123:45 /data/sub/f \
         && chmod 700 /data/sub && ln -s /etc/passwd /data/link && chmod 751 /data",
    ]);
    d.ok(&["commit", "-c", "VOLUME /data", "base", "withvol:1"]);
    d.ok(&["rm", "base"]);
    let before = volume_names(&d).len();
    let out = d.ok(&[
        "run",
        "--name",
        "a1",
        "withvol:1",
        "sh",
        "-c",
        "cat /data/sub/f; stat -c '%u:%g %a' /data/sub/f /data/sub /data; readlink /data/link",
    ]);
    assert_eq!(out, "from-image\n123:45 644\n0:0 700\n0:0 751\n/etc/passwd");
    let m: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", "a1"])).unwrap();
    let anon = m[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64, "{m}");
    assert_eq!(m[0]["Destination"], "/data");
    assert_eq!(m[0]["RW"], true);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .Config.Volumes}}", "a1"]),
        r#"{"/data":{}}"#
    );
    let labels = d.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon]);
    assert_eq!(labels, r#"{"com.docker.volume.anonymous":""}"#);
    assert_eq!(volume_names(&d).len(), before + 1);
    // rm -v removes the container's anonymous volume.
    d.ok(&["rm", "-v", "a1"]);
    assert!(!volume_names(&d).contains(&anon));
    assert!(!d.data_root.join("volumes").join(&anon).exists());

    // A new named volume over the image's directory is filled from it; one with content
    // is left alone; nocopy leaves it empty.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "filled:/data",
            "withvol:1",
            "cat",
            "/data/sub/f"
        ]),
        "from-image"
    );
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "other:/data",
        "busybox",
        "sh",
        "-c",
        "echo mine > /data/own",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "other:/data",
            "withvol:1",
            "ls",
            "/data"
        ]),
        "own"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "nc:/data:nocopy",
            "withvol:1",
            "ls",
            "-A",
            "/data"
        ]),
        ""
    );
    // Copy-up of a busybox directory into an anonymous volume from -v.
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "/etc", "busybox", "cat", "/etc/group"])
            .lines()
            .next()
            .unwrap(),
        "root:x:0:"
    );

    // -v /path makes an anonymous volume; plain rm keeps it, --rm and rm -v do not.
    d.ok(&[
        "run", "--name", "a2", "-v", "/anon", "busybox", "touch", "/anon/x",
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", "a2"])).unwrap();
    let kept = m[0]["Name"].as_str().unwrap().to_string();
    d.ok(&["rm", "a2"]);
    assert!(volume_names(&d).contains(&kept));
    let n = volume_names(&d).len();
    d.ok(&["run", "--rm", "-v", "/gone", "withvol:1", "true"]);
    assert_eq!(volume_names(&d).len(), n, "--rm left volumes behind");
    // rm -v keeps named volumes.
    d.ok(&["run", "--name", "a3", "-v", "named3:/n", "busybox", "true"]);
    d.ok(&["rm", "-v", "a3"]);
    assert!(volume_names(&d).contains(&"named3".to_string()));

    // prune removes unused anonymous volumes only; prune -a every unused one.
    d.ok(&["create", "--name", "user", "-v", "filled:/data", "busybox"]);
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
    assert!(out.contains(&kept), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    let left = volume_names(&d);
    assert!(!left.contains(&kept));
    assert!(left.contains(&"named3".to_string()));
    let out = d.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("named3") && out.contains("nc"), "{out}");
    assert_eq!(volume_names(&d), vec!["filled".to_string()]);
    d.ok(&["rm", "user"]);
}

#[test]
fn mount_flag_volumes_from_and_bad_input() {
    let d = Daemon::start();
    let host = HostDir::new("mount");
    std::fs::write(host.0.join("hostfile"), "on-host\n").unwrap();
    // --mount of each type.
    let bind = format!("type=bind,src={},dst=/b", host.path());
    let out = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=mv,dst=/m",
        "--mount",
        &bind,
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "echo v > /m/f && cat /b/hostfile && echo made > /b/new && grep ' /t ' /proc/mounts",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("on-host"));
    let t = lines.next().unwrap_or_default();
    assert!(
        t.starts_with("tmpfs /t tmpfs") && t.contains("size=1024k"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(host.0.join("new")).unwrap(),
        "made\n"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--mount",
            "src=mv,dst=/m,readonly",
            "busybox",
            "cat",
            "/m/f"
        ]),
        "v"
    );
    let ro_bind = format!("{bind},readonly");
    let out = d.berth(&[
        "run", "--rm", "--mount", &ro_bind, "busybox", "touch", "/b/x",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );

    // --volumes-from copies volumes and binds, :ro makes them read-only.
    let hv = format!("{}:/hostdir", host.path());
    d.ok(&[
        "create",
        "--name",
        "vsrc",
        "-v",
        "shared:/shared",
        "-v",
        &hv,
        "-v",
        "/anon",
        "busybox",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "vsrc",
            "busybox",
            "sh",
            "-c",
            "echo from-peer > /shared/p && touch /anon/a && cat /hostdir/hostfile"
        ]),
        "on-host"
    );
    let out = d.berth(&[
        "run",
        "--rm",
        "--volumes-from",
        "vsrc:ro",
        "busybox",
        "sh",
        "-c",
        "cat /shared/p; ls /anon; touch /shared/q",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "from-peer\na\n");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    // The source's anonymous volume outlived the --rm container that shared it.
    d.ok(&["rm", "-v", "vsrc"]);

    // Bad input gets Docker's messages.
    let out = d.berth(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/nonexistent/berth-vol,dst=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent/berth-vol"
        ),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/tmp",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(
            "invalid argument \"type=bind,src=/tmp\" for \"--mount\" flag: target is required"
        ),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/x,volume-nocopy",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("cannot mix 'volume-*' options with mount type 'tmpfs'"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["volume", "create", "bad/name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "create bad/name: \"bad/name\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["run", "--rm", "-v", "rel/dir:/x", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("create rel/dir: \"rel/dir\" includes invalid characters"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&[
        "run", "--rm", "-v", "v1:/x", "-v", "v2:/x", "busybox", "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Duplicate mount point: /x"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["run", "--rm", "-v", "v1:/x:bogus", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("invalid mode: bogus"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["volume", "create", "-o", "type=tmpfs", "half"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("create half: missing required option: \"device\""),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["volume", "create", "-d", "nfsplugin", "plug"]);
    assert_eq!(out.status.code(), Some(1));
    // Failed creates leave no volumes behind.
    let names = volume_names(&d);
    for v in ["v1", "v2", "half", "plug"] {
        assert!(!names.contains(&v.to_string()), "{names:?}");
    }
}

#[test]
fn volume_rm_in_use_ls_filters_and_api() {
    let d = Daemon::start();
    d.ok(&[
        "volume", "create", "--label", "tier=db", "--label", "flag", "vol-a",
    ]);
    d.ok(&["volume", "create", "--name", "vol-b"]);
    let id = d.ok(&["create", "--name", "user", "-v", "vol-a:/x", "busybox"]);
    // In use by a stopped container: 409 and Docker's message, exit 1.
    let out = d.berth(&["volume", "rm", "vol-a"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!("Error response from daemon: remove vol-a: volume is in use - [{id}]")
    );
    let out = d.berth(&["volume", "rm", "-f", "vol-a"]);
    assert_eq!(out.status.code(), Some(1));
    let (code, body) = d.curl("DELETE", "/v1.50/volumes/vol-a", None);
    assert_eq!(code, 409, "{body}");
    let (code, body) = d.curl("DELETE", "/v1.50/volumes/nosuch", None);
    assert_eq!(
        (code, body.trim()),
        (404, r#"{"message":"get nosuch: no such volume"}"#)
    );
    let (code, _) = d.curl("DELETE", "/v1.50/volumes/nosuch?force=1", None);
    assert_eq!(code, 204);
    let (code, body) = d.curl("GET", "/v1.50/volumes/nosuch", None);
    assert_eq!(code, 404, "{body}");

    // ls: table, -q, --format and filters.
    let table = d.ok(&["volume", "ls"]);
    assert_eq!(
        table,
        "DRIVER    VOLUME NAME\nlocal     vol-a\nlocal     vol-b"
    );
    let ls = |f: &str| d.ok(&["volume", "ls", "-q", "--filter", f]);
    assert_eq!(ls("dangling=true"), "vol-b");
    assert_eq!(ls("dangling=false"), "vol-a");
    assert_eq!(ls("label=tier=db"), "vol-a");
    assert_eq!(ls("label=flag"), "vol-a");
    assert_eq!(ls("label=tier=web"), "");
    assert_eq!(ls("name=-b"), "vol-b");
    assert_eq!(ls("driver=local"), "vol-a\nvol-b");
    assert_eq!(
        d.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}}:{{.Driver}}:{{.Labels}}"
        ]),
        "vol-a:local:flag=,tier=db\nvol-b:local:"
    );
    let out = d.berth(&["volume", "ls", "--filter", "bogus=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid filter 'bogus'"),
        "{}",
        stderr(&out)
    );

    // The API's shapes.
    let (code, body) = d.curl("GET", "/v1.50/volumes", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Warnings"], serde_json::json!([]));
    assert_eq!(v["Volumes"].as_array().unwrap().len(), 2);
    let (code, body) = d.curl(
        "POST",
        "/v1.50/volumes/create",
        Some(r#"{"Labels":{"k":"v"}}"#),
    );
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let random = v["Name"].as_str().unwrap().to_string();
    assert_eq!(random.len(), 64);
    assert!(random.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["k"], "v");
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");

    // prune with label filters; named volumes need all=true.
    let (code, body) = d.curl(
        "POST",
        "/v1.50/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%2C%22label%22%3A%5B%22k%3Dv%22%5D%7D",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["VolumesDeleted"], serde_json::json!([random]));
    let out = d.ok(&["volume", "prune", "-f", "--filter", "label!=tier"]);
    assert_eq!(out, "Total reclaimed space: 0B");
    let out = d.ok(&["volume", "prune", "-af", "--filter", "label!=tier"]);
    assert!(out.contains("vol-b"), "{out}");
    assert_eq!(volume_names(&d), vec!["vol-a".to_string()]);
    // Clients before API 1.42 prune every unused volume, as with Docker.
    d.ok(&["volume", "create", "old-api"]);
    let (code, body) = d.curl("POST", "/v1.41/volumes/prune", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"old-api\""), "{body}");
    assert_eq!(volume_names(&d), vec!["vol-a".to_string()]);
    d.ok(&["rm", "user"]);
    let out = d.berth(&["volume", "rm", "vol-a", "nosuch-x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "vol-a\n");
    assert_eq!(
        stderr(&out).trim(),
        "Error response from daemon: get nosuch-x: no such volume"
    );
}

#[test]
fn local_volumes_with_driver_options() {
    let mut d = Daemon::start();
    d.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=10m,mode=0750",
        "tv",
    ]);
    assert_eq!(
        d.ok(&["volume", "inspect", "-f", "{{json .Options}}", "tv"]),
        r#"{"device":"tmpfs","o":"size=10m,mode=0750","type":"tmpfs"}"#
    );
    let data = d.data_root.join("volumes/tv/_data");
    let data_s = data.to_str().unwrap().to_string();
    assert!(!is_mounted(&data_s));
    // Mounted while running containers use it, shared between them.
    d.ok(&[
        "run", "-d", "--name", "t1", "-v", "tv:/data", "busybox", "sleep", "60",
    ]);
    assert!(is_mounted(&data_s));
    d.ok(&[
        "run", "-d", "--name", "t2", "-v", "tv:/data", "busybox", "sleep", "60",
    ]);
    d.ok(&["exec", "t1", "sh", "-c", "echo shared > /data/f"]);
    assert_eq!(d.ok(&["exec", "t2", "cat", "/data/f"]), "shared");
    let df = d.ok(&["exec", "t2", "df", "-k", "/data"]);
    assert!(df.contains(" 10240 "), "{df}");
    d.ok(&["stop", "-t", "0", "t1"]);
    assert!(is_mounted(&data_s), "unmounted while t2 still runs");
    d.ok(&["stop", "-t", "0", "t2"]);
    assert!(
        !is_mounted(&data_s),
        "still mounted with no container running"
    );
    // A tmpfs volume's content goes with its mount, as with Docker.
    d.ok(&["start", "t1"]);
    assert_eq!(d.ok(&["exec", "t1", "ls", "-A", "/data"]), "");
    // Across a daemon crash the running container keeps the volume mounted; its stop
    // unmounts it.
    d.crash();
    d.spawn();
    assert!(is_mounted(&data_s));
    assert_eq!(d.ok(&["exec", "t1", "ls", "-A", "/data"]), "");
    d.ok(&["stop", "-t", "0", "t1"]);
    assert!(!is_mounted(&data_s));
    d.ok(&["rm", "-f", "t1", "t2"]);
    assert!(!is_mounted(&data_s));

    // type=none,o=bind: a host directory behind a volume name.
    let host = HostDir::new("bindvol");
    let dev = format!("device={}", host.path());
    d.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "bv",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "bv:/b",
        "busybox",
        "sh",
        "-c",
        "echo through > /b/f",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.0.join("f")).unwrap(),
        "through\n"
    );
    assert!(!is_mounted(
        d.data_root.join("volumes/bv/_data").to_str().unwrap()
    ));
    d.ok(&["volume", "rm", "bv", "tv"]);
    // Removing the volume leaves the host directory's content alone.
    assert!(host.0.join("f").exists());
}

#[test]
fn docker_cli_volume_flows() {
    let d = Daemon::start();
    let run = |args: &[&str]| {
        let out = d.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}\n{}",
            stderr(&out),
            d.daemon_log()
        );
        stdout(&out).trim().to_string()
    };
    assert_eq!(
        run(&["volume", "create", "--label", "via=docker", "dv"]),
        "dv"
    );
    run(&[
        "run",
        "--rm",
        "-v",
        "dv:/d",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /d/f",
    ]);
    assert_eq!(
        run(&["run", "--rm", "-v", "dv:/d:ro", "busybox", "cat", "/d/f"]),
        "1"
    );
    assert_eq!(
        run(&[
            "run",
            "--rm",
            "--mount",
            "source=dv,target=/m,readonly",
            "busybox",
            "cat",
            "/m/f"
        ]),
        "1"
    );
    let ls = run(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER    VOLUME NAME"), "{ls}");
    assert!(ls.contains("local     dv"), "{ls}");
    assert_eq!(
        run(&["volume", "ls", "-q", "--filter", "label=via=docker"]),
        "dv"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&run(&["volume", "inspect", "dv"])).unwrap();
    assert_eq!(inspect[0]["Name"], "dv");
    assert_eq!(inspect[0]["Labels"]["via"], "docker");
    let id = run(&[
        "create", "--name", "dc", "-v", "dv:/d", "-v", "/anon", "busybox",
    ]);
    let out = d.docker(&["volume", "rm", "dv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("remove dv: volume is in use - [{id}]")),
        "{}",
        stderr(&out)
    );
    let mounts = run(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}",
        "dc",
    ]);
    assert_eq!(mounts, "volume:/anon volume:/d");
    run(&["rm", "-v", "dc"]);
    assert_eq!(run(&["volume", "ls", "-q"]), "dv");
    let pruned = run(&["volume", "prune", "-a", "-f"]);
    assert!(pruned.contains("dv"), "{pruned}");
    assert_eq!(run(&["volume", "ls", "-q"]), "");
}

#[test]
fn anonymous_volumes_are_labelled_from_api_1_42() {
    let d = Daemon::start();
    let (code, body) = d.curl("POST", "/v1.43/volumes/create", Some("{}"));
    assert_eq!(code, 201, "{body}");
    let anon: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(anon["Labels"]["com.docker.volume.anonymous"], "");
    let (code, body) = d.curl("POST", "/v1.41/volumes/create", Some("{}"));
    assert_eq!(code, 201, "{body}");
    let old: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        old["Labels"].get("com.docker.volume.anonymous").is_none(),
        "{body}"
    );
    // The default prune removes only the anonymous one.
    let (code, body) = d.curl("POST", "/v1.43/volumes/prune", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(anon["Name"].as_str().unwrap()), "{body}");
    assert!(!body.contains(old["Name"].as_str().unwrap()), "{body}");
    d.ok(&["volume", "rm", old["Name"].as_str().unwrap()]);
}
