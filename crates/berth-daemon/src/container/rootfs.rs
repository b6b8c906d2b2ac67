//! Access to a container's merged root filesystem from the daemon: through `/proc/<pid>/root`
//! while it runs, or by mounting its overlay for the duration of one operation when it does not. It
//! never changes a container's record or state, and beneath a root it makes only missing mount
//! points: what is done there is the caller's.

use super::handle::Container;
use super::service::Service;
use crate::error::{Error, Result};
use berth_image::archive::Root;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Mount points berth binds over in every container. They live in an init layer (like
/// Docker's `-init` layer, but one for all containers) below the upper dir, so creating them
/// never shows up in `diff` or `commit`.
const INIT_DIRS: &[&str] = &[
    "dev",
    "dev/pts",
    "dev/shm",
    "dev/mqueue",
    "proc",
    "sys",
    "etc",
];
const INIT_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// Make the init layer all containers share, once (at daemon start).
pub fn make_init_layer(data_root: &Path) -> Result<PathBuf> {
    let init = data_root.join("init-layer");
    if init.join(INIT_FILES[0]).exists() {
        return Ok(init);
    }
    let tmp = data_root.join("init-layer.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    for dir in INIT_DIRS {
        std::fs::create_dir_all(tmp.join(dir))?;
    }
    for f in INIT_FILES {
        std::fs::write(tmp.join(f), b"")?;
    }
    let _ = std::fs::remove_dir_all(&init);
    std::fs::rename(&tmp, &init)?;
    Ok(init)
}

/// The overlay lower dirs of a container, top first: the shared init layer, then the image's
/// layers.
pub fn lowerdirs(d: &Service, c: &Container) -> Result<Vec<PathBuf>> {
    let mut out = vec![d.cfg.data_root.join("init-layer")];
    out.extend(d.images.rootfs_layers(&c.rec().image_id)?);
    Ok(out)
}

/// overlayfs mount options for the container.
pub fn overlay_options(paths: &super::Paths, lowers: &[PathBuf]) -> String {
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "lowerdir={lower},upperdir={},workdir={}",
        paths.upper().display(),
        paths.work().display()
    )
}

/// Read a small file of a container-controlled tree without leaving it: the tree's top is
/// opened once and the file resolves below it with `root` as `/` (openat2 RESOLVE_IN_ROOT,
/// no magic links); a symlink as the last component is not followed, so a planted
/// `/etc/passwd -> /host/file` link reads nothing, and only a regular file is read.
pub fn read_in_root(root: &Path, path: &str) -> Option<String> {
    berth_image::archive::Root::open(root)
        .ok()?
        .read_small_file(Path::new(path), 4 << 20)
}

/// The run dir made for one operation on a stopped container; removed on drop (after the
/// mount guard, which comes first in [`OpenRoot`] and so is dropped first).
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An overlay mounted on the container's rootfs dir; unmounted on drop.
struct TempMount(PathBuf);

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("unmounting {}: {e}", self.0.display());
        }
    }
}

/// The volumes of a stopped container taken in use for one operation (a volume with mount
/// options is mounted meanwhile); let go on drop.
struct VolumesHeld<'a> {
    d: &'a Service,
    id: String,
}

impl Drop for VolumesHeld<'_> {
    fn drop(&mut self) {
        self.d.volumes.deactivate(&self.id);
    }
}

/// A container's root filesystem opened for one operation, and what keeps it there.
pub struct OpenRoot<'a> {
    root: Root,
    /// For a stopped container: its overlay mounted in the daemon's namespace (unmounted
    /// after `root` is closed, with the volumes bound in it; then the volumes are let go and
    /// the run dir removed last).
    mount: Option<(TempMount, Option<VolumesHeld<'a>>, RunDir)>,
}

impl OpenRoot<'_> {
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Whether the filesystem was mounted for the operation (the container does not run):
    /// then the container must not start until it is done.
    pub fn mounted(&self) -> bool {
        self.mount.is_some()
    }
}

