//! Files for COPY/ADD: resolving sources in the context (globs), digesting them for the cache,
//! copying them (or another image's files) into a staging dir that becomes the step's layer,
//! ADD's tar extraction and URL download, and lookups in an image's stacked layers. An
//! image's layers and the staging dir of `COPY --from` are walked by file descriptors from
//! their top ([`Root`]), with `*at` calls that never follow a symlink found there.

use crate::error::{Error, Result};
use berth_image::archive::Root;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An entry reached through descriptors only: the directory it is in and its name there, or
/// (no name) that directory itself.
#[derive(Clone)]
pub struct At {
    /// Opened `O_RDONLY | O_DIRECTORY`, never through a symlink.
    dir: Arc<OwnedFd>,
    name: Option<OsString>,
}

/// Opens the directory `name` in `dir`; a symlink there is not followed (`ELOOP`).
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The top of `root` as a readable directory descriptor.
fn open_top(root: &Root) -> Result<OwnedFd> {
    Ok(root.open_at(Path::new("."), OFlags::RDONLY | OFlags::DIRECTORY)?)
}

/// The names in the directory `dir`, `.` and `..` left out.
fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
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

fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// An overlay whiteout: a character device 0/0.
fn is_whiteout(st: &Stat) -> bool {
    kind(st) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether the open directory `dir` is marked opaque (it hides the layers below).
fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|a| {
            let mut buf = [0u8; 8];
            rustix::fs::fgetxattr(dir, *a, &mut buf).is_ok_and(|n| &buf[..n] == b"y")
        })
}

impl At {
    fn new(dir: OwnedFd, name: Option<&OsStr>) -> At {
        At {
            dir: Arc::new(dir),
            name: name.map(OsStr::to_os_string),
        }
    }

    /// The entry's status; a symlink is not followed.
    fn stat(&self) -> io::Result<Stat> {
        Ok(match &self.name {
            Some(n) => rustix::fs::statat(&*self.dir, n, AtFlags::SYMLINK_NOFOLLOW)?,
            None => rustix::fs::fstat(&*self.dir)?,
        })
    }

    /// The entry opened as a directory (never through a symlink).
    fn open_dir(&self) -> io::Result<OwnedFd> {
        match &self.name {
            Some(n) => open_dir(self.dir.as_fd(), n),
            None => self.dir.try_clone(),
        }
    }

    /// The entry `name` of this directory.
    fn child(dir: &Arc<OwnedFd>, name: &OsStr) -> At {
        At {
            dir: dir.clone(),
            name: Some(name.to_os_string()),
        }
    }

    /// The target of the entry if it is a symlink.
    fn link_target(&self) -> Option<String> {
        let name = self.name.as_ref()?;
        let t = rustix::fs::readlinkat(&*self.dir, name, Vec::new()).ok()?;
        Some(String::from_utf8_lossy(t.as_bytes()).into_owned())
    }

