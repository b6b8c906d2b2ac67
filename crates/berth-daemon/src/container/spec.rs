//! Turns a container record and its image into an OCI runtime config.json the way Docker does:
//! namespaces, default mounts and devices, masked paths, capabilities, seccomp, user and
//! resources, plus the overlay annotation that makes berth-runtime mount the root inside the
//! container's own mount namespace.

use super::{Paths, Record};
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

use berth_runtime::{
    DOCKER_CAPS as DEFAULT_CAPS, DOCKER_MASKED_PATHS as MASKED_PATHS,
    DOCKER_READONLY_PATHS as READONLY_PATHS,
};

/// The init `--init` runs as PID 1, bind-mounted at /sbin/docker-init as Docker does.
const INIT_BINARY: &str = "/usr/bin/tini-static";

static SECCOMP_DEFAULT: &[u8] = include_bytes!("../../data/seccomp-default.json");

/// Every capability the kernel knows, for --privileged and --cap-add ALL.
fn all_caps() -> Vec<String> {
    const ALL: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    ALL.iter().map(|c| format!("CAP_{c}")).collect()
}

/// Every capability in the daemon's own bounding set: what --privileged can grant. A host may
/// withhold some (this VM lacks CAP_SYS_RESOURCE), and capset fails on a cap not held.
fn held_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    all_caps()
        .into_iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| c)
        .collect()
}

/// Normalize a user-given capability name ("net_admin", "CAP_NET_ADMIN", "ALL").
fn cap_name(s: &str) -> Result<String> {
    let up = s.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if all_caps().contains(&full) {
        Ok(full)
    } else {
        Err(Error::bad_request(format!("invalid capability: {s}")))
    }
}

/// The effective capability list for the container.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    if privileged {
        return Ok(held_caps());
    }
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        held_caps()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    caps.retain(|c| !drop.contains(c));
    for c in add {
        if c != "ALL" && !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// A resolved `-u`: uid, gid, supplementary groups and home directory.
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// Read a file of the container's root as the overlay would show it: upper first, then lowers.
pub fn read_root_file(upper: &Path, lowers: &[PathBuf], rel: &str) -> Option<String> {
    std::iter::once(upper)
        .chain(lowers.iter().map(PathBuf::as_path))
        .find_map(|d| super::rootfs::read_in_root(d, rel))
}

/// Resolve `user` ("", "name", "uid", "name:group", "uid:gid") against the image's passwd/group.
pub fn resolve_user(user: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let found = entries
        .iter()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, mut gid, home, name) = match (found, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            f[5].to_string(),
            f[0].to_string(),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), String::new()),
        (None, Err(_)) => {
            return Err(Error::bad_request(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let groups_file: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups_file
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::bad_request(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let mut groups = vec![gid];
    if !name.is_empty() {
        for f in &groups_file {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home,
    })
}

/// Docker's default variables under `base` (the container's env), then `env` on top.
pub fn environment(
    base_env: &[String],
    env: &[String],
    hostname: &str,
    tty: bool,
    home: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let set = |kv: &str, out: &mut Vec<String>| {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        out.retain(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) != key);
        out.push(kv.to_string());
    };
    let mut base = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        base.push("TERM=xterm".into());
    }
    for kv in base.iter().chain(base_env).chain(env) {
        if kv.contains('=') {
            set(kv, &mut out);
        }
    }
    if !out.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={home}"));
    }
    out
}

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

/// The host's device nodes, which `--privileged` hands to the container as Docker does
/// (the pty and shm/mqueue trees and the consoles excepted: the container has its own).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::from("/dev"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if depth == 0
                && matches!(
                    name.as_str(),
                    "pts" | "shm" | "mqueue" | "console" | "ptmx" | "tty"
                )
            {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = m.file_type();
            if ft.is_dir() && depth < 3 {
                stack.push((path, depth + 1));
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            let rdev = m.rdev();
            out.push(json!({
                "path": path, "type": kind,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid(),
            }));
        }
    }
    out
}

