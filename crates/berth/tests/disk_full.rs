//! A full data root (a container filling its upper dir) leaves containers controllable: kill,
//! stop, pause and `rm -f` act and report success, the daemon starts again, writes (create,
//! commit, build, pull) fail with a clear error, and everything works again once space is
//! freed, including the record writes that had failed.

mod common;
use common::{eventually, stderr, Daemon};

/// Whether `n` more bytes fit on the data root.
fn fits(d: &Daemon, n: usize) -> bool {
    let probe = d.data_root.join("probe");
    let ok = std::fs::write(&probe, vec![0u8; n]).is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The command fails, saying that the disk is full.
fn fails_for_space(d: &Daemon, args: &[&str]) {
    let out = d.berth(args);
    assert!(
        !out.status.success(),
        "berth {args:?} succeeded on a full disk"
    );
    assert!(
        stderr(&out)
            .to_ascii_lowercase()
            .contains("no space left on device"),
        "berth {args:?}: {}",
        stderr(&out)
    );
}

fn state(d: &Daemon, name: &str) -> String {
    d.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        name,
    ])
}

fn info_warnings(d: &Daemon) -> String {
    let (code, body) = d.curl("GET", "/info", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["Warnings"].to_string()
}

#[test]
fn a_full_data_root_leaves_containers_controllable_and_recovers() {
    let mut d = Daemon::start_on_tmpfs(64);
    let reg = common::BerthRegistry::start("full");
    // An image only the registry has, to pull later.
    let fresh = format!("{}/full/fresh:1", reg.addr);
    d.ok(&[
        "run",
        "--name",
        "src",
        "busybox",
        "sh",
        "-c",
        "echo fresh > /fresh",
    ]);
    d.ok(&["commit", "src", &fresh]);
    d.ok(&["push", &fresh]);
    d.ok(&["rmi", &fresh]);
    d.ok(&["rm", "src"]);
    let ctx = d.data_root.parent().unwrap().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo built > /built\n",
    )
    .unwrap();

    for (name, cmd) in [
        ("victim", "sleep 300"),
        (
            "stopper",
            "trap 'exit 3' TERM; while true; do sleep 0.1; done",
        ),
        ("pauser", "sleep 300"),
        ("filler", "dd if=/dev/zero of=/fill bs=1M; sleep 300"),
    ] {
        d.ok(&["run", "-d", "--name", name, "busybox", "sh", "-c", cmd]);
    }
    // Not one page left (a record write needs at least one).
    eventually("the data root is full", || !fits(&d, 1));

    // Acting on containers works and says so.
    d.ok(&["kill", "victim"]);
    eventually("victim killed", || state(&d, "victim") == "exited 137");
    d.ok(&["stop", "-t", "5", "stopper"]);
    assert_eq!(state(&d, "stopper"), "exited 3");
    d.ok(&["pause", "pauser"]);
    assert_eq!(state(&d, "pauser"), "paused 0");
    d.ok(&["unpause", "pauser"]);
    assert_eq!(state(&d, "pauser"), "running 0");
    let warnings = info_warnings(&d);
    assert!(warnings.contains("could not be written"), "{warnings}");

    // Writes fail cleanly and leave nothing behind.
    fails_for_space(&d, &["create", "--name", "newbie", "busybox", "true"]);
    assert!(!d.ok(&["ps", "-a"]).contains("newbie"));
    fails_for_space(&d, &["commit", "pauser", "committed:1"]);
    fails_for_space(&d, &["build", "-t", "built:1", ctx.to_str().unwrap()]);
    fails_for_space(&d, &["pull", &fresh]);
    let images = d.ok(&["images"]);
    for name in ["committed", "built", "fresh"] {
        assert!(!images.contains(name), "{images}");
    }

    // The daemon starts on a full disk.
    d.crash();
    d.spawn();
    assert_eq!(state(&d, "pauser"), "running 0");
    d.ok(&["rm", "-f", "pauser", "stopper"]);

    // Space comes back: the records that could not be written are, and writes work.
    d.ok(&["rm", "-f", "filler"]);
    eventually("space is freed", || fits(&d, 1 << 20));
    let victim = d.ok(&["inspect", "-f", "{{.Id}}", "victim"]);
    let record = d
        .data_root
        .join("containers")
        .join(&victim)
        .join("container.json");
    eventually("victim's record written", || {
        std::fs::read_to_string(&record).is_ok_and(|r| r.contains("\"exited\""))
    });
    eventually("no warning left", || {
        !info_warnings(&d).contains("could not be written")
    });
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok");
    d.ok(&["commit", "victim", "committed:1"]);
    d.ok(&["build", "-t", "built:1", ctx.to_str().unwrap()]);
    assert_eq!(d.ok(&["run", "--rm", "built:1", "cat", "/built"]), "built");
    d.ok(&["pull", &fresh]);
    assert_eq!(d.ok(&["run", "--rm", &fresh, "cat", "/fresh"]), "fresh");
    d.ok(&["rm", "-f", "victim"]);
}
