//! How a swarm network is realised on this node — the one seam between the cluster's network
//! records and the local network service. Each swarm network this node takes part in is a
//! local network of the `overlay` driver (a bridge with a VXLAN device carrying the network's
//! id) of the same name, subnet and gateway, marked with the swarm network's id, made on
//! demand and removed once nothing here needs it. The managers' description of it (endpoints
//! on other nodes, names, virtual IPs, the routing mesh) is programmed into the network
//! service (peers, ingress ports, and for an encrypted network the cluster's keys for its
//! ESP), the network's DNS names, and the namespaces of the task containers on it (virtual IP
//! balancing, the mesh's return path).

use crate::container::handle::Container;
use crate::state::Daemon;
use crate::swarm_state::{Applied, Programs};
use berth_api::network::{CreateRequest, Ipam, IpamConfig};
use berth_api::swarm as api;
use berth_network::driver::{overlay, Network};
use berth_network::esp;
use berth_network::lb::{program_ingress_return, program_vips, IngressNode, VipBackends};
use berth_network::link::mac_for;
use berth_network::nft::Proto;
use berth_network::record::NetworkRecord;
use berth_network::service::{IngressPort, OverlayPeer};
use berth_swarm::netalloc::VNI_OPTION;
use berth_swarm::proto::NetworkView;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::Arc;

/// The label that marks a local network as the realisation of a swarm network (its id).
pub const SWARM_NETWORK_LABEL: &str = "com.berth.swarm.network.id";
/// The swarm network's driver, kept beside the mark for how a worker shows the network.
const SWARM_DRIVER_LABEL: &str = "com.berth.swarm.network.driver";

/// How the API shows a realisation on a node that is not a manager (which has no other view
/// of the cluster's networks): as the swarm network, with its id, driver, scope and labels.
pub fn swarm_view(n: &mut berth_api::network::Network) {
    let Some(id) = n.labels.remove(SWARM_NETWORK_LABEL) else {
        return;
    };
    n.id = id;
    n.driver = n
        .labels
        .remove(SWARM_DRIVER_LABEL)
        .unwrap_or_else(|| "overlay".to_string());
    n.scope = "swarm".to_string();
    // berth's own options of the realisation (this node's addresses) are not the network's.
    n.options.retain(|k, _| !k.starts_with("com.berth."));
}

/// The swarm network a local network realises, if it is one.
pub fn realises(rec: &NetworkRecord) -> Option<&str> {
    rec.labels.get(SWARM_NETWORK_LABEL).map(String::as_str)
}

/// The endpoint driver option that ties a plain container's endpoint on a swarm network to
/// its attachment in the cluster.
pub const ATTACHMENT_OPT: &str = "com.berth.swarm.attachment";

/// The swarm network `key` names, if it is one: its local realisation's, or on a manager
/// the cluster's (id, attachable).
fn swarm_network(d: &Daemon, key: &str) -> Option<(String, bool)> {
    match d.net.find(key) {
        Ok(local) => realises(&local.rec).map(|id| (id.to_string(), local.rec.attachable)),
        Err(_) => d
            .swarm
            .get()
            .and_then(|s| s.summary().manager)
            .and_then(|m| {
                m.networks()
                    .into_iter()
                    .find(|n| n.id == key || n.name == key)
                    .map(|n| (n.id, n.attachable))
            }),
    }
}

/// Whether a plain container asking for network `key` goes through the managers: the swarm
/// network's id and whether it is known here (on a worker a name unknown locally may be one
/// the managers know; they answer "not found" otherwise). Refused if not attachable.
fn swarm_target(d: &Daemon, key: &str) -> crate::error::Result<Option<(String, bool)>> {
    let in_swarm = d.swarm.get().is_some_and(|s| s.summary().state == "active");
    match swarm_network(d, key) {
        Some((_, false)) => Err(not_attachable(key)),
        Some((id, true)) => Ok(Some((id, true))),
        None if in_swarm && !key.starts_with("container:") && d.net.find(key).is_err() => {
            Ok(Some((key.to_string(), false)))
        }
        None => Ok(None),
    }
}

