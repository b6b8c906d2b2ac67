//! `build:` sections through the Engine API's `/build`: the context tarred as `docker build`
//! tars it (`.dockerignore`), an inline Dockerfile added to it, the keys as query parameters.

use std::path::Path;

use serde_json::json;

use crate::api::Engine;
use crate::model::Service;
use crate::progress::Progress;
use crate::project::Project;

/// Name of the inline Dockerfile inside the context tar.
const INLINE: &str = ".berth-compose.Dockerfile";

fn enc(s: &str) -> String {
    berth_cli::client::enc(s)
}

/// What `compose build`'s flags add to every build section: `--no-cache`, `--pull` and
/// `--build-arg K=V` (over the section's `args`).
#[derive(Clone, Debug, Default)]
pub struct Extra {
    pub no_cache: bool,
    pub pull: bool,
    pub args: Vec<(String, String)>,
}

/// The `/build` query of a service's build section (`t` is the image name).
pub fn query(svc: &Service, image: &str, dockerfile: &str, x: &Extra) -> String {
    let mut q = format!("t={}&dockerfile={}&rm=1", enc(image), enc(dockerfile));
    if x.no_cache {
        q.push_str("&nocache=1");
    }
    if x.pull {
        q.push_str("&pull=1");
    }
    let Some(b) = &svc.build else { return q };
    let mut args: serde_json::Map<String, serde_json::Value> = b
        .args
        .iter()
        .filter_map(|(k, v)| {
            let v = v.clone().or_else(|| std::env::var(k).ok())?;
            Some((k.clone(), json!(v)))
        })
        .collect();
    for (k, v) in &x.args {
        args.insert(k.clone(), json!(v));
    }
    if !args.is_empty() {
        q.push_str(&format!("&buildargs={}", enc(&json!(args).to_string())));
    }
    if let Some(t) = &b.target {
        q.push_str(&format!("&target={}", enc(t)));
    }
    if !b.labels.is_empty() {
        q.push_str(&format!("&labels={}", enc(&json!(b.labels).to_string())));
    }
    if !b.cache_from.is_empty() {
        q.push_str(&format!(
            "&cachefrom={}",
            enc(&json!(b.cache_from).to_string())
        ));
    }
    if let Some(n) = &b.network {
        q.push_str(&format!("&networkmode={}", enc(n)));
    }
    if !b.extra_hosts.is_empty() {
        q.push_str(&format!("&extrahosts={}", enc(&b.extra_hosts.join(","))));
    }
    if b.pull == Some(true) && !x.pull {
        q.push_str("&pull=1");
    }
    if b.no_cache == Some(true) && !x.no_cache {
        q.push_str("&nocache=1");
    }
    if let Some(s) = b.shm_size {
        q.push_str(&format!("&shmsize={s}"));
    }
    q
}

/// Builds the service's image (tagged `image` and the section's `tags`).
pub async fn build(
    e: &Engine,
    p: &Project,
    name: &str,
    svc: &Service,
    image: &str,
    pr: &Progress,
) -> Result<(), String> {
    build_with(e, p, name, svc, image, pr, &Extra::default()).await
}

/// [`build`] with `compose build`'s flags.
pub async fn build_with(
    e: &Engine,
    p: &Project,
    name: &str,
    svc: &Service,
    image: &str,
    pr: &Progress,
    x: &Extra,
) -> Result<(), String> {
    let Some(b) = &svc.build else {
        return Err(format!("service {name:?} has no build section"));
    };
    let ctx = b
        .context
        .clone()
        .unwrap_or_else(|| p.working_dir.display().to_string());
    if ctx.contains("://") || ctx.starts_with("git@") {
        return Err(format!(
            "service {name:?}: build context {ctx} is a URL; berth builds local directories only"
        ));
    }
    let (tar, dockerfile) = match &b.dockerfile_inline {
        Some(inline) => {
            let t = berth_cli::tar_context(Path::new(&ctx), Some(INLINE))?;
            (
                berth_cli::append_file(t, INLINE, inline.as_bytes())?,
                INLINE.to_string(),
            )
        }
        None => {
            let df = b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
            (berth_cli::tar_context(Path::new(&ctx), Some(&df))?, df)
        }
    };
    let id = format!("Image {image}");
    pr.working(&id, "Building");
    let mut q = query(svc, image, &dockerfile, x);
    for t in &b.tags {
        q.push_str(&format!("&t={}", enc(t)));
    }
    match e.build(&q, tar).await {
        Ok(_) => {
            pr.done(&id, "Built");
            Ok(())
        }
        Err(err) => {
            pr.failed(&id, "Error");
            Err(format!("failed to build {name}: {err}"))
        }
    }
}
