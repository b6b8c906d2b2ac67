//! System tests of the overlay data plane on the real kernel (run as root): two "nodes", each a
//! network namespace with its own `NetworkService`, joined by a veth underlay (192.0.2.0/24),
//! "task" namespaces on their overlay bridges, and a client namespace beside node A.
//!
//! Every namespace is held only by file descriptors (no bind mount), so links and namespaces
//! vanish when the test ends, passes or fails; all traffic stays inside them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use berth_api::network::{CreateRequest, Ipam, IpamConfig};
use berth_network::config::NetConfig;
use berth_network::driver::overlay::{
    OPT_BRIDGE_ADDR, OPT_ENCRYPTED, OPT_INGRESS, OPT_LOCAL, OPT_VNI,
};
use berth_network::lb::{program_ingress_return, program_vips, IngressNode, VipBackends};
use berth_network::link::{mac_for, random_veth_name, Endpoint};
use berth_network::nft::Proto;
use berth_network::service::{IngressPort, NetworkService, OverlayPeer};
use nix::sched::{setns, unshare, CloneFlags};

/// A network namespace held only by a file descriptor.
struct Netns {
    fd: OwnedFd,
}

impl Netns {
    fn new() -> Netns {
        let fd = std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open netns"))
        })
        .join()
        .expect("netns thread");
        let ns = Netns { fd };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(args)
            .output()
            .expect("run nsenter")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn clone_fd(&self) -> OwnedFd {
        self.fd.try_clone().expect("dup netns fd")
    }

    /// Names of the links in the namespace.
    fn links(&self) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["ip", "-j", "link", "show"])).expect("ip -j");
        v.as_array()
            .expect("link list")
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }
}

/// Joins `a` and `b` with a veth pair: `a_if` with `a_addr`, `b_if` with `b_addr` (both /24).
fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    let tmp = random_veth_name();
    a.ok(&[
        "ip", "link", "add", a_if, "type", "veth", "peer", "name", &tmp,
    ]);
    a.ok(&["ip", "link", "set", &tmp, "netns", &b.path()]);
    b.ok(&["ip", "link", "set", &tmp, "name", b_if]);
    a.ok(&["ip", "addr", "add", a_addr, "dev", a_if]);
    b.ok(&["ip", "addr", "add", b_addr, "dev", b_if]);
    a.ok(&["ip", "link", "set", a_if, "up"]);
    b.ok(&["ip", "link", "set", b_if, "up"]);
}

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &NetworkService) + Send>;

/// A berth node: a thread inside the node's namespace with a runtime and a `NetworkService`
/// (its netlink socket, nft runs and sysctls are the namespace's).
struct Node {
    ns: Netns,
    userland_proxy: bool,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    addr: Ipv4Addr,
}

/// Starts a node's thread: joins `fd`, opens a `NetworkService` on `dir` and runs jobs.
/// `userland_proxy`: the daemon's setting (no loopback NAT for published ports).
fn spawn_node(
    fd: OwnedFd,
    dir: PathBuf,
    userland_proxy: bool,
) -> (mpsc::Sender<Job>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns node");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = NetConfig {
            bridge: "bt0".into(),
            bip: (Ipv4Addr::new(10, 254, 0, 1), 24),
            fixed_cidr: None,
            mtu: 1500,
            icc: true,
            ip_forward: true,
            userland_proxy,
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            ipv6: false,
            fixed_cidr_v6: None,
            address_pools: vec![],
            host_gateway_ip: None,
        };
        let svc = rt
            .block_on(NetworkService::open(
                cfg,
                &dir.join("data"),
                &dir.join("run"),
                &|p| Ok(p.to_path_buf()),
            ))
            .expect("open service");
        svc.rebuild_table(&[]).expect("table");
        ready_tx.send(()).expect("ready");
        for job in rx {
            job(&rt, &svc);
        }
    });
    ready_rx.recv().expect("node thread died at open");
    (tx, thread)
}

impl Node {
    fn new(tag: &str, ns: Netns, addr: Ipv4Addr, userland_proxy: bool) -> Node {
        let dir = std::env::temp_dir().join(format!("berth-ovtest-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let (tx, thread) = spawn_node(ns.clone_fd(), dir.clone(), userland_proxy);
        Node {
            ns,
            userland_proxy,
            jobs: Some(tx),
            thread: Some(thread),
            dir,
            addr,
        }
    }

    /// Stops the node's service and opens a new one on the same records and namespace (a
    /// daemon restart with live restore).
    fn restart(&mut self) {
        self.stop();
        let (tx, thread) = spawn_node(self.ns.clone_fd(), self.dir.clone(), self.userland_proxy);
        self.jobs = Some(tx);
        self.thread = Some(thread);
    }

    fn stop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&tokio::runtime::Runtime, &NetworkService) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .expect("node running")
            .send(Box::new(move |rt, svc| {
                let _ = tx.send(f(rt, svc));
            }))
            .expect("node thread gone");
        rx.recv().expect("node job panicked")
    }

