//! Swarm networking across nodes on the multi-node harness, driven by the docker CLI: overlay
//! networks carrying task traffic between nodes, isolation between overlays, service
//! discovery (VIP, `tasks.`, dnsrr), VIP load balancing spread evenly, the routing mesh on
//! every node keeping the client's address, host-mode publishing, `--opt encrypted` refused on
//! this kernel, and nothing left on any node after `service rm` and `network rm`.

mod common;
use common::stdout;
use common::swarm::Cluster;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// A task command serving `/cgi-bin/ip` on port 80: "<client address> <task hostname>".
const SERVER: &str = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR $(hostname)\\n' >/www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 0.0.0.0:80 -h /www";

fn create_service(c: &Cluster, args: &[&str], cmd: &[&str]) {
    let mut all = vec!["service", "create", "--no-resolve-image", "-d"];
    all.extend_from_slice(args);
    all.push("busybox");
    all.extend_from_slice(cmd);
    c.ok(1, &all);
}

/// Waits until `service` has `n` running tasks; returns them as (task container name, node).
fn converge(c: &Cluster, service: &str, n: usize) -> Vec<(String, String)> {
    let mut tasks = Vec::new();
    c.until(&format!("{service} running {n}"), LONG, || {
        let out = c.docker(
            1,
            &[
                "service",
                "ps",
                service,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Name}}.{{.ID}} {{.Node}} {{.CurrentState}}",
                "--no-trunc",
            ],
        );
        tasks = stdout(&out)
            .lines()
            .filter(|l| l.contains(" Running "))
            .filter_map(|l| {
                let mut p = l.split_whitespace();
                Some((p.next()?.to_string(), p.next()?.to_string()))
            })
            .collect();
        tasks.len() == n
    });
    tasks
}

/// The node number of a hostname (`node3` → 3).
fn node_no(host: &str) -> usize {
    host.trim_start_matches("node")
        .parse()
        .expect("node hostname")
}

/// Runs `sh -c script` in the task container `name` on node `i`.
fn exec(c: &Cluster, i: usize, name: &str, script: &str) -> std::process::Output {
    c.docker(i, &["exec", name, "sh", "-c", script])
}

fn exec_ok(c: &Cluster, i: usize, name: &str, script: &str) -> String {
    let out = exec(c, i, name, script);
    assert!(
        out.status.success(),
        "exec {script:?} in {name} on node{i}: {}\n{}\n--- node{i} ---\n{}",
        common::stderr(&out),
        stdout(&out),
        c.log_tail(i)
    );
    stdout(&out).trim().to_string()
}

/// Runs a command in node `i`'s network namespace (its host side).
fn on_node(c: &Cluster, i: usize, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &format!("{}-n{i}", c.name)])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// The elements of set or map `what` in berth's table on node `i` (`ip berth_<bridge>`).
fn nft_elements(c: &Cluster, i: usize, kind: &str, what: &str) -> Vec<String> {
    let table = format!("berth_{}b{i}", c.name);
    let out = on_node(c, i, &["nft", "list", kind, "ip", &table, what]);
    assert!(
        out.status.success(),
        "nft list {kind} {what} on node{i}: {}",
        common::stderr(&out)
    );
    let text = stdout(&out);
    let Some((_, rest)) = text.split_once("elements = {") else {
        return Vec::new();
    };
    rest.split('}')
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| format!("nft {what}: {e}"))
        .collect()
}

/// What the routing mesh keeps on node `i`: its ports and their backends in berth's table.
fn mesh_traces(c: &Cluster, i: usize) -> Vec<String> {
    let mut found = nft_elements(c, i, "set", "ingress_ports");
    found.extend(nft_elements(c, i, "map", "ingress"));
    found
}

