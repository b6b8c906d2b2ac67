//! Tar extraction engine shared by layer unpacking (overlay whiteouts, strict: nothing is
//! written through a symlink) and `docker cp`-style extraction (symlinks resolved inside the
//! root with openat2 RESOLVE_IN_ROOT); plus compression detection and diff-id hashing.

use crate::archive::ExtractOptions;
use crate::digest::HashReader;
use crate::error::{Error, IoContext, Result};
use crate::inroot::{on_pseudo_fs, Root};
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags, CWD,
};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Files at least this big get their write-back started as soon as they are written, so the
/// sync before a snapshot is committed has little left to wait for.
const EARLY_WRITEBACK: u64 = 128 << 10;

/// Starts writing a file's dirty pages to disk without waiting for them.
fn start_writeback(f: &File) {
    // SAFETY: sync_file_range only reads the descriptor, which `f` keeps open; a failure
    // merely leaves the write-back to the later syncfs.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Xattr that marks an overlay directory opaque.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const SCHILY_XATTR: &str = "SCHILY.xattr.";

/// Compression of a layer or archive, detected by magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else {
            Compression::None
        }
    }

    /// OCI media type of a layer blob with this compression.
    pub(crate) fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Wraps `reader` in a decompressor chosen by its first bytes.
pub(crate) fn decompress<'a>(
    reader: &'a mut dyn Read,
    what: &str,
) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("{what}: reading"), e)),
        }
    }
    let head = head[..n].to_vec();
    let c = Compression::detect(&head);
    let chained = Cursor::new(head).chain(reader);
    match c {
        Compression::None => Ok((c, Box::new(chained))),
        Compression::Gzip => Ok((c, Box::new(flate2::read::MultiGzDecoder::new(chained)))),
        Compression::Zstd => Ok((c, Box::new(ZstdFrames::new(chained)))),
        Compression::Bzip2 => Err(Error::InvalidInput(format!(
            "{what}: bzip2-compressed archives are not supported"
        ))),
        Compression::Xz => Err(Error::InvalidInput(format!(
            "{what}: xz-compressed archives are not supported"
        ))),
    }
}

/// A zstd stream of one or more frames (skippable frames included), decoded frame by frame.
struct ZstdFrames<R: Read> {
    source: Option<io::BufReader<R>>,
    frame: Option<
        ruzstd::decoding::StreamingDecoder<io::BufReader<R>, ruzstd::decoding::FrameDecoder>,
    >,
}

impl<R: Read> ZstdFrames<R> {
    fn new(inner: R) -> ZstdFrames<R> {
        ZstdFrames {
            source: Some(io::BufReader::new(inner)),
            frame: None,
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(f) = self.frame.as_mut() {
                let n = f.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.source = self.frame.take().map(|f| f.into_inner());
            }
            let Some(mut src) = self.source.take() else {
                return Ok(0);
            };
            if io::BufRead::fill_buf(&mut src)?.is_empty() {
                return Ok(0);
            }
            let dec = ruzstd::decoding::StreamingDecoder::new(src)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
            self.frame = Some(dec);
        }
    }
}

/// What unpacking a layer measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of the uncompressed tar stream.
    pub tar_size: u64,
    /// Sum of the sizes of the regular files written (Docker's layer size).
    pub content_size: u64,
    pub compression: Compression,
}

fn input_err(what: &str, e: io::Error) -> Error {
    Error::InvalidInput(format!("{what}: reading the tar stream: {e}"))
}

