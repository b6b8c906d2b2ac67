//! One service replica as an Engine API container-create body: the model's keys mapped onto
//! Config, HostConfig and NetworkingConfig, with Compose's labels; and the config hash.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::label;
use crate::model::{Service, ServiceVolume};
use crate::project::Project;

/// What a replica's create body depends on beyond the service itself.
pub struct Replica<'a> {
    pub service: &'a str,
    pub number: u64,
    pub image: &'a str,
    pub image_id: &'a str,
    /// Container names of each service's replicas (for `service:x`, volumes_from, links).
    pub peers: &'a BTreeMap<String, Vec<String>>,
    /// Volume names of the replaced container's anonymous volumes, by target (kept on recreate).
    pub anonymous: &'a BTreeMap<String, String>,
    pub oneoff: bool,
}

/// The sha256 of the resolved service, without what does not change a container: build,
/// pull_policy, scale/replicas, depends_on, profiles and `x-` keys.
pub fn config_hash(tree: &Value) -> String {
    let mut v = tree.clone();
    if let Some(m) = v.as_object_mut() {
        for k in [
            "build",
            "pull_policy",
            "scale",
            "depends_on",
            "profiles",
            "develop",
        ] {
            m.remove(k);
        }
        m.retain(|k, _| !k.starts_with("x-"));
        if let Some(d) = m.get_mut("deploy").and_then(Value::as_object_mut) {
            d.remove("replicas");
        }
    }
    let mut h = Sha256::new();
    h.update(v.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// `service:x` → `container:<x's first replica>`; anything else as written.
fn namespace_mode(
    mode: &str,
    peers: &BTreeMap<String, Vec<String>>,
    key: &str,
) -> Result<String, String> {
    match mode.strip_prefix("service:") {
        Some(s) => peers
            .get(s)
            .and_then(|c| c.first())
            .map(|c| format!("container:{c}"))
            .ok_or_else(|| format!("{key}: no container for service {s:?}")),
        None => Ok(mode.to_string()),
    }
}

/// A container's filesystem mounts in the create body's three forms.
type Mounts = (Vec<Value>, Vec<String>, Map<String, Value>);

fn mounts(p: &Project, svc: &Service, r: &Replica) -> Result<Mounts, String> {
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    let mut tmpfs = Map::new();
    for v in &svc.volumes {
        mounts_one(p, v, r, &mut mounts, &mut binds)?;
    }
    // Anonymous volumes of the replaced container at targets the service does not mount
    // (an image's VOLUME) are kept too.
    for (target, name) in r.anonymous {
        if !svc.volumes.iter().any(|v| &v.target == target) {
            mounts.push(json!({"Type": "volume", "Source": name, "Target": target}));
        }
    }
    for t in &svc.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(path.to_string(), json!(opts));
    }
    for (refs, secret) in [(&svc.secrets, true), (&svc.configs, false)] {
        for s in refs {
            let obj = if secret {
                p.model.secrets.get(&s.source)
            } else {
                p.model.configs.get(&s.source)
            };
            let Some(file) = obj.and_then(|o| o.file.as_ref()) else {
                continue;
            };
            if crate::project::copied(s) {
                continue;
            }
            let target = crate::project::file_target(s, secret);
            mounts
                .push(json!({"Type": "bind", "Source": file, "Target": target, "ReadOnly": true}));
        }
    }
    Ok((mounts, binds, tmpfs))
}

fn mounts_one(
    p: &Project,
    v: &ServiceVolume,
    r: &Replica,
    mounts: &mut Vec<Value>,
    binds: &mut Vec<String>,
) -> Result<(), String> {
    match v.kind.as_str() {
        "bind" => {
            let src = v.source.as_deref().unwrap_or("");
            let bind = v.bind.clone().unwrap_or_default();
            if bind.create_host_path {
                let mut opts = Vec::new();
                if v.read_only {
                    opts.push("ro".to_string());
                }
                if let Some(s) = &bind.selinux {
                    opts.push(s.clone());
                }
                if let Some(pr) = &bind.propagation {
                    opts.push(pr.clone());
                }
                let o = if opts.is_empty() {
                    String::new()
                } else {
                    format!(":{}", opts.join(","))
                };
                binds.push(format!("{src}:{}{o}", v.target));
            } else {
                let mut m = json!({"Type": "bind", "Source": src, "Target": v.target, "ReadOnly": v.read_only});
                if let Some(pr) = &bind.propagation {
                    m["BindOptions"] = json!({"Propagation": pr});
                }
                mounts.push(m);
            }
        }
        "volume" => {
            let source = match v.source.as_deref() {
                Some(s) if !s.is_empty() => p
                    .model
                    .volumes
                    .get(s)
                    .and_then(|vol| vol.name.clone())
                    .unwrap_or_else(|| s.to_string()),
                _ => r.anonymous.get(&v.target).cloned().unwrap_or_default(),
            };
            let mut m = json!({"Type": "volume", "Target": v.target, "ReadOnly": v.read_only});
            if !source.is_empty() {
                m["Source"] = json!(source);
            }
            if let Some(o) = &v.volume {
                let mut vo = json!({"NoCopy": o.nocopy});
                if let Some(sp) = &o.subpath {
                    vo["Subpath"] = json!(sp);
                }
                m["VolumeOptions"] = vo;
            }
            mounts.push(m);
        }
        "tmpfs" => {
            let mut m = json!({"Type": "tmpfs", "Target": v.target, "ReadOnly": v.read_only});
            if let Some(t) = &v.tmpfs {
                let mut o = Map::new();
                if let Some(s) = t.size {
                    o.insert("SizeBytes".into(), json!(s));
                }
                if let Some(mode) = t.mode {
                    o.insert("Mode".into(), json!(mode));
                }
                m["TmpfsOptions"] = Value::Object(o);
            }
            mounts.push(m);
        }
        other => return Err(format!("volumes: type {other:?} is not supported")),
    }
    Ok(())
}

fn restart_policy(svc: &Service) -> Value {
    if let Some(r) = &svc.restart {
        let (name, max) = match r.split_once(':') {
            Some((n, m)) => (n, m.parse::<i64>().unwrap_or(0)),
            None => (r.as_str(), 0),
        };
        return json!({"Name": name, "MaximumRetryCount": max});
    }
    match svc.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        Some(rp) => {
            let name = match rp.condition.as_deref() {
                Some("none") => "no",
                Some("on-failure") => "on-failure",
                _ => "always",
            };
            json!({"Name": name, "MaximumRetryCount": rp.max_attempts.unwrap_or(0)})
        }
        None => json!({"Name": "no", "MaximumRetryCount": 0}),
    }
}

