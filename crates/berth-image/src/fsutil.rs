//! Small filesystem helpers: unique temp names, atomic file replacement, directory fsync.

use crate::error::{IoContext, Result};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of every temporary name the store creates; `Store::open` removes leftovers.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique within this machine: `<prefix><pid>-<counter>-<nanos>`.
pub(crate) fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{n}-{nanos}", std::process::id())
}

/// fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).ctx(|| format!("opening directory {}", dir.display()))?;
    f.sync_all()
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// Syncs the whole filesystem `dir` is on (one wait for many unsynced writes).
pub(crate) fn sync_filesystem(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).ctx(|| format!("opening directory {}", dir.display()))?;
    rustix::fs::syncfs(&f)
        .map_err(std::io::Error::from)
        .ctx(|| format!("syncing the filesystem of {}", dir.display()))
}

/// Replaces `path` with `bytes` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, bytes, true)
}

/// Like [`atomic_write`] without syncing: the caller syncs a batch of them at once with
/// [`sync_filesystem`].
pub(crate) fn atomic_write_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(unique_name(TMP_PREFIX));
    let result = (|| {
        let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .ctx(|| format!("writing {}", tmp.display()))?;
        if sync {
            f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
        }
        fs::rename(&tmp, path)
            .ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if sync {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes every entry of `dir` whose name starts with [`TMP_PREFIX`] (files or trees).
pub(crate) fn remove_tmp_entries(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("reading {}", dir.display()),
                e,
            ))
        }
    };
    for entry in entries {
        let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes a file, symlink or directory tree; a missing path is not an error.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("inspecting {}", path.display()),
                e,
            ))
        }
    };
    let r = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::Error::io(
            format!("removing {}", path.display()),
            e,
        )),
    }
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("creating directory {}", dir.display()))
}
