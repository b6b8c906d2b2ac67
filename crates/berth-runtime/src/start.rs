//! `start`: release the init blocked on the exec FIFO and report whether its execve worked.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::create::load_spec;
use crate::error::{Error, Result};
use crate::state::{self, Record, Status, EXEC_FIFO};
use crate::sync::Msg;
use crate::{hooks, sys};

/// Open the FIFO (which lets the init's blocking open return), then wait until the init has
/// either exec'd (its write end closes: EOF) or written an error. A pidfd guards against an
/// init that died before reaching the FIFO, so this never hangs and never polls.
pub(crate) fn start(root: &Path, id: &str) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if status != Status::Created {
        return Err(Error::InvalidState {
            id: id.into(),
            status: status.as_str().into(),
            op: "start",
        });
    }
    let fifo_path = state::dir(root, id).join(EXEC_FIFO);
    let fifo = sys::open(&fifo_path, libc::O_RDONLY | libc::O_NONBLOCK, 0)
        .map_err(|e| Error::io("open", &fifo_path, e))?;
    let pidfd = sys::pidfd_open(rec.pid).map_err(|e| Error::sys("pidfd_open", rec.pid, e))?;
    let result = wait_exec(&fifo, &pidfd);
    // The FIFO's absence is what marks the container as started.
    let _ = std::fs::remove_file(&fifo_path);
    result?;
    if rec.poststart {
        // Poststart failures are warnings: the container is running.
        let st = hooks::state_json(id, "running", rec.pid, &rec.bundle, &rec.annotations);
        let r = load_spec(&rec.bundle).and_then(|s| {
            hooks::run(
                "poststart",
                s.hooks().as_ref().and_then(|h| h.poststart().as_ref()),
                &st,
            )
        });
        if let Err(e) = r {
            eprintln!("berth-runtime: warning: {e}");
        }
    }
    Ok(())
}

fn wait_exec(fifo: &OwnedFd, pidfd: &OwnedFd) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        let rev = sys::poll(
            &[
                (fifo.as_raw_fd(), libc::POLLIN),
                (pidfd.as_raw_fd(), libc::POLLIN),
            ],
            -1,
        )
        .map_err(|e| Error::sys("poll", "exec fifo", e))?;
        if rev[0] != 0 {
            let mut chunk = [0u8; 4096];
            // SAFETY: chunk is a valid writable buffer of the given length.
            let n = unsafe { libc::read(fifo.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                buf.extend_from_slice(&chunk[..n as usize]);
                continue;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                    continue;
                }
                return Err(Error::sys("read", "exec fifo", e));
            }
            // EOF: the writer is gone — exec'd (no message) or failed (message).
            return match Msg::decode(&buf) {
                None => Ok(()),
                Some(m) => Err(m.into_error()),
            };
        }
        if rev[1] != 0 {
            // The init exited; anything it wrote is already in the FIFO.
            let mut chunk = [0u8; 4096];
            // SAFETY: chunk is a valid writable buffer of the given length.
            let n = unsafe { libc::read(fifo.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                buf.extend_from_slice(&chunk[..n as usize]);
            }
            return match Msg::decode(&buf) {
                Some(m) => Err(m.into_error()),
                None => Err(Error::Init("container init exited before start".into())),
            };
        }
    }
}