/// Unpacks a (possibly compressed) layer into `dest` (an empty directory) in overlay
/// format, hashing the uncompressed stream as it goes.
pub(crate) fn unpack_layer(blob: &mut dyn Read, dest: &Path, what: &str) -> Result<LayerStats> {
    let (compression, reader) = decompress(blob, what)?;
    let mut hr = HashReader::new(reader);
    let opts = ExtractOptions::default();
    let content_size = {
        let mut ex = Extractor::new(dest, Policy::Layer, &opts, what)?;
        let mut ar = tar::Archive::new(&mut hr);
        for entry in ar.entries().map_err(|e| input_err(what, e))? {
            let mut entry = entry.map_err(|e| input_err(what, e))?;
            ex.entry(&mut entry)?;
        }
        ex.finish()?;
        ex.content_size
    };
    let (diff_id, tar_size) = hr.drain_and_finish().map_err(|e| input_err(what, e))?;
    Ok(LayerStats {
        diff_id,
        tar_size,
        content_size,
        compression,
    })
}

/// The diff id of a (possibly compressed) layer without unpacking it.
pub(crate) fn layer_diff_id(blob: &mut dyn Read, what: &str) -> Result<(String, u64)> {
    let (_, reader) = decompress(blob, what)?;
    HashReader::new(reader)
        .drain_and_finish()
        .map_err(|e| input_err(what, e))
}

/// Extracts a (possibly compressed) tar into `dir` following `opts`; symlinks met on the
/// way resolve inside `dir`.
pub(crate) fn extract_into(reader: &mut dyn Read, dir: &Path, opts: &ExtractOptions) -> Result<()> {
    extract_at(reader, &Root::open(dir)?, Path::new(""), opts)
}

/// Extracts into the directory `dest` inside `root`: `dest` and every symlink met while
/// extracting resolve with `root` as `/`; entries may not climb above `dest`.
pub(crate) fn extract_at(
    reader: &mut dyn Read,
    root: &Root,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<()> {
    let what = "archive";
    let base = clean_path(dest.as_os_str().as_bytes()).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{} climbs out of {}",
            dest.display(),
            root.path().display()
        ))
    })?;
    let fd = rustix::io::fcntl_dupfd_cloexec(root.fd(), 0)
        .ctx(|| format!("opening {}", root.path().display()))?;
    let mut ex = Extractor::with_root(fd, root.path(), Policy::Copy, opts, what);
    let not_found = || {
        Error::NotFound(format!(
            "Could not find the file {} in container",
            dest.display()
        ))
    };
    match ex.open_in_root(&base, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) if on_pseudo_fs(fd.as_fd()) => return Err(not_found()),
        Ok(_) => {}
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Err(not_found()),
        Err(e) => {
            return Err(Error::io(
                format!("resolving {} in {}", dest.display(), root.path().display()),
                e.into(),
            ))
        }
    }
    ex.base = base;
    let (_, reader) = decompress(reader, what)?;
    let mut ar = tar::Archive::new(crate::tartail::PaddedEnd::new(reader));
    for entry in ar.entries().map_err(|e| input_err(what, e))? {
        let mut entry = entry.map_err(|e| input_err(what, e))?;
        ex.entry(&mut entry)?;
    }
    ex.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Image layer: whiteouts become overlay whiteouts, no device nodes, no writes through
    /// symlinks.
    Layer,
    /// `docker cp`: symlinks are followed inside the root.
    Copy,
}

/// Splits a tar path into clean components; `None` when `..` climbs above the root.
fn clean_path(raw: &[u8]) -> Option<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            _ => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Some(out)
}

fn join(comps: &[OsString]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in comps {
        p.push(c);
    }
    p
}

/// Metadata of one entry gathered from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn parse_pax_time(v: &str) -> Option<Timespec> {
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let tv_sec: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    let mut digits = 0;
    for ch in frac.chars().take(9) {
        nanos = nanos * 10 + i64::from(ch.to_digit(10)?);
        digits += 1;
    }
    for _ in digits..9 {
        nanos *= 10;
    }
    Some(Timespec {
        tv_sec,
        tv_nsec: nanos,
    })
}

