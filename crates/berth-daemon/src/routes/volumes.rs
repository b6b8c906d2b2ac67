//! Volume endpoints: list, create, inspect, remove and prune. They read no container record (which
//! containers use a volume is the service's to say) and touch no volume file but the data dir the
//! service hands back to delete.

use super::St;
use crate::error::{Error, Result};
use crate::util::RequestVersion;
use crate::util::{json, json_body, no_content, Query};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use berth_api::version::ApiVersion;
use berth_api::volume::{CreateOptions, ListResponse, PruneResponse};
use berth_volume::{Meta, Request};
use std::collections::{BTreeMap, HashMap};

/// `label=key` or `label=key=value`.
fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

fn truthy(key: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "true" | "True" | "TRUE" | "t" => Ok(true),
        "0" | "false" | "False" | "FALSE" | "f" => Ok(false),
        other => Err(Error::bad_request(format!(
            "invalid filter '{key}={other}'"
        ))),
    }
}

fn matches(m: &Meta, in_use: bool, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| m.name.contains(v.as_str())),
            "driver" => vals.contains(&m.driver),
            "label" => vals.iter().all(|v| label_matches(&m.labels, v)),
            "label!" => !vals.iter().any(|v| label_matches(&m.labels, v)),
            "dangling" => {
                let mut want = Vec::new();
                for v in vals {
                    want.push(truthy(k, v)?);
                }
                want.contains(&!in_use)
            }
            other => return Err(Error::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let f = Query::parse(q.as_deref()).filters()?;
    let mut out = Vec::new();
    for (m, in_use) in d.volumes.list() {
        if matches(&m, in_use, &f)? {
            out.push(d.volumes.view(&m));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(json(
        200,
        &ListResponse {
            volumes: out,
            warnings: Vec::new(),
        },
    ))
}

/// `POST /volumes/create`. A volume made without a name is anonymous from API 1.42 on (as
/// dockerd marks it), so that the default prune removes it.
pub async fn create(
    State(d): St,
    version: Option<axum::Extension<RequestVersion>>,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let o: CreateOptions = json_body(&body)?;
    let mut labels = o.labels.unwrap_or_default();
    if o.name.is_empty() && version.is_none_or(|v| v.0 .0 >= ApiVersion(1, 42)) {
        labels.insert(berth_volume::ANONYMOUS_LABEL.into(), String::new());
    }
    let dd = d.clone();
    let v = tokio::task::spawn_blocking(move || {
        dd.volumes.create(Request {
            name: (!o.name.is_empty()).then_some(o.name),
            driver: o.driver,
            options: o.driver_opts.unwrap_or_default(),
            labels,
        })
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    d.events.volume_event("create", &v.name);
    Ok(json(201, &v))
}

pub async fn inspect(State(d): St, Path(name): Path<String>) -> Result<Response> {
    Ok(json(200, &d.volumes.get(&name)?))
}

pub async fn remove(
    State(d): St,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let force = Query::parse(q.as_deref()).bool("force");
    if let Some(dir) = d.volumes.remove(&name, force)? {
        d.events.volume_event("destroy", &name);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir));
    }
    Ok(no_content())
}

/// `POST /volumes/prune`: unused anonymous volumes, or every unused one with `all=true` (the
/// default before API 1.42).
pub async fn prune(
    State(d): St,
    version: Option<axum::Extension<RequestVersion>>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let mut f = Query::parse(q.as_deref()).filters()?;
    let asked = match f.remove("all") {
        Some(vals) => vals
            .iter()
            .map(|v| truthy("all", v))
            .collect::<Result<Vec<_>>>()?
            .contains(&true),
        None => false,
    };
    let all = asked || version.is_some_and(|v| v.0 .0 < ApiVersion(1, 42));
    for k in f.keys() {
        if !matches!(k.as_str(), "label" | "label!") {
            return Err(Error::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let dd = d.clone();
    let reply = tokio::task::spawn_blocking(move || -> Result<PruneResponse> {
        let d = dd;
        let mut out = PruneResponse::default();
        let mut names: Vec<Meta> = d
            .volumes
            .list()
            .into_iter()
            .filter(|(m, in_use)| !in_use && (all || m.is_anonymous()))
            .map(|(m, _)| m)
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for m in names {
            if !matches(&m, false, &f)? {
                continue;
            }
            let size = d.volumes.size(&m.name);
            // One that a new container took meanwhile is in use now and stays.
            if let Ok(Some(dir)) = d.volumes.remove(&m.name, false) {
                d.events.volume_event("destroy", &m.name);
                let _ = std::fs::remove_dir_all(dir);
                out.volumes_deleted.push(m.name.clone());
                out.space_reclaimed += size;
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    d.events.emit(
        "volume",
        "prune",
        "",
        std::collections::BTreeMap::from([(
            "reclaimed".to_string(),
            reply.space_reclaimed.to_string(),
        )]),
    );
    Ok(json(200, &reply))
}
