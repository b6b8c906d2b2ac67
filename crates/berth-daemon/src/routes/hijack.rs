//! Hijacked attach and exec streams: the `101 UPGRADED` handshake and the pump between the API
//! client and a shim stream (stdcopy frames without a TTY, raw bytes with one), with detach keys.
//! It only pumps bytes: it knows no record, route table or daemon state, only a shim stream.

use crate::container::shim;
use crate::listen::UnixClient;
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use berth_api::detach::Detach;
use berth_api::stdcopy;
use berth_shim::ExitRecord;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a hijacked stream waits at most for the client to read the `101` head (every
/// client reads it at once; the bound is for a client that is stopped or starved).
const HEAD_READ_WAIT: Duration = Duration::from_secs(5);

/// The unix socket `req` came on, if it came on one.
pub fn unix_client<B>(req: &Request<B>) -> Option<UnixClient> {
    req.extensions().get::<UnixClient>().copied()
}

/// Wait until the client has read everything sent on its unix socket (the `101` head), or
/// [`HEAD_READ_WAIT`] passed. A client that parses the head through a buffered reader and then
/// reads the raw socket (docker-py, over Python's http.client) loses any stream bytes that
/// arrived early enough to land in that buffer with the head. dockerd's streams start a
/// containerd round trip after its head; berth's process is already running, so its first
/// output would otherwise often reach such a client together with the head.
async fn head_read(c: UnixClient) {
    let t = Instant::now();
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: the descriptor is the upgraded connection's socket, which the caller holds
        // open during the wait; TIOCOUTQ (SIOCOUTQ on a socket: bytes the peer has not read
        // yet) writes one int through the pointer.
        let r = unsafe { libc::ioctl(c.0, libc::TIOCOUTQ, &mut queued) };
        if r != 0 || queued <= 0 || t.elapsed() >= HEAD_READ_WAIT {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether the client asked for a protocol upgrade (docker CLI, docker-py do).
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The response that opens a hijacked stream.
pub fn upgrade_response(multiplexed: bool) -> Response<Body> {
    let ctype = if multiplexed {
        "application/vnd.docker.multiplexed-stream"
    } else {
        "application/vnd.docker.raw-stream"
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    resp.headers_mut()
        .insert(header::UPGRADE, header::HeaderValue::from_static("tcp"));
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
    resp
}

/// How a stream ended.
pub enum End {
    Exited,
    /// The client typed the detach keys; the process goes on.
    Detached(Detached),
}

/// What a detach leaves of the shim stream: the stream, and the decoder holding any part of
/// a frame already read, so its end can still be read (an exec's exit code).
pub struct Detached {
    pub stream: shim::Stream,
    pub decoder: stdcopy::Decoder,
}

/// Copy between the API client and the shim stream until the process ends or the client
/// detaches. `tty` is the framing the client asked for: raw bytes, or stdcopy frames.
pub async fn pump<IO>(
    client: IO,
    stream: shim::Stream,
    tty: bool,
    stdin: bool,
    detach_keys: Vec<u8>,
    on_exit: impl FnOnce(Option<ExitRecord>) + Send,
) -> End
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut shim_r, mut shim_w) = tokio::io::split(stream);
    let mut dec = stdcopy::Decoder::default();
    let detached = {
        let out = async {
            let mut buf = vec![0u8; 32 * 1024];
            let mut exit = None;
            'read: loop {
                let n = match shim_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                dec.feed(&buf[..n]);
                while let Ok(Some((s, payload))) = dec.next_frame() {
                    if s == stdcopy::SYSTEM {
                        exit = serde_json::from_slice(&payload).ok();
                        break 'read;
                    }
                    let res = if tty {
                        client_w.write_all(&payload).await
                    } else {
                        client_w.write_all(&stdcopy::frame(s, &payload)).await
                    };
                    if res.is_err() {
                        break 'read;
                    }
                }
            }
            // Record the exit before the client sees the end of the stream and asks for it.
            on_exit(exit);
            let _ = client_w.flush().await;
            let _ = client_w.shutdown().await;
        };
        let input = async {
            let mut detach = Detach::new(detach_keys);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match client_r.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if stdin {
                            let _ = shim_w.shutdown().await;
                        }
                        // Keep the write half alive so output keeps flowing after a half-close.
                        return std::future::pending::<()>().await;
                    }
                    Ok(n) => n,
                };
                if !stdin {
                    continue;
                }
                let (fwd, detached) = detach.feed(&buf[..n]);
                if !fwd.is_empty() && shim_w.write_all(&fwd).await.is_err() {
                    return std::future::pending::<()>().await;
                }
                if detached {
                    return;
                }
            }
        };
        tokio::select! {
            _ = out => false,
            _ = input => true,
        }
    };
    if !detached {
        return End::Exited;
    }
    // The client's connection ends now, not at its next write.
    let _ = client_w.shutdown().await;
    drop((client_r, client_w));
    End::Detached(Detached {
        stream: shim_r.unsplit(shim_w),
        decoder: dec,
    })
}

/// Copy both ways between the client's connection and the pump's end of the pipe. A client
/// that half-closes still gets the output; once the output ends (the process exited, or the
/// client detached) the connection is closed, whatever the client still sends.
async fn relay<C, P>(conn: C, pipe: P)
where
    C: AsyncRead + AsyncWrite,
    P: AsyncRead + AsyncWrite,
{
    let (mut conn_r, mut conn_w) = tokio::io::split(conn);
    let (mut pipe_r, mut pipe_w) = tokio::io::split(pipe);
    let up = async {
        let _ = tokio::io::copy(&mut conn_r, &mut pipe_w).await;
        let _ = pipe_w.shutdown().await;
        std::future::pending::<()>().await
    };
    let down = async {
        let _ = tokio::io::copy(&mut pipe_r, &mut conn_w).await;
        let _ = conn_w.shutdown().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Run `serve` on one end of an in-memory pipe whose other end goes to the client: the
/// upgraded connection (answering `101 UPGRADED`), or, when the client asked for no upgrade,
/// the raw stream as the body of a `200` that ends when the connection closes (dockerd
/// hijacks that connection too: its stream follows the head unframed, not chunked; hyper
/// writes a body without chunking only in an HTTP/1.0 answer, which HTTP/1.1 clients read
/// the same way). On a unix socket the stream waits for the client to read the head first.
pub fn serve_stream<F, Fut>(
    serve: F,
    upgrade: bool,
    on_upgrade: hyper::upgrade::OnUpgrade,
    multiplexed: bool,
    client: Option<UnixClient>,
) -> Response<Body>
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (near, far) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve(near));
    if !upgrade {
        let body = futures_util::stream::unfold(far, |mut far| async move {
            let mut buf = vec![0u8; 32 * 1024];
            match far.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((
                        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(buf)),
                        far,
                    ))
                }
            }
        });
        let mut resp = Response::new(Body::from_stream(body));
        *resp.version_mut() = axum::http::Version::HTTP_10;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.docker.raw-stream"),
        );
        return resp;
    }
    tokio::spawn(async move {
        // hyper resolves the upgrade once the 101 has been written and flushed on its own, so
        // no stream byte shares a write with the response head.
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        if let Some(c) = client {
            head_read(c).await;
        }
        relay(hyper_util::rt::TokioIo::new(upgraded), far).await;
    });
    upgrade_response(multiplexed)
}
