//! Image commands: images, import, load, save, rmi, tag, history and `image` subcommands.

use super::container::{filters_json, print_formatted, print_inspect};
use crate::client::{enc, Client, ReqBody};
use crate::format::Format;
use berth_api::units::human_size;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// List images as a tree: each image with its platform variants under it
    #[arg(long)]
    pub tree: bool,
    /// Repository to list
    pub reference: Option<String>,
}

fn ago(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!(
        "{} ago",
        berth_api::timefmt::human_duration(std::time::Duration::from_secs(
            (now - unix).max(0) as u64
        ))
    )
}

/// One `images` row per tag (or one `<none>` row).
fn image_rows(v: &Value, trunc: bool) -> Vec<Value> {
    let full = v["Id"].as_str().unwrap_or("");
    let id = if trunc {
        full.trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect()
    } else {
        full.to_string()
    };
    let digest = v["RepoDigests"]
        .as_array()
        .and_then(|d| d.first())
        .and_then(|d| d.as_str())
        .and_then(|d| d.split_once('@').map(|(_, x)| x.to_string()))
        .unwrap_or_else(|| "<none>".into());
    let mut tags: Vec<(String, String)> = v["RepoTags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                    _ => (t.to_string(), "<none>".to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    if tags.is_empty() {
        tags.push(("<none>".into(), "<none>".into()));
    }
    tags.into_iter()
        .map(|(repo, tag)| {
            json!({
                "ID": id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": ago(v["Created"].as_i64().unwrap_or(0)),
                "CreatedAt": v["Created"],
                "Size": human_size(v["Size"].as_i64().unwrap_or(0)),
                "Containers": v["Containers"],
            })
        })
        .collect()
}

pub async fn images(c: &Client, a: ImagesArgs) -> i32 {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = format!("/images/json?all={}", a.all as u8);
    if !filters.is_empty() {
        match filters_json(&filters) {
            Ok(f) => q.push_str(&format!("&filters={}", enc(&f))),
            Err(e) => {
                eprintln!("{e}");
                return 125;
            }
        }
    }
    let list = match c.get(&q).await {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let items = list.as_array().cloned().unwrap_or_default();
    if a.tree {
        return print_tree(&items, a.no_trunc);
    }
    let rows: Vec<Value> = items
        .iter()
        .flat_map(|i| image_rows(i, !a.no_trunc))
        .collect();
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or("").to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return 0;
    }
    let mut cols = vec![("Repository", "REPOSITORY"), ("Tag", "TAG")];
    if a.digests {
        cols.push(("Digest", "DIGEST"));
    }
    cols.extend([
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("Size", "SIZE"),
    ]);
    print_formatted(&Format::parse(a.format.as_deref()), &rows, &cols, None)
}

/// `images --tree`, as docker 28 draws it: an image line per name and, under it, the
/// platform variants it holds (berth keeps one per image: the host's).
fn print_tree(items: &[Value], no_trunc: bool) -> i32 {
    let arch = berth_api::platform::go_arch();
    let mut rows = Vec::new();
    for v in items {
        let full = v["Id"].as_str().unwrap_or("");
        let id: String = if no_trunc {
            full.to_string()
        } else {
            full.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect()
        };
        let size = human_size(v["Size"].as_i64().unwrap_or(0));
        let used = if v["Containers"].as_i64().unwrap_or(0) > 0 {
            "U"
        } else {
            ""
        };
        let mut names: Vec<String> = v["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            names.push("<untagged>".into());
        }
        for n in names {
            rows.push(vec![n, id.clone(), size.clone(), used.to_string()]);
            rows.push(vec![
                format!("└─ linux/{arch}"),
                id.clone(),
                size.clone(),
                used.to_string(),
            ]);
        }
    }
    print!(
        "{}",
        crate::format::table(&["IMAGE", "ID", "DISK USAGE", "EXTRA"], &rows)
    );
    0
}

/// A request body streamed from a file, or from stdin for "-".
fn file_body(path: &str) -> Result<ReqBody, String> {
    let reader: Box<dyn std::io::Read + Send> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?)
    };
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(8);
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(hyper::body::Frame::data(Bytes::copy_from_slice(
                            &buf[..n],
                        ))))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures_stream(rx);
    Ok(http_body_util::StreamBody::new(stream).boxed())
}

fn futures_stream(
    rx: tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<hyper::body::Frame<Bytes>, std::io::Error>> + Send + Sync
{
    ReceiverStream(rx)
}

struct ReceiverStream(
    tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, std::io::Error>>,
);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<hyper::body::Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Print a JSON message stream; returns false when it carried an error.
async fn print_messages(
    resp: hyper::Response<hyper::body::Incoming>,
) -> Result<Vec<Value>, String> {
    let mut buf = Vec::new();
    crate::client::for_each_chunk(resp, |c| buf.extend_from_slice(c))
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("bad message from daemon: {e}"))?;
        if let Some(err) = v["error"].as_str() {
            return Err(err.to_string());
        }
        out.push(v);
    }
    Ok(out)
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
    /// file (or - for stdin)
    pub file: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

