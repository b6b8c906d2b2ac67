//! What one node needs of the swarm networks to carry its endpoints' traffic: for each network
//! it takes part in, the endpoints on other nodes, the names the network's DNS answers, the
//! services' virtual IPs with their running tasks, for the ingress network the mesh, and for
//! encrypted networks the cluster's encryption keys. A pure function of the replicated state, sent in the node's session answers.

use crate::proto::{IngressPortView, NetworkView};
use crate::store::{is_encrypted, publishes_ingress, ServiceRec, State, TaskRec};
use api::TaskState;
use berth_api::swarm as api;
use std::collections::BTreeSet;

/// Whether a task's container holds (or is about to hold) its addresses.
fn live(t: &TaskRec) -> bool {
    !t.status.state.is_terminal() && t.desired_state <= TaskState::Running
}

/// Whether a task serves traffic now: running and meant to run (one being stopped is out
/// of every answer and balancer at once).
fn serving(t: &TaskRec) -> bool {
    t.status.state == TaskState::Running && t.desired_state == TaskState::Running
}

/// The container name of a task (`<service>.<slot or node>.<task id>`).
fn task_name(svc: &ServiceRec, t: &TaskRec) -> String {
    let slot = if t.slot == 0 {
        t.node_id.clone()
    } else {
        t.slot.to_string()
    };
    format!("{}.{slot}.{}", svc.spec.name, t.id)
}

/// The node's address other nodes send its endpoints' traffic to.
fn node_addr(s: &State, node: &str) -> Option<String> {
    s.nodes
        .get(node)
        .map(|n| n.addr.clone())
        .filter(|a| !a.is_empty())
}

/// The swarm networks `node` takes part in, each as it needs it.
pub fn views(s: &State, node: &str) -> Vec<NetworkView> {
    let mut ids: BTreeSet<String> = s
        .tasks
        .values()
        .filter(|t| t.node_id == node && live(t))
        .flat_map(|t| t.addresses.keys().cloned())
        .collect();
    ids.extend(
        s.attachments
            .values()
            .filter(|a| a.node_id == node)
            .map(|a| a.network_id.clone()),
    );
    let ingress = s.ingress();
    if let Some(ing) = ingress {
        if s.services.values().any(publishes_ingress) {
            ids.insert(ing.id.clone());
        }
    }
    ids.iter()
        .filter_map(|id| s.networks.get(id))
        .map(|n| view(s, n, node))
        .collect()
}

