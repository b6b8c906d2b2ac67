//! Node-to-node RPC: HTTP/1.1 over mutual TLS. A bounded server that hands each request and the
//! caller's verified identity to a handler, and a pooling client for JSON, bytes and streams.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ca::{peer_info, PeerInfo};
use crate::tls::MANAGER_SERVER_NAME;

/// Connections the server holds at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections without a client certificate held at once (out of [`MAX_CONNECTIONS`]).
pub const MAX_ANONYMOUS: usize = 32;
/// Time a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers, idle keep-alive time included.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Cap on JSON (and other in-memory) bodies, requests and responses.
pub const MAX_JSON_BODY: u64 = 64 << 20;
/// Cap on streamed bodies (raft snapshots); larger requests are refused before the handler.
pub const MAX_STREAM_BODY: u64 = 1 << 30;
/// Longest wait for the next piece of a body.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pooled client connections idle longer than this are not reused (the server's header
/// timeout closes them).
const POOL_IDLE: Duration = Duration::from_secs(15);
const POOL_PER_ADDR: usize = 4;
/// How long connections get to finish their requests after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A response as handlers produce it.
pub type RpcResponse = Response<ReplyBody>;

/// A response body: whole (JSON, bytes), or pieces sent as a handler produces them (log
/// streams), until its sender is dropped. A stream's sender sees the receiver closed once the
/// client has gone.
pub enum ReplyBody {
    Whole(Full<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

impl ReplyBody {
    pub fn whole(b: impl Into<Bytes>) -> ReplyBody {
        ReplyBody::Whole(Full::new(b.into()))
    }

    pub fn empty() -> ReplyBody {
        ReplyBody::Whole(Full::default())
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ReplyBody::Whole(full) => Pin::new(full).poll_frame(cx),
            ReplyBody::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Whole(full) => full.is_end_stream(),
            ReplyBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Whole(full) => full.size_hint(),
            ReplyBody::Stream(_) => SizeHint::default(),
        }
    }
}
/// What [`Handler::call`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = RpcResponse> + Send>>;

/// Serves the requests of one RPC server. `peer` is what the client's verified certificate
/// says, or None for a client that presented none; the client's `SocketAddr` is in the
/// request's extensions.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, peer: Option<PeerInfo>, req: Request<Incoming>) -> HandlerFuture;
}

/// Serves RPC on `listener` until `shutdown` turns true or its sender is dropped; then stops
/// accepting and gives open connections a few seconds to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    handler: Arc<dyn Handler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let anon_slots = Arc::new(Semaphore::new(MAX_ANONYMOUS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = wait_shutdown(&mut shutdown) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::warn!("swarm RPC accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("swarm RPC: {MAX_CONNECTIONS} connections open, closing {remote}");
            continue;
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let anon = anon_slots.clone();
        tokio::spawn(serve_connection(
            tcp, acceptor, handler, shutdown, permit, anon,
        ));
    }
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    handler: Arc<dyn Handler>,
    mut shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    anon_slots: Arc<Semaphore>,
) {
    let _ = tcp.set_nodelay(true);
    let remote = tcp.peer_addr().ok();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!("swarm RPC TLS handshake with {remote:?}: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("swarm RPC TLS handshake with {remote:?} timed out");
            return;
        }
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| match peer_info(cert) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!("swarm RPC peer {remote:?}: unusable client certificate: {e}");
                None
            }
        });
    // A client without a certificate (fetching the CA, joining) leaves the connections of
    // the nodes alone: it takes one of a few slots of its own, for one request.
    let anonymous = peer.is_none();
    let _slot = if anonymous {
        let Ok(anon) = anon_slots.try_acquire_owned() else {
            tracing::debug!(
                "swarm RPC: {MAX_ANONYMOUS} clients without a certificate, closing {remote:?}"
            );
            return;
        };
        drop(permit);
        anon
    } else {
        permit
    };
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let handler = handler.clone();
        let peer = peer.clone();
        // Handlers find the client's address among the request's extensions.
        if let Some(addr) = remote {
            req.extensions_mut().insert(addr);
        }
        async move { Ok::<_, Infallible>(dispatch(handler.as_ref(), peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(!anonymous);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("swarm RPC connection {remote:?}: {e}");
            }
        }
        () = wait_shutdown(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

async fn dispatch(
    handler: &dyn Handler,
    peer: Option<PeerInfo>,
    req: Request<Incoming>,
) -> RpcResponse {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_STREAM_BODY) {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {MAX_STREAM_BODY} bytes"),
        );
    }
    handler.call(peer, req).await
}

