//! The container service's glue to the network service (`berth_network::service`): opening it, mapping
//! its errors to API errors, and emitting network events after its calls. What a container
//! asks of its networks (endpoints, ports, files, inspect) is translated in the submodules;
//! the service itself never sees a container record or the daemon. Nothing here keeps network state
//! or touches links, nftables or address pools: those are the service's.

pub mod endpoint;
pub mod files;
pub mod ports;
pub mod view;

use crate::config::DaemonConfig;
use crate::error::Error;
use berth_api::ApiError;
pub use berth_network::service::{Network, NetworkService as Networks};

/// Open the network service: its records on the data root (damaged ones go to quarantine),
/// live sandboxes' state on the exec root.
pub async fn open(cfg: &DaemonConfig) -> std::result::Result<Networks, String> {
    let root = cfg.data_root.clone();
    let quarantine = move |p: &std::path::Path| crate::quarantine::move_aside(&root, "networks", p);
    let run_dir = cfg.exec_root.join("network");
    Networks::open(cfg.net.clone(), &cfg.data_root, &run_dir, &quarantine).await
}

/// The API error for a network service error.
pub(crate) fn net_err(e: berth_network::Error) -> Error {
    use berth_network::Error as E;
    match e {
        E::Invalid(m) => Error::bad_request(m),
        E::NotFound(m) => Error::not_found(m),
        E::Conflict(m) => Error::conflict(m),
        E::Forbidden(m) => Error(ApiError::new(403, m)),
        E::Exhausted(m) | E::Internal(m) => Error::internal(m),
        other => Error::internal(other.to_string()),
    }
}

impl From<berth_network::Error> for Error {
    fn from(e: berth_network::Error) -> Error {
        net_err(e)
    }
}
