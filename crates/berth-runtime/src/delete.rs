//! `delete`: kill what is left (created containers always; running ones with force), remove
//! the cgroups and the state directory. Deleting an unknown container succeeds.

use std::fs;
use std::io;
use std::path::Path;

use crate::create::load_spec;
use crate::error::{Error, Result};
use crate::hooks;
use crate::kill::kill_and_wait;
use crate::state::{self, Record, Status};

pub(crate) fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    state::validate_id(id)?;
    let dir = state::dir(root, id);
    let rec = match Record::load(root, id) {
        Ok(r) => r,
        Err(Error::NotFound(_)) => {
            // Nothing recorded; a directory left by an interrupted create goes too.
            return match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", dir, e)),
                _ => Ok(()),
            };
        }
        Err(e) => return Err(e),
    };
    let status = rec.status(root);
    match status {
        Status::Stopped | Status::Created => {}
        Status::Running | Status::Paused if !force => {
            return Err(Error::InvalidState {
                id: id.into(),
                status: status.as_str().into(),
                op: "delete without force",
            })
        }
        Status::Running | Status::Paused => {}
    }
    // Also catches processes left behind by a stopped container without a pid namespace.
    kill_and_wait(&rec)?;
    if let Some(cg) = &rec.cgroup {
        cg.remove()?;
    }
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io("remove", dir, e)),
        _ => {}
    }
    if rec.poststop {
        // Poststop failures are warnings: the container is gone either way.
        let st = hooks::state_json(id, "stopped", rec.pid, &rec.bundle, &rec.annotations);
        let r = load_spec(&rec.bundle).and_then(|s| {
            hooks::run(
                "poststop",
                s.hooks().as_ref().and_then(|h| h.poststop().as_ref()),
                &st,
            )
        });
        if let Err(e) = r {
            eprintln!("berth-runtime: warning: {e}");
        }
    }
    Ok(())
}
