//! Container endpoints: create, inspect, lifecycle verbs, update, wait, attach, logs and prune
//! (the list is in `container_list`). Thin adapters over the container service
//! (`container::lifecycle` and friends); they must not reach network or volume internals
//! beyond the views they show.

use super::container_list::dir_size;
use super::hijack::{self as attach, End};
use super::St;
use crate::container::{logs, shim, status};
use crate::error::{Error, Result};
use crate::util::RequestVersion;
use crate::util::{json, json_body, no_content, Query};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use berth_api::container::{
    CreateRequest, CreateResponse, Inspect, State as ApiState, UpdateRequest, UpdateResponse,
    WaitResponse,
};
use berth_shim::protocol::Request as ShimRequest;
use std::collections::BTreeMap;

pub async fn create(
    State(d): St,
    RawQuery(q): RawQuery,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let mut req: CreateRequest = json_body(&body)?;
    // A plain container on an attachable swarm network gets its address from the managers;
    // the network stays realised here (the lock) until the container exists.
    let held =
        crate::swarm_net::attach_container(&d, &mut req, q.get("name").unwrap_or_default()).await?;
    let (id, warnings) = d.create(q.get("name"), req).await?;
    drop(held);
    Ok(json(201, &CreateResponse { id, warnings }))
}

pub fn inspect_record(
    d: &crate::state::Daemon,
    c: &crate::container::handle::Container,
    size: bool,
) -> Inspect {
    let r = c.snapshot();
    let p = &c.paths;
    let (size_rw, size_root) = if size {
        let rw = dir_size(&p.upper()) as i64;
        (
            Some(rw),
            Some(
                rw + d
                    .images
                    .summary(&r.image_id)
                    .map(|i| i.size as i64)
                    .unwrap_or(0),
            ),
        )
    } else {
        (None, None)
    };
    let layers = crate::container::rootfs::lowerdirs(d, c).unwrap_or_default();
    Inspect {
        id: r.id.clone(),
        created: r.created.clone(),
        path: r.path.clone(),
        args: r.args.clone(),
        state: ApiState {
            status: r.state.status.clone(),
            running: r.is_running(),
            paused: r.state.status == status::PAUSED,
            restarting: r.state.status == status::RESTARTING,
            oom_killed: r.state.oom_killed,
            dead: r.state.status == status::DEAD,
            pid: i64::from(r.state.pid),
            exit_code: r.state.exit_code,
            error: r.state.error.clone(),
            started_at: r.state.started_at.clone(),
            finished_at: r.state.finished_at.clone(),
            health: r.state.health.clone(),
        },
        image: r.image_id.clone(),
        resolv_conf_path: p.resolv_conf().display().to_string(),
        hostname_path: p.hostname().display().to_string(),
        hosts_path: p.hosts().display().to_string(),
        // As dockerd: only json-file has a log path to show.
        log_path: if r.host_config.log_config.kind == "json-file" {
            p.log().display().to_string()
        } else {
            String::new()
        },
        name: r.name.clone(),
        restart_count: r.restart_count,
        driver: "overlay2".into(),
        platform: "linux".into(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids: None,
        host_config: r.host_config.clone(),
        graph_driver: serde_json::json!({"Name": "overlay2", "Data": {
            "LowerDir": layers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":"),
            "UpperDir": p.upper(), "WorkDir": p.work(), "MergedDir": p.rootfs(),
        }}),
        size_rw,
        size_root_fs: size_root,
        mounts: crate::container::volumes::view(d, &r),
        config: r.config.clone(),
        network_settings: crate::container::network::view::settings(d, &r),
    }
}

/// `GET /containers/{id}/json`. Before API 1.44 the MAC address is container-wide: the
/// primary endpoint's shows as `Config.MacAddress`, as dockerd shows it.
pub async fn inspect(
    State(d): St,
    version: Option<axum::Extension<crate::util::RequestVersion>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let mut out = inspect_record(&d, &c, q.bool("size"));
    if version.is_some_and(|v| v.0 .0 < berth_api::version::ApiVersion(1, 44)) {
        let r = c.snapshot();
        let eps = crate::container::network::endpoint::endpoints(&d, &r);
        let primary = eps.get(crate::container::network::endpoint::primary_name(&r));
        if let Some(ep) = primary {
            let mac = if ep.mac.is_empty() {
                &ep.requested_mac
            } else {
                &ep.mac
            };
            if !mac.is_empty() {
                out.config.mac_address = Some(mac.clone());
            }
        }
    }
    Ok(json(200, &out))
}

