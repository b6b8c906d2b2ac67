//! The service's side of swarm networking on this node: the remote endpoints of overlay
//! networks (programmed on their VXLAN devices, and for encrypted networks their nodes' ESP
//! associations) and the routing mesh's published ports (in berth's nftables table). Each
//! call takes the full desired list from the daemon. While overlays exist, VXLAN is accepted
//! only from the nodes of their peers.

use super::NetworkService;
use crate::driver::overlay::OverlayOptions;
use crate::endpoint::fmt_mac;
use crate::esp::Keys;
use crate::link::Peer;
use crate::nft::IngressPort;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

/// The nodes VXLAN traffic is accepted from: the remote peers' nodes of each overlay network
/// (by id), and what berth's table was last given (whether VXLAN's port is filtered, and the
/// nodes).
#[derive(Debug, Default)]
pub(crate) struct Underlay {
    by_network: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    applied: Option<(bool, BTreeSet<Ipv4Addr>)>,
}

impl Underlay {
    /// The table was made again: its sets are empty.
    pub(crate) fn forget_applied(&mut self) {
        self.applied = None;
    }
}

/// A remote endpoint of an overlay network: its address and MAC, and the data-path address
/// of the node that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayPeer {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub node: Ipv4Addr,
}

impl NetworkService {
    /// The remote endpoints of overlay network `network` (id or name): the full desired list.
    /// Entries on this node itself (`node` = its data-path address) are skipped: those
    /// endpoints are on the local bridge. On the ingress network, list the other nodes'
    /// ingress bridge addresses too (MAC [`crate::link::mac_for`] of the address): tasks send
    /// replies of routing-mesh connections to them.
    /// An encrypted network needs the cluster's `keys` (ignored on others): the ESP
    /// associations with the peers' nodes are synced before the peers are programmed.
    pub async fn set_overlay_peers(
        &self,
        network: &str,
        peers: &[OverlayPeer],
        keys: Option<&Keys>,
    ) -> Result<()> {
        let n = self.find(network)?;
        let o = OverlayOptions::of(&n.rec)?;
        let (mut ips, mut macs) = (HashSet::new(), HashSet::new());
        for p in peers {
            if !ips.insert(p.ip) {
                return Err(Error::Invalid(format!(
                    "overlay peer {} is given twice",
                    p.ip
                )));
            }
            if !macs.insert(p.mac) {
                return Err(Error::Invalid(format!(
                    "overlay peer MAC {} is given twice",
                    fmt_mac(p.mac)
                )));
            }
        }
        let peers: Vec<Peer> = peers
            .iter()
            .filter(|p| p.node != o.local)
            .map(|p| Peer {
                ip: p.ip,
                mac: p.mac,
                node: p.node,
            })
            .collect();
        if o.encrypted {
            let keys = keys.ok_or_else(|| {
                Error::Invalid(format!(
                    "encrypted network {}: no encryption keys from the managers yet",
                    n.rec.name
                ))
            })?;
            let nodes: BTreeSet<Ipv4Addr> = peers.iter().map(|p| p.node).collect();
            self.host.esp.set_nodes(&n.rec.id, nodes, keys.clone())?;
        }
        // The peers' nodes may send before anything is programmed here. The peers are
        // programmed even if the table cannot be changed (not made yet, at boot).
        self.underlay()
            .by_network
            .insert(n.rec.id.clone(), peers.iter().map(|p| p.node).collect());
        let filtered = self.sync_underlay();
        self.host.link.sync_vxlan_peers(&o.vxlan(), &peers).await?;
        filtered
    }

    pub(crate) fn underlay(&self) -> std::sync::MutexGuard<'_, Underlay> {
        self.underlay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bring berth's table to the overlay networks there are: VXLAN's port filtered while
    /// any has had its peers set, open to the nodes of their peers (element changes, only when
    /// they differ from what was applied). Until the first list (a daemon start with live
    /// restore), VXLAN is not filtered, so that running overlays keep working.
    pub(crate) fn sync_underlay(&self) -> Result<()> {
        let overlays: BTreeSet<String> = self
            .all()
            .iter()
            .filter(|n| n.rec.is_overlay())
            .map(|n| n.rec.id.clone())
            .collect();
        let mut u = self.underlay();
        u.by_network.retain(|id, _| overlays.contains(id));
        let nodes: BTreeSet<Ipv4Addr> = u.by_network.values().flatten().copied().collect();
        let want = (!u.by_network.is_empty(), nodes);
        if u.applied.as_ref() == Some(&want) {
            return Ok(());
        }
        self.host.table.set_underlay(want.0, &want.1)?;
        u.applied = Some(want);
        Ok(())
    }

    /// Every ingress-published port of the swarm on this node: the full desired list.
    /// Connections to any local address of the node on a published port are DNATed to the
    /// port's backends (round robin over 60 slots) without SNAT; they are kept across table
    /// rebuilds.
    /// A list that passes its checks is kept even if applying it fails (berth's table not
    /// made yet, at boot): the next table rebuild applies it.
    pub fn set_ingress_ports(&self, ports: &[IngressPort]) -> Result<()> {
        crate::nft::check_ingress(ports)?;
        let mut kept = self.ingress.lock().unwrap_or_else(|e| e.into_inner());
        *kept = ports.to_vec();
        self.host.table.set_ingress(ports)
    }
}
