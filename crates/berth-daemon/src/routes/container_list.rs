//! `GET /containers/json` (`docker ps`): the list's filters, a container's summary with its
//! `Status` column, and the size of a container's upper dir (also shown by inspect and
//! prune). It reads records only; it must not change a container.

use super::St;
use crate::container::{health, status, Record};
use crate::error::{Error, Result};
use crate::util::{json, Query};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use berth_api::container::{health_status, Summary, SummaryHostConfig};
use berth_api::timefmt;
use std::time::SystemTime;

fn since(ts: &str) -> Option<std::time::Duration> {
    timefmt::parse(ts).and_then(|t| SystemTime::now().duration_since(t).ok())
}

/// The `Status` column of `docker ps`.
fn status_text(r: &Record) -> String {
    let ago = |ts: &str| since(ts).map(timefmt::human_duration).unwrap_or_default();
    match r.state.status.as_str() {
        status::RUNNING => match r.state.health.as_ref().map(|h| h.status.as_str()) {
            Some(health_status::STARTING) => {
                format!("Up {} (health: starting)", ago(&r.state.started_at))
            }
            Some(h) => format!("Up {} ({h})", ago(&r.state.started_at)),
            None => format!("Up {}", ago(&r.state.started_at)),
        },
        status::PAUSED => format!("Up {} (Paused)", ago(&r.state.started_at)),
        status::RESTARTING => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            ago(&r.state.finished_at)
        ),
        status::EXITED => {
            if r.state.finished_at == timefmt::ZERO {
                "Created".into()
            } else {
                format!(
                    "Exited ({}) {} ago",
                    r.state.exit_code,
                    ago(&r.state.finished_at)
                )
            }
        }
        status::CREATED => "Created".into(),
        other => other.to_string(),
    }
}

