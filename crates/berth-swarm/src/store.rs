//! The replicated cluster state: the swarm's objects (cluster, nodes, services, tasks, secrets,
//! configs, networks) and the commands that change them, applied in Raft log order on every
//! manager. Applying is deterministic: times and ids come inside the commands, versions are log
//! indexes.

use crate::error::{Error, Result};
use crate::netalloc::{self, Subnet};
use crate::proto::NetworkKey;
use berth_api::swarm as api;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use api::{NodeState, TaskState};

/// The cluster object and what only managers may see of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterRec {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub spec: api::SwarmSpec,
    pub root_ca_cert: String,
    pub root_ca_key: String,
    /// The secret halves of the join tokens (the tokens carry the root CA's digest too).
    pub worker_secret: String,
    pub manager_secret: String,
    /// `--autolock`: the key that seals the managers' Raft data keys ("" = not locked).
    pub unlock_key: String,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
    /// A root CA rotation under way (`docker swarm ca --rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_rotation: Option<RootRotation>,
    /// The spec's `CAConfig.ForceRotate` the last rotation answered.
    #[serde(default)]
    pub last_forced_rotation: u64,
}

/// The root a rotation moves the cluster to: its certificate and key, and the same
/// certificate signed by the current root (nodes that trust only the current root accept what
/// the next one issues through it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootRotation {
    pub ca_cert: String,
    pub ca_key: String,
    pub cross_signed_cert: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeRec {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub spec: api::NodeSpec,
    pub description: api::NodeDescription,
    pub state: NodeState,
    pub message: String,
    /// The address the node was last seen from (`Status.Addr`).
    pub addr: String,
    /// Managers: their Raft member id and the address other managers reach them at.
    pub raft_id: u64,
    pub manager_addr: String,
    /// The swarm address the node advertised when it joined (where it listens if promoted).
    pub advertise_addr: String,
    /// Its own address on the ingress network, where routing-mesh replies return to it.
    #[serde(default)]
    pub ingress_addr: String,
}

impl NodeRec {
    pub fn is_manager(&self) -> bool {
        self.spec.role == "manager"
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRec {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub spec: api::ServiceSpec,
    pub previous_spec: Option<api::ServiceSpec>,
    /// Bumped whenever the task template changes (or ForceUpdate does): tasks made from an
    /// older one are out of date and are replaced by the updater.
    pub spec_version: u64,
    pub update_status: Option<api::UpdateStatus>,
    /// Published ports as allocated (a port without a number gets one from 30000–32767).
    pub ports: Vec<api::PortConfig>,
    /// Jobs: the iteration tasks are made for (bumped by every update of a job).
    pub job_iteration: u64,
    /// Its virtual IP on each swarm network it joins (network id → address; endpoint mode
    /// vip), the ingress network's too when it publishes ingress ports.
    #[serde(default)]
    pub vips: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRec {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub service_id: String,
    /// Replicated services: the slot (1..); global ones: 0 (the node names the task).
    pub slot: u64,
    pub node_id: String,
    pub spec: api::TaskSpec,
    pub spec_version: u64,
    pub status: api::TaskStatus,
    pub desired_state: TaskState,
    pub job_iteration: Option<u64>,
    /// When the tasks this one replaced (after failures) were restarted, for the restart
    /// policy's max attempts within its window (kept across reaping and leader changes).
    #[serde(default)]
    pub restarts: Vec<String>,
    /// Its address on each swarm network it joins (network id → address), handed out when
    /// it is first stored; the ingress network's too when its service publishes ingress ports.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
}

/// A plain container on an attachable swarm network (`docker run --network <overlay>`): the
/// address the managers gave it there. Its node reports the ones it still has; the rest go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttachmentRec {
    pub id: String,
    pub node_id: String,
    pub network_id: String,
    /// The container's name (what other nodes resolve it by; "" if it has none yet).
    pub container: String,
    pub addr: String,
    /// When it was made (seconds since the epoch), so that one whose container is still
    /// being created is not taken for gone.
    pub created_unix: u64,
}

/// Plain containers one node may attach to swarm networks at once.
pub const MAX_ATTACHMENTS_PER_NODE: usize = 256;

/// The whole replicated state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub cluster: Option<ClusterRec>,
    pub nodes: BTreeMap<String, NodeRec>,
    pub services: BTreeMap<String, ServiceRec>,
    pub tasks: BTreeMap<String, TaskRec>,
    pub secrets: BTreeMap<String, api::Secret>,
    pub configs: BTreeMap<String, api::Config>,
    /// Swarm-scoped networks with their allocated subnet and VXLAN id.
    #[serde(default)]
    pub networks: BTreeMap<String, api::Network>,
    /// Per network, the host number last handed out: addresses go round the subnet, so one
    /// just released is not handed out again at once (a stopped task's address must leave
    /// every load balancer before another endpoint takes it).
    #[serde(default)]
    pub addr_cursor: BTreeMap<String, u32>,
    #[serde(default)]
    pub attachments: BTreeMap<String, AttachmentRec>,
    /// The keys of encrypted overlay networks, oldest first; the last is the primary.
    #[serde(default)]
    pub network_keys: Vec<NetworkKey>,
}

/// How many network encryption keys the cluster keeps (the primary and the two before it, so
/// that nodes that have not switched yet still decrypt and are decrypted).
pub const KEEP_NETWORK_KEYS: usize = 3;

/// How long a network encryption key is the primary before the leader makes a new one.
pub const NETWORK_KEY_ROTATION_SECS: u64 = 12 * 3600;

/// Whether a swarm network's traffic is encrypted between nodes (`--opt encrypted`).
pub fn is_encrypted(n: &api::Network) -> bool {
    n.spec
        .driver_configuration
        .as_ref()
        .is_some_and(|d| d.options.contains_key("encrypted"))
}

/// A change to the state. Every field that depends on the proposer (ids, times) is inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Init {
        cluster: Box<ClusterRec>,
        node: Box<NodeRec>,
        /// The predefined `ingress` network (the routing mesh), allocated as it applies.
        #[serde(default)]
        ingress: Option<Box<api::Network>>,
    },
    UpdateCluster {
        version: u64,
        spec: Box<api::SwarmSpec>,
        worker_secret: Option<String>,
        manager_secret: Option<String>,
        unlock_key: Option<String>,
        /// A root CA rotation begins (or replaces the one under way), answering the spec's
        /// `ForceRotate` or signing CA.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_rotation: Option<Box<RootRotation>>,
        now: String,
    },
    /// The root CA rotation to `ca_cert` is done: it becomes the cluster root, and the join
    /// tokens get new secrets (their digest is the new root's).
    FinishRootRotation {
        ca_cert: String,
        worker_secret: String,
        manager_secret: String,
        now: String,
    },
    /// What a node reports of its TLS certificate and trusted root (`Description.TLSInfo`).
    NodeTls {
        id: String,
        tls_info: Box<api::TlsInfo>,
        now: String,
    },
    AddNode {
        node: Box<NodeRec>,
    },
    UpdateNode {
        id: String,
        version: u64,
        spec: api::NodeSpec,
        now: String,
    },
    /// A manager's Raft id and address (promotion) or their removal (demotion: 0, "").
    SetManager {
        id: String,
        raft_id: u64,
        addr: String,
        /// A promotion changes the node's spec (its role) in the same entry.
        spec: Option<Box<api::NodeSpec>>,
        now: String,
    },
    /// Liveness verdicts and descriptions from the dispatcher.
    NodeStatus {
        id: String,
        state: NodeState,
        message: String,
        addr: String,
        description: Option<Box<api::NodeDescription>>,
        now: String,
    },
    RemoveNode {
        id: String,
        force: bool,
    },
    CreateService {
        service: Box<ServiceRec>,
    },
    UpdateService {
        id: String,
        version: u64,
        spec: Box<api::ServiceSpec>,
        /// The endpoint's ports for the new spec (allocated by the proposer).
        ports: Vec<api::PortConfig>,
        rollback: bool,
        now: String,
    },
    /// The updater's and orchestrators' bookkeeping on a service (no version check).
    ServiceStatus {
        id: String,
        /// The service's version the status was computed from (stale ones are dropped).
        version: u64,
        update_status: Option<api::UpdateStatus>,
        /// A rollback done by the updater: the previous spec becomes current again.
        roll_back: bool,
        now: String,
    },
    RemoveService {
        id: String,
    },
    /// Orchestrator and scheduler output: tasks made or changed, and tasks dropped.
    Tasks {
        put: Vec<TaskRec>,
        remove: Vec<String>,
    },
    /// Task states reported by a node's agent; only for tasks assigned to that node.
    TaskStatus {
        node: String,
        updates: Vec<(String, api::TaskStatus)>,
    },
    CreateSecret {
        secret: Box<api::Secret>,
    },
    UpdateSecret {
        id: String,
        version: u64,
        labels: BTreeMap<String, String>,
        now: String,
    },
    RemoveSecret {
        id: String,
    },
    CreateConfig {
        config: Box<api::Config>,
    },
    UpdateConfig {
        id: String,
        version: u64,
        labels: BTreeMap<String, String>,
        now: String,
    },
    RemoveConfig {
        id: String,
    },
    /// A swarm network; a subnet (when its spec names none) and a VXLAN id are allocated
    /// when the entry applies, so that concurrent creations never get the same.
    CreateNetwork {
        network: Box<api::Network>,
    },
    RemoveNetwork {
        id: String,
    },
    /// A plain container's attachment to an attachable network; its address is handed out
    /// as the entry applies (the result).
    Attach {
        attachment: Box<AttachmentRec>,
    },
    Detach {
        ids: Vec<String>,
    },
    /// A new network encryption key (made by the leader) becomes the primary, and the oldest
    /// beyond [`KEEP_NETWORK_KEYS`] is pruned. `after` is the tag of the primary the proposer
    /// saw (0: none): a stale proposal is refused. The key's tag is given as it applies.
    RotateNetworkKey {
        key: Box<NetworkKey>,
        after: u32,
    },
}

