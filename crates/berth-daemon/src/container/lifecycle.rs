//! Container lifecycle: create, start (shim spawn, attach hand-off, release), exit monitoring
//! and restart policies, and remove. Signals and state changes are in `control`, the boot in
//! `restore`, the create checks in `validate`. It never calls the network service itself (that goes
//! through `network::endpoint`), and never reaches the routes, the build or the Daemon.

use super::handle::Container;
use super::service::Service;
use super::{shim, status, Record, StateRecord};
use crate::error::{Error, Result};
use berth_api::container::{CreateRequest, HealthConfig};
use berth_api::timefmt;
use berth_shim::protocol::Request;
use berth_shim::ExitRecord;
use std::sync::Arc;
use std::time::Duration;

/// Docker's default size of /dev/shm.
const DEFAULT_SHM_SIZE: i64 = 64 << 20;

pub use super::validate::check_restart_policy;
use super::validate::{check_userns, display_ref, inherit_healthcheck, validate};

impl Service {
    /// `POST /containers/create`.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<(String, Vec<String>)> {
        create_as(self, name, req, Made::ByUser).await
    }

    /// Creates the container of a build's RUN step (marked so that boot removes it should the
    /// daemon die during the step).
    pub async fn create_for_build(self: &Arc<Self>, req: CreateRequest) -> Result<String> {
        Ok(create_as(self, None, req, Made::ForBuild).await?.0)
    }

    /// Creates a swarm task's container (marked as the swarm executor's: a label alone does
    /// not make a container a task).
    pub async fn create_for_swarm(
        self: &Arc<Self>,
        name: &str,
        req: CreateRequest,
    ) -> Result<(String, Vec<String>)> {
        create_as(self, Some(name), req, Made::ForSwarm).await
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        let _op = c.op.lock().await;
        if c.rec().is_running() {
            return Err(Error::not_modified());
        }
        // A start by the user begins a new restart-policy history, as with Docker.
        if c.rec().restart_count != 0 {
            c.update_state(|r| r.restart_count = 0);
        }
        let res = start_locked(self, c).await;
        if res.is_err() && c.rec().host_config.auto_remove {
            drop(_op);
            let _ = self.remove(c, true, true).await;
        }
        res
    }

    /// `DELETE /containers/{id}`; `volumes` (`rm -v`) also removes its anonymous volumes.
    pub async fn remove(
        self: &Arc<Self>,
        c: &Arc<Container>,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let r = c.snapshot();
        if r.is_running() {
            if !force {
                let what = if r.state.status == status::PAUSED {
                    "container is paused and must be unpaused first"
                } else {
                    "container is running: stop the container before removing or force remove"
                };
                return Err(Error::conflict(format!(
                    "cannot remove container \"{}\": {what}",
                    r.name
                )));
            }
            if let Err(e) = self.kill(c, Some("SIGKILL")).await {
                // Only a container that is still running is an error: one that ended meanwhile
                // is removed.
                if c.rec().is_running() {
                    return Err(e);
                }
            }
        }
        let _op = c.op.lock().await;
        if c.progress.borrow().removed {
            return Ok(());
        }
        if c.rec().is_running() {
            // Started again while we waited for the lock.
            return Err(Error::conflict(format!(
                "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                c.rec().name
            )));
        }
        // One rename takes the container out of the data root; its files are deleted in the
        // background (and at the next boot, should the daemon stop first).
        let dir = c.paths.dir.clone();
        let trash = self.cfg.data_root.join("trash").join(&c.id);
        discard_run_dir(self, &c.paths.run_dir);
        let rt = berth_runtime::Runtime::new(&self.runtime_root);
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || {
            let _ = rt.delete(&id, true);
            match std::fs::rename(&dir, &trash) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let trash_dir = self.cfg.data_root.join("trash").join(&c.id);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(trash_dir));
        self.remove_handle(&c.id);
        let mounts = c.rec().mounts.clone();
        if volumes {
            super::volumes::undo(self, &c.id, &mounts);
        } else {
            self.volumes.release(&c.id);
        }
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| e.container_id != c.id);
        self.container_event(c, "destroy", &[]);
        c.progress.send_modify(|p| p.removed = true);
        Ok(())
    }
}

