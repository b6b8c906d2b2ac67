//! `POST /build` and `POST /build/prune`: HTTP adapters over the builder ([`crate::build`]) and
//! its step cache. They own only the request and response shapes; building, planning and the
//! cache on disk stay in `build`.

use super::St;
use crate::error::{Error, Result};
use crate::util::{json, Query};
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `POST /build`: the progress of the build as Docker's JSON message stream.
pub async fn build(State(d): St, RawQuery(raw): RawQuery, req: Request) -> Result<Response> {
    let rx = crate::build::start(d, raw.as_deref(), req.into_body()).await?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /build/prune`.
pub async fn prune(
    State(d): St,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Response> {
    // Without `all`, only dangling cache goes: steps no tagged image is built on.
    let q = Query::parse(q.as_deref());
    let all = q.bool("all");
    if !q.filters()?.is_empty() {
        return Err(Error::bad_request(
            "build cache prune filters are not supported by berth",
        ));
    }
    for k in [
        "keep-storage",
        "reserved-space",
        "max-used-space",
        "min-free-space",
    ] {
        if q.int(k)?.is_some_and(|v| v != 0) {
            return Err(Error::bad_request(format!(
                "build cache prune: {k} is not supported by berth"
            )));
        }
    }
    let (ids, freed) = tokio::task::spawn_blocking(move || crate::build::cache::prune(&d, all))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(json(
        200,
        &json!({ "CachesDeleted": ids, "SpaceReclaimed": freed }),
    ))
}
