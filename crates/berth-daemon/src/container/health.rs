//! Health checks as Docker runs them: while a container runs, a monitor task execs its
//! `Healthcheck` probe through the shim every interval, and keeps the status (starting →
//! healthy / unhealthy), the failing streak and the last five results in the record. It never stops
//! or restarts the container (restart policies are the lifecycle's) and never touches its networks
//! or volumes.

use super::handle::Container;
use super::{shim, status, Record};
use berth_api::container::{health_status, Config, Health, HealthConfig, HealthcheckResult};
use berth_api::{stdcopy, timefmt};
use berth_shim::protocol::Request;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Docker's probe interval during the start period when none is given.
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// Probe output kept per result.
const MAX_OUTPUT: usize = 4096;
/// Results kept in `State.Health.Log`.
const MAX_LOG: usize = 5;

/// The probe's command line, or None when the container has no (usable) health check.
fn probe_command(cfg: &Config) -> Option<Vec<String>> {
    let test = cfg.healthcheck.as_ref()?.test.as_ref()?;
    let (kind, args) = test.split_first()?;
    match kind.as_str() {
        "CMD" => Some(args.to_vec()),
        "CMD-SHELL" => {
            let shell = cfg
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            Some(shell.into_iter().chain(args.iter().cloned()).collect())
        }
        "NONE" => None,
        other => {
            tracing::warn!("unknown health check type {other:?} (expected CMD)");
            None
        }
    }
}

/// A setting in nanoseconds, or its default when 0 (or negative).
fn nanos_or(n: i64, default: Duration) -> Duration {
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .map_or(default, Duration::from_nanos)
}

