//! cp (both directions), diff, export, commit and top through the berth CLI.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn cp_diff_export_commit_top() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-files-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "fs",
        "busybox",
        "sh",
        "-c",
        "echo data > /root/made; rm /etc/group; sleep 60",
    ]);
    common::eventually("file written", || {
        d.berth(&["exec", "fs", "test", "-f", "/root/made"])
            .status
            .success()
    });

    // cp out of a running container, to a new name and into a directory.
    d.ok(&["cp", "fs:/root/made", tmp.join("copy").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(tmp.join("copy")).unwrap(), "data\n");
    d.ok(&["cp", "fs:/etc", tmp.to_str().unwrap()]);
    assert!(tmp.join("etc/passwd").exists());
    // cp in.
    std::fs::write(tmp.join("in.txt"), "from host\n").unwrap();
    d.ok(&["cp", tmp.join("in.txt").to_str().unwrap(), "fs:/tmp/"]);
    assert_eq!(d.ok(&["exec", "fs", "cat", "/tmp/in.txt"]), "from host");
    d.ok(&[
        "cp",
        tmp.join("in.txt").to_str().unwrap(),
        "fs:/tmp/renamed.txt",
    ]);
    assert_eq!(
        d.ok(&["exec", "fs", "cat", "/tmp/renamed.txt"]),
        "from host"
    );
    let out = d.berth(&["cp", "fs:/nonexistent", tmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Could not find the file /nonexistent"),
        "{}",
        stderr(&out)
    );

    // diff shows the container's own changes only (not the mount points berth created).
    let diff = d.ok(&["diff", "fs"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert!(lines.contains(&"A /root/made"), "{diff}");
    assert!(lines.contains(&"D /etc/group"), "{diff}");
    assert!(lines.contains(&"A /tmp/in.txt"), "{diff}");
    assert!(
        !diff.contains("hosts") && !diff.contains("resolv.conf"),
        "{diff}"
    );

    // top lists the container's processes.
    let top = d.ok(&["top", "fs"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sleep 60"), "{top}");

    // commit makes an image with the changes.
    let img = d.ok(&[
        "commit",
        "-m",
        "snapshot",
        "-c",
        "ENV COMMITTED=yes",
        "fs",
        "snap:v1",
    ]);
    assert!(img.starts_with("sha256:"), "{img}");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "snap:v1",
            "sh",
            "-c",
            "cat /root/made; echo $COMMITTED; test -e /etc/group || echo nogroup"
        ]),
        "data\nyes\nnogroup"
    );
    let hist = d.ok(&["history", "--format", "{{.Comment}}", "snap:v1"]);
    assert_eq!(hist.lines().next(), Some("snapshot"));

    // export of a stopped container: the merged filesystem.
    d.ok(&["stop", "-t", "0", "fs"]);
    let tar = tmp.join("export.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "fs"]);
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = stdout(&listing);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "root/made"),
        "{listing}"
    );
    assert!(listing
        .lines()
        .any(|l| l.trim_start_matches("./") == "bin/busybox"));
    // cp from a stopped container mounts its filesystem just for the copy.
    d.ok(&["cp", "fs:/root/made", tmp.join("copy2").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(tmp.join("copy2")).unwrap(),
        "data\n"
    );
    d.ok(&["rm", &id]);
    d.ok(&["rmi", "snap:v1"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn cp_follow_link_copies_the_target() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "lk",
        "busybox",
        "sh",
        "-c",
        "ln -s /etc/hostname /link && sleep 300",
    ]);
    common::eventually("the link", || {
        d.berth(&["exec", "lk", "test", "-L", "/link"])
            .status
            .success()
    });
    let tmp = std::env::temp_dir().join(format!("berth-cpL-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    // Without -L the link itself comes out; with -L its target, under the link's name.
    d.ok(&["cp", "lk:/link", tmp.join("plain").to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(tmp.join("plain"))
        .unwrap()
        .file_type()
        .is_symlink());
    d.ok(&[
        "cp",
        "-L",
        "lk:/link",
        tmp.join("followed").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(tmp.join("followed"))
            .unwrap()
            .trim(),
        &id[..12]
    );
    d.ok(&["cp", "-L", "lk:/link", tmp.to_str().unwrap()]);
    assert!(std::fs::metadata(tmp.join("link")).unwrap().is_file());
    // Host to container: -L sends the file a local link points to.
    std::fs::write(tmp.join("real"), "payload\n").unwrap();
    std::os::unix::fs::symlink(tmp.join("real"), tmp.join("ln")).unwrap();
    d.ok(&["cp", "-L", tmp.join("ln").to_str().unwrap(), "lk:/copied"]);
    assert_eq!(d.ok(&["exec", "lk", "cat", "/copied"]), "payload");
    let o = d.berth(&["exec", "lk", "test", "-f", "/copied"]);
    assert!(
        o.status.success(),
        "{:?} {} {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    d.ok(&["cp", tmp.join("ln").to_str().unwrap(), "lk:/aslink"]);
    assert!(d
        .berth(&["exec", "lk", "test", "-L", "/aslink"])
        .status
        .success());
    let _ = std::fs::remove_dir_all(&tmp);
    d.ok(&["rm", "-f", "lk"]);
}

/// One request over the daemon's socket, the connection closed after it: the status and the
/// raw rest of the response (headers, then the body as sent).
fn http(d: &Daemon, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-tar\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        s.write_all(b).unwrap();
    }
    let mut out = Vec::new();
    // A response cut short still shows what came.
    let _ = s.read_to_end(&mut out);
    let code = std::str::from_utf8(out.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A second container sharing a volume swaps a directory of it with a symlink to `/`
/// (renameat2 RENAME_EXCHANGE in a loop) while `cp` reads and writes below that directory:
/// no try may read the host's file there or write into the host's directory.
#[test]
fn cp_never_reaches_the_host_through_a_swapped_directory() {
    let d = Daemon::start();
    let pid = std::process::id();
    let tag = format!("berth-race-{pid}");
    let host_dir = std::path::PathBuf::from("/tmp").join(&tag);
    let _ = std::fs::remove_dir_all(&host_dir);
    std::fs::create_dir_all(&host_dir).unwrap();
    let marker = format!("HOST-ONLY-{pid}");
    std::fs::write(host_dir.join("secret.txt"), &marker).unwrap();
    // The racer, static (busybox has no renameat2).
    let work = std::env::temp_dir().join(format!("berth-racer-{pid}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("racer.c"),
        "#define _GNU_SOURCE\n#include <fcntl.h>\n#include <sys/syscall.h>\n#include <unistd.h>\n\
         int main(void) { for (;;) syscall(SYS_renameat2, AT_FDCWD, \"/v/d\", AT_FDCWD, \"/v/sym\", 2); }\n",
    )
    .unwrap();
    let cc = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(work.join("racer"))
        .arg(work.join("racer.c"))
        .output()
        .unwrap();
    assert!(cc.status.success(), "gcc: {}", stderr(&cc));

    let vol = format!("racev{pid}");
    d.ok(&["volume", "create", &vol]);
    let mount = format!("{vol}:/v");
    d.ok(&[
        "run", "-d", "--name", "ra", "-v", &mount, "busybox", "sleep", "300",
    ]);
    d.ok(&[
        "exec",
        "ra",
        "sh",
        "-c",
        &format!(
            "mkdir -p /v/d/tmp/{tag} && echo inside > /v/d/tmp/{tag}/secret.txt && ln -s / /v/sym"
        ),
    ]);
    d.ok(&["create", "--name", "rb", "-v", &mount, "busybox", "/racer"]);
    d.ok(&["cp", work.join("racer").to_str().unwrap(), "rb:/racer"]);
    d.ok(&["start", "rb"]);

    let mut up = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    up.append_data(&mut h, "planted", &b"planted"[..]).unwrap();
    let up = up.into_inner().unwrap();

    let get = format!("/containers/ra/archive?path=/v/d/tmp/{tag}/secret.txt");
    let put = format!("/containers/ra/archive?path=/v/d/tmp/{tag}");
    let start = std::time::Instant::now();
    let (mut tries, mut inside, mut host_reads, mut puts_ok) = (0, 0, 0, 0);
    while tries < 8000 && start.elapsed() < std::time::Duration::from_secs(40) {
        tries += 1;
        let (code, body) = http(&d, "GET", &get, None);
        if contains(&body, marker.as_bytes()) {
            host_reads += 1;
        }
        if code == 200 && contains(&body, b"inside\n") {
            inside += 1;
        }
        if tries % 2 == 0 && http(&d, "PUT", &put, Some(&up)).0 == 200 {
            puts_ok += 1;
        }
    }
    let racing = d.ok(&["inspect", "-f", "{{.State.Running}}", "rb"]);
    let planted = host_dir.join("planted").exists();
    d.ok(&["rm", "-f", "ra", "rb"]);
    d.ok(&["volume", "rm", &vol]);
    let _ = std::fs::remove_dir_all(&host_dir);
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("{tries} tries: {inside} reads of the container's file, {puts_ok} uploads");
    assert_eq!(racing, "true", "the racer stopped");
    assert_eq!(
        host_reads, 0,
        "host file read in {host_reads} of {tries} tries"
    );
    assert!(!planted, "an upload was written into the host's {tag}");
    assert!(
        inside > 0,
        "the container's file was never read in {tries} tries"
    );
    assert!(puts_ok > 0, "no upload went through in {tries} tries");
}

/// Runs berth with `args`, killed (and reported as failed) if it takes longer than 30 s.
fn berth_bounded(d: &Daemon, args: &[&str]) -> bool {
    let mut child = std::process::Command::new(common::berth_bin())
        .arg("-H")
        .arg(d.host())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(30) {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// `cp` out of a running container while the client reads slowly: the container is not
/// frozen meanwhile (its freezer cgroup stays THAWED), and exec, stop and start work.
#[test]
fn a_slow_cp_reader_does_not_freeze_the_container() {
    use std::io::{Read, Write};
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "big",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1M count=64 2>/dev/null && touch /ready && sleep 300",
    ]);
    common::eventually("the big file", || {
        d.berth(&["exec", "big", "test", "-f", "/ready"])
            .status
            .success()
    });
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "big"]);
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let freezer = cgroups
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string()))
        .expect("a freezer cgroup");
    let state = format!("/sys/fs/cgroup/freezer{freezer}/freezer.state");

    // The download starts, then the client stops reading: the daemon is left waiting.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.write_all(b"GET /containers/big/archive?path=/big HTTP/1.1\r\nHost: berth\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 4096];
    s.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"), "{:?}", &first[..40]);

    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "THAWED");
    assert!(
        berth_bounded(&d, &["exec", "big", "true"]),
        "exec failed while cp was read"
    );
    assert!(
        berth_bounded(&d, &["stop", "-t", "1", "big"]),
        "stop failed while cp was read"
    );
    // The reader still holds the old root: the container starts again all the same.
    assert!(
        berth_bounded(&d, &["start", "big"]),
        "start failed while cp was read"
    );
    assert!(berth_bounded(&d, &["exec", "big", "test", "-f", "/big"]));
    drop(s);
    d.ok(&["rm", "-f", "big"]);
}

/// A NUL in the path is the client's error (400); a symlink into a /proc magic link
/// (`/proc/1/root`) is not followed, so what lies behind it is not found (404); procfs and
/// sysfs are neither copied from nor exported (their mount points come out empty).
#[test]
fn archive_bad_paths_and_pseudo_filesystems() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "bp",
        "busybox",
        "sh",
        "-c",
        "ln -s /proc/1/root/etc /lnk && sleep 300",
    ]);
    common::eventually("the link", || {
        d.berth(&["exec", "bp", "test", "-L", "/lnk"])
            .status
            .success()
    });
    for method in ["HEAD", "GET", "PUT"] {
        let (code, body) = http(
            &d,
            method,
            "/containers/bp/archive?path=/etc%00passwd",
            None,
        );
        assert_eq!(code, 400, "{method}: {}", String::from_utf8_lossy(&body));
        if method != "HEAD" {
            assert!(
                contains(&body, b"NUL"),
                "{method}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    for (method, path) in [
        ("HEAD", "/lnk/passwd"),
        ("GET", "/lnk/passwd"),
        ("PUT", "/lnk"),
    ] {
        let (code, body) = http(
            &d,
            method,
            &format!("/containers/bp/archive?path={path}"),
            (method == "PUT").then_some(&b""[..]),
        );
        assert_eq!(code, 404, "{method}: {}", String::from_utf8_lossy(&body));
    }
    let out = d.berth(&["cp", "bp:/lnk/passwd", "-"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Could not find the file /lnk/passwd"),
        "{}",
        stderr(&out)
    );
    let (code, _) = http(&d, "GET", "/containers/bp/archive?path=/proc/version", None);
    assert_eq!(code, 404);
    let tar = std::env::temp_dir().join(format!("berth-export-{}.tar", std::process::id()));
    d.ok(&["export", "-o", tar.to_str().unwrap(), "bp"]);
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&tar);
    let listing = stdout(&listing);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .collect();
    assert!(
        names.contains(&"proc/") && names.contains(&"sys/"),
        "{listing}"
    );
    assert!(
        names.contains(&"lnk") && names.contains(&"bin/busybox"),
        "{listing}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("proc/") && *n != "proc/"
                || n.starts_with("sys/") && *n != "sys/"),
        "{listing}"
    );
    d.ok(&["rm", "-f", "bp"]);
}

/// `docker cp` through the real docker CLI sees a container's volumes and bind mounts at
/// their mount points, before it ever ran, while it runs and once stopped, as with dockerd:
/// what it writes lands in the volume (another container sees it) or the host directory; a
/// read-only mount refuses the write; a symlink in a volume resolves inside the container.
#[test]
fn cp_sees_volumes_and_binds() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-cpvol-{}", std::process::id()));
    let host_dir = tmp.join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hostfile"), "from the host\n").unwrap();
    let src = tmp.join("payload.txt");
    std::fs::write(&src, "into the volume\n").unwrap();
    let src = src.to_str().unwrap();
    let docker_ok = |args: &[&str]| -> Vec<u8> {
        let out = d.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}\n{}",
            stderr(&out),
            d.daemon_log()
        );
        out.stdout
    };
    d.ok(&["volume", "create", "cpv"]);
    let ro = format!("{}:/hostro:ro", host_dir.display());
    let rw = format!("{}:/hostrw", host_dir.display());
    d.ok(&[
        "create",
        "--name",
        "cv",
        "-v",
        "cpv:/data",
        "-v",
        &ro,
        "-v",
        &rw,
        "busybox",
        "sleep",
        "1000",
    ]);
    let in_volume = |file: &str| {
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "cpv:/v",
            "busybox",
            "cat",
            &format!("/v/{file}"),
        ])
    };

    // Never started.
    docker_ok(&["cp", src, "cv:/data/created.txt"]);
    assert_eq!(in_volume("created.txt"), "into the volume");
    let tar = docker_ok(&["cp", "cv:/hostro/hostfile", "-"]);
    assert!(contains(&tar, b"from the host\n"));
    let refused = |dst: &str| {
        let out = d.docker(&["cp", src, dst]);
        assert!(!out.status.success(), "cp to {dst} was not refused");
        assert!(
            stderr(&out).contains("mounted volume is marked read-only"),
            "{}",
            stderr(&out)
        );
    };
    refused("cv:/hostro/x.txt");
    refused("cv:/hostro");
    assert!(!host_dir.join("x.txt").exists());
    assert!(!host_dir.join("payload.txt").exists());
    // Through the root, into the read-only mount below it: the mount itself is read-only.
    let evil = tmp.join("hostro");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(evil.join("evil.txt"), "no\n").unwrap();
    let through_root = || {
        let out = d.docker(&["cp", evil.to_str().unwrap(), "cv:/"]);
        assert!(
            !out.status.success(),
            "a write below a read-only mount went through"
        );
        assert!(!host_dir.join("evil.txt").exists());
    };
    through_root();
    docker_ok(&["cp", src, "cv:/hostrw/rw.txt"]);
    assert_eq!(
        std::fs::read_to_string(host_dir.join("rw.txt")).unwrap(),
        "into the volume\n"
    );
    // An absolute symlink in the volume resolves at the container's root, not the host's.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "cpv:/v",
        "busybox",
        "ln",
        "-s",
        "/etc",
        "/v/etc-link",
    ]);
    let tar = docker_ok(&["cp", "cv:/data/etc-link/passwd", "-"]);
    assert!(contains(&tar, b"root:x:0:0"));
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let tar = docker_ok(&["cp", "cv:/data/etc-link/hostname", "-"]);
    if !host_hostname.trim().is_empty() {
        assert!(!contains(&tar, host_hostname.trim().as_bytes()));
    }

    // Running.
    d.ok(&["start", "cv"]);
    docker_ok(&["cp", src, "cv:/data/running.txt"]);
    assert_eq!(
        d.ok(&["exec", "cv", "cat", "/data/running.txt"]),
        "into the volume"
    );
    let tar = docker_ok(&["cp", "cv:/hostrw/hostfile", "-"]);
    assert!(contains(&tar, b"from the host\n"));
    refused("cv:/hostro/x.txt");
    through_root();

    // Stopped after running.
    d.ok(&["stop", "-t", "0", "cv"]);
    let tar = docker_ok(&["cp", "cv:/data/running.txt", "-"]);
    assert!(contains(&tar, b"into the volume\n"));
    docker_ok(&["cp", src, "cv:/data/stopped.txt"]);
    assert_eq!(in_volume("stopped.txt"), "into the volume");
    // The volume's files went to the volume only, not into the container's own layer.
    let diff = d.ok(&["diff", "cv"]);
    assert!(
        !diff.contains("created.txt") && !diff.contains("stopped.txt"),
        "{diff}"
    );

    d.ok(&["rm", "-f", "cv"]);
    d.ok(&["volume", "rm", "cpv"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The mounts a stopped container's `cp` makes stay in its temporary root: a bind nested in
/// another bind whose source is on a shared mount (as `/` is under systemd) shows below it
/// there, never in the host's mount table, also while a slow reader holds the copy open; a
/// read-only bind stays read-only; and nothing is left afterwards.
#[test]
fn cp_mounts_of_a_stopped_container_stay_private() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-cpnest-{}", std::process::id()));
    let (outer, host_dir) = (tmp.join("outer"), tmp.join("host"));
    std::fs::create_dir_all(&outer).unwrap();
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hostfile"), "nested bind\n").unwrap();
    std::fs::write(outer.join("big"), vec![0u8; 16 << 20]).unwrap();
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    let o = outer.display().to_string();
    sh(&format!("mount --bind {o} {o} && mount --make-shared {o}"));
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .args(["-l", &self.0])
                .status();
        }
    }
    let _unmount = Unmount(o.clone());
    let (outer_bind, ro) = (
        format!("{o}:/data"),
        format!("{}:/data/nested:ro", host_dir.display()),
    );
    d.ok(&[
        "create",
        "--name",
        "nest",
        "-v",
        &outer_bind,
        "-v",
        &ro,
        "busybox",
        "true",
    ]);
    let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let under_root = |m: &str| {
        let root = d.exec_root.display().to_string();
        m.lines().filter(|l| l.contains(&root)).count()
    };
    let leaked = |m: &str| m.lines().any(|l| l.contains(&format!("{o}/nested ")));
    let before = under_root(&mounts());
    let out = d.berth(&["cp", "nest:/data/nested/hostfile", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(contains(&out.stdout, b"nested bind\n"));
    let refused = d.berth(&[
        "cp",
        host_dir.join("hostfile").to_str().unwrap(),
        "nest:/data/nested/x",
    ]);
    assert!(
        !refused.status.success(),
        "a write into a read-only bind went through"
    );
    assert!(!host_dir.join("x").exists());
    // A reader that does not read: the copy stays open with its mounts in place.
    let mut slow = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    std::io::Write::write_all(
        &mut slow,
        b"GET /containers/nest/archive?path=/data/big HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut seen_open = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let m = mounts();
        assert!(
            !leaked(&m),
            "the nested bind reached the host's mounts:\n{m}"
        );
        if under_root(&m) > before {
            seen_open = true;
            break;
        }
    }
    assert!(seen_open, "the copy's temporary root never showed up");
    drop(slow);
    common::eventually("the copy's mounts to go", || {
        under_root(&mounts()) == before
    });
    assert!(!leaked(&mounts()));
    d.ok(&["rm", "nest"]);
    drop(_unmount);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `docker export c | docker import - img` round-trips, running or stopped: the export has
/// the container's files and none of the runtime's (`/dev` nodes, `/proc`, volumes), and
/// import still refuses a layer with device nodes.
#[test]
fn export_import_round_trip() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-export-rt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "-v",
        "exv:/vol",
        "busybox",
        "sh",
        "-c",
        "echo kept > /marker; echo in-volume > /vol/f; sleep 1000",
    ]);
    common::eventually("the marker", || {
        d.berth(&["exec", "ex", "test", "-f", "/vol/f"])
            .status
            .success()
    });
    let pipe = |tag: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("docker export ex | docker import - {tag}"))
            .env("DOCKER_HOST", d.host())
            .output()
            .unwrap();
        assert!(out.status.success(), "export | import: {}", stderr(&out));
        assert_eq!(
            d.ok(&["run", "--rm", tag, "cat", "/marker"]),
            "kept",
            "{tag}"
        );
    };
    pipe("exported:running");
    let tar = tmp.join("ex.tar");
    let out = d.docker(&["export", "-o", tar.to_str().unwrap(), "ex"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = std::process::Command::new("tar")
        .arg("tvf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = stdout(&listing);
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with('c') || l.starts_with('b')),
        "{listing}"
    );
    assert!(!listing.contains("dev/null"), "{listing}");
    assert!(!listing.contains("vol/f"), "{listing}");
    assert!(listing.contains("marker"), "{listing}");
    d.ok(&["stop", "-t", "0", "ex"]);
    pipe("exported:stopped");

    // A tar with a device node is still refused by import.
    let dev_tar = tmp.join("dev.tar");
    let st = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, tarfile\n\
             t = tarfile.open(sys.argv[1], 'w')\n\
             i = tarfile.TarInfo('dev/full'); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 7\n\
             t.addfile(i); t.close()",
        )
        .arg(&dev_tar)
        .status()
        .unwrap();
    assert!(st.success());
    let out = d.docker(&["import", dev_tar.to_str().unwrap(), "withdev:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("device nodes"), "{}", stderr(&out));

    d.ok(&["rm", "-f", "ex"]);
    d.ok(&["volume", "rm", "exv"]);
    d.ok(&["rmi", "exported:running", "exported:stopped"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}
