//! The embedded DNS server over real sockets. All traffic stays on 127.0.0.0/8: the upstreams
//! are fakes started by the tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_network::dns::{Names, Server};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const WAIT: Duration = Duration::from_secs(10);

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn query(name: &str, record_type: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    message
}

fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0,
            other => panic!("not an A record: {other:?}"),
        })
        .collect()
}

/// Sends raw bytes from `from` and returns the raw answer.
async fn exchange_udp_from(server: SocketAddr, from: Ipv4Addr, packet: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind((from, 0)).await.unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (len, peer) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("no answer from the DNS server")
        .unwrap();
    assert_eq!(peer, server);
    buf.truncate(len);
    buf
}

async fn ask_udp_from(server: SocketAddr, from: Ipv4Addr, message: &Message) -> Message {
    let answer = exchange_udp_from(server, from, &message.to_vec().unwrap()).await;
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn ask_udp(server: SocketAddr, message: &Message) -> Message {
    ask_udp_from(server, LOCALHOST, message).await
}

async fn write_frame(stream: &mut TcpStream, message: &[u8]) {
    let mut frame = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    stream.write_all(&frame).await.unwrap();
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let len = timeout(WAIT, stream.read_u16())
        .await
        .expect("no answer over TCP")
        .unwrap();
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await.unwrap();
    message
}

async fn ask_tcp(stream: &mut TcpStream, message: &Message) -> Message {
    write_frame(stream, &message.to_vec().unwrap()).await;
    let answer = Message::from_vec(&read_frame(stream).await).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    answer
}

/// What a fake upstream does with the queries it receives.
#[derive(Clone, Copy)]
enum Behaviour {
    /// One A record with this address, over UDP and TCP.
    Answer(Ipv4Addr),
    /// Over UDP, an empty answer with TC set; over TCP, one A record with this address.
    Truncate(Ipv4Addr),
    /// REFUSED.
    Refuse,
    /// Nothing.
    Silent,
}

/// A fake upstream resolver on 127.0.0.1, UDP and TCP on one port.
struct Upstream {
    addr: SocketAddr,
    /// Every query received over UDP, as sent on the wire.
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every query received over TCP, as sent on the wire.
    received_tcp: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every answer sent, as sent on the wire.
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Upstream {
    async fn start(behaviour: Behaviour) -> Upstream {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let received_tcp = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (Arc::clone(&received), Arc::clone(&sent));
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
                r.lock().unwrap().push(buf[..len].to_vec());
                if let Some(answer) = Self::answer(&buf[..len], behaviour, false) {
                    s.lock().unwrap().push(answer.clone());
                    udp.send_to(&answer, peer).await.unwrap();
                }
            }
        });
        let (r, s) = (Arc::clone(&received_tcp), Arc::clone(&sent));
        let tcp_task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let query = read_frame(&mut stream).await;
                r.lock().unwrap().push(query.clone());
                if let Some(answer) = Self::answer(&query, behaviour, true) {
                    s.lock().unwrap().push(answer.clone());
                    write_frame(&mut stream, &answer).await;
                }
            }
        });
        Upstream {
            addr,
            received,
            received_tcp,
            sent,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn answer(packet: &[u8], behaviour: Behaviour, tcp: bool) -> Option<Vec<u8>> {
        let request = Message::from_vec(packet).unwrap();
        let mut answer = Message::response(request.metadata.id, OpCode::Query);
        answer.metadata.recursion_desired = request.metadata.recursion_desired;
        answer.metadata.recursion_available = true;
        answer.add_queries(request.queries.iter().cloned());
        let name = request.queries[0].name().clone();
        match behaviour {
            Behaviour::Answer(ip) => {
                answer.add_answer(Record::from_rdata(name, 42, RData::A(A(ip))));
            }
            Behaviour::Truncate(ip) if tcp => {
                answer.add_answer(Record::from_rdata(name, 42, RData::A(A(ip))));
            }
            Behaviour::Truncate(_) => answer.metadata.truncation = true,
            Behaviour::Refuse => answer.metadata.response_code = ResponseCode::Refused,
            Behaviour::Silent => return None,
        }
        Some(answer.to_vec().unwrap())
    }

    /// Queries received over UDP and over TCP.
    fn queries(&self) -> usize {
        self.received.lock().unwrap().len() + self.tcp_queries()
    }

    fn tcp_queries(&self) -> usize {
        self.received_tcp.lock().unwrap().len()
    }
}

