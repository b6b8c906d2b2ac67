//! Damaged records (a container, network, volume or image record that cannot be read) are
//! moved aside to `<data-root>/quarantine/<kind>/` rather than skipped: boot goes on, nothing
//! that depended on them is silently kept or lost, and `GET /info` warns about them. A leaf: it
//! imports no other module of the daemon, and it only moves the paths it is given, never reading or
//! repairing what they hold.

use std::path::{Path, PathBuf};

/// The kinds of records, as directory names below `quarantine/` (`images` is written by the
/// image store itself).
const KINDS: [&str; 4] = ["containers", "networks", "volumes", "images"];

/// Move `path` (a record file, or a container's or volume's directory) to
/// `quarantine/<kind>/`, under its own name, or with a suffix if that is taken. Needs no free
/// space (one rename).
pub fn move_aside(data_root: &Path, kind: &str, path: &Path) -> std::io::Result<PathBuf> {
    let dir = data_root.join("quarantine").join(kind);
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().unwrap_or_default().to_os_string();
    let mut to = dir.join(&name);
    let mut n = 1;
    while to.symlink_metadata().is_ok() {
        let mut other = name.clone();
        other.push(format!(".{n}"));
        to = dir.join(other);
        n += 1;
    }
    std::fs::rename(path, &to)?;
    Ok(to)
}

/// The warning `GET /info` shows while anything is in quarantine.
pub fn warning(data_root: &Path) -> Option<String> {
    let root = data_root.join("quarantine");
    let counts: Vec<String> = KINDS
        .iter()
        .filter_map(|k| {
            let n = std::fs::read_dir(root.join(k)).ok()?.count();
            (n > 0).then(|| format!("{n} {k}"))
        })
        .collect();
    (!counts.is_empty()).then(|| {
        format!(
            "WARNING: damaged records were moved to {} ({}); see the daemon log",
            root.display(),
            counts.join(", ")
        )
    })
}
