//! The raft transport over swarm RPC: a queue and sender task per member, batches of messages
//! to `POST /raft/step`, snapshots streamed alone to `POST /raft/snapshot` in 1 MiB pieces.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::raft::eraftpb::{Message, MessageType};
use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::Incoming;
use protobuf::Message as PbMessage;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::raft::{Reporter, Transport};
use crate::rpc::{BodyError, BodyReader, RpcClient, MAX_JSON_BODY};

/// Where batches of raft messages are posted.
pub const STEP_PATH: &str = "/raft/step";
/// Where snapshots are posted.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Size of the pieces a snapshot is sent in.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Largest snapshot accepted.
pub const MAX_SNAPSHOT: u64 = 1 << 30;
/// Largest step body accepted (what the RPC server lets handlers read into memory).
pub const MAX_STEP_BODY: u64 = MAX_JSON_BODY;
/// Messages queued for one member beyond which the oldest are dropped (raft resends).
pub const MAX_QUEUED: usize = 4096;
/// Encoded bytes gathered into one step request, unless a single message is bigger.
const BATCH_BYTES: usize = 4 << 20;
/// Largest snapshot header (the message without its data).
const MAX_SNAPSHOT_HEADER: u32 = 16 << 20;
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// A snapshot gets this long plus a second per MiB.
const SNAPSHOT_BASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Raft messages that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid raft message batch: {0}")]
    Batch(String),
    #[error("invalid raft snapshot: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl TransportError {
    /// The status a server answers this error with.
    pub fn status(&self) -> hyper::StatusCode {
        match self {
            TransportError::Body(e) => e.status(),
            _ => hyper::StatusCode::BAD_REQUEST,
        }
    }
}

fn is_snapshot(msg: &Message) -> bool {
    msg.get_msg_type() == MessageType::MsgSnapshot
}

/// Encodes messages as a step body: each as a 4-byte big-endian length and its protobuf.
pub fn encode_step_body(msgs: &[Message]) -> Result<Bytes, TransportError> {
    let mut out = BytesMut::new();
    for msg in msgs {
        let bytes = msg
            .write_to_bytes()
            .map_err(|e| TransportError::Batch(format!("encoding: {e}")))?;
        let len = u32::try_from(bytes.len())
            .map_err(|_| TransportError::Batch("message larger than 4 GiB".into()))?;
        out.put_u32(len);
        out.put_slice(&bytes);
    }
    Ok(out.freeze())
}

/// Decodes a step body (see [`encode_step_body`]).
pub fn decode_step_body(mut body: &[u8]) -> Result<Vec<Message>, TransportError> {
    let mut msgs = Vec::new();
    while !body.is_empty() {
        let Some((len, rest)) = body.split_first_chunk::<4>() else {
            return Err(TransportError::Batch("truncated length prefix".into()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(TransportError::Batch(format!(
                "message of {len} bytes but {} left",
                rest.len()
            )));
        }
        let (bytes, rest) = rest.split_at(len);
        let msg = Message::parse_from_bytes(bytes)
            .map_err(|e| TransportError::Batch(format!("message {}: {e}", msgs.len())))?;
        msgs.push(msg);
        body = rest;
    }
    Ok(msgs)
}

/// Splits a snapshot message into the pieces of its request body: a 4-byte big-endian header
/// length, the message without its snapshot data, the data's 8-byte big-endian length, then
/// the data in [`SNAPSHOT_CHUNK`] slices (views of the data, not copies).
pub fn encode_snapshot_body(mut msg: Message) -> Result<Vec<Bytes>, TransportError> {
    let data = msg.mut_snapshot().take_data();
    let header = msg
        .write_to_bytes()
        .map_err(|e| TransportError::Snapshot(format!("encoding: {e}")))?;
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|&n| n <= MAX_SNAPSHOT_HEADER)
        .ok_or_else(|| TransportError::Snapshot("snapshot metadata too large".into()))?;
    let mut head = BytesMut::with_capacity(header.len() + 12);
    head.put_u32(header_len);
    head.put_slice(&header);
    head.put_u64(data.len() as u64);
    let mut chunks = Vec::with_capacity(1 + data.len().div_ceil(SNAPSHOT_CHUNK));
    chunks.push(head.freeze());
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + SNAPSHOT_CHUNK).min(data.len());
        chunks.push(data.slice(offset..end));
        offset = end;
    }
    Ok(chunks)
}

