//! Container settings dockerd carries out: shared and host namespaces (--pid, --uts, --ipc,
//! --cgroupns), --group-add, --device and --device-cgroup-rule, block IO device limits and
//! realtime CPU time in the cgroups, the runtime name, link removal, the none and local log
//! drivers, and dockerd's refusals of what Linux does not do.

mod common;
use common::{stderr, stdout, Daemon};
use serde_json::Value;
use std::path::PathBuf;

fn inspect(d: &Daemon, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).expect("inspect JSON");
    v[0].clone()
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// A failing `berth` call's stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.berth(args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    stderr(&out)
}

#[test]
fn namespace_modes() {
    let d = Daemon::start();
    // --pid host: the host's pid namespace, the daemon's process visible.
    let out = d.ok(&[
        "run",
        "--rm",
        "--pid",
        "host",
        "busybox",
        "sh",
        "-c",
        &format!(
            "readlink /proc/self/ns/pid; test -d /proc/{} && echo seen",
            d.pid()
        ),
    ]);
    assert_eq!(out, format!("{}\nseen", host_ns("pid")));
    // --pid container:<name>: the other container's processes.
    let a = d.ok(&[
        "run",
        "-d",
        "--name",
        "aa",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "60",
    ]);
    let a_ns = |kind: &str| d.ok(&["exec", "aa", "readlink", &format!("/proc/self/ns/{kind}")]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--pid",
        "container:aa",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; ps -o args | grep -c '^sleep 60'",
    ]);
    assert_eq!(out, format!("{}\n1", a_ns("pid")));
    // --ipc container:<shareable>: its IPC namespace and its /dev/shm.
    d.ok(&["exec", "aa", "sh", "-c", "echo shared > /dev/shm/x"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--ipc",
        "container:aa",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/ipc; cat /dev/shm/x; echo back > /dev/shm/y",
    ]);
    assert_eq!(out, format!("{}\nshared", a_ns("ipc")));
    assert_eq!(d.ok(&["exec", "aa", "cat", "/dev/shm/y"]), "back");
    // A private one is not shareable.
    d.ok(&["run", "-d", "--name", "pp", "busybox", "sleep", "60"]);
    let err = fails(
        &d,
        &["run", "--rm", "--ipc", "container:pp", "busybox", "true"],
    );
    assert!(err.contains("non-shareable IPC"), "{err}");
    // --ipc host and none.
    let out = d.ok(&[
        "run",
        "--rm",
        "--ipc",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/ipc",
    ]);
    assert_eq!(out, host_ns("ipc"));
    let out = d.ok(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "busybox",
        "sh",
        "-c",
        "grep -c ' /dev/shm ' /proc/mounts || true",
    ]);
    assert_eq!(out, "0");
    // --uts host: the host's name; a hostname of its own conflicts.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let out = d.ok(&[
        "run",
        "--rm",
        "--uts",
        "host",
        "busybox",
        "sh",
        "-c",
        "hostname; readlink /proc/self/ns/uts",
    ]);
    assert_eq!(out, format!("{host}\n{}", host_ns("uts")));
    let err = fails(
        &d,
        &["run", "--rm", "--uts", "host", "-h", "x", "busybox", "true"],
    );
    assert!(
        err.contains("conflicting options: hostname and the UTS mode"),
        "{err}"
    );
    // --cgroupns: dockerd's default on a v1 host is the host's; private gets its own.
    let out = d.ok(&["run", "--rm", "busybox", "readlink", "/proc/self/ns/cgroup"]);
    assert_eq!(out, host_ns("cgroup"));
    let out = d.ok(&[
        "run",
        "--rm",
        "--cgroupns",
        "private",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/cgroup; grep -c ':/$' /proc/self/cgroup",
    ]);
    assert_ne!(
        out.lines().next(),
        Some(host_ns("cgroup").as_str()),
        "{out}"
    );
    assert_ne!(out.lines().nth(1), Some("0"), "{out}");
    let hc = &inspect(&d, "aa")["HostConfig"];
    assert_eq!(hc["IpcMode"], "shareable");
    assert_eq!(hc["CgroupnsMode"], "host");
    assert_eq!(hc["PidMode"], "");
    assert_eq!(inspect(&d, "pp")["HostConfig"]["IpcMode"], "private");
    // A container named in a mode is recorded by its id.
    d.ok(&[
        "create",
        "--name",
        "joiner",
        "--pid",
        "container:aa",
        "busybox",
    ]);
    assert_eq!(
        inspect(&d, "joiner")["HostConfig"]["PidMode"],
        format!("container:{a}")
    );
    d.ok(&["rm", "joiner"]);
    for (flag, value, msg) in [
        ("--pid", "bogus", "invalid PID mode: bogus"),
        ("--ipc", "bogus", "invalid IPC mode: bogus"),
        ("--uts", "bogus", "invalid UTS mode: bogus"),
        (
            "--cgroupns",
            "bogus",
            "invalid cgroup namespace mode: bogus",
        ),
    ] {
        let err = fails(&d, &["create", flag, value, "busybox"]);
        assert!(err.contains(msg), "{flag}: {err}");
    }
    d.ok(&["rm", "-f", &a, "pp"]);
}