    /// The regular file this entry is, open for reading (anything else is `EINVAL`).
    fn open_file(&self) -> io::Result<std::fs::File> {
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
    fn remove(&self) -> io::Result<()> {
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
    fn make_dir(&self) -> io::Result<OwnedFd> {
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
    fn set_owner_mode(&self, owner: (u32, u32), mode: Option<u32>, st: &Stat) -> io::Result<()> {
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
fn components(rel: &str) -> Option<Vec<&str>> {
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (!comps.contains(&"..")).then_some(comps)
}

/// An image's filesystem as its unpacked layers (top first), each reached from its
/// descriptor: every component below is opened with `*at` calls that never follow a symlink
/// of the layer on the host.
pub struct View {
    layers: Vec<Root>,
}

/// Where a path is in one layer.
enum InLayer {
    /// Not in this layer; lower layers may have it (`opaque`: a directory on the way hides
    /// them).
    Missing { opaque: bool },
    /// A non-directory (or whiteout) on the way hides the path and everything below.
    Blocked,
    /// There; `opaque`: a directory on the way (not the entry itself) is opaque.
    Found { at: At, opaque: bool },
}

/// `rel` in `layer`, without following any symlink of the layer.
fn in_layer(layer: &Root, rel: &str) -> InLayer {
    let missing = InLayer::Missing { opaque: false };
    let Some(comps) = components(rel) else {
        return missing;
    };
    let Ok(mut dir) = open_top(layer) else {
        return missing;
    };
    let mut opaque = false;
    let Some((last, way)) = comps.split_last() else {
        return InLayer::Found {
            at: At::new(dir, None),
            opaque,
        };
    };
    for c in way {
        match rustix::fs::openat(
            &dir,
            *c,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(next) => dir = next,
            // A file, symlink or whiteout on the way.
            Err(Errno::NOTDIR | Errno::LOOP) => return InLayer::Blocked,
            Err(_) => return InLayer::Missing { opaque },
        }
        opaque |= is_opaque(dir.as_fd());
    }
    match rustix::fs::statat(&dir, *last, AtFlags::SYMLINK_NOFOLLOW) {
        Err(_) => InLayer::Missing { opaque },
        Ok(st) if is_whiteout(&st) => InLayer::Blocked,
        Ok(_) => InLayer::Found {
            at: At::new(dir, Some(OsStr::new(last))),
            opaque,
        },
    }
}

impl View {
    /// Opens the unpacked layers of an image, top first.
    pub fn open(layers: &[PathBuf]) -> Result<View> {
        let layers = layers
            .iter()
            .map(|p| Root::open(p))
            .collect::<berth_image::Result<Vec<_>>>()?;
        Ok(View { layers })
    }

    /// The topmost layer's copy of `path` (relative, symlinks not followed), unless a
    /// whiteout or a file on the way hides it.
    fn find(&self, path: &str) -> Option<At> {
        for l in &self.layers {
            match in_layer(l, path) {
                InLayer::Found { at, .. } => return Some(at),
                InLayer::Blocked | InLayer::Missing { opaque: true } => return None,
                InLayer::Missing { opaque: false } => {}
            }
        }
        None
    }

    /// Resolves the symlinks of `path` inside the image (absolute targets from its root);
    /// `None` on a symlink loop.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut todo: std::collections::VecDeque<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            let cand = if done.is_empty() {
                c.clone()
            } else {
                format!("{}/{c}", done.join("/"))
            };
            match self.find(&cand).and_then(|at| at.link_target()) {
                Some(t) => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    if t.starts_with('/') {
                        done.clear();
                    }
                    for tc in t.split('/').rev().filter(|x| !x.is_empty() && *x != ".") {
                        todo.push_front(tc.to_string());
                    }
                }
                None => done.push(c),
            }
        }
        Some(done.join("/"))
    }

    /// The names in directory `dir` of the merged layers (whiteouts and opaque dirs applied).
    fn list(&self, dir: &str) -> Vec<String> {
        let mut names = BTreeMap::new();
        for l in &self.layers {
            let (at, opaque_on_way) = match in_layer(l, dir) {
                InLayer::Found { at, opaque } => (at, opaque),
                InLayer::Blocked | InLayer::Missing { opaque: true } => break,
                InLayer::Missing { opaque: false } => continue,
            };
            // Not a directory (a symlink is not followed): it hides the layers below.
            let Ok(fd) = at.open_dir() else {
                break;
            };
            for name in entries(fd.as_fd()).unwrap_or_default() {
                let live = rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| !is_whiteout(&st));
                names
                    .entry(name.to_string_lossy().into_owned())
                    .or_insert(live);
            }
            if opaque_on_way || is_opaque(fd.as_fd()) {
                break;
            }
        }
        names
            .into_iter()
            .filter_map(|(n, live)| live.then_some(n))
            .collect()
    }

    /// The paths of the image matching a COPY source pattern (`*`, `?`, `[...]` per path
    /// component), sorted; the pattern itself when it has no metacharacters.
    pub fn glob(&self, pattern: &str) -> Vec<String> {
        let mut found = vec![String::new()];
        for seg in pattern.split('/').filter(|s| !s.is_empty() && *s != ".") {
            let mut next = Vec::new();
            for base in &found {
                let join = |n: &str| {
                    if base.is_empty() {
                        n.to_string()
                    } else {
                        format!("{base}/{n}")
                    }
                };
                if has_glob(seg) {
                    let dir = self.resolve(base).unwrap_or_default();
                    for n in self.list(&dir) {
                        if berth_build::ignore::glob(seg, &n) {
                            next.push(join(&n));
                        }
                    }
                } else {
                    next.push(join(seg));
                }
            }
            found = next;
        }
        found.sort();
        found
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.resolve(path)
            .and_then(|r| self.find(&r))
            .is_some_and(|at| at.stat().is_ok_and(|st| kind(&st) == FileType::Directory))
    }

