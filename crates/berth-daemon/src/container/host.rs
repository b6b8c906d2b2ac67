//! What the host contributes to a container's spec, read from the host at start: whether the
//! `--init` binary exists, its device nodes (for `--privileged`), the descriptor limit the daemon
//! was given, whether it has a /dev/mqueue, the daemon's capability bounding set, and files of
//! the container's root as the overlay will show them. Everything else in the spec is a pure
//! function of the record and the plans (see `spec`). It only reads: it writes nothing, and sees no
//! record and no service.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The init `--init` runs as PID 1, bind-mounted at /sbin/docker-init as Docker does.
pub const INIT_BINARY: &str = "/usr/bin/tini-static";

/// The host's side of a container's spec.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// [`INIT_BINARY`] exists.
    pub init: bool,
    /// The descriptor limit the daemon was started with (soft, hard).
    pub nofile: Option<(u64, u64)>,
    /// The host's device nodes: gathered only for a `--privileged` container.
    pub devices: Vec<Value>,
    /// The host has a /dev/mqueue directory.
    pub mqueue: bool,
    /// The daemon's capability bounding set (bit n = capability n).
    pub bounding: u64,
}

impl Facts {
    /// Read from this host what container `h` needs: the init binary only for `--init`, the
    /// device nodes only for `--privileged`, /dev/mqueue only when it may share the host's IPC
    /// namespace (`host`, or another container's, which may be the host's); nothing is read
    /// that the spec of most containers does not use.
    pub fn gather(h: &berth_api::container::HostConfig) -> Facts {
        Facts {
            init: h.init == Some(true) && Path::new(INIT_BINARY).exists(),
            nofile: crate::rlimit::inherited_nofile(),
            devices: if h.privileged {
                host_devices()
            } else {
                Vec::new()
            },
            mqueue: (h.ipc_mode == "host" || h.ipc_mode.starts_with("container:"))
                && Path::new("/dev/mqueue").is_dir(),
            bounding: bounding_set(),
        }
    }
}

/// The daemon's capability bounding set, from /proc/self/status (all bits if unreadable);
/// read once, it does not change.
pub fn bounding_set() -> u64 {
    static SET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SET.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX)
    })
}

/// Read a file of the container's root as the overlay would show it: upper first, then lowers.
pub fn read_root_file(upper: &Path, lowers: &[PathBuf], rel: &str) -> Option<String> {
    std::iter::once(upper)
        .chain(lowers.iter().map(PathBuf::as_path))
        .find_map(|d| super::rootfs::read_in_root(d, rel))
}

/// The host's device nodes, which `--privileged` hands to the container as Docker does
/// (the pty and shm/mqueue trees and the consoles excepted: the container has its own).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::from("/dev"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if depth == 0
                && matches!(
                    name.as_str(),
                    "pts" | "shm" | "mqueue" | "console" | "ptmx" | "tty"
                )
            {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = m.file_type();
            if ft.is_dir() && depth < 3 {
                stack.push((path, depth + 1));
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            let rdev = m.rdev();
            out.push(json!({
                "path": path, "type": kind,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid(),
            }));
        }
    }
    out
}
