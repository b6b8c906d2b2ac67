//! What a new SDK user meets: docker-py's own flows against berthd (exec output, attach,
//! filters, login/push/registry data/pull), and the API details behind them that SDKs read
//! (ps filters and their errors, start without a body, `/distribution`, `/plugins`, `/info`'s
//! registry config).

mod common;
use common::{BerthRegistry, Daemon};
use std::process::Command;

/// A Python interpreter that has docker-py (`python3-docker`).
fn python_with_docker() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import docker"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no python3 with docker-py: apt-get install python3-docker")
}

/// A query value percent-encoded (curl would take braces and brackets as globs).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn docker_py_flows() {
    let d = Daemon::start();
    let reg = BerthRegistry::start("sdkpy");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_python.py");
    let out = Command::new(python_with_docker())
        .arg(script)
        .arg(&d.sock)
        .arg(&reg.addr)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "docker-py flows failed:\n{}\n{}\n--- daemon log ---\n{}",
        common::stdout(&out),
        common::stderr(&out),
        d.daemon_log()
    );
    assert!(common::stdout(&out).contains("sdk flows ok"));
}

#[test]
fn api_details_sdks_rely_on() {
    let d = Daemon::start();
    d.ok(&["create", "--name", "pp", "-p", "8080:80", "busybox", "true"]);
    let list = |filters: &str| {
        d.curl(
            "GET",
            &format!("/containers/json?all=1&filters={}", enc(filters)),
            None,
        )
    };
    let (code, body) = list(r#"{"publish":["80-81/tcp"]}"#);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"/pp\""), "{body}");
    let (code, body) = list(r#"{"publish":["8080:80"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("filter for 'publish' should not contain ':'"),
        "{body}"
    );
    let (code, body) = list(r#"{"expose":["x"]}"#);
    assert_eq!(code, 400, "{body}");
    for (f, listed) in [
        (r#"{"is-task":["false"]}"#, true),
        (r#"{"is-task":["true"]}"#, false),
        (r#"{"isolation":["default"]}"#, true),
        (r#"{"volume":["/nowhere"]}"#, false),
    ] {
        let (code, body) = list(f);
        assert_eq!(
            (code, body.contains("\"/pp\"")),
            (200, listed),
            "{f}: {body}"
        );
    }
    let (code, body) = list(r#"{"is-task":["maybe"]}"#);
    assert_eq!(code, 400, "{body}");

    // A host config on start (old clients) is refused, not dropped; an empty object is fine.
    let (code, body) = d.curl(
        "POST",
        "/v1.24/containers/pp/start",
        Some(r#"{"Binds":["/tmp:/t"]}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("non-empty request body was deprecated"),
        "{body}"
    );
    let (code, body) = d.curl("POST", "/containers/pp/start", Some("{}"));
    assert_eq!(code, 204, "{body}");

    // A registry that does not have the image: dockerd's 401.
    let reg = BerthRegistry::start("sdkdist");
    let (code, body) = d.curl(
        "GET",
        &format!("/distribution/{}/none/such:1/json", reg.addr),
        None,
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("No such image"), "{body}");

    let (code, body) = d.curl("GET", "/plugins", None);
    assert_eq!((code, body.trim()), (200, "[]"));
    let (code, body) = d.curl(
        "GET",
        &format!("/plugins?filters={}", enc(r#"{"bad":["x"]}"#)),
        None,
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = d.curl("GET", "/plugins/vieux/sshfs:latest/json", None);
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains(r#"plugin \"vieux/sshfs:latest\" not found"#),
        "{body}"
    );

    let (code, body) = d.curl("GET", "/info", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rc = &v["RegistryConfig"];
    assert!(
        rc["InsecureRegistryCIDRs"]
            .as_array()
            .is_some_and(|a| a.contains(&"127.0.0.0/8".into())),
        "{rc}"
    );
    assert_eq!(rc["IndexConfigs"]["docker.io"]["Secure"], true, "{rc}");
    for k in [
        "IndexServerAddress",
        "OSVersion",
        "NEventsListener",
        "FirewallBackend",
        "HttpProxy",
    ] {
        assert!(v.get(k).is_some(), "{k} missing: {body}");
    }
}

/// Settings berth cannot carry out are refused with dockerd's words, not dropped; a followed
/// log with `until` ends there (docker-py's `logs(stream=True, follow=True, until=...)`).
#[test]
fn refused_settings_and_follow_until() {
    let d = Daemon::start();
    for (hc, status, want) in [
        (
            r#"{"StorageOpt":{"size":"1G"}}"#,
            400,
            "--storage-opt is supported only for overlay over xfs",
        ),
        (
            r#"{"Isolation":"hyperv"}"#,
            400,
            "linux only supports 'default'",
        ),
        (
            r#"{"VolumeDriver":"nfsplug"}"#,
            404,
            r#"plugin \"nfsplug\" not found"#,
        ),
    ] {
        let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{hc}}}"#);
        let (code, out) = d.curl("POST", "/containers/create", Some(&body));
        assert_eq!(code, status, "{hc}: {out}");
        assert!(out.contains(want), "{hc}: {out}");
    }
    let (code, out) = d.curl(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Isolation":"default","VolumeDriver":"local","StorageOpt":{}}}"#),
    );
    assert_eq!(code, 201, "{out}");
    // NetworkDisabled: no interface but loopback, whatever network was asked for.
    let (code, out) = d.curl(
        "POST",
        "/containers/create?name=nonet",
        Some(r#"{"Image":"busybox","Cmd":["cat","/proc/net/dev"],"NetworkDisabled":true,"HostConfig":{"NetworkMode":"bridge"}}"#),
    );
    assert_eq!(code, 201, "{out}");
    d.ok(&["start", "-a", "nonet"]);
    let devs = d.ok(&["logs", "nonet"]);
    assert!(devs.contains("lo:") && !devs.contains("eth0"), "{devs}");
    d.ok(&["rm", "nonet"]);

    d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "while true; do echo t; sleep 0.1; done",
    ]);
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    // -m only guards against a hang: the answer must end by itself at `until`.
    let out = Command::new("curl")
        .args(["-s", "-m", "60", "--unix-socket"])
        .arg(&d.sock)
        .arg(format!(
            "http://berth/containers/ticker/logs?follow=1&stdout=1&until={until}"
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "the followed log did not end at until: {:?}",
        out.status
    );
    assert!(!out.stdout.is_empty());
}

/// `HostConfig.Annotations` reach the runtime's config.json (as dockerd hands them to runc),
/// beside berth's own key, which a user's value does not replace.
#[test]
fn annotations_reach_the_runtime_spec() {
    let d = Daemon::start();
    let (code, out) = d.curl(
        "POST",
        "/containers/create?name=annotated",
        Some(r#"{"Image":"busybox","Cmd":["sleep","100"],"HostConfig":{"Annotations":{"org.example.team":"infra","berth.overlay":"mine"}}}"#),
    );
    assert_eq!(code, 201, "{out}");
    d.ok(&["start", "annotated"]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "annotated"]);
    let cfg = std::fs::read_to_string(d.exec_root.join("c").join(&id).join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(v["annotations"]["org.example.team"], "infra", "{cfg}");
    let overlay = v["annotations"]["berth.overlay"]
        .as_str()
        .unwrap_or_default();
    assert!(overlay.contains("lowerdir="), "{cfg}");
    d.ok(&["rm", "-f", "annotated"]);
}
