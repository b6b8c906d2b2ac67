//! `run`: a one-off container of a service (`<project>-<service>-run-<12 hex>`, labelled
//! oneoff=True with a slug) made from the service's config with the command line's overrides,
//! after its dependencies are up; attached by default, its exit code the command's.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use clap::Args;
use serde_json::{json, Value};

use crate::api::{label, Engine};
use crate::convert::{config_hash, create_body, Replica};
use crate::model::Service;
use crate::progress::Progress;
use crate::project::Project;
use crate::up;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Add or override a label
    #[arg(short = 'l', long = "label", alias = "labels")]
    label: Vec<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Disable pseudo-TTY allocation (default: auto-detected)
    #[arg(short = 'T', long = "no-tty", alias = "no-TTY")]
    no_tty: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long, hide = true)]
    tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Run as specified username or uid
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Override the entrypoint of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Add Linux capabilities
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Don't start linked services
    #[arg(long)]
    no_deps: bool,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume", alias = "volumes")]
    volume: Vec<String>,
    /// Publish a container's port(s) to the host (`-p` after `run`: see [`publish_short`])
    #[arg(long)]
    publish: Vec<String>,
    /// Run command with all service's ports enabled and mapped to the host
    #[arg(short = 'P', long)]
    service_ports: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    remove_orphans: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    interactive: Option<bool>,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `run`'s flags that take a value (so the value is not the service).
const VALUED: &[&str] = &[
    "-e",
    "--env",
    "-l",
    "--label",
    "--labels",
    "--name",
    "-u",
    "--user",
    "-w",
    "--workdir",
    "--entrypoint",
    "--cap-add",
    "--cap-drop",
    "-v",
    "--volume",
    "--volumes",
    "-p",
    "--publish",
];

/// `exec`'s flags that take a value.
const EXEC_VALUED: &[&str] = &["-e", "--env", "-u", "--user", "-w", "--workdir", "--index"];

/// The command line as Compose reads it, before clap does: `-p` is the global project name
/// before the command and `--publish` after `run` (clap has one meaning per short flag); and
/// for `run` and `exec`, everything after the service is the container's command, flags
/// included (`exec web env -u VAR`), so a `--` goes after the service.
pub fn publish_short(args: &mut Vec<std::ffi::OsString>) {
    const GLOBAL_VALUED: &[&str] = &[
        "-f",
        "--file",
        "-p",
        "--project-name",
        "--project-directory",
        "--env-file",
        "--profile",
        "--parallel",
        "--progress",
        "--ansi",
    ];
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_str().unwrap_or("");
        if GLOBAL_VALUED.contains(&a) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        break;
    }
    let run = match args.get(i).and_then(|a| a.to_str()) {
        Some("run") => true,
        Some("exec") => false,
        _ => return,
    };
    let valued = if run { VALUED } else { EXEC_VALUED };
    i += 1;
    while i < args.len() {
        let Some(a) = args[i].to_str().map(str::to_string) else {
            return;
        };
        if run && a == "-p" {
            args[i] = "--publish".into();
        } else if let Some(v) = a.strip_prefix("-p").filter(|_| run) {
            let v = v.strip_prefix('=').unwrap_or(v);
            args[i] = format!("--publish={v}").into();
        } else if a == "--" {
            return;
        } else if !a.starts_with('-') {
            // The service: what follows it is its command.
            if i + 1 < args.len() && args[i + 1] != "--" {
                args.insert(i + 1, "--".into());
            }
            return;
        }
        i += if valued.contains(&a.as_str()) { 2 } else { 1 };
    }
}

