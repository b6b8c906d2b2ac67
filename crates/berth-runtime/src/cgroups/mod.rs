//! Container cgroups: detect v1/v2 from mountinfo, create the container's cgroup, apply
//! `linux.resources`, join processes, freeze/thaw, list processes and remove it again.

mod stats;
mod v1;
mod v2;

pub use stats::{BlkioEntry, CgroupStats, ContainerCgroup};

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// v1 controllers the runtime knows; anything else in a cgroup mount's options is a mount option.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One cgroup directory of the container (one per v1 hierarchy, or the single v2 one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CgroupDir {
    /// Directory name of the hierarchy's mount point ("cpu", "systemd", … ; empty on v2).
    pub name: String,
    /// Subsystems of the hierarchy as mount options ("cpu", "cpu,cpuacct", "name=systemd").
    pub subsystems: String,
    /// Absolute path of the container's cgroup directory.
    pub path: PathBuf,
    /// Directories the runtime created (top-down), removed again on delete.
    #[serde(default)]
    pub created: Vec<PathBuf>,
}

/// The container's cgroup in every hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cgroup {
    /// Unified (v2) hierarchy?
    pub v2: bool,
    /// The container's directories.
    pub dirs: Vec<CgroupDir>,
}

struct Hierarchy {
    mountpoint: PathBuf,
    subsystems: String,
}

/// Undo mountinfo's octal escapes (\040 for space etc.).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Find the cgroup hierarchies of this machine: (is_v2, hierarchies).
fn hierarchies() -> Result<(bool, Vec<Hierarchy>)> {
    let mi = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut v1: Vec<Hierarchy> = Vec::new();
    let mut v2: Vec<PathBuf> = Vec::new();
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        let (Some(fstype), Some(_src), Some(superopts)) = (post.next(), post.next(), post.next())
        else {
            continue;
        };
        let Some(mountpoint) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mountpoint = PathBuf::from(unescape(mountpoint));
        match fstype {
            "cgroup2" => v2.push(mountpoint),
            "cgroup" => {
                let subs: Vec<&str> = superopts
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .collect();
                if subs.is_empty() {
                    continue;
                }
                let subsystems = subs.join(",");
                if v1.iter().any(|h| h.subsystems == subsystems) {
                    continue;
                }
                v1.push(Hierarchy {
                    mountpoint,
                    subsystems,
                });
            }
            _ => {}
        }
    }
    let root = Path::new("/sys/fs/cgroup");
    if v2.iter().any(|m| m == root) || (v1.is_empty() && !v2.is_empty()) {
        let mp = if v2.iter().any(|m| m == root) {
            root.to_path_buf()
        } else {
            v2.remove(0)
        };
        return Ok((
            true,
            vec![Hierarchy {
                mountpoint: mp,
                subsystems: String::new(),
            }],
        ));
    }
    if v1.is_empty() {
        return Err(Error::Config("no cgroup hierarchy is mounted".into()));
    }
    Ok((false, v1))
}

/// `cgroupsPath` as a relative path (leading "/" and any ".." removed).
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

pub(crate) fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Create `dir` and its missing parents below `base`, returning the created ones top-down.
fn mkdir_all(base: &Path, rel: &Path) -> Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::create_dir(&cur) {
            Ok(()) => created.push(cur.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("mkdir", &cur, e)),
        }
    }
    Ok(created)
}

