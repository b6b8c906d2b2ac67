//! Consensus for the swarm managers: a Raft node (tikv raft, PreVote and CheckQuorum on)
//! whose log, hard state and snapshots are sealed on disk, driven by a thread of its own.

mod disk;
mod logger;
mod node;
pub(crate) mod seal;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use node::{Change, Cmd};

/// Docker's message when a write cannot reach a leader.
const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

/// Settings of one raft node.
#[derive(Clone)]
pub struct Config {
    /// Raft id: random, non-zero, never reused.
    pub id: u64,
    /// Directory of the sealed log and snapshots (`<data-root>/swarm/raft`).
    pub dir: PathBuf,
    /// AES-256-GCM key sealing every record and snapshot at rest.
    pub dek: [u8; 32],
    /// Length of one raft tick (100 ms in production).
    pub tick: Duration,
    /// Ticks without a leader before an election (randomized up to twice as many).
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries between two snapshots.
    pub snapshot_interval: u64,
    /// Entries kept behind a snapshot for slow followers.
    pub keep_entries: u64,
    /// How long `propose`, `add_voter` and `remove_member` wait for their entry to apply.
    pub proposal_timeout: Duration,
}

/// Production settings, which the cluster spec's `Raft` section shows (swarmkit's defaults
/// but for the tick, 100 ms here against swarmkit's 1 s).
pub const TICK: Duration = Duration::from_millis(100);
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 1;
pub const SNAPSHOT_INTERVAL: u64 = 10_000;
pub const KEEP_ENTRIES: u64 = 500;

impl Config {
    /// Production settings for node `id` storing its data in `dir` under `dek`.
    pub fn new(id: u64, dir: PathBuf, dek: [u8; 32]) -> Config {
        Config {
            id,
            dir,
            dek,
            tick: TICK,
            election_ticks: ELECTION_TICKS,
            heartbeat_ticks: HEARTBEAT_TICKS,
            snapshot_interval: SNAPSHOT_INTERVAL,
            keep_entries: KEEP_ENTRIES,
            proposal_timeout: Duration::from_secs(5),
        }
    }
}

/// The replicated state machine. It lives in memory only: on start it is restored from the
/// newest snapshot and the committed entries after it are applied again, each exactly once
/// per process, in log order.
pub trait StateMachine: Send + 'static {
    /// Applies a committed entry; deterministic. The result goes to the proposer.
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8>;
    /// The whole state, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state by a snapshot's.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
}

/// Carries raft messages between the members.
pub trait Transport: Send + Sync + 'static {
    /// The members' addresses (id, "host:port"), this node included; called on every
    /// membership change.
    fn set_peers(&self, peers: &[(u64, String)]);
    /// Sends messages; never blocks. Undeliverable peers are reported with
    /// `Reporter::unreachable`, and every `MsgSnapshot` with `Reporter::snapshot` once it
    /// was delivered or failed.
    fn send(&self, msgs: Vec<raft::eraftpb::Message>, reporter: &Reporter);
}

/// Lets the transport tell the node about delivery failures.
#[derive(Clone)]
pub struct Reporter {
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    Node(mpsc::Sender<Cmd>),
    #[cfg(test)]
    Test(tokio::sync::mpsc::UnboundedSender<Report>),
}

/// A delivery report, as transport tests observe them.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Unreachable(u64),
    Snapshot { to: u64, ok: bool },
}

impl Reporter {
    pub(crate) fn node(tx: mpsc::Sender<Cmd>) -> Reporter {
        Reporter {
            sink: Sink::Node(tx),
        }
    }

    /// A reporter whose reports go to a test's channel.
    #[cfg(test)]
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<Report>) -> Reporter {
        Reporter {
            sink: Sink::Test(tx),
        }
    }

    /// Messages to `id` could not be delivered.
    pub fn unreachable(&self, id: u64) {
        match &self.sink {
            Sink::Node(tx) => {
                let _ = tx.send(Cmd::Unreachable(id));
            }
            #[cfg(test)]
            Sink::Test(tx) => {
                let _ = tx.send(Report::Unreachable(id));
            }
        }
    }

    /// A snapshot sent to `id` was delivered (`ok`) or failed.
    pub fn snapshot(&self, id: u64, ok: bool) {
        match &self.sink {
            Sink::Node(tx) => {
                let _ = tx.send(Cmd::SnapshotStatus(id, ok));
            }
            #[cfg(test)]
            Sink::Test(tx) => {
                let _ = tx.send(Report::Snapshot { to: id, ok });
            }
        }
    }
}

/// How a node starts.
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// A new cluster with this node as its only voter, reachable at `addr`.
    New { addr: String },
    /// An empty node waiting for the leader (whose `add_voter` was called before) to send it
    /// a snapshot. The transport must know the leader's address beforehand
    /// (`Transport::set_peers` with what the join answer gave).
    Join,
    /// The state on disk.
    Restart,
    /// The state on disk with the membership rewritten to this node alone, at `addr`; it
    /// becomes leader on its own.
    ForceNewCluster { addr: String },
}

