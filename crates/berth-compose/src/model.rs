//! The typed project: serde structs over the canonical tree (long forms only), with Compose's
//! duration, byte-size and CPU notations parsed; keys berth does not carry out land in `rest`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Keys a struct does not know: refused by `crate::load` unless they are `x-` extensions.
pub type Rest = BTreeMap<String, Value>;

#[derive(Debug, Default, Deserialize)]
pub struct Project {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub services: BTreeMap<String, Service>,
    #[serde(default, deserialize_with = "nullable")]
    pub networks: BTreeMap<String, Network>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(default, deserialize_with = "nullable")]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(default, deserialize_with = "nullable")]
    pub configs: BTreeMap<String, FileObject>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Default, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub env_file: Vec<EnvFile>,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<Port>,
    #[serde(default, deserialize_with = "nullable")]
    pub expose: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes_from: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub tmpfs: Vec<String>,
    /// `None` when the file says nothing (the service joins the project's `default`).
    pub networks: Option<BTreeMap<String, Option<ServiceNetwork>>>,
    pub network_mode: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    pub deploy: Option<Deploy>,
    pub scale: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cap_add: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cap_drop: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub read_only: bool,
    pub init: Option<bool>,
    pub stop_signal: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, deserialize_with = "nullable")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default, deserialize_with = "string_map")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub extra_hosts: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub dns: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub dns_search: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub dns_opt: Vec<String>,
    pub logging: Option<Logging>,
    #[serde(default, deserialize_with = "nullable")]
    pub secrets: Vec<FileRef>,
    #[serde(default, deserialize_with = "nullable")]
    pub configs: Vec<FileRef>,
    pub pull_policy: Option<String>,
    pub platform: Option<String>,
    #[serde(default, deserialize_with = "bytes")]
    pub shm_size: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub stdin_open: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub security_opt: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub devices: Vec<Device>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub userns_mode: Option<String>,
    #[serde(default, deserialize_with = "bytes")]
    pub mem_limit: Option<i64>,
    #[serde(default, deserialize_with = "bytes")]
    pub mem_reservation: Option<i64>,
    #[serde(default, deserialize_with = "bytes")]
    pub memswap_limit: Option<i64>,
    pub mem_swappiness: Option<i64>,
    #[serde(default, deserialize_with = "cpus")]
    pub cpus: Option<f64>,
    pub cpu_shares: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpuset: Option<String>,
    pub pids_limit: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub oom_score_adj: Option<i64>,
    pub cgroup_parent: Option<String>,
    #[serde(default, deserialize_with = "strings")]
    pub group_add: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub links: Vec<String>,
    pub mac_address: Option<String>,
    pub attach: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub profiles: Vec<String>,
    pub develop: Option<Develop>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Default, Deserialize)]
pub struct Build {
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cache_from: Vec<String>,
    pub network: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub extra_hosts: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    pub pull: Option<bool>,
    pub no_cache: Option<bool>,
    #[serde(default, deserialize_with = "bytes")]
    pub shm_size: Option<i64>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Deserialize)]
