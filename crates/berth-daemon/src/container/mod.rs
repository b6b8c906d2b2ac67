//! The container service: the persisted record, live handles, and the operations on containers
//! (create, start, stop, exec, attach, logs, update...). It drives the image store, the network
//! and volume services and the shims it is given; it never reaches the API routes or the daemon.

pub mod archive;
pub mod bundle;
pub mod control;
pub mod exec;
pub mod handle;
pub mod health;
pub mod host;
pub mod lifecycle;
pub mod limits;
pub mod logs;
pub mod network;
pub mod process;
pub mod restore;
pub mod rootfs;
pub mod service;
pub mod settings;
pub mod shim;
pub mod spec;
pub mod validate;
pub mod volumes;

use berth_api::container::{Config, HostConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Container status strings as the Engine API spells them.
pub mod status {
    pub const CREATED: &str = "created";
    pub const RUNNING: &str = "running";
    pub const PAUSED: &str = "paused";
    pub const RESTARTING: &str = "restarting";
    pub const EXITED: &str = "exited";
    pub const DEAD: &str = "dead";
}

/// What is persisted in `containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// With the leading '/'.
    pub name: String,
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    pub config: Config,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub state: StateRecord,
    #[serde(default)]
    pub restart_count: i64,
    /// Endpoints on networks and published ports.
    #[serde(default)]
    pub net: NetState,
    /// Volumes, binds and `--mount` tmpfs mounts, worked out at create.
    #[serde(default)]
    pub mounts: Vec<berth_volume::MountPoint>,
    /// Set while the create is still filling volumes from the image: a container found so at
    /// boot never finished its create (the daemon died during the copy) and is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// A build's RUN container: one that a daemon crash left behind is removed at boot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build: bool,
    /// A swarm task's container, made by the swarm executor (moby's `Managed`): what
    /// `is-task` filters on and the agent adopts or removes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    /// Under `--userns-remap`: the host uid and gid of the container's root when it was made,
    /// which its upper dir's files are owned by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remapped_root: Option<(u32, u32)>,
}

/// A container's networking as it asked for it: its endpoint on each network it is connected
/// to (kept while stopped, as Docker does). What they get while running (addresses, ports)
/// is the network service's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetState {
    /// By network name.
    pub endpoints: std::collections::BTreeMap<String, EndpointConfig>,
}

/// What a container asked of its endpoint on one network (the network service's type).
pub use berth_network::endpoint::EndpointConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateRecord {
    pub status: String,
    pub pid: i32,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
    /// Stopped or killed by the user: restart policies leave it down.
    #[serde(default)]
    pub manually_stopped: bool,
    /// The health check's state, once a health check has run for this container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<berth_api::container::Health>,
}

impl Record {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
    pub fn is_running(&self) -> bool {
        matches!(
            self.state.status.as_str(),
            status::RUNNING | status::PAUSED | status::RESTARTING
        )
    }
    pub fn bare_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }
}

/// Where a container's files live.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub run_dir: PathBuf,
}

impl Paths {
    pub fn new(data_root: &Path, exec_root: &Path, id: &str) -> Paths {
        Paths {
            dir: data_root.join("containers").join(id),
            run_dir: exec_root.join("c").join(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!(
            "{}-json.log",
            self.dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
    }
    /// The log file of a log driver: json-file's beside the record, local's in its directory.
    pub fn log_of(&self, driver: &str) -> PathBuf {
        match driver {
            "local" => self
                .dir
                .join(berth_api::locallog::DIR)
                .join(berth_api::locallog::FILE),
            _ => self.log(),
        }
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    // What follows exists only while the container runs, on the exec root (a tmpfs): it is
    // made again at every start, and creating files there costs far less than on disk.
    pub fn exit_file(&self) -> PathBuf {
        self.run_dir.join("exit.json")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.run_dir.join("rootfs")
    }
    pub fn hostname(&self) -> PathBuf {
        self.run_dir.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.run_dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.run_dir.join("resolv.conf")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("shim.sock")
    }
}
