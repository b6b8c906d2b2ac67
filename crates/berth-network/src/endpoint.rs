//! Endpoints: a sandbox's attachment to one network. [`EndpointConfig`] is what was asked at
//! create or connect (the container's configuration, kept in its record); [`Endpoint`] adds
//! the addresses, MAC and interface names it has while it runs (the service's state). Also
//! the [`Sandbox`] an endpoint belongs to, and the pure rules over them: configuration
//! checks, MAC addresses, per-interface sysctls, interface order, which endpoint routes, and
//! the DNS names. No I/O and no state: the service applies them.

use crate::record::NetworkRecord;
use crate::{Error, Result};
use berth_api::network::EndpointSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A sandbox: a container's network namespace as the service knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The container's id.
    pub id: String,
    /// The container's name, without the leading `/`.
    pub name: String,
    pub hostname: String,
    /// Its own DNS servers (`--dns`): the embedded DNS forwards its queries there.
    pub dns: Vec<String>,
    /// The network of its first interface (`eth0`): the key of its primary endpoint.
    pub primary: String,
}

/// What a sandbox asked of its endpoint on one network, at create or connect, kept across
/// restarts (by the container's record).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointConfig {
    pub network_id: String,
    pub endpoint_id: String,
    pub aliases: Vec<String>,
    /// The address asked for (`--ip`).
    pub requested_ip: String,
    /// `--link` entries (`name:alias`).
    pub links: Vec<String>,
    /// The MAC address, the IPv6 address, link-local addresses, driver options and the
    /// gateway priority asked for.
    #[serde(default)]
    pub requested_mac: String,
    #[serde(default)]
    pub requested_ip6: String,
    #[serde(default)]
    pub link_local_ips: Vec<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub gw_priority: i64,
}

/// A sandbox's endpoint on one network: its configuration and, while it runs, what it got.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    pub endpoint_id: String,
    pub aliases: Vec<String>,
    /// The address asked for (`--ip`), kept across restarts.
    pub requested_ip: String,
    /// `--link` entries (`name:alias`), on the default bridge.
    pub links: Vec<String>,
    // While running:
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    pub host_ifname: String,
    pub ifname: String,
    /// Asked for at create or connect, kept across restarts: the MAC address, the IPv6
    /// address, link-local addresses, driver options and the gateway priority.
    #[serde(default)]
    pub requested_mac: String,
    #[serde(default)]
    pub requested_ip6: String,
    #[serde(default)]
    pub link_local_ips: Vec<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub gw_priority: i64,
    /// While running, on IPv6 networks.
    #[serde(default)]
    pub ip6: String,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: String,
}

