//! `node ls|inspect|update|promote|demote|rm|ps`: the swarm's nodes through the Engine API,
//! with the docker CLI's table (the current node marked `*`), `--pretty` and messages.

use super::tasks::{
    self, decode_list, natural_cmp, node_reference, pretty_state, LsArgs, TableArgs,
};
use crate::client::{enc, Client, Error};
use crate::format::Format;
use berth_api::swarm::Node;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Demote one or more nodes from manager in the swarm
    Demote(NodesArgs),
    /// Display detailed information on one or more nodes
    Inspect(InspectArgs),
    /// List nodes in the swarm
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Promote one or more nodes to manager in the swarm
    Promote(NodesArgs),
    /// List tasks running on one or more nodes, defaults to current node
    Ps(PsArgs),
    /// Remove one or more nodes from the swarm
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Update a node
    Update(UpdateArgs),
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pub pretty: bool,
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub table: TableArgs,
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force remove a node from the swarm
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long)]
    pub availability: Option<String>,
    /// Add or update a node label ("key=value")
    #[arg(long = "label-add")]
    pub label_add: Vec<String>,
    /// Remove a node label if exists
    #[arg(long = "label-rm")]
    pub label_rm: Vec<String>,
    /// Role of the node ("worker", "manager")
    #[arg(long)]
    pub role: Option<String>,
    pub node: String,
}

pub async fn dispatch(c: &Client, cmd: NodeCommand) -> i32 {
    match cmd {
        NodeCommand::Demote(a) => role(c, a, "worker").await,
        NodeCommand::Inspect(a) => inspect(c, a).await,
        NodeCommand::Ls(a) => ls(c, a).await,
        NodeCommand::Promote(a) => role(c, a, "manager").await,
        NodeCommand::Ps(a) => ps(c, a).await,
        NodeCommand::Rm(a) => rm(c, a).await,
        NodeCommand::Update(a) => update(c, a).await,
    }
}

async fn get_node(c: &Client, name: &str) -> Result<Node, Error> {
    let id = node_reference(c, name).await?;
    let v = c.get(&format!("/nodes/{}", enc(&id))).await?;
    berth_api::decode::from_value(v)
        .map_err(|e| Error::Other(format!("bad answer from daemon: {e}")))
}

