//! `POST /build` (Docker's classic builder API) and `POST /build/prune`: the context tar is
//! unpacked under the data root, the Dockerfile's needed stages run step by step (RUN in
//! berth containers, COPY/ADD as staged layers, metadata steps as empty layers) with a step
//! cache, and the progress goes out as Docker's JSON message stream.

pub mod cache;
mod files;

use crate::error::{Error, Result};
use crate::routes::St;
use crate::state::Daemon;
use crate::util::{json, Query};
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use berth_api::progress::{ErrorDetail, Message};
use berth_build::cache::{Inputs, Record};
use berth_build::instruction::{Command, Copy, Health};
use berth_build::{Instruction, Node};
use bytes::Bytes;
use files::View;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// Largest container config (`Env`, `Labels`, `Cmd`, ...) a build step may make, in bytes
/// as JSON: every step's image carries it, so it is bounded like the Dockerfile.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Build args Docker passes through without an `ARG` and keeps out of history and the cache.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The query parameters of `POST /build`.
struct Options {
    tags: Vec<String>,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    nocache: bool,
    pull: bool,
    quiet: bool,
    explain: bool,
    network: String,
    /// `cachefrom`: images whose history may stand in for steps; given, they are the only
    /// cache sources (as with dockerd).
    cache_from: Vec<String>,
    /// `rm=0` (without `forcerm`): a RUN container that succeeded stays, as with dockerd.
    keep_containers: bool,
    /// What RUN containers get: `extrahosts`, `securityopt`, `shmsize`, `memory`, `memswap`,
    /// `cpushares`, `cpuperiod`, `cpuquota`, `cpusetcpus`, `cpusetmems`, `ulimits`,
    /// `cgroupparent`.
    run_host: berth_api::container::HostConfig,
}

impl Options {
    fn parse(raw: Option<&str>) -> Result<Options> {
        let q = Query::parse(raw);
        let map = |k: &str| -> Result<BTreeMap<String, String>> {
            match q.get(k).filter(|s| !s.is_empty()) {
                None => Ok(BTreeMap::new()),
                Some(s) => {
                    let m: BTreeMap<String, Option<String>> = serde_json::from_str(s)
                        .map_err(|e| Error::bad_request(format!("invalid {k}: {e}")))?;
                    Ok(m.into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect())
                }
            }
        };
        let tags = crate::util::query_all(raw, "t");
        for t in &tags {
            berth_image::reference::Reference::parse(t).map_err(|_| {
                Error::bad_request(format!("invalid tag {t:?}: invalid reference format"))
            })?;
        }
        let cache_from: Vec<String> = match q.get("cachefrom").filter(|s| !s.is_empty()) {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::bad_request(format!("invalid cachefrom: {e}")))?,
            None => Vec::new(),
        };
        if q.bool("squash") {
            return Err(Error::bad_request(
                "squash is only supported with experimental mode, which berth does not have",
            ));
        }
        match q.get("isolation").unwrap_or("") {
            "" | "default" => {}
            i => {
                return Err(Error::bad_request(format!(
                    "Unsupported isolation: {i:?} (Linux has only \"default\")"
                )))
            }
        }
        let int = |k: &str| -> Result<i64> { Ok(q.int(k)?.unwrap_or(0)) };
        let ulimits: Vec<berth_api::container::Ulimit> =
            match q.get("ulimits").filter(|s| !s.is_empty()) {
                Some(s) => serde_json::from_str::<Option<Vec<_>>>(s)
                    .map_err(|e| Error::bad_request(format!("invalid ulimits: {e}")))?
                    .unwrap_or_default(),
                None => Vec::new(),
            };
        let extra_hosts: Vec<String> = crate::util::query_all(raw, "extrahosts")
            .iter()
            .flat_map(|h| h.split(',').map(str::trim).map(String::from))
            .filter(|h| !h.is_empty())
            .collect();
        let security_opt = crate::util::query_all(raw, "securityopt");
        let run_host = berth_api::container::HostConfig {
            extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            shm_size: int("shmsize")?,
            memory: int("memory")?,
            memory_swap: int("memswap")?,
            cpu_shares: int("cpushares")?,
            cpu_period: int("cpuperiod")?,
            cpu_quota: int("cpuquota")?,
            cpuset_cpus: q.get("cpusetcpus").unwrap_or("").to_string(),
            cpuset_mems: q.get("cpusetmems").unwrap_or("").to_string(),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            cgroup_parent: q.get("cgroupparent").unwrap_or("").to_string(),
            ..Default::default()
        };
        let network = match q.get("networkmode").unwrap_or("") {
            "" | "default" => "bridge".to_string(),
            n => n.to_string(),
        };
        Ok(Options {
            tags,
            build_args: map("buildargs")?,
            labels: map("labels")?,
            target: q.get("target").filter(|s| !s.is_empty()).map(String::from),
            nocache: q.bool("nocache"),
            pull: q.bool("pull"),
            quiet: q.bool("q"),
            explain: q.bool("explaincache"),
            network,
            cache_from,
            run_host,
            keep_containers: matches!(
                q.get("rm")
                    .map(|v| v.trim().to_ascii_lowercase())
                    .as_deref(),
                Some("0" | "false" | "no" | "none")
            ) && !q.bool("forcerm"),
        })
    }
}

/// The build's scratch directory under the data root, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One stage of the Dockerfile.
struct StagePlan {
    name: Option<String>,
    from: Node,
    nodes: Vec<Node>,
}

