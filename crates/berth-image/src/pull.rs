//! Pulling into the store: each layer streams from the registry into the content store and, in
//! the same pass, through its decompressor into a new snapshot; the image is published once every
//! layer, the config and the manifest are verified.

use crate::content::{BlobInfo, ContentStore};
use crate::digest::{sha256_digest, TeeReader};
use crate::error::{Error, Result};
use crate::ingest::{LayerBlob, ManifestBlob, Txn};
use crate::record::LayerRecord;
use crate::reference::Reference;
use crate::snapshot::{chain_ids, TempSnapshot};
use crate::store::{parse_config, Image, Store};
use crate::unpack::unpack_layer;
use std::io::{self, Read};

/// A layer as a manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// A layer fetched and checked, staged until [`Store::publish_pull`]: its blob is in the
/// content store and its snapshot unpacked in a temp directory. Dropped unpublished, both go.
pub struct FetchedLayer {
    digest: String,
    blob: Option<BlobInfo>,
    tmp: Option<TempSnapshot>,
    record: LayerRecord,
    content: ContentStore,
}

impl FetchedLayer {
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl Drop for FetchedLayer {
    fn drop(&mut self) {
        if let Some(b) = self.blob.take().filter(|b| b.created) {
            let _ = self.content.remove(&b.digest);
        }
    }
}

/// The diff ids of an image config, checked against the manifest's layer count.
pub fn config_diff_ids(config: &[u8], config_digest: &str, layers: usize) -> Result<Vec<String>> {
    let (cfg, _) = parse_config(config, config_digest)?;
    let ids = cfg.rootfs().diff_ids().clone();
    if ids.len() != layers {
        return Err(Error::InvalidInput(format!(
            "image config {config_digest} lists {} layers but the manifest has {layers}",
            ids.len()
        )));
    }
    if let Some(bad) = ids.iter().find(|d| crate::digest::sha256_hex(d).is_none()) {
        return Err(Error::InvalidInput(format!(
            "image config {config_digest} has an invalid diff id {bad:?}"
        )));
    }
    Ok(ids)
}

impl Store {
    /// For each layer of a manifest, whether it must be fetched: its snapshot or its blob is
    /// missing. Also checks that the config matches the manifest.
    pub fn pull_needs(
        &self,
        config: &[u8],
        config_digest: &str,
        layers: &[PullLayer],
    ) -> Result<Vec<bool>> {
        let ids = config_diff_ids(config, config_digest, layers.len())?;
        let chains = chain_ids(&ids);
        Ok(layers
            .iter()
            .zip(&chains)
            .map(|(l, c)| !(self.snapshots.exists(c) && self.content.size(&l.digest).is_ok()))
            .collect())
    }

    /// Fetch one layer from `reader` (the compressed blob as it downloads): it is written to
    /// the content store and unpacked into a new snapshot at the same time; its digest, size
    /// and diff id are checked before anything is kept.
    pub fn fetch_layer(
        &self,
        reader: &mut dyn Read,
        layer: &PullLayer,
        diff_id: &str,
        what: &str,
    ) -> Result<FetchedLayer> {
        let mut w = self.content.writer()?;
        let tmp = self.snapshots.prepare()?;
        let stats = {
            let mut tee = TeeReader::new(&mut *reader, &mut w);
            let stats = unpack_layer(&mut tee, &tmp.fs_dir(), what)?;
            // Whatever follows the compressed stream still belongs to the blob.
            io::copy(&mut tee, &mut io::sink())
                .map_err(|e| Error::io(format!("{what}: reading"), e))?;
            stats
        };
        if w.len() != layer.size {
            return Err(Error::InvalidInput(format!(
                "{what}: blob {} is {} bytes but the manifest says {}",
                layer.digest,
                w.len(),
                layer.size
            )));
        }
        let blob = w.commit(Some(&layer.digest), Some(layer.size))?;
        if stats.diff_id != diff_id {
            if blob.created {
                let _ = self.content.remove(&blob.digest);
            }
            return Err(Error::InvalidInput(format!(
                "{what}: blob {} has diff id {} but the image config expects {diff_id}",
                layer.digest, stats.diff_id
            )));
        }
        Ok(FetchedLayer {
            digest: layer.digest.clone(),
            record: LayerRecord {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                size: layer.size,
                diff_id: diff_id.to_string(),
                chain_id: String::new(),
                unpacked_size: stats.content_size,
            },
            blob: Some(blob),
            tmp: Some(tmp),
            content: self.content.clone(),
        })
    }

    /// Publish a pulled image: the manifest and config (checked against their digests), the
    /// fetched layers' snapshots, records for layers that were already here, and `refs`.
    #[allow(clippy::too_many_arguments)]
    pub fn publish_pull(
        &self,
        manifest: &[u8],
        manifest_media_type: &str,
        config: &[u8],
        config_digest: &str,
        layers: &[PullLayer],
        mut fetched: Vec<FetchedLayer>,
        refs: Vec<Reference>,
    ) -> Result<Image> {
        let ids = config_diff_ids(config, config_digest, layers.len())?;
        let chains = chain_ids(&ids);
        let _w = self.lock_writes();
        let mut txn = Txn::new(self);
        let cfg = self.content.write_bytes(config, Some(config_digest))?;
        txn.note_blob(&cfg);
        let manifest_digest = sha256_digest(manifest);
        let m = self.content.write_bytes(manifest, Some(&manifest_digest))?;
        txn.note_blob(&m);
        let mut records = Vec::with_capacity(layers.len());
        for (i, l) in layers.iter().enumerate() {
            let what = format!("layer {}", l.digest);
            match fetched.iter().position(|f| f.digest == l.digest) {
                Some(pos) => {
                    let mut f = fetched.swap_remove(pos);
                    if let Some(b) = f.blob.take() {
                        txn.note_blob(&b);
                    }
                    if let Some(tmp) = f.tmp.take() {
                        if self.snapshots.commit(tmp, &chains[i])? {
                            txn.note_snapshot(&chains[i]);
                        }
                    }
                    let mut rec = f.record.clone();
                    rec.chain_id = chains[i].clone();
                    records.push(rec);
                }
                None => {
                    let blob = LayerBlob {
                        digest: l.digest.clone(),
                        media_type: Some(l.media_type.clone()),
                    };
                    records.push(self.ensure_layer(&mut txn, &blob, &ids[i], &chains[i], &what)?);
                }
            }
        }
        let prepared = self.prepare_with_layers(
            &mut txn,
            config_digest,
            config,
            records.into(),
            Some(ManifestBlob {
                digest: manifest_digest,
                media_type: manifest_media_type.to_string(),
                size: manifest.len() as u64,
            }),
            None,
            refs,
        )?;
        self.publish(txn, vec![prepared])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("the pulled image was not published".into()))
    }
}
