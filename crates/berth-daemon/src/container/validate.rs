//! Docker's checks of a create request (restart policy, health check timing, `--userns`, the
//! namespace modes, devices, runtime and log driver settings, as dockerd refuses them on
//! Linux), dockerd's defaults for what it leaves empty, and the image settings a container
//! inherits. Checks and defaults only: it changes no record and takes no name, address or volume.

use super::service::Service;
use super::settings::{container_of, device_rule, host_devices};
use crate::error::{Error, Result};
use berth_api::container::{CreateRequest, HealthConfig, HostConfig, RestartPolicy};
use std::path::Path;

/// The shortest health check interval, timeout or period Docker accepts (1ms).
const MIN_HEALTH_DURATION: i64 = 1_000_000;

/// Docker's merge of the image's HEALTHCHECK into the container's: the whole of it when the
/// container sets none, else each setting the container leaves at zero.
pub(super) fn inherit_healthcheck(own: &mut Option<HealthConfig>, image: HealthConfig) {
    let Some(h) = own else {
        *own = Some(image);
        return;
    };
    if h.test.as_ref().is_none_or(|t| t.is_empty()) {
        h.test = image.test;
    }
    for (mine, theirs) in [
        (&mut h.interval, image.interval),
        (&mut h.timeout, image.timeout),
        (&mut h.start_period, image.start_period),
        (&mut h.start_interval, image.start_interval),
        (&mut h.retries, image.retries),
    ] {
        if *mine == 0 {
            *mine = theirs;
        }
    }
}

/// How Docker shows a reference the user typed: with `:latest` when untagged.
pub(super) fn display_ref(r: &str) -> String {
    let last = r.rsplit('/').next().unwrap_or(r);
    if r.contains('@') || last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// Docker's restart policy check (create and update).
pub fn check_restart_policy(p: &RestartPolicy) -> Result<()> {
    match p.name.as_str() {
        // An empty name is what older clients send for "no".
        "" => Ok(()),
        "on-failure" if p.maximum_retry_count < 0 => Err(Error::bad_request(
            "invalid restart policy: maximum retry count cannot be negative",
        )),
        "on-failure" => Ok(()),
        "no" | "always" | "unless-stopped" if p.maximum_retry_count == 0 => Ok(()),
        "no" | "always" | "unless-stopped" => {
            let mut msg = String::from(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            );
            if p.maximum_retry_count < 0 {
                msg.push_str(" and cannot be negative");
            }
            Err(Error::bad_request(msg))
        }
        other => Err(Error::bad_request(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        ))),
    }
}

