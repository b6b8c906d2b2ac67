//! `docker rmi` and `docker image prune` with Docker's semantics: untag vs delete, forced
//! and unforced conflicts, pruning of untagged parents, and removal of the blobs and
//! snapshots no remaining image uses.

use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::store::Store;
use std::collections::HashSet;

/// One line of `docker rmi` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteItem {
    /// A reference was removed (`Untagged: busybox:latest`).
    Untagged(String),
    /// An image or layer was removed (`Deleted: sha256:...`).
    Deleted(String),
}

const CONFLICT_CHILD: u8 = 1;
const CONFLICT_RUNNING: u8 = 2;
const CONFLICT_REFERENCE: u8 = 4;
const CONFLICT_HARD: u8 = CONFLICT_CHILD | CONFLICT_RUNNING;
const CONFLICT_SOFT: u8 = CONFLICT_REFERENCE;

struct Conflict {
    id: String,
    hard: bool,
    used: bool,
    message: String,
}

impl Conflict {
    fn into_error(self) -> Error {
        Error::Conflict(format!(
            "conflict: unable to delete {} ({}) - {}",
            short_id(&self.id),
            if self.hard {
                "cannot be forced"
            } else {
                "must be forced"
            },
            self.message
        ))
    }
}

/// The 12-hex-digit id Docker shows.
pub(crate) fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Docker's `isImageIDPrefix`.
fn is_id_prefix(id: &str, input: &str) -> bool {
    if id.starts_with(input) {
        return true;
    }
    match id.split_once(':') {
        Some((_, hex)) => hex.starts_with(input),
        None => false,
    }
}

/// Docker's `isSingleReference`: all references in one repository and at most one tag.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut single: Option<&Reference> = None;
    let mut canonical: HashSet<String> = HashSet::new();
    for r in refs {
        if r.digest().is_some() {
            canonical.insert(r.name());
        } else if single.is_none() {
            single = Some(r);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&refs[0]);
    canonical.len() == 1 && canonical.contains(&single.name())
}

