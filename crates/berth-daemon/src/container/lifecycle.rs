//! Container lifecycle: create, start (shim spawn, attach hand-off, release), exit monitoring,
//! stop/kill/restart, pause/unpause, rename, remove, wait, and reconnecting to shims at boot.

use super::{shim, spec, status, Record, StateRecord};
use crate::error::{Error, Result};
use crate::state::{Container, Daemon, Progress};
use berth_api::container::{CreateRequest, HealthConfig, RestartPolicy};
use berth_api::timefmt;
use berth_shim::protocol::Request;
use berth_shim::{ExitRecord, ShimConfig};
use std::sync::Arc;
use std::time::Duration;

const LOG_MAX_SIZE: u64 = 20 << 20;
const LOG_MAX_FILES: u32 = 5;
/// Docker's default size of /dev/shm.
const DEFAULT_SHM_SIZE: i64 = 64 << 20;
/// The shortest health check interval, timeout or period Docker accepts (1ms).
const MIN_HEALTH_DURATION: i64 = 1_000_000;

/// `POST /containers/create`.
pub async fn create(
    d: &Arc<Daemon>,
    name: Option<&str>,
    req: CreateRequest,
) -> Result<(String, Vec<String>)> {
    create_as(d, name, req, false).await
}

/// Creates the container of a build's RUN step (marked so that boot removes it should the
/// daemon die during the step).
pub async fn create_for_build(d: &Arc<Daemon>, req: CreateRequest) -> Result<String> {
    Ok(create_as(d, None, req, true).await?.0)
}

async fn create_as(
    d: &Arc<Daemon>,
    name: Option<&str>,
    req: CreateRequest,
    build: bool,
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
    warnings.extend(super::settings::check(&req, d.remap.is_some())?);
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
    super::settings::set_defaults(&mut host_config);
    super::settings::resolve_shared(d, &mut host_config);
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
    let planned = crate::volume::mounts::plan(d, &config, &host_config)?;
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
        build,
        remapped_root: None,
    };
    rec.remapped_root = d.remap_of(&rec).map(crate::userns::Remap::root);
    let endpoints = req
        .networking_config
        .filter(|_| !network_disabled)
        .and_then(|n| n.endpoints_config)
        .unwrap_or_default();
    crate::network::endpoint::configure(d, &mut rec, endpoints)?;
    // Making a volume writes (and fsyncs) its record: not on one of the API's two workers.
    let (mounts, copies) = if planned.is_empty() {
        Default::default()
    } else {
        let (d2, id2) = (d.clone(), id.clone());
        tokio::task::spawn_blocking(move || crate::volume::mounts::realize(&d2, &id2, planned))
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
        crate::volume::mounts::undo(d, &id, &c.rec().mounts);
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
        crate::volume::mounts::undo(d, &id, &c.rec().mounts);
        return Err(e);
    }
    if !copies.is_empty() {
        // New volumes over image directories get their content, as Docker does at create.
        let (d2, c2) = (d.clone(), c.clone());
        let filled =
            tokio::task::spawn_blocking(move || crate::volume::mounts::populate(&d2, &c2, &copies))
                .await
                .map_err(|e| Error::internal(e.to_string()))
                .and_then(|r| r);
        let filled = filled.and_then(|()| c.update(|r| r.creating = false).map(drop));
        if let Err(e) = filled {
            drop(op);
            let _ = remove(d, &c, true, true).await;
            return Err(e);
        }
    }
    drop(op);
    d.container_event(&c, "create", &[]);
    Ok((id, warnings))
}

/// Docker's merge of the image's HEALTHCHECK into the container's: the whole of it when the
/// container sets none, else each setting the container leaves at zero.
fn inherit_healthcheck(own: &mut Option<HealthConfig>, image: HealthConfig) {
    let Some(h) = own else {
        *own = Some(image);
        return;
    };
    if h.test.as_ref().is_none_or(|t| t.is_empty()) {
        h.test = image.test;
    }
    for (mine, theirs) in [
        (&mut h.interval, image.interval),
        (&mut h.timeout, image.timeout),
        (&mut h.start_period, image.start_period),
        (&mut h.start_interval, image.start_interval),
        (&mut h.retries, image.retries),
    ] {
        if *mine == 0 {
            *mine = theirs;
        }
    }
}

