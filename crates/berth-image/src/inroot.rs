//! A directory tree reached only through file descriptors: its top is opened once and every
//! path below it resolves from that descriptor with openat2 `RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS`, so `..`, absolute symlinks and /proc magic links cannot leave it,
//! and nothing found there is looked up again by path string. A tree that changes while it
//! is read (a running container's) can then never lead the reader to a host file.

use crate::error::{Error, IoContext, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// sysfs' magic number (`SYSFS_MAGIC` of linux/magic.h).
const SYSFS_MAGIC: rustix::fs::FsWord = 0x6265_6572;

/// The top directory of a tree, open as an `O_PATH` descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    shown: PathBuf,
}

/// An entry found below a [`Root`]: its parent directory (an `O_PATH` descriptor) and its
/// name there, or, when the path named a directory itself (`/`, `dir/.`), that directory
/// and no name.
#[derive(Debug)]
pub struct Located {
    pub(crate) dir: OwnedFd,
    pub(crate) name: Option<OsString>,
}

/// Whether the directory `fd` is on procfs or sysfs. Their files describe the kernel and its
/// processes rather than the tree (Docker's copies show such mount points empty), and reading
/// some of them never ends or has side effects, so they are neither archived nor written.
pub(crate) fn on_pseudo_fs(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd)
        .is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC || s.f_type == SYSFS_MAGIC)
}

/// openat2 below `dir` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`; `O_CLOEXEC` is added.
pub(crate) fn openat_in_root(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
) -> std::result::Result<OwnedFd, Errno> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            dir,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // openat2 asks for a retry when a concurrent rename raced a ".." lookup.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// Opens an `O_PATH` descriptor's file for reading if it is a regular file: through
/// /proc/self/fd, which reopens that very inode, so a file swapped in meanwhile (a device
/// node, say) is never opened.
pub(crate) fn reopen_regular(fd: BorrowedFd<'_>, st: &Stat) -> std::result::Result<File, Errno> {
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    let f = rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let now = rustix::fs::fstat(&f)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Errno::STALE);
    }
    Ok(File::from(f))
}

/// The path naming `name` in the directory `dir` through /proc/self/fd, for the calls that
/// exist only by path (`l*xattr`): the directory is the descriptor's, and `name` (one
/// component) is not followed by those calls.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

fn not_found(path: &Path) -> Error {
    Error::NotFound(format!("Could not find the file {}", path.display()))
}

impl Root {
    /// Opens the directory `path` as a root. `path` itself is trusted and resolved as usual
    /// (`/proc/<pid>/root` is followed to the process's root directory).
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", path.display()))?;
        Ok(Root {
            fd,
            shown: path.to_path_buf(),
        })
    }

    /// A root on a directory descriptor already open (a detached mount's, say); `shown`
    /// names it in messages.
    pub fn from_fd(fd: OwnedFd, shown: &Path) -> Root {
        Root {
            fd,
            shown: shown.to_path_buf(),
        }
    }

    /// Opens (`O_PATH`) the mount point `path` below the root, first making what is missing
    /// of it as a runtime does at start: directories, and for a file mount (`dir` false) an
    /// empty file as the last component. Every step resolves inside the root.
    pub fn mount_point(&self, path: &Path, dir: bool) -> Result<OwnedFd> {
        let names: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut sofar = PathBuf::from("/");
        for (i, name) in names.iter().enumerate() {
            let parent = self.open_at(&sofar, OFlags::PATH | OFlags::DIRECTORY)?;
            sofar.push(name);
            match openat_in_root(self.fd(), &sofar, OFlags::PATH) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("resolving {} in {}", sofar.display(), self.shown.display()),
                        e.into(),
                    ))
                }
            }
            let made = if i + 1 == names.len() && !dir {
                rustix::fs::openat(
                    &parent,
                    *name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW,
                    Mode::from_raw_mode(0o755),
                )
                .map(drop)
            } else {
                rustix::fs::mkdirat(&parent, *name, Mode::from_raw_mode(0o755))
            };
            match made {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("making {} in {}", sofar.display(), self.shown.display()),
                        e.into(),
                    ))
                }
            }
        }
        self.open_at(path, OFlags::PATH)
    }

    /// The path the root was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` below the root with `flags` (`O_CLOEXEC` added): every component, the
    /// last too unless `flags` has `O_NOFOLLOW`, resolves inside the root. A path that is
    /// missing, goes through a non-directory or a magic link, or loops is `NotFound`.
    pub fn open_at(&self, path: &Path, flags: OFlags) -> Result<OwnedFd> {
        match openat_in_root(self.fd(), path, flags) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => Err(not_found(path)),
            Err(e) => Err(Error::io(
                format!("resolving {} in {}", path.display(), self.shown.display()),
                e.into(),
            )),
        }
    }

    /// Finds the entry `path` names: every component but the last resolves inside the root
    /// with symlinks followed; the last is not followed. The entry must exist, and its
    /// directory may not be on procfs or sysfs.
    pub fn locate(&self, path: &Path) -> Result<Located> {
        let bytes = path.as_os_str().as_bytes();
        let mut trimmed = bytes;
        while trimmed.len() > 1 && trimmed.ends_with(b"/") {
            trimmed = &trimmed[..trimmed.len() - 1];
        }
        let (parent, last): (&[u8], &[u8]) = match trimmed.iter().rposition(|c| *c == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (b"", trimmed),
        };
        let whole = last.is_empty() || last == b"." || last == b"..";
        let dir_path = if whole {
            path
        } else {
            Path::new(OsStr::from_bytes(parent))
        };
        let dir = self.open_at(dir_path, OFlags::PATH | OFlags::DIRECTORY)?;
        if on_pseudo_fs(dir.as_fd()) {
            return Err(not_found(path));
        }
        if whole {
            return Ok(Located { dir, name: None });
        }
        let name = OsStr::from_bytes(last).to_os_string();
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(Located {
                dir,
                name: Some(name),
            }),
            Err(Errno::NOENT) => Err(not_found(path)),
            Err(e) => Err(Error::io(
                format!("inspecting {} in {}", path.display(), self.shown.display()),
                e.into(),
            )),
        }
    }

    /// Up to `limit` bytes of the regular file `path` as text; `None` when it is missing,
    /// not a regular file (a final symlink is not followed) or not text.
    pub fn read_small_file(&self, path: &Path, limit: u64) -> Option<String> {
        let fd = self.open_at(path, OFlags::PATH | OFlags::NOFOLLOW).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        let f = reopen_regular(fd.as_fd(), &st).ok()?;
        let mut s = String::new();
        f.take(limit).read_to_string(&mut s).ok()?;
        Some(s)
    }
}