/// Docker's answer to a stale version in an update.
fn out_of_sequence() -> Error {
    Error::new(
        500,
        "rpc error: code = Unknown desc = update out of sequence",
    )
}

fn check_version(have: u64, want: u64) -> Result<()> {
    if have == want {
        Ok(())
    } else {
        Err(out_of_sequence())
    }
}

impl State {
    /// Applies `cmd` at log `index`. The result is what the proposer gets back.
    pub fn apply(&mut self, index: u64, cmd: Command) -> Result<Value> {
        match cmd {
            Command::Init {
                mut cluster,
                mut node,
                ingress,
            } => {
                if self.cluster.is_some() {
                    return Err(Error::unavailable("This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."));
                }
                cluster.version = index;
                node.version = index;
                let id = node.id.clone();
                self.cluster = Some(*cluster);
                self.nodes.insert(id.clone(), *node);
                if let Some(n) = ingress {
                    self.create_network(*n, index)?;
                }
                Ok(Value::String(id))
            }
            Command::UpdateCluster {
                version,
                spec,
                worker_secret,
                manager_secret,
                unlock_key,
                root_rotation,
                now,
            } => {
                let c = self
                    .cluster
                    .as_mut()
                    .ok_or_else(|| Error::unavailable(crate::error::NOT_IN_SWARM))?;
                check_version(c.version, version)?;
                if let Some(r) = root_rotation {
                    c.root_rotation = Some(*r);
                }
                c.last_forced_rotation = spec.ca_config.force_rotate;
                c.spec = *spec;
                if let Some(s) = worker_secret {
                    c.worker_secret = s;
                }
                if let Some(s) = manager_secret {
                    c.manager_secret = s;
                }
                if let Some(k) = unlock_key {
                    c.unlock_key = k;
                }
                c.version = index;
                c.updated_at = now;
                Ok(Value::Null)
            }
            Command::FinishRootRotation {
                ca_cert,
                worker_secret,
                manager_secret,
                now,
            } => {
                let c = self
                    .cluster
                    .as_mut()
                    .ok_or_else(|| Error::unavailable(crate::error::NOT_IN_SWARM))?;
                let r = c
                    .root_rotation
                    .take_if(|r| r.ca_cert == ca_cert)
                    .ok_or_else(|| Error::conflict("the root CA rotation has changed"))?;
                c.root_ca_cert = r.ca_cert;
                c.root_ca_key = r.ca_key;
                c.worker_secret = worker_secret;
                c.manager_secret = manager_secret;
                c.version = index;
                c.updated_at = now;
                Ok(Value::Null)
            }
            Command::RotateNetworkKey { mut key, after } => {
                let primary = self.network_keys.last().map_or(0, |k| k.tag);
                if primary != after {
                    return Err(Error::conflict("the network encryption keys have changed"));
                }
                key.tag = primary.wrapping_add(1).max(1);
                let tag = key.tag;
                self.network_keys.push(*key);
                let extra = self.network_keys.len().saturating_sub(KEEP_NETWORK_KEYS);
                self.network_keys.drain(..extra);
                Ok(Value::from(tag))
            }
            Command::NodeTls { id, tls_info, now } => {
                let n = self.node_mut(&id)?;
                n.description.tls_info = *tls_info;
                n.version = index;
                n.updated_at = now;
                Ok(Value::Null)
            }
            Command::AddNode { mut node } => {
                node.version = index;
                let id = node.id.clone();
                self.nodes.insert(id.clone(), *node);
                self.give_mesh_addresses();
                Ok(Value::String(id))
            }
            Command::UpdateNode {
                id,
                version,
                spec,
                now,
            } => {
                let n = self.node_mut(&id)?;
                check_version(n.version, version)?;
                n.spec = spec;
                n.version = index;
                n.updated_at = now;
                Ok(Value::Null)
            }
            Command::SetManager {
                id,
                raft_id,
                addr,
                spec,
                now,
            } => {
                let n = self.node_mut(&id)?;
                n.raft_id = raft_id;
                n.manager_addr = addr;
                if let Some(spec) = spec {
                    n.spec = *spec;
                }
                n.version = index;
                n.updated_at = now;
                Ok(Value::Null)
            }
            Command::NodeStatus {
                id,
                state,
                message,
                addr,
                description,
                now,
            } => {
                let n = self.node_mut(&id)?;
                n.state = state;
                n.message = message;
                if !addr.is_empty() {
                    n.addr = addr;
                }
                if let Some(mut d) = description {
                    // The agent's description says nothing of TLS; `NodeTls` keeps that.
                    if d.tls_info == api::TlsInfo::default() {
                        d.tls_info = std::mem::take(&mut n.description.tls_info);
                    }
                    n.description = *d;
                }
                n.version = index;
                n.updated_at = now;
                Ok(Value::Null)
            }
            Command::RemoveNode { id, force } => {
                let n = self
                    .nodes
                    .get(&id)
                    .ok_or_else(|| Error::not_found(format!("node {id} not found")))?;
                if n.is_manager() && n.raft_id != 0 {
                    return Err(Error::new(
                        400,
                        format!("rpc error: code = FailedPrecondition desc = node {id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"),
                    ));
                }
                if !force && n.state != NodeState::Down {
                    return Err(Error::new(
                        400,
                        format!("rpc error: code = FailedPrecondition desc = node {id} is not down and can't be removed"),
                    ));
                }
                self.nodes.remove(&id);
                self.attachments.retain(|_, a| a.node_id != id);
                // Its tasks are gone with it: the orchestrators replace them.
                for t in self.tasks.values_mut() {
                    if t.node_id == id && !t.status.state.is_terminal() {
                        t.status.state = TaskState::Orphaned;
                        t.status.message = "node removed".to_string();
                        t.desired_state = TaskState::Shutdown;
                        t.version = index;
                    }
                }
                Ok(Value::Null)
            }
            Command::CreateService { mut service } => {
                let name = &service.spec.name;
                if self.services.values().any(|s| &s.spec.name == name) {
                    return Err(Error::conflict(format!(
                        "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {name} already exists"
                    )));
                }
                service.version = index;
                service.spec_version = index;
                service.job_iteration = index;
                self.give_vips(&mut service);
                let id = service.id.clone();
                self.services.insert(id.clone(), *service);
                Ok(Value::String(id))
            }
            Command::UpdateService {
                id,
                version,
                spec,
                ports,
                rollback,
                now,
            } => {
                let clash = self
                    .services
                    .values()
                    .any(|s| s.id != id && s.spec.name == spec.name);
                let s = self
                    .services
                    .get_mut(&id)
                    .ok_or_else(|| Error::not_found(format!("service {id} not found")))?;
                check_version(s.version, version)?;
                if clash {
                    return Err(Error::conflict(format!(
                        "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                        spec.name
                    )));
                }
                if s.spec.name != spec.name {
                    return Err(Error::rpc_invalid("renaming services is not supported"));
                }
                let (new_spec, previous) = if rollback {
                    let prev = s.previous_spec.clone().ok_or_else(|| {
                        Error::new(
                            400,
                            "rpc error: code = FailedPrecondition desc = service does not have a previous spec",
                        )
                    })?;
                    (prev, Some(s.spec.clone()))
                } else {
                    (*spec, Some(s.spec.clone()))
                };
                let template_changed = serde_json::to_value(&new_spec.task_template).ok()
                    != serde_json::to_value(&s.spec.task_template).ok();
                let mode_changed = serde_json::to_value(&new_spec.mode).ok()
                    != serde_json::to_value(&s.spec.mode).ok();
                if template_changed {
                    s.spec_version = index;
                }
                if mode_changed || template_changed {
                    s.job_iteration = index;
                }
                s.previous_spec = previous;
                s.spec = new_spec;
                s.ports = ports;
                s.version = index;
                let mut svc = std::mem::take(s);
                self.give_vips(&mut svc);
                self.services.insert(id.clone(), svc);
                let s = self
                    .services
                    .get_mut(&id)
                    .ok_or_else(|| Error::not_found(format!("service {id} not found")))?;
                s.updated_at = now.clone();
                if template_changed {
                    s.update_status = Some(api::UpdateStatus {
                        state: if rollback {
                            "rollback_started".to_string()
                        } else {
                            "updating".to_string()
                        },
                        started_at: Some(now),
                        message: if rollback {
                            "manually requested rollback".to_string()
                        } else {
                            "update in progress".to_string()
                        },
                        ..Default::default()
                    });
                } else if s
                    .update_status
                    .as_ref()
                    .is_some_and(|u| u.state == "completed" || u.state == "rollback_completed")
                {
                    // As swarmkit: a change that replaces no task (a scale) is not that update
                    // again (the CLI's progress then waits for the new count to converge).
                    s.update_status = None;
                }
                Ok(Value::Null)
            }
            Command::ServiceStatus {
                id,
                version,
                update_status,
                roll_back,
                now,
            } => {
                let s = self
                    .services
                    .get_mut(&id)
                    .ok_or_else(|| Error::not_found(format!("service {id} not found")))?;
                if s.version != version {
                    return Ok(Value::Null);
                }
                if roll_back {
                    if let Some(prev) = s.previous_spec.take() {
                        s.previous_spec = Some(std::mem::replace(&mut s.spec, prev));
                        s.spec_version = index;
                    }
                }
                s.update_status = update_status;
                s.version = index;
                s.updated_at = now;
                Ok(Value::Null)
            }
            Command::RemoveService { id } => {
                if self.services.remove(&id).is_none() {
                    return Err(Error::not_found(format!("service {id} not found")));
                }
                // Its tasks are shut down by their agents, then dropped by the reaper.
                for t in self.tasks.values_mut() {
                    if t.service_id == id && t.desired_state != TaskState::Remove {
                        t.desired_state = TaskState::Remove;
                        t.version = index;
                    }
                }
                Ok(Value::Null)
            }
            Command::Tasks { put, remove } => {
                for mut t in put {
                    // A pass computed from an older state loses to what changed since: a
                    // changed task keeps its change, a removed service gets no new task.
                    match self.tasks.get(&t.id) {
                        Some(cur) if cur.version != t.version => continue,
                        None if !self.services.contains_key(&t.service_id) => continue,
                        _ => {}
                    }
                    t.version = index;
                    if !t.status.state.is_terminal() && t.desired_state <= TaskState::Running {
                        self.give_addresses(&mut t);
                    }
                    self.tasks.insert(t.id.clone(), t);
                }
                for id in remove {
                    self.tasks.remove(&id);
                }
                Ok(Value::Null)
            }
            Command::TaskStatus { node, updates } => {
                for (id, status) in updates {
                    if let Some(t) = self.tasks.get_mut(&id) {
                        // A node may only speak for its own tasks, and never move one back.
                        if t.node_id != node
                            || status.state < t.status.state
                            || (status.state == t.status.state && status.err == t.status.err)
                        {
                            continue;
                        }
                        t.status = status;
                        t.version = index;
                    }
                }
                Ok(Value::Null)
            }
            Command::CreateSecret { secret } => create_payload(&mut self.secrets, *secret, index),
            Command::UpdateSecret {
                id,
                version,
                labels,
                now,
            } => update_payload(&mut self.secrets, &id, version, labels, now, index),
            Command::RemoveSecret { id } => {
                let users = self.users_of(|c| c.secrets.iter().any(|r| r.secret_id == id));
                remove_payload(&mut self.secrets, &id, users)
            }
            Command::CreateConfig { config } => create_payload(&mut self.configs, *config, index),
            Command::UpdateConfig {
                id,
                version,
                labels,
                now,
            } => update_payload(&mut self.configs, &id, version, labels, now, index),
            Command::RemoveConfig { id } => {
                let users = self.users_of(|c| c.configs.iter().any(|r| r.config_id == id));
                remove_payload(&mut self.configs, &id, users)
            }
            Command::CreateNetwork { network } => self.create_network(*network, index),
            Command::RemoveNetwork { id } => self.remove_network(&id),
            Command::Attach { mut attachment } => {
                let net = self.find_network(&attachment.network_id)?;
                if !net.spec.attachable {
                    return Err(Error::new(
                        403,
                        format!(
                            "Could not attach to network {}: rpc error: code = PermissionDenied desc = network {} not manually attachable",
                            attachment.network_id, attachment.network_id
                        ),
                    ));
                }
                self.check_attachment(&attachment, net)?;
                let (net_id, net_name) = (net.id.clone(), net.spec.name.clone());
                let addr = self.allocate_address(&net_id).ok_or_else(|| {
                    Error::new(
                        500,
                        format!("rpc error: code = ResourceExhausted desc = no address left on network {net_name}"),
                    )
                })?;
                attachment.network_id = net_id;
                attachment.addr = addr.clone();
                self.attachments.insert(attachment.id.clone(), *attachment);
                Ok(Value::String(addr))
            }
            Command::Detach { ids } => {
                for id in ids {
                    self.attachments.remove(&id);
                }
                Ok(Value::Null)
            }
        }
    }

