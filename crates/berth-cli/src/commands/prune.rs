//! Housekeeping: `container prune`, `image prune`, `system prune` and `system df`, with
//! Docker's prompts, filters and output.

use super::container::{filters_json, print_formatted};
use crate::client::{enc, Client};
use crate::format::Format;
use berth_api::units::human_size;
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub common: PruneArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    #[command(flatten)]
    pub common: PruneArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a custom template ('table', 'json' or a Go template)
    #[arg(long)]
    pub format: Option<String>,
}

/// Asks Docker's question on stderr; true when the answer is yes.
pub fn confirm(warning: &str) -> bool {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

/// The `filters` query for `--filter k=v` values plus fixed extra pairs.
fn filters(user: &[String], extra: &[(&str, &str)]) -> Result<String, String> {
    let mut f: serde_json::Map<String, Value> = match filters_json(user) {
        Ok(s) => serde_json::from_str(&s).map_err(|e| e.to_string())?,
        Err(e) => return Err(e),
    };
    for (k, v) in extra {
        f.insert((*k).to_string(), json!([v]));
    }
    Ok(enc(&Value::Object(f).to_string()))
}

pub async fn post(
    c: &Client,
    path: &str,
    user: &[String],
    extra: &[(&str, &str)],
) -> Result<Value, i32> {
    let q = filters(user, extra).map_err(|e| {
        eprintln!("{e}");
        125
    })?;
    c.post(&format!("{path}?filters={q}"), None)
        .await
        .map_err(|e| super::report(&e, 1))
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

pub fn print_list(title: &str, items: &[String]) {
    if !items.is_empty() {
        println!("{title}:");
        for i in items {
            println!("{i}");
        }
        println!();
    }
}

fn print_images(v: &Value) {
    let items = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted Images:");
        for item in items {
            if let Some(u) = item["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = item["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
}

pub fn reclaimed(v: &Value) -> i64 {
    v["SpaceReclaimed"].as_i64().unwrap_or(0)
}

pub async fn container_prune(c: &Client, a: PruneArgs) -> i32 {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.") {
        return 0;
    }
    match post(c, "/containers/prune", &a.filter, &[]).await {
        Ok(v) => {
            print_list("Deleted Containers", &strings(&v["ContainersDeleted"]));
            println!("Total reclaimed space: {}", human_size(reclaimed(&v)));
            0
        }
        Err(rc) => rc,
    }
}

pub async fn image_prune(c: &Client, a: ImagePruneArgs) -> i32 {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.common.force && !confirm(warning) {
        return 0;
    }
    let dangling = if a.all { "false" } else { "true" };
    match post(
        c,
        "/images/prune",
        &a.common.filter,
        &[("dangling", dangling)],
    )
    .await
    {
        Ok(v) => {
            print_images(&v);
            println!("Total reclaimed space: {}", human_size(reclaimed(&v)));
            0
        }
        Err(rc) => rc,
    }
}

pub async fn system_prune(c: &Client, a: SystemPruneArgs) -> i32 {
    let mut warning = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container",
    );
    if a.volumes {
        warning.push_str("\n  - all anonymous volumes not used by at least one container");
    }
    warning.push_str(if a.all {
        "\n  - all images without at least one container associated to them"
    } else {
        "\n  - all dangling images"
    });
    warning.push_str("\n  - unused build cache\n");
    if !a.common.force && !confirm(&warning) {
        return 0;
    }
    let f = &a.common.filter;
    let mut total = 0i64;
    match post(c, "/containers/prune", f, &[]).await {
        Ok(v) => {
            print_list("Deleted Containers", &strings(&v["ContainersDeleted"]));
            total += reclaimed(&v);
        }
        Err(rc) => return rc,
    }
    match post(c, "/networks/prune", f, &[]).await {
        Ok(v) => print_list("Deleted Networks", &strings(&v["NetworksDeleted"])),
        Err(rc) => return rc,
    }
    if a.volumes {
        // `until` does not apply to volumes (Docker refuses it there too).
        let vf: Vec<String> = f
            .iter()
            .filter(|x| !x.starts_with("until="))
            .cloned()
            .collect();
        match post(c, "/volumes/prune", &vf, &[]).await {
            Ok(v) => {
                print_list("Deleted Volumes", &strings(&v["VolumesDeleted"]));
                total += reclaimed(&v);
            }
            Err(rc) => return rc,
        }
    }
    let dangling = if a.all { "false" } else { "true" };
    match post(c, "/images/prune", f, &[("dangling", dangling)]).await {
        Ok(v) => {
            print_images(&v);
            total += reclaimed(&v);
        }
        Err(rc) => return rc,
    }
    println!("Total reclaimed space: {}", human_size(total));
    0
}

/// `size (pct%)` as docker prints reclaimable space.
fn with_pct(part: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", human_size(part), part * 100 / total)
    } else {
        human_size(part)
    }
}

/// The summary rows of `system df` from the daemon's answer.
fn summary_rows(v: &Value) -> Vec<Value> {
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let num = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0);
    let images = arr("Images");
    let layers = num(v, "LayersSize");
    let used: i64 = images
        .iter()
        .filter(|i| num(i, "Containers") > 0 && num(i, "SharedSize") >= 0)
        .map(|i| num(i, "Size") - num(i, "SharedSize"))
        .sum();
    let containers = arr("Containers");
    let running = |c: &Value| c["State"].as_str() == Some("running");
    let rw: i64 = containers.iter().map(|c| num(c, "SizeRw")).sum();
    let rw_idle: i64 = containers
        .iter()
        .filter(|c| !running(c))
        .map(|c| num(c, "SizeRw"))
        .sum();
    let volumes = arr("Volumes");
    let vsize = |x: &Value| num(&x["UsageData"], "Size").max(0);
    let vol_total: i64 = volumes.iter().map(vsize).sum();
    let vol_free: i64 = volumes
        .iter()
        .filter(|x| num(&x["UsageData"], "RefCount") == 0)
        .map(vsize)
        .sum();
    let cache = arr("BuildCache");
    let cache_total: i64 = cache.iter().map(|x| num(x, "Size")).sum();
    let cache_free: i64 = cache
        .iter()
        .filter(|x| x["InUse"] != json!(true))
        .map(|x| num(x, "Size"))
        .sum();
    let row = |t: &str, total: usize, active: usize, size: i64, free: String| {
        json!({"Type": t, "TotalCount": total.to_string(), "Active": active.to_string(),
               "Size": human_size(size), "Reclaimable": free})
    };
    vec![
        row(
            "Images",
            images.len(),
            images.iter().filter(|i| num(i, "Containers") > 0).count(),
            layers,
            with_pct(layers - used, layers),
        ),
        row(
            "Containers",
            containers.len(),
            containers.iter().filter(|c| running(c)).count(),
            rw,
            with_pct(rw_idle, rw),
        ),
        row(
            "Local Volumes",
            volumes.len(),
            volumes
                .iter()
                .filter(|x| num(&x["UsageData"], "RefCount") > 0)
                .count(),
            vol_total,
            with_pct(vol_free, vol_total),
        ),
        row(
            "Build Cache",
            cache.len(),
            cache.iter().filter(|x| x["InUse"] == json!(true)).count(),
            cache_total,
            human_size(cache_free),
        ),
        row(
            "Container Logs",
            containers.len(),
            containers.iter().filter(|c| running(c)).count(),
            num(v, "LogsSize"),
            "-".to_string(),
        ),
    ]
}

