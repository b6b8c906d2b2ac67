//! The node's loop: ticks raft, feeds it messages and proposals, and handles each `Ready`
//! in order: persist (entries, hard state, snapshot, fsync), send, apply, advance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{oneshot, watch};

use super::disk::{Disk, Loaded};
use super::store::LogStore;
use super::{Bootstrap, Config, Error, ProposeError, Reporter, StateMachine, Status, Transport};

/// Upper bound of the entries carried by one append message.
const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// Append messages in flight to one follower.
const MAX_INFLIGHT_MSGS: usize = 256;
/// Commands handled before the loop looks at raft's readiness again.
const BATCH: usize = 256;
/// Magic opening the snapshot payload (members then the state machine's data).
const SNAP_MAGIC: &[u8; 4] = b"BSS1";

pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, ProposeError>>;

/// A membership change.
pub(crate) enum Change {
    AddVoter(u64, String),
    Remove(u64),
}

/// What the handle and the transport ask of the loop.
pub(crate) enum Cmd {
    Step(Message),
    Propose {
        data: Vec<u8>,
        reply: Reply,
        deadline: Instant,
    },
    Change {
        change: Change,
        reply: Reply,
        deadline: Instant,
    },
    Transfer(u64),
    Unreachable(u64),
    SnapshotStatus(u64, bool),
    Stop(Option<oneshot::Sender<()>>),
}

/// The channels of a started node.
pub(crate) struct Started {
    pub tx: mpsc::Sender<Cmd>,
    pub status: watch::Receiver<Status>,
    pub applied: watch::Receiver<u64>,
}

struct Waiter {
    reply: Reply,
    deadline: Instant,
}

struct Node<S, T> {
    id: u64,
    raw: RawNode<LogStore>,
    disk: Disk,
    sm: S,
    transport: Arc<T>,
    reporter: Reporter,
    tick: Duration,
    election_timeout: Duration,
    snapshot_interval: u64,
    keep_entries: u64,
    members: BTreeMap<u64, String>,
    applied: u64,
    /// Every configuration change up to this index is known to be committed on disk (or
    /// there is none after the last synced commit index).
    synced_commit: u64,
    /// Random per process, so that a proposal id is never matched by an entry proposed
    /// before a restart.
    incarnation: u64,
    counter: u64,
    waiters: HashMap<u64, Waiter>,
    /// Results of entries applied in this round, answered once the status is published.
    answers: Vec<(Reply, Result<Vec<u8>, ProposeError>)>,
    status_tx: watch::Sender<Status>,
    applied_tx: watch::Sender<u64>,
    last_heard: HashMap<u64, Instant>,
    removed: bool,
    campaign: bool,
    stop_replies: Vec<oneshot::Sender<()>>,
}

/// Encodes a snapshot payload: the members (id, address) then the state machine's data.
pub(crate) fn encode_snapshot_data(members: &BTreeMap<u64, String>, app: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(app.len() + 64);
    out.extend_from_slice(SNAP_MAGIC);
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for (id, addr) in members {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(addr.len() as u32).to_le_bytes());
        out.extend_from_slice(addr.as_bytes());
    }
    out.extend_from_slice(app);
    out
}

/// Decodes a snapshot payload made by `encode_snapshot_data`.
pub(crate) fn decode_snapshot_data(data: &[u8]) -> Result<(BTreeMap<u64, String>, &[u8]), String> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if data.len() < n {
            return Err("the snapshot's member list is cut short".to_string());
        }
        let (head, tail) = data.split_at(n);
        *data = tail;
        Ok(head)
    }
    fn u32_of(b: &[u8]) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        u32::from_le_bytes(a)
    }
    let mut rest = data;
    if take(&mut rest, 4)? != SNAP_MAGIC {
        return Err("the snapshot does not carry berth's member list".to_string());
    }
    let count = u32_of(take(&mut rest, 4)?);
    let mut members = BTreeMap::new();
    for _ in 0..count {
        let mut a = [0u8; 8];
        a.copy_from_slice(take(&mut rest, 8)?);
        let id = u64::from_le_bytes(a);
        let len = u32_of(take(&mut rest, 4)?) as usize;
        let addr = std::str::from_utf8(take(&mut rest, len)?)
            .map_err(|_| "a member address in the snapshot is not UTF-8".to_string())?;
        members.insert(id, addr.to_string());
    }
    Ok((members, rest))
}

