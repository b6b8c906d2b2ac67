//! Exec instances: created on a running container, started through its shim, inspected for
//! their exit code. An exec lives in memory and in the shim only: it never changes the container's
//! record, networks or volumes.

use super::handle::{Container, Exec, ExecState};
use super::service::Service;
use super::shim;
use crate::error::{Error, Result};
use base64::Engine;
use berth_api::exec::{ExecConfig, ExecInspect, ProcessConfig};
use berth_shim::protocol::Request;
use std::sync::{Arc, Mutex};

impl Service {
    /// `POST /containers/{id}/exec`.
    pub fn create_exec(&self, c: &Container, config: ExecConfig) -> Result<String> {
        let r = c.snapshot();
        if !r.is_running() {
            return Err(Error::conflict(format!(
                "container {} is not running",
                r.id
            )));
        }
        if r.state.status == super::status::PAUSED {
            return Err(Error::conflict(format!(
                "container {} is paused, unpause the container before exec",
                r.id
            )));
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(Error::bad_request("No exec command specified"));
        }
        // Checked whatever the TTY, as dockerd does.
        if !config.detach_keys.is_empty() && berth_api::detach::parse(&config.detach_keys).is_err()
        {
            return Err(Error::bad_request(format!(
                "Invalid escape keys ({}) provided",
                config.detach_keys
            )));
        }
        let id = crate::util::random_id()?;
        let action = format!("exec_create: {}", command_line(&config));
        let e = Arc::new(Exec {
            id: id.clone(),
            container_id: r.id,
            config,
            state: Mutex::new(ExecState::default()),
        });
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), e);
        self.container_event(c, action, &[("execID", id.clone())]);
        Ok(id)
    }

    /// Check that the exec can start and build its process.
    pub fn prepare_exec(&self, e: &Exec) -> Result<Prepared> {
        {
            let mut st = e.state.lock().unwrap_or_else(|x| x.into_inner());
            if st.started {
                return Err(Error::conflict(format!(
                    "Error: Exec command {} has already run",
                    e.id
                )));
            }
            st.started = true;
        }
        let c = self.find(&e.container_id)?;
        let rec = c.snapshot();
        if !rec.is_running() {
            return Err(Error::conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let root = std::path::PathBuf::from(format!("/proc/{}/root", rec.state.pid));
        let process = super::process::exec_process(&rec, &e.config, &root)?;
        self.container_event(
            &c,
            format!("exec_start: {}", command_line(&e.config)),
            &[("execID", e.id.clone())],
        );
        Ok(Prepared {
            socket: c.paths.socket(),
            req: Request::Exec {
                exec_id: e.id.clone(),
                process: Box::new(process),
                stdin: e.config.attach_stdin,
            },
        })
    }

    /// Record the end of an exec; an exit of a running one is an `exec_die` event.
    pub fn exec_finished(&self, e: &Exec, code: Option<i64>) {
        let died = {
            let mut st = e.state.lock().unwrap_or_else(|x| x.into_inner());
            let was_running = st.running;
            st.running = false;
            if code.is_some() {
                st.exit_code = code;
            }
            code.filter(|_| was_running)
        };
        if let (Some(code), Ok(c)) = (died, self.find(&e.container_id)) {
            self.container_event(
                &c,
                "exec_die",
                &[("execID", e.id.clone()), ("exitCode", code.to_string())],
            );
        }
    }
}

/// The exec's detach sequence: its `DetachKeys`, Ctrl-P Ctrl-Q by default; none without a
/// TTY (binary stdin passes untouched), as in dockerd.
pub fn detach_keys(config: &ExecConfig) -> Result<Vec<u8>> {
    if !config.tty {
        return Ok(Vec::new());
    }
    if config.detach_keys.is_empty() {
        return Ok(berth_api::detach::DEFAULT.to_vec());
    }
    berth_api::detach::parse(&config.detach_keys).map_err(|_| {
        Error::bad_request(format!(
            "Invalid escape keys ({}) provided",
            config.detach_keys
        ))
    })
}

/// The command as Docker puts it in exec event actions: the program, a space, the arguments.
fn command_line(config: &ExecConfig) -> String {
    let cmd = config.cmd.as_deref().unwrap_or_default();
    match cmd.split_first() {
        Some((program, args)) => format!("{program} {}", args.join(" ")),
        None => String::new(),
    }
}

/// What an exec start sends to the shim, once the checks that answer with an HTTP error
/// have passed.
pub struct Prepared {
    socket: std::path::PathBuf,
    req: Request,
}

/// Start the prepared exec in the shim; returns the stream to pump, or the failure message
/// (its exit code, 126 or 127, is recorded on the exec).
pub async fn launch(e: &Exec, p: Prepared) -> std::result::Result<shim::Stream, String> {
    let fail = |msg: String, code: i64| {
        let mut st = e.state.lock().unwrap_or_else(|x| x.into_inner());
        st.exit_code = Some(code);
        msg
    };
    let (reply, stream) = shim::open(&p.socket, &p.req)
        .await
        .map_err(|err| fail(err.0.message, 126))?;
    if let Some(err) = reply.error {
        let code = i64::from(reply.exit_code.unwrap_or(126));
        return Err(fail(format!("OCI runtime exec failed: {err}"), code));
    }
    let mut st = e.state.lock().unwrap_or_else(|x| x.into_inner());
    st.running = true;
    st.pid = reply.pid.unwrap_or(0);
    Ok(stream)
}

pub fn inspect(e: &Exec) -> ExecInspect {
    let st = e.state.lock().unwrap_or_else(|x| x.into_inner()).clone();
    let cmd = e.config.cmd.clone().unwrap_or_default();
    ExecInspect {
        id: e.id.clone(),
        running: st.running,
        exit_code: st.exit_code,
        process_config: ProcessConfig {
            privileged: e.config.privileged,
            user: e.config.user.clone(),
            tty: e.config.tty,
            entrypoint: cmd.first().cloned().unwrap_or_default(),
            arguments: cmd.iter().skip(1).cloned().collect(),
        },
        open_stdin: e.config.attach_stdin,
        open_stderr: e.config.attach_stderr,
        open_stdout: e.config.attach_stdout,
        can_remove: false,
        container_id: e.container_id.clone(),
        detach_keys: berth_api::detach::parse(&e.config.detach_keys)
            .map(|keys| base64::engine::general_purpose::STANDARD.encode(keys))
            .unwrap_or_default(),
        pid: i64::from(st.pid),
    }
}
