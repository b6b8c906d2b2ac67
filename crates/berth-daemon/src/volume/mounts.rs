//! A container's mount points: worked out at create from `--volumes-from`, `HostConfig.Binds`,
//! `HostConfig.Mounts` and the anonymous volumes of `Config.Volumes` (the image's `VOLUME`s
//! included), kept in its record, turned into OCI mounts at start and shown by inspect.

use crate::container::service::Service;
use crate::container::Record;
use crate::error::{Error, Result};
use berth_api::container::{Config, HostConfig, Mount};
use berth_build::ignore::clean;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

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
    pub volume: Option<crate::volume::Request>,
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
        volume: Some(crate::volume::Request {
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
                volume: Some(crate::volume::Request {
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

/// Work out a new container's mount points (nothing is created yet): `--volumes-from` first,
/// then binds and `--mount`s over them, then anonymous volumes where nothing is mounted.
pub fn plan(d: &Service, config: &Config, host: &HostConfig) -> Result<Vec<Planned>> {
    let mut by_dst: BTreeMap<String, Planned> = BTreeMap::new();
    for spec in host.volumes_from.iter().flatten() {
        let (id, mode) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        let ro = match mode {
            "" | "rw" => false,
            "ro" => true,
            m if valid_mode(m) => m.split(',').any(|o| o == "ro"),
            m => {
                return Err(Error::bad_request(format!(
                    "invalid mode for volumes-from: {m}"
                )))
            }
        };
        let src = d.find(id)?.snapshot();
        for m in &src.mounts {
            let mut mp = m.clone();
            mp.rw = m.rw && !ro;
            if !mode.is_empty() {
                mp.mode = mode.to_string();
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
    let mut given = std::collections::BTreeSet::new();
    let binds = host.binds.iter().flatten().map(|b| parse_bind(b));
    let mounts = host.mounts.iter().flatten().map(parse_mount);
    for p in binds.chain(mounts) {
        let p = p?;
        if !given.insert(p.mp.destination.clone()) {
            return Err(duplicate(&p.mp.destination));
        }
        by_dst.insert(p.mp.destination.clone(), p);
    }
    let tmpfs: Vec<String> = host
        .tmpfs
        .iter()
        .flatten()
        .map(|(dst, _)| clean(dst))
        .collect();
    for dst in config.volumes.iter().flatten().map(|(v, _)| v) {
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
                volume: Some(crate::volume::Request::default()),
                copy: true,
            },
        );
    }
    Ok(by_dst.into_values().collect())
}

/// (volume, destination) pairs: volumes to fill from the image's content at the destination.
pub type CopyUps = Vec<(String, String)>;

/// Create or reference the volumes of planned mount points for container `cid`. Returns the
/// mount points and the (volume, destination) pairs to fill from the image. On an error,
/// what was done is undone.
pub fn realize(d: &Service, cid: &str, plans: Vec<Planned>) -> Result<(Vec<MountPoint>, CopyUps)> {
    let mut out = Vec::new();
    let mut copies = Vec::new();
    for p in plans {
        let mut mp = p.mp;
        match (&p.volume, mp.kind.as_str()) {
            (Some(req), _) => {
                let mut req = req.clone();
                if req.name.is_none() {
                    req.labels
                        .insert(crate::volume::ANONYMOUS_LABEL.into(), String::new());
                }
                match d.volumes.ensure(req, Some(cid)) {
                    Ok((meta, created)) => {
                        if created {
                            d.events.volume_event("create", &meta.name);
                        }
                        mp.name = meta.name
                    }
                    Err(e) => {
                        undo(d, cid, &out);
                        return Err(e);
                    }
                }
            }
            // From --volumes-from: the volume exists and is taken as is.
            (None, VOLUME) => d.volumes.reference(&mp.name, cid),
            _ => {}
        }
        if p.copy {
            copies.push((mp.name.clone(), mp.destination.clone()));
        }
        out.push(mp);
    }
    Ok((out, copies))
}

/// A container's create failed or it is removed: drop its references, and remove the
/// anonymous volumes made for it when `remove_anonymous` (`rm -v`, `--rm`). Volumes that
/// another container still uses stay.
pub fn undo(d: &Service, cid: &str, mounts: &[MountPoint]) {
    d.volumes.release(cid);
    remove_anonymous(d, mounts);
}

/// Remove the anonymous volumes among `mounts` that nothing uses any more (their files are
/// deleted on a blocking thread of the runtime).
pub fn remove_anonymous(d: &Service, mounts: &[MountPoint]) {
    for m in mounts.iter().filter(|m| m.kind == VOLUME && m.anonymous) {
        match d.volumes.remove(&m.name, true) {
            Ok(Some(dir)) => {
                d.events.volume_event("destroy", &m.name);
                tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("keeping volume {}: {}", m.name, e.0.message),
        }
    }
}

/// Fill each (volume, destination) pair's volume from the image, if the volume is empty. The
/// container is stopped (being created, its op lock held): its root is mounted for this.
pub fn populate(
    d: &Service,
    c: &crate::container::handle::Container,
    copies: &CopyUps,
) -> Result<()> {
    let remap = d.remap_of(&c.rec()).map(|r| r.ids.clone());
    crate::container::rootfs::with_root(d, c, false, |root| {
        let mut res = Ok(());
        for (name, dst) in copies {
            res = d.volumes.activate(name, &c.id).and_then(|()| {
                super::copyup::populate(
                    root,
                    dst,
                    &d.volumes.data_dir(name),
                    &d.volumes.copy_marker(name),
                    remap.as_ref(),
                )
                .map_err(|e| {
                    Error::internal(format!("copying the image's {dst} into volume {name}: {e}"))
                })
            });
            if res.is_err() {
                break;
            }
        }
        d.volumes.deactivate(&c.id);
        res
    })
}

/// Mount the volumes of a starting container that need it.
pub fn activate(d: &Service, rec: &Record) -> Result<()> {
    for m in rec.mounts.iter().filter(|m| m.kind == VOLUME) {
        if let Err(e) = d.volumes.activate(&m.name, &rec.id) {
            d.volumes.deactivate(&rec.id);
            return Err(e);
        }
    }
    Ok(())
}

/// Number of components of a cleaned path: parents sort before their children.
pub fn depth(p: &str) -> usize {
    p.split('/').filter(|c| !c.is_empty()).count()
}

/// The OCI mounts of a container's volumes, binds and tmpfs mounts, by destination (the
/// spec orders them, parents first).
pub fn oci_mounts(d: &Service, rec: &Record) -> Result<Vec<(String, Value)>> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for m in &rec.mounts {
        let v = match m.kind.as_str() {
            TMPFS => tmpfs(&m.destination, &m.tmpfs_options, !m.rw),
            VOLUME => {
                let mut opts = vec!["rbind", "rprivate"];
                if !m.rw {
                    opts.push("ro");
                }
                json!({"destination": m.destination, "type": "bind",
                       "source": d.volumes.data_dir(&m.name), "options": opts})
            }
            _ => {
                let src = Path::new(&m.source);
                if m.create_source && std::fs::symlink_metadata(src).is_err() {
                    std::fs::create_dir_all(src)?;
                }
                let mut opts = vec![
                    if m.non_recursive { "bind" } else { "rbind" },
                    if m.propagation.is_empty() {
                        "rprivate"
                    } else {
                        m.propagation.as_str()
                    },
                ];
                if !m.rw {
                    opts.push("ro");
                }
                json!({"destination": m.destination, "type": "bind", "source": src, "options": opts})
            }
        };
        out.push((m.destination.clone(), v));
    }
    for (dst, opts) in rec.host_config.tmpfs.iter().flatten() {
        let o: Vec<String> = opts
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        out.push((clean(dst), tmpfs(dst, &o, false)));
    }
    Ok(out)
}

fn tmpfs(dst: &str, extra: &[String], ro: bool) -> Value {
    let mut o = vec![
        "nosuid".to_string(),
        "nodev".to_string(),
        "noexec".to_string(),
    ];
    o.extend(extra.iter().cloned());
    if ro {
        o.push("ro".into());
    }
    json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": o})
}

/// `Mounts` of container inspect and list, by destination.
pub fn view(d: &Service, rec: &Record) -> Vec<Value> {
    rec.mounts
        .iter()
        .map(|m| {
            let mp = match m.kind.as_str() {
                VOLUME => berth_api::volume::MountPoint {
                    kind: VOLUME.into(),
                    name: m.name.clone(),
                    source: d.volumes.data_dir(&m.name).display().to_string(),
                    destination: m.destination.clone(),
                    driver: "local".into(),
                    mode: m.mode.clone(),
                    rw: m.rw,
                    propagation: String::new(),
                },
                kind => berth_api::volume::MountPoint {
                    kind: kind.into(),
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                    mode: m.mode.clone(),
                    rw: m.rw,
                    propagation: m.propagation.clone(),
                    ..Default::default()
                },
            };
            serde_json::to_value(mp).unwrap_or(Value::Null)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = parse_bind("/anon").unwrap();
        assert!(p.mp.anonymous && p.copy);
        assert!(!parse_bind("v:/x:nocopy").unwrap().copy);
        assert_eq!(
            parse_bind("v:/x:bogus").unwrap_err().0.message,
            "invalid mode: bogus"
        );
        assert_eq!(
            parse_bind("v:rel").unwrap_err().0.message,
            "invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("v:/").is_err());
        assert!(parse_bind("v:/x:ro,rw").is_err());
    }

    #[test]
    fn mounts() {
        let m = |kind: &str, src: &str, dst: &str| Mount {
            kind: kind.into(),
            source: src.into(),
            target: dst.into(),
            ..Default::default()
        };
        assert_eq!(
            parse_mount(&m("bind", "/nonexistent/berth", "/x")).unwrap_err().0.message,
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent/berth"
        );
        assert_eq!(
            parse_mount(&m("tmpfs", "x", "/x")).unwrap_err().0.message,
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            parse_mount(&m("bogus", "", "/x")).unwrap_err().0.message,
            "invalid mount config for type \"bogus\": mount type unknown"
        );
        let mut t = m("tmpfs", "", "/t");
        t.tmpfs_options = Some(json!({"SizeBytes": 1048576, "Mode": 0o1777}));
        assert_eq!(
            parse_mount(&t).unwrap().mp.tmpfs_options,
            vec!["size=1048576", "mode=1777"]
        );
        let v = parse_mount(&m("volume", "", "/v")).unwrap();
        assert!(v.mp.anonymous && v.copy);
        assert_eq!(clean("/a//b/../c/"), "/a/c");
    }
}
