//! Commands on a service's existing containers, as Docker Compose v2 prints them: `cp`,
//! `wait`, `top`, `port`, `stats`, `kill` (with `--remove-orphans`), and `scale`'s arguments.

use std::collections::BTreeMap;

use clap::Args;

use crate::api::{label, Ctr, Engine};
use crate::exec::{specified, OneOff};
use crate::progress::Progress;
use crate::project::Project;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 0)]
    index: u64,
    /// Include containers created by the run command
    #[arg(long)]
    all: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    archive: bool,
    /// SERVICE:SRC_PATH or SRC_PATH|-
    source: String,
    /// DEST_PATH|- or SERVICE:DEST_PATH
    destination: String,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Drops project when the first container stops
    #[arg(long)]
    down_project: bool,
    #[arg(required = true)]
    services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 0)]
    index: u64,
    pub(crate) service: String,
    private_port: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a template
    #[arg(long)]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    service: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub scale: Vec<String>,
}

/// `SERVICE:PATH` as Compose splits a `cp` argument: an absolute or relative local path
/// has no service.
fn split_cp(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((s, p)) => (Some(s), p),
        None => (None, arg),
    }
}

pub async fn cp(e: &Engine, project: &str, a: &CpArgs, pr: &Progress) -> Result<i32, String> {
    if a.source.is_empty() {
        return Err("source can not be empty".into());
    }
    if a.destination.is_empty() {
        return Err("destination can not be empty".into());
    }
    let (src_svc, src_path) = split_cp(&a.source);
    let (dst_svc, dst_path) = split_cp(&a.destination);
    let (service, from) = match (src_svc, dst_svc) {
        (Some(_), Some(_)) => return Err("copying between services is not supported".into()),
        (None, None) => return Err("unknown copy direction".into()),
        (Some(s), None) => (s, true),
        (None, Some(s)) => (s, false),
    };
    let targets: Vec<Ctr> = if a.index > 0 {
        vec![specified(e, project, service, a.index, true, OneOff::Exclude).await?]
    } else {
        let mut v: Vec<Ctr> = e
            .containers_labelled(
                &[
                    format!("{}={project}", label::PROJECT),
                    format!("{}={service}", label::SERVICE),
                ],
                true,
            )
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| a.all || !c.oneoff())
            .collect();
        if v.is_empty() {
            return Err(format!("no container found for service {service:?}"));
        }
        if from {
            v.truncate(1);
        }
        v
    };
    for c in targets {
        let (src, dest, what) = if from {
            (
                format!("{}:{src_path}", c.id),
                dst_path.to_string(),
                format!("{}:{src_path} to {dst_path}", c.name),
            )
        } else {
            (
                src_path.to_string(),
                format!("{}:{dst_path}", c.id),
                format!("{src_path} to {}:{dst_path}", c.name),
            )
        };
        let id = format!("Container {}", c.name);
        pr.working(&id, "Copying");
        let args = berth_cli::CpArgs {
            archive: a.archive,
            follow_link: a.follow_link,
            quiet: true,
            src,
            dest,
        };
        let code = berth_cli::cp(&e.c, args).await;
        if code != 0 {
            pr.failed(&id, "Error");
            return Ok(code);
        }
        pr.done(&id, &format!("Copied {what}"));
    }
    Ok(0)
}

