//! Swarm-mode routes: `/swarm` (init, join, leave, update, unlock), and the manager's
//! `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`. Adapters over the daemon's swarm
//! node (berth-swarm): outside a swarm or on a worker they answer as dockerd does (503 with
//! its messages), never 404, since clients probe them to learn the swarm state.

use super::St;
use crate::error::{Error, Result};
use crate::util::{json, json_body, Query};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use berth_api::swarm as api;
use berth_swarm::control::LogSource;
use berth_swarm::manager::Manager;
use berth_swarm::proto::LogOptions;
use berth_swarm::view::Filters;
use std::sync::Arc;

impl From<berth_swarm::error::Error> for Error {
    fn from(e: berth_swarm::error::Error) -> Error {
        Error(berth_api::ApiError::new(e.status, e.message))
    }
}

fn unavailable(message: &str) -> Error {
    Error(berth_api::ApiError::new(503, message))
}

/// dockerd's answer to manager requests on a worker.
pub(crate) const WORKER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

fn node(d: &St) -> Result<Arc<berth_swarm::cluster::Cluster>> {
    d.0.swarm
        .get()
        .cloned()
        .ok_or_else(|| Error::internal("swarm mode is not set up"))
}

/// The manager of this node, or dockerd's 503 for a worker or a node outside a swarm.
fn manager(d: &St) -> Result<Arc<Manager>> {
    let n = node(d)?;
    let s = n.summary();
    match s.manager {
        Some(m) => Ok(m),
        None if s.state == "active" => Err(unavailable(WORKER)),
        None if s.state == "locked" => Err(unavailable(berth_swarm::cluster::LOCKED)),
        None => Err(unavailable(berth_swarm::error::NOT_MANAGER)),
    }
}

fn filters(q: &Query) -> Result<Filters> {
    Ok(q.filters()?.into_iter().collect())
}

fn version(q: &Query) -> Result<u64> {
    let v = q
        .get("version")
        .ok_or_else(|| Error::bad_request("invalid swarm version ''"))?;
    v.parse::<u64>()
        .map_err(|_| Error::bad_request(format!("invalid swarm version '{v}'")))
}

fn ok_empty() -> Response {
    axum::http::StatusCode::OK.into_response()
}

/// `/swarm` and everything under it.
pub async fn swarm(
    d: St,
    method: Method,
    uri: Uri,
    RawQuery(raw): RawQuery,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let sub = uri.path().strip_prefix("/swarm").unwrap_or_default();
    let n = node(&d)?;
    match (method, sub) {
        (Method::GET, "" | "/") => Ok(json(200, &manager(&d)?.swarm()?)),
        (Method::POST, "/init") => {
            let req: api::SwarmInitRequest = json_body(&body)?;
            let id = n.init(req).await?;
            Ok(json(200, &id))
        }
        (Method::POST, "/join") => {
            let req: api::SwarmJoinRequest = json_body(&body)?;
            n.join(req).await?;
            Ok(ok_empty())
        }
        (Method::POST, "/leave") => {
            n.leave(q.bool("force")).await?;
            crate::swarm_net::detach_all(&d.0).await;
            Ok(ok_empty())
        }
        (Method::POST, "/update") => {
            let m = manager(&d)?;
            let spec: api::SwarmSpec = json_body(&body)?;
            m.update_swarm(
                version(&q)?,
                spec,
                q.bool("rotateWorkerToken"),
                q.bool("rotateManagerToken"),
                q.bool("rotateManagerUnlockKey"),
            )
            .await?;
            Ok(ok_empty())
        }
        (Method::GET, "/unlockkey") => Ok(json(
            200,
            &api::UnlockKeyResponse {
                unlock_key: manager(&d)?.unlock_key()?,
            },
        )),
        (Method::POST, "/unlock") => {
            if n.summary().state != "locked" {
                // dockerd: an active manager is "not locked"; others get its 503s.
                manager(&d)?;
                return Err(Error(berth_api::ApiError::new(409, "swarm is not locked")));
            }
            let req: api::SwarmUnlockRequest = json_body(&body)?;
            n.unlock(&req.unlock_key).await?;
            Ok(ok_empty())
        }
        _ => Err(Error::not_found(format!("page not found: {}", uri.path()))),
    }
}

