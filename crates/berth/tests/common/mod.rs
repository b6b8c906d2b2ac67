//! Test harness for system tests: a private daemon per test (own data root, exec root, socket),
//! the busybox image, CLI runners for berth and the docker CLI, and leak checks.
#![allow(dead_code)]

pub mod compose;
pub mod swarm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// The busybox rootfs tarball. One file serves every test process: it is named after what it
/// is made from (/bin/busybox and mkbusybox.sh), made once (written aside, then renamed into
/// place, so concurrent test binaries never see half a file) and reused, not one per process.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        use std::os::unix::fs::MetadataExt;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkbusybox.sh");
        // DefaultHasher::new() has fixed keys: the same inputs give the same name in every
        // process.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).unwrap_or_default().hash(&mut h);
        if let Ok(m) = std::fs::metadata("/bin/busybox") {
            (m.len(), m.mtime(), m.ino()).hash(&mut h);
        }
        let out = std::env::temp_dir().join(format!("berth-test-busybox-{:016x}.tar", h.finish()));
        if out.exists() {
            return out;
        }
        let part = out.with_extension(format!("{}.part", std::process::id()));
        let st = Command::new(script)
            .arg(&part)
            .status()
            .expect("run mkbusybox.sh");
        assert!(st.success(), "mkbusybox.sh failed");
        std::fs::rename(&part, &out).expect("put the busybox tarball in place");
        out
    })
}

/// The second octet of this test process's IPv4 networks (10.X.0.0/16): one of 200..=251 by
/// pid, never 222 or 223, the default bridge and user-network pool of a berth daemon started
/// without options (the README's), which may run beside the tests.
pub fn net_octet() -> u32 {
    match 200 + std::process::id() % 50 {
        222 => 250,
        223 => 251,
        b => b,
    }
}

pub struct Daemon {
    /// The daemon's --cgroup-parent: every cgroup of this test lives below it.
    pub cgroup_parent: String,
    /// The default bridge of this daemon, its gateway/prefix, and its nftables table.
    pub bridge: String,
    pub bip: String,
    pub table: String,
    /// Extra daemon flags (e.g. --icc=false).
    pub flags: Vec<String>,
    n: usize,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub sock: PathBuf,
    child: Option<Child>,
    base: PathBuf,
    /// The data root is a tmpfs of its own (see [`Daemon::start_on_tmpfs`]).
    tmpfs: bool,
}

impl Daemon {
    /// Start a daemon on fresh roots and import busybox:latest.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Start a daemon with extra flags.
    pub fn start_with(flags: &[&str]) -> Daemon {
        Daemon::start_opts(flags, None, false)
    }

    /// Start a daemon whose data root is a tmpfs of `mib` MiB (to fill it up); it is
    /// unmounted when the daemon is dropped, also after a failure.
    pub fn start_on_tmpfs(mib: u64) -> Daemon {
        Daemon::start_opts(&[], Some(mib), false)
    }

    /// A daemon whose default address pool is this daemon's own first user /24 (see
    /// `user_subnet`) cut in /27s: networks made without a subnet (compose's) stay apart from
    /// every other test's.
    pub fn start_pooled() -> Daemon {
        Daemon::start_opts(&[], None, true)
    }

    fn start_opts(flags: &[&str], tmpfs_mib: Option<u64>, pooled: bool) -> Daemon {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Test binaries run one after another; within one, the counter keeps daemons apart.
        let bridge = format!("bt{}n{n}", pid % 100_000);
        let tag = format!("bt{}-{n}", std::process::id());
        let base = std::env::temp_dir().join(format!("berth-{tag}"));
        let exec_root = PathBuf::from(format!("/run/{tag}"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut d = Daemon {
            cgroup_parent: format!("berth-test-{tag}"),
            bip: format!("10.{}.{}.1/24", net_octet(), n % 100),
            table: format!("berth_{bridge}"),
            bridge,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            n,
            data_root: base.join("data"),
            sock: exec_root.join("berth.sock"),
            exec_root,
            child: None,
            base,
            tmpfs: false,
        };
        if pooled {
            let pool = format!("base={},size=27", d.user_subnet(0));
            d.flags.extend(["--default-address-pool".to_string(), pool]);
        }
        if let Some(mib) = tmpfs_mib {
            std::fs::create_dir_all(&d.data_root).unwrap();
            let st = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&d.data_root)
                .status()
                .expect("mount");
            assert!(st.success(), "mount a tmpfs on {}", d.data_root.display());
            d.tmpfs = true;
        }
        d.spawn();
        let out = d.berth(&[
            "import",
            "--change",
            "CMD [\"sh\"]",
            busybox_tar().to_str().unwrap(),
            "busybox:latest",
        ]);
        assert!(out.status.success(), "import busybox: {}", stderr(&out));
        d
    }

    /// (Re)start the daemon process on the same roots and wait for its socket.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.join("daemon.log"))
            .unwrap();
        let child = Command::new(berth_bin())
            .args(["daemon", "--data-root"])
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(["--config-file", "/nonexistent/berth-test.json"])
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(["--bridge", &self.bridge, "--bip", &self.bip])
            // No test's DNS query may leave the host: names the embedded DNS does not know
            // go to loopback, where nothing answers unless a test starts a resolver.
            .args(["--dns", "127.0.0.1"])
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start daemon");
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not start: {}", self.daemon_log());
    }

