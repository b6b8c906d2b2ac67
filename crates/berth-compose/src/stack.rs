//! `berth stack deploy|config`: Compose files read by this crate's loader and turned into the
//! swarm objects of a stack (networks, secrets, configs, `ServiceSpec`s), as the docker CLI does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use berth_cli::{NetworkPlan, ObjectPlan, ServicePlan, StackLoader, StackPlan, NAMESPACE_LABEL};
use serde_json::{json, Map, Value};

use crate::convert::{healthcheck, ns};
use crate::load::assemble::{self, normalize_name, Options};
use crate::model::{parse_duration, FileObject, FileRef, Project, Service};

/// The loader the `berth` binary gives the CLI for `stack deploy` and `stack config`.
pub struct Loader;

impl StackLoader for Loader {
    fn plan(&self, files: &[PathBuf], namespace: &str) -> Result<StackPlan, String> {
        let project = load(files, Some(namespace))?;
        let ignored = unsupported(&project);
        if !ignored.is_empty() {
            eprintln!("Ignoring unsupported options: {}\n", ignored.join(", "));
        }
        plan(&project, namespace)
    }

    fn config(&self, files: &[PathBuf], skip_interpolation: bool) -> Result<String, String> {
        if skip_interpolation {
            return Err(
                "--skip-interpolation is not supported: berth's Compose loader always interpolates"
                    .into(),
            );
        }
        let p = assemble::load(&options(files, None)).map_err(|e| e.to_string())?;
        crate::config::render(&p.project, "yaml")
    }
}

fn options(files: &[PathBuf], namespace: Option<&str>) -> Options {
    Options {
        files: files.to_vec(),
        project_name: namespace.map(normalize_name).filter(|n| !n.is_empty()),
        swarm: true,
        ..Options::default()
    }
}

fn load(files: &[PathBuf], namespace: Option<&str>) -> Result<Project, String> {
    let loaded = assemble::load(&options(files, namespace)).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    Ok(loaded.project.model)
}

/// Service keys a swarm does not carry out, set in some service (docker names them and goes
/// on; `restart` still gives the restart policy when `deploy.restart_policy` is not set).
fn unsupported(p: &Project) -> Vec<&'static str> {
    let mut keys = BTreeSet::new();
    for s in p.services.values() {
        for (k, set) in [
            ("build", s.build.is_some()),
            ("cgroup_parent", s.cgroup_parent.is_some()),
            ("devices", !s.devices.is_empty()),
            ("domainname", s.domainname.is_some()),
            ("ipc", s.ipc.is_some()),
            ("links", !s.links.is_empty()),
            ("mac_address", s.mac_address.is_some()),
            ("network_mode", s.network_mode.is_some()),
            ("pid", s.pid.is_some()),
            ("privileged", s.privileged),
            ("restart", s.restart.is_some()),
            ("security_opt", !s.security_opt.is_empty()),
            ("shm_size", s.shm_size.is_some()),
            ("userns_mode", s.userns_mode.is_some()),
        ] {
            if set {
                keys.insert(k);
            }
        }
    }
    keys.into_iter().collect()
}

/// The stack's name for a top-level object: the loader names it `<project>_<key>` unless a
/// name is given; a stack's objects are `<namespace>_<key>`.
fn scoped(namespace: &str, key: &str, name: Option<&str>) -> String {
    let project = normalize_name(namespace);
    match name {
        Some(n) if n != format!("{project}_{key}") => n.to_string(),
        _ => format!("{namespace}_{key}"),
    }
}

fn labelled(labels: &BTreeMap<String, String>, namespace: &str) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    l.insert(NAMESPACE_LABEL.into(), namespace.into());
    l
}

