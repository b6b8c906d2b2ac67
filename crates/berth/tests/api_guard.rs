//! The API's defences: JSON bodies that must say so, cross-origin requests, size limits, the
//! socket's owner and mode, TCP without TLS, TLS with client certificates (berth and docker
//! CLIs), and clients that stall or exhaust the daemon's descriptors.

mod common;

use common::{berth_bin, stderr, stdout, Daemon};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// curl over the daemon's socket with extra arguments: (status, headers, body).
fn curl(d: &Daemon, args: &[&str], path: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "/dev/stderr", "-o", "-", "--unix-socket"])
        .arg(&d.sock)
        .args(args)
        .arg(format!("http://berth{path}"))
        .output()
        .expect("curl");
    let headers = stderr(&out);
    // The last status line (curl shows a "100 Continue" before it).
    let status = headers
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, headers, stdout(&out))
}

fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not Docker's JSON error ({e}): {body:?}"));
    v["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn json_bodies_must_be_json_and_cross_origin_requests_are_refused() {
    let d = Daemon::start();
    let create = r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Binds":["/:/host"]}}"#;
    // A web page can post text/plain without a preflight: dockerd's rule refuses it.
    let (code, _, body) = curl(
        &d,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            create,
        ],
        "/containers/create",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        message(&body).contains("must be 'application/json'"),
        "{body}"
    );
    // A form post is refused the same way.
    let (code, _, _) = curl(
        &d,
        &["-X", "POST", "--data", "Image=busybox"],
        "/containers/create",
    );
    assert_eq!(code, 400);
    // With an Origin, even a well-typed request (or a read) is refused.
    for (method, path) in [("POST", "/containers/create"), ("GET", "/containers/json")] {
        let (code, _, body) = curl(
            &d,
            &[
                "-X",
                method,
                "-H",
                "Origin: http://evil.example",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                create,
            ],
            path,
        );
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(message(&body).contains("cross-origin"), "{body}");
    }
    assert_eq!(d.ok(&["ps", "-aq"]), "", "no container may have been made");
    // An oversized JSON body: Docker's JSON 413, not text.
    let big = format!(
        r#"{{"Image":"busybox","Env":["X={}"]}}"#,
        "x".repeat(5 << 20)
    );
    let file = std::env::temp_dir().join(format!("berth-big-{}.json", std::process::id()));
    std::fs::write(&file, big).unwrap();
    let at = format!("@{}", file.display());
    let (code, headers, body) = curl(
        &d,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &at,
        ],
        "/containers/create",
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 413, "{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{headers}"
    );
    assert!(message(&body).contains("larger than"), "{body}");
    // The real clients still work.
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok");
    let out = d.docker(&["run", "--rm", "busybox", "echo", "ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn listed_origins_are_served_with_cors_headers() {
    let d = Daemon::start_with(&["--api-cors-header", "http://ok.example"]);
    let (code, headers, body) = curl(&d, &["-H", "Origin: http://ok.example"], "/containers/json");
    assert_eq!(code, 200, "{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: http://ok.example"),
        "{headers}"
    );
    let (code, headers, _) = curl(
        &d,
        &["-X", "OPTIONS", "-H", "Origin: http://ok.example"],
        "/containers/create",
    );
    assert_eq!(code, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("access-control-allow-methods"),
        "{headers}"
    );
    let (code, _, _) = curl(
        &d,
        &["-H", "Origin: http://evil.example"],
        "/containers/json",
    );
    assert_eq!(code, 403);
}

fn group_gid(name: &str) -> Option<u32> {
    let out = Command::new("getent").args(["group", name]).output().ok()?;
    stdout(&out).split(':').nth(2)?.trim().parse().ok()
}