fn created_unix(r: &Record) -> i64 {
    timefmt::parse(&r.created)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn command_line(r: &Record) -> String {
    std::iter::once(r.path.clone())
        .chain(r.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `r` passes the `docker ps --filter` set.
fn matches(
    r: &Record,
    f: &std::collections::HashMap<String, Vec<String>>,
    d: &crate::state::Daemon,
) -> Result<bool> {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "status" => vals.contains(&r.state.status),
            "name" => vals
                .iter()
                .any(|v| r.bare_name().contains(v.trim_start_matches('/'))),
            "id" => vals.iter().any(|v| r.id.starts_with(v)),
            "network" => vals.iter().any(|v| {
                r.net
                    .endpoints
                    .iter()
                    .any(|(n, e)| n == v || (!v.is_empty() && e.network_id.starts_with(v.as_str())))
            }),
            "label" => vals.iter().all(|v| {
                let labels = r.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v),
                }
            }),
            "exited" => {
                r.state.status == status::EXITED
                    && vals
                        .iter()
                        .any(|v| v.parse::<i64>().ok() == Some(r.state.exit_code))
            }
            "health" => vals.iter().any(|v| v == health::filter_status(r)),
            "ancestor" => vals
                .iter()
                .any(|v| r.image == *v || d.images.resolve_id(v).is_ok_and(|id| id == r.image_id)),
            "before" | "since" => {
                let other = d.find(&vals[0])?.snapshot();
                if k == "before" {
                    r.created < other.created
                } else {
                    r.created > other.created
                }
            }
            // A volume's name, a bind's source, or a mount's destination.
            "volume" => vals.iter().any(|v| {
                r.mounts.iter().any(|m| {
                    m.destination == *v
                        || (if m.name.is_empty() {
                            m.source == *v
                        } else {
                            m.name == *v
                        })
                })
            }),
            "publish" | "expose" => {
                let have: Vec<&String> = if k == "publish" {
                    r.host_config
                        .port_bindings
                        .iter()
                        .flat_map(|m| m.keys())
                        .collect()
                } else {
                    r.config
                        .exposed_ports
                        .iter()
                        .flat_map(|m| m.keys())
                        .collect()
                };
                let want = port_filter(k, vals)?;
                have.iter().any(|p| want.contains(&port_key(p)))
            }
            // A swarm task's container is one the swarm executor made (not any with its
            // label), as moby's `Managed`.
            "is-task" => match vals[0].as_str() {
                "true" => r.managed,
                "false" => !r.managed,
                v => return Err(Error::bad_request(format!("Invalid filter 'is-task={v}'"))),
            },
            "isolation" => {
                let mode = match r.host_config.isolation.to_lowercase() {
                    m if m.is_empty() => "default".to_string(),
                    m => m,
                };
                vals.contains(&mode)
            }
            other => return Err(Error::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `80` or `80/udp` as the `port/proto` key of port maps (tcp when none is given).
fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

/// The ports a `publish` or `expose` filter names: `port[/proto]` or `start-end[/proto]`.
fn port_filter(key: &str, vals: &[String]) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for v in vals {
        if v.contains(':') {
            return Err(Error::bad_request(format!(
                "filter for '{key}' should not contain ':': {v}"
            )));
        }
        let (ports, proto) = v.split_once('/').unwrap_or((v, "tcp"));
        let bad = || {
            Error::bad_request(format!(
                "error while looking up for {key} {v}: invalid port range: {ports}"
            ))
        };
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b {
            return Err(bad());
        }
        out.extend((a..=b).map(|p| format!("{p}/{proto}")));
    }
    Ok(out)
}

/// `GET /containers/json`.
pub async fn list(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let all = q.bool("all");
    let filters = q.filters()?;
    let limit = q.int("limit")?.filter(|l| *l > 0);
    let health_values = [
        health_status::STARTING,
        health_status::HEALTHY,
        health_status::UNHEALTHY,
        health_status::NONE,
    ];
    if let Some(bad) = filters
        .get("health")
        .and_then(|vals| vals.iter().find(|v| !health_values.contains(&v.as_str())))
    {
        return Err(Error::bad_request(format!(
            "Unrecognised filter value for health: {bad}"
        )));
    }
    // Sorted as handles (a record is large: moving records while sorting a thousand of them
    // was a fifth of the list's time), each copied once, in order.
    let mut cs = d.all();
    cs.sort_by_cached_key(|c| std::cmp::Reverse(c.rec().created.clone()));
    let mut out = Vec::new();
    for c in cs {
        let r = c.snapshot();
        let listed_by_default = r.is_running();
        if !all
            && limit.is_none()
            && !listed_by_default
            && !filters.contains_key("status")
            && !filters.contains_key("exited")
        {
            continue;
        }
        if !matches(&r, &filters, &d)? {
            continue;
        }
        out.push(summary(&d, &r, q.bool("size")));
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(json(200, &out))
}

/// A container as `GET /containers/json` lists it (with its sizes when asked).
pub fn summary(d: &crate::state::Daemon, r: &Record, with_size: bool) -> Summary {
    let size = if with_size {
        Some(dir_size(&d.paths(&r.id).upper()) as i64)
    } else {
        None
    };
    Summary {
        id: r.id.clone(),
        names: vec![r.name.clone()],
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        command: command_line(r),
        created: created_unix(r),
        ports: crate::container::network::ports::summary_ports(d, r),
        size_rw: size,
        size_root_fs: size.map(|s| {
            s + d
                .images
                .summary(&r.image_id)
                .map(|i| i.size as i64)
                .unwrap_or(0)
        }),
        labels: r.config.labels.clone().unwrap_or_default(),
        state: r.state.status.clone(),
        status: status_text(r),
        host_config: SummaryHostConfig {
            network_mode: r.host_config.network_mode.clone(),
        },
        network_settings: serde_json::json!({
            "Networks": crate::container::network::view::networks(d, r)
        }),
        mounts: crate::container::volumes::view(d, r),
    }
}

/// Bytes under `p` (a container's upper dir). The walk blocks, so it runs with tokio told so.
pub(super) fn dir_size(p: &std::path::Path) -> u64 {
    tokio::task::block_in_place(|| walk_size(p))
}

fn walk_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}
