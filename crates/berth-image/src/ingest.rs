//! Adding images: a transaction that undoes every blob, snapshot and record it created
//! unless committed, layer verification/unpacking against the config's diff ids, and the
//! final publication of records and references.

use crate::content::BlobInfo;
use crate::error::{Error, Result};
use crate::manifest::{oci_manifest, Descriptor, MT_OCI_MANIFEST};
use crate::record::{ConfigSummary, ImageRecord, LayerRecord};
use crate::reference::Reference;
use crate::snapshot::chain_ids;
use crate::store::{image_of, parse_config, Image, Loaded, Store};
use crate::unpack::{layer_diff_id, unpack_layer};
use oci_spec::image::ImageConfiguration;
use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::sync::Arc;

/// Undo log of one store operation; rolled back on drop unless committed. Callers hold the
/// store's write lock for the transaction's whole life.
pub(crate) struct Txn<'s> {
    store: &'s Store,
    blobs: Vec<String>,
    snapshots: Vec<String>,
    records: Vec<String>,
    /// Layers verified by this operation, by chain id.
    verified: HashMap<String, LayerRecord>,
    done: bool,
}

impl<'s> Txn<'s> {
    pub(crate) fn new(store: &'s Store) -> Txn<'s> {
        Txn {
            store,
            blobs: Vec::new(),
            snapshots: Vec::new(),
            records: Vec::new(),
            verified: HashMap::new(),
            done: false,
        }
    }

    /// Records a blob this operation stored (only new ones are undone).
    pub(crate) fn note_blob(&mut self, info: &BlobInfo) {
        if info.created {
            self.blobs.push(info.digest.clone());
        }
    }

    /// Removes blobs created by this transaction that are not in `keep` (staged files of an
    /// archive that no image uses).
    pub(crate) fn discard_blobs_except(&mut self, keep: &HashSet<String>) -> Result<()> {
        let mut kept = Vec::new();
        for b in std::mem::take(&mut self.blobs) {
            if keep.contains(&b) {
                kept.push(b);
            } else {
                self.store.content.remove(&b)?;
            }
        }
        self.blobs = kept;
        Ok(())
    }

    /// Records a snapshot this operation created.
    pub(crate) fn note_snapshot(&mut self, chain_id: &str) {
        self.snapshots.push(chain_id.to_string());
    }

    pub(crate) fn commit(mut self) {
        self.done = true;
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for id in self.records.drain(..).rev() {
            if let Err(e) = self.store.records.remove(&id) {
                tracing::warn!(image = %id, error = %e, "rollback: cannot remove image record");
            }
        }
        for c in self.snapshots.drain(..).rev() {
            if let Err(e) = self.store.snapshots.remove(&c) {
                tracing::warn!(snapshot = %c, error = %e, "rollback: cannot remove snapshot");
            }
        }
        for b in self.blobs.drain(..).rev() {
            if let Err(e) = self.store.content.remove(&b) {
                tracing::warn!(blob = %b, error = %e, "rollback: cannot remove blob");
            }
        }
    }
}

/// A layer blob already in the content store.
#[derive(Debug, Clone)]
pub(crate) struct LayerBlob {
    pub digest: String,
    /// Media type from a manifest; detected from the content when `None`.
    pub media_type: Option<String>,
}

/// A manifest blob already in the content store.
#[derive(Debug, Clone)]
pub(crate) struct ManifestBlob {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// An image checked and unpacked, ready to be published.
pub(crate) struct Prepared {
    pub record: ImageRecord,
    pub loaded: Arc<Loaded>,
    pub refs: Vec<Reference>,
    /// The parsed config, for the [`Image`] that publishing returns.
    pub config: ImageConfiguration,
    pub config_json: serde_json::Value,
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

impl Store {
    /// A layer record for an existing blob: unpacks it into the snapshot of `chain_id`
    /// (or, when that snapshot exists, only hashes it), checking its diff id.
    pub(crate) fn ensure_layer(
        &self,
        txn: &mut Txn<'_>,
        blob: &LayerBlob,
        diff_id: &str,
        chain_id: &str,
        what: &str,
    ) -> Result<LayerRecord> {
        let size = self.content.size(&blob.digest)?;
        if let Some(v) = txn.verified.get(chain_id) {
            if v.digest == blob.digest && v.diff_id == diff_id && self.snapshots.exists(chain_id) {
                return Ok(v.clone());
            }
        }
        let rec = self.ensure_layer_uncached(txn, blob, size, diff_id, chain_id, what)?;
        txn.verified.insert(chain_id.to_string(), rec.clone());
        Ok(rec)
    }

