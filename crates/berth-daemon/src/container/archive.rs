//! The container service's file operations: stat, read (tar) and write (untar) a path of a
//! container's filesystem (`docker cp`), export, changes, commit and top. Everything is reached
//! through file descriptors beneath the container's root. The API layer only parses requests
//! and streams bodies; it must not open container roots itself. This module never touches the
//! container's networks, and mounts its volumes only through `rootfs`, for one operation.

use super::handle::Container;
use super::rootfs::{open_root, with_root};
use super::service::Service;
use super::{status, Record};
use crate::error::{Error, Result};
use berth_image::archive::Root;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Run a filesystem operation on a blocking thread with the container's op lock held.
async fn blocking<T: Send + 'static>(
    d: &Arc<Service>,
    c: &Arc<Container>,
    f: impl FnOnce(&Service, &Container) -> Result<T> + Send + 'static,
) -> Result<T> {
    let _op = c.op.lock().await;
    let (d2, c2) = (d.clone(), c.clone());
    tokio::task::spawn_blocking(move || f(&d2, &c2))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}

/// Run `f` (on a blocking thread) with the container's `/` open. The op lock is held while
/// the root is opened, and through `f` only when the root had to be mounted (a stopped
/// container may not start meanwhile). A running container's root is reached by file
/// descriptors that stay valid whatever it does, so the container is neither frozen nor
/// held up: a slow client never delays its stop or an exec.
fn with_open_root<T>(d: &Service, c: &Container, f: impl FnOnce(&Root) -> Result<T>) -> Result<T> {
    let op = c.op.blocking_lock();
    let open = open_root(d, c, true)?;
    let op = open.mounted().then_some(op);
    let res = f(open.root());
    // Unmounted before the lock goes.
    drop(open);
    drop(op);
    res
}

fn not_found_path(e: berth_image::Error, c: &str, p: &Path) -> Error {
    match e {
        berth_image::Error::NotFound(_) => Error::not_found(format!(
            "Could not find the file {} in container {c}",
            p.display()
        )),
        other => other.into(),
    }
}

