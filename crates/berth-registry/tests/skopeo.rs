//! Interop with an independent client: skopeo pushes a busybox image (an OCI layout built here
//! from /bin/busybox) into the registry, lists, inspects, pulls it back unchanged, converts it to
//! Docker schema2, authenticates with htpasswd, and deletes it.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

/// A gzip stream of `data` in stored (uncompressed) deflate blocks: a valid `tar+gzip` layer
/// without paying for deflate in a debug build.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let crc = !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    });
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65535).peekable();
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Writes an OCI layout with one image (a gzip layer holding bin/busybox and bin/sh) tagged
/// `latest`; returns the manifest's bytes.
fn busybox_layout(dir: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    tar.append_data(&mut h, "bin/", std::io::empty()).unwrap();
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static provides /bin/busybox");
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &busybox[..])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tar.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let layer_tar = tar.into_inner().unwrap();
    let layer = gzip_stored(&layer_tar);

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer_tar)]},
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
    })
    .to_string()
    .into_bytes();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for b in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(&sha(b)[7..]), b).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut desc = descriptor(OCI_MANIFEST, &manifest);
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    manifest
}

/// Runs skopeo off the async threads (the server shares them).
async fn skopeo(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            .arg("--insecure-policy")
            .args(&args)
            .output()
            .expect("skopeo is needed for this test (apt-get install skopeo)")
    })
    .await
    .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn args(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_pull_round_trip() {
    let s = Server::start("skopeo").await;
    let work = TempDir::new("skopeo-work");
    let layout = work.join("layout");
    let manifest = busybox_layout(&layout);
    let digest = sha(&manifest);
    let src = format!("oci:{}:latest", layout.display());
    let image = format!("docker://{}/interop/busybox:1.0", s.addr);

    // Push.
    ok(&skopeo(args(&["copy", "--dest-tls-verify=false", &src, &image])).await);
    let r = s.get("/v2/interop/busybox/manifests/1.0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(r.body, manifest, "pushed byte for byte");

    // Inspect and list.
    let raw = ok(&skopeo(args(&["inspect", "--tls-verify=false", "--raw", &image])).await);
    assert_eq!(raw.as_bytes(), &manifest[..]);
    let tags = ok(&skopeo(args(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/interop/busybox", s.addr),
    ]))
    .await);
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], json!(["1.0"]));

    // Pull back into a new layout: same manifest digest, every blob intact.
    let out = work.join("pulled");
    let dest = format!("oci:{}:copy", out.display());
    ok(&skopeo(args(&["copy", "--src-tls-verify=false", &image, &dest])).await);
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    for f in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let f = f.unwrap();
        let data = std::fs::read(f.path()).unwrap();
        assert_eq!(sha(&data)[7..], *f.file_name().to_str().unwrap());
    }
    assert_eq!(count_files(&out.join("blobs")), 3);

    // Converted to Docker schema2 on the way in, served with that type.
    let v2s2 = format!("docker://{}/interop/busybox:v2s2", s.addr);
    ok(&skopeo(args(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &src,
        &v2s2,
    ]))
    .await);
    let r = s.get("/v2/interop/busybox/manifests/v2s2").await;
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    let raw = ok(&skopeo(args(&["inspect", "--tls-verify=false", "--raw", &v2s2])).await);
    assert_eq!(
        sha(raw.as_bytes()),
        r.header("docker-content-digest").unwrap()
    );

    // Delete (by digest, as skopeo resolves the tag first).
    ok(&skopeo(args(&["delete", "--tls-verify=false", &image])).await);
    assert_eq!(s.get("/v2/interop/busybox/manifests/1.0").await.status, 404);
    assert_eq!(
        s.get(&format!("/v2/interop/busybox/manifests/{digest}"))
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_htpasswd() {
    let dir = TempDir::new("skopeo-auth");
    let hash = bcrypt::hash("pushpass", 4).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("pusher:{hash}\n")).unwrap();
    let file = dir.join("htpasswd");
    let s = Server::start_in(dir, |o| o.htpasswd = Some(file)).await;
    let work = TempDir::new("skopeo-auth-work");
    let layout = work.join("layout");
    let manifest = busybox_layout(&layout);
    let src = format!("oci:{}:latest", layout.display());
    let image = format!("docker://{}/private/busybox:latest", s.addr);
    // An empty auth file keeps whatever credentials this machine has out of the test.
    let authfile = work.join("auth.json");
    std::fs::write(&authfile, "{}").unwrap();
    let authfile = authfile.display().to_string();

    let denied = skopeo(args(&[
        "copy",
        "--authfile",
        &authfile,
        "--dest-tls-verify=false",
        &src,
        &image,
    ]))
    .await;
    assert!(!denied.status.success());
    ok(&skopeo(args(&[
        "copy",
        "--authfile",
        &authfile,
        "--dest-tls-verify=false",
        "--dest-creds",
        "pusher:pushpass",
        &src,
        &image,
    ]))
    .await);
    let raw = ok(&skopeo(args(&[
        "inspect",
        "--authfile",
        &authfile,
        "--tls-verify=false",
        "--creds",
        "pusher:pushpass",
        "--raw",
        &image,
    ]))
    .await);
    assert_eq!(raw.as_bytes(), &manifest[..]);
}
