//! How a swarm network is realised on this node — the one seam between the cluster's network
//! records and the local network service. For now each swarm network a task needs becomes a
//! local bridge network of the same name, subnet and gateway, marked with the swarm network's
//! id, made on demand and removed once no container is connected to it; cross-node VXLAN
//! replaces what is behind [`realise`] and [`release_unused`] without changing the API.

use crate::state::Daemon;
use berth_api::network::{CreateRequest, Ipam, IpamConfig};
use berth_api::swarm as api;
use berth_network::record::NetworkRecord;
use std::sync::Arc;

/// The label that marks a local network as the realisation of a swarm network (its id).
pub const SWARM_NETWORK_LABEL: &str = "com.berth.swarm.network.id";
/// The swarm network's driver, kept beside the mark for how a worker shows the network.
const SWARM_DRIVER_LABEL: &str = "com.berth.swarm.network.driver";

/// How the API shows a realisation on a node that is not a manager (which has no other view
/// of the cluster's networks): as the swarm network, with its id, driver, scope and labels.
pub fn swarm_view(n: &mut berth_api::network::Network) {
    let Some(id) = n.labels.remove(SWARM_NETWORK_LABEL) else {
        return;
    };
    n.id = id;
    n.driver = n
        .labels
        .remove(SWARM_DRIVER_LABEL)
        .unwrap_or_else(|| "overlay".to_string());
    n.scope = "swarm".to_string();
}

/// The swarm network a local network realises, if it is one.
pub fn realises(rec: &NetworkRecord) -> Option<&str> {
    rec.labels.get(SWARM_NETWORK_LABEL).map(String::as_str)
}

/// Refuses a container that is not a swarm task on the swarm network `key` names (its local
/// realisation, or on a manager the cluster's): Docker's answer for a network that is not
/// attachable; berth does not attach plain containers to attachable ones yet.
pub fn check_manual_attach(d: &Daemon, key: &str) -> crate::error::Result<()> {
    // Whether the swarm network is attachable, if `key` names one.
    let swarm = match d.net.find(key) {
        Ok(local) => realises(&local.rec).map(|_| local.rec.attachable),
        Err(_) => d
            .swarm
            .get()
            .and_then(|s| s.summary().manager)
            .and_then(|m| {
                m.networks()
                    .into_iter()
                    .find(|n| n.id == key || n.name == key)
                    .map(|n| n.attachable)
            }),
    };
    match swarm {
        None => Ok(()),
        Some(false) => Err(crate::error::Error(berth_api::ApiError::new(
            403,
            format!("Could not attach to network {key}: rpc error: code = PermissionDenied desc = network {key} not manually attachable"),
        ))),
        Some(true) => Err(crate::error::Error(berth_api::ApiError::new(
            403,
            format!("network {key}: attaching containers other than swarm tasks to swarm networks is not supported by berth yet"),
        ))),
    }
}

/// Whether any container (in any state) has an endpoint on the local network `id`.
fn in_use(d: &Daemon, id: &str) -> bool {
    d.all()
        .iter()
        .any(|c| c.rec().net.endpoints.values().any(|e| e.network_id == id))
}

