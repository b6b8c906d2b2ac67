//! Entries reached through descriptors only ([`At`]): opened with `*at` calls that never follow
//! a symlink, the staging dir's paths made on the way down, and owners and modes set on a
//! copied tree. It must not resolve paths by name on the host.

use super::Perms;
use crate::error::{Error, Result};
use berth_image::archive::Root;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;

/// An entry reached through descriptors only: the directory it is in and its name there, or
/// (no name) that directory itself.
#[derive(Clone)]
pub struct At {
    /// Opened `O_RDONLY | O_DIRECTORY`, never through a symlink.
    pub(super) dir: Arc<OwnedFd>,
    pub(super) name: Option<OsString>,
}

/// Opens the directory `name` in `dir`; a symlink there is not followed (`ELOOP`).
pub(super) fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The top of `root` as a readable directory descriptor.
pub(super) fn open_top(root: &Root) -> Result<OwnedFd> {
    Ok(root.open_at(Path::new("."), OFlags::RDONLY | OFlags::DIRECTORY)?)
}

/// The names in the directory `dir`, `.` and `..` left out.
pub(super) fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(OsString::from_vec(name));
        }
    }
    Ok(out)
}

pub(super) fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// An overlay whiteout: a character device 0/0.
pub(super) fn is_whiteout(st: &Stat) -> bool {
    kind(st) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether the open directory `dir` is marked opaque (it hides the layers below).
pub(super) fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|a| {
            let mut buf = [0u8; 8];
            rustix::fs::fgetxattr(dir, *a, &mut buf).is_ok_and(|n| &buf[..n] == b"y")
        })
}

impl At {
    pub(super) fn new(dir: OwnedFd, name: Option<&OsStr>) -> At {
        At {
            dir: Arc::new(dir),
            name: name.map(OsStr::to_os_string),
        }
    }

    /// The entry's status; a symlink is not followed.
    pub(super) fn stat(&self) -> io::Result<Stat> {
        Ok(match &self.name {
            Some(n) => rustix::fs::statat(&*self.dir, n, AtFlags::SYMLINK_NOFOLLOW)?,
            None => rustix::fs::fstat(&*self.dir)?,
        })
    }

    /// The entry opened as a directory (never through a symlink).
    pub(super) fn open_dir(&self) -> io::Result<OwnedFd> {
        match &self.name {
            Some(n) => open_dir(self.dir.as_fd(), n),
            None => self.dir.try_clone(),
        }
    }

    /// The entry `name` of this directory.
    pub(super) fn child(dir: &Arc<OwnedFd>, name: &OsStr) -> At {
        At {
            dir: dir.clone(),
            name: Some(name.to_os_string()),
        }
    }

    /// The target of the entry if it is a symlink.
    pub(super) fn link_target(&self) -> Option<String> {
        let name = self.name.as_ref()?;
        let t = rustix::fs::readlinkat(&*self.dir, name, Vec::new()).ok()?;
        Some(String::from_utf8_lossy(t.as_bytes()).into_owned())
    }

    /// The regular file this entry is, open for reading (anything else is `EINVAL`).
    pub(super) fn open_file(&self) -> io::Result<std::fs::File> {
        let name = self.name.as_ref().ok_or(Errno::ISDIR)?;
        // O_NONBLOCK: a FIFO swapped in never blocks the open; the type is checked next.
        let fd = rustix::fs::openat(
            &*self.dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if kind(&rustix::fs::fstat(&fd)?) != FileType::RegularFile {
            return Err(Errno::INVAL.into());
        }
        Ok(std::fs::File::from(fd))
    }

    /// Removes the entry (a directory with everything in it); for a directory without a
    /// name, everything in it. A missing entry is no error.
    pub(super) fn remove(&self) -> io::Result<()> {
        let gone = |r: std::result::Result<(), Errno>| match r {
            Err(e) if e != Errno::NOENT => Err(io::Error::from(e)),
            _ => Ok(()),
        };
        match &self.name {
            Some(n) => gone(berth_image::archive::remove_tree_at(self.dir.as_fd(), n)),
            None => {
                for n in entries(self.dir.as_fd())? {
                    gone(berth_image::archive::remove_tree_at(self.dir.as_fd(), &n))?;
                }
                Ok(())
            }
        }
    }

    /// The entry as a directory, made (mode 0700 until its owner and mode are set) if missing.
    pub(super) fn make_dir(&self) -> io::Result<OwnedFd> {
        if let Some(n) = &self.name {
            match rustix::fs::mkdirat(&*self.dir, n, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.open_dir()
    }

    /// Sets owner, then mode (chown clears set-id bits), of the entry; `mode` is not applied
    /// to a symlink.
    pub(super) fn set_owner_mode(
        &self,
        owner: (u32, u32),
        mode: Option<u32>,
        st: &Stat,
    ) -> io::Result<()> {
        let (uid, gid) = (
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
        );
        match &self.name {
            Some(n) => rustix::fs::chownat(&*self.dir, n, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?,
            None => rustix::fs::fchown(&*self.dir, uid, gid)?,
        }
        if let (Some(mode), false) = (mode, kind(st) == FileType::Symlink) {
            let mode = Mode::from_raw_mode(mode & 0o7777);
            match &self.name {
                // Not a symlink (checked above): nothing is followed.
                Some(n) => rustix::fs::chmodat(&*self.dir, n, mode, AtFlags::empty())?,
                None => rustix::fs::fchmod(&*self.dir, mode)?,
            }
        }
        Ok(())
    }
}

/// The entry `rel` below the staging directory `root`, with the directories on the way made
/// (0755) where missing; a symlink on the way is an error, never followed.
pub fn staged(root: &Root, rel: &str) -> Result<At> {
    let comps = components(rel).ok_or_else(|| Error::internal(format!("bad path {rel}")))?;
    let mut dir = open_top(root)?;
    let Some((last, way)) = comps.split_last() else {
        return Ok(At::new(dir, None));
    };
    for c in way {
        match rustix::fs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
        dir = open_dir(dir.as_fd(), OsStr::new(c))?;
    }
    Ok(At::new(dir, Some(OsStr::new(last))))
}

/// The components of a relative path (`.` and empty ones dropped); `None` if one is `..`.
pub(super) fn components(rel: &str) -> Option<Vec<&str>> {
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (!comps.contains(&"..")).then_some(comps)
}

/// Sets owner (and mode, with `--chmod`) on a copied tree.
pub fn apply_perms(at: &At, perms: Perms) -> Result<()> {
    let st = at.stat()?;
    at.set_owner_mode(perms.owner, perms.chmod, &st)?;
    if kind(&st) == FileType::Directory {
        let dir = Arc::new(at.open_dir()?);
        for name in entries(dir.as_fd())? {
            apply_perms(&At::child(&dir, &name), perms)?;
        }
    }
    Ok(())
}
