//! `/_ping`, `/version`, `/info` and the 404 for unknown routes. Read only, apart from `POST /auth`
//! asking the registry client to log in: they change no container, image, network or volume.

use super::St;
use crate::container::status;
use crate::util::json;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use berth_api::system::{Component, Platform, Version};
use berth_api::version::{API_MAX, API_MIN};

pub async fn ping(axum::extract::State(d): St, method: Method) -> Response {
    let mut r = if method == Method::HEAD {
        "".into_response()
    } else {
        "OK".into_response()
    };
    let h = r.headers_mut();
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&super::swarm::ping_header(&d)) {
        h.insert("Swarm", v);
    }
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

use berth_api::platform::go_arch;

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn version() -> Response {
    let v = env!("CARGO_PKG_VERSION").to_string();
    json(
        200,
        &Version {
            platform: Platform {
                name: "berth".into(),
            },
            components: vec![Component {
                name: "Engine".into(),
                version: v.clone(),
                details: serde_json::json!({
                    "ApiVersion": API_MAX, "MinAPIVersion": API_MIN, "Os": "linux",
                    "Arch": go_arch(), "KernelVersion": kernel(),
                }),
            }],
            version: v,
            api_version: API_MAX.into(),
            min_api_version: API_MIN.into(),
            git_commit: option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown").into(),
            go_version: "n/a (Rust)".into(),
            os: "linux".into(),
            arch: go_arch().into(),
            kernel_version: kernel(),
            build_time: String::new(),
        },
    )
}

/// Which cgroup version the host runs, as /info reports it.
fn cgroup_version() -> &'static str {
    let unified_only = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
        })
        .unwrap_or(false);
    if unified_only {
        "2"
    } else {
        "1"
    }
}

