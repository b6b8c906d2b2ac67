//! The control operations behind the Engine API's swarm routes, on a manager: validation and
//! defaults as swarmkit's control API applies them, then a proposal; reads from the
//! manager's replicated state.

use crate::error::{Error, Result, NOT_IN_SWARM};
use crate::ids::new_id;
use crate::manager::Manager;
use crate::raft::ProposeError;
use crate::store::{Command, ServiceRec, State};
use crate::view::{self, Filters, RaftView};
use berth_api::swarm as api;

/// swarmkit's floor for `--cert-expiry`.
pub fn check_cert_expiry(spec: &api::SwarmSpec) -> Result<()> {
    let n = spec.ca_config.node_cert_expiry;
    if n != 0 && n < 3_600_000_000_000 {
        return Err(Error::rpc_invalid(
            "minimum certificate expiry time is: 1h0m0s",
        ));
    }
    Ok(())
}

/// Whose logs a reader wants.
#[derive(Debug, Clone, Copy)]
pub enum LogSource<'a> {
    Service(&'a str),
    Task(&'a str),
}

/// Published ports without a number get one from this range (swarmkit's dynamic range).
const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;
/// Docker's size limits: secrets below 500 KiB, configs below 1000 KiB.
const MAX_SECRET: usize = 500 * 1024;
const MAX_CONFIG: usize = 1000 * 1024;

fn now() -> String {
    berth_api::timefmt::now()
}

/// A DNS label: what service, secret and config names must be.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.as_bytes()[n.len() - 1].is_ascii_alphanumeric()
}

/// A new secret's or config's name and size, as swarmkit checks them.
fn check_payload(kind: &str, name: &str, data: &[u8], max: usize) -> Result<()> {
    if !valid_name(name) {
        return Err(Error::rpc_invalid("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"));
    }
    if data.is_empty() || data.len() >= max {
        return Err(Error::rpc_invalid(format!(
            "{kind} data must be larger than 0 and less than {max} bytes"
        )));
    }
    Ok(())
}

/// Only labels of a secret or config may change.
fn labels_only(name: &str, data: &[u8], cur_name: &str, cur_data: &[u8]) -> Result<()> {
    if name != cur_name || (!data.is_empty() && data != cur_data) {
        return Err(Error::rpc_invalid("only updates to Labels are allowed"));
    }
    Ok(())
}

