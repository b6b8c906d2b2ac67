//! The replicated records as the Engine API shows them (nodes with their manager status,
//! services with endpoint and task counts, tasks, secrets without their data, networks) and the
//! list filters dockerd applies.

use crate::orchestrator::{mode, Mode};
use crate::store::{ClusterRec, NodeRec, ServiceRec, State, TaskRec};
use api::{NodeState, TaskState};
use berth_api::swarm as api;
use std::collections::BTreeMap;

/// A list call's `filters`: name -> accepted values.
pub type Filters = BTreeMap<String, Vec<String>>;

fn version(i: u64) -> api::ObjectVersion {
    api::ObjectVersion { index: i }
}

/// A swarm network as `GET /networks` and `GET /networks/{id}` show it (dockerd's shape for a
/// cluster network: scope swarm, the allocated IPAM configuration, no containers).
pub fn network(n: &api::Network) -> berth_api::network::Network {
    use berth_api::network as net;
    let ipam = n.ipam_options.clone().unwrap_or_default();
    net::Network {
        name: n.spec.name.clone(),
        id: n.id.clone(),
        created: n.created_at.clone(),
        scope: "swarm".to_string(),
        driver: n.driver_state.name.clone(),
        enable_ipv4: true,
        enable_ipv6: n.spec.ipv6_enabled,
        ipam: net::Ipam {
            driver: ipam.driver.name.clone(),
            config: Some(
                ipam.configs
                    .iter()
                    .map(|c| net::IpamConfig {
                        subnet: c.subnet.clone(),
                        ip_range: c.range.clone(),
                        gateway: c.gateway.clone(),
                        auxiliary_addresses: None,
                    })
                    .collect(),
            ),
            options: (!ipam.driver.options.is_empty()).then(|| ipam.driver.options.clone()),
        },
        internal: n.spec.internal,
        attachable: n.spec.attachable,
        ingress: n.spec.ingress,
        config_from: BTreeMap::from([("Network".to_string(), String::new())]),
        config_only: false,
        containers: BTreeMap::new(),
        // The options given at create (`encrypted`, an MTU) with the driver's (the VNI).
        options: n
            .spec
            .driver_configuration
            .iter()
            .flat_map(|d| d.options.clone())
            .chain(n.driver_state.options.clone())
            .collect(),
        labels: n.spec.labels.clone(),
    }
}

/// An address on a swarm network in CIDR form (`10.0.1.5/24`), as the API shows it.
pub fn with_prefix(n: &api::Network, ip: &str) -> String {
    let prefix = n
        .ipam_options
        .as_ref()
        .and_then(|i| i.configs.first())
        .and_then(|c| c.subnet.split_once('/'))
        .map(|(_, p)| p)
        .unwrap_or("32");
    format!("{ip}/{prefix}")
}