/// Proposal id carried in an entry's context: raft id, process incarnation, counter.
fn proposal_context(id: u64, incarnation: u64, counter: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(24);
    ctx.extend_from_slice(&id.to_le_bytes());
    ctx.extend_from_slice(&incarnation.to_le_bytes());
    ctx.extend_from_slice(&counter.to_le_bytes());
    ctx
}

fn parse_context(ctx: &[u8]) -> Option<(u64, u64, u64)> {
    if ctx.len() != 24 {
        return None;
    }
    let word = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&ctx[i * 8..i * 8 + 8]);
        u64::from_le_bytes(a)
    };
    Some((word(0), word(1), word(2)))
}

fn conf_change(kind: ConfChangeType, id: u64, context: &[u8]) -> ConfChange {
    let mut cc = ConfChange::default();
    cc.set_change_type(kind);
    cc.node_id = id;
    cc.context = context.to_vec().into();
    cc
}

fn validate(cfg: &Config) -> Result<(), Error> {
    if cfg.id == 0 {
        return Err(Error::State("the raft id must not be 0".to_string()));
    }
    if cfg.tick.is_zero() {
        return Err(Error::State("the raft tick must not be zero".to_string()));
    }
    if cfg.heartbeat_ticks == 0 || cfg.election_ticks <= cfg.heartbeat_ticks {
        return Err(Error::State(format!(
            "the election ticks ({}) must exceed the heartbeat ticks ({}), which must not be 0",
            cfg.election_ticks, cfg.heartbeat_ticks
        )));
    }
    if cfg.snapshot_interval == 0 {
        return Err(Error::State(
            "the snapshot interval must not be 0".to_string(),
        ));
    }
    Ok(())
}

/// Rewrites the membership on disk to this node alone: uncommitted entries are dropped and
/// committed configuration changes that remove every other member (and add this one at
/// `addr`) are appended.
fn force_new_cluster(
    disk: &mut Disk,
    loaded: &mut Loaded,
    id: u64,
    addr: &str,
) -> Result<(), Error> {
    let Some(snap) = &loaded.snapshot else {
        return Err(Error::State(
            "there is no raft state to force a new cluster from".to_string(),
        ));
    };
    let meta = snap.get_metadata();
    let cs = meta.get_conf_state();
    let mut ids: BTreeSet<u64> = cs
        .voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .copied()
        .collect();
    let hs = &mut loaded.hard_state;
    let keep = hs.commit.saturating_sub(loaded.base.0) as usize;
    loaded.entries.truncate(keep);
    for e in loaded.entries.iter().filter(|e| e.index > meta.index) {
        match e.get_entry_type() {
            EntryType::EntryConfChange => {
                if let Ok(cc) = ConfChange::parse_from_bytes(&e.data) {
                    match cc.get_change_type() {
                        ConfChangeType::RemoveNode => ids.remove(&cc.node_id),
                        _ => ids.insert(cc.node_id),
                    };
                }
            }
            EntryType::EntryConfChangeV2 => {
                if let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data) {
                    for c in &cc.changes {
                        match c.get_change_type() {
                            ConfChangeType::RemoveNode => ids.remove(&c.node_id),
                            _ => ids.insert(c.node_id),
                        };
                    }
                }
            }
            EntryType::EntryNormal => {}
        }
    }
    let mut changes = vec![conf_change(ConfChangeType::AddNode, id, addr.as_bytes())];
    changes.extend(
        ids.iter()
            .filter(|m| **m != id)
            .map(|m| conf_change(ConfChangeType::RemoveNode, *m, &[])),
    );
    let mut index = hs.commit;
    for cc in changes {
        index += 1;
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.term = hs.term;
        e.index = index;
        e.data = cc
            .write_to_bytes()
            .map_err(|e| Error::State(format!("encoding a configuration change: {e}")))?
            .into();
        loaded.entries.push(e);
    }
    hs.commit = index;
    disk.rewrite(loaded.base, hs, &loaded.entries)
}

