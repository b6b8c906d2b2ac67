//! Cache lookups and commits: a step's inputs looked up in the step cache or matched against
//! the history of the `--cache-from` images, and a missed step's work (an empty layer, a
//! staged directory, a RUN container) committed as the stage's new image and recorded in the
//! cache. It must not interpret instructions (see `steps`).

use super::cache;
use super::{bad_msg, lock, now_secs, short, BResult, Builder, Stage, Work};
use crate::error::Error;
use berth_build::cache::{Inputs, Record};

/// Largest container config (`Env`, `Labels`, `Cmd`, ...) a build step may make, in bytes
/// as JSON: every step's image carries it, so it is bounded like the Dockerfile.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// A position in a `--cache-from` image's history: the next entry and layer to match.
pub(super) struct CachePos {
    image: String,
    hist: usize,
    layer: usize,
}

/// An image's history as (created_by, empty_layer) pairs.
fn history_of(img: &berth_image::Image) -> Vec<(String, bool)> {
    img.config
        .history()
        .as_ref()
        .map(|h| {
            h.iter()
                .map(|e| {
                    (
                        e.created_by().clone().unwrap_or_default(),
                        e.empty_layer().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Builder {
    /// Looks the step up in the cache; on a hit moves the stage onto the cached image.
    /// Then a `--cache-from` image whose history continues with the same step gives the
    /// result without running it.
    pub(super) async fn hit(
        &self,
        st: &mut Stage,
        inputs: &Inputs,
        created_by: &str,
    ) -> BResult<bool> {
        if self.opts.nocache {
            return Ok(false);
        }
        let key = inputs.key();
        // Given `cachefrom` images, they are the only cache (none found: no cache at all).
        let rec = if self.opts.cache_from.is_empty() {
            cache::lookup(&self.d.cfg.data_root, &key)
                .filter(|r| self.d.images.resolve_id(&r.image).is_ok())
        } else {
            None
        };
        let from_cf = self.advance_cache_from(st, created_by);
        let rec = match (rec, from_cf) {
            (Some(r), _) => Some(r),
            (None, Some((img, layer))) => Some(
                self.reuse_cache_image(st, inputs, created_by, &img, layer)
                    .await?,
            ),
            (None, None) => None,
        };
        let Some(rec) = rec else {
            if self.opts.explain {
                let mut why = {
                    let mut records = lock(&self.records);
                    let records = records.get_or_insert_with(|| {
                        cache::all(&self.d.cfg.data_root)
                            .into_iter()
                            .map(|(_, r)| r)
                            .collect()
                    });
                    berth_build::cache::explain(inputs, records)
                };
                if why == "parent image changed" {
                    if let Some(m) = st.last_miss {
                        why = format!("parent changed (step {m} missed)");
                    }
                }
                self.say(format!(" ---> Cache miss: {why}\n"));
            }
            return Ok(false);
        };
        self.say(" ---> Using cache\n".to_string());
        if self.opts.explain {
            self.say(
                " ---> Cache hit: same parent, instruction, build args and files\n".to_string(),
            );
        }
        st.config = self.image_config(&rec.image)?;
        st.image = rec.image;
        self.say(format!(" ---> {}\n", short(&st.image)));
        Ok(true)
    }

    /// Positions in the `--cache-from` images whose history starts with `base`'s.
    pub(super) fn align_cache_from(&self, base: &str) -> Vec<CachePos> {
        let mut out = Vec::new();
        let (b_hist, b_layers) = if base.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            match self.d.images.get(base) {
                Ok(b) => (history_of(&b), b.layers.clone()),
                Err(_) => return out,
            }
        };
        for name in &self.opts.cache_from {
            let Ok(x) = self.d.images.get(name) else {
                continue;
            };
            let x_hist = history_of(&x);
            if x_hist.starts_with(&b_hist) && x.layers.starts_with(&b_layers) {
                lock(&self.cf_history).insert(x.id.clone(), x_hist);
                out.push(CachePos {
                    image: x.id.clone(),
                    hist: b_hist.len(),
                    layer: b_layers.len(),
                });
            }
        }
        out
    }

    /// Moves the stage's `--cache-from` positions past a step made by `created_by`; the image
    /// and layer index (`None` for an empty layer) of the first that matched.
    pub(super) fn advance_cache_from(
        &self,
        st: &mut Stage,
        created_by: &str,
    ) -> Option<(String, Option<usize>)> {
        let mut found = None;
        let hist = lock(&self.cf_history);
        st.cache_from.retain_mut(|p| {
            let Some((cb, empty)) = hist.get(&p.image).and_then(|h| h.get(p.hist)) else {
                return false;
            };
            if cb != created_by {
                return false;
            }
            let empty = *empty;
            let layer = (!empty).then_some(p.layer);
            found.get_or_insert((p.image.clone(), layer));
            p.hist += 1;
            if !empty {
                p.layer += 1;
            }
            true
        });
        found
    }

    /// A step's image made from a `--cache-from` image: its layer (unpacked) on the current
    /// image, or only the config for an empty layer.
    pub(super) async fn reuse_cache_image(
        &self,
        st: &Stage,
        inputs: &Inputs,
        created_by: &str,
        image: &str,
        layer: Option<usize>,
    ) -> BResult<Record> {
        let dir = match layer {
            Some(i) => {
                let dirs = self.d.images.rootfs_layers(image)?;
                dirs.len()
                    .checked_sub(i + 1)
                    .and_then(|j| dirs.get(j).cloned())
                    .ok_or_else(|| Error::internal("cache-from image lost a layer"))?
            }
            None => {
                std::fs::create_dir_all(&self.empty_dir)?;
                self.empty_dir.clone()
            }
        };
        let parent = (!st.image.is_empty()).then(|| st.image.clone());
        let opts = berth_image::CommitOptions {
            raw_config: Some(st.config.clone()),
            created_by: Some(created_by.to_string()),
            ..Default::default()
        };
        let d = self.d.clone();
        let img =
            tokio::task::spawn_blocking(move || d.images.commit(&dir, parent.as_deref(), &opts))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
        let rec = Record {
            inputs: inputs.clone(),
            image: img.id,
            created: now_secs(),
        };
        cache::save(&self.d.cfg.data_root, &rec)?;
        *lock(&self.records) = None;
        if self.opts.explain {
            self.say(format!(
                " ---> Cache hit from --cache-from image {}\n",
                short(image)
            ));
        }
        Ok(rec)
    }

    /// Runs a step unless cached, commits its result and records it.
    pub(super) async fn commit_step(
        &self,
        st: &mut Stage,
        inputs: Inputs,
        created_by: String,
        work: Work,
    ) -> BResult<()> {
        let size = serde_json::to_vec(&st.config).map_or(0, |v| v.len());
        if size > MAX_CONFIG_BYTES {
            return Err(bad_msg(format!(
                "the image config would be {size} bytes; berth builds at most {MAX_CONFIG_BYTES}"
            )));
        }
        if !matches!(work, Work::Layer(_)) && self.hit(st, &inputs, &created_by).await? {
            return Ok(());
        }
        // Layer work checked the cache before staging its files.
        st.last_miss = Some(st.step);
        let parent = (!st.image.is_empty()).then(|| st.image.clone());
        let opts = berth_image::CommitOptions {
            raw_config: Some(st.config.clone()),
            created_by: Some(created_by),
            ..Default::default()
        };
        let img = match work {
            Work::Meta => {
                std::fs::create_dir_all(&self.empty_dir)?;
                let (d, dir) = (self.d.clone(), self.empty_dir.clone());
                tokio::task::spawn_blocking(move || d.images.commit(&dir, parent.as_deref(), &opts))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))??
            }
            Work::Layer(dir) => {
                std::fs::create_dir_all(&dir)?;
                let d = self.d.clone();
                let dir2 = dir.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let r = d.images.commit(&dir2, parent.as_deref(), &opts);
                    let _ = std::fs::remove_dir_all(&dir2);
                    r
                })
                .await
                .map_err(|e| Error::internal(e.to_string()))?;
                r?
            }
            Work::Run { argv, env, mounts } => {
                self.run_container(st, argv, env, mounts, opts).await?
            }
        };
        cache::save(
            &self.d.cfg.data_root,
            &Record {
                inputs,
                image: img.id.clone(),
                created: now_secs(),
            },
        )?;
        *lock(&self.records) = None;
        st.image = img.id;
        self.say(format!(" ---> {}\n", short(&st.image)));
        Ok(())
    }
}