/// The cluster this node is in (503 as Docker's when none).
fn cluster(d: &Daemon) -> crate::error::Result<Arc<berth_swarm::cluster::Cluster>> {
    d.swarm.get().cloned().ok_or_else(|| {
        crate::error::Error(berth_api::ApiError::new(
            503,
            berth_swarm::error::NOT_IN_SWARM,
        ))
    })
}

fn not_attachable(key: &str) -> crate::error::Error {
    crate::error::Error(berth_api::ApiError::new(
        403,
        format!("Could not attach to network {key}: rpc error: code = PermissionDenied desc = network {key} not manually attachable"),
    ))
}

/// Connects a container (`docker network connect`) to the swarm network `key`, if it is one:
/// refused unless attachable; otherwise the container gets an attachment (an address handed
/// out by the managers), the network is realised here and `ep` asks for that address.
/// Returns the local network's name with the lock that keeps the realisation until the
/// endpoint exists (hold it across the connect), or None for a network not of the swarm.
pub async fn attach_endpoint<'a>(
    d: &'a Arc<Daemon>,
    key: &str,
    name: &str,
    ep: &mut berth_api::network::EndpointSettings,
) -> crate::error::Result<Option<(String, tokio::sync::MutexGuard<'a, Applied>)>> {
    let Some((id, known)) = swarm_target(d, key)? else {
        return Ok(None);
    };
    let cluster = cluster(d)?;
    let applied = d.swarm_nets.lock().await;
    match attach_one(d, &cluster, &applied, &id, name, ep).await {
        Ok(local) => Ok(Some((local, applied))),
        // Not a swarm network either: the connect reports the usual "not found".
        Err(e) if !known && e.status == 404 => Ok(None),
        Err(e) => Err(crate::error::Error(e)),
    }
}

/// Gets the attachment of the plain container `name` on the swarm network `id`, realises the
/// network here and sets the endpoint's address and tie to the attachment; returns the local
/// network's name.
async fn attach_one(
    d: &Arc<Daemon>,
    cluster: &Arc<berth_swarm::cluster::Cluster>,
    applied: &Applied,
    id: &str,
    name: &str,
    ep: &mut berth_api::network::EndpointSettings,
) -> Result<String, berth_api::ApiError> {
    let att = cluster
        .attach(id, name)
        .await
        .map_err(|e| berth_api::ApiError::new(e.status, e.message))?;
    let local = realise(d, applied, &att.network)
        .await
        .map_err(|e| berth_api::ApiError::new(500, e))?;
    ep.ipam_config
        .get_or_insert_with(Default::default)
        .ipv4_address = att.address.clone();
    ep.driver_opts
        .get_or_insert_with(Default::default)
        .insert(ATTACHMENT_OPT.to_string(), att.id.clone());
    Ok(local)
}

