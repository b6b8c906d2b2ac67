//! Rules programmed inside a sandbox's network namespace for swarm services: load balancing of
//! service VIPs (nftables DNAT, no SNAT) and the return path of routing-mesh connections.
//!
//! **VIPs.** Table `ip berth-lb`: a set of VIPs and a map (VIP . slot) → backend with
//! [`SLOTS`] slots per VIP (slot i → the i-th of the sorted backends, modulo their number).
//! A nat output chain DNATs `ip daddr @vips` to `ip daddr . numgen inc mod 60 map @backends`
//! (round robin, the client keeps its address); a filter output chain then rejects whatever is
//! still addressed to a VIP (a VIP without backends refuses connections instead of hanging).
//!
//! **Ingress return path.** A routing-mesh connection reaches a task with the client's own
//! address, so the task's replies must go back through the node that took the connection
//! (which holds its DNAT state). Table `ip berth-ingress`: a new connection arriving on the
//! ingress interface gets a conntrack mark chosen by its source MAC (each node's ingress
//! bridge MAC → [`node_mark`]); its incoming packets carry that mark too (with
//! `src_valid_mark` on the interface, so that reverse-path filtering accepts the client's
//! address, and `tcp_fwmark_accept`, so that an accepted socket keeps it), and a route chain
//! copies it to the packet mark of everything the task sends on the connection; per node a policy rule `fwmark M lookup M`
//! (priority [`RULE_PRIORITY`]) and a routing table M with `default via <node's ingress
//! address>` send it to that node.
//!
//! The tables are created once; later calls change set and map elements only (and rules and
//! routes of the namespace), each call taking the full desired list. They die with the
//! namespace.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use crate::endpoint::fmt_mac;
use crate::nft::{fill_slots, SLOTS};
use crate::{Error, Result};

/// The priority of berth's policy rules for the ingress return path (before `main`, 32766).
pub const RULE_PRIORITY: u32 = 20000;

/// One VIP a sandbox can reach and the task addresses behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipBackends {
    pub vip: Ipv4Addr,
    pub backends: Vec<Ipv4Addr>,
}

/// One node of the routing mesh as a task's ingress interface sees it: the MAC of its ingress
/// bridge and its ingress address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressNode {
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
}

/// The packet mark, conntrack mark and routing table of a node's return path: its ingress
/// address as a number. It is unique per node without any registry, and never one of the
/// reserved tables (0, 253–255) since an ingress address is not in 0.0.0.0/8.
pub fn node_mark(addr: Ipv4Addr) -> Result<u32> {
    if addr.octets()[0] == 0 || addr.is_broadcast() || addr.is_multicast() {
        return Err(Error::Invalid(format!(
            "{addr} cannot be a node's ingress address"
        )));
    }
    Ok(u32::from(addr))
}

/// The VIPs a sandbox can reach and their backends: the full desired list.
pub fn program_vips(netns: BorrowedFd<'_>, vips: &[VipBackends]) -> Result<()> {
    let script = render_vips(vips)?;
    in_netns(netns, || {
        let create = !table_exists("berth-lb")?;
        let mut full = if create { lb_table() } else { String::new() };
        full.push_str(&script);
        crate::nft::run(&full)
    })
}

/// The return path of routing-mesh connections in a task's namespace (`ifname`: its ingress
/// interface inside the namespace): the full desired list of nodes.
pub fn program_ingress_return(
    netns: BorrowedFd<'_>,
    ifname: &str,
    nodes: &[IngressNode],
) -> Result<()> {
    let quoted = crate::nft::quote(ifname)?;
    let script = render_ingress_nodes(nodes)?;
    let marks: Vec<(u32, Ipv4Addr)> = nodes
        .iter()
        .map(|n| Ok((node_mark(n.addr)?, n.addr)))
        .collect::<Result<_>>()?;
    in_netns(netns, || {
        let create = !table_exists("berth-ingress")?;
        let mut full = if create {
            ingress_table(&quoted)
        } else {
            String::new()
        };
        full.push_str(&script);
        crate::nft::run(&full)?;
        // Reverse-path filtering of the connection's packets then looks at the node's table
        // (the client's address is reachable only through it), and an accepted TCP
        // connection's socket takes the mark of its SYN, so that even its first answer is
        // routed by the node's table (the route chain reroutes the rest, e.g. UDP replies).
        for key in [
            format!("/proc/sys/net/ipv4/conf/{ifname}/src_valid_mark"),
            "/proc/sys/net/ipv4/tcp_fwmark_accept".to_string(),
        ] {
            std::fs::write(&key, "1")
                .map_err(|e| Error::Internal(format!("{key} in the sandbox: {e}")))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::Netlink(format!("starting a runtime: {e}")))?;
        runtime.block_on(sync_routes(ifname, &marks))
    })
}