/// The create request of the local bridge that realises `n`.
fn bridge_request(n: &api::Network) -> CreateRequest {
    let configs = n
        .ipam_options
        .iter()
        .flat_map(|i| i.configs.iter())
        .map(|c| IpamConfig {
            subnet: c.subnet.clone(),
            ip_range: c.range.clone(),
            gateway: c.gateway.clone(),
            auxiliary_addresses: None,
        })
        .collect();
    let options = n
        .spec
        .driver_configuration
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    let mut labels = n.spec.labels.clone();
    labels.insert(SWARM_NETWORK_LABEL.to_string(), n.id.clone());
    labels.insert(SWARM_DRIVER_LABEL.to_string(), n.driver_state.name.clone());
    CreateRequest {
        name: n.spec.name.clone(),
        driver: "bridge".to_string(),
        internal: n.spec.internal,
        attachable: n.spec.attachable,
        ipam: Some(Ipam {
            driver: String::new(),
            config: Some(configs),
            options: None,
        }),
        options: (!options.is_empty()).then_some(options),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Makes sure the swarm network `n` exists on this node; returns the local network's name
/// (the swarm network's). Idempotent. The caller serialises this with [`release_unused`].
pub async fn realise(d: &Arc<Daemon>, n: &api::Network) -> Result<String, String> {
    let name = n.spec.name.clone();
    // Unused bridges of other swarm networks go first: one left by a removed network would
    // hold the subnet the cluster may have handed out again.
    release_unused_except(d, Some(&n.id)).await;
    if let Some(local) = d.net.all().into_iter().find(|l| l.rec.name == name) {
        match realises(&local.rec) {
            Some(id) if id == n.id => return Ok(name),
            // A swarm network of the same name that is gone: its bridge goes once unused.
            Some(_) if !in_use(d, &local.rec.id) => {
                d.net
                    .remove(&local, false)
                    .await
                    .map_err(|e| format!("network {name}: removing a stale one: {e}"))?;
                d.events.network_event(
                    &local.rec.id,
                    &local.rec.name,
                    &local.rec.driver,
                    "destroy",
                    None,
                );
            }
            Some(_) => {
                return Err(format!(
                    "network {name}: this node still has containers on an earlier swarm network of that name"
                ))
            }
            None => {
                return Err(format!(
                    "network {name}: the name is taken on this node by a local network"
                ))
            }
        }
    }
    let (id, _) = d
        .net
        .create(bridge_request(n))
        .await
        .map_err(|e| format!("network {name}: {e}"))?;
    if let Ok(local) = d.net.find(&id) {
        d.events
            .network_event(&id, &local.rec.name, &local.rec.driver, "create", None);
    }
    Ok(name)
}

/// Removes the local realisations of swarm networks no container is connected to.
pub async fn release_unused(d: &Arc<Daemon>) {
    release_unused_except(d, None).await
}

/// [`release_unused`], keeping the realisation of the swarm network `keep`.
async fn release_unused_except(d: &Arc<Daemon>, keep: Option<&str>) {
    for local in d.net.all() {
        let Some(id) = realises(&local.rec) else {
            continue;
        };
        if keep == Some(id) || in_use(d, &local.rec.id) {
            continue;
        }
        match d.net.remove(&local, false).await {
            Ok(()) => d.events.network_event(
                &local.rec.id,
                &local.rec.name,
                &local.rec.driver,
                "destroy",
                None,
            ),
            Err(e) => tracing::warn!("swarm network {}: removing its bridge: {e}", local.rec.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_bridge_carries_the_swarm_networks_addresses_and_mark() {
        let n = api::Network {
            id: "abc".into(),
            driver_state: api::Driver {
                name: "overlay".into(),
                ..Default::default()
            },
            spec: api::NetworkSpec {
                name: "st_default".into(),
                internal: true,
                labels: BTreeMap::from([("com.docker.stack.namespace".into(), "st".into())]),
                ..Default::default()
            },
            ipam_options: Some(api::IpamOptions {
                configs: vec![api::IpamConfig {
                    subnet: "10.0.1.0/24".into(),
                    gateway: "10.0.1.1".into(),
                    range: String::new(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = bridge_request(&n);
        assert_eq!(r.name, "st_default");
        assert_eq!(r.driver, "bridge");
        assert!(r.internal);
        let cfg = &r.ipam.unwrap().config.unwrap()[0];
        assert_eq!(
            (cfg.subnet.as_str(), cfg.gateway.as_str()),
            ("10.0.1.0/24", "10.0.1.1")
        );
        let labels = r.labels.unwrap();
        assert_eq!(labels[SWARM_NETWORK_LABEL], "abc");
        assert_eq!(labels["com.docker.stack.namespace"], "st");
        // A worker shows it as the swarm network.
        let mut shown = berth_api::network::Network {
            id: "local".into(),
            driver: "bridge".into(),
            scope: "local".into(),
            labels,
            ..Default::default()
        };
        swarm_view(&mut shown);
        assert_eq!(
            (
                shown.id.as_str(),
                shown.driver.as_str(),
                shown.scope.as_str()
            ),
            ("abc", "overlay", "swarm")
        );
        assert_eq!(
            shown.labels,
            BTreeMap::from([("com.docker.stack.namespace".to_string(), "st".to_string())])
        );
        let mut rec = NetworkRecord::new("l".into(), "st_default".into(), "bridge", String::new());
        assert_eq!(realises(&rec), None);
        rec.labels.insert(SWARM_NETWORK_LABEL.into(), "abc".into());
        assert_eq!(realises(&rec), Some("abc"));
    }
}
