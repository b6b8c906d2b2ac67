//! Exec endpoints: create, start (hijacked or detached), resize and inspect.

use super::St;
use crate::container::attach::{self, End};
use crate::container::exec;
use crate::error::{Error, Result};
use crate::util::{json, json_body, Query};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::Response;
use berth_api::exec::{ExecConfig, ExecStart};

pub async fn create(State(d): St, Path(id): Path<String>, body: Bytes) -> Result<Response> {
    let c = d.find(&id)?;
    let config: ExecConfig = json_body(&body)?;
    let id = exec::create(&d, &c, config)?;
    Ok(json(201, &serde_json::json!({ "Id": id })))
}

pub async fn start(State(d): St, Path(id): Path<String>, req: Request) -> Result<Response> {
    let e = d.exec(&id)?;
    let upgrade = attach::wants_upgrade(&req);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let opts: ExecStart = json_body(&bytes)?;
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    let stream = exec::start(&d, &e).await?;
    let tty = e.config.tty || opts.tty;
    if opts.detach {
        tokio::spawn(async move {
            let mut stream = stream;
            let code = drain(&mut stream).await;
            exec::finished(&e, code);
        });
        return Ok(crate::util::json(200, &serde_json::json!({})));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let stdin = e.config.attach_stdin;
    if !upgrade {
        return Err(Error::bad_request(
            "exec start without an Upgrade: tcp header is not supported; send Upgrade: tcp",
        ));
    }
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let e2 = e.clone();
        let on_exit = move |exit: Option<berth_shim::ExitRecord>| {
            exec::finished(&e2, exit.map(|x| i64::from(x.exit_code)));
        };
        if let End::Detached = attach::pump(io, stream, tty, stdin, Vec::new(), on_exit).await {
            exec::finished(&e, None);
        }
    });
    Ok(attach::upgrade_response(!tty))
}

/// Read a detached exec's stream to its end; returns the exit code.
async fn drain(stream: &mut crate::container::shim::Stream) -> Option<i64> {
    let mut dec = berth_api::stdcopy::Decoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::io::AsyncReadExt::read(stream, &mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        dec.feed(&buf[..n]);
        while let Ok(Some((s, p))) = dec.next_frame() {
            if s == berth_api::stdcopy::SYSTEM {
                let exit: berth_shim::ExitRecord = serde_json::from_slice(&p).ok()?;
                return Some(i64::from(exit.exit_code));
            }
        }
    }
}

pub async fn resize(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let e = d.exec(&id)?;
    let (h, w) = (q.int("h")?.unwrap_or(0), q.int("w")?.unwrap_or(0));
    exec::resize(
        &d,
        &e,
        u16::try_from(w).unwrap_or(0),
        u16::try_from(h).unwrap_or(0),
    )
    .await?;
    Ok(json(200, &serde_json::json!({})))
}

pub async fn inspect(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let e = d.exec(&id)?;
    Ok(json(200, &exec::inspect(&e)))
}
