//! The leader's control loop as a pure function of the replicated state: the orchestrators
//! (replicated, global, jobs; restart policies; replacing tasks of dead or drained nodes),
//! the rolling updater with rollback, the scheduler (filters and spread) and the task reaper.
//! One pass yields the commands that move the state towards the services' specs.

use crate::ids::new_id;
use crate::store::{Command, NodeRec, ServiceRec, State, TaskRec};
use api::{NodeState, TaskState};
use berth_api::swarm as api;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

/// Docker's defaults (api/defaults/service.go).
const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);
const DEFAULT_MONITOR: Duration = Duration::from_secs(5);
const DEFAULT_HISTORY: i64 = 5;

/// What the leader keeps between passes (lost on a leader change, as swarmkit's).
#[derive(Default)]
pub struct Memory {
    /// When the updater last finished a batch of a service (for `UpdateConfig.Delay`).
    batch_done: HashMap<String, SystemTime>,
    /// Services with a batch under way.
    batch_open: std::collections::HashSet<String>,
}

pub enum Mode {
    Replicated(u64),
    Global,
    ReplicatedJob { max_concurrent: u64, total: u64 },
    GlobalJob,
}

pub fn mode(s: &api::ServiceSpec) -> Mode {
    let m = &s.mode;
    if let Some(j) = &m.replicated_job {
        let total = j.total_completions.unwrap_or(1);
        let max = j.max_concurrent.unwrap_or(1).max(1);
        Mode::ReplicatedJob {
            max_concurrent: max,
            total,
        }
    } else if m.global_job.is_some() {
        Mode::GlobalJob
    } else if m.global.is_some() {
        Mode::Global
    } else {
        Mode::Replicated(m.replicated.as_ref().and_then(|r| r.replicas).unwrap_or(1))
    }
}

pub fn is_job(s: &api::ServiceSpec) -> bool {
    matches!(mode(s), Mode::ReplicatedJob { .. } | Mode::GlobalJob)
}

struct Restart {
    condition: String,
    delay: Duration,
    max_attempts: u64,
    window: Duration,
}

fn restart_policy(spec: &api::TaskSpec, job: bool) -> Restart {
    let p = spec.restart_policy.clone().unwrap_or_default();
    let condition = if p.condition.is_empty() {
        if job { "on-failure" } else { "any" }.to_string()
    } else {
        p.condition
    };
    Restart {
        condition,
        delay: p
            .delay
            .filter(|d| *d >= 0)
            .map(|d| Duration::from_nanos(d as u64))
            .unwrap_or(DEFAULT_RESTART_DELAY),
        max_attempts: p.max_attempts.unwrap_or(0),
        window: p
            .window
            .filter(|d| *d > 0)
            .map(|d| Duration::from_nanos(d as u64))
            .unwrap_or(Duration::ZERO),
    }
}

pub struct UpdateCfg {
    pub parallelism: u64,
    pub delay: Duration,
    pub failure_action: String,
    pub monitor: Duration,
    pub max_failure_ratio: f32,
    pub order: String,
}

pub fn update_cfg(s: &api::ServiceSpec, rollback: bool) -> UpdateCfg {
    // Without a config, swarmkit's defaults: one task at a time.
    let c = if rollback {
        s.rollback_config.clone()
    } else {
        s.update_config.clone()
    }
    .unwrap_or(api::UpdateConfig {
        parallelism: 1,
        ..Default::default()
    });
    let nanos = |n: i64| Duration::from_nanos(n.max(0) as u64);
    UpdateCfg {
        parallelism: c.parallelism,
        delay: nanos(c.delay),
        failure_action: if c.failure_action.is_empty() {
            "pause".to_string()
        } else {
            c.failure_action
        },
        monitor: if c.monitor > 0 {
            nanos(c.monitor)
        } else {
            DEFAULT_MONITOR
        },
        max_failure_ratio: c.max_failure_ratio,
        order: if c.order.is_empty() {
            "stop-first".to_string()
        } else {
            c.order
        },
    }
}

fn ts(s: &str) -> Option<SystemTime> {
    berth_api::timefmt::parse(s)
}

fn stamp(t: SystemTime) -> String {
    berth_api::timefmt::rfc3339_nano(t)
}

/// A task that still counts for its slot: wanted running, or told to stop but not stopped
/// yet (stop-first waits for it), unless its node is gone.
fn is_live(t: &TaskRec, nodes: &BTreeMap<String, NodeRec>) -> bool {
    if t.desired_state == TaskState::Remove {
        return false;
    }
    let ended = t.status.state.is_terminal();
    if !t.node_id.is_empty() {
        match nodes.get(&t.node_id) {
            // Tasks of dead or drained nodes, or of nodes that no longer meet the task's
            // constraints, are replaced without waiting for them.
            Some(n)
                if n.state == NodeState::Down
                    || n.spec.availability == "drain"
                    || !constraints_met(n, &placement(&t.spec).constraints) =>
            {
                return false
            }
            None => return false,
            _ => {}
        }
    }
    if t.desired_state <= TaskState::Running {
        !ended
    } else {
        !ended && !t.node_id.is_empty()
    }
}

fn wants_running(t: &TaskRec) -> bool {
    t.desired_state <= TaskState::Running
}