    fn ensure_layer_uncached(
        &self,
        txn: &mut Txn<'_>,
        blob: &LayerBlob,
        size: u64,
        diff_id: &str,
        chain_id: &str,
        what: &str,
    ) -> Result<LayerRecord> {
        let known = {
            let st = self.read_state();
            let found = st
                .images
                .values()
                .flat_map(|l| l.record.layers.iter())
                .find(|l| l.chain_id == chain_id)
                .cloned();
            found
        }
        .or_else(|| txn.verified.get(chain_id).cloned());
        if let Some(k) = &known {
            if self.snapshots.exists(chain_id) {
                if k.digest == blob.digest && k.diff_id == diff_id {
                    // Verified when it was first stored.
                    return Ok(k.clone());
                }
                let f = self.content.open_blob(&blob.digest)?;
                let (actual, _) = layer_diff_id(&mut BufReader::new(f), what)?;
                if actual != diff_id {
                    return Err(mismatch(what, &blob.digest, &actual, diff_id));
                }
                let media_type = match &blob.media_type {
                    Some(m) => m.clone(),
                    None => detect_media_type(self, &blob.digest)?,
                };
                return Ok(LayerRecord {
                    digest: blob.digest.clone(),
                    media_type,
                    size,
                    diff_id: diff_id.to_string(),
                    chain_id: chain_id.to_string(),
                    unpacked_size: k.unpacked_size,
                });
            }
        }
        let tmp = self.snapshots.prepare()?;
        let f = self.content.open_blob(&blob.digest)?;
        let stats = unpack_layer(&mut BufReader::new(f), &tmp.fs_dir(), what)?;
        if stats.diff_id != diff_id {
            return Err(mismatch(what, &blob.digest, &stats.diff_id, diff_id));
        }
        if self.snapshots.commit(tmp, chain_id)? {
            txn.note_snapshot(chain_id);
        }
        Ok(LayerRecord {
            digest: blob.digest.clone(),
            media_type: blob
                .media_type
                .clone()
                .unwrap_or_else(|| stats.compression.oci_layer_media_type().to_string()),
            size,
            diff_id: diff_id.to_string(),
            chain_id: chain_id.to_string(),
            unpacked_size: stats.content_size,
        })
    }

    /// Checks a config and its layer blobs (all in the content store), unpacks the layers
    /// and writes a manifest when none is given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare_image(
        &self,
        txn: &mut Txn<'_>,
        config_digest: &str,
        layers: &[LayerBlob],
        manifest: Option<ManifestBlob>,
        parent: Option<String>,
        refs: Vec<Reference>,
        what: &str,
    ) -> Result<Prepared> {
        let config_bytes = self.content.read(config_digest)?;
        let (config, _) = parse_config(&config_bytes, config_digest)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != layers.len() {
            return Err(Error::InvalidInput(format!(
                "{what}: the image config {config_digest} lists {} layers but {} layer blobs were given",
                diff_ids.len(),
                layers.len()
            )));
        }
        if let Some(bad) = diff_ids
            .iter()
            .find(|d| crate::digest::sha256_hex(d).is_none())
        {
            return Err(Error::InvalidInput(format!(
                "{what}: the image config {config_digest} has an invalid diff id {bad:?}"
            )));
        }
        let chains = chain_ids(&diff_ids);
        let mut layer_records = Vec::with_capacity(layers.len());
        for (i, blob) in layers.iter().enumerate() {
            let lwhat = format!("{what}: layer {}", blob.digest);
            layer_records.push(self.ensure_layer(txn, blob, &diff_ids[i], &chains[i], &lwhat)?);
        }
        self.prepare_with_layers(
            txn,
            config_digest,
            &config_bytes,
            layer_records.into(),
            manifest,
            parent,
            refs,
        )
    }

