//! Swarm mode: several berth daemons as one cluster. Managers replicate the cluster state
//! with Raft; the leader schedules service tasks onto nodes; every node's agent runs them.

pub mod agent;
pub mod autolock;
pub mod ca;
pub mod cluster;
pub mod control;
pub mod error;
pub mod executor;
pub mod ids;
pub mod logbroker;
pub mod manager;
pub mod net_transport;
pub mod netalloc;
pub mod netview;
pub mod orchestrator;
pub mod proto;
pub mod raft;
pub mod rpc;
pub mod store;
pub mod tls;
pub mod token;
pub mod view;
