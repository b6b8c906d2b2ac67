//! The embedded DNS server of user-defined networks: container names and aliases answered
//! locally, everything else forwarded to the upstream resolvers.
//!
//! One [`Server`] runs per network, on the gateway address (UDP and TCP, port 53). Local names
//! come from a shared [`Names`] table that the daemon updates as endpoints join and leave; a
//! container on several networks also resolves the names of its other networks (its peers,
//! see [`Names::set_peers`]). Names have an IPv4 address, an IPv6 one, or both (A and AAAA).
//! Local answers are built here; other queries are relayed byte for byte to an upstream and the
//! upstream's reply is relayed back byte for byte. It imports no other module of the crate: it
//! never touches links, the nftables table or network records.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
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

mod names;

pub use names::Names;
use names::{query_key, reverse_v4, reverse_v6};

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
