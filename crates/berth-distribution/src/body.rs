//! HTTP bodies: request bodies streamed from files with a byte counter, capped reads of
//! responses, and `BlobStream`, a blob download as a stream of chunks.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

use crate::transport::describe_transport_error;
use crate::Error;

/// Request body type of the client.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

const FILE_BUF: usize = 256 << 10;

/// `len` bytes of a file from `offset`, counted into `sent` as they are handed to hyper.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
    sent: Arc<AtomicU64>,
}

impl FileBody {
    pub(crate) async fn open(
        path: &Path,
        offset: u64,
        len: u64,
        sent: Arc<AtomicU64>,
    ) -> Result<FileBody, Error> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
        file.seek(io::SeekFrom::Start(offset))
            .await
            .map_err(io_err)?;
        sent.store(0, Ordering::Relaxed);
        let cap = usize::try_from(len).unwrap_or(FILE_BUF).min(FILE_BUF);
        Ok(FileBody {
            file,
            remaining: len,
            buf: vec![0; cap.max(1)],
            sent,
        })
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank during upload",
                    ))));
                }
                this.remaining -= n as u64;
                this.sent.fetch_add(n as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Read a whole response body of at most `limit` bytes; `Ok(None)` when it is longer.
pub(crate) async fn read_limited(
    body: Incoming,
    limit: usize,
    target: &str,
) -> Result<Option<Bytes>, Error> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e) if e.is::<LengthLimitError>() => Ok(None),
        Err(e) => {
            let (message, _) = describe_transport_error(e.as_ref());
            Err(Error::Network {
                target: target.to_string(),
                message: format!("reading the response: {message}"),
            })
        }
    }
}

/// Read and discard a small remaining body so the connection can be reused; give up (dropping
/// the connection) past 64 KiB or on error.
pub(crate) async fn drain(body: Incoming) -> Bytes {
    Limited::new(body, 64 << 10)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// A blob download: chunks as they arrive, plus the size the registry declared (or the caller's
/// size hint when it declared none). Verify it with [`crate::DigestVerifier`].
pub struct BlobStream {
    body: Incoming,
    size: Option<u64>,
    target: String,
}

impl BlobStream {
    pub(crate) fn new(body: Incoming, size: Option<u64>, target: String) -> BlobStream {
        BlobStream { body, size, target }
    }

    /// Declared size: `Content-Length`, else the size hint given to `get_blob`.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("target", &self.target)
            .field("size", &self.size)
            .finish()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            return match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    let (message, _) = describe_transport_error(&e);
                    Poll::Ready(Some(Err(Error::Network {
                        target: this.target.clone(),
                        message: format!("download interrupted: {message}"),
                    })))
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => Poll::Ready(Some(Ok(data))),
                    // Empty data frames and trailers carry no blob bytes.
                    _ => continue,
                },
            };
        }
    }
}