#[test]
fn groups_devices_and_cgroup_limits() {
    let d = Daemon::start();
    let out = d.ok(&[
        "run",
        "--rm",
        "--group-add",
        "www-data",
        "--group-add",
        "4242",
        "busybox",
        "id",
        "-G",
    ]);
    let gids: Vec<&str> = out.split_whitespace().collect();
    assert!(gids.contains(&"33") && gids.contains(&"4242"), "{out}");
    let id = d.ok(&["run", "-d", "--group-add", "4242", "busybox", "sleep", "60"]);
    assert!(d
        .ok(&["exec", &id, "id", "-G"])
        .split_whitespace()
        .any(|g| g == "4242"));
    d.ok(&["rm", "-f", &id]);
    let err = fails(
        &d,
        &["run", "--rm", "--group-add", "ghost", "busybox", "true"],
    );
    assert!(err.contains("Unable to find group ghost"), "{err}");
    // --device: the node exists and opens; without it, it does not exist.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/fuse",
        "busybox",
        "sh",
        "-c",
        "ls -l /dev/fuse | cut -c1; exec 3<>/dev/fuse && echo opened",
    ]);
    assert_eq!(out, "c\nopened");
    let out = d.berth(&["run", "--rm", "busybox", "test", "-e", "/dev/fuse"]);
    assert_eq!(out.status.code(), Some(1));
    // Read-only under another name: the device cgroup refuses writing.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/fuse:/dev/f2:r",
        "busybox",
        "sh",
        "-c",
        "(exec 3</dev/f2) && echo read; (exec 3<>/dev/f2) 2>/dev/null || echo no-write",
    ]);
    assert_eq!(out, "read\nno-write");
    // --device-cgroup-rule: a node made in the container may be used.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        "c 10:229 rwm",
        "busybox",
        "sh",
        "-c",
        "mknod /dev/f c 10 229 && exec 3<>/dev/f && echo opened",
    ]);
    assert_eq!(out, "opened");
    let out = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "mknod /dev/f c 10 229 && exec 3<>/dev/f",
    ]);
    assert!(!out.status.success());
    let err = fails(
        &d,
        &["create", "--device-cgroup-rule", "c 10:x rwm", "busybox"],
    );
    assert!(err.contains("invalid device cgroup format"), "{err}");
    // Block IO device limits and realtime CPU time reach the cgroups.
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata("/dev/vda").unwrap().rdev();
    let dev = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let id = d.ok(&[
        "run",
        "-d",
        "--device-read-bps",
        "/dev/vda:1mb",
        "--device-write-iops",
        "/dev/vda:77",
        "--cpu-rt-period",
        "1000000",
        "--cpu-rt-runtime",
        "1000",
        "--oom-score-adj",
        "321",
        "busybox",
        "sleep",
        "60",
    ]);
    let cg = |ctrl: &str, file: &str| {
        let p = PathBuf::from("/sys/fs/cgroup")
            .join(ctrl)
            .join(&d.cgroup_parent)
            .join(&id)
            .join(file);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    assert_eq!(
        cg("blkio", "blkio.throttle.read_bps_device"),
        format!("{dev} 1048576")
    );
    assert_eq!(
        cg("blkio", "blkio.throttle.write_iops_device"),
        format!("{dev} 77")
    );
    assert_eq!(cg("cpu", "cpu.rt_runtime_us"), "1000");
    // `update` changes it live.
    d.ok(&["update", "--cpu-rt-runtime", "1500", &id]);
    assert_eq!(cg("cpu", "cpu.rt_runtime_us"), "1500");
    // A second one beside it: the parent's budget grows to hold both.
    let id2 = d.ok(&[
        "run",
        "-d",
        "--cpu-rt-runtime",
        "2000",
        "busybox",
        "sleep",
        "60",
    ]);
    let parent = PathBuf::from("/sys/fs/cgroup/cpu").join(&d.cgroup_parent);
    let budget: i64 = std::fs::read_to_string(parent.join("cpu.rt_runtime_us"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(budget >= 3000, "{budget}");
    d.ok(&["rm", "-f", &id2]);
    // --cgroup-parent: the container's cgroup under it, and nothing left after removal.
    let own = format!("{}-own", d.cgroup_parent);
    let id3 = d.ok(&[
        "run",
        "-d",
        "--cgroup-parent",
        &own,
        "busybox",
        "sleep",
        "60",
    ]);
    let pids = PathBuf::from("/sys/fs/cgroup/pids").join(&own);
    assert!(pids.join(&id3).join("cgroup.procs").exists());
    assert_eq!(
        inspect(&d, &id3)["HostConfig"]["CgroupParent"],
        own.as_str()
    );
    d.ok(&["rm", "-f", &id3]);
    assert!(!pids.exists(), "{} left behind", pids.display());
    assert_eq!(d.ok(&["exec", &id, "cat", "/proc/1/oom_score_adj"]), "321");
    let hc = &inspect(&d, &id)["HostConfig"];
    assert_eq!(hc["BlkioDeviceReadBps"][0]["Rate"], 1 << 20);
    assert_eq!(hc["CpuRealtimeRuntime"], 1500);
    assert_eq!(hc["Runtime"], "runc");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn runtime_and_refusals() {
    let d = Daemon::start();
    for rt in ["runc", "berth"] {
        d.ok(&["create", "--name", rt, "--runtime", rt, "busybox"]);
        assert_eq!(inspect(&d, rt)["HostConfig"]["Runtime"], rt);
    }
    for (args, msg) in [
        (
            &["--runtime", "nvidia"][..],
            "unknown or invalid runtime name: nvidia",
        ),
        (
            &["--gpus", "all"][..],
            "could not select device driver \"\" with capabilities: [[gpu]]",
        ),
        (
            &["--storage-opt", "size=1G"][..],
            "--storage-opt is supported only for overlay over xfs",
        ),
        (
            &["--isolation", "hyperv"][..],
            "linux only supports 'default'",
        ),
        (
            &["--io-maxiops", "10"][..],
            "does not support Maximum IO Bandwidth or Maximum IO IOps",
        ),
        (
            &["--volume-driver", "nfsplug"][..],
            "error looking up volume plugin nfsplug",
        ),
        (
            &["--log-driver", "bogus"][..],
            "logger: no log driver named 'bogus' is registered",
        ),
        (
            &["--log-driver", "local", "--log-opt", "max-file=1"][..],
            "compression cannot be enabled when max file count is 1",
        ),
        (
            &["--log-opt", "colour=blue"][..],
            "unknown log opt 'colour' for json-file log driver",
        ),
        (
            &["--log-driver", "local", "--log-opt", "colour=blue"][..],
            "unknown log opt 'colour' for log driver local",
        ),
        (
            &["--device", "/dev/nonexistent"][..],
            "error gathering device information while adding custom device",
        ),
    ] {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        all.push("busybox");
        let err = fails(&d, &all);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // Windows-only CPU settings: discarded with dockerd's warning, not silently.
    let out = d.berth(&["create", "--name", "winw", "--cpu-percent", "10", "busybox"]);
    assert!(
        stderr(&out).contains("linux does not support CPU percent. Percent discarded."),
        "{}",
        stderr(&out)
    );
    // A driver dockerd knows but berth does not carry: created, and the start fails as
    // dockerd's does when a driver cannot initialize.
    d.ok(&[
        "create",
        "--name",
        "sys",
        "--log-driver",
        "syslog",
        "busybox",
        "true",
    ]);
    let err = fails(&d, &["start", "sys"]);
    assert!(
        err.contains("failed to create task for container: failed to initialize logging driver"),
        "{err}"
    );
    d.ok(&["rm", "runc", "berth", "winw", "sys"]);
    // Annotations go to the OCI spec.
    let id = d.ok(&[
        "run",
        "-d",
        "--annotation",
        "org.example/x=1",
        "busybox",
        "sleep",
        "60",
    ]);
    let spec: Value = serde_json::from_slice(
        &std::fs::read(d.exec_root.join("c").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec["annotations"]["org.example/x"], "1");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn link_removal() {
    let d = Daemon::start();
    d.ok(&["run", "-d", "--name", "db", "busybox", "sleep", "60"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--link",
        "db:dbalias",
        "--link",
        "db:other",
        "busybox",
        "sleep",
        "60",
    ]);
    d.ok(&["rm", "--link", "web/dbalias"]);
    assert_eq!(
        inspect(&d, "web")["HostConfig"]["Links"],
        serde_json::json!(["db:other"])
    );
    // The docker CLI's form of the request.
    let out = d.docker(&["rm", "--link", "/web/other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let links = &inspect(&d, "web")["HostConfig"]["Links"];
    assert!(
        links.is_null() || links == &serde_json::json!([]),
        "{links}"
    );
    let err = fails(&d, &["rm", "--link", "web/dbalias"]);
    assert!(err.contains("No such container: web/dbalias"), "{err}");
    // Both containers are still there.
    d.ok(&["rm", "-f", "web", "db"]);
}

#[test]
fn log_drivers_none_and_local() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "hi",
    ]);
    let err = fails(&d, &["logs", "quiet"]);
    assert!(
        err.contains("configured logging driver does not support reading"),
        "{err}"
    );
    assert_eq!(inspect(&d, "quiet")["LogPath"], "");
    let (code, body) = d.curl("POST", "/containers/quiet/attach?logs=1&stdout=1", None);
    assert_eq!(code, 501, "{body}");
    // Nothing is kept, yet an attached client sees the output.
    let out = d.ok(&[
        "run",
        "--rm",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "live",
    ]);
    assert_eq!(out, "live");
    // local, rotated at 1 KiB over 3 files (two compressed).
    d.ok(&[
        "run",
        "--name",
        "loc",
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 300); do echo line $i; done; echo oops >&2",
    ]);
    let id = inspect(&d, "loc")["Id"].as_str().unwrap().to_string();
    let dir = d.data_root.join("containers").join(&id).join("local-logs");
    assert!(dir.join("container.log").exists());
    assert!(dir.join("container.log.1.gz").exists());
    assert!(dir.join("container.log.2.gz").exists());
    assert!(!dir.join("container.log.3.gz").exists());
    let out = d.berth(&["logs", "loc"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"line 300"));
    // What is kept is an unbroken run of the last lines.
    let first: usize = lines[0].strip_prefix("line ").unwrap().parse().unwrap();
    assert!(first > 1, "nothing was rotated away");
    let want: Vec<String> = (first..=300).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(stderr(&out).trim(), "oops");
    assert_eq!(d.ok(&["logs", "--tail", "3", "loc"]), "line 299\nline 300");
    let out = d.docker(&["logs", "--tail", "3", "loc"]);
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("line 299\nline 300\n", "oops\n")
    );
    let ts = d.ok(&["logs", "-t", "--tail", "2", "loc"]);
    assert!(ts.ends_with("Z line 300"), "{ts}");
    assert_eq!(
        d.ok(&["logs", "--since", "2100-01-01T00:00:00Z", "loc"]),
        ""
    );
    // json-file compresses its rotated files on request, and reads them back.
    d.ok(&[
        "run",
        "--name",
        "jz",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 300); do echo line $i; done",
    ]);
    let jid = inspect(&d, "jz")["Id"].as_str().unwrap().to_string();
    let jdir = d.data_root.join("containers").join(&jid);
    assert!(jdir.join(format!("{jid}-json.log.1.gz")).exists());
    assert!(!jdir.join(format!("{jid}-json.log.1")).exists());
    let text = d.ok(&["logs", "jz"]);
    let first: usize = text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("line ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(first > 1);
    let want: Vec<String> = (first..=300).map(|i| format!("line {i}")).collect();
    assert_eq!(text, want.join("\n"));
    d.ok(&["rm", "jz"]);
    // Following a running container to its end.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ff",
        "--log-driver",
        "local",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 1; echo two",
    ]);
    assert_eq!(d.ok(&["logs", "-f", "ff"]), "one\ntwo");
    assert!(inspect(&d, "ff")["LogPath"] == "");
    d.ok(&["rm", "quiet", "loc", "ff"]);
}

#[test]
fn shared_namespaces_under_userns_remap() {
    let d = Daemon::start_with(&["--userns-remap", "default"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "60",
    ]);
    d.ok(&["exec", "donor", "sh", "-c", "echo shared > /dev/shm/x"]);
    let ns = |kind: &str| {
        d.ok(&[
            "exec",
            "donor",
            "readlink",
            &format!("/proc/self/ns/{kind}"),
        ])
    };
    let out = d.ok(&[
        "run",
        "--rm",
        "--ipc",
        "container:donor",
        "--pid",
        "container:donor",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid; cat /dev/shm/x",
    ]);
    assert_eq!(out, format!("{}\n{}\nshared", ns("ipc"), ns("pid")));
    let err = fails(&d, &["run", "--rm", "--pid", "host", "busybox", "true"]);
    assert!(
        err.contains("cannot share the host PID namespace when user namespaces are enabled"),
        "{err}"
    );
    // The host's IPC and UTS namespaces may be shared, as with dockerd.
    let out = d.ok(&["run", "--rm", "--ipc", "host", "--uts", "host", "busybox", "sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; ls /dev/shm >/dev/null && echo shm"]);
    assert_eq!(out, format!("{}\n{}\nshm", host_ns("ipc"), host_ns("uts")));
    d.ok(&["rm", "-f", "donor"]);
}

#[test]
fn through_the_docker_cli() {
    let d = Daemon::start();
    let docker = |args: &[&str]| {
        let out = d.docker(args);
        (out.status.success(), stdout(&out), stderr(&out))
    };
    let (ok, out, err) = docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/fuse",
        "--group-add",
        "4242",
        "--pid",
        "host",
        "busybox",
        "sh",
        "-c",
        "test -c /dev/fuse && id -G",
    ]);
    assert!(ok, "{err}");
    assert!(out.split_whitespace().any(|g| g == "4242"), "{out}");
    let (ok, _, err) = docker(&["run", "--rm", "--gpus", "all", "busybox", "true"]);
    assert!(
        !ok && err.contains("could not select device driver"),
        "{err}"
    );
    let (ok, out, err) = docker(&[
        "run",
        "--name",
        "dl",
        "--log-driver",
        "local",
        "busybox",
        "sh",
        "-c",
        "echo a; echo b >&2",
    ]);
    assert!(ok, "{err}");
    assert_eq!((out.as_str(), err.as_str()), ("a\n", "b\n"));
    let (ok, out, err) = docker(&["logs", "dl"]);
    assert!(ok, "{err}");
    assert_eq!((out.as_str(), err.as_str()), ("a\n", "b\n"));
    let (_, out, _) = docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}} {{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}} {{.HostConfig.Runtime}}", "dl"]);
    assert_eq!(out.trim(), "local private host runc");
    let (ok, _, err) = docker(&[
        "run",
        "--rm",
        "--log-driver",
        "none",
        "--name",
        "dn",
        "busybox",
        "true",
    ]);
    assert!(ok, "{err}");
    d.ok(&["rm", "dl"]);
}
