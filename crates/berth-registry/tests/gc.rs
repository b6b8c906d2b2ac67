//! gc on a store filled over HTTP: refused while the server runs, removes an orphan blob and
//! (with delete_untagged) untagged manifests, and leaves every pushed image pullable.

mod common;

use berth_registry::{gc, Error, GcReport};
use bytes::Bytes;
use common::*;

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
    assert!(matches!(gc(&root, false, false), Err(Error::Locked(_))));
    let dir = s.stop().await;

    let dry = gc(&root, false, true).unwrap();
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

    let report = gc(&root, false, false).unwrap();
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
    let report = gc(&root, true, false).unwrap();
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
