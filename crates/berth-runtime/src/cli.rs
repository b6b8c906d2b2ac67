//! `berth runtime …`: a runc/crun-compatible OCI command line over [`crate::Runtime`].

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use oci_spec::runtime::{Process, UserBuilder};

use crate::error::{Error, ExecErrorKind, Result};
use crate::{spec, stdio, sys, Runtime, Stdio, STATUS_ANNOTATION};

#[derive(Parser)]
#[command(name = "berth-runtime", about = "berth's OCI runtime", version)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/berth/runtime")]
    root: PathBuf,
    /// Append errors to this file (runc/containerd compatible).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Accepted for compatibility; no effect.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for compatibility; cgroups are always managed through cgroupfs.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to send the PTY master to when process.terminal is true.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Write the init's pid to this file.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Accepted for compatibility; pivot_root is always used.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for compatibility.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Accepted for compatibility; only 0 is supported.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to the container.
    Kill {
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container.
    Delete {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create, start and (unless detached) wait for a container, then delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start.
        #[arg(short, long)]
        detach: bool,
    },
    /// Run a process in a running container.
    Exec {
        /// JSON file with the process (OCI `process` object).
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Allocate a PTY (needs --console-socket).
        #[arg(short, long)]
        tty: bool,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Extra environment variables (KEY=VALUE).
        #[arg(short, long)]
        env: Vec<String>,
        /// uid[:gid]
        #[arg(short, long)]
        user: Option<String>,
        /// Return once the process has started.
        #[arg(short, long)]
        detach: bool,
        id: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Freeze a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Write a Docker-like config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

/// Run the OCI command line; `args[0]` is the program name. Returns the process exit code.
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let log = cli.log.clone();
    let json = cli.log_format == "json";
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-runtime: {e}");
            if let Some(log) = log {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                {
                    let line = if json {
                        serde_json::json!({"level": "error", "msg": e.to_string(), "time": crate::state::now_rfc3339()})
                            .to_string()
                    } else {
                        format!("error: {e}")
                    };
                    let _ = writeln!(f, "{line}");
                }
            }
            match e {
                Error::Exec {
                    kind: ExecErrorKind::NotFound,
                    ..
                } => 127,
                Error::Exec {
                    kind: ExecErrorKind::PermissionDenied,
                    ..
                } => 126,
                _ => 1,
            }
        }
    }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

/// Parse "TERM", "SIGTERM", "sigterm" or "15".
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                rest.parse::<i32>()
                    .map(|n| libc::SIGRTMIN() + n)
                    .unwrap_or(-1)
            } else {
                -1
            }
        }
    };
    if n < 0 {
        return Err(Error::Config(format!("unknown signal {s:?}")));
    }
    Ok(n)
}

fn wants_terminal(bundle: &Path) -> Result<bool> {
    let spec = crate::create::load_spec(bundle)?;
    Ok(spec.process().as_ref().and_then(|p| p.terminal()) == Some(true))
}

fn do_create(rt: &Runtime, a: &CreateArgs) -> Result<i32> {
    let terminal = wants_terminal(&a.bundle)?;
    let stdio = match (&a.console_socket, terminal) {
        (Some(_), true) => Stdio::Pty,
        _ => Stdio::Inherit,
    };
    let created = rt.create(&a.id, &a.bundle, stdio)?;
    let sent = match (&a.console_socket, &created.pty_master) {
        (Some(sock), Some(master)) => stdio::send_console(sock, master),
        _ => Ok(()),
    };
    let pid_written = match &a.pid_file {
        Some(p) => write_pid_file(p, created.pid),
        None => Ok(()),
    };
    if let Err(e) = sent.and(pid_written) {
        let _ = rt.delete(&a.id, true);
        return Err(e);
    }
    Ok(created.pid)
}