/// A JSON response.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> RpcResponse {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .body(ReplyBody::whole(body))
            .unwrap_or_else(|_| Response::new(ReplyBody::empty())),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the response: {e}"),
        ),
    }
}

/// An error response: `{"message": ...}` as the Engine API's.
pub fn error_response(status: StatusCode, message: &str) -> RpcResponse {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(ReplyBody::whole(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("timed out waiting for the body")]
    Timeout,
    #[error("reading the body: {0}")]
    Read(String),
    #[error("invalid JSON body: {0}")]
    Json(String),
}

impl BodyError {
    /// The status a server answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) | BodyError::Json(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// This error as a response.
    pub fn response(&self) -> RpcResponse {
        error_response(self.status(), &self.to_string())
    }
}

/// Reads a body piece by piece, refusing more than `limit` bytes or a stall of
/// [`BODY_IDLE_TIMEOUT`] between pieces.
pub struct BodyReader {
    body: Incoming,
    limit: u64,
    read: u64,
}

impl BodyReader {
    pub fn new(body: Incoming, limit: u64) -> BodyReader {
        BodyReader {
            body,
            limit,
            read: 0,
        }
    }

    /// The size the sender declared, if any.
    pub fn declared_len(&self) -> Option<u64> {
        self.body.size_hint().exact()
    }

    /// The next data piece, or None at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, self.body.frame()).await {
                Err(_) => return Err(BodyError::Timeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.read += data.len() as u64;
                if self.read > self.limit {
                    return Err(BodyError::TooLarge(self.limit));
                }
                return Ok(Some(data));
            }
        }
    }
}

/// The whole body, up to `limit` bytes.
pub async fn read_body(body: Incoming, limit: u64) -> Result<Bytes, BodyError> {
    let mut reader = BodyReader::new(body, limit);
    if reader.declared_len().is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let Some(first) = reader.chunk().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = reader.chunk().await? else {
        return Ok(first);
    };
    let mut all = BytesMut::from(&first[..]);
    all.extend_from_slice(&second);
    while let Some(more) = reader.chunk().await? {
        all.extend_from_slice(&more);
    }
    Ok(all.freeze())
}

/// A JSON body of at most [`MAX_JSON_BODY`] bytes.
pub async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, BodyError> {
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| BodyError::Json(e.to_string()))
}

/// A failed RPC call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No TCP connection could be made.
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    /// The TLS handshake failed (wrong cluster, bad certificate).
    #[error("TLS handshake with {addr} failed: {message}")]
    Tls { addr: String, message: String },
    /// The call did not finish in time.
    #[error("request to {addr} timed out")]
    Timeout { addr: String },
    /// The connection broke during the call.
    #[error("request to {addr} failed: {message}")]
    Transport { addr: String, message: String },
    /// The server answered with a non-2xx status.
    #[error("{message}")]
    Status { status: u16, message: String },
    /// The answer could not be decoded.
    #[error("invalid response from {addr}: {message}")]
    Decode { addr: String, message: String },
    /// The request could not be built.
    #[error("invalid request: {0}")]
    Request(String),
}

impl RpcError {
    /// Whether the call failed for want of a working connection to the peer (rather than the
    /// peer refusing it).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RpcError::Connect { .. }
                | RpcError::Tls { .. }
                | RpcError::Timeout { .. }
                | RpcError::Transport { .. }
        )
    }
}

/// A request body: the pieces are sent in order, their total declared as Content-Length.
pub struct ChunkBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkBody {
    pub fn new(chunks: Vec<Bytes>) -> ChunkBody {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ChunkBody {
            chunks: chunks.into(),
            remaining,
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|chunk| {
            this.remaining -= chunk.len() as u64;
            Ok(Frame::data(chunk))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// An answer's body read as it arrives; dropping it closes its connection.
pub struct RpcStream {
    body: Incoming,
    _sender: SendRequest<ChunkBody>,
    addr: String,
}

impl RpcStream {
    /// The next piece, None at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, RpcError>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(e) => {
                    return Some(Err(RpcError::Transport {
                        addr: self.addr.clone(),
                        message: e.to_string(),
                    }))
                }
            }
        }
    }
}

