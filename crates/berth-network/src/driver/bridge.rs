//! The `bridge` driver: a Linux bridge per network with its gateway addresses, NAT and
//! isolation in berth's nftables table, and the embedded DNS of user-defined networks. Fills
//! a new network's subnets (from the request or the address pools) and bridge options. Does
//! not keep records or addresses: the service and the IPAM do.

use super::Network;
use super::{BoxFuture, Driver, HostNet};
use crate::config::NetConfig;
use crate::host::{host_dns_is_loopback, write_sysctl};
use crate::ipam::{pick_subnet, Subnet};
use crate::ipam6::Subnet6;
use crate::record::NetworkRecord;
use crate::{dns, link, Error, Result};
use berth_api::network::CreateRequest;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::BorrowedFd;

/// Where user-defined networks get a subnet when none is given: /24s of this space.
const USER_SPACE: &str = "10.223.0.0/16";

/// Linux bridges.
pub struct Bridge;

impl Driver for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }
    fn check_create(&self) -> Result<()> {
        Ok(())
    }
    fn connectable(&self) -> bool {
        true
    }
    fn configure<'a>(
        &'a self,
        host: &'a HostNet,
        req: &'a CreateRequest,
        rec: &'a mut NetworkRecord,
        others: &'a [NetworkRecord],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(configure(host, req, rec, others))
    }
    fn bring_up<'a>(&'a self, host: &'a HostNet, n: &'a Network) -> BoxFuture<'a, Result<()>> {
        Box::pin(bring_up(host, n))
    }
    fn tear_down<'a>(&'a self, host: &'a HostNet, n: &'a Network) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            host.link.delete_link(&n.rec.bridge).await?;
            crate::iptables::forget_bridge(&n.rec.bridge);
            Ok(())
        })
    }
    /// A veth pair: the host end on the network's bridge (`spec.bridge`), the peer in the
    /// sandbox, configured from inside it.
    fn join<'a>(
        &'a self,
        host: &'a HostNet,
        spec: &'a link::Endpoint,
        netns: BorrowedFd<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(host.link.connect_endpoint(spec, netns))
    }
    fn unplug<'a>(&'a self, host: &'a HostNet, host_ifname: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(host.link.disconnect_endpoint(host_ifname))
    }
}

