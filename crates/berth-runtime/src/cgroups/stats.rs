//! Resource counters of a container's cgroup (CPU, memory, pids, block I/O) read straight
//! from the v1 controllers' or the v2 files, for `docker stats`. Nothing is spawned: each
//! sample is a handful of small file reads.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Cgroup;

/// v1's `cpuacct.stat` counts in USER_HZ ticks, which Linux fixes at 100 per second.
const TICKS_PER_SECOND: u64 = 100;

/// One line of a block I/O counter file: device, operation, value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total` (v1) or `read`/`write` (v2).
    pub op: String,
    pub value: u64,
}

/// Counters of one cgroup at one moment. Times are in nanoseconds, sizes in bytes; a
/// counter the kernel does not offer is 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Read from the unified (v2) hierarchy.
    pub v2: bool,
    pub cpu_total: u64,
    /// Per-CPU usage (v1 only).
    pub cpu_percpu: Vec<u64>,
    pub cpu_user: u64,
    pub cpu_system: u64,
    pub throttling_periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
    pub memory_usage: u64,
    /// Peak usage (v1 only).
    pub memory_max_usage: u64,
    /// The limit; `u64::MAX` or the kernel's huge value when unlimited.
    pub memory_limit: u64,
    /// v1 `memory.failcnt`; v2 the `oom` count of `memory.events`.
    pub memory_failcnt: u64,
    /// `memory.stat` as keys and values.
    pub memory_stat: BTreeMap<String, u64>,
    pub pids_current: u64,
    /// 0 when unlimited.
    pub pids_limit: u64,
    /// Bytes per device and operation.
    pub io_service_bytes: Vec<BlkioEntry>,
    /// Operations per device and operation (v1 only).
    pub io_serviced: Vec<BlkioEntry>,
}

/// A container's cgroup, located once (see [`crate::Runtime::cgroup`]) and then sampled.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    pub(crate) cg: Cgroup,
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn read_u64(path: &Path) -> u64 {
    parse_limit(read(path).trim())
}

/// A number, or "max" (unlimited) as `u64::MAX`; anything else is 0.
fn parse_limit(s: &str) -> u64 {
    if s == "max" {
        u64::MAX
    } else {
        s.parse().unwrap_or(0)
    }
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events).
fn key_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn device(s: &str) -> Option<(u64, u64)> {
    let (maj, min) = s.split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// v1 `blkio.throttle.*` lines: `8:0 Read 4096`; the closing `Total N` line is skipped.
fn blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (major, minor) = device(f.next()?)?;
            let op = f.next()?.to_string();
            let value = f.next()?.parse().ok()?;
            Some(BlkioEntry {
                major,
                minor,
                op,
                value,
            })
        })
        .collect()
}

/// v2 `io.stat` lines: `8:0 rbytes=1 wbytes=2 rios=3 ...` as read and write byte entries.
fn io_v2(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(device) else {
            continue;
        };
        let kv: BTreeMap<&str, u64> = f
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        for (key, op) in [("rbytes", "read"), ("wbytes", "write")] {
            out.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value: kv.get(key).copied().unwrap_or(0),
            });
        }
    }
    out
}