    /// SIGKILL the daemon (containers must survive).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("daemon running")
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.base.join("daemon.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_stdin(args, None)
    }

    pub fn berth_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(
            Command::new(berth_bin())
                // Registry credentials of this test only.
                .env("DOCKER_CONFIG", self.base.join("docker-config"))
                .arg("-H")
                .arg(self.host())
                .args(args),
            stdin,
        )
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        run_with_stdin(
            Command::new("docker")
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.base.join("docker-config"))
                .args(args),
            None,
        )
    }

    /// `berth` that must succeed; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}): {}\n--- stdout ---\n{}\n--- daemon log ---\n{}",
            out.status.code(),
            stderr(&out),
            stdout(&out),
            self.daemon_log()
        );
        stdout(&out).trim().to_string()
    }

    /// Raw HTTP over the socket with curl; returns (status, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--unix-socket",
        ])
        .arg(&self.sock)
        .arg(format!("http://berth{path}"));
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = cmd.output().expect("curl");
        let text = stdout(&out);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn container_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.data_root.join("containers"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
        let ids = self.container_ids();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.berth(&args);
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut tmpfs_busy = None;
        // A tmpfs data root holds the network records: they are read before it goes.
        let network_leaks = self.tmpfs.then(|| self.network_leaks());
        if self.tmpfs {
            // Shims that are still exiting may hold files there for a moment.
            let t = Instant::now();
            let unmounted = loop {
                let st = Command::new("umount").arg(&self.data_root).status();
                if st.is_ok_and(|s| s.success()) {
                    break true;
                }
                if t.elapsed() > Duration::from_secs(5) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            if !unmounted {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&self.data_root)
                    .status();
                tmpfs_busy = Some(format!("tmpfs data root {} busy", self.data_root.display()));
            }
        }
        // Processes of the daemon (its shim zygote dies by PDEATHSIG) may take a moment to
        // be gone after it exits: a leak is what is still there after a few seconds.
        let t = Instant::now();
        let mut leaks = leaks(&self.base, &self.exec_root, &self.cgroup_parent);
        while !leaks.is_empty() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(100));
            leaks = self::leaks(&self.base, &self.exec_root, &self.cgroup_parent);
        }
        leaks.extend(tmpfs_busy);
        leaks.extend(network_leaks.unwrap_or_else(|| self.network_leaks()));
        let _ = std::fs::remove_dir_all(&self.base);
        let _ = std::fs::remove_dir_all(&self.exec_root);
        if !std::thread::panicking() {
            assert!(leaks.is_empty(), "leaked after the test: {leaks:?}");
        }
    }
}

impl Daemon {
    /// A /24 for the k-th (< 5) user network of this test, apart from every other daemon's.
    pub fn user_subnet(&self, k: usize) -> String {
        format!("10.{}.{}.0/24", net_octet(), 100 + (self.n % 30) * 5 + k)
    }

    /// The default bridge's subnet prefix, e.g. "10.212.3." for addresses on it.
    pub fn subnet_prefix(&self) -> String {
        let gw = self.bip.split('/').next().unwrap_or_default();
        gw.rsplit_once('.')
            .map(|(a, _)| format!("{a}."))
            .unwrap_or_default()
    }

