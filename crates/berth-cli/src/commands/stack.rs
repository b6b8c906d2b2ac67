//! `stack config|deploy|ls|ps|rm|services`: Compose files deployed as swarm services, client-side
//! as the docker CLI does it; everything a stack owns carries `com.docker.stack.namespace`.

use super::service::{self, LsArgs};
use super::tasks::{self, decode_list, print_tasks, TableArgs};
use crate::client::{enc, Client, Error};
use crate::format::Format;
use berth_api::swarm::Service;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The label that ties networks, secrets, configs and services to their stack.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// A network the stack needs: created with `body` (`POST /networks/create`) unless external.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPlan {
    pub name: String,
    pub external: bool,
    pub body: Value,
}

/// A secret or config the stack needs: created from `data` unless external.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPlan {
    pub name: String,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// A service of the stack: `spec` is its `ServiceSpec`, whose secret and config references
/// name their objects (`SecretName`, `ConfigName`); their IDs are looked up at deploy time.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    pub name: String,
    pub spec: Value,
}

/// Everything `stack deploy` creates or updates, in creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackPlan {
    pub networks: Vec<NetworkPlan>,
    pub secrets: Vec<ObjectPlan>,
    pub configs: Vec<ObjectPlan>,
    pub services: Vec<ServicePlan>,
}

/// Reads Compose files for a stack (the compose crate's loader, given by the `berth` binary).
pub trait StackLoader {
    /// The plan for stack `namespace` from `files` (`-` is stdin).
    fn plan(&self, files: &[PathBuf], namespace: &str) -> Result<StackPlan, String>;
    /// The merged, interpolated project as YAML (`stack config`).
    fn config(&self, files: &[PathBuf], skip_interpolation: bool) -> Result<String, String>;
}

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Outputs the final config file, after doing merges and interpolations
    Config(ConfigArgs),
    /// Deploy a new stack or update an existing stack
    #[command(alias = "up")]
    Deploy(DeployArgs),
    /// List stacks
    #[command(alias = "list")]
    Ls(StackLsArgs),
    /// List the tasks in the stack
    Ps(StackPsArgs),
    /// Remove one or more stacks
    #[command(aliases = ["remove", "down"])]
    Rm(StackRmArgs),
    /// List the services in the stack
    Services(StackServicesArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Path to a Compose file, or "-" to read from stdin
    #[arg(short = 'c', long = "compose-file", required = true)]
    pub compose_file: Vec<PathBuf>,
    /// Skip interpolation and output only merged config
    #[arg(long = "skip-interpolation")]
    pub skip_interpolation: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Path to a Compose file, or "-" to read from stdin
    #[arg(short = 'c', long = "compose-file", required = true)]
    pub compose_file: Vec<PathBuf>,
    /// Exit immediately instead of waiting for the stack services to converge (default true)
    #[arg(short = 'd', long, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: Option<bool>,
    /// Prune services that are no longer referenced
    #[arg(long)]
    pub prune: bool,
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Query the registry to resolve image digest and supported platforms ("always",
    /// "changed", "never"); berth sends the reference as written (its daemon resolves it
    /// when pulling), and "changed" and "never" keep an unchanged image's reference on update
    #[arg(long = "resolve-image", default_value = "always",
          value_parser = ["always", "changed", "never"])]
    pub resolve_image: String,
    /// Send registry authentication details to Swarm agents
    #[arg(long = "with-registry-auth")]
    pub with_registry_auth: bool,
    pub stack: String,
}

#[derive(Debug, Args)]
pub struct StackLsArgs {
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct StackPsArgs {
    #[command(flatten)]
    pub table: TableArgs,
    pub stack: String,
}

#[derive(Debug, Args)]
pub struct StackServicesArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    pub stack: String,
}

#[derive(Debug, Args)]
pub struct StackRmArgs {
    /// Do not wait for stack removal
    #[arg(short = 'd', long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: bool,
    #[arg(required = true)]
    pub stacks: Vec<String>,
}

