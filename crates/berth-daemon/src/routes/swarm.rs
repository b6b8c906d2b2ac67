//! Swarm-mode routes on a node that is not in a swarm: they answer as dockerd answers on such a
//! node (503 with its messages), never 404, since clients probe them to learn the swarm state.
//! `POST /swarm/init` and `/swarm/join` would make dockerd a swarm node; berth has no swarm mode
//! yet and says so with a 503. `PUT /volumes/{name}` (cluster volumes) is answered here too. Fixed
//! answers: it imports only `error` and reads no state of the daemon.

use crate::error::{Error, Result};
use axum::http::Method;
use axum::response::Response;

/// dockerd's answer to a cluster request on a node that is no swarm manager.
const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// dockerd's answer to `POST /swarm/leave` on a node in no swarm.
const NOT_IN_SWARM: &str = "This node is not part of a swarm";

fn unavailable(message: &str) -> Error {
    Error(berth_api::ApiError::new(503, message))
}

/// `/swarm` and everything under it.
pub async fn swarm(method: Method, uri: axum::http::Uri) -> Result<Response> {
    let sub = uri.path().strip_prefix("/swarm").unwrap_or_default();
    Err(match (method, sub) {
        (Method::POST, "/leave") => unavailable(NOT_IN_SWARM),
        (Method::POST, "/init" | "/join") => unavailable(
            "swarm mode is not available in berth yet: this node cannot create or join a swarm",
        ),
        _ => unavailable(NOT_MANAGER),
    })
}

/// `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs` and their sub-routes: all manager
/// requests.
pub async fn cluster() -> Result<Response> {
    Err(unavailable(NOT_MANAGER))
}

/// `PUT /volumes/{name}` updates cluster volumes, which need a swarm.
pub async fn volume_update() -> Result<Response> {
    Err(unavailable(
        "volume update only valid for cluster volumes, but swarm is unavailable",
    ))
}
