//! A container's endpoints, translated for the network service: its network mode, the
//! endpoints asked for at create and connect (kept in its record), and the calls that take
//! addresses and host ports before a start, wire them once its init exists, give them back
//! when it stops, and take them again after a daemon restart. The mechanics are the
//! service's (`berth_network::service`); this module only reads and updates the record.

use super::ports::wanted_ports;
use super::{net_err, Network};
use crate::container::{Endpoint, Record};
use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
use berth_api::network::EndpointSettings;
use berth_network::endpoint::{check_mac, ordered, router, Sandbox};
use berth_network::files::parse_link;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::sync::Arc;

/// How a container is networked, from its `NetworkMode`.
pub enum Mode {
    /// Its own namespace with endpoints on bridge networks (the default bridge or user ones).
    Bridge,
    /// Its own namespace with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace.
    Container(String),
}

pub fn mode(r: &Record) -> Mode {
    match r.host_config.network_mode.as_str() {
        "none" => Mode::None,
        "host" => Mode::Host,
        m => match m.strip_prefix("container:") {
            Some(other) => Mode::Container(other.to_string()),
            None => Mode::Bridge,
        },
    }
}

/// The network a bridge-mode container was created on (its eth0).
pub(crate) fn primary_name(r: &Record) -> &str {
    match r.host_config.network_mode.as_str() {
        "" | "default" => "bridge",
        m => m,
    }
}

/// The container's sandbox, as the network service knows it.
pub fn sandbox(r: &Record) -> Sandbox {
    Sandbox {
        id: r.id.clone(),
        name: r.bare_name().to_string(),
        hostname: r.config.hostname.clone(),
        dns: r.host_config.dns.clone().unwrap_or_default(),
        primary: primary_name(r).to_string(),
    }
}

/// The names a container answers to on a user-defined network.
pub fn dns_names(r: &Record, ep: &Endpoint) -> Vec<String> {
    berth_network::endpoint::dns_names(&sandbox(r), ep)
}

/// At create: the endpoints the network mode and `NetworkingConfig` ask for; checks links.
pub fn configure(
    d: &Daemon,
    r: &mut Record,
    requested: BTreeMap<String, EndpointSettings>,
) -> Result<()> {
    let h = &r.host_config;
    let links = h.links.clone().unwrap_or_default();
    match mode(r) {
        Mode::Container(_) | Mode::Host | Mode::None
            if r.config.mac_address.as_ref().is_some_and(|m| !m.is_empty()) =>
        {
            return Err(Error::bad_request(
                "conflicting options: mac-address and the network mode",
            ));
        }
        Mode::Container(other) => {
            // At create the hostname was filled with the short id; anything else came from -h.
            if !r.config.hostname.is_empty() && r.config.hostname != r.short_id() {
                return Err(Error::bad_request(
                    "conflicting options: hostname and the network mode",
                ));
            }
            if h.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || h.publish_all_ports {
                return Err(Error::bad_request(
                    "conflicting options: port publishing and the container type network mode",
                ));
            }
            d.find(&other)?;
            return Ok(());
        }
        Mode::Host | Mode::None => {
            let name = if matches!(mode(r), Mode::Host) {
                "host"
            } else {
                "none"
            };
            let n = d.net.find(name)?;
            if !links.is_empty() {
                return Err(Error::bad_request(format!(
                    "conflicting options: links and network mode {name}"
                )));
            }
            r.net
                .endpoints
                .insert(name.into(), d.net.endpoint(&n, None)?);
            return Ok(());
        }
        Mode::Bridge => {}
    }
    let primary = primary_name(r).to_string();
    let pn = d.net.find(&primary)?;
    // The docker CLI keys the primary endpoint by the name the user typed or "default".
    let mut rest = requested;
    let primary_cfg = rest
        .remove(&primary)
        .or_else(|| rest.remove("default"))
        .or_else(|| rest.remove(&pn.rec.id));
    if !pn.driver.connectable() {
        return Err(Error::bad_request(format!(
            "network {primary} cannot be used as a network mode"
        )));
    }
    let mut ep = d.net.endpoint(&pn, primary_cfg.as_ref())?;
    // The container-wide MAC address (`Config.MacAddress`, API < 1.44) is the primary
    // endpoint's.
    if let Some(mac) = r.config.mac_address.clone().filter(|m| !m.is_empty()) {
        check_mac(&mac)?;
        let mac = mac.to_ascii_lowercase();
        if ep.requested_mac.is_empty() {
            ep.requested_mac = mac;
        } else if ep.requested_mac != mac {
            return Err(Error::bad_request(
                "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
            ));
        }
    }
    if !links.is_empty() {
        // On the default bridge links are /etc/hosts entries and variables; on a user-defined
        // network, names its embedded DNS answers for this container only.
        if pn.rec.predefined && pn.rec.name != "bridge" {
            return Err(Error::bad_request(format!(
                "--link is not supported on network {}",
                pn.rec.name
            )));
        }
        for l in &links {
            let (target, alias) = parse_link(l)?;
            d.find(target)?;
            ep.links.push(format!("{target}:{alias}"));
        }
    }
    r.host_config.network_mode = pn.rec.name.clone();
    r.net.endpoints.insert(pn.rec.name.clone(), ep);
    for (key, cfg) in rest {
        let n = d.net.find(&key)?;
        if !n.driver.connectable() {
            return Err(Error::bad_request(format!(
                "container cannot be connected to network {} and to {}",
                n.rec.name, pn.rec.name
            )));
        }
        r.net
            .endpoints
            .insert(n.rec.name.clone(), d.net.endpoint(&n, Some(&cfg))?);
    }
    Ok(())
}