/// Reads a streamed snapshot request body back into its message, refusing snapshot data over
/// `limit` bytes (at most [`MAX_SNAPSHOT`]).
pub async fn read_snapshot_body(body: Incoming, limit: u64) -> Result<Message, TransportError> {
    let limit = limit.min(MAX_SNAPSHOT);
    let mut reader = BodyReader::new(body, limit + u64::from(MAX_SNAPSHOT_HEADER) + 12);
    let mut decoder = SnapshotDecoder::new(limit);
    while let Some(chunk) = reader.chunk().await? {
        decoder.push(chunk)?;
    }
    decoder.finish()
}

/// Rebuilds a snapshot message from body pieces however they were split in transit.
struct SnapshotDecoder {
    limit: u64,
    head: BytesMut,
    msg: Option<Message>,
    data_len: u64,
    data: BytesMut,
}

impl SnapshotDecoder {
    fn new(limit: u64) -> SnapshotDecoder {
        SnapshotDecoder {
            limit,
            head: BytesMut::new(),
            msg: None,
            data_len: 0,
            data: BytesMut::new(),
        }
    }

    fn push(&mut self, mut chunk: Bytes) -> Result<(), TransportError> {
        if self.msg.is_none() {
            self.head.extend_from_slice(&chunk);
            chunk = Bytes::new();
            if self.head.len() < 4 {
                return Ok(());
            }
            let header_len =
                u32::from_be_bytes([self.head[0], self.head[1], self.head[2], self.head[3]]);
            if header_len > MAX_SNAPSHOT_HEADER {
                return Err(TransportError::Snapshot(format!(
                    "metadata of {header_len} bytes"
                )));
            }
            let need = 4 + header_len as usize + 8;
            if self.head.len() < need {
                return Ok(());
            }
            let msg = Message::parse_from_bytes(&self.head[4..need - 8])
                .map_err(|e| TransportError::Snapshot(format!("metadata: {e}")))?;
            if !is_snapshot(&msg) {
                return Err(TransportError::Snapshot(format!(
                    "a {:?} message on the snapshot path",
                    msg.get_msg_type()
                )));
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&self.head[need - 8..need]);
            self.data_len = u64::from_be_bytes(len);
            if self.data_len > self.limit {
                return Err(TransportError::Snapshot(format!(
                    "{} bytes of data, more than the {} allowed",
                    self.data_len, self.limit
                )));
            }
            // Grow as data arrives rather than trusting the declared size up front.
            self.data = BytesMut::with_capacity(self.data_len.min(64 << 20) as usize);
            self.data.extend_from_slice(&self.head[need..]);
            self.head = BytesMut::new();
            self.msg = Some(msg);
        }
        self.data.extend_from_slice(&chunk);
        if self.data.len() as u64 > self.data_len {
            return Err(TransportError::Snapshot(format!(
                "more data than the {} bytes declared",
                self.data_len
            )));
        }
        Ok(())
    }

    fn finish(self) -> Result<Message, TransportError> {
        let Some(mut msg) = self.msg else {
            return Err(TransportError::Snapshot(
                "body ends inside the header".into(),
            ));
        };
        if self.data.len() as u64 != self.data_len {
            return Err(TransportError::Snapshot(format!(
                "{} of {} data bytes arrived",
                self.data.len(),
                self.data_len
            )));
        }
        msg.mut_snapshot().set_data(self.data.freeze());
        Ok(msg)
    }
}

/// One member's outgoing queue.
struct Peer {
    id: u64,
    addr: Mutex<String>,
    queue: Mutex<Queue>,
    wake: Notify,
    closed: AtomicBool,
}