    /// After the daemon stopped: user networks not removed, veths still on the default bridge
    /// (they go with their namespace, asynchronously), published ports left in the table.
    /// The daemon's own lasting state (default bridge, table) is then removed.
    fn network_leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.data_root.join("networks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["predefined"] != true {
                out.push(format!("network {} not removed", v["name"]));
                if let Some(b) = v["bridge"].as_str() {
                    let _ = Command::new("ip").args(["link", "del", b]).status();
                }
            }
        }
        let t = Instant::now();
        let mut veths = String::new();
        while t.elapsed() < Duration::from_secs(10) {
            veths = links_on(&self.bridge);
            if veths.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !veths.is_empty() {
            out.push(format!("veths on {}: {veths}", self.bridge));
        }
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if text.contains("userland-proxy") && text.contains(&self.subnet_prefix()) {
                out.push(format!(
                    "proxy process {}: {text}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
        for family in ["ip", "ip6"] {
            for map in ["ports", "hostports"] {
                let o = Command::new("nft")
                    .args(["list", "map", family, &self.table, map])
                    .output()
                    .expect("nft");
                let text = stdout(&o);
                if text.contains("elements") {
                    out.push(format!("nft {family} {map}: {text}"));
                }
            }
        }
        // The IPv6 table holds only the default bridge once user networks are gone.
        let o = Command::new("nft")
            .args(["list", "set", "ip6", &self.table, "bridges"])
            .output()
            .expect("nft");
        let text = stdout(&o);
        if let Some((_, e)) = text.split_once("elements = {") {
            let elems = e.split('}').next().unwrap_or("").trim();
            if elems != format!("\"{}\"", self.bridge) {
                out.push(format!("nft ip6 bridges: {elems}"));
            }
        }
        for family in ["ip", "ip6"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, &self.table])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        for dir in ["-i", "-o"] {
            while Command::new("iptables")
                .args(["-D", "FORWARD", dir, &self.bridge, "-j", "ACCEPT"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {}
        }
        out
    }
}

/// Interfaces enslaved to a bridge, one name per line.
pub fn links_on(bridge: &str) -> String {
    let o = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .expect("ip");
    stdout(&o)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Mounts, cgroups, runtime state and processes a test left behind. Empty parent cgroups are
/// removed on the way (the daemon makes them on demand).
pub fn leaks(base: &Path, exec_root: &Path, cgroup_parent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines() {
        if l.contains(base.to_str().unwrap()) || l.contains(exec_root.to_str().unwrap()) {
            out.push(format!("mount: {l}"));
        }
    }
    if let Ok(ctls) = std::fs::read_dir("/sys/fs/cgroup") {
        for ctl in ctls.flatten() {
            let parent = ctl.path().join(cgroup_parent);
            if !parent.exists() {
                continue;
            }
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    out.push(format!("cgroup: {}", child.path().display()));
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
    let runtime_state = exec_root.join("runtime");
    for e in std::fs::read_dir(&runtime_state)
        .into_iter()
        .flatten()
        .flatten()
    {
        // Dot entries are the runtime's caches, not a container's state.
        if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(format!("runtime state: {}", e.path().display()));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let mine = |s: &str| {
                s.contains(base.to_str().unwrap()) || s.contains(exec_root.to_str().unwrap())
            };
            // Shims are forked, not executed, so they are found by the files they hold open.
            let holds_file = std::fs::read_dir(e.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| mine(&target.to_string_lossy()));
            if mine(&text) || holds_file {
                out.push(format!(
                    "process {}: {text}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    out
}

fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawn");
    if let Some(data) = stdin {
        use std::io::Write;
        let mut s = child.stdin.take().unwrap();
        s.write_all(data).unwrap();
    }
    child.wait_with_output().expect("wait")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `berth registry serve` on a free loopback port, killed with its storage on drop.
pub struct BerthRegistry {
    child: Child,
    dir: PathBuf,
    pub addr: String,
}

impl BerthRegistry {
    pub fn start(tag: &str) -> BerthRegistry {
        let addr = format!("127.0.0.1:{}", free_port());
        let dir = std::env::temp_dir().join(format!("berth-reg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(berth_bin())
            .args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(dir.join("root"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = BerthRegistry { child, dir, addr };
        let t = Instant::now();
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "registry on {} did not come up",
                reg.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
/// A TCP/UDP port free on every address, taken below the kernel's ephemeral range (32768 and
/// up): a port the kernel hands out for outgoing connections can be taken by any connect()
/// between this call and the daemon's bind, which made port publishing tests flaky.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Each test process starts at its own offset so that binaries run side by side rarely meet.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = 32768 - 20000;
    let start = (std::process::id() % span) as u16;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + (start.wrapping_add(n) as u32 % span) as u16;
        let free = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::TcpListener::bind(("::", port)).is_ok()
            && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
            && std::net::UdpSocket::bind(("::", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port between 20000 and 32767")
}

/// Poll `f` until it holds (for state that changes asynchronously, such as a shim's exit).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}
