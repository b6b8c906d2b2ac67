//! Volume commands: `volume create|ls|inspect|rm|prune` (`update` and the cluster-volume
//! flags are swarm features and refused).

use super::container::{filters_json, print_formatted};
use crate::client::{enc, Client};
use crate::format::Format;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(Box<CreateArgs>),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
    /// Update a volume (cluster volumes only)
    Update(UpdateArgs),
}

/// Docker's cluster-volume flags: those volumes live in a swarm, so berth refuses them.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Cluster Volume availability ("active", "pause", "drain")
    #[arg(long)]
    pub availability: Option<String>,
    /// Cluster Volume group (cluster volumes)
    #[arg(long)]
    pub group: Option<String>,
    /// Minimum size of the Cluster Volume in bytes
    #[arg(long = "limit-bytes")]
    pub limit_bytes: Option<String>,
    /// Maximum size of the Cluster Volume in bytes
    #[arg(long = "required-bytes")]
    pub required_bytes: Option<String>,
    /// Cluster Volume access scope ("single", "multi")
    #[arg(long)]
    pub scope: Option<String>,
    /// Cluster Volume secrets
    #[arg(long)]
    pub secret: Vec<String>,
    /// Cluster Volume access sharing ("none", "readonly", "onewriter", "all")
    #[arg(long)]
    pub sharing: Option<String>,
    /// A topology that the Cluster Volume would be preferred in
    #[arg(long = "topology-preferred")]
    pub topology_preferred: Vec<String>,
    /// A topology that the Cluster Volume must be accessible from
    #[arg(long = "topology-required")]
    pub topology_required: Vec<String>,
    /// Cluster Volume access type ("mount", "block")
    #[arg(long = "type")]
    pub kind: Option<String>,
}

impl ClusterArgs {
    fn given(&self) -> bool {
        self.availability.is_some()
            || self.group.is_some()
            || self.limit_bytes.is_some()
            || self.required_bytes.is_some()
            || self.scope.is_some()
            || !self.secret.is_empty()
            || self.sharing.is_some()
            || !self.topology_preferred.is_empty()
            || !self.topology_required.is_empty()
            || self.kind.is_some()
    }
}

const NO_CLUSTER: &str = "cluster volumes need swarm mode, which berth does not run";

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Cluster Volume availability ("active", "pause", "drain")
    #[arg(long)]
    pub availability: Option<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Display only cluster volumes (refused: needs swarm mode)
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
}

pub async fn dispatch(c: &Client, cmd: VolumeCommand) -> i32 {
    match cmd {
        VolumeCommand::Create(a) => create(c, *a).await,
        VolumeCommand::Ls(a) => ls(c, a).await,
        VolumeCommand::Inspect(a) => inspect(c, a).await,
        VolumeCommand::Rm(a) => rm(c, a).await,
        VolumeCommand::Prune(a) => prune(c, a).await,
        VolumeCommand::Update(_) => {
            eprintln!("berth: volume update: {NO_CLUSTER}");
            1
        }
    }
}

/// `k=v` items as a JSON map; a bare `k` is `k=""`.
fn key_values(items: &[String]) -> serde_json::Map<String, Value> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (kv.clone(), json!("")),
        })
        .collect()
}

async fn create(c: &Client, a: CreateArgs) -> i32 {
    if a.cluster.given() {
        eprintln!("berth: {NO_CLUSTER}");
        return 1;
    }
    let name = match (&a.name_flag, &a.name) {
        (Some(f), Some(p)) if f != p => {
            eprintln!(
                "Conflicting options: either specify --name or provide positional arg, not both"
            );
            return 1;
        }
        (Some(n), _) | (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": key_values(&a.opt),
        "Labels": key_values(&a.label),
    });
    match c.post("/volumes/create", Some(body)).await {
        Ok(v) => {
            println!("{}", v["Name"].as_str().unwrap_or_default());
            0
        }
        Err(e) => super::report(&e, 1),
    }
}

/// `--filter`s as the query's `filters` parameter, or an exit code.
fn filter_query(path: &str, filters: &[String]) -> Result<String, i32> {
    if filters.is_empty() {
        return Ok(path.to_string());
    }
    match filters_json(filters) {
        Ok(f) => Ok(format!("{path}?filters={}", enc(&f))),
        Err(e) => {
            eprintln!("{e}");
            Err(125)
        }
    }
}

fn labels_text(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

async fn ls(c: &Client, a: LsArgs) -> i32 {
    if a.cluster {
        eprintln!("berth: --cluster: {NO_CLUSTER}");
        return 1;
    }
    let path = match filter_query("/volumes", &a.filter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let list = match c.get(&path).await {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let mut vols: Vec<Value> = list["Volumes"].as_array().cloned().unwrap_or_default();
    vols.sort_by(|x, y| {
        x["Name"]
            .as_str()
            .unwrap_or("")
            .cmp(y["Name"].as_str().unwrap_or(""))
    });
    if a.quiet {
        for v in &vols {
            println!("{}", v["Name"].as_str().unwrap_or_default());
        }
        return 0;
    }
    let rows: Vec<Value> = vols
        .iter()
        .map(|v| {
            json!({
                "Name": v["Name"],
                "Driver": v["Driver"],
                "Scope": v["Scope"],
                "Mountpoint": v["Mountpoint"],
                "CreatedAt": v["CreatedAt"],
                "Labels": labels_text(&v["Labels"]),
                "Links": "N/A",
                "Size": "N/A",
            })
        })
        .collect();
    print_formatted(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[("Driver", "DRIVER"), ("Name", "VOLUME NAME")],
        None,
    )
}

async fn inspect(c: &Client, a: InspectArgs) -> i32 {
    super::inspect_each(c, "/volumes", "", &a.names, a.format.as_deref()).await
}

async fn rm(c: &Client, a: RmArgs) -> i32 {
    let mut rc = 0;
    for n in &a.names {
        let path = format!("/volumes/{}?force={}", enc(n), a.force);
        match c.json(hyper::Method::DELETE, &path, None).await {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

async fn prune(c: &Client, a: PruneArgs) -> i32 {
    use super::prune::{confirm, post, print_list, reclaimed, strings};
    let what = if a.all {
        "all local volumes"
    } else {
        "anonymous local volumes"
    };
    if !a.force
        && !confirm(&format!(
            "WARNING! This will remove {what} not used by at least one container."
        ))
    {
        return 0;
    }
    let extra: &[(&str, &str)] = if a.all { &[("all", "true")] } else { &[] };
    match post(c, "/volumes/prune", &a.filter, extra).await {
        Ok(v) => {
            print_list("Deleted Volumes", &strings(&v["VolumesDeleted"]));
            println!(
                "Total reclaimed space: {}",
                berth_api::units::human_size(reclaimed(&v))
            );
            0
        }
        Err(rc) => rc,
    }
}