/// Docker's check of a health check's timing (`validateHealthCheck`).
fn check_healthcheck(h: Option<&HealthConfig>) -> Result<()> {
    let Some(h) = h else { return Ok(()) };
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if v != 0 && v < MIN_HEALTH_DURATION {
            return Err(Error::bad_request(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries < 0 {
        return Err(Error::bad_request(
            "Retries in Healthcheck cannot be negative",
        ));
    }
    Ok(())
}

/// Check the create request; Docker's warnings on success.
pub(super) fn validate(req: &CreateRequest) -> Result<Vec<String>> {
    let h = &req.host_config;
    let warnings = super::limits::check(h, false).map_err(Error::bad_request)?;
    check_restart_policy(&h.restart_policy)?;
    check_healthcheck(req.config.healthcheck.as_ref())?;
    if h.shm_size < 0 {
        return Err(Error::bad_request("SHM size can not be less than 0"));
    }
    if !(-1000..=1000).contains(&h.oom_score_adj) {
        return Err(Error::bad_request(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            h.oom_score_adj
        )));
    }
    if h.auto_remove && !matches!(h.restart_policy.name.as_str(), "" | "no") {
        return Err(Error::bad_request(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    Ok(warnings)
}

/// `--userns` and what Docker refuses in a remapped container.
pub(super) fn check_userns(d: &Service, h: &berth_api::container::HostConfig) -> Result<()> {
    if !matches!(h.userns_mode.as_str(), "" | "host") {
        return Err(Error::bad_request(format!(
            "invalid UsernsMode {:?}: only \"host\" is supported",
            h.userns_mode
        )));
    }
    if d.remap.is_none() || h.userns_mode == "host" {
        return Ok(());
    }
    if h.privileged {
        return Err(Error::bad_request("privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode"));
    }
    if h.network_mode == "host" {
        return Err(Error::bad_request(
            "cannot share the host's network namespace when user namespaces are enabled",
        ));
    }
    Ok(())
}

/// The runtimes a container may ask for: berth-runtime answers to all of them.
const RUNTIMES: &[&str] = &["runc", "berth", "io.containerd.runc.v2"];

/// What a runtime of `HostConfig.Runtime` defaults to, as `docker info` names it.
pub const DEFAULT_RUNTIME: &str = "runc";

/// Log drivers dockerd registers on Linux that berth does not carry: a container may be made
/// with one, and its start fails as dockerd's does when the driver cannot initialize.
const UNAVAILABLE_LOG_DRIVERS: &[&str] = &[
    "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "gcplogs",
];

/// Whether the host runs the unified (v2) cgroup hierarchy.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Check the settings of a create request as dockerd does; its warnings on success.
pub fn check(req: &CreateRequest, remapped: bool) -> Result<Vec<String>> {
    let h = &req.host_config;
    let mut warnings = Vec::new();
    let bad = |m: String| Err(Error::bad_request(m));
    if !matches!(
        h.ipc_mode.as_str(),
        "" | "none" | "private" | "shareable" | "host"
    ) && container_of(&h.ipc_mode).is_none()
    {
        return bad(format!("invalid IPC mode: {}", h.ipc_mode));
    }
    if !matches!(h.pid_mode.as_str(), "" | "host") && container_of(&h.pid_mode).is_none() {
        return bad(format!("invalid PID mode: {}", h.pid_mode));
    }
    if !matches!(h.uts_mode.as_str(), "" | "host") {
        return bad(format!("invalid UTS mode: {}", h.uts_mode));
    }
    if !matches!(h.cgroupns_mode.as_str(), "" | "host" | "private") {
        return bad(format!(
            "invalid cgroup namespace mode: {}",
            h.cgroupns_mode
        ));
    }
    if h.uts_mode == "host" && !req.config.hostname.is_empty() {
        return bad("conflicting options: hostname and the UTS mode".into());
    }
    if remapped && h.userns_mode != "host" && h.pid_mode == "host" {
        return bad("cannot share the host PID namespace when user namespaces are enabled".into());
    }
    if !h.runtime.is_empty() && !RUNTIMES.contains(&h.runtime.as_str()) {
        return bad(format!("unknown or invalid runtime name: {}", h.runtime));
    }
    if !matches!(h.isolation.as_str(), "" | "default") {
        return bad(format!(
            "Invalid isolation: {:?} - linux only supports 'default'",
            h.isolation
        ));
    }
    if h.storage_opt.as_ref().is_some_and(|o| !o.is_empty()) {
        return bad(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                .into(),
        );
    }
    if !matches!(h.volume_driver.as_str(), "" | "local") {
        return Err(Error::not_found(format!(
            "error looking up volume plugin {0}: plugin \"{0}\" not found",
            h.volume_driver
        )));
    }
    if let Some(r) = h.device_requests.iter().flatten().next() {
        let driver = r["Driver"].as_str().unwrap_or_default();
        let caps = serde_json::to_string(&r["Capabilities"]).unwrap_or_default();
        let caps = caps.replace('"', "").replace(',', " ");
        return bad(format!(
            "could not select device driver {driver:?} with capabilities: {caps}"
        ));
    }
    if h.io_maximum_bandwidth != 0 || h.io_maximum_iops != 0 {
        return bad(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
                .into(),
        );
    }
    if h.cpu_percent > 0 {
        warnings.push("linux does not support CPU percent. Percent discarded.".into());
    }
    if h.cpu_count > 0 {
        warnings.push("linux does not support CPU count. Count discarded.".into());
    }
    if h.kernel_memory != 0 || h.kernel_memory_tcp != 0 {
        warnings.push(
            "Specifying a kernel memory limit is deprecated and will be removed in a future release."
                .into(),
        );
    }
    if h.cpu_realtime_period != 0 || h.cpu_realtime_runtime != 0 {
        if !Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
            let what = if h.cpu_realtime_runtime != 0 {
                "runtime"
            } else {
                "period"
            };
            return bad(format!(
                "Your kernel does not support cgroup cpu real-time {what}"
            ));
        }
        if h.cpu_realtime_period != 0 && h.cpu_realtime_runtime > h.cpu_realtime_period {
            return bad("cpu real-time runtime cannot be higher than cpu real-time period".into());
        }
    }
    for rule in h.device_cgroup_rules.iter().flatten() {
        device_rule(rule)?;
    }
    for m in h.devices.iter().flatten() {
        if !m.cgroup_permissions.is_empty()
            && !m.cgroup_permissions.chars().all(|c| "rwm".contains(c))
        {
            return bad(format!("invalid device mode: {}", m.cgroup_permissions));
        }
        host_devices(&m.path_on_host, &m.path_on_host)?;
    }
    let kind = h.log_config.kind.as_str();
    if !matches!(kind, "" | "json-file" | "local" | "none")
        && !UNAVAILABLE_LOG_DRIVERS.contains(&kind)
    {
        return bad(format!(
            "logger: no log driver named '{kind}' is registered"
        ));
    }
    let lo = &h.log_config.config;
    if kind != "none" {
        // The shim writes the file itself: the container never waits for a log consumer,
        // only (as with dockerd's `blocking`) for the disk. `non-blocking` is taken with
        // that meaning: no ring buffer drops lines when the disk stalls.
        let mode = lo.get("mode").map_or("", String::as_str);
        if !matches!(mode, "" | "blocking" | "non-blocking") {
            return bad(format!("logger: logging mode not supported: {mode}"));
        }
        if let Some(size) = lo.get("max-buffer-size") {
            if mode != "non-blocking" {
                return bad(
                    "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
                        .into(),
                );
            }
            if berth_api::units::ram_in_bytes(size).is_err() {
                return bad(format!("error parsing option max-buffer-size: {size}"));
            }
        }
    }
    if kind == "local" {
        check_local_opts(&h.log_config.config)?;
    }
    if matches!(kind, "" | "json-file") {
        check_compress(&h.log_config.config, false)?;
        // `tag` means nothing to json-file (dockerd accepts and ignores it too). `labels` and
        // `env` name the attributes `logs --details` shows (taken from the container's
        // labels and environment, which do not change); the regex forms are refused, not
        // dropped.
        for k in h.log_config.config.keys() {
            match k.as_str() {
                "max-file" | "max-size" | "compress" | "mode" | "max-buffer-size" | "tag"
                | "labels" | "env" => {}
                "labels-regex" | "env-regex" => {
                    return bad(format!(
                        "log opt '{k}' (attributes on each entry) is not supported by berth's json-file log driver"
                    ))
                }
                _ => return bad(format!("unknown log opt '{k}' for json-file log driver")),
            }
        }
    }
    Ok(warnings)
}

/// The options of the local log driver, checked as dockerd's driver checks them.
fn check_local_opts(opts: &std::collections::BTreeMap<String, String>) -> Result<()> {
    let bad = |m: String| Err(Error::bad_request(m));
    for k in opts.keys() {
        if !matches!(
            k.as_str(),
            "max-file" | "max-size" | "compress" | "mode" | "max-buffer-size"
        ) {
            return bad(format!("unknown log opt '{k}' for log driver local"));
        }
    }
    if let Some(v) = opts.get("max-file") {
        match v.parse::<i64>() {
            Ok(n) if n >= 1 => {}
            Ok(_) => return bad("max-file cannot be less than 1".into()),
            Err(_) => return bad(format!("error reading max-file option: {v}")),
        }
    }
    if let Some(v) = opts.get("max-size") {
        match berth_api::units::ram_in_bytes(v) {
            Ok(n) if n > 0 => {}
            _ => return bad(format!("error reading max-size option: {v}")),
        }
    }
    check_compress(opts, true)
}

/// `compress` (a Go boolean; `default` when absent) with `max-file`: compression needs a
/// rotated file to compress.
fn check_compress(opts: &std::collections::BTreeMap<String, String>, default: bool) -> Result<()> {
    let compress = match opts.get("compress").map(String::as_str) {
        None => default,
        Some("true" | "1" | "t" | "T" | "TRUE" | "True") => true,
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
        Some(v) => {
            return Err(Error::bad_request(format!(
                "error reading compress log option: {v}"
            )))
        }
    };
    let files = opts
        .get("max-file")
        .map_or(Some(5), |v| v.parse::<i64>().ok());
    if compress && files == Some(1) {
        return Err(Error::bad_request(
            "compression cannot be enabled when max file count is 1",
        ));
    }
    Ok(())
}

/// dockerd's defaults for what the request leaves empty, recorded so that inspect shows them.
pub fn set_defaults(h: &mut HostConfig) {
    if h.ipc_mode.is_empty() {
        h.ipc_mode = "private".into();
    }
    if h.cgroupns_mode.is_empty() {
        h.cgroupns_mode = if cgroup_v2() { "private" } else { "host" }.into();
    }
    if h.runtime.is_empty() {
        h.runtime = DEFAULT_RUNTIME.into();
    }
}

/// `container:<name>` PID and IPC modes name the container by its id, as dockerd records
/// them, so that a rename does not break the sharing.
pub fn resolve_shared(d: &Service, h: &mut HostConfig) {
    for mode in [&mut h.pid_mode, &mut h.ipc_mode] {
        if let Some(c) = container_of(mode).and_then(|n| d.find(n).ok()) {
            *mode = format!("container:{}", c.id);
        }
    }
}

/// The start error of a log driver berth does not carry, in dockerd's words.
pub fn log_driver_error(kind: &str) -> Option<String> {
    UNAVAILABLE_LOG_DRIVERS.contains(&kind).then(|| {
        format!(
            "failed to initialize logging driver: the {kind} logging driver is not available in berth (use json-file, local or none)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert_eq!(display_ref("busybox"), "busybox:latest");
        assert_eq!(display_ref("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(display_ref("a:b"), "a:b");
    }
}
