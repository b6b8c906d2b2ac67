//! Content store: immutable blobs under `content/sha256/<hex>`, written through a temp file
//! in `content/tmp`, fsynced, checked against the expected digest and size, then renamed.

use crate::digest::{is_hex64, sha256_hex, Hasher, SHA256_PREFIX};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{create_dir_all, fsync_dir, remove_any, unique_name};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A blob that is in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobInfo {
    pub digest: String,
    pub size: u64,
    /// False when the blob was already there.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ContentStore {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    pub(crate) fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("content").join("sha256");
        let tmp = root.join("content").join("tmp");
        create_dir_all(&blobs)?;
        create_dir_all(&tmp)?;
        Ok(ContentStore { blobs, tmp })
    }

    /// Removes half-written blobs (everything in `content/tmp`) and stray temp names.
    pub(crate) fn clean_tmp(&self) -> Result<()> {
        for entry in fs::read_dir(&self.tmp).ctx(|| format!("reading {}", self.tmp.display()))? {
            let entry = entry.ctx(|| format!("reading {}", self.tmp.display()))?;
            remove_any(&entry.path())?;
        }
        crate::fsutil::remove_tmp_entries(&self.blobs)
    }

    #[cfg(test)]
    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Path of a blob, whether or not it exists; `None` for a malformed digest.
    pub(crate) fn path(&self, digest: &str) -> Option<PathBuf> {
        sha256_hex(digest).map(|h| self.blobs.join(h))
    }

    fn checked_path(&self, digest: &str) -> Result<PathBuf> {
        self.path(digest)
            .ok_or_else(|| Error::InvalidInput(format!("invalid digest {digest:?}")))
    }

    #[cfg(test)]
    pub(crate) fn has(&self, digest: &str) -> bool {
        self.path(digest).is_some_and(|p| p.is_file())
    }

    /// Size of a stored blob.
    pub(crate) fn size(&self, digest: &str) -> Result<u64> {
        let p = self.checked_path(digest)?;
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(format!(
                "blob {digest} is not in the content store"
            ))),
            Err(e) => Err(Error::io(format!("inspecting blob {}", p.display()), e)),
        }
    }

    pub(crate) fn open_blob(&self, digest: &str) -> Result<File> {
        let p = self.checked_path(digest)?;
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(format!(
                "blob {digest} is not in the content store"
            ))),
            Err(e) => Err(Error::io(format!("opening blob {}", p.display()), e)),
        }
    }

    /// Reads a (small) blob and checks it against its digest.
    pub(crate) fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let mut f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .ctx(|| format!("reading blob {digest}"))?;
        let actual = crate::digest::sha256_digest(&buf);
        if actual != digest {
            return Err(Error::Corrupt(format!(
                "blob {digest} in the content store has digest {actual}: the store is corrupt"
            )));
        }
        Ok(buf)
    }

    /// Starts writing a new blob.
    pub(crate) fn writer(&self) -> Result<BlobWriter> {
        let path = self.tmp.join(unique_name(""));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Hasher::default(),
            blobs: self.blobs.clone(),
        })
    }

    /// Stores `bytes`, checking `expected` when given.
    pub(crate) fn write_bytes(&self, bytes: &[u8], expected: Option<&str>) -> Result<BlobInfo> {
        let mut w = self.writer()?;
        w.write_all(bytes)
            .ctx(|| format!("writing {}", w.path.display()))?;
        w.commit(expected, None)
    }

    /// Stores everything `reader` yields, checking `expected` and `expected_size` when given.
    pub(crate) fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<BlobInfo> {
        let mut w = self.writer()?;
        io::copy(reader, &mut w).map_err(|e| {
            Error::io(
                match expected {
                    Some(d) => format!("reading blob {d}"),
                    None => "reading blob".to_string(),
                },
                e,
            )
        })?;
        w.commit(expected, expected_size)
    }

    /// Removes a blob; a missing blob is not an error.
    pub(crate) fn remove(&self, digest: &str) -> Result<()> {
        let p = self.checked_path(digest)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing blob {}", p.display()), e)),
        }
    }

    /// Digests of all stored blobs.
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.blobs).ctx(|| format!("reading {}", self.blobs.display()))?
        {
            let entry = entry.ctx(|| format!("reading {}", self.blobs.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_hex64(&name) {
                out.push(format!("{SHA256_PREFIX}{name}"));
            }
        }
        Ok(out)
    }
}

/// A blob being written: hashes as it goes; [`BlobWriter::commit`] verifies and renames;
/// dropping it without commit removes the temp file.
pub(crate) struct BlobWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Hasher,
    blobs: PathBuf,
}

impl BlobWriter {
    pub(crate) fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// fsyncs, checks the digest (and size) and moves the blob into place.
    pub(crate) fn commit(
        mut self,
        expected: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<BlobInfo> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Corrupt("blob writer used after commit".to_string()))?;
        let (digest, size) = std::mem::take(&mut self.hasher).finish();
        if let Some(exp) = expected {
            if exp != digest {
                return Err(Error::InvalidInput(format!(
                    "blob digest mismatch: expected {exp}, got {digest}"
                )));
            }
        }
        if let Some(exp) = expected_size {
            if exp != size {
                return Err(Error::InvalidInput(format!(
                    "blob {digest}: expected {exp} bytes, got {size}"
                )));
            }
        }
        let hex = &digest[SHA256_PREFIX.len()..];
        let dest = self.blobs.join(hex);
        if dest.is_file() {
            return Ok(BlobInfo {
                digest,
                size,
                created: false,
            });
        }
        file.sync_all()
            .ctx(|| format!("syncing {}", self.path.display()))?;
        drop(file);
        fs::rename(&self.path, &dest)
            .ctx(|| format!("renaming {} to {}", self.path.display(), dest.display()))?;
        fsync_dir(&self.blobs)?;
        Ok(BlobInfo {
            digest,
            size,
            created: true,
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer used after commit"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Committed blobs were renamed away; this removes only an abandoned temp file.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_root(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(unique_name(&format!("berth-content-{name}-")));
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn write_verify_and_dedupe() {
        let root = tmp_root("w");
        let cs = ContentStore::open(&root).unwrap();
        let d = crate::digest::sha256_digest(b"hello");
        let info = cs.write_bytes(b"hello", Some(&d)).unwrap();
        assert!(info.created);
        assert_eq!(info.size, 5);
        assert!(cs.has(&d));
        assert_eq!(cs.read(&d).unwrap(), b"hello");
        let again = cs.write_bytes(b"hello", None).unwrap();
        assert!(!again.created);
        let bad = cs.write_bytes(b"other", Some(&d)).unwrap_err();
        assert!(bad.to_string().contains("mismatch"), "{bad}");
        assert_eq!(fs::read_dir(cs.tmp_dir()).unwrap().count(), 0);
        assert_eq!(cs.list().unwrap(), vec![d.clone()]);
        cs.remove(&d).unwrap();
        assert!(!cs.has(&d));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn corrupt_blob_is_detected() {
        let root = tmp_root("c");
        let cs = ContentStore::open(&root).unwrap();
        let d = cs.write_bytes(b"abc", None).unwrap().digest;
        fs::write(cs.path(&d).unwrap(), b"abd").unwrap();
        assert!(matches!(cs.read(&d), Err(Error::Corrupt(_))));
        fs::remove_dir_all(root).unwrap();
    }
}
