//! gc on a store filled over HTTP: refused while the server runs, removes an orphan blob and
//! (with delete_untagged) untagged manifests, and leaves every pushed image pullable. Upload
//! sessions of interrupted pushes are expired, by gc and by the serving registry, but never one
//! a request is still writing to.

mod common;

use berth_registry::{gc, Error, GcReport, DEFAULT_UPLOAD_MAX_AGE};
use bytes::Bytes;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn gc_removes_orphans_but_not_referenced_content() {
    let s = Server::start("gc").await;
    let (tagged, tagged_d) = push_image(
        &s,
        "app",
        Some("v1"),
        b"config one",
        &[b"layer one", b"shared"],
    )
    .await;
    let (untagged, untagged_d) = push_image(&s, "app", None, b"config two", &[b"shared"]).await;
    let orphan = push_blob(&s, "app", b"never referenced").await;
    // A blob whose manifest was deleted is garbage too.
    let (gone, gone_d) =
        push_image(&s, "other", Some("x"), b"config three", &[b"layer three"]).await;
    let r = s
        .req(
            "DELETE",
            &format!("/v2/other/manifests/{gone_d}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);

    let root = s.root();
    assert!(matches!(
        gc(&root, false, false, DEFAULT_UPLOAD_MAX_AGE),
        Err(Error::Locked(_))
    ));
    let dir = s.stop().await;

    let dry = gc(&root, false, true, DEFAULT_UPLOAD_MAX_AGE).unwrap();
    let garbage: usize = [
        &b"never referenced"[..],
        b"config three",
        b"layer three",
        &gone,
    ]
    .iter()
    .map(|b| b.len())
    .sum();
    // The orphan, the deleted manifest and the two blobs only it used.
    assert_eq!(
        dry,
        GcReport {
            blobs_removed: 4,
            bytes_freed: garbage as u64,
            manifests_removed: 0,
            uploads_removed: 0,
        }
    );
    let before = count_files(&root.join("blobs"));

    let report = gc(&root, false, false, DEFAULT_UPLOAD_MAX_AGE).unwrap();
    assert_eq!(report, dry);
    assert_eq!(count_files(&root.join("blobs")), before - 4);

    let s = Server::start_in(dir, |_| {}).await;
    assert_eq!(
        s.req(
            "HEAD",
            &format!("/v2/app/blobs/{orphan}"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        404
    );
    assert_eq!(
        s.req(
            "HEAD",
            &format!("/v2/other/blobs/{}", sha(b"layer three")),
            &[],
            Bytes::new()
        )
        .await
        .status,
        404
    );
    // Everything the manifests use is still there.
    assert_eq!(s.get("/v2/app/manifests/v1").await.body, tagged);
    for blob in [&b"config one"[..], b"layer one", b"shared", b"config two"] {
        let r = s.get(&format!("/v2/app/blobs/{}", sha(blob))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, blob);
    }
    assert_eq!(
        s.get(&format!("/v2/app/manifests/{untagged_d}"))
            .await
            .status,
        200
    );
    let dir = s.stop().await;

    // Untagged manifests go only on request, with what only they used.
    let report = gc(&root, true, false, DEFAULT_UPLOAD_MAX_AGE).unwrap();
    assert_eq!(
        report,
        GcReport {
            blobs_removed: 2,
            bytes_freed: (untagged.len() + b"config two".len()) as u64,
            manifests_removed: 1,
            uploads_removed: 0,
        }
    );
    let s = Server::start_in(dir, |_| {}).await;
    assert_eq!(
        s.get(&format!("/v2/app/manifests/{untagged_d}"))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{}", sha(b"config two")))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get(&format!("/v2/app/manifests/{tagged_d}")).await.status,
        200
    );
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{}", sha(b"shared")))
            .await
            .status,
        200
    );
}

/// Starts an upload session of `repo`; returns its path (the `Location`).
async fn new_session(s: &Server, repo: &str) -> String {
    let r = s
        .req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    r.header("location").unwrap().to_string()
}

/// The directory of the session at `location` under `root`.
fn session_dir(root: &Path, location: &str) -> PathBuf {
    let id = location.rsplit('/').next().unwrap();
    root.join("uploads").join(id)
}

/// Makes the session's data look untouched for two days.
fn age(dir: &Path) {
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("data"))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
        .unwrap();
}

/// Waits (up to 30 s) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn gc_removes_stale_upload_sessions() {
    let s = Server::start("gc-uploads").await;
    let stale = new_session(&s, "app").await;
    let fresh = new_session(&s, "app").await;
    let r = s
        .req("PATCH", &fresh, &[], Bytes::from_static(b"partial"))
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let root = s.root();
    let dir = s.stop().await;
    age(&session_dir(&root, &stale));

    let only_uploads = |n| GcReport {
        uploads_removed: n,
        ..GcReport::default()
    };
    assert_eq!(
        gc(&root, false, true, DEFAULT_UPLOAD_MAX_AGE).unwrap(),
        only_uploads(1)
    );
    assert!(
        session_dir(&root, &stale).exists(),
        "a dry run removes nothing"
    );
    assert_eq!(
        gc(&root, false, false, DEFAULT_UPLOAD_MAX_AGE).unwrap(),
        only_uploads(1)
    );
    assert!(!session_dir(&root, &stale).exists());
    assert!(session_dir(&root, &fresh).exists());

    // The fresh one goes on where it was; with an age of 0 gc takes it too.
    let s = Server::start_in(dir, |_| {}).await;
    let r = s.req("GET", &fresh, &[], Bytes::new()).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-6"));
    assert_eq!(s.req("GET", &stale, &[], Bytes::new()).await.status, 404);
    let _dir = s.stop().await;
    assert_eq!(
        gc(&root, false, false, Duration::ZERO).unwrap(),
        only_uploads(1)
    );
    assert_eq!(count_files(&root.join("uploads")), 0);
}

#[tokio::test]
async fn a_serving_registry_expires_abandoned_uploads_but_not_busy_ones() {
    let s = Server::start_in(TempDir::new("sweep"), |o| {
        o.upload_max_age = Duration::from_secs(3600);
        o.upload_sweep = Duration::from_millis(100);
    })
    .await;
    let root = s.root();
    // A chunk still streaming in: its request holds the session.
    let busy = new_session(&s, "app").await;
    let busy_dir = session_dir(&root, &busy);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = http_body_util::StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    }));
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("PATCH")
        .uri(&busy)
        .header("host", s.addr.to_string())
        .body(body)
        .unwrap();
    let patch = tokio::spawn(sender.send_request(req));
    tx.send(Bytes::from_static(b"hello ")).await.unwrap();
    let data = busy_dir.join("data");
    until("the first chunk", || {
        std::fs::metadata(&data).is_ok_and(|m| m.len() == 6)
    })
    .await;
    age(&busy_dir);

    // Abandoned after the busy one looked old: once it is gone, a sweep has seen both.
    let abandoned = new_session(&s, "app").await;
    let abandoned_dir = session_dir(&root, &abandoned);
    age(&abandoned_dir);
    until("the abandoned session to go", || !abandoned_dir.exists()).await;
    let r = s
        .req("PATCH", &abandoned, &[], Bytes::from_static(b"late"))
        .await;
    assert_eq!((r.status, r.code()), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    assert!(busy_dir.exists(), "a session in use was removed");

    tx.send(Bytes::from_static(b"world")).await.unwrap();
    drop(tx);
    let resp = patch.await.unwrap().unwrap();
    assert_eq!(resp.status(), 202);
    let d = sha(b"hello world");
    let r = s
        .req("PUT", &format!("{busy}?digest={d}"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{d}")).await.body,
        b"hello world"
    );
    s.stop().await;
}
