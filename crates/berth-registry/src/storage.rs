//! The filesystem store under `--root`: content-addressed blobs shared by all repositories, and
//! per-repository links (blobs, manifest revisions, tags, referrers) that make them visible.
//!
//! ```text
//! blobs/sha256/<hex[..2]>/<hex>                         content (blobs and manifests)
//! repositories/<name>/_layers/sha256/<hex>              blob linked into the repository
//! repositories/<name>/_manifests/revisions/sha256/<hex> manifest, holding its media type
//! repositories/<name>/_manifests/tags/<tag>             tag, holding the manifest digest
//! repositories/<name>/_referrers/sha256/<subject>/<hex> manifest <hex> has subject <subject>
//! uploads/<id>/{repo,data}                              upload sessions
//! tmp/                                                  temp files before their rename
//! ```

use crate::fsutil::{self, list_dir, remove_if_present};
use crate::names::Digest;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A manifest revision as stored: its content and the media type it was pushed with.
#[derive(Debug)]
pub struct StoredManifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Store {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: &Path) -> io::Result<Store> {
        for d in ["blobs/sha256", "repositories", "uploads", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Removes every temp file; only safe when no server uses the store (under the root lock).
    pub fn clear_tmp(&self) -> io::Result<()> {
        for name in list_dir(&self.tmp_dir())? {
            remove_if_present(&self.tmp_dir().join(name))?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn temp_path(&self) -> io::Result<PathBuf> {
        fsutil::temp_path(&self.tmp_dir())
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(&d.hex()[..2]).join(d.hex())
    }

    /// The size of a stored blob, `None` if absent.
    pub fn blob_size(&self, d: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.blob_path(d)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Publishes a complete temp file as blob `d`. The caller has checked its digest while
    /// writing it. If the blob is already there, the temp file is dropped.
    pub fn publish_blob(&self, tmp: &Path, d: &Digest) -> io::Result<()> {
        if self.blob_size(d)?.is_some() {
            fs::remove_file(tmp)?;
            return Ok(());
        }
        fs::File::open(tmp)?.sync_all()?;
        fsutil::publish(tmp, &self.blob_path(d))
    }

    /// Stores small content (a manifest) as a blob, atomically.
    pub fn put_blob_bytes(&self, data: &[u8]) -> io::Result<Digest> {
        let d = Digest::of(data);
        if self.blob_size(&d)?.is_none() {
            fsutil::write_atomic(&self.tmp_dir(), &self.blob_path(&d), data)?;
        }
        Ok(d)
    }

    /// Every stored blob with its size.
    pub fn all_blobs(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for prefix in list_dir(&self.blobs_dir())? {
            let dir = self.blobs_dir().join(&prefix);
            for name in list_dir(&dir)? {
                if let Some(d) = Digest::from_hex(&name).filter(|d| d.hex().starts_with(&prefix)) {
                    let len = fs::metadata(dir.join(&name))?.len();
                    out.push((d, len));
                }
            }
        }
        Ok(out)
    }

    pub fn remove_blob(&self, d: &Digest) -> io::Result<bool> {
        remove_if_present(&self.blob_path(d))
    }

    // Repositories. `name` is always a validated repository name (no `..`, no leading `/`).

    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        let dir = self.repo_dir(name);
        dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name).join("_layers/sha256").join(d.hex())
    }

    /// The size of blob `d` if it is stored and linked into repository `name`.
    pub fn linked_blob_size(&self, name: &str, d: &Digest) -> io::Result<Option<u64>> {
        if !self.layer_link(name, d).is_file() {
            return Ok(None);
        }
        self.blob_size(d)
    }

    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        let link = self.layer_link(name, d);
        if link.is_file() {
            return Ok(());
        }
        fsutil::write_atomic(&self.tmp_dir(), &link, b"")
    }

    pub fn unlink_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        remove_if_present(&self.layer_link(name, d))
    }

    /// Digests linked into a repository.
    pub fn linked_blobs(&self, name: &str) -> io::Result<Vec<Digest>> {
        let names = list_dir(&self.repo_dir(name).join("_layers/sha256"))?;
        Ok(names.iter().filter_map(|n| Digest::from_hex(n)).collect())
    }

