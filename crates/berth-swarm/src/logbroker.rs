//! The leader's log broker (`service logs`, `task logs`): readers subscribe to tasks' logs,
//! the nodes running those tasks learn of the subscription through their sessions and publish
//! the rendered lines back, and the broker hands them to the reader. Nodes never accept
//! connections for this; they push to the manager as their sessions do.

use crate::error::{Error, Result};
use crate::proto::{LogOptions, LogSubscription};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A subscription without `follow` ends when no node it waits for has published for this long
/// (a node that died or left never says it is done).
const IDLE_END: Duration = Duration::from_secs(10);
/// Pieces held for a slow reader before publishers wait.
const QUEUE: usize = 64;

struct Sub {
    /// Node id -> the ids of its tasks the reader wants.
    nodes: BTreeMap<String, Vec<String>>,
    /// Nodes that have not said they are done.
    pending: HashSet<String>,
    options: LogOptions,
    tx: mpsc::Sender<Bytes>,
    last: Instant,
}

pub struct Broker {
    subs: Mutex<HashMap<String, Sub>>,
    /// Bumped on every change of the subscriptions (sessions long-poll on it).
    version: watch::Sender<u64>,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            subs: Mutex::new(HashMap::new()),
            version: watch::channel(0).0,
        }
    }
}

impl Broker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sub>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// A receiver of the tasks' log pieces, as `(task id, node id)`. It ends when every node
    /// is done (without `follow`), or when the reader drops it.
    pub fn subscribe(
        &self,
        tasks: Vec<(String, String)>,
        options: LogOptions,
    ) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(QUEUE);
        if tasks.is_empty() {
            return rx;
        }
        let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (task, node) in tasks {
            nodes.entry(node).or_default().push(task);
        }
        let sub = Sub {
            pending: nodes.keys().cloned().collect(),
            nodes,
            options,
            tx,
            last: Instant::now(),
        };
        self.lock().insert(crate::ids::new_id(), sub);
        self.bump();
        rx
    }

    /// The subscriptions `node` must serve.
    pub fn for_node(&self, node: &str) -> Vec<LogSubscription> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.pending.contains(node))
            .filter_map(|(id, s)| {
                s.nodes.get(node).map(|tasks| LogSubscription {
                    id: id.clone(),
                    tasks: tasks.clone(),
                    options: s.options.clone(),
                })
            })
            .collect()
    }

    /// Wakes when the subscriptions change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Ends subscriptions whose reader has gone, and idle ones without `follow`.
    pub fn sweep(&self) {
        let mut subs = self.lock();
        let before = subs.len();
        subs.retain(|_, s| !s.tx.is_closed() && (s.options.follow || s.last.elapsed() < IDLE_END));
        let changed = subs.len() != before;
        drop(subs);
        if changed {
            self.bump();
        }
    }

    /// Ends every subscription (this manager no longer leads).
    pub fn clear(&self) {
        let had = {
            let mut subs = self.lock();
            let had = !subs.is_empty();
            subs.clear();
            had
        };
        if had {
            self.bump();
        }
    }

    /// Pieces from `node` for subscription `id`; `done` when it has sent all it will.
    pub async fn publish(&self, id: &str, node: &str, data: Bytes, done: bool) -> Result<()> {
        let tx = {
            let mut subs = self.lock();
            let s = subs
                .get_mut(id)
                .ok_or_else(|| Error::new(404, format!("no log subscription {id}")))?;
            if !s.nodes.contains_key(node) {
                return Err(Error::new(
                    403,
                    format!("node {node} does not serve log subscription {id}"),
                ));
            }
            s.last = Instant::now();
            s.tx.clone()
        };
        if !data.is_empty() && tx.send(data).await.is_err() {
            self.lock().remove(id);
            self.bump();
            return Err(Error::new(404, format!("log subscription {id} has ended")));
        }
        if done {
            let mut subs = self.lock();
            let finished = subs.get_mut(id).is_some_and(|s| {
                s.pending.remove(node);
                s.pending.is_empty() && !s.options.follow
            });
            if finished {
                subs.remove(id);
            }
            drop(subs);
            self.bump();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(follow: bool) -> LogOptions {
        LogOptions {
            stdout: true,
            stderr: true,
            follow,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn pieces_reach_the_reader_and_it_ends_when_every_node_is_done() {
        let b = Broker::default();
        let mut rx = b.subscribe(
            vec![
                ("t1".into(), "n1".into()),
                ("t2".into(), "n2".into()),
                ("t3".into(), "n1".into()),
            ],
            opts(false),
        );
        let n1 = b.for_node("n1");
        assert_eq!(n1.len(), 1);
        assert_eq!(n1[0].tasks, vec!["t1".to_string(), "t3".to_string()]);
        assert!(b.for_node("n3").is_empty());
        let id = n1[0].id.clone();
        b.publish(&id, "n1", Bytes::from_static(b"a"), true)
            .await
            .unwrap();
        assert!(
            b.for_node("n1").is_empty(),
            "a node that is done serves no more"
        );
        let err = b.publish(&id, "n3", Bytes::from_static(b"x"), false).await;
        assert_eq!(err.unwrap_err().status, 403);
        b.publish(&id, "n2", Bytes::from_static(b"b"), true)
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"a"));
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"b"));
        assert!(rx.recv().await.is_none());
        assert_eq!(
            b.publish(&id, "n2", Bytes::new(), true)
                .await
                .unwrap_err()
                .status,
            404
        );
    }

    #[tokio::test]
    async fn a_reader_that_leaves_ends_the_subscription() {
        let b = Broker::default();
        let rx = b.subscribe(vec![("t1".into(), "n1".into())], opts(true));
        let id = b.for_node("n1")[0].id.clone();
        drop(rx);
        let err = b.publish(&id, "n1", Bytes::from_static(b"a"), false).await;
        assert_eq!(err.unwrap_err().status, 404);
        assert!(b.for_node("n1").is_empty());
        let rx = b.subscribe(vec![("t1".into(), "n1".into())], opts(true));
        drop(rx);
        let mut changes = b.changes();
        changes.borrow_and_update();
        b.sweep();
        assert!(changes.has_changed().unwrap());
        assert!(b.for_node("n1").is_empty());
    }

    #[tokio::test]
    async fn no_tasks_ends_at_once() {
        let b = Broker::default();
        let mut rx = b.subscribe(Vec::new(), opts(true));
        assert!(rx.recv().await.is_none());
    }
}
