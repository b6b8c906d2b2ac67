//! Networks: the predefined `bridge`, `host` and `none`, user-defined bridge networks with
//! their embedded DNS, and the nftables table that NATs and isolates them.

pub mod endpoint;
pub mod files;
pub mod ports;
pub mod view;

use crate::config::{DaemonConfig, NetConfig};
use crate::error::{Error, Result};
use berth_api::ApiError;
use berth_network::ipam::{pick_subnet, Pool, Subnet};
use berth_network::ipam6::{Pool6, Subnet6};
use berth_network::{dns, link::Netlink, nft};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where user-defined networks get a subnet when none is given: /24s of this space.
const USER_SPACE: &str = "10.223.0.0/16";

/// What is persisted in `networks/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    /// Bridge networks: subnet, gateway and optional range, as strings Docker shows.
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub ip_range: String,
    /// The bridge interface.
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub icc: bool,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `bridge`, `host` and `none` exist on every daemon and cannot be removed.
    #[serde(default)]
    pub predefined: bool,
    /// false: an IPv6-only network (`--ipv4=false`), without IPv4 subnet or gateway.
    #[serde(default = "yes")]
    pub enable_ipv4: bool,
    /// IPv6 networks (`--ipv6`): their subnet, gateway and optional range.
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub subnet6: String,
    #[serde(default)]
    pub gateway6: String,
    #[serde(default)]
    pub ip_range6: String,
    /// `--aux-address` (name → address): kept out of the pools.
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
    /// `--ipam-opt`.
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    /// User-defined bridge networks resolve container names.
    pub fn has_dns(&self) -> bool {
        self.is_bridge() && !self.predefined
    }
    pub fn subnet(&self) -> Option<Subnet> {
        self.subnet.parse().ok()
    }
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.parse().ok()
    }
    pub fn subnet6(&self) -> Option<Subnet6> {
        self.subnet6.parse().ok()
    }
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.gateway6.parse().ok()
    }
    fn rules(&self) -> Option<nft::NetRules> {
        if self.bridge.is_empty() {
            return None;
        }
        Some(nft::NetRules {
            bridge: self.bridge.clone(),
            subnet: self.subnet(),
            internal: self.internal,
            icc: self.icc,
            subnet6: self.subnet6(),
        })
    }
}

/// A network's live state.
pub struct Network {
    pub rec: NetworkRecord,
    pool: Mutex<Option<Pool>>,
    pool6: Mutex<Option<Pool6>>,
    /// Names its embedded DNS answers (user-defined networks).
    pub names: dns::Names,
    dns: Mutex<Option<dns::Server>>,
}

