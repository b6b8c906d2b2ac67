//! In-process clusters over a channel transport that can cut links: elections, replication,
//! failover, partitions, restarts, snapshots for late joiners, membership changes, forced
//! new clusters, and the sealed storage's handling of wrong keys and damaged files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};

use super::*;

const DEK: [u8; 32] = [7u8; 32];

/// A directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "berth-raft-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn node(&self, id: u64) -> PathBuf {
        self.0.join(format!("n{id}"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test state machine: the ordered list of applied payloads.
#[derive(Default)]
struct Applied {
    data: Vec<Vec<u8>>,
    last_index: u64,
    out_of_order: bool,
}

struct ListSm(Arc<Mutex<Applied>>);

impl StateMachine for ListSm {
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        let mut a = self.0.lock().unwrap();
        if index <= a.last_index {
            a.out_of_order = true;
        }
        a.last_index = index;
        a.data.push(data.to_vec());
        let mut out = b"applied ".to_vec();
        out.extend_from_slice(data);
        out
    }

    fn snapshot(&self) -> Vec<u8> {
        let a = self.0.lock().unwrap();
        let mut out = Vec::new();
        for d in &a.data {
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    fn restore(&mut self, mut data: &[u8]) -> Result<(), String> {
        let mut list = Vec::new();
        while !data.is_empty() {
            if data.len() < 4 {
                return Err("short".into());
            }
            let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
            if data.len() < 4 + n {
                return Err("short".into());
            }
            list.push(data[4..4 + n].to_vec());
            data = &data[4 + n..];
        }
        let mut a = self.0.lock().unwrap();
        a.data = list;
        a.last_index = 0;
        Ok(())
    }
}

/// The in-process network: handles by id, and the links that are cut.
#[derive(Default)]
struct Net {
    nodes: Mutex<HashMap<u64, RaftHandle>>,
    cut: Mutex<HashSet<(u64, u64)>>,
}

impl Net {
    fn isolate(&self, id: u64, others: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for o in others {
            cut.insert((id, *o));
            cut.insert((*o, id));
        }
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }
}

struct ChanTransport {
    id: u64,
    net: Arc<Net>,
    peers: Mutex<Vec<(u64, String)>>,
}

impl Transport for ChanTransport {
    fn set_peers(&self, peers: &[(u64, String)]) {
        *self.peers.lock().unwrap() = peers.to_vec();
    }

    fn send(&self, msgs: Vec<Message>, reporter: &Reporter) {
        let nodes = self.net.nodes.lock().unwrap();
        let cut = self.net.cut.lock().unwrap();
        for m in msgs {
            let to = m.to;
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            match nodes.get(&to) {
                Some(h) if !cut.contains(&(self.id, to)) => {
                    h.step(m);
                    if snapshot {
                        reporter.snapshot(to, true);
                    }
                }
                _ => {
                    if snapshot {
                        reporter.snapshot(to, false);
                    }
                    reporter.unreachable(to);
                }
            }
        }
    }
}

struct TestNode {
    handle: RaftHandle,
    sm: Arc<Mutex<Applied>>,
    transport: Arc<ChanTransport>,
}

impl TestNode {
    fn data(&self) -> Vec<Vec<u8>> {
        self.sm.lock().unwrap().data.clone()
    }
}

fn addr(id: u64) -> String {
    format!("127.0.0.1:{}", 2376 + id)
}

fn config(dir: &Path, id: u64) -> Config {
    Config {
        tick: Duration::from_millis(20),
        election_ticks: 10,
        heartbeat_ticks: 1,
        snapshot_interval: 1000,
        keep_entries: 10,
        ..Config::new(id, dir.to_path_buf(), DEK)
    }
}

struct Cluster {
    dir: TempDir,
    net: Arc<Net>,
    nodes: HashMap<u64, TestNode>,
    tweak: fn(&mut Config),
}

impl Cluster {
    fn new(name: &str, tweak: fn(&mut Config)) -> Cluster {
        Cluster {
            dir: TempDir::new(name),
            net: Arc::new(Net::default()),
            nodes: HashMap::new(),
            tweak,
        }
    }

    fn config(&self, id: u64) -> Config {
        let mut c = config(&self.dir.node(id), id);
        (self.tweak)(&mut c);
        c
    }

    fn start(&mut self, id: u64, boot: Bootstrap) -> Result<(), Error> {
        let sm = Arc::new(Mutex::new(Applied::default()));
        let transport = Arc::new(ChanTransport {
            id,
            net: self.net.clone(),
            peers: Mutex::new(Vec::new()),
        });
        let handle =
            RaftHandle::start(self.config(id), ListSm(sm.clone()), transport.clone(), boot)?;
        self.net.nodes.lock().unwrap().insert(id, handle.clone());
        self.nodes.insert(
            id,
            TestNode {
                handle,
                sm,
                transport,
            },
        );
        Ok(())
    }

    async fn stop(&mut self, id: u64) {
        self.net.nodes.lock().unwrap().remove(&id);
        if let Some(n) = self.nodes.remove(&id) {
            n.handle.stop().await;
        }
    }

    async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    fn h(&self, id: u64) -> &RaftHandle {
        &self.nodes[&id].handle
    }

    /// A node that is leader in its own eyes, among `among`.
    fn leader(&self, among: &[u64]) -> Option<u64> {
        among.iter().copied().find(|id| {
            self.nodes
                .get(id)
                .is_some_and(|n| n.handle.status().leader == *id)
        })
    }

    async fn wait_leader(&self, among: &[u64]) -> u64 {
        let mut found = None;
        wait_until("a leader", || {
            found = self.leader(among);
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Starts node 1 as a new cluster and joins the others one by one.
    async fn form(&mut self, ids: &[u64]) {
        self.start(ids[0], Bootstrap::New { addr: addr(ids[0]) })
            .unwrap();
        self.wait_leader(&ids[..1]).await;
        for (n, id) in ids.iter().enumerate().skip(1) {
            let leader = self.wait_leader(&ids[..n]).await;
            self.start(*id, Bootstrap::Join).unwrap();
            retry("add_voter", || self.h(leader).add_voter(*id, addr(*id))).await;
        }
        let all = ids.to_vec();
        wait_until("every node to know every member", || {
            all.iter()
                .all(|id| self.h(*id).status().members.len() == all.len())
        })
        .await;
    }

    async fn converged(&self, ids: &[u64], len: usize) {
        wait_until("the nodes to converge", || {
            let first = self.nodes[&ids[0]].data();
            first.len() == len && ids.iter().all(|id| self.nodes[id].data() == first)
        })
        .await;
        for id in ids {
            assert!(
                !self.nodes[id].sm.lock().unwrap().out_of_order,
                "node {id} applied an entry twice or out of order"
            );
        }
    }
}

/// Polls `cond` every 20 ms for up to 20 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retries an operation that may meet an election in progress.
async fn retry<F, Fut, T>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProposeError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e @ (ProposeError::NoLeader | ProposeError::Timeout)) => {
                assert!(tokio::time::Instant::now() < deadline, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

async fn write(h: &RaftHandle, data: &str) {
    let out = retry("propose", || h.propose(data.as_bytes().to_vec())).await;
    assert_eq!(out, format!("applied {data}").into_bytes());
}

fn strings(data: &[Vec<u8>]) -> Vec<String> {
    data.iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect()
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn no_tweak(_: &mut Config) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_in_order() {
    let mut c = Cluster::new("replicate", no_tweak);
    c.form(&[1, 2, 3]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let mut expected = Vec::new();
    for round in 0..5 {
        for id in [1, 2, 3] {
            let data = format!("r{round}-n{id}");
            write(c.h(id), &data).await;
            expected.push(data);
        }
    }
    c.converged(&[1, 2, 3], expected.len()).await;
    assert_eq!(strings(&c.nodes[&1].data()), expected);
    let st = c.h(leader).status();
    assert_eq!(st.members.len(), 3);
    assert_eq!(st.members[0], (1, addr(1)));
    wait_until("the leader to see every member active", || {
        c.h(leader).status().active == vec![1, 2, 3]
    })
    .await;
    for id in [1, 2, 3] {
        assert_eq!(
            c.nodes[&id].transport.peers.lock().unwrap().clone(),
            vec![(1, addr(1)), (2, addr(2)), (3, addr(3))]
        );
    }
    // Leadership moves to a follower on request.
    let to = if leader == 3 { 1 } else { leader + 1 };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.h(to).status().leader != to {
        assert!(tokio::time::Instant::now() < deadline, "no transfer");
        c.h(leader).transfer_leadership(to).await;
    }
    write(c.h(leader), "after-transfer").await;
    c.converged(&[1, 2, 3], expected.len() + 1).await;
    // Nothing proposed reaches the disk in clear.
    for f in all_files(&c.dir.0) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(5).any(|w| w == b"r0-n1" || w == b"r4-n3"),
            "{} holds plaintext",
            f.display()
        );
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_and_restart_catch_up() {
    let mut c = Cluster::new("failover", no_tweak);
    c.form(&[1, 2, 3]).await;
    write(c.h(2), "before").await;
    let old = c.wait_leader(&[1, 2, 3]).await;
    c.stop(old).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let new = c.wait_leader(&rest).await;
    assert_ne!(new, old);
    wait_until("the new leader to see the old one inactive", || {
        let st = c.h(new).status();
        st.members.len() == 3 && st.active.len() == 2 && !st.active.contains(&old)
    })
    .await;
    for i in 0..5 {
        write(c.h(rest[i % 2]), &format!("after-{i}")).await;
    }
    c.converged(&rest, 6).await;
    // The old leader comes back from its directory and catches up.
    c.start(old, Bootstrap::Restart).unwrap();
    c.converged(&[1, 2, 3], 6).await;
    write(c.h(old), "back").await;
    c.converged(&[1, 2, 3], 7).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_steps_down() {
    let mut c = Cluster::new("partition", no_tweak);
    c.form(&[1, 2, 3]).await;
    write(c.h(1), "one").await;
    let old = c.wait_leader(&[1, 2, 3]).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    c.net.isolate(old, &rest);
    wait_until("the isolated leader to step down", || {
        c.h(old).status().leader != old
    })
    .await;
    match c.h(old).propose(b"lost".to_vec()).await {
        Err(ProposeError::NoLeader | ProposeError::Timeout) => {}
        other => panic!("a proposal on the isolated node: {other:?}"),
    }
    let new = c.wait_leader(&rest).await;
    assert_ne!(new, old);
    write(c.h(new), "two").await;
    c.converged(&rest, 2).await;
    c.net.heal();
    c.converged(&[1, 2, 3], 2).await;
    write(c.h(old), "three").await;
    c.converged(&[1, 2, 3], 3).await;
    c.stop_all().await;
}

fn small_snapshots(c: &mut Config) {
    c.snapshot_interval = 5;
    c.keep_entries = 2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_a_snapshot() {
    let mut c = Cluster::new("snapshot", small_snapshots);
    c.form(&[1, 2]).await;
    for i in 0..30 {
        write(c.h(1 + i % 2), &format!("e{i}")).await;
    }
    c.converged(&[1, 2], 30).await;
    wait_until("one newer snapshot kept, the older ones removed", || {
        let snaps: Vec<PathBuf> = all_files(&c.dir.node(1))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .collect();
        snaps.len() == 1 && !snaps[0].ends_with("snap-0000000000000001.snap")
    })
    .await;
    let leader = c.wait_leader(&[1, 2]).await;
    c.start(3, Bootstrap::Join).unwrap();
    retry("add_voter", || c.h(leader).add_voter(3, addr(3))).await;
    c.converged(&[1, 2, 3], 30).await;
    assert!(
        all_files(&c.dir.node(3))
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "snap")),
        "the joiner stored the snapshot it got"
    );
    write(c.h(3), "last").await;
    c.converged(&[1, 2, 3], 31).await;
    // Restarting every node restores from the snapshots and replays the rest.
    c.stop_all().await;
    for id in [1, 2, 3] {
        c.start(id, Bootstrap::Restart).unwrap();
    }
    c.converged(&[1, 2, 3], 31).await;
    assert_eq!(c.h(1).status().members.len(), 3);
    write(c.h(2), "again").await;
    c.converged(&[1, 2, 3], 32).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_member() {
    let mut c = Cluster::new("remove", no_tweak);
    c.form(&[1, 2, 3]).await;
    write(c.h(1), "x").await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let gone = if leader == 3 { 2 } else { 3 };
    assert!(matches!(
        c.h(leader).remove_member(99).await,
        Err(ProposeError::Rejected(_))
    ));
    retry("remove_member", || c.h(leader).remove_member(gone)).await;
    assert!(c
        .h(leader)
        .status()
        .members
        .iter()
        .all(|(id, _)| *id != gone));
    wait_until("the removed node to notice", || c.h(gone).status().removed).await;
    assert_eq!(
        c.h(gone).propose(b"no".to_vec()).await,
        Err(ProposeError::Removed)
    );
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != gone).collect();
    write(c.h(rest[0]), "y").await;
    write(c.h(rest[1]), "z").await;
    c.converged(&rest, 3).await;
    wait_until("the transport to forget the removed node", || {
        c.nodes[&leader].transport.peers.lock().unwrap().len() == 2
    })
    .await;
    // The leader removes itself; the last member leads alone.
    let leader = c.wait_leader(&rest).await;
    let last = if rest[0] == leader { rest[1] } else { rest[0] };
    retry("remove the leader", || c.h(leader).remove_member(leader)).await;
    wait_until("the old leader to stop", || c.h(leader).status().removed).await;
    c.wait_leader(&[last]).await;
    assert!(matches!(
        c.h(last).remove_member(last).await,
        Err(ProposeError::Rejected(_))
    ));
    write(c.h(last), "alone").await;
    assert_eq!(c.nodes[&last].data().len(), 4);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_from_one_survivor() {
    let mut c = Cluster::new("force", small_snapshots);
    c.form(&[1, 2, 3]).await;
    for i in 0..12 {
        write(c.h(1 + i % 3), &format!("d{i}")).await;
    }
    c.converged(&[1, 2, 3], 12).await;
    let before = c.nodes[&2].data();
    c.stop_all().await;
    c.start(
        2,
        Bootstrap::ForceNewCluster {
            addr: "127.0.0.1:4000".to_string(),
        },
    )
    .unwrap();
    c.wait_leader(&[2]).await;
    assert_eq!(c.nodes[&2].data(), before);
    assert_eq!(
        c.h(2).status().members,
        vec![(2, "127.0.0.1:4000".to_string())]
    );
    write(c.h(2), "alone").await;
    assert_eq!(c.nodes[&2].data().len(), 13);
    // The new membership is durable.
    c.stop(2).await;
    c.start(2, Bootstrap::Restart).unwrap();
    c.wait_leader(&[2]).await;
    assert_eq!(c.nodes[&2].data().len(), 13);
    write(c.h(2), "still").await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_restart_replays_exactly_once() {
    let mut c = Cluster::new("restart", small_snapshots);
    c.start(1, Bootstrap::New { addr: addr(1) }).unwrap();
    for i in 0..13 {
        write(c.h(1), &format!("s{i}")).await;
    }
    let before = c.nodes[&1].data();
    let applied = c.h(1).status().applied;
    c.stop(1).await;
    assert!(c.start(1, Bootstrap::New { addr: addr(1) }).is_err());
    assert!(c.start(1, Bootstrap::Join).is_err());
    c.start(1, Bootstrap::Restart).unwrap();
    let mut rx = c.h(1).applied();
    wait_until("the replay", || *rx.borrow_and_update() >= applied).await;
    assert_eq!(c.nodes[&1].data(), before);
    c.wait_leader(&[1]).await;
    write(c.h(1), "next").await;
    assert_eq!(c.nodes[&1].data().len(), 14);
    assert!(!c.nodes[&1].sm.lock().unwrap().out_of_order);
    c.stop_all().await;
}

async fn single_node_with_data(c: &mut Cluster) -> PathBuf {
    c.start(1, Bootstrap::New { addr: addr(1) }).unwrap();
    for i in 0..8 {
        write(c.h(1), &format!("w{i}")).await;
    }
    c.stop(1).await;
    c.dir.node(1).join("wal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_an_error() {
    let mut c = Cluster::new("wrongkey", no_tweak);
    single_node_with_data(&mut c).await;
    let mut cfg = c.config(1);
    cfg.dek = [9u8; 32];
    let sm = ListSm(Arc::new(Mutex::new(Applied::default())));
    let t = Arc::new(ChanTransport {
        id: 1,
        net: c.net.clone(),
        peers: Mutex::new(Vec::new()),
    });
    match RaftHandle::start(cfg, sm, t, Bootstrap::Restart) {
        Err(Error::Decrypt(_)) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("started with a wrong key"),
    }
    // The right key still works.
    c.start(1, Bootstrap::Restart).unwrap();
    c.wait_leader(&[1]).await;
    assert_eq!(c.nodes[&1].data().len(), 8);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_dropped() {
    let mut c = Cluster::new("torn", no_tweak);
    let wal = single_node_with_data(&mut c).await;
    let len = std::fs::metadata(&wal).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    c.start(1, Bootstrap::Restart).unwrap();
    c.wait_leader(&[1]).await;
    write(c.h(1), "after-torn").await;
    let data = c.nodes[&1].data();
    assert!(data.len() >= 8, "{data:?}");
    c.stop(1).await;
    // A zero-filled tail (a crash after the file grew) is dropped too.
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&wal, &bytes).unwrap();
    c.start(1, Bootstrap::Restart).unwrap();
    c.wait_leader(&[1]).await;
    assert!(strings(&c.nodes[&1].data()).contains(&"after-torn".to_string()));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_record_is_an_error() {
    let mut c = Cluster::new("damaged", no_tweak);
    let wal = single_node_with_data(&mut c).await;
    let good = std::fs::read(&wal).unwrap();
    for at in [good.len() / 2, 2, 200] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&wal, &bad).unwrap();
        let err = c.start(1, Bootstrap::Restart).err();
        assert!(
            matches!(err, Some(Error::Corrupt(_) | Error::Decrypt(_))),
            "byte {at} flipped: {err:?}"
        );
    }
    std::fs::write(&wal, &good).unwrap();
    // A damaged snapshot file is an error as well.
    let snap = all_files(&c.dir.node(1))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let good_snap = std::fs::read(&snap).unwrap();
    let mut bad = good_snap.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&snap, &bad).unwrap();
    assert!(c.start(1, Bootstrap::Restart).is_err());
    std::fs::write(&snap, &good_snap).unwrap();
    c.start(1, Bootstrap::Restart).unwrap();
    c.wait_leader(&[1]).await;
    assert_eq!(c.nodes[&1].data().len(), 8);
    c.stop_all().await;
}

fn slow_elections(c: &mut Config) {
    c.election_ticks = 500;
    c.proposal_timeout = Duration::from_millis(400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_time_out_and_fail_on_stop() {
    let mut c = Cluster::new("waiters", slow_elections);
    // A joiner nobody contacts has no leader.
    c.start(5, Bootstrap::Join).unwrap();
    assert_eq!(
        c.h(5).propose(b"x".to_vec()).await,
        Err(ProposeError::NoLeader)
    );
    c.stop(5).await;
    // Node 2 is added but never started: nothing commits any more.
    c.start(1, Bootstrap::New { addr: addr(1) }).unwrap();
    c.wait_leader(&[1]).await;
    write(c.h(1), "committed").await;
    c.h(1).add_voter(2, addr(2)).await.unwrap();
    assert_eq!(
        c.h(1).propose(b"stuck".to_vec()).await,
        Err(ProposeError::Timeout)
    );
    let h = c.h(1).clone();
    let pending = tokio::spawn(async move { h.propose(b"pending".to_vec()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.stop(1).await;
    assert_eq!(pending.await.unwrap(), Err(ProposeError::Stopped));
    c.stop_all().await;
}
