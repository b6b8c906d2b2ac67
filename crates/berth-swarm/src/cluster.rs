//! This node's part in a swarm: init, join, leave, promote/demote and restart; the swarm
//! port's server (join, root CA, Raft traffic, agent sessions); the node's persisted identity
//! under `<data-root>/swarm/`. The daemon holds one `Cluster` and calls it from its routes.

use crate::agent::{Agent, Dispatcher};
use crate::ca::{CaError, NodeIdentity, NodeKey, NodeRole, PeerInfo, RootCa};
use crate::error::{Error, Result, NOT_IN_SWARM};
use crate::executor::{BoxFut, Executor};
use crate::manager::Manager;
use crate::net_transport::NetTransport;
use crate::proto::{JoinRequest, JoinResponse, SessionRequest, SessionResponse};
use crate::raft::{self, Bootstrap, Transport};
use crate::rpc::{self, RpcClient, RpcError, RpcResponse};
use crate::store::{ClusterRec, Command, NodeRec};
use crate::token::JoinToken;
use crate::{ids, tls};
use api::NodeState;
use berth_api::swarm as api;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Docker's swarm port.
pub const DEFAULT_PORT: u16 = 2377;
/// The UDP port of berth's VXLAN (overlay data path), Docker's default.
const VXLAN_PORT: u32 = 4789;
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon tells the cluster about itself.
pub struct NodeConfig {
    /// `<data-root>/swarm`.
    pub root: PathBuf,
}

/// What is kept on disk about this node's membership (`<root>/state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    node_id: String,
    cluster_id: String,
    raft_id: u64,
    listen_addr: String,
    advertise_addr: String,
    managers: Vec<String>,
    /// Raft members (id, address) a joining manager first talks to.
    #[serde(default)]
    members: Vec<(u64, String)>,
    /// The Raft data key, hex (managers; empty on disk while autolock seals it).
    dek: String,
    /// Autolock: the data key sealed under the unlock key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    dek_sealed: String,
    /// `--data-path-addr`: where the other nodes send this node's overlay (VXLAN) traffic,
    /// when not its advertise address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    data_addr: String,
}

/// Autolock on this node: the unlock key in effect ("" = none), and the membership of a
/// manager that restarted locked, until `swarm unlock`.
#[derive(Default)]
struct Lock {
    key: String,
    locked: Option<Persisted>,
}

/// dockerd's answer to manager requests while the node is locked.
pub const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";

/// dockerd's answer to `swarm leave` without `--force` on a locked node.
pub const LOCKED_LEAVE: &str = "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.";

/// Whether this manager counts as reachable, and how many managers are reachable and
/// unreachable, as `docker node ls` shows them from here (moby's `managerStats`).
fn manager_stats(
    s: &crate::store::State,
    me: &str,
    raft: &crate::view::RaftView,
) -> (bool, usize, usize) {
    let (mut active, mut reachable, mut unreachable) = (false, 0, 0);
    for n in s.nodes.values().filter(|n| n.raft_id != 0) {
        let up = crate::view::node(n, raft)
            .manager_status
            .is_some_and(|m| m.reachability == api::Reachability::Reachable);
        if up {
            reachable += 1;
            active |= n.id == me;
        } else {
            unreachable += 1;
        }
    }
    (active, reachable, unreachable)
}

/// moby's refusal of a manager's `swarm leave` without `--force`, from [`manager_stats`]: the
/// quorum sentence only when removing this node would lose it.
fn manager_leave_refusal((active, reachable, unreachable): (bool, usize, usize)) -> String {
    let mut msg =
        "You are attempting to leave the swarm on a node that is participating as a manager. "
            .to_string();
    if active && reachable <= unreachable + 2 {
        if reachable == 1 && unreachable == 0 {
            msg.push_str("Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ");
            return msg;
        }
        msg.push_str(&format!(
            "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
            reachable.saturating_sub(1),
            reachable + unreachable
        ));
    }
    msg.push_str("The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.");
    msg
}

/// A node that is part of a swarm.
struct Active {
    cluster_id: String,
    advertise_addr: String,
    listen_addr: String,
    identity: NodeIdentity,
    client: RpcClient,
    managers: Arc<RwLock<Vec<String>>>,
    manager: Option<Arc<Manager>>,
    stop: watch::Sender<bool>,
    /// The swarm port's server (managers), awaited at stop so that the port is free again.
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Active {
    /// Stops the node's parts: agent, orchestration, server, Raft member.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(m) = &self.manager {
            m.stop().await;
        }
        if let Some(s) = self.server {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
    }
}

pub struct Cluster {
    cfg: NodeConfig,
    exec: Arc<dyn Executor>,
    active: tokio::sync::Mutex<Option<Active>>,
    /// What `/_ping` and `/info` read without waiting for a lifecycle call.
    summary: RwLock<Summary>,
    /// Roles the cluster gave this node, for the task that follows them.
    roles: tokio::sync::mpsc::UnboundedSender<String>,
    lock: Mutex<Lock>,
}

/// The node's standing, for `/_ping`'s `Swarm` header and `/info`.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// inactive | pending | active | error | locked
    pub state: String,
    pub node_id: String,
    pub node_addr: String,
    /// The data-path address given at init or join ("" = the advertise address's host).
    pub data_addr: String,
    pub manager: Option<Arc<Manager>>,
    pub error: String,
    pub managers: Vec<String>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Manager({})", self.node_id)
    }
}

fn rpc_err(e: RpcError) -> Error {
    match e {
        RpcError::Status { status, message } => Error::new(status, message),
        e => Error::unavailable(e.to_string()),
    }
}

/// Splits `host[:port]` / `[v6]:port` / `:port`; interface names resolve to their first IPv4.
pub fn resolve_addr(s: &str, default_port: u16) -> Result<(String, u16)> {
    let s = s.trim();
    let (host, port) = if let Ok(sa) = s.parse::<SocketAddr>() {
        (sa.ip().to_string(), sa.port())
    } else if let Some((h, p)) = s.rsplit_once(':').filter(|(h, _)| !h.contains(':')) {
        let port = p
            .parse::<u16>()
            .map_err(|_| Error::invalid(format!("invalid port in address {s:?}")))?;
        (h.to_string(), port)
    } else {
        (s.trim_matches(['[', ']']).to_string(), default_port)
    };
    if host.is_empty() || host.parse::<IpAddr>().is_ok() {
        return Ok((host, port));
    }
    // An interface name.
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::internal(format!("listing network interfaces: {e}")))?;
    for a in addrs {
        if a.interface_name != host {
            continue;
        }
        if let Some(sin) = a.address.as_ref().and_then(|x| x.as_sockaddr_in()) {
            return Ok((IpAddr::V4(sin.ip()).to_string(), port));
        }
    }
    Err(Error::invalid(format!(
        "failed to resolve address {s:?}: not an IP address or a network interface with one"
    )))
}

/// Whether Raft messages from a peer may step this member: from a member's own Raft id by
/// the store (`raft_id`), or, while this manager joins and has no state yet, from one of the
/// members it was told of at join.
fn step_allowed(
    joining: bool,
    raft_id: u64,
    join_members: &[u64],
    msgs: &[::raft::eraftpb::Message],
) -> bool {
    if joining {
        msgs.iter().all(|x| join_members.contains(&x.get_from()))
    } else {
        msgs.iter().all(|x| x.get_from() == raft_id)
    }
}

/// `--data-path-port`: moby's range, and then the one port berth's VXLAN uses.
fn check_data_path_port(port: u32) -> Result<()> {
    if port == 0 || port == VXLAN_PORT {
        return Ok(());
    }
    if !(1024..=49151).contains(&port) {
        return Err(Error::invalid(format!(
            "Datapath port number is not in valid range (1024-49151) : {port}"
        )));
    }
    Err(Error::invalid(format!(
        "berth's overlay networks use VXLAN port {VXLAN_PORT}: --data-path-port {port} is not supported"
    )))
}

/// `--data-path-addr`: the IPv4 address (or the interface whose address) the node's overlay
/// traffic uses; "" when not given or the same as the advertise address.
fn data_path_addr(given: &str, advertise_host: &str) -> Result<String> {
    if given.trim().is_empty() {
        return Ok(String::new());
    }
    let (host, _) = resolve_addr(given, 0)?;
    if unicast_v4(&host).is_none() {
        return Err(Error::invalid(format!(
            "--data-path-addr {given}: overlay networks need a unicast IPv4 address"
        )));
    }
    Ok(if host == advertise_host {
        String::new()
    } else {
        host
    })
}

/// `s` as a unicast IPv4 address (what VXLAN can be sent to), if it is one.
fn unicast_v4(s: &str) -> Option<std::net::Ipv4Addr> {
    s.parse::<std::net::Ipv4Addr>()
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast())
}

/// A node's availability as `swarm init`/`join --availability` gives it (empty: active).
fn check_availability(a: &str) -> Result<()> {
    if matches!(a, "" | "active" | "pause" | "drain") {
        Ok(())
    } else {
        Err(Error::rpc_invalid(format!("invalid availability: {a}")))
    }
}

/// The address other nodes reach this one at, when none was given: the listen address if it
/// is specific, else the source address the routing table picks for the default route.
fn detect_advertise(listen_host: &str) -> Result<String> {
    if let Ok(ip) = listen_host.parse::<IpAddr>() {
        if !ip.is_unspecified() {
            return Ok(ip.to_string());
        }
    }
    // Connecting a UDP socket sends nothing; it only asks the kernel for a route.
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .map_err(|e| Error::internal(format!("finding this node's address: {e}")))?;
    match sock
        .connect("192.0.2.1:9")
        .and_then(|_| sock.local_addr())
        .map(|a| a.ip())
    {
        Ok(ip) if !ip.is_unspecified() && !ip.is_loopback() => Ok(ip.to_string()),
        _ => Err(Error::invalid(
            "could not find the system's IP address - please specify one with --advertise-addr",
        )),
    }
}

