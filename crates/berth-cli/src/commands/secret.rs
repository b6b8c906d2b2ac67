//! `secret create|ls|inspect|rm` and `config create|ls|inspect|rm`: the two kinds share their
//! code, differing in the API path, the create flags, the size limit and what is shown.

use super::tasks::{self, go_time_utc, natural_cmp, LsArgs};
use crate::client::{enc, Client};
use crate::format::Format;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Secrets or configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Secret => "/secrets",
            Kind::Config => "/configs",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// The largest content the CLI sends (the daemon checks too).
    fn max_size(self) -> u64 {
        match self {
            Kind::Secret => 500 * 1024,
            Kind::Config => 1000 * 1024,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret from a file or STDIN as content
    Create(SecretCreateArgs),
    /// Display detailed information on one or more secrets
    Inspect(InspectArgs),
    /// List secrets
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove one or more secrets
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Create a config from a file or STDIN
    Create(ConfigCreateArgs),
    /// Display detailed information on one or more configs
    Inspect(InspectArgs),
    /// List configs
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove one or more configs
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct SecretCreateArgs {
    /// Secret driver
    #[arg(short, long)]
    pub driver: Option<String>,
    /// Secret labels
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Template driver
    #[arg(long = "template-driver")]
    pub template_driver: Option<String>,
    pub name: String,
    #[arg(value_name = "file|-")]
    pub file: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfigCreateArgs {
    /// Config labels
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Template driver
    #[arg(long = "template-driver")]
    pub template_driver: Option<String>,
    pub name: String,
    #[arg(value_name = "file|-")]
    pub file: String,
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
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn secret_cmd(c: &Client, cmd: SecretCommand) -> i32 {
    let k = Kind::Secret;
    match cmd {
        SecretCommand::Create(a) => {
            if a.driver.as_deref().is_some_and(|d| !d.is_empty()) && a.file.is_some() {
                eprintln!("when using secret driver secret data must be empty");
                return 1;
            }
            let data = match a.driver.as_deref().filter(|d| !d.is_empty()) {
                Some(_) => Vec::new(),
                None => match read_data(k, a.file.as_deref().unwrap_or("")) {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("{e}");
                        return 1;
                    }
                },
            };
            let mut spec = base_spec(&a.name, &a.label, &data, &a.template_driver);
            if let Some(d) = a.driver.as_deref().filter(|d| !d.is_empty()) {
                spec["Driver"] = json!({ "Name": d });
            }
            create(c, k, spec).await
        }
        SecretCommand::Inspect(a) => inspect(c, k, a).await,
        SecretCommand::Ls(a) => ls(c, k, a).await,
        SecretCommand::Rm(a) => rm(c, k, a).await,
    }
}

pub async fn config_cmd(c: &Client, cmd: ConfigCommand) -> i32 {
    let k = Kind::Config;
    match cmd {
        ConfigCommand::Create(a) => {
            let data = match read_data(k, &a.file) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            };
            create(
                c,
                k,
                base_spec(&a.name, &a.label, &data, &a.template_driver),
            )
            .await
        }
        ConfigCommand::Inspect(a) => inspect(c, k, a).await,
        ConfigCommand::Ls(a) => ls(c, k, a).await,
        ConfigCommand::Rm(a) => rm(c, k, a).await,
    }
}

/// The content from a file, or stdin for `-`, as the docker CLI reads it.
fn read_data(k: Kind, file: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = 2 * k.max_size();
    match file {
        "" => Err(format!("{} file is required", k.word())),
        "-" => {
            let mut data = Vec::new();
            std::io::stdin()
                .lock()
                .take(limit)
                .read_to_end(&mut data)
                .map_err(|e| format!("error reading from STDIN: {e}"))?;
            if data.is_empty() {
                return Err("error reading from STDIN: data is empty".into());
            }
            Ok(data)
        }
        path => {
            let f = std::fs::File::open(path)
                .map_err(|e| format!("error reading content from {path:?}: {e}"))?;
            let mut data = Vec::new();
            f.take(limit)
                .read_to_end(&mut data)
                .map_err(|e| format!("error reading content from {path:?}: {e}"))?;
            Ok(data)
        }
    }
}

fn base_spec(name: &str, labels: &[String], data: &[u8], template: &Option<String>) -> Value {
    use data_encoding::BASE64;
    let mut spec = json!({
        "Name": name,
        "Labels": super::service_opts::kv_map(labels),
    });
    if !data.is_empty() {
        spec["Data"] = json!(BASE64.encode(data));
    }
    if let Some(t) = template.as_deref().filter(|t| !t.is_empty()) {
        spec["Templating"] = json!({ "Name": t });
    }
    spec
}

async fn create(c: &Client, k: Kind, spec: Value) -> i32 {
    match c.post(&format!("{}/create", k.path()), Some(spec)).await {
        Ok(v) => {
            println!("{}", v["ID"].as_str().unwrap_or_default());
            0
        }
        Err(e) => super::report(&e, 1),
    }
}

async fn ls(c: &Client, k: Kind, a: LsArgs) -> i32 {
    let mut path = k.path().to_string();
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
    let list = match c.get(&path).await {
        Ok(v) => v.as_array().cloned().unwrap_or_default(),
        Err(e) => return super::report(&e, 1),
    };
    let mut list = list;
    let name = |v: &Value| v["Spec"]["Name"].as_str().unwrap_or_default().to_string();
    list.sort_by(|x, y| natural_cmp(&name(x), &name(y)));
    if a.quiet
        && a.format
            .as_deref()
            .is_none_or(|f| f.is_empty() || f == "table")
    {
        for v in &list {
            println!("{}", v["ID"].as_str().unwrap_or_default());
        }
        return 0;
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let labels: Vec<String> = v["Spec"]["Labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "ID": v["ID"],
                "Name": name(v),
                "Driver": v["Spec"]["Driver"]["Name"].as_str().unwrap_or_default(),
                "CreatedAt": tasks::ago(v["CreatedAt"].as_str().unwrap_or_default()),
                "UpdatedAt": tasks::ago(v["UpdatedAt"].as_str().unwrap_or_default()),
                "Labels": labels.join(","),
            })
        })
        .collect();
    let cols: &[(&str, &str)] = match k {
        Kind::Secret => &[
            ("ID", "ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("CreatedAt", "CREATED"),
            ("UpdatedAt", "UPDATED"),
        ],
        Kind::Config => &[
            ("ID", "ID"),
            ("Name", "NAME"),
            ("CreatedAt", "CREATED"),
            ("UpdatedAt", "UPDATED"),
        ],
    };
    super::container::print_formatted(
        &Format::parse(a.format.as_deref()),
        &rows,
        cols,
        (!matches!(Format::parse(a.format.as_deref()), Format::Table))
            .then_some(("Labels", "LABELS")),
    )
}

async fn inspect(c: &Client, k: Kind, a: InspectArgs) -> i32 {
    if a.pretty && a.format.as_deref().is_some_and(|f| !f.is_empty()) {
        eprintln!("--format is incompatible with human friendly format");
        return 1;
    }
    if !a.pretty {
        return super::inspect_each(c, k.path(), "", &a.names, a.format.as_deref()).await;
    }
    // The human friendly form is all or nothing, as docker's.
    let mut all = Vec::new();
    for n in &a.names {
        match c.get(&format!("{}/{}", k.path(), enc(n))).await {
            Ok(v) => all.push(v),
            Err(e) => return super::report(&e, 1),
        }
    }
    for v in &all {
        println!("{}", pretty(k, v));
    }
    0
}

/// `inspect --pretty` of a secret or config.
fn pretty(k: Kind, v: &Value) -> String {
    let s = |p: &Value| p.as_str().unwrap_or_default().to_string();
    let mut l = Vec::new();
    let labels: Vec<String> = v["Spec"]["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v.as_str().unwrap_or_default() {
                    "" => format!(" - {k}"),
                    x => format!(" - {k}={x}"),
                })
                .collect()
        })
        .unwrap_or_default();
    match k {
        Kind::Secret => {
            l.push(format!("ID:              {}", s(&v["ID"])));
            l.push(format!("Name:              {}", s(&v["Spec"]["Name"])));
            if !labels.is_empty() {
                l.push("Labels:".into());
                l.extend(labels);
            }
            l.push(format!(
                "Driver:            {}",
                s(&v["Spec"]["Driver"]["Name"])
            ));
            l.push(format!(
                "Created at:        {}",
                go_time_utc(&s(&v["CreatedAt"]))
            ));
            l.push(format!(
                "Updated at:        {}",
                go_time_utc(&s(&v["UpdatedAt"]))
            ));
        }
        Kind::Config => {
            l.push(format!("ID:\t\t\t{}", s(&v["ID"])));
            l.push(format!("Name:\t\t\t{}", s(&v["Spec"]["Name"])));
            if !labels.is_empty() {
                l.push("Labels:".into());
                l.extend(labels);
            }
            l.push(format!(
                "Created at:            \t{}",
                go_time_utc(&s(&v["CreatedAt"]))
            ));
            l.push(format!(
                "Updated at:            \t{}",
                go_time_utc(&s(&v["UpdatedAt"]))
            ));
            l.push("Data:".into());
            let data = data_encoding::BASE64
                .decode(s(&v["Spec"]["Data"]).as_bytes())
                .unwrap_or_default();
            l.push(String::from_utf8_lossy(&data).into_owned());
        }
    }
    l.join("\n")
}

async fn rm(c: &Client, k: Kind, a: RmArgs) -> i32 {
    let mut rc = 0;
    for n in &a.names {
        match c
            .json(
                hyper::Method::DELETE,
                &format!("{}/{}", k.path(), enc(n)),
                None,
            )
            .await
        {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_pretty() {
        let s = base_spec("db", &["a=b".into()], b"pw", &None);
        assert_eq!(
            s,
            json!({"Name": "db", "Labels": {"a": "b"}, "Data": "cHc="})
        );
        assert_eq!(
            read_data(Kind::Secret, "").unwrap_err(),
            "secret file is required"
        );
        let v = json!({"ID": "x1", "CreatedAt": "2026-01-02T03:04:05Z", "UpdatedAt": "2026-01-02T03:04:05Z",
            "Spec": {"Name": "c", "Labels": {"k": "v"}, "Data": "aGVsbG8="}});
        let p = pretty(Kind::Config, &v);
        assert!(
            p.starts_with("ID:\t\t\tx1\nName:\t\t\tc\nLabels:\n - k=v\n"),
            "{p}"
        );
        assert!(p.ends_with("Data:\nhello"), "{p}");
    }
}