    /// The rest of [`Store::prepare_image`] once the layers are in place.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare_with_layers(
        &self,
        txn: &mut Txn<'_>,
        config_digest: &str,
        config_bytes: &[u8],
        layer_records: Arc<[LayerRecord]>,
        manifest: Option<ManifestBlob>,
        parent: Option<String>,
        refs: Vec<Reference>,
    ) -> Result<Prepared> {
        let (config, config_json) = parse_config(config_bytes, config_digest)?;
        let manifest = match manifest {
            Some(m) => m,
            None => {
                let descs: Vec<Descriptor> = layer_records
                    .iter()
                    .map(|l| Descriptor::new(&l.media_type, &l.digest, l.size))
                    .collect();
                let bytes = oci_manifest(config_digest, config_bytes.len() as u64, &descs);
                let info = self.content.write_bytes(&bytes, None)?;
                txn.note_blob(&info);
                ManifestBlob {
                    digest: info.digest,
                    media_type: MT_OCI_MANIFEST.to_string(),
                    size: info.size,
                }
            }
        };
        let summary = ConfigSummary::from_value(&config_json);
        let record = ImageRecord {
            id: config_digest.to_string(),
            config_size: config_bytes.len() as u64,
            manifest_digest: manifest.digest,
            manifest_media_type: manifest.media_type,
            manifest_size: manifest.size,
            layers: layer_records,
            parent,
            added: now_rfc3339(),
            summary: Some(summary),
        };
        let loaded = Arc::new(Loaded {
            record: record.clone(),
        });
        Ok(Prepared {
            record,
            loaded,
            refs,
            config,
            config_json,
        })
    }

    /// Writes the records of new images, points the references at them and commits.
    pub(crate) fn publish(&self, mut txn: Txn<'_>, prepared: Vec<Prepared>) -> Result<Vec<Image>> {
        let mut fresh = Vec::new();
        for p in &prepared {
            let exists = self.read_state().images.contains_key(&p.record.id);
            if !exists {
                self.records.write(&p.record)?;
                txn.records.push(p.record.id.clone());
                fresh.push(p.loaded.clone());
            }
        }
        // Blobs this operation stored that no image ends up using (staged archive files,
        // a manifest generated for an image that was already here) go now.
        let keep: HashSet<String> = {
            let st = self.read_state();
            st.images
                .values()
                .flat_map(|l| l.record.blobs().map(str::to_string).collect::<Vec<_>>())
                .chain(
                    fresh
                        .iter()
                        .flat_map(|l| l.record.blobs().map(str::to_string).collect::<Vec<_>>()),
                )
                .collect()
        };
        txn.discard_blobs_except(&keep)?;
        let mut repos = self.read_state().repos.clone();
        let mut repos_changed = false;
        for p in &prepared {
            for r in &p.refs {
                if repos.get(r) != Some(&p.record.id) {
                    repos.set(r.clone(), &p.record.id);
                    repos_changed = true;
                }
            }
        }
        if repos_changed {
            repos.save()?;
        }
        txn.commit();
        let mut st = self.write_state();
        for l in fresh {
            st.images.insert(l.record.id.clone(), l);
        }
        st.repos = repos;
        let images = prepared
            .into_iter()
            .filter_map(|p| {
                let l = st.images.get(&p.record.id)?;
                let image = image_of(l, st.names_of(&l.record.id), p.config, &p.config_json);
                Some((image, p.config_json))
            })
            .collect::<Vec<_>>();
        drop(st);
        Ok(images
            .into_iter()
            .map(|(image, json)| {
                self.remember_config(&image.id, Arc::new(json));
                image
            })
            .collect())
    }
}

fn mismatch(what: &str, digest: &str, actual: &str, expected: &str) -> Error {
    Error::InvalidInput(format!(
        "{what}: blob {digest} has diff id {actual} but the image config expects {expected}"
    ))
}

fn detect_media_type(store: &Store, digest: &str) -> Result<String> {
    use std::io::Read;
    let mut f = store.content.open_blob(digest)?;
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        let k = f
            .read(&mut head[n..])
            .map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(crate::unpack::Compression::detect(&head[..n])
        .oci_layer_media_type()
        .to_string())
}
