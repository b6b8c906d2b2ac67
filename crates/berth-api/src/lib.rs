//! Engine API types shared by the daemon and the CLI: request and response bodies following the
//! Docker Engine API swagger, the error type with its HTTP status, API versions and the stdcopy codec.

pub mod container;
pub mod decode;
pub mod detach;
pub mod duration;
pub mod error;
pub mod event;
pub mod exec;
pub mod fsutil;
pub mod image;
pub mod locallog;
pub mod network;
pub mod platform;
pub mod progress;
pub mod stats;
pub mod stdcopy;
pub mod swarm;
pub mod system;
pub mod timefmt;
pub mod tls;
pub mod units;
pub mod version;
pub mod volume;

pub use error::ApiError;
