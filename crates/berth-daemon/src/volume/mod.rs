//! Volumes of the `local` driver: `<data-root>/volumes/<name>/_data` with a JSON record beside
//! it, the containers that reference each one, and the mounts of volumes made with driver
//! options (`type`, `device`, `o`), which are up while a running container uses them.

pub mod copyup;
pub mod mounts;

use crate::error::{Error, Result};
use berth_api::volume::Volume as ApiVolume;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The label that marks a volume made for one container with no name given.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const RECORD: &str = "volume.json";
/// Present in a volume's directory while a copy-up fills it (see [`copyup::populate`]).
const COPY_MARKER: &str = "copy-up";

/// What is persisted in `volumes/<name>/volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl Meta {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
    /// Whether the volume is a mount of its own (driver options) rather than a directory.
    fn mounts(&self) -> bool {
        self.options.contains_key("type") || self.options.contains_key("device")
    }
}

struct Vol {
    meta: Meta,
    /// Containers (any state) that use the volume.
    refs: BTreeSet<String>,
    /// Running containers that use it: a volume with driver options is mounted while any.
    active: BTreeSet<String>,
    mounted: bool,
}

/// The volume store.
pub struct Volumes {
    /// Host owner of new volumes' `_data`: the remapped root under `--userns-remap`.
    owner: Option<(u32, u32)>,
    root: PathBuf,
    trash: PathBuf,
    vols: Mutex<HashMap<String, Vol>>,
}

/// What a container asks for when it names (or leaves unnamed) a volume.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// None: a new anonymous volume.
    pub name: Option<String>,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