/// Whether node `n` satisfies the constraint expressions (`key==value`, `key!=value`).
pub fn constraints_met(n: &NodeRec, constraints: &[String]) -> bool {
    constraints.iter().all(|c| {
        let (key, want, eq) = if let Some((k, v)) = c.split_once("!=") {
            (k.trim(), v.trim(), false)
        } else if let Some((k, v)) = c.split_once("==") {
            (k.trim(), v.trim(), true)
        } else {
            return false;
        };
        let have: Option<String> = match key.to_ascii_lowercase().as_str() {
            "node.id" => Some(n.id.clone()),
            "node.hostname" => Some(n.description.hostname.clone()),
            "node.role" => Some(n.spec.role.clone()),
            "node.ip" => Some(n.addr.clone()),
            "node.platform.os" => Some(n.description.platform.os.clone()),
            "node.platform.arch" => Some(n.description.platform.architecture.clone()),
            _ => {
                if let Some(l) = key.strip_prefix("node.labels.") {
                    n.spec.labels.get(l).cloned()
                } else if let Some(l) = key.strip_prefix("engine.labels.") {
                    n.description.engine.labels.get(l).cloned()
                } else {
                    None
                }
            }
        };
        let matches = match have {
            // Hostnames and roles compare without case, as swarmkit's.
            Some(h) => h.eq_ignore_ascii_case(want),
            None => false,
        };
        matches == eq
    })
}

fn placement(spec: &api::TaskSpec) -> api::Placement {
    spec.placement.clone().unwrap_or_default()
}

/// Nodes a task of this spec may run on (readiness, availability, constraints).
fn eligible<'a>(state: &'a State, spec: &api::TaskSpec) -> Vec<&'a NodeRec> {
    let p = placement(spec);
    state
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Ready && n.spec.availability == "active")
        .filter(|n| constraints_met(n, &p.constraints))
        .collect()
}

fn new_task(s: &ServiceRec, slot: u64, node: &str, now: SystemTime) -> TaskRec {
    let t = stamp(now);
    TaskRec {
        id: new_id(),
        version: 0,
        created_at: t.clone(),
        updated_at: t.clone(),
        service_id: s.id.clone(),
        slot,
        node_id: node.to_string(),
        spec: s.spec.task_template.clone(),
        spec_version: s.spec_version,
        status: api::TaskStatus {
            timestamp: t,
            state: if node.is_empty() {
                TaskState::Pending
            } else {
                TaskState::Assigned
            },
            message: if node.is_empty() {
                "pending task scheduling".to_string()
            } else {
                "scheduler assigned task to node".to_string()
            },
            ..Default::default()
        },
        desired_state: TaskState::Running,
        job_iteration: if is_job(&s.spec) {
            Some(s.job_iteration)
        } else {
            None
        },
        restarts: Vec::new(),
        addresses: Default::default(),
    }
}

/// `berth service rebalance` (beyond Docker, which only spreads new tasks): the running tasks
/// of a replicated service to move so that eligible nodes differ by at most one task, each
/// from the most loaded node; returned as the changed tasks (the old ones told to shut down,
/// new pending ones in their slots for the scheduler, which prefers the least loaded nodes).
pub fn rebalance(
    state: &State,
    service: &ServiceRec,
    now: SystemTime,
) -> Result<Vec<TaskRec>, String> {
    if !matches!(mode(&service.spec), Mode::Replicated(_)) {
        return Err(format!(
            "service {} is not a replicated service: only replicated services can be rebalanced",
            service.spec.name
        ));
    }
    // A service still converging (tasks starting, or stopping) is left alone: its counts
    // would be wrong, and asking again once it runs gives the right moves.
    let settling = state.tasks.values().any(|t| {
        t.service_id == service.id
            && ((wants_running(t) && t.status.state < TaskState::Running)
                || (!wants_running(t) && is_live(t, &state.nodes)))
    });
    if settling {
        return Ok(Vec::new());
    }
    let mut load: BTreeMap<String, Vec<&TaskRec>> = eligible(state, &service.spec.task_template)
        .into_iter()
        .map(|n| (n.id.clone(), Vec::new()))
        .collect();
    for t in state.tasks.values() {
        if t.service_id == service.id
            && wants_running(t)
            && t.status.state == TaskState::Running
            && is_live(t, &state.nodes)
        {
            if let Some(on) = load.get_mut(&t.node_id) {
                on.push(t);
            }
        }
    }
    let mut out = Vec::new();
    loop {
        let most = load
            .iter()
            .max_by_key(|(id, ts)| (ts.len(), std::cmp::Reverse((*id).clone())));
        let least = load.iter().min_by_key(|(id, ts)| (ts.len(), (*id).clone()));
        let (Some((most, m)), Some((least, l))) = (most, least) else {
            break;
        };
        if m.len() <= l.len() + 1 {
            break;
        }
        let (most, least) = (most.clone(), least.clone());
        let Some(t) = load.get_mut(&most).and_then(|ts| ts.pop()) else {
            break;
        };
        let mut old = t.clone();
        old.desired_state = TaskState::Shutdown;
        old.updated_at = stamp(now);
        out.push(new_task(service, t.slot, "", now));
        out.push(old);
        // The count moves with it (the scheduler's choice of node is its own).
        if let Some(ts) = load.get_mut(&least) {
            ts.push(t);
        }
    }
    Ok(out)
}

struct Pass<'a> {
    state: &'a State,
    now: SystemTime,
    put: BTreeMap<String, TaskRec>,
    remove: Vec<String>,
    other: Vec<Command>,
}

impl<'a> Pass<'a> {
    /// The task as this pass left it.
    fn task(&self, id: &str) -> Option<&TaskRec> {
        self.put.get(id).or_else(|| self.state.tasks.get(id))
    }

    fn shut_down(&mut self, t: &TaskRec, why: &str) {
        let mut t = self.task(&t.id).cloned().unwrap_or_else(|| t.clone());
        if t.desired_state == TaskState::Shutdown || t.desired_state == TaskState::Remove {
            return;
        }
        t.desired_state = TaskState::Shutdown;
        if t.node_id.is_empty() || t.status.state == TaskState::Pending {
            // Never placed: it ends here.
            t.status.state = TaskState::Shutdown;
            t.status.message = why.to_string();
            t.status.timestamp = stamp(self.now);
        }
        t.updated_at = stamp(self.now);
        self.put.insert(t.id.clone(), t);
    }