impl Network {
    fn new(rec: NetworkRecord) -> Result<Network> {
        let pool = if rec.is_bridge() && rec.enable_ipv4 {
            let subnet = rec.subnet().ok_or_else(|| {
                Error::internal(format!("network {}: bad subnet {:?}", rec.name, rec.subnet))
            })?;
            let range = if rec.ip_range.is_empty() {
                None
            } else {
                Some(rec.ip_range.parse::<Subnet>().map_err(net_err)?)
            };
            Some(Pool::new(subnet, range, rec.gateway()).map_err(net_err)?)
        } else {
            None
        };
        let pool6 = match rec.subnet6() {
            Some(subnet) if rec.is_bridge() => {
                let range = if rec.ip_range6.is_empty() {
                    None
                } else {
                    Some(rec.ip_range6.parse::<Subnet6>().map_err(net_err)?)
                };
                Some(Pool6::new(subnet, range, rec.gateway6()).map_err(net_err)?)
            }
            _ => None,
        };
        let (mut pool, mut pool6) = (pool, pool6);
        for (name, a) in &rec.aux_addresses {
            let taken = match a.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => pool.as_mut().map(|p| p.reserve(a)),
                Ok(IpAddr::V6(a)) => pool6.as_mut().map(|p| p.reserve(a)),
                Err(_) => None,
            };
            if !matches!(taken, Some(Ok(()))) {
                return Err(Error::bad_request(format!(
                    "invalid auxiliary address {name}={a}: it is not a free address of the network's subnets"
                )));
            }
        }
        Ok(Network {
            rec,
            pool: Mutex::new(pool),
            pool6: Mutex::new(pool6),
            names: dns::Names::new(),
            dns: Mutex::new(None),
        })
    }

    pub(crate) fn pool(&self) -> std::sync::MutexGuard<'_, Option<Pool>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pool6(&self) -> std::sync::MutexGuard<'_, Option<Pool6>> {
        self.pool6.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn net_err(e: berth_network::Error) -> Error {
    match e {
        berth_network::Error::Invalid(m) => Error::bad_request(m),
        berth_network::Error::Exhausted(m) => Error::internal(m),
        other => Error::internal(other.to_string()),
    }
}

/// All networks of the daemon, and the host-side machinery they share.
pub struct Networks {
    map: Mutex<BTreeMap<String, Arc<Network>>>,
    pub link: Netlink,
    pub table: nft::Table,
    dir: PathBuf,
    pub cfg: NetConfig,
    /// Where names that are not containers' go: the daemon's `dns`, else the host's resolvers.
    pub upstreams: Vec<SocketAddr>,
    /// Host ports held (bound, not listening) by running containers, so that nothing else
    /// takes them; by container id.
    held: Mutex<HashMap<String, Vec<OwnedFd>>>,
    /// Userland proxies started by this daemon process, by container id (to reap them).
    proxies: Mutex<HashMap<String, Vec<std::process::Child>>>,
    /// Serializes network create and remove.
    pub admin: tokio::sync::Mutex<()>,
}

/// The host's resolvers from /etc/resolv.conf.
pub fn host_nameservers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("nameserver"), Some(a)) => a.parse().ok(),
                _ => None,
            }
        })
        .collect()
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

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::internal(format!("{path}: {e}")))
}

