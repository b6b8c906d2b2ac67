//! `berth compose`: a Compose Specification project loaded into a typed model (`load`, `model`)
//! and brought to its declared state through the Engine API, with Docker Compose v2's commands.

pub mod api;
mod build;
mod config;
mod convert;
mod down;
mod events;
mod exec;
mod images;
mod list;
pub mod load;
mod logs;
pub mod model;
mod progress;
pub mod project;
mod run;
mod service_ctrs;
pub mod stack;
mod up;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::api::Engine;
use crate::progress::{Mode, Progress};
use crate::project::Project;

#[derive(Debug, Parser)]
#[command(
    name = "berth compose",
    about = "Define and run multi-container applications"
)]
struct Cli {
    /// Compose configuration files (before the command: `-f` after it is the command's own)
    #[arg(short = 'f', long = "file")]
    file: Vec<PathBuf>,
    /// Project name (before the command)
    #[arg(short = 'p', long = "project-name")]
    project_name: Option<String>,
    /// Specify an alternate working directory (default: the path of the first Compose file)
    #[arg(long, global = true)]
    project_directory: Option<PathBuf>,
    /// Specify an alternate environment file
    #[arg(long = "env-file", global = true)]
    env_file: Vec<PathBuf>,
    /// Specify a profile to enable
    #[arg(long = "profile", global = true)]
    profile: Vec<String>,
    /// Control max parallelism, -1 for unlimited
    #[arg(long, global = true, allow_hyphen_values = true)]
    parallel: Option<i64>,
    /// Set type of progress output (auto, tty, plain, json, quiet)
    #[arg(long, global = true)]
    progress: Option<String>,
    /// Control when to print ANSI control characters ("never"|"always"|"auto")
    #[arg(long, global = true)]
    ansi: Option<String>,
    /// Execute command in dry run mode
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create and start containers
    Up(UpArgs),
    /// Stop and remove containers, networks
    Down(DownArgs),
    /// List containers
    Ps(PsArgs),
    /// List running compose projects
    Ls(LsArgs),
    /// Parse, resolve and render compose file in canonical format
    Config(ConfigArgs),
    /// Creates containers for a service
    Create(CreateArgs),
    /// Start services
    Start(Services),
    /// Stop services
    Stop(StopArgs),
    /// Restart service containers
    Restart(StopArgs),
    /// Force stop service containers
    Kill(KillArgs),
    /// Pause services
    Pause(Services),
    /// Unpause services
    Unpause(Services),
    /// Removes stopped service containers
    Rm(RmArgs),
    /// View output from containers
    Logs(LogsArgs),
    /// Show the Docker Compose version information
    Version(VersionArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Run a one-off command on a service
    Run(run::RunArgs),
    /// Attach local standard input, output, and error streams to a service's running container
    Attach(exec::AttachArgs),
    /// Copy files/folders between a service container and the local filesystem
    Cp(service_ctrs::CpArgs),
    /// Block until containers of all (or specified) services stop.
    Wait(service_ctrs::WaitArgs),
    /// Display the running processes
    Top(Services),
    /// Print the public port for a port binding
    Port(service_ctrs::PortArgs),
    /// Scale services
    Scale(service_ctrs::ScaleArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(service_ctrs::StatsArgs),
    /// Build or rebuild services
    Build(BuildArgs),
    /// Pull service images
    Pull(PullArgs),
    /// Push service images
    Push(PushArgs),
    /// List images used by the created containers
    Images(ImagesArgs),
    /// Receive real time events from containers
    Events(EventsArgs),
    /// Watch build context for service and rebuild/refresh containers when files are updated
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Set build-time variables for services
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Don't print anything to STDOUT
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Also build dependencies (transitively)
    #[arg(long)]
    with_dependencies: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct PullArgs {
    /// Pull what it can and ignores images with pull failures
    #[arg(long)]
    ignore_pull_failures: bool,
    /// Also pull services declared as dependencies
    #[arg(long)]
    include_deps: bool,
    /// Pull without printing progress information
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Apply pull policy ("missing"|"always")
    #[arg(long)]
    policy: Option<String>,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct PushArgs {
    /// Push what it can and ignores images with push failures
    #[arg(long)]
    ignore_push_failures: bool,
    /// Push without printing progress information
    #[arg(short = 'q', long)]
    quiet: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct ImagesArgs {
    /// Only display IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Format the output. Values: [table | json]
    #[arg(long)]
    format: Option<String>,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct EventsArgs {
    /// Output events as a stream of json objects
    #[arg(long)]
    json: bool,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// Do not build & start services before watching
    #[arg(long)]
    no_up: bool,
    /// Hide build output
    #[arg(long)]
    quiet: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct Services {
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Detached mode: Run containers in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    no_build: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long)]
    pull: Option<String>,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    no_recreate: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    remove_orphans: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long)]
    scale: Vec<String>,
    /// Wait for services to be running|healthy. Implies detached mode
    #[arg(long)]
    wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long)]
    wait_timeout: Option<u64>,
    /// Stops all containers if any container was stopped
    #[arg(long)]
    abort_on_container_exit: bool,
    /// Return the exit code of the selected service container
    #[arg(long)]
    exit_code_from: Option<String>,
    /// Don't start linked services
    #[arg(long)]
    no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long)]
    no_start: bool,
    /// Restrict attaching to the specified services
    #[arg(long)]
    attach: Vec<String>,
    /// Do not attach (stream logs) to the specified services
    #[arg(long)]
    no_attach: Vec<String>,
    /// Use this timeout in seconds for container shutdown
    #[arg(short = 't', long)]
    timeout: Option<i64>,
    /// Pull without printing progress information
    #[arg(long)]
    quiet_pull: bool,
    /// Produce monochrome output
    #[arg(long)]
    no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    no_log_prefix: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[arg(long)]
    build: bool,
    #[arg(long)]
    no_build: bool,
    #[arg(long)]
    pull: Option<String>,
    #[arg(long)]
    force_recreate: bool,
    #[arg(long)]
    no_recreate: bool,
    #[arg(long)]
    remove_orphans: bool,
    #[arg(long)]
    scale: Vec<String>,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct DownArgs {
    /// Remove named volumes declared in the "volumes" section and anonymous volumes
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Remove images used by services ("local"|"all")
    #[arg(long)]
    rmi: Option<String>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long)]
    timeout: Option<i64>,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct PsArgs {
    /// Show all stopped containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Display services
    #[arg(long)]
    services: bool,
    /// Filter services by status
    #[arg(long)]
    status: Vec<String>,
    /// Filter services by a property
    #[arg(long)]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    #[arg(value_name = "SERVICE")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct LsArgs {
    #[arg(short = 'a', long)]
    all: bool,
    #[arg(short = 'q', long)]
    quiet: bool,
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    #[arg(long)]
    services: bool,
    #[arg(long)]
    volumes: bool,
    #[arg(long)]
    profiles: bool,
    #[arg(long)]
    images: bool,
    /// Only validate the configuration, don't print anything
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Format the output. Values: [yaml | json]
    #[arg(long, default_value = "yaml")]
    format: String,
    /// Save to file (default to stdout)
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    services_args: Vec<String>,
}

