//! The names table of a network's embedded DNS server: which owner (container id) answers to
//! which names with which addresses, per-client upstreams, links and peer networks. Plain
//! data behind a lock; no sockets (the server in [`super`] reads it).

use hickory_proto::rr::Name;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

/// The names a network resolves; cheap to clone (shared state inside), safe to use from any
/// thread.
#[derive(Clone, Default)]
pub struct Names {
    table: Arc<RwLock<Table>>,
}

#[derive(Default)]
struct Table {
    /// Owner (container id) → what it registered.
    endpoints: HashMap<String, Endpoint>,
    /// Normalized name → owners answering to it, in registration order.
    by_name: HashMap<String, Vec<String>>,
    /// Owner → upstreams for queries from its address.
    overrides: HashMap<String, Override>,
    /// Owner → the tables of its other networks, consulted for queries from its address.
    peers: HashMap<String, Peers>,
    /// Owner → its links (`--link target:alias` on a user-defined network): for queries from
    /// its address, alias → target's name.
    links: HashMap<String, (Ipv4Addr, HashMap<String, String>)>,
    /// Registration counter: orders endpoints and overrides.
    seq: u64,
}

struct Endpoint {
    names: Vec<String>,
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    seq: u64,
}

struct Peers {
    client: Ipv4Addr,
    /// Weak: networks refer to each other through their containers.
    tables: Vec<Weak<RwLock<Table>>>,
}

/// The addresses of a name: A and AAAA records.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Addrs {
    pub(super) v4: Vec<Ipv4Addr>,
    pub(super) v6: Vec<Ipv6Addr>,
}

impl Addrs {
    pub(super) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

struct Override {
    client: Ipv4Addr,
    upstreams: Vec<SocketAddr>,
    seq: u64,
}

impl Table {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Addresses of a lookup key, in registration order, without duplicates.
    fn resolve(&self, key: &str) -> Addrs {
        let mut addrs = Addrs::default();
        for owner in self.by_name.get(key).into_iter().flatten() {
            if let Some(endpoint) = self.endpoints.get(owner) {
                if let Some(ip) = endpoint.ip.filter(|ip| !addrs.v4.contains(ip)) {
                    addrs.v4.push(ip);
                }
                if let Some(ip) = endpoint.ip6.filter(|ip| !addrs.v6.contains(ip)) {
                    addrs.v6.push(ip);
                }
            }
        }
        addrs
    }

