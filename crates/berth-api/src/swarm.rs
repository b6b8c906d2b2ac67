//! Swarm bodies: swarm, nodes, services, tasks, secrets and configs, the swarm init/join/unlock
//! requests and the `Swarm` section of `/info`, written member for member as dockerd writes them.

// Go's `omitempty` members are left out when empty and the others are always written; Go
// `time.Duration` values are `i64` nanoseconds, timestamps RFC 3339 strings (an empty one is
// written as Go's zero time, which clients can parse), and Go byte slices base64 text.

use crate::container::{HealthConfig, Ulimit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Write a float32 as Go does: a whole number without a fraction (`0`, `1`), others in the
/// shortest decimal that reads back as the same float32 (`0.15`, not `0.15000000596046448`,
/// also when the value goes through a [`serde_json::Value`]).
fn go_float<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(v.to_string().parse::<f64>().unwrap_or(f64::from(*v)))
    }
}

/// Write a timestamp that Go keeps in a (never omitted) `time.Time`: empty means the zero time.
fn time_or_zero<S: Serializer>(t: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if t.is_empty() {
        crate::timefmt::ZERO
    } else {
        t
    })
}

/// Go's `[]byte` in JSON: standard base64 with padding.
mod bytes_b64 {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine as _;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Go's StdEncoding; decoding also takes input without padding.
    const STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    pub fn encode(data: &[u8]) -> String {
        STD.encode(data)
    }

    /// Line breaks are skipped, as Go's decoder does.
    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        let clean: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        STD.decode(clean)
            .map_err(|e| format!("illegal base64 data: {e}"))
    }

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        decode(&text).map_err(D::Error::custom)
    }
}

/// A closed set of state names that the swarm itself reports, as a Rust enum whose first
/// variant is the default. An empty string (Go's zero value) or `null` decodes as the default;
/// a name outside the set is an error.
macro_rules! state_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal,
        { $first:ident => $first_text:literal, $($variant:ident => $text:literal,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            #[doc = concat!("`", $first_text, "`")]
            #[default]
            $first,
            $(
                #[doc = concat!("`", $text, "`")]
                $variant,
            )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$name::$first, $($name::$variant),*];

            /// The name the API uses.
            pub fn as_str(self) -> &'static str {
                match self {
                    $name::$first => $first_text,
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    "" | $first_text => Ok($name::$first),
                    $($text => Ok($name::$variant),)*
                    other => Err(format!(concat!("invalid ", $what, " {:?}"), other)),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = Option::<String>::deserialize(d)?.unwrap_or_default();
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

state_enum! {
    /// The state of a task (`Status.State`, `DesiredState`). The order is swarmkit's: a task
    /// only moves forward, and every state after `Running` is terminal.
    TaskState, "task state",
    {
        New => "new",
        Allocated => "allocated",
        Pending => "pending",
        Assigned => "assigned",
        Accepted => "accepted",
        Preparing => "preparing",
        Ready => "ready",
        Starting => "starting",
        Running => "running",
        Complete => "complete",
        Shutdown => "shutdown",
        Failed => "failed",
        Rejected => "rejected",
        Remove => "remove",
        Orphaned => "orphaned",
    }
}

impl TaskState {
    /// Whether a task in this state has ended (nothing runs and nothing will).
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }
}

state_enum! {
    /// A node's state as the managers see it (`Status.State`).
    NodeState, "node state",
    {
        Unknown => "unknown",
        Down => "down",
        Ready => "ready",
        Disconnected => "disconnected",
    }
}

state_enum! {
    /// Whether a manager is reachable by the other managers (`ManagerStatus.Reachability`).
    Reachability, "reachability",
    {
        Unknown => "unknown",
        Unreachable => "unreachable",
        Reachable => "reachable",
    }
}

state_enum! {
    /// This engine's place in a swarm (`/info` `Swarm.LocalNodeState`).
    LocalNodeState, "local node state",
    {
        Inactive => "inactive",
        Pending => "pending",
        Active => "active",
        Error => "error",
        Locked => "locked",
    }
}

/// `NodeSpec.Role` values.
pub mod node_role {
    pub const WORKER: &str = "worker";
    pub const MANAGER: &str = "manager";
}

/// `NodeSpec.Availability` values (also `Availability` of init and join requests).
pub mod node_availability {
    pub const ACTIVE: &str = "active";
    pub const PAUSE: &str = "pause";
    pub const DRAIN: &str = "drain";
}

/// `RestartPolicy.Condition` values.
pub mod restart_condition {
    pub const NONE: &str = "none";
    pub const ON_FAILURE: &str = "on-failure";
    pub const ANY: &str = "any";
}

/// `UpdateConfig.FailureAction` values.
pub mod failure_action {
    pub const PAUSE: &str = "pause";
    pub const CONTINUE: &str = "continue";
    pub const ROLLBACK: &str = "rollback";
}

/// `UpdateConfig.Order` values.
pub mod update_order {
    pub const STOP_FIRST: &str = "stop-first";
    pub const START_FIRST: &str = "start-first";
}

/// `UpdateStatus.State` values.
pub mod update_state {
    pub const UPDATING: &str = "updating";
    pub const PAUSED: &str = "paused";
    pub const COMPLETED: &str = "completed";
    pub const ROLLBACK_STARTED: &str = "rollback_started";
    pub const ROLLBACK_PAUSED: &str = "rollback_paused";
    pub const ROLLBACK_COMPLETED: &str = "rollback_completed";
}

/// `EndpointSpec.Mode` values.
pub mod resolution_mode {
    pub const VIP: &str = "vip";
    pub const DNSRR: &str = "dnsrr";
}

/// `PortConfig.PublishMode` values.
pub mod publish_mode {
    pub const INGRESS: &str = "ingress";
    pub const HOST: &str = "host";
}

/// `TaskSpec.Runtime` values.
pub mod runtime_type {
    pub const CONTAINER: &str = "container";
    pub const PLUGIN: &str = "plugin";
    pub const ATTACHMENT: &str = "attachment";
}

// ---------------------------------------------------------------------------------------------
// Common pieces
// ---------------------------------------------------------------------------------------------

/// `Version` of every swarm object: the store index of its last write, sent back with updates.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ObjectVersion {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub index: u64,
}

/// A driver and its options (log driver, secret driver, templating, IPAM and network drivers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Driver {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// An OS and architecture (node description, placement platforms).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Platform {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(rename = "OS", skip_serializing_if = "String::is_empty")]
    pub os: String,
}

