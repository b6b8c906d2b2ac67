//! cgroup v1: one directory per controller hierarchy; resource files, cpuset inheritance, freezer.

use std::io;
use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{read_file, write_file, Cgroup};
use crate::error::{Error, Result};

/// cpuset.cpus/mems start empty in a new v1 cgroup and a process cannot join it until they are
/// set: copy them down from the parent at each level below the mount root where they are empty.
pub(super) fn init_cpuset(mount: &Path, rel: &Path) -> Result<()> {
    let mut parent = mount.to_path_buf();
    for c in rel.components() {
        let dir = parent.join(c);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let cur = read_file(&dir.join(f))?;
            if cur.trim().is_empty() {
                let from = read_file(&parent.join(f))?;
                write_file(&dir.join(f), from.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

fn dir_of<'a>(cg: &'a Cgroup, controller: &str) -> Option<&'a Path> {
    cg.dirs
        .iter()
        .find(|d| d.subsystems.split(',').any(|s| s == controller))
        .map(|d| d.path.as_path())
}

/// Write `value` to `<controller dir>/<file>`; a missing controller is an error only when a
/// value is actually requested.
fn set(cg: &Cgroup, controller: &str, file: &str, value: impl ToString) -> Result<()> {
    let dir = dir_of(cg, controller).ok_or_else(|| {
        Error::Config(format!(
            "cgroup controller {controller} is not mounted (needed for {file})"
        ))
    })?;
    write_file(&dir.join(file), &value.to_string())
}

/// Like `set`, but a file the kernel does not provide (e.g. memsw without swap accounting) is skipped.
fn set_optional(cg: &Cgroup, controller: &str, file: &str, value: impl ToString) -> Result<()> {
    match set(cg, controller, file, value) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = match d.typ() {
        None | Some(LinuxDeviceType::A) => 'a',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
    };
    let num = |n: Option<i64>| {
        n.filter(|&n| n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    if typ == 'a' && d.major().is_none() && d.minor().is_none() {
        return format!("a *:* {access}");
    }
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// The realtime runtimes of a cgroup's children may add up to its own at most, and a new
/// cgroup's is 0: give each ancestor below the hierarchy's root (which keeps the kernel's
/// budget) what the container's `rt` and its other children's need, top-down, as dockerd's
/// daemon-wide `--cpu-rt-runtime` does for its parents.
fn rt_budget(dir: &Path, rt: i64) -> Result<()> {
    let rt_of = |p: &Path| -> i64 {
        read_file(&p.join("cpu.rt_runtime_us"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut ancestors: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|p| p.join("cpu.rt_runtime_us").exists())
        .collect();
    // The last one is the root of the hierarchy.
    ancestors.pop();
    // What each ancestor needs, bottom-up: its child on the path's need and the rest of its
    // children's runtimes.
    let mut needs = Vec::with_capacity(ancestors.len());
    let (mut need, mut child) = (rt, dir);
    for p in &ancestors {
        let others: i64 = std::fs::read_dir(p)
            .map_err(|e| Error::io("read", p, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|c| c.is_dir() && c.as_path() != child)
            .map(|c| rt_of(&c).max(0))
            .sum();
        need += others;
        needs.push((*p, need));
        child = p;
    }
    for (p, need) in needs.into_iter().rev() {
        let cur = rt_of(p);
        if cur >= 0 && cur < need {
            write_file(&p.join("cpu.rt_runtime_us"), &need.to_string())?;
        }
    }
    Ok(())
}

/// Apply `linux.resources` to the v1 hierarchies.
pub(super) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        // memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes: a limit raised
        // above the current memory+swap limit needs the new memsw limit written first.
        let swap_first = match (m.limit(), m.swap()) {
            (Some(l), Some(_)) => {
                let new = u64::try_from(l).unwrap_or(u64::MAX);
                dir_of(cg, "memory")
                    .and_then(|d| read_file(&d.join("memory.memsw.limit_in_bytes")).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .is_some_and(|cur| new > cur)
            }
            _ => false,
        };
        if let (true, Some(s)) = (swap_first, m.swap()) {
            set_optional(cg, "memory", "memory.memsw.limit_in_bytes", s)?;
        }
        if let Some(l) = m.limit() {
            set(cg, "memory", "memory.limit_in_bytes", l)?;
        }
        if let Some(l) = m.reservation() {
            set(cg, "memory", "memory.soft_limit_in_bytes", l)?;
        }
        if let (false, Some(s)) = (swap_first, m.swap()) {
            set_optional(cg, "memory", "memory.memsw.limit_in_bytes", s)?;
        }
        if let Some(s) = m.swappiness() {
            if s <= 100 {
                set_optional(cg, "memory", "memory.swappiness", s)?;
            }
        }
        if m.disable_oom_killer() == Some(true) {
            set(cg, "memory", "memory.oom_control", 1)?;
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            if s > 0 {
                set(cg, "cpu", "cpu.shares", s)?;
            }
        }
        if let Some(p) = c.period() {
            if p > 0 {
                set(cg, "cpu", "cpu.cfs_period_us", p)?;
            }
        }
        if let Some(q) = c.quota() {
            if q != 0 {
                set(cg, "cpu", "cpu.cfs_quota_us", q)?;
            }
        }
        if let Some(p) = c.realtime_period() {
            if p > 0 {
                set(cg, "cpu", "cpu.rt_period_us", p)?;
            }
        }
        if let Some(rt) = c.realtime_runtime() {
            if rt > 0 {
                if let Some(dir) = dir_of(cg, "cpu") {
                    rt_budget(dir, rt)?;
                }
            }
            if rt != 0 {
                set(cg, "cpu", "cpu.rt_runtime_us", rt)?;
            }
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            set(cg, "cpuset", "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            set(cg, "cpuset", "cpuset.mems", mems)?;
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        set(cg, "pids", "pids.max", v)?;
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight().filter(|w| *w > 0) {
            // CFQ's blkio.weight, or BFQ's where only that scheduler offers weights.
            let cfq = dir_of(cg, "blkio").is_some_and(|d| d.join("blkio.weight").exists());
            let file = if cfq {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            set_optional(cg, "blkio", file, w)?;
        }
        if let Some(w) = b.leaf_weight() {
            set_optional(cg, "blkio", "blkio.leaf_weight", w)?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                set(
                    cg,
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {w}", d.major(), d.minor()),
                )?;
            }
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, list) in throttles {
            for d in list.iter().flatten() {
                set(
                    cg,
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        set(
            cg,
            "hugetlb",
            &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
        )?;
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            set(cg, "net_cls", "net_cls.classid", id)?;
        }
        for p in n.priorities().iter().flatten() {
            set(
                cg,
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    if let Some(devs) = r.devices() {
        if dir_of(cg, "devices").is_some() {
            for d in devs {
                let file = if d.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                set(cg, "devices", file, device_rule(d))?;
            }
        }
    }
    Ok(())
}

/// Write FROZEN/THAWED and wait until the kernel reports the new state (v1 freezing is
/// asynchronous: reading freezer.state drives it forward).
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let file = dir.join("freezer.state");
    let mut delay = Duration::from_micros(50);
    for _ in 0..2000 {
        write_file(&file, want)?;
        if read_file(&file)?.trim() == want {
            return Ok(());
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
    // Leave the cgroup usable if freezing never completed.
    if frozen {
        let _ = write_file(&file, "THAWED");
    }
    Err(Error::sys(
        "freeze",
        file.display(),
        io::Error::from_raw_os_error(libc::ETIMEDOUT),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn device_rules() {
        let all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&all), "a *:* rwm");
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&null), "c 1:3 rwm");
        let any_minor = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(136)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&any_minor), "c 136:* rwm");
    }
}
