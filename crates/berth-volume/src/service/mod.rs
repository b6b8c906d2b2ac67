//! The volume service: every volume's record (`<data-root>/volumes/<name>/volume.json`, its
//! content in `_data` beside it), the containers — plain id strings — that reference each one,
//! and the running ones that hold a volume with driver options mounted. It never sees a
//! container record, the daemon or its events: callers emit events after its calls.

use crate::copyup::{self, OwnerMap};
use crate::driver::{Driver, Local};
use crate::error::{Error, Result};
use crate::plan::{MountPoint, Planned, Request, VOLUME};
use crate::util;
use berth_api::volume::Volume as ApiVolume;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The label that marks a volume made for one container with no name given.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The longest volume name: one file name component (its directory is named after it).
pub const MAX_NAME_LEN: usize = 255;

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
}

struct Vol {
    meta: Meta,
    /// Containers (any state) that use the volume.
    refs: BTreeSet<String>,
    /// Running containers that use it: a volume with driver options is mounted while any.
    active: BTreeSet<String>,
    mounted: bool,
}

/// (volume, destination) pairs: volumes to fill from the image's content at the destination.
pub type CopyUps = Vec<(String, String)>;

/// A container's planned mount points made real: its mount points, the copy-ups to do, and the
/// volumes that were created for it (the caller emits their `create` events).
#[derive(Debug, Default)]
pub struct Realized {
    pub mounts: Vec<MountPoint>,
    pub copies: CopyUps,
    pub created: Vec<String>,
}

/// A [`VolumeService::realize`] that failed: the volumes created before the failure, and the
/// mount points done (the caller emits the events and undoes them, see
/// [`VolumeService::remove_anonymous`]).
#[derive(Debug)]
pub struct Unrealized {
    pub error: Error,
    pub mounts: Vec<MountPoint>,
    pub created: Vec<String>,
}

