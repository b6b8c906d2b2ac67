//! The service's endpoint operations: taking and giving back an endpoint's addresses (through
//! the network's IPAM pools), plugging it into a sandbox's namespace, and the DNS names the
//! sandbox answers to on each network. Works on [`Endpoint`] values handed in; keeping them
//! is [`super::sandbox`]'s job, publishing ports [`super::publish`]'s.

use super::{random_id, Network, NetworkService};
use crate::endpoint::{
    dns_keys, endpoint_sysctls, fmt_mac, link_local_prefix, link_names, parse_mac, Endpoint,
    EndpointConfig, Sandbox,
};
use crate::{link, Error, Result};
use berth_api::network::EndpointSettings;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

impl NetworkService {
    /// A new endpoint configuration on `n` for what was asked at create or connect (checked).
    pub fn endpoint(
        &self,
        n: &Network,
        settings: Option<&EndpointSettings>,
    ) -> Result<EndpointConfig> {
        crate::endpoint::new_endpoint(&n.rec, settings, random_id()?)
    }

    /// Addresses (IPv4, and IPv6 on an IPv6 network), MAC and interface names for endpoint `ep`
    /// on network `n` (named `name`), to be wired as `ifname`. On error nothing stays taken.
    pub(crate) fn take_addresses(
        &self,
        n: &Network,
        name: &str,
        ep: &mut Endpoint,
        ifname: String,
    ) -> Result<()> {
        // An IPv6-only network has neither IPv4 subnet nor pool.
        let v4 = match (n.rec.subnet(), n.rec.gateway()) {
            (Some(subnet), Some(gw)) => Some((subnet, gw)),
            _ if !n.rec.enable_ipv4 => None,
            _ => return Err(Error::Internal(format!("network {name} has no subnet"))),
        };
        let mut pools = n.pools();
        let ip = match v4 {
            None => None,
            Some(_) => {
                if !pools.has_v4() {
                    return Err(Error::Internal(format!(
                        "network {name} has no address pool"
                    )));
                }
                let want = if ep.requested_ip.is_empty() {
                    None
                } else {
                    Some(ep.requested_ip.parse::<Ipv4Addr>().map_err(|_| {
                        Error::Invalid(format!("invalid IPv4 address {}", ep.requested_ip))
                    })?)
                };
                Some(pools.request_v4(want)?)
            }
        };
        let ip6 = match n.rec.subnet6() {
            None => None,
            Some(s6) => {
                let taken = if !pools.has_v6() {
                    Err(Error::Internal(format!(
                        "network {name} has no IPv6 address pool"
                    )))
                } else if ep.requested_ip6.is_empty() {
                    pools.request_v6(None)
                } else {
                    match ep.requested_ip6.parse::<Ipv6Addr>() {
                        Ok(a) => pools.request_v6(Some(a)),
                        Err(_) => Err(Error::Invalid(format!(
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
            // The ingress network's gateway exists on no bridge: it never routes.
            ep.gateway = if n.rec.internal || n.rec.is_ingress() {
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
            None => return Err(Error::Internal(format!("network {name} has no subnet"))),
        };
        ep.host_ifname = link::random_veth_name();
        ep.ifname = ifname;
        Ok(())
    }

    /// Give back the addresses [`Self::take_addresses`] took for `ep` on `n`.
    pub(crate) fn give_back(&self, n: &Network, ep: &Endpoint) {
        let mut pools = n.pools();
        if let Ok(ip) = ep.ip.parse::<Ipv4Addr>() {
            pools.release(ip.into());
        }
        if let Ok(ip) = ep.ip6.parse::<Ipv6Addr>() {
            pools.release(ip.into());
        }
    }

    /// Plug endpoint `ep` (on the network named `name`, addresses taken) into the sandbox's
    /// namespace `netns`, with the default route if `routes`, and give it its DNS names.
    pub(crate) async fn join(
        &self,
        sb: &Sandbox,
        name: &str,
        ep: &Endpoint,
        netns: BorrowedFd<'_>,
        routes: bool,
    ) -> Result<()> {
        let n = self.find(&ep.network_id)?;
        let bad = |what: &str| Error::Internal(format!("endpoint on {name}: bad {what}"));
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
        n.driver
            .join(&self.host, &spec, netns)
            .await
            .map_err(|e| Error::Internal(format!("connecting to network {name}: {e}")))?;
        if n.rec.has_dns() {
            n.names.set_addrs(
                &sb.id,
                &dns_keys(sb, ep, &n.rec.name),
                spec.ip,
                ip6.map(|(a, _)| a),
            );
            let own: Vec<SocketAddr> = sb
                .dns
                .iter()
                .filter_map(|s| s.parse::<Ipv4Addr>().ok())
                .map(|a| SocketAddr::new(a.into(), 53))
                .collect();
            // Clients are told apart by IPv4 address (none on an IPv6-only network).
            if let Some(ip) = spec.ip {
                if !own.is_empty() {
                    n.names.set_upstreams_for(&sb.id, ip, own);
                }
                n.names.set_links(&sb.id, ip, &link_names(ep));
            }
        }
        Ok(())
    }

    /// Unplug an endpoint from its sandbox on `n` (nothing to do if it was not wired).
    pub(crate) async fn unplug(&self, n: &Network, ep: &Endpoint) -> Result<()> {
        if ep.host_ifname.is_empty() {
            return Ok(());
        }
        n.driver.unplug(&self.host, &ep.host_ifname).await
    }

    /// The sandbox leaves network `n`: the endpoint's addresses and DNS names go.
    pub(crate) fn leave(&self, n: &Network, id: &str, ep: &Endpoint) {
        self.give_back(n, ep);
        n.names.remove(id);
    }

    /// Each DNS network of the container also answers it with the names of its other networks
    /// (a container resolves names on every network it is attached to).
    pub(crate) fn refresh_peers(&self, id: &str, endpoints: &BTreeMap<String, Endpoint>) {
        let nets: Vec<(Arc<Network>, Ipv4Addr)> = endpoints
            .values()
            .filter_map(|ep| {
                let n = self.find(&ep.network_id).ok()?;
                let ip = ep.ip.parse().ok()?;
                n.rec.has_dns().then_some((n, ip))
            })
            .collect();
        let all: Vec<crate::dns::Names> = nets.iter().map(|(n, _)| n.names.clone()).collect();
        for (n, ip) in &nets {
            n.names.set_peers(id, *ip, &all);
        }
    }

    /// A sandbox that kept running across a restart: its endpoints' addresses and DNS names
    /// are taken again.
    pub(crate) fn readopt_endpoints(&self, sb: &Sandbox, endpoints: &BTreeMap<String, Endpoint>) {
        for (name, ep) in endpoints {
            let Ok(n) = self.find(&ep.network_id) else {
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
                        tracing::warn!("container {}: address {a} on {name}: {e}", sb.id);
                    }
                }
                if let Some(a) = ip6.filter(|_| pools.has_v6()) {
                    if let Err(e) = pools.request_v6(Some(a)) {
                        tracing::warn!("container {}: address {a} on {name}: {e}", sb.id);
                    }
                }
            }
            if n.rec.has_dns() {
                n.names
                    .set_addrs(&sb.id, &dns_keys(sb, ep, &n.rec.name), ip, ip6);
                if let Some(ip) = ip {
                    n.names.set_links(&sb.id, ip, &link_names(ep));
                }
            }
        }
        self.refresh_peers(&sb.id, endpoints);
    }
}
