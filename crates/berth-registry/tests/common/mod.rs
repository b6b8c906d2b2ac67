//! Shared helpers of the registry's system tests: temp dirs, an in-process server on a port-0
//! loopback socket, a small HTTP/1 client on hyper, and image builders.
#![allow(dead_code)]

use berth_registry::{bind, Error, ServeOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static N: AtomicU64 = AtomicU64::new(0);

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "berth-registry-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn options(root: &Path) -> ServeOptions {
    ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        root: root.to_path_buf(),
        htpasswd: None,
        tls_cert: None,
        tls_key: None,
        upload_max_age: berth_registry::DEFAULT_UPLOAD_MAX_AGE,
        upload_sweep: std::time::Duration::from_secs(3600),
    }
}

/// A registry serving from a temp dir in this process.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: TempDir,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Server {
    pub async fn start(tag: &str) -> Server {
        Server::start_in(TempDir::new(tag), |_| {}).await
    }

    /// Serves from `dir/root`, with options adjusted by `f`.
    pub async fn start_in(dir: TempDir, f: impl FnOnce(&mut ServeOptions)) -> Server {
        let mut opts = options(&dir.join("root"));
        f(&mut opts);
        let (addr, serving) = bind(opts).await.unwrap();
        Server {
            addr,
            dir,
            task: tokio::spawn(serving),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Stops serving (dropping the future releases the storage lock) and hands back the dir.
    pub async fn stop(self) -> TempDir {
        self.task.abort();
        let _ = self.task.await;
        self.dir
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        request(self.addr, method, path, headers, body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], Bytes::new()).await
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first error code of an error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn sha(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Counts the files under `dir`.
pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            count_files(&e.path())
        } else {
            1
        }
    })
    .sum()
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Pushes a blob in one POST; returns its digest.
pub async fn push_blob(s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha(data);
    let r = s
        .req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha(data), "size": data.len()})
}

/// An image manifest over a config and layers with the given contents.
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

pub async fn put_manifest(
    s: &Server,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Resp {
    s.req(
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("content-type", media_type)],
        body.to_vec(),
    )
    .await
}

/// Pushes the blobs and manifest of an image tagged `tag` (or untagged with `None`); returns
/// `(manifest bytes, manifest digest)`.
pub async fn push_image(
    s: &Server,
    repo: &str,
    tag: Option<&str>,
    config: &[u8],
    layers: &[&[u8]],
) -> (Vec<u8>, String) {
    push_blob(s, repo, config).await;
    for l in layers {
        push_blob(s, repo, l).await;
    }
    let m = image_manifest(config, layers);
    let d = sha(&m);
    let r = put_manifest(s, repo, tag.unwrap_or(&d), OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    (m, d)
}
