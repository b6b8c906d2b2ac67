//! `exec`: run another process in a running container. A forked intermediate joins the
//! container's cgroups and namespaces, then clones the new process with CLONE_PARENT so that
//! it lands in the container's pid namespace as a direct child of the caller.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::create::load_spec;
use crate::error::{Error, Result};
use crate::namespaces::{flag, join_rank, proc_name};
use crate::process::{self, Prepared};
use crate::state::{Record, Status};
use crate::sync::{Channel, Msg};
use crate::{console, stdio, sys, Created, Stdio};

const ALL_NS: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// Open the container's namespaces that differ from ours, in setns order.
fn container_namespaces(pid: i32) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    let mut order = ALL_NS.to_vec();
    order.sort_by_key(|t| join_rank(*t));
    for t in order {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(t)));
        let ours = PathBuf::from(format!("/proc/self/ns/{}", proc_name(t)));
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            // A namespace type this kernel does not have.
            continue;
        };
        if a.dev() == b.dev() && a.ino() == b.ino() {
            continue;
        }
        let fd =
            sys::open(&theirs, libc::O_RDONLY, 0).map_err(|e| Error::io("open", &theirs, e))?;
        out.push((t, fd));
    }
    Ok(out)
}

pub(crate) fn exec(root: &Path, id: &str, process: &Process, stdio: Stdio) -> Result<Created> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if status != Status::Running && status != Status::Created {
        return Err(Error::InvalidState {
            id: id.into(),
            status: status.as_str().into(),
            op: "exec",
        });
    }
    if matches!(stdio, Stdio::Pty) && process.terminal() != Some(true) {
        return Err(Error::Config(
            "a PTY was requested but process.terminal is false".into(),
        ));
    }
    let spec = load_spec(&rec.bundle)?;
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::program(
            s,
            &root.join(crate::create::SECCOMP_CACHE),
        )?),
        None => None,
    };
    let nss = container_namespaces(rec.pid)?;
    let (parent_end, child_end) = Channel::pair()?;

    let mid = sys::fork().map_err(|e| Error::sys("fork", "exec intermediate", e))?;
    if mid == 0 {
        drop(parent_end);
        let r = (|| -> Result<i32> {
            if let Some(cg) = &rec.cgroup {
                cg.join(0)?;
            }
            for (t, fd) in &nss {
                sys::setns(fd.as_fd(), flag(*t)).map_err(|e| {
                    Error::sys(
                        "setns",
                        format!("/proc/{}/ns/{}", rec.pid, proc_name(*t)),
                        e,
                    )
                })?;
            }
            // SAFETY: this forked intermediate is single-threaded.
            let r = unsafe { sys::clone_fork(libc::CLONE_PARENT as u64) };
            if matches!(r, Ok(0)) {
                drop(nss);
                child(process, seccomp, &stdio, &child_end);
            }
            r.map_err(|e| Error::sys("clone", "CLONE_PARENT", e))
        })();
        let msg = match r {
            Ok(pid) => Msg::Pid(pid),
            Err(e) => Msg::Fail(e.to_string()),
        };
        let _ = child_end.send(&msg);
        sys::exit_now(0);
    }
    drop(child_end);
    drop(stdio);
    drop(nss);
    // The intermediate reports the new process's pid, but the new process runs as soon as it
    // is cloned and may report (Ready, or a failure) first: its messages are kept until the
    // pid is known.
    let mut pty_master = None;
    let mut early: Option<Msg> = None;
    let pid = loop {
        let (msg, fd) = match parent_end.recv() {
            Ok(v) => v,
            Err(e) => {
                let _ = sys::waitpid(mid, 0);
                return Err(Error::sys("recvmsg", "sync socket", e));
            }
        };
        match msg {
            Some(Msg::Pid(pid)) => break pid,
            Some(Msg::Ready) => pty_master = fd.or(pty_master),
            Some(m) => {
                early.get_or_insert(m);
            }
            None => {
                let _ = sys::waitpid(mid, 0);
                return Err(early.map(Msg::into_error).unwrap_or_else(|| {
                    Error::Init("exec intermediate exited without reporting".into())
                }));
            }
        }
    };
    let _ = sys::waitpid(mid, 0);
    if let Some(m) = early {
        // It exits by itself after reporting; reap it so no zombie is left.
        let _ = sys::waitpid(pid, 0);
        return Err(m.into_error());
    }
    let fail = |e: Error| {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::waitpid(pid, 0);
        e
    };
    loop {
        let (msg, fd) = parent_end
            .recv()
            .map_err(|e| fail(Error::sys("recvmsg", "sync socket", e)))?;
        match msg {
            Some(Msg::Ready) => pty_master = fd.or(pty_master),
            // EOF: the process exec'd (its end of the socket was close-on-exec).
            None => return Ok(Created { pid, pty_master }),
            Some(m) => {
                // It exits by itself after reporting; reap it so no zombie is left.
                let _ = sys::waitpid(pid, 0);
                return Err(m.into_error());
            }
        }
    }
}

/// The new process, inside all of the container's namespaces. Never returns.
fn child(
    process: &Process,
    seccomp: Option<crate::seccomp::Program>,
    stdio: &Stdio,
    ch: &Channel,
) -> ! {
    let r = (|| -> Result<Error> {
        sys::setsid().map_err(|e| Error::sys("setsid", "", e))?;
        stdio::install(stdio)?;
        sys::close_fds_except(&[ch.raw()]).map_err(|e| Error::sys("close_range", "3..", e))?;
        let mut master = None;
        if matches!(stdio, Stdio::Pty) {
            let pty = console::open_pty()?;
            let size = process
                .console_size()
                .map(|b| (b.height() as u16, b.width() as u16));
            console::attach_slave(&pty, size, false)?;
            master = Some(pty.master);
        }
        let cwd = process.cwd();
        std::env::set_current_dir(cwd).map_err(|e| Error::io("chdir", cwd, e))?;
        process::set_rlimits(process)?;
        process::set_oom_score_adj(process, "self")?;
        let prepared = Prepared::new(process, seccomp)?;
        sys::reset_signals();
        sys::cloexec_from(3).map_err(|e| Error::sys("close_range", "3..", e))?;
        let sent = match &master {
            Some(m) => ch.send_fd(&Msg::Ready, m.as_fd()),
            None => ch.send(&Msg::Ready),
        };
        sent.map_err(|e| Error::sys("sendmsg", "sync socket", e))?;
        drop(master);
        Ok(prepared.exec())
    })();
    let msg = match r {
        Ok(Error::Exec { kind, message }) | Err(Error::Exec { kind, message }) => {
            Msg::ExecFail(kind, message)
        }
        Ok(e) | Err(e) => Msg::Fail(e.to_string()),
    };
    let _ = ch.send(&msg);
    sys::exit_now(127)
}
