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
    /// The network attachments of plain containers the node still has (None: not told).
    #[serde(default)]
    pub attachments: Option<Vec<String>>,
    /// The node's data-path address (`--data-path-addr`), "" for the session's source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_addr: String,
}

/// `POST /attach`: a plain container on this node joins attachable swarm network `network`
/// (id or name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttachRequest {
    pub network: String,
    pub container: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttachResponse {
    pub id: String,
    pub network: api::Network,
    /// The container's address there (IPv4, no prefix).
    pub address: String,
}

/// `POST /detach`: attachments the node no longer has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetachRequest {
    pub ids: Vec<String>,
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
    /// The swarm networks this node takes part in (its tasks', and the ingress network on
    /// every node while a service publishes through it).
    #[serde(default)]
    pub networks: Vec<NetworkView>,
}

/// A swarm network as one node needs it to carry its endpoints' traffic: the record, the
/// endpoints on other nodes, the names its DNS answers and its load-balanced addresses.
/// Addresses are IPv4 without a prefix; a node's address is its data-path address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkView {
    pub network: api::Network,
    /// This node's own address on the ingress network ("" on the others).
    pub node_addr: String,
    /// Endpoints on other nodes: (address, the node's address).
    pub peers: Vec<(String, String)>,
    /// What the network's DNS answers: (address, names). Only running tasks' addresses.
    pub names: Vec<(String, Vec<String>)>,
    /// Services' virtual IPs with their running tasks' addresses.
    pub vips: Vec<(String, Vec<String>)>,
    /// Ingress: every node's mesh address (a reply returns through the node that took the
    /// connection).
    pub mesh_nodes: Vec<String>,
    /// Ingress: the ports the routing mesh publishes.
    pub ingress_ports: Vec<IngressPortView>,
    /// Encrypted networks only: the cluster's network encryption keys, oldest first.
    #[serde(default)]
    pub keys: Vec<NetworkKey>,
    /// Encrypted networks only: the tag of the key outgoing traffic uses (0: none).
    #[serde(default)]
    pub primary_key: u32,
}

/// A key of encrypted overlay networks (IPsec ESP between nodes, AES-128-GCM): made by the
/// leader, kept in the replicated state (sealed at rest with the rest of the Raft data),
/// rotated every 12 hours, and sent only to the nodes of encrypted networks (their sessions
/// are mutual TLS).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkKey {
    /// Unique in the cluster, from 1, one more for each new key.
    pub tag: u32,
    pub key: [u8; 16],
    pub salt: [u8; 4],
    /// When the leader made it (seconds since the epoch).
    pub created_unix: u64,
}

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NetworkKey {{ tag: {}, created_unix: {}, .. }}",
            self.tag, self.created_unix
        )
    }
}

/// A port published through the routing mesh, with the running tasks behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPortView {
    /// "tcp" | "udp".
    pub protocol: String,
    pub published: u32,
    pub target: u32,
    /// The tasks' ingress addresses.
    pub backends: Vec<String>,
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
