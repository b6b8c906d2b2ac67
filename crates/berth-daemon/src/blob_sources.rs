//! Which registry repositories each local blob is known to be in (from pulls and pushes), so a
//! push to another repository of the same registry can ask for a cross-repository mount. A leaf: it
//! imports no other module of the daemon, and it never talks to a registry itself (pull and push
//! record blobs and ask it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Repositories remembered per blob; the most recent come first.
const MAX_SOURCES: usize = 4;

pub struct BlobSources {
    path: PathBuf,
    map: Mutex<BTreeMap<String, Vec<String>>>,
}

impl BlobSources {
    /// Loads `<data-root>/blob-sources.json`; a missing or unreadable file starts empty (the
    /// record only saves uploads, it is never needed for correctness).
    pub fn load(data_root: &Path) -> BlobSources {
        let path = data_root.join("blob-sources.json");
        let map = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        BlobSources {
            path,
            map: Mutex::new(map),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Other repositories of `registry` that hold `digest`, most recent first.
    pub fn candidates(&self, digest: &str, registry: &str, repo: &str) -> Vec<String> {
        let prefix = format!("{registry}/");
        self.map()
            .get(digest)
            .into_iter()
            .flatten()
            .filter_map(|s| s.strip_prefix(&prefix))
            .filter(|r| *r != repo)
            .map(String::from)
            .collect()
    }

    /// Notes that `registry/repo` holds each of `digests` and saves the record; blobs no longer
    /// in the store (per `present`) are forgotten on the way.
    pub fn record(
        &self,
        registry: &str,
        repo: &str,
        digests: &[String],
        present: impl Fn(&str) -> bool,
    ) {
        let source = format!("{registry}/{repo}");
        let mut m = self.map();
        for d in digests {
            let v = m.entry(d.clone()).or_default();
            v.retain(|s| *s != source);
            v.insert(0, source.clone());
            v.truncate(MAX_SOURCES);
        }
        m.retain(|d, _| present(d));
        // Written under the lock: writers share one temp file, and the newest map must win.
        let saved = serde_json::to_vec(&*m)
            .map_err(std::io::Error::other)
            .and_then(|b| berth_api::fsutil::write_atomic(&self.path, &b, false));
        drop(m);
        if let Err(e) = saved {
            tracing::warn!(path = %self.path.display(), error = %e, "saving blob sources");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_other_repos_of_the_same_registry_newest_first() {
        let dir = std::env::temp_dir().join(format!("berth-blobsrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = BlobSources::load(&dir);
        let d = vec!["sha256:aa".to_string()];
        s.record("r:5000", "lib/a", &d, |_| true);
        s.record("other:5000", "lib/x", &d, |_| true);
        s.record("r:5000", "lib/b", &d, |_| true);
        assert_eq!(
            s.candidates("sha256:aa", "r:5000", "lib/c"),
            ["lib/b", "lib/a"]
        );
        assert_eq!(s.candidates("sha256:aa", "r:5000", "lib/b"), ["lib/a"]);
        // Saved and loaded again; blobs gone from the store are forgotten.
        let again = BlobSources::load(&dir);
        assert_eq!(again.candidates("sha256:aa", "other:5000", "q"), ["lib/x"]);
        again.record("r:5000", "lib/a", &["sha256:bb".to_string()], |d| {
            d != "sha256:aa"
        });
        assert!(again.candidates("sha256:aa", "r:5000", "q").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