/// The issuer of the swarm's leaf certificates and the trusted root CA.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TlsInfo {
    /// The root CA certificate(s), PEM.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trust_root: String,
    /// The raw (DER) subject of the issuer; base64 in JSON.
    #[serde(with = "bytes_b64", skip_serializing_if = "Vec::is_empty")]
    pub cert_issuer_subject: Vec<u8>,
    /// The raw (DER SubjectPublicKeyInfo) public key of the issuer; base64 in JSON.
    #[serde(with = "bytes_b64", skip_serializing_if = "Vec::is_empty")]
    pub cert_issuer_public_key: Vec<u8>,
}

/// A named generic resource (`GPU=UUID1`) or a counted one (`SSD=3`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct GenericResource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub named_resource_spec: Option<NamedGenericResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteGenericResource>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamedGenericResource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiscreteGenericResource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub value: i64,
}

/// A node's resources, or what a task reserves (`Reservations`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    #[serde(rename = "NanoCPUs", skip_serializing_if = "is_zero_i64")]
    pub nano_cpus: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub memory_bytes: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
}

/// What a task may use at most (`Limits`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Limit {
    #[serde(rename = "NanoCPUs", skip_serializing_if = "is_zero_i64")]
    pub nano_cpus: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub memory_bytes: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub pids: i64,
}

// ---------------------------------------------------------------------------------------------
// Swarm
// ---------------------------------------------------------------------------------------------

/// `SwarmSpec`: the user-modifiable swarm configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub orchestration: OrchestrationConfig,
    pub raft: RaftConfig,
    pub dispatcher: DispatcherConfig,
    #[serde(rename = "CAConfig")]
    pub ca_config: CaConfig,
    pub task_defaults: TaskDefaults,
    pub encryption_config: EncryptionConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct OrchestrationConfig {
    /// Historic tasks kept per slot (or node); negative keeps them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_history_retention_limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RaftConfig {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub snapshot_interval: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_old_snapshots: Option<u64>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub log_entries_for_slow_followers: u64,
    pub election_tick: i64,
    pub heartbeat_tick: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DispatcherConfig {
    /// Nanoseconds between an agent's heartbeats.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub heartbeat_period: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaConfig {
    /// Nanoseconds node certificates are issued for.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub node_cert_expiry: i64,
    #[serde(rename = "ExternalCAs", skip_serializing_if = "Vec::is_empty")]
    pub external_cas: Vec<ExternalCa>,
    #[serde(rename = "SigningCACert", skip_serializing_if = "String::is_empty")]
    pub signing_ca_cert: String,
    #[serde(rename = "SigningCAKey", skip_serializing_if = "String::is_empty")]
    pub signing_ca_key: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub force_rotate: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExternalCa {
    /// `cfssl`, the only protocol.
    pub protocol: String,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "CACert")]
    pub ca_cert: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<Driver>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EncryptionConfig {
    pub auto_lock_managers: bool,
}

/// `ClusterInfo`: the swarm as `/info` shows it (no join tokens).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ClusterInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    pub spec: SwarmSpec,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
    pub root_rotation_in_progress: bool,
    /// CIDR prefixes global-scope networks get their subnets from.
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
}

/// The tokens workers and managers join with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

/// `GET /swarm`: the cluster info with the join tokens beside its members.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    #[serde(flatten)]
    pub cluster: ClusterInfo,
    pub join_tokens: JoinTokens,
}

/// By hand rather than derived: serde's `flatten` buffers members in a form that loses the
/// decoding rules of [`crate::decode`], so `JoinTokens` is taken out and each part decoded
/// leniently.
impl<'de> Deserialize<'de> for Swarm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut members = match serde_json::Value::deserialize(d)? {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => return Err(D::Error::custom("a swarm must be a JSON object")),
        };
        let mut join_tokens = JoinTokens::default();
        for (_, v) in crate::decode::take_members(&mut members, &["JoinTokens"]) {
            join_tokens = crate::decode::from_value(v).map_err(D::Error::custom)?;
        }
        let cluster = crate::decode::from_value(serde_json::Value::Object(members))
            .map_err(D::Error::custom)?;
        Ok(Swarm {
            cluster,
            join_tokens,
        })
    }
}

/// `POST /swarm/init` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInitRequest {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub data_path_addr: String,
    pub data_path_port: u32,
    pub force_new_cluster: bool,
    pub spec: SwarmSpec,
    pub auto_lock_managers: bool,
    /// See [`node_availability`]; empty means active.
    pub availability: String,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
}

/// `POST /swarm/join` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmJoinRequest {
    pub listen_addr: String,
    pub advertise_addr: String,
    pub data_path_addr: String,
    pub remote_addrs: Vec<String>,
    pub join_token: String,
    pub availability: String,
}

/// `POST /swarm/unlock` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmUnlockRequest {
    pub unlock_key: String,
}

/// `GET /swarm/unlockkey` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct UnlockKeyResponse {
    pub unlock_key: String,
}

/// A manager as `/info` lists it in `RemoteManagers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeerNode {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub addr: String,
}

/// The `Swarm` section of `GET /info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: LocalNodeState,
    pub control_available: bool,
    pub error: String,
    /// `null` when not in a swarm.
    pub remote_managers: Option<Vec<PeerNode>>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub nodes: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub managers: i64,
    /// Present on managers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// `NodeSpec`: what `POST /nodes/{id}/update` sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// See [`node_role`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// See [`node_availability`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub availability: String,
}

/// A plugin an engine offers (`Type` is `Log`, `Network`, `Volume`...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginDescription {
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EngineDescription {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub engine_version: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginDescription>,
}

/// What a node's agent reports about its machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDescription {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    pub platform: Platform,
    pub resources: Resources,
    pub engine: EngineDescription,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeStatus {
    pub state: NodeState,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The node's IP address as the managers see it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ManagerStatus {
    #[serde(skip_serializing_if = "is_false")]
    pub leader: bool,
    pub reachability: Reachability,
    /// `host:port` the manager is reached at.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

/// `GET /nodes/{id}` and each entry of `GET /nodes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    /// Present on managers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

// ---------------------------------------------------------------------------------------------
// Task specs (the container a service runs)
// ---------------------------------------------------------------------------------------------

/// `Mounts[].BindOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    #[serde(skip_serializing_if = "is_false")]
    pub non_recursive: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub create_mountpoint: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only_non_recursive: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only_force_recursive: bool,
}

/// `Mounts[].VolumeOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    #[serde(skip_serializing_if = "is_false")]
    pub no_copy: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subpath: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<Driver>,
}

/// `Mounts[].ImageOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageOptions {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

