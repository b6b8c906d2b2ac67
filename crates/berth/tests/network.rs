//! Networking through the berth CLI on the real kernel: the default bridge, published ports
//! (tcp and udp), user-defined networks with DNS, isolation, network modes, links, and a
//! daemon restart. Traffic goes only between 127.0.0.1, the test's bridges and the
//! containers' namespaces.

mod common;

use common::{free_port, stderr, stdout, Daemon};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn ip_of(d: &Daemon, c: &str, net: &str) -> String {
    d.ok(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        c,
    ])
}

fn curl(url: &str) -> String {
    let o = Command::new("curl")
        .args(["-s", "-m", "3", url])
        .output()
        .unwrap();
    stdout(&o)
}

/// The busybox httpd serving /etc (so /etc/hostname names the container).
const HTTPD: &[&str] = &["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"];

/// `run -d`; for the HTTPD command, returns only once httpd listens on port 80 in the
/// container (the container's process starts before the server binds, and a connection NATed
/// to it in between is refused).
fn run_d(d: &Daemon, flags: &[&str], cmd: &[&str]) -> String {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(flags);
    args.extend_from_slice(cmd);
    let id = d.ok(&args);
    if cmd == HTTPD {
        let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
        common::eventually("httpd listening on port 80", || {
            ["tcp", "tcp6"].iter().any(|f| {
                std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        cols.len() > 3 && cols[1].ends_with(":0050") && cols[3] == "0A"
                    })
            })
        });
    }
    id
}

fn nft_elements(d: &Daemon, map: &str) -> String {
    let o = Command::new("nft")
        .args(["list", "map", "ip", &d.table, map])
        .output()
        .unwrap();
    let text = stdout(&o);
    text.split_once("elements = {")
        .map(|(_, e)| e.split('}').next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

#[test]
fn default_bridge_gives_addresses_files_and_reachability() {
    let d = Daemon::start();
    let web = run_d(&d, &["--name", "web"], HTTPD);
    let ip = ip_of(&d, "web", "bridge");
    let prefix = d.subnet_prefix();
    assert!(ip.starts_with(&prefix), "{ip} not in {}", d.bip);
    let gw = d.bip.split('/').next().unwrap().to_string();
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "web"]),
        gw
    );
    // The host reaches the container through the bridge.
    assert_eq!(curl(&format!("http://{ip}/hostname")).trim(), &web[..12]);
    // Another container reaches it, and sees its own address, route and files.
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("wget -qO- http://{ip}/hostname; ip route; cat /etc/hosts; hostname"),
    ]);
    assert!(out.starts_with(&web[..12]), "{out}");
    assert!(out.contains(&format!("default via {gw} dev eth0")), "{out}");
    let me = out.lines().last().unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with(&prefix) && l.ends_with(me)),
        "own address in /etc/hosts: {out}"
    );
    // Masquerade is set up for the subnet, and the veth is on the bridge while running.
    assert!(nft_elements(&d, "ports").is_empty());
    assert!(common::links_on(&d.bridge).contains("veth"));
    d.ok(&["rm", "-f", "web"]);
}

/// Send `msg` to 127.0.0.1:`port` over UDP until an answer comes (up to ten tries).
fn udp_roundtrip(port: u16, msg: &[u8]) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for _ in 0..10 {
        s.send_to(msg, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    String::new()
}

/// The udp_echo example (a static binary), to mount into containers.
fn udp_echo() -> PathBuf {
    let bin = PathBuf::from(common::berth_bin());
    let p = bin.parent().unwrap().join("examples/udp_echo");
    assert!(
        p.exists(),
        "{} missing (cargo test builds examples)",
        p.display()
    );
    p
}

#[test]
fn published_ports_tcp_udp_and_their_removal() {
    let d = Daemon::start();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let echo = udp_echo();
    run_d(
        &d,
        &[
            "--name",
            "pub",
            "-p",
            &format!("127.0.0.1:{p1}:80"),
            "-p",
            &format!("{p2}:80"),
        ],
        HTTPD,
    );
    let udp = run_d(
        &d,
        &[
            "--name",
            "udp",
            "-v",
            &format!("{}:/udp_echo:ro", echo.display()),
            "-p",
            &format!("127.0.0.1:{p3}:7777/udp"),
        ],
        &["busybox", "/udp_echo", "7777"],
    );
    let pub_id = d.ok(&["inspect", "-f", "{{.Id}}", "pub"]);
    let gw = d.bip.split('/').next().unwrap().to_string();
    assert_eq!(
        curl(&format!("http://127.0.0.1:{p1}/hostname")).trim(),
        &pub_id[..12]
    );
    assert_eq!(
        curl(&format!("http://{gw}:{p2}/hostname")).trim(),
        &pub_id[..12]
    );
    // From another container, through the host's address on the bridge.
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{gw}:{p2}/hostname"),
    ]);
    assert_eq!(out.trim(), &pub_id[..12]);
    // UDP from the host.
    let got = udp_roundtrip(p3, b"ping");
    assert_eq!(got, "echo:ping", "udp through 127.0.0.1:{p3} to {udp}");
    // port, ps.
    let ports = d.ok(&["port", "pub"]);
    assert!(
        ports.contains(&format!("80/tcp -> 127.0.0.1:{p1}")),
        "{ports}"
    );
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{p2}")),
        "{ports}"
    );
    assert_eq!(d.ok(&["port", "pub", "80"]).lines().count(), 2);
    let ps = d.ok(&["ps", "--format", "{{.Ports}}", "-f", "name=pub"]);
    assert!(ps.contains(&format!("127.0.0.1:{p1}->80/tcp")), "{ps}");
    // A port in use is refused with Docker's message and exit code.
    let o = d.berth(&[
        "run",
        "-d",
        "-p",
        &format!("127.0.0.1:{p1}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    // Rules go exactly when the containers stop.
    assert!(nft_elements(&d, "hostports").contains(&p1.to_string()));
    d.ok(&["stop", "-t", "0", "pub", "udp"]);
    assert_eq!(nft_elements(&d, "ports"), "");
    assert_eq!(nft_elements(&d, "hostports"), "");
    assert_eq!(curl(&format!("http://127.0.0.1:{p1}/hostname")), "");
    // -P publishes the exposed ports on free host ports.
    run_d(&d, &["--name", "all", "--expose", "80", "-P"], HTTPD);
    let mapping = d.ok(&["port", "all", "80/tcp"]);
    let port = mapping.rsplit(':').next().unwrap();
    let all_id = d.ok(&["inspect", "-f", "{{.Id}}", "all"]);
    assert_eq!(
        curl(&format!("http://127.0.0.1:{port}/hostname")).trim(),
        &all_id[..12]
    );
    d.ok(&["rm", "-f", "pub", "udp", "all"]);
}

/// A DNS responder on 127.0.0.x:53 that answers every A query with 10.9.9.9.
fn fake_upstream(addr: &str) -> std::thread::JoinHandle<()> {
    let sock = UdpSocket::bind((addr, 53)).expect("bind fake upstream");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let q = &buf[..n];
            // Header: same id, QR|RD|RA, one question, one answer.
            let mut r = vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            // The question as asked (name, type, class).
            let mut i = 12;
            while i < n && q[i] != 0 {
                i += q[i] as usize + 1;
            }
            let qend = (i + 5).min(n);
            r.extend_from_slice(&q[12..qend]);
            // Answer: pointer to the name, A, IN, TTL 60, 4 bytes.
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
            let _ = sock.send_to(&r, peer);
            if q.windows(4).any(|w| w == b"stop") {
                break;
            }
        }
    })
}

