//! Exec endpoints: create, start (hijacked or detached), resize and inspect. They keep no exec
//! state and never change a container's record: exec instances are `container::exec`'s.

use super::hijack::{self as attach, End};
use super::St;
use crate::container::exec;
use crate::error::{Error, Result};
use crate::util::RequestVersion;
use crate::util::{json, json_body, Query};
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use berth_api::exec::{ExecConfig, ExecStart};

pub async fn create(
    State(d): St,
    Path(id): Path<String>,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let c = d.find(&id)?;
    let config: ExecConfig = json_body(&body)?;
    let id = d.create_exec(&c, config)?;
    Ok(json(201, &serde_json::json!({ "Id": id })))
}

/// `POST /exec/{id}/start`: the docker CLI needs the 101 whatever happens, so a failure to
/// start is written into the stream and recorded as the exit code.
pub async fn start(State(d): St, Path(id): Path<String>, req: Request) -> Result<Response> {
    let e = d.exec(&id)?;
    let upgrade = attach::wants_upgrade(&req);
    let client = attach::unix_client(&req);
    let version = req
        .extensions()
        .get::<RequestVersion>()
        .map(|v| v.0)
        .unwrap_or(berth_api::version::ApiVersion::max());
    crate::body::check_json_type(req.headers())?;
    let (parts, body) = req.into_parts();
    let bytes = crate::body::read_limited(body, crate::body::JSON_LIMIT).await?;
    let opts: ExecStart = json_body(&bytes)?;
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    let prepared = d.prepare_exec(&e)?;
    // The stream's framing follows the start request (as dockerd's), whether or not the
    // process has a TTY; detach keys apply to an exec that has one.
    let tty = opts.tty;
    if opts.detach {
        let stream = exec::launch(&e, prepared).await.map_err(Error::internal)?;
        tokio::spawn(async move {
            let code = drain(stream, berth_api::stdcopy::Decoder::default()).await;
            d.exec_finished(&e, code);
        });
        // dockerd answers a detached start with an empty 200.
        return Ok(axum::http::StatusCode::OK.into_response());
    }
    let detach_keys = exec::detach_keys(&e.config)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let stdin = upgrade && e.config.attach_stdin;
    // Started before answering, so a resize that follows the 101 finds the process; a
    // failure is still answered with the stream, carrying the message.
    let launched = exec::launch(&e, prepared).await;
    let serve = move |mut io: tokio::io::DuplexStream| async move {
        use tokio::io::AsyncWriteExt;
        let stream = match launched {
            Ok(s) => s,
            Err(msg) => {
                let text = format!("{msg}\r\n");
                let out = if tty {
                    text.into_bytes()
                } else {
                    berth_api::stdcopy::frame(berth_api::stdcopy::STDOUT, text.as_bytes())
                };
                let _ = io.write_all(&out).await;
                let _ = io.shutdown().await;
                return;
            }
        };
        let (d2, e2) = (d.clone(), e.clone());
        let on_exit = move |exit: Option<berth_shim::ExitRecord>| {
            d2.exec_finished(&e2, exit.map(|x| i64::from(x.exit_code)));
        };
        if let End::Detached(rest) =
            attach::pump(io, stream, tty, stdin, detach_keys, on_exit).await
        {
            // The process goes on: its exit code is still recorded when it ends.
            let code = drain(rest.stream, rest.decoder).await;
            d.exec_finished(&e, code);
        }
    };
    Ok(attach::serve_stream(
        serve,
        upgrade,
        on_upgrade,
        !tty && version >= berth_api::version::ApiVersion(1, 42),
        client,
    ))
}

/// Read a detached exec's stream to its end (`dec` holds what was read of it already);
/// returns the exit code.
async fn drain(
    mut stream: crate::container::shim::Stream,
    mut dec: berth_api::stdcopy::Decoder,
) -> Option<i64> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(code) = exit_in(&mut dec) {
            return code;
        }
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .ok()?;
        if n == 0 {
            return None;
        }
        dec.feed(&buf[..n]);
    }
}

/// The exit record among the frames decoded so far, if one came (`Some(None)`: it came but
/// could not be read).
fn exit_in(dec: &mut berth_api::stdcopy::Decoder) -> Option<Option<i64>> {
    while let Ok(Some((s, p))) = dec.next_frame() {
        if s == berth_api::stdcopy::SYSTEM {
            let exit: Option<berth_shim::ExitRecord> = serde_json::from_slice(&p).ok();
            return Some(exit.map(|x| i64::from(x.exit_code)));
        }
    }
    None
}

pub async fn resize(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let (w, h) = Query::parse(q.as_deref()).tty_size()?;
    let e = d.exec(&id)?;
    let c = d.find(&e.container_id)?;
    crate::container::shim::resize(&c.paths.socket(), Some(e.id.clone()), w, h).await?;
    Ok(json(200, &serde_json::json!({})))
}

pub async fn inspect(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let e = d.exec(&id)?;
    Ok(json(200, &exec::inspect(&e)))
}