    /// A node's request to attach a plain container, which nothing else vouches for: a
    /// container name as Docker allows them, that does not pose as a service's name or alias
    /// on that network or its `tasks.` record, within a per-node cap.
    fn check_attachment(&self, a: &AttachmentRec, net: &api::Network) -> Result<()> {
        let name = a.container.strip_prefix('/').unwrap_or(&a.container);
        let b = name.as_bytes();
        let valid = b.len() > 1
            && b[0].is_ascii_alphanumeric()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !valid {
            return Err(Error::invalid(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let refuse = |why: String| {
            Error::invalid(format!(
                "container name {name} cannot join swarm network {}: {why}",
                net.spec.name
            ))
        };
        if name.to_ascii_lowercase().starts_with("tasks.") {
            return Err(refuse(
                "names starting with tasks. are the records of service tasks".to_string(),
            ));
        }
        let service = self.services.values().find(|svc| {
            svc.spec
                .task_template
                .networks
                .iter()
                .filter(|n| n.target == net.id)
                .any(|n| {
                    svc.spec.name.eq_ignore_ascii_case(name)
                        || n.aliases.iter().any(|x| x.eq_ignore_ascii_case(name))
                })
        });
        if let Some(svc) = service {
            return Err(refuse(format!(
                "it is the name or an alias of service {} there",
                svc.spec.name
            )));
        }
        let held = self
            .attachments
            .values()
            .filter(|x| x.node_id == a.node_id)
            .count();
        if held >= MAX_ATTACHMENTS_PER_NODE {
            return Err(Error::unavailable(format!(
                "node {} already holds {MAX_ATTACHMENTS_PER_NODE} attachments to swarm networks, the most one node may",
                a.node_id
            )));
        }
        Ok(())
    }

    /// The swarm's address pools and subnet size (swarmkit's defaults when init gave none).
    fn address_pools(&self) -> Result<(Vec<Subnet>, u8)> {
        let (pools, size) = match &self.cluster {
            Some(c) if !c.default_addr_pool.is_empty() => {
                (c.default_addr_pool.clone(), c.subnet_size)
            }
            Some(c) => (vec![netalloc::DEFAULT_POOL.to_string()], c.subnet_size),
            None => return Err(Error::unavailable(crate::error::NOT_IN_SWARM)),
        };
        let size = if size == 0 {
            netalloc::DEFAULT_SUBNET_SIZE
        } else {
            size
        };
        let pools = pools
            .iter()
            .map(|p| Subnet::parse(p).map_err(Error::internal))
            .collect::<Result<Vec<_>>>()?;
        Ok((pools, size.min(32) as u8))
    }

    fn create_network(&mut self, mut n: api::Network, index: u64) -> Result<Value> {
        let name = n.spec.name.clone();
        if self.networks.values().any(|o| o.spec.name == name) {
            return Err(Error::conflict(format!(
                "network with name {name} already exists"
            )));
        }
        if n.spec.ingress {
            if let Some(o) = self.ingress() {
                return Err(Error::conflict(format!(
                    "rpc error: code = AlreadyExists desc = ingress network ({}) is already present",
                    o.id
                )));
            }
        }
        let taken: Vec<Subnet> = self.networks.values().flat_map(network_subnets).collect();
        let ipam = n.ipam_options.get_or_insert_with(Default::default);
        if ipam.driver.name.is_empty() {
            ipam.driver.name = "default".to_string();
        }
        if ipam.configs.is_empty() {
            let (pools, size) = self.address_pools()?;
            let sub = netalloc::allocate(&pools, size, &taken).ok_or_else(|| {
                Error::new(
                    500,
                    "rpc error: code = ResourceExhausted desc = could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                )
            })?;
            ipam.configs.push(api::IpamConfig {
                subnet: sub.to_string(),
                range: String::new(),
                gateway: sub.host(1).to_string(),
            });
        } else {
            for c in ipam.configs.iter_mut() {
                let sub = Subnet::parse(&c.subnet).map_err(Error::rpc_invalid)?;
                if taken.iter().any(|t| t.overlaps(&sub)) {
                    return Err(Error::new(
                        403,
                        "invalid pool request: Pool overlaps with other one on this address space",
                    ));
                }
                if c.gateway.is_empty() {
                    c.gateway = sub.host(1).to_string();
                }
            }
        }
        let vnis: Vec<u32> = self
            .networks
            .values()
            .filter_map(|o| o.driver_state.options.get(netalloc::VNI_OPTION))
            .filter_map(|v| v.parse().ok())
            .collect();
        if !n.driver_state.options.contains_key(netalloc::VNI_OPTION) {
            n.driver_state.options.insert(
                netalloc::VNI_OPTION.to_string(),
                netalloc::allocate_vni(&vnis).to_string(),
            );
        }
        n.version.index = index;
        let id = n.id.clone();
        let ingress = n.spec.ingress;
        self.networks.insert(id.clone(), n);
        if ingress {
            self.give_mesh_addresses();
        }
        Ok(Value::String(id))
    }

    /// Whether the leader should make a new network encryption key at `now_unix` (seconds):
    /// the first when an encrypted network exists, then every
    /// [`NETWORK_KEY_ROTATION_SECS`].
    pub fn network_key_due(&self, now_unix: u64) -> bool {
        match self.network_keys.last() {
            None => self.networks.values().any(is_encrypted),
            Some(k) => now_unix >= k.created_unix.saturating_add(NETWORK_KEY_ROTATION_SECS),
        }
    }

    /// The ingress network, if the swarm has one.
    pub fn ingress(&self) -> Option<&api::Network> {
        self.networks.values().find(|n| n.spec.ingress)
    }

    /// The networks a task of `svc` joins: its spec's, then the ingress network when the
    /// service publishes ingress ports.
    pub fn task_network_ids(&self, spec: &api::TaskSpec, svc: Option<&ServiceRec>) -> Vec<String> {
        let mut ids: Vec<String> = spec.networks.iter().map(|a| a.target.clone()).collect();
        if let (Some(svc), Some(ing)) = (svc, self.ingress()) {
            if publishes_ingress(svc) && !ids.contains(&ing.id) {
                ids.push(ing.id.clone());
            }
        }
        ids
    }

    /// The addresses on network `net` that endpoints hold now: live tasks', services'
    /// virtual IPs and (ingress) the nodes' mesh addresses.
    fn held_addresses(&self, net: &str) -> Vec<String> {
        let tasks = self
            .tasks
            .values()
            .filter(|t| !t.status.state.is_terminal())
            .filter_map(|t| t.addresses.get(net));
        let vips = self.services.values().filter_map(|s| s.vips.get(net));
        let mesh = self
            .ingress()
            .filter(|n| n.id == net)
            .into_iter()
            .flat_map(|_| self.nodes.values().map(|n| &n.ingress_addr));
        let attached = self
            .attachments
            .values()
            .filter(|a| a.network_id == net)
            .map(|a| &a.addr);
        tasks
            .chain(vips)
            .chain(mesh)
            .chain(attached)
            .cloned()
            .collect()
    }

    /// A free address on network `net`, going round the subnet (or its `--ip-range`) from the
    /// last one handed out (never the gateway); None when the network is unknown or full.
    fn allocate_address(&mut self, net: &str) -> Option<String> {
        let n = self.networks.get(net)?;
        let cfg = n.ipam_options.as_ref()?.configs.first()?;
        let sub = Subnet::parse(&cfg.subnet).ok()?;
        let gateway = cfg.gateway.clone();
        let held = self.held_addresses(net);
        // Ended tasks still on record keep their addresses out of reach while any other is
        // free: every node drops an ended task from its balancers and names long before.
        let ended: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.status.state.is_terminal())
            .filter_map(|t| t.addresses.get(net).cloned())
            .collect();
        // Host numbers handed out: the subnet's but its network and broadcast addresses,
        // within the range when one was given.
        let last = u32::try_from(sub.size().checked_sub(2)?).ok()?;
        let (lo, hi) = match Subnet::parse(&cfg.range) {
            Ok(r) if !cfg.range.is_empty() => {
                let first = r.addr.wrapping_sub(sub.addr);
                let end = u32::try_from(u64::from(first) + r.size() - 1).ok()?;
                (first.max(1), end.min(last))
            }
            _ => (1, last),
        };
        let count = hi.checked_sub(lo)? + 1;
        let start = self.addr_cursor.get(net).copied().unwrap_or(0);
        let offset = if (lo..=hi).contains(&start) {
            start - lo + 1
        } else {
            0
        };
        for spare_ended in [true, false] {
            for k in 0..count {
                let h = lo + (offset + k) % count;
                let ip = sub.host(h).to_string();
                if ip != gateway && !held.contains(&ip) && !(spare_ended && ended.contains(&ip)) {
                    self.addr_cursor.insert(net.to_string(), h);
                    return Some(ip);
                }
            }
        }
        None
    }

    /// Gives a task an address on each network it joins that it has none on yet.
    fn give_addresses(&mut self, t: &mut TaskRec) {
        let ids = self.task_network_ids(&t.spec, self.services.get(&t.service_id));
        for net in ids {
            if t.addresses.contains_key(&net) {
                continue;
            }
            if let Some(ip) = self.allocate_address(&net) {
                t.addresses.insert(net, ip);
            }
        }
    }

    /// Gives a service a virtual IP on each network its tasks join (endpoint mode vip), and
    /// drops those of networks it left.
    fn give_vips(&mut self, svc: &mut ServiceRec) {
        let dnsrr = svc
            .spec
            .endpoint_spec
            .as_ref()
            .is_some_and(|e| e.mode == "dnsrr");
        let ids = if dnsrr {
            Vec::new()
        } else {
            self.task_network_ids(&svc.spec.task_template, Some(svc))
        };
        svc.vips.retain(|net, _| ids.contains(net));
        for net in ids {
            if svc.vips.contains_key(&net) {
                continue;
            }
            if let Some(ip) = self.allocate_address(&net) {
                svc.vips.insert(net, ip);
            }
        }
    }

    /// Gives every node without one an address on the ingress network.
    fn give_mesh_addresses(&mut self) {
        let Some(ing) = self.ingress().map(|n| n.id.clone()) else {
            return;
        };
        let ids: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.ingress_addr.is_empty())
            .map(|n| n.id.clone())
            .collect();
        for id in ids {
            if let Some(ip) = self.allocate_address(&ing) {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.ingress_addr = ip;
                }
            }
        }
    }

    fn remove_network(&mut self, id: &str) -> Result<Value> {
        if !self.networks.contains_key(id) {
            return Err(Error::not_found(format!("network {id} not found")));
        }
        if self.networks.get(id).is_some_and(|n| n.spec.ingress) {
            if let Some(s) = self.services.values().find(|s| publishes_ingress(s)) {
                return Err(Error::new(
                    400,
                    format!(
                        "rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service {} depends on it",
                        s.id
                    ),
                ));
            }
        }
        let uses = |nets: &[api::NetworkAttachmentConfig]| nets.iter().any(|a| a.target == id);
        if let Some(s) = self
            .services
            .values()
            .find(|s| uses(&s.spec.task_template.networks))
        {
            return Err(Error::new(
                400,
                format!(
                    "rpc error: code = FailedPrecondition desc = network {id} is in use by service {}",
                    s.id
                ),
            ));
        }
        if let Some(t) = self.tasks.values().find(|t| {
            t.desired_state <= TaskState::Running
                && t.status.state <= TaskState::Running
                && uses(&t.spec.networks)
        }) {
            return Err(Error::new(
                400,
                format!(
                    "rpc error: code = FailedPrecondition desc = network {id} is in use by task {}",
                    t.id
                ),
            ));
        }
        if let Some(a) = self.attachments.values().find(|a| a.network_id == id) {
            return Err(Error::new(
                400,
                format!(
                    "rpc error: code = FailedPrecondition desc = network {id} is in use by container {} on node {}",
                    a.container, a.node_id
                ),
            ));
        }
        self.networks.remove(id);
        Ok(Value::Null)
    }

    /// The names of the services whose container spec `uses` holds.
    fn users_of(&self, uses: impl Fn(&api::ContainerSpec) -> bool) -> Vec<String> {
        self.services
            .values()
            .filter(|s| {
                s.spec
                    .task_template
                    .container_spec
                    .as_ref()
                    .is_some_and(&uses)
            })
            .map(|s| s.spec.name.clone())
            .collect()
    }

    fn node_mut(&mut self, id: &str) -> Result<&mut NodeRec> {
        self.nodes
            .get_mut(id)
            .ok_or_else(|| Error::not_found(format!("node {id} not found")))
    }

    /// A node by full id, unique id prefix, or name/hostname (as dockerd's lookups).
    pub fn find_node(&self, key: &str) -> Result<&NodeRec> {
        if let Some(n) = self.nodes.get(key) {
            return Ok(n);
        }
        let by_name: Vec<&NodeRec> = self
            .nodes
            .values()
            .filter(|n| n.spec.name == key || n.description.hostname == key)
            .collect();
        if by_name.len() == 1 {
            return Ok(by_name[0]);
        }
        let by_prefix: Vec<&NodeRec> = self
            .nodes
            .values()
            .filter(|n| n.id.starts_with(key))
            .collect();
        match (by_name.len(), by_prefix.len()) {
            (0, 1) => Ok(by_prefix[0]),
            (0, 0) => Err(Error::not_found(format!("node {key} not found"))),
            _ => Err(Error::invalid(format!(
                "node {key} is ambiguous ({} matches found)",
                by_name.len() + by_prefix.len()
            ))),
        }
    }

    /// A service by full id, name, or unique id prefix.
    /// The node certificates' lifetime the cluster spec sets (`--cert-expiry`), if any.
    pub fn cert_expiry(&self) -> Option<std::time::Duration> {
        self.cluster
            .as_ref()
            .map(|c| c.spec.ca_config.node_cert_expiry)
            .filter(|n| *n > 0)
            .map(|n| std::time::Duration::from_nanos(n as u64))
    }

    pub fn find_service(&self, key: &str) -> Result<&ServiceRec> {
        if let Some(s) = self.services.get(key) {
            return Ok(s);
        }
        if let Some(s) = self.services.values().find(|s| s.spec.name == key) {
            return Ok(s);
        }
        let m: Vec<&ServiceRec> = self
            .services
            .values()
            .filter(|s| s.id.starts_with(key))
            .collect();
        match m.len() {
            1 => Ok(m[0]),
            0 => Err(Error::not_found(format!("service {key} not found"))),
            n => Err(Error::invalid(format!(
                "service {key} is ambiguous ({n} matches found)"
            ))),
        }
    }

    /// A task by full id or unique id prefix.
    pub fn find_task(&self, key: &str) -> Result<&TaskRec> {
        if let Some(t) = self.tasks.get(key) {
            return Ok(t);
        }
        let m: Vec<&TaskRec> = self
            .tasks
            .values()
            .filter(|t| t.id.starts_with(key))
            .collect();
        match m.len() {
            1 => Ok(m[0]),
            0 => Err(Error::not_found(format!("task {key} not found"))),
            n => Err(Error::invalid(format!(
                "task {key} is ambiguous ({n} matches found)"
            ))),
        }
    }

    /// A secret by id, name or unique id prefix.
    pub fn find_secret(&self, key: &str) -> Result<&api::Secret> {
        find_named(&self.secrets, key, |s| &s.spec.name, "secret")
    }

    /// A config by id, name or unique id prefix.
    pub fn find_config(&self, key: &str) -> Result<&api::Config> {
        find_named(&self.configs, key, |s| &s.spec.name, "config")
    }

    /// A swarm network by id, name or unique id prefix.
    pub fn find_network(&self, key: &str) -> Result<&api::Network> {
        find_named(&self.networks, key, |n| &n.spec.name, "network")
    }

    /// The managers' Raft members as (raft id, address).
    pub fn raft_members(&self) -> Vec<(u64, String)> {
        self.nodes
            .values()
            .filter(|n| n.raft_id != 0)
            .map(|n| (n.raft_id, n.manager_addr.clone()))
            .collect()
    }
}

/// Secrets and configs: named payloads whose labels alone may change.
pub trait Payload {
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn version(&mut self) -> &mut u64;
    fn labels(&mut self) -> &mut BTreeMap<String, String>;
    fn updated_at(&mut self) -> &mut String;
}

macro_rules! payload {
    ($t:ty, $kind:literal) => {
        impl Payload for $t {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.spec.name
            }
            fn version(&mut self) -> &mut u64 {
                &mut self.version.index
            }
            fn labels(&mut self) -> &mut BTreeMap<String, String> {
                &mut self.spec.labels
            }
            fn updated_at(&mut self) -> &mut String {
                &mut self.updated_at
            }
        }
    };
}
payload!(api::Secret, "secret");
payload!(api::Config, "config");

