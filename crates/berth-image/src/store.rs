//! The image store: opening (crash cleanup, garbage collection), lookups by name or id (the
//! records and config summaries in memory, configs read from the content store on demand),
//! listing, tagging and the overlay lower dirs of an image.

use crate::content::ContentStore;
use crate::digest::{is_hex_prefix, sha256_hex, SHA256_PREFIX};
use crate::error::{Error, Result};
use crate::fsutil::{create_dir_all, remove_tmp_entries};
use crate::record::{ConfigSummary, ImageRecord, LayerRecord, Records};
use crate::reference::Reference;
use crate::repositories::Repositories;
use crate::snapshot::Snapshots;
use oci_spec::image::ImageConfiguration;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An image as the daemon sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Familiar tag references (`busybox:latest`), sorted.
    pub repo_tags: Vec<String>,
    /// Familiar digest references (`busybox@sha256:...`), sorted.
    pub repo_digests: Vec<String>,
    /// RFC 3339, from the config.
    pub created: Option<String>,
    /// Sum of the uncompressed layer sizes (bytes of the files in the layers).
    pub size: u64,
    pub config: ImageConfiguration,
    /// `config.Healthcheck` as stored (Docker's field, which `oci_spec` does not model).
    pub healthcheck: Option<serde_json::Value>,
    /// `config.OnBuild` and `config.Shell`, Docker's fields `oci_spec` does not model either.
    pub on_build: Option<Vec<String>>,
    pub shell: Option<Vec<String>>,
    /// Diff ids, bottom first.
    pub layers: Vec<String>,
    /// The image this one was committed on.
    pub parent: Option<String>,
    /// Digest of the image manifest in the content store.
    pub manifest_digest: String,
    /// Media type of that manifest.
    pub manifest_media_type: String,
}

/// An image as listing shows it, from what the store keeps in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Familiar tag references, sorted.
    pub repo_tags: Vec<String>,
    /// Familiar digest references, sorted.
    pub repo_digests: Vec<String>,
    /// RFC 3339, from the config.
    pub created: Option<String>,
    /// Sum of the uncompressed layer sizes.
    pub size: u64,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// The image this one was committed on.
    pub parent: Option<String>,
}

/// An image in memory: its record, which carries the summary of its config. The config
/// itself stays in the content store and is read when needed (inspect, history, create).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub record: ImageRecord,
}

impl Loaded {
    pub(crate) fn summary(&self) -> &ConfigSummary {
        static NONE: ConfigSummary = ConfigSummary {
            created: None,
            labels: BTreeMap::new(),
            labels_in_config: false,
        };
        self.record.summary.as_ref().unwrap_or(&NONE)
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub images: BTreeMap<String, Arc<Loaded>>,
    pub repos: Repositories,
}

impl State {
    /// Resolves a name or id like Docker's image lookup.
    pub(crate) fn resolve(&self, input: &str) -> Result<Arc<Loaded>> {
        let not_found = || Error::not_found_image(input);
        if let Some(hex) = sha256_hex(input) {
            return self
                .images
                .get(&format!("{SHA256_PREFIX}{hex}"))
                .cloned()
                .ok_or_else(not_found);
        }
        if let Ok(r) = Reference::parse(input) {
            let r = match r.digest() {
                Some(d) => r.with_digest(d),
                None => r.with_default_tag(),
            };
            if let Some(l) = self.repos.get(&r).and_then(|id| self.images.get(id)) {
                return Ok(l.clone());
            }
        }
        let prefix = input.strip_prefix(SHA256_PREFIX).unwrap_or(input);
        if is_hex_prefix(prefix) {
            let start = format!("{SHA256_PREFIX}{prefix}");
            let mut hits = self
                .images
                .range(start.clone()..)
                .take_while(|(k, _)| k.starts_with(&start));
            if let (Some((_, l)), None) = (hits.next(), hits.next()) {
                return Ok(l.clone());
            }
        }
        Err(not_found())
    }

