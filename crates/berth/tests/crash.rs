//! A daemon killed with SIGKILL leaves its containers running; after a restart they are
//! managed again, and a container that exited meanwhile shows its real exit code. A shim killed
//! with SIGKILL takes its container down cleanly; damaged records found at boot are
//! quarantined and what they held is cleaned up.

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

/// The parent of a process (a container's init is the direct child of its shim).
fn parent_of(pid: &str) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.split_whitespace().nth(1).unwrap().to_string()
}

fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A shim killed with SIGKILL is seen at once: the container's processes are killed through
/// its cgroup (a paused one's too), its runtime state is deleted, the exit is recorded as 137,
/// `start` works again and `--restart always` brings the container back.
#[test]
fn a_dead_shim_takes_its_container_down_cleanly() {
    let d = Daemon::start();
    for (name, policy) in [
        ("shim-plain", "no"),
        ("shim-paused", "no"),
        ("shim-always", "always"),
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
    d.ok(&["pause", "shim-paused"]);
    let mut pids = Vec::new();
    for name in ["shim-plain", "shim-paused", "shim-always"] {
        let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", name]);
        let shim = parent_of(&pid);
        assert!(
            std::process::Command::new("kill")
                .args(["-9", &shim])
                .status()
                .unwrap()
                .success(),
            "kill shim {shim} of {name}"
        );
        pids.push(pid);
    }
    eventually("the containers' processes are killed", || {
        pids.iter().all(|p| !alive(p))
    });
    let state = |n: &str| d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", n]);
    for name in ["shim-plain", "shim-paused"] {
        eventually(&format!("{name} recorded as killed"), || {
            state(name) == "exited 137"
        });
    }
    eventually("shim-always restarted by its policy", || {
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Pid}}",
            "shim-always",
        ])
        .split_once(' ')
        .is_some_and(|(s, p)| s == "running" && p != "0" && p != pids[2])
    });
    assert_ne!(
        d.ok(&["inspect", "-f", "{{.RestartCount}}", "shim-always"]),
        "0"
    );
    d.ok(&["start", "shim-plain"]);
    assert_eq!(d.ok(&["exec", "shim-plain", "echo", "again"]), "again");
    d.ok(&["rm", "-f", "shim-plain", "shim-paused", "shim-always"]);
}

/// Records that cannot be read are moved to the quarantine at boot: a running container's
/// (its processes, found by id on the exec root, are killed and its name is free again), an
/// image's (garbage collection still runs), a network's (its bridge goes) and a volume's (its
/// content is kept); `GET /info` warns about them.
#[test]
fn damaged_records_are_quarantined_and_what_they_held_is_cleaned_up() {
    let mut d = Daemon::start();
    let victim = d.ok(&["run", "-d", "--name", "victim", "busybox", "sleep", "300"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "victim"]);
    d.ok(&["commit", "victim", "damaged:1"]);
    let image = d.ok(&["inspect", "-f", "{{.Id}}", "damaged:1"]);
    let image_hex = image.trim_start_matches("sha256:").to_string();
    let net = d.ok(&[
        "network",
        "create",
        "--subnet",
        &d.user_subnet(0),
        "damaged-net",
    ]);
    let bridge = format!("br-{}", &net[..12]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "damaged-vol:/v",
        "busybox",
        "sh",
        "-c",
        "echo kept > /v/file",
    ]);
    // A blob no image uses: the boot's garbage collection removes it.
    let garbage = d.data_root.join("content/sha256").join("ab".repeat(32));
    std::fs::write(&garbage, b"unused").unwrap();
    d.crash();
    let records = [
        d.data_root
            .join("containers")
            .join(&victim)
            .join("container.json"),
        d.data_root.join("images").join(format!("{image_hex}.json")),
        d.data_root.join("networks").join(format!("{net}.json")),
        d.data_root.join("volumes/damaged-vol/volume.json"),
    ];
    for r in &records {
        let bytes = std::fs::read(r).unwrap();
        std::fs::write(r, &bytes[..bytes.len() / 3]).unwrap();
    }
    d.spawn();
    eventually("the orphaned container's process is killed", || {
        !alive(&pid)
    });
    assert!(!d.ok(&["ps", "-a", "--no-trunc"]).contains(&victim));
    d.ok(&["run", "-d", "--name", "victim", "busybox", "sleep", "300"]);
    d.ok(&["rm", "-f", "victim"]);
    let q = d.data_root.join("quarantine");
    assert!(q
        .join("containers")
        .join(&victim)
        .join("container.json")
        .exists());
    assert!(q.join("images").join(format!("{image_hex}.json")).exists());
    assert!(q.join("networks").join(format!("{net}.json")).exists());
    assert_eq!(
        std::fs::read_to_string(q.join("volumes/damaged-vol/_data/file")).unwrap(),
        "kept\n"
    );
    assert!(!d.ok(&["volume", "ls"]).contains("damaged-vol"));
    let (code, info) = d.curl("GET", "/info", None);
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let warnings = info["Warnings"].to_string();
    assert!(
        warnings.contains("1 containers, 1 networks, 1 volumes, 1 images"),
        "{warnings}"
    );
    assert!(!garbage.exists(), "garbage collection did not run");
    assert!(!d.ok(&["images"]).contains("damaged"));
    assert!(!d.ok(&["network", "ls"]).contains("damaged-net"));
    let link = std::process::Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!link.status.success(), "bridge {bridge} left behind");
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "still-works"]),
        "still-works"
    );
}
