//! Small request helpers: the request's API version, query parameters the way the Engine API
//! spells them, JSON bodies with Docker-style 400 errors, and JSON responses. Beside `error` it
//! imports no other module of the daemon: it knows no route, container or daemon state.

use crate::error::{Error, Result};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// The API version a request asked for (from its path prefix), or the maximum; `front` puts
/// it on every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestVersion(pub berth_api::version::ApiVersion);

/// Parsed query string; repeated keys keep the last value.
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut m = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(decode(k), decode(v));
        }
        Query(m)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    /// Go's strconv.ParseBool plus Docker's "empty = false".
    /// A boolean parameter as dockerd's `httputils.BoolValue` reads it: absent, empty, `0`,
    /// `no`, `false` and `none` (any case, spaces trimmed) are false, anything else is true.
    pub fn bool(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }
    pub fn int(&self, k: &str) -> Result<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::bad_request(format!("invalid value for {k}: {v:?}"))),
        }
    }
    /// A `since`/`until` value (Unix seconds with an optional fraction) as nanoseconds since
    /// the epoch; absent or empty is None, anything else unparsable is a 400.
    pub fn unix_time(&self, k: &str) -> Result<Option<i64>> {
        match self.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => unix_nanos(v).map(Some).ok_or_else(|| {
                Error::bad_request(format!(
                    "invalid value for {k:?}: {v:?} is not a Unix timestamp (seconds[.fraction])"
                ))
            }),
        }
    }
    /// The `h` and `w` of a resize request as (width, height).
    pub fn tty_size(&self) -> Result<(u16, u16)> {
        let dim = |k: &str| -> Result<u16> {
            let v = self.int(k)?.unwrap_or(0);
            u16::try_from(v).map_err(|_| Error::bad_request(format!("invalid value for {k}: {v}")))
        };
        Ok((dim("w")?, dim("h")?))
    }

    /// The `filters` parameter: a JSON map of name -> values (list or {value: true} map).
    pub fn filters(&self) -> Result<HashMap<String, Vec<String>>> {
        let Some(raw) = self.get("filters").filter(|s| !s.is_empty()) else {
            return Ok(HashMap::new());
        };
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| Error::bad_request(format!("invalid filter: {e}")))?;
        let mut out = HashMap::new();
        let serde_json::Value::Object(map) = v else {
            return Err(Error::bad_request("invalid filter: not a JSON object"));
        };
        for (k, vals) in map {
            let list = match vals {
                serde_json::Value::Array(a) => a
                    .into_iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                serde_json::Value::Object(o) => o
                    .into_iter()
                    .filter(|(_, b)| b.as_bool().unwrap_or(false))
                    .map(|(s, _)| s)
                    .collect(),
                _ => return Err(Error::bad_request(format!("invalid filter {k:?}"))),
            };
            out.insert(k, list);
        }
        Ok(out)
    }
}

/// Unix seconds with an optional fraction of a second (`1700000000`, `-5`, `1700000000.25`)
/// as nanoseconds since the epoch; digits past the ninth of the fraction are ignored.
pub fn unix_nanos(v: &str) -> Option<i64> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, "0"));
    let negative = secs.starts_with('-');
    let unsigned = secs.strip_prefix(['-', '+']).unwrap_or(secs);
    if unsigned.is_empty()
        || frac.is_empty()
        || !unsigned.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = unsigned.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    let total = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if negative { -total } else { total })
}

/// A response body written by `produce` on a blocking thread, streamed as it is written
/// (large tars are never held in memory). An error after the first bytes can only cut the
/// stream short; it is logged.
pub fn stream_body(
    produce: impl FnOnce(&mut dyn std::io::Write) -> Result<()> + Send + 'static,
) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let res = produce(&mut w).and_then(|()| {
            std::io::Write::flush(&mut w).map_err(|e| Error::internal(e.to_string()))
        });
        if let Err(e) = res {
            tracing::warn!("streamed response cut short: {}", e.0.message);
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    axum::body::Body::from_stream(stream)
}

