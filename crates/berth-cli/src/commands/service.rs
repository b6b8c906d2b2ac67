//! `service create|inspect|logs|ls|ps|rm|rollback|scale|update`: swarm services through the
//! Engine API, with the docker CLI's output (tables, `--format`, `-q`, progress until the
//! service converges unless `-d`).

use super::service_opts::{self, CreateArgs, FileRefs, UpdateArgs};
pub use super::tasks::LsArgs;
use super::tasks::{self, decode_list, print_tasks, short_id, TableArgs};
use crate::client::{enc, Client, Error};
use crate::format::Format;
use berth_api::swarm::{PortConfig, Service, ServiceSpec, Task};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a new service
    Create(Box<CreateArgs>),
    /// Display detailed information on one or more services
    Inspect(InspectArgs),
    /// Fetch the logs of a service or task
    Logs(LogsArgs),
    /// List services
    #[command(alias = "list")]
    Ls(LsArgs),
    /// List the tasks of one or more services
    Ps(PsArgs),
    /// Remove one or more services
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Move running tasks off the most loaded nodes until the service is spread evenly
    /// (berth's own: Docker only spreads new tasks)
    Rebalance(NamesArgs),
    /// Revert changes to a service's configuration
    Rollback(RollbackArgs),
    /// Scale one or multiple replicated services
    Scale(ScaleArgs),
    /// Update a service
    Update(Box<UpdateArgs>),
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
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Do not map IDs to Names in output
    #[arg(long = "no-resolve")]
    pub no_resolve: bool,
    /// Do not include task IDs in output
    #[arg(long = "no-task-ids")]
    pub no_task_ids: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Do not neatly format logs
    #[arg(long)]
    pub raw: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub table: TableArgs,
    #[arg(required = true)]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: bool,
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub service: String,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short = 'd', long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub detach: bool,
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub scales: Vec<String>,
}

