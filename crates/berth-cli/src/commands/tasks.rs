//! The task table `service ps` and `node ps` print, with the docker CLI's names (`svc.1`,
//! `svc.<node id>`, older tasks of a slot as ` \_ svc.1`), sorting and columns; and the
//! ID-to-name resolution of nodes and services it needs.

use super::container::print_formatted;
use crate::client::{enc, Client, Error};
use crate::format::Format;
use berth_api::swarm::{Node, Service, Task};
use clap::Args;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The `ls` flags of swarm objects (nodes, services, secrets, configs).
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
}

/// The flags of the task tables (`node ps`, `service ps`, `stack ps`).
#[derive(Debug, Args)]
pub struct TableArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Pretty-print tasks using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not map IDs to Names
    #[arg(long = "no-resolve")]
    pub no_resolve: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display task IDs
    #[arg(short, long)]
    pub quiet: bool,
}

/// Turns node and service IDs into names (a node's `Spec.Name`, else its hostname), asking the
/// daemon once per ID; with `no_resolve` IDs stay IDs.
pub struct Resolver<'a> {
    c: &'a Client,
    no_resolve: bool,
    nodes: HashMap<String, String>,
    services: HashMap<String, String>,
}

impl<'a> Resolver<'a> {
    pub fn new(c: &'a Client, no_resolve: bool) -> Resolver<'a> {
        Resolver {
            c,
            no_resolve,
            nodes: HashMap::new(),
            services: HashMap::new(),
        }
    }

    pub async fn node(&mut self, id: &str) -> String {
        if self.no_resolve || id.is_empty() {
            return id.to_string();
        }
        if let Some(n) = self.nodes.get(id) {
            return n.clone();
        }
        let name = match self.c.get(&format!("/nodes/{}", enc(id))).await {
            Ok(v) => {
                let n: Node = berth_api::decode::from_value(v).unwrap_or_default();
                if !n.spec.name.is_empty() {
                    n.spec.name
                } else if !n.description.hostname.is_empty() {
                    n.description.hostname
                } else {
                    id.to_string()
                }
            }
            Err(_) => id.to_string(),
        };
        self.nodes.insert(id.to_string(), name.clone());
        name
    }

    pub async fn service(&mut self, id: &str) -> String {
        if self.no_resolve || id.is_empty() {
            return id.to_string();
        }
        if let Some(n) = self.services.get(id) {
            return n.clone();
        }
        let name = match self.c.get(&format!("/services/{}", enc(id))).await {
            Ok(v) => berth_api::decode::from_value::<Service>(v)
                .map(|s| s.spec.name)
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| id.to_string()),
            Err(_) => id.to_string(),
        };
        self.services.insert(id.to_string(), name.clone());
        name
    }
}

/// The first 12 characters of an ID, as the docker CLI shows them.
pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `Running`: a state word with its first letter in upper case.
pub fn pretty_state(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Natural order: digit runs compare as numbers (`web.2` before `web.10`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let mut n = String::new();
                while let Some(d) = x.peek().copied().filter(char::is_ascii_digit) {
                    n.push(d);
                    x.next();
                }
                let mut m = String::new();
                while let Some(d) = y.peek().copied().filter(char::is_ascii_digit) {
                    m.push(d);
                    y.next();
                }
                let (n, m) = (n.trim_start_matches('0'), m.trim_start_matches('0'));
                let o = n.len().cmp(&m.len()).then_with(|| n.cmp(m));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(&q);
                }
                x.next();
                y.next();
            }
        }
    }
}

/// `Running 5 minutes ago`, from a task's state and the time of its status.
pub fn current_state(t: &Task) -> String {
    let ago = berth_api::timefmt::parse(&t.status.timestamp)
        .and_then(|ts| std::time::SystemTime::now().duration_since(ts).ok())
        .unwrap_or_default();
    format!(
        "{} {} ago",
        pretty_state(t.status.state.as_str()),
        berth_api::timefmt::human_duration(ago).to_lowercase()
    )
}