/// Before the bundle is written: an address, MAC and interface names for each bridge
/// endpoint, and the host ports to publish. Kept in the record (in memory; the start writes
/// it). On error everything taken is given back.
pub fn allocate(d: &Daemon, c: &Container) -> Result<()> {
    let res = allocate_inner(d, c);
    if res.is_err() {
        release_local(d, c);
    }
    res
}

fn allocate_inner(d: &Daemon, c: &Container) -> Result<()> {
    let r = c.snapshot();
    if !matches!(mode(&r), Mode::Bridge) {
        return Ok(());
    }
    let order = ordered(primary_name(&r), &r.net.endpoints);
    let mut filled = Vec::new();
    for (i, name) in order.iter().enumerate() {
        let Some(ep) = r.net.endpoints.get(name) else {
            continue;
        };
        let n = d.net.find(&ep.network_id).map_err(|_| {
            Error::not_found(format!(
                "network {name} not found (it was removed while the container was stopped)"
            ))
        })?;
        let mut ep = ep.clone();
        d.net.take_addresses(&n, name, &mut ep, format!("eth{i}"))?;
        // Recorded at once, so a failure further on gives this address back.
        c.rec().net.endpoints.insert(name.clone(), ep.clone());
        filled.push(ep);
    }
    let wanted = wanted_ports(&r)?;
    let target = filled.first().and_then(|e| e.ip.parse::<Ipv4Addr>().ok());
    let target6 = filled.first().and_then(|e| e.ip6.parse::<Ipv6Addr>().ok());
    c.rec().net.ports = d.net.publish(&c.id, &wanted, target, target6)?;
    Ok(())
}

/// Once the container's init exists (`pid`): its veths, its DNS names, its published ports.
pub async fn wire(d: &Daemon, c: &Container, pid: i32) -> Result<()> {
    let r = c.snapshot();
    if !matches!(mode(&r), Mode::Bridge) {
        return Ok(());
    }
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::internal(format!("network namespace of the container: {e}")))?;
    let sb = sandbox(&r);
    let routes = router(&sb.primary, &r.net.endpoints);
    for name in ordered(&sb.primary, &r.net.endpoints) {
        let Some(ep) = r.net.endpoints.get(&name) else {
            continue;
        };
        if ep.ip.is_empty() && ep.ip6.is_empty() {
            continue;
        }
        let routes = routes.as_ref() == Some(&name);
        d.net.join(&sb, &name, ep, netns.as_fd(), routes).await?;
    }
    d.net.refresh_peers(&r.id, &r.net.endpoints);
    d.net.add_port_rules(&r.net.ports)?;
    Ok(())
}

/// Give back what [`allocate`] took, in memory only (addresses, held ports).
fn release_local(d: &Daemon, c: &Container) {
    let ports = c.rec().net.ports.clone();
    d.net.unpublish(&c.id, &ports);
    let mut r = c.rec();
    for ep in r.net.endpoints.values_mut() {
        if let Ok(n) = d.net.find(&ep.network_id) {
            d.net.leave(&n, &c.id, ep);
        }
        ep.clear_live();
    }
    r.net.ports.clear();
}

