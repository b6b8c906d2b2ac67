//! Linux namespaces: which to create with clone() and which to join (setns) from `linux.namespaces`.

use std::os::fd::AsFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::sys;

/// The CLONE_NEW* flag of a namespace type.
pub(crate) fn flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The /proc/<pid>/ns/<name> file of a namespace type.
pub(crate) fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// setns order: the user namespace first (it grants the rights for the others), mount last.
pub(crate) fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Ipc => 1,
        LinuxNamespaceType::Uts => 2,
        LinuxNamespaceType::Network => 3,
        LinuxNamespaceType::Pid => 4,
        LinuxNamespaceType::Time => 5,
        LinuxNamespaceType::Cgroup => 6,
        LinuxNamespaceType::Mount => 7,
    }
}

/// What to do about namespaces when creating a container.
#[derive(Debug, Default, Clone)]
pub(crate) struct Plan {
    /// CLONE_NEW* flags for the clone() of the init (the cgroup namespace is unshared later,
    /// after the init has joined its cgroups).
    pub clone_flags: u64,
    pub new_user: bool,
    pub new_mount: bool,
    pub new_cgroup: bool,
    pub new_uts: bool,
    /// A network namespace of its own: its loopback is brought up, as Docker and crun do.
    pub new_net: bool,
    /// Existing namespaces to join from the init, in setns order (pid excluded).
    pub joins: Vec<(LinuxNamespaceType, PathBuf)>,
    /// Existing pid namespace: joined by whoever clones the init (it applies to children).
    pub pid_path: Option<PathBuf>,
    /// Existing user namespace: joined by whoever clones the init, so that the namespaces
    /// the init gets are owned by it.
    pub user_path: Option<PathBuf>,
    pub join_mount: bool,
}

impl Plan {
    /// The container runs in a user namespace (a new one or one it joins).
    pub(crate) fn has_user(&self) -> bool {
        self.new_user || self.user_path.is_some()
    }
}

/// Work out the namespace plan from the spec.
pub(crate) fn plan(spec: &Spec) -> Result<Plan> {
    let mut p = Plan::default();
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in &nss {
        let t = ns.typ();
        let listed = p.joins.iter().any(|(j, _)| *j == t)
            || (t == LinuxNamespaceType::Pid && p.pid_path.is_some())
            || (t == LinuxNamespaceType::User && p.user_path.is_some());
        if listed {
            return Err(Error::Config(format!(
                "namespace {} listed twice",
                proc_name(t)
            )));
        }
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                if t == LinuxNamespaceType::Pid {
                    p.pid_path = Some(path.clone());
                } else if t == LinuxNamespaceType::User {
                    p.user_path = Some(path.clone());
                } else {
                    if t == LinuxNamespaceType::Mount {
                        p.join_mount = true;
                    }
                    p.joins.push((t, path.clone()));
                }
            }
            _ => match t {
                LinuxNamespaceType::Cgroup => p.new_cgroup = true,
                other => {
                    p.clone_flags |= flag(other) as u32 as u64;
                    match other {
                        LinuxNamespaceType::User => p.new_user = true,
                        LinuxNamespaceType::Mount => p.new_mount = true,
                        LinuxNamespaceType::Uts => p.new_uts = true,
                        LinuxNamespaceType::Network => p.new_net = true,
                        _ => {}
                    }
                }
            },
        }
    }
    if !p.new_mount && !p.join_mount {
        return Err(Error::Config("a mount namespace is required".into()));
    }
    p.joins.sort_by_key(|(t, _)| join_rank(*t));
    Ok(p)
}

/// Join the namespaces at the given paths, in order.
pub(crate) fn join(joins: &[(LinuxNamespaceType, PathBuf)]) -> Result<()> {
    // Open them all first: joining the mount namespace changes what the paths mean.
    let mut fds = Vec::with_capacity(joins.len());
    for (t, path) in joins {
        let fd = sys::open(path, libc::O_RDONLY, 0).map_err(|e| Error::io("open", path, e))?;
        fds.push((*t, path, fd));
    }
    for (t, path, fd) in &fds {
        sys::setns(fd.as_fd(), flag(*t)).map_err(|e| Error::sys("setns", path.display(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    #[test]
    fn plan_splits_new_and_joined() {
        let nss = vec![
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Pid)
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path("/var/run/netns/x")
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Mount)
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Cgroup)
                .build()
                .unwrap(),
        ];
        let spec = SpecBuilder::default()
            .linux(LinuxBuilder::default().namespaces(nss).build().unwrap())
            .build()
            .unwrap();
        let p = plan(&spec).unwrap();
        assert_eq!(
            p.clone_flags,
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64
        );
        assert!(p.new_cgroup && p.new_mount && !p.new_user);
        assert_eq!(p.joins.len(), 1);
        assert_eq!(p.joins[0].0, LinuxNamespaceType::Network);
    }
}
