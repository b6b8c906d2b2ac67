//! The `overlay` driver: a swarm network spanning nodes over VXLAN, made on each node by the
//! daemon with the cluster's subnet, gateway and VNI, and this node's data-path address.
//!
//! Per network, in the daemon's network namespace: a Linux bridge `bov<VNI>` and a VXLAN device
//! `vxl<VNI>` enslaved to it (VNI, local = the node's data-path address, UDP 4789, no
//! learning, ARP answered by the device from its static neighbour entries, no miss
//! notifications). The bridge's MAC is [`link::mac_for`] of its address, so that other nodes
//! can compute it. The MTU of the bridge, the VXLAN device and every endpoint's veth is the
//! underlay's (the link holding the local address) minus 50 (and 26 to 29 more when
//! encrypted, see [`OverlayOptions::mtu_for`]), or the `mtu` option if smaller.
//! Every node's bridge carries the network's gateway (ARP for it is answered locally, and
//! nothing floods over VXLAN: the device has no all-zero forwarding entry), except the
//! ingress network's, which carries the node's own ingress address. The bridge sends ARP
//! requests from its own address only (`arp_announce` 2). The bridge joins berth's
//! nftables sets like a user bridge (isolation, masquerade unless internal, icc), and every
//! overlay but ingress gets the embedded DNS server on its gateway.
//!
//! An `encrypted` network is brought up only when the kernel passes
//! [`crate::lb::check_encryption_support`]; its VXLAN traffic then goes through IPsec ESP with
//! the managers' keys ([`crate::esp`]), synced with its peers' nodes.
//!
//! Remote endpoints are programmed from the full desired list (see
//! `NetworkService::set_overlay_peers`): a permanent neighbour entry and a permanent
//! forwarding entry per peer on the VXLAN device. Bringing a network up again (daemon
//! restart) changes nothing that is already right; tearing it down deletes both links, and
//! their entries with them.

use super::{BoxFuture, Driver, HostNet, Network};
use crate::host::write_sysctl;
use crate::ipam::Subnet;
use crate::link::HostClaim;
use crate::record::NetworkRecord;
use crate::{link, Error, Result};
use berth_api::network::CreateRequest;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

// The create options an overlay network is made with (kept beside the record, which reads
// some of them).
pub use crate::record::{OPT_BRIDGE_ADDR, OPT_INGRESS, OPT_LOCAL, OPT_MTU, OPT_VNI};
/// Option (present, any value): the network's VXLAN traffic is encrypted (Docker's
/// `--opt encrypted`).
pub const OPT_ENCRYPTED: &str = "encrypted";

/// What VXLAN adds to a frame: outer IPv4, UDP and VXLAN headers and the inner Ethernet header.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The outer IPv4 header, part of [`VXLAN_OVERHEAD`].
const OUTER_IPV4: u32 = 20;

/// VXLAN overlay networks.
pub struct Overlay;

/// An overlay network's settings, from its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayOptions {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub bridge_addr: Option<Ipv4Addr>,
    pub ingress: bool,
    pub mtu: Option<u32>,
    pub encrypted: bool,
}

