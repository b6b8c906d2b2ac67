//! `ps` (a project's containers) and `ls` (every project the engine has containers of),
//! in Compose v2's table and JSON forms.

use std::collections::BTreeMap;

use berth_cli::format::Format;
use serde_json::{json, Value};

use crate::api::{label, Ctr, Engine};

#[derive(Clone, Debug, Default)]
pub struct PsOpts {
    pub all: bool,
    pub quiet: bool,
    pub services: bool,
    pub status: Vec<String>,
    pub filter: Vec<String>,
    pub format: Option<String>,
}

/// One `compose ps` row: docker's ps fields plus Compose's.
fn row(c: &Ctr) -> Value {
    let mut r = berth_cli::ps_row(&c.raw, false);
    let publishers: Vec<Value> = c.raw["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({"URL": p["IP"].as_str().unwrap_or(""), "TargetPort": p["PrivatePort"],
                   "PublishedPort": p["PublicPort"].as_u64().unwrap_or(0),
                   "Protocol": p["Type"].as_str().unwrap_or("tcp")})
        })
        .collect();
    let status = c.raw["Status"].as_str().unwrap_or("");
    let health = ["healthy", "unhealthy", "starting"]
        .into_iter()
        .find(|h| status.contains(&format!("({h})")) || status.contains(&format!("(health: {h})")))
        .unwrap_or("");
    let exit = status
        .strip_prefix("Exited (")
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(0);
    if let Some(m) = r.as_object_mut() {
        m.insert("Name".into(), json!(c.name));
        m.insert("Service".into(), json!(c.service()));
        m.insert(
            "Project".into(),
            json!(c.label(label::PROJECT).unwrap_or("")),
        );
        m.insert("Health".into(), json!(health));
        m.insert("ExitCode".into(), json!(exit));
        m.insert("Publishers".into(), json!(publishers));
    }
    r
}

fn keep(c: &Ctr, o: &PsOpts) -> Result<bool, String> {
    let mut states: Vec<String> = o.status.clone();
    for f in &o.filter {
        match f.split_once('=') {
            Some(("status", v)) => states.push(v.to_string()),
            Some(("source", _)) => {}
            _ => return Err(format!("invalid filter {f:?}: only status=… is supported")),
        }
    }
    Ok(states.is_empty() || states.iter().any(|s| s == &c.state))
}

pub fn print_ps(ctrs: &[Ctr], o: &PsOpts) -> Result<(), String> {
    let mut rows = Vec::new();
    let mut picked = Vec::new();
    for c in ctrs {
        if keep(c, o)? {
            picked.push(c);
            rows.push(row(c));
        }
    }
    if o.services {
        let mut seen = Vec::new();
        for c in picked {
            if !seen.contains(&c.service()) {
                seen.push(c.service());
                println!("{}", c.service());
            }
        }
        return Ok(());
    }
    if o.quiet {
        for c in picked {
            println!("{}", c.id);
        }
        return Ok(());
    }
    let cols = [
        ("Name", "NAME"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("Service", "SERVICE"),
        ("RunningFor", "CREATED"),
        ("Status", "STATUS"),
        ("Ports", "PORTS"),
    ];
    match berth_cli::print_formatted(&Format::parse(o.format.as_deref()), &rows, &cols, None) {
        0 => Ok(()),
        _ => Err("could not render the format".into()),
    }
}

pub async fn ps(e: &Engine, project: &str, services: &[String], o: &PsOpts) -> Result<(), String> {
    let ctrs = e
        .containers(
            project,
            o.all || !o.status.is_empty() || !o.filter.is_empty(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let ctrs: Vec<Ctr> = ctrs
        .into_iter()
        .filter(|c| services.is_empty() || services.iter().any(|s| s == c.service()))
        .collect();
    print_ps(&ctrs, o)
}

/// `ls`: projects with their states (`running(2), exited(1)`) and config files.
pub async fn ls(
    e: &Engine,
    all: bool,
    quiet: bool,
    format: Option<&str>,
    filter: &[String],
) -> Result<(), String> {
    let ctrs = e
        .containers_labelled(&[label::PROJECT.to_string()], true)
        .await
        .map_err(|e| e.to_string())?;
    let mut projects: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
    for c in &ctrs {
        let Some(name) = c.label(label::PROJECT) else {
            continue;
        };
        let entry = projects.entry(name.to_string()).or_default();
        *entry.0.entry(c.state.clone()).or_default() += 1;
        if entry.1.is_empty() {
            entry.1 = c.label(label::CONFIG_FILES).unwrap_or("").to_string();
        }
    }
    let mut rows = Vec::new();
    for (name, (states, files)) in projects {
        if !all && !states.contains_key("running") {
            continue;
        }
        let mut ok = true;
        for f in filter {
            match f.split_once('=') {
                Some(("name", v)) => ok &= name.contains(v),
                _ => return Err(format!("invalid filter {f:?}: only name=… is supported")),
            }
        }
        if !ok {
            continue;
        }
        let status: Vec<String> = states.iter().map(|(s, n)| format!("{s}({n})")).collect();
        rows.push(json!({"Name": name, "Status": status.join(", "), "ConfigFiles": files}));
    }
    if quiet {
        for r in &rows {
            println!("{}", r["Name"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    if format == Some("json") {
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    let cols = [
        ("Name", "NAME"),
        ("Status", "STATUS"),
        ("ConfigFiles", "CONFIG FILES"),
    ];
    match berth_cli::print_formatted(&Format::parse(format), &rows, &cols, None) {
        0 => Ok(()),
        _ => Err("could not render the format".into()),
    }
}
