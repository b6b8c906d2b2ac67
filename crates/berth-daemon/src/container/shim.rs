//! The daemon's side of the shim protocol: start a shim, send requests, open stdio streams.

use crate::error::{Error, Result};
use berth_shim::protocol::{Ready, Reply, Request};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A connection whose request was answered; what follows is the stream.
pub type Stream = BufReader<UnixStream>;

/// Start `berth shim <dir>` and wait for its readiness line.
pub async fn spawn(dir: &Path) -> Result<Ready> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("shim")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| Error::internal(format!("starting shim: {e}")))?;
    // Only the first line counts: waiting for EOF would also wait for every process that
    // inherited the pipe (the container's init holds it until it sets up its own stdio).
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut out).await?;
    }
    let _ = child.wait().await;
    let line = out.lines().next().unwrap_or("");
    serde_json::from_str(line).map_err(|_| {
        Error::internal(format!(
            "shim failed to start (see {}): {}",
            dir.join("shim.log").display(),
            out.trim()
        ))
    })
}

/// Connect, send `req` and read the reply line; the connection stays usable as a stream.
pub async fn open(socket: &Path, req: &Request) -> Result<(Reply, Stream)> {
    let sock = UnixStream::connect(socket)
        .await
        .map_err(|e| Error::internal(format!("connecting to shim {}: {e}", socket.display())))?;
    let mut s = BufReader::new(sock);
    let mut line = serde_json::to_vec(req).map_err(|e| Error::internal(e.to_string()))?;
    line.push(b'\n');
    s.get_mut().write_all(&line).await?;
    let mut reply = String::new();
    s.read_line(&mut reply).await?;
    if reply.is_empty() {
        return Err(Error::internal("shim closed the connection"));
    }
    let r: Reply = serde_json::from_str(&reply)
        .map_err(|e| Error::internal(format!("bad shim reply: {e}")))?;
    Ok((r, s))
}

/// One request, one reply; shim-reported errors become 500s.
pub async fn call(socket: &Path, req: &Request) -> Result<Reply> {
    let (r, _) = open(socket, req).await?;
    match &r.error {
        Some(e) if r.exit_code.is_none() => Err(Error::internal(e.clone())),
        _ => Ok(r),
    }
}
