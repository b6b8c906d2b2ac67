//! Bridges, VXLAN devices and veth pairs over rtnetlink: the host side of a network (with an
//! overlay's remote endpoints) and each container's end of it.
//!
//! Everything goes through one rtnetlink connection opened in the daemon's network namespace,
//! except the configuration of a container's end of a veth pair: a netlink socket acts in the
//! namespace it was created in, so that end is configured over a second, short-lived connection
//! opened and driven by a throwaway thread that first joins the container's namespace. It never
//! touches the nftables table, address pools or records, and imports nothing of the crate but its
//! error.

use std::collections::hash_map::RandomState;
use std::fmt::Display;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};
use tokio::sync::oneshot;

use crate::{Error, Result};

/// A netlink connection in the daemon's (host) network namespace.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

/// The UDP port of VXLAN (IANA).
pub const VXLAN_PORT: u16 = 4789;

/// The main routing table.
const MAIN_TABLE: u32 = 254;

/// An address or route of the host: `addr`/`prefix` is on interface `ifname` (empty when the
/// route names none), `what` says it for an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostClaim {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub ifname: String,
    pub what: String,
}

/// A remote endpoint of an overlay network: its address and MAC, and the data-path address of
/// the node (VTEP) that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub node: Ipv4Addr,
}

/// One container's attachment to a bridge network.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The bridge the host end is enslaved to.
    pub bridge: String,
    /// Name of the host end of the veth pair (see [`random_veth_name`]).
    pub host_ifname: String,
    /// Name of the container's end, inside its namespace (`eth0`).
    pub ifname: String,
    pub mac: [u8; 6],
    /// The IPv4 address with `prefix`; None on an IPv6-only network.
    pub ip: Option<Ipv4Addr>,
    pub prefix: u8,
    /// The default route's gateway; None leaves the namespace without a default route.
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
    /// An IPv6 address with its prefix (IPv6 networks).
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 default route's gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// Further addresses of the interface (`--link-local-ip`), with their prefixes.
    pub extra: Vec<(IpAddr, u8)>,
    /// Sysctls of the interface, set in the container before its addresses: (key under
    /// /proc/sys with dots, value), the key naming the interface (`net.ipv4.conf.eth0.x`).
    pub sysctls: Vec<(String, String)>,
}

/// Docker's MAC for an address: 02:42 followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// 64 unpredictable bits. Each RandomState gets fresh SipHash keys (seeded from the OS's
/// randomness once per thread), and the counter makes every input distinct, so no
/// random-number crate is needed for names and addresses.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A host-side veth name: "veth" + 7 random lowercase hex digits (15-byte kernel limit).
pub fn random_veth_name() -> String {
    format!("veth{:07x}", random_u64() & 0x0fff_ffff)
}