    fn add(&mut self, t: TaskRec) {
        self.put.insert(t.id.clone(), t);
    }

    /// The tasks of a service as this pass sees them.
    fn tasks_of(&self, service: &str) -> Vec<TaskRec> {
        let mut v: Vec<TaskRec> = self
            .state
            .tasks
            .values()
            .filter(|t| t.service_id == service)
            .map(|t| self.put.get(&t.id).cloned().unwrap_or_else(|| t.clone()))
            .collect();
        v.extend(
            self.put
                .values()
                .filter(|t| t.service_id == service && !self.state.tasks.contains_key(&t.id))
                .cloned(),
        );
        v
    }
}

/// One pass of the leader: the commands to propose (empty when nothing is to be done).
pub fn pass(state: &State, mem: &mut Memory, now: SystemTime) -> Vec<Command> {
    let mut p = Pass {
        state,
        now,
        put: BTreeMap::new(),
        remove: Vec::new(),
        other: Vec::new(),
    };
    for s in state.services.values() {
        match mode(&s.spec) {
            Mode::Replicated(n) => replicated(&mut p, mem, s, n),
            Mode::Global => global(&mut p, mem, s, false),
            Mode::ReplicatedJob {
                max_concurrent,
                total,
            } => replicated_job(&mut p, s, max_concurrent, total),
            Mode::GlobalJob => global(&mut p, mem, s, true),
        }
    }
    schedule(&mut p);
    reap(&mut p);
    let mut out = Vec::new();
    if !p.put.is_empty() || !p.remove.is_empty() {
        out.push(Command::Tasks {
            put: p.put.into_values().collect(),
            remove: p.remove,
        });
    }
    out.extend(p.other);
    out
}

/// Whether a task that ended should be replaced, and from when on.
/// The restarts recorded on `t` that fall within `window` (all of them for a zero window).
fn restarts_in_window(t: &TaskRec, window: Duration, now: SystemTime) -> Vec<String> {
    let since = if window.is_zero() {
        SystemTime::UNIX_EPOCH
    } else {
        now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH)
    };
    t.restarts
        .iter()
        .filter(|r| ts(r).is_some_and(|x| x >= since))
        .cloned()
        .collect()
}

/// The task that replaces `ended` in its place, carrying its restart history (a task lost
/// with its node is no restart).
fn successor(p: &Pass, s: &ServiceRec, ended: &TaskRec, node: &str) -> TaskRec {
    let mut t = new_task(s, ended.slot, node, p.now);
    let policy = restart_policy(&s.spec.task_template, is_job(&s.spec));
    let mut r = restarts_in_window(ended, policy.window, p.now);
    if ended.status.state.is_terminal() && ended.status.state != TaskState::Orphaned {
        r.push(stamp(p.now));
    }
    t.restarts = r;
    t
}

fn restart_due(p: &Pass, s: &ServiceRec, ended: &TaskRec) -> Option<SystemTime> {
    let policy = restart_policy(&s.spec.task_template, is_job(&s.spec));
    let failed = matches!(ended.status.state, TaskState::Failed | TaskState::Rejected);
    let node_gone = p
        .state
        .nodes
        .get(&ended.node_id)
        .is_none_or(|n| n.state == NodeState::Down || n.spec.availability == "drain");
    if !node_gone {
        match policy.condition.as_str() {
            "none" => return None,
            "on-failure" if !failed => return None,
            _ => {}
        }
        if policy.max_attempts > 0 {
            let attempts = restarts_in_window(ended, policy.window, p.now).len() as u64;
            if attempts >= policy.max_attempts {
                return None;
            }
        }
    }
    // A task lost with its node (or drained away) is replaced at once: it did not fail.
    if node_gone || ended.status.state == TaskState::Orphaned {
        return Some(p.now);
    }
    let end = ts(&ended.status.timestamp).unwrap_or(p.now);
    Some(end + policy.delay)
}

/// Replacements waiting (desired `ready`) in a place whose old task has ended are told to run.
fn promote_ready(p: &mut Pass, s: &ServiceRec) {
    let tasks = p.tasks_of(&s.id);
    let nodes = &p.state.nodes;
    for t in tasks.iter().filter(|t| t.desired_state == TaskState::Ready) {
        let blocked = tasks.iter().any(|o| {
            o.id != t.id
                && o.slot == t.slot
                && (o.slot != 0 || o.node_id == t.node_id)
                && o.desired_state != TaskState::Ready
                && is_live(o, nodes)
        });
        if !blocked {
            let mut t = t.clone();
            t.desired_state = TaskState::Running;
            t.updated_at = stamp(p.now);
            p.put.insert(t.id.clone(), t);
        }
    }
}

