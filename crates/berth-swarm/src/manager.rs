//! A manager: its Raft member holding the replicated state (every manager applies every
//! command), proposals with Docker's errors, and — while it leads — the dispatcher (agent
//! sessions, liveness verdicts) and the orchestration loop.

use crate::error::{Error, Result};
use crate::orchestrator;
use crate::proto::{Payload, SessionRequest, SessionResponse};
use crate::raft::{self, Bootstrap, ProposeError, RaftHandle, StateMachine, Transport};
use crate::store::{Command, State};
use crate::view;
use berth_api::swarm::NodeState;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// berth's default dispatcher heartbeat period (Docker's is 5 s); a node is declared down
/// after three periods and a second of silence, so a 2 s stall is no verdict.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// The state machine the Raft member applies: the shared state.
struct Machine {
    state: Arc<RwLock<State>>,
}

impl StateMachine for Machine {
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        let res: Result<Value> = match serde_json::from_slice::<Command>(data) {
            Ok(cmd) => {
                let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
                s.apply(index, cmd)
            }
            Err(e) => Err(Error::internal(format!("undecodable swarm command: {e}"))),
        };
        serde_json::to_vec(&res).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        serde_json::to_vec(&*s).unwrap_or_default()
    }

    fn restore(&mut self, data: &[u8]) -> std::result::Result<(), String> {
        let st: State = if data.is_empty() {
            State::default()
        } else {
            serde_json::from_slice(data).map_err(|e| format!("swarm state snapshot: {e}"))?
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = st;
        Ok(())
    }
}

/// How long a proposal waits for a leader to be elected before Docker's no-leader error.
const LEADER_WAIT: Duration = Duration::from_secs(3);

pub struct Manager {
    pub node_id: String,
    pub raft: RaftHandle,
    state: Arc<RwLock<State>>,
    /// Leader only: when each node's agent last called.
    sessions: Mutex<HashMap<String, Instant>>,
    /// Leader only: since when this member leads (nodes get a grace period from then).
    leading_since: Mutex<Option<Instant>>,
    /// Leader only: log subscriptions and the pieces nodes publish for them.
    pub logs: crate::logbroker::Broker,
}

impl Manager {
    pub fn start<T: Transport>(
        node_id: String,
        cfg: raft::Config,
        transport: Arc<T>,
        boot: Bootstrap,
    ) -> Result<Arc<Manager>> {
        let state = Arc::new(RwLock::new(State::default()));
        let machine = Machine {
            state: state.clone(),
        };
        let raft = RaftHandle::start(cfg, machine, transport, boot)
            .map_err(|e| Error::internal(format!("starting the swarm's raft member: {e}")))?;
        Ok(Arc::new(Manager {
            node_id,
            raft,
            state,
            sessions: Mutex::new(HashMap::new()),
            leading_since: Mutex::new(None),
            logs: Default::default(),
        }))
    }