/// `Mounts[].TmpfsOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    /// Go `os.FileMode` bits.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mode: u32,
    /// Extra mount options, each `[name]` or `[name, value]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Vec<String>>,
}

/// `Mounts[].ClusterOptions` (cluster volumes; no members).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterOptions {}

/// A mount of a service's containers. Every member is `omitempty` in Docker, so unlike
/// [`crate::container::Mount`] (which [`Mount::to_container`] converts to) empty ones are left
/// out, and the options are typed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    /// `bind`, `volume`, `tmpfs`, `npipe`, `cluster` or `image`.
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub consistency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_options: Option<ImageOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_options: Option<ClusterOptions>,
}

impl Mount {
    /// The mount as a container create body carries it (`HostConfig.Mounts[]`). The container
    /// type has no image or cluster options: those are dropped.
    pub fn to_container(&self) -> crate::container::Mount {
        fn value<T: Serialize>(o: &Option<T>) -> Option<serde_json::Value> {
            o.as_ref().and_then(|o| serde_json::to_value(o).ok())
        }
        crate::container::Mount {
            target: self.target.clone(),
            source: self.source.clone(),
            kind: self.kind.clone(),
            read_only: self.read_only,
            consistency: (!self.consistency.is_empty()).then(|| self.consistency.clone()),
            bind_options: value(&self.bind_options),
            volume_options: value(&self.volume_options),
            tmpfs_options: value(&self.tmpfs_options),
        }
    }
}

/// `Privileges.CredentialSpec` (Windows managed service accounts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CredentialSpec {
    pub config: String,
    pub file: String,
    pub registry: String,
}

/// `Privileges.SELinuxContext`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SeLinuxContext {
    pub disable: bool,
    pub user: String,
    pub role: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub level: String,
}

/// `Privileges.Seccomp`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SeccompOpts {
    /// `default`, `unconfined` or `custom`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// The custom profile (JSON text); base64 in JSON.
    #[serde(with = "bytes_b64", skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<u8>,
}

/// `Privileges.AppArmor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AppArmorOpts {
    /// `default` or `disabled`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// `ContainerSpec.Privileges`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Privileges {
    pub credential_spec: Option<CredentialSpec>,
    #[serde(rename = "SELinuxContext")]
    pub selinux_context: Option<SeLinuxContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompOpts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_armor: Option<AppArmorOpts>,
    pub no_new_privileges: bool,
}

/// `ContainerSpec.DNSConfig`: what the containers' `resolv.conf` says.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The file a secret or config is written to in the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct FileTarget {
    pub name: String,
    #[serde(rename = "UID")]
    pub uid: String,
    #[serde(rename = "GID")]
    pub gid: String,
    /// Go `os.FileMode` bits (0o444 is 292).
    pub mode: u32,
}

/// `ContainerSpec.Secrets[]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecretReference {
    pub file: Option<FileTarget>,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub secret_name: String,
}

/// `ConfigReference.Runtime`: a config the task uses without a file (credential specs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigRuntimeTarget {}

/// `ContainerSpec.Configs[]`: a file target or a runtime target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<ConfigRuntimeTarget>,
    #[serde(rename = "ConfigID")]
    pub config_id: String,
    pub config_name: String,
}

/// `TaskSpec.ContainerSpec`: the container each task runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Replaces the image's entrypoint when not empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's command when not empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
    /// `None`: the daemon's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(rename = "TTY", skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub open_stdin: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Nanoseconds between the stop signal and SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `IP hostname [aliases...]` lines for `/etc/hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(rename = "DNSConfig", skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigReference>,
    /// `default`, `process` or `hyperv` (Windows).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    /// berth's extension (Docker's services cannot): the task's container is privileged.
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// berth's extension: host devices given to the task's container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::container::DeviceMapping>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capability_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capability_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub oom_score_adj: i64,
    /// swarmkit's `PullOptions`: the credentials the service was created or updated with
    /// (`--with-registry-auth`), kept in the cluster's store for its nodes' pulls. Not a
    /// field of Docker's API: the daemon takes it from `X-Registry-Auth` and never shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_options: Option<PullOptions>,
}

/// `ContainerSpec.PullOptions` (swarmkit's): the `X-Registry-Auth` value, as the client sent
/// it (base64url JSON). Its `Debug` does not print it.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PullOptions {
    pub registry_auth: String,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PullOptions { registry_auth: <hidden> }")
    }
}

/// A privilege a plugin asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PluginPrivilege {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<String>,
}

/// `TaskSpec.PluginSpec` (runtime `plugin`); Docker spells its members in lower case.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PluginSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<PluginPrivilege>,
    #[serde(skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

/// `TaskSpec.NetworkAttachmentSpec` (runtime `attachment`): a plain container on an overlay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkAttachmentSpec {
    #[serde(rename = "ContainerID")]
    pub container_id: String,
}

/// `TaskSpec.Resources`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResourceRequirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resources>,
}

/// `TaskSpec.RestartPolicy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// See [`restart_condition`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// Nanoseconds between restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// 0: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Nanoseconds the attempts are counted over; 0: unbounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
}

/// `Placement.Preferences[].Spread`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpreadOver {
    /// A label descriptor such as `node.labels.az`.
    pub spread_descriptor: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlacementPreference {
    pub spread: Option<SpreadOver>,
}

/// `TaskSpec.Placement`: where tasks may be scheduled.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Placement {
    /// `node.role==manager`, `node.labels.x!=y`, ...: all must hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    /// Tasks per node at most; 0: unlimited.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub max_replicas: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
}

/// A network a service's tasks attach to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkAttachmentConfig {
    /// Network name or ID.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

/// `TaskSpec`: the task template of a service, and the spec of each task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_spec: Option<ContainerSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_spec: Option<PluginSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_attachment_spec: Option<NetworkAttachmentSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<Driver>,
    /// A counter whose change forces an update.
    pub force_update: u64,
    /// See [`runtime_type`]; empty means `container`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime: String,
}

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReplicatedService {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GlobalService {}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReplicatedJob {
    /// Tasks run at once (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Completions wanted (default `MaxConcurrent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_completions: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GlobalJob {}

/// `ServiceSpec.Mode`: one member set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceMode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicated: Option<ReplicatedService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicated_job: Option<ReplicatedJob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_job: Option<GlobalJob>,
}

/// `UpdateConfig` and `RollbackConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    /// Tasks updated at once; 0: all.
    pub parallelism: u64,
    /// Nanoseconds between batches.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub delay: i64,
    /// See [`failure_action`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    /// Nanoseconds each updated task is watched for failure.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub monitor: i64,
    #[serde(serialize_with = "go_float")]
    pub max_failure_ratio: f32,
    /// See [`update_order`].
    pub order: String,
}