#[test]
fn user_networks_resolve_names_and_stay_apart() {
    let d = Daemon::start();
    let (s1, s2) = (d.user_subnet(0), d.user_subnet(1));
    d.ok(&["network", "create", "--subnet", &s1, "n1"]);
    d.ok(&["network", "create", "--subnet", &s2, "--label", "k=v", "n2"]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for n in [
        "bridge bridge",
        "host host",
        "none null",
        "n1 bridge",
        "n2 bridge",
    ] {
        assert!(ls.lines().any(|l| l == n), "{n} in {ls}");
    }
    assert_eq!(
        d.ok(&["network", "ls", "-q", "--filter", "label=k=v"])
            .lines()
            .count(),
        1
    );
    run_d(
        &d,
        &["--name", "aa", "--network", "n1", "--network-alias", "svc"],
        HTTPD,
    );
    run_d(
        &d,
        &["--name", "bb", "--network", "n1", "--network-alias", "svc"],
        HTTPD,
    );
    run_d(&d, &["--name", "cc", "--network", "n2"], HTTPD);
    let (ipa, ipb, ipc) = (
        ip_of(&d, "aa", "n1"),
        ip_of(&d, "bb", "n1"),
        ip_of(&d, "cc", "n2"),
    );
    let probe = |net: &str, script: &str| {
        let o = d.berth(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        stdout(&o) + &stderr(&o)
    };
    let out = probe(
        "n1",
        "nslookup aa; nslookup svc; nslookup nosuch; timeout 2 wget -qO- http://bb/hostname",
    );
    assert!(out.contains(&format!("Address: {ipa}")), "{out}");
    assert!(out.contains(&format!("Address: {ipb}")), "{out}");
    assert!(out.contains("NXDOMAIN"), "{out}");
    let b_id = d.ok(&["inspect", "-f", "{{.Id}}", "bb"]);
    assert!(out.contains(&b_id[..12]), "{out}");
    // n2 is out of reach from n1, by address and by name.
    let out = probe(
        "n1",
        &format!(
            "timeout 2 wget -qO- http://{ipc}/hostname || echo unreachable; nslookup cc || true"
        ),
    );
    assert!(out.contains("unreachable"), "{out}");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // Connected to n1 as well, c is reachable and resolvable there; disconnected, it is gone.
    d.ok(&["network", "connect", "--alias", "cee", "n1", "cc"]);
    let ipc1 = ip_of(&d, "cc", "n1");
    let out = probe("n1", "nslookup cee; wget -qO- http://cc/hostname");
    assert!(out.contains(&format!("Address: {ipc1}")), "{out}");
    let out = d.ok(&[
        "exec",
        "cc",
        "sh",
        "-c",
        &format!("wget -qO- http://{ipa}/hostname; ip -o addr | grep -c 'inet '"),
    ]);
    assert!(out.lines().last() == Some("3"), "lo, eth0, eth1: {out}");
    let inspect = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "n1"]);
    assert_eq!(inspect, "3");
    d.ok(&["network", "disconnect", "n1", "cc"]);
    let out = probe("n1", "nslookup cee || true");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // A network in use is not removed.
    let o = d.berth(&["network", "rm", "n1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("active endpoints"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "aa", "bb", "cc"]);
    d.ok(&["network", "rm", "n1", "n2"]);
    assert!(!common::links_on(&d.bridge).contains("br-"));
    let o = d.berth(&["network", "rm", "bridge"]);
    assert!(stderr(&o).contains("pre-defined network"), "{}", stderr(&o));
}

#[test]
fn embedded_dns_forwards_to_the_containers_upstream() {
    let d = Daemon::start();
    // A loopback address of this test's own.
    let up = format!("127.0.{}.53", 1 + std::process::id() % 200);
    let t = fake_upstream(&up);
    d.ok(&["network", "create", "--subnet", &d.user_subnet(0), "fw"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "fw",
        "--dns",
        &up,
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup some.example.test; nslookup stop.example.test || true",
    ]);
    assert!(out.contains("Address: 10.9.9.9"), "{out}");
    let gw = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        "fw",
    ]);
    assert!(out.contains(&format!("nameserver {gw}")), "{out}");
    t.join().unwrap();
    d.ok(&["network", "rm", "fw"]);
}