/// What the node knows of the cluster, updated by its loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    /// The leader's id; 0 when none is known.
    pub leader: u64,
    pub term: u64,
    /// Index of the last entry applied to the state machine.
    pub applied: u64,
    /// Index of the last entry known to be committed.
    pub commit: u64,
    /// Members and their addresses, by id.
    pub members: Vec<(u64, String)>,
    /// On the leader: the members heard from within the last election timeout (itself
    /// included). Empty elsewhere.
    pub active: Vec<u64>,
    /// This node was removed from the cluster (its loop has ended).
    pub removed: bool,
    /// The node's loop has ended.
    pub stopped: bool,
}

/// Why a proposal or membership change did not apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("{}", NO_LEADER)]
    NoLeader,
    #[error("{}", NO_LEADER)]
    Timeout,
    #[error("the raft node is stopped")]
    Stopped,
    #[error("this node was removed from the swarm")]
    Removed,
    #[error("{0}")]
    Rejected(String),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot decrypt the raft data: wrong key (DEK) or damaged data", .0.display())]
    Decrypt(PathBuf),
    #[error("damaged raft data: {0}")]
    Corrupt(String),
    #[error("{0}")]
    State(String),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

/// A running raft node; clones share it. The node stops when `stop` is called or the last
/// clone is dropped.
#[derive(Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Cmd>,
    status: watch::Receiver<Status>,
    applied: watch::Receiver<u64>,
    /// Membership changes go one at a time.
    changes: tokio::sync::Mutex<()>,
    proposal_timeout: Duration,
    election_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop(None));
    }
}

impl RaftHandle {
    /// Opens or creates the raft directory as `boot` says and starts the node's thread.
    pub fn start<S: StateMachine, T: Transport>(
        cfg: Config,
        sm: S,
        transport: Arc<T>,
        boot: Bootstrap,
    ) -> Result<RaftHandle, Error> {
        let proposal_timeout = cfg.proposal_timeout;
        let election_timeout = cfg.tick * cfg.election_ticks as u32;
        let started = node::start(cfg, sm, transport, boot)?;
        Ok(RaftHandle {
            inner: Arc::new(Inner {
                tx: started.tx,
                status: started.status,
                applied: started.applied,
                changes: tokio::sync::Mutex::new(()),
                proposal_timeout,
                election_timeout,
            }),
        })
    }

    /// Hands the node a message received from the network.
    pub fn step(&self, msg: raft::eraftpb::Message) {
        let _ = self.inner.tx.send(Cmd::Step(msg));
    }

    /// Fails early when the node cannot take a proposal at all.
    fn precheck(&self) -> Result<(), ProposeError> {
        let st = self.inner.status.borrow();
        if st.removed {
            Err(ProposeError::Removed)
        } else if st.stopped {
            Err(ProposeError::Stopped)
        } else if st.leader == 0 {
            Err(ProposeError::NoLeader)
        } else {
            Ok(())
        }
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Result<Vec<u8>, ProposeError>>,
    ) -> Result<Vec<u8>, ProposeError> {
        // The loop answers Timeout itself at the deadline; this bound is a safety net.
        let bound = self.inner.proposal_timeout + Duration::from_secs(2);
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.ended()),
            Err(_) => Err(ProposeError::Timeout),
        }
    }

    /// The error for a node whose loop is gone.
    fn ended(&self) -> ProposeError {
        if self.inner.status.borrow().removed {
            ProposeError::Removed
        } else {
            ProposeError::Stopped
        }
    }

    /// Proposes an entry; resolves with the state machine's result once the entry is
    /// applied on this node.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        self.precheck()?;
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + self.inner.proposal_timeout;
        self.inner
            .tx
            .send(Cmd::Propose {
                data,
                reply,
                deadline,
            })
            .map_err(|_| self.ended())?;
        self.wait(rx).await
    }

    async fn change(&self, change: Change) -> Result<(), ProposeError> {
        let _one = self.inner.changes.lock().await;
        self.precheck()?;
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + self.inner.proposal_timeout;
        self.inner
            .tx
            .send(Cmd::Change {
                change,
                reply,
                deadline,
            })
            .map_err(|_| self.ended())?;
        self.wait(rx).await.map(|_| ())
    }

    /// Adds (or re-addresses) a voting member; resolves once the change is applied here.
    pub async fn add_voter(&self, id: u64, addr: String) -> Result<(), ProposeError> {
        self.change(Change::AddVoter(id, addr)).await
    }

    /// Removes a member; resolves once the change is applied here.
    pub async fn remove_member(&self, id: u64) -> Result<(), ProposeError> {
        self.change(Change::Remove(id)).await
    }

    /// What the node knows now.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// The applied index, as it moves.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.applied.clone()
    }

    /// Asks the leader to hand leadership to `to`; returns when `to` leads or after a few
    /// election timeouts.
    pub async fn transfer_leadership(&self, to: u64) {
        if self.inner.tx.send(Cmd::Transfer(to)).is_err() {
            return;
        }
        let mut status = self.inner.status.clone();
        let deadline = tokio::time::Instant::now() + self.inner.election_timeout * 3;
        loop {
            {
                let st = status.borrow_and_update();
                if st.leader == to || st.stopped {
                    return;
                }
            }
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// Stops the node: pending proposals fail with `Stopped`, the loop ends and its files
    /// are closed when this returns.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.inner.tx.send(Cmd::Stop(Some(done))).is_ok() {
            let _ = rx.await;
        }
    }
}
