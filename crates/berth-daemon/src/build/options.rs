//! The query parameters of `POST /build` as the builder's [`Options`], and the platform check.
//! Owns only parsing and validating them; it must not touch the context, the image store or
//! containers.

use crate::error::{Error, Result};
use crate::util::Query;
use std::collections::BTreeMap;

/// Build args Docker passes through without an `ARG` and keeps out of history and the cache.
pub(super) const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The query parameters of `POST /build`.
pub(super) struct Options {
    pub(super) tags: Vec<String>,
    pub(super) build_args: BTreeMap<String, String>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) target: Option<String>,
    pub(super) nocache: bool,
    pub(super) pull: bool,
    pub(super) quiet: bool,
    pub(super) explain: bool,
    pub(super) network: String,
    /// `cachefrom`: images whose history may stand in for steps; given, they are the only
    /// cache sources (as with dockerd).
    pub(super) cache_from: Vec<String>,
    /// `rm=0` (without `forcerm`): a RUN container that succeeded stays, as with dockerd.
    pub(super) keep_containers: bool,
    /// What RUN containers get: `extrahosts`, `securityopt`, `shmsize`, `memory`, `memswap`,
    /// `cpushares`, `cpuperiod`, `cpuquota`, `cpusetcpus`, `cpusetmems`, `ulimits`,
    /// `cgroupparent`.
    pub(super) run_host: berth_api::container::HostConfig,
}

impl Options {
    pub(super) fn parse(raw: Option<&str>) -> Result<Options> {
        let q = Query::parse(raw);
        let map = |k: &str| -> Result<BTreeMap<String, String>> {
            match q.get(k).filter(|s| !s.is_empty()) {
                None => Ok(BTreeMap::new()),
                Some(s) => {
                    let m: BTreeMap<String, Option<String>> = serde_json::from_str(s)
                        .map_err(|e| Error::bad_request(format!("invalid {k}: {e}")))?;
                    Ok(m.into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect())
                }
            }
        };
        let tags = crate::util::query_all(raw, "t");
        for t in &tags {
            berth_image::reference::Reference::parse(t).map_err(|_| {
                Error::bad_request(format!("invalid tag {t:?}: invalid reference format"))
            })?;
        }
        let cache_from: Vec<String> = match q.get("cachefrom").filter(|s| !s.is_empty()) {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::bad_request(format!("invalid cachefrom: {e}")))?,
            None => Vec::new(),
        };
        if q.bool("squash") {
            return Err(Error::bad_request(
                "squash is only supported with experimental mode, which berth does not have",
            ));
        }
        match q.get("isolation").unwrap_or("") {
            "" | "default" => {}
            i => {
                return Err(Error::bad_request(format!(
                    "Unsupported isolation: {i:?} (Linux has only \"default\")"
                )))
            }
        }
        let int = |k: &str| -> Result<i64> { Ok(q.int(k)?.unwrap_or(0)) };
        let ulimits: Vec<berth_api::container::Ulimit> =
            match q.get("ulimits").filter(|s| !s.is_empty()) {
                Some(s) => serde_json::from_str::<Option<Vec<_>>>(s)
                    .map_err(|e| Error::bad_request(format!("invalid ulimits: {e}")))?
                    .unwrap_or_default(),
                None => Vec::new(),
            };
        let extra_hosts: Vec<String> = crate::util::query_all(raw, "extrahosts")
            .iter()
            .flat_map(|h| h.split(',').map(str::trim).map(String::from))
            .filter(|h| !h.is_empty())
            .collect();
        let security_opt = crate::util::query_all(raw, "securityopt");
        let run_host = berth_api::container::HostConfig {
            extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            shm_size: int("shmsize")?,
            memory: int("memory")?,
            memory_swap: int("memswap")?,
            cpu_shares: int("cpushares")?,
            cpu_period: int("cpuperiod")?,
            cpu_quota: int("cpuquota")?,
            cpuset_cpus: q.get("cpusetcpus").unwrap_or("").to_string(),
            cpuset_mems: q.get("cpusetmems").unwrap_or("").to_string(),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            cgroup_parent: q.get("cgroupparent").unwrap_or("").to_string(),
            ..Default::default()
        };
        let network = match q.get("networkmode").unwrap_or("") {
            "" | "default" => "bridge".to_string(),
            n => n.to_string(),
        };
        Ok(Options {
            tags,
            build_args: map("buildargs")?,
            labels: map("labels")?,
            target: q.get("target").filter(|s| !s.is_empty()).map(String::from),
            nocache: q.bool("nocache"),
            pull: q.bool("pull"),
            quiet: q.bool("q"),
            explain: q.bool("explaincache"),
            network,
            cache_from,
            run_host,
            keep_containers: matches!(
                q.get("rm")
                    .map(|v| v.trim().to_ascii_lowercase())
                    .as_deref(),
                Some("0" | "false" | "no" | "none")
            ) && !q.bool("forcerm"),
        })
    }
}

/// Builds run on the host's platform only: other platforms are refused, not ignored.
pub(super) fn check_platform(p: Option<&str>) -> std::result::Result<(), String> {
    match p.filter(|p| !p.is_empty()) {
        Some(p) if !berth_api::platform::is_host(p) => Err(format!(
            "platform {p} is not supported by berth's builder (it builds for linux/{})",
            berth_api::platform::go_arch()
        )),
        _ => Ok(()),
    }
}