    /// The familiar tag and digest references of image `id`.
    pub(crate) fn names_of(&self, id: &str) -> (Vec<String>, Vec<String>) {
        let refs = self.repos.refs_of(id);
        let tags = refs
            .iter()
            .filter(|r| r.tag().is_some() && r.digest().is_none())
            .map(Reference::familiar)
            .collect();
        let digests = refs
            .iter()
            .filter(|r| r.digest().is_some())
            .map(Reference::familiar)
            .collect();
        (tags, digests)
    }

    /// The summary of an image; labels kept in its config are left to the caller.
    fn summary(&self, l: &Loaded) -> ImageSummary {
        let (repo_tags, repo_digests) = self.names_of(&l.record.id);
        ImageSummary {
            id: l.record.id.clone(),
            repo_tags,
            repo_digests,
            created: l.summary().created.clone(),
            size: l.record.size(),
            labels: l.summary().labels.clone(),
            parent: l.record.parent.clone(),
        }
    }

    /// Images whose parent is `id`.
    pub(crate) fn children(&self, id: &str) -> Vec<String> {
        self.images
            .values()
            .filter(|l| l.record.parent.as_deref() == Some(id))
            .map(|l| l.record.id.clone())
            .collect()
    }
}

/// The local image store. `Send + Sync`; share it in an `Arc`.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Snapshots,
    pub(crate) records: Records,
    state: RwLock<State>,
    /// Serializes operations that change the store on disk.
    write: Mutex<()>,
    /// The configs of the last few images published or committed on: a build commits each
    /// step on the one before, whose config then needs no read and parse.
    recent: Mutex<VecDeque<(String, Arc<serde_json::Value>)>>,
}

/// How many configs [`Store`] keeps at hand.
const RECENT_CONFIGS: usize = 4;

/// The whole image: its record and names with the config read from the content store.
pub(crate) fn image_of(
    l: &Loaded,
    (repo_tags, repo_digests): (Vec<String>, Vec<String>),
    config: ImageConfiguration,
    config_json: &serde_json::Value,
) -> Image {
    Image {
        id: l.record.id.clone(),
        repo_tags,
        repo_digests,
        created: config.created().clone(),
        size: l.record.size(),
        config,
        healthcheck: config_json
            .get("config")
            .and_then(|c| c.get("Healthcheck"))
            .filter(|h| !h.is_null())
            .cloned(),
        on_build: docker_list(config_json, "OnBuild"),
        shell: docker_list(config_json, "Shell"),
        layers: l.record.layers.iter().map(|x| x.diff_id.clone()).collect(),
        parent: l.record.parent.clone(),
        manifest_digest: l.record.manifest_digest.clone(),
        manifest_media_type: l.record.manifest_media_type.clone(),
    }
}

/// Parses a config blob.
pub(crate) fn parse_config(
    bytes: &[u8],
    digest: &str,
) -> Result<(ImageConfiguration, serde_json::Value)> {
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::InvalidInput(format!("image config {digest} is not valid JSON: {e}"))
    })?;
    if !json.is_object() {
        return Err(Error::InvalidInput(format!(
            "image config {digest} is not a JSON object"
        )));
    }
    let config: ImageConfiguration = serde_json::from_value(json.clone())
        .map_err(|e| Error::InvalidInput(format!("image config {digest} is invalid: {e}")))?;
    Ok((config, json))
}