fn too_short() -> Error {
    Error::bad_request(
        "volume name is too short, names should be at least two alphanumeric characters",
    )
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.len() == 1 {
        return Err(too_short());
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(ok) {
        return Err(Error::bad_request(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// The local driver's options: `type`, `device` and `o` go together; `size` needs quotas.
fn check_options(opts: &BTreeMap<String, String>) -> Result<()> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
            return Err(Error::bad_request(format!("invalid option: {k:?}")));
        }
    }
    if opts.contains_key("size") {
        return Err(Error::bad_request(
            "quota size requested but no quota support",
        ));
    }
    for (opt, needs) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            if let Some(missing) = needs.iter().find(|n| !opts.contains_key(**n)) {
                return Err(Error::bad_request(format!(
                    "missing required option: {missing:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Prefix an error's message as Docker's volume service does (`create x: ...`).
fn op_err(op: &str, name: &str, e: Error) -> Error {
    let mut e = e;
    e.0.message = format!("{op} {name}: {}", e.0.message);
    e
}

fn no_such(name: &str) -> Error {
    Error::not_found(format!("get {name}: no such volume"))
}

fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Mount points of the daemon's namespace, from /proc/self/mountinfo (octal escapes undone).
fn mount_points() -> BTreeSet<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| {
            let mut out = Vec::new();
            let b = p.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && i + 3 < b.len() {
                    if let Ok(v) = u8::from_str_radix(&p[i + 1..i + 4], 8) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
        })
        .collect()
}

/// Split a local volume's `o` into mount flags and the data string, as mount(8) does.
fn mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        let (set, clear) = match opt {
            "defaults" => (F::empty(), F::empty()),
            "ro" => (F::MS_RDONLY, F::empty()),
            "rw" => (F::empty(), F::MS_RDONLY),
            "nosuid" => (F::MS_NOSUID, F::empty()),
            "suid" => (F::empty(), F::MS_NOSUID),
            "nodev" => (F::MS_NODEV, F::empty()),
            "dev" => (F::empty(), F::MS_NODEV),
            "noexec" => (F::MS_NOEXEC, F::empty()),
            "exec" => (F::empty(), F::MS_NOEXEC),
            "sync" => (F::MS_SYNCHRONOUS, F::empty()),
            "async" => (F::empty(), F::MS_SYNCHRONOUS),
            "noatime" => (F::MS_NOATIME, F::empty()),
            "atime" => (F::empty(), F::MS_NOATIME),
            "nodiratime" => (F::MS_NODIRATIME, F::empty()),
            "diratime" => (F::empty(), F::MS_NODIRATIME),
            "relatime" => (F::MS_RELATIME, F::empty()),
            "strictatime" => (F::MS_STRICTATIME, F::empty()),
            "bind" => (F::MS_BIND, F::empty()),
            "rbind" => (F::MS_BIND | F::MS_REC, F::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

impl Volumes {
    /// Load every volume record under `<data-root>/volumes` (at daemon start).
    pub fn load(data_root: &Path, owner: Option<(u32, u32)>) -> std::io::Result<Volumes> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)?;
        let mounted = mount_points();
        let mut vols = HashMap::new();
        for e in std::fs::read_dir(&root)?.flatten() {
            let path = e.path();
            let meta: Meta = match std::fs::read(path.join(RECORD))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(m) => m,
                None => {
                    // A volume whose creation did not finish: out of the way (to the trash,
                    // emptied at boot), so that its name can be used again; never while
                    // something is mounted on it.
                    let data = path.join("_data");
                    if mounted.contains(&data) || is_mount_root(&data) {
                        tracing::warn!("volume {}: no readable record, skipped", path.display());
                    } else if path.join(RECORD).exists() {
                        // A record that is there but damaged: the content is kept, aside.
                        match crate::quarantine::move_aside(data_root, "volumes", &path) {
                            Ok(to) => tracing::warn!(
                                "volume {}: unreadable record, moved to {}",
                                path.display(),
                                to.display()
                            ),
                            Err(err) => tracing::warn!(
                                "volume {}: unreadable record ({err}), skipped",
                                path.display()
                            ),
                        }
                    } else {
                        let trash = data_root.join("trash");
                        let _ = std::fs::create_dir_all(&trash);
                        // Not named after the volume: a name may take a whole file name.
                        let moved =
                            crate::util::random_id()
                                .map_err(|e| e.0.message)
                                .and_then(|id| {
                                    let to = trash.join(format!("volume-unfinished-{id}"));
                                    std::fs::rename(&path, &to).map_err(|e| e.to_string())
                                });
                        if let Err(err) = moved {
                            tracing::warn!("volume {}: no readable record: {err}", path.display());
                        }
                    }
                    continue;
                }
            };
            let data = path.join("_data");
            let is_mounted = mounted.contains(&data) || is_mount_root(&data);
            if path.join(COPY_MARKER).exists() {
                // A daemon killed during a copy-up: the volume was empty before it began.
                match copyup::empty(&data)
                    .and_then(|()| std::fs::remove_file(path.join(COPY_MARKER)))
                {
                    Ok(()) => tracing::info!(
                        "volume {}: removed what an unfinished copy from an image left",
                        meta.name
                    ),
                    Err(e) => tracing::warn!(
                        "volume {}: removing an unfinished copy from an image: {e}",
                        meta.name
                    ),
                }
            }
            vols.insert(
                meta.name.clone(),
                Vol {
                    meta,
                    refs: BTreeSet::new(),
                    active: BTreeSet::new(),
                    mounted: is_mounted,
                },
            );
        }
        Ok(Volumes {
            owner,
            root,
            trash: data_root.join("trash"),
            vols: Mutex::new(vols),
        })
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Vol>> {
        self.vols.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host directory a volume's content lives in.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// The file that marks a copy-up into the volume as under way.
    pub fn copy_marker(&self, name: &str) -> PathBuf {
        self.root.join(name).join(COPY_MARKER)
    }

    /// The volume resource the API shows.
    pub fn view(&self, m: &Meta) -> ApiVolume {
        ApiVolume {
            created_at: m.created_at.clone(),
            driver: m.driver.clone(),
            labels: m.labels.clone(),
            mountpoint: self.data_dir(&m.name).display().to_string(),
            name: m.name.clone(),
            options: (!m.options.is_empty()).then(|| m.options.clone()),
            scope: "local".into(),
        }
    }

    /// Create a volume (`POST /volumes/create`), or return the one of that name.
    pub fn create(&self, req: Request) -> Result<ApiVolume> {
        let (meta, _) = self.ensure(req, None)?;
        Ok(self.view(&meta))
    }

    /// Get or create the volume `req` names, referenced by container `cid` when given (under
    /// one lock, so it cannot be removed in between). Returns it and whether it is new.
    pub fn ensure(&self, req: Request, cid: Option<&str>) -> Result<(Meta, bool)> {
        let name = match &req.name {
            Some(n) => n.clone(),
            None => crate::util::random_id()?,
        };
        crate::names::check_len("volume", &name)?;
        let driver = if req.driver.is_empty() {
            "local".to_string()
        } else {
            req.driver.clone()
        };
        let mut map = self.map();
        if let Some(v) = map.get_mut(&name) {
            if v.meta.driver != driver {
                return Err(op_err(
                    "create",
                    &name,
                    Error::conflict(format!(
                        "a volume with the name {name} already exists with driver {:?}",
                        v.meta.driver
                    )),
                ));
            }
            if let Some(c) = cid {
                v.refs.insert(c.to_string());
            }
            return Ok((v.meta.clone(), false));
        }
        let checked = check_name(&name).and_then(|()| {
            if driver != "local" {
                return Err(Error::not_found(format!(
                    "error looking up volume plugin {driver}: plugin {driver:?} not found"
                )));
            }
            check_options(&req.options)
        });
        checked.map_err(|e| op_err("create", &name, e))?;
        let meta = Meta {
            name: name.clone(),
            driver,
            created_at: now_rfc3339(),
            labels: req.labels,
            options: req.options,
        };
        self.write(&meta)
            .map_err(|e| op_err("create", &name, Error::internal(e.to_string())))?;
        map.insert(
            name,
            Vol {
                meta: meta.clone(),
                refs: cid
                    .map(|c| BTreeSet::from([c.to_string()]))
                    .unwrap_or_default(),
                active: BTreeSet::new(),
                mounted: false,
            },
        );
        Ok((meta, true))
    }

    /// Make the volume's directories and write its record atomically (fsynced).
    fn write(&self, m: &Meta) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.root.join(&m.name);
        std::fs::DirBuilder::new().mode(0o701).create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o701))?;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dir.join("_data"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::lchown(dir.join("_data"), Some(uid), Some(gid))?;
        }
        let data = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
        berth_shim::config::write_atomic(&dir.join(RECORD), &data, true)
    }

    pub fn get(&self, name: &str) -> Result<ApiVolume> {
        let map = self.map();
        let v = map.get(name).ok_or_else(|| no_such(name))?;
        Ok(self.view(&v.meta))
    }

    /// Every volume with whether a container uses it.
    pub fn list(&self) -> Vec<(Meta, bool)> {
        self.map()
            .values()
            .map(|v| (v.meta.clone(), !v.refs.is_empty()))
            .collect()
    }

    /// Every volume with the number of containers that use it (`system df`'s RefCount).
    pub fn ref_counts(&self) -> Vec<(Meta, usize)> {
        self.map()
            .values()
            .map(|v| (v.meta.clone(), v.refs.len()))
            .collect()
    }

    /// Note that container `cid` uses `name` (at boot, from the container's record).
    pub fn reference(&self, name: &str, cid: &str) {
        if let Some(v) = self.map().get_mut(name) {
            v.refs.insert(cid.to_string());
        }
    }

    /// Container `cid` is gone: drop its references (and any activation).
    pub fn release(&self, cid: &str) {
        for v in self.map().values_mut() {
            v.refs.remove(cid);
        }
        self.deactivate(cid);
    }

    /// Container `cid` starts with volume `name`: mount it if it is a mount of its own and
    /// nothing holds it yet.
    pub fn activate(&self, name: &str, cid: &str) -> Result<()> {
        let mut map = self.map();
        let v = map.get_mut(name).ok_or_else(|| no_such(name))?;
        if v.meta.mounts() && !v.mounted {
            let target = self.data_dir(name);
            mount_local(&v.meta.options, &target).map_err(|e| {
                Error::internal(format!(
                    "error while mounting volume '{}': failed to mount local volume: {e}",
                    target.display()
                ))
            })?;
            v.mounted = true;
        }
        v.active.insert(cid.to_string());
        Ok(())
    }

    /// Container `cid` runs with volume `name` (found running at boot): its mount is up.
    pub fn adopt(&self, name: &str, cid: &str) {
        if let Some(v) = self.map().get_mut(name) {
            v.active.insert(cid.to_string());
        }
    }

    /// Container `cid` stopped: unmount the volumes no running container holds any more.
    pub fn deactivate(&self, cid: &str) {
        let mut map = self.map();
        for v in map.values_mut() {
            if v.active.remove(cid) && v.active.is_empty() && v.mounted {
                self.unmount(v);
            }
        }
    }

    /// Unmount volumes that are mounted but held by no running container (after boot).
    pub fn sweep(&self) {
        let mut map = self.map();
        for v in map.values_mut() {
            if v.active.is_empty() && v.mounted {
                self.unmount(v);
            }
        }
    }

    fn unmount(&self, v: &mut Vol) {
        let target = self.data_dir(&v.meta.name);
        match nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => v.mounted = false,
            Err(e) => tracing::warn!("unmounting volume {}: {e}", v.meta.name),
        }
    }

    /// Take an unused volume out of the store and move its directory to the trash; the
    /// caller deletes the returned directory. `force` makes a missing volume no error.
    pub fn remove(&self, name: &str, force: bool) -> Result<Option<PathBuf>> {
        let mut map = self.map();
        let Some(v) = map.get_mut(name) else {
            return if force { Ok(None) } else { Err(no_such(name)) };
        };
        if !v.refs.is_empty() {
            let ids: Vec<&str> = v.refs.iter().map(String::as_str).collect();
            return Err(Error::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(", ")
            )));
        }
        let data = self.data_dir(name);
        if v.mounted || mount_points().contains(&data) || is_mount_root(&data) {
            v.mounted = true;
            self.unmount(v);
            if v.mounted {
                return Err(Error::internal(format!(
                    "remove {name}: the volume is still mounted"
                )));
            }
        }
        // Not named after the volume: a name may take a whole file name.
        let trash = self
            .trash
            .join(format!("volume-{}", crate::util::random_id()?));
        std::fs::rename(self.root.join(name), &trash)
            .map_err(|e| op_err("remove", name, Error::internal(e.to_string())))?;
        map.remove(name);
        Ok(Some(trash))
    }

    /// Bytes a volume's directory holds (0 for one mounted from elsewhere).
    pub fn size(&self, name: &str) -> u64 {
        if self.map().get(name).is_none_or(|v| v.meta.mounts()) {
            return 0;
        }
        let mut total = 0;
        let mut stack = vec![self.data_dir(name)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                // DirEntry::metadata does not follow symlinks.
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                } else if m.is_file() {
                    total += m.len();
                }
            }
        }
        total
    }
}

