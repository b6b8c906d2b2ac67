//! The daemon's handler error: an ApiError rendered as Docker's JSON body, with conversions from
//! the libraries' errors. A leaf: it imports no other module of the daemon, only the libraries'
//! error types.

use axum::response::{IntoResponse, Response};
use berth_api::ApiError;

#[derive(Debug)]
pub struct Error(pub ApiError);

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad_request(m: impl Into<String>) -> Error {
        Error(ApiError::bad_request(m))
    }
    pub fn not_found(m: impl Into<String>) -> Error {
        Error(ApiError::not_found(m))
    }
    pub fn conflict(m: impl Into<String>) -> Error {
        Error(ApiError::conflict(m))
    }
    pub fn internal(m: impl Into<String>) -> Error {
        Error(ApiError::internal(m))
    }
    pub fn not_modified() -> Error {
        Error(ApiError::not_modified())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = axum::http::StatusCode::from_u16(self.0.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        if status == axum::http::StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.0.body() + "\n",
        )
            .into_response()
    }
}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        let msg = e.to_string();
        Error(match e {
            berth_image::Error::NotFound(_) => ApiError::not_found(msg),
            berth_image::Error::Conflict(_) => ApiError::conflict(msg),
            berth_image::Error::InvalidInput(_) => ApiError::bad_request(msg),
            _ => ApiError::internal(msg),
        })
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::internal(e.to_string())
    }
}

impl From<berth_volume::Error> for Error {
    fn from(e: berth_volume::Error) -> Error {
        Error(match e.kind {
            berth_volume::Kind::NotFound => ApiError::not_found(e.message),
            berth_volume::Kind::Conflict => ApiError::conflict(e.message),
            berth_volume::Kind::BadRequest => ApiError::bad_request(e.message),
            berth_volume::Kind::Internal => ApiError::internal(e.message),
        })
    }
}