    /// Copies `src` (relative, symlinks resolved inside the image) from the merged layers to
    /// `dst`: bottom layer first, whiteouts and opaque directories applied.
    pub fn copy_out(&self, src: &str, dst: &At) -> Result<bool> {
        let Some(src) = self.resolve(src) else {
            return Ok(false);
        };
        let mut found = false;
        for l in self.layers.iter().rev() {
            match in_layer(l, &src) {
                InLayer::Found { at, opaque } => {
                    if opaque {
                        dst.remove()?;
                    }
                    found = true;
                    merge_tree(&at, dst)?;
                }
                InLayer::Blocked | InLayer::Missing { opaque: true } => {
                    dst.remove()?;
                    found = false;
                }
                InLayer::Missing { opaque: false } => {}
            }
        }
        Ok(found)
    }

    /// `user[:group]` as numeric ids, names looked up in the image's /etc/passwd and /etc/group.
    pub fn resolve_owner(&self, spec: &str) -> Result<(u32, u32)> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let lookup = |file: &str, name: &str, field: usize| -> Option<(u32, u32)> {
            let f = self.find(&self.resolve(file)?)?.open_file().ok()?;
            let mut text = String::new();
            f.take(16 << 20).read_to_string(&mut text).ok()?;
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.first() == Some(&name) {
                    let id = f.get(2)?.parse().ok()?;
                    let gid = f.get(field).and_then(|x| x.parse().ok()).unwrap_or(id);
                    Some((id, gid))
                } else {
                    None
                }
            })
        };
        let (uid, primary) = match u.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => lookup("etc/passwd", u, 3).ok_or_else(|| {
                Error::bad_request(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))
            })?,
        };
        let gid = match g {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup("etc/group", g, 2).map(|x| x.0).ok_or_else(|| {
                    Error::bad_request(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"))
                })?,
            },
        };
        Ok((uid, gid))
    }
}

/// Merges one layer's copy of an entry into `dst` (upper layers call this later), keeping
/// owners and modes.
fn merge_tree(src: &At, dst: &At) -> io::Result<()> {
    let st = src.stat()?;
    if is_whiteout(&st) {
        return dst.remove();
    }
    let owner = (st.st_uid, st.st_gid);
    if kind(&st) == FileType::Directory {
        let from = Arc::new(src.open_dir()?);
        let replace = dst
            .stat()
            .is_ok_and(|d| kind(&d) != FileType::Directory || is_opaque(from.as_fd()));
        if replace {
            dst.remove()?;
        }
        let to = Arc::new(dst.make_dir()?);
        At::new(to.try_clone()?, None).set_owner_mode(owner, Some(st.st_mode), &st)?;
        for name in entries(from.as_fd())? {
            merge_tree(&At::child(&from, &name), &At::child(&to, &name))?;
        }
        return Ok(());
    }
    // A file where a directory is kept (the staging top): an upper layer's directory
    // replaces it there anyway.
    let Some(name) = &dst.name else {
        return Ok(());
    };
    dst.remove()?;
    let dir = dst.dir.as_fd();
    let ty = kind(&st);
    match ty {
        FileType::RegularFile => {
            let mut from = src.open_file()?;
            let to = rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            io::copy(&mut from, &mut std::fs::File::from(to))?;
        }
        FileType::Symlink => {
            let src_name = src.name.as_ref().ok_or(Errno::INVAL)?;
            let target = rustix::fs::readlinkat(&*src.dir, src_name, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), dir, name)?;
        }
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
            rustix::fs::mknodat(dir, name, ty, Mode::from_raw_mode(0o600), st.st_rdev)?;
        }
        // Sockets belong to a process, not to an image.
        _ => return Ok(()),
    }
    dst.set_owner_mode(owner, Some(st.st_mode), &st)
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Copies a file or symlink (not a directory) with its mode.
fn copy_entry(src: &Path, dst: &Path, m: &std::fs::Metadata) -> Result<()> {
    if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
    } else if m.is_file() {
        std::fs::copy(src, dst)?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    Ok(())
}

