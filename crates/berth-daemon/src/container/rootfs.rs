//! Access to a container's merged root filesystem from the daemon: through `/proc/<pid>/root`
//! while it runs, or by mounting its overlay for the duration of one operation when it does not.

use crate::error::{Error, Result};
use crate::state::{Container, Daemon};
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
pub fn overlay_options(c: &Container, lowers: &[PathBuf]) -> String {
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "lowerdir={lower},upperdir={},workdir={}",
        c.paths.upper().display(),
        c.paths.work().display()
    )
}

/// Read a small file of a container-controlled tree without leaving it: directories resolve
/// with `root` as `/` (openat2 RESOLVE_IN_ROOT) and a symlink as the last component is not
/// followed, so a planted `/etc/passwd -> /host/file` link reads nothing.
pub fn read_in_root(root: &Path, path: &str) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let host = berth_image::archive::resolve_in_root(root, Path::new(path)).ok()?;
    // O_NONBLOCK: a FIFO planted there must not hang the daemon; only regular files count.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(host)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The run dir made for one operation on a stopped container; removed on drop (after the
/// mount guard, which is declared later and so dropped first).
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

/// Run `f` with the host path of the container's `/`. Call from a blocking thread, with the
/// container's op lock held so it cannot start or be removed meanwhile.
pub fn with_root<T>(d: &Daemon, c: &Container, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let r = c.snapshot();
    if r.is_running() && r.state.pid > 0 {
        // Frozen for the operation, as Docker does, so the container cannot swap a checked
        // directory for a symlink while the daemon walks it.
        let rt = berth_runtime::Runtime::new(&c.runtime_root);
        let freeze = r.state.status == super::status::RUNNING;
        if freeze {
            rt.pause(&c.id)
                .map_err(|e| Error::internal(format!("freezing the container: {e}")))?;
        }
        // "/." so that the magic link is followed by walks that stat the root itself.
        let res = f(Path::new(&format!("/proc/{}/root/.", r.state.pid)));
        if freeze {
            if let Err(e) = rt.resume(&c.id) {
                tracing::warn!("thawing {}: {e}", c.id);
            }
        }
        return res;
    }
    let lowers = lowerdirs(d, c)?;
    let target = c.paths.rootfs();
    for dir in [&target, &c.paths.upper(), &c.paths.work()] {
        std::fs::create_dir_all(dir)?;
    }
    let _run_dir = RunDir(c.paths.run_dir.clone());
    let opts = overlay_options(c, &lowers);
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| Error::internal(format!("mounting the container's filesystem: {e}")))?;
    let _guard = TempMount(target.clone());
    f(&target)
}