/// The id part of `/<kind>/<id>[/<action>]`.
fn parts(path: &str) -> (Option<&str>, Option<&str>) {
    let mut it = path.trim_start_matches('/').splitn(3, '/');
    let _kind = it.next();
    (it.next().filter(|s| !s.is_empty()), it.next())
}

/// `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs` and their sub-routes.
/// `GET /services/{id}/logs`, `GET /tasks/{id}/logs`: the tasks' logs from every node that
/// runs them, each line after its task's `com.docker.swarm.*` attributes with `details`
/// (which the docker CLI always asks for).
async fn logs(d: &St, source: LogSource<'_>, q: &Query) -> Result<Response> {
    let options = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        follow: q.bool("follow"),
        timestamps: q.bool("timestamps"),
        details: q.bool("details"),
        tail: q.get("tail").and_then(|t| t.parse().ok()),
        since: q.unix_time("since")?.filter(|n| *n != 0),
    };
    if !options.stdout && !options.stderr {
        return Err(Error::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let (rx, tty) = node(d)?.logs(source, options).await?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, ctype)],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// The `X-Registry-Auth` of a service create or update (`--with-registry-auth`), as
/// swarmkit keeps it: checked, and stored as sent. None without one.
fn registry_auth(headers: &HeaderMap) -> Result<Option<api::PullOptions>> {
    crate::registry_auth::from_headers(headers)?;
    Ok(headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(|v| api::PullOptions {
            registry_auth: v.to_string(),
        }))
}

/// Puts the pull credentials in a spec (replacing any the body carried: they are not part
/// of Docker's API).
fn set_pull_options(spec: &mut api::ServiceSpec, auth: Option<api::PullOptions>) {
    if let Some(cs) = spec.task_template.container_spec.as_mut() {
        cs.pull_options = auth;
    }
}

fn pull_options(spec: Option<&api::ServiceSpec>) -> Option<api::PullOptions> {
    spec.and_then(|s| s.task_template.container_spec.as_ref())
        .and_then(|cs| cs.pull_options.clone())
}

/// A service as the API shows it: without the credentials its nodes pull with.
fn hide_auth(mut s: api::Service) -> api::Service {
    set_pull_options(&mut s.spec, None);
    if let Some(p) = s.previous_spec.as_mut() {
        set_pull_options(p, None);
    }
    s
}

/// A task as the API shows it: without the credentials its node pulls with.
fn hide_task_auth(mut t: api::Task) -> api::Task {
    if let Some(cs) = t.spec.container_spec.as_mut() {
        cs.pull_options = None;
    }
    t
}

