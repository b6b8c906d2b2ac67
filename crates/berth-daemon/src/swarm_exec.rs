//! The swarm agent's executor on this daemon: a task becomes a container through the same
//! container service the API routes use (as moby's cluster executor), named and labelled as
//! Docker names and labels task containers; secrets and configs go on a tmpfs of the task, its
//! swarm networks are realised on this node through `swarm_net`.

use crate::container::logs;
use crate::state::Daemon;
use berth_api::container::{Config, CreateRequest, HostConfig, NetworkingConfig, PortBinding};
use berth_api::network::{EndpointIpam, EndpointSettings};
use berth_api::swarm as api;
use berth_swarm::executor::{BoxFut, ContainerState, Executor, TaskContainer, TaskFile, TaskRun};
use berth_swarm::proto::{LogOptions, NetworkView};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The label that marks a container as a swarm task's.
pub const TASK_ID: &str = "com.docker.swarm.task.id";
/// The labels naming the task's node and service.
const NODE_ID: &str = "com.docker.swarm.node.id";
const SERVICE_ID: &str = "com.docker.swarm.service.id";

pub struct SwarmExecutor {
    d: Weak<Daemon>,
    /// Where the tasks' secret and config tmpfs mounts live (`<exec-root>/swarm/files`).
    files_root: PathBuf,
    /// Tasks whose files are made and whose container is not yet: the sweep leaves them be.
    preparing: std::sync::Mutex<HashSet<String>>,
}

/// Where a node's task files live under its exec root.
fn files_root(exec_root: &Path) -> PathBuf {
    exec_root.join("swarm").join("files")
}

/// The task id of a container the swarm executor made (None for any other, whatever its
/// labels say).
fn task_of(r: &crate::container::Record) -> Option<String> {
    if !r.managed {
        return None;
    }
    r.config.labels.as_ref()?.get(TASK_ID).cloned()
}

