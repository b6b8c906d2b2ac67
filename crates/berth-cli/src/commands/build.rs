//! `berth build` (the context tarred client-side honouring `.dockerignore`, then
//! `POST /build` with its message stream rendered) and `berth builder prune`.

use crate::client::{enc, Client, ReqBody};
use berth_build::ignore::Matcher;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Set type of progress output ("auto", "plain", "tty")
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Say for each step why the cache was hit or missed
    #[arg(long = "explain-cache")]
    pub explain_cache: bool,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Output destination (format: "type=tar,dest=path" or "type=local,dest=dir")
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Add a custom host-to-IP mapping ("host:ip") for RUN
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set the parent cgroup for the RUN instructions (refused by berth's builder)
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Compress the build context using gzip
    #[arg(long)]
    pub compress: bool,
    /// Limit the CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit the CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Skip image verification (default true; berth does not verify signatures)
    #[arg(long = "disable-content-trust", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_content_trust: bool,
    /// Always remove intermediate containers (berth removes failed ones in any case)
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Container isolation technology (only "default" on Linux)
    #[arg(long)]
    pub isolation: Option<String>,
    /// Memory limit of RUN containers
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Set platform (only the host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rm: bool,
    /// Security options of RUN containers
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Size of "/dev/shm" of RUN containers
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Squash newly built layers into a single new layer (refused: needs experimental mode)
    #[arg(long)]
    pub squash: bool,
    /// Ulimit options of RUN containers
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// PATH | URL | -
    pub context: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BuilderCommand {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Remove build cache
    Prune(BuilderPruneArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (refused: berth's build cache prune takes none)
    #[arg(long)]
    pub filter: Vec<String>,
    /// Amount of disk space to keep for cache (refused: berth's build cache prune takes none)
    #[arg(long = "keep-storage")]
    pub keep_storage: Option<String>,
}

/// Where `--output` sends the result.
enum Output {
    Tar(String),
    Local(PathBuf),
}

fn parse_output(s: &str) -> Result<Output, String> {
    let mut kind = None;
    let mut dest = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ if !part.contains('=') && kind.is_none() => {
                kind = Some("local".into());
                dest = Some(part.to_string());
            }
            _ => return Err(format!("invalid output option {part:?}")),
        }
    }
    match (kind.as_deref(), dest) {
        (Some("tar"), Some(d)) => Ok(Output::Tar(d)),
        (Some("tar"), None) => Ok(Output::Tar("-".into())),
        (Some("local"), Some(d)) => Ok(Output::Local(PathBuf::from(d))),
        (Some(k), _) => Err(format!("output type {k:?} is not supported (tar, local)")),
        (None, _) => Err("output type is required".into()),
    }
}

fn is_archive(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || b.starts_with(b"BZh")
        || (b.len() >= 262 && &b[257..262] == b"ustar")
}

/// Tars `dir` for the daemon: `.dockerignore` applies (the Dockerfile and `.dockerignore`
/// always go), owners become root and times fixed, so unchanged files tar identically.
pub fn tar_context(dir: &Path, dockerfile: Option<&str>) -> Result<Vec<u8>, String> {
    let ignore = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
    let mut m = Matcher::parse(&ignore);
    m.keep(".dockerignore");
    m.keep(dockerfile.unwrap_or("Dockerfile"));
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    walk(dir, "", &m, &mut b)?;
    b.into_inner().map_err(|e| format!("writing context: {e}"))
}

fn walk(root: &Path, rel: &str, m: &Matcher, b: &mut tar::Builder<Vec<u8>>) -> Result<(), String> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("error checking context: {e}"))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in names {
        let r = if rel.is_empty() {
            n
        } else {
            format!("{rel}/{n}")
        };
        let p = root.join(&r);
        let meta =
            std::fs::symlink_metadata(&p).map_err(|e| format!("error checking context: {e}"))?;
        let excluded = m.excluded(&r);
        if meta.is_dir() {
            if !excluded {
                b.append_path_with_name(&p, &r)
                    .map_err(|e| format!("error adding {r} to the context: {e}"))?;
            }
            if !excluded || m.may_reinclude_under(&r) {
                walk(root, &r, m, b)?;
            }
        } else if !excluded {
            b.append_path_with_name(&p, &r)
                .map_err(|e| format!("error adding {r} to the context: {e}"))?;
        }
    }
    Ok(())
}

/// The header of a root-owned 0644 file of `len` bytes.
fn file_header(len: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// A tar holding only `Dockerfile` with `content`.
fn dockerfile_tar(name: &str, content: &[u8]) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = file_header(content.len());
    b.append_data(&mut h, name, content)
        .map_err(|e| format!("writing context: {e}"))?;
    b.into_inner().map_err(|e| format!("writing context: {e}"))
}

