//! The per-container supervisor. One `berth shim` process per running container: it creates the
//! container through berth-runtime in-process, owns its stdio or PTY, writes the json-file log,
//! serves attach/exec/kill/wait on a unix socket and records the exit status before it exits.
//! It outlives the daemon, so a daemon crash leaves containers running.

pub mod config;
pub mod logfile;
pub mod protocol;
mod server;
pub mod trim;
pub mod zygote;

pub use config::{ExitRecord, ShimConfig};

/// Entry point of `berth shim <container-dir>`; returns the process exit code.
pub fn main(dir: &std::path::Path) -> i32 {
    server::run(dir)
}
