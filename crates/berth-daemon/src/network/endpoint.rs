//! A container on its networks: endpoints chosen at create and connect, addresses, veths, DNS
//! names and published ports while it runs, and its /etc/hosts and /etc/resolv.conf.

use super::{net_err, Network};
use crate::container::{Endpoint, Published, Record};
use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
use berth_api::network::EndpointSettings;
use berth_network::link;
use berth_network::nft::{PortMap, Proto};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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
fn primary_name(r: &Record) -> &str {
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

/// One port binding asked for: container port/proto, host address, host port or range.
struct Wanted {
    proto: Proto,
    container_port: u16,
    host_ip: Option<Ipv4Addr>,
    /// (first, last); (0, 0) for any free port.
    host_ports: (u16, u16),
}

fn parse_port_key(k: &str) -> Result<(u16, Proto)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            return Err(Error::bad_request(format!(
                "invalid proto {other:?} in port {k}: berth publishes tcp and udp"
            )))
        }
    };
    let port = p
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::bad_request(format!("invalid port {k:?}")))?;
    Ok((port, proto))
}

fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad = || Error::bad_request(format!("invalid host port {s:?}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// What `-p` and `-P` ask for (the docker CLI has expanded container port ranges already).
fn wanted_ports(r: &Record) -> Result<Vec<Wanted>> {
    let h = &r.host_config;
    let mut out = Vec::new();
    let bindings = h.port_bindings.clone().unwrap_or_default();
    for (key, list) in &bindings {
        let (container_port, proto) = parse_port_key(key)?;
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![berth_api::container::PortBinding::default()]
        } else {
            list
        };
        for b in list {
            let host_ip = match b.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                ip => match ip.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(a)) => Some(a),
                    // IPv6 is not served; Docker also binds "::" next to 0.0.0.0.
                    Ok(std::net::IpAddr::V6(_)) => continue,
                    Err(_) => {
                        return Err(Error::bad_request(format!(
                            "invalid host IP {ip:?} for port {key}"
                        )))
                    }
                },
            };
            out.push(Wanted {
                proto,
                container_port,
                host_ip,
                host_ports: parse_host_ports(&b.host_port)?,
            });
        }
    }
    if h.publish_all_ports {
        for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
            if bindings.contains_key(key) {
                continue;
            }
            let (container_port, proto) = parse_port_key(key)?;
            out.push(Wanted {
                proto,
                container_port,
                host_ip: None,
                host_ports: (0, 0),
            });
        }
    }
    Ok(out)
}

/// Hold a host port: a socket bound to it (TCP: not listening), so no other binding takes it
/// while the DNAT rule sends its traffic to the container.
fn bind_port(
    proto: Proto,
    ip: Option<Ipv4Addr>,
    port: u16,
    for_proxy: bool,
) -> std::io::Result<(OwnedFd, u16)> {
    use nix::sys::socket::{
        bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)?;
    // Only for a proxy's listening socket: two merely bound sockets with SO_REUSEADDR could
    // share a port, and the binding is what refuses a port that is taken.
    if for_proxy && proto == Proto::Tcp {
        // A proxied port may still have connections in TIME_WAIT from an earlier holder.
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReuseAddr, &true)?;
    }
    let addr = SockaddrIn::from(SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port));
    bind(fd.as_raw_fd(), &addr)?;
    let bound: SockaddrIn = getsockname(fd.as_raw_fd())?;
    Ok((fd, bound.port()))
}

fn take_port(w: &Wanted, for_proxy: bool) -> Result<(OwnedFd, u16)> {
    let shown_ip = w.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let (lo, hi) = w.host_ports;
    let mut last_err = None;
    for port in lo..=hi {
        match bind_port(w.proto, w.host_ip, port, for_proxy) {
            Ok(x) => return Ok(x),
            Err(e) => last_err = Some(e),
        }
    }
    let e = last_err.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::internal(if lo == hi && lo != 0 {
        format!("driver failed programming external connectivity on endpoint: Bind for {shown_ip}:{lo} failed: port is already allocated ({e})")
    } else {
        format!("driver failed programming external connectivity on endpoint: no free port in {shown_ip}:{lo}-{hi} ({e})")
    }))
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

