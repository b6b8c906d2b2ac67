//! IPv4 address management: subnets, gateways, ranges and the addresses handed to endpoints. Pure
//! bookkeeping: it does no I/O and knows no record, link or endpoint.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::{Error, Result};

/// An IPv4 network: its first address and prefix length (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        if prefix > 32 {
            return Err(Error::Invalid(format!("invalid prefix length /{prefix}")));
        }
        let s = Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if s.addr != addr {
            return Err(Error::Invalid(format!(
                "invalid subnet {addr}/{prefix}: it should be {s}"
            )));
        }
        Ok(s)
    }

    /// The network an address with a prefix belongs to (`10.1.2.3/16` → `10.1.0.0/16`).
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.first()
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Whether all of `other` lies inside this network.
    pub fn covers(&self, other: &Subnet) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }

    /// The first usable host address (the conventional gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first() + u32::from(self.prefix < 31))
    }

    /// The next network of the same size, if the address space goes on.
    pub fn next(&self) -> Option<Subnet> {
        let step = 1u64 << (32 - u32::from(self.prefix));
        let n = u64::from(self.first()) + step;
        u32::try_from(n).ok().map(|a| Subnet {
            addr: Ipv4Addr::from(a),
            prefix: self.prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Subnet> {
        let bad = || Error::Invalid(format!("invalid CIDR address: {s}"));
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Subnet::new(addr, prefix)
    }
}

/// The allocation state both address families share, addresses as integers: which are handed
/// out, and where the next search starts (after the last address handed out, so a released
/// address is not reused at once: stale ARP/neighbour and conntrack entries of the old holder).
#[derive(Debug, Clone)]
pub(crate) struct Cursor<T> {
    used: BTreeSet<T>,
    last: T,
}

impl<T: Copy + Ord + From<u8> + std::ops::Add<Output = T>> Cursor<T> {
    pub(crate) fn new(last: T) -> Cursor<T> {
        Cursor {
            used: BTreeSet::new(),
            last,
        }
    }

    /// Take `ip` (`a` as an integer), which must be `usable` in `subnet`: `--ip`/`--ip6`, or
    /// an address held across a daemon restart.
    pub(crate) fn reserve(
        &mut self,
        a: T,
        usable: bool,
        ip: impl fmt::Display,
        subnet: impl fmt::Display,
    ) -> Result<()> {
        if !usable {
            return Err(Error::Invalid(format!(
                "invalid address {ip}: it is not a usable address of subnet {subnet}"
            )));
        }
        if !self.used.insert(a) {
            return Err(Error::Invalid(format!("Address already in use: {ip}")));
        }
        Ok(())
    }

    /// [`Cursor::next_free`], or the error that the `family`'s pool `range` is exhausted.
    pub(crate) fn allocate(
        &mut self,
        (lo, hi): (T, T),
        usable: impl Fn(T) -> bool,
        family: &str,
        range: impl fmt::Display,
    ) -> Result<T> {
        self.next_free(lo, hi, usable).ok_or_else(|| {
            Error::Exhausted(format!(
                "no available {family} addresses on this network's address pools: {range}"
            ))
        })
    }

    /// The next free address of `lo..=hi` that `usable` accepts, taken; at most `used + 3`
    /// candidates are looked at before a free one, however large the range.
    pub(crate) fn next_free(&mut self, lo: T, hi: T, usable: impl Fn(T) -> bool) -> Option<T> {
        let start = if (lo..=hi).contains(&self.last) {
            self.last
        } else {
            hi
        };
        let mut a = start;
        loop {
            a = if a >= hi { lo } else { a + T::from(1) };
            if usable(a) && !self.used.contains(&a) {
                self.used.insert(a);
                self.last = a;
                return Some(a);
            }
            if a == start {
                return None;
            }
        }
    }

    pub(crate) fn release(&mut self, a: T) {
        self.used.remove(&a);
    }

    pub(crate) fn in_use(&self, a: T) -> bool {
        self.used.contains(&a)
    }
}

/// The addresses of one network: which are handed out, which are free.
#[derive(Debug, Clone)]
pub struct Pool {
    pub subnet: Subnet,
    /// Where dynamic addresses come from (`--ip-range`); the whole subnet by default.
    pub range: Subnet,
    pub gateway: Ipv4Addr,
    taken: Cursor<u32>,
}

impl Pool {
    pub fn new(subnet: Subnet, range: Option<Subnet>, gateway: Option<Ipv4Addr>) -> Result<Pool> {
        if subnet.prefix > 30 {
            return Err(Error::Invalid(format!(
                "subnet {subnet} is too small: at least a /30 is needed"
            )));
        }
        let range = range.unwrap_or(subnet);
        if !subnet.covers(&range) {
            return Err(Error::Invalid(format!(
                "ip-range {range} is not inside subnet {subnet}"
            )));
        }
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway)
            || u32::from(gateway) == subnet.first()
            || u32::from(gateway) == subnet.last()
        {
            return Err(Error::Invalid(format!(
                "gateway {gateway} is not a host address of subnet {subnet}"
            )));
        }
        Ok(Pool {
            subnet,
            range,
            gateway,
            taken: Cursor::new(u32::from(gateway)),
        })
    }

    /// Take a particular address (`--ip`, or one held by a container across a restart).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<()> {
        let a = u32::from(ip);
        let usable = self.subnet.contains(ip) && host_address(&self.subnet, self.gateway, a);
        self.taken.reserve(a, usable, ip, self.subnet)
    }

    /// Hand out the next free address of the range.
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let (subnet, gateway) = (self.subnet, self.gateway);
        self.taken
            .allocate(
                (self.range.first(), self.range.last()),
                |a| host_address(&subnet, gateway, a),
                "IPv4",
                self.range,
            )
            .map(Ipv4Addr::from)
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.taken.release(u32::from(ip));
    }

    pub fn in_use(&self, ip: Ipv4Addr) -> bool {
        self.taken.in_use(u32::from(ip))
    }
}