/// Whether `s` has glob metacharacters.
fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Context-relative paths of every entry under `root` (files and directories), sorted.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in names {
        let r = if rel.is_empty() {
            n
        } else {
            format!("{rel}/{n}")
        };
        let is_dir = std::fs::symlink_metadata(root.join(&r)).is_ok_and(|m| m.is_dir());
        out.push(r.clone());
        if is_dir {
            walk(root, &r, out)?;
        }
    }
    Ok(())
}

/// Resolves COPY sources in the context: literal paths or globs, cleaned, never outside it.
pub fn resolve_sources(ctx: &Path, srcs: &[String], kw: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut all: Option<Vec<String>> = None;
    for s in srcs {
        let clean = berth_build::ignore::clean(s.trim_start_matches('/'));
        if clean.starts_with("..") {
            return Err(Error::bad_request(format!(
                "{kw} failed: forbidden path outside the build context: {s} ()"
            )));
        }
        if has_glob(&clean) {
            if all.is_none() {
                let mut v = Vec::new();
                walk(ctx, "", &mut v)?;
                all = Some(v);
            }
            let matched: Vec<String> = all
                .iter()
                .flatten()
                .filter(|p| berth_build::ignore::glob(&clean, p))
                .cloned()
                .collect();
            if matched.is_empty() {
                return Err(Error::bad_request(format!(
                    "{kw} failed: no source files were specified"
                )));
            }
            out.extend(matched);
        } else {
            let missing = || {
                Error::bad_request(format!(
                    "{kw} failed: file not found in build context or excluded by .dockerignore: stat {clean}: file does not exist"
                ))
            };
            // Symlinked directories on the way resolve inside the context, never to the host.
            let resolved = berth_image::archive::resolve_in_root(ctx, Path::new(&clean))
                .map_err(|_| missing())?;
            if std::fs::symlink_metadata(&resolved).is_err() {
                return Err(missing());
            }
            let rel = resolved
                .strip_prefix(ctx)
                .map(|r| r.to_string_lossy().to_string())
                .map_err(|_| missing())?;
            out.push(rel);
        }
    }
    Ok(out)
}

/// Content digests of the sources (every file under a directory), for the cache key.
pub fn digest_sources(ctx: &Path, srcs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in srcs {
        let p = ctx.join(s);
        let m = std::fs::symlink_metadata(&p)?;
        if m.is_dir() {
            let mut v = Vec::new();
            walk(&p, "", &mut v)?;
            out.insert(format!("{s}/"), format!("dir {:o}", m.mode() & 0o7777));
            for r in v {
                let key = if s.is_empty() {
                    r.clone()
                } else {
                    format!("{s}/{r}")
                };
                out.insert(key, digest_one(&p.join(&r))?);
            }
        } else {
            out.insert(s.clone(), digest_one(&p)?);
        }
    }
    Ok(out)
}

fn digest_one(p: &Path) -> Result<String> {
    let m = std::fs::symlink_metadata(p)?;
    let mode = m.mode() & 0o7777;
    if m.file_type().is_symlink() {
        return Ok(format!("link {}", std::fs::read_link(p)?.display()));
    }
    if m.is_dir() {
        return Ok(format!("dir {mode:o}"));
    }
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!(
        "{mode:o} {}",
        berth_build::cache::hex(&h.finalize())
    ))
}

/// How copied entries are owned and moded.
#[derive(Clone, Copy)]
pub struct Perms {
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
}