fn replicated(p: &mut Pass, mem: &mut Memory, s: &ServiceRec, replicas: u64) {
    promote_ready(p, s);
    let tasks = p.tasks_of(&s.id);
    let nodes = &p.state.nodes;
    let mut slots: BTreeMap<u64, Vec<TaskRec>> = BTreeMap::new();
    for t in &tasks {
        slots.entry(t.slot).or_default().push(t.clone());
    }
    // A slot is occupied while one of its tasks is wanted running or still stopping.
    let mut occupied: Vec<u64> = slots
        .iter()
        .filter(|(_, ts)| ts.iter().any(|t| wants_running(t) || is_live(t, nodes)))
        .map(|(k, _)| *k)
        .collect();
    // Scale down: the slots beyond the count, from the most loaded nodes first.
    if occupied.len() as u64 > replicas {
        let node_of = |slot: &u64| -> String {
            slots[slot]
                .iter()
                .find(|t| is_live(t, nodes))
                .map(|t| t.node_id.clone())
                .unwrap_or_default()
        };
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for slot in &occupied {
            *per_node.entry(node_of(slot)).or_default() += 1;
        }
        let mut order = occupied.clone();
        order.sort_by_key(|slot| {
            let live = slots[slot].iter().any(|t| is_live(t, nodes));
            (
                live,
                std::cmp::Reverse(per_node.get(&node_of(slot)).copied().unwrap_or(0)),
                std::cmp::Reverse(*slot),
            )
        });
        let excess = occupied.len() - replicas as usize;
        for slot in order.into_iter().take(excess) {
            for t in slots[&slot].clone() {
                p.shut_down(&t, "shutdown by scale down");
            }
            occupied.retain(|x| *x != slot);
        }
    }
    // Scale up: the lowest free slot numbers.
    let mut next = 1;
    while (occupied.len() as u64) < replicas {
        while occupied.contains(&next) {
            next += 1;
        }
        occupied.push(next);
    }
    occupied.sort_unstable();
    for slot in occupied {
        let history = slots.get(&slot).cloned().unwrap_or_default();
        if history.iter().any(|t| is_live(t, nodes)) {
            continue;
        }
        // The slot's task ended (or was lost with its node): replace it when the restart
        // policy allows; a slot without a wanted task gets its first one.
        let last = history
            .iter()
            .filter(|t| wants_running(t))
            .max_by(|a, b| a.created_at.cmp(&b.created_at));
        match last {
            None => p.add(new_task(s, slot, "", p.now)),
            Some(t) => {
                if restart_due(p, s, t).is_some_and(|d| d <= p.now) {
                    p.shut_down(t, "task replaced");
                    let next = successor(p, s, t, "");
                    p.add(next);
                }
            }
        }
    }
    rolling_update(p, mem, s);
}

fn global(p: &mut Pass, mem: &mut Memory, s: &ServiceRec, job: bool) {
    promote_ready(p, s);
    let tasks = p.tasks_of(&s.id);
    let eligible: Vec<String> = eligible(p.state, &s.spec.task_template)
        .into_iter()
        .map(|n| n.id.clone())
        .collect();
    // A paused node keeps its tasks (it only gets no new ones); a drained, dead or no longer
    // matching one loses them.
    let constraints = placement(&s.spec.task_template).constraints;
    let keep: Vec<String> = p
        .state
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Ready && n.spec.availability != "drain")
        .filter(|n| constraints_met(n, &constraints))
        .map(|n| n.id.clone())
        .collect();
    let nodes = &p.state.nodes;
    let mut by_node: BTreeMap<String, Vec<TaskRec>> = BTreeMap::new();
    for t in &tasks {
        by_node
            .entry(t.node_id.clone())
            .or_default()
            .push(t.clone());
    }
    for (node, ts) in &by_node {
        for t in ts.iter().filter(|t| wants_running(t)) {
            if !keep.contains(node) {
                p.shut_down(t, "node is not eligible");
            } else if job && t.job_iteration != Some(s.job_iteration) {
                p.shut_down(t, "job iteration replaced");
            }
        }
    }
    for node in &eligible {
        let history: Vec<TaskRec> = by_node
            .get(node)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !job || t.job_iteration == Some(s.job_iteration))
            .collect();
        if history.iter().any(|t| is_live(t, nodes)) {
            continue;
        }
        let last = history
            .iter()
            .filter(|t| wants_running(t))
            .max_by(|a, b| a.created_at.cmp(&b.created_at));
        match last {
            None => {
                let done = job
                    && history
                        .iter()
                        .any(|t| t.status.state == TaskState::Complete);
                if !done {
                    p.add(new_task(s, 0, node, p.now));
                }
            }
            Some(t) if job && t.status.state == TaskState::Complete => {}
            Some(t) => {
                if restart_due(p, s, t).is_some_and(|d| d <= p.now) {
                    p.shut_down(t, "task replaced");
                    let next = successor(p, s, t, node);
                    p.add(next);
                }
            }
        }
    }
    if !job {
        rolling_update(p, mem, s);
    }
}

fn replicated_job(p: &mut Pass, s: &ServiceRec, max_concurrent: u64, total: u64) {
    let all = p.tasks_of(&s.id);
    let nodes = &p.state.nodes;
    // Tasks of an earlier iteration of the job stop.
    for t in all
        .iter()
        .filter(|t| t.job_iteration != Some(s.job_iteration) && wants_running(t))
    {
        p.shut_down(t, "job iteration replaced");
    }
    let mut by_slot: BTreeMap<u64, Vec<TaskRec>> = BTreeMap::new();
    for t in all
        .iter()
        .filter(|t| t.job_iteration == Some(s.job_iteration))
    {
        by_slot.entry(t.slot).or_default().push(t.clone());
    }
    let done = by_slot
        .values()
        .filter(|h| h.iter().any(|t| t.status.state == TaskState::Complete))
        .count() as u64;
    // Each slot that is not done is running, waiting for its restart delay, due a retry, or
    // failed for good (the restart policy refuses): all of them count against the total.
    let mut active = 0u64;
    let mut retry = Vec::new();
    for (slot, hist) in &by_slot {
        if hist.iter().any(|t| t.status.state == TaskState::Complete) {
            continue;
        }
        if hist.iter().any(|t| is_live(t, nodes)) {
            active += 1;
            continue;
        }
        let last = hist
            .iter()
            .filter(|t| wants_running(t))
            .max_by(|a, b| a.created_at.cmp(&b.created_at));
        if let Some(last) = last {
            if restart_due(p, s, last).is_some_and(|d| d <= p.now) {
                retry.push((*slot, last.clone()));
            }
        }
    }
    for (_, last) in retry {
        if active >= max_concurrent {
            break;
        }
        p.shut_down(&last, "task replaced");
        let next = successor(p, s, &last, "");
        p.add(next);
        active += 1;
    }
    let mut slots = by_slot.len() as u64 - done;
    // Job slots count from 0, as swarmkit's (the docker CLI's job progress reads them so).
    let mut next = 0;
    while active < max_concurrent && done + slots < total {
        while by_slot.contains_key(&next) {
            next += 1;
        }
        p.add(new_task(s, next, "", p.now));
        by_slot.insert(next, Vec::new());
        slots += 1;
        active += 1;
    }
}

