//! Error type of the runtime: every variant says what failed and on which path or syscall.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the container process failed to `execve`, so the caller can map it to an exit code
/// (Docker uses 127 for [`ExecErrorKind::NotFound`] and 126 for [`ExecErrorKind::PermissionDenied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecErrorKind {
    /// The executable (or its interpreter) does not exist, or is not in `$PATH`.
    NotFound,
    /// The executable exists but may not be executed (mode bits, noexec mount, directory).
    PermissionDenied,
    /// Any other `execve` failure (e.g. exec format error).
    Other,
}

impl ExecErrorKind {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            ExecErrorKind::NotFound => b'n',
            ExecErrorKind::PermissionDenied => b'p',
            ExecErrorKind::Other => b'o',
        }
    }

    pub(crate) fn from_byte(b: u8) -> ExecErrorKind {
        match b {
            b'n' => ExecErrorKind::NotFound,
            b'p' => ExecErrorKind::PermissionDenied,
            _ => ExecErrorKind::Other,
        }
    }
}

/// Errors returned by the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (e.g. "open", "write", "mkdir").
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{syscall}({arg}): {source}")]
    Sys {
        /// The system call (e.g. "mount", "pivot_root", "setns").
        syscall: &'static str,
        /// Its main argument(s), for the message.
        arg: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The bundle's config.json (or a value given to the runtime) is invalid or unsupported.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No container with this id exists under the state root.
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    /// A container with this id already exists under the state root.
    #[error("container \"{0}\" already exists")]
    AlreadyExists(String),
    /// The operation is not valid in the container's current status.
    #[error("container \"{id}\" is {status}: cannot {op}")]
    InvalidState {
        /// Container id.
        id: String,
        /// Its current status.
        status: String,
        /// The operation that was refused.
        op: &'static str,
    },
    /// The container process could not be executed (reported at `start`, or by `exec`).
    #[error("{message}")]
    Exec {
        /// Not found (→127), permission denied (→126) or other.
        kind: ExecErrorKind,
        /// Docker-style message, e.g. `exec: "foo": executable file not found in $PATH`.
        message: String,
    },
    /// The container's init process failed while setting the container up.
    #[error("container init: {0}")]
    Init(String),
    /// Building or loading the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(syscall: &'static str, arg: impl fmt::Display, source: io::Error) -> Error {
        Error::Sys {
            syscall,
            arg: arg.to_string(),
            source,
        }
    }

    /// The errno behind this error, if it came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
