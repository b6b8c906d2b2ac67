//! Interactive use on a real pseudo-terminal: `run -it`, detaching with Ctrl-P Ctrl-Q,
//! `attach`, `exec -it`, with the berth CLI and the docker CLI.

mod common;
use common::{stdout, Daemon};
use std::process::Command;

/// Run `cmd` on a pty following `steps`; returns (exit code, what the terminal showed).
fn drive(steps: &str, cmd: &[&str]) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pty_drive.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(steps)
        .arg("--")
        .args(cmd)
        .output()
        .expect("python3");
    (out.status.code().unwrap_or(-1), stdout(&out))
}

#[test]
fn run_it_detach_attach_exec() {
    let d = Daemon::start();
    let host = d.host();
    let berth = common::berth_bin();
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "echo $((6*7)); tty\r"}, {"expect": "/dev/pts/"}, {"send": "\u0010\u0011"}]"##,
        &[
            berth, "-H", &host, "run", "-it", "--name", "tt", "busybox", "sh",
        ],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("42\r\n/dev/pts/0"), "{shown}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "tt"]), "true");
    let (code, shown) = drive(
        r##"[{"send": "\r"}, {"expect": "# "}, {"send": "exit 3\r"}]"##,
        &[berth, "-H", &host, "attach", "tt"],
    );
    assert_eq!(code, 3, "{shown}");
    d.ok(&["start", "tt"]);
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "stty size; exit 4\r"}]"##,
        &[
            "sh",
            "-c",
            &format!("stty rows 33 cols 91; exec {berth} -H {host} exec -it tt sh"),
        ],
    );
    assert_eq!(code, 4, "{shown}");
    assert!(shown.contains("33 91"), "resize not applied: {shown}");
    d.ok(&["rm", "-f", "tt"]);

    // The docker CLI: hijacked attach, resize, raw TTY.
    let docker_host = format!("DOCKER_HOST={host}");
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "stty size; exit 5\r"}]"##,
        &[
            "sh",
            "-c",
            &format!(
                "stty rows 40 cols 120; exec env {docker_host} docker run --rm -it busybox sh"
            ),
        ],
    );
    assert_eq!(code, 5, "{shown}");
    assert!(shown.contains("40 120"), "{shown}");
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "\u0010\u0011"}]"##,
        &[
            "env",
            &docker_host,
            "docker",
            "run",
            "-it",
            "--name",
            "dt",
            "busybox",
            "sh",
        ],
    );
    assert_eq!(code, 0, "{shown}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dt"]), "true");
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "echo in-exec; exit 6\r"}]"##,
        &["env", &docker_host, "docker", "exec", "-it", "dt", "sh"],
    );
    assert_eq!(code, 6, "{shown}");
    assert!(shown.contains("in-exec"), "{shown}");
    d.ok(&["rm", "-f", "dt"]);
}

/// Detach keys end exec sessions as well as attaches: `berth exec --detach-keys`, `berth
/// start -ai --detach-keys`, and the docker CLI's `exec -it` with the default Ctrl-P Ctrl-Q
/// (which the daemon spots: the docker CLI sends the keys on); the shells go on.
#[test]
fn detach_keys_for_exec_and_start() {
    let d = Daemon::start();
    let host = d.host();
    let berth = common::berth_bin();
    d.ok(&["run", "-dit", "--name", "dx", "busybox", "sh"]);
    let shells = || {
        d.ok(&["exec", "dx", "pidof", "sh"])
            .split_whitespace()
            .count()
    };
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "echo in-exec\r"}, {"expect": "in-exec\r\n"}, {"send": "\u0001x"}]"##,
        &[
            berth,
            "-H",
            &host,
            "exec",
            "-it",
            "--detach-keys",
            "ctrl-a,x",
            "dx",
            "sh",
        ],
    );
    assert_eq!(code, 0, "{shown}");
    // The container's shell and the detached one.
    assert_eq!(shells(), 2);

    let docker_host = format!("DOCKER_HOST={host}");
    let (code, shown) = drive(
        r##"[{"expect": "# "}, {"send": "\u0010\u0011"}]"##,
        &["env", &docker_host, "docker", "exec", "-it", "dx", "sh"],
    );
    // The docker CLI reports the detach of an exec as "read escape sequence" (exit 1).
    assert!(
        code == 0 || (code == 1 && shown.contains("read escape sequence")),
        "{code}: {shown}"
    );
    assert_eq!(shells(), 3);

    d.ok(&["stop", "-t", "0", "dx"]);
    let (code, shown) = drive(
        r##"[{"send": "\r"}, {"expect": "# "}, {"send": "\u0001x"}]"##,
        &[
            berth,
            "-H",
            &host,
            "start",
            "-ai",
            "--detach-keys",
            "ctrl-a,x",
            "dx",
        ],
    );
    assert_eq!(code, 0, "{shown}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dx"]), "true");
    d.ok(&["rm", "-f", "dx"]);
}
