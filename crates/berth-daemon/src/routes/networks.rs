//! Network endpoints: create, list, inspect, remove, prune, connect and disconnect. They must not
//! change a container's endpoints themselves: connect and disconnect go through
//! `container::network::endpoint`. On a swarm manager the swarm-scoped networks are listed,
//! made and removed here too (through the manager) and their node-local bridges are not
//! shown; a worker shows a bridge it has as the swarm network it realises.

use super::St;
use crate::container::network::{endpoint, Network};
use crate::error::{Error, Result};
use crate::prune::{label_matches, PruneFilter};
use crate::state::Daemon;
use crate::swarm_net;
use crate::util::{json, json_body, no_content, Query};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use berth_api::network::{
    ConnectRequest, CreateRequest, CreateResponse, DisconnectRequest, Ipam, IpamConfig,
    Network as ApiNetwork, NetworkContainer, PruneResponse,
};
use berth_swarm::manager::Manager;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The network resource Docker returns, with the running containers on it.
fn view(d: &Daemon, n: &Network) -> ApiNetwork {
    let r = &n.rec;
    let mut containers = BTreeMap::new();
    for c in d.all() {
        let cr = c.snapshot();
        if !cr.is_running() {
            continue;
        }
        let eps = crate::container::network::endpoint::endpoints(d, &cr);
        if let Some(ep) = eps.values().find(|e| e.network_id == r.id) {
            containers.insert(
                cr.id.clone(),
                NetworkContainer {
                    name: cr.bare_name().to_string(),
                    endpoint_id: ep.endpoint_id.clone(),
                    mac_address: ep.mac.clone(),
                    ipv4_address: if ep.ip.is_empty() {
                        String::new()
                    } else {
                        format!("{}/{}", ep.ip, ep.prefix)
                    },
                    ipv6_address: if ep.ip6.is_empty() {
                        String::new()
                    } else {
                        format!("{}/{}", ep.ip6, ep.prefix6)
                    },
                },
            );
        }
    }
    // `--aux-address` entries go with the configuration whose subnet holds them.
    let aux = |v6: bool| {
        let m: BTreeMap<String, String> = r
            .aux_addresses
            .iter()
            .filter(|(_, a)| a.contains(':') == v6)
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        (!m.is_empty()).then_some(m)
    };
    let mut config = Vec::new();
    if r.is_bridge() {
        if r.enable_ipv4 {
            config.push(IpamConfig {
                subnet: r.subnet.clone(),
                ip_range: r.ip_range.clone(),
                gateway: r.gateway.clone(),
                auxiliary_addresses: aux(false),
            });
        }
        if !r.subnet6.is_empty() {
            config.push(IpamConfig {
                subnet: r.subnet6.clone(),
                ip_range: r.ip_range6.clone(),
                gateway: r.gateway6.clone(),
                auxiliary_addresses: aux(true),
            });
        }
    }
    let mut out = ApiNetwork {
        name: r.name.clone(),
        id: r.id.clone(),
        created: r.created.clone(),
        scope: "local".into(),
        driver: r.driver.clone(),
        enable_ipv4: r.enable_ipv4,
        enable_ipv6: r.enable_ipv6,
        ipam: Ipam {
            driver: "default".into(),
            config: Some(config),
            options: (!r.ipam_options.is_empty()).then(|| r.ipam_options.clone()),
        },
        internal: r.internal,
        attachable: r.attachable,
        ingress: false,
        config_from: BTreeMap::from([("Network".to_string(), String::new())]),
        config_only: false,
        containers,
        options: r.options.clone(),
        labels: r.labels.clone(),
    };
    swarm_net::swarm_view(&mut out);
    out
}

/// Whether a container (of any state) is connected to the network.
fn connected(d: &Daemon, n: &Network) -> bool {
    d.all().iter().any(|c| {
        c.rec()
            .net
            .endpoints
            .values()
            .any(|e| e.network_id == n.rec.id)
    })
}

