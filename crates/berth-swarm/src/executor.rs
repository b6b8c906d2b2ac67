//! What a node's agent needs from its engine: the node's description, its task containers,
//! and running or stopping one (with the swarm networks it joins). The daemon implements it over its container service (as
//! moby's cluster executor does); the agent never sees a container record.

use crate::proto::{LogOptions, NetworkView};
use berth_api::swarm as api;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A task's container as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContainer {
    pub task_id: String,
    pub container_id: String,
    pub state: ContainerState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running { pid: i64 },
    Exited { code: i64, error: String },
}

/// A secret or config file a task's container gets: the reference from its spec and the
/// content (secrets are put on a tmpfs, never on a disk).
#[derive(Debug, Clone)]
pub struct TaskFile {
    pub name: String,
    /// Where it appears in the container (absolute).
    pub target: String,
    pub uid: String,
    pub gid: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// A swarm network a task's container joins: the network (its allocated subnet, gateway and
/// VXLAN id) and the names the container answers to on it.
#[derive(Debug, Clone)]
pub struct TaskNetwork {
    pub network: api::Network,
    pub aliases: Vec<String>,
    /// Its address there, handed out by the managers ("" if none was).
    pub address: String,
}

/// The networks of a task in its spec's order, then the ingress network if the managers
/// attached it, from the attachments they filled in, each with the task's address there:
/// on each the container answers to the service's name, `tasks.<service>` and the
/// attachment's aliases. A network gone from the cluster is an error (the task fails).
pub fn task_networks(task: &api::Task, service_name: &str) -> Result<Vec<TaskNetwork>, String> {
    let address = |n: &api::NetworkAttachment| {
        n.addresses
            .first()
            .map(|a| a.split('/').next().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let mut out = task
        .spec
        .networks
        .iter()
        .map(|a| {
            let n = task
                .networks_attachments
                .iter()
                .find(|x| x.network.id == a.target)
                .ok_or_else(|| format!("network {} not found", a.target))?;
            let mut aliases = vec![service_name.to_string(), format!("tasks.{service_name}")];
            for al in &a.aliases {
                if !aliases.contains(al) {
                    aliases.push(al.clone());
                }
            }
            Ok(TaskNetwork {
                network: n.network.clone(),
                aliases,
                address: address(n),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    for n in &task.networks_attachments {
        if n.network.spec.ingress && !out.iter().any(|x| x.network.id == n.network.id) {
            out.push(TaskNetwork {
                network: n.network.clone(),
                aliases: Vec::new(),
                address: address(n),
            });
        }
    }
    Ok(out)
}

/// What the agent hands the executor for one task.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub task: api::Task,
    /// The service's name, for the container name and labels.
    pub service_name: String,
    /// This node's id (global tasks are named after it).
    pub node_id: String,
    pub secrets: Vec<TaskFile>,
    pub configs: Vec<TaskFile>,
    /// Published ports in host mode: (target, published, protocol).
    pub host_ports: Vec<(u32, u32, String)>,
    /// The swarm networks it joins (none: the engine's default network).
    pub networks: Vec<TaskNetwork>,
}

pub trait Executor: Send + Sync + 'static {
    /// The node as the managers see it: hostname, platform, resources, engine version, labels.
    fn describe(&self) -> BoxFut<'_, api::NodeDescription>;
    /// Every container of a swarm task on this node.
    fn list(&self) -> BoxFut<'_, Vec<TaskContainer>>;
    /// Pulls the image if it is missing, creates the container and starts it; returns the
    /// container's id. An error is the message the task's status shows.
    fn run(&self, run: TaskRun) -> BoxFut<'_, Result<String, String>>;
    /// Stops a container (the spec's grace period, else the engine's default).
    fn stop(&self, container_id: String, grace: Option<Duration>)
        -> BoxFut<'_, Result<(), String>>;
    /// Removes a container and what was made for it (secret tmpfs, anonymous volumes).
    fn remove(&self, container_id: String) -> BoxFut<'_, Result<(), String>>;
    /// Brings this node's part of the swarm networks to `views`, the full list (a network
    /// not in it is released once no container uses it). Called after every change, one
    /// call at a time.
    fn networks(&self, views: Vec<NetworkView>) -> BoxFut<'_, ()>;
    /// The swarm network attachments of the plain containers on this node (their ids).
    fn attachments(&self) -> BoxFut<'_, Vec<String>>;
    /// A task container's log as the Engine API renders it (multiplexed frames, or raw lines
    /// for a TTY), each piece whole; with `details`, every line carries the task's
    /// `com.docker.swarm.{node,service,task}.id` attributes.
    fn logs(
        &self,
        task_id: String,
        options: LogOptions,
    ) -> BoxFut<'_, Result<tokio::sync::mpsc::Receiver<Vec<u8>>, String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_networks_carry_the_service_name_and_aliases() {
        let net = |id: &str| api::NetworkAttachment {
            network: api::Network {
                id: id.to_string(),
                ..Default::default()
            },
            addresses: vec![format!("10.0.9.{}/24", id.len())],
        };
        let mut t = api::Task::default();
        t.spec.networks = vec![
            api::NetworkAttachmentConfig {
                target: "n2".into(),
                aliases: vec!["web".into(), "st_web".into()],
                ..Default::default()
            },
            api::NetworkAttachmentConfig {
                target: "n1".into(),
                ..Default::default()
            },
        ];
        t.networks_attachments = vec![net("n1"), net("n2")];
        let got = task_networks(&t, "st_web").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].network.id, "n2");
        assert_eq!(got[0].aliases, ["st_web", "tasks.st_web", "web"]);
        assert_eq!(got[1].network.id, "n1");
        assert_eq!(got[1].aliases, ["st_web", "tasks.st_web"]);
        assert_eq!(got[1].address, "10.0.9.2");
        // The ingress network the managers attached comes last, without names.
        let mut ing = net("ing");
        ing.network.spec.ingress = true;
        t.networks_attachments.push(ing);
        let got = task_networks(&t, "st_web").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[2].network.id.as_str(), got[2].address.as_str()),
            ("ing", "10.0.9.3")
        );
        assert!(got[2].aliases.is_empty());
        t.networks_attachments.pop();
        t.networks_attachments.pop();
        assert_eq!(
            task_networks(&t, "st_web").unwrap_err(),
            "network n2 not found"
        );
        assert!(task_networks(&api::Task::default(), "x")
            .unwrap()
            .is_empty());
    }
}
