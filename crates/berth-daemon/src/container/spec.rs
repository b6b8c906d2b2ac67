//! The OCI runtime config.json of a container, built the way Docker builds it: namespaces,
//! default mounts and devices, masked paths, capabilities, seccomp, user, resources, the
//! settings' plan and the overlay annotation that makes berth-runtime mount the root inside the
//! container's own mount namespace. A pure function of the record (whose config has the
//! image's merged in), the image's passwd/group, the mount, network and settings plans and the
//! host's facts: it reads no file and no global, so it is unit-tested as it is.

use super::host::{Facts, INIT_BINARY};
use super::process::{capabilities, environment, resolve_user, rlimits, seccomp_for, SecurityOpts};
use super::{Paths, Record};
use crate::error::{Error, Result};
use berth_runtime::{DOCKER_MASKED_PATHS as MASKED_PATHS, DOCKER_READONLY_PATHS as READONLY_PATHS};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn bind_mount(src: &Path, dst: &str, ro: bool) -> Value {
    let mut opts = vec!["rbind", "rprivate"];
    if ro {
        opts.push("ro");
    }
    json!({"destination": dst, "type": "bind", "source": src, "options": opts})
}

/// Docker's default device cgroup rules.
fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (t, maj, min) in [("c", -1, -1), ("b", -1, -1)] {
        rules.push(json!({"allow": true, "type": t, "major": maj, "minor": min, "access": "m"}));
    }
    for (maj, min) in [
        (1, 3),
        (1, 8),
        (1, 7),
        (5, 0),
        (1, 5),
        (1, 9),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        rules
            .push(json!({"allow": true, "type": "c", "major": maj, "minor": min, "access": "rwm"}));
    }
    rules.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    Value::Array(rules)
}

fn resources(rec: &Record) -> Value {
    let h = &rec.host_config;
    let mut r = serde_json::Map::new();
    r.insert("devices".into(), device_rules(h.privileged));
    let mut mem = serde_json::Map::new();
    if h.memory > 0 {
        mem.insert("limit".into(), json!(h.memory));
    }
    if h.memory_reservation > 0 {
        mem.insert("reservation".into(), json!(h.memory_reservation));
    }
    if h.memory_swap != 0 {
        mem.insert("swap".into(), json!(h.memory_swap));
    } else if h.memory > 0 {
        // Docker: unset swap means swap = 2 x memory.
        mem.insert("swap".into(), json!(h.memory * 2));
    }
    if let Some(true) = h.oom_kill_disable {
        mem.insert("disableOOMKiller".into(), json!(true));
    }
    if let Some(s) = h.memory_swappiness.filter(|s| (0..=100).contains(s)) {
        mem.insert("swappiness".into(), json!(s));
    }
    if !mem.is_empty() {
        r.insert("memory".into(), Value::Object(mem));
    }
    let mut cpu = serde_json::Map::new();
    if h.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(h.cpu_shares));
    }
    if h.nano_cpus > 0 {
        cpu.insert("period".into(), json!(100_000));
        cpu.insert("quota".into(), json!(h.nano_cpus * 100_000 / 1_000_000_000));
    } else {
        if h.cpu_period > 0 {
            cpu.insert("period".into(), json!(h.cpu_period));
        }
        if h.cpu_quota > 0 {
            cpu.insert("quota".into(), json!(h.cpu_quota));
        }
    }
    if h.cpu_realtime_period > 0 {
        cpu.insert("realtimePeriod".into(), json!(h.cpu_realtime_period));
    }
    if h.cpu_realtime_runtime != 0 {
        cpu.insert("realtimeRuntime".into(), json!(h.cpu_realtime_runtime));
    }
    if !h.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(h.cpuset_cpus));
    }
    if !h.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(h.cpuset_mems));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
        r.insert("pids".into(), json!({"limit": p}));
    }
    if h.blkio_weight > 0 {
        r.insert("blockIO".into(), json!({"weight": h.blkio_weight}));
    }
    Value::Object(r)
}

/// The limits of a running container after an update, for `Runtime::update`: what it was
/// started with minus the device rules (rewriting them would cut running processes off their
/// devices for a moment), and always a pids limit, so that lifting it is written too.
pub fn live_resources(rec: &Record) -> Result<oci_spec::runtime::LinuxResources> {
    let mut r = resources(rec);
    if let Some(m) = r.as_object_mut() {
        m.remove("devices");
        let pids = rec.host_config.pids_limit.filter(|p| *p > 0).unwrap_or(-1);
        m.insert("pids".into(), json!({"limit": pids}));
    }
    serde_json::from_value(r).map_err(|e| Error::internal(format!("resources: {e}")))
}

/// Everything needed to start the container, written into its directory.
pub struct Built {
    pub spec: Value,
    pub hostname: String,
}

