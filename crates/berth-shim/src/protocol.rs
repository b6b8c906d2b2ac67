//! The daemon↔shim protocol. Each connection starts with one JSON request line and gets one JSON
//! reply line. After the reply, `attach` and `exec` connections carry a stream: the shim sends
//! stdcopy frames (stream 1/2 for output, 3 = a final JSON `ExitRecord`), the daemon sends raw
//! stdin bytes and half-closes to end stdin.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Release the created container's process.
    Start,
    /// Stream the main process's stdio.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Reply once the main process has exited (at once if it has).
    Wait,
    Kill {
        signal: i32,
        all: bool,
    },
    Resize {
        #[serde(default)]
        exec_id: Option<String>,
        width: u16,
        height: u16,
    },
    /// Run a process in the container; the connection then streams its stdio and its exit.
    Exec {
        exec_id: String,
        process: Box<oci_spec::runtime::Process>,
        stdin: bool,
    },
    /// Pid and whether the main process still runs.
    State,
    /// Signal an exec's process (a health probe that outlived its timeout).
    KillExec {
        exec_id: String,
        signal: i32,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For start/exec failures: the exit code the failure maps to (126, 127 or 125...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<crate::ExitRecord>,
    #[serde(default)]
    pub running: bool,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::default()
    }
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            error: Some(msg.into()),
            ..Reply::default()
        }
    }
}

/// The one line a shim prints on stdout when the container is created (or failed to be).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    #[serde(default)]
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}
