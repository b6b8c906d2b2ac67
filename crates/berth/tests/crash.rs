//! A daemon killed with SIGKILL leaves its containers running; after a restart they are
//! managed again, and a container that exited meanwhile shows its real exit code.

mod common;
use common::{eventually, stdout, Daemon};

#[test]
fn containers_survive_daemon_crash() {
    let mut d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do echo tick; sleep 0.2; done",
    ]);
    let short = d.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 42",
    ]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "ticker"]);
    d.crash();
    // While the daemon is gone the container keeps running and logging.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with the daemon"
    );
    d.spawn();
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Pid}}",
            "ticker"
        ]),
        format!("running {pid}")
    );
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &short
        ]),
        "exited 42"
    );
    assert!(d.ok(&["logs", "ticker"]).lines().count() >= 5);
    assert_eq!(
        d.ok(&["exec", "ticker", "echo", "exec-after-crash"]),
        "exec-after-crash"
    );
    let follow = std::process::Command::new(common::berth_bin())
        .args(["-H", &d.host(), "logs", "-f", "--tail", "1", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    d.ok(&["stop", "ticker"]);
    let out = follow.wait_with_output().unwrap();
    assert!(
        stdout(&out).lines().count() >= 2,
        "logs -f saw no new lines: {}",
        stdout(&out)
    );
    assert_eq!(d.ok(&["wait", &id]), "0");
    eventually("stopped", || {
        d.ok(&["inspect", "-f", "{{.State.Status}}", "ticker"]) == "exited"
    });
    d.ok(&["rm", "ticker", "short"]);
}

/// Containers whose process ended while the daemon was down come back at its start when their
/// policy says so: `always`, and `unless-stopped` unless the user stopped it; not `no`.
#[test]
fn restart_policies_bring_containers_back_when_the_daemon_starts() {
    let mut d = Daemon::start();
    for (name, policy) in [
        ("pol-always", "always"),
        ("pol-unless", "unless-stopped"),
        ("pol-stopped", "unless-stopped"),
        ("pol-no", "no"),
    ] {
        d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "300",
        ]);
    }
    d.ok(&["stop", "-t", "1", "pol-stopped"]);
    let pids: Vec<String> = ["pol-always", "pol-unless", "pol-no"]
        .iter()
        .map(|n| d.ok(&["inspect", "-f", "{{.State.Pid}}", n]))
        .collect();
    d.crash();
    // Their processes die while no daemon watches (as after a host reboot).
    for p in &pids {
        std::process::Command::new("kill")
            .args(["-9", p])
            .status()
            .unwrap();
    }
    eventually("the processes are gone", || {
        pids.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    });
    d.spawn();
    for n in ["pol-always", "pol-unless"] {
        eventually(n, || {
            d.ok(&["inspect", "-f", "{{.State.Status}}", n]) == "running"
        });
    }
    let state = |n: &str| d.ok(&["inspect", "-f", "{{.State.Status}}", n]);
    assert_eq!(state("pol-stopped"), "exited");
    assert_eq!(state("pol-no"), "exited");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "pol-no"]),
        "137"
    );
    d.ok(&[
        "rm",
        "-f",
        "pol-always",
        "pol-unless",
        "pol-stopped",
        "pol-no",
    ]);
}

#[test]
fn build_container_of_a_crashed_build_is_removed_at_boot() {
    let mut d = Daemon::start();
    let ctx = std::env::temp_dir().join(format!("berth-crash-build-{}", std::process::id()));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 60\n").unwrap();
    let mut build = std::process::Command::new(common::berth_bin())
        .args(["-H", &d.host(), "build"])
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the RUN step's container", || {
        d.ok(&["ps", "-q"]).lines().count() == 1
    });
    d.crash();
    let _ = build.kill();
    let _ = build.wait();
    let _ = std::fs::remove_dir_all(&ctx);
    d.spawn();
    // Gone by the time the API answers; the harness then finds no mount, cgroup or process.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert!(d.container_ids().is_empty(), "{:?}", d.container_ids());
}
