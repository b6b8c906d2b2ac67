//! Mounts the creator (host root) makes as detached mounts for a container with a user
//! namespace, which the init moves into place inside its own mount namespace: the root overlay,
//! whose lower layers are idmapped (open_tree clones with the container's user namespace set by
//! mount_setattr), so image snapshots owned by host uid 0 show as the container's root without
//! being copied or chowned; and the binds' sources, cloned (not idmapped) on the host side so
//! that the path to them need not be searchable by the container's ids.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::mount::{
    fsconfig_create, fsconfig_set_fd, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

use crate::error::{Error, Result};
use crate::mounts::Options;
use crate::sys;

/// `struct mount_attr` of mount_setattr(2) (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// MOUNT_ATTR_IDMAP (linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// mount_setattr(2) of `attr` on the detached mount `tree` (and the mounts below it with
/// `recursive`).
fn setattr(tree: BorrowedFd<'_>, recursive: bool, attr: &MountAttr, shown: &str) -> Result<()> {
    let empty = c"";
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: tree is an open mount descriptor, the path is an empty C string (AT_EMPTY_PATH
    // makes the call act on the descriptor), and attr is a valid mount_attr of the size given,
    // which the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(Error::sys(
            "mount_setattr",
            shown,
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Make the detached mount `tree` show its files through the id mapping of `userns`.
fn idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>, shown: &str) -> Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    setattr(tree, false, &attr, &format!("MOUNT_ATTR_IDMAP on {shown}"))
}

/// The source of a bind (`o` its options) as a detached mount with the flags asked for
/// (added to the ones the source has: like the locked flags of a bind made inside a user
/// namespace, they are kept), recursive for `rbind`, and a slave of the source's peer group
/// (the init applies the propagation asked for once it is attached), so that no mount event
/// reaches the host from it. The files keep their host owners: binds are not idmapped.
pub(crate) fn bind_source(source: &Path, o: &Options) -> Result<OwnedFd> {
    let recursive = o.flags & libc::MS_REC != 0;
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(rustix::fs::CWD, source, flags)
        .map_err(|e| Error::io("open_tree", source, io::Error::from(e)))?;
    let mut set = MountAttrFlags::empty();
    for (ms, attr) in [
        (libc::MS_RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (libc::MS_NODIRATIME, MountAttrFlags::MOUNT_ATTR_NODIRATIME),
    ] {
        if o.flags & ms != 0 {
            set |= attr;
        }
    }
    // One atime mode at most, replacing the source's (strictatime wins, as with mount(2)).
    let atime = if o.flags & libc::MS_STRICTATIME != 0 {
        Some(MountAttrFlags::MOUNT_ATTR_STRICTATIME)
    } else if o.flags & libc::MS_NOATIME != 0 {
        Some(MountAttrFlags::MOUNT_ATTR_NOATIME)
    } else if o.flags & libc::MS_RELATIME != 0 {
        Some(MountAttrFlags::MOUNT_ATTR_RELATIME)
    } else {
        None
    };
    let mut clr = MountAttrFlags::empty();
    if let Some(a) = atime {
        set |= a;
        clr |= MountAttrFlags::MOUNT_ATTR__ATIME;
    }
    let shown = format!("bind source {}", source.display());
    // Flags apply to the top mount only, as a bind remount does.
    if !set.is_empty() {
        let attr = MountAttr {
            attr_set: u64::from(set.bits()),
            attr_clr: u64::from(clr.bits()),
            propagation: 0,
            userns_fd: 0,
        };
        setattr(tree.as_fd(), false, &attr, &shown)?;
    }
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: libc::MS_SLAVE,
        userns_fd: 0,
    };
    setattr(tree.as_fd(), recursive, &attr, &shown)?;
    Ok(tree)
}

/// The overlay described by `opts` (`lowerdir=a:b,upperdir=..,workdir=..`) as a detached
/// mount, every lower dir idmapped with the user namespace of process `pid`. Dropping the
/// descriptor before it is attached undoes everything.
pub(crate) fn overlay(opts: &str, pid: i32) -> Result<OwnedFd> {
    let ns = format!("/proc/{pid}/ns/user");
    let userns = sys::open(Path::new(&ns), libc::O_RDONLY | libc::O_CLOEXEC, 0)
        .map_err(|e| Error::io("open", &ns, e))?;
    let err = |what: &'static str, arg: &str, e: rustix::io::Errno| {
        Error::sys(what, format!("idmapped overlay: {arg}"), io::Error::from(e))
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| err("fsopen", "", e))?;
    // The layers' detached mounts must stay open until the overlay is made: closing the last
    // descriptor of one dissolves it.
    let mut trees = Vec::new();
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        if k != "lowerdir" {
            fsconfig_set_string(fs.as_fd(), k, v).map_err(|e| err("fsconfig", opt, e))?;
            continue;
        }
        for l in v.split(':').filter(|l| !l.is_empty()) {
            // AT_RECURSIVE gives the clone a (private, anonymous) mount namespace, which
            // overlayfs needs to take it as a layer.
            let tree = open_tree(
                rustix::fs::CWD,
                l,
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_RECURSIVE,
            )
            .map_err(|e| err("open_tree", l, e))?;
            idmap(tree.as_fd(), userns.as_fd(), l)?;
            fsconfig_set_fd(fs.as_fd(), "lowerdir+", tree.as_fd())
                .map_err(|e| err("fsconfig", l, e))?;
            trees.push(tree);
        }
    }
    fsconfig_create(fs.as_fd()).map_err(|e| err("fsconfig", "create", e))?;
    drop(trees);
    fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(|e| err("fsmount", "", e))
}

/// A detached clone of `source` (with the mounts below it for `recursive`), private
/// throughout so that nothing mounted on or below it reaches the host's mounts (a plain bind
/// of a shared source would join its peer group), and read-only throughout for `readonly`.
/// Attached with [`attach_at`].
pub fn private_clone(source: &Path, recursive: bool, readonly: bool) -> Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(rustix::fs::CWD, source, flags)
        .map_err(|e| Error::io("open_tree", source, io::Error::from(e)))?;
    let attr = MountAttr {
        attr_set: if readonly {
            u64::from(MountAttrFlags::MOUNT_ATTR_RDONLY.bits())
        } else {
            0
        },
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    setattr(
        tree.as_fd(),
        true,
        &attr,
        &format!("private clone of {}", source.display()),
    )?;
    Ok(tree)
}

/// Attach the detached mount `mnt` on the directory or file open as `at`.
pub fn attach_at(mnt: BorrowedFd<'_>, at: BorrowedFd<'_>, what: &str) -> Result<()> {
    move_mount(
        mnt,
        "",
        at,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| Error::sys("move_mount", what, io::Error::from(e)))
}

/// Attach the detached mount `mnt` on `target` (in the caller's mount namespace).
pub(crate) fn attach(mnt: BorrowedFd<'_>, target: &Path, what: &str) -> Result<()> {
    move_mount(
        mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| {
        Error::sys(
            "move_mount",
            format!("{what} on {}", target.display()),
            io::Error::from(e),
        )
    })
}