fn view(s: &State, n: &api::Network, node: &str) -> NetworkView {
    let on_net: Vec<(&TaskRec, &String)> = s
        .tasks
        .values()
        .filter(|t| live(t))
        .filter_map(|t| t.addresses.get(&n.id).map(|ip| (t, ip)))
        .collect();
    // Plain containers of nodes found dead (or gone) are out of peers and names until their
    // node is back.
    let attached: Vec<_> = s
        .attachments
        .values()
        .filter(|a| a.network_id == n.id)
        .filter(|a| {
            s.nodes
                .get(&a.node_id)
                .is_some_and(|on| on.state != api::NodeState::Down)
        })
        .collect();
    let mut peers: Vec<(String, String)> = on_net
        .iter()
        .map(|(t, ip)| (t.node_id.as_str(), *ip))
        .chain(attached.iter().map(|a| (a.node_id.as_str(), &a.addr)))
        .filter(|(on, _)| *on != node && !on.is_empty())
        .filter_map(|(on, ip)| Some((ip.clone(), node_addr(s, on)?)))
        .collect();
    let mut v = NetworkView {
        network: n.clone(),
        ..Default::default()
    };
    if n.spec.ingress {
        for other in s.nodes.values() {
            if other.ingress_addr.is_empty() {
                continue;
            }
            v.mesh_nodes.push(other.ingress_addr.clone());
            if other.id == node {
                v.node_addr = other.ingress_addr.clone();
            } else if let Some(a) = node_addr(s, &other.id) {
                peers.push((other.ingress_addr.clone(), a));
            }
        }
        for svc in s.services.values().filter(|x| publishes_ingress(x)) {
            let backends: Vec<String> = on_net
                .iter()
                .filter(|(t, _)| t.service_id == svc.id && serving(t))
                .map(|(_, ip)| (*ip).clone())
                .collect();
            for p in svc.ports.iter().filter(|p| p.publish_mode == "ingress") {
                v.ingress_ports.push(IngressPortView {
                    protocol: if p.protocol.is_empty() {
                        "tcp".to_string()
                    } else {
                        p.protocol.clone()
                    },
                    published: p.published_port,
                    target: p.target_port,
                    backends: backends.clone(),
                });
            }
        }
    } else {
        for svc in s.services.values() {
            let Some(att) = svc
                .spec
                .task_template
                .networks
                .iter()
                .find(|a| a.target == n.id)
            else {
                continue;
            };
            let running: Vec<(&TaskRec, &String)> = on_net
                .iter()
                .filter(|(t, _)| t.service_id == svc.id && serving(t))
                .copied()
                .collect();
            let mut service_names = vec![svc.spec.name.clone()];
            service_names.extend(att.aliases.iter().cloned());
            let vip = svc.vips.get(&n.id);
            if let Some(vip) = vip {
                v.names.push((vip.clone(), service_names.clone()));
                v.vips.push((
                    vip.clone(),
                    running.iter().map(|(_, ip)| (*ip).clone()).collect(),
                ));
            }
            for (t, ip) in running {
                let mut names: Vec<String> =
                    service_names.iter().map(|x| format!("tasks.{x}")).collect();
                names.push(task_name(svc, t));
                if vip.is_none() {
                    names.extend(service_names.iter().cloned());
                }
                v.names.push((ip.clone(), names));
            }
        }
        for a in attached.iter().filter(|a| !a.container.is_empty()) {
            v.names.push((a.addr.clone(), vec![a.container.clone()]));
        }
    }
    peers.sort();
    peers.dedup();
    v.peers = peers;
    if is_encrypted(n) {
        v.keys = s.network_keys.clone();
        v.primary_key = s.network_keys.last().map_or(0, |k| k.tag);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NodeRec;
    use std::collections::BTreeMap;

    fn net(id: &str, subnet: &str, ingress: bool) -> api::Network {
        api::Network {
            id: id.into(),
            spec: api::NetworkSpec {
                name: id.into(),
                ingress,
                ..Default::default()
            },
            ipam_options: Some(api::IpamOptions {
                configs: vec![api::IpamConfig {
                    subnet: subnet.into(),
                    gateway: String::new(),
                    range: String::new(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(id: &str, addr: &str, mesh: &str) -> NodeRec {
        NodeRec {
            id: id.into(),
            addr: addr.into(),
            ingress_addr: mesh.into(),
            ..Default::default()
        }
    }

    fn task(
        id: &str,
        svc: &str,
        slot: u64,
        node: &str,
        state: TaskState,
        addrs: &[(&str, &str)],
    ) -> TaskRec {
        TaskRec {
            id: id.into(),
            service_id: svc.into(),
            slot,
            node_id: node.into(),
            status: api::TaskStatus {
                state,
                ..Default::default()
            },
            desired_state: TaskState::Running,
            addresses: addrs
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn state() -> State {
        let mut s = State::default();
        s.networks
            .insert("ov".into(), net("ov", "10.0.1.0/24", false));
        s.networks
            .insert("ing".into(), net("ing", "10.0.0.0/24", true));
        s.nodes
            .insert("n1".into(), node("n1", "192.0.2.1", "10.0.0.2"));
        s.nodes
            .insert("n2".into(), node("n2", "192.0.2.2", "10.0.0.3"));
        let mut web = ServiceRec {
            id: "s1".into(),
            ..Default::default()
        };
        web.spec.name = "web".into();
        web.spec.task_template.networks = vec![api::NetworkAttachmentConfig {
            target: "ov".into(),
            aliases: vec!["www".into()],
            ..Default::default()
        }];
        web.vips = BTreeMap::from([
            ("ov".into(), "10.0.1.2".into()),
            ("ing".into(), "10.0.0.4".into()),
        ]);
        web.ports = vec![api::PortConfig {
            protocol: "tcp".into(),
            target_port: 80,
            published_port: 8080,
            publish_mode: "ingress".into(),
            ..Default::default()
        }];
        s.services.insert("s1".into(), web);
        s.tasks.insert(
            "t1".into(),
            task(
                "t1",
                "s1",
                1,
                "n1",
                TaskState::Running,
                &[("ov", "10.0.1.3"), ("ing", "10.0.0.5")],
            ),
        );
        s.tasks.insert(
            "t2".into(),
            task(
                "t2",
                "s1",
                2,
                "n2",
                TaskState::Running,
                &[("ov", "10.0.1.4"), ("ing", "10.0.0.6")],
            ),
        );
        s.tasks.insert(
            "t3".into(),
            task(
                "t3",
                "s1",
                3,
                "n2",
                TaskState::Starting,
                &[("ov", "10.0.1.5"), ("ing", "10.0.0.7")],
            ),
        );
        s.tasks.insert(
            "t4".into(),
            task(
                "t4",
                "s1",
                4,
                "n2",
                TaskState::Failed,
                &[("ov", "10.0.1.6"), ("ing", "10.0.0.8")],
            ),
        );
        s
    }

    #[test]
    fn a_node_sees_remote_endpoints_names_and_balancers() {
        let s = state();
        let v = views(&s, "n1");
        assert_eq!(v.len(), 2);
        let ov = v.iter().find(|x| x.network.id == "ov").unwrap();
        // Live endpoints elsewhere (a starting task too, not a failed one).
        assert_eq!(
            ov.peers,
            [
                ("10.0.1.4".to_string(), "192.0.2.2".to_string()),
                ("10.0.1.5".to_string(), "192.0.2.2".to_string())
            ]
        );
        // Only running tasks are answered and balanced to.
        assert_eq!(
            ov.vips,
            [(
                "10.0.1.2".to_string(),
                vec!["10.0.1.3".to_string(), "10.0.1.4".to_string()]
            )]
        );
        assert!(ov.names.contains(&(
            "10.0.1.2".to_string(),
            vec!["web".to_string(), "www".to_string()]
        )));
        assert!(ov.names.contains(&(
            "10.0.1.4".to_string(),
            vec![
                "tasks.web".to_string(),
                "tasks.www".to_string(),
                "web.2.t2".to_string()
            ]
        )));
        assert!(!ov
            .names
            .iter()
            .any(|(ip, _)| ip == "10.0.1.5" || ip == "10.0.1.6"));
        assert!(ov.mesh_nodes.is_empty() && ov.node_addr.is_empty());

        let ing = v.iter().find(|x| x.network.id == "ing").unwrap();
        assert_eq!(ing.node_addr, "10.0.0.2");
        assert_eq!(ing.mesh_nodes, ["10.0.0.2", "10.0.0.3"]);
        assert!(ing
            .peers
            .contains(&("10.0.0.3".to_string(), "192.0.2.2".to_string())));
        assert!(ing.names.is_empty());
        assert_eq!(
            ing.ingress_ports,
            [IngressPortView {
                protocol: "tcp".into(),
                published: 8080,
                target: 80,
                backends: vec!["10.0.0.5".into(), "10.0.0.6".into()],
            }]
        );
    }

    #[test]
    fn plain_containers_of_a_dead_node_leave_peers_and_names() {
        let mut s = state();
        s.attachments.insert(
            "a1".into(),
            crate::store::AttachmentRec {
                id: "a1".into(),
                node_id: "n2".into(),
                network_id: "ov".into(),
                container: "c2".into(),
                addr: "10.0.1.9".into(),
                created_unix: 0,
            },
        );
        let seen = |s: &State| {
            let v = views(s, "n1");
            let ov = v.iter().find(|x| x.network.id == "ov").cloned().unwrap();
            (
                ov.peers.iter().any(|(ip, _)| ip == "10.0.1.9"),
                ov.names
                    .iter()
                    .any(|(ip, n)| ip == "10.0.1.9" && n == &["c2"]),
            )
        };
        assert_eq!(seen(&s), (true, true));
        s.nodes.get_mut("n2").unwrap().state = api::NodeState::Down;
        assert_eq!(seen(&s), (false, false));
    }

    #[test]
    fn keys_go_only_with_encrypted_networks_to_their_nodes() {
        let mut s = state();
        let key = |tag: u32| crate::proto::NetworkKey {
            tag,
            key: [tag as u8; 16],
            salt: [0; 4],
            created_unix: 0,
        };
        s.network_keys = vec![key(1), key(2)];
        // Plain networks carry no keys.
        for v in views(&s, "n1") {
            assert!(v.keys.is_empty() && v.primary_key == 0, "{}", v.network.id);
        }
        let mut enc = net("enc", "10.0.2.0/24", false);
        enc.spec.driver_configuration = Some(api::Driver {
            name: "overlay".into(),
            options: [("encrypted".to_string(), String::new())].into(),
        });
        s.networks.insert("enc".into(), enc);
        s.tasks.insert(
            "t5".into(),
            task(
                "t5",
                "s1",
                5,
                "n2",
                TaskState::Running,
                &[("enc", "10.0.2.3")],
            ),
        );
        // n2 takes part in it: the keys, the newest primary; n1 does not: no view of it.
        let v2 = views(&s, "n2");
        let e = v2.iter().find(|x| x.network.id == "enc").unwrap();
        assert_eq!(e.keys, [key(1), key(2)]);
        assert_eq!(e.primary_key, 2);
        assert!(v2
            .iter()
            .filter(|x| x.network.id != "enc")
            .all(|x| x.keys.is_empty()));
        assert!(!views(&s, "n1").iter().any(|x| x.network.id == "enc"));
        // Once n1 has a task there too, it gets them, and each node sees the other's address.
        s.tasks.insert(
            "t6".into(),
            task(
                "t6",
                "s1",
                6,
                "n1",
                TaskState::Running,
                &[("enc", "10.0.2.4")],
            ),
        );
        let v1 = views(&s, "n1");
        let e = v1.iter().find(|x| x.network.id == "enc").unwrap();
        assert_eq!(e.keys.len(), 2);
        assert_eq!(e.peers, [("10.0.2.3".to_string(), "192.0.2.2".to_string())]);
    }

    #[test]
    fn dnsrr_names_carry_the_service_and_nodes_without_tasks_get_only_the_mesh() {
        let mut s = state();
        let web = s.services.get_mut("s1").unwrap();
        web.vips.clear();
        let v = views(&s, "n1");
        let ov = v.iter().find(|x| x.network.id == "ov").unwrap();
        assert!(ov.vips.is_empty());
        assert!(ov.names.contains(&(
            "10.0.1.3".to_string(),
            vec![
                "tasks.web".to_string(),
                "tasks.www".to_string(),
                "web.1.t1".to_string(),
                "web".to_string(),
                "www".to_string()
            ]
        )));
        s.nodes
            .insert("n3".into(), node("n3", "192.0.2.3", "10.0.0.9"));
        let v = views(&s, "n3");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].network.id, "ing");
        assert_eq!(v[0].node_addr, "10.0.0.9");
        // No service publishes through the mesh: no network at all.
        s.services.get_mut("s1").unwrap().ports.clear();
        assert!(views(&s, "n3").is_empty());
    }
}