impl Located {
    /// An entry named by a host path the caller trusts: its parent directory is opened as
    /// given (symlinks followed); the last component is not followed.
    pub fn host(path: &Path) -> Result<Located> {
        let open = |p: &Path| {
            rustix::fs::open(
                p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {}", p.display()))
        };
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                let dir = open(parent)?;
                if let Err(e) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    return Err(match e {
                        Errno::NOENT => not_found(path),
                        e => Error::io(format!("inspecting {}", path.display()), e.into()),
                    });
                }
                Ok(Located {
                    dir,
                    name: Some(name.to_os_string()),
                })
            }
            _ => Ok(Located {
                dir: open(path)?,
                name: None,
            }),
        }
    }

    /// The entry's status, not following a final symlink.
    pub(crate) fn stat(&self) -> std::result::Result<Stat, Errno> {
        match &self.name {
            Some(n) => rustix::fs::statat(&self.dir, n, AtFlags::SYMLINK_NOFOLLOW),
            None => rustix::fs::fstat(&self.dir),
        }
    }

    /// The target of the entry if it is a symlink.
    pub(crate) fn link_target(&self) -> std::result::Result<OsString, Errno> {
        match &self.name {
            Some(n) => {
                let t = rustix::fs::readlinkat(&self.dir, n, Vec::new())?;
                Ok(OsStr::from_bytes(t.as_bytes()).to_os_string())
            }
            None => Err(Errno::INVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn locates_inside_the_root_only() {
        let t = std::env::temp_dir().join(format!("berth-inroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::fs::write(t.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/", t.join("up")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/etc", t.join("magic")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.join("pw")).unwrap();
        let root = Root::open(&t).unwrap();
        // An absolute symlink resolves at the root, not at the host's /.
        let l = root.locate(Path::new("/up/etc/passwd")).unwrap();
        assert_eq!(l.name.as_deref(), Some(OsStr::new("passwd")));
        assert_eq!(
            l.stat().unwrap().st_ino,
            std::fs::metadata(t.join("etc/passwd")).unwrap().ino()
        );
        // Magic links are refused, missing entries are not found.
        assert!(matches!(
            root.locate(Path::new("/magic/passwd")),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            root.locate(Path::new("/etc/nope")),
            Err(Error::NotFound(_))
        ));
        assert!(root.locate(Path::new("/")).unwrap().name.is_none());
        // A final symlink is neither followed by locate nor read as a file.
        assert_eq!(
            root.locate(Path::new("pw")).unwrap().link_target().unwrap(),
            "/etc/passwd"
        );
        assert!(root.read_small_file(Path::new("pw"), 100).is_none());
        assert_eq!(
            root.read_small_file(Path::new("../etc/passwd"), 4)
                .as_deref(),
            Some("root")
        );
        std::fs::remove_dir_all(&t).unwrap();
    }
}