/// A random unicast, locally administered MAC address for a bridge. A bridge without an
/// address of its own takes the lowest of its ports' addresses, so it would change whenever a
/// container joins or leaves, and the other containers' neighbour entries for the gateway
/// would point at an address nobody answers until they expire.
fn random_bridge_mac() -> Vec<u8> {
    let mut mac = random_u64().to_be_bytes()[..6].to_vec();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

impl Netlink {
    /// Open the connection and spawn its driver on the current tokio runtime.
    pub fn new() -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Netlink(format!("opening a netlink connection: {e}")))?;
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::Netlink(format!("opening a netlink connection: {e}")))?;
        runtime.spawn(connection);
        Ok(Netlink { handle })
    }

    /// Create bridge `name` if missing, give it gateway/prefix if it lacks that address, set
    /// mtu when Some, bring it up. Idempotent (a second call on an existing, configured bridge
    /// changes nothing and succeeds).
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: Option<u32>,
    ) -> Result<()> {
        check_prefix(prefix)?;
        let index = self.ensure_bridge_up(name, mtu).await?;
        self.ensure_gateway(name, index, gateway, prefix).await
    }

    /// Create bridge `name` if missing, set mtu when Some, bring it up (an IPv6-only network's
    /// bridge, which [`Netlink::ensure_bridge_v6`] then gives its address). Returns its index.
    pub async fn ensure_bridge_up(&self, name: &str, mtu: Option<u32>) -> Result<u32> {
        check_ifname(name)?;
        let link = match self.bridge_link(name).await? {
            Some(link) => link,
            None => {
                let mut bridge = LinkBridge::new(name).address(random_bridge_mac());
                if let Some(mtu) = mtu {
                    bridge = bridge.mtu(mtu);
                }
                match self.handle.link().add(bridge.build()).execute().await {
                    // EEXIST: someone else created it in the meantime; it is checked below.
                    Err(e) if !is_errno(&e, libc::EEXIST) => {
                        return Err(nl_error(format_args!("creating bridge {name}"), e));
                    }
                    _ => {}
                }
                self.bridge_link(name).await?.ok_or_else(|| {
                    Error::Netlink(format!(
                        "bridge {name} disappeared right after its creation"
                    ))
                })?
            }
        };
        let index = link.header.index;

        let up = link.header.flags.contains(LinkFlags::Up);
        let mtu_change = mtu.filter(|&mtu| link_mtu(&link) != Some(mtu));
        if !up || mtu_change.is_some() {
            let mut change = LinkUnspec::new_with_index(index).up();
            if let Some(mtu) = mtu_change {
                change = change.mtu(mtu);
            }
            self.handle
                .link()
                .change(change.build())
                .execute()
                .await
                .map_err(|e| nl_error(format_args!("configuring bridge {name}"), e))?;
        }
        Ok(index)
    }

    async fn ensure_gateway(
        &self,
        name: &str,
        index: u32,
        gateway: Ipv4Addr,
        prefix: u8,
    ) -> Result<()> {
        let has_gateway = self
            .ipv4_addrs()
            .await
            .map_err(|e| nl_error(format_args!("listing the addresses of bridge {name}"), e))?
            .into_iter()
            .any(|(link, addr, len)| link == index && addr == gateway && len == prefix);
        if !has_gateway {
            match self
                .handle
                .address()
                .add(index, IpAddr::V4(gateway), prefix)
                .execute()
                .await
            {
                Err(e) if !is_errno(&e, libc::EEXIST) => {
                    return Err(nl_error(
                        format_args!("adding {gateway}/{prefix} to bridge {name}"),
                        e,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Give bridge `name` (made by [`Netlink::ensure_bridge`]) the IPv6 gateway address
    /// `gateway/prefix`, without duplicate address detection; present already is fine.
    pub async fn ensure_bridge_v6(&self, name: &str, gateway: Ipv6Addr, prefix: u8) -> Result<()> {
        check_ifname(name)?;
        if prefix > 128 {
            return Err(Error::Invalid(format!(
                "invalid IPv6 prefix length {prefix}"
            )));
        }
        let link = self
            .bridge_link(name)
            .await?
            .ok_or_else(|| Error::Netlink(format!("bridge {name} does not exist")))?;
        let mut req = self
            .handle
            .address()
            .add(link.header.index, IpAddr::V6(gateway), prefix);
        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        match req.execute().await {
            Err(e) if !is_errno(&e, libc::EEXIST) => Err(nl_error(
                format_args!("adding {gateway}/{prefix} to bridge {name}"),
                e,
            )),
            _ => Ok(()),
        }
    }

    /// Tell the host's neighbour cache on the bridge (index `bridge`) where a new IPv6 address
    /// is, as a STALE entry the kernel confirms on first use, so the first packet to a fresh
    /// container does not wait for neighbour discovery (which took over 2 s in about one
    /// try of three here while the container's link-local address was tentative). Best
    /// effort: a failure only costs that wait.
    async fn announce_v6(&self, bridge: u32, ip: Ipv6Addr, mac: [u8; 6]) {
        let res = self
            .handle
            .neighbours()
            .add(bridge, IpAddr::V6(ip))
            .link_layer_address(&mac)
            .state(NeighbourState::Stale)
            .replace()
            .execute()
            .await;
        if let Err(e) = res {
            tracing::debug!("neighbour entry for {ip}: {e}");
        }
    }

    /// Give link `name` the MAC `mac` unless it has it already.
    pub async fn ensure_mac(&self, name: &str, mac: [u8; 6]) -> Result<()> {
        check_ifname(name)?;
        let link = get_link(&self.handle, name)
            .await
            .map_err(|e| nl_error(format_args!("looking up link {name}"), e))?
            .ok_or_else(|| Error::Netlink(format!("link {name} does not exist")))?;
        let has = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Address(m) if m[..] == mac[..]));
        if !has {
            let change = LinkUnspec::new_with_index(link.header.index)
                .address(mac.to_vec())
                .build();
            self.handle
                .link()
                .change(change)
                .execute()
                .await
                .map_err(|e| nl_error(format_args!("setting the MAC of {name}"), e))?;
        }
        Ok(())
    }

    /// The MTU of the link that holds the IPv4 address `addr`.
    pub async fn mtu_of_address(&self, addr: Ipv4Addr) -> Result<u32> {
        let index = self
            .ipv4_addrs()
            .await
            .map_err(|e| nl_error("listing the IPv4 addresses", e))?
            .into_iter()
            .find(|(_, a, _)| *a == addr)
            .map(|(index, _, _)| index)
            .ok_or_else(|| {
                Error::Invalid(format!("no interface of this host has the address {addr}"))
            })?;
        let link = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(|e| nl_error(format_args!("looking up the link holding {addr}"), e))?
            .ok_or_else(|| Error::Netlink(format!("the link holding {addr} disappeared")))?;
        link_mtu(&link).ok_or_else(|| Error::Netlink(format!("the link holding {addr} has no MTU")))
    }

    /// Create VXLAN device `name` if missing: VNI `vni`, source address `local`, UDP port
    /// [`VXLAN_PORT`], no learning, ARP answered from its neighbour entries (proxy), no miss
    /// notifications; then make it a port of bridge `bridge` with MTU `mtu`, up. Idempotent;
    /// an existing link of that name that is not this VXLAN is an error.
    pub async fn ensure_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        mtu: u32,
        bridge: &str,
    ) -> Result<()> {
        check_ifname(name)?;
        let bridge_index = self.bridge_index(bridge).await?;
        let existing = get_link(&self.handle, name)
            .await
            .map_err(|e| nl_error(format_args!("looking up link {name}"), e))?;
        // A device made for another local address (the node's address changed), or with UDP
        // checksums (an older berth's), is made again; its peers come back with the next full
        // list.
        let existing = match existing {
            Some(link) if vxlan_id(&link) != Some(vni) => {
                return Err(Error::Conflict(format!(
                    "link {name} exists but is not the VXLAN device of VNI {vni}"
                )));
            }
            Some(link) if vxlan_local(&link) != Some(local) || vxlan_udp_csum(&link) => {
                self.delete_link(name).await?;
                None
            }
            other => other,
        };
        let link = match existing {
            Some(link) => link,
            None => {
                let vxlan = LinkVxlan::new(name, vni)
                    .local(local)
                    .port(VXLAN_PORT)
                    .learning(false)
                    .proxy(true)
                    .l2miss(false)
                    .l3miss(false)
                    // As libnetwork: no outer UDP checksum (the inner packets carry theirs).
                    .udp_csum(false)
                    .mtu(mtu)
                    .build();
                match self.handle.link().add(vxlan).execute().await {
                    Err(e) if !is_errno(&e, libc::EEXIST) => {
                        return Err(nl_error(
                            format_args!("creating VXLAN device {name} (VNI {vni}, local {local})"),
                            e,
                        ));
                    }
                    _ => {}
                }
                get_link(&self.handle, name)
                    .await
                    .map_err(|e| nl_error(format_args!("looking up link {name}"), e))?
                    .ok_or_else(|| {
                        Error::Netlink(format!("{name} disappeared right after its creation"))
                    })?
            }
        };
        let enslaved = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == bridge_index));
        let up = link.header.flags.contains(LinkFlags::Up);
        if !enslaved || !up || link_mtu(&link) != Some(mtu) {
            let change = LinkUnspec::new_with_index(link.header.index)
                .controller(bridge_index)
                .mtu(mtu)
                .up()
                .build();
            self.handle
                .link()
                .change(change)
                .execute()
                .await
                .map_err(|e| nl_error(format_args!("configuring VXLAN device {name}"), e))?;
        }
        Ok(())
    }

    /// Make the remote endpoints programmed on VXLAN device `name` exactly `peers`: per peer a
    /// permanent neighbour entry (IP → MAC) and a permanent forwarding entry (MAC → the node's
    /// data-path address) on the device. What the device has beyond that is removed, so a
    /// daemon that restarts re-syncs with one call.
    pub async fn sync_vxlan_peers(&self, name: &str, peers: &[Peer]) -> Result<()> {
        check_ifname(name)?;
        let index = get_link(&self.handle, name)
            .await
            .map_err(|e| nl_error(format_args!("looking up link {name}"), e))?
            .ok_or_else(|| Error::Netlink(format!("VXLAN device {name} does not exist")))?
            .header
            .index;
        let mut neigh_req = self.handle.neighbours().get();
        neigh_req.message_mut().header.family = AddressFamily::Inet;
        let neighbours: Vec<NeighbourMessage> = neigh_req
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error(format_args!("listing the neighbours of {name}"), e))?;
        let mut fdb_req = self.handle.neighbours().get();
        fdb_req.message_mut().header.family = AddressFamily::Bridge;
        let fdb: Vec<NeighbourMessage> =
            fdb_req.execute().try_collect().await.map_err(|e| {
                nl_error(format_args!("listing the forwarding entries of {name}"), e)
            })?;
        // What is there: (ip, mac) neighbours and (mac, node) forwarding entries of the device.
        let mut have_neigh = Vec::new();
        for m in neighbours.into_iter().filter(|m| m.header.ifindex == index) {
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let mac = neighbour_mac(&m);
            match (ip, mac) {
                (Some(ip), Some(mac))
                    if m.header.state == NeighbourState::Permanent
                        && peers.iter().any(|p| p.ip == ip && p.mac == mac) =>
                {
                    have_neigh.push(ip)
                }
                _ => self.delete_neighbour(name, m).await?,
            }
        }
        let mut have_fdb = Vec::new();
        for m in fdb.into_iter().filter(|m| m.header.ifindex == index) {
            // In a bridge-family message the destination comes as raw bytes.
            let node = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                }
                _ => None,
            });
            // Entries without a destination are the bridge's view of its port, not ours.
            let (Some(node), Some(mac)) = (node, neighbour_mac(&m)) else {
                continue;
            };
            if peers.iter().any(|p| p.mac == mac && p.node == node) {
                have_fdb.push(mac);
            } else {
                self.delete_neighbour(name, m).await?;
            }
        }
        for p in peers {
            if !have_fdb.contains(&p.mac) {
                let mut req = self
                    .handle
                    .neighbours()
                    .add_bridge(index, &p.mac)
                    .flags(NeighbourFlags::Own)
                    .destination(IpAddr::V4(p.node))
                    .replace();
                req.message_mut().header.state = NeighbourState::Permanent;
                req.execute().await.map_err(|e| {
                    nl_error(
                        format_args!("adding {} → {} to {name}", fmt_mac(p.mac), p.node),
                        e,
                    )
                })?;
                have_fdb.push(p.mac);
            }
            if !have_neigh.contains(&p.ip) {
                self.handle
                    .neighbours()
                    .add(index, IpAddr::V4(p.ip))
                    .link_layer_address(&p.mac)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| {
                        nl_error(
                            format_args!(
                                "adding neighbour {} ({}) to {name}",
                                p.ip,
                                fmt_mac(p.mac)
                            ),
                            e,
                        )
                    })?;
                have_neigh.push(p.ip);
            }
        }
        Ok(())
    }

    /// Delete a neighbour or forwarding entry as it was listed; already gone is fine.
    async fn delete_neighbour(&self, name: &str, m: NeighbourMessage) -> Result<()> {
        match self.handle.neighbours().del(m).execute().await {
            Err(e) if !is_errno(&e, libc::ENOENT) => {
                Err(nl_error(format_args!("removing an entry of {name}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Delete a link by name; a link that does not exist is not an error.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        delete_link(&self.handle, name)
            .await
            .map_err(|e| nl_error(format_args!("deleting link {name}"), e))
    }

    pub async fn link_exists(&self, name: &str) -> Result<bool> {
        check_ifname(name)?;
        let link = get_link(&self.handle, name)
            .await
            .map_err(|e| nl_error(format_args!("looking up link {name}"), e))?;
        Ok(link.is_some())
    }

    /// Every IPv4 address (addr, prefix) configured on the host's links — used to avoid
    /// subnets that collide with the host's.
    pub async fn host_ipv4_nets(&self) -> Result<Vec<(Ipv4Addr, u8)>> {
        let addrs = self
            .ipv4_addrs()
            .await
            .map_err(|e| nl_error("listing the host's IPv4 addresses", e))?;
        Ok(addrs
            .into_iter()
            .map(|(_, addr, len)| (addr, len))
            .collect())
    }

    /// What the host's IPv4 addressing claims: the network of every address, and every route
    /// of the main table but the default one, each with the interface it is on.
    pub async fn host_ipv4_claims(&self) -> Result<Vec<HostClaim>> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error("listing the links", e))?;
        let name = |index: u32| {
            links
                .iter()
                .find(|l| l.header.index == index)
                .and_then(|l| {
                    l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                })
                .unwrap_or_default()
        };
        let mut claims: Vec<HostClaim> = self
            .ipv4_addrs()
            .await
            .map_err(|e| nl_error("listing the host's IPv4 addresses", e))?
            .into_iter()
            .map(|(index, addr, prefix)| {
                let ifname = name(index);
                HostClaim {
                    addr,
                    prefix,
                    what: format!("address {addr}/{prefix} on {ifname}"),
                    ifname,
                }
            })
            .collect();
        let main = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(MAIN_TABLE)
            .build();
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(main)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error("listing the host's IPv4 routes", e))?;
        for r in routes {
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(r.header.table));
            let prefix = r.header.destination_prefix_length;
            if table != MAIN_TABLE || prefix == 0 || r.header.kind != RouteType::Unicast {
                continue;
            }
            let v4 = |a: &RouteAddress| match a {
                RouteAddress::Inet(a) => Some(*a),
                _ => None,
            };
            let (mut dst, mut via, mut oif) = (None, None, None);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(d) => dst = v4(d),
                    RouteAttribute::Gateway(g) => via = v4(g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            let Some(dst) = dst else { continue };
            let ifname = oif.map(name).unwrap_or_default();
            let mut what = format!("route {dst}/{prefix}");
            if let Some(g) = via {
                let _ = write!(what, " via {g}");
            }
            if !ifname.is_empty() {
                let _ = write!(what, " dev {ifname}");
            }
            claims.push(HostClaim {
                addr: dst,
                prefix,
                ifname,
                what,
            });
        }
        Ok(claims)
    }

    /// Wire one endpoint: a veth pair whose host end `ep.host_ifname` is enslaved to
    /// `ep.bridge`, gets `ep.mtu` and is up; the other end is created directly inside the
    /// network namespace `netns` (an fd of /proc/<pid>/ns/net) under the name `ep.ifname`, with
    /// MAC `ep.mac`, mtu, address ep.ip/ep.prefix, up, and — when `ep.gateway` is Some — a
    /// default route via it. The namespace's `lo` is already up (the runtime does that).
    ///
    /// On failure (or if the future is dropped before completion) the pair is removed again.
    pub async fn connect_endpoint(&self, ep: &Endpoint, netns: BorrowedFd<'_>) -> Result<()> {
        check_ifname(&ep.bridge)?;
        check_ifname(&ep.host_ifname)?;
        check_ifname(&ep.ifname)?;
        check_prefix(ep.prefix)?;
        if ep.gateway.is_some() && ep.gateway == ep.ip {
            return Err(Error::Invalid(format!(
                "endpoint {}: address {} is also its gateway",
                ep.host_ifname,
                ep.ip.map(|a| a.to_string()).unwrap_or_default()
            )));
        }
        // The container's end is configured by a new thread that joins the namespace and
        // prepares its connection while the host end is created here.
        let (created, peer_configured) = spawn_peer_configuration(netns, ep)?;

        let bridge = self.bridge_index(&ep.bridge).await?;
        // One request creates both ends: the host end enslaved and up, the peer created in
        // the container's namespace with its name, MAC and mtu. The kernel undoes the whole
        // creation if any part of it fails.
        let peer = LinkUnspec::new_with_name(&ep.ifname)
            .address(ep.mac.to_vec())
            .mtu(ep.mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(ep.host_ifname.clone())
            .mtu(ep.mtu)
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        // Armed before the request goes out, so that dropping this future while the request is
        // in flight removes the pair too (the deletion follows it on the same socket).
        let rollback = Rollback {
            handle: self.handle.clone(),
            name: Some(ep.host_ifname.clone()),
        };
        if let Err(e) = self.handle.link().add(veth).execute().await {
            // Nothing was created, and the name may belong to a link that is not ours.
            rollback.disarm();
            return Err(nl_error(
                format_args!(
                    "creating veth pair {}/{} on bridge {}",
                    ep.host_ifname, ep.ifname, ep.bridge
                ),
                e,
            ));
        }
        // If the thread already failed, its error is waiting in `peer_configured`.
        let _ = created.send(());
        let configured = peer_configured.await.unwrap_or_else(|_| {
            Err(Error::Netlink(format!(
                "configuring {} in the container: its thread died",
                ep.ifname
            )))
        });
        match configured {
            Ok(()) => {
                rollback.disarm();
                if let Some((ip6, _)) = ep.ip6 {
                    self.announce_v6(bridge, ip6, ep.mac).await;
                }
                Ok(())
            }
            Err(e) => {
                rollback.run().await;
                Err(e)
            }
        }
    }

    /// Remove an endpoint by its host-side veth name (deleting it removes the peer too);
    /// already gone is not an error.
    pub async fn disconnect_endpoint(&self, host_ifname: &str) -> Result<()> {
        self.delete_link(host_ifname).await
    }

    /// The index of bridge `name`; a missing bridge or a link that is no bridge is an error.
    async fn bridge_index(&self, name: &str) -> Result<u32> {
        match self.bridge_link(name).await? {
            Some(link) => Ok(link.header.index),
            None => Err(Error::Netlink(format!("bridge {name} does not exist"))),
        }
    }

    /// Link `name` if it exists; an error if it exists but is not a bridge.
    async fn bridge_link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let link = get_link(&self.handle, name)
            .await
            .map_err(|e| nl_error(format_args!("looking up bridge {name}"), e))?;
        match link {
            Some(link) if !is_bridge(&link) => Err(Error::Invalid(format!(
                "link {name} exists but is not a bridge"
            ))),
            link => Ok(link),
        }
    }

    /// (link index, address, prefix length) of every IPv4 address.
    async fn ipv4_addrs(&self) -> std::result::Result<Vec<(u32, Ipv4Addr, u8)>, rtnetlink::Error> {
        let mut request = self.handle.address().get();
        request.message_mut().header.family = AddressFamily::Inet;
        let messages: Vec<_> = request.execute().try_collect().await?;
        Ok(messages
            .into_iter()
            .filter_map(|msg| {
                // IFA_LOCAL is the interface's own address; IFA_ADDRESS differs from it only on
                // point-to-point links, where it is the peer's.
                let local = msg.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(IpAddr::V4(addr)) => Some(*addr),
                    _ => None,
                });
                let addr = local.or_else(|| {
                    msg.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(IpAddr::V4(addr)) => Some(*addr),
                        _ => None,
                    })
                })?;
                Some((msg.header.index, addr, msg.header.prefix_len))
            })
            .collect())
    }
}

