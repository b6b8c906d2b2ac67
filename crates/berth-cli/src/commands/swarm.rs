//! `swarm init|join|join-token|leave|update|unlock|unlock-key|ca`: this engine's swarm
//! membership and the swarm's settings, printing what the docker CLI prints (the join
//! command with its token, the unlock key text).

use crate::client::{enc, Client};
use berth_api::swarm::{Swarm, SwarmInitRequest, SwarmJoinRequest, SwarmSpec};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Display and rotate the root CA
    Ca(CaArgs),
    /// Initialize a swarm
    Init(InitArgs),
    /// Join a swarm as a node and/or manager
    Join(JoinArgs),
    /// Manage join tokens
    JoinToken(JoinTokenArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
    /// Unlock swarm
    Unlock,
    /// Manage the unlock key
    UnlockKey(UnlockKeyArgs),
    /// Update the swarm
    Update(UpdateArgs),
}

/// Settings `init` and `update` share.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Validity period for node certificates (ns|us|ms|s|m|h) (default 2160h0m0s)
    #[arg(long = "cert-expiry")]
    pub cert_expiry: Option<String>,
    /// Dispatcher heartbeat period (ns|us|ms|s|m|h) (default 5s)
    #[arg(long = "dispatcher-heartbeat")]
    pub dispatcher_heartbeat: Option<String>,
    /// Specifications of one or more certificate signing endpoints
    #[arg(long = "external-ca")]
    pub external_ca: Vec<String>,
    /// Number of additional Raft snapshots to retain
    #[arg(long = "max-snapshots")]
    pub max_snapshots: Option<u64>,
    /// Number of log entries between Raft snapshots (default 10000)
    #[arg(long = "snapshot-interval")]
    pub snapshot_interval: Option<u64>,
    /// Task history retention limit (default 5)
    #[arg(long = "task-history-limit", allow_negative_numbers = true)]
    pub task_history_limit: Option<i64>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long = "advertise-addr")]
    pub advertise_addr: Option<String>,
    /// Enable manager autolocking (requiring an unlock key to start a stopped manager)
    #[arg(long)]
    pub autolock: bool,
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long)]
    pub availability: Option<String>,
    /// Address or interface to use for data path traffic (format: "<ip|interface>")
    #[arg(long = "data-path-addr")]
    pub data_path_addr: Option<String>,
    /// Port number to use for data path traffic (1024 - 49151). If no value is set or is set to 0, the default port (4789) is used.
    #[arg(long = "data-path-port")]
    pub data_path_port: Option<u32>,
    /// default address pool in CIDR format
    #[arg(long = "default-addr-pool", value_delimiter = ',')]
    pub default_addr_pool: Vec<String>,
    /// default address pool subnet mask length (default 24)
    #[arg(long = "default-addr-pool-mask-length")]
    pub default_addr_pool_mask_length: Option<u32>,
    /// Force create a new cluster from current state
    #[arg(long = "force-new-cluster")]
    pub force_new_cluster: bool,
    /// Listen address (format: "<ip|interface>[:port]") (default 0.0.0.0:2377)
    #[arg(long = "listen-addr")]
    pub listen_addr: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long = "advertise-addr")]
    pub advertise_addr: Option<String>,
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long)]
    pub availability: Option<String>,
    /// Address or interface to use for data path traffic (format: "<ip|interface>")
    #[arg(long = "data-path-addr")]
    pub data_path_addr: Option<String>,
    /// Listen address (format: "<ip|interface>[:port]") (default 0.0.0.0:2377)
    #[arg(long = "listen-addr")]
    pub listen_addr: Option<String>,
    /// Token for entry into the swarm
    #[arg(long)]
    pub token: Option<String>,
    #[arg(value_name = "HOST:PORT")]
    pub remote: String,
}