/// Checks a service spec and fills in swarmkit's defaults.
fn normalize(s: &State, mut spec: api::ServiceSpec, id: &str) -> Result<api::ServiceSpec> {
    if !valid_name(&spec.name) || spec.name.contains('.') {
        return Err(Error::rpc_invalid(
            "name must be valid as a DNS name component",
        ));
    }
    let cs = spec
        .task_template
        .container_spec
        .as_mut()
        .ok_or_else(|| Error::rpc_invalid("ContainerSpec: missing in service spec"))?;
    if cs.image.trim().is_empty() {
        return Err(Error::rpc_invalid(
            "ContainerSpec: image reference must be provided",
        ));
    }
    for r in cs.secrets.iter_mut() {
        let sec = s
            .secrets
            .get(&r.secret_id)
            .or_else(|| s.secrets.values().find(|x| x.spec.name == r.secret_name))
            .ok_or_else(|| {
                Error::rpc_invalid(format!(
                    "secret not found: {}",
                    if r.secret_id.is_empty() {
                        &r.secret_name
                    } else {
                        &r.secret_id
                    }
                ))
            })?;
        r.secret_id = sec.id.clone();
        r.secret_name = sec.spec.name.clone();
    }
    for r in cs.configs.iter_mut() {
        let c = s
            .configs
            .get(&r.config_id)
            .or_else(|| s.configs.values().find(|x| x.spec.name == r.config_name))
            .ok_or_else(|| {
                Error::rpc_invalid(format!(
                    "config not found: {}",
                    if r.config_id.is_empty() {
                        &r.config_name
                    } else {
                        &r.config_id
                    }
                ))
            })?;
        r.config_id = c.id.clone();
        r.config_name = c.spec.name.clone();
    }
    let m = &mut spec.mode;
    let set = [
        m.replicated.is_some(),
        m.global.is_some(),
        m.replicated_job.is_some(),
        m.global_job.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set > 1 {
        return Err(Error::rpc_invalid("only one service mode may be set"));
    }
    if set == 0 {
        m.replicated = Some(api::ReplicatedService { replicas: Some(1) });
    }
    if let Some(r) = m.replicated.as_mut() {
        r.replicas.get_or_insert(1);
    }
    if let Some(j) = m.replicated_job.as_mut() {
        j.max_concurrent.get_or_insert(1);
        j.total_completions
            .get_or_insert(j.max_concurrent.unwrap_or(1));
    }
    if let Some(ep) = spec.endpoint_spec.as_mut() {
        if !ep.mode.is_empty() && ep.mode != "vip" && ep.mode != "dnsrr" {
            return Err(Error::rpc_invalid(format!(
                "invalid resolution mode: {}",
                ep.mode
            )));
        }
        let mut seen: Vec<(u32, String)> = Vec::new();
        for p in ep.ports.iter_mut() {
            if p.protocol.is_empty() {
                p.protocol = "tcp".to_string();
            }
            if p.publish_mode.is_empty() {
                p.publish_mode = "ingress".to_string();
            }
            if !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp") {
                return Err(Error::rpc_invalid(format!(
                    "invalid protocol: {}",
                    p.protocol
                )));
            }
            if p.target_port == 0 || p.target_port > 65535 || p.published_port > 65535 {
                return Err(Error::rpc_invalid("invalid port: ports must be in 1-65535"));
            }
            if p.published_port != 0 {
                let key = (p.published_port, p.protocol.clone());
                if seen.contains(&key) {
                    return Err(Error::rpc_invalid(format!(
                        "duplicate published ports provided: {}",
                        p.published_port
                    )));
                }
                seen.push(key);
                if p.publish_mode == "ingress" {
                    if let Some(other) = s.services.values().find(|o| {
                        o.id != id
                            && o.ports.iter().any(|q| {
                                q.publish_mode == "ingress"
                                    && q.published_port == p.published_port
                                    && q.protocol == p.protocol
                            })
                    }) {
                        return Err(Error::rpc_invalid(format!(
                            "port '{}' is already in use by service '{}' ({}) as an ingress port",
                            p.published_port, other.spec.name, other.id
                        )));
                    }
                }
            }
        }
    }
    Ok(spec)
}

/// The endpoint's ports: the spec's, with numbers allocated for ingress ports without one
/// (keeping a number this service already had).
fn allocate_ports(
    s: &State,
    spec: &api::ServiceSpec,
    prev: &[api::PortConfig],
    id: &str,
) -> Vec<api::PortConfig> {
    let mut used: Vec<(u32, String)> = s
        .services
        .values()
        .filter(|o| o.id != id)
        .flat_map(|o| {
            o.ports
                .iter()
                .map(|p| (p.published_port, p.protocol.clone()))
        })
        .collect();
    let mut out = Vec::new();
    for p in spec.endpoint_spec.iter().flat_map(|e| e.ports.iter()) {
        let mut p = p.clone();
        if p.published_port == 0 && p.publish_mode == "ingress" {
            let kept = prev.iter().find(|q| {
                q.target_port == p.target_port
                    && q.protocol == p.protocol
                    && q.publish_mode == "ingress"
            });
            p.published_port = match kept {
                Some(q) => q.published_port,
                None => DYNAMIC_PORTS
                    .clone()
                    .find(|n| !used.contains(&(*n, p.protocol.clone())))
                    .unwrap_or(0),
            };
        }
        used.push((p.published_port, p.protocol.clone()));
        out.push(p);
    }
    out
}

impl Manager {
    fn cluster_ready(&self) -> Result<()> {
        if self.read(|s| s.cluster.is_none()) {
            return Err(Error::unavailable(NOT_IN_SWARM));
        }
        Ok(())
    }

    fn raft_view(&self) -> RaftView {
        let st = self.raft.status();
        RaftView {
            leader: st.leader,
            active: st.active,
        }
    }