/// Whether `a` may be a container's address in `subnet`: neither the network's, its broadcast,
/// nor the gateway.
fn host_address(subnet: &Subnet, gateway: Ipv4Addr, a: u32) -> bool {
    a != subnet.first() && a != subnet.last() && a != u32::from(gateway)
}

/// The first network of `prefix` bits inside `space` that overlaps none of `taken`.
pub fn pick_subnet(space: Subnet, prefix: u8, taken: &[Subnet]) -> Option<Subnet> {
    if prefix < space.prefix || prefix > 30 {
        return None;
    }
    let mut s = Subnet::containing(space.addr, prefix);
    while space.covers(&s) {
        if !taken.iter().any(|t| t.overlaps(&s)) {
            return Some(s);
        }
        s = s.next()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_checks_host_bits() {
        let s: Subnet = "10.1.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.1.0.0/16");
        let e = "10.1.0.1/16".parse::<Subnet>().unwrap_err().to_string();
        assert!(e.contains("it should be 10.1.0.0/16"), "{e}");
        assert!("10.1.0.0".parse::<Subnet>().is_err());
        assert!("10.1.0.0/33".parse::<Subnet>().is_err());
        assert!("10.1.0.0/x".parse::<Subnet>().is_err());
        assert!("300.1.0.0/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap_and_cover() {
        let a: Subnet = "10.1.0.0/16".parse().unwrap();
        let b: Subnet = "10.1.5.0/24".parse().unwrap();
        let c: Subnet = "10.2.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.covers(&b) && !b.covers(&a));
        assert_eq!(a.first_host(), ip("10.1.0.1"));
        assert_eq!(b.next().unwrap().to_string(), "10.1.6.0/24");
        assert!("255.255.255.0/24"
            .parse::<Subnet>()
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn allocates_in_order_skipping_gateway_and_wraps() {
        let mut p = Pool::new("10.9.0.0/29".parse().unwrap(), None, None).unwrap();
        assert_eq!(p.gateway, ip("10.9.0.1"));
        let got: Vec<_> = (0..5).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(
            got,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip)
        );
        assert!(matches!(p.allocate(), Err(Error::Exhausted(_))));
        p.release(ip("10.9.0.3"));
        assert_eq!(p.allocate().unwrap(), ip("10.9.0.3"));
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut p = Pool::new("10.9.0.0/24".parse().unwrap(), None, None).unwrap();
        let a = p.allocate().unwrap();
        p.release(a);
        let b = p.allocate().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn range_and_reserve() {
        let mut p = Pool::new(
            "10.9.0.0/16".parse().unwrap(),
            Some("10.9.5.0/30".parse().unwrap()),
            Some(ip("10.9.0.254")),
        )
        .unwrap();
        // A sub-range's first address is a host address of the subnet.
        assert_eq!(p.allocate().unwrap(), ip("10.9.5.0"));
        assert_eq!(p.allocate().unwrap(), ip("10.9.5.1"));
        p.reserve(ip("10.9.7.7")).unwrap();
        assert!(p
            .reserve(ip("10.9.7.7"))
            .unwrap_err()
            .to_string()
            .contains("already in use"));
        assert!(p.reserve(ip("10.9.0.254")).is_err());
        assert!(p.reserve(ip("10.9.255.255")).is_err());
        assert!(p.reserve(ip("10.8.0.1")).is_err());
        assert!(p.in_use(ip("10.9.7.7")));
        assert!(Pool::new(
            "10.9.0.0/16".parse().unwrap(),
            Some("10.8.0.0/24".parse().unwrap()),
            None
        )
        .is_err());
        assert!(Pool::new("10.9.0.0/16".parse().unwrap(), None, Some(ip("10.8.0.1"))).is_err());
        assert!(Pool::new("10.9.0.0/31".parse().unwrap(), None, None).is_err());
    }

    #[test]
    fn picks_free_subnets() {
        let space: Subnet = "10.223.0.0/16".parse().unwrap();
        let taken = ["10.223.0.0/24", "10.223.1.128/25"].map(|s| s.parse().unwrap());
        assert_eq!(
            pick_subnet(space, 24, &taken).unwrap().to_string(),
            "10.223.2.0/24"
        );
        let all = [space];
        assert!(pick_subnet(space, 24, &all).is_none());
        assert!(pick_subnet(space, 8, &[]).is_none());
    }
}