pub async fn dispatch(c: &Client, cmd: ServiceCommand) -> i32 {
    let r = match cmd {
        ServiceCommand::Create(a) => create(c, *a).await,
        ServiceCommand::Inspect(a) => return inspect(c, a).await,
        ServiceCommand::Logs(a) => logs(c, a).await,
        ServiceCommand::Ls(a) => return ls(c, a).await,
        ServiceCommand::Ps(a) => return ps(c, a).await,
        ServiceCommand::Rm(a) => rm(c, a).await,
        ServiceCommand::Rebalance(a) => rebalance(c, a).await,
        ServiceCommand::Rollback(a) => rollback(c, a).await,
        ServiceCommand::Scale(a) => scale(c, a).await,
        ServiceCommand::Update(a) => update(c, *a).await,
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `GET /services/{name}`: the service as stored.
async fn get_service(c: &Client, name: &str) -> Result<Service, Error> {
    let v = c.get(&format!("/services/{}", enc(name))).await?;
    berth_api::decode::from_value(v)
        .map_err(|e| Error::Other(format!("bad answer from daemon: {e}")))
}

/// Names of secrets (`/secrets`) or configs (`/configs`) to their IDs, as the daemon lists them.
async fn resolve_ids(
    c: &Client,
    kind: &str,
    refs: &FileRefs,
) -> Result<BTreeMap<String, String>, String> {
    if refs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let names: Vec<&str> = refs.iter().map(|(n, _)| n.as_str()).collect();
    let f = json!({ "name": names }).to_string();
    let list = c
        .get(&format!("/{kind}?filters={}", enc(&f)))
        .await
        .map_err(|e| e.to_string())?;
    let mut ids = BTreeMap::new();
    for item in list.as_array().into_iter().flatten() {
        let name = item["Spec"]["Name"].as_str().unwrap_or_default();
        if names.contains(&name) {
            ids.insert(
                name.to_string(),
                item["ID"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    Ok(ids)
}

/// A network name as the ID the daemon knows it by (swarm scope).
async fn network_id(c: &Client, name: &str) -> Result<String, String> {
    let v = c
        .get(&format!("/networks/{}?scope=swarm", enc(name)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(v["Id"].as_str().unwrap_or(name).to_string())
}

/// An image reference as the docker client sends it: in its familiar form (without
/// `docker.io/library/`), with `:latest` when it names neither a tag nor a digest.
pub fn with_tag(image: &str) -> String {
    if image.is_empty()
        || image
            .chars()
            .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
    {
        return image.to_string();
    }
    let fam = [
        "index.docker.io/library/",
        "docker.io/library/",
        "index.docker.io/",
        "docker.io/",
    ]
    .iter()
    .find_map(|p| image.strip_prefix(p))
    .unwrap_or(image);
    let last = fam.rsplit('/').next().unwrap_or(fam);
    if fam.contains('@') || last.contains(':') {
        fam.to_string()
    } else {
        format!("{fam}:latest")
    }
}

/// Tag the spec's image as [`with_tag`] does.
fn tag_image(spec: &mut ServiceSpec) {
    if let Some(cs) = spec.task_template.container_spec.as_mut() {
        cs.image = with_tag(&cs.image);
    }
}

/// `X-Registry-Auth` for `--with-registry-auth`.
fn auth_headers(with_auth: bool, image: &str) -> Vec<(&'static str, String)> {
    if !with_auth {
        return Vec::new();
    }
    crate::auth::header_for_image(image)
        .map(|h| vec![("X-Registry-Auth", h)])
        .unwrap_or_default()
}

/// Pin the image to its digest and platforms as the registry reports them (the docker CLI's
/// default); a registry that cannot be asked leaves the image as given, with a warning.
async fn resolve_image(c: &Client, spec: &mut ServiceSpec, with_auth: bool) -> Option<String> {
    let cs = spec.task_template.container_spec.as_mut()?;
    let image = cs.image.clone();
    let headers = auth_headers(with_auth, &image);
    let answer = c
        .send_with(
            hyper::Method::GET,
            &format!("/distribution/{}/json", enc(&image)),
            crate::client::empty(),
            "application/json",
            &headers,
        )
        .await;
    let body = match answer {
        Ok(r) => crate::client::read_all(r).await.ok(),
        Err(_) => None,
    };
    let v: Option<Value> = body.and_then(|b| serde_json::from_slice(&b).ok());
    let digest = v
        .as_ref()
        .and_then(|v| v["Descriptor"]["Digest"].as_str())
        .filter(|d| !d.is_empty());
    let Some(digest) = digest else {
        return Some(format!(
            "image {image} could not be accessed on a registry to record\nits digest. Each node will access {image} independently,\npossibly leading to different nodes running\ndifferent versions of the image.\n"
        ));
    };
    if !image.contains('@') {
        cs.image = format!("{image}@{digest}");
    }
    let platforms: Vec<berth_api::swarm::Platform> = v
        .as_ref()
        .and_then(|v| v["Platforms"].as_array())
        .into_iter()
        .flatten()
        .map(|p| berth_api::swarm::Platform {
            architecture: p["architecture"].as_str().unwrap_or_default().to_string(),
            os: p["os"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    if !platforms.is_empty() {
        spec.task_template
            .placement
            .get_or_insert_with(Default::default)
            .platforms = platforms;
    }
    None
}

async fn create(c: &Client, a: CreateArgs) -> Result<(), String> {
    let (mut spec, secrets, configs) = a.spec()?;
    let common = &a.common;
    let sids = resolve_ids(c, "secrets", &secrets).await?;
    let cids = resolve_ids(c, "configs", &configs).await?;
    if let Some(cs) = spec.task_template.container_spec.as_mut() {
        cs.secrets = service_opts::secret_refs(&secrets, &sids)?;
        cs.configs = service_opts::config_refs(&configs, &cids)?;
        // A credential spec naming a config refers to it by ID, as a runtime config.
        if let Some(name) = cs
            .privileges
            .as_ref()
            .and_then(|p| p.credential_spec.as_ref())
            .map(|c| c.config.clone())
            .filter(|n| !n.is_empty())
        {
            let refs = vec![(name.clone(), Default::default())];
            let ids = resolve_ids(c, "configs", &refs).await?;
            let id = ids
                .get(&name)
                .cloned()
                .ok_or_else(|| format!("config not found: {name}"))?;
            cs.configs.push(berth_api::swarm::ConfigReference {
                file: None,
                runtime: Some(Default::default()),
                config_id: id.clone(),
                config_name: name,
            });
            if let Some(cred) = cs
                .privileges
                .as_mut()
                .and_then(|p| p.credential_spec.as_mut())
            {
                cred.config = id;
            }
        }
    }
    for n in spec.task_template.networks.iter_mut() {
        n.target = network_id(c, &n.target).await?;
    }
    spec.task_template
        .networks
        .sort_by(|x, y| x.target.cmp(&y.target));
    let mut warnings = Vec::new();
    if !common.no_resolve_image {
        warnings.extend(resolve_image(c, &mut spec, common.with_registry_auth).await);
    }
    tag_image(&mut spec);
    let image = spec
        .task_template
        .container_spec
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    let body = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    let headers = auth_headers(common.with_registry_auth, &image);
    let resp = c
        .send_with(
            hyper::Method::POST,
            "/services/create",
            crate::client::json_body(&body),
            "application/json",
            &headers,
        )
        .await
        .map_err(|e| e.to_string())?;
    let bytes = crate::client::read_all(resp)
        .await
        .map_err(|e| e.to_string())?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("bad answer from daemon: {e}"))?;
    for w in warnings.iter().map(String::as_str).chain(
        v["Warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    ) {
        eprintln!("{w}");
    }
    let id = v["ID"].as_str().unwrap_or_default().to_string();
    println!("{id}");
    if common.detach {
        return Ok(());
    }
    super::service_progress::wait(c, &id, common.quiet).await
}

/// `POST /services/{id}/update` with the spec; warnings go to stderr.
async fn post_update(
    c: &Client,
    s: &Service,
    spec: &ServiceSpec,
    query: &str,
    headers: &[(&str, String)],
) -> Result<(), String> {
    let body = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    let resp = c
        .send_with(
            hyper::Method::POST,
            &format!(
                "/services/{}/update?version={}{query}",
                enc(&s.id),
                s.version.index
            ),
            crate::client::json_body(&body),
            "application/json",
            headers,
        )
        .await
        .map_err(|e| e.to_string())?;
    let bytes = crate::client::read_all(resp)
        .await
        .map_err(|e| e.to_string())?;
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        for w in v["Warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            eprintln!("{w}");
        }
    }
    Ok(())
}

async fn update(c: &Client, a: UpdateArgs) -> Result<(), String> {
    a.check()?;
    let s = get_service(c, &a.service)
        .await
        .map_err(|e| e.to_string())?;
    let mut spec = s.spec.clone();
    let (secrets, configs) = a.apply(&mut spec)?;
    let sids = resolve_ids(c, "secrets", &secrets).await?;
    let cids = resolve_ids(c, "configs", &configs).await?;
    let add_s = service_opts::secret_refs(&secrets, &sids)?;
    let add_c = service_opts::config_refs(&configs, &cids)?;
    if let Some(cs) = spec.task_template.container_spec.as_mut() {
        cs.secrets.extend(add_s);
        cs.configs.extend(add_c);
    }
    if !a.network_add.is_empty() || !a.network_rm.is_empty() {
        let mut rm = Vec::new();
        for n in &a.network_rm {
            rm.push(network_id(c, n).await?);
        }
        let nets = &mut spec.task_template.networks;
        nets.retain(|n| !rm.contains(&n.target) && !a.network_rm.contains(&n.target));
        for n in &a.network_add {
            let mut att = service_opts::parse_network(n)
                .map_err(|e| super::resources::flag_error("--network-add", n, &e))?;
            att.target = network_id(c, &att.target).await?;
            if nets.iter().any(|x| x.target == att.target) {
                return Err(format!(
                    "service is already attached to network {}",
                    att.target
                ));
            }
            nets.push(att);
        }
        nets.sort_by(|x, y| x.target.cmp(&y.target));
    }
    let mut query = String::new();
    if a.rollback {
        query.push_str("&rollback=previous");
    }
    let image = spec
        .task_template
        .container_spec
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    if a.image.is_some() && !a.common.no_resolve_image {
        if let Some(w) = resolve_image(c, &mut spec, a.common.with_registry_auth).await {
            eprintln!("{w}");
        }
    }
    tag_image(&mut spec);
    let headers = auth_headers(a.common.with_registry_auth, &image);
    if headers.is_empty() {
        query.push_str("&registryAuthFrom=spec");
    }
    post_update(c, &s, &spec, &query, &headers).await?;
    println!("{}", a.service);
    if a.common.detach {
        return Ok(());
    }
    super::service_progress::wait(c, &a.service, a.common.quiet).await
}

async fn rollback(c: &Client, a: RollbackArgs) -> Result<(), String> {
    let s = get_service(c, &a.service)
        .await
        .map_err(|e| e.to_string())?;
    post_update(c, &s, &s.spec, "&rollback=previous", &[]).await?;
    println!("{}", a.service);
    if a.detach {
        return Ok(());
    }
    super::service_progress::wait(c, &a.service, a.quiet).await
}

async fn scale(c: &Client, a: ScaleArgs) -> Result<(), String> {
    for s in &a.scales {
        match s.split_once('=') {
            Some((name, _)) if !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "invalid scale specifier '{s}'.\nSee 'docker service scale --help'.\n\nUsage:  docker service scale SERVICE=REPLICAS [SERVICE=REPLICAS...]\n\nScale one or multiple replicated services"
                ))
            }
        }
    }
    let mut errs = Vec::new();
    let mut done = Vec::new();
    for arg in &a.scales {
        let (name, n) = arg.split_once('=').unwrap_or((arg, ""));
        let Ok(n) = n.parse::<u64>() else {
            errs.push(format!(
                "{name}: invalid replicas value {n}: strconv.ParseUint: parsing \"{n}\": invalid syntax"
            ));
            continue;
        };
        let r = async {
            let s = get_service(c, name).await.map_err(|e| e.to_string())?;
            let mut spec = s.spec.clone();
            if let Some(r) = spec.mode.replicated.as_mut() {
                r.replicas = Some(n);
            } else if let Some(j) = spec.mode.replicated_job.as_mut() {
                j.total_completions = Some(n);
            } else {
                return Err(
                    "scale can only be used with replicated or replicated-job mode".to_string(),
                );
            }
            post_update(c, &s, &spec, "", &[]).await
        }
        .await;
        match r {
            Ok(()) => {
                println!("{name} scaled to {n}");
                done.push(name.to_string());
            }
            Err(e) => errs.push(format!("{name}: {e}")),
        }
    }
    if !a.detach {
        for name in &done {
            if let Err(e) = super::service_progress::wait(c, name, false).await {
                errs.push(format!("{name}: {e}"));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

async fn rm(c: &Client, a: NamesArgs) -> Result<(), String> {
    each(&a.services, |s| async move {
        c.json(
            hyper::Method::DELETE,
            &format!("/services/{}", enc(&s)),
            None,
        )
        .await
        .map(|_| s)
    })
    .await
}

async fn rebalance(c: &Client, a: NamesArgs) -> Result<(), String> {
    each(&a.services, |s| async move {
        let path = format!("/services/{}/rebalance", enc(&s));
        c.json(hyper::Method::POST, &path, None)
            .await
            .map(|v| format!("{s}: {} task(s) moved", v["Moved"].as_u64().unwrap_or(0)))
    })
    .await
}

/// Runs `f` for every service named, printing what each success returns; the errors are
/// reported together at the end, as docker's commands over several objects do.
async fn each<F, Fut, E>(names: &[String], f: F) -> Result<(), String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, E>>,
    E: std::fmt::Display,
{
    let mut errs = Vec::new();
    for s in names {
        match f(s.clone()).await {
            Ok(line) => println!("{line}"),
            Err(e) => errs.push(e.to_string()),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

/// `service ls`'s REPLICAS column.
fn replicas_text(s: &Service) -> String {
    let st = s.service_status.clone().unwrap_or_default();
    let (running, desired, completed) = (st.running_tasks, st.desired_tasks, st.completed_tasks);
    let m = &s.spec.mode;
    if let Some(j) = &m.replicated_job {
        return format!(
            "{running}/{desired} ({completed}/{} completed)",
            j.total_completions.unwrap_or(0)
        );
    }
    if m.global_job.is_some() {
        return format!(
            "{running}/{desired} ({completed}/{} completed)",
            desired + completed
        );
    }
    let max = s
        .spec
        .task_template
        .placement
        .as_ref()
        .map(|p| p.max_replicas)
        .unwrap_or(0);
    if m.replicated.is_some() && max > 0 {
        return format!("{running}/{desired} (max {max} per node)");
    }
    format!("{running}/{desired}")
}

fn mode_text(s: &Service) -> &'static str {
    let m = &s.spec.mode;
    if m.global.is_some() {
        "global"
    } else if m.replicated.is_some() {
        "replicated"
    } else if m.replicated_job.is_some() {
        "replicated job"
    } else if m.global_job.is_some() {
        "global job"
    } else {
        ""
    }
}

/// `service ls`'s PORTS column: ingress ports, consecutive ones merged into ranges.
pub fn ports_text(ports: &[PortConfig]) -> String {
    let mut ports: Vec<&PortConfig> = ports
        .iter()
        .filter(|p| p.publish_mode.is_empty() || p.publish_mode == "ingress")
        .collect();
    ports.sort_by(|a, b| {
        (a.protocol.as_str(), a.published_port).cmp(&(b.protocol.as_str(), b.published_port))
    });
    let mut ranges: Vec<(u32, u32, u32, u32, String)> = Vec::new();
    for p in ports {
        if let Some(last) = ranges.last_mut() {
            if last.4 == p.protocol && p.published_port == last.1 + 1 && p.target_port == last.3 + 1
            {
                last.1 = p.published_port;
                last.3 = p.target_port;
                continue;
            }
        }
        ranges.push((
            p.published_port,
            p.published_port,
            p.target_port,
            p.target_port,
            p.protocol.clone(),
        ));
    }
    ranges
        .into_iter()
        .map(|(p0, p1, t0, t1, proto)| {
            let pubs = if p1 > p0 {
                format!("{p0}-{p1}")
            } else {
                p0.to_string()
            };
            let tgts = if t1 > t0 {
                format!("{t0}-{t1}")
            } else {
                t0.to_string()
            };
            format!("*:{pubs}->{tgts}/{proto}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ls(c: &Client, a: LsArgs) -> i32 {
    let mut path = format!("/services?status={}", !a.quiet);
    if !a.filter.is_empty() {
        match tasks::filter_map(&a.filter) {
            Ok(f) => {
                let f = serde_json::to_string(&f).unwrap_or_default();
                path.push_str(&format!("&filters={}", enc(&f)));
            }
            Err(e) => {
                eprintln!("{e}");
                return 125;
            }
        }
    }
    let list: Vec<Service> = match c.get(&path).await.and_then(decode_list) {
        Ok(l) => l,
        Err(e) => return super::report(&e, 1),
    };
    let mut list = list;
    list.sort_by(|x, y| tasks::natural_cmp(&x.spec.name, &y.spec.name));
    if a.quiet
        && a.format
            .as_deref()
            .is_none_or(|f| f.is_empty() || f == "table")
    {
        for s in &list {
            println!("{}", short_id(&s.id));
        }
        return 0;
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|s| {
            let image = s
                .spec
                .task_template
                .container_spec
                .as_ref()
                .map(|c| tasks::image_without_digest(&c.image))
                .unwrap_or_default();
            json!({
                "ID": short_id(&s.id),
                "Name": s.spec.name,
                "Mode": mode_text(s),
                "Replicas": replicas_text(s),
                "Image": image,
                "Ports": ports_text(&s.endpoint.ports),
            })
        })
        .collect();
    tasks::print_rows(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[
            ("ID", "ID"),
            ("Name", "NAME"),
            ("Mode", "MODE"),
            ("Replicas", "REPLICAS"),
            ("Image", "IMAGE"),
            ("Ports", "PORTS"),
        ],
    )
}

async fn ps(c: &Client, a: PsArgs) -> i32 {
    let mut filters = match tasks::filter_map(&a.table.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return 125;
        }
    };
    let mut notfound = Vec::new();
    let mut found = 0;
    for s in &a.services {
        match get_service(c, s).await {
            Ok(svc) => {
                filters.entry("service".into()).or_default().push(svc.id);
                found += 1;
            }
            Err(Error::Daemon { status: 404, .. }) => {
                notfound.push(format!("no such service: {s}"))
            }
            Err(e) => return super::report(&e, 1),
        }
    }
    if found == 0 {
        eprintln!("{}", notfound.join("\n"));
        return 1;
    }
    if let Some(nodes) = filters.get_mut("node") {
        for n in nodes.iter_mut() {
            match tasks::node_reference(c, n).await {
                Ok(id) => *n = id,
                Err(e) => return super::report(&e, 1),
            }
        }
    }
    let list = match tasks::list_tasks(c, &filters).await {
        Ok(l) => l,
        Err(e) => return super::report(&e, 1),
    };
    let trunc = !a.table.no_trunc && !a.table.quiet;
    let rc = print_tasks(
        c,
        list,
        a.table.no_resolve,
        trunc,
        a.table.quiet,
        a.table.format.as_deref(),
    )
    .await;
    if !notfound.is_empty() {
        eprintln!("{}", notfound.join("\n"));
        return 1;
    }
    rc
}

async fn inspect(c: &Client, a: InspectArgs) -> i32 {
    if a.pretty && a.format.as_deref().is_some_and(|f| !f.is_empty()) {
        eprintln!("--format is incompatible with human friendly format");
        return 1;
    }
    let mut raw = Vec::new();
    let mut rc = 0;
    for s in &a.services {
        match c
            .get(&format!("/services/{}?insertDefaults=true", enc(s)))
            .await
        {
            Ok(v) => raw.push(v),
            Err(e) => {
                match e {
                    Error::Daemon { status: 404, .. } => eprintln!("Error: no such service: {s}"),
                    e => eprintln!("{e}"),
                }
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
        let s: Service = berth_api::decode::from_value(v).unwrap_or_default();
        let mut nets = Vec::new();
        for n in &s.spec.task_template.networks {
            let name = c
                .get(&format!("/networks/{}", enc(&n.target)))
                .await
                .ok()
                .and_then(|v| v["Name"].as_str().map(String::from))
                .unwrap_or_else(|| n.target.clone());
            nets.push(name);
        }
        print!("{}", pretty_service(&s, &nets));
    }
    rc
}

/// `service inspect --pretty`.
fn pretty_service(s: &Service, networks: &[String]) -> String {
    use berth_api::duration::format as dur;
    let mut o = String::new();
    macro_rules! ln {
        ($l:expr) => {{
            let l: String = $l;
            o.push_str(&l);
            o.push('\n');
        }};
    }
    ln!(String::new());
    ln!(format!("ID:\t\t{}", s.id));
    ln!(format!("Name:\t\t{}", s.spec.name));
    if !s.spec.labels.is_empty() {
        ln!("Labels:".into());
        for (k, v) in &s.spec.labels {
            ln!(if v.is_empty() {
                format!(" {k}")
            } else {
                format!(" {k}={v}")
            });
        }
    }
    let m = &s.spec.mode;
    if m.global.is_some() {
        ln!("Service Mode:\tGlobal".into());
    } else if let Some(r) = &m.replicated {
        ln!("Service Mode:\tReplicated".into());
        if let Some(n) = r.replicas {
            ln!(format!(" Replicas:\t{n}"));
        }
    } else {
        ln!("Service Mode:".into());
    }
    if let Some(u) = &s.update_status {
        ln!("UpdateStatus:".into());
        ln!(format!(" State:\t\t{}", u.state));
        if let Some(t) = &u.started_at {
            ln!(format!(" Started:\t{}", tasks::ago(t)));
        }
        if u.state == "completed" {
            if let Some(t) = &u.completed_at {
                ln!(format!(" Completed:\t{}", tasks::ago(t)));
            }
        }
        ln!(format!(" Message:\t{}", u.message));
    }
    ln!("Placement:".into());
    if let Some(p) = &s.spec.task_template.placement {
        if !p.constraints.is_empty() {
            ln!(format!(" Constraints:\t[{}]", p.constraints.join(" ")));
        }
        let prefs: Vec<String> = p
            .preferences
            .iter()
            .filter_map(|x| x.spread.as_ref())
            .map(|x| format!("spread={}", x.spread_descriptor))
            .collect();
        if !prefs.is_empty() {
            ln!(format!(" Preferences:   [{}]", prefs.join(" ")));
        }
        if p.max_replicas > 0 {
            ln!(format!(" Max Replicas Per Node:   {}", p.max_replicas));
        }
    }
    for (title, cfg, order) in [
        ("UpdateConfig", &s.spec.update_config, "Update order:     "),
        (
            "RollbackConfig",
            &s.spec.rollback_config,
            "Rollback order:   ",
        ),
    ] {
        if let Some(u) = cfg {
            ln!(format!("{title}:"));
            ln!(format!(" Parallelism:\t{}", u.parallelism));
            if u.delay > 0 {
                ln!(format!(" Delay:\t\t{}", dur(u.delay)));
            }
            ln!(format!(" On failure:\t{}", u.failure_action));
            if u.monitor > 0 {
                ln!(format!(" Monitoring Period: {}", dur(u.monitor)));
            }
            ln!(format!(" Max failure ratio: {}", u.max_failure_ratio));
            ln!(format!(" {order} {}", u.order));
        }
    }
    let cs = s
        .spec
        .task_template
        .container_spec
        .clone()
        .unwrap_or_default();
    ln!("ContainerSpec:".into());
    ln!(format!(" Image:\t\t{}", cs.image));
    if !cs.args.is_empty() {
        ln!(format!(" Args:\t\t{} ", cs.args.join(" ")));
    }
    if !cs.env.is_empty() {
        ln!(format!(" Env:\t\t{} ", cs.env.join(" ")));
    }
    if !cs.dir.is_empty() {
        ln!(format!(" Dir:\t\t{}", cs.dir));
    }
    if let Some(i) = cs.init {
        ln!(format!(" Init:\t\t{i}"));
    }
    if !cs.user.is_empty() {
        ln!(format!(" User: {}", cs.user));
    }
    if !cs.capability_add.is_empty() || !cs.capability_drop.is_empty() {
        ln!("Capabilities:".into());
        if !cs.capability_add.is_empty() {
            ln!(format!(" Add: {}", cs.capability_add.join(", ")));
        }
        if !cs.capability_drop.is_empty() {
            ln!(format!(" Drop: {}", cs.capability_drop.join(", ")));
        }
    }
    if !cs.mounts.is_empty() {
        ln!("Mounts:".into());
        for m in &cs.mounts {
            ln!(format!(" Target:\t{}", m.target));
            ln!(format!("  Source:\t{}", m.source));
            ln!(format!("  ReadOnly:\t{}", m.read_only));
            ln!(format!("  Type:\t\t{}", m.kind));
        }
    }
    if !cs.configs.is_empty() {
        ln!("Configs:".into());
        for x in &cs.configs {
            ln!(format!(
                " Target:\t{}",
                x.file.as_ref().map(|f| f.name.as_str()).unwrap_or("")
            ));
            ln!(format!("  Source:\t{}", x.config_name));
        }
    }
    if !cs.secrets.is_empty() {
        ln!("Secrets:".into());
        for x in &cs.secrets {
            ln!(format!(
                " Target:\t{}",
                x.file.as_ref().map(|f| f.name.as_str()).unwrap_or("")
            ));
            ln!(format!("  Source:\t{}", x.secret_name));
        }
    }
    if let Some(d) = &s.spec.task_template.log_driver {
        ln!("Log Driver:".into());
        if !d.name.is_empty() {
            ln!(format!(" Name:\t\t{}", d.name));
        }
        if !d.options.is_empty() {
            ln!(" LogOpts:".into());
            for (k, v) in &d.options {
                ln!(if v.is_empty() {
                    format!("  {k}")
                } else {
                    format!("  {k}:       {v}")
                });
            }
        }
        ln!(String::new());
    }
    if let Some(r) = &s.spec.task_template.resources {
        let res = r.reservations.clone().unwrap_or_default();
        let lim = r.limits.clone().unwrap_or_default();
        let any_res = res.nano_cpus > 0 || res.memory_bytes > 0;
        let any_lim = lim.nano_cpus > 0 || lim.memory_bytes > 0;
        ln!("Resources:".into());
        if any_res {
            ln!(" Reservations:".into());
            if res.nano_cpus > 0 {
                ln!(format!("  CPU:\t\t{}", res.nano_cpus as f64 / 1e9));
            }
            if res.memory_bytes > 0 {
                ln!(format!(
                    "  Memory:\t{}",
                    berth_api::units::bytes_size(res.memory_bytes as f64)
                ));
            }
        }
        if any_lim {
            ln!(" Limits:".into());
            if lim.nano_cpus > 0 {
                ln!(format!("  CPU:\t\t{}", lim.nano_cpus as f64 / 1e9));
            }
            if lim.memory_bytes > 0 {
                ln!(format!(
                    "  Memory:\t{}",
                    berth_api::units::bytes_size(lim.memory_bytes as f64)
                ));
            }
        }
        if lim.pids > 0 {
            ln!(format!("  PIDs:\t\t{}", lim.pids));
        }
    }
    if !networks.is_empty() {
        ln!(format!("Networks: {} ", networks.join(" ")));
    }
    let mode = s
        .spec
        .endpoint_spec
        .as_ref()
        .map(|e| e.mode.clone())
        .unwrap_or_default();
    ln!(format!("Endpoint Mode:\t{mode}"));
    if !s.endpoint.ports.is_empty() {
        ln!("Ports:".into());
        for p in &s.endpoint.ports {
            ln!(format!(" PublishedPort = {}", p.published_port));
            ln!(format!("  Protocol = {}", p.protocol));
            ln!(format!("  TargetPort = {}", p.target_port));
            ln!(format!("  PublishMode = {}", p.publish_mode));
        }
        // The template leaves a space after the last port.
        o.insert(o.len() - 1, ' ');
    }
    if let Some(h) = &cs.healthcheck {
        ln!(" Healthcheck:".into());
        ln!(format!("  Interval = {}", dur(h.interval)));
        ln!(format!("  Retries = {}", h.retries));
        ln!(format!("  StartPeriod =\t{}", dur(h.start_period)));
        ln!(format!("  Timeout =\t{}", dur(h.timeout)));
        if let Some(t) = &h.test {
            ln!("  Tests:".into());
            for x in t {
                ln!(format!("\t Test = {x}"));
            }
            if !t.is_empty() {
                o.insert(o.len() - 1, ' ');
            }
        }
    }
    o.push('\n');
    o
}

/// The prefix of a log line: `name.slot.taskid@node` (with the padding for the slot width).
struct LogNames<'a> {
    r: tasks::Resolver<'a>,
    c: &'a Client,
    a: &'a LogsArgs,
    width: usize,
    cache: BTreeMap<(String, String, String), String>,
}

impl LogNames<'_> {
    async fn prefix(&mut self, node: &str, service: &str, task: &str) -> Result<String, String> {
        let key = (node.to_string(), service.to_string(), task.to_string());
        if let Some(p) = self.cache.get(&key) {
            return Ok(p.clone());
        }
        let node_name = self.r.node(node).await;
        let svc_name = self.r.service(service).await;
        let t: Task = self
            .c
            .get(&format!("/tasks/{}", enc(task)))
            .await
            .map_err(|e| e.to_string())
            .and_then(|v| {
                berth_api::decode::from_value(v).map_err(|e| format!("bad answer from daemon: {e}"))
            })?;
        let mut name = format!("{svc_name}.{}", t.slot);
        if !self.a.no_task_ids {
            if self.a.no_trunc {
                name.push_str(&format!(".{}", t.id));
            } else {
                name.push_str(&format!(".{}", short_id(&t.id)));
            }
        }
        let pad = self.width.saturating_sub(t.slot.to_string().len());
        let p = format!("{name}@{node_name}{}", " ".repeat(pad));
        self.cache.insert(key, p.clone());
        Ok(p)
    }

    /// One line of the stream (with its newline) as the docker CLI prints it.
    async fn format(&mut self, line: &[u8]) -> Result<Vec<u8>, String> {
        let mut l = split_log_line(&String::from_utf8_lossy(line), self.a.timestamps)?;
        let mut take = |k: &str, what: &str| {
            l.details
                .remove(k)
                .ok_or_else(|| format!("missing {what} id in details"))
        };
        let node = take("com.docker.swarm.node.id", "node")?;
        let service = take("com.docker.swarm.service.id", "service")?;
        let task = take("com.docker.swarm.task.id", "task")?;
        let mut out = String::new();
        if let Some(ts) = &l.timestamp {
            out.push_str(ts);
            out.push(' ');
        }
        out.push_str(&self.prefix(&node, &service, &task).await?);
        out.push_str("    | ");
        if self.a.details {
            let d: Vec<String> = l.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&d.join(","));
            out.push(' ');
        }
        out.push_str(&l.message);
        Ok(out.into_bytes())
    }
}

/// A service log line taken apart: `[timestamp ]details message`.
struct LogLine {
    timestamp: Option<String>,
    details: BTreeMap<String, String>,
    message: String,
}

fn split_log_line(text: &str, timestamps: bool) -> Result<LogLine, String> {
    let n = if timestamps { 3 } else { 2 };
    let parts: Vec<&str> = text.splitn(n, ' ').collect();
    if parts.len() != n {
        return Err(format!("invalid context in log message: {text}"));
    }
    let di = usize::from(timestamps);
    let mut details = BTreeMap::new();
    for kv in parts[di].split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("invalid details format: {kv}"))?;
        details.insert(unescape_query(k), unescape_query(v));
    }
    Ok(LogLine {
        timestamp: timestamps.then(|| parts[0].to_string()),
        details,
        message: parts[di + 1].to_string(),
    })
}

/// URL query unescaping (`%2C`, `+`), as log details are written.
fn unescape_query(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn logs(c: &Client, a: LogsArgs) -> Result<(), String> {
    let (path, tty, width) = match get_service(c, &a.target).await {
        Ok(s) => {
            let tty = s
                .spec
                .task_template
                .container_spec
                .as_ref()
                .is_some_and(|c| c.tty);
            let width = s
                .spec
                .mode
                .replicated
                .as_ref()
                .and_then(|r| r.replicas)
                .map(|n| n.to_string().len())
                .unwrap_or(1);
            (format!("/services/{}/logs", enc(&a.target)), tty, width)
        }
        Err(Error::Daemon { status: 404, .. }) => {
            let v = c
                .get(&format!("/tasks/{}", enc(&a.target)))
                .await
                .map_err(|e| match e {
                    Error::Daemon { status: 404, .. } => {
                        format!("no such task or service: {}", a.target)
                    }
                    e => e.to_string(),
                })?;
            let t: Task = berth_api::decode::from_value(v)
                .map_err(|e| format!("bad answer from daemon: {e}"))?;
            let tty = t.spec.container_spec.as_ref().is_some_and(|c| c.tty);
            (
                format!("/tasks/{}/logs", enc(&a.target)),
                tty,
                t.slot.to_string().len(),
            )
        }
        Err(e) => return Err(e.to_string()),
    };
    if tty && !a.raw {
        return Err("tty service logs only supported with --raw".into());
    }
    let mut q = format!(
        "{path}?stdout=1&stderr=1&follow={}&timestamps={}&details={}&tail={}",
        a.follow,
        a.timestamps,
        a.details || !a.raw,
        enc(&a.tail)
    );
    if let Some(since) = &a.since {
        let t = crate::timearg::timestamp(since, std::time::SystemTime::now())?;
        q.push_str(&format!("&since={t}"));
    }
    let resp = c
        .send(
            hyper::Method::GET,
            &q,
            crate::client::empty(),
            "application/json",
        )
        .await
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    if tty {
        return crate::client::for_each_chunk(resp, |chunk| {
            let _ = std::io::stdout().write_all(chunk);
            let _ = std::io::stdout().flush();
        })
        .await
        .map_err(|e| e.to_string());
    }
    let mut names = LogNames {
        r: tasks::Resolver::new(c, a.no_resolve),
        c,
        a: &a,
        width,
        cache: BTreeMap::new(),
    };
    let mut dec = berth_api::stdcopy::Decoder::default();
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading answer: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        dec.feed(&data);
        while let Ok(Some((stream, payload))) = dec.next_frame() {
            let out = if a.raw {
                payload.to_vec()
            } else {
                names.format(&payload).await?
            };
            if stream == berth_api::stdcopy::STDERR {
                let _ = std::io::stderr().write_all(&out);
            } else {
                let mut so = std::io::stdout();
                let _ = so.write_all(&out);
                let _ = so.flush();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_replicas_columns() {
        let p = |pp, t, proto: &str, mode: &str| PortConfig {
            protocol: proto.into(),
            target_port: t,
            published_port: pp,
            publish_mode: mode.into(),
            ..Default::default()
        };
        let ports = vec![
            p(8081, 81, "tcp", "ingress"),
            p(8080, 80, "tcp", "ingress"),
            p(53, 53, "udp", "ingress"),
            p(9000, 90, "tcp", "host"),
        ];
        assert_eq!(ports_text(&ports), "*:8080-8081->80-81/tcp, *:53->53/udp");
        let mut s = Service::default();
        s.spec.mode.replicated = Some(Default::default());
        s.service_status = Some(berth_api::swarm::ServiceStatus {
            running_tasks: 2,
            desired_tasks: 3,
            completed_tasks: 0,
        });
        assert_eq!(replicas_text(&s), "2/3");
        s.spec.task_template.placement = Some(berth_api::swarm::Placement {
            max_replicas: 1,
            ..Default::default()
        });
        assert_eq!(replicas_text(&s), "2/3 (max 1 per node)");
        assert_eq!(mode_text(&s), "replicated");
        assert_eq!(unescape_query("a%2Cb+c"), "a,b c");
        assert_eq!(with_tag("busybox"), "busybox:latest");
        assert_eq!(with_tag("docker.io/library/nginx:1"), "nginx:1");
        assert_eq!(with_tag("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(with_tag("busybox@sha256:abc"), "busybox@sha256:abc");
        let l = split_log_line(
            "2026-01-01T00:00:00Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1,x=a%20b hello world\n",
            true,
        )
        .unwrap();
        assert_eq!(l.timestamp.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(l.details["com.docker.swarm.task.id"], "t1");
        assert_eq!(l.details["x"], "a b");
        assert_eq!(l.message, "hello world\n");
        assert!(split_log_line("nodetails", false).is_err());
    }
}