    /// Creates an overlay network through the service.
    fn create(&self, name: &str, vni: u32, subnet: &str, gw: &str, ingress: Option<&str>) {
        let req = self.request(name, vni, subnet, gw, ingress);
        self.call(move |rt, svc| rt.block_on(svc.create(req)))
            .expect("create overlay");
    }

    /// The create request of an overlay network on this node.
    fn request(
        &self,
        name: &str,
        vni: u32,
        subnet: &str,
        gw: &str,
        ingress: Option<&str>,
    ) -> CreateRequest {
        let mut options = BTreeMap::from([
            (OPT_VNI.to_string(), vni.to_string()),
            (OPT_LOCAL.to_string(), self.addr.to_string()),
        ]);
        if let Some(b) = ingress {
            options.insert(OPT_BRIDGE_ADDR.into(), b.into());
            options.insert(OPT_INGRESS.into(), "true".into());
        }
        CreateRequest {
            name: name.into(),
            driver: "overlay".into(),
            scope: "swarm".into(),
            ingress: ingress.is_some(),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: subnet.into(),
                    gateway: gw.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(options),
            ..Default::default()
        }
    }

    fn peers(&self, net: &str, peers: Vec<OverlayPeer>) {
        let net = net.to_string();
        self.call(move |rt, svc| rt.block_on(svc.set_overlay_peers(&net, &peers, None)))
            .expect("set peers");
    }

    /// Plugs `task` into `bridge` with `ip`/24 (MAC from the address), like the driver's join.
    fn plug(&self, bridge: &str, task: &Netns, ip: Ipv4Addr, gateway: Option<Ipv4Addr>) {
        let ep = Endpoint {
            bridge: bridge.into(),
            host_ifname: random_veth_name(),
            ifname: "eth0".into(),
            mac: mac_for(ip),
            ip: Some(ip),
            prefix: 24,
            gateway,
            mtu: 1450,
            ip6: None,
            gateway6: None,
            extra: vec![],
            sysctls: vec![],
        };
        let fd = task.clone_fd();
        self.call(move |rt, svc| rt.block_on(svc.host.link.connect_endpoint(&ep, fd.as_fd())))
            .expect("plug task");
    }

    fn remove(&self, net: &str) {
        let net = net.to_string();
        self.call(move |rt, svc| {
            let n = svc.find(&net)?;
            rt.block_on(svc.remove(&n, false))
        })
        .expect("remove network");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP server on port 80 inside a namespace: answers each connection with "<its address>
/// <the client's address>" and closes it. Stops when dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns) -> Server {
        Server::start_on(ns, "0.0.0.0:80")
    }

    /// The same server listening on `addr`.
    fn start_on(ns: &Netns, addr: &str) -> Server {
        let addr = sa(addr);
        let fd = ns.clone_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns server");
            let l = TcpListener::bind(addr).expect("bind the server");
            l.set_nonblocking(true).expect("nonblocking");
            ready_tx.send(()).expect("ready");
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, peer)) => {
                        let local = c.local_addr().expect("local addr");
                        let _ = c.set_nonblocking(false);
                        let _ = write!(c, "{} {}", local.ip(), peer.ip());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx.recv().expect("server thread died");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects `count` times from inside `ns` to `to`: each answer, or the error.
fn connect(ns: &Netns, to: SocketAddr, count: usize) -> Vec<Result<String, std::io::ErrorKind>> {
    let fd = ns.clone_fd();
    std::thread::spawn(move || {
        setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns client");
        (0..count)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                    .map_err(|e| e.kind())?;
                s.set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| e.kind())?;
                let mut out = String::new();
                s.read_to_string(&mut out).map_err(|e| e.kind())?;
                Ok(out)
            })
            .collect()
    })
    .join()
    .expect("client thread")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

fn two_nodes(tag: &str) -> (Node, Node) {
    let (na, nb) = (Netns::new(), Netns::new());
    veth(&na, "eth0", "192.0.2.1/24", &nb, "eth0", "192.0.2.2/24");
    // Node B runs with the userland proxy (published ports' loopback is not NATed).
    let a = Node::new(&format!("{tag}a"), na, ip("192.0.2.1"), false);
    let b = Node::new(&format!("{tag}b"), nb, ip("192.0.2.2"), true);
    (a, b)
}

fn peer(addr: &str, node: &Node) -> OverlayPeer {
    OverlayPeer {
        ip: ip(addr),
        mac: mac_for(ip(addr)),
        node: node.addr,
    }
}

