//! Network commands (`network create|ls|inspect|rm|prune|connect|disconnect`) and `port`.

use super::container::{filters_json, print_formatted};
use crate::client::{enc, Client};
use crate::format::Format;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Enable or disable IPv4 address assignment
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipv4: Option<bool>,
    /// Enable or disable IPv6 address assignment
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipv6: Option<bool>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt")]
    pub ipam_opt: Vec<String>,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    #[command(flatten)]
    pub unsupported: Unsupported,
    pub name: String,
}

/// `network create` flags for what berth's networks do not have: refused, never ignored.
#[derive(Debug, Args)]
pub struct Unsupported {
    /// The network from which to copy the configuration (refused: no config-only networks)
    #[arg(long = "config-from")]
    pub config_from: Option<String>,
    /// Create a configuration only network (refused: no config-only networks)
    #[arg(long = "config-only")]
    pub config_only: bool,
    /// Create swarm routing-mesh network (refused: needs swarm mode)
    #[arg(long)]
    pub ingress: bool,
    /// Control the network's scope (only "local")
    #[arg(long)]
    pub scope: Option<String>,
}

impl Unsupported {
    fn check(&self) -> Result<(), String> {
        if self.config_only || self.config_from.is_some() {
            return Err(
                "config-only networks (--config-only, --config-from) are not supported by berth"
                    .into(),
            );
        }
        if self.ingress {
            return Err(
                "--ingress: the routing-mesh network needs swarm mode, which berth does not run"
                    .into(),
            );
        }
        match self.scope.as_deref() {
            None | Some("local") => Ok(()),
            Some(s) => Err(format!(
                "--scope {s}: berth networks are local (swarm and global scopes need swarm mode)"
            )),
        }
    }
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Verbose output for diagnostics
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Add a link-local address for the container
    #[arg(long = "link-local-ip")]
    pub link_local_ip: Vec<String>,
    /// driver options for the network
    #[arg(long = "driver-opt")]
    pub driver_opt: Vec<String>,
    /// Highest gw-priority provides the default gateway. Accepts positive and negative values.
    #[arg(
        long = "gw-priority",
        allow_negative_numbers = true,
        default_value_t = 0
    )]
    pub gw_priority: i64,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

fn key_values(items: &[String], what: &str) -> Result<serde_json::Map<String, Value>, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), json!(v))),
            None if what == "label" => Ok((kv.clone(), json!(""))),
            None => Err(format!("invalid key/value pair format in {what}: {kv}")),
        })
        .collect()
}

pub async fn dispatch(c: &Client, cmd: NetworkCommand) -> i32 {
    match cmd {
        NetworkCommand::Create(a) => create(c, a).await,
        NetworkCommand::Ls(a) => ls(c, a).await,
        NetworkCommand::Inspect(a) => inspect(c, a).await,
        NetworkCommand::Rm(a) => rm(c, a).await,
        NetworkCommand::Prune(a) => prune(c, a).await,
        NetworkCommand::Connect(a) => connect(c, a).await,
        NetworkCommand::Disconnect(a) => disconnect(c, a).await,
    }
}

