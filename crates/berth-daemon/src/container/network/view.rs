//! How a container's networking shows in inspect (`NetworkSettings`): composed from what the
//! record asked for and what the network service has while it runs. Read only.

use super::endpoint::{dns_names, endpoints};
use crate::container::service::Service;
use crate::container::Record;
use berth_api::network::EndpointSettings;

/// The `NetworkSettings` of inspect.
pub fn settings(d: &Service, r: &Record) -> serde_json::Value {
    let running = r.is_running();
    let networks = networks(d, r);
    let eps = endpoints(d, r);
    let mut ports = serde_json::Map::new();
    for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
        ports.insert(key.clone(), serde_json::Value::Null);
    }
    if running {
        for p in &d.net.ports_of(&r.id) {
            let key = format!("{}/{}", p.container_port, p.proto.as_str());
            let entry = ports
                .entry(key)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = serde_json::Value::Array(Vec::new());
            }
            if let Some(a) = entry.as_array_mut() {
                a.push(serde_json::json!({
                    "HostIp": super::ports::shown(p.host_ip).to_string(),
                    "HostPort": p.host_port.to_string(),
                }));
            }
        }
    } else {
        for (key, list) in r.host_config.port_bindings.iter().flatten() {
            let _ = list;
            ports.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let def = eps.get("bridge");
    serde_json::json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": if running && r.state.pid > 0 { format!("/proc/{}/ns/net", r.state.pid) } else { String::new() },
        "Ports": ports,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": def.filter(|_| running).map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": def.map(|e| e.gateway.clone()).unwrap_or_default(),
        "GlobalIPv6Address": def.map(|e| e.ip6.clone()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": def.map(|e| e.prefix6).unwrap_or(0),
        "IPAddress": def.map(|e| e.ip.clone()).unwrap_or_default(),
        "IPPrefixLen": def.map(|e| e.prefix).unwrap_or(0),
        "IPv6Gateway": def.map(|e| e.gateway6.clone()).unwrap_or_default(),
        "MacAddress": def.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// Each network's `EndpointSettings` of the container, by network name (inspect's and the
/// list's `NetworkSettings.Networks`).
pub fn networks(d: &Service, r: &Record) -> serde_json::Map<String, serde_json::Value> {
    let running = r.is_running();
    let mut networks = serde_json::Map::new();
    for (name, ep) in &endpoints(d, r) {
        let user = d
            .net
            .find(&ep.network_id)
            .map(|n| !n.rec.predefined)
            .unwrap_or(false);
        let asked = !ep.requested_ip.is_empty()
            || !ep.requested_ip6.is_empty()
            || !ep.link_local_ips.is_empty();
        let s = EndpointSettings {
            ipam_config: asked.then(|| berth_api::network::EndpointIpam {
                ipv4_address: ep.requested_ip.clone(),
                ipv6_address: ep.requested_ip6.clone(),
                link_local_ips: (!ep.link_local_ips.is_empty()).then(|| ep.link_local_ips.clone()),
            }),
            links: (!ep.links.is_empty()).then(|| {
                ep.links
                    .iter()
                    .map(|l| {
                        let (t, a) = l.split_once(':').unwrap_or((l, l));
                        format!("/{t}:{}/{a}", r.name)
                    })
                    .collect()
            }),
            // While stopped, the address asked for (if any).
            mac_address: if ep.mac.is_empty() {
                ep.requested_mac.clone()
            } else {
                ep.mac.clone()
            },
            aliases: (!ep.aliases.is_empty()).then(|| ep.aliases.clone()),
            driver_opts: (!ep.driver_opts.is_empty()).then(|| ep.driver_opts.clone()),
            gw_priority: ep.gw_priority,
            ipv6_gateway: ep.gateway6.clone(),
            global_ipv6_address: ep.ip6.clone(),
            global_ipv6_prefix_len: i64::from(ep.prefix6),
            network_id: ep.network_id.clone(),
            endpoint_id: if running {
                ep.endpoint_id.clone()
            } else {
                String::new()
            },
            gateway: ep.gateway.clone(),
            ip_address: ep.ip.clone(),
            ip_prefix_len: i64::from(ep.prefix),
            dns_names: (user && running).then(|| dns_names(r, ep)),
        };
        networks.insert(
            name.clone(),
            serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
        );
    }
    networks
}