pub async fn import(c: &Client, a: ImportArgs) -> i32 {
    if let Err(code) = super::platform_arg(&a.platform) {
        return code;
    }
    let body = match file_body(&a.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut q = "/images/create?fromSrc=-".to_string();
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
            _ => (r.clone(), String::new()),
        };
        q.push_str(&format!("&repo={}&tag={}", enc(&repo), enc(&tag)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&message={}", enc(m)));
    }
    let resp = match c.send(Method::POST, &q, body, "application/x-tar").await {
        Ok(r) => r,
        Err(e) => return super::report(&e, 1),
    };
    match print_messages(resp).await {
        Ok(msgs) => {
            for m in msgs {
                if let Some(s) = m["status"].as_str() {
                    println!("{s}");
                }
            }
            0
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            1
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
}

pub async fn load(c: &Client, a: LoadArgs) -> i32 {
    if let Err(code) = super::platform_arg(&a.platform) {
        return code;
    }
    let path = a.input.clone().unwrap_or_else(|| "-".into());
    if path == "-" && crate::stream::is_tty(std::io::stdin()) {
        eprintln!("requested load from stdin, but stdin is empty");
        return 1;
    }
    let body = match file_body(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let resp = match c
        .send(
            Method::POST,
            &format!("/images/load?quiet={}", a.quiet as u8),
            body,
            "application/x-tar",
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return super::report(&e, 1),
    };
    match print_messages(resp).await {
        Ok(msgs) => {
            for m in msgs {
                if let Some(s) = m["stream"].as_str() {
                    if !a.quiet {
                        print!("{s}");
                    }
                }
            }
            0
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            1
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn save(c: &Client, a: SaveArgs) -> i32 {
    if let Err(code) = super::platform_arg(&a.platform) {
        return code;
    }
    let q: Vec<String> = a
        .images
        .iter()
        .map(|i| format!("names={}", enc(i)))
        .collect();
    let path = format!("/images/get?{}", q.join("&"));
    super::download(c, &path, a.output.as_deref(), "save image").await
}

#[derive(Debug, Clone, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    /// Only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn rmi(c: &Client, a: RmiArgs) -> i32 {
    if let Err(code) = super::platform_arg(&a.platform) {
        return code;
    }
    let mut rc = 0;
    for i in &a.images {
        match c
            .json(
                Method::DELETE,
                &format!(
                    "/images/{}?force={}&noprune={}",
                    enc(i),
                    a.force,
                    a.no_prune
                ),
                None,
            )
            .await
        {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    rc
}

#[derive(Debug, Clone, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

pub async fn tag(c: &Client, a: TagArgs) -> i32 {
    let (repo, tag) = match a.target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (a.target.clone(), "latest".to_string()),
    };
    match c
        .post(
            &format!(
                "/images/{}/tag?repo={}&tag={}",
                enc(&a.source),
                enc(&repo),
                enc(&tag)
            ),
            None,
        )
        .await
    {
        Ok(_) => 0,
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub human: bool,
    /// Only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
    pub image: String,
}

pub async fn history(c: &Client, a: HistoryArgs) -> i32 {
    if let Err(code) = super::platform_arg(&a.platform) {
        return code;
    }
    let list = match c.get(&format!("/images/{}/history", enc(&a.image))).await {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("");
            let id = if a.no_trunc || id == "<missing>" {
                id.to_string()
            } else {
                id.trim_start_matches("sha256:").chars().take(12).collect()
            };
            let mut by = h["CreatedBy"].as_str().unwrap_or("").to_string();
            if !a.no_trunc && by.chars().count() > 45 {
                by = format!("{}…", by.chars().take(44).collect::<String>());
            }
            let created = h["Created"].as_i64().unwrap_or(0);
            let at = berth_api::timefmt::rfc3339_nano(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(created.max(0) as u64),
            );
            // Whole seconds, as docker prints them.
            let at = match at.split_once('.') {
                Some((secs, _)) => format!("{secs}Z"),
                None => at,
            };
            let size = h["Size"].as_i64().unwrap_or(0);
            json!({
                "ID": id,
                "CreatedSince": if a.human { ago(created) } else { at.clone() },
                "CreatedAt": at,
                "CreatedBy": by,
                "Size": if a.human { human_size(size) } else { size.to_string() },
                "Comment": h["Comment"],
            })
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return 0;
    }
    print_formatted(
        &Format::parse(a.format.as_deref()),
        &rows,
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
        None,
    )
}

#[derive(Debug, Clone, Args)]
pub struct ImageInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile
    Build(Box<super::build::BuildArgs>),
    /// Download an image from a registry
    Pull(super::registry::PullArgs),
    /// Upload an image to a registry
    Push(super::registry::PushArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(ImageInspectArgs),
    /// Remove one or more images
    Rm(RmiArgs),
    /// Remove unused images
    Prune(super::prune::ImagePruneArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Show the history of an image
    History(HistoryArgs),
}

pub async fn image_cmd(c: &Client, sub: ImageCommand) -> i32 {
    match sub {
        ImageCommand::Build(a) => super::build::build(c, *a).await,
        ImageCommand::Pull(a) => super::registry::pull(c, a).await,
        ImageCommand::Push(a) => super::registry::push(c, a).await,
        ImageCommand::Ls(a) => images(c, a).await,
        ImageCommand::Inspect(a) => {
            if let Err(code) = super::platform_arg(&a.platform) {
                return code;
            }
            let mut out = Vec::new();
            let mut rc = 0;
            for n in &a.names {
                match c.get(&format!("/images/{}/json", enc(n))).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        eprintln!("{e}");
                        rc = 1;
                    }
                }
            }
            print_inspect(&out, a.format.as_deref()).max(rc)
        }
        ImageCommand::Rm(a) => rmi(c, a).await,
        ImageCommand::Prune(a) => super::prune::image_prune(c, a).await,
        ImageCommand::Import(a) => import(c, a).await,
        ImageCommand::Load(a) => load(c, a).await,
        ImageCommand::Save(a) => save(c, a).await,
        ImageCommand::Tag(a) => tag(c, a).await,
        ImageCommand::History(a) => history(c, a).await,
    }
}
