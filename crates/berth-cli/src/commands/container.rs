//! Container commands: run/create with Docker's flags, the lifecycle verbs, ps, logs, attach,
//! exec and inspect.

use super::resources as res;
use crate::client::{enc, Client, Error};
use crate::format::{self, Format};
use crate::stream;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// User namespace to use (`host` runs without the daemon's --userns-remap)
    #[arg(long)]
    pub userns: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Tune container memory swappiness (0 to 100) (default -1)
    #[arg(long = "memory-swappiness", allow_negative_numbers = true)]
    pub memory_swappiness: Option<i64>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    #[command(flatten)]
    pub health: super::resources::HealthArgs,
    #[command(flatten)]
    pub host: super::run_host::HostArgs,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container IPv4/IPv6 link-local addresses
    #[arg(long = "link-local-ip")]
    pub link_local_ip: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Set platform if server is multi-platform capable (only the host's platform)
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Skip image verification (default true; berth does not verify signatures)
    #[arg(long = "disable-content-trust", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_content_trust: bool,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Bind mount the API socket and the client's registry credentials
    #[arg(long = "use-api-socket")]
    pub use_api_socket: bool,
    /// The image
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// Lines of env/label files: trimmed, blank lines and `#` comments skipped.
pub(crate) fn file_lines(files: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("open {f}: {e}"))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(out)
}

/// The streams `-a` names (lower-cased), checked as docker checks them.
fn attach_streams(list: &[String]) -> Result<[bool; 3], String> {
    let mut s = [false; 3];
    for a in list {
        match a.to_ascii_lowercase().as_str() {
            "stdin" => s[0] = true,
            "stdout" => s[1] = true,
            "stderr" => s[2] = true,
            _ => {
                return Err(format!(
                    "invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                ))
            }
        }
    }
    Ok(s)
}

/// Where `--use-api-socket` puts the client's credentials, as docker does.
const API_SOCKET_CONFIG: &str = "/run/secrets/docker/config.json";

fn key_values(items: &[String]) -> serde_json::Map<String, Value> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (l.clone(), json!("")),
        })
        .collect()
}

