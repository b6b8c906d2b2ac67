//! The daemon's side of the shim protocol: start a shim, send requests, open stdio streams. Beside
//! `error` it imports no other module of the daemon: it knows no record or service, only a shim's
//! run dir and socket.

use crate::error::{Error, Result};
use berth_shim::protocol::{Ready, Reply, Request};
use std::os::fd::OwnedFd;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A connection whose request was answered; what follows is the stream.
pub type Stream = BufReader<UnixStream>;

/// Starts shims: forked by the zygote (`berth shim-zygote`, started once with the daemon), or,
/// if that is not possible, by executing `berth shim <dir>`.
pub struct Spawner {
    zygote: std::sync::Mutex<Option<Zygote>>,
}

struct Zygote {
    child: std::process::Child,
    sock: OwnedFd,
}

impl Zygote {
    fn start() -> std::io::Result<Zygote> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        // SEQPACKET keeps each request (and the pipe sent with it) a message of its own.
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("shim-zygote")
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        Ok(Zygote { child, sock: ours })
    }
}

impl Default for Spawner {
    fn default() -> Spawner {
        let zygote = match Zygote::start() {
            Ok(z) => Some(z),
            Err(e) => {
                tracing::warn!("shim zygote not started ({e}); shims will be executed");
                None
            }
        };
        Spawner {
            zygote: std::sync::Mutex::new(zygote),
        }
    }
}

impl Spawner {
    /// Ask the zygote for a shim for `dir`; the read end of its readiness pipe, or None when
    /// no zygote can serve (then the caller executes the shim).
    fn fork_shim(&self, dir: &Path) -> Option<OwnedFd> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let mut guard = self.zygote.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            if guard.is_none() {
                *guard = Zygote::start().ok();
            }
            let z = guard.as_mut()?;
            let data = dir.as_os_str().as_encoded_bytes();
            let fds = [w.as_raw_fd()];
            let sent = sendmsg::<()>(
                z.sock.as_raw_fd(),
                &[std::io::IoSlice::new(data)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            if sent.is_ok() {
                return Some(r);
            }
            // The zygote is gone: reap it and start another.
            let _ = z.child.kill();
            let _ = z.child.wait();
            *guard = None;
        }
        None
    }
}

/// Start a shim for the container whose run directory is `dir` and wait for its readiness line.
pub async fn spawn(spawner: &Spawner, dir: &Path) -> Result<Ready> {
    let Some(ready_fd) = spawner.fork_shim(dir) else {
        return spawn_exec(dir).await;
    };
    let out = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut r = std::io::BufReader::new(std::fs::File::from(ready_fd));
        std::io::BufRead::read_line(&mut r, &mut line).map(|_| line)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    parse_ready(dir, &out)
}

fn parse_ready(dir: &Path, out: &str) -> Result<Ready> {
    let line = out.lines().next().unwrap_or("");
    serde_json::from_str(line).map_err(|_| {
        Error::internal(format!(
            "shim failed to start (see {}): {}",
            dir.join("shim.log").display(),
            out.trim()
        ))
    })
}

/// Execute `berth shim <dir>` and wait for its readiness line.
async fn spawn_exec(dir: &Path) -> Result<Ready> {
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
    parse_ready(dir, &out)
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

/// Set the TTY size of the main process (`exec_id` None) or of an exec.
pub async fn resize(socket: &Path, exec_id: Option<String>, width: u16, height: u16) -> Result<()> {
    call(
        socket,
        &Request::Resize {
            exec_id,
            width,
            height,
        },
    )
    .await?;
    Ok(())
}