/// Appends a file to an uncompressed tar (drops its end-of-archive blocks first).
pub fn append_file(tar: Vec<u8>, name: &str, content: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&tar[..]);
    for e in ar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let mut h = e.header().clone();
        let path = e.path().map_err(|e| e.to_string())?.to_path_buf();
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(|e| e.to_string())?;
        out.append_data(&mut h, path, &data[..])
            .map_err(|e| e.to_string())?;
    }
    let mut h = file_header(content.len());
    out.append_data(&mut h, name, content)
        .map_err(|e| e.to_string())?;
    out.into_inner().map_err(|e| e.to_string())
}

/// The context tar and the `dockerfile` query value.
fn context(a: &BuildArgs) -> Result<(Vec<u8>, Option<String>), String> {
    if a.context.starts_with("http://")
        || a.context.starts_with("https://")
        || a.context.starts_with("git@")
        || a.context.starts_with("git://")
    {
        return Err(format!(
            "unable to prepare context: URL contexts ({}) are not supported by berth; clone or download it and build the directory",
            a.context
        ));
    }
    let read_file = |f: &str| -> Result<Vec<u8>, String> {
        if f == "-" {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| format!("reading the Dockerfile from stdin: {e}"))?;
            Ok(v)
        } else {
            std::fs::read(f).map_err(|e| {
                format!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: {e}")
            })
        }
    };
    if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            return Err(
                "invalid argument: can't use stdin for both build context and dockerfile".into(),
            );
        }
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| format!("reading the context from stdin: {e}"))?;
        if is_archive(&v) {
            return Ok((v, a.file.clone()));
        }
        return Ok((dockerfile_tar("Dockerfile", &v)?, None));
    }
    let dir = PathBuf::from(&a.context);
    if !dir.is_dir() {
        return Err(format!(
            "unable to prepare context: path {:?} not found",
            a.context
        ));
    }
    match a.file.as_deref() {
        None => {
            if !dir.join("Dockerfile").exists() {
                return Err(format!(
                    "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory",
                    dir.join("Dockerfile").display()
                ));
            }
            Ok((tar_context(&dir, None)?, None))
        }
        Some(f) => {
            // A Dockerfile inside the context goes by its relative name; one outside it
            // (or on stdin) is added to the tar under a private name.
            let inside = (f != "-")
                .then(|| {
                    let abs = std::fs::canonicalize(f).ok()?;
                    let ctx = std::fs::canonicalize(&dir).ok()?;
                    abs.strip_prefix(&ctx)
                        .ok()
                        .map(|r| r.to_string_lossy().to_string())
                })
                .flatten();
            match inside {
                Some(rel) => Ok((tar_context(&dir, Some(&rel))?, Some(rel))),
                None => {
                    let content = read_file(f)?;
                    let name = format!(".dockerfile.{}", std::process::id());
                    let t = tar_context(&dir, None)?;
                    Ok((append_file(t, &name, &content)?, Some(name)))
                }
            }
        }
    }
}

fn kv_map(items: &[String], env_fallback: bool) -> BTreeMap<String, Option<String>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None if env_fallback => (s.clone(), std::env::var(s).ok()),
            None => (s.clone(), Some(String::new())),
        })
        .collect()
}

