//! Waiting for a service to converge after create, update, scale or rollback (docker's
//! default `--detach=false`): polls the service, its up-to-date tasks and the nodes every
//! 200 ms and prints the overall and per-task progress, then watches the converged service
//! for its update monitor period before saying it converged.

use super::tasks::{decode_list, list_tasks};
use crate::client::{enc, Client};
use crate::progress::Renderer;
use berth_api::progress::Message;
use berth_api::swarm::{Node, NodeState, Service, Task, TaskState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// More replicas than this get the overall line only.
const MAX_BARS: u64 = 100;
/// Width the task states are padded to (the longest state name).
const STATE_WIDTH: usize = 9;

/// Where progress lines go: nowhere with `-q`.
struct Out {
    r: Option<Renderer<Box<dyn std::io::Write>>>,
    /// On a terminal task states are padded so that their lines redraw cleanly.
    tty: bool,
}

impl Out {
    fn line(&mut self, id: &str, text: &str) {
        if let Some(r) = self.r.as_mut() {
            let _ = r.feed(Message::status(id, text).line().as_bytes());
        }
    }
}

fn overall(out: &mut Out, n: u64, d: u64, rollback: bool) {
    let text = if rollback {
        format!("rolling back update: {n} out of {d} tasks")
    } else {
        format!("{n} out of {d} tasks")
    };
    out.line("overall progress", &text);
}

fn task_line(out: &mut Out, id: &str, t: &Task) {
    if !t.status.err.is_empty() {
        let mut e = t.status.err.replace('\n', " ");
        if e.chars().count() > 75 {
            e = e.chars().take(74).collect::<String>() + "…";
        }
        out.line(id, &e);
    } else if !t.desired_state.is_terminal() && !t.status.state.is_terminal() {
        let state = t.status.state.as_str();
        let text = if out.tty {
            format!("{state:<STATE_WIDTH$}")
        } else {
            state.to_string()
        };
        out.line(id, &text);
    }
}

/// The task to show per key: the one with the lowest desired state, then the lowest state
/// (the docker CLI's choice).
fn pick(map: &mut BTreeMap<String, Task>, key: String, t: &Task) {
    if let Some(e) = map.get(&key) {
        if e.desired_state < t.desired_state
            || (e.desired_state == t.desired_state && e.status.state <= t.status.state)
        {
            return;
        }
    }
    map.insert(key, t.clone());
}

/// Per-mode progress state.
enum Tracker {
    Replicated {
        started: bool,
        done: bool,
        slots: HashMap<i64, u64>,
    },
    Global {
        started: bool,
        done: bool,
    },
    ReplicatedJob,
    GlobalJob {
        nodes: Option<HashSet<String>>,
    },
}

impl Tracker {
    fn for_service(s: &Service) -> Result<Tracker, String> {
        let m = &s.spec.mode;
        if m.replicated.as_ref().is_some_and(|r| r.replicas.is_some()) {
            Ok(Tracker::Replicated {
                started: false,
                done: false,
                slots: HashMap::new(),
            })
        } else if m.global.is_some() {
            Ok(Tracker::Global {
                started: false,
                done: false,
            })
        } else if m.replicated_job.is_some() {
            Ok(Tracker::ReplicatedJob)
        } else if m.global_job.is_some() {
            Ok(Tracker::GlobalJob { nodes: None })
        } else {
            Err("unrecognized service mode".into())
        }
    }

    /// One poll: print what changed; true when the service has converged.
    fn update(
        &mut self,
        out: &mut Out,
        s: &Service,
        tasks: &[Task],
        active: &HashSet<String>,
        rollback: bool,
    ) -> bool {
        let iteration = s.job_status.as_ref().map(|j| j.job_iteration.index);
        let this_iteration =
            |t: &&Task| iteration.is_none() || t.job_iteration.map(|j| j.index) == iteration;
        match self {
            Tracker::Replicated {
                started,
                done,
                slots,
            } => {
                let replicas = s
                    .spec
                    .mode
                    .replicated
                    .as_ref()
                    .and_then(|r| r.replicas)
                    .unwrap_or(0);
                if !*started {
                    overall(out, 0, replicas, rollback);
                    *started = true;
                }
                let mut by_slot = BTreeMap::new();
                for t in tasks {
                    if !t.node_id.is_empty() && !active.contains(&t.node_id) {
                        continue;
                    }
                    pick(&mut by_slot, format!("{:020}", t.slot), t);
                }
                if *done
                    && by_slot
                        .values()
                        .any(|t| t.status.state != TaskState::Running)
                {
                    *done = false;
                }
                let mut running = 0;
                for t in by_slot.values() {
                    let next = slots.len() as u64 + 1;
                    let mapped = *slots.entry(t.slot).or_insert(next);
                    if !t.desired_state.is_terminal() && t.status.state == TaskState::Running {
                        running += 1;
                    }
                    if !*done && replicas <= MAX_BARS && mapped <= replicas {
                        task_line(out, &format!("{mapped}/{replicas}"), t);
                    }
                }
                if !*done {
                    overall(out, running, replicas, rollback);
                    *done = running == replicas;
                }
                running == replicas
            }
            Tracker::Global { started, done } => {
                let mut by_node = BTreeMap::new();
                for t in tasks {
                    pick(&mut by_node, t.node_id.clone(), t);
                }
                let count = by_node.len() as u64;
                if !*started {
                    if count == 0 {
                        out.line("overall progress", "waiting for new tasks");
                        return false;
                    }
                    overall(out, 0, count, rollback);
                    *started = true;
                }
                if *done
                    && by_node
                        .values()
                        .any(|t| t.status.state != TaskState::Running)
                {
                    *done = false;
                }
                let mut running = 0;
                for t in by_node.values().filter(|t| active.contains(&t.node_id)) {
                    if !t.desired_state.is_terminal() && t.status.state == TaskState::Running {
                        running += 1;
                    }
                    if !*done && count <= MAX_BARS {
                        task_line(out, &super::tasks::short_id(&t.node_id), t);
                    }
                }
                if !*done {
                    overall(out, running, count, rollback);
                    *done = running == count;
                }
                running == count
            }
            Tracker::ReplicatedJob => {
                let job = s.spec.mode.replicated_job.clone().unwrap_or_default();
                let total = job.total_completions.unwrap_or(1);
                let concurrent = job.max_concurrent.unwrap_or(1);
                let mut by_slot: BTreeMap<i64, &Task> = BTreeMap::new();
                for t in tasks.iter().filter(this_iteration) {
                    match by_slot.get(&t.slot) {
                        Some(e) if e.status.state <= t.status.state => {}
                        _ => {
                            by_slot.insert(t.slot, t);
                        }
                    }
                }
                let (mut active_n, mut complete) = (0u64, 0u64);
                for t in by_slot.values() {
                    if total <= MAX_BARS {
                        task_line(out, &format!("{}/{total}", t.slot + 1), t);
                    }
                    if t.status.state < TaskState::Complete {
                        active_n += 1;
                    }
                    if t.status.state == TaskState::Complete {
                        complete += 1;
                    }
                }
                out.line(
                    "job progress",
                    &format!("{complete} out of {total} complete"),
                );
                out.line(
                    "active tasks",
                    &format!(
                        "{active_n} out of {} tasks",
                        total.saturating_sub(complete).min(concurrent)
                    ),
                );
                complete == total
            }
            Tracker::GlobalJob { nodes } => {
                let ours: Vec<&Task> = tasks.iter().filter(this_iteration).collect();
                if nodes.is_none() {
                    if ours.is_empty() && !active.is_empty() {
                        out.line("job progress", "waiting for tasks");
                        return false;
                    }
                    *nodes = Some(ours.iter().map(|t| t.node_id.clone()).collect());
                }
                let set = nodes.clone().unwrap_or_default();
                let mut by_node: BTreeMap<String, &Task> = BTreeMap::new();
                for t in ours.into_iter().filter(|t| set.contains(&t.node_id)) {
                    match by_node.get(&t.node_id) {
                        Some(e) if e.status.state <= t.status.state => {}
                        _ => {
                            by_node.insert(t.node_id.clone(), t);
                        }
                    }
                }
                let mut complete = 0;
                for t in by_node.values() {
                    if set.len() as u64 <= MAX_BARS {
                        task_line(out, &t.node_id, t);
                    }
                    if t.status.state == TaskState::Complete {
                        complete += 1;
                    }
                }
                out.line(
                    "job progress",
                    &format!("{complete} out of {} complete", set.len()),
                );
                complete == set.len()
            }
        }
    }
}

/// Wait until the service `id` converges, printing progress unless `quiet`; the error is the
/// message to print (an update that paused, a daemon error).
pub async fn wait(c: &Client, id: &str, quiet: bool) -> Result<(), String> {
    let tty = crate::stream::is_tty(std::io::stdout());
    let mut out = Out {
        r: (!quiet)
            .then(|| Renderer::new(Box::new(std::io::stdout()) as Box<dyn std::io::Write>, tty)),
        tty,
    };
    let mut tracker: Option<Tracker> = None;
    let mut converged = false;
    let mut converged_at: Option<Instant> = None;
    let mut rollback = false;
    let mut message: Option<String> = None;
    let mut rollback_shown = false;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let v = c
            .get(&format!("/services/{}", enc(id)))
            .await
            .map_err(|e| e.to_string())?;
        let s: Service =
            berth_api::decode::from_value(v).map_err(|e| format!("bad answer from daemon: {e}"))?;
        let monitor = s
            .spec
            .update_config
            .as_ref()
            .map(|u| u.monitor)
            .filter(|m| *m > 0)
            .map(|m| Duration::from_nanos(m as u64))
            .unwrap_or(Duration::from_secs(5));
        if tracker.is_none() {
            tracker = Some(Tracker::for_service(&s)?);
        }
        if let Some(u) = &s.update_status {
            use berth_api::swarm::update_state as st;
            match u.state.as_str() {
                st::UPDATING => rollback = false,
                st::COMPLETED if !converged => return Ok(()),
                st::PAUSED => return Err(format!("service update paused: {}", u.message)),
                st::ROLLBACK_STARTED => {
                    if !rollback && !rollback_shown && !u.message.is_empty() {
                        out.line("rollback", &u.message);
                        rollback_shown = true;
                    }
                    rollback = true;
                }
                st::ROLLBACK_PAUSED => {
                    return Err(format!("service rollback paused: {}", u.message))
                }
                st::ROLLBACK_COMPLETED => {
                    if !converged {
                        message = Some(u.message.clone());
                    }
                    rollback = true;
                }
                _ => {}
            }
        }
        if converged && converged_at.is_some_and(|t| t.elapsed() >= monitor) {
            out.line("verify", &format!("Service {id} converged"));
            if let Some(m) = &message {
                out.line("rollback", m);
            }
            return Ok(());
        }
        let mut filters = BTreeMap::new();
        filters.insert("service".to_string(), vec![s.id.clone()]);
        filters.insert("_up-to-date".to_string(), vec!["true".to_string()]);
        let tasks = list_tasks(c, &filters).await.map_err(|e| e.to_string())?;
        let nodes: Vec<Node> = decode_list(c.get("/nodes").await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let active: HashSet<String> = nodes
            .into_iter()
            .filter(|n| n.status.state != NodeState::Down)
            .map(|n| n.id)
            .collect();
        converged = match tracker.as_mut() {
            Some(t) => t.update(&mut out, &s, &tasks, &active, rollback),
            None => false,
        };
        if converged {
            if s.job_status.is_some() {
                out.line("", "job complete");
                return Ok(());
            }
            let at = *converged_at.get_or_insert_with(Instant::now);
            if let Some(wait) = monitor.checked_sub(at.elapsed()) {
                out.line(
                    "verify",
                    &format!(
                        "Waiting {} seconds to verify that tasks are stable...",
                        wait.as_secs() + 1
                    ),
                );
            }
        } else {
            if converged_at.is_some() {
                out.line("verify", "Detected task failure");
            }
            converged_at = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut interrupt => {
                if !converged {
                    out.line("", "Operation continuing in background.");
                    out.line("", &format!("Use `docker service ps {id}` to check progress."));
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::swarm::{ReplicatedService, TaskStatus};
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Buf(Rc<RefCell<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn task(slot: i64, node: &str, state: TaskState) -> Task {
        Task {
            slot,
            node_id: node.into(),
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn replicated_progress_until_every_slot_runs() {
        let buf = Buf::default();
        let mut out = Out {
            r: Some(Renderer::new(Box::new(buf.clone()), false)),
            tty: false,
        };
        let mut s = Service::default();
        s.spec.mode.replicated = Some(ReplicatedService { replicas: Some(2) });
        let mut t = Tracker::for_service(&s).unwrap();
        let active: HashSet<String> = ["n1".to_string()].into();
        let tasks = vec![
            task(1, "n1", TaskState::Running),
            task(2, "n1", TaskState::Preparing),
            // A task on a node that is down does not count.
            task(2, "gone", TaskState::Running),
        ];
        assert!(!t.update(&mut out, &s, &tasks, &active, false));
        let tasks = vec![
            task(1, "n1", TaskState::Running),
            task(2, "n1", TaskState::Running),
        ];
        assert!(t.update(&mut out, &s, &tasks, &active, false));
        let text = String::from_utf8(buf.0.borrow().clone()).unwrap();
        assert_eq!(
            text,
            "overall progress: 0 out of 2 tasks\n1/2: running\n2/2: preparing\n\
             overall progress: 1 out of 2 tasks\n2/2: running\n\
             overall progress: 2 out of 2 tasks\n"
        );
        let mut g = Service::default();
        g.spec.mode.global = Some(Default::default());
        let mut t = Tracker::for_service(&g).unwrap();
        assert!(!t.update(&mut out, &g, &[], &active, false));
        assert!(Tracker::for_service(&Service::default()).is_err());
    }
}