/// `POST /containers/{id}/start`. A host config in the body (API < 1.24) is refused as dockerd
/// refuses it, rather than dropped: a JSON object of more than 7 bytes, or a body of unknown
/// length.
pub async fn start(
    State(d): St,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if length > 7 || headers.contains_key(axum::http::header::TRANSFER_ENCODING) {
        return Err(Error::bad_request(
            "starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24",
        ));
    }
    let c = d.find(&id)?;
    d.start(&c).await?;
    crate::swarm_net::program_started(&d, &c);
    Ok(no_content())
}

pub async fn stop(State(d): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    d.stop(&c, q.get("signal"), q.int("t")?).await?;
    Ok(no_content())
}

pub async fn restart(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    d.restart(&c, q.get("signal"), q.int("t")?).await?;
    crate::swarm_net::program_started(&d, &c);
    Ok(no_content())
}

pub async fn kill(State(d): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    d.kill(&c, q.get("signal")).await?;
    Ok(no_content())
}

pub async fn pause(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let c = d.find(&id)?;
    tokio::task::spawn_blocking(move || d.pause(&c, true))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(no_content())
}

pub async fn unpause(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let c = d.find(&id)?;
    tokio::task::spawn_blocking(move || d.pause(&c, false))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    Ok(no_content())
}

pub async fn rename(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    d.rename(&c, q.get("name").unwrap_or(""))?;
    Ok(no_content())
}

pub async fn remove(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    if q.bool("link") {
        d.remove_link(&id)?;
        return Ok(no_content());
    }
    let c = d.find(&id)?;
    d.remove(&c, q.bool("force"), q.bool("v")).await?;
    // A swarm task's container removed by the user: its secret tmpfs goes too.
    crate::swarm_exec::forget_removed(&d.cfg.exec_root, &c.rec());
    Ok(no_content())
}