/// What `run` passes on to the container (as crun does), plus SIGCHLD to see it end.
fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal::*;
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [
        SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

fn run(cli: Cli) -> Result<i32> {
    let rt = Runtime::new(&cli.root);
    match cli.cmd {
        Cmd::Create(a) => {
            do_create(&rt, &a)?;
            Ok(0)
        }
        Cmd::Start { id } => rt.start(&id).map(|()| 0),
        Cmd::State { id } => {
            let st = rt.state(&id)?;
            let status = st
                .annotations()
                .as_ref()
                .and_then(|a| a.get(STATUS_ANNOTATION).cloned())
                .unwrap_or_else(|| st.status().to_string());
            let mut annotations = st.annotations().clone().unwrap_or_default();
            annotations.remove(STATUS_ANNOTATION);
            let rec = crate::state::Record::load(rt.root(), &id)?;
            let out = serde_json::json!({
                "ociVersion": st.version(),
                "id": st.id(),
                "pid": st.pid().unwrap_or(0),
                "status": status,
                "bundle": st.bundle(),
                "rootfs": rec.rootfs,
                "created": rec.created,
                "owner": "",
                "annotations": annotations,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            rt.kill(&id, sig, all).map(|()| 0)
        }
        Cmd::Delete { force, id } => rt.delete(&id, force).map(|()| 0),
        Cmd::Pause { id } => rt.pause(&id).map(|()| 0),
        Cmd::Resume { id } => rt.resume(&id).map(|()| 0),
        Cmd::Run { create, detach } => {
            let pid = do_create(&rt, &create)?;
            // Signals for the container are held from here and passed on while it runs.
            let forwarded = forwarded_signals();
            if !detach {
                forwarded
                    .thread_block()
                    .map_err(|e| Error::sys("sigprocmask", "", e.into()))?;
            }
            if let Err(e) = rt.start(&create.id) {
                if !detach {
                    let _ = sys::waitpid(pid, 0);
                }
                let _ = rt.delete(&create.id, true);
                return Err(e);
            }
            if detach {
                return Ok(0);
            }
            let status = loop {
                let (got, status) =
                    sys::waitpid(pid, libc::WNOHANG).map_err(|e| Error::sys("waitpid", pid, e))?;
                if got == pid {
                    break status;
                }
                // SIGCHLD is in the set: an exit after the check above ends this wait too.
                match forwarded.wait() {
                    Ok(nix::sys::signal::Signal::SIGCHLD) | Err(_) => {}
                    Ok(sig) => {
                        let _ = sys::kill(pid, sig as i32);
                    }
                }
            };
            rt.delete(&create.id, true)?;
            Ok(sys::exit_code(status))
        }
        Cmd::Exec {
            process,
            tty,
            console_socket,
            pid_file,
            cwd,
            env,
            user,
            detach,
            id,
            command,
        } => {
            let p = match process {
                Some(path) => {
                    let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
                    serde_json::from_slice::<Process>(&data)
                        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
                }
                None => {
                    if command.is_empty() {
                        return Err(Error::Config("exec needs a command or --process".into()));
                    }
                    let rec = crate::state::Record::load(rt.root(), &id)?;
                    let spec = crate::create::load_spec(&rec.bundle)?;
                    let mut p = spec.process().clone().unwrap_or_default();
                    p.set_args(Some(command));
                    p.set_terminal(Some(tty));
                    if let Some(c) = cwd {
                        p.set_cwd(c);
                    }
                    if !env.is_empty() {
                        let mut e = p.env().clone().unwrap_or_default();
                        e.extend(env);
                        p.set_env(Some(e));
                    }
                    if let Some(u) = user {
                        let (uid, gid) = u.split_once(':').unwrap_or((&u, "0"));
                        let uid: u32 = uid
                            .parse()
                            .map_err(|_| Error::Config(format!("bad user {u:?}")))?;
                        let gid: u32 = gid
                            .parse()
                            .map_err(|_| Error::Config(format!("bad user {u:?}")))?;
                        let user = UserBuilder::default()
                            .uid(uid)
                            .gid(gid)
                            .build()
                            .map_err(|e| Error::Config(e.to_string()))?;
                        p.set_user(user);
                    }
                    p
                }
            };
            let stdio = match (&console_socket, p.terminal() == Some(true)) {
                (Some(_), true) => Stdio::Pty,
                _ => Stdio::Inherit,
            };
            // The exec'd process becomes our child; anything it leaves behind too.
            let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
            let created = rt.exec(&id, &p, stdio)?;
            if let (Some(sock), Some(m)) = (&console_socket, &created.pty_master) {
                stdio::send_console(sock, m)?;
            }
            if let Some(pf) = &pid_file {
                write_pid_file(pf, created.pid)?;
            }
            if detach {
                return Ok(0);
            }
            let status = sys::waitpid(created.pid, 0)
                .map_err(|e| Error::sys("waitpid", created.pid, e))?
                .1;
            Ok(sys::exit_code(status))
        }
        Cmd::Spec { bundle } => {
            let s = spec::default_spec(&["sh"], false);
            let p = bundle.join("config.json");
            let data = serde_json::to_vec_pretty(&s)
                .map_err(|e| Error::Config(format!("serialize spec: {e}")))?;
            std::fs::write(&p, data).map_err(|e| Error::io("write", &p, e))?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("sigusr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn parses_runc_style_args() {
        let c = Cli::try_parse_from([
            "x",
            "--root",
            "/r",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "id1",
        ])
        .unwrap();
        assert!(
            matches!(c.cmd, Cmd::Create(ref a) if a.id == "id1" && a.bundle == Path::new("/b"))
        );
        let c = Cli::try_parse_from(["x", "kill", "id1", "9"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Kill { ref signal, .. } if signal.as_deref() == Some("9")));
        let c = Cli::try_parse_from(["x", "exec", "id1", "ls", "-l"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Exec { ref command, .. } if command == &["ls", "-l"]));
    }
}
