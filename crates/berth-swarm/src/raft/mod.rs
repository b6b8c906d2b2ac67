//! The consensus module's network interface: how a raft node hands messages to the transport
//! and how the transport reports failed deliveries back to the node.

use tokio::sync::mpsc::UnboundedSender;

/// What the transport tells the raft node about deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A message to this member could not be delivered (raft: `report_unreachable`).
    Unreachable(u64),
    /// A snapshot to this member was delivered or not (raft: `report_snapshot`).
    Snapshot { to: u64, ok: bool },
}

/// The handle the transport reports through; reports go to the raft node's loop.
#[derive(Clone, Debug)]
pub struct Reporter {
    tx: UnboundedSender<Report>,
}

impl Reporter {
    pub fn new(tx: UnboundedSender<Report>) -> Reporter {
        Reporter { tx }
    }

    /// Member `id` could not be reached.
    pub fn unreachable(&self, id: u64) {
        // A stopped node loop has no use for the report.
        let _ = self.tx.send(Report::Unreachable(id));
    }

    /// The snapshot sent to member `id` arrived (`ok`) or not.
    pub fn snapshot(&self, id: u64, ok: bool) {
        let _ = self.tx.send(Report::Snapshot { to: id, ok });
    }
}

/// Carries raft messages between members.
pub trait Transport: Send + Sync + 'static {
    /// The members' addresses (id, "host:port"), given again on every membership change.
    fn set_peers(&self, peers: &[(u64, String)]);
    /// Queues messages for delivery; never blocks. Failures come back through `reporter`.
    fn send(&self, msgs: Vec<raft::eraftpb::Message>, reporter: &Reporter);
}
