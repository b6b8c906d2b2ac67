//! A node's agent: keeps a session with the dispatcher (heartbeats, task states up,
//! assignments down) and makes the node's task containers match the assignments through the
//! executor: run what is assigned, stop what must stop, remove what is no longer assigned.

use crate::executor::{
    task_networks, BoxFut, ContainerState, Executor, TaskContainer, TaskFile, TaskRun,
};
use crate::proto::{LogSubscription, NetworkView, Payload, SessionRequest, SessionResponse};
use api::TaskState;
use berth_api::swarm as api;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The agent's way to its dispatcher (the RPC client in the daemon; in memory in tests).
pub trait Dispatcher: Send + Sync + 'static {
    fn session(&self, req: SessionRequest) -> BoxFut<'_, Result<SessionResponse, String>>;
    /// Log pieces for a subscription; `done` when the node has sent all it will. An error
    /// means the subscription is over.
    fn publish(&self, sub: String, data: Bytes, done: bool) -> BoxFut<'_, Result<(), String>>;
}

/// The largest batch of log pieces sent in one publish.
const LOG_BATCH: usize = 64 << 10;

/// How long a long poll waits for new assignments before it returns as a heartbeat.
const LONG_POLL: Duration = Duration::from_millis(1000);
/// How long a task on swarm networks keeps running after it was told to stop, while the
/// nodes take it out of their balancers.
const DRAIN: Duration = Duration::from_millis(500);
/// How often the swarm networks are applied again without a change.
const NETWORKS_RESYNC: Duration = Duration::from_secs(10);
/// How often the containers are compared with the assignments without another trigger.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Assigned {
    digest: String,
    tasks: BTreeMap<String, api::Task>,
    services: HashMap<String, String>,
    ports: HashMap<String, Vec<api::PortConfig>>,
    secrets: HashMap<String, Payload>,
    configs: HashMap<String, Payload>,
}

#[derive(Default)]
struct Inner {
    assigned: Assigned,
    /// The state last reported (or queued) per task.
    reported: HashMap<String, TaskState>,
    /// Task states not yet accepted by a dispatcher.
    pending: Vec<(String, api::TaskStatus)>,
    /// Tasks with a run, stop or remove under way.
    busy: HashSet<String>,
    /// Containers being removed (their task is gone from the assignments).
    removing: HashSet<String>,
    /// Tasks this process started (a container list taken during the start may lack them).
    started: HashSet<String>,
    /// The assignments came from a dispatcher at least once: until then nothing is removed.
    synced: bool,
    description_sent: bool,
    /// Sessions calls are numbered; assignments from a call older than those applied are
    /// stale (a long poll and an immediate call can answer out of order).
    calls: u64,
    applied_call: u64,
}

