//! Resource samples of a container for `GET /containers/{id}/stats`, in Docker's shape: the
//! cgroup's counters (through berth-runtime), the host's CPU time from /proc/stat, and the
//! interfaces of the container's network namespace from /proc/<pid>/net/dev. A sample is a
//! few small reads of kernel files; nothing is spawned. It only reads: it never changes a container
//! or its cgroup, and never sees the Daemon or the routes.

use crate::container::handle::Container;
use crate::container::network::endpoint::{mode, Mode};
use crate::container::status;
use berth_api::stats::{
    BlkioStatEntry, BlkioStats, CpuStats, CpuUsage, MemoryStats, NetworkStats, PidsStats,
    StatsResponse, ThrottlingData,
};
use berth_runtime::{BlkioEntry, CgroupStats, ContainerCgroup};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The `memory_stats.stats` keys Docker reports on cgroup v1 (from memory.stat).
const MEMORY_KEYS_V1: &[&str] = &[
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
];

/// The `memory_stats.stats` keys Docker reports on cgroup v2 (from memory.stat).
const MEMORY_KEYS_V2: &[&str] = &[
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
];

/// The host's memory in bytes: the limit shown for containers without one.
fn machine_memory() -> u64 {
    static MEM: OnceLock<u64> = OnceLock::new();
    *MEM.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                    kb.trim().parse::<u64>().ok()
                })
            })
            .map_or(0, |kb| kb * 1024)
    })
}

/// The host's CPU time in nanoseconds (user to softirq of the `cpu` line, in 100 Hz ticks)
/// and the number of CPUs, as Docker reads /proc/stat.
fn system_cpu(stat: &str) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            break;
        };
        if rest.starts_with(' ') {
            let ticks: u64 = rest
                .split_whitespace()
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
            // USER_HZ is 100: a tick is 10 ms.
            total = ticks.saturating_mul(10_000_000);
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            cpus += 1;
        }
    }
    (total, cpus)
}

/// `/proc/<pid>/net/dev` as per-interface counters, loopback left out.
fn net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

fn blkio(entries: &[BlkioEntry]) -> Vec<BlkioStatEntry> {
    entries
        .iter()
        .map(|e| BlkioStatEntry {
            major: e.major,
            minor: e.minor,
            op: e.op.clone(),
            value: e.value,
        })
        .collect()
}

/// Docker's sample from the cgroup's counters.
fn from_cgroup(cg: &CgroupStats) -> StatsResponse {
    let keys = if cg.v2 {
        MEMORY_KEYS_V2
    } else {
        MEMORY_KEYS_V1
    };
    let mut limit = cg.memory_limit;
    let host = machine_memory();
    if limit > host && host > 0 {
        limit = host;
    }
    let blkio_stats = if cg.v2 {
        BlkioStats {
            io_service_bytes_recursive: (!cg.io_service_bytes.is_empty())
                .then(|| blkio(&cg.io_service_bytes)),
            ..BlkioStats::default()
        }
    } else {
        BlkioStats {
            io_service_bytes_recursive: Some(blkio(&cg.io_service_bytes)),
            io_serviced_recursive: Some(blkio(&cg.io_serviced)),
            io_queued_recursive: Some(Vec::new()),
            io_service_time_recursive: Some(Vec::new()),
            io_wait_time_recursive: Some(Vec::new()),
            io_merged_recursive: Some(Vec::new()),
            io_time_recursive: Some(Vec::new()),
            sectors_recursive: Some(Vec::new()),
        }
    };
    StatsResponse {
        pids_stats: PidsStats {
            current: cg.pids_current,
            limit: cg.pids_limit,
        },
        blkio_stats,
        cpu_stats: CpuStats {
            cpu_usage: CpuUsage {
                total_usage: cg.cpu_total,
                percpu_usage: cg.cpu_percpu.clone(),
                usage_in_kernelmode: cg.cpu_system,
                usage_in_usermode: cg.cpu_user,
            },
            throttling_data: ThrottlingData {
                periods: cg.throttling_periods,
                throttled_periods: cg.throttled_periods,
                throttled_time: cg.throttled_time,
            },
            ..CpuStats::default()
        },
        memory_stats: MemoryStats {
            usage: cg.memory_usage,
            max_usage: cg.memory_max_usage,
            stats: keys
                .iter()
                .map(|k| (k.to_string(), cg.memory_stat.get(*k).copied().unwrap_or(0)))
                .collect(),
            failcnt: cg.memory_failcnt,
            limit,
            ..MemoryStats::default()
        },
        ..StatsResponse::default()
    }
}