/// Rolling update (and rollback) of a service's out-of-date tasks, batch by batch.
fn rolling_update(p: &mut Pass, mem: &mut Memory, s: &ServiceRec) {
    let Some(us) = s.update_status.as_ref() else {
        return;
    };
    let rollback = us.state.starts_with("rollback");
    if !(us.state == "updating" || us.state == "rollback_started") {
        return;
    }
    let cfg = update_cfg(&s.spec, rollback);
    let nodes = &p.state.nodes;
    let tasks = p.tasks_of(&s.id);
    let live: Vec<&TaskRec> = tasks.iter().filter(|t| is_live(t, nodes)).collect();
    let fresh: Vec<&TaskRec> = tasks
        .iter()
        .filter(|t| t.spec_version == s.spec_version)
        .collect();
    // Out-of-date tasks whose slot (or node) has no up-to-date task under way yet.
    let same_place =
        |a: &TaskRec, b: &TaskRec| a.slot == b.slot && (a.slot != 0 || a.node_id == b.node_id);
    let old: Vec<&TaskRec> = live
        .iter()
        .copied()
        .filter(|t| t.spec_version != s.spec_version && wants_running(t))
        .filter(|t| {
            !fresh
                .iter()
                .any(|f| same_place(f, t) && wants_running(f) && is_live(f, nodes))
        })
        .collect();
    // Failures of updated tasks within the monitor window.
    let failed: Vec<&TaskRec> = fresh
        .iter()
        .copied()
        .filter(|t| matches!(t.status.state, TaskState::Failed | TaskState::Rejected))
        // Failures since this update began count (a task failing late in its start does too).
        .filter(|t| match us.started_at.as_deref().and_then(ts) {
            Some(start) => ts(&t.status.timestamp).is_some_and(|f| f >= start),
            None => true,
        })
        .collect();
    let updated = fresh.len().max(1) as f64;
    if !failed.is_empty() && failed.len() as f64 / updated > f64::from(cfg.max_failure_ratio) {
        let task = failed[0];
        let what = if rollback { "rollback" } else { "update" };
        match cfg.failure_action.as_str() {
            "rollback" if !rollback => {
                p.other.push(Command::ServiceStatus {
                    id: s.id.clone(),
                    version: s.version,
                    update_status: Some(api::UpdateStatus {
                        state: "rollback_started".to_string(),
                        started_at: Some(stamp(p.now)),
                        message: format!(
                            "update rolled back due to failure or early termination of task {}",
                            task.id
                        ),
                        ..Default::default()
                    }),
                    roll_back: true,
                    now: stamp(p.now),
                });
                return;
            }
            "continue" => {}
            _ => {
                p.other.push(Command::ServiceStatus {
                    id: s.id.clone(),
                    version: s.version,
                    update_status: Some(api::UpdateStatus {
                        state: if rollback {
                            "rollback_paused"
                        } else {
                            "paused"
                        }
                        .to_string(),
                        started_at: us.started_at.clone(),
                        message: format!(
                            "{what} paused due to failure or early termination of task {}",
                            task.id
                        ),
                        ..Default::default()
                    }),
                    roll_back: false,
                    now: stamp(p.now),
                });
                return;
            }
        }
    }
    // Updated tasks not yet running (or running for less than the monitor period) hold a
    // batch open.
    // Places (slots, or nodes of global services) with an update under way: an old task
    // still stopping or an up-to-date one not running yet.
    let mut busy: std::collections::BTreeSet<(u64, String)> = std::collections::BTreeSet::new();
    let place = |t: &TaskRec| {
        (
            t.slot,
            if t.slot == 0 {
                t.node_id.clone()
            } else {
                String::new()
            },
        )
    };
    for t in fresh
        .iter()
        .filter(|t| wants_running(t) && is_live(t, nodes))
        .filter(|t| t.status.state != TaskState::Running)
    {
        busy.insert(place(t));
    }
    for t in live
        .iter()
        .filter(|t| t.spec_version != s.spec_version && !wants_running(t))
    {
        busy.insert(place(t));
    }
    let in_flight = busy.len() as u64;
    if in_flight > 0 {
        mem.batch_open.insert(s.id.clone());
    } else if mem.batch_open.remove(&s.id) {
        mem.batch_done.insert(s.id.clone(), p.now);
    }
    // start-first: old tasks whose slot has a running up-to-date task go.
    if cfg.order == "start-first" {
        for t in tasks
            .iter()
            .filter(|t| t.spec_version != s.spec_version && is_live(t, nodes))
        {
            let replaced = fresh
                .iter()
                .any(|n| same_place(n, t) && n.status.state == TaskState::Running);
            if replaced {
                p.shut_down(t, "shutdown for update");
            }
        }
    }
    let settled = fresh
        .iter()
        .filter(|t| wants_running(t) && is_live(t, nodes))
        .all(|t| ts(&t.status.timestamp).is_some_and(|r| r + cfg.monitor <= p.now));
    if old.is_empty() {
        if in_flight == 0 && settled {
            p.other.push(Command::ServiceStatus {
                id: s.id.clone(),
                version: s.version,
                update_status: Some(api::UpdateStatus {
                    state: if rollback {
                        "rollback_completed"
                    } else {
                        "completed"
                    }
                    .to_string(),
                    started_at: us.started_at.clone(),
                    completed_at: Some(stamp(p.now)),
                    message: if rollback {
                        "rollback completed".to_string()
                    } else {
                        "update completed".to_string()
                    },
                }),
                roll_back: false,
                now: stamp(p.now),
            });
            mem.batch_done.remove(&s.id);
            mem.batch_open.remove(&s.id);
        }
        return;
    }
    let parallel = if cfg.parallelism == 0 {
        old.len() as u64
    } else {
        cfg.parallelism
    };
    if in_flight >= parallel {
        return;
    }
    if in_flight == 0 {
        if let Some(done) = mem.batch_done.get(&s.id) {
            if *done + cfg.delay > p.now {
                return;
            }
        }
    }
    let room = (parallel - in_flight) as usize;
    for t in old.into_iter().take(room) {
        if cfg.order == "start-first" {
            // The new task first; the old one is shut down once the new one runs.
            p.add(new_task(
                s,
                t.slot,
                if t.slot == 0 { &t.node_id } else { "" },
                p.now,
            ));
        } else {
            // The old task stops first; its replacement holds the slot, ready, and is told
            // to run once the old one has ended.
            p.shut_down(t, "shutdown for update");
            let mut next = new_task(s, t.slot, if t.slot == 0 { &t.node_id } else { "" }, p.now);
            next.desired_state = TaskState::Ready;
            p.add(next);
        }
        mem.batch_open.insert(s.id.clone());
    }
}