/// The volume service.
pub struct VolumeService {
    /// Host owner of new volumes' `_data`: the remapped root under `--userns-remap`.
    owner: Option<(u32, u32)>,
    root: PathBuf,
    trash: PathBuf,
    drivers: BTreeMap<&'static str, Box<dyn Driver>>,
    vols: Mutex<HashMap<String, Vol>>,
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

/// A name longer than [`MAX_NAME_LEN`] is a 400; the message does not repeat the name.
fn check_len(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::bad_request(format!(
            "volume name is too long ({} characters), the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

fn no_such(name: &str) -> Error {
    Error::not_found(format!("get {name}: no such volume"))
}

impl VolumeService {
    /// Load every volume record under `<data-root>/volumes` (at daemon start). A volume whose
    /// record is there but damaged is handed to `quarantine` (which moves the directory aside
    /// and says where to); one whose creation did not finish goes to the trash.
    pub fn load(
        data_root: &Path,
        owner: Option<(u32, u32)>,
        quarantine: &dyn Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> std::io::Result<VolumeService> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)?;
        let mounted = util::mount_points();
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
                    if mounted.contains(&data) || util::is_mount_root(&data) {
                        tracing::warn!("volume {}: no readable record, skipped", path.display());
                    } else if path.join(RECORD).exists() {
                        // A record that is there but damaged: the content is kept, aside.
                        match quarantine(&path) {
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
                        let moved = util::random_id().map_err(|e| e.message).and_then(|id| {
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
            let is_mounted = mounted.contains(&data) || util::is_mount_root(&data);
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
        let mut drivers: BTreeMap<&'static str, Box<dyn Driver>> = BTreeMap::new();
        drivers.insert("local", Box::new(Local));
        Ok(VolumeService {
            owner,
            root,
            trash: data_root.join("trash"),
            drivers,
            vols: Mutex::new(vols),
        })
    }

    /// Serve volumes of driver `name` with `driver` (`local` is there from the start).
    pub fn register(&mut self, name: &'static str, driver: Box<dyn Driver>) {
        self.drivers.insert(name, driver);
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Vol>> {
        self.vols.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver of an existing volume. A record naming a driver this daemon does not have
    /// (none is ever written) is served by `local`, which every volume was before drivers.
    fn driver_of(&self, m: &Meta) -> &dyn Driver {
        self.drivers
            .get(m.driver.as_str())
            .map(Box::as_ref)
            .unwrap_or(&Local)
    }

    /// The host directory a volume's content lives in.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
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
            None => util::random_id()?,
        };
        check_len(&name)?;
        let driver = if req.driver.is_empty() {
            "local".to_string()
        } else {
            req.driver.clone()
        };
        let mut map = self.map();
        if let Some(v) = map.get_mut(&name) {
            if v.meta.driver != driver {
                return Err(Error::conflict(format!(
                    "a volume with the name {name} already exists with driver {:?}",
                    v.meta.driver
                ))
                .during("create", &name));
            }
            if let Some(c) = cid {
                v.refs.insert(c.to_string());
            }
            return Ok((v.meta.clone(), false));
        }
        let checked = check_name(&name).and_then(|()| {
            let Some(d) = self.drivers.get(driver.as_str()) else {
                return Err(Error::not_found(format!(
                    "error looking up volume plugin {driver}: plugin {driver:?} not found"
                )));
            };
            d.check_options(&req.options)
        });
        checked.map_err(|e| e.during("create", &name))?;
        let meta = Meta {
            name: name.clone(),
            driver,
            created_at: util::now_rfc3339(),
            labels: req.labels,
            options: req.options,
        };
        self.write(&meta)
            .map_err(|e| Error::internal(e.to_string()).during("create", &name))?;
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

    /// Make the volume's directories (its driver makes `_data`) and write its record
    /// atomically (fsynced).
    fn write(&self, m: &Meta) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.root.join(&m.name);
        std::fs::DirBuilder::new().mode(0o701).create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o701))?;
        self.driver_of(m).create(&dir.join("_data"), self.owner)?;
        let data = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
        berth_api::fsutil::write_atomic(&dir.join(RECORD), &data, true)
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

    /// Note that container `cid` uses `name` (at boot, from the container's mount points).
    pub fn reference(&self, name: &str, cid: &str) {
        if let Some(v) = self.map().get_mut(name) {
            v.refs.insert(cid.to_string());
        }
    }

    /// Create or reference the volumes of planned mount points for container `cid`. On an
    /// error, the references taken are dropped again and what was done is handed back for
    /// the caller to undo (events first, then [`VolumeService::remove_anonymous`]).
    pub fn realize(
        &self,
        cid: &str,
        plans: Vec<Planned>,
    ) -> std::result::Result<Realized, Unrealized> {
        let mut done = Realized::default();
        for p in plans {
            let mut mp = p.mp;
            match (p.volume, mp.kind.as_str()) {
                (Some(mut req), _) => {
                    if req.name.is_none() {
                        req.labels.insert(ANONYMOUS_LABEL.into(), String::new());
                    }
                    match self.ensure(req, Some(cid)) {
                        Ok((meta, created)) => {
                            if created {
                                done.created.push(meta.name.clone());
                            }
                            mp.name = meta.name
                        }
                        Err(error) => {
                            self.release(cid);
                            return Err(Unrealized {
                                error,
                                mounts: done.mounts,
                                created: done.created,
                            });
                        }
                    }
                }
                // From --volumes-from: the volume exists and is taken as is.
                (None, VOLUME) => self.reference(&mp.name, cid),
                _ => {}
            }
            if p.copy {
                done.copies.push((mp.name.clone(), mp.destination.clone()));
            }
            done.mounts.push(mp);
        }
        Ok(done)
    }

    /// Container `cid` is gone: drop its references (and any activation).
    pub fn release(&self, cid: &str) {
        for v in self.map().values_mut() {
            v.refs.remove(cid);
        }
        self.deactivate(cid);
    }

    /// Remove the anonymous volumes among `mounts` that nothing uses any more. Returns the
    /// removed volumes' names with the trash directories the caller deletes; volumes that
    /// another container still uses stay.
    pub fn remove_anonymous(&self, mounts: &[MountPoint]) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for m in mounts.iter().filter(|m| m.kind == VOLUME && m.anonymous) {
            match self.remove(&m.name, true) {
                Ok(Some(dir)) => out.push((m.name.clone(), dir)),
                Ok(None) => {}
                Err(e) => tracing::debug!("keeping volume {}: {}", m.name, e.message),
            }
        }
        out
    }

    /// Container `cid` starts with volume `name`: mount it if it is a mount of its own and
    /// nothing holds it yet.
    pub fn activate(&self, name: &str, cid: &str) -> Result<()> {
        let mut map = self.map();
        let v = map.get_mut(name).ok_or_else(|| no_such(name))?;
        let driver = self.driver_of(&v.meta);
        if driver.mounts(&v.meta.options) && !v.mounted {
            driver.mount(&v.meta.options, &self.data_dir(name))?;
            v.mounted = true;
        }
        v.active.insert(cid.to_string());
        Ok(())
    }

    /// Container `cid` starts (or its files are used stopped) with `mounts`: mount those of
    /// its volumes that need it; on a failure, none stays held.
    pub fn activate_mounts(&self, cid: &str, mounts: &[MountPoint]) -> Result<()> {
        for m in mounts.iter().filter(|m| m.kind == VOLUME) {
            if let Err(e) = self.activate(&m.name, cid) {
                self.deactivate(cid);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Container `cid` runs with `mounts` (found so at boot): it references their volumes, and
    /// holds their mounts when `running`.
    pub fn adopt(&self, cid: &str, mounts: &[MountPoint], running: bool) {
        let mut map = self.map();
        for m in mounts.iter().filter(|m| m.kind == VOLUME) {
            if let Some(v) = map.get_mut(&m.name) {
                v.refs.insert(cid.to_string());
                if running {
                    v.active.insert(cid.to_string());
                }
            }
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
        match self
            .driver_of(&v.meta)
            .unmount(&self.data_dir(&v.meta.name))
        {
            Ok(()) => v.mounted = false,
            Err(e) => tracing::warn!("unmounting volume {}: {e}", v.meta.name),
        }
    }

    /// Fill volume `name` from the image directory `src` (opened by the caller, beneath the
    /// container's root) if the volume is empty; see [`copyup::populate`].
    pub fn copy_up(
        &self,
        name: &str,
        src: BorrowedFd<'_>,
        owner: Option<OwnerMap<'_>>,
    ) -> std::io::Result<()> {
        copyup::populate(
            src,
            &self.data_dir(name),
            &self.root.join(name).join(COPY_MARKER),
            owner,
        )
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
        if v.mounted || util::mount_points().contains(&data) || util::is_mount_root(&data) {
            v.mounted = true;
            self.unmount(v);
            if v.mounted {
                return Err(Error::internal(format!(
                    "remove {name}: the volume is still mounted"
                )));
            }
        }
        // Not named after the volume: a name may take a whole file name.
        let trash = self.trash.join(format!("volume-{}", util::random_id()?));
        std::fs::rename(self.root.join(name), &trash)
            .map_err(|e| Error::internal(e.to_string()).during("remove", name))?;
        map.remove(name);
        Ok(Some(trash))
    }

    /// Bytes a volume holds (0 for one mounted from elsewhere, or unknown).
    pub fn size(&self, name: &str) -> u64 {
        let Some(meta) = self.map().get(name).map(|v| v.meta.clone()) else {
            return 0;
        };
        self.driver_of(&meta)
            .size(&meta.options, &self.data_dir(name))
    }
}

#[cfg(test)]
mod tests;
