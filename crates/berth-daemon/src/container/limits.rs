//! Resource limits: Docker's checks of memory, CPU, cpuset, pids and blkio settings at create
//! and update, and `POST /containers/{id}/update`, which changes them in the record and, for
//! a running container, in its cgroups. It changes only the record's `HostConfig` and, through
//! berth-runtime, the cgroups: never the shim, networks or volumes.

use super::handle::Container;
use super::service::Service;
use super::{spec, status};
use crate::error::{Error, Result};
use berth_api::container::{HostConfig, UpdateRequest};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Docker's smallest memory limit and reservation.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// Check resource settings as Docker's `verifyPlatformContainerResources` does (`update`: the
/// body of an update, where a swap limit without a memory limit is fine). Returns Docker's
/// warnings; an error is the message of a 400.
pub fn check(h: &HostConfig, update: bool) -> std::result::Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    if h.memory != 0 && h.memory < MIN_MEMORY {
        return Err("Minimum memory limit allowed is 6MB".into());
    }
    if h.memory > 0 && h.memory_swap > 0 && h.memory_swap < h.memory {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if h.memory == 0 && h.memory_swap > 0 && !update {
        return Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if let Some(s) = h.memory_swappiness.filter(|s| *s != -1) {
        if !(0..=100).contains(&s) {
            return Err(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
    }
    if h.memory_reservation > 0 && h.memory_reservation < MIN_MEMORY {
        return Err("Minimum memory reservation allowed is 6MB".into());
    }
    if h.memory > 0 && h.memory_reservation > 0 && h.memory < h.memory_reservation {
        return Err(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        );
    }
    if h.oom_kill_disable == Some(true) && h.memory == 0 {
        warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".into());
    }
    if h.nano_cpus > 0 && h.cpu_period > 0 {
        return Err("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
    }
    if h.nano_cpus > 0 && h.cpu_quota > 0 {
        return Err("Conflicting options: Nano CPUs and CPU Quota cannot both be set".into());
    }
    if h.nano_cpus != 0 {
        let n = online_cpus();
        if h.nano_cpus < 0 || h.nano_cpus > n * 1_000_000_000 {
            return Err(format!(
                "range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            ));
        }
    }
    if h.cpu_period != 0 && !(1000..=1_000_000).contains(&h.cpu_period) {
        return Err(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        );
    }
    if h.cpu_quota > 0 && h.cpu_quota < 1000 {
        return Err("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
    }
    check_cpuset(&h.cpuset_cpus, "cpus", "CPUs")?;
    check_cpuset(&h.cpuset_mems, "mems", "memory nodes")?;
    if h.blkio_weight > 0 && !(10..=1000).contains(&h.blkio_weight) {
        return Err("Range of blkio weight is from 10 to 1000".into());
    }
    Ok(warnings)
}

/// CPUs this process may run on (Go's `runtime.NumCPU`).
fn online_cpus() -> i64 {
    use nix::sched::{sched_getaffinity, CpuSet};
    match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count()
            .max(1) as i64,
        Err(_) => 1,
    }
}

/// `0-2,4`: the numbers of a cpuset list, Docker's `parsers.ParseUintList`.
fn parse_list(s: &str) -> std::result::Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    if s.is_empty() {
        return Ok(out);
    }
    let bad = || format!("invalid format: {s}");
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b < a || b - a > 65_536 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().map_err(|_| bad())?);
            }
        }
    }
    Ok(out)
}

/// `--cpuset-cpus` / `--cpuset-mems` must name CPUs (nodes) the host has.
fn check_cpuset(requested: &str, kind: &str, what: &str) -> std::result::Result<(), String> {
    let wanted = parse_list(requested)
        .map_err(|e| format!("Invalid value {requested} for cpuset {kind}: {e}"))?;
    if wanted.is_empty() {
        return Ok(());
    }
    let available = available_cpuset(kind);
    let have = parse_list(&available).unwrap_or_default();
    if !wanted.is_subset(&have) {
        return Err(format!(
            "Requested {what} are not available - requested {requested}, available: {available}"
        ));
    }
    Ok(())
}

/// The host's cpuset (`cpus` or `mems`) as the cgroup root gives it.
fn available_cpuset(kind: &str) -> String {
    let (sys, fallback) = if kind == "cpus" {
        ("cpus", "/sys/devices/system/cpu/online")
    } else {
        ("mems", "/sys/devices/system/node/online")
    };
    [
        format!("/sys/fs/cgroup/cpuset/cpuset.{sys}"),
        format!("/sys/fs/cgroup/cpuset.{sys}.effective"),
        fallback.to_string(),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|| "0".into())
}

/// Docker's `UpdateContainer`: what the update sets (non-zero) over what the container has,
/// refused where `--cpus` and `--cpu-period`/`--cpu-quota` would mix or the memory limit would
/// pass the swap limit.
pub fn merge(had: &HostConfig, new: &UpdateRequest) -> std::result::Result<HostConfig, String> {
    if new.nano_cpus > 0 && had.cpu_period > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
                .into(),
        );
    }
    if new.nano_cpus > 0 && had.cpu_quota > 0 {
        return Err(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
                .into(),
        );
    }
    if new.cpu_period > 0 && had.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
                .into(),
        );
    }
    if new.cpu_quota > 0 && had.nano_cpus > 0 {
        return Err(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                .into(),
        );
    }
    let mut h = had.clone();
    if new.blkio_weight != 0 {
        h.blkio_weight = new.blkio_weight;
    }
    if new.cpu_shares != 0 {
        h.cpu_shares = new.cpu_shares;
    }
    if new.nano_cpus != 0 {
        h.nano_cpus = new.nano_cpus;
    }
    if new.cpu_period != 0 {
        h.cpu_period = new.cpu_period;
    }
    if new.cpu_quota != 0 {
        h.cpu_quota = new.cpu_quota;
    }
    if !new.cpuset_cpus.is_empty() {
        h.cpuset_cpus = new.cpuset_cpus.clone();
    }
    if !new.cpuset_mems.is_empty() {
        h.cpuset_mems = new.cpuset_mems.clone();
    }
    if new.memory != 0 {
        if new.memory > had.memory_swap && new.memory_swap == 0 {
            return Err("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into());
        }
        h.memory = new.memory;
    }
    if new.memory_swap != 0 {
        h.memory_swap = new.memory_swap;
    }
    if new.memory_reservation != 0 {
        h.memory_reservation = new.memory_reservation;
    }
    if new.cpu_realtime_period != 0 {
        h.cpu_realtime_period = new.cpu_realtime_period;
    }
    if new.cpu_realtime_runtime != 0 {
        h.cpu_realtime_runtime = new.cpu_realtime_runtime;
    }
    if let Some(p) = new.pids_limit {
        // 0 and any negative value mean unlimited, which Docker records as 0 on update.
        h.pids_limit = Some(p.max(0));
    }
    if let Some(rp) = new.restart_policy.as_ref().filter(|p| !p.name.is_empty()) {
        if had.auto_remove && rp.name != "no" {
            return Err(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            );
        }
        h.restart_policy = rp.clone();
    }
    Ok(h)
}

