//! Daemon settings: dockerd-style flags merged over a JSON config file (/etc/berth/daemon.json). A
//! leaf: it imports no other module of the daemon; it only reads the flags and the file, and opens
//! no service or store.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Daemon socket(s) to listen on: unix://PATH or tcp://HOST:PORT
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Root directory of persistent state
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Root directory of execution state (sockets, runtime state)
    #[arg(long)]
    pub exec_root: Option<PathBuf>,
    /// Daemon configuration file
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    pub config_file: PathBuf,
    /// Path of the daemon's PID file
    #[arg(short = 'p', long)]
    pub pidfile: Option<PathBuf>,
    /// Log level: debug, info, warn, error
    #[arg(short = 'l', long)]
    pub log_level: Option<String>,
    /// Parent cgroup of all containers
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Name of the default bridge (created if missing)
    #[arg(short = 'b', long)]
    pub bridge: Option<String>,
    /// Address and prefix of the default bridge (its gateway), e.g. 10.222.0.1/16
    #[arg(long)]
    pub bip: Option<String>,
    /// Subrange of the default bridge's subnet for container addresses
    #[arg(long)]
    pub fixed_cidr: Option<String>,
    /// MTU of container interfaces
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Make the default bridge an IPv6 network too (needs --fixed-cidr-v6)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipv6: Option<bool>,
    /// IPv6 subnet of the default bridge, e.g. fd00:1::/64
    #[arg(long)]
    pub fixed_cidr_v6: Option<String>,
    /// Where networks created without a subnet get one: base=CIDR,size=PREFIX (repeatable)
    #[arg(long = "default-address-pool")]
    pub default_address_pools: Vec<String>,
    /// Address `host-gateway` stands for in --add-host (default: the default bridge's gateway)
    #[arg(long)]
    pub host_gateway_ip: Option<String>,
    /// Allow traffic between containers on the default bridge
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub icc: Option<bool>,
    /// Enable IPv4 forwarding on the host
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ip_forward: Option<bool>,
    /// Serve published ports on loopback through a proxy process instead of NAT
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub userland_proxy: Option<bool>,
    /// DNS servers containers use (and the embedded DNS forwards to)
    #[arg(long)]
    pub dns: Vec<String>,
    /// Registries reached over plain HTTP (host[:port] or CIDR)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Mirrors tried before Docker Hub (URL)
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Layers downloaded at once per pull
    #[arg(long)]
    pub max_concurrent_downloads: Option<usize>,
    /// Use TLS on TCP sockets; implied by --tlsverify (`--tls=false` allows plain TCP on
    /// addresses other than loopback)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls: Option<bool>,
    /// Use TLS and accept only clients with a certificate signed by --tlscacert
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tlsverify: Option<bool>,
    /// Trust certs signed only by this CA (default ~/.docker/ca.pem)
    #[arg(long)]
    pub tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file (default ~/.docker/cert.pem)
    #[arg(long)]
    pub tlscert: Option<PathBuf>,
    /// Path to TLS key file (default ~/.docker/key.pem)
    #[arg(long)]
    pub tlskey: Option<PathBuf>,
    /// Origins allowed to make cross-origin requests (comma-separated, or `*`); requests with
    /// any other `Origin` header are refused
    #[arg(long)]
    pub api_cors_header: Option<String>,
    /// Group that owns the unix socket (default `berth`; root only if it does not exist)
    #[arg(short = 'G', long)]
    pub group: Option<String>,
    /// Run containers in user namespaces mapped to the subordinate ids of this user
    /// (`default` for berthremap, `user` or `user:group`)
    #[arg(long)]
    pub userns_remap: Option<String>,
}

/// The daemon.json keys berth implements; like dockerd, any other key is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
struct FileConfig {
    hosts: Vec<String>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    log_level: Option<String>,
    log_opts: std::collections::BTreeMap<String, String>,
    cgroup_parent: Option<String>,
    bridge: Option<String>,
    bip: Option<String>,
    fixed_cidr: Option<String>,
    mtu: Option<u32>,
    ipv6: Option<bool>,
    fixed_cidr_v6: Option<String>,
    default_address_pools: Vec<AddressPool>,
    host_gateway_ip: Option<String>,
    icc: Option<bool>,
    ip_forward: Option<bool>,
    userland_proxy: Option<bool>,
    dns: Vec<String>,
    insecure_registries: Vec<String>,
    registry_mirrors: Vec<String>,
    /// Mirrors of any registry: host → mirror URLs (berth's extension of registry-mirrors,
    /// which only covers Docker Hub).
    registry_mirrors_for: std::collections::BTreeMap<String, Vec<String>>,
    max_concurrent_downloads: Option<usize>,
    tls: Option<bool>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    api_cors_header: Option<String>,
    group: Option<String>,
    userns_remap: Option<String>,
}

