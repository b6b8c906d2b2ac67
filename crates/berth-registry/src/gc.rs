//! Garbage collection, mark and sweep as registry:2 does it: blobs that no kept manifest of any
//! repository references (config, layers, the manifests themselves, index children) are removed.
//!
//! Untagged manifests are kept by default. With `delete_untagged`, a manifest survives only if a
//! tag reaches it (directly or as a child of a tagged index), or if its `subject` is a surviving
//! manifest (signatures, SBOMs and other referrers live as long as what they describe).
//! gc takes the storage root's lock, so it refuses to run beside a server (a dry run does not
//! need the lock). Upload sessions left alone for `upload_max_age` (by default a day; see
//! `upload::idle_for`) are removed as well.

use crate::error::Error;
use crate::fsutil::{list_dir, RootLock};
use crate::manifest::Manifest;
use crate::names::Digest;
use crate::storage::Store;
use crate::upload::idle_for;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Upload sessions left alone this long are abandoned, unless told otherwise.
pub const DEFAULT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What gc removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub manifests_removed: usize,
    pub uploads_removed: usize,
}

/// What one manifest revision points to, as far as gc cares.
#[derive(Debug, Default)]
struct Node {
    children: Vec<Digest>,
    blobs: Vec<Digest>,
    subject: Option<Digest>,
}

#[derive(Debug, Default)]
struct Plan {
    manifests: Vec<(String, Digest, Option<Digest>)>,
    blobs: Vec<(Digest, u64)>,
    uploads: Vec<String>,
}

/// Runs gc on the store at `root`; upload sessions left alone for `upload_max_age` or longer
/// go too.
pub fn gc(
    root: &Path,
    delete_untagged: bool,
    dry_run: bool,
    upload_max_age: Duration,
) -> Result<GcReport, Error> {
    if !root.join("repositories").is_dir() || !root.join("blobs").is_dir() {
        return Err(Error::io(
            root,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a berth registry storage root",
            ),
        ));
    }
    let _lock = if dry_run {
        None
    } else {
        Some(
            RootLock::try_acquire(root)
                .map_err(|e| Error::io(root, e))?
                .ok_or_else(|| Error::Locked(root.to_path_buf()))?,
        )
    };
    let store = Store::open(root).map_err(|e| Error::io(root, e))?;
    let plan = plan(&store, delete_untagged, SystemTime::now(), upload_max_age)
        .map_err(|e| Error::io(root, e))?;
    let report = GcReport {
        blobs_removed: plan.blobs.len(),
        bytes_freed: plan.blobs.iter().map(|b| b.1).sum(),
        manifests_removed: plan.manifests.len(),
        uploads_removed: plan.uploads.len(),
    };
    if !dry_run {
        apply(&store, &plan).map_err(|e| Error::io(root, e))?;
    }
    Ok(report)
}

fn node(store: &Store, repo: &str, d: &Digest) -> std::io::Result<Node> {
    let Some(stored) = store.read_manifest(repo, d)? else {
        return Ok(Node::default());
    };
    // Unparsable content (impossible through the API) is kept as a leaf.
    let Ok(m) = Manifest::parse(&stored.bytes, Some(&stored.media_type)) else {
        return Ok(Node::default());
    };
    let ok = |ds: &[crate::manifest::Descriptor]| -> Vec<Digest> {
        ds.iter().filter_map(|x| x.digest.clone().ok()).collect()
    };
    let mut blobs = ok(&m.layers);
    blobs.extend(m.config.iter().filter_map(|c| c.digest.clone().ok()));
    Ok(Node {
        children: ok(&m.manifests),
        blobs,
        subject: m.subject,
    })
}

/// Adds `start` and every revision reachable from it through index children to `keep`.
fn reach(graph: &HashMap<Digest, Node>, start: &Digest, keep: &mut HashSet<Digest>) {
    let mut stack = vec![start.clone()];
    while let Some(d) = stack.pop() {
        if !graph.contains_key(&d) || !keep.insert(d.clone()) {
            continue;
        }
        if let Some(n) = graph.get(&d) {
            stack.extend(n.children.iter().cloned());
        }
    }
}

/// The manifests to keep in one repository.
fn kept(
    graph: &HashMap<Digest, Node>,
    tagged: &[Digest],
    delete_untagged: bool,
) -> HashSet<Digest> {
    if !delete_untagged {
        return graph.keys().cloned().collect();
    }
    let mut keep = HashSet::new();
    for t in tagged {
        reach(graph, t, &mut keep);
    }
    // Referrers follow their subject, to a fixpoint (a signature of a signature...).
    loop {
        let more: Vec<Digest> = graph
            .iter()
            .filter(|(d, n)| {
                !keep.contains(*d) && n.subject.as_ref().is_some_and(|s| keep.contains(s))
            })
            .map(|(d, _)| d.clone())
            .collect();
        if more.is_empty() {
            return keep;
        }
        for d in more {
            reach(graph, &d, &mut keep);
        }
    }
}