/// Whether this kernel can encrypt overlay traffic (IPsec ESP with rfc4106(gcm(aes)) through
/// xfrm): Err with a clear message saying what is missing, for `--opt encrypted`.
///
/// The probe adds an ESP transport-mode state with that algorithm between two documentation
/// addresses (192.0.2.1 → 192.0.2.2, no traffic is sent) and deletes it again; a state left by
/// an earlier probe (a crash between the two) is deleted first. The kernel's answer is kept
/// for the process (failures to run `ip` are not).
pub fn check_encryption_support() -> Result<()> {
    static VERDICT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let verdict = match VERDICT.get() {
        Some(v) => v,
        None => {
            let v = probe_encryption()?;
            VERDICT.get_or_init(|| v)
        }
    };
    verdict.clone().map_err(Error::Invalid)
}

const ENCRYPTION_MISSING: &str = "encrypted overlay networks need IPsec ESP with AES-GCM (rfc4106(gcm(aes))), which this kernel does not provide";

/// The probe's state: its id, then what `ip xfrm state add` needs more (a fixed key of no
/// value: it never protects anything).
const PROBE_SA: [&str; 8] = [
    "src",
    "192.0.2.1",
    "dst",
    "192.0.2.2",
    "proto",
    "esp",
    "spi",
    "0xbe27e5a1",
];
const PROBE_ALGO: [&str; 6] = [
    "mode",
    "transport",
    "aead",
    "rfc4106(gcm(aes))",
    "0x000102030405060708090a0b0c0d0e0f10111213",
    "64",
];

/// The kernel's verdict from adding the probe's state: it can (added, or one is there
/// already: EEXIST), or the message saying it cannot.
fn probe_verdict(added: bool, stderr: &str) -> std::result::Result<(), String> {
    if added || stderr.contains("File exists") {
        Ok(())
    } else {
        Err(format!("{ENCRYPTION_MISSING} ({})", stderr.trim()))
    }
}

/// Runs the probe: the kernel's verdict, or Err when `ip` cannot be run.
fn probe_encryption() -> Result<std::result::Result<(), String>> {
    let ip = |verb: &str, more: &[&str]| {
        Command::new("ip")
            .args(["xfrm", "state", verb])
            .args(PROBE_SA)
            .args(more)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Internal(format!("{ENCRYPTION_MISSING}: running ip xfrm: {e}")))
    };
    // Most often there is nothing to delete ("No such process").
    ip("delete", &[])?;
    let out = ip("add", &PROBE_ALGO)?;
    let verdict = probe_verdict(out.status.success(), &String::from_utf8_lossy(&out.stderr));
    if verdict.is_ok() {
        let del = ip("delete", &[])?;
        if !del.status.success() {
            tracing::warn!(
                "deleting the ESP probe's state: {}",
                String::from_utf8_lossy(&del.stderr).trim()
            );
        }
    }
    Ok(verdict)
}

fn lb_table() -> String {
    format!(
        "table ip berth-lb {{
  set vips {{ type ipv4_addr; }}
  map backends {{ typeof ip daddr . numgen inc mod {SLOTS} : ip daddr; }}
  chain output {{
    type nat hook output priority -100; policy accept;
    ip daddr @vips dnat to ip daddr . numgen inc mod {SLOTS} map @backends
  }}
  chain novip {{
    type filter hook output priority filter; policy accept;
    ip daddr @vips meta l4proto tcp reject with tcp reset
    ip daddr @vips reject
  }}
}}
"
    )
}

fn ingress_table(quoted_ifname: &str) -> String {
    format!(
        "table ip berth-ingress {{
  map nodes {{ type ether_addr : mark; }}
  chain prerouting {{
    type filter hook prerouting priority mangle; policy accept;
    iifname {quoted_ifname} ct state new ct mark set ether saddr map @nodes
    iifname {quoted_ifname} ct mark != 0 meta mark set ct mark
  }}
  chain output {{
    type route hook output priority mangle; policy accept;
    ct mark != 0 meta mark set ct mark
  }}
}}
"
    )
}

