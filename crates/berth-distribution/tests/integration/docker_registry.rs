//! Push, pull, tags, mounts, chunked uploads, Basic auth, mirrors and TLS against Debian's
//! `docker-registry` (distribution 2.8) on 127.0.0.1.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_distribution::{
    media, sha256_digest, Client, ClientConfig, Credentials, Error, ParsedManifest,
};

use crate::common::{read_verified, Certs, Registry, RegistryOpts, TempDir, TestImage};

const NONE: Credentials = Credentials::None;

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

/// Records progress callbacks.
#[derive(Default)]
struct Progress(Mutex<Vec<u64>>);

impl Progress {
    fn values(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

fn record(p: &Progress) -> impl Fn(u64) + Send + Sync + '_ {
    move |n| p.0.lock().unwrap().push(n)
}

/// Push the test image's blobs and manifest under `tag`.
async fn push_image(
    c: &Client,
    reg: &str,
    repo: &str,
    img: &TestImage,
    tag: &str,
    creds: &Credentials,
) {
    let noop = |_: u64| {};
    c.push_blob(reg, repo, &img.layer_digest, &img.layer_path, &noop, creds)
        .await
        .unwrap();
    c.push_blob(
        reg,
        repo,
        &img.config_digest,
        &img.config_path,
        &noop,
        creds,
    )
    .await
    .unwrap();
    let digest = c
        .put_manifest(reg, repo, tag, media::OCI_MANIFEST, &img.manifest, creds)
        .await
        .unwrap();
    assert_eq!(digest, img.manifest_digest);
}

#[tokio::test]
async fn push_then_pull_an_image() {
    let r = Registry::start();
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);
    let c = client();
    let repo = "berth/busybox";

    assert_eq!(
        c.blob_exists(&reg, repo, &img.layer_digest, &NONE)
            .await
            .unwrap(),
        None
    );
    let progress = Progress::default();
    c.push_blob(
        &reg,
        repo,
        &img.layer_digest,
        &img.layer_path,
        &record(&progress),
        &NONE,
    )
    .await
    .unwrap();
    let values = progress.values();
    assert_eq!(values.last(), Some(&(img.layer.len() as u64)), "{values:?}");
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    c.push_blob(
        &reg,
        repo,
        &img.config_digest,
        &img.config_path,
        &|_| {},
        &NONE,
    )
    .await
    .unwrap();
    assert_eq!(
        c.blob_exists(&reg, repo, &img.layer_digest, &NONE)
            .await
            .unwrap(),
        Some(img.layer.len() as u64)
    );
    let digest = c
        .put_manifest(&reg, repo, "v1", media::OCI_MANIFEST, &img.manifest, &NONE)
        .await
        .unwrap();
    assert_eq!(digest, img.manifest_digest);

    // By tag and by digest: same bytes, verified digest, parsed layers.
    for reference in ["v1", img.manifest_digest.as_str()] {
        let m = c.get_manifest(&reg, repo, reference, &NONE).await.unwrap();
        assert_eq!(m.bytes.as_ref(), img.manifest.as_slice());
        assert_eq!(m.digest, img.manifest_digest);
        assert_eq!(m.media_type, media::OCI_MANIFEST);
        let ParsedManifest::Image(parsed) = &m.parsed else {
            panic!("expected an image manifest")
        };
        assert_eq!(parsed.config.digest, img.config_digest);
        assert_eq!(parsed.layers.len(), 1);
        assert_eq!(parsed.layers[0].digest, img.layer_digest);
        assert_eq!(
            media::layer_compression(&parsed.layers[0].media_type),
            Some(media::Compression::Gzip)
        );
    }

    // Blobs stream back and verify.
    let size = img.layer.len() as u64;
    let blob = c
        .get_blob(&reg, repo, &img.layer_digest, Some(size), &NONE)
        .await
        .unwrap();
    assert_eq!(blob.size(), Some(size));
    let data = read_verified(blob, &img.layer_digest, Some(size))
        .await
        .unwrap();
    assert_eq!(data, img.layer);