/// What the API shows of a task.
pub fn task(s: &State, t: &TaskRec) -> api::Task {
    api::Task {
        id: t.id.clone(),
        version: version(t.version),
        created_at: t.created_at.clone(),
        updated_at: t.updated_at.clone(),
        spec: t.spec.clone(),
        service_id: t.service_id.clone(),
        slot: t.slot as i64,
        node_id: t.node_id.clone(),
        status: t.status.clone(),
        desired_state: t.desired_state,
        job_iteration: t.job_iteration.map(version),
        networks_attachments: s
            .task_network_ids(&t.spec, s.services.get(&t.service_id))
            .iter()
            .filter_map(|id| s.networks.get(id))
            .map(|n| api::NetworkAttachment {
                network: n.clone(),
                addresses: t
                    .addresses
                    .get(&n.id)
                    .map(|ip| vec![with_prefix(n, ip)])
                    .unwrap_or_default(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Running and desired task counts (`ServiceStatus`, API ≥ 1.41).
fn service_status(s: &State, rec: &ServiceRec) -> api::ServiceStatus {
    let tasks: Vec<&TaskRec> = s
        .tasks
        .values()
        .filter(|t| t.service_id == rec.id)
        .collect();
    let running = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count() as u64;
    let completed = tasks
        .iter()
        .filter(|t| {
            t.status.state == TaskState::Complete && t.job_iteration == Some(rec.job_iteration)
        })
        .count() as u64;
    let ready_nodes = || {
        s.nodes
            .values()
            .filter(|n| n.state == NodeState::Ready && n.spec.availability != "drain")
            .filter(|n| {
                crate::orchestrator::constraints_met(
                    n,
                    &rec.spec
                        .task_template
                        .placement
                        .clone()
                        .unwrap_or_default()
                        .constraints,
                )
            })
            .count() as u64
    };
    let desired = match mode(&rec.spec) {
        Mode::Replicated(n) => n,
        Mode::Global => ready_nodes(),
        Mode::ReplicatedJob {
            max_concurrent,
            total,
        } => max_concurrent.min(total.saturating_sub(completed)),
        Mode::GlobalJob => tasks
            .iter()
            .filter(|t| t.job_iteration == Some(rec.job_iteration) && !t.status.state.is_terminal())
            .count() as u64,
    };
    api::ServiceStatus {
        running_tasks: running,
        desired_tasks: desired,
        completed_tasks: completed,
    }
}

/// What the API shows of a service.
pub fn service(s: &State, rec: &ServiceRec, with_status: bool) -> api::Service {
    let endpoint_spec = rec.spec.endpoint_spec.clone();
    api::Service {
        id: rec.id.clone(),
        version: version(rec.version),
        created_at: rec.created_at.clone(),
        updated_at: rec.updated_at.clone(),
        spec: rec.spec.clone(),
        previous_spec: rec.previous_spec.clone(),
        endpoint: api::Endpoint {
            spec: endpoint_spec.unwrap_or_default(),
            ports: rec.ports.clone(),
            virtual_ips: rec
                .vips
                .iter()
                .filter_map(|(id, ip)| {
                    s.networks.get(id).map(|n| api::EndpointVirtualIp {
                        network_id: id.clone(),
                        addr: with_prefix(n, ip),
                    })
                })
                .collect(),
        },
        update_status: rec.update_status.clone(),
        service_status: with_status.then(|| service_status(s, rec)),
        job_status: crate::orchestrator::is_job(&rec.spec).then(|| api::JobStatus {
            job_iteration: version(rec.job_iteration),
            last_execution: rec.updated_at.clone(),
        }),
    }
}

/// Raft facts about the managers, as the member answering sees them.
pub struct RaftView {
    pub leader: u64,
    /// On the leader: members heard from recently; elsewhere empty (then every member with a
    /// ready node counts as reachable).
    pub active: Vec<u64>,
}

/// What the API shows of a node.
pub fn node(rec: &NodeRec, raft: &RaftView) -> api::Node {
    let manager_status = (rec.raft_id != 0).then(|| {
        let reachable = if raft.active.is_empty() {
            rec.state == NodeState::Ready || rec.raft_id == raft.leader
        } else {
            raft.active.contains(&rec.raft_id)
        };
        api::ManagerStatus {
            leader: rec.raft_id == raft.leader,
            reachability: if reachable {
                api::Reachability::Reachable
            } else {
                api::Reachability::Unreachable
            },
            addr: rec.manager_addr.clone(),
        }
    });
    api::Node {
        id: rec.id.clone(),
        version: version(rec.version),
        created_at: rec.created_at.clone(),
        updated_at: rec.updated_at.clone(),
        spec: rec.spec.clone(),
        description: rec.description.clone(),
        status: api::NodeStatus {
            state: rec.state,
            message: rec.message.clone(),
            addr: rec.addr.clone(),
        },
        manager_status,
    }
}

/// `GET /swarm`: the cluster with its join tokens.
pub fn swarm(c: &ClusterRec, worker_token: String, manager_token: String) -> api::Swarm {
    api::Swarm {
        cluster: api::ClusterInfo {
            id: c.id.clone(),
            version: version(c.version),
            created_at: c.created_at.clone(),
            updated_at: c.updated_at.clone(),
            spec: c.spec.clone(),
            tls_info: cluster_tls(c),
            root_rotation_in_progress: c.root_rotation.is_some(),
            default_addr_pool: c.default_addr_pool.clone(),
            subnet_size: c.subnet_size,
            data_path_port: c.data_path_port,
        },
        join_tokens: api::JoinTokens {
            worker: worker_token,
            manager: manager_token,
        },
    }
}

/// The cluster's `TLSInfo`: the trusted root, and the issuer node certificates must come
/// from (the next root while a rotation is under way).
pub fn cluster_tls(c: &ClusterRec) -> api::TlsInfo {
    let issuer = c
        .root_rotation
        .as_ref()
        .map_or(&c.root_ca_cert, |r| &r.ca_cert);
    let info = crate::ca::RootCa::from_pem(issuer, None)
        .and_then(|r| r.issuer_info())
        .unwrap_or_default();
    api::TlsInfo {
        trust_root: c.root_ca_cert.clone(),
        cert_issuer_subject: info.subject,
        cert_issuer_public_key: info.public_key,
    }
}

fn any_match(f: &Filters, key: &str, test: impl Fn(&str) -> bool) -> bool {
    match f.get(key) {
        None => true,
        Some(vals) if vals.is_empty() => true,
        Some(vals) => vals.iter().any(|v| test(v)),
    }
}

/// `label=k` or `label=k=v` against a label map.
fn label_match(f: &Filters, key: &str, labels: &BTreeMap<String, String>) -> bool {
    match f.get(key) {
        None => true,
        Some(vals) => vals.iter().all(|v| match v.split_once('=') {
            Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
            None => labels.contains_key(v.as_str()),
        }),
    }
}

/// The filter names a list accepts; others are refused as dockerd does.
pub fn check_filters(f: &Filters, allowed: &[&str]) -> crate::error::Result<()> {
    for k in f.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(crate::error::Error::invalid(format!(
                "invalid filter '{k}'"
            )));
        }
    }
    Ok(())
}

pub fn node_matches(rec: &NodeRec, f: &Filters) -> bool {
    any_match(f, "id", |v| rec.id.starts_with(v))
        && any_match(f, "name", |v| {
            rec.spec.name.starts_with(v) || rec.description.hostname.starts_with(v)
        })
        && any_match(f, "role", |v| rec.spec.role == v)
        && any_match(f, "membership", |v| v == "accepted")
        && label_match(f, "label", &rec.description.engine.labels)
        && label_match(f, "node.label", &rec.spec.labels)
}

pub fn service_matches(rec: &ServiceRec, f: &Filters) -> bool {
    let m = match mode(&rec.spec) {
        Mode::Replicated(_) => "replicated",
        Mode::Global => "global",
        Mode::ReplicatedJob { .. } => "replicated-job",
        Mode::GlobalJob => "global-job",
    };
    any_match(f, "id", |v| rec.id.starts_with(v))
        && any_match(f, "name", |v| rec.spec.name.starts_with(v))
        && any_match(f, "mode", |v| v == m)
        && label_match(f, "label", &rec.spec.labels)
}

pub fn task_matches(s: &State, t: &TaskRec, f: &Filters) -> bool {
    let svc = s.services.get(&t.service_id);
    let svc_name = svc.map(|x| x.spec.name.as_str()).unwrap_or("");
    let name = if t.slot != 0 {
        format!("{svc_name}.{}", t.slot)
    } else {
        format!("{svc_name}.{}", t.node_id)
    };
    let node = s.nodes.get(&t.node_id);
    any_match(f, "id", |v| t.id.starts_with(v))
        && any_match(f, "name", |v| name.starts_with(v))
        && any_match(f, "service", |v| {
            t.service_id.starts_with(v) || svc_name == v
        })
        && any_match(f, "node", |v| {
            t.node_id.starts_with(v)
                || node.is_some_and(|n| n.spec.name == v || n.description.hostname == v)
        })
        && any_match(f, "desired-state", |v| match v {
            "running" => t.desired_state == TaskState::Running,
            "shutdown" => {
                t.desired_state == TaskState::Shutdown || t.desired_state == TaskState::Remove
            }
            "accepted" => t.desired_state == TaskState::Accepted,
            _ => false,
        })
        && any_match(f, "_up-to-date", |v| {
            v != "true" && v != "1" || svc.is_some_and(|x| x.spec_version == t.spec_version)
        })
        // As swarmkit: a task's labels are its service's.
        && label_match(
            f,
            "label",
            &svc.map(|x| x.spec.labels.clone()).unwrap_or_default(),
        )
}

pub fn secret_matches(sec: &api::Secret, f: &Filters) -> bool {
    any_match(f, "id", |v| sec.id.starts_with(v))
        && any_match(f, "name", |v| sec.spec.name.starts_with(v))
        && any_match(f, "names", |v| sec.spec.name == v)
        && label_match(f, "label", &sec.spec.labels)
}

pub fn config_matches(c: &api::Config, f: &Filters) -> bool {
    any_match(f, "id", |v| c.id.starts_with(v))
        && any_match(f, "name", |v| c.spec.name.starts_with(v))
        && any_match(f, "names", |v| c.spec.name == v)
        && label_match(f, "label", &c.spec.labels)
}

/// A secret as lists and inspects show it: without its data.
pub fn secret(sec: &api::Secret) -> api::Secret {
    let mut s = sec.clone();
    s.spec.data = Vec::new();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_show_in_cidr_form_with_the_ingress_attachment_last() {
        let mut s = State::default();
        let net = |id: &str, subnet: &str, ingress: bool| api::Network {
            id: id.into(),
            spec: api::NetworkSpec {
                ingress,
                ..Default::default()
            },
            ipam_options: Some(api::IpamOptions {
                configs: vec![api::IpamConfig {
                    subnet: subnet.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        s.networks
            .insert("ov".into(), net("ov", "10.0.1.0/29", false));
        s.networks
            .insert("ing".into(), net("ing", "10.0.0.0/24", true));
        let mut svc = ServiceRec {
            id: "s1".into(),
            ports: vec![api::PortConfig {
                publish_mode: "ingress".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        svc.spec.task_template.networks = vec![api::NetworkAttachmentConfig {
            target: "ov".into(),
            ..Default::default()
        }];
        svc.vips = BTreeMap::from([("ov".into(), "10.0.1.2".into())]);
        let t = TaskRec {
            id: "t".into(),
            service_id: "s1".into(),
            spec: svc.spec.task_template.clone(),
            addresses: BTreeMap::from([
                ("ov".into(), "10.0.1.4".into()),
                ("ing".into(), "10.0.0.6".into()),
            ]),
            ..Default::default()
        };
        s.services.insert("s1".into(), svc);
        let shown = task(&s, &t);
        assert_eq!(shown.networks_attachments.len(), 2);
        assert_eq!(shown.networks_attachments[0].addresses, ["10.0.1.4/29"]);
        assert_eq!(shown.networks_attachments[1].addresses, ["10.0.0.6/24"]);
        assert!(shown.networks_attachments[1].network.spec.ingress);
        let shown = service(&s, &s.services["s1"], false);
        assert_eq!(
            shown.endpoint.virtual_ips,
            [api::EndpointVirtualIp {
                network_id: "ov".into(),
                addr: "10.0.1.2/29".into()
            }]
        );
    }
}
