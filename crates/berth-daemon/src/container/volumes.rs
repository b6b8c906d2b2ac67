//! The container service's glue to the volume service (berth-volume): it resolves
//! `--volumes-from` containers, opens the image directories that copy-up fills volumes from,
//! emits the volume events after the service's calls, and maps its errors. The volumes, their
//! references and the planning rules are the service's; nothing here keeps volume state.

use super::handle::Container;
use super::service::Service;
use crate::error::{Error, Result};
use berth_api::container::{Config, HostConfig};
use berth_volume::{CopyUps, MountPoint, Plan, PlanRequest, VolumesFrom};
use serde_json::Value;
use std::os::fd::AsFd;
use std::path::Path;

/// Work out a new container's mount points (nothing is created yet), the containers of
/// `--volumes-from` looked up here.
pub fn plan(d: &Service, config: &Config, host: &HostConfig) -> Result<Plan> {
    let mut volumes_from = Vec::new();
    for spec in host.volumes_from.iter().flatten() {
        let (id, mode) = berth_volume::parse_volumes_from(spec)?;
        volumes_from.push(VolumesFrom {
            mode: mode.to_string(),
            mounts: d.find(id)?.snapshot().mounts,
        });
    }
    Ok(berth_volume::plan(&PlanRequest {
        volumes_from,
        binds: host.binds.clone().unwrap_or_default(),
        mounts: host.mounts.clone().unwrap_or_default(),
        volumes: config
            .volumes
            .iter()
            .flatten()
            .map(|(v, _)| v.clone())
            .collect(),
        tmpfs: host
            .tmpfs
            .iter()
            .flatten()
            .map(|(t, _)| t.clone())
            .collect(),
    })?)
}

/// Create or reference the volumes of planned mount points for container `cid`. Returns the
/// mount points and the (volume, destination) pairs to fill from the image. On an error,
/// what was done is undone.
pub fn realize(d: &Service, cid: &str, plans: Plan) -> Result<(Vec<MountPoint>, CopyUps)> {
    match d.volumes.realize(cid, plans) {
        Ok(r) => {
            for name in &r.created {
                d.events.volume_event("create", name);
            }
            Ok((r.mounts, r.copies))
        }
        Err(u) => {
            for name in &u.created {
                d.events.volume_event("create", name);
            }
            undo(d, cid, &u.mounts);
            Err(u.error.into())
        }
    }
}

/// A container's create failed or it is removed with its anonymous volumes (`rm -v`, `--rm`):
/// drop its references and remove the anonymous volumes made for it that no other container
/// uses (their files are deleted on a blocking thread of the runtime).
pub fn undo(d: &Service, cid: &str, mounts: &[MountPoint]) {
    d.volumes.release(cid);
    for (name, dir) in d.volumes.remove_anonymous(mounts) {
        d.events.volume_event("destroy", &name);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir));
    }
}

/// Fill each (volume, destination) pair's volume from the image, if the volume is empty. The
/// container is stopped (being created, its op lock held): its root is mounted for this, and
/// each image directory is opened beneath it, a final symlink not followed.
pub fn populate(d: &Service, c: &Container, copies: &CopyUps) -> Result<()> {
    let remap = d.remap_of(&c.rec()).map(|r| r.ids.clone());
    let map = |uid, gid| match &remap {
        Some(r) => r.host_owner(uid, gid),
        None => (uid, gid),
    };
    let owner: Option<berth_volume::OwnerMap<'_>> = remap.as_ref().map(|_| &map as _);
    super::rootfs::with_root(d, c, false, |root| {
        let mut res = Ok(());
        for (name, dst) in copies {
            let failed = |e: String| {
                Error::internal(format!("copying the image's {dst} into volume {name}: {e}"))
            };
            res = d
                .volumes
                .activate(name, &c.id)
                .map_err(Error::from)
                .and_then(|()| {
                    let src = match root.open_at(
                        Path::new(dst),
                        rustix::fs::OFlags::RDONLY
                            | rustix::fs::OFlags::DIRECTORY
                            | rustix::fs::OFlags::NOFOLLOW,
                    ) {
                        Ok(fd) => fd,
                        // Not in the image, or not a directory (a symlink is not followed):
                        // nothing to copy.
                        Err(berth_image::Error::NotFound(_)) => return Ok(()),
                        Err(e) => return Err(failed(e.to_string())),
                    };
                    d.volumes
                        .copy_up(name, src.as_fd(), owner)
                        .map_err(|e| failed(e.to_string()))
                });
            if res.is_err() {
                break;
            }
        }
        d.volumes.deactivate(&c.id);
        res
    })
}

/// Mount the volumes of a starting container that need it.
pub fn activate(d: &Service, rec: &super::Record) -> Result<()> {
    Ok(d.volumes.activate_mounts(&rec.id, &rec.mounts)?)
}

/// The OCI mounts of a container's volumes, binds and tmpfs mounts, by destination.
pub fn oci_mounts(d: &Service, rec: &super::Record) -> Result<Vec<(String, Value)>> {
    let data_dir = |name: &str| d.volumes.data_dir(name);
    Ok(berth_volume::oci_mounts(
        &rec.mounts,
        rec.host_config.tmpfs.as_ref(),
        &data_dir,
    )?)
}

/// `Mounts` of container inspect and list.
pub fn view(d: &Service, rec: &super::Record) -> Vec<Value> {
    berth_volume::view(&rec.mounts, &|name: &str| d.volumes.data_dir(name))
}
