//! The volume service's error: what kind of failure (the daemon maps it to an HTTP status) and
//! Docker's message. It knows nothing of HTTP or of the daemon's error type.

/// What went wrong, as the daemon turns it into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Conflict,
    BadRequest,
    Internal,
}

/// A failed volume operation, with the message the API shows.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(m: impl Into<String>) -> Error {
        Error::new(Kind::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> Error {
        Error::new(Kind::Conflict, m)
    }
    pub fn bad_request(m: impl Into<String>) -> Error {
        Error::new(Kind::BadRequest, m)
    }
    pub fn internal(m: impl Into<String>) -> Error {
        Error::new(Kind::Internal, m)
    }

    /// Prefix the message as Docker's volume service does (`create x: ...`).
    pub(crate) fn during(mut self, op: &str, name: &str) -> Error {
        self.message = format!("{op} {name}: {}", self.message);
        self
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::internal(e.to_string())
    }
}