impl Store {
    /// Opens (creating) the store under `data_root`: removes half-written blobs, half-
    /// unpacked snapshots and temp files, then blobs and snapshots no image uses.
    pub fn open(data_root: &Path) -> Result<Store> {
        create_dir_all(data_root)?;
        let content = ContentStore::open(data_root)?;
        let snapshots = Snapshots::open(data_root)?;
        let records = Records::open(data_root)?;
        content.clean_tmp()?;
        snapshots.clean_tmp()?;
        remove_tmp_entries(records.dir())?;
        remove_tmp_entries(data_root)?;

        let (recs, bad) = records.load_all()?;
        let quarantined = records.quarantine(&bad);
        let mut images = BTreeMap::new();
        let mut rewritten = false;
        // One copy of each distinct list of layers, by its top chain id.
        let mut layer_lists: HashMap<String, Arc<[LayerRecord]>> = HashMap::new();
        let mut keep_chains: HashSet<String> = HashSet::new();
        let mut keep_blobs: HashSet<String> = HashSet::new();
        for mut rec in recs {
            keep_chains.extend(rec.layers.iter().map(|l| l.chain_id.clone()));
            if let Some(top) = rec.layers.last() {
                match layer_lists.get(&top.chain_id) {
                    Some(same) if *same == rec.layers => rec.layers = same.clone(),
                    Some(_) => {}
                    None => {
                        layer_lists.insert(top.chain_id.clone(), rec.layers.clone());
                    }
                }
            }
            keep_blobs.extend(rec.blobs().map(str::to_string));
            if content.path(&rec.id).is_none_or(|p| !p.is_file()) {
                tracing::warn!(image = %rec.id, "skipping image whose config blob is missing");
                continue;
            }
            if rec.summary.is_none() {
                // A record from before summaries were kept: read the config once.
                match read_summary(&content, &rec.id) {
                    Ok(summary) => {
                        rec.summary = Some(summary);
                        match records.rewrite(&rec) {
                            Ok(()) => rewritten = true,
                            Err(e) => {
                                tracing::warn!(image = %rec.id, error = %e, "cannot add the config summary to the image record")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(image = %rec.id, error = %e, "skipping image whose config cannot be read");
                        continue;
                    }
                }
            }
            images.insert(rec.id.clone(), Arc::new(Loaded { record: rec }));
        }
        if rewritten {
            crate::fsutil::sync_filesystem(records.dir())?;
        }
        // A quarantined record's config blob (its file name) and the layer snapshots it lists
        // stay, for containers made from that image; everything else unused is collected.
        for id in quarantined {
            if let Ok(config) = content.read(&id).and_then(|b| parse_config(&b, &id)) {
                let diff_ids = config.0.rootfs().diff_ids().clone();
                keep_chains.extend(crate::snapshot::chain_ids(&diff_ids));
                keep_blobs.insert(id);
            }
        }
        let mut repos = Repositories::load(&data_root.join("repositories.json"))?;
        if repos.retain_ids(|id| images.contains_key(id)) {
            // Done again at the next open if it cannot be written now (a full disk).
            if let Err(e) = repos.save() {
                tracing::warn!(error = %e, "dropping references to missing images");
            }
        }
        let store = Store {
            root: data_root.to_path_buf(),
            content,
            snapshots,
            records,
            state: RwLock::new(State { images, repos }),
            write: Mutex::new(()),
            recent: Mutex::new(VecDeque::new()),
        };
        store.collect_garbage(&keep_chains, &keep_blobs)?;
        Ok(store)
    }

    fn collect_garbage(&self, chains: &HashSet<String>, blobs: &HashSet<String>) -> Result<()> {
        for c in self.snapshots.list()? {
            if !chains.contains(&c) {
                tracing::info!(snapshot = %c, "removing unreferenced snapshot");
                self.snapshots.remove(&c)?;
            }
        }
        for b in self.content.list()? {
            if !blobs.contains(&b) {
                tracing::info!(blob = %b, "removing unreferenced blob");
                self.content.remove(&b)?;
            }
        }
        Ok(())
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory holding the snapshots (`<data root>/snapshots`).
    pub fn snapshot_root(&self) -> PathBuf {
        self.snapshots.root().to_path_buf()
    }

    /// The data root the store was opened on.
    pub fn data_root(&self) -> &Path {
        &self.root
    }

    /// All images, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let mut out: Vec<ImageSummary> = {
            let st = self.read_state();
            st.images
                .values()
                .map(|l| (st.summary(l), l.summary().labels_in_config))
                .collect::<Vec<_>>()
        }
        .into_iter()
        .map(|(mut s, in_config)| {
            if in_config {
                self.fill_labels(&mut s);
            }
            s
        })
        .collect();
        let t = |i: &ImageSummary| crate::history::unix_seconds(i.created.as_deref());
        out.sort_by(|a, b| t(b).cmp(&t(a)).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The summary of one image (what listing shows), looked up like [`Store::get`] without
    /// reading its config.
    pub fn summary(&self, name_or_id: &str) -> Result<ImageSummary> {
        let (mut s, in_config) = {
            let st = self.read_state();
            let l = st.resolve(name_or_id)?;
            (st.summary(&l), l.summary().labels_in_config)
        };
        if in_config {
            self.fill_labels(&mut s);
        }
        Ok(s)
    }

    /// The id (`sha256:<hex>`) of the image a name or id refers to.
    pub fn resolve_id(&self, name_or_id: &str) -> Result<String> {
        Ok(self.loaded(name_or_id)?.record.id.clone())
    }

    /// Labels too large for the record, from the config.
    fn fill_labels(&self, s: &mut ImageSummary) {
        let read = self.content.read(&s.id).and_then(|b| {
            crate::record::config_labels(&b)
                .map_err(|e| Error::Corrupt(format!("image config {}: {e}", s.id)))
        });
        match read {
            Ok(labels) => s.labels = labels,
            Err(e) => {
                tracing::warn!(image = %s.id, error = %e, "cannot read the labels of an image")
            }
        }
    }

    /// Looks an image up by full reference, short name (`busybox` = `busybox:latest`),
    /// `sha256:<hex>`, full hex or a unique id prefix; its config is read from the content
    /// store.
    pub fn get(&self, name_or_id: &str) -> Result<Image> {
        let (l, names) = {
            let st = self.read_state();
            let l = st.resolve(name_or_id)?;
            let names = st.names_of(&l.record.id);
            (l, names)
        };
        let (config, json) = self.read_config(&l.record.id)?;
        Ok(image_of(&l, names, config, &json))
    }

    pub(crate) fn loaded(&self, name_or_id: &str) -> Result<Arc<Loaded>> {
        self.read_state().resolve(name_or_id)
    }

    /// An image's config from the content store: typed, and as JSON.
    pub(crate) fn read_config(&self, id: &str) -> Result<(ImageConfiguration, serde_json::Value)> {
        parse_config(&self.content.read(id)?, id)
    }

    /// An image's config as JSON: one of the recent ones, else from the content store.
    pub(crate) fn config_json(&self, id: &str) -> Result<Arc<serde_json::Value>> {
        let hit = self
            .lock_recent()
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v.clone());
        if let Some(v) = hit {
            return Ok(v);
        }
        let v: serde_json::Value = serde_json::from_slice(&self.content.read(id)?)
            .map_err(|e| Error::Corrupt(format!("image config {id} is not valid JSON: {e}")))?;
        let v = Arc::new(v);
        self.remember_config(id, v.clone());
        Ok(v)
    }

    /// Keeps `config` among the recent configs, dropping the oldest.
    pub(crate) fn remember_config(&self, id: &str, config: Arc<serde_json::Value>) {
        let mut recent = self.lock_recent();
        recent.retain(|(k, _)| k != id);
        if recent.len() == RECENT_CONFIGS {
            recent.pop_front();
        }
        recent.push_back((id.to_string(), config));
    }

    fn lock_recent(&self) -> MutexGuard<'_, VecDeque<(String, Arc<serde_json::Value>)>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The raw config blob of an image.
    pub fn config_blob(&self, name_or_id: &str) -> Result<Vec<u8>> {
        let l = self.loaded(name_or_id)?;
        self.content.read(&l.record.id)
    }

    /// The manifest of an image: `(bytes, media type)`.
    pub fn manifest(&self, name_or_id: &str) -> Result<(Vec<u8>, String)> {
        let l = self.loaded(name_or_id)?;
        let bytes = self.content.read(&l.record.manifest_digest)?;
        Ok((bytes, l.record.manifest_media_type.clone()))
    }

    /// Path of a blob in the content store, if it is there.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        self.content.path(digest).filter(|p| p.is_file())
    }

    /// Tags `source` as `target` (default tag `latest`); an existing tag moves.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let _w = self.lock_writes();
        let r = crate::reference::parse_tag_target(target)?;
        let mut st = self.write_state();
        let id = st.resolve(source)?.record.id.clone();
        let old = st.repos.get(&r).cloned();
        st.repos.set(r.clone(), &id);
        if let Err(e) = st.repos.save() {
            match old {
                Some(o) => st.repos.set(r, &o),
                None => {
                    st.repos.remove(&r);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Records `repo@digest` for an image (after a push, as Docker does); an existing one moves.
    pub fn add_digest_reference(&self, image: &str, r: &Reference) -> Result<()> {
        if r.digest().is_none() || r.tag().is_some() {
            return Err(Error::InvalidInput(format!(
                "{}: a repository digest reference has a digest and no tag",
                r.familiar()
            )));
        }
        let _w = self.lock_writes();
        let mut st = self.write_state();
        let id = st.resolve(image)?.record.id.clone();
        let old = st.repos.get(r).cloned();
        st.repos.set(r.clone(), &id);
        if let Err(e) = st.repos.save() {
            match old {
                Some(o) => st.repos.set(r.clone(), &o),
                None => {
                    st.repos.remove(r);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Overlay lower dirs of an image, top layer first; snapshots that are missing are
    /// unpacked again from their blobs.
    pub fn rootfs_layers(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        let l = self.loaded(image_id)?;
        let missing = l
            .record
            .layers
            .iter()
            .any(|x| !self.snapshots.exists(&x.chain_id));
        if missing {
            let _w = self.lock_writes();
            for layer in l.record.layers.iter() {
                if self.snapshots.exists(&layer.chain_id) {
                    continue;
                }
                tracing::info!(layer = %layer.digest, "re-unpacking a missing snapshot");
                let what = format!("layer {}", layer.digest);
                let tmp = self.snapshots.prepare()?;
                let blob = self.content.open_blob(&layer.digest)?;
                let stats = crate::unpack::unpack_layer(
                    &mut std::io::BufReader::new(blob),
                    &tmp.fs_dir(),
                    &what,
                )?;
                if stats.diff_id != layer.diff_id {
                    return Err(Error::Corrupt(format!(
                        "{what} unpacks to diff id {}, expected {}",
                        stats.diff_id, layer.diff_id
                    )));
                }
                self.snapshots.commit(tmp, &layer.chain_id)?;
            }
        }
        l.record
            .layers
            .iter()
            .rev()
            .map(|x| self.snapshots.fs_path(&x.chain_id))
            .collect()
    }
}

/// Disk use of one image, as `system df` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    pub id: String,
    /// Unpacked size of all its layers.
    pub size: u64,
    /// The part of `size` in layers another image uses too.
    pub shared_size: u64,
}

/// Disk use of the image store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Unpacked size of every distinct layer (each counted once), Docker's `LayersSize`.
    pub layers_size: u64,
    pub images: Vec<ImageUsage>,
}

impl Store {
    /// What the images take on disk, with the sizes shared between images worked out.
    pub fn disk_usage(&self) -> DiskUsage {
        let st = self.read_state();
        let mut users: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
        for l in st.images.values() {
            for layer in l.record.layers.iter() {
                let e = users
                    .entry(layer.chain_id.as_str())
                    .or_insert((layer.unpacked_size, 0));
                e.1 += 1;
            }
        }
        let images = st
            .images
            .values()
            .map(|l| ImageUsage {
                id: l.record.id.clone(),
                size: l.record.size(),
                shared_size: l
                    .record
                    .layers
                    .iter()
                    .filter(|x| users.get(x.chain_id.as_str()).is_some_and(|u| u.1 > 1))
                    .map(|x| x.unpacked_size)
                    .sum(),
            })
            .collect();
        DiskUsage {
            layers_size: users.values().map(|u| u.0).sum(),
            images,
        }
    }
}

/// The summary of the config blob `id` (one config in memory at a time).
fn read_summary(content: &ContentStore, id: &str) -> Result<ConfigSummary> {
    ConfigSummary::from_slice(&content.read(id)?)
        .map_err(|e| Error::Corrupt(format!("image config {id}: {e}")))
}

/// A list of strings under `config.<key>` of an image config, when present and not empty.
fn docker_list(config: &serde_json::Value, key: &str) -> Option<Vec<String>> {
    config
        .get("config")
        .and_then(|c| c.get(key))
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .filter(|v| !v.is_empty())
}
