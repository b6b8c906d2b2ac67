//! Swarm mode: several berth daemons as one cluster. Managers replicate the cluster state
//! with Raft; the leader schedules service tasks onto nodes; every node's agent runs them.

pub mod ca;
pub mod net_transport;
pub mod raft;
pub mod rpc;
pub mod tls;
pub mod token;