/// The stack a project makes: the networks its services use, its secrets and configs, and
/// one service per Compose service.
pub fn plan(p: &Project, namespace: &str) -> Result<StackPlan, String> {
    let mut used = BTreeSet::new();
    for s in p.services.values() {
        used.extend(service_networks(s));
    }
    let mut networks = Vec::new();
    for key in used {
        let Some(n) = p.networks.get(&key) else {
            return Err(format!("undefined network {key:?}"));
        };
        let name = if n.external {
            n.name.clone().unwrap_or_else(|| key.clone())
        } else {
            scoped(namespace, &key, n.name.as_deref())
        };
        let mut body = json!({
            "Name": name,
            "Driver": n.driver.clone().unwrap_or_else(|| "overlay".into()),
            "Options": n.driver_opts,
            "Labels": labelled(&n.labels, namespace),
            "Internal": n.internal,
            "Attachable": n.attachable,
            "CheckDuplicate": true,
        });
        if let Some(ipam) = &n.ipam {
            let config: Vec<Value> = ipam
                .config
                .iter()
                .map(|c| json!({"Subnet": c.subnet, "IPRange": c.ip_range, "Gateway": c.gateway, "AuxiliaryAddresses": c.aux_addresses}))
                .collect();
            body["IPAM"] = json!({
                "Driver": ipam.driver.clone().unwrap_or_else(|| "default".into()),
                "Config": config,
                "Options": ipam.options,
            });
        }
        networks.push(NetworkPlan {
            name,
            external: n.external,
            body,
        });
    }
    let mut services = Vec::new();
    for (name, s) in &p.services {
        services.push(ServicePlan {
            name: format!("{namespace}_{name}"),
            spec: service_spec(p, namespace, name, s)?,
        });
    }
    Ok(StackPlan {
        networks,
        secrets: objects(&p.secrets, namespace, "secret")?,
        configs: objects(&p.configs, namespace, "config")?,
        services,
    })
}

fn service_networks(s: &Service) -> Vec<String> {
    match &s.networks {
        Some(m) => m.keys().cloned().collect(),
        None => vec!["default".into()],
    }
}

fn objects(
    m: &BTreeMap<String, FileObject>,
    namespace: &str,
    what: &str,
) -> Result<Vec<ObjectPlan>, String> {
    let mut out = Vec::new();
    for (key, o) in m {
        if o.external {
            out.push(ObjectPlan {
                name: o.name.clone().unwrap_or_else(|| key.clone()),
                external: true,
                labels: BTreeMap::new(),
                data: Vec::new(),
            });
            continue;
        }
        let data = match (&o.file, &o.content) {
            (Some(f), _) => {
                std::fs::read(f).map_err(|e| format!("{what} {key:?}: reading {f}: {e}"))?
            }
            (None, Some(c)) => c.clone().into_bytes(),
            (None, None) => {
                return Err(format!(
                    "{what} {key:?}: neither a file, an environment variable nor content is given"
                ))
            }
        };
        out.push(ObjectPlan {
            name: scoped(namespace, key, o.name.as_deref()),
            external: false,
            labels: labelled(&o.labels, namespace),
            data,
        });
    }
    Ok(out)
}

/// The name a secret or config has in the swarm (what a service's reference points at).
fn object_name(m: &BTreeMap<String, FileObject>, namespace: &str, key: &str) -> Option<String> {
    let o = m.get(key)?;
    Some(if o.external {
        o.name.clone().unwrap_or_else(|| key.to_string())
    } else {
        scoped(namespace, key, o.name.as_deref())
    })
}

fn file_refs(
    refs: &[FileRef],
    objs: &BTreeMap<String, FileObject>,
    namespace: &str,
    secret: bool,
) -> Result<Vec<Value>, String> {
    let (what, key) = if secret {
        ("secret", "SecretName")
    } else {
        ("config", "ConfigName")
    };
    let mut out = Vec::new();
    for r in refs {
        let name = object_name(objs, namespace, &r.source)
            .ok_or_else(|| format!("undefined {what} {:?}", r.source))?;
        // As docker: the source when no target is given (the engine places a relative name
        // under /run/secrets or /).
        let target = r.target.clone().unwrap_or_else(|| r.source.clone());
        let mut v = json!({
            "File": {
                "Name": target,
                "UID": r.uid.clone().unwrap_or_else(|| "0".into()),
                "GID": r.gid.clone().unwrap_or_else(|| "0".into()),
                "Mode": r.mode.unwrap_or(0o444),
            },
        });
        v[key] = json!(name);
        out.push(v);
    }
    // Sorted by name, as docker sends them (a redeploy does not reorder them).
    out.sort_by(|a, b| a[key].as_str().cmp(&b[key].as_str()));
    Ok(out)
}