/// What a node keeps for overlays: links, VXLAN forwarding entries, nftables elements of swarm
/// subnets (10.0/16) and of the routing mesh, the ESP table, xfrm states and policies.
fn overlay_traces(c: &Cluster, i: usize) -> Vec<String> {
    let links = stdout(&on_node(c, i, &["ip", "-o", "link", "show"]));
    let mut found: Vec<String> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with("bov") || n.starts_with("vxl"))
        .map(str::to_string)
        .collect();
    let fdb = stdout(&on_node(c, i, &["bridge", "fdb", "show"]));
    found.extend(
        fdb.lines()
            .filter(|l| l.contains(" dst "))
            .map(|l| format!("fdb: {l}")),
    );
    let nft = stdout(&on_node(c, i, &["nft", "list", "ruleset"]));
    found.extend(
        nft.lines()
            .filter(|l| l.contains("10.0."))
            .map(|l| format!("nft: {}", l.trim())),
    );
    found.extend(mesh_traces(c, i));
    let tables = stdout(&on_node(c, i, &["nft", "list", "tables"]));
    found.extend(
        tables
            .lines()
            .filter(|l| l.contains("berth-esp"))
            .map(|l| format!("nft: {l}")),
    );
    for what in ["state", "policy"] {
        let xfrm = stdout(&on_node(c, i, &["ip", "xfrm", what]));
        found.extend(
            xfrm.lines()
                .filter(|l| l.starts_with("src "))
                .map(|l| format!("xfrm {what}: {l}")),
        );
    }
    found
}

