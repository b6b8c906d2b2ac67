//! Tar writer for directory trees (export, `docker cp` out, commit): sorted walk, hardlinks
//! kept, xattrs as PAX `SCHILY.xattr.*` records, and optionally overlay whiteouts converted
//! to the image-layer form (`.wh.<name>`, `.wh..wh..opq`). The walk goes by file descriptors
//! only (each entry relative to its parent directory's, `O_NOFOLLOW`, files reopened from an
//! `O_PATH` descriptor), so a tree changed while it is archived cannot send it elsewhere.

use crate::error::{Error, IoContext, Result};
use crate::inroot::{on_pseudo_fs, proc_path, reopen_regular};
use crate::unpack::{OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

pub(crate) struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), String>,
    overlay: bool,
    entries: u64,
    /// Owners are written as the container's ids under these maps.
    ids: Option<crate::IdMappings>,
}

/// Where xattrs are read from: an open file, or a path whose final symlink is not followed.
#[derive(Clone, Copy)]
pub(crate) enum XattrsOf<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a Path),
}

impl XattrsOf<'_> {
    fn list(self, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            XattrsOf::Path(p) => rustix::fs::llistxattr(p, buf),
        }
    }

    fn list_len(self) -> std::result::Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::flistxattr_query(fd),
            XattrsOf::Path(p) => rustix::fs::llistxattr_query(p),
        }
    }

    fn get(self, name: &str, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
        match self {
            XattrsOf::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            XattrsOf::Path(p) => rustix::fs::lgetxattr(p, name, buf),
        }
    }
}

/// The xattrs worth archiving.
pub(crate) fn read_xattrs(of: XattrsOf<'_>, shown: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match of.list(&mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let need = of.list_len().unwrap_or(0).max(names.len() * 2);
                names.resize(need, 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing xattrs of {shown}"), e.into())),
        }
    };
    let mut out = Vec::new();
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if name.starts_with("trusted.overlay.") || name == "security.selinux" {
            continue;
        }
        if let Some(v) = get_xattr(of, name, shown)? {
            out.push((name.to_string(), v));
        }
    }
    Ok(out)
}

/// One xattr; `None` when absent or unsupported.
pub(crate) fn get_xattr(of: XattrsOf<'_>, name: &str, shown: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match of.get(name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => {
                let len = buf.len();
                buf.resize(len * 4, 0);
                if buf.len() > 1 << 20 {
                    return Err(Error::Corrupt(format!(
                        "xattr {name} of {shown} is too large"
                    )));
                }
            }
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading xattr {name} of {shown}"),
                    e.into(),
                ))
            }
        }
    }
}

