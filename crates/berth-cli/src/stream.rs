//! Terminal side of attach/exec: raw mode, copying stdin to the hijacked connection, and
//! writing output raw (TTY) or demultiplexed from stdcopy frames.

use berth_api::stdcopy;
use std::io::Write;
use std::os::fd::AsFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Puts the terminal on stdin into raw mode and restores it on drop.
pub struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    pub fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                s,
            );
        }
    }
}

pub fn is_tty(fd: impl AsFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// The terminal size of stdout as (height, width), if it is a terminal.
pub fn term_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the winsize struct we pass, which outlives the call.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// How an interactive stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The output ended (the process exited or the daemon closed the stream).
    Output,
    /// The user typed the detach sequence.
    Detached,
}

/// Copy the connection's output to stdout/stderr, and stdin to the connection when asked.
/// With a TTY, typing `detach` keys ends the stream at once, as the docker CLI does.
pub async fn run<IO>(
    conn: IO,
    tty: bool,
    send_stdin: bool,
    detach: Option<Vec<u8>>,
) -> std::io::Result<Ended>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(conn);
    let (detached_tx, mut detached_rx) = tokio::sync::oneshot::channel::<()>();
    if send_stdin {
        let keys = if tty {
            detach.unwrap_or_else(|| berth_api::detach::DEFAULT.to_vec())
        } else {
            Vec::new()
        };
        tokio::spawn(async move {
            let mut matcher = berth_api::detach::Detach::new(keys);
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (fwd, hit) = matcher.feed(&buf[..n]);
                        if !fwd.is_empty() && w.write_all(&fwd).await.is_err() {
                            return;
                        }
                        if hit {
                            let _ = detached_tx.send(());
                            return;
                        }
                    }
                }
            }
            let _ = w.shutdown().await;
        });
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut dec = stdcopy::Decoder::default();
    // Until the stdin side ends (its sender dropped): a completed oneshot must not be polled again.
    let mut stdin_open = true;
    loop {
        let n = tokio::select! {
            n = r.read(&mut buf) => n?,
            d = &mut detached_rx, if stdin_open => {
                if d.is_ok() {
                    return Ok(Ended::Detached);
                }
                stdin_open = false;
                continue;
            }
        };
        if n == 0 {
            break;
        }
        if tty {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        dec.feed(&buf[..n]);
        while let Some((s, payload)) = dec
            .next_frame()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
        {
            if s == stdcopy::STDERR {
                let mut e = std::io::stderr().lock();
                e.write_all(&payload)?;
                e.flush()?;
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(&payload)?;
                o.flush()?;
            }
        }
    }
    Ok(Ended::Output)
}
