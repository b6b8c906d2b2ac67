//! The runtime's record of a container (`<state_root>/<id>/state.json`) and its live status.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};

/// Name of the exec FIFO inside the container's state directory; it exists from create until start.
pub(crate) const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

/// Status of a container as the runtime sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What the runtime keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub oci_version: String,
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of the init (field 22 of /proc/<pid>/stat), to detect pid reuse.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// RFC 3339 creation time (UTC).
    pub created: String,
    pub cgroup: Option<Cgroup>,
    /// The spec has poststart / poststop hooks (only then is config.json read again).
    #[serde(default)]
    pub poststart: bool,
    #[serde(default)]
    pub poststop: bool,
}

/// Directory of container `id` under the state root.
pub(crate) fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Reject ids that would escape the state root or are otherwise unusable.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    // A leading dot is reserved for the runtime's own entries (e.g. the seccomp cache).
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!("invalid container id {id:?}")))
    }
}

impl Record {
    /// Load the record of container `id`.
    pub(crate) fn load(root: &Path, id: &str) -> Result<Record> {
        validate_id(id)?;
        let p = dir(root, id).join(STATE_FILE);
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(Error::io("read", p, e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| Error::io("parse", p, io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Write the record atomically (temp file + rename).
    pub(crate) fn save(&self, root: &Path) -> Result<()> {
        let d = dir(root, &self.id);
        let tmp = d.join(".state.json.tmp");
        let data = serde_json::to_vec(self).map_err(|e| {
            Error::io(
                "serialize",
                &tmp,
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&data)
            .map_err(|e| Error::io("write", &tmp, e))?;
        drop(f);
        let dst = d.join(STATE_FILE);
        fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", dst, e))
    }

    /// Is the recorded init still alive (not a zombie, same start time)?
    pub(crate) fn init_alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => start == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }

    /// Current status from /proc, the exec FIFO and the freezer.
    pub(crate) fn status(&self, root: &Path) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir(root, &self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if self.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Status::Paused;
        }
        Status::Running
    }
}

/// (state char, start time) of a process from /proc/<pid>/stat.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    // Fields after the state: ppid(4) … starttime is field 22, i.e. 19 more after state.
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Current UTC time as RFC 3339 (seconds precision + nanoseconds).
pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        now.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-123_x.y").is_ok());
        assert!(validate_id("../x").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
    }

    #[test]
    fn own_stat() {
        let (state, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
    }

    #[test]
    fn rfc3339_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30);
        assert!(t.ends_with('Z'));
    }
}
