//! The container's root filesystem: mount propagation, the rootfs mount (bind or overlay),
//! pivot_root, masked and read-only paths, sysctls and the read-only root.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use crate::error::{Error, Result};
use crate::mounts::{bind_remount, Options};
use crate::sys;

/// Annotation whose value is an overlayfs option string to mount on the rootfs inside the
/// container's mount namespace.
pub const OVERLAY_ANNOTATION: &str = "berth.overlay";

/// Make the whole tree rslave/rprivate/… so nothing we mount propagates to the host.
pub(crate) fn set_propagation(rootfs_propagation: Option<&str>) -> Result<()> {
    let flag = match rootfs_propagation.unwrap_or("") {
        "" | "private" | "rprivate" => libc::MS_PRIVATE,
        "slave" | "rslave" => libc::MS_SLAVE,
        "shared" | "rshared" => libc::MS_SHARED,
        "unbindable" | "runbindable" => libc::MS_UNBINDABLE,
        other => {
            return Err(Error::Config(format!(
                "invalid rootfsPropagation {other:?}"
            )))
        }
    };
    sys::mount(None, Path::new("/"), None, flag | libc::MS_REC, None)
        .map_err(|e| Error::sys("mount", "make / private/slave", e))?;
    Ok(())
}

/// Mount the rootfs onto itself (so it is a mount point for pivot_root), or an overlay on it.
pub(crate) fn mount_rootfs(rootfs: &Path, overlay: Option<&str>) -> Result<()> {
    match overlay {
        Some(opts) => mount_overlay(rootfs, opts),
        None => sys::mount(
            Some(rootfs),
            rootfs,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| Error::sys("mount", format!("bind rootfs {}", rootfs.display()), e)),
    }
}

fn mount_overlay(rootfs: &Path, opts: &str) -> Result<()> {
    // mount(2) takes at most one page of options; long layer lists go through the new mount
    // API one option at a time.
    if opts.len() < 4000 {
        return sys::mount(
            Some(Path::new("overlay")),
            rootfs,
            Some("overlay"),
            0,
            Some(opts),
        )
        .map_err(|e| {
            Error::sys(
                "mount",
                format!("overlay on {} ({opts})", rootfs.display()),
                e,
            )
        });
    }
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags,
        FsOpenFlags, MountAttrFlags, MoveMountFlags,
    };
    let err = |what: &'static str, e: rustix::io::Errno| {
        Error::sys(
            what,
            format!("overlay on {}", rootfs.display()),
            io::Error::from(e),
        )
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| err("fsopen", e))?;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        if k == "lowerdir" {
            for l in v.split(':').filter(|l| !l.is_empty()) {
                fsconfig_set_string(fs.as_fd(), "lowerdir+", l).map_err(|e| err("fsconfig", e))?;
            }
        } else {
            fsconfig_set_string(fs.as_fd(), k, v).map_err(|e| err("fsconfig", e))?;
        }
    }
    fsconfig_create(fs.as_fd()).map_err(|e| err("fsconfig", e))?;
    let mnt = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(|e| err("fsmount", e))?;
    move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        rootfs,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err("move_mount", e))
}

/// pivot_root into `rootfs` and detach the old root (the `pivot_root(".", ".")` idiom).
pub(crate) fn pivot(rootfs: &Path) -> Result<()> {
    let oldroot = sys::open(Path::new("/"), libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(|e| Error::io("open", "/", e))?;
    let newroot = sys::open(rootfs, libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .map_err(|e| Error::io("open", rootfs, e))?;
    sys::fchdir(newroot.as_fd()).map_err(|e| Error::sys("fchdir", rootfs.display(), e))?;
    sys::pivot_root(Path::new("."), Path::new("."))
        .map_err(|e| Error::sys("pivot_root", rootfs.display(), e))?;
    sys::fchdir(oldroot.as_fd()).map_err(|e| Error::sys("fchdir", "old root", e))?;
    // Make sure the unmount does not propagate anywhere, then drop the old root.
    sys::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(|e| Error::sys("mount", "make old root rslave", e))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH)
        .map_err(|e| Error::sys("umount2", "old root", e))?;
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e))
}

/// Hide `linux.maskedPaths`: /dev/null over files, an empty read-only tmpfs over directories.
pub(crate) fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let md = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat", path, e)),
        };
        let r = if md.is_dir() {
            sys::mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                libc::MS_RDONLY,
                None,
            )
        } else {
            sys::mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                libc::MS_BIND,
                None,
            )
        };
        r.map_err(|e| Error::sys("mount", format!("mask {p}"), e))?;
    }
    Ok(())
}

/// Make `linux.readonlyPaths` read-only (recursive bind onto itself, then a read-only remount).
pub(crate) fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::sys("mount", format!("bind {p} read-only"), e)),
        }
        bind_remount(path, libc::MS_RDONLY, true)?;
    }
    Ok(())
}

/// Remount the (pivoted) root read-only.
pub(crate) fn readonly_root() -> Result<()> {
    bind_remount(Path::new("/"), libc::MS_RDONLY, true)
}

/// Remount /dev read-only if its mount asked for it (devices were created after mounting).
pub(crate) fn readonly_dev(dev_opts: &Options) -> Result<()> {
    if dev_opts.flags & libc::MS_RDONLY != 0 {
        bind_remount(Path::new("/dev"), dev_opts.flags, true)?;
    }
    Ok(())
}

/// Write `linux.sysctl` through the container's /proc/sys.
pub(crate) fn sysctl(values: &std::collections::HashMap<String, String>) -> Result<()> {
    for (k, v) in values {
        if k.split(['.', '/']).any(|c| c == ".." || c.is_empty()) {
            return Err(Error::Config(format!("invalid sysctl key {k:?}")));
        }
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        fs::write(&path, v.as_bytes()).map_err(|e| Error::io("write", path, e))?;
    }
    Ok(())
}