pub async fn dispatch(c: &Client, cmd: StackCommand, loader: &dyn StackLoader) -> i32 {
    let r = match cmd {
        StackCommand::Config(a) => match loader.config(&a.compose_file, a.skip_interpolation) {
            Ok(y) => {
                print!("{y}");
                Ok(())
            }
            Err(e) => Err(e),
        },
        StackCommand::Deploy(a) => deploy(c, a, loader).await,
        StackCommand::Ls(a) => return ls(c, a).await,
        StackCommand::Ps(a) => return ps(c, a).await,
        StackCommand::Rm(a) => rm(c, a).await,
        StackCommand::Services(a) => return services(c, a).await,
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `filters={"label":["com.docker.stack.namespace=NAME"]}` for a list path.
fn namespace_query(namespace: &str) -> String {
    let f = json!({ "label": [format!("{NAMESPACE_LABEL}={namespace}")] }).to_string();
    format!("filters={}", enc(&f))
}

/// A stack name as docker checks it: something besides quotes and white space.
fn check_name(name: &str) -> Result<(), String> {
    if name
        .trim_matches(|ch: char| ch.is_whitespace() || ch == '"' || ch == '\'')
        .is_empty()
    {
        return Err(format!("invalid stack name: {name:?}"));
    }
    Ok(())
}

/// Objects of a kind (`networks`, `secrets`, `configs`, `services`) labelled with the stack,
/// as (name, id) pairs sorted by name.
async fn owned(c: &Client, kind: &str, namespace: &str) -> Result<Vec<(String, String)>, Error> {
    let v = c
        .get(&format!("/{kind}?{}", namespace_query(namespace)))
        .await?;
    let mut out: Vec<(String, String)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            let labels = if kind == "networks" {
                &o["Labels"]
            } else {
                &o["Spec"]["Labels"]
            };
            labels[NAMESPACE_LABEL].as_str() == Some(namespace)
        })
        .map(|o| {
            let name = o["Name"]
                .as_str()
                .or_else(|| o["Spec"]["Name"].as_str())
                .unwrap_or_default();
            let id = o["Id"]
                .as_str()
                .or_else(|| o["ID"].as_str())
                .unwrap_or_default();
            (name.to_string(), id.to_string())
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn deploy(c: &Client, a: DeployArgs, loader: &dyn StackLoader) -> Result<(), String> {
    check_name(&a.stack)?;
    let info = c.get("/info").await.map_err(|e| e.to_string())?;
    if info["Swarm"]["ControlAvailable"].as_bool() != Some(true) {
        return Err(
            "this node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again"
                .into(),
        );
    }
    let plan = loader.plan(&a.compose_file, &a.stack)?;
    if a.detach.is_none() {
        eprintln!("Since --detach=false was not specified, tasks will be created in the background.\nIn a future release, --detach=false will become the default.");
    }
    let err = |e: Error| e.to_string();
    if a.prune {
        let wanted: BTreeSet<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        for (name, id) in owned(c, "services", &a.stack).await.map_err(err)? {
            if !wanted.contains(name.as_str()) {
                println!("Removing service {name}");
                c.json(
                    hyper::Method::DELETE,
                    &format!("/services/{}", enc(&id)),
                    None,
                )
                .await
                .map_err(|e| format!("Failed to remove service {name}: {e}"))?;
            }
        }
    }
    // Networks: the stack's own are created once; external ones must exist in the swarm.
    let existing: BTreeSet<String> = owned(c, "networks", &a.stack)
        .await
        .map_err(err)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for n in &plan.networks {
        if n.external {
            let found = c
                .get(&format!("/networks/{}", enc(&n.name)))
                .await
                .ok()
                .filter(|v| v["Scope"].as_str() == Some("swarm"));
            if found.is_none() {
                return Err(format!(
                    "network {:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed",
                    n.name
                ));
            }
            continue;
        }
        if existing.contains(&n.name) {
            continue;
        }
        println!("Creating network {}", n.name);
        c.post("/networks/create", Some(n.body.clone()))
            .await
            .map_err(|e| format!("failed to create network {}: {e}", n.name))?;
    }
    let secret_ids = objects(c, "secrets", &plan.secrets).await?;
    let config_ids = objects(c, "configs", &plan.configs).await?;
    let current: BTreeMap<String, String> = owned(c, "services", &a.stack)
        .await
        .map_err(err)?
        .into_iter()
        .collect();
    let mut deployed = Vec::new();
    for s in &plan.services {
        let mut spec = s.spec.clone();
        resolve_refs(&mut spec, "Secrets", "SecretName", "SecretID", &secret_ids)?;
        resolve_refs(&mut spec, "Configs", "ConfigName", "ConfigID", &config_ids)?;
        // As docker: the image as written is kept in a label (for `--resolve-image changed`
        // on a later deploy) and sent in its familiar form with its tag.
        let written = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(l) = spec["Labels"].as_object_mut() {
            l.insert("com.docker.stack.image".into(), json!(written));
        }
        let image = service::with_tag(&written);
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = json!(image);
        let auth = if a.with_registry_auth {
            crate::header_for_image(&image)
        } else {
            None
        };
        let headers: Vec<(&str, String)> =
            auth.into_iter().map(|h| ("X-Registry-Auth", h)).collect();
        let id = match current.get(&s.name) {
            Some(id) => {
                println!("Updating service {} (id: {id})", s.name);
                let old = c
                    .get(&format!("/services/{}", enc(id)))
                    .await
                    .map_err(err)?;
                let version = old["Version"]["Index"].as_u64().unwrap_or(0);
                // An unchanged image keeps what the service has (a digest pinned at an earlier
                // deploy), as docker does unless asked to resolve it always.
                if a.resolve_image != "always"
                    && old["Spec"]["Labels"]["com.docker.stack.image"].as_str()
                        == Some(written.as_str())
                {
                    spec["TaskTemplate"]["ContainerSpec"]["Image"] =
                        old["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].clone();
                }
                // A forced update stays forced: the counter is kept, as docker keeps it.
                if let Some(f) = old["Spec"]["TaskTemplate"]["ForceUpdate"].as_u64() {
                    spec["TaskTemplate"]["ForceUpdate"] = json!(f);
                }
                let path = format!("/services/{}/update?version={version}", enc(id));
                let v = send_json(c, &path, &spec, &headers)
                    .await
                    .map_err(|e| format!("failed to update service {}: {e}", s.name))?;
                print_warnings(&v);
                id.clone()
            }
            None => {
                println!("Creating service {}", s.name);
                let v = send_json(c, "/services/create", &spec, &headers)
                    .await
                    .map_err(|e| format!("failed to create service {}: {e}", s.name))?;
                print_warnings(&v);
                v["ID"].as_str().unwrap_or_default().to_string()
            }
        };
        deployed.push(id);
    }
    if a.detach == Some(false) {
        for id in &deployed {
            super::service_progress::wait(c, id, a.quiet).await?;
        }
    }
    Ok(())
}

/// The daemon's `Warnings` of a service create or update, on stderr as docker prints them.
fn print_warnings(answer: &Value) {
    for w in answer["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("{w}");
        }
    }
}

/// A JSON POST with extra headers; the JSON answer.
async fn send_json(
    c: &Client,
    path: &str,
    body: &Value,
    headers: &[(&str, String)],
) -> Result<Value, Error> {
    let resp = c
        .send_with(
            hyper::Method::POST,
            path,
            crate::client::json_body(body),
            "application/json",
            headers,
        )
        .await?;
    let bytes = crate::client::read_all(resp).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Other(format!("bad answer from daemon: {e}")))
}

/// Secrets or configs of the plan: the stack's own are created when missing and updated in
/// place (the swarm refuses changed data, as for docker) when present; external ones must
/// exist. Gives every name's ID.
async fn objects(
    c: &Client,
    kind: &str,
    plan: &[ObjectPlan],
) -> Result<BTreeMap<String, String>, String> {
    let singular = kind.trim_end_matches('s');
    let mut ids = BTreeMap::new();
    if plan.is_empty() {
        return Ok(ids);
    }
    let names: Vec<&str> = plan.iter().map(|o| o.name.as_str()).collect();
    let f = json!({ "name": names }).to_string();
    let list = c
        .get(&format!("/{kind}?filters={}", enc(&f)))
        .await
        .map_err(|e| e.to_string())?;
    let mut versions = BTreeMap::new();
    for item in list.as_array().into_iter().flatten() {
        let name = item["Spec"]["Name"].as_str().unwrap_or_default();
        if names.contains(&name) {
            let id = item["ID"].as_str().unwrap_or_default();
            ids.insert(name.to_string(), id.to_string());
            versions.insert(
                name.to_string(),
                item["Version"]["Index"].as_u64().unwrap_or(0),
            );
        }
    }
    for o in plan {
        let body = json!({
            "Name": o.name,
            "Labels": o.labels,
            "Data": data_encoding::BASE64.encode(&o.data),
        });
        match (ids.get(&o.name), o.external) {
            (Some(_), true) => {}
            (None, true) => return Err(format!("{singular} not found: {}", o.name)),
            (Some(id), false) => {
                let version = versions.get(&o.name).copied().unwrap_or(0);
                c.post(
                    &format!("/{kind}/{}/update?version={version}", enc(id)),
                    Some(body),
                )
                .await
                .map_err(|e| format!("failed to update {singular} {}: {e}", o.name))?;
            }
            (None, false) => {
                println!("Creating {singular} {}", o.name);
                let v = c
                    .post(&format!("/{kind}/create"), Some(body))
                    .await
                    .map_err(|e| format!("failed to create {singular} {}: {e}", o.name))?;
                ids.insert(
                    o.name.clone(),
                    v["ID"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
    }
    Ok(ids)
}

/// Fill `TaskTemplate.ContainerSpec.<list>[].<id_key>` from the names in `<name_key>`.
fn resolve_refs(
    spec: &mut Value,
    list: &str,
    name_key: &str,
    id_key: &str,
    ids: &BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(refs) = spec["TaskTemplate"]["ContainerSpec"][list].as_array_mut() else {
        return Ok(());
    };
    for r in refs {
        let name = r[name_key].as_str().unwrap_or_default().to_string();
        match ids.get(&name) {
            Some(id) => r[id_key] = json!(id),
            None => return Err(format!("{name_key} {name:?} is not in the stack's file")),
        }
    }
    Ok(())
}

async fn ls(c: &Client, a: StackLsArgs) -> i32 {
    let list: Vec<Service> = match c.get("/services").await.and_then(decode_list) {
        Ok(l) => l,
        Err(e) => return super::report(&e, 1),
    };
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for s in &list {
        if let Some(ns) = s.spec.labels.get(NAMESPACE_LABEL) {
            *count.entry(ns.clone()).or_default() += 1;
        }
    }
    let mut names: Vec<(&String, &usize)> = count.iter().collect();
    names.sort_by(|a, b| tasks::natural_cmp(a.0, b.0));
    let rows: Vec<Value> = names
        .into_iter()
        .map(|(name, n)| json!({ "Name": name, "Services": n.to_string() }))
        .collect();
    tasks::print_rows(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[("Name", "NAME"), ("Services", "SERVICES")],
    )
}

async fn services(c: &Client, a: StackServicesArgs) -> i32 {
    if let Err(e) = check_name(&a.stack) {
        eprintln!("{e}");
        return 1;
    }
    match owned(c, "services", &a.stack).await {
        Ok(l) if l.is_empty() => {
            eprintln!("Nothing found in stack: {}", a.stack);
            return 0;
        }
        Ok(_) => {}
        Err(e) => return super::report(&e, 1),
    }
    let mut filter = a.filter;
    filter.push(format!("label={NAMESPACE_LABEL}={}", a.stack));
    service::ls(
        c,
        LsArgs {
            filter,
            format: a.format,
            quiet: a.quiet,
        },
    )
    .await
}

async fn ps(c: &Client, a: StackPsArgs) -> i32 {
    if let Err(e) = check_name(&a.stack) {
        eprintln!("{e}");
        return 1;
    }
    let mut filters = match tasks::filter_map(&a.table.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return 125;
        }
    };
    if let Some(nodes) = filters.get_mut("node") {
        for n in nodes.iter_mut() {
            match tasks::node_reference(c, n).await {
                Ok(id) => *n = id,
                Err(e) => return super::report(&e, 1),
            }
        }
    }
    filters
        .entry("label".into())
        .or_default()
        .push(format!("{NAMESPACE_LABEL}={}", a.stack));
    let list = match tasks::list_tasks(c, &filters).await {
        Ok(l) => l,
        Err(e) => return super::report(&e, 1),
    };
    if list.is_empty() {
        eprintln!("nothing found in stack: {}", a.stack);
        return 1;
    }
    let trunc = !a.table.no_trunc && !a.table.quiet;
    print_tasks(
        c,
        list,
        a.table.no_resolve,
        trunc,
        a.table.quiet,
        a.table.format.as_deref(),
    )
    .await
}

async fn rm(c: &Client, a: StackRmArgs) -> Result<(), String> {
    let mut errs = Vec::new();
    for ns in &a.stacks {
        check_name(ns)?;
        let mut lists = Vec::new();
        for (kind, what) in [
            ("services", "service"),
            ("secrets", "secret"),
            ("configs", "config"),
            ("networks", "network"),
        ] {
            let list = owned(c, kind, ns).await.map_err(|e| e.to_string())?;
            lists.push((kind, what, list));
        }
        if lists.iter().all(|(_, _, l)| l.is_empty()) {
            eprintln!("Nothing found in stack: {ns}");
            continue;
        }
        let mut failed = false;
        for (kind, what, list) in lists {
            for (name, id) in list {
                println!("Removing {what} {name}");
                let path = format!("/{kind}/{}", enc(&id));
                if let Err(e) = c.json(hyper::Method::DELETE, &path, None).await {
                    eprintln!("Failed to remove {what} {id}: {e}");
                    failed = true;
                }
            }
        }
        if failed {
            errs.push(format!("failed to remove some resources from stack: {ns}"));
            continue;
        }
        if !a.detach {
            if let Err(e) = wait_tasks_gone(c, ns).await {
                errs.push(format!("failed to wait on tasks of stack: {ns}: {e}"));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

/// `stack rm --detach=false`: until no task of the stack is left (checked each 500ms).
async fn wait_tasks_gone(c: &Client, ns: &str) -> Result<(), String> {
    let mut filters = BTreeMap::new();
    filters.insert("label".to_string(), vec![format!("{NAMESPACE_LABEL}={ns}")]);
    loop {
        let list = tasks::list_tasks(c, &filters)
            .await
            .map_err(|e| e.to_string())?;
        if list.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_are_checked() {
        assert!(check_name("st").is_ok());
        assert!(check_name("my-app_1.x").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(" '\"").is_err());
    }

    #[test]
    fn refs_get_their_ids() {
        let mut spec = json!({"TaskTemplate": {"ContainerSpec": {"Configs": [
            {"ConfigName": "st_cfg", "File": {"Name": "/cfg"}}
        ]}}});
        let ids = BTreeMap::from([("st_cfg".to_string(), "abc".to_string())]);
        resolve_refs(&mut spec, "Configs", "ConfigName", "ConfigID", &ids).unwrap();
        assert_eq!(
            spec["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigID"],
            "abc"
        );
        let err = resolve_refs(
            &mut spec,
            "Configs",
            "ConfigName",
            "ConfigID",
            &BTreeMap::new(),
        );
        assert!(err.is_err());
    }
}