impl Networks {
    /// Load the networks, make sure the predefined ones exist, bring up every bridge and its
    /// DNS, and set the host up for forwarding.
    pub async fn open(cfg: &DaemonConfig) -> std::result::Result<Networks, String> {
        let nc = cfg.net.clone();
        let link = Netlink::new().map_err(|e| format!("netlink: {e}"))?;
        let table = nft::Table::new(&table_name(&nc.bridge), !nc.userland_proxy)
            .map_err(|e| e.to_string())?;
        let dir = cfg.data_root.join("networks");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if nc.ip_forward {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| e.0.message)?;
        }
        let upstreams = if nc.dns.is_empty() {
            host_nameservers()
        } else {
            nc.dns.clone()
        }
        .into_iter()
        .map(|a| SocketAddr::new(a.into(), 53))
        .collect();
        let nets = Networks {
            map: Mutex::new(BTreeMap::new()),
            link,
            table,
            dir,
            cfg: nc,
            upstreams,
            held: Mutex::new(HashMap::new()),
            proxies: Mutex::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
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
            nets.quarantine(&cfg.data_root, &p).await;
        }
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            let existing = recs.iter().position(|r| r.name == name && r.predefined);
            let mut rec = match existing {
                Some(i) => recs.remove(i),
                None => NetworkRecord {
                    id: crate::util::random_id().map_err(|e| e.0.message)?,
                    name: name.into(),
                    driver: driver.into(),
                    created: berth_api::timefmt::now(),
                    internal: false,
                    attachable: false,
                    subnet: String::new(),
                    gateway: String::new(),
                    ip_range: String::new(),
                    bridge: String::new(),
                    icc: true,
                    mtu: 0,
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    predefined: true,
                    enable_ipv4: true,
                    enable_ipv6: false,
                    subnet6: String::new(),
                    gateway6: String::new(),
                    ip_range6: String::new(),
                    aux_addresses: BTreeMap::new(),
                    ipam_options: BTreeMap::new(),
                },
            };
            let before = serde_json::to_vec(&rec).unwrap_or_default();
            if name == "bridge" {
                // The default bridge follows the daemon's settings.
                let (gw, prefix) = nets.cfg.bip;
                rec.subnet = Subnet::containing(gw, prefix).to_string();
                rec.gateway = gw.to_string();
                rec.ip_range = nets.cfg.fixed_cidr.clone().unwrap_or_default();
                rec.bridge = nets.cfg.bridge.clone();
                rec.icc = nets.cfg.icc;
                rec.mtu = nets.cfg.mtu;
                // `ipv6` with `fixed-cidr-v6` makes the default bridge an IPv6 network too.
                match &nets.cfg.fixed_cidr_v6 {
                    Some(s6) if nets.cfg.ipv6 => {
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
                    tracing::warn!("network {name}: writing its record: {}", e.0.message);
                }
            }
            recs.push(rec);
        }
        for rec in recs {
            let name = rec.name.clone();
            let n = Arc::new(
                Network::new(rec).map_err(|e| format!("network {name}: {}", e.0.message))?,
            );
            if n.rec.is_bridge() {
                nets.bring_up(&n)
                    .await
                    .map_err(|e| format!("network {name}: {}", e.0.message))?;
            }
            nets.map().insert(n.rec.id.clone(), n);
        }
        Ok(nets)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Network>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A network record that cannot be read goes to the quarantine; the bridge the network
    /// had under its default name (`br-<id>`, from the file name) is deleted with it, since
    /// nothing will manage it any more.
    async fn quarantine(&self, data_root: &std::path::Path, p: &std::path::Path) {
        match crate::quarantine::move_aside(data_root, "networks", p) {
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
            if self.link.link_exists(&bridge).await.unwrap_or(false) {
                if let Err(e) = self.link.delete_link(&bridge).await {
                    tracing::warn!("bridge {bridge} of a damaged network record: {e}");
                }
            }
        }
    }

    fn save(&self, rec: &NetworkRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(rec).map_err(|e| Error::internal(e.to_string()))?;
        berth_api::fsutil::write_atomic(&self.dir.join(format!("{}.json", rec.id)), &data, true)?;
        Ok(())
    }

