//! Swarm mode: several berth daemons as one cluster. Managers replicate the cluster state
//! with Raft; the leader schedules service tasks onto nodes; every node's agent runs them.

pub mod raft;
