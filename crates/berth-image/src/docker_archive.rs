//! The docker-archive format (`docker save`): reading `manifest.json` (legacy
//! `<id>/layer.tar` and Docker 25+ `blobs/sha256` layouts) and writing it.

use crate::error::{Error, Result};
use crate::ingest::{LayerBlob, ManifestBlob, Prepared, Txn};
use crate::load::Staged;
use crate::manifest::{is_index_type, manifest_kind, ArchiveItem, Index, Manifest};
use crate::reference::Reference;
use crate::store::Store;
use std::collections::BTreeMap;

/// Reads `manifest.json` and prepares its images. Returns them and the output lines.
pub(crate) fn prepare(
    store: &Store,
    txn: &mut Txn<'_>,
    staged: &Staged,
) -> Result<(Vec<Prepared>, Vec<String>)> {
    let raw = staged
        .small
        .get("manifest.json")
        .ok_or_else(|| Error::InvalidInput("load: manifest.json is missing".to_string()))?;
    let items: Vec<ArchiveItem> = serde_json::from_slice(raw)
        .map_err(|e| Error::InvalidInput(format!("load: manifest.json is invalid: {e}")))?;
    if items.is_empty() {
        return Err(Error::InvalidInput(
            "load: manifest.json lists no images".to_string(),
        ));
    }
    let known_manifests = index_manifests(store, staged);
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut lines = Vec::new();
    for item in &items {
        let (config_digest, _) = staged.resolve_or_err(&item.config, "config")?.clone();
        let mut layers = Vec::with_capacity(item.layers.len());
        for l in &item.layers {
            let (digest, _) = staged.resolve_or_err(l, "layer")?.clone();
            layers.push(digest);
        }
        let mut refs = Vec::new();
        for t in item.repo_tags.iter().flatten() {
            let r = Reference::parse(t)
                .map_err(|e| Error::InvalidInput(format!("load: manifest.json: tag {t:?}: {e}")))?;
            if r.digest().is_some() {
                return Err(Error::InvalidInput(format!(
                    "load: manifest.json: {t:?} is not a tag reference"
                )));
            }
            refs.push(r.with_default_tag());
        }
        let manifest = known_manifests
            .get(&(config_digest.clone(), layers.clone()))
            .cloned();
        let blobs: Vec<LayerBlob> = layers
            .iter()
            .map(|d| LayerBlob {
                digest: d.clone(),
                media_type: manifest.as_ref().and_then(|(_, m)| {
                    m.layers
                        .iter()
                        .find(|x| &x.digest == d)
                        .map(|x| x.media_type.clone())
                }),
            })
            .collect();
        let what = format!("load: image {config_digest}");
        if let Some(existing) = prepared.iter_mut().find(|p| p.record.id == config_digest) {
            existing.refs.extend(refs.iter().cloned());
        } else {
            prepared.push(store.prepare_image(
                txn,
                &config_digest,
                &blobs,
                manifest.map(|(m, _)| m),
                None,
                refs.clone(),
                &what,
            )?);
        }
        if refs.is_empty() {
            lines.push(format!("Loaded image ID: {config_digest}"));
        } else {
            lines.extend(
                refs.iter()
                    .map(|r| format!("Loaded image: {}", r.familiar())),
            );
        }
    }
    Ok((prepared, lines))
}

/// Manifests listed in an accompanying `index.json` (Docker 25+ archives), by
/// `(config digest, layer digests)`, so that loading keeps the original manifest digest.
fn index_manifests(
    store: &Store,
    staged: &Staged,
) -> BTreeMap<(String, Vec<String>), (ManifestBlob, Manifest)> {
    let mut out = BTreeMap::new();
    let Some(raw) = staged.small.get("index.json") else {
        return out;
    };
    let Ok(index) = serde_json::from_slice::<Index>(raw) else {
        return out;
    };
    for desc in index.manifests {
        if is_index_type(&desc.media_type) {
            continue;
        }
        let Ok(bytes) = store.content.read(&desc.digest) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        let media_type = manifest_kind(&bytes).unwrap_or_else(|| desc.media_type.clone());
        let key = (
            m.config.digest.clone(),
            m.layers.iter().map(|l| l.digest.clone()).collect(),
        );
        out.insert(
            key,
            (
                ManifestBlob {
                    digest: desc.digest.clone(),
                    media_type,
                    size: bytes.len() as u64,
                },
                m,
            ),
        );
    }
    out
}

/// `manifest.json` of a saved archive.
pub(crate) fn manifest_json(items: &[ArchiveItem]) -> Vec<u8> {
    serde_json::to_vec(items).unwrap_or_default()
}