async fn server(names: &Names, upstreams: Vec<SocketAddr>) -> Server {
    Server::start((LOCALHOST, 0).into(), names.clone(), upstreams)
        .await
        .unwrap()
}

fn web_and_db() -> Names {
    let names = Names::new();
    names.set("c1", &strings(&["web", "shared", "c1c1c1c1c1c1"]), WEB);
    names.set("c2", &strings(&["db", "shared"]), DB);
    names
}

#[tokio::test]
async fn local_name_answers_a() {
    let names = web_and_db();
    let server = server(&names, Vec::new()).await;
    let addr = server.local_addr();
    assert_eq!(addr.ip(), LOCALHOST);
    assert_ne!(addr.port(), 0);

    let q = query("WEB.", RecordType::A);
    let answer = ask_udp(addr, &q).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert!(answer.metadata.recursion_available);
    assert!(answer.metadata.recursion_desired);
    assert_eq!(answer.queries, q.queries);
    assert_eq!(a_records(&answer), vec![WEB]);
    assert_eq!(answer.answers[0].ttl, 600);
    assert_eq!(answer.answers[0].name, Name::from_ascii("WEB.").unwrap());

    let mut shared = a_records(&ask_udp(addr, &query("shared.", RecordType::A)).await);
    shared.sort();
    assert_eq!(shared, vec![WEB, DB]);
    let any = ask_udp(addr, &query("c1c1c1c1c1c1.", RecordType::ANY)).await;
    assert_eq!(a_records(&any), vec![WEB]);

    // The table is live: later changes are served at once.
    names.set("c3", &strings(&["late"]), Ipv4Addr::new(10, 0, 0, 4));
    let late = ask_udp(addr, &query("late.", RecordType::A)).await;
    assert_eq!(a_records(&late), vec![Ipv4Addr::new(10, 0, 0, 4)]);
    names.remove("c1");
    let gone = ask_udp(addr, &query("web.", RecordType::A)).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    let shared = ask_udp(addr, &query("shared.", RecordType::A)).await;
    assert_eq!(a_records(&shared), vec![DB]);
}

#[tokio::test]
async fn other_types_for_local_name_are_empty() {
    let names = web_and_db();
    let server = server(&names, Vec::new()).await;
    for record_type in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let answer = ask_udp(server.local_addr(), &query("web.", record_type)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.answers.is_empty(), "{record_type}: {answer:?}");
    }
}