#[test]
fn network_modes_none_host_and_container() {
    let d = Daemon::start();
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("lo:") && out.contains("UP"), "{out}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(out.contains(&d.bridge), "host interfaces: {out}");
    run_d(&d, &["--name", "web"], HTTPD);
    let web_id = d.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let ip = ip_of(&d, "web", "bridge");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://127.0.0.1/hostname; ip -o -4 addr show eth0; hostname",
    ]);
    assert!(out.starts_with(&web_id[..12]), "{out}");
    assert!(out.contains(&format!("inet {ip}/")), "{out}");
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    let o = d.berth(&["run", "--rm", "--network", "nosuchnet", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("network nosuchnet not found"),
        "{}",
        stderr(&o)
    );
    d.ok(&["rm", "-f", "web"]);
}

#[test]
fn internal_networks_and_icc_false_block_traffic() {
    let d = Daemon::start_with(&["--icc=false"]);
    run_d(&d, &["--name", "aa"], HTTPD);
    let ip = ip_of(&d, "aa", "bridge");
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("timeout 2 wget -qO- http://{ip}/hostname || echo blocked"),
    ]);
    assert!(out.contains("blocked"), "icc=false: {out}");
    // The same request works where it does not cross the bridge (the probe itself is sound).
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "aa"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:aa",
        "busybox",
        "sh",
        "-c",
        "timeout 2 wget -qO- http://127.0.0.1/hostname || echo blocked",
    ]);
    assert_eq!(out, &id[..12]);
    d.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &d.user_subnet(0),
        "int",
    ]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "int",
        "busybox",
        "sh",
        "-c",
        &format!("ip route; timeout 2 wget -qO- http://{ip}/hostname || echo blocked"),
    ]);
    assert!(
        !out.contains("default via"),
        "internal: no default route: {out}"
    );
    assert!(out.contains("blocked"), "{out}");
    d.ok(&["rm", "-f", "aa"]);
    d.ok(&["network", "rm", "int"]);
}

#[test]
fn links_write_hosts_and_environment() {
    let d = Daemon::start();
    run_d(
        &d,
        &["--name", "db", "--expose", "5432", "-e", "SECRET=x"],
        HTTPD,
    );
    let ip = ip_of(&d, "db", "bridge");
    let out = d.ok(&[
        "run",
        "--rm",
        "--link",
        "db:database",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; env | sort",
    ]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&ip) && l.contains("database")),
        "{out}"
    );
    assert!(
        out.contains(&format!("DATABASE_PORT_5432_TCP=tcp://{ip}:5432")),
        "{out}"
    );
    assert!(out.contains("DATABASE_ENV_SECRET=x"), "{out}");
    assert!(out.contains("DATABASE_NAME=/"), "{out}");
    let o = d.berth(&["run", "--rm", "--link", "nosuch:x", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    d.ok(&["rm", "-f", "db"]);
}

#[test]
fn daemon_restart_keeps_addresses_ports_and_names_once() {
    let mut d = Daemon::start();
    let p = free_port();
    d.ok(&["network", "create", "--subnet", &d.user_subnet(0), "keep"]);
    run_d(
        &d,
        &[
            "--name",
            "web",
            "--network",
            "keep",
            "-p",
            &format!("127.0.0.1:{p}:80"),
        ],
        HTTPD,
    );
    let ip = ip_of(&d, "web", "keep");
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    d.crash();
    d.spawn();
    assert_eq!(ip_of(&d, "web", "keep"), ip);
    assert_eq!(
        curl(&format!("http://127.0.0.1:{p}/hostname")).trim(),
        &id[..12]
    );
    let elements = nft_elements(&d, "hostports");
    assert_eq!(elements.matches(&p.to_string()).count(), 1, "{elements}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "keep",
        "busybox",
        "nslookup",
        "web",
    ]);
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    // A new container does not get the address the running one holds.
    let other = d.ok(&[
        "run",
        "--rm",
        "--network",
        "keep",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0",
    ]);
    assert!(!other.contains(&format!("inet {ip}/")), "{other}");
    d.ok(&["rm", "-f", "web"]);
    d.ok(&["network", "rm", "keep"]);
}

/// A running container renamed before a daemon restart answers to its new name afterwards
/// (the network service's kept state gives way to the record's name and links).
#[test]
fn a_renamed_container_answers_its_new_name_after_a_daemon_restart() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", &d.user_subnet(0), "ren"]);
    run_d(&d, &["--name", "before", "--network", "ren"], HTTPD);
    let ip = ip_of(&d, "before", "ren");
    d.ok(&["rename", "before", "after"]);
    d.crash();
    d.spawn();
    let lookup = |name: &str| {
        let o = d.berth(&[
            "run",
            "--rm",
            "--network",
            "ren",
            "busybox",
            "nslookup",
            name,
        ]);
        stdout(&o) + &stderr(&o)
    };
    let out = lookup("after");
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    let out = lookup("before");
    assert!(!out.contains(&format!("Address: {ip}")), "{out}");
    d.ok(&["rm", "-f", "after"]);
    d.ok(&["network", "rm", "ren"]);
}

/// A namespace standing in for another host: a veth to the host on a /30 and an IPv6 /64 of
/// its own, default routes back through the host, and busybox httpd logging its clients.
/// Removed on drop.
struct Outside {
    ns: String,
    veth: String,
    host_ip: String,
    ip: String,
    host_ip6: String,
    ip6: String,
    server: Option<std::process::Child>,
    log: PathBuf,
}