#[test]
fn overlay_spans_nodes_balances_vips_and_tears_down() {
    let (mut a, b) = two_nodes("ov");
    a.create("ov", 4097, "10.10.0.0/24", "10.10.0.1", None);
    b.create("ov", 4097, "10.10.0.0/24", "10.10.0.1", None);
    for n in [&a, &b] {
        let links = n.ns.links();
        assert!(links.contains(&"bov4097".to_string()), "{links:?}");
        assert!(links.contains(&"vxl4097".to_string()), "{links:?}");
        let link = |name: &str| -> serde_json::Value {
            let v: serde_json::Value =
                serde_json::from_str(&n.ns.ok(&["ip", "-j", "-d", "link", "show", name]))
                    .expect("ip -j");
            v[0].clone()
        };
        let (vx, br) = (link("vxl4097"), link("bov4097"));
        assert_eq!(vx["mtu"], 1450);
        assert_eq!(br["mtu"], 1450);
        assert_eq!(vx["master"], "bov4097");
        assert_eq!(vx["linkinfo"]["info_data"]["id"], 4097);
        assert_eq!(vx["linkinfo"]["info_data"]["port"], 4789);
        assert_eq!(vx["linkinfo"]["info_data"]["learning"], false);
        assert_eq!(vx["linkinfo"]["info_data"]["proxy"], true);
        assert_eq!(vx["linkinfo"]["info_data"]["udp_csum"], false);
        assert_eq!(vx["linkinfo"]["info_data"]["local"], n.addr.to_string());
        assert_eq!(br["address"], "02:42:0a:0a:00:01");
        assert!(n
            .call(|_, svc| svc.find("ov").map(|n| n.serves_dns()))
            .expect("find"));
    }
    let (client, a1) = (Netns::new(), Netns::new());
    let (b1, b2) = (Netns::new(), Netns::new());
    let gw = Some(ip("10.10.0.1"));
    a.plug("bov4097", &client, ip("10.10.0.12"), gw);
    a.plug("bov4097", &a1, ip("10.10.0.11"), gw);
    b.plug("bov4097", &b1, ip("10.10.0.21"), gw);
    b.plug("bov4097", &b2, ip("10.10.0.22"), gw);
    let _servers: Vec<Server> = [&a1, &b1, &b2].iter().map(|n| Server::start(n)).collect();
    a.peers("ov", vec![peer("10.10.0.21", &b), peer("10.10.0.22", &b)]);
    // The node's own endpoints in the list are skipped.
    b.peers(
        "ov",
        vec![
            peer("10.10.0.11", &a),
            peer("10.10.0.12", &a),
            peer("10.10.0.21", &b),
        ],
    );
    // Setting the same list again changes nothing and succeeds.
    a.peers("ov", vec![peer("10.10.0.21", &b), peer("10.10.0.22", &b)]);
    let neigh = a.ns.ok(&["ip", "neigh", "show", "dev", "vxl4097"]);
    assert_eq!(neigh.lines().count(), 2, "{neigh}");
    assert!(
        neigh.contains("10.10.0.21 lladdr 02:42:0a:0a:00:15 PERMANENT"),
        "{neigh}"
    );
    let fdb = b.ns.ok(&["bridge", "fdb", "show", "dev", "vxl4097"]);
    assert!(
        fdb.contains("02:42:0a:0a:00:0b dst 192.0.2.1 self permanent"),
        "{fdb}"
    );
    assert!(!fdb.contains("dst 192.0.2.2"), "{fdb}");

    // Cross-node TCP over the overlay.
    let got = connect(&client, sa("10.10.0.21:80"), 1);
    assert_eq!(got, vec![Ok("10.10.0.21 10.10.0.12".to_string())]);

    // A daemon restart brings the existing bridge and VXLAN device up again as they are;
    // the programmed peers stay until the next full list.
    a.restart();
    assert_eq!(
        connect(&client, sa("10.10.0.22:80"), 1),
        vec![Ok("10.10.0.22 10.10.0.12".to_string())]
    );
    a.peers("ov", vec![peer("10.10.0.21", &b)]);
    let neigh = a.ns.ok(&["ip", "neigh", "show", "dev", "vxl4097"]);
    assert_eq!(neigh.lines().count(), 1, "{neigh}");
    let fdb = a.ns.ok(&["bridge", "fdb", "show", "dev", "vxl4097"]);
    assert!(!fdb.contains("02:42:0a:0a:00:16 dst"), "{fdb}");
    // A changed data-path address makes the device again; peers come back with the list.
    for local in ["192.0.2.9", "192.0.2.1"] {
        let local = ip(local);
        a.call(move |rt, svc| {
            rt.block_on(
                svc.host
                    .link
                    .ensure_vxlan("vxl4097", 4097, local, 1450, "bov4097"),
            )
        })
        .expect("ensure_vxlan");
        let v: serde_json::Value =
            serde_json::from_str(&a.ns.ok(&["ip", "-j", "-d", "link", "show", "vxl4097"]))
                .expect("ip -j");
        assert_eq!(v[0]["linkinfo"]["info_data"]["local"], local.to_string());
        assert_eq!(v[0]["master"], "bov4097");
    }
    // A device with outer UDP checksums (an older berth's) is made again without them.
    a.ns.ok(&["ip", "link", "del", "vxl4097"]);
    a.ns.ok(&[
        "ip",
        "link",
        "add",
        "vxl4097",
        "type",
        "vxlan",
        "id",
        "4097",
        "local",
        "192.0.2.1",
        "dstport",
        "4789",
        "udpcsum",
    ]);
    a.call(|rt, svc| {
        rt.block_on(
            svc.host
                .link
                .ensure_vxlan("vxl4097", 4097, ip("192.0.2.1"), 1450, "bov4097"),
        )
    })
    .expect("ensure_vxlan");
    let v: serde_json::Value =
        serde_json::from_str(&a.ns.ok(&["ip", "-j", "-d", "link", "show", "vxl4097"]))
            .expect("ip -j");
    assert_eq!(v[0]["linkinfo"]["info_data"]["udp_csum"], false);
    assert_eq!(v[0]["master"], "bov4097");
    a.peers("ov", vec![peer("10.10.0.21", &b), peer("10.10.0.22", &b)]);
    // A list naming an address or MAC twice is refused.
    let twice = vec![peer("10.10.0.21", &b), peer("10.10.0.21", &b)];
    let err = a
        .call(move |rt, svc| rt.block_on(svc.set_overlay_peers("ov", &twice, None)))
        .expect_err("duplicate peers");
    assert!(err.to_string().contains("given twice"), "{err}");

    // A VIP spreads 60 connections evenly over its 3 backends, keeping the client's address;
    // a VIP without backends refuses connections.
    let vips = vec![
        VipBackends {
            vip: ip("10.10.0.100"),
            backends: vec![ip("10.10.0.22"), ip("10.10.0.11"), ip("10.10.0.21")],
        },
        VipBackends {
            vip: ip("10.10.0.101"),
            backends: vec![],
        },
    ];
    program_vips(client.fd.as_fd(), &vips).expect("program vips");
    program_vips(client.fd.as_fd(), &vips).expect("program vips again");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in connect(&client, sa("10.10.0.100:80"), 60) {
        let answer = r.expect("connection through the VIP");
        let (backend, from) = answer.split_once(' ').expect("answer");
        assert_eq!(from, "10.10.0.12");
        *counts.entry(backend.to_string()).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            ("10.10.0.11".to_string(), 20),
            ("10.10.0.21".to_string(), 20),
            ("10.10.0.22".to_string(), 20),
        ])
    );
    let refused = connect(&client, sa("10.10.0.101:80"), 1);
    assert_eq!(refused, vec![Err(std::io::ErrorKind::ConnectionRefused)]);
    // An update moves the VIP to one backend (element changes only).
    program_vips(
        client.fd.as_fd(),
        &[VipBackends {
            vip: ip("10.10.0.100"),
            backends: vec![ip("10.10.0.22")],
        }],
    )
    .expect("update vips");
    for r in connect(&client, sa("10.10.0.100:80"), 5) {
        assert_eq!(r, Ok("10.10.0.22 10.10.0.12".to_string()));
    }
    let refused = connect(&client, sa("10.10.0.101:80"), 1);
    assert_eq!(refused.len(), 1);
    assert!(refused[0].is_err(), "{refused:?}");

    // Peers removed: no traffic across nodes any more.
    a.peers("ov", vec![]);
    let neigh = a.ns.ok(&["ip", "neigh", "show", "dev", "vxl4097"]);
    assert!(neigh.trim().is_empty(), "{neigh}");
    let gone = connect(&client, sa("10.10.0.21:80"), 1);
    assert!(gone[0].is_err(), "{gone:?}");
    assert_eq!(
        connect(&client, sa("10.10.0.11:80"), 1),
        vec![Ok("10.10.0.11 10.10.0.12".to_string())]
    );

    // Removing the network leaves no links and no set elements.
    drop(_servers);
    for n in [&a, &b] {
        n.remove("ov");
        let links = n.ns.links();
        assert!(
            !links
                .iter()
                .any(|l| l.starts_with("bov") || l.starts_with("vxl")),
            "{links:?}"
        );
        let table = n.ns.ok(&["nft", "list", "table", "ip", "berth_bt0"]);
        assert!(!table.contains("bov4097"), "{table}");
    }
}

