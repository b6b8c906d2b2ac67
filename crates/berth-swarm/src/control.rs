//! The control operations behind the Engine API's swarm routes, on a manager: validation and
//! defaults as swarmkit's control API applies them, then a proposal; reads from the
//! manager's replicated state.

use crate::ca::RootCa;
use crate::error::{Error, Result, NOT_IN_SWARM};
use crate::ids::new_id;
use crate::manager::Manager;
use crate::netalloc::Subnet;
use crate::raft::ProposeError;
use crate::store::{ClusterRec, Command, RootRotation, ServiceRec, State};
use crate::view::{self, Filters, RaftView};
use berth_api::swarm as api;

/// swarmkit's floor for `--cert-expiry`.
fn check_cert_expiry(spec: &api::SwarmSpec) -> Result<()> {
    let n = spec.ca_config.node_cert_expiry;
    if n != 0 && n < 3_600_000_000_000 {
        return Err(Error::rpc_invalid(
            "minimum certificate expiry time is: 1h0m0s",
        ));
    }
    Ok(())
}

/// A swarm spec from `swarm init` or `swarm update` with what berth runs by filled in where
/// it says nothing (0 or absent), as swarmkit's defaults fill it; Raft settings other than
/// berth's are refused, since its Raft always runs with its own.
pub fn swarm_spec_defaults(spec: &mut api::SwarmSpec) -> Result<()> {
    check_cert_expiry(spec)?;
    let o = &mut spec.orchestration;
    o.task_history_retention_limit.get_or_insert(5);
    let r = &mut spec.raft;
    let fill = |v: &mut u64, berth: u64, what: &str| {
        if *v == 0 {
            *v = berth;
        }
        if *v != berth {
            return Err(Error::rpc_invalid(format!(
                "berth's Raft runs with {what} {berth}; other values are not supported"
            )));
        }
        Ok(())
    };
    fill(
        &mut r.snapshot_interval,
        crate::raft::SNAPSHOT_INTERVAL,
        "SnapshotInterval",
    )?;
    fill(
        &mut r.log_entries_for_slow_followers,
        crate::raft::KEEP_ENTRIES,
        "LogEntriesForSlowFollowers",
    )?;
    let mut election = u64::try_from(r.election_tick).unwrap_or(u64::MAX);
    fill(
        &mut election,
        crate::raft::ELECTION_TICKS as u64,
        "ElectionTick",
    )?;
    let mut heartbeat = u64::try_from(r.heartbeat_tick).unwrap_or(u64::MAX);
    fill(
        &mut heartbeat,
        crate::raft::HEARTBEAT_TICKS as u64,
        "HeartbeatTick",
    )?;
    r.election_tick = crate::raft::ELECTION_TICKS as i64;
    r.heartbeat_tick = crate::raft::HEARTBEAT_TICKS as i64;
    if spec.dispatcher.heartbeat_period <= 0 {
        spec.dispatcher.heartbeat_period = crate::manager::DEFAULT_HEARTBEAT.as_nanos() as i64;
    }
    if spec.ca_config.node_cert_expiry == 0 {
        spec.ca_config.node_cert_expiry = crate::ca::DEFAULT_NODE_EXPIRY.as_nanos() as i64;
    }
    Ok(())
}

/// `swarm init --default-addr-pool/--default-addr-pool-mask-length`, as moby checks them (and
/// IPv4 only, as berth's swarm networks are).
pub fn check_addr_pools(pools: &[String], subnet_size: u32) -> Result<()> {
    let size = if subnet_size == 0 {
        crate::netalloc::DEFAULT_SUBNET_SIZE
    } else {
        subnet_size
    };
    if size > 29 {
        return Err(Error::invalid(format!(
            "subnet size is out of range: {size}"
        )));
    }
    for p in pools {
        let p = p.trim();
        let sub =
            Subnet::parse(p).map_err(|e| Error::invalid(format!("invalid base pool {p}: {e}")))?;
        if size < u32::from(sub.prefix) {
            return Err(Error::invalid(format!(
                "invalid CIDR: {p:?}. Subnet size is too small for pool: {size}"
            )));
        }
    }
    Ok(())
}

/// A root CA must stay valid at least this long to become the cluster's (swarmkit's floor).
const MIN_ROOT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// What a swarm update's `CAConfig` asks of the root CA, as swarmkit's `validateCAConfig`
/// decides it for a CA that holds its keys: no change (None), or a rotation to a new root —
/// generated when `ForceRotate` changed, or the given `SigningCACert`/`SigningCAKey` — that
/// the current root cross-signs.
pub fn root_rotation_for(c: &ClusterRec, ca: &api::CaConfig) -> Result<Option<RootRotation>> {
    if !ca.signing_ca_key.is_empty() && ca.signing_ca_cert.is_empty() {
        return Err(Error::rpc_invalid(
            "if a signing CA key is provided, the signing CA cert must also be provided",
        ));
    }
    let next = if ca.signing_ca_cert.is_empty() {
        if ca.force_rotate == c.last_forced_rotation {
            return Ok(None);
        }
        RootCa::generate().map_err(|e| Error::internal(e.to_string()))?
    } else {
        let cert = &ca.signing_ca_cert;
        let current_or_next = std::iter::once(&c.root_ca_cert)
            .chain(c.root_rotation.as_ref().map(|r| &r.ca_cert))
            .any(|have| crate::ca::same_cert(have, cert));
        if current_or_next {
            return Ok(None);
        }
        if ca.signing_ca_key.is_empty() {
            return Err(Error::rpc_invalid(
                "there must be at least one valid, reachable external CA corresponding to the desired CA certificate",
            ));
        }
        let certs = crate::ca::pem_certs(cert).map_err(|e| Error::rpc_invalid(e.to_string()))?;
        if certs.len() != 1 {
            return Err(Error::rpc_invalid(
                "the desired CA certificate cannot contain multiple certificates",
            ));
        }
        let next = RootCa::from_pem(cert, Some(&ca.signing_ca_key))
            .map_err(|e| Error::rpc_invalid(e.to_string()))?;
        if next.not_after() < time::OffsetDateTime::now_utc() + MIN_ROOT_VALIDITY {
            return Err(Error::rpc_invalid("CA certificate expires too soon"));
        }
        let same_key = RootCa::from_pem(&c.root_ca_cert, None)
            .and_then(|r| r.issuer_info())
            .ok()
            .zip(next.issuer_info().ok())
            .is_some_and(|(a, b)| a.public_key == b.public_key);
        if same_key {
            return Err(Error::rpc_invalid(
                "Cannot update to a cert with an identical key",
            ));
        }
        next
    };
    let current = RootCa::from_pem(&c.root_ca_cert, Some(&c.root_ca_key))
        .map_err(|e| Error::internal(format!("the cluster root CA: {e}")))?;
    let cross_signed_cert = current
        .cross_sign(&next)
        .map_err(|e| Error::internal(format!("cross-signing the new root CA: {e}")))?;
    Ok(Some(RootRotation {
        ca_cert: next.cert_pem().to_string(),
        ca_key: next.key_pem().unwrap_or_default(),
        cross_signed_cert,
    }))
}