/// Hand a taken host port to a userland proxy (listening first, for TCP).
fn proxy_port(d: &Daemon, id: &str, p: &Published, fd: OwnedFd) -> Result<u32> {
    if p.proto == Proto::Tcp {
        nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::MAXCONN)
            .map_err(|e| Error::internal(format!("listening on host port {}: {e}", p.host_port)))?;
    }
    d.net.spawn_proxy(
        id,
        p.proto,
        fd,
        SocketAddr::new(p.container_ip.into(), p.container_port),
    )
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

pub fn port_maps(r: &Record) -> Vec<PortMap> {
    r.net
        .ports
        .iter()
        .map(|p| PortMap {
            proto: p.proto,
            host_ip: p.host_ip,
            host_port: p.host_port,
            container_ip: p.container_ip,
            container_port: p.container_port,
        })
        .collect()
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
        c.update(|_| {})?;
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
    c.update(|_| {})?;
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
    c.update(|_| {})?;
    Ok(())
}

/// The `NetworkSettings` of inspect.
pub fn settings(d: &Daemon, r: &Record) -> serde_json::Value {
    let running = r.is_running();
    let mut networks = serde_json::Map::new();
    for (name, ep) in &r.net.endpoints {
        let user = d
            .net
            .find(&ep.network_id)
            .map(|n| !n.rec.predefined)
            .unwrap_or(false);
        let s = EndpointSettings {
            ipam_config: (!ep.requested_ip.is_empty()).then(|| berth_api::network::EndpointIpam {
                ipv4_address: ep.requested_ip.clone(),
                ..Default::default()
            }),
            links: (!ep.links.is_empty()).then(|| {
                ep.links
                    .iter()
                    .map(|l| {
                        let (t, a) = l.split_once(':').unwrap_or((l, l));
                        format!("/{t}:{}/{a}", r.name)
                    })
                    .collect()
            }),
            mac_address: ep.mac.clone(),
            aliases: (!ep.aliases.is_empty()).then(|| ep.aliases.clone()),
            network_id: ep.network_id.clone(),
            endpoint_id: if running {
                ep.endpoint_id.clone()
            } else {
                String::new()
            },
            gateway: ep.gateway.clone(),
            ip_address: ep.ip.clone(),
            ip_prefix_len: i64::from(ep.prefix),
            dns_names: (user && running).then(|| dns_names(r, ep)),
            ..Default::default()
        };
        networks.insert(
            name.clone(),
            serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
        );
    }
    let mut ports = serde_json::Map::new();
    for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
        ports.insert(key.clone(), serde_json::Value::Null);
    }
    if running {
        for p in &r.net.ports {
            let key = format!("{}/{}", p.container_port, p.proto.as_str());
            let entry = ports
                .entry(key)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = serde_json::Value::Array(Vec::new());
            }
            if let Some(a) = entry.as_array_mut() {
                a.push(serde_json::json!({
                    "HostIp": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                    "HostPort": p.host_port.to_string(),
                }));
            }
        }
    } else {
        for (key, list) in r.host_config.port_bindings.iter().flatten() {
            let _ = list;
            ports.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let def = r.net.endpoints.get("bridge");
    serde_json::json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": if running && r.state.pid > 0 { format!("/proc/{}/ns/net", r.state.pid) } else { String::new() },
        "Ports": ports,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": def.filter(|_| running).map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": def.map(|e| e.gateway.clone()).unwrap_or_default(),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": def.map(|e| e.ip.clone()).unwrap_or_default(),
        "IPPrefixLen": def.map(|e| e.prefix).unwrap_or(0),
        "IPv6Gateway": "",
        "MacAddress": def.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// The `Ports` of a container list row.
pub fn summary_ports(r: &Record) -> Vec<berth_api::container::PortSummary> {
    let mut out = Vec::new();
    let running = r.is_running();
    for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
        let Ok((port, proto)) = parse_port_key(key) else {
            continue;
        };
        let published = running
            && r.net
                .ports
                .iter()
                .any(|p| p.container_port == port && p.proto == proto);
        if !published {
            out.push(berth_api::container::PortSummary {
                ip: None,
                private_port: port,
                public_port: None,
                kind: proto.as_str().into(),
            });
        }
    }
    if running {
        for p in &r.net.ports {
            out.push(berth_api::container::PortSummary {
                ip: Some(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                kind: p.proto.as_str().into(),
            });
        }
    }
    out
}

/// What the container's spec needs from its networking: the namespace and files of the
/// container whose network it shares, and link variables.
pub fn spec_for(d: &Daemon, r: &Record) -> Result<crate::container::spec::NetSpec> {
    match mode(r) {
        Mode::Container(other) => {
            let o = d.find(&other)?;
            let or = o.snapshot();
            if or.state.status != crate::container::status::RUNNING || or.state.pid <= 0 {
                return Err(Error::conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    or.id
                )));
            }
            Ok(crate::container::spec::NetSpec {
                netns: Some(format!("/proc/{}/ns/net", or.state.pid).into()),
                files: Some(o.paths.clone()),
                hostname: Some(or.config.hostname.clone()),
                env: Vec::new(),
            })
        }
        _ => Ok(crate::container::spec::NetSpec {
            env: link_env(d, r),
            ..Default::default()
        }),
    }
}

/// Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container.
pub fn write_files(d: &Daemon, c: &Container, hostname: &str) -> Result<()> {
    let p = &c.paths;
    let r = c.snapshot();
    let h = &r.host_config;
    let m = mode(&r);
    if matches!(m, Mode::Container(_)) {
        // It uses the other container's files.
        return Ok(());
    }
    std::fs::write(p.hostname(), format!("{hostname}\n"))?;
    let mut hosts = String::new();
    if matches!(m, Mode::Host) {
        hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
    } else {
        hosts.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    }
    for entry in h.extra_hosts.iter().flatten() {
        let (name, ip) = entry
            .split_once([':', '='])
            .filter(|(n, ip)| !n.is_empty() && ip.parse::<std::net::IpAddr>().is_ok())
            .ok_or_else(|| {
                Error::bad_request(format!("invalid IP address in add-host: {entry:?}"))
            })?;
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    let primary = r.net.endpoints.get(primary_name(&r));
    if let Some(ep) = primary.filter(|e| !e.ip.is_empty()) {
        for l in &ep.links {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let t = d.find(target)?;
            let tr = t.snapshot();
            let tip = tr
                .net
                .endpoints
                .get("bridge")
                .map(|e| e.ip.clone())
                .filter(|ip| !ip.is_empty())
                .ok_or_else(|| {
                    Error::bad_request(format!(
                        "cannot link to a non running container: /{target} AS {}/{alias}",
                        r.name
                    ))
                })?;
            hosts.push_str(&format!(
                "{tip}\t{alias} {} {}\n",
                tr.config.hostname,
                tr.bare_name()
            ));
        }
        hosts.push_str(&format!("{}\t{hostname}\n", ep.ip));
    }
    std::fs::write(p.hosts(), hosts)?;

    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut nameservers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("nameserver"), Some(a)) => nameservers.push(a.to_string()),
            (Some("search" | "domain"), Some(first)) => {
                search = std::iter::once(first).chain(w).map(String::from).collect()
            }
            (Some("options"), Some(first)) => {
                options = std::iter::once(first).chain(w).map(String::from).collect()
            }
            _ => {}
        }
    }
    let own_dns: Vec<String> = h.dns.clone().unwrap_or_default();
    let daemon_dns: Vec<String> = d.net.cfg.dns.iter().map(|a| a.to_string()).collect();
    let primary_net = primary.and_then(|e| d.net.find(&e.network_id).ok());
    let embedded = primary_net
        .as_ref()
        .filter(|n| d.net.serves_dns(n))
        .map(|n| n.rec.gateway.clone());
    match (&m, embedded) {
        (Mode::Host, _) => {
            if !own_dns.is_empty() {
                nameservers = own_dns;
            } else if !daemon_dns.is_empty() {
                nameservers = daemon_dns;
            }
        }
        // User-defined networks (and a default bridge whose host resolvers are on
        // loopback) answer through the embedded DNS, which forwards what it does not know.
        (Mode::Bridge, Some(gw))
            if own_dns.is_empty() || primary_net.as_ref().is_some_and(|n| n.rec.has_dns()) =>
        {
            nameservers = vec![gw];
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
        }
        _ => {
            if !own_dns.is_empty() {
                nameservers = own_dns;
            } else if !daemon_dns.is_empty() {
                nameservers = daemon_dns;
            } else {
                // The host's loopback resolvers are unreachable from a namespace of its own.
                nameservers.retain(|a| !(a.starts_with("127.") || a == "::1"));
            }
        }
    }
    if let Some(s) = h.dns_search.as_ref().filter(|d| !d.is_empty()) {
        search = s.clone();
    }
    if let Some(o) = h.dns_options.as_ref().filter(|d| !d.is_empty()) {
        options = o.clone();
    }
    let mut out = String::new();
    for ns in &nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    std::fs::write(p.resolv_conf(), out)?;
    Ok(())
}