#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// Only display token
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate join token
    #[arg(long)]
    pub rotate: bool,
    #[arg(value_name = "worker|manager")]
    pub role: String,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// Force this node to leave the swarm, ignoring warnings
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UnlockKeyArgs {
    /// Only display token
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate unlock key
    #[arg(long)]
    pub rotate: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Change manager autolocking setting (true|false)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub autolock: Option<bool>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Path to the PEM-formatted root CA certificate to use for the new cluster
    #[arg(long = "ca-cert")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Path to the PEM-formatted root CA key to use for the new cluster
    #[arg(long = "ca-key")]
    pub ca_key: Option<std::path::PathBuf>,
    /// Validity period for node certificates (ns|us|ms|s|m|h) (default 2160h0m0s)
    #[arg(long = "cert-expiry")]
    pub cert_expiry: Option<String>,
    /// Exit immediately instead of waiting for the root rotation to converge
    #[arg(short, long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: bool,
    /// Specifications of one or more certificate signing endpoints
    #[arg(long = "external-ca")]
    pub external_ca: Vec<String>,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate the swarm CA - if no certificate or key are provided, new ones will be generated
    #[arg(long)]
    pub rotate: bool,
}

pub async fn dispatch(c: &Client, cmd: SwarmCommand) -> i32 {
    let r = match cmd {
        SwarmCommand::Ca(a) => ca(c, a).await,
        SwarmCommand::Init(a) => init(c, a).await,
        SwarmCommand::Join(a) => join(c, a).await,
        SwarmCommand::JoinToken(a) => join_token(c, a).await,
        SwarmCommand::Leave(a) => leave(c, a).await,
        SwarmCommand::Unlock => unlock(c).await,
        SwarmCommand::UnlockKey(a) => unlock_key(c, a).await,
        SwarmCommand::Update(a) => update(c, a).await,
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn availability(a: &Option<String>) -> Result<String, String> {
    match a.as_deref().map(str::to_ascii_lowercase) {
        None => Ok(String::new()),
        Some(v) if matches!(v.as_str(), "active" | "pause" | "drain") => Ok(v),
        Some(_) => Err(format!(
            "invalid availability {:?}, only active, pause and drain are supported",
            a.as_deref().unwrap_or_default()
        )),
    }
}

/// `--external-ca protocol=cfssl,url=https://...,cacert=file`.
fn external_ca(value: &str) -> Result<berth_api::swarm::ExternalCa, String> {
    let mut ca = berth_api::swarm::ExternalCa::default();
    for field in value.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
        match k.to_ascii_lowercase().as_str() {
            "protocol" => {
                if !v.eq_ignore_ascii_case("cfssl") {
                    return Err(format!("unrecognized external CA protocol {v}"));
                }
                ca.protocol = "cfssl".into();
            }
            "url" => ca.url = v.to_string(),
            "cacert" => {
                ca.ca_cert = std::fs::read_to_string(v)
                    .map_err(|e| format!("unable to read CA cert for external CA: {e}"))?
            }
            _ => {
                ca.options.insert(k.to_string(), v.to_string());
            }
        }
    }
    if ca.protocol.is_empty() {
        return Err("the external-ca option needs a protocol= parameter".into());
    }
    if ca.url.is_empty() {
        return Err("the external-ca option needs a url= parameter".into());
    }
    Ok(ca)
}

fn flag_duration(flag: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    v.as_deref()
        .map(|s| super::service_opts::duration(flag, s))
        .transpose()
}

impl SpecArgs {
    /// Merge the given settings into `spec`, as the docker CLI does for init and update.
    fn merge(&self, spec: &mut SwarmSpec, trust_root: &str) -> Result<(), String> {
        if let Some(n) = self.task_history_limit {
            spec.orchestration.task_history_retention_limit = Some(n);
        }
        if let Some(d) = flag_duration("--dispatcher-heartbeat", &self.dispatcher_heartbeat)? {
            spec.dispatcher.heartbeat_period = d;
        }
        if let Some(n) = self.max_snapshots {
            spec.raft.keep_old_snapshots = Some(n);
        }
        if let Some(n) = self.snapshot_interval {
            spec.raft.snapshot_interval = n;
        }
        if let Some(d) = flag_duration("--cert-expiry", &self.cert_expiry)? {
            spec.ca_config.node_cert_expiry = d;
        }
        if !self.external_ca.is_empty() {
            let mut cas = Vec::new();
            for e in &self.external_ca {
                let mut ca = external_ca(e)
                    .map_err(|err| super::resources::flag_error("--external-ca", e, &err))?;
                if ca.ca_cert.is_empty() {
                    ca.ca_cert = trust_root.to_string();
                }
                cas.push(ca);
            }
            spec.ca_config.external_cas = cas;
        }
        Ok(())
    }
}

async fn inspect_swarm(c: &Client) -> Result<Swarm, String> {
    let v = c.get("/swarm").await.map_err(|e| e.to_string())?;
    berth_api::decode::from_value(v).map_err(|e| format!("bad answer from daemon: {e}"))
}

/// `POST /swarm/update` with the swarm's current version and `spec`.
async fn post_update(c: &Client, sw: &Swarm, spec: &SwarmSpec, extra: &str) -> Result<(), String> {
    let body = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    c.post(
        &format!("/swarm/update?version={}{extra}", sw.cluster.version.index),
        Some(body),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Print how to join as a worker and/or a manager, as `init` and `join-token` do.
async fn print_join_command(
    c: &Client,
    node_id: &str,
    worker: bool,
    manager: bool,
) -> Result<(), String> {
    let node = c
        .get(&format!("/nodes/{}", enc(node_id)))
        .await
        .map_err(|e| e.to_string())?;
    let sw = inspect_swarm(c).await?;
    let Some(addr) = node["ManagerStatus"]["Addr"].as_str() else {
        return Ok(());
    };
    if worker {
        print!(
            "To add a worker to this swarm, run the following command:\n\n    docker swarm join --token {} {addr}\n\n",
            sw.join_tokens.worker
        );
    }
    if manager {
        print!(
            "To add a manager to this swarm, run the following command:\n\n    docker swarm join --token {} {addr}\n\n",
            sw.join_tokens.manager
        );
    }
    Ok(())
}

fn print_unlock_command(key: &str) {
    if !key.is_empty() {
        print!(
            "To unlock a swarm manager after it restarts, run the `docker swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nRemember to store this key in a password manager, since without it you\nwill not be able to restart the manager.\n"
        );
    }
}

async fn unlock_key_text(c: &Client) -> Result<String, String> {
    let v = c
        .get("/swarm/unlockkey")
        .await
        .map_err(|e| format!("could not fetch unlock key: {e}"))?;
    Ok(v["UnlockKey"].as_str().unwrap_or_default().to_string())
}

async fn init(c: &Client, a: InitArgs) -> Result<(), String> {
    let mut pools = Vec::new();
    for p in &a.default_addr_pool {
        let (ip, len) = p
            .split_once('/')
            .ok_or_else(|| format!("invalid argument {p:?} for \"--default-addr-pool\" flag: invalid CIDR address: {p}"))?;
        let ok = ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok();
        if !ok {
            return Err(format!(
                "invalid argument {p:?} for \"--default-addr-pool\" flag: invalid CIDR address: {p}"
            ));
        }
        pools.push(p.clone());
    }
    let mut spec = SwarmSpec::default();
    a.spec.merge(&mut spec, "")?;
    let req = SwarmInitRequest {
        listen_addr: a
            .listen_addr
            .clone()
            .unwrap_or_else(|| "0.0.0.0:2377".into()),
        advertise_addr: a.advertise_addr.clone().unwrap_or_default(),
        data_path_addr: a.data_path_addr.clone().unwrap_or_default(),
        data_path_port: a.data_path_port.unwrap_or(0),
        force_new_cluster: a.force_new_cluster,
        spec,
        auto_lock_managers: a.autolock,
        availability: availability(&a.availability)?,
        default_addr_pool: pools,
        subnet_size: a.default_addr_pool_mask_length.unwrap_or(24),
    };
    let body = serde_json::to_value(&req).map_err(|e| e.to_string())?;
    let node_id = match c.post("/swarm/init", Some(body)).await {
        Ok(v) => v.as_str().unwrap_or_default().to_string(),
        Err(e) => {
            let m = e.to_string();
            if m.contains("could not choose an IP address to advertise")
                || m.contains("could not find the system's IP address")
            {
                return Err(format!("{m} - specify one with --advertise-addr"));
            }
            return Err(m);
        }
    };
    print!("Swarm initialized: current node ({node_id}) is now a manager.\n\n");
    print_join_command(c, &node_id, true, false).await?;
    println!(
        "To add a manager to this swarm, run 'docker swarm join-token manager' and follow the instructions."
    );
    if a.autolock {
        print_unlock_command(&unlock_key_text(c).await?);
    }
    Ok(())
}

async fn join(c: &Client, a: JoinArgs) -> Result<(), String> {
    let req = SwarmJoinRequest {
        listen_addr: a
            .listen_addr
            .clone()
            .unwrap_or_else(|| "0.0.0.0:2377".into()),
        advertise_addr: a.advertise_addr.clone().unwrap_or_default(),
        data_path_addr: a.data_path_addr.clone().unwrap_or_default(),
        remote_addrs: vec![a.remote.clone()],
        join_token: a.token.clone().unwrap_or_default(),
        availability: availability(&a.availability)?,
    };
    let body = serde_json::to_value(&req).map_err(|e| e.to_string())?;
    c.post("/swarm/join", Some(body))
        .await
        .map_err(|e| e.to_string())?;
    let info = c.get("/info").await.map_err(|e| e.to_string())?;
    if info["Swarm"]["ControlAvailable"].as_bool() == Some(true) {
        println!("This node joined a swarm as a manager.");
    } else {
        println!("This node joined a swarm as a worker.");
    }
    Ok(())
}

async fn join_token(c: &Client, a: JoinTokenArgs) -> Result<(), String> {
    let worker = a.role == "worker";
    let manager = a.role == "manager";
    if !worker && !manager {
        return Err(format!("unknown role {}", a.role));
    }
    if a.rotate {
        let sw = inspect_swarm(c).await?;
        let extra = format!("&rotateWorkerToken={worker}&rotateManagerToken={manager}");
        post_update(c, &sw, &sw.cluster.spec, &extra).await?;
        if !a.quiet {
            print!("Successfully rotated {} join token.\n\n", a.role);
        }
    }
    let sw = inspect_swarm(c).await?;
    if a.quiet {
        println!(
            "{}",
            if worker {
                &sw.join_tokens.worker
            } else {
                &sw.join_tokens.manager
            }
        );
        return Ok(());
    }
    let info = c.get("/info").await.map_err(|e| e.to_string())?;
    let me = info["Swarm"]["NodeID"].as_str().unwrap_or_default();
    print_join_command(c, me, worker, manager).await
}

async fn leave(c: &Client, a: LeaveArgs) -> Result<(), String> {
    c.post(&format!("/swarm/leave?force={}", a.force), None)
        .await
        .map_err(|e| e.to_string())?;
    println!("Node left the swarm.");
    Ok(())
}

async fn update(c: &Client, a: UpdateArgs) -> Result<(), String> {
    let s = &a.spec;
    let given = a.autolock.is_some()
        || s.cert_expiry.is_some()
        || s.dispatcher_heartbeat.is_some()
        || !s.external_ca.is_empty()
        || s.max_snapshots.is_some()
        || s.snapshot_interval.is_some()
        || s.task_history_limit.is_some();
    if !given {
        return Err("\"docker swarm update\" requires at least one flag.\nSee 'docker swarm update --help'.".into());
    }
    let sw = inspect_swarm(c).await?;
    let mut spec = sw.cluster.spec.clone();
    let before = spec.encryption_config.auto_lock_managers;
    a.spec.merge(&mut spec, &sw.cluster.tls_info.trust_root)?;
    if let Some(l) = a.autolock {
        spec.encryption_config.auto_lock_managers = l;
    }
    let after = spec.encryption_config.auto_lock_managers;
    post_update(c, &sw, &spec, "").await?;
    println!("Swarm updated.");
    if after && !before {
        print_unlock_command(&unlock_key_text(c).await?);
    }
    Ok(())
}

async fn unlock_key(c: &Client, a: UnlockKeyArgs) -> Result<(), String> {
    if a.rotate {
        let sw = inspect_swarm(c).await?;
        if !sw.cluster.spec.encryption_config.auto_lock_managers {
            return Err("cannot rotate because autolock is not turned on".into());
        }
        post_update(c, &sw, &sw.cluster.spec, "&rotateManagerUnlockKey=true").await?;
        if !a.quiet {
            println!("Successfully rotated manager unlock key.");
        }
    }
    let key = unlock_key_text(c).await?;
    if key.is_empty() {
        return Err("no unlock key is set".into());
    }
    if a.quiet {
        println!("{key}");
    } else {
        print_unlock_command(&key);
    }
    Ok(())
}

/// The terminal on stdin without echo (for typing the unlock key), restored on drop.
struct NoEcho(Option<nix::sys::termios::Termios>);

impl NoEcho {
    fn enable() -> NoEcho {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        use std::os::fd::AsFd;
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return NoEcho(None);
        };
        let mut t = saved.clone();
        t.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &t);
        NoEcho(Some(saved))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        if let Some(s) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                s,
            );
        }
    }
}

