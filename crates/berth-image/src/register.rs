//! Adding pulled content: blobs streamed into the content store, then an image registered
//! from a manifest whose config and layers are already there (used by the registry client).

use crate::error::{Error, Result};
use crate::ingest::{LayerBlob, ManifestBlob, Txn};
use crate::manifest::{is_manifest_type, manifest_kind, Manifest};
use crate::reference::Reference;
use crate::store::{Image, Store};
use std::io::Read;

impl Store {
    /// Streams a blob into the content store, verifying `expected_digest` and
    /// `expected_size` when given; returns `(digest, size)`.
    pub fn ingest_blob(
        &self,
        reader: &mut dyn Read,
        expected_digest: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<(String, u64)> {
        let info = self
            .content
            .ingest(reader, expected_digest, expected_size)?;
        Ok((info.digest, info.size))
    }

    /// Registers the image of an image manifest (OCI or Docker schema 2) whose config and
    /// layer blobs are in the content store, unpacking its layers; `names` are tag
    /// references (`busybox:1.36`) or digest references (`busybox@sha256:...`).
    pub fn add_image(&self, manifest_digest: &str, names: &[String]) -> Result<Image> {
        let mut refs = Vec::new();
        for n in names {
            let r = Reference::parse(n)?;
            refs.push(match r.digest() {
                Some(d) => r.with_digest(d),
                None => r.with_default_tag(),
            });
        }
        let _w = self.lock_writes();
        let mut txn = Txn::new(self);
        let bytes = self.content.read(manifest_digest)?;
        let media_type = manifest_kind(&bytes).unwrap_or_default();
        if !is_manifest_type(&media_type) {
            return Err(Error::InvalidInput(format!(
                "{manifest_digest} is not an image manifest (media type {media_type:?})"
            )));
        }
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidInput(format!("manifest {manifest_digest} is invalid: {e}"))
        })?;
        let layers: Vec<LayerBlob> = m
            .layers
            .iter()
            .map(|l| LayerBlob {
                digest: l.digest.clone(),
                media_type: Some(l.media_type.clone()),
            })
            .collect();
        let prepared = self.prepare_image(
            &mut txn,
            &m.config.digest,
            &layers,
            Some(ManifestBlob {
                digest: manifest_digest.to_string(),
                media_type,
                size: bytes.len() as u64,
            }),
            None,
            refs,
            &format!("manifest {manifest_digest}"),
        )?;
        let mut images = self.publish(txn, vec![prepared])?;
        images
            .pop()
            .ok_or_else(|| Error::Corrupt("the new image vanished".to_string()))
    }
}
