//! `docker save`: one archive that is both a docker-archive (`manifest.json`,
//! `repositories`) and an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`),
//! like Docker 25+ writes.

use crate::digest::{is_hex64, sha256_hex, SHA256_PREFIX};
use crate::docker_archive::manifest_json;
use crate::error::{Error, IoContext, Result};
use crate::history::unix_seconds;
use crate::manifest::{ArchiveItem, Descriptor, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::oci_layout::{index_json, OCI_LAYOUT};
use crate::reference::Reference;
use crate::store::{Loaded, State, Store};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::sync::Arc;

/// Images to save, in order, with the tags each is saved under.
fn select(st: &State, names: &[String]) -> Result<Vec<(Arc<Loaded>, Vec<Reference>)>> {
    let mut out: Vec<(Arc<Loaded>, Vec<Reference>)> = Vec::new();
    let mut add = |l: Arc<Loaded>, r: Option<Reference>| {
        let slot = match out.iter().position(|(x, _)| x.record.id == l.record.id) {
            Some(i) => i,
            None => {
                out.push((l, Vec::new()));
                out.len() - 1
            }
        };
        if let Some(r) = r {
            if !out[slot].1.contains(&r) {
                out[slot].1.push(r);
            }
        }
    };
    for name in names {
        if sha256_hex(name).is_some() || is_hex64(name) {
            add(st.resolve(name)?, None);
            continue;
        }
        match Reference::parse(name) {
            Ok(r) if r.is_name_only() => {
                // A bare repository name saves all its tags (Docker).
                let tagged: Vec<(Reference, String)> = st
                    .repos
                    .by_name(&r.name())
                    .into_iter()
                    .filter(|(r, _)| r.digest().is_none())
                    .collect();
                if tagged.is_empty() {
                    add(st.resolve(name)?, None);
                }
                for (r, id) in tagged {
                    if let Some(l) = st.images.get(&id) {
                        add(l.clone(), Some(r));
                    }
                }
            }
            Ok(r) if r.digest().is_some() => add(st.resolve(name)?, None),
            Ok(r) => {
                let l = st.resolve(name)?;
                let tagged = st.repos.get(&r).is_some_and(|id| *id == l.record.id);
                add(l, tagged.then_some(r));
            }
            Err(_) => add(st.resolve(name)?, None),
        }
    }
    Ok(out)
}

fn header(size: u64, mode: u32, mtime: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h
}

impl Store {
    /// Writes the named images (references or ids) as one archive that `docker load`
    /// reads and that is also an OCI image layout.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        if names.is_empty() {
            return Err(Error::InvalidInput("save: no images given".to_string()));
        }
        // Open every blob under the write lock: an open file stays readable even if a
        // deletion unlinks it meanwhile, so the (slow) streaming needs no lock.
        let (images, blobs) = {
            let _w = self.lock_writes();
            let images = select(&self.read_state(), names)?;
            let mut seen: HashSet<String> = HashSet::new();
            let mut blobs = Vec::new();
            for (l, _) in &images {
                for digest in l.record.blobs() {
                    if seen.insert(digest.to_string()) {
                        let file = self.content.open_blob(digest)?;
                        let size = file
                            .metadata()
                            .ctx(|| format!("inspecting blob {digest}"))?
                            .len();
                        blobs.push((digest.to_string(), file, size));
                    }
                }
            }
            (images, blobs)
        };
        let mtime = images
            .iter()
            .map(|(l, _)| unix_seconds(l.summary().created.as_deref()))
            .max()
            .map(|t| u64::try_from(t).unwrap_or(0))
            .unwrap_or(0);
        let mut tw = tar::Builder::new(out);
        let ctx = |what: &str| format!("save: writing {what}");
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = header(0, 0o755, mtime, tar::EntryType::Directory);
            tw.append_data(&mut h, dir, io::empty()).ctx(|| ctx(dir))?;
        }
        for (digest, file, size) in blobs {
            let path = format!("blobs/sha256/{}", &digest[SHA256_PREFIX.len()..]);
            let mut h = header(size, 0o644, mtime, tar::EntryType::Regular);
            tw.append_data(&mut h, &path, io::Read::take(file, size))
                .ctx(|| ctx(&path))?;
        }
        let mut items = Vec::new();
        let mut descs = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (l, tags) in &images {
            let rec = &l.record;
            let blob_path = |d: &str| format!("blobs/sha256/{}", &d[SHA256_PREFIX.len()..]);
            items.push(ArchiveItem {
                config: blob_path(&rec.id),
                repo_tags: if tags.is_empty() {
                    None
                } else {
                    Some(tags.iter().map(Reference::familiar).collect())
                },
                layers: rec.layers.iter().map(|x| blob_path(&x.digest)).collect(),
            });
            let base = Descriptor::new(
                &rec.manifest_media_type,
                &rec.manifest_digest,
                rec.manifest_size,
            );
            if tags.is_empty() {
                descs.push(base.clone());
            }
            for t in tags {
                let mut d = base.clone();
                let mut ann = BTreeMap::new();
                ann.insert(ANNOTATION_IMAGE_NAME.to_string(), t.to_string());
                ann.insert(
                    ANNOTATION_REF_NAME.to_string(),
                    t.tag().unwrap_or("latest").to_string(),
                );
                d.annotations = Some(ann);
                descs.push(d);
                if let (Some(tag), Some(top)) = (t.tag(), rec.layers.last()) {
                    repositories.entry(t.familiar_name()).or_default().insert(
                        tag.to_string(),
                        top.digest[SHA256_PREFIX.len()..].to_string(),
                    );
                }
            }
        }
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            ("index.json", index_json(descs)),
            ("manifest.json", manifest_json(&items)),
            ("oci-layout", OCI_LAYOUT.to_vec()),
        ];
        if !repositories.is_empty() {
            files.push((
                "repositories",
                serde_json::to_vec(&repositories).unwrap_or_default(),
            ));
        }
        for (name, data) in files {
            let mut h = header(data.len() as u64, 0o644, mtime, tar::EntryType::Regular);
            tw.append_data(&mut h, name, &data[..]).ctx(|| ctx(name))?;
        }
        tw.finish().ctx(|| ctx("the end of the archive"))?;
        Ok(())
    }
}