/// Deletes a freshly created host veth (and so its peer) unless disarmed; if dropped while
/// still armed (the caller's future was cancelled) the deletion runs as a detached task.
struct Rollback {
    handle: Handle,
    name: Option<String>,
}

impl Rollback {
    fn disarm(mut self) {
        self.name = None;
    }

    async fn run(mut self) {
        if let Some(name) = self.name.take() {
            if let Err(e) = delete_link(&self.handle, &name).await {
                tracing::warn!("removing veth {name} after a failed setup: {e}");
            }
        }
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let handle = self.handle.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = delete_link(&handle, &name).await {
                        tracing::warn!("removing veth {name} after a cancelled setup: {e}");
                    }
                });
            }
        }
    }
}

/// Starts the configuration of the container's end of `ep` (see [`configure_peer`]) on a new
/// OS thread that joins the network namespace `netns`: a netlink socket acts in the namespace
/// it was created in, and a runtime worker must never change namespace, since it would keep
/// it. The thread opens its connection, drives it on a runtime of its own (cheaper than
/// hopping to the daemon's workers for every answer), waits for the first channel's signal
/// that the pair exists (or its closing: nothing to do), and answers on the second.
fn spawn_peer_configuration(
    netns: BorrowedFd<'_>,
    ep: &Endpoint,
) -> Result<(oneshot::Sender<()>, oneshot::Receiver<Result<()>>)> {
    // The thread needs its own descriptor and endpoint: it may outlive the caller's future.
    let netns = netns.try_clone_to_owned()?;
    let ep = ep.clone();
    let (created_tx, created_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let done = configure_in_netns(&netns, &ep, created_rx);
            // A closed channel means the caller gave up; the pair is being removed anyway.
            let _ = done_tx.send(done);
        })?;
    Ok((created_tx, done_rx))
}

