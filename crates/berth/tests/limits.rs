//! Resource limits reach the kernel: a memory hog is OOM-killed (exit 137, OOMKilled), a
//! process flood stops at the pids limit, --cpus caps CPU time, `update` changes the limits of
//! a running container live and for later starts, and bad values get Docker's errors.

mod common;
use common::{eventually, stderr, Daemon};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn inspect(d: &Daemon, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).expect("inspect JSON");
    v[0].clone()
}

/// The container's cgroup directory under one v1 controller.
fn cgroup(d: &Daemon, controller: &str, id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(&d.cgroup_parent)
        .join(id)
}

fn read(d: &Daemon, controller: &str, id: &str, file: &str) -> String {
    let p = cgroup(d, controller, id).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn memory_hog_is_oom_killed() {
    let d = Daemon::start();
    let out = d.berth(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let st = &inspect(&d, "hog")["State"];
    assert_eq!(st["OOMKilled"], true, "{st}");
    assert_eq!(st["ExitCode"], 137, "{st}");
    assert_eq!(inspect(&d, "hog")["HostConfig"]["Memory"], 16 << 20);
    // Docker's default swap limit: twice the memory.
    assert_eq!(inspect(&d, "hog")["HostConfig"]["MemorySwap"], 32 << 20);
    // A child taken by the OOM killer counts too; a plain exit does not.
    let out = d.berth(&[
        "run",
        "--name",
        "pipe",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "head -c 200m /dev/zero | tail",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(inspect(&d, "pipe")["State"]["OOMKilled"], true);
    d.ok(&["run", "--name", "fine", "-m", "16m", "busybox", "true"]);
    assert_eq!(inspect(&d, "fine")["State"]["OOMKilled"], false);
    d.ok(&["rm", "hog", "pipe", "fine"]);
}

#[test]
fn pids_limit_stops_a_process_flood() {
    let d = Daemon::start();
    // Bounded, so that a broken limit cannot take the host down.
    let id = d.ok(&[
        "run",
        "-d",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        // The flooding shell dies when a fork fails; the container goes on without forking.
        "sh -c 'i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); done; wait'; exec sleep 300",
    ]);
    assert_eq!(read(&d, "pids", &id, "pids.max"), "20");
    eventually("forks refused at the limit", || {
        read(&d, "pids", &id, "pids.events")
            .strip_prefix("max ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    });
    let current: u64 = read(&d, "pids", &id, "pids.current").parse().unwrap();
    assert!(current <= 20, "pids.current {current}");
    let procs = std::fs::read_to_string(cgroup(&d, "pids", &id).join("cgroup.procs")).unwrap();
    assert!(procs.lines().count() <= 20, "{procs}");
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    // Lifted and lowered live.
    d.ok(&["update", "--pids-limit", "30", &id]);
    assert_eq!(read(&d, "pids", &id, "pids.max"), "30");
    assert_eq!(inspect(&d, &id)["HostConfig"]["PidsLimit"], 30);
    d.ok(&["update", "--pids-limit", "-1", &id]);
    assert_eq!(read(&d, "pids", &id, "pids.max"), "max");
    assert_eq!(inspect(&d, &id)["HostConfig"]["PidsLimit"], 0);
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn cpus_cap_cpu_time() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done & while :; do :; done",
    ]);
    assert_eq!(read(&d, "cpu", &id, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&d, "cpu", &id, "cpu.cfs_period_us"), "100000");
    assert_eq!(inspect(&d, &id)["HostConfig"]["NanoCpus"], 500_000_000);
    let usage = || -> u64 { read(&d, "cpuacct", &id, "cpuacct.usage").parse().unwrap() };
    let (u0, t0) = (usage(), Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    let (u1, wall) = (usage(), t0.elapsed());
    let ratio = (u1 - u0) as f64 / wall.as_nanos() as f64;
    assert!(
        ratio < 0.75,
        "two spinning loops used {ratio:.2} CPUs under --cpus 0.5"
    );
    // Raised live.
    d.ok(&["update", "--cpus", "1.5", &id]);
    assert_eq!(read(&d, "cpu", &id, "cpu.cfs_quota_us"), "150000");
    let out = d.berth(&["update", "--cpu-quota", "20000", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        ),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn update_changes_memory_live_and_for_restarts() {
    let d = Daemon::start();
    let id = d.ok(&["run", "-d", "-m", "32m", "busybox", "sleep", "300"]);
    let limit = |d: &Daemon| read(d, "memory", &id, "memory.limit_in_bytes");
    let memsw = |d: &Daemon| read(d, "memory", &id, "memory.memsw.limit_in_bytes");
    assert_eq!(limit(&d), (32u64 << 20).to_string());
    assert_eq!(memsw(&d), (64u64 << 20).to_string());
    d.ok(&["update", "--memory", "48m", &id]);
    assert_eq!(limit(&d), (48u64 << 20).to_string());
    // Above the swap limit only together with it (Docker's rule), which is written first.
    let out = d.berth(&["update", "--memory", "128m", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Cannot update container {id}: Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")),
        "{}",
        stderr(&out)
    );
    assert_eq!(limit(&d), (48u64 << 20).to_string());
    d.ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--memory-reservation",
        "64m",
        &id,
    ]);
    assert_eq!(limit(&d), (128u64 << 20).to_string());
    assert_eq!(memsw(&d), (256u64 << 20).to_string());
    assert_eq!(
        read(&d, "memory", &id, "memory.soft_limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    d.ok(&[
        "update",
        "--memory",
        "24m",
        "--memory-reservation",
        "20m",
        &id,
    ]);
    assert_eq!(limit(&d), (24u64 << 20).to_string());
    let hc = inspect(&d, &id)["HostConfig"].clone();
    assert_eq!(hc["Memory"], 24 << 20);
    assert_eq!(hc["MemorySwap"], 256 << 20);
    assert_eq!(hc["MemoryReservation"], 20 << 20);
    // The record keeps them: a restart applies them again.
    d.ok(&["restart", "-t", "0", &id]);
    assert_eq!(limit(&d), (24u64 << 20).to_string());
    assert_eq!(memsw(&d), (256u64 << 20).to_string());
    // A stopped container is updated in its record only.
    d.ok(&["stop", "-t", "0", &id]);
    d.ok(&[
        "update",
        "--memory",
        "40m",
        "--restart",
        "on-failure:2",
        &id,
    ]);
    let hc = inspect(&d, &id)["HostConfig"].clone();
    assert_eq!(hc["Memory"], 40 << 20);
    assert_eq!(hc["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(hc["RestartPolicy"]["MaximumRetryCount"], 2);
    d.ok(&["start", &id]);
    assert_eq!(limit(&d), (40u64 << 20).to_string());
    d.ok(&["rm", "-f", &id]);

    let out = d.berth(&["update", "nosuch-box"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("you must provide one or more flags"));
    let out = d.berth(&["update", "--memory", "1m", "nosuch-box"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such container: nosuch-box"));
    let rm = d.ok(&["create", "--rm", "busybox", "true"]);
    let out = d.berth(&["update", "--restart", "always", &rm]);
    assert!(
        stderr(&out).contains("Restart policy cannot be updated because AutoRemove is enabled"),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", &rm]);
}

#[test]
fn create_flags_reach_the_cgroups() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--memory-swap",
        "-1",
        "--memory-reservation",
        "32m",
        "--oom-kill-disable",
        "--cpu-shares",
        "512",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "--pids-limit",
        "50",
        "--blkio-weight",
        "300",
        "--ulimit",
        "nofile=512:1024",
        "--shm-size",
        "32m",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        read(&d, "memory", &id, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(&d, "memory", &id, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert!(read(&d, "memory", &id, "memory.oom_control").contains("oom_kill_disable 1"));
    assert_eq!(read(&d, "cpu", &id, "cpu.shares"), "512");
    assert_eq!(read(&d, "cpu", &id, "cpu.cfs_period_us"), "50000");
    assert_eq!(read(&d, "cpu", &id, "cpu.cfs_quota_us"), "25000");
    assert_eq!(read(&d, "cpuset", &id, "cpuset.cpus"), "0");
    assert_eq!(read(&d, "cpuset", &id, "cpuset.mems"), "0");
    assert_eq!(read(&d, "pids", &id, "pids.max"), "50");
    let blkio = cgroup(&d, "blkio", &id);
    for f in ["blkio.weight", "blkio.bfq.weight"] {
        if let Ok(w) = std::fs::read_to_string(blkio.join(f)) {
            assert!(w.contains("300"), "{f}: {w}");
        }
    }
    assert_eq!(
        d.ok(&["exec", &id, "sh", "-c", "ulimit -n; ulimit -Hn"]),
        "512\n1024"
    );
    let shm = d.ok(&["exec", &id, "df", "-k", "/dev/shm"]);
    assert!(shm.contains("32768"), "{shm}");
    let hc = inspect(&d, &id)["HostConfig"].clone();
    assert_eq!(hc["MemorySwap"], -1);
    assert_eq!(hc["OomKillDisable"], true);
    assert_eq!(hc["CpusetCpus"], "0");
    assert_eq!(hc["BlkioWeight"], 300);
    assert_eq!(hc["ShmSize"], 32 << 20);
    assert_eq!(hc["Ulimits"][0]["Name"], "nofile");
    // cpuset and shares change live too.
    d.ok(&["update", "--cpuset-cpus", "0-1", "--cpu-shares", "256", &id]);
    assert_eq!(read(&d, "cpuset", &id, "cpuset.cpus"), "0-1");
    assert_eq!(read(&d, "cpu", &id, "cpu.shares"), "256");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn bad_values_get_dockers_errors() {
    let d = Daemon::start();
    let cases: &[(&[&str], &str)] = &[
        (
            &["-m", "12q"],
            "invalid argument \"12q\" for \"-m, --memory\" flag: invalid size: '12q'",
        ),
        (
            &["--cpus", "abc"],
            "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc as a rational number",
        ),
        (
            &["--ulimit", "bogus=1"],
            "invalid argument \"bogus=1\" for \"--ulimit\" flag: invalid ulimit type: bogus",
        ),
        (
            &["--cpus", "0.5", "--cpu-quota", "50000"],
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ),
        (&["-m", "1k"], "Minimum memory limit allowed is 6MB"),
        (
            &["-m", "64m", "--memory-swap", "32m"],
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (
            &["--memory-swap", "64m"],
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ),
        (
            &["-m", "32m", "--memory-reservation", "64m"],
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
        (&["--cpus", "64"], "range of CPUs is from 0.01 to"),
        (
            &["--cpu-period", "10"],
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ),
        (
            &["--cpuset-cpus", "4096"],
            "Requested CPUs are not available - requested 4096, available: ",
        ),
        (
            &["--cpuset-cpus", "0-x"],
            "Invalid value 0-x for cpuset cpus: invalid format: 0-x",
        ),
        (
            &["--blkio-weight", "5"],
            "Range of blkio weight is from 10 to 1000",
        ),
    ];
    for (flags, msg) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        let out = d.berth(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(msg), "{flags:?}: {}", stderr(&out));
    }
    assert!(d.container_ids().is_empty());
    let (code, body) = d.curl(
        "POST",
        "/v1.50/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"Memory":1024}}"#),
    );
    assert_eq!(code, 400, "{body}");
    let id = d.ok(&["create", "busybox", "true"]);
    let (code, body) = d.curl(
        "POST",
        &format!("/v1.50/containers/{id}/update"),
        Some(r#"{"BlkioWeight":2000}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Range of blkio weight is from 10 to 1000"));
    let (code, body) = d.curl(
        "POST",
        &format!("/v1.50/containers/{id}/update"),
        Some(r#"{"CpuShares":512}"#),
    );
    assert_eq!((code, body.trim()), (200, r#"{"Warnings":[]}"#));
    d.ok(&["rm", &id]);
    let out = d.berth(&["create", "--oom-kill-disable", "busybox", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "WARNING: OOM killer is disabled for the container, but no memory limit is set"
        ),
        "{}",
        stderr(&out)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    d.ok(&["rm", &id]);
}

#[test]
fn docker_cli_update() {
    let d = Daemon::start();
    let out = d.docker(&[
        "run", "-d", "--name", "du", "-m", "32m", "busybox", "sleep", "300",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = d.docker(&["update", "--memory", "48m", "--pids-limit", "40", "du"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "du");
    assert_eq!(
        read(&d, "memory", &id, "memory.limit_in_bytes"),
        (48u64 << 20).to_string()
    );
    assert_eq!(read(&d, "pids", &id, "pids.max"), "40");
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        "du",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} 40", 48u64 << 20)
    );
    let out = d.docker(&["update", "--memory", "1g", "du"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Memory limit should be smaller than already set memoryswap limit"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["run", "--rm", "-m", "12q", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(d.docker(&["rm", "-f", "du"]).status.success());
}
