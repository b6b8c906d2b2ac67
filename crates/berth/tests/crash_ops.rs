//! The daemon killed with SIGKILL in the middle of an operation — a start, a pull, a push, a
//! build, a volume copy-up — and started again: the operation either happened or left
//! nothing half-done (no partial image, snapshot or volume content, no orphan container,
//! mount, cgroup or temp dir), the daemon's listings agree with each other, the operation
//! works when tried again, and the harness finds nothing leaked at the end.

mod common;

use common::{eventually, links_on, stderr, Daemon};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A `berth` client run in the background (the operation the daemon dies in).
fn spawn_berth(d: &Daemon, args: &[&str]) -> Child {
    Command::new(common::berth_bin())
        .env("DOCKER_CONFIG", d.data_root.with_file_name("docker-config"))
        .arg("-H")
        .arg(d.host())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Poll `f` (every millisecond, for up to `secs`) until it holds; false if it never did.
fn poll(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// What the daemon lists agrees with itself: `system df` names the containers `ps -a` shows,
/// and every image it counts is one `images -a` lists.
fn listings_agree(d: &Daemon) {
    let (code, df) = d.curl("GET", "/system/df", None);
    assert_eq!(code, 200, "{df}");
    let df: serde_json::Value = serde_json::from_str(&df).unwrap();
    let mut in_df: Vec<String> = df["Containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["Id"].as_str().unwrap_or_default().to_string())
        .collect();
    in_df.sort();
    let mut in_ps: Vec<String> = d
        .ok(&["ps", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    in_ps.sort();
    assert_eq!(in_df, in_ps, "system df and ps -a disagree");
    let images = d.ok(&["images", "-a", "-q", "--no-trunc"]);
    for i in df["Images"].as_array().into_iter().flatten() {
        let id = i["Id"].as_str().unwrap_or_default();
        assert!(
            images.contains(id),
            "system df counts {id}, images lists {images}"
        );
    }
}

/// No mount below the exec root's container run dirs (a stopped container's filesystem
/// mounted for an operation the daemon never finished).
fn no_run_dir_mounts(d: &Daemon) {
    let run_dirs = d.exec_root.join("c");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(run_dirs.to_str().unwrap()))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
}

/// Every file below the image store's directories (blobs, snapshots, records, temp files)
/// and the tags, so a cut-short pull or push can be shown to have changed nothing.
fn store_files(d: &Daemon) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
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

/// The HTTP status of the manifest for `repo:tag` in the registry at `addr`.
fn manifest_status(addr: &str, repo: &str, tag: &str) -> String {
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!("http://{addr}/v2/{repo}/manifests/{tag}"))
        .output()
        .unwrap();
    common::stdout(&o)
}

/// A TCP relay in front of a registry that holds back the bytes of one direction (the
/// registry's answers, or the client's requests) beyond a limit: the daemon can then be
/// killed at a known point in the middle of a transfer.
struct Relay {
    addr: String,
    limit: Arc<AtomicU64>,
    moved: Arc<AtomicU64>,
    held: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Gate {
    limit: Arc<AtomicU64>,
    moved: Arc<AtomicU64>,
    held: Arc<AtomicBool>,
}

impl Relay {
    /// Relays to `upstream`; `uploads` picks the direction that is counted and held.
    fn start(upstream: &str, uploads: bool) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            addr: l.local_addr().unwrap().to_string(),
            limit: Arc::new(AtomicU64::new(u64::MAX)),
            moved: Arc::new(AtomicU64::new(0)),
            held: Arc::new(AtomicBool::new(false)),
        };
        let gate = || Gate {
            limit: relay.limit.clone(),
            moved: relay.moved.clone(),
            held: relay.held.clone(),
        };
        let (g1, g2) = (gate(), gate());
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let up = uploads.then(|| g1.clone());
                let down = (!uploads).then(|| g2.clone());
                std::thread::spawn(move || pipe(client, server, up));
                std::thread::spawn(move || pipe(s2, c2, down));
            }
        });
        relay
    }

    /// Let `bytes` more of the counted direction through, then hold it.
    fn hold_after(&self, bytes: u64) {
        self.limit
            .store(self.moved.load(Ordering::SeqCst) + bytes, Ordering::SeqCst);
    }

    fn open(&self) {
        self.limit.store(u64::MAX, Ordering::SeqCst);
    }

    fn is_holding(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, gate: Option<Gate>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(g) = &gate {
            while g.moved.load(Ordering::SeqCst) + n as u64 > g.limit.load(Ordering::SeqCst) {
                g.held.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
            g.moved.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// An image `big:1`: busybox and a layer of 24 MiB of random data (which gzip cannot shrink).
fn make_big_image(d: &Daemon) {
    d.ok(&[
        "run",
        "--name",
        "gen-big",
        "busybox",
        "sh",
        "-c",
        "head -c 25165824 /dev/urandom > /big",
    ]);
    d.ok(&["commit", "gen-big", "big:1"]);
    d.ok(&["rm", "gen-big"]);
}

/// Killed while a layer of the image is being downloaded: after the restart the store is
/// as it was before the pull (no blob, snapshot, record, tag or temp file of it), and the
/// pull then succeeds.
#[test]
fn daemon_killed_during_pull() {
    let mut d = Daemon::start();
    let reg = common::BerthRegistry::start("pull");
    make_big_image(&d);
    let direct = format!("{}/crash/big:1", reg.addr);
    d.ok(&["tag", "big:1", &direct]);
    d.ok(&["push", &direct]);
    d.ok(&["rmi", "big:1", &direct]);
    let relay = Relay::start(&reg.addr, false);
    let r = format!("{}/crash/big:1", relay.addr);
    let before = store_files(&d);
    // 4 MiB of the answers go through: the manifest, the config and part of the big layer.
    relay.hold_after(4 << 20);
    let client = spawn_berth(&d, &["pull", &r]);
    eventually("the pull is held in the middle of the layer", || {
        relay.is_holding()
    });
    let partial = std::fs::read_dir(d.data_root.join("content/tmp"))
        .unwrap()
        .count();
    assert!(
        partial > 0,
        "no blob being written when the daemon is killed"
    );
    d.crash();
    let out = client.wait_with_output().unwrap();
    assert!(!out.status.success(), "the pull finished: {}", stderr(&out));
    d.spawn();
    assert!(!d.ok(&["images", "-a"]).contains("crash/big"));
    assert_eq!(
        store_files(&d),
        before,
        "the pull left part of itself behind"
    );
    listings_agree(&d);
    relay.open();
    let out = d.ok(&["pull", &r]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", &r, "sh", "-c", "wc -c < /big"]),
        "25165824"
    );
    listings_agree(&d);
}

/// Killed while a layer is being uploaded: the local image is untouched, the registry has no
/// manifest for the tag, and the push then succeeds and pulls back whole.
#[test]
fn daemon_killed_during_push() {
    let mut d = Daemon::start();
    let reg = common::BerthRegistry::start("push");
    make_big_image(&d);
    let relay = Relay::start(&reg.addr, true);
    let r = format!("{}/crash/pushed:1", relay.addr);
    d.ok(&["tag", "big:1", &r]);
    let before = store_files(&d);
    relay.hold_after(4 << 20);
    let client = spawn_berth(&d, &["push", &r]);
    eventually("the push is held in the middle of the layer", || {
        relay.is_holding()
    });
    d.crash();
    let out = client.wait_with_output().unwrap();
    assert!(!out.status.success(), "the push finished: {}", stderr(&out));
    d.spawn();
    assert_eq!(store_files(&d), before, "the push changed the local store");
    assert_eq!(manifest_status(&reg.addr, "crash/pushed", "1"), "404");
    assert_eq!(
        d.ok(&["run", "--rm", &r, "sh", "-c", "wc -c < /big"]),
        "25165824"
    );
    listings_agree(&d);
    relay.open();
    let out = d.ok(&["push", &r]);
    assert!(out.contains("digest: sha256:"), "{out}");
    assert_eq!(manifest_status(&reg.addr, "crash/pushed", "1"), "200");
    d.ok(&["rmi", &r, "big:1"]);
    d.ok(&["pull", &r]);
    assert_eq!(
        d.ok(&["run", "--rm", &r, "sh", "-c", "wc -c < /big"]),
        "25165824"
    );
}

/// Killed while a build's RUN step runs: the step's container (still running) is killed and
/// removed at the restart, the build's temp dirs are gone, no image is tagged, and the build
/// then succeeds.
#[test]
fn daemon_killed_during_build() {
    let mut d = Daemon::start();
    let ctx = d.data_root.with_file_name("build-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG T=0\nRUN echo step > /m && sleep $T\n",
    )
    .unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let client = spawn_berth(
        &d,
        &["build", "--build-arg", "T=60", "-t", "crashed:1", ctx_s],
    );
    eventually("the RUN step runs", || !d.ok(&["ps", "-q"]).is_empty());
    let step = d.ok(&["ps", "-q", "--no-trunc"]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &step]);
    assert!(alive(&pid));
    d.crash();
    let out = client.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the build finished: {}",
        stderr(&out)
    );
    d.spawn();
    assert!(!alive(&pid), "the step's process outlived the restart");
    assert_eq!(
        d.ok(&["ps", "-a", "-q"]),
        "",
        "the step's container is left"
    );
    assert!(d.container_ids().is_empty());
    assert!(!d.exec_root.join("c").join(&step).exists());
    assert!(!d.exec_root.join("runtime").join(&step).exists());
    let tmp = d.data_root.join("builder/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0),
        0,
        "build temp dirs left in {}",
        tmp.display()
    );
    assert!(!d.ok(&["images"]).contains("crashed"));
    listings_agree(&d);
    let out = d.berth(&["build", "-t", "crashed:1", ctx_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.ok(&["run", "--rm", "crashed:1", "cat", "/m"]), "step");
    assert_eq!(d.ok(&["ps", "-a", "-q"]), "");
    std::fs::remove_dir_all(&ctx).unwrap();
}

/// Killed while a create fills a new volume from a big image directory (32 MiB in 2000
/// files): at the restart the
/// create has either finished (the volume whole) or left nothing (no container, the volume
/// empty, no mount of the container's filesystem), and the create then works.
#[test]
fn daemon_killed_during_volume_copy_up() {
    const FILES: usize = 2000;
    let mut d = Daemon::start();
    d.ok(&[
        "run",
        "--name",
        "gen-dir",
        "busybox",
        "sh",
        "-c",
        &format!(
            "mkdir /big && cd /big && i=0; \
             while [ $i -lt {FILES} ]; do head -c 16384 /dev/urandom > f$i; i=$((i+1)); done"
        ),
    ]);
    d.ok(&["commit", "gen-dir", "bigdir:1"]);
    d.ok(&["rm", "gen-dir"]);
    let data = d.data_root.join("volumes/cuvol/_data");
    let client = spawn_berth(
        &d,
        &["create", "--name", "cu", "-v", "cuvol:/big", "bigdir:1"],
    );
    assert!(
        poll(60, || std::fs::read_dir(&data)
            .is_ok_and(|mut r| r.next().is_some())),
        "the copy-up never began"
    );
    d.crash();
    let out = client.wait_with_output().unwrap();
    d.spawn();
    no_run_dir_mounts(&d);
    let count = |d: &Daemon| {
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "cuvol:/v",
            "busybox",
            "sh",
            "-c",
            "ls /v | wc -l",
        ])
    };
    if d.berth(&["inspect", "cu"]).status.success() {
        // The create finished before the kill.
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(count(&d), FILES.to_string());
        d.ok(&["rm", "cu"]);
    } else {
        assert!(!out.status.success());
        assert!(d.container_ids().is_empty(), "the create left a container");
        if data.exists() {
            assert_eq!(
                std::fs::read_dir(&data).unwrap().count(),
                0,
                "partial copy left"
            );
        }
        assert!(!d.data_root.join("volumes/cuvol/copy-up").exists());
    }
    listings_agree(&d);
    let _ = d.berth(&["volume", "rm", "cuvol"]);
    d.ok(&["create", "--name", "cu", "-v", "cuvol:/big", "bigdir:1"]);
    assert_eq!(count(&d), FILES.to_string());
    d.ok(&["rm", "-v", "cu"]);
    d.ok(&["volume", "rm", "cuvol"]);
}