fn dur(v: &Value, what: &str) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => parse_duration(s)
            .map(|d| Some(ns(d)))
            .map_err(|e| format!("{what}: {e}")),
        Value::Number(n) => Ok(n.as_i64()),
        other => Err(format!("{what}: invalid duration {other}")),
    }
}

/// `deploy.update_config` / `rollback_config` as the swarm's UpdateConfig.
fn update_config(v: &Value, what: &str) -> Result<Option<Value>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let mut out = Map::new();
    out.insert(
        "Parallelism".into(),
        json!(v["parallelism"].as_u64().unwrap_or(1)),
    );
    if let Some(d) = dur(&v["delay"], &format!("{what}.delay"))? {
        out.insert("Delay".into(), json!(d));
    }
    if let Some(d) = dur(&v["monitor"], &format!("{what}.monitor"))? {
        out.insert("Monitor".into(), json!(d));
    }
    if let Some(a) = v["failure_action"].as_str() {
        out.insert("FailureAction".into(), json!(a));
    }
    if let Some(r) = v["max_failure_ratio"].as_f64() {
        out.insert("MaxFailureRatio".into(), json!(r));
    }
    if let Some(o) = v["order"].as_str() {
        out.insert("Order".into(), json!(o));
    }
    Ok(Some(Value::Object(out)))
}

fn restart_policy(s: &Service, name: &str) -> Result<Option<Value>, String> {
    if let Some(rp) = s.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        let mut v = Map::new();
        let condition = rp.condition.as_deref().unwrap_or("any");
        v.insert("Condition".into(), json!(condition));
        if let Some(d) = rp.delay {
            v.insert("Delay".into(), json!(ns(d)));
        }
        if let Some(m) = rp.max_attempts {
            v.insert("MaxAttempts".into(), json!(m));
        }
        if let Some(w) = rp.window {
            v.insert("Window".into(), json!(ns(w)));
        }
        return Ok(Some(Value::Object(v)));
    }
    let Some(r) = &s.restart else { return Ok(None) };
    let (policy, max) = match r.split_once(':') {
        Some((p, m)) => (
            p,
            Some(
                m.parse::<u64>()
                    .map_err(|_| format!("service {name}: invalid restart policy {r:?}"))?,
            ),
        ),
        None => (r.as_str(), None),
    };
    let condition = match policy {
        "no" => return Ok(None),
        "always" | "unless-stopped" => "any",
        "on-failure" => "on-failure",
        _ => return Err(format!("service {name}: unknown restart policy {r:?}")),
    };
    let mut v = json!({ "Condition": condition });
    if let Some(m) = max {
        v["MaxAttempts"] = json!(m);
    }
    Ok(Some(v))
}

