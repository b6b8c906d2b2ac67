//! A container on its networks: endpoints chosen at create and connect, addresses, veths, DNS
//! names and published ports while it runs, and its /etc/hosts and /etc/resolv.conf.

use super::ports::{bind_port, port_maps, proxy_port, take_port, wanted_ports};
use super::{net_err, Network};
use crate::container::{Endpoint, Published, Record};
use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
use berth_api::network::EndpointSettings;
use berth_network::link;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
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
pub(super) fn primary_name(r: &Record) -> &str {
    match r.host_config.network_mode.as_str() {
        "" | "default" => "bridge",
        m => m,
    }
}

/// Endpoints in interface order: the primary network first, then the others by name.
fn ordered(r: &Record) -> Vec<String> {
    let primary = primary_name(r).to_string();
    let mut names: Vec<String> = r
        .net
        .endpoints
        .keys()
        .filter(|k| **k != primary)
        .cloned()
        .collect();
    if r.net.endpoints.contains_key(&primary) {
        names.insert(0, primary);
    }
    names
}

fn check_endpoint_config(n: &Network, ep: &EndpointSettings) -> Result<()> {
    let user = !n.rec.predefined;
    if ep.aliases.as_ref().is_some_and(|a| !a.is_empty()) && !user {
        return Err(Error::bad_request(
            "network-scoped aliases are only supported for user-defined networks",
        ));
    }
    let ip = ep
        .ipam_config
        .as_ref()
        .map(|c| c.ipv4_address.as_str())
        .unwrap_or("");
    if !ip.is_empty() {
        if !user {
            return Err(Error::bad_request(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        let a: Ipv4Addr = ip
            .parse()
            .map_err(|_| Error::bad_request(format!("invalid IPv4 address: {ip}")))?;
        if !n.rec.subnet().is_some_and(|s| s.contains(a)) {
            return Err(Error::bad_request(format!(
                "no configured subnet contains IP address {a}"
            )));
        }
    }
    Ok(())
}

fn new_endpoint(n: &Network, ep: Option<&EndpointSettings>) -> Result<Endpoint> {
    let ep = ep.cloned().unwrap_or_default();
    check_endpoint_config(n, &ep)?;
    Ok(Endpoint {
        network_id: n.rec.id.clone(),
        endpoint_id: crate::util::random_id()?,
        aliases: ep.aliases.unwrap_or_default(),
        requested_ip: ep.ipam_config.map(|c| c.ipv4_address).unwrap_or_default(),
        links: Vec::new(),
        ..Endpoint::default()
    })
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
            r.net.endpoints.insert(name.into(), new_endpoint(&n, None)?);
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
    if !pn.rec.is_bridge() {
        return Err(Error::bad_request(format!(
            "network {primary} cannot be used as a network mode"
        )));
    }
    let mut ep = new_endpoint(&pn, primary_cfg.as_ref())?;
    if !links.is_empty() {
        if pn.rec.name != "bridge" {
            return Err(Error::bad_request(
                "--link is supported on the default bridge network only",
            ));
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
        if !n.rec.is_bridge() {
            return Err(Error::bad_request(format!(
                "container cannot be connected to network {} and to {}",
                n.rec.name, pn.rec.name
            )));
        }
        r.net
            .endpoints
            .insert(n.rec.name.clone(), new_endpoint(&n, Some(&cfg))?);
    }
    Ok(())
}

/// A `--link` value: `name` or `name:alias` (the docker CLI may send `/name:/me/alias`).
fn parse_link(l: &str) -> Result<(&str, &str)> {
    let (t, a) = l.split_once(':').unwrap_or((l, l));
    let t = t.trim_start_matches('/');
    let a = a.rsplit('/').next().unwrap_or(a);
    if t.is_empty() || a.is_empty() {
        return Err(Error::bad_request(format!("invalid link {l:?}")));
    }
    Ok((t, a))
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
    let order = ordered(&r);
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
        let (Some(subnet), Some(gw)) = (n.rec.subnet(), n.rec.gateway()) else {
            return Err(Error::internal(format!("network {name} has no subnet")));
        };
        let ip = {
            let mut pool = n.pool();
            let pool = pool
                .as_mut()
                .ok_or_else(|| Error::internal(format!("network {name} has no address pool")))?;
            if ep.requested_ip.is_empty() {
                pool.allocate().map_err(net_err)?
            } else {
                let a: Ipv4Addr = ep.requested_ip.parse().map_err(|_| {
                    Error::bad_request(format!("invalid IPv4 address {}", ep.requested_ip))
                })?;
                pool.reserve(a).map_err(net_err)?;
                a
            }
        };
        ep.ip = ip.to_string();
        ep.prefix = subnet.prefix;
        ep.gateway = if n.rec.internal {
            String::new()
        } else {
            gw.to_string()
        };
        ep.mac = fmt_mac(link::mac_for(ip));
        ep.host_ifname = link::random_veth_name();
        ep.ifname = format!("eth{i}");
        // Recorded at once, so a failure further on gives this address back.
        c.rec().net.endpoints.insert(name.clone(), ep.clone());
        filled.push(ep);
    }
    let wanted = wanted_ports(&r)?;
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(target) = filled.first().and_then(|e| e.ip.parse::<Ipv4Addr>().ok()) else {
        return Ok(());
    };
    let mut fds = Vec::new();
    let mut published = Vec::new();
    for w in &wanted {
        // Recorded as they are taken, so that a failure further on gives them back.
        let (fd, port) = take_port(w, d.net.cfg.userland_proxy)?;
        let mut p = Published {
            proto: w.proto,
            host_ip: w.host_ip,
            host_port: port,
            container_ip: target,
            container_port: w.container_port,
            proxy_pid: 0,
        };
        if d.net.cfg.userland_proxy {
            p.proxy_pid = proxy_port(d, &c.id, &p, fd)?;
        } else {
            fds.push(fd);
        }
        published.push(p);
        c.rec().net.ports = published.clone();
    }
    d.net.hold_ports(&c.id, fds);
    Ok(())
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// The names a container answers to on a user-defined network.
pub fn dns_names(r: &Record, ep: &Endpoint) -> Vec<String> {
    let mut names = vec![r.bare_name().to_string(), r.short_id().to_string()];
    for a in &ep.aliases {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    if !r.config.hostname.is_empty() && !names.contains(&r.config.hostname) {
        names.push(r.config.hostname.clone());
    }
    names
}

/// Once the container's init exists (`pid`): its veths, its DNS names, its published ports.
pub async fn wire(d: &Daemon, c: &Container, pid: i32) -> Result<()> {
    let r = c.snapshot();
    if !matches!(mode(&r), Mode::Bridge) {
        return Ok(());
    }
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::internal(format!("network namespace of the container: {e}")))?;
    for name in ordered(&r) {
        let Some(ep) = r.net.endpoints.get(&name) else {
            continue;
        };
        if ep.ip.is_empty() {
            continue;
        }
        connect_one(d, &r, &name, ep, &netns).await?;
    }
    d.net
        .table
        .add_ports(&port_maps(&r))
        .map_err(|e| Error::internal(format!("publishing ports: {e}")))?;
    Ok(())
}

async fn connect_one(
    d: &Daemon,
    r: &Record,
    name: &str,
    ep: &Endpoint,
    netns: &std::fs::File,
) -> Result<()> {
    let n = d.net.find(&ep.network_id)?;
    let bad = |what: &str| Error::internal(format!("endpoint on {name}: bad {what}"));
    let spec = link::Endpoint {
        bridge: n.rec.bridge.clone(),
        host_ifname: ep.host_ifname.clone(),
        ifname: ep.ifname.clone(),
        mac: parse_mac(&ep.mac).ok_or_else(|| bad("mac"))?,
        ip: ep.ip.parse().map_err(|_| bad("address"))?,
        prefix: ep.prefix,
        // Only the first interface routes out.
        gateway: if ep.ifname == "eth0" {
            ep.gateway.parse().ok()
        } else {
            None
        },
        mtu: n.rec.mtu,
    };
    d.net
        .link
        .connect_endpoint(&spec, netns.as_fd())
        .await
        .map_err(|e| Error::internal(format!("connecting to network {name}: {e}")))?;
    if n.rec.has_dns() {
        n.names.set(&r.id, &dns_names(r, ep), spec.ip);
        let own: Vec<SocketAddr> = r
            .host_config
            .dns
            .iter()
            .flatten()
            .filter_map(|s| s.parse::<Ipv4Addr>().ok())
            .map(|a| SocketAddr::new(a.into(), 53))
            .collect();
        if !own.is_empty() {
            n.names.set_upstreams_for(&r.id, spec.ip, own);
        }
    }
    Ok(())
}

/// Give back what [`allocate`] took, in memory only (addresses, held ports).
fn release_local(d: &Daemon, c: &Container) {
    d.net.drop_ports(&c.id);
    let ports = c.rec().net.ports.clone();
    d.net.stop_proxies(&c.id, &ports);
    let mut r = c.rec();
    for ep in r.net.endpoints.values_mut() {
        if let (Ok(n), Ok(ip)) = (d.net.find(&ep.network_id), ep.ip.parse::<Ipv4Addr>()) {
            if let Some(p) = n.pool().as_mut() {
                p.release(ip);
            }
            n.names.remove(&c.id);
        }
        ep.ip.clear();
        ep.prefix = 0;
        ep.gateway.clear();
        ep.mac.clear();
        ep.host_ifname.clear();
        ep.ifname.clear();
    }
    r.net.ports.clear();
}

/// Undo [`allocate`] and [`wire`]: after the container stopped, or when its start failed.
pub fn release(d: &Daemon, c: &Container) {
    let r = c.snapshot();
    if let Err(e) = d.net.table.remove_ports(&port_maps(&r)) {
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
    for (name, ep) in &r.net.endpoints {
        let (Ok(n), Ok(ip)) = (d.net.find(&ep.network_id), ep.ip.parse::<Ipv4Addr>()) else {
            continue;
        };
        if let Some(p) = n.pool().as_mut() {
            if let Err(e) = p.reserve(ip) {
                tracing::warn!("container {}: address {ip} on {name}: {e}", c.id);
            }
        }
        if n.rec.has_dns() {
            n.names.set(&r.id, &dns_names(&r, ep), ip);
        }
    }
    let mut fds = Vec::new();
    let mut ports = r.net.ports.clone();
    for p in ports.iter_mut() {
        if p.proxy_pid != 0 && super::proxy_alive(p) {
            continue;
        }
        match bind_port(p.proto, p.host_ip, p.host_port, d.net.cfg.userland_proxy) {
            Ok((fd, _)) if d.net.cfg.userland_proxy => match proxy_port(d, &c.id, p, fd) {
                Ok(pid) => p.proxy_pid = pid,
                Err(e) => tracing::warn!(
                    "container {}: proxy for port {}: {}",
                    c.id,
                    p.host_port,
                    e.0.message
                ),
            },
            Ok((fd, _)) => fds.push(fd),
            Err(e) => tracing::warn!("container {}: holding host port {}: {e}", c.id, p.host_port),
        }
    }
    c.rec().net.ports = ports;
    d.net.hold_ports(&c.id, fds);
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
    if !n.rec.is_bridge() {
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
    let ep = new_endpoint(n, cfg.as_ref())?;
    if !r.is_running() || r.state.pid <= 0 {
        c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
        if let Err(e) = c.update(|_| {}) {
            c.rec().net.endpoints.remove(&n.rec.name);
            return Err(e);
        }
        return Ok(());
    }
    let mut ep = ep;
    let subnet = n
        .rec
        .subnet()
        .ok_or_else(|| Error::internal("network without subnet"))?;
    let ip = {
        let mut pool = n.pool();
        let pool = pool
            .as_mut()
            .ok_or_else(|| Error::internal("network without address pool"))?;
        if ep.requested_ip.is_empty() {
            pool.allocate().map_err(net_err)?
        } else {
            let a: Ipv4Addr = ep
                .requested_ip
                .parse()
                .map_err(|_| Error::bad_request("invalid IPv4 address"))?;
            pool.reserve(a).map_err(net_err)?;
            a
        }
    };
    let used: Vec<String> = r.net.endpoints.values().map(|e| e.ifname.clone()).collect();
    let ifname = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !used.contains(n))
        .unwrap_or_else(|| "eth9".into());
    ep.ip = ip.to_string();
    ep.prefix = subnet.prefix;
    ep.gateway = n.rec.gateway.clone();
    ep.mac = fmt_mac(link::mac_for(ip));
    ep.host_ifname = link::random_veth_name();
    ep.ifname = ifname;
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", r.state.pid));
    let res = match netns {
        Ok(f) => connect_one(d, &r, &n.rec.name, &ep, &f).await,
        Err(e) => Err(Error::internal(format!(
            "network namespace of the container: {e}"
        ))),
    };
    if let Err(e) = res {
        if let Some(p) = n.pool().as_mut() {
            p.release(ip);
        }
        let _ = d.net.link.disconnect_endpoint(&ep.host_ifname).await;
        return Err(e);
    }
    c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
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
    if !n.rec.is_bridge() && r.is_running() {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container cannot be disconnected from {} network while running",
                n.rec.name
            ),
        )));
    }
    if !ep.host_ifname.is_empty() {
        d.net
            .link
            .disconnect_endpoint(&ep.host_ifname)
            .await
            .map_err(net_err)?;
    }
    if let Ok(ip) = ep.ip.parse::<Ipv4Addr>() {
        if let Some(p) = n.pool().as_mut() {
            p.release(ip);
        }
    }
    n.names.remove(&c.id);
    c.rec().net.endpoints.remove(&n.rec.name);
    c.update_state(|_| {});
    d.network_event(n, "disconnect", Some(&c.id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_macs() {
        assert_eq!(parse_link("web:w").unwrap(), ("web", "w"));
        assert_eq!(parse_link("/web:/me/w").unwrap(), ("web", "w"));
        assert_eq!(parse_link("web").unwrap(), ("web", "web"));
        assert_eq!(fmt_mac([2, 0x42, 10, 1, 0, 2]), "02:42:0a:01:00:02");
        assert_eq!(parse_mac("02:42:0a:01:00:02"), Some([2, 0x42, 10, 1, 0, 2]));
        assert_eq!(parse_mac("02:42"), None);
    }
}