    /// Reads the replicated state as this manager has applied it.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&s)
    }

    pub fn is_leader(&self) -> bool {
        let st = self.raft.status();
        st.leader != 0 && st.leader == st.id
    }

    /// The swarm address of the current leader, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        let st = self.raft.status();
        if st.leader == 0 {
            return None;
        }
        st.members
            .iter()
            .find(|(id, _)| *id == st.leader)
            .map(|(_, a)| a.clone())
    }

    /// Proposes a command and waits until this manager has applied it.
    pub async fn propose(&self, cmd: Command) -> Result<Value> {
        let data = serde_json::to_vec(&cmd)
            .map_err(|e| Error::internal(format!("encoding a swarm command: {e}")))?;
        // During an election no member knows a leader: the proposal was not taken, so it can
        // wait for the election's outcome (a few election timeouts) before it is refused.
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let answer = loop {
            match self.raft.propose(data.clone()).await {
                Err(ProposeError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answer => break answer,
            }
        };
        match answer {
            Ok(out) => serde_json::from_slice::<Result<Value>>(&out)
                .map_err(|e| Error::internal(format!("decoding a swarm result: {e}")))?,
            Err(ProposeError::NoLeader | ProposeError::Timeout) => Err(Error::no_leader()),
            Err(ProposeError::Stopped | ProposeError::Removed) => {
                Err(Error::unavailable(crate::error::NOT_MANAGER))
            }
            Err(ProposeError::Rejected(m)) => Err(Error::internal(m)),
        }
    }

    /// Fails with the leader's address (421) unless this member leads.
    pub fn ensure_leader(&self) -> Result<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(not_leader(self.leader_addr()))
        }
    }

    /// The dispatcher's heartbeat period as the cluster spec sets it.
    pub fn heartbeat(&self) -> Duration {
        self.read(|s| {
            s.cluster
                .as_ref()
                .map(|c| c.spec.dispatcher.heartbeat_period)
                .filter(|n| *n > 0)
                .map(|n| Duration::from_nanos(n as u64))
                .unwrap_or(DEFAULT_HEARTBEAT)
        })
    }

    /// One call of an agent's session (leader only): the heartbeat, the node's task states,
    /// and its assignments once they differ from what it holds (long poll).
    pub async fn session(
        &self,
        node_id: &str,
        addr: &str,
        req: SessionRequest,
    ) -> Result<SessionResponse> {
        if !self.is_leader() {
            return Err(not_leader(self.leader_addr()));
        }
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_id.to_string(), Instant::now());
        let (known, ready, same_addr) = self.read(|s| match s.nodes.get(node_id) {
            Some(n) => (true, n.state == NodeState::Ready, n.addr == addr),
            None => (false, false, false),
        });
        if !known {
            return Err(Error::new(
                403,
                format!("node {node_id} is not a member of this swarm"),
            ));
        }
        if !ready || !same_addr || req.description.is_some() {
            self.propose(Command::NodeStatus {
                id: node_id.to_string(),
                state: NodeState::Ready,
                message: String::new(),
                addr: addr.to_string(),
                description: req.description.clone().map(Box::new),
                now: berth_api::timefmt::now(),
            })
            .await?;
        }
        if let Some(present) = &req.attachments {
            // Attachments whose containers are gone from the node (given time to be made).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let gone: Vec<String> = self.read(|s| {
                s.attachments
                    .values()
                    .filter(|a| a.node_id == node_id && !present.contains(&a.id))
                    .filter(|a| a.created_unix + ATTACH_GRACE_SECS < now)
                    .map(|a| a.id.clone())
                    .collect()
            });
            if !gone.is_empty() {
                self.propose(Command::Detach { ids: gone }).await?;
            }
        }
        if !req.statuses.is_empty() {
            self.propose(Command::TaskStatus {
                node: node_id.to_string(),
                updates: req.statuses.clone(),
            })
            .await?;
        }
        let heartbeat = self.heartbeat();
        let wait = Duration::from_millis(req.wait_ms).min(heartbeat);
        let deadline = tokio::time::Instant::now() + wait;
        let mut applied = self.raft.applied();
        let mut log_changes = self.logs.changes();
        loop {
            let mut resp = self.read(|s| assignments(s, node_id, heartbeat));
            resp.logs = self.logs.for_node(node_id);
            let logs_differ = resp.logs.len() != req.log_subs.len()
                || resp.logs.iter().any(|l| !req.log_subs.contains(&l.id));
            if resp.digest != req.known || logs_differ || wait.is_zero() {
                return Ok(resp);
            }
            tokio::select! {
                r = applied.changed() => {
                    if r.is_err() {
                        return Ok(unchanged(resp));
                    }
                }
                _ = log_changes.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(unchanged(resp)),
            }
            if !self.is_leader() {
                return Err(not_leader(self.leader_addr()));
            }
        }
    }

    /// A plain container on `node_id` joins an attachable network (leader only): its address
    /// there, handed out as the entry applies.
    pub async fn attach(
        &self,
        node_id: &str,
        req: crate::proto::AttachRequest,
    ) -> Result<crate::proto::AttachResponse> {
        self.ensure_leader()?;
        let network = self.read(|s| s.find_network(&req.network).cloned())?;
        let id = crate::ids::new_id();
        let created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let addr = self
            .propose(Command::Attach {
                attachment: Box::new(crate::store::AttachmentRec {
                    id: id.clone(),
                    node_id: node_id.to_string(),
                    network_id: network.id.clone(),
                    container: req.container,
                    addr: String::new(),
                    created_unix,
                }),
            })
            .await?;
        Ok(crate::proto::AttachResponse {
            id,
            network,
            address: addr.as_str().unwrap_or_default().to_string(),
        })
    }

    /// A worker that left the swarm (`swarm leave`): it is down now, not after the heartbeat
    /// timeout, so nothing more is scheduled onto it in between (leader only).
    pub async fn node_left(&self, node_id: &str) -> Result<()> {
        self.ensure_leader()?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node_id);
        self.propose(Command::NodeStatus {
            id: node_id.to_string(),
            state: NodeState::Down,
            message: "node left the swarm".to_string(),
            addr: String::new(),
            description: None,
            now: berth_api::timefmt::now(),
        })
        .await?;
        // Its plain containers were disconnected from the swarm networks as it left.
        let gone: Vec<String> = self.read(|s| {
            s.attachments
                .values()
                .filter(|a| a.node_id == node_id)
                .map(|a| a.id.clone())
                .collect()
        });
        if !gone.is_empty() {
            self.propose(Command::Detach { ids: gone }).await?;
        }
        Ok(())
    }

    /// The leader's loop: liveness verdicts and orchestration passes, while this member leads.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut applied = self.raft.applied();
        let mut mem = orchestrator::Memory::default();
        loop {
            tokio::select! {
                _ = applied.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if !self.is_leader() {
                *self.leading_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                mem = orchestrator::Memory::default();
                self.logs.clear();
                continue;
            }
            self.logs.sweep();
            let since = *self
                .leading_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Instant::now);
            self.liveness(since).await;
            self.membership_upkeep().await;
            self.network_key_upkeep().await;
            let cmds = self.read(|s| orchestrator::pass(s, &mut mem, SystemTime::now()));
            for c in cmds {
                if let Err(e) = self.propose(c).await {
                    tracing::debug!("swarm orchestrator: {e}");
                    break;
                }
            }
        }
    }

    /// Marks nodes whose agent went silent as down (three heartbeat periods and a second).
    async fn liveness(&self, since: Instant) {
        let grace = self.heartbeat() * 3 + Duration::from_secs(1);
        let now = Instant::now();
        let silent: Vec<String> = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            self.read(|s| {
                s.nodes
                    .values()
                    .filter(|n| n.state != NodeState::Down)
                    .filter(|n| {
                        let last = sessions.get(&n.id).copied().unwrap_or(since).max(since);
                        now.duration_since(last) > grace
                    })
                    .map(|n| n.id.clone())
                    .collect()
            })
        };
        for id in silent {
            let _ = self
                .propose(Command::NodeStatus {
                    id,
                    state: NodeState::Down,
                    message: "heartbeat failure".to_string(),
                    addr: String::new(),
                    description: None,
                    now: berth_api::timefmt::now(),
                })
                .await;
        }
    }

    /// Nodes whose record still names a Raft id that is no longer a member (a demotion whose
    /// leaving manager could not finish it) lose it.
    async fn membership_upkeep(&self) {
        let members: Vec<u64> = self
            .raft
            .status()
            .members
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let stale: Vec<String> = self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.raft_id != 0 && n.spec.role == "worker")
                .filter(|n| !members.contains(&n.raft_id))
                .map(|n| n.id.clone())
                .collect()
        });
        for id in stale {
            let _ = self
                .propose(Command::SetManager {
                    id,
                    raft_id: 0,
                    addr: String::new(),
                    spec: None,
                    now: berth_api::timefmt::now(),
                })
                .await;
        }
    }

    /// Makes the first network encryption key when an encrypted network needs one, and a
    /// new primary every 12 hours (the oldest beyond three is pruned as it applies).
    async fn network_key_upkeep(&self) {
        let now = unix_now();
        let due = self.read(|s| {
            s.network_key_due(now)
                .then(|| s.network_keys.last().map_or(0, |k| k.tag))
        });
        if let Some(after) = due {
            if let Err(e) = self.propose(new_network_key(after, now)).await {
                tracing::debug!("swarm network keys: {e}");
            }
        }
    }

    /// Makes sure the cluster has a network encryption key (before an encrypted network is
    /// made, so that its nodes get keys with it).
    pub(crate) async fn ensure_network_key(&self) -> Result<()> {
        if self.read(|s| !s.network_keys.is_empty()) {
            return Ok(());
        }
        match self.propose(new_network_key(0, unix_now())).await {
            // Another proposal made the first key meanwhile.
            Err(_) if self.read(|s| !s.network_keys.is_empty()) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    pub async fn stop(&self) {
        self.raft.stop().await;
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A proposal of a new random network encryption key as the primary after the key tagged
/// `after` (0: the first).
fn new_network_key(after: u32, now_unix: u64) -> Command {
    Command::RotateNetworkKey {
        key: Box::new(crate::proto::NetworkKey {
            tag: 0,
            key: crate::ids::random_bytes(),
            salt: crate::ids::random_bytes(),
            created_unix: now_unix,
        }),
        after,
    }
}

/// A follower's answer to an agent: where the leader is.
/// How long a new attachment may be missing from its node's reports (its container is still
/// being made) before it is taken for gone.
const ATTACH_GRACE_SECS: u64 = 10;

fn not_leader(leader: Option<String>) -> Error {
    Error::new(
        421,
        format!("not the leader; leader: {}", leader.unwrap_or_default()),
    )
}

fn unchanged(mut r: SessionResponse) -> SessionResponse {
    r.unchanged = true;
    r.tasks.clear();
    r.services.clear();
    r.ports.clear();
    r.secrets.clear();
    r.configs.clear();
    r.networks.clear();
    r
}

/// The node's assignments: its tasks (until they are reaped), the services' names and ports,
/// and the secrets and configs its running tasks use.
pub fn assignments(s: &State, node_id: &str, heartbeat: Duration) -> SessionResponse {
    let tasks: Vec<_> = s
        .tasks
        .values()
        .filter(|t| t.node_id == node_id)
        .map(|t| view::task(s, t))
        .collect();
    let mut services: Vec<(String, String)> = Vec::new();
    let mut ports = Vec::new();
    let mut secrets: Vec<Payload> = Vec::new();
    let mut configs: Vec<Payload> = Vec::new();
    for t in &tasks {
        if !services.iter().any(|(id, _)| *id == t.service_id) {
            if let Some(svc) = s.services.get(&t.service_id) {
                services.push((svc.id.clone(), svc.spec.name.clone()));
                ports.push((svc.id.clone(), svc.ports.clone()));
            }
        }
        if let Some(cs) = &t.spec.container_spec {
            for r in &cs.secrets {
                if secrets.iter().any(|p| p.id == r.secret_id) {
                    continue;
                }
                if let Some(sec) = s.secrets.get(&r.secret_id) {
                    secrets.push(Payload {
                        id: sec.id.clone(),
                        name: sec.spec.name.clone(),
                        data: sec.spec.data.clone(),
                    });
                }
            }
            for r in &cs.configs {
                if configs.iter().any(|p| p.id == r.config_id) {
                    continue;
                }
                if let Some(c) = s.configs.get(&r.config_id) {
                    configs.push(Payload {
                        id: c.id.clone(),
                        name: c.spec.name.clone(),
                        data: c.spec.data.clone(),
                    });
                }
            }
        }
    }
    let managers: Vec<String> = s
        .nodes
        .values()
        .filter(|n| n.raft_id != 0 && !n.manager_addr.is_empty())
        .map(|n| n.manager_addr.clone())
        .collect();
    let role = s
        .nodes
        .get(node_id)
        .map(|n| n.spec.role.clone())
        .unwrap_or_default();
    let networks = crate::netview::views(s, node_id);
    let digest = {
        let body = serde_json::to_vec(&(
            &tasks, &services, &ports, &secrets, &configs, &managers, &role, &networks,
        ))
        .unwrap_or_default();
        let d = ring::digest::digest(&ring::digest::SHA256, &body);
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };
    SessionResponse {
        digest,
        unchanged: false,
        tasks,
        services,
        ports,
        secrets,
        configs,
        managers,
        heartbeat_ms: heartbeat.as_millis() as u64,
        role,
        logs: Vec::new(),
        networks,
    }
}