impl Store {
    /// Removes a reference or an image like `docker rmi`. `in_use(image id)` tells whether
    /// a container uses the image; such an image is never deleted (a hard conflict).
    pub fn delete(
        &self,
        name_or_id: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<DeleteItem>> {
        self.delete_with(name_or_id, force, true, in_use)
    }

    /// [`Store::delete`] that, with `prune_parents` false (`rmi --no-prune`), leaves untagged
    /// parent images in place.
    pub fn delete_with(
        &self,
        name_or_id: &str,
        force: bool,
        prune_parents: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<DeleteItem>> {
        let _w = self.lock_writes();
        let mut freed = 0;
        self.delete_locked(name_or_id, force, prune_parents, in_use, &mut freed)
    }

    /// Removes dangling images (all unused images with `all`) like `docker image prune`;
    /// returns what was removed and the bytes freed (blobs and unpacked layers).
    pub fn prune(
        &self,
        all: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<DeleteItem>, u64)> {
        let _w = self.lock_writes();
        let candidates: Vec<(String, Vec<Reference>)> = {
            let st = self.read_state();
            st.images
                .keys()
                .filter_map(|id| {
                    let refs = st.repos.refs_of(id);
                    if !all && !refs.is_empty() {
                        return None;
                    }
                    // Untagged intermediate images go with their children.
                    if refs.is_empty() && !st.children(id).is_empty() {
                        return None;
                    }
                    if in_use(id) {
                        return None;
                    }
                    Some((id.clone(), refs))
                })
                .collect()
        };
        let mut items = Vec::new();
        let mut freed = 0u64;
        for (id, refs) in candidates {
            if !self.read_state().images.contains_key(&id) {
                continue;
            }
            let targets: Vec<String> = if refs.is_empty() {
                vec![id.clone()]
            } else {
                refs.iter().map(|r| r.to_string()).collect()
            };
            for t in targets {
                match self.delete_locked(&t, false, true, in_use, &mut freed) {
                    Ok(mut v) => items.append(&mut v),
                    Err(e) => {
                        tracing::debug!(image = %id, error = %e, "prune: skipping image");
                        break;
                    }
                }
            }
        }
        Ok((items, freed))
    }

    fn delete_locked(
        &self,
        input: &str,
        force: bool,
        prune_parents: bool,
        in_use: &dyn Fn(&str) -> bool,
        freed: &mut u64,
    ) -> Result<Vec<DeleteItem>> {
        let (id, mut refs) = {
            let st = self.read_state();
            let l = st.resolve(input)?;
            (l.record.id.clone(), st.repos.refs_of(&l.record.id))
        };
        let mut items = Vec::new();
        let mut quiet = false;
        if !is_id_prefix(&id, input) {
            // A reference was given: remove it first.
            if !force && is_single_reference(&refs) && in_use(&id) {
                return Err(Error::Conflict(format!(
                    "conflict: unable to remove repository reference {input:?} (must force) - container is using its referenced image {}",
                    short_id(&id)
                )));
            }
            let parsed = Reference::parse(input)?;
            let parsed = match parsed.digest() {
                Some(d) => parsed.with_digest(d),
                None => parsed.with_default_tag(),
            };
            let mut removed = vec![parsed.clone()];
            refs.retain(|r| r != &parsed);
            if parsed.digest().is_none() {
                let tag_left = refs
                    .iter()
                    .any(|r| r.digest().is_none() && r.name() == parsed.name());
                if !tag_left {
                    // No tag left in that repository: its digest references go too.
                    let (same, rest): (Vec<Reference>, Vec<Reference>) = refs
                        .into_iter()
                        .partition(|r| r.digest().is_some() && r.name() == parsed.name());
                    removed.extend(same);
                    refs = rest;
                }
            }
            self.remove_refs(&removed)?;
            items.extend(removed.iter().map(|r| DeleteItem::Untagged(r.familiar())));
            if !refs.is_empty() {
                return Ok(items);
            }
            quiet = true;
        } else if is_single_reference(&refs) {
            let mut mask = CONFLICT_HARD;
            if !force {
                mask |= CONFLICT_SOFT & !CONFLICT_REFERENCE;
            }
            if let Some(c) = self.conflict(&id, mask, in_use) {
                return Err(c.into_error());
            }
            self.remove_refs(&refs)?;
            items.extend(refs.iter().map(|r| DeleteItem::Untagged(r.familiar())));
        }
        self.delete_image(&id, &mut items, force, prune_parents, quiet, in_use, freed)?;
        Ok(items)
    }

    fn conflict(&self, id: &str, mask: u8, in_use: &dyn Fn(&str) -> bool) -> Option<Conflict> {
        let st = self.read_state();
        if mask & CONFLICT_CHILD != 0 && !st.children(id).is_empty() {
            return Some(Conflict {
                id: id.to_string(),
                hard: true,
                used: false,
                message: "image has dependent child images".to_string(),
            });
        }
        if mask & CONFLICT_RUNNING != 0 && in_use(id) {
            return Some(Conflict {
                id: id.to_string(),
                hard: true,
                used: true,
                message: "image is being used by a container".to_string(),
            });
        }
        if mask & CONFLICT_REFERENCE != 0 && !st.repos.refs_of(id).is_empty() {
            return Some(Conflict {
                id: id.to_string(),
                hard: false,
                used: false,
                message: "image is referenced in multiple repositories".to_string(),
            });
        }
        None
    }

    fn remove_refs(&self, refs: &[Reference]) -> Result<()> {
        if refs.is_empty() {
            return Ok(());
        }
        let mut repos = self.read_state().repos.clone();
        for r in refs {
            repos.remove(r);
        }
        repos.save()?;
        self.write_state().repos = repos;
        Ok(())
    }

    /// Docker's `imageDeleteHelper`.
    #[allow(clippy::too_many_arguments)]
    fn delete_image(
        &self,
        id: &str,
        items: &mut Vec<DeleteItem>,
        force: bool,
        prune_parent: bool,
        quiet: bool,
        in_use: &dyn Fn(&str) -> bool,
        freed: &mut u64,
    ) -> Result<()> {
        let mut mask = CONFLICT_HARD;
        if !force {
            mask |= CONFLICT_SOFT;
        }
        if let Some(c) = self.conflict(id, mask, in_use) {
            // Docker's imageIsDangling: no reference and no child image.
            let dangling = {
                let st = self.read_state();
                st.repos.refs_of(id).is_empty() && st.children(id).is_empty()
            };
            if quiet && (!dangling || c.used) {
                return Ok(());
            }
            return Err(c.into_error());
        }
        let Some(loaded) = self.read_state().images.get(id).cloned() else {
            return Ok(());
        };
        let refs = self.read_state().repos.refs_of(id);
        self.remove_refs(&refs)?;
        items.extend(refs.iter().map(|r| DeleteItem::Untagged(r.familiar())));

        self.records.remove(id)?;
        let (used_chains, used_blobs) = {
            let mut st = self.write_state();
            st.images.remove(id);
            let chains: HashSet<String> = st
                .images
                .values()
                .flat_map(|l| l.record.layers.iter().map(|x| x.chain_id.clone()))
                .collect();
            let blobs: HashSet<String> = st
                .images
                .values()
                .flat_map(|l| l.record.blobs().map(str::to_string).collect::<Vec<_>>())
                .collect();
            (chains, blobs)
        };
        items.push(DeleteItem::Deleted(id.to_string()));
        let mut seen = HashSet::new();
        for layer in loaded.record.layers.iter().rev() {
            if used_chains.contains(&layer.chain_id) || !seen.insert(layer.chain_id.clone()) {
                continue;
            }
            self.snapshots.remove(&layer.chain_id)?;
            *freed += layer.unpacked_size;
            items.push(DeleteItem::Deleted(layer.chain_id.clone()));
        }
        let mut seen = HashSet::new();
        for b in loaded.record.blobs() {
            if used_blobs.contains(b) || !seen.insert(b.to_string()) {
                continue;
            }
            if let Ok(sz) = self.content.size(b) {
                *freed += sz;
            }
            self.content.remove(b)?;
        }
        if let (true, Some(parent)) = (prune_parent, loaded.record.parent.as_deref()) {
            if self.read_state().images.contains_key(parent) {
                return self.delete_image(parent, items, false, true, true, in_use, freed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap().with_default_tag()
    }

    #[test]
    fn single_reference_rules() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(!is_single_reference(&[]));
        assert!(is_single_reference(&[r("busybox")]));
        assert!(!is_single_reference(&[r("busybox:1"), r("busybox:2")]));
        assert!(is_single_reference(&[
            r("busybox:1"),
            Reference::parse(&format!("busybox@{d}")).unwrap()
        ]));
        assert!(!is_single_reference(&[
            r("busybox:1"),
            Reference::parse(&format!("other@{d}")).unwrap()
        ]));
    }

    #[test]
    fn id_prefixes() {
        let id = format!("sha256:{}", "ab".repeat(32));
        assert!(is_id_prefix(&id, "abab"));
        assert!(is_id_prefix(&id, "sha256:ab"));
        assert!(!is_id_prefix(&id, "busybox"));
        assert_eq!(short_id(&id), "abababababab");
    }
}