/// Opens the raft directory as `boot` says and starts the loop's thread.
pub(crate) fn start<S: StateMachine, T: Transport>(
    cfg: Config,
    mut sm: S,
    transport: Arc<T>,
    boot: Bootstrap,
) -> Result<Started, Error> {
    validate(&cfg)?;
    let id = cfg.id;
    let dir = &cfg.dir;
    let fresh = |what: &str| -> Result<(), Error> {
        if Disk::exists(dir) {
            return Err(Error::State(format!(
                "cannot {what}: {} already holds raft data",
                dir.display()
            )));
        }
        Ok(())
    };
    let (disk, mut loaded, restore, campaign) = match &boot {
        Bootstrap::New { addr } => {
            fresh("create a new cluster")?;
            let mut members = BTreeMap::new();
            members.insert(id, addr.clone());
            let mut snap = Snapshot {
                data: encode_snapshot_data(&members, &sm.snapshot()).into(),
                ..Default::default()
            };
            let meta = snap.mut_metadata();
            meta.index = 1;
            meta.term = 1;
            meta.mut_conf_state().voters = vec![id];
            let hs = HardState {
                term: 1,
                commit: 1,
                ..Default::default()
            };
            let disk = Disk::create(dir, &cfg.dek, id, Some(&snap), &hs, (1, 1))?;
            let loaded = Loaded {
                hard_state: hs,
                snapshot: Some(snap),
                base: (1, 1),
                entries: Vec::new(),
            };
            (disk, loaded, false, true)
        }
        Bootstrap::Join => {
            fresh("join a cluster")?;
            let hs = HardState::default();
            let disk = Disk::create(dir, &cfg.dek, id, None, &hs, (0, 0))?;
            let loaded = Loaded {
                hard_state: hs,
                snapshot: None,
                base: (0, 0),
                entries: Vec::new(),
            };
            (disk, loaded, false, false)
        }
        Bootstrap::Restart | Bootstrap::ForceNewCluster { .. } => {
            if !Disk::exists(dir) {
                return Err(Error::State(format!(
                    "there is no raft data in {} to start from",
                    dir.display()
                )));
            }
            let (mut disk, mut loaded) = Disk::open(dir, &cfg.dek, id)?;
            let force = if let Bootstrap::ForceNewCluster { addr } = &boot {
                force_new_cluster(&mut disk, &mut loaded, id, addr)?;
                true
            } else {
                false
            };
            (disk, loaded, true, force)
        }
    };
    let mut members = BTreeMap::new();
    let mut applied = 0;
    if let Some(snap) = &loaded.snapshot {
        let (m, app) = decode_snapshot_data(&snap.data).map_err(Error::Corrupt)?;
        members = m;
        applied = snap.get_metadata().index;
        if restore {
            sm.restore(app).map_err(|e| {
                Error::State(format!(
                    "restoring the state from the snapshot at index {applied}: {e}"
                ))
            })?;
        }
    }
    let store = LogStore::new(
        loaded.hard_state.clone(),
        loaded.snapshot.take(),
        loaded.base,
        std::mem::take(&mut loaded.entries),
    );
    let rcfg = raft::Config {
        id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        applied,
        max_size_per_msg: MAX_SIZE_PER_MSG,
        max_inflight_msgs: MAX_INFLIGHT_MSGS,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let raw = RawNode::new(&rcfg, store, &super::logger::logger())?;
    let mut inc = [0u8; 8];
    SystemRandom::new()
        .fill(&mut inc)
        .map_err(|_| Error::State("the system random generator failed".to_string()))?;
    let (tx, rx) = mpsc::channel();
    let (status_tx, status) = watch::channel(Status {
        id,
        applied,
        members: members.iter().map(|(k, v)| (*k, v.clone())).collect(),
        ..Default::default()
    });
    let (applied_tx, applied_rx) = watch::channel(applied);
    let node = Node {
        id,
        raw,
        disk,
        sm,
        transport,
        reporter: Reporter::node(tx.clone()),
        tick: cfg.tick,
        election_timeout: cfg.tick * cfg.election_ticks as u32,
        snapshot_interval: cfg.snapshot_interval,
        keep_entries: cfg.keep_entries,
        members,
        applied,
        synced_commit: loaded.hard_state.commit,
        incarnation: u64::from_le_bytes(inc),
        counter: 0,
        waiters: HashMap::new(),
        answers: Vec::new(),
        status_tx,
        applied_tx,
        last_heard: HashMap::new(),
        removed: false,
        campaign,
        stop_replies: Vec::new(),
    };
    std::thread::Builder::new()
        .name(format!("raft-{id:x}"))
        .spawn(move || run(node, rx))
        .map_err(|source| Error::Io {
            what: "starting the raft thread".to_string(),
            source,
        })?;
    Ok(Started {
        tx,
        status,
        applied: applied_rx,
    })
}

/// The thread: the loop, then the shutdown (waiters failed, files closed, stoppers told).
fn run<S: StateMachine, T: Transport>(mut node: Node<S, T>, rx: mpsc::Receiver<Cmd>) {
    let id = node.id;
    let outcome = catch_unwind(AssertUnwindSafe(|| node.main_loop(&rx)));
    let panicked = outcome.is_err();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("raft node {id:x} stopped: {e}"),
        Err(_) => tracing::error!("raft node {id:x} stopped: the raft loop panicked"),
    }
    if !panicked {
        node.publish();
    }
    node.answer();
    let err = if node.removed {
        ProposeError::Removed
    } else {
        ProposeError::Stopped
    };
    for (_, w) in node.waiters.drain() {
        let _ = w.reply.send(Err(err.clone()));
    }
    let removed = node.removed;
    node.status_tx.send_modify(|st| {
        st.stopped = true;
        st.removed = removed;
        st.leader = 0;
        st.active.clear();
    });
    let replies = std::mem::take(&mut node.stop_replies);
    drop(node);
    for r in replies {
        let _ = r.send(());
    }
    drop(rx);
}