async fn unlock(c: &Client) -> Result<(), String> {
    let info = c.get("/info").await.map_err(|e| e.to_string())?;
    match info["Swarm"]["LocalNodeState"].as_str().unwrap_or_default() {
        "inactive" | "" => return Err("Error: This node is not part of a swarm".into()),
        "locked" => {}
        _ => return Err("Error: swarm is not locked".into()),
    }
    use std::io::{BufRead, Write};
    let tty = crate::stream::is_tty(std::io::stdin());
    if tty {
        print!("Enter unlock key: ");
        let _ = std::io::stdout().flush();
    }
    let key = {
        let _quiet = tty.then(NoEcho::enable);
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line
    };
    if tty {
        println!();
    }
    c.post("/swarm/unlock", Some(json!({ "UnlockKey": key.trim() })))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn ca(c: &Client, a: CaArgs) -> Result<(), String> {
    let sw = inspect_swarm(c).await?;
    if !a.rotate {
        for (given, flag) in [
            (a.ca_cert.is_some(), "ca-cert"),
            (a.ca_key.is_some(), "ca-key"),
            (a.cert_expiry.is_some(), "cert-expiry"),
            (!a.external_ca.is_empty(), "external-ca"),
        ] {
            if given {
                return Err(format!(
                    "`--{flag}` flag requires the `--rotate` flag to update the CA"
                ));
            }
        }
        let root = sw.cluster.tls_info.trust_root.trim();
        if root.is_empty() {
            return Err("no CA information available".into());
        }
        println!("{root}");
        return Ok(());
    }
    if !a.external_ca.is_empty() && a.ca_cert.is_none() {
        return Err("rotating to an external CA requires the `--ca-cert` flag to specify the external CA's cert - to add an external CA with the current root CA certificate, use the `update` command instead".into());
    }
    if a.ca_cert.is_some() && a.external_ca.is_empty() && a.ca_key.is_none() {
        return Err(
            "the --ca-cert flag requires that a --ca-key flag and/or --external-ca flag be provided as well"
                .into(),
        );
    }
    let read = |p: &Option<std::path::PathBuf>| -> Result<String, String> {
        p.as_ref()
            .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let (cert, key) = (read(&a.ca_cert)?, read(&a.ca_key)?);
    let mut spec = sw.cluster.spec.clone();
    let spec_args = SpecArgs {
        cert_expiry: a.cert_expiry.clone(),
        dispatcher_heartbeat: None,
        external_ca: a.external_ca.clone(),
        max_snapshots: None,
        snapshot_interval: None,
        task_history_limit: None,
    };
    spec_args.merge(&mut spec, &cert)?;
    spec.ca_config.signing_ca_cert = cert.clone();
    spec.ca_config.signing_ca_key = key.clone();
    if cert.is_empty() && key.is_empty() {
        spec.ca_config.force_rotate += 1;
    }
    post_update(c, &sw, &spec, "").await?;
    if a.detach {
        return Ok(());
    }
    // Wait for the rotation to finish (every node trusts the new root alone, as the docker
    // CLI's progress waits for), then show the new root.
    loop {
        let now = inspect_swarm(c).await?;
        let nodes = c.get("/nodes").await.map_err(|e| e.to_string())?;
        let want = now.cluster.tls_info.trust_root.as_str();
        let all_trust = nodes.as_array().is_some_and(|ns| {
            ns.iter()
                .all(|n| n["Description"]["TLSInfo"]["TrustRoot"].as_str() == Some(want))
        });
        if !now.cluster.root_rotation_in_progress && all_trust {
            if !a.quiet {
                let root = now.cluster.tls_info.trust_root.trim();
                if root.is_empty() {
                    return Err("no CA information available".into());
                }
                println!("{root}");
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
