//! `GET /containers/{id}/stats` samples (swagger `ContainerStatsResponse`), encoded like
//! Docker's Go structs (which fields are omitted when zero), and the docker CLI's arithmetic
//! on them (CPU %, memory without the page cache, block and network totals).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn zero(n: &u64) -> bool {
    *n == 0
}

fn zero32(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottlingData {
    #[serde(default)]
    pub periods: u64,
    #[serde(default)]
    pub throttled_periods: u64,
    #[serde(default)]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Nanoseconds of CPU time.
    #[serde(default)]
    pub total_usage: u64,
    /// Per-CPU nanoseconds (cgroup v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_usage: Vec<u64>,
    #[serde(default)]
    pub usage_in_kernelmode: u64,
    #[serde(default)]
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    #[serde(default)]
    pub cpu_usage: CpuUsage,
    /// Nanoseconds of CPU time of the whole host (from /proc/stat).
    #[serde(rename = "system_cpu_usage", default, skip_serializing_if = "zero")]
    pub system_usage: u64,
    #[serde(default, skip_serializing_if = "zero32")]
    pub online_cpus: u32,
    #[serde(default)]
    pub throttling_data: ThrottlingData,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    #[serde(default, skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub max_usage: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "zero")]
    pub failcnt: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub limit: u64,
    #[serde(rename = "commitbytes", default, skip_serializing_if = "zero")]
    pub commit: u64,
    #[serde(rename = "commitpeakbytes", default, skip_serializing_if = "zero")]
    pub commit_peak: u64,
    #[serde(rename = "privateworkingset", default, skip_serializing_if = "zero")]
    pub private_working_set: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioStatEntry {
    #[serde(default)]
    pub major: u64,
    #[serde(default)]
    pub minor: u64,
    #[serde(default)]
    pub op: String,
    #[serde(default)]
    pub value: u64,
}

/// Block I/O counters; a list Docker has no data for is `null` (None) or `[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioStats {
    #[serde(default)]
    pub io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(rename = "io_queue_recursive", default)]
    pub io_queued_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

/// Windows-only counters; always empty on Linux.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStats {
    #[serde(default, skip_serializing_if = "zero")]
    pub read_count_normalized: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub read_size_bytes: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub write_count_normalized: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub write_size_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStats {
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub rx_packets: u64,
    #[serde(default)]
    pub rx_errors: u64,
    #[serde(default)]
    pub rx_dropped: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    #[serde(default)]
    pub tx_packets: u64,
    #[serde(default)]
    pub tx_errors: u64,
    #[serde(default)]
    pub tx_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    #[serde(default, skip_serializing_if = "zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub limit: u64,
}

/// Go's zero `time.Time` as encoded in JSON.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn zero_time() -> String {
    ZERO_TIME.to_string()
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// The container's name with its leading `/`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default = "zero_time")]
    pub read: String,
    #[serde(default = "zero_time")]
    pub preread: String,
    #[serde(default)]
    pub pids_stats: PidsStats,
    #[serde(default)]
    pub blkio_stats: BlkioStats,
    #[serde(default)]
    pub num_procs: u32,
    #[serde(default)]
    pub storage_stats: StorageStats,
    #[serde(default)]
    pub cpu_stats: CpuStats,
    #[serde(default)]
    pub precpu_stats: CpuStats,
    #[serde(default)]
    pub memory_stats: MemoryStats,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkStats>,
}

impl Default for StatsResponse {
    fn default() -> StatsResponse {
        StatsResponse {
            name: String::new(),
            id: String::new(),
            read: zero_time(),
            preread: zero_time(),
            pids_stats: PidsStats::default(),
            blkio_stats: BlkioStats::default(),
            num_procs: 0,
            storage_stats: StorageStats::default(),
            cpu_stats: CpuStats::default(),
            precpu_stats: CpuStats::default(),
            memory_stats: MemoryStats::default(),
            networks: BTreeMap::new(),
        }
    }
}

