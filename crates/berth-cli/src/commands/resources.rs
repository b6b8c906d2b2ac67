//! Resource and health flags as Docker's CLI parses them (sizes, CPUs, ulimits, durations,
//! restart policies, the health check), shared by run/create, and `berth update`.

use crate::client::{enc, Client};
use clap::Args;
use serde_json::{json, Value};

/// A flag's value Docker's way: `invalid argument "<v>" for "<flag>" flag: <why>`.
pub fn flag_error(flag: &str, value: &str, why: &str) -> String {
    format!("invalid argument \"{value}\" for \"{flag}\" flag: {why}")
}

/// `--memory`-style sizes (`64m`, `1g`): Docker's `RAMInBytes`.
pub fn bytes(flag: &str, v: Option<&str>) -> Result<i64, String> {
    v.map(|s| berth_api::units::ram_in_bytes(s).map_err(|e| flag_error(flag, s, &e)))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// `--memory-swap`: a size, or -1 for unlimited swap.
pub fn swap_bytes(v: Option<&str>) -> Result<i64, String> {
    match v {
        Some("-1") => Ok(-1),
        other => bytes("--memory-swap", other),
    }
}

/// `--cpus 1.5` as nano CPUs, exactly (Docker parses it as a rational number).
pub fn nano_cpus(v: Option<&str>) -> Result<i64, String> {
    let Some(s) = v else { return Ok(0) };
    let bad = |why: &str| flag_error("--cpus", s, why);
    let not_rational = || bad(&format!("failed to parse {s} as a rational number"));
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let numeric = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !numeric(whole) || !numeric(frac) {
        return Err(not_rational());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 9 {
        return Err(bad("value is too precise"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| not_rational())?
    };
    let frac_nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| not_rational())?
    };
    let n = whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or_else(not_rational)?;
    Ok(if neg { -n } else { n })
}

/// A Go duration flag (`--health-interval 1m30s`) in nanoseconds.
pub fn duration(flag: &str, v: Option<&str>) -> Result<i64, String> {
    v.map(|s| berth_api::duration::parse(s).map_err(|e| flag_error(flag, s, &e)))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// `--ulimit nofile=1024:2048`, with Docker's names and checks.
pub fn ulimit(u: &str) -> Result<Value, String> {
    const NAMES: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let bad = |why: String| flag_error("--ulimit", u, &why);
    let (name, vals) = u
        .split_once('=')
        .ok_or_else(|| bad(format!("invalid ulimit argument: {u}")))?;
    if !NAMES.contains(&name) {
        return Err(bad(format!("invalid ulimit type: {name}")));
    }
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| bad(format!("strconv.ParseInt: parsing \"{s}\": invalid syntax")))
    };
    let parts: Vec<&str> = vals.split(':').collect();
    let (soft, hard) = match parts.as_slice() {
        [s] => {
            let s = int(s)?;
            (s, s)
        }
        [s, h] => (int(s)?, int(h)?),
        _ => {
            return Err(bad(format!(
                "too many limit value arguments - {vals}, can only have up to two, `soft[:hard]`"
            )))
        }
    };
    if hard != -1 && soft > hard {
        return Err(bad(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

/// `--restart name[:max-retries]`.
pub fn restart_policy(s: &str) -> Result<Value, String> {
    let (name, count) = match s.split_once(':') {
        Some(("", _)) => {
            return Err("invalid restart policy format: no policy provided before colon".into())
        }
        Some((n, c)) if !c.is_empty() => (
            n,
            c.parse::<i64>().map_err(|_| {
                "invalid restart policy format: maximum retry count must be an integer".to_string()
            })?,
        ),
        Some((n, _)) => (n, 0),
        None => (s, 0),
    };
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

/// The health check flags of run/create.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthArgs {
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", allow_negative_numbers = true)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
}

impl HealthArgs {
    /// `Config.Healthcheck` from the flags, as Docker's CLI builds it; None when no flag is set.
    pub fn config(&self) -> Result<Option<Value>, String> {
        let interval = duration("--health-interval", self.health_interval.as_deref())?;
        let timeout = duration("--health-timeout", self.health_timeout.as_deref())?;
        let start_period = duration("--health-start-period", self.health_start_period.as_deref())?;
        let start_interval = duration(
            "--health-start-interval",
            self.health_start_interval.as_deref(),
        )?;
        let retries = self.health_retries.unwrap_or(0);
        let cmd = self.health_cmd.as_deref().filter(|c| !c.is_empty());
        let any = cmd.is_some()
            || interval != 0
            || timeout != 0
            || start_period != 0
            || start_interval != 0
            || retries != 0;
        if self.no_healthcheck {
            if any {
                return Err("--no-healthcheck conflicts with --health-* options".into());
            }
            return Ok(Some(json!({"Test": ["NONE"]})));
        }
        if !any {
            return Ok(None);
        }
        for (flag, v) in [
            ("--health-interval", interval),
            ("--health-timeout", timeout),
            ("--health-retries", retries),
            ("--health-start-period", start_period),
            ("--health-start-interval", start_interval),
        ] {
            if v < 0 {
                return Err(format!("{flag} cannot be negative"));
            }
        }
        Ok(Some(json!({
            "Test": cmd.map(|c| json!(["CMD-SHELL", c])),
            "Interval": interval,
            "Timeout": timeout,
            "StartPeriod": start_period,
            "StartInterval": start_interval,
            "Retries": retries,
        })))
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

impl UpdateArgs {
    fn any_flag(&self) -> bool {
        self.blkio_weight.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpu_shares.is_some()
            || self.cpus.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
            || self.memory.is_some()
            || self.memory_reservation.is_some()
            || self.memory_swap.is_some()
            || self.pids_limit.is_some()
            || self.restart.is_some()
    }

    /// The `ContainerUpdate` body.
    fn body(&self) -> Result<Value, String> {
        let restart = match self.restart.as_deref() {
            Some(r) => restart_policy(r)?,
            None => json!({"Name": "", "MaximumRetryCount": 0}),
        };
        Ok(json!({
            "BlkioWeight": self.blkio_weight.unwrap_or(0),
            "CpuPeriod": self.cpu_period.unwrap_or(0),
            "CpuQuota": self.cpu_quota.unwrap_or(0),
            "CpuRealtimePeriod": self.cpu_rt_period.unwrap_or(0),
            "CpuRealtimeRuntime": self.cpu_rt_runtime.unwrap_or(0),
            "CpuShares": self.cpu_shares.unwrap_or(0),
            "NanoCpus": nano_cpus(self.cpus.as_deref())?,
            "CpusetCpus": self.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": self.cpuset_mems.clone().unwrap_or_default(),
            "Memory": bytes("-m, --memory", self.memory.as_deref())?,
            "MemoryReservation": bytes("--memory-reservation", self.memory_reservation.as_deref())?,
            "MemorySwap": swap_bytes(self.memory_swap.as_deref())?,
            "PidsLimit": self.pids_limit,
            "RestartPolicy": restart,
        }))
    }
}

/// `berth update`: new limits for one or more containers, printed by name as they succeed.
pub async fn update(c: &Client, a: UpdateArgs) -> i32 {
    if !a.any_flag() {
        eprintln!("you must provide one or more flags when using this command");
        return 1;
    }
    let body = match a.body() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}\nSee 'berth update --help'.");
            return 125;
        }
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for name in &a.containers {
        match c
            .post(
                &format!("/containers/{}/update", enc(name)),
                Some(body.clone()),
            )
            .await
        {
            Ok(v) => {
                println!("{name}");
                warnings.extend(
                    v["Warnings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|w| w.as_str().map(String::from)),
                );
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !warnings.is_empty() {
        eprintln!("{}", warnings.join("\n"));
    }
    if errors.is_empty() {
        0
    } else {
        eprintln!("{}", errors.join("\n"));
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_like_docker() {
        assert_eq!(nano_cpus(Some("0.5")), Ok(500_000_000));
        assert_eq!(nano_cpus(Some("2")), Ok(2_000_000_000));
        assert_eq!(nano_cpus(Some("1.000000001")), Ok(1_000_000_001));
        assert_eq!(
            nano_cpus(Some("abc")).unwrap_err(),
            "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc as a rational number"
        );
        assert!(nano_cpus(Some("0.0000000001"))
            .unwrap_err()
            .ends_with("value is too precise"));
        assert_eq!(
            bytes("-m, --memory", Some("12q")).unwrap_err(),
            "invalid argument \"12q\" for \"-m, --memory\" flag: invalid size: '12q'"
        );
        assert_eq!(bytes("-m, --memory", Some("16m")), Ok(16 << 20));
        assert_eq!(swap_bytes(Some("-1")), Ok(-1));
        assert_eq!(
            ulimit("nofile=1024:2048").unwrap(),
            json!({"Name": "nofile", "Soft": 1024, "Hard": 2048})
        );
        assert!(ulimit("bogus=1")
            .unwrap_err()
            .ends_with("invalid ulimit type: bogus"));
        assert!(ulimit("nofile=10:5")
            .unwrap_err()
            .ends_with("ulimit soft limit must be less than or equal to hard limit: 10 > 5"));
        assert_eq!(
            restart_policy("on-failure:3").unwrap(),
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert!(restart_policy(":3").is_err());
        assert!(restart_policy("always:x").is_err());
        assert_eq!(
            duration("--health-interval", Some("1m30s")),
            Ok(90_000_000_000)
        );
    }

    #[test]
    fn health_flags() {
        let mut h = HealthArgs::default();
        assert_eq!(h.config(), Ok(None));
        h.health_cmd = Some("true".into());
        h.health_interval = Some("200ms".into());
        let v = h.config().unwrap().unwrap();
        assert_eq!(v["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(v["Interval"], json!(200_000_000));
        h.no_healthcheck = true;
        assert_eq!(
            h.config().unwrap_err(),
            "--no-healthcheck conflicts with --health-* options"
        );
        let none = HealthArgs {
            no_healthcheck: true,
            ..Default::default()
        };
        assert_eq!(none.config(), Ok(Some(json!({"Test": ["NONE"]}))));
        let neg = HealthArgs {
            health_retries: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            neg.config().unwrap_err(),
            "--health-retries cannot be negative"
        );
    }
}
