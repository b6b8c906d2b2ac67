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
