//! Crash-safe file operations: everything is written to a temp file, fsynced and renamed into
//! place (then the directory is fsynced), so a reader never sees a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// 32 random hex characters (128 bits from the kernel), for upload ids and temp names.
pub fn random_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A fresh path in `tmp_dir` (same filesystem as the store, so renames out of it are atomic).
pub fn temp_path(tmp_dir: &Path) -> io::Result<PathBuf> {
    Ok(tmp_dir.join(format!("tmp-{}", random_id()?)))
}

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Moves a complete, already fsynced file to `dest`, creating its parent, and makes the rename
/// durable. `dest` either keeps its old content or has the new one, never a mix.
pub fn publish(tmp: &Path, dest: &Path) -> io::Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "destination has no parent"))?;
    fs::create_dir_all(parent)?;
    fs::rename(tmp, dest)?;
    sync_dir(parent)
}

/// Writes `data` to `dest` atomically through a temp file in `tmp_dir`.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_path(tmp_dir)?;
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        publish(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file; `Ok(false)` if it was not there.
pub fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The names in a directory, sorted; empty if the directory does not exist.
pub fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// An exclusive `flock` on `<root>/lock`, held while the value lives: one server per storage
/// root, and no gc while a server runs.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// `Ok(None)` if another process holds the lock.
    pub fn try_acquire(root: &Path) -> io::Result<Option<RootLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(RootLock { _file: file })),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "berth-registry-fsutil-{tag}-{}-{}",
            std::process::id(),
            random_id().unwrap()
        ));
        fs::create_dir_all(p.join("tmp")).unwrap();
        p
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = scratch("write");
        let dest = dir.join("a/b/c");
        write_atomic(&dir.join("tmp"), &dest, b"one").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        write_atomic(&dir.join("tmp"), &dest, b"two, longer").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two, longer");
        assert!(list_dir(&dir.join("tmp")).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_publishes_nothing() {
        let dir = scratch("fail");
        // The destination's parent is a file: the rename fails after the data was written.
        fs::write(dir.join("file"), b"x").unwrap();
        let dest = dir.join("file/child");
        assert!(write_atomic(&dir.join("tmp"), &dest, b"data").is_err());
        assert!(!dest.exists());
        assert!(list_dir(&dir.join("tmp")).unwrap().is_empty());
        // A missing temp directory fails before anything is created.
        assert!(write_atomic(&dir.join("nope"), &dir.join("x"), b"data").is_err());
        assert!(!dir.join("x").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn publish_moves_whole_files() {
        let dir = scratch("publish");
        let tmp = temp_path(&dir.join("tmp")).unwrap();
        fs::write(&tmp, b"blob").unwrap();
        let dest = dir.join("blobs/ab/abcd");
        publish(&tmp, &dest).unwrap();
        assert!(!tmp.exists());
        assert_eq!(fs::read(&dest).unwrap(), b"blob");
        assert!(remove_if_present(&dest).unwrap());
        assert!(!remove_if_present(&dest).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ids_are_random_hex() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn root_lock_is_exclusive() {
        let dir = scratch("lock");
        let first = RootLock::try_acquire(&dir).unwrap();
        assert!(first.is_some());
        assert!(RootLock::try_acquire(&dir).unwrap().is_none());
        drop(first);
        assert!(RootLock::try_acquire(&dir).unwrap().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