struct Extractor<'o> {
    root: OwnedFd,
    root_path: PathBuf,
    policy: Policy,
    opts: &'o ExtractOptions,
    what: String,
    dir_times: Vec<(Vec<OsString>, Timespec)>,
    content_size: u64,
    cache: Option<(Vec<OsString>, OwnedFd)>,
    /// Entries (and hardlink targets) are relative to this directory under the root.
    base: Vec<OsString>,
}

impl<'o> Extractor<'o> {
    fn new(dest: &Path, policy: Policy, opts: &'o ExtractOptions, what: &str) -> Result<Self> {
        let root = rustix::fs::open(
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening destination directory {}", dest.display()))?;
        Ok(Extractor::with_root(root, dest, policy, opts, what))
    }

    /// An extractor into the tree whose top directory is open as `root`.
    fn with_root(
        root: OwnedFd,
        root_path: &Path,
        policy: Policy,
        opts: &'o ExtractOptions,
        what: &str,
    ) -> Self {
        Extractor {
            root,
            root_path: root_path.to_path_buf(),
            policy,
            opts,
            what: what.to_string(),
            dir_times: Vec::new(),
            content_size: 0,
            cache: None,
            base: Vec::new(),
        }
    }

    fn refuse(&self, name: &str, why: &str) -> Error {
        Error::InvalidInput(format!("{}: entry {name:?}: {why}", self.what))
    }

    fn io_err(&self, name: &str, op: &str, e: Errno) -> Error {
        Error::io(
            format!(
                "{}: entry {name:?}: {op} under {}",
                self.what,
                self.root_path.display()
            ),
            e.into(),
        )
    }

    fn resolve_flags(&self) -> ResolveFlags {
        match self.policy {
            Policy::Layer => {
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
            }
            Policy::Copy => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        }
    }

    fn open_in_root(
        &self,
        comps: &[OsString],
        oflags: OFlags,
    ) -> std::result::Result<OwnedFd, Errno> {
        let path = if comps.is_empty() {
            PathBuf::from(".")
        } else {
            join(comps)
        };
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                &self.root,
                &path,
                oflags | OFlags::CLOEXEC,
                Mode::empty(),
                self.resolve_flags(),
            ) {
                // openat2 asks for a retry when a concurrent rename raced a ".." lookup.
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    fn map_resolve_err(&self, name: &str, dir: &[OsString], e: Errno) -> Error {
        let shown = join(dir).display().to_string();
        match e {
            Errno::LOOP if self.policy == Policy::Layer => self.refuse(
                name,
                &format!(
                    "its parent {shown:?} goes through a symlink, which an image layer may not do"
                ),
            ),
            Errno::LOOP => self.refuse(
                name,
                &format!("its parent {shown:?} goes through a /proc magic link or a symlink loop"),
            ),
            Errno::XDEV => {
                self.refuse(name, &format!("{shown:?} resolves outside the destination"))
            }
            Errno::NOTDIR => self.refuse(name, &format!("{shown:?} is not a directory")),
            Errno::NOENT => self.refuse(name, &format!("{shown:?} does not exist")),
            e => self.io_err(name, "resolving the parent directory", e),
        }
    }

    /// Opens (O_PATH) the directory `comps`, creating missing components when `create`.
    fn resolve_dir(&mut self, name: &str, comps: &[OsString], create: bool) -> Result<OwnedFd> {
        if let Some((c, fd)) = &self.cache {
            if c.as_slice() == comps {
                return rustix::io::dup(fd).map_err(|e| self.io_err(name, "dup", e));
            }
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let fd = match self.open_in_root(comps, flags) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                let mut cur = self
                    .open_in_root(&[], flags)
                    .map_err(|e| self.map_resolve_err(name, &[], e))?;
                for i in 0..comps.len() {
                    let prefix = &comps[..=i];
                    cur = match self.open_in_root(prefix, flags) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT) => {
                            match rustix::fs::mkdirat(&cur, &comps[i], Mode::from_raw_mode(0o755)) {
                                Ok(()) | Err(Errno::EXIST) => {}
                                Err(e) => {
                                    return Err(self.io_err(name, "creating a parent directory", e))
                                }
                            }
                            self.open_in_root(prefix, flags)
                                .map_err(|e| self.map_resolve_err(name, prefix, e))?
                        }
                        Err(e) => return Err(self.map_resolve_err(name, prefix, e)),
                    };
                }
                cur
            }
            Err(e) => return Err(self.map_resolve_err(name, comps, e)),
        };
        if self.policy == Policy::Copy && on_pseudo_fs(fd.as_fd()) {
            return Err(self.refuse(name, "its directory is on procfs or sysfs"));
        }
        let dup = rustix::io::dup(&fd).map_err(|e| self.io_err(name, "dup", e))?;
        self.cache = Some((comps.to_vec(), dup));
        Ok(fd)
    }

    fn meta<R: Read>(&self, name: &str, entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let h = entry.header();
        let bad =
            |what: &str, e: io::Error| self.refuse(name, &format!("bad {what} in header: {e}"));
        let raw = h.as_old();
        let mut uid = blank_is_zero(&raw.uid, h.uid()).map_err(|e| bad("uid", e))?;
        let mut gid = blank_is_zero(&raw.gid, h.gid()).map_err(|e| bad("gid", e))?;
        let mode = blank_is_zero(&raw.mode, h.mode()).map_err(|e| bad("mode", e))? & 0o7777;
        let mtime = blank_is_zero(&raw.mtime, h.mtime()).map_err(|e| bad("mtime", e))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(|e| bad("PAX records", e))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad("PAX record", e))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(x) = key.strip_prefix(SCHILY_XATTR) {
                    xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
                    continue;
                }
                let val = ext.value().unwrap_or("");
                match key {
                    "uid" => uid = val.parse().map_err(|_| self.refuse(name, "bad PAX uid"))?,
                    "gid" => gid = val.parse().map_err(|_| self.refuse(name, "bad PAX gid"))?,
                    "mtime" => {
                        mtime =
                            parse_pax_time(val).ok_or_else(|| self.refuse(name, "bad PAX mtime"))?
                    }
                    _ => {}
                }
            }
        }
        let (uid, gid) = match self.opts.chown {
            Some(ids) => ids,
            None => (
                u32::try_from(uid).map_err(|_| self.refuse(name, "uid out of range"))?,
                u32::try_from(gid).map_err(|_| self.refuse(name, "gid out of range"))?,
            ),
        };
        let (uid, gid) = match &self.opts.ids {
            Some(ids) => ids.host_owner(uid, gid),
            None => (uid, gid),
        };
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    fn set_xattrs_fd(
        &self,
        name: &str,
        fd: BorrowedFd<'_>,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        for (k, v) in xattrs {
            if k.starts_with("trusted.overlay.") {
                continue;
            }
            match rustix::fs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty()) {
                Ok(()) => {}
                // Like Docker: a filesystem without (this kind of) xattr support is no error.
                Err(Errno::NOTSUP) | Err(Errno::PERM) => {
                    tracing::debug!(entry = name, xattr = %k, "xattr not supported, skipped");
                }
                Err(e) => return Err(self.io_err(name, &format!("setting xattr {k}"), e)),
            }
        }
        Ok(())
    }

    fn set_xattrs_path(
        &self,
        name: &str,
        path: &Path,
        xattrs: &[(String, Vec<u8>)],
        follow: bool,
    ) -> Result<()> {
        for (k, v) in xattrs {
            if k.starts_with("trusted.overlay.") {
                continue;
            }
            let r = if follow {
                rustix::fs::setxattr(path, k.as_str(), v, XattrFlags::empty())
            } else {
                rustix::fs::lsetxattr(path, k.as_str(), v, XattrFlags::empty())
            };
            match r {
                Ok(()) => {}
                Err(Errno::NOTSUP) | Err(Errno::PERM) => {
                    tracing::debug!(entry = name, xattr = %k, "xattr not supported, skipped");
                }
                Err(e) => return Err(self.io_err(name, &format!("setting xattr {k}"), e)),
            }
        }
        Ok(())
    }

    /// chown, chmod, xattrs (and mtime unless deferred) through an open, non-O_PATH fd.
    fn apply_fd(&self, name: &str, fd: BorrowedFd<'_>, m: &Meta, times: bool) -> Result<()> {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(m.uid)),
            Some(rustix::fs::Gid::from_raw(m.gid)),
        )
        .map_err(|e| self.io_err(name, "chown", e))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(m.mode))
            .map_err(|e| self.io_err(name, "chmod", e))?;
        self.set_xattrs_fd(name, fd, &m.xattrs)?;
        if times {
            let ts = Timestamps {
                last_access: m.mtime,
                last_modification: m.mtime,
            };
            rustix::fs::futimens(fd, &ts).map_err(|e| self.io_err(name, "setting times", e))?;
        }
        Ok(())
    }

    /// The same for special files, through an O_PATH fd and its /proc/self/fd link.
    fn apply_opath(&self, name: &str, parent: &OwnedFd, file: &OsStr, m: &Meta) -> Result<()> {
        let fd = rustix::fs::openat(
            parent,
            file,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io_err(name, "opening the new node", e))?;
        rustix::fs::chownat(
            &fd,
            "",
            Some(rustix::fs::Uid::from_raw(m.uid)),
            Some(rustix::fs::Gid::from_raw(m.gid)),
            AtFlags::EMPTY_PATH,
        )
        .map_err(|e| self.io_err(name, "chown", e))?;
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        rustix::fs::chmodat(
            CWD,
            &proc_path,
            Mode::from_raw_mode(m.mode),
            AtFlags::empty(),
        )
        .map_err(|e| self.io_err(name, "chmod", e))?;
        self.set_xattrs_path(name, &proc_path, &m.xattrs, true)?;
        let ts = Timestamps {
            last_access: m.mtime,
            last_modification: m.mtime,
        };
        rustix::fs::utimensat(CWD, &proc_path, &ts, AtFlags::empty())
            .map_err(|e| self.io_err(name, "setting times", e))?;
        Ok(())
    }

    /// Removes whatever is at `parent/file` (a tree included).
    fn remove_existing(&mut self, name: &str, parent: &OwnedFd, file: &OsStr) -> Result<()> {
        self.cache = None;
        remove_tree_at(parent.as_fd(), file)
            .map_err(|e| self.io_err(name, "removing the existing entry", e))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let Some(rel) = clean_path(&raw) else {
            return Err(self.refuse(&name, "path escapes the destination with \"..\""));
        };
        if rel.is_empty() {
            // The destination itself ("./"): nothing to create.
            return Ok(());
        }
        let comps: Vec<OsString> = self.base.iter().cloned().chain(rel).collect();
        let Some((file, parent_comps)) = comps.split_last() else {
            return Ok(());
        };
        let file = file.clone();
        let parent_comps = parent_comps.to_vec();
        let m = self.meta(&name, entry)?;
        let file_bytes = file.as_bytes();

        if self.policy == Policy::Layer && file_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&name, &parent_comps, file_bytes, &m);
        }

        let parent = self.resolve_dir(&name, &parent_comps, true)?;
        let is_dir = kind == tar::EntryType::Directory;
        let existing = match rustix::fs::statat(&parent, &file, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(self.io_err(&name, "inspecting the existing entry", e)),
        };
        let guard = self.policy == Policy::Copy && self.opts.no_overwrite_dir_non_dir;
        match existing {
            None => {}
            Some(FileType::Directory) if is_dir => {}
            Some(FileType::Directory) => {
                if guard {
                    return Err(
                        self.refuse(&name, "cannot overwrite a directory with a non-directory")
                    );
                }
                self.remove_existing(&name, &parent, &file)?;
            }
            Some(_) => {
                if guard && is_dir {
                    return Err(
                        self.refuse(&name, "cannot overwrite a non-directory with a directory")
                    );
                }
                self.remove_existing(&name, &parent, &file)?;
            }
        }

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    &parent,
                    &file,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.io_err(&name, "creating the file", e))?;
                let mut f = File::from(fd);
                let written = self.copy_data(&name, entry, &mut f)?;
                self.content_size += written;
                if written >= EARLY_WRITEBACK {
                    start_writeback(&f);
                }
                self.apply_fd(&name, f.as_fd(), &m, true)?;
            }
            tar::EntryType::Directory => {
                if existing != Some(FileType::Directory) {
                    rustix::fs::mkdirat(&parent, &file, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.io_err(&name, "creating the directory", e))?;
                }
                let fd = rustix::fs::openat(
                    &parent,
                    &file,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io_err(&name, "opening the directory", e))?;
                self.apply_fd(&name, fd.as_fd(), &m, false)?;
                self.dir_times.push((comps.clone(), m.mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&name, "symlink without a target"))?
                    .into_owned();
                if target.is_empty() {
                    return Err(self.refuse(&name, "symlink with an empty target"));
                }
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, &file)
                    .map_err(|e| self.io_err(&name, "creating the symlink", e))?;
                rustix::fs::chownat(
                    &parent,
                    &file,
                    Some(rustix::fs::Uid::from_raw(m.uid)),
                    Some(rustix::fs::Gid::from_raw(m.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.io_err(&name, "chown", e))?;
                let link_path =
                    PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(&file);
                self.set_xattrs_path(&name, &link_path, &m.xattrs, false)?;
                let ts = Timestamps {
                    last_access: m.mtime,
                    last_modification: m.mtime,
                };
                rustix::fs::utimensat(&parent, &file, &ts, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io_err(&name, "setting times", e))?;
            }
            tar::EntryType::Link => self.hardlink(&name, entry, &parent, &file)?,
            tar::EntryType::Char | tar::EntryType::Block => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let whiteout = kind == tar::EntryType::Char && major == 0 && minor == 0;
                let allowed = match self.policy {
                    Policy::Layer => whiteout,
                    Policy::Copy => self.opts.allow_devices,
                };
                if !allowed {
                    return Err(self.refuse(
                        &name,
                        &format!(
                            "device nodes ({major}:{minor}) are not allowed in {}",
                            if self.policy == Policy::Layer {
                                "image layers"
                            } else {
                                "this archive"
                            }
                        ),
                    ));
                }
                let ft = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                rustix::fs::mknodat(
                    &parent,
                    &file,
                    ft,
                    Mode::from_raw_mode(m.mode),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| self.io_err(&name, "creating the device node", e))?;
                self.apply_opath(&name, &parent, &file, &m)?;
            }
            tar::EntryType::Fifo => {
                rustix::fs::mknodat(
                    &parent,
                    &file,
                    FileType::Fifo,
                    Mode::from_raw_mode(m.mode),
                    0,
                )
                .map_err(|e| self.io_err(&name, "creating the fifo", e))?;
                self.apply_opath(&name, &parent, &file, &m)?;
            }
            other => {
                tracing::debug!(entry = %name, kind = ?other, "skipping tar entry of unsupported type");
            }
        }
        Ok(())
    }

    fn copy_data<R: Read>(
        &self,
        name: &str,
        entry: &mut tar::Entry<'_, R>,
        f: &mut File,
    ) -> Result<u64> {
        let mut buf = vec![0u8; 128 * 1024];
        let mut total = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.refuse(name, &format!("reading its data: {e}"))),
            };
            f.write_all(&buf[..n])
                .map_err(|e| Error::io(format!("{}: entry {name:?}: writing", self.what), e))?;
            total += n as u64;
        }
        Ok(total)
    }

    fn hardlink<R: Read>(
        &mut self,
        name: &str,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        file: &OsStr,
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| self.refuse(name, "hardlink without a target"))?
            .into_owned();
        let shown = String::from_utf8_lossy(&target).into_owned();
        let Some(trel) = clean_path(&target) else {
            return Err(self.refuse(
                name,
                &format!("hardlink target {shown:?} is outside the destination"),
            ));
        };
        let tcomps: Vec<OsString> = self.base.iter().cloned().chain(trel).collect();
        let Some((tfile, tparent)) = tcomps.split_last() else {
            return Err(self.refuse(name, "hardlink to the root directory"));
        };
        let tdir = match self.open_in_root(tparent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                return Err(self.refuse(name, &format!("hardlink target {shown:?} does not exist")))
            }
            Err(e) => return Err(self.map_resolve_err(name, tparent, e)),
        };
        match rustix::fs::statat(&tdir, tfile, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(self.refuse(name, &format!("hardlink target {shown:?} is a directory")))
            }
            Ok(_) => {}
            Err(Errno::NOENT) => {
                return Err(self.refuse(name, &format!("hardlink target {shown:?} does not exist")))
            }
            Err(e) => return Err(self.io_err(name, "inspecting the hardlink target", e)),
        }
        rustix::fs::linkat(&tdir, tfile, parent, file, AtFlags::empty())
            .map_err(|e| self.io_err(name, &format!("linking to {shown:?}"), e))
    }

    fn whiteout(
        &mut self,
        name: &str,
        parent_comps: &[OsString],
        file: &[u8],
        m: &Meta,
    ) -> Result<()> {
        if file == WHITEOUT_OPAQUE.as_bytes() {
            let dir = self.resolve_dir(name, parent_comps, true)?;
            let fd = rustix::fs::openat(
                &dir,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.io_err(name, "opening the opaque directory", e))?;
            return rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| self.io_err(name, "marking the directory opaque", e));
        }
        if file.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image content.
            return Ok(());
        }
        let target = OsStr::from_bytes(&file[WHITEOUT_PREFIX.len()..]);
        if target.is_empty() || target == "." || target == ".." {
            return Err(self.refuse(name, "whiteout of an invalid name"));
        }
        let parent = self.resolve_dir(name, parent_comps, true)?;
        match rustix::fs::statat(&parent, target, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => self.remove_existing(name, &parent, target)?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(self.io_err(name, "inspecting the whited-out entry", e)),
        }
        rustix::fs::mknodat(
            &parent,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| self.io_err(name, "creating the whiteout device", e))?;
        rustix::fs::chownat(
            &parent,
            target,
            Some(rustix::fs::Uid::from_raw(m.uid)),
            Some(rustix::fs::Gid::from_raw(m.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io_err(name, "chown", e))
    }

    /// Sets directory mtimes last (creating children changed them), deepest first.
    fn finish(&mut self) -> Result<()> {
        self.cache = None;
        let times = std::mem::take(&mut self.dir_times);
        for (comps, mtime) in times.iter().rev() {
            let fd = match self
                .open_in_root(comps, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
            {
                Ok(fd) => fd,
                // Replaced by a later entry.
                Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                Err(e) => {
                    return Err(self.io_err(
                        &join(comps).display().to_string(),
                        "reopening the directory",
                        e,
                    ))
                }
            };
            let ts = Timestamps {
                last_access: *mtime,
                last_modification: *mtime,
            };
            rustix::fs::futimens(&fd, &ts)
                .map_err(|e| self.io_err(&join(comps).display().to_string(), "setting times", e))?;
        }
        Ok(())
    }
}

/// Opens `path` (a directory) inside `root` with `root` as `/` and returns its host path
/// and the path relative to `root`'s real path.
fn open_dir_in_root(root: &Path, path: &Path) -> Result<(PathBuf, Vec<OsString>)> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening {}", root.display()))?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let fd = match rustix::fs::openat2(
        &root_fd,
        rel,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
            return Err(Error::NotFound(format!(
                "Could not find the file {} in container",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Error::io(
                format!("resolving {} in {}", path.display(), root.display()),
                e.into(),
            ))
        }
    };
    let ctx = || format!("resolving {} in {}", path.display(), root.display());
    let real_root =
        std::fs::read_link(format!("/proc/self/fd/{}", root_fd.as_raw_fd())).ctx(ctx)?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ctx(ctx)?;
    let base: Vec<OsString> = real
        .strip_prefix(&real_root)
        .map_err(|_| {
            Error::InvalidInput(format!(
                "{} resolves outside {}",
                path.display(),
                root.display()
            ))
        })?
        .components()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    // The resolved path below `root`, not `real`: for a root in another mount namespace
    // (/proc/<pid>/root) the kernel names `real` as seen from inside that namespace.
    let resolved = base.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    Ok((resolved, base))
}