/// What networking changes in a container's spec.
#[derive(Default)]
pub struct NetSpec {
    /// Join this network namespace instead of making one (`container:` mode).
    pub netns: Option<PathBuf>,
    /// And, under `--userns-remap`, the user namespace that owns it.
    pub userns: Option<PathBuf>,
    /// Mount these hostname, hosts and resolv.conf files (the other container's).
    pub files: Option<Paths>,
    pub hostname: Option<String>,
    /// `--link` variables, which the container's own environment overrides.
    pub env: Vec<String>,
}

/// Everything a container's spec is made from.
pub struct Inputs<'a> {
    /// The container, its config merged with the image's at create.
    pub rec: &'a Record,
    pub paths: &'a Paths,
    /// The image's layers (top first), which make the overlay mount options.
    pub layers: &'a [PathBuf],
    /// The daemon's `--cgroup-parent`, used when the container names none.
    pub cgroup_parent: &'a str,
    /// The container's /etc/passwd and /etc/group as its root shows them.
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    pub net: &'a NetSpec,
    /// The user's mounts (volumes, binds, tmpfs) as OCI mounts, by destination.
    pub mounts: Vec<(String, Value)>,
    pub security: &'a SecurityOpts,
    /// The namespace modes, /dev/shm, devices and block IO limits, resolved.
    pub settings: super::settings::Plan,
    pub remap: Option<&'a crate::userns::Remap>,
    pub host: &'a Facts,
}