fn create_payload<T: Payload>(
    map: &mut BTreeMap<String, T>,
    mut obj: T,
    index: u64,
) -> Result<Value> {
    let name = obj.name().to_string();
    if map.values().any(|o| o.name() == name) {
        return Err(Error::conflict(format!(
            "rpc error: code = AlreadyExists desc = {} {name} already exists",
            T::KIND
        )));
    }
    *obj.version() = index;
    let id = obj.id().to_string();
    map.insert(id.clone(), obj);
    Ok(Value::String(id))
}

fn update_payload<T: Payload>(
    map: &mut BTreeMap<String, T>,
    id: &str,
    version: u64,
    labels: BTreeMap<String, String>,
    now: String,
    index: u64,
) -> Result<Value> {
    let o = map
        .get_mut(id)
        .ok_or_else(|| Error::not_found(format!("{} {id} not found", T::KIND)))?;
    check_version(*o.version(), version)?;
    *o.labels() = labels;
    *o.version() = index;
    *o.updated_at() = now;
    Ok(Value::Null)
}

fn remove_payload<T: Payload>(
    map: &mut BTreeMap<String, T>,
    id: &str,
    users: Vec<String>,
) -> Result<Value> {
    let name = match map.get(id) {
        Some(o) => o.name().to_string(),
        None => return Err(Error::not_found(format!("{} {id} not found", T::KIND))),
    };
    if !users.is_empty() {
        return Err(Error::new(
            400,
            format!(
                "rpc error: code = InvalidArgument desc = {} '{name}' is in use by the following service: {}",
                T::KIND,
                users.join(", ")
            ),
        ));
    }
    map.remove(id);
    Ok(Value::Null)
}

