//! The swarm's errors as the Engine API answers them: an HTTP status and Docker's message.

use serde::{Deserialize, Serialize};

/// An error with the status the API answers and the message the docker CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub status: u16,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Docker's answer when the Raft group has no leader (lost quorum, election in progress).
pub const NO_LEADER: &str = "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

/// Docker's answer to manager-only calls on a worker or a node outside a swarm.
pub const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// Docker's answer to swarm calls on a node outside a swarm.
pub const NOT_IN_SWARM: &str = "This node is not part of a swarm";

impl Error {
    pub fn new(status: u16, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(409, message)
    }
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(500, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(503, message)
    }
    /// gRPC's InvalidArgument as dockerd passes it through (status 400).
    pub fn rpc_invalid(message: impl AsRef<str>) -> Error {
        Error::invalid(format!(
            "rpc error: code = InvalidArgument desc = {}",
            message.as_ref()
        ))
    }
    /// dockerd passes gRPC's Unknown through as a 500.
    pub fn no_leader() -> Error {
        Error::internal(NO_LEADER)
    }
    pub fn not_manager() -> Error {
        Error::unavailable(NOT_MANAGER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_leader_is_a_500_as_dockerd_answers_it() {
        let e = Error::no_leader();
        assert_eq!((e.status, e.message.as_str()), (500, NO_LEADER));
    }
}
