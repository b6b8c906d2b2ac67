//! A container on its networks: endpoints chosen at create and connect, addresses, veths, DNS
//! names and published ports while it runs, and its /etc/hosts and /etc/resolv.conf.

use super::ports::{port_maps, proxied, proxy_port, wanted_ports};
use super::{net_err, Network};
use crate::container::{Endpoint, Published, Record};
use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
use berth_api::network::EndpointSettings;
use berth_network::files::parse_link;
use berth_network::link;
use berth_network::ports::{bind_port, take_port, v6_twin};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
    let ip6 = ep
        .ipam_config
        .as_ref()
        .map(|c| c.ipv6_address.as_str())
        .unwrap_or("");
    if !ip6.is_empty() {
        if !user {
            return Err(Error::bad_request(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        let a: Ipv6Addr = ip6
            .parse()
            .map_err(|_| Error::bad_request(format!("invalid IPv6 address: {ip6}")))?;
        if !n.rec.subnet6().is_some_and(|s| s.contains(a)) {
            return Err(Error::bad_request(format!(
                "no configured subnet contains IP address {a}{}",
                if n.rec.enable_ipv6 {
                    ""
                } else {
                    " (the network is not an IPv6 network: create it with --ipv6)"
                }
            )));
        }
    }
    for l in ep
        .ipam_config
        .as_ref()
        .and_then(|c| c.link_local_ips.as_ref())
        .into_iter()
        .flatten()
    {
        if l.parse::<IpAddr>().is_err() {
            return Err(Error::bad_request(format!(
                "invalid link-local IP address: {l}"
            )));
        }
    }
    if !ep.mac_address.is_empty() {
        check_mac(&ep.mac_address)?;
    }
    if let Some(list) = ep.driver_opts.as_ref().and_then(|o| o.get(SYSCTLS_OPT)) {
        parse_sysctls(list, "IFNAME")?;
    }
    Ok(())
}

/// The driver option with per-interface sysctls (Docker's bridge driver's), whose keys name
/// the interface `IFNAME`: `net.ipv4.conf.IFNAME.log_martians=1,net.ipv6.conf.IFNAME.x=0`.
const SYSCTLS_OPT: &str = "com.docker.network.endpoint.sysctls";

/// The sysctls `DriverOpts` asks for on `ep`'s interface, keys checked and `IFNAME` replaced.
fn endpoint_sysctls(ep: &Endpoint) -> Result<Vec<(String, String)>> {
    let Some(list) = ep.driver_opts.get(SYSCTLS_OPT) else {
        return Ok(Vec::new());
    };
    parse_sysctls(list, &ep.ifname)
}

fn parse_sysctls(list: &str, ifname: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| {
            Error::bad_request(format!("invalid sysctl {item:?} in {SYSCTLS_OPT}: {why}"))
        };
        let (key, value) = item.split_once('=').ok_or_else(|| bad("want key=value"))?;
        let parts: Vec<&str> = key.split('.').collect();
        let per_interface = matches!(
            parts.as_slice(),
            ["net", "ipv4" | "ipv6" | "mpls", "conf", "IFNAME", rest] if !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        if !per_interface {
            return Err(bad(
                "only net.{ipv4,ipv6,mpls}.conf.IFNAME.<setting> keys are allowed",
            ));
        }
        if value.is_empty() || value.contains(['\n', '/']) {
            return Err(bad("bad value"));
        }
        out.push((key.replacen("IFNAME", ifname, 1), value.to_string()));
    }
    Ok(out)
}

/// A MAC address an interface can take: six hex bytes, not a multicast address.
fn check_mac(mac: &str) -> Result<[u8; 6]> {
    match parse_mac(mac) {
        Some(m) if m[0] & 1 == 0 => Ok(m),
        Some(_) => Err(Error::bad_request(format!(
            "invalid MAC address {mac}: it is a multicast address"
        ))),
        None => Err(Error::bad_request(format!("invalid MAC address: {mac}"))),
    }
}

/// The prefix a `--link-local-ip` gets: the link-local networks' (169.254.0.0/16,
/// fe80::/64), else the address alone.
fn link_local_prefix(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(v) if v.is_link_local() => 16,
        IpAddr::V4(_) => 32,
        IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80 => 64,
        IpAddr::V6(_) => 128,
    }
}

fn new_endpoint(n: &Network, ep: Option<&EndpointSettings>) -> Result<Endpoint> {
    let ep = ep.cloned().unwrap_or_default();
    check_endpoint_config(n, &ep)?;
    let ipam = ep.ipam_config.unwrap_or_default();
    Ok(Endpoint {
        network_id: n.rec.id.clone(),
        endpoint_id: crate::util::random_id()?,
        aliases: ep.aliases.unwrap_or_default(),
        requested_ip: ipam.ipv4_address,
        requested_ip6: ipam.ipv6_address,
        link_local_ips: ipam.link_local_ips.unwrap_or_default(),
        requested_mac: ep.mac_address.to_ascii_lowercase(),
        driver_opts: ep.driver_opts.unwrap_or_default(),
        gw_priority: ep.gw_priority,
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
        fill(&n, name, &mut ep, format!("eth{i}"))?;
        // Recorded at once, so a failure further on gives this address back.
        c.rec().net.endpoints.insert(name.clone(), ep.clone());
        filled.push(ep);
    }
    let wanted = wanted_ports(&r)?;
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(target) = filled.first().and_then(|e| e.ip.parse::<Ipv4Addr>().ok()) else {
        return Err(Error::bad_request(
            "publishing ports needs an IPv4 address on the container's first network: berth does not publish ports of containers on IPv6-only networks",
        ));
    };
    let target6 = filled.first().and_then(|e| e.ip6.parse::<Ipv6Addr>().ok());
    let mut fds = Vec::new();
    let mut published = Vec::new();
    for w in &wanted {
        // Recorded as they are taken, so that a failure further on gives them back.
        let nat6 = target6.filter(|_| w.host_ip.is_some_and(|h| h.is_ipv6() && !h.is_loopback()));
        let via_proxy = proxied(d, w.host_ip, nat6.is_some());
        let (fd, port) = take_port(w, via_proxy)?;
        let mut p = Published {
            proto: w.proto,
            host_ip: w.host_ip,
            host_port: port,
            container_ip: target,
            container_ip6: nat6,
            container_port: w.container_port,
            proxy_pid: 0,
        };
        if via_proxy {
            p.proxy_pid = proxy_port(d, &c.id, &p, fd)?;
        } else {
            fds.push(fd);
        }
        published.push(p);
        c.rec().net.ports = published.clone();
        // Every address means IPv6 ones too when the container has an IPv6 address.
        if let (None, Some(t6)) = (w.host_ip, target6) {
            let twin = v6_twin(w, port);
            let via_proxy = proxied(d, twin.host_ip, true);
            let (fd, _) = take_port(&twin, via_proxy)?;
            let mut p6 = Published {
                host_ip: twin.host_ip,
                container_ip6: Some(t6),
                proxy_pid: 0,
                ..p
            };
            if via_proxy {
                p6.proxy_pid = proxy_port(d, &c.id, &p6, fd)?;
            } else {
                fds.push(fd);
            }
            published.push(p6);
            c.rec().net.ports = published.clone();
        }
    }
    d.net.hold_ports(&c.id, fds);
    Ok(())
}

/// Addresses (IPv4, and IPv6 on an IPv6 network), MAC and interface names for endpoint `ep`
/// on network `n` (named `name`), to be wired as `ifname`. On error nothing stays taken.
fn fill(n: &Network, name: &str, ep: &mut Endpoint, ifname: String) -> Result<()> {
    // An IPv6-only network has neither IPv4 subnet nor pool.
    let v4 = match (n.rec.subnet(), n.rec.gateway()) {
        (Some(subnet), Some(gw)) => Some((subnet, gw)),
        _ if !n.rec.enable_ipv4 => None,
        _ => return Err(Error::internal(format!("network {name} has no subnet"))),
    };
    let mut pools = n.pools();
    let ip = match v4 {
        None => None,
        Some(_) => {
            if !pools.has_v4() {
                return Err(Error::internal(format!(
                    "network {name} has no address pool"
                )));
            }
            let want = if ep.requested_ip.is_empty() {
                None
            } else {
                Some(ep.requested_ip.parse::<Ipv4Addr>().map_err(|_| {
                    Error::bad_request(format!("invalid IPv4 address {}", ep.requested_ip))
                })?)
            };
            Some(pools.request_v4(want).map_err(net_err)?)
        }
    };
    let ip6 = match n.rec.subnet6() {
        None => None,
        Some(s6) => {
            let taken = if !pools.has_v6() {
                Err(Error::internal(format!(
                    "network {name} has no IPv6 address pool"
                )))
            } else if ep.requested_ip6.is_empty() {
                pools.request_v6(None).map_err(net_err)
            } else {
                match ep.requested_ip6.parse::<Ipv6Addr>() {
                    Ok(a) => pools.request_v6(Some(a)).map_err(net_err),
                    Err(_) => Err(Error::bad_request(format!(
                        "invalid IPv6 address {}",
                        ep.requested_ip6
                    ))),
                }
            };
            match taken {
                Ok(a) => Some((a, s6.prefix)),
                Err(e) => {
                    if let Some(ip) = ip {
                        pools.release(ip.into());
                    }
                    return Err(e);
                }
            }
        }
    };
    drop(pools);
    if let (Some(ip), Some((subnet, gw))) = (ip, v4) {
        ep.ip = ip.to_string();
        ep.prefix = subnet.prefix;
        ep.gateway = if n.rec.internal {
            String::new()
        } else {
            gw.to_string()
        };
    }
    if let Some((a, p)) = ip6 {
        ep.ip6 = a.to_string();
        ep.prefix6 = p;
        ep.gateway6 = if n.rec.internal {
            String::new()
        } else {
            n.rec.gateway6.clone()
        };
    }
    // Docker's 02:42 + the IPv4 address; on an IPv6-only network the IPv6 address's last
    // four bytes take its place.
    let for_mac = ip.or_else(|| {
        ip6.map(|(a, _)| {
            let o = a.octets();
            Ipv4Addr::new(o[12], o[13], o[14], o[15])
        })
    });
    ep.mac = match for_mac {
        _ if !ep.requested_mac.is_empty() => ep.requested_mac.clone(),
        Some(a) => fmt_mac(link::mac_for(a)),
        None => return Err(Error::internal(format!("network {name} has no subnet"))),
    };
    ep.host_ifname = link::random_veth_name();
    ep.ifname = ifname;
    Ok(())
}

/// Give back the addresses [`fill`] took for `ep` on `n`.
fn unfill(n: &Network, ep: &Endpoint) {
    let mut pools = n.pools();
    if let Ok(ip) = ep.ip.parse::<Ipv4Addr>() {
        pools.release(ip.into());
    }
    if let Ok(ip) = ep.ip6.parse::<Ipv6Addr>() {
        pools.release(ip.into());
    }
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

/// What the embedded DNS answers for the container on network `net`: its [`dns_names`],
/// also qualified with the network's name (`web.mynet`).
fn dns_keys(r: &Record, ep: &Endpoint, net: &str) -> Vec<String> {
    let names = dns_names(r, ep);
    let qualified: Vec<String> = names.iter().map(|n| format!("{n}.{net}")).collect();
    names.into_iter().chain(qualified).collect()
}

/// An endpoint's links as (alias, target) pairs.
fn link_names(ep: &Endpoint) -> Vec<(String, String)> {
    ep.links
        .iter()
        .map(|l| {
            let (t, a) = l.split_once(':').unwrap_or((l, l));
            (a.to_string(), t.to_string())
        })
        .collect()
}

/// Each DNS network of the container also answers it with the names of its other networks
/// (a container resolves names on every network it is attached to).
fn refresh_peers(d: &Daemon, r: &Record) {
    let nets: Vec<(Arc<Network>, Ipv4Addr)> = r
        .net
        .endpoints
        .values()
        .filter_map(|ep| {
            let n = d.net.find(&ep.network_id).ok()?;
            let ip = ep.ip.parse().ok()?;
            n.rec.has_dns().then_some((n, ip))
        })
        .collect();
    let all: Vec<berth_network::dns::Names> = nets.iter().map(|(n, _)| n.names.clone()).collect();
    for (n, ip) in &nets {
        n.names.set_peers(&r.id, *ip, &all);
    }
}

/// Which endpoint holds the default route: the highest `GwPriority` among those with a
/// gateway, the first in interface order on a tie.
fn router(r: &Record) -> Option<String> {
    let mut best: Option<(&String, i64)> = None;
    for name in ordered(r) {
        if let Some((k, ep)) = r.net.endpoints.get_key_value(&name) {
            if ep.gateway.is_empty() && ep.gateway6.is_empty() {
                continue;
            }
            if best.is_none_or(|(_, p)| ep.gw_priority > p) {
                best = Some((k, ep.gw_priority));
            }
        }
    }
    best.map(|(k, _)| k.clone())
}

/// Once the container's init exists (`pid`): its veths, its DNS names, its published ports.
pub async fn wire(d: &Daemon, c: &Container, pid: i32) -> Result<()> {
    let r = c.snapshot();
    if !matches!(mode(&r), Mode::Bridge) {
        return Ok(());
    }
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::internal(format!("network namespace of the container: {e}")))?;
    let routes = router(&r);
    for name in ordered(&r) {
        let Some(ep) = r.net.endpoints.get(&name) else {
            continue;
        };
        if ep.ip.is_empty() && ep.ip6.is_empty() {
            continue;
        }
        connect_one(d, &r, &name, ep, &netns, routes.as_ref() == Some(&name)).await?;
    }
    refresh_peers(d, &r);
    d.net
        .host
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
    routes: bool,
) -> Result<()> {
    let n = d.net.find(&ep.network_id)?;
    let bad = |what: &str| Error::internal(format!("endpoint on {name}: bad {what}"));
    let ip6 = if ep.ip6.is_empty() {
        None
    } else {
        Some((
            ep.ip6
                .parse::<Ipv6Addr>()
                .map_err(|_| bad("IPv6 address"))?,
            ep.prefix6,
        ))
    };
    let mut extra = Vec::new();
    for l in &ep.link_local_ips {
        let a: IpAddr = l.parse().map_err(|_| bad("link-local address"))?;
        extra.push((a, link_local_prefix(a)));
    }
    let spec = link::Endpoint {
        bridge: n.rec.bridge.clone(),
        host_ifname: ep.host_ifname.clone(),
        ifname: ep.ifname.clone(),
        mac: parse_mac(&ep.mac).ok_or_else(|| bad("mac"))?,
        ip: if ep.ip.is_empty() {
            None
        } else {
            Some(ep.ip.parse().map_err(|_| bad("address"))?)
        },
        prefix: ep.prefix,
        // One interface routes out (see `router`).
        gateway: if routes {
            ep.gateway.parse().ok()
        } else {
            None
        },
        mtu: n.rec.mtu,
        ip6,
        gateway6: if routes {
            ep.gateway6.parse().ok()
        } else {
            None
        },
        extra,
        sysctls: endpoint_sysctls(ep)?,
    };
    d.net
        .host
        .link
        .connect_endpoint(&spec, netns.as_fd())
        .await
        .map_err(|e| Error::internal(format!("connecting to network {name}: {e}")))?;
    if n.rec.has_dns() {
        n.names.set_addrs(
            &r.id,
            &dns_keys(r, ep, &n.rec.name),
            spec.ip,
            ip6.map(|(a, _)| a),
        );
        let own: Vec<SocketAddr> = r
            .host_config
            .dns
            .iter()
            .flatten()
            .filter_map(|s| s.parse::<Ipv4Addr>().ok())
            .map(|a| SocketAddr::new(a.into(), 53))
            .collect();
        // Clients are told apart by IPv4 address (none on an IPv6-only network).
        if let Some(ip) = spec.ip {
            if !own.is_empty() {
                n.names.set_upstreams_for(&r.id, ip, own);
            }
            n.names.set_links(&r.id, ip, &link_names(ep));
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
        if let Ok(n) = d.net.find(&ep.network_id) {
            unfill(&n, ep);
            n.names.remove(&c.id);
        }
        ep.ip.clear();
        ep.prefix = 0;
        ep.gateway.clear();
        ep.ip6.clear();
        ep.prefix6 = 0;
        ep.gateway6.clear();
        ep.mac.clear();
        ep.host_ifname.clear();
        ep.ifname.clear();
    }
    r.net.ports.clear();
}

/// Undo [`allocate`] and [`wire`]: after the container stopped, or when its start failed.
pub fn release(d: &Daemon, c: &Container) {
    let r = c.snapshot();
    if let Err(e) = d.net.host.table.remove_ports(&port_maps(&r)) {
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
        let Ok(n) = d.net.find(&ep.network_id) else {
            continue;
        };
        let ip = ep.ip.parse::<Ipv4Addr>().ok();
        let ip6 = ep.ip6.parse::<Ipv6Addr>().ok();
        if ip.is_none() && ip6.is_none() {
            continue;
        }
        {
            let mut pools = n.pools();
            if let Some(a) = ip.filter(|_| pools.has_v4()) {
                if let Err(e) = pools.request_v4(Some(a)) {
                    tracing::warn!("container {}: address {a} on {name}: {e}", c.id);
                }
            }
            if let Some(a) = ip6.filter(|_| pools.has_v6()) {
                if let Err(e) = pools.request_v6(Some(a)) {
                    tracing::warn!("container {}: address {a} on {name}: {e}", c.id);
                }
            }
        }
        if n.rec.has_dns() {
            n.names
                .set_addrs(&r.id, &dns_keys(&r, ep, &n.rec.name), ip, ip6);
            if let Some(ip) = ip {
                n.names.set_links(&r.id, ip, &link_names(ep));
            }
        }
    }
    refresh_peers(d, &r);
    let mut fds = Vec::new();
    let mut ports = r.net.ports.clone();
    for p in ports.iter_mut() {
        if p.proxy_pid != 0 && berth_network::service::proxy_alive(p) {
            continue;
        }
        let via_proxy = proxied(d, p.host_ip, p.container_ip6.is_some());
        match bind_port(p.proto, p.host_ip, p.host_port, via_proxy) {
            Ok((fd, _)) if via_proxy => match proxy_port(d, &c.id, p, fd) {
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
    let mut ep = new_endpoint(n, cfg.as_ref())?;
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
    fill(n, &n.rec.name, &mut ep, ifname)?;
    // The new endpoint takes the default route when none has one or it outranks them all.
    let routes = r
        .net
        .endpoints
        .values()
        .filter(|e| !e.gateway.is_empty() || !e.gateway6.is_empty())
        .all(|e| ep.gw_priority > e.gw_priority);
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", r.state.pid));
    let res = match netns {
        Ok(f) => connect_one(d, &r, &n.rec.name, &ep, &f, routes).await,
        Err(e) => Err(Error::internal(format!(
            "network namespace of the container: {e}"
        ))),
    };
    if let Err(e) = res {
        unfill(n, &ep);
        n.names.remove(&c.id);
        let _ = d.net.host.link.disconnect_endpoint(&ep.host_ifname).await;
        return Err(e);
    }
    c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
    refresh_peers(d, &c.snapshot());
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
            .host
            .link
            .disconnect_endpoint(&ep.host_ifname)
            .await
            .map_err(net_err)?;
    }
    unfill(n, &ep);
    n.names.remove(&c.id);
    c.rec().net.endpoints.remove(&n.rec.name);
    refresh_peers(d, &c.snapshot());
    c.update_state(|_| {});
    d.network_event(n, "disconnect", Some(&c.id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(fmt_mac([2, 0x42, 10, 1, 0, 2]), "02:42:0a:01:00:02");
        assert_eq!(parse_mac("02:42:0a:01:00:02"), Some([2, 0x42, 10, 1, 0, 2]));
        assert_eq!(parse_mac("02:42"), None);
    }

    #[test]
    fn endpoint_sysctls() {
        let s = parse_sysctls(
            "net.ipv4.conf.IFNAME.log_martians=1, net.ipv6.conf.IFNAME.accept_ra=0",
            "eth1",
        )
        .unwrap();
        assert_eq!(
            s,
            [
                ("net.ipv4.conf.eth1.log_martians".into(), "1".into()),
                ("net.ipv6.conf.eth1.accept_ra".into(), "0".into())
            ]
        );
        for bad in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv4.conf.IFNAME.x",
            "net.ipv4.conf.IFNAME.../x=1",
            "net.ipv4.conf.IFNAME.x=a/b",
            "kernel.x=1",
        ] {
            assert!(parse_sysctls(bad, "eth0").is_err(), "{bad}");
        }
    }
}
