//! The flags of `service create` and `service update` and how they become a `ServiceSpec`: a
//! new one built from swarmkit's defaults, or the current one merged as the docker CLI merges.

use super::resources::{flag_error, HealthArgs};
use berth_api::container::{HealthConfig, Ulimit};
use berth_api::swarm::{
    ConfigReference, ContainerSpec, CredentialSpec, DiscreteGenericResource, DnsConfig, Driver,
    FileTarget, GenericResource, GlobalJob, GlobalService, Limit, Mount, NamedGenericResource,
    NetworkAttachmentConfig, Placement, PlacementPreference, PortConfig, Privileges, ReplicatedJob,
    ReplicatedService, ResourceRequirements, Resources, RestartPolicy, SecretReference,
    ServiceMode, ServiceSpec, SpreadOver, UpdateConfig,
};
use clap::Args;
use std::collections::BTreeMap;

/// Flags `service create` and `service update` share, under the same names.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Credential spec for managed service account (Windows only)
    #[arg(long = "credential-spec")]
    pub credential_spec: Option<String>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long = "endpoint-mode")]
    pub endpoint_mode: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[command(flatten)]
    pub health: HealthArgs,
    /// Container hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Service container isolation mode
    #[arg(long)]
    pub isolation: Option<String>,
    /// Limit CPUs
    #[arg(long = "limit-cpu")]
    pub limit_cpu: Option<String>,
    /// Limit Memory
    #[arg(long = "limit-memory")]
    pub limit_memory: Option<String>,
    /// Limit maximum number of processes (default 0 = unlimited)
    #[arg(long = "limit-pids")]
    pub limit_pids: Option<i64>,
    /// Logging driver for service
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Logging driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Number of job tasks to run concurrently (default equal to --replicas)
    #[arg(long = "max-concurrent")]
    pub max_concurrent: Option<u64>,
    /// Do not query the registry to resolve image digest and supported platforms
    #[arg(long = "no-resolve-image")]
    pub no_resolve_image: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_negative_numbers = true)]
    pub oom_score_adj: Option<i64>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Number of tasks
    #[arg(long)]
    pub replicas: Option<u64>,
    /// Maximum number of tasks per node (default 0 = unlimited)
    #[arg(long = "replicas-max-per-node")]
    pub replicas_max_per_node: Option<u64>,
    /// Reserve CPUs
    #[arg(long = "reserve-cpu")]
    pub reserve_cpu: Option<String>,
    /// Reserve Memory
    #[arg(long = "reserve-memory")]
    pub reserve_memory: Option<String>,
    /// Restart when condition is met ("none", "on-failure", "any") (default "any")
    #[arg(long = "restart-condition")]
    pub restart_condition: Option<String>,
    /// Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "restart-delay")]
    pub restart_delay: Option<String>,
    /// Maximum number of restarts before giving up
    #[arg(long = "restart-max-attempts")]
    pub restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long = "restart-window")]
    pub restart_window: Option<String>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s)
    #[arg(long = "rollback-delay")]
    pub rollback_delay: Option<String>,
    /// Action on rollback failure ("pause", "continue") (default "pause")
    #[arg(long = "rollback-failure-action")]
    pub rollback_failure_action: Option<String>,
    /// Failure rate to tolerate during a rollback (default 0)
    #[arg(long = "rollback-max-failure-ratio")]
    pub rollback_max_failure_ratio: Option<f32>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "rollback-monitor")]
    pub rollback_monitor: Option<String>,
    /// Rollback order ("start-first", "stop-first") (default "stop-first")
    #[arg(long = "rollback-order")]
    pub rollback_order: Option<String>,
    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once) (default 1)
    #[arg(long = "rollback-parallelism")]
    pub rollback_parallelism: Option<u64>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)
    #[arg(long = "stop-grace-period")]
    pub stop_grace_period: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tty: Option<bool>,
    /// Delay between updates (ns|us|ms|s|m|h) (default 0s)
    #[arg(long = "update-delay")]
    pub update_delay: Option<String>,
    /// Action on update failure ("pause", "continue", "rollback") (default "pause")
    #[arg(long = "update-failure-action")]
    pub update_failure_action: Option<String>,
    /// Failure rate to tolerate during an update (default 0)
    #[arg(long = "update-max-failure-ratio")]
    pub update_max_failure_ratio: Option<f32>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "update-monitor")]
    pub update_monitor: Option<String>,
    /// Update order ("start-first", "stop-first") (default "stop-first")
    #[arg(long = "update-order")]
    pub update_order: Option<String>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once) (default 1)
    #[arg(long = "update-parallelism")]
    pub update_parallelism: Option<u64>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Send registry authentication details to swarm agents
    #[arg(long = "with-registry-auth")]
    pub with_registry_auth: bool,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
}

/// `service create` flags and arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Specify configurations to expose to the service
    #[arg(long)]
    pub config: Vec<String>,
    /// Placement constraints
    #[arg(long)]
    pub constraint: Vec<String>,
    /// Container labels
    #[arg(long = "container-label")]
    pub container_label: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set environment variables
    #[arg(short = 'e', long)]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// User defined resources
    #[arg(long = "generic-resource")]
    pub generic_resource: Vec<String>,
    /// Set one or more supplementary user groups for the container
    #[arg(long)]
    pub group: Vec<String>,
    /// Set one or more custom host-to-IP mappings (host:ip)
    #[arg(long)]
    pub host: Vec<String>,
    /// Service labels
    #[arg(short = 'l', long)]
    pub label: Vec<String>,
    /// Service mode ("replicated", "global", "replicated-job", "global-job")
    #[arg(long, default_value = "replicated")]
    pub mode: String,
    /// Attach a filesystem mount to the service
    #[arg(long)]
    pub mount: Vec<String>,
    /// Service name
    #[arg(long)]
    pub name: Option<String>,
    /// Network attachments
    #[arg(long)]
    pub network: Vec<String>,
    /// Add a placement preference
    #[arg(long = "placement-pref")]
    pub placement_pref: Vec<String>,
    /// Publish a port as a node port
    #[arg(short = 'p', long)]
    pub publish: Vec<String>,
    /// Specify secrets to expose to the service
    #[arg(long)]
    pub secret: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `service update` flags and the service.