impl Outside {
    fn new(d: &Daemon) -> Outside {
        // Tests of one process may each have one at the same time.
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 60;
        let pid = std::process::id();
        let ns = format!("bto{}n{k}", pid % 100_000);
        let veth = format!("bto{}h{k}", pid % 100_000);
        let net = format!("10.{}.250", common::net_octet());
        let (host_ip, ip) = (
            format!("{net}.{}", 4 * k + 1),
            format!("{net}.{}", 4 * k + 2),
        );
        // Canonical forms, as the server logs them.
        let v6 = |last: u16| {
            std::net::Ipv6Addr::new(0xfd45, (pid % 65536) as u16, k as u16, 0, 0, 0, 0, last)
                .to_string()
        };
        let (host_ip6, ip6) = (v6(1), v6(2));
        let sh = |cmd: &str| {
            let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
            assert!(st.success(), "{cmd}");
        };
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add {veth} type veth peer name eth0 netns {ns}"
        ));
        sh(&format!(
            "ip addr add {host_ip}/30 dev {veth} && ip link set {veth} up"
        ));
        sh(&format!(
            "ip -n {ns} addr add {ip}/30 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up && ip -n {ns} route add default via {host_ip}"
        ));
        sh(&format!(
            "ip addr add {host_ip6}/64 dev {veth} nodad && ip -n {ns} addr add {ip6}/64 dev eth0 nodad && ip -n {ns} -6 route add default via {host_ip6}"
        ));
        let log = std::env::temp_dir().join(format!("berth-outside-{pid}-{}.log", d.bridge));
        let www = std::env::temp_dir().join(format!("berth-outside-{pid}-{}", d.bridge));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "outside\n").unwrap();
        let server = Command::new("ip")
            .args([
                "netns", "exec", &ns, "busybox", "httpd", "-f", "-vv", "-p", "8080", "-h",
            ])
            .arg(&www)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        Outside {
            ns,
            veth,
            host_ip,
            ip,
            host_ip6,
            ip6,
            server: Some(server),
            log,
        }
    }

    fn wget(&self, url: &str) -> String {
        let o = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "timeout", "2", "busybox", "wget", "-qO-", url,
            ])
            .output()
            .unwrap();
        stdout(&o)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = std::fs::remove_file(&self.log);
        // The web root beside the log (the same name without `.log`).
        let _ = std::fs::remove_dir_all(self.log.with_extension(""));
    }
}

#[test]
fn outbound_ipv6_is_masqueraded_and_inbound_needs_a_published_port() {
    let d = Daemon::start();
    let out = Outside::new(&d);
    let s6 = v6_subnet(&d, 0);
    let base6 = s6.trim_end_matches("::/64");
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &d.user_subnet(0),
        "--subnet",
        &s6,
        "o6",
    ]);
    // Outbound over IPv6: the other host sees the host's address, not the container's.
    let body = d.ok(&[
        "run",
        "--rm",
        "--network",
        "o6",
        "busybox",
        "timeout",
        "3",
        "wget",
        "-qO-",
        &format!("http://[{}]:8080/index.html", out.ip6),
    ]);
    assert_eq!(body, "outside");
    let log = std::fs::read_to_string(&out.log).unwrap_or_default();
    assert!(log.contains(&out.host_ip6), "client address in {log}");
    assert!(!log.contains(base6), "container address leaked: {log}");
    // Inbound over IPv6: only a published port is reachable.
    let p = free_port();
    let id = run_d(
        &d,
        &["--network", "o6", "-p", &format!("[::]:{p}:80")],
        HTTPD,
    );
    let ip6 = d.ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"o6\").GlobalIPv6Address}}",
        &id,
    ]);
    assert_eq!(
        out.wget(&format!("http://[{}]:{p}/hostname", out.host_ip6))
            .trim(),
        &id[..12]
    );
    assert_eq!(
        out.wget(&format!("http://[{ip6}]/hostname")),
        "",
        "unpublished port reached"
    );
    d.ok(&["rm", "-f", &id]);
    d.ok(&["network", "rm", "o6"]);
}

#[test]
fn outbound_is_masqueraded_and_inbound_needs_a_published_port() {
    let d = Daemon::start();
    let out = Outside::new(&d);
    // Outbound: the other host sees the host's address, not the container's.
    let body = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "3",
        "wget",
        "-qO-",
        &format!("http://{}:8080/index.html", out.ip),
    ]);
    assert_eq!(body, "outside");
    let log = std::fs::read_to_string(&out.log).unwrap_or_default();
    assert!(log.contains(&out.host_ip), "client address in {log}");
    assert!(
        !log.contains(&d.subnet_prefix()),
        "container address leaked: {log}"
    );
    // Inbound: a container port is reachable only when published.
    let p = free_port();
    run_d(&d, &["--name", "web", "-p", &format!("{p}:80")], HTTPD);
    let ip = ip_of(&d, "web", "bridge");
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    assert_eq!(
        out.wget(&format!("http://{}:{p}/hostname", out.host_ip))
            .trim(),
        &id[..12]
    );
    assert_eq!(
        out.wget(&format!("http://{ip}/hostname")),
        "",
        "unpublished port reached"
    );
    d.ok(&["rm", "-f", "web"]);
}