/// Undo [`allocate`] and [`wire`]: after the container stopped, or when its start failed.
pub fn release(d: &Daemon, c: &Container) {
    let r = c.snapshot();
    if let Err(e) = d.net.remove_port_rules(&r.net.ports) {
        tracing::warn!("container {}: unpublishing ports: {e}", c.id);
    }
    // The veths are not deleted here: they go with the container's network namespace when
    // its last process is gone, which the kernel does in one batch. Deleting them one by one
    // holds the rtnl lock through RCU grace periods and delayed the next container's wiring
    // by 10–30 ms (measured); addresses are not handed out again soon (see ipam::Pool).
    release_local(d, c);
}

/// A container that kept running across a daemon restart: its addresses, names and host
/// ports are taken again (the table is rebuilt once all are back).
pub fn readopt(d: &Daemon, c: &Container) {
    let r = c.snapshot();
    d.net.readopt_endpoints(&sandbox(&r), &r.net.endpoints);
    let mut ports = r.net.ports.clone();
    d.net.readopt_ports(&c.id, &mut ports);
    c.rec().net.ports = ports;
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    d: &Arc<Daemon>,
    n: &Arc<Network>,
    c: &Arc<Container>,
    cfg: Option<EndpointSettings>,
) -> Result<()> {
    let _op = c.op.lock().await;
    let r = c.snapshot();
    if !n.driver.connectable() {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container cannot be disconnected from host network or connected to {} network",
                n.rec.name
            ),
        )));
    }
    if !matches!(mode(&r), Mode::Bridge) {
        return Err(Error::bad_request(format!(
            "container sharing network namespace with another container or host cannot be connected to any other network ({})",
            r.host_config.network_mode
        )));
    }
    if r.net.endpoints.contains_key(&n.rec.name) {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "endpoint with name {} already exists in network {}",
                r.bare_name(),
                n.rec.name
            ),
        )));
    }
    let mut ep = d.net.endpoint(n, cfg.as_ref())?;
    for l in cfg
        .as_ref()
        .and_then(|c| c.links.as_ref())
        .into_iter()
        .flatten()
    {
        if n.rec.predefined {
            return Err(Error::bad_request(
                "links at connect (--link) are supported on user-defined networks only",
            ));
        }
        let (target, alias) = parse_link(l)?;
        d.find(target)?;
        ep.links.push(format!("{target}:{alias}"));
    }
    if !r.is_running() || r.state.pid <= 0 {
        c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
        if let Err(e) = c.update(|_| {}) {
            c.rec().net.endpoints.remove(&n.rec.name);
            return Err(e);
        }
        return Ok(());
    }
    let used: Vec<String> = r.net.endpoints.values().map(|e| e.ifname.clone()).collect();
    let ifname = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !used.contains(n))
        .unwrap_or_else(|| "eth9".into());
    d.net.take_addresses(n, &n.rec.name, &mut ep, ifname)?;
    // The new endpoint takes the default route when none has one or it outranks them all.
    let routes = r
        .net
        .endpoints
        .values()
        .filter(|e| !e.gateway.is_empty() || !e.gateway6.is_empty())
        .all(|e| ep.gw_priority > e.gw_priority);
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", r.state.pid));
    let res = match netns {
        Ok(f) => d
            .net
            .join(&sandbox(&r), &n.rec.name, &ep, f.as_fd(), routes)
            .await
            .map_err(net_err),
        Err(e) => Err(Error::internal(format!(
            "network namespace of the container: {e}"
        ))),
    };
    if let Err(e) = res {
        d.net.leave(n, &c.id, &ep);
        let _ = d.net.unplug(&ep).await;
        return Err(e);
    }
    c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
    d.net.refresh_peers(&c.id, &c.snapshot().net.endpoints);
    // Wired already: the record follows (retried if it cannot be written now).
    c.update_state(|_| {});
    d.network_event(n, "connect", Some(&c.id));
    Ok(())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(d: &Arc<Daemon>, n: &Arc<Network>, c: &Arc<Container>) -> Result<()> {
    let _op = c.op.lock().await;
    let r = c.snapshot();
    let Some(ep) = r.net.endpoints.get(&n.rec.name).cloned() else {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container {} is not connected to network {}",
                r.bare_name(),
                n.rec.name
            ),
        )));
    };
    if !n.driver.connectable() && r.is_running() {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container cannot be disconnected from {} network while running",
                n.rec.name
            ),
        )));
    }
    d.net.unplug(&ep).await?;
    d.net.leave(n, &c.id, &ep);
    c.rec().net.endpoints.remove(&n.rec.name);
    d.net.refresh_peers(&c.id, &c.snapshot().net.endpoints);
    c.update_state(|_| {});
    d.network_event(n, "disconnect", Some(&c.id));
    Ok(())
}
