//! `docker load`: the archive (plain or gzip tar) is staged into the content store entry by
//! entry, then read as a docker-archive (`manifest.json`) or an OCI image layout
//! (`index.json`); everything it added is undone if any image in it is broken.

use crate::digest::{sha256_hex, SHA256_PREFIX};
use crate::error::{Error, Result};
use crate::ingest::Txn;
use crate::store::Store;
use crate::unpack::decompress;
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Metadata files kept in memory rather than in the content store.
const SMALL_FILES: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];
const SMALL_LIMIT: u64 = 64 << 20;
const MAX_LINK_DEPTH: usize = 32;

/// The files of an archive: regular files as blobs in the content store, links by path.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    files: BTreeMap<String, (String, u64)>,
    links: BTreeMap<String, String>,
    pub(crate) small: BTreeMap<String, Vec<u8>>,
}

impl Staged {
    /// `(digest, size)` of the file at `path` (following links inside the archive).
    pub(crate) fn resolve(&self, path: &str) -> Option<&(String, u64)> {
        let mut p = clean(path.as_bytes())?;
        for _ in 0..MAX_LINK_DEPTH {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    pub(crate) fn resolve_or_err(&self, path: &str, what: &str) -> Result<&(String, u64)> {
        self.resolve(path).ok_or_else(|| {
            Error::InvalidInput(format!("load: {what} {path:?} is not in the archive"))
        })
    }
}

/// Cleans an archive path; `None` if it climbs out.
fn clean(raw: &[u8]) -> Option<String> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    let joined: Vec<u8> = parts.join(&b'/');
    String::from_utf8(joined).ok()
}

fn input(e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("load: reading the archive: {e}"))
}

impl Store {
    /// Loads images from a docker-archive or an OCI layout tar; returns Docker's lines
    /// (`Loaded image: busybox:latest`, `Loaded image ID: sha256:...`).
    pub fn load(&self, archive: &mut dyn Read) -> Result<Vec<String>> {
        let _w = self.lock_writes();
        let mut txn = Txn::new(self);
        let staged = self.stage(&mut txn, archive)?;
        let (prepared, lines) = if staged.small.contains_key("manifest.json") {
            crate::docker_archive::prepare(self, &mut txn, &staged)?
        } else if staged.small.contains_key("index.json") {
            crate::oci_layout::prepare(self, &mut txn, &staged)?
        } else {
            return Err(Error::InvalidInput(
                "load: the archive has neither a manifest.json (docker save) nor an index.json (OCI image layout)"
                    .to_string(),
            ));
        };
        self.publish(txn, prepared)?;
        Ok(lines)
    }

    fn stage(&self, txn: &mut Txn<'_>, archive: &mut dyn Read) -> Result<Staged> {
        let (_, reader) = decompress(archive, "load")?;
        let mut ar = tar::Archive::new(reader);
        let mut staged = Staged::default();
        let mut saw_entry = false;
        for entry in ar.entries().map_err(input)? {
            let mut entry = entry.map_err(input)?;
            saw_entry = true;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let Some(path) = clean(&raw) else {
                return Err(Error::InvalidInput(format!(
                    "load: archive entry {shown:?} climbs out of the archive"
                )));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    if SMALL_FILES.contains(&path.as_str()) {
                        if size > SMALL_LIMIT {
                            return Err(Error::InvalidInput(format!(
                                "load: {path} is too large ({size} bytes)"
                            )));
                        }
                        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                        entry.read_to_end(&mut buf).map_err(input)?;
                        staged.small.insert(path, buf);
                        continue;
                    }
                    let expected = path
                        .strip_prefix("blobs/sha256/")
                        .map(|h| format!("{SHA256_PREFIX}{h}"))
                        .filter(|d| sha256_hex(d).is_some());
                    let mut w = self.content.writer()?;
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = entry.read(&mut buf).map_err(input)?;
                        if n == 0 {
                            break;
                        }
                        w.write_all(&buf[..n])
                            .map_err(|e| Error::io(format!("load: staging {path}"), e))?;
                    }
                    let info = w.commit(None, Some(size))?;
                    if let Some(exp) = &expected {
                        if *exp != info.digest {
                            if info.created {
                                self.content.remove(&info.digest)?;
                            }
                            return Err(Error::InvalidInput(format!(
                                "load: {path} does not match its digest (its content has {})",
                                info.digest
                            )));
                        }
                    }
                    txn.note_blob(&info);
                    staged.files.insert(path, (info.digest, info.size));
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let resolved = if target.starts_with(b"/") {
                        clean(&target)
                    } else {
                        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        let mut joined = dir.as_bytes().to_vec();
                        joined.push(b'/');
                        joined.extend_from_slice(&target);
                        clean(&joined)
                    };
                    if let Some(r) = resolved {
                        staged.links.insert(path, r);
                    }
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    if let Some(r) = clean(&target) {
                        staged.links.insert(path, r);
                    }
                }
                _ => {}
            }
        }
        if !saw_entry {
            return Err(Error::InvalidInput(
                "load: the archive is empty".to_string(),
            ));
        }
        Ok(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_links_inside_the_archive() {
        let mut s = Staged::default();
        s.files
            .insert("blobs/sha256/aa".into(), ("sha256:aa".into(), 1));
        s.links
            .insert("x/layer.tar".into(), "blobs/sha256/aa".into());
        s.links.insert("loop".into(), "loop".into());
        assert_eq!(s.resolve("./x/layer.tar").map(|f| f.1), Some(1));
        assert!(s.resolve("loop").is_none());
        assert!(s.resolve("../x").is_none());
        assert_eq!(clean(b"a/./b/../c").as_deref(), Some("a/c"));
    }
}
