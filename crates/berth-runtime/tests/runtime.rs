//! System tests of the runtime on the real kernel (root): a busybox bundle per test, unique ids
//! and cgroup paths, and a leak check (mounts, cgroups, processes) after each.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::{
    docker_seccomp_to_oci, Error, ExecErrorKind, Runtime, Stdio, STATUS_ANNOTATION,
};
use serde_json::{json, Value};

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "hostname", "sleep", "true", "false", "grep", "wc", "test",
    "ps", "tty", "mount", "head",
];

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A bundle in its own temp directory, with its own state root and cgroup path.
struct Bundle {
    dir: PathBuf,
    id: String,
    cgroup: String,
    config: Value,
    pids: Vec<i32>,
}

impl Bundle {
    fn new(name: &str, args: &[&str]) -> Bundle {
        let tag = format!("{}-{name}", std::process::id());
        let dir = std::env::temp_dir().join(format!("berth-rt-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        // Like any image: mount points for the standard mounts exist.
        for d in ["etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for a in BUSYBOX_APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/sh\n",
        )
        .unwrap();
        let code = berth_runtime::cli_main(vec![
            "berth-runtime".into(),
            "spec".into(),
            "--bundle".into(),
            dir.clone().into(),
        ]);
        assert_eq!(code, 0);
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["process"]["args"] = json!(args);
        let cgroup = format!("/berth-test-{tag}");
        config["linux"]["cgroupsPath"] = json!(cgroup);
        Bundle {
            dir,
            id: format!("t-{tag}"),
            cgroup,
            config,
            pids: Vec::new(),
        }
    }

    fn write(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    fn runtime(&self) -> Runtime {
        Runtime::new(self.dir.join("state"))
    }

    /// Create with pipes; returns (pid, stdout reader, stderr reader).
    fn create_piped(&mut self) -> (i32, std::io::PipeReader, std::io::PipeReader) {
        self.write();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let stdin: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let created = self
            .runtime()
            .create(
                &self.id,
                &self.dir,
                Stdio::Fds {
                    stdin,
                    stdout: out_w.into(),
                    stderr: err_w.into(),
                },
            )
            .unwrap_or_else(|e| panic!("create: {e}"));
        self.pids.push(created.pid);
        (created.pid, out_r, err_r)
    }

    /// Create, start, wait: (exit code, stdout, stderr). Deletes the container.
    fn run(&mut self) -> (i32, String, String) {
        let (pid, mut out, mut err) = self.create_piped();
        self.runtime()
            .start(&self.id)
            .unwrap_or_else(|e| panic!("start: {e}"));
        let mut o = String::new();
        let mut e = String::new();
        out.read_to_string(&mut o).unwrap();
        err.read_to_string(&mut e).unwrap();
        let code = wait(pid);
        self.runtime().delete(&self.id, false).unwrap();
        (code, o, e)
    }

    fn cgroup_file(&self, controller: &str, file: &str) -> String {
        let p = format!("/sys/fs/cgroup/{controller}{}/{file}", self.cgroup);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let rt = self.runtime();
        let _ = rt.delete(&self.id, true);
        for &pid in &self.pids {
            // SAFETY: reaping our own children, non-blocking.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        let leaks = leaks(&self.dir, &self.cgroup, &self.pids);
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert!(leaks.is_empty(), "leaks: {leaks:?}");
        }
    }
}

/// Mounts mentioning the bundle, cgroup directories, live processes.
fn leaks(dir: &Path, cgroup: &str, pids: &[i32]) -> Vec<String> {
    let mut out = Vec::new();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy();
    out.extend(
        mi.lines()
            .filter(|l| l.contains(d.as_ref()))
            .map(|l| format!("mount: {l}")),
    );
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = entry.path().join(cgroup.trim_start_matches('/'));
        if p.exists() {
            out.push(format!("cgroup: {}", p.display()));
        }
    }
    for pid in pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            out.push(format!("process: {pid}"));
        }
    }
    out
}

