//! The classic builder behind `POST /build`: the context tar is unpacked under the data root,
//! the Dockerfile's needed stages run step by step (RUN in berth containers, COPY/ADD as staged
//! layers, metadata steps as empty layers) with a step cache, and the progress goes out as
//! Docker's JSON message stream. [`start`] is the entry (the HTTP adapter is in
//! `routes::build`). This file owns the build's shared state ([`Builder`], [`Stage`]) and the
//! error type; the steps live in their own modules:
//! - `options`: the query parameters; `plan`: the Dockerfile into stages;
//! - `stages`: running the stages and FROM; `steps`: instruction dispatch and metadata steps;
//! - `run`: RUN; `copy` (with `files`): COPY/ADD; `commit`: cache lookups and commits;
//! - `cache`: the step cache on disk.
//!
//! The builder reaches containers only through the container service's functions, never
//! network or volume internals, and never the routes.

pub mod cache;
mod commit;
mod copy;
mod files;
mod options;
mod plan;
mod run;
mod stages;
mod steps;

use crate::error::{Error, Result};
use crate::state::Daemon;
use crate::util::Query;
use berth_api::progress::{ErrorDetail, Message};
use berth_build::cache::Record;
use bytes::Bytes;
use commit::CachePos;
use options::Options;
use run::RunMounts;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use steps::st_shell;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// The build's scratch directory under the data root, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a build: `query` is `POST /build`'s query string, `context` the context tar. The
/// request is checked and the Dockerfile planned before this returns (errors are the
/// request's); the build then runs on its own task, and its progress (Docker's JSON messages,
/// one per line) comes through the receiver, which ends when the build does.
pub async fn start(
    d: Arc<Daemon>,
    query: Option<&str>,
    context: axum::body::Body,
) -> Result<UnboundedReceiver<Bytes>> {
    let opts = Options::parse(query)?;
    let q = Query::parse(query);
    options::check_platform(q.get("platform")).map_err(Error::bad_request)?;
    if q.get("version") == Some("2") {
        return Err(Error::bad_request(
            "BuildKit builds (version=2) are not supported by berth; use the classic builder (DOCKER_BUILDKIT=0)",
        ));
    }
    if let Some(remote) = q.get("remote").filter(|r| !r.is_empty()) {
        return Err(Error::bad_request(format!(
            "remote build contexts ({remote}) are not supported by berth; send the context as a tar"
        )));
    }
    let scratch = Scratch(
        d.cfg
            .data_root
            .join("builder")
            .join("tmp")
            .join(crate::util::random_id()?),
    );
    let ctx = scratch.0.join("context");
    std::fs::create_dir_all(&ctx)?;
    let mut body = crate::util::BodyReader::new(context);
    let dir = ctx.clone();
    tokio::task::spawn_blocking(move || {
        berth_image::archive::extract(
            &mut body,
            &dir,
            &berth_image::archive::ExtractOptions::default(),
        )
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| {
        Error::bad_request(format!(
            "failed to read the build context: {}",
            Error::from(e).0.message
        ))
    })?;
    let plan::Plan {
        stages,
        escape,
        meta_args,
        used,
        target,
        needed,
    } = plan::plan(&ctx, &q, &opts)?;
    let total = stages
        .iter()
        .enumerate()
        .filter(|(i, _)| needed.contains_key(i))
        .map(|(_, s)| s.nodes.len() + 1)
        .sum::<usize>()
        + usize::from(!opts.labels.is_empty());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let b = Arc::new(Builder {
        d,
        ctx,
        scratch: scratch.0.clone(),
        escape,
        opts,
        meta_args,
        used: Mutex::new(used),
        tx,
        total,
        stage_images: Mutex::new(HashMap::new()),
        stage_names: stages.iter().map(|s| s.name.clone()).collect(),
        cf_history: Mutex::new(HashMap::new()),
        records: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        empty_dir: scratch.0.join("empty"),
    });
    let stages = Arc::new(stages);
    tokio::spawn(async move {
        let _scratch = scratch;
        if let Err(e) = b.run(stages, needed, target).await {
            b.send(Message {
                error_detail: Some(ErrorDetail {
                    code: e.code,
                    message: e.msg.clone(),
                }),
                error: e.msg,
                ..Message::default()
            });
        }
    });
    Ok(rx)
}

/// A failed build: the message and, for a failing RUN, its exit code.
struct Failure {
    code: Option<i64>,
    msg: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            code: None,
            msg: e.0.message,
        }
    }
}

