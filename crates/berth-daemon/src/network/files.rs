//! A container's /etc/hostname, /etc/hosts and /etc/resolv.conf, the `--link` variables, and
//! what `container:` mode takes from the other container.

use super::endpoint::{mode, primary_name, Mode};
use super::ports::parse_port_key;
use crate::container::handle::Container;
use crate::container::service::Service;
use crate::container::Record;
use crate::error::{Error, Result};
use berth_network::nft::Proto;

/// What the container's spec needs from its networking: the namespace and files of the
/// container whose network it shares, and link variables.
pub fn spec_for(d: &Service, r: &Record) -> Result<crate::container::spec::NetSpec> {
    match mode(r) {
        Mode::Container(other) => {
            let o = d.find(&other)?;
            let or = o.snapshot();
            if or.state.status != crate::container::status::RUNNING || or.state.pid <= 0 {
                return Err(Error::conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    or.id
                )));
            }
            // Under --userns-remap a network namespace is owned by its container's user
            // namespace, so sharing it means sharing that too (as Docker does).
            let userns = match (d.remap_of(r), d.remap_of(&or)) {
                (Some(_), Some(_)) => Some(format!("/proc/{}/ns/user", or.state.pid).into()),
                (Some(_), None) => {
                    return Err(Error::bad_request(format!(
                        "cannot join the network namespace of container {}: it runs with --userns=host and this one does not",
                        or.id
                    )))
                }
                _ => None,
            };
            Ok(crate::container::spec::NetSpec {
                netns: Some(format!("/proc/{}/ns/net", or.state.pid).into()),
                userns,
                files: Some(o.paths.clone()),
                hostname: Some(or.config.hostname.clone()),
                env: Vec::new(),
            })
        }
        _ => Ok(crate::container::spec::NetSpec {
            env: link_env(d, r),
            ..Default::default()
        }),
    }
}

/// One `--add-host` entry, `name:ip` or `name=ip` (`[v6]` in brackets allowed);
/// `host-gateway` stands for the daemon's `host-gateway-ip`, else the default bridge's
/// gateway (how containers reach the host, `host.docker.internal`).
pub fn extra_host(d: &Service, entry: &str) -> Result<(String, std::net::IpAddr)> {
    let bad = || Error::bad_request(format!("invalid IP address in add-host: {entry:?}"));
    let (name, ip) = entry.split_once([':', '=']).ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let addr = if ip == "host-gateway" {
        d.net
            .cfg
            .host_gateway_ip
            .unwrap_or(std::net::IpAddr::V4(d.net.cfg.bip.0))
    } else {
        ip.parse().map_err(|_| bad())?
    };
    Ok((name.to_string(), addr))
}

/// Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container.
pub fn write_files(d: &Service, c: &Container, hostname: &str) -> Result<()> {
    let p = &c.paths;
    let r = c.snapshot();
    let h = &r.host_config;
    let m = mode(&r);
    if matches!(m, Mode::Container(_)) {
        // It uses the other container's files.
        return Ok(());
    }
    std::fs::write(p.hostname(), format!("{hostname}\n"))?;
    let mut hosts = String::new();
    if matches!(m, Mode::Host) {
        hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
    } else {
        hosts.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    }
    for entry in h.extra_hosts.iter().flatten() {
        let (name, ip) = extra_host(d, entry)?;
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    let primary = r.net.endpoints.get(primary_name(&r));
    if let Some(ep) = primary.filter(|e| !e.ip.is_empty() || !e.ip6.is_empty()) {
        // Links on user-defined networks are answered by the embedded DNS instead.
        let on_default = primary_name(&r) == "bridge";
        for l in ep.links.iter().filter(|_| on_default) {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let t = d.find(target)?;
            let tr = t.snapshot();
            let tip = tr
                .net
                .endpoints
                .get("bridge")
                .map(|e| e.ip.clone())
                .filter(|ip| !ip.is_empty())
                .ok_or_else(|| {
                    Error::bad_request(format!(
                        "cannot link to a non running container: /{target} AS {}/{alias}",
                        r.name
                    ))
                })?;
            hosts.push_str(&format!(
                "{tip}\t{alias} {} {}\n",
                tr.config.hostname,
                tr.bare_name()
            ));
        }
        if !ep.ip.is_empty() {
            hosts.push_str(&format!("{}\t{hostname}\n", ep.ip));
        }
        if !ep.ip6.is_empty() {
            hosts.push_str(&format!("{}\t{hostname}\n", ep.ip6));
        }
    }
    std::fs::write(p.hosts(), hosts)?;

    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
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
    let own_dns: Vec<String> = h.dns.clone().unwrap_or_default();
    let daemon_dns: Vec<String> = d.net.cfg.dns.iter().map(|a| a.to_string()).collect();
    let primary_net = primary.and_then(|e| d.net.find(&e.network_id).ok());
    let embedded = primary_net
        .as_ref()
        .filter(|n| d.net.serves_dns(n))
        // An IPv6-only network's server is on its IPv6 gateway.
        .map(|n| {
            if n.rec.gateway.is_empty() {
                n.rec.gateway6.clone()
            } else {
                n.rec.gateway.clone()
            }
        });
    match (&m, embedded) {
        (Mode::Host, _) => {
            if !own_dns.is_empty() {
                nameservers = own_dns;
            } else if !daemon_dns.is_empty() {
                nameservers = daemon_dns;
            }
        }
        // User-defined networks (and a default bridge whose host resolvers are on
        // loopback) answer through the embedded DNS, which forwards what it does not know.
        (Mode::Bridge, Some(gw))
            if own_dns.is_empty() || primary_net.as_ref().is_some_and(|n| n.rec.has_dns()) =>
        {
            nameservers = vec![gw];
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
        }
        _ => {
            if !own_dns.is_empty() {
                nameservers = own_dns;
            } else if !daemon_dns.is_empty() {
                nameservers = daemon_dns;
            } else {
                // The host's loopback resolvers are unreachable from a namespace of its own.
                nameservers.retain(|a| !(a.starts_with("127.") || a == "::1"));
            }
        }
    }
    if let Some(s) = h.dns_search.as_ref().filter(|d| !d.is_empty()) {
        search = s.clone();
    }
    if let Some(o) = h.dns_options.as_ref().filter(|d| !d.is_empty()) {
        options = o.clone();
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
    std::fs::write(p.resolv_conf(), out)?;
    Ok(())
}

/// Docker's link environment: `ALIAS_NAME`, `ALIAS_PORT_80_TCP…` and the target's own
/// variables as `ALIAS_ENV_…`.
pub fn link_env(d: &Service, r: &Record) -> Vec<String> {
    let mut out = Vec::new();
    let Some(ep) = r.net.endpoints.get(primary_name(r)) else {
        return out;
    };
    for l in &ep.links {
        let (target, alias) = l.split_once(':').unwrap_or((l, l));
        let Ok(t) = d.find(target) else { continue };
        let tr = t.snapshot();
        let Some(ip) = tr.net.endpoints.get("bridge").map(|e| e.ip.clone()) else {
            continue;
        };
        let prefix: String = alias
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut ports: Vec<(u16, Proto)> = tr
            .config
            .exposed_ports
            .iter()
            .flatten()
            .filter_map(|(k, _)| parse_port_key(k).ok())
            .collect();
        ports.sort();
        if let Some((p, proto)) = ports.first() {
            out.push(format!("{prefix}_PORT={}://{ip}:{p}", proto.as_str()));
        }
        for (p, proto) in &ports {
            let base = format!("{prefix}_PORT_{p}_{}", proto.as_str().to_ascii_uppercase());
            out.push(format!("{base}={}://{ip}:{p}", proto.as_str()));
            out.push(format!("{base}_ADDR={ip}"));
            out.push(format!("{base}_PORT={p}"));
            out.push(format!("{base}_PROTO={}", proto.as_str()));
        }
        out.push(format!("{prefix}_NAME={}/{alias}", r.name));
        for kv in tr.config.env.iter().flatten() {
            let key = kv.split('=').next().unwrap_or(kv);
            if matches!(key, "HOME" | "PATH" | "HOSTNAME") {
                continue;
            }
            out.push(format!("{prefix}_ENV_{kv}"));
        }
    }
    out
}
