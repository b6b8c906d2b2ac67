//! Address allocation for swarm networks: IPv4 subnets carved from the swarm's default
//! address pools (swarmkit's 10.0.0.0/8 in /24s unless `swarm init` said otherwise), the
//! VXLAN ids the overlays use, and the predefined ingress network. Pure functions over the
//! networks that exist.

use berth_api::swarm as api;
use std::fmt;
use std::net::Ipv4Addr;

/// The swarm's default address pool and subnet size (swarmkit's defaults).
pub const DEFAULT_POOL: &str = "10.0.0.0/8";
pub const DEFAULT_SUBNET_SIZE: u32 = 24;
/// The first VXLAN id handed out (libnetwork's overlay driver starts above 4096).
pub const FIRST_VNI: u32 = 4097;
/// The driver-state option that carries a network's VXLAN id, as Docker shows it.
pub const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The predefined `ingress` network `swarm init` makes (the routing mesh): an overlay with
/// Docker's VXLAN id 4096 and the first subnet of the swarm's pools.
pub fn ingress_network(now: &str) -> api::Network {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("com.docker.swarm.internal".to_string(), "true".to_string());
    api::Network {
        id: crate::ids::new_id(),
        version: api::ObjectVersion::default(),
        created_at: now.to_string(),
        updated_at: now.to_string(),
        ipam_options: None,
        spec: api::NetworkSpec {
            name: "ingress".to_string(),
            labels,
            driver_configuration: Some(api::Driver {
                name: "overlay".to_string(),
                options: Default::default(),
            }),
            ingress: true,
            scope: "swarm".to_string(),
            ..Default::default()
        },
        driver_state: api::Driver {
            name: "overlay".to_string(),
            options: std::collections::BTreeMap::from([(
                VNI_OPTION.to_string(),
                "4096".to_string(),
            )]),
        },
    }
}

/// An IPv4 subnet: its network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: u32,
    pub prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/n` (IPv4 only); host bits must be zero, as a pool or subnet is written.
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid subnet {s}: not in CIDR form"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("invalid subnet {s}: not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("invalid subnet {s}: bad prefix length"))?;
        let sub = Subnet {
            addr: u32::from(ip) & mask(prefix),
            prefix,
        };
        if sub.addr != u32::from(ip) {
            return Err(format!(
                "invalid subnet {s}: host bits are set (the subnet is {sub})"
            ));
        }
        Ok(sub)
    }

    /// How many addresses it spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn end(&self) -> u64 {
        u64::from(self.addr) + self.size()
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        u64::from(self.addr) < o.end() && u64::from(o.addr) < self.end()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.addr
    }

    /// The `n`th address of the subnet (1 is the gateway's).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.wrapping_add(n))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The lowest subnet of `size` bits of prefix in the pools (in their order) that overlaps
/// none of `taken`; `None` when the pools are exhausted.
pub fn allocate(pools: &[Subnet], size: u8, taken: &[Subnet]) -> Option<Subnet> {
    if size > 32 {
        return None;
    }
    let step = 1u64 << (32 - u32::from(size));
    for p in pools.iter().filter(|p| p.prefix <= size) {
        let mut at = u64::from(p.addr);
        while at + step <= p.end() {
            let cand = Subnet {
                addr: at as u32,
                prefix: size,
            };
            match taken
                .iter()
                .filter(|t| t.overlaps(&cand))
                .map(Subnet::end)
                .max()
            {
                // Skip past everything in the way, to the next aligned candidate.
                Some(end) => at = end.div_ceil(step) * step,
                None => return Some(cand),
            }
        }
    }
    None
}

/// The lowest VXLAN id from [`FIRST_VNI`] not in `taken`.
pub fn allocate_vni(taken: &[u32]) -> u32 {
    let mut v = FIRST_VNI;
    while taken.contains(&v) {
        v += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        Subnet::parse(x).unwrap()
    }

    #[test]
    fn parses_and_prints_subnets() {
        assert_eq!(s("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(s("10.0.3.0/24").host(1).to_string(), "10.0.3.1");
        assert!(Subnet::parse("10.0.0.1/24")
            .unwrap_err()
            .contains("host bits"));
        assert!(Subnet::parse("10.0.0.0").is_err());
        assert!(Subnet::parse("fd00::/64").is_err());
        assert!(Subnet::parse("10.0.0.0/33").is_err());
        assert!(s("10.0.3.0/24").contains("10.0.3.77".parse().unwrap()));
        assert!(!s("10.0.3.0/24").contains("10.0.4.1".parse().unwrap()));
        assert!(s("10.0.0.0/8").overlaps(&s("10.9.0.0/16")));
        assert!(!s("10.0.0.0/24").overlaps(&s("10.0.1.0/24")));
    }

    #[test]
    fn allocates_the_lowest_free_subnet() {
        let pool = [s("10.0.0.0/8")];
        assert_eq!(allocate(&pool, 24, &[]), Some(s("10.0.0.0/24")));
        let taken = [s("10.0.0.0/24"), s("10.0.2.0/24")];
        assert_eq!(allocate(&pool, 24, &taken), Some(s("10.0.1.0/24")));
        // A bigger user subnet in the way is skipped whole.
        let taken = [s("10.0.0.0/16")];
        assert_eq!(allocate(&pool, 24, &taken), Some(s("10.1.0.0/24")));
        // A smaller one blocks only the /24 it is in.
        let taken = [s("10.0.0.128/25")];
        assert_eq!(allocate(&pool, 24, &taken), Some(s("10.0.1.0/24")));
    }

    #[test]
    fn moves_to_the_next_pool_and_runs_out() {
        let pools = [s("10.10.0.0/23"), s("192.168.0.0/24")];
        let taken = [s("10.10.0.0/24"), s("10.10.1.0/24")];
        assert_eq!(allocate(&pools, 24, &taken), Some(s("192.168.0.0/24")));
        let taken = [s("10.10.0.0/23"), s("192.168.0.0/24")];
        assert_eq!(allocate(&pools, 24, &taken), None);
        // A pool smaller than the subnet size gives nothing.
        assert_eq!(allocate(&[s("10.0.0.0/26")], 24, &[]), None);
        assert_eq!(
            allocate(&[s("10.0.0.0/30")], 31, &[]),
            Some(s("10.0.0.0/31"))
        );
    }

    #[test]
    fn vxlan_ids_fill_gaps() {
        assert_eq!(allocate_vni(&[]), 4097);
        assert_eq!(allocate_vni(&[4097, 4099]), 4098);
        assert_eq!(allocate_vni(&[4098, 4097]), 4099);
    }
}