/// The cluster's TLS state as nodes follow it (see [`crate::proto::TlsState`]).
pub fn tls_state(c: &ClusterRec) -> crate::proto::TlsState {
    let info = view::cluster_tls(c);
    crate::proto::TlsState {
        trust_root: info.trust_root,
        next_root: c
            .root_rotation
            .as_ref()
            .map(|r| r.ca_cert.clone())
            .unwrap_or_default(),
        issuer_subject: info.cert_issuer_subject,
        issuer_public_key: info.cert_issuer_public_key,
    }
}

/// Whether every node reports a certificate from the issuer the cluster wants.
fn nodes_converged(s: &State, want: &api::TlsInfo) -> bool {
    s.nodes.values().all(|n| {
        let have = &n.description.tls_info;
        have.cert_issuer_subject == want.cert_issuer_subject
            && have.cert_issuer_public_key == want.cert_issuer_public_key
    })
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

/// The node attributes a constraint may test (the scheduler knows no others).
const CONSTRAINT_KEYS: &[&str] = &[
    "node.id",
    "node.hostname",
    "node.role",
    "node.ip",
    "node.platform.os",
    "node.platform.arch",
];

/// A label attribute `node.labels.<name>` or `engine.labels.<name>` (any case).
fn label_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["node.labels.", "engine.labels."]
        .iter()
        .any(|p| k.strip_prefix(p).is_some_and(|l| !l.is_empty()))
}

/// Placement constraints as swarmkit parses them (`key==value`, `key!=value`, with its key
/// and value character sets), over the attributes berth's scheduler knows; spread
/// preferences over node or engine labels.
fn check_placement(p: &api::Placement) -> Result<()> {
    for c in &p.constraints {
        let (key, value) = c
            .split_once("==")
            .or_else(|| c.split_once("!="))
            .ok_or_else(|| Error::rpc_invalid("constraint expected one operator from ==, !="))?;
        let (key, value) = (key.trim(), value.trim());
        let key_ok = key.len() > 1
            && key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok {
            return Err(Error::rpc_invalid(format!("key '{key}' is invalid")));
        }
        let value_ok = !value.is_empty()
            && value.chars().all(|ch| {
                ch.is_ascii_alphanumeric() || ch.is_whitespace() || ":-_.*()?+[]\\^$|/".contains(ch)
            });
        if !value_ok {
            return Err(Error::rpc_invalid(format!("value '{value}' is invalid")));
        }
        if !CONSTRAINT_KEYS.contains(&key.to_ascii_lowercase().as_str()) && !label_key(key) {
            return Err(Error::rpc_invalid(format!(
                "constraint key '{key}' is unknown: berth's scheduler knows {}, node.labels.<name> and engine.labels.<name>",
                CONSTRAINT_KEYS.join(", ")
            )));
        }
    }
    for pref in &p.preferences {
        let d = pref
            .spread
            .as_ref()
            .map(|s| s.spread_descriptor.as_str())
            .unwrap_or_default();
        if !label_key(d) {
            return Err(Error::rpc_invalid(format!(
                "invalid placement preference '{d}': berth spreads over node.labels.<name> or engine.labels.<name>"
            )));
        }
    }
    Ok(())
}

/// swarmkit's checks of the secret and config references: each file reference names its
/// file, and no two of a kind share one (the later bind would hide the earlier).
fn check_file_targets(cs: &api::ContainerSpec) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, &str> = Default::default();
    for r in &cs.secrets {
        let file = r
            .file
            .as_ref()
            .ok_or_else(|| Error::rpc_invalid("malformed secret reference"))?;
        if file.name.is_empty() {
            return Err(Error::rpc_invalid(
                "malformed file secret reference, invalid target file name provided",
            ));
        }
        if let Some(prev) = seen.insert(&file.name, &r.secret_name) {
            return Err(Error::rpc_invalid(format!(
                "secret references '{prev}' and '{}' have a conflicting target: '{}'",
                r.secret_name, file.name
            )));
        }
    }
    seen.clear();
    for r in &cs.configs {
        let Some(file) = r.file.as_ref() else {
            if r.runtime.is_none() {
                return Err(Error::rpc_invalid("malformed config reference"));
            }
            continue;
        };
        if file.name.is_empty() {
            return Err(Error::rpc_invalid(
                "malformed file config reference, invalid target file name provided",
            ));
        }
        if let Some(prev) = seen.insert(&file.name, &r.config_name) {
            return Err(Error::rpc_invalid(format!(
                "config references '{prev}' and '{}' have a conflicting target: '{}'",
                r.config_name, file.name
            )));
        }
    }
    Ok(())
}

