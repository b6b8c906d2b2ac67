//! The container's init process between clone() and execve: joins namespaces, builds the
//! rootfs, pivots, prepares the process, reports ready, blocks on the exec FIFO until
//! `start`, then drops privileges and execs. Runs in the freshly cloned child only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::mounts::{self, parse_options};
use crate::namespaces::Plan;
use crate::process::{self, Prepared};
use crate::state::EXEC_FIFO;
use crate::sync::{Channel, Msg};
use crate::{console, devices, hooks, rootfs, stdio, sys, Stdio};

/// Everything the init needs; it lives in the parent's memory, which the child has a copy of.
pub(crate) struct Args<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub cgroup: Option<&'a Cgroup>,
    /// The init moves itself into `cgroup` (else the creator has moved it).
    pub join_cgroup_self: bool,
    pub stdio: &'a Stdio,
    pub state_dir: &'a Path,
    pub overlay: Option<&'a str>,
    /// The compiled seccomp program (compiled or fetched from the cache by the creator).
    pub seccomp: std::cell::Cell<Option<crate::seccomp::Program>>,
}

/// Entry point of the cloned child. Never returns.
pub(crate) fn main(a: &Args<'_>, ch: &Channel) -> ! {
    match run(a, ch) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = ch.send(&Msg::Fail(e.to_string()));
            sys::exit_now(1)
        }
    }
}

