//! The containers at boot: records loaded, live shims reconnected (each with a time limit),
//! containers whose shim died recorded as exited, unreadable records quarantined with what
//! they left running, and restart policies applied once the API is up. It starts containers only
//! through the lifecycle's `start`, and never reaches the routes or the Daemon.

use super::handle::Container;
use super::lifecycle::{discard_run_dir, on_exit, read_exit_file, shim_lost, spawn_monitor};
use super::service::Service;
use super::{shim, status, Record};
use crate::error::{Error, Result};
use berth_shim::protocol::Request;
use std::sync::Arc;
use std::time::Duration;

impl Service {
    /// Load container records at boot and reconnect to live shims. Shims are asked concurrently,
    /// each with a time limit, so one stuck shim cannot keep the API down. Returns the containers
    /// whose restart policy wants them started (see [`boot_restarts`]).
    pub async fn restore(self: &Arc<Self>) -> Result<Vec<Arc<Container>>> {
        let dir = self.cfg.data_root.join("containers");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut probes = Vec::new();
        let mut stopped = Vec::new();
        let mut damaged = Vec::new();
        let mut leftovers = Vec::new();
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let paths = self.paths(&id);
            let rec: Record = match std::fs::read(paths.record())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(r) => r,
                None => {
                    damaged.push(id);
                    continue;
                }
            };
            let running = rec.is_running();
            self.volumes.adopt(&rec.id, &rec.mounts, running);
            let unfinished = rec.creating || rec.build;
            let c = Arc::new(Container::new(rec, paths, self.runtime_root.clone()));
            self.insert(c.clone());
            if unfinished {
                leftovers.push(c.clone());
            }
            if running {
                // Its addresses, names and host ports are taken again before anything new starts.
                super::network::endpoint::readopt(self, &c);
                let (d, c) = (self.clone(), c.clone());
                probes.push(tokio::spawn(async move { reconnect(&d, &c).await }));
            } else {
                // A daemon that died between creating and starting a container leaves a blocked
                // init behind; it never officially ran, so it goes. One that died while it had
                // the stopped container's filesystem mounted (copy-up, cp, export) leaves that
                // mount on the run dir.
                if c.paths.run_dir.exists() {
                    let _ = berth_runtime::Runtime::new(&self.runtime_root).delete(&c.id, true);
                    match nix::mount::umount2(&c.paths.rootfs(), nix::mount::MntFlags::MNT_DETACH) {
                        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                        Err(e) => tracing::warn!("container {}: unmounting its root: {e}", c.id),
                    }
                    super::settings::release_shm(&c.paths.run_dir);
                    let _ = std::fs::remove_dir_all(&c.paths.run_dir);
                }
                stopped.push(c);
            }
        }
        for id in damaged {
            quarantine(self, &id).await;
        }
        for p in probes {
            let _ = p.await;
        }
        // What a create that was still copying into volumes or a build step left (the daemon
        // died before it ended): removed, with its anonymous volumes, before anyone sees it.
        for c in &leftovers {
            let removal = tokio::time::timeout(Duration::from_secs(10), self.remove(c, true, true));
            match removal.await {
                Ok(Ok(())) => tracing::info!(
                    "container {}: removed, its create or build step did not finish",
                    c.id
                ),
                Ok(Err(e)) => tracing::warn!(
                    "container {}: removing what an unfinished operation left: {}",
                    c.id,
                    e.0.message
                ),
                Err(_) => tracing::warn!("container {}: removal timed out", c.id),
            }
        }
        // Volume mounts that no running container holds any more (their containers ended while
        // the daemon was down).
        self.volumes.sweep();
        // The table is made again from what runs now: no duplicate, nothing stale.
        self.net.finish_restore().map_err(|e| {
            Error::internal(format!(
                "nftables table {}: {}",
                self.net.host.table.name(),
                e
            ))
        })?;
        Ok(stopped
            .into_iter()
            .filter(|c| !c.rec().creating && !c.rec().build && wants_boot_restart(c))
            .collect())
    }

    /// Start the containers [`restore`] picked, once the API is up.
    pub fn boot_restarts(self: &Arc<Self>, containers: Vec<Arc<Container>>) {
        for c in containers {
            let d = self.clone();
            tokio::spawn(async move {
                if let Err(e) = d.start(&c).await {
                    tracing::warn!("restarting {} at boot: {}", c.id, e.0.message);
                }
            });
        }
    }
}

/// A container whose record cannot be read is not left running unseen: what it has on the
/// exec root is found by its id (the runtime's state, with its cgroup, and its run dir), its
/// processes are killed (its veths and addresses go with its network namespace) and that
/// state removed; its directory (record, log, upper dir) goes to the quarantine.
async fn quarantine(d: &Service, id: &str) {
    let rt = berth_runtime::Runtime::new(&d.runtime_root);
    let id2 = id.to_string();
    let cleaned = tokio::task::spawn_blocking(move || {
        let alive = rt.pids(&id2).is_ok_and(|p| !p.is_empty());
        rt.delete(&id2, true).map(|()| alive)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let paths = d.paths(id);
    discard_run_dir(d, &paths.run_dir);
    let moved = crate::quarantine::move_aside(&d.cfg.data_root, "containers", &paths.dir);
    tracing::warn!(
        "container {id}: unreadable record; {}; its directory {}",
        match cleaned {
            Ok(true) => "its processes were killed".to_string(),
            Ok(false) => "it was not running".to_string(),
            Err(e) => format!("cleaning up its runtime state: {e}"),
        },
        match moved {
            Ok(to) => format!("was moved to {}", to.display()),
            Err(e) => format!("could not be moved aside: {e}"),
        }
    );
}

/// Re-arm the monitor of a container recorded as running, or record how it ended.
async fn reconnect(d: &Arc<Service>, c: &Arc<Container>) {
    let probe = tokio::time::timeout(
        Duration::from_secs(3),
        shim::call(&c.paths.socket(), &Request::State),
    )
    .await;
    match probe {
        Ok(Ok(reply)) if reply.running => {
            super::health::start(d, c);
            spawn_monitor(d.clone(), c.clone());
        }
        Err(_) => {
            tracing::warn!(
                "container {}: its shim does not answer; left as it is",
                c.id
            );
        }
        _ => {
            let exit = match read_exit_file(c) {
                Some(e) => {
                    let _ = berth_runtime::Runtime::new(&d.runtime_root).delete(&c.id, true);
                    e
                }
                None => shim_lost(d, c).await,
            };
            on_exit(d, c, exit).await;
        }
    }
}

/// `always` containers come back when the daemon starts, `unless-stopped` ones unless the
/// user stopped them.
fn wants_boot_restart(c: &Container) -> bool {
    let r = c.rec();
    let policy = r.host_config.restart_policy.name.as_str();
    r.state.status != status::CREATED
        && (policy == "always" || (policy == "unless-stopped" && !r.state.manually_stopped))
}