/// Checks an endpoint configuration (`EndpointSettings` of create and connect) against the
/// network `n` it is for.
pub fn check_config(n: &NetworkRecord, ep: &EndpointSettings) -> Result<()> {
    let user = !n.predefined;
    if ep.aliases.as_ref().is_some_and(|a| !a.is_empty()) && !user {
        return Err(Error::Invalid(
            "network-scoped aliases are only supported for user-defined networks".into(),
        ));
    }
    let ip = ep
        .ipam_config
        .as_ref()
        .map(|c| c.ipv4_address.as_str())
        .unwrap_or("");
    if !ip.is_empty() {
        if !user {
            return Err(Error::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        let a: Ipv4Addr = ip
            .parse()
            .map_err(|_| Error::Invalid(format!("invalid IPv4 address: {ip}")))?;
        if !n.subnet().is_some_and(|s| s.contains(a)) {
            return Err(Error::Invalid(format!(
                "no configured subnet contains IP address {a}"
            )));
        }
    }
    let ip6 = ep
        .ipam_config
        .as_ref()
        .map(|c| c.ipv6_address.as_str())
        .unwrap_or("");
    if !ip6.is_empty() {
        if !user {
            return Err(Error::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        let a: Ipv6Addr = ip6
            .parse()
            .map_err(|_| Error::Invalid(format!("invalid IPv6 address: {ip6}")))?;
        if !n.subnet6().is_some_and(|s| s.contains(a)) {
            return Err(Error::Invalid(format!(
                "no configured subnet contains IP address {a}{}",
                if n.enable_ipv6 {
                    ""
                } else {
                    " (the network is not an IPv6 network: create it with --ipv6)"
                }
            )));
        }
    }
    for l in ep
        .ipam_config
        .as_ref()
        .and_then(|c| c.link_local_ips.as_ref())
        .into_iter()
        .flatten()
    {
        if l.parse::<IpAddr>().is_err() {
            return Err(Error::Invalid(format!(
                "invalid link-local IP address: {l}"
            )));
        }
    }
    if !ep.mac_address.is_empty() {
        check_mac(&ep.mac_address)?;
    }
    if let Some(list) = ep.driver_opts.as_ref().and_then(|o| o.get(SYSCTLS_OPT)) {
        parse_sysctls(list, "IFNAME")?;
    }
    Ok(())
}

/// The driver option with per-interface sysctls (Docker's bridge driver's), whose keys name
/// the interface `IFNAME`: `net.ipv4.conf.IFNAME.log_martians=1,net.ipv6.conf.IFNAME.x=0`.
const SYSCTLS_OPT: &str = "com.docker.network.endpoint.sysctls";

/// The sysctls `DriverOpts` asks for on `ep`'s interface, keys checked and `IFNAME` replaced.
pub fn endpoint_sysctls(ep: &Endpoint) -> Result<Vec<(String, String)>> {
    let Some(list) = ep.driver_opts.get(SYSCTLS_OPT) else {
        return Ok(Vec::new());
    };
    parse_sysctls(list, &ep.ifname)
}

pub fn parse_sysctls(list: &str, ifname: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad =
            |why: &str| Error::Invalid(format!("invalid sysctl {item:?} in {SYSCTLS_OPT}: {why}"));
        let (key, value) = item.split_once('=').ok_or_else(|| bad("want key=value"))?;
        let parts: Vec<&str> = key.split('.').collect();
        let per_interface = matches!(
            parts.as_slice(),
            ["net", "ipv4" | "ipv6" | "mpls", "conf", "IFNAME", rest] if !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        if !per_interface {
            return Err(bad(
                "only net.{ipv4,ipv6,mpls}.conf.IFNAME.<setting> keys are allowed",
            ));
        }
        if value.is_empty() || value.contains(['\n', '/']) {
            return Err(bad("bad value"));
        }
        out.push((key.replacen("IFNAME", ifname, 1), value.to_string()));
    }
    Ok(out)
}

/// A MAC address an interface can take: six hex bytes, not a multicast address.
pub fn check_mac(mac: &str) -> Result<[u8; 6]> {
    match parse_mac(mac) {
        Some(m) if m[0] & 1 == 0 => Ok(m),
        Some(_) => Err(Error::Invalid(format!(
            "invalid MAC address {mac}: it is a multicast address"
        ))),
        None => Err(Error::Invalid(format!("invalid MAC address: {mac}"))),
    }
}

/// The prefix a `--link-local-ip` gets: the link-local networks' (169.254.0.0/16,
/// fe80::/64), else the address alone.
pub fn link_local_prefix(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(v) if v.is_link_local() => 16,
        IpAddr::V4(_) => 32,
        IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80 => 64,
        IpAddr::V6(_) => 128,
    }
}

/// A new endpoint configuration on `n` from what was asked (checked), with a fresh
/// `endpoint_id`.
pub fn new_endpoint(
    n: &NetworkRecord,
    ep: Option<&EndpointSettings>,
    endpoint_id: String,
) -> Result<EndpointConfig> {
    let ep = ep.cloned().unwrap_or_default();
    check_config(n, &ep)?;
    let ipam = ep.ipam_config.unwrap_or_default();
    Ok(EndpointConfig {
        network_id: n.id.clone(),
        endpoint_id,
        aliases: ep.aliases.unwrap_or_default(),
        requested_ip: ipam.ipv4_address,
        requested_ip6: ipam.ipv6_address,
        link_local_ips: ipam.link_local_ips.unwrap_or_default(),
        requested_mac: ep.mac_address.to_ascii_lowercase(),
        driver_opts: ep.driver_opts.unwrap_or_default(),
        gw_priority: ep.gw_priority,
        links: Vec::new(),
    })
}

impl Endpoint {
    /// An endpoint with this configuration and nothing taken yet.
    pub fn configured(c: &EndpointConfig) -> Endpoint {
        Endpoint {
            network_id: c.network_id.clone(),
            endpoint_id: c.endpoint_id.clone(),
            aliases: c.aliases.clone(),
            requested_ip: c.requested_ip.clone(),
            links: c.links.clone(),
            requested_mac: c.requested_mac.clone(),
            requested_ip6: c.requested_ip6.clone(),
            link_local_ips: c.link_local_ips.clone(),
            driver_opts: c.driver_opts.clone(),
            gw_priority: c.gw_priority,
            ..Endpoint::default()
        }
    }

    /// This configuration with what `live` has while running (addresses, MAC, interfaces).
    pub fn with_live(c: &EndpointConfig, live: Option<&Endpoint>) -> Endpoint {
        let mut e = Endpoint::configured(c);
        if let Some(l) = live {
            e.ip = l.ip.clone();
            e.prefix = l.prefix;
            e.gateway = l.gateway.clone();
            e.mac = l.mac.clone();
            e.host_ifname = l.host_ifname.clone();
            e.ifname = l.ifname.clone();
            e.ip6 = l.ip6.clone();
            e.prefix6 = l.prefix6;
            e.gateway6 = l.gateway6.clone();
        }
        e
    }
}

/// Endpoints in interface order: the `primary` network first, then the others by name.
pub fn ordered<V>(primary: &str, endpoints: &BTreeMap<String, V>) -> Vec<String> {
    let mut names: Vec<String> = endpoints
        .keys()
        .filter(|k| *k != primary)
        .cloned()
        .collect();
    if endpoints.contains_key(primary) {
        names.insert(0, primary.to_string());
    }
    names
}

/// Which endpoint holds the default route: the highest `GwPriority` among those with a
/// gateway, the first in interface order on a tie.
pub fn router(primary: &str, endpoints: &BTreeMap<String, Endpoint>) -> Option<String> {
    let mut best: Option<(&String, i64)> = None;
    for name in ordered(primary, endpoints) {
        if let Some((k, ep)) = endpoints.get_key_value(&name) {
            if ep.gateway.is_empty() && ep.gateway6.is_empty() {
                continue;
            }
            if best.is_none_or(|(_, p)| ep.gw_priority > p) {
                best = Some((k, ep.gw_priority));
            }
        }
    }
    best.map(|(k, _)| k.clone())
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// The names a container answers to on a user-defined network.
pub fn dns_names(sb: &Sandbox, ep: &Endpoint) -> Vec<String> {
    let mut names = vec![sb.name.clone(), sb.id[..12.min(sb.id.len())].to_string()];
    for a in &ep.aliases {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    if !sb.hostname.is_empty() && !names.contains(&sb.hostname) {
        names.push(sb.hostname.clone());
    }
    names
}

/// What the embedded DNS answers for the container on network `net`: its [`dns_names`],
/// also qualified with the network's name (`web.mynet`).
pub fn dns_keys(sb: &Sandbox, ep: &Endpoint, net: &str) -> Vec<String> {
    let names = dns_names(sb, ep);
    let qualified: Vec<String> = names.iter().map(|n| format!("{n}.{net}")).collect();
    names.into_iter().chain(qualified).collect()
}

/// An endpoint's links as (alias, target) pairs.
pub fn link_names(ep: &Endpoint) -> Vec<(String, String)> {
    ep.links
        .iter()
        .map(|l| {
            let (t, a) = l.split_once(':').unwrap_or((l, l));
            (a.to_string(), t.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(fmt_mac([2, 0x42, 10, 1, 0, 2]), "02:42:0a:01:00:02");
        assert!(check_mac("03:00:00:00:00:01").is_err());
        assert!(check_mac("02:00:00:00:00:01").is_ok());
        assert_eq!(parse_mac("02:42:0a:01:00:02"), Some([2, 0x42, 10, 1, 0, 2]));
        assert_eq!(parse_mac("02:42"), None);
    }

    #[test]
    fn order_routes_and_names() {
        let ep = |gw: &str, prio: i64| Endpoint {
            gateway: gw.into(),
            gw_priority: prio,
            aliases: vec!["db".into()],
            ..Endpoint::default()
        };
        let mut eps = BTreeMap::from([
            ("a".to_string(), ep("10.0.0.1", 0)),
            ("main".to_string(), ep("10.1.0.1", 0)),
            ("z".to_string(), ep("", 9)),
        ]);
        assert_eq!(ordered("main", &eps), ["main", "a", "z"]);
        // A tie goes to the first in interface order; no gateway never routes.
        assert_eq!(router("main", &eps).as_deref(), Some("main"));
        eps.insert("b".into(), ep("10.2.0.1", 5));
        assert_eq!(router("main", &eps).as_deref(), Some("b"));
        let sb = Sandbox {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            hostname: "h".into(),
            ..Sandbox::default()
        };
        assert_eq!(
            dns_names(&sb, &eps["a"]),
            ["web", "0123456789ab", "db", "h"]
        );
        assert_eq!(
            dns_keys(&sb, &eps["a"], "n")[4..],
            ["web.n", "0123456789ab.n", "db.n", "h.n"]
        );
        let linked = Endpoint {
            links: vec!["web:w".into()],
            ..Endpoint::default()
        };
        assert_eq!(link_names(&linked), [("w".to_string(), "web".to_string())]);
    }

    #[test]
    fn endpoint_sysctls() {
        let s = parse_sysctls(
            "net.ipv4.conf.IFNAME.log_martians=1, net.ipv6.conf.IFNAME.accept_ra=0",
            "eth1",
        )
        .unwrap();
        assert_eq!(
            s,
            [
                ("net.ipv4.conf.eth1.log_martians".into(), "1".into()),
                ("net.ipv6.conf.eth1.accept_ra".into(), "0".into())
            ]
        );
        for bad in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv4.conf.IFNAME.x",
            "net.ipv4.conf.IFNAME.../x=1",
            "net.ipv4.conf.IFNAME.x=a/b",
            "kernel.x=1",
        ] {
            assert!(parse_sysctls(bad, "eth0").is_err(), "{bad}");
        }
    }
}