pub async fn build(c: &Client, a: BuildArgs) -> i32 {
    if !a.disable_content_trust {
        eprintln!("berth: content trust (--disable-content-trust=false) needs a notary server; berth does not verify image signatures");
        return 1;
    }
    if !matches!(a.progress.as_str(), "auto" | "plain" | "tty") {
        eprintln!(
            "invalid argument {:?} for \"--progress\" flag: must be auto, plain or tty",
            a.progress
        );
        return 125;
    }
    let output = match a.output.as_deref().map(parse_output).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 125;
        }
    };
    let (tar, dockerfile) = match context(&a) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut q = format!("/build?rm={}", a.rm as u8);
    if a.force_rm {
        q.push_str("&forcerm=1");
    }
    if a.squash {
        q.push_str("&squash=1");
    }
    for h in &a.add_host {
        q.push_str(&format!("&extrahosts={}", enc(h)));
    }
    for o in &a.security_opt {
        q.push_str(&format!("&securityopt={}", enc(o)));
    }
    let limits = (|| -> Result<Vec<(&str, String)>, String> {
        use super::resources as res;
        let mut l = Vec::new();
        let bytes = |flag: &str, v: &Option<String>| res::bytes(flag, v.as_deref());
        for (k, v) in [
            ("memory", bytes("-m, --memory", &a.memory)?),
            ("memswap", res::swap_bytes(a.memory_swap.as_deref())?),
            ("shmsize", bytes("--shm-size", &a.shm_size)?),
        ] {
            if v != 0 {
                l.push((k, v.to_string()));
            }
        }
        for (k, v) in [
            ("cpushares", a.cpu_shares),
            ("cpuperiod", a.cpu_period),
            ("cpuquota", a.cpu_quota),
        ] {
            if let Some(v) = v {
                l.push((k, v.to_string()));
            }
        }
        for (k, v) in [
            ("cpusetcpus", &a.cpuset_cpus),
            ("cpusetmems", &a.cpuset_mems),
            ("isolation", &a.isolation),
            ("cgroupparent", &a.cgroup_parent),
            ("platform", &a.platform),
        ] {
            if let Some(v) = v {
                l.push((k, v.clone()));
            }
        }
        if !a.ulimit.is_empty() {
            let u = a
                .ulimit
                .iter()
                .map(|u| res::ulimit(u))
                .collect::<Result<Vec<_>, _>>()?;
            l.push((
                "ulimits",
                serde_json::to_string(&u).map_err(|e| e.to_string())?,
            ));
        }
        Ok(l)
    })();
    match limits {
        Ok(l) => {
            for (k, v) in l {
                q.push_str(&format!("&{k}={}", enc(&v)));
            }
        }
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    }
    for t in &a.tags {
        q.push_str(&format!("&t={}", enc(t)));
    }
    if let Some(f) = &dockerfile {
        q.push_str(&format!("&dockerfile={}", enc(f)));
    }
    if !a.build_args.is_empty() {
        q.push_str(&format!("&buildargs={}", jq(&kv_map(&a.build_args, true))));
    }
    if !a.labels.is_empty() {
        q.push_str(&format!("&labels={}", jq(&kv_map(&a.labels, false))));
    }
    if !a.cache_from.is_empty() {
        q.push_str(&format!("&cachefrom={}", jq(&a.cache_from)));
    }
    for (flag, on) in [
        ("nocache", a.no_cache),
        ("pull", a.pull),
        ("q", a.quiet),
        ("explaincache", a.explain_cache),
    ] {
        if on {
            q.push_str(&format!("&{flag}=1"));
        }
    }
    if let Some(t) = &a.target {
        q.push_str(&format!("&target={}", enc(t)));
    }
    if let Some(n) = &a.network {
        q.push_str(&format!("&networkmode={}", enc(n)));
    }
    let tar = if a.compress {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        match gz.write_all(&tar).and_then(|()| gz.finish()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("compressing the build context: {e}");
                return 1;
            }
        }
    } else {
        tar
    };
    let body: ReqBody = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
        http_body_util::Full::new(Bytes::from(tar)),
        |never: std::convert::Infallible| match never {},
    ));
    let resp = match c.send(Method::POST, &q, body, "application/x-tar").await {
        Ok(r) => r,
        Err(e) => return super::report(&e, 1),
    };
    let live =
        a.progress == "tty" || (a.progress == "auto" && crate::stream::is_tty(std::io::stdout()));
    let mut view = View::new(live);
    let mut image_id = String::new();
    let mut failure: Option<(String, i32)> = None;
    let mut quiet_out = String::new();
    let res = crate::client::for_each_line(resp, |line| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return true;
        };
        if let Some(id) = v["aux"]["ID"].as_str() {
            image_id = id.to_string();
        }
        if let Some(e) = v["error"].as_str() {
            let code = v["errorDetail"]["code"]
                .as_i64()
                .filter(|c| *c > 0)
                .unwrap_or(1);
            failure = Some((e.to_string(), i32::try_from(code).unwrap_or(1)));
            return false;
        }
        if let Some(s) = v["stream"].as_str() {
            if a.quiet {
                quiet_out.push_str(s);
            } else {
                view.stream(s);
            }
        } else if let Some(s) = v["status"].as_str() {
            if !a.quiet {
                let id = v["id"]
                    .as_str()
                    .map(|i| format!("{i}: "))
                    .unwrap_or_default();
                view.stream(&format!("{id}{s}\n"));
            }
        }
        true
    })
    .await;
    view.finish();
    if let Err(e) = res {
        return super::report(&e, 1);
    }
    if let Some((msg, code)) = failure {
        eprintln!("{msg}");
        return code;
    }
    if a.quiet {
        print!("{quiet_out}");
    }
    if let Some(f) = &a.iidfile {
        if let Err(e) = std::fs::write(f, &image_id) {
            eprintln!("failed to write the image ID to {f}: {e}");
            return 1;
        }
    }
    if let Some(o) = output {
        return export(c, &image_id, o).await;
    }
    0
}

