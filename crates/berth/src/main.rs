//! The single `berth` binary: `berth daemon`, `berth registry serve|gc`, `berth shim` and
//! `berth userland-proxy` (internal), `berth runtime` (OCI runtime CLI), and every client command.

use clap::Parser;

#[derive(Parser)]
#[command(name = "berth registry", about = "berth's own registry server")]
enum RegistryCli {
    /// Serve the OCI distribution API from a directory
    Serve(berth_registry::ServeArgs),
    /// Remove blobs (and untagged manifests, if asked) nothing references
    Gc(berth_registry::GcArgs),
}

#[derive(Parser)]
#[command(name = "berth daemon", about = "Run the berth daemon")]
struct DaemonCli {
    #[command(flatten)]
    args: berth_daemon::DaemonArgs,
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match args.get(1).and_then(|a| a.to_str()) {
        Some("daemon") => match DaemonCli::try_parse_from(&args[1..]) {
            Ok(d) => berth_daemon::main(d.args),
            Err(e) => {
                let _ = e.print();
                125
            }
        },
        Some("shim") => match args.get(2) {
            Some(dir) => berth_shim::main(std::path::Path::new(dir)),
            None => {
                eprintln!("usage: berth shim <container-dir>");
                125
            }
        },
        Some("shim-zygote") => berth_shim::zygote::serve(),
        Some("registry") => match RegistryCli::try_parse_from(&args[1..]) {
            Ok(RegistryCli::Serve(a)) => berth_registry::main_serve(a),
            Ok(RegistryCli::Gc(a)) => berth_registry::main_gc(a),
            Err(e) => {
                let _ = e.print();
                if e.use_stderr() {
                    125
                } else {
                    0
                }
            }
        },
        // Internal: one per published port with `userland-proxy: true`.
        Some("userland-proxy") => match (
            args.get(2).and_then(|a| a.to_str()),
            args.get(3)
                .and_then(|a| a.to_str())
                .and_then(|a| a.parse().ok()),
        ) {
            (Some(proto), Some(target)) => berth_network::proxy::run(proto, target),
            _ => {
                eprintln!("usage: berth userland-proxy tcp|udp CONTAINER_IP:PORT (socket on fd 3)");
                125
            }
        },
        Some("runtime") => berth_runtime::cli_main(args[1..].to_vec()),
        _ => match berth_cli::compose_args(&args) {
            Some((conn, rest)) => berth_compose::main(conn, rest),
            None => berth_cli::main(args, &berth_compose::stack::Loader),
        },
    };
    std::process::exit(code);
}
