//! Volume drivers: what a driver does for the service (check a new volume's options, make its
//! storage, mount and unmount it, measure it), and the `local` driver — a plain `_data`
//! directory, or the mount made from its `type`/`device`/`o` options. A driver sees a volume's
//! options and its data directory only; the records and references stay with the service.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// A volume's driver options (`docker volume create -o k=v`).
pub type Options = BTreeMap<String, String>;

/// What the volume service asks of a driver. A new driver (a plugin, a cluster driver) is a
/// new implementation registered with the service under its name.
pub trait Driver: Send + Sync {
    /// Check the options a new volume is created with.
    fn check_options(&self, options: &Options) -> Result<()>;
    /// Make a new volume's data directory `data`, owned by `owner` when given (the remapped
    /// root under `--userns-remap`).
    fn create(&self, data: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()>;
    /// Whether a volume with these options is a mount of its own, up while a container runs
    /// with it, rather than a directory.
    fn mounts(&self, options: &Options) -> bool;
    /// Mount the volume on its data directory.
    fn mount(&self, options: &Options, data: &Path) -> Result<()>;
    /// Unmount the volume from its data directory; one that is not mounted is no error.
    fn unmount(&self, data: &Path) -> std::io::Result<()>;
    /// Bytes the volume holds.
    fn size(&self, options: &Options, data: &Path) -> u64;
}

/// The `local` driver.
pub struct Local;

impl Driver for Local {
    /// `type`, `device` and `o` go together; `size` needs quotas.
    fn check_options(&self, opts: &Options) -> Result<()> {
        for k in opts.keys() {
            if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
                return Err(Error::bad_request(format!("invalid option: {k:?}")));
            }
        }
        if opts.contains_key("size") {
            return Err(Error::bad_request(
                "quota size requested but no quota support",
            ));
        }
        for (opt, needs) in [
            ("device", &["type"][..]),
            ("type", &["device"][..]),
            ("o", &["device", "type"][..]),
        ] {
            if opts.contains_key(opt) {
                if let Some(missing) = needs.iter().find(|n| !opts.contains_key(**n)) {
                    return Err(Error::bad_request(format!(
                        "missing required option: {missing:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn create(&self, data: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o755).create(data)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(data, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn mounts(&self, options: &Options) -> bool {
        options.contains_key("type") || options.contains_key("device")
    }

    fn mount(&self, options: &Options, data: &Path) -> Result<()> {
        mount_local(options, data).map_err(|e| {
            Error::internal(format!(
                "error while mounting volume '{}': failed to mount local volume: {e}",
                data.display()
            ))
        })
    }

    fn unmount(&self, data: &Path) -> std::io::Result<()> {
        match nix::mount::umount2(data, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A directory's bytes (0 for one mounted from elsewhere); symlinks are not followed.
    fn size(&self, options: &Options, data: &Path) -> u64 {
        if self.mounts(options) {
            return 0;
        }
        let mut total = 0;
        let mut stack = vec![data.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                // DirEntry::metadata does not follow symlinks.
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                } else if m.is_file() {
                    total += m.len();
                }
            }
        }
        total
    }
}

/// Split a local volume's `o` into mount flags and the data string, as mount(8) does.
fn mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        let (set, clear) = match opt {
            "defaults" => (F::empty(), F::empty()),
            "ro" => (F::MS_RDONLY, F::empty()),
            "rw" => (F::empty(), F::MS_RDONLY),
            "nosuid" => (F::MS_NOSUID, F::empty()),
            "suid" => (F::empty(), F::MS_NOSUID),
            "nodev" => (F::MS_NODEV, F::empty()),
            "dev" => (F::empty(), F::MS_NODEV),
            "noexec" => (F::MS_NOEXEC, F::empty()),
            "exec" => (F::empty(), F::MS_NOEXEC),
            "sync" => (F::MS_SYNCHRONOUS, F::empty()),
            "async" => (F::empty(), F::MS_SYNCHRONOUS),
            "noatime" => (F::MS_NOATIME, F::empty()),
            "atime" => (F::empty(), F::MS_NOATIME),
            "nodiratime" => (F::MS_NODIRATIME, F::empty()),
            "diratime" => (F::empty(), F::MS_NODIRATIME),
            "relatime" => (F::MS_RELATIME, F::empty()),
            "strictatime" => (F::MS_STRICTATIME, F::empty()),
            "bind" => (F::MS_BIND, F::empty()),
            "rbind" => (F::MS_BIND | F::MS_REC, F::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

/// Mount a volume made with driver options on its data directory.
fn mount_local(opts: &Options, target: &Path) -> std::result::Result<(), String> {
    use nix::mount::MsFlags as F;
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let fstype = opts.get("type").map(String::as_str).unwrap_or("");
    let (flags, data) = mount_flags(opts.get("o").map(String::as_str).unwrap_or(""));
    let describe = |e: nix::errno::Errno| {
        format!(
            "mount {device}:{}, flags: {:#x}, data: {data}: {}",
            target.display(),
            flags.bits(),
            e.desc().to_lowercase()
        )
    };
    let bind = flags.contains(F::MS_BIND);
    let first = if bind {
        flags & (F::MS_BIND | F::MS_REC)
    } else {
        flags
    };
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    let ftype = (!bind && !fstype.is_empty()).then_some(fstype);
    nix::mount::mount(Some(device), target, ftype, first, data_opt).map_err(describe)?;
    // A bind mount takes its other flags only on a remount.
    let rest = flags - (F::MS_BIND | F::MS_REC);
    if bind && !rest.is_empty() {
        if let Err(e) = nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            F::MS_REMOUNT | F::MS_BIND | rest,
            None::<&str>,
        ) {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            return Err(describe(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Options>()
        };
        assert!(Local.check_options(&o(&[])).is_ok());
        assert!(Local
            .check_options(&o(&[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "size=1m")
            ]))
            .is_ok());
        assert_eq!(
            Local
                .check_options(&o(&[("type", "tmpfs")]))
                .unwrap_err()
                .message,
            "missing required option: \"device\""
        );
        assert_eq!(
            Local
                .check_options(&o(&[("bogus", "1")]))
                .unwrap_err()
                .message,
            "invalid option: \"bogus\""
        );
        assert_eq!(
            Local
                .check_options(&o(&[("size", "1m")]))
                .unwrap_err()
                .message,
            "quota size requested but no quota support"
        );
        let (f, d) = mount_flags("size=10m,ro,nosuid,mode=700");
        assert!(f.contains(nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NOSUID));
        assert_eq!(d, "size=10m,mode=700");
        assert!(Local.mounts(&o(&[("type", "tmpfs"), ("device", "tmpfs")])));
        assert!(!Local.mounts(&o(&[])));
    }
}
