//! The distribution API over real HTTP: blob uploads (monolithic, chunked, out of order, wrong
//! digest, mounts), ranges, manifests (checks, tags, digests), listings, referrers, deletes,
//! error bodies, and v1 search.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::json;

#[tokio::test]
async fn base_endpoint_and_common_headers() {
    let s = Server::start("base").await;
    let r = s.get("/v2/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(r.json(), json!({}));
    let r = s.get("/v2").await;
    assert_eq!(r.status, 200);

    let r = s.get("/v2/a/nothing/here").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let r = s.req("POST", "/v2/a/tags/list", &[], Bytes::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "UNSUPPORTED");
    let r = s.get("/v2/Upper/Case/tags/list").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "NAME_INVALID");
    let r = s.get("/v2/a/../b/tags/list").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "NAME_INVALID");
}

#[tokio::test]
async fn monolithic_uploads() {
    let s = Server::start("mono").await;
    let data = b"monolithic blob content".to_vec();
    let d = sha(&data);

    // A single POST.
    let r = s
        .req(
            "POST",
            &format!("/v2/a/b/c/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/a/b/c/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));

    let r = s
        .req("HEAD", &format!("/v2/a/b/c/blobs/{d}"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.body.is_empty());
    let r = s.get(&format!("/v2/a/b/c/blobs/{d}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);

    // Blobs are scoped to their repository.
    let r = s
        .req("HEAD", &format!("/v2/other/blobs/{d}"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 404);
    let r = s.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");

    // POST, then the whole blob in the closing PUT.
    let data2 = vec![7u8; 300_000];
    let d2 = sha(&data2);
    let r = s
        .req("POST", "/v2/other/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with("/v2/other/blobs/uploads/"), "{loc}");
    assert_eq!(r.header("range"), Some("0-0"));
    let r = s
        .req(
            "PUT",
            &format!("{loc}?digest={d2}"),
            &[("content-type", "application/octet-stream")],
            data2.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/other/blobs/{d2}").as_str())
    );
    assert_eq!(s.get(&format!("/v2/other/blobs/{d2}")).await.body, data2);
    // The session is over.
    assert_eq!(s.get(&loc).await.status, 404);
    // Stored content-addressed, nothing left in uploads or tmp.
    let hex = d2.trim_start_matches("sha256:");
    let stored = s.root().join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    assert_eq!(std::fs::read(stored).unwrap(), data2);
    assert_eq!(count_files(&s.root().join("uploads")), 0);
    assert_eq!(count_files(&s.root().join("tmp")), 0);
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk() {
    let s = Server::start("chunked").await;
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha(&data);
    let r = s
        .req(
            "POST",
            "/v2/chunky/blobs/uploads/",
            &[("content-length", "0")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    let id = loc.rsplit('/').next().unwrap().to_string();
    assert_eq!(r.header("docker-upload-uuid"), Some(id.as_str()));

    let r = s
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-9999")],
            data[..10_000].to_vec(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-9999"));
    let loc = r.header("location").unwrap().to_string();

    // Skipping ahead is refused and changes nothing.
    let r = s
        .req(
            "PATCH",
            &loc,
            &[("content-range", "20000-29999")],
            data[20_000..].to_vec(),
        )
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range"), Some("0-9999"));
    assert_eq!(r.header("location"), Some(loc.as_str()));
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    // So is going back, and a malformed range.
    let r = s
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-9")],
            data[..10].to_vec(),
        )
        .await;
    assert_eq!(r.status, 416);
    let r = s
        .req(
            "PATCH",
            &loc,
            &[("content-range", "x-y")],
            data[..10].to_vec(),
        )
        .await;
    assert_eq!(r.status, 416);

    let r = s.get(&loc).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-9999"));

    // A streamed chunk without Content-Range (as docker sends them).
    let r = s
        .req("PATCH", &loc, &[], data[10_000..20_000].to_vec())
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some("0-19999"));

    // A Content-Range that announces more than the body carries.
    let r = s
        .req(
            "PATCH",
            &loc,
            &[("content-range", "20000-29999")],
            data[20_000..25_000].to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "SIZE_INVALID");
    assert_eq!(s.get(&loc).await.header("range"), Some("0-19999"));

    // The last chunk comes with the closing PUT.
    let r = s
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-range", "20000-29999")],
            data[20_000..].to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(s.get(&format!("/v2/chunky/blobs/{d}")).await.body, data);

    // Sessions belong to their repository, and unknown ones are 404.
    let r = s
        .req("POST", "/v2/chunky/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = r.header("location").unwrap().to_string();
    let other = loc.replace("/chunky/", "/elsewhere/");
    assert_eq!(s.get(&other).await.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = s
        .get("/v2/chunky/blobs/uploads/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    // Cancel.
    assert_eq!(s.req("DELETE", &loc, &[], Bytes::new()).await.status, 204);
    assert_eq!(s.get(&loc).await.status, 404);
    assert_eq!(s.req("DELETE", &loc, &[], Bytes::new()).await.status, 404);
}

#[tokio::test]
async fn wrong_digest_stores_nothing() {
    let s = Server::start("baddigest").await;
    let data = b"the real content".to_vec();
    let wrong = sha(b"something else");
    let r = s
        .req(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    for d in [&wrong, &sha(&data)] {
        assert_eq!(
            s.req("HEAD", &format!("/v2/r/blobs/{d}"), &[], Bytes::new())
                .await
                .status,
            404
        );
    }
    assert_eq!(count_files(&s.root().join("blobs")), 0);
    assert_eq!(count_files(&s.root().join("tmp")), 0);

    // The same through a session: the session ends, no blob appears.
    let r = s
        .req("POST", "/v2/r/blobs/uploads/", &[], Bytes::new())
        .await;
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(s.req("PATCH", &loc, &[], data.clone()).await.status, 202);
    // No digest at all is refused too.
    let r = s.req("PUT", &loc, &[], Bytes::new()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = s
        .req("PUT", &format!("{loc}?digest={wrong}"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(s.get(&loc).await.status, 404);
    assert_eq!(count_files(&s.root().join("blobs")), 0);
    assert_eq!(count_files(&s.root().join("uploads")), 0);

    // Malformed digests and other algorithms are 400.
    let r = s
        .req(
            "POST",
            "/v2/r/blobs/uploads/?digest=sha256:abc",
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .req(
            "POST",
            "/v2/r/blobs/uploads/?digest-algorithm=sha512",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        s.get("/v2/r/blobs/sha256:nothex").await.code(),
        "DIGEST_INVALID"
    );
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = Server::start("mount").await;
    let data = b"shared layer".to_vec();
    let d = push_blob(&s, "lib/source", &data).await;

    let r = s
        .req(
            "POST",
            &format!("/v2/app/dest/blobs/uploads/?mount={d}&from=lib/source"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/app/dest/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(s.get(&format!("/v2/app/dest/blobs/{d}")).await.body, data);

    // Not in the source repository: a plain session instead.
    let missing = sha(b"missing");
    let r = s
        .req(
            "POST",
            &format!("/v2/app/dest/blobs/uploads/?mount={missing}&from=lib/source"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/v2/app/dest/blobs/uploads/"));
    let r = s
        .req(
            "POST",
            &format!("/v2/third/blobs/uploads/?mount={d}&from=nowhere"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);
    // Without `from`, any stored blob can be mounted.
    let r = s
        .req(
            "POST",
            &format!("/v2/third/blobs/uploads/?mount={d}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn blob_ranges() {
    let s = Server::start("range").await;
    let data: Vec<u8> = (0..=255u8).collect();
    let d = push_blob(&s, "r", &data).await;
    let path = format!("/v2/r/blobs/{d}");
    let r = s
        .req("GET", &path, &[("range", "bytes=10-19")], Bytes::new())
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/256"));
    assert_eq!(r.header("content-length"), Some("10"));
    let r = s
        .req("GET", &path, &[("range", "bytes=-6")], Bytes::new())
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[250..]);
    let r = s
        .req("GET", &path, &[("range", "bytes=200-")], Bytes::new())
        .await;
    assert_eq!(r.body, &data[200..]);
    let r = s
        .req("GET", &path, &[("range", "bytes=300-400")], Bytes::new())
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */256"));
    let r = s
        .req("GET", &path, &[("range", "bytes=0-1,5-6")], Bytes::new())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let s = Server::start("manifests").await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"layer bytes";
    let m = image_manifest(config, &[layer]);
    let d = sha(&m);

    // Nothing pushed yet: every referenced blob is reported.
    let r = put_manifest(&s, "img", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e["code"] == "MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(errors[0]["detail"]["digest"], sha(config));
    push_blob(&s, "img", config).await;
    let r = put_manifest(&s, "img", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], sha(layer));
    // A blob of another repository does not count.
    push_blob(&s, "elsewhere", layer).await;
    assert_eq!(
        put_manifest(&s, "img", "v1", OCI_MANIFEST, &m).await.code(),
        "MANIFEST_BLOB_UNKNOWN"
    );
    push_blob(&s, "img", layer).await;

    let r = put_manifest(&s, "img", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/img/manifests/{d}").as_str())
    );

    for reference in ["v1", d.as_str()] {
        let r = s.get(&format!("/v2/img/manifests/{reference}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, m, "stored byte for byte");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        let r = s
            .req(
                "HEAD",
                &format!("/v2/img/manifests/{reference}"),
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(m.len().to_string().as_str())
        );
        assert!(r.body.is_empty());
    }
    assert_eq!(
        s.get("/v2/img/manifests/v2").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(s.get("/v2/nope/manifests/v1").await.code(), "NAME_UNKNOWN");
    assert_eq!(
        s.get(&format!("/v2/img/manifests/{}", sha(b"x")))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get("/v2/img/manifests/sha256:baddigeststring")
            .await
            .status,
        400
    );

    // By digest: it must match, and `?tag=` adds tags.
    let r = put_manifest(&s, "img", &sha(b"not it"), OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = s
        .req(
            "PUT",
            &format!("/v2/img/manifests/{d}?tag=a&tag=b"),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    assert_eq!(r.status, 201);
    let tags: Vec<&str> = r
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(s.get("/v2/img/manifests/b").await.body, m);

    // Docker schema2 is accepted and served with its type.
    let docker = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
    })
    .to_string();
    let r = put_manifest(
        &s,
        "img",
        "docker",
        "application/vnd.docker.distribution.manifest.v2+json",
        docker.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.get("/v2/img/manifests/docker").await;
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );

    // An index needs its children in the repository.
    let child = sha(b"no such manifest");
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": m.len()},
        {"mediaType": OCI_MANIFEST, "digest": child, "size": 3},
    ]})
    .to_string();
    let r = put_manifest(&s, "img", "multi", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], child);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(), "platform": {"os": "linux", "architecture": "amd64"}},
    ]})
    .to_string();
    let r = put_manifest(&s, "img", "multi", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        s.get("/v2/img/manifests/multi")
            .await
            .header("content-type"),
        Some(OCI_INDEX)
    );
    // ... and the sizes it gives must be right.
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": 1}]}).to_string();
    assert_eq!(
        put_manifest(&s, "img", "bad", OCI_INDEX, index.as_bytes())
            .await
            .code(),
        "MANIFEST_INVALID"
    );

    // Invalid ones.
    assert_eq!(
        put_manifest(&s, "img", "x", OCI_MANIFEST, b"{nope")
            .await
            .code(),
        "MANIFEST_INVALID"
    );
    assert_eq!(
        put_manifest(&s, "img", "x", OCI_INDEX, &m).await.code(),
        "MANIFEST_INVALID"
    );
    assert_eq!(
        put_manifest(&s, "img", ".bad-tag", OCI_MANIFEST, &m)
            .await
            .code(),
        "MANIFEST_INVALID"
    );
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = put_manifest(&s, "img", "big", OCI_MANIFEST, &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "MANIFEST_INVALID");
    assert_eq!(s.get("/v2/img/manifests/x").await.status, 404);
}

#[tokio::test]
async fn tag_pagination_and_catalog() {
    let s = Server::start("tags").await;
    let (m, _) = push_image(&s, "lib/app", Some("v1"), b"cfg", &[b"l1"]).await;
    for t in ["v3", "latest", "v2", "A"] {
        assert_eq!(
            put_manifest(&s, "lib/app", t, OCI_MANIFEST, &m)
                .await
                .status,
            201
        );
    }
    let r = s.get("/v2/lib/app/tags/list").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"name": "lib/app", "tags": ["A", "latest", "v1", "v2", "v3"]})
    );
    assert!(r.header("link").is_none());

    // Follow the Link headers two at a time.
    let mut seen = Vec::new();
    let mut next = Some("/v2/lib/app/tags/list?n=2".to_string());
    while let Some(url) = next {
        let r = s.get(&url).await;
        assert_eq!(r.status, 200);
        let page: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page);
        next = r.header("link").map(|l| {
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l[1..l.find('>').unwrap()].to_string()
        });
    }
    assert_eq!(seen, ["A", "latest", "v1", "v2", "v3"]);
    let r = s.get("/v2/lib/app/tags/list?n=2").await;
    assert_eq!(
        r.header("link"),
        Some("</v2/lib/app/tags/list?n=2&last=latest>; rel=\"next\"")
    );
    let r = s.get("/v2/lib/app/tags/list?last=v1").await;
    assert_eq!(r.json()["tags"], json!(["v2", "v3"]));
    let r = s.get("/v2/lib/app/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], json!([]));
    assert!(r.header("link").is_none());
    let r = s.get("/v2/missing/tags/list").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "NAME_UNKNOWN");

    push_image(&s, "a/b/c/d", Some("x"), b"cfg2", &[]).await;
    push_image(&s, "zeta", Some("x"), b"cfg3", &[]).await;
    let r = s.get("/v2/_catalog").await;
    assert_eq!(
        r.json(),
        json!({"repositories": ["a/b/c/d", "lib/app", "zeta"]})
    );
    let r = s.get("/v2/_catalog?n=1").await;
    assert_eq!(r.json()["repositories"], json!(["a/b/c/d"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/_catalog?n=1&last=a/b/c/d>; rel=\"next\"")
    );
    let r = s.get("/v2/_catalog?n=5&last=a/b/c/d").await;
    assert_eq!(r.json()["repositories"], json!(["lib/app", "zeta"]));
    assert!(r.header("link").is_none());
}

#[tokio::test]
async fn referrers_list_and_filter() {
    let s = Server::start("referrers").await;
    let (_, subject) = push_image(&s, "app", Some("v1"), b"{}", &[b"layer"]).await;
    let empty_cfg = b"{}";
    push_blob(&s, "app", b"sbom data").await;
    let sbom = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": descriptor("application/vnd.oci.empty.v1+json", empty_cfg),
        "layers": [descriptor("application/spdx+json", b"sbom data")],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"org.example.kind": "sbom"},
    })
    .to_string();
    push_blob(&s, "app", b"sig-config").await;
    let sig = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.example.signature.config", b"sig-config"),
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    })
    .to_string();
    let r = put_manifest(
        &s,
        "app",
        &sha(sbom.as_bytes()),
        OCI_MANIFEST,
        sbom.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
    let r = put_manifest(
        &s,
        "app",
        &sha(sig.as_bytes()),
        OCI_MANIFEST,
        sig.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201);

    let r = s.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert!(r.header("oci-filters-applied").is_none());
    let idx = r.json();
    assert_eq!(idx["schemaVersion"], 2);
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let list = idx["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let sbom_desc = list
        .iter()
        .find(|x| x["digest"] == sha(sbom.as_bytes()))
        .unwrap();
    assert_eq!(sbom_desc["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(sbom_desc["size"], sbom.len());
    assert_eq!(sbom_desc["mediaType"], OCI_MANIFEST);
    assert_eq!(sbom_desc["annotations"]["org.example.kind"], "sbom");
    let sig_desc = list
        .iter()
        .find(|x| x["digest"] == sha(sig.as_bytes()))
        .unwrap();
    assert_eq!(
        sig_desc["artifactType"],
        "application/vnd.example.signature.config"
    );

    let r = s
        .get(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom.v1"
        ))
        .await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let list = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sha(sbom.as_bytes()));

    // Nothing refers to this one; a bad digest is 400.
    let r = s.get(&format!("/v2/app/referrers/{}", sha(b"x"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], json!([]));
    assert_eq!(s.get("/v2/app/referrers/sha256:zz").await.status, 400);

    // Deleting a referrer takes it off the list.
    let r = s
        .req(
            "DELETE",
            &format!("/v2/app/manifests/{}", sha(sig.as_bytes())),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = s.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deletes() {
    let s = Server::start("deletes").await;
    let (m, d) = push_image(&s, "app", Some("v1"), b"config", &[b"layer"]).await;
    assert_eq!(
        put_manifest(&s, "app", "v2", OCI_MANIFEST, &m).await.status,
        201
    );
    assert_eq!(
        put_manifest(&s, "app", "keep", OCI_MANIFEST, &m)
            .await
            .status,
        201
    );

    // A tag.
    let r = s
        .req("DELETE", "/v2/app/manifests/v1", &[], Bytes::new())
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(s.get("/v2/app/manifests/v1").await.status, 404);
    assert_eq!(s.get("/v2/app/manifests/v2").await.status, 200);
    assert_eq!(
        s.req("DELETE", "/v2/app/manifests/v1", &[], Bytes::new())
            .await
            .status,
        404
    );

    // The manifest, with every tag on it.
    let r = s
        .req(
            "DELETE",
            &format!("/v2/app/manifests/{d}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        s.get(&format!("/v2/app/manifests/{d}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(s.get("/v2/app/manifests/v2").await.status, 404);
    assert_eq!(s.get("/v2/app/manifests/keep").await.status, 404);
    assert_eq!(s.get("/v2/app/tags/list").await.json()["tags"], json!([]));
    assert_eq!(
        s.req(
            "DELETE",
            &format!("/v2/app/manifests/{d}"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        404
    );
    assert_eq!(
        s.req("DELETE", "/v2/nope/manifests/x", &[], Bytes::new())
            .await
            .code(),
        "NAME_UNKNOWN"
    );

    // A blob.
    let layer = sha(b"layer");
    let r = s
        .req(
            "DELETE",
            &format!("/v2/app/blobs/{layer}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        s.req("HEAD", &format!("/v2/app/blobs/{layer}"), &[], Bytes::new())
            .await
            .status,
        404
    );
    let r = s
        .req(
            "DELETE",
            &format!("/v2/app/blobs/{layer}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn v1_search() {
    let s = Server::start("search").await;
    for repo in ["library/busybox", "tools/busybox-extra", "alpine"] {
        push_image(&s, repo, Some("latest"), repo.as_bytes(), &[]).await;
    }
    let r = s.get("/v1/search?q=busybox&n=25").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["num_results"], 2);
    assert_eq!(v["num_pages"], 1);
    assert_eq!(v["page"], 1);
    assert_eq!(v["page_size"], 25);
    assert_eq!(v["query"], "busybox");
    assert_eq!(
        v["results"][0],
        json!({"name": "library/busybox", "description": "", "star_count": 0, "is_official": false, "is_automated": false})
    );
    assert_eq!(v["results"][1]["name"], "tools/busybox-extra");
    let v = s.get("/v1/search?q=BUSYBOX&n=1&page=2").await.json();
    assert_eq!(v["num_pages"], 2);
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["name"], "tools/busybox-extra");
    assert_eq!(s.get("/v1/search?q=nothing").await.json()["num_results"], 0);
    // docker search pings first.
    let r = s.get("/v1/_ping").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-docker-registry-standalone"), Some("true"));
}