/// An RFC 3339 time as Go prints a UTC `time.Time`, lower-cased as the docker CLI shows it
/// (`2026-12-07 15:20:18.5 +0000 utc`); unparsable text comes back as is.
pub fn go_time_utc(rfc3339: &str) -> String {
    let Some(t) = berth_api::timefmt::parse(rfc3339) else {
        return rfc3339.to_string();
    };
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64) else {
        return rfc3339.to_string();
    };
    let mut frac = String::new();
    if d.subsec_nanos() > 0 {
        frac = format!(".{:09}", d.subsec_nanos())
            .trim_end_matches('0')
            .to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 utc",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// `About a minute ago`, for list columns.
pub fn ago(rfc3339: &str) -> String {
    let d = berth_api::timefmt::parse(rfc3339)
        .and_then(|ts| std::time::SystemTime::now().duration_since(ts).ok())
        .unwrap_or_default();
    format!("{} ago", berth_api::timefmt::human_duration(d))
}

/// Image without its digest, as the task table and `service ls` show it.
pub fn image_without_digest(image: &str) -> String {
    let base = image.split_once('@').map(|x| x.0).unwrap_or(image);
    let base = base.strip_prefix("docker.io/").unwrap_or(base);
    base.strip_prefix("library/").unwrap_or(base).to_string()
}

fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Print tasks as `service ps` does; `trunc` shortens IDs, images and errors.
pub async fn print_tasks(
    c: &Client,
    tasks: Vec<Task>,
    no_resolve: bool,
    trunc: bool,
    quiet: bool,
    format: Option<&str>,
) -> i32 {
    let mut r = Resolver::new(c, no_resolve);
    let mut named: Vec<(String, Task)> = Vec::new();
    for t in tasks {
        let svc = r.service(&t.service_id).await;
        let name = if t.slot != 0 {
            format!("{svc}.{}", t.slot)
        } else {
            format!("{svc}.{}", t.node_id)
        };
        named.push((name, t));
    }
    named.sort_by(|(a, x), (b, y)| {
        natural_cmp(a, b).then_with(|| {
            let tx = berth_api::timefmt::parse(&x.created_at);
            let ty = berth_api::timefmt::parse(&y.created_at);
            ty.cmp(&tx)
        })
    });
    if quiet && format.is_none_or(|f| f.is_empty() || f == "table") {
        for (_, t) in &named {
            println!("{}", t.id);
        }
        return 0;
    }
    let fmt = Format::parse(format);
    let table = matches!(fmt, Format::Table | Format::TableTemplate(_));
    let mut rows = Vec::new();
    let mut prev = String::new();
    for (name, t) in &named {
        let shown = if table && *name == prev {
            format!(" \\_ {name}")
        } else {
            name.clone()
        };
        prev = name.clone();
        let image = t
            .spec
            .container_spec
            .as_ref()
            .map(|c| c.image.clone())
            .unwrap_or_default();
        let err = if trunc {
            ellipsis(&t.status.err, 30)
        } else {
            t.status.err.clone()
        };
        let ports: Vec<String> = t
            .status
            .port_status
            .ports
            .iter()
            .map(|p| format!("*:{}->{}/{}", p.published_port, p.target_port, p.protocol))
            .collect();
        rows.push(json!({
            "ID": if trunc { short_id(&t.id) } else { t.id.clone() },
            "Name": shown,
            "Image": if trunc { image_without_digest(&image) } else { image },
            "Node": r.node(&t.node_id).await,
            "DesiredState": pretty_state(t.desired_state.as_str()),
            "CurrentState": current_state(t),
            "Error": if err.is_empty() { String::new() } else { format!("\"{err}\"") },
            "Ports": ports.join(","),
        }));
    }
    print_rows(
        &fmt,
        &rows,
        &[
            ("ID", "ID"),
            ("Name", "NAME"),
            ("Image", "IMAGE"),
            ("Node", "NODE"),
            ("DesiredState", "DESIRED STATE"),
            ("CurrentState", "CURRENT STATE"),
            ("Error", "ERROR"),
            ("Ports", "PORTS"),
        ],
    )
}

/// Print rows in the chosen format, the default table as Go's tab writer lays it out (as
/// the docker CLI prints the swarm tables).
pub fn print_rows(f: &Format, rows: &[Value], cols: &[(&str, &str)]) -> i32 {
    if !matches!(f, Format::Table) {
        return print_formatted(f, rows, cols, None);
    }
    let header: Vec<&str> = cols.iter().map(|c| c.1).collect();
    let cells: Vec<Vec<String>> = rows
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
    print!("{}", crate::format::table_go(&header, &cells));
    0
}

/// `GET /tasks` with filters (a map of name to values).
pub async fn list_tasks(
    c: &Client,
    filters: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<Vec<Task>, Error> {
    let path = if filters.is_empty() {
        "/tasks".to_string()
    } else {
        let f = serde_json::to_string(filters).unwrap_or_default();
        format!("/tasks?filters={}", enc(&f))
    };
    let v = c.get(&path).await?;
    decode_list(v)
}

/// A JSON array of swarm objects, decoded leniently.
pub fn decode_list<T: serde::de::DeserializeOwned>(v: Value) -> Result<Vec<T>, Error> {
    match v {
        Value::Null => Ok(Vec::new()),
        v => berth_api::decode::from_value(v)
            .map_err(|e| Error::Other(format!("bad answer from daemon: {e}"))),
    }
}

/// `--filter k=v` flags as a filters map, or the docker CLI's message.
pub fn filter_map(
    filters: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| "bad format of filter (expected name=value)".to_string())?;
        m.entry(k.trim().to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_string());
    }
    Ok(m)
}

/// The node ID a user's reference means: `self` is this engine's node.
pub async fn node_reference(c: &Client, name: &str) -> Result<String, Error> {
    if name == "self" {
        let info = c.get("/info").await?;
        let id = info["Swarm"]["NodeID"].as_str().unwrap_or_default();
        if id.is_empty() {
            return Err(Error::Other(
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
            ));
        }
        return Ok(id.to_string());
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_and_names() {
        let mut v = vec!["web.10", "web.2", "web.1", "api.3"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["api.3", "web.1", "web.2", "web.10"]);
        assert_eq!(pretty_state("running"), "Running");
        assert_eq!(
            image_without_digest("busybox:latest@sha256:abc"),
            "busybox:latest"
        );
        assert_eq!(image_without_digest("docker.io/library/nginx:1"), "nginx:1");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(
            go_time_utc("2026-12-07T15:20:18.500Z"),
            "2026-12-07 15:20:18.5 +0000 utc"
        );
        assert_eq!(
            go_time_utc("2026-12-07T15:20:18Z"),
            "2026-12-07 15:20:18 +0000 utc"
        );
        assert_eq!(
            filter_map(&["name=web".into(), "desired-state=running".into()]).unwrap()
                ["desired-state"],
            ["running"]
        );
        assert!(filter_map(&["x".into()]).is_err());
    }
}
