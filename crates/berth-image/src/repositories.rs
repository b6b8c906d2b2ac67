//! `repositories.json`: tag and digest references -> image id, in Docker's file shape
//! (`{"Repositories": {name: {reference: id}}}`) with fully qualified names, written
//! atomically.

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::reference::Reference;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Repositories {
    path: PathBuf,
    refs: BTreeMap<Reference, String>,
}

impl Repositories {
    pub(crate) fn load(path: &Path) -> Result<Repositories> {
        let mut repos = Repositories {
            path: path.to_path_buf(),
            refs: BTreeMap::new(),
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(repos),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let file: File = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{} is not valid: {e}", path.display())))?;
        for refs in file.repositories.into_values() {
            for (r, id) in refs {
                match Reference::parse(&r) {
                    Ok(parsed) if !parsed.is_name_only() => {
                        repos.refs.insert(parsed, id);
                    }
                    _ => {
                        tracing::warn!(reference = %r, "ignoring an invalid reference in repositories.json")
                    }
                }
            }
        }
        Ok(repos)
    }

    pub(crate) fn save(&self) -> Result<()> {
        let mut file = File::default();
        for (r, id) in &self.refs {
            file.repositories
                .entry(r.name())
                .or_default()
                .insert(r.to_string(), id.clone());
        }
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Corrupt(format!("repositories do not serialize: {e}")))?;
        atomic_write(&self.path, &bytes)
    }

    pub(crate) fn get(&self, r: &Reference) -> Option<&String> {
        self.refs.get(r)
    }

    pub(crate) fn set(&mut self, r: Reference, id: &str) {
        self.refs.insert(r, id.to_string());
    }

    pub(crate) fn remove(&mut self, r: &Reference) -> Option<String> {
        self.refs.remove(r)
    }

    /// References to `id`, sorted.
    pub(crate) fn refs_of(&self, id: &str) -> Vec<Reference> {
        self.refs
            .iter()
            .filter(|(_, v)| v.as_str() == id)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// References in the repository `name` (`docker.io/library/busybox`).
    pub(crate) fn by_name(&self, name: &str) -> Vec<(Reference, String)> {
        self.refs
            .iter()
            .filter(|(r, _)| r.name() == name)
            .map(|(r, id)| (r.clone(), id.clone()))
            .collect()
    }

    /// Drops references to images that are not in `keep`; true when something changed.
    pub(crate) fn retain_ids(&mut self, keep: impl Fn(&str) -> bool) -> bool {
        let before = self.refs.len();
        self.refs.retain(|_, id| keep(id));
        before != self.refs.len()
    }
}