/// TLS on the TCP listeners: the server's certificate and key, and the CA whose certificates
/// clients must present (`--tlsverify`).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Where the API listens and who may use it.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// None: plain TCP (allowed on loopback with a warning, elsewhere only with `--tls=false`).
    pub tls: Option<TlsConfig>,
    /// `--tls=false` or `--tlsverify=false` was given explicitly.
    pub tls_disabled: bool,
    /// Origins allowed in cross-origin requests (`*` for any); empty refuses them all.
    pub cors_origins: Vec<String>,
    /// Group of the unix socket.
    pub group: String,
}

pub use berth_network::config::{AddressPool, NetConfig};

/// The default bridge's gateway: clear of Docker's 172.17.0.0/16 and Podman's 10.88.0.0/16.
const DEFAULT_BIP: &str = "10.222.0.1/16";

fn parse_bip(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let bad = || format!("invalid bip {s:?}: want an address with a prefix, e.g. {DEFAULT_BIP}");
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&prefix) {
        return Err(bad());
    }
    Ok((addr, prefix))
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub log_level: String,
    /// Default json-file options (max-size, max-file).
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// Cgroup under which every container's cgroup is made.
    pub cgroup_parent: String,
    pub net: NetConfig,
    pub insecure_registries: Vec<String>,
    /// Mirrors by registry host (`docker.io` for `registry-mirrors`).
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    pub max_concurrent_downloads: usize,
    pub api: ApiConfig,
    /// `--userns-remap` as given (resolved at start, see `crate::userns`).
    pub userns_remap: Option<String>,
}