    fn revision_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests/revisions/sha256")
            .join(d.hex())
    }

    fn tags_dir(&self, name: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags")
    }

    fn referrers_dir(&self, name: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_referrers/sha256")
            .join(subject.hex())
    }

    /// Records manifest `d` (already stored as a blob) in repository `name`: its revision link,
    /// its referrers entry, then each tag.
    pub fn link_manifest(
        &self,
        name: &str,
        d: &Digest,
        media_type: &str,
        subject: Option<&Digest>,
        tags: &[String],
    ) -> io::Result<()> {
        fsutil::write_atomic(
            &self.tmp_dir(),
            &self.revision_link(name, d),
            media_type.as_bytes(),
        )?;
        if let Some(s) = subject {
            fsutil::write_atomic(
                &self.tmp_dir(),
                &self.referrers_dir(name, s).join(d.hex()),
                b"",
            )?;
        }
        for tag in tags {
            fsutil::write_atomic(
                &self.tmp_dir(),
                &self.tags_dir(name).join(tag),
                d.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// The media type of manifest `d` in repository `name`, if it is there.
    pub fn manifest_media_type(&self, name: &str, d: &Digest) -> io::Result<Option<String>> {
        match fs::read_to_string(self.revision_link(name, d)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Manifest `d` of repository `name` with its content.
    pub fn read_manifest(&self, name: &str, d: &Digest) -> io::Result<Option<StoredManifest>> {
        let Some(media_type) = self.manifest_media_type(name, d)? else {
            return Ok(None);
        };
        match fs::read(self.blob_path(d)) {
            Ok(bytes) => Ok(Some(StoredManifest { media_type, bytes })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The manifest revisions of a repository.
    pub fn manifests(&self, name: &str) -> io::Result<Vec<Digest>> {
        let dir = self.repo_dir(name).join("_manifests/revisions/sha256");
        Ok(list_dir(&dir)?
            .iter()
            .filter_map(|n| Digest::from_hex(n))
            .collect())
    }

    pub fn resolve_tag(&self, name: &str, tag: &str) -> io::Result<Option<Digest>> {
        match fs::read_to_string(self.tags_dir(name).join(tag)) {
            Ok(s) => Ok(Digest::parse(s.trim()).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tags and the digests they point to, sorted by tag; `None` if the repository is unknown.
    pub fn tags(&self, name: &str) -> io::Result<Option<Vec<(String, Digest)>>> {
        if !self.repo_exists(name) {
            return Ok(None);
        }
        let mut out = Vec::new();
        for tag in list_dir(&self.tags_dir(name))? {
            if !crate::names::valid_tag(&tag) {
                continue;
            }
            if let Some(d) = self.resolve_tag(name, &tag)? {
                out.push((tag, d));
            }
        }
        Ok(Some(out))
    }

    pub fn delete_tag(&self, name: &str, tag: &str) -> io::Result<bool> {
        remove_if_present(&self.tags_dir(name).join(tag))
    }

    /// Removes manifest `d` from repository `name` with every tag pointing to it and its
    /// referrers entry. `Ok(false)` if it was not there.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let Some(stored) = self.read_manifest(name, d)? else {
            return Ok(false);
        };
        for (tag, target) in self.tags(name)?.unwrap_or_default() {
            if &target == d {
                self.delete_tag(name, &tag)?;
            }
        }
        let subject = crate::manifest::Manifest::parse(&stored.bytes, Some(&stored.media_type))
            .ok()
            .and_then(|m| m.subject);
        self.unlink_manifest(name, d, subject.as_ref())?;
        Ok(true)
    }

    /// Removes the revision link of `d` and its entry under its subject's referrers.
    pub fn unlink_manifest(
        &self,
        name: &str,
        d: &Digest,
        subject: Option<&Digest>,
    ) -> io::Result<()> {
        if let Some(s) = subject {
            let dir = self.referrers_dir(name, s);
            remove_if_present(&dir.join(d.hex()))?;
            // Only succeeds once no other referrer is left.
            let _ = fs::remove_dir(&dir);
        }
        remove_if_present(&self.revision_link(name, d))?;
        Ok(())
    }

    /// Manifests of repository `name` whose subject is `subject`.
    pub fn referrers(&self, name: &str, subject: &Digest) -> io::Result<Vec<Digest>> {
        let names = list_dir(&self.referrers_dir(name, subject))?;
        Ok(names.iter().filter_map(|n| Digest::from_hex(n)).collect())
    }

    /// Every repository name, sorted.
    pub fn repositories(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk_repos(&self.root.join("repositories"), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk_repos(&self, dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
        for entry in list_dir(dir)? {
            // Link directories start with `_`, which no name component can.
            if entry.starts_with('_') {
                continue;
            }
            let path = dir.join(&entry);
            if !path.is_dir() {
                continue;
            }
            let name = if prefix.is_empty() {
                entry.clone()
            } else {
                format!("{prefix}/{entry}")
            };
            if !crate::names::valid_name(&name) {
                continue;
            }
            if self.repo_exists(&name) {
                out.push(name.clone());
            }
            self.walk_repos(&path, &name, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> Store {
        let p = std::env::temp_dir().join(format!(
            "berth-registry-storage-{tag}-{}-{}",
            std::process::id(),
            fsutil::random_id().unwrap()
        ));
        Store::open(&p).unwrap()
    }

    #[test]
    fn blobs_are_published_whole_under_their_digest() {
        let s = store("blobs");
        let tmp = s.temp_path().unwrap();
        fs::write(&tmp, b"hello").unwrap();
        let d = Digest::of(b"hello");
        assert_eq!(s.blob_size(&d).unwrap(), None);
        s.publish_blob(&tmp, &d).unwrap();
        assert_eq!(s.blob_size(&d).unwrap(), Some(5));
        assert_eq!(
            s.blob_path(&d),
            s.root()
                .join(format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex()))
        );
        // Publishing the same content again keeps one copy and drops the temp file.
        let tmp2 = s.temp_path().unwrap();
        fs::write(&tmp2, b"hello").unwrap();
        s.publish_blob(&tmp2, &d).unwrap();
        assert!(!tmp2.exists());
        assert_eq!(s.all_blobs().unwrap(), vec![(d.clone(), 5)]);
        assert!(list_dir(&s.tmp_dir()).unwrap().is_empty());
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn links_scope_blobs_to_repositories() {
        let s = store("links");
        let d = s.put_blob_bytes(b"config").unwrap();
        assert_eq!(s.linked_blob_size("a/b", &d).unwrap(), None);
        assert!(!s.repo_exists("a/b"));
        s.link_blob("a/b", &d).unwrap();
        assert!(s.repo_exists("a/b"));
        assert!(!s.repo_exists("a"));
        assert_eq!(s.linked_blob_size("a/b", &d).unwrap(), Some(6));
        assert_eq!(s.linked_blob_size("c", &d).unwrap(), None);
        // A link to content that gc removed is no blob.
        s.remove_blob(&d).unwrap();
        assert_eq!(s.linked_blob_size("a/b", &d).unwrap(), None);
        assert!(s.unlink_blob("a/b", &d).unwrap());
        assert!(!s.unlink_blob("a/b", &d).unwrap());
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn manifests_tags_referrers_and_catalog() {
        let s = store("manifests");
        let subject = Digest::of(b"subject");
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"subject":{{"digest":"{subject}","size":1}}}}"#,
            Digest::of(b"c")
        );
        let d = s.put_blob_bytes(body.as_bytes()).unwrap();
        s.link_manifest(
            "x/y",
            &d,
            crate::manifest::OCI_MANIFEST,
            Some(&subject),
            &["v1".into(), "latest".into()],
        )
        .unwrap();
        s.link_blob("z", &subject).unwrap();
        assert_eq!(s.resolve_tag("x/y", "v1").unwrap(), Some(d.clone()));
        let tags: Vec<String> = s
            .tags("x/y")
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(tags, ["latest", "v1"]);
        assert_eq!(s.tags("nope").unwrap(), None);
        assert_eq!(s.referrers("x/y", &subject).unwrap(), vec![d.clone()]);
        let m = s.read_manifest("x/y", &d).unwrap().unwrap();
        assert_eq!(m.bytes, body.as_bytes());
        assert_eq!(m.media_type, crate::manifest::OCI_MANIFEST);
        assert_eq!(s.repositories().unwrap(), ["x/y", "z"]);

        assert!(s.delete_manifest("x/y", &d).unwrap());
        assert!(!s.delete_manifest("x/y", &d).unwrap());
        assert_eq!(s.tags("x/y").unwrap().unwrap(), vec![]);
        assert_eq!(s.referrers("x/y", &subject).unwrap(), vec![]);
        assert!(s.read_manifest("x/y", &d).unwrap().is_none());
        // The content stays for gc.
        assert!(s.blob_size(&d).unwrap().is_some());
        fs::remove_dir_all(s.root()).unwrap();
    }
}
