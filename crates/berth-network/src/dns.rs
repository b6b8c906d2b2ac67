//! The embedded DNS server of user-defined networks: container names and aliases answered
//! locally, everything else forwarded to the upstream resolvers.
//!
//! One [`Server`] runs per network, on the gateway address (UDP and TCP, port 53). Local names
//! come from a shared [`Names`] table that the daemon updates as endpoints join and leave; a
//! container on several networks also resolves the names of its other networks (its peers,
//! see [`Names::set_peers`]). Names have an IPv4 address, an IPv6 one, or both (A and AAAA).
//! Local answers are built here; other queries are relayed byte for byte to an upstream and the
//! upstream's reply is relayed back byte for byte.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use futures_util::future::OptionFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// TTL of local answers (Docker's).
const TTL: u32 = 600;
/// How long one upstream gets to answer before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends no complete query for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A TCP client that does not read its answer within this long is disconnected.
const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Forwarded queries in flight per server (UDP and TCP together); beyond, SERVFAIL at once.
const MAX_FORWARDS: usize = 256;
/// TCP clients served at once; further connections wait in the listen backlog.
const MAX_TCP_CONNECTIONS: usize = 64;
/// Queries of one TCP connection being answered at once; reading pauses beyond.
const MAX_PIPELINE: usize = 16;
/// Largest DNS message (TCP framing, UDP datagram).
const MAX_MESSAGE: usize = 65_535;
/// Largest UDP answer built locally, whatever EDNS size the client announces.
const MAX_UDP_ANSWER: u16 = 4096;
/// The fixed DNS header.
const HEADER_LEN: usize = 12;
/// Pause after a failing socket call, so that a persistent error does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Tries at binding UDP and TCP on one free port when the caller asked for port 0.
const BIND_ATTEMPTS: usize = 16;

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
struct Addrs {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

impl Addrs {
    fn is_empty(&self) -> bool {
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
fn query_key(name: &Name) -> Option<String> {
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
fn reverse_v4(key: &str) -> Option<Ipv4Addr> {
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
fn reverse_v6(key: &str) -> Option<Ipv6Addr> {
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
    fn resolve_for(&self, key: &str, client: Option<Ipv4Addr>) -> Addrs {
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
    fn reverse(&self, ip: IpAddr) -> Option<String> {
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
    fn upstreams_for(&self, client: Ipv4Addr) -> Option<Vec<SocketAddr>> {
        let table = self.read();
        table
            .overrides
            .values()
            .filter(|o| o.client == client)
            .max_by_key(|o| o.seq)
            .map(|o| o.upstreams.clone())
    }
}

/// A running server; dropping it stops it (its tasks end, its sockets close).
pub struct Server {
    local: SocketAddr,
    tasks: JoinSet<()>,
}

impl Server {
    /// Bind UDP and TCP on `listen` and serve until dropped. `upstreams` are where names that
    /// are not local go (the daemon's `dns` setting, else the host's resolv.conf nameservers);
    /// they may be empty.
    pub async fn start(
        listen: SocketAddr,
        names: Names,
        upstreams: Vec<SocketAddr>,
    ) -> io::Result<Server> {
        let (udp, tcp) = bind(listen).await?;
        let local = udp.local_addr()?;
        let shared = Arc::new(Shared {
            names,
            local,
            upstreams,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, Arc::clone(&shared)));
        tasks.spawn(serve_tcp(tcp, shared));
        tracing::debug!(%local, "DNS server listening");
        Ok(Server { local, tasks })
    }

    /// The UDP address actually bound (TCP listens on the same address and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The tasks own the sockets and every in-flight query: aborting them closes everything.
        self.tasks.abort_all();
    }
}

/// Binds UDP then TCP on the same address; with port 0, on the same free port.
async fn bind(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut attempts = 1;
    loop {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err)
                if listen.port() == 0
                    && err.kind() == io::ErrorKind::AddrInUse
                    && attempts < BIND_ATTEMPTS =>
            {
                attempts += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// What the server tasks share.
struct Shared {
    names: Names,
    /// The server's own address, never used as an upstream (it would loop).
    local: SocketAddr,
    upstreams: Vec<SocketAddr>,
    forwards: Arc<Semaphore>,
}

/// What to do with a received packet.
enum Action {
    /// Not a query we can answer (malformed, or a response).
    Drop,
    /// Send this message back.
    Reply(Vec<u8>),
    /// Relay the packet to these upstreams; send `servfail` back if none answers.
    Forward {
        upstreams: Vec<SocketAddr>,
        servfail: Vec<u8>,
    },
}

impl Shared {
    /// Decides how to answer `packet`, received from `client` over UDP or TCP.
    fn classify(&self, packet: &[u8], client: Option<Ipv4Addr>, tcp: bool) -> Action {
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(err) => {
                tracing::debug!(%err, "dropping malformed DNS packet");
                return Action::Drop;
            }
        };
        if request.message_type != MessageType::Query {
            return Action::Drop;
        }
        let limit = if tcp {
            MAX_MESSAGE
        } else {
            usize::from(request.max_payload().min(MAX_UDP_ANSWER))
        };
        let reply =
            |response: Message| encode(&response, limit).map_or(Action::Drop, Action::Reply);
        if request.op_code != OpCode::Query {
            return reply(response(&request, ResponseCode::NotImp, false));
        }
        let [query] = request.queries.as_slice() else {
            return reply(response(&request, ResponseCode::FormErr, false));
        };
        if matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            if let Some(answer) =
                query_key(query.name()).and_then(|k| self.local(&request, query, &k, client))
            {
                return reply(answer);
            }
        }
        // Not a local name: a single label is a mistyped container name, not worth a round
        // trip to the upstreams.
        if query.name().iter().count() == 1 {
            return reply(response(&request, ResponseCode::NXDomain, true));
        }
        let upstreams: Vec<SocketAddr> = client
            .and_then(|c| self.names.upstreams_for(c))
            .unwrap_or_else(|| self.upstreams.clone())
            .into_iter()
            .filter(|u| *u != self.local)
            .collect();
        if upstreams.is_empty() {
            return reply(response(&request, ResponseCode::NXDomain, false));
        }
        match encode(&response(&request, ResponseCode::ServFail, false), limit) {
            Some(servfail) => Action::Forward {
                upstreams,
                servfail,
            },
            None => Action::Drop,
        }
    }

    /// The answer to `query` when it is about a local name (`key` is its lookup key).
    fn local(
        &self,
        request: &Message,
        query: &Query,
        key: &str,
        client: Option<Ipv4Addr>,
    ) -> Option<Message> {
        if query.query_type() == RecordType::PTR {
            let ip = reverse_v4(key)
                .map(IpAddr::V4)
                .or_else(|| reverse_v6(key).map(IpAddr::V6));
            let target = ip
                .and_then(|ip| self.names.reverse(ip))
                .and_then(|name| Name::from_labels(name.split('.').map(str::as_bytes)).ok());
            if let Some(target) = target {
                let mut answer = response(request, ResponseCode::NoError, true);
                answer.add_answer(Record::from_rdata(
                    query.name().clone(),
                    TTL,
                    RData::PTR(PTR(target)),
                ));
                return Some(answer);
            }
        }
        let addrs = self.names.resolve_for(key, client);
        if addrs.is_empty() {
            return None;
        }
        // The name exists: other types get an empty NOERROR, so that clients do not wait.
        let mut answer = response(request, ResponseCode::NoError, true);
        if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
            for ip in addrs.v4 {
                answer.add_answer(Record::from_rdata(
                    query.name().clone(),
                    TTL,
                    RData::A(A(ip)),
                ));
            }
        }
        if matches!(query.query_type(), RecordType::AAAA | RecordType::ANY) {
            for ip in addrs.v6 {
                answer.add_answer(Record::from_rdata(
                    query.name().clone(),
                    TTL,
                    RData::AAAA(AAAA(ip)),
                ));
            }
        }
        Some(answer)
    }
}

/// A response to `request` carrying its question, with `code`.
fn response(request: &Message, code: ResponseCode, authoritative: bool) -> Message {
    let mut response = Message::response(request.id, request.op_code);
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.checking_disabled = request.checking_disabled;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = authoritative;
    response.metadata.response_code = code;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_ANSWER);
        response.set_edns(edns);
    }
    response
}

/// Encodes `response`; when it exceeds `limit` bytes, sends its truncated form (no records, TC
/// set) so that the client retries over TCP.
fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let encoded = match response.to_vec() {
        Ok(encoded) if encoded.len() <= limit => return Some(encoded),
        Ok(_) => response.truncate().to_vec(),
        Err(err) => Err(err),
    };
    encoded
        .inspect_err(|err| tracing::warn!(%err, "cannot encode DNS response"))
        .ok()
}

/// The IPv4 address of a peer (IPv4-mapped IPv6 included).
fn client_v4(peer: SocketAddr) -> Option<Ipv4Addr> {
    match peer.ip().to_canonical() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut forwards = FuturesUnordered::new();
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(received) => received,
                    Err(err) => {
                        tracing::debug!(%err, "DNS UDP receive failed");
                        tokio::time::sleep(ERROR_PAUSE).await;
                        continue;
                    }
                };
                let packet = &buf[..len];
                match shared.classify(packet, client_v4(peer), false) {
                    Action::Drop => {}
                    Action::Reply(answer) => send_udp(&socket, &answer, peer).await,
                    Action::Forward { upstreams, servfail } => {
                        match Arc::clone(&shared.forwards).try_acquire_owned() {
                            Ok(permit) => {
                                let query = packet.to_vec();
                                forwards.push(async move {
                                    (relay(query, upstreams, servfail, false, permit).await, peer)
                                });
                            }
                            Err(_) => send_udp(&socket, &servfail, peer).await,
                        }
                    }
                }
            }
            Some((answer, peer)) = forwards.next(), if !forwards.is_empty() => {
                send_udp(&socket, &answer, peer).await;
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, message: &[u8], peer: SocketAddr) {
    if let Err(err) = socket.send_to(message, peer).await {
        tracing::debug!(%peer, %err, "cannot send DNS answer");
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < MAX_TCP_CONNECTIONS => {
                match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(stream, peer, Arc::clone(&shared)));
                    }
                    Err(err) => {
                        tracing::debug!(%err, "DNS TCP accept failed");
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves the queries of one TCP client, several at once, until it closes, idles, sends a
/// malformed message or stops reading.
async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let client = client_v4(peer);
    let (reader, mut writer) = stream.into_split();
    // The read in progress lives across loop turns, so that a partly read message survives
    // the answers written meanwhile.
    let mut reading = Some(Box::pin(next_query(reader)));
    let mut forwards = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some((reader, query)) = OptionFuture::from(reading.as_mut()),
                if reading.is_some() && forwards.len() < MAX_PIPELINE =>
            {
                let Some(query) = query else {
                    // End of stream, idle or broken: finish what is in flight, then close.
                    reading = None;
                    continue;
                };
                reading = Some(Box::pin(next_query(reader)));
                match shared.classify(&query, client, true) {
                    Action::Drop => return,
                    Action::Reply(answer) => {
                        if !send_tcp(&mut writer, &answer).await {
                            return;
                        }
                    }
                    Action::Forward { upstreams, servfail } => {
                        match Arc::clone(&shared.forwards).try_acquire_owned() {
                            Ok(permit) => {
                                forwards.push(relay(query, upstreams, servfail, true, permit));
                            }
                            Err(_) => {
                                if !send_tcp(&mut writer, &servfail).await {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
            Some(answer) = forwards.next(), if !forwards.is_empty() => {
                if !send_tcp(&mut writer, &answer).await {
                    return;
                }
            }
            else => return,
        }
    }
}

/// Reads the next query of a TCP client; `None` on end of stream, error or idle timeout.
async fn next_query(mut reader: OwnedReadHalf) -> (OwnedReadHalf, Option<Vec<u8>>) {
    let query = timeout(TCP_IDLE_TIMEOUT, read_frame(&mut reader)).await;
    (reader, query.ok().and_then(Result::ok))
}

async fn send_tcp(writer: &mut OwnedWriteHalf, message: &[u8]) -> bool {
    match timeout(TCP_WRITE_TIMEOUT, write_frame(writer, message)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(%err, "cannot send DNS answer over TCP");
            false
        }
        Err(_) => false,
    }
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Vec<u8>> {
    let len = reader.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    reader.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message too long"))?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    writer.write_all(&frame).await
}

/// Forwards `query`, holding a forwarding slot until done; the upstream's answer, else
/// `servfail`.
async fn relay(
    query: Vec<u8>,
    upstreams: Vec<SocketAddr>,
    servfail: Vec<u8>,
    tcp: bool,
    _slot: OwnedSemaphorePermit,
) -> Vec<u8> {
    forward(&query, &upstreams, tcp).await.unwrap_or(servfail)
}

/// Asks each upstream in turn; the first usable answer.
async fn forward(query: &[u8], upstreams: &[SocketAddr], tcp: bool) -> Option<Vec<u8>> {
    for &upstream in upstreams {
        let exchanged = if tcp {
            timeout(UPSTREAM_TIMEOUT, exchange_tcp(query, upstream)).await
        } else {
            timeout(UPSTREAM_TIMEOUT, exchange_udp(query, upstream)).await
        };
        match exchanged {
            Ok(Ok(answer)) => {
                // SERVFAIL and REFUSED may be the upstream's own trouble: another may do better.
                let code = answer.get(3).map(|b| b & 0x0f);
                if code == Some(ResponseCode::ServFail.low())
                    || code == Some(ResponseCode::Refused.low())
                {
                    tracing::debug!(%upstream, "upstream DNS server failed the query");
                    continue;
                }
                return Some(answer);
            }
            Ok(Err(err)) => tracing::debug!(%upstream, %err, "upstream DNS server unreachable"),
            Err(_) => tracing::debug!(%upstream, "upstream DNS server timed out"),
        }
    }
    None
}

/// Whether `answer` is the upstream's response to `query` (same id, response bit).
fn answers(query: &[u8], answer: &[u8]) -> bool {
    answer.len() >= HEADER_LEN
        && query.get(..2) == answer.get(..2)
        && answer.get(2).is_some_and(|flags| flags & 0x80 != 0)
}

async fn exchange_udp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    // A fresh socket per query: a random source port, and only the upstream's datagrams.
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await?;
        if answers(query, &buf[..len]) {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_frame(&mut stream, query).await?;
    let answer = read_frame(&mut stream).await?;
    if answers(query, &answer) {
        Ok(answer)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "upstream answered another query",
        ))
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
