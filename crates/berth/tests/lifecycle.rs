//! System tests of the container lifecycle through the berth CLI.

mod common;
use common::{eventually, stderr, stdout, Daemon};

#[test]
fn run_rm_echo_and_exit_codes() {
    let d = Daemon::start();
    let out = d.berth(&["run", "--rm", "busybox", "echo", "hello from berth"]);
    assert_eq!(stdout(&out), "hello from berth\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    assert!(d.container_ids().is_empty(), "--rm left a container");

    let out = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    assert_eq!(out.status.code(), Some(3));

    let out = d.berth(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );

    let out = d.berth(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));

    // A registry on loopback where nothing listens: the pull fails without leaving the host.
    let out = d.berth(&["run", "--rm", "127.0.0.1:9/nosuchimage"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Unable to find image '127.0.0.1:9/nosuchimage:latest' locally"),
        "{}",
        stderr(&out)
    );

    let out = d.berth(&["run", "--no-such-flag", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    eventually("auto-removed containers to go", || {
        d.container_ids().is_empty()
    });
}

#[test]
fn stdin_env_workdir_user() {
    let d = Daemon::start();
    let out = d.berth_stdin(
        &["run", "--rm", "-i", "busybox", "cat"],
        Some(b"piped input\n"),
    );
    assert_eq!(stdout(&out), "piped input\n", "{}", stderr(&out));
    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u) $HOME",
    ]);
    assert_eq!(out, "1 /tmp 65534 /home");
    let out = d.ok(&[
        "run",
        "--rm",
        "-u",
        "33:0",
        "-h",
        "myhost",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g; hostname",
    ]);
    assert_eq!(out, "33\n0\nmyhost");
    let out = d.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "from",
        "entrypoint",
    ]);
    assert_eq!(out, "from entrypoint");
}

#[test]
fn detached_lifecycle() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "role=test",
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    assert_eq!(id.len(), 64);
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps, "web running");
    assert_eq!(d.ok(&["ps", "-q"]), &id[..12]);
    assert_eq!(
        d.ok(&["ps", "-q", "--no-trunc", "--filter", "label=role=test"]),
        id
    );
    assert_eq!(d.ok(&["ps", "-q", "--filter", "name=nomatch"]), "");
    eventually("log line", || d.ok(&["logs", "web"]) == "started");
    assert_eq!(
        d.ok(&["exec", "web", "sh", "-c", "echo in exec; hostname"]),
        format!("in exec\n{}", &id[..12])
    );
    let out = d.berth(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let out = d.berth(&["exec", "web", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stdout(&out).contains("executable file not found"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "web"]),
        "running /web"
    );
    d.ok(&["pause", "web"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "web"]),
        "paused"
    );
    d.ok(&["unpause", "web"]);
    d.ok(&["rename", "web", "web2"]);
    d.ok(&["stop", "web2"]);
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web2"
        ]),
        "exited 7"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "--format", "{{.Status}}"])
            .split(' ')
            .take(2)
            .collect::<Vec<_>>(),
        vec!["Exited", "(7)"]
    );
    d.ok(&["start", "web2"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "web2"]),
        "true"
    );
    d.ok(&["restart", "-t", "1", "web2"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "web2"]),
        "true"
    );
    d.ok(&["kill", "web2"]);
    assert_eq!(d.ok(&["wait", "web2"]), "137");
    d.ok(&["rm", "web2"]);
    assert!(d.container_ids().is_empty());
}

#[test]
fn create_start_attach_wait() {
    let d = Daemon::start();
    let id = d.ok(&[
        "create",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo created-output; exit 4",
    ]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", &id]),
        "created"
    );
    let out = d.berth(&["start", "-a", "c1"]);
    assert_eq!(stdout(&out), "created-output\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(d.ok(&["logs", "c1"]), "created-output");
    let ts = d.ok(&["logs", "-t", "c1"]);
    assert!(ts.ends_with(" created-output") && ts.contains('T'), "{ts}");
    d.ok(&["rm", "c1"]);
}

#[test]
fn logs_follow_and_tail() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; sleep 1; echo last",
    ]);
    eventually("first lines", || {
        d.ok(&["logs", "counter"]).lines().count() >= 5
    });
    assert_eq!(d.ok(&["logs", "--tail", "2", "counter"]), "line4\nline5");
    let out = d.berth(&["logs", "-f", "counter"]);
    assert!(stdout(&out).ends_with("line5\nlast\n"), "{}", stdout(&out));
    d.ok(&["rm", "counter"]);
}

