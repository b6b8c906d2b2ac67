//! The in-memory view of the durable raft state that tikv raft reads through its `Storage`
//! trait: hard state, the newest snapshot, and the log entries kept after the compaction point.

use std::cell::Cell;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// Log, hard state and newest snapshot as last persisted.
pub(crate) struct LogStore {
    hard_state: HardState,
    /// The configuration raft starts from (the snapshot's); later changes are re-applied
    /// from the log.
    conf_state: ConfState,
    snapshot: Snapshot,
    base_index: u64,
    base_term: u64,
    /// `entries[i].index == base_index + 1 + i`.
    entries: Vec<Entry>,
    /// Set when raft asked for a snapshot the store does not have yet (the newest one does not
    /// include the peer it is for); the node loop then takes a fresh one.
    wanted: Cell<bool>,
}

fn conf_has(cs: &ConfState, id: u64) -> bool {
    cs.voters.contains(&id) || cs.learners.contains(&id) || cs.voters_outgoing.contains(&id)
}

impl LogStore {
    pub(crate) fn new(
        hard_state: HardState,
        snapshot: Option<Snapshot>,
        base: (u64, u64),
        entries: Vec<Entry>,
    ) -> LogStore {
        let snapshot = snapshot.unwrap_or_default();
        LogStore {
            hard_state,
            conf_state: snapshot.get_metadata().get_conf_state().clone(),
            snapshot,
            base_index: base.0,
            base_term: base.1,
            entries,
            wanted: Cell::new(false),
        }
    }

    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub(crate) fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub(crate) fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub(crate) fn base(&self) -> (u64, u64) {
        (self.base_index, self.base_term)
    }

    pub(crate) fn entries_all(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    /// A kept entry.
    pub(crate) fn entry(&self, idx: u64) -> Option<&Entry> {
        if idx <= self.base_index {
            return None;
        }
        self.entries.get((idx - self.base_index - 1) as usize)
    }

    /// Term of a kept entry (or of the compaction point).
    pub(crate) fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.base_index {
            return Some(self.base_term);
        }
        if idx < self.base_index || idx > self.last() {
            return None;
        }
        self.entries
            .get((idx - self.base_index - 1) as usize)
            .map(|e| e.term)
    }

    /// Appends entries persisted to disk, replacing any conflicting tail.
    pub(crate) fn append(&mut self, ents: &[Entry]) -> Result<(), String> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if first.index <= self.base_index || first.index > self.last() + 1 {
            return Err(format!(
                "appending log entries from {} to a log holding {}..={}",
                first.index,
                self.base_index + 1,
                self.last()
            ));
        }
        self.entries
            .truncate((first.index - self.base_index - 1) as usize);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    /// Replaces the whole log by a snapshot received from the leader.
    pub(crate) fn apply_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata();
        self.base_index = meta.index;
        self.base_term = meta.term;
        self.entries.clear();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot = snap;
    }

    /// Records a snapshot taken locally.
    pub(crate) fn set_snapshot(&mut self, snap: Snapshot) {
        self.wanted.set(false);
        self.snapshot = snap;
    }

    /// Drops the entries up to and including `to`, which becomes the compaction point.
    pub(crate) fn compact(&mut self, to: u64) {
        let Some(term) = self.term_of(to) else {
            return;
        };
        if to <= self.base_index {
            return;
        }
        self.entries.drain(..(to - self.base_index) as usize);
        self.base_index = to;
        self.base_term = term;
    }

    /// Whether raft asked for a snapshot the store could not give.
    pub(crate) fn snapshot_wanted(&self) -> bool {
        self.wanted.get()
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.base_index - 1) as usize;
        let hi = (high - self.base_index - 1) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.base_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        if meta.index == 0 || meta.index < request_index || !conf_has(meta.get_conf_state(), to) {
            self.wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