/// The local address the kernel picks to reach `remote` (a connected UDP socket sends
/// nothing): a joining node's address as the manager sees it.
fn source_towards(remote: &str) -> Result<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .map_err(|e| Error::internal(format!("finding this node's address: {e}")))?;
    sock.connect(remote)
        .and_then(|_| sock.local_addr())
        .map(|a| a.ip().to_string())
        .map_err(|e| Error::invalid(format!("no route to {remote}: {e}")))
}

use crate::ids::{hex, unhex};

impl Cluster {
    /// A node outside any swarm; call within a tokio runtime (it starts the task that
    /// follows role changes).
    pub fn new(cfg: NodeConfig, exec: Arc<dyn Executor>) -> Arc<Cluster> {
        let (roles, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let c = Arc::new(Cluster {
            cfg,
            exec,
            active: tokio::sync::Mutex::new(None),
            summary: RwLock::new(Summary {
                state: "inactive".to_string(),
                ..Default::default()
            }),
            roles,
            lock: Mutex::new(Lock::default()),
        });
        let weak = Arc::downgrade(&c);
        tokio::spawn(async move {
            while let Some(want) = rx.recv().await {
                let Some(c) = weak.upgrade() else { return };
                if let Err(e) = c.follow_role(&want).await {
                    tracing::warn!("swarm: changing this node's role to {want}: {}", e.message);
                }
            }
        });
        c
    }

    /// The node's standing (cheap; for `/_ping` and `/info`).
    pub fn summary(&self) -> Summary {
        self.summary
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_summary(&self, s: Summary) {
        *self.summary.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// The manager of this node, or Docker's 503 for workers and nodes outside a swarm.
    pub fn manager(&self) -> Result<Arc<Manager>> {
        let s = self.summary();
        match s.manager {
            Some(m) => Ok(m),
            None if s.state == "inactive" => Err(Error::not_manager()),
            None => Err(Error::not_manager()),
        }
    }

    /// `GET /services/{id}/logs`, `GET /tasks/{id}/logs` (managers): the pieces the nodes
    /// publish, through the leader's broker (a follower forwards the subscription), and
    /// whether they are raw TTY output.
    pub async fn logs(
        &self,
        source: crate::control::LogSource<'_>,
        options: crate::proto::LogOptions,
    ) -> Result<(tokio::sync::mpsc::Receiver<bytes::Bytes>, bool)> {
        let m = self.manager()?;
        let (tasks, tty) = m.log_targets(source)?;
        if m.is_leader() {
            return Ok((m.logs.subscribe(tasks, options), tty));
        }
        let leader = m.leader_addr().ok_or_else(Error::no_leader)?;
        let client = self
            .active
            .lock()
            .await
            .as_ref()
            .map(|a| a.client.clone())
            .ok_or_else(Error::not_manager)?;
        let req = crate::proto::SubscribeRequest { tasks, options };
        let mut stream = client
            .post_json_stream(&leader, "/logs/subscribe", &req, RPC_TIMEOUT)
            .await
            .map_err(rpc_err)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    piece = stream.next() => match piece {
                        Some(Ok(piece)) => {
                            if tx.send(piece).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    // The reader left: dropping the stream closes the leader's subscription.
                    () = tx.closed() => return,
                }
            }
        });
        Ok((rx, tty))
    }

    fn state_path(&self) -> PathBuf {
        self.cfg.root.join("state.json")
    }

    fn certs_dir(&self) -> PathBuf {
        self.cfg.root.join("certs")
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Lock> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's certificate and key from `certs/`; a key sealed under autolock is opened
    /// with the unlock key in effect.
    fn load_identity(&self) -> Result<NodeIdentity> {
        let key = self.lock_state().key.clone();
        NodeIdentity::load_with(&self.certs_dir(), |text| {
            if !crate::autolock::is_sealed_node_key(&text) {
                return Ok(text);
            }
            if key.is_empty() {
                return Err(CaError::Refused(
                    "the node key is sealed under the unlock key".into(),
                ));
            }
            crate::autolock::open_node_key(&key, &text).map_err(|e| CaError::Refused(e.message))
        })
        .map_err(|e| Error::internal(format!("swarm node certificate: {e}")))
    }

    /// Writes this node's certificate and key into `certs/`; a manager's key goes sealed
    /// under the unlock key while autolock is on, never in the clear.
    fn save_identity(&self, identity: &NodeIdentity) -> Result<()> {
        let key = self.lock_state().key.clone();
        let text = if key.is_empty() || identity.role != NodeRole::Manager {
            identity.key_pem.clone()
        } else {
            crate::autolock::seal_node_key(&key, &identity.key_pem)?
        };
        identity
            .save_with(&self.certs_dir(), &text)
            .map_err(|e| Error::internal(format!("saving the node certificate: {e}")))
    }

    /// Rewrites the node key file for a new unlock key: sealed under `new`, or in the clear
    /// when `new` is "" (autolock turned off). The file may be sealed under `old` or already
    /// under `new` (a renewal in between).
    fn reseal_node_key(&self, old: &str, new: &str) -> Result<()> {
        let path = self.certs_dir().join(crate::ca::NODE_KEY_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
        let pem = if crate::autolock::is_sealed_node_key(&text) {
            crate::autolock::open_node_key(old, &text)
                .or_else(|_| crate::autolock::open_node_key(new, &text))?
        } else {
            text
        };
        let out = if new.is_empty() {
            pem
        } else {
            crate::autolock::seal_node_key(new, &pem)?
        };
        crate::ca::write_atomic(&path, out.as_bytes(), 0o600)
            .map_err(|e| Error::internal(format!("writing the node key: {e}")))
    }

    /// Writes `state.json`; under autolock the data key goes sealed, never in the clear.
    fn save(&self, p: &Persisted) -> Result<()> {
        std::fs::create_dir_all(&self.cfg.root)
            .map_err(|e| Error::internal(format!("{}: {e}", self.cfg.root.display())))?;
        let tmp = self.cfg.root.join("state.json.tmp");
        let key = self.lock_state().key.clone();
        let mut p = p.clone();
        if !p.dek.is_empty() {
            p.dek_sealed = String::new();
            if !key.is_empty() {
                let dek = unhex(&p.dek)
                    .ok_or_else(|| Error::internal("the swarm state has no valid raft data key"))?;
                p.dek_sealed = crate::autolock::seal_dek(&key, &dek)?;
                p.dek = String::new();
            }
        }
        let body = serde_json::to_vec_pretty(&p).unwrap_or_default();
        write_private(&tmp, &body)?;
        std::fs::rename(&tmp, self.state_path())
            .map_err(|e| Error::internal(format!("saving the swarm state: {e}")))
    }

    /// At daemon start: rejoins the swarm this node was part of.
    pub async fn restore(self: &Arc<Self>) -> Result<()> {
        let Ok(body) = std::fs::read(self.state_path()) else {
            return Ok(());
        };
        let p: Persisted = serde_json::from_slice(&body)
            .map_err(|e| Error::internal(format!("{}: {e}", self.state_path().display())))?;
        let boot = (p.raft_id != 0).then_some(Bootstrap::Restart);
        if boot.is_some() && p.dek.is_empty() && !p.dek_sealed.is_empty() {
            // Autolock: the manager waits for `swarm unlock`.
            self.set_summary(Summary {
                state: "locked".to_string(),
                node_id: p.node_id.clone(),
                node_addr: p.advertise_addr.clone(),
                data_addr: p.data_addr.clone(),
                managers: p.managers.clone(),
                ..Default::default()
            });
            self.lock_state().locked = Some(p);
            return Ok(());
        }
        let identity = self.load_identity()?;
        let root_pem = std::fs::read_to_string(self.certs_dir().join("swarm-root-ca.crt"))
            .map_err(|e| Error::internal(format!("swarm root CA: {e}")))?;
        let root = RootCa::from_pem(&root_pem, None)
            .map_err(|e| Error::internal(format!("swarm root CA: {e}")))?;
        let boot = boot.filter(|_| identity.role == NodeRole::Manager);
        let mut g = self.active.lock().await;
        let a = self.launch(p, identity, root, boot).await?;
        *g = Some(a);
        Ok(())
    }

    /// `POST /swarm/unlock`: opens the data key of a manager that restarted locked, then
    /// starts its parts as a restart does.
    pub async fn unlock(self: &Arc<Self>, key: &str) -> Result<()> {
        let mut g = self.active.lock().await;
        let Some(mut p) = self.lock_state().locked.take() else {
            return Err(Error::invalid("swarm is not locked"));
        };
        let dek = match crate::autolock::open_dek(key, &p.dek_sealed) {
            Ok(dek) => dek,
            Err(e) => {
                self.lock_state().locked = Some(p);
                return Err(e);
            }
        };
        p.dek = hex(&dek);
        self.lock_state().key = key.trim().to_string();
        let identity = self.load_identity()?;
        let root_pem = std::fs::read_to_string(self.certs_dir().join("swarm-root-ca.crt"))
            .map_err(|e| Error::internal(format!("swarm root CA: {e}")))?;
        let root = RootCa::from_pem(&root_pem, None)
            .map_err(|e| Error::internal(format!("swarm root CA: {e}")))?;
        let a = self
            .launch(p, identity, root, Some(Bootstrap::Restart))
            .await?;
        *g = Some(a);
        Ok(())
    }

    /// Follows the cluster's unlock key on a manager: `state.json` is sealed again whenever
    /// autolock is turned on or off or its key rotates.
    fn follow_unlock_key(
        self: &Arc<Self>,
        m: Arc<Manager>,
        dek: String,
        mut stop: watch::Receiver<bool>,
    ) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut applied = m.raft.applied();
            loop {
                let key = m.read(|s| s.cluster.as_ref().map(|c| c.unlock_key.clone()));
                if let (Some(key), Some(c)) = (key, weak.upgrade()) {
                    let old = c.lock_state().key.clone();
                    if old != key {
                        c.lock_state().key = key.clone();
                        let reseal = || {
                            if let Err(e) = c.reseal_node_key(&old, &key) {
                                tracing::warn!("swarm: sealing the node key: {}", e.message);
                            }
                        };
                        // Whatever step a crash interrupts, the node either restarts locked
                        // with keys the unlock key opens, or unlocked with both in the clear:
                        // the data key is sealed first and opened last.
                        if key.is_empty() {
                            reseal();
                        }
                        let saved = std::fs::read(c.state_path())
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
                            .map(|mut p| {
                                p.dek = dek.clone();
                                c.save(&p)
                            });
                        if let Some(Err(e)) = saved {
                            tracing::warn!("swarm: sealing the raft data key: {e}");
                        }
                        if !key.is_empty() {
                            reseal();
                        }
                    }
                }
                tokio::select! {
                    r = applied.changed() => if r.is_err() { return },
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// Starts the node's parts: the Raft member and manager (managers), the swarm port's
    /// server, and the agent.
    async fn launch(
        self: &Arc<Self>,
        p: Persisted,
        identity: NodeIdentity,
        root: RootCa,
        boot: Option<Bootstrap>,
    ) -> Result<Active> {
        let live = tls::LiveIdentity::new(&identity)
            .map_err(|e| Error::internal(format!("swarm TLS: {e}")))?;
        let trust = tls::LiveTrust::new(&[&root])
            .map_err(|e| Error::internal(format!("swarm TLS: {e}")))?;
        let client_tls = tls::client_config_trust(trust.clone(), Some(live.clone()))
            .map_err(|e| Error::internal(format!("swarm TLS: {e}")))?;
        let client = RpcClient::new(client_tls);
        let managers = Arc::new(RwLock::new(p.managers.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let certs = Certs {
            cluster: Arc::downgrade(self),
            live: live.clone(),
            trust: trust.clone(),
            client: client.clone(),
            managers: managers.clone(),
            kick: Arc::new(tokio::sync::Notify::new()),
            renewed: Arc::new(tokio::sync::Notify::new()),
        };
        tokio::spawn(certs.clone().renew(identity.clone(), stop_rx.clone()));
        tokio::spawn(certs.follow_tls(stop_rx.clone()));
        let mut manager = None;
        let mut server = None;
        if let Some(boot) = boot {
            let dek = unhex(&p.dek)
                .ok_or_else(|| Error::internal("the swarm state has no valid raft data key"))?;
            let transport = Arc::new(NetTransport::new(
                client.clone(),
                tokio::runtime::Handle::current(),
            ));
            let mut join_members = Vec::new();
            if matches!(boot, Bootstrap::Join) {
                // The members it joins must be reachable before the leader's first message.
                transport.set_peers(&p.members);
                join_members = p.members.iter().map(|(id, _)| *id).collect();
            }
            let cfg = raft::Config::new(p.raft_id, self.cfg.root.join("raft"), dek);
            let m = Manager::start(p.node_id.clone(), cfg, transport, boot)?;
            tokio::spawn(m.clone().run(stop_rx.clone()));
            self.follow_unlock_key(m.clone(), p.dek.clone(), stop_rx.clone());
            // The swarm port: managers serve joins, Raft traffic and agent sessions.
            let (host, port) = resolve_addr(&p.listen_addr, DEFAULT_PORT)?;
            let bind = if host.is_empty() {
                "0.0.0.0".to_string()
            } else {
                host
            };
            let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
                .await
                .map_err(|e| {
                    Error::invalid(format!(
                        "failed to listen on remote API address: listen tcp {bind}:{port}: {e}"
                    ))
                })?;
            let server_tls = tls::server_config_trust(trust.clone(), live.clone())
                .map_err(|e| Error::internal(format!("swarm TLS: {e}")))?;
            let handler = Arc::new(Port {
                manager: m.clone(),
                join_members: Arc::new(join_members),
            });
            tokio::spawn(finish_root_rotations(m.clone(), stop_rx.clone()));
            server = Some(tokio::spawn(rpc::serve(
                listener,
                server_tls,
                handler,
                stop_rx.clone(),
            )));
            manager = Some(m);
        }
        let disp = Arc::new(RpcDispatcher {
            client: client.clone(),
            managers: managers.clone(),
            current: Mutex::new(0),
            data_addr: p.data_addr.clone(),
        });
        let agent = Agent::new(self.exec.clone(), disp, p.node_id.clone());
        tokio::spawn(agent.clone().run(stop_rx.clone()));
        // Follow role changes (promotion, demotion) decided by the cluster.
        {
            let roles = self.roles.clone();
            let mut role = agent.role();
            let mut stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = role.changed() => if r.is_err() { return },
                        _ = stop_rx.changed() => return,
                    }
                    let want = role.borrow().clone();
                    if roles.send(want).is_err() {
                        return;
                    }
                }
            });
        }
        self.set_summary(Summary {
            state: "active".to_string(),
            node_id: p.node_id.clone(),
            node_addr: p.advertise_addr.clone(),
            data_addr: p.data_addr.clone(),
            manager: manager.clone(),
            error: String::new(),
            managers: p.managers.clone(),
        });
        Ok(Active {
            cluster_id: p.cluster_id,
            advertise_addr: p.advertise_addr,
            listen_addr: p.listen_addr,
            identity,
            client,
            managers,
            manager,
            stop,
            server,
        })
    }

    /// `POST /swarm/init`.
    pub async fn init(self: &Arc<Self>, req: api::SwarmInitRequest) -> Result<String> {
        let mut g = self.active.lock().await;
        if req.force_new_cluster {
            // The node's parts stop (a member without quorum), then restart as a new cluster
            // of one from the same data.
            if let Some(a) = g.take() {
                a.stop().await;
            }
            return self.force_new_cluster(&mut g, req).await;
        }
        if g.is_some() {
            return Err(Error::unavailable("This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."));
        }
        // Everything the request says is checked before anything starts.
        let mut spec = req.spec.clone();
        crate::control::swarm_spec_defaults(&mut spec)?;
        crate::control::check_addr_pools(&req.default_addr_pool, req.subnet_size)?;
        check_data_path_port(req.data_path_port)?;
        check_availability(&req.availability)?;
        let autolock = req.auto_lock_managers || req.spec.encryption_config.auto_lock_managers;
        // The unlock key seals the data key from the first write of state.json on.
        let unlock_key = if autolock {
            crate::autolock::new_key()
        } else {
            String::new()
        };
        self.lock_state().key = unlock_key.clone();
        let listen = if req.listen_addr.is_empty() {
            format!("0.0.0.0:{DEFAULT_PORT}")
        } else {
            req.listen_addr.clone()
        };
        let (lhost, lport) = resolve_addr(&listen, DEFAULT_PORT)?;
        let advertise_host = if req.advertise_addr.is_empty() {
            detect_advertise(&lhost)?
        } else {
            resolve_addr(&req.advertise_addr, lport)?.0
        };
        let aport = if req.advertise_addr.is_empty() {
            lport
        } else {
            resolve_addr(&req.advertise_addr, lport)?.1
        };
        let advertise = format!("{advertise_host}:{aport}");
        let data_addr = data_path_addr(&req.data_path_addr, &advertise_host)?;
        let root = RootCa::generate().map_err(|e| Error::internal(format!("swarm CA: {e}")))?;
        let node_id = ids::new_id();
        let cluster_id = ids::new_id();
        let raft_id = ids::new_raft_id();
        let key = NodeKey::generate().map_err(|e| Error::internal(format!("swarm CA: {e}")))?;
        let expiry = Some(Duration::from_nanos(
            spec.ca_config.node_cert_expiry.unsigned_abs(),
        ));
        let cert = root
            .issue(
                &key.csr_pem,
                &node_id,
                NodeRole::Manager,
                &cluster_id,
                expiry,
            )
            .map_err(|e| Error::internal(format!("swarm CA: {e}")))?;
        let identity = NodeIdentity::from_pem(&cert, &key.key_pem)
            .map_err(|e| Error::internal(format!("swarm CA: {e}")))?;
        std::fs::create_dir_all(self.certs_dir())
            .map_err(|e| Error::internal(format!("{}: {e}", self.certs_dir().display())))?;
        self.save_identity(&identity)?;
        write_private(
            &self.certs_dir().join("swarm-root-ca.crt"),
            root.cert_pem().as_bytes(),
        )?;
        let dek = ids::random_bytes::<32>();
        let p = Persisted {
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            raft_id,
            listen_addr: format!("{lhost}:{lport}"),
            advertise_addr: advertise.clone(),
            managers: vec![advertise.clone()],
            members: Vec::new(),
            dek: hex(&dek),
            dek_sealed: String::new(),
            data_addr: data_addr.clone(),
        };
        self.save(&p)?;
        let now = berth_api::timefmt::now();
        spec.encryption_config.auto_lock_managers = autolock;
        spec.ca_config.signing_ca_cert = String::new();
        spec.ca_config.signing_ca_key = String::new();
        if spec.name.is_empty() {
            spec.name = "default".to_string();
        }
        let description = self.exec.describe().await;
        let cluster = ClusterRec {
            id: cluster_id.clone(),
            version: 0,
            created_at: now.clone(),
            updated_at: now.clone(),
            spec,
            root_ca_cert: root.cert_pem().to_string(),
            root_ca_key: root.key_pem().unwrap_or_default(),
            worker_secret: crate::token::new_secret(),
            manager_secret: crate::token::new_secret(),
            unlock_key,
            default_addr_pool: if req.default_addr_pool.is_empty() {
                vec!["10.0.0.0/8".to_string()]
            } else {
                req.default_addr_pool.clone()
            },
            subnet_size: if req.subnet_size == 0 {
                24
            } else {
                req.subnet_size
            },
            data_path_port: VXLAN_PORT,
            root_rotation: None,
            last_forced_rotation: req.spec.ca_config.force_rotate,
        };
        let node = NodeRec {
            id: node_id.clone(),
            version: 0,
            created_at: now.clone(),
            updated_at: now.clone(),
            spec: api::NodeSpec {
                role: "manager".to_string(),
                availability: if req.availability.is_empty() {
                    "active".to_string()
                } else {
                    req.availability.clone()
                },
                ..Default::default()
            },
            description,
            state: NodeState::Ready,
            message: String::new(),
            addr: if data_addr.is_empty() {
                advertise_host
            } else {
                data_addr
            },
            raft_id,
            manager_addr: advertise.clone(),
            advertise_addr: advertise.clone(),
            ingress_addr: String::new(),
        };
        let a = match self
            .launch(p, identity, root, Some(Bootstrap::New { addr: advertise }))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&self.cfg.root);
                return Err(e);
            }
        };
        let m = a
            .manager
            .clone()
            .ok_or_else(|| Error::internal("no manager"))?;
        // The single member elects itself within an election timeout.
        wait_leader(&m, Duration::from_secs(10)).await?;
        if let Err(e) = m
            .propose(Command::Init {
                cluster: Box::new(cluster),
                node: Box::new(node),
                ingress: Some(Box::new(crate::netalloc::ingress_network(&now))),
            })
            .await
        {
            a.stop().await;
            let _ = std::fs::remove_dir_all(&self.cfg.root);
            self.set_summary(Summary {
                state: "inactive".to_string(),
                ..Default::default()
            });
            return Err(e);
        }
        *g = Some(a);
        Ok(node_id)
    }

