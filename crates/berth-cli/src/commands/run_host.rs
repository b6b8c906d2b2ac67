//! `run`/`create` flags for namespaces, devices, block IO, log driver and runtime settings,
//! parsed as docker 28 parses them and merged into the create body's `HostConfig`.

use super::resources as res;
use clap::Args;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, Args)]
pub struct HostArgs {
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// GPU devices to add to the container ('all' to pass all GPUs)
    #[arg(long)]
    pub gpus: Option<String>,
    /// Limit CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<i64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU count (Windows only)
    #[arg(long = "cpu-count")]
    pub cpu_count: Option<i64>,
    /// CPU percent (Windows only)
    #[arg(long = "cpu-percent")]
    pub cpu_percent: Option<i64>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Block IO weight (relative device weight)
    #[arg(long = "blkio-weight-device")]
    pub blkio_weight_device: Vec<String>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// Maximum IO bandwidth limit for the system drive (Windows only)
    #[arg(long = "io-maxbandwidth")]
    pub io_maxbandwidth: Option<String>,
    /// Maximum IOps limit for the system drive (Windows only)
    #[arg(long = "io-maxiops")]
    pub io_maxiops: Option<u64>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_negative_numbers = true)]
    pub oom_score_adj: Option<i64>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Kernel memory limit
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    /// Storage driver options for the container
    #[arg(long = "storage-opt")]
    pub storage_opt: Vec<String>,
    /// Container isolation technology
    #[arg(long)]
    pub isolation: Option<String>,
    /// Add an annotation to the container (passed through to the OCI runtime)
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver")]
    pub volume_driver: Option<String>,
}

/// `--device /dev/x[:/dev/y][:rwm]`.
pub(crate) fn device(spec: &str) -> Result<Value, String> {
    let bad = || {
        format!("invalid argument \"{spec}\" for \"--device\" flag: bad format for path: {spec}")
    };
    let perms_ok = |p: &str| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, p] if perms_ok(p) => (*src, *src, *p),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, p] if perms_ok(p) => (*src, *dst, *p),
        [_, _, p] => {
            return Err(format!(
                "invalid argument \"{spec}\" for \"--device\" flag: bad mode specified: {p}"
            ))
        }
        _ => return Err(bad()),
    };
    if src.is_empty() || dst.is_empty() || !dst.starts_with('/') {
        return Err(bad());
    }
    Ok(json!({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}))
}

/// `path:value` of the blkio device flags.
fn device_value<'a>(flag: &str, spec: &'a str) -> Result<(&'a str, &'a str), String> {
    let (path, v) = spec
        .rsplit_once(':')
        .ok_or_else(|| res::flag_error(flag, spec, &format!("bad format: {spec}")))?;
    if !path.starts_with("/dev/") {
        return Err(res::flag_error(
            flag,
            spec,
            &format!("bad format for device path: {spec}"),
        ));
    }
    Ok((path, v))
}

fn rates(flag: &str, list: &[String], bytes: bool) -> Result<Value, String> {
    list.iter()
        .map(|s| {
            let (path, v) = device_value(flag, s)?;
            let rate = if bytes {
                berth_api::units::ram_in_bytes(v)
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        res::flag_error(flag, s, &format!("invalid rate for device: {s}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb"))
                    })?
            } else {
                v.parse::<u64>().map(|n| n as i64).map_err(|_| {
                    res::flag_error(flag, s, &format!("invalid rate for device: {s}. The correct format is <device-path>:<number>. Number must be a positive integer"))
                })?
            };
            Ok(json!({"Path": path, "Rate": rate}))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Value::Array)
}

fn key_values(list: &[String]) -> Map<String, Value> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (l.clone(), json!("")),
        })
        .collect()
}

/// `--gpus all|N|device=..,capabilities=..` as a device request (the daemon decides).
fn gpus(spec: &str) -> Result<Value, String> {
    let mut req = json!({"Driver": "", "Count": 0, "DeviceIDs": null, "Capabilities": [["gpu"]], "Options": {}});
    for part in spec.split(',') {
        match part.split_once('=') {
            None if part == "all" => req["Count"] = json!(-1),
            None => {
                let n: i64 = part.parse().map_err(|_| {
                    res::flag_error(
                        "--gpus",
                        spec,
                        &format!("unexpected key '{part}' in '{spec}'"),
                    )
                })?;
                req["Count"] = json!(n);
            }
            Some(("count", "all")) => req["Count"] = json!(-1),
            Some(("count", n)) => {
                req["Count"] = json!(n.parse::<i64>().map_err(|_| res::flag_error(
                    "--gpus",
                    spec,
                    "invalid count"
                ))?)
            }
            Some(("device", ids)) => req["DeviceIDs"] = json!(ids.split(',').collect::<Vec<_>>()),
            Some(("driver", d)) => req["Driver"] = json!(d),
            Some(("capabilities", c)) => {
                req["Capabilities"] = json!([c.split(',').collect::<Vec<_>>()])
            }
            Some((k, _)) => {
                return Err(res::flag_error(
                    "--gpus",
                    spec,
                    &format!("unexpected key '{k}' in '{spec}'"),
                ))
            }
        }
    }
    Ok(req)
}