/// The OCI form of a Docker seccomp profile for a capability set. Converting Docker's default
/// profile costs about a millisecond, so the results for it are kept (one per capability set).
fn seccomp_for(profile: &[u8], caps: &[String]) -> Result<Value> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DEFAULT: OnceLock<Mutex<HashMap<Vec<String>, Value>>> = OnceLock::new();
    let is_default = profile == SECCOMP_DEFAULT;
    let cache = DEFAULT.get_or_init(|| Mutex::new(HashMap::new()));
    if is_default {
        if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(caps) {
            return Ok(v.clone());
        }
    }
    let oci = berth_runtime::docker_seccomp_to_oci(profile, caps)
        .map_err(|e| Error::bad_request(format!("seccomp profile: {e}")))?;
    let v = serde_json::to_value(oci).map_err(|e| Error::internal(e.to_string()))?;
    if is_default {
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(caps.to_vec(), v.clone());
    }
    Ok(v)
}

/// Options from --security-opt.
struct SecurityOpts {
    seccomp: Option<Vec<u8>>,
    no_new_privileges: bool,
}

fn security_opts(rec: &Record) -> Result<SecurityOpts> {
    let mut o = SecurityOpts {
        seccomp: if rec.host_config.privileged {
            None
        } else {
            Some(SECCOMP_DEFAULT.to_vec())
        },
        no_new_privileges: false,
    };
    for opt in rec.host_config.security_opt.iter().flatten() {
        let (k, v) = opt
            .split_once(['=', ':'])
            .map(|(k, v)| (k, Some(v)))
            .unwrap_or((opt.as_str(), None));
        match (k, v) {
            ("seccomp", Some("unconfined")) => o.seccomp = None,
            ("seccomp", Some(profile)) => {
                if profile.trim_start().starts_with('{') {
                    o.seccomp = Some(profile.as_bytes().to_vec());
                } else {
                    o.seccomp = Some(std::fs::read(profile).map_err(|e| {
                        Error::bad_request(format!(
                            "opening seccomp profile ({profile}) failed: {e}"
                        ))
                    })?);
                }
            }
            ("no-new-privileges", None | Some("true")) => o.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => o.no_new_privileges = false,
            ("apparmor" | "label", _) => {}
            _ => {
                return Err(Error::bad_request(format!(
                    "invalid --security-opt: {opt:?}"
                )))
            }
        }
    }
    Ok(o)
}