/// The elements of `berth-lb`, replacing what it had.
fn render_vips(vips: &[VipBackends]) -> Result<String> {
    let mut seen = std::collections::HashSet::new();
    if let Some(v) = vips.iter().find(|v| !seen.insert(v.vip)) {
        return Err(Error::Invalid(format!("VIP {} is given twice", v.vip)));
    }
    let mut s = String::from("flush set ip berth-lb vips\nflush map ip berth-lb backends\n");
    for v in vips {
        let vip = v.vip;
        let _ = writeln!(s, "add element ip berth-lb vips {{ {vip} }}");
        let slots = fill_slots(&v.backends);
        if slots.is_empty() {
            continue;
        }
        let elems: Vec<String> = slots
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{vip} . {i} : {b}"))
            .collect();
        let _ = writeln!(
            s,
            "add element ip berth-lb backends {{ {} }}",
            elems.join(", ")
        );
    }
    Ok(s)
}

/// The elements of `berth-ingress`, replacing what it had.
fn render_ingress_nodes(nodes: &[IngressNode]) -> Result<String> {
    let mut s = String::from("flush map ip berth-ingress nodes\n");
    let mut seen = std::collections::HashSet::new();
    for n in nodes {
        if !seen.insert(n.mac) {
            return Err(Error::Invalid(format!(
                "ingress MAC {} is given twice",
                fmt_mac(n.mac)
            )));
        }
        let mark = node_mark(n.addr)?;
        let _ = writeln!(
            s,
            "add element ip berth-ingress nodes {{ {} : {mark:#x} }}",
            fmt_mac(n.mac)
        );
    }
    Ok(s)
}

/// Runs `f` on a new thread that first joins the network namespace `netns` (a runtime worker
/// must never change namespace); processes it starts are in that namespace too.
fn in_netns<T: Send>(netns: BorrowedFd<'_>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn_scoped(scope, move || {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::Internal(format!("joining the sandbox's network namespace: {e}"))
                })?;
                f()
            })?;
        thread
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("a namespace thread panicked".into())))
    })
}

/// Whether table `ip <name>` exists in the current namespace.
fn table_exists(name: &str) -> Result<bool> {
    let status = Command::new("nft")
        .args(["list", "table", "ip", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Error::Nft(format!("running nft (apt-get install nftables): {e}")))?;
    Ok(status.success())
}

/// In the current namespace: exactly one policy rule `fwmark M lookup M` at
/// [`RULE_PRIORITY`] and a default route via the node in table M per (mark, node address);
/// berth's rules for other marks, and their tables' routes, are removed.
async fn sync_routes(ifname: &str, marks: &[(u32, Ipv4Addr)]) -> Result<()> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| Error::Netlink(format!("opening a netlink connection: {e}")))?;
    tokio::spawn(connection);
    let nl = |doing: String| move |e: rtnetlink::Error| Error::Netlink(format!("{doing}: {e}"));
    let rules: Vec<_> = handle
        .rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing policy rules".into()))?;
    let mut present = Vec::new();
    for rule in rules {
        let attr = |f: fn(&RuleAttribute) -> Option<u32>| rule.attributes.iter().find_map(f);
        let priority = attr(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        });
        if priority != Some(RULE_PRIORITY) {
            continue;
        }
        let mark = attr(|a| match a {
            RuleAttribute::FwMark(m) => Some(*m),
            _ => None,
        });
        let table = attr(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        });
        match mark {
            Some(m) if table == Some(m) && marks.iter().any(|(d, _)| *d == m) => present.push(m),
            _ => {
                handle
                    .rule()
                    .del(rule.clone())
                    .execute()
                    .await
                    .map_err(nl("removing a stale ingress policy rule".into()))?;
                if let Some(t) = table.filter(|t| !(253..=255).contains(t) && *t != 0) {
                    flush_table(&handle, t).await?;
                }
            }
        }
    }
    let link = handle
        .link()
        .get()
        .match_name(ifname.to_string())
        .execute()
        .try_next()
        .await
        .map_err(nl(format!("looking up {ifname}")))?
        .ok_or_else(|| Error::Netlink(format!("{ifname} does not exist in the sandbox")))?;
    for &(mark, addr) in marks {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(mark)
            .gateway(addr)
            .output_interface(link.header.index)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding default via {addr} in table {mark}")))?;
        if !present.contains(&mark) {
            handle
                .rule()
                .add()
                .v4()
                .fw_mark(mark)
                .table_id(mark)
                .priority(RULE_PRIORITY)
                .action(RuleAction::ToTable)
                .execute()
                .await
                .map_err(nl(format!("adding rule fwmark {mark:#x} lookup {mark}")))?;
        }
    }
    Ok(())
}

