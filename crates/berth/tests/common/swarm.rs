//! A multi-node berth cluster for swarm tests: `scripts/swarm-cluster.sh` starts N daemons,
//! each in network and UTS namespaces of its own on one bridge LAN; the docker CLI drives
//! them. The cluster is torn down on drop, also after a failure.

use super::{berth_bin, busybox_tar, stderr, stdout};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How long a veth may outlive its container: a network namespace with TCP connections in
/// TIME_WAIT goes only when they end (60 s on Linux).
const LINGER: Duration = Duration::from_secs(75);

pub struct Cluster {
    pub name: String,
    pub n: usize,
    down: bool,
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swarm-cluster.sh")
}

impl Cluster {
    /// N fresh daemons (node1..nodeN) with busybox:latest, in no swarm yet.
    pub fn up(n: usize) -> Cluster {
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("sw{}{k}", std::process::id() % 10_000);
        let c = Cluster {
            name,
            n,
            down: false,
        };
        let out = c.script(&["up", &c.name, &n.to_string()]);
        assert!(out.status.success(), "cluster up: {}", stderr(&out));
        c
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("sh")
            .arg(script())
            .args(args)
            .env("BERTH", berth_bin())
            .env("BUSYBOX_TAR", busybox_tar())
            .output()
            .expect("run swarm-cluster.sh")
    }

    pub fn sock(&self, i: usize) -> String {
        format!("unix:///run/{}/node{i}.sock", self.name)
    }

    pub fn addr(&self, i: usize) -> String {
        format!("10.231.0.{}", 10 + i)
    }

    /// The docker CLI against node `i`.
    pub fn docker(&self, i: usize, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", self.sock(i))
            .env("DOCKER_CONFIG", format!("/run/{}/docker-config", self.name))
            .args(args)
            .output()
            .expect("run docker")
    }

