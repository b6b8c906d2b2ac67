//! `docker import`: one tarball (plain or gzip) becomes a one-layer image; the blob is stored
//! as given while the layer is unpacked and hashed in the same pass.

use crate::changes::apply_changes_json;
use crate::digest::TeeReader;
use crate::error::{Error, Result};
use crate::ingest::{now_rfc3339, Txn};
use crate::manifest::go_arch;
use crate::record::LayerRecord;
use crate::reference::parse_tag_target;
use crate::store::{Image, Store};
use crate::unpack::unpack_layer;
use serde_json::{json, Map};
use std::io::{self, Read};

/// Options of [`Store::import`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `repo[:tag]` to tag the new image with.
    pub reference: Option<String>,
    /// `--change` lines.
    pub changes: Vec<String>,
    /// `--message`; the history comment defaults to `Imported from -`.
    pub message: Option<String>,
}

impl Store {
    /// Imports a root filesystem tarball as a new one-layer image.
    pub fn import(&self, tarball: &mut dyn Read, opts: &ImportOptions) -> Result<Image> {
        let refs = match &opts.reference {
            Some(r) if !r.is_empty() => vec![parse_tag_target(r)?],
            _ => Vec::new(),
        };
        let mut container_config = Map::new();
        apply_changes_json(&mut container_config, &opts.changes)?;
        let message = opts
            .message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "Imported from -".to_string());

        // Stream and unpack without the store lock (the upload may be slow); only moving the
        // results into place and publishing happen under it.
        let mut blob = self.content.writer()?;
        let tmp = self.snapshots.prepare()?;
        let stats = {
            let mut tee = TeeReader::new(tarball, &mut blob);
            let stats = unpack_layer(&mut tee, &tmp.fs_dir(), "import")?;
            io::copy(&mut tee, &mut io::sink())
                .map_err(|e| Error::InvalidInput(format!("import: reading the archive: {e}")))?;
            stats
        };
        if blob.len() == 0 {
            return Err(Error::InvalidInput(
                "import: the archive is empty".to_string(),
            ));
        }
        let _w = self.lock_writes();
        let mut txn = Txn::new(self);
        let info = blob.commit(None, None)?;
        txn.note_blob(&info);
        let diff_id = stats.diff_id.clone();
        // A single layer's chain id is its diff id.
        if self.snapshots.commit(tmp, &diff_id)? {
            txn.note_snapshot(&diff_id);
        }
        let layer = LayerRecord {
            digest: info.digest.clone(),
            media_type: stats.compression.oci_layer_media_type().to_string(),
            size: info.size,
            diff_id: diff_id.clone(),
            chain_id: diff_id.clone(),
            unpacked_size: stats.content_size,
        };

        let created = now_rfc3339();
        let config = json!({
            "architecture": go_arch(),
            "comment": message,
            "config": container_config,
            "created": created,
            "history": [{"created": created, "comment": message}],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| Error::Corrupt(format!("import: config does not serialize: {e}")))?;
        let cinfo = self.content.write_bytes(&config_bytes, None)?;
        txn.note_blob(&cinfo);
        let prepared = self.prepare_with_layers(
            &mut txn,
            &cinfo.digest,
            &config_bytes,
            vec![layer].into(),
            None,
            None,
            refs,
        )?;
        let mut images = self.publish(txn, vec![prepared])?;
        images
            .pop()
            .ok_or_else(|| Error::Corrupt("import: the new image vanished".to_string()))
    }
}