impl ContainerCgroup {
    /// Whether the container's cgroup is on the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.cg.v2
    }

    /// The directory of the v1 hierarchy that has `controller` (or the v2 directory).
    fn dir(&self, controller: &str) -> Option<&PathBuf> {
        if self.cg.v2 {
            return self.cg.dirs.first().map(|d| &d.path);
        }
        self.cg
            .dirs
            .iter()
            .find(|d| d.subsystems.split(',').any(|s| s == controller))
            .map(|d| &d.path)
    }

    /// Read the counters now. Fails with `NotFound` once the cgroup is gone.
    pub fn stats(&self) -> io::Result<CgroupStats> {
        let first = self.cg.dirs.first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the container has no cgroup")
        })?;
        fs::metadata(&first.path)?;
        Ok(if self.cg.v2 {
            self.stats_v2(&first.path)
        } else {
            self.stats_v1()
        })
    }

    fn stats_v1(&self) -> CgroupStats {
        let mut s = CgroupStats::default();
        if let Some(d) = self.dir("cpuacct") {
            s.cpu_total = read_u64(&d.join("cpuacct.usage"));
            s.cpu_percpu = read(&d.join("cpuacct.usage_percpu"))
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let st = key_values(&read(&d.join("cpuacct.stat")));
            let ns = |k: &str| st.get(k).copied().unwrap_or(0) * 1_000_000_000 / TICKS_PER_SECOND;
            s.cpu_user = ns("user");
            s.cpu_system = ns("system");
        }
        if let Some(d) = self.dir("cpu") {
            let st = key_values(&read(&d.join("cpu.stat")));
            s.throttling_periods = st.get("nr_periods").copied().unwrap_or(0);
            s.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
            s.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
        }
        if let Some(d) = self.dir("memory") {
            s.memory_usage = read_u64(&d.join("memory.usage_in_bytes"));
            s.memory_max_usage = read_u64(&d.join("memory.max_usage_in_bytes"));
            s.memory_limit = read_u64(&d.join("memory.limit_in_bytes"));
            s.memory_failcnt = read_u64(&d.join("memory.failcnt"));
            s.memory_stat = key_values(&read(&d.join("memory.stat")));
        }
        if let Some(d) = self.dir("pids") {
            s.pids_current = read_u64(&d.join("pids.current"));
            s.pids_limit = match read_u64(&d.join("pids.max")) {
                u64::MAX => 0,
                n => n,
            };
        }
        if let Some(d) = self.dir("blkio") {
            s.io_service_bytes = blkio_v1(&read(&d.join("blkio.throttle.io_service_bytes")));
            s.io_serviced = blkio_v1(&read(&d.join("blkio.throttle.io_serviced")));
        }
        s
    }

    fn stats_v2(&self, d: &Path) -> CgroupStats {
        let cpu = key_values(&read(&d.join("cpu.stat")));
        let us = |k: &str| cpu.get(k).copied().unwrap_or(0);
        let events = key_values(&read(&d.join("memory.events")));
        CgroupStats {
            v2: true,
            cpu_total: us("usage_usec") * 1000,
            cpu_user: us("user_usec") * 1000,
            cpu_system: us("system_usec") * 1000,
            throttling_periods: us("nr_periods"),
            throttled_periods: us("nr_throttled"),
            throttled_time: us("throttled_usec") * 1000,
            memory_usage: read_u64(&d.join("memory.current")),
            memory_limit: read_u64(&d.join("memory.max")),
            memory_failcnt: events.get("oom").copied().unwrap_or(0),
            memory_stat: key_values(&read(&d.join("memory.stat"))),
            pids_current: read_u64(&d.join("pids.current")),
            pids_limit: match read_u64(&d.join("pids.max")) {
                u64::MAX => 0,
                n => n,
            },
            io_service_bytes: io_v2(&read(&d.join("io.stat"))),
            ..CgroupStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let kv = key_values("cache 4096\nrss 8192\nbogus\ntotal_inactive_file 12\n");
        assert_eq!(kv["rss"], 8192);
        assert_eq!(kv["total_inactive_file"], 12);
        assert_eq!(kv.len(), 3);
        assert_eq!(parse_limit("max"), u64::MAX);
        assert_eq!(parse_limit("42"), 42);
        let b = blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 512
            }
        );
        let io = io_v2("259:0 rbytes=100 wbytes=20 rios=3 wios=1 dbytes=0 dios=0\n");
        assert_eq!(io.len(), 2);
        assert_eq!((io[0].op.as_str(), io[0].value), ("read", 100));
        assert_eq!((io[1].op.as_str(), io[1].value), ("write", 20));
    }

    #[test]
    fn gone_cgroup_is_not_found() {
        let cg = ContainerCgroup {
            cg: Cgroup {
                v2: false,
                dirs: vec![super::super::CgroupDir {
                    name: "memory".into(),
                    subsystems: "memory".into(),
                    path: PathBuf::from("/nonexistent/berth-test-cgroup"),
                    created: Vec::new(),
                }],
            },
        };
        assert_eq!(cg.stats().unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
