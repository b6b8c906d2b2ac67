//! The `berth` command line: Docker's commands and flags, spoken to the daemon only through
//! the Engine API on its unix socket or over TCP (with TLS).

#![recursion_limit = "256"]

mod auth;
pub mod client;
mod commands;
pub mod format;
mod mounts;
mod ports;
mod progress;
pub mod sigpipe;
pub mod stream;
pub mod timearg;
pub mod transport;

use clap::{Parser, Subcommand};

pub use auth::header_for_image;
pub use berth_build::ignore::Matcher as IgnoreMatcher;
pub use commands::build::{append_file, tar_context};
pub use commands::container::{print_formatted, ps_row, CreateArgs, RunArgs};
// For `berth compose exec|attach|cp|stats`, which act on a service's containers as these do.
pub use commands::container::{attach, exec, proxy_signals, AttachArgs, ExecArgs};
pub use commands::files::{cp, CpArgs};
pub use commands::stack::{
    NetworkPlan, ObjectPlan, ServicePlan, StackLoader, StackPlan, NAMESPACE_LABEL,
};
pub use commands::stats::{stats, StatsArgs};
pub use ports::parse_publish;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A container engine that speaks Docker's API"
)]
pub struct Cli {
    /// Daemon socket to connect to (unix://PATH or tcp://HOST:PORT); before the command, as
    /// with docker (`history -H` is `--human`)
    #[arg(short = 'H', long = "host")]
    pub host: Option<String>,
    /// Use TLS; implied by --tlsverify
    #[arg(long, global = true)]
    pub tls: bool,
    /// Use TLS and verify the daemon's certificate
    #[arg(long, global = true)]
    pub tlsverify: bool,
    /// Trust certs signed only by this CA (default $DOCKER_CERT_PATH/ca.pem)
    #[arg(long, global = true)]
    pub tlscacert: Option<std::path::PathBuf>,
    /// Path to TLS certificate file (default $DOCKER_CERT_PATH/cert.pem)
    #[arg(long, global = true)]
    pub tlscert: Option<std::path::PathBuf>,
    /// Path to TLS key file (default $DOCKER_CERT_PATH/key.pem)
    #[arg(long, global = true)]
    pub tlskey: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(commands::container::StartArgs),
    /// Stop one or more running containers
    Stop(commands::container::StopArgs),
    /// Restart one or more containers
    Restart(commands::container::StopArgs),
    /// Kill one or more running containers
    Kill(commands::container::KillArgs),
    /// Remove one or more containers
    Rm(commands::container::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(commands::container::Ids),
    /// List containers
    Ps(commands::container::PsArgs),
    /// Fetch the logs of a container
    Logs(commands::container::LogsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(commands::container::AttachArgs),
    /// Execute a command in a running container
    Exec(commands::container::ExecArgs),
    /// Return low-level information on containers or images
    Inspect(commands::container::InspectArgs),
    /// Rename a container
    Rename(commands::container::RenameArgs),
    /// Update configuration of one or more containers
    Update(commands::resources::UpdateArgs),
    /// Pause all processes within one or more containers
    Pause(commands::container::Ids),
    /// Unpause all processes within one or more containers
    Unpause(commands::container::Ids),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::files::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::files::One),
    /// Export a container's filesystem as a tar archive
    Export(commands::files::ExportArgs),
    /// Create a new image from a container's changes
    Commit(commands::files::CommitArgs),
    /// Display the running processes of a container
    Top(commands::files::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::stats::StatsArgs),
    /// Get real time events from the server
    Events(commands::events::EventsArgs),
    /// Build an image from a Dockerfile
    Build(commands::build::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(commands::build::BuilderCommand),
    /// List images
    Images(commands::image::ImagesArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::image::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(commands::image::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(commands::image::SaveArgs),
    /// Remove one or more images
    Rmi(commands::image::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::image::TagArgs),
    /// Show the history of an image
    History(commands::image::HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Manage containers
    #[command(subcommand)]
    Container(commands::container::ContainerCommand),
    /// Download an image from a registry
    Pull(commands::registry::PullArgs),
    /// Upload an image to a registry
    Push(commands::registry::PushArgs),
    /// Authenticate to a registry
    Login(commands::registry::LoginArgs),
    /// Search a registry for images
    Search(commands::registry::SearchArgs),
    /// Log out from a registry
    Logout(commands::registry::LogoutArgs),
    /// Manage networks
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// List port mappings or a specific mapping for the container
    Port(commands::network::PortArgs),
    /// Show the berth version information
    Version(commands::system::FormatArgs),
    /// Display system-wide information
    Info(commands::system::FormatArgs),
    /// Manage berth
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Manage Swarm
    #[command(subcommand)]
    Swarm(commands::swarm::SwarmCommand),
    /// Manage Swarm nodes
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Manage Swarm services
    #[command(subcommand)]
    Service(commands::service::ServiceCommand),
    /// Manage Swarm secrets
    #[command(subcommand)]
    Secret(commands::secret::SecretCommand),
    /// Manage Swarm configs
    #[command(subcommand)]
    Config(commands::secret::ConfigCommand),
    /// Manage Swarm stacks
    #[command(subcommand)]
    Stack(commands::stack::StackCommand),
}

/// When the command line is `berth [global flags] compose …`: the connection flags and the
/// arguments from `compose` on (for the compose crate, which the `berth` binary dispatches to).
pub fn compose_args(
    args: &[std::ffi::OsString],
) -> Option<(transport::ConnOpts, Vec<std::ffi::OsString>)> {
    let mut o = transport::ConnOpts::default();
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let mut value = || {
            inline.clone().or_else(|| {
                i += 1;
                args.get(i).and_then(|v| v.to_str()).map(str::to_string)
            })
        };
        match flag {
            "compose" => return Some((o, args[i..].to_vec())),
            "-H" | "--host" => o.host = Some(value()?),
            "--tlscacert" => o.tlscacert = Some(value()?.into()),
            "--tlscert" => o.tlscert = Some(value()?.into()),
            "--tlskey" => o.tlskey = Some(value()?.into()),
            "--tls" => o.tls = true,
            "--tlsverify" => o.tlsverify = true,
            _ => return None,
        }
        i += 1;
    }
    None
}

/// Run the CLI with `args` (args[0] is the program name); `stacks` reads Compose files for
/// `stack deploy|config`. Returns the exit code.
pub fn main(args: Vec<std::ffi::OsString>, stacks: &dyn StackLoader) -> i32 {
    sigpipe::install();
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let opts = transport::ConnOpts {
        host: cli.host.clone(),
        tls: cli.tls,
        tlsverify: cli.tlsverify,
        tlscacert: cli.tlscacert.clone(),
        tlscert: cli.tlscert.clone(),
        tlskey: cli.tlskey.clone(),
    };
    let client = match client::Client::from_opts(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let code = rt.block_on(commands::dispatch(client, cli.command, stacks));
    // A stdin reader may still block on the terminal; do not wait for it.
    rt.shutdown_background();
    code
}
