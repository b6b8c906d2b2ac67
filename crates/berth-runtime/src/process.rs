//! The container process itself: rlimits, oom_score_adj, user and groups, capabilities,
//! no_new_privileges, seccomp, environment, `$PATH` lookup and execve — shared by the
//! container's init and by `exec`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oci_spec::runtime::{PosixRlimitType, Process};

use crate::capabilities::{self, Sets};
use crate::error::{Error, ExecErrorKind, Result};
use crate::{seccomp, sys};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Apply `process.rlimits` (before the user switch, so hard limits can be raised).
pub(crate) fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        sys::setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard()).map_err(|e| {
            Error::sys(
                "setrlimit",
                format!("{} {} {}", r.typ(), r.soft(), r.hard()),
                e,
            )
        })?;
    }
    Ok(())
}

/// Write `process.oomScoreAdj` for the calling process.
pub(crate) fn set_oom_score_adj(p: &Process, pid: &str) -> Result<()> {
    if let Some(v) = p.oom_score_adj() {
        let path = format!("/proc/{pid}/oom_score_adj");
        fs::write(&path, v.to_string()).map_err(|e| Error::io("write", path, e))?;
    }
    Ok(())
}

/// Everything needed to turn the calling process into the container process, computed while
/// still privileged so that the steps after `start` are only system calls.
pub(crate) struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    path_env: String,
    caps: Sets,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    umask: u32,
    nnp: bool,
    filter: Option<seccomp::Program>,
}

fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::Config(format!("{what} contains a NUL byte: {s:?}")))
        })
        .collect()
}

/// Home directory of `uid` from the container's /etc/passwd ("/" if unknown).
fn home_of(uid: u32) -> String {
    let Ok(passwd) = fs::read_to_string("/etc/passwd") else {
        return "/".into();
    };
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .next()
        .unwrap_or_else(|| "/".into())
}

impl Prepared {
    /// Compute argv/envp and capability masks (the seccomp program is compiled by the caller). Runs after
    /// pivot_root (HOME is looked up in the container's /etc/passwd when not set).
    pub(crate) fn new(p: &Process, filter: Option<seccomp::Program>) -> Result<Prepared> {
        let args = p.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(Error::Config("process.args must not be empty".into()));
        }
        let mut env = p.env().clone().unwrap_or_default();
        let path_env = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .map(str::to_string)
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", home_of(p.user().uid())));
        }
        Ok(Prepared {
            argv: cstrings(&args, "process.args")?,
            envp: cstrings(&env, "process.env")?,
            path_env,
            caps: Sets::from_spec(p.capabilities().as_ref()),
            uid: p.user().uid(),
            gid: p.user().gid(),
            groups: p.user().additional_gids().clone().unwrap_or_default(),
            umask: p.user().umask().unwrap_or(0o022),
            nnp: p.no_new_privileges().unwrap_or(false),
            filter,
        })
    }

    /// Drop privileges and exec. Only returns on failure. Order as runc: seccomp first when
    /// no_new_privileges is off (loading it needs CAP_SYS_ADMIN then), bounding set, user,
    /// capabilities, then no_new_privs + seccomp as late as possible, lookup, execve.
    pub(crate) fn exec(&self) -> Error {
        match self.finish() {
            Ok(e) | Err(e) => e,
        }
    }

    fn finish(&self) -> Result<Error> {
        if !self.nnp {
            if let Some(f) = &self.filter {
                seccomp::load(f)?;
            }
        }
        capabilities::drop_bounding(self.caps.bounding)?;
        sys::prctl(libc::PR_SET_KEEPCAPS, 1)
            .map_err(|e| Error::sys("prctl", "PR_SET_KEEPCAPS", e))?;
        sys::setgroups(&self.groups)
            .map_err(|e| Error::sys("setgroups", format!("{:?}", self.groups), e))?;
        sys::setresgid(self.gid).map_err(|e| Error::sys("setresgid", self.gid, e))?;
        sys::setresuid(self.uid).map_err(|e| Error::sys("setresuid", self.uid, e))?;
        sys::prctl(libc::PR_SET_KEEPCAPS, 0)
            .map_err(|e| Error::sys("prctl", "PR_SET_KEEPCAPS", e))?;
        capabilities::apply(&self.caps)?;
        sys::umask(self.umask as libc::mode_t);
        if self.nnp {
            sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
                .map_err(|e| Error::sys("prctl", "PR_SET_NO_NEW_PRIVS", e))?;
            if let Some(f) = &self.filter {
                seccomp::load(f)?;
            }
        }
        let path = self.lookup()?;
        let err = sys::execve(&path, &self.argv, &self.envp);
        let kind = match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => ExecErrorKind::NotFound,
            Some(libc::EACCES) | Some(libc::EPERM) => ExecErrorKind::PermissionDenied,
            _ => ExecErrorKind::Other,
        };
        Ok(Error::Exec {
            kind,
            message: format!("exec {}: {}", path.to_string_lossy(), strerror(&err)),
        })
    }

    /// Resolve argv[0] like Go's exec.LookPath (what runc does, so Docker's messages match).
    fn lookup(&self) -> Result<CString> {
        let name = self.argv[0].to_string_lossy().into_owned();
        if name.contains('/') {
            return match executable(Path::new(&name)) {
                Ok(()) => Ok(self.argv[0].clone()),
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOENT)
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    Err(Error::Exec {
                        kind: ExecErrorKind::NotFound,
                        message: format!("exec: \"{name}\": stat {name}: {}", strerror(&e)),
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => Err(Error::Exec {
                    kind: ExecErrorKind::PermissionDenied,
                    message: format!("exec: \"{name}\": permission denied"),
                }),
                Err(e) => Err(Error::Exec {
                    kind: ExecErrorKind::Other,
                    message: format!("exec: \"{name}\": {}", strerror(&e)),
                }),
            };
        }
        for dir in self.path_env.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let cand = Path::new(dir).join(&name);
            if executable(&cand).is_ok() {
                return sys::cstr(&cand)
                    .map_err(|_| Error::Config(format!("bad path {}", cand.display())));
            }
        }
        Err(Error::Exec {
            kind: ExecErrorKind::NotFound,
            message: format!("exec: \"{name}\": executable file not found in $PATH"),
        })
    }
}

/// Go's findExecutable: a non-directory with an execute bit that we may execute.
fn executable(p: &Path) -> io::Result<()> {
    let md = fs::metadata(p)?;
    if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    sys::access(&sys::cstr(p)?, libc::X_OK)
}

/// Go-style lower-case error text ("no such file or directory").
pub(crate) fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_is_lowercase() {
        assert_eq!(
            strerror(&io::Error::from_raw_os_error(libc::ENOENT)),
            "no such file or directory"
        );
        assert_eq!(
            strerror(&io::Error::from_raw_os_error(libc::EACCES)),
            "permission denied"
        );
    }
}