/// The resource settings of an update as a host config, for [`check`].
fn as_host_config(u: &UpdateRequest) -> HostConfig {
    HostConfig {
        cpu_shares: u.cpu_shares,
        memory: u.memory,
        nano_cpus: u.nano_cpus,
        blkio_weight: u.blkio_weight,
        cpu_period: u.cpu_period,
        cpu_quota: u.cpu_quota,
        cpu_realtime_period: u.cpu_realtime_period,
        cpu_realtime_runtime: u.cpu_realtime_runtime,
        cpuset_cpus: u.cpuset_cpus.clone(),
        cpuset_mems: u.cpuset_mems.clone(),
        memory_reservation: u.memory_reservation,
        memory_swap: u.memory_swap,
        memory_swappiness: u.memory_swappiness,
        oom_kill_disable: u.oom_kill_disable,
        pids_limit: u.pids_limit,
        ..HostConfig::default()
    }
}

impl Service {
    /// `POST /containers/{id}/update`: Docker's checks, the merge into the record, and for a
    /// running (or paused) container the new limits written to its cgroups; if that fails the
    /// record is put back. Returns Docker's warnings.
    pub async fn update(&self, c: &Arc<Container>, req: UpdateRequest) -> Result<Vec<String>> {
        let warnings = check(&as_host_config(&req), true).map_err(Error::bad_request)?;
        if let Some(rp) = &req.restart_policy {
            super::lifecycle::check_restart_policy(rp)?;
        }
        let _op = c.op.lock().await;
        let cannot = |m: String| format!("Cannot update container {}: {m}", c.id);
        if c.progress.borrow().removed {
            return Err(Error::conflict(cannot(
                "container is marked for removal and cannot be \"update\"".into(),
            )));
        }
        let before = c.snapshot();
        let merged = merge(&before.host_config, &req).map_err(|m| Error::conflict(cannot(m)))?;
        let after = c.update_durable(|r| r.host_config = merged)?;
        let live = matches!(
            after.state.status.as_str(),
            status::RUNNING | status::PAUSED
        );
        if !live {
            return Ok(warnings);
        }
        let applied = match spec::live_resources(&after) {
            Ok(res) => {
                let rt = berth_runtime::Runtime::new(&c.runtime_root);
                let id = c.id.clone();
                tokio::task::spawn_blocking(move || rt.update(&id, &res).map_err(|e| e.to_string()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
            }
            Err(e) => Err(e.0.message),
        };
        if let Err(e) = applied {
            let old = before.host_config;
            if let Err(w) = c.update_durable(|r| r.host_config = old) {
                tracing::warn!("restoring the limits of {}: {}", c.id, w.0);
            }
            return Err(Error::internal(cannot(e)));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let mut h = HostConfig {
            memory: 1024,
            ..Default::default()
        };
        assert_eq!(
            check(&h, false).unwrap_err(),
            "Minimum memory limit allowed is 6MB"
        );
        h.memory = 64 << 20;
        h.memory_swap = 32 << 20;
        assert!(check(&h, false).unwrap_err().contains("memoryswap"));
        h.memory_swap = 0;
        h.nano_cpus = 500_000_000;
        h.cpu_quota = 50_000;
        assert_eq!(
            check(&h, false).unwrap_err(),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        h.cpu_quota = 0;
        h.cpuset_cpus = "0-x".into();
        assert_eq!(
            check(&h, false).unwrap_err(),
            "Invalid value 0-x for cpuset cpus: invalid format: 0-x"
        );
        h.cpuset_cpus = "4096".into();
        assert!(check(&h, false)
            .unwrap_err()
            .starts_with("Requested CPUs are not available - requested 4096, available: "));
        h.cpuset_cpus = String::new();
        h.blkio_weight = 5;
        assert_eq!(
            check(&h, false).unwrap_err(),
            "Range of blkio weight is from 10 to 1000"
        );
        h.blkio_weight = 0;
        assert_eq!(check(&h, false), Ok(Vec::new()));
        let swap_only = HostConfig {
            memory_swap: 64 << 20,
            ..Default::default()
        };
        assert!(check(&swap_only, false).is_err());
        assert!(check(&swap_only, true).is_ok());
        assert_eq!(parse_list("0-2,5").unwrap(), BTreeSet::from([0, 1, 2, 5]));
        assert!(parse_list("2-1").is_err());
    }

    #[test]
    fn merges() {
        let had = HostConfig {
            memory: 32 << 20,
            memory_swap: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: Some(10),
            ..Default::default()
        };
        let m = merge(
            &had,
            &UpdateRequest {
                memory: 48 << 20,
                pids_limit: Some(-1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (m.memory, m.memory_swap, m.pids_limit),
            (48 << 20, 64 << 20, Some(0))
        );
        assert!(merge(
            &had,
            &UpdateRequest {
                memory: 128 << 20,
                ..Default::default()
            }
        )
        .unwrap_err()
        .starts_with("Memory limit should be smaller"));
        let m = merge(
            &had,
            &UpdateRequest {
                memory: 128 << 20,
                memory_swap: 256 << 20,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((m.memory, m.memory_swap), (128 << 20, 256 << 20));
        assert!(merge(
            &had,
            &UpdateRequest {
                cpu_quota: 20_000,
                ..Default::default()
            }
        )
        .unwrap_err()
        .contains("CPU Quota cannot be updated as NanoCPUs has already been set"));
    }
}
