//! `docker commit`: the container's overlay upper dir becomes a new layer (whiteouts
//! converted to `.wh.` entries) on top of the parent image's layers, with a history entry.

use crate::changes::apply_changes_json;
use crate::error::{Error, Result};
use crate::ingest::{now_rfc3339, LayerBlob, Txn};
use crate::manifest::go_arch;
use crate::record::LayerRecord;
use crate::reference::parse_tag_target;
use crate::snapshot::chain_ids;
use crate::store::{Image, Store};
use crate::tarwrite::TarWriter;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

/// Options of [`Store::commit`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitOptions {
    /// `repo[:tag]` for the new image.
    pub reference: Option<String>,
    /// `--message`.
    pub comment: Option<String>,
    /// `--author`.
    pub author: Option<String>,
    /// `--change` lines, applied on top of `config`.
    pub changes: Vec<String>,
    /// The container's config to record; the parent image's config when `None`.
    pub config: Option<oci_spec::image::Config>,
    /// The container's `Healthcheck` to record with `config` (a Docker field `oci_spec`'s
    /// config does not model).
    pub healthcheck: Option<Value>,
    /// The whole Docker container config to record (builds: with `Shell`, `OnBuild`, ...);
    /// takes precedence over `config` and `healthcheck`.
    pub raw_config: Option<Map<String, Value>>,
    /// The history entry's `created_by`; the config's command when `None`.
    pub created_by: Option<String>,
    /// The id maps of a container in a user namespace: its files are recorded with the
    /// ids they have inside it.
    pub ids: Option<crate::IdMappings>,
}

impl Store {
    /// Commits `upper_dir` (an overlay upper dir) as a new image on top of `parent`.
    pub fn commit(
        &self,
        upper_dir: &Path,
        parent: Option<&str>,
        opts: &CommitOptions,
    ) -> Result<Image> {
        let refs = match &opts.reference {
            Some(r) if !r.is_empty() => vec![parse_tag_target(r)?],
            _ => Vec::new(),
        };
        let parent = parent.map(|p| self.loaded(p)).transpose()?;
        let parent_config = parent
            .as_ref()
            .map(|p| self.config_json(&p.record.id))
            .transpose()?;
        let mut container_config: Map<String, Value> = match &opts.config {
            _ if opts.raw_config.is_some() => opts.raw_config.clone().unwrap_or_default(),
            Some(c) => match serde_json::to_value(c) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(Error::InvalidInput(
                        "commit: the container config does not serialize".to_string(),
                    ))
                }
            },
            None => parent_config
                .as_ref()
                .and_then(|c| c.get("config"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        if let Some(h) = opts
            .healthcheck
            .as_ref()
            .filter(|_| opts.raw_config.is_none())
        {
            container_config.insert("Healthcheck".into(), h.clone());
        }
        apply_changes_json(&mut container_config, &opts.changes)?;
        let created_by = match &opts.created_by {
            Some(c) => c.clone(),
            None => opts
                .config
                .as_ref()
                .and_then(|c| c.cmd().clone())
                .map(|c| c.join(" "))
                .unwrap_or_default(),
        };
        if !upper_dir.is_dir() {
            return Err(Error::InvalidInput(format!(
                "commit: {} is not a directory",
                upper_dir.display()
            )));
        }

        let parent_layers: Arc<[LayerRecord]> = parent
            .as_ref()
            .map_or_else(|| Arc::from(Vec::new()), |p| p.record.layers.clone());
        let mut layers = parent_layers.to_vec();
        let mut blob = self.content.writer()?;
        let entries = {
            // Walked by descriptors from the upper dir: a running container changing it
            // meanwhile cannot make the walk leave it.
            let upper = crate::inroot::Root::open(upper_dir)?;
            let mut tw = TarWriter::new(&mut blob, true).with_ids(opts.ids.clone());
            tw.append_at(upper.fd(), None, "")?;
            let n = tw.entries();
            tw.finish()?;
            n
        };
        let empty_layer = entries == 0;
        let _w = self.lock_writes();
        if let Some(p) = &parent {
            // Deleted while the upper dir was being archived?
            if !self.read_state().images.contains_key(&p.record.id) {
                return Err(Error::not_found_image(&p.record.id));
            }
        }
        let mut txn = Txn::new(self);
        if !empty_layer {
            let info = blob.commit(None, None)?;
            txn.note_blob(&info);
            let mut diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
            diff_ids.push(info.digest.clone());
            let chains = chain_ids(&diff_ids);
            let chain = chains
                .last()
                .ok_or_else(|| Error::Corrupt("commit: no chain id".to_string()))?;
            let rec = self.ensure_layer(
                &mut txn,
                &LayerBlob {
                    digest: info.digest.clone(),
                    media_type: Some(
                        crate::unpack::Compression::None
                            .oci_layer_media_type()
                            .to_string(),
                    ),
                },
                &info.digest,
                chain,
                "commit: new layer",
            )?;
            layers.push(rec);
        } else {
            drop(blob);
        }

        let created = now_rfc3339();
        let mut config = match parent_config.as_deref().cloned() {
            Some(Value::Object(m)) => m,
            _ => {
                let mut m = Map::new();
                m.insert("architecture".into(), json!(go_arch()));
                m.insert("os".into(), json!("linux"));
                m
            }
        };
        for stale in ["container", "container_config", "id", "parent"] {
            config.remove(stale);
        }
        config.insert("config".into(), Value::Object(container_config));
        config.insert("created".into(), json!(created));
        set_or_remove(&mut config, "author", opts.author.as_deref());
        set_or_remove(&mut config, "comment", opts.comment.as_deref());
        let mut entry = Map::new();
        entry.insert("created".into(), json!(created));
        if let Some(a) = opts.author.as_deref().filter(|a| !a.is_empty()) {
            entry.insert("author".into(), json!(a));
        }
        entry.insert("created_by".into(), json!(created_by));
        if let Some(c) = opts.comment.as_deref().filter(|c| !c.is_empty()) {
            entry.insert("comment".into(), json!(c));
        }
        if empty_layer {
            entry.insert("empty_layer".into(), json!(true));
        }
        let history = config
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !history.is_array() {
            *history = Value::Array(Vec::new());
        }
        if let Value::Array(h) = history {
            h.push(Value::Object(entry));
        }
        let diff_ids: Vec<Value> = layers.iter().map(|l| json!(l.diff_id)).collect();
        config.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );

        let config_bytes = serde_json::to_vec(&Value::Object(config))
            .map_err(|e| Error::Corrupt(format!("commit: config does not serialize: {e}")))?;
        let cinfo = self.content.write_bytes(&config_bytes, None)?;
        txn.note_blob(&cinfo);
        let prepared = self.prepare_with_layers(
            &mut txn,
            &cinfo.digest,
            &config_bytes,
            if empty_layer {
                parent_layers
            } else {
                layers.into()
            },
            None,
            parent.as_ref().map(|p| p.record.id.clone()),
            refs,
        )?;
        let mut images = self.publish(txn, vec![prepared])?;
        images
            .pop()
            .ok_or_else(|| Error::Corrupt("commit: the new image vanished".to_string()))
    }
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    match v.filter(|s| !s.is_empty()) {
        Some(s) => {
            m.insert(key.to_string(), json!(s));
        }
        None => {
            m.remove(key);
        }
    }
}
