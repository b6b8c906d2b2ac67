//! Sandboxes, the service's state for each running container: its endpoints with what they
//! got (addresses, MAC, veth names) and its published ports (with proxy pids), kept in memory
//! and in `<run-dir>/endpoints/<container-id>.json` (on the exec root: it outlives the daemon,
//! not the machine, and costs no disk), so that after a restart the service takes them again
//! for the sandboxes the daemon says are alive. The container's
//! record keeps only what was asked ([`EndpointConfig`]). Owns those files only; network
//! records are [`super`]'s, and which sandboxes are alive is the daemon's to say.

use super::{Network, NetworkService};
use crate::endpoint::{ordered, router, Endpoint, EndpointConfig, Sandbox};
use crate::ports::{port_maps, PortRequest, Published};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::MutexGuard;

/// What the service keeps of a live sandbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxState {
    pub sandbox: Sandbox,
    /// By network name.
    pub endpoints: BTreeMap<String, Endpoint>,
    pub ports: Vec<Published>,
}

/// The sandbox files in `dir`; one that cannot be read is dropped with a warning (its
/// container's addresses are simply not held again).
pub(super) fn load(dir: &Path) -> HashMap<String, SandboxState> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<SandboxState>(&b).ok())
        {
            Some(s) => {
                out.insert(s.sandbox.id.clone(), s);
            }
            None => {
                tracing::warn!("{}: unreadable sandbox state, removed", p.display());
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    out
}

/// Bring a kept sandbox's name and its endpoints' aliases and links up to what the container
/// is and asks now; whether anything changed.
fn refresh(
    st: &mut SandboxState,
    current: Sandbox,
    configs: &BTreeMap<String, EndpointConfig>,
) -> bool {
    let mut changed = false;
    if st.sandbox != current {
        st.sandbox = current;
        changed = true;
    }
    for (net, ep) in st.endpoints.iter_mut() {
        if let Some(cfg) = configs.get(net) {
            if ep.aliases != cfg.aliases || ep.links != cfg.links {
                ep.aliases = cfg.aliases.clone();
                ep.links = cfg.links.clone();
                changed = true;
            }
        }
    }
    changed
}

impl NetworkService {
    fn sandboxes(&self) -> MutexGuard<'_, HashMap<String, SandboxState>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sandbox_file(&self, id: &str) -> std::path::PathBuf {
        self.sb_dir.join(format!("{id}.json"))
    }

    /// Write a sandbox's file. A failure is logged: the sandbox works, only a restart of the
    /// daemon would lose it.
    fn save_sandbox(&self, id: &str) {
        let Some(st) = self.sandboxes().get(id).cloned() else {
            return;
        };
        // Not fsynced: the file is on the exec root's tmpfs.
        let res = serde_json::to_vec(&st)
            .map_err(std::io::Error::other)
            .and_then(|b| berth_api::fsutil::write_atomic(&self.sandbox_file(id), &b, false));
        if let Err(e) = res {
            tracing::warn!("container {id}: writing its network state: {e}");
        }
    }

    fn drop_sandbox_file(&self, id: &str) {
        match std::fs::remove_file(self.sandbox_file(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("container {id}: removing its network state: {e}"),
        }
    }

    /// A live sandbox's endpoint on the network named `net`, with what it got.
    pub fn live_endpoint(&self, id: &str, net: &str) -> Option<Endpoint> {
        self.sandboxes().get(id)?.endpoints.get(net).cloned()
    }

    /// A live sandbox's published ports.
    pub fn ports_of(&self, id: &str) -> Vec<Published> {
        self.sandboxes()
            .get(id)
            .map(|s| s.ports.clone())
            .unwrap_or_default()
    }

    /// Before a sandbox's process starts: an address, MAC and interface names for each of
    /// its endpoints (`configs`, by network name, in interface order from the primary
    /// network), and the host ports its port requests ask for. On error nothing stays taken.
    pub fn allocate(
        &self,
        sb: Sandbox,
        configs: &BTreeMap<String, EndpointConfig>,
        wanted: &[PortRequest],
    ) -> Result<()> {
        let id = sb.id.clone();
        let primary = sb.primary.clone();
        self.sandboxes().insert(
            id.clone(),
            SandboxState {
                sandbox: sb,
                ..SandboxState::default()
            },
        );
        let res = self.allocate_inner(&id, &primary, configs, wanted);
        if res.is_err() {
            self.release_local(&id);
        }
        res
    }

    fn allocate_inner(
        &self,
        id: &str,
        primary: &str,
        configs: &BTreeMap<String, EndpointConfig>,
        wanted: &[PortRequest],
    ) -> Result<()> {
        let mut first: Option<Endpoint> = None;
        for (i, name) in ordered(primary, configs).iter().enumerate() {
            let Some(cfg) = configs.get(name) else {
                continue;
            };
            let n = self.find(&cfg.network_id).map_err(|_| {
                Error::NotFound(format!(
                    "network {name} not found (it was removed while the container was stopped)"
                ))
            })?;
            let mut ep = Endpoint::configured(cfg);
            self.take_addresses(&n, name, &mut ep, format!("eth{i}"))?;
            first.get_or_insert_with(|| ep.clone());
            // Kept at once, so a failure further on gives this address back.
            if let Some(st) = self.sandboxes().get_mut(id) {
                st.endpoints.insert(name.clone(), ep);
            }
        }
        let target = first.as_ref().and_then(|e| e.ip.parse::<Ipv4Addr>().ok());
        let target6 = first.as_ref().and_then(|e| e.ip6.parse::<Ipv6Addr>().ok());
        let ports = self.publish(id, wanted, target, target6)?;
        if let Some(st) = self.sandboxes().get_mut(id) {
            st.ports = ports;
        }
        Ok(())
    }

    /// Once the sandbox's namespace exists (`netns`): its veths, DNS names and NAT rules.
    pub async fn wire(&self, id: &str, netns: BorrowedFd<'_>) -> Result<()> {
        let Some(st) = self.sandboxes().get(id).cloned() else {
            return Ok(());
        };
        let primary = &st.sandbox.primary;
        let routes = router(primary, &st.endpoints);
        for name in ordered(primary, &st.endpoints) {
            let Some(ep) = st.endpoints.get(&name) else {
                continue;
            };
            if ep.ip.is_empty() && ep.ip6.is_empty() {
                continue;
            }
            let routes = routes.as_ref() == Some(&name);
            self.join(&st.sandbox, &name, ep, netns, routes).await?;
        }
        self.refresh_peers(id, &st.endpoints);
        self.add_port_rules(&st.ports)?;
        self.save_sandbox(id);
        Ok(())
    }

    /// Give back what [`Self::allocate`] took, in memory (addresses, names, held ports).
    fn release_local(&self, id: &str) {
        let st = self.sandboxes().remove(id).unwrap_or_default();
        self.unpublish(id, &st.ports);
        for ep in st.endpoints.values() {
            if let Ok(n) = self.find(&ep.network_id) {
                self.leave(&n, id, ep);
            }
        }
        self.drop_sandbox_file(id);
    }

    /// Undo [`Self::allocate`] and [`Self::wire`]: after the sandbox's process ended, or when
    /// its start failed. Its veths go with its namespace.
    pub fn release(&self, id: &str) {
        let ports = self.ports_of(id);
        if let Err(e) = self.remove_port_rules(&ports) {
            tracing::warn!("container {id}: unpublishing ports: {e}");
        }
        self.release_local(id);
    }

    /// Connect a running sandbox (`sb`, namespace `netns`) to network `n` with the endpoint
    /// configuration `cfg`. On error nothing stays taken.
    pub async fn connect(
        &self,
        sb: &Sandbox,
        n: &Network,
        cfg: &EndpointConfig,
        netns: BorrowedFd<'_>,
    ) -> Result<()> {
        let current = self
            .sandboxes()
            .get(&sb.id)
            .map(|s| s.endpoints.clone())
            .unwrap_or_default();
        let used: Vec<&str> = current.values().map(|e| e.ifname.as_str()).collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(&n.as_str()))
            .unwrap_or_else(|| "eth9".into());
        let mut ep = Endpoint::configured(cfg);
        self.take_addresses(n, &n.rec.name, &mut ep, ifname)?;
        // The new endpoint takes the default route when none has one or it outranks them all.
        let routes = current
            .values()
            .filter(|e| !e.gateway.is_empty() || !e.gateway6.is_empty())
            .all(|e| ep.gw_priority > e.gw_priority);
        if let Err(e) = self.join(sb, &n.rec.name, &ep, netns, routes).await {
            self.leave(n, &sb.id, &ep);
            let _ = self.unplug(n, &ep).await;
            return Err(e);
        }
        let endpoints = {
            let mut all = self.sandboxes();
            let st = all.entry(sb.id.clone()).or_insert_with(|| SandboxState {
                sandbox: sb.clone(),
                ..SandboxState::default()
            });
            st.endpoints.insert(n.rec.name.clone(), ep);
            st.endpoints.clone()
        };
        self.refresh_peers(&sb.id, &endpoints);
        self.save_sandbox(&sb.id);
        Ok(())
    }

    /// Disconnect sandbox `id` from network `n`: its interface there goes, with its address
    /// and names.
    pub async fn disconnect(&self, id: &str, n: &Network) -> Result<()> {
        let ep = self.live_endpoint(id, &n.rec.name);
        if let Some(ep) = &ep {
            self.unplug(n, ep).await?;
            self.give_back(n, ep);
        }
        n.names.remove(id);
        let endpoints = {
            let mut all = self.sandboxes();
            match all.get_mut(id) {
                Some(st) => {
                    st.endpoints.remove(&n.rec.name);
                    Some(st.endpoints.clone())
                }
                None => None,
            }
        };
        if let Some(endpoints) = endpoints {
            self.refresh_peers(id, &endpoints);
            self.save_sandbox(id);
        }
        Ok(())
    }

    /// Whether the service kept state for sandbox `id` (read at open, not yet readopted).
    pub fn kept(&self, id: &str) -> bool {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// At boot, for each sandbox the daemon found alive: its addresses, DNS names and host
    /// ports are taken again from what the service kept (before anything new starts), or from
    /// `handed` when it kept nothing (a sandbox started by a daemon that kept this state in
    /// the container's record). What the container is now (`current`: its name after a
    /// rename) and asks now of each network (`configs`: aliases and links, after an
    /// `rm --link`) wins over what was saved when it started.
    pub fn readopt(
        &self,
        id: &str,
        current: Sandbox,
        configs: &BTreeMap<String, EndpointConfig>,
        handed: Option<SandboxState>,
    ) {
        let kept = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let mut changed = kept.is_none();
        let Some(mut st) = kept.or(handed) else {
            return;
        };
        changed |= refresh(&mut st, current, configs);
        self.readopt_endpoints(&st.sandbox, &st.endpoints);
        let before = st.ports.clone();
        self.readopt_ports(id, &mut st.ports);
        let changed = changed || st.ports != before;
        self.sandboxes().insert(id.to_string(), st);
        // Boot writes only what changed (a proxy started again, state handed over).
        if changed {
            self.save_sandbox(id);
        }
    }

    /// At boot, once every live sandbox was readopted: the state of the others goes, and the
    /// nftables table is made again from the networks and the live sandboxes' ports.
    pub fn finish_restore(&self) -> Result<()> {
        let stale: Vec<SandboxState> = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for st in stale {
            // A proxy it left is stopped (only if it still is that port's berth proxy).
            self.unpublish(&st.sandbox.id, &st.ports);
            self.drop_sandbox_file(&st.sandbox.id);
        }
        let ports: Vec<_> = self
            .sandboxes()
            .values()
            .flat_map(|s| port_maps(&s.ports))
            .collect();
        self.rebuild_table(&ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::Proto;

    #[test]
    fn loads_sandbox_files_and_drops_unreadable_ones() {
        let dir = std::env::temp_dir().join(format!("berth-sandboxes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = SandboxState {
            sandbox: Sandbox {
                id: "abc".into(),
                name: "web".into(),
                primary: "bridge".into(),
                ..Sandbox::default()
            },
            endpoints: BTreeMap::from([(
                "bridge".to_string(),
                Endpoint {
                    ip: "10.222.0.2".into(),
                    ..Endpoint::default()
                },
            )]),
            ports: vec![Published {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                container_ip: "10.222.0.2".parse().unwrap(),
                container_ip6: None,
                container_port: 80,
                proxy_pid: 0,
            }],
        };
        std::fs::write(dir.join("abc.json"), serde_json::to_vec(&st).unwrap()).unwrap();
        std::fs::write(dir.join("bad.json"), "{").unwrap();
        std::fs::write(dir.join("x.tmp"), "{").unwrap();
        let loaded = load(&dir);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded["abc"].ports, st.ports);
        assert_eq!(loaded["abc"].endpoints["bridge"].ip, "10.222.0.2");
        assert!(!dir.join("bad.json").exists());
        assert!(dir.join("x.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kept_state_follows_renames_and_removed_links() {
        let sb = |name: &str| Sandbox {
            id: "abc".into(),
            name: name.into(),
            ..Sandbox::default()
        };
        let ep = Endpoint {
            ip: "10.222.0.2".into(),
            mac: "02:42:0a:de:00:02".into(),
            aliases: vec!["db".into()],
            links: vec!["web:w".into()],
            ..Endpoint::default()
        };
        let mut st = SandboxState {
            sandbox: sb("old"),
            endpoints: BTreeMap::from([("app".to_string(), ep.clone())]),
            ports: Vec::new(),
        };
        let same = BTreeMap::from([(
            "app".to_string(),
            EndpointConfig {
                aliases: vec!["db".into()],
                links: vec!["web:w".into()],
                ..EndpointConfig::default()
            },
        )]);
        assert!(!refresh(&mut st, sb("old"), &same));
        let now = BTreeMap::from([(
            "app".to_string(),
            EndpointConfig {
                aliases: vec!["db".into()],
                ..EndpointConfig::default()
            },
        )]);
        assert!(refresh(&mut st, sb("new"), &now));
        assert_eq!(st.sandbox.name, "new");
        let e = &st.endpoints["app"];
        assert!(e.links.is_empty());
        // What it got when it started stays.
        assert_eq!(
            (e.ip.as_str(), e.mac.as_str()),
            (ep.ip.as_str(), ep.mac.as_str())
        );
    }
}