/// Copies `src` into `dst` (a tree for a directory), setting owner and mode.
pub fn copy_in(src: &Path, dst: &Path, perms: Perms) -> Result<()> {
    let m = std::fs::symlink_metadata(src)?;
    if m.is_dir() {
        if !dst.is_dir() {
            std::fs::create_dir_all(dst)?;
        }
        let mode = perms.chmod.unwrap_or(m.mode() & 0o7777);
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::lchown(dst, Some(perms.owner.0), Some(perms.owner.1))?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_in(&e.path(), &dst.join(e.file_name()), perms)?;
        }
        return Ok(());
    }
    remove_any(dst);
    copy_entry(src, dst, &m)?;
    if let (Some(mode), false) = (perms.chmod, m.file_type().is_symlink()) {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))?;
    }
    std::os::unix::fs::lchown(dst, Some(perms.owner.0), Some(perms.owner.1))?;
    Ok(())
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

/// Creates the missing directories of `dir` (relative to `stage`) as root, 0755.
pub fn mkdirs(stage: &Path, dir: &str) -> Result<PathBuf> {
    let p = stage.join(dir.trim_start_matches('/'));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

/// Whether `p` looks like a tar archive (plain, gzip, bzip2, xz or zstd): ADD extracts those.
pub fn is_archive(p: &Path) -> bool {
    // A symlink is copied as one, never followed out of the context.
    if !std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let mut head = [0u8; 262];
    let Ok(n) = read_full(&mut f, &mut head) else {
        return false;
    };
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &h[257..262] == b"ustar")
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// Extracts the archive `src` into `dst` (ADD of a local tar).
pub fn extract_archive(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    let mut f = std::io::BufReader::new(std::fs::File::open(src)?);
    berth_image::archive::extract(
        &mut f,
        dst,
        &berth_image::archive::ExtractOptions::default(),
    )?;
    Ok(())
}

/// Downloads `url` (plain http) for ADD; errors say which URL failed and why.
pub fn download(url: &str) -> Result<Vec<u8>> {
    let fail = |why: String| Error::bad_request(format!("ADD failed: failed to GET {url}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// URLs are supported by berth's builder".into()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| fail(e.to_string()))?
        .collect();
    let sa = addrs.first().ok_or_else(|| fail("no address".into()))?;
    let mut s = std::net::TcpStream::connect_timeout(sa, std::time::Duration::from_secs(10))
        .map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: berth\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| fail(e.to_string()))?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(Error::bad_request(format!(
            "ADD failed: failed to GET {url} with status {}",
            head.lines()
                .next()
                .and_then(|l| l.split_once(' '))
                .map_or(status, |(_, rest)| rest)
        )));
    }
    Ok(resp[split + 4..].to_vec())
}

