//! The daemon as a whole: the composition root that owns the container service (and through
//! it the image store, network and volume services and the event bus), the registry client and
//! the push bookkeeping. The API routes, the build, pull and push work on it; nothing below
//! them (the container service and the services it drives) sees it.

use crate::container::service::Service;
use std::sync::Arc;

pub struct Daemon {
    /// The container service, which the daemon dereferences to: its configuration, image
    /// store, network and volume services and event bus are the daemon's.
    pub containers: Arc<Service>,
    /// The registry client (pull, push, login), with its token cache.
    pub registry: berth_distribution::Client,
    /// Registry repositories known to hold each blob, for cross-repository mounts on push.
    pub blob_sources: crate::blob_sources::BlobSources,
    /// This node's part in a swarm (set once, right after the daemon is built: its executor
    /// holds a weak reference back to the daemon).
    pub swarm: std::sync::OnceLock<Arc<berth_swarm::cluster::Cluster>>,
    /// What this node applied of its swarm networks; the lock serialises realising them and
    /// putting containers on them with programming and removing them (`swarm_net`).
    pub swarm_nets: tokio::sync::Mutex<crate::swarm_state::Applied>,
    /// What the swarm networks' names and balancers were last programmed with.
    pub swarm_programs: std::sync::Mutex<crate::swarm_state::Programs>,
}

impl Daemon {
    pub fn new(containers: Service, registry: berth_distribution::Client) -> Daemon {
        Daemon {
            blob_sources: crate::blob_sources::BlobSources::load(&containers.cfg.data_root),
            containers: Arc::new(containers),
            registry,
            swarm: std::sync::OnceLock::new(),
            swarm_nets: tokio::sync::Mutex::new(Default::default()),
            swarm_programs: std::sync::Mutex::new(Default::default()),
        }
    }
}

impl std::ops::Deref for Daemon {
    type Target = Arc<Service>;

    fn deref(&self) -> &Arc<Service> {
        &self.containers
    }
}
