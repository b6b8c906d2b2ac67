//! Network drivers behind one trait: what a driver does to the host for a network (bring it
//! up, tear it down), how it fills a new network's record from a create request, and whether
//! its endpoints get interfaces of their own. `bridge`, `host`, `null` and `overlay` are here,
//! each an implementation registered in [`builtin`], not a branch.
//! Drivers own no state of their own; the [`Network`] they act on (record, pools, names, DNS
//! server) is defined here so that drivers never import the service, and the service keeps
//! the networks.

pub mod bridge;
pub mod host;
pub mod overlay;

use crate::dns;
use crate::ipam_driver::Pools;
use crate::link::{self, Netlink};
use crate::nft;
use crate::record::NetworkRecord;
use crate::{config::NetConfig, Error, Result};
use berth_api::network::CreateRequest;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};

/// A boxed future, so that drivers can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The host-side machinery drivers share: netlink, berth's nftables table, the settings, the
/// resolvers the embedded DNS forwards to, and the ESP of encrypted overlays (shared by them
/// all: associations are per pair of nodes).
pub struct HostNet {
    pub link: Netlink,
    pub table: nft::Table,
    pub esp: crate::esp::Esp,
    pub cfg: NetConfig,
    /// Where names that are not containers' go: the daemon's `dns`, else the host's resolvers.
    pub upstreams: Vec<SocketAddr>,
}

/// A network's live state.
pub struct Network {
    pub rec: NetworkRecord,
    /// Its addresses, from its IPAM driver.
    pub(crate) pools: Mutex<Box<dyn Pools>>,
    /// Names its embedded DNS answers (user-defined networks).
    pub names: dns::Names,
    pub(crate) dns: Mutex<Option<dns::Server>>,
    pub driver: Arc<dyn Driver>,
}

impl Network {
    /// Its address pools.
    pub fn pools(&self) -> MutexGuard<'_, Box<dyn Pools>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_dns(&self, server: Option<dns::Server>) {
        *self.dns.lock().unwrap_or_else(|e| e.into_inner()) = server;
    }

    /// Whether the network runs a DNS server its sandboxes should use.
    pub fn serves_dns(&self) -> bool {
        self.dns.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// A network driver.
pub trait Driver: Send + Sync {
    /// Its name, as a network's `Driver` shows it.
    fn name(&self) -> &'static str;
    /// Whether user networks of this driver can be created (`host` and `null` have their one
    /// predefined network): the error to give if not.
    fn check_create(&self) -> Result<()>;
    /// Whether its endpoints get an interface and addresses of their own (and can be
    /// connected to a running sandbox).
    fn connectable(&self) -> bool;
    /// Fill the driver's part of a new network's record (`rec` has the id, name and common
    /// fields) from the create request; `others` are the existing networks' records.
    fn configure<'a>(
        &'a self,
        host: &'a HostNet,
        req: &'a CreateRequest,
        rec: &'a mut NetworkRecord,
        others: &'a [NetworkRecord],
    ) -> BoxFuture<'a, Result<()>>;
    /// Make the network's host side (at boot and at create).
    fn bring_up<'a>(&'a self, host: &'a HostNet, n: &'a Network) -> BoxFuture<'a, Result<()>>;
    /// Remove the network's host side.
    fn tear_down<'a>(&'a self, host: &'a HostNet, n: &'a Network) -> BoxFuture<'a, Result<()>>;
    /// Plug an endpoint's interface (`spec`: names, MAC, addresses taken, routes) into a
    /// sandbox's network namespace `netns`.
    fn join<'a>(
        &'a self,
        host: &'a HostNet,
        spec: &'a link::Endpoint,
        netns: BorrowedFd<'a>,
    ) -> BoxFuture<'a, Result<()>>;
    /// Take an endpoint's interface (its host side `host_ifname`) out of its sandbox.
    fn unplug<'a>(&'a self, host: &'a HostNet, host_ifname: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// The drivers berth has, by name.
pub fn builtin() -> Vec<Arc<dyn Driver>> {
    vec![
        Arc::new(bridge::Bridge),
        Arc::new(host::Host),
        Arc::new(host::Null),
        Arc::new(overlay::Overlay),
    ]
}

/// The driver a create request names (`""` is `bridge`), among `drivers`.
pub fn select(drivers: &[Arc<dyn Driver>], name: &str) -> Result<Arc<dyn Driver>> {
    let name = if name.is_empty() { "bridge" } else { name };
    drivers
        .iter()
        .find(|d| d.name() == name)
        .cloned()
        .ok_or_else(|| {
            Error::NotFound(format!(
                "plugin \"{name}\" not found: berth supports the bridge and overlay drivers"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_drivers_by_name() {
        let all = builtin();
        assert_eq!(select(&all, "").unwrap().name(), "bridge");
        assert_eq!(select(&all, "bridge").unwrap().name(), "bridge");
        assert!(select(&all, "bridge").unwrap().connectable());
        let host = select(&all, "host").unwrap();
        assert!(!host.connectable());
        assert!(matches!(host.check_create(), Err(Error::Forbidden(_))));
        assert!(matches!(
            select(&all, "null").unwrap().check_create(),
            Err(Error::Forbidden(_))
        ));
        assert!(select(&all, "bridge").unwrap().check_create().is_ok());
        let overlay = select(&all, "overlay").unwrap();
        assert!(overlay.connectable());
        assert!(overlay.check_create().is_ok());
        assert!(matches!(select(&all, "macvlan"), Err(Error::NotFound(_))));
    }
}