pub(crate) fn healthcheck(svc: &Service) -> Option<Value> {
    let h = svc.healthcheck.as_ref()?;
    if h.disable {
        return Some(json!({"Test": ["NONE"]}));
    }
    let mut v = Map::new();
    if let Some(t) = &h.test {
        v.insert("Test".into(), json!(t));
    }
    for (k, d) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if let Some(d) = d {
            v.insert(k.into(), json!(ns(d)));
        }
    }
    if let Some(r) = h.retries {
        v.insert("Retries".into(), json!(r));
    }
    Some(Value::Object(v))
}

/// The labels of a replica: the service's own, then Compose's.
pub fn labels(p: &Project, svc: &Service, r: &Replica, hash: &str) -> Map<String, Value> {
    let mut l: Map<String, Value> = svc
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let deps: Vec<String> = svc
        .depends_on
        .iter()
        .map(|(s, d)| format!("{s}:{}:{}", d.condition, d.restart))
        .collect();
    let mut add = |k: &str, v: String| {
        l.insert(k.to_string(), Value::String(v));
    };
    add(label::PROJECT, p.name.clone());
    add(label::SERVICE, r.service.to_string());
    add(label::NUMBER, r.number.to_string());
    add(
        label::ONEOFF,
        if r.oneoff { "True" } else { "False" }.to_string(),
    );
    add(label::HASH, hash.to_string());
    add(label::WORKING_DIR, p.working_dir.display().to_string());
    add(label::CONFIG_FILES, p.config_files_label());
    if !p.env_files.is_empty() {
        add(label::ENV_FILE, p.env_files_label());
    }
    add(label::DEPENDS_ON, deps.join(","));
    add(label::IMAGE, r.image_id.to_string());
    add(label::VERSION, crate::api::VERSION.to_string());
    l
}