/// Mode bits from an octal `--chmod` value.
pub fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Error::bad_request(format!("invalid chmod parameter: {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_values() {
        assert_eq!(parse_chmod("755").ok(), Some(0o755));
        assert!(parse_chmod("9").is_err());
        assert!(parse_chmod("u+x").is_err());
    }

    #[test]
    fn sources_and_digests() {
        let dir = std::env::temp_dir().join(format!("berth-build-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/sub")).unwrap();
        std::fs::write(dir.join("src/a.c"), "a").unwrap();
        std::fs::write(dir.join("src/sub/b.c"), "b").unwrap();
        std::fs::write(dir.join("top.txt"), "t").unwrap();
        let r = resolve_sources(&dir, &["src/*.c".into(), "/top.txt".into()], "COPY").unwrap();
        assert_eq!(r, vec!["src/a.c", "top.txt"]);
        assert!(resolve_sources(&dir, &["../x".into()], "COPY").is_err());
        assert!(resolve_sources(&dir, &["missing".into()], "COPY").is_err());
        let d1 = digest_sources(&dir, &["src".into()]).unwrap();
        assert!(d1.contains_key("src/sub/b.c"));
        std::fs::write(dir.join("src/sub/b.c"), "changed").unwrap();
        let d2 = digest_sources(&dir, &["src".into()]).unwrap();
        assert_ne!(d1.get("src/sub/b.c"), d2.get("src/sub/b.c"));
        assert_eq!(d1.get("src/a.c"), d2.get("src/a.c"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn layers_are_merged_and_copied_by_descriptor() {
        use std::os::unix::fs::{symlink, FileTypeExt};
        let t = std::env::temp_dir().join(format!("berth-build-view-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let (lower, upper, stage, host) =
            (t.join("l1"), t.join("l2"), t.join("stage"), t.join("host"));
        for d in ["d/sub", "o", "s"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        for d in ["d", "o"] {
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        std::fs::create_dir_all(&stage).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(lower.join("d/keep"), "k").unwrap();
        std::fs::write(lower.join("d/gone"), "g").unwrap();
        std::fs::write(lower.join("d/sub/deep"), "deep").unwrap();
        symlink("/etc", lower.join("d/link")).unwrap();
        std::fs::write(lower.join("o/old"), "old").unwrap();
        std::fs::write(lower.join("s/suid"), "x").unwrap();
        std::fs::set_permissions(
            lower.join("s/suid"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            lower.join("s/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        // The upper layer deletes d/gone, adds d/new, makes o opaque and links to the root.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("d/gone"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
        std::fs::write(upper.join("d/new"), "n").unwrap();
        std::fs::write(upper.join("o/fresh"), "f").unwrap();
        rustix::fs::setxattr(
            upper.join("o"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        symlink("/", upper.join("esc")).unwrap();

        let v = View::open(&[upper.clone(), lower.clone()]).unwrap();
        assert_eq!(v.list("d"), ["keep", "link", "new", "sub"]);
        assert_eq!(v.list("o"), ["fresh"]);
        assert_eq!(v.glob("d/*e*"), ["d/keep", "d/new"]);
        assert!(v.is_dir("d/sub") && !v.is_dir("d/keep") && !v.is_dir("d/link"));
        // Symlinks resolve inside the image: nothing of the host is found or copied.
        assert_eq!(
            v.resolve("esc/d/link/passwd").as_deref(),
            Some("etc/passwd")
        );
        let root = Root::open(&stage).unwrap();
        assert!(!v
            .copy_out("esc/etc/hostname", &staged(&root, "h").unwrap())
            .unwrap());
        assert!(!v
            .copy_out("d/link/passwd", &staged(&root, "p").unwrap())
            .unwrap());
        assert!(!v.copy_out("d/gone", &staged(&root, "g").unwrap()).unwrap());

        assert!(v.copy_out("d", &staged(&root, "a/out").unwrap()).unwrap());
        assert!(v.copy_out("o", &staged(&root, "a/o").unwrap()).unwrap());
        assert!(v.copy_out("s", &staged(&root, "s").unwrap()).unwrap());
        let read = |p: &str| std::fs::read_to_string(stage.join(p)).unwrap();
        assert_eq!(
            (read("a/out/keep"), read("a/out/new")),
            ("k".into(), "n".into())
        );
        assert_eq!(read("a/out/sub/deep"), "deep");
        assert!(!stage.join("a/out/gone").exists() && !stage.join("a/o/old").exists());
        assert_eq!(read("a/o/fresh"), "f");
        assert_eq!(
            std::fs::read_link(stage.join("a/out/link")).unwrap(),
            Path::new("/etc")
        );
        let meta = |p: &str| std::fs::symlink_metadata(stage.join(p)).unwrap();
        assert_eq!(meta("s/suid").mode() & 0o7777, 0o4755);
        assert!(meta("s/fifo").file_type().is_fifo());
        assert_eq!(meta("s/fifo").mode() & 0o7777, 0o640);

        // --chown/--chmod over a copied tree; a symlink keeps its own mode.
        let perms = Perms {
            owner: (7, 8),
            chmod: Some(0o640),
        };
        apply_perms(&staged(&root, "a/out").unwrap(), perms).unwrap();
        for p in ["a/out", "a/out/keep", "a/out/sub/deep", "a/out/link"] {
            assert_eq!((meta(p).uid(), meta(p).gid()), (7, 8), "{p}");
        }
        assert_eq!(meta("a/out/keep").mode() & 0o7777, 0o640);
        assert_eq!(meta("a/out/link").mode() & 0o777, 0o777);

        // A symlink in the staging dir is never followed out of it.
        symlink(&host, stage.join("planted")).unwrap();
        assert!(staged(&root, "planted/x").is_err());
        assert!(v
            .copy_out("d/keep", &staged(&root, "planted").unwrap())
            .unwrap());
        assert_eq!(read("planted"), "k");
        assert!(std::fs::read_dir(&host).unwrap().next().is_none());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
