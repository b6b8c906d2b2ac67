//! berth's volume service: named and anonymous volumes behind drivers (the `local` driver:
//! `<data-root>/volumes/<name>/_data` with a JSON record beside it, or a mount made from its
//! `type`/`device`/`o` options), the containers that reference each one (by id string),
//! copy-up from an image directory the caller opened, and the pure planning of a container's
//! mount points and their OCI form. It never depends on the daemon or sees a container
//! record, and emits no events: the daemon does that after its calls.

mod copyup;
pub mod driver;
mod error;
pub mod oci;
pub mod plan;
mod service;
mod util;

pub use copyup::OwnerMap;
pub use driver::{Driver, Local};
pub use error::{Error, Kind, Result};
pub use oci::{depth, oci_mounts, view};
pub use plan::{
    parse_bind, parse_mount, parse_volumes_from, plan, MountPoint, Plan, PlanRequest, Planned,
    Request, VolumesFrom, BIND, TMPFS, VOLUME,
};
pub use service::{
    check_name, CopyUps, Meta, Realized, Unrealized, VolumeService, ANONYMOUS_LABEL, MAX_NAME_LEN,
};
