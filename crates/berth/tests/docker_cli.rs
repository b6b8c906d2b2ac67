//! The real docker CLI (28.x, on PATH) drives berth unchanged.

mod common;
use common::{stderr, stdout, Daemon};

fn have_docker() -> bool {
    std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn docker_cli_runs_containers() {
    assert!(
        have_docker(),
        "the docker CLI must be on PATH for interop tests"
    );
    let d = Daemon::start();
    let out = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(stdout(&out).trim(), "1.50", "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "busybox", "echo", "hello via docker"]);
    assert_eq!(stdout(&out), "hello via docker\n", "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo e >&2; exit 9"]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(9), "e\n"));
    let out = d.docker(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "dk",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 60",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&["ps", "--format", "{{.Names}}\t{{.Image}}\t{{.Command}}"]);
    assert!(
        stdout(&out).starts_with("dk\tbusybox\t\"sh -c"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    let out = d.docker(&["exec", "dk", "cat", "/etc/hostname"]);
    assert_eq!(stdout(&out).trim().len(), 12, "{}", stderr(&out));
    let out = d.docker(&["exec", "dk", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let out = d.docker(&["exec", "dk", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("executable file not found"),
        "{}",
        stdout(&out)
    );
    let out = d.docker(&["logs", "dk"]);
    assert_eq!(stdout(&out), "ready\n");
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Config.Image}}",
        "dk",
    ]);
    assert_eq!(stdout(&out).trim(), "true busybox");
    let out = d.docker(&["rm", "dk"]);
    assert_eq!(out.status.code(), Some(1));
    let out = d.docker(&["rm", "-f", "dk"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(stdout(&out).trim(), "busybox:latest", "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "nosuchimage"]);
    assert_eq!(out.status.code(), Some(125));
}
