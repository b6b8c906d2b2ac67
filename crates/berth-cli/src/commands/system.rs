//! `berth version`, `berth info` and the `berth system` commands.

use crate::client::Client;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show berth disk usage
    Df(super::prune::DfArgs),
    /// Remove unused data
    Prune(super::prune::SystemPruneArgs),
    /// Display system-wide information
    Info,
}

pub async fn system_cmd(c: &Client, sub: SystemCommand) -> i32 {
    match sub {
        SystemCommand::Df(a) => super::prune::df(c, a).await,
        SystemCommand::Prune(a) => super::prune::system_prune(c, a).await,
        SystemCommand::Info => info(c).await,
    }
}

pub async fn version(c: &Client) -> i32 {
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

pub async fn info(c: &Client) -> i32 {
    match c.get("/info").await {
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