#[test]
fn init_and_restart_policies() {
    let d = Daemon::start();
    let out = d.ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert!(out.starts_with("/sbin/docker-init -- sh"), "{out}");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    eventually("two restarts", || {
        d.ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ]) == "2 exited"
    });
    assert_eq!(d.ok(&["logs", "flaky"]), "run\nrun\nrun");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    eventually("a restart", || {
        d.ok(&["inspect", "-f", "{{.RestartCount}}", "always"]) != "0"
    });
    d.ok(&["stop", "always"]);
    let count = d.ok(&["inspect", "-f", "{{.RestartCount}}", "always"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "always"
        ]),
        format!("{count} exited")
    );
    let out = d.berth(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = d.berth(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("invalid restart policy"),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", "-f", "flaky", "always"]);
}

#[test]
fn ps_filters_env_file_and_log_times() {
    let d = Daemon::start();
    let dir = std::env::temp_dir().join(format!("berth-envfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n\nOTHER=2\n").unwrap();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "busybox",
            "sh",
            "-c",
            "echo $FROM_FILE$OTHER"
        ]),
        "yes2"
    );
    d.ok(&["run", "--name", "ok0", "busybox", "true"]);
    assert_eq!(
        d.berth(&["run", "--name", "bad3", "busybox", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    d.ok(&["create", "--name", "fresh", "busybox"]);
    assert_eq!(
        d.ok(&["ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"]),
        "bad3"
    );
    assert_eq!(
        d.ok(&[
            "ps",
            "-a",
            "--filter",
            "status=created",
            "--format",
            "{{.Names}}"
        ]),
        "fresh"
    );
    assert_eq!(d.ok(&["ps", "-l", "--format", "{{.Names}}"]), "fresh");
    assert_eq!(
        d.ok(&["ps", "-n", "2", "--format", "{{.Names}}"]),
        "fresh\nbad3"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "-q", "--filter", "ancestor=busybox"])
            .lines()
            .count(),
        3
    );
    let sized = d.ok(&[
        "ps",
        "-a",
        "-s",
        "--filter",
        "name=ok0",
        "--format",
        "{{.Size}}",
    ]);
    assert!(sized.contains("virtual"), "{sized}");
    let json_line = d.ok(&["ps", "-a", "--filter", "name=bad3", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json_line).unwrap();
    assert_eq!(v["Names"], "bad3");
    // Log time filters: the line was written less than an hour ago.
    d.ok(&["run", "--name", "talker", "busybox", "echo", "said"]);
    assert_eq!(d.ok(&["logs", "--since", "1h", "talker"]), "said");
    assert_eq!(d.ok(&["logs", "--until", "1h", "talker"]), "");
    assert_eq!(
        d.ok(&["logs", "--until", "2000-01-01T00:00:00Z", "talker"]),
        ""
    );
    d.ok(&["rm", "ok0", "bad3", "fresh", "talker"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--stop-signal` and `--stop-timeout`: `stop` sends that signal, waits that long, then kills.
#[test]
fn stop_signal_and_timeout() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got usr1' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    eventually("the trap is set", || {
        d.ok(&["logs", "stubborn"]).contains("ready")
    });
    let cfg = d.ok(&[
        "inspect",
        "-f",
        "{{.Config.StopSignal}} {{.Config.StopTimeout}}",
        "stubborn",
    ]);
    assert_eq!(cfg, "SIGUSR1 1");
    d.ok(&["stop", "stubborn"]);
    assert!(d.ok(&["logs", "stubborn"]).contains("got usr1"));
    // The trap kept it alive: the timeout ran out and it was killed.
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]),
        "137"
    );
    d.ok(&["rm", "stubborn"]);
}

/// `kill`, `stop -t 0`, `restart` and `rm -f` answer only once they are done: an inspect
/// sent right after each (raw HTTP over the socket) sees the container stopped with its exit
/// code, running again, or gone (its name free for a new container), every time.
#[test]
fn kill_stop_restart_rm_are_done_when_they_answer() {
    let d = Daemon::start();
    let state = |name: &str| -> serde_json::Value {
        let (code, body) = d.curl("GET", &format!("/containers/{name}/json"), None);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["State"].clone()
    };
    let create = |name: &str| {
        let (code, body) = d.curl(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(r#"{"Image":"busybox","Cmd":["sleep","1000"]}"#),
        );
        assert_eq!(code, 201, "{body}");
    };
    let post = |path: &str, want: u16| {
        let (code, body) = d.curl("POST", path, None);
        assert_eq!(code, want, "{path}: {body}");
    };
    create("kl");
    for i in 0..10 {
        post("/containers/kl/start", 204);
        post("/containers/kl/kill", 204);
        let s = state("kl");
        assert_eq!(s["Running"], false, "kill, round {i}: {s}");
        assert_eq!(s["ExitCode"], 137, "kill, round {i}: {s}");
        assert_eq!(s["Status"], "exited", "kill, round {i}: {s}");

        post("/containers/kl/start", 204);
        post("/containers/kl/stop?t=0", 204);
        let s = state("kl");
        assert_eq!(s["Running"], false, "stop, round {i}: {s}");
        assert_eq!(s["ExitCode"], 137, "stop, round {i}: {s}");

        post("/containers/kl/start", 204);
        let before = state("kl")["Pid"].as_i64().unwrap();
        post("/containers/kl/restart?t=0", 204);
        let s = state("kl");
        assert_eq!(s["Running"], true, "restart, round {i}: {s}");
        assert_ne!(
            s["Pid"].as_i64().unwrap(),
            before,
            "restart, round {i}: {s}"
        );

        let (code, body) = d.curl("DELETE", "/containers/kl?force=1", None);
        assert_eq!(code, 204, "rm -f, round {i}: {body}");
        let (code, _) = d.curl("GET", "/containers/kl/json", None);
        assert_eq!(code, 404, "rm -f, round {i}");
        create("kl");
    }
    // Another signal is delivered and the container goes on (sleep as PID 1 ignores
    // SIGTERM); an unknown signal is a 400, a stopped container cannot be killed.
    post("/containers/kl/start", 204);
    post("/containers/kl/kill?signal=TERM", 204);
    assert_eq!(state("kl")["Running"], true);
    post("/containers/kl/kill?signal=NOSUCH", 400);
    post("/containers/kl/kill", 204);
    post("/containers/kl/kill", 409);
    let (code, _) = d.curl("DELETE", "/containers/kl?force=1", None);
    assert_eq!(code, 204);
}
