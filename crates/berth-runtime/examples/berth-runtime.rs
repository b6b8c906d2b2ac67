//! The `berth runtime` CLI as a standalone binary, for tests and benchmarks.

fn main() {
    std::process::exit(berth_runtime::cli_main(std::env::args_os().collect()));
}