fn mounts(p: &Project, namespace: &str, name: &str, s: &Service) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for v in &s.volumes {
        let mut m = json!({ "Type": v.kind, "Target": v.target, "ReadOnly": v.read_only });
        match v.kind.as_str() {
            "volume" => {
                let mut opts = Map::new();
                if let Some(src) = &v.source {
                    let Some(vol) = p.volumes.get(src) else {
                        return Err(format!("service {name}: undefined volume {src:?}"));
                    };
                    let source = if vol.external {
                        vol.name.clone().unwrap_or_else(|| src.clone())
                    } else {
                        scoped(namespace, src, vol.name.as_deref())
                    };
                    m["Source"] = json!(source);
                    if !vol.external {
                        opts.insert("Labels".into(), json!(labelled(&vol.labels, namespace)));
                        if let Some(d) = &vol.driver {
                            opts.insert(
                                "DriverConfig".into(),
                                json!({"Name": d, "Options": vol.driver_opts}),
                            );
                        }
                    }
                }
                if let Some(o) = &v.volume {
                    if o.nocopy {
                        opts.insert("NoCopy".into(), json!(true));
                    }
                    if let Some(sp) = &o.subpath {
                        opts.insert("Subpath".into(), json!(sp));
                    }
                }
                if !opts.is_empty() {
                    m["VolumeOptions"] = Value::Object(opts);
                }
            }
            "bind" => {
                let Some(src) = &v.source else {
                    return Err(format!(
                        "service {name}: bind mount on {} has no source",
                        v.target
                    ));
                };
                m["Source"] = json!(src);
                if let Some(prop) = v.bind.as_ref().and_then(|b| b.propagation.as_ref()) {
                    m["BindOptions"] = json!({ "Propagation": prop });
                }
            }
            "tmpfs" => {
                if let Some(t) = &v.tmpfs {
                    let mut o = Map::new();
                    if let Some(sz) = t.size {
                        o.insert("SizeBytes".into(), json!(sz));
                    }
                    if let Some(mode) = t.mode {
                        o.insert("Mode".into(), json!(mode));
                    }
                    m["TmpfsOptions"] = Value::Object(o);
                }
            }
            other => {
                return Err(format!(
                    "service {name}: volumes of type {other:?} are not supported in a stack"
                ))
            }
        }
        out.push(m);
    }
    Ok(out)
}

fn ports(name: &str, s: &Service) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for p in &s.ports {
        let mut v = json!({
            "Protocol": p.protocol,
            "TargetPort": p.target,
            "PublishMode": p.mode.clone().unwrap_or_else(|| "ingress".into()),
        });
        if let Some(pb) = p.published.as_deref().filter(|s| !s.is_empty()) {
            let port: u16 = pb.parse().map_err(|_| {
                format!("service {name}: published port {pb:?} must be a single port in a stack")
            })?;
            v["PublishedPort"] = json!(port);
        }
        out.push(v);
    }
    // In a stable order, as docker sorts them.
    out.sort_by_key(|p| {
        (
            p["Protocol"].as_str().map(str::to_string),
            p["TargetPort"].as_u64(),
            p["PublishedPort"].as_u64(),
            p["PublishMode"].as_str().map(str::to_string),
        )
    });
    Ok(out)
}

/// Capability names as docker sends them: upper case, with the `CAP_` prefix (`ALL` as is).
fn capabilities(caps: &[String]) -> Vec<String> {
    caps.iter()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect()
}

/// `host:ip` (or `host=ip`) as the swarm's `ip host` line.
fn host_line(e: &str) -> String {
    match e.split_once('=').or_else(|| e.split_once(':')) {
        Some((h, ip)) => format!("{ip} {h}"),
        None => e.to_string(),
    }
}