/// How Docker shows a reference the user typed: with `:latest` when untagged.
fn display_ref(r: &str) -> String {
    let last = r.rsplit('/').next().unwrap_or(r);
    if r.contains('@') || last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// Docker's restart policy check (create and update).
pub fn check_restart_policy(p: &RestartPolicy) -> Result<()> {
    match p.name.as_str() {
        // An empty name is what older clients send for "no".
        "" => Ok(()),
        "on-failure" if p.maximum_retry_count < 0 => Err(Error::bad_request(
            "invalid restart policy: maximum retry count cannot be negative",
        )),
        "on-failure" => Ok(()),
        "no" | "always" | "unless-stopped" if p.maximum_retry_count == 0 => Ok(()),
        "no" | "always" | "unless-stopped" => {
            let mut msg = String::from(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            );
            if p.maximum_retry_count < 0 {
                msg.push_str(" and cannot be negative");
            }
            Err(Error::bad_request(msg))
        }
        other => Err(Error::bad_request(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        ))),
    }
}

/// Docker's check of a health check's timing (`validateHealthCheck`).
fn check_healthcheck(h: Option<&HealthConfig>) -> Result<()> {
    let Some(h) = h else { return Ok(()) };
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if v != 0 && v < MIN_HEALTH_DURATION {
            return Err(Error::bad_request(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries < 0 {
        return Err(Error::bad_request(
            "Retries in Healthcheck cannot be negative",
        ));
    }
    Ok(())
}

/// Check the create request; Docker's warnings on success.
fn validate(req: &CreateRequest) -> Result<Vec<String>> {
    let h = &req.host_config;
    let warnings = super::limits::check(h, false).map_err(Error::bad_request)?;
    check_restart_policy(&h.restart_policy)?;
    check_healthcheck(req.config.healthcheck.as_ref())?;
    if h.shm_size < 0 {
        return Err(Error::bad_request("SHM size can not be less than 0"));
    }
    if !(-1000..=1000).contains(&h.oom_score_adj) {
        return Err(Error::bad_request(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            h.oom_score_adj
        )));
    }
    if h.auto_remove && !matches!(h.restart_policy.name.as_str(), "" | "no") {
        return Err(Error::bad_request(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    Ok(warnings)
}

/// `--userns` and what Docker refuses in a remapped container.
fn check_userns(d: &Daemon, h: &berth_api::container::HostConfig) -> Result<()> {
    if !matches!(h.userns_mode.as_str(), "" | "host") {
        return Err(Error::bad_request(format!(
            "invalid UsernsMode {:?}: only \"host\" is supported",
            h.userns_mode
        )));
    }
    if d.remap.is_none() || h.userns_mode == "host" {
        return Ok(());
    }
    if h.privileged {
        return Err(Error::bad_request("privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode"));
    }
    if h.network_mode == "host" {
        return Err(Error::bad_request(
            "cannot share the host's network namespace when user namespaces are enabled",
        ));
    }
    Ok(())
}

/// Build the bundle of a container: config.json and shim.json.
fn prepare(d: &Daemon, c: &Container) -> Result<()> {
    let rec = c.snapshot();
    let layers = super::rootfs::lowerdirs(d, c)?;
    for dir in [
        c.paths.upper(),
        c.paths.work(),
        c.paths.rootfs(),
        c.paths.run_dir.clone(),
    ] {
        std::fs::create_dir_all(dir)?;
    }
    let remap = d.remap_of(&rec);
    // Docker keeps a data root per mapping; here one holds all, so a container made under
    // another mapping (or none) is refused rather than started with files it cannot own.
    if rec.remapped_root != remap.map(crate::userns::Remap::root) {
        let was = match rec.remapped_root {
            Some((u, g)) => format!("with its root mapped to {u}:{g}"),
            None => "without --userns-remap".into(),
        };
        return Err(Error::conflict(format!(
            "container {} was created {was}, and the daemon now runs with another \
             --userns-remap setting: restart the daemon with the old setting or recreate \
             the container",
            rec.name.trim_start_matches('/')
        )));
    }
    if let Some(r) = remap {
        // The overlay's top is the container's `/`: owned by its root, and so is what it
        // writes; the lower layers are idmapped instead (see berth-runtime's idmap.rs).
        let (uid, gid) = r.root();
        for dir in [c.paths.upper(), c.paths.work()] {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
        }
    }
    let net = crate::network::files::spec_for(d, &rec)?;
    let mut built = spec::build(
        &rec,
        &c.paths,
        &layers,
        &d.cfg.cgroup_parent,
        &net,
        crate::volume::mounts::oci_mounts(d, &rec)?,
        remap,
    )?;
    let group = spec::read_root_file(&c.paths.upper(), &layers, "etc/group");
    super::settings::apply(d, &rec, &c.paths.run_dir, group.as_deref(), &mut built.spec)?;
    crate::network::files::write_files(d, c, &built.hostname)?;
    if let (Some(r), None) = (remap, &net.netns) {
        // The container's root may write its /etc/hosts, as in Docker.
        let (uid, gid) = r.root();
        for f in [c.paths.hostname(), c.paths.hosts(), c.paths.resolv_conf()] {
            std::os::unix::fs::lchown(f, Some(uid), Some(gid))?;
        }
    }
    let spec = serde_json::to_vec(&built.spec).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(c.paths.run_dir.join("config.json"), spec)?;
    let opts = &rec.host_config.log_config.config;
    let driver = rec.host_config.log_config.kind.as_str();
    // The daemon's --log-opt are for its default driver, json-file.
    let daemon_opts = if driver == "local" {
        &Default::default()
    } else {
        &d.cfg.log_opts
    };
    let (default_size, default_files) = if driver == "local" {
        (
            berth_api::locallog::DEFAULT_MAX_SIZE,
            berth_api::locallog::DEFAULT_MAX_FILES,
        )
    } else {
        (LOG_MAX_SIZE, LOG_MAX_FILES)
    };
    let max_size = opts
        .get("max-size")
        .or(daemon_opts.get("max-size"))
        .map(|s| {
            berth_api::units::ram_in_bytes(s)
                .map(|n| n as u64)
                .map_err(|e| Error::bad_request(format!("invalid max-size: {e}")))
        })
        .transpose()?
        .unwrap_or(default_size);
    let max_files = opts
        .get("max-file")
        .or(daemon_opts.get("max-file"))
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::bad_request(format!("invalid max-file: {s}")))
        })
        .transpose()?
        .unwrap_or(default_files);
    // Rotated files are compressed by default with local, on request with json-file.
    let log_compress = match opts
        .get("compress")
        .or(daemon_opts.get("compress"))
        .map(String::as_str)
    {
        Some(v) => matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True"),
        None => driver == "local",
    };
    let shim_cfg = ShimConfig {
        id: rec.id.clone(),
        bundle: c.paths.run_dir.clone(),
        runtime_root: d.runtime_root.clone(),
        socket: c.paths.socket(),
        log_path: c.paths.log_of(driver),
        log_driver: driver.to_string(),
        log_compress,
        log_max_size: max_size,
        log_max_files: max_files,
        tty: rec.config.tty,
        open_stdin: rec.config.open_stdin,
        stdin_once: rec.config.stdin_once,
        exit_file: c.paths.exit_file(),
        console_size: match rec.host_config.console_size.as_deref() {
            Some([h, w]) if *h > 0 && *w > 0 => Some((
                u16::try_from(*h).unwrap_or(u16::MAX),
                u16::try_from(*w).unwrap_or(u16::MAX),
            )),
            _ => None,
        },
    };
    let data = serde_json::to_vec(&shim_cfg).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(c.paths.run_dir.join(ShimConfig::FILE), data)?;
    let _ = std::fs::remove_file(c.paths.exit_file());
    Ok(())
}

/// `POST /containers/{id}/start`.
pub async fn start(d: &Arc<Daemon>, c: &Arc<Container>) -> Result<()> {
    let _op = c.op.lock().await;
    if c.rec().is_running() {
        return Err(Error::not_modified());
    }
    // A start by the user begins a new restart-policy history, as with Docker.
    if c.rec().restart_count != 0 {
        c.update_state(|r| r.restart_count = 0);
    }
    let res = start_locked(d, c).await;
    if res.is_err() && c.rec().host_config.auto_remove {
        drop(_op);
        let _ = remove(d, c, true, true).await;
    }
    res
}

async fn start_locked(d: &Arc<Daemon>, c: &Arc<Container>) -> Result<()> {
    let res = start_wired(d, c).await;
    if res.is_err() {
        crate::network::endpoint::release(d, c);
        d.volumes.deactivate(&c.id);
        super::settings::release_shm(&c.paths.run_dir);
    }
    res
}

async fn start_wired(d: &Arc<Daemon>, c: &Arc<Container>) -> Result<()> {
    let t0 = std::time::Instant::now();
    if let Some(e) = super::settings::log_driver_error(&c.rec().host_config.log_config.kind) {
        return Err(Error::bad_request(format!(
            "failed to create task for container: {e}"
        )));
    }
    {
        let d2 = d.clone();
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || {
            crate::volume::mounts::activate(&d2, &c2.snapshot())?;
            crate::network::endpoint::allocate(&d2, &c2)?;
            prepare(&d2, &c2)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    }
    tracing::debug!(id = %c.id, "bundle written after {:?}", t0.elapsed());
    let ready = shim::spawn(&d.spawner, &c.paths.run_dir).await?;
    tracing::debug!(id = %c.id, "shim ready after {:?}", t0.elapsed());
    if ready.error.is_none() {
        if let Err(e) = crate::network::endpoint::wire(d, c, ready.pid).await {
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
    // Before the exit monitor, whose exit handling stops the health monitor.
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
fn discard_run_dir(d: &Daemon, run_dir: &std::path::Path) {
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
pub fn spawn_monitor(d: Arc<Daemon>, c: Arc<Container>) {
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
async fn shim_lost(d: &Daemon, c: &Container) -> ExitRecord {
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

fn read_exit_file(c: &Container) -> Option<ExitRecord> {
    std::fs::read(c.paths.exit_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

async fn on_exit(d: &Arc<Daemon>, c: &Arc<Container>, exit: ExitRecord) {
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
    crate::network::endpoint::release(d, c);
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
        if let Err(e) = remove(d, c, true, true).await {
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
fn exit_events(d: &Daemon, c: &Container, exit: &ExitRecord) {
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
fn schedule_restart(d: Arc<Daemon>, c: Arc<Container>, delay: Duration) {
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

fn signal_number(s: &str) -> Result<i32> {
    let t = s.trim().to_ascii_uppercase();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = if t.starts_with("SIG") {
        t.clone()
    } else {
        format!("SIG{t}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::bad_request(format!("Invalid signal: {s}")))
}

/// How long a SIGKILLed container may take to be recorded as stopped before `kill` gives up,
/// as dockerd does when no exit event comes.
const KILL_EXIT_WAIT: Duration = Duration::from_secs(60);

/// `POST /containers/{id}/kill`: returns once the signal was delivered and, for SIGKILL, once
/// the exit is recorded (an inspect that follows shows the container stopped, with its exit
/// code), as dockerd does.
pub async fn kill(d: &Daemon, c: &Arc<Container>, signal: Option<&str>) -> Result<()> {
    let sig = signal_number(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
    let seen = c.progress.borrow().exits;
    if matches!(sig, libc::SIGKILL | libc::SIGTERM | libc::SIGINT) {
        mark_stopped(c);
    }
    let r = c.snapshot();
    if !r.is_running() {
        return Err(Error::conflict(format!(
            "cannot kill container: {}: container {} is not running",
            r.bare_name(),
            r.id
        )));
    }
    if r.state.status == status::PAUSED && sig == libc::SIGKILL {
        let _ = berth_runtime::Runtime::new(&c.runtime_root).resume(&c.id);
    }
    if r.state.status == status::RESTARTING {
        // Between two runs: cancel the pending restart under the op lock, so a restart that
        // is about to begin sees it.
        let op = c.op.lock().await;
        if c.rec().state.status == status::RESTARTING {
            c.update_state(|r| {
                r.state.manually_stopped = true;
                r.state.status = status::EXITED.into();
            });
            c.progress.send_modify(|p| p.exits += 1);
            return Ok(());
        }
        drop(op);
        if !c.rec().is_running() {
            return Ok(());
        }
    }
    let sent = shim::call(
        &c.paths.socket(),
        &Request::Kill {
            signal: sig,
            all: false,
        },
    )
    .await;
    if sent.is_ok() {
        d.container_event(c, "kill", &[("signal", sig.to_string())]);
    }
    if sig != libc::SIGKILL {
        return sent.map(|_| ());
    }
    // The process may also have ended on its own just before (the shim then refuses the
    // signal): either way the call returns once the exit monitor has recorded the end.
    if wait_exit_after(c, seen, Some(KILL_EXIT_WAIT)).await || !c.rec().is_running() {
        return Ok(());
    }
    sent?;
    Err(Error::internal(format!(
        "tried to kill container {}, but did not receive an exit event",
        c.id
    )))
}

/// Wait until the exit counter moves past `seen`, up to `timeout`.
async fn wait_exit_after(c: &Container, seen: u64, timeout: Option<Duration>) -> bool {
    let mut rx = c.progress.subscribe();
    let fut = rx.wait_for(|p| p.exits > seen || p.removed);
    match timeout {
        Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
        None => fut.await.is_ok(),
    }
}

/// Note that the user stopped the container, so restart policies leave it down. Never fails:
/// the signal that follows must be sent even when the record cannot be written.
fn mark_stopped(c: &Container) {
    if c.rec().is_running() {
        c.update_state(|r| r.state.manually_stopped = true);
    }
}

/// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
pub async fn stop(
    d: &Daemon,
    c: &Arc<Container>,
    signal: Option<&str>,
    timeout: Option<i64>,
) -> Result<()> {
    stop_process(d, c, signal, timeout).await?;
    d.container_event(c, "stop", &[]);
    Ok(())
}

async fn stop_process(
    d: &Daemon,
    c: &Arc<Container>,
    signal: Option<&str>,
    timeout: Option<i64>,
) -> Result<()> {
    let r = c.snapshot();
    if !r.is_running() {
        return Err(Error::not_modified());
    }
    if r.state.status == status::RESTARTING {
        return kill(d, c, Some("SIGKILL")).await;
    }
    mark_stopped(c);
    let seen = c.progress.borrow().exits;
    let sig = signal
        .filter(|s| !s.is_empty())
        .map(String::from)
        .or(r.config.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    let t = timeout.or(r.config.stop_timeout).unwrap_or(10);
    if r.state.status == status::PAUSED {
        let _ = berth_runtime::Runtime::new(&c.runtime_root).resume(&c.id);
    }
    let sent = kill(d, c, Some(&sig)).await;
    if sent.is_ok() && t != 0 {
        let limit = (t >= 0).then(|| Duration::from_secs(t as u64));
        if wait_exit_after(c, seen, limit).await {
            return Ok(());
        }
    }
    if c.rec().is_running() {
        let _ = kill(d, c, Some("SIGKILL")).await;
        wait_exit_after(c, seen, None).await;
    }
    Ok(())
}

/// `DELETE /containers/{id}`; `volumes` (`rm -v`) also removes its anonymous volumes.
pub async fn remove(d: &Arc<Daemon>, c: &Arc<Container>, force: bool, volumes: bool) -> Result<()> {
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
        if let Err(e) = kill(d, c, Some("SIGKILL")).await {
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
    let trash = d.cfg.data_root.join("trash").join(&c.id);
    discard_run_dir(d, &c.paths.run_dir);
    let rt = berth_runtime::Runtime::new(&d.runtime_root);
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
    let trash_dir = d.cfg.data_root.join("trash").join(&c.id);
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(trash_dir));
    d.remove_handle(&c.id);
    let mounts = c.rec().mounts.clone();
    if volumes {
        crate::volume::mounts::undo(d, &c.id, &mounts);
    } else {
        d.volumes.release(&c.id);
    }
    d.execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, e| e.container_id != c.id);
    d.container_event(c, "destroy", &[]);
    c.progress.send_modify(|p| p.removed = true);
    Ok(())
}

/// `POST /containers/{id}/wait`: resolves with the exit code.
pub async fn wait(c: &Arc<Container>, condition: &str) -> Result<i64> {
    let mut rx = c.progress.subscribe();
    let start: Progress = *rx.borrow();
    match condition {
        "" | "not-running" => {
            if !c.rec().is_running() {
                return Ok(c.rec().state.exit_code);
            }
            let _ = rx.wait_for(|p| p.exits > start.exits || p.removed).await;
        }
        "next-exit" => {
            let _ = rx.wait_for(|p| p.exits > start.exits || p.removed).await;
        }
        "removed" => {
            let _ = rx.wait_for(|p| p.removed).await;
        }
        other => {
            return Err(Error::bad_request(format!(
                "invalid condition: \"{other}\""
            )))
        }
    }
    Ok(c.rec().state.exit_code)
}

/// `POST /containers/{id}/restart`.
pub async fn restart(
    d: &Arc<Daemon>,
    c: &Arc<Container>,
    signal: Option<&str>,
    timeout: Option<i64>,
) -> Result<()> {
    match stop(d, c, signal, timeout).await {
        Ok(()) | Err(Error(berth_api::ApiError { status: 304, .. })) => {}
        Err(e) => return Err(e),
    }
    start(d, c).await?;
    d.container_event(c, "restart", &[]);
    Ok(())
}

/// `POST /containers/{id}/pause` and `/unpause`.
pub fn pause(d: &Daemon, c: &Container, pause: bool) -> Result<()> {
    let r = c.snapshot();
    if !r.is_running() {
        return Err(Error::conflict(format!(
            "Container {} is not running",
            r.id
        )));
    }
    let paused = r.state.status == status::PAUSED;
    if pause && paused {
        return Err(Error::conflict(format!(
            "Container {} is already paused",
            r.id
        )));
    }
    if !pause && !paused {
        return Err(Error::conflict(format!("Container {} is not paused", r.id)));
    }
    let rt = berth_runtime::Runtime::new(&d.runtime_root);
    let res = if pause {
        rt.pause(&c.id)
    } else {
        rt.resume(&c.id)
    };
    res.map_err(|e| Error::internal(e.to_string()))?;
    // Done: reported as such even if the record cannot be written now (it is retried).
    c.update_state(|r| {
        r.state.status = if pause {
            status::PAUSED
        } else {
            status::RUNNING
        }
        .into();
    });
    d.container_event(c, if pause { "pause" } else { "unpause" }, &[]);
    Ok(())
}

/// `POST /containers/{id}/rename`.
pub fn rename(d: &Daemon, c: &Container, new: &str) -> Result<()> {
    crate::names::check_len("container", new.trim_start_matches('/'))?;
    if !crate::names::valid(new) {
        return Err(Error::bad_request(format!(
            "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let full = format!("/{}", new.trim_start_matches('/'));
    let old = c.rec().name.clone();
    if old == full {
        return Err(Error::conflict(
            "Renaming a container with the same name as its current name",
        ));
    }
    d.rename(c, &full)?;
    d.container_event(c, "rename", &[("oldName", old)]);
    Ok(())
}

/// Load container records at boot and reconnect to live shims. Shims are asked concurrently,
/// each with a time limit, so one stuck shim cannot keep the API down. Returns the containers
/// whose restart policy wants them started (see [`boot_restarts`]).
pub async fn restore(d: &Arc<Daemon>) -> Result<Vec<Arc<Container>>> {
    let dir = d.cfg.data_root.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut probes = Vec::new();
    let mut stopped = Vec::new();
    let mut damaged = Vec::new();
    let mut leftovers = Vec::new();
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let paths = d.paths(&id);
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
        for m in rec
            .mounts
            .iter()
            .filter(|m| m.kind == crate::volume::mounts::VOLUME)
        {
            d.volumes.reference(&m.name, &rec.id);
            if running {
                d.volumes.adopt(&m.name, &rec.id);
            }
        }
        let unfinished = rec.creating || rec.build;
        let c = Arc::new(Container::new(rec, paths, d.runtime_root.clone()));
        d.insert(c.clone());
        if unfinished {
            leftovers.push(c.clone());
        }
        if running {
            // Its addresses, names and host ports are taken again before anything new starts.
            crate::network::endpoint::readopt(d, &c);
            let (d, c) = (d.clone(), c.clone());
            probes.push(tokio::spawn(async move { reconnect(&d, &c).await }));
        } else {
            // A daemon that died between creating and starting a container leaves a blocked
            // init behind; it never officially ran, so it goes. One that died while it had
            // the stopped container's filesystem mounted (copy-up, cp, export) leaves that
            // mount on the run dir.
            if c.paths.run_dir.exists() {
                let _ = berth_runtime::Runtime::new(&d.runtime_root).delete(&c.id, true);
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
        quarantine(d, &id).await;
    }
    for p in probes {
        let _ = p.await;
    }
    // What a create that was still copying into volumes or a build step left (the daemon
    // died before it ended): removed, with its anonymous volumes, before anyone sees it.
    for c in &leftovers {
        let removal = tokio::time::timeout(Duration::from_secs(10), remove(d, c, true, true));
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
    d.volumes.sweep();
    // The table is made again from what runs now: no duplicate, nothing stale.
    d.net.finish_restore().map_err(|e| {
        Error::internal(format!("nftables table {}: {}", d.net.host.table.name(), e))
    })?;
    Ok(stopped
        .into_iter()
        .filter(|c| !c.rec().creating && !c.rec().build && wants_boot_restart(c))
        .collect())
}

/// A container whose record cannot be read is not left running unseen: what it has on the
/// exec root is found by its id (the runtime's state, with its cgroup, and its run dir), its
/// processes are killed (its veths and addresses go with its network namespace) and that
/// state removed; its directory (record, log, upper dir) goes to the quarantine.
async fn quarantine(d: &Daemon, id: &str) {
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
async fn reconnect(d: &Arc<Daemon>, c: &Arc<Container>) {
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

/// Start the containers [`restore`] picked, once the API is up.
pub fn boot_restarts(d: &Arc<Daemon>, containers: Vec<Arc<Container>>) {
    for c in containers {
        let d = d.clone();
        tokio::spawn(async move {
            if let Err(e) = start(&d, &c).await {
                tracing::warn!("restarting {} at boot: {}", c.id, e.0.message);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_refs() {
        assert_eq!(signal_number("TERM").unwrap(), 15);
        assert_eq!(signal_number("SIGKILL").unwrap(), 9);
        assert_eq!(signal_number("2").unwrap(), 2);
        assert!(signal_number("BOGUS").is_err());
        assert_eq!(display_ref("busybox"), "busybox:latest");
        assert_eq!(display_ref("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(display_ref("a:b"), "a:b");
    }
}