fn wait(pid: i32) -> i32 {
    // Never hang a test run: give the process 30 s, then kill it and fail.
    // SAFETY: raw pidfd_open syscall with integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd >= 0 {
        let mut pfd = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; closing the pidfd we opened.
        let ready = unsafe {
            let r = libc::poll(&mut pfd, 1, 30_000);
            libc::close(pidfd);
            r
        };
        if ready == 0 {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            panic!("process {pid} did not exit within 30 s");
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[test]
fn echo_hi_with_pipes() {
    require_root!();
    let mut b = Bundle::new("echo", &["echo", "hi"]);
    let (code, out, err) = b.run();
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hi\n", ""));
}

#[test]
fn hostname_is_set() {
    require_root!();
    let mut b = Bundle::new("hostname", &["hostname"]);
    b.config["hostname"] = json!("box-under-test");
    let (code, out, _) = b.run();
    assert_eq!((code, out.trim()), (0, "box-under-test"));
}

#[test]
fn pid_one_and_no_host_pids() {
    require_root!();
    let mut b = Bundle::new(
        "pidns",
        &["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9][0-9]*$'"],
    );
    let (code, out, _) = b.run();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 0);
    assert_eq!(lines[0], "1");
    // sh, ls and grep at most.
    let n: usize = lines[1].parse().unwrap();
    assert!(n <= 3, "container sees {n} pids");
}

#[test]
fn capabilities_match_docker_default() {
    require_root!();
    let mut b = Bundle::new(
        "caps",
        &[
            "grep",
            "-E",
            "^Cap(Eff|Bnd|Prm|Inh|Amb)",
            "/proc/self/status",
        ],
    );
    let (code, out, _) = b.run();
    assert_eq!(code, 0);
    // Docker's default set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID
    // SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
}

#[test]
fn non_root_user_has_no_capabilities() {
    require_root!();
    let mut b = Bundle::new("user", &["sh", "-c", "id; grep CapEff /proc/self/status"]);
    b.config["process"]["user"] = json!({"uid": 65534, "gid": 65534, "additionalGids": [10]});
    let (code, out, _) = b.run();
    assert_eq!(code, 0);
    assert!(out.contains("uid=65534"), "{out}");
    assert!(out.contains("groups=10") || out.contains(",10"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
}

#[test]
fn docker_seccomp_profile_applies() {
    require_root!();
    let mut b = Bundle::new(
        "seccomp",
        &["sh", "-c", "grep Seccomp: /proc/self/status; echo ok"],
    );
    let caps: Vec<String> = b.config["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let profile = std::fs::read("/work/shared/reference/seccomp-default.json").or_else(|_| {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/seccomp-default.json"
        ))
    });
    let Ok(profile) = profile else {
        eprintln!("skipped: no reference seccomp profile");
        return;
    };
    let sc = docker_seccomp_to_oci(&profile, &caps).unwrap();
    b.config["linux"]["seccomp"] = serde_json::to_value(&sc).unwrap();
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.ends_with("ok\n"), "{out}");
}

#[test]
fn masked_and_readonly_paths() {
    require_root!();
    let script = "test ! -e /proc/kcore || test $(wc -c </proc/kcore) = 0 || echo kcore-visible; \
                  grep -c ' /proc/keys \\| /proc/acpi ' /proc/self/mountinfo; \
                  (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-writable || echo sys-ro; \
                  (echo x > /sys/kernel/uevent_helper) 2>/dev/null && echo sysfs-writable || echo sysfs-ro";
    let mut b = Bundle::new("masked", &["sh", "-c", script]);
    let (code, out, _) = b.run();
    assert_eq!(code, 0);
    assert!(!out.contains("kcore-visible"), "{out}");
    assert!(out.contains("\n2\n") || out.starts_with("2\n"), "{out}");
    assert!(out.contains("sys-ro"), "{out}");
    assert!(out.contains("sysfs-ro"), "{out}");
}

#[test]
fn readonly_root() {
    require_root!();
    let mut b = Bundle::new(
        "roroot",
        &[
            "sh",
            "-c",
            "(echo x > /x) 2>/dev/null && echo rw || echo ro; echo y > /dev/shm/y && echo shm-ok",
        ],
    );
    b.config["root"]["readonly"] = json!(true);
    let (code, out, _) = b.run();
    assert_eq!((code, out.as_str()), (0, "ro\nshm-ok\n"));
}

#[test]
fn exit_code_propagates() {
    require_root!();
    let mut b = Bundle::new("exit", &["sh", "-c", "exit 42"]);
    let (code, _, _) = b.run();
    assert_eq!(code, 42);
}