#[test]
fn userland_proxy_serves_loopback_ports() {
    let d = Daemon::start_with(&["--userland-proxy"]);
    let (p, pu) = (free_port(), free_port());
    let echo = udp_echo();
    run_d(
        &d,
        &[
            "--name",
            "web",
            "-p",
            &format!("{p}:80"),
            "-v",
            &format!("{}:/udp_echo:ro", echo.display()),
            "-p",
            &format!("127.0.0.1:{pu}:7777/udp"),
        ],
        &[
            "busybox",
            "sh",
            "-c",
            "/udp_echo 7777 & exec httpd -f -p 80 -h /etc",
        ],
    );
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let gw = d.bip.split('/').next().unwrap().to_string();
    assert_eq!(
        curl(&format!("http://127.0.0.1:{p}/hostname")).trim(),
        &id[..12]
    );
    let got = udp_roundtrip(pu, b"hi");
    assert_eq!(got, "echo:hi");
    // Loopback goes through the proxy processes: without the tcp one it stops, while the
    // NAT path through the host's address on the bridge goes on.
    let pids = stdout(
        &Command::new("pgrep")
            .args([
                "-f",
                &format!("userland-proxy tcp {}", ip_of(&d, "web", "bridge")),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(pids.lines().count(), 1, "{pids}");
    Command::new("kill").arg(pids.trim()).status().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(curl(&format!("http://127.0.0.1:{p}/hostname")), "");
    assert_eq!(curl(&format!("http://{gw}:{p}/hostname")).trim(), &id[..12]);
    d.ok(&["rm", "-f", "web"]);
}

#[test]
fn network_options_fixed_addresses_ranges_and_prune() {
    let mut d = Daemon::start_with(&["--mtu", "1400"]);
    let out = d.ok(&["run", "--rm", "busybox", "ip", "-o", "link", "show", "eth0"]);
    assert!(out.contains("mtu 1400"), "{out}");
    // --fixed-cidr: addresses from the upper half of the bridge's /24 only.
    let fixed = format!("{}128/25", d.subnet_prefix());
    d.flags.extend(["--fixed-cidr".to_string(), fixed]);
    d.crash();
    d.spawn();
    let out = d.ok(&[
        "run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0",
    ]);
    let addr = out
        .split("inet ")
        .nth(1)
        .and_then(|x| x.split('/').next())
        .unwrap_or("");
    let last: u32 = addr.rsplit('.').next().unwrap_or("0").parse().unwrap_or(0);
    assert!(last >= 128, "{addr} outside --fixed-cidr: {out}");
    let subnet = d.user_subnet(0);
    let base = subnet.trim_end_matches(".0/24").to_string();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &subnet,
        "--gateway",
        &format!("{base}.254"),
        "--ip-range",
        &format!("{base}.64/26"),
        "opts",
    ]);
    let gw = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        "opts",
    ]);
    assert_eq!(gw, format!("{base}.254"));
    run_d(&d, &["--name", "ranged", "--network", "opts"], HTTPD);
    let ip = ip_of(&d, "ranged", "opts");
    let last: u32 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!((64..128).contains(&last), "{ip} outside the range");
    run_d(
        &d,
        &[
            "--name",
            "fixed",
            "--network",
            "opts",
            "--ip",
            &format!("{base}.10"),
        ],
        HTTPD,
    );
    assert_eq!(ip_of(&d, "fixed", "opts"), format!("{base}.10"));
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "opts",
        "--ip",
        &format!("{base}.10"),
        "busybox",
        "true",
    ]);
    assert_eq!(
        o.status.code(),
        Some(125),
        "an address in use: {}",
        stderr(&o)
    );
    // Names: the short id resolves; a stopped container's names are gone.
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "ranged"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "opts",
        "busybox",
        "nslookup",
        &id[..12],
    ]);
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    d.ok(&["stop", "-t", "0", "ranged"]);
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "opts",
        "busybox",
        "nslookup",
        "ranged",
    ]);
    assert!(
        stdout(&o).contains("NXDOMAIN") || stderr(&o).contains("NXDOMAIN"),
        "{}",
        stdout(&o)
    );
    // A published range.
    let a = (0..100)
        .map(|_| free_port())
        .find(|p| *p < u16::MAX && std::net::TcpListener::bind(("0.0.0.0", p + 1)).is_ok())
        .expect("two free ports in a row");
    let b = a + 1;
    run_d(
        &d,
        &["--name", "rng", "-p", &format!("{a}-{b}:80-81")],
        HTTPD,
    );
    let ports = d.ok(&["port", "rng"]);
    assert!(ports.contains(&format!("80/tcp -> 0.0.0.0:{a}")), "{ports}");
    assert!(ports.contains(&format!("81/tcp -> 0.0.0.0:{b}")), "{ports}");
    d.ok(&["rm", "-f", "rng"]);
    // prune removes unused user networks only.
    d.ok(&["rm", "-f", "ranged", "fixed"]);
    d.ok(&["network", "create", "--subnet", &d.user_subnet(1), "unused"]);
    let out = d.ok(&["network", "prune", "-f"]);
    assert!(out.contains("opts") && out.contains("unused"), "{out}");
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls.lines().count(), 3, "{ls}");
}

/// An IPv6 subnet (ULA) as unique to the test as `user_subnet(k)` is.
fn v6_subnet(d: &Daemon, k: usize) -> String {
    let s = d.user_subnet(k);
    let p: Vec<&str> = s.split('.').collect();
    format!("fd42:{}:{}::/64", p[1], p[2])
}

fn exec_sh(d: &Daemon, c: &str, script: &str) -> String {
    let o = d.berth(&["exec", c, "sh", "-c", script]);
    stdout(&o) + &stderr(&o)
}

