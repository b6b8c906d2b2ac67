//! A network's record, `<data-root>/networks/<id>.json`: what it was created with (driver,
//! subnets, options, labels). Plain data: the service owns the files, drivers read records;
//! nothing here does I/O.

use crate::ipam::Subnet;
use crate::ipam6::Subnet6;
use crate::nft;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Option: the network's VNI (one number; Docker's name, which allows a list).
pub const OPT_VNI: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// Option: this node's data-path IPv4 address (the VXLAN source, other nodes' destination).
pub const OPT_LOCAL: &str = "com.berth.overlay.local";
/// Option: the bridge's own address when it is not the gateway (the ingress network's
/// per-node address).
pub const OPT_BRIDGE_ADDR: &str = "com.berth.overlay.bridge_addr";
/// Option: `true` for the ingress network (no DNS server).
pub const OPT_INGRESS: &str = "com.berth.overlay.ingress";
/// Option: the MTU, if smaller than the underlay's minus the VXLAN overhead.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";

/// What is persisted in `networks/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host`, `null` or `overlay`.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    /// Bridge networks: subnet, gateway and optional range, as strings Docker shows.
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub ip_range: String,
    /// The bridge interface.
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub icc: bool,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `bridge`, `host` and `none` exist on every daemon and cannot be removed.
    #[serde(default)]
    pub predefined: bool,
    /// false: an IPv6-only network (`--ipv4=false`), without IPv4 subnet or gateway.
    #[serde(default = "yes")]
    pub enable_ipv4: bool,
    /// IPv6 networks (`--ipv6`): their subnet, gateway and optional range.
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub subnet6: String,
    #[serde(default)]
    pub gateway6: String,
    #[serde(default)]
    pub ip_range6: String,
    /// `--aux-address` (name → address): kept out of the pools.
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
    /// `--ipam-opt`.
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    pub fn is_overlay(&self) -> bool {
        self.driver == "overlay"
    }
    /// Networks with a bridge of their own on this host and addresses from a pool: bridge
    /// and overlay networks.
    pub fn is_bridged(&self) -> bool {
        self.is_bridge() || self.is_overlay()
    }
    /// The ingress (routing mesh) overlay network.
    pub fn is_ingress(&self) -> bool {
        self.is_overlay() && self.options.get(OPT_INGRESS).is_some_and(|v| v == "true")
    }
    /// User-defined bridge networks, and overlays but ingress, resolve container names.
    pub fn has_dns(&self) -> bool {
        self.is_bridged() && !self.predefined && !self.is_ingress()
    }
    pub fn subnet(&self) -> Option<Subnet> {
        self.subnet.parse().ok()
    }
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.parse().ok()
    }
    pub fn subnet6(&self) -> Option<Subnet6> {
        self.subnet6.parse().ok()
    }
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.gateway6.parse().ok()
    }
    pub fn rules(&self) -> Option<nft::NetRules> {
        if self.bridge.is_empty() {
            return None;
        }
        Some(nft::NetRules {
            bridge: self.bridge.clone(),
            subnet: self.subnet(),
            internal: self.internal,
            icc: self.icc,
            subnet6: self.subnet6(),
        })
    }
}

impl NetworkRecord {
    /// A record with only its identity: IPv4 on, inter-container traffic allowed, nothing
    /// else set (the driver fills its part).
    pub fn new(id: String, name: String, driver: &str, created: String) -> NetworkRecord {
        NetworkRecord {
            id,
            name,
            driver: driver.into(),
            created,
            internal: false,
            attachable: false,
            subnet: String::new(),
            gateway: String::new(),
            ip_range: String::new(),
            bridge: String::new(),
            icc: true,
            mtu: 0,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            predefined: false,
            enable_ipv4: true,
            enable_ipv6: false,
            subnet6: String::new(),
            gateway6: String::new(),
            ip_range6: String::new(),
            aux_addresses: BTreeMap::new(),
            ipam_options: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_kinds() {
        let mut r = NetworkRecord::new("x".into(), "ov".into(), "overlay", String::new());
        assert!(r.is_overlay() && r.is_bridged() && !r.is_bridge());
        assert!(r.has_dns());
        assert!(!r.is_ingress());
        r.options.insert(OPT_INGRESS.into(), "true".into());
        assert!(r.is_ingress());
        assert!(!r.has_dns());
        let b = NetworkRecord::new("y".into(), "b".into(), "bridge", String::new());
        assert!(b.is_bridged() && !b.is_ingress() && b.has_dns());
    }
}