#[test]
fn the_socket_belongs_to_root_and_the_berth_group() {
    let gid = group_gid("berth").expect("scripts/test.sh creates the berth group");
    let d = Daemon::start();
    let m = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(m.mode() & 0o777, 0o660);
    assert_eq!((m.uid(), m.gid()), (0, gid));
    // Someone outside the group cannot even connect.
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "curl", "-s", "--unix-socket"])
        .arg(&d.sock)
        .arg("http://berth/_ping")
        .output()
        .unwrap();
    assert!(!out.status.success(), "nobody reached the daemon");
    assert_eq!(out.status.code(), Some(7), "curl: couldn't connect");
    // Without the group, the socket is root's alone.
    let d2 = Daemon::start_with(&["--group", "no-such-group-berth"]);
    let m = std::fs::metadata(&d2.sock).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o600, 0, 0));
    assert!(d2.daemon_log().contains("no-such-group-berth"));
}

#[test]
fn plain_tcp_is_refused_beyond_loopback_and_delayed_on_it() {
    let dir = std::env::temp_dir().join(format!("berth-tcp-refused-{}", std::process::id()));
    let out = Command::new(berth_bin())
        .args(["daemon", "--config-file", "/nonexistent/berth.json"])
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .args(["-H", "tcp://0.0.0.0:2999"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("without TLS"), "{}", stderr(&out));
    assert!(
        !dir.exists(),
        "nothing is made before the hosts are checked"
    );

    let port = common::free_port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = Daemon::start_with(&["-H", &tcp]);
    assert!(
        d.daemon_log().contains("not encrypted"),
        "{}",
        d.daemon_log()
    );
    // After dockerd's delay the API answers on TCP.
    let t = Instant::now();
    let mut answered = false;
    while t.elapsed() < Duration::from_secs(40) && !answered {
        let out = Command::new(berth_bin())
            .args(["-H", &tcp, "version"])
            .output()
            .unwrap();
        answered = out.status.success();
        if !answered {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(answered, "{}", d.daemon_log());
}

/// `openssl` in a directory.
fn openssl(dir: &Path, args: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl {args} 2>/dev/null"))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made at run time; and
/// a second CA with a client certificate the daemon must not take.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir.join("client")).unwrap();
    std::fs::create_dir_all(dir.join("rogue")).unwrap();
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for ca in ["ca", "rogue/ca"] {
        openssl(
            dir,
            &format!(
                "req -x509 {key} -keyout {ca}-key.pem -out {ca}.pem -days 2 -subj /CN=test-ca"
            ),
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &format!("req {key} -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1"),
    );
    openssl(dir, "x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile server.ext");
    for (ca, out) in [("ca", "client"), ("rogue/ca", "rogue")] {
        openssl(
            dir,
            &format!("req {key} -keyout {out}/key.pem -out {out}/c.csr -subj /CN=client"),
        );
        openssl(dir, &format!("x509 -req -in {out}/c.csr -CA {ca}.pem -CAkey {ca}-key.pem -CAcreateserial -out {out}/cert.pem -days 2 -extfile client.ext"));
    }
    std::fs::copy(dir.join("ca.pem"), dir.join("client/ca.pem")).unwrap();
    std::fs::copy(dir.join("ca.pem"), dir.join("rogue/ca.pem")).unwrap();
}

#[test]
fn tls_with_client_certificates_for_berth_and_docker() {
    let dir: PathBuf = std::env::temp_dir().join(format!("berth-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    make_certs(&dir);
    let p = |f: &str| dir.join(f).display().to_string();
    let port = common::free_port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = Daemon::start_with(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server-cert.pem"),
        "--tlskey",
        &p("server-key.pem"),
    ]);
    assert!(!d.daemon_log().contains("not encrypted"));
    let berth = |env: &[(&str, String)], args: &[&str]| {
        let mut c = Command::new(berth_bin());
        c.env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env("HOME", &dir);
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(["-H", &tcp]).args(args).output().unwrap()
    };
    // TLS is served at once, without the plain-TCP delay: the first try may only race the bind.
    let flags = [
        "--tlsverify",
        "--tlscacert",
        &p("client/ca.pem"),
        "--tlscert",
        &p("client/cert.pem"),
        "--tlskey",
        &p("client/key.pem"),
    ];
    common::eventually("the TLS listener", || {
        let mut a = flags.to_vec();
        a.push("version");
        berth(&[], &a).status.success()
    });
    let mut a = flags.to_vec();
    a.extend(["run", "--rm", "busybox", "echo", "over tls"]);
    let out = berth(&[], &a);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "over tls");
    // DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI takes them.
    let env = [
        ("DOCKER_TLS_VERIFY", "1".to_string()),
        ("DOCKER_CERT_PATH", p("client")),
    ];
    let out = berth(&env, &["ps", "-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // --tls alone encrypts without checking the server (the client certificate still counts).
    let out = berth(
        &[],
        &[
            "--tls",
            "--tlscert",
            &p("client/cert.pem"),
            "--tlskey",
            &p("client/key.pem"),
            "version",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The docker CLI with --tlsverify.
    let out = Command::new("docker")
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env("DOCKER_HOST", &tcp)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", p("client"))
        .args(["run", "--rm", "busybox", "echo", "docker over tls"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "docker over tls");
    // Refused: no client certificate, one from another CA, and plain HTTP.
    let out = berth(
        &[],
        &["--tlsverify", "--tlscacert", &p("ca.pem"), "version"],
    );
    assert!(!out.status.success());
    let env = [
        ("DOCKER_TLS_VERIFY", "1".to_string()),
        ("DOCKER_CERT_PATH", p("rogue")),
    ];
    let out = berth(&env, &["version"]);
    assert!(
        !out.status.success(),
        "a foreign client certificate was taken"
    );
    let out = berth(&[], &["version"]);
    assert!(!out.status.success(), "plain HTTP was answered");
    let out = Command::new("curl")
        .args(["-s", "--cacert", &p("ca.pem")])
        .arg(format!("https://127.0.0.1:{port}/_ping"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl without a certificate got in");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// User and system CPU ticks the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn stalled_clients_and_descriptor_exhaustion_do_not_stop_the_api() {
    raise_nofile();
    let d = Daemon::start();
    let pid = d.pid();
    // A streaming response stays open through all of it.
    let mut events = Command::new(berth_bin())
        .args(["-H", &d.host(), "events", "--format", "{{.Action}}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // 3,000 requests whose headers never end.
    let mut held = Vec::new();
    for _ in 0..3000 {
        let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        held.push(s);
    }
    assert!(d.ok(&["version"]).contains("Server: berth"));
    // The daemon closes every one of them (header timeout).
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) => assert!(
                n == 0 || !String::from_utf8_lossy(&buf[..n]).contains("200 OK"),
                "a stalled request was answered"
            ),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still held"),
        }
    }
    drop(held);
    // Out of descriptors: the accept loop backs off instead of spinning.
    let before = open_fds(pid);
    // Only the soft limit moves: raising a hard limit needs CAP_SYS_RESOURCE, which not every
    // machine's root has.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let (soft, hard) = (nofile[3], nofile[4]);
    let limit = format!("--nofile={}:{hard}", before + 20);
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &limit])
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit {limit}: {}", stderr(&out));
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&d.sock) {
            flood.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - t0;
    // A spinning accept loop burns two seconds' worth of ticks (200) here.
    assert!(
        used < 60,
        "daemon used {used} ticks in 2 s at the descriptor limit"
    );
    drop(flood);
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:{hard}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {}", stderr(&out));
    common::eventually("the API after the flood", || {
        d.berth(&["version"]).status.success()
    });
    // The event stream lived through it.
    d.ok(&["create", "--name", "after", "busybox", "true"]);
    let mut out = events.stdout.take().unwrap();
    let mut line = [0u8; 6];
    out.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"create");
    let _ = events.kill();
    let _ = events.wait();
}
