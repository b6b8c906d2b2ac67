//! `berth version`, `berth info` and the `berth system` commands.

use crate::client::Client;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct FormatArgs {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `--format`: `json` prints the data as one JSON line, anything else is a template.
fn print_format(t: &str, data: &Value) -> i32 {
    if t == "json" {
        println!("{data}");
        return 0;
    }
    let t = t.replace("\\t", "\t").replace("\\n", "\n");
    match crate::format::render(&t, data) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("template parsing error: {e}");
            1
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show berth disk usage
    Df(super::prune::DfArgs),
    /// Remove unused data
    Prune(super::prune::SystemPruneArgs),
    /// Get real time events from the server
    Events(super::events::EventsArgs),
    /// Display system-wide information
    Info(FormatArgs),
}

pub async fn system_cmd(c: &Client, sub: SystemCommand) -> i32 {
    match sub {
        SystemCommand::Df(a) => super::prune::df(c, a).await,
        SystemCommand::Prune(a) => super::prune::system_prune(c, a).await,
        SystemCommand::Events(a) => super::events::events(c, a).await,
        SystemCommand::Info(a) => info(c, a).await,
    }
}

pub async fn version(c: &Client, a: FormatArgs) -> i32 {
    if let Some(t) = &a.format {
        let client = json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "ApiVersion": berth_api::version::API_MAX,
            "Os": std::env::consts::OS,
            "Arch": berth_api::platform::go_arch(),
        });
        let server = match c.get("/version").await {
            Ok(v) => v,
            Err(e) => return super::report(&e, 1),
        };
        return print_format(t, &json!({"Client": client, "Server": server}));
    }
    println!("Client:");
    println!(" Version:           {}", env!("CARGO_PKG_VERSION"));
    println!(" API version:       {}", berth_api::version::API_MAX);
    println!(" OS/Arch:           linux/amd64");
    println!();
    match c.get("/version").await {
        Ok(v) => {
            println!("Server: berth");
            println!(" Engine:");
            println!(
                "  Version:          {}",
                v["Version"].as_str().unwrap_or("")
            );
            println!(
                "  API version:      {} (minimum version {})",
                v["ApiVersion"].as_str().unwrap_or(""),
                v["MinAPIVersion"].as_str().unwrap_or("")
            );
            println!(
                "  OS/Arch:          {}/{}",
                v["Os"].as_str().unwrap_or(""),
                v["Arch"].as_str().unwrap_or("")
            );
            println!(
                "  Kernel:           {}",
                v["KernelVersion"].as_str().unwrap_or("")
            );
            0
        }
        Err(e) => super::report(&e, 1),
    }
}

pub async fn info(c: &Client, a: FormatArgs) -> i32 {
    match c.get("/info").await {
        Ok(v) if a.format.is_some() => print_format(a.format.as_deref().unwrap_or_default(), &v),
        Ok(v) => {
            let s = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("Server:");
            println!(" Containers: {}", s("Containers"));
            println!("  Running: {}", s("ContainersRunning"));
            println!("  Paused: {}", s("ContainersPaused"));
            println!("  Stopped: {}", s("ContainersStopped"));
            println!(" Images: {}", s("Images"));
            println!(" Server Version: {}", s("ServerVersion"));
            println!(" Storage Driver: {}", s("Driver"));
            println!(" Logging Driver: {}", s("LoggingDriver"));
            println!(" Cgroup Driver: {}", s("CgroupDriver"));
            println!(" Cgroup Version: {}", s("CgroupVersion"));
            println!(" Kernel Version: {}", s("KernelVersion"));
            println!(" Operating System: {}", s("OperatingSystem"));
            println!(" CPUs: {}", s("NCPU"));
            println!(" Total Memory: {}", s("MemTotal"));
            println!(" Name: {}", s("Name"));
            println!(" Berth Root Dir: {}", s("DockerRootDir"));
            0
        }
        Err(e) => super::report(&e, 1),
    }
}