fn matches(d: &Daemon, n: &Network, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    let r = &n.rec;
    for (k, vals) in f {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| r.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "driver" => vals.contains(&r.driver),
            "scope" => vals.iter().any(|v| v == "local"),
            "label" => vals.iter().all(|v| label_matches(&r.labels, v)),
            "type" => vals.iter().any(|v| match v.as_str() {
                "custom" => !r.predefined,
                "builtin" => r.predefined,
                _ => false,
            }),
            "dangling" => {
                let want = vals.iter().any(|v| v == "true" || v == "1");
                want == (!r.predefined && !connected(d, n))
            }
            other => return Err(Error::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A swarm network (as a manager shows it) against the list filters.
fn swarm_matches(n: &ApiNetwork, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    for (k, vals) in f {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.contains(&n.driver),
            "scope" => vals.iter().any(|v| v == "swarm"),
            "label" => vals.iter().all(|v| label_matches(&n.labels, v)),
            "type" => vals.iter().any(|v| v == "custom"),
            // A swarm network belongs to the cluster, not to this node's containers.
            "dangling" => !vals.iter().any(|v| v == "true" || v == "1"),
            other => return Err(Error::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// This node's swarm manager, if it is one.
fn swarm_manager(d: &Daemon) -> Option<Arc<Manager>> {
    d.swarm.get().and_then(|s| s.summary().manager)
}

/// The local networks the API shows: on a manager the realisations of swarm networks are
/// not listed (the swarm networks themselves are).
fn locals(d: &Daemon, manager: bool) -> Vec<Arc<Network>> {
    d.net
        .all()
        .into_iter()
        .filter(|n| !manager || swarm_net::realises(&n.rec).is_none())
        .collect()
}

/// A network found by id, name or unique id prefix among the local and swarm ones.
enum Found {
    Local(Arc<Network>),
    Swarm(Box<ApiNetwork>),
}

/// dockerd's lookup across scopes: full id, then full name, then unique id prefix; a name or
/// prefix that matches several is ambiguous.
fn find(d: &Daemon, key: &str) -> Result<Found> {
    let Some(m) = swarm_manager(d) else {
        // Elsewhere a swarm network is known by the id a realisation carries too.
        return match d.net.find(key) {
            Ok(n) => Ok(Found::Local(n)),
            Err(e) => {
                let hits: Vec<Arc<Network>> = d
                    .net
                    .all()
                    .into_iter()
                    .filter(|n| {
                        swarm_net::realises(&n.rec)
                            .is_some_and(|id| !key.is_empty() && id.starts_with(key))
                    })
                    .collect();
                match <[_; 1]>::try_from(hits) {
                    Ok([n]) => Ok(Found::Local(n)),
                    Err(_) => Err(e.into()),
                }
            }
        };
    };
    let local = locals(d, true);
    let swarm = m.networks();
    if let Some(n) = local.iter().find(|n| n.rec.id == key) {
        return Ok(Found::Local(n.clone()));
    }
    if let Some(n) = swarm.iter().find(|n| n.id == key) {
        return Ok(Found::Swarm(Box::new(n.clone())));
    }
    let pick = |by_local: &dyn Fn(&Network) -> bool,
                by_swarm: &dyn Fn(&ApiNetwork) -> bool,
                how: &str|
     -> Result<Option<Found>> {
        let mut hits: Vec<Found> = local
            .iter()
            .filter(|n| by_local(n))
            .map(|n| Found::Local(n.clone()))
            .collect();
        hits.extend(
            swarm
                .iter()
                .filter(|n| by_swarm(n))
                .map(|n| Found::Swarm(Box::new(n.clone()))),
        );
        match hits.len() {
            0 => Ok(None),
            1 => Ok(hits.pop()),
            k => Err(Error::bad_request(format!(
                "network {key} is ambiguous ({k} matches found based on {how})"
            ))),
        }
    };
    if let Some(f) = pick(&|n| n.rec.name == key, &|n| n.name == key, "name")? {
        return Ok(f);
    }
    if !key.is_empty() {
        if let Some(f) = pick(
            &|n| n.rec.id.starts_with(key),
            &|n| n.id.starts_with(key),
            "ID prefix",
        )? {
            return Ok(f);
        }
    }
    Err(Error::not_found(format!("network {key} not found")))
}

pub async fn list(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let f = q.filters()?;
    let manager = swarm_manager(&d);
    let mut out = Vec::new();
    for n in locals(&d, manager.is_some()) {
        if swarm_net::realises(&n.rec).is_some() {
            // A worker's view of a swarm network it runs tasks on.
            let v = view(&d, &n);
            if swarm_matches(&v, &f)? {
                out.push(v);
            }
        } else if matches(&d, &n, &f)? {
            out.push(view(&d, &n));
        }
    }
    if let Some(m) = manager {
        for n in m.networks() {
            if swarm_matches(&n, &f)? {
                out.push(n);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(json(200, &out))
}

pub async fn inspect(State(d): St, Path(id): Path<String>) -> Result<Response> {
    match find(&d, &id)? {
        Found::Local(n) => Ok(json(200, &view(&d, &n))),
        Found::Swarm(n) => Ok(json(200, &n)),
    }
}

/// dockerd's answers to a swarm-scoped network asked of a node that cannot make one.
const WORKER_SWARM_SCOPE: &str = "Cannot create a multi-host network from a worker node. Please create the network from a manager node.";
const NO_SWARM_SCOPE: &str = "cannot create a swarm scoped network when swarm is not active";

pub async fn create(
    State(d): St,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let req: CreateRequest = json_body(&body)?;
    // A blank name is refused by the service first, as dockerd does.
    if !req.name.trim().is_empty() {
        crate::names::check_len("network", &req.name)?;
    }
    let manager = swarm_manager(&d);
    // Names are unique across the local and the swarm networks.
    if let Some(m) = &manager {
        let taken = m.networks().iter().any(|n| n.name == req.name)
            || ((req.driver == "overlay" || req.scope == "swarm")
                && locals(&d, true).iter().any(|n| n.rec.name == req.name));
        if taken {
            return Err(Error::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
    }
    if req.driver == "overlay" || req.scope == "swarm" {
        let active = d.swarm.get().is_some_and(|s| s.summary().state == "active");
        let forbidden = |m: &str| Error(berth_api::ApiError::new(403, m));
        return match manager {
            Some(m) => {
                // Encrypted overlays need the kernel's IPsec ESP with AES-GCM: refused here,
                // before anything is made, when this manager's kernel lacks it (every node
                // checks its own again when it brings the network up).
                if req
                    .options
                    .as_ref()
                    .is_some_and(|o| o.contains_key("encrypted"))
                {
                    berth_network::lb::check_encryption_support()
                        .map_err(|e| Error(berth_api::ApiError::new(400, e.to_string())))?;
                }
                let id = m.create_network(req).await?;
                Ok(json(
                    201,
                    &CreateResponse {
                        id,
                        warning: String::new(),
                    },
                ))
            }
            None if req.driver == "overlay" => Err(forbidden(berth_swarm::error::NOT_MANAGER)),
            None if active => Err(forbidden(WORKER_SWARM_SCOPE)),
            None => Err(forbidden(NO_SWARM_SCOPE)),
        };
    }
    let (id, warning) = d.net.create(req).await?;
    if let Ok(n) = d.net.find(&id) {
        d.events
            .network_event(&n.rec.id, &n.rec.name, &n.rec.driver, "create", None);
    }
    Ok(json(201, &CreateResponse { id, warning }))
}

fn running_on(d: &Daemon, n: &Network) -> bool {
    d.all().iter().any(|c| {
        let r = c.rec();
        r.is_running() && r.net.endpoints.values().any(|e| e.network_id == n.rec.id)
    })
}

fn worker() -> Error {
    Error(berth_api::ApiError::new(503, super::swarm::WORKER))
}

pub async fn remove(State(d): St, Path(id): Path<String>) -> Result<Response> {
    let n = match find(&d, &id)? {
        Found::Swarm(n) => {
            let m = swarm_manager(&d).ok_or_else(worker)?;
            m.remove_network(&n.id).await?;
            return Ok(no_content());
        }
        Found::Local(n) => n,
    };
    if swarm_net::realises(&n.rec).is_some() {
        // A swarm network seen from a worker: only managers change the cluster's.
        return Err(worker());
    }
    d.net.remove(&n, running_on(&d, &n)).await?;
    d.events
        .network_event(&n.rec.id, &n.rec.name, &n.rec.driver, "destroy", None);
    Ok(no_content())
}

pub async fn prune(State(d): St, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q.as_deref());
    let filter = PruneFilter::new(&q.filters()?, &[])?;
    let mut deleted = Vec::new();
    for n in d.net.all() {
        // A swarm network's bridge is removed by the swarm executor once unused.
        if n.rec.predefined
            || swarm_net::realises(&n.rec).is_some()
            || connected(&d, &n)
            || !filter.matches(&n.rec.created, &n.rec.labels)
        {
            continue;
        }
        if d.net.remove(&n, false).await.is_ok() {
            d.events
                .network_event(&n.rec.id, &n.rec.name, &n.rec.driver, "destroy", None);
            deleted.push(n.rec.name.clone());
        }
    }
    d.events.emit(
        "network",
        "prune",
        "",
        BTreeMap::from([("reclaimed".to_string(), "0".to_string())]),
    );
    Ok(json(
        200,
        &PruneResponse {
            networks_deleted: Some(deleted),
        },
    ))
}

pub async fn connect(
    State(d): St,
    Path(id): Path<String>,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let req: ConnectRequest = json_body(&body)?;
    let c = d.find(&req.container)?;
    let mut cfg = req.endpoint_config;
    // An attachable swarm network: the address comes from the managers and the network is
    // realised here (the lock keeps it until the endpoint exists).
    let mut ep = cfg.clone().unwrap_or_default();
    let swarm = swarm_net::attach_endpoint(&d, &id, c.snapshot().bare_name(), &mut ep).await?;
    let key = match &swarm {
        Some((local, _)) => {
            cfg = Some(ep);
            local.as_str()
        }
        None => id.as_str(),
    };
    let n = d.net.find(key)?;
    endpoint::connect(&d, &n, &c, cfg).await?;
    if swarm.is_some() {
        swarm_net::program_started(&d, &c);
    }
    Ok(json(200, &serde_json::json!({})))
}

pub async fn disconnect(
    State(d): St,
    Path(id): Path<String>,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> Result<Response> {
    let req: DisconnectRequest = json_body(&body)?;
    let n = d.net.find(&id)?;
    let c = d.find(&req.container)?;
    endpoint::disconnect(&d, &n, &c).await?;
    // Its balancers follow (the managers drop the attachment once it is no longer reported).
    if swarm_net::realises(&n.rec).is_some() {
        swarm_net::program_started(&d, &c);
    }
    Ok(json(200, &serde_json::json!({})))
}