/// One Compose service as a swarm `ServiceSpec` of the stack.
pub fn service_spec(
    p: &Project,
    namespace: &str,
    name: &str,
    s: &Service,
) -> Result<Value, String> {
    let image = s
        .image
        .clone()
        .ok_or_else(|| format!("service {name}: an image is required in a stack"))?;
    let deploy = s.deploy.as_ref();
    let rest = |k: &str| -> Value {
        deploy
            .and_then(|d| d.rest.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let env: Vec<String> = s
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    let mut cs = Map::new();
    cs.insert("Image".into(), json!(image));
    cs.insert("Labels".into(), json!(labelled(&s.labels, namespace)));
    if let Some(e) = &s.entrypoint {
        cs.insert("Command".into(), json!(e));
    }
    if let Some(c) = &s.command {
        cs.insert("Args".into(), json!(c));
    }
    if !env.is_empty() {
        cs.insert("Env".into(), json!(env));
    }
    for (k, v) in [
        ("Hostname", &s.hostname),
        ("User", &s.user),
        ("Dir", &s.working_dir),
        ("StopSignal", &s.stop_signal),
    ] {
        if let Some(v) = v {
            cs.insert(k.into(), json!(v));
        }
    }
    if let Some(g) = s.stop_grace_period {
        cs.insert("StopGracePeriod".into(), json!(ns(g)));
    }
    if s.tty {
        cs.insert("TTY".into(), json!(true));
    }
    if s.stdin_open {
        cs.insert("OpenStdin".into(), json!(true));
    }
    if s.read_only {
        cs.insert("ReadOnly".into(), json!(true));
    }
    if let Some(i) = s.init {
        cs.insert("Init".into(), json!(i));
    }
    if !s.cap_add.is_empty() {
        cs.insert("CapabilityAdd".into(), json!(capabilities(&s.cap_add)));
    }
    if !s.cap_drop.is_empty() {
        cs.insert("CapabilityDrop".into(), json!(capabilities(&s.cap_drop)));
    }
    if !s.sysctls.is_empty() {
        cs.insert("Sysctls".into(), json!(s.sysctls));
    }
    if !s.group_add.is_empty() {
        cs.insert("Groups".into(), json!(s.group_add));
    }
    if !s.ulimits.is_empty() {
        let u: Vec<Value> = s
            .ulimits
            .iter()
            .map(|(n, l)| json!({"Name": n, "Soft": l.soft, "Hard": l.hard}))
            .collect();
        cs.insert("Ulimits".into(), json!(u));
    }
    if !s.extra_hosts.is_empty() {
        let h: Vec<String> = s.extra_hosts.iter().map(|e| host_line(e)).collect();
        cs.insert("Hosts".into(), json!(h));
    }
    // As docker: nameservers and search domains (a swarm service is given no dns_opt).
    if !s.dns.is_empty() || !s.dns_search.is_empty() {
        cs.insert(
            "DNSConfig".into(),
            json!({"Nameservers": s.dns, "Search": s.dns_search}),
        );
    }
    if let Some(o) = s.oom_score_adj {
        cs.insert("OomScoreAdj".into(), json!(o));
    }
    if let Some(h) = healthcheck(s) {
        cs.insert("Healthcheck".into(), h);
    }
    let m = mounts(p, namespace, name, s)?;
    if !m.is_empty() {
        cs.insert("Mounts".into(), json!(m));
    }
    let secrets = file_refs(&s.secrets, &p.secrets, namespace, true)?;
    if !secrets.is_empty() {
        cs.insert("Secrets".into(), json!(secrets));
    }
    let configs = file_refs(&s.configs, &p.configs, namespace, false)?;
    if !configs.is_empty() {
        cs.insert("Configs".into(), json!(configs));
    }

    // As docker sends them: privileges, placement and resources, empty when unset.
    cs.insert(
        "Privileges".into(),
        json!({"CredentialSpec": null, "SELinuxContext": null}),
    );
    let mut tt = Map::new();
    tt.insert("ContainerSpec".into(), Value::Object(cs));
    tt.insert("Resources".into(), json!({}));
    tt.insert("Placement".into(), json!({}));
    if let Some(rp) = restart_policy(s, name)? {
        tt.insert("RestartPolicy".into(), rp);
    }
    if let Some(r) = deploy.and_then(|d| d.resources.as_ref()) {
        let mut res = Map::new();
        for (k, lim, limits) in [
            ("Limits", &r.limits, true),
            ("Reservations", &r.reservations, false),
        ] {
            let Some(l) = lim else { continue };
            let mut o = Map::new();
            if let Some(c) = l.cpus {
                o.insert("NanoCPUs".into(), json!((c * 1e9).round() as i64));
            }
            if let Some(mem) = l.memory {
                o.insert("MemoryBytes".into(), json!(mem));
            }
            if limits {
                if let Some(pids) = l.pids {
                    o.insert("Pids".into(), json!(pids));
                }
            }
            res.insert(k.into(), Value::Object(o));
        }
        tt.insert("Resources".into(), Value::Object(res));
    }
    let placement = rest("placement");
    if !placement.is_null() {
        let mut pl = Map::new();
        if let Some(c) = placement["constraints"].as_array() {
            pl.insert("Constraints".into(), json!(c));
        }
        if let Some(prefs) = placement["preferences"].as_array() {
            let p: Vec<Value> = prefs
                .iter()
                .filter_map(|p| p["spread"].as_str())
                .map(|s| json!({"Spread": {"SpreadDescriptor": s}}))
                .collect();
            pl.insert("Preferences".into(), json!(p));
        }
        if let Some(m) = placement["max_replicas_per_node"].as_u64() {
            pl.insert("MaxReplicas".into(), json!(m));
        }
        tt.insert("Placement".into(), Value::Object(pl));
    }
    let mut nets: Vec<Value> = Vec::new();
    for key in service_networks(s) {
        let Some(n) = p.networks.get(&key) else {
            return Err(format!("service {name}: undefined network {key:?}"));
        };
        let target = if n.external {
            n.name.clone().unwrap_or_else(|| key.clone())
        } else {
            scoped(namespace, &key, n.name.as_deref())
        };
        let mut aliases = Vec::new();
        if let Some(Some(sn)) = s.networks.as_ref().and_then(|m| m.get(&key)) {
            aliases.extend(sn.aliases.iter().cloned());
        }
        aliases.push(name.to_string());
        nets.push(json!({"Target": target, "Aliases": aliases}));
    }
    nets.sort_by(|a, b| a["Target"].as_str().cmp(&b["Target"].as_str()));
    tt.insert("Networks".into(), json!(nets));
    if let Some(l) = &s.logging {
        tt.insert(
            "LogDriver".into(),
            json!({"Name": l.driver.clone().unwrap_or_default(), "Options": l.options}),
        );
    }

    let mode_name = deploy
        .and_then(|d| d.mode.as_deref())
        .unwrap_or("replicated");
    if matches!(mode_name, "global" | "global-job") && deploy.and_then(|d| d.replicas).is_some() {
        return Err(format!(
            "service {name}: replicas can only be used with replicated or replicated-job mode"
        ));
    }
    let mode = match mode_name {
        "global" => json!({"Global": {}}),
        "replicated" => {
            let n = deploy.and_then(|d| d.replicas).or(s.scale).unwrap_or(1);
            json!({"Replicated": {"Replicas": n}})
        }
        "replicated-job" => {
            let n = deploy.and_then(|d| d.replicas).unwrap_or(1);
            json!({"ReplicatedJob": {"MaxConcurrent": n, "TotalCompletions": n}})
        }
        "global-job" => json!({"GlobalJob": {}}),
        other => return Err(format!("service {name}: unknown deploy mode {other:?}")),
    };
    let mut spec = json!({
        "Name": format!("{namespace}_{name}"),
        "Labels": labelled(&deploy.map(|d| d.labels.clone()).unwrap_or_default(), namespace),
        "TaskTemplate": Value::Object(tt),
        "Mode": mode,
        "EndpointSpec": {
            "Ports": ports(name, s)?,
        },
    });
    if let Some(m) = rest("endpoint_mode").as_str() {
        spec["EndpointSpec"]["Mode"] = json!(m.to_ascii_lowercase());
    }
    if let Some(u) = update_config(&rest("update_config"), "update_config")? {
        spec["UpdateConfig"] = u;
    }
    if let Some(u) = update_config(&rest("rollback_config"), "rollback_config")? {
        spec["RollbackConfig"] = u;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of stack `st` from a file in a directory of its own (with `cfg.txt`).
    fn plan_of(tag: &str, yaml: &str) -> Result<StackPlan, String> {
        let dir =
            std::env::temp_dir().join(format!("berth-stack-unit-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cfg.txt"), "hello\n").unwrap();
        let f = dir.join("compose.yaml");
        std::fs::write(&f, yaml).unwrap();
        let p = load(&[f], Some("st")).and_then(|p| plan(&p, "st"));
        std::fs::remove_dir_all(&dir).unwrap();
        p
    }

    const FILE: &str = r#"
services:
  web:
    image: busybox
    command: ["sleep", "600"]
    environment: {A: "1"}
    labels: {c: "1"}
    ports: ["8080:80"]
    configs: [{source: cfg, target: /etc/cfg}]
    volumes: ["data:/data"]
    deploy:
      replicas: 2
      labels: {s: "1"}
      placement: {constraints: ["node.role==manager"], max_replicas_per_node: 1}
      update_config: {parallelism: 2, delay: 10s, order: start-first}
      resources: {limits: {cpus: "0.5", memory: 64M}}
      restart_policy: {condition: on-failure, max_attempts: 3}
  db:
    image: busybox
    restart: always
    networks: {back: {aliases: [database]}}
    stop_grace_period: 5s
    deploy: {mode: global}
networks:
  back: {}
volumes:
  data: {}
configs:
  cfg: {file: ./cfg.txt}
"#;

    #[test]
    fn services_become_specs_of_the_stack() {
        let plan = plan_of("full", FILE).unwrap();
        let names: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["st_back", "st_default"]);
        assert_eq!(plan.networks[1].body["Driver"], "overlay");
        assert_eq!(plan.networks[1].body["Labels"][NAMESPACE_LABEL], "st");
        assert_eq!(plan.configs.len(), 1);
        assert_eq!(plan.configs[0].name, "st_cfg");
        assert_eq!(plan.configs[0].data, b"hello\n");
        let web = &plan
            .services
            .iter()
            .find(|s| s.name == "st_web")
            .unwrap()
            .spec;
        assert_eq!(web["Labels"]["s"], "1");
        assert_eq!(web["Labels"][NAMESPACE_LABEL], "st");
        assert_eq!(web["Mode"]["Replicated"]["Replicas"], 2);
        let cs = &web["TaskTemplate"]["ContainerSpec"];
        assert_eq!(cs["Image"], "busybox");
        assert_eq!(cs["Args"], json!(["sleep", "600"]));
        assert_eq!(cs["Env"], json!(["A=1"]));
        assert_eq!(cs["Labels"]["c"], "1");
        assert_eq!(cs["Configs"][0]["ConfigName"], "st_cfg");
        assert_eq!(cs["Configs"][0]["File"]["Name"], "/etc/cfg");
        assert_eq!(cs["Configs"][0]["File"]["Mode"], 0o444);
        assert_eq!(cs["Mounts"][0]["Type"], "volume");
        assert_eq!(cs["Mounts"][0]["Source"], "st_data");
        assert_eq!(
            cs["Mounts"][0]["VolumeOptions"]["Labels"][NAMESPACE_LABEL],
            "st"
        );
        let tt = &web["TaskTemplate"];
        assert_eq!(
            tt["Networks"],
            json!([{"Target": "st_default", "Aliases": ["web"]}])
        );
        assert_eq!(
            tt["Placement"]["Constraints"],
            json!(["node.role==manager"])
        );
        assert_eq!(tt["Placement"]["MaxReplicas"], 1);
        assert_eq!(tt["Resources"]["Limits"]["NanoCPUs"], 500_000_000);
        assert_eq!(tt["Resources"]["Limits"]["MemoryBytes"], 64 * 1024 * 1024);
        assert_eq!(tt["RestartPolicy"]["Condition"], "on-failure");
        assert_eq!(tt["RestartPolicy"]["MaxAttempts"], 3);
        assert_eq!(web["UpdateConfig"]["Parallelism"], 2);
        assert_eq!(web["UpdateConfig"]["Delay"], 10_000_000_000i64);
        assert_eq!(web["UpdateConfig"]["Order"], "start-first");
        assert_eq!(
            web["EndpointSpec"]["Ports"],
            json!([{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}])
        );
        let db = &plan
            .services
            .iter()
            .find(|s| s.name == "st_db")
            .unwrap()
            .spec;
        assert_eq!(db["Mode"], json!({"Global": {}}));
        assert_eq!(db["TaskTemplate"]["RestartPolicy"]["Condition"], "any");
        assert_eq!(
            db["TaskTemplate"]["Networks"],
            json!([{"Target": "st_back", "Aliases": ["database", "db"]}])
        );
        assert_eq!(
            db["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
            5_000_000_000i64
        );
    }

    #[test]
    fn external_and_named_objects_keep_their_names() {
        let plan = plan_of(
            "external",
            r#"
services:
  app:
    image: busybox
    networks: [pub]
    secrets: [tok]
networks:
  pub: {external: true, name: public}
secrets:
  tok: {external: true}
"#,
        )
        .unwrap();
        assert_eq!(plan.networks[0].name, "public");
        assert!(plan.networks[0].external);
        assert_eq!(plan.secrets[0].name, "tok");
        assert!(plan.secrets[0].external);
        let cs = &plan.services[0].spec["TaskTemplate"]["ContainerSpec"];
        assert_eq!(cs["Secrets"][0]["SecretName"], "tok");
        assert_eq!(cs["Secrets"][0]["File"]["Name"], "tok");
        assert_eq!(plan.services[0].spec["Mode"]["Replicated"]["Replicas"], 1);
    }

    #[test]
    fn restart_maps_to_swarm_conditions() {
        let mut s = Service {
            restart: Some("no".into()),
            ..Service::default()
        };
        assert_eq!(restart_policy(&s, "x").unwrap(), None);
        for (r, c) in [("always", "any"), ("unless-stopped", "any")] {
            s.restart = Some(r.into());
            assert_eq!(restart_policy(&s, "x").unwrap().unwrap()["Condition"], c);
        }
        s.restart = Some("on-failure:4".into());
        let rp = restart_policy(&s, "x").unwrap().unwrap();
        assert_eq!(rp, json!({"Condition": "on-failure", "MaxAttempts": 4}));
        s.restart = Some("sometimes".into());
        assert!(restart_policy(&s, "x").is_err());
    }

    #[test]
    fn missing_image_and_port_ranges_are_refused() {
        let e = plan_of("build", "services:\n  a:\n    build: .\n").unwrap_err();
        assert!(e.contains("image is required"), "{e}");
        let e = plan_of(
            "range",
            "services:\n  a:\n    image: busybox\n    ports: [\"8000-8001:80\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("single port"), "{e}");
    }

    #[test]
    fn unsupported_keys_are_named() {
        let s = Service {
            restart: Some("always".into()),
            privileged: true,
            ..Service::default()
        };
        let mut p = Project::default();
        p.services.insert("a".into(), s);
        assert_eq!(unsupported(&p), ["privileged", "restart"]);
    }

    #[test]
    fn global_services_take_no_replicas() {
        let e = plan_of(
            "global",
            "services:\n  a:\n    image: busybox\n    deploy: {mode: global, replicas: 2}\n",
        )
        .unwrap_err();
        assert!(e.contains("replicas can only be used"), "{e}");
    }

    #[test]
    fn capabilities_get_their_prefix() {
        let caps = ["net_admin".to_string(), "CAP_MKNOD".into(), "all".into()];
        assert_eq!(capabilities(&caps), ["CAP_NET_ADMIN", "CAP_MKNOD", "ALL"]);
    }

    #[test]
    fn hosts_are_written_ip_first() {
        assert_eq!(host_line("db:10.0.0.2"), "10.0.0.2 db");
        assert_eq!(host_line("db=10.0.0.2"), "10.0.0.2 db");
    }
}