pub async fn cluster(
    d: St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let q = Query::parse(raw.as_deref());
    let path = uri.path().to_string();
    let m = manager(&d)?;
    let kind = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let (id, action) = parts(&path);
    match (kind, method, id, action) {
        ("nodes", Method::GET, None, None) => Ok(json(200, &m.nodes(&filters(&q)?)?)),
        ("nodes", Method::GET, Some(id), None) => Ok(json(200, &m.node(id)?)),
        ("nodes", Method::POST, Some(id), Some("update")) => {
            let spec: api::NodeSpec = json_body(&body)?;
            m.update_node(id, version(&q)?, spec).await?;
            Ok(ok_empty())
        }
        ("nodes", Method::DELETE, Some(id), None) => {
            m.remove_node(id, q.bool("force")).await?;
            Ok(ok_empty())
        }
        ("services", Method::GET, None, None) => {
            let all: Vec<api::Service> = m
                .services(&filters(&q)?, q.bool("status"))?
                .into_iter()
                .map(hide_auth)
                .collect();
            Ok(json(200, &all))
        }
        ("services", Method::POST, Some("create"), None) => {
            let mut spec: api::ServiceSpec = json_body(&body)?;
            set_pull_options(&mut spec, registry_auth(&headers)?);
            if spec.name.is_empty() {
                let taken = m.services(&Filters::new(), false)?;
                spec.name = crate::names::generate(|n| taken.iter().any(|s| s.spec.name == n));
            }
            let id = m.create_service(spec).await?;
            Ok(json(
                201,
                &api::ServiceCreateResponse { id, warnings: None },
            ))
        }
        ("services", Method::GET, Some(id), None) => Ok(json(200, &hide_auth(m.service(id)?))),
        ("services", Method::POST, Some(id), Some("update")) => {
            let mut spec: api::ServiceSpec = json_body(&body)?;
            let rollback = q.get("rollback") == Some("previous");
            // New credentials, else those of the current (or previous) spec, as dockerd.
            let auth = match registry_auth(&headers)? {
                Some(a) => Some(a),
                None => {
                    let cur = m.service(id)?;
                    match q.get("registryAuthFrom").unwrap_or("") {
                        "" | "spec" => pull_options(Some(&cur.spec)),
                        "previous-spec" => pull_options(cur.previous_spec.as_ref()),
                        other => {
                            return Err(Error::bad_request(format!(
                                "unsupported registryAuthFrom value {other:?}"
                            )))
                        }
                    }
                }
            };
            set_pull_options(&mut spec, auth);
            m.update_service(id, version(&q)?, spec, rollback).await?;
            Ok(json(200, &api::ServiceUpdateResponse { warnings: None }))
        }
        ("services", Method::POST, Some(id), Some("rebalance")) => {
            let moved = m.rebalance_service(id).await?;
            Ok(json(200, &serde_json::json!({ "Moved": moved })))
        }
        ("services", Method::DELETE, Some(id), None) => {
            m.remove_service(id).await?;
            Ok(ok_empty())
        }
        ("services" | "tasks", Method::GET, Some(id), Some("logs")) => {
            let source = if kind == "services" {
                LogSource::Service(id)
            } else {
                LogSource::Task(id)
            };
            logs(&d, source, &q).await
        }
        ("tasks", Method::GET, None, None) => {
            let all: Vec<api::Task> = m
                .tasks(&filters(&q)?)?
                .into_iter()
                .map(hide_task_auth)
                .collect();
            Ok(json(200, &all))
        }
        ("tasks", Method::GET, Some(id), None) => Ok(json(200, &hide_task_auth(m.task(id)?))),
        ("secrets", Method::GET, None, None) => Ok(json(200, &m.secrets(&filters(&q)?)?)),
        ("secrets", Method::POST, Some("create"), None) => {
            let spec: api::SecretSpec = json_body(&body)?;
            let id = m.create_secret(spec).await?;
            Ok(json(201, &api::IdResponse { id }))
        }
        ("secrets", Method::GET, Some(id), None) => Ok(json(200, &m.secret(id)?)),
        ("secrets", Method::POST, Some(id), Some("update")) => {
            let spec: api::SecretSpec = json_body(&body)?;
            m.update_secret(id, version(&q)?, spec).await?;
            Ok(ok_empty())
        }
        ("secrets", Method::DELETE, Some(id), None) => {
            m.remove_secret(id).await?;
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        }
        ("configs", Method::GET, None, None) => Ok(json(200, &m.configs(&filters(&q)?)?)),
        ("configs", Method::POST, Some("create"), None) => {
            let spec: api::ConfigSpec = json_body(&body)?;
            let id = m.create_config(spec).await?;
            Ok(json(201, &api::IdResponse { id }))
        }
        ("configs", Method::GET, Some(id), None) => Ok(json(200, &m.config(id)?)),
        ("configs", Method::POST, Some(id), Some("update")) => {
            let spec: api::ConfigSpec = json_body(&body)?;
            m.update_config(id, version(&q)?, spec).await?;
            Ok(ok_empty())
        }
        ("configs", Method::DELETE, Some(id), None) => {
            m.remove_config(id).await?;
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(Error::not_found(format!("page not found: {path}"))),
    }
}

/// `PUT /volumes/{name}` updates cluster volumes, which berth's swarm does not have.
pub async fn volume_update() -> Result<Response> {
    Err(unavailable(
        "volume update only valid for cluster volumes, but swarm is unavailable",
    ))
}

/// The `Swarm` header of `/_ping`: `inactive`, or `active/manager` / `active/worker` (the
/// docker CLI shows its swarm commands by it).
pub fn ping_header(d: &crate::state::Daemon) -> String {
    match d.swarm.get().map(|s| s.summary()) {
        Some(s) if s.state == "active" => {
            if s.manager.is_some() {
                "active/manager".to_string()
            } else {
                "active/worker".to_string()
            }
        }
        Some(s) => s.state,
        None => "inactive".to_string(),
    }
}

/// `/info`'s `Swarm` section.
pub fn info(d: &crate::state::Daemon) -> api::SwarmInfo {
    let Some(s) = d.swarm.get().map(|s| s.summary()) else {
        return api::SwarmInfo::default();
    };
    let state = s.state.parse().unwrap_or_default();
    let mut out = api::SwarmInfo {
        node_id: s.node_id.clone(),
        node_addr: s
            .node_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default(),
        local_node_state: state,
        control_available: s.manager.is_some(),
        error: s.error.clone(),
        remote_managers: (s.state == "active").then(|| {
            s.managers
                .iter()
                .map(|a| api::PeerNode {
                    node_id: String::new(),
                    addr: a.clone(),
                })
                .collect()
        }),
        ..Default::default()
    };
    if let Some(m) = &s.manager {
        let (nodes, managers, cluster) = m.counts();
        out.nodes = nodes;
        out.managers = managers;
        out.cluster = cluster;
        out.remote_managers = Some(m.remote_managers());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_with(auth: Option<&str>) -> api::Service {
        let mut spec = api::ServiceSpec::default();
        spec.task_template.container_spec = Some(api::ContainerSpec {
            image: "reg/app:1".into(),
            ..Default::default()
        });
        set_pull_options(
            &mut spec,
            auth.map(|a| api::PullOptions {
                registry_auth: a.to_string(),
            }),
        );
        api::Service {
            spec: spec.clone(),
            previous_spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn registry_auth_is_kept_from_the_header_and_never_shown() {
        let auth = berth_distribution::AuthConfig {
            username: "testuser".into(),
            password: "s3cret-pass".into(),
            ..Default::default()
        }
        .encode();
        let mut h = HeaderMap::new();
        assert_eq!(registry_auth(&h).unwrap(), None);
        h.insert("X-Registry-Auth", auth.parse().unwrap());
        let got = registry_auth(&h).unwrap().unwrap();
        assert_eq!(got.registry_auth, auth);
        h.insert("X-Registry-Auth", "%%%".parse().unwrap());
        assert_eq!(registry_auth(&h).unwrap_err().0.status, 400);
        // Stored in the spec (replacing one the body carried), read back for updates.
        let s = service_with(Some(&auth));
        assert_eq!(pull_options(Some(&s.spec)).unwrap().registry_auth, auth);
        // Inspect shows neither the spec's nor the previous spec's.
        let shown = serde_json::to_string(&hide_auth(s)).unwrap();
        assert!(!shown.contains(&auth), "{shown}");
        assert!(!shown.contains("PullOptions"), "{shown}");
        assert!(shown.contains("reg/app:1"), "{shown}");
        let t = api::Task {
            spec: service_with(Some(&auth)).spec.task_template,
            ..Default::default()
        };
        let shown = serde_json::to_string(&hide_task_auth(t)).unwrap();
        assert!(!shown.contains(&auth), "{shown}");
        // Nor does the spec's Debug print it.
        let debug = format!("{:?}", service_with(Some(&auth)));
        assert!(!debug.contains(&auth), "{debug}");
    }
}