    fn forget_endpoint(&mut self, owner: &str) {
        let Some(old) = self.endpoints.remove(owner) else {
            return;
        };
        for name in old.names {
            if let Some(owners) = self.by_name.get_mut(&name) {
                owners.retain(|o| o != owner);
                if owners.is_empty() {
                    self.by_name.remove(&name);
                }
            }
        }
    }
}

/// The lookup key of a registered name: ASCII-lowercased, one trailing dot dropped.
fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

/// The lookup key of a queried name, or `None` when no registered name can be spelled like it
/// (a label holding a dot or invalid UTF-8, or the root).
pub(super) fn query_key(name: &Name) -> Option<String> {
    let mut key = String::new();
    for label in name.iter() {
        if label.contains(&b'.') {
            return None;
        }
        let label = std::str::from_utf8(label).ok()?;
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(&label.to_ascii_lowercase());
    }
    (!key.is_empty()).then_some(key)
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa` → `1.2.3.4`), given as a lookup key.
pub(super) fn reverse_v4(key: &str) -> Option<Ipv4Addr> {
    let rest = key.strip_suffix(".in-addr.arpa")?;
    let mut labels = rest.split('.');
    let mut octets = [0u8; 4];
    for octet in octets.iter_mut().rev() {
        let label = labels.next()?;
        if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = label.parse().ok()?;
    }
    match labels.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

/// The address of an IPv6 reverse name (32 nibbles, least significant first, then
/// `ip6.arpa`), given as a lookup key.
pub(super) fn reverse_v6(key: &str) -> Option<Ipv6Addr> {
    let rest = key.strip_suffix(".ip6.arpa")?;
    let mut value: u128 = 0;
    let mut count = 0;
    for (i, label) in rest.split('.').enumerate() {
        if i >= 32 || label.len() != 1 {
            return None;
        }
        let nibble = u128::from(label.chars().next()?.to_digit(16)?);
        value |= nibble << (4 * i);
        count += 1;
    }
    (count == 32).then(|| Ipv6Addr::from(value))
}

impl Names {
    /// An empty table.
    pub fn new() -> Names {
        Names::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        // No code path panics while holding the lock, and the table stays consistent anyway.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register (or replace) what endpoint `owner` (a container id) answers to on this network:
    /// its names (container name, aliases, 12-char short id…) → its address. Names are
    /// case-insensitive; a trailing dot is ignored. Several owners may share a name (an alias on
    /// several containers): the name then resolves to all their addresses.
    pub fn set(&self, owner: &str, names: &[String], ip: Ipv4Addr) {
        self.set_addrs(owner, names, Some(ip), None);
    }

    /// [`Names::set`] with an IPv6 address (AAAA answers) beside or instead of the IPv4 one.
    pub fn set_addrs(
        &self,
        owner: &str,
        names: &[String],
        ip: Option<Ipv4Addr>,
        ip6: Option<Ipv6Addr>,
    ) {
        let mut keys: Vec<String> = Vec::with_capacity(names.len());
        for key in names.iter().filter_map(|n| normalize(n)) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut table = self.write();
        table.forget_endpoint(owner);
        for key in &keys {
            table
                .by_name
                .entry(key.clone())
                .or_default()
                .push(owner.to_string());
        }
        let seq = table.next_seq();
        table.endpoints.insert(
            owner.to_string(),
            Endpoint {
                names: keys,
                ip,
                ip6,
                seq,
            },
        );
    }

    /// Forget everything `owner` registered (its names, its reverse entry and its upstream
    /// override).
    pub fn remove(&self, owner: &str) {
        let mut table = self.write();
        table.forget_endpoint(owner);
        table.overrides.remove(owner);
        table.peers.remove(owner);
        table.links.remove(owner);
    }

    /// Links of `owner`, whose address here is `client`: for its queries, each alias stands
    /// for its target's name (pairs of alias and target). An empty list drops them.
    pub fn set_links(&self, owner: &str, client: Ipv4Addr, links: &[(String, String)]) {
        let map: HashMap<String, String> = links
            .iter()
            .filter_map(|(alias, target)| Some((normalize(alias)?, normalize(target)?)))
            .collect();
        let mut table = self.write();
        if map.is_empty() {
            table.links.remove(owner);
        } else {
            table.links.insert(owner.to_string(), (client, map));
        }
    }

    /// IPv4 addresses of a name (empty when unknown).
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        normalize(name).map_or_else(Vec::new, |key| self.read().resolve(&key).v4)
    }

    /// Queries from `client` (the address of `owner`'s endpoint on this network) also resolve
    /// the names of `others` (the other networks `owner` is on), after this network's own. An
    /// empty list drops them.
    pub fn set_peers(&self, owner: &str, client: Ipv4Addr, others: &[Names]) {
        let tables: Vec<_> = others
            .iter()
            .filter(|o| !Arc::ptr_eq(&o.table, &self.table))
            .map(|o| Arc::downgrade(&o.table))
            .collect();
        let mut table = self.write();
        if tables.is_empty() {
            table.peers.remove(owner);
        } else {
            table
                .peers
                .insert(owner.to_string(), Peers { client, tables });
        }
    }

    /// Addresses of a lookup key for a query from `client`: this network's names, else those
    /// of the client's other networks.
    pub(super) fn resolve_for(&self, key: &str, client: Option<Ipv4Addr>) -> Addrs {
        let (own, peers) = {
            let table = self.read();
            let linked = client.and_then(|c| {
                table
                    .links
                    .values()
                    .filter(|(ip, _)| *ip == c)
                    .find_map(|(_, m)| m.get(key))
            });
            if let Some(target) = linked {
                let found = table.resolve(target);
                if !found.is_empty() {
                    return found;
                }
            }
            let peers: Vec<(String, Weak<RwLock<Table>>)> = client
                .map(|c| {
                    table
                        .peers
                        .iter()
                        .filter(|(_, p)| p.client == c)
                        .flat_map(|(owner, p)| p.tables.iter().map(|t| (owner.clone(), t.clone())))
                        .collect()
                })
                .unwrap_or_default();
            (table.resolve(key), peers)
        };
        if !own.is_empty() {
            return own;
        }
        let mut addrs = Addrs::default();
        for (owner, peer) in &peers {
            let Some(peer) = peer.upgrade() else {
                continue;
            };
            let peer = peer.read().unwrap_or_else(PoisonError::into_inner);
            // The owner's links on that network count too.
            let linked = peer.links.get(owner).and_then(|(_, m)| m.get(key));
            let found = match linked.map(|t| peer.resolve(t)) {
                Some(found) if !found.is_empty() => found,
                _ => peer.resolve(key),
            };
            for ip in found.v4 {
                if !addrs.v4.contains(&ip) {
                    addrs.v4.push(ip);
                }
            }
            for ip in found.v6 {
                if !addrs.v6.contains(&ip) {
                    addrs.v6.push(ip);
                }
            }
        }
        addrs
    }

    /// Upstream resolvers for queries coming from `client` (a container's address that was
    /// given --dns); overrides the server's default upstreams for that client. An empty list
    /// drops `owner`'s override, so that the defaults apply again.
    pub fn set_upstreams_for(&self, owner: &str, client: Ipv4Addr, upstreams: Vec<SocketAddr>) {
        let mut table = self.write();
        if upstreams.is_empty() {
            table.overrides.remove(owner);
            return;
        }
        let seq = table.next_seq();
        table.overrides.insert(
            owner.to_string(),
            Override {
                client,
                upstreams,
                seq,
            },
        );
    }

    /// The first name of the earliest registered endpoint holding `ip`.
    pub(super) fn reverse(&self, ip: IpAddr) -> Option<String> {
        let table = self.read();
        table
            .endpoints
            .values()
            .filter(|e| match ip {
                IpAddr::V4(a) => e.ip == Some(a),
                IpAddr::V6(a) => e.ip6 == Some(a),
            })
            .filter(|e| !e.names.is_empty())
            .min_by_key(|e| e.seq)
            .and_then(|e| e.names.first().cloned())
    }

    /// The override for `client` (the latest one set when several owners claim that address).
    pub(super) fn upstreams_for(&self, client: Ipv4Addr) -> Option<Vec<SocketAddr>> {
        let table = self.read();
        table
            .overrides
            .values()
            .filter(|o| o.client == client)
            .max_by_key(|o| o.seq)
            .map(|o| o.upstreams.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    const IP1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

    #[test]
    fn alias_on_several_owners() {
        let n = Names::new();
        n.set("c1", &names(&["web", "shared"]), IP1);
        n.set("c2", &names(&["db", "shared"]), IP2);
        assert_eq!(n.lookup("web"), vec![IP1]);
        assert_eq!(n.lookup("db"), vec![IP2]);
        assert_eq!(n.lookup("shared"), vec![IP1, IP2]);
        assert!(n.lookup("other").is_empty());
    }

    #[test]
    fn case_and_trailing_dot() {
        let n = Names::new();
        n.set("c1", &names(&["Web.Front."]), IP1);
        assert_eq!(n.lookup("web.front"), vec![IP1]);
        assert_eq!(n.lookup("WEB.FRONT."), vec![IP1]);
        assert!(n.lookup("web.front..").is_empty());
        assert!(n.lookup("").is_empty());
        assert!(n.lookup(".").is_empty());
    }

    #[test]
    fn set_replaces_and_remove_forgets() {
        let n = Names::new();
        n.set("c1", &names(&["web", "old"]), IP1);
        n.set("c1", &names(&["web"]), IP2);
        assert_eq!(n.lookup("web"), vec![IP2]);
        assert!(n.lookup("old").is_empty());
        assert_eq!(n.reverse(IP2.into()).as_deref(), Some("web"));
        assert_eq!(n.reverse(IP1.into()), None);

        n.set_upstreams_for("c1", IP2, vec!["127.0.0.1:5353".parse().unwrap()]);
        n.set("c2", &names(&["web"]), IP1);
        n.remove("c1");
        assert_eq!(n.lookup("web"), vec![IP1]);
        assert_eq!(n.reverse(IP2.into()), None);
        assert_eq!(n.upstreams_for(IP2), None);
        n.remove("c2");
        assert!(n.lookup("web").is_empty());
        assert!(n.read().by_name.is_empty());
    }

    #[test]
    fn reverse_is_first_registered_name() {
        let n = Names::new();
        n.set("c1", &names(&["web", "alias", "0123456789ab"]), IP1);
        assert_eq!(n.reverse(IP1.into()).as_deref(), Some("web"));
        assert_eq!(reverse_v4("2.0.0.10.in-addr.arpa"), Some(IP1));
        let v6: Ipv6Addr = "fd00:1::2a".parse().unwrap();
        let hex = format!("{:032x}", u128::from(v6));
        let mut labels: Vec<String> = hex.chars().rev().map(String::from).collect();
        labels.push("ip6.arpa".into());
        let name = labels.join(".");
        assert!(name.starts_with("a.2.0.0.") && name.ends_with(".d.f.ip6.arpa"));
        let name = name.as_str();
        assert_eq!(reverse_v6(name), Some(v6));
        assert_eq!(reverse_v6("a.2.ip6.arpa"), None);
        assert_eq!(reverse_v6(&format!("0.{name}")), None);
        assert_eq!(reverse_v4("0.0.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("1.2.0.0.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("256.0.0.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("+2.0.0.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("2.0.0.10.ip6.arpa"), None);
    }

    #[test]
    fn peers_and_ipv6() {
        let (n1, n2) = (Names::new(), Names::new());
        n2.set_addrs(
            "c2",
            &names(&["web"]),
            Some(IP2),
            Some("fd00::5".parse().unwrap()),
        );
        assert_eq!(n1.resolve_for("web", Some(IP1)), Addrs::default());
        n1.set_peers("c1", IP1, &[n1.clone(), n2.clone()]);
        let found = n1.resolve_for("web", Some(IP1));
        assert_eq!(found.v4, vec![IP2]);
        assert_eq!(found.v6, vec!["fd00::5".parse::<Ipv6Addr>().unwrap()]);
        let v6: Ipv6Addr = "fd00::5".parse().unwrap();
        assert_eq!(n2.reverse(v6.into()).as_deref(), Some("web"));
        // Only for that client, and only while the peers are set.
        assert!(n1.resolve_for("web", Some(IP2)).is_empty());
        n1.set_peers("c1", IP1, &[]);
        assert!(n1.resolve_for("web", Some(IP1)).is_empty());
        n1.set_peers("c1", IP1, std::slice::from_ref(&n2));
        n1.remove("c1");
        assert!(n1.resolve_for("web", Some(IP1)).is_empty());
        // A dropped network is no peer any more.
        n1.set_peers("c1", IP1, std::slice::from_ref(&n2));
        drop(n2);
        assert!(n1.resolve_for("web", Some(IP1)).is_empty());
    }

    #[test]
    fn links_are_per_client() {
        let n = Names::new();
        n.set("web", &names(&["web"]), IP2);
        n.set_links("c1", IP1, &[("db".into(), "web".into())]);
        assert_eq!(n.resolve_for("db", Some(IP1)).v4, vec![IP2]);
        assert!(n.resolve_for("db", Some(IP2)).is_empty());
        assert!(n.resolve_for("db", None).is_empty());
        n.remove("c1");
        assert!(n.resolve_for("db", Some(IP1)).is_empty());
    }

    #[test]
    fn upstream_overrides() {
        let n = Names::new();
        let a: SocketAddr = "127.0.0.1:1053".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2053".parse().unwrap();
        n.set_upstreams_for("c1", IP1, vec![a]);
        assert_eq!(n.upstreams_for(IP1), Some(vec![a]));
        assert_eq!(n.upstreams_for(IP2), None);
        n.set_upstreams_for("c1", IP1, vec![b]);
        assert_eq!(n.upstreams_for(IP1), Some(vec![b]));
        n.set_upstreams_for("c1", IP1, Vec::new());
        assert_eq!(n.upstreams_for(IP1), None);
    }

    #[test]
    fn query_keys() {
        let name = Name::from_ascii("Web.Example.").unwrap();
        assert_eq!(query_key(&name).as_deref(), Some("web.example"));
        let dotted = Name::from_labels(vec![&b"a.b"[..], &b"c"[..]]).unwrap();
        assert_eq!(query_key(&dotted), None);
        assert_eq!(query_key(&Name::root()), None);
    }
}