/// Puts a plain container being created on the attachable swarm networks `req` names: each
/// gets an attachment (an address handed out by the managers) and is realised here; the
/// container's endpoint asks for that address. Returns the lock that keeps the realisations
/// until the container exists (hold it across the create).
pub async fn attach_container<'a>(
    d: &'a Arc<Daemon>,
    req: &mut berth_api::container::CreateRequest,
    name: &str,
) -> crate::error::Result<Option<tokio::sync::MutexGuard<'a, Applied>>> {
    let mut keys: Vec<String> = Vec::new();
    if !req.host_config.network_mode.is_empty() {
        keys.push(req.host_config.network_mode.clone());
    }
    if let Some(e) = req
        .networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.as_ref())
    {
        keys.extend(e.keys().cloned());
    }
    keys.dedup();
    let mut swarm: Vec<(String, String, bool)> = Vec::new();
    for k in &keys {
        if let Some((id, known)) = swarm_target(d, k)? {
            swarm.push((k.clone(), id, known));
        }
    }
    if swarm.is_empty() {
        return Ok(None);
    }
    let cluster = cluster(d)?;
    let applied = d.swarm_nets.lock().await;
    for (key, id, known) in swarm {
        // The endpoint is keyed by the network's local name.
        let eps = req
            .networking_config
            .get_or_insert_with(Default::default)
            .endpoints_config
            .get_or_insert_with(Default::default);
        let given = eps.remove(&key);
        let mut ep = given.clone().unwrap_or_default();
        let local = match attach_one(d, &cluster, &applied, &id, name, &mut ep).await {
            Ok(local) => local,
            Err(e) if !known && e.status == 404 => {
                if let Some(given) = given {
                    eps.insert(key, given);
                }
                continue;
            }
            Err(e) => return Err(crate::error::Error(e)),
        };
        eps.insert(local.clone(), ep);
        if req.host_config.network_mode == key {
            req.host_config.network_mode = local;
        }
    }
    Ok(Some(applied))
}