/// Build the create body from the flags; `api_socket` is the daemon socket to mount for
/// `--use-api-socket`.
fn create_body(a: &CreateArgs, attach: bool, api_socket: Option<&str>) -> Result<Value, String> {
    let mut env: Vec<String> = file_lines(&a.env_file)?
        .iter()
        .map(|l| expand_env(l))
        .collect();
    env.extend(a.env.iter().map(|e| expand_env(e)));
    let mut labels = file_lines(&a.label_file)?;
    labels.extend(a.label.iter().cloned());
    let streams = attach_streams(&a.attach)?;
    // Without -a, an attached run takes stdout and stderr, and stdin with -i.
    let (attach, [a_in, a_out, a_err]) = if a.attach.is_empty() {
        (attach, [a.interactive, true, true])
    } else {
        (true, [streams[0] || a.interactive, streams[1], streams[2]])
    };
    let ulimits = a
        .ulimit
        .iter()
        .map(|u| res::ulimit(u))
        .collect::<Result<Vec<_>, _>>()?;
    let restart = res::restart_policy(&a.restart)?;
    let mut log_config = serde_json::Map::new();
    for o in &a.log_opt {
        let (k, v) = o
            .split_once('=')
            .ok_or(format!("invalid key/value pair format in log options: {o}"))?;
        log_config.insert(k.into(), json!(v));
    }
    let tmpfs: serde_json::Map<String, Value> = a
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), json!(o)),
            None => (t.clone(), json!("")),
        })
        .collect();
    let (binds, volumes) = crate::mounts::split_volumes(&a.volume);
    let mut mounts = a
        .mount
        .iter()
        .map(|m| {
            crate::mounts::parse_mount(m)
                .map_err(|e| format!("invalid argument \"{m}\" for \"--mount\" flag: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(sock) = api_socket {
        mounts.push(json!({
            "Type": "bind",
            "Source": sock,
            "Target": "/var/run/docker.sock",
        }));
        env.push(format!(
            "DOCKER_CONFIG={}",
            API_SOCKET_CONFIG.trim_end_matches("/config.json")
        ));
    }
    let memory = res::bytes("-m, --memory", a.memory.as_deref())?;
    let swap = res::swap_bytes(a.memory_swap.as_deref())?;
    let reservation = res::bytes("--memory-reservation", a.memory_reservation.as_deref())?;
    let shm_size = res::bytes("--shm-size", a.shm_size.as_deref())?;
    let nano_cpus = res::nano_cpus(a.cpus.as_deref())?;
    let healthcheck = a.health.config()?;
    let (port_bindings, exposed) = crate::ports::bindings(&a.publish, &a.expose)?;
    let network = a.network.clone().unwrap_or_else(|| "default".into());
    let mut endpoint = serde_json::Map::new();
    if !a.network_alias.is_empty() {
        endpoint.insert("Aliases".into(), json!(a.network_alias));
    }
    if let Some(ipam) =
        super::network::endpoint_ipam(a.ip.as_deref(), a.ip6.as_deref(), &a.link_local_ip)
    {
        endpoint.insert("IPAMConfig".into(), ipam);
    }
    if let Some(mac) = &a.mac_address {
        endpoint.insert("MacAddress".into(), json!(mac));
    }
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            vec![]
        } else {
            vec![e.clone()]
        }
    });
    let mut body = json!({
        "Hostname": a.hostname.clone().unwrap_or_default(),
        "Domainname": a.domainname.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "AttachStdin": attach && a_in,
        "AttachStdout": attach && a_out,
        "AttachStderr": attach && a_err,
        "Tty": a.tty,
        "OpenStdin": a.interactive,
        "StdinOnce": attach && a_in,
        "Env": env,
        "Cmd": if a.command.is_empty() { Value::Null } else { json!(a.command) },
        "Image": a.image,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Entrypoint": entrypoint,
        "Labels": key_values(&labels),
        "Volumes": volumes,
        "StopSignal": a.stop_signal,
        "StopTimeout": a.stop_timeout,
        "Healthcheck": healthcheck,
        "ExposedPorts": exposed,
        "NetworkingConfig": {"EndpointsConfig": {network.clone(): endpoint}},
        "HostConfig": {
            "Binds": binds,
            "Mounts": mounts,
            "VolumesFrom": a.volumes_from,
            "LogConfig": {"Type": "", "Config": log_config},
            "NetworkMode": network,
            "PortBindings": port_bindings,
            "PublishAllPorts": a.publish_all,
            "Links": a.link,
            "Dns": a.dns,
            "DnsSearch": a.dns_search,
            "DnsOptions": a.dns_option,
            "ExtraHosts": a.add_host,
            "RestartPolicy": restart,
            "AutoRemove": a.rm,
            "CapAdd": a.cap_add,
            "CapDrop": a.cap_drop,
            "Privileged": a.privileged,
            "UsernsMode": a.userns.clone().unwrap_or_default(),
            "ReadonlyRootfs": a.read_only,
            "SecurityOpt": a.security_opt,
            "Memory": memory,
            "MemorySwap": swap,
            "MemoryReservation": reservation,
            "MemorySwappiness": a.memory_swappiness.unwrap_or(-1),
            "OomKillDisable": a.oom_kill_disable,
            "NanoCpus": nano_cpus,
            "CpuShares": a.cpu_shares.unwrap_or(0),
            "CpuPeriod": a.cpu_period.unwrap_or(0),
            "CpuQuota": a.cpu_quota.unwrap_or(0),
            "CpusetCpus": a.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": a.cpuset_mems.clone().unwrap_or_default(),
            "BlkioWeight": a.blkio_weight.unwrap_or(0),
            "PidsLimit": a.pids_limit,
            "Tmpfs": tmpfs,
            "Ulimits": ulimits,
            "ShmSize": shm_size,
            "Sysctls": key_values(&a.sysctl),
            "Init": a.init.then_some(true),
            "ConsoleSize": stream::term_size().map(|(h, w)| vec![h, w]).unwrap_or(vec![0, 0]),
        },
    });
    a.host.apply(&mut body["HostConfig"])?;
    Ok(body)
}

/// `-e NAME` takes the value from the client's environment, like docker.
pub(crate) fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        match std::env::var(e) {
            Ok(v) => format!("{e}={v}"),
            Err(_) => e.to_string(),
        }
    }
}

