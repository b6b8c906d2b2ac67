//! cgroup v2 (unified): enable controllers down the tree, resource files, cgroup.freeze.
//!
//! Device rules (`linux.resources.devices`) are not enforced on v2: that needs a BPF program
//! attached to the cgroup. The container still only gets the device nodes the runtime creates.

use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::{read_file, write_file, CgroupDir};
use crate::error::Result;

/// Enable every available controller in the subtree_control of each ancestor of the container's cgroup.
pub(super) fn prepare(_dir: &CgroupDir, mount: &Path, rel: &Path) -> Result<()> {
    let mut cur = mount.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    // The root and every intermediate directory delegate controllers to their children.
    let mut levels = vec![cur.clone()];
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        levels.push(cur.clone());
    }
    for level in levels {
        let avail = read_file(&level.join("cgroup.controllers"))?;
        let enabled = read_file(&level.join("cgroup.subtree_control"))?;
        let want: Vec<String> = avail
            .split_whitespace()
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if !want.is_empty() {
            write_file(&level.join("cgroup.subtree_control"), &want.join(" "))?;
        }
    }
    Ok(())
}

/// cpu.shares (2..262144) → cpu.weight (1..10000), as runc/crun convert.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// blkio.weight (10..1000) → io.weight (1..10000).
fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// Apply `linux.resources` to the unified cgroup `dir`.
pub(super) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    let w = |f: &str, v: String| write_file(&dir.join(f), &v);
    if let Some(m) = r.memory() {
        if let Some(l) = m.reservation() {
            w("memory.low", max_or(l))?;
        }
        if let Some(l) = m.limit() {
            w("memory.max", max_or(l))?;
            if let Some(s) = m.swap() {
                // OCI swap is memory+swap; v2 swap.max is swap alone.
                let v = if s < 0 {
                    "max".into()
                } else {
                    (s - l.max(0)).max(0).to_string()
                };
                w("memory.swap.max", v)?;
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            let weight = shares_to_weight(s);
            if weight > 0 {
                w("cpu.weight", weight.to_string())?;
            }
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c
                .quota()
                .filter(|&q| q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            let p = c.period().filter(|&p| p > 0).unwrap_or(100_000);
            w("cpu.max", format!("{q} {p}"))?;
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            w("cpuset.cpus", cpus.to_string())?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            w("cpuset.mems", mems.to_string())?;
        }
    }
    if let Some(p) = r.pids() {
        w(
            "pids.max",
            if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            },
        )?;
    }
    if let Some(b) = r.block_io() {
        if let Some(weight) = b.weight().filter(|&x| x > 0) {
            w(
                "io.weight",
                format!("default {}", blkio_to_io_weight(weight)),
            )?;
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for d in list.iter().flatten() {
                w(
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        w(
            &format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
        )?;
    }
    if let Some(u) = r.unified() {
        for (k, v) in u {
            if k.contains('/') || k.starts_with('.') {
                continue;
            }
            w(k, v.clone())?;
        }
    }
    Ok(())
}

/// Write cgroup.freeze and wait for cgroup.events to report the new state.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    write_file(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let mut delay = Duration::from_micros(50);
    for _ in 0..2000 {
        let ev = read_file(&dir.join("cgroup.events"))?;
        if ev.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
    Err(crate::error::Error::sys(
        "freeze",
        dir.display(),
        std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }
}