#[test]
fn not_found_and_permission_denied() {
    require_root!();
    let mut b = Bundle::new("notfound", &["no-such-cmd"]);
    let (pid, _o, _e) = b.create_piped();
    let rt = b.runtime();
    match rt.start(&b.id) {
        Err(Error::Exec {
            kind: ExecErrorKind::NotFound,
            message,
        }) => assert_eq!(
            message,
            "exec: \"no-such-cmd\": executable file not found in $PATH"
        ),
        other => panic!("expected NotFound, got {:?}", other.err()),
    }
    assert_eq!(wait(pid), 127);
    rt.delete(&b.id, false).unwrap();

    b.config["process"]["args"] = json!(["/etc/passwd"]);
    let (pid, _o, _e) = b.create_piped();
    match rt.start(&b.id) {
        Err(Error::Exec {
            kind: ExecErrorKind::PermissionDenied,
            message,
        }) => assert!(message.contains("permission denied"), "{message}"),
        other => panic!("expected PermissionDenied, got {:?}", other.err()),
    }
    wait(pid);
    rt.delete(&b.id, false).unwrap();
}

#[test]
fn exec_into_running_container() {
    require_root!();
    let mut b = Bundle::new("exec", &["sleep", "1000"]);
    let (pid, _o, _e) = b.create_piped();
    let rt = b.runtime();
    assert_eq!(
        rt.state(&b.id).unwrap().annotations().as_ref().unwrap()[STATUS_ANNOTATION],
        "created"
    );
    rt.start(&b.id).unwrap();
    assert_eq!(
        rt.state(&b.id).unwrap().annotations().as_ref().unwrap()[STATUS_ANNOTATION],
        "running"
    );

    let spec: oci_spec::runtime::Spec = serde_json::from_value(b.config.clone()).unwrap();
    let mut p = spec.process().clone().unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "echo $$; cat /proc/1/cmdline; echo; hostname; cat /proc/self/cgroup | grep pids".into(),
    ]));
    let (mut out_r, out_w) = std::io::pipe().unwrap();
    let (_err_r, err_w) = std::io::pipe().unwrap();
    let stdin: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let ex = rt
        .exec(
            &b.id,
            &p,
            Stdio::Fds {
                stdin,
                stdout: out_w.into(),
                stderr: err_w.into(),
            },
        )
        .unwrap_or_else(|e| panic!("exec: {e}"));
    b.pids.push(ex.pid);
    let mut out = String::new();
    out_r.read_to_string(&mut out).unwrap();
    assert_eq!(wait(ex.pid), 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1", "{out}");
    assert!(lines[1].starts_with("sleep"), "{out}");
    assert_eq!(lines[2], "berth");
    assert_eq!(lines[3], "8:pids:/", "{out}");

    p.set_args(Some(vec!["missing-binary".into()]));
    match rt.exec(&b.id, &p, Stdio::Inherit) {
        Err(Error::Exec {
            kind: ExecErrorKind::NotFound,
            ..
        }) => {}
        other => panic!(
            "expected NotFound, got {:?}",
            other.err().map(|e| e.to_string())
        ),
    }

    assert!(matches!(
        rt.delete(&b.id, false),
        Err(Error::InvalidState { .. })
    ));
    rt.kill(&b.id, libc::SIGKILL, false).unwrap();
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
    assert_eq!(
        rt.state(&b.id).unwrap().annotations().as_ref().unwrap()[STATUS_ANNOTATION],
        "stopped"
    );
    rt.delete(&b.id, false).unwrap();
    rt.delete(&b.id, false).unwrap();
}

