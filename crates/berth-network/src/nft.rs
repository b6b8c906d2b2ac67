//! The nftables table berth owns: NAT for outbound traffic, published ports, the swarm's
//! routing-mesh ports, isolation rules.
//!
//! From outside, containers are reached only through published ports: a new connection routed
//! into a bridge must have been DNATed. Routing-mesh (ingress) ports are DNATed round robin to
//! their backends over [`SLOTS`] slots, without SNAT.
//!
//! IPv4 goes through `table ip <name>`, IPv6 through `table ip6 <name>`: the same isolation
//! rules for every bridge, and masquerading for the IPv6 subnets of networks that have one.
//!
//! Bridges that carry loopback clients' connections have `route_localnet` on, which would let
//! a container reach the node's services bound to 127.0.0.1 (a frame to its gateway with that
//! destination): the `localnet` chain drops every packet to 127.0.0.0/8 that did not come
//! from `lo`, before conntrack (replies of masqueraded loopback clients still carry the
//! bridge's address there).
//!
//! While overlay networks have peers, VXLAN's UDP port is open only to the swarm's nodes (the
//! `vxlan_ports` and `swarm_nodes` sets, both empty otherwise).
//!
//! The rules are fixed; what changes is set and map elements (a bridge, a subnet, a published
//! port). Adding elements is a cheap transaction, while rewriting chains waits for an RCU grace
//! period (~15 ms here), so only a full rebuild (daemon start) rewrites the table. It only renders
//! and applies the rules it is given: it keeps no network state and never touches links, iptables
//! or records.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use crate::ipam::Subnet;
use crate::ipam6::Subnet6;
use crate::link::VXLAN_PORT;
use crate::{Error, Result};
use std::collections::BTreeSet;

/// What the rules need to know about one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRules {
    pub bridge: String,
    /// None on an IPv6-only network.
    pub subnet: Option<Subnet>,
    /// No traffic in or out of the network (`--internal`): no NAT, forward drops.
    pub internal: bool,
    /// Containers on the network may talk to each other (`icc`, default true).
    pub icc: bool,
    /// The IPv6 subnet of an IPv6 network.
    pub subnet6: Option<Subnet6>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port: traffic to `host_ip` (any local address of the container address's
/// family when None) and `host_port` goes to the container. Both addresses are of one family:
/// IPv4 entries go to the `ip` table, IPv6 ones to the `ip6` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMap {
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

/// How many slots a load-balanced address or port has: `numgen inc mod SLOTS` picks one, and
/// slot i goes to the i-th backend modulo their number (60 spreads evenly over 1–6, 10, 12, 15,
/// 20, 30 and 60 backends; other counts differ by at most one slot).
pub const SLOTS: usize = 60;

/// The backend of every slot: slot i is the i-th of the sorted, deduplicated `backends`
/// modulo their number; no backends, no slots.
pub fn fill_slots<T: Ord + Clone>(backends: &[T]) -> Vec<T> {
    let mut sorted = backends.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return Vec::new();
    }
    (0..SLOTS)
        .map(|i| sorted[i % sorted.len()].clone())
        .collect()
}

/// One port published through the swarm's routing mesh (ingress): connections to any local
/// address of the node on `published` go to one of `backends` (task address and target
/// port), without SNAT, so that the task sees the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressPort {
    pub proto: Proto,
    pub published: u16,
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// Whether a list of routing-mesh ports can be applied: each protocol and port once.
pub fn check_ingress(ports: &[IngressPort]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    match ports.iter().find(|p| !seen.insert((p.proto, p.published))) {
        Some(p) => Err(Error::Invalid(format!(
            "ingress port {}/{} is given twice",
            p.published,
            p.proto.as_str()
        ))),
        None => Ok(()),
    }
}

/// berth's table (`ip <name>`), one per daemon.
#[derive(Debug, Clone)]
pub struct Table {
    name: String,
    /// Connections to 127.0.0.0/8 are DNATed too (false: a userland proxy serves them).
    loopback_nat: bool,
}

/// An interface name as nft writes it (quoted), refused unless it is a plausible one.
pub(crate) fn quote(ifname: &str) -> Result<String> {
    if ifname.is_empty()
        || ifname.len() > 15
        || !ifname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::Invalid(format!("invalid interface name {ifname:?}")));
    }
    Ok(format!("\"{ifname}\""))
}