impl Cgroup {
    /// Create the container's cgroup at `cgroups_path` in every hierarchy and apply `resources`.
    pub(crate) fn create(
        cgroups_path: &Path,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        let (is_v2, hs) = hierarchies()?;
        let rel = relative(cgroups_path);
        if rel.as_os_str().is_empty() {
            return Err(Error::Config(format!(
                "invalid cgroupsPath {}",
                cgroups_path.display()
            )));
        }
        let mut cg = Cgroup {
            v2: is_v2,
            dirs: Vec::with_capacity(hs.len()),
        };
        for h in &hs {
            let name = h
                .mountpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let created = match mkdir_all(&h.mountpoint, &rel) {
                Ok(c) => c,
                Err(e) => {
                    // Undo what we did so far; the error is what matters.
                    let _ = cg.remove();
                    return Err(e);
                }
            };
            cg.dirs.push(CgroupDir {
                name: if is_v2 { String::new() } else { name },
                subsystems: h.subsystems.clone(),
                path: h.mountpoint.join(&rel),
                created,
            });
            if !is_v2 && h.subsystems.split(',').any(|s| s == "cpuset") {
                if let Err(e) = v1::init_cpuset(&h.mountpoint, &rel) {
                    let _ = cg.remove();
                    return Err(e);
                }
            }
        }
        let applied = if is_v2 {
            v2::prepare(&cg.dirs[0], &hs[0].mountpoint, &rel)
                .and_then(|()| resources.map_or(Ok(()), |r| cg.apply(r)))
        } else {
            resources.map_or(Ok(()), |r| cg.apply(r))
        };
        if let Err(e) = applied {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// Write `resources` to the container's cgroup files (at create, and again on update).
    pub(crate) fn apply(&self, resources: &LinuxResources) -> Result<()> {
        if self.v2 {
            let dir = self
                .dirs
                .first()
                .ok_or_else(|| Error::Config("the container has no cgroup".into()))?;
            v2::apply(&dir.path, resources)
        } else {
            v1::apply(self, resources)
        }
    }

    /// Move `pid` (0 = the calling process) into the container's cgroup in every hierarchy.
    /// Move the calling thread (the init, still single-threaded) into the cgroup: on v1,
    /// writing "0" to `tasks` lets the kernel skip the global threadgroup lock, whose RCU
    /// grace period otherwise costs a start ~10 ms. Only for v1 (see [`Cgroup::v2`]).
    pub(crate) fn join_self(&self) -> Result<()> {
        for d in &self.dirs {
            write_file(&d.path.join("tasks"), "0")?;
        }
        Ok(())
    }

    pub(crate) fn join(&self, pid: i32) -> Result<()> {
        let s = pid.to_string();
        for d in &self.dirs {
            write_file(&d.path.join("cgroup.procs"), &s)?;
        }
        Ok(())
    }

    fn freezer_dir(&self) -> Option<&CgroupDir> {
        if self.v2 {
            self.dirs.first()
        } else {
            self.dirs
                .iter()
                .find(|d| d.subsystems.split(',').any(|s| s == "freezer"))
        }
    }

    /// Is the cgroup frozen (paused)?
    pub(crate) fn is_frozen(&self) -> bool {
        match self.freezer_dir() {
            None => false,
            Some(d) if self.v2 => read_file(&d.path.join("cgroup.freeze"))
                .map(|s| s.trim() == "1")
                .unwrap_or(false),
            Some(d) => read_file(&d.path.join("freezer.state"))
                .map(|s| s.trim() != "THAWED")
                .unwrap_or(false),
        }
    }

    /// Freeze (`true`) or thaw (`false`) every process in the cgroup, waiting until done.
    pub(crate) fn set_frozen(&self, frozen: bool) -> Result<()> {
        let d = self
            .freezer_dir()
            .ok_or_else(|| Error::Config("no freezer cgroup controller is mounted".into()))?;
        if self.v2 {
            v2::set_frozen(&d.path, frozen)
        } else {
            v1::set_frozen(&d.path, frozen)
        }
    }

    /// How many processes the kernel's OOM killer took in this cgroup (`oom_kill` of v1's
    /// memory.oom_control or v2's memory.events); 0 when the kernel does not say.
    pub(crate) fn oom_kills(&self) -> u64 {
        let (dir, file) = if self.v2 {
            (self.dirs.first(), "memory.events")
        } else {
            (
                self.dirs
                    .iter()
                    .find(|d| d.subsystems.split(',').any(|s| s == "memory")),
                "memory.oom_control",
            )
        };
        dir.and_then(|d| fs::read_to_string(d.path.join(file)).ok())
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Pids of all processes in the cgroup.
    pub(crate) fn procs(&self) -> Result<Vec<i32>> {
        let d = if self.v2 {
            self.dirs.first()
        } else {
            self.dirs
                .iter()
                .find(|d| d.subsystems == "pids")
                .or_else(|| self.freezer_dir())
                .or_else(|| self.dirs.first())
        };
        let Some(d) = d else { return Ok(Vec::new()) };
        let p = d.path.join("cgroup.procs");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", p, e)),
        }
    }

    /// Remove the container's directories (and the parents the runtime created), bottom-up.
    /// Missing directories are fine; a directory still in use is an error.
    pub(crate) fn remove(&self) -> Result<()> {
        let mut first_err = None;
        for d in &self.dirs {
            if let Err(e) = rmdir_retry(&d.path) {
                first_err.get_or_insert(e);
                continue;
            }
            for p in d.created.iter().rev() {
                if p == &d.path {
                    continue;
                }
                // A parent shared with other containers is busy or not empty: leave it.
                let _ = fs::remove_dir(p);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// rmdir a cgroup; EBUSY right after the last process died is transient (the kernel finishes
/// the exit asynchronously), so retry a bounded number of times.
fn rmdir_retry(path: &Path) -> Result<()> {
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..60 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io("rmdir", path, e)),
        }
    }
    fs::remove_dir(path).map_err(|e| Error::io("rmdir", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_strips_root_and_dotdot() {
        assert_eq!(relative(Path::new("/a/../b/c")), PathBuf::from("a/b/c"));
        assert_eq!(relative(Path::new("x")), PathBuf::from("x"));
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