fn plan(
    store: &Store,
    delete_untagged: bool,
    now: SystemTime,
    upload_max_age: Duration,
) -> std::io::Result<Plan> {
    let mut plan = Plan::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    for repo in store.repositories()? {
        let mut graph = HashMap::new();
        for d in store.manifests(&repo)? {
            let n = node(store, &repo, &d)?;
            graph.insert(d, n);
        }
        let tagged: Vec<Digest> = store
            .tags(&repo)?
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.1)
            .collect();
        let keep = kept(&graph, &tagged, delete_untagged);
        let mut gone: Vec<_> = graph
            .iter()
            .filter(|(d, _)| !keep.contains(*d))
            .map(|(d, n)| (repo.clone(), d.clone(), n.subject.clone()))
            .collect();
        gone.sort();
        plan.manifests.extend(gone);
        for d in &keep {
            marked.insert(d.clone());
            if let Some(n) = graph.get(d) {
                marked.extend(n.blobs.iter().cloned());
                marked.extend(n.children.iter().cloned());
            }
        }
    }
    plan.blobs = store
        .all_blobs()?
        .into_iter()
        .filter(|(d, _)| !marked.contains(d))
        .collect();
    for id in list_dir(&store.uploads_dir())? {
        let idle = idle_for(&store.uploads_dir().join(&id), now);
        if idle.is_some_and(|a| a >= upload_max_age) {
            plan.uploads.push(id);
        }
    }
    Ok(plan)
}

