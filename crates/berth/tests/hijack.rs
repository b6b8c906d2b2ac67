//! Hijacked streams through the raw socket, as SDKs read them: the `101 UPGRADED` head comes
//! before any stream byte (and on a unix socket, only once the client has read it), an exec's
//! framing follows its start request, a detached start
//! answers with an empty body, and detach keys end exec and attach sessions at once.

mod common;
use common::{eventually, Daemon};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A connection on which `POST path` with the JSON `body`, asking for the upgrade, was sent.
fn send_upgrade(d: &Daemon, path: &str, body: &str) -> UnixStream {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    // Only a guard against a hang: every read expects data or the end.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s
}

/// POST `path` with `body` asking for the upgrade; the response head is read one byte at a
/// time (so not a byte of the stream is taken with it) and returned with the socket.
fn hijack(d: &Daemon, path: &str, body: &str) -> (String, UnixStream) {
    let mut s = send_upgrade(d, path, body);
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response head");
        head.push(b[0]);
    }
    (String::from_utf8(head).unwrap(), s)
}

/// The rest of the stream, to its end; a connection left open is a failure.
fn read_to_end(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "the stream did not end ({e}); got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// stdcopy frames as (stream, payload); panics on a partial frame.
fn frames(mut raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        assert!(raw.len() >= 8, "partial frame header: {raw:?}");
        assert_eq!(&raw[1..4], &[0, 0, 0], "not a frame header: {raw:?}");
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        assert!(raw.len() >= 8 + len, "partial frame: {raw:?}");
        out.push((raw[0], raw[8..8 + len].to_vec()));
        raw = &raw[8 + len..];
    }
    out
}

fn exec_create(d: &Daemon, container: &str, config: &str) -> String {
    let (code, body) = d.curl(
        "POST",
        &format!("/containers/{container}/exec"),
        Some(config),
    );
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["Id"].as_str().unwrap().to_string()
}

