//! A container's /etc/hostname, /etc/hosts and /etc/resolv.conf, the `--link` variables, and
//! what `container:` mode takes from the other container. Reads containers' records and the
//! host's files, renders through `berth_network::files`; touches no address or link.

use super::endpoint::{endpoints, mode, primary_name, Mode};
use super::ports::parse_port_key;
use crate::container::Record;
use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
use berth_network::files;
use berth_network::nft::Proto;

/// What the container's spec needs from its networking: the namespace and files of the
/// container whose network it shares, and link variables.
pub fn spec_for(d: &Daemon, r: &Record) -> Result<crate::container::spec::NetSpec> {
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

/// One `--add-host` entry; `host-gateway` stands for the daemon's `host-gateway-ip`, else the
/// default bridge's gateway (how containers reach the host, `host.docker.internal`).
pub fn extra_host(d: &Daemon, entry: &str) -> Result<(String, std::net::IpAddr)> {
    let cfg = &d.net.host.cfg;
    let gw = cfg
        .host_gateway_ip
        .unwrap_or(std::net::IpAddr::V4(cfg.bip.0));
    Ok(files::extra_host(entry, gw)?)
}

/// Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container.
pub fn write_files(d: &Daemon, c: &Container, hostname: &str) -> Result<()> {
    let p = &c.paths;
    let r = c.snapshot();
    let h = &r.host_config;
    let m = mode(&r);
    if matches!(m, Mode::Container(_)) {
        // It uses the other container's files.
        return Ok(());
    }
    std::fs::write(p.hostname(), format!("{hostname}\n"))?;
    let host_hosts =
        matches!(m, Mode::Host).then(|| std::fs::read_to_string("/etc/hosts").unwrap_or_default());
    let mut extra = Vec::new();
    for entry in h.extra_hosts.iter().flatten() {
        extra.push(extra_host(d, entry)?);
    }
    let mut links = Vec::new();
    let mut own = Vec::new();
    let eps = endpoints(d, &r);
    let primary = eps.get(primary_name(&r));
    if let Some(ep) = primary.filter(|e| !e.ip.is_empty() || !e.ip6.is_empty()) {
        // Links on user-defined networks are answered by the embedded DNS instead.
        let on_default = primary_name(&r) == "bridge";
        for l in ep.links.iter().filter(|_| on_default) {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let t = d.find(target)?;
            let tr = t.snapshot();
            let tip = endpoints(d, &tr)
                .get("bridge")
                .map(|e| e.ip.clone())
                .filter(|ip| !ip.is_empty())
                .ok_or_else(|| {
                    Error::bad_request(format!(
                        "cannot link to a non running container: /{target} AS {}/{alias}",
                        r.name
                    ))
                })?;
            links.push(files::LinkHost {
                ip: tip,
                alias: alias.to_string(),
                hostname: tr.config.hostname.clone(),
                name: tr.bare_name().to_string(),
            });
        }
        own.extend(
            [ep.ip.clone(), ep.ip6.clone()]
                .into_iter()
                .filter(|a| !a.is_empty()),
        );
    }
    std::fs::write(
        p.hosts(),
        files::hosts(host_hosts.as_deref(), &extra, &links, &own, hostname),
    )?;

    let own_dns = files::DnsSettings {
        servers: h.dns.clone().unwrap_or_default(),
        search: h.dns_search.clone().unwrap_or_default(),
        options: h.dns_options.clone().unwrap_or_default(),
    };
    let daemon_dns: Vec<String> = d.net.host.cfg.dns.iter().map(|a| a.to_string()).collect();
    let primary_net = primary.and_then(|e| d.net.find(&e.network_id).ok());
    let embedded = primary_net
        .as_ref()
        .filter(|n| n.serves_dns())
        // An IPv6-only network's server is on its IPv6 gateway.
        .map(|n| {
            if n.rec.gateway.is_empty() {
                n.rec.gateway6.clone()
            } else {
                n.rec.gateway.clone()
            }
        });
    let via = match (&m, embedded) {
        (Mode::Host, _) => files::Resolver::Host,
        // User-defined networks (and a default bridge whose host resolvers are on
        // loopback) answer through the embedded DNS, which forwards what it does not know.
        (Mode::Bridge, Some(gw))
            if own_dns.servers.is_empty()
                || primary_net.as_ref().is_some_and(|n| n.rec.has_dns()) =>
        {
            files::Resolver::Embedded(gw)
        }
        _ => files::Resolver::Direct,
    };
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(
        p.resolv_conf(),
        files::resolv_conf(&host, &own_dns, &daemon_dns, &via),
    )?;
    Ok(())
}

/// Docker's link environment: `ALIAS_NAME`, `ALIAS_PORT_80_TCP…` and the target's own
/// variables as `ALIAS_ENV_…`.
pub fn link_env(d: &Daemon, r: &Record) -> Vec<String> {
    let mut out = Vec::new();
    let Some(ep) = r.net.endpoints.get(primary_name(r)) else {
        return out;
    };
    for l in &ep.links {
        let (target, alias) = l.split_once(':').unwrap_or((l, l));
        let Ok(t) = d.find(target) else { continue };
        let tr = t.snapshot();
        let Some(ip) = endpoints(d, &tr).get("bridge").map(|e| e.ip.clone()) else {
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
