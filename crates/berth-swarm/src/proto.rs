//! The messages nodes exchange over the swarm port: the agent's session with the dispatcher
//! (heartbeat, task states up, assignments down) and a joining node's request and answer.

use berth_api::swarm as api;
use serde::{Deserialize, Serialize};

/// One call of an agent's session: a heartbeat that carries the task states that changed and
/// asks for the node's assignments once they differ from `known` (long poll up to `wait_ms`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Sent on the first call of a session and when it changes.
    pub description: Option<api::NodeDescription>,
    pub statuses: Vec<(String, api::TaskStatus)>,
    /// The digest of the assignments the agent holds ("" at first).
    pub known: String,
    pub wait_ms: u64,
    /// The log subscriptions the agent serves (the long poll also ends when they differ).
    #[serde(default)]
    pub log_subs: Vec<String>,
}

/// What a log reader asks of a task's container (the Engine API's log query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    pub details: bool,
    /// The last lines of each task; None for all.
    pub tail: Option<usize>,
    /// Nanoseconds since the epoch; lines before are skipped.
    pub since: Option<i64>,
}

/// A log subscription as a node serving it sees it: its tasks on that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSubscription {
    pub id: String,
    pub tasks: Vec<String>,
    pub options: LogOptions,
}

/// `POST /logs/subscribe` from a manager to the leader: the tasks as (task id, node id).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscribeRequest {
    pub tasks: Vec<(String, String)>,
    pub options: LogOptions,
}

/// A secret or config a task on the node needs, with its content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Payload {
    pub id: String,
    pub name: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The digest of `tasks` + `secrets` + `configs`; equal to the request's `known` when the
    /// long poll ended without a change (then the lists are empty and `unchanged` is set).
    pub digest: String,
    pub unchanged: bool,
    pub tasks: Vec<api::Task>,
    /// Service names by id, for container names and labels.
    pub services: Vec<(String, String)>,
    /// Published ports by service id (host-mode ones are bound by the node running the task).
    pub ports: Vec<(String, Vec<api::PortConfig>)>,
    pub secrets: Vec<Payload>,
    pub configs: Vec<Payload>,
    /// The managers' swarm addresses (the agent fails over to them).
    pub managers: Vec<String>,
    /// How often the agent must call again at the latest.
    pub heartbeat_ms: u64,
    /// This node's role as the cluster sees it ("manager" | "worker").
    pub role: String,
    /// The log subscriptions this node must serve now.
    #[serde(default)]
    pub logs: Vec<LogSubscription>,
}

/// `POST /join` from a node with a join token (before it has a certificate).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub csr_pem: String,
    /// The node's description, as its agent would report it.
    pub description: api::NodeDescription,
    pub availability: String,
    /// Managers: the address other managers reach it at, and its new Raft id.
    pub advertise_addr: String,
    pub raft_id: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: String,
    pub role: String,
    pub cluster_id: String,
    pub cert_pem: String,
    pub root_ca_pem: String,
    /// Raft members (id, address) a joining manager starts with.
    pub members: Vec<(u64, String)>,
    pub managers: Vec<String>,
}

/// `POST /renew`: a node's CSR for a fresh certificate (authenticated by its current one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RenewResponse {
    pub cert_pem: String,
    pub role: String,
}

/// `POST /tls`: what a node holds (its certificate's issuer, the root it trusts) and the
/// cluster's TLS state it last heard; the leader answers once that state differs from
/// `known` (long poll up to `wait_ms`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TlsRequest {
    pub tls_info: api::TlsInfo,
    pub known: Option<TlsState>,
    pub wait_ms: u64,
}

/// The cluster's TLS state as nodes follow it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsState {
    /// The cluster's root CA certificate, PEM.
    pub trust_root: String,
    /// During a root rotation, the next root (trusted beside the current one); else "".
    pub next_root: String,
    /// The issuer node certificates must come from (raw subject and SubjectPublicKeyInfo).
    pub issuer_subject: Vec<u8>,
    pub issuer_public_key: Vec<u8>,
}
