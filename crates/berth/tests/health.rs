//! Health checks: probes run as execs in the container, the status moves starting → healthy /
//! unhealthy as Docker's does, a probe over its timeout is killed, the image's HEALTHCHECK is
//! inherited, ps shows and filters the status, and monitoring resumes after a daemon crash.

mod common;
use common::{eventually, stderr, stdout, Daemon};
use serde_json::Value;

fn inspect(d: &Daemon, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).expect("inspect JSON");
    v[0].clone()
}

fn health(d: &Daemon, name: &str) -> Value {
    inspect(d, name)["State"]["Health"].clone()
}

fn status(d: &Daemon, name: &str) -> String {
    health(d, name)["Status"].as_str().unwrap_or("").to_string()
}

/// Names `ps` lists with `--filter health=<h>`.
fn ps_health(d: &Daemon, h: &str) -> Vec<String> {
    d.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("health={h}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(String::from)
    .collect()
}

fn ps_status(d: &Daemon, name: &str) -> String {
    d.ok(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ])
}

#[test]
fn status_follows_the_probe() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--health-cmd",
        "echo probing; test -e /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "200ms",
        "busybox",
        "sleep",
        "120",
    ]);
    d.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "120"]);
    let cfg = inspect(&d, "web")["Config"]["Healthcheck"].clone();
    assert_eq!(
        cfg["Test"],
        serde_json::json!(["CMD-SHELL", "echo probing; test -e /tmp/ok"])
    );
    assert_eq!(cfg["Interval"], 200_000_000);
    assert_eq!(cfg["Retries"], 2);

    // Failures inside the start period do not count: still starting.
    eventually("failed probes logged", || {
        health(&d, "web")["Log"]
            .as_array()
            .is_some_and(|l| l.len() >= 3)
    });
    let h = health(&d, "web");
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let last = &h["Log"][0];
    assert_eq!(last["ExitCode"], 1, "{h}");
    assert_eq!(last["Output"], "probing\n", "{h}");
    assert!(last["Start"].as_str().unwrap().ends_with('Z'), "{h}");
    assert!(last["End"].as_str().unwrap().ends_with('Z'), "{h}");
    assert!(ps_status(&d, "web").ends_with("(health: starting)"));
    assert_eq!(ps_health(&d, "starting"), ["web"]);
    assert_eq!(ps_health(&d, "none"), ["plain"]);
    assert!(inspect(&d, "plain")["State"].get("Health").is_none());

    d.ok(&["exec", "web", "touch", "/tmp/ok"]);
    eventually("healthy", || status(&d, "web") == "healthy");
    assert!(ps_status(&d, "web").starts_with("Up "));
    assert!(ps_status(&d, "web").ends_with("(healthy)"));
    assert_eq!(ps_health(&d, "healthy"), ["web"]);
    assert!(ps_health(&d, "unhealthy").is_empty());

    // Once healthy, the start period no longer protects: two failures make it unhealthy.
    d.ok(&["exec", "web", "rm", "/tmp/ok"]);
    eventually("unhealthy", || status(&d, "web") == "unhealthy");
    let h = health(&d, "web");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    eventually("a full log", || {
        health(&d, "web")["Log"].as_array().map(Vec::len) == Some(5)
    });
    assert!(ps_status(&d, "web").ends_with("(unhealthy)"));
    assert_eq!(ps_health(&d, "unhealthy"), ["web"]);
    let out = d.berth(&["ps", "--filter", "health=sick"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Unrecognised filter value for health: sick"),
        "{}",
        stderr(&out)
    );

    // Probing stops with the container, which then reports unhealthy.
    d.ok(&["exec", "web", "touch", "/tmp/ok"]);
    eventually("healthy again", || status(&d, "web") == "healthy");
    d.ok(&["stop", "-t", "0", "web"]);
    let stopped = health(&d, "web");
    assert_eq!(stopped["Status"], "unhealthy");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        health(&d, "web")["Log"],
        stopped["Log"],
        "probed while stopped"
    );
    // A new start begins with starting again and keeps the log.
    d.ok(&["start", "web"]);
    let h = health(&d, "web");
    assert_eq!(h["FailingStreak"], 0);
    assert!(!h["Log"].as_array().unwrap().is_empty());
    eventually("healthy after restart", || status(&d, "web") == "healthy");
    d.ok(&["rm", "-f", "web", "plain"]);
}

#[test]
fn probe_over_its_timeout_is_killed() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "exec sleep 77",
        "--health-timeout",
        "200ms",
        "--health-interval",
        "250ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "120",
    ]);
    eventually("unhealthy after a timeout", || {
        status(&d, "slow") == "unhealthy"
    });
    let h = health(&d, "slow");
    let last = &h["Log"][0];
    assert_eq!(last["ExitCode"], -1, "{h}");
    assert_eq!(
        last["Output"], "Health check exceeded timeout (200ms)",
        "{h}"
    );
    // Killed probes do not pile up: at most the one running now.
    eventually("several timed-out probes", || {
        health(&d, "slow")["Log"]
            .as_array()
            .is_some_and(|l| l.len() >= 4)
    });
    let procs = d.ok(&["exec", "slow", "ps"]);
    let sleeping = procs.lines().filter(|l| l.contains("sleep 77")).count();
    assert!(sleeping <= 1, "probes left running:\n{procs}");
    d.ok(&["rm", "-f", "slow"]);
}