/// Unmounts and removes a task's secret tmpfs.
fn forget_files(files_root: &Path, task_id: &str) {
    if !valid_task_id(task_id) {
        return;
    }
    let dir = files_root.join(task_id);
    if dir.exists() {
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// After the user removed a container: the secret tmpfs of the task it ran goes with it.
pub fn forget_removed(exec_root: &Path, r: &crate::container::Record) {
    if let Some(task) = task_of(r) {
        forget_files(&files_root(exec_root), &task);
    }
}

impl SwarmExecutor {
    /// The executor of daemon `d`; the files of tasks whose container is gone (removed
    /// while the daemon was down) go at once.
    pub fn new(d: Weak<Daemon>, exec_root: &Path) -> SwarmExecutor {
        let e = SwarmExecutor {
            d,
            files_root: files_root(exec_root),
            preparing: Default::default(),
        };
        if let Some(d) = e.d.upgrade() {
            e.sweep(&d);
        }
        e
    }

    fn lock_preparing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.preparing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the secret tmpfs of every task without a container here (one removed behind
    /// the agent's back, or whose removal failed part-way), but not of tasks being started.
    fn sweep(&self, d: &Daemon) {
        let preparing = self.lock_preparing();
        // Taken under the lock: a task leaves `preparing` only once its container exists.
        let tasks: HashSet<String> = d.all().iter().filter_map(|c| task_of(&c.rec())).collect();
        let Ok(entries) = std::fs::read_dir(&self.files_root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !tasks.contains(&name) && !preparing.contains(&name) {
                tracing::debug!("swarm task {name}: its secret files outlived its container");
                self.forget(&name);
            }
        }
    }

    fn daemon(&self) -> Result<Arc<Daemon>, String> {
        self.d
            .upgrade()
            .ok_or_else(|| "the daemon is shutting down".to_string())
    }

    /// Puts the task's secret and config files on a tmpfs of its own and returns the bind
    /// mounts that show them in the container (read-only).
    fn materialize(
        &self,
        task_id: &str,
        files: &[TaskFile],
    ) -> Result<Vec<berth_api::container::Mount>, String> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        if !valid_task_id(task_id) {
            return Err(format!("invalid task id {task_id:?}"));
        }
        let dir = self.files_root.join(task_id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(dir.to_string_lossy().as_ref()));
        if !mounted {
            nix::mount::mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some(format!("size={},mode=0700", tmpfs_size(files)).as_str()),
            )
            .map_err(|e| format!("mounting a tmpfs for the task's secrets: {e}"))?;
        }
        let mut mounts = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let path = dir.join(format!("{i}"));
            std::fs::write(&path, &f.data).map_err(|e| format!("{}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode & 0o7777))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let uid = f.uid.parse::<u32>().ok();
            let gid = f.gid.parse::<u32>().ok();
            nix::unistd::chown(
                &path,
                uid.map(nix::unistd::Uid::from_raw),
                gid.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
            mounts.push(berth_api::container::Mount {
                target: f.target.clone(),
                source: path.to_string_lossy().into_owned(),
                kind: "bind".to_string(),
                read_only: true,
                ..Default::default()
            });
        }
        Ok(mounts)
    }

    /// Unmounts and removes a task's secret tmpfs.
    fn forget(&self, task_id: &str) {
        forget_files(&self.files_root, task_id);
    }
}

/// A task in `preparing` for as long as it lives.
struct Preparing<'a> {
    exec: &'a SwarmExecutor,
    task: String,
}

impl<'a> Preparing<'a> {
    fn new(exec: &'a SwarmExecutor, task: &str) -> Preparing<'a> {
        exec.lock_preparing().insert(task.to_string());
        Preparing {
            exec,
            task: task.to_string(),
        }
    }
}

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        self.exec.lock_preparing().remove(&self.task);
    }
}

/// Task ids are swarm ids (base 36): nothing else names a directory here.
fn valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Bytes for a task's secret tmpfs: its files with room to spare (secrets may be 500 KiB and
/// configs 1000 KiB each).
fn tmpfs_size(files: &[TaskFile]) -> usize {
    files.iter().map(|f| f.data.len() + 4096).sum::<usize>() + (1 << 20)
}

/// The container name Docker gives a task: `<service>.<slot>.<task id>`, or the node id for
/// global services.
pub fn task_name(run: &TaskRun) -> String {
    let slot = if run.task.slot != 0 {
        run.task.slot.to_string()
    } else {
        run.node_id.clone()
    };
    format!("{}.{}.{}", run.service_name, slot, run.task.id)
}

/// The create body of a task's container.
fn create_request(run: &TaskRun, extra_mounts: Vec<berth_api::container::Mount>) -> CreateRequest {
    let cs = run.task.spec.container_spec.clone().unwrap_or_default();
    let name = task_name(run);
    let mut labels: BTreeMap<String, String> = cs.labels.clone();
    labels.insert(NODE_ID.into(), run.node_id.clone());
    labels.insert(SERVICE_ID.into(), run.task.service_id.clone());
    labels.insert(
        "com.docker.swarm.service.name".into(),
        run.service_name.clone(),
    );
    labels.insert("com.docker.swarm.task".into(), String::new());
    labels.insert(TASK_ID.into(), run.task.id.clone());
    labels.insert("com.docker.swarm.task.name".into(), name);
    let mut mounts: Vec<berth_api::container::Mount> =
        cs.mounts.iter().map(api::Mount::to_container).collect();
    mounts.extend(extra_mounts);
    let limits = run
        .task
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let mut bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    let mut exposed = BTreeMap::new();
    for (target, published, proto) in &run.host_ports {
        let key = format!("{target}/{}", if proto.is_empty() { "tcp" } else { proto });
        exposed.insert(key.clone(), Default::default());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: String::new(),
                host_port: if *published == 0 {
                    String::new()
                } else {
                    published.to_string()
                },
            });
    }
    let dns = cs.dns_config.clone().unwrap_or_default();
    // Docker's hosts lines are "IP name..."; extra_hosts wants "name:IP".
    let extra_hosts: Vec<String> = cs
        .hosts
        .iter()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let ip = parts.next()?;
            Some(parts.map(|h| format!("{h}:{ip}")).collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    let log = run.task.spec.log_driver.clone();
    CreateRequest {
        config: Config {
            hostname: cs.hostname.clone(),
            user: cs.user.clone(),
            tty: cs.tty,
            open_stdin: cs.open_stdin,
            env: Some(cs.env.clone()),
            cmd: (!cs.args.is_empty()).then(|| cs.args.clone()),
            entrypoint: (!cs.command.is_empty()).then(|| cs.command.clone()),
            healthcheck: cs.healthcheck.clone(),
            image: cs.image.clone(),
            working_dir: cs.dir.clone(),
            labels: Some(labels),
            stop_signal: (!cs.stop_signal.is_empty()).then(|| cs.stop_signal.clone()),
            stop_timeout: cs.stop_grace_period.map(|n| n / 1_000_000_000),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            ..Default::default()
        },
        host_config: HostConfig {
            mounts: Some(mounts),
            readonly_rootfs: cs.read_only,
            privileged: cs.privileged,
            devices: (!cs.devices.is_empty()).then(|| cs.devices.clone()),
            cap_add: (!cs.capability_add.is_empty()).then(|| cs.capability_add.clone()),
            cap_drop: (!cs.capability_drop.is_empty()).then(|| cs.capability_drop.clone()),
            sysctls: (!cs.sysctls.is_empty()).then(|| cs.sysctls.clone()),
            ulimits: (!cs.ulimits.is_empty()).then(|| cs.ulimits.clone()),
            init: cs.init,
            group_add: (!cs.groups.is_empty()).then(|| cs.groups.clone()),
            extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
            dns: (!dns.nameservers.is_empty()).then(|| dns.nameservers.clone()),
            dns_search: (!dns.search.is_empty()).then(|| dns.search.clone()),
            dns_options: (!dns.options.is_empty()).then(|| dns.options.clone()),
            nano_cpus: limits.nano_cpus,
            memory: limits.memory_bytes,
            pids_limit: (limits.pids > 0).then_some(limits.pids),
            oom_score_adj: cs.oom_score_adj,
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            log_config: berth_api::container::LogConfig {
                kind: log.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
                config: log.map(|l| l.options).unwrap_or_default(),
            },
            ..Default::default()
        },
        networking_config: None,
    }
}