/// 32 random bytes as hex (Compose's slug; the name takes its first 12 characters).
fn slug() -> Result<String, String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A `-v` of `run`: a host path (`./x`, `/x`, `~/x`) is a bind, a name a volume (the
/// project's own when declared), a lone target an anonymous volume.
enum VolumeArg {
    Bind(String),
    /// A volume mount, and the project volume key it uses when declared.
    Mount(Value, Option<String>),
}

fn volume_arg(p: &Project, spec: &str) -> Result<VolumeArg, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || format!("invalid volume specification: {spec:?}");
    match parts.as_slice() {
        [dst] if dst.starts_with('/') => Ok(VolumeArg::Mount(
            json!({"Type": "volume", "Target": dst}),
            None,
        )),
        [src, dst] | [src, dst, _] if !src.is_empty() && dst.starts_with('/') => {
            let mode = parts.get(2).copied();
            let host = if let Some(rest) = src.strip_prefix('~') {
                let home = p
                    .env
                    .get("HOME")
                    .cloned()
                    .or_else(|| std::env::var("HOME").ok());
                Some(format!("{}{rest}", home.ok_or("HOME is not set")?))
            } else if src.starts_with('.') {
                Some(p.working_dir.join(src).display().to_string())
            } else if src.starts_with('/') {
                Some(src.to_string())
            } else {
                None
            };
            match host {
                Some(h) => Ok(VolumeArg::Bind(match mode {
                    Some(m) => format!("{h}:{dst}:{m}"),
                    None => format!("{h}:{dst}"),
                })),
                None => {
                    let declared = p.model.volumes.get(*src);
                    let name = declared
                        .and_then(|v| v.name.clone())
                        .unwrap_or_else(|| src.to_string());
                    let ro = mode.is_some_and(|m| m.split(',').any(|o| o == "ro"));
                    Ok(VolumeArg::Mount(
                        json!({"Type": "volume", "Source": name, "Target": dst, "ReadOnly": ro}),
                        declared.map(|_| src.to_string()),
                    ))
                }
            }
        }
        _ => Err(bad()),
    }
}

/// The command line's checks, before anything is made.
fn check(a: &RunArgs) -> Result<(), String> {
    if !a.publish.is_empty() && a.service_ports {
        return Err("--service-ports and --publish are incompatible".into());
    }
    if a.tty && a.no_tty {
        return Err("--tty and --no-tty can't be used together".into());
    }
    if a.label.iter().any(|l| !l.contains('=')) {
        return Err("label must be set as KEY=VALUE".into());
    }
    Ok(())
}

/// Starts the service's dependencies as `up` does, then waits for their conditions.
async fn dependencies(
    e: &Engine,
    p: &Arc<Project>,
    svc: &Service,
    a: &RunArgs,
    pr: &Arc<Progress>,
) -> Result<(), String> {
    up::ensure_resources(e, p, std::slice::from_ref(&a.service), pr).await?;
    let deps: Vec<String> = svc.depends_on.keys().cloned().collect();
    if deps.is_empty() || a.no_deps {
        return Ok(());
    }
    let o = up_opts(deps, a.remove_orphans);
    up::up(e, p.clone(), o, pr.clone()).await?;
    let ev = up::Events::open(e, &p.name).await?;
    for (d, dep) in &svc.depends_on {
        let until = match dep.condition.as_str() {
            "service_healthy" => up::Until::Healthy,
            "service_completed_successfully" => up::Until::Exited,
            _ => continue,
        };
        for c in crate::down::service_containers(e, p, std::slice::from_ref(d), true).await? {
            match up::wait_for(e, &ev, &c.id, &c.name, d, until).await {
                Ok(()) => {}
                Err(m) if dep.required => return Err(m),
                Err(m) => pr.warn(&format!("Container {}", c.name), &m),
            }
        }
    }
    Ok(())
}

fn up_opts(services: Vec<String>, remove_orphans: bool) -> up::UpOpts {
    up::UpOpts {
        services,
        no_deps: false,
        recreate: up::Recreate::Diverged,
        remove_orphans,
        scale: BTreeMap::new(),
        no_start: false,
        build: up::BuildPolicy::Missing,
        pull: None,
        timeout: None,
        parallel: None,
        quiet_pull: false,
    }
}

/// The service as this run has it: the command line over the file.
fn overridden(p: &Project, a: &RunArgs) -> Result<Service, String> {
    let mut svc: Service = serde_json::from_value(p.service_tree(&a.service).clone())
        .map_err(|e| format!("service {:?}: {e}", a.service))?;
    if !a.command.is_empty() {
        svc.command = Some(a.command.clone());
    }
    if let Some(ep) = &a.entrypoint {
        let words =
            shlex::split(ep).ok_or_else(|| format!("invalid --entrypoint {ep:?}: bad quoting"))?;
        svc.entrypoint = Some(words);
    }
    if let Some(u) = &a.user {
        svc.user = Some(u.clone());
    }
    if let Some(w) = &a.workdir {
        svc.working_dir = Some(w.clone());
    }
    for kv in &a.env {
        match kv.split_once('=') {
            Some((k, v)) => svc.environment.insert(k.to_string(), Some(v.to_string())),
            // A bare KEY takes the project environment's value; unset, it is dropped
            // (the file's value stays), as Compose does.
            None => match p.env.get(kv) {
                Some(v) => svc.environment.insert(kv.clone(), Some(v.clone())),
                None => None,
            },
        };
    }
    if !a.service_ports {
        svc.ports.clear();
    }
    svc.cap_add.extend(a.cap_add.iter().cloned());
    svc.cap_drop.extend(a.cap_drop.iter().cloned());
    for l in &a.label {
        if let Some((k, v)) = l.split_once('=') {
            svc.labels.insert(k.to_string(), v.to_string());
        }
    }
    svc.restart = None;
    if let Some(d) = &mut svc.deploy {
        d.restart_policy = None;
    }
    Ok(svc)
}