pub struct EnvFile {
    pub path: String,
    #[serde(default = "yes")]
    pub required: bool,
    pub format: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Port {
    pub target: u16,
    /// A port, a range (`8000-8010`), or `None` for an ephemeral one.
    pub published: Option<String>,
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    pub mode: Option<String>,
    pub name: Option<String>,
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    #[serde(default, deserialize_with = "nullable")]
    pub read_only: bool,
    pub bind: Option<BindOptions>,
    pub volume: Option<VolumeOptions>,
    pub tmpfs: Option<TmpfsOptions>,
    pub consistency: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BindOptions {
    #[serde(default, deserialize_with = "nullable")]
    pub create_host_path: bool,
    pub propagation: Option<String>,
    pub selinux: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeOptions {
    #[serde(default, deserialize_with = "nullable")]
    pub nocopy: bool,
    pub subpath: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TmpfsOptions {
    #[serde(default, deserialize_with = "bytes")]
    pub size: Option<i64>,
    pub mode: Option<u32>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceNetwork {
    #[serde(default, deserialize_with = "nullable")]
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub priority: Option<i64>,
    pub gw_priority: Option<i64>,
    pub mac_address: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub link_local_ips: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    #[serde(default = "started")]
    pub condition: String,
    #[serde(default, deserialize_with = "nullable")]
    pub restart: bool,
    #[serde(default = "yes")]
    pub required: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub start_period: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub start_interval: Option<Duration>,
    pub retries: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub disable: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Deploy {
    pub replicas: Option<u64>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    pub mode: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    pub limits: Option<Resource>,
    pub reservations: Option<Resource>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Resource {
    #[serde(default, deserialize_with = "cpus")]
    pub cpus: Option<f64>,
    #[serde(default, deserialize_with = "bytes")]
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Default, Deserialize)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub delay: Option<Duration>,
    pub max_attempts: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    pub window: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Logging {
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
}

/// A service's use of a secret or config.
#[derive(Debug, Clone, Deserialize)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub source: String,
    pub target: Option<String>,
    pub permissions: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Develop {
    #[serde(default, deserialize_with = "nullable")]
    pub watch: Vec<Watch>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Watch {
    pub path: String,
    pub action: String,
    pub target: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub ignore: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub include: Vec<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Default, Deserialize)]
pub struct Network {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "string_map")]
    pub driver_opts: BTreeMap<String, String>,
    pub ipam: Option<Ipam>,
    #[serde(default, deserialize_with = "nullable")]
    pub internal: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub attachable: bool,
    pub enable_ipv4: Option<bool>,
    pub enable_ipv6: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub external: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Default, Deserialize)]
pub struct Ipam {
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub config: Vec<IpamPool>,
    #[serde(default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Volume {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "string_map")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub external: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// A top-level secret or config: its content comes from a file, an environment variable or
/// inline `content`.
#[derive(Debug, Default, Deserialize)]
pub struct FileObject {
    pub name: Option<String>,
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub external: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `null` reads as the empty value (a key written with nothing after it, or left by a merge).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn yes() -> bool {
    true
}

fn tcp() -> String {
    "tcp".to_string()
}

fn started() -> String {
    "service_started".to_string()
}

/// Go's `time.ParseDuration` notation (`1m30s`, `1.5s`, `300ms`), as Compose writes durations.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += num * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Docker's byte notation (`64m`, `1g`, `512kb`, `1.5GB`; binary multiples), or a plain number.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid size {s:?}");
    let t = s.trim().to_ascii_lowercase();
    let n = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..n].parse().map_err(|_| bad())?;
    let unit = t[n..].trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let v = num * mult;
    if !v.is_finite() || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|f| Duration::try_from_secs_f64(f / 1e9).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {n}"))),
        Some(v) => Err(serde::de::Error::custom(format!("invalid duration {v}"))),
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid size {n}"))),
        Some(v) => Err(serde::de::Error::custom(format!("invalid size {v}"))),
    }
}

fn cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid cpus {s:?}"))),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(serde::de::Error::custom(format!("invalid cpus {v}"))),
    }
}

fn scalar_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter().map(|(k, v)| (k, scalar_string(v))).collect())
}

fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default();
    Ok(v.into_iter().map(scalar_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        for (s, ms) in [
            ("1m30s", 90_000),
            ("1.5s", 1_500),
            ("300ms", 300),
            ("0", 0),
            ("2h", 7_200_000),
            ("1h1m1s", 3_661_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "10", "s", "-1s", "1x", "1..2s"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn byte_sizes_as_docker_writes_them() {
        for (s, n) in [
            ("64m", 64 << 20),
            ("1g", 1 << 30),
            ("512kb", 512 << 10),
            ("1.5GB", 3 << 29),
            ("100", 100),
            ("2MiB", 2 << 20),
        ] {
            assert_eq!(parse_bytes(s), Ok(n), "{s}");
        }
        for s in ["", "m", "1x", "1e400"] {
            assert!(parse_bytes(s).is_err(), "{s}");
        }
    }

    #[test]
    fn a_canonical_service_deserializes_and_keeps_unknown_keys() {
        let v = serde_json::json!({
            "name": "shop",
            "services": {"web": {
                "image": "busybox", "command": ["httpd", "-f"],
                "ports": [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"}],
                "mem_limit": "64m", "cpus": "0.5", "stop_grace_period": "1m30s",
                "deploy": {"resources": {"limits": {"memory": 1048576, "cpus": 1}}},
                "healthcheck": {"test": ["CMD", "true"], "interval": "200ms"},
                "sysctls": {"net.core.somaxconn": 1024},
                "gpus": "all", "x-note": 1
            }}
        });
        let p: Project = serde_json::from_value(v).expect("deserializes");
        let web = &p.services["web"];
        assert_eq!(web.mem_limit, Some(64 << 20));
        assert_eq!(web.cpus, Some(0.5));
        assert_eq!(web.stop_grace_period, Some(Duration::from_secs(90)));
        assert_eq!(web.ports[0].target, 80);
        assert_eq!(web.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(
            web.healthcheck.as_ref().and_then(|h| h.interval),
            Some(Duration::from_millis(200))
        );
        assert!(web.rest.contains_key("gpus") && web.rest.contains_key("x-note"));
    }
}