    /// The bridge with its gateway address, loopback routing for published ports, and the
    /// embedded DNS of a user-defined network.
    async fn bring_up(&self, n: &Network) -> Result<()> {
        let r = &n.rec;
        let v4 = match (r.subnet(), r.gateway()) {
            (Some(subnet), Some(gw)) => {
                self.link
                    .ensure_bridge(&r.bridge, gw, subnet.prefix, Some(r.mtu))
                    .await
                    .map_err(net_err)?;
                Some(gw)
            }
            _ if !r.enable_ipv4 && r.subnet6().is_some() => {
                self.link
                    .ensure_bridge_up(&r.bridge, Some(r.mtu))
                    .await
                    .map_err(net_err)?;
                None
            }
            _ => return Err(Error::internal("bridge network without subnet or gateway")),
        };
        if berth_network::iptables::forward_drops() {
            berth_network::iptables::allow_bridge(&r.bridge).map_err(net_err)?;
        }
        // Locally made connections to 127.0.0.1:<published> are DNATed out of this bridge.
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", r.bridge),
            "1",
        )?;
        if let (Some(s6), Some(gw6)) = (r.subnet6(), r.gateway6()) {
            write_sysctl(
                &format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", r.bridge),
                "0",
            )?;
            self.link
                .ensure_bridge_v6(&r.bridge, gw6, s6.prefix)
                .await
                .map_err(net_err)?;
            if self.cfg.ip_forward {
                write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
            }
        }
        let forwarder_only = r.predefined && self.cfg.dns.is_empty() && self.host_dns_is_loopback();
        // An IPv6-only network's server listens on its IPv6 gateway.
        let listen: Option<IpAddr> = v4.map(IpAddr::V4).or(r.gateway6().map(IpAddr::V6));
        if let Some(gw) = listen.filter(|_| r.has_dns() || forwarder_only) {
            let server = dns::Server::start(
                SocketAddr::new(gw, 53),
                n.names.clone(),
                self.upstreams.clone(),
            )
            .await
            .map_err(|e| Error::internal(format!("embedded DNS on {gw}:53: {e}")))?;
            *n.dns.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
        }
        Ok(())
    }

    /// Whether the host only has resolvers on loopback, which containers cannot reach.
    pub fn host_dns_is_loopback(&self) -> bool {
        let ns = host_nameservers();
        ns.iter().all(|a| a.is_loopback())
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
            [] => Err(Error::not_found(format!("network {key} not found"))),
            _ => Err(Error::bad_request(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                hits.len()
            ))),
        }
    }

    /// Replace the nftables table with one for the current networks and these ports.
    pub fn rebuild_table(&self, ports: &[nft::PortMap]) -> Result<()> {
        let rules: Vec<_> = self.all().iter().filter_map(|n| n.rec.rules()).collect();
        self.table.rebuild(&rules, ports).map_err(net_err)
    }

    pub(crate) fn hold_ports(&self, id: &str, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.to_string())
                .or_default()
                .extend(fds);
        }
    }

    pub(crate) fn drop_ports(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Start a userland proxy for a published port on the socket `fd` (bound, listening for
    /// TCP); it gets the socket as fd 3 and outlives a restart of the daemon.
    pub(crate) fn spawn_proxy(
        &self,
        id: &str,
        proto: nft::Proto,
        fd: OwnedFd,
        target: SocketAddr,
    ) -> Result<u32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let raw = fd.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["userland-proxy", proto.as_str(), &target.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec only dup2, which is async-signal-safe, runs; it puts
        // the socket on fd 3 without close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, berth_network::proxy::LISTEN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::internal(format!("starting userland-proxy: {e}")))?;
        drop(fd);
        let pid = child.id();
        self.proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .push(child);
        Ok(pid)
    }

    /// Stop a container's userland proxies: those this process started are killed and reaped,
    /// others (started before a restart) are killed by pid once their command line proves
    /// they are a berth proxy for the port.
    pub(crate) fn stop_proxies(&self, id: &str, ports: &[crate::container::Published]) {
        let mine = self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .unwrap_or_default();
        let mine_pids: Vec<u32> = mine.iter().map(|c| c.id()).collect();
        for mut c in mine {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in ports {
            if p.proxy_pid == 0 || mine_pids.contains(&p.proxy_pid) {
                continue;
            }
            if proxy_alive(p) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.proxy_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Whether the recorded proxy of a port still runs (its pid is a berth userland-proxy for
/// that container address).
pub(crate) fn proxy_alive(p: &crate::container::Published) -> bool {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.proxy_pid)).unwrap_or_default();
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    text.contains("userland-proxy")
        && text.contains(&format!("{}:{}", p.container_ip, p.container_port))
}

impl Networks {
    /// `POST /networks/create`.
    pub async fn create(&self, req: berth_api::network::CreateRequest) -> Result<(String, String)> {
        let _admin = self.admin.lock().await;
        let name = req.name.clone();
        // dockerd takes any name that is not blank (`test 01` included).
        if name.trim().is_empty() {
            return Err(Error::bad_request(format!("invalid name: {name}")));
        }
        crate::names::check_len("network", &name)?;
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(Error(ApiError::new(
                    403,
                    format!("only one instance of \"{}\" network is allowed", req.driver),
                )))
            }
            other => {
                return Err(Error::not_found(format!(
                    "plugin \"{other}\" not found: berth supports the bridge driver"
                )))
            }
        }
        if self.map().values().any(|n| n.rec.name == name) {
            return Err(Error::conflict(format!(
                "network with name {name} already exists"
            )));
        }
        if !matches!(req.scope.as_str(), "" | "local") {
            return Err(Error(ApiError::new(
                403,
                format!(
                    "cannot create a {} scoped network: berth networks are local (and this node is not in a swarm)",
                    req.scope
                ),
            )));
        }
        if req.ingress {
            return Err(Error(ApiError::new(
                403,
                "ingress networks are swarm networks: this node is not in a swarm",
            )));
        }
        let config_from = req
            .config_from
            .as_ref()
            .and_then(|v| v.get("Network"))
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty());
        if req.config_only || config_from {
            return Err(Error::bad_request(
                "configuration-only networks (--config-only, --config-from) are not supported by berth",
            ));
        }
        let enable_ipv4 = req.enable_ipv4.unwrap_or(true);
        if !enable_ipv4 && req.enable_ipv6 != Some(true) {
            return Err(Error::bad_request(
                "a network needs IPv4 or IPv6: --ipv4=false needs --ipv6",
            ));
        }
        let ipam = req.ipam.clone().unwrap_or_default();
        if !matches!(ipam.driver.as_str(), "" | "default") {
            return Err(Error::not_found(format!(
                "plugin \"{}\" not found: berth supports the default IPAM driver",
                ipam.driver
            )));
        }
        let id = crate::util::random_id()?;
        let opts = req.options.clone().unwrap_or_default();
        let bridge = match opts.get("com.docker.network.bridge.name") {
            Some(b) => {
                if b.is_empty()
                    || b.len() > 15
                    || !b
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
                {
                    return Err(Error::bad_request(format!("invalid bridge name {b:?}")));
                }
                if self.map().values().any(|n| &n.rec.bridge == b) {
                    return Err(Error::conflict(format!(
                        "bridge name {b} is used by another network"
                    )));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let bool_opt = |k: &str, default: bool| -> Result<bool> {
            match opts.get(k) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::bad_request(format!("invalid value {v:?} for option {k}"))),
            }
        };
        let icc = bool_opt("com.docker.network.bridge.enable_icc", true)?;
        let mtu = match opts.get("com.docker.network.driver.mtu") {
            None => self.cfg.mtu,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| Error::bad_request(format!("invalid mtu {v:?}")))?,
        };
        let configs = ipam.config.clone().unwrap_or_default();
        // Each configuration is IPv4 or IPv6 by its subnet (or, without one, its gateway).
        let is_v6 = |c: &berth_api::network::IpamConfig| {
            let probe = if c.subnet.is_empty() {
                &c.gateway
            } else {
                &c.subnet
            };
            probe.contains(':')
        };
        let (v6_confs, v4_confs): (Vec<_>, Vec<_>) = configs.iter().partition(|c| is_v6(c));
        if !enable_ipv4 && !v4_confs.is_empty() {
            return Err(Error::bad_request(
                "an IPv4 subnet was given for a network without IPv4 (--ipv4=false)",
            ));
        }
        if v4_confs.len() > 1 || v6_confs.len() > 1 {
            return Err(Error::bad_request(
                "berth networks take one IPv4 and one IPv6 subnet (one --subnet of each family)",
            ));
        }
        let enable_ipv6 = req.enable_ipv6.unwrap_or(false);
        if !v6_confs.is_empty() && !enable_ipv6 {
            return Err(Error::bad_request(
                "an IPv6 subnet needs an IPv6 network: add --ipv6 (EnableIPv6)",
            ));
        }
        let ours: Vec<Subnet> = self.all().iter().filter_map(|n| n.rec.subnet()).collect();
        let host: Vec<Subnet> = self
            .link
            .host_ipv4_nets()
            .await
            .map_err(net_err)?
            .into_iter()
            .map(|(a, p)| Subnet::containing(a, p))
            .collect();
        let conf = v4_confs.first().copied();
        let v4 = if enable_ipv4 {
            let subnet = match conf.filter(|c| !c.subnet.is_empty()) {
                Some(c) => {
                    let s: Subnet = c.subnet.parse().map_err(net_err)?;
                    if ours.iter().any(|o| o.overlaps(&s)) {
                        return Err(Error(ApiError::new(
                        403,
                        format!("invalid pool request: Pool overlaps with other one on this address space ({s})"),
                    )));
                    }
                    s
                }
                None => {
                    if conf.is_some_and(|c| !c.gateway.is_empty() || !c.ip_range.is_empty()) {
                        return Err(Error::bad_request(
                            "a gateway or ip-range needs a subnet (--subnet)",
                        ));
                    }
                    let taken: Vec<Subnet> = ours.iter().chain(host.iter()).copied().collect();
                    self.pools4()?
                    .into_iter()
                    .find_map(|(space, size)| pick_subnet(space, size, &taken))
                    .ok_or_else(|| {
                        let shown: Vec<String> = taken.iter().map(|t| t.to_string()).collect();
                        tracing::warn!("no free subnet in the address pools; taken: {}", shown.join(" "));
                        Error::internal(
                            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                        )
                    })?
                }
            };
            let gateway = match conf.map(|c| c.gateway.as_str()).filter(|g| !g.is_empty()) {
                Some(g) => g
                    .parse::<Ipv4Addr>()
                    .map_err(|_| Error::bad_request(format!("invalid gateway address {g:?}")))?,
                None => subnet.first_host(),
            };
            Some((subnet, gateway))
        } else {
            None
        };
        let ip_range = conf.map(|c| c.ip_range.clone()).unwrap_or_default();
        let conf6 = v6_confs.first().copied();
        let (subnet6, gateway6, ip_range6) = if enable_ipv6 {
            let s6 = match conf6.filter(|c| !c.subnet.is_empty()) {
                Some(c) => c.subnet.parse::<Subnet6>().map_err(net_err)?,
                None => {
                    if conf6.is_some() {
                        return Err(Error::bad_request(
                            "an IPv6 gateway or ip-range needs an IPv6 subnet (--subnet)",
                        ));
                    }
                    self.pick_subnet6(&id)?
                }
            };
            if let Some(o) = self
                .all()
                .iter()
                .filter_map(|n| n.rec.subnet6())
                .find(|o| o.overlaps(&s6))
            {
                return Err(Error(ApiError::new(
                    403,
                    format!("invalid pool request: Pool overlaps with other one on this address space ({s6} and {o})"),
                )));
            }
            let gw6 = match conf6.map(|c| c.gateway.as_str()).filter(|g| !g.is_empty()) {
                Some(g) => g
                    .parse::<Ipv6Addr>()
                    .map_err(|_| Error::bad_request(format!("invalid gateway address {g:?}")))?,
                None => s6.first_host(),
            };
            (
                s6.to_string(),
                gw6.to_string(),
                conf6.map(|c| c.ip_range.clone()).unwrap_or_default(),
            )
        } else {
            (String::new(), String::new(), String::new())
        };
        let aux_addresses: BTreeMap<String, String> = configs
            .iter()
            .flat_map(|c| c.auxiliary_addresses.clone().unwrap_or_default())
            .collect();
        let rec = NetworkRecord {
            id: id.clone(),
            name,
            driver: "bridge".into(),
            created: berth_api::timefmt::now(),
            internal: req.internal,
            attachable: req.attachable,
            subnet: v4.map(|(s, _)| s.to_string()).unwrap_or_default(),
            gateway: v4.map(|(_, g)| g.to_string()).unwrap_or_default(),
            ip_range,
            bridge,
            icc,
            mtu,
            labels: req.labels.clone().unwrap_or_default(),
            options: opts,
            predefined: false,
            enable_ipv4,
            enable_ipv6,
            subnet6,
            gateway6,
            ip_range6,
            aux_addresses,
            ipam_options: ipam.options.clone().unwrap_or_default(),
        };
        // Validates the gateway and range against the subnet.
        let n = Arc::new(Network::new(rec)?);
        if let Err(e) = self.bring_up(&n).await {
            let _ = self.link.delete_link(&n.rec.bridge).await;
            return Err(e);
        }
        let added = match n.rec.rules() {
            Some(r) => self.table.add_network(&r).map_err(net_err),
            None => Ok(()),
        };
        if let Err(e) = added.and_then(|()| self.save(&n.rec)) {
            if let Some(r) = n.rec.rules() {
                let _ = self.table.remove_network(&r);
            }
            *n.dns.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let _ = self.link.delete_link(&n.rec.bridge).await;
            return Err(e);
        }
        self.map().insert(id.clone(), n.clone());
        Ok((id, String::new()))
    }

    /// Where user networks get an IPv4 subnet when none is given: the daemon's
    /// `default-address-pools` (base and size), else /24s of [`USER_SPACE`].
    fn pools4(&self) -> Result<Vec<(Subnet, u8)>> {
        let mut out = Vec::new();
        for p in &self.cfg.address_pools {
            if let Ok(base) = p.base.parse::<Subnet>() {
                out.push((base, p.size));
            }
        }
        if out.is_empty() {
            out.push((USER_SPACE.parse().map_err(net_err)?, 24));
        }
        Ok(out)
    }

    /// An IPv6 subnet for an IPv6 network created without one: from the IPv6 entries of
    /// `default-address-pools`, else a unique local /64 (fd00::/8) derived from the id.
    fn pick_subnet6(&self, id: &str) -> Result<Subnet6> {
        let taken: Vec<Subnet6> = self.all().iter().filter_map(|n| n.rec.subnet6()).collect();
        let v6_pools: Vec<(Subnet6, u8)> = self
            .cfg
            .address_pools
            .iter()
            .filter_map(|p| Some((p.base.parse::<Subnet6>().ok()?, p.size)))
            .collect();
        if v6_pools.is_empty() {
            let global = u64::from_str_radix(id.get(..10).unwrap_or("0"), 16)
                .map_err(|_| Error::internal("network id is not hex"))?;
            let addr = (0xfdu128 << 120) | (u128::from(global) << 80);
            return Subnet6::new(Ipv6Addr::from(addr), 64).map_err(net_err);
        }
        for (base, size) in v6_pools {
            // At most a few thousand candidates per pool are looked at.
            for n in 0..4096u128 {
                let Some(s) = base.nth(size, n) else { break };
                if !taken.iter().any(|t| t.overlaps(&s)) {
                    return Ok(s);
                }
            }
        }
        Err(Error::internal(
            "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network",
        ))
    }

    /// `DELETE /networks/{id}`: `in_use` says whether a running container is on it.
    pub async fn remove(&self, n: &Arc<Network>, in_use: bool) -> Result<()> {
        let _admin = self.admin.lock().await;
        if n.rec.predefined {
            return Err(Error(ApiError::new(
                403,
                format!(
                    "{} is a pre-defined network and cannot be removed",
                    n.rec.name
                ),
            )));
        }
        if in_use {
            return Err(Error(ApiError::new(
                403,
                format!(
                    "error while removing network: network {} id {} has active endpoints",
                    n.rec.name, n.rec.id
                ),
            )));
        }
        if !self.map().contains_key(&n.rec.id) {
            return Err(Error::not_found(format!("network {} not found", n.rec.id)));
        }
        *n.dns.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(r) = n.rec.rules() {
            if let Err(e) = self.table.remove_network(&r) {
                tracing::warn!(
                    "network {}: removing its nftables elements: {e}",
                    n.rec.name
                );
            }
        }
        self.link
            .delete_link(&n.rec.bridge)
            .await
            .map_err(net_err)?;
        berth_network::iptables::forget_bridge(&n.rec.bridge);
        match std::fs::remove_file(self.dir.join(format!("{}.json", n.rec.id))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.map().remove(&n.rec.id);
        Ok(())
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