/// A published port (`EndpointSpec.Ports[]`, `Endpoint.Ports[]`, `PortStatus.Ports[]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub target_port: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub published_port: u32,
    /// See [`publish_mode`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub publish_mode: String,
}

/// `ServiceSpec.EndpointSpec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSpec {
    /// See [`resolution_mode`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

/// A service's virtual IP on one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointVirtualIp {
    #[serde(rename = "NetworkID", skip_serializing_if = "String::is_empty")]
    pub network_id: String,
    /// CIDR form, `10.0.0.2/24`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

/// `Service.Endpoint`: the endpoint as realized (ports with their published numbers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    pub spec: EndpointSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    #[serde(rename = "VirtualIPs", skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<EndpointVirtualIp>,
}

/// `ServiceSpec`: the body of `POST /services/create` and `/services/{id}/update`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub task_template: TaskSpec,
    pub mode: ServiceMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    /// Deprecated since API 1.44 for `TaskTemplate.Networks`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
}

/// `Service.UpdateStatus`: the progress of the last update or rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStatus {
    /// See [`update_state`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `Service.ServiceStatus` (with `GET /services?status=true`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceStatus {
    pub running_tasks: u64,
    pub desired_tasks: u64,
    pub completed_tasks: u64,
}

/// `Service.JobStatus` (job modes only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStatus {
    pub job_iteration: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub last_execution: String,
}

/// `GET /services/{id}` and each entry of `GET /services`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    pub spec: ServiceSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    pub endpoint: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_status: Option<ServiceStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
}

/// `POST /services/create` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCreateResponse {
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `null` when there are none, as dockerd writes it.
    pub warnings: Option<Vec<String>>,
}

/// `POST /services/{id}/update` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceUpdateResponse {
    pub warnings: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

/// `TaskStatus.ContainerStatus`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerStatus {
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    #[serde(rename = "PID")]
    pub pid: i64,
    pub exit_code: i64,
}

/// `TaskStatus.PortStatus`: the host-mode ports a task published.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskStatus {
    #[serde(serialize_with = "time_or_zero")]
    pub timestamp: String,
    pub state: TaskState,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    pub port_status: PortStatus,
}

/// One subnet of a swarm network's IPAM.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub range: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamOptions {
    pub driver: Driver,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<IpamConfig>,
}

/// `NetworkSpec.ConfigFrom`: the config-only network a network takes its settings from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkConfigReference {
    pub network: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_configuration: Option<Driver>,
    #[serde(rename = "IPv6Enabled", skip_serializing_if = "is_false")]
    pub ipv6_enabled: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub internal: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub ingress: bool,
    #[serde(rename = "IPAMOptions", skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<IpamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_from: Option<NetworkConfigReference>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// A swarm network as a task's `NetworksAttachments` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    pub spec: NetworkSpec,
    pub driver_state: Driver,
    #[serde(rename = "IPAMOptions", skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<IpamOptions>,
}

/// A task's attachment to a network, with its addresses (CIDR form).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkAttachment {
    pub network: Network,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// A cluster volume attached to a task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeAttachment {
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
}

/// `GET /tasks/{id}` and each entry of `GET /tasks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: TaskSpec,
    #[serde(rename = "ServiceID", skip_serializing_if = "String::is_empty")]
    pub service_id: String,
    /// The replica number (replicated modes); 0 for global tasks.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub slot: i64,
    #[serde(rename = "NodeID", skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub status: TaskStatus,
    pub desired_state: TaskState,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<NetworkAttachment>,
    /// The generic resources assigned to the task (the swagger calls this
    /// `AssignedGenericResources`; dockerd writes `GenericResources`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_iteration: Option<ObjectVersion>,
    /// `null` without cluster volumes, as dockerd writes it.
    pub volumes: Option<Vec<VolumeAttachment>>,
}

// ---------------------------------------------------------------------------------------------
// Secrets and configs
// ---------------------------------------------------------------------------------------------

/// `POST /secrets/create` and `/secrets/{id}/update` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecretSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The secret's bytes (base64 in JSON); never shown by inspect.
    #[serde(with = "bytes_b64", skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templating: Option<Driver>,
}

/// `GET /secrets/{id}` and each entry of `GET /secrets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Secret {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    pub spec: SecretSpec,
}

/// `POST /configs/create` and `/configs/{id}/update` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The config's bytes (base64 in JSON).
    #[serde(with = "bytes_b64", skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templating: Option<Driver>,
}

/// `GET /configs/{id}` and each entry of `GET /configs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Config {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    #[serde(serialize_with = "time_or_zero")]
    pub created_at: String,
    #[serde(serialize_with = "time_or_zero")]
    pub updated_at: String,
    pub spec: ConfigSpec,
}