/// Mount a volume made with driver options on its data directory.
fn mount_local(opts: &BTreeMap<String, String>, target: &Path) -> std::result::Result<(), String> {
    use nix::mount::MsFlags as F;
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let fstype = opts.get("type").map(String::as_str).unwrap_or("");
    let (flags, data) = mount_flags(opts.get("o").map(String::as_str).unwrap_or(""));
    let describe = |e: nix::errno::Errno| {
        format!(
            "mount {device}:{}, flags: {:#x}, data: {data}: {}",
            target.display(),
            flags.bits(),
            e.desc().to_lowercase()
        )
    };
    let bind = flags.contains(F::MS_BIND);
    let first = if bind {
        flags & (F::MS_BIND | F::MS_REC)
    } else {
        flags
    };
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    let ftype = (!bind && !fstype.is_empty()).then_some(fstype);
    nix::mount::mount(Some(device), target, ftype, first, data_opt).map_err(describe)?;
    // A bind mount takes its other flags only on a remount.
    let rest = flags - (F::MS_BIND | F::MS_REC);
    if bind && !rest.is_empty() {
        if let Err(e) = nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            F::MS_REMOUNT | F::MS_BIND | rest,
            None::<&str>,
        ) {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            return Err(describe(e));
        }
    }
    Ok(())
}

