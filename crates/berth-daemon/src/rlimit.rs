//! The daemon's descriptor limit: raised to its hard limit at start, the limit it was given
//! remembered for the containers. A leaf: it uses no other module of the daemon.

static INHERITED_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raise the daemon's descriptor limit to its hard limit (as Go programs such as dockerd do
/// at start), remembering the limit it was given for the containers.
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = INHERITED_NOFILE.set((soft, hard));
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("raising the descriptor limit to {hard}: {e}");
            }
        }
    }
}

/// The descriptor limit the daemon was started with, once it has raised its own.
pub fn inherited_nofile() -> Option<(u64, u64)> {
    INHERITED_NOFILE.get().copied()
}