impl StatsResponse {
    /// CPU % between `precpu_stats` and `cpu_stats`, scaled by the number of CPUs (so one
    /// busy CPU of two is 100 %), as the docker CLI computes it.
    pub fn cpu_percent(&self) -> f64 {
        let cpu_delta = self.cpu_stats.cpu_usage.total_usage as f64
            - self.precpu_stats.cpu_usage.total_usage as f64;
        let system_delta =
            self.cpu_stats.system_usage as f64 - self.precpu_stats.system_usage as f64;
        let mut cpus = f64::from(self.cpu_stats.online_cpus);
        if cpus == 0.0 {
            cpus = self.cpu_stats.cpu_usage.percpu_usage.len() as f64;
        }
        if system_delta > 0.0 && cpu_delta > 0.0 {
            cpu_delta / system_delta * cpus * 100.0
        } else {
            0.0
        }
    }

    /// Memory in use without the inactive page cache (v1 `total_inactive_file`, v2
    /// `inactive_file`).
    pub fn memory_used(&self) -> f64 {
        let m = &self.memory_stats;
        if let Some(v) = m.stats.get("total_inactive_file") {
            if *v < m.usage {
                return (m.usage - v) as f64;
            }
        }
        let v = m.stats.get("inactive_file").copied().unwrap_or(0);
        if v < m.usage {
            (m.usage - v) as f64
        } else {
            m.usage as f64
        }
    }

    /// [`StatsResponse::memory_used`] as a percentage of the limit.
    pub fn memory_percent(&self) -> f64 {
        let limit = self.memory_stats.limit as f64;
        if limit == 0.0 {
            0.0
        } else {
            self.memory_used() / limit * 100.0
        }
    }

    /// Bytes read and written, summed over devices (ops starting with r/R and w/W).
    pub fn block_io(&self) -> (u64, u64) {
        let (mut read, mut write) = (0, 0);
        for e in self.blkio_stats.io_service_bytes_recursive.iter().flatten() {
            match e.op.bytes().next() {
                Some(b'r' | b'R') => read += e.value,
                Some(b'w' | b'W') => write += e.value,
                _ => {}
            }
        }
        (read, write)
    }

    /// Bytes received and sent over all interfaces.
    pub fn network_io(&self) -> (u64, u64) {
        self.networks
            .values()
            .fold((0, 0), |(rx, tx), n| (rx + n.rx_bytes, tx + n.tx_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sample_is_encoded_like_docker() {
        let s = StatsResponse {
            name: "/web".into(),
            id: "abc".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            concat!(
                r#"{"name":"/web","id":"abc","read":"0001-01-01T00:00:00Z","preread":"0001-01-01T00:00:00Z","#,
                r#""pids_stats":{},"blkio_stats":{"io_service_bytes_recursive":null,"io_serviced_recursive":null,"#,
                r#""io_queue_recursive":null,"io_service_time_recursive":null,"io_wait_time_recursive":null,"#,
                r#""io_merged_recursive":null,"io_time_recursive":null,"sectors_recursive":null},"num_procs":0,"#,
                r#""storage_stats":{},"cpu_stats":{"cpu_usage":{"total_usage":0,"usage_in_kernelmode":0,"#,
                r#""usage_in_usermode":0},"throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},"#,
                r#""precpu_stats":{"cpu_usage":{"total_usage":0,"usage_in_kernelmode":0,"usage_in_usermode":0},"#,
                r#""throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},"memory_stats":{}}"#
            )
        );
    }

    #[test]
    fn cli_arithmetic() {
        let mut s = StatsResponse::default();
        s.precpu_stats.cpu_usage.total_usage = 1_000;
        s.precpu_stats.system_usage = 10_000;
        s.cpu_stats.cpu_usage.total_usage = 6_000;
        s.cpu_stats.system_usage = 20_000;
        s.cpu_stats.online_cpus = 2;
        assert_eq!(s.cpu_percent(), 100.0);
        s.memory_stats.usage = 300;
        s.memory_stats.limit = 1000;
        s.memory_stats
            .stats
            .insert("total_inactive_file".into(), 100);
        assert_eq!(s.memory_used(), 200.0);
        assert_eq!(s.memory_percent(), 20.0);
        s.blkio_stats.io_service_bytes_recursive = Some(vec![
            BlkioStatEntry {
                op: "Read".into(),
                value: 5,
                ..Default::default()
            },
            BlkioStatEntry {
                op: "write".into(),
                value: 7,
                ..Default::default()
            },
            BlkioStatEntry {
                op: "Total".into(),
                value: 12,
                ..Default::default()
            },
        ]);
        assert_eq!(s.block_io(), (5, 7));
    }
}
