//! A container's live handle (its record in memory, written through on change, and what its
//! waiters, attach streams and health monitor hold) and exec instances. Owns nothing on disk
//! but the record file; never reaches the networks, volumes or the API.

use super::{Paths, Record};
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
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

    pub(super) fn persist(&self, r: &Record, durable: bool) -> Result<()> {
        let data = serde_json::to_vec_pretty(r).map_err(|e| Error::internal(e.to_string()))?;
        berth_api::fsutil::write_atomic(&self.paths.record(), &data, durable)?;
        if self.unsaved.swap(false, Ordering::SeqCst) {
            tracing::info!("container {}: its record is written again", self.id);
        }
        Ok(())
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
