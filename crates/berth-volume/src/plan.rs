//! Mount-point planning: a container's mount points worked out at create from `--volumes-from`
//! (already resolved by the caller into the other containers' mount points), `HostConfig.Binds`,
//! `HostConfig.Mounts` and the anonymous volumes of `Config.Volumes` (the image's `VOLUME`s
//! included), as a function of a [`PlanRequest`] alone. It looks no container up and creates
//! nothing (the volumes are made by [`crate::VolumeService::realize`]); the one thing it reads
//! is whether a `--mount type=bind` source exists, which Docker checks at create too.

use crate::error::{Error, Result};
use berth_api::container::Mount;
use berth_build::ignore::clean;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What a container (or `POST /volumes/create`) asks for when it names, or leaves unnamed, a
/// volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// None: a new anonymous volume.
    pub name: Option<String>,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

pub const VOLUME: &str = "volume";
pub const BIND: &str = "bind";
pub const TMPFS: &str = "tmpfs";

/// One mount point of a container, as persisted in its record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    pub kind: String,
    /// The volume's name.
    pub name: String,
    /// The host path of a bind.
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// The options as the user gave them (`-v a:/b:ro,nocopy` gives `ro,nocopy`).
    pub mode: String,
    pub propagation: String,
    /// Made for this container with no name given: `rm -v` removes it.
    pub anonymous: bool,
    /// A `-v` bind whose missing source is made at start, as Docker does.
    pub create_source: bool,
    /// A bind that is not recursive (`bind-recursive=disabled`).
    pub non_recursive: bool,
    /// tmpfs mount options (`size=`, `mode=`).
    pub tmpfs_options: Vec<String>,
}

/// A mount point before its volume exists.
#[derive(Debug, Clone)]
pub struct Planned {
    pub mp: MountPoint,
    /// For a volume: what to create if it does not exist (an empty name: anonymous).
    pub volume: Option<Request>,
    /// Fill a new, empty volume with the image's content at the destination.
    pub copy: bool,
}

fn mount_err(kind: &str, what: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("invalid mount config for type {kind:?}: {what}"))
}

fn check_target(kind: &str, dst: &str) -> Result<String> {
    if dst.is_empty() {
        return Err(mount_err(kind, "field Target must not be empty"));
    }
    if !dst.starts_with('/') {
        return Err(mount_err(
            kind,
            format!("invalid mount path: '{dst}' mount path must be absolute"),
        ));
    }
    let c = clean(dst);
    if c == "/" {
        return Err(mount_err(
            kind,
            "invalid specification: destination can't be '/'",
        ));
    }
    Ok(c)
}

const PROPAGATIONS: &[&str] = &[
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Docker's check of a `-v` mode: known words, at most one of each kind.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0; 5];
    for o in mode.split(',') {
        let k = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            p if PROPAGATIONS.contains(&p) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[k] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

/// One `-v` / `HostConfig.Binds` entry: `[src:]dst[:mode]`.
pub fn parse_bind(raw: &str) -> Result<Planned> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] if !s.is_empty() => (*s, *d, ""),
        [s, d, m] if !s.is_empty() => (*s, *d, *m),
        _ => {
            return Err(Error::bad_request(format!(
                "invalid volume specification: '{raw}'"
            )))
        }
    };
    if dst.is_empty() {
        return Err(Error::bad_request(format!(
            "invalid volume specification: '{raw}'"
        )));
    }
    if !valid_mode(mode) {
        return Err(Error::bad_request(format!("invalid mode: {mode}")));
    }
    let opts: Vec<&str> = mode.split(',').collect();
    let rw = !opts.contains(&"ro");
    let nocopy = opts.contains(&"nocopy");
    let kind = if src.starts_with('/') { BIND } else { VOLUME };
    let destination = check_target(kind, dst)?;
    if kind == BIND {
        if nocopy {
            return Err(Error::bad_request(format!("invalid mode: {mode}")));
        }
        let propagation = opts
            .iter()
            .find(|o| PROPAGATIONS.contains(o))
            .unwrap_or(&"rprivate");
        return Ok(Planned {
            mp: MountPoint {
                kind: BIND.into(),
                source: clean(src),
                destination,
                rw,
                mode: mode.into(),
                propagation: propagation.to_string(),
                create_source: true,
                ..Default::default()
            },
            volume: None,
            copy: false,
        });
    }
    Ok(Planned {
        mp: MountPoint {
            kind: VOLUME.into(),
            destination,
            rw,
            mode: if mode.is_empty() {
                "z".into()
            } else {
                mode.into()
            },
            anonymous: src.is_empty(),
            ..Default::default()
        },
        volume: Some(Request {
            name: (!src.is_empty()).then(|| src.to_string()),
            ..Default::default()
        }),
        copy: !nocopy,
    })
}

