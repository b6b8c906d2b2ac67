//! The container is isolated the way Docker isolates it: pids, mounts, hostname, capabilities,
//! masked and read-only /proc paths, seccomp, resource limits in cgroups.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn namespaces_caps_and_masks() {
    let d = Daemon::start();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "60"]);
    let run = |cmd: &str| d.ok(&["exec", &id, "sh", "-c", cmd]);
    assert_eq!(run("hostname"), &id[..12]);
    // Only the container's own processes are visible.
    let pids = run("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '");
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.first(), Some(&1), "{pids:?}");
    // sleep, plus the exec'd shell and its pipeline (ls, grep, sort, tr): nothing of the host.
    assert!(pids.len() <= 6, "sees foreign processes: {pids:?}");
    assert_eq!(run("cat /proc/1/cmdline | tr '\\0' ' '"), "sleep 60");
    // No host mounts leak in.
    let mounts = run("cat /proc/mounts");
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert!(
        points
            .iter()
            .all(|p| !p.starts_with("/work") && !p.starts_with("/tmp/") && !p.starts_with("/run")),
        "host mounts visible: {points:?}"
    );
    assert!(
        mounts
            .lines()
            .next()
            .unwrap()
            .starts_with("overlay / overlay"),
        "{mounts}"
    );
    // Docker's default capability set.
    assert_eq!(
        run("grep CapEff /proc/self/status"),
        "CapEff:\t00000000a80425fb"
    );
    assert_eq!(
        run("grep CapBnd /proc/self/status"),
        "CapBnd:\t00000000a80425fb"
    );
    // Masked and read-only paths.
    // /proc/kcore is masked where the kernel has it (this VM's kernel does not).
    let kcore = run("if [ -e /proc/kcore ]; then wc -c < /proc/kcore; else echo absent; fi");
    assert!(kcore == "0" || kcore == "absent", "{kcore}");
    assert!(std::fs::metadata("/proc/timer_list").is_ok());
    assert_eq!(run("wc -c < /proc/timer_list"), "0");
    let out = d.berth(&["exec", &id, "sh", "-c", "echo 1 > /proc/sys/kernel/panic"]);
    assert_ne!(out.status.code(), Some(0));
    let out = d.berth(&["exec", &id, "sh", "-c", "touch /sys/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(run("ls /dev | tr '\\n' ' '").contains("null"));
    // Seccomp is on by default (filter mode 2).
    assert_eq!(run("grep Seccomp: /proc/self/status"), "Seccomp:\t2");
    d.ok(&["rm", "-f", &id]);

    let out = d.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(out, "Seccomp:\t0");
    let out = d.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(out, "CapEff:\t0000000000001000");
    let out = d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status",
    ]);
    assert!(
        out.starts_with("CapEff:\t000001ff") || out.starts_with("CapEff:\t000000ff"),
        "{out}"
    );
    assert!(out.ends_with("Seccomp:\t0"), "{out}");
    // --privileged sees the host's devices (the VM's disk, here vda).
    let host_disks: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vd") || n.starts_with("sd") || n.starts_with("nvme"))
        .collect();
    let disk = host_disks
        .first()
        .expect("this test needs a vd*, sd* or nvme* disk in /dev");
    {
        let seen = d.ok(&[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "ls",
            &format!("/dev/{disk}"),
        ]);
        assert_eq!(seen, format!("/dev/{disk}"));
        let out = d.berth(&["run", "--rm", "busybox", "ls", &format!("/dev/{disk}")]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "unprivileged container sees /dev/{disk}"
        );
    }
    let out = d.berth(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(out, "NoNewPrivs:\t1");
}

#[test]
fn resource_limits_land_in_cgroups() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "20",
        "busybox",
        "sleep",
        "60",
    ]);
    let cg = |ctl: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{ctl}/{}/{id}/{file}",
            d.cgroup_parent
        ))
        .unwrap_or_else(|e| panic!("{ctl}/{file}: {e}"))
        .trim()
        .to_string()
    };
    if std::path::Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(
            cg("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg("cpu", "cpu.shares"), "512");
        assert_eq!(cg("pids", "pids.max"), "20");
    } else {
        // cgroup v2: one hierarchy, the files have v2 names.
        assert_eq!(cg("", "memory.max"), (64u64 << 20).to_string());
        assert_eq!(cg("", "cpu.max"), "50000 100000");
        assert_eq!(cg("", "pids.max"), "20");
    }
    // A fork bomb stops at the pids limit.
    let out = d.berth(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for i in $(seq 1 40); do sleep 5 & done; wait",
    ]);
    assert!(
        stderr(&out).contains("can't fork")
            || stderr(&out).contains("Resource temporarily unavailable"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    d.ok(&["rm", "-f", &id]);

    // A memory hog is killed by the OOM killer, and inspect says so.
    let out = d.berth(&[
        "run",
        "--name",
        "hog",
        "-m",
        "8m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "hog"
        ]),
        "true 137"
    );
    d.ok(&["rm", "hog"]);
}
