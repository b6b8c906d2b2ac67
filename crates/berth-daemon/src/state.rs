//! The daemon's shared state: configuration, the image store, live container handles and execs,
//! with lookup by id, name or id prefix as Docker resolves them.

use crate::config::DaemonConfig;
use crate::container::{Paths, Record};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// What waiters watch: how many times the container exited, and whether it is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub exits: u64,
    pub removed: bool,
}

/// The shim socket, and where to acknowledge once attached.
pub type PendingAttach = tokio::sync::oneshot::Sender<(PathBuf, tokio::sync::oneshot::Sender<()>)>;

/// A container's live handle.
pub struct Container {
    pub id: String,
    pub paths: Paths,
    /// berth-runtime's state root (the daemon's), for pause/resume/delete.
    pub runtime_root: PathBuf,
    rec: Mutex<Record>,
    pub progress: watch::Sender<Progress>,
    /// Serializes start/stop/remove of this container.
    pub op: tokio::sync::Mutex<()>,
    /// Attach streams waiting for the next start; each gets the shim socket once the
    /// container is created and answers on the second channel when attached.
    pub pending_attach: Mutex<Vec<PendingAttach>>,
    /// Dropping this stops the health monitor of the current run (see `container::health`).
    pub health_stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The record in memory has changes whose write failed (a full disk): written again by
    /// [`retry_unsaved`].
    unsaved: AtomicBool,
}

impl Container {
    pub fn new(rec: Record, paths: Paths, runtime_root: PathBuf) -> Container {
        Container {
            id: rec.id.clone(),
            paths,
            runtime_root,
            rec: Mutex::new(rec),
            progress: watch::channel(Progress::default()).0,
            op: tokio::sync::Mutex::new(()),
            pending_attach: Mutex::new(Vec::new()),
            health_stop: Mutex::new(None),
            unsaved: AtomicBool::new(false),
        }
    }

    pub fn rec(&self) -> MutexGuard<'_, Record> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Record {
        self.rec().clone()
    }

    /// Change the record's state and write it atomically. Not fsynced: a crash of the daemon
    /// loses nothing (the data is in the page cache), and after a power loss no container
    /// runs and the state is worked out again at boot.
    pub fn update(&self, f: impl FnOnce(&mut Record)) -> Result<Record> {
        self.write(f, false)
    }

    /// Change what the container *is* (created, renamed): atomic and fsynced.
    pub fn update_durable(&self, f: impl FnOnce(&mut Record)) -> Result<Record> {
        self.write(f, true)
    }

    /// Change the record's state after something happened to the container (it was
    /// signalled, paused, it exited): the in-memory record is the truth from then on, and a
    /// write that fails (a full disk) is logged and retried by [`retry_unsaved`] instead of
    /// failing the operation that already acted.
    pub fn update_state(&self, f: impl FnOnce(&mut Record)) {
        let mut r = self.rec();
        f(&mut r);
        if let Err(e) = self.persist(&r, false) {
            if !self.unsaved.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    "container {}: writing its record: {}; retried until it succeeds",
                    self.id,
                    e.0.message
                );
            }
        }
    }

    /// Whether the record has changes not written yet.
    pub fn unsaved(&self) -> bool {
        self.unsaved.load(Ordering::SeqCst)
    }

    /// Like [`Container::update`], but only when `f` says it changed something.
    pub fn update_if(&self, f: impl FnOnce(&mut Record) -> bool) -> Result<bool> {
        let mut r = self.rec();
        if !f(&mut r) {
            return Ok(false);
        }
        self.persist(&r, false)?;
        Ok(true)
    }

    fn write(&self, f: impl FnOnce(&mut Record), durable: bool) -> Result<Record> {
        let mut r = self.rec();
        f(&mut r);
        self.persist(&r, durable)?;
        Ok(r.clone())
    }

    fn persist(&self, r: &Record, durable: bool) -> Result<()> {
        let data = serde_json::to_vec_pretty(r).map_err(|e| Error::internal(e.to_string()))?;
        berth_shim::config::write_atomic(&self.paths.record(), &data, durable)?;
        if self.unsaved.swap(false, Ordering::SeqCst) {
            tracing::info!("container {}: its record is written again", self.id);
        }
        Ok(())
    }
}

/// How often records whose write failed are tried again.
const RETRY_UNSAVED: std::time::Duration = std::time::Duration::from_secs(2);

/// Write again, every few seconds, the records of containers whose last write failed, until
/// each succeeds (runs for the daemon's life).
pub async fn retry_unsaved(d: std::sync::Weak<Daemon>) {
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

/// A created exec instance.
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: berth_api::exec::ExecConfig,
    pub state: Mutex<ExecState>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub running: bool,
    pub pid: i32,
    pub exit_code: Option<i64>,
    pub started: bool,
}

/// Docker's error for a name that is in use.
pub fn name_conflict(name: &str, owner: &str) -> Error {
    Error::conflict(format!(
        "Conflict. The container name \"{name}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

pub struct Daemon {
    pub cfg: DaemonConfig,
    pub images: berth_image::Store,
    pub runtime_root: PathBuf,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    pub execs: Mutex<HashMap<String, Arc<Exec>>>,
    pub spawner: crate::container::shim::Spawner,
    pub net: crate::network::Networks,
    /// The registry client (pull, push, login), with its token cache.
    pub registry: berth_distribution::Client,
    /// Registry repositories known to hold each blob, for cross-repository mounts on push.
    pub blob_sources: crate::blob_sources::BlobSources,
    pub volumes: berth_volume::VolumeService,
    /// The event bus behind `GET /events` (see [`Daemon::emit`]).
    pub events: crate::events::Events,
    /// `--userns-remap`: the id maps of containers not run with `--userns=host`.
    pub remap: Option<crate::userns::Remap>,
}

impl Daemon {
    pub fn new(
        cfg: DaemonConfig,
        images: berth_image::Store,
        net: crate::network::Networks,
        registry: berth_distribution::Client,
        volumes: berth_volume::VolumeService,
        remap: Option<crate::userns::Remap>,
    ) -> Daemon {
        Daemon {
            runtime_root: cfg.exec_root.join("runtime"),
            blob_sources: crate::blob_sources::BlobSources::load(&cfg.data_root),
            cfg,
            images,
            containers: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            spawner: crate::container::shim::Spawner::default(),
            net,
            registry,
            volumes,
            events: crate::events::Events::default(),
            remap,
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
    pub fn rename(&self, c: &Container, name: &str) -> Result<()> {
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
