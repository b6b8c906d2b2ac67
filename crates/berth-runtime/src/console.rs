//! Terminals: open a PTY in the container's own devpts, make the slave the controlling
//! terminal and stdio, bind it on /dev/console, and hand the master back to the caller.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mounts::ensure_mountpoint;
use crate::sys;

/// A freshly opened PTY pair.
pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: PathBuf,
}

/// Open a new PTY through /dev/ptmx (in the container: a symlink to its devpts' ptmx).
pub(crate) fn open_pty() -> Result<Pty> {
    let ptmx = Path::new("/dev/ptmx");
    let master = sys::open(ptmx, libc::O_RDWR | libc::O_NOCTTY, 0)
        .map_err(|e| Error::io("open", ptmx, e))?;
    let n = sys::pty_unlock(master.as_raw_fd())
        .map_err(|e| Error::sys("ioctl", "TIOCSPTLCK/TIOCGPTN", e))?;
    let slave_path = PathBuf::from(format!("/dev/pts/{n}"));
    let slave = sys::open(&slave_path, libc::O_RDWR | libc::O_NOCTTY, 0)
        .map_err(|e| Error::io("open", &slave_path, e))?;
    Ok(Pty {
        master,
        slave,
        slave_path,
    })
}

/// Make the slave our controlling terminal and stdio. `console` also binds it on /dev/console
/// (for the container's init). The caller must already be a session leader.
pub(crate) fn attach_slave(pty: &Pty, size: Option<(u16, u16)>, console: bool) -> Result<()> {
    if console {
        let c = Path::new("/dev/console");
        ensure_mountpoint(c, true)?;
        sys::mount(Some(&pty.slave_path), c, None, libc::MS_BIND, None).map_err(|e| {
            Error::sys(
                "mount",
                format!("bind {} on /dev/console", pty.slave_path.display()),
                e,
            )
        })?;
    }
    let fd = pty.slave.as_raw_fd();
    if let Some((rows, cols)) = size {
        if rows > 0 && cols > 0 {
            sys::set_winsize(fd, rows, cols).map_err(|e| Error::sys("ioctl", "TIOCSWINSZ", e))?;
        }
    }
    sys::ioctl_int(fd, libc::TIOCSCTTY, 0).map_err(|e| Error::sys("ioctl", "TIOCSCTTY", e))?;
    for target in 0..3 {
        sys::dup2(fd, target).map_err(|e| Error::sys("dup2", format!("{fd} → {target}"), e))?;
    }
    Ok(())
}