/// The body of the thread started by [`spawn_peer_configuration`].
fn configure_in_netns(
    netns: &OwnedFd,
    ep: &Endpoint,
    created: oneshot::Receiver<()>,
) -> Result<()> {
    let ifname = &ep.ifname;
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::Netlink(format!(
            "configuring {ifname}: joining the container's network namespace: {e}"
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::Netlink(format!("configuring {ifname}: starting a runtime: {e}")))?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
            Error::Netlink(format!(
                "configuring {ifname}: opening a netlink connection in the container: {e}"
            ))
        })?;
        tokio::spawn(connection);
        match created.await {
            Ok(()) => configure_peer(&handle, ep).await,
            Err(_) => Ok(()),
        }
    })
}

/// Inside the container's namespace: bring the peer `ep.ifname` up, give it its address and
/// the default route.
///
/// Requests sent together are handled by the kernel in order, so each pair below costs one
/// round trip: the link is up before the route needs it, and the address (hence the on-link
/// route to the gateway) exists before the default route is added.
async fn configure_peer(handle: &Handle, ep: &Endpoint) -> Result<()> {
    let ifname = &ep.ifname;
    if ep.ip6.is_some() {
        // No duplicate address detection for the link-local address either: while it is
        // tentative the interface answered neighbour solicitations only after seconds in
        // about one try of three here. (This thread is in the container's namespace.)
        let path = format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad");
        std::fs::write(&path, "0")
            .map_err(|e| Error::Netlink(format!("configuring {ifname}: {path}: {e}")))?;
    }
    // The peer cannot be created up (a veth refuses to open before its pair is complete),
    // and the address and route need its index in the namespace.
    let up = async {
        let up = LinkUnspec::new_with_name(ifname).up().build();
        handle
            .link()
            .change(up)
            .execute()
            .await
            .map_err(|e| nl_error(format_args!("bringing {ifname} up in the container"), e))
    };
    let lookup = async {
        get_link(handle, ifname)
            .await
            .map_err(|e| nl_error(format_args!("looking up {ifname} in the container"), e))?
            .ok_or_else(|| Error::Netlink(format!("{ifname} did not appear in the container")))
    };
    let (up, link) = futures_util::future::join(up, lookup).await;
    up?;
    let index = link?.header.index;
    // This thread is in the container's namespace, so /proc/sys/net is the container's.
    for (key, value) in &ep.sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| Error::Invalid(format!("setting {key}={value} in the container: {e}")))?;
    }
    let address = async {
        let Some(ip) = ep.ip else {
            return Ok(());
        };
        handle
            .address()
            .add(index, IpAddr::V4(ip), ep.prefix)
            .execute()
            .await
            .map_err(|e| nl_error(format_args!("adding {ip}/{} to {ifname}", ep.prefix), e))
    };
    // IPv6 and link-local addresses skip duplicate address detection: the address is usable
    // at once, and berth's address management already keeps it unique on the bridge.
    let extra = async {
        let v6 = ep.ip6.map(|(a, p)| (IpAddr::V6(a), p));
        for &(addr, prefix) in v6.iter().chain(ep.extra.iter()) {
            let mut req = handle.address().add(index, addr, prefix);
            if addr.is_ipv6() {
                req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            }
            req.execute()
                .await
                .map_err(|e| nl_error(format_args!("adding {addr}/{prefix} to {ifname}"), e))?;
        }
        Ok::<(), Error>(())
    };
    // `replace`: a connect with a higher gateway priority moves the default route here. The
    // routes' requests go out after the addresses' (the futures are polled in order).
    let routes = async {
        let v4 = ep.gateway.map(|g| {
            let r = RouteMessageBuilder::<Ipv4Addr>::new().gateway(g);
            (IpAddr::V4(g), r.output_interface(index).build())
        });
        let v6 = ep.gateway6.map(|g| {
            let r = RouteMessageBuilder::<Ipv6Addr>::new().gateway(g);
            (IpAddr::V6(g), r.output_interface(index).build())
        });
        for (gateway, route) in v4.into_iter().chain(v6) {
            handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    nl_error(
                        format_args!("adding a default route via {gateway} on {ifname}"),
                        e,
                    )
                })?;
        }
        Ok::<(), Error>(())
    };
    let (address, extra, routes) = futures_util::future::join3(address, extra, routes).await;
    address.and(extra).and(routes)
}