/// A new bridge network's bridge, options and subnets from the create request.
async fn configure(
    host: &HostNet,
    req: &CreateRequest,
    rec: &mut NetworkRecord,
    others: &[NetworkRecord],
) -> Result<()> {
    let enable_ipv4 = rec.enable_ipv4;
    let ipam = req.ipam.clone().unwrap_or_default();
    let opts = req.options.clone().unwrap_or_default();
    let bridge = match opts.get("com.docker.network.bridge.name") {
        Some(b) => {
            if b.is_empty()
                || b.len() > 15
                || !b
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
            {
                return Err(Error::Invalid(format!("invalid bridge name {b:?}")));
            }
            if others.iter().any(|n| &n.bridge == b) {
                return Err(Error::Conflict(format!(
                    "bridge name {b} is used by another network"
                )));
            }
            b.clone()
        }
        None => format!("br-{}", &rec.id[..12]),
    };
    let bool_opt = |k: &str, default: bool| -> Result<bool> {
        match opts.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::Invalid(format!("invalid value {v:?} for option {k}"))),
        }
    };
    let icc = bool_opt("com.docker.network.bridge.enable_icc", true)?;
    let mtu = match opts.get("com.docker.network.driver.mtu") {
        None => host.cfg.mtu,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|m| (68..=65535).contains(m))
            .ok_or_else(|| Error::Invalid(format!("invalid mtu {v:?}")))?,
    };
    let configs = ipam.config.clone().unwrap_or_default();
    // Each configuration is IPv4 or IPv6 by its subnet (or, without one, its gateway).
    let is_v6 = |c: &berth_api::network::IpamConfig| {
        let probe = if c.subnet.is_empty() {
            &c.gateway
        } else {
            &c.subnet
        };
        probe.contains(':')
    };
    let (v6_confs, v4_confs): (Vec<_>, Vec<_>) = configs.iter().partition(|c| is_v6(c));
    if !enable_ipv4 && !v4_confs.is_empty() {
        return Err(Error::Invalid(
            "an IPv4 subnet was given for a network without IPv4 (--ipv4=false)".into(),
        ));
    }
    if v4_confs.len() > 1 || v6_confs.len() > 1 {
        return Err(Error::Invalid(
            "berth networks take one IPv4 and one IPv6 subnet (one --subnet of each family)".into(),
        ));
    }
    let enable_ipv6 = req.enable_ipv6.unwrap_or(false);
    if !v6_confs.is_empty() && !enable_ipv6 {
        return Err(Error::Invalid(
            "an IPv6 subnet needs an IPv6 network: add --ipv6 (EnableIPv6)".into(),
        ));
    }
    let ours: Vec<Subnet> = others.iter().filter_map(|n| n.subnet()).collect();
    let host_nets: Vec<Subnet> = host
        .link
        .host_ipv4_nets()
        .await?
        .into_iter()
        .map(|(a, p)| Subnet::containing(a, p))
        .collect();
    let conf = v4_confs.first().copied();
    let v4 = if enable_ipv4 {
        let subnet = match conf.filter(|c| !c.subnet.is_empty()) {
            Some(c) => {
                let s: Subnet = c.subnet.parse()?;
                if ours.iter().any(|o| o.overlaps(&s)) {
                    return Err(Error::Forbidden(
                        format!("invalid pool request: Pool overlaps with other one on this address space ({s})"),
                    ));
                }
                s
            }
            None => {
                if conf.is_some_and(|c| !c.gateway.is_empty() || !c.ip_range.is_empty()) {
                    return Err(Error::Invalid(
                        "a gateway or ip-range needs a subnet (--subnet)".into(),
                    ));
                }
                let taken: Vec<Subnet> = ours.iter().chain(host_nets.iter()).copied().collect();
                pools4(&host.cfg)?
                    .into_iter()
                    .find_map(|(space, size)| pick_subnet(space, size, &taken))
                    .ok_or_else(|| {
                        let shown: Vec<String> = taken.iter().map(|t| t.to_string()).collect();
                        tracing::warn!("no free subnet in the address pools; taken: {}", shown.join(" "));
                        Error::Internal(
                            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                        )
                    })?
            }
        };
        let gateway = match conf.map(|c| c.gateway.as_str()).filter(|g| !g.is_empty()) {
            Some(g) => g
                .parse::<Ipv4Addr>()
                .map_err(|_| Error::Invalid(format!("invalid gateway address {g:?}")))?,
            None => subnet.first_host(),
        };
        Some((subnet, gateway))
    } else {
        None
    };
    let ip_range = conf.map(|c| c.ip_range.clone()).unwrap_or_default();
    let conf6 = v6_confs.first().copied();
    let (subnet6, gateway6, ip_range6) = if enable_ipv6 {
        let s6 = match conf6.filter(|c| !c.subnet.is_empty()) {
            Some(c) => c.subnet.parse::<Subnet6>()?,
            None => {
                if conf6.is_some() {
                    return Err(Error::Invalid(
                        "an IPv6 gateway or ip-range needs an IPv6 subnet (--subnet)".into(),
                    ));
                }
                pick_subnet6(&host.cfg, others, &rec.id)?
            }
        };
        if let Some(o) = others
            .iter()
            .filter_map(|n| n.subnet6())
            .find(|o| o.overlaps(&s6))
        {
            return Err(Error::Forbidden(
                    format!("invalid pool request: Pool overlaps with other one on this address space ({s6} and {o})"),
                ));
        }
        let gw6 = match conf6.map(|c| c.gateway.as_str()).filter(|g| !g.is_empty()) {
            Some(g) => g
                .parse::<Ipv6Addr>()
                .map_err(|_| Error::Invalid(format!("invalid gateway address {g:?}")))?,
            None => s6.first_host(),
        };
        (
            s6.to_string(),
            gw6.to_string(),
            conf6.map(|c| c.ip_range.clone()).unwrap_or_default(),
        )
    } else {
        (String::new(), String::new(), String::new())
    };
    let aux_addresses: BTreeMap<String, String> = configs
        .iter()
        .flat_map(|c| c.auxiliary_addresses.clone().unwrap_or_default())
        .collect();
    rec.driver = "bridge".into();
    rec.subnet = v4.map(|(s, _)| s.to_string()).unwrap_or_default();
    rec.gateway = v4.map(|(_, g)| g.to_string()).unwrap_or_default();
    rec.ip_range = ip_range;
    rec.bridge = bridge;
    rec.icc = icc;
    rec.mtu = mtu;
    rec.options = opts;
    rec.enable_ipv6 = enable_ipv6;
    rec.subnet6 = subnet6;
    rec.gateway6 = gateway6;
    rec.ip_range6 = ip_range6;
    rec.aux_addresses = aux_addresses;
    Ok(())
}