#[test]
fn containers_resolve_on_every_network_and_show_their_endpoint_settings() {
    let d = Daemon::start();
    let (s1, s2) = (d.user_subnet(0), d.user_subnet(1));
    // dockerd takes any non-blank network name.
    d.ok(&["network", "create", "--subnet", &s1, "test 01"]);
    d.ok(&["network", "create", "--subnet", &s2, "n2"]);
    let o = d.berth(&["network", "create", " "]);
    assert_ne!(o.status.code(), Some(0), "a blank name is refused");
    // What berth does not carry out is refused, not dropped.
    for (body, want) in [
        (r#"{"Name":"s1","Scope":"swarm"}"#, 403),
        (r#"{"Name":"s2","Ingress":true}"#, 403),
        (r#"{"Name":"s3","ConfigOnly":true}"#, 400),
        (r#"{"Name":"s4","ConfigFrom":{"Network":"x"}}"#, 400),
        (r#"{"Name":"s5","EnableIPv4":false}"#, 400),
        (r#"{"Name":"s6","IPAM":{"Driver":"other"}}"#, 404),
    ] {
        let (code, text) = d.curl("POST", "/networks/create", Some(body));
        assert_eq!(code, want, "{body}: {text}");
    }
    run_d(&d, &["--name", "web", "--network", "n2"], HTTPD);
    let gw = d.bip.split('/').next().unwrap().to_string();
    run_d(
        &d,
        &[
            "--name",
            "cli",
            "--network",
            "test 01",
            "--mac-address",
            "92:d0:c6:0a:29:33",
            "--link-local-ip",
            "169.254.10.10",
            "--add-host",
            "hgw:host-gateway",
        ],
        &["busybox", "sleep", "300"],
    );
    // Only on "test 01": web is not known yet.
    let out = exec_sh(&d, "cli", "nslookup web || true");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // The MAC address and link-local address are carried out; host-gateway is the gateway.
    let out = exec_sh(
        &d,
        "cli",
        "ip link show eth0; ip addr show eth0; cat /etc/hosts",
    );
    assert!(out.contains("92:d0:c6:0a:29:33"), "{out}");
    assert!(out.contains("169.254.10.10/16"), "{out}");
    assert!(out.contains(&format!("{gw}\thgw")), "{out}");
    d.ok(&[
        "network",
        "connect",
        "--driver-opt",
        "k=v",
        "--driver-opt",
        "com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1",
        "--gw-priority",
        "5",
        "--alias",
        "cee",
        "n2",
        "cli",
    ]);
    // Connected to n2, it resolves n2's names (also qualified) and reaches them; its default
    // route moved to n2, whose gateway priority is higher.
    let ipw = ip_of(&d, "web", "n2");
    let web_id = d.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let out = exec_sh(
        &d,
        "cli",
        "nslookup web; nslookup web.n2; wget -qO- http://web/hostname; ip route; \
         echo martians=$(cat /proc/sys/net/ipv4/conf/eth1/log_martians)",
    );
    assert!(out.contains("martians=1"), "{out}");
    assert_eq!(out.matches(&format!("Address: {ipw}")).count(), 2, "{out}");
    assert!(out.contains(&web_id[..12]), "{out}");
    let n2_gw = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        "n2",
    ]);
    assert!(out.contains(&format!("default via {n2_gw}")), "{out}");
    let ep = |net: &str, field: &str| {
        d.ok(&[
            "inspect",
            "-f",
            &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").{field}}}}}"),
            "cli",
        ])
    };
    assert!(
        ep("n2", "DriverOpts").contains(r#""k":"v""#),
        "{}",
        ep("n2", "DriverOpts")
    );
    assert_eq!(ep("n2", "GwPriority"), "5");
    assert_eq!(ep("n2", "Aliases"), r#"["cee"]"#);
    assert_eq!(ep("test 01", "MacAddress"), r#""92:d0:c6:0a:29:33""#);
    assert!(
        ep("test 01", "IPAMConfig").contains(r#""LinkLocalIPs":["169.254.10.10"]"#),
        "{}",
        ep("test 01", "IPAMConfig")
    );
    assert!(
        ep("n2", "DNSNames").contains("\"cee\""),
        "{}",
        ep("n2", "DNSNames")
    );
    // A link on a user-defined network is a name for the linking container only.
    run_d(
        &d,
        &["--name", "lnk", "--network", "test 01"],
        &["busybox", "sleep", "300"],
    );
    d.ok(&["network", "connect", "--link", "web:dbalias", "n2", "lnk"]);
    let out = exec_sh(&d, "lnk", "nslookup dbalias");
    assert!(out.contains(&format!("Address: {ipw}")), "{out}");
    let out = exec_sh(&d, "cli", "nslookup dbalias || true");
    assert!(out.contains("NXDOMAIN"), "{out}");
    run_d(
        &d,
        &["--name", "lnk2", "--network", "n2", "--link", "web:w2"],
        &["busybox", "sleep", "300"],
    );
    let out = exec_sh(&d, "lnk2", "nslookup w2");
    assert!(out.contains(&format!("Address: {ipw}")), "{out}");
    let o = d.berth(&["network", "connect", "--link", "web:x", "bridge", "cli"]);
    assert!(
        stderr(&o).contains("user-defined networks only"),
        "{}",
        stderr(&o)
    );
    // Disconnected, n2's names are gone at once.
    d.ok(&["network", "disconnect", "n2", "cli"]);
    let out = exec_sh(&d, "cli", "nslookup web || true");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // A bad MAC address is refused at create.
    let o = d.berth(&["create", "--mac-address", "01:00:5e:00:00:01", "busybox"]);
    assert!(stderr(&o).contains("multicast"), "{}", stderr(&o));
    // Before API 1.44 the MAC address is container-wide (Config.MacAddress).
    let (code, body) = d.curl(
        "POST",
        "/v1.43/containers/create?name=old",
        Some(r#"{"Image":"busybox","Cmd":["sleep","300"],"MacAddress":"02:11:22:33:44:55"}"#),
    );
    assert_eq!(code, 201, "{body}");
    d.ok(&["start", "old"]);
    let out = exec_sh(&d, "old", "ip link show eth0");
    assert!(out.contains("02:11:22:33:44:55"), "{out}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "old"]),
        "02:11:22:33:44:55"
    );
    // ... and inspect at those versions shows the endpoint's as Config.MacAddress.
    let (_, body) = d.curl("GET", "/v1.43/containers/cli/json", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["MacAddress"], "92:d0:c6:0a:29:33", "{body}");
    d.ok(&["rm", "-f", "web", "cli", "old", "lnk", "lnk2"]);
    d.ok(&["network", "rm", "test 01", "n2"]);
}

#[test]
fn ipv6_networks_carry_traffic_names_ports_and_stay_apart() {
    let mut d = Daemon::start();
    let (s6a, s6b) = (v6_subnet(&d, 0), v6_subnet(&d, 1));
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &d.user_subnet(0),
        "--subnet",
        &s6a,
        "v6a",
    ]);
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &d.user_subnet(1),
        "--subnet",
        &s6b,
        "v6b",
    ]);
    let (base_a, base_b) = (s6a.trim_end_matches("/64"), s6b.trim_end_matches("/64"));
    let fixed = format!("{base_a}99");
    let port = free_port();
    let srv = run_d(
        &d,
        &[
            "--name",
            "srv",
            "--network",
            "v6a",
            "--ip6",
            &fixed,
            "-p",
            &format!("[::1]:{port}:80"),
        ],
        HTTPD,
    );
    let f = |field: &str| {
        d.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"v6a\").{field}}}}}"),
            "srv",
        ])
    };
    assert_eq!(f("GlobalIPv6Address"), fixed);
    assert_eq!(f("GlobalIPv6PrefixLen"), "64");
    assert_eq!(f("IPv6Gateway"), format!("{base_a}1"));
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{.EnableIPv6}}", "v6a"]),
        "true"
    );
    // The bridge keeps its own MAC address while containers come and go (a bridge without
    // one takes its lowest port's, and srv's neighbour entry for the gateway would go stale).
    let bridge = format!(
        "br-{}",
        &d.ok(&["network", "inspect", "-f", "{{.Id}}", "v6a"])[..12]
    );
    let mac = || std::fs::read_to_string(format!("/sys/class/net/{bridge}/address")).unwrap();
    let mac_before = mac();
    // Another container on v6a reaches it over IPv6, by address and by name (AAAA).
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "v6a",
        "busybox",
        "sh",
        "-c",
        &format!(
            "wget -qO- http://[{fixed}]/hostname; nslookup -type=AAAA srv; ping -6 -c1 -W3 srv"
        ),
    ]);
    let out = stdout(&o) + &stderr(&o);
    assert!(out.starts_with(&srv[..12]), "{out}");
    assert!(out.contains(&format!("Address: {fixed}")), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    assert_eq!(mac(), mac_before);
    // The host reaches it through the bridge, and through the port published on [::1].
    let o = Command::new("curl")
        .args(["-s", "-m", "3", "-g", &format!("http://[{fixed}]/hostname")])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), &srv[..12]);
    let o = Command::new("curl")
        .args([
            "-s",
            "-m",
            "3",
            "-g",
            &format!("http://[::1]:{port}/hostname"),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), &srv[..12]);
    // Published on the bridge's own IPv6 address, on [::], or on every address (which
    // includes [::] as with dockerd), the port is NATed (ip6 table) to the container's IPv6
    // address, without a proxy.
    let gw6 = format!("{base_a}1");
    let (p2, p3, p4) = (free_port(), free_port(), free_port());
    let nat = run_d(
        &d,
        &[
            "--network",
            "v6a",
            "-p",
            &format!("[{gw6}]:{p2}:80"),
            "-p",
            &format!("[::]:{p3}:80"),
            "-p",
            &format!("{p4}:80"),
        ],
        HTTPD,
    );
    for url in [
        format!("http://[{gw6}]:{p2}/hostname"),
        format!("http://[{gw6}]:{p3}/hostname"),
        format!("http://[{gw6}]:{p4}/hostname"),
        format!("http://127.0.0.1:{p4}/hostname"),
    ] {
        let o = Command::new("curl")
            .args(["-s", "-m", "3", "-g", &url])
            .output()
            .unwrap();
        assert_eq!(stdout(&o).trim(), &nat[..12], "{url}");
    }
    let o = Command::new("nft")
        .args(["list", "map", "ip6", &d.table, "hostports"])
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains(&format!("{gw6} . tcp . {p2}")),
        "{}",
        stdout(&o)
    );
    let shown = d.ok(&["port", &nat, "80"]);
    assert!(shown.contains(&format!("0.0.0.0:{p4}")), "{shown}");
    assert!(shown.contains(&format!("[::]:{p4}")), "{shown}");
    d.ok(&["rm", "-f", &nat]);
    let ports = d.ok(&["port", "srv"]);
    assert!(
        ports.contains(&format!("[::1]:{port}")) || ports.contains(&format!("::1:{port}")),
        "{ports}"
    );
    // A container on v6b does not reach v6a over IPv6 (nor over IPv4).
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "v6b",
        "busybox",
        "sh",
        "-c",
        &format!("timeout 3 wget -qO- http://[{fixed}]/hostname || echo unreachable; ip -6 route"),
    ]);
    let out = stdout(&o) + &stderr(&o);
    assert!(out.contains("unreachable"), "{out}");
    assert!(out.contains(&format!("default via {base_b}1")), "{out}");
    // The IPv6 subnets are masqueraded when leaving the host.
    let o = Command::new("nft")
        .args(["list", "set", "ip6", &d.table, "masq_nets"])
        .output()
        .unwrap();
    assert!(stdout(&o).contains(&s6a), "{}", stdout(&o));
    // connect --ip6 gives the asked address; --ip6 on a network without IPv6 is refused.
    d.ok(&[
        "network",
        "connect",
        "--ip6",
        &format!("{base_b}77"),
        "v6b",
        "srv",
    ]);
    let out = exec_sh(&d, "srv", "ip -6 addr");
    assert!(out.contains(&format!("{base_b}77/64")), "{out}");
    let o = d.berth(&["run", "--rm", "--ip6", "fd42::5", "busybox", "true"]);
    assert_ne!(o.status.code(), Some(0));
    // After a daemon restart the addresses, names, proxied port and rules are all back, and
    // the pools know which addresses are taken.
    d.crash();
    d.spawn();
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "v6a",
        "--ip6",
        &fixed,
        "busybox",
        "true",
    ]);
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "v6a",
        "busybox",
        "sh",
        "-c",
        &format!("nslookup -type=AAAA srv; wget -qO- http://srv/hostname; nslookup {fixed}"),
    ]);
    let out = stdout(&o) + &stderr(&o);
    assert!(
        out.contains("name = srv"),
        "reverse lookup over IPv6: {out}"
    );
    assert!(out.contains(&format!("Address: {fixed}")), "{out}");
    assert!(out.contains(&srv[..12]), "{out}");
    // Served by the userland proxy, a new process of the (debug, large) binary that may still be
    // starting when the machine is loaded: queued connections wait for it.
    let o = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-g",
            &format!("http://[::1]:{port}/hostname"),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), &srv[..12]);
    let o = Command::new("nft")
        .args(["list", "set", "ip6", &d.table, "masq_nets"])
        .output()
        .unwrap();
    assert!(stdout(&o).contains(&s6a), "{}", stdout(&o));
    // Without an IPv6 subnet or pool, an IPv6 network gets a unique local /64; an IPv6
    // subnet that overlaps another network's is refused, and so is one without --ipv6.
    d.ok(&["network", "create", "--ipv6", "auto6"]);
    let auto = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 1).Subnet}}",
        "auto6",
    ]);
    assert!(auto.starts_with("fd") && auto.ends_with("::/64"), "{auto}");
    let o = d.berth(&["network", "create", "--ipv6", "--subnet", &s6a, "dup6"]);
    assert!(stderr(&o).contains("overlaps"), "{}", stderr(&o));
    let o = d.berth(&["network", "create", "--subnet", &v6_subnet(&d, 2), "no6"]);
    assert!(stderr(&o).contains("--ipv6"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "srv"]);
    d.ok(&["network", "rm", "v6a", "v6b", "auto6"]);
}