/// `DELETE /containers/{parent}/{alias}?link=1`: the link `alias` of container `parent`
/// (`docker rm --link parent/alias`); without `link` the path names no container.
pub async fn remove_link(
    State(d): St,
    Path((parent, alias)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let name = format!("{parent}/{alias}");
    if !Query::parse(q.as_deref()).bool("link") {
        return Err(Error::not_found(format!("No such container: {name}")));
    }
    d.remove_link(&name)?;
    Ok(no_content())
}

/// `POST /containers/{id}/update`.
pub async fn update(
    State(d): St,
    Path(id): Path<String>,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let c = d.find(&id)?;
    let req: UpdateRequest = json_body(&body)?;
    let warnings = d.update(&c, req).await?;
    Ok(json(200, &UpdateResponse { warnings }))
}

pub async fn resize(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let (w, h) = Query::parse(q.as_deref()).tty_size()?;
    let c = d.find(&id)?;
    if !c.rec().is_running() {
        return Err(Error::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    shim::resize(&c.paths.socket(), None, w, h).await?;
    d.container_event(
        &c,
        "resize",
        &[("height", h.to_string()), ("width", w.to_string())],
    );
    Ok(json(200, &serde_json::json!({})))
}

/// `/wait`: the 200 headers go out at once; the body comes when the condition holds.
pub async fn wait(State(d): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let condition = q.get("condition").unwrap_or("").to_string();
    if !matches!(
        condition.as_str(),
        "" | "not-running" | "next-exit" | "removed"
    ) {
        return Err(Error::bad_request(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    let fut = async move {
        let body = match d.wait(&c, &condition).await {
            Ok(code) => WaitResponse {
                error: None,
                status_code: code,
            },
            Err(e) => WaitResponse {
                error: Some(berth_api::container::WaitError {
                    message: e.0.message,
                }),
                status_code: -1,
            },
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(
            serde_json::to_string(&body).unwrap_or_default() + "\n",
        ))
    };
    let body = Body::from_stream(futures_util::stream::once(fut));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

pub async fn logs(State(d): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    if !logs::readable(&c.rec().host_config.log_config.kind) {
        return Err(Error(berth_api::ApiError::new(
            501,
            "configured logging driver does not support reading",
        )));
    }
    let details = q.bool("details").then(|| {
        let r = c.rec();
        logs::details(
            &r.host_config.log_config.config,
            r.config.labels.as_ref().unwrap_or(&Default::default()),
            r.config.env.as_deref().unwrap_or(&[]),
        )
    });
    let o = logs::Options {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        follow: q.bool("follow"),
        timestamps: q.bool("timestamps"),
        tail: q.get("tail").and_then(|t| t.parse().ok()),
        since: logs::bound(q.unix_time("since")?),
        until: logs::bound(q.unix_time("until")?),
        tty: c.rec().config.tty,
        details,
    };
    if !o.stdout && !o.stderr {
        return Err(Error::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(logs::stream(c.clone(), o.clone(), tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Bytes::from(b)), rx))
    });
    let ctype = if o.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, ctype)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /containers/{id}/attach`: hijack the connection (or stream a plain body when the
/// client asks for no upgrade) with the log backlog (`logs=1`) and the live streams
/// (`stream=1`) of the main process.
pub async fn attach(
    State(d): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let r = c.snapshot();
    let tty = r.config.tty;
    // Detach keys only mean something on a TTY; binary stdin must pass untouched.
    let detach = match (tty, q.get("detachKeys").filter(|s| !s.is_empty())) {
        (false, _) => Vec::new(),
        (true, Some(k)) => berth_api::detach::parse(k).map_err(Error::bad_request)?,
        (true, None) => berth_api::detach::DEFAULT.to_vec(),
    };
    let (logs, follow) = (q.bool("logs"), q.bool("stream"));
    if !follow && !logs {
        return Err(Error::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    if logs && !logs::readable(&r.host_config.log_config.kind) {
        return Err(Error(berth_api::ApiError::new(
            501,
            "configured logging driver does not support reading",
        )));
    }
    let upgrade = attach::wants_upgrade(&req);
    let client = attach::unix_client(&req);
    let want_stdin = upgrade && q.bool("stdin") && r.config.open_stdin;
    let (stdout, stderr) = (q.bool("stdout"), q.bool("stderr"));
    let version = req
        .extensions()
        .get::<RequestVersion>()
        .map(|v| v.0)
        .unwrap_or(berth_api::version::ApiVersion::max());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let backlog = if logs {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let opts = logs::Options {
            stdout,
            stderr,
            tty,
            ..logs::Options::default()
        };
        tokio::spawn(logs::stream(c.clone(), opts, tx));
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.extend_from_slice(&chunk);
        }
        all
    } else {
        Vec::new()
    };
    // Register for the next start now, so output from the very first instruction is seen.
    let running = r.is_running();
    let pending = (follow && !running).then(|| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.pending_attach
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    });
    let socket = c.paths.socket();
    let shim_req = ShimRequest::Attach {
        stdin: want_stdin,
        stdout,
        stderr,
    };
    d.container_event(&c, "attach", &[]);
    let serve = move |mut io: tokio::io::DuplexStream| async move {
        use tokio::io::AsyncWriteExt;
        if !backlog.is_empty() && io.write_all(&backlog).await.is_err() {
            return;
        }
        if !follow {
            let _ = io.shutdown().await;
            return;
        }
        let (socket, ack) = match pending {
            None => (socket, None),
            Some(rx) => match rx.await {
                Ok((s, ack)) => (s, Some(ack)),
                Err(_) => return,
            },
        };
        let Ok((_, stream)) = shim::open(&socket, &shim_req).await else {
            return;
        };
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        match attach::pump(io, stream, tty, want_stdin, detach, |_| {}).await {
            End::Detached(_) => d.container_event(&c, "detach", &[]),
            End::Exited => {}
        }
    };
    let multiplexed = !tty && version >= berth_api::version::ApiVersion(1, 42);
    Ok(attach::serve_stream(
        serve,
        upgrade,
        on_upgrade,
        multiplexed,
        client,
    ))
}

/// `POST /containers/prune`: removes every stopped container the filters select.
pub async fn prune(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let filter = crate::prune::PruneFilter::new(&q.filters()?, &[])?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in d.all() {
        let r = c.snapshot();
        let stopped = matches!(
            r.state.status.as_str(),
            status::CREATED | status::EXITED | status::DEAD
        );
        if !stopped
            || !filter.matches(
                &r.created,
                r.config.labels.as_ref().unwrap_or(&BTreeMap::new()),
            )
        {
            continue;
        }
        let size = dir_size(&c.paths.upper());
        // A container started or removed meanwhile is left out, as Docker does.
        if d.remove(&c, false, false).await.is_ok() {
            reclaimed += size;
            deleted.push(r.id.clone());
        }
    }
    d.events.emit(
        "container",
        "prune",
        "",
        BTreeMap::from([("reclaimed".to_string(), reclaimed.to_string())]),
    );
    Ok(json(
        200,
        &serde_json::json!({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