impl OverlayOptions {
    /// Parse and check the options of a create request or record.
    pub fn parse(opts: &BTreeMap<String, String>) -> Result<OverlayOptions> {
        let required = |k: &str| {
            opts.get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Invalid(format!("overlay networks need the option {k}")))
        };
        let v = required(OPT_VNI)?;
        let vni = v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=0x00ff_ffff).contains(n))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid VXLAN id {v:?} for option {OPT_VNI}: one number from 1 to 16777215"
                ))
            })?;
        let addr = |k: &str, v: &str| {
            v.parse::<Ipv4Addr>()
                .ok()
                .filter(|a| !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast())
                .ok_or_else(|| Error::Invalid(format!("invalid IPv4 address {v:?} for option {k}")))
        };
        let local = addr(OPT_LOCAL, required(OPT_LOCAL)?)?;
        let bridge_addr = match opts.get(OPT_BRIDGE_ADDR).filter(|v| !v.is_empty()) {
            Some(v) => Some(addr(OPT_BRIDGE_ADDR, v)?),
            None => None,
        };
        let ingress = match opts.get(OPT_INGRESS).map(|s| s.as_str()) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(v) => {
                return Err(Error::Invalid(format!(
                    "invalid value {v:?} for option {OPT_INGRESS}: true or false"
                )))
            }
        };
        let mtu = match opts.get(OPT_MTU).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| Error::Invalid(format!("invalid mtu {v:?}")))?,
            ),
        };
        Ok(OverlayOptions {
            vni,
            local,
            bridge_addr,
            ingress,
            mtu,
            encrypted: opts.contains_key(OPT_ENCRYPTED),
        })
    }

    /// From a record of this driver.
    pub fn of(rec: &NetworkRecord) -> Result<OverlayOptions> {
        if !rec.is_overlay() {
            return Err(Error::Invalid(format!(
                "network {} is not an overlay network",
                rec.name
            )));
        }
        OverlayOptions::parse(&rec.options)
    }

    /// The bridge: `bov<VNI>`.
    pub fn bridge(&self) -> String {
        format!("bov{}", self.vni)
    }

    /// The VXLAN device: `vxl<VNI>`.
    pub fn vxlan(&self) -> String {
        format!("vxl{}", self.vni)
    }

    /// Whether the bridge needs `route_localnet` (masqueraded loopback clients go out of it):
    /// the ingress bridge (the routing mesh's ports on 127.0.0.1), and with loopback NAT (no
    /// userland proxy) any overlay, since a container whose first network it is can publish
    /// ports. Packets to 127.0.0.0/8 that do not come from `lo` are dropped by berth's table.
    pub fn needs_localnet(&self, userland_proxy: bool) -> bool {
        self.ingress || !userland_proxy
    }

    /// The MTU for an underlay of MTU `underlay`. Encrypted, ESP sits between the outer IPv4
    /// header and the UDP datagram: its header and ICV, and its trailer after the datagram,
    /// both padded to a multiple of 4 bytes.
    pub fn mtu_for(&self, underlay: u32) -> u32 {
        use crate::esp::{ESP_HEADER, ESP_ICV, ESP_TRAILER};
        let mtu = if self.encrypted {
            let padded = underlay.saturating_sub(OUTER_IPV4 + ESP_HEADER + ESP_ICV) / 4 * 4;
            padded.saturating_sub(ESP_TRAILER + VXLAN_OVERHEAD - OUTER_IPV4)
        } else {
            underlay.saturating_sub(VXLAN_OVERHEAD)
        };
        self.mtu.map_or(mtu, |m| m.min(mtu))
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
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
            let o = OverlayOptions::of(&n.rec)?;
            host.link.delete_link(&o.vxlan()).await?;
            host.link.delete_link(&o.bridge()).await?;
            crate::iptables::forget_bridge(&o.bridge());
            if o.encrypted {
                host.esp.tear_down(&n.rec.id)?;
            }
            Ok(())
        })
    }
    /// A veth pair on the network's bridge, as for a bridge network.
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

/// The subnet and gateway a create request gives (both required, IPv4).
fn subnet_and_gateway(req: &CreateRequest) -> Result<(Subnet, Ipv4Addr, String)> {
    let configs = req
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    let [conf] = configs.as_slice() else {
        return Err(Error::Invalid(
            "overlay networks need exactly one IPAM configuration with an IPv4 subnet and gateway"
                .into(),
        ));
    };
    if conf.subnet.is_empty() || conf.gateway.is_empty() {
        return Err(Error::Invalid(
            "overlay networks need an IPv4 subnet and gateway".into(),
        ));
    }
    if conf.subnet.contains(':') {
        return Err(Error::Invalid(format!(
            "overlay networks are IPv4 networks: {} is an IPv6 subnet",
            conf.subnet
        )));
    }
    let subnet: Subnet = conf.subnet.parse()?;
    let gateway = conf
        .gateway
        .parse::<Ipv4Addr>()
        .map_err(|_| Error::Invalid(format!("invalid gateway address {:?}", conf.gateway)))?;
    if !subnet.contains(gateway) {
        return Err(Error::Invalid(format!(
            "gateway {gateway} is not in subnet {subnet}"
        )));
    }
    Ok((subnet, gateway, conf.ip_range.clone()))
}