#[test]
fn daemon_ipv6_default_bridge_address_pools_and_host_gateway_ip() {
    let pid = std::process::id();
    let (a, b) = (pid % 65536, common::net_octet());
    let v6 = format!("fd43:{a:x}:1::/64");
    let pool4 = format!("base=10.{b}.252.0/23,size=25");
    let pool6 = format!("base=fd43:{a:x}:2::/48,size=64");
    let d = Daemon::start_with(&[
        "--ipv6",
        "--fixed-cidr-v6",
        &v6,
        "--default-address-pool",
        &pool4,
        "--default-address-pool",
        &pool6,
        "--host-gateway-ip",
        "192.0.2.7",
    ]);
    // The default bridge is an IPv6 network too.
    let web = run_d(
        &d,
        &["--name", "web", "--add-host", "h:host-gateway"],
        HTTPD,
    );
    let ip6 = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.GlobalIPv6Address}}",
        "web",
    ]);
    assert!(ip6.starts_with(&format!("fd43:{a:x}:1::")), "{ip6}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.IPv6Gateway}}", "web"]),
        format!("fd43:{a:x}:1::1")
    );
    let o = Command::new("curl")
        .args(["-s", "-m", "3", "-g", &format!("http://[{ip6}]/hostname")])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), &web[..12]);
    assert!(d
        .ok(&["exec", "web", "cat", "/etc/hosts"])
        .contains("192.0.2.7\th"));
    // Networks without a subnet get theirs from the pools, of both families.
    d.ok(&["network", "create", "--ipv6", "pooled"]);
    let subnets = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        "pooled",
    ]);
    assert_eq!(
        subnets,
        format!("10.{b}.252.0/25 fd43:{a:x}:2::/64"),
        "{subnets}"
    );
    run_d(&d, &["--name", "pp", "--network", "pooled"], HTTPD);
    let out = d.ok(&["exec", "pp", "ip", "-6", "addr"]);
    assert!(out.contains(&format!("fd43:{a:x}:2::2/64")), "{out}");
    d.ok(&["rm", "-f", "web", "pp"]);
    d.ok(&["network", "rm", "pooled"]);
}

