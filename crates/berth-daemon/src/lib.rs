//! `berth daemon`: serves the Docker Engine API on a unix socket (and optionally TCP), keeps
//! container, image and exec state, and drives shims and the image store. Inside, the container
//! service (`container`) never imports the build, pull, push, `state` or the routes, and only
//! `listen` and `server` import the routes.

#![recursion_limit = "256"]

mod blob_sources;
mod body;
mod build;
mod config;
mod container;
mod error;
mod events;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod listen;
mod names;
mod prune;
mod pull;
mod push;
mod quarantine;
mod registry_auth;
mod rlimit;
mod routes;
mod server;
mod state;
mod stats;
mod swarm_exec;
mod swarm_net;
mod swarm_state;
mod userns;
mod util;

pub use config::DaemonArgs;

/// Entry point of `berth daemon`; returns the process exit code.
pub fn main(args: DaemonArgs) -> i32 {
    let cfg = match config::DaemonConfig::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cfg.log_level.clone()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    rlimit::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth daemon: tokio: {e}");
            return 1;
        }
    };
    match rt.block_on(server::run(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            1
        }
    }
}
