//! `pause` / `resume`: freeze and thaw the container's cgroup.

use std::path::Path;

use crate::error::{Error, Result};
use crate::state::{Record, Status};

fn cgroup_of(rec: &Record) -> Result<&crate::cgroups::Cgroup> {
    rec.cgroup
        .as_ref()
        .ok_or_else(|| Error::Config(format!("container {} has no cgroup", rec.id)))
}

pub(crate) fn pause(root: &Path, id: &str) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if status != Status::Running && status != Status::Created {
        return Err(Error::InvalidState {
            id: id.into(),
            status: status.as_str().into(),
            op: "pause",
        });
    }
    cgroup_of(&rec)?.set_frozen(true)
}

pub(crate) fn resume(root: &Path, id: &str) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if status != Status::Paused {
        return Err(Error::InvalidState {
            id: id.into(),
            status: status.as_str().into(),
            op: "resume",
        });
    }
    cgroup_of(&rec)?.set_frozen(false)
}