/// `run`; the exit code (the container's when attached).
pub async fn run(e: &Engine, p: Arc<Project>, a: &RunArgs, pr: Arc<Progress>) -> i32 {
    match run_inner(e, p, a, pr).await {
        Ok(code) => code,
        Err(m) => {
            eprintln!("{m}");
            1
        }
    }
}

async fn run_inner(
    e: &Engine,
    p: Arc<Project>,
    a: &RunArgs,
    pr: Arc<Progress>,
) -> Result<i32, String> {
    check(a)?;
    let Some(file_svc) = p.model.services.get(&a.service) else {
        return Err(format!("no such service: {}", a.service));
    };
    let mut bindings = Vec::new();
    for spec in &a.publish {
        bindings.extend(berth_cli::parse_publish(spec)?);
    }
    let mut binds = Vec::new();
    let mut extra_mounts = Vec::new();
    let mut project_volumes = Vec::new();
    for v in &a.volume {
        match volume_arg(&p, v)? {
            VolumeArg::Bind(b) => binds.push(b),
            VolumeArg::Mount(m, key) => {
                extra_mounts.push(m);
                project_volumes.extend(key);
            }
        }
    }
    let svc = overridden(&p, a)?;
    let out_tty = berth_cli::stream::is_tty(std::io::stdout());
    let in_tty = berth_cli::stream::is_tty(std::io::stdin());
    let interactive = a.interactive.unwrap_or(true);
    let tty = a.tty || (!a.no_tty && out_tty && (a.interactive.is_some() || in_tty));
    if tty && interactive && !a.detach && !in_tty {
        return Err("the input device is not a TTY".into());
    }
    dependencies(e, &p, file_svc, a, &pr).await?;
    for key in &project_volumes {
        up::ensure_volume(e, &p, key, &pr).await?;
    }
    let image = p.image_name(&a.service, &svc);
    let image_id = up::ensure_image(
        e,
        &p,
        &up_opts(Vec::new(), false),
        &a.service,
        &svc,
        &image,
        &pr,
    )
    .await?;
    let mut peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in e
        .containers(&p.name, true)
        .await
        .map_err(|e| e.to_string())?
    {
        if !c.oneoff() {
            peers
                .entry(c.service().to_string())
                .or_default()
                .push(c.name.clone());
        }
    }
    let slug = slug()?;
    let hash = config_hash(p.service_tree(&a.service));
    let replica = Replica {
        service: &a.service,
        number: 1,
        image: &image,
        image_id: &image_id,
        peers: &peers,
        anonymous: &BTreeMap::new(),
        oneoff: true,
    };
    let (mut body, later) = create_body(&p, &svc, &replica, &hash)?;
    if let Some(l) = body["Labels"].as_object_mut() {
        // Compose gives one-off containers no number.
        l.remove(label::NUMBER);
        l.insert(label::SLUG.into(), json!(slug));
    }
    body["Tty"] = json!(tty);
    body["OpenStdin"] = json!(interactive);
    body["StdinOnce"] = json!(interactive && !a.detach);
    body["AttachStdin"] = json!(interactive && !a.detach);
    body["HostConfig"]["AutoRemove"] = json!(a.rm);
    for b in &bindings {
        body["ExposedPorts"][&b.key] = json!({});
        let entry = json!({"HostIp": b.host_ip, "HostPort": b.host_port});
        match body["HostConfig"]["PortBindings"][&b.key].as_array_mut() {
            Some(list) => list.push(entry),
            None => body["HostConfig"]["PortBindings"][&b.key] = json!([entry]),
        }
    }
    if !binds.is_empty() {
        match body["HostConfig"]["Binds"].as_array_mut() {
            Some(list) => list.extend(binds.into_iter().map(Value::String)),
            None => body["HostConfig"]["Binds"] = json!(binds),
        }
    }
    if !extra_mounts.is_empty() {
        match body["HostConfig"]["Mounts"].as_array_mut() {
            Some(list) => list.extend(extra_mounts),
            None => body["HostConfig"]["Mounts"] = json!(extra_mounts),
        }
    }
    let name = match (&a.name, &svc.container_name) {
        (Some(n), _) | (None, Some(n)) => n.clone(),
        (None, None) => format!("{}-{}-run-{}", p.name, a.service, &slug[..12]),
    };
    let files = up::file_copies(&p, &svc)?;
    let id = up::create_wired(e, &name, &body, &later, &files).await?;
    if a.detach {
        e.start(&id)
            .await
            .map_err(|err| format!("Error response from daemon: {err}"))?;
        println!("{id}");
        return Ok(0);
    }
    attached(e, &id, tty, interactive, a.rm).await
}