#[derive(Debug, Clone, Default, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Service command args
    #[arg(long)]
    pub args: Option<String>,
    /// Add or update a config file on a service
    #[arg(long = "config-add")]
    pub config_add: Vec<String>,
    /// Remove a configuration file
    #[arg(long = "config-rm")]
    pub config_rm: Vec<String>,
    /// Add or update a placement constraint
    #[arg(long = "constraint-add")]
    pub constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long = "constraint-rm")]
    pub constraint_rm: Vec<String>,
    /// Add or update a container label
    #[arg(long = "container-label-add")]
    pub container_label_add: Vec<String>,
    /// Remove a container label by its key
    #[arg(long = "container-label-rm")]
    pub container_label_rm: Vec<String>,
    /// Add or update a custom DNS server
    #[arg(long = "dns-add")]
    pub dns_add: Vec<String>,
    /// Remove a custom DNS server
    #[arg(long = "dns-rm")]
    pub dns_rm: Vec<String>,
    /// Add or update a DNS option
    #[arg(long = "dns-option-add")]
    pub dns_option_add: Vec<String>,
    /// Remove a DNS option
    #[arg(long = "dns-option-rm")]
    pub dns_option_rm: Vec<String>,
    /// Add or update a custom DNS search domain
    #[arg(long = "dns-search-add")]
    pub dns_search_add: Vec<String>,
    /// Remove a DNS search domain
    #[arg(long = "dns-search-rm")]
    pub dns_search_rm: Vec<String>,
    /// Add or update an environment variable
    #[arg(long = "env-add")]
    pub env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long = "env-rm")]
    pub env_rm: Vec<String>,
    /// Force update even if no changes require it
    #[arg(long)]
    pub force: bool,
    /// Add a Generic resource
    #[arg(long = "generic-resource-add")]
    pub generic_resource_add: Vec<String>,
    /// Remove a Generic resource
    #[arg(long = "generic-resource-rm")]
    pub generic_resource_rm: Vec<String>,
    /// Add an additional supplementary user group to the container
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Remove a previously added supplementary user group from the container
    #[arg(long = "group-rm")]
    pub group_rm: Vec<String>,
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long = "host-add")]
    pub host_add: Vec<String>,
    /// Remove a custom host-to-IP mapping ("host:ip")
    #[arg(long = "host-rm")]
    pub host_rm: Vec<String>,
    /// Service image tag
    #[arg(long)]
    pub image: Option<String>,
    /// Add or update a service label
    #[arg(long = "label-add")]
    pub label_add: Vec<String>,
    /// Remove a label by its key
    #[arg(long = "label-rm")]
    pub label_rm: Vec<String>,
    /// Add or update a mount on a service
    #[arg(long = "mount-add")]
    pub mount_add: Vec<String>,
    /// Remove a mount by its target path
    #[arg(long = "mount-rm")]
    pub mount_rm: Vec<String>,
    /// Add a network
    #[arg(long = "network-add")]
    pub network_add: Vec<String>,
    /// Remove a network
    #[arg(long = "network-rm")]
    pub network_rm: Vec<String>,
    /// Add a placement preference
    #[arg(long = "placement-pref-add")]
    pub placement_pref_add: Vec<String>,
    /// Remove a placement preference
    #[arg(long = "placement-pref-rm")]
    pub placement_pref_rm: Vec<String>,
    /// Add or update a published port
    #[arg(long = "publish-add")]
    pub publish_add: Vec<String>,
    /// Remove a published port by its target port
    #[arg(long = "publish-rm")]
    pub publish_rm: Vec<String>,
    /// Rollback to previous specification
    #[arg(long)]
    pub rollback: bool,
    /// Add or update a secret on a service
    #[arg(long = "secret-add")]
    pub secret_add: Vec<String>,
    /// Remove a secret
    #[arg(long = "secret-rm")]
    pub secret_rm: Vec<String>,
    /// Add or update a Sysctl option
    #[arg(long = "sysctl-add")]
    pub sysctl_add: Vec<String>,
    /// Remove a Sysctl option
    #[arg(long = "sysctl-rm")]
    pub sysctl_rm: Vec<String>,
    /// Add or update a ulimit option
    #[arg(long = "ulimit-add")]
    pub ulimit_add: Vec<String>,
    /// Remove a ulimit option
    #[arg(long = "ulimit-rm")]
    pub ulimit_rm: Vec<String>,
    pub service: String,
}

/// A Go duration flag in nanoseconds.
pub fn duration(flag: &str, v: &str) -> Result<i64, String> {
    berth_api::duration::parse(v).map_err(|e| flag_error(flag, v, &e))
}

/// A duration flag that must not be negative (`--restart-delay`, `--stop-grace-period`).
fn positive_duration(flag: &str, v: &str) -> Result<i64, String> {
    let n = duration(flag, v)?;
    if n < 0 {
        return Err(flag_error(flag, v, "duration cannot be negative"));
    }
    Ok(n)
}

fn cpus(flag: &str, v: &str) -> Result<i64, String> {
    super::resources::nano_cpus(Some(v))
        .map_err(|e| e.replace("\"--cpus\"", &format!("\"{flag}\"")))
}

fn memory(flag: &str, v: &str) -> Result<i64, String> {
    super::resources::bytes(flag, Some(v))
}

