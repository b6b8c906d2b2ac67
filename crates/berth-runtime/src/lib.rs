//! berth-runtime: berth's own OCI runtime. It turns a bundle's `config.json` into a running
//! container — namespaces, cgroups v1/v2, rootfs and mounts, pivot_root, devices, capabilities,
//! seccomp, rlimits — and provides the runc-compatible `berth runtime …` command line.
//!
//! The lifecycle follows runc: [`Runtime::create`] clones the container's init as a direct
//! child of the caller, sets everything up and leaves it blocked on an exec FIFO;
//! [`Runtime::start`] releases it and reports whether its `execve` succeeded.

mod capabilities;
mod cgroups;
mod cli;
mod console;
mod create;
mod delete;
mod devices;
mod docker_seccomp;
mod error;
mod exec;
mod hooks;
mod idmap;
mod init;
mod kill;
mod mounts;
mod namespaces;
mod pause;
mod process;
mod rootfs;
mod seccomp;
mod spec;
mod start;
mod state;
mod stdio;
mod sync;
mod sys;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use cgroups::{BlkioEntry, CgroupStats, ContainerCgroup};
pub use cli::cli_main;
pub use docker_seccomp::docker_seccomp_to_oci;
pub use error::{Error, ExecErrorKind, Result};
pub use idmap::{attach_at, private_clone};
pub use rootfs::OVERLAY_ANNOTATION;
/// Docker's defaults the daemon builds container configs with.
pub use spec::{DOCKER_CAPS, MASKED as DOCKER_MASKED_PATHS, READONLY as DOCKER_READONLY_PATHS};

/// Annotation set on the [`oci_spec::runtime::State`] returned by [`Runtime::state`] with the
/// runtime's own status: `created`, `running`, `paused` or `stopped` (the OCI status type has
/// no "paused"; a paused container is reported there as running).
pub const STATUS_ANNOTATION: &str = "berth.status";

/// Standard I/O of a container process.
pub enum Stdio {
    /// Use these three fds as the process's stdin/stdout/stderr.
    Fds {
        /// Standard input.
        stdin: OwnedFd,
        /// Standard output.
        stdout: OwnedFd,
        /// Standard error.
        stderr: OwnedFd,
    },
    /// `process.terminal` must be true: the runtime opens a new PTY inside the container's
    /// devpts (`/dev/ptmx` → `pts/ptmx` after pivot_root), makes the slave the controlling
    /// terminal and stdio (also bound on /dev/console for the init), and hands the master back
    /// in [`Created::pty_master`].
    Pty,
    /// Inherit the caller's fds 0, 1 and 2.
    Inherit,
}

/// A process the runtime started.
pub struct Created {
    /// Host pid of the process.
    pub pid: i32,
    /// The PTY master, for [`Stdio::Pty`].
    pub pty_master: Option<OwnedFd>,
}

/// The runtime, rooted at a state directory (e.g. `/run/berth/runtime`) holding one
/// `<id>/state.json` per container.
pub struct Runtime {
    root: PathBuf,
}

impl Runtime {
    /// A runtime keeping its state under `state_root` (created on first use).
    pub fn new(state_root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: state_root.into(),
        }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Read `<bundle>/config.json` and create the container. Its init is a direct child of the
    /// calling process (which must reap it) and waits before `execve` until [`Runtime::start`].
    /// Writes `<state_root>/<id>/state.json`.
    ///
    /// Meant for a single-threaded caller (the shim) or a short-lived CLI; from a
    /// multi-threaded process it still works, through one extra fork.
    pub fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<Created> {
        create::create(&self.root, id, bundle, stdio)
    }

    /// Release the created container's init; works from any process. Returns
    /// [`Error::Exec`] if its `execve` failed (not found → 127, permission denied → 126).
    pub fn start(&self, id: &str) -> Result<()> {
        start::start(&self.root, id)
    }

    /// OCI state of the container: status from /proc, the exec FIFO and the freezer. The
    /// runtime's own status (including `paused`) is in the [`STATUS_ANNOTATION`] annotation.
    pub fn state(&self, id: &str) -> Result<oci_spec::runtime::State> {
        let rec = state::Record::load(&self.root, id)?;
        let status = rec.status(&self.root);
        let oci_status = match status {
            state::Status::Created => oci_spec::runtime::ContainerState::Created,
            state::Status::Running | state::Status::Paused => {
                oci_spec::runtime::ContainerState::Running
            }
            state::Status::Stopped => oci_spec::runtime::ContainerState::Stopped,
        };
        let mut annotations = rec.annotations.clone();
        annotations.insert(STATUS_ANNOTATION.into(), status.as_str().into());
        let mut st = oci_spec::runtime::State::default();
        st.set_version(if rec.oci_version.is_empty() {
            "1.2.0".into()
        } else {
            rec.oci_version.clone()
        });
        st.set_id(rec.id.clone());
        st.set_status(oci_status);
        st.set_pid((status != state::Status::Stopped).then_some(rec.pid));
        st.set_bundle(rec.bundle.clone());
        st.set_annotations(Some(annotations));
        Ok(st)
    }

    /// Send `signal` to the container's init, or with `all` to every process in its cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        kill::kill(&self.root, id, signal, all)
    }

    /// Freeze the container (v1 freezer.state, v2 cgroup.freeze).
    pub fn pause(&self, id: &str) -> Result<()> {
        pause::pause(&self.root, id)
    }

    /// Thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        pause::resume(&self.root, id)
    }

    /// Change the resource limits of a created, running or paused container: `resources`
    /// is written to its cgroups as at create (memory before or after the swap limit, as the
    /// kernel needs on v1). Settings left out stay as they are.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let rec = state::Record::load(&self.root, id)?;
        let cg = rec
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::Config(format!("container {id} has no cgroup to update")))?;
        cg.apply(resources)
    }

    /// Whether the kernel's OOM killer killed a process of the container (call before
    /// `delete`, which removes the cgroup).
    pub fn oom_killed(&self, id: &str) -> Result<bool> {
        let rec = state::Record::load(&self.root, id)?;
        Ok(rec.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0))
    }

    /// The container's cgroup, to read its resource counters (`stats`) as often as needed
    /// without loading the state again. Fails if the container is unknown or has no cgroup.
    pub fn cgroup(&self, id: &str) -> Result<ContainerCgroup> {
        let rec = state::Record::load(&self.root, id)?;
        rec.cgroup
            .map(|cg| ContainerCgroup { cg })
            .ok_or_else(|| Error::Config(format!("container {id} has no cgroup")))
    }

    /// Host pids of every process of the container (its cgroup's members), for `top`.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        kill::pids(&self.root, id)
    }

    /// Remove the container's cgroups and state. A created container's init is killed; a
    /// running or paused one needs `force` (SIGKILL to everything first). Idempotent.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        delete::delete(&self.root, id, force)
    }

    /// Run another process in the running container: join its cgroups and namespaces, apply
    /// the process's user, capabilities, rlimits, no_new_privileges, env and cwd and the
    /// container's seccomp profile (from its bundle's config.json), then exec. Returns once the
    /// process has exec'd (or with [`Error::Exec`]), with its host pid.
    ///
    /// The new process is cloned with `CLONE_PARENT` from a short-lived intermediate, so it is
    /// a direct child of the caller, which reaps it. Callers should still set
    /// `PR_SET_CHILD_SUBREAPER` so that anything it leaves behind is reparented to them too.
    pub fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<Created> {
        exec::exec(&self.root, id, process, stdio)
    }
}