#[test]
fn image_healthcheck_is_inherited() {
    let d = Daemon::start();
    d.ok(&["run", "-d", "--name", "base", "busybox", "sleep", "120"]);
    d.ok(&[
        "commit",
        "-c",
        "HEALTHCHECK --interval=200ms --retries=1 CMD test -e /etc/passwd",
        "base",
        "checked:1",
    ]);
    d.ok(&["rm", "-f", "base"]);
    let img: Value = serde_json::from_str(&d.ok(&["image", "inspect", "checked:1"])).unwrap();
    assert_eq!(
        img[0]["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -e /etc/passwd"])
    );

    d.ok(&["run", "-d", "--name", "inh", "checked:1", "sleep", "120"]);
    eventually("inherited check healthy", || status(&d, "inh") == "healthy");
    // Flags override single settings; the image's test stays.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "tuned",
        "--health-interval",
        "300ms",
        "checked:1",
        "sleep",
        "120",
    ]);
    let cfg = inspect(&d, "tuned")["Config"]["Healthcheck"].clone();
    assert_eq!(
        cfg["Test"],
        serde_json::json!(["CMD-SHELL", "test -e /etc/passwd"])
    );
    assert_eq!(cfg["Interval"], 300_000_000);
    assert_eq!(cfg["Retries"], 1);
    eventually("tuned check healthy", || status(&d, "tuned") == "healthy");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "checked:1",
        "sleep",
        "120",
    ]);
    assert_eq!(
        inspect(&d, "off")["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );
    assert!(ps_health(&d, "none").contains(&"off".to_string()));
    // A container committed with a health check passes it on.
    d.ok(&["commit", "inh", "checked:2"]);
    let img: Value = serde_json::from_str(&d.ok(&["image", "inspect", "checked:2"])).unwrap();
    assert_eq!(img[0]["Config"]["Healthcheck"]["Interval"], 200_000_000);
    d.ok(&["rm", "-f", "inh", "tuned", "off"]);
}

#[test]
fn monitoring_resumes_after_daemon_crash() {
    let mut d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 120",
    ]);
    eventually("healthy", || status(&d, "svc") == "healthy");
    let before = health(&d, "svc")["Log"].as_array().unwrap().len();
    d.crash();
    d.spawn();
    eventually("healthy after the crash", || status(&d, "svc") == "healthy");
    assert!(health(&d, "svc")["Log"].as_array().unwrap().len() >= before.min(5));
    d.ok(&["exec", "svc", "rm", "/tmp/ok"]);
    eventually("unhealthy: probes run again", || {
        status(&d, "svc") == "unhealthy"
    });
    d.ok(&["rm", "-f", "svc"]);
}

#[test]
fn bad_health_settings_are_refused() {
    let d = Daemon::start();
    let out = d.berth(&["run", "--health-interval", "1q", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(
            "invalid argument \"1q\" for \"--health-interval\" flag: time: unknown unit \"q\" in duration \"1q\""
        ),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&[
        "run",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--no-healthcheck conflicts with --health-* options"));
    let (code, body) = d.curl(
        "POST",
        "/v1.50/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"Interval":100}}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Interval in Healthcheck cannot be less than 1ms"),
        "{body}"
    );
    let (code, body) = d.curl(
        "POST",
        "/v1.50/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"Retries":-1}}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Retries in Healthcheck cannot be negative"));
    d.ok(&["create", "--name", "base", "busybox", "true"]);
    let out = d.berth(&["commit", "-c", "HEALTHCHECK --interval=1q CMD true", "base"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("time: unknown unit \"q\" in duration \"1q\""),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", "base"]);
}

#[test]
fn docker_cli_health() {
    let d = Daemon::start();
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "dh",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "busybox",
        "sleep",
        "120",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("docker sees healthy", || {
        let o = d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "dh"]);
        stdout(&o).trim() == "healthy"
    });
    let o = d.docker(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    let line = stdout(&o);
    assert!(
        line.starts_with("dh Up ") && line.trim_end().ends_with("(healthy)"),
        "{line}"
    );
    let o = d.docker(&[
        "inspect",
        "-f",
        "{{.Config.Healthcheck.Test}} {{len .State.Health.Log}}",
        "dh",
    ]);
    assert!(
        stdout(&o).starts_with("[CMD-SHELL true] "),
        "{}",
        stdout(&o)
    );
    assert!(d.docker(&["rm", "-f", "dh"]).status.success());
}