    /// `POST /services/create`.
    pub async fn create_service(&self, spec: api::ServiceSpec) -> Result<String> {
        self.cluster_ready()?;
        let id = new_id();
        let (spec, ports) = self.read(|s| {
            let spec = normalize(s, spec, &id)?;
            let ports = allocate_ports(s, &spec, &[], &id);
            Ok::<_, Error>((spec, ports))
        })?;
        let t = now();
        let svc = ServiceRec {
            id: id.clone(),
            version: 0,
            created_at: t.clone(),
            updated_at: t,
            spec,
            previous_spec: None,
            spec_version: 0,
            update_status: None,
            ports,
            job_iteration: 0,
        };
        self.propose(Command::CreateService {
            service: Box::new(svc),
        })
        .await?;
        Ok(id)
    }

    /// `POST /services/{id}/update` (`rollback=previous` rolls back to the previous spec).
    pub async fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: api::ServiceSpec,
        rollback: bool,
    ) -> Result<()> {
        let (id, spec, ports) = self.read(|s| {
            let cur = s.find_service(key)?;
            let spec = if rollback {
                cur.previous_spec.clone().ok_or_else(|| {
                    Error::new(400, "rpc error: code = FailedPrecondition desc = service does not have a previous spec")
                })?
            } else {
                normalize(s, spec, &cur.id)?
            };
            let kind = |m: &api::ServiceMode| {
                (
                    m.replicated.is_some(),
                    m.global.is_some(),
                    m.replicated_job.is_some(),
                    m.global_job.is_some(),
                )
            };
            if kind(&spec.mode) != kind(&cur.spec.mode) {
                return Err(Error::new(
                    501,
                    "rpc error: code = Unimplemented desc = service mode change is not allowed",
                ));
            }
            let ports = allocate_ports(s, &spec, &cur.ports, &cur.id);
            Ok::<_, Error>((cur.id.clone(), spec, ports))
        })?;
        self.propose(Command::UpdateService {
            id,
            version,
            spec: Box::new(spec),
            ports,
            rollback,
            now: now(),
        })
        .await?;
        Ok(())
    }

    /// `DELETE /services/{id}`.
    pub async fn remove_service(&self, key: &str) -> Result<()> {
        let id = self.read(|s| s.find_service(key).map(|x| x.id.clone()))?;
        self.propose(Command::RemoveService { id })
            .await
            .map(|_| ())
    }

    /// `GET /services`.
    pub fn services(&self, f: &Filters, status: bool) -> Result<Vec<api::Service>> {
        view::check_filters(f, &["id", "label", "mode", "name"])?;
        Ok(self.read(|s| {
            s.services
                .values()
                .filter(|x| view::service_matches(x, f))
                .map(|x| view::service(s, x, status))
                .collect()
        }))
    }

    /// `POST /services/{id}/rebalance` (berth's extension): moves running tasks from the most
    /// loaded nodes until the service is spread evenly; returns how many moved.
    pub async fn rebalance_service(&self, key: &str) -> Result<usize> {
        let put = self.read(|s| {
            let svc = s.find_service(key)?;
            crate::orchestrator::rebalance(s, svc, std::time::SystemTime::now())
                .map_err(Error::invalid)
        })?;
        let moved = put.len() / 2;
        if !put.is_empty() {
            self.propose(Command::Tasks {
                put,
                remove: Vec::new(),
            })
            .await?;
        }
        Ok(moved)
    }

    /// `GET /services/{id}`.
    pub fn service(&self, key: &str) -> Result<api::Service> {
        self.read(|s| s.find_service(key).map(|x| view::service(s, x, false)))
    }

    /// `GET /tasks`.
    pub fn tasks(&self, f: &Filters) -> Result<Vec<api::Task>> {
        view::check_filters(
            f,
            &[
                "_up-to-date",
                "desired-state",
                "id",
                "label",
                "name",
                "node",
                "service",
            ],
        )?;
        Ok(self.read(|s| {
            s.tasks
                .values()
                .filter(|t| view::task_matches(s, t, f))
                .map(|t| view::task(s, t))
                .collect()
        }))
    }

    /// `GET /tasks/{id}`.
    pub fn task(&self, key: &str) -> Result<api::Task> {
        self.read(|s| s.find_task(key).map(|t| view::task(s, t)))
    }

    /// What `GET /services/{id}/logs` (a service) or `GET /tasks/{id}/logs` reads: the
    /// tasks placed on a node that is not down, as (task id, node id), and whether their
    /// containers have a TTY (the answer is then a raw stream).
    pub fn log_targets(&self, key: LogSource<'_>) -> Result<(Vec<(String, String)>, bool)> {
        self.read(|s| {
            let (tasks, tty): (Vec<&crate::store::TaskRec>, bool) = match key {
                LogSource::Service(k) => {
                    let svc = s.find_service(k)?;
                    let tasks = s
                        .tasks
                        .values()
                        .filter(|t| t.service_id == svc.id)
                        .collect();
                    let tty = svc
                        .spec
                        .task_template
                        .container_spec
                        .as_ref()
                        .is_some_and(|c| c.tty);
                    (tasks, tty)
                }
                LogSource::Task(k) => {
                    let t = s.find_task(k)?;
                    let tty = t.spec.container_spec.as_ref().is_some_and(|c| c.tty);
                    (vec![t], tty)
                }
            };
            let up = |node: &str| {
                s.nodes
                    .get(node)
                    .is_some_and(|n| n.state != api::NodeState::Down)
            };
            let targets = tasks
                .into_iter()
                .filter(|t| !t.node_id.is_empty() && up(&t.node_id))
                .map(|t| (t.id.clone(), t.node_id.clone()))
                .collect();
            Ok((targets, tty))
        })
    }

    /// `GET /nodes`.
    pub fn nodes(&self, f: &Filters) -> Result<Vec<api::Node>> {
        view::check_filters(
            f,
            &["id", "label", "membership", "name", "node.label", "role"],
        )?;
        let rv = self.raft_view();
        Ok(self.read(|s| {
            s.nodes
                .values()
                .filter(|n| view::node_matches(n, f))
                .map(|n| view::node(n, &rv))
                .collect()
        }))
    }

    /// `GET /nodes/{id}`.
    pub fn node(&self, key: &str) -> Result<api::Node> {
        let rv = self.raft_view();
        self.read(|s| s.find_node(key).map(|n| view::node(n, &rv)))
    }

    /// `POST /nodes/{id}/update`: labels, availability, and the role (promote, demote).
    pub async fn update_node(&self, key: &str, version: u64, spec: api::NodeSpec) -> Result<()> {
        let (id, cur) = self.read(|s| s.find_node(key).map(|n| (n.id.clone(), n.clone())))?;
        if !matches!(
            spec.availability.as_str(),
            "" | "active" | "pause" | "drain"
        ) {
            return Err(Error::rpc_invalid(format!(
                "invalid availability: {}",
                spec.availability
            )));
        }
        if !matches!(spec.role.as_str(), "" | "worker" | "manager") {
            return Err(Error::rpc_invalid(format!("invalid role: {}", spec.role)));
        }
        let mut spec = spec;
        if spec.role.is_empty() {
            spec.role = cur.spec.role.clone();
        }
        if spec.availability.is_empty() {
            spec.availability = cur.spec.availability.clone();
        }
        if cur.version != version {
            return Err(Error::new(
                500,
                "rpc error: code = Unknown desc = update out of sequence",
            ));
        }
        let promote = spec.role == "manager" && cur.spec.role != "manager";
        let demote = spec.role == "worker" && cur.spec.role == "manager";
        if demote {
            let managers = self.read(|s| s.nodes.values().filter(|n| n.raft_id != 0).count());
            if managers <= 1 {
                return Err(Error::new(
                    400,
                    "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm",
                ));
            }
        }
        if promote && cur.state != api::NodeState::Ready {
            // A voter that never comes up would cost the swarm its quorum.
            return Err(Error::new(
                400,
                format!("rpc error: code = FailedPrecondition desc = node {id} is not ready and cannot be promoted"),
            ));
        }
        if promote {
            // The node's Raft id and address are recorded before its role changes (its agent
            // then finds both), and it becomes a voter last: from then on nothing commits
            // until its member runs.
            let raft_id = crate::ids::new_raft_id();
            let addr = cur.advertise_addr.clone();
            if addr.is_empty() {
                return Err(Error::rpc_invalid(
                    "the node has no advertised address to be reached at as a manager",
                ));
            }
            self.propose(Command::SetManager {
                id: id.clone(),
                raft_id,
                addr: addr.clone(),
                spec: Some(Box::new(spec)),
                now: now(),
            })
            .await?;
            self.raft
                .add_voter(raft_id, addr)
                .await
                .map_err(propose_err)?;
            return Ok(());
        }
        self.propose(Command::UpdateNode {
            id: id.clone(),
            version,
            spec,
            now: now(),
        })
        .await?;
        if demote && cur.raft_id != 0 {
            // The role change is recorded first (this manager may be the one leaving), then
            // the member leaves the Raft group (a leader removing itself steps down once the
            // change applies), then the record forgets its Raft id — by this manager if it
            // is still one, else by the leader's membership upkeep.
            self.raft
                .remove_member(cur.raft_id)
                .await
                .map_err(propose_err)?;
            let _ = self
                .propose(Command::SetManager {
                    id: id.clone(),
                    raft_id: 0,
                    addr: String::new(),
                    spec: None,
                    now: now(),
                })
                .await;
        }
        Ok(())
    }

    /// `DELETE /nodes/{id}`.
    pub async fn remove_node(&self, key: &str, force: bool) -> Result<()> {
        let id = self.read(|s| s.find_node(key).map(|n| n.id.clone()))?;
        self.propose(Command::RemoveNode { id, force })
            .await
            .map(|_| ())
    }

    /// `POST /secrets/create`.
    pub async fn create_secret(&self, spec: api::SecretSpec) -> Result<String> {
        self.cluster_ready()?;
        check_payload("secret", &spec.name, &spec.data, MAX_SECRET)?;
        let id = new_id();
        let t = now();
        self.propose(Command::CreateSecret {
            secret: Box::new(api::Secret {
                id: id.clone(),
                version: api::ObjectVersion::default(),
                created_at: t.clone(),
                updated_at: t,
                spec,
            }),
        })
        .await?;
        Ok(id)
    }

    pub fn secrets(&self, f: &Filters) -> Result<Vec<api::Secret>> {
        view::check_filters(f, &["id", "label", "name", "names"])?;
        Ok(self.read(|s| {
            s.secrets
                .values()
                .filter(|x| view::secret_matches(x, f))
                .map(view::secret)
                .collect()
        }))
    }

    pub fn secret(&self, key: &str) -> Result<api::Secret> {
        self.read(|s| s.find_secret(key).map(view::secret))
    }

    /// `POST /secrets/{id}/update`: only labels may change.
    pub async fn update_secret(
        &self,
        key: &str,
        version: u64,
        spec: api::SecretSpec,
    ) -> Result<()> {
        let (id, cur) =
            self.read(|s| s.find_secret(key).map(|x| (x.id.clone(), x.spec.clone())))?;
        labels_only(&spec.name, &spec.data, &cur.name, &cur.data)?;
        self.propose(Command::UpdateSecret {
            id,
            version,
            labels: spec.labels,
            now: now(),
        })
        .await
        .map(|_| ())
    }

    pub async fn remove_secret(&self, key: &str) -> Result<()> {
        let id = self.read(|s| s.find_secret(key).map(|x| x.id.clone()))?;
        self.propose(Command::RemoveSecret { id }).await.map(|_| ())
    }

    /// `POST /configs/create`.
    pub async fn create_config(&self, spec: api::ConfigSpec) -> Result<String> {
        self.cluster_ready()?;
        check_payload("config", &spec.name, &spec.data, MAX_CONFIG)?;
        let id = new_id();
        let t = now();
        self.propose(Command::CreateConfig {
            config: Box::new(api::Config {
                id: id.clone(),
                version: api::ObjectVersion::default(),
                created_at: t.clone(),
                updated_at: t,
                spec,
            }),
        })
        .await?;
        Ok(id)
    }

    pub fn configs(&self, f: &Filters) -> Result<Vec<api::Config>> {
        view::check_filters(f, &["id", "label", "name", "names"])?;
        Ok(self.read(|s| {
            s.configs
                .values()
                .filter(|x| view::config_matches(x, f))
                .cloned()
                .collect()
        }))
    }

    pub fn config(&self, key: &str) -> Result<api::Config> {
        self.read(|s| s.find_config(key).cloned())
    }

    pub async fn update_config(
        &self,
        key: &str,
        version: u64,
        spec: api::ConfigSpec,
    ) -> Result<()> {
        let (id, cur) =
            self.read(|s| s.find_config(key).map(|x| (x.id.clone(), x.spec.clone())))?;
        labels_only(&spec.name, &spec.data, &cur.name, &cur.data)?;
        self.propose(Command::UpdateConfig {
            id,
            version,
            labels: spec.labels,
            now: now(),
        })
        .await
        .map(|_| ())
    }

    pub async fn remove_config(&self, key: &str) -> Result<()> {
        let id = self.read(|s| s.find_config(key).map(|x| x.id.clone()))?;
        self.propose(Command::RemoveConfig { id }).await.map(|_| ())
    }

    /// `GET /swarm`.
    pub fn swarm(&self) -> Result<api::Swarm> {
        self.read(|s| {
            let c = s
                .cluster
                .as_ref()
                .ok_or_else(|| Error::unavailable(NOT_IN_SWARM))?;
            let root = crate::ca::RootCa::from_pem(&c.root_ca_cert, None)
                .map_err(|e| Error::internal(e.to_string()))?;
            Ok(view::swarm(
                c,
                crate::token::token_string(&root, &c.worker_secret),
                crate::token::token_string(&root, &c.manager_secret),
            ))
        })
    }

    /// `POST /swarm/update`.
    pub async fn update_swarm(
        &self,
        version: u64,
        spec: api::SwarmSpec,
        rotate_worker: bool,
        rotate_manager: bool,
        rotate_unlock_key: bool,
    ) -> Result<()> {
        check_cert_expiry(&spec)?;
        let secret = crate::token::new_secret;
        // Autolock turned on (or its key rotated) gets a new unlock key; turned off, none.
        let current = self.read(|s| {
            s.cluster
                .as_ref()
                .map(|c| c.unlock_key.clone())
                .unwrap_or_default()
        });
        let unlock_key = match (
            spec.encryption_config.auto_lock_managers,
            current.is_empty(),
        ) {
            (true, true) => Some(crate::autolock::new_key()),
            (true, false) if rotate_unlock_key => Some(crate::autolock::new_key()),
            (false, false) => Some(String::new()),
            _ => None,
        };
        self.propose(Command::UpdateCluster {
            version,
            spec: Box::new(spec),
            worker_secret: rotate_worker.then(secret),
            manager_secret: rotate_manager.then(secret),
            unlock_key,
            now: now(),
        })
        .await
        .map(|_| ())
    }

    /// `GET /swarm/unlockkey`: the unlock key ("" without autolock).
    pub fn unlock_key(&self) -> Result<String> {
        self.read(|s| {
            s.cluster
                .as_ref()
                .map(|c| c.unlock_key.clone())
                .ok_or_else(|| Error::unavailable(NOT_IN_SWARM))
        })
    }

    /// The managers as `/info`'s RemoteManagers lists them.
    pub fn remote_managers(&self) -> Vec<api::PeerNode> {
        self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.raft_id != 0)
                .map(|n| api::PeerNode {
                    node_id: n.id.clone(),
                    addr: n.manager_addr.clone(),
                })
                .collect()
        })
    }

    /// The figures of `/info`'s Swarm section a manager adds.
    pub fn counts(&self) -> (i64, i64, Option<api::ClusterInfo>) {
        self.read(|s| {
            let nodes = s.nodes.len() as i64;
            let managers = s.nodes.values().filter(|n| n.raft_id != 0).count() as i64;
            let cluster = s
                .cluster
                .as_ref()
                .map(|c| view::swarm(c, String::new(), String::new()).cluster);
            (nodes, managers, cluster)
        })
    }
}

fn propose_err(e: ProposeError) -> Error {
    match e {
        ProposeError::NoLeader | ProposeError::Timeout => Error::no_leader(),
        e => Error::internal(e.to_string()),
    }
}