impl<S: StateMachine, T: Transport> Node<S, T> {
    fn main_loop(&mut self, rx: &mpsc::Receiver<Cmd>) -> Result<(), Error> {
        if !self.members.is_empty() {
            self.push_peers();
        }
        self.on_ready()?;
        if self.campaign && !self.removed {
            if let Err(e) = self.raw.campaign() {
                tracing::warn!("raft node {:x}: cannot campaign: {e}", self.id);
            }
            self.on_ready()?;
        }
        self.publish();
        self.answer();
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    if self.handle(cmd) {
                        return Ok(());
                    }
                    for _ in 0..BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => {
                                if self.handle(cmd) {
                                    return Ok(());
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick += self.tick;
                if next_tick < now {
                    next_tick = now + self.tick;
                }
                self.expire_waiters(now);
            }
            self.on_ready()?;
            self.maybe_snapshot()?;
            self.publish();
            self.answer();
            if self.removed {
                tracing::info!("raft node {:x} was removed from the cluster", self.id);
                return Ok(());
            }
        }
    }

    /// Handles one command; true when the loop must stop.
    fn handle(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Step(m) => self.step(m),
            Cmd::Propose {
                data,
                reply,
                deadline,
            } => self.propose(data, reply, deadline),
            Cmd::Change {
                change,
                reply,
                deadline,
            } => self.change(change, reply, deadline),
            Cmd::Transfer(to) => self.raw.transfer_leader(to),
            Cmd::Unreachable(id) => self.raw.report_unreachable(id),
            Cmd::SnapshotStatus(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Cmd::Stop(reply) => {
                if let Some(r) = reply {
                    self.stop_replies.push(r);
                }
                return true;
            }
        }
        false
    }

