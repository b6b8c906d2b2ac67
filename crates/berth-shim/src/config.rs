//! What the daemon tells a shim (shim.json) and what the shim leaves behind (exit.json).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Write `data` to `path` atomically: temp file, rename. With `durable`, the file is
/// fsynced first, so it also survives a power loss (not only a crash of the process). A
/// failed write (a full disk) leaves `path` as it was and no temp file behind.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