    let blob = c
        .get_blob(&reg, repo, &img.config_digest, None, &NONE)
        .await
        .unwrap();
    let config = read_verified(blob, &img.config_digest, Some(img.config.len() as u64))
        .await
        .unwrap();
    assert_eq!(config, img.config);

    // Verifying against another digest fails naming both.
    let blob = c
        .get_blob(&reg, repo, &img.config_digest, None, &NONE)
        .await
        .unwrap();
    let err = read_verified(blob, &img.layer_digest, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&img.layer_digest) && msg.contains(&img.config_digest),
        "{msg}"
    );

    // A size hint that contradicts the registry is refused before any byte is read.
    let err = c
        .get_blob(&reg, repo, &img.layer_digest, Some(size + 1), &NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
}

#[tokio::test]
async fn missing_things_are_typed_errors() {
    let r = Registry::start();
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), false);
    let c = client();
    push_image(&c, &reg, "app", &img, "latest", &NONE).await;

    let err = c
        .get_manifest(&reg, "app", "nosuchtag", &NONE)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.registry_errors()[0].code, "MANIFEST_UNKNOWN");
    assert_eq!(
        err.to_string(),
        format!("{reg}/app:nosuchtag: not found: manifest unknown: manifest unknown")
    );
    let missing = sha256_digest(b"not there");
    let err = c
        .get_blob(&reg, "app", &missing, None, &NONE)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("blob unknown"), "{err}");
    let err = c
        .get_manifest(&reg, "nosuchrepo", "latest", &NONE)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = c.tags(&reg, "nosuchrepo", &NONE).await.unwrap_err();
    assert_eq!(err.registry_errors()[0].code, "NAME_UNKNOWN", "{err}");

    // A manifest whose layer the registry lacks: the registry's code comes through.
    let dangling = String::from_utf8(img.manifest.clone())
        .unwrap()
        .replace(&img.layer_digest, &missing);
    let err = c
        .put_manifest(
            &reg,
            "app",
            "broken",
            media::OCI_MANIFEST,
            dangling.as_bytes(),
            &NONE,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Registry { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.registry_errors()[0].code,
        "MANIFEST_BLOB_UNKNOWN",
        "{err}"
    );

    // Unreachable registry: a network error naming the target.
    let closed = crate::common::free_port();
    let err = c
        .get_manifest(&format!("127.0.0.1:{closed}"), "app", "latest", &NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn chunked_upload_above_the_threshold() {
    let r = Registry::start();
    let reg = r.name();
    let work = TempDir::new("work");
    // Uncompressed busybox tar: about 2 MB, so many 256 KiB chunks.
    let img = TestImage::new(work.path(), false);
    let chunk = 256 << 10;
    let c = Client::new(ClientConfig {
        monolithic_threshold: 64 << 10,
        chunk_size: chunk,
        ..ClientConfig::default()
    })
    .unwrap();
    let size = img.layer.len() as u64;
    assert!(size > 4 * chunk, "layer too small for the test: {size}");
    let progress = Progress::default();
    c.push_blob(
        &reg,
        "big",
        &img.layer_digest,
        &img.layer_path,
        &record(&progress),
        &NONE,
    )
    .await
    .unwrap();
    let values = progress.values();
    // Progress is reported after every chunk: each chunk boundary shows up.
    let mut boundary = chunk;
    while boundary < size {
        assert!(
            values.contains(&boundary),
            "no progress at {boundary}: {values:?}"
        );
        boundary += chunk;
    }
    assert_eq!(values.last(), Some(&size));
    let blob = c
        .get_blob(&reg, "big", &img.layer_digest, Some(size), &NONE)
        .await
        .unwrap();
    assert_eq!(
        read_verified(blob, &img.layer_digest, Some(size))
            .await
            .unwrap(),
        img.layer
    );

    // Claiming a wrong digest: the registry refuses at the final PUT, chunked or not, and the
    // blob does not appear.
    let wrong = sha256_digest(b"something else");
    for path in [&img.layer_path, &img.config_path] {
        let err = c
            .push_blob(&reg, "big", &wrong, path, &|_| {}, &NONE)
            .await
            .unwrap_err();
        assert_eq!(err.registry_errors()[0].code, "DIGEST_INVALID", "{err}");
    }
    assert_eq!(
        c.blob_exists(&reg, "big", &wrong, &NONE).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn tags_list_every_tag() {
    let r = Registry::start();
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);
    let c = client();
    push_image(&c, &reg, "tagged", &img, "t0", &NONE).await;
    let mut want = vec!["t0".to_string()];
    for i in 1..7 {
        let tag = format!("t{i}");
        c.put_manifest(
            &reg,
            "tagged",
            &tag,
            media::OCI_MANIFEST,
            &img.manifest,
            &NONE,
        )
        .await
        .unwrap();
        want.push(tag);
    }
    let mut tags = c.tags(&reg, "tagged", &NONE).await.unwrap();
    tags.sort();
    assert_eq!(tags, want);
}

#[tokio::test]
async fn cross_repository_mount() {
    let r = Registry::start();
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);
    let c = client();
    push_image(&c, &reg, "src/app", &img, "v1", &NONE).await;
    assert_eq!(
        c.blob_exists(&reg, "dst/app", &img.layer_digest, &NONE)
            .await
            .unwrap(),
        None
    );
    assert!(c
        .mount_blob(&reg, "dst/app", &img.layer_digest, "src/app", &NONE)
        .await
        .unwrap());
    assert_eq!(
        c.blob_exists(&reg, "dst/app", &img.layer_digest, &NONE)
            .await
            .unwrap(),
        Some(img.layer.len() as u64)
    );
    // Nothing to mount: the registry opens an upload instead, which is cancelled.
    let missing = sha256_digest(b"missing");
    assert!(!c
        .mount_blob(&reg, "dst/app", &missing, "src/app", &NONE)
        .await
        .unwrap());
    assert_eq!(
        c.blob_exists(&reg, "dst/app", &missing, &NONE)
            .await
            .unwrap(),
        None
    );
}

/// `testuser` / `s3cret-pass`, bcrypt cost 5 (made with `htpasswd -nbB`).
const HTPASSWD: &str = "testuser:$2y$05$im/nWSseHHX3RCQDOoZa4.07v36VN4juSE8jzQ/3iWiEd77GBgk7G";

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    let r = Registry::start_with(RegistryOpts {
        htpasswd: Some(HTPASSWD.into()),
        ..RegistryOpts::default()
    });
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);
    let c = client();
    let good = Credentials::Basic {
        username: "testuser".into(),
        password: "s3cret-pass".into(),
    };
    let bad = Credentials::Basic {
        username: "testuser".into(),
        password: "wrong".into(),
    };

    let err = c.login(&reg, &NONE).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{reg}: unauthorized: authentication required")
    );
    let err = c.login(&reg, &bad).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    c.login(&reg, &good).await.unwrap();

    let err = c.tags(&reg, "private", &NONE).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let err = c
        .push_blob(
            &reg,
            "private",
            &img.config_digest,
            &img.config_path,
            &|_| {},
            &bad,
        )
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");

    push_image(&c, &reg, "private", &img, "v1", &good).await;
    let m = c.get_manifest(&reg, "private", "v1", &good).await.unwrap();
    assert_eq!(m.digest, img.manifest_digest);
    let blob = c
        .get_blob(&reg, "private", &img.layer_digest, None, &good)
        .await
        .unwrap();
    assert_eq!(
        read_verified(blob, &img.layer_digest, None).await.unwrap(),
        img.layer
    );
    assert_eq!(c.tags(&reg, "private", &good).await.unwrap(), ["v1"]);
    // A fresh client (no learned challenge) with bad credentials is still refused.
    let err = client()
        .get_manifest(&reg, "private", "v1", &bad)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
}

