//! Container filesystem endpoints: archive (stat, get, put for `cp`), export, changes (`diff`),
//! commit, and top.

use super::St;
use crate::container::handle::Container;
use crate::container::rootfs::{open_root, with_root};
use crate::error::{Error, Result};
use crate::state::Daemon;
use crate::util::{json, json_body, Query};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use berth_api::container::{ChangeItem, TopResponse};
use berth_image::archive::Root;
use std::path::PathBuf;
use std::sync::Arc;

/// Run a filesystem operation on a blocking thread with the container's op lock held.
async fn blocking<T: Send + 'static>(
    d: &Arc<Daemon>,
    c: &Arc<Container>,
    f: impl FnOnce(&Daemon, &Container) -> Result<T> + Send + 'static,
) -> Result<T> {
    let _op = c.op.lock().await;
    let (d2, c2) = (d.clone(), c.clone());
    tokio::task::spawn_blocking(move || f(&d2, &c2))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}

/// Run `f` (on a blocking thread) with the container's `/` open. The op lock is held while
/// the root is opened, and through `f` only when the root had to be mounted (a stopped
/// container may not start meanwhile). A running container's root is reached by file
/// descriptors that stay valid whatever it does, so the container is neither frozen nor
/// held up: a slow client never delays its stop or an exec.
fn with_open_root<T>(d: &Daemon, c: &Container, f: impl FnOnce(&Root) -> Result<T>) -> Result<T> {
    let op = c.op.blocking_lock();
    let open = open_root(d, c, true)?;
    let op = open.mounted().then_some(op);
    let res = f(open.root());
    // Unmounted before the lock goes.
    drop(open);
    drop(op);
    res
}

fn container_path(q: &Query) -> Result<PathBuf> {
    let p = q.get("path").unwrap_or("");
    if p.is_empty() {
        return Err(Error::bad_request("path is required"));
    }
    if p.contains('\0') {
        return Err(Error::bad_request(format!(
            "invalid path {p:?}: it contains a NUL byte"
        )));
    }
    Ok(PathBuf::from(p))
}

fn not_found_path(e: berth_image::Error, c: &str, p: &std::path::Path) -> Error {
    match e {
        berth_image::Error::NotFound(_) => Error::not_found(format!(
            "Could not find the file {} in container {c}",
            p.display()
        )),
        other => other.into(),
    }
}

/// How much of a refused upload is read before the answer (Go's server reads up to 256 KiB
/// of an unread body so the connection can be reused).
const DRAIN_BEFORE_REFUSAL: usize = 256 << 10;