struct IdleConn {
    sender: SendRequest<ChunkBody>,
    since: Instant,
}

struct ClientInner {
    connector: TlsConnector,
    pool: Mutex<HashMap<String, Vec<IdleConn>>>,
}

/// An RPC client keeping a few idle connections per address for reuse. Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<ClientInner>,
}

impl RpcClient {
    /// A client with `tls` (see `tls::client_config` and `tls::insecure_root_fetch_config`).
    /// Servers are checked under the name `swarm-manager`.
    pub fn new(tls: Arc<ClientConfig>) -> RpcClient {
        RpcClient {
            inner: Arc::new(ClientInner {
                connector: TlsConnector::from(tls),
                pool: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// POSTs `body` as JSON and decodes a JSON answer (an empty answer decodes as `null`).
    pub async fn post_json<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<R, RpcError> {
        let json = serde_json::to_vec(body).map_err(|e| RpcError::Request(e.to_string()))?;
        let answer = self
            .call(
                addr,
                Method::POST,
                path,
                "application/json",
                vec![Bytes::from(json)],
                MAX_JSON_BODY,
                timeout,
            )
            .await?;
        let answer: &[u8] = if answer.is_empty() { b"null" } else { &answer };
        serde_json::from_slice(answer).map_err(|e| RpcError::Decode {
            addr: addr.to_string(),
            message: e.to_string(),
        })
    }

    /// GETs `path` and returns the body (at most [`MAX_STREAM_BODY`] bytes).
    pub async fn get_bytes(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        self.call(
            addr,
            Method::GET,
            path,
            "application/octet-stream",
            Vec::new(),
            MAX_STREAM_BODY,
            timeout,
        )
        .await
    }

    /// POSTs raw bytes and returns the answer's body.
    pub async fn post_bytes(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        self.call(
            addr,
            Method::POST,
            path,
            "application/octet-stream",
            vec![body],
            MAX_JSON_BODY,
            timeout,
        )
        .await
    }

    /// POSTs a body sent piece by piece (each piece one write, no copy of the whole) and
    /// returns the answer's body.
    pub async fn post_stream(
        &self,
        addr: &str,
        path: &str,
        chunks: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        self.call(
            addr,
            Method::POST,
            path,
            "application/octet-stream",
            chunks,
            MAX_JSON_BODY,
            timeout,
        )
        .await
    }

    /// POSTs `body` as JSON on a connection of its own and returns the answer's body as it
    /// comes (log streams); `timeout` bounds the wait for the answer's head only. An error
    /// answer is read whole and returned as [`RpcError::Status`].
    pub async fn post_json_stream<T: Serialize + ?Sized>(
        &self,
        addr: &str,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<RpcStream, RpcError> {
        let json = serde_json::to_vec(body).map_err(|e| RpcError::Request(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, addr)
            .header(CONTENT_TYPE, "application/json")
            .body(ChunkBody::new(vec![Bytes::from(json)]))
            .map_err(|e| RpcError::Request(e.to_string()))?;
        let head = async {
            let mut sender = self.connect(addr).await?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| RpcError::Transport {
                    addr: addr.to_string(),
                    message: e.to_string(),
                })?;
            Ok::<_, RpcError>((sender, resp))
        };
        let (sender, resp) =
            tokio::time::timeout(timeout, head)
                .await
                .map_err(|_| RpcError::Timeout {
                    addr: addr.to_string(),
                })??;
        let status = resp.status();
        if !status.is_success() {
            let answer = read_body(resp.into_body(), MAX_JSON_BODY)
                .await
                .unwrap_or_default();
            return Err(RpcError::Status {
                status: status.as_u16(),
                message: error_message(status, &answer),
            });
        }
        Ok(RpcStream {
            body: resp.into_body(),
            _sender: sender,
            addr: addr.to_string(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<Bytes>,
        answer_limit: u64,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        if !path.starts_with('/') {
            return Err(RpcError::Request(format!(
                "path {path:?} does not start with '/'"
            )));
        }
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr)
            .header(CONTENT_TYPE, content_type)
            .body(ChunkBody::new(body))
            .map_err(|e| RpcError::Request(e.to_string()))?;
        let exchange = self.exchange(addr, req, answer_limit);
        let (status, answer) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RpcError::Timeout {
                addr: addr.to_string(),
            })??;
        if status.is_success() {
            return Ok(answer);
        }
        Err(RpcError::Status {
            status: status.as_u16(),
            message: error_message(status, &answer),
        })
    }

    async fn exchange(
        &self,
        addr: &str,
        mut req: Request<ChunkBody>,
        answer_limit: u64,
    ) -> Result<(StatusCode, Bytes), RpcError> {
        let transport = |e: hyper::Error| RpcError::Transport {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        while let Some(mut sender) = self.take_idle(addr) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return self.finish(addr, sender, resp, answer_limit).await,
                Err(mut e) => match e.take_message() {
                    // Never sent: the pooled connection had closed; try the next.
                    Some(unsent) => req = unsent,
                    None => return Err(transport(e.into_error())),
                },
            }
        }
        let mut sender = self.connect(addr).await?;
        let resp = sender.send_request(req).await.map_err(transport)?;
        self.finish(addr, sender, resp, answer_limit).await
    }

    async fn finish(
        &self,
        addr: &str,
        sender: SendRequest<ChunkBody>,
        resp: Response<Incoming>,
        answer_limit: u64,
    ) -> Result<(StatusCode, Bytes), RpcError> {
        let status = resp.status();
        let answer = read_body(resp.into_body(), answer_limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(_) | BodyError::Json(_) => RpcError::Decode {
                    addr: addr.to_string(),
                    message: e.to_string(),
                },
                BodyError::Timeout | BodyError::Read(_) => RpcError::Transport {
                    addr: addr.to_string(),
                    message: e.to_string(),
                },
            })?;
        self.put_idle(addr, sender);
        Ok((status, answer))
    }

    async fn connect(&self, addr: &str) -> Result<SendRequest<ChunkBody>, RpcError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| RpcError::Connect {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(MANAGER_SERVER_NAME)
            .map_err(|e| RpcError::Request(e.to_string()))?;
        let tls = self
            .inner
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| RpcError::Tls {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| RpcError::Transport {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        let addr = addr.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("swarm RPC connection to {addr}: {e}");
            }
        });
        Ok(sender)
    }

    fn take_idle(&self, addr: &str) -> Option<SendRequest<ChunkBody>> {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        let conns = pool.get_mut(addr)?;
        let found = loop {
            let Some(idle) = conns.pop() else {
                break None;
            };
            if idle.since.elapsed() < POOL_IDLE && !idle.sender.is_closed() {
                break Some(idle.sender);
            }
        };
        if conns.is_empty() {
            pool.remove(addr);
        }
        found
    }

    fn put_idle(&self, addr: &str, sender: SendRequest<ChunkBody>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        let conns = pool.entry(addr.to_string()).or_default();
        conns.retain(|c| c.since.elapsed() < POOL_IDLE && !c.sender.is_closed());
        if conns.len() < POOL_PER_ADDR {
            conns.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// The message of an error answer: its JSON `message`, else its text, else the status.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
    }
    if let Ok(err) = serde_json::from_slice::<ErrorBody>(body) {
        return err.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status.to_string();
    }
    text.chars().take(512).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ca::{NodeIdentity, NodeKey, NodeRole, RootCa};
    use crate::tls::{client_config, insecure_root_fetch_config, server_config};

    pub(crate) fn identity(ca: &RootCa, node_id: &str, role: NodeRole) -> NodeIdentity {
        let key = NodeKey::generate().unwrap();
        let cert = ca
            .issue(&key.csr_pem, node_id, role, "cluster1", None)
            .unwrap();
        NodeIdentity::from_pem(&cert, &key.key_pem).unwrap()
    }

    /// A running server on 127.0.0.1:<ephemeral>; dropping the sender stops it.
    pub(crate) async fn start(
        ca: &RootCa,
        handler: Arc<dyn Handler>,
    ) -> (String, watch::Sender<bool>) {
        let server_id = identity(ca, "manager1", NodeRole::Manager);
        let tls = server_config(ca, &server_id).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(listener, tls, handler, rx));
        (addr, tx)
    }

    /// Answers with the caller's identity, or errors on demand.
    struct Echo;

    impl Handler for Echo {
        fn call(&self, peer: Option<PeerInfo>, req: Request<Incoming>) -> HandlerFuture {
            Box::pin(async move {
                match req.uri().path() {
                    "/whoami" => {
                        let who = peer.map(|p| (p.node_id, p.role.ou().to_string()));
                        json_response(StatusCode::OK, &who)
                    }
                    "/echo" => match read_json::<serde_json::Value>(req.into_body()).await {
                        Ok(v) => json_response(StatusCode::OK, &v),
                        Err(e) => e.response(),
                    },
                    "/fail" => {
                        error_response(StatusCode::CONFLICT, "node is already part of a swarm")
                    }
                    "/text" => Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(ReplyBody::whole(Bytes::from_static(b"plain failure")))
                        .unwrap(),
                    "/small" => match read_body(req.into_body(), 16).await {
                        Ok(b) => Response::new(ReplyBody::whole(b.len().to_string())),
                        Err(e) => e.response(),
                    },
                    "/root" => Response::new(ReplyBody::whole(Bytes::from_static(b"root-pem"))),
                    _ => error_response(StatusCode::NOT_FOUND, "page not found"),
                }
            })
        }
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn server_sees_peer_with_cert_and_none_without() {
        let ca = RootCa::generate().unwrap();
        let (addr, _stop) = start(&ca, Arc::new(Echo)).await;

        let worker = identity(&ca, "worker7", NodeRole::Worker);
        let with_cert = RpcClient::new(client_config(&ca, Some(&worker)).unwrap());
        let who: Option<(String, String)> =
            with_cert.post_json(&addr, "/whoami", &(), T).await.unwrap();
        assert_eq!(who, Some(("worker7".into(), "swarm-worker".into())));
        // The pooled connection is reused for the next call.
        let who: Option<(String, String)> =
            with_cert.post_json(&addr, "/whoami", &(), T).await.unwrap();
        assert_eq!(who.unwrap().0, "worker7");
        assert_eq!(with_cert.inner.pool.lock().unwrap()[&addr].len(), 1);

        let anonymous = RpcClient::new(client_config(&ca, None).unwrap());
        let who: Option<(String, String)> =
            anonymous.post_json(&addr, "/whoami", &(), T).await.unwrap();
        assert_eq!(who, None);

        // Downloading with the insecure config works too (the root CA fetch).
        let fetch = RpcClient::new(insecure_root_fetch_config().unwrap());
        let pem = fetch.get_bytes(&addr, "/root", T).await.unwrap();
        assert_eq!(&pem[..], b"root-pem");
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_presented_from_the_next_handshake() {
        let ca = RootCa::generate().unwrap();
        let (addr, _stop) = start(&ca, Arc::new(Echo)).await;
        let live =
            crate::tls::LiveIdentity::new(&identity(&ca, "worker7", NodeRole::Worker)).unwrap();
        let cfg = crate::tls::client_config_live(&ca, Some(live.clone())).unwrap();
        let who: Option<(String, String)> = RpcClient::new(cfg.clone())
            .post_json(&addr, "/whoami", &(), T)
            .await
            .unwrap();
        assert_eq!(who.unwrap().0, "worker7");
        live.set(&identity(&ca, "worker8", NodeRole::Worker))
            .unwrap();
        let who: Option<(String, String)> = RpcClient::new(cfg)
            .post_json(&addr, "/whoami", &(), T)
            .await
            .unwrap();
        assert_eq!(
            who.unwrap().0,
            "worker8",
            "the same configuration, a new certificate"
        );
    }

    /// A certificate from `ca` with `chain` (intermediates, PEM) after it.
    fn identity_with_chain(ca: &RootCa, chain: &str, node_id: &str) -> NodeIdentity {
        let id = identity(ca, node_id, NodeRole::Manager);
        NodeIdentity::from_pem(&format!("{}{chain}", id.cert_pem), &id.key_pem).unwrap()
    }

    #[tokio::test]
    async fn during_a_root_rotation_both_roots_are_trusted() {
        use crate::tls::{client_config_trust, server_config_trust, LiveIdentity, LiveTrust};
        let old = RootCa::generate().unwrap();
        let next = RootCa::generate().unwrap();
        let cross = old.cross_sign(&next).unwrap();
        // The server has a certificate from the next root (with the cross-signed root after
        // it) and trusts only the current root so far.
        let server_trust = LiveTrust::new(&[&old]).unwrap();
        let server_id = LiveIdentity::new(&identity_with_chain(&next, &cross, "m1")).unwrap();
        let tls = server_config_trust(server_trust.clone(), server_id).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(serve(listener, tls, Arc::new(Echo), rx));
        let whoami = |trust: &[&RootCa], id: NodeIdentity| {
            let cfg = client_config_trust(
                LiveTrust::new(trust).unwrap(),
                Some(LiveIdentity::new(&id).unwrap()),
            )
            .unwrap();
            let addr = addr.clone();
            async move {
                RpcClient::new(cfg)
                    .post_json::<_, Option<(String, String)>>(&addr, "/whoami", &(), T)
                    .await
            }
        };
        // A node still on the current root, trusting only it, and a renewed one trusting only
        // the next root: both accept the server and are accepted by it.
        let who = whoami(&[&old], identity(&old, "w-old", NodeRole::Worker)).await;
        assert_eq!(who.unwrap().unwrap().0, "w-old");
        let who = whoami(&[&next], identity_with_chain(&next, &cross, "w-next")).await;
        assert_eq!(who.unwrap().unwrap().0, "w-next");
        let who = whoami(&[&old, &next], identity(&next, "w-both", NodeRole::Worker)).await;
        assert!(who.is_err(), "the server trusts only the current root yet");
        // A node of another cluster is refused.
        let other = RootCa::generate().unwrap();
        let who = whoami(&[&other], identity(&other, "w-x", NodeRole::Worker)).await;
        assert!(who.is_err());
        // Trusting both roots, the server accepts the next root's certificates without the
        // cross-signed one; once it trusts only the next root, the old certificates are out.
        server_trust.set(&[&old, &next]).unwrap();
        let who = whoami(&[&old, &next], identity(&next, "w-both", NodeRole::Worker)).await;
        assert_eq!(who.unwrap().unwrap().0, "w-both");
        server_trust.set(&[&next]).unwrap();
        let who = whoami(&[&old], identity(&old, "w-old", NodeRole::Worker)).await;
        assert!(!matches!(who, Ok(Some(_))), "{who:?}");
    }

    #[tokio::test]
    async fn anonymous_clients_have_slots_of_their_own() {
        let ca = RootCa::generate().unwrap();
        let (addr, _stop) = start(&ca, Arc::new(Echo)).await;
        let anon_cfg = client_config(&ca, None).unwrap();
        let connector = TlsConnector::from(anon_cfg.clone());
        // Clients without a certificate that finish the handshake and then say nothing.
        let mut idle = Vec::new();
        for _ in 0..MAX_ANONYMOUS {
            let tcp = TcpStream::connect(&addr).await.unwrap();
            let name = ServerName::try_from(MANAGER_SERVER_NAME).unwrap();
            idle.push(connector.connect(name, tcp).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let anonymous = RpcClient::new(anon_cfg);
        let whoami =
            || anonymous.post_json::<_, Option<(String, String)>>(&addr, "/whoami", &(), T);
        assert!(whoami().await.is_err(), "no anonymous slot is left");
        // A node with its certificate is served all the same.
        let worker = identity(&ca, "worker7", NodeRole::Worker);
        let with_cert = RpcClient::new(client_config(&ca, Some(&worker)).unwrap());
        let who: Option<(String, String)> =
            with_cert.post_json(&addr, "/whoami", &(), T).await.unwrap();
        assert_eq!(who.unwrap().0, "worker7");
        drop(idle);
        let mut served = false;
        for _ in 0..50 {
            if whoami().await.is_ok() {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "the slots come back when those clients leave");
    }

    #[tokio::test]
    async fn post_json_maps_errors() {
        let ca = RootCa::generate().unwrap();
        let (addr, _stop) = start(&ca, Arc::new(Echo)).await;
        let client = RpcClient::new(client_config(&ca, None).unwrap());

        let v: serde_json::Value = client
            .post_json(&addr, "/echo", &serde_json::json!({"a": [1, 2]}), T)
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2]}));

        let err = client
            .post_json::<_, serde_json::Value>(&addr, "/fail", &(), T)
            .await
            .unwrap_err();
        match &err {
            RpcError::Status { status, message } => {
                assert_eq!(*status, 409);
                assert_eq!(message, "node is already part of a swarm");
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_unreachable());
        assert_eq!(err.to_string(), "node is already part of a swarm");

        let err = client
            .post_json::<_, ()>(&addr, "/text", &(), T)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Status { status: 503, message } if message == "plain failure"),
            "{err:?}"
        );

        // An answer that is not what the caller expects.
        let err = client
            .post_json::<_, Vec<u32>>(&addr, "/echo", &"text", T)
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Decode { .. }), "{err:?}");

        // A closed port is a connect failure.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let err = client
            .post_json::<_, ()>(&closed_addr, "/echo", &(), T)
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Connect { .. }), "{err:?}");
        assert!(err.is_unreachable());
    }

    #[tokio::test]
    async fn other_cluster_refused_both_ways() {
        let ca = RootCa::generate().unwrap();
        let (addr, _stop) = start(&ca, Arc::new(Echo)).await;

        // A client whose certificate comes from another CA is refused by the server.
        let other = RootCa::generate().unwrap();
        let stranger = identity(&other, "intruder", NodeRole::Manager);
        let client = RpcClient::new(client_config(&ca, Some(&stranger)).unwrap());
        let err = client
            .post_json::<_, serde_json::Value>(&addr, "/whoami", &(), T)
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");

        // So is an expired certificate from the right CA.
        let expired = crate::ca::expired_identity(&ca, "late", NodeRole::Manager);
        let client = RpcClient::new(client_config(&ca, Some(&expired)).unwrap());
        let err = client
            .post_json::<_, serde_json::Value>(&addr, "/whoami", &(), T)
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");

        // A client trusting another root refuses this server.
        let client = RpcClient::new(client_config(&other, None).unwrap());
        let err = client
            .post_json::<_, serde_json::Value>(&addr, "/whoami", &(), T)
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Tls { .. }), "{err:?}");

        // A worker certificate of the right cluster cannot serve as a manager.
        let worker_id = identity(&ca, "worker1", NodeRole::Worker);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let waddr = listener.local_addr().unwrap().to_string();
        let (_wtx, wrx) = watch::channel(false);
        tokio::spawn(serve(
            listener,
            server_config(&ca, &worker_id).unwrap(),
            Arc::new(Echo),
            wrx,
        ));
        let client = RpcClient::new(client_config(&ca, None).unwrap());
        let err = client
            .post_json::<_, serde_json::Value>(&waddr, "/whoami", &(), T)
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Tls { .. }), "{err:?}");

        // And a client refuses a manager whose certificate expired.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let eaddr = listener.local_addr().unwrap().to_string();
        let (_etx, erx) = watch::channel(false);
        tokio::spawn(serve(
            listener,
            server_config(&ca, &expired).unwrap(),
            Arc::new(Echo),
            erx,
        ));
        let err = client
            .post_json::<_, serde_json::Value>(&eaddr, "/whoami", &(), T)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Tls { message, .. } if message.contains("expired")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn oversized_body_refused_and_shutdown_stops_accepting() {
        let ca = RootCa::generate().unwrap();
        let (addr, stop) = start(&ca, Arc::new(Echo)).await;
        let client = RpcClient::new(client_config(&ca, None).unwrap());

        // One byte over the handler's cap.
        let err = client
            .post_bytes(&addr, "/small", Bytes::from_static(b"0123456789abcdefg"), T)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Status { status: 413, message } if message.contains("16 bytes")),
            "{err:?}"
        );
        let ok = client
            .post_bytes(&addr, "/small", Bytes::from_static(b"0123456789abcdef"), T)
            .await
            .unwrap();
        assert_eq!(&ok[..], b"16");

        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let fresh = RpcClient::new(client_config(&ca, None).unwrap());
        let err = fresh
            .post_json::<_, serde_json::Value>(&addr, "/whoami", &(), T)
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
    }

    #[tokio::test]
    async fn stalled_handshake_does_not_block_others() {
        let ca = RootCa::generate().unwrap();
        let (addr, _stop) = start(&ca, Arc::new(Echo)).await;
        // Connections that never speak TLS hold a slot each but nothing else.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(&addr).await.unwrap());
        }
        let client = RpcClient::new(client_config(&ca, None).unwrap());
        let who: Option<(String, String)> =
            client.post_json(&addr, "/whoami", &(), T).await.unwrap();
        assert_eq!(who, None);
    }
}
