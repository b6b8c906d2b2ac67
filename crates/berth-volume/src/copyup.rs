//! Copy-up: a new, empty volume mounted over a directory of the image is first filled with that
//! directory's content (ownership, modes, times, symlinks, device nodes, hard links and
//! extended attributes kept), as Docker does. The source directory comes as a descriptor the
//! caller resolved beneath the container's root; every step from there works on directory file
//! descriptors with `O_NOFOLLOW`, so a symlink in the image or planted in the volume is never
//! followed. It touches nothing but the volume's data directory and its marker file.

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

type Errno = nix::errno::Errno;

/// Owner mapping of copied files (host ids of a remapped container's ids).
pub type OwnerMap<'a> = &'a dyn Fn(u32, u32) -> (u32, u32);

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn open_dir<P: ?Sized + nix::NixPath>(dir: BorrowedFd<'_>, path: &P) -> nix::Result<OwnedFd> {
    openat(
        dir,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Names in a directory, "." and ".." left out.
fn entries(dir: BorrowedFd<'_>) -> nix::Result<Vec<CString>> {
    let d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for e in d {
        let e = e?;
        let name = e.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// Fill the volume directory `data` with the content of the directory `src` (the image's
/// directory at the mount point, opened by the caller beneath the container's merged root
/// filesystem without following a final symlink) if the volume is empty. The volume's top
/// directory then takes the owner and mode of the image's. The file `marker` exists while the
/// copy is under way: a copy that fails is removed again at once, and one a killed daemon
/// left half-done is removed at its next boot ([`empty`] when the marker is found), so a
/// volume is never left holding part of the image's directory.
///
/// With `owner` (a remapped container), owners are the host ids the container's ids map to:
/// the image's files are seen with their unshifted ids here.
pub fn populate(
    src: BorrowedFd<'_>,
    data: &Path,
    marker: &Path,
    owner: Option<OwnerMap<'_>>,
) -> std::io::Result<()> {
    let target = open_dir(nix::fcntl::AT_FDCWD, data).map_err(io)?;
    if !entries(target.as_fd()).map_err(io)?.is_empty() {
        return Ok(());
    }
    std::fs::File::create(marker)?;
    let copied = (|| {
        let mut c = Copier {
            links: HashMap::new(),
            owner,
        };
        let target = Rc::new(target);
        c.dir(src, &target)?;
        let st = nix::sys::stat::fstat(src)?;
        c.finish(src, target.as_fd(), &st)
    })()
    .map_err(io);
    if copied.is_err() {
        empty(data)?;
    }
    std::fs::remove_file(marker)?;
    copied
}

/// Remove everything in the directory `dir` (symlinks in it are removed, not followed).
pub fn empty(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Hard links seen so far: the first copy's directory and name, by source inode; and the
/// mapping owners go through.
struct Copier<'a> {
    links: HashMap<(u64, u64), (Rc<OwnedFd>, CString)>,
    owner: Option<OwnerMap<'a>>,
}

impl Copier<'_> {
    /// The owner a copy of a file with `st` gets.
    fn owner(&self, st: &FileStat) -> (Option<Uid>, Option<Gid>) {
        let (uid, gid) = match self.owner {
            Some(map) => map(st.st_uid, st.st_gid),
            None => (st.st_uid, st.st_gid),
        };
        (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
    }

    fn dir(&mut self, src: BorrowedFd<'_>, dst: &Rc<OwnedFd>) -> nix::Result<()> {
        for name in entries(src)? {
            let st = fstatat(
                src,
                name.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            self.entry(src, dst, &name, &st)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: &Rc<OwnedFd>,
        name: &CString,
        st: &FileStat,
    ) -> nix::Result<()> {
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let name_c = name.as_c_str();
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(dst.as_fd(), name_c, Mode::from_bits_truncate(0o700))?;
                let s = open_dir(src, name_c)?;
                let d = Rc::new(open_dir(dst.as_fd(), name_c)?);
                self.dir(s.as_fd(), &d)?;
                self.finish(s.as_fd(), d.as_fd(), st)?;
            }
            SFlag::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some((dir, first)) = self.links.get(&key) {
                        return nix::unistd::linkat(
                            dir.as_fd(),
                            first.as_c_str(),
                            dst.as_fd(),
                            name_c,
                            nix::fcntl::AtFlags::empty(),
                        );
                    }
                }
                let s = openat(
                    src,
                    name_c,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let d = openat(
                    dst.as_fd(),
                    name_c,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let mut from = std::fs::File::from(s);
                let mut to = std::fs::File::from(d);
                std::io::copy(&mut from, &mut to)
                    .map_err(|e| e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO))?;
                self.finish(from.as_fd(), to.as_fd(), st)?;
                if st.st_nlink > 1 {
                    self.links.insert(key, (dst.clone(), name.clone()));
                }
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(src, name_c)?;
                nix::unistd::symlinkat(target.as_os_str(), dst.as_fd(), name_c)?;
                self.owner_times_at(dst.as_fd(), name_c, st)?;
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                mknodat(dst.as_fd(), name_c, kind, perm, st.st_rdev)?;
                self.owner_times_at(dst.as_fd(), name_c, st)?;
            }
            // Sockets belong to a process, not to an image.
            _ => {}
        }
        Ok(())
    }

    /// Owner, mode, extended attributes and times of a copied file or directory (in that
    /// order: chown clears set-id bits, and the times come last).
    fn finish(&self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &FileStat) -> nix::Result<()> {
        let (uid, gid) = self.owner(st);
        nix::unistd::fchown(dst, uid, gid)?;
        nix::sys::stat::fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
        copy_xattrs(src, dst);
        nix::sys::stat::futimens(
            dst,
            &nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
    }

    /// Owner and times of an entry that cannot be opened (symlink, device, FIFO).
    fn owner_times_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        st: &FileStat,
    ) -> nix::Result<()> {
        let (uid, gid) = self.owner(st);
        fchownat(
            dir,
            name,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        nix::sys::stat::utimensat(
            dir,
            name,
            &nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
    }
}

/// Copy the extended attributes of one open file to another; attributes the target's file
/// system refuses are skipped, as Docker does.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for writes of its length; the fd is open.
    let n = unsafe { libc::flistxattr(src.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return;
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: cname is NUL-terminated; the buffer is valid for writes of its length.
        let len = unsafe {
            libc::fgetxattr(
                src.as_raw_fd(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            continue;
        }
        // SAFETY: cname is NUL-terminated; the value buffer holds `len` initialized bytes.
        let _ = unsafe {
            libc::fsetxattr(
                dst.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                len as usize,
                0,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn dir_fd(p: &Path) -> OwnedFd {
        open_dir(nix::fcntl::AT_FDCWD, p).unwrap()
    }

    #[test]
    fn copies_tree_without_following_links() {
        let t = std::env::temp_dir().join(format!("berth-copyup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let root = t.join("root");
        let data = t.join("data");
        std::fs::create_dir_all(root.join("srv/sub")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(root.join("srv/a"), b"hello").unwrap();
        std::fs::set_permissions(root.join("srv/a"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::hard_link(root.join("srv/a"), root.join("srv/sub/b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("srv/link")).unwrap();
        std::fs::set_permissions(root.join("srv"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let marker = t.join("copy-up");
        let src = dir_fd(&root.join("srv"));
        populate(src.as_fd(), &data, &marker, None).unwrap();
        assert!(!marker.exists());
        assert_eq!(std::fs::read(data.join("a")).unwrap(), b"hello");
        let m = std::fs::metadata(data.join("a")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.nlink(), 2);
        assert_eq!(
            std::fs::read_link(data.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);
        // Not empty any more: a second populate leaves it alone.
        std::fs::write(root.join("srv/c"), b"x").unwrap();
        populate(src.as_fd(), &data, &marker, None).unwrap();
        assert!(!data.join("c").exists());
        // Owners go through the mapping given (here: to the same ids, which needs no root).
        let data2 = t.join("data2");
        std::fs::create_dir_all(&data2).unwrap();
        let seen = std::cell::Cell::new(0);
        let map = |u: u32, g: u32| {
            seen.set(seen.get() + 1);
            (u, g)
        };
        populate(src.as_fd(), &data2, &marker, Some(&map)).unwrap();
        assert!(seen.get() >= 4, "{}", seen.get());
        // What a half-done copy left is removed, links not followed.
        empty(&data).unwrap();
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
        assert_eq!(std::fs::read(root.join("srv/a")).unwrap(), b"hello");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
