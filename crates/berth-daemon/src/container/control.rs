//! Signals and state changes of a created container: kill, stop (the stop signal, then
//! SIGKILL), restart, pause/unpause, rename, and waiting for an exit. They act through the
//! container's shim and runtime state; its networks and volumes are the lifecycle's.

use super::handle::{Container, Progress};
use super::service::Service;
use super::{shim, status};
use crate::error::{Error, Result};
use berth_shim::protocol::Request;
use std::sync::Arc;
use std::time::Duration;

fn signal_number(s: &str) -> Result<i32> {
    let t = s.trim().to_ascii_uppercase();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = if t.starts_with("SIG") {
        t.clone()
    } else {
        format!("SIG{t}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::bad_request(format!("Invalid signal: {s}")))
}

/// How long a SIGKILLed container may take to be recorded as stopped before `kill` gives up,
/// as dockerd does when no exit event comes.
const KILL_EXIT_WAIT: Duration = Duration::from_secs(60);

impl Service {
    /// `POST /containers/{id}/kill`: returns once the signal was delivered and, for SIGKILL, once
    /// the exit is recorded (an inspect that follows shows the container stopped, with its exit
    /// code), as dockerd does.
    pub async fn kill(&self, c: &Arc<Container>, signal: Option<&str>) -> Result<()> {
        let sig = signal_number(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let seen = c.progress.borrow().exits;
        if matches!(sig, libc::SIGKILL | libc::SIGTERM | libc::SIGINT) {
            mark_stopped(c);
        }
        let r = c.snapshot();
        if !r.is_running() {
            return Err(Error::conflict(format!(
                "cannot kill container: {}: container {} is not running",
                r.bare_name(),
                r.id
            )));
        }
        if r.state.status == status::PAUSED && sig == libc::SIGKILL {
            let _ = berth_runtime::Runtime::new(&c.runtime_root).resume(&c.id);
        }
        if r.state.status == status::RESTARTING {
            // Between two runs: cancel the pending restart under the op lock, so a restart that
            // is about to begin sees it.
            let op = c.op.lock().await;
            if c.rec().state.status == status::RESTARTING {
                c.update_state(|r| {
                    r.state.manually_stopped = true;
                    r.state.status = status::EXITED.into();
                });
                c.progress.send_modify(|p| p.exits += 1);
                return Ok(());
            }
            // The restart ran meanwhile, and its start cleared the mark: this run is stopped by
            // the user too.
            if matches!(sig, libc::SIGKILL | libc::SIGTERM | libc::SIGINT) {
                mark_stopped(c);
            }
            drop(op);
            if !c.rec().is_running() {
                return Ok(());
            }
        }
        let sent = shim::call(
            &c.paths.socket(),
            &Request::Kill {
                signal: sig,
                all: false,
            },
        )
        .await;
        if sent.is_ok() {
            self.container_event(c, "kill", &[("signal", sig.to_string())]);
        }
        if sig != libc::SIGKILL {
            return sent.map(|_| ());
        }
        // The process may also have ended on its own just before (the shim then refuses the
        // signal): either way the call returns once the exit monitor has recorded the end.
        if wait_exit_after(c, seen, Some(KILL_EXIT_WAIT)).await || !c.rec().is_running() {
            return Ok(());
        }
        sent?;
        Err(Error::internal(format!(
            "tried to kill container {}, but did not receive an exit event",
            c.id
        )))
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(
        &self,
        c: &Arc<Container>,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        self.stop_process(c, signal, timeout).await?;
        self.container_event(c, "stop", &[]);
        Ok(())
    }

    async fn stop_process(
        &self,
        c: &Arc<Container>,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let r = c.snapshot();
        if !r.is_running() {
            return Err(Error::not_modified());
        }
        if r.state.status == status::RESTARTING {
            return self.kill(c, Some("SIGKILL")).await;
        }
        mark_stopped(c);
        let seen = c.progress.borrow().exits;
        let sig = signal
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or(r.config.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let t = timeout.or(r.config.stop_timeout).unwrap_or(10);
        if r.state.status == status::PAUSED {
            let _ = berth_runtime::Runtime::new(&c.runtime_root).resume(&c.id);
        }
        let sent = self.kill(c, Some(&sig)).await;
        if sent.is_ok() && t != 0 {
            let limit = (t >= 0).then(|| Duration::from_secs(t as u64));
            if wait_exit_after(c, seen, limit).await {
                return Ok(());
            }
        }
        if c.rec().is_running() {
            let _ = self.kill(c, Some("SIGKILL")).await;
            wait_exit_after(c, seen, None).await;
        }
        Ok(())
    }

    /// `POST /containers/{id}/wait`: resolves with the exit code.
    pub async fn wait(&self, c: &Arc<Container>, condition: &str) -> Result<i64> {
        let mut rx = c.progress.subscribe();
        let start: Progress = *rx.borrow();
        match condition {
            "" | "not-running" => {
                if !c.rec().is_running() {
                    return Ok(c.rec().state.exit_code);
                }
                let _ = rx.wait_for(|p| p.exits > start.exits || p.removed).await;
            }
            "next-exit" => {
                let _ = rx.wait_for(|p| p.exits > start.exits || p.removed).await;
            }
            "removed" => {
                let _ = rx.wait_for(|p| p.removed).await;
            }
            other => {
                return Err(Error::bad_request(format!(
                    "invalid condition: \"{other}\""
                )))
            }
        }
        Ok(c.rec().state.exit_code)
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(
        self: &Arc<Self>,
        c: &Arc<Container>,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        match self.stop(c, signal, timeout).await {
            Ok(()) | Err(Error(berth_api::ApiError { status: 304, .. })) => {}
            Err(e) => return Err(e),
        }
        self.start(c).await?;
        self.container_event(c, "restart", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/pause` and `/unpause`.
    pub fn pause(&self, c: &Container, pause: bool) -> Result<()> {
        let r = c.snapshot();
        if !r.is_running() {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let paused = r.state.status == status::PAUSED;
        if pause && paused {
            return Err(Error::conflict(format!(
                "Container {} is already paused",
                r.id
            )));
        }
        if !pause && !paused {
            return Err(Error::conflict(format!("Container {} is not paused", r.id)));
        }
        let rt = berth_runtime::Runtime::new(&self.runtime_root);
        let res = if pause {
            rt.pause(&c.id)
        } else {
            rt.resume(&c.id)
        };
        res.map_err(|e| Error::internal(e.to_string()))?;
        // Done: reported as such even if the record cannot be written now (it is retried).
        c.update_state(|r| {
            r.state.status = if pause {
                status::PAUSED
            } else {
                status::RUNNING
            }
            .into();
        });
        self.container_event(c, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `POST /containers/{id}/rename`.
    pub fn rename(&self, c: &Container, new: &str) -> Result<()> {
        crate::names::check_len("container", new.trim_start_matches('/'))?;
        if !crate::names::valid(new) {
            return Err(Error::bad_request(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let full = format!("/{}", new.trim_start_matches('/'));
        let old = c.rec().name.clone();
        if old == full {
            return Err(Error::conflict(
                "Renaming a container with the same name as its current name",
            ));
        }
        self.set_name(c, &full)?;
        self.container_event(c, "rename", &[("oldName", old)]);
        Ok(())
    }
}

/// Wait until the exit counter moves past `seen`, up to `timeout`.
async fn wait_exit_after(c: &Container, seen: u64, timeout: Option<Duration>) -> bool {
    let mut rx = c.progress.subscribe();
    let fut = rx.wait_for(|p| p.exits > seen || p.removed);
    match timeout {
        Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
        None => fut.await.is_ok(),
    }
}

/// Note that the user stopped the container, so restart policies leave it down. Never fails:
/// the signal that follows must be sent even when the record cannot be written.
fn mark_stopped(c: &Container) {
    if c.rec().is_running() {
        c.update_state(|r| r.state.manually_stopped = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(signal_number("TERM").unwrap(), 15);
        assert_eq!(signal_number("SIGKILL").unwrap(), 9);
        assert_eq!(signal_number("2").unwrap(), 2);
        assert!(signal_number("BOGUS").is_err());
    }
}
