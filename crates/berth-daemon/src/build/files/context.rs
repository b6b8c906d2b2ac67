//! COPY/ADD sources in the build context: resolved (globs, symlinks inside the context,
//! never outside it), digested for the cache key, and copied into the staging dir with their
//! owner and mode. It must not read an image's layers (see `view`).

use super::Perms;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
pub(super) fn has_glob(s: &str) -> bool {
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

/// Creates the missing directories of `dir` (relative to `stage`) as root, 0755.
pub fn mkdirs(stage: &Path, dir: &str) -> Result<PathBuf> {
    let p = stage.join(dir.trim_start_matches('/'));
    std::fs::create_dir_all(&p)?;
    Ok(p)
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