    fn step(&mut self, m: Message) {
        if m.to != self.id {
            tracing::debug!("raft node {:x}: dropping a message for {:x}", self.id, m.to);
            return;
        }
        let kind = m.get_msg_type();
        if kind == MessageType::MsgPropose && m.entries.is_empty() {
            tracing::debug!("raft node {:x}: dropping an empty proposal", self.id);
            return;
        }
        if kind == MessageType::MsgSnapshot {
            if let Err(e) = decode_snapshot_data(&m.get_snapshot().data) {
                tracing::warn!(
                    "raft node {:x}: dropping a snapshot from {:x}: {e}",
                    self.id,
                    m.from
                );
                return;
            }
        }
        if m.from != 0 {
            self.last_heard.insert(m.from, Instant::now());
        }
        if let Err(e) = self.raw.step(m) {
            tracing::debug!("raft node {:x}: message dropped: {e}", self.id);
        }
    }

    /// Why the node takes no proposal now, if so.
    fn refusal(&self) -> Option<ProposeError> {
        if self.removed {
            Some(ProposeError::Removed)
        } else if self.raw.raft.leader_id == 0 {
            Some(ProposeError::NoLeader)
        } else {
            None
        }
    }

    fn next_context(&mut self) -> (u64, Vec<u8>) {
        self.counter += 1;
        (
            self.counter,
            proposal_context(self.id, self.incarnation, self.counter),
        )
    }

