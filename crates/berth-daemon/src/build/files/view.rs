//! An image's filesystem as its stacked, unpacked layers ([`View`]): lookups with whiteouts and
//! opaque directories applied, symlinks resolved inside the image, globs, owner names from its
//! /etc files, and `COPY --from`'s merge of a path's layers into the staging dir. It only
//! reads the layers, by descriptor; it must not write anywhere but the given destination.

use super::at::{components, entries, is_opaque, is_whiteout, kind, open_top, At};
use super::context::has_glob;
use crate::error::{Error, Result};
use berth_image::archive::Root;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::super::{apply_perms, staged, Perms};
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

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
