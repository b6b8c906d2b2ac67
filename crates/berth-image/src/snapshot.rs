//! Snapshots: unpacked layers in overlay format under `snapshots/<chain-id hex>/fs`, shared
//! by every image whose layer chain has that id. A snapshot is unpacked into a temp dir and
//! renamed into place, so a complete name is always a complete snapshot.

use crate::digest::{is_hex64, sha256_digest, sha256_hex, SHA256_PREFIX};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{
    create_dir_all, fsync_dir, remove_any, remove_tmp_entries, unique_name, TMP_PREFIX,
};
use std::fs;
use std::path::{Path, PathBuf};

/// Chain ids of a list of diff ids (OCI image spec): `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Snapshots {
    root: PathBuf,
}

/// A snapshot being unpacked; dropped without commit, its directory is removed.
pub(crate) struct TempSnapshot {
    dir: PathBuf,
    committed: bool,
}

impl TempSnapshot {
    /// The directory to unpack into.
    pub(crate) fn fs_dir(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for TempSnapshot {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.dir);
        }
    }
}

impl Snapshots {
    pub(crate) fn open(data_root: &Path) -> Result<Snapshots> {
        let root = data_root.join("snapshots");
        create_dir_all(&root)?;
        Ok(Snapshots { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Removes half-unpacked snapshots and half-removed ones.
    pub(crate) fn clean_tmp(&self) -> Result<()> {
        remove_tmp_entries(&self.root)
    }

    fn dir(&self, chain_id: &str) -> Result<PathBuf> {
        sha256_hex(chain_id)
            .map(|h| self.root.join(h))
            .ok_or_else(|| Error::Corrupt(format!("invalid chain id {chain_id:?}")))
    }

    /// `snapshots/<hex>/fs`, whether or not it exists.
    pub(crate) fn fs_path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.dir(chain_id)?.join("fs"))
    }

    pub(crate) fn exists(&self, chain_id: &str) -> bool {
        self.dir(chain_id)
            .map(|d| d.join("fs").is_dir())
            .unwrap_or(false)
    }

    /// A fresh temp directory with an empty `fs` inside.
    pub(crate) fn prepare(&self) -> Result<TempSnapshot> {
        let dir = self.root.join(unique_name(TMP_PREFIX));
        fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let t = TempSnapshot {
            dir,
            committed: false,
        };
        let fs_dir = t.fs_dir();
        fs::create_dir(&fs_dir).ctx(|| format!("creating {}", fs_dir.display()))?;
        fs::set_permissions(&fs_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .ctx(|| format!("chmod {}", fs_dir.display()))?;
        Ok(t)
    }

    /// Makes the unpacked content durable (syncfs) and renames it into place. Returns
    /// false when the snapshot already existed (the temp copy is then removed).
    pub(crate) fn commit(&self, mut tmp: TempSnapshot, chain_id: &str) -> Result<bool> {
        let dest = self.dir(chain_id)?;
        if dest.join("fs").is_dir() {
            return Ok(false);
        }
        let dirf = fs::File::open(&tmp.dir).ctx(|| format!("opening {}", tmp.dir.display()))?;
        rustix::fs::syncfs(&dirf)
            .ctx(|| format!("syncing the filesystem of {}", tmp.dir.display()))?;
        if dest.exists() {
            // A directory without fs/ is debris: replace it.
            self.remove_dir(&dest)?;
        }
        fs::rename(&tmp.dir, &dest)
            .ctx(|| format!("renaming {} to {}", tmp.dir.display(), dest.display()))?;
        tmp.committed = true;
        fsync_dir(&self.root)?;
        Ok(true)
    }

    fn remove_dir(&self, dir: &Path) -> Result<()> {
        // Rename first so that a crash halfway leaves only a temp name for open() to clean.
        let trash = self.root.join(unique_name(TMP_PREFIX));
        match fs::rename(dir, &trash) {
            Ok(()) => remove_any(&trash),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("renaming {} for removal", dir.display()),
                e,
            )),
        }
    }

    /// Removes a snapshot; a missing one is not an error.
    pub(crate) fn remove(&self, chain_id: &str) -> Result<()> {
        let dir = self.dir(chain_id)?;
        self.remove_dir(&dir)
    }

    /// Chain ids of all snapshots.
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).ctx(|| format!("reading {}", self.root.display()))? {
            let entry = entry.ctx(|| format!("reading {}", self.root.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_hex64(&name) {
                out.push(format!("{SHA256_PREFIX}{name}"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn prepare_commit_remove() {
        let root = std::env::temp_dir().join(unique_name("berth-snap-"));
        fs::create_dir_all(&root).unwrap();
        let s = Snapshots::open(&root).unwrap();
        let id = format!("sha256:{}", "c".repeat(64));
        let t = s.prepare().unwrap();
        fs::write(t.fs_dir().join("x"), b"1").unwrap();
        assert!(s.commit(t, &id).unwrap());
        assert!(s.exists(&id));
        let t2 = s.prepare().unwrap();
        assert!(!s.commit(t2, &id).unwrap());
        // An abandoned temp snapshot is removed on drop.
        drop(s.prepare().unwrap());
        assert_eq!(s.list().unwrap(), vec![id.clone()]);
        assert_eq!(fs::read_dir(s.root()).unwrap().count(), 1);
        s.remove(&id).unwrap();
        assert!(!s.exists(&id));
        fs::remove_dir_all(root).unwrap();
    }
}