/// A task's place on one of its swarm networks, realised here: the local network's name,
/// the address the managers gave it there, and whether it is the ingress network.
struct Place {
    network: String,
    address: String,
    ingress: bool,
}

/// Puts a task's container on the local networks of its swarm networks, each with the
/// address the managers gave it; the first that is not the ingress network is its primary
/// (its default route). None but the ingress network: the engine's default network is.
/// The names it answers to there come from the managers' description (`swarm_net`), not
/// from aliases of its own (a service name is its virtual IP's).
fn attach(req: &mut CreateRequest, places: &[Place]) {
    if places.is_empty() {
        return;
    }
    let mut endpoints: BTreeMap<String, EndpointSettings> = places
        .iter()
        .map(|p| {
            (
                p.network.clone(),
                EndpointSettings {
                    ipam_config: (!p.address.is_empty()).then(|| EndpointIpam {
                        ipv4_address: p.address.clone(),
                        ..Default::default()
                    }),
                    // The mesh's network never carries the default route.
                    gw_priority: if p.ingress { -1 } else { 0 },
                    ..Default::default()
                },
            )
        })
        .collect();
    req.host_config.network_mode = match places.iter().find(|p| !p.ingress) {
        Some(p) => p.network.clone(),
        None => {
            endpoints.insert("bridge".to_string(), EndpointSettings::default());
            "bridge".to_string()
        }
    };
    req.networking_config = Some(NetworkingConfig {
        endpoints_config: Some(endpoints.into_iter().collect()),
    });
}