/// Create the container: `--pull` decides whether the image is pulled first (`always`),
/// when missing (`missing`, with docker's "Unable to find image" note) or never.
async fn create(c: &Client, a: &CreateArgs, attach: bool) -> Result<String, i32> {
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("berth: {e}\nSee 'berth run --help'.");
        125
    };
    if !matches!(a.pull.as_str(), "always" | "missing" | "never") {
        return Err(usage(&format!(
            "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
            a.pull
        )));
    }
    super::check_platform(a.platform.as_deref()).map_err(|e| usage(&e))?;
    if !a.disable_content_trust {
        return Err(usage(
            &"content trust (--disable-content-trust=false) needs a notary server; berth does not verify image signatures",
        ));
    }
    let api_socket = if a.use_api_socket {
        match c.unix_socket() {
            Some(p) => Some(p.display().to_string()),
            None => {
                return Err(usage(&format!(
                    "flag --use-api-socket can only be used with unix sockets: endpoint {} incompatible",
                    c.endpoint()
                )))
            }
        }
    } else {
        None
    };
    let creds = if a.use_api_socket {
        crate::auth::all_auths().map_err(|e| usage(&e))?
    } else {
        serde_json::Map::new()
    };
    let body = create_body(a, attach, api_socket.as_deref()).map_err(|e| usage(&e))?;
    let cidfile = match &a.cidfile {
        Some(p) => Some(CidFile::create(p).map_err(|e| usage(&e))?),
        None => None,
    };
    let mut path = "/containers/create".to_string();
    if let Some(n) = &a.name {
        path.push_str(&format!("?name={}", enc(n)));
    }
    let last = a.image.rsplit('/').next().unwrap_or(&a.image);
    let img = if last.contains(':') || a.image.contains('@') {
        a.image.clone()
    } else {
        format!("{}:latest", a.image)
    };
    let pull = |note: bool| {
        let img = img.clone();
        async move {
            if note && !a.quiet {
                eprintln!("Unable to find image '{img}' locally");
            }
            let tty = crate::stream::is_tty(std::io::stderr());
            let res = if a.quiet {
                let mut sink = std::io::sink();
                super::registry::pull_image(c, &img, a.platform.as_deref(), false, &mut sink, false)
                    .await
            } else {
                let mut err = std::io::stderr();
                super::registry::pull_image(c, &img, a.platform.as_deref(), false, &mut err, tty)
                    .await
            };
            res.map_err(|e| {
                if e.starts_with("Error response from daemon") {
                    usage(&e)
                } else {
                    usage(&format!("Error response from daemon: {e}"))
                }
            })
        }
    };
    if a.pull == "always" {
        pull(false).await?;
    }
    let created = match c.post(&path, Some(body.clone())).await {
        Err(Error::Daemon {
            status: 404,
            message,
        }) if message.starts_with("No such image") && a.pull == "missing" => {
            pull(true).await?;
            c.post(&path, Some(body)).await
        }
        other => other,
    };
    let id = match created {
        Ok(v) => created_id(&v),
        Err(e) => return Err(usage(&e)),
    };
    if let Some(f) = cidfile {
        f.write(&id).map_err(|e| usage(&e))?;
    }
    if !creds.is_empty() {
        copy_api_config(c, &id, creds)
            .await
            .map_err(|e| usage(&e))?;
    }
    Ok(id)
}

/// `--cidfile`: refused when the file exists (another container may own it), created before
/// the container and removed again if the create fails.
struct CidFile {
    path: String,
    written: bool,
}

impl CidFile {
    fn create(path: &str) -> Result<CidFile, String> {
        if std::path::Path::new(path).exists() {
            return Err(format!(
                "container ID file found, make sure the other container isn't running or delete {path}"
            ));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| format!("failed to create the container ID file: {e}"))?;
        Ok(CidFile {
            path: path.to_string(),
            written: false,
        })
    }

    fn write(mut self, id: &str) -> Result<(), String> {
        std::fs::write(&self.path, id)
            .map_err(|e| format!("failed to write the container ID to the file: {e}"))?;
        self.written = true;
        Ok(())
    }
}

impl Drop for CidFile {
    fn drop(&mut self) {
        if !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `--use-api-socket`: the client's registry credentials go into the container as a docker
/// config file of their own (`DOCKER_CONFIG` points there).
async fn copy_api_config(
    c: &Client,
    id: &str,
    auths: serde_json::Map<String, Value>,
) -> Result<(), String> {
    let data = serde_json::to_vec_pretty(&json!({ "auths": auths })).map_err(|e| e.to_string())?;
    let mut b = tar::Builder::new(Vec::new());
    let rel = API_SOCKET_CONFIG.trim_start_matches('/');
    let mut dir = String::new();
    for part in rel.split('/').take(rel.split('/').count() - 1) {
        dir.push_str(part);
        dir.push('/');
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, &dir, std::io::empty())
            .map_err(|e| e.to_string())?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, rel, data.as_slice())
        .map_err(|e| e.to_string())?;
    let tar = b.into_inner().map_err(|e| e.to_string())?;
    let body: crate::client::ReqBody =
        http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
            http_body_util::Full::new(bytes::Bytes::from(tar)),
            |never: std::convert::Infallible| match never {},
        ));
    c.send(
        Method::PUT,
        &format!("/containers/{id}/archive?path=/"),
        body,
        "application/x-tar",
    )
    .await
    .map(drop)
    .map_err(|e| format!("copying the credentials into the container: {e}"))
}

