//! Per-image records (`images/<config hex>.json`): which manifest, config and layer blobs
//! make the image, their diff ids, chain ids and sizes.

use crate::digest::sha256_hex;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{atomic_write, atomic_write_unsynced, fsync_dir};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LayerRecord {
    /// Digest of the layer blob as stored (compressed or not).
    pub digest: String,
    pub media_type: String,
    /// Size of the blob.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    pub chain_id: String,
    /// Sum of the sizes of the files in the layer.
    pub unpacked_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ImageRecord {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    pub config_size: u64,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub manifest_size: u64,
    /// Shared between the images with the same layers (a build's metadata steps, and every
    /// image at boot whose layers equal another's), so that many such images cost little.
    pub layers: Arc<[LayerRecord]>,
    /// The image this one was committed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When the image entered this store (RFC 3339).
    pub added: String,
    /// What listing needs from the config, so that neither boot nor listing reads configs;
    /// missing in records written before it was kept (boot fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ConfigSummary>,
}

/// Labels that take more bytes than this are not kept in the record but read from the
/// config when needed (a build of many LABEL steps would otherwise keep every label of
/// every step in memory).
pub(crate) const INLINE_LABELS_BYTES: usize = 4096;

/// The few fields of an image config that listing and its filters use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ConfigSummary {
    /// `created` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `config.Labels`, when they take at most [`INLINE_LABELS_BYTES`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The labels are larger than that: read them from the config.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub labels_in_config: bool,
}

/// The part of an image config a summary comes from; the rest is skipped unread.
#[derive(Deserialize)]
struct ConfigHead {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ContainerHead>,
}

#[derive(Deserialize)]
struct ContainerHead {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The labels of an image config (`config.Labels`), read without building the rest.
pub(crate) fn config_labels(config: &[u8]) -> serde_json::Result<BTreeMap<String, String>> {
    let head: ConfigHead = serde_json::from_slice(config)?;
    Ok(head.config.and_then(|c| c.labels).unwrap_or_default())
}

impl ConfigSummary {
    /// The summary of an image config's JSON, read without building the rest.
    pub(crate) fn from_slice(config: &[u8]) -> serde_json::Result<ConfigSummary> {
        Ok(ConfigSummary::of(serde_json::from_slice(config)?))
    }

    /// The summary of a parsed image config (whose labels were checked to be strings).
    pub(crate) fn from_value(config: &serde_json::Value) -> ConfigSummary {
        let labels = config
            .get("config")
            .and_then(|c| c.get("Labels"))
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            });
        ConfigSummary::of(ConfigHead {
            created: config
                .get("created")
                .and_then(serde_json::Value::as_str)
                .map(String::from),
            config: Some(ContainerHead { labels }),
        })
    }

    fn of(head: ConfigHead) -> ConfigSummary {
        let labels = head.config.and_then(|c| c.labels).unwrap_or_default();
        let size: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
        let labels_in_config = size > INLINE_LABELS_BYTES;
        ConfigSummary {
            created: head.created,
            labels: if labels_in_config {
                BTreeMap::new()
            } else {
                labels
            },
            labels_in_config,
        }
    }
}

impl ImageRecord {
    /// Sum of the unpacked sizes of the layers.
    pub(crate) fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked_size).sum()
    }

    /// Every blob the image needs.
    pub(crate) fn blobs(&self) -> impl Iterator<Item = &str> {
        [self.id.as_str(), self.manifest_digest.as_str()]
            .into_iter()
            .chain(self.layers.iter().map(|l| l.digest.as_str()))
    }
}

/// A record file that cannot be used: its path and why.
pub(crate) type BadRecord = (PathBuf, String);

#[derive(Debug, Clone)]
pub(crate) struct Records {
    dir: PathBuf,
}

impl Records {
    pub(crate) fn open(data_root: &Path) -> Result<Records> {
        let dir = data_root.join("images");
        crate::fsutil::create_dir_all(&dir)?;
        Ok(Records { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        sha256_hex(id)
            .map(|h| self.dir.join(format!("{h}.json")))
            .ok_or_else(|| Error::Corrupt(format!("invalid image id {id:?}")))
    }

    pub(crate) fn write(&self, rec: &ImageRecord) -> Result<()> {
        atomic_write(&self.path(&rec.id)?, &Records::bytes(rec)?)
    }

    /// Writes a record without waiting for the disk (boot adding config summaries to old
    /// records syncs them all at once afterwards).
    pub(crate) fn rewrite(&self, rec: &ImageRecord) -> Result<()> {
        atomic_write_unsynced(&self.path(&rec.id)?, &Records::bytes(rec)?)
    }

    fn bytes(rec: &ImageRecord) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(rec)
            .map_err(|e| Error::Corrupt(format!("image record {} does not serialize: {e}", rec.id)))
    }

    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        let p = self.path(id)?;
        match fs::remove_file(&p) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }

    /// Moves unreadable records to `<data root>/quarantine/images/` (needs no free space),
    /// logging each; returns the image ids their file names give.
    pub(crate) fn quarantine(&self, bad: &[BadRecord]) -> Vec<String> {
        let Some(root) = self.dir.parent() else {
            return Vec::new();
        };
        let to_dir = root.join("quarantine").join("images");
        let mut ids = Vec::new();
        for (path, why) in bad {
            let Some(name) = path.file_name() else {
                continue;
            };
            let mut to = to_dir.join(name);
            let mut n = 1;
            while to.symlink_metadata().is_ok() {
                to = to_dir.join(format!("{}.{n}", name.to_string_lossy()));
                n += 1;
            }
            match fs::create_dir_all(&to_dir).and_then(|()| fs::rename(path, &to)) {
                Ok(()) => {
                    tracing::warn!(path = %path.display(), reason = %why, moved_to = %to.display(), "unreadable image record quarantined")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), reason = %why, error = %e, "unreadable image record could not be moved aside")
                }
            }
            if let Some(hex) = name.to_string_lossy().strip_suffix(".json") {
                ids.push(format!("sha256:{hex}"));
            }
        }
        ids
    }

    /// All records; unreadable ones are reported in the second list (path, reason).
    pub(crate) fn load_all(&self) -> Result<(Vec<ImageRecord>, Vec<BadRecord>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx(|| format!("reading {}", self.dir.display()))? {
            let entry = entry.ctx(|| format!("reading {}", self.dir.display()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if !crate::digest::is_hex64(hex) {
                continue;
            }
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(r) if r.id == format!("sha256:{hex}") => good.push(r),
                Ok(r) => bad.push((path, format!("record names image {}", r.id))),
                Err(e) => bad.push((path, e)),
            }
        }
        Ok((good, bad))
    }
}
