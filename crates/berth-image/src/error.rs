//! Error type of the image store; each variant maps to one HTTP status in the daemon.

use std::io;

/// Errors of the image store. The `String` of each message variant is the complete,
/// user-facing message (for example `No such image: busybox:latest`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image (or a blob or layer it needs) does not exist: HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the store's state (tags, containers): HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The request or the data it carries is malformed: HTTP 400.
    #[error("{0}")]
    InvalidInput(String),
    /// A filesystem operation failed; `context` says which one and on what path: HTTP 500.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The store's own data is inconsistent (a blob that does not match its digest, a
    /// record that does not parse): HTTP 500.
    #[error("{0}")]
    Corrupt(String),
}

/// Result with the store's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn not_found_image(input: &str) -> Error {
        Error::NotFound(format!("No such image: {input}"))
    }
}

/// Adds a context message to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e.into()))
    }
}
