//! `create`: read the bundle, prepare cgroups and the exec FIFO, clone the init with its new
//! namespaces (a direct child of the caller), map users, join cgroups, wait for it to be set up
//! and record the container's state.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::namespaces::{self, Plan};
use crate::rootfs::OVERLAY_ANNOTATION;
use crate::state::{self, Record, EXEC_FIFO};
use crate::sync::{Channel, Msg};
use crate::{hooks, idmap, init, mounts, seccomp, sys, Created, Stdio};

/// Directory under the state root holding compiled seccomp programs.
pub(crate) const SECCOMP_CACHE: &str = ".seccomp-cache";

/// Read and parse `<bundle>/config.json`.
pub(crate) fn load_spec(bundle: &Path) -> Result<Spec> {
    let p = bundle.join("config.json");
    let data = fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
    serde_json::from_slice(&data).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
}

/// Undo a half-done create: kill and reap the init if any, remove cgroups and state.
struct Cleanup<'a> {
    state_dir: &'a Path,
    cgroup: Option<Cgroup>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid, 0);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.remove();
        }
        let _ = fs::remove_dir_all(self.state_dir);
    }
}

fn write_id_map(pid: i32, file: &str, maps: &[LinuxIdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let p = PathBuf::from(format!("/proc/{pid}/{file}"));
    fs::write(&p, text).map_err(|e| Error::io("write", p, e))
}

/// Host uid that container uid 0 maps to (for the FIFO's owner in a user namespace).
fn host_root(maps: &[LinuxIdMapping]) -> Option<u32> {
    maps.iter()
        .find(|m| m.container_id() == 0 && m.size() > 0)
        .map(|m| m.host_id())
}

/// Clone the init. Single-threaded callers clone directly; otherwise a forked intermediate
/// (glibc fork is safe in threaded processes) clones with CLONE_PARENT so that the init is
/// still our direct child. Returns the init's pid in the caller; never returns in the init.
fn spawn(
    plan: &Plan,
    a: &init::Args<'_>,
    parent_end: Channel,
    child_end: Channel,
) -> Result<(i32, Channel)> {
    // Joining a user namespace takes an intermediate: the process that clones the init must
    // be in it, and the caller must stay where it is.
    let single = sys::thread_count() == 1 && plan.user_path.is_none();
    if single {
        let restore = match &plan.pid_path {
            Some(p) => Some(enter_pid_ns(p)?),
            None => None,
        };
        // SAFETY: the process is single-threaded (checked just above).
        let r = unsafe { sys::clone_fork(plan.clone_flags) };
        if matches!(r, Ok(0)) {
            drop(parent_end);
            init::main(a, &child_end);
        }
        if let Some(fd) = restore {
            let _ = sys::setns(fd.as_fd(), libc::CLONE_NEWPID);
        }
        let pid = r.map_err(|e| Error::sys("clone", format!("{:#x}", plan.clone_flags), e))?;
        drop(child_end);
        return Ok((pid, parent_end));
    }
    let mid = sys::fork().map_err(|e| Error::sys("fork", "intermediate", e))?;
    if mid == 0 {
        drop(parent_end);
        let r = (|| -> Result<i32> {
            if let Some(p) = &plan.user_path {
                let fd = sys::open(p, libc::O_RDONLY, 0).map_err(|e| Error::io("open", p, e))?;
                sys::setns(fd.as_fd(), libc::CLONE_NEWUSER)
                    .map_err(|e| Error::sys("setns", p.display(), e))?;
            }
            if let Some(p) = &plan.pid_path {
                enter_pid_ns(p)?;
            }
            // SAFETY: this forked intermediate is single-threaded.
            let r = unsafe { sys::clone_fork(plan.clone_flags | libc::CLONE_PARENT as u64) };
            if matches!(r, Ok(0)) {
                init::main(a, &child_end);
            }
            r.map_err(|e| Error::sys("clone", format!("{:#x}", plan.clone_flags), e))
        })();
        let msg = match r {
            Ok(pid) => Msg::Pid(pid),
            Err(e) => Msg::Fail(e.to_string()),
        };
        let _ = child_end.send(&msg);
        sys::exit_now(0);
    }
    drop(child_end);
    let got = parent_end.recv();
    let _ = sys::waitpid(mid, 0);
    match got.map_err(|e| Error::sys("recvmsg", "sync socket", e))? {
        (Some(Msg::Pid(pid)), _) => Ok((pid, parent_end)),
        (Some(m), _) => Err(m.into_error()),
        (None, _) => Err(Error::Init(
            "intermediate process exited without reporting".into(),
        )),
    }
}

/// setns into the pid namespace at `path` for our future children; returns our own
/// pid_for_children namespace so a caller can go back.
fn enter_pid_ns(path: &Path) -> Result<OwnedFd> {
    let own = Path::new("/proc/self/ns/pid_for_children");
    let old = sys::open(own, libc::O_RDONLY, 0).map_err(|e| Error::io("open", own, e))?;
    let fd = sys::open(path, libc::O_RDONLY, 0).map_err(|e| Error::io("open", path, e))?;
    sys::setns(fd.as_fd(), libc::CLONE_NEWPID)
        .map_err(|e| Error::sys("setns", path.display(), e))?;
    Ok(old)
}

pub(crate) fn create(root: &Path, id: &str, bundle: &Path, stdio: Stdio) -> Result<Created> {
    state::validate_id(id)?;
    let bundle = fs::canonicalize(bundle).map_err(|e| Error::io("resolve", bundle, e))?;
    let spec = load_spec(&bundle)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process is required".into()))?;
    if matches!(stdio, Stdio::Pty) && process.terminal() != Some(true) {
        return Err(Error::Config(
            "a PTY was requested but process.terminal is false".into(),
        ));
    }
    let root_spec = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Config("root is required".into()))?;
    let rootfs = if root_spec.path().is_absolute() {
        root_spec.path().clone()
    } else {
        bundle.join(root_spec.path())
    };
    if !rootfs.is_dir() {
        return Err(Error::io(
            "stat",
            &rootfs,
            io::Error::from_raw_os_error(libc::ENOENT),
        ));
    }
    let plan = namespaces::plan(&spec)?;
    let overlay = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(OVERLAY_ANNOTATION))
        .map(String::as_str);

    fs::create_dir_all(root).map_err(|e| Error::io("mkdir", root, e))?;
    let state_dir = state::dir(root, id);
    match fs::create_dir(&state_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(id.into()))
        }
        Err(e) => return Err(Error::io("mkdir", &state_dir, e)),
    }
    let mut cleanup = Cleanup {
        state_dir: &state_dir,
        cgroup: None,
        pid: None,
        armed: true,
    };

    let linux = spec.linux().as_ref();
    let cg_path = linux
        .and_then(|l| l.cgroups_path().clone())
        .unwrap_or_else(|| PathBuf::from(format!("/berth/{id}")));
    let resources = linux.map(crate::devices::with_default_rules);
    cleanup.cgroup = Some(Cgroup::create(&cg_path, resources.as_ref())?);

    let fifo = state_dir.join(EXEC_FIFO);
    sys::mkfifo(&fifo, 0o600).map_err(|e| Error::sys("mkfifo", fifo.display(), e))?;
    let uid_maps = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid_maps = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    if plan.has_user() {
        if let Some(uid) = host_root(&uid_maps) {
            let gid = host_root(&gid_maps).unwrap_or(0);
            sys::lchown(&fifo, uid, gid).map_err(|e| Error::sys("chown", fifo.display(), e))?;
            sys::lchown(&state_dir, uid, gid)
                .map_err(|e| Error::sys("chown", state_dir.display(), e))?;
        }
    }

    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::program(s, &root.join(SECCOMP_CACHE))?),
        None => None,
    };
    let (parent_end, child_end) = Channel::pair()?;
    // The init moves itself into its cgroup (cheaper on v1, see Cgroup::join_self) unless
    // hooks must see it there before it runs, or a new user namespace would take away its
    // right to write the host's cgroup files.
    let has_creation_hooks = spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    let join_cgroup_self =
        cleanup.cgroup.as_ref().is_some_and(|c| !c.v2) && !plan.has_user() && !has_creation_hooks;
    let args = init::Args {
        id,
        spec: &spec,
        bundle: &bundle,
        rootfs: &rootfs,
        plan: &plan,
        cgroup: cleanup.cgroup.as_ref(),
        join_cgroup_self,
        stdio: &stdio,
        state_dir: &state_dir,
        overlay,
        seccomp: std::cell::Cell::new(seccomp),
    };
    let (pid, ch) = spawn(&plan, &args, parent_end, child_end)?;
    cleanup.pid = Some(pid);
    // The child has its own copies now.
    drop(stdio);

    if plan.new_user {
        write_id_map(pid, "uid_map", &uid_maps)?;
        write_id_map(pid, "gid_map", &gid_maps)?;
    }
    if plan.has_user() {
        // Lowering it takes CAP_SYS_RESOURCE in the host's user namespace, and the init's
        // /proc files are not its own once it has changed its ids.
        crate::process::set_oom_score_adj(process, &pid.to_string())?;
    }
    if let Some(cg) = cleanup.cgroup.as_ref().filter(|_| !join_cgroup_self) {
        cg.join(pid)?;
    }
    if let Some(h) = spec.hooks() {
        let annotations = spec.annotations().clone().unwrap_or_default();
        let st = hooks::state_json(id, "creating", pid, &bundle, &annotations);
        hooks::run("prestart", h.prestart().as_ref(), &st)?;
        hooks::run("createRuntime", h.create_runtime().as_ref(), &st)?;
    }
    // In a user namespace the root overlay is made here, with idmapped lower layers, and
    // handed to the init with the go-ahead.
    let rootfs_mount = match overlay.filter(|_| plan.has_user()) {
        Some(opts) => Some(idmap::overlay(opts, pid)?),
        None => None,
    };
    // So are the binds' sources, opened here on the host side: the path to one need not be
    // searchable by the container's ids.
    if plan.has_user() && !plan.join_mount {
        for (n, m) in spec.mounts().iter().flatten().enumerate() {
            if let Some((source, o)) = mounts::bind_spec(&bundle, m) {
                let tree = idmap::bind_source(&source, &o)?;
                ch.send_fd(&Msg::Bind(n as u32), tree.as_fd())
                    .map_err(|e| Error::sys("sendmsg", "sync socket", e))?;
            }
        }
    }
    match &rootfs_mount {
        Some(m) => ch.send_fd(&Msg::Go(pid), m.as_fd()),
        None => ch.send(&Msg::Go(pid)),
    }
    .map_err(|e| Error::sys("sendmsg", "sync socket", e))?;
    drop(rootfs_mount);
    let (msg, fd) = ch
        .recv()
        .map_err(|e| Error::sys("recvmsg", "sync socket", e))?;
    match msg {
        Some(Msg::Ready) => {}
        Some(m) => return Err(m.into_error()),
        None => return Err(Error::Init("container init exited during setup".into())),
    }

    let start_time = state::proc_stat(pid)
        .map(|(_, t)| t)
        .ok_or_else(|| Error::Init("container init exited during setup".into()))?;
    let record = Record {
        oci_version: spec.version().clone(),
        id: id.to_string(),
        pid,
        start_time,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        created: state::now_rfc3339(),
        cgroup: cleanup.cgroup.clone(),
        poststart: spec
            .hooks()
            .as_ref()
            .is_some_and(|h| h.poststart().as_ref().is_some_and(|v| !v.is_empty())),
        poststop: spec
            .hooks()
            .as_ref()
            .is_some_and(|h| h.poststop().as_ref().is_some_and(|v| !v.is_empty())),
    };
    record.save(root)?;
    cleanup.armed = false;
    Ok(Created {
        pid,
        pty_master: fd,
    })
}