impl From<berth_image::Error> for Failure {
    fn from(e: berth_image::Error) -> Failure {
        Error::from(e).into()
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Error::from(e).into()
    }
}

type BResult<T> = std::result::Result<T, Failure>;

/// A stage being built: its current image and the state the Dockerfile set.
struct Stage {
    /// Current image id; empty for `FROM scratch` before the first step.
    image: String,
    /// The image's Docker container config (`Env`, `Cmd`, `Shell`, ...).
    config: Map<String, Value>,
    /// Build args declared in this stage, with their values.
    args: BTreeMap<String, String>,
    /// Whether this stage set CMD (ENTRYPOINT then keeps it).
    cmd_set: bool,
    /// Where the stage is in each `--cache-from` image that still matches it.
    cache_from: Vec<CachePos>,
    /// The step being built (its number in the output; it names staging dirs).
    step: usize,
    /// The last step of this stage that missed the cache, for "parent changed" explanations.
    last_miss: Option<usize>,
}

impl Stage {
    fn env(&self) -> Vec<String> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lookup(&self, k: &str) -> Option<String> {
        let env = self.env();
        env.iter()
            .rev()
            .find_map(|e| {
                e.split_once('=')
                    .filter(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
            .or_else(|| self.args.get(k).cloned())
    }

    fn str(&self, k: &str) -> String {
        self.config
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn shell(&self) -> Vec<String> {
        st_shell(&self.config)
    }

    fn parent(&self) -> String {
        if self.image.is_empty() {
            "scratch".to_string()
        } else {
            self.image.clone()
        }
    }
}

/// What a step does when the cache misses.
enum Work {
    /// Only the config changes: an empty layer.
    Meta,
    /// The staging dir becomes the layer.
    Layer(PathBuf),
    /// Run a command in a container and commit its changes.
    Run {
        argv: Vec<String>,
        env: Vec<String>,
        mounts: RunMounts,
    },
}

/// One build: the daemon it runs in, its context and options, and what its stages share.
struct Builder {
    d: Arc<Daemon>,
    ctx: PathBuf,
    scratch: PathBuf,
    escape: char,
    opts: Options,
    meta_args: BTreeMap<String, String>,
    /// Build args some ARG consumed.
    used: Mutex<BTreeSet<String>>,
    tx: UnboundedSender<Bytes>,
    total: usize,
    /// The images of the stages built so far.
    stage_images: Mutex<HashMap<usize, String>>,
    stage_names: Vec<Option<String>>,
    /// The histories of the `--cache-from` images.
    cf_history: Mutex<HashMap<String, Vec<(String, bool)>>>,
    /// Cache records read once, when a miss first needs explaining.
    records: Mutex<Option<Vec<Record>>>,
    /// Set when a stage failed or the client left: stages stop before their next step.
    cancelled: AtomicBool,
    empty_dir: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn short(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..12.min(h.len())]
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bad(e: berth_build::Error) -> Failure {
    bad_msg(e.to_string())
}

fn bad_msg(msg: String) -> Failure {
    Failure { code: None, msg }
}

impl Builder {
    /// Sends a message; a client that went away cancels the build (before the next step).
    fn send(&self, m: Message) {
        if self.tx.send(Bytes::from(m.line())).is_err() {
            self.cancelled.store(true, Ordering::SeqCst);
        }
    }

    fn say(&self, s: impl Into<String>) {
        if !self.opts.quiet {
            self.send(Message::stream(s));
        }
    }
}