/// Where user networks get an IPv4 subnet when none is given: the daemon's
/// `default-address-pools` (base and size), else /24s of [`USER_SPACE`].
fn pools4(cfg: &NetConfig) -> Result<Vec<(Subnet, u8)>> {
    let mut out = Vec::new();
    for p in &cfg.address_pools {
        if let Ok(base) = p.base.parse::<Subnet>() {
            out.push((base, p.size));
        }
    }
    if out.is_empty() {
        out.push((USER_SPACE.parse()?, 24));
    }
    Ok(out)
}

/// An IPv6 subnet for an IPv6 network created without one: from the IPv6 entries of
/// `default-address-pools`, else a unique local /64 (fd00::/8) derived from the id.
fn pick_subnet6(cfg: &NetConfig, others: &[NetworkRecord], id: &str) -> Result<Subnet6> {
    let taken: Vec<Subnet6> = others.iter().filter_map(|n| n.subnet6()).collect();
    let v6_pools: Vec<(Subnet6, u8)> = cfg
        .address_pools
        .iter()
        .filter_map(|p| Some((p.base.parse::<Subnet6>().ok()?, p.size)))
        .collect();
    if v6_pools.is_empty() {
        let global = u64::from_str_radix(id.get(..10).unwrap_or("0"), 16)
            .map_err(|_| Error::Internal("network id is not hex".into()))?;
        let addr = (0xfdu128 << 120) | (u128::from(global) << 80);
        return Subnet6::new(Ipv6Addr::from(addr), 64);
    }
    for (base, size) in v6_pools {
        // At most a few thousand candidates per pool are looked at.
        for n in 0..4096u128 {
            let Some(s) = base.nth(size, n) else { break };
            if !taken.iter().any(|t| t.overlaps(&s)) {
                return Ok(s);
            }
        }
    }
    Err(Error::Internal(
            "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network".into(),
        ))
}

/// The bridge with its gateway address, loopback routing for published ports (with loopback
/// NAT), and the embedded DNS of a user-defined network.
async fn bring_up(host: &HostNet, n: &Network) -> Result<()> {
    let r = &n.rec;
    let v4 = match (r.subnet(), r.gateway()) {
        (Some(subnet), Some(gw)) => {
            host.link
                .ensure_bridge(&r.bridge, gw, subnet.prefix, Some(r.mtu))
                .await?;
            Some(gw)
        }
        _ if !r.enable_ipv4 && r.subnet6().is_some() => {
            host.link.ensure_bridge_up(&r.bridge, Some(r.mtu)).await?;
            None
        }
        _ => {
            return Err(Error::Internal(
                "bridge network without subnet or gateway".into(),
            ))
        }
    };
    if crate::iptables::forward_drops() {
        crate::iptables::allow_bridge(&r.bridge)?;
    }
    // With loopback NAT (no userland proxy), locally made connections to 127.0.0.1:<published>
    // are DNATed out of this bridge (and masqueraded): their packets and replies are routed
    // only with `route_localnet` on. berth's table drops what comes to 127.0.0.0/8 from
    // anywhere but `lo` (see [`crate::nft`]).
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", r.bridge),
        if host.cfg.userland_proxy { "0" } else { "1" },
    )?;
    if let (Some(s6), Some(gw6)) = (r.subnet6(), r.gateway6()) {
        write_sysctl(
            &format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", r.bridge),
            "0",
        )?;
        host.link
            .ensure_bridge_v6(&r.bridge, gw6, s6.prefix)
            .await?;
        if host.cfg.ip_forward {
            write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
        }
    }
    let forwarder_only = r.predefined && host.cfg.dns.is_empty() && host_dns_is_loopback();
    // An IPv6-only network's server listens on its IPv6 gateway.
    let listen: Option<IpAddr> = v4.map(IpAddr::V4).or(r.gateway6().map(IpAddr::V6));
    if let Some(gw) = listen.filter(|_| r.has_dns() || forwarder_only) {
        start_dns(host, n, gw).await?;
    }
    Ok(())
}

/// Start network `n`'s embedded DNS server on `addr`:53.
pub(super) async fn start_dns(host: &HostNet, n: &Network, addr: IpAddr) -> Result<()> {
    let server = dns::Server::start(
        SocketAddr::new(addr, 53),
        n.names.clone(),
        host.upstreams.clone(),
    )
    .await
    .map_err(|e| Error::Internal(format!("embedded DNS on {addr}:53: {e}")))?;
    n.set_dns(Some(server));
    Ok(())
}