/// Link `name`, None if there is none.
async fn get_link(
    handle: &Handle,
    name: &str,
) -> std::result::Result<Option<LinkMessage>, rtnetlink::Error> {
    match handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
    {
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        other => other,
    }
}

/// Deletes link `name` in one request (the kernel looks the name up); ENODEV is success.
async fn delete_link(handle: &Handle, name: &str) -> std::result::Result<(), rtnetlink::Error> {
    let message = LinkUnspec::new_with_name(name).build();
    match handle.link().del_with_message(message).execute().await {
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        other => other,
    }
}

fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// An attribute of a VXLAN link picked by `pick`, None for any other link.
fn vxlan_attr<T>(link: &LinkMessage, pick: impl Fn(&InfoVxlan) -> Option<T>) -> Option<T> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Data(InfoData::Vxlan(data)) => data.iter().find_map(&pick),
            _ => None,
        }),
        _ => None,
    })
}

/// The VNI of a VXLAN link.
fn vxlan_id(link: &LinkMessage) -> Option<u32> {
    vxlan_attr(link, |d| match d {
        InfoVxlan::Id(id) => Some(*id),
        _ => None,
    })
}

/// The local (source) address of a VXLAN link.
fn vxlan_local(link: &LinkMessage) -> Option<Ipv4Addr> {
    vxlan_attr(link, |d| match d {
        InfoVxlan::Local(a) => Some(*a),
        _ => None,
    })
}

