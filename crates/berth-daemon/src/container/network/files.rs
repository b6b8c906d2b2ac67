//! A container's /etc/hostname, /etc/hosts and /etc/resolv.conf (made by the network service
//! from what this module gathers: mode, link targets, DNS settings), the `--link` variables,
//! and what `container:` mode takes from the other container. Reads containers' records;
//! touches no address or link.

use super::endpoint::{endpoints, mode, primary_name, Mode};
use super::ports::parse_port_key;
use crate::container::handle::Container;
use crate::container::service::Service;
use crate::container::Record;
use crate::error::{Error, Result};
use berth_network::files;
use berth_network::nft::Proto;
use berth_network::service::files::FilesRequest;

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

/// Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container, as the network
/// service makes them.
pub fn write_files(d: &Service, c: &Container, hostname: &str) -> Result<()> {
    let p = &c.paths;
    let r = c.snapshot();
    let h = &r.host_config;
    let m = mode(&r);
    if matches!(m, Mode::Container(_)) {
        // It uses the other container's files.
        return Ok(());
    }
    let primary = matches!(m, Mode::Bridge).then(|| primary_name(&r).to_string());
    let mut links = Vec::new();
    let live = primary
        .as_ref()
        .and_then(|name| d.net.live_endpoint(&r.id, name))
        .filter(|e| !e.ip.is_empty() || !e.ip6.is_empty());
    // Links on user-defined networks are answered by the embedded DNS instead.
    if live.is_some() && primary.as_deref() == Some("bridge") {
        let configured = r.net.endpoints.get("bridge");
        for l in configured.iter().flat_map(|e| e.links.iter()) {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let t = d.find(target)?;
            let tr = t.snapshot();
            let tip = d
                .net
                .live_endpoint(&tr.id, "bridge")
                .map(|e| e.ip)
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
    }
    let out = d.net.sandbox_files(&FilesRequest {
        id: r.id.clone(),
        host_ns: matches!(m, Mode::Host),
        primary,
        hostname: hostname.to_string(),
        extra_hosts: h.extra_hosts.clone().unwrap_or_default(),
        links,
        dns: files::DnsSettings {
            servers: h.dns.clone().unwrap_or_default(),
            search: h.dns_search.clone().unwrap_or_default(),
            options: h.dns_options.clone().unwrap_or_default(),
        },
    })?;
    std::fs::write(p.hostname(), out.hostname)?;
    std::fs::write(p.hosts(), out.hosts)?;
    std::fs::write(p.resolv_conf(), out.resolv_conf)?;
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