/// Docker's link environment: `ALIAS_NAME`, `ALIAS_PORT_80_TCP…` and the target's own
/// variables as `ALIAS_ENV_…`.
pub fn link_env(d: &Daemon, r: &Record) -> Vec<String> {
    let mut out = Vec::new();
    let Some(ep) = r.net.endpoints.get(primary_name(r)) else {
        return out;
    };
    for l in &ep.links {
        let (target, alias) = l.split_once(':').unwrap_or((l, l));
        let Ok(t) = d.find(target) else { continue };
        let tr = t.snapshot();
        let Some(ip) = tr.net.endpoints.get("bridge").map(|e| e.ip.clone()) else {
            continue;
        };
        let prefix: String = alias
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut ports: Vec<(u16, Proto)> = tr
            .config
            .exposed_ports
            .iter()
            .flatten()
            .filter_map(|(k, _)| parse_port_key(k).ok())
            .collect();
        ports.sort();
        if let Some((p, proto)) = ports.first() {
            out.push(format!("{prefix}_PORT={}://{ip}:{p}", proto.as_str()));
        }
        for (p, proto) in &ports {
            let base = format!("{prefix}_PORT_{p}_{}", proto.as_str().to_ascii_uppercase());
            out.push(format!("{base}={}://{ip}:{p}", proto.as_str()));
            out.push(format!("{base}_ADDR={ip}"));
            out.push(format!("{base}_PORT={p}"));
            out.push(format!("{base}_PROTO={}", proto.as_str()));
        }
        out.push(format!("{prefix}_NAME={}/{alias}", r.name));
        for kv in tr.config.env.iter().flatten() {
            let key = kv.split('=').next().unwrap_or(kv);
            if matches!(key, "HOME" | "PATH" | "HOSTNAME") {
                continue;
            }
            out.push(format!("{prefix}_ENV_{kv}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_keys_and_ranges() {
        assert_eq!(parse_port_key("80/tcp").unwrap(), (80, Proto::Tcp));
        assert_eq!(parse_port_key("53/udp").unwrap(), (53, Proto::Udp));
        assert_eq!(parse_port_key("8080").unwrap(), (8080, Proto::Tcp));
        assert!(parse_port_key("80/sctp").is_err());
        assert!(parse_port_key("0/tcp").is_err());
        assert!(parse_port_key("x").is_err());
        assert_eq!(parse_host_ports("").unwrap(), (0, 0));
        assert_eq!(parse_host_ports("8000-8010").unwrap(), (8000, 8010));
        assert!(parse_host_ports("9-1").is_err());
        assert!(parse_host_ports("70000").is_err());
    }

    #[test]
    fn links_and_macs() {
        assert_eq!(parse_link("web:w").unwrap(), ("web", "w"));
        assert_eq!(parse_link("/web:/me/w").unwrap(), ("web", "w"));
        assert_eq!(parse_link("web").unwrap(), ("web", "web"));
        assert_eq!(fmt_mac([2, 0x42, 10, 1, 0, 2]), "02:42:0a:01:00:02");
        assert_eq!(parse_mac("02:42:0a:01:00:02"), Some([2, 0x42, 10, 1, 0, 2]));
        assert_eq!(parse_mac("02:42"), None);
    }

    #[test]
    fn holds_a_port_and_refuses_a_second_binding() {
        let (fd, port) = bind_port(Proto::Tcp, Some(Ipv4Addr::LOCALHOST), 0, false).unwrap();
        assert!(port > 0);
        let again = bind_port(Proto::Tcp, Some(Ipv4Addr::LOCALHOST), port, false);
        assert!(again.is_err());
        drop(fd);
        assert!(bind_port(Proto::Tcp, Some(Ipv4Addr::LOCALHOST), port, false).is_ok());
    }
}
