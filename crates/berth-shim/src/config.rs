//! What the daemon tells a shim (shim.json) and what the shim leaves behind (exit.json).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Written by the daemon into the container directory before it starts the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    /// Directory holding the OCI config.json.
    pub bundle: PathBuf,
    /// State root of berth-runtime.
    pub runtime_root: PathBuf,
    /// Unix socket the shim listens on.
    pub socket: PathBuf,
    pub log_path: PathBuf,
    /// The log driver: "json-file" (also when empty), "local" or "none" (no log kept).
    #[serde(default)]
    pub log_driver: String,
    /// Compress rotated files (gzip).
    #[serde(default)]
    pub log_compress: bool,
    /// Rotate the log when it reaches this many bytes; 0 = never.
    pub log_max_size: u64,
    /// How many log files to keep, the live one included.
    pub log_max_files: u32,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// Where the exit record goes.
    pub exit_file: PathBuf,
    /// Initial TTY size (rows, columns), set before the process runs.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

impl ShimConfig {
    pub const FILE: &'static str = "shim.json";
}

/// The container's end as the shim saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub exit_code: i32,
    #[serde(default)]
    pub oom_killed: bool,
    pub finished_at: String,
    #[serde(default)]
    pub error: String,
}
