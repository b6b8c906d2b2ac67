//! Test helpers: temporary directories, a throw-away Debian `docker-registry` on 127.0.0.1, test
//! images made from /bin/busybox, and TLS certificates made with openssl.

use std::future::poll_fn;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_distribution::{media, sha256_digest, BlobStream, DigestVerifier, Error};
use futures_core::Stream;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "berth-dist-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Install a Debian package when `binary` is missing (CI machines start without
/// docker-registry); once per test process.
fn ensure_installed(binary: &str, package: &str) {
    if Path::new(binary).exists() {
        return;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-q", package]) {
        assert!(apt(&["update", "-q"]), "apt-get update failed");
        assert!(
            apt(&["install", "-y", "-q", package]),
            "apt-get install {package} failed"
        );
    }
    assert!(
        Path::new(binary).exists(),
        "{binary} still missing after installing {package}"
    );
}

pub fn docker_registry() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| ensure_installed("/usr/bin/docker-registry", "docker-registry"));
    "/usr/bin/docker-registry"
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options of a test registry.
#[derive(Default)]
pub struct RegistryOpts {
    /// An htpasswd line (`user:bcrypt-hash`) to require Basic auth.
    pub htpasswd: Option<String>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A Debian `docker-registry` (distribution 2.8) on 127.0.0.1 with its own storage and config,
/// killed and removed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    /// Storage, config and log; removed on drop.
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(RegistryOpts::default())
    }

    pub fn start_with(opts: RegistryOpts) -> Registry {
        let bin = docker_registry();
        let dir = TempDir::new("registry");
        let mut auth = String::new();
        if let Some(line) = &opts.htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, format!("{line}\n")).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                path.display()
            );
        }
        let tls = match &opts.tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        // The port is picked free, then bound by the registry: retry on the rare race.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n{tls}{auth}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(bin)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting docker-registry");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Registry {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    panic!("docker-registry did not start listening: {log}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry kept exiting: {log}");
    }

    /// `127.0.0.1:<port>`, the registry name.
    pub fn name(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small image: one layer (a tar of /bin/busybox, gzip or not), a config, an OCI manifest.
pub struct TestImage {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub layer_path: PathBuf,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub config_path: PathBuf,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

pub fn busybox_tar() -> Vec<u8> {
    let data = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "bin/busybox", data.as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

impl TestImage {
    pub fn new(dir: &Path, gzip: bool) -> TestImage {
        let tar = busybox_tar();
        let diff_id = sha256_digest(&tar);
        let (layer, layer_type) = if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).unwrap();
            (enc.finish().unwrap(), media::OCI_LAYER_GZIP)
        } else {
            (tar, media::OCI_LAYER)
        };
        let layer_digest = sha256_digest(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/busybox","true"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
        .into_bytes();
        let config_digest = sha256_digest(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer_digest}","size":{}}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            config.len(),
            layer.len()
        )
        .into_bytes();
        let manifest_digest = sha256_digest(&manifest);
        let layer_path = dir.join("layer");
        let config_path = dir.join("config.json");
        std::fs::write(&layer_path, &layer).unwrap();
        std::fs::write(&config_path, &config).unwrap();
        TestImage {
            layer,
            layer_digest,
            layer_path,
            config,
            config_digest,
            config_path,
            manifest,
            manifest_digest,
        }
    }
}

/// Drain a blob stream through a `DigestVerifier`.
pub async fn read_verified(
    blob: BlobStream,
    digest: &str,
    size: Option<u64>,
) -> Result<Vec<u8>, Error> {
    let mut v = DigestVerifier::new(blob, digest, size)?;
    let mut out = Vec::new();
    while let Some(chunk) = poll_fn(|cx| Pin::new(&mut v).poll_next(cx)).await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// TLS material made with openssl: a CA and a server certificate for IP 127.0.0.1 signed by it.
pub struct Certs {
    /// Holds the files; removed on drop.
    _dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    pub fn new() -> Certs {
        let dir = TempDir::new("certs");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(d, &args);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        Certs {
            ca: d.join("ca.crt"),
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            _dir: dir,
        }
    }
}