/// Split a command line into words as a POSIX shell does (quotes and backslashes), the way
/// the docker CLI reads `--entrypoint` and `--args`.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some('\n') => {}
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("EOF found after escape character".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(x) => {
                    in_word = true;
                    cur.push(x);
                }
                None => return Err("EOF found after escape character".into()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `k=v` items as a map; a bare `k` maps to "".
pub fn kv_map(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

fn csv(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// One `--publish` value: `published:target[/proto]`, `target`, ranges, or the long form
/// `mode=host,published=8080,target=80,protocol=udp`.
pub fn parse_port(value: &str) -> Result<Vec<PortConfig>, String> {
    let long = value.split(',').all(|f| {
        f.split_once('=')
            .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
    });
    if !long {
        let bindings = crate::ports::parse_publish(value)?;
        let mut out = Vec::new();
        for b in bindings {
            if !b.host_ip.is_empty() {
                return Err("hostip is not supported".into());
            }
            let (port, proto) = b.key.split_once('/').unwrap_or((&b.key, "tcp"));
            let target: u32 = port
                .parse()
                .map_err(|_| format!("invalid port specification: {value:?}"))?;
            let published: u32 = if b.host_port.is_empty() {
                0
            } else {
                b.host_port.parse().map_err(|_| {
                    format!(
                        "invalid published port range {:?} for {value:?}",
                        b.host_port
                    )
                })?
            };
            out.push(PortConfig {
                protocol: proto.to_string(),
                target_port: target,
                published_port: published,
                publish_mode: "ingress".into(),
                ..Default::default()
            });
        }
        return Ok(out);
    }
    let mut p = PortConfig {
        protocol: "tcp".into(),
        publish_mode: "ingress".into(),
        ..Default::default()
    };
    for field in csv(value) {
        let lower = field.to_ascii_lowercase();
        let (key, val) = lower
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("invalid field: {field}"))?;
        let port = |what: &str| {
            val.parse::<u16>().map(u32::from).map_err(|_| {
                format!("invalid {what} port ({val}): value must be an integer: invalid syntax")
            })
        };
        match key {
            "protocol" => match val {
                "tcp" | "udp" | "sctp" => p.protocol = val.to_string(),
                _ => return Err(format!("invalid protocol value '{val}'")),
            },
            "mode" => match val {
                "ingress" | "host" => p.publish_mode = val.to_string(),
                _ => {
                    return Err(format!(
                        "invalid publish mode value ({val}): must be either 'ingress' or 'host'"
                    ))
                }
            },
            "target" => p.target_port = port("target")?,
            "published" => p.published_port = port("published")?,
            _ => return Err(format!("invalid field key: {key}")),
        }
    }
    if p.target_port == 0 {
        return Err("missing mandatory field 'target'".into());
    }
    Ok(vec![p])
}

fn parse_ports(values: &[String], flag: &str) -> Result<Vec<PortConfig>, String> {
    let mut out = Vec::new();
    for v in values {
        out.extend(parse_port(v).map_err(|e| flag_error(flag, v, &e))?);
    }
    Ok(out)
}

/// `--placement-pref spread=node.labels.zone`.
pub fn parse_placement_pref(value: &str) -> Result<PlacementPreference, String> {
    let (strategy, arg) = value
        .split_once('=')
        .filter(|(s, _)| !s.is_empty())
        .ok_or_else(|| {
            "placement preference must be of the format \"<strategy>=<arg>\"".to_string()
        })?;
    if strategy != "spread" {
        return Err(format!(
            "unsupported placement preference {strategy} (only spread is supported)"
        ));
    }
    Ok(PlacementPreference {
        spread: Some(SpreadOver {
            spread_descriptor: arg.to_string(),
        }),
    })
}

/// A `--secret` or `--config` value: `name` or `source=name,target=path,uid=0,gid=0,mode=0444`;
/// returns the source name and the file target.
pub fn parse_file_ref(value: &str) -> Result<(String, FileTarget), String> {
    let mut source = String::new();
    let mut file = FileTarget {
        uid: "0".into(),
        gid: "0".into(),
        mode: 0o444,
        ..Default::default()
    };
    if !value.contains('=') {
        source = value.to_string();
    } else {
        for field in csv(value) {
            let (key, val) = field
                .split_once('=')
                .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
            match key.to_ascii_lowercase().as_str() {
                "source" | "src" => source = val.to_string(),
                "target" => file.name = val.to_string(),
                "uid" => file.uid = val.to_string(),
                "gid" => file.gid = val.to_string(),
                "mode" => {
                    file.mode = u32::from_str_radix(val, 8)
                        .map_err(|_| format!("invalid mode specified: {val}"))?
                }
                _ => return Err(format!("invalid field in secret request: {key}")),
            }
        }
    }
    if source.is_empty() {
        return Err("source is required".into());
    }
    if file.name.is_empty() {
        file.name = source.clone();
    }
    Ok((source, file))
}

/// `--network name` or `--network name=n,alias=a,driver-opt=k=v`.
pub fn parse_network(value: &str) -> Result<NetworkAttachmentConfig, String> {
    let mut n = NetworkAttachmentConfig::default();
    if !value.contains('=') {
        n.target = value.to_string();
        return Ok(n);
    }
    for field in csv(value) {
        let (key, val) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
        match key.to_ascii_lowercase().as_str() {
            "name" => n.target = val.to_string(),
            "alias" => n.aliases.push(val.to_string()),
            "driver-opt" => {
                let (k, v) = val.split_once('=').ok_or_else(|| {
                    format!("invalid key value pair format in driver options: {val}")
                })?;
                n.driver_opts.insert(k.to_string(), v.to_string());
            }
            "ip" | "ip6" | "link-local-ip" | "mac-address" | "gw-priority" => {
                return Err(format!(
                    "network option {key} is not supported for services"
                ))
            }
            _ => return Err(format!("invalid field key {key}")),
        }
    }
    if n.target.is_empty() {
        return Err("network name/id is not specified".into());
    }
    Ok(n)
}

/// `--generic-resource kind=value`: a number counts (discrete), anything else names one.
pub fn parse_generic(value: &str) -> Result<GenericResource, String> {
    let (kind, val) = value
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("invalid generic resource specification: {value}"))?;
    Ok(match val.parse::<i64>() {
        Ok(n) => GenericResource {
            discrete_resource_spec: Some(DiscreteGenericResource {
                kind: kind.to_string(),
                value: n,
            }),
            ..Default::default()
        },
        Err(_) => GenericResource {
            named_resource_spec: Some(NamedGenericResource {
                kind: kind.to_string(),
                value: val.to_string(),
            }),
            ..Default::default()
        },
    })
}

fn generic_key(g: &GenericResource) -> String {
    match (&g.discrete_resource_spec, &g.named_resource_spec) {
        (Some(d), _) => d.kind.clone(),
        (None, Some(n)) => format!("{}={}", n.kind, n.value),
        (None, None) => String::new(),
    }
}

/// `--mount` as a service mount.
pub fn parse_mount(value: &str) -> Result<Mount, String> {
    let v = crate::mounts::parse_mount(value)?;
    berth_api::decode::from_value(v).map_err(|e| format!("invalid mount {value:?}: {e}"))
}

/// `--credential-spec config://name|file://path|registry://key`.
fn parse_credential_spec(value: &str) -> Result<CredentialSpec, String> {
    let mut c = CredentialSpec::default();
    match value.split_once("://") {
        Some(("config", v)) => c.config = v.to_string(),
        Some(("file", v)) => c.file = v.to_string(),
        Some(("registry", v)) => c.registry = v.to_string(),
        _ if value.is_empty() => {}
        _ => {
            return Err(
                "invalid credential spec: value must be prefixed with \"config://\", \"file://\", or \"registry://\""
                    .into(),
            )
        }
    }
    Ok(c)
}

/// `--host name:ip` as a hosts-file line `ip name`.
fn host_line(h: &str) -> Result<String, String> {
    let (name, ip) = h
        .split_once(':')
        .filter(|(n, i)| !n.is_empty() && !i.is_empty())
        .ok_or_else(|| format!("bad format for add-host: {h:?}"))?;
    Ok(format!("{ip} {name}"))
}

fn ulimits(values: &[String]) -> Result<Vec<Ulimit>, String> {
    values
        .iter()
        .map(|u| {
            super::resources::ulimit(u).and_then(|v| {
                berth_api::decode::from_value(v).map_err(|e| format!("invalid ulimit {u:?}: {e}"))
            })
        })
        .collect()
}

/// Docker's capability names: upper case with a `CAP_` prefix, `ALL` as is.
fn capability(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// `--cap-add` and `--cap-drop` merged into a spec's lists as docker merges them: dropping an
/// added capability takes it off the add list (and the other way round), `RESET` empties a
/// list, and one both added and dropped by the flags is added.
fn merge_capabilities(
    add: &[String],
    drop: &[String],
    to_add: &[String],
    to_drop: &[String],
) -> (Vec<String>, Vec<String>) {
    use std::collections::BTreeSet;
    let set = |l: &[String]| {
        l.iter()
            .map(|c| capability(c))
            .collect::<BTreeSet<String>>()
    };
    let (mut cap_add, mut cap_drop) = (set(add), set(drop));
    let (mut to_add, mut to_drop) = (set(to_add), set(to_drop));
    if to_add.remove("CAP_RESET") {
        cap_add.clear();
    }
    if to_drop.remove("CAP_RESET") {
        cap_drop.clear();
    }
    for c in &to_drop {
        if !to_add.contains(c) && !cap_add.remove(c) {
            cap_drop.insert(c.clone());
        }
    }
    for c in &to_add {
        if !cap_drop.remove(c) {
            cap_add.insert(c.clone());
        }
    }
    (
        cap_add.into_iter().collect(),
        cap_drop.into_iter().collect(),
    )
}

/// swarmkit's default update (and rollback) configuration.
pub fn default_update_config() -> UpdateConfig {
    UpdateConfig {
        parallelism: 1,
        delay: 0,
        failure_action: "pause".into(),
        monitor: 5_000_000_000,
        max_failure_ratio: 0.0,
        order: "stop-first".into(),
    }
}

/// swarmkit's default restart policy.
fn default_restart() -> RestartPolicy {
    RestartPolicy {
        condition: "any".into(),
        delay: Some(5_000_000_000),
        max_attempts: Some(0),
        window: None,
    }
}

/// Environment merge of `--env-rm` (by name) then `--env-add` (replacing a same-named entry
/// in place).
pub fn merge_env(env: &mut Vec<String>, add: &[String], rm: &[String]) {
    let key = |e: &str| e.split_once('=').map(|x| x.0).unwrap_or(e).to_string();
    env.retain(|e| !rm.contains(&key(e)));
    for a in add {
        let k = key(a);
        match env.iter().position(|e| key(e) == k) {
            Some(i) => env[i] = a.clone(),
            None => env.push(a.clone()),
        }
    }
}

/// `--publish-rm` then `--publish-add`, keyed as docker keys ports (published, target,
/// protocol, mode), sorted the same way.
pub fn merge_ports(ports: &mut Vec<PortConfig>, add: &[PortConfig], rm: &[PortConfig]) {
    fn key(p: &PortConfig) -> String {
        format!(
            "{}:{}/{}/{}",
            p.published_port, p.target_port, p.protocol, p.publish_mode
        )
    }
    fn same(a: &str, b: &str, default: &str) -> bool {
        a == b || (a.is_empty() && b == default) || (b.is_empty() && a == default)
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out: Vec<PortConfig> = Vec::new();
    for p in ports.iter() {
        if !seen.insert(key(p)) {
            continue;
        }
        let removed = rm.iter().any(|r| {
            same(&p.protocol, &r.protocol, "tcp")
                && p.target_port == r.target_port
                && same(&p.publish_mode, &r.publish_mode, "ingress")
        });
        if !removed {
            out.push(p.clone());
        }
    }
    for p in add {
        if seen.insert(key(p)) {
            out.push(p.clone());
        }
    }
    out.sort_by_key(key);
    *ports = out;
}

/// Add then remove items of a string list, deduplicated and sorted (constraints, groups,
/// DNS settings).
fn merge_sorted(list: &mut Vec<String>, add: &[String], rm: &[String]) {
    list.extend(add.iter().cloned());
    list.retain(|x| !rm.contains(x));
    list.sort();
    list.dedup();
}

fn merge_map(map: &mut BTreeMap<String, String>, add: &[String], rm: &[String]) {
    for k in rm {
        let k = k.split_once('=').map(|x| x.0).unwrap_or(k);
        map.remove(k);
    }
    map.extend(kv_map(add));
}

impl CommonArgs {
    fn update_config_given(&self) -> bool {
        self.update_parallelism.is_some()
            || self.update_delay.is_some()
            || self.update_monitor.is_some()
            || self.update_failure_action.is_some()
            || self.update_max_failure_ratio.is_some()
            || self.update_order.is_some()
    }

    fn rollback_config_given(&self) -> bool {
        self.rollback_parallelism.is_some()
            || self.rollback_delay.is_some()
            || self.rollback_monitor.is_some()
            || self.rollback_failure_action.is_some()
            || self.rollback_max_failure_ratio.is_some()
            || self.rollback_order.is_some()
    }

    /// Whether any flag that changes the spec was given (not -d, -q and the registry flags).
    fn any_spec_flag(&self) -> bool {
        let h = &self.health;
        !self.cap_add.is_empty()
            || !self.cap_drop.is_empty()
            || self.credential_spec.is_some()
            || self.endpoint_mode.is_some()
            || self.entrypoint.is_some()
            || h.health_cmd.is_some()
            || h.health_interval.is_some()
            || h.health_timeout.is_some()
            || h.health_retries.is_some()
            || h.health_start_period.is_some()
            || h.health_start_interval.is_some()
            || h.no_healthcheck
            || self.hostname.is_some()
            || self.init.is_some()
            || self.isolation.is_some()
            || self.limit_cpu.is_some()
            || self.limit_memory.is_some()
            || self.limit_pids.is_some()
            || self.log_driver.is_some()
            || !self.log_opt.is_empty()
            || self.max_concurrent.is_some()
            || self.oom_score_adj.is_some()
            || self.read_only.is_some()
            || self.replicas.is_some()
            || self.replicas_max_per_node.is_some()
            || self.reserve_cpu.is_some()
            || self.reserve_memory.is_some()
            || self.restart_condition.is_some()
            || self.restart_delay.is_some()
            || self.restart_max_attempts.is_some()
            || self.restart_window.is_some()
            || self.rollback_config_given()
            || self.update_config_given()
            || self.stop_grace_period.is_some()
            || self.stop_signal.is_some()
            || self.tty.is_some()
            || self.user.is_some()
            || self.workdir.is_some()
    }

    /// Apply the flags both commands share to `spec`, as `service update` merges them (on a
    /// fresh spec this is what `service create` sets). Replicas and the mode are the
    /// caller's.
    fn apply(&self, spec: &mut ServiceSpec) -> Result<(), String> {
        let task = &mut spec.task_template;
        let cs = task
            .container_spec
            .get_or_insert_with(ContainerSpec::default);
        if let Some(e) = &self.entrypoint {
            cs.command = shell_words(e).map_err(|err| flag_error("--entrypoint", e, &err))?;
        }
        if let Some(v) = &self.workdir {
            cs.dir = v.clone();
        }
        if let Some(v) = &self.user {
            cs.user = v.clone();
        }
        if let Some(v) = &self.hostname {
            cs.hostname = v.clone();
        }
        if let Some(v) = self.init {
            cs.init = Some(v);
        }
        if let Some(v) = &self.isolation {
            cs.isolation = v.clone();
        }
        if let Some(v) = self.oom_score_adj {
            cs.oom_score_adj = v;
        }
        if let Some(v) = &self.stop_grace_period {
            cs.stop_grace_period = Some(positive_duration("--stop-grace-period", v)?);
        }
        if let Some(v) = self.tty {
            cs.tty = v;
        }
        if let Some(v) = self.read_only {
            cs.read_only = v;
        }
        if let Some(v) = &self.stop_signal {
            cs.stop_signal = v.clone();
        }
        if !self.cap_add.is_empty() || !self.cap_drop.is_empty() {
            (cs.capability_add, cs.capability_drop) = merge_capabilities(
                &cs.capability_add,
                &cs.capability_drop,
                &self.cap_add,
                &self.cap_drop,
            );
        }
        if let Some(c) = &self.credential_spec {
            let cred =
                parse_credential_spec(c).map_err(|e| flag_error("--credential-spec", c, &e))?;
            cs.privileges
                .get_or_insert_with(Privileges::default)
                .credential_spec = Some(cred);
        }
        self.apply_health(cs)?;

        if self.limit_cpu.is_some() || self.limit_memory.is_some() || self.limit_pids.is_some() {
            let r = task
                .resources
                .get_or_insert_with(ResourceRequirements::default);
            let l = r.limits.get_or_insert_with(Limit::default);
            if let Some(v) = &self.limit_cpu {
                l.nano_cpus = cpus("--limit-cpu", v)?;
            }
            if let Some(v) = &self.limit_memory {
                l.memory_bytes = memory("--limit-memory", v)?;
            }
            if let Some(v) = self.limit_pids {
                l.pids = v;
            }
        }
        if self.reserve_cpu.is_some() || self.reserve_memory.is_some() {
            let r = task
                .resources
                .get_or_insert_with(ResourceRequirements::default);
            let res = r.reservations.get_or_insert_with(Resources::default);
            if let Some(v) = &self.reserve_cpu {
                res.nano_cpus = cpus("--reserve-cpu", v)?;
            }
            if let Some(v) = &self.reserve_memory {
                res.memory_bytes = memory("--reserve-memory", v)?;
            }
        }
        if self.restart_condition.is_some()
            || self.restart_delay.is_some()
            || self.restart_max_attempts.is_some()
            || self.restart_window.is_some()
        {
            let rp = task.restart_policy.get_or_insert_with(default_restart);
            if let Some(c) = &self.restart_condition {
                match c.as_str() {
                    "none" | "on-failure" | "any" => rp.condition = c.clone(),
                    _ => return Err(flag_error(
                        "--restart-condition",
                        c,
                        "invalid restart condition: must be \"none\", \"on-failure\" or \"any\"",
                    )),
                }
            }
            if let Some(v) = &self.restart_delay {
                rp.delay = Some(positive_duration("--restart-delay", v)?);
            }
            if let Some(v) = self.restart_max_attempts {
                rp.max_attempts = Some(v);
            }
            if let Some(v) = &self.restart_window {
                rp.window = Some(positive_duration("--restart-window", v)?);
            }
        }
        if let Some(n) = self.replicas_max_per_node {
            task.placement
                .get_or_insert_with(Placement::default)
                .max_replicas = n;
        }
        if let Some(d) = &self.log_driver {
            if !d.is_empty() {
                task.log_driver = Some(Driver {
                    name: d.clone(),
                    options: kv_map(&self.log_opt),
                });
            }
        }
        if let Some(m) = &self.endpoint_mode {
            let m = m.to_ascii_lowercase();
            if m != "vip" && m != "dnsrr" {
                return Err(flag_error(
                    "--endpoint-mode",
                    &m,
                    "must be \"vip\" or \"dnsrr\"",
                ));
            }
            spec.endpoint_spec.get_or_insert_with(Default::default).mode = m;
        }
        let (update, rollback) = (self.update_config_given(), self.rollback_config_given());
        let job = spec.mode.replicated_job.is_some() || spec.mode.global_job.is_some();
        if job && (update || rollback) {
            return Err("update and rollback configuration is not supported for jobs".into());
        }
        if update {
            let u = spec.update_config.get_or_insert_with(default_update_config);
            merge_update_config(
                u,
                "update",
                self.update_parallelism,
                &self.update_delay,
                &self.update_monitor,
                &self.update_failure_action,
                self.update_max_failure_ratio,
                &self.update_order,
            )?;
        }
        if rollback {
            let u = spec
                .rollback_config
                .get_or_insert_with(default_update_config);
            merge_update_config(
                u,
                "rollback",
                self.rollback_parallelism,
                &self.rollback_delay,
                &self.rollback_monitor,
                &self.rollback_failure_action,
                self.rollback_max_failure_ratio,
                &self.rollback_order,
            )?;
        }
        Ok(())
    }

    /// The health flags merged into the container spec's health check.
    fn apply_health(&self, cs: &mut ContainerSpec) -> Result<(), String> {
        let h = &self.health;
        let given = h.health_cmd.is_some()
            || h.health_interval.is_some()
            || h.health_timeout.is_some()
            || h.health_retries.is_some()
            || h.health_start_period.is_some()
            || h.health_start_interval.is_some();
        if !given && !h.no_healthcheck {
            return Ok(());
        }
        if h.no_healthcheck {
            if given {
                return Err("--no-healthcheck conflicts with --health-* options".into());
            }
            cs.healthcheck = Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            });
            return Ok(());
        }
        let hc = cs.healthcheck.get_or_insert_with(HealthConfig::default);
        if hc
            .test
            .as_ref()
            .and_then(|t| t.first())
            .is_some_and(|t| t == "NONE")
        {
            hc.test = None;
        }
        for (flag, v, field) in [
            ("--health-interval", &h.health_interval, &mut hc.interval),
            ("--health-timeout", &h.health_timeout, &mut hc.timeout),
            (
                "--health-start-period",
                &h.health_start_period,
                &mut hc.start_period,
            ),
            (
                "--health-start-interval",
                &h.health_start_interval,
                &mut hc.start_interval,
            ),
        ] {
            if let Some(v) = v {
                *field = positive_duration(flag, v)?;
            }
        }
        if let Some(r) = h.health_retries {
            hc.retries = r;
        }
        if let Some(c) = &h.health_cmd {
            hc.test = (!c.is_empty()).then(|| vec!["CMD-SHELL".into(), c.clone()]);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn merge_update_config(
    u: &mut UpdateConfig,
    which: &str,
    parallelism: Option<u64>,
    delay: &Option<String>,
    monitor: &Option<String>,
    failure_action: &Option<String>,
    max_failure_ratio: Option<f32>,
    order: &Option<String>,
) -> Result<(), String> {
    if let Some(p) = parallelism {
        u.parallelism = p;
    }
    if let Some(d) = delay {
        u.delay = duration(&format!("--{which}-delay"), d)?;
    }
    if let Some(m) = monitor {
        u.monitor = duration(&format!("--{which}-monitor"), m)?;
    }
    if let Some(a) = failure_action {
        let ok: &[&str] = if which == "update" {
            &["pause", "continue", "rollback"]
        } else {
            &["pause", "continue"]
        };
        if !ok.contains(&a.as_str()) {
            return Err(flag_error(
                &format!("--{which}-failure-action"),
                a,
                &format!("must be one of {}", ok.join(", ")),
            ));
        }
        u.failure_action = a.clone();
    }
    if let Some(r) = max_failure_ratio {
        u.max_failure_ratio = r;
    }
    if let Some(o) = order {
        if o != "start-first" && o != "stop-first" {
            return Err(flag_error(
                &format!("--{which}-order"),
                o,
                "must be \"start-first\" or \"stop-first\"",
            ));
        }
        u.order = o.clone();
    }
    Ok(())
}

/// The mode of a new service from `--mode`, `--replicas` and `--max-concurrent`, with the
/// docker CLI's checks.
pub fn service_mode(mode: &str, c: &CommonArgs) -> Result<ServiceMode, String> {
    let mut m = ServiceMode::default();
    let no_max_concurrent = || {
        if c.max_concurrent.is_some() {
            return Err("max-concurrent can only be used with replicated-job mode".to_string());
        }
        Ok(())
    };
    let no_replicas = || {
        if c.replicas.is_some() {
            return Err(
                "replicas can only be used with replicated or replicated-job mode".to_string(),
            );
        }
        if c.replicas_max_per_node.is_some_and(|n| n > 0) {
            return Err(
                "replicas-max-per-node can only be used with replicated or replicated-job mode"
                    .to_string(),
            );
        }
        Ok(())
    };
    match mode {
        "global" => {
            no_replicas()?;
            no_max_concurrent()?;
            m.global = Some(GlobalService {});
        }
        "replicated" => {
            no_max_concurrent()?;
            m.replicated = Some(ReplicatedService {
                replicas: Some(c.replicas.unwrap_or(1)),
            });
        }
        "replicated-job" => {
            m.replicated_job = Some(ReplicatedJob {
                max_concurrent: c.max_concurrent.or(c.replicas).or(Some(1)),
                total_completions: c.replicas.or(Some(1)),
            });
        }
        "global-job" => {
            no_replicas()?;
            no_max_concurrent()?;
            m.global_job = Some(GlobalJob {});
        }
        other => {
            return Err(format!(
                "unknown mode: {other}, only replicated and global supported"
            ))
        }
    }
    Ok(m)
}

/// Names of secrets or configs to resolve to IDs, with their file targets.
pub type FileRefs = Vec<(String, FileTarget)>;

impl CreateArgs {
    /// The spec of the new service, and the secrets and configs it names (their IDs are the
    /// daemon's to resolve).
    pub fn spec(&self) -> Result<(ServiceSpec, FileRefs, FileRefs), String> {
        let c = &self.common;
        let mut env: Vec<String> = Vec::new();
        let from_files = super::container::file_lines(&self.env_file)?;
        let given: Vec<String> = from_files
            .iter()
            .chain(self.env.iter())
            .map(|e| super::container::expand_env(e))
            .collect();
        merge_env(&mut env, &given, &[]);
        let mut mounts = Vec::new();
        for m in &self.mount {
            mounts.push(parse_mount(m).map_err(|e| flag_error("--mount", m, &e))?);
        }
        let mut hosts = Vec::new();
        for h in &self.host {
            hosts.push(host_line(h).map_err(|e| flag_error("--host", h, &e))?);
        }
        for d in &self.dns {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| flag_error("--dns", d, &format!("{d} is not an ip address")))?;
        }
        let mut prefs = Vec::new();
        for p in &self.placement_pref {
            prefs.push(parse_placement_pref(p).map_err(|e| flag_error("--placement-pref", p, &e))?);
        }
        let mut generic = Vec::new();
        for g in &self.generic_resource {
            generic.push(parse_generic(g)?);
        }
        let mut networks = Vec::new();
        for n in &self.network {
            networks.push(parse_network(n).map_err(|e| flag_error("--network", n, &e))?);
        }
        let mut secrets = Vec::new();
        for s in &self.secret {
            secrets.push(parse_file_ref(s).map_err(|e| flag_error("--secret", s, &e))?);
        }
        let mut configs = Vec::new();
        for s in &self.config {
            configs.push(parse_file_ref(s).map_err(|e| flag_error("--config", s, &e))?);
        }
        let mut spec = ServiceSpec {
            name: self.name.clone().unwrap_or_default(),
            labels: kv_map(&self.label),
            mode: service_mode(&self.mode, c)?,
            ..Default::default()
        };
        spec.task_template.container_spec = Some(ContainerSpec {
            image: self.image.clone(),
            args: self.command.clone(),
            env,
            labels: kv_map(&self.container_label),
            groups: self.group.clone(),
            mounts,
            init: Some(false),
            dns_config: Some(DnsConfig {
                nameservers: self.dns.clone(),
                search: self.dns_search.clone(),
                options: self.dns_option.clone(),
            }),
            hosts,
            sysctls: kv_map(&self.sysctl),
            ulimits: ulimits(&self.ulimit)?,
            ..Default::default()
        });
        spec.task_template.resources = Some(ResourceRequirements {
            limits: Some(Limit::default()),
            reservations: Some(Resources {
                generic_resources: generic,
                ..Default::default()
            }),
        });
        spec.task_template.placement = Some(Placement {
            constraints: self.constraint.clone(),
            preferences: prefs,
            ..Default::default()
        });
        spec.task_template.networks = networks;
        spec.endpoint_spec = Some(berth_api::swarm::EndpointSpec {
            mode: "vip".into(),
            ports: parse_ports(&self.publish, "--publish")?,
        });
        c.apply(&mut spec)?;
        Ok((spec, secrets, configs))
    }
}

impl UpdateArgs {
    /// Whether a flag other than `--rollback`, `-d` and `-q` was given.
    fn any_change_flag(&self) -> bool {
        let lists: [&Vec<String>; 36] = [
            &self.config_add,
            &self.config_rm,
            &self.constraint_add,
            &self.constraint_rm,
            &self.container_label_add,
            &self.container_label_rm,
            &self.dns_add,
            &self.dns_rm,
            &self.dns_option_add,
            &self.dns_option_rm,
            &self.dns_search_add,
            &self.dns_search_rm,
            &self.env_add,
            &self.env_rm,
            &self.generic_resource_add,
            &self.generic_resource_rm,
            &self.group_add,
            &self.group_rm,
            &self.host_add,
            &self.host_rm,
            &self.label_add,
            &self.label_rm,
            &self.mount_add,
            &self.mount_rm,
            &self.network_add,
            &self.network_rm,
            &self.placement_pref_add,
            &self.placement_pref_rm,
            &self.publish_add,
            &self.publish_rm,
            &self.secret_add,
            &self.secret_rm,
            &self.sysctl_add,
            &self.sysctl_rm,
            &self.ulimit_add,
            &self.ulimit_rm,
        ];
        self.common.any_spec_flag()
            || lists.iter().any(|l| !l.is_empty())
            || self.args.is_some()
            || self.image.is_some()
            || self.force
            || self.common.no_resolve_image
            || self.common.with_registry_auth
    }

    /// Check the flag combination before anything is sent.
    pub fn check(&self) -> Result<(), String> {
        if self.rollback && self.any_change_flag() {
            return Err("other flags may not be combined with --rollback".into());
        }
        Ok(())
    }

    /// Merge the flags into the service's current spec. Secrets and configs to add are
    /// returned for the caller to resolve (those to remove are gone already), and the
    /// networks to add and remove likewise.
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<(FileRefs, FileRefs), String> {
        merge_map(&mut spec.labels, &self.label_add, &self.label_rm);
        let c = &self.common;
        {
            let cs = spec
                .task_template
                .container_spec
                .get_or_insert_with(ContainerSpec::default);
            merge_map(
                &mut cs.labels,
                &self.container_label_add,
                &self.container_label_rm,
            );
            if let Some(i) = &self.image {
                cs.image = i.clone();
            }
            if let Some(a) = &self.args {
                cs.args = shell_words(a).map_err(|e| flag_error("--args", a, &e))?;
            }
            merge_env(&mut cs.env, &self.env_add, &self.env_rm);
            // Mounts: added ones win over present ones with the same target; then removals.
            let mut by_target: BTreeMap<String, Mount> = BTreeMap::new();
            for m in &self.mount_add {
                let m = parse_mount(m).map_err(|e| flag_error("--mount-add", m, &e))?;
                if by_target.contains_key(&m.target) {
                    return Err("duplicate mount target".into());
                }
                by_target.insert(m.target.clone(), m);
            }
            for m in std::mem::take(&mut cs.mounts) {
                by_target.entry(m.target.clone()).or_insert(m);
            }
            let mut mounts: Vec<Mount> = by_target
                .into_values()
                .filter(|m| !self.mount_rm.contains(&m.target))
                .collect();
            mounts.sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
            cs.mounts = mounts;
            merge_map(&mut cs.sysctls, &self.sysctl_add, &self.sysctl_rm);
            if !self.ulimit_add.is_empty() || !self.ulimit_rm.is_empty() {
                let mut by_name: BTreeMap<String, Ulimit> = std::mem::take(&mut cs.ulimits)
                    .into_iter()
                    .map(|u| (u.name.clone(), u))
                    .collect();
                for r in &self.ulimit_rm {
                    by_name.remove(r.split_once('=').map(|x| x.0).unwrap_or(r));
                }
                for u in ulimits(&self.ulimit_add)? {
                    by_name.insert(u.name.clone(), u);
                }
                cs.ulimits = by_name.into_values().collect();
            }
            if !self.group_add.is_empty() || !self.group_rm.is_empty() {
                merge_sorted(&mut cs.groups, &self.group_add, &self.group_rm);
            }
            let dns_given = [
                &self.dns_add,
                &self.dns_rm,
                &self.dns_option_add,
                &self.dns_option_rm,
                &self.dns_search_add,
                &self.dns_search_rm,
            ]
            .iter()
            .any(|l| !l.is_empty());
            if dns_given {
                for d in &self.dns_add {
                    d.parse::<std::net::IpAddr>().map_err(|_| {
                        flag_error("--dns-add", d, &format!("{d} is not an ip address"))
                    })?;
                }
                let dns = cs.dns_config.get_or_insert_with(DnsConfig::default);
                merge_sorted(&mut dns.nameservers, &self.dns_add, &self.dns_rm);
                merge_sorted(&mut dns.search, &self.dns_search_add, &self.dns_search_rm);
                merge_sorted(&mut dns.options, &self.dns_option_add, &self.dns_option_rm);
            }
            if !self.host_add.is_empty() || !self.host_rm.is_empty() {
                let mut hosts = Vec::new();
                for line in &cs.hosts {
                    let mut parts = line.split_whitespace();
                    let Some(ip) = parts.next() else { continue };
                    let names: Vec<&str> = parts
                        .filter(|n| {
                            !self.host_rm.iter().any(|r| {
                                let (host, rip) = r.split_once(':').unwrap_or((r, ""));
                                host == *n && (rip.is_empty() || rip == ip)
                            })
                        })
                        .collect();
                    if !names.is_empty() {
                        hosts.push(format!("{ip} {}", names.join(" ")));
                    }
                }
                for h in &self.host_add {
                    hosts.push(host_line(h).map_err(|e| flag_error("--host-add", h, &e))?);
                }
                let mut seen = std::collections::BTreeSet::new();
                hosts.retain(|h| seen.insert(h.clone()));
                cs.hosts = hosts;
            }
            cs.secrets
                .retain(|s| !self.secret_rm.contains(&s.secret_name));
            cs.configs
                .retain(|s| s.runtime.is_some() || !self.config_rm.contains(&s.config_name));
        }
        if let Some(n) = c.replicas {
            match spec.mode.replicated.as_mut() {
                Some(r) => r.replicas = Some(n),
                None => return Err("replicas can only be used with replicated mode".into()),
            }
        }
        if let Some(n) = c.max_concurrent {
            match spec.mode.replicated_job.as_mut() {
                Some(j) => j.max_concurrent = Some(n),
                None => {
                    return Err("max-concurrent can only be used with replicated-job mode".into())
                }
            }
        }
        if !self.constraint_add.is_empty() || !self.constraint_rm.is_empty() {
            let p = spec
                .task_template
                .placement
                .get_or_insert_with(Placement::default);
            merge_sorted(
                &mut p.constraints,
                &self.constraint_add,
                &self.constraint_rm,
            );
        }
        if !self.placement_pref_add.is_empty() || !self.placement_pref_rm.is_empty() {
            let mut rm = Vec::new();
            for p in &self.placement_pref_rm {
                rm.push(
                    parse_placement_pref(p)
                        .map_err(|e| flag_error("--placement-pref-rm", p, &e))?,
                );
            }
            let p = spec
                .task_template
                .placement
                .get_or_insert_with(Placement::default);
            p.preferences.retain(|x| {
                !rm.iter().any(|r| match (&r.spread, &x.spread) {
                    (Some(a), Some(b)) => a.spread_descriptor == b.spread_descriptor,
                    _ => false,
                })
            });
            for a in &self.placement_pref_add {
                p.preferences.push(
                    parse_placement_pref(a)
                        .map_err(|e| flag_error("--placement-pref-add", a, &e))?,
                );
            }
        }
        if !self.generic_resource_add.is_empty() || !self.generic_resource_rm.is_empty() {
            let r = spec
                .task_template
                .resources
                .get_or_insert_with(ResourceRequirements::default);
            let res = r.reservations.get_or_insert_with(Resources::default);
            let mut by_key: BTreeMap<String, GenericResource> =
                std::mem::take(&mut res.generic_resources)
                    .into_iter()
                    .map(|g| (generic_key(&g), g))
                    .collect();
            for g in &self.generic_resource_rm {
                if by_key.remove(g).is_none() {
                    return Err(format!("key {g} can't be removed"));
                }
            }
            for g in &self.generic_resource_add {
                let g = parse_generic(g)?;
                by_key.insert(generic_key(&g), g);
            }
            res.generic_resources = by_key.into_values().collect();
        }
        if !self.publish_add.is_empty() || !self.publish_rm.is_empty() {
            let add = parse_ports(&self.publish_add, "--publish-add")?;
            let mut rm = Vec::new();
            for r in &self.publish_rm {
                // A bare target port (`80`, `80/udp`) names the port to remove.
                let parsed = parse_port(r).map_err(|e| flag_error("--publish-rm", r, &e))?;
                rm.extend(parsed);
            }
            let e = spec.endpoint_spec.get_or_insert_with(Default::default);
            merge_ports(&mut e.ports, &add, &rm);
        }
        if self.force {
            spec.task_template.force_update += 1;
        }
        c.apply(spec)?;
        let mut secrets = Vec::new();
        for s in &self.secret_add {
            secrets.push(parse_file_ref(s).map_err(|e| flag_error("--secret-add", s, &e))?);
        }
        let mut configs = Vec::new();
        for s in &self.config_add {
            configs.push(parse_file_ref(s).map_err(|e| flag_error("--config-add", s, &e))?);
        }
        Ok((secrets, configs))
    }
}

/// Secret references once their IDs are known (`ids` maps names to IDs).
pub fn secret_refs(
    refs: &FileRefs,
    ids: &BTreeMap<String, String>,
) -> Result<Vec<SecretReference>, String> {
    refs.iter()
        .map(|(name, file)| {
            let id = ids
                .get(name)
                .ok_or_else(|| format!("secret not found: {name}"))?;
            Ok(SecretReference {
                file: Some(file.clone()),
                secret_id: id.clone(),
                secret_name: name.clone(),
            })
        })
        .collect()
}

/// Config references once their IDs are known.
pub fn config_refs(
    refs: &FileRefs,
    ids: &BTreeMap<String, String>,
) -> Result<Vec<ConfigReference>, String> {
    refs.iter()
        .map(|(name, file)| {
            let id = ids
                .get(name)
                .ok_or_else(|| format!("config not found: {name}"))?;
            Ok(ConfigReference {
                file: Some(file.clone()),
                runtime: None,
                config_id: id.clone(),
                config_name: name.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct C {
        #[command(flatten)]
        a: CreateArgs,
    }

    #[derive(Parser)]
    struct U {
        #[command(flatten)]
        a: UpdateArgs,
    }

    fn create(args: &[&str]) -> Result<ServiceSpec, String> {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        C::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .a
            .spec()
            .map(|s| s.0)
    }

    fn update(spec: &mut ServiceSpec, args: &[&str]) -> Result<(), String> {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        v.push("svc");
        let u = U::try_parse_from(v).map_err(|e| e.to_string())?.a;
        u.check()?;
        u.apply(spec).map(|_| ())
    }

    #[test]
    fn publish_forms() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].published_port, p[0].target_port), (8080, 80));
        assert_eq!(
            (p[0].protocol.as_str(), p[0].publish_mode.as_str()),
            ("tcp", "ingress")
        );
        let p = parse_port("53/udp").unwrap();
        assert_eq!(
            (
                p[0].published_port,
                p[0].target_port,
                p[0].protocol.as_str()
            ),
            (0, 53, "udp")
        );
        let p = parse_port("8000-8001:80-81").unwrap();
        assert_eq!(
            p.iter()
                .map(|x| (x.published_port, x.target_port))
                .collect::<Vec<_>>(),
            [(8000, 80), (8001, 81)]
        );
        let p = parse_port("mode=host,published=8080,target=80,protocol=udp").unwrap();
        assert_eq!(p[0].publish_mode, "host");
        assert_eq!(p[0].protocol, "udp");
        assert_eq!((p[0].published_port, p[0].target_port), (8080, 80));
        assert_eq!(
            parse_port("published=80").unwrap_err(),
            "missing mandatory field 'target'"
        );
        assert_eq!(
            parse_port("target=80,mode=x").unwrap_err(),
            "invalid publish mode value (x): must be either 'ingress' or 'host'"
        );
        assert_eq!(
            parse_port("target=80,bogus=1").unwrap_err(),
            "invalid field key: bogus"
        );
        assert_eq!(
            parse_port("1.2.3.4:80:80").unwrap_err(),
            "hostip is not supported"
        );
        assert!(parse_port("target=99999").is_err());
    }

    #[test]
    fn placement_prefs_and_refs() {
        let p = parse_placement_pref("spread=node.labels.zone").unwrap();
        assert_eq!(p.spread.unwrap().spread_descriptor, "node.labels.zone");
        assert_eq!(
            parse_placement_pref("pack=x").unwrap_err(),
            "unsupported placement preference pack (only spread is supported)"
        );
        assert!(parse_placement_pref("spread").is_err());
        let (s, f) = parse_file_ref("db").unwrap();
        assert_eq!(
            (s.as_str(), f.name.as_str(), f.uid.as_str(), f.mode),
            ("db", "db", "0", 0o444)
        );
        let (s, f) = parse_file_ref("source=db,target=/etc/db.conf,uid=5,mode=0400").unwrap();
        assert_eq!(
            (
                s.as_str(),
                f.name.as_str(),
                f.uid.as_str(),
                f.gid.as_str(),
                f.mode
            ),
            ("db", "/etc/db.conf", "5", "0", 0o400)
        );
        assert_eq!(
            parse_file_ref("target=x").unwrap_err(),
            "source is required"
        );
        let n = parse_network("name=front,alias=web,driver-opt=a=b").unwrap();
        assert_eq!(
            (
                n.target.as_str(),
                n.aliases.clone(),
                n.driver_opts.get("a").cloned()
            ),
            ("front", vec!["web".to_string()], Some("b".into()))
        );
        let g = parse_generic("gpu=2").unwrap();
        assert_eq!(g.discrete_resource_spec.unwrap().value, 2);
        let g = parse_generic("gpu=UUID1").unwrap();
        assert_eq!(g.named_resource_spec.unwrap().value, "UUID1");
    }

    #[test]
    fn words_and_durations() {
        assert_eq!(
            shell_words("sh -c 'echo hi there' \"a b\" c\\ d").unwrap(),
            ["sh", "-c", "echo hi there", "a b", "c d"]
        );
        assert_eq!(shell_words("  ").unwrap(), Vec::<String>::new());
        assert!(shell_words("'open").is_err());
        assert_eq!(duration("--update-delay", "1m30s").unwrap(), 90_000_000_000);
        assert_eq!(duration("--update-delay", "100ms").unwrap(), 100_000_000);
        assert!(duration("--update-delay", "5x")
            .unwrap_err()
            .starts_with("invalid argument \"5x\" for \"--update-delay\" flag"));
        assert!(positive_duration("--restart-delay", "-1s").is_err());
    }

    #[test]
    fn create_spec_defaults_and_flags() {
        let s = create(&[
            "--name",
            "web",
            "--replicas",
            "3",
            "-e",
            "A=1",
            "-e",
            "A=2",
            "-e",
            "B=3",
            "--label",
            "l=v",
            "--container-label",
            "c=d",
            "--constraint",
            "node.role==worker",
            "--placement-pref",
            "spread=node.labels.az",
            "--replicas-max-per-node",
            "2",
            "-p",
            "8080:80",
            "--mount",
            "type=tmpfs,dst=/t",
            "--user",
            "1:2",
            "-w",
            "/srv",
            "--entrypoint",
            "sh -c",
            "--hostname",
            "h",
            "--restart-condition",
            "on-failure",
            "--update-parallelism",
            "2",
            "--rollback-order",
            "start-first",
            "--limit-cpu",
            "0.5",
            "--limit-memory",
            "64m",
            "--reserve-memory",
            "32m",
            "--health-cmd",
            "true",
            "--health-interval",
            "2s",
            "busybox",
            "echo",
            "-n",
            "hi",
        ])
        .unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.mode.replicated.as_ref().unwrap().replicas, Some(3));
        let cs = s.task_template.container_spec.as_ref().unwrap();
        assert_eq!(cs.image, "busybox");
        assert_eq!(cs.args, ["echo", "-n", "hi"]);
        assert_eq!(cs.command, ["sh", "-c"]);
        assert_eq!(cs.env, ["A=2", "B=3"]);
        assert_eq!(cs.labels.get("c").map(String::as_str), Some("d"));
        assert_eq!(
            (cs.user.as_str(), cs.dir.as_str(), cs.hostname.as_str()),
            ("1:2", "/srv", "h")
        );
        assert_eq!(cs.mounts[0].kind, "tmpfs");
        assert_eq!(cs.init, Some(false));
        let hc = cs.healthcheck.as_ref().unwrap();
        assert_eq!(
            hc.test.as_deref(),
            Some(&["CMD-SHELL".to_string(), "true".to_string()][..])
        );
        assert_eq!(hc.interval, 2_000_000_000);
        let p = s.task_template.placement.as_ref().unwrap();
        assert_eq!(p.constraints, ["node.role==worker"]);
        assert_eq!(p.max_replicas, 2);
        assert_eq!(p.preferences.len(), 1);
        let rp = s.task_template.restart_policy.as_ref().unwrap();
        assert_eq!(
            (rp.condition.as_str(), rp.delay),
            ("on-failure", Some(5_000_000_000))
        );
        let u = s.update_config.as_ref().unwrap();
        assert_eq!(
            (u.parallelism, u.monitor, u.failure_action.as_str()),
            (2, 5_000_000_000, "pause")
        );
        assert_eq!(s.rollback_config.as_ref().unwrap().order, "start-first");
        let r = s.task_template.resources.as_ref().unwrap();
        assert_eq!(r.limits.as_ref().unwrap().nano_cpus, 500_000_000);
        assert_eq!(r.limits.as_ref().unwrap().memory_bytes, 64 << 20);
        assert_eq!(r.reservations.as_ref().unwrap().memory_bytes, 32 << 20);
        let e = s.endpoint_spec.as_ref().unwrap();
        assert_eq!((e.mode.as_str(), e.ports[0].published_port), ("vip", 8080));

        // Without flags: no restart policy, no update config; one replica.
        let s = create(&["--detach=false", "busybox"]).unwrap();
        assert!(s.task_template.restart_policy.is_none() && s.update_config.is_none());
        assert_eq!(s.mode.replicated.unwrap().replicas, Some(1));
        // Mode checks.
        assert_eq!(
            create(&["--mode", "global", "--replicas", "2", "busybox"]).unwrap_err(),
            "replicas can only be used with replicated or replicated-job mode"
        );
        assert_eq!(
            create(&["--mode", "bogus", "busybox"]).unwrap_err(),
            "unknown mode: bogus, only replicated and global supported"
        );
        let j = create(&[
            "--mode",
            "replicated-job",
            "--replicas",
            "4",
            "--max-concurrent",
            "2",
            "busybox",
        ])
        .unwrap();
        let rj = j.mode.replicated_job.unwrap();
        assert_eq!(
            (rj.max_concurrent, rj.total_completions),
            (Some(2), Some(4))
        );
        assert_eq!(
            create(&[
                "--mode",
                "replicated-job",
                "--update-delay",
                "1s",
                "busybox"
            ])
            .unwrap_err(),
            "update and rollback configuration is not supported for jobs"
        );
        assert_eq!(
            create(&["--no-healthcheck", "--health-cmd", "x", "busybox"]).unwrap_err(),
            "--no-healthcheck conflicts with --health-* options"
        );
    }

    #[test]
    fn update_merges() {
        let mut s = create(&[
            "-e",
            "A=1",
            "-e",
            "B=2",
            "-p",
            "80",
            "-p",
            "8443:443",
            "--constraint",
            "z==1",
            "-l",
            "keep=1",
            "-l",
            "drop=1",
            "busybox",
        ])
        .unwrap();
        update(
            &mut s,
            &["--env-add", "B=3", "--env-add", "C=4", "--env-rm", "A"],
        )
        .unwrap();
        assert_eq!(
            s.task_template.container_spec.as_ref().unwrap().env,
            ["B=3", "C=4"]
        );
        update(&mut s, &["--label-add", "new=2", "--label-rm", "drop"]).unwrap();
        assert_eq!(s.labels.keys().collect::<Vec<_>>(), ["keep", "new"]);
        update(
            &mut s,
            &["--publish-rm", "80", "--publish-add", "9000:90/udp"],
        )
        .unwrap();
        let ports: Vec<(u32, u32, &str)> = s
            .endpoint_spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .map(|p| (p.published_port, p.target_port, p.protocol.as_str()))
            .collect();
        assert_eq!(ports, [(8443, 443, "tcp"), (9000, 90, "udp")]);
        update(
            &mut s,
            &["--constraint-add", "a==b", "--constraint-rm", "z==1"],
        )
        .unwrap();
        assert_eq!(
            s.task_template.placement.as_ref().unwrap().constraints,
            ["a==b"]
        );
        update(
            &mut s,
            &["--replicas", "5", "--image", "busybox:2", "--force"],
        )
        .unwrap();
        assert_eq!(s.mode.replicated.as_ref().unwrap().replicas, Some(5));
        assert_eq!(
            s.task_template.container_spec.as_ref().unwrap().image,
            "busybox:2"
        );
        assert_eq!(s.task_template.force_update, 1);
        update(&mut s, &["--update-delay", "3s"]).unwrap();
        let u = s.update_config.as_ref().unwrap();
        assert_eq!((u.delay, u.parallelism), (3_000_000_000, 1));
        update(
            &mut s,
            &[
                "--mount-add",
                "type=tmpfs,dst=/a",
                "--mount-add",
                "type=tmpfs,dst=/b",
            ],
        )
        .unwrap();
        update(&mut s, &["--mount-rm", "/a"]).unwrap();
        let m: Vec<&str> = s
            .task_template
            .container_spec
            .as_ref()
            .unwrap()
            .mounts
            .iter()
            .map(|m| m.target.as_str())
            .collect();
        assert_eq!(m, ["/b"]);
        update(&mut s, &["--args", "sleep 10"]).unwrap();
        assert_eq!(
            s.task_template.container_spec.as_ref().unwrap().args,
            ["sleep", "10"]
        );
        update(
            &mut s,
            &["--host-add", "db:10.0.0.2", "--host-add", "db:10.0.0.2"],
        )
        .unwrap();
        assert_eq!(
            s.task_template.container_spec.as_ref().unwrap().hosts,
            ["10.0.0.2 db"]
        );
        update(&mut s, &["--host-rm", "db"]).unwrap();
        assert!(s
            .task_template
            .container_spec
            .as_ref()
            .unwrap()
            .hosts
            .is_empty());
        assert_eq!(
            update(&mut s, &["--rollback", "--replicas", "2"]).unwrap_err(),
            "other flags may not be combined with --rollback"
        );
        update(&mut s, &["--rollback", "-d"]).unwrap();
        let mut g = create(&["--mode", "global", "busybox"]).unwrap();
        assert_eq!(
            update(&mut g, &["--replicas", "2"]).unwrap_err(),
            "replicas can only be used with replicated mode"
        );
        update(
            &mut g,
            &[
                "--placement-pref-add",
                "spread=a",
                "--placement-pref-add",
                "spread=b",
            ],
        )
        .unwrap();
        update(&mut g, &["--placement-pref-rm", "spread=a"]).unwrap();
        let prefs = &g.task_template.placement.as_ref().unwrap().preferences;
        assert_eq!(prefs.len(), 1);
        assert_eq!(prefs[0].spread.as_ref().unwrap().spread_descriptor, "b");
        update(&mut g, &["--no-healthcheck"]).unwrap();
        update(&mut g, &["--health-retries", "3"]).unwrap();
        let hc = g
            .task_template
            .container_spec
            .as_ref()
            .unwrap()
            .healthcheck
            .clone()
            .unwrap();
        assert_eq!((hc.test, hc.retries), (None, 3));
    }

    #[test]
    fn capabilities_merge() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, d) = merge_capabilities(
            &v(&["CAP_NET_ADMIN"]),
            &v(&["CAP_CHOWN"]),
            &[],
            &v(&["net_admin"]),
        );
        assert_eq!((a, d), (Vec::<String>::new(), v(&["CAP_CHOWN"])));
        let (a, d) = merge_capabilities(
            &[],
            &v(&["CAP_CHOWN"]),
            &v(&["chown", "sys_time"]),
            &v(&["sys_time"]),
        );
        assert_eq!((a, d), (v(&["CAP_SYS_TIME"]), Vec::<String>::new()));
        let (a, _) = merge_capabilities(&v(&["CAP_X"]), &[], &v(&["RESET", "y"]), &[]);
        assert_eq!(a, v(&["CAP_Y"]));
    }

    #[test]
    fn detach_takes_a_value() {
        let d = |args: &[&str]| {
            let mut v = vec!["x"];
            v.extend_from_slice(args);
            v.push("busybox");
            C::try_parse_from(v).unwrap().a.common.detach
        };
        assert!(d(&["-d"]));
        assert!(d(&["--detach"]));
        assert!(!d(&["--detach=false"]));
        assert!(!d(&[]));
    }

    #[test]
    fn env_merge_keeps_order() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        merge_env(
            &mut env,
            &["A=9".to_string(), "C=3".to_string()],
            &["B".to_string()],
        );
        assert_eq!(env, ["A=9", "C=3"]);
    }
}