async fn configure(
    host: &HostNet,
    req: &CreateRequest,
    rec: &mut NetworkRecord,
    others: &[NetworkRecord],
) -> Result<()> {
    if req.enable_ipv6 == Some(true) || !rec.enable_ipv4 {
        return Err(Error::Invalid(
            "overlay networks are IPv4 networks (no --ipv6, no --ipv4=false)".into(),
        ));
    }
    let opts = req.options.clone().unwrap_or_default();
    let o = OverlayOptions::parse(&opts)?;
    let (subnet, gateway, ip_range) = subnet_and_gateway(req)?;
    if let Some(b) = o.bridge_addr {
        if !subnet.contains(b) || b == gateway {
            return Err(Error::Invalid(format!(
                "bridge address {b} must be an address of subnet {subnet} other than the gateway"
            )));
        }
    }
    let bridge = o.bridge();
    if let Some(other) = others.iter().find(|n| n.bridge == bridge) {
        return Err(Error::Conflict(format!(
            "VXLAN id {} is used by network {}",
            o.vni, other.name
        )));
    }
    if let Some(other) = others
        .iter()
        .find(|n| n.subnet().is_some_and(|s| s.overlaps(&subnet)))
    {
        return Err(Error::Forbidden(format!(
            "invalid pool request: Pool overlaps with other one on this address space ({subnet} and network {})",
            other.name
        )));
    }
    // The subnet becomes a connected route of the host's main table: it must not take over
    // any address or route the host has outside berth's bridges (its LAN, other nodes'
    // data-path addresses).
    let ours: Vec<&str> = others
        .iter()
        .map(|n| n.bridge.as_str())
        .chain([bridge.as_str()])
        .collect();
    let claims = host.link.host_ipv4_claims().await?;
    if let Some(c) = host_clash(&subnet, &claims, &ours) {
        return Err(Error::Forbidden(format!(
            "invalid pool request: overlay subnet {subnet} overlaps the {} of this node: overlay subnets are routed in the node's own routing table",
            c.what
        )));
    }
    let underlay = host.link.mtu_of_address(o.local).await?;
    rec.driver = "overlay".into();
    rec.subnet = subnet.to_string();
    rec.gateway = gateway.to_string();
    rec.ip_range = ip_range;
    rec.bridge = bridge;
    rec.icc = true;
    rec.mtu = o.mtu_for(underlay);
    rec.options = opts;
    Ok(())
}

/// The first of the host's addresses and routes that `subnet` overlaps, leaving out those on
/// berth's own bridges (`ours`).
fn host_clash<'a>(
    subnet: &Subnet,
    claims: &'a [HostClaim],
    ours: &[&str],
) -> Option<&'a HostClaim> {
    claims.iter().find(|c| {
        !ours.contains(&c.ifname.as_str()) && Subnet::containing(c.addr, c.prefix).overlaps(subnet)
    })
}

