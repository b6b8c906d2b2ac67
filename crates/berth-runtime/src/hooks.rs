//! OCI hooks: run each hook program with the container's state JSON on stdin, its own argv and
//! environment, bounded by its timeout (enforced with a pidfd, no polling loop).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;
use serde_json::json;

use crate::error::{Error, Result};
use crate::sys;

/// The state document passed to hooks.
pub(crate) fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: &std::collections::HashMap<String, String>,
) -> Vec<u8> {
    json!({
        "ociVersion": "1.0.2",
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
    .to_string()
    .into_bytes()
}

/// Run `hooks` in order; the first failure stops and is returned.
pub(crate) fn run(kind: &'static str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(kind, h, state)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, h: &Hook, state: &[u8]) -> Result<()> {
    let fail = |msg: String| Error::Init(format!("{kind} hook {}: {msg}", h.path().display()));
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    if let Some(secs) = h.timeout().filter(|&t| t > 0) {
        let pidfd = sys::pidfd_open(child.id() as i32).map_err(|e| fail(e.to_string()))?;
        let ms = secs.saturating_mul(1000).min(i64::from(i32::MAX)) as i32;
        let rev =
            sys::poll(&[(pidfd.as_raw_fd(), libc::POLLIN)], ms).map_err(|e| fail(e.to_string()))?;
        if rev[0] == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {secs}s")));
        }
    }
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        return Err(fail(match status.code() {
            Some(c) => format!("exit status {c}"),
            None => format!("killed by signal {}", status.signal().unwrap_or(0)),
        }));
    }
    Ok(())
}
