//! `docker history`: the config's history entries, newest first, with layer sizes and the
//! ids/tags of the image and its committed parents, like the Engine API.

use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::store::Store;

/// One entry of `GET /images/{name}/history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The image id for the top entry (and for entries that are a parent image's top),
    /// `<missing>` otherwise.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    /// Familiar tag references of the image with `id`.
    pub tags: Vec<String>,
    /// Bytes the entry's layer adds (0 for empty layers).
    pub size: i64,
    pub comment: String,
}

/// Go's zero time in Unix seconds (`0001-01-01T00:00:00Z`), what Docker reports for a
/// missing timestamp.
const GO_ZERO_TIME: i64 = -62_135_596_800;

pub(crate) fn unix_seconds(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| t.unix_timestamp())
        .unwrap_or(GO_ZERO_TIME)
}

impl Store {
    /// The history of an image, newest entry first.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryItem>> {
        let top = self.loaded(name_or_id)?;
        let (config, _) = self.read_config(&top.record.id)?;
        let mut out = Vec::new();
        let mut layer = 0usize;
        let empty = Vec::new();
        for h in config.history().as_ref().unwrap_or(&empty) {
            let mut size = 0i64;
            if !h.empty_layer().unwrap_or(false) {
                let rec = top.record.layers.get(layer).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "image {}: too many non-empty layers in the history section",
                        top.record.id
                    ))
                })?;
                size = i64::try_from(rec.unpacked_size).unwrap_or(i64::MAX);
                layer += 1;
            }
            out.push(HistoryItem {
                id: "<missing>".to_string(),
                created: unix_seconds(h.created().as_deref()),
                created_by: h.created_by().clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment().clone().unwrap_or_default(),
            });
        }
        out.reverse();
        // The top entry is the image; walking down, each parent image's top entry.
        let st = self.read_state();
        let mut current = Some(top.record.id.clone());
        for item in out.iter_mut() {
            let Some(id) = current.take() else { break };
            item.id = id.clone();
            item.tags = st
                .repos
                .refs_of(&id)
                .iter()
                .filter(|r| r.tag().is_some() && r.digest().is_none())
                .map(Reference::familiar)
                .collect();
            current = st.images.get(&id).and_then(|l| l.record.parent.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(unix_seconds(Some("1970-01-01T00:00:10Z")), 10);
        assert_eq!(
            unix_seconds(Some("2023-11-14T22:13:20.123456789Z")),
            1_700_000_000
        );
        assert_eq!(unix_seconds(None), GO_ZERO_TIME);
        assert_eq!(unix_seconds(Some("garbage")), GO_ZERO_TIME);
    }
}
