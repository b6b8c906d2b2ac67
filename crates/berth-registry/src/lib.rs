//! berth-registry: berth's own container registry (what `registry:2` is for Docker users) — the
//! OCI distribution API over a crash-safe filesystem store, with gc, htpasswd auth and TLS.
//!
//! [`bind`]/[`serve`] run the server, [`gc`] collects garbage offline (untagged manifests are
//! kept unless asked, as registry:2 does; it refuses to run while a server holds the storage
//! root), and [`ServeArgs`] / [`GcArgs`] with [`main_serve`] / [`main_gc`] are the
//! `berth registry serve|gc` commands. The storage layout is described in `storage.rs`.

mod auth;
mod cli;
mod error;
mod fsutil;
mod gc;
mod manifest;
mod names;
mod range;
mod routes;
mod server;
mod storage;
mod tls;
mod upload;

pub use cli::{main_gc, main_serve, GcArgs, ServeArgs, DEFAULT_ROOT};
pub use error::Error;
pub use gc::{gc, GcReport, DEFAULT_UPLOAD_MAX_AGE};
pub use server::{bind, serve, ServeOptions};
