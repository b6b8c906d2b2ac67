//! Convergence (`up`, `create`): networks, volumes and images first, then every service in
//! parallel as soon as its dependencies meet their conditions; an unchanged container is left
//! running, a changed one is recreated, replicas are added or removed from the top.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::api::{label, Ctr, Engine};
use crate::convert::{config_hash, create_body, Replica};
use crate::model::Service;
use crate::progress::Progress;
use crate::project::Project;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recreate {
    Diverged,
    Force,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildPolicy {
    /// Build when the image is missing.
    Missing,
    Always,
    Never,
}

#[derive(Clone, Debug)]
pub struct UpOpts {
    pub services: Vec<String>,
    pub no_deps: bool,
    pub recreate: Recreate,
    pub remove_orphans: bool,
    pub scale: BTreeMap<String, u64>,
    pub no_start: bool,
    pub build: BuildPolicy,
    pub pull: Option<String>,
    pub timeout: Option<i64>,
    /// At most this many containers created, started or recreated at once (`--parallel`).
    pub parallel: Option<usize>,
    /// No progress lines for pulls (`--quiet-pull`).
    pub quiet_pull: bool,
}

/// The most replicas of one service `up` makes.
const MAX_REPLICAS: u64 = 10_000;

/// What became of a service, for the services that depend on it.
#[derive(Clone, Debug)]
enum Outcome {
    Pending,
    Done { recreated: bool },
    Failed(String),
}

/// The key of the message that tells waiters the engine's event stream ended.
const ENDED: &str = "berth-compose-events-ended";

/// Container events of the project, shared by every waiter.
pub struct Events {
    tx: broadcast::Sender<Value>,
}

impl Events {
    /// Subscribes to the engine's events for the project before anything starts.
    pub async fn open(e: &Engine, project: &str) -> Result<Arc<Events>, String> {
        let resp = e.project_events(project).await.map_err(|e| e.to_string())?;
        let (tx, _) = broadcast::channel(1024);
        let ev = Arc::new(Events { tx });
        let weak = Arc::downgrade(&ev);
        tokio::spawn(async move {
            let _ = berth_cli::client::for_each_line(resp, |line| {
                let Some(ev) = weak.upgrade() else {
                    return false;
                };
                if let Ok(v) = serde_json::from_slice::<Value>(line) {
                    let _ = ev.tx.send(v);
                }
                true
            })
            .await;
            // Waiters learn that no more events will come.
            if let Some(ev) = weak.upgrade() {
                let _ = ev.tx.send(json!({ ENDED: true }));
            }
        });
        Ok(ev)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.tx.subscribe()
    }
}

/// What a waiter wants of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    Healthy,
    Exited,
    /// Running (and healthy when it has a healthcheck), or exited 0.
    Ready,
}

/// Waits, on events, until `until` holds for the container; the error is Compose's message.
pub async fn wait_for(
    e: &Engine,
    ev: &Events,
    id: &str,
    name: &str,
    service: &str,
    until: Until,
) -> Result<(), String> {
    let mut rx = ev.subscribe();
    loop {
        let v = e.inspect(id).await.map_err(|e| e.to_string())?;
        let full = v["Id"].as_str().unwrap_or(id).to_string();
        let state = &v["State"];
        let status = state["Status"].as_str().unwrap_or("");
        let exited = matches!(status, "exited" | "dead");
        let code = state["ExitCode"].as_i64().unwrap_or(0);
        let health = state["Health"]["Status"].as_str();
        match until {
            Until::Exited if exited => {
                return if code == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "service {service:?} didn't complete successfully: exit {code}"
                    ))
                }
            }
            Until::Healthy | Until::Ready => {
                match health {
                    Some("healthy") => return Ok(()),
                    Some("unhealthy") => return Err(format!("container {name} is unhealthy")),
                    None if until == Until::Healthy => {
                        return Err(format!("container {name} has no healthcheck configured"))
                    }
                    None if status == "running" => return Ok(()),
                    _ => {}
                }
                if exited {
                    if until == Until::Ready && code == 0 {
                        return Ok(());
                    }
                    return Err(format!("container {name} exited ({code})"));
                }
            }
            Until::Exited => {}
        }
        loop {
            match rx.recv().await {
                Ok(ev) if ev["Actor"]["ID"].as_str() == Some(full.as_str()) => break,
                Ok(ev) if ev.get(ENDED).is_some() => {
                    return Err("the engine's event stream ended".into())
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err("the engine's event stream ended".into())
                }
            }
        }
    }
}