/// Whether `p` is the root of a mount (statx's STATX_ATTR_MOUNT_ROOT; it also sees bind mounts
/// within one file system, which a device number comparison would not).
fn is_mount_root(p: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
        .map(|r| {
            r.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && r.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("data").is_ok());
        assert!(check_name("a1_b.c-d").is_ok());
        assert!(check_name("x").unwrap_err().0.message.contains("too short"));
        assert!(check_name("-").unwrap_err().0.message.contains("too short"));
        for bad in ["", "-x", "a/b", "a b", ".x", "é1"] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.0.status, 400, "{bad}");
        }
    }

    #[test]
    fn options() {
        let o = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(check_options(&o(&[])).is_ok());
        assert!(check_options(&o(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m")
        ]))
        .is_ok());
        assert_eq!(
            check_options(&o(&[("type", "tmpfs")]))
                .unwrap_err()
                .0
                .message,
            "missing required option: \"device\""
        );
        assert_eq!(
            check_options(&o(&[("bogus", "1")])).unwrap_err().0.message,
            "invalid option: \"bogus\""
        );
        let (f, d) = mount_flags("size=10m,ro,nosuid,mode=700");
        assert!(f.contains(nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NOSUID));
        assert_eq!(d, "size=10m,mode=700");
    }
}
