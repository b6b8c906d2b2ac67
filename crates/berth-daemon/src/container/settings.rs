//! Container settings beyond resource limits and networking at start: the namespace modes
//! (`--pid`, `--ipc`, `--uts`, `--cgroupns`), `--group-add`, `--device` and
//! `--device-cgroup-rule` and block IO device limits, resolved against the host and the other
//! containers into a [`Plan`] and carried into the OCI spec; and `rm --link`. Their checks at
//! create are in `validate`. It takes no address, port or volume and starts nothing; the one record
//! it changes is the parent's, in `rm --link`.

use super::service::Service;
use super::Record;
use crate::error::{Error, Result};
use berth_api::container::ThrottleDevice;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The container a `container:<name|id>` mode names.
pub(super) fn container_of(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:").filter(|c| !c.is_empty())
}

/// A `--device-cgroup-rule` (`c 1:3 mr`, `a *:* rwm`) as an OCI device cgroup entry.
pub(super) fn device_rule(rule: &str) -> Result<Value> {
    let bad = || Error::bad_request(format!("invalid device cgroup format '{rule}'"));
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, nums, access] = parts.as_slice() else {
        return Err(bad());
    };
    if !matches!(*typ, "a" | "b" | "c")
        || access.is_empty()
        || access.len() > 3
        || !access.chars().all(|c| "rwm".contains(c))
    {
        return Err(bad());
    }
    let (major, minor) = nums.split_once(':').ok_or_else(bad)?;
    let num = |s: &str| -> Result<Value> {
        if s == "*" {
            Ok(json!(-1))
        } else {
            s.parse::<i64>().map(|n| json!(n)).map_err(|_| bad())
        }
    };
    Ok(json!({
        "allow": true, "type": typ, "major": num(major)?, "minor": num(minor)?, "access": access,
    }))
}

/// The gids `--group-add` names: numbers as they are, names looked up in the container's
/// /etc/group.
pub fn extra_gids(group_add: &[String], group_file: Option<&str>) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for g in group_add {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_file
                .unwrap_or("")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::bad_request(format!(
                        "Unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
        if !out.contains(&gid) {
            out.push(gid);
        }
    }
    Ok(out)
}

/// A device node of the host (`--device`), or the nodes under a directory of them, with the
/// path each gets in the container.
pub(super) fn host_devices(on_host: &str, in_container: &str) -> Result<Vec<(PathBuf, Value)>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let gather = |e: std::io::Error| {
        Error::bad_request(format!(
            "error gathering device information while adding custom device {on_host:?}: {e}"
        ))
    };
    let meta = std::fs::metadata(on_host).map_err(gather)?;
    let mut found = Vec::new();
    if meta.is_dir() {
        // Symlinks are not followed (`/dev/fd` leads to the daemon's own descriptors, and a
        // link can make a cycle), and the directories runc skips are skipped.
        let mut stack = vec![PathBuf::from(on_host)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(gather)?.flatten() {
                let p = e.path();
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {
                        let skip = matches!(
                            e.file_name().to_str(),
                            Some(
                                "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
                            )
                        );
                        if !skip {
                            stack.push(p);
                        }
                    }
                    Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => {
                        found.push((p, m))
                    }
                    _ => {}
                }
            }
        }
    } else if meta.file_type().is_char_device() || meta.file_type().is_block_device() {
        found.push((PathBuf::from(on_host), meta));
    } else {
        return Err(Error::bad_request(format!(
            "error gathering device information while adding custom device {on_host:?}: not a device node"
        )));
    }
    Ok(found
        .into_iter()
        .map(|(p, m)| {
            let rel = p.strip_prefix(on_host).unwrap_or(Path::new(""));
            let dst = if rel.as_os_str().is_empty() {
                PathBuf::from(in_container)
            } else {
                Path::new(in_container).join(rel)
            };
            let kind = if m.file_type().is_block_device() {
                "b"
            } else {
                "c"
            };
            let rdev = m.rdev();
            let dev = json!({
                "path": dst, "type": kind,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid(),
            });
            (dst, dev)
        })
        .collect())
}