/// Whether a VXLAN device computes outer UDP checksums (the kernel's default when unset).
fn vxlan_udp_csum(link: &LinkMessage) -> bool {
    vxlan_attr(link, |d| match d {
        InfoVxlan::UDPCsum(on) => Some(*on),
        _ => None,
    })
    .unwrap_or(true)
}

fn neighbour_mac(m: &NeighbourMessage) -> Option<[u8; 6]> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
        _ => None,
    })
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(msg) if msg.raw_code() == -errno)
}

/// An [`Error::Netlink`] naming what was being done, then the kernel's answer.
fn nl_error(doing: impl Display, err: rtnetlink::Error) -> Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Error::Netlink(format!("{doing}: {}", msg.to_io())),
        other => Error::Netlink(format!("{doing}: {other}")),
    }
}

/// The kernel's rules for interface names (dev_valid_name), checked up front for a clear error.
fn check_ifname(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid interface name {name:?}")))
    }
}

fn check_prefix(prefix: u8) -> Result<()> {
    if prefix <= 32 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid IPv4 prefix length {prefix}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn bridge_macs_are_unicast_local_and_differ() {
        let macs: HashSet<Vec<u8>> = (0..64).map(|_| random_bridge_mac()).collect();
        assert_eq!(macs.len(), 64);
        for mac in macs {
            assert_eq!(mac.len(), 6);
            assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}");
        }
    }

    #[test]
    fn mac_is_docker_style() {
        assert_eq!(
            mac_for(Ipv4Addr::new(172, 17, 0, 2)),
            [0x02, 0x42, 172, 17, 0, 2]
        );
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 250, 255, 254)),
            [0x02, 0x42, 10, 250, 255, 254]
        );
    }

    #[test]
    fn veth_names_are_short_hex_and_distinct() {
        let names: Vec<String> = (0..1000).map(|_| random_veth_name()).collect();
        for name in &names {
            assert_eq!(name.len(), 11, "{name}");
            assert!(name.starts_with("veth"), "{name}");
            assert!(
                name[4..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{name}"
            );
            check_ifname(name).unwrap();
        }
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["eth0", "br-0123456789ab", "veth1234567", "a"] {
            check_ifname(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "br-0123456789abc",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert!(
                matches!(check_ifname(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_connection_needs_a_runtime() {
        assert!(matches!(Netlink::new(), Err(Error::Netlink(_))));
    }

    #[test]
    fn prefixes_above_32_are_rejected() {
        check_prefix(0).unwrap();
        check_prefix(32).unwrap();
        assert!(matches!(check_prefix(33), Err(Error::Invalid(_))));
    }
}