fn exec_inspect(d: &Daemon, id: &str) -> serde_json::Value {
    let (code, body) = d.curl("GET", &format!("/exec/{id}/json"), None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn exec_framing_follows_the_start_request() {
    let d = Daemon::start();
    d.ok(&["run", "-d", "--name", "hj", "busybox", "sleep", "1000"]);

    // Made with a TTY, started without: stdcopy frames (all on stdout: the TTY merged them).
    let id = exec_create(
        &d,
        "hj",
        r#"{"Tty":true,"AttachStdout":true,"AttachStderr":true,"Cmd":["echo","framed"]}"#,
    );
    let (head, mut s) = hijack(
        &d,
        &format!("/exec/{id}/start"),
        r#"{"Detach":false,"Tty":false}"#,
    );
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.multiplexed-stream\r\n"),
        "{head}"
    );
    let out = read_to_end(&mut s);
    let got = frames(&out);
    assert!(got.iter().all(|(stream, _)| *stream == 1), "{got:?}");
    let text: Vec<u8> = got.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(String::from_utf8_lossy(&text), "framed\r\n");
    assert_eq!(exec_inspect(&d, &id)["ExitCode"], 0);

    // Made without a TTY, started with one: the raw bytes of both streams.
    let id = exec_create(
        &d,
        "hj",
        r#"{"AttachStdout":true,"AttachStderr":true,"Cmd":["sh","-c","echo out; echo err >&2"]}"#,
    );
    let (head, mut s) = hijack(&d, &format!("/exec/{id}/start"), r#"{"Tty":true}"#);
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.raw-stream\r\n"),
        "{head}"
    );
    let out = String::from_utf8(read_to_end(&mut s)).unwrap();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["err", "out"], "{out:?}");

    // The first frame follows the head at once, whole: nothing of it went with the head.
    let id = exec_create(
        &d,
        "hj",
        r#"{"AttachStdout":true,"AttachStderr":true,"Cmd":["echo","first"]}"#,
    );
    let (_, mut s) = hijack(&d, &format!("/exec/{id}/start"), "{}");
    let mut header = [0u8; 8];
    s.read_exact(&mut header).unwrap();
    assert_eq!(header, [1, 0, 0, 0, 0, 0, 0, 6]);
    let mut payload = [0u8; 6];
    s.read_exact(&mut payload).unwrap();
    assert_eq!(&payload, b"first\n");

    // A detached start answers 200 with an empty body; the exit code is recorded all the same.
    let id = exec_create(&d, "hj", r#"{"Cmd":["sh","-c","exit 7"]}"#);
    let mut s = UnixStream::connect(&d.sock).unwrap();
    let body = r#"{"Detach":true,"Tty":false}"#;
    write!(
        s,
        "POST /exec/{id}/start HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 0"),
        "{resp}"
    );
    assert_eq!(rest, "", "{resp}");
    eventually("the detached exec to end", || {
        exec_inspect(&d, &id)["ExitCode"] == 7
    });
    // The CLIs take the empty answer.
    d.ok(&["exec", "-d", "hj", "touch", "/tmp/by-berth"]);
    let out = d.docker(&["exec", "-d", "hj", "touch", "/tmp/by-docker"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    eventually("the detached execs' files", || {
        d.berth(&[
            "exec",
            "hj",
            "test",
            "-f",
            "/tmp/by-berth",
            "-a",
            "-f",
            "/tmp/by-docker",
        ])
        .status
        .success()
    });
    d.ok(&["rm", "-f", "hj"]);
}

#[test]
fn detach_keys_end_exec_and_attach_sessions_at_once() {
    let d = Daemon::start();
    d.ok(&["run", "-dit", "--name", "dk", "busybox", "sh"]);

    // The default keys, Ctrl-P Ctrl-Q: the daemon closes the connection without waiting for
    // the client to write again, and the shell goes on.
    let id = exec_create(
        &d,
        "dk",
        r#"{"Tty":true,"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Cmd":["sh"]}"#,
    );
    let (head, mut s) = hijack(&d, &format!("/exec/{id}/start"), r#"{"Tty":true}"#);
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    s.write_all(b"echo $((6*7))\r").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("42") {
        let n = s.read(&mut buf).expect("the shell's output");
        assert!(
            n > 0,
            "the stream ended: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"\x10\x11").unwrap();
    read_to_end(&mut s);
    let v = exec_inspect(&d, &id);
    assert_eq!(v["Running"], true, "{v}");
    // Its exit is still recorded when it ends.
    let pid = v["Pid"].as_i64().unwrap();
    // Exec inspect shows the host's pid.
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    eventually("the detached exec's exit", || {
        exec_inspect(&d, &id)["ExitCode"] == 137
    });

    // Keys of the exec's own; a sequence cut short is passed on.
    let id = exec_create(
        &d,
        "dk",
        r#"{"Tty":true,"AttachStdin":true,"AttachStdout":true,"DetachKeys":"ctrl-x,y","Cmd":["sh"]}"#,
    );
    let (_, mut s) = hijack(&d, &format!("/exec/{id}/start"), r#"{"Tty":true}"#);
    s.write_all(b"\x10\x11\x18y").unwrap();
    read_to_end(&mut s);
    assert_eq!(exec_inspect(&d, &id)["Running"], true);

    let (code, body) = d.curl(
        "POST",
        "/containers/dk/exec",
        Some(r#"{"Tty":true,"DetachKeys":"ctrl-ab","Cmd":["sh"]}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Invalid escape keys (ctrl-ab) provided"),
        "{body}"
    );

    // A container attach, with the detachKeys query.
    let (head, mut s) = hijack(
        &d,
        "/containers/dk/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-a,b",
        "",
    );
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    s.write_all(b"\x01b").unwrap();
    read_to_end(&mut s);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]), "true");
    d.ok(&["rm", "-f", "dk"]);
}

/// An attach without `Upgrade` gets the stream right after the head, unframed by HTTP (no
/// chunk sizes), until the connection closes, as from dockerd's hijacked `200`.
#[test]
fn attach_without_upgrade_streams_raw() {
    let d = Daemon::start();
    d.ok(&["run", "--name", "nu", "busybox", "echo", "logged"]);
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        b"POST /containers/nu/attach?logs=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: berth\r\n\
          Content-Length: 0\r\n\r\n",
    )
    .unwrap();
    let all = read_to_end(&mut s);
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(!lower.contains("content-length"), "{head}");
    let at = all.len() - body.len();
    assert_eq!(frames(&all[at..]), [(1u8, b"logged\n".to_vec())]);
    d.ok(&["rm", "nu"]);
}

/// A client that reads the head through a buffer and then reads the raw socket (docker-py)
/// loses what came with the head: on a unix socket, no stream byte is sent before the client
/// has read the head, however long it takes to read it.
#[test]
fn stream_bytes_wait_until_the_client_has_read_the_head() {
    let d = Daemon::start();
    d.ok(&["run", "-d", "--name", "cx", "busybox", "sleep", "1000"]);
    d.ok(&["run", "--name", "done", "busybox", "echo", "logged"]);
    let id = exec_create(&d, "cx", r#"{"Cmd":["echo","out"],"AttachStdout":true}"#);
    for (path, body, want) in [
        (format!("/exec/{id}/start"), "{}", b"out\n".to_vec()),
        (
            "/containers/done/attach?logs=1&stdout=1&stream=0".to_string(),
            "",
            b"logged\n".to_vec(),
        ),
    ] {
        let mut s = send_upgrade(&d, &path, body);
        // Read late: the output exists by now, and would be queued behind the head if sent.
        std::thread::sleep(Duration::from_millis(500));
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            first.starts_with("HTTP/1.1 101") && first.ends_with("\r\n\r\n"),
            "{path}: the first read holds more than the head: {first:?}"
        );
        let rest = read_to_end(&mut s);
        assert_eq!(frames(&rest), vec![(1, want)], "{path}");
    }
}

/// Exec inspect has dockerd's fields: `CanRemove`, `DetachKeys` (the bytes, base64, as Go
/// marshals them) and a `ProcessConfig` with lower-case keys; bad detach keys are refused at
/// create whatever the TTY.
#[test]
fn exec_inspect_has_dockerds_fields() {
    let d = Daemon::start();
    d.ok(&["run", "-d", "--name", "cx", "busybox", "sleep", "1000"]);
    let id = exec_create(
        &d,
        "cx",
        r#"{"Cmd":["echo","a b"],"AttachStdout":true,"DetachKeys":"ctrl-p,ctrl-q"}"#,
    );
    let v = exec_inspect(&d, &id);
    assert_eq!(v["CanRemove"], false, "{v}");
    assert_eq!(v["DetachKeys"], "EBE=", "{v}");
    let pc = &v["ProcessConfig"];
    assert_eq!(pc["entrypoint"], "echo", "{v}");
    assert_eq!(pc["arguments"], serde_json::json!(["a b"]), "{v}");
    assert_eq!(
        (&pc["tty"], &pc["privileged"]),
        (&false.into(), &false.into()),
        "{v}"
    );
    assert!(
        pc.get("user").is_none() && pc.get("Entrypoint").is_none(),
        "{v}"
    );
    let plain = exec_create(&d, "cx", r#"{"Cmd":["true"]}"#);
    assert_eq!(exec_inspect(&d, &plain)["DetachKeys"], "");
    let (code, body) = d.curl(
        "POST",
        "/containers/cx/exec",
        Some(r#"{"Cmd":["true"],"DetachKeys":"ctrl-1"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Invalid escape keys (ctrl-1) provided"),
        "{body}"
    );
}