    async fn force_new_cluster(
        self: &Arc<Self>,
        g: &mut Option<Active>,
        req: api::SwarmInitRequest,
    ) -> Result<String> {
        let body = std::fs::read(self.state_path()).map_err(|_| {
            Error::invalid("--force-new-cluster: this node holds no swarm state to recover from")
        })?;
        let mut p: Persisted = serde_json::from_slice(&body)
            .map_err(|e| Error::internal(format!("{}: {e}", self.state_path().display())))?;
        if p.raft_id == 0 {
            return Err(Error::invalid(
                "--force-new-cluster: this node was not a manager",
            ));
        }
        if p.dek.is_empty() && !p.dek_sealed.is_empty() {
            let key = self.lock_state().key.clone();
            if key.is_empty() {
                return Err(Error::unavailable(LOCKED));
            }
            p.dek = hex(&crate::autolock::open_dek(&key, &p.dek_sealed)?);
            self.lock_state().locked = None;
        }
        if !req.advertise_addr.is_empty() {
            let (h, port) = resolve_addr(&req.advertise_addr, DEFAULT_PORT)?;
            p.advertise_addr = format!("{h}:{port}");
        }
        p.managers = vec![p.advertise_addr.clone()];
        self.save(&p)?;
        let identity = self.load_identity()?;
        let root_pem = std::fs::read_to_string(self.certs_dir().join("swarm-root-ca.crt"))
            .map_err(|e| Error::internal(format!("swarm root CA: {e}")))?;
        let root = RootCa::from_pem(&root_pem, None)
            .map_err(|e| Error::internal(format!("swarm root CA: {e}")))?;
        let node_id = p.node_id.clone();
        let addr = p.advertise_addr.clone();
        let a = self
            .launch(
                p,
                identity,
                root,
                Some(Bootstrap::ForceNewCluster { addr: addr.clone() }),
            )
            .await?;
        let m = a
            .manager
            .clone()
            .ok_or_else(|| Error::internal("no manager"))?;
        wait_leader(&m, Duration::from_secs(10)).await?;
        // The other managers are workers from now on (their Raft membership is gone).
        let others: Vec<String> = m.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.raft_id != 0 && n.id != node_id)
                .map(|n| n.id.clone())
                .collect()
        });
        for id in others {
            let _ = m
                .propose(Command::SetManager {
                    id: id.clone(),
                    raft_id: 0,
                    addr: String::new(),
                    spec: None,
                    now: berth_api::timefmt::now(),
                })
                .await;
            let spec = m.read(|s| s.nodes.get(&id).map(|n| (n.version, n.spec.clone())));
            if let Some((version, mut spec)) = spec {
                spec.role = "worker".to_string();
                let _ = m
                    .propose(Command::UpdateNode {
                        id,
                        version,
                        spec,
                        now: berth_api::timefmt::now(),
                    })
                    .await;
            }
        }
        let _ = m
            .propose(Command::SetManager {
                id: node_id.clone(),
                raft_id: m.raft.status().id,
                addr,
                spec: None,
                now: berth_api::timefmt::now(),
            })
            .await;
        *g = Some(a);
        Ok(node_id)
    }

    /// `POST /swarm/join`.
    pub async fn join(self: &Arc<Self>, req: api::SwarmJoinRequest) -> Result<()> {
        let mut g = self.active.lock().await;
        if g.is_some() {
            return Err(Error::unavailable("This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."));
        }
        let token = JoinToken::parse(&req.join_token).map_err(|e| Error::invalid(e.to_string()))?;
        check_availability(&req.availability)?;
        let remote = req
            .remote_addrs
            .first()
            .ok_or_else(|| Error::invalid("at least 1 RemoteAddr is required to join"))?;
        let (rhost, rport) = resolve_addr(remote, DEFAULT_PORT)?;
        let remote = format!("{rhost}:{rport}");
        // The root CA, over TLS that trusts nobody yet; the token's digest decides.
        let insecure = RpcClient::new(
            tls::insecure_root_fetch_config().map_err(|e| Error::internal(e.to_string()))?,
        );
        let root_pem = insecure
            .get_bytes(&remote, "/ca", RPC_TIMEOUT)
            .await
            .map_err(rpc_err)?;
        let root_pem = String::from_utf8(root_pem.to_vec())
            .map_err(|_| Error::invalid("the remote's root CA is not PEM"))?;
        let root = RootCa::from_pem(&root_pem, None)
            .map_err(|e| Error::invalid(format!("the remote's root CA: {e}")))?;
        token
            .check_root(&root.digest())
            .map_err(|e| Error::invalid(e.to_string()))?;
        let listen = if req.listen_addr.is_empty() {
            format!("0.0.0.0:{DEFAULT_PORT}")
        } else {
            req.listen_addr.clone()
        };
        let (lhost, lport) = resolve_addr(&listen, DEFAULT_PORT)?;
        let advertise = if req.advertise_addr.is_empty() {
            format!(
                "{}:{lport}",
                source_towards(&remote).or_else(|_| detect_advertise(&lhost))?
            )
        } else {
            let (h, p) = resolve_addr(&req.advertise_addr, lport)?;
            format!("{h}:{p}")
        };
        let advertise_host = advertise
            .rsplit_once(':')
            .map_or(advertise.as_str(), |(h, _)| h)
            .trim_matches(['[', ']']);
        let data_addr = data_path_addr(&req.data_path_addr, advertise_host)?;
        let key = NodeKey::generate().map_err(|e| Error::internal(format!("swarm CA: {e}")))?;
        let raft_id = ids::new_raft_id();
        let jr = JoinRequest {
            token: req.join_token.clone(),
            csr_pem: key.csr_pem.clone(),
            description: self.exec.describe().await,
            availability: req.availability.clone(),
            advertise_addr: advertise.clone(),
            raft_id,
        };
        let verified = RpcClient::new(
            tls::client_config(&root, None).map_err(|e| Error::internal(e.to_string()))?,
        );
        let mut target = remote.clone();
        let mut resp: Option<JoinResponse> = None;
        for _ in 0..5 {
            match verified
                .post_json::<_, JoinResponse>(&target, "/join", &jr, Duration::from_secs(30))
                .await
            {
                Ok(r) => {
                    resp = Some(r);
                    break;
                }
                // A follower names the leader.
                Err(RpcError::Status {
                    status: 421,
                    message,
                }) => {
                    match message
                        .rsplit_once("leader: ")
                        .map(|(_, a)| a.trim().to_string())
                    {
                        Some(a) if !a.is_empty() => target = a,
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                Err(e) => return Err(rpc_err(e)),
            }
        }
        let resp = resp.ok_or_else(Error::no_leader)?;
        let identity = NodeIdentity::from_pem(&resp.cert_pem, &key.key_pem)
            .map_err(|e| Error::internal(format!("the issued certificate: {e}")))?;
        std::fs::create_dir_all(self.certs_dir())
            .map_err(|e| Error::internal(format!("{}: {e}", self.certs_dir().display())))?;
        self.save_identity(&identity)?;
        write_private(
            &self.certs_dir().join("swarm-root-ca.crt"),
            root.cert_pem().as_bytes(),
        )?;
        let manager = resp.role == "manager";
        let p = Persisted {
            node_id: resp.node_id.clone(),
            cluster_id: resp.cluster_id.clone(),
            raft_id: if manager { raft_id } else { 0 },
            listen_addr: format!("{lhost}:{lport}"),
            advertise_addr: advertise.clone(),
            managers: resp.managers.clone(),
            members: resp.members.clone(),
            dek: if manager {
                hex(&ids::random_bytes::<32>())
            } else {
                String::new()
            },
            dek_sealed: String::new(),
            data_addr,
        };
        self.save(&p)?;
        let boot = manager.then_some(Bootstrap::Join);
        let a = match self.launch(p, identity, root, boot).await {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&self.cfg.root);
                self.set_summary(Summary {
                    state: "inactive".to_string(),
                    ..Default::default()
                });
                return Err(e);
            }
        };
        if let Some(m) = &a.manager {
            // Joined managers answer once they have the cluster's state.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                if m.read(|s| s.cluster.is_some()) && m.raft.status().leader != 0 {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        *g = Some(a);
        Ok(())
    }

    /// A plain container on this node joins the attachable swarm network `network` (id or
    /// name): the network and the container's address there, from the leader.
    pub async fn attach(
        self: &Arc<Self>,
        network: &str,
        container: &str,
    ) -> Result<crate::proto::AttachResponse> {
        let (client, managers) = {
            let g = self.active.lock().await;
            let a = g
                .as_ref()
                .ok_or_else(|| Error::unavailable(crate::error::NOT_IN_SWARM))?;
            let managers = a.managers.read().unwrap_or_else(|e| e.into_inner()).clone();
            (a.client.clone(), managers)
        };
        let req = crate::proto::AttachRequest {
            network: network.to_string(),
            container: container.to_string(),
        };
        post_to_leader(&client, &managers, "/attach", &req)
            .await
            .map_err(|e| {
                if e.contains("not manually attachable") {
                    Error::new(403, e)
                } else if e.contains("Invalid container name")
                    || e.contains("cannot join swarm network")
                {
                    Error::invalid(e)
                } else if e.contains("not found") {
                    Error::not_found(e)
                } else {
                    Error::unavailable(e)
                }
            })
    }

    /// `POST /swarm/leave`.
    pub async fn leave(self: &Arc<Self>, force: bool) -> Result<()> {
        let mut g = self.active.lock().await;
        if g.is_none() && self.lock_state().locked.is_some() {
            // A locked manager can only be forced out (its data stays sealed).
            if !force {
                return Err(Error::unavailable(LOCKED_LEAVE));
            }
            self.remove_task_containers().await;
            let _ = std::fs::remove_dir_all(&self.cfg.root);
            *self.lock_state() = Lock::default();
            self.set_summary(Summary {
                state: "inactive".to_string(),
                ..Default::default()
            });
            return Ok(());
        }
        let Some(a) = g.as_ref() else {
            return Err(Error::unavailable(NOT_IN_SWARM));
        };
        if let Some(m) = &a.manager {
            if !force {
                let st = m.raft.status();
                let rv = crate::view::RaftView {
                    leader: st.leader,
                    active: st.active,
                };
                let stats = m.read(|s| manager_stats(s, &m.node_id, &rv));
                return Err(Error::unavailable(manager_leave_refusal(stats)));
            }
            let managers = m.read(|s| s.nodes.values().filter(|n| n.raft_id != 0).count());
            // Leave the Raft group cleanly where possible (a leader steps down as it goes).
            let me = m.raft.status().id;
            if managers > 1 {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), m.raft.remove_member(me)).await;
            }
        }
        let a = g.take();
        if let Some(a) = a {
            let worker = a.manager.is_none();
            let (client, managers) = (
                a.client.clone(),
                a.managers.read().unwrap_or_else(|e| e.into_inner()).clone(),
            );
            a.stop().await;
            if worker {
                // With its agent stopped, a worker tells the leader it is gone (best effort:
                // otherwise the heartbeat timeout marks it down).
                let told =
                    post_to_leader::<_, serde_json::Value>(&client, &managers, "/leave", &());
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), told).await {
                    tracing::debug!("swarm leave: telling the leader: {e}");
                }
            }
            self.remove_task_containers().await;
        }
        let _ = std::fs::remove_dir_all(&self.cfg.root);
        *self.lock_state() = Lock::default();
        self.set_summary(Summary {
            state: "inactive".to_string(),
            ..Default::default()
        });
        Ok(())
    }

    /// Removes every task container of this node (leaving the swarm, as Docker does).
    async fn remove_task_containers(&self) {
        for c in self.exec.list().await {
            let _ = self
                .exec
                .stop(c.container_id.clone(), Some(Duration::from_secs(10)))
                .await;
            let _ = self.exec.remove(c.container_id).await;
        }
        // And the swarm networks with their peers, names and mesh ports.
        self.exec.networks(Vec::new()).await;
    }

    /// Stops the node's parts without leaving (daemon shutdown: the swarm resumes at restart).
    pub async fn shutdown(&self) {
        let mut g = self.active.lock().await;
        if let Some(a) = g.take() {
            a.stop().await;
        }
    }

    /// Starts or stops this node's manager when the cluster changed its role.
    async fn follow_role(self: &Arc<Self>, role: &str) -> Result<()> {
        let mut g = self.active.lock().await;
        let Some(a) = g.as_ref() else { return Ok(()) };
        let is_manager = a.manager.is_some();
        if (role == "manager") == is_manager {
            return Ok(());
        }
        if let (Some(m), "worker") = (&a.manager, role) {
            // A demotion: the managers take this member out of the Raft group first (the
            // demoting call may run on this very manager); it stops once it is out.
            let me = m.raft.status().id;
            for _ in 0..100 {
                let st = m.raft.status();
                if st.removed || st.stopped || !st.members.iter().any(|(id, _)| *id == me) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // A new certificate with the new role, then the parts that go with it.
        let key = NodeKey::generate().map_err(|e| Error::internal(e.to_string()))?;
        let managers = a.managers.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut target = managers.first().cloned().unwrap_or_default();
        let mut renewed: Option<crate::proto::RenewResponse> = None;
        // Patient: a promotion may have left the group without a leader until this node's
        // member runs elsewhere, or an election may be under way.
        for attempt in 0..50 {
            match a
                .client
                .post_json::<_, crate::proto::RenewResponse>(
                    &target,
                    "/renew",
                    &crate::proto::RenewRequest {
                        csr_pem: key.csr_pem.clone(),
                    },
                    RPC_TIMEOUT,
                )
                .await
            {
                Ok(r) if r.role == role => {
                    renewed = Some(r);
                    break;
                }
                Ok(_) => {}
                Err(RpcError::Status {
                    status: 421,
                    message,
                }) => {
                    if let Some((_, l)) = message.rsplit_once("leader: ") {
                        if !l.trim().is_empty() {
                            target = l.trim().to_string();
                            continue;
                        }
                    }
                    // This manager knows no leader (it may be the one just demoted): ask
                    // another.
                    if !managers.is_empty() {
                        target = managers[(attempt + 1) % managers.len()].clone();
                    }
                }
                Err(e) if e.is_unreachable() && !managers.is_empty() => {
                    target = managers[(attempt + 1) % managers.len()].clone();
                }
                Err(e) => return Err(rpc_err(e)),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let renewed = renewed.ok_or_else(Error::no_leader)?;
        let identity = NodeIdentity::from_pem(&renewed.cert_pem, &key.key_pem)
            .map_err(|e| Error::internal(e.to_string()))?;
        self.save_identity(&identity)?;
        let body = std::fs::read(self.state_path())
            .map_err(|e| Error::internal(format!("{}: {e}", self.state_path().display())))?;
        let mut p: Persisted = serde_json::from_slice(&body)
            .map_err(|e| Error::internal(format!("{}: {e}", self.state_path().display())))?;
        p.managers = a.managers.read().unwrap_or_else(|e| e.into_inner()).clone();
        let old = g.take();
        if let Some(old) = old {
            old.stop().await;
        }
        let root = {
            let pem = std::fs::read_to_string(self.certs_dir().join("swarm-root-ca.crt"))
                .map_err(|e| Error::internal(e.to_string()))?;
            RootCa::from_pem(&pem, None).map_err(|e| Error::internal(e.to_string()))?
        };
        let boot = if role == "manager" {
            // The leader made this node a voter with the raft id it recorded at promotion.
            let (raft_id, members) = self
                .raft_id_from_leader(&a_client(&identity, &root)?, &target, &p.node_id)
                .await?;
            p.raft_id = raft_id;
            p.members = members;
            p.dek = hex(&ids::random_bytes::<32>());
            let _ = std::fs::remove_dir_all(self.cfg.root.join("raft"));
            Some(Bootstrap::Join)
        } else {
            p.raft_id = 0;
            p.dek = String::new();
            let _ = std::fs::remove_dir_all(self.cfg.root.join("raft"));
            None
        };
        self.save(&p)?;
        *g = Some(self.launch(p, identity, root, boot).await?);
        Ok(())
    }

    /// The Raft id the leader recorded for this node at its promotion, and the members.
    async fn raft_id_from_leader(
        &self,
        client: &RpcClient,
        target: &str,
        node_id: &str,
    ) -> Result<(u64, Vec<(u64, String)>)> {
        #[derive(Deserialize)]
        struct Answer {
            raft_id: u64,
            members: Vec<(u64, String)>,
        }
        let a: Answer = client
            .post_json(target, "/raft/id", &node_id, RPC_TIMEOUT)
            .await
            .map_err(rpc_err)?;
        Ok((a.raft_id, a.members))
    }

    /// The join tokens of the cluster (managers).
    pub fn tokens(&self, m: &Manager) -> Result<(String, String)> {
        m.read(|s| {
            let c = s
                .cluster
                .as_ref()
                .ok_or_else(|| Error::unavailable(NOT_IN_SWARM))?;
            let root = RootCa::from_pem(&c.root_ca_cert, None)
                .map_err(|e| Error::internal(e.to_string()))?;
            Ok((
                crate::token::token_string(&root, &c.worker_secret),
                crate::token::token_string(&root, &c.manager_secret),
            ))
        })
    }

    /// This node's certificate facts (for `/info`).
    pub async fn identity(&self) -> Option<(String, String)> {
        let g = self.active.lock().await;
        g.as_ref()
            .map(|a| (a.identity.node_id.clone(), a.cluster_id.clone()))
    }

    /// The remote managers known to this node (`/info`'s RemoteManagers).
    pub async fn remote_managers(&self) -> Vec<String> {
        let g = self.active.lock().await;
        g.as_ref()
            .map(|a| a.managers.read().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Unused fields kept for `/info` (listen and advertise addresses).
    pub async fn addrs(&self) -> Option<(String, String)> {
        let g = self.active.lock().await;
        g.as_ref()
            .map(|a| (a.listen_addr.clone(), a.advertise_addr.clone()))
    }
}

fn a_client(identity: &NodeIdentity, root: &RootCa) -> Result<RpcClient> {
    Ok(RpcClient::new(
        tls::client_config(root, Some(identity)).map_err(|e| Error::internal(e.to_string()))?,
    ))
}

async fn wait_leader(m: &Manager, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !m.is_leader() {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::no_leader());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn write_private(path: &std::path::Path, body: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    f.write_all(body)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))
}

/// What a node's certificate tasks share: the certificate presented and the roots trusted
/// (both replaced while servers and clients run), the way to the leader, and the signals
/// between the renewal and the TLS follower.
#[derive(Clone)]
struct Certs {
    cluster: std::sync::Weak<Cluster>,
    live: Arc<tls::LiveIdentity>,
    trust: Arc<tls::LiveTrust>,
    client: RpcClient,
    managers: Arc<RwLock<Vec<String>>>,
    /// Renew now (the cluster wants certificates from another issuer).
    kick: Arc<tokio::sync::Notify>,
    /// A renewed certificate is presented (the follower reports it at once).
    renewed: Arc<tokio::sync::Notify>,
}

/// How long the leader holds a `/tls` call when nothing changed (within `RPC_TIMEOUT`).
const TLS_POLL: Duration = Duration::from_secs(5);

impl Certs {
    /// Renews this node's certificate once it is past its renewal point (between half and
    /// four fifths of its life), or at once when kicked, from the leader, with a fresh key;
    /// the new one is saved (sealed under autolock) and presented from the next handshake on.
    /// A changed role is left to the role follower.
    async fn renew(self, mut identity: NodeIdentity, mut stop: watch::Receiver<bool>) {
        loop {
            let wait = (identity.renew_at() - time::OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let list = self
                .managers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match renew_once(&self.client, &list, &identity).await {
                Ok(next) => {
                    let Some(cluster) = self.cluster.upgrade() else {
                        return;
                    };
                    if let Err(e) = cluster
                        .save_identity(&next)
                        .map_err(|e| e.message)
                        .and_then(|()| self.live.set(&next).map_err(|e| e.to_string()))
                    {
                        tracing::warn!("swarm: keeping the renewed certificate: {e}");
                    } else {
                        tracing::info!("swarm: node certificate renewed until {}", next.not_after);
                        identity = next;
                        self.renewed.notify_one();
                        continue;
                    }
                }
                Err(e) => tracing::warn!("swarm: renewing the node certificate: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = self.kick.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Follows the cluster's TLS state from the leader: trusts the cluster root (and the next
    /// one during a root rotation), keeps the root on disk, renews when the cluster wants
    /// certificates from another issuer, and reports what this node holds
    /// (`Description.TLSInfo`).
    async fn follow_tls(self, mut stop: watch::Receiver<bool>) {
        let root_path = match self.cluster.upgrade() {
            Some(c) => c.certs_dir().join("swarm-root-ca.crt"),
            None => return,
        };
        let mut known: Option<crate::proto::TlsState> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let root_pem = std::fs::read_to_string(&root_path).unwrap_or_default();
            let report = self.report(&root_pem, known.as_ref());
            let req = crate::proto::TlsRequest {
                tls_info: report.clone(),
                known: known.clone(),
                wait_ms: TLS_POLL.as_millis() as u64,
            };
            let list = self
                .managers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let answer = tokio::select! {
                r = post_to_leader::<_, crate::proto::TlsState>(&self.client, &list, "/tls", &req) => r,
                // A renewed certificate is reported at once.
                _ = self.renewed.notified() => continue,
                _ = stop.changed() => return,
            };
            let state = match answer {
                Ok(state) => state,
                Err(e) => {
                    tracing::debug!("swarm: following the cluster's TLS state: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            };
            if let Err(e) = self.apply(&state, &root_pem, &root_path) {
                tracing::warn!("swarm: following the cluster's root CA: {}", e.message);
            }
            let wanted = (&state.issuer_subject, &state.issuer_public_key);
            if !state.issuer_subject.is_empty()
                && wanted != (&report.cert_issuer_subject, &report.cert_issuer_public_key)
            {
                self.kick.notify_one();
            }
            known = Some(state);
        }
    }

    /// What this node holds: its trusted root and its certificate's issuer.
    fn report(&self, root_pem: &str, known: Option<&crate::proto::TlsState>) -> api::TlsInfo {
        let roots: Vec<RootCa> = std::iter::once(root_pem)
            .chain(known.map(|k| k.next_root.as_str()))
            .filter(|pem| !pem.is_empty())
            .filter_map(|pem| RootCa::from_pem(pem, None).ok())
            .collect();
        let refs: Vec<&RootCa> = roots.iter().collect();
        let issuer = crate::ca::leaf_issuer(&self.live.chain(), &refs).unwrap_or_default();
        api::TlsInfo {
            trust_root: root_pem.to_string(),
            cert_issuer_subject: issuer.subject,
            cert_issuer_public_key: issuer.public_key,
        }
    }

    /// Trusts the state's roots, and keeps a changed cluster root on disk.
    fn apply(
        &self,
        state: &crate::proto::TlsState,
        root_pem: &str,
        root_path: &std::path::Path,
    ) -> Result<()> {
        let mut roots = vec![RootCa::from_pem(&state.trust_root, None)
            .map_err(|e| Error::internal(format!("the cluster root CA: {e}")))?];
        if !state.next_root.is_empty() {
            roots.push(
                RootCa::from_pem(&state.next_root, None)
                    .map_err(|e| Error::internal(format!("the next root CA: {e}")))?,
            );
        }
        let refs: Vec<&RootCa> = roots.iter().collect();
        self.trust
            .set(&refs)
            .map_err(|e| Error::internal(e.to_string()))?;
        if state.trust_root != root_pem {
            write_private(root_path, state.trust_root.as_bytes())?;
            tracing::info!("swarm: the cluster root CA changed");
        }
        Ok(())
    }
}

/// The leader's part of a root CA rotation: once every node reports a certificate from the
/// new root, the new root becomes the cluster's.
async fn finish_root_rotations(m: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    let mut applied = m.raft.applied();
    loop {
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = m.finish_root_rotation().await {
            tracing::debug!("swarm: finishing the root CA rotation: {}", e.message);
        }
    }
}

/// One renewal: a fresh key's CSR to the leader.
async fn renew_once(
    client: &RpcClient,
    managers: &[String],
    identity: &NodeIdentity,
) -> std::result::Result<NodeIdentity, String> {
    let key = NodeKey::generate().map_err(|e| e.to_string())?;
    let req = crate::proto::RenewRequest {
        csr_pem: key.csr_pem.clone(),
    };
    let r: crate::proto::RenewResponse = post_to_leader(client, managers, "/renew", &req).await?;
    let next = NodeIdentity::from_pem(&r.cert_pem, &key.key_pem).map_err(|e| e.to_string())?;
    if next.role != identity.role {
        return Err("the node's role is changing".to_string());
    }
    Ok(next)
}

/// POSTs `body` as JSON to the leader, found through the managers' 421 answers.
async fn post_to_leader<T: serde::Serialize + ?Sized, R: serde::de::DeserializeOwned>(
    client: &RpcClient,
    managers: &[String],
    path: &str,
    body: &T,
) -> std::result::Result<R, String> {
    let mut targets = managers.to_vec();
    let mut last = "no manager known".to_string();
    let mut i = 0;
    while i < targets.len() && i < 8 {
        match client
            .post_json::<_, R>(&targets[i], path, body, RPC_TIMEOUT)
            .await
        {
            Ok(r) => return Ok(r),
            Err(RpcError::Status {
                status: 421,
                message,
            }) => {
                if let Some((_, l)) = message.rsplit_once("leader: ") {
                    let l = l.trim().to_string();
                    if !l.is_empty() && !targets[i + 1..].contains(&l) {
                        targets.insert(i + 1, l);
                    }
                }
                last = message;
            }
            Err(e) => last = e.to_string(),
        }
        i += 1;
    }
    Err(last)
}

/// The agent's dispatcher over the swarm port: sticks to the manager that answers, follows a
/// follower's pointer to the leader, and tries the next manager when one is unreachable.
pub struct RpcDispatcher {
    client: RpcClient,
    managers: Arc<RwLock<Vec<String>>>,
    current: Mutex<usize>,
    /// Told to the leader in every session (`--data-path-addr`).
    data_addr: String,
}

impl Dispatcher for RpcDispatcher {
    fn publish(
        &self,
        sub: String,
        data: bytes::Bytes,
        done: bool,
    ) -> BoxFut<'_, std::result::Result<(), String>> {
        Box::pin(async move {
            // The session's manager is the leader, which holds the subscription.
            let addr = self
                .current_manager()
                .ok_or_else(|| "no manager known".to_string())?;
            let path = format!("/logs/publish?sub={sub}&done={}", u8::from(done));
            self.client
                .post_bytes(&addr, &path, data, RPC_TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn session(
        &self,
        mut req: SessionRequest,
    ) -> BoxFut<'_, std::result::Result<SessionResponse, String>> {
        Box::pin(async move {
            req.data_addr = self.data_addr.clone();
            let list = self
                .managers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if list.is_empty() {
                return Err("no manager known".to_string());
            }
            let i = *self.current.lock().unwrap_or_else(|e| e.into_inner()) % list.len();
            let addr = list[i].clone();
            let timeout = Duration::from_millis(req.wait_ms) + Duration::from_secs(5);
            match self
                .client
                .post_json::<_, SessionResponse>(&addr, "/session", &req, timeout)
                .await
            {
                Ok(resp) => {
                    if !resp.managers.is_empty() {
                        let mut m = self.managers.write().unwrap_or_else(|e| e.into_inner());
                        if *m != resp.managers {
                            *m = resp.managers.clone();
                            if let Some(pos) = m.iter().position(|x| *x == addr) {
                                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = pos;
                            }
                        }
                    }
                    Ok(resp)
                }
                Err(RpcError::Status {
                    status: 421,
                    message,
                }) => {
                    // A follower names the leader: go there (learning its address if new).
                    let leader = message
                        .rsplit_once("leader: ")
                        .map(|(_, a)| a.trim().to_string())
                        .filter(|a| !a.is_empty());
                    let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
                    match leader {
                        Some(l) => {
                            let mut m = self.managers.write().unwrap_or_else(|e| e.into_inner());
                            *cur = match m.iter().position(|x| *x == l) {
                                Some(pos) => pos,
                                None => {
                                    m.push(l);
                                    m.len() - 1
                                }
                            };
                        }
                        None => *cur = (i + 1) % list.len(),
                    }
                    Err(message)
                }
                Err(e) => {
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = (i + 1) % list.len();
                    Err(e.to_string())
                }
            }
        })
    }
}

impl RpcDispatcher {
    fn current_manager(&self) -> Option<String> {
        let list = self.managers.read().unwrap_or_else(|e| e.into_inner());
        if list.is_empty() {
            return None;
        }
        let i = *self.current.lock().unwrap_or_else(|e| e.into_inner()) % list.len();
        Some(list[i].clone())
    }
}

/// The swarm port's request handler on a manager.
struct Port {
    manager: Arc<Manager>,
    /// The Raft ids of the members this manager was given when it joined (empty for others):
    /// until the cluster's state reaches it, only they may step its Raft node.
    join_members: Arc<Vec<u64>>,
}

impl Port {
    /// What issues node certificates now: the root CA with its key (from the replicated
    /// cluster record), or during a root rotation the next root, whose certificates carry the
    /// cross-signed root after them. Issues for `csr_pem`, chain included.
    fn issue(&self, csr_pem: &str, node_id: &str, role: NodeRole) -> Result<String> {
        let (cert, key, chain, cluster_id) = self.manager.read(|s| {
            let c = s
                .cluster
                .as_ref()
                .ok_or_else(|| Error::unavailable(NOT_IN_SWARM))?;
            Ok::<_, Error>(match &c.root_rotation {
                Some(r) => (
                    r.ca_cert.clone(),
                    r.ca_key.clone(),
                    r.cross_signed_cert.clone(),
                    c.id.clone(),
                ),
                None => (
                    c.root_ca_cert.clone(),
                    c.root_ca_key.clone(),
                    String::new(),
                    c.id.clone(),
                ),
            })
        })?;
        let issuer =
            RootCa::from_pem(&cert, Some(&key)).map_err(|e| Error::internal(e.to_string()))?;
        let mut leaf = issuer
            .issue(
                csr_pem,
                node_id,
                role,
                &cluster_id,
                self.manager.read(|s| s.cert_expiry()),
            )
            .map_err(|e| Error::invalid(e.to_string()))?;
        if !chain.is_empty() {
            if !leaf.ends_with('\n') {
                leaf.push('\n');
            }
            leaf.push_str(&chain);
        }
        Ok(leaf)
    }

    async fn join(&self, remote: SocketAddr, req: JoinRequest) -> Result<JoinResponse> {
        let m = &self.manager;
        if !m.is_leader() {
            return Err(Error::new(
                421,
                format!(
                    "not the leader; leader: {}",
                    m.leader_addr().unwrap_or_default()
                ),
            ));
        }
        let token = JoinToken::parse(&req.token).map_err(|e| Error::invalid(e.to_string()))?;
        let (cluster_id, worker, manager, root_pem) = m.read(|s| {
            s.cluster
                .as_ref()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.worker_secret.clone(),
                        c.manager_secret.clone(),
                        c.root_ca_cert.clone(),
                    )
                })
                .ok_or_else(|| Error::unavailable(NOT_IN_SWARM))
        })?;
        // The token pins the cluster's root (the current one during a rotation).
        let root = RootCa::from_pem(&root_pem, None).map_err(|e| Error::internal(e.to_string()))?;
        let secret = hex(&token.secret);
        let role = if crate::token::ct_eq(secret.as_bytes(), manager.as_bytes())
            && token.check_root(&root.digest()).is_ok()
        {
            NodeRole::Manager
        } else if crate::token::ct_eq(secret.as_bytes(), worker.as_bytes())
            && token.check_root(&root.digest()).is_ok()
        {
            NodeRole::Worker
        } else {
            return Err(Error::invalid(
                "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster",
            ));
        };
        check_availability(&req.availability)?;
        let node_id = ids::new_id();
        let cert = self.issue(&req.csr_pem, &node_id, role)?;
        let now = berth_api::timefmt::now();
        let is_manager = role == NodeRole::Manager;
        if is_manager && (req.raft_id == 0 || req.advertise_addr.is_empty()) {
            return Err(Error::invalid(
                "a joining manager must give its raft id and address",
            ));
        }
        // A raft id names one member for good: one in use (or used by a recorded node) would
        // let the joiner speak as another manager.
        if is_manager
            && (m
                .raft
                .status()
                .members
                .iter()
                .any(|(id, _)| *id == req.raft_id)
                || m.read(|s| s.nodes.values().any(|n| n.raft_id == req.raft_id)))
        {
            return Err(Error::invalid(format!(
                "raft id {} is already in use in this swarm",
                req.raft_id
            )));
        }
        let node = NodeRec {
            id: node_id.clone(),
            version: 0,
            created_at: now.clone(),
            updated_at: now.clone(),
            spec: api::NodeSpec {
                role: if is_manager { "manager" } else { "worker" }.to_string(),
                availability: if req.availability.is_empty() {
                    "active".to_string()
                } else {
                    req.availability.clone()
                },
                ..Default::default()
            },
            description: req.description.clone(),
            state: NodeState::Unknown,
            message: String::new(),
            addr: remote.ip().to_string(),
            raft_id: if is_manager { req.raft_id } else { 0 },
            manager_addr: if is_manager {
                req.advertise_addr.clone()
            } else {
                String::new()
            },
            advertise_addr: req.advertise_addr.clone(),
            ingress_addr: String::new(),
        };
        // The node is recorded first: once it is a voter, nothing commits until it runs.
        m.propose(Command::AddNode {
            node: Box::new(node),
        })
        .await?;
        if is_manager {
            m.raft
                .add_voter(req.raft_id, req.advertise_addr.clone())
                .await
                .map_err(|_| Error::no_leader())?;
        }
        let (members, managers) = m.read(|s| {
            let members = s.raft_members();
            let managers = members.iter().map(|(_, a)| a.clone()).collect();
            (members, managers)
        });
        Ok(JoinResponse {
            node_id,
            role: if is_manager { "manager" } else { "worker" }.to_string(),
            cluster_id,
            cert_pem: cert,
            root_ca_pem: root.cert_pem().to_string(),
            members,
            managers,
        })
    }

    async fn handle(
        &self,
        peer: Option<PeerInfo>,
        remote: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<RpcResponse> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/ca") => {
                let pem = self
                    .manager
                    .read(|s| s.cluster.as_ref().map(|c| c.root_ca_cert.clone()));
                let pem = pem.ok_or_else(|| Error::unavailable(NOT_IN_SWARM))?;
                Ok(hyper::Response::new(rpc::ReplyBody::whole(pem)))
            }
            (Method::POST, "/join") => {
                // Unauthenticated: a small body only (a CSR and a node description).
                let raw = rpc::read_body(req.into_body(), 256 * 1024)
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let body: JoinRequest = serde_json::from_slice(&raw)
                    .map_err(|e| Error::invalid(format!("invalid join request: {e}")))?;
                let resp = self.join(remote, body).await?;
                Ok(rpc::json_response(StatusCode::OK, &resp))
            }
            (_, _) => {
                let peer = peer.ok_or_else(|| Error::new(401, "a node certificate is required"))?;
                let cluster = self
                    .manager
                    .read(|s| s.cluster.as_ref().map(|c| c.id.clone()));
                if cluster.as_deref().is_some_and(|c| c != peer.cluster_id) {
                    return Err(Error::new(403, "certificate of another cluster"));
                }
                self.authenticated(peer, remote, req).await
            }
        }
    }

    async fn authenticated(
        &self,
        peer: PeerInfo,
        remote: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<RpcResponse> {
        let path = req.uri().path().to_string();
        let m = &self.manager;
        // Nodes removed from the cluster lose access even with a valid certificate.
        if !m.read(|s| s.nodes.contains_key(&peer.node_id)) && m.read(|s| s.cluster.is_some()) {
            return Err(Error::new(
                403,
                format!("node {} is not a member of this swarm", peer.node_id),
            ));
        }
        match path.as_str() {
            "/session" => {
                let body: SessionRequest = rpc::read_json(req.into_body())
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                // Overlay traffic goes to the node's data-path address when it has one.
                let data = unicast_v4(&body.data_addr)
                    .map_or_else(|| remote.ip().to_string(), |ip| ip.to_string());
                let resp = m.session(&peer.node_id, &data, body).await?;
                Ok(rpc::json_response(StatusCode::OK, &resp))
            }
            "/leave" => {
                m.node_left(&peer.node_id).await?;
                Ok(rpc::json_response(StatusCode::OK, &serde_json::Value::Null))
            }
            "/attach" => {
                let body: crate::proto::AttachRequest = rpc::read_json(req.into_body())
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let resp = m.attach(&peer.node_id, body).await?;
                Ok(rpc::json_response(StatusCode::OK, &resp))
            }
            "/logs/subscribe" => {
                // A manager's reader of service or task logs, forwarded to the leader: a
                // manager by the store (a demoted node's certificate says manager until it is
                // renewed).
                let manager = m.read(|s| {
                    s.nodes
                        .get(&peer.node_id)
                        .is_some_and(|n| n.spec.role == "manager")
                });
                if peer.role != NodeRole::Manager || !manager {
                    return Err(Error::new(403, "only managers read logs"));
                }
                m.ensure_leader()?;
                let body: crate::proto::SubscribeRequest = rpc::read_json(req.into_body())
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let rx = m.logs.subscribe(body.tasks, body.options);
                Ok(hyper::Response::new(rpc::ReplyBody::Stream(rx)))
            }
            "/logs/publish" => {
                m.ensure_leader()?;
                let query = req.uri().query().unwrap_or_default().to_string();
                let mut sub = String::new();
                let mut done = false;
                for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                    match k {
                        "sub" => sub = v.to_string(),
                        "done" => done = v == "1",
                        _ => {}
                    }
                }
                let data = rpc::read_body(req.into_body(), rpc::MAX_JSON_BODY)
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                m.logs.publish(&sub, &peer.node_id, data, done).await?;
                Ok(rpc::json_response(StatusCode::OK, &serde_json::Value::Null))
            }
            "/renew" => {
                m.ensure_leader()?;
                let body: crate::proto::RenewRequest = rpc::read_json(req.into_body())
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let role = m.read(|s| {
                    s.nodes
                        .get(&peer.node_id)
                        .map(|n| n.spec.role.clone())
                        .unwrap_or_default()
                });
                let r = if role == "manager" {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                };
                let cert = self.issue(&body.csr_pem, &peer.node_id, r)?;
                Ok(rpc::json_response(
                    StatusCode::OK,
                    &crate::proto::RenewResponse {
                        cert_pem: cert,
                        role,
                    },
                ))
            }
            "/tls" => {
                let body: crate::proto::TlsRequest = rpc::read_json(req.into_body())
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let state = m.node_tls(&peer.node_id, body).await?;
                Ok(rpc::json_response(StatusCode::OK, &state))
            }
            "/raft/id" => {
                let id = m.read(|s| s.nodes.get(&peer.node_id).map(|n| n.raft_id).unwrap_or(0));
                let members = m.raft.status().members;
                Ok(rpc::json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "raft_id": id, "members": members }),
                ))
            }
            "/raft/step" | "/raft/snapshot" => {
                // Only a current member takes part, and only under its own Raft id (a demoted
                // node's certificate still says manager until it is renewed).
                let raft_id =
                    m.read(|s| s.nodes.get(&peer.node_id).map(|n| n.raft_id).unwrap_or(0));
                let member = m.raft.status().members.iter().any(|(id, _)| *id == raft_id);
                let joining = m.read(|s| s.cluster.is_none());
                if peer.role != NodeRole::Manager || ((raft_id == 0 || !member) && !joining) {
                    return Err(Error::new(403, "only managers take part in raft"));
                }
                let msgs = if path == "/raft/step" {
                    let body = rpc::read_body(req.into_body(), crate::net_transport::MAX_STEP_BODY)
                        .await
                        .map_err(|e| Error::invalid(e.to_string()))?;
                    crate::net_transport::decode_step_body(&body)
                        .map_err(|e| Error::invalid(e.to_string()))?
                } else {
                    vec![crate::net_transport::read_snapshot_body(
                        req.into_body(),
                        crate::net_transport::MAX_SNAPSHOT,
                    )
                    .await
                    .map_err(|e| Error::invalid(e.to_string()))?]
                };
                if !step_allowed(joining, raft_id, &self.join_members, &msgs) {
                    return Err(Error::new(
                        403,
                        "raft messages must come from the sender's own id",
                    ));
                }
                for msg in msgs {
                    m.raft.step(msg);
                }
                Ok(rpc::json_response(StatusCode::OK, &serde_json::Value::Null))
            }
            _ => Err(Error::not_found(format!("no route {path}"))),
        }
    }
}

impl rpc::Handler for Port {
    fn call(&self, peer: Option<PeerInfo>, req: Request<Incoming>) -> rpc::HandlerFuture {
        let remote = req
            .extensions()
            .get::<SocketAddr>()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let port = Port {
            manager: self.manager.clone(),
            join_members: self.join_members.clone(),
        };
        Box::pin(async move {
            match port.handle(peer, remote, req).await {
                Ok(r) => r,
                Err(e) => rpc::error_response(
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    &e.message,
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::RaftView;

    fn manager(id: &str, raft_id: u64, state: NodeState) -> NodeRec {
        NodeRec {
            id: id.to_string(),
            raft_id,
            state,
            ..Default::default()
        }
    }

    #[test]
    fn raft_steps_come_from_the_senders_id_or_known_members_while_joining() {
        let from = |id: u64| ::raft::eraftpb::Message {
            from: id,
            ..Default::default()
        };
        assert!(step_allowed(false, 7, &[], &[from(7), from(7)]));
        assert!(!step_allowed(false, 7, &[], &[from(7), from(8)]));
        // Joining: only the members named at join, whoever sends.
        assert!(step_allowed(true, 0, &[1, 2], &[from(1), from(2)]));
        assert!(!step_allowed(true, 0, &[1, 2], &[from(9)]));
        assert!(!step_allowed(true, 0, &[], &[from(1)]));
    }

    #[test]
    fn data_path_and_availability_requests_are_checked() {
        check_data_path_port(0).unwrap();
        check_data_path_port(4789).unwrap();
        let e = check_data_path_port(80).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                400,
                "Datapath port number is not in valid range (1024-49151) : 80"
            )
        );
        let e = check_data_path_port(4790).unwrap_err();
        assert_eq!(
            e.message,
            "berth's overlay networks use VXLAN port 4789: --data-path-port 4790 is not supported"
        );
        assert_eq!(data_path_addr("", "10.1.0.2").unwrap(), "");
        assert_eq!(data_path_addr("10.1.0.2", "10.1.0.2").unwrap(), "");
        assert_eq!(data_path_addr("lo", "10.1.0.2").unwrap(), "127.0.0.1");
        assert_eq!(data_path_addr("10.1.0.3", "10.1.0.2").unwrap(), "10.1.0.3");
        let e = data_path_addr("224.0.0.1", "10.1.0.2").unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                400,
                "--data-path-addr 224.0.0.1: overlay networks need a unicast IPv4 address"
            )
        );
        for a in ["", "active", "pause", "drain"] {
            check_availability(a).unwrap();
        }
        let e = check_availability("foo").unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                400,
                "rpc error: code = InvalidArgument desc = invalid availability: foo"
            )
        );
    }

    #[test]
    fn manager_leave_is_refused_with_mobys_texts() {
        let mut s = crate::store::State::default();
        for (id, raft, st) in [
            ("a", 1, NodeState::Ready),
            ("b", 2, NodeState::Ready),
            ("c", 3, NodeState::Ready),
        ] {
            s.nodes.insert(id.to_string(), manager(id, raft, st));
        }
        // Seen from the leader: members heard from recently are the reachable ones.
        let all = RaftView {
            leader: 1,
            active: vec![1, 2, 3],
        };
        let stats = manager_stats(&s, "b", &all);
        assert_eq!(stats, (true, 3, 0));
        assert_eq!(
            manager_leave_refusal(stats),
            "You are attempting to leave the swarm on a node that is participating as a manager. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
        );
        let one_down = RaftView {
            leader: 1,
            active: vec![1, 2],
        };
        let stats = manager_stats(&s, "b", &one_down);
        assert_eq!(stats, (true, 2, 1));
        assert_eq!(
            manager_leave_refusal(stats),
            "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves 1 managers out of 3. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
        );
        // Elsewhere than on the leader, node states decide (as `node ls` shows them).
        s.nodes.get_mut("c").unwrap().state = NodeState::Down;
        let follower = RaftView {
            leader: 1,
            active: Vec::new(),
        };
        assert_eq!(manager_stats(&s, "b", &follower), (true, 2, 1));
        let mut last = crate::store::State::default();
        last.nodes
            .insert("a".to_string(), manager("a", 1, NodeState::Ready));
        assert_eq!(
            manager_leave_refusal(manager_stats(&last, "a", &follower)),
            "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. "
        );
    }
}
