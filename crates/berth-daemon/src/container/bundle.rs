//! A container's bundle for its shim, made at every start: the run dir, the upper and work
//! dirs (owned by the remapped root under `--userns-remap`), config.json from the OCI spec
//! builder fed with what is read here (the image's passwd and group, the host's facts, the
//! settings, mount and network plans), the network files, and shim.json (log driver and
//! rotation, stdio, exit file). It starts no process and takes no address, port or volume: it only
//! writes files from plans made elsewhere.

use super::handle::Container;
use super::service::Service;
use super::spec;
use crate::error::{Error, Result};
use berth_shim::ShimConfig;

/// json-file's rotation defaults.
const LOG_MAX_SIZE: u64 = 20 << 20;
const LOG_MAX_FILES: u32 = 5;

/// Build the bundle of a container: config.json and shim.json.
pub(super) fn prepare(d: &Service, c: &Container) -> Result<()> {
    let rec = c.snapshot();
    let layers = super::rootfs::lowerdirs(d, c)?;
    for dir in [
        c.paths.upper(),
        c.paths.work(),
        c.paths.rootfs(),
        c.paths.run_dir.clone(),
    ] {
        std::fs::create_dir_all(dir)?;
    }
    let remap = d.remap_of(&rec);
    // Docker keeps a data root per mapping; here one holds all, so a container made under
    // another mapping (or none) is refused rather than started with files it cannot own.
    if rec.remapped_root != remap.map(crate::userns::Remap::root) {
        let was = match rec.remapped_root {
            Some((u, g)) => format!("with its root mapped to {u}:{g}"),
            None => "without --userns-remap".into(),
        };
        return Err(Error::conflict(format!(
            "container {} was created {was}, and the daemon now runs with another \
             --userns-remap setting: restart the daemon with the old setting or recreate \
             the container",
            rec.name.trim_start_matches('/')
        )));
    }
    if let Some(r) = remap {
        // The overlay's top is the container's `/`: owned by its root, and so is what it
        // writes; the lower layers are idmapped instead (see berth-runtime's idmap.rs).
        let (uid, gid) = r.root();
        for dir in [c.paths.upper(), c.paths.work()] {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
        }
    }
    let net = crate::container::network::files::spec_for(d, &rec)?;
    let upper = c.paths.upper();
    let passwd = super::host::read_root_file(&upper, &layers, "etc/passwd");
    let group = super::host::read_root_file(&upper, &layers, "etc/group");
    let settings = super::settings::resolve(d, &rec, &c.paths.run_dir)?;
    let built = spec::build(spec::Inputs {
        rec: &rec,
        paths: &c.paths,
        layers: &layers,
        cgroup_parent: &d.cfg.cgroup_parent,
        passwd: passwd.as_deref(),
        group: group.as_deref(),
        net: &net,
        mounts: super::volumes::oci_mounts(d, &rec)?,
        security: &super::process::security_opts(&rec)?,
        settings,
        remap,
        host: &super::host::Facts::gather(&rec.host_config),
    })?;
    crate::container::network::files::write_files(d, c, &built.hostname)?;
    if let (Some(r), None) = (remap, &net.netns) {
        // The container's root may write its /etc/hosts, as in Docker.
        let (uid, gid) = r.root();
        for f in [c.paths.hostname(), c.paths.hosts(), c.paths.resolv_conf()] {
            std::os::unix::fs::lchown(f, Some(uid), Some(gid))?;
        }
    }
    let spec = serde_json::to_vec(&built.spec).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(c.paths.run_dir.join("config.json"), spec)?;
    let opts = &rec.host_config.log_config.config;
    let driver = rec.host_config.log_config.kind.as_str();
    // The daemon's --log-opt are for its default driver, json-file.
    let daemon_opts = if driver == "local" {
        &Default::default()
    } else {
        &d.cfg.log_opts
    };
    let (default_size, default_files) = if driver == "local" {
        (
            berth_api::locallog::DEFAULT_MAX_SIZE,
            berth_api::locallog::DEFAULT_MAX_FILES,
        )
    } else {
        (LOG_MAX_SIZE, LOG_MAX_FILES)
    };
    let max_size = opts
        .get("max-size")
        .or(daemon_opts.get("max-size"))
        .map(|s| {
            berth_api::units::ram_in_bytes(s)
                .map(|n| n as u64)
                .map_err(|e| Error::bad_request(format!("invalid max-size: {e}")))
        })
        .transpose()?
        .unwrap_or(default_size);
    let max_files = opts
        .get("max-file")
        .or(daemon_opts.get("max-file"))
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::bad_request(format!("invalid max-file: {s}")))
        })
        .transpose()?
        .unwrap_or(default_files);
    // Rotated files are compressed by default with local, on request with json-file.
    let log_compress = match opts
        .get("compress")
        .or(daemon_opts.get("compress"))
        .map(String::as_str)
    {
        Some(v) => matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True"),
        None => driver == "local",
    };
    let shim_cfg = ShimConfig {
        id: rec.id.clone(),
        bundle: c.paths.run_dir.clone(),
        runtime_root: d.runtime_root.clone(),
        socket: c.paths.socket(),
        log_path: c.paths.log_of(driver),
        log_driver: driver.to_string(),
        log_compress,
        log_max_size: max_size,
        log_max_files: max_files,
        tty: rec.config.tty,
        open_stdin: rec.config.open_stdin,
        stdin_once: rec.config.stdin_once,
        exit_file: c.paths.exit_file(),
        console_size: match rec.host_config.console_size.as_deref() {
            Some([h, w]) if *h > 0 && *w > 0 => Some((
                u16::try_from(*h).unwrap_or(u16::MAX),
                u16::try_from(*w).unwrap_or(u16::MAX),
            )),
            _ => None,
        },
    };
    let data = serde_json::to_vec(&shim_cfg).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(c.paths.run_dir.join(ShimConfig::FILE), data)?;
    let _ = std::fs::remove_file(c.paths.exit_file());
    Ok(())
}
