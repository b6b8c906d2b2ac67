//! What the network service reads from and writes to the host itself, outside any network:
//! the host's resolvers and sysctls. A leaf: no other module of the crate.

use crate::{Error, Result};
use std::net::Ipv4Addr;

/// Whether the host only has resolvers on loopback, which containers cannot reach.
pub fn host_dns_is_loopback() -> bool {
    host_nameservers().iter().all(|a| a.is_loopback())
}

/// The host's resolvers from /etc/resolv.conf.
pub fn host_nameservers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("nameserver"), Some(a)) => a.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

pub(crate) fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::Internal(format!("{path}: {e}")))
}