pub async fn df(c: &Client, a: DfArgs) -> i32 {
    let v = match c.get("/system/df").await {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    if !a.verbose {
        let cols = [
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ];
        return print_formatted(
            &Format::parse(a.format.as_deref()),
            &summary_rows(&v),
            &cols,
            None,
        );
    }
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let num = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0);
    let now = std::time::SystemTime::now();
    let ago = |secs: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        let d = now.duration_since(t).unwrap_or_default();
        format!("{} ago", berth_api::timefmt::human_duration(d))
    };
    println!("Images space usage:\n");
    let mut rows = Vec::new();
    for i in arr("Images") {
        let id = i["Id"].as_str().unwrap_or("");
        let short = id.strip_prefix("sha256:").unwrap_or(id);
        let tags = strings(&i["RepoTags"]);
        let names: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in names {
            rows.push(vec![
                repo,
                tag,
                short.chars().take(12).collect(),
                ago(num(&i, "Created")),
                human_size(num(&i, "Size")),
                human_size(num(&i, "SharedSize").max(0)),
                human_size(num(&i, "Size") - num(&i, "SharedSize").max(0)),
                num(&i, "Containers").to_string(),
            ]);
        }
    }
    print!(
        "{}",
        crate::format::table(
            &[
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "CREATED",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "CONTAINERS"
            ],
            &rows
        )
    );
    println!("\nContainers space usage:\n");
    let rows: Vec<Vec<String>> = arr("Containers")
        .iter()
        .map(|ct| {
            let id = ct["Id"].as_str().unwrap_or("");
            vec![
                id.chars().take(12).collect(),
                ct["Image"].as_str().unwrap_or("").to_string(),
                format!("{:?}", ct["Command"].as_str().unwrap_or("")),
                ct["Mounts"]
                    .as_array()
                    .map(|m| m.len())
                    .unwrap_or(0)
                    .to_string(),
                human_size(num(ct, "SizeRw")),
                ago(num(ct, "Created")),
                ct["Status"].as_str().unwrap_or("").to_string(),
                strings(&ct["Names"])
                    .iter()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::format::table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "LOCAL VOLUMES",
                "SIZE",
                "CREATED",
                "STATUS",
                "NAMES"
            ],
            &rows
        )
    );
    println!("\nLocal Volumes space usage:\n");
    let rows: Vec<Vec<String>> = arr("Volumes")
        .iter()
        .map(|x| {
            vec![
                x["Name"].as_str().unwrap_or("").to_string(),
                num(&x["UsageData"], "RefCount").to_string(),
                human_size(num(&x["UsageData"], "Size").max(0)),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::format::table(&["VOLUME NAME", "LINKS", "SIZE"], &rows)
    );
    let cache: i64 = arr("BuildCache").iter().map(|x| num(x, "Size")).sum();
    println!("\nBuild cache usage: {}\n", human_size(cache));
    println!("Container logs: {}", human_size(num(&v, "LogsSize")));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_summary_counts_shared_layers_once_and_idle_space() {
        let v = json!({
            "LayersSize": 1000,
            "LogsSize": 30,
            "Images": [
                {"Size": 600, "SharedSize": 200, "Containers": 1},
                {"Size": 600, "SharedSize": 200, "Containers": 0}
            ],
            "Containers": [
                {"State": "running", "SizeRw": 10},
                {"State": "exited", "SizeRw": 40}
            ],
            "Volumes": [{"UsageData": {"Size": 5, "RefCount": 0}}],
            "BuildCache": []
        });
        let rows = summary_rows(&v);
        assert_eq!(rows[0]["Reclaimable"], "600B (60%)");
        assert_eq!(rows[0]["Active"], "1");
        assert_eq!(rows[1]["Size"], "50B");
        assert_eq!(rows[1]["Reclaimable"], "40B (80%)");
        assert_eq!(rows[2]["Reclaimable"], "5B (100%)");
        assert_eq!(rows[4]["Size"], "30B");
    }
}