/// `--output`: the image's filesystem through a created (never started) container's export.
async fn export(c: &Client, image: &str, o: Output) -> i32 {
    let created = match c
        .post(
            "/containers/create",
            Some(serde_json::json!({ "Image": image, "Cmd": ["/"], "Entrypoint": [] })),
        )
        .await
    {
        Ok(v) => v,
        Err(e) => return super::report(&e, 1),
    };
    let id = created["Id"].as_str().unwrap_or_default().to_string();
    let code = match &o {
        Output::Tar(dest) => {
            let out = (dest != "-").then_some(dest.as_str());
            super::download(c, &format!("/containers/{id}/export"), out, "export").await
        }
        Output::Local(dir) => {
            let res = async {
                let resp = c
                    .send(
                        Method::GET,
                        &format!("/containers/{id}/export"),
                        crate::client::empty(),
                        "application/json",
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let bytes = crate::client::read_all(resp)
                    .await
                    .map_err(|e| e.to_string())?;
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let mut ar = tar::Archive::new(&bytes[..]);
                ar.set_preserve_permissions(true);
                ar.unpack(dir)
                    .map_err(|e| format!("unpacking into {}: {e}", dir.display()))
            }
            .await;
            match res {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
    };
    let _ = c
        .send(
            Method::DELETE,
            &format!("/containers/{id}?force=1"),
            crate::client::empty(),
            "application/json",
        )
        .await;
    code
}

/// Renders the build output: plain lines, or on a terminal a live status line under them
/// naming the running step and its elapsed time.
struct View {
    live: bool,
    step: Option<(String, std::time::Instant)>,
    started: std::time::Instant,
    status_shown: bool,
}

impl View {
    fn new(live: bool) -> View {
        View {
            live,
            step: None,
            started: std::time::Instant::now(),
            status_shown: false,
        }
    }

    fn clear(&mut self) {
        if self.status_shown {
            print!("\r\x1b[2K");
            self.status_shown = false;
        }
    }

    fn stream(&mut self, s: &str) {
        self.clear();
        if self.live {
            if let Some(rest) = s.strip_prefix("Step ") {
                if let Some((_, el)) = &self.step {
                    println!("\x1b[2m    ({:.1}s)\x1b[0m", el.elapsed().as_secs_f64());
                }
                self.step = Some((rest.trim_end().to_string(), std::time::Instant::now()));
                print!("\x1b[1mStep {rest}\x1b[0m");
            } else {
                print!("{s}");
            }
            if let Some((name, at)) = &self.step {
                let mut line = format!(
                    "[+] Building {:.1}s — step {name} ({:.1}s)",
                    self.started.elapsed().as_secs_f64(),
                    at.elapsed().as_secs_f64()
                );
                let width = crate::stream::term_size()
                    .map(|(w, _)| w as usize)
                    .unwrap_or(80);
                if line.chars().count() > width.saturating_sub(1) {
                    line = line.chars().take(width.saturating_sub(1)).collect();
                }
                print!("\x1b[36m{line}\x1b[0m");
                self.status_shown = true;
            }
        } else {
            print!("{s}");
        }
        let _ = std::io::stdout().flush();
    }

    fn finish(&mut self) {
        self.clear();
        if self.live {
            println!(
                "\x1b[2m[+] Built in {:.1}s\x1b[0m",
                self.started.elapsed().as_secs_f64()
            );
        }
        let _ = std::io::stdout().flush();
    }
}

/// A JSON query value, percent-encoded.
fn jq<T: serde::Serialize>(v: &T) -> String {
    enc(&serde_json::to_string(v).unwrap_or_default())
}

pub async fn builder_cmd(c: &Client, cmd: BuilderCommand) -> i32 {
    match cmd {
        BuilderCommand::Build(a) => build(c, *a).await,
        BuilderCommand::Prune(a) => {
            if !a.filter.is_empty() || a.keep_storage.is_some() {
                eprintln!("berth: builder prune: --filter and --keep-storage are not supported (berth prunes dangling or, with --all, all build cache)");
                return 1;
            }
            if !a.force {
                print!("WARNING! This will remove all dangling build cache.\nAre you sure you want to continue? [y/N] ");
                let _ = std::io::stdout().flush();
                let mut ans = String::new();
                let _ = std::io::stdin().read_line(&mut ans);
                if !matches!(ans.trim(), "y" | "Y" | "yes") {
                    return 0;
                }
            }
            let path = if a.all {
                "/build/prune?all=1"
            } else {
                "/build/prune"
            };
            match c.post(path, None).await {
                Ok(v) => {
                    let ids = v["CachesDeleted"].as_array().cloned().unwrap_or_default();
                    if !ids.is_empty() {
                        println!("Deleted build cache objects:");
                        for i in ids {
                            println!("{}", i.as_str().unwrap_or_default());
                        }
                        println!();
                    }
                    let n = v["SpaceReclaimed"].as_i64().unwrap_or(0);
                    println!("Total reclaimed space: {}", berth_api::units::human_size(n));
                    0
                }
                Err(e) => super::report(&e, 1),
            }
        }
    }
}
