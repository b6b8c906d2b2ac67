//! IPAM behind a trait: an [`Ipam`] gives each network its [`Pools`] (from the network's
//! record), from which endpoints take and give back addresses. [`DefaultIpam`] is Docker's
//! `default` driver over [`crate::ipam`] and [`crate::ipam6`]. Owns no files and no links.

use crate::ipam::{Pool, Subnet};
use crate::ipam6::{Pool6, Subnet6};
use crate::record::NetworkRecord;
use crate::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPAM driver.
pub trait Ipam: Send + Sync {
    /// Its name as `IPAM.Driver` shows it.
    fn name(&self) -> &'static str;
    /// The address pools of a network, its auxiliary addresses reserved.
    fn pools(&self, rec: &NetworkRecord) -> Result<Box<dyn Pools>>;
}

/// One network's addresses.
pub trait Pools: Send {
    /// Whether the network has IPv4 (resp. IPv6) addresses to give.
    fn has_v4(&self) -> bool;
    fn has_v6(&self) -> bool;
    /// An IPv4 address: `want` if it is free, else the next free one.
    fn request_v4(&mut self, want: Option<Ipv4Addr>) -> Result<Ipv4Addr>;
    fn request_v6(&mut self, want: Option<Ipv6Addr>) -> Result<Ipv6Addr>;
    /// Give an address back.
    fn release(&mut self, a: IpAddr);
}

/// The `default` IPAM driver: one IPv4 and one IPv6 pool per network.
pub struct DefaultIpam;

struct DefaultPools {
    v4: Option<Pool>,
    v6: Option<Pool6>,
}

impl Ipam for DefaultIpam {
    fn name(&self) -> &'static str {
        "default"
    }

    fn pools(&self, rec: &NetworkRecord) -> Result<Box<dyn Pools>> {
        let mut v4 = if rec.is_bridged() && rec.enable_ipv4 {
            let subnet = rec.subnet().ok_or_else(|| {
                Error::Internal(format!("network {}: bad subnet {:?}", rec.name, rec.subnet))
            })?;
            let range = if rec.ip_range.is_empty() {
                None
            } else {
                Some(rec.ip_range.parse::<Subnet>()?)
            };
            Some(Pool::new(subnet, range, rec.gateway())?)
        } else {
            None
        };
        let mut v6 = match rec.subnet6() {
            Some(subnet) if rec.is_bridged() => {
                let range = if rec.ip_range6.is_empty() {
                    None
                } else {
                    Some(rec.ip_range6.parse::<Subnet6>()?)
                };
                Some(Pool6::new(subnet, range, rec.gateway6())?)
            }
            _ => None,
        };
        for (name, a) in &rec.aux_addresses {
            let taken = match a.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => v4.as_mut().map(|p| p.reserve(a)),
                Ok(IpAddr::V6(a)) => v6.as_mut().map(|p| p.reserve(a)),
                Err(_) => None,
            };
            if !matches!(taken, Some(Ok(()))) {
                return Err(Error::Invalid(format!(
                    "invalid auxiliary address {name}={a}: it is not a free address of the network's subnets"
                )));
            }
        }
        // An overlay's bridge may have an address of its own (the ingress network's per-node
        // address): no endpoint gets it.
        let bridge_addr = rec
            .options
            .get(crate::record::OPT_BRIDGE_ADDR)
            .filter(|_| rec.is_overlay())
            .and_then(|a| a.parse::<Ipv4Addr>().ok());
        if let (Some(a), Some(pool)) = (bridge_addr, v4.as_mut()) {
            pool.reserve(a)?;
        }
        Ok(Box::new(DefaultPools { v4, v6 }))
    }
}

impl Pools for DefaultPools {
    fn has_v4(&self) -> bool {
        self.v4.is_some()
    }
    fn has_v6(&self) -> bool {
        self.v6.is_some()
    }
    fn request_v4(&mut self, want: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        let p = self
            .v4
            .as_mut()
            .ok_or_else(|| Error::Internal("the network has no address pool".into()))?;
        match want {
            Some(a) => p.reserve(a).map(|()| a),
            None => p.allocate(),
        }
    }
    fn request_v6(&mut self, want: Option<Ipv6Addr>) -> Result<Ipv6Addr> {
        let p = self
            .v6
            .as_mut()
            .ok_or_else(|| Error::Internal("the network has no IPv6 address pool".into()))?;
        match want {
            Some(a) => p.reserve(a).map(|()| a),
            None => p.allocate(),
        }
    }
    fn release(&mut self, a: IpAddr) {
        match a {
            IpAddr::V4(a) => {
                if let Some(p) = self.v4.as_mut() {
                    p.release(a)
                }
            }
            IpAddr::V6(a) => {
                if let Some(p) = self.v6.as_mut() {
                    p.release(a)
                }
            }
        }
    }
}