/// Places pending tasks on nodes: readiness and availability, constraints, max replicas per
/// node, host-mode port clashes and reservations; then spread by the placement preferences,
/// the node's count of this service's tasks and its count of all tasks.
fn schedule(p: &mut Pass) {
    let pending: Vec<TaskRec> = {
        let mut v: Vec<TaskRec> = p
            .state
            .tasks
            .values()
            .map(|t| p.put.get(&t.id).cloned().unwrap_or_else(|| t.clone()))
            .chain(
                p.put
                    .values()
                    .filter(|t| !p.state.tasks.contains_key(&t.id))
                    .cloned(),
            )
            .filter(|t| {
                t.status.state == TaskState::Pending && t.node_id.is_empty() && wants_running(t)
            })
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.slot.cmp(&b.slot)));
        v
    };
    if pending.is_empty() {
        return;
    }
    // Live tasks per node (all services) and per (node, service), updated as tasks are placed.
    let nodes = &p.state.nodes;
    let mut load: HashMap<String, usize> = HashMap::new();
    let mut per_service: HashMap<(String, String), usize> = HashMap::new();
    let mut host_ports: HashMap<String, Vec<(u32, String)>> = HashMap::new();
    let mut reserved: HashMap<String, (i64, i64)> = HashMap::new();
    let all: Vec<TaskRec> = p
        .state
        .tasks
        .values()
        .map(|t| p.put.get(&t.id).cloned().unwrap_or_else(|| t.clone()))
        .collect();
    for t in all
        .iter()
        .filter(|t| !t.node_id.is_empty() && is_live(t, nodes))
    {
        // A task told to stop no longer counts for spreading (its replacement may take its
        // node, as in Docker), but holds its host ports and reservations until it has ended.
        if wants_running(t) {
            *load.entry(t.node_id.clone()).or_default() += 1;
            *per_service
                .entry((t.node_id.clone(), t.service_id.clone()))
                .or_default() += 1;
        }
        if let Some(s) = p.state.services.get(&t.service_id) {
            for port in s.ports.iter().filter(|x| x.publish_mode == "host") {
                host_ports
                    .entry(t.node_id.clone())
                    .or_default()
                    .push((port.published_port, port.protocol.clone()));
            }
        }
        let (c, m) = reservation(&t.spec);
        let e = reserved.entry(t.node_id.clone()).or_default();
        e.0 += c;
        e.1 += m;
    }
    for mut t in pending {
        let Some(s) = p.state.services.get(&t.service_id) else {
            continue;
        };
        let pl = placement(&t.spec);
        let my_ports: Vec<(u32, String)> = s
            .ports
            .iter()
            .filter(|x| x.publish_mode == "host" && x.published_port != 0)
            .map(|x| (x.published_port, x.protocol.clone()))
            .collect();
        let (need_cpu, need_mem) = reservation(&t.spec);
        let ready: Vec<&NodeRec> = nodes
            .values()
            .filter(|n| n.state == NodeState::Ready && n.spec.availability == "active")
            .collect();
        let mut reasons: Vec<&str> = Vec::new();
        let candidates: Vec<&NodeRec> = ready
            .iter()
            .copied()
            .filter(|n| {
                if !constraints_met(n, &pl.constraints) {
                    reasons.push("scheduling constraints not satisfied");
                    return false;
                }
                if pl.max_replicas > 0
                    && per_service
                        .get(&(n.id.clone(), s.id.clone()))
                        .copied()
                        .unwrap_or(0) as u64
                        >= pl.max_replicas
                {
                    reasons.push("max replicas per node limit exceed");
                    return false;
                }
                let used = host_ports.get(&n.id);
                if my_ports
                    .iter()
                    .any(|mp| used.is_some_and(|u| u.contains(mp)))
                {
                    reasons.push("host-mode port already in use");
                    return false;
                }
                let r = reserved.get(&n.id).copied().unwrap_or_default();
                let res = &n.description.resources;
                if (need_cpu > 0 && r.0 + need_cpu > res.nano_cpus)
                    || (need_mem > 0 && r.1 + need_mem > res.memory_bytes)
                {
                    reasons.push("insufficient resources");
                    return false;
                }
                true
            })
            .collect();
        if candidates.is_empty() {
            let msg = if ready.is_empty() {
                "no suitable node (no ready nodes)".to_string()
            } else {
                let mut r = reasons.clone();
                r.sort_unstable();
                r.dedup();
                format!(
                    "no suitable node ({} on {} node{})",
                    r.join("; "),
                    ready.len(),
                    if ready.len() == 1 { "" } else { "s" }
                )
            };
            if t.status.err != msg {
                t.status.err = msg;
                t.status.message = "pending task scheduling".to_string();
                t.status.timestamp = stamp(p.now);
                p.put.insert(t.id.clone(), t);
            }
            continue;
        }
        // Placement preferences: the least used value of each spread label first.
        let spread_keys: Vec<String> = pl
            .preferences
            .iter()
            .filter_map(|x| x.spread.as_ref().map(|s| s.spread_descriptor.clone()))
            .collect();
        let label_of = |n: &NodeRec, key: &str| -> String {
            if let Some(l) = key.strip_prefix("node.labels.") {
                n.spec.labels.get(l).cloned().unwrap_or_default()
            } else if let Some(l) = key.strip_prefix("engine.labels.") {
                n.description
                    .engine
                    .labels
                    .get(l)
                    .cloned()
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut group_load: Vec<HashMap<String, usize>> = Vec::new();
        for key in &spread_keys {
            let mut g: HashMap<String, usize> = HashMap::new();
            for n in nodes.values() {
                let c = per_service
                    .get(&(n.id.clone(), s.id.clone()))
                    .copied()
                    .unwrap_or(0);
                *g.entry(label_of(n, key)).or_default() += c;
            }
            group_load.push(g);
        }
        let best = candidates
            .iter()
            .min_by_key(|n| {
                let groups: Vec<usize> = spread_keys
                    .iter()
                    .zip(&group_load)
                    .map(|(k, g)| g.get(&label_of(n, k)).copied().unwrap_or(0))
                    .collect();
                (
                    groups,
                    per_service
                        .get(&(n.id.clone(), s.id.clone()))
                        .copied()
                        .unwrap_or(0),
                    load.get(&n.id).copied().unwrap_or(0),
                    n.id.clone(),
                )
            })
            .map(|n| n.id.clone());
        if let Some(node) = best {
            *load.entry(node.clone()).or_default() += 1;
            *per_service.entry((node.clone(), s.id.clone())).or_default() += 1;
            host_ports.entry(node.clone()).or_default().extend(my_ports);
            let e = reserved.entry(node.clone()).or_default();
            e.0 += need_cpu;
            e.1 += need_mem;
            t.node_id = node;
            t.status.state = TaskState::Assigned;
            t.status.message = "scheduler assigned task to node".to_string();
            t.status.err = String::new();
            t.status.timestamp = stamp(p.now);
            t.updated_at = stamp(p.now);
            p.put.insert(t.id.clone(), t);
        }
    }
}

fn reservation(spec: &api::TaskSpec) -> (i64, i64) {
    spec.resources
        .as_ref()
        .and_then(|r| r.reservations.as_ref())
        .map(|r| (r.nano_cpus, r.memory_bytes))
        .unwrap_or((0, 0))
}

/// Drops tasks beyond the history limit per slot (or node), and the ended tasks of removed
/// services.
fn reap(p: &mut Pass) {
    let limit = p
        .state
        .cluster
        .as_ref()
        .and_then(|c| c.spec.orchestration.task_history_retention_limit)
        .unwrap_or(DEFAULT_HISTORY);
    let mut groups: BTreeMap<(String, u64, String), Vec<&TaskRec>> = BTreeMap::new();
    for t in p.state.tasks.values() {
        let gone_service = !p.state.services.contains_key(&t.service_id);
        let ended = t.status.state.is_terminal()
            || p.state
                .nodes
                .get(&t.node_id)
                .is_none_or(|n| n.state == NodeState::Down);
        // A removed node never reports again: its tasks that were told to stop go.
        let node_gone = !t.node_id.is_empty() && !p.state.nodes.contains_key(&t.node_id);
        if gone_service || t.desired_state == TaskState::Remove || (node_gone && !wants_running(t))
        {
            if ended || t.node_id.is_empty() {
                p.remove.push(t.id.clone());
            }
            continue;
        }
        let node = if t.slot == 0 {
            t.node_id.clone()
        } else {
            String::new()
        };
        groups
            .entry((t.service_id.clone(), t.slot, node))
            .or_default()
            .push(t);
    }
    for ((service, _, _), mut ts) in groups {
        // As swarmkit's reaper: a restart policy with MaxAttempts keeps MaxAttempts+1 tasks;
        // otherwise the cluster's limit, where a negative one keeps everything.
        let attempts = p
            .state
            .services
            .get(&service)
            .and_then(|s| s.spec.task_template.restart_policy.as_ref())
            .and_then(|r| r.max_attempts)
            .filter(|n| *n > 0);
        let limit = match attempts {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1),
            None => match usize::try_from(limit) {
                Ok(l) => l,
                Err(_) => continue,
            },
        };
        let old: usize = ts.iter().filter(|t| t.status.state.is_terminal()).count();
        if ts.len() <= limit || old == 0 {
            continue;
        }
        ts.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        let mut extra = ts.len() - limit;
        for t in ts {
            if extra == 0 {
                break;
            }
            if t.status.state.is_terminal() && !wants_running(t) {
                p.remove.push(t.id.clone());
                extra -= 1;
            }
        }
    }
    p.remove.retain(|id| !p.put.contains_key(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeRec {
        NodeRec {
            id: id.to_string(),
            state: NodeState::Ready,
            spec: api::NodeSpec {
                role: "worker".into(),
                availability: "active".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn service(replicas: u64) -> ServiceRec {
        ServiceRec {
            id: "svc".into(),
            spec: api::ServiceSpec {
                name: "web".into(),
                mode: api::ServiceMode {
                    replicated: Some(api::ReplicatedService {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn running(s: &ServiceRec, slot: u64, node: &str) -> TaskRec {
        let mut t = new_task(s, slot, node, SystemTime::now());
        t.status.state = TaskState::Running;
        t
    }

    /// What `reap` removes of slot 1's history: 7 failed tasks and a running one, under the
    /// cluster's `limit` and the service's restart `max_attempts`.
    fn reaped(limit: Option<i64>, max_attempts: Option<u64>) -> usize {
        let mut s = service(1);
        s.spec.task_template.restart_policy = Some(api::RestartPolicy {
            max_attempts,
            ..Default::default()
        });
        let mut state = State::default();
        state.nodes.insert("n1".into(), node("n1"));
        let mut cluster = crate::store::ClusterRec::default();
        cluster.spec.orchestration.task_history_retention_limit = limit;
        state.cluster = Some(cluster);
        for i in 0..8 {
            let mut t = running(&s, 1, "n1");
            t.created_at = format!("2026-01-0{}T00:00:00Z", i + 1);
            if i < 7 {
                t.status.state = TaskState::Failed;
                t.desired_state = TaskState::Shutdown;
            }
            state.tasks.insert(t.id.clone(), t);
        }
        state.services.insert(s.id.clone(), s);
        let mut p = Pass {
            state: &state,
            now: SystemTime::now(),
            put: BTreeMap::new(),
            remove: Vec::new(),
            other: Vec::new(),
        };
        reap(&mut p);
        p.remove.len()
    }

    #[test]
    fn task_history_follows_swarmkits_reaper() {
        // Default 5: 8 - 5 go; an explicit limit; a negative one keeps everything.
        assert_eq!(reaped(None, None), 3);
        assert_eq!(reaped(Some(2), None), 6);
        assert_eq!(reaped(Some(0), None), 7);
        assert_eq!(reaped(Some(-1), None), 0);
        // MaxAttempts 3 keeps 4, whatever the cluster's limit.
        assert_eq!(reaped(Some(2), Some(3)), 4);
        assert_eq!(reaped(Some(-1), Some(3)), 4);
        assert_eq!(reaped(None, Some(0)), 3);
    }

    /// Three nodes, six running tasks on the first two.
    fn lopsided() -> State {
        let mut st = State::default();
        for n in ["n1", "n2", "n3"] {
            st.nodes.insert(n.into(), node(n));
        }
        let s = service(6);
        for slot in 1..=6 {
            let t = running(&s, slot, if slot <= 3 { "n1" } else { "n2" });
            st.tasks.insert(t.id.clone(), t);
        }
        st.services.insert(s.id.clone(), s);
        st
    }

    #[test]
    fn rebalance_moves_tasks_from_the_most_loaded_nodes_to_the_empty_one() {
        let mut st = lopsided();
        let s = st.services["svc"].clone();
        let now = SystemTime::now();
        let out = rebalance(&st, &s, now).unwrap();
        let (new, old): (Vec<&TaskRec>, Vec<&TaskRec>) = out
            .iter()
            .partition(|t| t.desired_state == TaskState::Running);
        assert_eq!((new.len(), old.len()), (2, 2), "{out:#?}");
        assert!(old.iter().all(|t| t.desired_state == TaskState::Shutdown));
        let from: std::collections::BTreeSet<&str> =
            old.iter().map(|t| t.node_id.as_str()).collect();
        assert_eq!(from, ["n1", "n2"].into_iter().collect());
        for t in &new {
            assert!(t.node_id.is_empty() && t.status.state == TaskState::Pending);
            assert!(
                old.iter().any(|o| o.slot == t.slot),
                "the moved task's slot"
            );
        }
        // The scheduler then puts both new tasks on the empty node.
        for t in &out {
            st.tasks.insert(t.id.clone(), t.clone());
        }
        assert!(
            rebalance(&st, &s, now).unwrap().is_empty(),
            "nothing more moves while the moved tasks start"
        );
        let cmds = pass(&st, &mut Memory::default(), now);
        let placed: Vec<String> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Tasks { put, .. } => Some(put),
                _ => None,
            })
            .flatten()
            .filter(|t| new.iter().any(|n| n.id == t.id))
            .map(|t| t.node_id.clone())
            .collect();
        assert_eq!(placed, ["n3", "n3"], "{cmds:#?}");
    }

    #[test]
    fn a_stop_first_replacement_takes_the_node_its_old_task_leaves() {
        // Five nodes with two tasks each; slot 5's task on n3 is stopping for an update and
        // its replacement waits, unplaced: it goes back to n3, keeping the spread even.
        let mut st = State::default();
        let s = service(10);
        for (i, n) in ["n1", "n2", "n3", "n4", "n5"].iter().enumerate() {
            st.nodes.insert((*n).into(), node(n));
            for slot in [2 * i as u64 + 1, 2 * i as u64 + 2] {
                let mut t = running(&s, slot, n);
                if slot == 5 {
                    t.desired_state = TaskState::Shutdown;
                }
                st.tasks.insert(t.id.clone(), t);
            }
        }
        let mut next = new_task(&s, 5, "", SystemTime::now());
        next.desired_state = TaskState::Ready;
        st.tasks.insert(next.id.clone(), next.clone());
        st.services.insert(s.id.clone(), s);
        let cmds = pass(&st, &mut Memory::default(), SystemTime::now());
        let placed: Vec<String> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Tasks { put, .. } => Some(put),
                _ => None,
            })
            .flatten()
            .filter(|t| t.id == next.id)
            .map(|t| t.node_id.clone())
            .collect();
        assert_eq!(placed, ["n3"], "{cmds:#?}");
    }

    #[test]
    fn rebalance_leaves_an_even_service_and_refuses_global_ones() {
        let mut st = lopsided();
        st.nodes.remove("n3");
        let s = st.services["svc"].clone();
        assert!(rebalance(&st, &s, SystemTime::now()).unwrap().is_empty());
        let mut g = s.clone();
        g.spec.mode = api::ServiceMode {
            global: Some(Default::default()),
            ..Default::default()
        };
        let err = rebalance(&st, &g, SystemTime::now()).unwrap_err();
        assert!(err.contains("only replicated services"), "{err}");
    }
}