const CHUNK: usize = 64 * 1024;

/// A request body read as a blocking `Read` (for tar extraction on a blocking thread): an
/// async task feeds its chunks through a small channel, so it is never held whole.
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
}

impl BodyReader {
    pub fn new(body: axum::body::Body) -> BodyReader {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(data) => Ok(data),
                        Err(_) => continue,
                    },
                    Err(e) => Err(std::io::Error::other(format!("reading request body: {e}"))),
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        BodyReader {
            rx,
            cur: bytes::Bytes::new(),
        }
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.cur = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// A `Write` that hands 64 KiB chunks to an async receiver, waiting while it is behind.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// All values of a repeated query key (`names=a&names=b`).
pub fn query_all(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| decode(k) == key)
        .map(|(_, v)| decode(v))
        .filter(|v| !v.is_empty())
        .collect()
}

/// A fresh 64-hex-digit id (containers, execs) from the kernel's random pool.
pub fn random_id() -> Result<String> {
    berth_api::fsutil::random_hex()
        .map_err(|e| Error::internal(format!("reading /dev/urandom: {e}")))
}

/// Percent-decoding of a query component ('+' is a space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse a JSON request body as dockerd's Go decoder does (see [`berth_api::decode`]): `null` is
/// the zero value, unknown members are ignored, field names match case-insensitively, and only
/// malformed JSON or a wrong type is a 400. An empty body gives the default. Every route that
/// takes a JSON body decodes it here.
pub fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    berth_api::decode::from_slice(body)
        .map_err(|e| Error::bad_request(format!("invalid JSON: {e}")))
}

pub fn json<T: serde::Serialize>(status: u16, v: &T) -> Response {
    let body = serde_json::to_string(v).unwrap_or_else(|_| "null".into()) + "\n";
    (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The host's memory in bytes (`MemTotal` of /proc/meminfo; 0 if unreadable).
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|k| k.parse::<u64>().ok())
                })
        })
        .unwrap_or(0)
        * 1024
}

pub fn no_content() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some(
            "fromImage=127.0.0.1%3A5000%2Fbusybox&tag=x&all=1&t=&f=%zz",
        ));
        assert_eq!(q.get("fromImage"), Some("127.0.0.1:5000/busybox"));
        assert!(q.bool("all"));
        assert!(!q.bool("t"));
        let b = Query::parse(Some("a=yes&b=No&c=%20FALSE%20&d=none&e=on&f=0"));
        assert_eq!(
            ["a", "b", "c", "d", "e", "f", "absent"].map(|k| b.bool(k)),
            [true, false, false, false, true, false, false]
        );
        assert_eq!(q.get("f"), Some("%zz"));
        let f = Query::parse(Some(
            "filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%2C%22status%22%3A%7B%22exited%22%3Atrue%7D%7D",
        ))
        .filters()
        .unwrap();
        assert_eq!(f["label"], vec!["a=b"]);
        assert_eq!(f["status"], vec!["exited"]);
        assert_eq!(
            Query::parse(Some("h=40&w=120")).tty_size().unwrap(),
            (120, 40)
        );
        assert!(Query::parse(Some("h=-1&w=1")).tty_size().is_err());
        assert!(Query::parse(Some("h=70000")).tty_size().is_err());
    }

    #[test]
    fn unix_times() {
        assert_eq!(unix_nanos("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(
            unix_nanos("1700000000.123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(unix_nanos("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(unix_nanos("10.1234567891"), Some(10_123_456_789));
        assert_eq!(unix_nanos("-1.5"), Some(-1_500_000_000));
        for bad in [
            "soon",
            "1.x",
            "1.",
            ".5",
            "-",
            "1e3",
            "99999999999999999999",
            "1 ",
        ] {
            assert_eq!(unix_nanos(bad), None, "{bad}");
        }
        let q = Query::parse(Some("since=abc&until="));
        assert!(q.unix_time("since").is_err());
        assert_eq!(q.unix_time("until").unwrap(), None);
        assert_eq!(q.unix_time("absent").unwrap(), None);
    }
}
