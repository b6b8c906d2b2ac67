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