#[tokio::test]
async fn ptr_for_local_address() {
    let names = web_and_db();
    let server = server(&names, Vec::new()).await;
    let answer = ask_udp(
        server.local_addr(),
        &query("2.0.0.10.in-addr.arpa.", RecordType::PTR),
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    match &answer.answers[0].data {
        RData::PTR(target) => assert_eq!(target.0, Name::from_ascii("web.").unwrap()),
        other => panic!("not a PTR: {other:?}"),
    }
}

#[tokio::test]
async fn unknown_single_label_fails_without_upstream() {
    let upstream = Upstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let names = web_and_db();
    let server = server(&names, vec![upstream.addr]).await;
    let answer = ask_udp(server.local_addr(), &query("wbe.", RecordType::A)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(answer.answers.is_empty());
    assert_eq!(upstream.queries(), 0);
    // The upstream is reachable all the same: multi-label names go there.
    let answer = ask_udp(server.local_addr(), &query("wbe.example.", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(upstream.queries(), 1);
}

#[tokio::test]
async fn no_upstreams_is_nxdomain() {
    let server = server(&Names::new(), Vec::new()).await;
    let answer = ask_udp(
        server.local_addr(),
        &query("www.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn forwards_verbatim() {
    let upstream = Upstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let server = server(&web_and_db(), vec![upstream.addr]).await;
    let q = query("www.example.com.", RecordType::A).to_vec().unwrap();
    let answer = exchange_udp_from(server.local_addr(), LOCALHOST, &q).await;
    assert_eq!(
        upstream.received.lock().unwrap().as_slice(),
        std::slice::from_ref(&q)
    );
    assert_eq!(
        upstream.sent.lock().unwrap().as_slice(),
        std::slice::from_ref(&answer)
    );
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(
        answer.metadata.id,
        Message::from_vec(&q).unwrap().metadata.id
    );
    assert_eq!(a_records(&answer), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(answer.answers[0].ttl, 42);
}

#[tokio::test]
async fn next_upstream_after_failure() {
    let dead = {
        let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        socket.local_addr().unwrap()
    };
    let refusing = Upstream::start(Behaviour::Refuse).await;
    let good = Upstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 7))).await;
    let server = server(&Names::new(), vec![dead, refusing.addr, good.addr]).await;
    let started = Instant::now();
    let answer = ask_udp(
        server.local_addr(),
        &query("www.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&answer), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(refusing.queries(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn per_client_upstreams() {
    let default = Upstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let special = Upstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 2))).await;
    let names = web_and_db();
    names.set("c9", &strings(&["client"]), OTHER_CLIENT);
    names.set_upstreams_for("c9", OTHER_CLIENT, vec![special.addr]);
    let server = server(&names, vec![default.addr]).await;
    let addr = server.local_addr();
    let q = query("www.example.com.", RecordType::A);

    let from_other = ask_udp_from(addr, OTHER_CLIENT, &q).await;
    assert_eq!(a_records(&from_other), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    let from_localhost = ask_udp_from(addr, LOCALHOST, &q).await;
    assert_eq!(
        a_records(&from_localhost),
        vec![Ipv4Addr::new(192, 0, 2, 1)]
    );
    assert_eq!((default.queries(), special.queries()), (1, 1));

    names.remove("c9");
    let after_remove = ask_udp_from(addr, OTHER_CLIENT, &q).await;
    assert_eq!(a_records(&after_remove), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!((default.queries(), special.queries()), (2, 1));
}

#[tokio::test]
async fn silent_upstream_is_servfail_and_does_not_block_local_answers() {
    let silent = Upstream::start(Behaviour::Silent).await;
    let server = server(&web_and_db(), vec![silent.addr]).await;
    let addr = server.local_addr();
    let started = Instant::now();
    let forwarded =
        tokio::spawn(async move { ask_udp(addr, &query("slow.example.", RecordType::A)).await });
    // Let the forward reach the upstream, then ask for a local name meanwhile.
    while silent.queries() == 0 {
        assert!(started.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let local = ask_udp(addr, &query("db.", RecordType::A)).await;
    assert_eq!(a_records(&local), vec![DB]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let answer = forwarded.await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(answer.answers.is_empty());
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn tcp_queries_on_one_connection() {
    let upstream = Upstream::start(Behaviour::Answer(Ipv4Addr::new(192, 0, 2, 9))).await;
    let server = server(&web_and_db(), vec![upstream.addr]).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();

    let web = ask_tcp(&mut stream, &query("web.", RecordType::A)).await;
    assert_eq!(a_records(&web), vec![WEB]);

    // Pipelined: both queries written before any answer is read.
    let first = query("db.", RecordType::A);
    let second = query("www.example.org.", RecordType::A);
    write_frame(&mut stream, &first.to_vec().unwrap()).await;
    write_frame(&mut stream, &second.to_vec().unwrap()).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(Message::from_vec(&read_frame(&mut stream).await).unwrap());
    }
    answers.sort_by_key(|a| a.metadata.id != first.metadata.id);
    assert_eq!(answers[0].metadata.id, first.metadata.id);
    assert_eq!(a_records(&answers[0]), vec![DB]);
    assert_eq!(answers[1].metadata.id, second.metadata.id);
    assert_eq!(a_records(&answers[1]), vec![Ipv4Addr::new(192, 0, 2, 9)]);
    // Forwarded over TCP, as the client asked over TCP.
    assert_eq!((upstream.queries(), upstream.tcp_queries()), (1, 1));
}

#[tokio::test]
async fn truncated_upstream_answer_then_tcp() {
    let upstream = Upstream::start(Behaviour::Truncate(Ipv4Addr::new(192, 0, 2, 3))).await;
    let server = server(&Names::new(), vec![upstream.addr]).await;
    let q = query("big.example.", RecordType::A);
    let over_udp = ask_udp(server.local_addr(), &q).await;
    assert!(over_udp.metadata.truncation);
    assert!(over_udp.answers.is_empty());

    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let over_tcp = ask_tcp(&mut stream, &q).await;
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(a_records(&over_tcp), vec![Ipv4Addr::new(192, 0, 2, 3)]);
    assert_eq!((upstream.queries(), upstream.tcp_queries()), (2, 1));
}

#[tokio::test]
async fn large_local_answer_is_truncated_over_udp_only() {
    let names = Names::new();
    for i in 0..100u8 {
        names.set(
            &format!("c{i}"),
            &strings(&["many"]),
            Ipv4Addr::new(10, 1, 0, i),
        );
    }
    let server = server(&names, Vec::new()).await;
    let q = query("many.", RecordType::A);
    let over_udp = ask_udp(server.local_addr(), &q).await;
    assert!(over_udp.metadata.truncation);
    assert!(over_udp.answers.is_empty());

    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let over_tcp = ask_tcp(&mut stream, &q).await;
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(over_tcp.answers.len(), 100);
}

#[tokio::test]
async fn malformed_packets_do_not_stop_the_server() {
    let server = server(&web_and_db(), Vec::new()).await;
    let addr = server.local_addr();
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let mut response = query("web.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 3],
        // A header announcing one question that is not there.
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
        vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 63, b'a',
        ],
        // A response is never answered (no loops between resolvers).
        response.to_vec().unwrap(),
    ];
    for packet in &garbage {
        socket.send_to(packet, addr).await.unwrap();
    }
    let good = query("web.", RecordType::A);
    socket.send_to(&good.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(
        answer.metadata.id, good.metadata.id,
        "answered some garbage"
    );
    assert_eq!(a_records(&answer), vec![WEB]);

    // A well-formed message without a question is refused with FORMERR.
    let empty = Message::query();
    let answer = ask_udp(addr, &empty).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);

    // Over TCP, a malformed message closes the connection; the server goes on.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut stream, &[0xff; 5]).await;
    let mut rest = Vec::new();
    let read = timeout(WAIT, stream.read_to_end(&mut rest)).await.unwrap();
    assert!(
        read.is_err() || rest.is_empty(),
        "answered garbage: {rest:?}"
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let answer = ask_tcp(&mut stream, &query("db.", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);
    let answer = ask_udp(addr, &query("db.", RecordType::A)).await;
    assert_eq!(a_records(&answer), vec![DB]);
}

#[tokio::test]
async fn dropping_the_server_closes_its_sockets() {
    let server = server(&web_and_db(), Vec::new()).await;
    let addr = server.local_addr();
    drop(server);
    let started = Instant::now();
    loop {
        let udp = UdpSocket::bind(addr).await;
        let tcp = TcpListener::bind(addr).await;
        if udp.is_ok() && tcp.is_ok() {
            break;
        }
        assert!(started.elapsed() < WAIT, "sockets still bound after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
