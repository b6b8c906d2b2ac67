//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`): reading it on load
//! (nested indexes resolved for this platform; names from `io.containerd.image.name` or a
//! full `org.opencontainers.image.ref.name`) and the index that `save` writes.

use crate::error::{Error, Result};
use crate::ingest::{LayerBlob, ManifestBlob, Prepared, Txn};
use crate::load::Staged;
use crate::manifest::{
    go_arch, is_index_type, is_manifest_type, manifest_kind, Descriptor, Index, Manifest,
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MT_OCI_INDEX,
};
use crate::reference::Reference;
use crate::store::Store;

const MAX_INDEX_DEPTH: usize = 8;

/// Prepares the images of an OCI layout. Returns them and the output lines.
pub(crate) fn prepare(
    store: &Store,
    txn: &mut Txn<'_>,
    staged: &Staged,
) -> Result<(Vec<Prepared>, Vec<String>)> {
    let layout = staged.small.get("oci-layout").ok_or_else(|| {
        Error::InvalidInput("load: index.json found but the oci-layout file is missing".to_string())
    })?;
    let layout: serde_json::Value = serde_json::from_slice(layout)
        .map_err(|e| Error::InvalidInput(format!("load: oci-layout is invalid: {e}")))?;
    if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        return Err(Error::InvalidInput(format!(
            "load: unsupported OCI layout version in oci-layout: {layout}"
        )));
    }
    let raw = staged
        .small
        .get("index.json")
        .ok_or_else(|| Error::InvalidInput("load: index.json is missing".to_string()))?;
    let index: Index = serde_json::from_slice(raw)
        .map_err(|e| Error::InvalidInput(format!("load: index.json is invalid: {e}")))?;
    if index.manifests.is_empty() {
        return Err(Error::InvalidInput(
            "load: index.json lists no manifests".to_string(),
        ));
    }
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut lines = Vec::new();
    for desc in &index.manifests {
        let refs = names_of(desc)?;
        let (mdesc, bytes) = pick_manifest(store, desc, 0)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidInput(format!("load: manifest {} is invalid: {e}", mdesc.digest))
        })?;
        let config_digest = manifest.config.digest.clone();
        check_blob(store, &manifest.config)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for l in &manifest.layers {
            check_blob(store, l)?;
            layers.push(LayerBlob {
                digest: l.digest.clone(),
                media_type: Some(l.media_type.clone()),
            });
        }
        let id = config_digest.clone();
        if let Some(existing) = prepared.iter_mut().find(|p| p.record.id == id) {
            existing.refs.extend(refs.iter().cloned());
        } else {
            let media_type = manifest_kind(&bytes).unwrap_or_else(|| mdesc.media_type.clone());
            prepared.push(store.prepare_image(
                txn,
                &config_digest,
                &layers,
                Some(ManifestBlob {
                    digest: mdesc.digest.clone(),
                    media_type,
                    size: bytes.len() as u64,
                }),
                None,
                refs.clone(),
                &format!("load: manifest {}", mdesc.digest),
            )?);
        }
        if refs.is_empty() {
            lines.push(format!("Loaded image ID: {id}"));
        } else {
            lines.extend(
                refs.iter()
                    .map(|r| format!("Loaded image: {}", r.familiar())),
            );
        }
    }
    Ok((prepared, lines))
}

/// The image name(s) a top-level index entry carries.
fn names_of(desc: &Descriptor) -> Result<Vec<Reference>> {
    let Some(ann) = &desc.annotations else {
        return Ok(Vec::new());
    };
    if let Some(name) = ann.get(ANNOTATION_IMAGE_NAME) {
        let r = Reference::parse(name).map_err(|e| {
            Error::InvalidInput(format!("load: index.json: image name {name:?}: {e}"))
        })?;
        if r.digest().is_some() {
            return Ok(Vec::new());
        }
        return Ok(vec![r.with_default_tag()]);
    }
    if let Some(name) = ann.get(ANNOTATION_REF_NAME) {
        // A bare tag ("latest") names no repository; only full references count.
        if name.contains(':') || name.contains('/') {
            if let Ok(r) = Reference::parse(name) {
                if r.digest().is_none() {
                    return Ok(vec![r.with_default_tag()]);
                }
            }
        }
    }
    Ok(Vec::new())
}

fn check_blob(store: &Store, desc: &Descriptor) -> Result<()> {
    if crate::digest::sha256_hex(&desc.digest).is_none() {
        return Err(Error::InvalidInput(format!(
            "load: unsupported or invalid digest {:?}",
            desc.digest
        )));
    }
    match store.content.size(&desc.digest) {
        Ok(sz) if sz == desc.size => Ok(()),
        Ok(sz) => Err(Error::InvalidInput(format!(
            "load: blob {} has {sz} bytes but its descriptor says {}",
            desc.digest, desc.size
        ))),
        Err(Error::NotFound(_)) => Err(Error::InvalidInput(format!(
            "load: blob {} ({}) is missing from the archive",
            desc.digest, desc.media_type
        ))),
        Err(e) => Err(e),
    }
}

/// Follows nested indexes to the manifest for this platform.
fn pick_manifest(store: &Store, desc: &Descriptor, depth: usize) -> Result<(Descriptor, Vec<u8>)> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::InvalidInput(
            "load: image indexes nest too deeply".to_string(),
        ));
    }
    check_blob(store, desc)?;
    let bytes = store.content.read(&desc.digest)?;
    let kind = manifest_kind(&bytes).unwrap_or_else(|| desc.media_type.clone());
    if is_manifest_type(&kind)
        || (!is_index_type(&kind)
            && !desc.media_type.is_empty()
            && is_manifest_type(&desc.media_type))
    {
        return Ok((desc.clone(), bytes));
    }
    if !is_index_type(&kind) {
        return Err(Error::InvalidInput(format!(
            "load: {} has unsupported media type {kind:?}",
            desc.digest
        )));
    }
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidInput(format!("load: index {} is invalid: {e}", desc.digest)))?;
    let arch = go_arch();
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !d.media_type.contains("attestation"))
        .filter(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .collect();
    let chosen = candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .or_else(|| {
            if candidates.len() == 1 {
                candidates.first()
            } else {
                None
            }
        })
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "load: index {} has no manifest for linux/{arch}",
                desc.digest
            ))
        })?;
    pick_manifest(store, chosen, depth + 1)
}

/// The `index.json` of a saved archive.
pub(crate) fn index_json(manifests: Vec<Descriptor>) -> Vec<u8> {
    let index = Index {
        schema_version: 2,
        media_type: Some(MT_OCI_INDEX.to_string()),
        manifests,
    };
    serde_json::to_vec(&index).unwrap_or_default()
}

/// The `oci-layout` file.
pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion": "1.0.0"}"#;
