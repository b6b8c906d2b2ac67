//! A container's mount points as the runtime and the API see them: the OCI mounts of its
//! volumes, binds and tmpfs mounts, and the `Mounts` of inspect. Pure functions of the mount
//! points and where each volume's content lives (given by the caller); the only effect is
//! making a missing `-v` bind source, as Docker does at start.

use crate::plan::{MountPoint, TMPFS, VOLUME};
use berth_build::ignore::clean;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Number of components of a cleaned path: parents sort before their children.
pub fn depth(p: &str) -> usize {
    p.split('/').filter(|c| !c.is_empty()).count()
}

/// The OCI mounts of a container's `mounts` and `HostConfig.Tmpfs` (`tmpfs`), by destination
/// (the spec orders them, parents first). `data_dir` gives a volume's content directory.
pub fn oci_mounts(
    mounts: &[MountPoint],
    tmpfs: Option<&BTreeMap<String, String>>,
    data_dir: &dyn Fn(&str) -> PathBuf,
) -> std::io::Result<Vec<(String, Value)>> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for m in mounts {
        let v = match m.kind.as_str() {
            TMPFS => tmpfs_mount(&m.destination, &m.tmpfs_options, !m.rw),
            VOLUME => {
                let mut opts = vec!["rbind", "rprivate"];
                if !m.rw {
                    opts.push("ro");
                }
                json!({"destination": m.destination, "type": "bind",
                       "source": data_dir(&m.name), "options": opts})
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
    for (dst, opts) in tmpfs.into_iter().flatten() {
        let o: Vec<String> = opts
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        out.push((clean(dst), tmpfs_mount(dst, &o, false)));
    }
    Ok(out)
}

fn tmpfs_mount(dst: &str, extra: &[String], ro: bool) -> Value {
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

/// `Mounts` of container inspect and list, by destination. `data_dir` gives a volume's
/// content directory.
pub fn view(mounts: &[MountPoint], data_dir: &dyn Fn(&str) -> PathBuf) -> Vec<Value> {
    mounts
        .iter()
        .map(|m| {
            let mp = match m.kind.as_str() {
                VOLUME => berth_api::volume::MountPoint {
                    kind: VOLUME.into(),
                    name: m.name.clone(),
                    source: data_dir(&m.name).display().to_string(),
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
    use crate::plan::{parse_bind, BIND};

    fn dir(name: &str) -> PathBuf {
        Path::new("/data/volumes").join(name).join("_data")
    }

    #[test]
    fn mounts_and_views() {
        let mut vol = parse_bind("data:/srv:ro").unwrap().mp;
        vol.name = "data".into();
        let bind = MountPoint {
            kind: BIND.into(),
            source: "/".into(),
            destination: "/host".into(),
            rw: true,
            propagation: "rslave".into(),
            non_recursive: true,
            ..Default::default()
        };
        let t = MountPoint {
            kind: TMPFS.into(),
            destination: "/t".into(),
            tmpfs_options: vec!["size=1024".into()],
            ..Default::default()
        };
        let tmpfs = BTreeMap::from([("/run/".to_string(), "mode=700,".to_string())]);
        let got = oci_mounts(&[vol.clone(), bind.clone(), t], Some(&tmpfs), &dir).unwrap();
        let dsts: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dsts, ["/srv", "/host", "/t", "/run"]);
        assert_eq!(got[0].1["source"], "/data/volumes/data/_data");
        assert_eq!(got[0].1["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(got[1].1["options"], json!(["bind", "rslave"]));
        assert_eq!(
            got[2].1["options"],
            json!(["nosuid", "nodev", "noexec", "size=1024", "ro"])
        );
        assert_eq!(
            got[3].1["options"],
            json!(["nosuid", "nodev", "noexec", "mode=700"])
        );
        let v = view(&[vol, bind], &dir);
        assert_eq!(v[0]["Name"], "data");
        assert_eq!(v[0]["Driver"], "local");
        assert_eq!(v[0]["Source"], "/data/volumes/data/_data");
        assert_eq!(v[0]["Mode"], "ro");
        assert_eq!(v[0]["RW"], false);
        assert_eq!(v[1]["Propagation"], "rslave");
        assert!(v[1].get("Name").is_none());
        assert_eq!(depth("/a/b/"), 2);
        assert_eq!(depth("/"), 0);
    }
}