#[test]
fn ingress_reaches_a_remote_task_with_the_client_address() {
    let (a, b) = two_nodes("in");
    let client = Netns::new();
    veth(
        &a.ns,
        "eth1",
        "198.51.100.1/24",
        &client,
        "eth0",
        "198.51.100.2/24",
    );
    client.ok(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
    a.create("ingress", 4096, "10.0.0.0/24", "10.0.0.1", Some("10.0.0.2"));
    b.create("ingress", 4096, "10.0.0.0/24", "10.0.0.1", Some("10.0.0.3"));
    let addr =
        a.ns.ok(&["ip", "-4", "-o", "addr", "show", "dev", "bov4096"]);
    assert!(addr.contains("10.0.0.2/24"), "{addr}");
    // The task on node B, without a default route: replies find their way only through the
    // return path.
    let task = Netns::new();
    // Strict reverse-path filtering, as some hosts configure it.
    task.ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    b.plug("bov4096", &task, ip("10.0.0.5"), None);
    let _server = Server::start(&task);
    a.peers("ingress", vec![peer("10.0.0.5", &b), peer("10.0.0.3", &b)]);
    b.peers("ingress", vec![peer("10.0.0.2", &a)]);
    let port = IngressPort {
        proto: Proto::Tcp,
        published: 8080,
        backends: vec![(ip("10.0.0.5"), 80)],
    };
    for n in [&a, &b] {
        let ports = vec![port.clone()];
        n.call(move |_, svc| svc.set_ingress_ports(&ports))
            .expect("ingress ports");
    }
    let nodes = [
        IngressNode {
            mac: mac_for(ip("10.0.0.2")),
            addr: ip("10.0.0.2"),
        },
        IngressNode {
            mac: mac_for(ip("10.0.0.3")),
            addr: ip("10.0.0.3"),
        },
    ];
    program_ingress_return(task.fd.as_fd(), "eth0", &nodes).expect("ingress return");
    program_ingress_return(task.fd.as_fd(), "eth0", &nodes).expect("ingress return again");
    let rules = task.ok(&["ip", "rule", "show"]);
    assert_eq!(rules.matches("lookup").count(), 5, "{rules}");

    // The client reaches the task on B through A's address; the task sees the client.
    let got = connect(&client, sa("198.51.100.1:8080"), 3);
    for r in got {
        assert_eq!(r, Ok("10.0.0.5 198.51.100.2".to_string()));
    }
    // A local client on B (its own underlay address) is answered through B.
    let local = connect(&b.ns, sa("192.0.2.2:8080"), 1);
    assert_eq!(local, vec![Ok("10.0.0.5 192.0.2.2".to_string())]);
    // A loopback client on A is masqueraded to A's ingress address.
    let lo = connect(&a.ns, sa("127.0.0.1:8080"), 1);
    assert_eq!(lo, vec![Ok("10.0.0.5 10.0.0.2".to_string())]);
    // With the userland proxy too (nothing proxies the mesh's ports).
    let lo = connect(&b.ns, sa("127.0.0.1:8080"), 1);
    assert_eq!(lo, vec![Ok("10.0.0.5 10.0.0.3".to_string())]);

    // The rules survive a table rebuild (daemon start).
    a.call(|_, svc| svc.rebuild_table(&[])).expect("rebuild");
    assert_eq!(
        connect(&client, sa("198.51.100.1:8080"), 1),
        vec![Ok("10.0.0.5 198.51.100.2".to_string())]
    );

    // Node A leaves the return path: its rule and table go.
    program_ingress_return(task.fd.as_fd(), "eth0", &nodes[1..]).expect("ingress return");
    let rules = task.ok(&["ip", "rule", "show"]);
    assert_eq!(rules.matches("lookup").count(), 4, "{rules}");
    let table = task.ok(&["ip", "route", "show", "table", "all"]);
    assert!(!table.contains("via 10.0.0.2"), "{table}");

    // No ports: the mesh is closed.
    a.call(|_, svc| svc.set_ingress_ports(&[]))
        .expect("no ports");
    let closed = connect(&client, sa("198.51.100.1:8080"), 1);
    assert!(closed[0].is_err(), "{closed:?}");
    drop(_server);
    for n in [&a, &b] {
        n.remove("ingress");
        assert!(!n.ns.links().iter().any(|l| l.starts_with("bov")));
    }
}

/// The sysctl `net.ipv4.conf.<ifname>.route_localnet` in a namespace.
fn route_localnet(ns: &Netns, ifname: &str) -> String {
    ns.ok(&[
        "sysctl",
        "-n",
        &format!("net.ipv4.conf.{ifname}.route_localnet"),
    ])
    .trim()
    .to_string()
}

/// Makes `task` send what is addressed to 127.0.0.0/8 to `via` on its eth0, as a container
/// with a raw socket can (here: no loopback address, and a route).
fn route_loopback_out(task: &Netns, via: &str) {
    task.ok(&["ip", "link", "set", "lo", "down"]);
    task.ok(&["ip", "addr", "flush", "dev", "lo"]);
    task.ok(&["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"]);
    task.ok(&["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"]);
    task.ok(&[
        "ip",
        "route",
        "add",
        "127.0.0.0/8",
        "via",
        via,
        "dev",
        "eth0",
    ]);
    let route = task.ok(&["ip", "route", "get", "127.0.0.1"]);
    assert!(route.contains(&format!("via {via} dev eth0")), "{route}");
}

#[test]
fn containers_cannot_reach_the_nodes_loopback() {
    // A: loopback NAT; B: userland proxy.
    let (a, b) = two_nodes("lo");
    a.create("ov", 4097, "10.10.0.0/24", "10.10.0.1", None);
    b.create("ov", 4097, "10.10.0.0/24", "10.10.0.1", None);
    a.create("ingress", 4096, "10.0.0.0/24", "10.0.0.1", Some("10.0.0.2"));
    b.create("ingress", 4096, "10.0.0.0/24", "10.0.0.1", Some("10.0.0.3"));
    // Loopback routing only where loopback clients go out: with loopback NAT, and on
    // ingress.
    assert_eq!(route_localnet(&a.ns, "bt0"), "1");
    assert_eq!(route_localnet(&a.ns, "bov4097"), "1");
    assert_eq!(route_localnet(&b.ns, "bt0"), "0");
    assert_eq!(route_localnet(&b.ns, "bov4097"), "0");
    assert_eq!(route_localnet(&b.ns, "bov4096"), "1");

    // A service of node A bound to its loopback only.
    let _private = Server::start_on(&a.ns, "127.0.0.1:80");
    assert_eq!(
        connect(&a.ns, sa("127.0.0.1:80"), 1),
        vec![Ok("127.0.0.1 127.0.0.1".to_string())]
    );
    // A container on A's default bridge, and a task on B's ingress network sending to A's
    // ingress address over VXLAN.
    let (local, remote) = (Netns::new(), Netns::new());
    a.plug("bt0", &local, ip("10.254.0.5"), Some(ip("10.254.0.1")));
    b.plug("bov4096", &remote, ip("10.0.0.5"), None);
    a.peers("ingress", vec![peer("10.0.0.5", &b), peer("10.0.0.3", &b)]);
    b.peers("ingress", vec![peer("10.0.0.2", &a)]);
    route_loopback_out(&local, "10.254.0.1");
    route_loopback_out(&remote, "10.0.0.2");
    let blocked = |task: &Netns| {
        let got = connect(task, sa("127.0.0.1:80"), 1);
        assert!(got[0].is_err(), "reached the node's loopback: {got:?}");
    };
    blocked(&local);
    blocked(&remote);
    // B's own chain drops it too when bridged frames go through netfilter (br_netfilter);
    // without it, A's stops it.
    b.ns.ok(&["nft", "delete", "chain", "ip", "berth_bt0", "localnet"]);
    blocked(&remote);

    // Without berth's localnet chain both get through: that chain is what stops them.
    a.ns.ok(&["nft", "delete", "chain", "ip", "berth_bt0", "localnet"]);
    assert_eq!(
        connect(&local, sa("127.0.0.1:80"), 1),
        vec![Ok("127.0.0.1 10.254.0.5".to_string())]
    );
    assert_eq!(
        connect(&remote, sa("127.0.0.1:80"), 1),
        vec![Ok("127.0.0.1 10.0.0.5".to_string())]
    );
    // A table rebuild (daemon start) puts it back.
    a.call(|_, svc| svc.rebuild_table(&[])).expect("rebuild");
    blocked(&local);
    blocked(&remote);
    // The node's own loopback clients are unaffected.
    assert_eq!(
        connect(&a.ns, sa("127.0.0.1:80"), 1),
        vec![Ok("127.0.0.1 127.0.0.1".to_string())]
    );
}

/// Sends `count` UDP datagrams "<tag> <i>" from inside `ns` to `to`.
fn udp_send(ns: &Netns, to: SocketAddr, tag: &str, count: usize) {
    let fd = ns.clone_fd();
    let tag = tag.to_string();
    std::thread::spawn(move || {
        setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns sender");
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind sender");
        for i in 0..count {
            s.send_to(format!("{tag} {i}").as_bytes(), to)
                .expect("send datagram");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .expect("sender thread");
}

/// A UDP socket on port 9999 inside a namespace, collecting what arrives.
struct UdpSink {
    got: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpSink {
    fn start(ns: &Netns) -> UdpSink {
        let fd = ns.clone_fd();
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, flag) = (got.clone(), stop.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns sink");
            let s = UdpSocket::bind("0.0.0.0:9999").expect("bind :9999");
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 256];
            while !flag.load(Ordering::Relaxed) {
                if let Ok(n) = s.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().expect("sink list").push(text);
                }
            }
        });
        ready_rx.recv().expect("sink thread died");
        UdpSink {
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// What arrived with `tag`, after a moment for the last datagrams.
    fn count(&self, tag: &str) -> usize {
        std::thread::sleep(Duration::from_millis(300));
        let got = self.got.lock().expect("sink list");
        got.iter()
            .filter(|m| m.starts_with(&format!("{tag} ")))
            .count()
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn vxlan_is_accepted_only_from_the_swarms_nodes() {
    let (a, b) = two_nodes("vx");
    // A host on another network of node A that speaks VXLAN to it, as an attacker would:
    // its own VXLAN device with the overlay's VNI, and a static neighbour for A's task.
    let rogue = Netns::new();
    veth(
        &a.ns,
        "eth1",
        "198.51.100.1/24",
        &rogue,
        "eth0",
        "198.51.100.2/24",
    );
    rogue.ok(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
    rogue.ok(&[
        "ip",
        "link",
        "add",
        "vx",
        "type",
        "vxlan",
        "id",
        "4097",
        "local",
        "198.51.100.2",
        "remote",
        "192.0.2.1",
        "dstport",
        "4789",
    ]);
    rogue.ok(&["ip", "addr", "add", "10.10.0.66/24", "dev", "vx"]);
    rogue.ok(&["ip", "link", "set", "vx", "up"]);
    rogue.ok(&[
        "ip",
        "neigh",
        "add",
        "10.10.0.11",
        "lladdr",
        "02:42:0a:0a:00:0b",
        "dev",
        "vx",
        "nud",
        "permanent",
    ]);
    let sets = |n: &Node| n.ns.ok(&["nft", "list", "table", "ip", "berth_bt0"]);

    a.create("ov", 4097, "10.10.0.0/24", "10.10.0.1", None);
    b.create("ov", 4097, "10.10.0.0/24", "10.10.0.1", None);
    let (a1, b1) = (Netns::new(), Netns::new());
    let gw = Some(ip("10.10.0.1"));
    a.plug("bov4097", &a1, ip("10.10.0.11"), gw);
    b.plug("bov4097", &b1, ip("10.10.0.21"), gw);
    let sink = UdpSink::start(&a1);
    // Until the first list of peers (a daemon start with live restore), nothing is filtered.
    // (The first datagrams wait for neighbours to resolve: not counted.)
    udp_send(&rogue, sa("10.10.0.11:9999"), "warm", 3);
    std::thread::sleep(Duration::from_millis(300));
    udp_send(&rogue, sa("10.10.0.11:9999"), "early", 5);
    assert_eq!(sink.count("early"), 5);

    a.peers("ov", vec![peer("10.10.0.21", &b)]);
    b.peers("ov", vec![peer("10.10.0.11", &a)]);
    let table = sets(&a);
    assert!(table.contains("elements = { 4789 }"), "{table}");
    assert!(table.contains("elements = { 192.0.2.2 }"), "{table}");
    // A peer's node gets through; the stranger does not.
    udp_send(&b1, sa("10.10.0.11:9999"), "warm", 3);
    std::thread::sleep(Duration::from_millis(300));
    udp_send(&b1, sa("10.10.0.11:9999"), "peer", 5);
    udp_send(&rogue, sa("10.10.0.11:9999"), "rogue", 5);
    assert_eq!(sink.count("peer"), 5);
    assert_eq!(sink.count("rogue"), 0);
    // Once the stranger is a peer's node, it gets through (the set is what stops it).
    let mut with_rogue = peer("10.10.0.66", &b);
    with_rogue.node = ip("198.51.100.2");
    a.peers("ov", vec![peer("10.10.0.21", &b), with_rogue]);
    udp_send(&rogue, sa("10.10.0.11:9999"), "admitted", 5);
    assert_eq!(sink.count("admitted"), 5);
    a.peers("ov", vec![peer("10.10.0.21", &b)]);
    udp_send(&rogue, sa("10.10.0.11:9999"), "again", 5);
    assert_eq!(sink.count("again"), 0);
    // A table rebuild (daemon start) keeps the filter.
    a.call(|_, svc| svc.rebuild_table(&[])).expect("rebuild");
    udp_send(&rogue, sa("10.10.0.11:9999"), "rebuilt", 5);
    assert_eq!(sink.count("rebuilt"), 0);
    udp_send(&b1, sa("10.10.0.11:9999"), "peer2", 5);
    assert_eq!(sink.count("peer2"), 5);
    drop(sink);

    // With the last overlay gone, the sets are empty: nothing is filtered any more.
    a.remove("ov");
    let table = sets(&a);
    assert!(!table.contains("4789"), "{table}");
    assert!(!table.contains("192.0.2.2"), "{table}");
}

#[test]
fn an_overlay_subnet_the_node_routes_elsewhere_is_refused() {
    let (a, _b) = two_nodes("clash");
    a.ns.ok(&["ip", "route", "add", "10.30.0.0/16", "via", "192.0.2.2"]);
    let try_create = |subnet: &str, gw: &str| {
        let req = a.request("ov", 4097, subnet, gw, None);
        a.call(move |rt, svc| {
            rt.block_on(svc.create(req))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };
    let e = try_create("10.30.1.0/24", "10.30.1.1").expect_err("overlaps a route");
    assert!(
        e.contains(
            "overlay subnet 10.30.1.0/24 overlaps the route 10.30.0.0/16 via 192.0.2.2 dev eth0"
        ),
        "{e}"
    );
    // The node's own underlay network (where the other nodes are).
    let e = try_create("192.0.2.128/25", "192.0.2.129").expect_err("overlaps the underlay");
    assert!(
        e.contains("overlay subnet 192.0.2.128/25 overlaps the address 192.0.2.1/24 on eth0"),
        "{e}"
    );
    assert!(!a.ns.links().iter().any(|l| l.starts_with("bov")));
    // Other berth networks' bridges are checked as networks, not as the host's routes.
    let e = try_create("10.254.0.0/16", "10.254.1.1").expect_err("overlaps the default bridge");
    assert!(e.contains("Pool overlaps with other one"), "{e}");
    try_create("10.10.0.0/24", "10.10.0.1").expect("a free subnet");
    // Its own bridge, left behind without its record, does not count against it.
    a.remove("ov");
    a.ns.ok(&["ip", "link", "add", "bov4097", "type", "bridge"]);
    a.ns.ok(&["ip", "addr", "add", "10.10.0.1/24", "dev", "bov4097"]);
    a.ns.ok(&["ip", "link", "set", "bov4097", "up"]);
    try_create("10.10.0.0/24", "10.10.0.1").expect("made again over its old bridge");
}

#[test]
fn encryption_support_is_probed_and_leaves_no_state() {
    let ns = Netns::new();
    let fd = ns.clone_fd();
    let res = std::thread::spawn(move || {
        setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns");
        berth_network::lb::check_encryption_support()
    })
    .join()
    .expect("probe thread");
    if let Err(e) = res {
        let msg = e.to_string();
        assert!(
            msg.contains(
                "encrypted overlay networks need IPsec ESP with AES-GCM (rfc4106(gcm(aes)))"
            ),
            "{msg}"
        );
    }
    assert_eq!(ns.ok(&["ip", "xfrm", "state", "list"]).trim(), "");
}

#[test]
fn an_encrypted_overlay_is_brought_up_only_with_the_kernels_esp() {
    let (a, _b) = two_nodes("enc");
    let probe =
        a.call(|_, _| berth_network::lb::check_encryption_support().map_err(|e| e.to_string()));
    let mut req = a.request("enc", 4097, "10.0.9.0/24", "10.0.9.1", None);
    if let Some(o) = req.options.as_mut() {
        o.insert(OPT_ENCRYPTED.into(), String::new());
    }
    let made = a.call(move |rt, svc| {
        rt.block_on(svc.create(req))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match probe {
        // This kernel cannot: the network is refused with the probe's message and nothing
        // of it (links, ESP rules, policies) is left.
        Err(why) => {
            let e = made.expect_err("an encrypted overlay without the kernel's ESP");
            assert!(
                e.contains("encrypted overlay networks need IPsec ESP"),
                "{e}"
            );
            assert!(why.contains("rfc4106(gcm(aes))"), "{why}");
            assert!(!a
                .ns
                .links()
                .iter()
                .any(|l| l.starts_with("bov") || l.starts_with("vxl")));
            assert_eq!(a.ns.ok(&["ip", "xfrm", "state", "list"]).trim(), "");
            assert_eq!(a.ns.ok(&["ip", "xfrm", "policy", "list"]).trim(), "");
            assert!(!a
                .ns
                .run(&["nft", "list", "table", "ip", "berth-esp"])
                .status
                .success());
        }
        // A kernel with ESP: the network is up, its VNI marked, marked traffic blocked until
        // its nodes and keys are set.
        Ok(()) => {
            made.expect("an encrypted overlay with the kernel's ESP");
            let table = a.ns.ok(&["nft", "list", "table", "ip", "berth-esp"]);
            assert!(table.contains("0x1001"), "{table}");
            let policies = a.ns.ok(&["ip", "xfrm", "policy", "list"]);
            assert!(policies.contains("action block"), "{policies}");
            a.remove("enc");
            assert!(!a
                .ns
                .run(&["nft", "list", "table", "ip", "berth-esp"])
                .status
                .success());
            assert_eq!(a.ns.ok(&["ip", "xfrm", "policy", "list"]).trim(), "");
        }
    }
}