pub struct Agent<E: Executor + ?Sized, D: Dispatcher> {
    exec: Arc<E>,
    disp: Arc<D>,
    node_id: String,
    inner: Mutex<Inner>,
    wake: Notify,
    /// The role the cluster last gave this node (the daemon promotes or demotes on a change).
    role: watch::Sender<String>,
    /// The swarm networks as the dispatcher last described them (None until it has), with
    /// the description's number.
    networks: watch::Sender<(u64, Option<Vec<NetworkView>>)>,
    /// The number of the last description the executor applied: a task on swarm networks
    /// starts once the networks that came with it are in place.
    networks_done: AtomicU64,
    /// The log subscriptions being served, by id.
    logs: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

fn now() -> String {
    berth_api::timefmt::now()
}

fn status(
    state: TaskState,
    message: &str,
    err: &str,
    c: Option<&TaskContainer>,
) -> api::TaskStatus {
    api::TaskStatus {
        timestamp: now(),
        state,
        message: message.to_string(),
        err: err.to_string(),
        container_status: c.map(|c| api::ContainerStatus {
            container_id: c.container_id.clone(),
            pid: match c.state {
                ContainerState::Running { pid } => pid,
                _ => 0,
            },
            exit_code: match c.state {
                ContainerState::Exited { code, .. } => code,
                _ => 0,
            },
        }),
        ..Default::default()
    }
}

impl<E: Executor + ?Sized, D: Dispatcher> Agent<E, D> {
    pub fn new(exec: Arc<E>, disp: Arc<D>, node_id: String) -> Arc<Self> {
        Arc::new(Agent {
            exec,
            disp,
            node_id,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            role: watch::channel(String::new()).0,
            networks: watch::channel((0, None)).0,
            networks_done: AtomicU64::new(0),
            logs: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The role the dispatcher last reported for this node.
    pub fn role(&self) -> watch::Receiver<String> {
        self.role.subscribe()
    }

    /// Runs the session and the reconciliation until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let session = {
            let a = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = a.session_once(LONG_POLL) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        };
        // The networks are brought to each new description in turn, beside the tasks.
        let networks = {
            let a = self.clone();
            let mut rx = self.networks.subscribe();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let (seq, views) = rx.borrow_and_update().clone();
                    if let Some(views) = views {
                        a.exec.networks(views).await;
                    }
                    a.networks_done.store(seq, Ordering::SeqCst);
                    a.wake.notify_one();
                    // Also now and then without a change: containers restarted in place
                    // (a restart policy, a daemon restart) get their balancers back.
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep(NETWORKS_RESYNC) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        };
        loop {
            self.reconcile().await;
            if self.has_pending() {
                // States go up at once, not with the next long poll.
                let a = self.clone();
                tokio::spawn(async move { a.session_once(Duration::ZERO).await });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        session.abort();
        networks.abort();
        for (_, serving) in self.logs.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            serving.abort();
        }
    }

    /// Hands a new description of the swarm networks to the executor's loop.
    fn describe_networks(&self, views: Vec<NetworkView>) {
        self.networks.send_modify(|(seq, v)| {
            *seq += 1;
            *v = Some(views);
        });
    }

    /// Whether the executor has applied every network description sent to it.
    fn networks_in_place(&self) -> bool {
        self.networks_done.load(Ordering::SeqCst) >= self.networks.borrow().0
    }

    fn has_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// One dispatcher call; returns false when it failed (after a short pause).
    async fn session_once(self: &Arc<Self>, wait: Duration) -> bool {
        let log_subs = self
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let attachments = Some(self.exec.attachments().await);
        let (call, req) = {
            let mut g = self.lock();
            g.calls += 1;
            let req = SessionRequest {
                description: None,
                statuses: std::mem::take(&mut g.pending),
                known: g.assigned.digest.clone(),
                wait_ms: wait.as_millis() as u64,
                log_subs,
                attachments,
                data_addr: String::new(),
            };
            (g.calls, req)
        };
        let mut req = req;
        if !self.lock().description_sent {
            req.description = Some(self.exec.describe().await);
        }
        let sent = req.statuses.clone();
        let had_description = req.description.is_some();
        match self.disp.session(req).await {
            Ok(resp) => {
                let (fresh, changed) = {
                    let mut g = self.lock();
                    if had_description {
                        g.description_sent = true;
                    }
                    let fresh = call > g.applied_call;
                    if fresh && !resp.unchanged {
                        g.applied_call = call;
                    }
                    (
                        fresh,
                        fresh && !resp.unchanged && resp.digest != g.assigned.digest,
                    )
                };
                if fresh {
                    self.follow_log_subscriptions(&resp.logs);
                }
                if changed {
                    self.describe_networks(resp.networks);
                    let mut g = self.lock();
                    g.synced = true;
                    g.assigned = Assigned {
                        digest: resp.digest,
                        tasks: resp.tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
                        services: resp.services.into_iter().collect(),
                        ports: resp.ports.into_iter().collect(),
                        secrets: resp
                            .secrets
                            .into_iter()
                            .map(|p| (p.id.clone(), p))
                            .collect(),
                        configs: resp
                            .configs
                            .into_iter()
                            .map(|p| (p.id.clone(), p))
                            .collect(),
                    };
                    drop(g);
                    self.wake.notify_one();
                }
                self.role.send_if_modified(|r| {
                    if *r != resp.role && !resp.role.is_empty() {
                        *r = resp.role.clone();
                        true
                    } else {
                        false
                    }
                });
                true
            }
            Err(e) => {
                tracing::debug!("swarm agent: session: {e}");
                {
                    let mut g = self.lock();
                    if e.contains("is not a member of this swarm") {
                        // Removed from the cluster: its tasks run elsewhere now.
                        g.assigned = Assigned::default();
                        g.synced = true;
                        self.describe_networks(Vec::new());
                    }
                    // Nothing was accepted: the states go again with the next call.
                    let mut back = sent;
                    back.append(&mut g.pending);
                    g.pending = back;
                    g.description_sent = false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                false
            }
        }
    }

    /// Starts serving the log subscriptions that are new and stops those that ended.
    fn follow_log_subscriptions(self: &Arc<Self>, subs: &[LogSubscription]) {
        let mut serving = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        serving.retain(|id, handle| {
            let keep = subs.iter().any(|s| &s.id == id) && !handle.is_finished();
            if !keep {
                handle.abort();
            }
            keep
        });
        for sub in subs {
            if !serving.contains_key(&sub.id) {
                let a = self.clone();
                let task = tokio::spawn(a.serve_logs(sub.clone()));
                serving.insert(sub.id.clone(), task.abort_handle());
            }
        }
    }

    /// Sends the subscription's tasks' logs to the dispatcher in batches of whole pieces,
    /// then says it is done (without `follow`, once every log has been read).
    async fn serve_logs(self: Arc<Self>, sub: LogSubscription) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        for task in &sub.tasks {
            match self.exec.logs(task.clone(), sub.options.clone()).await {
                Ok(mut one) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some(piece) = one.recv().await {
                            if tx.send(piece).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) => tracing::debug!("swarm agent: logs of task {task}: {e}"),
            }
        }
        drop(tx);
        while let Some(mut batch) = rx.recv().await {
            while batch.len() < LOG_BATCH {
                match rx.try_recv() {
                    Ok(piece) => batch.extend_from_slice(&piece),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.disp.publish(sub.id.clone(), batch.into(), false).await {
                tracing::debug!("swarm agent: log subscription {}: {e}", sub.id);
                return;
            }
        }
        let _ = self.disp.publish(sub.id.clone(), Bytes::new(), true).await;
    }

    /// Queues a task state unless it was already reported (or would move the task back).
    fn report(&self, task: &str, st: api::TaskStatus) {
        let mut g = self.lock();
        if let Some(prev) = g.reported.get(task) {
            if *prev >= st.state {
                return;
            }
        }
        g.reported.insert(task.to_string(), st.state);
        g.pending.push((task.to_string(), st));
    }

    async fn reconcile(self: &Arc<Self>) {
        if !self.lock().synced {
            return;
        }
        let containers = self.exec.list().await;
        let by_task: HashMap<&str, &TaskContainer> =
            containers.iter().map(|c| (c.task_id.as_str(), c)).collect();
        let (tasks, services, ports, secrets, configs) = {
            let g = self.lock();
            (
                g.assigned.tasks.clone(),
                g.assigned.services.clone(),
                g.assigned.ports.clone(),
                g.assigned.secrets.clone(),
                g.assigned.configs.clone(),
            )
        };
        // Containers of tasks no longer assigned here go (a node that comes back after its
        // tasks moved away must not keep duplicates).
        for c in &containers {
            if !tasks.contains_key(&c.task_id) {
                let begin = self.lock().removing.insert(c.container_id.clone());
                if begin {
                    let a = self.clone();
                    let cid = c.container_id.clone();
                    let running = matches!(c.state, ContainerState::Running { .. });
                    tokio::spawn(async move {
                        if running {
                            let _ = a.exec.stop(cid.clone(), None).await;
                        }
                        if let Err(e) = a.exec.remove(cid.clone()).await {
                            tracing::warn!("swarm agent: removing container {cid}: {e}");
                        }
                        a.lock().removing.remove(&cid);
                    });
                }
            }
        }
        {
            // Forget what was reported for tasks that are gone.
            let mut g = self.lock();
            g.reported.retain(|id, _| tasks.contains_key(id));
        }
        for (id, t) in &tasks {
            if self.lock().busy.contains(id) {
                continue;
            }
            let c = by_task.get(id.as_str()).copied();
            let desired = t.desired_state;
            let current = t.status.state;
            let wants_run = desired <= TaskState::Running;
            match c {
                Some(c) => match &c.state {
                    ContainerState::Running { .. } if !wants_run => self.stop_task(t, c),
                    ContainerState::Running { .. } => {
                        self.report(id, status(TaskState::Running, "started", "", Some(c)))
                    }
                    ContainerState::Exited { code, error } => {
                        if *code == 0 && error.is_empty() {
                            if wants_run {
                                self.report(
                                    id,
                                    status(TaskState::Complete, "finished", "", Some(c)),
                                );
                            } else {
                                self.report(
                                    id,
                                    status(TaskState::Shutdown, "shutdown", "", Some(c)),
                                );
                            }
                        } else if !wants_run {
                            self.report(id, status(TaskState::Shutdown, "shutdown", "", Some(c)));
                        } else {
                            let err = if error.is_empty() {
                                format!("task: non-zero exit ({code})")
                            } else {
                                error.clone()
                            };
                            self.report(id, status(TaskState::Failed, "started", &err, Some(c)));
                        }
                        if desired == TaskState::Remove {
                            self.remove_task(id, c);
                        }
                    }
                    ContainerState::Created if wants_run => {
                        // Made but never started (the daemon died in between): the task failed.
                        if !self.lock().started.remove(id.as_str()) {
                            self.report(
                                id,
                                status(
                                    TaskState::Failed,
                                    "starting",
                                    "task container was not started",
                                    Some(c),
                                ),
                            );
                        }
                    }
                    ContainerState::Created => {
                        if !wants_run {
                            self.report(id, status(TaskState::Shutdown, "shutdown", "", Some(c)));
                            if desired == TaskState::Remove {
                                self.remove_task(id, c);
                            }
                        }
                    }
                },
                None => {
                    // A replacement told to wait (`ready`) starts once told to run.
                    if desired == TaskState::Running
                        && !current.is_terminal()
                        && current < TaskState::Starting
                    {
                        if !t.networks_attachments.is_empty() && !self.networks_in_place() {
                            // Next round, once its networks are (the executor wakes us).
                            continue;
                        }
                        let svc_name = services.get(&t.service_id).cloned().unwrap_or_default();
                        let networks = match task_networks(t, &svc_name) {
                            Ok(n) => n,
                            Err(e) => {
                                self.report(id, status(TaskState::Rejected, "preparing", &e, None));
                                continue;
                            }
                        };
                        let (secrets, configs) =
                            match (files(t, &secrets, true), files(t, &configs, false)) {
                                (Ok(s), Ok(c)) => (s, c),
                                (Err(e), _) | (_, Err(e)) => {
                                    self.report(
                                        id,
                                        status(TaskState::Rejected, "preparing", &e, None),
                                    );
                                    continue;
                                }
                            };
                        let run = TaskRun {
                            task: t.clone(),
                            service_name: svc_name,
                            node_id: self.node_id.clone(),
                            secrets,
                            configs,
                            host_ports: ports
                                .get(&t.service_id)
                                .map(|p| host_ports(p))
                                .unwrap_or_default(),
                            networks,
                        };
                        self.run_task(run);
                    } else if !wants_run && !current.is_terminal() {
                        self.report(id, status(TaskState::Shutdown, "shutdown", "", None));
                    } else if desired == TaskState::Running
                        && current >= TaskState::Starting
                        && !current.is_terminal()
                        && !self.lock().started.remove(id.as_str())
                    {
                        // Started once, now gone (removed behind the agent's back, or lost
                        // with a reboot): the task failed and is replaced.
                        self.report(
                            id,
                            status(
                                TaskState::Failed,
                                "started",
                                "task container not found",
                                None,
                            ),
                        );
                    }
                }
            }
        }
    }

    fn run_task(self: &Arc<Self>, run: TaskRun) {
        let id = run.task.id.clone();
        self.lock().busy.insert(id.clone());
        self.report(&id, status(TaskState::Preparing, "preparing", "", None));
        let a = self.clone();
        tokio::spawn(async move {
            a.report(&id, status(TaskState::Starting, "starting", "", None));
            match a.exec.run(run).await {
                Ok(_) => {
                    a.lock().started.insert(id.clone());
                }
                Err(e) => a.report(&id, status(TaskState::Failed, "starting", &e, None)),
            }
            a.lock().busy.remove(&id);
            a.wake.notify_one();
        });
    }

    fn stop_task(self: &Arc<Self>, t: &api::Task, c: &TaskContainer) {
        let id = t.id.clone();
        self.lock().busy.insert(id.clone());
        let grace = t
            .spec
            .container_spec
            .as_ref()
            .and_then(|s| s.stop_grace_period)
            .filter(|n| *n >= 0)
            .map(|n| Duration::from_nanos(n as u64));
        // A task on swarm networks has just left every node's names and balancers (the same
        // change that stops it): the other nodes get a moment to apply that first, so that no
        // new connection goes to a task that is going away.
        let drain = (!t.networks_attachments.is_empty()).then_some(DRAIN);
        let a = self.clone();
        let cid = c.container_id.clone();
        tokio::spawn(async move {
            if let Some(d) = drain {
                tokio::time::sleep(d).await;
            }
            if let Err(e) = a.exec.stop(cid, grace).await {
                tracing::warn!("swarm agent: stopping task {id}: {e}");
            }
            a.lock().busy.remove(&id);
            a.wake.notify_one();
        });
    }

    fn remove_task(self: &Arc<Self>, id: &str, c: &TaskContainer) {
        let begin = self.lock().removing.insert(c.container_id.clone());
        if !begin {
            return;
        }
        let a = self.clone();
        let cid = c.container_id.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = a.exec.remove(cid.clone()).await {
                tracing::warn!("swarm agent: removing task {id}: {e}");
            }
            a.lock().removing.remove(&cid);
        });
    }
}

/// The secret (or config) files of a task, with their content from the assignments; one
/// that did not come with them is an error (the task must not start without it).
fn files(
    t: &api::Task,
    payloads: &HashMap<String, Payload>,
    secrets: bool,
) -> Result<Vec<TaskFile>, String> {
    let Some(cs) = t.spec.container_spec.as_ref() else {
        return Ok(Vec::new());
    };
    let kind = if secrets { "secret" } else { "config" };
    let refs: Vec<(String, String, Option<api::FileTarget>)> = if secrets {
        cs.secrets
            .iter()
            .map(|r| (r.secret_id.clone(), r.secret_name.clone(), r.file.clone()))
            .collect()
    } else {
        cs.configs
            .iter()
            // A runtime config (a credential spec) is no file.
            .filter(|r| r.runtime.is_none() || r.file.is_some())
            .map(|r| (r.config_id.clone(), r.config_name.clone(), r.file.clone()))
            .collect()
    };
    refs.into_iter()
        .map(|(id, name, file)| {
            let p = payloads.get(&id).ok_or_else(|| {
                format!("unable to get {kind} from {kind} store: {kind} {id} not found")
            })?;
            let file = file.unwrap_or_default();
            let fname = if file.name.is_empty() {
                name.clone()
            } else {
                file.name.clone()
            };
            let target = if fname.starts_with('/') {
                fname
            } else if secrets {
                format!("/run/secrets/{fname}")
            } else {
                format!("/{fname}")
            };
            Ok(TaskFile {
                name,
                target,
                uid: if file.uid.is_empty() {
                    "0".into()
                } else {
                    file.uid
                },
                gid: if file.gid.is_empty() {
                    "0".into()
                } else {
                    file.gid
                },
                mode: if file.mode == 0 { 0o444 } else { file.mode },
                data: p.data.clone(),
            })
        })
        .collect()
}

/// A service's host-mode published ports: (target, published, protocol).
fn host_ports(ports: &[api::PortConfig]) -> Vec<(u32, u32, String)> {
    ports
        .iter()
        .filter(|p| p.publish_mode == "host")
        .map(|p| (p.target_port, p.published_port, p.protocol.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_without_its_payload_is_an_error() {
        let mut t = api::Task::default();
        t.spec.container_spec = Some(api::ContainerSpec {
            secrets: vec![api::SecretReference {
                file: Some(api::FileTarget {
                    name: "pw".into(),
                    mode: 0o400,
                    ..Default::default()
                }),
                secret_id: "s1".into(),
                secret_name: "db_pw".into(),
            }],
            ..Default::default()
        });
        let mut payloads = HashMap::new();
        assert_eq!(
            files(&t, &payloads, true).unwrap_err(),
            "unable to get secret from secret store: secret s1 not found"
        );
        payloads.insert(
            "s1".to_string(),
            Payload {
                id: "s1".into(),
                name: "db_pw".into(),
                data: b"hunter2".to_vec(),
            },
        );
        let got = files(&t, &payloads, true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].target.as_str(), got[0].mode, got[0].data.as_slice()),
            ("/run/secrets/pw", 0o400, b"hunter2".as_slice())
        );
        // The secrets' payloads are not the configs'.
        assert!(files(&t, &payloads, false).unwrap().is_empty());
    }
}