/// Begin monitoring a container that was just started or found running at boot: its status
/// becomes `starting` with no failures, its log is kept, and any monitor of an earlier run
/// stops.
pub fn start(d: &Arc<super::service::Service>, c: &Arc<Container>) {
    let probe = {
        let r = c.rec();
        probe_command(&r.config).map(|cmd| {
            let hc = r.config.healthcheck.clone().unwrap_or_default();
            (cmd, hc, r.state.started_at.clone())
        })
    };
    let Some((cmd, hc, run)) = probe else {
        stop(c);
        return;
    };
    c.update_state(|r| {
        let h = r.state.health.get_or_insert_with(Health::default);
        h.status = health_status::STARTING.into();
        h.failing_streak = 0;
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    *c.health_stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    tokio::spawn(monitor(d.clone(), c.clone(), cmd, hc, run, rx));
}

/// Stop the monitor of the container's current run, if one runs.
pub fn stop(c: &Container) {
    c.health_stop
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
}

/// What the end of a run does to the health state: `unhealthy`, as Docker reports a stopped
/// container that had a health check.
pub fn on_stopped(r: &mut Record) {
    if let Some(h) = r.state.health.as_mut() {
        h.status = health_status::UNHEALTHY.into();
    }
}

/// The status `ps --filter health=` matches: the health status, or `none`.
pub fn filter_status(r: &Record) -> &str {
    r.state
        .health
        .as_ref()
        .map_or(health_status::NONE, |h| h.status.as_str())
}

/// The health check's status changed: Docker's `health_status: <status>` container event.
fn health_status_changed(d: &super::service::Service, c: &Container, status: &str) {
    tracing::debug!(id = %c.id, "health_status: {status}");
    d.container_event(c, format!("health_status: {status}"), &[]);
}

/// Probe run `run` (its `StartedAt`) of `c` until told to stop.
async fn monitor(
    d: Arc<super::service::Service>,
    c: Arc<Container>,
    cmd: Vec<String>,
    hc: HealthConfig,
    run: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let interval = nanos_or(hc.interval, DEFAULT_INTERVAL);
    let start_interval = nanos_or(hc.start_interval, DEFAULT_START_INTERVAL);
    let start_period = nanos_or(hc.start_period, Duration::ZERO);
    let timeout = nanos_or(hc.timeout, DEFAULT_TIMEOUT);
    let retries = if hc.retries > 0 {
        hc.retries
    } else {
        DEFAULT_RETRIES
    };
    let started = timefmt::parse(&run).unwrap_or_else(SystemTime::now);
    loop {
        let in_start_period = started.elapsed().unwrap_or_default() < start_period;
        let starting = c
            .rec()
            .state
            .health
            .as_ref()
            .is_some_and(|h| h.status == health_status::STARTING);
        let wait = if in_start_period && starting {
            start_interval
        } else {
            interval
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let begun = SystemTime::now();
        let outcome = tokio::select! {
            _ = &mut stop => return,
            r = probe(&c, &cmd, timeout) => r,
        };
        let (exit_code, output) = outcome.unwrap_or_else(|msg| (-1, msg));
        let result = HealthcheckResult {
            start: timefmt::rfc3339_nano(begun),
            end: timefmt::now(),
            exit_code,
            output,
        };
        let counts = begun.duration_since(started).unwrap_or_default() >= start_period;
        // The record is written to disk: not on one of the API's two workers.
        let (d2, c2, run2) = (d.clone(), c.clone(), run.clone());
        let current =
            tokio::task::spawn_blocking(move || record(&d2, &c2, &run2, result, counts, retries))
                .await
                .unwrap_or(false);
        if !current {
            return;
        }
    }
}

/// Add a probe's result to the record of run `run`. A failure while the container is still
/// `starting` inside its start period (`counts` false) does not count. Returns false, and
/// drops the result, when that run is over.
fn record(
    d: &super::service::Service,
    c: &Container,
    run: &str,
    result: HealthcheckResult,
    counts: bool,
    retries: i64,
) -> bool {
    let mut changed = None;
    let mut current = true;
    let res = c.update_if(|r| {
        if r.state.started_at != run || !r.is_running() {
            current = false;
            return false;
        }
        let Some(h) = r.state.health.as_mut() else {
            return false;
        };
        let before = h.status.clone();
        let healthy = result.exit_code == 0;
        h.log.push(result);
        if h.log.len() > MAX_LOG {
            let extra = h.log.len() - MAX_LOG;
            h.log.drain(..extra);
        }
        if healthy {
            h.failing_streak = 0;
            h.status = health_status::HEALTHY.into();
        } else if counts || h.status != health_status::STARTING {
            h.failing_streak += 1;
            if h.failing_streak >= retries {
                h.status = health_status::UNHEALTHY.into();
            }
        }
        if h.status != before {
            changed = Some(h.status.clone());
        }
        true
    });
    if let Err(e) = res {
        tracing::warn!("recording the health of {}: {}", c.id, e.0);
    }
    if let Some(s) = changed {
        health_status_changed(d, c, &s);
    }
    current
}

/// Run the probe once as an exec in the container: its exit code and output (the first
/// 4096 bytes of stdout and stderr), or the message of a failure, which counts as exit -1.
/// A probe still running after `timeout` is killed.
async fn probe(c: &Container, cmd: &[String], timeout: Duration) -> Result<(i64, String), String> {
    let rec = c.snapshot();
    if rec.state.status == status::PAUSED {
        // The shim would block on a frozen container, as runc refuses to.
        return Err("OCI runtime exec failed: cannot exec in a paused container".into());
    }
    if !rec.is_running() {
        return Err(format!("container {} is not running", rec.id));
    }
    let ec = berth_api::exec::ExecConfig {
        cmd: Some(cmd.to_vec()),
        attach_stdout: true,
        attach_stderr: true,
        ..Default::default()
    };
    let root = std::path::PathBuf::from(format!("/proc/{}/root", rec.state.pid));
    let process = super::process::exec_process(&rec, &ec, &root).map_err(|e| e.0.message)?;
    let exec_id = crate::util::random_id().map_err(|e| e.0.message)?;
    let socket = c.paths.socket();
    let req = Request::Exec {
        exec_id: exec_id.clone(),
        process: Box::new(process),
        stdin: false,
    };
    let (reply, mut stream) = shim::open(&socket, &req).await.map_err(|e| e.0.message)?;
    if let Some(err) = reply.error {
        return Err(format!("OCI runtime exec failed: {err}"));
    }
    match tokio::time::timeout(timeout, read_probe(&mut stream)).await {
        Ok(r) => r,
        Err(_) => {
            let kill = Request::KillExec {
                exec_id,
                signal: libc::SIGKILL,
            };
            if let Err(e) = shim::call(&socket, &kill).await {
                tracing::warn!("killing the health probe of {}: {}", c.id, e.0);
            }
            Ok((
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    berth_api::duration::format(timeout.as_nanos() as i64)
                ),
            ))
        }
    }
}

/// Collect a probe's output until its exit record.
async fn read_probe(stream: &mut shim::Stream) -> Result<(i64, String), String> {
    use tokio::io::AsyncReadExt;
    let mut dec = stdcopy::Decoder::default();
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the shim closed the health probe's stream".into());
        }
        dec.feed(&buf[..n]);
        while let Some((s, payload)) = dec.next_frame().map_err(|e| e.to_string())? {
            if s == stdcopy::SYSTEM {
                let exit: berth_shim::ExitRecord =
                    serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                let mut text = String::from_utf8_lossy(&out).into_owned();
                if truncated {
                    text.push_str("...");
                }
                return Ok((i64::from(exit.exit_code), text));
            }
            let keep = MAX_OUTPUT.saturating_sub(out.len()).min(payload.len());
            out.extend_from_slice(&payload[..keep]);
            truncated |= keep < payload.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_commands() {
        let mut cfg = Config::default();
        assert_eq!(probe_command(&cfg), None);
        cfg.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            ..Default::default()
        });
        assert_eq!(
            probe_command(&cfg),
            Some(vec!["/bin/sh".into(), "-c".into(), "true".into()])
        );
        cfg.shell = Some(vec!["/bin/ash".into(), "-xc".into()]);
        assert_eq!(
            probe_command(&cfg).unwrap()[..2],
            ["/bin/ash".to_string(), "-xc".to_string()]
        );
        cfg.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD".into(), "cat".into(), "/x".into()]),
            ..Default::default()
        });
        assert_eq!(probe_command(&cfg), Some(vec!["cat".into(), "/x".into()]));
        cfg.healthcheck = Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
        assert_eq!(probe_command(&cfg), None);
        assert_eq!(nanos_or(0, DEFAULT_INTERVAL), DEFAULT_INTERVAL);
        assert_eq!(
            nanos_or(200_000_000, DEFAULT_INTERVAL),
            Duration::from_millis(200)
        );
    }
}
