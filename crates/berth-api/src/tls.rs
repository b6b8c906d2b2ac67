//! Where Docker's clients and daemon look for TLS files by default.

use std::path::PathBuf;

/// `$DOCKER_CERT_PATH`, else `~/.docker`: the directory of `ca.pem`, `cert.pem` and `key.pem`.
pub fn cert_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".docker")
}