/// Marks a service failed if its task ends without an outcome (a panic), so that its
/// dependents stop waiting.
struct FailOnDrop<'a>(Option<&'a watch::Sender<Outcome>>);

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.0 {
            tx.send_if_modified(|o| {
                let pending = matches!(o, Outcome::Pending);
                if pending {
                    *o = Outcome::Failed("internal error: the service's task ended early".into());
                }
                pending
            });
        }
    }
}

/// Shared state of one `up`.
struct Run {
    e: Engine,
    p: Arc<Project>,
    o: UpOpts,
    pr: Arc<Progress>,
    ev: Option<Arc<Events>>,
    images: BTreeMap<String, (String, String)>,
    existing: Vec<Ctr>,
    peers: Mutex<BTreeMap<String, Vec<String>>>,
    outcomes: BTreeMap<String, watch::Sender<Outcome>>,
    selected: BTreeSet<String>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// The network and volume keys the services in `order` use.
fn used_resources(p: &Project, order: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut nets = BTreeSet::new();
    let mut vols = BTreeSet::new();
    for s in order {
        let Some(svc) = p.model.services.get(s) else {
            continue;
        };
        if let Some(m) = &svc.networks {
            nets.extend(m.keys().cloned());
        } else if svc.network_mode.is_none() {
            nets.insert("default".to_string());
        }
        for v in &svc.volumes {
            if v.kind == "volume" {
                if let Some(src) = v.source.as_ref().filter(|s| !s.is_empty()) {
                    vols.insert(src.clone());
                }
            }
        }
    }
    (nets, vols)
}

/// Everything that can be checked before anything is made: external networks and volumes
/// exist, images are there or can be pulled or built.
async fn prepare(
    e: &Engine,
    p: &Project,
    o: &UpOpts,
    order: &[String],
    pr: &Progress,
) -> Result<BTreeMap<String, (String, String)>, String> {
    let (used_nets, used_vols) = used_resources(p, order);
    for (k, n) in &p.model.networks {
        if n.external && used_nets.contains(k) {
            let name = p.network_name(k);
            if e.network(&name).await.map_err(|e| e.to_string())?.is_none() {
                return Err(format!(
                    "network {name} declared as external, but could not be found"
                ));
            }
        }
    }
    for (k, v) in &p.model.volumes {
        if v.external && used_vols.contains(k) {
            let name = v.name.clone().unwrap_or_else(|| k.clone());
            if e.volume(&name).await.map_err(|e| e.to_string())?.is_none() {
                return Err(format!("external volume \"{name}\" not found"));
            }
        }
    }
    let mut images = BTreeMap::new();
    for s in order {
        let Some(svc) = p.model.services.get(s) else {
            continue;
        };
        let image = p.image_name(s, svc);
        let id = ensure_image(e, p, o, s, svc, &image, pr).await?;
        images.insert(s.clone(), (image, id));
    }
    Ok(images)
}

pub async fn ensure_image(
    e: &Engine,
    p: &Project,
    o: &UpOpts,
    name: &str,
    svc: &Service,
    image: &str,
    pr: &Progress,
) -> Result<String, String> {
    // `--pull` overrides every service's pull_policy, as in Compose.
    let policy = o.pull.as_deref().or(svc.pull_policy.as_deref());
    let have = e.image(image).await.map_err(|e| e.to_string())?;
    let must_build = svc.build.is_some()
        && (o.build == BuildPolicy::Always
            || policy == Some("build")
            || (have.is_none() && o.build != BuildPolicy::Never));
    let pull = match policy {
        _ if must_build => false,
        Some("always") => true,
        Some("never") | Some("build") => false,
        _ => have.is_none() && svc.build.is_none(),
    };
    if must_build {
        crate::build::build(e, p, name, svc, image, pr).await?;
    } else if pull {
        let id = format!("Image {image}");
        if !o.quiet_pull {
            pr.working(&id, "Pulling");
        }
        if let Err(err) = e.pull(image).await {
            pr.failed(&id, "Error");
            if have.is_none() {
                return Err(format!("Error response from daemon: {err}"));
            }
        } else if !o.quiet_pull {
            pr.done(&id, "Pulled");
        }
    }
    match e.image(image).await.map_err(|e| e.to_string())? {
        Some(v) => Ok(v["Id"].as_str().unwrap_or("").to_string()),
        None if svc.build.is_some() => Err(format!(
            "service {name:?} has no image {image}; build it (`--build`) or allow building"
        )),
        None if policy == Some("never") => Err(format!(
            "service {name:?}: image {image} is not present and pull_policy is never"
        )),
        None => Err(format!("No such image: {image}")),
    }
}

/// Creates the project's networks and volumes that the services in `order` use and are
/// missing.
pub async fn ensure_resources(
    e: &Engine,
    p: &Project,
    order: &[String],
    pr: &Progress,
) -> Result<(), String> {
    let (used_nets, used_vols) = used_resources(p, order);
    for (k, n) in &p.model.networks {
        if n.external || !used_nets.contains(k) {
            continue;
        }
        let name = p.network_name(k);
        if e.network(&name).await.map_err(|e| e.to_string())?.is_some() {
            continue;
        }
        let mut labels: serde_json::Map<String, Value> = n
            .labels
            .iter()
            .map(|(a, b)| (a.clone(), json!(b)))
            .collect();
        labels.insert(label::PROJECT.into(), json!(p.name));
        labels.insert(label::NETWORK.into(), json!(k));
        labels.insert(label::VERSION.into(), json!(crate::api::VERSION));
        let mut body = json!({
            "Name": name,
            "Driver": n.driver.clone().unwrap_or_else(|| "bridge".into()),
            "Options": n.driver_opts,
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Labels": labels,
            "CheckDuplicate": true,
        });
        if let Some(v6) = n.enable_ipv6 {
            body["EnableIPv6"] = json!(v6);
        }
        if let Some(v4) = n.enable_ipv4 {
            body["EnableIPv4"] = json!(v4);
        }
        if let Some(ipam) = &n.ipam {
            let config: Vec<Value> = ipam
                .config
                .iter()
                .map(|c| {
                    let mut m = serde_json::Map::new();
                    for (k, v) in [
                        ("Subnet", &c.subnet),
                        ("IPRange", &c.ip_range),
                        ("Gateway", &c.gateway),
                    ] {
                        if let Some(v) = v {
                            m.insert(k.into(), json!(v));
                        }
                    }
                    if !c.aux_addresses.is_empty() {
                        m.insert("AuxiliaryAddresses".into(), json!(c.aux_addresses));
                    }
                    Value::Object(m)
                })
                .collect();
            body["IPAM"] = json!({"Driver": ipam.driver.clone().unwrap_or_else(|| "default".into()),
                                  "Config": config, "Options": ipam.options});
        }
        let id = format!("Network {name}");
        pr.working(&id, "Creating");
        if let Err(err) = e.create_network(&body).await {
            pr.failed(&id, "Error");
            return Err(format!("failed to create network {name}: {err}"));
        }
        pr.done(&id, "Created");
    }
    for k in &used_vols {
        ensure_volume(e, p, k, pr).await?;
    }
    Ok(())
}

/// Creates the project's volume `key` (declared, not external) when it is missing.
pub async fn ensure_volume(
    e: &Engine,
    p: &Project,
    key: &str,
    pr: &Progress,
) -> Result<(), String> {
    let Some(v) = p.model.volumes.get(key).filter(|v| !v.external) else {
        return Ok(());
    };
    let name = v
        .name
        .clone()
        .unwrap_or_else(|| format!("{}_{key}", p.name));
    if e.volume(&name).await.map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let mut labels: serde_json::Map<String, Value> = v
        .labels
        .iter()
        .map(|(a, b)| (a.clone(), json!(b)))
        .collect();
    labels.insert(label::PROJECT.into(), json!(p.name));
    labels.insert(label::VOLUME.into(), json!(key));
    labels.insert(label::VERSION.into(), json!(crate::api::VERSION));
    let body = json!({
        "Name": name,
        "Driver": v.driver.clone().unwrap_or_else(|| "local".into()),
        "DriverOpts": v.driver_opts,
        "Labels": labels,
    });
    let id = format!("Volume {name}");
    pr.working(&id, "Creating");
    if let Err(err) = e.create_volume(&body).await {
        pr.failed(&id, "Error");
        return Err(format!("failed to create volume {name}: {err}"));
    }
    pr.done(&id, "Created");
    Ok(())
}

/// `up`/`create`: brings the selected services to the file's state. Errors are one line each.
pub async fn up(
    e: &Engine,
    p: Arc<Project>,
    o: UpOpts,
    pr: Arc<Progress>,
) -> Result<Vec<String>, String> {
    let order = p.selection(&o.services, o.no_deps)?;
    for (s, n) in &o.scale {
        let Some(svc) = p.model.services.get(s) else {
            return Err(format!("no such service: {s}"));
        };
        if *n > 1 && svc.container_name.is_some() {
            return Err(format!(
                "service {s:?} has a container_name and cannot be scaled to {n}"
            ));
        }
    }
    let images = prepare(e, &p, &o, &order, &pr).await?;
    ensure_resources(e, &p, &order, &pr).await?;
    let existing = e
        .containers(&p.name, true)
        .await
        .map_err(|e| e.to_string())?;
    orphans(e, &p, &o, &existing, &pr).await?;
    let ev = if o.no_start || e.dry {
        None
    } else {
        Some(Events::open(e, &p.name).await?)
    };
    let mut peers = BTreeMap::new();
    for c in existing.iter().filter(|c| !c.oneoff()) {
        peers
            .entry(c.service().to_string())
            .or_insert_with(Vec::new)
            .push(c.name.clone());
    }
    let o_parallel = o.parallel;
    let mut outcomes = BTreeMap::new();
    let mut receivers = BTreeMap::new();
    for s in &order {
        let (tx, rx) = watch::channel(Outcome::Pending);
        outcomes.insert(s.clone(), tx);
        receivers.insert(s.clone(), rx);
    }
    let run = Arc::new(Run {
        e: e.clone(),
        p: p.clone(),
        o,
        pr,
        ev,
        images,
        existing,
        peers: Mutex::new(peers),
        outcomes,
        selected: order.iter().cloned().collect(),
        limit: Arc::new(tokio::sync::Semaphore::new(
            o_parallel.unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
        )),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for s in order.clone() {
        let run = run.clone();
        let deps: Vec<(String, watch::Receiver<Outcome>)> = p
            .model
            .services
            .get(&s)
            .into_iter()
            .flat_map(|svc| svc.depends_on.keys())
            .filter_map(|d| receivers.get(d).map(|r| (d.clone(), r.clone())))
            .collect();
        tasks.spawn(async move {
            let _guard = FailOnDrop(run.outcomes.get(&s));
            let res = service_task(&run, &s, deps).await;
            let outcome = match &res {
                Ok(recreated) => Outcome::Done {
                    recreated: *recreated,
                },
                Err(m) => Outcome::Failed(m.clone()),
            };
            if let Some(tx) = run.outcomes.get(&s) {
                let _ = tx.send(outcome);
            }
            res.err()
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Some(m)) => errors.push(m),
            Ok(None) => {}
            Err(j) => errors.push(format!("internal error: {j}")),
        }
    }
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    Ok(order)
}

async fn orphans(
    e: &Engine,
    p: &Project,
    o: &UpOpts,
    existing: &[Ctr],
    pr: &Progress,
) -> Result<(), String> {
    let orphans: Vec<&Ctr> = existing
        .iter()
        .filter(|c| !c.oneoff() && !p.model.services.contains_key(c.service()))
        .filter(|c| !p.disabled.iter().any(|d| d == c.service()))
        .collect();
    if orphans.is_empty() {
        return Ok(());
    }
    if o.remove_orphans {
        for c in orphans {
            let id = format!("Container {}", c.name);
            pr.working(&id, "Stopping");
            e.stop(&c.id, o.timeout).await.map_err(|e| e.to_string())?;
            pr.working(&id, "Removing");
            e.remove(&c.id, true, false)
                .await
                .map_err(|e| e.to_string())?;
            pr.done(&id, "Removed");
        }
    } else {
        let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
        pr.warn(
            &format!("Found orphan containers ([{}])", names.join(" ")),
            "for this project. If you removed or renamed this service in your compose file, \
             you can run this command with the --remove-orphans flag to clean it up.",
        );
    }
    Ok(())
}

/// Waits for the dependencies' conditions, then converges the service. `Ok(true)` when a
/// container was recreated (dependents with `restart: true` restart).
async fn service_task(
    run: &Run,
    name: &str,
    mut deps: Vec<(String, watch::Receiver<Outcome>)>,
) -> Result<bool, String> {
    let Some(svc) = run.p.model.services.get(name) else {
        return Err(format!("no such service: {name}"));
    };
    let mut dep_recreated = BTreeSet::new();
    for (d, rx) in &mut deps {
        let outcome = loop {
            let cur = rx.borrow().clone();
            if !matches!(cur, Outcome::Pending) {
                break cur;
            }
            if rx.changed().await.is_err() {
                break Outcome::Failed(format!("service {d:?} did not converge"));
            }
        };
        match outcome {
            Outcome::Failed(m) => {
                if svc
                    .depends_on
                    .get(d.as_str())
                    .is_some_and(|dep| !dep.required)
                {
                    run.pr.warn(
                        &format!("Service {d}"),
                        &format!("optional dependency: {m}"),
                    );
                    continue;
                }
                return Err(if m.starts_with("dependency failed to start") {
                    m
                } else {
                    format!("dependency failed to start: {m}")
                });
            }
            Outcome::Done { recreated } => {
                if recreated {
                    dep_recreated.insert(d.clone());
                }
            }
            Outcome::Pending => {}
        }
    }
    if !run.o.no_start {
        for (d, dep) in &svc.depends_on {
            if !run.selected.contains(d) {
                continue;
            }
            let until = match dep.condition.as_str() {
                "service_healthy" => Until::Healthy,
                "service_completed_successfully" => Until::Exited,
                _ => continue,
            };
            let Some(ev) = &run.ev else { continue };
            let ctrs = run.peers.lock().map(|p| p.get(d).cloned()).ok().flatten();
            for c in ctrs.unwrap_or_default() {
                let waited = wait_for(&run.e, ev, &c, &c, d, until).await;
                match (waited, dep.required) {
                    (Ok(()), _) => {
                        let text = if until == Until::Healthy {
                            "Healthy"
                        } else {
                            "Exited"
                        };
                        run.pr.done(&format!("Container {c}"), text);
                    }
                    (Err(m), true) => {
                        return Err(if until == Until::Exited {
                            m
                        } else {
                            format!("dependency failed to start: {m}")
                        })
                    }
                    (Err(m), false) => run.pr.warn(
                        &format!("Container {c}"),
                        &format!("optional dependency: {m}"),
                    ),
                }
            }
        }
    }
    converge(run, name, svc, &dep_recreated).await
}

fn depends_on_namespace(svc: &Service, deps: &BTreeSet<String>) -> bool {
    let refers = |m: &Option<String>| {
        m.as_deref()
            .and_then(|m| m.strip_prefix("service:"))
            .is_some_and(|s| deps.contains(s))
    };
    refers(&svc.network_mode)
        || refers(&svc.ipc)
        || refers(&svc.pid)
        || svc.volumes_from.iter().any(|v| {
            let s = v.split(':').next().unwrap_or("");
            deps.contains(s)
        })
}

/// A named volume of the service is not the one the container mounts at that target (e.g.
/// the volume's `name:` changed), as Compose's volume check.
fn volume_mismatch(p: &Project, svc: &Service, c: &Ctr) -> bool {
    let mounted: BTreeMap<&str, &str> = c.raw["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Type"] == "volume")
        .filter_map(|m| Some((m["Destination"].as_str()?, m["Name"].as_str()?)))
        .collect();
    svc.volumes.iter().any(|v| {
        let Some(src) = v
            .source
            .as_deref()
            .filter(|s| v.kind == "volume" && !s.is_empty())
        else {
            return false;
        };
        let want = p
            .model
            .volumes
            .get(src)
            .and_then(|vol| vol.name.clone())
            .unwrap_or_else(|| src.to_string());
        mounted
            .get(v.target.as_str())
            .is_some_and(|have| *have != want)
    })
}

/// Names of the networks the container is attached to.
fn attached_networks(c: &Ctr) -> BTreeSet<String> {
    c.raw["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

async fn converge(
    run: &Run,
    name: &str,
    svc: &Service,
    dep_recreated: &BTreeSet<String>,
) -> Result<bool, String> {
    let p = &run.p;
    let want = run
        .o
        .scale
        .get(name)
        .copied()
        .unwrap_or_else(|| p.replicas(svc));
    if want > MAX_REPLICAS {
        return Err(format!(
            "service {name:?}: {want} replicas is more than berth compose makes ({MAX_REPLICAS})"
        ));
    }
    let hash = config_hash(p.service_tree(name));
    let (image, image_id) = run.images.get(name).cloned().unwrap_or_default();
    let mut mine: Vec<Ctr> = run
        .existing
        .iter()
        .filter(|c| c.service() == name && !c.oneoff())
        .cloned()
        .collect();
    mine.sort_by_key(Ctr::number);
    let mut recreated = false;
    // Scale down from the top.
    while mine.len() as u64 > want {
        let Some(c) = mine.pop() else { break };
        let id = format!("Container {}", c.name);
        run.pr.working(&id, "Stopping");
        run.e
            .stop(&c.id, run.o.timeout)
            .await
            .map_err(|e| e.to_string())?;
        run.pr.working(&id, "Removing");
        run.e
            .remove(&c.id, false, false)
            .await
            .map_err(|e| e.to_string())?;
        run.pr.done(&id, "Removed");
    }
    let expected_nets: BTreeSet<String> = if svc.network_mode.is_some() {
        BTreeSet::new()
    } else {
        p.service_networks(svc)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let restart_deps: BTreeSet<String> = svc
        .depends_on
        .iter()
        .filter(|(d, dep)| dep.restart && dep_recreated.contains(*d))
        .map(|(d, _)| d.clone())
        .collect();
    // --force-recreate / --no-recreate apply to the services asked for; the dependencies
    // pulled in converge as usual.
    let policy = if run.o.services.is_empty() || run.o.services.iter().any(|s| s == name) {
        run.o.recreate
    } else {
        Recreate::Diverged
    };
    let mut names = Vec::new();
    for c in &mine {
        let must = match policy {
            Recreate::Force => true,
            Recreate::Never => false,
            Recreate::Diverged => {
                c.label(label::HASH) != Some(hash.as_str())
                    || c.label(label::IMAGE) != Some(image_id.as_str())
                    || depends_on_namespace(svc, dep_recreated)
                    || (c.state == "running" && !expected_nets.is_subset(&attached_networks(c)))
                    || volume_mismatch(p, svc, c)
            }
        };
        let id = format!("Container {}", c.name);
        if must {
            let new_name = recreate(run, name, svc, c, &hash, &image, &image_id).await?;
            recreated = true;
            names.push(new_name);
        } else if !run.o.no_start && !c.running() {
            run.pr.working(&id, "Starting");
            run.e.start(&c.id).await.map_err(|e| e.to_string())?;
            run.pr.done(&id, "Started");
            names.push(c.name.clone());
        } else if !restart_deps.is_empty() && c.running() && !run.o.no_start {
            run.pr.working(&id, "Restarting");
            run.e
                .restart(&c.id, run.o.timeout)
                .await
                .map_err(|e| e.to_string())?;
            run.pr.done(&id, "Restarted");
            names.push(c.name.clone());
        } else {
            run.pr
                .done(&id, if c.running() { "Running" } else { "Created" });
            names.push(c.name.clone());
        }
    }
    let first = mine.iter().map(Ctr::number).max().unwrap_or(0) + 1;
    let missing = want.saturating_sub(mine.len() as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for number in first..first + missing {
        let cname = p.container_name(name, svc, number);
        names.push(cname.clone());
        let run_peers = run.peers.lock().map(|m| m.clone()).unwrap_or_default();
        let (body, later) = create_body(
            p,
            svc,
            &Replica {
                service: name,
                number,
                image: &image,
                image_id: &image_id,
                peers: &run_peers,
                anonymous: &BTreeMap::new(),
                oneoff: false,
            },
            &hash,
        )?;
        let e = run.e.clone();
        let pr = run.pr.clone();
        let no_start = run.o.no_start;
        let files = file_copies(p, svc)?;
        let limit = run.limit.clone();
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .map_err(|e| format!("internal error: {e}"))?;
            let id = format!("Container {cname}");
            pr.working(&id, "Creating");
            let cid = create_wired(&e, &cname, &body, &later, &files)
                .await
                .inspect_err(|_| pr.failed(&id, "Error"))?;
            pr.done(&id, "Created");
            if !no_start {
                pr.working(&id, "Starting");
                e.start(&cid)
                    .await
                    .map_err(|err| format!("Error response from daemon: {err}"))
                    .inspect_err(|_| pr.failed(&id, "Error"))?;
                pr.done(&id, "Started");
            }
            Ok::<(), String>(())
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r
            .map_err(|j| format!("internal error: {j}"))
            .and_then(|x| x);
        if let Err(m) = r {
            first_err.get_or_insert(m);
        }
    }
    if let Ok(mut m) = run.peers.lock() {
        m.insert(name.to_string(), names);
    }
    match first_err {
        Some(m) => Err(m),
        None => Ok(recreated),
    }
}

/// A secret or config copied into the container before it starts.
pub struct FileCopy {
    pub target: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Vec<u8>,
}

/// Secrets and configs that are copied in: inline or from the environment (as `content`),
/// and files with a mode, uid or gid (a bind mount could not give them those).
pub fn file_copies(p: &Project, svc: &Service) -> Result<Vec<FileCopy>, String> {
    let mut out = Vec::new();
    for (refs, secret) in [(&svc.secrets, true), (&svc.configs, false)] {
        for r in refs {
            let obj = if secret {
                p.model.secrets.get(&r.source)
            } else {
                p.model.configs.get(&r.source)
            };
            let Some(obj) = obj else { continue };
            let data = match (&obj.content, &obj.file) {
                (Some(c), _) => c.clone().into_bytes(),
                (None, Some(f)) if crate::project::copied(r) => {
                    std::fs::read(f).map_err(|e| format!("reading {f}: {e}"))?
                }
                _ => continue,
            };
            out.push(FileCopy {
                target: crate::project::file_target(r, secret),
                mode: r.mode.unwrap_or(0o444),
                uid: r.uid.as_deref().and_then(|u| u.parse().ok()).unwrap_or(0),
                gid: r.gid.as_deref().and_then(|g| g.parse().ok()).unwrap_or(0),
                data,
            });
        }
    }
    Ok(out)
}

fn tar_of(files: &[FileCopy]) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(Vec::new());
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.data.len() as u64);
        h.set_mode(f.mode);
        h.set_uid(f.uid);
        h.set_gid(f.gid);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, f.target.trim_start_matches('/'), f.data.as_slice())
            .map_err(|e| e.to_string())?;
    }
    b.into_inner().map_err(|e| e.to_string())
}

/// Create, connect the further networks, copy in the inline secrets and configs.
pub async fn create_wired(
    e: &Engine,
    name: &str,
    body: &Value,
    later: &[(String, Value)],
    files: &[FileCopy],
) -> Result<String, String> {
    let cid = e
        .create(name, body)
        .await
        .map_err(|err| format!("Error response from daemon: {err}"))?;
    for (net, endpoint) in later {
        let b = json!({"Container": cid, "EndpointConfig": endpoint});
        e.connect(net, &b).await.map_err(|err| err.to_string())?;
    }
    if !files.is_empty() {
        let tar = tar_of(files)?;
        e.put_archive(&cid, "/", tar)
            .await
            .map_err(|err| err.to_string())?;
    }
    Ok(cid)
}

/// Compose's recreate: the new container is made under a temporary name, the old one stopped
/// and removed (its anonymous volumes kept for the new one), then the new one renamed and
/// started.
async fn recreate(
    run: &Run,
    name: &str,
    svc: &Service,
    old: &Ctr,
    hash: &str,
    image: &str,
    image_id: &str,
) -> Result<String, String> {
    let p = &run.p;
    let _permit = run
        .limit
        .acquire()
        .await
        .map_err(|e| format!("internal error: {e}"))?;
    let id = format!("Container {}", old.name);
    run.pr.working(&id, "Recreate");
    let info = run.e.inspect(&old.id).await.map_err(|e| e.to_string())?;
    let named: BTreeSet<String> = p
        .model
        .volumes
        .iter()
        .map(|(k, v)| v.name.clone().unwrap_or_else(|| format!("{}_{k}", p.name)))
        .collect();
    let mut anonymous = BTreeMap::new();
    for m in info["Mounts"].as_array().into_iter().flatten() {
        if m["Type"] == "volume" {
            if let (Some(n), Some(d)) = (m["Name"].as_str(), m["Destination"].as_str()) {
                if !named.contains(n) {
                    anonymous.insert(d.to_string(), n.to_string());
                }
            }
        }
    }
    let number = old.number();
    let peers = run.peers.lock().map(|m| m.clone()).unwrap_or_default();
    let (body, later) = create_body(
        p,
        svc,
        &Replica {
            service: name,
            number,
            image,
            image_id,
            peers: &peers,
            anonymous: &anonymous,
            oneoff: false,
        },
        hash,
    )?;
    let final_name = p.container_name(name, svc, number);
    let short: String = old.id.chars().take(12).collect();
    let tmp = format!("{short}_{final_name}");
    let cid = create_wired(&run.e, &tmp, &body, &later, &file_copies(p, svc)?).await?;
    run.e
        .stop(&old.id, run.o.timeout)
        .await
        .map_err(|e| e.to_string())?;
    run.e
        .remove(&old.id, false, false)
        .await
        .map_err(|e| e.to_string())?;
    run.e
        .rename(&cid, &final_name)
        .await
        .map_err(|e| e.to_string())?;
    run.pr.done(&id, "Recreated");
    if !run.o.no_start {
        let id = format!("Container {final_name}");
        run.pr.working(&id, "Starting");
        run.e
            .start(&cid)
            .await
            .map_err(|err| format!("Error response from daemon: {err}"))?;
        run.pr.done(&id, "Started");
    }
    Ok(final_name)
}
