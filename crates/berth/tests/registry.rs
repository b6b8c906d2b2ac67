//! Pulling from registries on 127.0.0.1: berth's own (`berth registry serve`) and Debian's
//! docker-registry (distribution 2.8), through the berth CLI and the docker CLI; images are
//! put there with skopeo from `berth save`.

mod common;

use common::{stderr, stdout, Daemon};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A registry process, killed with its storage on drop.
struct Registry {
    child: Child,
    dir: std::path::PathBuf,
    addr: String,
}

impl Registry {
    fn wait_up(mut self) -> Registry {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return self;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("registry exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on {} did not come up", self.addr);
    }

    fn berth(tag: &str) -> Registry {
        Registry::berth_with(tag, None)
    }

    /// berth's registry, requiring HTTP Basic auth when given an htpasswd line.
    fn berth_with(tag: &str, htpasswd: Option<&str>) -> Registry {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let dir = std::env::temp_dir().join(format!("berth-reg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(common::berth_bin());
        cmd.args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(dir.join("root"));
        if let Some(line) = htpasswd {
            std::fs::write(dir.join("htpasswd"), format!("{line}\n")).unwrap();
            cmd.arg("--htpasswd").arg(dir.join("htpasswd"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Registry { child, dir, addr }.wait_up()
    }

    fn distribution(tag: &str) -> Registry {
        assert!(
            std::path::Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is needed (apt-get install docker-registry)"
        );
        let addr = format!("127.0.0.1:{}", common::free_port());
        let dir = std::env::temp_dir().join(format!("berth-dreg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Registry { child, dir, addr }.wait_up()
    }

    /// Put the daemon's busybox image there as `repo:tag` with skopeo.
    fn push_busybox(&self, d: &Daemon, repo: &str) {
        let tar = self.dir.join("busybox.tar");
        d.ok(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", tar.display()))
            .arg(format!("docker://{}/{repo}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pull_and_run(d: &Daemon, reference: &str) {
    let out = d.ok(&["pull", reference]);
    assert!(
        out.contains("Pull complete") || out.contains("Already exists"),
        "{out}"
    );
    assert!(out.contains("Status: "), "{out}");
    let ran = d.ok(&["run", "--rm", reference, "echo", "ran"]);
    assert_eq!(ran, "ran");
}

#[test]
fn pull_from_berths_own_registry_and_run() {
    let d = Daemon::start();
    let reg = Registry::berth("own");
    reg.push_busybox(&d, "tools/busybox:1");
    d.ok(&["rmi", "busybox"]);
    let r = format!("{}/tools/busybox:1", reg.addr);
    pull_and_run(&d, &r);
    // A second pull finds it all here.
    let again = d.ok(&["pull", &r]);
    assert!(again.contains("Image is up to date"), "{again}");
    // By digest (the registry's, as skopeo reads it).
    let id = stdout(
        &Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{r}"))
            .output()
            .unwrap(),
    );
    let by_digest = format!("{}/tools/busybox@{}", reg.addr, id.trim());
    d.ok(&["rmi", &r]);
    let out = d.ok(&["pull", &by_digest]);
    assert!(out.contains("Pull complete"), "{out}");
    // run pulls what is missing.
    let r2 = format!("{}/tools/busybox:1", reg.addr);
    let _ = d.berth(&["rmi", "-f", &r2]);
    let o = d.berth(&["run", "--rm", &r2, "echo", "auto"]);
    assert_eq!(stdout(&o).trim(), "auto", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Unable to find image"),
        "{}",
        stderr(&o)
    );
    // search, through berth and through the docker CLI.
    let found = d.ok(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/busy", reg.addr),
    ]);
    assert_eq!(found, format!("{}/tools/busybox", reg.addr));
    let o = d.docker(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/busy", reg.addr),
    ]);
    assert_eq!(
        stdout(&o).trim(),
        format!("{}/tools/busybox", reg.addr),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        d.ok(&["search", &format!("{}/nomatch", reg.addr)])
            .lines()
            .count(),
        1
    );
    // -a: every tag of the repository.
    d.ok(&["tag", &r, &format!("{}/tools/busybox:2", reg.addr)]);
    d.ok(&["push", &format!("{}/tools/busybox:2", reg.addr)]);
    d.ok(&["rmi", &r, &format!("{}/tools/busybox:2", reg.addr)]);
    d.ok(&["pull", "-a", &format!("{}/tools/busybox", reg.addr)]);
    let tags = d.ok(&[
        "images",
        "--format",
        "{{.Tag}}",
        &format!("{}/tools/busybox", reg.addr),
    ]);
    assert!(tags.contains('1') && tags.contains('2'), "{tags}");
    // Unknown tags and repositories are errors that name them.
    let o = d.berth(&["pull", &format!("{}/tools/busybox:nope", reg.addr)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}

#[test]
fn pull_from_distribution_registry_with_the_docker_cli() {
    let d = Daemon::start();
    let reg = Registry::distribution("dist");
    reg.push_busybox(&d, "library/bb:latest");
    d.ok(&["rmi", "busybox"]);
    let r = format!("{}/library/bb", reg.addr);
    let out = d.docker(&["pull", &r]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{r}:latest")),
        "{}",
        stdout(&out)
    );
    let out = d.docker(&["run", "--rm", &r, "echo", "via-docker"]);
    assert_eq!(stdout(&out).trim(), "via-docker", "{}", stderr(&out));
}

#[test]
fn push_to_both_registries_and_pull_back() {
    let d = Daemon::start();
    let own = Registry::berth("push");
    let dist = Registry::distribution("push");
    for reg in [&own, &dist] {
        let r = format!("{}/mine/bb:v1", reg.addr);
        d.ok(&["tag", "busybox", &r]);
        let out = d.ok(&["push", &r]);
        assert!(out.contains("Pushed"), "{out}");
        assert!(out.contains("v1: digest: sha256:"), "{out}");
        // Again: every layer is there already.
        let again = d.ok(&["push", &r]);
        assert!(again.contains("Layer already exists"), "{again}");
        // skopeo, independent of berth, reads what was pushed.
        let o = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{r}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).starts_with("sha256:"));
        // And berth pulls it back after losing it.
        d.ok(&["rmi", &r]);
        pull_and_run(&d, &r);
    }
    // The push recorded the repository digest; the pull back did too.
    let digests = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .RepoDigests}}",
        &format!("{}/mine/bb:v1", own.addr),
    ]);
    assert!(
        digests.contains(&format!("{}/mine/bb@sha256:", own.addr)),
        "{digests}"
    );
    // Another repository of the same registry: the layers are mounted, not uploaded again.
    let other = format!("{}/elsewhere/bb:v1", own.addr);
    d.ok(&["tag", "busybox", &other]);
    let out = d.ok(&["push", &other]);
    assert!(out.contains("Mounted from mine/bb"), "{out}");
    assert!(!out.contains("Pushed"), "{out}");
    // The docker CLI pushes through berthd too.
    let r = format!("{}/viadocker/bb:2", own.addr);
    d.ok(&["tag", "busybox", &r]);
    let out = d.docker(&["push", &r]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("digest: sha256:"), "{}", stdout(&out));
    // Pushing what does not exist names it.
    let o = d.berth(&["push", &format!("{}/nothing/here:1", own.addr)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not exist locally"),
        "{}",
        stderr(&o)
    );
}

/// `testuser` / `s3cret-pass`, bcrypt cost 5 (made with `htpasswd -nbB`).
const HTPASSWD: &str = "testuser:$2y$05$im/nWSseHHX3RCQDOoZa4.07v36VN4juSE8jzQ/3iWiEd77GBgk7G";

#[test]
fn login_logout_and_credentials_for_push_and_pull() {
    let d = Daemon::start();
    let reg = Registry::berth_with("auth", Some(HTPASSWD));
    let r = format!("{}/private/bb:1", reg.addr);
    d.ok(&["tag", "busybox", &r]);
    let o = d.berth(&["push", &r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    let o = d.berth_stdin(
        &["login", "-u", "testuser", "--password-stdin", &reg.addr],
        Some(b"wrong\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = d.berth_stdin(
        &["login", "-u", "testuser", "--password-stdin", &reg.addr],
        Some(b"s3cret-pass\n"),
    );
    assert!(stdout(&o).contains("Login Succeeded"), "{}", stderr(&o));
    let out = d.ok(&["push", &r]);
    assert!(out.contains("digest: sha256:"), "{out}");
    d.ok(&["rmi", &r]);
    pull_and_run(&d, &r);
    // The docker CLI logs in through berthd and pulls with its own stored credentials.
    let o = d.docker(&["login", "-u", "testuser", "-p", "s3cret-pass", &reg.addr]);
    assert!(o.status.success(), "{}", stderr(&o));
    d.ok(&["rmi", &r]);
    let o = d.docker(&["pull", &r]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d
        .ok(&["logout", &reg.addr])
        .contains("Removing login credentials"));
    d.ok(&["rmi", &r]);
    let o = d.berth(&["pull", &r]);
    assert_eq!(o.status.code(), Some(1));
}

/// Every file below the image store's directories, so a failed pull can be shown to have left
/// nothing behind.
fn store_files(d: &Daemon) -> Vec<String> {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, base, out);
            }
        }
    }
    let mut out = Vec::new();
    for sub in ["content", "snapshots", "images", "tmp"] {
        walk(&d.data_root.join(sub), &d.data_root, &mut out);
    }
    out.push(std::fs::read_to_string(d.data_root.join("repositories.json")).unwrap_or_default());
    out.sort();
    out
}

#[test]
fn broken_and_malicious_images_are_refused_and_leave_the_store_as_it_was() {
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/evil_registry.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(child);
    let addr = format!("127.0.0.1:{}", line.trim());
    let before = store_files(&d);
    // Each case and words its error must contain (lower-cased).
    let cases: &[(&str, &[&str])] = &[
        ("digest", &["digest"]),
        ("truncated", &["layer"]),
        ("size", &["size"]),
        ("diffid", &["diff"]),
        ("config", &["digest"]),
        ("bigmanifest", &["manifest", "large"]),
        ("malformed", &["manifest"]),
        ("mediatype", &["media type"]),
        ("dotdot", &["..", "escaped"]),
        ("abslink", &["root", "symlink"]),
        ("rellink", &["up", "symlink"]),
        ("hardlink", &["hardlink", "passwd"]),
        ("device", &["dev/evil", "device"]),
    ];
    let mut failures = Vec::new();
    for (case, words) in cases {
        let r = format!("{addr}/bad/{case}");
        let o = d.berth(&["pull", "-q", &r]);
        let err = stderr(&o).to_lowercase();
        if o.status.success() || !words.iter().all(|w| err.contains(w)) {
            failures.push(format!(
                "{case}: exit {:?}, stderr {:?}",
                o.status.code(),
                stderr(&o)
            ));
        }
        let o = d.berth(&["image", "inspect", &r]);
        assert!(!o.status.success(), "{case}: an image was stored");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Nothing of the refused pulls stays in the store: blobs, snapshots, images, temp files.
    assert_eq!(store_files(&d), before);
    for f in ["/escaped", "/tmp/evil-abslink", "/tmp/evil-rellink"] {
        assert!(!std::path::Path::new(f).exists(), "{f} written on the host");
    }
    // The docker CLI through berthd gets the error too, with a non-zero exit.
    let o = d.docker(&["pull", &format!("{addr}/bad/dotdot")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(".."), "{}", stderr(&o));
    // The store still works: the control image pulls and its file is there.
    let good = format!("{addr}/good/img");
    d.ok(&["pull", &good]);
    let id = d.ok(&["create", &good]);
    let out = d.ok(&["cp", &format!("{id}:/hello"), "-"]);
    assert!(out.contains("hello from the evil registry"), "{out}");
    d.ok(&["rm", &id]);
}

/// A larger image of several layers (Debian minbase from debootstrap, three gzip layers of
/// ~92 MB) goes through berth's registry and Debian's docker-registry: berth pulls it from
/// both and runs Debian's own programs, pushes it to another repository (mounted, not sent
/// again), and the docker CLI pulls it through berthd.
#[test]
fn multi_layer_debian_image_through_both_registries() {
    let d = Daemon::start();
    let own = Registry::berth("minbase");
    let dist = Registry::distribution("minbase");
    let work = own.dir.join("minbase");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkminbase.sh");
    let o = Command::new(script).arg(&work).output().unwrap();
    assert!(o.status.success(), "mkminbase: {}", stderr(&o));
    for reg in [&own, &dist] {
        let r = format!("{}/debian/minbase:1", reg.addr);
        let o = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:1", work.join("oci").display()))
            .arg(format!("docker://{r}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo: {}", stderr(&o));
        let out = d.ok(&["pull", &r]);
        assert_eq!(out.matches("Pull complete").count(), 3, "{out}");
        let v = d.ok(&["run", "--rm", &r, "cat", "/etc/debian_version"]);
        assert!(v.starts_with("12."), "{v}");
        let other = format!("{}/copies/minbase:1", reg.addr);
        d.ok(&["tag", &r, &other]);
        let out = d.ok(&["push", &other]);
        assert_eq!(
            out.matches("Mounted from debian/minbase").count(),
            3,
            "{out}"
        );
        d.ok(&["rmi", &r, &other]);
    }
    // The docker CLI pulls it through berthd, and the layers come back as they were.
    let r = format!("{}/debian/minbase:1", dist.addr);
    let o = d.docker(&["pull", &r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.docker(&[
        "run",
        "--rm",
        &r,
        "dpkg-query",
        "-W",
        "-f=${Package}\\n",
        "bash",
    ]);
    assert_eq!(stdout(&o).trim(), "bash", "{}", stderr(&o));
    d.ok(&["rmi", &r]);
}