#[derive(Debug, Args)]
struct StopArgs {
    #[arg(short = 't', long)]
    timeout: Option<i64>,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct KillArgs {
    #[arg(short = 's', long, default_value = "SIGKILL")]
    signal: String,
    #[arg(long)]
    remove_orphans: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short = 'f', long)]
    force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short = 's', long)]
    stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short = 'v', long)]
    volumes: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct LogsArgs {
    #[arg(short = 'f', long)]
    follow: bool,
    #[arg(short = 't', long)]
    timestamps: bool,
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    no_color: bool,
    #[arg(long)]
    no_log_prefix: bool,
    services: Vec<String>,
}

#[derive(Debug, Args)]
struct VersionArgs {
    #[arg(long)]
    short: bool,
    #[arg(short = 'f', long)]
    format: Option<String>,
}

/// Runs `berth compose …` (`args[0]` is `compose`); the exit code.
pub fn main(conn: berth_cli::transport::ConnOpts, args: Vec<std::ffi::OsString>) -> i32 {
    berth_cli::sigpipe::install();
    let mut args = args;
    run::publish_short(&mut args);
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
        }
    };
    let mut client = match berth_cli::client::Client::from_opts(&conn) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let code = rt.block_on(async {
        // Compose drives any engine: an older one is spoken to in its API version. An engine
        // that cannot be reached is reported by the command's first call.
        let _ = client.negotiate().await;
        let engine = Engine {
            c: client,
            dry: cli.dry_run,
            parallel: parallel_limit(&cli),
        };
        run(&engine, cli).await
    });
    rt.shutdown_background();
    code
}

