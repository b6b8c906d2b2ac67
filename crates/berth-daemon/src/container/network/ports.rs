//! A container's published ports, translated: its port requests from `-p` and `-P` for the
//! network service, and how what the service published shows in the container list. Binds
//! nothing itself: host ports, proxies and NAT rules are the service's.

use crate::container::service::Service;
use crate::container::Record;
use crate::error::Result;
pub use berth_network::ports::{parse_port_key, shown, PortRequest};

/// What `-p` and `-P` ask for.
pub(super) fn wanted_ports(r: &Record) -> Result<Vec<PortRequest>> {
    let h = &r.host_config;
    Ok(berth_network::ports::port_requests(
        h.port_bindings.as_ref(),
        h.publish_all_ports,
        r.config.exposed_ports.iter().flatten().map(|(k, _)| k),
    )?)
}

/// The `Ports` of a container list row.
pub fn summary_ports(d: &Service, r: &Record) -> Vec<berth_api::container::PortSummary> {
    let mut out = Vec::new();
    let running = r.is_running();
    let ports = if running {
        d.net.ports_of(&r.id)
    } else {
        Vec::new()
    };
    for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
        let Ok((port, proto)) = parse_port_key(key) else {
            continue;
        };
        let published = running
            && ports
                .iter()
                .any(|p| p.container_port == port && p.proto == proto);
        if !published {
            out.push(berth_api::container::PortSummary {
                ip: None,
                private_port: port,
                public_port: None,
                kind: proto.as_str().into(),
            });
        }
    }
    if running {
        for p in &ports {
            out.push(berth_api::container::PortSummary {
                ip: Some(shown(p.host_ip).to_string()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                kind: p.proto.as_str().into(),
            });
        }
    }
    out
}