/// `POST /build`.
pub async fn build(State(d): St, RawQuery(raw): RawQuery, req: Request) -> Result<Response> {
    let opts = Options::parse(raw.as_deref())?;
    let q = Query::parse(raw.as_deref());
    check_platform(q.get("platform")).map_err(Error::bad_request)?;
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
    let mut body = crate::util::BodyReader::new(req.into_body());
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
    let df_name = q
        .get("dockerfile")
        .filter(|s| !s.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    // Inside the context whatever the name says.
    // Symlinks (a Dockerfile linking to another) resolve inside the context too.
    let mut rel = berth_build::ignore::clean(&format!("/{df_name}"));
    let locate = || Error::bad_request(format!("Cannot locate specified Dockerfile: {df_name}"));
    let mut hops = 0;
    let df_path = loop {
        let p = berth_image::archive::resolve_in_root(&ctx, Path::new(rel.trim_start_matches('/')))
            .map_err(|_| locate())?;
        let m = std::fs::symlink_metadata(&p).map_err(|_| locate())?;
        if m.is_file() {
            break p;
        }
        hops += 1;
        if !m.file_type().is_symlink() || hops > 40 {
            return Err(locate());
        }
        let target = std::fs::read_link(&p).map_err(|_| locate())?;
        let target = target.to_string_lossy();
        let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
        rel = berth_build::ignore::clean(&if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{parent}/{target}")
        });
    };
    // Its size is checked before it is read (the parser checks its instructions).
    let len = std::fs::metadata(&df_path).map_err(|_| locate())?.len();
    if len > berth_build::MAX_DOCKERFILE_BYTES as u64 {
        return Err(Error::bad_request(format!(
            "{df_name}: {}",
            berth_build::parser::too_large(len)
        )));
    }
    let text = std::fs::read_to_string(&df_path).map_err(|_| locate())?;
    let df = berth_build::parse(&text, &df_name).map_err(|e| Error::bad_request(e.to_string()))?;
    leave_out_build_files(&ctx, &df_name)?;
    if df.nodes.is_empty() {
        return Err(Error::bad_request(format!(
            "the Dockerfile ({df_name}) cannot be empty"
        )));
    }
    let mut meta = Vec::new();
    let mut stages: Vec<StagePlan> = Vec::new();
    for n in df.nodes {
        if n.keyword == "FROM" {
            stages.push(StagePlan {
                name: None,
                from: n,
                nodes: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.nodes.push(n);
        } else if n.keyword == "ARG" {
            meta.push(n);
        } else {
            return Err(Error::bad_request(format!(
                "{df_name}:{}: no build stage in current context",
                n.line
            )));
        }
    }
    // Meta ARGs (before the first FROM) serve the FROM lines.
    let mut meta_args: BTreeMap<String, String> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for n in &meta {
        let lookup = |k: &str| meta_args.get(k).cloned();
        if let Instruction::Arg(list) = Instruction::from_node(n, df.escape, &lookup)
            .map_err(|e| Error::bad_request(with_file(e, &df_name)))?
        {
            for (k, v) in list {
                let val = match opts.build_args.get(&k) {
                    Some(b) => {
                        used.insert(k.clone());
                        Some(b.clone())
                    }
                    None => v,
                };
                if let Some(val) = val {
                    meta_args.insert(k, val);
                }
            }
        }
    }
    for s in &mut stages {
        let lookup = |k: &str| meta_args.get(k).cloned();
        if let Instruction::From { name, .. } = Instruction::from_node(&s.from, df.escape, &lookup)
            .map_err(|e| Error::bad_request(with_file(e, &df_name)))?
        {
            s.name = name;
        }
    }
    let target = match &opts.target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                Error::bad_request(format!("failed to reach build target {t} in Dockerfile"))
            })?,
        None => stages.len() - 1,
    };
    let needed = needed_stages(&stages, target, df.escape, &meta_args);
    let total = stages
        .iter()
        .enumerate()
        .filter(|(i, _)| needed.contains_key(i))
        .map(|(_, s)| s.nodes.len() + 1)
        .sum::<usize>()
        + usize::from(!opts.labels.is_empty());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let b = Arc::new(Builder {
        d: d.clone(),
        ctx,
        scratch: scratch.0.clone(),
        escape: df.escape,
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
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

fn with_file(mut e: berth_build::Error, file: &str) -> String {
    e.file = file.to_string();
    e.to_string()
}

/// The stages `target` needs (itself, the stages its FROM and `COPY --from` name), as indexes.
fn needed_stages(
    stages: &[StagePlan],
    target: usize,
    escape: char,
    meta: &BTreeMap<String, String>,
) -> BTreeMap<usize, BTreeSet<usize>> {
    let lookup = |k: &str| meta.get(k).cloned();
    let find = |name: &str, before: usize| -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    };
    let mut out: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if out.contains_key(&i) {
            continue;
        }
        let s = &stages[i];
        let mut deps = BTreeSet::new();
        if let Ok(Instruction::From { image, .. }) =
            Instruction::from_node(&s.from, escape, &lookup)
        {
            deps.extend(find(&image, i));
        }
        for n in &s.nodes {
            for f in &n.flags {
                if let Some(v) = f.strip_prefix("--from=") {
                    let v = berth_build::expand::word(v, escape, &lookup).unwrap_or_default();
                    deps.extend(find(&v, i));
                }
            }
        }
        todo.extend(deps.iter().copied());
        out.insert(i, deps);
    }
    out
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

    /// Builds the needed stages, each as soon as the stages it uses are built (independent
    /// stages in parallel), then tags the target's image.
    async fn run(
        self: &Arc<Self>,
        stages: Arc<Vec<StagePlan>>,
        needed: BTreeMap<usize, BTreeSet<usize>>,
        target: usize,
    ) -> BResult<()> {
        // Steps are numbered in file order over the needed stages.
        let mut first = HashMap::new();
        let mut n = 0;
        for (i, s) in stages.iter().enumerate() {
            if needed.contains_key(&i) {
                first.insert(i, n + 1);
                n += s.nodes.len() + 1;
            }
        }
        let mut done = BTreeSet::new();
        let mut started = BTreeSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut failure: Option<Failure> = None;
        loop {
            if failure.is_none() {
                for (i, deps) in &needed {
                    if started.contains(i) || !deps.iter().all(|d| done.contains(d)) {
                        continue;
                    }
                    started.insert(*i);
                    let (b, stages, i) = (self.clone(), stages.clone(), *i);
                    let step = first.get(&i).copied().unwrap_or(1);
                    tasks.spawn(async move {
                        let r = b.build_stage(&stages, i, step, i == target).await;
                        (i, r)
                    });
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((i, Ok(image))) => {
                    lock(&self.stage_images).insert(i, image);
                    done.insert(i);
                }
                Ok((_, Err(e))) => {
                    self.cancelled.store(true, Ordering::SeqCst);
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    self.cancelled.store(true, Ordering::SeqCst);
                    failure.get_or_insert(Error::internal(e.to_string()).into());
                }
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        let last = lock(&self.stage_images)
            .get(&target)
            .cloned()
            .ok_or_else(|| Error::internal("the target stage was not built"))?;
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !lock(&self.used).contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.say(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                names.join(" ")
            ));
        }
        self.send(Message {
            aux: Some(json!({ "ID": last })),
            ..Message::default()
        });
        if self.opts.quiet {
            self.send(Message::stream(format!("{last}\n")));
        }
        self.say(format!("Successfully built {}\n", short(&last)));
        for t in &self.opts.tags {
            self.d.images.tag(&last, t)?;
            let name = berth_image::reference::Reference::parse(t)
                .map(|r| r.with_default_tag().familiar())
                .unwrap_or_else(|_| t.clone());
            self.d
                .events
                .image_event(&self.d.images, &last, &name, "tag");
            self.say(format!("Successfully tagged {name}\n"));
        }
        Ok(())
    }

    /// One stage, its steps numbered from `first`; the image it ends with.
    async fn build_stage(
        &self,
        stages: &[StagePlan],
        i: usize,
        first: usize,
        is_target: bool,
    ) -> BResult<String> {
        let s = &stages[i];
        let mut st = self.from(i, s, stages, first).await?;
        for n in &s.nodes {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(bad_msg("cancelled: another stage failed".into()));
            }
            st.step += 1;
            self.say(format!(
                "Step {}/{} : {}\n",
                st.step, self.total, n.original
            ));
            self.instruction(&mut st, n).await?;
        }
        if is_target && !self.opts.labels.is_empty() {
            st.step += 1;
            let pairs: Vec<(String, String)> = self
                .opts
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let text = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ");
            self.say(format!("Step {}/{} : LABEL {text}\n", st.step, self.total));
            self.apply(
                &mut st,
                &Instruction::Label(pairs),
                &format!("LABEL {text}"),
            )
            .await?;
        }
        if st.image.is_empty() {
            // `FROM scratch` and nothing else: an image with no layer.
            self.commit_step(
                &mut st,
                Inputs::default(),
                "FROM scratch".into(),
                Work::Meta,
            )
            .await?;
        }
        Ok(st.image)
    }

    /// The FROM step of stage `i`: resolves the base (an earlier stage, an image, scratch).
    async fn from(
        &self,
        i: usize,
        s: &StagePlan,
        stages: &[StagePlan],
        step: usize,
    ) -> BResult<Stage> {
        self.say(format!(
            "Step {step}/{} : {}\n",
            self.total, s.from.original
        ));
        let lookup = |k: &str| self.meta_args.get(k).cloned();
        let Instruction::From {
            image, platform, ..
        } = Instruction::from_node(&s.from, self.escape, &lookup).map_err(bad)?
        else {
            return Err(Error::internal("FROM expected").into());
        };
        check_platform(platform.as_deref()).map_err(bad_msg)?;
        let lower = image.to_ascii_lowercase();
        let earlier = stages[..i]
            .iter()
            .position(|p| p.name.as_deref() == Some(lower.as_str()))
            .and_then(|j| lock(&self.stage_images).get(&j).cloned());
        let id = if let Some(id) = earlier {
            id
        } else if lower == "scratch" {
            self.say(" ---> \n".to_string());
            return Ok(Stage {
                image: String::new(),
                config: Map::new(),
                args: BTreeMap::new(),
                cmd_set: false,
                cache_from: self.align_cache_from(""),
                step,
                last_miss: None,
            });
        } else {
            if self.opts.pull || self.d.images.resolve_id(&image).is_err() {
                self.pull(&image).await?;
            }
            self.d
                .images
                .resolve_id(&image)
                .map_err(|_| bad_msg(format!("No such image: {image}")))?
        };
        self.say(format!(" ---> {}\n", short(&id)));
        let mut st = Stage {
            config: self.image_config(&id)?,
            cache_from: self.align_cache_from(&id),
            image: id,
            args: BTreeMap::new(),
            cmd_set: false,
            step,
            last_miss: None,
        };
        // ONBUILD triggers of the base run first.
        let triggers: Vec<String> = st
            .config
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            st.config.insert("OnBuild".into(), Value::Null);
            self.say(format!("# Executing {} build trigger\n", triggers.len()));
            for t in triggers {
                let n =
                    berth_build::parser::split_node(&t, s.from.line).map_err(|e| bad_msg(e.msg))?;
                self.instruction(&mut st, &n).await?;
            }
        }
        Ok(st)
    }

    /// Pulls `image` through the daemon's registry client, its progress as build output.
    async fn pull(&self, image: &str) -> BResult<()> {
        let (ptx, mut prx) = tokio::sync::mpsc::channel::<Message>(64);
        let d = self.d.clone();
        let name = image.to_string();
        let task = tokio::spawn(async move {
            let creds = berth_distribution::Credentials::default();
            crate::pull::pull(&d, &d.registry, &name, ("", "", None), &creds, &ptx).await
        });
        while let Some(m) = prx.recv().await {
            if m.error.is_empty() && !self.opts.quiet {
                self.send(m);
            }
        }
        task.await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(Failure::from)
    }

    fn image_config(&self, id: &str) -> BResult<Map<String, Value>> {
        let blob = self.d.images.config_blob(id)?;
        let v: Value = serde_json::from_slice(&blob).map_err(|e| Error::internal(e.to_string()))?;
        Ok(v.get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }

    fn view(&self, image: &str) -> BResult<View> {
        let layers = if image.is_empty() {
            Vec::new()
        } else {
            self.d.images.rootfs_layers(image)?
        };
        Ok(View::open(&layers)?)
    }

    /// One instruction of a stage.
    async fn instruction(&self, st: &mut Stage, n: &Node) -> BResult<()> {
        let ins = {
            let lookup = |k: &str| st.lookup(k);
            Instruction::from_node(n, self.escape, &lookup).map_err(bad)?
        };
        self.apply(st, &ins, &n.original).await
    }

    async fn apply(&self, st: &mut Stage, ins: &Instruction, original: &str) -> BResult<()> {
        // Docker's history text: the instruction with its variables expanded, so that a
        // `--cache-from` image's entry matches only the same effect.
        let nop = format!("/bin/sh -c #(nop)  {}", describe(ins, original));
        let mut inputs = Inputs {
            parent: st.parent(),
            instruction: format!("{ins:?}"),
            ..Inputs::default()
        };
        let env_now = st.env();
        let workdir_now = st.str("WorkingDir");
        let cfg = &mut st.config;
        let set_list = |cfg: &mut Map<String, Value>, k: &str, v: &[String]| {
            cfg.insert(k.into(), json!(v));
        };
        match ins {
            Instruction::From { .. } => {
                return Err(bad_msg("FROM inside a stage".to_string()));
            }
            Instruction::Run {
                cmd,
                flags,
                heredocs,
            } => {
                let argv = match cmd {
                    Command::Exec(v) => v.clone(),
                    Command::Shell(s) => {
                        let script = heredoc_script(s, heredocs);
                        st.shell()
                            .into_iter()
                            .chain(std::iter::once(script))
                            .collect()
                    }
                };
                // Declared args join the environment (ENV wins) and the cache key.
                let env = st.env();
                let mut run_env = env.clone();
                let mut shown = Vec::new();
                for (k, v) in &st.args {
                    if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                        run_env.push(format!("{k}={v}"));
                    }
                    if !PROXY_ARGS.contains(&k.as_str()) {
                        inputs.args.insert(k.clone(), v.clone());
                        shown.push(format!("{k}={v}"));
                    }
                }
                for (k, v) in &self.opts.build_args {
                    if PROXY_ARGS.contains(&k.as_str()) && !st.args.contains_key(k) {
                        run_env.push(format!("{k}={v}"));
                    }
                }
                let mut created_by = argv.join(" ");
                if !shown.is_empty() {
                    created_by = format!("|{} {} {created_by}", shown.len(), shown.join(" "));
                }
                let mounts = self.run_mounts(flags)?;
                return self
                    .commit_step(
                        st,
                        inputs,
                        created_by,
                        Work::Run {
                            argv,
                            env: run_env,
                            mounts,
                        },
                    )
                    .await;
            }
            Instruction::Copy(c) => return self.copy(st, c, inputs).await,
            Instruction::Cmd(c) => {
                set_list(cfg, "Cmd", &command_argv(c, &st_shell(cfg)));
                st.cmd_set = true;
            }
            Instruction::Entrypoint(c) => {
                set_list(cfg, "Entrypoint", &command_argv(c, &st_shell(cfg)));
                if !st.cmd_set {
                    cfg.insert("Cmd".into(), Value::Null);
                }
                inputs
                    .instruction
                    .push_str(&format!(" cmd_set={}", st.cmd_set));
            }
            Instruction::Env(pairs) => {
                let mut env: Vec<String> = env_now;
                for (k, v) in pairs {
                    env.retain(|e| e.split('=').next() != Some(k));
                    env.push(format!("{k}={v}"));
                }
                set_list(cfg, "Env", &env);
            }
            Instruction::Label(pairs) => {
                let labels = obj(cfg, "Labels");
                for (k, v) in pairs {
                    labels.insert(k.clone(), json!(v));
                }
            }
            Instruction::Arg(list) => {
                for (k, default) in list {
                    let val = match self.opts.build_args.get(k) {
                        Some(v) => {
                            lock(&self.used).insert(k.clone());
                            Some(v.clone())
                        }
                        None => default.clone().or_else(|| self.meta_args.get(k).cloned()),
                    };
                    match val {
                        Some(v) => st.args.insert(k.clone(), v),
                        None => st.args.remove(k),
                    };
                }
                inputs.args = st.args.clone();
            }
            Instruction::Expose(ports) => {
                let exposed = obj(cfg, "ExposedPorts");
                for p in ports {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    exposed.insert(p, json!({}));
                }
            }
            Instruction::Workdir(w) => {
                let cur = workdir_now;
                let path = berth_build::ignore::clean(&if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{w}", if cur.is_empty() { "/" } else { &cur })
                });
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                cfg.insert("WorkingDir".into(), json!(path));
                let rel = path.trim_start_matches('/').to_string();
                if !rel.is_empty() && !self.view(&st.image)?.is_dir(&rel) {
                    if self.hit(st, &inputs, &nop).await? {
                        return Ok(());
                    }
                    let stage = self.scratch.join(format!("stage-{}", st.step));
                    files::mkdirs(&stage, &rel)?;
                    return self.commit_step(st, inputs, nop, Work::Layer(stage)).await;
                }
            }
            Instruction::User(u) => {
                cfg.insert("User".into(), json!(u));
            }
            Instruction::Volume(v) => {
                let vols = obj(cfg, "Volumes");
                for p in v {
                    vols.insert(p.clone(), json!({}));
                }
            }
            Instruction::StopSignal(s) => {
                cfg.insert("StopSignal".into(), json!(s));
            }
            Instruction::Healthcheck(h) => {
                cfg.insert("Healthcheck".into(), health_json(h));
            }
            Instruction::Shell(s) => set_list(cfg, "Shell", s),
            Instruction::Onbuild(t) => {
                let list = cfg
                    .entry("OnBuild")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                if let Value::Array(a) = list {
                    a.push(json!(t));
                }
            }
            Instruction::Maintainer(m) => {
                inputs.instruction = format!("MAINTAINER {m}");
            }
        }
        self.commit_step(st, inputs, nop, Work::Meta).await
    }

    /// COPY and ADD.
    async fn copy(&self, st: &mut Stage, c: &Copy, mut inputs: Inputs) -> BResult<()> {
        let kw = if c.add { "ADD" } else { "COPY" };
        let view = self.view(&st.image)?;
        let workdir = st.str("WorkingDir");
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!(
                "{}/{}",
                if workdir.is_empty() {
                    ""
                } else {
                    workdir.trim_end_matches('/')
                },
                c.dest
            )
        };
        // Cleaned as an absolute path, so that `..` never climbs out of the image's root.
        let dest_rel = berth_build::ignore::clean(&format!("/{dest}"))
            .trim_start_matches('/')
            .to_string();
        let dest_dir = dest.ends_with('/')
            || dest.ends_with("/.")
            || dest_rel.is_empty()
            || view.is_dir(&dest_rel);
        if c.srcs.len() > 1 && !dest_dir {
            return Err(bad_msg(format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let perms = files::Perms {
            owner: match &c.chown {
                Some(spec) => view.resolve_owner(spec)?,
                None => (0, 0),
            },
            chmod: c.chmod.as_deref().map(files::parse_chmod).transpose()?,
        };
        let stage = self.scratch.join(format!("stage-{}", st.step));
        // Where one source lands: into the destination directory, or as the destination.
        let target = |name: &str, is_dir: bool| -> PathBuf {
            if is_dir || !dest_dir {
                stage.join(&dest_rel)
            } else {
                stage.join(&dest_rel).join(name)
            }
        };
        let mut heredocs = Vec::new();
        let mut urls = Vec::new();
        let mut locals = Vec::new();
        for s in &c.srcs {
            if let Some(h) = s
                .strip_prefix("<<")
                .map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
                .and_then(|n| c.heredocs.iter().find(|h| h.name == n))
            {
                heredocs.push(h.clone());
            } else if c.add && (s.starts_with("http://") || s.starts_with("https://")) {
                urls.push(s.clone());
            } else {
                locals.push(s.clone());
            }
        }
        if let Some(from) = &c.from {
            let lower = from.to_ascii_lowercase();
            let img = match self.stage_by_name(&lower) {
                Some(id) => id,
                None => {
                    self.d
                        .images
                        .get(from)
                        .map_err(|_| {
                            bad_msg(format!("{kw} --from: No such image or stage: {from}"))
                        })?
                        .id
                }
            };
            inputs.instruction.push_str(&format!(" from-image={img}"));
            let created_by = copy_created_by(kw, &inputs, locals.len(), &c.dest);
            if self.hit(st, &inputs, &created_by).await? {
                return Ok(());
            }
            let src_view = self.view(&img)?;
            // `--from` keeps the source's owners and modes unless told otherwise.
            let chown_or_chmod = c.chown.is_some() || c.chmod.is_some();
            let stage2 = stage.clone();
            let dest_rel2 = dest_rel.clone();
            tokio::task::spawn_blocking(move || -> BResult<()> {
                // Globs expand against the source image's files.
                let mut sources = Vec::new();
                for s in &locals {
                    let rel = berth_build::ignore::clean(s.trim_start_matches('/'));
                    if rel.contains(['*', '?', '[']) {
                        let matched = src_view.glob(&rel);
                        if matched.is_empty() {
                            return Err(bad_msg(format!(
                                "{kw} failed: no source files were specified ({s})"
                            )));
                        }
                        sources.extend(matched);
                    } else {
                        sources.push(rel);
                    }
                }
                if sources.len() > 1 && !dest_dir {
                    return Err(bad_msg(format!(
                        "When using {kw} with more than one source file, the destination must be a directory and end with a /"
                    )));
                }
                // The staging dir is written by descriptors from its top, as the source is read.
                std::fs::create_dir_all(&stage2)?;
                let stage_root = berth_image::archive::Root::open(&stage2)?;
                for rel in &sources {
                    let is_dir = src_view.is_dir(rel);
                    let name = rel.rsplit('/').next().unwrap_or(rel);
                    let t = if is_dir || !dest_dir {
                        files::staged(&stage_root, &dest_rel2)?
                    } else {
                        files::staged(&stage_root, &format!("{dest_rel2}/{name}"))?
                    };
                    if !src_view.copy_out(rel, &t)? {
                        return Err(bad_msg(format!(
                            "{kw} failed: stat /{rel}: file does not exist"
                        )));
                    }
                    if chown_or_chmod {
                        files::apply_perms(&t, perms)?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
            return self
                .commit_step(st, inputs, created_by, Work::Layer(stage))
                .await;
        }
        let ctx = self.ctx.clone();
        let resolved = {
            let (ctx, locals) = (ctx.clone(), locals.clone());
            tokio::task::spawn_blocking(move || -> BResult<_> {
                let r = files::resolve_sources(&ctx, &locals, kw)?;
                let digests = files::digest_sources(&ctx, &r)?;
                Ok((r, digests))
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??
        };
        let (resolved, digests) = resolved;
        if resolved.len() + urls.len() + heredocs.len() > 1 && !dest_dir {
            return Err(bad_msg(format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        inputs.files = digests;
        let mut downloads = Vec::new();
        for u in &urls {
            let u2 = u.clone();
            let body = tokio::task::spawn_blocking(move || files::download(&u2))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&body);
            inputs
                .files
                .insert(u.clone(), berth_build::cache::hex(&digest));
            downloads.push((u.clone(), body));
        }
        // Unquoted heredoc delimiters expand the body's variables.
        for h in &mut heredocs {
            if h.expand {
                let lookup = |k: &str| st.lookup(k);
                h.content = berth_build::expand::vars_only(&h.content, self.escape, &lookup)
                    .map_err(bad_msg)?;
            }
            inputs
                .files
                .insert(format!("<<{}", h.name), h.content.clone());
        }
        let created_by = copy_created_by(
            kw,
            &inputs,
            resolved.len() + urls.len() + heredocs.len(),
            &c.dest,
        );
        if self.hit(st, &inputs, &created_by).await? {
            return Ok(());
        }
        let add = c.add;
        let targets: Vec<(String, PathBuf, bool)> = resolved
            .iter()
            .map(|r| {
                let is_dir = std::fs::symlink_metadata(ctx.join(r)).is_ok_and(|m| m.is_dir());
                let name = r.rsplit('/').next().unwrap_or(r).to_string();
                (r.clone(), target(&name, is_dir), is_dir)
            })
            .collect();
        let url_targets: Vec<(PathBuf, Vec<u8>)> = downloads
            .into_iter()
            .map(|(u, body)| {
                let name = u
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("download")
                    .to_string();
                (target(&name, false), body)
            })
            .collect();
        let here_targets: Vec<(PathBuf, String)> = heredocs
            .iter()
            .map(|h| (target(&h.name, false), h.content.clone()))
            .collect();
        let stage2 = stage.clone();
        tokio::task::spawn_blocking(move || -> BResult<()> {
            std::fs::create_dir_all(&stage2)?;
            for (rel, t, is_dir) in targets {
                let src = ctx.join(&rel);
                if let Some(p) = t.parent() {
                    std::fs::create_dir_all(p)?;
                }
                if !is_dir && add && files::is_archive(&src) {
                    let dir = if dest_dir {
                        t.parent().map(Path::to_path_buf).unwrap_or(t.clone())
                    } else {
                        t.clone()
                    };
                    files::extract_archive(&src, &dir)?;
                } else {
                    files::copy_in(&src, &t, perms)?;
                }
            }
            for (t, body) in url_targets {
                if let Some(p) = t.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&t, body)?;
                let mode = perms.chmod.unwrap_or(0o600);
                std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                std::os::unix::fs::lchown(&t, Some(perms.owner.0), Some(perms.owner.1))?;
            }
            for (t, content) in here_targets {
                if let Some(p) = t.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&t, content)?;
                let mode = perms.chmod.unwrap_or(0o644);
                std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                std::os::unix::fs::lchown(&t, Some(perms.owner.0), Some(perms.owner.1))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        self.commit_step(st, inputs, created_by, Work::Layer(stage))
            .await
    }

    /// The image of an earlier stage named `name` (or numbered).
    fn stage_by_name(&self, name: &str) -> Option<String> {
        let i = self
            .stage_names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .or_else(|| name.parse::<usize>().ok())?;
        lock(&self.stage_images).get(&i).cloned()
    }

    /// RUN's `--mount` (cache, bind from the context, tmpfs) and `--network` flags.
    fn run_mounts(&self, flags: &[String]) -> BResult<RunMounts> {
        let mut m = RunMounts::default();
        for f in flags {
            if let Some(n) = f.strip_prefix("--network=") {
                m.network = Some(match n {
                    "default" => self.opts.network.clone(),
                    "none" | "host" => n.to_string(),
                    other => {
                        return Err(bad_msg(format!(
                            "unsupported RUN --network mode {other:?} (default, none, host)"
                        )))
                    }
                });
                continue;
            }
            let Some(spec) = f.strip_prefix("--mount=") else {
                if f.starts_with("--security") {
                    return Err(bad_msg(format!("{f} is not supported by berth's builder")));
                }
                continue;
            };
            let mut kv: BTreeMap<String, String> = BTreeMap::new();
            for part in spec.split(',') {
                let (k, v) = part.split_once('=').unwrap_or((part, "true"));
                kv.insert(k.to_ascii_lowercase(), v.to_string());
            }
            let get = |ks: &[&str]| ks.iter().find_map(|k| kv.get(*k).cloned());
            let kind = get(&["type"]).unwrap_or_else(|| "bind".to_string());
            if !matches!(kind.as_str(), "cache" | "tmpfs" | "bind") {
                return Err(bad_msg(format!(
                    "RUN --mount=type={kind} is not supported by berth's builder (cache, bind, tmpfs)"
                )));
            }
            let target = get(&["target", "dst", "destination"])
                .ok_or_else(|| bad_msg(format!("mount {spec:?}: target is required")))?;
            if !target.starts_with('/') {
                return Err(bad_msg(format!("mount {spec:?}: target must be absolute")));
            }
            let ro = get(&["readonly", "ro"]).is_some_and(|v| v != "false");
            match kind.as_str() {
                "cache" => {
                    // One directory per cache id (the target when no id), kept across builds.
                    let id = get(&["id"]).unwrap_or_else(|| target.clone());
                    let name = berth_build::cache::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                        id.as_bytes(),
                    ));
                    let dir = self
                        .d
                        .cfg
                        .data_root
                        .join("builder")
                        .join("cachemounts")
                        .join(name);
                    std::fs::create_dir_all(&dir)?;
                    let opt = if ro { ":ro" } else { "" };
                    m.binds.push(format!("{}:{target}{opt}", dir.display()));
                }
                "tmpfs" => {
                    let opts = get(&["size"])
                        .map(|s| format!("size={s}"))
                        .unwrap_or_default();
                    m.tmpfs.insert(target, opts);
                }
                _ => {
                    // "bind", the default.
                    if let Some(from) = get(&["from"]) {
                        return Err(bad_msg(format!(
                            "RUN --mount=type=bind,from={from} is not supported by berth's builder (bind mounts come from the context)"
                        )));
                    }
                    let src = berth_build::ignore::clean(
                        get(&["source", "src"])
                            .unwrap_or_default()
                            .trim_start_matches('/'),
                    );
                    if src.starts_with("..") {
                        return Err(bad_msg(format!(
                            "mount {spec:?}: source is outside the context"
                        )));
                    }
                    // Symlinks in the context resolve inside it, never to the host's files.
                    let missing = || {
                        bad_msg(format!(
                            "mount {spec:?}: {src} not found in the build context"
                        ))
                    };
                    let host = berth_image::archive::resolve_in_root(&self.ctx, Path::new(&src))
                        .map_err(|_| missing())?;
                    match std::fs::symlink_metadata(&host) {
                        Err(_) => return Err(missing()),
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(bad_msg(format!(
                                "mount {spec:?}: {src} is a symlink; bind a file or directory"
                            )))
                        }
                        Ok(_) => {}
                    }
                    let rw = get(&["rw", "readwrite"]).is_some_and(|v| v != "false");
                    let opt = if rw { "" } else { ":ro" };
                    m.binds.push(format!("{}:{target}{opt}", host.display()));
                }
            }
        }
        Ok(m)
    }

    /// Looks the step up in the cache; on a hit moves the stage onto the cached image.
    /// Then a `--cache-from` image whose history continues with the same step gives the
    /// result without running it.
    async fn hit(&self, st: &mut Stage, inputs: &Inputs, created_by: &str) -> BResult<bool> {
        if self.opts.nocache {
            return Ok(false);
        }
        let key = inputs.key();
        // Given `cachefrom` images, they are the only cache (none found: no cache at all).
        let rec = if self.opts.cache_from.is_empty() {
            cache::lookup(&self.d.cfg.data_root, &key)
                .filter(|r| self.d.images.resolve_id(&r.image).is_ok())
        } else {
            None
        };
        let from_cf = self.advance_cache_from(st, created_by);
        let rec = match (rec, from_cf) {
            (Some(r), _) => Some(r),
            (None, Some((img, layer))) => Some(
                self.reuse_cache_image(st, inputs, created_by, &img, layer)
                    .await?,
            ),
            (None, None) => None,
        };
        let Some(rec) = rec else {
            if self.opts.explain {
                let mut why = {
                    let mut records = lock(&self.records);
                    let records = records.get_or_insert_with(|| {
                        cache::all(&self.d.cfg.data_root)
                            .into_iter()
                            .map(|(_, r)| r)
                            .collect()
                    });
                    berth_build::cache::explain(inputs, records)
                };
                if why == "parent image changed" {
                    if let Some(m) = st.last_miss {
                        why = format!("parent changed (step {m} missed)");
                    }
                }
                self.say(format!(" ---> Cache miss: {why}\n"));
            }
            return Ok(false);
        };
        self.say(" ---> Using cache\n".to_string());
        if self.opts.explain {
            self.say(
                " ---> Cache hit: same parent, instruction, build args and files\n".to_string(),
            );
        }
        st.config = self.image_config(&rec.image)?;
        st.image = rec.image;
        self.say(format!(" ---> {}\n", short(&st.image)));
        Ok(true)
    }

    /// Positions in the `--cache-from` images whose history starts with `base`'s.
    fn align_cache_from(&self, base: &str) -> Vec<CachePos> {
        let mut out = Vec::new();
        let (b_hist, b_layers) = if base.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            match self.d.images.get(base) {
                Ok(b) => (history_of(&b), b.layers.clone()),
                Err(_) => return out,
            }
        };
        for name in &self.opts.cache_from {
            let Ok(x) = self.d.images.get(name) else {
                continue;
            };
            let x_hist = history_of(&x);
            if x_hist.starts_with(&b_hist) && x.layers.starts_with(&b_layers) {
                lock(&self.cf_history).insert(x.id.clone(), x_hist);
                out.push(CachePos {
                    image: x.id.clone(),
                    hist: b_hist.len(),
                    layer: b_layers.len(),
                });
            }
        }
        out
    }

    /// Moves the stage's `--cache-from` positions past a step made by `created_by`; the image
    /// and layer index (`None` for an empty layer) of the first that matched.
    fn advance_cache_from(
        &self,
        st: &mut Stage,
        created_by: &str,
    ) -> Option<(String, Option<usize>)> {
        let mut found = None;
        let hist = lock(&self.cf_history);
        st.cache_from.retain_mut(|p| {
            let Some((cb, empty)) = hist.get(&p.image).and_then(|h| h.get(p.hist)) else {
                return false;
            };
            if cb != created_by {
                return false;
            }
            let empty = *empty;
            let layer = (!empty).then_some(p.layer);
            found.get_or_insert((p.image.clone(), layer));
            p.hist += 1;
            if !empty {
                p.layer += 1;
            }
            true
        });
        found
    }

    /// A step's image made from a `--cache-from` image: its layer (unpacked) on the current
    /// image, or only the config for an empty layer.
    async fn reuse_cache_image(
        &self,
        st: &Stage,
        inputs: &Inputs,
        created_by: &str,
        image: &str,
        layer: Option<usize>,
    ) -> BResult<Record> {
        let dir = match layer {
            Some(i) => {
                let dirs = self.d.images.rootfs_layers(image)?;
                dirs.len()
                    .checked_sub(i + 1)
                    .and_then(|j| dirs.get(j).cloned())
                    .ok_or_else(|| Error::internal("cache-from image lost a layer"))?
            }
            None => {
                std::fs::create_dir_all(&self.empty_dir)?;
                self.empty_dir.clone()
            }
        };
        let parent = (!st.image.is_empty()).then(|| st.image.clone());
        let opts = berth_image::CommitOptions {
            raw_config: Some(st.config.clone()),
            created_by: Some(created_by.to_string()),
            ..Default::default()
        };
        let d = self.d.clone();
        let img =
            tokio::task::spawn_blocking(move || d.images.commit(&dir, parent.as_deref(), &opts))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
        let rec = Record {
            inputs: inputs.clone(),
            image: img.id,
            created: now_secs(),
        };
        cache::save(&self.d.cfg.data_root, &rec)?;
        *lock(&self.records) = None;
        if self.opts.explain {
            self.say(format!(
                " ---> Cache hit from --cache-from image {}\n",
                short(image)
            ));
        }
        Ok(rec)
    }

    /// Runs a step unless cached, commits its result and records it.
    async fn commit_step(
        &self,
        st: &mut Stage,
        inputs: Inputs,
        created_by: String,
        work: Work,
    ) -> BResult<()> {
        let size = serde_json::to_vec(&st.config).map_or(0, |v| v.len());
        if size > MAX_CONFIG_BYTES {
            return Err(bad_msg(format!(
                "the image config would be {size} bytes; berth builds at most {MAX_CONFIG_BYTES}"
            )));
        }
        if !matches!(work, Work::Layer(_)) && self.hit(st, &inputs, &created_by).await? {
            return Ok(());
        }
        // Layer work checked the cache before staging its files.
        st.last_miss = Some(st.step);
        let parent = (!st.image.is_empty()).then(|| st.image.clone());
        let opts = berth_image::CommitOptions {
            raw_config: Some(st.config.clone()),
            created_by: Some(created_by),
            ..Default::default()
        };
        let img = match work {
            Work::Meta => {
                std::fs::create_dir_all(&self.empty_dir)?;
                let (d, dir) = (self.d.clone(), self.empty_dir.clone());
                tokio::task::spawn_blocking(move || d.images.commit(&dir, parent.as_deref(), &opts))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))??
            }
            Work::Layer(dir) => {
                std::fs::create_dir_all(&dir)?;
                let d = self.d.clone();
                let dir2 = dir.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let r = d.images.commit(&dir2, parent.as_deref(), &opts);
                    let _ = std::fs::remove_dir_all(&dir2);
                    r
                })
                .await
                .map_err(|e| Error::internal(e.to_string()))?;
                r?
            }
            Work::Run { argv, env, mounts } => {
                self.run_container(st, argv, env, mounts, opts).await?
            }
        };
        cache::save(
            &self.d.cfg.data_root,
            &Record {
                inputs,
                image: img.id.clone(),
                created: now_secs(),
            },
        )?;
        *lock(&self.records) = None;
        st.image = img.id;
        self.say(format!(" ---> {}\n", short(&st.image)));
        Ok(())
    }

    /// RUN: a container from the stage's image runs `argv`; its changes become the layer.
    async fn run_container(
        &self,
        st: &Stage,
        argv: Vec<String>,
        env: Vec<String>,
        mounts: RunMounts,
        opts: berth_image::CommitOptions,
    ) -> BResult<berth_image::Image> {
        if st.image.is_empty() {
            return Err(bad_msg(format!(
                "The command '{}' cannot run: the stage has no filesystem (FROM scratch)",
                argv.join(" ")
            )));
        }
        let config = berth_api::container::Config {
            image: st.image.clone(),
            cmd: Some(argv.clone()),
            entrypoint: Some(Vec::new()),
            env: Some(env),
            working_dir: st.str("WorkingDir"),
            user: st.str("User"),
            attach_stdout: true,
            attach_stderr: true,
            healthcheck: Some(berth_api::container::HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let host_config = berth_api::container::HostConfig {
            network_mode: mounts.network.unwrap_or_else(|| self.opts.network.clone()),
            binds: (!mounts.binds.is_empty()).then_some(mounts.binds),
            tmpfs: (!mounts.tmpfs.is_empty()).then_some(mounts.tmpfs),
            ..self.opts.run_host.clone()
        };
        let req = berth_api::container::CreateRequest {
            config,
            host_config,
            networking_config: None,
        };
        let id = crate::container::lifecycle::create_for_build(&self.d, req).await?;
        let c = self.d.find(&id)?;
        self.say(format!(" ---> Running in {}\n", short(&id)));
        let res = self.run_in(&c, &argv, opts).await;
        // Kept, it becomes an ordinary stopped container (no longer removed at boot).
        if res.is_ok() && self.opts.keep_containers && c.update_durable(|r| r.build = false).is_ok()
        {
            return res;
        }
        let _ = crate::container::lifecycle::remove(&self.d, &c, true, true).await;
        if res.is_ok() {
            self.say(format!(
                " ---> Removed intermediate container {}\n",
                short(&id)
            ));
        }
        res
    }

    async fn run_in(
        &self,
        c: &Arc<crate::container::handle::Container>,
        argv: &[String],
        opts: berth_image::CommitOptions,
    ) -> BResult<berth_image::Image> {
        crate::container::lifecycle::start(&self.d, c).await?;
        let (ltx, mut lrx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let lopts = crate::container::logs::Options {
            stdout: true,
            stderr: true,
            follow: true,
            timestamps: false,
            tail: None,
            since: None,
            until: None,
            tty: false,
            details: None,
        };
        let logs = tokio::spawn(crate::container::logs::stream(c.clone(), lopts, ltx));
        let tx = self.tx.clone();
        let quiet = self.opts.quiet;
        let forward = tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = lrx.recv().await {
                buf.extend_from_slice(&chunk);
                // Multiplexed frames: 8-byte header (stream, 0, 0, 0, big-endian size).
                while buf.len() >= 8 {
                    let size = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                    if buf.len() < 8 + size {
                        break;
                    }
                    let mut text = String::from_utf8_lossy(&buf[8..8 + size]).to_string();
                    // The classic builder shows RUN's stderr in red.
                    if buf[0] == berth_api::stdcopy::STDERR {
                        text = format!("\x1b[91m{text}\x1b[0m");
                    }
                    buf.drain(..8 + size);
                    if !quiet {
                        let _ = tx.send(Bytes::from(Message::stream(text).line()));
                    }
                }
            }
        });
        let code = crate::container::lifecycle::wait(c, "not-running").await?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), logs).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forward).await;
        if code != 0 {
            return Err(Failure {
                code: Some(code),
                msg: format!(
                    "The command '{}' returned a non-zero code: {code}",
                    argv.join(" ")
                ),
            });
        }
        let (d, c2) = (self.d.clone(), c.clone());
        let parent = c.rec().image_id.clone();
        let mut opts = opts;
        opts.ids = d.remap_of(&c.rec()).map(|r| r.ids.clone());
        let img = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(c2.paths.upper())?;
            d.images
                .commit(&c2.paths.upper(), Some(&parent), &opts)
                .map_err(Error::from)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        Ok(img)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A position in a `--cache-from` image's history: the next entry and layer to match.
struct CachePos {
    image: String,
    hist: usize,
    layer: usize,
}

/// An image's history as (created_by, empty_layer) pairs.
fn history_of(img: &berth_image::Image) -> Vec<(String, bool)> {
    img.config
        .history()
        .as_ref()
        .map(|h| {
            h.iter()
                .map(|e| {
                    (
                        e.created_by().clone().unwrap_or_default(),
                        e.empty_layer().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Docker's history line of a COPY/ADD: what was copied as a digest (so that a changed file
/// never matches a `--cache-from` image's step) and where to.
fn copy_created_by(kw: &str, inputs: &Inputs, sources: usize, dest: &str) -> String {
    let digest = Inputs {
        parent: String::new(),
        ..inputs.clone()
    }
    .key();
    let kind = match (sources, inputs.files.keys().any(|k| k.ends_with('/'))) {
        (1, false) => "file",
        (1, true) => "dir",
        _ => "multi",
    };
    format!("/bin/sh -c #(nop) {kw} {kind}:{digest} in {dest} ")
}

/// What RUN's flags add to its container.
#[derive(Default)]
struct RunMounts {
    binds: Vec<String>,
    tmpfs: BTreeMap<String, String>,
    network: Option<String>,
}

fn bad(e: berth_build::Error) -> Failure {
    bad_msg(e.to_string())
}

fn bad_msg(msg: String) -> Failure {
    Failure { code: None, msg }
}

/// As dockerd does once the Dockerfile is read: `.dockerignore` and the Dockerfile (which the
/// client sends even when `.dockerignore` lists them; the docker CLI lists a Dockerfile it adds
/// under a generated name) leave the context when `.dockerignore` lists them, so `COPY .`
/// does not copy them.
fn leave_out_build_files(ctx: &Path, dockerfile: &str) -> Result<()> {
    let text = match std::fs::read_to_string(ctx.join(".dockerignore")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let m = berth_build::ignore::Matcher::parse(&text);
    for name in [".dockerignore", dockerfile] {
        let rel = berth_build::ignore::clean(name.trim_start_matches('/'));
        if rel.is_empty() || !m.excluded(&rel) {
            continue;
        }
        let Ok(p) = berth_image::archive::resolve_in_root(ctx, Path::new(&rel)) else {
            continue;
        };
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => std::fs::remove_dir_all(&p)?,
            Ok(_) => std::fs::remove_file(&p)?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// Builds run on the host's platform only: other platforms are refused, not ignored.
fn check_platform(p: Option<&str>) -> std::result::Result<(), String> {
    match p.filter(|p| !p.is_empty()) {
        Some(p) if !berth_api::platform::is_host(p) => Err(format!(
            "platform {p} is not supported by berth's builder (it builds for linux/{})",
            berth_api::platform::go_arch()
        )),
        _ => Ok(()),
    }
}

/// A metadata instruction as history shows it, variables expanded.
fn describe(ins: &Instruction, original: &str) -> String {
    let pairs = |kw: &str, p: &[(String, String)]| {
        let body: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{kw} {}", body.join(" "))
    };
    let js = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    let cmd = |kw: &str, c: &Command| match c {
        Command::Exec(v) => format!("{kw} {}", js(v)),
        Command::Shell(s) => format!("{kw} {s}"),
    };
    match ins {
        Instruction::Env(p) => pairs("ENV", p),
        Instruction::Label(p) => pairs("LABEL", p),
        Instruction::Cmd(c) => cmd("CMD", c),
        Instruction::Entrypoint(c) => cmd("ENTRYPOINT", c),
        Instruction::Expose(p) => format!("EXPOSE {}", p.join(" ")),
        Instruction::Workdir(w) => format!("WORKDIR {w}"),
        Instruction::User(u) => format!("USER {u}"),
        Instruction::Volume(v) => format!("VOLUME {}", js(v)),
        Instruction::StopSignal(sig) => format!("STOPSIGNAL {sig}"),
        Instruction::Shell(v) => format!("SHELL {}", js(v)),
        Instruction::Onbuild(t) => format!("ONBUILD {t}"),
        Instruction::Healthcheck(h) => format!("HEALTHCHECK {}", health_json(h)),
        _ => original.to_string(),
    }
}

/// The config's `Shell`, `/bin/sh -c` by default.
fn st_shell(cfg: &Map<String, Value>) -> Vec<String> {
    match cfg.get("Shell").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => vec!["/bin/sh".into(), "-c".into()],
    }
}

fn command_argv(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell
            .iter()
            .cloned()
            .chain(std::iter::once(s.clone()))
            .collect(),
    }
}

/// The object `k` of the config, created when missing.
fn obj<'a>(cfg: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    let v = cfg.entry(k).or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn health_json(h: &Health) -> Value {
    let mut m = Map::new();
    m.insert("Test".into(), json!(h.test));
    for (k, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
        ("Retries", h.retries),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// A RUN shell command with its heredocs: `RUN <<EOF` alone runs the body as the script;
/// otherwise the heredocs follow the command line as the shell's own heredocs.
fn heredoc_script(cmd: &str, heredocs: &[berth_build::Heredoc]) -> String {
    match heredocs {
        [] => cmd.to_string(),
        [h] if cmd
            .trim()
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == h.name =>
        {
            h.content.clone()
        }
        hs => {
            let mut s = cmd.to_string();
            s.push('\n');
            for h in hs {
                s.push_str(&h.content);
                s.push_str(&h.name);
                s.push('\n');
            }
            s
        }
    }
}

/// `POST /build/prune`.
pub async fn prune(
    State(d): St,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Response> {
    // Without `all`, only dangling cache goes: steps no tagged image is built on.
    let q = crate::util::Query::parse(q.as_deref());
    let all = q.bool("all");
    if !q.filters()?.is_empty() {
        return Err(Error::bad_request(
            "build cache prune filters are not supported by berth",
        ));
    }
    for k in [
        "keep-storage",
        "reserved-space",
        "max-used-space",
        "min-free-space",
    ] {
        if q.int(k)?.is_some_and(|v| v != 0) {
            return Err(Error::bad_request(format!(
                "build cache prune: {k} is not supported by berth"
            )));
        }
    }
    let (ids, freed) = tokio::task::spawn_blocking(move || cache::prune(&d, all))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(json(
        200,
        &json!({ "CachesDeleted": ids, "SpaceReclaimed": freed }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_scripts() {
        let h = berth_build::Heredoc {
            name: "EOF".into(),
            content: "echo a\necho b\n".into(),
            expand: true,
        };
        assert_eq!(
            heredoc_script("<<EOF", std::slice::from_ref(&h)),
            "echo a\necho b\n"
        );
        assert_eq!(
            heredoc_script("cat > /f <<EOF", std::slice::from_ref(&h)),
            "cat > /f <<EOF\necho a\necho b\nEOF\n"
        );
        assert_eq!(heredoc_script("echo x", &[]), "echo x");
    }
}