fn find_named<'a, T>(
    map: &'a BTreeMap<String, T>,
    key: &str,
    name: impl Fn(&T) -> &String,
    kind: &str,
) -> Result<&'a T> {
    if let Some(v) = map.get(key) {
        return Ok(v);
    }
    if let Some(v) = map.values().find(|v| name(v) == key) {
        return Ok(v);
    }
    let m: Vec<&T> = map
        .iter()
        .filter(|(id, _)| id.starts_with(key))
        .map(|(_, v)| v)
        .collect();
    match m.len() {
        1 => Ok(m[0]),
        0 => Err(Error::not_found(format!("{kind} {key} not found"))),
        n => Err(Error::invalid(format!(
            "{kind} {key} is ambiguous ({n} matches found)"
        ))),
    }
}

/// The IPv4 subnets a swarm network holds.
/// Whether a service publishes ports through the routing mesh.
pub fn publishes_ingress(svc: &ServiceRec) -> bool {
    svc.ports.iter().any(|p| p.publish_mode == "ingress")
}

fn network_subnets(n: &api::Network) -> Vec<Subnet> {
    n.ipam_options
        .iter()
        .flat_map(|i| i.configs.iter())
        .filter_map(|c| Subnet::parse(&c.subnet).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm() -> State {
        State {
            cluster: Some(ClusterRec::default()),
            ..Default::default()
        }
    }

    fn net(id: &str, name: &str, subnet: Option<&str>) -> Command {
        Command::CreateNetwork {
            network: Box::new(api::Network {
                id: id.into(),
                spec: api::NetworkSpec {
                    name: name.into(),
                    scope: "swarm".into(),
                    ..Default::default()
                },
                driver_state: api::Driver {
                    name: "overlay".into(),
                    options: BTreeMap::new(),
                },
                ipam_options: subnet.map(|s| api::IpamOptions {
                    configs: vec![api::IpamConfig {
                        subnet: s.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn rotate(s: &mut State, index: u64, after: u32, created_unix: u64) -> Result<Value> {
        s.apply(
            index,
            Command::RotateNetworkKey {
                key: Box::new(NetworkKey {
                    tag: 99,
                    key: [index as u8; 16],
                    salt: [index as u8; 4],
                    created_unix,
                }),
                after,
            },
        )
    }

    #[test]
    fn network_keys_are_made_when_needed_rotated_and_pruned() {
        let mut s = swarm();
        s.apply(1, net("ov", "ov", Some("10.0.1.0/24"))).unwrap();
        // No encrypted network: no key needed.
        assert!(!s.network_key_due(0));
        let Command::CreateNetwork { mut network } = net("enc", "enc", None) else {
            unreachable!()
        };
        network.spec.driver_configuration = Some(api::Driver {
            name: "overlay".into(),
            options: BTreeMap::from([("encrypted".into(), String::new())]),
        });
        assert!(is_encrypted(&network));
        assert!(!is_encrypted(&s.networks["ov"]));
        s.apply(2, Command::CreateNetwork { network }).unwrap();
        assert!(s.network_key_due(1000));
        // The first key gets tag 1, whatever the proposer put there.
        assert_eq!(rotate(&mut s, 3, 0, 1000).unwrap(), Value::from(1));
        assert!(!s.network_key_due(1000 + NETWORK_KEY_ROTATION_SECS - 1));
        assert!(s.network_key_due(1000 + NETWORK_KEY_ROTATION_SECS));
        // A proposal made before that key applied is stale.
        assert!(rotate(&mut s, 4, 0, 2000).is_err());
        assert_eq!(s.network_keys.len(), 1);
        for (i, tag) in (5..8).zip(2u32..) {
            assert_eq!(
                rotate(&mut s, i, tag - 1, 1000 * i).unwrap(),
                Value::from(tag)
            );
        }
        // Three kept, the newest primary (last), the oldest pruned.
        let tags: Vec<u32> = s.network_keys.iter().map(|k| k.tag).collect();
        assert_eq!(tags, [2, 3, 4]);
        assert_eq!(s.network_keys.last().unwrap().key, [7u8; 16]);
        // Keys survive a snapshot (the Raft data, sealed at rest).
        let back: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back.network_keys, s.network_keys);
        // Never shown in logs.
        assert!(!format!("{:?}", s.network_keys[0]).contains("key: ["));
    }

    #[test]
    fn attachments_from_nodes_are_checked() {
        let mut s = State::default();
        let mut cmd = net("att", "att", Some("10.9.0.0/16"));
        if let Command::CreateNetwork { network } = &mut cmd {
            network.spec.attachable = true;
        }
        s.apply(1, cmd).unwrap();
        let mut svc = ServiceRec {
            id: "s1".into(),
            ..Default::default()
        };
        svc.spec.name = "web".into();
        svc.spec.task_template.networks = vec![api::NetworkAttachmentConfig {
            target: "att".into(),
            aliases: vec!["www".into()],
            ..Default::default()
        }];
        s.apply(
            2,
            Command::CreateService {
                service: Box::new(svc),
            },
        )
        .unwrap();
        let attach = |s: &mut State, id: &str, node: &str, container: &str| {
            s.apply(
                3,
                Command::Attach {
                    attachment: Box::new(AttachmentRec {
                        id: id.into(),
                        node_id: node.into(),
                        network_id: "att".into(),
                        container: container.into(),
                        ..Default::default()
                    }),
                },
            )
            .map_err(|e| (e.status, e.message))
        };
        assert!(attach(&mut s, "a1", "n1", "/app-1").is_ok());
        assert_eq!(
            attach(&mut s, "a2", "n1", "bad name"),
            Err((
                400,
                "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    .into()
            ))
        );
        assert_eq!(
            attach(&mut s, "a2", "n1", "tasks.web"),
            Err((
                400,
                "container name tasks.web cannot join swarm network att: names starting with tasks. are the records of service tasks".into()
            ))
        );
        for name in ["web", "WWW"] {
            assert_eq!(
                attach(&mut s, "a2", "n1", name),
                Err((
                    400,
                    format!("container name {name} cannot join swarm network att: it is the name or an alias of service web there")
                ))
            );
        }
        // The per-node cap: another node is not held back by this one's.
        for i in 1..MAX_ATTACHMENTS_PER_NODE {
            attach(&mut s, &format!("b{i}"), "n1", &format!("c{i}")).unwrap();
        }
        let (status, msg) = attach(&mut s, "x", "n1", "one-more").unwrap_err();
        assert_eq!(status, 503);
        assert!(
            msg.starts_with("node n1 already holds 256 attachments"),
            "{msg}"
        );
        assert!(attach(&mut s, "y", "n2", "one-more").is_ok());
    }

    #[test]
    fn addresses_come_from_the_ip_range_when_one_is_given() {
        let mut s = State::default();
        let mut cmd = net("rg", "rg", Some("10.9.0.0/24"));
        if let Command::CreateNetwork { network } = &mut cmd {
            network.ipam_options.as_mut().unwrap().configs[0].range = "10.9.0.252/30".into();
        }
        s.apply(1, cmd).unwrap();
        // .252 to .254 (the broadcast address is never handed out), round and round.
        let got: Vec<String> = (0..3).map(|_| s.allocate_address("rg").unwrap()).collect();
        assert_eq!(got, ["10.9.0.252", "10.9.0.253", "10.9.0.254"]);
        s.attachments.insert(
            "x".into(),
            AttachmentRec {
                id: "x".into(),
                network_id: "rg".into(),
                addr: "10.9.0.252".into(),
                ..Default::default()
            },
        );
        assert_eq!(s.allocate_address("rg").unwrap(), "10.9.0.253");
        // An ended task's address is handed out again only when no other is free.
        s.attachments.clear();
        let mut ended = TaskRec::default();
        ended.status.state = api::TaskState::Failed;
        ended.addresses.insert("rg".into(), "10.9.0.254".into());
        s.tasks.insert("t".into(), ended);
        assert_eq!(s.allocate_address("rg").unwrap(), "10.9.0.252");
        assert_eq!(s.allocate_address("rg").unwrap(), "10.9.0.253");
        s.attachments.insert(
            "y".into(),
            AttachmentRec {
                id: "y".into(),
                network_id: "rg".into(),
                addr: "10.9.0.252".into(),
                ..Default::default()
            },
        );
        s.attachments.insert(
            "z".into(),
            AttachmentRec {
                id: "z".into(),
                network_id: "rg".into(),
                addr: "10.9.0.253".into(),
                ..Default::default()
            },
        );
        assert_eq!(s.allocate_address("rg").unwrap(), "10.9.0.254");
        // Without a range: the whole subnet but the gateway.
        s.apply(2, net("all", "all", Some("10.9.1.0/30"))).unwrap();
        assert_eq!(s.allocate_address("all").unwrap(), "10.9.1.2");
        assert_eq!(s.allocate_address("all").unwrap(), "10.9.1.2");
    }

    fn subnet_of(s: &State, id: &str) -> (String, String) {
        let c = &s.networks[id].ipam_options.as_ref().unwrap().configs[0];
        (c.subnet.clone(), c.gateway.clone())
    }

    #[test]
    fn endpoints_get_addresses_round_the_subnet_and_the_mesh_gets_node_addresses() {
        let mut s = State::default();
        let node = |id: &str| NodeRec {
            id: id.into(),
            ..Default::default()
        };
        s.apply(
            1,
            Command::Init {
                cluster: Box::new(ClusterRec::default()),
                node: Box::new(node("n1")),
                ingress: Some(Box::new(crate::netalloc::ingress_network("now"))),
            },
        )
        .unwrap();
        let ing = s.ingress().unwrap().clone();
        assert_eq!(ing.driver_state.options[netalloc::VNI_OPTION], "4096");
        assert_eq!(
            subnet_of(&s, &ing.id),
            ("10.0.0.0/24".into(), "10.0.0.1".into())
        );
        assert_eq!(s.nodes["n1"].ingress_addr, "10.0.0.2");
        s.apply(
            2,
            Command::AddNode {
                node: Box::new(node("n2")),
            },
        )
        .unwrap();
        assert_eq!(s.nodes["n2"].ingress_addr, "10.0.0.3");
        s.apply(3, net("ov", "ov", Some("10.0.1.0/29"))).unwrap();

        let mut svc = ServiceRec {
            id: "s1".into(),
            ports: vec![api::PortConfig {
                publish_mode: "ingress".into(),
                target_port: 80,
                published_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        };
        svc.spec.name = "web".into();
        svc.spec.task_template.networks = vec![api::NetworkAttachmentConfig {
            target: "ov".into(),
            ..Default::default()
        }];
        s.apply(
            4,
            Command::CreateService {
                service: Box::new(svc),
            },
        )
        .unwrap();
        let vips = &s.services["s1"].vips;
        assert_eq!(vips["ov"], "10.0.1.2");
        assert_eq!(vips[&ing.id], "10.0.0.4");
        let template = s.services["s1"].spec.task_template.clone();
        let task = |id: &str| TaskRec {
            id: id.into(),
            service_id: "s1".into(),
            spec: template.clone(),
            desired_state: TaskState::Running,
            ..Default::default()
        };
        let (a, b) = (task("a"), task("b"));
        s.apply(
            5,
            Command::Tasks {
                put: vec![a, b],
                remove: vec![],
            },
        )
        .unwrap();
        assert_eq!(s.tasks["a"].addresses["ov"], "10.0.1.3");
        assert_eq!(s.tasks["b"].addresses["ov"], "10.0.1.4");
        assert_eq!(s.tasks["b"].addresses[&ing.id], "10.0.0.6");
        // A released address is not handed out again until the subnet has gone round
        // (.5 and .6 are free, then .3 again; .1 is the gateway, .2 the VIP).
        s.apply(
            6,
            Command::Tasks {
                put: vec![],
                remove: vec!["a".into()],
            },
        )
        .unwrap();
        let more: Vec<TaskRec> = ["c", "d", "e"].iter().map(|i| task(i)).collect();
        s.apply(
            7,
            Command::Tasks {
                put: more,
                remove: vec![],
            },
        )
        .unwrap();
        let got: Vec<&str> = ["c", "d", "e"]
            .iter()
            .map(|i| s.tasks[*i].addresses["ov"].as_str())
            .collect();
        assert_eq!(got, ["10.0.1.5", "10.0.1.6", "10.0.1.3"]);
        // Full: the next task gets none there.
        s.apply(
            8,
            Command::Tasks {
                put: vec![task("f")],
                remove: vec![],
            },
        )
        .unwrap();
        assert!(!s.tasks["f"].addresses.contains_key("ov"));
        // dnsrr services have no VIP; a second ingress network is refused; the ingress
        // network stays while a service publishes through it.
        let mut dns = ServiceRec {
            id: "s2".into(),
            ..Default::default()
        };
        dns.spec.name = "dns".into();
        dns.spec.endpoint_spec = Some(api::EndpointSpec {
            mode: "dnsrr".into(),
            ..Default::default()
        });
        s.apply(
            9,
            Command::CreateService {
                service: Box::new(dns),
            },
        )
        .unwrap();
        assert!(s.services["s2"].vips.is_empty());
        let mut second = crate::netalloc::ingress_network("now");
        second.spec.name = "mesh2".into();
        let err = s
            .apply(
                10,
                Command::CreateNetwork {
                    network: Box::new(second),
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("ingress network"), "{err}");
        let err = s
            .apply(11, Command::RemoveNetwork { id: ing.id.clone() })
            .unwrap_err();
        assert!(err.to_string().contains("depends on it"), "{err}");
    }

    #[test]
    fn networks_get_subnets_and_vxlan_ids_when_applied() {
        let mut s = swarm();
        s.apply(3, net("a", "st_default", None)).unwrap();
        s.apply(4, net("b", "mine", Some("10.0.1.0/24"))).unwrap();
        s.apply(5, net("c", "other", None)).unwrap();
        assert_eq!(
            subnet_of(&s, "a"),
            ("10.0.0.0/24".into(), "10.0.0.1".into())
        );
        assert_eq!(
            subnet_of(&s, "b"),
            ("10.0.1.0/24".into(), "10.0.1.1".into())
        );
        assert_eq!(
            subnet_of(&s, "c"),
            ("10.0.2.0/24".into(), "10.0.2.1".into())
        );
        let vni = |id: &str| s.networks[id].driver_state.options[netalloc::VNI_OPTION].clone();
        assert_eq!(
            (vni("a"), vni("b"), vni("c")),
            ("4097".into(), "4098".into(), "4099".into())
        );
        assert_eq!(s.networks["a"].version.index, 3);
        assert_eq!(
            s.networks["a"].ipam_options.as_ref().unwrap().driver.name,
            "default"
        );
        // Same name: Docker's conflict; an overlapping subnet: refused.
        let e = s.apply(6, net("d", "st_default", None)).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (409, "network with name st_default already exists")
        );
        let e = s.apply(7, net("e", "x", Some("10.0.0.0/16"))).unwrap_err();
        assert_eq!(e.status, 403);
        // A freed subnet and id are handed out again.
        s.apply(8, Command::RemoveNetwork { id: "a".into() })
            .unwrap();
        s.apply(9, net("f", "again", None)).unwrap();
        assert_eq!(subnet_of(&s, "f").0, "10.0.0.0/24");
        assert_eq!(
            s.networks["f"].driver_state.options[netalloc::VNI_OPTION],
            "4097"
        );
    }

    #[test]
    fn the_pool_from_init_is_used() {
        let mut s = swarm();
        if let Some(c) = s.cluster.as_mut() {
            c.default_addr_pool = vec!["172.30.0.0/16".into()];
            c.subnet_size = 26;
        }
        s.apply(2, net("a", "n1", None)).unwrap();
        s.apply(3, net("b", "n2", None)).unwrap();
        assert_eq!(
            subnet_of(&s, "b"),
            ("172.30.0.64/26".into(), "172.30.0.65".into())
        );
    }

    #[test]
    fn networks_in_use_are_not_removed() {
        let mut s = swarm();
        s.apply(2, net("nid", "st_default", None)).unwrap();
        let mut svc = ServiceRec {
            id: "svc".into(),
            ..Default::default()
        };
        svc.spec.name = "web".into();
        svc.spec.task_template.networks = vec![api::NetworkAttachmentConfig {
            target: "nid".into(),
            ..Default::default()
        }];
        s.apply(
            3,
            Command::CreateService {
                service: Box::new(svc.clone()),
            },
        )
        .unwrap();
        let e = s
            .apply(4, Command::RemoveNetwork { id: "nid".into() })
            .unwrap_err();
        assert_eq!(
            e.message,
            "rpc error: code = FailedPrecondition desc = network nid is in use by service svc"
        );
        // A task still running on it holds it too; one told to go does not.
        let task = TaskRec {
            id: "t1".into(),
            service_id: "svc".into(),
            spec: svc.spec.task_template.clone(),
            desired_state: TaskState::Running,
            status: api::TaskStatus {
                state: TaskState::Running,
                ..Default::default()
            },
            ..Default::default()
        };
        s.apply(
            5,
            Command::Tasks {
                put: vec![task],
                remove: vec![],
            },
        )
        .unwrap();
        s.services.remove("svc");
        let e = s
            .apply(6, Command::RemoveNetwork { id: "nid".into() })
            .unwrap_err();
        assert!(e.message.ends_with("is in use by task t1"), "{}", e.message);
        if let Some(t) = s.tasks.get_mut("t1") {
            t.desired_state = TaskState::Remove;
        }
        s.apply(7, Command::RemoveNetwork { id: "nid".into() })
            .unwrap();
        assert!(s.networks.is_empty());
        let e = s
            .apply(8, Command::RemoveNetwork { id: "nid".into() })
            .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (404, "network nid not found")
        );
    }

    #[test]
    fn networks_are_found_by_id_name_or_prefix() {
        let mut s = swarm();
        s.apply(2, net("abc1", "front", None)).unwrap();
        s.apply(3, net("abd2", "back", None)).unwrap();
        assert_eq!(s.find_network("abc1").unwrap().spec.name, "front");
        assert_eq!(s.find_network("back").unwrap().id, "abd2");
        assert_eq!(s.find_network("abc").unwrap().id, "abc1");
        assert_eq!(s.find_network("ab").unwrap_err().status, 400);
        assert_eq!(
            s.find_network("zz").unwrap_err().message,
            "network zz not found"
        );
    }
}
