//! The single `berth` binary: `berth daemon`, `berth shim` and `berth userland-proxy`
//! (internal), `berth runtime` (OCI runtime CLI), and every client command.

use clap::Parser;

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
        _ => berth_cli::main(args),
    };
    std::process::exit(code);
}
