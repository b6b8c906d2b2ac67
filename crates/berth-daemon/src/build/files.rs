//! Files for COPY/ADD: resolving sources in the context (globs), digesting them for the cache,
//! copying them (or another image's files) into a staging dir that becomes the step's layer,
//! ADD's tar extraction and URL download, and lookups in an image's stacked layers.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An image's filesystem as its unpacked layers, top first.
pub struct View {
    pub layers: Vec<PathBuf>,
}

/// Where a path is in one layer.
enum InLayer {
    /// Not in this layer; lower layers may have it (`opaque`: a directory on the way hides
    /// them).
    Missing {
        opaque: bool,
    },
    /// A non-directory (or whiteout) on the way hides the path and everything below.
    Blocked,
    Found(PathBuf),
}

/// `rel` in `layer`, without following any symlink of the layer on the host.
fn in_layer(layer: &Path, rel: &str) -> InLayer {
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut p = layer.to_path_buf();
    let mut opaque = false;
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            return InLayer::Missing { opaque };
        };
        if i + 1 < comps.len() {
            if !m.is_dir() {
                return InLayer::Blocked;
            }
            opaque |= is_opaque(&p);
        } else if is_whiteout(&m) {
            return InLayer::Blocked;
        }
    }
    InLayer::Found(p)
}

impl View {
    /// The topmost layer's copy of `path` (relative, symlinks not followed), unless a
    /// whiteout or a file on the way hides it.
    pub fn find(&self, path: &str) -> Option<PathBuf> {
        for l in &self.layers {
            match in_layer(l, path) {
                InLayer::Found(p) => return Some(p),
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
            let link = self
                .find(&cand)
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
                .and_then(|p| std::fs::read_link(p).ok());
            match link {
                Some(target) => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    let t = target.to_string_lossy().to_string();
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
            let (p, stop) = match in_layer(l, dir) {
                InLayer::Found(p) => {
                    let stop = is_opaque(&p) || is_opaque_on_way(l, dir);
                    (p, stop)
                }
                InLayer::Blocked | InLayer::Missing { opaque: true } => break,
                InLayer::Missing { opaque: false } => continue,
            };
            if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                break;
            }
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let live = e.metadata().is_ok_and(|m| !is_whiteout(&m));
                names.entry(name).or_insert(live);
            }
            if stop {
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
            .is_some_and(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
    }

    /// Copies `src` (relative, symlinks resolved inside the image) from the merged layers to
    /// `dst`: bottom layer first, whiteouts and opaque directories applied.
    pub fn copy_out(&self, src: &str, dst: &Path) -> Result<bool> {
        let Some(src) = self.resolve(src) else {
            return Ok(false);
        };
        let mut found = false;
        for l in self.layers.iter().rev() {
            match in_layer(l, &src) {
                InLayer::Found(p) => {
                    if is_opaque_on_way(l, &src) {
                        remove_any(dst);
                    }
                    found = true;
                    merge_tree(&p, dst)?;
                }
                InLayer::Blocked | InLayer::Missing { opaque: true } => {
                    remove_any(dst);
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
            let path = self.find(&self.resolve(file)?)?;
            if !std::fs::symlink_metadata(&path).ok()?.is_file() {
                return None;
            }
            let text = std::fs::read_to_string(path).ok()?;
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

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether a directory on the way to `rel` in `layer` (not `rel` itself) is opaque.
fn is_opaque_on_way(layer: &Path, rel: &str) -> bool {
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let mut p = layer.to_path_buf();
    comps[..comps.len().saturating_sub(1)].iter().any(|c| {
        p.push(c);
        is_opaque(&p)
    })
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|a| xattr_get(dir, a).is_some_and(|v| v == b"y"))
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 8];
    // SAFETY: both strings are NUL-terminated and outlive the call; `buf` is writable for
    // its full length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(r).ok().map(|len| buf[..len].to_vec())
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

/// Merges one layer's copy of a tree into `dst` (upper layers call this later).
fn merge_tree(src: &Path, dst: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(src)?;
    if is_whiteout(&m) {
        remove_any(dst);
        return Ok(());
    }
    if m.is_dir() {
        if std::fs::symlink_metadata(dst).is_ok_and(|d| !d.is_dir()) || is_opaque(src) {
            remove_any(dst);
        }
        if !dst.exists() {
            std::fs::create_dir_all(dst)?;
        }
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            merge_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        return Ok(());
    }
    remove_any(dst);
    copy_entry(src, dst, &m)?;
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
    Ok(())
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
pub fn apply_perms(path: &Path, perms: Perms) -> Result<()> {
    let m = std::fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, Some(perms.owner.0), Some(perms.owner.1))?;
    if let (Some(mode), false) = (perms.chmod, m.file_type().is_symlink()) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if m.is_dir() {
        for e in std::fs::read_dir(path)? {
            apply_perms(&e?.path(), perms)?;
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
}
