//! The daemon's glue to the network service (`berth_network::service`): opening it, mapping
//! its errors to API errors, and emitting network events after its calls. What a container
//! asks of its networks (endpoints, ports, files, inspect) is translated in the submodules;
//! the service itself never sees a container record or the daemon.

pub mod endpoint;
pub mod files;
pub mod ports;
pub mod view;

use crate::config::DaemonConfig;
use crate::error::Error;
use crate::state::{Container, Daemon};
use berth_api::ApiError;
pub use berth_network::service::{Network, NetworkService as Networks};
use std::collections::BTreeMap;

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

impl Daemon {
    /// A network event: its name and driver, and the container for connect/disconnect.
    pub fn network_event(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut attrs = BTreeMap::new();
        if let Some(c) = container {
            attrs.insert("container".to_string(), c.to_string());
        }
        attrs.insert("name".into(), n.rec.name.clone());
        attrs.insert("type".into(), n.rec.driver.clone());
        self.emit("network", action, &n.rec.id, attrs);
    }

    /// `connect` or `disconnect` events for every network the container has an endpoint on.
    pub fn endpoint_events(&self, c: &Container, action: &str) {
        let ids: Vec<String> = c
            .rec()
            .net
            .endpoints
            .values()
            .map(|e| e.network_id.clone())
            .collect();
        for id in ids {
            if let Ok(n) = self.net.find(&id) {
                self.network_event(&n, action, Some(&c.id));
            }
        }
    }
}
