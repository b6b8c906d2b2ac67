//! Bad input gets Docker's errors and exit codes, and nothing is lost.

mod common;
use common::{stderr, Daemon};

#[test]
fn api_and_cli_errors() {
    let d = Daemon::start();
    let (code, body) = d.curl("POST", "/v1.50/containers/create", Some("{not json"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    let (code, body) = d.curl("GET", "/v1.50/containers/nosuch/json", None);
    assert_eq!(
        (code, body.trim()),
        (404, r#"{"message":"No such container: nosuch"}"#)
    );
    let (code, body) = d.curl("GET", "/v1.99/version", None);
    assert_eq!(code, 400);
    assert!(body.contains("client version 1.99 is too new"), "{body}");
    let (code, _) = d.curl("HEAD", "/_ping", None);
    assert_eq!(code, 200);

    d.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "60"]);
    let out = d.berth(&["run", "-d", "--name", "busy", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Conflict. The container name \"/busy\" is already in use"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["rm", "busy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("container is running: stop the container before removing or force remove"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such container: nosuch"));
    let out = d.berth(&["run", "--rm", "-m", "1k", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", "-f", "busy"]);

    // A second daemon on the same data root is refused.
    let other = format!("/run/bt-second-{}", std::process::id());
    let out = std::process::Command::new(common::berth_bin())
        .args(["daemon", "--data-root"])
        .arg(&d.data_root)
        .args([
            "--exec-root",
            &other,
            "-H",
            &format!("unix://{other}/b.sock"),
        ])
        .args(["--config-file", "/nonexistent/berth-test.json"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&other);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another berth daemon is using"),
        "{}",
        stderr(&out)
    );
}

/// The `message` of an API error body.
fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["message"].as_str().unwrap_or(body).to_string()
}

#[test]
fn bad_parameters_are_400_not_200_or_500() {
    let d = Daemon::start();
    d.ok(&["create", "--name", "quiet", "busybox", "true"]);

    // Unparsable `since`/`until` of logs and events.
    for key in ["since", "until"] {
        for path in [
            format!("/containers/quiet/logs?stdout=1&{key}=abc"),
            format!("/events?{key}=abc"),
            format!("/events?{key}=1.x"),
        ] {
            let (code, body) = d.curl("GET", &path, None);
            assert_eq!(code, 400, "{path}: {body}");
            assert!(
                message(&body).starts_with(&format!("invalid value for \"{key}\"")),
                "{path}: {body}"
            );
        }
    }
    let (code, body) = d.curl(
        "GET",
        "/containers/quiet/logs?stdout=1&since=1700000000.5&until=0",
        None,
    );
    assert_eq!(code, 200, "{body}");

    // OomScoreAdj outside Docker's range.
    for v in [-5000, 1001] {
        let (code, body) = d.curl(
            "POST",
            "/containers/create",
            Some(&format!(
                r#"{{"Image":"busybox","HostConfig":{{"OomScoreAdj":{v}}}}}"#
            )),
        );
        assert_eq!(code, 400, "{body}");
        assert_eq!(
            message(&body),
            format!("Invalid value {v}, range for oom score adj is [-1000, 1000]")
        );
    }
    let out = d.docker(&["create", "--oom-score-adj", "-5000", "busybox"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("range for oom score adj is [-1000, 1000]"),
        "{}",
        stderr(&out)
    );
    let (code, body) = d.curl(
        "POST",
        "/containers/create?name=edge",
        Some(r#"{"Image":"busybox","HostConfig":{"OomScoreAdj":-1000}}"#),
    );
    assert_eq!(code, 201, "{body}");
    d.ok(&["rm", "edge"]);

    // Names longer than a file name may be: 400 with a short message, nothing created.
    let long = "a".repeat(5000);
    let too_long = |kind: &str, (code, body): (u16, String)| {
        assert_eq!(code, 400, "{kind}: {body}");
        assert_eq!(
            message(&body),
            format!("{kind} name is too long (5000 characters), the limit is 255")
        );
    };
    too_long(
        "volume",
        d.curl(
            "POST",
            "/volumes/create",
            Some(&format!(r#"{{"Name":"{long}"}}"#)),
        ),
    );
    too_long(
        "volume",
        d.curl(
            "POST",
            "/containers/create",
            Some(&format!(
                r#"{{"Image":"busybox","HostConfig":{{"Binds":["{long}:/data"]}}}}"#
            )),
        ),
    );
    too_long(
        "network",
        d.curl(
            "POST",
            "/networks/create",
            Some(&format!(r#"{{"Name":"{long}"}}"#)),
        ),
    );
    too_long(
        "container",
        d.curl(
            "POST",
            &format!("/containers/create?name={long}"),
            Some(r#"{"Image":"busybox"}"#),
        ),
    );
    too_long(
        "container",
        d.curl(
            "POST",
            &format!("/containers/quiet/rename?name={long}"),
            None,
        ),
    );
    let out = d.berth(&["volume", "create", &long]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("volume name is too long"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
    assert!(!d.ok(&["network", "ls"]).contains("aaaa"));
    // The longest name allowed works.
    let max = "v".repeat(255);
    d.ok(&["volume", "create", &max]);
    d.ok(&["volume", "rm", &max]);
    d.ok(&["rm", "quiet"]);
}

/// Run berth with its stdout read for one byte and then closed, as `| head -c1` does.
fn closed_early(d: &Daemon, args: &[&str]) -> std::process::Output {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::berth_bin())
        .arg("-H")
        .arg(d.host())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap();
    drop(out);
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_the_client_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let d = Daemon::start();
    d.ok(&["run", "--name", "chatty", "busybox", "seq", "1", "100000"]);
    // Each prints far more than a pipe holds, so it writes on after the reader has gone.
    let wide = "{{.ID}}".repeat(4000);
    let names = vec!["busybox"; 200];
    let inspect: Vec<&str> = ["image", "inspect"].into_iter().chain(names).collect();
    let cases: [&[&str]; 4] = [
        &["ps", "-a", "--no-trunc", "--format", &wide],
        &["images", "--no-trunc", "--format", &wide],
        &["logs", "chatty"],
        &inspect,
    ];
    for args in cases {
        let out = closed_early(&d, args);
        assert_eq!(
            (out.status.signal(), stderr(&out).as_str()),
            (Some(libc::SIGPIPE), ""),
            "berth {}: {:?}",
            args[0],
            out.status
        );
    }
    d.ok(&["rm", "chatty"]);
}
