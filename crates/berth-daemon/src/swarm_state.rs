//! What this node applied and programmed of its swarm networks: the state `swarm_net` keeps
//! in the daemon (plain data behind the daemon's locks).

use berth_network::service::IngressPort;
use berth_swarm::proto::NetworkView;
use std::collections::HashMap;

/// What this node last applied of the managers' description of its swarm networks; the
/// daemon keeps it behind one lock, so realising, putting containers on and releasing never
/// overlap.
#[derive(Default)]
pub struct Applied {
    pub(crate) views: Vec<NetworkView>,
}

impl Applied {
    pub(crate) fn view(&self, swarm_id: &str) -> Option<&NetworkView> {
        self.views.iter().find(|v| v.network.id == swarm_id)
    }
}

/// What the names, the mesh's ports and the containers' balancers were last programmed
/// with: kept apart from [`Applied`] (its lock is held while containers are made), so that
/// programming never waits for that.
#[derive(Default)]
pub struct Programs {
    pub(crate) views: Vec<NetworkView>,
    /// The DNS owners registered per local network id (`swarm:<address>`).
    pub(crate) dns: HashMap<String, Vec<String>>,
    /// The mesh's ports as last published.
    pub(crate) ingress: Option<Vec<IngressPort>>,
    /// Per container, what it was last programmed with (an unchanged one is skipped).
    pub(crate) done: HashMap<String, String>,
}

impl Programs {
    pub(crate) fn view(&self, swarm_id: &str) -> Option<&NetworkView> {
        self.views.iter().find(|v| v.network.id == swarm_id)
    }
}
