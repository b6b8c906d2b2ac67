//! Command implementations, one file per area, and the dispatcher.

pub mod build;
pub mod container;
pub mod events;
pub mod files;
pub mod image;
pub mod network;
pub mod node;
pub mod prune;
pub mod registry;
pub mod resources;
pub mod run_host;
pub mod secret;
pub mod service;
pub mod service_opts;
pub mod service_progress;
pub mod stack;
pub mod stats;
pub mod swarm;
pub mod system;
pub mod tasks;
pub mod volume;

use crate::client::{Client, Error};
use crate::Command;

/// `--platform`: berth keeps and runs images of the host's platform only, so that platform
/// (or just its OS) is accepted and any other is refused.
pub fn check_platform(p: Option<&str>) -> Result<(), String> {
    match p.filter(|p| !p.is_empty()) {
        Some(p) if !berth_api::platform::is_host(p) => Err(format!(
            "platform \"{p}\" is not supported: berth keeps and runs linux/{} images only",
            berth_api::platform::go_arch()
        )),
        _ => Ok(()),
    }
}

/// [`check_platform`] for a command's `--platform`: the refusal is printed, exit code 1.
pub fn platform_arg(p: &Option<String>) -> Result<(), i32> {
    check_platform(p.as_deref()).map_err(|e| {
        eprintln!("berth: {e}");
        1
    })
}

/// Print a client error the way docker does and give the exit code.
pub fn report(e: &Error, code: i32) -> i32 {
    eprintln!("{e}");
    code
}

/// GET a tar from the daemon into `output` (or stdout, which must not be a terminal), as
/// `export` and `save` do.
pub async fn download(c: &Client, path: &str, output: Option<&str>, what: &str) -> i32 {
    use std::io::Write;
    if output.is_none() && crate::stream::is_tty(std::io::stdout()) {
        eprintln!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return 1;
    }
    let resp = match c
        .send(
            hyper::Method::GET,
            path,
            crate::client::empty(),
            "application/json",
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return report(&e, 1),
    };
    let mut out: Box<dyn Write> = match output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("failed to {what}: {p}: {e}");
                return 1;
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut failed = None;
    let res = crate::client::for_each_chunk(resp, |chunk| {
        if failed.is_none() {
            failed = out.write_all(chunk).err();
        }
    })
    .await;
    if let Err(e) = res {
        return report(&e, 1);
    }
    match failed.or_else(|| out.flush().err()) {
        Some(e) => {
            eprintln!("failed to {what}: {e}");
            1
        }
        None => 0,
    }
}

/// `inspect` of named objects under `prefix` (`/volumes`, `/networks`): every one found is
/// printed; a missing one is reported and makes the exit code 1. `query` (`?k=v` or empty)
/// goes with each request.
pub async fn inspect_each(
    c: &Client,
    prefix: &str,
    query: &str,
    names: &[String],
    format: Option<&str>,
) -> i32 {
    let mut out = Vec::new();
    let mut rc = 0;
    for n in names {
        match c
            .get(&format!("{prefix}/{}{query}", crate::client::enc(n)))
            .await
        {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("{e}");
                rc = 1;
            }
        }
    }
    if out.is_empty() {
        return rc;
    }
    container::print_inspect(&out, format).max(rc)
}

pub async fn dispatch(c: Client, cmd: Command, stacks: &dyn stack::StackLoader) -> i32 {
    use container as ct;
    use image as im;
    match cmd {
        Command::Run(a) => ct::run(&c, a).await,
        Command::Create(a) => ct::create_cmd(&c, a).await,
        Command::Start(a) => ct::start(&c, a).await,
        Command::Stop(a) => ct::stop(&c, a, "stop").await,
        Command::Restart(a) => ct::stop(&c, a, "restart").await,
        Command::Kill(a) => ct::kill(&c, a).await,
        Command::Rm(a) => ct::rm(&c, a).await,
        Command::Wait(a) => ct::wait(&c, a).await,
        Command::Ps(a) => ct::ps(&c, a).await,
        Command::Logs(a) => ct::logs(&c, a).await,
        Command::Attach(a) => ct::attach(&c, a).await,
        Command::Exec(a) => ct::exec(&c, a).await,
        Command::Inspect(a) => ct::inspect(&c, a).await,
        Command::Rename(a) => ct::rename(&c, a).await,
        Command::Update(a) => resources::update(&c, a).await,
        Command::Pause(a) => ct::simple(&c, a, "pause").await,
        Command::Unpause(a) => ct::simple(&c, a, "unpause").await,
        Command::Container(sub) => ct::container_cmd(&c, sub).await,
        Command::Images(a) => im::images(&c, a).await,
        Command::Import(a) => im::import(&c, a).await,
        Command::Load(a) => im::load(&c, a).await,
        Command::Save(a) => im::save(&c, a).await,
        Command::Rmi(a) => im::rmi(&c, a).await,
        Command::Tag(a) => im::tag(&c, a).await,
        Command::History(a) => im::history(&c, a).await,
        Command::Image(sub) => im::image_cmd(&c, sub).await,
        Command::Cp(a) => files::cp(&c, a).await,
        Command::Diff(a) => files::diff(&c, a).await,
        Command::Export(a) => files::export(&c, a).await,
        Command::Commit(a) => files::commit(&c, a).await,
        Command::Top(a) => files::top(&c, a).await,
        Command::Stats(a) => stats::stats(&c, a).await,
        Command::Events(a) => events::events(&c, a).await,
        Command::Network(sub) => network::dispatch(&c, sub).await,
        Command::Volume(sub) => volume::dispatch(&c, sub).await,
        Command::Pull(a) => registry::pull(&c, a).await,
        Command::Push(a) => registry::push(&c, a).await,
        Command::Login(a) => registry::login(&c, a).await,
        Command::Search(a) => registry::search(&c, a).await,
        Command::Logout(a) => registry::logout(a),
        Command::Port(a) => network::port(&c, a).await,
        Command::Version(a) => system::version(&c, a).await,
        Command::System(sub) => system::system_cmd(&c, sub).await,
        Command::Info(a) => system::info(&c, a).await,
        Command::Build(a) => build::build(&c, a).await,
        Command::Builder(sub) => build::builder_cmd(&c, sub).await,
        Command::Swarm(sub) => swarm::dispatch(&c, sub).await,
        Command::Node(sub) => node::dispatch(&c, sub).await,
        Command::Service(sub) => service::dispatch(&c, sub).await,
        Command::Secret(sub) => secret::secret_cmd(&c, sub).await,
        Command::Config(sub) => secret::config_cmd(&c, sub).await,
        Command::Stack(sub) => stack::dispatch(&c, sub, stacks).await,
    }
}