/// Successive samples of one container, each carrying the previous one's CPU counters.
pub struct Sampler {
    c: Arc<Container>,
    /// The cgroup of the running init with this pid.
    cgroup: Option<(i32, ContainerCgroup)>,
    pre_cpu: CpuStats,
    pre_read: String,
}

impl Sampler {
    pub fn new(c: Arc<Container>) -> Sampler {
        Sampler {
            c,
            cgroup: None,
            pre_cpu: CpuStats::default(),
            pre_read: berth_api::stats::ZERO_TIME.to_string(),
        }
    }

    /// Sample now (blocking file reads: call on a blocking thread).
    pub fn next(&mut self) -> StatsResponse {
        let mut s = self.sample();
        s.precpu_stats = std::mem::replace(&mut self.pre_cpu, s.cpu_stats.clone());
        s.preread = std::mem::replace(&mut self.pre_read, s.read.clone());
        s
    }

    /// The counters now; only the name and id (Docker's empty sample) when the container
    /// does not run.
    fn sample(&mut self) -> StatsResponse {
        let r = self.c.snapshot();
        let empty = StatsResponse {
            name: r.name.clone(),
            id: r.id.clone(),
            ..StatsResponse::default()
        };
        if !r.is_running() || r.state.status == status::RESTARTING || r.state.pid <= 0 {
            self.cgroup = None;
            return empty;
        }
        let pid = r.state.pid;
        if self.cgroup.as_ref().is_none_or(|(p, _)| *p != pid) {
            let rt = berth_runtime::Runtime::new(&self.c.runtime_root);
            self.cgroup = rt.cgroup(&r.id).ok().map(|cg| (pid, cg));
        }
        let Some(Ok(counters)) = self.cgroup.as_ref().map(|(_, cg)| cg.stats()) else {
            return empty;
        };
        let read = berth_api::timefmt::now();
        let mut s = from_cgroup(&counters);
        s.name = r.name.clone();
        s.id = r.id.clone();
        s.read = read;
        let (system, cpus) = system_cpu(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        s.cpu_stats.system_usage = system;
        s.cpu_stats.online_cpus = cpus;
        if !matches!(mode(&r), Mode::Host) {
            s.networks = net_dev(
                &std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default(),
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files() {
        let (t, n) = system_cpu("cpu  100 0 50 800 10 0 5 7 0 0\ncpu0 50 0 25 400 5 0 2 3 0 0\ncpu1 50 0 25 400 5 0 3 4 0 0\nintr 1\n");
        assert_eq!(t, 965 * 10_000_000);
        assert_eq!(n, 2);
        let nd = net_dev(concat!(
            "Inter-|   Receive                                                |  Transmit\n",
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
            "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n",
            "  eth0:    5338      36    1    2    0     0          0         0      648       8    3    4    0     0       0          0\n",
        ));
        assert_eq!(nd.len(), 1);
        let e = &nd["eth0"];
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped),
            (5338, 36, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped),
            (648, 8, 3, 4)
        );
    }

    #[test]
    fn docker_shape_from_counters() {
        let cg = CgroupStats {
            memory_usage: 4096,
            memory_limit: u64::MAX,
            memory_stat: BTreeMap::from([("total_inactive_file".to_string(), 1024)]),
            pids_current: 2,
            ..CgroupStats::default()
        };
        let s = from_cgroup(&cg);
        assert_eq!(s.memory_stats.limit, machine_memory());
        assert_eq!(s.memory_stats.stats.len(), MEMORY_KEYS_V1.len());
        assert_eq!(s.memory_stats.stats["total_inactive_file"], 1024);
        assert_eq!(s.memory_used(), 3072.0);
        assert_eq!(s.pids_stats.current, 2);
        assert_eq!(s.blkio_stats.sectors_recursive, Some(Vec::new()));
    }
}