/// The create body, and the further networks to connect before start (name, endpoint).
pub fn create_body(
    p: &Project,
    svc: &Service,
    r: &Replica,
    hash: &str,
) -> Result<(Value, Vec<(String, Value)>), String> {
    let mut env: Vec<String> = svc
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    env.sort();
    let mut exposed = Map::new();
    for port in &svc.ports {
        exposed.insert(format!("{}/{}", port.target, port.protocol), json!({}));
    }
    for e in &svc.expose {
        let e = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(e, json!({}));
    }
    let mut bindings: Map<String, Value> = Map::new();
    for port in &svc.ports {
        let key = format!("{}/{}", port.target, port.protocol);
        let b = json!({"HostIp": port.host_ip.clone().unwrap_or_default(),
                       "HostPort": port.published.clone().unwrap_or_default()});
        if let Some(Value::Array(a)) = bindings.get_mut(&key) {
            a.push(b);
        } else {
            bindings.insert(key, json!([b]));
        }
    }
    let (mounts, binds, tmpfs) = mounts(p, svc, r)?;
    let limits = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let reservations = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref());
    let memory = svc.mem_limit.or(limits.and_then(|l| l.memory));
    let cpus = svc.cpus.or(limits.and_then(|l| l.cpus));
    let pids = svc.pids_limit.or(limits.and_then(|l| l.pids));
    let reservation = svc.mem_reservation.or(reservations.and_then(|l| l.memory));

    let nets = p.service_networks(svc);
    let network_mode = match &svc.network_mode {
        Some(m) => namespace_mode(m, r.peers, "network_mode")?,
        None => nets.first().map(|(n, _)| n.clone()).unwrap_or_default(),
    };
    let endpoint = |cfg: &Option<crate::model::ServiceNetwork>| {
        let mut aliases = vec![r.service.to_string()];
        let mut e = Map::new();
        if let Some(c) = cfg {
            aliases.extend(c.aliases.iter().cloned());
            let mut ipam = Map::new();
            if let Some(a) = &c.ipv4_address {
                ipam.insert("IPv4Address".into(), json!(a));
            }
            if let Some(a) = &c.ipv6_address {
                ipam.insert("IPv6Address".into(), json!(a));
            }
            if !c.link_local_ips.is_empty() {
                ipam.insert("LinkLocalIPs".into(), json!(c.link_local_ips));
            }
            if !ipam.is_empty() {
                e.insert("IPAMConfig".into(), Value::Object(ipam));
            }
            if let Some(m) = &c.mac_address {
                e.insert("MacAddress".into(), json!(m));
            }
            if !c.driver_opts.is_empty() {
                e.insert("DriverOpts".into(), json!(c.driver_opts));
            }
            if let Some(g) = c.gw_priority {
                e.insert("GwPriority".into(), json!(g));
            }
        }
        if r.oneoff {
            aliases.clear();
        }
        e.insert("Aliases".into(), json!(aliases));
        Value::Object(e)
    };
    let mut endpoints = Map::new();
    let mut later = Vec::new();
    if svc.network_mode.is_none() {
        for (i, (name, cfg)) in nets.iter().enumerate() {
            let e = endpoint(cfg);
            if i == 0 {
                let mut e = e;
                if let (Some(mac), None) = (&svc.mac_address, e.get("MacAddress")) {
                    e["MacAddress"] = json!(mac);
                }
                endpoints.insert(name.clone(), e);
            } else {
                later.push((name.clone(), e));
            }
        }
    }
    let mut links = Vec::new();
    for l in &svc.links {
        let (s, alias) = l.split_once(':').unwrap_or((l, l));
        match r.peers.get(s).and_then(|c| c.first()) {
            Some(c) => links.push(format!("{c}:{alias}")),
            None => links.push(format!("{s}:{alias}")),
        }
    }
    let mut volumes_from = Vec::new();
    for v in &svc.volumes_from {
        let (src, mode) = match v.rsplit_once(':') {
            Some((s, m)) if m == "ro" || m == "rw" => (s, Some(m)),
            _ => (v.as_str(), None),
        };
        let names: Vec<String> = match src.strip_prefix("container:") {
            Some(c) => vec![c.to_string()],
            None => r.peers.get(src).cloned().unwrap_or_default(),
        };
        for n in names {
            volumes_from.push(match mode {
                Some(m) => format!("{n}:{m}"),
                None => n,
            });
        }
    }
    let ulimits: Vec<Value> = svc
        .ulimits
        .iter()
        .map(|(n, u)| json!({"Name": n, "Soft": u.soft, "Hard": u.hard}))
        .collect();
    let devices: Vec<Value> = svc
        .devices
        .iter()
        .map(|d| {
            json!({"PathOnHost": d.source,
                   "PathInContainer": d.target.clone().unwrap_or_else(|| d.source.clone()),
                   "CgroupPermissions": d.permissions.clone().unwrap_or_else(|| "rwm".into())})
        })
        .collect();
    let mut host = json!({
        "NetworkMode": network_mode,
        "PortBindings": bindings,
        "RestartPolicy": restart_policy(svc),
        "Mounts": mounts,
        "Binds": binds,
        "Tmpfs": tmpfs,
        "CapAdd": svc.cap_add,
        "CapDrop": svc.cap_drop,
        "Privileged": svc.privileged,
        "ReadonlyRootfs": svc.read_only,
        "Ulimits": ulimits,
        "Sysctls": svc.sysctls,
        "ExtraHosts": svc.extra_hosts,
        "Dns": svc.dns,
        "DnsSearch": svc.dns_search,
        "DnsOptions": svc.dns_opt,
        "SecurityOpt": svc.security_opt,
        "Devices": devices,
        "Links": links,
        "VolumesFrom": volumes_from,
        "GroupAdd": svc.group_add,
    });
    let set = |h: &mut Value, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            h[k] = v;
        }
    };
    set(&mut host, "Init", svc.init.map(Value::Bool));
    set(&mut host, "Memory", memory.map(|m| json!(m)));
    set(
        &mut host,
        "MemoryReservation",
        reservation.map(|m| json!(m)),
    );
    set(&mut host, "MemorySwap", svc.memswap_limit.map(|m| json!(m)));
    set(
        &mut host,
        "MemorySwappiness",
        svc.mem_swappiness.map(|m| json!(m)),
    );
    set(
        &mut host,
        "NanoCpus",
        cpus.map(|c| json!((c * 1e9).round() as i64)),
    );
    set(&mut host, "PidsLimit", pids.map(|m| json!(m)));
    set(&mut host, "CpuShares", svc.cpu_shares.map(|m| json!(m)));
    set(&mut host, "CpuQuota", svc.cpu_quota.map(|m| json!(m)));
    set(&mut host, "CpuPeriod", svc.cpu_period.map(|m| json!(m)));
    set(
        &mut host,
        "CpusetCpus",
        svc.cpuset.clone().map(Value::String),
    );
    set(
        &mut host,
        "OomKillDisable",
        svc.oom_kill_disable.map(Value::Bool),
    );
    set(
        &mut host,
        "OomScoreAdj",
        svc.oom_score_adj.map(|m| json!(m)),
    );
    set(
        &mut host,
        "CgroupParent",
        svc.cgroup_parent.clone().map(Value::String),
    );
    set(&mut host, "ShmSize", svc.shm_size.map(|m| json!(m)));
    set(&mut host, "UTSMode", svc.uts.clone().map(Value::String));
    set(
        &mut host,
        "UsernsMode",
        svc.userns_mode.clone().map(Value::String),
    );
    if let Some(m) = &svc.pid {
        host["PidMode"] = json!(namespace_mode(m, r.peers, "pid")?);
    }
    if let Some(m) = &svc.ipc {
        host["IpcMode"] = json!(namespace_mode(m, r.peers, "ipc")?);
    }
    if let Some(l) = &svc.logging {
        host["LogConfig"] = json!({"Type": l.driver.clone().unwrap_or_else(|| "json-file".into()),
                                   "Config": l.options});
    }
    let mut body = json!({
        "Image": r.image,
        "Env": env,
        "Labels": labels(p, svc, r, hash),
        "ExposedPorts": exposed,
        "Tty": svc.tty,
        "OpenStdin": svc.stdin_open,
        "AttachStdin": false,
        "AttachStdout": true,
        "AttachStderr": true,
        "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    });
    let setb = |b: &mut Value, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            b[k] = v;
        }
    };
    setb(&mut body, "Cmd", svc.command.clone().map(|c| json!(c)));
    setb(
        &mut body,
        "Entrypoint",
        svc.entrypoint.clone().map(|c| json!(c)),
    );
    setb(
        &mut body,
        "Hostname",
        svc.hostname.clone().map(Value::String),
    );
    setb(
        &mut body,
        "Domainname",
        svc.domainname.clone().map(Value::String),
    );
    setb(&mut body, "User", svc.user.clone().map(Value::String));
    setb(
        &mut body,
        "WorkingDir",
        svc.working_dir.clone().map(Value::String),
    );
    setb(
        &mut body,
        "StopSignal",
        svc.stop_signal.clone().map(Value::String),
    );
    setb(
        &mut body,
        "StopTimeout",
        svc.stop_grace_period.map(|d| json!(d.as_secs())),
    );
    setb(&mut body, "Healthcheck", healthcheck(svc));
    Ok((body, later))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_what_does_not_change_a_container() {
        let a = json!({"image": "busybox", "command": ["sh"], "scale": 2,
                       "depends_on": {"db": {}}, "deploy": {"replicas": 3}, "x-a": 1});
        let b = json!({"image": "busybox", "command": ["sh"], "deploy": {}});
        assert_eq!(config_hash(&a), config_hash(&b));
        let c = json!({"image": "busybox", "command": ["sh", "-c"], "deploy": {}});
        assert_ne!(config_hash(&b), config_hash(&c));
        assert_eq!(config_hash(&b).len(), 64);
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;
    use std::path::PathBuf;

    fn project(tree: Value) -> Project {
        let mut p = Project::named("shop".into());
        p.model = serde_json::from_value(tree.clone()).expect("model");
        p.tree = tree;
        p.working_dir = PathBuf::from("/srv/shop");
        p.config_files = vec![PathBuf::from("/srv/shop/compose.yaml")];
        p
    }

    fn body(
        p: &Project,
        service: &str,
        peers: &BTreeMap<String, Vec<String>>,
    ) -> (Value, Vec<(String, Value)>) {
        let svc = &p.model.services[service];
        create_body(
            p,
            svc,
            &Replica {
                service,
                number: 2,
                image: "busybox",
                image_id: "sha256:abc",
                peers,
                anonymous: &BTreeMap::new(),
                oneoff: false,
            },
            "hash",
        )
        .expect("body")
    }

    #[test]
    fn service_keys_become_the_engine_fields() {
        let p = project(json!({
            "name": "shop",
            "services": {
                "web": {
                    "image": "busybox",
                    "command": ["httpd", "-f"],
                    "entrypoint": ["/bin/sh", "-c"],
                    "environment": {"A": "1", "UNSET": null},
                    "ports": [
                        {"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "tcp"},
                        {"target": 53, "protocol": "udp"}
                    ],
                    "expose": ["9000"],
                    "volumes": [
                        {"type": "bind", "source": "/srv/shop/html", "target": "/www", "read_only": true,
                         "bind": {"create_host_path": true}},
                        {"type": "bind", "source": "/etc/hosts", "target": "/h"},
                        {"type": "volume", "source": "data", "target": "/data", "volume": {"nocopy": true}},
                        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": "1m", "mode": 448}}
                    ],
                    "tmpfs": ["/run:size=64k"],
                    "restart": "on-failure:3",
                    "healthcheck": {"test": ["CMD", "true"], "interval": "200ms", "retries": 3,
                                    "start_period": "1s"},
                    "deploy": {"resources": {"limits": {"memory": "64m", "cpus": "0.5", "pids": 50},
                                             "reservations": {"memory": "32m"}}},
                    "ulimits": {"nofile": {"soft": 1024, "hard": 2048}},
                    "devices": [{"source": "/dev/null", "target": "/dev/n", "permissions": "r"}],
                    "cap_add": ["NET_ADMIN"], "cap_drop": ["MKNOD"],
                    "dns": ["127.0.0.1"], "extra_hosts": ["db:10.0.0.2"],
                    "labels": {"tier": "front"},
                    "user": "1000", "working_dir": "/www", "hostname": "web", "stop_signal": "SIGINT",
                    "stop_grace_period": "3s", "init": true, "read_only": true, "shm_size": "8m",
                    "networks": {"front": {"aliases": ["www"], "ipv4_address": "10.9.0.5", "priority": 10},
                                 "back": null},
                    "mac_address": "02:42:ac:11:00:09",
                    "depends_on": {"db": {"condition": "service_healthy", "required": true, "restart": true}}
                },
                "db": {"image": "busybox", "network_mode": "service:web", "volumes_from": ["web:ro"],
                       "ipc": "service:web", "links": ["web:w"]}
            },
            "networks": {"front": {"name": "shop_front"}, "back": {"name": "shop_back"}},
            "volumes": {"data": {"name": "shop_data"}}
        }));
        let peers: BTreeMap<String, Vec<String>> =
            [("web".to_string(), vec!["shop-web-1".to_string()])].into();
        let (b, later) = body(&p, "web", &peers);
        let h = &b["HostConfig"];
        assert_eq!(b["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(b["Entrypoint"], json!(["/bin/sh", "-c"]));
        assert_eq!(b["Env"], json!(["A=1", "UNSET"]));
        assert_eq!(
            h["PortBindings"]["80/tcp"],
            json!([{"HostIp": "127.0.0.1", "HostPort": "8080"}])
        );
        assert_eq!(
            h["PortBindings"]["53/udp"],
            json!([{"HostIp": "", "HostPort": ""}])
        );
        assert!(b["ExposedPorts"].get("9000/tcp").is_some());
        assert_eq!(h["Binds"], json!(["/srv/shop/html:/www:ro"]));
        let mounts = h["Mounts"].as_array().expect("mounts");
        assert_eq!(mounts[0]["Type"], "bind");
        assert_eq!(mounts[1]["Source"], "shop_data");
        assert_eq!(mounts[1]["VolumeOptions"]["NoCopy"], true);
        assert_eq!(
            mounts[2]["TmpfsOptions"],
            json!({"SizeBytes": 1048576, "Mode": 448})
        );
        assert_eq!(h["Tmpfs"], json!({"/run": "size=64k"}));
        assert_eq!(
            h["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(b["Healthcheck"]["Interval"], 200_000_000);
        assert_eq!(b["Healthcheck"]["StartPeriod"], 1_000_000_000);
        assert_eq!(h["Memory"], 64 << 20);
        assert_eq!(h["MemoryReservation"], 32 << 20);
        assert_eq!(h["NanoCpus"], 500_000_000);
        assert_eq!(h["PidsLimit"], 50);
        assert_eq!(
            h["Ulimits"],
            json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
        );
        assert_eq!(
            h["Devices"],
            json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n", "CgroupPermissions": "r"}])
        );
        assert_eq!(h["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(h["ExtraHosts"], json!(["db:10.0.0.2"]));
        assert_eq!(h["Init"], true);
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["ShmSize"], 8 << 20);
        assert_eq!(b["StopTimeout"], 3);
        assert_eq!(b["StopSignal"], "SIGINT");
        // The highest-priority network is the one created on; the other is connected later.
        assert_eq!(h["NetworkMode"], "shop_front");
        let ep = &b["NetworkingConfig"]["EndpointsConfig"]["shop_front"];
        assert_eq!(ep["Aliases"], json!(["web", "www"]));
        assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.9.0.5");
        assert_eq!(ep["MacAddress"], "02:42:ac:11:00:09");
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].0, "shop_back");
        let l = &b["Labels"];
        assert_eq!(l["tier"], "front");
        assert_eq!(l["com.docker.compose.project"], "shop");
        assert_eq!(l["com.docker.compose.container-number"], "2");
        assert_eq!(l["com.docker.compose.oneoff"], "False");
        assert_eq!(
            l["com.docker.compose.depends_on"],
            "db:service_healthy:true"
        );
        assert_eq!(
            l["com.docker.compose.project.config_files"],
            "/srv/shop/compose.yaml"
        );
        assert_eq!(l["com.docker.compose.image"], "sha256:abc");

        // Namespaces and volumes of another service point at its container.
        let (db, later) = body(&p, "db", &peers);
        let h = &db["HostConfig"];
        assert_eq!(h["NetworkMode"], "container:shop-web-1");
        assert_eq!(h["IpcMode"], "container:shop-web-1");
        assert_eq!(h["VolumesFrom"], json!(["shop-web-1:ro"]));
        assert_eq!(h["Links"], json!(["shop-web-1:w"]));
        assert!(later.is_empty());
        assert_eq!(db["NetworkingConfig"]["EndpointsConfig"], json!({}));
        // Without the peer's container the reference is an error, not a guess.
        assert!(create_body(
            &p,
            &p.model.services["db"],
            &Replica {
                service: "db",
                number: 1,
                image: "busybox",
                image_id: "",
                peers: &BTreeMap::new(),
                anonymous: &BTreeMap::new(),
                oneoff: false,
            },
            "h"
        )
        .is_err());
    }

    #[test]
    fn restart_policies_from_restart_and_deploy() {
        for (svc, want) in [
            (
                json!({"image": "b", "restart": "always"}),
                json!({"Name": "always", "MaximumRetryCount": 0}),
            ),
            (
                json!({"image": "b"}),
                json!({"Name": "no", "MaximumRetryCount": 0}),
            ),
            (
                json!({"image": "b", "deploy": {"restart_policy": {"condition": "on-failure", "max_attempts": 2}}}),
                json!({"Name": "on-failure", "MaximumRetryCount": 2}),
            ),
            (
                json!({"image": "b", "deploy": {"restart_policy": {"condition": "none"}}}),
                json!({"Name": "no", "MaximumRetryCount": 0}),
            ),
        ] {
            let p = project(json!({"services": {"s": svc}}));
            let (b, _) = body(&p, "s", &BTreeMap::new());
            assert_eq!(b["HostConfig"]["RestartPolicy"], want);
        }
    }
}