/// `POST /secrets/create` and `POST /configs/create` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IdResponse {
    #[serde(rename = "ID")]
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::from_slice;
    use serde_json::{json, Value};

    /// What `docker service create --replicas 3 --name web -p 8080:80 --env A=b
    /// --mount type=volume,src=v,dst=/d --constraint node.role==worker --update-parallelism 2
    /// busybox sleep 1000` sends (docker CLI 28).
    const SERVICE_CREATE: &str = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{
        "Image":"busybox:latest@sha256:f85340bf132ae937d2c2a763b8335c9bab35d6e8293f70f606b9c6178d84f42b",
        "Args":["sleep","1000"],"Env":["A=b"],"Privileges":{"CredentialSpec":null,"SELinuxContext":null,
        "NoNewPrivileges":false},"Mounts":[{"Type":"volume","Source":"v","Target":"/d"}],
        "StopGracePeriod":10000000000,"DNSConfig":{},"Isolation":"default"},
        "Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","MaxAttempts":0},
        "Placement":{"Constraints":["node.role==worker"]},"ForceUpdate":0,"Runtime":"container"},
        "Mode":{"Replicated":{"Replicas":3}},
        "UpdateConfig":{"Parallelism":2,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},
        "RollbackConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},
        "EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}"#;

    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn service_create_body_from_docker_cli_decodes() {
        let spec: ServiceSpec = from_slice(SERVICE_CREATE.as_bytes()).unwrap();
        assert_eq!(spec.name, "web");
        let c = spec.task_template.container_spec.as_ref().unwrap();
        assert!(c.image.starts_with("busybox:latest@sha256:"));
        assert_eq!(c.args, ["sleep", "1000"]);
        assert!(c.command.is_empty());
        assert_eq!(c.env, ["A=b"]);
        assert_eq!(c.stop_grace_period, Some(10_000_000_000));
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(
            (c.mounts[0].kind.as_str(), c.mounts[0].source.as_str()),
            ("volume", "v")
        );
        assert_eq!(c.mounts[0].target, "/d");
        let p = c.privileges.as_ref().unwrap();
        assert_eq!(
            (p.credential_spec.as_ref(), p.no_new_privileges),
            (None, false)
        );
        assert_eq!(c.dns_config, Some(DnsConfig::default()));
        assert_eq!(spec.mode.replicated.as_ref().unwrap().replicas, Some(3));
        assert!(spec.mode.global.is_none());
        let u = spec.update_config.as_ref().unwrap();
        assert_eq!((u.parallelism, u.monitor, u.delay), (2, 5_000_000_000, 0));
        assert_eq!(
            (u.failure_action.as_str(), u.order.as_str()),
            ("pause", "stop-first")
        );
        let placement = spec.task_template.placement.as_ref().unwrap();
        assert_eq!(placement.constraints, ["node.role==worker"]);
        let rp = spec.task_template.restart_policy.as_ref().unwrap();
        assert_eq!(
            (rp.condition.as_str(), rp.max_attempts, rp.delay),
            ("any", Some(0), None)
        );
        let ports = &spec.endpoint_spec.as_ref().unwrap().ports;
        assert_eq!(
            ports[0],
            PortConfig {
                name: String::new(),
                protocol: "tcp".into(),
                target_port: 80,
                published_port: 8080,
                publish_mode: "ingress".into(),
            }
        );
        let res = spec.task_template.resources.as_ref().unwrap();
        assert_eq!(res.limits, Some(Limit::default()));
        assert_eq!(spec.task_template.runtime, "container");
    }

    #[test]
    fn service_spec_round_trips_and_writes_as_dockerd() {
        let spec: ServiceSpec = from_slice(SERVICE_CREATE.as_bytes()).unwrap();
        let out = to_json(&spec);
        let again: ServiceSpec = from_slice(out.to_string().as_bytes()).unwrap();
        assert_eq!(again, spec);
        // The same document as sent, members for members (dockerd echoes the spec it stored).
        let sent: Value = serde_json::from_str(SERVICE_CREATE).unwrap();
        assert_eq!(out, sent);
    }

    #[test]
    fn empty_omitempty_members_are_left_out() {
        let spec = ServiceSpec {
            name: "web".into(),
            task_template: TaskSpec {
                container_spec: Some(ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            mode: ServiceMode {
                replicated: Some(ReplicatedService { replicas: Some(1) }),
                ..Default::default()
            },
            ..Default::default()
        };
        let svc = Service {
            id: "abc".into(),
            version: ObjectVersion { index: 12 },
            created_at: "2025-01-02T03:04:05.123456789Z".into(),
            spec,
            ..Default::default()
        };
        assert_eq!(
            to_json(&svc),
            json!({"ID": "abc", "Version": {"Index": 12},
                "CreatedAt": "2025-01-02T03:04:05.123456789Z", "UpdatedAt": "0001-01-01T00:00:00Z",
                "Spec": {"Name": "web", "Labels": {},
                    "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}, "ForceUpdate": 0},
                    "Mode": {"Replicated": {"Replicas": 1}}},
                "Endpoint": {"Spec": {}}})
        );
        let global = ServiceMode {
            global: Some(GlobalService {}),
            ..Default::default()
        };
        assert_eq!(to_json(&global), json!({"Global": {}}));
        assert_eq!(to_json(&ObjectVersion::default()), json!({}));
        let ratio = UpdateConfig {
            max_failure_ratio: 0.15,
            ..Default::default()
        };
        assert_eq!(to_json(&ratio)["MaxFailureRatio"], json!(0.15));
        assert!(serde_json::to_string(&ratio)
            .unwrap()
            .contains(r#""MaxFailureRatio":0.15,"#));
        assert_eq!(
            to_json(&UpdateConfig::default()),
            json!({"Parallelism": 0, "MaxFailureRatio": 0, "Order": ""})
        );
        assert_eq!(
            to_json(&ServiceCreateResponse {
                id: "x".into(),
                warnings: None
            }),
            json!({"ID": "x", "Warnings": null})
        );
    }

    #[test]
    fn task_writes_the_members_dockerd_always_writes() {
        let task = Task {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: 1,
            status: TaskStatus {
                timestamp: "2025-01-02T03:04:05Z".into(),
                state: TaskState::Running,
                message: "started".into(),
                container_status: Some(ContainerStatus {
                    container_id: "c1".into(),
                    pid: 42,
                    exit_code: 0,
                }),
                ..Default::default()
            },
            desired_state: TaskState::Running,
            ..Default::default()
        };
        assert_eq!(
            to_json(&task),
            json!({"ID": "t1", "Version": {}, "CreatedAt": "0001-01-01T00:00:00Z",
                "UpdatedAt": "0001-01-01T00:00:00Z", "Labels": {}, "Spec": {"ForceUpdate": 0},
                "ServiceID": "s1", "Slot": 1,
                "Status": {"Timestamp": "2025-01-02T03:04:05Z", "State": "running",
                    "Message": "started",
                    "ContainerStatus": {"ContainerID": "c1", "PID": 42, "ExitCode": 0},
                    "PortStatus": {}},
                "DesiredState": "running", "Volumes": null})
        );
        let back: Task = from_slice(to_json(&task).to_string().as_bytes()).unwrap();
        assert_eq!(
            back,
            Task {
                created_at: crate::timefmt::ZERO.into(),
                updated_at: crate::timefmt::ZERO.into(),
                ..task
            }
        );
    }

    #[test]
    fn swarm_init_body_from_docker_cli_decodes() {
        let body = br#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"127.0.0.1","DataPathAddr":"",
            "DataPathPort":0,"ForceNewCluster":false,"Spec":{"Labels":null,"Orchestration":{},
            "Raft":{"ElectionTick":0,"HeartbeatTick":0},"Dispatcher":{},"CAConfig":{},"TaskDefaults":{},
            "EncryptionConfig":{"AutoLockManagers":false}},"AutoLockManagers":false,"Availability":"active",
            "DefaultAddrPool":null,"SubnetSize":0}"#;
        let req: SwarmInitRequest = from_slice(body).unwrap();
        assert_eq!(req.listen_addr, "0.0.0.0:2377");
        assert_eq!(req.advertise_addr, "127.0.0.1");
        assert_eq!(req.availability, node_availability::ACTIVE);
        assert!(req.default_addr_pool.is_empty());
        assert!(req.spec.labels.is_empty());
        assert_eq!(req.spec.orchestration.task_history_retention_limit, None);
        // With flags: --task-history-limit 3 --cert-expiry 24h --dispatcher-heartbeat 10s.
        let body = br#"{"ListenAddr":"0.0.0.0:2377","Spec":{"Orchestration":{"TaskHistoryRetentionLimit":3},
            "Dispatcher":{"HeartbeatPeriod":10000000000},"CAConfig":{"NodeCertExpiry":86400000000000},
            "EncryptionConfig":{"AutoLockManagers":true}},"AutoLockManagers":true,
            "DefaultAddrPool":["10.20.0.0/16"],"SubnetSize":26,"DataPathPort":4790}"#;
        let req: SwarmInitRequest = from_slice(body).unwrap();
        assert_eq!(req.spec.orchestration.task_history_retention_limit, Some(3));
        assert_eq!(req.spec.dispatcher.heartbeat_period, 10_000_000_000);
        assert_eq!(req.spec.ca_config.node_cert_expiry, 86_400_000_000_000);
        assert!(req.auto_lock_managers && req.spec.encryption_config.auto_lock_managers);
        assert_eq!(req.default_addr_pool, ["10.20.0.0/16"]);
        assert_eq!((req.subnet_size, req.data_path_port), (26, 4790));
    }

    #[test]
    fn swarm_join_and_unlock_bodies_decode() {
        let body = br#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"",
            "RemoteAddrs":["127.0.0.1:2377"],"JoinToken":"SWMTKN-1-abc-def","Availability":"active"}"#;
        let req: SwarmJoinRequest = from_slice(body).unwrap();
        assert_eq!(req.remote_addrs, ["127.0.0.1:2377"]);
        assert_eq!(req.join_token, "SWMTKN-1-abc-def");
        let req: SwarmUnlockRequest = from_slice(br#"{"unlockkey":"SWMKEY-1-x"}"#).unwrap();
        assert_eq!(req.unlock_key, "SWMKEY-1-x");
        assert_eq!(
            to_json(&UnlockKeyResponse {
                unlock_key: "SWMKEY-1-x".into()
            }),
            json!({"UnlockKey": "SWMKEY-1-x"})
        );
    }

    #[test]
    fn swarm_reply_flattens_the_cluster_info() {
        let swarm = Swarm {
            cluster: ClusterInfo {
                id: "cl".into(),
                version: ObjectVersion { index: 10 },
                created_at: "2025-01-02T03:04:05Z".into(),
                updated_at: "2025-01-02T03:04:06Z".into(),
                spec: SwarmSpec {
                    name: "default".into(),
                    raft: RaftConfig {
                        snapshot_interval: 10_000,
                        keep_old_snapshots: Some(0),
                        log_entries_for_slow_followers: 500,
                        election_tick: 10,
                        heartbeat_tick: 1,
                    },
                    dispatcher: DispatcherConfig {
                        heartbeat_period: 5_000_000_000,
                    },
                    ca_config: CaConfig {
                        node_cert_expiry: 7_776_000_000_000_000,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                tls_info: TlsInfo {
                    trust_root: "PEM".into(),
                    cert_issuer_subject: b"subject".to_vec(),
                    cert_issuer_public_key: vec![0, 1, 2, 255],
                },
                default_addr_pool: vec!["10.0.0.0/8".into()],
                subnet_size: 24,
                data_path_port: 4789,
                ..Default::default()
            },
            join_tokens: JoinTokens {
                worker: "SWMTKN-1-w".into(),
                manager: "SWMTKN-1-m".into(),
            },
        };
        let out = to_json(&swarm);
        assert_eq!(
            out,
            json!({"ID": "cl", "Version": {"Index": 10}, "CreatedAt": "2025-01-02T03:04:05Z",
                "UpdatedAt": "2025-01-02T03:04:06Z",
                "Spec": {"Name": "default", "Labels": {}, "Orchestration": {},
                    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                        "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
                    "Dispatcher": {"HeartbeatPeriod": 5000000000i64},
                    "CAConfig": {"NodeCertExpiry": 7776000000000000i64}, "TaskDefaults": {},
                    "EncryptionConfig": {"AutoLockManagers": false}},
                "TLSInfo": {"TrustRoot": "PEM", "CertIssuerSubject": "c3ViamVjdA==",
                    "CertIssuerPublicKey": "AAEC/w=="},
                "RootRotationInProgress": false, "DefaultAddrPool": ["10.0.0.0/8"],
                "SubnetSize": 24, "DataPathPort": 4789,
                "JoinTokens": {"Worker": "SWMTKN-1-w", "Manager": "SWMTKN-1-m"}})
        );
        let back: Swarm = from_slice(out.to_string().as_bytes()).unwrap();
        assert_eq!(back, swarm);
        let back: Swarm = serde_json::from_value(out).unwrap();
        assert_eq!(back, swarm);
        // Folded names and nulls, on both sides of the split.
        let back: Swarm =
            from_slice(br#"{"id":"x","jointokens":{"worker":"w","Manager":null},"Spec":null}"#)
                .unwrap();
        assert_eq!(
            (back.cluster.id.as_str(), back.join_tokens.worker.as_str()),
            ("x", "w")
        );
        assert!(back.join_tokens.manager.is_empty());
        assert!(from_slice::<Swarm>(b"[]").is_err());
    }

    #[test]
    fn info_swarm_section_inactive_and_active() {
        assert_eq!(
            to_json(&SwarmInfo::default()),
            json!({"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                "ControlAvailable": false, "Error": "", "RemoteManagers": null})
        );
        let info = SwarmInfo {
            node_id: "n1".into(),
            node_addr: "127.0.0.1".into(),
            local_node_state: LocalNodeState::Active,
            control_available: true,
            remote_managers: Some(vec![PeerNode {
                node_id: "n1".into(),
                addr: "127.0.0.1:2377".into(),
            }]),
            nodes: 1,
            managers: 1,
            cluster: Some(ClusterInfo::default()),
            ..Default::default()
        };
        let out = to_json(&info);
        assert_eq!(out["RemoteManagers"][0]["NodeID"], "n1");
        assert_eq!(
            (out["Nodes"].as_i64(), out["Managers"].as_i64()),
            (Some(1), Some(1))
        );
        assert_eq!(out["Cluster"]["CreatedAt"], crate::timefmt::ZERO);
        assert!(out.get("Warnings").is_none());
        let back: SwarmInfo = from_slice(out.to_string().as_bytes()).unwrap();
        assert_eq!(back.local_node_state, LocalNodeState::Active);
        assert_eq!(back.remote_managers, info.remote_managers);
    }

    #[test]
    fn node_update_body_and_node_reply() {
        let spec: NodeSpec =
            from_slice(br#"{"Labels":{"zone":"a"},"Role":"worker","Availability":"drain"}"#)
                .unwrap();
        assert_eq!(spec.labels["zone"], "a");
        assert_eq!(spec.role, node_role::WORKER);
        assert_eq!(spec.availability, node_availability::DRAIN);
        let node = Node {
            id: "n1".into(),
            spec: NodeSpec {
                role: node_role::MANAGER.into(),
                availability: node_availability::ACTIVE.into(),
                ..Default::default()
            },
            description: NodeDescription {
                hostname: "h".into(),
                platform: Platform {
                    architecture: "x86_64".into(),
                    os: "linux".into(),
                },
                resources: Resources {
                    nano_cpus: 2_000_000_000,
                    memory_bytes: 1 << 30,
                    ..Default::default()
                },
                engine: EngineDescription {
                    engine_version: "28.0.0".into(),
                    plugins: vec![PluginDescription {
                        kind: "Volume".into(),
                        name: "local".into(),
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
            status: NodeStatus {
                state: NodeState::Ready,
                addr: "127.0.0.1".into(),
                ..Default::default()
            },
            manager_status: Some(ManagerStatus {
                leader: true,
                reachability: Reachability::Reachable,
                addr: "127.0.0.1:2377".into(),
            }),
            ..Default::default()
        };
        let out = to_json(&node);
        assert_eq!(
            out["Description"],
            json!({"Hostname": "h", "Platform": {"Architecture": "x86_64", "OS": "linux"},
                "Resources": {"NanoCPUs": 2000000000, "MemoryBytes": 1073741824},
                "Engine": {"EngineVersion": "28.0.0", "Plugins": [{"Type": "Volume", "Name": "local"}]},
                "TLSInfo": {}})
        );
        assert_eq!(
            out["Status"],
            json!({"State": "ready", "Addr": "127.0.0.1"})
        );
        assert_eq!(
            out["ManagerStatus"],
            json!({"Leader": true, "Reachability": "reachable", "Addr": "127.0.0.1:2377"})
        );
        assert_eq!(
            out["Spec"],
            json!({"Labels": {}, "Role": "manager", "Availability": "active"})
        );
        let back: Node = from_slice(out.to_string().as_bytes()).unwrap();
        assert_eq!(back.manager_status, node.manager_status);
        assert_eq!(back.description, node.description);
    }

    #[test]
    fn null_and_folded_names_decode_as_go() {
        let body = br#"{"name":"web","labels":null,"tasktemplate":{"containerspec":{"image":"x",
            "args":null,"env":[null,"A=b"],"init":null,"healthcheck":{"test":["CMD","true"],
            "interval":1000000000},"ulimits":[{"name":"nofile","soft":10,"hard":20}],
            "secrets":[{"file":{"name":"s","uid":"0","gid":"0","mode":292},"secretid":"i","secretname":"s"}],
            "configs":[{"runtime":{},"configid":"c","configname":"c"}]},"placement":null,
            "networks":[{"target":"net","aliases":["a"]}],"logdriver":{"name":"json-file","options":null}},
            "mode":{"replicated":{"replicas":null}},"updateconfig":null,"endpointspec":{"ports":null}}"#;
        let spec: ServiceSpec = from_slice(body).unwrap();
        let c = spec.task_template.container_spec.as_ref().unwrap();
        assert_eq!(c.image, "x");
        assert!(c.args.is_empty());
        assert_eq!(c.env, ["", "A=b"]);
        assert_eq!(c.init, None);
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.test.as_deref().map(|t| t.len()), hc.interval),
            (Some(2), 1_000_000_000)
        );
        assert_eq!((c.ulimits[0].soft, c.ulimits[0].hard), (10, 20));
        let f = c.secrets[0].file.as_ref().unwrap();
        assert_eq!((f.name.as_str(), f.mode), ("s", 0o444));
        assert_eq!(c.secrets[0].secret_id, "i");
        assert_eq!(c.configs[0].runtime, Some(ConfigRuntimeTarget {}));
        assert!(c.configs[0].file.is_none());
        assert_eq!(spec.task_template.placement, None);
        assert_eq!(spec.task_template.networks[0].target, "net");
        assert_eq!(
            spec.task_template.log_driver.as_ref().unwrap().name,
            "json-file"
        );
        assert_eq!(
            spec.mode.replicated,
            Some(ReplicatedService { replicas: None })
        );
        assert_eq!(spec.update_config, None);
        assert!(spec.endpoint_spec.as_ref().unwrap().ports.is_empty());
        // Written back: the secret file target is not omitempty, the config one is.
        let out = to_json(c);
        assert_eq!(
            out["Secrets"][0],
            json!({"File": {"Name": "s", "UID": "0", "GID": "0", "Mode": 292},
                "SecretID": "i", "SecretName": "s"})
        );
        assert_eq!(
            out["Configs"][0],
            json!({"Runtime": {}, "ConfigID": "c", "ConfigName": "c"})
        );
        assert_eq!(
            out["Ulimits"][0],
            json!({"Name": "nofile", "Soft": 10, "Hard": 20})
        );
        // A wrong type is still an error.
        for bad in [
            &br#"{"Mode":{"Replicated":{"Replicas":"3"}}}"#[..],
            br#"{"TaskTemplate":{"ContainerSpec":{"Env":"A=b"}}}"#,
            br#"{"EndpointSpec":{"Ports":[{"TargetPort":-1}]}}"#,
        ] {
            assert!(from_slice::<ServiceSpec>(bad).is_err());
        }
    }

    #[test]
    fn privileges_write_their_nullable_members() {
        let p = Privileges {
            seccomp: Some(SeccompOpts {
                mode: "custom".into(),
                profile: b"{}".to_vec(),
            }),
            ..Default::default()
        };
        assert_eq!(
            to_json(&p),
            json!({"CredentialSpec": null, "SELinuxContext": null,
                "Seccomp": {"Mode": "custom", "Profile": "e30="}, "NoNewPrivileges": false})
        );
        let back: Privileges = from_slice(to_json(&p).to_string().as_bytes()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn secret_and_config_bodies() {
        let spec: SecretSpec =
            from_slice(br#"{"Name":"s","Labels":{"a":"b"},"Data":"aGVsbG8K"}"#).unwrap();
        assert_eq!(spec.data, b"hello\n");
        let secret = Secret {
            id: "i".into(),
            spec: SecretSpec {
                data: Vec::new(),
                ..spec
            },
            ..Default::default()
        };
        let out = to_json(&secret);
        assert_eq!(out["Spec"], json!({"Name": "s", "Labels": {"a": "b"}}));
        assert!(from_slice::<SecretSpec>(br#"{"Data":"not base64!"}"#).is_err());
        let spec: ConfigSpec = from_slice(br#"{"name":"c","data":null}"#).unwrap();
        assert!(spec.data.is_empty());
        let spec: ConfigSpec =
            from_slice(br#"{"Name":"c","Data":"eyJhIjoxfQ==","Templating":{"Name":"golang"}}"#)
                .unwrap();
        assert_eq!(spec.data, br#"{"a":1}"#);
        assert_eq!(
            to_json(&Config {
                id: "c1".into(),
                spec,
                ..Default::default()
            })["Spec"],
            json!({"Name": "c", "Labels": {}, "Data": "eyJhIjoxfQ==",
                "Templating": {"Name": "golang"}})
        );
        assert_eq!(to_json(&IdResponse { id: "x".into() }), json!({"ID": "x"}));
    }

    #[test]
    fn base64_as_go_writes_and_reads_it() {
        for (raw, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0xfb, 0xff][..], "+/8="),
        ] {
            assert_eq!(bytes_b64::encode(raw), text);
            assert_eq!(bytes_b64::decode(text).unwrap(), raw);
        }
        assert_eq!(bytes_b64::decode("Zm9v\r\nYg==").unwrap(), b"foob");
        assert_eq!(bytes_b64::decode("Zm9vYg").unwrap(), b"foob");
        for bad in ["Z", "Zm9vY", "Zg=a", "Z===", "Zm-v", "é"] {
            assert!(bytes_b64::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_order_parse_and_decode() {
        assert!(TaskState::New < TaskState::Running);
        assert!(!TaskState::Running.is_terminal());
        for s in [
            TaskState::Complete,
            TaskState::Shutdown,
            TaskState::Failed,
            TaskState::Orphaned,
        ] {
            assert!(s.is_terminal());
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(*s));
            assert_eq!(to_json(s), json!(s.as_str()));
        }
        assert_eq!(TaskState::ALL.len(), 15);
        assert_eq!("".parse::<NodeState>(), Ok(NodeState::Unknown));
        assert_eq!(
            "bogus".parse::<TaskState>(),
            Err("invalid task state \"bogus\"".to_string())
        );
        let st: TaskStatus = from_slice(br#"{"State":null}"#).unwrap();
        assert_eq!(st.state, TaskState::New);
        let st: ManagerStatus = from_slice(br#"{"Reachability":"unreachable"}"#).unwrap();
        assert_eq!(st.reachability, Reachability::Unreachable);
        assert!(from_slice::<NodeStatus>(br#"{"State":"sleepy"}"#).is_err());
        for s in ["", "inactive", "pending", "active", "error", "locked"] {
            assert!(s.parse::<LocalNodeState>().is_ok(), "{s}");
        }
        assert_eq!(LocalNodeState::Locked.to_string(), "locked");
    }

    #[test]
    fn mount_writes_only_what_is_set_and_converts() {
        let m: Mount = from_slice(
            br#"{"Type":"bind","Source":"/s","Target":"/t","ReadOnly":true,
            "BindOptions":{"Propagation":"rshared","CreateMountpoint":true}}"#,
        )
        .unwrap();
        assert_eq!(
            to_json(&m),
            json!({"Type": "bind", "Source": "/s", "Target": "/t", "ReadOnly": true,
                "BindOptions": {"Propagation": "rshared", "CreateMountpoint": true}})
        );
        let c = m.to_container();
        assert_eq!(
            (c.kind.as_str(), c.source.as_str(), c.target.as_str()),
            ("bind", "/s", "/t")
        );
        assert!(c.read_only);
        assert_eq!(c.consistency, None);
        assert_eq!(
            c.bind_options,
            Some(json!({"Propagation": "rshared", "CreateMountpoint": true}))
        );
        let t = Mount {
            kind: "tmpfs".into(),
            target: "/run".into(),
            tmpfs_options: Some(TmpfsOptions {
                size_bytes: 1 << 20,
                mode: 0o1777,
                options: vec![vec!["exec".into()]],
            }),
            ..Default::default()
        };
        assert_eq!(
            t.to_container().tmpfs_options,
            Some(json!({"SizeBytes": 1048576, "Mode": 1023, "Options": [["exec"]]}))
        );
    }

    #[test]
    fn service_reply_with_status_and_endpoint() {
        let svc = Service {
            id: "s".into(),
            endpoint: Endpoint {
                spec: EndpointSpec {
                    mode: resolution_mode::VIP.into(),
                    ..Default::default()
                },
                ports: vec![PortConfig {
                    protocol: "tcp".into(),
                    target_port: 80,
                    published_port: 30000,
                    publish_mode: publish_mode::INGRESS.into(),
                    ..Default::default()
                }],
                virtual_ips: vec![EndpointVirtualIp {
                    network_id: "ingress".into(),
                    addr: "10.0.0.2/24".into(),
                }],
            },
            update_status: Some(UpdateStatus {
                state: update_state::COMPLETED.into(),
                started_at: Some("2025-01-02T03:04:05Z".into()),
                ..Default::default()
            }),
            service_status: Some(ServiceStatus {
                running_tasks: 1,
                desired_tasks: 3,
                completed_tasks: 0,
            }),
            job_status: Some(JobStatus::default()),
            ..Default::default()
        };
        let out = to_json(&svc);
        assert_eq!(
            out["Endpoint"]["VirtualIPs"],
            json!([{"NetworkID": "ingress", "Addr": "10.0.0.2/24"}])
        );
        assert_eq!(
            out["UpdateStatus"],
            json!({"State": "completed", "StartedAt": "2025-01-02T03:04:05Z"})
        );
        assert_eq!(
            out["ServiceStatus"],
            json!({"RunningTasks": 1, "DesiredTasks": 3, "CompletedTasks": 0})
        );
        assert_eq!(
            out["JobStatus"],
            json!({"JobIteration": {}, "LastExecution": "0001-01-01T00:00:00Z"})
        );
        let back: Service = from_slice(out.to_string().as_bytes()).unwrap();
        assert_eq!(back.endpoint, svc.endpoint);
        assert_eq!(back.service_status, svc.service_status);
    }
}