/// `wait`: each container's exit as Compose prints it; the code of the last to exit. With
/// `--down-project` the project goes down once they have all stopped.
pub async fn wait(
    e: &Engine,
    p: &Project,
    a: &WaitArgs,
    pr: &std::sync::Arc<Progress>,
) -> Result<i32, String> {
    let ctrs: Vec<Ctr> = e
        .containers(&p.name, false)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| a.services.iter().any(|s| s == c.service()))
        .collect();
    if ctrs.is_empty() {
        return Err(format!("no containers for project {:?}", p.name));
    }
    let mut set = tokio::task::JoinSet::new();
    for c in ctrs {
        let e = e.clone();
        set.spawn(async move { (e.wait(&c.id).await, c.id) });
    }
    // As Compose: every container is waited for; the code is the last one's, and a failed
    // wait is exit code 42.
    let mut last = 0;
    while let Some(r) = set.join_next().await {
        let waited = r
            .map_err(|j| format!("internal error: {j}"))
            .and_then(|(code, id)| code.map(|c| (c, id)).map_err(|e| e.to_string()));
        match waited {
            Ok((code, id)) => {
                println!("container {id:?} exited with status code {code}");
                last = code;
            }
            Err(m) => {
                set.abort_all();
                eprintln!("{m}");
                return Ok(42);
            }
        }
    }
    if a.down_project {
        let o = crate::down::DownOpts {
            remove_orphans: true,
            ..Default::default()
        };
        crate::down::down(e, p, &o, pr).await?;
    }
    Ok(i32::try_from(last).unwrap_or(1))
}

/// Go's tabwriter as Compose's `top` sets it up: columns two spaces wider than their widest
/// cell and at least four wide; the last cell of a line unpadded.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![4usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count() + 2);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                out.push_str(&" ".repeat(width[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// `top`: one table of every running container's processes, with SERVICE and replica
/// (`#`) columns first and CMD last, as Compose prints it.
pub async fn top(e: &Engine, project: &str, services: &[String]) -> Result<(), String> {
    let mut ctrs: Vec<Ctr> = e
        .containers(project, false)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| services.is_empty() || services.iter().any(|s| s == c.service()))
        .collect();
    ctrs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header: Vec<String> = vec!["SERVICE".into(), "#".into()];
    let mut entries: Vec<BTreeMap<String, String>> = Vec::new();
    for c in &ctrs {
        let v =
            e.c.get(&format!(
                "/containers/{}/top",
                berth_cli::client::enc(&c.id)
            ))
            .await
            .map_err(|e| e.to_string())?;
        let titles: Vec<String> = v["Titles"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t.as_str().unwrap_or("").to_string())
            .collect();
        for t in &titles {
            if !header.contains(t) {
                header.push(t.clone());
            }
        }
        for proc in v["Processes"].as_array().into_iter().flatten() {
            let mut row = BTreeMap::new();
            let service = c.label(label::SERVICE).unwrap_or(&c.name);
            row.insert("SERVICE".to_string(), service.to_string());
            if let Some(n) = c.label(label::NUMBER) {
                row.insert("#".to_string(), n.to_string());
            }
            for (i, t) in titles.iter().enumerate() {
                let cell = proc[i].as_str().unwrap_or("").to_string();
                row.insert(t.clone(), cell);
            }
            entries.push(row);
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    if let Some(i) = header.iter().position(|h| h == "CMD") {
        let cmd = header.remove(i);
        header.push(cmd);
    }
    let mut rows = vec![header.clone()];
    for r in &entries {
        rows.push(
            header
                .iter()
                .map(|h| r.get(h).cloned().unwrap_or_else(|| "-".into()))
                .collect(),
        );
    }
    print!("{}", tabwrite(&rows));
    Ok(())
}

/// `port`: the public address of a private port, `IP:PORT`.
pub async fn port(e: &Engine, project: &str, a: &PortArgs) -> Result<(), String> {
    let private: u16 = a.private_port.parse().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {:?}: invalid syntax",
            a.private_port
        )
    })?;
    let proto = a.protocol.to_lowercase();
    let c = specified(e, project, &a.service, a.index, false, OneOff::Include).await?;
    let ports = c.raw["Ports"].as_array().cloned().unwrap_or_default();
    for p in &ports {
        if p["PrivatePort"].as_u64() == Some(u64::from(private))
            && p["Type"].as_str() == Some(proto.as_str())
            && p["PublicPort"].as_u64().is_some()
        {
            println!(
                "{}:{}",
                p["IP"].as_str().unwrap_or(""),
                p["PublicPort"].as_u64().unwrap_or(0)
            );
            return Ok(());
        }
    }
    let have: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["PrivatePort"].as_u64().unwrap_or(0),
                p["Type"].as_str().unwrap_or("")
            )
        })
        .collect();
    Err(format!(
        "no port {private}/{proto} for container {}: {}",
        c.name,
        have.join(", ")
    ))
}