fn apply(store: &Store, plan: &Plan) -> std::io::Result<()> {
    for (repo, d, subject) in &plan.manifests {
        store.unlink_manifest(repo, d, subject.as_ref())?;
    }
    let removed: HashSet<&Digest> = plan.blobs.iter().map(|b| &b.0).collect();
    for (d, _) in &plan.blobs {
        store.remove_blob(d)?;
    }
    // Links to removed content would only dangle.
    for repo in store.repositories()? {
        for d in store.linked_blobs(&repo)? {
            if removed.contains(&d) {
                store.unlink_blob(&repo, &d)?;
            }
        }
    }
    for id in &plan.uploads {
        std::fs::remove_dir_all(store.uploads_dir().join(id))?;
    }
    store.clear_tmp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
    use serde_json::json;

    struct Fixture {
        store: Store,
    }

    impl Fixture {
        fn new(tag: &str) -> Fixture {
            let p = std::env::temp_dir().join(format!(
                "berth-registry-gc-{tag}-{}-{}",
                std::process::id(),
                crate::fsutil::random_id().unwrap()
            ));
            Fixture {
                store: Store::open(&p).unwrap(),
            }
        }

        fn blob(&self, repo: &str, data: &[u8]) -> Digest {
            let d = self.store.put_blob_bytes(data).unwrap();
            self.store.link_blob(repo, &d).unwrap();
            d
        }

        fn desc(&self, d: &Digest) -> serde_json::Value {
            json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": self.store.blob_size(d).unwrap().unwrap()})
        }

        fn image(
            &self,
            repo: &str,
            name: &str,
            subject: Option<&Digest>,
            tags: &[&str],
        ) -> (Digest, Digest, Digest) {
            let config = self.blob(repo, format!("config of {name}").as_bytes());
            let layer = self.blob(repo, format!("layer of {name}").as_bytes());
            let mut m = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 1},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 1}],
            });
            if let Some(s) = subject {
                m["subject"] = self.desc(s);
            }
            let d = self.manifest(repo, &m, OCI_MANIFEST, subject, tags);
            (d, config, layer)
        }

        fn manifest(
            &self,
            repo: &str,
            m: &serde_json::Value,
            mt: &str,
            subject: Option<&Digest>,
            tags: &[&str],
        ) -> Digest {
            let d = self.store.put_blob_bytes(m.to_string().as_bytes()).unwrap();
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            self.store
                .link_manifest(repo, &d, mt, subject, &tags)
                .unwrap();
            d
        }

        fn has(&self, d: &Digest) -> bool {
            self.store.blob_size(d).unwrap().is_some()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.store.root());
        }
    }

    #[test]
    fn keeps_everything_referenced_and_removes_orphans() {
        let f = Fixture::new("orphans");
        let (tagged, cfg, layer) = f.image("app", "one", None, &["v1"]);
        let (untagged, ucfg, _) = f.image("app", "two", None, &[]);
        // The same layer content in another repository, referenced there only by a blob link.
        let orphan = f.blob("other/repo", b"orphan blob");
        let shared = f.blob("other/repo", b"layer of one");
        assert_eq!(shared, layer);

        let dry = gc(f.store.root(), false, true, DEFAULT_UPLOAD_MAX_AGE).unwrap();
        assert_eq!(
            dry,
            GcReport {
                blobs_removed: 1,
                bytes_freed: 11,
                manifests_removed: 0,
                uploads_removed: 0
            }
        );
        assert!(f.has(&orphan), "a dry run removes nothing");

        let r = gc(f.store.root(), false, false, DEFAULT_UPLOAD_MAX_AGE).unwrap();
        assert_eq!(r, dry);
        assert!(!f.has(&orphan));
        assert_eq!(
            f.store.linked_blob_size("other/repo", &orphan).unwrap(),
            None
        );
        assert!(f
            .store
            .linked_blobs("other/repo")
            .unwrap()
            .iter()
            .all(|d| d != &orphan));
        for d in [&tagged, &cfg, &layer, &untagged, &ucfg] {
            assert!(f.has(d), "{d} is referenced");
        }
        // Idempotent.
        assert_eq!(
            gc(f.store.root(), false, false, DEFAULT_UPLOAD_MAX_AGE).unwrap(),
            GcReport::default()
        );
    }

    #[test]
    fn delete_untagged_follows_tags_indexes_and_subjects() {
        let f = Fixture::new("untagged");
        let (img, cfg, layer) = f.image("app", "img", None, &["latest"]);
        let (child, ccfg, _) = f.image("app", "child", None, &[]);
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [f.desc(&child)]});
        let idx = f.manifest("app", &index, OCI_INDEX, None, &["multi"]);
        let (sig, scfg, _) = f.image("app", "signature", Some(&img), &[]);
        let (sigsig, _, _) = f.image("app", "sig of sig", Some(&sig), &[]);
        let (lonely, lcfg, llayer) = f.image("app", "lonely", None, &[]);
        let (dangling, _, _) = f.image("app", "refers to lonely", Some(&lonely), &[]);

        let r = gc(f.store.root(), true, false, DEFAULT_UPLOAD_MAX_AGE).unwrap();
        assert_eq!(r.manifests_removed, 2);
        // lonely + its config + its layer, and the same for the referrer of lonely.
        assert_eq!(r.blobs_removed, 6);
        for d in [
            &img, &cfg, &layer, &child, &ccfg, &idx, &sig, &scfg, &sigsig,
        ] {
            assert!(f.has(d), "{d} is reachable");
        }
        for d in [&lonely, &lcfg, &llayer, &dangling] {
            assert!(!f.has(d), "{d} is not reachable");
        }
        assert!(f
            .store
            .manifest_media_type("app", &lonely)
            .unwrap()
            .is_none());
        assert!(f.store.referrers("app", &lonely).unwrap().is_empty());
        assert_eq!(f.store.referrers("app", &img).unwrap(), vec![sig.clone()]);

        // Untagging the index lets its child go too.
        f.store.delete_tag("app", "multi").unwrap();
        let r = gc(f.store.root(), true, false, DEFAULT_UPLOAD_MAX_AGE).unwrap();
        assert_eq!(r.manifests_removed, 2);
        assert!(!f.has(&idx) && !f.has(&child) && !f.has(&ccfg));
        assert!(f.has(&img));
    }

    #[test]
    fn refuses_while_locked_and_purges_old_uploads() {
        let f = Fixture::new("locked");
        let lock = RootLock::try_acquire(f.store.root()).unwrap();
        assert!(matches!(
            gc(f.store.root(), false, false, DEFAULT_UPLOAD_MAX_AGE),
            Err(Error::Locked(_))
        ));
        assert!(
            gc(f.store.root(), false, true, DEFAULT_UPLOAD_MAX_AGE).is_ok(),
            "a dry run needs no lock"
        );
        drop(lock);

        let up = f.store.uploads_dir();
        std::fs::create_dir_all(up.join("old")).unwrap();
        std::fs::write(up.join("old/data"), b"x").unwrap();
        std::fs::create_dir_all(up.join("fresh")).unwrap();
        std::fs::write(up.join("fresh/data"), b"x").unwrap();
        let later = SystemTime::now() + DEFAULT_UPLOAD_MAX_AGE + Duration::from_secs(60);
        let p = plan(&f.store, false, later, DEFAULT_UPLOAD_MAX_AGE).unwrap();
        assert_eq!(p.uploads.len(), 2);
        let p = plan(&f.store, false, SystemTime::now(), DEFAULT_UPLOAD_MAX_AGE).unwrap();
        assert!(p.uploads.is_empty());
        let p = plan(&f.store, false, SystemTime::now(), Duration::ZERO).unwrap();
        assert_eq!(p.uploads.len(), 2);
        assert!(gc(
            &f.store.root().join("missing"),
            false,
            true,
            DEFAULT_UPLOAD_MAX_AGE
        )
        .is_err());
    }
}