/// The bridge with its address and MAC, the VXLAN device on it, loopback routing where
/// loopback clients go out of it (see [`OverlayOptions::needs_localnet`]), and the embedded
/// DNS (not on ingress). An
/// encrypted network first needs the kernel's ESP (else nothing is made) and gets its VNI's
/// ESP rules.
async fn bring_up(host: &HostNet, n: &Network) -> Result<()> {
    let r = &n.rec;
    let o = OverlayOptions::of(r)?;
    if o.encrypted {
        host.esp.bring_up(&r.id, o.vni, o.local)?;
    }
    let (Some(subnet), Some(gateway)) = (r.subnet(), r.gateway()) else {
        return Err(Error::Internal(format!(
            "overlay network {} without subnet or gateway",
            r.name
        )));
    };
    let addr = o.bridge_addr.unwrap_or(gateway);
    let bridge = o.bridge();
    host.link
        .ensure_bridge(&bridge, addr, subnet.prefix, Some(r.mtu))
        .await?;
    host.link.ensure_mac(&bridge, link::mac_for(addr)).await?;
    host.link
        .ensure_vxlan(&o.vxlan(), o.vni, o.local, r.mtu, &bridge)
        .await?;
    if crate::iptables::forward_drops() {
        crate::iptables::allow_bridge(&bridge)?;
    }
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        if o.needs_localnet(host.cfg.userland_proxy) {
            "1"
        } else {
            "0"
        },
    )?;
    // The bridge asks for its neighbours from its own address, never from another local
    // address (a routing-mesh connection DNATed from the node's underlay address): a task
    // answers only senders it can route back to.
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{bridge}/arp_announce"),
        "2",
    )?;
    if r.has_dns() {
        super::bridge::start_dns(host, n, addr.into()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_options() {
        let o =
            OverlayOptions::parse(&opts(&[(OPT_VNI, "4097"), (OPT_LOCAL, "192.0.2.1")])).unwrap();
        assert_eq!(o.vni, 4097);
        assert_eq!(o.local, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(o.bridge_addr, None);
        assert!(!o.ingress);
        assert_eq!(o.bridge(), "bov4097");
        assert_eq!(o.vxlan(), "vxl4097");
        assert_eq!(o.mtu_for(1500), 1450);
        // Loopback routing on a plain overlay only for loopback NAT, always on ingress.
        assert!(!o.needs_localnet(true));
        assert!(o.needs_localnet(false));
        let o = OverlayOptions::parse(&opts(&[
            (OPT_VNI, "16777215"),
            (OPT_LOCAL, "192.0.2.1"),
            (OPT_BRIDGE_ADDR, "10.0.0.2"),
            (OPT_INGRESS, "true"),
            (OPT_MTU, "1400"),
        ]))
        .unwrap();
        assert!(o.ingress);
        assert!(o.needs_localnet(true));
        assert_eq!(o.bridge_addr, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(o.mtu_for(1500), 1400);
        assert_eq!(o.mtu_for(1420), 1370);
        assert_eq!(o.bridge(), "bov16777215");
        assert!(!o.encrypted);
        let o = OverlayOptions::parse(&opts(&[
            (OPT_VNI, "4097"),
            (OPT_LOCAL, "192.0.2.1"),
            (OPT_ENCRYPTED, ""),
        ]))
        .unwrap();
        assert!(o.encrypted);
        // ESP takes 26 bytes more, and up to 3 of padding: the whole ESP packet must fit.
        assert_eq!(o.mtu_for(1500), 1424);
        for underlay in 1400..=1500u32 {
            let mtu = o.mtu_for(underlay);
            // Outer IPv4, ESP header, the datagram (UDP, VXLAN, Ethernet, the frame's
            // payload) with the trailer padded to 4, ICV.
            let datagram = 8 + 8 + 14 + mtu;
            let esp = 16 + (datagram + 2).div_ceil(4) * 4 + 8;
            assert!(
                20 + esp <= underlay,
                "underlay {underlay}: mtu {mtu} too big"
            );
            // And one byte more would not fit.
            let bigger = (datagram + 1 + 2).div_ceil(4) * 4 + 24;
            assert!(
                20 + bigger > underlay,
                "underlay {underlay}: mtu {mtu} too small"
            );
        }
        assert_eq!(o.mtu_for(1450), 1372);
        assert_eq!(o.mtu_for(10), 0);
    }

    #[test]
    fn refuses_bad_options() {
        let cases: &[&[(&str, &str)]] = &[
            &[(OPT_LOCAL, "192.0.2.1")],
            &[(OPT_VNI, "4097")],
            &[(OPT_VNI, "0"), (OPT_LOCAL, "192.0.2.1")],
            &[(OPT_VNI, "16777216"), (OPT_LOCAL, "192.0.2.1")],
            &[(OPT_VNI, "4097,4098"), (OPT_LOCAL, "192.0.2.1")],
            &[(OPT_VNI, "4097"), (OPT_LOCAL, "fd00::1")],
            &[(OPT_VNI, "4097"), (OPT_LOCAL, "0.0.0.0")],
            &[
                (OPT_VNI, "4097"),
                (OPT_LOCAL, "192.0.2.1"),
                (OPT_INGRESS, "yes"),
            ],
            &[(OPT_VNI, "4097"), (OPT_LOCAL, "192.0.2.1"), (OPT_MTU, "9")],
            &[
                (OPT_VNI, "4097"),
                (OPT_LOCAL, "192.0.2.1"),
                (OPT_BRIDGE_ADDR, "x"),
            ],
        ];
        for c in cases {
            let e = OverlayOptions::parse(&opts(c)).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{c:?}: {e}");
        }
        let e = OverlayOptions::parse(&opts(&[(OPT_VNI, "1")])).unwrap_err();
        assert!(e.to_string().contains(OPT_LOCAL), "{e}");
    }

    #[test]
    fn refuses_subnets_the_host_routes_elsewhere() {
        let claim = |a: &str, prefix: u8, ifname: &str, what: &str| HostClaim {
            addr: a.parse().unwrap(),
            prefix,
            ifname: ifname.into(),
            what: what.into(),
        };
        let claims = [
            claim("127.0.0.1", 8, "lo", "address 127.0.0.1/8 on lo"),
            claim("10.0.3.7", 16, "eth0", "address 10.0.3.7/16 on eth0"),
            claim(
                "172.20.0.0",
                14,
                "eth0",
                "route 172.20.0.0/14 via 10.0.0.1 dev eth0",
            ),
            claim("10.1.0.1", 24, "bov4097", "address 10.1.0.1/24 on bov4097"),
            claim("10.2.0.1", 24, "br-1234", "address 10.2.0.1/24 on br-1234"),
        ];
        let ours = ["bov4097", "br-1234"];
        let clash =
            |s: &str| host_clash(&s.parse().unwrap(), &claims, &ours).map(|c| c.what.clone());
        // The LAN's network, from either side of it.
        assert_eq!(
            clash("10.0.0.0/24"),
            Some("address 10.0.3.7/16 on eth0".into())
        );
        assert_eq!(
            clash("10.0.0.0/8"),
            Some("address 10.0.3.7/16 on eth0".into())
        );
        assert_eq!(
            clash("172.21.5.0/24"),
            Some("route 172.20.0.0/14 via 10.0.0.1 dev eth0".into())
        );
        // berth's own bridges are not the host's.
        assert_eq!(clash("10.1.0.0/24"), None);
        assert_eq!(clash("10.2.0.0/24"), None);
        assert_eq!(clash("10.3.0.0/24"), None);
        assert_eq!(clash("172.24.0.0/24"), None);
    }

    #[test]
    fn needs_subnet_and_gateway() {
        use berth_api::network::{Ipam, IpamConfig};
        let mut req = CreateRequest::default();
        assert!(subnet_and_gateway(&req).is_err());
        req.ipam = Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: "10.0.9.0/24".into(),
                gateway: "10.0.9.1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let (s, g, _) = subnet_and_gateway(&req).unwrap();
        assert_eq!(s.to_string(), "10.0.9.0/24");
        assert_eq!(g, Ipv4Addr::new(10, 0, 9, 1));
        if let Some(c) = req.ipam.as_mut().and_then(|i| i.config.as_mut()) {
            c[0].gateway = "10.0.8.1".into();
        }
        assert!(subnet_and_gateway(&req).is_err());
    }
}