/// Deletes every IPv4 route of routing table `table`.
async fn flush_table(handle: &rtnetlink::Handle, table: u32) -> Result<()> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(table)
        .build();
    let routes: Vec<_> = handle
        .route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::Netlink(format!("listing routes of table {table}: {e}")))?;
    for r in routes {
        let in_table = r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Table(t) if *t == table))
            || u32::from(r.header.table) == table;
        if in_table {
            handle
                .route()
                .del(r)
                .execute()
                .await
                .map_err(|e| Error::Netlink(format!("removing a route of table {table}: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_the_kernels_answer() {
        assert_eq!(probe_verdict(true, ""), Ok(()));
        // A state left by an earlier probe: the kernel has the algorithm.
        assert_eq!(
            probe_verdict(false, "RTNETLINK answers: File exists\n"),
            Ok(())
        );
        let e = probe_verdict(false, "RTNETLINK answers: Function not implemented\n")
            .expect_err("no ESP");
        assert_eq!(
            e,
            format!("{ENCRYPTION_MISSING} (RTNETLINK answers: Function not implemented)")
        );
    }

    #[test]
    fn slots_spread_over_sorted_backends() {
        let b: Vec<Ipv4Addr> = ["10.0.0.9", "10.0.0.3", "10.0.0.5", "10.0.0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let slots = fill_slots(&b);
        assert_eq!(slots.len(), 60);
        assert_eq!(slots[0], Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(slots[1], Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(slots[2], Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(slots[3], Ipv4Addr::new(10, 0, 0, 3));
        for a in [3, 5, 9] {
            let n = slots
                .iter()
                .filter(|s| **s == Ipv4Addr::new(10, 0, 0, a))
                .count();
            assert_eq!(n, 20);
        }
        assert!(fill_slots::<Ipv4Addr>(&[]).is_empty());
    }

    #[test]
    fn renders_vips() {
        let s = render_vips(&[
            VipBackends {
                vip: "10.0.1.2".parse().unwrap(),
                backends: vec!["10.0.1.7".parse().unwrap(), "10.0.1.5".parse().unwrap()],
            },
            VipBackends {
                vip: "10.0.1.3".parse().unwrap(),
                backends: vec![],
            },
        ])
        .unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "flush set ip berth-lb vips");
        assert_eq!(lines[1], "flush map ip berth-lb backends");
        assert_eq!(lines[2], "add element ip berth-lb vips { 10.0.1.2 }");
        assert!(lines[3].starts_with(
            "add element ip berth-lb backends { 10.0.1.2 . 0 : 10.0.1.5, 10.0.1.2 . 1 : 10.0.1.7, "
        ));
        assert!(lines[3].ends_with("10.0.1.2 . 59 : 10.0.1.7 }"));
        assert_eq!(lines[4], "add element ip berth-lb vips { 10.0.1.3 }");
        assert_eq!(lines.len(), 5);
        let twice = VipBackends {
            vip: "10.0.1.2".parse().unwrap(),
            backends: vec![],
        };
        assert!(render_vips(&[twice.clone(), twice]).is_err());
        assert!(lb_table().contains("numgen inc mod 60 map @backends"));
    }

    #[test]
    fn renders_ingress_nodes_and_marks() {
        let a: Ipv4Addr = "10.0.0.2".parse().unwrap();
        assert_eq!(node_mark(a).unwrap(), 0x0a00_0002);
        assert!(node_mark("0.0.0.254".parse().unwrap()).is_err());
        assert!(node_mark(Ipv4Addr::BROADCAST).is_err());
        let s = render_ingress_nodes(&[IngressNode {
            mac: crate::link::mac_for(a),
            addr: a,
        }])
        .unwrap();
        assert_eq!(
            s,
            "flush map ip berth-ingress nodes\nadd element ip berth-ingress nodes { 02:42:0a:00:00:02 : 0xa000002 }\n"
        );
        let t = ingress_table("\"eth1\"");
        assert!(t.contains("iifname \"eth1\" ct state new ct mark set ether saddr map @nodes"));
        assert!(t.contains("type route hook output"));
        assert!(crate::nft::quote("eth1\"; flush ruleset").is_err());
        let dup = IngressNode {
            mac: [2, 0, 0, 0, 0, 1],
            addr: a,
        };
        assert!(render_ingress_nodes(&[dup, dup]).is_err());
    }
}