/// Secret drivers and templating need plugins and template engines berth does not have:
/// refused rather than stored and ignored.
fn check_no_driver(
    kind: &str,
    driver: Option<&api::Driver>,
    templating: Option<&api::Driver>,
) -> Result<()> {
    if driver.is_some_and(|d| !d.name.is_empty()) {
        return Err(Error::rpc_invalid(format!(
            "{kind} drivers are not supported"
        )));
    }
    if templating.is_some_and(|d| !d.name.is_empty()) {
        return Err(Error::rpc_invalid(format!(
            "{kind} templating is not supported"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    fn secret(name: &str, file: Option<&str>) -> api::SecretReference {
        api::SecretReference {
            file: file.map(|f| api::FileTarget {
                name: f.to_string(),
                ..Default::default()
            }),
            secret_id: format!("id-{name}"),
            secret_name: name.to_string(),
        }
    }

    fn config(name: &str, file: &str) -> api::ConfigReference {
        api::ConfigReference {
            file: Some(api::FileTarget {
                name: file.to_string(),
                ..Default::default()
            }),
            runtime: None,
            config_id: format!("id-{name}"),
            config_name: name.to_string(),
        }
    }

    fn message(cs: &api::ContainerSpec) -> String {
        check_file_targets(cs).unwrap_err().message
    }

    #[test]
    fn file_targets_are_named_and_distinct() {
        let mut cs = api::ContainerSpec {
            secrets: vec![secret("a", Some("a")), secret("b", Some("b"))],
            configs: vec![config("c", "/c"), config("d", "/d")],
            ..Default::default()
        };
        check_file_targets(&cs).unwrap();
        cs.secrets.push(secret("c", Some("a")));
        assert_eq!(
            message(&cs),
            "rpc error: code = InvalidArgument desc = secret references 'a' and 'c' have a conflicting target: 'a'"
        );
        cs.secrets[2] = secret("c", Some(""));
        assert!(
            message(&cs)
                .ends_with("malformed file secret reference, invalid target file name provided"),
            "{}",
            message(&cs)
        );
        cs.secrets[2] = secret("c", None);
        assert!(
            message(&cs).ends_with("desc = malformed secret reference"),
            "{}",
            message(&cs)
        );
        cs.secrets.pop();
        // A secret and a config may share a name: they are different kinds.
        cs.configs.push(config("e", "/c"));
        assert!(
            message(&cs).ends_with("config references 'c' and 'e' have a conflicting target: '/c'"),
            "{}",
            message(&cs)
        );
        cs.configs[2] = config("e", "");
        assert!(
            message(&cs)
                .ends_with("malformed file config reference, invalid target file name provided"),
            "{}",
            message(&cs)
        );
    }

    #[test]
    fn drivers_and_templating_are_refused() {
        let d = api::Driver {
            name: "vault".into(),
            ..Default::default()
        };
        check_no_driver("secret", None, None).unwrap();
        check_no_driver("secret", Some(&api::Driver::default()), None).unwrap();
        let e = check_no_driver("secret", Some(&d), None).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                400,
                "rpc error: code = InvalidArgument desc = secret drivers are not supported"
            )
        );
        let e = check_no_driver("config", None, Some(&d)).unwrap_err();
        assert!(
            e.message.ends_with("config templating is not supported"),
            "{}",
            e.message
        );
    }
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
    check_file_targets(cs)?;
    if let Some(p) = &spec.task_template.placement {
        check_placement(p)?;
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
    // The deprecated `Spec.Networks` stands for the task template's when that has none; the
    // networks are stored by id, as swarmkit does (the CLI sends names).
    let legacy = std::mem::take(&mut spec.networks);
    if spec.task_template.networks.is_empty() {
        spec.task_template.networks = legacy;
    }
    for a in spec.task_template.networks.iter_mut() {
        let n = s.find_network(&a.target).map_err(|e| {
            if e.status == 404 {
                Error::not_found(format!("network {} not found", a.target))
            } else {
                e
            }
        })?;
        a.target = n.id.clone();
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
            if p.publish_mode == "ingress" && ep.mode == "dnsrr" {
                return Err(Error::rpc_invalid(
                    "EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
                ));
            }
            if p.protocol == "sctp" {
                // Neither the routing mesh nor host ports carry sctp in berth.
                return Err(Error::rpc_invalid(
                    "EndpointSpec: berth publishes tcp and udp ports: sctp is not supported",
                ));
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

/// Whether the managers other than `id` that are reachable (this one always counts, the
/// others as `docker node ls` shows them from here) would still be a majority of the Raft
/// group without `id` (swarmkit's `CanRemoveMember`).
fn can_remove_member(s: &State, raft: &RaftView, me: &str, id: &str) -> bool {
    let rest: Vec<&crate::store::NodeRec> = s
        .nodes
        .values()
        .filter(|n| n.raft_id != 0 && n.id != id)
        .collect();
    let reachable = rest
        .iter()
        .filter(|n| {
            n.id == me
                || view::node(n, raft)
                    .manager_status
                    .is_some_and(|m| m.reachability == api::Reachability::Reachable)
        })
        .count();
    reachable > rest.len() / 2
}

/// The labels only berth's swarm may set on a network.
const PREDEFINED_LABEL: &str = "com.docker.swarm.predefined";
/// The network options a swarm network may carry (the node-local realisation applies them).
const NETWORK_OPTIONS: &[&str] = &["com.docker.network.driver.mtu", "encrypted"];

/// A swarm network's name: a DNS label as swarmkit's annotations check it.
fn valid_network_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// The spec of a new swarm network from a `POST /networks/create` body, checked as dockerd
/// and swarmkit check it; what berth cannot realise yet is refused, not dropped.
pub fn network_spec(req: berth_api::network::CreateRequest) -> Result<api::NetworkSpec> {
    let name = req.name;
    if matches!(name.as_str(), "bridge" | "host" | "none") {
        return Err(Error::new(
            403,
            format!("{name} is a pre-defined network and cannot be created"),
        ));
    }
    if name.is_empty() {
        return Err(Error::rpc_invalid("meta: name must be provided"));
    }
    if !valid_network_name(&name) {
        return Err(Error::rpc_invalid(
            "name must be valid as a DNS name component",
        ));
    }
    if name.len() > 63 {
        return Err(Error::rpc_invalid("name must be 63 characters or fewer"));
    }
    let driver = match req.driver.as_str() {
        "" => "bridge",
        d @ ("overlay" | "bridge") => d,
        d => {
            return Err(Error::not_found(format!(
                "plugin \"{d}\" not found: berth's swarm networks support the overlay and bridge drivers"
            )))
        }
    };
    if req.ingress && driver != "overlay" {
        return Err(Error::invalid(
            "an ingress network must use the overlay driver",
        ));
    }
    if req.ingress && req.attachable {
        return Err(Error::invalid("ingress network cannot be attachable"));
    }
    if req.config_only || req.config_from.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Error::invalid(
            "configuration-only networks (--config-only, --config-from) are not supported by berth",
        ));
    }
    if req.enable_ipv4 == Some(false) {
        return Err(Error::invalid(
            "IPv4 cannot be disabled in a Swarm scoped network",
        ));
    }
    if req.enable_ipv6 == Some(true) {
        return Err(Error::invalid(
            "IPv6 swarm networks are not supported by berth yet",
        ));
    }
    let labels = req.labels.unwrap_or_default();
    if labels.contains_key(PREDEFINED_LABEL) {
        return Err(Error::new(
            403,
            format!("rpc error: code = PermissionDenied desc = label {PREDEFINED_LABEL} is for internally created predefined networks and cannot be applied by users"),
        ));
    }
    let options = req.options.unwrap_or_default();
    // Encryption is IPsec ESP of the overlay's VXLAN traffic between nodes (the daemon checks
    // its kernel first).
    if options.contains_key("encrypted") && driver != "overlay" {
        return Err(Error::invalid(
            "encrypted networks use the overlay driver (IPsec ESP between nodes)",
        ));
    }
    if let Some(k) = options
        .keys()
        .find(|k| !NETWORK_OPTIONS.contains(&k.as_str()))
    {
        return Err(Error::invalid(format!(
            "network option {k} is not supported on swarm networks by berth"
        )));
    }
    let ipam_options = match req.ipam {
        None => None,
        Some(ipam) => {
            if !matches!(ipam.driver.as_str(), "" | "default") {
                return Err(Error::not_found(format!(
                    "plugin \"{}\" not found: berth supports the default IPAM driver",
                    ipam.driver
                )));
            }
            let configs = ipam.config.unwrap_or_default();
            if configs.len() > 1 {
                return Err(Error::invalid(
                    "a swarm network has one IPv4 subnet in berth: more than one IPAM configuration given",
                ));
            }
            let mut out = Vec::new();
            for c in configs {
                if c.auxiliary_addresses
                    .as_ref()
                    .is_some_and(|a| !a.is_empty())
                {
                    return Err(Error::invalid(
                        "auxiliary addresses are not supported on swarm networks by berth",
                    ));
                }
                out.push(check_ipam_config(c)?);
            }
            Some(api::IpamOptions {
                driver: api::Driver {
                    name: "default".to_string(),
                    options: ipam.options.unwrap_or_default(),
                },
                configs: out,
            })
        }
    };
    Ok(api::NetworkSpec {
        name,
        labels,
        driver_configuration: Some(api::Driver {
            name: driver.to_string(),
            options,
        }),
        ipv6_enabled: false,
        internal: req.internal,
        attachable: req.attachable,
        ingress: req.ingress,
        ipam_options,
        config_from: None,
        scope: "swarm".to_string(),
    })
}

/// One IPAM configuration of a swarm network, as swarmkit validates it (IPv4 only here).
fn check_ipam_config(c: berth_api::network::IpamConfig) -> Result<api::IpamConfig> {
    let invalid =
        |what: &str, v: &str| Error::rpc_invalid(format!("ipam configuration: invalid {what} {v}"));
    let sub = Subnet::parse(&c.subnet).map_err(|_| invalid("subnet", &c.subnet))?;
    if !c.ip_range.is_empty() {
        let r = Subnet::parse(&c.ip_range).map_err(|_| invalid("range", &c.ip_range))?;
        if !sub.contains(std::net::Ipv4Addr::from(r.addr)) || r.prefix < sub.prefix {
            return Err(Error::rpc_invalid(format!(
                "ipam configuration: subnet {} does not contain range {}",
                c.subnet, c.ip_range
            )));
        }
    }
    if !c.gateway.is_empty() {
        let gw: std::net::Ipv4Addr = c
            .gateway
            .parse()
            .map_err(|_| invalid("gateway", &c.gateway))?;
        if !sub.contains(gw) {
            return Err(Error::rpc_invalid(format!(
                "ipam configuration: subnet {} does not contain gateway {}",
                c.subnet, c.gateway
            )));
        }
    }
    Ok(api::IpamConfig {
        subnet: sub.to_string(),
        range: c.ip_range,
        gateway: c.gateway,
    })
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
            vips: Default::default(),
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
            let st = self.raft.status();
            let raft = RaftView {
                leader: st.leader,
                active: st.active,
            };
            let me = self.node_id.clone();
            if !self.read(|s| can_remove_member(s, &raft, &me, &id)) {
                return Err(Error::new(
                    400,
                    "rpc error: code = FailedPrecondition desc = can't remove member from the raft: this would result in a loss of quorum",
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
        check_no_driver("secret", spec.driver.as_ref(), spec.templating.as_ref())?;
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
        check_no_driver("config", None, spec.templating.as_ref())?;
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

    /// `POST /networks/create` of a swarm-scoped network (driver overlay, or scope swarm).
    pub async fn create_network(&self, req: berth_api::network::CreateRequest) -> Result<String> {
        self.cluster_ready()?;
        let spec = network_spec(req)?;
        let encrypted = spec
            .driver_configuration
            .as_ref()
            .is_some_and(|d| d.options.contains_key("encrypted"));
        if encrypted {
            self.ensure_network_key().await?;
        }
        let id = new_id();
        let t = now();
        let driver = spec
            .driver_configuration
            .as_ref()
            .map(|d| d.name.clone())
            .unwrap_or_default();
        self.propose(Command::CreateNetwork {
            network: Box::new(api::Network {
                id: id.clone(),
                version: api::ObjectVersion::default(),
                created_at: t.clone(),
                updated_at: t,
                ipam_options: spec.ipam_options.clone(),
                spec,
                driver_state: api::Driver {
                    name: driver,
                    options: Default::default(),
                },
            }),
        })
        .await?;
        Ok(id)
    }

    /// Every swarm network, as `GET /networks` shows it.
    pub fn networks(&self) -> Vec<berth_api::network::Network> {
        self.read(|s| s.networks.values().map(view::network).collect())
    }

    /// `DELETE /networks/{id}` of a swarm network (id, name or unique id prefix).
    pub async fn remove_network(&self, key: &str) -> Result<()> {
        let id = self.read(|s| s.find_network(key).map(|n| n.id.clone()))?;
        self.propose(Command::RemoveNetwork { id })
            .await
            .map(|_| ())
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
        let mut spec = spec;
        swarm_spec_defaults(&mut spec)?;
        let cluster = self.read(|s| s.cluster.clone());
        let root_rotation = match &cluster {
            Some(c) => root_rotation_for(c, &spec.ca_config)?.map(Box::new),
            None => None,
        };
        // The signing CA goes into the rotation; the spec keeps neither it nor its key.
        spec.ca_config.signing_ca_cert = String::new();
        spec.ca_config.signing_ca_key = String::new();
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
            root_rotation,
            now: now(),
        })
        .await
        .map(|_| ())
    }

    /// Ends a root CA rotation once every node holds a certificate from the new root (leader
    /// only): the new root becomes the cluster's, with new join tokens. Whether it ended.
    pub async fn finish_root_rotation(&self) -> Result<bool> {
        if !self.is_leader() {
            return Ok(false);
        }
        let done = self.read(|s| {
            let c = s.cluster.as_ref()?;
            let r = c.root_rotation.as_ref()?;
            nodes_converged(s, &view::cluster_tls(c)).then(|| r.ca_cert.clone())
        });
        let Some(ca_cert) = done else {
            return Ok(false);
        };
        self.propose(Command::FinishRootRotation {
            ca_cert,
            worker_secret: crate::token::new_secret(),
            manager_secret: crate::token::new_secret(),
            now: now(),
        })
        .await?;
        Ok(true)
    }

    /// `POST /tls` from a node (leader only): records what it reports of its certificate and
    /// trusted root, then answers the cluster's TLS state once it differs from what the node
    /// knows (or after `wait_ms`).
    pub async fn node_tls(
        &self,
        node_id: &str,
        req: crate::proto::TlsRequest,
    ) -> Result<crate::proto::TlsState> {
        self.ensure_leader()?;
        let recorded = self.read(|s| s.nodes.get(node_id).map(|n| n.description.tls_info.clone()));
        match recorded {
            None => {
                return Err(Error::new(
                    403,
                    format!("node {node_id} is not a member of this swarm"),
                ))
            }
            Some(have) if have != req.tls_info => {
                self.propose(Command::NodeTls {
                    id: node_id.to_string(),
                    tls_info: Box::new(req.tls_info.clone()),
                    now: now(),
                })
                .await?;
            }
            Some(_) => {}
        }
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(req.wait_ms.min(30_000));
        let mut applied = self.raft.applied();
        loop {
            let state = self.read(|s| {
                s.cluster
                    .as_ref()
                    .map(tls_state)
                    .ok_or_else(|| Error::unavailable(NOT_IN_SWARM))
            })?;
            if req.known.as_ref() != Some(&state) {
                return Ok(state);
            }
            tokio::select! {
                r = applied.changed() => if r.is_err() { return Ok(state) },
                _ = tokio::time::sleep_until(deadline) => return Ok(state),
            }
            self.ensure_leader()?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::network::{CreateRequest, Ipam, IpamConfig};

    fn overlay(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.into(),
            driver: "overlay".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_stack_network_becomes_a_swarm_spec() {
        let mut req = overlay("st_default");
        req.labels = Some([("com.docker.stack.namespace".to_string(), "st".to_string())].into());
        req.attachable = true;
        let spec = network_spec(req).unwrap();
        assert_eq!(spec.name, "st_default");
        assert_eq!(spec.scope, "swarm");
        assert!(spec.attachable && !spec.ingress);
        assert_eq!(spec.driver_configuration.unwrap().name, "overlay");
        assert_eq!(spec.labels["com.docker.stack.namespace"], "st");
        assert!(spec.ipam_options.is_none());
        // Scope swarm without a driver: a swarm-scoped bridge.
        let spec = network_spec(CreateRequest {
            name: "b".into(),
            scope: "swarm".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(spec.driver_configuration.unwrap().name, "bridge");
    }

    #[test]
    fn network_specs_are_checked() {
        let err = |req: CreateRequest| network_spec(req).unwrap_err();
        let e = err(overlay("bridge"));
        assert_eq!(
            (e.status, e.message.as_str()),
            (403, "bridge is a pre-defined network and cannot be created")
        );
        assert_eq!(
            err(overlay("a.b")).message,
            "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component"
        );
        assert_eq!(err(overlay(&"a".repeat(64))).status, 400);
        let mut r = overlay("n");
        r.driver = "macvlan".into();
        assert_eq!(err(r).status, 404);
        let mut r = overlay("n");
        r.options = Some([("encrypted".to_string(), String::new())].into());
        let spec = network_spec(r.clone()).unwrap();
        assert!(spec
            .driver_configuration
            .unwrap()
            .options
            .contains_key("encrypted"));
        r.driver = String::new();
        r.scope = "swarm".into();
        assert!(err(r).message.contains("overlay driver"));
        let mut r = overlay("n");
        r.enable_ipv4 = Some(false);
        assert_eq!(
            err(r).message,
            "IPv4 cannot be disabled in a Swarm scoped network"
        );
        let ipam = |subnet: &str, gateway: &str| Ipam {
            driver: String::new(),
            config: Some(vec![IpamConfig {
                subnet: subnet.into(),
                gateway: gateway.into(),
                ..Default::default()
            }]),
            options: None,
        };
        let mut r = overlay("n");
        r.ipam = Some(ipam("10.9.0.0/24", "10.9.1.1"));
        assert_eq!(
            err(r).message,
            "rpc error: code = InvalidArgument desc = ipam configuration: subnet 10.9.0.0/24 does not contain gateway 10.9.1.1"
        );
        let mut r = overlay("n");
        r.ipam = Some(ipam("nope", ""));
        assert!(err(r).message.ends_with("invalid subnet nope"));
        let mut r = overlay("n");
        r.ipam = Some(ipam("10.9.0.0/24", ""));
        let spec = network_spec(r).unwrap();
        let ipam = spec.ipam_options.unwrap();
        assert_eq!(ipam.driver.name, "default");
        assert_eq!(ipam.configs[0].subnet, "10.9.0.0/24");
    }

    #[test]
    fn service_networks_are_stored_by_id() {
        let mut s = State {
            cluster: Some(Default::default()),
            ..Default::default()
        };
        let spec = network_spec(overlay("st_default")).unwrap();
        s.apply(
            2,
            Command::CreateNetwork {
                network: Box::new(api::Network {
                    id: "k2v9netid".into(),
                    spec,
                    ..Default::default()
                }),
            },
        )
        .unwrap();
        let svc = |target: &str| {
            let mut spec = api::ServiceSpec {
                name: "st_web".into(),
                ..Default::default()
            };
            spec.task_template.container_spec = Some(api::ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            });
            spec.task_template.networks = vec![api::NetworkAttachmentConfig {
                target: target.into(),
                aliases: vec!["web".into()],
                ..Default::default()
            }];
            spec
        };
        for key in ["st_default", "k2v9netid", "k2v9"] {
            let got = normalize(&s, svc(key), "id").unwrap();
            assert_eq!(got.task_template.networks[0].target, "k2v9netid", "{key}");
            assert_eq!(got.task_template.networks[0].aliases, ["web"]);
        }
        let mut legacy = svc("st_default");
        legacy.networks = std::mem::take(&mut legacy.task_template.networks);
        let got = normalize(&s, legacy, "id").unwrap();
        assert!(got.networks.is_empty());
        assert_eq!(got.task_template.networks[0].target, "k2v9netid");
        let e = normalize(&s, svc("nope"), "id").unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (404, "network nope not found")
        );
    }

    #[test]
    fn demotion_keeps_a_reachable_majority() {
        let mut s = State::default();
        for (id, raft_id) in [("a", 1), ("b", 2), ("c", 3)] {
            s.nodes.insert(
                id.to_string(),
                crate::store::NodeRec {
                    id: id.to_string(),
                    raft_id,
                    state: api::NodeState::Ready,
                    ..Default::default()
                },
            );
        }
        let view = |active: Vec<u64>| RaftView { leader: 1, active };
        // All up: any one may go.
        assert!(can_remove_member(&s, &view(vec![1, 2, 3]), "a", "b"));
        // c is down: demoting b would leave {a, c} with c dead, so it is refused; c itself
        // may go ({a, b} both up).
        assert!(!can_remove_member(&s, &view(vec![1, 2]), "a", "b"));
        assert!(can_remove_member(&s, &view(vec![1, 2]), "a", "c"));
        // On a follower node states decide; the answering manager counts as reachable.
        s.nodes.get_mut("c").unwrap().state = api::NodeState::Down;
        s.nodes.get_mut("b").unwrap().state = api::NodeState::Down;
        let follower = RaftView {
            leader: 1,
            active: Vec::new(),
        };
        assert!(can_remove_member(&s, &follower, "b", "c"));
        assert!(!can_remove_member(&s, &follower, "a", "b"));
    }

    #[test]
    fn swarm_specs_get_what_berth_runs_with() {
        let mut spec = api::SwarmSpec::default();
        swarm_spec_defaults(&mut spec).unwrap();
        assert_eq!(spec.orchestration.task_history_retention_limit, Some(5));
        assert_eq!(
            (
                spec.raft.snapshot_interval,
                spec.raft.log_entries_for_slow_followers,
                spec.raft.election_tick,
                spec.raft.heartbeat_tick
            ),
            (10_000, 500, 10, 1)
        );
        assert_eq!(spec.dispatcher.heartbeat_period, 1_000_000_000);
        assert_eq!(spec.ca_config.node_cert_expiry, 2160 * 3600 * 1_000_000_000);
        // What was asked is kept; Raft settings berth does not run with are refused.
        let mut spec = api::SwarmSpec::default();
        spec.orchestration.task_history_retention_limit = Some(-1);
        spec.dispatcher.heartbeat_period = 5_000_000_000;
        swarm_spec_defaults(&mut spec).unwrap();
        assert_eq!(spec.orchestration.task_history_retention_limit, Some(-1));
        assert_eq!(spec.dispatcher.heartbeat_period, 5_000_000_000);
        let mut spec = api::SwarmSpec::default();
        spec.raft.snapshot_interval = 5000;
        let e = swarm_spec_defaults(&mut spec).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "rpc error: code = InvalidArgument desc = berth's Raft runs with SnapshotInterval 10000; other values are not supported")
        );
        let mut spec = api::SwarmSpec::default();
        spec.ca_config.node_cert_expiry = 60_000_000_000;
        let e = swarm_spec_defaults(&mut spec).unwrap_err();
        assert!(
            e.message
                .ends_with("minimum certificate expiry time is: 1h0m0s"),
            "{}",
            e.message
        );
    }

    /// A minimal service spec for `normalize`.
    fn plain_service() -> api::ServiceSpec {
        let mut spec = api::ServiceSpec {
            name: "web".into(),
            ..Default::default()
        };
        spec.task_template.container_spec = Some(api::ContainerSpec {
            image: "busybox".into(),
            ..Default::default()
        });
        spec
    }

    #[test]
    fn placement_is_checked_as_swarmkit_parses_it() {
        let s = State::default();
        let with = |constraints: &[&str], prefs: &[&str]| {
            let mut spec = plain_service();
            spec.task_template.placement = Some(api::Placement {
                constraints: constraints.iter().map(|c| c.to_string()).collect(),
                preferences: prefs
                    .iter()
                    .map(|d| api::PlacementPreference {
                        spread: Some(api::SpreadOver {
                            spread_descriptor: d.to_string(),
                        }),
                    })
                    .collect(),
                ..Default::default()
            });
            normalize(&s, spec, "id").map(|_| ()).map_err(|e| e.message)
        };
        let invalid = |m: &str| Err(format!("rpc error: code = InvalidArgument desc = {m}"));
        assert_eq!(
            with(
                &[
                    "node.role==manager",
                    "node.labels.zone != a-1",
                    "engine.labels.os==linux",
                    "Node.Hostname==n1"
                ],
                &["node.labels.zone", "engine.labels.rack"]
            ),
            Ok(())
        );
        assert_eq!(
            with(&["node.role=manager"], &[]),
            invalid("constraint expected one operator from ==, !=")
        );
        assert_eq!(
            with(&["node role==manager"], &[]),
            invalid("key 'node role' is invalid")
        );
        assert_eq!(
            with(&["node.role==man<ager"], &[]),
            invalid("value 'man<ager' is invalid")
        );
        assert_eq!(
            with(&["node.labels.==x"], &[])
                .map_err(|m| m.contains("constraint key 'node.labels.' is unknown")),
            Err(true)
        );
        assert_eq!(
            with(&["node.name==x"], &[])
                .map_err(|m| m.contains("constraint key 'node.name' is unknown")),
            Err(true)
        );
        assert_eq!(
            with(&[], &["node.hostname"]),
            invalid("invalid placement preference 'node.hostname': berth spreads over node.labels.<name> or engine.labels.<name>")
        );
    }

    #[test]
    fn default_address_pools_are_checked() {
        let pools = |p: &[&str]| p.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let err = |p: &[&str], size: u32| {
            let e = check_addr_pools(&pools(p), size).unwrap_err();
            assert_eq!(e.status, 400);
            e.message
        };
        check_addr_pools(&[], 0).unwrap();
        check_addr_pools(&pools(&["10.20.0.0/16", " 172.30.0.0/16"]), 26).unwrap();
        assert_eq!(err(&["10.0.0.0/8"], 30), "subnet size is out of range: 30");
        assert_eq!(
            err(&["10.20.0.0/16"], 12),
            "invalid CIDR: \"10.20.0.0/16\". Subnet size is too small for pool: 12"
        );
        assert_eq!(
            err(&["10.20.0.0/25"], 0),
            "invalid CIDR: \"10.20.0.0/25\". Subnet size is too small for pool: 24"
        );
        assert!(err(&["fd00::/64"], 0).starts_with("invalid base pool fd00::/64: "));
        assert!(err(&["10.0.0.1/8"], 0).starts_with("invalid base pool 10.0.0.1/8: "));
    }

    #[test]
    fn ingress_ports_refused_with_dnsrr_and_sctp_ports_refused() {
        let s = State::default();
        let with = |mode: &str, protocol: &str, publish_mode: &str| {
            let mut spec = plain_service();
            spec.endpoint_spec = Some(api::EndpointSpec {
                mode: mode.into(),
                ports: vec![api::PortConfig {
                    protocol: protocol.into(),
                    publish_mode: publish_mode.into(),
                    target_port: 80,
                    published_port: 8080,
                    ..Default::default()
                }],
            });
            normalize(&s, spec, "id").map(|_| ()).map_err(|e| e.message)
        };
        assert_eq!(
            with("dnsrr", "tcp", ""),
            Err("rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode".into())
        );
        assert_eq!(with("dnsrr", "tcp", "host"), Ok(()));
        assert_eq!(with("vip", "udp", "ingress"), Ok(()));
        for mode in ["ingress", "host"] {
            assert_eq!(
                with("", "sctp", mode),
                Err("rpc error: code = InvalidArgument desc = EndpointSpec: berth publishes tcp and udp ports: sctp is not supported".into())
            );
        }
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;

    fn cluster() -> ClusterRec {
        let root = RootCa::generate().unwrap();
        ClusterRec {
            root_ca_cert: root.cert_pem().to_string(),
            root_ca_key: root.key_pem().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn ca_config_decides_the_rotation() {
        let c = cluster();
        let same = api::CaConfig::default();
        assert!(root_rotation_for(&c, &same).unwrap().is_none());
        // A changed ForceRotate makes a new root, cross-signed by the current one.
        let forced = api::CaConfig {
            force_rotate: 1,
            ..Default::default()
        };
        let r = root_rotation_for(&c, &forced).unwrap().unwrap();
        let current = RootCa::from_pem(&c.root_ca_cert, None).unwrap();
        let next = RootCa::from_pem(&r.ca_cert, Some(&r.ca_key)).unwrap();
        assert!(next.can_issue());
        assert_ne!(next.digest(), current.digest());
        let cross = crate::ca::pem_certs(&r.cross_signed_cert).unwrap();
        current.verify_signed(&cross[0]).unwrap();
        // A given root with its key; the current root again is no change.
        let given = RootCa::generate().unwrap();
        let signing = api::CaConfig {
            signing_ca_cert: given.cert_pem().to_string(),
            signing_ca_key: given.key_pem().unwrap(),
            ..Default::default()
        };
        let r = root_rotation_for(&c, &signing).unwrap().unwrap();
        assert!(crate::ca::same_cert(&r.ca_cert, given.cert_pem()));
        let current_again = api::CaConfig {
            signing_ca_cert: c.root_ca_cert.clone(),
            signing_ca_key: c.root_ca_key.clone(),
            ..Default::default()
        };
        assert!(root_rotation_for(&c, &current_again).unwrap().is_none());
        // Refusals: a key alone, a certificate alone (an external CA), a key that is not the
        // certificate's, two certificates.
        let errors = [
            api::CaConfig {
                signing_ca_key: given.key_pem().unwrap(),
                ..Default::default()
            },
            api::CaConfig {
                signing_ca_cert: given.cert_pem().to_string(),
                ..Default::default()
            },
            api::CaConfig {
                signing_ca_cert: given.cert_pem().to_string(),
                signing_ca_key: c.root_ca_key.clone(),
                ..Default::default()
            },
            api::CaConfig {
                signing_ca_cert: format!("{}{}", given.cert_pem(), c.root_ca_cert),
                signing_ca_key: given.key_pem().unwrap(),
                ..Default::default()
            },
        ];
        for (i, ca) in errors.iter().enumerate() {
            let e = root_rotation_for(&c, ca).unwrap_err();
            assert!(
                e.message.starts_with("rpc error: code = InvalidArgument"),
                "{i}: {e:?}"
            );
        }
    }

    #[test]
    fn a_rotation_finishes_into_the_new_root_with_new_tokens() {
        let mut s = State {
            cluster: Some(cluster()),
            ..Default::default()
        };
        let forced = api::CaConfig {
            force_rotate: 1,
            ..Default::default()
        };
        let c = s.cluster.clone().unwrap();
        let r = root_rotation_for(&c, &forced).unwrap().unwrap();
        let mut spec = api::SwarmSpec::default();
        spec.ca_config.force_rotate = 1;
        s.apply(
            5,
            Command::UpdateCluster {
                version: c.version,
                spec: Box::new(spec),
                worker_secret: None,
                manager_secret: None,
                unlock_key: None,
                root_rotation: Some(Box::new(r.clone())),
                now: now(),
            },
        )
        .unwrap();
        let c = s.cluster.clone().unwrap();
        assert_eq!(c.last_forced_rotation, 1);
        // The same ForceRotate again asks for nothing more.
        assert!(root_rotation_for(&c, &forced).unwrap().is_none());
        let tls = view::cluster_tls(&c);
        assert_eq!(tls.trust_root, c.root_ca_cert);
        let next = RootCa::from_pem(&r.ca_cert, None)
            .unwrap()
            .issuer_info()
            .unwrap();
        assert_eq!(tls.cert_issuer_public_key, next.public_key);
        let state = tls_state(&c);
        assert_eq!(state.next_root, r.ca_cert);
        // A stale finish is refused; the right one swaps the root and the secrets.
        assert!(s
            .apply(
                6,
                Command::FinishRootRotation {
                    ca_cert: c.root_ca_cert.clone(),
                    worker_secret: "w".into(),
                    manager_secret: "m".into(),
                    now: now(),
                },
            )
            .is_err());
        s.apply(
            7,
            Command::FinishRootRotation {
                ca_cert: r.ca_cert.clone(),
                worker_secret: "w".into(),
                manager_secret: "m".into(),
                now: now(),
            },
        )
        .unwrap();
        let c = s.cluster.clone().unwrap();
        assert_eq!(c.root_ca_cert, r.ca_cert);
        assert_eq!(c.root_ca_key, r.ca_key);
        assert!(c.root_rotation.is_none());
        assert_eq!(
            (c.worker_secret.as_str(), c.manager_secret.as_str()),
            ("w", "m")
        );
        assert_eq!(tls_state(&c).next_root, "");
        assert_eq!(
            view::cluster_tls(&c).cert_issuer_public_key,
            next.public_key
        );
    }
}