/// The id in a create answer, after printing its warnings as docker does.
fn created_id(v: &Value) -> String {
    for w in v["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    v["Id"].as_str().unwrap_or_default().to_string()
}

pub async fn create_cmd(c: &Client, a: CreateArgs) -> i32 {
    match create(c, &a, false).await {
        Ok(id) => {
            println!("{id}");
            0
        }
        Err(code) => code,
    }
}

/// The `--detach-keys` value as bytes; an unparsable value falls back to the default.
fn detach_keys(s: Option<&str>) -> Option<Vec<u8>> {
    s.and_then(|k| berth_api::detach::parse(k).ok())
}

/// Exit code for a failed start, from the daemon's message (docker's mapping).
fn start_error_code(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        125
    }
}

pub async fn run(c: &Client, a: RunArgs) -> i32 {
    if a.detach && !a.create.attach.is_empty() {
        eprintln!("berth: Conflicting options: -a and -d\nSee 'berth run --help'.");
        return 125;
    }
    let attach = !a.detach;
    let id = match create(c, &a.create, attach).await {
        Ok(id) => id,
        Err(code) => return code,
    };
    if a.detach {
        if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
            eprintln!("berth: {e}");
            return start_error_code(&e.to_string());
        }
        println!("{id}");
        return 0;
    }
    let tty = a.create.tty;
    let [s_in, s_out, s_err] = match attach_streams(&a.create.attach) {
        Ok(_) if a.create.attach.is_empty() => [a.create.interactive, true, true],
        Ok([i, o, e]) => [i || a.create.interactive, o, e],
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let stdin = s_in;
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdout={}&stderr={}",
        s_out as u8, s_err as u8
    );
    if stdin {
        q.push_str("&stdin=1");
    }
    if let Some(k) = &a.detach_keys {
        q.push_str(&format!("&detachKeys={}", enc(k)));
    }
    let cond = if a.create.rm { "removed" } else { "next-exit" };
    let wait_path = format!("/containers/{id}/wait?condition={cond}");
    // Both must be in place before the start; they go out at once (one round trip, not two).
    let (conn, wait) = tokio::join!(
        c.hijack(&q, None),
        c.send(
            Method::POST,
            &wait_path,
            crate::client::empty(),
            "application/json",
        )
    );
    let (conn, wait) = match (conn, wait) {
        (Ok(conn), Ok(w)) => (conn, w),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let raw = (tty && stdin && stream::is_tty(std::io::stdin())).then(stream::RawMode::enable);
    let proxy = (a.sig_proxy && !tty).then(|| proxy_signals(c, &id));
    if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
        drop(raw);
        if let Some(p) = proxy {
            p.abort();
        }
        eprintln!("berth: {e}");
        return start_error_code(&e.to_string());
    }
    if tty {
        if let Some((h, w)) = stream::term_size() {
            let _ = c
                .post(&format!("/containers/{id}/resize?h={h}&w={w}"), None)
                .await;
        }
    }
    let io = stream::run(conn, tty, stdin, detach_keys(a.detach_keys.as_deref())).await;
    drop(raw);
    if let Some(p) = proxy {
        p.abort();
    }
    match io {
        Ok(stream::Ended::Detached) => return 0,
        Ok(stream::Ended::Output) => {}
        Err(e) => eprintln!("berth: {e}"),
    }
    match crate::client::read_all(wait).await {
        Ok(body) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(msg) = v["Error"]["Message"].as_str() {
                eprintln!("berth: {msg}");
                return 125;
            }
            v["StatusCode"].as_i64().unwrap_or(125) as i32
        }
        Err(e) => {
            eprintln!("berth: {e}");
            125
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Restore from this checkpoint (refused: berth has no checkpoint/restore)
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Use a custom checkpoint storage directory (refused with --checkpoint)
    #[arg(long = "checkpoint-dir")]
    pub checkpoint_dir: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn start(c: &Client, a: StartArgs) -> i32 {
    if a.checkpoint.is_some() || a.checkpoint_dir.is_some() {
        eprintln!(
            "berth: checkpoint/restore is not supported: berth has no CRIU support (dockerd needs --experimental and CRIU for it)"
        );
        return 1;
    }
    if a.attach || a.interactive {
        let Some(name) = a.containers.first() else {
            return 1;
        };
        let info = match c.get(&format!("/containers/{}/json", enc(name))).await {
            Ok(v) => v,
            Err(e) => return super::report(&e, 1),
        };
        let id = info["Id"].as_str().unwrap_or(name).to_string();
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let stdin = a.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
        let mut q = format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1");
        if stdin {
            q.push_str("&stdin=1");
        }
        if let Some(k) = &a.detach_keys {
            q.push_str(&format!("&detachKeys={}", enc(k)));
        }
        let conn = match c.hijack(&q, None).await {
            Ok(conn) => conn,
            Err(e) => return super::report(&e, 1),
        };
        let wait = c
            .send(
                Method::POST,
                &format!("/containers/{id}/wait?condition=next-exit"),
                crate::client::empty(),
                "application/json",
            )
            .await;
        let raw = (tty && stdin && stream::is_tty(std::io::stdin())).then(stream::RawMode::enable);
        // `start -a` forwards signals, as docker's does.
        let proxy = (!tty).then(|| proxy_signals(c, &id));
        if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
            drop(raw);
            if let Some(p) = proxy {
                p.abort();
            }
            return super::report(&e, 1);
        }
        let ended = stream::run(conn, tty, stdin, detach_keys(a.detach_keys.as_deref())).await;
        drop(raw);
        if let Some(p) = proxy {
            p.abort();
        }
        if let Ok(stream::Ended::Detached) = ended {
            return 0;
        }
        return match wait {
            Ok(w) => wait_status(w).await,
            Err(e) => super::report(&e, 1),
        };
    }
    let mut rc = 0;
    for name in &a.containers {
        match c
            .post(&format!("/containers/{}/start", enc(name)), None)
            .await
        {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    if rc != 0 {
        eprintln!(
            "Error: failed to start containers: {}",
            a.containers.join(", ")
        );
    }
    rc
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "timeout", alias = "time")]
    pub timeout: Option<i64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn stop(c: &Client, a: StopArgs, verb: &str) -> i32 {
    let mut q = Vec::new();
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    if let Some(t) = a.timeout {
        q.push(format!("t={t}"));
    }
    let qs = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    each(&a.containers, |n| {
        let path = format!("/containers/{}/{verb}{qs}", enc(n));
        async move { c.post(&path, None).await.map(|_| ()) }
    })
    .await
}

/// Run `f` for each container, printing its name on success like docker.
async fn each<F, Fut>(names: &[String], f: F) -> i32
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let mut rc = 0;
    for n in names {
        match f(n).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

#[derive(Debug, Clone, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn kill(c: &Client, a: KillArgs) -> i32 {
    each(&a.containers, |n| {
        let path = format!("/containers/{}/kill?signal={}", enc(n), enc(&a.signal));
        async move { c.post(&path, None).await.map(|_| ()) }
    })
    .await
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn rm(c: &Client, a: RmArgs) -> i32 {
    each(&a.containers, |n| {
        // A link is named `parent/alias`: its segments go into the path as they are.
        let name = if a.link {
            n.trim_matches('/')
                .split('/')
                .map(enc)
                .collect::<Vec<_>>()
                .join("/")
        } else {
            enc(n)
        };
        let path = format!(
            "/containers/{name}?force={}&v={}&link={}",
            a.force, a.volumes, a.link
        );
        async move { c.json(Method::DELETE, &path, None).await.map(|_| ()) }
    })
    .await
}

#[derive(Debug, Clone, Args)]
pub struct Ids {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn wait(c: &Client, a: Ids) -> i32 {
    let mut rc = 0;
    for n in &a.containers {
        match c.post(&format!("/containers/{}/wait", enc(n)), None).await {
            Ok(v) => println!("{}", v["StatusCode"]),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

pub async fn simple(c: &Client, a: Ids, verb: &str) -> i32 {
    each(&a.containers, |n| {
        let path = format!("/containers/{}/{verb}", enc(n));
        async move { c.post(&path, None).await.map(|_| ()) }
    })
    .await
}

#[derive(Debug, Clone, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

pub async fn rename(c: &Client, a: RenameArgs) -> i32 {
    match c
        .post(
            &format!(
                "/containers/{}/rename?name={}",
                enc(&a.container),
                enc(&a.new_name)
            ),
            None,
        )
        .await
    {
        Ok(_) => 0,
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    pub last: Option<i64>,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

/// `--filter k=v` flags as the API's filters JSON.
pub fn filters_json(filters: &[String]) -> Result<String, String> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| "bad format of filter (expected name=value)".to_string())?;
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    serde_json::to_string(&m).map_err(|e| e.to_string())
}

fn ago(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!(
        "{} ago",
        berth_api::timefmt::human_duration(std::time::Duration::from_secs(
            (now - unix).max(0) as u64
        ))
    )
}

/// The fields `docker ps --format` offers.
pub fn ps_row(v: &Value, trunc: bool) -> Value {
    let id = v["Id"].as_str().unwrap_or("");
    let names: Vec<String> = v["Names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str())
                .map(|n| n.trim_start_matches('/').to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut cmd = v["Command"].as_str().unwrap_or("").to_string();
    if trunc && cmd.chars().count() > 20 {
        cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
    }
    let labels: Vec<String> = v["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let size = match (v["SizeRw"].as_i64(), v["SizeRootFs"].as_i64()) {
        (Some(rw), Some(root)) => format!(
            "{} (virtual {})",
            berth_api::units::human_size(rw),
            berth_api::units::human_size(root)
        ),
        _ => String::new(),
    };
    json!({
        "ID": if trunc { id.chars().take(12).collect::<String>() } else { id.to_string() },
        "Image": v["Image"],
        "Command": format!("\"{cmd}\""),
        "CreatedAt": v["Created"],
        "RunningFor": ago(v["Created"].as_i64().unwrap_or(0)),
        "Ports": display_ports(&v["Ports"]),
        "State": v["State"],
        "Status": v["Status"],
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": "",
        "Networks": v["NetworkSettings"]["Networks"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
    })
}

/// The PORTS column: `0.0.0.0:8080->80/tcp, 443/tcp`, published first, as docker sorts them.
fn display_ports(ports: &Value) -> String {
    let mut items: Vec<(u8, String, u64, u64, String)> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let private = p["PrivatePort"].as_u64().unwrap_or(0);
            let kind = p["Type"].as_str().unwrap_or("tcp").to_string();
            match p["PublicPort"].as_u64() {
                Some(public) => (
                    0,
                    p["IP"].as_str().unwrap_or("").to_string(),
                    public,
                    private,
                    kind,
                ),
                None => (1, String::new(), 0, private, kind),
            }
        })
        .collect();
    items.sort();
    items.dedup();
    items
        .iter()
        .map(|(published, ip, public, private, kind)| {
            if *published == 0 && ip.contains(':') {
                format!("[{ip}]:{public}->{private}/{kind}")
            } else if *published == 0 {
                format!("{ip}:{public}->{private}/{kind}")
            } else {
                format!("{private}/{kind}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ps(c: &Client, a: PsArgs) -> i32 {
    let mut q = vec![];
    if a.all {
        q.push("all=1".to_string());
    }
    if a.size {
        q.push("size=1".into());
    }
    let limit = if a.latest { Some(1) } else { a.last };
    if let Some(n) = limit {
        q.push(format!("limit={n}"));
    }
    if !a.filter.is_empty() {
        match filters_json(&a.filter) {
            Ok(f) => q.push(format!("filters={}", enc(&f))),
            Err(e) => {
                eprintln!("{e}");
                return 125;
            }
        }
    }
    let list = match c.get(&format!("/containers/json?{}", q.join("&"))).await {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let items = list.as_array().cloned().unwrap_or_default();
    let trunc = !a.no_trunc;
    if a.quiet {
        for it in &items {
            println!("{}", ps_row(it, trunc)["ID"].as_str().unwrap_or(""));
        }
        return 0;
    }
    let rows: Vec<Value> = items.iter().map(|i| ps_row(i, trunc)).collect();
    print_formatted(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("RunningFor", "CREATED"),
            ("Status", "STATUS"),
            ("Ports", "PORTS"),
            ("Names", "NAMES"),
        ],
        a.size.then_some(("Size", "SIZE")),
    )
}

/// Print rows in the chosen format; `cols` are the default table's columns.
pub fn print_formatted(
    f: &Format,
    rows: &[Value],
    cols: &[(&str, &str)],
    extra: Option<(&str, &str)>,
) -> i32 {
    let mut cols = cols.to_vec();
    if let Some(e) = extra {
        cols.push(e);
    }
    match f {
        Format::Table => {
            let header: Vec<&str> = cols.iter().map(|(_, h)| *h).collect();
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|(k, _)| match &r[*k] {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            print!("{}", format::table(&header, &table_rows));
            0
        }
        Format::Json => {
            for r in rows {
                println!("{r}");
            }
            0
        }
        Format::TableTemplate(t) => match format::template_table(t, rows, &cols) {
            Ok(s) => {
                print!("{s}");
                0
            }
            Err(e) => {
                eprintln!("{e}");
                1
            }
        },
        Format::Template(t) => {
            for r in rows {
                match format::render(t, r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("{e}");
                        return 1;
                    }
                }
            }
            0
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative
    #[arg(long)]
    pub until: Option<String>,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

pub async fn logs(c: &Client, a: LogsArgs) -> i32 {
    let info = match c
        .get(&format!("/containers/{}/json", enc(&a.container)))
        .await
    {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!(
        "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&details={}&tail={}",
        enc(&a.container),
        a.follow as u8,
        a.timestamps as u8,
        a.details as u8,
        enc(&a.tail)
    );
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            match crate::timearg::timestamp(v, std::time::SystemTime::now()) {
                Ok(t) => q.push_str(&format!("&{k}={t}")),
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            }
        }
    }
    let resp = match c
        .send(Method::GET, &q, crate::client::empty(), "application/json")
        .await
    {
        Ok(r) => r,
        Err(e) => return super::report(&e, 1),
    };
    let mut dec = berth_api::stdcopy::Decoder::default();
    let res = crate::client::for_each_chunk(resp, |chunk| {
        use std::io::Write;
        if tty {
            let _ = std::io::stdout().write_all(chunk);
            let _ = std::io::stdout().flush();
            return;
        }
        dec.feed(chunk);
        while let Ok(Some((s, p))) = dec.next_frame() {
            if s == berth_api::stdcopy::STDERR {
                let _ = std::io::stderr().write_all(&p);
            } else {
                let _ = std::io::stdout().write_all(&p);
                let _ = std::io::stdout().flush();
            }
        }
    })
    .await;
    match res {
        Ok(()) => 0,
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sig_proxy: bool,
    pub container: String,
}

/// `--sig-proxy`: the signals the CLI receives while attached go to the container (as
/// `POST /kill`), as docker forwards them. The handlers are in place when this returns; the
/// task ends when aborted.
pub fn proxy_signals(c: &Client, id: &str) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let c = c.clone();
    let id = id.to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
    // Dropped (and so aborted) with the task below.
    let mut listeners = tokio::task::JoinSet::new();
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
    ] {
        let Ok(mut s) = signal(SignalKind::from_raw(sig)) else {
            continue;
        };
        let tx = tx.clone();
        listeners.spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        let _listeners = listeners;
        while let Some(sig) = rx.recv().await {
            let _ = c
                .post(&format!("/containers/{id}/kill?signal={sig}"), None)
                .await;
        }
    })
}

pub async fn attach(c: &Client, a: AttachArgs) -> i32 {
    let info = match c
        .get(&format!("/containers/{}/json", enc(&a.container)))
        .await
    {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        eprintln!("You cannot attach to a stopped container, start it first");
        return 1;
    }
    let id = info["Id"].as_str().unwrap_or("").to_string();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        stdin as u8
    );
    if let Some(k) = &a.detach_keys {
        q.push_str(&format!("&detachKeys={}", enc(k)));
    }
    // Registered before attaching, so the exit code is the one of the exit we see.
    let wait = c
        .send(
            Method::POST,
            &format!("/containers/{id}/wait?condition=next-exit"),
            crate::client::empty(),
            "application/json",
        )
        .await;
    let conn = match c.hijack(&q, None).await {
        Ok(c) => c,
        Err(e) => return super::report(&e, 1),
    };
    let raw = (tty && stdin && stream::is_tty(std::io::stdin())).then(stream::RawMode::enable);
    if tty {
        if let Some((h, w)) = stream::term_size() {
            let _ = c
                .post(&format!("/containers/{id}/resize?h={h}&w={w}"), None)
                .await;
        }
    }
    let proxy = (a.sig_proxy && !tty).then(|| proxy_signals(c, &id));
    let ended = stream::run(conn, tty, stdin, detach_keys(a.detach_keys.as_deref())).await;
    drop(raw);
    if let Some(p) = proxy {
        p.abort();
    }
    if let Ok(stream::Ended::Detached) = ended {
        return 0;
    }
    match wait {
        Ok(w) => wait_status(w).await,
        Err(e) => super::report(&e, 1),
    }
}

/// The exit code in a `/wait` answer.
async fn wait_status(w: hyper::Response<hyper::body::Incoming>) -> i32 {
    crate::client::read_all(w)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["StatusCode"].as_i64())
        .unwrap_or(1) as i32
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Username or UID
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub async fn exec(c: &Client, a: ExecArgs) -> i32 {
    let mut env = match file_lines(&a.env_file) {
        Ok(l) => l.iter().map(|e| expand_env(e)).collect::<Vec<_>>(),
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    env.extend(a.env.iter().map(|e| expand_env(e)));
    let body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Detach": a.detach,
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": a.command,
    });
    let id = match c
        .post(
            &format!("/containers/{}/exec", enc(&a.container)),
            Some(body),
        )
        .await
    {
        Ok(v) => v["Id"].as_str().unwrap_or("").to_string(),
        Err(e) => return super::report(&e, 1),
    };
    if a.detach {
        return match c
            .post(
                &format!("/exec/{id}/start"),
                Some(json!({"Detach": true, "Tty": a.tty})),
            )
            .await
        {
            Ok(_) => 0,
            Err(e) => super::report(&e, 1),
        };
    }
    let conn = match c
        .hijack(
            &format!("/exec/{id}/start"),
            Some(json!({"Detach": false, "Tty": a.tty})),
        )
        .await
    {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("{e}");
            return start_error_code(&e.to_string()).max(126);
        }
    };
    let raw =
        (a.tty && a.interactive && stream::is_tty(std::io::stdin())).then(stream::RawMode::enable);
    if a.tty {
        if let Some((h, w)) = stream::term_size() {
            let _ = c
                .post(&format!("/exec/{id}/resize?h={h}&w={w}"), None)
                .await;
        }
    }
    let ended = stream::run(
        conn,
        a.tty,
        a.interactive,
        detach_keys(a.detach_keys.as_deref()),
    )
    .await;
    drop(raw);
    if let Ok(stream::Ended::Detached) = ended {
        return 0;
    }
    match c.get(&format!("/exec/{id}/json")).await {
        Ok(v) => v["ExitCode"].as_i64().unwrap_or(126) as i32,
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Only inspect objects of this type (container, image)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn inspect(c: &Client, a: InspectArgs) -> i32 {
    let mut out = Vec::new();
    let mut rc = 0;
    for n in &a.names {
        let container = if a.kind.as_deref() != Some("image") {
            c.get(&format!(
                "/containers/{}/json?size={}",
                enc(n),
                a.size as u8
            ))
            .await
            .ok()
        } else {
            None
        };
        let found = match container {
            Some(v) => Some(v),
            None if a.kind.as_deref() != Some("container") => {
                c.get(&format!("/images/{}/json", enc(n))).await.ok()
            }
            None => None,
        };
        match found {
            Some(v) => out.push(v),
            None => {
                eprintln!("Error: No such object: {n}");
                rc = 1;
            }
        }
    }
    print_inspect(&out, a.format.as_deref()).max(rc)
}

/// Print inspect results as docker does: an indented JSON array, or one template line each.
pub fn print_inspect(items: &[Value], fmt: Option<&str>) -> i32 {
    match fmt {
        None | Some("") | Some("json") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&Value::Array(items.to_vec())).unwrap_or_default()
            );
            0
        }
        Some(t) => {
            let t = t.replace("\\t", "\t").replace("\\n", "\n");
            for it in items {
                match format::render(&t, it) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("{e}");
                        return 1;
                    }
                }
            }
            0
        }
    }
}

/// `berth container …`: the container commands under docker's management command.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Create a new image from a container's changes
    Commit(super::files::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(super::files::CpArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(super::files::One),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Export a container's filesystem as a tar archive
    Export(super::files::ExportArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// List containers
    #[command(aliases = ["list", "ps"])]
    Ls(PsArgs),
    /// Pause all processes within one or more containers
    Pause(Ids),
    /// List port mappings or a specific mapping for the container
    Port(super::network::PortArgs),
    /// Remove all stopped containers
    Prune(super::prune::PruneArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(super::stats::StatsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Display the running processes of a container
    Top(super::files::TopArgs),
    /// Unpause all processes within one or more containers
    Unpause(Ids),
    /// Update configuration of one or more containers
    Update(super::resources::UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Ids),
}

pub async fn container_cmd(c: &Client, sub: ContainerCommand) -> i32 {
    use super::files;
    match sub {
        ContainerCommand::Attach(a) => attach(c, a).await,
        ContainerCommand::Commit(a) => files::commit(c, a).await,
        ContainerCommand::Cp(a) => files::cp(c, a).await,
        ContainerCommand::Create(a) => create_cmd(c, a).await,
        ContainerCommand::Diff(a) => files::diff(c, a).await,
        ContainerCommand::Exec(a) => exec(c, a).await,
        ContainerCommand::Export(a) => files::export(c, a).await,
        ContainerCommand::Inspect(mut a) => {
            a.kind = Some("container".into());
            inspect(c, a).await
        }
        ContainerCommand::Kill(a) => kill(c, a).await,
        ContainerCommand::Logs(a) => logs(c, a).await,
        ContainerCommand::Ls(a) => ps(c, a).await,
        ContainerCommand::Pause(a) => simple(c, a, "pause").await,
        ContainerCommand::Port(a) => super::network::port(c, a).await,
        ContainerCommand::Prune(a) => super::prune::container_prune(c, a).await,
        ContainerCommand::Rename(a) => rename(c, a).await,
        ContainerCommand::Restart(a) => stop(c, a, "restart").await,
        ContainerCommand::Rm(a) => rm(c, a).await,
        ContainerCommand::Run(a) => run(c, a).await,
        ContainerCommand::Start(a) => start(c, a).await,
        ContainerCommand::Stats(a) => super::stats::stats(c, a).await,
        ContainerCommand::Stop(a) => stop(c, a, "stop").await,
        ContainerCommand::Top(a) => files::top(c, a).await,
        ContainerCommand::Unpause(a) => simple(c, a, "unpause").await,
        ContainerCommand::Update(a) => super::resources::update(c, a).await,
        ContainerCommand::Wait(a) => wait(c, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_args() {
        assert_eq!(
            filters_json(&["status=exited".into()]).unwrap(),
            r#"{"status":["exited"]}"#
        );
        assert!(filters_json(&["bad".into()]).is_err());
    }
}
