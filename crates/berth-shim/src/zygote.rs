//! `berth shim-zygote`: a single-threaded process the daemon starts once, which forks a shim for
//! each container start. Forking an initialized process instead of executing the berth binary
//! again saves the loading and relocation of the whole binary on every start.
//!
//! Protocol on fd 0 (a unix socket from the daemon): each request is the container's run
//! directory as one message, with the write end of a pipe attached (SCM_RIGHTS); the shim
//! prints its readiness line on that pipe, exactly as `berth shim <dir>` prints it on stdout.

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Serve fork requests until the daemon closes the socket; returns the exit code.
pub fn serve() -> i32 {
    // The zygote has no purpose without its daemon; the shims it made do not depend on it.
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a plain signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
    let sock: RawFd = 0;
    loop {
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg =
                match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                    Ok(m) => m,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 1,
                };
            let mut fd = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        // SAFETY: the kernel just installed these descriptors for us; we own them.
                        fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
                    }
                }
            }
            (msg.bytes, fd)
        };
        if len == 0 {
            return 0;
        }
        let Some(ready) = fd else { continue };
        let dir = PathBuf::from(String::from_utf8_lossy(&buf[..len]).into_owned());
        // SAFETY: the zygote is single-threaded, so the child may run arbitrary code.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                let _ = nix::unistd::dup2_stdout(&ready);
                drop(ready);
                // /dev/null replaces the request socket as stdin (opened while fd 0 is still
                // taken, so the dup2 cannot be a no-op followed by a close of fd 0).
                match std::fs::File::open("/dev/null") {
                    Ok(null) => {
                        let _ = nix::unistd::dup2_stdin(&null);
                    }
                    Err(_) => {
                        let _ = nix::unistd::close(sock);
                    }
                }
                let code = crate::main(&dir);
                // SAFETY: _exit ends this forked child without running the zygote's exit path.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(ready);
                // The child forks the shim and exits at once (see server::run).
                let _ = waitpid(child, None);
            }
            Err(_) => {
                // The daemon sees the pipe close without a line and reports the failure.
                drop(ready);
            }
        }
    }
}
