//! Daemon settings: dockerd-style flags merged over a JSON config file (/etc/berth/daemon.json).

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
        Ok(DaemonConfig {
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