/// The attachments of the plain containers on this node.
pub fn attachments(d: &Daemon) -> Vec<String> {
    d.all()
        .iter()
        .flat_map(|c| {
            c.rec()
                .net
                .endpoints
                .values()
                .filter_map(|e| e.driver_opts.get(ATTACHMENT_OPT).cloned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Leaving the swarm: plain containers are disconnected from the swarm networks (as Docker
/// does), whose realisations then go.
pub async fn detach_all(d: &Arc<Daemon>) {
    for c in d.all() {
        let on: Vec<String> = c
            .rec()
            .net
            .endpoints
            .values()
            .map(|e| e.network_id.clone())
            .collect();
        let mut left = false;
        for id in on {
            let Ok(local) = d.net.find(&id) else {
                continue;
            };
            if realises(&local.rec).is_none() {
                continue;
            }
            match crate::container::network::endpoint::disconnect(d, &local, &c).await {
                Ok(()) => left = true,
                Err(e) => tracing::warn!(
                    "swarm leave: disconnecting {} from {}: {}",
                    c.id,
                    local.rec.name,
                    e.0.message
                ),
            }
        }
        if left {
            program_started(d, &c);
        }
    }
    let applied = d.swarm_nets.lock().await;
    release_unused(d, &applied).await;
}

/// Whether any container (in any state) has an endpoint on the local network `id`.
fn in_use(d: &Daemon, id: &str) -> bool {
    d.all()
        .iter()
        .any(|c| c.rec().net.endpoints.values().any(|e| e.network_id == id))
}

/// This node's data-path address: `--data-path-addr` if given, else the IPv4 address it
/// takes part in the swarm with.
fn local_addr(d: &Daemon) -> Result<Ipv4Addr, String> {
    let addr = d
        .swarm
        .get()
        .map(|s| {
            let sum = s.summary();
            if sum.data_addr.is_empty() {
                sum.node_addr
            } else {
                sum.data_addr
            }
        })
        .unwrap_or_default();
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr.as_str(),
    };
    host.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| {
            format!("this node's swarm address {addr:?} is not an IPv4 address: overlay networks need one")
        })
}

/// The create request of the local overlay network that realises `n` on this node (`local`:
/// its data-path address; `mesh`: its own address on the ingress network).
fn overlay_request(n: &api::Network, local: Ipv4Addr, mesh: Option<&str>) -> CreateRequest {
    let configs = n
        .ipam_options
        .iter()
        .flat_map(|i| i.configs.iter())
        .map(|c| IpamConfig {
            subnet: c.subnet.clone(),
            ip_range: c.range.clone(),
            gateway: c.gateway.clone(),
            auxiliary_addresses: None,
        })
        .collect();
    let mut options: BTreeMap<String, String> = n
        .spec
        .driver_configuration
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    if let Some(vni) = n.driver_state.options.get(VNI_OPTION) {
        options.insert(VNI_OPTION.to_string(), vni.clone());
    }
    options.insert(overlay::OPT_LOCAL.to_string(), local.to_string());
    if n.spec.ingress {
        options.insert(overlay::OPT_INGRESS.to_string(), "true".to_string());
        if let Some(a) = mesh {
            options.insert(overlay::OPT_BRIDGE_ADDR.to_string(), a.to_string());
        }
    }
    let mut labels = n.spec.labels.clone();
    labels.insert(SWARM_NETWORK_LABEL.to_string(), n.id.clone());
    labels.insert(SWARM_DRIVER_LABEL.to_string(), n.driver_state.name.clone());
    CreateRequest {
        name: n.spec.name.clone(),
        driver: "overlay".to_string(),
        internal: n.spec.internal,
        attachable: n.spec.attachable,
        ingress: n.spec.ingress,
        ipam: Some(Ipam {
            driver: String::new(),
            config: Some(configs),
            options: None,
        }),
        options: Some(options),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Makes sure the swarm network `n` exists on this node; returns the local network's name
/// (the swarm network's). Idempotent; the caller holds the executor's lock on `applied`.
pub async fn realise(
    d: &Arc<Daemon>,
    applied: &Applied,
    n: &api::Network,
) -> Result<String, String> {
    let name = n.spec.name.clone();
    // Unused realisations of networks gone from the cluster go first: one left by a removed
    // network would hold the subnet the cluster may have handed out again.
    release_unused_except(d, applied, Some(&n.id)).await;
    if let Some(local) = d.net.all().into_iter().find(|l| l.rec.name == name) {
        match realises(&local.rec) {
            Some(id) if id == n.id => return Ok(name),
            // A swarm network of the same name that is gone: its bridge goes once unused.
            Some(_) if !in_use(d, &local.rec.id) => remove_local(d, &local).await?,
            Some(_) => {
                return Err(format!(
                    "network {name}: this node still has containers on an earlier swarm network of that name"
                ))
            }
            None => {
                return Err(format!(
                    "network {name}: the name is taken on this node by a local network"
                ))
            }
        }
    }
    if n.driver_state.name != "overlay" {
        return Err(format!(
            "network {name}: swarm networks of the {} driver are not supported by berth",
            n.driver_state.name
        ));
    }
    let mesh = applied
        .view(&n.id)
        .map(|v| v.node_addr.clone())
        .filter(|a| !a.is_empty());
    if n.spec.ingress && mesh.is_none() {
        return Err(format!(
            "network {name}: this node has no address on the ingress network yet"
        ));
    }
    let req = overlay_request(n, local_addr(d)?, mesh.as_deref());
    let (id, _) = d
        .net
        .create(req)
        .await
        .map_err(|e| format!("network {name}: {e}"))?;
    if let Ok(local) = d.net.find(&id) {
        d.events
            .network_event(&id, &local.rec.name, &local.rec.driver, "create", None);
    }
    Ok(name)
}

async fn remove_local(d: &Arc<Daemon>, local: &Arc<Network>) -> Result<(), String> {
    d.net
        .remove(local, false)
        .await
        .map_err(|e| format!("network {}: removing it: {e}", local.rec.name))?;
    d.events.network_event(
        &local.rec.id,
        &local.rec.name,
        &local.rec.driver,
        "destroy",
        None,
    );
    Ok(())
}

/// Removes the local realisations of swarm networks that the managers no longer describe to
/// this node and that no container is connected to.
pub async fn release_unused(d: &Arc<Daemon>, applied: &Applied) {
    release_unused_except(d, applied, None).await
}

/// [`release_unused`], keeping the realisation of the swarm network `keep`.
async fn release_unused_except(d: &Arc<Daemon>, applied: &Applied, keep: Option<&str>) {
    for local in d.net.all() {
        let Some(id) = realises(&local.rec) else {
            continue;
        };
        if keep == Some(id) || applied.view(id).is_some() || in_use(d, &local.rec.id) {
            continue;
        }
        if let Err(e) = remove_local(d, &local).await {
            tracing::warn!("swarm network: {e}");
        }
    }
}

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// The cluster's encryption keys a view carries (encrypted networks only).
fn esp_keys(v: &NetworkView) -> Option<esp::Keys> {
    if v.keys.is_empty() {
        return None;
    }
    Some(esp::Keys {
        keys: v
            .keys
            .iter()
            .map(|k| esp::Key {
                tag: k.tag,
                key: k.key,
                salt: k.salt,
            })
            .collect(),
        primary: v.primary_key,
    })
}

/// Brings this node to the managers' description of its swarm networks: names, mesh ports
/// and every container's balancers first (a task leaving a balancer must not wait for a
/// container being made), then each network is realised and its peers set, the new ones
/// programmed, and realisations nothing needs any more removed.
pub async fn apply(d: &Arc<Daemon>, applied: &mut Applied, views: Vec<NetworkView>) {
    program_all_off(d, views.clone()).await;
    applied.views = views;
    for v in applied.views.clone() {
        let name = match realise(d, applied, &v.network).await {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!("swarm network: {e}");
                continue;
            }
        };
        let peers: Vec<OverlayPeer> = v
            .peers
            .iter()
            .filter_map(|(ip, node)| {
                let ip = ipv4(ip)?;
                Some(OverlayPeer {
                    ip,
                    mac: mac_for(ip),
                    node: ipv4(node)?,
                })
            })
            .collect();
        let keys = esp_keys(&v);
        if let Err(e) = d.net.set_overlay_peers(&name, &peers, keys.as_ref()).await {
            tracing::warn!("swarm network {name}: programming its peers: {e}");
        }
    }
    // Networks realised just now get their names (what was programmed before is skipped).
    program_all_off(d, applied.views.clone()).await;
    release_unused(d, applied).await;
}

/// `program_all` off the async workers: it runs `nft` in every container's namespace.
async fn program_all_off(d: &Arc<Daemon>, views: Vec<NetworkView>) {
    let d = d.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || program_all(&d, &views)).await {
        tracing::warn!("swarm networks: programming them: {e}");
    }
}

fn proto(p: &str) -> Option<Proto> {
    match p {
        "" | "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
    }
}

fn programs(d: &Daemon) -> std::sync::MutexGuard<'_, Programs> {
    d.swarm_programs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Programs names, the mesh's ports and every running container from `views`.
fn program_all(d: &Daemon, views: &[NetworkView]) {
    let mut p = programs(d);
    p.views = views.to_vec();
    let mut ingress = Vec::new();
    for v in views {
        let local = d
            .net
            .all()
            .into_iter()
            .find(|l| realises(&l.rec) == Some(v.network.id.as_str()));
        if let Some(local) = local {
            set_names(&mut p, &local, v);
        }
        for port in &v.ingress_ports {
            let (Ok(published), Some(proto)) =
                (u16::try_from(port.published), proto(&port.protocol))
            else {
                continue;
            };
            let target = u16::try_from(port.target).unwrap_or(0);
            ingress.push(IngressPort {
                proto,
                published,
                backends: port
                    .backends
                    .iter()
                    .filter_map(|b| Some((ipv4(b)?, target)))
                    .collect(),
            });
        }
    }
    if p.ingress.as_ref() != Some(&ingress) {
        match d.net.set_ingress_ports(&ingress) {
            Ok(()) => p.ingress = Some(ingress),
            Err(e) => tracing::warn!("swarm routing mesh: publishing its ports: {e}"),
        }
    }
    // Networks released since hold no names any more.
    p.dns.retain(|id, _| d.net.find(id).is_ok());
    let all = d.all();
    p.done.retain(|id, _| all.iter().any(|c| c.id == *id));
    for c in &all {
        program_one(d, &mut p, c);
    }
}

/// The network's DNS answers what the managers describe: `swarm:<address>` owners, replaced
/// whole (tasks that stopped are gone at once).
fn set_names(p: &mut Programs, local: &Network, v: &NetworkView) {
    let mut owners = Vec::new();
    for (ip, names) in &v.names {
        let Some(addr) = ipv4(ip) else { continue };
        let owner = format!("swarm:{ip}");
        local.names.set(&owner, names, addr);
        owners.push(owner);
    }
    for old in p.dns.remove(&local.rec.id).unwrap_or_default() {
        if !owners.contains(&old) {
            local.names.remove(&old);
        }
    }
    p.dns.insert(local.rec.id.clone(), owners);
}

/// Programs a container just (re)started, if it is on swarm networks (a new namespace has
/// none of the balancers and routes).
pub fn program_started(d: &Daemon, c: &Container) {
    let mut p = programs(d);
    program_one(d, &mut p, c);
}

/// Programs a running container on swarm networks: the virtual IPs it can reach with their
/// tasks, and on the ingress network the mesh's return path; skipped when nothing changed
/// for it. Errors are logged.
fn program_one(d: &Daemon, p: &mut Programs, c: &Container) {
    let (pid, nets) = {
        let r = c.rec();
        if r.state.status != crate::container::status::RUNNING || r.state.pid <= 0 {
            return;
        }
        let nets: Vec<(String, String)> = r
            .net
            .endpoints
            .iter()
            .map(|(name, e)| (name.clone(), e.network_id.clone()))
            .collect();
        (r.state.pid, nets)
    };
    let mut vips = Vec::new();
    let mut mesh = None;
    let mut swarm = false;
    for (name, local_id) in &nets {
        let Ok(local) = d.net.find(local_id) else {
            continue;
        };
        let Some(v) = realises(&local.rec).and_then(|id| p.view(id)) else {
            continue;
        };
        swarm = true;
        for (vip, backends) in &v.vips {
            if let Some(vip) = ipv4(vip) {
                vips.push(VipBackends {
                    vip,
                    backends: backends.iter().filter_map(|b| ipv4(b)).collect(),
                });
            }
        }
        if v.network.spec.ingress {
            if let Some(ep) = d.net.live_endpoint(&c.id, name) {
                let nodes: Vec<IngressNode> = v
                    .mesh_nodes
                    .iter()
                    .filter_map(|a| ipv4(a))
                    .map(|addr| IngressNode {
                        mac: mac_for(addr),
                        addr,
                    })
                    .collect();
                mesh = Some((ep.ifname, nodes));
            }
        }
    }
    // A container that left its last swarm network loses the balancers it had.
    if !swarm && !p.done.contains_key(&c.id) {
        return;
    }
    let signature = format!("{pid} {vips:?} {mesh:?}");
    if p.done.get(&c.id) == Some(&signature) {
        return;
    }
    let ns = match std::fs::File::open(format!("/proc/{pid}/ns/net")) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("container {}: its network namespace: {e}", c.id);
            return;
        }
    };
    let mut ok = true;
    if let Err(e) = program_vips(ns.as_fd(), &vips) {
        tracing::warn!("container {}: programming its virtual IPs: {e}", c.id);
        ok = false;
    }
    if let Some((ifname, nodes)) = mesh {
        if let Err(e) = program_ingress_return(ns.as_fd(), &ifname, &nodes) {
            tracing::warn!(
                "container {}: programming the mesh's return path: {e}",
                c.id
            );
            ok = false;
        }
    }
    if ok && swarm {
        p.done.insert(c.id.clone(), signature);
    } else {
        p.done.remove(&c.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_carries_the_swarm_networks_addresses_id_and_mark() {
        let mut n = api::Network {
            id: "abc".into(),
            driver_state: api::Driver {
                name: "overlay".into(),
                options: BTreeMap::from([(VNI_OPTION.into(), "4099".into())]),
            },
            spec: api::NetworkSpec {
                name: "st_default".into(),
                internal: true,
                labels: BTreeMap::from([("com.docker.stack.namespace".into(), "st".into())]),
                ..Default::default()
            },
            ipam_options: Some(api::IpamOptions {
                configs: vec![api::IpamConfig {
                    subnet: "10.0.1.0/24".into(),
                    gateway: "10.0.1.1".into(),
                    range: String::new(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let local: Ipv4Addr = "192.0.2.7".parse().unwrap();
        let r = overlay_request(&n, local, Some("10.0.0.9"));
        assert_eq!(r.name, "st_default");
        assert_eq!(r.driver, "overlay");
        assert!(r.internal);
        let opts = r.options.clone().unwrap();
        assert_eq!(opts[VNI_OPTION], "4099");
        assert_eq!(opts[overlay::OPT_LOCAL], "192.0.2.7");
        // Only the ingress network's bridge has an address of the node's own.
        assert!(!opts.contains_key(overlay::OPT_BRIDGE_ADDR));
        assert!(!opts.contains_key(overlay::OPT_INGRESS));
        n.spec.ingress = true;
        let ing = overlay_request(&n, local, Some("10.0.0.9"))
            .options
            .unwrap();
        assert_eq!(ing[overlay::OPT_BRIDGE_ADDR], "10.0.0.9");
        assert_eq!(ing[overlay::OPT_INGRESS], "true");
        let cfg = &r.ipam.unwrap().config.unwrap()[0];
        assert_eq!(
            (cfg.subnet.as_str(), cfg.gateway.as_str()),
            ("10.0.1.0/24", "10.0.1.1")
        );
        let labels = r.labels.unwrap();
        assert_eq!(labels[SWARM_NETWORK_LABEL], "abc");
        // An encrypted network's option reaches the driver.
        n.spec.driver_configuration = Some(api::Driver {
            name: "overlay".into(),
            options: BTreeMap::from([(overlay::OPT_ENCRYPTED.into(), String::new())]),
        });
        let enc = overlay_request(&n, local, None).options.unwrap();
        assert!(enc.contains_key(overlay::OPT_ENCRYPTED));
        assert_eq!(labels["com.docker.stack.namespace"], "st");
        // A worker shows it as the swarm network.
        let mut shown = berth_api::network::Network {
            id: "local".into(),
            driver: "bridge".into(),
            scope: "local".into(),
            labels,
            ..Default::default()
        };
        swarm_view(&mut shown);
        assert_eq!(
            (
                shown.id.as_str(),
                shown.driver.as_str(),
                shown.scope.as_str()
            ),
            ("abc", "overlay", "swarm")
        );
        assert_eq!(
            shown.labels,
            BTreeMap::from([("com.docker.stack.namespace".to_string(), "st".to_string())])
        );
        let mut rec = NetworkRecord::new("l".into(), "st_default".into(), "bridge", String::new());
        assert_eq!(realises(&rec), None);
        rec.labels.insert(SWARM_NETWORK_LABEL.into(), "abc".into());
        assert_eq!(realises(&rec), Some("abc"));
    }

    #[test]
    fn an_encrypted_networks_keys_reach_the_network_service() {
        let mut v = NetworkView::default();
        assert_eq!(esp_keys(&v), None);
        let key = |tag: u32| berth_swarm::proto::NetworkKey {
            tag,
            key: [tag as u8; 16],
            salt: [tag as u8 + 1; 4],
            created_unix: 5,
        };
        v.keys = vec![key(3), key(4)];
        v.primary_key = 4;
        let k = esp_keys(&v).unwrap();
        assert_eq!(k.primary, 4);
        assert_eq!(
            k.keys,
            [
                esp::Key {
                    tag: 3,
                    key: [3; 16],
                    salt: [4; 4]
                },
                esp::Key {
                    tag: 4,
                    key: [4; 16],
                    salt: [5; 4]
                }
            ]
        );
        assert!(k.check().is_ok());
    }
}