/// Attach, start, stream until the container exits; its exit code.
async fn attached(e: &Engine, id: &str, tty: bool, stdin: bool, rm: bool) -> Result<i32, String> {
    let enc = berth_cli::client::enc(id);
    let q = format!(
        "/containers/{enc}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        stdin as u8
    );
    let cond = if rm { "removed" } else { "next-exit" };
    let wait_path = format!("/containers/{enc}/wait?condition={cond}");
    let (conn, wait) = tokio::join!(
        e.c.hijack(&q, None),
        e.c.send(
            hyper::Method::POST,
            &wait_path,
            berth_cli::client::empty(),
            "application/json",
        )
    );
    let (conn, wait) = match (conn, wait) {
        (Ok(c), Ok(w)) => (c, w),
        (Err(err), _) | (_, Err(err)) => {
            let _ = e.remove(id, true, false).await;
            return Err(err.to_string());
        }
    };
    let raw = (tty && stdin && berth_cli::stream::is_tty(std::io::stdin()))
        .then(berth_cli::stream::RawMode::enable);
    let proxy = (!tty).then(|| berth_cli::proxy_signals(&e.c, id));
    if let Err(err) = e.start(id).await {
        drop(raw);
        if let Some(p) = proxy {
            p.abort();
        }
        let _ = e.remove(id, true, false).await;
        return Err(format!("Error response from daemon: {err}"));
    }
    if tty {
        if let Some((h, w)) = berth_cli::stream::term_size() {
            let _ =
                e.c.post(&format!("/containers/{enc}/resize?h={h}&w={w}"), None)
                    .await;
        }
    }
    let io = berth_cli::stream::run(conn, tty, stdin, None).await;
    drop(raw);
    if let Some(p) = proxy {
        p.abort();
    }
    match io {
        Ok(berth_cli::stream::Ended::Detached) => return Ok(0),
        Ok(berth_cli::stream::Ended::Output) => {}
        Err(err) => eprintln!("{err}"),
    }
    let body = berth_cli::client::read_all(wait)
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(m) = v["Error"]["Message"].as_str() {
        return Err(m.to_string());
    }
    Ok(v["StatusCode"]
        .as_i64()
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::publish_short;

    fn rewritten(args: &[&str]) -> Vec<String> {
        let mut v: Vec<std::ffi::OsString> = args.iter().map(|a| (*a).into()).collect();
        publish_short(&mut v);
        v.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn run_p_is_publish_and_the_global_p_stays_the_project() {
        assert_eq!(
            rewritten(&["compose", "-p", "x", "run", "-p", "80:80", "-e", "-p", "web", "-p"]),
            [
                "compose",
                "-p",
                "x",
                "run",
                "--publish",
                "80:80",
                "-e",
                "-p",
                "web",
                "--",
                "-p"
            ]
        );
        assert_eq!(
            rewritten(&["compose", "run", "-p8080:80", "--rm", "web"]),
            ["compose", "run", "--publish=8080:80", "--rm", "web"]
        );
        assert_eq!(
            rewritten(&["compose", "-p", "run", "ps"]),
            ["compose", "-p", "run", "ps"]
        );
    }

    #[test]
    fn what_follows_the_service_is_the_command() {
        assert_eq!(
            rewritten(&[
                "compose",
                "exec",
                "-u",
                "0",
                "--index=2",
                "web",
                "env",
                "-u",
                "X"
            ]),
            [
                "compose",
                "exec",
                "-u",
                "0",
                "--index=2",
                "web",
                "--",
                "env",
                "-u",
                "X"
            ]
        );
        assert_eq!(
            rewritten(&["compose", "exec", "-T", "web", "--", "ls"]),
            ["compose", "exec", "-T", "web", "--", "ls"]
        );
        assert_eq!(
            rewritten(&["compose", "run", "--rm", "-e", "A=1", "web", "sh", "-c", "x"]),
            ["compose", "run", "--rm", "-e", "A=1", "web", "--", "sh", "-c", "x"]
        );
        assert_eq!(
            rewritten(&["compose", "exec", "web"]),
            ["compose", "exec", "web"]
        );
    }
}