/// The names in the directory `dir` (open for reading), "." and ".." left out, sorted.
fn sorted_names(dir: BorrowedFd<'_>) -> std::result::Result<Vec<OsString>, Errno> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Opens the directory `name` of `dir` for reading, not following a symlink; `None` when it
/// is gone or no longer a directory (changed while the tree is archived).
fn open_child_dir(dir: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<Option<OwnedFd>> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(e) => Err(Error::io(format!("opening {shown}"), e.into())),
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n" where <len> counts the whole record, itself included.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl<W: Write> TarWriter<W> {
    /// `overlay`: convert overlay whiteouts and opaque directories (for layer tars).
    pub(crate) fn new(out: W, overlay: bool) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        TarWriter {
            builder,
            links: HashMap::new(),
            overlay,
            entries: 0,
            ids: None,
        }
    }

    /// Write owners as the ids of a container with these maps.
    pub(crate) fn with_ids(mut self, ids: Option<crate::IdMappings>) -> Self {
        self.ids = ids;
        self
    }

    /// The owner an entry with `st` is archived with.
    fn owner(&self, st: &Stat) -> (u64, u64) {
        let (uid, gid) = match &self.ids {
            Some(ids) => ids.container_owner(st.st_uid, st.st_gid),
            None => (st.st_uid, st.st_gid),
        };
        (u64::from(uid), u64::from(gid))
    }

    /// What the header of an entry is made of.
    fn header(&self, st: &Stat) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let (uid, gid) = self.owner(st);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        h
    }

    /// Number of entries written so far.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn finish(mut self) -> Result<W> {
        self.builder
            .finish()
            .ctx(|| "finishing the tar stream".to_string())?;
        self.builder
            .into_inner()
            .ctx(|| "finishing the tar stream".to_string())
    }

    /// Archives the entry `file` of the directory `dir` as `name` (and, for a directory, its
    /// contents below `name/`). Without `file`, the directory `dir` itself is archived, and
    /// with an empty `name` only its contents, at the root.
    pub(crate) fn append_at(
        &mut self,
        dir: BorrowedFd<'_>,
        file: Option<&OsStr>,
        name: &str,
    ) -> Result<()> {
        match file {
            Some(f) => {
                let shown = f.to_string_lossy();
                let st = rustix::fs::statat(dir, f, AtFlags::SYMLINK_NOFOLLOW)
                    .ctx(|| format!("inspecting {shown}"))?;
                self.append_child(dir, f, name, &st)
            }
            None => {
                let d = rustix::fs::openat(
                    dir,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("opening {name}/"))?;
                if !name.is_empty() {
                    let st = rustix::fs::fstat(&d).ctx(|| format!("inspecting {name}/"))?;
                    self.append_dir(d.as_fd(), name, &st)?;
                }
                self.append_children(d.as_fd(), name)
            }
        }
    }

    /// The contents of the directory `dir` (open for reading) below `prefix`; none for a
    /// directory on procfs or sysfs.
    fn append_children(&mut self, dir: BorrowedFd<'_>, prefix: &str) -> Result<()> {
        if on_pseudo_fs(dir) {
            return Ok(());
        }
        let names = sorted_names(dir).ctx(|| format!("reading {prefix}/"))?;
        for n in names {
            let child = if prefix.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{prefix}/{}", n.to_string_lossy())
            };
            let st = match rustix::fs::statat(dir, &n, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed while we walk (a running container): skip it.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(Error::io(format!("inspecting {child}"), e.into())),
            };
            self.append_child(dir, &n, &child, &st)?;
        }
        Ok(())
    }

    fn write_pax(&mut self, name: &str, xattrs: &[(String, Vec<u8>)]) -> Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut data = Vec::new();
        for (k, v) in xattrs {
            data.extend_from_slice(&pax_record(&format!("SCHILY.xattr.{k}"), v));
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        // The name of a PAX header entry is informational only.
        let short: String = format!("PaxHeaders/{}", name.rsplit('/').next().unwrap_or(""))
            .chars()
            .take(90)
            .collect();
        h.set_path(&short)
            .or_else(|_| h.set_path("PaxHeaders"))
            .ctx(|| format!("archiving {name}"))?;
        h.set_cksum();
        self.builder
            .append(&h, &data[..])
            .ctx(|| format!("archiving {name}"))
    }

    /// The directory `d` (open for reading) as `name`, without its contents.
    fn append_dir(&mut self, d: BorrowedFd<'_>, name: &str, st: &Stat) -> Result<()> {
        let ctx = || format!("archiving {name}");
        let mut xattrs = read_xattrs(XattrsOf::Fd(d), name)?;
        let opaque = self.overlay
            && get_xattr(XattrsOf::Fd(d), OPAQUE_XATTR, name)?.is_some_and(|v| v == b"y");
        xattrs.retain(|(k, _)| !k.starts_with("trusted.overlay."));
        let mut h = self.header(st);
        h.set_entry_type(tar::EntryType::Directory);
        self.write_pax(name, &xattrs)?;
        self.builder
            .append_data(&mut h, format!("{name}/"), io::empty())
            .ctx(ctx)?;
        self.entries += 1;
        if opaque {
            let mut wh = tar::Header::new_gnu();
            wh.set_entry_type(tar::EntryType::Regular);
            wh.set_mode(st.st_mode & 0o777);
            let (uid, gid) = self.owner(st);
            wh.set_uid(uid);
            wh.set_gid(gid);
            wh.set_mtime(0);
            wh.set_size(0);
            self.builder
                .append_data(&mut wh, format!("{name}/{WHITEOUT_OPAQUE}"), io::empty())
                .ctx(ctx)?;
            self.entries += 1;
        }
        Ok(())
    }

    /// The entry `file` of `dir`, whose status was `st`, as `name` (a directory with its
    /// contents). An entry that is gone or changed type by the time it is opened is left out.
    fn append_child(
        &mut self,
        dir: BorrowedFd<'_>,
        file: &OsStr,
        name: &str,
        st: &Stat,
    ) -> Result<()> {
        let ctx = || format!("archiving {name}");
        let ft = FileType::from_raw_mode(st.st_mode);
        match ft {
            // Like Docker (Go's archive/tar cannot represent sockets).
            FileType::Socket | FileType::Unknown => Ok(()),
            FileType::CharacterDevice if self.overlay && st.st_rdev == 0 => {
                let (parent, base) = match name.rsplit_once('/') {
                    Some((d, b)) => (format!("{d}/"), b),
                    None => (String::new(), name),
                };
                let mut h = self.header(st);
                h.set_mode(0o600);
                h.set_entry_type(tar::EntryType::Regular);
                self.builder
                    .append_data(
                        &mut h,
                        format!("{parent}{WHITEOUT_PREFIX}{base}"),
                        io::empty(),
                    )
                    .ctx(ctx)?;
                self.entries += 1;
                Ok(())
            }
            FileType::Directory => {
                let Some(d) = open_child_dir(dir, file, name)? else {
                    return Ok(());
                };
                let st = rustix::fs::fstat(&d).ctx(ctx)?;
                self.append_dir(d.as_fd(), name, &st)?;
                self.append_children(d.as_fd(), name)
            }
            FileType::RegularFile => self.append_file(dir, file, name),
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, file, Vec::new()) {
                    Ok(t) => t,
                    // Gone, or no longer a symlink.
                    Err(Errno::NOENT | Errno::INVAL) => return Ok(()),
                    Err(e) => return Err(Error::io(ctx(), e.into())),
                };
                let path = proc_path(dir, file);
                let xattrs = read_xattrs(XattrsOf::Path(&path), name)?;
                let mut h = self.header(st);
                h.set_entry_type(tar::EntryType::Symlink);
                self.write_pax(name, &xattrs)?;
                self.builder
                    .append_link(
                        &mut h,
                        name,
                        Path::new(OsStr::from_bytes(target.as_bytes())),
                    )
                    .ctx(ctx)?;
                self.entries += 1;
                Ok(())
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                // Never opened: only its status and xattrs go into the archive.
                let path = proc_path(dir, file);
                let xattrs = read_xattrs(XattrsOf::Path(&path), name)?;
                let mut h = self.header(st);
                let kind = match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                h.set_entry_type(kind);
                if kind != tar::EntryType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev)).ctx(ctx)?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev)).ctx(ctx)?;
                }
                self.write_pax(name, &xattrs)?;
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .ctx(ctx)?;
                self.entries += 1;
                Ok(())
            }
        }
    }

    /// The regular file `file` of `dir` as `name`: opened `O_PATH` without following a
    /// symlink, checked, and only then reopened for reading.
    fn append_file(&mut self, dir: BorrowedFd<'_>, file: &OsStr, name: &str) -> Result<()> {
        let ctx = || format!("archiving {name}");
        let p = match rustix::fs::openat(
            dir,
            file,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io(ctx(), e.into())),
        };
        let st = rustix::fs::fstat(&p).ctx(ctx)?;
        let f = match reopen_regular(p.as_fd(), &st) {
            Ok(f) => f,
            // Replaced by something else since it was listed.
            Err(Errno::INVAL | Errno::STALE) => return Ok(()),
            Err(e) => return Err(Error::io(ctx(), e.into())),
        };
        let mut h = self.header(&st);
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(tar::EntryType::Link);
                self.builder.append_link(&mut h, name, &first).ctx(ctx)?;
                self.entries += 1;
                return Ok(());
            }
            self.links.insert(key, name.to_string());
        }
        let xattrs = read_xattrs(XattrsOf::Fd(f.as_fd()), name)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        // Exactly `size` bytes even if the file changes under us.
        let data = f.take(size).chain(io::repeat(0)).take(size);
        self.write_pax(name, &xattrs)?;
        self.builder.append_data(&mut h, name, data).ctx(ctx)?;
        self.entries += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        let r = pax_record("path", b"a");
        assert_eq!(r, b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = pax_record("k", &long);
        let s = String::from_utf8(r.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }
}