/// `(address, hostname)` answers of `count` requests to `url` from the task container.
fn fetch_many(c: &Cluster, i: usize, name: &str, url: &str, count: usize) -> Vec<(String, String)> {
    let script = format!(
        "i=0; while [ $i -lt {count} ]; do timeout 5 wget -qO- {url} || echo FAIL; i=$((i+1)); done"
    );
    exec_ok(c, i, name, &script)
        .lines()
        .map(|l| {
            let mut p = l.split_whitespace();
            (
                p.next().unwrap_or_default().to_string(),
                p.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn overlays_discovery_balancing_and_the_routing_mesh() {
    let c = Cluster::up(3);
    // Overlay traffic on a data-path address of each node's own (`--data-path-addr`), a
    // second address on its LAN interface.
    let data = |i: usize| format!("10.231.1.{}", 10 + i);
    for i in 1..=3 {
        let out = on_node(
            &c,
            i,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", data(i)),
                "dev",
                "eth0",
            ],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    c.form_with(1, |i| vec!["--data-path-addr".to_string(), data(i)]);

    // Encryption needs IPsec ESP with AES-GCM, which this kernel lacks: refused clearly.
    let out = c.docker(
        1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--opt",
            "encrypted",
            "sec",
        ],
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("encrypted overlay networks need IPsec ESP"),
        "{}",
        common::stderr(&out)
    );

    // The predefined ingress network, as Docker's.
    let ing = c.ok(
        1,
        &[
            "network",
            "inspect",
            "ingress",
            "--format",
            "{{.Driver}} {{.Scope}} {{.Ingress}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
        ],
    );
    assert_eq!(ing, "overlay swarm true 10.0.0.0/24");

    c.ok(1, &["network", "create", "-d", "overlay", "ov"]);
    // Given subnet and gateway, labels, internal: carried to every node as given.
    c.ok(
        1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.0.200.0/24",
            "--gateway",
            "10.0.200.254",
            "--label",
            "team=b",
            "--internal",
            "ov2",
        ],
    );
    // Three servers, one per node (the scheduler spreads them), and a client on every node.
    create_service(
        &c,
        &["--name", "web", "--network", "ov", "--replicas", "3"],
        &["sh", "-c", SERVER],
    );
    create_service(
        &c,
        &["--name", "client", "--network", "ov", "--mode", "global"],
        &["sleep", "100000"],
    );
    create_service(
        &c,
        &["--name", "other", "--network", "ov2", "--mode", "global"],
        &["sleep", "100000"],
    );
    // A server on every node on ov3, an overlay like ov (not internal): the isolation probes
    // go between ov and ov3, where routes exist.
    c.ok(1, &["network", "create", "-d", "overlay", "ov3"]);
    create_service(
        &c,
        &["--name", "iso", "--network", "ov3", "--mode", "global"],
        &["sh", "-c", SERVER],
    );
    let web = converge(&c, "web", 3);
    let clients = converge(&c, "client", 3);
    let others = converge(&c, "other", 3);
    let isos = converge(&c, "iso", 3);
    let nodes: std::collections::BTreeSet<&str> = web.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(nodes.len(), 3, "web spread over every node: {web:?}");
    let client_on = |n: usize| {
        clients
            .iter()
            .find(|(_, node)| node_no(node) == n)
            .map(|(name, _)| name.clone())
            .expect("a client on every node")
    };
    let c1 = client_on(1);

    // Names: the service resolves to its VIP, tasks.web to every running task.
    let vip = c.ok(
        1,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}",
        ],
    );
    let vip = vip.split('/').next().unwrap().to_string();
    assert!(vip.starts_with("10.0."), "{vip}");
    let c1_addr = exec_ok(&c, 1, &c1, "ip -4 -o addr show eth0 | awk '{print $4}'");
    let c1_addr = c1_addr.split('/').next().unwrap().to_string();
    c.until("web resolves to its VIP", LONG, || {
        stdout(&exec(&c, 1, &c1, "nslookup web 2>/dev/null")).contains(&vip)
    });
    let mut task_ips = Vec::new();
    c.until("tasks.web resolves to 3 tasks", LONG, || {
        let out = stdout(&exec(&c, 1, &c1, "nslookup tasks.web 2>/dev/null"));
        task_ips = out
            .lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .filter_map(|l| l.strip_prefix("Address: "))
            .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        task_ips.len() == 3
    });
    // Cross-node traffic straight to each task; each sees the client's own address.
    let mut hosts = std::collections::BTreeSet::new();
    for ip in &task_ips {
        let got = fetch_many(&c, 1, &c1, &format!("http://{ip}/cgi-bin/ip"), 1);
        assert_eq!(got[0].0, c1_addr, "direct to {ip}: {got:?}");
        hosts.insert(got[0].1.clone());
    }
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    // That traffic went between the data-path addresses: node 1's VXLAN device sends from
    // its own, and its forwarding entries point at the others'.
    let links = stdout(&on_node(
        &c,
        1,
        &["ip", "-d", "link", "show", "type", "vxlan"],
    ));
    assert!(links.contains(&format!("local {}", data(1))), "{links}");
    let fdb = stdout(&on_node(&c, 1, &["bridge", "fdb", "show"]));
    let dsts: Vec<&str> = fdb.lines().filter(|l| l.contains(" dst ")).collect();
    assert!(!dsts.is_empty(), "{fdb}");
    assert!(
        dsts.iter().all(|l| l.contains(" dst 10.231.1.")),
        "{dsts:?}"
    );

    // Through the VIP: the client's address is kept, and 1,000 connections spread evenly
    // over the 3 tasks (chi-square, 2 degrees of freedom, p = 0.001: 13.8).
    let got = fetch_many(&c, 1, &c1, "http://web/cgi-bin/ip", 1000);
    assert!(!got.iter().any(|(a, _)| a == "FAIL"), "failed requests");
    assert!(
        got.iter().all(|(a, _)| *a == c1_addr),
        "client address kept"
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, h) in &got {
        *counts.entry(h.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    let expected = 1000.0 / 3.0;
    let chi: f64 = counts
        .values()
        .map(|&o| (o as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi < 13.8, "uneven spread {counts:?} (chi-square {chi})");

    // A client on another node reaches the VIP too.
    let c3 = client_on(3);
    let got = fetch_many(&c, 3, &c3, "http://web/cgi-bin/ip", 3);
    assert!(got.iter().all(|(a, _)| a != "FAIL"), "{got:?}");

    // ov and ov3 are isolated from each other, both ways, on one node and across nodes: each
    // side has a route to the other's addresses (its default route through its gateway), and
    // the servers answer on their own network, yet nothing crosses.
    let iso_on = |n: usize| {
        isos.iter()
            .find(|(_, node)| node_no(node) == n)
            .map(|(name, _)| name.clone())
            .expect("an iso task on every node")
    };
    let addr_of = |i: usize, name: &str| {
        let a = exec_ok(&c, i, name, "ip -4 -o addr show eth0 | awk '{print $4}'");
        a.split('/').next().unwrap_or_default().to_string()
    };
    let (iso1, iso2) = (iso_on(1), iso_on(2));
    let (iso1_addr, iso2_addr) = (addr_of(1, &iso1), addr_of(2, &iso2));
    let web_on = |n: usize| {
        web.iter()
            .find(|(_, node)| node_no(node) == n)
            .map(|(name, _)| name.clone())
            .expect("a web task on every node")
    };
    let (web1_addr, web2_addr) = (addr_of(1, &web_on(1)), addr_of(2, &web_on(2)));
    // The probes work where traffic is allowed: iso1 reaches iso2 on ov3 across nodes.
    c.until("iso1 reaches iso2 on ov3", LONG, || {
        exec(
            &c,
            1,
            &iso1,
            &format!("timeout 5 wget -qO- http://{iso2_addr}/cgi-bin/ip"),
        )
        .status
        .success()
    });
    let probes = [
        (1, iso1.clone(), web1_addr.clone(), "ov3 to ov on node1"),
        (
            1,
            iso1.clone(),
            web2_addr.clone(),
            "ov3 on node1 to ov on node2",
        ),
        (1, c1.clone(), iso1_addr.clone(), "ov to ov3 on node1"),
        (
            1,
            c1.clone(),
            iso2_addr.clone(),
            "ov on node1 to ov3 on node2",
        ),
    ];
    for (i, from, to, what) in &probes {
        let route = exec_ok(&c, *i, from, &format!("ip route get {to}"));
        assert!(route.contains(" via 10.0."), "{what}: no route: {route}");
        let out = exec(
            &c,
            *i,
            from,
            &format!("timeout 3 wget -qO- http://{to}/cgi-bin/ip"),
        );
        assert!(
            !out.status.success() && stdout(&out).trim().is_empty(),
            "{what}: {from} reached {to}: {}",
            stdout(&out)
        );
    }
    let out = exec(&c, 1, &iso1, "nslookup web 2>/dev/null");
    assert!(!stdout(&out).contains(&vip), "{}", stdout(&out));

    // ov2 is internal.
    let other1 = others
        .iter()
        .find(|(_, n)| node_no(n) == 1)
        .map(|(name, _)| name.clone())
        .unwrap();
    let route = exec_ok(
        &c,
        1,
        &other1,
        "ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf",
    );
    // The network's DNS server is on the gateway given.
    assert!(route.contains("nameserver 10.0.200.254"), "{route}");
    assert!(route.contains("inet 10.0.200."), "{route}");
    // Internal: no way out, as Docker's (no default route).
    assert!(!route.contains("default"), "{route}");
    let shown = c.ok(
        2,
        &[
            "network",
            "inspect",
            "ov2",
            "--format",
            "{{.Driver}} {{.Scope}} {{.Internal}} {{.Labels}}",
        ],
    );
    assert_eq!(shown, "overlay swarm true map[team:b]");

    // dnsrr: the service name resolves to every task, no VIP.
    create_service(
        &c,
        &[
            "--name",
            "rr",
            "--network",
            "ov",
            "--replicas",
            "2",
            "--endpoint-mode",
            "dnsrr",
        ],
        &["sh", "-c", SERVER],
    );
    converge(&c, "rr", 2);
    c.until("rr resolves to its 2 tasks", LONG, || {
        let out = stdout(&exec(&c, 1, &c1, "nslookup rr 2>/dev/null"));
        out.lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .filter(|l| l.starts_with("Address: "))
            .count()
            == 2
    });

    // Scaling down: the stopped task leaves the names and the balancer.
    c.ok(1, &["service", "scale", "-d", "web=2"]);
    converge(&c, "web", 2);
    c.until("tasks.web resolves to 2 tasks", LONG, || {
        stdout(&exec(&c, 1, &c1, "nslookup tasks.web 2>/dev/null"))
            .lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .filter(|l| l.starts_with("Address: "))
            .count()
            == 2
    });
    let got = fetch_many(&c, 1, &c1, "http://web/cgi-bin/ip", 20);
    assert!(got.iter().all(|(a, _)| a != "FAIL"), "{got:?}");
    let left: std::collections::BTreeSet<&str> = got.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(left.len(), 2, "{left:?}");

    // The routing mesh: one task, published on 8080 of every node (also those without a
    // task); the task sees the client's own address (node3's host, on the LAN).
    create_service(
        &c,
        &["--name", "mesh", "--replicas", "1", "-p", "8080:80"],
        &["sh", "-c", SERVER],
    );
    let mesh = converge(&c, "mesh", 1);
    let ports = c.ok(
        1,
        &[
            "service",
            "ls",
            "--filter",
            "name=mesh",
            "--format",
            "{{.Ports}}",
        ],
    );
    assert_eq!(ports, "*:8080->80/tcp");
    let client_addr = c.addr(3);
    for i in 1..=3 {
        let url = format!("http://{}:8080/cgi-bin/ip", c.addr(i));
        let mut answer = String::new();
        c.until(&format!("the mesh answers on node{i}"), LONG, || {
            let out = on_node(&c, 3, &["timeout", "5", "busybox", "wget", "-qO-", &url]);
            answer = stdout(&out).trim().to_string();
            out.status.success()
        });
        assert_eq!(
            answer.split_whitespace().next(),
            Some(client_addr.as_str()),
            "node{i}: {answer} (task on {})",
            mesh[0].1
        );
    }

    // Host mode: only the node running the task listens.
    create_service(
        &c,
        &[
            "--name",
            "direct",
            "--replicas",
            "1",
            "--publish",
            "mode=host,target=80,published=8081",
        ],
        &["sh", "-c", SERVER],
    );
    let direct = converge(&c, "direct", 1);
    let on = node_no(&direct[0].1);
    let url = |i: usize| format!("http://{}:8081/cgi-bin/ip", c.addr(i));
    c.until("host-mode port answers", LONG, || {
        on_node(
            &c,
            on,
            &["timeout", "5", "busybox", "wget", "-qO-", &url(on)],
        )
        .status
        .success()
    });
    let elsewhere = if on == 1 { 2 } else { 1 };
    let out = on_node(
        &c,
        on,
        &["timeout", "5", "busybox", "wget", "-qO-", &url(elsewhere)],
    );
    assert!(
        !out.status.success(),
        "host mode answered on node{elsewhere}"
    );

    // Nothing left on any node once the services and networks are gone.
    for s in ["web", "client", "other", "iso", "rr", "mesh", "direct"] {
        c.ok(1, &["service", "rm", s]);
    }
    c.until("the task containers are gone", LONG, || {
        (1..=3).all(|i| c.ok(i, &["ps", "-aq"]).is_empty())
    });
    // With the services gone and the networks still there, no node keeps a mesh port or
    // backend.
    for i in 1..=3 {
        c.until(&format!("node{i} has no mesh port left"), LONG, || {
            mesh_traces(&c, i).is_empty()
        });
    }
    c.ok(1, &["network", "rm", "ov", "ov2", "ov3"]);
    for i in 1..=3 {
        c.until(&format!("node{i} has no overlay left"), LONG, || {
            overlay_traces(&c, i).is_empty()
        });
    }
    c.down_and_check();
}

/// Addresses `nslookup name` answers in the container (after the server's own lines).
fn resolve(c: &Cluster, i: usize, name: &str, what: &str) -> Vec<String> {
    stdout(&exec(c, i, name, &format!("nslookup {what} 2>/dev/null")))
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address: "))
        .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

/// Requests to the web service's VIP from the attached container a2 on node2, one at a time,
/// until [`stop_hammer`] makes the flag file /stop-hammer: an `OK <task hostname>` or a
/// `FAIL ...` line for each, then `END <count>`.
fn hammer(c: &Cluster) -> std::process::Child {
    std::process::Command::new("docker")
        .env("DOCKER_HOST", c.sock(2))
        .env("DOCKER_CONFIG", format!("/run/{}/docker-config", c.name))
        .args([
            "exec",
            "a2",
            "sh",
            "-c",
            "rm -f /stop-hammer; i=0; while [ ! -e /stop-hammer ]; do if out=$(timeout 5 wget -qO- http://web/cgi-bin/ip 2>&1); then echo \"OK ${out#* }\"; else echo \"FAIL $i rc=$? $(date +%s) $out\"; fi; i=$((i+1)); done; echo END $i",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker exec")
}

/// Stops a [`hammer`] and checks its load: no failed request, at least `min` of them, and
/// every one answered; returns the task hostnames that answered.
fn stop_hammer(
    c: &Cluster,
    load: std::process::Child,
    min: usize,
    during: &str,
) -> std::collections::BTreeSet<String> {
    exec_ok(c, 2, "a2", "touch /stop-hammer");
    let out = load.wait_with_output().expect("load");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let count: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("END "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the load did not end: {text}"));
    assert!(!text.contains("FAIL"), "failed requests {during}: {text}");
    let seen: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("OK "))
        .map(|h| h.trim().to_string())
        .collect();
    println!("{count} requests {during}, answered by {seen:?}");
    assert!(
        count >= min,
        "only {count} requests {during} (at least {min} expected)"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK ")).count(),
        count,
        "{text}"
    );
    seen
}

/// The hostnames of web's running task containers on nodes `nodes`.
fn web_hostnames(c: &Cluster, nodes: &[usize]) -> std::collections::BTreeSet<String> {
    let mut hosts = std::collections::BTreeSet::new();
    for &i in nodes {
        let ids = c.ok(
            i,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=web",
            ],
        );
        for id in ids.lines() {
            // (A task told to stop may be gone by now.)
            let out = c.docker(i, &["exec", id, "hostname"]);
            if out.status.success() {
                hosts.insert(stdout(&out).trim().to_string());
            }
        }
    }
    hosts
}

#[test]
fn attachable_overlays_rolling_updates_and_node_death() {
    let c = Cluster::up(3);
    c.form(1);
    c.ok(
        1,
        &["network", "create", "-d", "overlay", "--attachable", "att"],
    );
    create_service(
        &c,
        &[
            "--name",
            "web",
            "--network",
            "att",
            "--replicas",
            "3",
            "--stop-grace-period",
            "1s",
            // A task is running (named, balanced to) once healthy, as in Docker.
            "--health-cmd",
            "timeout 2 wget -qO- http://127.0.0.1/cgi-bin/ip",
            "--health-interval",
            "300ms",
        ],
        &["sh", "-c", SERVER],
    );
    let tasks = converge(&c, "web", 3);

    // As Docker shows it: on a worker the network's subnet and none of berth's own options;
    // on a manager the containers it has on it.
    let shown = c.ok(
        2,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Ingress}} {{json .Options}}",
            "att",
        ],
    );
    assert!(
        shown.starts_with("10.0.") && shown.contains(" false "),
        "{shown}"
    );
    assert!(!shown.contains("com.berth"), "{shown}");
    let mut on1: Vec<&str> = tasks
        .iter()
        .filter(|(_, node)| node_no(node) == 1)
        .map(|(name, _)| name.as_str())
        .collect();
    on1.sort_unstable();
    assert!(
        !on1.is_empty(),
        "the scheduler spreads 3 tasks over 3 nodes: {tasks:?}"
    );
    let shown = c.ok(
        1,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            "att",
        ],
    );
    let mut names: Vec<&str> = shown.split_whitespace().collect();
    names.sort_unstable();
    assert_eq!(names, on1, "containers shown on node1");

    // Plain containers on the attachable overlay, on two workers (which learn the network
    // from the managers), reach the service and each other across nodes by name.
    c.ok(
        2,
        &[
            "run",
            "-d",
            "--name",
            "a2",
            "--network",
            "att",
            "busybox",
            "sleep",
            "100000",
        ],
    );
    c.ok(
        3,
        &[
            "run",
            "-d",
            "--name",
            "a3",
            "--network",
            "att",
            "busybox",
            "sh",
            "-c",
            SERVER,
        ],
    );
    let a2_addr = exec_ok(&c, 2, "a2", "ip -4 -o addr show eth0 | awk '{print $4}'");
    let a2_addr = a2_addr.split('/').next().unwrap().to_string();
    assert!(a2_addr.starts_with("10.0."), "{a2_addr}");
    c.until("a2 resolves a3 on another node", LONG, || {
        resolve(&c, 2, "a2", "a3").len() == 1
    });
    let got = fetch_many(&c, 2, "a2", "http://a3/cgi-bin/ip", 1);
    assert_eq!(got[0].0, a2_addr, "{got:?}");
    c.until("web answers a2 through its VIP", LONG, || {
        fetch_many(&c, 2, "a2", "http://web/cgi-bin/ip", 1)[0].0 == a2_addr
    });
    // Not on a network that is not attachable.
    c.ok(1, &["network", "create", "-d", "overlay", "closed"]);
    let out = c.docker(
        2,
        &["run", "--rm", "--network", "closed", "busybox", "true"],
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("not manually attachable"),
        "{}",
        common::stderr(&out)
    );

    // A running container connected to the attachable overlay (docker network connect) gets
    // its address from the managers and reaches the service; not so the closed network; once
    // disconnected, it has no address on the overlay left.
    c.ok(
        3,
        &["run", "-d", "--name", "b3", "busybox", "sleep", "100000"],
    );
    c.ok(3, &["network", "connect", "att", "b3"]);
    let b3_addr = exec_ok(&c, 3, "b3", "ip -4 -o addr show eth1 | awk '{print $4}'");
    let b3_addr = b3_addr.split('/').next().unwrap().to_string();
    assert!(
        b3_addr.starts_with("10.0.") && b3_addr != a2_addr,
        "{b3_addr}"
    );
    // (b3's resolver stays its default bridge's: the VIP as a2 resolves it.)
    let vip = resolve(&c, 2, "a2", "web");
    assert_eq!(vip.len(), 1, "{vip:?}");
    let url = format!("http://{}/cgi-bin/ip", vip[0]);
    c.until("web answers b3 through its VIP", LONG, || {
        fetch_many(&c, 3, "b3", &url, 1)[0].0 == b3_addr
    });
    c.until("a2 resolves b3 on another node", LONG, || {
        resolve(&c, 2, "a2", "b3") == [b3_addr.clone()]
    });
    let out = c.docker(3, &["network", "connect", "closed", "b3"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("not manually attachable"),
        "{}",
        common::stderr(&out)
    );
    c.ok(3, &["network", "disconnect", "att", "b3"]);
    let left = exec_ok(&c, 3, "b3", "ls /sys/class/net");
    assert!(
        !left.contains("eth1"),
        "b3 still has its overlay interface: {left}"
    );
    c.until("a2 no longer resolves b3", LONG, || {
        resolve(&c, 2, "a2", "b3").is_empty()
    });
    c.ok(3, &["rm", "-f", "b3"]);

    // A start-first rolling update with a client hammering the VIP from before it starts to
    // after it completed: no failed request, and both old and new tasks answered.
    let old_hosts = web_hostnames(&c, &[1, 2, 3]);
    assert_eq!(old_hosts.len(), 3, "{old_hosts:?}");
    let load = hammer(&c);
    c.ok(
        1,
        &[
            "service",
            "update",
            "-d",
            "--update-order",
            "start-first",
            "--update-parallelism",
            "1",
            "--env-add",
            "V=2",
            "web",
        ],
    );
    c.until("the update completes", Duration::from_secs(60), || {
        c.ok(
            1,
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.UpdateStatus.State}}",
            ],
        ) == "completed"
    });
    converge(&c, "web", 3);
    let mut new_hosts = std::collections::BTreeSet::new();
    c.until("every task replaced and the old ones stopped", LONG, || {
        new_hosts = web_hostnames(&c, &[1, 2, 3]);
        new_hosts.len() == 3 && new_hosts.is_disjoint(&old_hosts)
    });
    let seen = stop_hammer(&c, load, 100, "during the update");
    assert!(
        !seen.is_disjoint(&old_hosts) && !seen.is_disjoint(&new_hosts),
        "the load did not span the update: saw {seen:?}, old {old_hosts:?}, new {new_hosts:?}"
    );

    // Scaling up and down under the same load, until the scaled-away tasks have stopped: no
    // failed request either, and the tasks of the scale-up answered.
    let load = hammer(&c);
    c.ok(1, &["service", "scale", "-d", "web=5"]);
    converge(&c, "web", 5);
    let added: std::collections::BTreeSet<String> = web_hostnames(&c, &[1, 2, 3])
        .difference(&new_hosts)
        .cloned()
        .collect();
    assert_eq!(added.len(), 2, "{added:?}");
    c.ok(1, &["service", "scale", "-d", "web=3"]);
    converge(&c, "web", 3);
    c.until("two tasks stopped", LONG, || {
        web_hostnames(&c, &[1, 2, 3]).len() == 3
    });
    let seen = stop_hammer(&c, load, 50, "while scaling");
    assert!(!seen.is_disjoint(&added), "saw {seen:?}, added {added:?}");

    // Node 3 dies with its tasks: they leave the names and the balancer within the failure
    // detector's bound (ARCHITECTURE.md: Down after three 1 s heartbeats and a second, tasks
    // replaced at once; 15 s allows for this loaded machine), and the service keeps answering.
    converge(&c, "web", 3);
    let before = resolve(&c, 2, "a2", "tasks.web");
    assert_eq!(before.len(), 3, "{before:?}");
    let on3: Vec<String> = c
        .ok(3, &["ps", "-q", "--filter", "name=web."])
        .lines()
        .map(|id| {
            c.ok(
                3,
                &[
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    id,
                ],
            )
        })
        // (A task scaled away may still be stopping there.)
        .filter(|ip| before.contains(ip))
        .collect();
    assert!(!on3.is_empty(), "{before:?}");
    let killed = std::time::Instant::now();
    c.kill(3);
    c.until("node3's tasks leave tasks.web", LONG, || {
        let now = resolve(&c, 2, "a2", "tasks.web");
        !now.is_empty() && !now.iter().any(|ip| on3.contains(ip))
    });
    let took = killed.elapsed();
    println!("node3's tasks left tasks.web {took:?} after the kill");
    assert!(
        took <= Duration::from_secs(15),
        "node3's tasks left tasks.web only {took:?} after the kill"
    );
    let got = fetch_many(&c, 2, "a2", "http://web/cgi-bin/ip", 20);
    assert!(got.iter().all(|(a, _)| *a == a2_addr), "{got:?}");
    c.start(3);

    // Leaving: node 3 leaves with a3 still on the overlay: a3 is disconnected, as in Docker, and
    // nothing of the overlay stays on node 3; the others no longer resolve a3.
    c.ok(3, &["swarm", "leave"]);
    let nets = c.ok(
        3,
        &["inspect", "-f", "{{json .NetworkSettings.Networks}}", "a3"],
    );
    assert!(!nets.contains("att"), "a3 still on att: {nets}");
    c.until("node3 has no overlay left", LONG, || {
        overlay_traces(&c, 3).is_empty()
    });
    c.until("a2 no longer resolves a3", LONG, || {
        resolve(&c, 2, "a2", "a3").is_empty()
    });
    c.ok(3, &["rm", "-f", "a3"]);
    // a2's attachment goes with its container, then the network can go; the other nodes
    // leave too and nothing of the overlays is left anywhere.
    c.ok(2, &["rm", "-f", "a2"]);
    c.ok(1, &["service", "rm", "web"]);
    c.until("att can be removed", LONG, || {
        c.docker(1, &["network", "rm", "att"]).status.success()
    });
    c.ok(1, &["network", "rm", "closed"]);
    c.ok(2, &["swarm", "leave"]);
    c.ok(1, &["swarm", "leave", "--force"]);
    for i in 1..=3 {
        c.until(&format!("node{i} has no overlay left"), LONG, || {
            overlay_traces(&c, i).is_empty()
        });
        // VXLAN's source filter (port and nodes) is empty again.
        let nft = stdout(&on_node(&c, i, &["nft", "list", "ruleset"]));
        assert!(
            nft.contains("udp dport @vxlan_ports") && !nft.contains("4789"),
            "node{i}: {nft}"
        );
    }
    c.down_and_check();
}
