//! The build cache on disk: one JSON record per step in `<data-root>/builder/cache/<key>.json`,
//! its `system df` view and `builder prune`. It stores and removes records (and the images only
//! they hold); it must not interpret a step.

use crate::error::{Error, Result};
use crate::state::Daemon;
use berth_build::cache::Record;
use std::path::{Path, PathBuf};

/// The cache directory of a data root.
pub fn dir(data_root: &Path) -> PathBuf {
    data_root.join("builder").join("cache")
}

/// The record of `key`, when present and well-formed.
pub fn lookup(data_root: &Path, key: &str) -> Option<Record> {
    let b = std::fs::read(dir(data_root).join(format!("{key}.json"))).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Every record (for miss explanations, df and prune).
pub fn all(data_root: &Path) -> Vec<(String, Record)> {
    let Ok(rd) = std::fs::read_dir(dir(data_root)) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let key = name.strip_suffix(".json")?.to_string();
            let rec = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((key, rec))
        })
        .collect()
}

/// Stores `rec` under its key (write and rename, so readers never see half a record).
pub fn save(data_root: &Path, rec: &Record) -> Result<()> {
    let d = dir(data_root);
    std::fs::create_dir_all(&d)?;
    let key = rec.inputs.key();
    let tmp = d.join(format!(".{key}.tmp"));
    let body = serde_json::to_vec(rec).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, d.join(format!("{key}.json")))?;
    Ok(())
}

/// Bytes the image of a record adds over its parent (its own layer).
fn own_size(d: &Daemon, rec: &Record) -> u64 {
    let size = |id: &str| d.images.summary(id).map(|i| i.size).unwrap_or(0);
    size(&rec.image).saturating_sub(size(&rec.inputs.parent))
}

/// `GET /system/df`'s `BuildCache` entries.
pub fn df(d: &Daemon) -> Vec<serde_json::Value> {
    all(&d.cfg.data_root)
        .into_iter()
        .filter(|(_, r)| d.images.resolve_id(&r.image).is_ok())
        .map(|(key, r)| {
            let created = berth_api::timefmt::rfc3339_nano(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.created),
            );
            serde_json::json!({
                "ID": &key[..12.min(key.len())],
                "Parent": r.inputs.parent,
                "Type": "regular",
                "Description": r.inputs.instruction,
                "InUse": false,
                "Shared": false,
                "Size": own_size(d, &r),
                "CreatedAt": created,
                "LastUsedAt": created,
                "UsageCount": 1,
            })
        })
        .collect()
}

/// Every image a tagged image is built on (itself included).
fn tagged_ancestry(d: &Daemon) -> std::collections::HashSet<String> {
    let images = d.images.list().unwrap_or_default();
    let parents: std::collections::HashMap<&str, Option<&str>> = images
        .iter()
        .map(|i| (i.id.as_str(), i.parent.as_deref()))
        .collect();
    let mut used = std::collections::HashSet::new();
    for img in images.iter().filter(|i| !i.repo_tags.is_empty()) {
        let mut cur = Some(img.id.as_str());
        while let Some(id) = cur {
            if !used.insert(id.to_string()) {
                break;
            }
            cur = parents.get(id).copied().flatten();
        }
    }
    used
}

/// `builder prune`: removes the records (every one with `everything`, else those no tagged
/// image is built on) and the untagged images only the cache held; returns the removed record
/// ids and the bytes freed.
pub fn prune(d: &Daemon, everything: bool) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    let mut freed = 0;
    let mut recs = all(&d.cfg.data_root);
    if !everything {
        let used = tagged_ancestry(d);
        recs.retain(|(_, r)| !used.contains(&r.image));
    }
    // Children first, so that their parents are untagged leaves when their turn comes.
    recs.sort_by_key(|r| std::cmp::Reverse(r.1.created));
    for (key, r) in recs {
        let size = own_size(d, &r);
        let in_use = |id: &str| d.image_in_use(id).is_some();
        if let Ok(img) = d.images.summary(&r.image) {
            if img.repo_tags.is_empty()
                && d.image_in_use(&img.id).is_none()
                && d.images.delete_with(&img.id, false, false, &in_use).is_ok()
            {
                freed += size;
            }
        }
        let _ = std::fs::remove_file(dir(&d.cfg.data_root).join(format!("{key}.json")));
        ids.push(key);
    }
    (ids, freed)
}
