//! Standard I/O of the container process: caller-provided descriptors, inherited ones, or a
//! PTY (see `console`), plus sending a PTY master to a `--console-socket`.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{Error, Result};
use crate::sync::send_with_fd;
use crate::{sys, Stdio};

/// In the new process: put the caller's descriptors on 0, 1 and 2 (Fds); nothing for
/// Inherit; Pty is set up later, inside the container's devpts.
pub(crate) fn install(s: &Stdio) -> Result<()> {
    let Stdio::Fds {
        stdin,
        stdout,
        stderr,
    } = s
    else {
        return Ok(());
    };
    // First move all three above 2, so that one landing on 0..2 cannot clobber another.
    let mut tmp = Vec::with_capacity(3);
    for f in [stdin, stdout, stderr] {
        // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new one that we own.
        let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(Error::sys(
                "fcntl",
                "F_DUPFD_CLOEXEC",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd was just created by fcntl.
        tmp.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    for (target, fd) in tmp.iter().enumerate() {
        sys::dup2(fd.as_raw_fd(), target as i32).map_err(|e| Error::sys("dup2", target, e))?;
    }
    Ok(())
}

/// Send a PTY master to the unix socket at `path` (runc's `--console-socket` protocol).
pub(crate) fn send_console(path: &Path, master: &OwnedFd) -> Result<()> {
    let sock = UnixStream::connect(path).map_err(|e| Error::io("connect", path, e))?;
    send_with_fd(sock.as_fd(), b"/dev/ptmx", Some(master.as_fd()))
        .map_err(|e| Error::io("sendmsg", path, e))
}
