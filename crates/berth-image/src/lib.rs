//! berth-image: the local image store — content-addressed blobs, layer snapshots in overlay
//! format shared between images, Docker-style names, import/load/save, commit/diff/history,
//! and safe tar extraction for `docker cp`.

pub mod archive;
mod changes;
mod commit;
mod content;
mod delete;
mod diff;
mod digest;
mod docker_archive;
mod error;
mod fsutil;
mod history;
mod idmap;
mod import;
mod ingest;
mod inroot;
mod load;
mod manifest;
mod oci_layout;
mod pull;
mod record;
pub mod reference;
mod register;
mod repositories;
mod save;
mod snapshot;
mod store;
mod tartail;
mod tarwrite;
mod unpack;

pub use changes::apply_changes;
pub use commit::CommitOptions;
pub use delete::DeleteItem;
pub use diff::{diff_dirs, Change};
pub use error::{Error, Result};
pub use history::HistoryItem;
pub use idmap::{IdMap, IdMappings};
pub use import::ImportOptions;
pub use pull::{config_diff_ids, FetchedLayer, PullLayer};
pub use store::{DiskUsage, Image, ImageSummary, ImageUsage, Store};

#[cfg(test)]
mod tests {
    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Store>();
        check::<super::Image>();
        check::<super::ImageSummary>();
    }
}