/// `major:minor` of the block device at `path`, for the blkio limits.
fn block_numbers(path: &str) -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| Error::bad_request(format!("stat {path}: {e}")))?;
    Ok((libc::major(m.rdev()), libc::minor(m.rdev())))
}

/// The run-dir directory holding a `shareable` container's /dev/shm (a tmpfs of the host, so
/// that `--ipc container:<it>` can mount the same one).
fn shm_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("shm")
}

/// Take down the /dev/shm tmpfs of a `shareable` container, if it has one.
pub fn release_shm(run_dir: &Path) {
    let dir = shm_dir(run_dir);
    if dir.exists() {
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn running_pid(d: &Service, name: &str, what: &str) -> Result<(i32, Record, PathBuf)> {
    let o = d.find(name)?;
    let or = o.snapshot();
    if or.state.status != super::status::RUNNING || or.state.pid <= 0 {
        return Err(Error::conflict(format!(
            "cannot join {what} of a non running container: {}",
            or.id
        )));
    }
    Ok((or.state.pid, or, o.paths.run_dir.clone()))
}

/// What becomes of the container's own /dev/shm tmpfs (a user's mount there stays).
#[derive(Debug)]
enum Shm {
    Keep,
    Replace(Value),
    Remove,
}

fn bind(src: &Path, dst: &str, extra: &[&str]) -> Value {
    let mut opts = vec!["rbind", "rprivate"];
    opts.extend_from_slice(extra);
    json!({"destination": dst, "type": "bind", "source": src, "options": opts})
}

/// The settings of a container resolved against the host and the other containers at start:
/// the namespaces it drops or joins, its /dev/shm, the device nodes and rules it gets, and its
/// block IO device limits. Made by [`resolve`]; carried into the spec by [`apply`].
#[derive(Debug)]
pub struct Plan {
    drop: Vec<&'static str>,
    joins: Vec<(&'static str, PathBuf)>,
    /// Under --userns-remap, the user namespace of the containers whose namespaces it joins.
    donor_user: Option<PathBuf>,
    shm: Shm,
    nodes: Vec<Value>,
    rules: Vec<Value>,
    block_io: serde_json::Map<String, Value>,
}

impl Plan {
    /// The plan of a container with every setting at its default.
    #[cfg(test)]
    pub fn default_for_test() -> Plan {
        Plan {
            drop: Vec::new(),
            joins: Vec::new(),
            donor_user: None,
            shm: Shm::Keep,
            nodes: Vec::new(),
            rules: Vec::new(),
            block_io: serde_json::Map::new(),
        }
    }
}

/// Resolve `rec`'s settings: the containers whose namespaces it joins (running, compatible
/// user namespaces), a `shareable` /dev/shm mounted under `run_dir`, `--device` nodes and block
/// devices looked up on the host, `--device-cgroup-rule`s parsed.
pub fn resolve(d: &Service, rec: &Record, run_dir: &Path) -> Result<Plan> {
    let h = &rec.host_config;
    // Namespaces: dropped for `host`, joined for `container:`.
    let mut joins: Vec<(&'static str, PathBuf)> = Vec::new();
    let mut drop: Vec<&'static str> = Vec::new();
    // Under --userns-remap a donor's namespaces belong to its user namespace: joining them
    // means joining that too, as for `--network container:`.
    let remapped = d.remap_of(rec).is_some();
    let mut donor_user: Option<PathBuf> = None;
    let mut user_of = |or: &Record, pid: i32, what: &str| -> Result<()> {
        match (remapped, d.remap_of(or).is_some()) {
            (true, true) => donor_user = Some(format!("/proc/{pid}/ns/user").into()),
            (true, false) => {
                return Err(Error::bad_request(format!(
                    "cannot join the {what} namespace of container {}: it runs with --userns=host and this one does not",
                    or.id
                )))
            }
            _ => {}
        }
        Ok(())
    };
    if h.pid_mode == "host" {
        drop.push("pid");
    } else if let Some(other) = container_of(&h.pid_mode) {
        let (pid, or, _) = running_pid(d, other, "PID")?;
        user_of(&or, pid, "PID")?;
        joins.push(("pid", format!("/proc/{pid}/ns/pid").into()));
    }
    if h.uts_mode == "host" {
        drop.push("uts");
    }
    if h.cgroupns_mode == "host" {
        drop.push("cgroup");
    }
    let shm_opts = ["nosuid", "noexec", "nodev"];
    let shm = match h.ipc_mode.as_str() {
        "host" => {
            drop.push("ipc");
            Shm::Replace(bind(Path::new("/dev/shm"), "/dev/shm", &shm_opts))
        }
        "none" => Shm::Remove,
        "shareable" => {
            let dir = shm_dir(run_dir);
            release_shm(run_dir);
            std::fs::create_dir_all(&dir)?;
            let size = if h.shm_size > 0 { h.shm_size } else { 64 << 20 };
            nix::mount::mount(
                Some("shm"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,size={size}").as_str()),
            )
            .map_err(|e| Error::internal(format!("mounting /dev/shm for the container: {e}")))?;
            Shm::Replace(bind(&dir, "/dev/shm", &shm_opts))
        }
        mode => match container_of(mode) {
            Some(other) => {
                let (pid, or, other_run) = running_pid(d, other, "IPC")?;
                match or.host_config.ipc_mode.as_str() {
                    "host" => {
                        drop.push("ipc");
                        Shm::Replace(bind(Path::new("/dev/shm"), "/dev/shm", &shm_opts))
                    }
                    "shareable" => {
                        user_of(&or, pid, "IPC")?;
                        joins.push(("ipc", format!("/proc/{pid}/ns/ipc").into()));
                        Shm::Replace(bind(&shm_dir(&other_run), "/dev/shm", &shm_opts))
                    }
                    _ => return Err(Error::bad_request(
                        "non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
                    )),
                }
            }
            // private (and the default): the tmpfs spec::build mounts.
            None => Shm::Keep,
        },
    };
    // --device and --device-cgroup-rule
    let mut rules: Vec<Value> = Vec::new();
    let mut nodes: Vec<Value> = Vec::new();
    for m in h.devices.iter().flatten() {
        let inside = if m.path_in_container.is_empty() {
            m.path_on_host.as_str()
        } else {
            m.path_in_container.as_str()
        };
        let access = if m.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            m.cgroup_permissions.as_str()
        };
        for (_, dev) in host_devices(&m.path_on_host, inside)? {
            rules.push(json!({
                "allow": true, "type": dev["type"], "major": dev["major"],
                "minor": dev["minor"], "access": access,
            }));
            nodes.push(dev);
        }
    }
    for r in h.device_cgroup_rules.iter().flatten() {
        rules.push(device_rule(r)?);
    }
    // Block IO per device.
    let throttle = |list: &Option<Vec<ThrottleDevice>>| -> Result<Vec<Value>> {
        list.iter()
            .flatten()
            .map(|t| {
                let (major, minor) = block_numbers(&t.path)?;
                Ok(json!({"major": major, "minor": minor, "rate": t.rate}))
            })
            .collect()
    };
    let mut bio = serde_json::Map::new();
    let weights: Vec<Value> = h
        .blkio_weight_device
        .iter()
        .flatten()
        .map(|w| {
            let (major, minor) = block_numbers(&w.path)?;
            Ok(json!({"major": major, "minor": minor, "weight": w.weight}))
        })
        .collect::<Result<_>>()?;
    for (key, list) in [
        ("weightDevice", weights),
        ("throttleReadBpsDevice", throttle(&h.blkio_device_read_bps)?),
        (
            "throttleWriteBpsDevice",
            throttle(&h.blkio_device_write_bps)?,
        ),
        (
            "throttleReadIOPSDevice",
            throttle(&h.blkio_device_read_iops)?,
        ),
        (
            "throttleWriteIOPSDevice",
            throttle(&h.blkio_device_write_iops)?,
        ),
    ] {
        if !list.is_empty() {
            bio.insert(key.into(), Value::Array(list));
        }
    }
    Ok(Plan {
        drop,
        joins,
        donor_user,
        shm,
        nodes,
        rules,
        block_io: bio,
    })
}

/// Carry plan `p` into the spec `spec::build` made: namespaces, /dev/shm, `--group-add` (names
/// looked up in `group_file`), devices, device rules, block IO device limits. `host_mqueue`:
/// the host has a /dev/mqueue; `remapped`: the container runs in a remapped user namespace.
pub fn apply(
    p: Plan,
    rec: &Record,
    group_file: Option<&str>,
    host_mqueue: bool,
    remapped: bool,
    spec: &mut Value,
) -> Result<()> {
    let h = &rec.host_config;
    let Plan {
        drop,
        joins,
        donor_user,
        shm,
        nodes,
        rules,
        block_io: bio,
    } = p;
    let linux = &mut spec["linux"];
    if let Some(nss) = linux["namespaces"].as_array_mut() {
        nss.retain(|ns| {
            let t = ns["type"].as_str().unwrap_or("");
            !drop.contains(&t) && !joins.iter().any(|(j, _)| *j == t)
        });
        for (t, path) in &joins {
            nss.push(json!({"type": t, "path": path}));
        }
        if let Some(user) = donor_user {
            if let Some(ns) = nss.iter_mut().find(|ns| ns["type"] == "user") {
                match ns["path"].as_str() {
                    Some(p) if !p.is_empty() && Path::new(p) != user => {
                        return Err(Error::bad_request(
                            "the containers whose namespaces this one joins have different user namespaces",
                        ))
                    }
                    _ => ns["path"] = json!(user),
                }
            }
        }
    }
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        let default_shm = |m: &Value| m["destination"] == "/dev/shm" && m["source"] == "shm";
        match shm {
            Shm::Keep => {}
            Shm::Replace(m) => {
                if let Some(slot) = mounts.iter_mut().find(|m| default_shm(m)) {
                    *slot = m;
                }
            }
            Shm::Remove => mounts.retain(|m| !default_shm(m)),
        }
        // In the host's IPC namespace a user namespace cannot mount mqueue: the runtime binds
        // the host's /dev/mqueue instead, and without one the container has none.
        if remapped && drop.contains(&"ipc") && !host_mqueue {
            mounts.retain(|m| m["type"] != "mqueue");
        }
    }
    if h.uts_mode == "host" {
        if let Some(o) = spec.as_object_mut() {
            o.remove("hostname");
        }
    }
    // --group-add
    let extra = extra_gids(h.group_add.as_deref().unwrap_or(&[]), group_file)?;
    if let Some(gids) = spec["process"]["user"]["additionalGids"].as_array_mut() {
        for g in extra {
            if !gids.iter().any(|v| v == &json!(g)) {
                gids.push(json!(g));
            }
        }
    }
    let linux = &mut spec["linux"];
    if !nodes.is_empty() {
        match linux["devices"].as_array_mut() {
            Some(list) => list.extend(nodes),
            None => linux["devices"] = Value::Array(nodes),
        }
    }
    let res = &mut linux["resources"];
    if !rules.is_empty() && !h.privileged {
        if let Some(list) = res["devices"].as_array_mut() {
            list.extend(rules);
        }
    }
    if !bio.is_empty() {
        if !res["blockIO"].is_object() {
            res["blockIO"] = json!({});
        }
        if let Some(o) = res["blockIO"].as_object_mut() {
            o.extend(bio);
        }
    }
    Ok(())
}

impl Service {
    /// `docker rm --link parent/alias`: the link goes from the parent's settings (its
    /// `/etc/hosts` entry stays until it restarts, as with dockerd).
    pub fn remove_link(&self, name: &str) -> Result<()> {
        let name = name.trim_matches('/');
        let Some((parent, alias)) = name.rsplit_once('/') else {
            return Err(Error::bad_request(
                "Conflict, cannot remove the default link name of the container",
            ));
        };
        let missing = || Error::not_found(format!("No such container: {name}"));
        let c = self.find(parent).map_err(|_| missing())?;
        let alias_of = |l: &str| {
            let (t, a) = l.split_once(':').unwrap_or((l, l));
            let a = a.rsplit('/').next().unwrap_or(a).to_string();
            (t.trim_start_matches('/').to_string(), a)
        };
        let has = c
            .rec()
            .host_config
            .links
            .iter()
            .flatten()
            .any(|l| alias_of(l).1 == alias);
        if !has {
            return Err(missing());
        }
        c.update(|r| {
            if let Some(links) = r.host_config.links.as_mut() {
                links.retain(|l| alias_of(l).1 != alias);
            }
            for ep in r.net.endpoints.values_mut() {
                ep.links.retain(|l| alias_of(l).1 != alias);
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::container::HostConfig;

    #[test]
    fn device_rules() {
        assert_eq!(
            device_rule("c 10:229 rwm").unwrap(),
            json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
        );
        assert_eq!(device_rule("a *:* m").unwrap()["major"], -1);
        for bad in [
            "c 10:229",
            "x 1:2 r",
            "c a:1 r",
            "c 1:2 rx",
            "c 1:2 rwmr",
            "",
        ] {
            assert!(device_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_add() {
        let group = "root:x:0:\naudio:x:29:\nusers:x:100:\n";
        assert_eq!(
            extra_gids(&["audio".into(), "4242".into(), "29".into()], Some(group)).unwrap(),
            vec![29, 4242]
        );
        let e = extra_gids(&["ghost".into()], Some(group)).unwrap_err();
        assert!(
            e.0.message.contains("Unable to find group ghost"),
            "{}",
            e.0.message
        );
    }

    #[test]
    fn plan_applied() {
        let rec = |h: HostConfig| crate::container::Record {
            id: "c".into(),
            name: "/c".into(),
            created: String::new(),
            image: String::new(),
            image_id: String::new(),
            config: Default::default(),
            host_config: h,
            path: "sh".into(),
            args: Vec::new(),
            state: Default::default(),
            restart_count: 0,
            net: Default::default(),
            mounts: Vec::new(),
            creating: false,
            build: false,
            managed: false,
            remapped_root: None,
        };
        let spec = || {
            json!({
                "hostname": "h",
                "process": {"user": {"additionalGids": [0]}},
                "mounts": [
                    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
                ],
                "linux": {
                    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "user"}],
                    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                },
            })
        };
        let h = HostConfig {
            uts_mode: "host".into(),
            group_add: Some(vec!["audio".into()]),
            ..Default::default()
        };
        let plan = Plan {
            drop: vec!["uts", "ipc"],
            joins: vec![("pid", "/proc/7/ns/pid".into())],
            donor_user: Some("/proc/7/ns/user".into()),
            shm: Shm::Remove,
            nodes: vec![json!({"path": "/dev/fuse"})],
            rules: vec![json!({"allow": true, "access": "r"})],
            block_io: serde_json::Map::from_iter([(
                "weightDevice".to_string(),
                json!([{"weight": 10}]),
            )]),
        };
        let mut s = spec();
        apply(
            plan,
            &rec(h.clone()),
            Some("audio:x:29:\n"),
            false,
            true,
            &mut s,
        )
        .unwrap();
        assert!(s.get("hostname").is_none());
        assert_eq!(s["process"]["user"]["additionalGids"], json!([0, 29]));
        assert_eq!(
            s["linux"]["namespaces"],
            json!([{"type": "user", "path": "/proc/7/ns/user"}, {"type": "pid", "path": "/proc/7/ns/pid"}])
        );
        // No /dev/shm, and no mqueue in a remapped container sharing a host without one.
        assert_eq!(s["mounts"], json!([]));
        assert_eq!(s["linux"]["devices"], json!([{"path": "/dev/fuse"}]));
        assert_eq!(
            s["linux"]["resources"]["devices"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            s["linux"]["resources"]["blockIO"]["weightDevice"],
            json!([{"weight": 10}])
        );
        // A donor in another user namespace than the one already set is refused.
        let mut s = spec();
        s["linux"]["namespaces"][3]["path"] = json!("/proc/8/ns/user");
        let plan = Plan {
            donor_user: Some("/proc/7/ns/user".into()),
            ..Plan::default_for_test()
        };
        assert!(apply(plan, &rec(HostConfig::default()), None, true, true, &mut s).is_err());
    }
}
