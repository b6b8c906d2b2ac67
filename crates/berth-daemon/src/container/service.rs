//! The container service: the containers and execs of this daemon, looked up by id, name or
//! id prefix as Docker resolves them, and what the operations on them are given at
//! construction (configuration, image store, network and volume services, event bus, shim
//! spawner). It is what the API routes and, later, the swarm executor call; it never reaches
//! the API layer, the registry client or the build.

use super::handle::{Container, Exec};
use super::{Paths, Record};
use crate::config::DaemonConfig;
use crate::error::{Error, Result};
use crate::events::Events;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Docker's error for a name that is in use.
pub fn name_conflict(name: &str, owner: &str) -> Error {
    Error::conflict(format!(
        "Conflict. The container name \"{name}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// What the container service is built from: the services it drives, passed in by the
/// daemon that owns them.
pub struct Deps {
    pub cfg: DaemonConfig,
    pub images: Arc<berth_image::Store>,
    pub net: crate::container::network::Networks,
    pub volumes: berth_volume::VolumeService,
    pub events: Arc<Events>,
    /// `--userns-remap`: the id maps of containers not run with `--userns=host`.
    pub remap: Option<crate::userns::Remap>,
}

pub struct Service {
    pub cfg: DaemonConfig,
    pub images: Arc<berth_image::Store>,
    /// berth-runtime's state root, for pause/resume/delete.
    pub runtime_root: PathBuf,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    pub execs: Mutex<HashMap<String, Arc<Exec>>>,
    pub spawner: super::shim::Spawner,
    pub net: crate::container::network::Networks,
    pub volumes: berth_volume::VolumeService,
    /// The event bus behind `GET /events`.
    pub events: Arc<Events>,
    pub remap: Option<crate::userns::Remap>,
}

impl Service {
    pub fn new(deps: Deps) -> Service {
        Service {
            runtime_root: deps.cfg.exec_root.join("runtime"),
            cfg: deps.cfg,
            images: deps.images,
            containers: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            spawner: super::shim::Spawner::default(),
            net: deps.net,
            volumes: deps.volumes,
            events: deps.events,
            remap: deps.remap,
        }
    }

    /// The id maps of container `r`: the daemon's remapping unless it runs with
    /// `--userns=host`.
    pub fn remap_of(&self, r: &Record) -> Option<&crate::userns::Remap> {
        self.remap
            .as_ref()
            .filter(|_| r.host_config.userns_mode != "host")
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn paths(&self, id: &str) -> Paths {
        Paths::new(&self.cfg.data_root, &self.cfg.exec_root, id)
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.map().values().cloned().collect()
    }

    pub fn insert(&self, c: Arc<Container>) {
        self.map().insert(c.id.clone(), c);
    }

    /// Insert a new container unless another one holds its name (checked under one lock).
    pub fn insert_named(&self, c: Arc<Container>) -> Result<()> {
        let mut map = self.map();
        let name = c.rec().name.clone();
        if let Some(owner) = map.values().find(|o| o.rec().name == name) {
            return Err(name_conflict(&name, &owner.id));
        }
        map.insert(c.id.clone(), c);
        Ok(())
    }

    /// Give `c` a new name unless another container holds it (checked under one lock).
    pub fn set_name(&self, c: &Container, name: &str) -> Result<()> {
        let map = self.map();
        if let Some(owner) = map.values().find(|o| o.id != c.id && o.rec().name == name) {
            return Err(name_conflict(name, &owner.id));
        }
        c.update_durable(|r| r.name = name.to_string())?;
        Ok(())
    }

    pub fn remove_handle(&self, id: &str) {
        self.map().remove(id);
    }

    /// Find a container by full id, exact name, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Arc<Container>> {
        let map = self.map();
        if key.is_empty() {
            return Err(Error::not_found("No such container: "));
        }
        if let Some(c) = map.get(key) {
            return Ok(c.clone());
        }
        let name = format!("/{}", key.trim_start_matches('/'));
        if let Some(c) = map.values().find(|c| c.rec().name == name) {
            return Ok(c.clone());
        }
        let hits: Vec<&Arc<Container>> = map.values().filter(|c| c.id.starts_with(key)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::not_found(format!("No such container: {key}"))),
            _ => Err(Error::bad_request(format!(
                "multiple IDs found with provided prefix: {key}"
            ))),
        }
    }

    /// Whether a container holds `name` (with leading '/').
    pub fn name_taken(&self, name: &str) -> bool {
        self.map().values().any(|c| c.rec().name == name)
    }

    pub fn exec(&self, id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("No such exec instance: {id}")))
    }

    /// Whether an image is used by any container (for rmi).
    pub fn image_in_use(&self, image_id: &str) -> Option<(String, bool)> {
        self.map().values().find_map(|c| {
            let r = c.rec();
            (r.image_id == image_id).then(|| (r.id.clone(), r.is_running()))
        })
    }
}

impl Service {
    /// A container event with `extra` attributes, the container's labels, its image as the
    /// user named it and its name.
    pub fn container_event(
        &self,
        c: &Container,
        action: impl Into<String>,
        extra: &[(&str, String)],
    ) {
        let mut attrs: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        {
            let r = c.rec();
            if let Some(labels) = &r.config.labels {
                attrs.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if !r.image.is_empty() {
                attrs.insert("image".into(), r.image.clone());
            }
            attrs.insert("name".into(), r.bare_name().to_string());
        }
        self.events.emit("container", action, &c.id, attrs);
    }

    /// `connect` or `disconnect` events for every network the container has an endpoint on.
    pub fn endpoint_events(&self, c: &Container, action: &str) {
        let ids: Vec<String> = c
            .rec()
            .net
            .endpoints
            .values()
            .map(|e| e.network_id.clone())
            .collect();
        for id in ids {
            if let Ok(n) = self.net.find(&id) {
                self.events.network_event(
                    &n.rec.id,
                    &n.rec.name,
                    &n.rec.driver,
                    action,
                    Some(&c.id),
                );
            }
        }
    }
}

/// How often records whose write failed are tried again.
const RETRY_UNSAVED: std::time::Duration = std::time::Duration::from_secs(2);

/// Write again, every few seconds, the records of containers whose last write failed, until
/// each succeeds (runs for the daemon's life).
pub async fn retry_unsaved(d: std::sync::Weak<Service>) {
    let mut tick = tokio::time::interval(RETRY_UNSAVED);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(d) = d.upgrade() else { return };
        let pending: Vec<_> = d.all().into_iter().filter(|c| c.unsaved()).collect();
        if pending.is_empty() {
            continue;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for c in pending {
                let r = c.rec();
                // A container removed meanwhile has no directory to write to.
                if c.paths.dir.exists() {
                    let _ = c.persist(&r, false);
                }
            }
        })
        .await;
    }
}
