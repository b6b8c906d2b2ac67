//! `exec` and `attach`: a service's container picked as Compose does (`--index`, the lowest
//! number first, one-off containers last), then berth's own `exec`/`attach` on it.

use clap::Args;

use crate::api::{label, Ctr, Engine};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 0)]
    index: u64,
    /// Give extended privileges to the process
    #[arg(long)]
    privileged: bool,
    /// Run the command as this user
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Disable pseudo-TTY allocation. By default 'docker compose exec' allocates a TTY.
    #[arg(short = 'T', long = "no-tty", alias = "no-TTY")]
    no_tty: bool,
    /// Path to workdir directory for this command
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long, hide = true, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    interactive: bool,
    /// Allocate a pseudo-TTY (the default when the output is a terminal)
    #[arg(short = 't', long, hide = true)]
    tty: bool,
    pub(crate) service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Index of the container if service has multiple replicas.
    #[arg(long, default_value_t = 0)]
    index: u64,
    /// Override the key sequence for detaching from a container.
    #[arg(long)]
    detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sig_proxy: bool,
    pub(crate) service: String,
}

/// Which containers a lookup considers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneOff {
    Include,
    Exclude,
}

/// The service's container: replica `index` (any when 0), running ones only unless `all`;
/// Compose's messages when there is none.
pub async fn specified(
    e: &Engine,
    project: &str,
    service: &str,
    index: u64,
    all: bool,
    oneoff: OneOff,
) -> Result<Ctr, String> {
    let mut labels = vec![
        format!("{}={project}", label::PROJECT),
        format!("{}={service}", label::SERVICE),
        label::HASH.to_string(),
    ];
    if oneoff == OneOff::Exclude {
        labels.push(format!("{}=False", label::ONEOFF));
    }
    if index > 0 {
        labels.push(format!("{}={index}", label::NUMBER));
    }
    let mut v = e
        .containers_labelled(&labels, all)
        .await
        .map_err(|e| e.to_string())?;
    v.sort_by_key(|c| (c.oneoff(), c.number()));
    match v.into_iter().next() {
        Some(c) => Ok(c),
        None if index > 0 => Err(format!(
            "service {service:?} is not running container #{index}"
        )),
        None => Err(format!("service {service:?} is not running")),
    }
}

pub async fn exec(e: &Engine, project: &str, a: &ExecArgs) -> Result<i32, String> {
    let ctr = specified(e, project, &a.service, a.index, false, OneOff::Include).await?;
    let out_tty = berth_cli::stream::is_tty(std::io::stdout());
    // Compose's default follows the output; `-t` asks for one anyway.
    let tty = !a.no_tty && (out_tty || a.tty);
    if tty && a.interactive && !a.detach && !berth_cli::stream::is_tty(std::io::stdin()) {
        return Err("the input device is not a TTY".into());
    }
    let args = berth_cli::ExecArgs {
        detach: a.detach,
        interactive: a.interactive,
        tty,
        env: a.env.clone(),
        env_file: Vec::new(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        privileged: a.privileged,
        detach_keys: None,
        container: ctr.id,
        command: a.command.clone(),
    };
    Ok(berth_cli::exec(&e.c, args).await)
}

pub async fn attach(e: &Engine, project: &str, a: &AttachArgs) -> Result<i32, String> {
    let ctr = specified(e, project, &a.service, a.index, false, OneOff::Include).await?;
    let args = berth_cli::AttachArgs {
        no_stdin: a.no_stdin,
        detach_keys: a.detach_keys.clone(),
        sig_proxy: a.sig_proxy,
        container: ctr.id,
    };
    Ok(berth_cli::attach(&e.c, args).await)
}
