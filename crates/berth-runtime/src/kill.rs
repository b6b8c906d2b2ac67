//! `kill`: signal the container's init, or every process in its cgroup.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::state::{Record, Status};
use crate::sys;

/// Send `sig` to one process; a process that is already gone is not an error.
fn signal(pid: i32, sig: i32) -> Result<()> {
    match sys::kill(pid, sig) {
        Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
            Err(Error::sys("kill", format!("{pid}, {sig}"), e))
        }
        _ => Ok(()),
    }
}

/// Pids in the container's cgroup, plus the init (it is there too, but the cgroup may be
/// unreadable or missing).
fn all_pids(rec: &Record) -> Result<Vec<i32>> {
    let mut pids = match &rec.cgroup {
        Some(cg) => cg.procs()?,
        None => Vec::new(),
    };
    if rec.init_alive() && !pids.contains(&rec.pid) {
        pids.push(rec.pid);
    }
    Ok(pids)
}

/// Signal every process of the container. For SIGKILL the cgroup is frozen first so nothing
/// can fork in between, and thawed afterwards so the signals are delivered.
pub(crate) fn signal_all(rec: &Record, sig: i32) -> Result<()> {
    let freeze = sig == libc::SIGKILL && rec.cgroup.as_ref().is_some_and(|c| !c.is_frozen());
    if freeze {
        if let Some(cg) = &rec.cgroup {
            let _ = cg.set_frozen(true);
        }
    }
    let r = all_pids(rec).and_then(|pids| pids.into_iter().try_for_each(|p| signal(p, sig)));
    if let Some(cg) = &rec.cgroup {
        if freeze || (sig == libc::SIGKILL && cg.is_frozen()) {
            let _ = cg.set_frozen(false);
        }
    }
    r
}

/// The container's processes, for `top`.
pub(crate) fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    all_pids(&Record::load(root, id)?)
}

pub(crate) fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if status == Status::Stopped {
        return Err(Error::InvalidState {
            id: id.into(),
            status: status.as_str().into(),
            op: "kill",
        });
    }
    if all {
        signal_all(&rec, sig)
    } else {
        signal(rec.pid, sig)
    }
}

/// SIGKILL everything in the container and wait (with pidfds, no polling) until it is gone.
pub(crate) fn kill_and_wait(rec: &Record) -> Result<()> {
    for _round in 0..10 {
        let pids = all_pids(rec)?;
        if pids.is_empty() {
            return Ok(());
        }
        let fds: Vec<OwnedFd> = pids
            .iter()
            .filter_map(|&p| sys::pidfd_open(p).ok())
            .collect();
        signal_all(rec, libc::SIGKILL)?;
        for fd in &fds {
            // Bounded: a process in uninterruptible sleep must not hang delete forever.
            sys::poll(&[(fd.as_raw_fd(), libc::POLLIN)], 10_000)
                .map_err(|e| Error::sys("poll", "pidfd", e))?;
        }
    }
    Ok(())
}