#[tokio::test]
async fn mirrors_serve_pulls_and_never_receive_pushes() {
    let mirror = Registry::start();
    let upstream = Registry::start();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);
    push_image(&client(), &mirror.name(), "lib/app", &img, "v1", &NONE).await;

    let c = Client::new(ClientConfig {
        mirrors: HashMap::from([(
            upstream.name(),
            vec![
                // A dead mirror first: skipped.
                format!("http://127.0.0.1:{}", crate::common::free_port()),
                format!("http://{}", mirror.name()),
            ],
        )]),
        ..ClientConfig::default()
    })
    .unwrap();
    // The upstream is empty: only the mirror can answer.
    let m = c
        .get_manifest(&upstream.name(), "lib/app", "v1", &NONE)
        .await
        .unwrap();
    assert_eq!(m.digest, img.manifest_digest);
    let blob = c
        .get_blob(&upstream.name(), "lib/app", &img.layer_digest, None, &NONE)
        .await
        .unwrap();
    assert_eq!(
        read_verified(blob, &img.layer_digest, None).await.unwrap(),
        img.layer
    );
    // Existence checks, tags and pushes go to the registry itself.
    assert_eq!(
        c.blob_exists(&upstream.name(), "lib/app", &img.layer_digest, &NONE)
            .await
            .unwrap(),
        None
    );
    assert!(c
        .tags(&upstream.name(), "lib/app", &NONE)
        .await
        .unwrap_err()
        .is_not_found());
    c.push_blob(
        &upstream.name(),
        "lib/new",
        &img.config_digest,
        &img.config_path,
        &|_| {},
        &NONE,
    )
    .await
    .unwrap();
    let plain = client();
    assert!(plain
        .blob_exists(&upstream.name(), "lib/new", &img.config_digest, &NONE)
        .await
        .unwrap()
        .is_some());
    assert!(plain
        .blob_exists(&mirror.name(), "lib/new", &img.config_digest, &NONE)
        .await
        .unwrap()
        .is_none());
    // Something neither has: the registry's own answer is returned.
    let err = c
        .get_manifest(&upstream.name(), "lib/app", "v2", &NONE)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().starts_with(&upstream.name()), "{err}");
}