    /// The docker CLI that must succeed; trimmed stdout.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.docker(i, args);
        assert!(
            out.status.success(),
            "docker {args:?} on node{i} failed: {}\n{}\n--- node{i} log tail ---\n{}",
            stderr(&out),
            stdout(&out),
            self.log_tail(i)
        );
        stdout(&out).trim().to_string()
    }

    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(format!("/var/lib/{}/node{i}.log", self.name))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `swarm init` on node1, managers 2..=managers join as managers, the rest as workers;
    /// returns once every node is Ready.
    pub fn form(&self, managers: usize) {
        self.form_with(managers, |_| Vec::new());
    }

    /// As `form`, with `more(i)` added to node `i`'s `swarm init` or `swarm join` flags.
    pub fn form_with(&self, managers: usize, more: impl Fn(usize) -> Vec<String>) {
        let flags = |i: usize, mut base: Vec<String>| {
            base.extend(more(i));
            base
        };
        let init = flags(
            1,
            vec![
                "swarm".into(),
                "init".into(),
                "--advertise-addr".into(),
                self.addr(1),
            ],
        );
        self.ok(1, &init.iter().map(String::as_str).collect::<Vec<_>>());
        let mt = self.ok(1, &["swarm", "join-token", "-q", "manager"]);
        let wt = self.ok(1, &["swarm", "join-token", "-q", "worker"]);
        for i in 2..=self.n {
            let token = if i <= managers { &mt } else { &wt };
            let remote = format!("{}:2377", self.addr(1));
            let join = flags(
                i,
                vec![
                    "swarm".into(),
                    "join".into(),
                    "--token".into(),
                    token.clone(),
                    "--advertise-addr".into(),
                    self.addr(i),
                ],
            );
            let mut args: Vec<&str> = join.iter().map(String::as_str).collect();
            args.push(&remote);
            self.ok(i, &args);
        }
        self.until("every node ready", Duration::from_secs(30), || {
            self.docker(1, &["node", "ls", "--format", "{{.Status}}"])
                .status
                .success()
                && stdout(&self.docker(1, &["node", "ls", "--format", "{{.Status}}"]))
                    .lines()
                    .filter(|l| *l == "Ready")
                    .count()
                    == self.n
        });
    }

    /// Polls `f` every 100 ms until it holds or `limit` passes (then panics with the logs).
    pub fn until(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let logs: Vec<String> = (1..=self.n)
            .map(|i| format!("--- node{i} ---\n{}", self.log_tail(i)))
            .collect();
        panic!("timed out waiting for {what}\n{}", logs.join("\n"));
    }

    /// kill -9 of node `i`'s daemon only (its tasks keep running).
    pub fn crash(&self, i: usize) {
        let out = self.script(&["crash", &self.name, &i.to_string()]);
        assert!(out.status.success(), "crash: {}", stderr(&out));
    }

    /// kill -9 of node `i`'s daemon, shims and containers (the host died).
    pub fn kill(&self, i: usize) {
        let out = self.script(&["kill", &self.name, &i.to_string()]);
        assert!(out.status.success(), "kill: {}", stderr(&out));
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to node `i`'s daemon alone.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = std::fs::read_to_string(format!("/run/{}/node{i}.pid", self.name))
            .expect("node pid file");
        let out = Command::new("kill")
            .args([&format!("-{signal}"), pid.trim()])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill -{signal}: {}", stderr(&out));
    }

    /// Starts node `i`'s daemon again on its roots.
    pub fn start(&self, i: usize) {
        let out = self.script(&["start", &self.name, &i.to_string()]);
        assert!(out.status.success(), "start: {}", stderr(&out));
    }

    /// Stops the cluster and checks that its daemons left nothing behind: every container is
    /// removed and every daemon stopped with TERM, then, before anything is removed by force,
    /// `swarm-cluster.sh check` lists per node the mounts, cgroups, processes, links, nftables
    /// tables and elements, xfrm states and policies and task files that are left (a stopped
    /// daemon keeps only its default bridge and its own table); that list must be empty. The
    /// forced teardown must then have had nothing of berth's to remove either (it reports each
    /// process, mount and cgroup it removes), and no namespace, mount, cgroup, process or file
    /// of the cluster remains.
    pub fn down_and_check(mut self) {
        let stop = self.script(&["stop", &self.name]);
        assert!(stop.status.success(), "cluster stop: {}", stderr(&stop));
        // The kernel takes a container's network namespace apart once nothing holds it (its
        // TIME_WAIT sockets may, for up to a minute), and with it the host end of its veth
        // pair: such a veth alone is waited for, anything else fails at once.
        let waited = Instant::now();
        let left = loop {
            let check = self.script(&["check", &self.name]);
            assert!(check.status.success(), "cluster check: {}", stderr(&check));
            let left = format!("{}{}", stdout(&check), stdout(&stop));
            let veth_alone = left
                .lines()
                .all(|l| l.contains(": link ") && l.contains(" veth "));
            if left.trim().is_empty() || !veth_alone || waited.elapsed() > LINGER {
                break left;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        if waited.elapsed() > Duration::from_secs(1) {
            println!(
                "down_and_check: waited {:?} for the kernel to remove veths",
                waited.elapsed()
            );
        }
        // The daemons' warnings and errors, kept for the message before the logs go.
        let logs: Vec<String> = (1..=self.n)
            .map(|i| {
                let log = std::fs::read_to_string(format!("/var/lib/{}/node{i}.log", self.name))
                    .unwrap_or_default();
                let bad: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                format!(
                    "--- node{i} ---\n{}",
                    bad[bad.len().saturating_sub(20)..].join("\n")
                )
            })
            .collect();
        let out = self.script(&["down", &self.name]);
        self.down = true;
        assert!(out.status.success(), "cluster down: {}", stderr(&out));
        assert!(
            left.trim().is_empty(),
            "left behind by the stopped daemons:\n{left}{}",
            logs.join("\n")
        );
        let forced = stdout(&out);
        assert!(
            !forced.contains("removed: "),
            "the teardown had to remove by force:\n{forced}"
        );
        let netns = stdout(&Command::new("ip").args(["netns", "list"]).output().unwrap());
        assert!(
            !netns
                .lines()
                .any(|l| l.starts_with(&format!("{}-", self.name))),
            "namespaces left: {netns}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        assert!(
            !mounts.contains(&format!("/run/{}/", self.name))
                && !mounts.contains(&format!("/var/lib/{}/", self.name)),
            "mounts left"
        );
        for ctl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let left: Vec<String> = std::fs::read_dir(ctl.path())
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(&format!("{}-node", self.name)))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "cgroups left in {:?}: {left:?}",
                ctl.path()
            );
        }
        let ps = stdout(&Command::new("ps").args(["-eo", "args"]).output().unwrap());
        assert!(
            !ps.lines()
                .any(|l| l.contains(&format!("/run/{}/", self.name))),
            "processes left: {ps}"
        );
        assert!(!std::path::Path::new(&format!("/run/{}", self.name)).exists());
        assert!(!std::path::Path::new(&format!("/var/lib/{}", self.name)).exists());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.script(&["down", &self.name]);
        }
    }
}
