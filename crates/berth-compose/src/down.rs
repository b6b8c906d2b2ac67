//! `down`, and the container commands that act on a project's existing containers (`stop`,
//! `start`, `restart`, `kill`, `pause`, `unpause`, `rm`): found by Compose's labels.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::api::{label, Ctr, Engine};
use crate::progress::Progress;
use crate::project::Project;

#[derive(Clone, Debug, Default)]
pub struct DownOpts {
    pub volumes: bool,
    pub rmi: Option<String>,
    pub remove_orphans: bool,
    pub timeout: Option<i64>,
    pub services: Vec<String>,
}

/// Containers of the project in reverse dependency order (dependents first); one-off
/// containers of `run` included.
fn reverse_order(p: &Project, ctrs: Vec<Ctr>) -> Vec<Ctr> {
    let order = p.order();
    let rank = |c: &Ctr| {
        order
            .iter()
            .position(|s| s == c.service())
            .map_or(usize::MAX, |i| order.len() - i)
    };
    let mut v = ctrs;
    v.sort_by_key(|c| (rank(c), std::cmp::Reverse(c.number())));
    v
}

/// Runs `f` on every container: the containers of one service at once (at most `limit`,
/// `--parallel`), the services one after another in the given order. The first error, if any.
async fn by_service<F, Fut>(ctrs: Vec<Ctr>, limit: Option<usize>, f: F) -> Option<String>
where
    F: Fn(Ctr) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(
        limit.unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let bounded = |fut: Fut| {
        let permits = permits.clone();
        async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| format!("internal error: {e}"))?;
            fut.await
        }
    };
    let mut first = None;
    let mut rest = ctrs.into_iter().peekable();
    while let Some(c) = rest.next() {
        let svc = c.service().to_string();
        let mut set = tokio::task::JoinSet::new();
        set.spawn(bounded(f(c)));
        while let Some(next) = rest.next_if(|n| n.service() == svc) {
            set.spawn(bounded(f(next)));
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Err(m)) => {
                    first.get_or_insert(m);
                }
                Err(j) => {
                    first.get_or_insert(format!("internal error: {j}"));
                }
                Ok(Ok(())) => {}
            }
        }
    }
    first
}