/// Whether an optional part of a `Mount` is given (present and not null).
fn given(v: &Option<Value>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_null())
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// One `HostConfig.Mounts` entry (`--mount`), checked as Docker's daemon checks it.
pub fn parse_mount(m: &Mount) -> Result<Planned> {
    let kind = m.kind.as_str();
    let forbid = |field: &str, set: bool| -> Result<()> {
        if set {
            return Err(mount_err(
                kind,
                format!("field {field} must not be specified"),
            ));
        }
        Ok(())
    };
    match kind {
        BIND | VOLUME | TMPFS => {}
        "image" | "npipe" | "cluster" => {
            return Err(Error::bad_request(format!(
                "mount type {kind:?} is not supported by this berth version yet"
            )))
        }
        _ => return Err(mount_err(kind, "mount type unknown")),
    }
    let destination = check_target(kind, &m.target)?;
    let mut mp = MountPoint {
        kind: kind.into(),
        destination,
        rw: !m.read_only,
        ..Default::default()
    };
    match kind {
        BIND => {
            forbid("VolumeOptions", given(&m.volume_options))?;
            forbid("TmpfsOptions", given(&m.tmpfs_options))?;
            if m.source.is_empty() {
                return Err(mount_err(kind, "field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(mount_err(
                    kind,
                    format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
            let opts = m.bind_options.clone().unwrap_or(Value::Null);
            let create = opts["CreateMountpoint"].as_bool().unwrap_or(false);
            if !create && std::fs::symlink_metadata(&m.source).is_err() {
                return Err(mount_err(
                    kind,
                    format!("bind source path does not exist: {}", m.source),
                ));
            }
            let propagation = opts["Propagation"].as_str().unwrap_or("");
            if !propagation.is_empty() && !PROPAGATIONS.contains(&propagation) {
                return Err(mount_err(
                    kind,
                    format!("invalid propagation mode: {propagation}"),
                ));
            }
            mp.source = clean(&m.source);
            mp.propagation = if propagation.is_empty() {
                "rprivate".into()
            } else {
                propagation.into()
            };
            mp.non_recursive = opts["NonRecursive"].as_bool().unwrap_or(false);
            mp.create_source = create;
            Ok(Planned {
                mp,
                volume: None,
                copy: false,
            })
        }
        VOLUME => {
            forbid("BindOptions", given(&m.bind_options))?;
            forbid("TmpfsOptions", given(&m.tmpfs_options))?;
            let opts = m.volume_options.clone().unwrap_or(Value::Null);
            if opts["Subpath"].as_str().is_some_and(|s| !s.is_empty()) {
                return Err(Error::bad_request(
                    "volume-subpath is not supported by this berth version yet",
                ));
            }
            let driver = &opts["DriverConfig"];
            mp.mode = "z".into();
            mp.anonymous = m.source.is_empty();
            Ok(Planned {
                mp,
                volume: Some(Request {
                    name: (!m.source.is_empty()).then(|| m.source.clone()),
                    driver: driver["Name"].as_str().unwrap_or_default().to_string(),
                    options: string_map(&driver["Options"]),
                    labels: string_map(&opts["Labels"]),
                }),
                copy: !opts["NoCopy"].as_bool().unwrap_or(false),
            })
        }
        _ => {
            forbid("BindOptions", given(&m.bind_options))?;
            forbid("VolumeOptions", given(&m.volume_options))?;
            if !m.source.is_empty() {
                return Err(mount_err(kind, "field Source must not be specified"));
            }
            let opts = m.tmpfs_options.clone().unwrap_or(Value::Null);
            if let Some(size) = opts["SizeBytes"].as_i64().filter(|s| *s != 0) {
                if size < 0 {
                    return Err(mount_err(kind, format!("invalid tmpfs size: {size}")));
                }
                mp.tmpfs_options.push(format!("size={size}"));
            }
            if let Some(mode) = opts["Mode"].as_u64().filter(|m| *m != 0) {
                mp.tmpfs_options.push(format!("mode={mode:o}"));
            }
            for o in opts["Options"].as_array().into_iter().flatten() {
                let kv: Vec<&str> = o
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                match kv.as_slice() {
                    [flag] => mp.tmpfs_options.push(flag.to_string()),
                    [k, v] => mp.tmpfs_options.push(format!("{k}={v}")),
                    _ => return Err(mount_err(kind, "invalid tmpfs option")),
                }
            }
            Ok(Planned {
                mp,
                volume: None,
                copy: false,
            })
        }
    }
}

fn duplicate(dst: &str) -> Error {
    Error::bad_request(format!("Duplicate mount point: {dst}"))
}

/// One `--volumes-from` entry with its container resolved by the caller.
#[derive(Debug, Clone, Default)]
pub struct VolumesFrom {
    /// What followed the container (`ro`, `rw`, a `-v` mode), empty for nothing.
    pub mode: String,
    /// The other container's mount points.
    pub mounts: Vec<MountPoint>,
}

/// What a new container asks to have mounted, every reference to another container already
/// resolved.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `HostConfig.VolumesFrom`, in order.
    pub volumes_from: Vec<VolumesFrom>,
    /// `HostConfig.Binds` (`-v`).
    pub binds: Vec<String>,
    /// `HostConfig.Mounts` (`--mount`).
    pub mounts: Vec<Mount>,
    /// The destinations of `Config.Volumes`, the image's `VOLUME`s included: anonymous
    /// volumes where nothing else is mounted.
    pub volumes: Vec<String>,
    /// The destinations of `HostConfig.Tmpfs` (no anonymous volume is made there).
    pub tmpfs: Vec<String>,
}

/// A container's mount points before their volumes exist, by destination.
pub type Plan = Vec<Planned>;

/// Whether a `--volumes-from` mode makes the mounts read-only (an invalid mode is a 400).
fn volumes_from_ro(mode: &str) -> Result<bool> {
    match mode {
        "" | "rw" => Ok(false),
        "ro" => Ok(true),
        m if valid_mode(m) => Ok(m.split(',').any(|o| o == "ro")),
        m => Err(Error::bad_request(format!(
            "invalid mode for volumes-from: {m}"
        ))),
    }
}

/// Split a `--volumes-from` entry into the container it names and its mode, the mode checked
/// (before the caller looks the container up, as Docker does).
pub fn parse_volumes_from(spec: &str) -> Result<(&str, &str)> {
    let (id, mode) = spec.split_once(':').unwrap_or((spec, ""));
    volumes_from_ro(mode)?;
    Ok((id, mode))
}

/// Work out a new container's mount points: `--volumes-from` first, then binds and `--mount`s
/// over them, then anonymous volumes where nothing is mounted.
pub fn plan(req: &PlanRequest) -> Result<Plan> {
    let mut by_dst: BTreeMap<String, Planned> = BTreeMap::new();
    for from in &req.volumes_from {
        let ro = volumes_from_ro(&from.mode)?;
        for m in &from.mounts {
            let mut mp = m.clone();
            mp.rw = m.rw && !ro;
            if !from.mode.is_empty() {
                mp.mode = from.mode.clone();
            }
            by_dst.insert(
                mp.destination.clone(),
                Planned {
                    mp,
                    volume: None,
                    copy: false,
                },
            );
        }
    }
    let mut given = BTreeSet::new();
    let binds = req.binds.iter().map(|b| parse_bind(b));
    let mounts = req.mounts.iter().map(parse_mount);
    for p in binds.chain(mounts) {
        let p = p?;
        if !given.insert(p.mp.destination.clone()) {
            return Err(duplicate(&p.mp.destination));
        }
        by_dst.insert(p.mp.destination.clone(), p);
    }
    let tmpfs: Vec<String> = req.tmpfs.iter().map(|dst| clean(dst)).collect();
    for dst in &req.volumes {
        let kind = VOLUME;
        let dst = check_target(kind, dst)?;
        if by_dst.contains_key(&dst) || tmpfs.contains(&dst) {
            continue;
        }
        by_dst.insert(
            dst.clone(),
            Planned {
                mp: MountPoint {
                    kind: kind.into(),
                    destination: dst,
                    rw: true,
                    anonymous: true,
                    ..Default::default()
                },
                volume: Some(Request::default()),
                copy: true,
            },
        );
    }
    Ok(by_dst.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mount(kind: &str, src: &str, dst: &str) -> Mount {
        Mount {
            kind: kind.into(),
            source: src.into(),
            target: dst.into(),
            ..Default::default()
        }
    }

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().message
    }

    #[test]
    fn binds() {
        let p = parse_bind("data:/srv/:ro").unwrap();
        assert_eq!(p.mp.kind, VOLUME);
        assert_eq!(p.mp.destination, "/srv");
        assert!(!p.mp.rw);
        assert_eq!(p.volume.unwrap().name.as_deref(), Some("data"));
        let p = parse_bind("/host:/ctr").unwrap();
        assert_eq!(
            (p.mp.kind.as_str(), p.mp.propagation.as_str()),
            (BIND, "rprivate")
        );
        assert!(p.mp.rw && p.mp.create_source);
        let p = parse_bind("/h:/c:ro,rslave").unwrap();
        assert_eq!((p.mp.rw, p.mp.propagation.as_str()), (false, "rslave"));
        let p = parse_bind("/anon").unwrap();
        assert!(p.mp.anonymous && p.copy);
        assert_eq!(p.mp.mode, "z");
        assert!(!parse_bind("v:/x:nocopy").unwrap().copy);
        assert_eq!(msg(parse_bind("v:/x:bogus")), "invalid mode: bogus");
        assert_eq!(msg(parse_bind("/h:/x:nocopy")), "invalid mode: nocopy");
        assert_eq!(
            msg(parse_bind("v:rel")),
            "invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            msg(parse_bind("a:b:c:d")),
            "invalid volume specification: 'a:b:c:d'"
        );
        assert_eq!(
            msg(parse_bind(":/x")),
            "invalid volume specification: ':/x'"
        );
        assert_eq!(
            msg(parse_bind("v:/")),
            "invalid mount config for type \"volume\": invalid specification: destination can't be '/'"
        );
        assert_eq!(msg(parse_bind("v:/x:ro,rw")), "invalid mode: ro,rw");
    }

    #[test]
    fn mounts() {
        assert_eq!(
            msg(parse_mount(&mount("bind", "/nonexistent/berth", "/x"))),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent/berth"
        );
        assert_eq!(
            msg(parse_mount(&mount("bind", "", "/x"))),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            msg(parse_mount(&mount("bind", "rel", "/x"))),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            msg(parse_mount(&mount("volume", "v", ""))),
            "invalid mount config for type \"volume\": field Target must not be empty"
        );
        assert_eq!(
            msg(parse_mount(&mount("tmpfs", "x", "/x"))),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            msg(parse_mount(&mount("bogus", "", "/x"))),
            "invalid mount config for type \"bogus\": mount type unknown"
        );
        assert_eq!(
            msg(parse_mount(&mount("image", "", "/x"))),
            "mount type \"image\" is not supported by this berth version yet"
        );
        let mut b = mount("bind", "/", "/x");
        b.volume_options = Some(json!({}));
        assert_eq!(
            msg(parse_mount(&b)),
            "invalid mount config for type \"bind\": field VolumeOptions must not be specified"
        );
        let mut b = mount("bind", "/", "/x");
        b.bind_options = Some(json!({"Propagation": "sideways"}));
        assert_eq!(
            msg(parse_mount(&b)),
            "invalid mount config for type \"bind\": invalid propagation mode: sideways"
        );
        let mut b = mount("bind", "/no/such/dir", "/x/");
        b.read_only = true;
        b.bind_options = Some(json!({"CreateMountpoint": true, "NonRecursive": true}));
        let p = parse_mount(&b).unwrap();
        assert_eq!(p.mp.destination, "/x");
        assert!(!p.mp.rw && p.mp.create_source && p.mp.non_recursive);
        assert_eq!(p.mp.propagation, "rprivate");

        let mut t = mount("tmpfs", "", "/t");
        t.tmpfs_options = Some(
            json!({"SizeBytes": 1048576, "Mode": 0o1777, "Options": [["noexec"], ["uid", "5"]]}),
        );
        assert_eq!(
            parse_mount(&t).unwrap().mp.tmpfs_options,
            vec!["size=1048576", "mode=1777", "noexec", "uid=5"]
        );
        t.tmpfs_options = Some(json!({"SizeBytes": -1}));
        assert_eq!(
            msg(parse_mount(&t)),
            "invalid mount config for type \"tmpfs\": invalid tmpfs size: -1"
        );

        let v = parse_mount(&mount("volume", "", "/v")).unwrap();
        assert!(v.mp.anonymous && v.copy);
        let mut v = mount("volume", "named", "/v");
        v.volume_options = Some(json!({"NoCopy": true, "Labels": {"a": "b"},
            "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}));
        let p = parse_mount(&v).unwrap();
        assert!(!p.copy && !p.mp.anonymous);
        let req = p.volume.unwrap();
        assert_eq!(req.name.as_deref(), Some("named"));
        assert_eq!(req.driver, "local");
        assert_eq!(req.labels["a"], "b");
        assert_eq!(req.options["type"], "tmpfs");
        v.volume_options = Some(json!({"Subpath": "x"}));
        assert_eq!(
            msg(parse_mount(&v)),
            "volume-subpath is not supported by this berth version yet"
        );
    }

    #[test]
    fn image_volumes_become_anonymous_where_nothing_is_mounted() {
        let req = PlanRequest {
            binds: vec!["data:/data".into()],
            volumes: vec!["/data".into(), "/cache/".into(), "/run".into()],
            tmpfs: vec!["/run/".into()],
            ..Default::default()
        };
        let p = plan(&req).unwrap();
        let dsts: Vec<&str> = p.iter().map(|p| p.mp.destination.as_str()).collect();
        assert_eq!(dsts, ["/cache", "/data"]);
        assert!(p[0].mp.anonymous && p[0].copy && p[0].mp.rw);
        assert_eq!(p[0].volume, Some(Request::default()));
        assert_eq!(
            p[1].volume.as_ref().and_then(|v| v.name.as_deref()),
            Some("data")
        );
        let bad = PlanRequest {
            volumes: vec!["rel".into()],
            ..Default::default()
        };
        assert_eq!(
            msg(plan(&bad)),
            "invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
    }

    #[test]
    fn volumes_from_modes_and_overrides() {
        assert_eq!(parse_volumes_from("web").unwrap(), ("web", ""));
        assert_eq!(parse_volumes_from("web:ro").unwrap(), ("web", "ro"));
        assert_eq!(
            msg(parse_volumes_from("web:bogus")),
            "invalid mode for volumes-from: bogus"
        );
        let theirs = vec![
            MountPoint {
                kind: VOLUME.into(),
                name: "v1".into(),
                destination: "/a".into(),
                rw: true,
                mode: "z".into(),
                ..Default::default()
            },
            MountPoint {
                kind: BIND.into(),
                source: "/h".into(),
                destination: "/b".into(),
                rw: false,
                mode: "ro".into(),
                ..Default::default()
            },
        ];
        let from = |mode: &str| VolumesFrom {
            mode: mode.into(),
            mounts: theirs.clone(),
        };
        // As they are: modes and rw kept, nothing created or copied.
        let p = plan(&PlanRequest {
            volumes_from: vec![from("")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].mp.rw && p[0].volume.is_none() && !p[0].copy);
        assert_eq!((p[0].mp.mode.as_str(), p[0].mp.name.as_str()), ("z", "v1"));
        assert!(!p[1].mp.rw);
        // :ro makes every one read-only; :rw does not make a read-only one writable.
        let p = plan(&PlanRequest {
            volumes_from: vec![from("ro")],
            ..Default::default()
        })
        .unwrap();
        assert!(p.iter().all(|p| !p.mp.rw && p.mp.mode == "ro"));
        let p = plan(&PlanRequest {
            volumes_from: vec![from("rw")],
            ..Default::default()
        })
        .unwrap();
        assert!(p[0].mp.rw && !p[1].mp.rw);
        assert_eq!(p[0].mp.mode, "rw");
        let p = plan(&PlanRequest {
            volumes_from: vec![from("ro,z")],
            ..Default::default()
        })
        .unwrap();
        assert!(!p[0].mp.rw);
        assert_eq!(
            msg(plan(&PlanRequest {
                volumes_from: vec![from("bogus")],
                ..Default::default()
            })),
            "invalid mode for volumes-from: bogus"
        );
        // A bind or --mount of this container on the same destination wins; an image VOLUME
        // there adds nothing.
        let p = plan(&PlanRequest {
            volumes_from: vec![from("")],
            binds: vec!["mine:/a".into()],
            volumes: vec!["/b".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].volume.as_ref().and_then(|v| v.name.as_deref()),
            Some("mine")
        );
        assert_eq!(p[1].mp.source, "/h");
    }

    #[test]
    fn duplicates_and_tmpfs() {
        assert_eq!(
            msg(plan(&PlanRequest {
                binds: vec!["a:/x".into(), "b:/x/".into()],
                ..Default::default()
            })),
            "Duplicate mount point: /x"
        );
        assert_eq!(
            msg(plan(&PlanRequest {
                binds: vec!["a:/x".into()],
                mounts: vec![mount("tmpfs", "", "/x")],
                ..Default::default()
            })),
            "Duplicate mount point: /x"
        );
        let p = plan(&PlanRequest {
            mounts: vec![mount("tmpfs", "", "/t"), mount("volume", "v", "/v")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p[0].mp.kind, TMPFS);
        assert!(p[0].volume.is_none() && !p[0].copy);
        assert_eq!(p[1].mp.kind, VOLUME);
        assert_eq!(clean("/a//b/../c/"), "/a/c");
    }
}