#[derive(Default)]
struct Queue {
    msgs: VecDeque<Message>,
    reporter: Option<Reporter>,
}

impl Peer {
    fn addr(&self) -> String {
        self.addr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The raft [`Transport`] over swarm RPC. Sender tasks run on the runtime given at creation,
/// so `send` may be called from any thread.
pub struct NetTransport {
    client: RpcClient,
    runtime: Handle,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
}

impl NetTransport {
    /// A transport sending with `client` (mutual TLS with this node's identity), its tasks
    /// spawned on `runtime`.
    pub fn new(client: RpcClient, runtime: Handle) -> NetTransport {
        NetTransport {
            client,
            runtime,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peer(&self, id: u64) -> Option<Arc<Peer>> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(&id).cloned()
    }
}

impl Drop for NetTransport {
    fn drop(&mut self) {
        let peers = self.peers.get_mut().unwrap_or_else(|e| e.into_inner());
        for peer in peers.values() {
            peer.closed.store(true, Ordering::SeqCst);
            peer.wake.notify_one();
        }
    }
}

impl Transport for NetTransport {
    fn set_peers(&self, list: &[(u64, String)]) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|id, peer| {
            let keep = list.iter().any(|(i, _)| i == id);
            if !keep {
                peer.closed.store(true, Ordering::SeqCst);
                peer.wake.notify_one();
            }
            keep
        });
        for (id, addr) in list {
            if let Some(peer) = peers.get(id) {
                *peer.addr.lock().unwrap_or_else(|e| e.into_inner()) = addr.clone();
                continue;
            }
            let peer = Arc::new(Peer {
                id: *id,
                addr: Mutex::new(addr.clone()),
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
            });
            peers.insert(*id, peer.clone());
            self.runtime.spawn(run_peer(peer, self.client.clone()));
        }
    }

    fn send(&self, msgs: Vec<Message>, reporter: &Reporter) {
        for msg in msgs {
            let to = msg.get_to();
            let Some(peer) = self.peer(to) else {
                tracing::debug!("raft message for member {to:x}, whose address is unknown");
                reporter.unreachable(to);
                if is_snapshot(&msg) {
                    reporter.snapshot(to, false);
                }
                continue;
            };
            let mut queue = peer.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.msgs.push_back(msg);
            if queue.reporter.is_none() {
                queue.reporter = Some(reporter.clone());
            }
            if queue.msgs.len() > MAX_QUEUED {
                let before = queue.msgs.len();
                let mut excess = before - MAX_QUEUED;
                queue.msgs.retain(|m| {
                    if excess > 0 && !is_snapshot(m) {
                        excess -= 1;
                        false
                    } else {
                        true
                    }
                });
                tracing::warn!(
                    "raft messages to member {to:x} are backing up: dropped the {} oldest",
                    before - queue.msgs.len()
                );
            }
            drop(queue);
            peer.wake.notify_one();
        }
    }
}

/// What the sender task takes from the queue at once.
enum Work {
    Batch(Vec<Message>),
    Snapshot(Message),
}

fn take_work(queue: &mut Queue) -> Option<Work> {
    let first = queue.msgs.pop_front()?;
    if is_snapshot(&first) {
        return Some(Work::Snapshot(first));
    }
    let mut size = first.compute_size() as usize;
    let mut batch = vec![first];
    while let Some(next) = queue.msgs.front() {
        if is_snapshot(next) {
            break;
        }
        let next_size = next.compute_size() as usize;
        if size + next_size > BATCH_BYTES {
            break;
        }
        size += next_size;
        if let Some(next) = queue.msgs.pop_front() {
            batch.push(next);
        }
    }
    Some(Work::Batch(batch))
}

async fn run_peer(peer: Arc<Peer>, client: RpcClient) {
    loop {
        if peer.closed.load(Ordering::SeqCst) {
            return;
        }
        let taken = {
            let mut queue = peer.queue.lock().unwrap_or_else(|e| e.into_inner());
            take_work(&mut queue).map(|work| (work, queue.reporter.clone()))
        };
        let Some((work, Some(reporter))) = taken else {
            peer.wake.notified().await;
            continue;
        };
        let addr = peer.addr();
        match work {
            Work::Batch(batch) => {
                let count = batch.len();
                let result = match encode_step_body(&batch) {
                    Ok(body) => client
                        .post_bytes(&addr, STEP_PATH, body, STEP_TIMEOUT)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = result {
                    tracing::debug!(
                        "raft: {count} messages to member {:x} at {addr} dropped: {e}",
                        peer.id
                    );
                    reporter.unreachable(peer.id);
                }
            }
            Work::Snapshot(msg) => {
                let data_len = msg.get_snapshot().get_data().len();
                let timeout =
                    SNAPSHOT_BASE_TIMEOUT + Duration::from_secs((data_len / SNAPSHOT_CHUNK) as u64);
                let result = match encode_snapshot_body(msg) {
                    Ok(chunks) => client
                        .post_stream(&addr, SNAPSHOT_PATH, chunks, timeout)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match result {
                    Ok(()) => reporter.snapshot(peer.id, true),
                    Err(e) => {
                        tracing::warn!(
                            "raft: snapshot of {data_len} bytes to member {:x} at {addr} failed: {e}",
                            peer.id
                        );
                        reporter.unreachable(peer.id);
                        reporter.snapshot(peer.id, false);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{NodeRole, RootCa};
    use crate::raft::Report;
    use crate::rpc::tests::{identity, start};
    use crate::rpc::{error_response, read_body, Handler, HandlerFuture, RpcResponse};
    use crate::tls::client_config;
    use hyper::{Request, Response, StatusCode};
    use tokio::sync::mpsc;

    fn msg(to: u64, index: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.set_to(to);
        m.set_from(1);
        m.set_index(index);
        m
    }

    #[test]
    fn step_body_round_trip_and_garbage_refused() {
        let msgs: Vec<Message> = (0..5).map(|i| msg(2, i)).collect();
        let body = encode_step_body(&msgs).unwrap();
        assert_eq!(decode_step_body(&body).unwrap(), msgs);
        assert!(decode_step_body(&body[..body.len() - 1]).is_err());
        assert!(decode_step_body(&[0, 0]).is_err());
        assert!(decode_step_body(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(decode_step_body(&[0, 0, 0, 2, 0xff, 0xff]).is_err());
        assert!(decode_step_body(&[]).unwrap().is_empty());
    }

    #[test]
    fn snapshot_decoder_handles_any_split_and_refuses_lies() {
        let mut m = msg(2, 9);
        m.set_msg_type(MessageType::MsgSnapshot);
        m.mut_snapshot().mut_metadata().set_index(9);
        m.mut_snapshot().set_data(Bytes::from(vec![7u8; 3000]));
        let chunks = encode_snapshot_body(m.clone()).unwrap();
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        for step in [1, 5, 13, 4096] {
            let mut d = SnapshotDecoder::new(1 << 20);
            for piece in whole.chunks(step) {
                d.push(Bytes::copy_from_slice(piece)).unwrap();
            }
            assert_eq!(d.finish().unwrap(), m);
        }
        // Short data, extra data, over the limit, and a non-snapshot message.
        let mut d = SnapshotDecoder::new(1 << 20);
        d.push(Bytes::copy_from_slice(&whole[..whole.len() - 1]))
            .unwrap();
        assert!(d.finish().is_err());
        let mut d = SnapshotDecoder::new(1 << 20);
        let mut extra = whole.clone();
        extra.push(0);
        assert!(d.push(Bytes::from(extra)).is_err());
        let mut d = SnapshotDecoder::new(100);
        assert!(d.push(Bytes::from(whole)).is_err());
        let other = encode_snapshot_body(msg(2, 1)).unwrap();
        let mut d = SnapshotDecoder::new(100);
        assert!(d.push(other[0].clone()).is_err());
    }

    /// Decodes what arrives and passes it on to the test.
    struct RaftSink {
        steps: mpsc::UnboundedSender<Vec<Message>>,
        snapshots: mpsc::UnboundedSender<Message>,
    }

    impl Handler for RaftSink {
        fn call(&self, peer: Option<crate::ca::PeerInfo>, req: Request<Incoming>) -> HandlerFuture {
            let steps = self.steps.clone();
            let snapshots = self.snapshots.clone();
            Box::pin(async move {
                if peer.map(|p| p.role) != Some(NodeRole::Manager) {
                    return error_response(StatusCode::FORBIDDEN, "managers only");
                }
                let ok = || -> RpcResponse { Response::new(crate::rpc::ReplyBody::empty()) };
                match req.uri().path() {
                    STEP_PATH => match read_body(req.into_body(), MAX_STEP_BODY).await {
                        Ok(body) => match decode_step_body(&body) {
                            Ok(msgs) => {
                                let _ = steps.send(msgs);
                                ok()
                            }
                            Err(e) => error_response(e.status(), &e.to_string()),
                        },
                        Err(e) => e.response(),
                    },
                    SNAPSHOT_PATH => {
                        match read_snapshot_body(req.into_body(), MAX_SNAPSHOT).await {
                            Ok(m) => {
                                let _ = snapshots.send(m);
                                ok()
                            }
                            Err(e) => error_response(e.status(), &e.to_string()),
                        }
                    }
                    _ => error_response(StatusCode::NOT_FOUND, "page not found"),
                }
            })
        }
    }

    struct Setup {
        transport: NetTransport,
        reporter: Reporter,
        reports: mpsc::UnboundedReceiver<Report>,
        steps: mpsc::UnboundedReceiver<Vec<Message>>,
        snapshots: mpsc::UnboundedReceiver<Message>,
        addr: String,
        _stop: tokio::sync::watch::Sender<bool>,
    }

    async fn setup() -> Setup {
        let ca = RootCa::generate().unwrap();
        let (steps_tx, steps) = mpsc::unbounded_channel();
        let (snap_tx, snapshots) = mpsc::unbounded_channel();
        let sink = RaftSink {
            steps: steps_tx,
            snapshots: snap_tx,
        };
        let (addr, stop) = start(&ca, Arc::new(sink)).await;
        let me = identity(&ca, "manager2", NodeRole::Manager);
        let client = RpcClient::new(client_config(&ca, Some(&me)).unwrap());
        let transport = NetTransport::new(client, Handle::current());
        let (tx, reports) = mpsc::unbounded_channel();
        Setup {
            transport,
            reporter: Reporter::new(tx),
            reports,
            steps,
            snapshots,
            addr,
            _stop: stop,
        }
    }

    const WAIT: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn delivers_batches_in_order() {
        let mut s = setup().await;
        s.transport.set_peers(&[(2, s.addr.clone())]);
        s.transport
            .send((0..3).map(|i| msg(2, i)).collect(), &s.reporter);
        s.transport
            .send((3..200).map(|i| msg(2, i)).collect(), &s.reporter);
        let mut got = Vec::new();
        while got.len() < 200 {
            let batch = tokio::time::timeout(WAIT, s.steps.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(!batch.is_empty());
            got.extend(batch);
        }
        let indexes: Vec<u64> = got.iter().map(|m| m.get_index()).collect();
        assert_eq!(indexes, (0..200).collect::<Vec<_>>());
        assert!(s.reports.try_recv().is_err(), "nothing reported");
    }

    #[tokio::test]
    async fn large_snapshot_streams_in_chunks() {
        let mut s = setup().await;
        s.transport.set_peers(&[(2, s.addr.clone())]);
        let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut snap = msg(2, 40);
        snap.set_msg_type(MessageType::MsgSnapshot);
        snap.mut_snapshot().mut_metadata().set_index(40);
        snap.mut_snapshot().mut_metadata().set_term(3);
        snap.mut_snapshot().set_data(Bytes::from(data.clone()));
        let pieces = encode_snapshot_body(snap.clone()).unwrap();
        assert_eq!(pieces.len(), 21, "a header and twenty 1 MiB pieces");
        assert!(pieces[1..].iter().all(|p| p.len() == SNAPSHOT_CHUNK));
        s.transport
            .send(vec![msg(2, 39), snap, msg(2, 41)], &s.reporter);

        let first = tokio::time::timeout(WAIT, s.steps.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first[0].get_index(), 39);
        let got = tokio::time::timeout(WAIT, s.snapshots.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.get_snapshot().get_metadata().get_index(), 40);
        assert_eq!(got.get_snapshot().get_metadata().get_term(), 3);
        assert!(got.get_snapshot().get_data() == &data[..]);
        let report = tokio::time::timeout(WAIT, s.reports.recv()).await.unwrap();
        assert_eq!(report, Some(Report::Snapshot { to: 2, ok: true }));
        let last = tokio::time::timeout(WAIT, s.steps.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last[0].get_index(), 41);
    }

    #[tokio::test]
    async fn unreachable_reported_for_closed_port_and_unknown_member() {
        let mut s = setup().await;
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        s.transport.set_peers(&[(3, closed_addr)]);
        s.transport.send(vec![msg(3, 1)], &s.reporter);
        let report = tokio::time::timeout(WAIT, s.reports.recv()).await.unwrap();
        assert_eq!(report, Some(Report::Unreachable(3)));

        let mut snap = msg(3, 2);
        snap.set_msg_type(MessageType::MsgSnapshot);
        s.transport.send(vec![snap], &s.reporter);
        let report = tokio::time::timeout(WAIT, s.reports.recv()).await.unwrap();
        assert_eq!(report, Some(Report::Unreachable(3)));
        let report = tokio::time::timeout(WAIT, s.reports.recv()).await.unwrap();
        assert_eq!(report, Some(Report::Snapshot { to: 3, ok: false }));

        s.transport.send(vec![msg(9, 1)], &s.reporter);
        let report = tokio::time::timeout(WAIT, s.reports.recv()).await.unwrap();
        assert_eq!(report, Some(Report::Unreachable(9)));

        // Removed members are forgotten; a moved member's new address is used.
        s.transport.set_peers(&[(2, s.addr.clone())]);
        s.transport.send(vec![msg(3, 5)], &s.reporter);
        let report = tokio::time::timeout(WAIT, s.reports.recv()).await.unwrap();
        assert_eq!(report, Some(Report::Unreachable(3)));
        s.transport.send(vec![msg(2, 6)], &s.reporter);
        let batch = tokio::time::timeout(WAIT, s.steps.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch[0].get_index(), 6);
    }

    #[test]
    fn queue_drops_oldest_non_snapshot_messages() {
        let mut queue = Queue::default();
        let mut snap = msg(2, 0);
        snap.set_msg_type(MessageType::MsgSnapshot);
        queue.msgs.push_back(snap);
        for i in 1..=(MAX_QUEUED as u64 + 10) {
            queue.msgs.push_back(msg(2, i));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let reporter = Reporter::new(tx);
        let transport = NetTransport::new(
            RpcClient::new(crate::tls::insecure_root_fetch_config().unwrap()),
            runtime.handle().clone(),
        );
        // A peer registered without its sender task, so the queue only grows.
        let peer = Arc::new(Peer {
            id: 2,
            addr: Mutex::new("127.0.0.1:1".into()),
            queue: Mutex::new(queue),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        transport.peers.lock().unwrap().insert(2, peer.clone());
        transport.send(vec![msg(2, 99_999)], &reporter);
        let queue = peer.queue.lock().unwrap();
        assert_eq!(queue.msgs.len(), MAX_QUEUED);
        assert!(is_snapshot(&queue.msgs[0]), "the snapshot is kept");
        assert_eq!(queue.msgs[1].get_index(), 13);
        assert_eq!(queue.msgs.back().unwrap().get_index(), 99_999);
    }
}
