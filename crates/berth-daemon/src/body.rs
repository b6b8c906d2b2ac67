//! Request bodies from untrusted clients: an idle timeout on every body, and JSON bodies that
//! must say they are JSON (as dockerd's `CheckForJSON`) and stay under a size limit. Beside `error`
//! it imports no other module of the daemon: it knows no route, container or daemon state.

use crate::error::{Error, Result};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A body that sends nothing for this long is dropped (a client that stalls mid-upload).
const BODY_IDLE: Duration = Duration::from_secs(120);
/// The largest JSON body any route takes (a container config with a long environment is a
/// few tens of KiB).
pub const JSON_LIMIT: usize = 4 << 20;

/// A request body whose next frame must come within [`BODY_IDLE`].
pub struct Idle {
    inner: hyper::body::Incoming,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    pub fn new(inner: hyper::body::Incoming) -> Idle {
        Idle {
            inner,
            timer: Box::pin(tokio::time::sleep(BODY_IDLE)),
        }
    }
}

impl http_body::Body for Idle {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, std::io::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                let deadline = tokio::time::Instant::now() + BODY_IDLE;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(f.map(|r| r.map_err(std::io::Error::other)))
            }
            Poll::Pending => match std::future::Future::poll(self.timer.as_mut(), cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no request body data for {} s", BODY_IDLE.as_secs()),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the request carries a body (a length above zero, or chunks).
fn has_body(h: &HeaderMap) -> bool {
    if h.contains_key(axum::http::header::TRANSFER_ENCODING) {
        return true;
    }
    h.get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// dockerd's rule for JSON routes: a body must come as `application/json`, so that a web page
/// cannot send one as a "simple" cross-origin request (`text/plain`, a form).
pub fn check_json_type(h: &HeaderMap) -> Result<()> {
    let ct = h
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ct.is_empty() && !has_body(h) {
        return Ok(());
    }
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.is_empty() || !mime.contains('/') {
        return Err(Error::bad_request(format!(
            "malformed Content-Type header ({ct}): no media type"
        )));
    }
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(Error::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    Ok(())
}

/// Read a whole body of at most `limit` bytes; more is answered with Docker's JSON 413.
pub async fn read_limited(body: axum::body::Body, limit: usize) -> Result<Bytes> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error(
            berth_api::ApiError::new(413, format!("request body is larger than {limit} bytes")),
        )),
        Err(e) => Err(Error::bad_request(format!("reading request body: {e}"))),
    }
}

/// Read and drop up to `limit` bytes of a body that will not be used (errors end it early).
pub async fn drain(mut body: axum::body::Body, limit: usize) {
    let mut seen = 0;
    while seen < limit {
        match body.frame().await {
            Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// The body of a route that takes JSON: checked for its type, read up to [`JSON_LIMIT`].
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Error;

    async fn from_request(req: Request, _: &S) -> Result<JsonBytes> {
        check_json_type(req.headers())?;
        read_limited(req.into_body(), JSON_LIMIT)
            .await
            .map(JsonBytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, axum::http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_bodies_must_say_so() {
        assert!(check_json_type(&headers(&[])).is_ok());
        assert!(check_json_type(&headers(&[("content-length", "0")])).is_ok());
        assert!(check_json_type(&headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", "2")
        ]))
        .is_ok());
        let e = check_json_type(&headers(&[
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ]))
        .err()
        .unwrap();
        assert_eq!(e.0.status, 400);
        assert!(e.0.message.contains("must be 'application/json'"));
        // Another type is refused even without a body, as by dockerd.
        assert!(check_json_type(&headers(&[("content-type", "text/plain")])).is_err());
        assert!(check_json_type(&headers(&[("content-length", "5")])).is_err());
        assert!(check_json_type(&headers(&[("transfer-encoding", "chunked")])).is_err());
    }

    #[tokio::test]
    async fn oversized_bodies_get_a_json_413() {
        let body = axum::body::Body::from(vec![b' '; 100]);
        let e = read_limited(body, 10).await.err().unwrap();
        assert_eq!(e.0.status, 413);
        let ok = read_limited(axum::body::Body::from("{}"), 10)
            .await
            .unwrap();
        assert_eq!(&ok[..], b"{}");
    }
}