fn load_opts(cli: &Cli, services: &[String]) -> load::assemble::Options {
    load::assemble::Options {
        files: cli.file.clone(),
        project_name: cli.project_name.clone(),
        project_dir: cli.project_directory.clone(),
        env_files: cli.env_file.clone(),
        profiles: cli.profile.clone(),
        services: services.to_vec(),
        swarm: false,
    }
}

/// The project from the files; when `by_name_ok` and no file is found, the project `-p`
/// names (commands that work from labels alone: down, ps, logs, stop…).
fn project(cli: &Cli, services: &[String], by_name_ok: bool) -> Result<Project, String> {
    match load::assemble::load(&load_opts(cli, services)) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("WARN[0000] {w}");
            }
            Ok(l.project)
        }
        Err(e)
            if by_name_ok && cli.file.is_empty() && e.msg.starts_with("no configuration file") =>
        {
            match &cli.project_name {
                Some(n) => Ok(Project::named(n.clone())),
                None => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

fn parse_scale(items: &[String]) -> Result<BTreeMap<String, u64>, String> {
    let mut m = BTreeMap::new();
    for s in items {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
        let n = v
            .parse::<u64>()
            .map_err(|_| format!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
        m.insert(k.to_string(), n);
    }
    Ok(m)
}

/// `--parallel`, else `COMPOSE_PARALLEL_LIMIT`; `None` (-1) is unlimited.
fn parallel_limit(cli: &Cli) -> Option<usize> {
    let n = cli.parallel.or_else(|| {
        std::env::var("COMPOSE_PARALLEL_LIMIT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    })?;
    usize::try_from(n).ok().filter(|n| *n > 0)
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("{msg}");
    1
}

async fn run(e: &Engine, cli: Cli) -> i32 {
    let mode = match cli.ansi.as_deref() {
        None | Some("auto") | Some("always") => Mode::pick(cli.progress.as_deref()),
        Some("never") if cli.progress.as_deref() == Some("quiet") => Mode::Quiet,
        Some("never") => Mode::Plain,
        Some(other) => return fail(format!("invalid --ansi {other:?}: never, always or auto")),
    };
    let pr = Arc::new(Progress::new(mode, cli.dry_run));
    if let Some(p) = cli.parallel {
        if p == 0 || p < -1 {
            return fail(format!("invalid --parallel {p}: a positive number or -1"));
        }
    }
    if cli.dry_run {
        let name = match &cli.cmd {
            Cmd::Exec(_) => Some("exec"),
            Cmd::Run(_) => Some("run"),
            Cmd::Attach(_) => Some("attach"),
            Cmd::Cp(_) => Some("cp"),
            Cmd::Watch(_) => Some("watch"),
            _ => None,
        };
        if let Some(n) = name {
            return fail(format!("--dry-run is not supported by `compose {n}`"));
        }
    }
    match &cli.cmd {
        Cmd::Up(a) => cmd_up(e, &cli, a, pr).await,
        Cmd::Create(a) => {
            let up = UpArgs {
                detach: true,
                build: a.build,
                no_build: a.no_build,
                pull: a.pull.clone(),
                force_recreate: a.force_recreate,
                no_recreate: a.no_recreate,
                remove_orphans: a.remove_orphans,
                scale: a.scale.clone(),
                wait: false,
                wait_timeout: None,
                abort_on_container_exit: false,
                exit_code_from: None,
                no_deps: false,
                no_start: true,
                attach: Vec::new(),
                no_attach: Vec::new(),
                timeout: None,
                quiet_pull: false,
                no_color: false,
                no_log_prefix: false,
                services: a.services.clone(),
            };
            cmd_up(e, &cli, &up, pr).await
        }
        Cmd::Down(a) => {
            let p = match project(&cli, &[], true) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let o = down::DownOpts {
                volumes: a.volumes,
                rmi: a.rmi.clone(),
                remove_orphans: a.remove_orphans,
                timeout: a.timeout,
                services: a.services.clone(),
            };
            if let Some(r) = &o.rmi {
                if r != "local" && r != "all" {
                    return fail(format!("invalid --rmi {r:?}: \"local\" or \"all\""));
                }
            }
            match down::down(e, &p, &o, &pr).await {
                Ok(()) => 0,
                Err(m) => fail(m),
            }
        }
        Cmd::Ps(a) => {
            let p = match project(&cli, &a.names, true) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let o = list::PsOpts {
                all: a.all,
                quiet: a.quiet,
                services: a.services,
                status: a.status.clone(),
                filter: a.filter.clone(),
                format: a.format.clone(),
            };
            match list::ps(e, &p.name, &a.names, &o).await {
                Ok(()) => 0,
                Err(m) => fail(m),
            }
        }
        Cmd::Ls(a) => match list::ls(e, a.all, a.quiet, a.format.as_deref(), &a.filter).await {
            Ok(()) => 0,
            Err(m) => fail(m),
        },
        Cmd::Config(a) => cmd_config(&cli, a),
        Cmd::Start(a) => simple(e, &cli, &a.services, down::Act::Start, &pr, true).await,
        Cmd::Stop(a) => simple(e, &cli, &a.services, down::Act::Stop(a.timeout), &pr, false).await,
        Cmd::Restart(a) => {
            simple(
                e,
                &cli,
                &a.services,
                down::Act::Restart(a.timeout),
                &pr,
                true,
            )
            .await
        }
        Cmd::Kill(a) => {
            let p = match project(&cli, &a.services, true) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let k = service_ctrs::kill(e, &p, &a.services, &a.signal, a.remove_orphans, &pr);
            match k.await {
                Ok(()) => 0,
                Err(m) => fail(m),
            }
        }
        Cmd::Pause(a) => simple(e, &cli, &a.services, down::Act::Pause, &pr, false).await,
        Cmd::Unpause(a) => simple(e, &cli, &a.services, down::Act::Unpause, &pr, false).await,
        Cmd::Rm(a) => cmd_rm(e, &cli, a, &pr).await,
        Cmd::Logs(a) => {
            let p = match project(&cli, &a.services, true) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let ctrs = match down::service_containers(e, &p, &a.services, true).await {
                Ok(c) => c,
                Err(m) => return fail(m),
            };
            let o = logs::LogOpts {
                follow: a.follow,
                timestamps: a.timestamps,
                tail: Some(a.tail.clone()),
                since: a.since.clone(),
                until: a.until.clone(),
                no_color: a.no_color || cli.ansi.as_deref() == Some("never"),
                force_color: cli.ansi.as_deref() == Some("always"),
                no_prefix: a.no_log_prefix,
                exit_lines: false,
            };
            match logs::print(e, &p.name, &ctrs, o).await {
                Ok(()) => 0,
                Err(m) => fail(m),
            }
        }
        Cmd::Version(a) => {
            if a.short {
                println!("{}", api::VERSION);
            } else if a.format.as_deref() == Some("json") {
                println!(
                    "{}",
                    serde_json::json!({"version": format!("v{}", api::VERSION)})
                );
            } else {
                println!("berth compose version v{}", api::VERSION);
            }
            0
        }
        Cmd::Build(a) => cmd_build(e, &cli, a, pr).await,
        Cmd::Pull(a) => {
            let p = match project(&cli, &a.services, false) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let o = images::PullOpts {
                ignore_failures: a.ignore_pull_failures,
                include_deps: a.include_deps,
                policy: a.policy.clone(),
            };
            let pr = if a.quiet {
                Arc::new(Progress::new(Mode::Quiet, cli.dry_run))
            } else {
                pr
            };
            done(images::pull(e, &p, &a.services, &o, &pr).await)
        }
        Cmd::Push(a) => {
            let p = match project(&cli, &a.services, false) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let pr = if a.quiet {
                Arc::new(Progress::new(Mode::Quiet, cli.dry_run))
            } else {
                pr
            };
            done(images::push(e, &p, &a.services, a.ignore_push_failures, &pr).await)
        }
        Cmd::Images(a) => {
            let p = match project(&cli, &a.services, true) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            done(images::images(e, &p.name, &a.services, a.quiet, a.format.as_deref()).await)
        }
        Cmd::Events(a) => {
            let p = match project(&cli, &a.services, true) {
                Ok(p) => p,
                Err(m) => return fail(m),
            };
            let window = events::Window {
                since: a.since.clone(),
                until: a.until.clone(),
            };
            done(events::run(e, &p.name, &a.services, a.json, &window).await)
        }
        Cmd::Watch(a) => {
            let p = match project(&cli, &a.services, false) {
                Ok(p) => Arc::new(p),
                Err(m) => return fail(m),
            };
            let pr = if a.quiet {
                Arc::new(Progress::new(Mode::Quiet, cli.dry_run))
            } else {
                pr
            };
            done(watch::run(e, p, &a.services, a.no_up, pr).await)
        }
        Cmd::Exec(a) => match project(&cli, &[], true) {
            Ok(p) if !p.knows(&a.service) => fail(format!("no such service: {}", a.service)),
            Ok(p) => exec::exec(e, &p.name, a).await.unwrap_or_else(fail),
            Err(m) => fail(m),
        },
        Cmd::Attach(a) => match project(&cli, &[], true) {
            Ok(p) if !p.knows(&a.service) => fail(format!("no such service: {}", a.service)),
            Ok(p) => exec::attach(e, &p.name, a).await.unwrap_or_else(fail),
            Err(m) => fail(m),
        },
        Cmd::Run(a) => match project(&cli, std::slice::from_ref(&a.service), false) {
            Ok(p) => run::run(e, Arc::new(p), a, pr).await,
            Err(m) => fail(m),
        },
        Cmd::Cp(a) => match project(&cli, &[], true) {
            Ok(p) => service_ctrs::cp(e, &p.name, a, &pr)
                .await
                .unwrap_or_else(fail),
            Err(m) => fail(m),
        },
        Cmd::Wait(a) => match project(&cli, &[], true) {
            Ok(p) => service_ctrs::wait(e, &p, a, &pr).await.unwrap_or_else(fail),
            Err(m) => fail(m),
        },
        Cmd::Top(a) => match project(&cli, &[], true) {
            Ok(p) => match service_ctrs::top(e, &p.name, &a.services).await {
                Ok(()) => 0,
                Err(m) => fail(m),
            },
            Err(m) => fail(m),
        },
        Cmd::Port(a) => match project(&cli, &[], true) {
            Ok(p) if !p.knows(&a.service) => fail(format!("no such service: {}", a.service)),
            Ok(p) => match service_ctrs::port(e, &p.name, a).await {
                Ok(()) => 0,
                Err(m) => fail(m),
            },
            Err(m) => fail(m),
        },
        Cmd::Stats(a) => match project(&cli, &[], true) {
            Ok(p) => service_ctrs::stats(e, &p.name, a).await,
            Err(m) => fail(m),
        },
        Cmd::Scale(a) => cmd_scale(e, &cli, a, pr).await,
    }
}

/// `scale`: `up -d --scale` for the named services only.
async fn cmd_scale(e: &Engine, cli: &Cli, a: &service_ctrs::ScaleArgs, pr: Arc<Progress>) -> i32 {
    let scale = match service_ctrs::parse_scale(&a.scale) {
        Ok(s) => s,
        Err(m) => return fail(m),
    };
    let services: Vec<String> = scale.keys().cloned().collect();
    let p = match project(cli, &services, false) {
        Ok(p) => Arc::new(p),
        Err(m) => return fail(m),
    };
    let o = up::UpOpts {
        services,
        no_deps: a.no_deps,
        recreate: up::Recreate::Diverged,
        remove_orphans: false,
        scale,
        no_start: false,
        build: up::BuildPolicy::Missing,
        pull: None,
        timeout: None,
        parallel: e.parallel,
        quiet_pull: false,
    };
    match up::up(e, p, o, pr).await {
        Ok(_) => 0,
        Err(m) => fail(m),
    }
}

fn done(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(m) => fail(m),
    }
}

async fn cmd_build(e: &Engine, cli: &Cli, a: &BuildArgs, pr: Arc<Progress>) -> i32 {
    let p = match project(cli, &a.services, false) {
        Ok(p) => p,
        Err(m) => return fail(m),
    };
    let mut args = Vec::new();
    for kv in &a.build_arg {
        match kv.split_once('=') {
            Some((k, v)) => args.push((k.to_string(), v.to_string())),
            // A bare `K` takes its value from the project's environment, else it is dropped.
            None => match p.env.get(kv) {
                Some(v) => args.push((kv.clone(), v.clone())),
                None => continue,
            },
        }
    }
    let x = build::Extra {
        no_cache: a.no_cache,
        pull: a.pull,
        args,
    };
    let pr = if a.quiet {
        Arc::new(Progress::new(Mode::Quiet, cli.dry_run))
    } else {
        pr
    };
    done(images::build(e, &p, &a.services, a.with_dependencies, &x, &pr).await)
}

async fn simple(
    e: &Engine,
    cli: &Cli,
    services: &[String],
    act: down::Act,
    pr: &Arc<Progress>,
    all: bool,
) -> i32 {
    let p = match project(cli, services, true) {
        Ok(p) => p,
        Err(m) => return fail(m),
    };
    let ctrs = match down::service_containers(e, &p, services, all).await {
        Ok(c) => c,
        Err(m) => return fail(m),
    };
    let ctrs = match act {
        down::Act::Start => ctrs.into_iter().filter(|c| !c.running()).collect(),
        down::Act::Unpause => ctrs.into_iter().filter(|c| c.state == "paused").collect(),
        _ => ctrs,
    };
    match down::each(e, &p, ctrs, act, pr).await {
        Ok(()) => 0,
        Err(m) => fail(m),
    }
}

async fn cmd_rm(e: &Engine, cli: &Cli, a: &RmArgs, pr: &Arc<Progress>) -> i32 {
    let p = match project(cli, &a.services, true) {
        Ok(p) => p,
        Err(m) => return fail(m),
    };
    let ctrs = match down::service_containers(e, &p, &a.services, true).await {
        Ok(c) => c,
        Err(m) => return fail(m),
    };
    if a.stop {
        let running: Vec<_> = ctrs.iter().filter(|c| c.running()).cloned().collect();
        if let Err(m) = down::each(e, &p, running, down::Act::Stop(None), pr).await {
            return fail(m);
        }
    }
    let stopped: Vec<_> = ctrs
        .into_iter()
        .filter(|c| a.stop || !c.running())
        .collect();
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return 0;
    }
    if !a.force {
        let names: Vec<&str> = stopped.iter().map(|c| c.name.as_str()).collect();
        eprintln!("Going to remove {}", names.join(", "));
        if !berth_cli::stream::is_tty(std::io::stdin()) {
            return fail("refusing to remove without confirmation: use -f");
        }
        eprint!("? Are you sure you want to remove? (y/N) ");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return 0;
        }
    }
    match down::each(e, &p, stopped, down::Act::Remove { volumes: a.volumes }, pr).await {
        Ok(()) => 0,
        Err(m) => fail(m),
    }
}

fn cmd_config(cli: &Cli, a: &ConfigArgs) -> i32 {
    let p = match project(cli, &a.services_args, false) {
        Ok(p) => p,
        Err(m) => return fail(m),
    };
    if a.quiet {
        return 0;
    }
    let lists = [
        (a.services, "services"),
        (a.volumes, "volumes"),
        (a.profiles, "profiles"),
        (a.images, "images"),
    ];
    let text = match lists.iter().find(|(on, _)| *on) {
        Some((_, what)) => {
            let mut s = config::list(&p, what).join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s
        }
        None => match config::render(&p, &a.format) {
            Ok(s) => s,
            Err(m) => return fail(m),
        },
    };
    match &a.output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => 0,
            Err(e) => fail(format!("writing {}: {e}", path.display())),
        },
        None => {
            print!("{text}");
            0
        }
    }
}

async fn cmd_up(e: &Engine, cli: &Cli, a: &UpArgs, pr: Arc<Progress>) -> i32 {
    if a.build && a.no_build {
        return fail("--build and --no-build are incompatible");
    }
    if a.force_recreate && a.no_recreate {
        return fail("--force-recreate and --no-recreate are incompatible");
    }
    if a.detach && (a.abort_on_container_exit || a.exit_code_from.is_some()) {
        return fail(
            "--abort-on-container-exit and --exit-code-from cannot be combined with --detach",
        );
    }
    if let Some(p) = &a.pull {
        if !matches!(p.as_str(), "always" | "missing" | "never" | "build") {
            return fail(format!("invalid --pull option {p:?}"));
        }
    }
    let scale = match parse_scale(&a.scale) {
        Ok(s) => s,
        Err(m) => return fail(m),
    };
    let p = match project(cli, &a.services, false) {
        Ok(p) => Arc::new(p),
        Err(m) => return fail(m),
    };
    let o = up::UpOpts {
        services: a.services.clone(),
        no_deps: a.no_deps,
        recreate: if a.force_recreate {
            up::Recreate::Force
        } else if a.no_recreate {
            up::Recreate::Never
        } else {
            up::Recreate::Diverged
        },
        remove_orphans: a.remove_orphans,
        scale,
        no_start: a.no_start,
        build: if a.build {
            up::BuildPolicy::Always
        } else if a.no_build {
            up::BuildPolicy::Never
        } else {
            up::BuildPolicy::Missing
        },
        pull: a.pull.clone(),
        timeout: a.timeout,
        parallel: e.parallel,
        quiet_pull: a.quiet_pull,
    };
    let selected = match up::up(e, p.clone(), o, pr.clone()).await {
        Ok(s) => s,
        Err(m) => return fail(m),
    };
    pr.reset();
    if a.no_start || cli.dry_run {
        return 0;
    }
    if a.wait {
        return match wait_ready(e, &p, &selected, a.wait_timeout, &pr).await {
            Ok(()) => 0,
            Err(m) => fail(m),
        };
    }
    if a.detach {
        return 0;
    }
    attached(e, cli, &p, a, &selected, &pr).await
}

/// `--wait`: every selected container running (healthy when it has a healthcheck) or exited 0.
async fn wait_ready(
    e: &Engine,
    p: &Project,
    selected: &[String],
    timeout: Option<u64>,
    pr: &Arc<Progress>,
) -> Result<(), String> {
    let ev = up::Events::open(e, &p.name).await?;
    let ctrs = down::service_containers(e, p, selected, true).await?;
    let all = async {
        for c in &ctrs {
            let id = format!("Container {}", c.name);
            pr.working(&id, "Waiting");
            up::wait_for(e, &ev, &c.id, &c.name, c.service(), up::Until::Ready).await?;
            pr.done(&id, "Healthy");
        }
        Ok::<(), String>(())
    };
    match timeout {
        Some(t) => tokio::time::timeout(std::time::Duration::from_secs(t), all)
            .await
            .map_err(|_| "timeout waiting for the project to be running|healthy".to_string())?,
        None => all.await,
    }
}

/// The exit code of a service's first container (`--exit-code-from`).
async fn exit_code_of(e: &Engine, p: &Project, service: &str) -> Option<i64> {
    let ctrs = down::service_containers(e, p, &[service.to_string()], true)
        .await
        .ok()?;
    let c = ctrs.first()?;
    let v = e.inspect(&c.id).await.ok()?;
    v["State"]["ExitCode"].as_i64()
}

/// `up` without `-d`: the containers' logs with prefixes until they all stop; Ctrl-C stops
/// the project (a second Ctrl-C kills it). With `--abort-on-container-exit` the first exit
/// stops everything; the exit code follows `--exit-code-from`.
async fn attached(
    e: &Engine,
    cli: &Cli,
    p: &Arc<Project>,
    a: &UpArgs,
    selected: &[String],
    pr: &Arc<Progress>,
) -> i32 {
    let ctrs = match down::service_containers(e, p, selected, true).await {
        Ok(c) => c,
        Err(m) => return fail(m),
    };
    let shown: Vec<_> = ctrs
        .iter()
        .filter(|c| {
            let s = c.service();
            let svc_attach = p.model.services.get(s).and_then(|m| m.attach);
            (a.attach.is_empty() || a.attach.iter().any(|x| x == s))
                && !a.no_attach.iter().any(|x| x == s)
                && svc_attach != Some(false)
        })
        .cloned()
        .collect();
    let o = logs::LogOpts {
        follow: true,
        no_color: a.no_color || cli.ansi.as_deref() == Some("never"),
        force_color: cli.ansi.as_deref() == Some("always"),
        no_prefix: a.no_log_prefix,
        exit_lines: true,
        tail: Some("all".into()),
        ..Default::default()
    };
    let abort = a.abort_on_container_exit || a.exit_code_from.is_some();
    let logs = {
        let (e, name) = (e.clone(), p.name.clone());
        tokio::spawn(async move { logs::print(&e, &name, &shown, o).await })
    };
    let first_exit = async {
        let mut set = tokio::task::JoinSet::new();
        for c in ctrs.clone() {
            let e = e.clone();
            set.spawn(async move {
                let code = e.wait(&c.id).await.unwrap_or(-1);
                (c.service().to_string(), code)
            });
        }
        let mut codes = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            codes.push(r.clone());
            if abort {
                return codes;
            }
        }
        codes
    };
    let stop_all = || async {
        let ctrs = down::service_containers(e, p, selected, false)
            .await
            .unwrap_or_default();
        let _ = down::each(e, p, ctrs, down::Act::Stop(a.timeout), pr).await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Gracefully Stopping... press Ctrl+C again to force");
            tokio::select! {
                _ = stop_all() => {}
                _ = tokio::signal::ctrl_c() => {
                    let ctrs = down::service_containers(e, p, selected, false).await.unwrap_or_default();
                    let _ = down::each(e, p, ctrs, down::Act::Kill("SIGKILL".into()), pr).await;
                }
            }
            130
        }
        codes = first_exit => {
            if abort {
                eprintln!("Aborting on container exit...");
                stop_all().await;
            }
            let code = match &a.exit_code_from {
                Some(s) => exit_code_of(e, p, s).await,
                None if abort => codes.first().map(|(_, c)| *c),
                None => None,
            };
            let _ = logs.await;
            code.map_or(0, |c| i32::try_from(c).unwrap_or(1))
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every command (a short flag used twice in one
    /// command panics in debug builds otherwise).
    #[test]
    fn the_command_line_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// Each command line parses (clap checks a subcommand's flags when it is first used).
    #[test]
    fn the_service_commands_parse() {
        for line in [
            "exec -T --index 2 -e A=1 -u 0 -w /tmp web sh -c true",
            "run --rm -d -e A -u 0 -w / --name n --no-deps -P -v /a:/b --entrypoint sh -T -l a=b web",
            "run --publish 80:80 web echo hi",
            "attach --index 1 --no-stdin --sig-proxy=false --detach-keys ctrl-a web",
            "cp -a -L --index 1 web:/a b",
            "wait --down-project web db",
            "top web",
            "port --protocol udp --index 2 web 53",
            "scale --no-deps web=2 db=0",
            "stats --no-stream --no-trunc -a --format json web",
            "kill -s TERM --remove-orphans web",
            "rm -f -s -v web",
            "version -f json",
            "-f a.yaml -p x up -d",
            "--profile p --env-file e up --scale web=2 -t 3 --wait",
        ] {
            let mut args = vec!["compose".to_string()];
            args.extend(line.split(' ').map(str::to_string));
            let parsed = <super::Cli as clap::Parser>::try_parse_from(args);
            assert!(parsed.is_ok(), "{line}: {:?}", parsed.err());
        }
    }
}