fn run(a: &Args<'_>, ch: &Channel) -> Result<Infallible> {
    // Die with the creator until we are set up (the creator may be a short-lived CLI, so this
    // is cleared again before reporting ready).
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(|e| Error::sys("prctl", "PR_SET_PDEATHSIG", e))?;
    // The go-ahead carries the root overlay, made by the creator, when there is a user
    // namespace, and comes after the binds' sources (see idmap.rs).
    let mut binds: HashMap<usize, OwnedFd> = HashMap::new();
    let (host_pid, rootfs_mount) = loop {
        match ch
            .recv()
            .map_err(|e| Error::sys("recvmsg", "sync socket", e))?
        {
            (Some(Msg::Go(pid)), mnt) => break (pid, mnt),
            (Some(Msg::Bind(n)), Some(tree)) => {
                binds.insert(n as usize, tree);
            }
            (other, _) => {
                return Err(Error::Init(format!(
                    "expected go from runtime, got {other:?}"
                )))
            }
        }
    };
    if a.join_cgroup_self {
        if let Some(cg) = a.cgroup {
            cg.join_self()?;
        }
    }
    let hook_state = |status: &str| {
        let annotations = a.spec.annotations().clone().unwrap_or_default();
        hooks::state_json(a.id, status, host_pid, a.bundle, &annotations)
    };
    let spec = a.spec;
    let linux = spec.linux().as_ref();
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process is required".into()))?;

    namespaces_join(a)?;
    if a.plan.has_user() {
        // Become root of the user namespace (the maps are written by now).
        sys::setresgid(0).map_err(|e| Error::sys("setresgid", 0, e))?;
        sys::setresuid(0).map_err(|e| Error::sys("setresuid", 0, e))?;
    }
    if a.plan.new_cgroup {
        sys::unshare(libc::CLONE_NEWCGROUP)
            .map_err(|e| Error::sys("unshare", "CLONE_NEWCGROUP", e))?;
    }
    sys::setsid().map_err(|e| Error::sys("setsid", "", e))?;
    stdio::install(a.stdio)?;
    // Nothing the creator had open may reach the container (its other pipes, sockets, …).
    let keep: Vec<_> = std::iter::once(ch.raw())
        .chain(rootfs_mount.as_ref().map(|m| m.as_raw_fd()))
        .chain(binds.values().map(|t| t.as_raw_fd()))
        .collect();
    sys::close_fds_except(&keep).map_err(|e| Error::sys("close_range", "3..", e))?;
    sys::umask(0);

    // Only in a UTS namespace of its own: otherwise this would rename the host.
    if a.plan.new_uts {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            sys::sethostname(h).map_err(|e| Error::sys("sethostname", h, e))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            sys::setdomainname(d).map_err(|e| Error::sys("setdomainname", d, e))?;
        }
    }

    if a.plan.new_net {
        sys::loopback_up().map_err(|e| Error::sys("ioctl", "SIOCSIFFLAGS lo", e))?;
    }

    // The exec FIFO is opened through a descriptor of the state directory kept across
    // pivot_root; it is closed right after the FIFO is open.
    let state_dir = sys::open(a.state_dir, libc::O_DIRECTORY | libc::O_PATH, 0)
        .map_err(|e| Error::io("open", a.state_dir, e))?;

    let mut dev_opts = None;
    if !a.plan.join_mount {
        rootfs::set_propagation(linux.and_then(|l| l.rootfs_propagation().as_deref()))?;
        match &rootfs_mount {
            Some(m) => crate::idmap::attach(m.as_fd(), a.rootfs, "idmapped overlay")?,
            None => rootfs::mount_rootfs(a.rootfs, a.overlay)?,
        }
        let ctx = mounts::Context {
            rootfs: a.rootfs,
            bundle: a.bundle,
            cgroup: a.cgroup,
            new_cgroupns: a.plan.new_cgroup,
        };
        let mut dev_is_bind = false;
        for (n, m) in spec.mounts().iter().flatten().enumerate() {
            match binds.remove(&n) {
                Some(tree) => mounts::attach_bind(&ctx, m, tree.as_fd())?,
                None => mounts::mount(&ctx, m)?,
            }
            if m.destination() == Path::new("/dev") {
                let o = parse_options(m.options().as_deref().unwrap_or(&[]));
                dev_is_bind = o.is_bind() || m.typ().as_deref() == Some("bind");
                dev_opts = Some(o);
            }
        }
        if !dev_is_bind {
            let devs = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
            devices::setup(a.rootfs, &devs, a.plan.has_user())?;
        }
        if let Some(h) = spec.hooks() {
            hooks::run(
                "createContainer",
                h.create_container().as_ref(),
                &hook_state("created"),
            )?;
        }
        rootfs::pivot(a.rootfs)?;
    }

    let mut pty_master: Option<OwnedFd> = None;
    if matches!(a.stdio, Stdio::Pty) {
        let pty = console::open_pty()?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::attach_slave(&pty, size, true)?;
        pty_master = Some(pty.master);
    }

    if let Some(l) = linux {
        if let Some(s) = l.sysctl() {
            rootfs::sysctl(s)?;
        }
        if !a.plan.join_mount {
            rootfs::readonly_paths(l.readonly_paths().as_deref().unwrap_or(&[]))?;
            rootfs::mask_paths(l.masked_paths().as_deref().unwrap_or(&[]))?;
        }
    }
    if let Some(o) = &dev_opts {
        rootfs::readonly_dev(o)?;
    }
    if !a.plan.join_mount && spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        rootfs::readonly_root()?;
    }

    process::set_rlimits(process)?;
    // In a user namespace the creator has set it: the init no longer may.
    if !a.plan.has_user() {
        process::set_oom_score_adj(process, "self")?;
    }
    let cwd = process.cwd();
    std::env::set_current_dir(cwd).map_err(|e| Error::io("chdir", cwd, e))?;
    let prepared = Prepared::new(process, a.seccomp.take())?;
    sys::reset_signals();
    sys::cloexec_from(3).map_err(|e| Error::sys("close_range", "3..", e))?;

    sys::prctl(libc::PR_SET_PDEATHSIG, 0)
        .map_err(|e| Error::sys("prctl", "PR_SET_PDEATHSIG", e))?;
    let sent = match &pty_master {
        Some(m) => ch.send_fd(&Msg::Ready, m.as_fd()),
        None => ch.send(&Msg::Ready),
    };
    sent.map_err(|e| Error::sys("sendmsg", "sync socket", e))?;
    drop(pty_master);

    // Block until `start` opens the FIFO for reading.
    let fifo = open_fifo(&state_dir)?;
    drop(state_dir);
    let started = match spec.hooks() {
        Some(h) => hooks::run(
            "startContainer",
            h.start_container().as_ref(),
            &hook_state("running"),
        ),
        None => Ok(()),
    };
    let err = match started {
        Ok(()) => prepared.exec(),
        Err(e) => e,
    };
    let msg = match err {
        Error::Exec { kind, message } => Msg::ExecFail(kind, message),
        other => Msg::Fail(other.to_string()),
    };
    let _ = write_msg(&fifo, &msg);
    sys::exit_now(127)
}

fn namespaces_join(a: &Args<'_>) -> Result<()> {
    if a.plan.joins.is_empty() {
        return Ok(());
    }
    crate::namespaces::join(&a.plan.joins)
}

fn open_fifo(dir: &OwnedFd) -> Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let name = sys::cstr(EXEC_FIFO).map_err(|e| Error::io("open", EXEC_FIFO, e))?;
    loop {
        // SAFETY: dir is a valid directory descriptor and name a valid C string; the result is
        // a new descriptor that we own.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("open", PathBuf::from(EXEC_FIFO), e));
        }
        // SAFETY: fd was just returned by openat.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

fn write_msg(fd: &OwnedFd, msg: &Msg) -> std::io::Result<()> {
    let (tag, kind, text) = match msg {
        Msg::ExecFail(k, m) => (b'X', Some(k.to_byte()), m.as_str()),
        Msg::Fail(m) => (b'E', None, m.as_str()),
        _ => return Ok(()),
    };
    let mut buf = vec![tag];
    buf.extend(kind);
    buf.extend_from_slice(&text.as_bytes()[..text.len().min(3500)]);
    sys::write_all_fd(fd.as_raw_fd(), &buf)
}