/// Killed at several points while containers with published ports on a user network start:
/// after the restart each is either running (and answers `exec`) or stopped with nothing of
/// it left on the exec root, the network has one veth per running container, and `start`
/// then brings them all up.
#[test]
fn daemon_killed_during_start() {
    let mut d = Daemon::start();
    let net = d.ok(&[
        "network",
        "create",
        "--subnet",
        &d.user_subnet(0),
        "killnet",
    ]);
    let bridge = format!("br-{}", &net[..12]);
    let names: Vec<String> = (0..4).map(|i| format!("ks{i}")).collect();
    let ids: Vec<String> = names
        .iter()
        .map(|n| {
            d.ok(&[
                "create",
                "--name",
                n,
                "--network",
                "killnet",
                "-p",
                "127.0.0.1::80",
                "busybox",
                "sleep",
                "300",
            ])
        })
        .collect();
    let mut start_args = vec!["start"];
    start_args.extend(names.iter().map(String::as_str));
    for round in 0..4 {
        let mut client = spawn_berth(&d, &start_args);
        // The kill lands once this round's container has begun to start, a little later
        // each round (no assertion depends on where it lands).
        let run_dir = d.exec_root.join("c").join(&ids[round]);
        poll(10, || run_dir.exists());
        std::thread::sleep(Duration::from_millis(3 * round as u64));
        d.crash();
        let _ = client.wait();
        d.spawn();
        let mut running = 0;
        for (n, id) in names.iter().zip(&ids) {
            let status = d.ok(&["inspect", "-f", "{{.State.Status}}", n]);
            if status == "running" {
                running += 1;
                assert_eq!(d.ok(&["exec", n, "echo", "up"]), "up");
            } else {
                assert!(
                    status == "created" || status == "exited",
                    "{n}: {status} after round {round}"
                );
                for dir in ["c", "runtime"] {
                    let p = d.exec_root.join(dir).join(id);
                    assert!(!p.exists(), "{n} is {status} but {} exists", p.display());
                }
            }
        }
        eventually("one veth per running container", || {
            links_on(&bridge).split_whitespace().count() == running
        });
        listings_agree(&d);
        d.ok(&start_args);
        for n in &names {
            assert_eq!(d.ok(&["exec", n, "echo", "again"]), "again");
            assert!(d.ok(&["port", n]).contains("127.0.0.1:"), "{n} has no port");
        }
        let mut kill_args = vec!["kill"];
        kill_args.extend(names.iter().map(String::as_str));
        d.ok(&kill_args);
        for (n, id) in names.iter().zip(&ids) {
            eventually("stopped", || {
                d.ok(&["inspect", "-f", "{{.State.Status}}", n]) == "exited"
            });
            let run_dir = d.exec_root.join("c").join(id);
            eventually("the stopped container's run dir goes", || !run_dir.exists());
        }
    }
    let mut rm_args = vec!["rm", "-f"];
    rm_args.extend(names.iter().map(String::as_str));
    d.ok(&rm_args);
    d.ok(&["network", "rm", "killnet"]);
}
