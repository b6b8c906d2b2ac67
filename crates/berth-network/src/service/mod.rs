//! The network service (Docker's Container Network Model): networks with their records in
//! `<data-root>/networks/`, drivers and IPAM behind traits, the embedded DNS names, the
//! nftables table, held host ports and userland proxies. Its callers speak in its terms
//! (network records, port requests, ids as strings); it never sees a container record or
//! the daemon, and emits no events (callers do, after its calls).

pub mod create;
pub mod endpoint;
pub mod files;
pub mod overlay;
pub mod publish;
pub mod sandbox;

pub use crate::driver::Network;
use crate::driver::{self, Driver, HostNet};
use crate::host::write_sysctl;
pub use crate::host::{host_dns_is_loopback, host_nameservers};
use crate::ipam::Subnet;
use crate::ipam_driver::{DefaultIpam, Ipam};
use crate::link::Netlink;
use crate::nft;
pub use crate::nft::IngressPort;
use crate::record::NetworkRecord;
use crate::{config::NetConfig, dns, Error, Result};
pub use overlay::OverlayPeer;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// All networks, and the host-side machinery they share.
pub struct NetworkService {
    map: Mutex<BTreeMap<String, Arc<Network>>>,
    pub host: HostNet,
    dir: PathBuf,
    drivers: Vec<Arc<dyn Driver>>,
    ipam: Arc<dyn Ipam>,
    /// Host ports held (bound, not listening) by running containers, so that nothing else
    /// takes them; by container id.
    held: Mutex<HashMap<String, Vec<OwnedFd>>>,
    /// Userland proxies started by this process, by container id (to reap them).
    proxies: Mutex<HashMap<String, Vec<std::process::Child>>>,
    /// Serializes network create and remove.
    admin: tokio::sync::Mutex<()>,
    /// Live sandboxes' endpoints and ports, by container id (see [`sandbox`]).
    sandboxes: Mutex<HashMap<String, sandbox::SandboxState>>,
    /// Sandboxes read from disk at open, until the daemon says which are alive.
    loaded: Mutex<HashMap<String, sandbox::SandboxState>>,
    /// `<run_dir>/endpoints/`: one file per live sandbox.
    sb_dir: PathBuf,
    /// The routing mesh's ports last set (see [`NetworkService::set_ingress_ports`]), put
    /// back whenever the table is rebuilt.
    ingress: Mutex<Vec<IngressPort>>,
    /// The nodes VXLAN traffic is accepted from (see [`NetworkService::set_overlay_peers`]).
    underlay: Mutex<overlay::Underlay>,
}

