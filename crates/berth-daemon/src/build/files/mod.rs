//! Files for COPY/ADD: resolving sources in the context (globs), digesting them for the cache,
//! copying them (or another image's files) into a staging dir that becomes the step's layer,
//! ADD's tar extraction and URL download, and lookups in an image's stacked layers. An
//! image's layers and the staging dir of `COPY --from` are walked by file descriptors from
//! their top ([`Root`]), with `*at` calls that never follow a symlink found there.
//!
//! - `at`: entries reached by descriptors ([`At`]), the staging dir's paths, `--chown`/`--chmod`;
//! - `view`: an image's stacked layers ([`View`]): lookups, globs, `COPY --from`;
//! - `context`: sources in the build context: globs, digests, copies into the staging dir;
//! - `archive`: ADD's local tar extraction and URL download.
//!
//! These are file operations only: nothing here knows the builder's state, the image store or
//! containers.

mod archive;
mod at;
mod context;
mod view;

pub use archive::{download, extract_archive, is_archive};
pub use at::{apply_perms, staged};
pub use context::{copy_in, digest_sources, mkdirs, parse_chmod, resolve_sources};
pub use view::View;

/// How copied entries are owned and moded.
#[derive(Clone, Copy)]
pub struct Perms {
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
}
