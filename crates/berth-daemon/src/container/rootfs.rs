//! Access to a container's merged root filesystem from the daemon: through `/proc/<pid>/root`
//! while it runs, or by mounting its overlay for the duration of one operation when it does not.

use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
use berth_image::archive::Root;
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
pub fn lowerdirs(d: &Daemon, c: &Container) -> Result<Vec<PathBuf>> {
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

/// A container's root filesystem opened for one operation, and what keeps it there.
pub struct OpenRoot {
    root: Root,
    /// For a stopped container: its overlay mounted in the daemon's namespace (unmounted
    /// after `root` is closed, the run dir removed last).
    mount: Option<(TempMount, RunDir)>,
}

impl OpenRoot {
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
pub fn open_root(d: &Daemon, c: &Container) -> Result<OpenRoot> {
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
    Ok(OpenRoot {
        root,
        mount: Some((mount, run_dir)),
    })
}

/// Run `f` with the container's `/` open (see [`open_root`]; same conditions).
pub fn with_root<T>(d: &Daemon, c: &Container, f: impl FnOnce(&Root) -> Result<T>) -> Result<T> {
    let open = open_root(d, c)?;
    f(open.root())
}
