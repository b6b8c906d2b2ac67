//! The files a sandbox mounts: /etc/hostname, /etc/hosts and /etc/resolv.conf, rendered from
//! plain values (pure functions, no I/O), and `--add-host` and `--link` parsing. Reads no
//! container and writes nothing: the caller reads the host's files and writes the results.

use crate::{Error, Result};
use std::net::IpAddr;

/// The loopback and IPv6 multicast lines every /etc/hosts of a namespace of its own starts
/// with.
const HOSTS_BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// A `--link` target as /etc/hosts shows it: `ip alias hostname name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkHost {
    pub ip: String,
    pub alias: String,
    pub hostname: String,
    pub name: String,
}

/// /etc/hosts: the host's own (`host_hosts`, in the host's namespace) or the base lines, then
/// `--add-host` entries, link targets, and the sandbox's addresses under its hostname.
pub fn hosts(
    host_hosts: Option<&str>,
    extra: &[(String, IpAddr)],
    links: &[LinkHost],
    own: &[String],
    hostname: &str,
) -> String {
    let mut out = String::new();
    match host_hosts {
        Some(h) => {
            out.push_str(h);
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
        }
        None => out.push_str(HOSTS_BASE),
    }
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    for l in links {
        out.push_str(&format!(
            "{}\t{} {} {}\n",
            l.ip, l.alias, l.hostname, l.name
        ));
    }
    for ip in own {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// One `--add-host` entry, `name:ip` or `name=ip` (`[v6]` in brackets allowed);
/// `host-gateway` stands for `host_gateway` (how containers reach the host).
pub fn extra_host(entry: &str, host_gateway: IpAddr) -> Result<(String, IpAddr)> {
    let bad = || Error::Invalid(format!("invalid IP address in add-host: {entry:?}"));
    let (name, ip) = entry.split_once([':', '=']).ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let addr = if ip == "host-gateway" {
        host_gateway
    } else {
        ip.parse().map_err(|_| bad())?
    };
    Ok((name.to_string(), addr))
}

/// A sandbox's DNS settings (`--dns`, `--dns-search`, `--dns-option`): empty means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Who answers a sandbox's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolver {
    /// The host's namespace: the sandbox's or daemon's servers, else the host's.
    Host,
    /// The embedded DNS server listening on this address (the network's gateway).
    Embedded(String),
    /// A namespace of its own without the embedded server: the sandbox's or the daemon's
    /// servers, else the host's that are not on loopback.
    Direct,
}

/// /etc/resolv.conf from the host's (`host`), the sandbox's settings, the daemon's `dns`
/// servers and who resolves.
pub fn resolv_conf(host: &str, own: &DnsSettings, daemon_dns: &[String], via: &Resolver) -> String {
    let mut nameservers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("nameserver"), Some(a)) => nameservers.push(a.to_string()),
            (Some("search" | "domain"), Some(first)) => {
                search = std::iter::once(first).chain(w).map(String::from).collect()
            }
            (Some("options"), Some(first)) => {
                options = std::iter::once(first).chain(w).map(String::from).collect()
            }
            _ => {}
        }
    }
    match via {
        Resolver::Embedded(gw) => {
            nameservers = vec![gw.clone()];
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
        }
        _ if !own.servers.is_empty() => nameservers = own.servers.clone(),
        _ if !daemon_dns.is_empty() => nameservers = daemon_dns.to_vec(),
        Resolver::Host => {}
        // The host's loopback resolvers are unreachable from a namespace of its own.
        Resolver::Direct => nameservers.retain(|a| !(a.starts_with("127.") || a == "::1")),
    }
    if !own.search.is_empty() {
        search = own.search.clone();
    }
    if !own.options.is_empty() {
        options = own.options.clone();
    }
    let mut out = String::new();
    for ns in &nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// A `--link` value: `name` or `name:alias` (the docker CLI may send `/name:/me/alias`).
pub fn parse_link(l: &str) -> Result<(&str, &str)> {
    let (t, a) = l.split_once(':').unwrap_or((l, l));
    let t = t.trim_start_matches('/');
    let a = a.rsplit('/').next().unwrap_or(a);
    if t.is_empty() || a.is_empty() {
        return Err(Error::Invalid(format!("invalid link {l:?}")));
    }
    Ok((t, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file() {
        let extra = [("db".to_string(), "10.0.0.9".parse().unwrap())];
        let links = [LinkHost {
            ip: "10.222.0.3".into(),
            alias: "w".into(),
            hostname: "abc".into(),
            name: "web".into(),
        }];
        let own = ["10.222.0.2".to_string(), "fd00::2".to_string()];
        let h = hosts(None, &extra, &links, &own, "me");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with(
            "ff02::2\tip6-allrouters\n10.0.0.9\tdb\n10.222.0.3\tw abc web\n10.222.0.2\tme\nfd00::2\tme\n"
        ));
        // The host's namespace: the host's file, completed with a newline.
        assert_eq!(hosts(Some("1.2.3.4 x"), &[], &[], &[], "me"), "1.2.3.4 x\n");
    }

    #[test]
    fn add_host_entries() {
        let gw: IpAddr = "10.222.0.1".parse().unwrap();
        assert_eq!(
            extra_host("a:1.2.3.4", gw).unwrap().1.to_string(),
            "1.2.3.4"
        );
        assert_eq!(extra_host("a=[::1]", gw).unwrap().1.to_string(), "::1");
        assert_eq!(extra_host("h:host-gateway", gw).unwrap().1, gw);
        assert!(extra_host(":1.2.3.4", gw).is_err());
        assert!(extra_host("a:nope", gw).is_err());
        assert!(extra_host("a", gw).is_err());
    }

    #[test]
    fn resolv_conf_by_resolver() {
        let host = "nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch a b\noptions edns0\n";
        let none = DnsSettings::default();
        assert_eq!(
            resolv_conf(host, &none, &[], &Resolver::Embedded("10.1.0.1".into())),
            "nameserver 10.1.0.1\nsearch a b\noptions edns0 ndots:0\n"
        );
        assert_eq!(
            resolv_conf(host, &none, &[], &Resolver::Direct),
            "nameserver 9.9.9.9\nsearch a b\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf(host, &none, &[], &Resolver::Host),
            "nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch a b\noptions edns0\n"
        );
        let own = DnsSettings {
            servers: vec!["1.1.1.1".into()],
            search: vec!["x".into()],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            resolv_conf(host, &own, &["8.8.8.8".into()], &Resolver::Direct),
            "nameserver 1.1.1.1\nsearch x\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf(host, &none, &["8.8.8.8".into()], &Resolver::Host),
            "nameserver 8.8.8.8\nsearch a b\noptions edns0\n"
        );
    }

    #[test]
    fn links() {
        assert_eq!(parse_link("web:w").unwrap(), ("web", "w"));
        assert_eq!(parse_link("/web:/me/w").unwrap(), ("web", "w"));
        assert_eq!(parse_link("web").unwrap(), ("web", "web"));
        assert!(parse_link(":x").is_err());
    }
}