#[test]
fn docker_cli_drives_ipv6_and_endpoint_options() {
    let d = Daemon::start();
    let docker = |args: &[&str]| {
        let o = d.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    let (s4, s6) = (d.user_subnet(0), v6_subnet(&d, 0));
    let base4 = s4.trim_end_matches("0/24");
    let base6 = s6.trim_end_matches("/64");
    docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &s4,
        "--subnet",
        &s6,
        "--aux-address",
        &format!("router={base4}250"),
        "--ipam-opt",
        "x=y",
        "dnet",
    ]);
    let ipam = docker(&["network", "inspect", "-f", "{{json .IPAM}}", "dnet"]);
    assert!(
        ipam.contains(&format!(
            r#""AuxiliaryAddresses":{{"router":"{base4}250"}}"#
        )),
        "{ipam}"
    );
    assert!(ipam.contains(r#""Options":{"x":"y"}"#), "{ipam}");
    assert!(ipam.contains(&s6), "{ipam}");
    docker(&[
        "run",
        "-d",
        "--name",
        "dc",
        "--network",
        "dnet",
        "--ip6",
        &format!("{base6}44"),
        "--mac-address",
        "02:aa:bb:cc:dd:ee",
        "--link-local-ip",
        "169.254.3.3",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = d.ok(&["exec", "dc", "ip", "addr", "show", "eth0"]);
    for want in [
        format!("{base6}44/64"),
        "02:aa:bb:cc:dd:ee".to_string(),
        "169.254.3.3/16".to_string(),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    let net = docker(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks.dnet}}",
        "dc",
    ]);
    for want in [
        format!(r#""IPv6Address":"{base6}44""#),
        r#""LinkLocalIPs":["169.254.3.3"]"#.to_string(),
        r#""MacAddress":"02:aa:bb:cc:dd:ee""#.to_string(),
        format!(r#""GlobalIPv6Address":"{base6}44""#),
    ] {
        assert!(net.contains(&want), "{want}: {net}");
    }
    d.ok(&["rm", "-f", "dc"]);
    d.ok(&["network", "rm", "dnet"]);
}

#[test]
fn ipv6_only_networks_resolve_and_carry_traffic() {
    let d = Daemon::start();
    let s6 = v6_subnet(&d, 0);
    d.ok(&[
        "network",
        "create",
        "--ipv4=false",
        "--ipv6",
        "--subnet",
        &s6,
        "only6",
    ]);
    assert_eq!(
        d.ok(&[
            "network",
            "inspect",
            "-f",
            "{{.EnableIPv4}} {{len .IPAM.Config}}",
            "only6"
        ]),
        "false 1"
    );
    let srv = run_d(&d, &["--name", "srv6", "--network", "only6"], HTTPD);
    let f = |field: &str| {
        d.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"only6\").{field}}}}}"),
            "srv6",
        ])
    };
    assert_eq!(f("IPAddress"), "");
    let ip6 = f("GlobalIPv6Address");
    assert!(ip6.starts_with(s6.trim_end_matches("::/64")), "{ip6}");
    // No IPv4 address; names resolve (AAAA) through the server on the IPv6 gateway.
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "only6",
        "busybox",
        "sh",
        "-c",
        "echo v4=$(ip -4 addr show eth0 | grep -c inet); nslookup -type=AAAA srv6; wget -qO- http://srv6/hostname",
    ]);
    let out = stdout(&o) + &stderr(&o);
    assert!(out.contains("v4=0"), "{out}");
    assert!(out.contains(&format!("Address: {ip6}")), "{out}");
    assert!(out.contains(&srv[..12]), "{out}");
    // What cannot be done is refused.
    let o = d.berth(&["network", "create", "--ipv4=false", "none46"]);
    assert!(stderr(&o).contains("--ipv6"), "{}", stderr(&o));
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "only6",
        "-p",
        "8080:80",
        "busybox",
        "true",
    ]);
    assert!(stderr(&o).contains("IPv6-only"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "srv6"]);
    d.ok(&["network", "rm", "only6"]);
}