/// Waits until a container with a health check reports healthy: an error when it turns
/// unhealthy or stops first. A container without one is ready at once.
async fn wait_healthy(c: &crate::container::handle::Container) -> Result<(), String> {
    use berth_api::container::health_status;
    loop {
        {
            let r = c.rec();
            let Some(h) = r.state.health.as_ref() else {
                return Ok(());
            };
            if !r.is_running() {
                return Err("task: the container stopped before it was healthy".to_string());
            }
            match h.status.as_str() {
                health_status::HEALTHY => return Ok(()),
                health_status::UNHEALTHY => {
                    return Err("task: the container's health check failed".to_string())
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The local image a task's image runs from, or None when it must be pulled. A pinned
/// digest (`name:tag@sha256:...`, as the CLI resolves it) not known here is matched against
/// the local `name:tag`: that image is used when it carries the digest (its repository
/// digests or its manifest's) or when it never came from a registry (built, loaded or
/// imported here); else the pinned image is pulled, as moby's executor does. `lookup` gives
/// a local image's repository digests and manifest digest.
fn image_source(
    image: &str,
    lookup: impl Fn(&str) -> Option<(Vec<String>, String)>,
) -> Option<String> {
    if lookup(image).is_some() {
        return Some(image.to_string());
    }
    let (bare, digest) = image.split_once('@')?;
    let (repo_digests, manifest_digest) = lookup(bare)?;
    let carries = manifest_digest == digest
        || repo_digests
            .iter()
            .any(|r| r.rsplit_once('@').is_some_and(|(_, d)| d == digest));
    (carries || repo_digests.is_empty()).then(|| bare.to_string())
}

/// The credentials a task's image is pulled with: those its service was created or updated
/// with (`--with-registry-auth`), else none.
fn pull_credentials(cs: &api::ContainerSpec) -> Result<berth_distribution::Credentials, String> {
    match cs
        .pull_options
        .as_ref()
        .filter(|p| !p.registry_auth.is_empty())
    {
        None => Ok(berth_distribution::Credentials::default()),
        Some(p) => berth_distribution::AuthConfig::decode(&p.registry_auth)
            .and_then(|a| a.credentials())
            .map_err(|e| format!("invalid registry credentials of the service: {e}")),
    }
}

/// Pulls a task's image through the daemon's registry client.
async fn pull(
    d: &Arc<Daemon>,
    image: &str,
    creds: berth_distribution::Credentials,
) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<berth_api::progress::Message>(64);
    let dd = d.clone();
    let name = image.to_string();
    let task = tokio::spawn(async move {
        crate::pull::pull(&dd, &dd.registry, &name, ("", "", None), &creds, &tx).await
    });
    while rx.recv().await.is_some() {}
    task.await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.0.message.clone())
}

impl Executor for SwarmExecutor {
    fn describe(&self) -> BoxFut<'_, api::NodeDescription> {
        Box::pin(async move {
            let hostname = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            let cpus = std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1);
            let mem = crate::util::mem_total() as i64;
            api::NodeDescription {
                hostname,
                platform: api::Platform {
                    architecture: std::env::consts::ARCH.to_string(),
                    os: "linux".to_string(),
                },
                resources: api::Resources {
                    nano_cpus: cpus * 1_000_000_000,
                    memory_bytes: mem,
                    ..Default::default()
                },
                engine: api::EngineDescription {
                    engine_version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                },
                ..Default::default()
            }
        })
    }

    fn list(&self) -> BoxFut<'_, Vec<TaskContainer>> {
        Box::pin(async move {
            let Some(d) = self.d.upgrade() else {
                return Vec::new();
            };
            // The agent lists at every reconcile: what outlived its container goes then.
            self.sweep(&d);
            d.all()
                .into_iter()
                .filter_map(|c| {
                    let r = c.rec();
                    let task_id = task_of(&r)?;
                    let state = match r.state.status.as_str() {
                        "running" | "paused" | "restarting" => ContainerState::Running {
                            pid: i64::from(r.state.pid),
                        },
                        "created" => ContainerState::Created,
                        _ => ContainerState::Exited {
                            code: r.state.exit_code,
                            error: r.state.error.clone(),
                        },
                    };
                    Some(TaskContainer {
                        task_id,
                        container_id: r.id.clone(),
                        state,
                    })
                })
                .collect()
        })
    }

    fn run(&self, run: TaskRun) -> BoxFut<'_, Result<String, String>> {
        Box::pin(async move {
            let d = self.daemon()?;
            let mut req = create_request(&run, Vec::new());
            let image = req.config.image.clone();
            let local = image_source(&image, |name| {
                d.images
                    .get(name)
                    .ok()
                    .map(|i| (i.repo_digests, i.manifest_digest))
            });
            match local {
                Some(name) => req.config.image = name,
                None => {
                    let cs = run.task.spec.container_spec.clone().unwrap_or_default();
                    pull(&d, &image, pull_credentials(&cs)?)
                        .await
                        .map_err(|e| format!("No such image: {image}: {e}"))?
                }
            }
            let mut files = run.secrets.clone();
            files.extend(run.configs.iter().cloned());
            let prepared = Preparing::new(self, &run.task.id);
            let extra = match self.materialize(&run.task.id, &files) {
                Ok(m) => m,
                Err(e) => {
                    self.forget(&run.task.id);
                    return Err(e);
                }
            };
            req.host_config
                .mounts
                .get_or_insert_with(Vec::new)
                .extend(extra);
            let name = task_name(&run);
            // The task's swarm networks exist here from before its container is made until
            // after it is removed: nothing releases them in between.
            let nets = d.swarm_nets.lock().await;
            let mut places = Vec::new();
            for tn in &run.networks {
                match crate::swarm_net::realise(&d, &nets, &tn.network).await {
                    Ok(network) => places.push(Place {
                        network,
                        address: tn.address.clone(),
                        ingress: tn.network.spec.ingress,
                    }),
                    Err(e) => {
                        crate::swarm_net::release_unused(&d, &nets).await;
                        self.forget(&run.task.id);
                        return Err(e);
                    }
                }
            }
            attach(&mut req, &places);
            let made = d.create_for_swarm(&name, req).await;
            if made.is_err() {
                crate::swarm_net::release_unused(&d, &nets).await;
            }
            drop(nets);
            // Made (its files are its container's now) or failed (they go below).
            drop(prepared);
            let (id, _) = match made {
                Ok(made) => made,
                Err(e) => {
                    // No container holds the tmpfs: it goes now.
                    self.forget(&run.task.id);
                    return Err(e.0.message.clone());
                }
            };
            let c = d.find(&id).map_err(|e| e.0.message.clone())?;
            d.start(&c).await.map_err(|e| e.0.message.clone())?;
            // As swarmkit: a task with a health check is running (named, balanced to) only
            // once it is healthy.
            wait_healthy(&c).await?;
            if !run.networks.is_empty() {
                crate::swarm_net::program_started(&d, &c);
            }
            Ok(id)
        })
    }

    fn stop(
        &self,
        container_id: String,
        grace: Option<Duration>,
    ) -> BoxFut<'_, Result<(), String>> {
        Box::pin(async move {
            let d = self.daemon()?;
            let c = d.find(&container_id).map_err(|e| e.0.message.clone())?;
            tracing::debug!("swarm task container {container_id}: stopping (grace {grace:?})");
            match d.stop(&c, None, grace.map(|g| g.as_secs() as i64)).await {
                Ok(()) => Ok(()),
                Err(e) if e.0.status == 304 => Ok(()),
                Err(e) => Err(e.0.message.clone()),
            }
        })
    }

    fn logs(
        &self,
        task_id: String,
        options: LogOptions,
    ) -> BoxFut<'_, Result<tokio::sync::mpsc::Receiver<Vec<u8>>, String>> {
        Box::pin(async move {
            let d = self.daemon()?;
            let c = d
                .all()
                .into_iter()
                .find(|c| task_of(&c.rec()).is_some_and(|t| t == task_id))
                .ok_or_else(|| format!("task {task_id} has no container on this node"))?;
            let (kind, details, tty) = {
                let r = c.rec();
                let none = BTreeMap::new();
                let labels = r.config.labels.as_ref().unwrap_or(&none);
                let mut attrs = logs::detail_attrs(
                    &r.host_config.log_config.config,
                    labels,
                    r.config.env.as_deref().unwrap_or(&[]),
                );
                // The task's place in the swarm, which `service logs` prints before each line.
                for key in [NODE_ID, SERVICE_ID, TASK_ID] {
                    attrs.insert(
                        key.to_string(),
                        labels.get(key).cloned().unwrap_or_default(),
                    );
                }
                (
                    r.host_config.log_config.kind.clone(),
                    options.details.then(|| logs::format_details(&attrs)),
                    r.config.tty,
                )
            };
            if !logs::readable(&kind) {
                return Err("configured logging driver does not support reading".to_string());
            }
            let o = logs::Options {
                stdout: options.stdout,
                stderr: options.stderr,
                follow: options.follow,
                timestamps: options.timestamps,
                tail: options.tail,
                since: logs::bound(options.since),
                until: None,
                tty,
                details,
            };
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(logs::stream(c, o, tx));
            Ok(rx)
        })
    }

    fn remove(&self, container_id: String) -> BoxFut<'_, Result<(), String>> {
        Box::pin(async move {
            let d = self.daemon()?;
            let c = match d.find(&container_id) {
                Ok(c) => c,
                Err(_) => return Ok(()),
            };
            let task = task_of(&c.rec()).unwrap_or_default();
            d.remove(&c, true, true)
                .await
                .map_err(|e| e.0.message.clone())?;
            self.forget(&task);
            let nets = d.swarm_nets.lock().await;
            crate::swarm_net::release_unused(&d, &nets).await;
            Ok(())
        })
    }

    fn networks(&self, views: Vec<NetworkView>) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let Ok(d) = self.daemon() else { return };
            let mut nets = d.swarm_nets.lock().await;
            crate::swarm_net::apply(&d, &mut nets, views).await;
        })
    }

    fn attachments(&self) -> BoxFut<'_, Vec<String>> {
        Box::pin(async move {
            match self.daemon() {
                Ok(d) => crate::swarm_net::attachments(&d),
                Err(_) => Vec::new(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    /// A store with one local `reg/app:latest` of these digests.
    fn store(
        repo_digests: &[&str],
        manifest: &str,
    ) -> impl Fn(&str) -> Option<(Vec<String>, String)> {
        let rd: Vec<String> = repo_digests.iter().map(|s| s.to_string()).collect();
        let manifest = manifest.to_string();
        move |name: &str| {
            // `repo:tag@digest` is known by `repo@digest`, as the image store resolves it.
            let canonical = match name.split_once('@') {
                Some((n, d)) => format!("{}@{d}", n.split(':').next().unwrap_or(n)),
                None => name.to_string(),
            };
            let known = name == "reg/app:latest" || rd.contains(&canonical);
            known.then(|| (rd.clone(), manifest.clone()))
        }
    }

    #[test]
    fn the_pull_uses_the_services_registry_auth() {
        let mut cs = api::ContainerSpec::default();
        assert!(matches!(
            pull_credentials(&cs).unwrap(),
            berth_distribution::Credentials::None
        ));
        let auth = berth_distribution::AuthConfig {
            username: "testuser".into(),
            password: "s3cret-pass".into(),
            ..Default::default()
        }
        .encode();
        cs.pull_options = Some(api::PullOptions {
            registry_auth: auth,
        });
        match pull_credentials(&cs).unwrap() {
            berth_distribution::Credentials::Basic { username, password } => {
                assert_eq!(
                    (username.as_str(), password.as_str()),
                    ("testuser", "s3cret-pass")
                )
            }
            other => panic!("{other:?}"),
        }
        cs.pull_options = Some(api::PullOptions {
            registry_auth: "%%%".into(),
        });
        assert!(pull_credentials(&cs)
            .unwrap_err()
            .starts_with("invalid registry credentials of the service"));
    }

    /// A container record with these labels, made by the executor or not.
    fn record(managed: bool, task: &str) -> crate::container::Record {
        let mut r: crate::container::Record = serde_json::from_value(serde_json::json!({
            "id": "c1", "name": "/web.1.x", "created": "", "image": "busybox",
            "image_id": "sha256:00", "config": {}, "host_config": {}, "path": "sh",
            "args": [],
            "state": crate::container::StateRecord::default(),
        }))
        .unwrap();
        r.config.labels = Some(BTreeMap::from([(TASK_ID.to_string(), task.to_string())]));
        r.managed = managed;
        r
    }

    #[test]
    fn only_the_executors_containers_are_tasks_and_their_files_go_with_them() {
        assert_eq!(task_of(&record(true, "t1")).as_deref(), Some("t1"));
        // The label alone (set by a user) does not make a task.
        assert_eq!(task_of(&record(false, "t1")), None);
        let exec_root = std::env::temp_dir().join(format!("berth-exec-{}", std::process::id()));
        let dir = files_root(&exec_root).join("t1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0"), b"secret").unwrap();
        forget_removed(&exec_root, &record(false, "t1"));
        assert!(dir.join("0").exists());
        forget_removed(&exec_root, &record(true, "t1"));
        assert!(!dir.exists());
        // Nothing outside the files directory is touched for a made-up task id.
        forget_removed(&exec_root, &record(true, "../t1"));
        std::fs::remove_dir_all(&exec_root).unwrap();
    }

    #[test]
    fn a_pinned_digest_runs_only_the_image_that_has_it() {
        let pinned = format!("reg/app:latest@{NEW}");
        // The local tag is an older push of the repository: the pinned one is pulled.
        let old = store(&[&format!("reg/app@{OLD}")], "sha256:aa");
        assert_eq!(image_source(&pinned, &old), None);
        // Its manifest is the pinned one, or it was pushed elsewhere under that digest.
        let by_manifest = store(&[&format!("reg/app@{OLD}")], NEW);
        assert_eq!(
            image_source(&pinned, &by_manifest).as_deref(),
            Some("reg/app:latest")
        );
        let elsewhere = store(&[&format!("mirror/app@{NEW}")], "sha256:aa");
        assert_eq!(
            image_source(&pinned, &elsewhere).as_deref(),
            Some("reg/app:latest")
        );
        // Pulled before under that digest: run as pinned.
        let pulled = store(&[&format!("reg/app@{NEW}")], "sha256:aa");
        assert_eq!(
            image_source(&pinned, &pulled).as_deref(),
            Some(pinned.as_str())
        );
        // Built or loaded here (no registry origin): the local image runs.
        let local = store(&[], "sha256:aa");
        assert_eq!(
            image_source(&pinned, &local).as_deref(),
            Some("reg/app:latest")
        );
        // Nothing local: pull, pinned or not.
        let none = |_: &str| None;
        assert_eq!(image_source(&pinned, none), None);
        assert_eq!(image_source("reg/app:latest", none), None);
        assert_eq!(
            image_source("reg/app:latest", &old).as_deref(),
            Some("reg/app:latest")
        );
    }
}