#[tokio::test]
async fn tls_with_a_certs_d_ca() {
    let certs = Certs::new();
    let r = Registry::start_with(RegistryOpts {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..RegistryOpts::default()
    });
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);

    // certs.d/<host:port>/ca.crt: HTTPS, verified against that CA.
    let certs_d = TempDir::new("certs.d");
    std::fs::create_dir_all(certs_d.path().join(&reg)).unwrap();
    std::fs::copy(&certs.ca, certs_d.path().join(&reg).join("ca.crt")).unwrap();
    let c = Client::new(ClientConfig {
        certs_dir: certs_d.path().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    push_image(&c, &reg, "secure", &img, "v1", &NONE).await;
    let m = c.get_manifest(&reg, "secure", "v1", &NONE).await.unwrap();
    assert_eq!(m.digest, img.manifest_digest);

    // Another CA: the certificate is rejected with a TLS error.
    let other = Certs::new();
    let wrong_d = TempDir::new("certs.d");
    std::fs::create_dir_all(wrong_d.path().join(&reg)).unwrap();
    std::fs::copy(&other.ca, wrong_d.path().join(&reg).join("ca.crt")).unwrap();
    let c = Client::new(ClientConfig {
        certs_dir: wrong_d.path().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = c
        .get_manifest(&reg, "secure", "v1", &NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // Listed as insecure: HTTPS without verification.
    let c = Client::new(ClientConfig {
        insecure_registries: vec![reg.clone()],
        certs_dir: TempDir::new("empty").path().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    let m = c.get_manifest(&reg, "secure", "v1", &NONE).await.unwrap();
    assert_eq!(m.digest, img.manifest_digest);
}

#[tokio::test]
async fn insecure_registry_falls_back_to_http() {
    let r = Registry::start();
    let reg = r.name();
    let work = TempDir::new("work");
    let img = TestImage::new(work.path(), true);
    // Listed by name, so HTTPS is tried first; the plain-HTTP registry makes the TLS handshake
    // fail and the client falls back to HTTP.
    let c = Client::new(ClientConfig {
        insecure_registries: vec![reg.clone()],
        ..ClientConfig::default()
    })
    .unwrap();
    push_image(&c, &reg, "plain", &img, "v1", &NONE).await;
    let m = c.get_manifest(&reg, "plain", "v1", &NONE).await.unwrap();
    assert_eq!(m.digest, img.manifest_digest);
}