async fn create(c: &Client, a: CreateArgs) -> i32 {
    if let Err(e) = a.unsupported.check() {
        eprintln!("berth: {e}");
        return 125;
    }
    if a.gateway.len() > a.subnet.len() || a.ip_range.len() > a.subnet.len() {
        eprintln!("berth: a gateway or ip-range needs a subnet");
        return 125;
    }
    let kv = (
        key_values(&a.label, "label"),
        key_values(&a.opt, "opt"),
        key_values(&a.ipam_opt, "ipam-opt"),
        key_values(&a.aux_address, "aux-address"),
    );
    let (labels, options, ipam_opts, aux) = match kv {
        (Ok(l), Ok(o), Ok(i), Ok(x)) => (l, o, i, x),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    // Gateways, ranges and auxiliary addresses go with the subnet of their family (as the
    // docker CLI pairs them).
    let family = |s: &str| s.contains(':');
    let config: Vec<Value> = a
        .subnet
        .iter()
        .map(|s| {
            let six = family(s);
            let gateway = a.gateway.iter().find(|g| family(g) == six);
            let range = a.ip_range.iter().find(|r| family(r) == six);
            let aux: serde_json::Map<String, Value> = aux
                .iter()
                .filter(|(_, v)| v.as_str().is_some_and(|v| family(v) == six))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            json!({
                "Subnet": s,
                "Gateway": gateway.cloned().unwrap_or_default(),
                "IPRange": range.cloned().unwrap_or_default(),
                "AuxiliaryAddresses": aux,
            })
        })
        .collect();
    let mut body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "IPAM": {"Driver": a.ipam_driver, "Config": config, "Options": ipam_opts},
        "Options": options,
        "Labels": labels,
    });
    if let Some(v6) = a.ipv6 {
        body["EnableIPv6"] = json!(v6);
    }
    if let Some(v4) = a.ipv4 {
        body["EnableIPv4"] = json!(v4);
    }
    match c.post("/networks/create", Some(body)).await {
        Ok(v) => {
            println!("{}", v["Id"].as_str().unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

async fn ls(c: &Client, a: LsArgs) -> i32 {
    let mut path = "/networks".to_string();
    if !a.filter.is_empty() {
        match filters_json(&a.filter) {
            Ok(f) => path.push_str(&format!("?filters={}", enc(&f))),
            Err(e) => {
                eprintln!("{e}");
                return 125;
            }
        }
    }
    let list = match c.get(&path).await {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let id = n["Id"].as_str().unwrap_or_default();
            json!({
                "ID": if a.no_trunc { id.to_string() } else { id.chars().take(12).collect() },
                "Name": n["Name"],
                "Driver": n["Driver"],
                "Scope": n["Scope"],
                "IPv6": n["EnableIPv6"],
                "Internal": n["Internal"],
                "CreatedAt": n["Created"],
                "Labels": n["Labels"].as_object().map(|o| o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")).unwrap_or_default(),
            })
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return 0;
    }
    print_formatted(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
        ],
        None,
    )
}

async fn inspect(c: &Client, a: InspectArgs) -> i32 {
    let query = if a.verbose { "?verbose=true" } else { "" };
    super::inspect_each(c, "/networks", query, &a.names, a.format.as_deref()).await
}

async fn rm(c: &Client, a: RmArgs) -> i32 {
    let mut rc = 0;
    for n in &a.names {
        match c
            .json(
                hyper::Method::DELETE,
                &format!("/networks/{}", enc(n)),
                None,
            )
            .await
        {
            Ok(_) => println!("{n}"),
            Err(crate::client::Error::Daemon { status: 404, .. }) if a.force => {}
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

async fn prune(c: &Client, a: PruneArgs) -> i32 {
    use super::prune::{confirm, post, print_list, strings};
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return 0;
    }
    match post(c, "/networks/prune", &a.filter, &[]).await {
        Ok(v) => {
            print_list("Deleted Networks", &strings(&v["NetworksDeleted"]));
            0
        }
        Err(rc) => rc,
    }
}

async fn connect(c: &Client, a: ConnectArgs) -> i32 {
    let mut ep = serde_json::Map::new();
    if !a.alias.is_empty() {
        ep.insert("Aliases".into(), json!(a.alias));
    }
    if let Some(ipam) = endpoint_ipam(a.ip.as_deref(), a.ip6.as_deref(), &a.link_local_ip) {
        ep.insert("IPAMConfig".into(), ipam);
    }
    if !a.link.is_empty() {
        ep.insert("Links".into(), json!(a.link));
    }
    match key_values(&a.driver_opt, "driver-opt") {
        Ok(o) if !o.is_empty() => {
            ep.insert("DriverOpts".into(), Value::Object(o));
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    }
    if a.gw_priority != 0 {
        ep.insert("GwPriority".into(), json!(a.gw_priority));
    }
    let body = json!({"Container": a.container, "EndpointConfig": ep});
    match c
        .post(
            &format!("/networks/{}/connect", enc(&a.network)),
            Some(body),
        )
        .await
    {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

async fn disconnect(c: &Client, a: DisconnectArgs) -> i32 {
    let body = json!({"Container": a.container, "Force": a.force});
    match c
        .post(
            &format!("/networks/{}/disconnect", enc(&a.network)),
            Some(body),
        )
        .await
    {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `port`: the container's published ports, as `80/tcp -> 0.0.0.0:8080`.
pub async fn port(c: &Client, a: PortArgs) -> i32 {
    let v = match c
        .get(&format!("/containers/{}/json", enc(&a.container)))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let want = a.port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut lines = Vec::new();
    if let Some(ports) = v["NetworkSettings"]["Ports"].as_object() {
        let mut keys: Vec<&String> = ports.keys().collect();
        keys.sort_by_key(|k| {
            let (n, p) = k.split_once('/').unwrap_or((k, ""));
            (n.parse::<u32>().unwrap_or(0), p.to_string())
        });
        for k in keys {
            if want.as_ref().is_some_and(|w| w != k) {
                continue;
            }
            for b in ports[k].as_array().into_iter().flatten() {
                // IPv6 addresses in brackets, as docker shows them.
                let ip = b["HostIp"].as_str().unwrap_or("");
                let port = b["HostPort"].as_str().unwrap_or("");
                let addr = if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                };
                lines.push(if want.is_some() {
                    addr
                } else {
                    format!("{k} -> {addr}")
                });
            }
        }
    }
    if let (Some(w), true) = (&want, lines.is_empty()) {
        eprintln!("Error: No public port '{w}' published for {}", a.container);
        return 1;
    }
    for l in lines {
        println!("{l}");
    }
    0
}

/// An endpoint's `IPAMConfig` from `--ip`, `--ip6` and `--link-local-ip` (of `run` and
/// `network connect`); none when nothing was asked for.
pub fn endpoint_ipam(ip: Option<&str>, ip6: Option<&str>, link_local: &[String]) -> Option<Value> {
    let mut ipam = serde_json::Map::new();
    if let Some(ip) = ip {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = ip6 {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    if !link_local.is_empty() {
        ipam.insert("LinkLocalIPs".into(), json!(link_local));
    }
    (!ipam.is_empty()).then_some(Value::Object(ipam))
}