/// The name a path's entry gets in its archive: its last component, `/` for the root.
fn entry_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// Whether `PUT /archive` may write at `path`, as dockerd decides: by the mount the path is
/// on (the one with the longest destination prefix, compared as cleaned paths), or the root
/// filesystem when it is on none.
pub fn check_writable(r: &Record, path: &Path) -> Result<()> {
    let p = berth_build::ignore::clean(&format!("/{}", path.to_string_lossy()));
    let under = |dst: &str| {
        p == dst
            || dst == "/"
            || p.strip_prefix(dst)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let mount = r
        .mounts
        .iter()
        .filter(|m| under(&berth_build::ignore::clean(&m.destination)))
        .max_by_key(|m| m.destination.len());
    match mount {
        Some(m) if !m.rw => Err(Error::bad_request("mounted volume is marked read-only")),
        Some(_) => Ok(()),
        None if r.host_config.readonly_rootfs => {
            Err(Error::bad_request("container rootfs is marked read-only"))
        }
        None => Ok(()),
    }
}

/// What `PUT /archive` was asked to do besides extracting.
pub struct ExtractOptions {
    pub no_overwrite_dir_non_dir: bool,
    /// Keep the archive's owners (`copyUIDGID`) instead of making everything root's.
    pub copy_uid_gid: bool,
}

/// What `POST /commit` asks for.
pub struct CommitRequest {
    /// `repo[:tag]`, if the new image is to be tagged.
    pub reference: Option<String>,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions (`--change`).
    pub changes: Vec<String>,
    /// The request body's config, whose Cmd, Entrypoint and Env override the container's.
    pub config: berth_api::container::Config,
    pub pause: bool,
}

impl Service {
    /// The `X-Docker-Container-Path-Stat` value of `path` in container `c`.
    pub async fn path_stat(self: &Arc<Self>, c: &Arc<Container>, path: &Path) -> Result<String> {
        let (id, p, name) = (c.id.clone(), path.to_path_buf(), entry_name(path));
        blocking(self, c, move |d, c| {
            with_root(d, c, true, |root| {
                let entry = root.locate(&p).map_err(|e| not_found_path(e, &id, &p))?;
                Ok(berth_image::archive::stat_located(&entry, &name)
                    .map_err(|e| not_found_path(e, &id, &p))?
                    .header_value())
            })
        })
        .await
    }

    /// Write `path` of container `c` as a tar to `out` (blocking; from descriptors opened
    /// beneath the container's root).
    pub fn archive_path(
        &self,
        c: &Container,
        path: &Path,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let ids = self.remap_of(&c.rec()).map(|r| r.ids.clone());
        let name = entry_name(path);
        with_open_root(self, c, |root| {
            let entry = root
                .locate(path)
                .map_err(|e| not_found_path(e, &c.id, path))?;
            Ok(berth_image::archive::tar_located(
                &entry,
                &name,
                out,
                ids.as_ref(),
            )?)
        })?;
        Ok(())
    }

    /// Extract the tar `body` at `path` of container `c` (`docker cp` into it).
    pub async fn extract_to(
        self: &Arc<Self>,
        c: &Arc<Container>,
        path: PathBuf,
        mut body: impl std::io::Read + Send + 'static,
        o: ExtractOptions,
    ) -> Result<()> {
        check_writable(&c.rec(), &path)?;
        let opts = berth_image::archive::ExtractOptions {
            no_overwrite_dir_non_dir: o.no_overwrite_dir_non_dir,
            chown: if o.copy_uid_gid { None } else { Some((0, 0)) },
            allow_devices: false,
            ids: self.remap_of(&c.rec()).map(|r| r.ids.clone()),
        };
        let (d2, c2) = (self.clone(), c.clone());
        tokio::task::spawn_blocking(move || {
            with_open_root(&d2, &c2, |root| {
                berth_image::archive::extract_at(&mut body, root, &path, &opts)
                    .map_err(|e| not_found_path(e, &c2.id, &path))
            })
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        self.container_event(c, "extract-to-dir", &[]);
        Ok(())
    }

    /// Write container `c`'s merged filesystem as a tar to `out` (blocking).
    pub fn export(&self, c: &Container, out: &mut dyn std::io::Write) -> Result<()> {
        // Under --userns-remap the layers hold the image's ids and the changes the mapped
        // ones: the mapping turns the latter back, and leaves the former as they are.
        let ids = self.remap_of(&c.rec()).map(|r| r.ids.clone());
        let root = super::rootfs::open_layers(self, c)?;
        Ok(berth_image::archive::tar_root(&root, out, ids.as_ref())?)
    }

    /// What changed in container `c`'s filesystem against its image.
    pub async fn changes(self: &Arc<Self>, c: &Arc<Container>) -> Result<Vec<berth_image::Change>> {
        blocking(self, c, |d, c| {
            let layers = super::rootfs::lowerdirs(d, c)?;
            // A container that never started has no upper dir yet: no changes.
            std::fs::create_dir_all(c.paths.upper())?;
            Ok(d.images.diff(&c.paths.upper(), &layers)?)
        })
        .await
    }

    /// Container `c`'s upper dir as a new image layer on its image.
    pub async fn commit(
        self: &Arc<Self>,
        c: &Arc<Container>,
        req: CommitRequest,
    ) -> Result<String> {
        let rec = c.snapshot();
        // The recorded config: the container's, overridden by what the request sets.
        let mut cfg = rec.config.clone();
        if req.config.cmd.is_some() {
            cfg.cmd = req.config.cmd.clone();
        }
        if req.config.entrypoint.is_some() {
            cfg.entrypoint = req.config.entrypoint.clone();
        }
        if req.config.env.is_some() {
            cfg.env = req.config.env.clone();
        }
        let image_cfg = serde_json::json!({
            "User": cfg.user, "Env": cfg.env, "Cmd": cfg.cmd, "Entrypoint": cfg.entrypoint,
            "WorkingDir": cfg.working_dir, "Labels": cfg.labels, "StopSignal": cfg.stop_signal,
            "ExposedPorts": cfg.exposed_ports, "Volumes": cfg.volumes,
        });
        let oci_cfg: oci_spec::image::Config = serde_json::from_value(image_cfg)
            .map_err(|e| Error::internal(format!("commit config: {e}")))?;
        // How events name the new tag: `repo:tag`, `latest` by default.
        let tag_name = req.reference.as_deref().and_then(|r| {
            berth_image::reference::Reference::parse(r)
                .ok()
                .map(|r| r.with_default_tag().familiar())
        });
        let opts = berth_image::CommitOptions {
            reference: req.reference,
            comment: Some(req.comment.clone()).filter(|s| !s.is_empty()),
            author: Some(req.author).filter(|s| !s.is_empty()),
            changes: req.changes,
            config: Some(oci_cfg),
            healthcheck: cfg
                .healthcheck
                .as_ref()
                .and_then(|h| serde_json::to_value(h).ok()),
            ids: self.remap_of(&rec).map(|r| r.ids.clone()),
            ..Default::default()
        };
        let pause = req.pause && rec.state.status == status::RUNNING;
        if pause {
            let _ = self.pause(c, true);
        }
        let parent = rec.image_id.clone();
        let res = blocking(self, c, move |d, c| {
            // A container that never started commits as its image with an empty layer.
            std::fs::create_dir_all(c.paths.upper())?;
            Ok(d.images.commit(&c.paths.upper(), Some(&parent), &opts)?)
        })
        .await;
        if pause {
            let _ = self.pause(c, false);
        }
        let img = res?;
        self.events
            .image_event(&self.images, &img.id, &img.id, "create");
        if let Some(tag) = &tag_name {
            self.events.image_event(&self.images, &img.id, tag, "tag");
        }
        self.container_event(
            c,
            "commit",
            &[
                ("comment", req.comment),
                ("imageID", img.id.clone()),
                ("imageRef", tag_name.unwrap_or_default()),
            ],
        );
        Ok(img.id)
    }

    /// Host `ps` output (`ps_args`, `-ef` by default) restricted to container `c`'s processes.
    pub async fn top(
        &self,
        c: &Container,
        ps_args: &str,
    ) -> Result<berth_api::container::TopResponse> {
        let r = c.snapshot();
        if !r.is_running() {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let pids = berth_runtime::Runtime::new(&self.runtime_root)
            .pids(&r.id)
            .map_err(|e| Error::internal(e.to_string()))?;
        let args = if ps_args.is_empty() { "-ef" } else { ps_args };
        let out = tokio::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .await
            .map_err(|e| Error::internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
        let pid_col = titles
            .iter()
            .position(|t| t == "PID")
            .ok_or_else(|| Error::internal("Couldn't find PID field in ps output"))?;
        let mut processes = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            // The last column (the command) may contain spaces.
            let mut row: Vec<String> = fields[..titles.len().saturating_sub(1).min(fields.len())]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if fields.len() >= titles.len() {
                row.push(fields[titles.len() - 1..].join(" "));
            }
            processes.push(row);
        }
        self.container_event(c, "top", &[]);
        Ok(berth_api::container::TopResponse { titles, processes })
    }
}