impl HostArgs {
    /// Merge the flags into `HostConfig` of a create body.
    pub fn apply(&self, h: &mut Value) -> Result<(), String> {
        let mut set = |k: &str, v: Value| h[k] = v;
        for (key, v) in [
            ("PidMode", &self.pid),
            ("UTSMode", &self.uts),
            ("IpcMode", &self.ipc),
            ("CgroupnsMode", &self.cgroupns),
            ("Runtime", &self.runtime),
            ("CgroupParent", &self.cgroup_parent),
            ("Isolation", &self.isolation),
            ("VolumeDriver", &self.volume_driver),
        ] {
            if let Some(v) = v {
                set(key, json!(v));
            }
        }
        set("GroupAdd", json!(self.group_add));
        set("DeviceCgroupRules", json!(self.device_cgroup_rule));
        set(
            "Devices",
            Value::Array(
                self.device
                    .iter()
                    .map(|d| device(d))
                    .collect::<Result<_, _>>()?,
            ),
        );
        if let Some(g) = &self.gpus {
            set("DeviceRequests", json!([gpus(g)?]));
        }
        for (key, v) in [
            ("CpuRealtimePeriod", self.cpu_rt_period),
            ("CpuRealtimeRuntime", self.cpu_rt_runtime),
            ("CpuCount", self.cpu_count),
            ("CpuPercent", self.cpu_percent),
            ("OomScoreAdj", self.oom_score_adj),
        ] {
            if let Some(v) = v {
                set(key, json!(v));
            }
        }
        if let Some(n) = self.io_maxiops {
            set("IOMaximumIOps", json!(n));
        }
        if self.io_maxbandwidth.is_some() {
            set(
                "IOMaximumBandwidth",
                json!(res::bytes(
                    "--io-maxbandwidth",
                    self.io_maxbandwidth.as_deref()
                )?),
            );
        }
        if self.kernel_memory.is_some() {
            set(
                "KernelMemory",
                json!(res::bytes(
                    "--kernel-memory",
                    self.kernel_memory.as_deref()
                )?),
            );
        }
        let weights = self
            .blkio_weight_device
            .iter()
            .map(|s| {
                let (path, w) = device_value("--blkio-weight-device", s)?;
                let w: u16 = w
                    .parse()
                    .ok()
                    .filter(|w| (10..=1000).contains(w) || *w == 0)
                    .ok_or_else(|| {
                        res::flag_error(
                            "--blkio-weight-device",
                            s,
                            &format!("invalid weight for device: {s}"),
                        )
                    })?;
                Ok(json!({"Path": path, "Weight": w}))
            })
            .collect::<Result<Vec<_>, String>>()?;
        set("BlkioWeightDevice", Value::Array(weights));
        set(
            "BlkioDeviceReadBps",
            rates("--device-read-bps", &self.device_read_bps, true)?,
        );
        set(
            "BlkioDeviceWriteBps",
            rates("--device-write-bps", &self.device_write_bps, true)?,
        );
        set(
            "BlkioDeviceReadIOps",
            rates("--device-read-iops", &self.device_read_iops, false)?,
        );
        set(
            "BlkioDeviceWriteIOps",
            rates("--device-write-iops", &self.device_write_iops, false)?,
        );
        if !self.storage_opt.is_empty() {
            set("StorageOpt", Value::Object(key_values(&self.storage_opt)));
        }
        if !self.annotation.is_empty() {
            set("Annotations", Value::Object(key_values(&self.annotation)));
        }
        if let Some(driver) = &self.log_driver {
            h["LogConfig"]["Type"] = json!(driver);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_docker() {
        assert_eq!(
            device("/dev/fuse").unwrap(),
            json!({"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"})
        );
        assert_eq!(device("/dev/fuse:r").unwrap()["CgroupPermissions"], "r");
        assert_eq!(
            device("/dev/a:/dev/b").unwrap()["PathInContainer"],
            "/dev/b"
        );
        assert_eq!(
            device("/dev/a:/dev/b:mw").unwrap()["CgroupPermissions"],
            "mw"
        );
        assert!(device("/dev/a:/dev/b:x").is_err());
        assert!(device("/dev/a:rel").is_err());
    }

    #[test]
    fn blkio_and_gpus() {
        let r = rates("--device-read-bps", &["/dev/vda:1mb".into()], true).unwrap();
        assert_eq!(r, json!([{"Path": "/dev/vda", "Rate": 1 << 20}]));
        assert!(rates("--device-read-iops", &["/dev/vda:x".into()], false).is_err());
        assert!(rates("--device-read-iops", &["vda:1".into()], false).is_err());
        assert_eq!(gpus("all").unwrap()["Count"], -1);
        assert_eq!(gpus("2").unwrap()["Count"], 2);
        assert!(gpus("bogus=1").is_err());
    }
}