/// Fetch the node, let `change` edit its spec and send it back with its version. A node's
/// version also moves when its status changes (as right after a promotion), so a write that
/// lost that race ("update out of sequence") is redone on the fresh node a few times.
async fn update_node(
    c: &Client,
    name: &str,
    mut change: impl FnMut(&mut Node) -> Result<bool, String>,
) -> Result<bool, String> {
    let mut attempts = 0;
    loop {
        let mut n = get_node(c, name).await.map_err(|e| e.to_string())?;
        if !change(&mut n)? {
            return Ok(false);
        }
        let body = serde_json::to_value(&n.spec).map_err(|e| e.to_string())?;
        let r = c
            .post(
                &format!("/nodes/{}/update?version={}", enc(&n.id), n.version.index),
                Some(body),
            )
            .await;
        match r {
            Ok(_) => return Ok(true),
            Err(e) if attempts < 5 && e.to_string().contains("update out of sequence") => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn role(c: &Client, a: NodesArgs, role: &str) -> i32 {
    let mut rc = 0;
    for name in &a.nodes {
        let mut id = String::new();
        let r = update_node(c, name, |n| {
            id = n.id.clone();
            if n.spec.role == role {
                return Ok(false);
            }
            n.spec.role = role.to_string();
            Ok(true)
        })
        .await;
        match (r, role) {
            (Ok(true), "manager") => println!("Node {name} promoted to a manager in the swarm."),
            (Ok(true), _) => println!("Manager {name} demoted in the swarm."),
            (Ok(false), "manager") => println!("Node {id} is already a manager."),
            (Ok(false), _) => println!("Node {id} is already a worker."),
            (Err(e), _) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

async fn update(c: &Client, a: UpdateArgs) -> i32 {
    if let Some(av) = &a.availability {
        if !matches!(av.as_str(), "active" | "pause" | "drain") {
            eprintln!("invalid availability {av:?}, only active, pause and drain are supported");
            return 1;
        }
    }
    if let Some(r) = &a.role {
        if !matches!(r.as_str(), "worker" | "manager") {
            eprintln!("invalid role {r:?}, only worker and manager are supported");
            return 1;
        }
    }
    let r = update_node(c, &a.node, |n| {
        let spec = &mut n.spec;
        if let Some(r) = &a.role {
            spec.role = r.clone();
        }
        if let Some(av) = &a.availability {
            spec.availability = av.clone();
        }
        spec.labels
            .extend(super::service_opts::kv_map(&a.label_add));
        for k in &a.label_rm {
            if spec.labels.remove(k).is_none() {
                return Err(format!("key {k} doesn't exist in node's labels"));
            }
        }
        Ok(true)
    })
    .await;
    match r {
        Ok(_) => {
            println!("{}", a.node);
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

async fn rm(c: &Client, a: RmArgs) -> i32 {
    let mut rc = 0;
    for n in &a.nodes {
        let path = format!("/nodes/{}?force={}", enc(n), a.force);
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

fn manager_status(n: &Node) -> String {
    match &n.manager_status {
        Some(m) if m.leader => "Leader".into(),
        Some(m) => pretty_state(m.reachability.as_str()),
        None => String::new(),
    }
}

async fn ls(c: &Client, a: LsArgs) -> i32 {
    let mut path = "/nodes".to_string();
    if !a.filter.is_empty() {
        match tasks::filter_map(&a.filter) {
            Ok(f) => {
                let f = serde_json::to_string(&f).unwrap_or_default();
                path.push_str(&format!("?filters={}", enc(&f)));
            }
            Err(e) => {
                eprintln!("{e}");
                return 125;
            }
        }
    }
    let mut nodes: Vec<Node> = match c.get(&path).await.and_then(decode_list) {
        Ok(l) => l,
        Err(e) => return super::report(&e, 1),
    };
    nodes.sort_by(|x, y| natural_cmp(&x.description.hostname, &y.description.hostname));
    let default_format = a
        .format
        .as_deref()
        .is_none_or(|f| f.is_empty() || f == "table");
    if a.quiet && default_format {
        for n in &nodes {
            println!("{}", n.id);
        }
        return 0;
    }
    let info = if nodes.is_empty() {
        Value::Null
    } else {
        match c.get("/info").await {
            Ok(v) => v,
            Err(e) => return super::report(&e, 1),
        }
    };
    let me = info["Swarm"]["NodeID"].as_str().unwrap_or_default();
    let cluster_tls = &info["Swarm"]["Cluster"]["TLSInfo"];
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let tls = serde_json::to_value(&n.description.tls_info).unwrap_or(Value::Null);
            let empty = |v: &Value| v["TrustRoot"].as_str().unwrap_or("").is_empty();
            let tls_status = if empty(cluster_tls) || empty(&tls) {
                "Unknown"
            } else if cluster_tls["TrustRoot"] == tls["TrustRoot"]
                && cluster_tls["CertIssuerPublicKey"] == tls["CertIssuerPublicKey"]
            {
                "Ready"
            } else {
                "Needs Rotation"
            };
            json!({
                "ID": n.id,
                "Self": n.id == me,
                "Hostname": n.description.hostname,
                "Status": pretty_state(n.status.state.as_str()),
                "Availability": pretty_state(&n.spec.availability),
                "ManagerStatus": manager_status(n),
                "EngineVersion": n.description.engine.engine_version,
                "TLSStatus": tls_status,
            })
        })
        .collect();
    if default_format {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mark = if r["Self"] == json!(true) { "*" } else { " " };
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                vec![
                    format!("{} {mark}", s("ID")),
                    s("Hostname"),
                    s("Status"),
                    s("Availability"),
                    s("ManagerStatus"),
                    s("EngineVersion"),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::format::table_go(
                &[
                    "ID",
                    "HOSTNAME",
                    "STATUS",
                    "AVAILABILITY",
                    "MANAGER STATUS",
                    "ENGINE VERSION"
                ],
                &table
            )
        );
        return 0;
    }
    tasks::print_rows(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[
            ("ID", "ID"),
            ("Self", ""),
            ("Hostname", "HOSTNAME"),
            ("Status", "STATUS"),
            ("Availability", "AVAILABILITY"),
            ("ManagerStatus", "MANAGER STATUS"),
            ("EngineVersion", "ENGINE VERSION"),
            ("TLSStatus", "TLS STATUS"),
        ],
    )
}

async fn inspect(c: &Client, a: InspectArgs) -> i32 {
    if a.pretty && a.format.as_deref().is_some_and(|f| !f.is_empty()) {
        eprintln!("--format is incompatible with human friendly format");
        return 1;
    }
    let mut raw = Vec::new();
    let mut rc = 0;
    for n in &a.nodes {
        let r = async {
            let id = node_reference(c, n).await?;
            c.get(&format!("/nodes/{}", enc(&id))).await
        }
        .await;
        match r {
            Ok(v) => raw.push(v),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
                // The human friendly form is all or nothing, as docker's.
                if a.pretty {
                    return rc;
                }
            }
        }
    }
    if raw.is_empty() {
        return rc;
    }
    if !a.pretty {
        return super::container::print_inspect(&raw, a.format.as_deref()).max(rc);
    }
    for v in raw {
        let n: Node = berth_api::decode::from_value(v).unwrap_or_default();
        println!("{}", pretty_node(&n));
    }
    rc
}

/// `node inspect --pretty`.
fn pretty_node(n: &Node) -> String {
    let mut l: Vec<String> = vec![format!("ID:\t\t\t{}", n.id)];
    if !n.spec.name.is_empty() {
        l.push(format!("Name:\t\t\t{}", n.spec.name));
    }
    if !n.spec.labels.is_empty() {
        l.push("Labels:".into());
        for (k, v) in &n.spec.labels {
            l.push(if v.is_empty() {
                format!(" - {k}")
            } else {
                format!(" - {k}={v}")
            });
        }
    }
    l.push(format!(
        "Hostname:              \t{}",
        n.description.hostname
    ));
    let joined = super::tasks::go_time_utc(&n.created_at);
    l.push(format!("Joined at:             \t{joined}"));
    l.push("Status:".into());
    l.push(format!(
        " State:\t\t\t{}",
        pretty_state(n.status.state.as_str())
    ));
    if !n.status.message.is_empty() {
        l.push(format!(" Message:              \t{}", n.status.message));
    }
    l.push(format!(
        " Availability:         \t{}",
        pretty_state(&n.spec.availability)
    ));
    if !n.status.addr.is_empty() {
        l.push(format!(" Address:\t\t{}", n.status.addr));
    }
    if let Some(m) = &n.manager_status {
        l.push("Manager Status:".into());
        l.push(format!(" Address:\t\t{}", m.addr));
        l.push(format!(
            " Raft Status:\t\t{}",
            pretty_state(m.reachability.as_str())
        ));
        l.push(format!(
            " Leader:\t\t{}",
            if m.leader { "Yes" } else { "No" }
        ));
    }
    l.push("Platform:".into());
    l.push(format!(" Operating System:\t{}", n.description.platform.os));
    l.push(format!(
        " Architecture:\t\t{}",
        n.description.platform.architecture
    ));
    l.push("Resources:".into());
    l.push(format!(
        " CPUs:\t\t\t{}",
        n.description.resources.nano_cpus / 1_000_000_000
    ));
    l.push(format!(
        " Memory:\t\t{}",
        berth_api::units::bytes_size(n.description.resources.memory_bytes as f64)
    ));
    let mut plugins: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for p in &n.description.engine.plugins {
        plugins
            .entry(p.kind.as_str())
            .or_default()
            .push(p.name.as_str());
    }
    if !plugins.is_empty() {
        l.push("Plugins:".into());
        for (k, mut v) in plugins {
            v.sort_unstable();
            l.push(format!(" {k}:\t\t{}", v.join(", ")));
        }
    }
    l.push(format!(
        "Engine Version:\t\t{}",
        n.description.engine.engine_version
    ));
    if !n.description.engine.labels.is_empty() {
        l.push("Engine Labels:".into());
        for (k, v) in &n.description.engine.labels {
            l.push(if v.is_empty() {
                format!(" - {k}")
            } else {
                format!(" - {k}={v}")
            });
        }
    }
    let tls = &n.description.tls_info;
    if !tls.trust_root.is_empty() {
        use data_encoding::BASE64;
        l.push("TLS Info:".into());
        l.push(" TrustRoot:".into());
        l.push(tls.trust_root.trim_end().to_string());
        l.push(format!(
            " Issuer Subject:\t{}",
            BASE64.encode(&tls.cert_issuer_subject)
        ));
        l.push(format!(
            " Issuer Public Key:\t{}",
            BASE64.encode(&tls.cert_issuer_public_key)
        ));
    }
    l.join("\n")
}

async fn ps(c: &Client, a: PsArgs) -> i32 {
    let names = if a.nodes.is_empty() {
        vec!["self".to_string()]
    } else {
        a.nodes.clone()
    };
    let base = match tasks::filter_map(&a.table.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return 125;
        }
    };
    let mut all = Vec::new();
    let mut errs = Vec::new();
    for name in &names {
        let n = match get_node(c, name).await {
            Ok(n) => n,
            Err(e) => {
                errs.push(e.to_string());
                continue;
            }
        };
        let mut f = base.clone();
        f.insert("node".into(), vec![n.id]);
        match tasks::list_tasks(c, &f).await {
            Ok(t) => all.extend(t),
            Err(e) => errs.push(e.to_string()),
        }
    }
    let mut rc = 0;
    if errs.is_empty() || !all.is_empty() {
        let trunc = !a.table.no_trunc;
        rc = tasks::print_tasks(
            c,
            all,
            a.table.no_resolve,
            trunc,
            a.table.quiet,
            a.table.format.as_deref(),
        )
        .await;
    }
    if !errs.is_empty() {
        eprintln!("{}", errs.join("\n"));
        return 1;
    }
    rc
}
