//! The service's settings: the default bridge and container networking in general, as the
//! daemon's configuration gives them. Owns no state and reads no file; read by the service
//! and its drivers.

use serde::Deserialize;

/// Settings of the default bridge network and of container networking in general.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub bridge: String,
    /// Gateway address and prefix of the default bridge.
    pub bip: (std::net::Ipv4Addr, u8),
    pub fixed_cidr: Option<String>,
    pub mtu: u32,
    pub icc: bool,
    pub ip_forward: bool,
    pub userland_proxy: bool,
    pub dns: Vec<std::net::Ipv4Addr>,
    /// `ipv6`: the default bridge is an IPv6 network too, on `fixed_cidr_v6`.
    pub ipv6: bool,
    pub fixed_cidr_v6: Option<crate::ipam6::Subnet6>,
    /// `default-address-pools`, IPv4 and IPv6 entries.
    pub address_pools: Vec<AddressPool>,
    /// `host-gateway-ip`: what `host-gateway` in --add-host stands for.
    pub host_gateway_ip: Option<std::net::IpAddr>,
}

/// One entry of `default-address-pools`: networks of `size` bits are cut out of `base`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

impl AddressPool {
    /// The flag form, `base=10.10.0.0/16,size=24`.
    pub fn parse_flag(s: &str) -> Result<AddressPool, String> {
        let (mut base, mut size) = (None, None);
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => base = Some(v.to_string()),
                Some(("size", v)) => size = v.parse::<u8>().ok(),
                _ => {
                    return Err(format!(
                        "invalid default-address-pool {s:?}: want base=CIDR,size=N"
                    ))
                }
            }
        }
        match (base, size) {
            (Some(base), Some(size)) => Ok(AddressPool { base, size }),
            _ => Err(format!(
                "invalid default-address-pool {s:?}: want base=CIDR,size=N"
            )),
        }
    }

    /// The base is a subnet of either family and the size fits inside it.
    pub fn check(&self) -> Result<(), String> {
        let fits = if let Ok(b) = self.base.parse::<crate::ipam::Subnet>() {
            (b.prefix..=30).contains(&self.size)
        } else if let Ok(b) = self.base.parse::<crate::ipam6::Subnet6>() {
            (b.prefix..=126).contains(&self.size)
        } else {
            false
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "invalid default-address-pools entry base={} size={}: want a subnet and a longer prefix inside it",
                self.base, self.size
            ))
        }
    }
}
