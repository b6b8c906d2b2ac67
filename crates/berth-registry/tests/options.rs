//! Server options: htpasswd Basic auth (401 then 200), TLS from PEM files (checked with curl),
//! and the errors `bind` gives for bad options or a storage root already in use.

mod common;

use berth_registry::{bind, Error};
use bytes::Bytes;
use common::*;
use std::process::Command;

fn basic(user: &str, password: &str) -> String {
    // base64 by hand keeps the test independent of the server's decoder.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let dir = TempDir::new("auth");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        dir.join("htpasswd"),
        format!("# test users\nalice:{hash}\n"),
    )
    .unwrap();
    let file = dir.join("htpasswd");
    let s = Server::start_in(dir, |o| o.htpasswd = Some(file)).await;

    let r = s.get("/v2/").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"berth-registry\"")
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(r.code(), "UNAUTHORIZED");
    for bad in [
        basic("alice", "wrong"),
        basic("bob", "s3cret"),
        "Bearer x".into(),
    ] {
        let r = s
            .req("GET", "/v2/", &[("authorization", &bad)], Bytes::new())
            .await;
        assert_eq!(r.status, 401, "{bad}");
    }
    let good = basic("alice", "s3cret");
    let r = s
        .req("GET", "/v2/", &[("authorization", &good)], Bytes::new())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    // Every endpoint is guarded, not only /v2/.
    let data = b"authorized blob";
    let path = format!("/v2/private/blobs/uploads/?digest={}", sha(data));
    assert_eq!(s.req("POST", &path, &[], data.to_vec()).await.status, 401);
    assert_eq!(
        s.req("POST", &path, &[("authorization", &good)], data.to_vec())
            .await
            .status,
        201
    );
    assert_eq!(s.get("/v2/_catalog").await.status, 401);
    assert_eq!(s.get("/v1/search?q=p").await.status, 401);
    assert_eq!(
        s.get("/v1/_ping").await.status,
        200,
        "docker search pings unauthenticated"
    );
    let r = s
        .req(
            "GET",
            "/v2/_catalog",
            &[("authorization", &good)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["private"]));
}

#[tokio::test]
async fn bad_options_are_errors() {
    let dir = TempDir::new("badopts");
    let root = dir.join("root");

    let mut o = options(&root);
    o.htpasswd = Some(dir.join("missing"));
    assert!(matches!(bind(o).await, Err(Error::Io { .. })));

    std::fs::write(dir.join("plain"), "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap();
    let mut o = options(&root);
    o.htpasswd = Some(dir.join("plain"));
    let e = bind(o).await.err().unwrap();
    assert!(matches!(e, Error::Htpasswd { .. }), "{e}");
    assert!(e.to_string().contains("bcrypt"), "{e}");

    let mut o = options(&root);
    o.tls_cert = Some(dir.join("cert.pem"));
    assert!(matches!(bind(o).await, Err(Error::Tls(_))));

    std::fs::write(dir.join("junk.pem"), "not a pem file").unwrap();
    let mut o = options(&root);
    o.tls_cert = Some(dir.join("junk.pem"));
    o.tls_key = Some(dir.join("junk.pem"));
    assert!(matches!(bind(o).await, Err(Error::Tls(_))));

    // One server per storage root.
    let (_, serving) = bind(options(&root)).await.unwrap();
    let e = bind(options(&root)).await.err().unwrap();
    assert!(matches!(e, Error::Locked(_)), "{e}");
    drop(serving);
    assert!(
        bind(options(&root)).await.is_ok(),
        "dropping the server frees the root"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl.
fn make_cert(dir: &TempDir, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(&format!("{name}.crt"));
    let key = dir.join(&format!("{name}.key"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=berth-registry-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed for this test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls() {
    let dir = TempDir::new("tls");
    let (cert, key) = make_cert(&dir, "one");
    let (_, other_key) = make_cert(&dir, "two");

    let mut o = options(&dir.join("root"));
    o.tls_cert = Some(cert.clone());
    o.tls_key = Some(other_key);
    let e = bind(o).await.err().unwrap();
    assert!(
        matches!(e, Error::Tls(_)),
        "a key of another certificate: {e}"
    );

    let (c, k) = (cert.clone(), key.clone());
    let s = Server::start_in(dir, move |o| {
        o.tls_cert = Some(c);
        o.tls_key = Some(k);
    })
    .await;
    let url = format!("https://{}/v2/", s.addr);
    let ca = cert.clone();
    let o = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-D", "-", "--cacert"])
            .arg(&ca)
            .arg(&url)
            .output()
            .expect("curl is needed for this test")
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert!(
        out.contains("docker-distribution-api-version: registry/2.0"),
        "{out}"
    );

    // Plain HTTP on the TLS port gets no answer.
    let addr = s.addr;
    let plain = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{addr}/v2/"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!plain.status.success());
}