pub async fn down(e: &Engine, p: &Project, o: &DownOpts, pr: &Arc<Progress>) -> Result<(), String> {
    let all = e
        .containers(&p.name, true)
        .await
        .map_err(|e| e.to_string())?;
    let known = |c: &Ctr| {
        p.tree.is_null()
            || p.model.services.contains_key(c.service())
            || p.disabled.iter().any(|d| d == c.service())
    };
    let (mine, orphans): (Vec<Ctr>, Vec<Ctr>) =
        all.into_iter().partition(|c| known(c) || c.oneoff());
    let mut victims = mine;
    if !o.services.is_empty() {
        victims.retain(|c| o.services.iter().any(|s| s == c.service()));
    }
    if o.remove_orphans {
        victims.extend(orphans);
    } else if !orphans.is_empty() && o.services.is_empty() {
        let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
        pr.warn(
            &format!("Found orphan containers ([{}])", names.join(" ")),
            "for this project. If you removed or renamed this service in your compose file, \
             you can run this command with the --remove-orphans flag to clean it up.",
        );
    }
    let victims = reverse_order(p, victims);
    let mut images = BTreeSet::new();
    let mut first_err = None;
    // Volumes the containers mount by name that were made anonymous (a recreated container
    // mounts its predecessor's by name, so the engine's `v=1` does not take them).
    let mut anonymous = BTreeSet::new();
    for c in &victims {
        for m in c.raw["Mounts"].as_array().into_iter().flatten() {
            if let (Some("volume"), Some(n)) = (m["Type"].as_str(), m["Name"].as_str()) {
                anonymous.insert(n.to_string());
            }
        }
    }
    for c in &victims {
        if let Some(img) = c.raw["Image"].as_str() {
            images.insert((img.to_string(), c.service().to_string()));
        }
    }
    let (timeout, volumes) = (o.timeout, o.volumes);
    let failed = by_service(victims, e.parallel, |c| {
        let (e, pr) = (e.clone(), pr.clone());
        async move {
            let id = format!("Container {}", c.name);
            let failed = |err: crate::api::ApiError| {
                pr.failed(&id, "Error");
                err.to_string()
            };
            if c.running() {
                pr.working(&id, "Stopping");
                e.stop(&c.id, timeout).await.map_err(failed)?;
                pr.done(&id, "Stopped");
            }
            pr.working(&id, "Removing");
            e.remove(&c.id, true, volumes).await.map_err(failed)?;
            pr.done(&id, "Removed");
            Ok(())
        }
    })
    .await;
    if let Some(m) = failed {
        first_err.get_or_insert(m);
    }
    if o.volumes {
        for n in anonymous {
            let anon = e
                .volume(&n)
                .await
                .ok()
                .flatten()
                .is_some_and(|v| v["Labels"].get("com.docker.volume.anonymous").is_some());
            if anon {
                let _ = e.remove_volume(&n).await;
            }
        }
    }
    if o.services.is_empty() {
        let nets = e
            .networks_labelled(&[format!("{}={}", label::PROJECT, p.name)])
            .await
            .map_err(|e| e.to_string())?;
        for n in nets {
            let name = n["Name"].as_str().unwrap_or("").to_string();
            let id = format!("Network {name}");
            pr.working(&id, "Removing");
            match e.remove_network(&name).await {
                Ok(()) => pr.done(&id, "Removed"),
                Err(err) => {
                    pr.failed(&id, "Error");
                    first_err.get_or_insert(err.to_string());
                }
            }
        }
        if o.volumes {
            let vols = e
                .volumes_labelled(&[format!("{}={}", label::PROJECT, p.name)])
                .await
                .map_err(|e| e.to_string())?;
            for v in vols {
                let name = v["Name"].as_str().unwrap_or("").to_string();
                let external = p
                    .model
                    .volumes
                    .values()
                    .any(|d| d.external && d.name.as_deref() == Some(&name));
                if external {
                    continue;
                }
                let id = format!("Volume {name}");
                pr.working(&id, "Removing");
                match e.remove_volume(&name).await {
                    Ok(()) => pr.done(&id, "Removed"),
                    Err(err) => {
                        pr.failed(&id, "Error");
                        first_err.get_or_insert(err.to_string());
                    }
                }
            }
        }
    }
    if let Some(mode) = &o.rmi {
        let mut names = BTreeSet::new();
        for (svc_name, svc) in &p.model.services {
            let local = svc.image.is_none();
            if mode == "all" || local {
                names.insert(p.image_name(svc_name, svc));
            }
        }
        if mode == "all" {
            names.extend(images.into_iter().map(|(i, _)| i));
        }
        for n in names {
            let id = format!("Image {n}");
            pr.working(&id, "Removing");
            match e.remove_image(&n).await {
                Ok(()) => pr.done(&id, "Removed"),
                Err(err) => pr.warn(&id, &err.to_string()),
            }
        }
    }
    match first_err {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

/// The project's service containers (not one-offs) of `services` (all when empty).
pub async fn service_containers(
    e: &Engine,
    p: &Project,
    services: &[String],
    all: bool,
) -> Result<Vec<Ctr>, String> {
    for s in services {
        if !p.tree.is_null() && !p.model.services.contains_key(s) {
            return Err(format!("no such service: {s}"));
        }
    }
    let v = e
        .containers(&p.name, all)
        .await
        .map_err(|e| e.to_string())?;
    Ok(v.into_iter()
        .filter(|c| {
            !c.oneoff() && (services.is_empty() || services.iter().any(|s| s == c.service()))
        })
        .collect())
}

/// What `each` does to one container.
#[derive(Clone, Debug)]
pub enum Act {
    Start,
    Stop(Option<i64>),
    Restart(Option<i64>),
    Kill(String),
    Pause,
    Unpause,
    Remove { volumes: bool },
}

impl Act {
    fn words(&self) -> (&'static str, &'static str) {
        match self {
            Act::Start => ("Starting", "Started"),
            Act::Stop(_) => ("Stopping", "Stopped"),
            Act::Restart(_) => ("Restarting", "Started"),
            Act::Kill(_) => ("Killing", "Killed"),
            Act::Pause => ("Pausing", "Paused"),
            Act::Unpause => ("Unpausing", "Unpaused"),
            Act::Remove { .. } => ("Removing", "Removed"),
        }
    }
}

/// Applies `act` to each container, in dependency order for start and reverse for the rest.
pub async fn each(
    e: &Engine,
    p: &Project,
    ctrs: Vec<Ctr>,
    act: Act,
    pr: &Arc<Progress>,
) -> Result<(), String> {
    let ctrs = match act {
        Act::Start | Act::Unpause => {
            let mut v = reverse_order(p, ctrs);
            v.reverse();
            v
        }
        _ => reverse_order(p, ctrs),
    };
    let (ing, ed) = act.words();
    let failed = by_service(ctrs, e.parallel, |c| {
        let (e, pr, act) = (e.clone(), pr.clone(), act.clone());
        async move {
            let id = format!("Container {}", c.name);
            pr.working(&id, ing);
            let r = match &act {
                Act::Start => e.start(&c.id).await,
                Act::Stop(t) => e.stop(&c.id, *t).await,
                Act::Restart(t) => e.restart(&c.id, *t).await,
                Act::Kill(s) => e.kill(&c.id, s).await,
                Act::Pause => e.pause(&c.id, true).await,
                Act::Unpause => e.pause(&c.id, false).await,
                Act::Remove { volumes } => e.remove(&c.id, true, *volumes).await,
            };
            match r {
                Ok(()) => {
                    pr.done(&id, ed);
                    Ok(())
                }
                Err(err) => {
                    pr.failed(&id, "Error");
                    Err(err.to_string())
                }
            }
        }
    })
    .await;
    match failed {
        Some(m) => Err(m),
        None => Ok(()),
    }
}