pub async fn info(axum::extract::State(d): St) -> Response {
    let all = d.all();
    let count = |s: &str| all.iter().filter(|c| c.rec().state.status == s).count();
    let images = d.images.list().map(|l| l.len()).unwrap_or(0);
    let mem = crate::util::mem_total();
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut warnings: Vec<String> = crate::quarantine::warning(&d.cfg.data_root)
        .into_iter()
        .collect();
    let unsaved = all.iter().filter(|c| c.unsaved()).count();
    if unsaved > 0 {
        warnings.push(format!(
            "WARNING: {unsaved} container record(s) could not be written (is {} full?); retrying",
            d.cfg.data_root.display()
        ));
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json(
        200,
        &serde_json::json!({
            "ID": "berth",
            "Containers": all.len(),
            "ContainersRunning": count(status::RUNNING),
            "ContainersPaused": count(status::PAUSED),
            "ContainersStopped": all.len() - count(status::RUNNING) - count(status::PAUSED),
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["json-file"]},
            "MemoryLimit": true,
            "SwapLimit": true,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "KernelMemoryTCP": cgroup_version() == "1",
            "OomKillDisable": cgroup_version() == "1",
            "BridgeNfIptables": false,
            "BridgeNfIp6tables": false,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "NEventsListener": d.events.listeners(),
            "SystemTime": berth_api::timefmt::now(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(),
            "KernelVersion": kernel(),
            "OperatingSystem": os_release("PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
            "OSVersion": os_release("VERSION_ID").unwrap_or_default(),
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": cpus,
            "MemTotal": mem,
            "DockerRootDir": d.cfg.data_root,
            "Name": hostname,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": registry_config(&d.cfg),
            "GenericResources": null,
            // berth's registry client uses no proxy.
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": {"berth": {"path": "berth runtime"}},
            "DefaultRuntime": "berth",
            "Swarm": super::swarm::info(&d),
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            "FirewallBackend": {"Driver": "nftables", "Info": []},
            "CDISpecDirs": [],
            "DiscoveredDevices": [],
            "SecurityOptions": security_options(&d),
            "Warnings": warnings,
        }),
    )
}

/// A value of `/etc/os-release` (unquoted).
fn os_release(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// `info`'s RegistryConfig: insecure registries (CIDRs, and names as index entries with
/// `Secure: false`; loopback is always insecure) and Docker Hub's mirrors.
fn registry_config(cfg: &crate::config::DaemonConfig) -> serde_json::Value {
    let is_cidr = |s: &str| {
        s.split_once('/')
            .is_some_and(|(a, p)| a.parse::<std::net::IpAddr>().is_ok() && p.parse::<u8>().is_ok())
    };
    let mut cidrs = vec!["::1/128".to_string(), "127.0.0.0/8".to_string()];
    let hub_mirrors = cfg.mirrors.get("docker.io").cloned().unwrap_or_default();
    let mut index = serde_json::Map::new();
    index.insert(
        "docker.io".into(),
        serde_json::json!({"Name": "docker.io", "Mirrors": hub_mirrors, "Secure": true, "Official": true}),
    );
    for r in &cfg.insecure_registries {
        if is_cidr(r) {
            if !cidrs.contains(r) {
                cidrs.push(r.clone());
            }
        } else {
            let mirrors = cfg.mirrors.get(r).cloned().unwrap_or_default();
            index.insert(
                r.clone(),
                serde_json::json!({"Name": r, "Mirrors": mirrors, "Secure": false, "Official": false}),
            );
        }
    }
    serde_json::json!({
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": index,
        "Mirrors": hub_mirrors,
    })
}

/// `info`'s SecurityOptions, as dockerd words them.
fn security_options(d: &crate::state::Daemon) -> Vec<&'static str> {
    let mut out = vec!["name=seccomp,profile=builtin"];
    if d.remap.is_some() {
        out.push("name=userns");
    }
    out.push("name=cgroupns");
    out
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    json(
        404,
        &serde_json::json!({"message": format!("page not found: {}", uri.path())}),
    )
}

/// `POST /auth`: check credentials against a registry (`docker login`).
pub async fn auth(
    axum::extract::State(d): super::St,
    crate::body::JsonBytes(body): crate::body::JsonBytes,
) -> crate::error::Result<axum::response::Response> {
    // dockerd refuses an empty body here (its `ReadJSON` sees EOF).
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(crate::error::Error::bad_request(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    let cfg: berth_distribution::AuthConfig = crate::util::json_body(&body)?;
    let registry = cfg.registry();
    let creds = cfg
        .credentials()
        .map_err(|e| crate::error::Error::bad_request(e.to_string()))?;
    match d.registry.login(&registry, &creds).await {
        Ok(()) => Ok(crate::util::json(
            200,
            &serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        )),
        Err(e) if e.is_unauthorized() || e.is_denied() => Err(crate::error::Error(
            berth_api::ApiError::new(401, format!("login to {registry} failed: {e}")),
        )),
        Err(e) => Err(crate::error::Error::internal(format!(
            "login to {registry}: {e}"
        ))),
    }
}

/// `GET /system/df`: what images, containers, volumes and the build cache take on disk, with
/// `LayersSize` the unpacked size of every layer, a layer shared by images counted once (as
/// Docker counts it; the compressed blobs kept beside the layers are not part of it).
/// `LogsSize` (container logs) is berth's own field.
pub async fn df(
    axum::extract::State(d): St,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> crate::error::Result<Response> {
    let types = crate::util::query_all(q.as_deref(), "type");
    for t in &types {
        if !matches!(t.as_str(), "container" | "image" | "volume" | "build-cache") {
            return Err(crate::error::Error::bad_request(format!(
                "invalid type: {t}"
            )));
        }
    }
    let want = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let dd = d.clone();
    let (usage, images) =
        tokio::task::spawn_blocking(move || (dd.images.disk_usage(), dd.images.list()))
            .await
            .map_err(|e| crate::error::Error::internal(e.to_string()))?;
    let images = images?;
    let records: Vec<_> = d.all().iter().map(|c| c.snapshot()).collect();
    let mut body = serde_json::Map::new();
    if want("image") {
        let shared: std::collections::HashMap<&str, u64> = usage
            .images
            .iter()
            .map(|u| (u.id.as_str(), u.shared_size))
            .collect();
        let list: Vec<berth_api::image::Summary> = images
            .iter()
            .map(|img| {
                let mut s = super::images::summary(img, &records);
                s.shared_size = shared.get(img.id.as_str()).copied().unwrap_or(0) as i64;
                s
            })
            .collect();
        body.insert("LayersSize".into(), usage.layers_size.into());
        body.insert("Images".into(), serde_json::json!(list));
    }
    if want("container") {
        let list: Vec<_> = records
            .iter()
            .map(|r| super::container_list::summary(&d, r, true))
            .collect();
        body.insert("Containers".into(), serde_json::json!(list));
        let logs: u64 = d
            .all()
            .iter()
            .map(|c| logs_size(&c.paths.log_of(&c.rec().host_config.log_config.kind)))
            .sum();
        body.insert("LogsSize".into(), logs.into());
    }
    if want("volume") {
        let dd = d.clone();
        let list = tokio::task::spawn_blocking(move || {
            dd.volumes
                .ref_counts()
                .into_iter()
                .map(|(m, refs)| {
                    let mut v = serde_json::json!(dd.volumes.view(&m));
                    v["UsageData"] =
                        serde_json::json!({"Size": dd.volumes.size(&m.name), "RefCount": refs});
                    v
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| crate::error::Error::internal(e.to_string()))?;
        body.insert("Volumes".into(), serde_json::Value::Array(list));
    }
    if want("build-cache") {
        let dd = d.clone();
        let cache = tokio::task::spawn_blocking(move || crate::build::cache::df(&dd))
            .await
            .unwrap_or_default();
        body.insert("BuildCache".into(), serde_json::Value::Array(cache));
    }
    Ok(json(200, &serde_json::Value::Object(body)))
}

/// Bytes of a json-file log and its rotated files (`<log>.1` ...).
fn logs_size(log: &std::path::Path) -> u64 {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return 0;
    };
    let name = name.to_string_lossy();
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == name
                || n.strip_prefix(name.as_ref())
                    .is_some_and(|r| r.starts_with('.'))
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