#[test]
fn kill_all_and_force_delete() {
    require_root!();
    let mut b = Bundle::new(
        "killall",
        &["sh", "-c", "sleep 1000 & sleep 1000 & wait; echo done"],
    );
    let (pid, mut out, _e) = b.create_piped();
    let rt = b.runtime();
    rt.start(&b.id).unwrap();
    // Wait (bounded) until both children exist, so the signal has someone to reach.
    for _ in 0..2000 {
        if b.cgroup_file("pids", "cgroup.procs").lines().count() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // sh is pid 1 of its namespace and has no TERM handler, so only the sleeps die.
    rt.kill(&b.id, libc::SIGTERM, true).unwrap();
    let mut o = String::new();
    out.read_to_string(&mut o).unwrap();
    assert_eq!(o, "done\n");
    assert_eq!(wait(pid), 0);
    rt.delete(&b.id, false).unwrap();
    assert!(matches!(rt.state(&b.id), Err(Error::NotFound(_))));

    // Force-delete of a running container with children.
    b.config["process"]["args"] = json!(["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let (pid, _o, _e) = b.create_piped();
    rt.start(&b.id).unwrap();
    rt.delete(&b.id, true).unwrap();
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
}

#[test]
fn pause_and_resume() {
    require_root!();
    let mut b = Bundle::new("pause", &["sleep", "1000"]);
    let (pid, _o, _e) = b.create_piped();
    let rt = b.runtime();
    rt.start(&b.id).unwrap();
    rt.pause(&b.id).unwrap();
    let st = rt.state(&b.id).unwrap();
    assert_eq!(
        st.annotations().as_ref().unwrap()[STATUS_ANNOTATION],
        "paused"
    );
    assert_eq!(b.cgroup_file("freezer", "freezer.state").trim(), "FROZEN");
    rt.resume(&b.id).unwrap();
    assert_eq!(
        rt.state(&b.id).unwrap().annotations().as_ref().unwrap()[STATUS_ANNOTATION],
        "running"
    );
    assert_eq!(b.cgroup_file("freezer", "freezer.state").trim(), "THAWED");
    rt.pause(&b.id).unwrap();
    // Force-delete of a paused container kills it and thaws so the kill is delivered.
    rt.delete(&b.id, true).unwrap();
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
}

#[test]
fn cgroup_limits_are_written() {
    require_root!();
    let mut b = Bundle::new(
        "limits",
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
    );
    b.config["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432});
    b.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    b.config["linux"]["resources"]["cpu"] =
        json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"});
    let (pid, mut out, _e) = b.create_piped();
    assert_eq!(
        b.cgroup_file("memory", "memory.limit_in_bytes").trim(),
        "67108864"
    );
    assert_eq!(
        b.cgroup_file("memory", "memory.soft_limit_in_bytes").trim(),
        "33554432"
    );
    assert_eq!(b.cgroup_file("pids", "pids.max").trim(), "50");
    assert_eq!(b.cgroup_file("cpu", "cpu.shares").trim(), "512");
    assert_eq!(b.cgroup_file("cpu", "cpu.cfs_quota_us").trim(), "50000");
    assert_eq!(b.cgroup_file("cpuset", "cpuset.cpus").trim(), "0");
    assert!(b
        .cgroup_file("devices", "devices.list")
        .contains("c 1:3 rwm"));
    assert!(b
        .cgroup_file("pids", "cgroup.procs")
        .contains(&pid.to_string()));
    let rt = b.runtime();
    rt.start(&b.id).unwrap();
    let mut o = String::new();
    out.read_to_string(&mut o).unwrap();
    // Inside its cgroup namespace the container sees its own cgroup as the root.
    assert_eq!(o, "50\n67108864\n");
    assert_eq!(wait(pid), 0);
    rt.delete(&b.id, false).unwrap();
}

#[test]
fn overlay_annotation_mounts_inside_the_container() {
    require_root!();
    let mut b = Bundle::new(
        "overlay",
        &["sh", "-c", "echo data > /new-file; ls /bin/busybox"],
    );
    let upper = b.dir.join("upper");
    let work = b.dir.join("work");
    let merged = b.dir.join("merged");
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        b.dir.join("rootfs").display(),
        upper.display(),
        work.display()
    );
    b.config["annotations"] = json!({ "berth.overlay": opts });
    b.config["root"]["path"] = json!("merged");
    let (code, out, err) = b.run();
    assert_eq!((code, out.as_str()), (0, "/bin/busybox\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(upper.join("new-file")).unwrap(),
        "data\n"
    );
    assert!(!b.dir.join("rootfs/new-file").exists());
    assert!(
        std::fs::read_dir(&merged).unwrap().next().is_none(),
        "overlay visible on the host"
    );
}

#[test]
fn pty_master_is_returned() {
    require_root!();
    let mut b = Bundle::new(
        "pty",
        &["sh", "-c", "tty; test -c /dev/console && echo console"],
    );
    b.config["process"]["terminal"] = json!(true);
    b.write();
    let rt = b.runtime();
    let created = rt
        .create(&b.id, &b.dir, Stdio::Pty)
        .unwrap_or_else(|e| panic!("create: {e}"));
    b.pids.push(created.pid);
    let master = created.pty_master.expect("pty master");
    rt.start(&b.id).unwrap();
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // Read until the slave side is closed (EIO on a PTY master).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert_eq!(wait(created.pid), 0);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("console"), "{out}");
    rt.delete(&b.id, false).unwrap();
}

/// The CLI example binary (built by `cargo test` next to the test binaries).
fn cli_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/berth-runtime")
}

#[test]
fn cli_create_start_state_delete() {
    require_root!();
    let bin = cli_binary();
    if !bin.exists() {
        panic!("{} not built (cargo test builds examples)", bin.display());
    }
    let b = Bundle::new("cli", &["sleep", "1000"]);
    b.write();
    let root = b.dir.join("state");
    let cli = |args: &[&str]| -> (i32, String, String) {
        let o = Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let bundle = b.dir.to_string_lossy().into_owned();
    let pidfile = b.dir.join("pid").to_string_lossy().into_owned();
    // The container inherits create's stdio: no pipes here, or reading them would wait for it.
    let status = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle", &bundle, "--pid-file", &pidfile, &b.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (_, out, _) = cli(&["state", &b.id]);
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(cli(&["start", &b.id]).0, 0);
    let (_, out, _) = cli(&["state", &b.id]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "running"
    );
    let (code, out, _) = cli(&["exec", &b.id, "echo", "from-exec"]);
    assert_eq!((code, out.as_str()), (0, "from-exec\n"));
    assert_eq!(cli(&["kill", &b.id, "KILL"]).0, 0);
    // The init was the CLI's child; it is reparented and reaped by init/subreaper, so wait
    // for it through a pidfd.
    // SAFETY: raw pidfd_open syscall with integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd >= 0 {
        let mut pfd = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 5000) };
        // SAFETY: closing the pidfd we opened.
        unsafe { libc::close(pidfd) };
    }
    let (_, out, _) = cli(&["state", &b.id]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "stopped"
    );
    assert_eq!(cli(&["delete", &b.id]).0, 0);
    let (code, _, err) = cli(&["state", &b.id]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");

    // run: create + start + wait + delete, exit code passed through.
    let mut b2 = Bundle::new("clirun", &["sh", "-c", "exit 7"]);
    b2.write();
    let (code, _, err) = cli(&["run", "--bundle", &b2.dir.to_string_lossy(), &b2.id]);
    assert_eq!(code, 7, "{err}");
    b2.config["process"]["args"] = json!(["nonexistent"]);
    b2.write();
    let (code, _, err) = cli(&["run", "--bundle", &b2.dir.to_string_lossy(), &b2.id]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
}

#[test]
fn user_namespace_maps_root() {
    require_root!();
    let mut b = Bundle::new(
        "userns",
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo dev-ok",
        ],
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    assert_eq!(lines[2], "dev-ok");
}

#[test]
fn hooks_run_at_each_stage() {
    require_root!();
    let mut b = Bundle::new("hooks", &["cat", "/tmp/started"]);
    let d = b.dir.display().to_string();
    let hook = |script: String| json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/bin:/bin"], "timeout": 10});
    b.config["hooks"] = json!({
        "createRuntime": [hook(format!("cat > {d}/createRuntime.json"))],
        "createContainer": [hook(format!("cat > {d}/createContainer.json"))],
        "startContainer": [hook("echo started > /tmp/started".into())],
        "poststart": [hook(format!("cat > {d}/poststart.json"))],
        "poststop": [hook(format!("cat > {d}/poststop.json"))],
    });
    let (code, out, err) = b.run();
    assert_eq!((code, out.as_str()), (0, "started\n"), "{err}");
    for stage in ["createRuntime", "createContainer", "poststart", "poststop"] {
        let st: Value =
            serde_json::from_slice(&std::fs::read(b.dir.join(format!("{stage}.json"))).unwrap())
                .unwrap();
        assert_eq!(st["id"], b.id.as_str(), "{stage}");
        assert!(st["pid"].as_i64().unwrap() > 1, "{stage}");
    }
}
