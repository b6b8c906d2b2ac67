//! The files a sandbox mounts (/etc/hostname, /etc/hosts, /etc/resolv.conf), as results of the
//! service: made from the sandbox's request, its primary endpoint (addresses, and whether its
//! network's embedded DNS answers), the daemon's DNS settings and the host's files. Reads the
//! host's /etc/hosts and /etc/resolv.conf; writes nothing (the caller puts the files in place).

use super::NetworkService;
use crate::files::{self, DnsSettings, LinkHost, Resolver};
use crate::Result;
use std::net::IpAddr;

/// What a sandbox's files are made from.
#[derive(Debug, Clone, Default)]
pub struct FilesRequest {
    /// The sandbox (container) id.
    pub id: String,
    /// It shares the host's network namespace (the host's /etc/hosts and resolvers).
    pub host_ns: bool,
    /// The network of its first interface when it has endpoints of its own (bridge mode).
    pub primary: Option<String>,
    pub hostname: String,
    /// `--add-host` entries as given (`name:ip`, `host-gateway` allowed).
    pub extra_hosts: Vec<String>,
    /// Link targets to list in /etc/hosts (`--link` on the default bridge).
    pub links: Vec<LinkHost>,
    /// Its own DNS settings.
    pub dns: DnsSettings,
}

/// The contents of a sandbox's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxFiles {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: String,
}

impl NetworkService {
    /// What `host-gateway` in `--add-host` stands for: the daemon's `host-gateway-ip`, else
    /// the default bridge's gateway (how containers reach the host).
    pub fn host_gateway(&self) -> IpAddr {
        let cfg = &self.host.cfg;
        cfg.host_gateway_ip.unwrap_or(IpAddr::V4(cfg.bip.0))
    }

    /// A sandbox's /etc files (after [`Self::allocate`] for one with endpoints).
    pub fn sandbox_files(&self, req: &FilesRequest) -> Result<SandboxFiles> {
        let host_hosts = req
            .host_ns
            .then(|| std::fs::read_to_string("/etc/hosts").unwrap_or_default());
        let mut extra = Vec::new();
        for entry in &req.extra_hosts {
            extra.push(files::extra_host(entry, self.host_gateway())?);
        }
        let primary = req
            .primary
            .as_ref()
            .and_then(|p| self.live_endpoint(&req.id, p));
        let own: Vec<String> = primary
            .iter()
            .flat_map(|e| [e.ip.clone(), e.ip6.clone()])
            .filter(|a| !a.is_empty())
            .collect();
        let hosts = files::hosts(
            host_hosts.as_deref(),
            &extra,
            &req.links,
            &own,
            &req.hostname,
        );
        let primary_net = primary.as_ref().and_then(|e| self.find(&e.network_id).ok());
        // An IPv6-only network's server is on its IPv6 gateway.
        let embedded = primary_net.as_ref().filter(|n| n.serves_dns()).map(|n| {
            if n.rec.gateway.is_empty() {
                n.rec.gateway6.clone()
            } else {
                n.rec.gateway.clone()
            }
        });
        let via = match embedded {
            _ if req.host_ns => Resolver::Host,
            // User-defined networks (and a default bridge whose host resolvers are on
            // loopback) answer through the embedded DNS, which forwards what it does not know.
            Some(gw)
                if req.dns.servers.is_empty()
                    || primary_net.as_ref().is_some_and(|n| n.rec.has_dns()) =>
            {
                Resolver::Embedded(gw)
            }
            _ => Resolver::Direct,
        };
        let daemon_dns: Vec<String> = self.host.cfg.dns.iter().map(|a| a.to_string()).collect();
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Ok(SandboxFiles {
            hostname: format!("{}\n", req.hostname),
            hosts,
            resolv_conf: files::resolv_conf(&host, &req.dns, &daemon_dns, &via),
        })
    }
}