impl DaemonConfig {
    pub fn load(args: DaemonArgs) -> Result<DaemonConfig, String> {
        let file: FileConfig = match std::fs::read(&args.config_file) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: {e}", args.config_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => return Err(format!("{}: {e}", args.config_file.display())),
        };
        let data_root = args
            .data_root
            .or(file.data_root)
            .unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
        let exec_root = args
            .exec_root
            .or(file.exec_root)
            .unwrap_or_else(|| PathBuf::from("/run/berth"));
        let mut hosts = if args.hosts.is_empty() {
            file.hosts
        } else {
            args.hosts
        };
        if hosts.is_empty() {
            hosts.push(format!("unix://{}", exec_root.join("berth.sock").display()));
        }
        let bridge = args
            .bridge
            .or(file.bridge)
            .unwrap_or_else(|| "berth0".into());
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!("invalid bridge name {bridge:?}"));
        }
        let bip = parse_bip(
            args.bip
                .as_deref()
                .or(file.bip.as_deref())
                .unwrap_or(DEFAULT_BIP),
        )?;
        let dns_list = if args.dns.is_empty() {
            file.dns
        } else {
            args.dns
        };
        let dns = dns_list
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("invalid dns address {s:?}: want an IPv4 address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mtu = args.mtu.or(file.mtu).unwrap_or(1500);
        if !(68..=65535).contains(&mtu) {
            return Err(format!("invalid mtu {mtu}"));
        }
        let ipv6 = args.ipv6.or(file.ipv6).unwrap_or(false);
        let fixed_cidr_v6 = match args.fixed_cidr_v6.or(file.fixed_cidr_v6) {
            Some(s) => Some(
                s.parse::<berth_network::ipam6::Subnet6>()
                    .map_err(|e| format!("fixed-cidr-v6: {e}"))?,
            ),
            None => None,
        };
        if ipv6 && fixed_cidr_v6.is_none() {
            return Err("ipv6 needs fixed-cidr-v6 (the default bridge's IPv6 subnet)".into());
        }
        let address_pools = if args.default_address_pools.is_empty() {
            file.default_address_pools
        } else {
            args.default_address_pools
                .iter()
                .map(|s| AddressPool::parse_flag(s))
                .collect::<Result<Vec<_>, _>>()?
        };
        for p in &address_pools {
            p.check()?;
        }
        let host_gateway_ip = match args.host_gateway_ip.or(file.host_gateway_ip) {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| format!("invalid host-gateway-ip {s:?}: want an IP address"))?,
            ),
            None => None,
        };
        let net = NetConfig {
            bridge,
            bip,
            fixed_cidr: args.fixed_cidr.or(file.fixed_cidr),
            mtu,
            icc: args.icc.or(file.icc).unwrap_or(true),
            ip_forward: args.ip_forward.or(file.ip_forward).unwrap_or(true),
            userland_proxy: args.userland_proxy.or(file.userland_proxy).unwrap_or(false),
            dns,
            ipv6,
            fixed_cidr_v6,
            address_pools,
            host_gateway_ip,
        };
        let mut mirrors = file.registry_mirrors_for;
        let hub: Vec<String> = if args.registry_mirrors.is_empty() {
            file.registry_mirrors
        } else {
            args.registry_mirrors
        };
        if !hub.is_empty() {
            mirrors.insert("docker.io".into(), hub);
        }
        let max_concurrent_downloads = args
            .max_concurrent_downloads
            .or(file.max_concurrent_downloads)
            .unwrap_or(3);
        if max_concurrent_downloads == 0 {
            return Err("max-concurrent-downloads must be at least 1".into());
        }
        let tlsverify = args.tlsverify.or(file.tlsverify);
        let tls_flag = args.tls.or(file.tls);
        let tls_on = tlsverify == Some(true) || tls_flag == Some(true);
        let dir = berth_api::tls::cert_dir();
        let tls = tls_on.then(|| TlsConfig {
            cert: args
                .tlscert
                .or(file.tlscert)
                .unwrap_or_else(|| dir.join("cert.pem")),
            key: args
                .tlskey
                .or(file.tlskey)
                .unwrap_or_else(|| dir.join("key.pem")),
            client_ca: (tlsverify == Some(true)).then(|| {
                args.tlscacert
                    .or(file.tlscacert)
                    .unwrap_or_else(|| dir.join("ca.pem"))
            }),
        });
        let cors_origins = args
            .api_cors_header
            .or(file.api_cors_header)
            .map(|s| {
                s.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let api = ApiConfig {
            tls,
            tls_disabled: !tls_on && (tls_flag == Some(false) || tlsverify == Some(false)),
            cors_origins,
            group: args.group.or(file.group).unwrap_or_else(|| "berth".into()),
        };
        Ok(DaemonConfig {
            api,
            userns_remap: args
                .userns_remap
                .or(file.userns_remap)
                .filter(|s| !s.is_empty()),
            insecure_registries: if args.insecure_registries.is_empty() {
                file.insecure_registries
            } else {
                args.insecure_registries
            },
            mirrors,
            max_concurrent_downloads,
            net,
            hosts,
            pidfile: args
                .pidfile
                .or(file.pidfile)
                .unwrap_or_else(|| exec_root.join("berth.pid")),
            data_root,
            exec_root,
            log_level: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            log_opts: file.log_opts,
            cgroup_parent: args
                .cgroup_parent
                .or(file.cgroup_parent)
                .unwrap_or_else(|| "berth".into())
                .trim_matches('/')
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DaemonArgs,
    }

    fn try_load(file: &str, flags: &[&str]) -> Result<DaemonConfig, String> {
        // One file per call: the tests run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("berth-config-test-{}-{k}.json", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let argv = ["berth", "--config-file", path.to_str().unwrap()]
            .into_iter()
            .chain(flags.iter().copied());
        let cfg = DaemonConfig::load(Cli::parse_from(argv).args);
        std::fs::remove_file(&path).unwrap();
        cfg
    }

    fn load(file: &str, flags: &[&str]) -> DaemonConfig {
        try_load(file, flags).unwrap()
    }

    #[test]
    fn ipv6_address_pools_and_host_gateway_ip() {
        let cfg = load(
            r#"{"ipv6": true, "fixed-cidr-v6": "fd00:1::/64",
                "default-address-pools": [{"base": "10.10.0.0/16", "size": 24},
                                          {"base": "fd00:2::/48", "size": 64}],
                "host-gateway-ip": "192.0.2.1"}"#,
            &[],
        );
        assert!(cfg.net.ipv6);
        assert_eq!(cfg.net.fixed_cidr_v6.unwrap().to_string(), "fd00:1::/64");
        assert_eq!(cfg.net.address_pools.len(), 2);
        assert_eq!(cfg.net.host_gateway_ip, Some("192.0.2.1".parse().unwrap()));
        let cfg = load(
            "{}",
            &["--default-address-pool", "base=10.11.0.0/16,size=26"],
        );
        assert_eq!(cfg.net.address_pools[0].base, "10.11.0.0/16");
        assert_eq!(cfg.net.address_pools[0].size, 26);
        for (file, flags) in [
            (r#"{"ipv6": true}"#, &[][..]),
            ("{}", &["--fixed-cidr-v6", "fd00:1::1/64"][..]),
            ("{}", &["--default-address-pool", "base=10.11.0.0/16"][..]),
            (
                "{}",
                &["--default-address-pool", "base=10.11.0.0/16,size=8"][..],
            ),
            ("{}", &["--host-gateway-ip", "gw"][..]),
        ] {
            assert!(try_load(file, flags).is_err(), "{file} {flags:?}");
        }
    }

    #[test]
    fn userns_remap_from_file_or_flag() {
        assert_eq!(load("{}", &[]).userns_remap, None);
        let cfg = load(r#"{"userns-remap": "default"}"#, &[]);
        assert_eq!(cfg.userns_remap.as_deref(), Some("default"));
        let cfg = load(
            r#"{"userns-remap": "default"}"#,
            &["--userns-remap", "alice:staff"],
        );
        assert_eq!(cfg.userns_remap.as_deref(), Some("alice:staff"));
    }
}