fn table_name(bridge: &str) -> String {
    if bridge == "berth0" {
        "berth".into()
    } else {
        format!(
            "berth_{}",
            bridge.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    }
}

/// A random 64-hex-digit id.
pub(crate) fn random_id() -> Result<String> {
    berth_api::fsutil::random_hex()
        .map_err(|e| Error::Internal(format!("reading /dev/urandom: {e}")))
}

impl NetworkService {
    /// Load the networks, make sure the predefined ones exist, bring up every bridge and its
    /// DNS, and set the host up for forwarding.
    /// `data_root` holds `networks/`; a record that cannot be read is handed to `quarantine`
    /// (which moves it aside and says where). `run_dir` holds the live sandboxes' state: a
    /// directory that outlives the daemon but not the machine (the exec root's tmpfs).
    pub async fn open(
        nc: NetConfig,
        data_root: &Path,
        run_dir: &Path,
        quarantine: &dyn Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> std::result::Result<NetworkService, String> {
        let link = Netlink::new().map_err(|e| format!("netlink: {e}"))?;
        let table = nft::Table::new(&table_name(&nc.bridge), !nc.userland_proxy)
            .map_err(|e| e.to_string())?;
        let dir = data_root.join("networks");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sb_dir = run_dir.join("endpoints");
        std::fs::create_dir_all(&sb_dir).map_err(|e| format!("{}: {e}", sb_dir.display()))?;
        if nc.ip_forward {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| e.to_string())?;
        }
        let upstreams = if nc.dns.is_empty() {
            host_nameservers()
        } else {
            nc.dns.clone()
        }
        .into_iter()
        .map(|a| SocketAddr::new(a.into(), 53))
        .collect();
        let nets = NetworkService {
            map: Mutex::new(BTreeMap::new()),
            host: HostNet {
                link,
                table,
                esp: Default::default(),
                cfg: nc,
                upstreams,
            },
            dir,
            drivers: driver::builtin(),
            ipam: Arc::new(DefaultIpam),
            held: Mutex::new(HashMap::new()),
            sandboxes: Mutex::new(HashMap::new()),
            loaded: Mutex::new(sandbox::load(&sb_dir)),
            sb_dir,
            proxies: Mutex::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            ingress: Mutex::new(Vec::new()),
            underlay: Mutex::new(Default::default()),
        };
        let mut recs: Vec<NetworkRecord> = Vec::new();
        let mut damaged = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&nets.dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    match std::fs::read(&p)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<NetworkRecord>(&b).ok())
                    {
                        Some(r) => recs.push(r),
                        None => damaged.push(p),
                    }
                }
            }
        }
        for p in damaged {
            nets.quarantine(quarantine, &p).await;
        }
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            let existing = recs.iter().position(|r| r.name == name && r.predefined);
            let mut rec = match existing {
                Some(i) => recs.remove(i),
                None => {
                    let mut r = NetworkRecord::new(
                        random_id().map_err(|e| e.to_string())?,
                        name.into(),
                        driver,
                        berth_api::timefmt::now(),
                    );
                    r.predefined = true;
                    r
                }
            };
            let before = serde_json::to_vec(&rec).unwrap_or_default();
            if name == "bridge" {
                // The default bridge follows the daemon's settings.
                let (gw, prefix) = nets.host.cfg.bip;
                rec.subnet = Subnet::containing(gw, prefix).to_string();
                rec.gateway = gw.to_string();
                rec.ip_range = nets.host.cfg.fixed_cidr.clone().unwrap_or_default();
                rec.bridge = nets.host.cfg.bridge.clone();
                rec.icc = nets.host.cfg.icc;
                rec.mtu = nets.host.cfg.mtu;
                // `ipv6` with `fixed-cidr-v6` makes the default bridge an IPv6 network too.
                match &nets.host.cfg.fixed_cidr_v6 {
                    Some(s6) if nets.host.cfg.ipv6 => {
                        rec.enable_ipv6 = true;
                        rec.subnet6 = s6.to_string();
                        rec.gateway6 = s6.first_host().to_string();
                    }
                    _ => {
                        rec.enable_ipv6 = false;
                        rec.subnet6.clear();
                        rec.gateway6.clear();
                    }
                }
                rec.options = BTreeMap::from([
                    (
                        "com.docker.network.bridge.default_bridge".into(),
                        "true".into(),
                    ),
                    (
                        "com.docker.network.bridge.enable_icc".into(),
                        rec.icc.to_string(),
                    ),
                    (
                        "com.docker.network.bridge.enable_ip_masquerade".into(),
                        "true".into(),
                    ),
                    (
                        "com.docker.network.bridge.host_binding_ipv4".into(),
                        "0.0.0.0".into(),
                    ),
                    ("com.docker.network.bridge.name".into(), rec.bridge.clone()),
                    ("com.docker.network.driver.mtu".into(), rec.mtu.to_string()),
                ]);
            }
            // Written only when it changed: boot needs no free space, and a write that fails
            // (a full disk) leaves the record as it was, to be made again at the next start.
            if existing.is_none() || serde_json::to_vec(&rec).unwrap_or_default() != before {
                if let Err(e) = nets.save(&rec) {
                    tracing::warn!("network {name}: writing its record: {e}");
                }
            }
            recs.push(rec);
        }
        for rec in recs {
            let name = rec.name.clone();
            let n = Arc::new(
                nets.network(rec)
                    .map_err(|e| format!("network {name}: {e}"))?,
            );
            n.driver
                .bring_up(&nets.host, &n)
                .await
                .map_err(|e| format!("network {name}: {e}"))?;
            nets.map().insert(n.rec.id.clone(), n);
        }
        Ok(nets)
    }

    /// A network's live state from its record: its driver and its IPAM pools.
    fn network(&self, rec: NetworkRecord) -> Result<Network> {
        let driver = driver::select(&self.drivers, &rec.driver)?;
        let pools = self.ipam.pools(&rec)?;
        Ok(Network {
            rec,
            pools: Mutex::new(pools),
            names: dns::Names::new(),
            dns: Mutex::new(None),
            driver,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Network>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A network record that cannot be read goes to the quarantine; the bridge the network
    /// had under its default name (`br-<id>`, from the file name) is deleted with it, since
    /// nothing will manage it any more.
    async fn quarantine(&self, quarantine: &dyn Fn(&Path) -> std::io::Result<PathBuf>, p: &Path) {
        match quarantine(p) {
            Ok(to) => tracing::warn!(
                "{}: unreadable network record, moved to {}",
                p.display(),
                to.display()
            ),
            Err(e) => tracing::warn!("{}: unreadable network record ({e}), skipped", p.display()),
        }
        let id = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bridge = format!("br-{}", &id[..12]);
            if self.host.link.link_exists(&bridge).await.unwrap_or(false) {
                if let Err(e) = self.host.link.delete_link(&bridge).await {
                    tracing::warn!("bridge {bridge} of a damaged network record: {e}");
                }
            }
        }
    }

    fn save(&self, rec: &NetworkRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(rec).map_err(|e| Error::Internal(e.to_string()))?;
        berth_api::fsutil::write_atomic(&self.dir.join(format!("{}.json", rec.id)), &data, true)?;
        Ok(())
    }

    /// Whether a network runs a DNS server containers should use.
    pub fn serves_dns(&self, n: &Network) -> bool {
        n.dns.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub fn all(&self) -> Vec<Arc<Network>> {
        self.map().values().cloned().collect()
    }

    /// Find a network by full id, exact name, or unique id prefix, as Docker does.
    pub fn find(&self, key: &str) -> Result<Arc<Network>> {
        let map = self.map();
        if let Some(n) = map.get(key) {
            return Ok(n.clone());
        }
        if let Some(n) = map.values().find(|n| n.rec.name == key) {
            return Ok(n.clone());
        }
        let hits: Vec<_> = map
            .values()
            .filter(|n| !key.is_empty() && n.rec.id.starts_with(key))
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!("network {key} not found"))),
            _ => Err(Error::Invalid(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                hits.len()
            ))),
        }
    }

    /// Replace the nftables table with one for the current networks and these ports (and the
    /// routing mesh's ports and VXLAN's sources last set).
    pub fn rebuild_table(&self, ports: &[nft::PortMap]) -> Result<()> {
        let rules: Vec<_> = self.all().iter().filter_map(|n| n.rec.rules()).collect();
        self.host.table.rebuild(&rules, ports)?;
        self.underlay().forget_applied();
        self.sync_underlay()?;
        let ingress = self.ingress.lock().unwrap_or_else(|e| e.into_inner());
        if ingress.is_empty() {
            return Ok(());
        }
        self.host.table.set_ingress(&ingress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(table_name("berth0"), "berth");
        assert_eq!(table_name("bt-12.3"), "berth_bt_12_3");
    }
}