/// Whether `PUT /archive` may write at `path`, as dockerd decides: by the mount the path is
/// on (the one with the longest destination prefix, compared as cleaned paths), or the root
/// filesystem when it is on none.
fn check_writable(r: &crate::container::Record, path: &std::path::Path) -> Result<()> {
    let p = berth_build::ignore::clean(&format!("/{}", path.to_string_lossy()));
    let under = |dst: &str| {
        p == dst
            || dst == "/"
            || p.strip_prefix(dst)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let mount = r
        .mounts
        .iter()
        .filter(|m| under(&berth_build::ignore::clean(&m.destination)))
        .max_by_key(|m| m.destination.len());
    match mount {
        Some(m) if !m.rw => Err(Error::bad_request("mounted volume is marked read-only")),
        Some(_) => Ok(()),
        None if r.host_config.readonly_rootfs => {
            Err(Error::bad_request("container rootfs is marked read-only"))
        }
        None => Ok(()),
    }
}

/// `HEAD|GET|PUT /containers/{id}/archive`.
pub async fn archive(
    State(d): St,
    Path(id): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let path = container_path(&q)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    match method {
        Method::HEAD | Method::GET => {
            let (id2, p2, n2) = (id.clone(), path.clone(), name.clone());
            let stat = blocking(&d, &c, move |d, c| {
                with_root(d, c, true, |root| {
                    let entry = root.locate(&p2).map_err(|e| not_found_path(e, &id2, &p2))?;
                    Ok(berth_image::archive::stat_located(&entry, &n2)
                        .map_err(|e| not_found_path(e, &id2, &p2))?
                        .header_value())
                })
            })
            .await?;
            let mut resp = if method == Method::GET {
                d.container_event(&c, "archive-path", &[]);
                // The tar is streamed as it is written, from descriptors opened beneath the
                // container's root.
                let body = crate::util::stream_body(move |out| {
                    let ids = d.remap_of(&c.rec()).map(|r| r.ids.clone());
                    with_open_root(&d, &c, |root| {
                        let entry = root
                            .locate(&path)
                            .map_err(|e| not_found_path(e, &id, &path))?;
                        Ok(berth_image::archive::tar_located(
                            &entry,
                            &name,
                            out,
                            ids.as_ref(),
                        )?)
                    })
                });
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
                    body,
                )
                    .into_response()
            } else {
                axum::http::StatusCode::OK.into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&stat) {
                resp.headers_mut().insert("X-Docker-Container-Path-Stat", v);
            }
            Ok(resp)
        }
        Method::PUT => {
            let writable = check_writable(&c.rec(), &path);
            if let Err(e) = writable {
                // As Go's server, read what a small upload sent before refusing it, so the
                // client is not cut off mid-write and gets the answer, not a broken pipe.
                crate::body::drain(req.into_body(), DRAIN_BEFORE_REFUSAL).await;
                return Err(e);
            }
            let mut body = crate::util::BodyReader::new(req.into_body());
            let opts = berth_image::archive::ExtractOptions {
                no_overwrite_dir_non_dir: q.bool("noOverwriteDirNonDir"),
                chown: if q.bool("copyUIDGID") {
                    None
                } else {
                    Some((0, 0))
                },
                allow_devices: false,
                ids: d.remap_of(&c.rec()).map(|r| r.ids.clone()),
            };
            let (d2, c2, id2) = (d.clone(), c.clone(), id.clone());
            tokio::task::spawn_blocking(move || {
                with_open_root(&d2, &c2, |root| {
                    berth_image::archive::extract_at(&mut body, root, &path, &opts)
                        .map_err(|e| not_found_path(e, &id2, &path))
                })
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
            d.container_event(&c, "extract-to-dir", &[]);
            Ok(axum::http::StatusCode::OK.into_response())
        }
        _ => Err(Error::not_found("page not found")),
    }
}

/// `GET /containers/{id}/export`: the merged filesystem as a tar.
pub async fn export(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let c = d.find(&id)?;
    d.container_event(&c, "export", &[]);
    let body = crate::util::stream_body(move |out| {
        // Under --userns-remap the layers hold the image's ids and the changes the mapped
        // ones: the mapping turns the latter back, and leaves the former as they are.
        let ids = d.remap_of(&c.rec()).map(|r| r.ids.clone());
        let root = crate::container::rootfs::open_layers(&d, &c)?;
        Ok(berth_image::archive::tar_root(&root, out, ids.as_ref())?)
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
        body,
    )
        .into_response())
}

/// `GET /containers/{id}/changes`.
pub async fn changes(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let c = d.find(&id)?;
    let list = blocking(&d, &c, |d, c| {
        let layers = crate::container::rootfs::lowerdirs(d, c)?;
        // A container that never started has no upper dir yet: no changes.
        std::fs::create_dir_all(c.paths.upper())?;
        Ok(d.images.diff(&c.paths.upper(), &layers)?)
    })
    .await?;
    let out: Vec<ChangeItem> = list
        .iter()
        .map(|ch| ChangeItem {
            path: ch.path().to_string(),
            kind: ch.kind(),
        })
        .collect();
    Ok(json(200, &out))
}

/// `POST /commit?container=...`: the container's upper dir as a new image layer.
pub async fn commit(
    State(d): St,
    RawQuery(raw): RawQuery,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let c = d.find(q.get("container").unwrap_or(""))?;
    let body_cfg: berth_api::container::Config = json_body(&body)?;
    let rec = c.snapshot();
    let reference = q.get("repo").filter(|r| !r.is_empty()).map(|r| {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{r}:{t}"),
            None => r.to_string(),
        }
    });
    let changes = crate::util::query_all(raw.as_deref(), "changes");
    // The recorded config: the container's, overridden by what the request body sets.
    let mut cfg = rec.config.clone();
    if body_cfg.cmd.is_some() {
        cfg.cmd = body_cfg.cmd.clone();
    }
    if body_cfg.entrypoint.is_some() {
        cfg.entrypoint = body_cfg.entrypoint.clone();
    }
    if body_cfg.env.is_some() {
        cfg.env = body_cfg.env.clone();
    }
    let image_cfg = serde_json::json!({
        "User": cfg.user, "Env": cfg.env, "Cmd": cfg.cmd, "Entrypoint": cfg.entrypoint,
        "WorkingDir": cfg.working_dir, "Labels": cfg.labels, "StopSignal": cfg.stop_signal,
        "ExposedPorts": cfg.exposed_ports, "Volumes": cfg.volumes,
    });
    let oci_cfg: oci_spec::image::Config = serde_json::from_value(image_cfg)
        .map_err(|e| Error::internal(format!("commit config: {e}")))?;
    // How events name the new tag: `repo:tag`, `latest` by default.
    let tag_name = reference.as_deref().and_then(|r| {
        berth_image::reference::Reference::parse(r)
            .ok()
            .map(|r| r.with_default_tag().familiar())
    });
    let comment = q.get("comment").unwrap_or("").to_string();
    let opts = berth_image::CommitOptions {
        reference,
        comment: q.get("comment").filter(|s| !s.is_empty()).map(String::from),
        author: q.get("author").filter(|s| !s.is_empty()).map(String::from),
        changes,
        config: Some(oci_cfg),
        healthcheck: cfg
            .healthcheck
            .as_ref()
            .and_then(|h| serde_json::to_value(h).ok()),
        ids: d.remap_of(&rec).map(|r| r.ids.clone()),
        ..Default::default()
    };
    let pause = q.get("pause").is_none_or(|p| p != "0" && p != "false")
        && rec.state.status == crate::container::status::RUNNING;
    if pause {
        let _ = crate::container::lifecycle::pause(&d, &c, true);
    }
    let parent = rec.image_id.clone();
    let res = blocking(&d, &c, move |d, c| {
        // A container that never started commits as its image with an empty layer.
        std::fs::create_dir_all(c.paths.upper())?;
        Ok(d.images.commit(&c.paths.upper(), Some(&parent), &opts)?)
    })
    .await;
    if pause {
        let _ = crate::container::lifecycle::pause(&d, &c, false);
    }
    let img = res?;
    d.events.image_event(&d.images, &img.id, &img.id, "create");
    if let Some(tag) = &tag_name {
        d.events.image_event(&d.images, &img.id, tag, "tag");
    }
    d.container_event(
        &c,
        "commit",
        &[
            ("comment", comment),
            ("imageID", img.id.clone()),
            ("imageRef", tag_name.unwrap_or_default()),
        ],
    );
    Ok(json(201, &serde_json::json!({ "Id": img.id })))
}

/// `GET /containers/{id}/top`: host `ps` output restricted to the container's processes.
pub async fn top(State(d): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let c = d.find(&id)?;
    let r = c.snapshot();
    if !r.is_running() {
        return Err(Error::conflict(format!(
            "Container {} is not running",
            r.id
        )));
    }
    let pids = berth_runtime::Runtime::new(&d.runtime_root)
        .pids(&r.id)
        .map_err(|e| Error::internal(e.to_string()))?;
    let args = q
        .get("ps_args")
        .filter(|a| !a.is_empty())
        .unwrap_or("-ef")
        .to_string();
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .await
        .map_err(|e| Error::internal(format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::internal("Couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may contain spaces.
        let mut row: Vec<String> = fields[..titles.len().saturating_sub(1).min(fields.len())]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if fields.len() >= titles.len() {
            row.push(fields[titles.len() - 1..].join(" "));
        }
        processes.push(row);
    }
    d.container_event(&c, "top", &[]);
    Ok(json(200, &TopResponse { titles, processes }))
}