/// Who a container is made for.
#[derive(PartialEq, Eq)]
enum Made {
    ByUser,
    ForBuild,
    ForSwarm,
}

async fn create_as(
    d: &Arc<Service>,
    name: Option<&str>,
    req: CreateRequest,
    made: Made,
) -> Result<(String, Vec<String>)> {
    if req.config.image.is_empty() {
        return Err(Error::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let image = d.images.get(&req.config.image).map_err(|e| match e {
        berth_image::Error::NotFound(_) => {
            Error::not_found(format!("No such image: {}", display_ref(&req.config.image)))
        }
        other => other.into(),
    })?;
    let mut warnings = validate(&req)?;
    warnings.extend(super::validate::check(&req, d.remap.is_some())?);
    check_userns(d, &req.host_config)?;
    let id = crate::util::random_id()?;
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => {
            crate::names::check_len("container", n.trim_start_matches('/'))?;
            if !crate::names::valid(n) {
                return Err(Error::bad_request(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            format!("/{}", n.trim_start_matches('/'))
        }
        None => format!(
            "/{}",
            crate::names::generate(|n| d.name_taken(&format!("/{n}")))
        ),
    };
    let requested_image = req.config.image.clone();
    let mut config = req.config;
    let mut host_config = req.host_config;
    // `NetworkDisabled` (the API's, no CLI flag): no network at all, whatever was asked.
    let network_disabled = config.network_disabled == Some(true);
    if network_disabled {
        host_config.network_mode = "none".into();
        host_config.port_bindings = None;
        host_config.publish_all_ports = false;
    }
    if host_config.network_mode.is_empty() || host_config.network_mode == "default" {
        host_config.network_mode = "bridge".into();
    }
    if host_config.log_config.kind.is_empty() {
        host_config.log_config.kind = "json-file".into();
    }
    super::validate::set_defaults(&mut host_config);
    super::validate::resolve_shared(d, &mut host_config);
    // Docker's defaults, recorded so that inspect shows them and `update` starts from them.
    if host_config.memory > 0 && host_config.memory_swap == 0 {
        host_config.memory_swap = host_config.memory * 2;
    }
    if host_config.shm_size == 0 {
        host_config.shm_size = DEFAULT_SHM_SIZE;
    }
    host_config.oom_kill_disable.get_or_insert(false);
    if host_config.pids_limit.is_some_and(|p| p <= 0) {
        host_config.pids_limit = None;
    }
    // Docker records the image's config merged in the container's Config.
    let ic = image.config.config().clone().unwrap_or_default();
    if config.env.is_none() {
        config.env = ic.env().clone();
    } else if let Some(image_env) = ic.env() {
        let mut merged = image_env.clone();
        for kv in config.env.iter().flatten() {
            let key = kv.split('=').next().unwrap_or(kv);
            merged.retain(|e| e.split('=').next().unwrap_or(e) != key);
            merged.push(kv.clone());
        }
        config.env = Some(merged);
    }
    if config.cmd.is_none() && config.entrypoint.is_none() {
        config.cmd = ic.cmd().clone();
    }
    if config.entrypoint.is_none() {
        config.entrypoint = ic.entrypoint().clone();
    }
    if config.working_dir.is_empty() {
        config.working_dir = ic.working_dir().clone().unwrap_or_default();
    }
    if config.user.is_empty() {
        config.user = ic.user().clone().unwrap_or_default();
    }
    let mut labels = ic
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>();
    labels.extend(config.labels.take().unwrap_or_default());
    config.labels = Some(labels);
    if config.stop_signal.is_none() {
        config.stop_signal = ic.stop_signal().clone();
    }
    // The image's VOLUMEs join the container's, as Docker records them.
    if let Some(image_volumes) = ic.volumes() {
        let vols = config.volumes.get_or_insert_with(Default::default);
        for v in image_volumes {
            vols.entry(v.clone()).or_default();
        }
    }
    let planned = super::volumes::plan(d, &config, &host_config)?;
    if let Some(image_hc) = image
        .healthcheck
        .clone()
        .and_then(|v| serde_json::from_value::<HealthConfig>(v).ok())
    {
        inherit_healthcheck(&mut config.healthcheck, image_hc);
    }
    if let Some(exposed) = ic.exposed_ports() {
        let ports = config.exposed_ports.get_or_insert_with(Default::default);
        for p in exposed {
            let key = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            ports.entry(key).or_default();
        }
    }
    if config.hostname.is_empty() {
        config.hostname = if host_config.network_mode == "host" || host_config.uts_mode == "host" {
            // The host's network comes with the host's name, as in Docker.
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| id[..12].to_string())
        } else {
            id[..12].to_string()
        };
    }
    let argv: Vec<String> = config
        .entrypoint
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(config.cmd.clone().unwrap_or_default())
        .collect();
    let (path, args) = match argv.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => return Err(Error::bad_request("No command specified")),
    };
    let mut rec = Record {
        id: id.clone(),
        name,
        created: timefmt::now(),
        image: requested_image,
        image_id: image.id.clone(),
        config,
        host_config,
        path,
        args,
        state: StateRecord {
            status: status::CREATED.into(),
            started_at: timefmt::ZERO.into(),
            finished_at: timefmt::ZERO.into(),
            ..StateRecord::default()
        },
        restart_count: 0,
        net: Default::default(),
        mounts: Vec::new(),
        creating: false,
        build: made == Made::ForBuild,
        managed: made == Made::ForSwarm,
        remapped_root: None,
    };
    rec.remapped_root = d.remap_of(&rec).map(crate::userns::Remap::root);
    let endpoints = req
        .networking_config
        .filter(|_| !network_disabled)
        .and_then(|n| n.endpoints_config)
        .unwrap_or_default();
    super::network::endpoint::configure(d, &mut rec, endpoints)?;
    // Making a volume writes (and fsyncs) its record: not on one of the API's two workers.
    let (mounts, copies) = if planned.is_empty() {
        Default::default()
    } else {
        let (d2, id2) = (d.clone(), id.clone());
        tokio::task::spawn_blocking(move || super::volumes::realize(&d2, &id2, planned))
            .await
            .map_err(|e| Error::internal(e.to_string()))??
    };
    rec.mounts = mounts;
    rec.creating = !copies.is_empty();
    let paths = d.paths(&id);
    let c = Arc::new(Container::new(rec, paths, d.runtime_root.clone()));
    // Held until the container is complete: once it is visible by name, a start, rm or
    // prune waits for its record and its volumes' content.
    let op = c.op.lock().await;
    if let Err(e) = d.insert_named(c.clone()) {
        drop(op);
        super::volumes::undo(d, &id, &c.rec().mounts);
        return Err(e);
    }
    // The write runs on a blocking thread, not on one of the API's two workers. It is fsynced
    // unless the container is removed when it exits (`--rm`): after a power loss such a
    // container would be gone anyway, and a daemon crash loses nothing in the page cache.
    let c2 = c.clone();
    let durable = !c.rec().host_config.auto_remove;
    let made = tokio::task::spawn_blocking(move || -> Result<()> {
        std::fs::create_dir_all(&c2.paths.dir)?;
        if durable {
            c2.update_durable(|_| {})?;
        } else {
            c2.update(|_| {})?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))
    .and_then(|r| r);
    if let Err(e) = made {
        drop(op);
        d.remove_handle(&c.id);
        let _ = std::fs::remove_dir_all(&c.paths.dir);
        super::volumes::undo(d, &id, &c.rec().mounts);
        return Err(e);
    }
    if !copies.is_empty() {
        // New volumes over image directories get their content, as Docker does at create.
        let (d2, c2) = (d.clone(), c.clone());
        let filled =
            tokio::task::spawn_blocking(move || super::volumes::populate(&d2, &c2, &copies))
                .await
                .map_err(|e| Error::internal(e.to_string()))
                .and_then(|r| r);
        let filled = filled.and_then(|()| c.update(|r| r.creating = false).map(drop));
        if let Err(e) = filled {
            drop(op);
            let _ = d.remove(&c, true, true).await;
            return Err(e);
        }
    }
    drop(op);
    d.container_event(&c, "create", &[]);
    Ok((id, warnings))
}

async fn start_locked(d: &Arc<Service>, c: &Arc<Container>) -> Result<()> {
    let res = start_wired(d, c).await;
    if res.is_err() {
        super::network::endpoint::release(d, c);
        d.volumes.deactivate(&c.id);
        super::settings::release_shm(&c.paths.run_dir);
    }
    res
}

/// The start pipeline, in the order every start (user, restart policy, boot) goes through:
/// 1. mounts: the volumes that need mounting are mounted (`VolumeService`);
/// 2. sandbox: the container's endpoints get addresses and its ports are held
///    (`NetworkService::allocate`);
/// 3. spec: the bundle is written, its config.json by the pure `spec::build` (`bundle`);
/// 4. shim: a shim is spawned and creates the container, blocked before its process runs;
/// 5. endpoints: its interfaces are plugged into its network namespace (`NetworkService::wire`);
/// 6. release: waiting attach streams get the shim, and the shim starts the process;
/// 7. monitors: the record says running, the health and exit monitors start, events go out.
///
/// A failure undoes 1 and 2 in [`start_locked`].
async fn start_wired(d: &Arc<Service>, c: &Arc<Container>) -> Result<()> {
    let t0 = std::time::Instant::now();
    if let Some(e) = super::validate::log_driver_error(&c.rec().host_config.log_config.kind) {
        return Err(Error::bad_request(format!(
            "failed to create task for container: {e}"
        )));
    }
    // 1-3, on a blocking thread (file system work).
    {
        let d2 = d.clone();
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || {
            super::volumes::activate(&d2, &c2.snapshot())?;
            super::network::endpoint::allocate(&d2, &c2)?;
            super::bundle::prepare(&d2, &c2)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    }
    tracing::debug!(id = %c.id, "bundle written after {:?}", t0.elapsed());
    // 4.
    let ready = shim::spawn(&d.spawner, &c.paths.run_dir).await?;
    tracing::debug!(id = %c.id, "shim ready after {:?}", t0.elapsed());
    // 5.
    if ready.error.is_none() {
        if let Err(e) = super::network::endpoint::wire(d, c, ready.pid).await {
            let _ = berth_runtime::Runtime::new(&d.runtime_root).delete(&c.id, true);
            return Err(e);
        }
        tracing::debug!(id = %c.id, "network wired after {:?}", t0.elapsed());
    }
    if let Some(err) = ready.error {
        let code = ready.exit_code.unwrap_or(125);
        c.update_state(|r| {
            r.state.exit_code = i64::from(code);
            r.state.error = err.clone();
        });
        return Err(Error::bad_request(format!(
            "failed to create task for container: {err}"
        )));
    }
    // 6.
    let socket = c.paths.socket();
    // Hand the shim to attach streams waiting for this start; they acknowledge once attached,
    // so no output is lost before the process is released.
    let waiting: Vec<_> =
        std::mem::take(&mut *c.pending_attach.lock().unwrap_or_else(|e| e.into_inner()));
    let mut acks = Vec::new();
    for tx in waiting {
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        if tx.send((socket.clone(), ack_tx)).is_ok() {
            acks.push(ack_rx);
        }
    }
    for ack in acks {
        let _ = tokio::time::timeout(Duration::from_secs(5), ack).await;
    }
    let reply = match shim::call(&socket, &Request::Start).await {
        Ok(r) => r,
        Err(e) => {
            // The shim holds a created container it could not start: take it down.
            let _ = berth_runtime::Runtime::new(&d.runtime_root).delete(&c.id, true);
            return Err(e);
        }
    };
    if let Some(err) = reply.error {
        let code = reply.exit_code.unwrap_or(125);
        c.update_state(|r| {
            r.state.exit_code = i64::from(code);
            r.state.error = err.clone();
            r.state.status = status::CREATED.into();
        });
        return Err(Error::bad_request(format!(
            "failed to create task for container: {err}"
        )));
    }
    c.update_state(|r| {
        r.state = StateRecord {
            status: status::RUNNING.into(),
            pid: ready.pid,
            exit_code: 0,
            error: String::new(),
            started_at: timefmt::now(),
            finished_at: r.state.finished_at.clone(),
            oom_killed: false,
            manually_stopped: false,
            health: r.state.health.take(),
        };
    });
    // 7. The health monitor before the exit monitor, whose exit handling stops it.
    super::health::start(d, c);
    spawn_monitor(d.clone(), c.clone());
    d.endpoint_events(c, "connect");
    d.container_event(c, "start", &[]);
    tracing::debug!(id = %c.id, "started after {:?}", t0.elapsed());
    Ok(())
}

/// Takes a stopped container's run dir (exec root) out of the way with one rename and deletes
/// it in the background: unlinking its files costs ~0.5 ms here (tmpfs files that were bind
/// mounted into the container), which an exit or a `--rm` removal should not wait for, and a
/// new start of the container gets a fresh directory meanwhile. `<exec-root>/trash` is emptied
/// at boot.
pub(super) fn discard_run_dir(d: &Service, run_dir: &std::path::Path) {
    super::settings::release_shm(run_dir);
    let trash = d.cfg.exec_root.join("trash");
    let to = trash.join(format!(
        "{}-{}",
        run_dir.file_name().unwrap_or_default().to_string_lossy(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_nanos())
            .unwrap_or(0)
    ));
    let moved = std::fs::create_dir_all(&trash).and_then(|()| std::fs::rename(run_dir, &to));
    match moved {
        Ok(()) => {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(to));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => {
            let _ = std::fs::remove_dir_all(run_dir);
        }
    }
}

/// Wait for the shim to report the exit, then record it and apply --rm. The wait connection
/// closing without a reply means the shim is gone (killed, crashed): that is seen at once, and
/// what it watched is taken down (see [`shim_lost`]).
pub fn spawn_monitor(d: Arc<Service>, c: Arc<Container>) {
    tokio::spawn(async move {
        let socket = c.paths.socket();
        let exit = loop {
            match shim::open(&socket, &Request::Wait).await {
                Ok((reply, _)) if reply.exit.is_some() => break reply.exit,
                _ if shim_alive(&socket).await => {
                    // Only this connection failed (the shim still accepts): wait again.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => break None,
            }
        };
        let exit = match exit.or_else(|| read_exit_file(&c)) {
            Some(e) => e,
            None => shim_lost(&d, &c).await,
        };
        on_exit(&d, &c, exit).await;
    });
}

/// Whether a shim listens on `socket`: a dead shim's socket refuses connections (or is gone).
async fn shim_alive(socket: &std::path::Path) -> bool {
    match tokio::net::UnixStream::connect(socket).await {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
    }
}

/// The shim of a running container died without recording an exit. As containerd does with
/// a dead shim, every process left in the container's cgroup is killed and its runtime state
/// deleted, so that the restart policy and `start` can run it again; the exit is a SIGKILL
/// (137), or 255 if nothing was left to kill.
pub(super) async fn shim_lost(d: &Service, c: &Container) -> ExitRecord {
    let rt = berth_runtime::Runtime::new(&d.runtime_root);
    let id = c.id.clone();
    let cleaned = tokio::task::spawn_blocking(move || {
        let alive = rt.pids(&id).is_ok_and(|p| !p.is_empty());
        let oom = rt.oom_killed(&id).unwrap_or(false);
        (alive, oom, rt.delete(&id, true))
    })
    .await;
    let (alive, oom_killed) = match cleaned {
        Ok((alive, oom, deleted)) => {
            if let Err(e) = deleted {
                tracing::warn!("container {}: cleaning up after its shim: {e}", c.id);
            }
            (alive, oom)
        }
        Err(e) => {
            tracing::warn!("container {}: cleaning up after its shim: {e}", c.id);
            (false, false)
        }
    };
    tracing::warn!(
        "container {}: its shim died; {}",
        c.id,
        if alive {
            "its processes were killed"
        } else {
            "no process was left"
        }
    );
    ExitRecord {
        exit_code: if alive { 137 } else { 255 },
        oom_killed,
        finished_at: timefmt::now(),
        error: "the container's shim died without recording an exit status".into(),
    }
}

pub(super) fn read_exit_file(c: &Container) -> Option<ExitRecord> {
    std::fs::read(c.paths.exit_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

pub(super) async fn on_exit(d: &Arc<Service>, c: &Arc<Container>, exit: ExitRecord) {
    let t0 = std::time::Instant::now();
    super::health::stop(c);
    let record = |r: &mut Record| {
        super::health::on_stopped(r);
        r.state.status = status::EXITED.into();
        r.state.pid = 0;
        r.state.exit_code = i64::from(exit.exit_code);
        r.state.finished_at = exit.finished_at.clone();
        r.state.oom_killed = exit.oom_killed;
        if !exit.error.is_empty() {
            r.state.error = exit.error.clone();
        }
    };
    super::network::endpoint::release(d, c);
    d.volumes.deactivate(&c.id);
    let auto_remove = c.rec().host_config.auto_remove;
    // A `--rm` container's record is only written if it outlives this function. The restart
    // decision is taken in the same update as the exit, so a `stop` never sees the container
    // exited between its end and its pending restart (it would answer 304 and the restart
    // would go ahead).
    let mut restart = None;
    if auto_remove {
        record(&mut c.rec());
    } else {
        c.update_state(|r| {
            record(r);
            restart = restart_delay(r);
            if restart.is_some() {
                r.state.status = status::RESTARTING.into();
                r.restart_count += 1;
            }
        });
    }
    discard_run_dir(d, &c.paths.run_dir);
    exit_events(d, c, &exit);
    c.progress.send_modify(|p| p.exits += 1);
    if auto_remove {
        if let Err(e) = d.remove(c, true, true).await {
            tracing::warn!("auto-removing {}: {}", c.id, e.0);
            c.update_state(|_| {});
        }
        tracing::debug!(id = %c.id, "exit recorded and removed in {:?}", t0.elapsed());
        return;
    }
    if let Some(delay) = restart {
        schedule_restart(d.clone(), c.clone(), delay);
    }
}

/// What Docker reports when a container's process ends: `oom` if the OOM killer took it,
/// its networks' `disconnect`, then `die` with the exit code and how long it ran.
fn exit_events(d: &Service, c: &Container, exit: &ExitRecord) {
    if exit.oom_killed {
        d.container_event(c, "oom", &[]);
    }
    d.endpoint_events(c, "disconnect");
    let ran = timefmt::parse(&c.rec().state.started_at)
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    d.container_event(
        c,
        "die",
        &[
            ("exitCode", exit.exit_code.to_string()),
            ("execDuration", ran.as_secs().to_string()),
        ],
    );
}

/// Whether the restart policy brings the container back, and after how long (Docker's
/// back-off: 100 ms doubling up to a minute, reset after 10 s of running).
fn restart_delay(r: &Record) -> Option<Duration> {
    if r.state.manually_stopped {
        return None;
    }
    let p = &r.host_config.restart_policy;
    let wanted = match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            r.state.exit_code != 0
                && (p.maximum_retry_count <= 0 || r.restart_count < p.maximum_retry_count)
        }
        _ => false,
    };
    if !wanted {
        return None;
    }
    let ran = match (
        timefmt::parse(&r.state.started_at),
        timefmt::parse(&r.state.finished_at),
    ) {
        (Some(s), Some(f)) => f.duration_since(s).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    if ran >= Duration::from_secs(10) {
        return Some(Duration::from_millis(100));
    }
    let shift = r.restart_count.clamp(0, 10) as u32;
    Some(Duration::from_millis(100u64 << shift).min(Duration::from_secs(60)))
}

/// Start a container that [`on_exit`] marked restarting once `delay` has passed, unless a
/// stop or removal came meanwhile.
fn schedule_restart(d: Arc<Service>, c: Arc<Container>, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _op = c.op.lock().await;
        let still_wanted = {
            let r = c.rec();
            r.state.status == status::RESTARTING && !r.state.manually_stopped
        };
        if !still_wanted || c.progress.borrow().removed {
            return;
        }
        if let Err(e) = start_locked(&d, &c).await {
            tracing::warn!("restarting {}: {}", c.id, e.0.message);
            c.update_state(|r| r.state.status = status::EXITED.into());
        }
    });
}
