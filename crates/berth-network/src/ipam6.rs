//! IPv6 address management: subnets, gateways and the addresses handed to endpoints of IPv6
//! networks (the IPv4 side is [`crate::ipam`]). Pure bookkeeping like it: no I/O, and no record,
//! link or endpoint.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::ipam::Cursor;
use crate::{Error, Result};

/// An IPv6 network: its first address and prefix length (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl Subnet6 {
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Result<Subnet6> {
        if prefix > 128 {
            return Err(Error::Invalid(format!("invalid prefix length /{prefix}")));
        }
        let s = Subnet6 {
            addr: Ipv6Addr::from(u128::from(addr) & mask(prefix)),
            prefix,
        };
        if s.addr != addr {
            return Err(Error::Invalid(format!(
                "invalid subnet {addr}/{prefix}: it should be {s}"
            )));
        }
        Ok(s)
    }

    fn first(&self) -> u128 {
        u128::from(self.addr)
    }

    fn last(&self) -> u128 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask(self.prefix) == self.first()
    }

    pub fn overlaps(&self, other: &Subnet6) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Whether all of `other` lies inside this network.
    pub fn covers(&self, other: &Subnet6) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }

    /// The first address after the subnet-router anycast address (the conventional gateway).
    pub fn first_host(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.first() + u128::from(self.prefix < 127))
    }

    /// The `n`th network of `prefix` bits inside this one, if there is such.
    pub fn nth(&self, prefix: u8, n: u128) -> Option<Subnet6> {
        if prefix < self.prefix || prefix > 128 {
            return None;
        }
        let bits = u32::from(prefix - self.prefix);
        if bits < 128 && n >> bits != 0 {
            return None;
        }
        let step = if prefix == 128 {
            1
        } else {
            1u128 << (128 - u32::from(prefix))
        };
        Some(Subnet6 {
            addr: Ipv6Addr::from(self.first() + n * step),
            prefix,
        })
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet6 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Subnet6> {
        let bad = || Error::Invalid(format!("invalid CIDR address: {s}"));
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 128 {
            return Err(bad());
        }
        Subnet6::new(addr, prefix)
    }
}

/// The IPv6 addresses of one network: which are handed out.
#[derive(Debug, Clone)]
pub struct Pool6 {
    pub subnet: Subnet6,
    /// Where dynamic addresses come from (`--ip-range`); the whole subnet by default.
    pub range: Subnet6,
    pub gateway: Ipv6Addr,
    taken: Cursor<u128>,
}

impl Pool6 {
    pub fn new(
        subnet: Subnet6,
        range: Option<Subnet6>,
        gateway: Option<Ipv6Addr>,
    ) -> Result<Pool6> {
        if subnet.prefix > 126 {
            return Err(Error::Invalid(format!(
                "subnet {subnet} is too small: at least a /126 is needed"
            )));
        }
        let range = range.unwrap_or(subnet);
        if !subnet.covers(&range) {
            return Err(Error::Invalid(format!(
                "ip-range {range} is not inside subnet {subnet}"
            )));
        }
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) || u128::from(gateway) == subnet.first() {
            return Err(Error::Invalid(format!(
                "gateway {gateway} is not a host address of subnet {subnet}"
            )));
        }
        Ok(Pool6 {
            subnet,
            range,
            gateway,
            taken: Cursor::new(u128::from(gateway)),
        })
    }

    /// Take a particular address (`--ip6`, or one held across a daemon restart).
    pub fn reserve(&mut self, ip: Ipv6Addr) -> Result<()> {
        let a = u128::from(ip);
        let usable = self.subnet.contains(ip) && host_address(&self.subnet, self.gateway, a);
        self.taken.reserve(a, usable, ip, self.subnet)
    }

    /// Hand out the next free address of the range.
    pub fn allocate(&mut self) -> Result<Ipv6Addr> {
        let (subnet, gateway) = (self.subnet, self.gateway);
        self.taken
            .allocate(
                (self.range.first(), self.range.last()),
                |a| host_address(&subnet, gateway, a),
                "IPv6",
                self.range,
            )
            .map(Ipv6Addr::from)
    }

    pub fn release(&mut self, ip: Ipv6Addr) {
        self.taken.release(u128::from(ip));
    }
}

/// Whether `a` may be a container's address in `subnet`: neither the subnet-router anycast
/// address (the first) nor the gateway.
fn host_address(subnet: &Subnet6, gateway: Ipv6Addr, a: u128) -> bool {
    a != subnet.first() && a != u128::from(gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_checks_host_bits() {
        let s: Subnet6 = "fd00:1::/64".parse().unwrap();
        assert_eq!(s.to_string(), "fd00:1::/64");
        assert!("fd00:1::1/64".parse::<Subnet6>().is_err());
        assert!("fd00::/129".parse::<Subnet6>().is_err());
        assert!("10.0.0.0/8".parse::<Subnet6>().is_err());
        assert_eq!(s.first_host(), ip("fd00:1::1"));
        assert!(s.contains(ip("fd00:1::ffff")) && !s.contains(ip("fd00:2::1")));
        let big: Subnet6 = "fd00::/48".parse().unwrap();
        let small: Subnet6 = "fd00:0:0:5::/64".parse().unwrap();
        assert!(big.covers(&small) && big.overlaps(&small) && !small.covers(&big));
        assert!(!big.overlaps(&s));
        assert_eq!(big.nth(64, 3).unwrap().to_string(), "fd00:0:0:3::/64");
        assert!(big.nth(64, 1 << 16).is_none());
        assert!(big.nth(40, 0).is_none());
    }

    #[test]
    fn allocates_reserves_and_releases() {
        let mut p = Pool6::new("fd00:9::/64".parse().unwrap(), None, None).unwrap();
        assert_eq!(p.gateway, ip("fd00:9::1"));
        assert_eq!(p.allocate().unwrap(), ip("fd00:9::2"));
        p.reserve(ip("fd00:9::3")).unwrap();
        assert_eq!(p.allocate().unwrap(), ip("fd00:9::4"));
        assert!(p.reserve(ip("fd00:9::3")).is_err());
        assert!(p.reserve(ip("fd00:9::1")).is_err());
        assert!(p.reserve(ip("fd00:8::5")).is_err());
        p.release(ip("fd00:9::3"));
        p.reserve(ip("fd00:9::3")).unwrap();
        let mut tiny = Pool6::new("fd00:9::/126".parse().unwrap(), None, None).unwrap();
        tiny.allocate().unwrap();
        tiny.allocate().unwrap();
        assert!(matches!(tiny.allocate(), Err(Error::Exhausted(_))));
        assert!(Pool6::new("fd00:9::/64".parse().unwrap(), None, Some(ip("fd00:8::1"))).is_err());
    }
}