/// `--ulimit`s; without them the container inherits the daemon's limits, as with Docker —
/// the descriptor limit as the daemon was given it, before it raised its own.
fn rlimits(rec: &Record) -> Result<Vec<Value>> {
    let mut out: Vec<Value> = Vec::new();
    if let Some((soft, hard)) = crate::rlimit::inherited_nofile() {
        out.push(json!({"type": "RLIMIT_NOFILE", "hard": hard, "soft": soft}));
    }
    for u in rec.host_config.ulimits.iter().flatten() {
        let name = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        out.retain(|r| r["type"] != name.as_str());
        out.push(json!({"type": name, "hard": u.hard, "soft": u.soft}));
    }
    Ok(out)
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

/// Build config.json for `rec` (whose config already has the image's merged in at create),
/// with its lower dirs (top first), which make the overlay mount options.
pub fn build(
    rec: &Record,
    paths: &Paths,
    layers: &[PathBuf],
    cgroup_parent: &str,
    net: &NetSpec,
    user_mounts: Vec<(String, Value)>,
    remap: Option<&crate::userns::Remap>,
) -> Result<Built> {
    let h = &rec.host_config;
    let hostname = match &net.hostname {
        Some(n) => n.clone(),
        None if rec.config.hostname.is_empty() => rec.short_id().to_string(),
        None => rec.config.hostname.clone(),
    };
    let files = net.files.as_ref().unwrap_or(paths);
    let upper = paths.upper();
    let passwd = read_root_file(&upper, layers, "etc/passwd");
    let group = read_root_file(&upper, layers, "etc/group");
    let user = resolve_user(&rec.config.user, passwd.as_deref(), group.as_deref())?;
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
    )?;
    let sec = security_opts(rec)?;
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
    ordered.sort_by_key(|(dst, _)| crate::volume::mounts::depth(dst));
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
        if !Path::new(INIT_BINARY).exists() {
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
        linux["devices"] = Value::Array(host_devices());
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
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": rec.config.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.groups},
            "args": argv,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits(rec)?,
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
    Ok(Built { spec, hostname })
}

/// The OCI process for an exec in a running container.
pub fn exec_process(
    rec: &Record,
    ec: &berth_api::exec::ExecConfig,
    root: &Path,
) -> Result<oci_spec::runtime::Process> {
    let h = &rec.host_config;
    let user_spec = if ec.user.is_empty() {
        rec.config.user.clone()
    } else {
        ec.user.clone()
    };
    let passwd = super::rootfs::read_in_root(root, "/etc/passwd");
    let group = super::rootfs::read_in_root(root, "/etc/group");
    let mut user = resolve_user(&user_spec, passwd.as_deref(), group.as_deref())?;
    let extra = h.group_add.as_deref().unwrap_or(&[]);
    for g in super::settings::extra_gids(extra, group.as_deref())? {
        if !user.groups.contains(&g) {
            user.groups.push(g);
        }
    }
    let base_env = rec.config.env.clone().unwrap_or_default();
    let env = environment(
        &base_env,
        ec.env.as_deref().unwrap_or(&[]),
        &rec.config.hostname,
        ec.tty,
        &user.home,
    );
    let caps = capabilities(
        h.privileged || ec.privileged,
        h.cap_add.as_deref().unwrap_or(&[]),
        h.cap_drop.as_deref().unwrap_or(&[]),
    )?;
    let cwd = if !ec.working_dir.is_empty() {
        ec.working_dir.clone()
    } else if !rec.config.working_dir.is_empty() {
        rec.config.working_dir.clone()
    } else {
        "/".to_string()
    };
    let args = ec.cmd.clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::bad_request("No exec command specified"));
    }
    let p = json!({
        "terminal": ec.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.groups},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": security_opts(rec)?.no_new_privileges,
        "rlimits": rlimits(rec)?,
        "oomScoreAdj": h.oom_score_adj,
    });
    serde_json::from_value(p).map_err(|e| Error::internal(format!("exec process: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_add_drop() {
        let c = capabilities(false, &["net_admin".into()], &["CAP_KILL".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(capabilities(false, &[], &["ALL".into()]).unwrap().len(), 0);
        assert!(capabilities(false, &["bogus".into()], &[]).is_err());
        assert!(capabilities(true, &[], &[])
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_string()));
        // The list is in kernel bit order, which held_caps relies on.
        assert_eq!(all_caps()[21], "CAP_SYS_ADMIN");
        assert_eq!(all_caps()[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn users() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n";
        let group = "root:x:0:\nnogroup:x:65534:\nwheel:x:10:nobody\n";
        let u = resolve_user("nobody", Some(passwd), Some(group)).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (65534, 65534, "/home"));
        assert_eq!(u.groups, vec![65534, 10]);
        let u = resolve_user("1000:wheel", Some(passwd), Some(group)).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert!(resolve_user("ghost", Some(passwd), Some(group)).is_err());
        let u = resolve_user("", Some(passwd), None).unwrap();
        assert_eq!((u.uid, u.home.as_str()), (0, "/root"));
    }

    #[test]
    fn env_merge() {
        let e = environment(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
            "h",
            false,
            "/root",
        );
        assert_eq!(
            e,
            vec!["HOSTNAME=h", "PATH=/bin", "A=2", "B=3", "HOME=/root"]
        );
    }
}