impl Table {
    pub fn new(name: &str, loopback_nat: bool) -> Result<Table> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Invalid(format!(
                "invalid nftables table name {name:?}"
            )));
        }
        Ok(Table {
            name: name.into(),
            loopback_nat,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole table: rules, and elements for the given networks and ports.
    pub fn render(&self, nets: &[NetRules], ports: &[PortMap]) -> Result<String> {
        let t = &self.name;
        // Without loopback NAT a userland proxy serves 127.0.0.1:<published>, but nothing
        // proxies the routing mesh's ports: those are DNATed (and masqueraded) either way.
        let (output_match, loopback_ingress) = if self.loopback_nat {
            ("", "")
        } else {
            (
                "ip daddr != 127.0.0.0/8 ",
                "\n    ip daddr 127.0.0.0/8 meta l4proto . th dport @ingress_ports jump published",
            )
        };
        let mut s =
            format!("table ip {t}\ndelete table ip {t}\ntable ip6 {t}\ndelete table ip6 {t}\n");
        s.push_str(&format!(
            "table ip {t} {{
  set bridges {{ type ifname; }}
  set same {{ type ifname . ifname; }}
  set internal {{ type ifname; }}
  set no_icc {{ type ifname; }}
  set masq_nets {{ type ipv4_addr; flags interval; }}
  set nets {{ type ipv4_addr; flags interval; }}
  map ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  map hostports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  set ingress_ports {{ type inet_proto . inet_service; }}
  map ingress {{ typeof meta l4proto . th dport . numgen inc mod {SLOTS} : ip daddr . th dport; }}
  set vxlan_ports {{ type inet_service; }}
  set swarm_nodes {{ type ipv4_addr; }}
  chain input {{
    type filter hook input priority filter; policy accept;
    udp dport @vxlan_ports ip saddr != @swarm_nodes drop
  }}
  chain localnet {{
    type filter hook prerouting priority raw; policy accept;
    iifname != \"lo\" ip daddr 127.0.0.0/8 drop
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump published
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    {output_match}fib daddr type local jump published{loopback_ingress}
  }}
  chain published {{
    dnat ip addr . port to ip daddr . meta l4proto . th dport map @hostports
    dnat ip addr . port to meta l4proto . th dport map @ports
    meta l4proto . th dport @ingress_ports dnat ip addr . port to meta l4proto . th dport . numgen inc mod {SLOTS} map @ingress
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @masq_nets oifname != @bridges masquerade
    oifname @bridges ip saddr 127.0.0.0/8 masquerade
    oifname @bridges ct status dnat ip saddr @nets masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname @no_icc iifname . oifname @same ct status & dnat == 0 drop
    iifname @bridges oifname @bridges iifname . oifname != @same drop
    iifname @internal iifname . oifname != @same drop
    oifname @internal iifname . oifname != @same drop
    oifname @bridges iifname != @bridges ct state new ct status & dnat == 0 drop
  }}
}}
table ip6 {t} {{
  set bridges {{ type ifname; }}
  set same {{ type ifname . ifname; }}
  set internal {{ type ifname; }}
  set no_icc {{ type ifname; }}
  set masq_nets {{ type ipv6_addr; flags interval; }}
  set nets {{ type ipv6_addr; flags interval; }}
  map ports {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
  map hostports {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump published
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    ip6 daddr != ::1 fib daddr type local jump published
  }}
  chain published {{
    dnat ip6 addr . port to ip6 daddr . meta l4proto . th dport map @hostports
    dnat ip6 addr . port to meta l4proto . th dport map @ports
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip6 saddr @masq_nets oifname != @bridges masquerade
    oifname @bridges ct status dnat ip6 saddr @nets masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname @no_icc iifname . oifname @same ct status & dnat == 0 drop
    iifname @bridges oifname @bridges iifname . oifname != @same drop
    iifname @internal iifname . oifname != @same drop
    oifname @internal iifname . oifname != @same drop
    oifname @bridges iifname != @bridges ct state new ct status & dnat == 0 drop
  }}
}}
"
        ));
        for n in nets {
            s.push_str(&self.network_elements("add", n)?);
        }
        s.push_str(&self.port_elements("add", ports));
        Ok(s)
    }

    fn network_elements(&self, verb: &str, n: &NetRules) -> Result<String> {
        let t = &self.name;
        let b = quote(&n.bridge)?;
        let mut s = String::new();
        let _ = writeln!(s, "{verb} element ip {t} bridges {{ {b} }}");
        let _ = writeln!(s, "{verb} element ip {t} same {{ {b} . {b} }}");
        if let Some(sub) = n.subnet {
            let _ = writeln!(s, "{verb} element ip {t} nets {{ {sub} }}");
        }
        if n.internal {
            let _ = writeln!(s, "{verb} element ip {t} internal {{ {b} }}");
        } else if let Some(sub) = n.subnet {
            let _ = writeln!(s, "{verb} element ip {t} masq_nets {{ {sub} }}");
        }
        if !n.icc {
            let _ = writeln!(s, "{verb} element ip {t} no_icc {{ {b} }}");
        }
        // Every bridge is isolated in IPv6 too; only IPv6 networks are masqueraded.
        let _ = writeln!(s, "{verb} element ip6 {t} bridges {{ {b} }}");
        let _ = writeln!(s, "{verb} element ip6 {t} same {{ {b} . {b} }}");
        if n.internal {
            let _ = writeln!(s, "{verb} element ip6 {t} internal {{ {b} }}");
        } else if let Some(sub6) = n.subnet6 {
            let _ = writeln!(s, "{verb} element ip6 {t} masq_nets {{ {sub6} }}");
        }
        if let Some(sub6) = n.subnet6 {
            let _ = writeln!(s, "{verb} element ip6 {t} nets {{ {sub6} }}");
        }
        if !n.icc {
            let _ = writeln!(s, "{verb} element ip6 {t} no_icc {{ {b} }}");
        }
        Ok(s)
    }

    fn port_elements(&self, verb: &str, ports: &[PortMap]) -> String {
        let t = &self.name;
        let mut s = String::new();
        for p in ports {
            let (proto, hp, cip, cp) = (
                p.proto.as_str(),
                p.host_port,
                p.container_ip,
                p.container_port,
            );
            let value = if verb == "add" {
                format!(" : {cip} . {cp}")
            } else {
                String::new()
            };
            let family = if cip.is_ipv6() { "ip6" } else { "ip" };
            match p.host_ip.filter(|h| !h.is_unspecified()) {
                Some(hip) => {
                    let _ = writeln!(
                        s,
                        "{verb} element {family} {t} hostports {{ {hip} . {proto} . {hp}{value} }}"
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "{verb} element {family} {t} ports {{ {proto} . {hp}{value} }}"
                    );
                }
            }
        }
        s
    }

    /// The routing mesh's ports, replacing whatever the table had (one transaction: the set
    /// and map are flushed and refilled, no rule changes).
    pub fn render_ingress(&self, ports: &[IngressPort]) -> String {
        let t = &self.name;
        let mut s = format!("flush set ip {t} ingress_ports\nflush map ip {t} ingress\n");
        for p in ports {
            let (proto, port) = (p.proto.as_str(), p.published);
            let _ = writeln!(s, "add element ip {t} ingress_ports {{ {proto} . {port} }}");
            let slots = fill_slots(&p.backends);
            if slots.is_empty() {
                continue;
            }
            let elems: Vec<String> = slots
                .iter()
                .enumerate()
                .map(|(i, (a, bp))| format!("{proto} . {port} . {i} : {a} . {bp}"))
                .collect();
            let _ = writeln!(s, "add element ip {t} ingress {{ {} }}", elems.join(", "));
        }
        s
    }

    /// The VXLAN filter's elements, replacing what the table had: VXLAN's port closed to
    /// every address but `nodes` when `open` (overlay networks have peers), else nothing.
    pub fn render_underlay(&self, open: bool, nodes: &BTreeSet<Ipv4Addr>) -> String {
        let t = &self.name;
        let mut s = format!("flush set ip {t} vxlan_ports\nflush set ip {t} swarm_nodes\n");
        if open {
            let _ = writeln!(s, "add element ip {t} vxlan_ports {{ {VXLAN_PORT} }}");
            if !nodes.is_empty() {
                let list: Vec<String> = nodes.iter().map(|a| a.to_string()).collect();
                let _ = writeln!(
                    s,
                    "add element ip {t} swarm_nodes {{ {} }}",
                    list.join(", ")
                );
            }
        }
        s
    }

    /// Apply [`Table::render_underlay`] (one transaction).
    pub fn set_underlay(&self, open: bool, nodes: &BTreeSet<Ipv4Addr>) -> Result<()> {
        run(&self.render_underlay(open, nodes))
    }

    /// Make the routing mesh's ports exactly `ports` (checked with [`check_ingress`]).
    pub fn set_ingress(&self, ports: &[IngressPort]) -> Result<()> {
        check_ingress(ports)?;
        run(&self.render_ingress(ports))
    }

    /// Replace the table with one holding exactly these networks and ports (daemon start).
    pub fn rebuild(&self, nets: &[NetRules], ports: &[PortMap]) -> Result<()> {
        run(&self.render(nets, ports)?)
    }

    pub fn add_network(&self, n: &NetRules) -> Result<()> {
        run(&self.network_elements("add", n)?)
    }

    pub fn remove_network(&self, n: &NetRules) -> Result<()> {
        run(&self.network_elements("delete", n)?)
    }

    pub fn add_ports(&self, ports: &[PortMap]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        run(&self.port_elements("add", ports))
    }

    pub fn remove_ports(&self, ports: &[PortMap]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        run(&self.port_elements("delete", ports))
    }

    /// Remove the table altogether (a missing table is not an error).
    pub fn delete(&self) -> Result<()> {
        let t = &self.name;
        run(&format!(
            "table ip {t}\ndelete table ip {t}\ntable ip6 {t}\ndelete table ip6 {t}\n"
        ))
    }
}