/// Open the container's `/` as a directory descriptor. Everything below it is then reached
/// by descriptors (berth-image's `Root`), so a running container is read through
/// `/proc/<pid>/root` without being frozen: whatever it renames meanwhile, no step leaves its
/// root. Call from a blocking thread, with the container's op lock held so it cannot start or
/// be removed while this runs.
///
/// A running container's volumes and bind mounts are seen at their mount points; with
/// `volumes`, a stopped container's are too (bound there for the operation, as dockerd does
/// for `cp`), and without, only its own filesystem is (the image content a volume hides).
pub fn open_root<'a>(d: &'a Service, c: &Container, volumes: bool) -> Result<OpenRoot<'a>> {
    let r = c.snapshot();
    if r.is_running() && r.state.pid > 0 {
        let root = Root::open(Path::new(&format!("/proc/{}/root", r.state.pid)))?;
        return Ok(OpenRoot { root, mount: None });
    }
    let lowers = lowerdirs(d, c)?;
    let target = c.paths.rootfs();
    for dir in [&target, &c.paths.upper(), &c.paths.work()] {
        std::fs::create_dir_all(dir)?;
    }
    let run_dir = RunDir(c.paths.run_dir.clone());
    let opts = overlay_options(&c.paths, &lowers);
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| Error::internal(format!("mounting the container's filesystem: {e}")))?;
    let mount = TempMount(target.clone());
    let root = Root::open(&target)?;
    let mut held = None;
    if volumes {
        super::volumes::activate(d, &r)?;
        held = Some(VolumesHeld {
            d,
            id: c.id.clone(),
        });
        // Binds below the temporary overlay stay in it (unmounted with it, seen nowhere else).
        nix::mount::mount(
            None::<&str>,
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| Error::internal(format!("making the container's mount private: {e}")))?;
        bind_volumes(d, &r, &root)?;
        // A read-only root stays read-only for the kernel too (the volumes on it keep their
        // own mode), whatever path a write resolves through.
        if r.host_config.readonly_rootfs {
            nix::mount::mount(
                None::<&str>,
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND
                    | nix::mount::MsFlags::MS_REMOUNT
                    | nix::mount::MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| Error::internal(format!("making the container's root read-only: {e}")))?;
        }
    }
    Ok(OpenRoot {
        root,
        mount: Some((mount, held, run_dir)),
    })
}

/// Bind a stopped container's volumes and bind mounts at their mount points below `root`
/// (parents first), read-only (with what is below them) where they are; a mount point the container lacks is made, as
/// at start. Each mount point resolves inside the root, so no symlink planted in the
/// container's files (or in a volume another container changes) leads a bind outside it.
/// A bind whose source is gone shows nothing, as its container would fail to start.
fn bind_volumes(d: &Service, r: &super::Record, root: &Root) -> Result<()> {
    use berth_volume::{depth, TMPFS, VOLUME};
    use std::os::fd::AsFd;
    let mut mounts: Vec<_> = r.mounts.iter().filter(|m| m.kind != TMPFS).collect();
    mounts.sort_by_key(|m| depth(&m.destination));
    for m in mounts {
        let source = if m.kind == VOLUME {
            d.volumes.data_dir(&m.name)
        } else {
            PathBuf::from(&m.source)
        };
        let Ok(meta) = std::fs::metadata(&source) else {
            continue;
        };
        let dst = Path::new(&m.destination);
        let at = root.mount_point(dst, meta.is_dir())?;
        // A private clone, read-only throughout where the mount is: a nested mount made
        // later on it stays here, and no submount of a read-only bind is writable.
        let tree = berth_runtime::private_clone(&source, !m.non_recursive, !m.rw)
            .map_err(|e| Error::internal(format!("binding the mount at {}: {e}", m.destination)))?;
        berth_runtime::attach_at(tree.as_fd(), at.as_fd(), &m.destination)
            .map_err(|e| Error::internal(format!("binding the mount at {}: {e}", m.destination)))?;
    }
    Ok(())
}

/// Run `f` with the container's `/` open (see [`open_root`]; same conditions).
pub fn with_root<T>(
    d: &Service,
    c: &Container,
    volumes: bool,
    f: impl FnOnce(&Root) -> Result<T>,
) -> Result<T> {
    let open = open_root(d, c, volumes)?;
    f(open.root())
}

/// The container's own filesystem as `docker export` writes it, running or not: its layers
/// (its changes, the init layer, the image's) in a read-only overlay that is mounted nowhere
/// (a detached mount, gone when the descriptor closes). Neither volumes nor what the runtime
/// mounts (`/dev`, `/proc`, `/etc/hosts`…) are in it; their mount points show as the layers
/// have them, as in dockerd's export.
pub fn open_layers(d: &Service, c: &Container) -> Result<Root> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags,
        MountAttrFlags,
    };
    let fail = |what: &str, e: rustix::io::Errno| {
        Error::internal(format!(
            "mounting the layers of container {} ({what}): {e}",
            c.id
        ))
    };
    // A container that never started has no upper dir yet. Made only inside the container's
    // own directory (a removal racing with this has moved that away: nothing is recreated).
    match std::fs::create_dir(c.paths.upper()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::not_found(format!("container {}: {e}", c.id))),
    }
    let mut lowers = vec![c.paths.upper()];
    lowers.extend(lowerdirs(d, c)?);
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| fail("fsopen", e))?;
    for l in &lowers {
        let l = l
            .to_str()
            .ok_or_else(|| Error::internal(format!("layer path {} is not UTF-8", l.display())))?;
        fsconfig_set_string(fs.as_fd(), "lowerdir+", l).map_err(|e| fail("lowerdir", e))?;
    }
    fsconfig_create(fs.as_fd()).map_err(|e| fail("fsconfig", e))?;
    let mnt = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY,
    )
    .map_err(|e| fail("fsmount", e))?;
    Ok(Root::from_fd(mnt, &c.paths.upper()))
}
