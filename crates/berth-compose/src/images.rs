//! The image commands: `build`, `pull` (honouring `pull_policy`), `push` and `images`
//! (the images the project's containers run), as Docker Compose v2 runs them.

use berth_api::units::human_size_with_precision;
use berth_cli::format::Format;
use serde_json::{json, Value};

use crate::api::{split_tag, Engine};
use crate::build::Extra;
use crate::progress::Progress;
use crate::project::Project;

/// `build`: every selected service with a `build:` section, dependencies first.
pub async fn build(
    e: &Engine,
    p: &Project,
    services: &[String],
    with_deps: bool,
    x: &Extra,
    pr: &Progress,
) -> Result<(), String> {
    for s in p.selection(services, !with_deps)? {
        let svc = &p.model.services[&s];
        if svc.build.is_none() {
            continue;
        }
        let image = p.image_name(&s, svc);
        crate::build::build_with(e, p, &s, svc, &image, pr, x).await?;
    }
    Ok(())
}

#[derive(Clone, Debug, Default)]
pub struct PullOpts {
    pub ignore_failures: bool,
    pub include_deps: bool,
    /// `--policy` (missing|always), over each service's `pull_policy`.
    pub policy: Option<String>,
}

/// `pull`: the images of the selected services, skipping those the policy says not to pull
/// and those with only a `build:` section.
pub async fn pull(
    e: &Engine,
    p: &Project,
    services: &[String],
    o: &PullOpts,
    pr: &Progress,
) -> Result<(), String> {
    if let Some(pol) = &o.policy {
        if !matches!(pol.as_str(), "missing" | "always") {
            return Err(format!(
                "invalid --policy {pol:?}: \"missing\" or \"always\""
            ));
        }
    }
    let mut first_err = None;
    for s in p.selection(services, !o.include_deps)? {
        let svc = &p.model.services[&s];
        let Some(image) = &svc.image else {
            pr.done(&s, "Skipped - No image to be pulled");
            continue;
        };
        let policy = o.policy.as_deref().or(svc.pull_policy.as_deref());
        let skip = match policy {
            Some("never") | Some("build") => Some("Skipped"),
            Some("missing") | Some("if_not_present")
                if e.image(image).await.map_err(|e| e.to_string())?.is_some() =>
            {
                Some("Skipped - Image is already present locally")
            }
            _ => None,
        };
        if let Some(why) = skip {
            pr.done(&s, why);
            continue;
        }
        pr.working(&s, "Pulling");
        match e.pull(image).await {
            Ok(()) => pr.done(&s, "Pulled"),
            Err(err) if o.ignore_failures || svc.build.is_some() => {
                pr.warn(&s, &format!("Warning: {err}"));
            }
            Err(err) => {
                pr.failed(&s, "Error");
                first_err.get_or_insert(format!("Error response from daemon: {err}"));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// `push`: the images of the selected services that have both `build:` and `image:` (and
/// the build section's extra `tags`).
pub async fn push(
    e: &Engine,
    p: &Project,
    services: &[String],
    ignore_failures: bool,
    pr: &Progress,
) -> Result<(), String> {
    let mut first_err = None;
    for s in p.selection(services, true)? {
        let svc = &p.model.services[&s];
        let (Some(b), Some(image)) = (&svc.build, &svc.image) else {
            pr.done(&s, "Skipped");
            continue;
        };
        for name in std::iter::once(image).chain(&b.tags) {
            let id = format!("Image {name}");
            pr.working(&id, "Pushing");
            match e.push(name).await {
                Ok(()) => pr.done(&id, "Pushed"),
                Err(err) if ignore_failures => pr.warn(&id, &format!("Warning: {err}")),
                Err(err) => {
                    pr.failed(&id, "Error");
                    first_err.get_or_insert(format!("failed to push {name}: {err}"));
                }
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// `images`: per container of the project, the image it runs.
pub async fn images(
    e: &Engine,
    project: &str,
    services: &[String],
    quiet: bool,
    format: Option<&str>,
) -> Result<(), String> {
    let ctrs = e
        .containers(project, true)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for c in ctrs
        .iter()
        .filter(|c| services.is_empty() || services.iter().any(|s| s == c.service()))
    {
        let Some(id) = c.raw["ImageID"].as_str() else {
            continue;
        };
        let Some(img) = e.image(id).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let named = c.raw["Image"].as_str().unwrap_or("");
        let reference = if named.is_empty() || named.starts_with("sha256:") {
            img["RepoTags"][0].as_str().unwrap_or("<none>:<none>")
        } else {
            named
        };
        let (repo, tag) = split_tag(reference);
        rows.push(json!({
            "ID": id,
            "ContainerName": c.name,
            "Repository": repo,
            "Tag": tag,
            "Size": img["Size"].as_i64().unwrap_or(0),
        }));
    }
    if quiet {
        let mut seen: Vec<&str> = Vec::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or("");
            let id = id.split_once(':').map_or(id, |(_, h)| h);
            if !seen.contains(&id) {
                seen.push(id);
                println!("{id}");
            }
        }
        return Ok(());
    }
    match format {
        Some("json") => {
            println!("{}", Value::Array(rows));
            Ok(())
        }
        None | Some("table") => {
            let table: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let id = r["ID"].as_str().unwrap_or("");
                    let id = id.split_once(':').map_or(id, |(_, h)| h);
                    let size = r["Size"].as_i64().unwrap_or(0) as f64;
                    json!({
                        "ContainerName": r["ContainerName"],
                        "Repository": r["Repository"],
                        "Tag": r["Tag"],
                        "ID": id.chars().take(12).collect::<String>(),
                        "Size": human_size_with_precision(size, 3),
                    })
                })
                .collect();
            let cols = [
                ("ContainerName", "CONTAINER"),
                ("Repository", "REPOSITORY"),
                ("Tag", "TAG"),
                ("ID", "IMAGE ID"),
                ("Size", "SIZE"),
            ];
            match berth_cli::print_formatted(&Format::parse(None), &table, &cols, None) {
                0 => Ok(()),
                _ => Err("could not render the table".into()),
            }
        }
        Some(f) => Err(format!("invalid --format {f:?}: \"table\" or \"json\"")),
    }
}
