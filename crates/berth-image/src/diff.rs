//! `docker diff`: changes of an overlay upper dir against its lower dirs, in Docker's order
//! (a sorted depth-first walk; a changed entry's parent directory is listed as modified).

use crate::error::{Error, IoContext, Result};
use crate::store::Store;
use crate::tarwrite::{get_xattr, XattrsOf};
use crate::unpack::OPAQUE_XATTR;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One line of `docker diff`; the path has a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Modified(String),
    Added(String),
    Deleted(String),
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Modified(p) | Change::Added(p) | Change::Deleted(p) => p,
        }
    }

    /// The Engine API `Kind`: 0 modified, 1 added, 2 deleted.
    pub fn kind(&self) -> u8 {
        match self {
            Change::Modified(_) => 0,
            Change::Added(_) => 1,
            Change::Deleted(_) => 2,
        }
    }
}

/// Docker's `sameFsTime`: equal, or equal seconds when either side lacks nanoseconds.
fn same_time(a: &Metadata, b: &Metadata) -> bool {
    (a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec())
        || (a.mtime() == b.mtime() && (a.mtime_nsec() == 0 || b.mtime_nsec() == 0))
}

struct Walk<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    changed_dirs: HashSet<String>,
    out: Vec<Change>,
}

impl Walk<'_> {
    fn dir(&mut self, rel: &str) -> Result<()> {
        let abs = if rel.is_empty() {
            self.upper.to_path_buf()
        } else {
            self.upper.join(&rel[1..])
        };
        let mut names: Vec<OsString> = fs::read_dir(&abs)
            .ctx(|| format!("reading {}", abs.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .ctx(|| format!("reading {}", abs.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let path = format!("{rel}/{}", n.to_string_lossy());
            let full = abs.join(&n);
            let meta = match fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("inspecting {}", full.display()), e)),
            };
            self.entry(&path, &full, &meta)?;
            if meta.is_dir() {
                self.dir(&path)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, full: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        let deleted = (ft.is_char_device() && meta.rdev() == 0)
            || (ft.is_dir()
                && get_xattr(XattrsOf::Path(full), OPAQUE_XATTR, path)?.is_some_and(|v| v == b"y"));
        let change = if deleted {
            Change::Deleted(path.to_string())
        } else {
            let mut change = Change::Added(path.to_string());
            for lower in self.lowers {
                let lp = lower.join(&path[1..]);
                match fs::symlink_metadata(&lp) {
                    Ok(lm) => {
                        if lm.is_dir()
                            && meta.is_dir()
                            && lm.size() == meta.size()
                            && lm.mode() == meta.mode()
                            && same_time(&lm, meta)
                        {
                            // Only there because something below it changed.
                            return Ok(());
                        }
                        change = Change::Modified(path.to_string());
                        break;
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc_enotdir()) => {}
                    Err(e) => return Err(Error::io(format!("inspecting {}", lp.display()), e)),
                }
            }
            change
        };
        if meta.is_dir() {
            self.changed_dirs.insert(path.to_string());
        }
        if matches!(change, Change::Added(_) | Change::Deleted(_)) {
            let parent = match path.rfind('/') {
                Some(0) | None => "/",
                Some(i) => &path[..i],
            };
            if parent != "/" && !self.changed_dirs.contains(parent) {
                self.out.push(Change::Modified(parent.to_string()));
                self.changed_dirs.insert(parent.to_string());
            }
        }
        self.out.push(change);
        Ok(())
    }
}

fn libc_enotdir() -> i32 {
    rustix::io::Errno::NOTDIR.raw_os_error()
}

impl Store {
    /// Changes of an overlay upper dir against its lower dirs (top first), like
    /// `docker diff`.
    pub fn diff(&self, upper_dir: &Path, lower_dirs: &[PathBuf]) -> Result<Vec<Change>> {
        diff_dirs(upper_dir, lower_dirs)
    }
}

/// [`Store::diff`] without a store.
pub fn diff_dirs(upper_dir: &Path, lower_dirs: &[PathBuf]) -> Result<Vec<Change>> {
    let mut w = Walk {
        upper: upper_dir,
        lowers: lower_dirs,
        changed_dirs: HashSet::new(),
        out: Vec::new(),
    };
    w.dir("")?;
    Ok(w.out)
}