/// Feed a script to `nft -f -` as one transaction.
pub(crate) fn run(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("running nft (apt-get install nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(bridge: &str, subnet: &str, internal: bool, icc: bool) -> NetRules {
        NetRules {
            bridge: bridge.into(),
            subnet: Some(subnet.parse().unwrap()),
            internal,
            icc,
            subnet6: None,
        }
    }

    #[test]
    fn renders_elements() {
        let t = Table::new("berth_t", true).unwrap();
        let s = t
            .render(
                &[
                    net("br0", "10.1.0.0/16", false, true),
                    net("br1", "10.2.0.0/24", true, false),
                ],
                &[
                    PortMap {
                        proto: Proto::Tcp,
                        host_ip: None,
                        host_port: 8080,
                        container_ip: "10.1.0.2".parse().unwrap(),
                        container_port: 80,
                    },
                    PortMap {
                        proto: Proto::Udp,
                        host_ip: Some("127.0.0.1".parse().unwrap()),
                        host_port: 53,
                        container_ip: "10.1.0.3".parse().unwrap(),
                        container_port: 5353,
                    },
                ],
            )
            .unwrap();
        assert!(s.starts_with("table ip berth_t\ndelete table ip berth_t\n"));
        assert!(s.contains(
            "type filter hook prerouting priority raw; policy accept;\n    iifname != \"lo\" ip daddr 127.0.0.0/8 drop\n"
        ));
        assert!(s.contains("table ip6 berth_t {"));
        assert!(s.contains("add element ip6 berth_t bridges { \"br0\" }"));
        assert!(s.contains("add element ip6 berth_t internal { \"br1\" }"));
        let v6 = t.port_elements(
            "add",
            &[PortMap {
                proto: Proto::Tcp,
                host_ip: Some("::".parse().unwrap()),
                host_port: 8080,
                container_ip: "fd00:3::2".parse().unwrap(),
                container_port: 80,
            }],
        );
        assert_eq!(
            v6,
            "add element ip6 berth_t ports { tcp . 8080 : fd00:3::2 . 80 }\n"
        );
        let mut v6 = net("br2", "10.3.0.0/24", false, true);
        v6.subnet6 = Some("fd00:3::/64".parse().unwrap());
        assert!(t
            .network_elements("add", &v6)
            .unwrap()
            .contains("add element ip6 berth_t masq_nets { fd00:3::/64 }"));
        assert!(s.contains("add element ip berth_t masq_nets { 10.1.0.0/16 }"));
        assert!(!s.contains("masq_nets { 10.2.0.0/24 }"));
        assert!(s.contains("add element ip berth_t internal { \"br1\" }"));
        assert!(s.contains("add element ip berth_t no_icc { \"br1\" }"));
        assert!(s.contains("add element ip berth_t same { \"br0\" . \"br0\" }"));
        assert!(s.contains("add element ip berth_t ports { tcp . 8080 : 10.1.0.2 . 80 }"));
        assert!(s.contains(
            "add element ip berth_t hostports { 127.0.0.1 . udp . 53 : 10.1.0.3 . 5353 }"
        ));
        let del = t.port_elements(
            "delete",
            &[PortMap {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                container_ip: "10.1.0.2".parse().unwrap(),
                container_port: 80,
            }],
        );
        assert_eq!(del, "delete element ip berth_t ports { tcp . 8080 }\n");
    }

    #[test]
    fn renders_ingress_ports() {
        let t = Table::new("berth", false).unwrap();
        let ports = [
            IngressPort {
                proto: Proto::Tcp,
                published: 8080,
                backends: vec![
                    ("10.0.0.7".parse().unwrap(), 80),
                    ("10.0.0.5".parse().unwrap(), 80),
                ],
            },
            IngressPort {
                proto: Proto::Udp,
                published: 53,
                backends: vec![],
            },
        ];
        let s = t.render_ingress(&ports);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "flush set ip berth ingress_ports");
        assert_eq!(lines[1], "flush map ip berth ingress");
        assert_eq!(
            lines[2],
            "add element ip berth ingress_ports { tcp . 8080 }"
        );
        assert!(lines[3].starts_with(
            "add element ip berth ingress { tcp . 8080 . 0 : 10.0.0.5 . 80, tcp . 8080 . 1 : 10.0.0.7 . 80, "
        ));
        assert!(lines[3].ends_with("tcp . 8080 . 59 : 10.0.0.7 . 80 }"));
        assert_eq!(lines[4], "add element ip berth ingress_ports { udp . 53 }");
        assert_eq!(lines.len(), 5);
        let full = t.render(&[], &[]).unwrap();
        assert!(full.contains(
            "meta l4proto . th dport @ingress_ports dnat ip addr . port to meta l4proto . th dport . numgen inc mod 60 map @ingress"
        ));
        assert!(full.contains(
            "ip daddr 127.0.0.0/8 meta l4proto . th dport @ingress_ports jump published"
        ));
        assert!(!Table::new("berth", true)
            .unwrap()
            .render(&[], &[])
            .unwrap()
            .contains("ip daddr 127.0.0.0/8 meta"));
        let twice = [ports[0].clone(), ports[0].clone()];
        assert!(matches!(t.set_ingress(&twice), Err(Error::Invalid(_))));
    }

    #[test]
    fn renders_the_vxlan_filter() {
        let t = Table::new("berth", false).unwrap();
        let full = t.render(&[], &[]).unwrap();
        assert!(full.contains(
            "type filter hook input priority filter; policy accept;\n    udp dport @vxlan_ports ip saddr != @swarm_nodes drop\n"
        ));
        let nodes: BTreeSet<Ipv4Addr> =
            ["192.0.2.2".parse().unwrap(), "192.0.2.1".parse().unwrap()].into();
        assert_eq!(
            t.render_underlay(true, &nodes),
            "flush set ip berth vxlan_ports\nflush set ip berth swarm_nodes\n\
             add element ip berth vxlan_ports { 4789 }\n\
             add element ip berth swarm_nodes { 192.0.2.1, 192.0.2.2 }\n"
        );
        // No overlay: nothing is filtered, whatever nodes are given.
        assert_eq!(
            t.render_underlay(false, &nodes),
            "flush set ip berth vxlan_ports\nflush set ip berth swarm_nodes\n"
        );
        assert_eq!(
            t.render_underlay(true, &BTreeSet::new()),
            "flush set ip berth vxlan_ports\nflush set ip berth swarm_nodes\n\
             add element ip berth vxlan_ports { 4789 }\n"
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert!(Table::new("a b", true).is_err());
        assert!(Table::new("", true).is_err());
        let t = Table::new("ok", false).unwrap();
        assert!(t
            .render(&[], &[])
            .unwrap()
            .contains("ip daddr != 127.0.0.0/8 fib daddr type local jump published"));
        assert!(t
            .network_elements(
                "add",
                &net("x\" ; flush ruleset", "10.1.0.0/16", false, true)
            )
            .is_err());
        assert!(t
            .network_elements(
                "add",
                &net("averyveryverylongname", "10.1.0.0/16", false, true)
            )
            .is_err());
    }
}
