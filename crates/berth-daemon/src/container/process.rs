//! A container's processes as Docker sets them up: capabilities, the user from `-u` against
//! the image's passwd and group, the default environment, `--security-opt` (seccomp,
//! no-new-privileges), `--ulimit`s, and the process of an exec. Pure functions of what they
//! are given, except reading a seccomp profile named by path.

use super::Record;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

use berth_runtime::DOCKER_CAPS as DEFAULT_CAPS;

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

/// The capabilities of bounding set `bounding` (bit n = capability n): what --privileged can
/// grant. A host may withhold some (this VM lacks CAP_SYS_RESOURCE), and capset fails on a
/// cap not held.
fn held_caps(bounding: u64) -> Vec<String> {
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

/// The effective capability list for the container, `bounding` being the daemon's own
/// bounding set.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
    bounding: u64,
) -> Result<Vec<String>> {
    if privileged {
        return Ok(held_caps(bounding));
    }
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        held_caps(bounding)
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

/// The OCI form of a Docker seccomp profile for a capability set. Converting Docker's default
/// profile costs about a millisecond, so the results for it are kept (one per capability set).
pub fn seccomp_for(profile: &[u8], caps: &[String]) -> Result<Value> {
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
pub struct SecurityOpts {
    /// The Docker seccomp profile to apply (JSON), none when unconfined.
    pub seccomp: Option<Vec<u8>>,
    pub no_new_privileges: bool,
}

/// `--security-opt` of `rec` (a seccomp profile named by path is read here).
pub fn security_opts(rec: &Record) -> Result<SecurityOpts> {
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
/// `nofile`, the descriptor limit as the daemon was given it, before it raised its own.
pub fn rlimits(rec: &Record, nofile: Option<(u64, u64)>) -> Result<Vec<Value>> {
    let mut out: Vec<Value> = Vec::new();
    if let Some((soft, hard)) = nofile {
        out.push(json!({"type": "RLIMIT_NOFILE", "hard": hard, "soft": soft}));
    }
    for u in rec.host_config.ulimits.iter().flatten() {
        let name = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        out.retain(|r| r["type"] != name.as_str());
        out.push(json!({"type": name, "hard": u.hard, "soft": u.soft}));
    }
    Ok(out)
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
        super::host::bounding_set(),
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
        "rlimits": rlimits(rec, crate::rlimit::inherited_nofile())?,
        "oomScoreAdj": h.oom_score_adj,
    });
    serde_json::from_value(p).map_err(|e| Error::internal(format!("exec process: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_add_drop() {
        let c = capabilities(false, &["net_admin".into()], &["CAP_KILL".into()], !0).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            capabilities(false, &[], &["ALL".into()], !0).unwrap().len(),
            0
        );
        assert!(capabilities(false, &["bogus".into()], &[], !0).is_err());
        assert!(capabilities(true, &[], &[], !0)
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_string()));
        // --privileged grants only what the daemon holds.
        let held = capabilities(true, &[], &[], 1 << 21).unwrap();
        assert_eq!(held, vec!["CAP_SYS_ADMIN".to_string()]);
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