/// `stats`: berth's own stats on the project's (or the service's) containers.
pub async fn stats(e: &Engine, project: &str, a: &StatsArgs) -> i32 {
    let mut labels = vec![format!("{}={project}", label::PROJECT)];
    if let Some(s) = &a.service {
        labels.push(format!("{}={s}", label::SERVICE));
    }
    let args = berth_cli::StatsArgs {
        all: a.all,
        no_stream: a.no_stream,
        no_trunc: a.no_trunc,
        format: a.format.clone(),
        containers: Vec::new(),
        labels,
    };
    berth_cli::stats(&e.c, args).await
}

/// `scale`'s `SERVICE=REPLICAS` arguments, with Compose's messages.
pub fn parse_scale(args: &[String]) -> Result<BTreeMap<String, u64>, String> {
    let mut m = BTreeMap::new();
    for arg in args {
        let (k, v) = match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => (k, v),
            _ => return Err(format!("invalid scale specifier: {arg}")),
        };
        let n: u64 = v.parse().map_err(|_| {
            format!("invalid scale specifier: can't parse replica value as int: {arg}")
        })?;
        m.insert(k.to_string(), n);
    }
    Ok(m)
}

/// `kill`: the project's running containers (one-offs included) of the services; with
/// `--remove-orphans` also those of services the file no longer has.
pub async fn kill(
    e: &Engine,
    p: &Project,
    services: &[String],
    signal: &str,
    remove_orphans: bool,
    pr: &std::sync::Arc<Progress>,
) -> Result<(), String> {
    for s in services {
        if !p.tree.is_null() && !p.model.services.contains_key(s) {
            return Err(format!("no such service: {s}"));
        }
    }
    let ctrs: Vec<Ctr> = e
        .containers(&p.name, false)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| services.is_empty() || services.iter().any(|s| s == c.service()))
        .filter(|c| {
            remove_orphans || p.tree.is_null() || p.model.services.contains_key(c.service())
        })
        .collect();
    if ctrs.is_empty() {
        eprintln!("No container to kill");
        return Ok(());
    }
    crate::down::each(e, p, ctrs, crate::down::Act::Kill(signal.to_string()), pr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_as_compose_does() {
        assert_eq!(split_cp("web:/etc/hosts"), (Some("web"), "/etc/hosts"));
        assert_eq!(split_cp("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp("/tmp/x"), (None, "/tmp/x"));
        assert_eq!(split_cp("-"), (None, "-"));
    }

    #[test]
    fn scale_arguments_refuse_what_compose_refuses() {
        let ok = parse_scale(&["web=3".into(), "db=0".into()]).unwrap_or_default();
        assert_eq!(ok.get("web"), Some(&3));
        assert_eq!(ok.get("db"), Some(&0));
        assert_eq!(
            parse_scale(&["web".into()]).err().as_deref(),
            Some("invalid scale specifier: web")
        );
        assert_eq!(
            parse_scale(&["web=x".into()]).err().as_deref(),
            Some("invalid scale specifier: can't parse replica value as int: web=x")
        );
    }

    #[test]
    fn top_columns_are_padded_like_go_tabwriter() {
        let rows = vec![
            vec![
                "SERVICE".to_string(),
                "#".into(),
                "PID".into(),
                "CMD".into(),
            ],
            vec![
                "web".to_string(),
                "1".into(),
                "12345".into(),
                "sleep 1".into(),
            ],
        ];
        assert_eq!(
            tabwrite(&rows),
            "SERVICE  #   PID    CMD\nweb      1   12345  sleep 1\n"
        );
    }
}