    fn proposed(&mut self, r: raft::Result<()>, counter: u64, reply: Reply, deadline: Instant) {
        match r {
            Ok(()) => {
                self.waiters.insert(counter, Waiter { reply, deadline });
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(ProposeError::NoLeader));
            }
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Rejected(e.to_string())));
            }
        }
    }

    fn propose(&mut self, data: Vec<u8>, reply: Reply, deadline: Instant) {
        if let Some(e) = self.refusal() {
            let _ = reply.send(Err(e));
            return;
        }
        let (counter, ctx) = self.next_context();
        let r = self.raw.propose(ctx, data);
        self.proposed(r, counter, reply, deadline);
    }

    fn change(&mut self, change: Change, reply: Reply, deadline: Instant) {
        if let Some(e) = self.refusal() {
            let _ = reply.send(Err(e));
            return;
        }
        let reject = |reply: Reply, why: String| {
            let _ = reply.send(Err(ProposeError::Rejected(why)));
        };
        let conf = self.raw.raft.prs().conf().to_conf_state();
        let cc = match change {
            Change::AddVoter(id, addr) => {
                if id == 0 {
                    return reject(reply, "0 is not a valid raft id".to_string());
                }
                if addr.is_empty() {
                    return reject(reply, format!("no address given for raft node {id:x}"));
                }
                conf_change(ConfChangeType::AddNode, id, addr.as_bytes())
            }
            Change::Remove(id) => {
                if !conf.voters.contains(&id) && !conf.learners.contains(&id) {
                    return reject(reply, format!("raft node {id:x} is not a member"));
                }
                if conf.voters == [id] {
                    return reject(reply, "cannot remove the last member".to_string());
                }
                conf_change(ConfChangeType::RemoveNode, id, &[])
            }
        };
        if self.raw.raft.state == StateRole::Leader && self.raw.raft.has_pending_conf() {
            return reject(
                reply,
                "another membership change is in progress".to_string(),
            );
        }
        let (counter, ctx) = self.next_context();
        let r = self.raw.propose_conf_change(ctx, cc);
        self.proposed(r, counter, reply, deadline);
    }

    fn expire_waiters(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(w) = self.waiters.remove(&k) {
                let _ = w.reply.send(Err(ProposeError::Timeout));
            }
        }
    }

    fn take_waiter(&mut self, ctx: &[u8]) -> Option<Waiter> {
        let (id, inc, counter) = parse_context(ctx)?;
        if id != self.id || inc != self.incarnation {
            return None;
        }
        self.waiters.remove(&counter)
    }

    fn send(&self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            self.transport.send(msgs, &self.reporter);
        }
    }

    fn push_peers(&self) {
        let peers: Vec<(u64, String)> = self.members.iter().map(|(k, v)| (*k, v.clone())).collect();
        self.transport.set_peers(&peers);
    }

    /// Handles every pending `Ready`.
    fn on_ready(&mut self) -> Result<(), Error> {
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            // A leader's messages may leave before its own log is persisted.
            self.send(rd.take_messages());
            if !rd.snapshot().is_empty() {
                self.install_snapshot(rd.snapshot().clone())?;
            }
            let entries = rd.take_entries();
            let hs = rd.hs().cloned();
            let store = self.raw.mut_store();
            store.append(&entries).map_err(Error::State)?;
            if let Some(hs) = &hs {
                store.set_hard_state(hs.clone());
            }
            let sync = rd.must_sync()
                || hs
                    .as_ref()
                    .is_some_and(|h| self.commits_conf_change(h.commit));
            self.disk.append(&entries, hs.as_ref(), sync)?;
            if sync {
                self.synced_commit = self.raw.store().hard_state().commit;
            }
            self.send(rd.take_persisted_messages());
            self.apply(rd.take_committed_entries())?;
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                let store = self.raw.mut_store();
                store.set_commit(commit);
                let hs = store.hard_state().clone();
                let sync = self.commits_conf_change(commit);
                self.disk.append(&[], Some(&hs), sync)?;
                if sync {
                    self.synced_commit = commit;
                }
            }
            self.send(light.take_messages());
            self.apply(light.take_committed_entries())?;
            self.raw.advance_apply();
            if self.removed {
                break;
            }
        }
        Ok(())
    }

    /// Whether raising the commit index to `commit` commits a configuration change: such a
    /// commit index is synced, so that a restart re-applies the change (the configuration
    /// raft starts from is the snapshot's plus the committed changes after it).
    fn commits_conf_change(&mut self, commit: u64) -> bool {
        let store = self.raw.store();
        let found = (self.synced_commit + 1..=commit).any(|i| {
            store
                .entry(i)
                .is_some_and(|e| e.get_entry_type() != EntryType::EntryNormal)
        });
        // Either the commit index is synced now, or nothing up to it needs it.
        self.synced_commit = self.synced_commit.max(commit);
        found
    }

    /// Persists a snapshot received from the leader and restores the state machine from it.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), Error> {
        let index = snap.get_metadata().index;
        let (members, app) = {
            let (m, app) = decode_snapshot_data(&snap.data).map_err(Error::Corrupt)?;
            (m, app.to_vec())
        };
        self.disk.save_snapshot(&snap)?;
        let store = self.raw.mut_store();
        store.apply_snapshot(snap);
        let (base, hs) = (store.base(), store.hard_state().clone());
        self.disk.rewrite(base, &hs, &[])?;
        self.synced_commit = hs.commit;
        self.sm.restore(&app).map_err(|e| {
            Error::State(format!(
                "restoring the state from the leader's snapshot at index {index}: {e}"
            ))
        })?;
        self.members = members;
        self.push_peers();
        self.applied = index;
        self.applied_tx.send_replace(index);
        tracing::info!(
            "raft node {:x}: restored the snapshot at index {index}",
            self.id
        );
        Ok(())
    }

    /// Applies committed entries, each once, in order.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            let waiter = self.take_waiter(&e.context);
            let result = match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() && e.context.is_empty() {
                        Ok(Vec::new())
                    } else {
                        Ok(self.sm.apply(e.index, &e.data))
                    }
                }
                EntryType::EntryConfChange => match ConfChange::parse_from_bytes(&e.data) {
                    Ok(cc) => self.apply_conf_change(&cc),
                    Err(err) => Err(format!("undecodable configuration change: {err}")),
                },
                EntryType::EntryConfChangeV2 => match ConfChangeV2::parse_from_bytes(&e.data) {
                    Ok(cc) => self.apply_conf_change_v2(&cc),
                    Err(err) => Err(format!("undecodable configuration change: {err}")),
                },
            };
            if let Err(why) = &result {
                tracing::warn!(
                    "raft node {:x}: entry {} not applied: {why}",
                    self.id,
                    e.index
                );
            }
            if let Some(w) = waiter {
                self.answers
                    .push((w.reply, result.map_err(ProposeError::Rejected)));
            }
            self.applied = e.index;
        }
        self.applied_tx.send_replace(self.applied);
        Ok(())
    }

    fn apply_conf_change(&mut self, cc: &ConfChange) -> Result<Vec<u8>, String> {
        let cs = self.raw.apply_conf_change(cc).map_err(|e| e.to_string())?;
        match cc.get_change_type() {
            ConfChangeType::RemoveNode => {
                self.members.remove(&cc.node_id);
            }
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if !cc.context.is_empty() {
                    let addr = String::from_utf8_lossy(&cc.context).into_owned();
                    self.members.insert(cc.node_id, addr);
                }
            }
        }
        self.after_conf_change(&cs);
        Ok(Vec::new())
    }

    fn apply_conf_change_v2(&mut self, cc: &ConfChangeV2) -> Result<Vec<u8>, String> {
        let cs = self.raw.apply_conf_change(cc).map_err(|e| e.to_string())?;
        for c in &cc.changes {
            if c.get_change_type() == ConfChangeType::RemoveNode {
                self.members.remove(&c.node_id);
            }
        }
        if let [c] = cc.changes.as_slice() {
            if c.get_change_type() != ConfChangeType::RemoveNode && !cc.context.is_empty() {
                let addr = String::from_utf8_lossy(&cc.context).into_owned();
                self.members.insert(c.node_id, addr);
            }
        }
        self.after_conf_change(&cs);
        Ok(Vec::new())
    }

    fn after_conf_change(&mut self, cs: &ConfState) {
        let me = self.id;
        let member = cs.voters.contains(&me)
            || cs.learners.contains(&me)
            || cs.voters_outgoing.contains(&me);
        if !member {
            self.removed = true;
        }
        self.push_peers();
    }

    /// Takes a snapshot when enough entries were applied since the last one, or when raft
    /// needs one for a peer the newest one does not know; then compacts the log.
    fn maybe_snapshot(&mut self) -> Result<(), Error> {
        let store = self.raw.store();
        let last = store.snapshot_index();
        let due = self.applied >= last.saturating_add(self.snapshot_interval);
        if !(due || store.snapshot_wanted()) || self.applied <= last {
            return Ok(());
        }
        let Some(term) = store.term_of(self.applied) else {
            return Ok(());
        };
        let mut snap = Snapshot {
            data: encode_snapshot_data(&self.members, &self.sm.snapshot()).into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = term;
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        self.disk.save_snapshot(&snap)?;
        let compact_to = self.applied.saturating_sub(self.keep_entries);
        let store = self.raw.mut_store();
        store.set_snapshot(snap);
        store.compact(compact_to);
        let (base, hs) = (store.base(), store.hard_state().clone());
        let entries = store.entries_all().to_vec();
        self.disk.rewrite(base, &hs, &entries)?;
        self.synced_commit = hs.commit;
        tracing::debug!(
            "raft node {:x}: snapshot at index {}, log kept from {}",
            self.id,
            self.applied,
            base.0 + 1
        );
        Ok(())
    }

    /// Answers the proposers whose entries were applied.
    fn answer(&mut self) {
        for (reply, result) in self.answers.drain(..) {
            let _ = reply.send(result);
        }
    }

    fn publish(&mut self) {
        let raft = &self.raw.raft;
        let leading = raft.state == StateRole::Leader;
        let now = Instant::now();
        let active = if leading && !self.removed {
            self.members
                .keys()
                .copied()
                .filter(|m| {
                    *m == self.id
                        || self
                            .last_heard
                            .get(m)
                            .is_some_and(|t| now.duration_since(*t) <= self.election_timeout)
                })
                .collect()
        } else {
            Vec::new()
        };
        let st = Status {
            id: self.id,
            leader: if self.removed { 0 } else { raft.leader_id },
            term: raft.term,
            applied: self.applied,
            commit: raft.raft_log.committed,
            members: self.members.iter().map(|(k, v)| (*k, v.clone())).collect(),
            active,
            removed: self.removed,
            stopped: false,
        };
        self.status_tx.send_if_modified(|cur| {
            if *cur == st {
                false
            } else {
                *cur = st;
                true
            }
        });
    }
}