/// Build config.json from `i`.
pub fn build(i: Inputs<'_>) -> Result<Built> {
    let Inputs {
        rec,
        paths,
        layers,
        cgroup_parent,
        passwd,
        group,
        net,
        mounts: user_mounts,
        security: sec,
        settings,
        remap,
        host,
    } = i;
    let h = &rec.host_config;
    let hostname = match &net.hostname {
        Some(n) => n.clone(),
        None if rec.config.hostname.is_empty() => rec.short_id().to_string(),
        None => rec.config.hostname.clone(),
    };
    let files = net.files.as_ref().unwrap_or(paths);
    let user = resolve_user(&rec.config.user, passwd, group)?;
    let mut argv: Vec<String> = std::iter::once(rec.path.clone())
        .chain(rec.args.iter().cloned())
        .collect();
    let base_env: Vec<String> = net
        .env
        .iter()
        .chain(rec.config.env.iter().flatten())
        .cloned()
        .collect();
    let env = environment(&base_env, &[], &hostname, rec.config.tty, &user.home);
    let cwd = if rec.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        rec.config.working_dir.clone()
    };
    let caps = capabilities(
        h.privileged,
        h.cap_add.as_deref().unwrap_or(&[]),
        h.cap_drop.as_deref().unwrap_or(&[]),
        host.bounding,
    )?;
    let seccomp = match &sec.seccomp {
        Some(profile) => Some(seccomp_for(profile, &caps)?),
        None => None,
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match (&net.netns, h.network_mode.as_str()) {
        (Some(path), _) => namespaces.push(json!({"type": "network", "path": path})),
        (None, "host") => {}
        (None, _) => namespaces.push(json!({"type": "network"})),
    }
    if remap.is_some() {
        // The user namespace is listed with the others; the runtime clones into it, so the
        // network namespace made with it is its own (sysfs can be mounted).
        namespaces.push(match &net.userns {
            Some(path) => json!({"type": "user", "path": path}),
            None => json!({"type": "user"}),
        });
    }
    let system = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if h.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if h.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    // /dev/shm and the network files are ordered with the user's mounts (a volume on /etc
    // must come before /etc/hosts), as Docker does; a user's mount on one of their
    // destinations replaces it.
    let mut ordered: Vec<(String, Value)> = vec![
        (
            "/dev/shm".into(),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={}", if h.shm_size > 0 { h.shm_size } else { 64 << 20 })]}),
        ),
        (
            "/etc/resolv.conf".into(),
            bind_mount(&files.resolv_conf(), "/etc/resolv.conf", false),
        ),
        (
            "/etc/hostname".into(),
            bind_mount(&files.hostname(), "/etc/hostname", false),
        ),
        (
            "/etc/hosts".into(),
            bind_mount(&files.hosts(), "/etc/hosts", false),
        ),
    ];
    ordered.retain(|(dst, _)| !user_mounts.iter().any(|(d, _)| d == dst));
    ordered.extend(user_mounts);
    ordered.sort_by_key(|(dst, _)| berth_volume::depth(dst));
    let mut mounts: Vec<Value> = system
        .into_iter()
        .filter(|m| {
            !ordered
                .iter()
                .any(|(dst, _)| m["destination"].as_str() == Some(dst.as_str()))
        })
        .collect();
    mounts.extend(ordered.into_iter().map(|(_, m)| m));
    if h.init == Some(true) {
        if !host.init {
            return Err(Error::bad_request(format!(
                "--init needs {INIT_BINARY} (apt-get install tini)"
            )));
        }
        mounts.push(json!({"destination": "/sbin/docker-init", "type": "bind", "source": INIT_BINARY, "options": ["bind", "ro"]}));
        argv.splice(0..0, ["/sbin/docker-init".to_string(), "--".to_string()]);
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": match h.cgroup_parent.trim_matches('/') {
            "" => format!("/{cgroup_parent}/{}", rec.id),
            own => format!("/{own}/{}", rec.id),
        },
        "resources": resources(rec),
        "maskedPaths": if h.privileged { json!([]) } else { json!(h.masked_paths.clone().unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect())) },
        "readonlyPaths": if h.privileged { json!([]) } else { json!(h.readonly_paths.clone().unwrap_or_else(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect())) },
    });
    if let Some(s) = seccomp {
        linux["seccomp"] = s;
    }
    if h.privileged {
        linux["devices"] = Value::Array(host.devices.clone());
    }
    if let Some(sysctls) = &h.sysctls {
        linux["sysctl"] = json!(sysctls);
    }
    if let Some(r) = remap {
        linux["uidMappings"] = crate::userns::Remap::oci(&r.ids.uids);
        linux["gidMappings"] = crate::userns::Remap::oci(&r.ids.gids);
    }
    // The container's annotations go to the runtime as dockerd passes them; berth's own key
    // is the runtime's instruction and is not the user's to set.
    let mut annotations = h.annotations.clone().unwrap_or_default();
    annotations.insert(
        "berth.overlay".to_string(),
        super::rootfs::overlay_options(paths, layers),
    );
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": rec.config.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.groups},
            "args": argv,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits(rec, host.nofile)?,
            "noNewPrivileges": sec.no_new_privileges,
            "oomScoreAdj": h.oom_score_adj,
        },
        "root": {"path": paths.rootfs(), "readonly": h.readonly_rootfs},
        "hostname": hostname,
        "domainname": rec.config.domainname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    });
    super::settings::apply(
        settings,
        rec,
        group,
        host.mqueue,
        remap.is_some(),
        &mut spec,
    )?;
    Ok(Built { spec, hostname })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{NetState, StateRecord};
    use berth_api::container::{Config, HostConfig};

    fn record(config: Config, host_config: HostConfig) -> Record {
        Record {
            id: "0123456789abcdef".repeat(4),
            name: "/t".into(),
            created: String::new(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            config,
            host_config,
            path: "sh".into(),
            args: vec!["-c".into(), "true".into()],
            state: StateRecord::default(),
            restart_count: 0,
            net: NetState::default(),
            mounts: Vec::new(),
            creating: false,
            build: false,
            managed: false,
            remapped_root: None,
        }
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\naudio:x:29:www\n";

    /// Build the spec of `rec` with the default settings, no user mounts and `host`.
    fn spec_of(
        rec: &Record,
        net: &NetSpec,
        mounts: Vec<(String, Value)>,
        host: &Facts,
    ) -> Result<Value> {
        let paths = Paths::new(Path::new("/data"), Path::new("/run/x"), &rec.id);
        let security = super::super::process::SecurityOpts {
            seccomp: (!rec.host_config.privileged)
                .then(|| br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#.to_vec()),
            no_new_privileges: false,
        };
        build(Inputs {
            rec,
            paths: &paths,
            layers: &[PathBuf::from("/layers/b"), PathBuf::from("/layers/a")],
            cgroup_parent: "berth",
            passwd: Some(PASSWD),
            group: Some(GROUP),
            net,
            mounts,
            security: &security,
            settings: super::super::settings::Plan::default_for_test(),
            remap: None,
            host,
        })
        .map(|b| b.spec)
    }

    fn host() -> Facts {
        Facts {
            init: false,
            nofile: Some((1024, 4096)),
            devices: vec![json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3})],
            mqueue: true,
            bounding: !0,
        }
    }

    fn destinations(spec: &Value) -> Vec<&str> {
        spec["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["destination"].as_str())
            .collect()
    }

    #[test]
    fn defaults_as_docker() {
        let rec = record(
            Config {
                user: "www".into(),
                env: Some(vec!["A=1".into()]),
                ..Default::default()
            },
            HostConfig::default(),
        );
        let s = spec_of(&rec, &NetSpec::default(), Vec::new(), &host()).unwrap();
        let p = &s["process"];
        assert_eq!(p["user"]["uid"], 33);
        assert_eq!(p["user"]["gid"], 33);
        assert_eq!(p["user"]["additionalGids"], json!([33, 29]));
        assert_eq!(p["args"], json!(["sh", "-c", "true"]));
        assert_eq!(p["cwd"], "/");
        let env: Vec<&str> = p["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            env.contains(&"A=1") && env.contains(&"HOME=/var/www"),
            "{env:?}"
        );
        assert!(env.contains(&"HOSTNAME=0123456789ab"), "{env:?}");
        assert_eq!(s["hostname"], "0123456789ab");
        assert_eq!(
            p["rlimits"][0],
            json!({"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024})
        );
        let caps = p["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), berth_runtime::DOCKER_CAPS.len());
        let l = &s["linux"];
        let kinds: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(kinds, ["pid", "ipc", "uts", "mount", "cgroup", "network"]);
        assert_eq!(l["cgroupsPath"], format!("/berth/{}", rec.id));
        assert!(l["seccomp"].is_object());
        assert!(l.get("devices").is_none());
        assert_eq!(
            l["maskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );
        let dsts = destinations(&s);
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/dev/shm",
            "/etc/hosts",
            "/etc/resolv.conf",
        ] {
            assert!(dsts.contains(&d), "{d} in {dsts:?}");
        }
        let hosts = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["source"], format!("/run/x/c/{}/hosts", rec.id));
        assert_eq!(
            s["annotations"]["berth.overlay"],
            format!("lowerdir=/layers/b:/layers/a,upperdir=/data/containers/{0}/upper,workdir=/data/containers/{0}/work", rec.id)
        );
    }

    #[test]
    fn privileged_host_network_and_init() {
        let rec = record(
            Config::default(),
            HostConfig {
                privileged: true,
                network_mode: "host".into(),
                init: Some(true),
                ..Default::default()
            },
        );
        // Without the init binary on the host, --init is refused.
        let e = spec_of(&rec, &NetSpec::default(), Vec::new(), &host()).unwrap_err();
        assert!(e.0.message.contains("--init needs"), "{}", e.0.message);
        let facts = Facts {
            init: true,
            bounding: 1 << 21,
            ..host()
        };
        let s = spec_of(&rec, &NetSpec::default(), Vec::new(), &facts).unwrap();
        assert_eq!(s["process"]["args"][0], "/sbin/docker-init");
        assert!(destinations(&s).contains(&"/sbin/docker-init"));
        assert_eq!(
            s["process"]["capabilities"]["bounding"],
            json!(["CAP_SYS_ADMIN"])
        );
        let l = &s["linux"];
        assert!(l.get("seccomp").is_none());
        assert_eq!(l["devices"], json!(facts.devices));
        assert_eq!(l["maskedPaths"], json!([]));
        assert!(!l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        let sys = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
    }

    #[test]
    fn joined_network_and_user_mounts() {
        let rec = record(Config::default(), HostConfig::default());
        let other = Paths::new(Path::new("/data"), Path::new("/run/x"), "other");
        let net = NetSpec {
            netns: Some("/proc/42/ns/net".into()),
            files: Some(other),
            hostname: Some("donor".into()),
            env: vec!["DB_PORT=tcp://10.0.0.2:5432".into()],
            ..Default::default()
        };
        let etc = json!({"destination": "/etc", "type": "bind", "source": "/v/etc"});
        let hosts = json!({"destination": "/etc/hosts", "type": "bind", "source": "/mine"});
        let s = spec_of(
            &rec,
            &net,
            vec![("/etc/hosts".into(), hosts), ("/etc".into(), etc)],
            &host(),
        )
        .unwrap();
        let ns = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .unwrap()
            .clone();
        assert_eq!(ns["path"], "/proc/42/ns/net");
        assert_eq!(s["hostname"], "donor");
        let env = s["process"]["env"].as_array().unwrap();
        assert!(env.contains(&json!("DB_PORT=tcp://10.0.0.2:5432")));
        // The user's /etc/hosts replaces the network file; /etc comes before what is below it.
        let m = s["mounts"].as_array().unwrap();
        let pos = |d: &str| m.iter().position(|x| x["destination"] == d).unwrap();
        assert_eq!(m[pos("/etc/hosts")]["source"], "/mine");
        assert!(pos("/etc") < pos("/etc/hosts") && pos("/etc") < pos("/etc/resolv.conf"));
        let resolv = &m[pos("/etc/resolv.conf")];
        assert_eq!(resolv["source"], "/run/x/c/other/resolv.conf");
    }

    #[test]
    fn unknown_user_is_refused() {
        let rec = record(
            Config {
                user: "ghost".into(),
                ..Default::default()
            },
            HostConfig::default(),
        );
        assert!(spec_of(&rec, &NetSpec::default(), Vec::new(), &host()).is_err());
    }
}