/// See [`crate::archive::resolve_in_root`].
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    let bytes = path.as_os_str().as_bytes();
    let trimmed = {
        let mut b = bytes;
        while b.len() > 1 && b.ends_with(b"/") {
            b = &b[..b.len() - 1];
        }
        b
    };
    let (parent, last): (&[u8], &[u8]) = match trimmed.iter().rposition(|c| *c == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (b"", trimmed),
    };
    if last.is_empty() || last == b"." || last == b".." {
        return Ok(open_dir_in_root(root, path)?.0);
    }
    let (dir, _) = open_dir_in_root(root, Path::new(OsStr::from_bytes(parent)))?;
    Ok(dir.join(OsStr::from_bytes(last)))
}

/// Removes `name` under `dirfd`, recursively for directories, never following symlinks.
pub fn remove_tree_at(dirfd: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<(), Errno> {
    match rustix::fs::unlinkat(dirfd, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let fd = rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    {
        let mut dir = rustix::fs::Dir::read_from(&fd)?;
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                children.push(OsString::from_vec(n.to_vec()));
            }
        }
    }
    for c in &children {
        remove_tree_at(fd.as_fd(), c)?;
    }
    rustix::fs::unlinkat(dirfd, name, AtFlags::REMOVEDIR)
}

/// A numeric header field left blank (all NULs or spaces) reads as 0, as Go's archive/tar
/// reads it: tars that SDKs build with a bare header (no uid, gid or mtime set) have them.
fn blank_is_zero<T: Default>(raw: &[u8], parsed: io::Result<T>) -> io::Result<T> {
    if raw.iter().all(|b| *b == 0 || *b == b' ') {
        Ok(T::default())
    } else {
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        let c = |s: &str| clean_path(s.as_bytes()).map(|v| join(&v).display().to_string());
        assert_eq!(c("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(c("./a//b/").as_deref(), Some("a/b"));
        assert_eq!(c("/abs/x").as_deref(), Some("abs/x"));
        assert_eq!(c("../x"), None);
        assert_eq!(c("a/../../x"), None);
        assert_eq!(c("./").as_deref(), Some(""));
    }

    #[test]
    fn detects_compression() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"BZh9"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"abc"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn blank_numeric_fields_read_as_zero() {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        let raw = h.as_old();
        assert_eq!(blank_is_zero(&raw.uid, h.uid()).unwrap(), 0);
        assert_eq!(blank_is_zero(&raw.mtime, h.mtime()).unwrap(), 0);
        h.set_uid(7);
        let raw = h.as_old();
        assert_eq!(blank_is_zero(&raw.uid, h.uid()).unwrap(), 7);
        // A field with garbage is still an error.
        let mut bad = h.clone();
        bad.as_old_mut().gid = *b"xx\0\0\0\0\0\0";
        let raw = bad.as_old();
        assert!(blank_is_zero(&raw.gid, bad.gid()).is_err());
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time("1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1700000000, 500_000_000));
        let t = parse_pax_time("12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        assert!(parse_pax_time("x").is_none());
    }
}
