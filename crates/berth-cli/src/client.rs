//! Engine API client over the daemon's socket (see `transport`): plain requests, streaming bodies and the
//! hijacked connections of attach and exec.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub type ReqBody = BoxBody<Bytes, std::io::Error>;

/// The API version the client speaks unless the daemon supports only an older one.
const VERSION: &str = "1.50";

#[derive(Debug)]
pub enum Error {
    /// Could not reach the daemon.
    Connect(String),
    /// The daemon answered with an error status.
    Daemon {
        status: u16,
        message: String,
    },
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(m) => write!(f, "{m}"),
            Error::Daemon { message, .. } => write!(f, "Error response from daemon: {message}"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone)]
pub struct Client {
    target: crate::transport::Target,
    /// `/v<version>`, put before every path.
    prefix: String,
}

pub fn empty() -> ReqBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_body(v: &serde_json::Value) -> ReqBody {
    Full::new(Bytes::from(v.to_string()))
        .map_err(|never| match never {})
        .boxed()
}

impl Client {
    pub fn from_opts(o: &crate::transport::ConnOpts) -> Result<Client> {
        crate::transport::Target::from_opts(o)
            .map(|target| Client {
                target,
                prefix: format!("/v{VERSION}"),
            })
            .map_err(Error::Other)
    }

    /// The daemon's unix socket, when that is how the client reaches it.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        match &self.target {
            crate::transport::Target::Unix(p) => Some(p),
            crate::transport::Target::Tcp { .. } => None,
        }
    }

    /// The daemon's address as `unix://…` or `tcp://…`.
    pub fn endpoint(&self) -> String {
        self.target.to_string()
    }

    async fn sender(&self) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>> {
        let s = self.target.connect().await.map_err(|e| {
            Error::Connect(format!(
                "Cannot connect to the berth daemon at {}. Is the berth daemon running? ({e})",
                self.target
            ))
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Asks the daemon (`GET /_ping`) for its API version and speaks the older of its and
    /// ours, as the docker CLI negotiates, so that an older engine is driven too.
    pub async fn negotiate(&mut self) -> Result<()> {
        let mut sender = self.sender().await?;
        let req = Request::builder()
            .method(Method::GET)
            .uri("/_ping")
            .header("Host", "berth")
            .body(empty())
            .map_err(|e| Error::Other(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Other(format!("request to daemon failed: {e}")))?;
        let theirs = resp
            .headers()
            .get("API-Version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_version);
        if let (Some(t), Some(ours)) = (theirs, parse_version(VERSION)) {
            if t < ours {
                self.prefix = format!("/v{}.{}", t.0, t.1);
            }
        }
        Ok(())
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        ctype: &str,
    ) -> Result<Request<ReqBody>> {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header("Host", "berth")
            .header("Content-Type", ctype)
            .header(
                "User-Agent",
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .map_err(|e| Error::Other(e.to_string()))
    }

    /// [`Client::send`] with extra headers (`X-Registry-Auth`).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        ctype: &str,
        headers: &[(&str, String)],
    ) -> Result<Response<Incoming>> {
        let mut sender = self.sender().await?;
        let mut req = self.build(method, path, body, ctype)?;
        for (k, v) in headers {
            let value = hyper::header::HeaderValue::from_str(v)
                .map_err(|e| Error::Other(format!("header {k}: {e}")))?;
            let name = hyper::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| Error::Other(format!("header {k}: {e}")))?;
            req.headers_mut().insert(name, value);
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Other(format!("request to daemon failed: {e}")))?;
        check(resp).await
    }

    /// Send a request; error statuses become `Error::Daemon`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        ctype: &str,
    ) -> Result<Response<Incoming>> {
        let mut sender = self.sender().await?;
        let req = self.build(method, path, body, ctype)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Other(format!("request to daemon failed: {e}")))?;
        check(resp).await
    }

    /// A JSON request whose JSON answer is returned (Null for an empty body).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let b = body.as_ref().map(json_body).unwrap_or_else(empty);
        let resp = self.send(method, path, b, "application/json").await?;
        let bytes = read_all(resp).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("bad answer from daemon: {e}")))
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        self.json(Method::POST, path, body).await
    }

    /// Open a hijacked stream (attach, exec start): the request carries `Upgrade: tcp`.
    pub async fn hijack(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let mut sender = self.sender().await?;
        let b = body.as_ref().map(json_body).unwrap_or_else(empty);
        let mut req = self.build(Method::POST, path, b, "application/json")?;
        req.headers_mut().insert(
            "Connection",
            "Upgrade"
                .parse()
                .map_err(|_| Error::Other("header".into()))?,
        );
        req.headers_mut().insert(
            "Upgrade",
            "tcp".parse().map_err(|_| Error::Other("header".into()))?,
        );
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Other(format!("request to daemon failed: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let resp = check(resp).await?;
            return Err(Error::Other(format!(
                "unable to upgrade to tcp, received {}",
                resp.status().as_u16()
            )));
        }
        let up = hyper::upgrade::on(resp)
            .await
            .map_err(|e| Error::Other(format!("upgrade failed: {e}")))?;
        Ok(TokioIo::new(up))
    }
}

/// `1.41` as (1, 41).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Turn an error status into `Error::Daemon` with the JSON message.
async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = resp.status();
    if status.is_success()
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::SWITCHING_PROTOCOLS
    {
        return Ok(resp);
    }
    let body = read_all(resp).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Err(Error::Daemon {
        status: status.as_u16(),
        message,
    })
}

pub async fn read_all(resp: Response<Incoming>) -> Result<Bytes> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::Other(format!("reading answer: {e}")))
}

/// Call `f` with each chunk of a streaming body.
pub async fn for_each_chunk(resp: Response<Incoming>, mut f: impl FnMut(&[u8])) -> Result<()> {
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Other(format!("reading answer: {e}")))?;
        if let Ok(data) = frame.into_data() {
            f(&data);
        }
    }
    Ok(())
}

/// Call `f` with each line (without its newline) of a streaming body of JSON lines, until
/// the body ends or `f` returns false.
pub async fn for_each_line(
    resp: Response<Incoming>,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<()> {
    let mut body = resp.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Other(format!("reading answer: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if !f(&line[..line.len() - 1]) {
                return Ok(());
            }
        }
    }
    if !pending.is_empty() {
        f(&pending);
    }
    Ok(())
}

/// Percent-encode a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
