//! Tar archives for the Engine API: safe extraction (`docker cp` into a container), tars of
//! an entry or a whole tree (`docker cp` out, `docker export`), and the
//! `X-Docker-Container-Path-Stat` header value. A container's files are reached from a
//! [`Root`] by file descriptors only.

use crate::error::{IoContext, Result};
pub use crate::inroot::{Located, Root};
use crate::tarwrite::TarWriter;
pub use crate::unpack::remove_tree_at;
use rustix::fs::FileType;
use serde::Serialize;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

/// How [`extract`] treats the archive's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Docker's `noOverwriteDirNonDir`: refuse to replace a directory with a non-directory
    /// or the reverse (the docker CLI sets it for `docker cp`).
    pub no_overwrite_dir_non_dir: bool,
    /// Owner `(uid, gid)` for every entry instead of the archive's (`docker cp` without
    /// `-a` passes the container's root, `Some((0, 0))`).
    pub chown: Option<(u32, u32)>,
    /// Create character and block devices (refused otherwise).
    pub allow_devices: bool,
    /// The maps of a container in a user namespace: owners (the archive's or `chown`) are
    /// its ids, written as the host ids they map to.
    pub ids: Option<crate::IdMappings>,
}

/// Safe tar extraction into `dir` (plain or gzip tar): entries climbing out with `..` are
/// refused, symlinks met on the way resolve inside `dir` (openat2 RESOLVE_IN_ROOT, no
/// magic links), hardlinks must point inside, modes/owners/mtimes/xattrs are kept.
pub fn extract(reader: &mut dyn Read, dir: &Path, opts: &ExtractOptions) -> Result<()> {
    crate::unpack::extract_into(reader, dir, opts)
}

/// Extracts into the directory `dest` of the tree `root` (a container's root filesystem):
/// `dest` and every symlink met on the way resolve with `root` as `/`, like Docker's
/// extraction chrooted into the container; entries may not climb above `dest`. A missing
/// `dest` (or one on procfs or sysfs) is `NotFound`.
pub fn extract_at(
    reader: &mut dyn Read,
    root: &Root,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<()> {
    crate::unpack::extract_at(reader, root, dest, opts)
}

/// Resolves `path` inside `root` (a container's root filesystem) to a host path: every
/// component but the last is resolved with symlinks followed inside `root` (openat2
/// RESOLVE_IN_ROOT); the last is kept as is, so a final symlink is not followed. Only for
/// trees nothing else changes meanwhile (a build context): the host path is walked again
/// by whoever uses it. Use [`Root::locate`] for a container's files.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<std::path::PathBuf> {
    crate::unpack::resolve_in_root(root, path)
}

/// Tar of `path` (file, symlink or directory tree) with entry names rooted at its basename,
/// like the Engine API `GET /containers/{id}/archive`.
pub fn tar_path(path: &Path, out: &mut dyn Write) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_string());
    tar_located(&Located::host(path)?, &name, out, None)
}

/// Tar of a located entry (file, symlink or directory tree) with the root entry named
/// `name` (Docker's rebase for `docker cp`; `/` or an empty name: the directory's contents
/// at the root). The tree is walked by file descriptors from the entry's directory.
///
/// With `ids` (a container in a user namespace), owners are written as the container's ids.
pub fn tar_located(
    entry: &Located,
    name: &str,
    out: &mut dyn Write,
    ids: Option<&crate::IdMappings>,
) -> Result<()> {
    let mut w = TarWriter::new(out, false).with_ids(ids.cloned());
    w.append_at(
        entry.dir.as_fd(),
        entry.name.as_deref(),
        name.trim_end_matches('/'),
    )?;
    w.finish()?;
    Ok(())
}

/// Tar of the contents of the tree `root` with names relative to it (`docker export`).
/// With `ids`, owners are written as the container's ids (see [`tar_located`]).
pub fn tar_root(root: &Root, out: &mut dyn Write, ids: Option<&crate::IdMappings>) -> Result<()> {
    let mut w = TarWriter::new(out, false).with_ids(ids.cloned());
    w.append_at(root.fd(), None, "")?;
    w.finish()?;
    Ok(())
}

/// Tar of the contents of `dir` with names relative to it.
pub fn tar_dir(dir: &Path, out: &mut dyn Write) -> Result<()> {
    tar_root(&Root::open(dir)?, out, None)
}

/// Stat of a path as the Engine API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode` bits.
    pub mode: u32,
    /// RFC 3339 with nanoseconds, like Go's `time.Time` JSON.
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    /// The base64 of the JSON, the value of `X-Docker-Container-Path-Stat`.
    pub fn header_value(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64(&json)
    }
}

const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

/// Converts a Unix `st_mode` into Go's `os.FileMode` bits.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match st_mode & 0o170000 {
        0o040000 => GO_MODE_DIR,
        0o120000 => GO_MODE_SYMLINK,
        0o020000 => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        0o060000 => GO_MODE_DEVICE,
        0o010000 => GO_MODE_NAMED_PIPE,
        0o140000 => GO_MODE_SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= GO_MODE_SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= GO_MODE_SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= GO_MODE_STICKY;
    }
    m
}

/// Formats a Unix time like Go's `time.Time` JSON (RFC 3339, trailing zeros of the
/// fraction trimmed), in UTC.
pub(crate) fn go_time(secs: i64, nanos: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if nanos > 0 && nanos < 1_000_000_000 {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    } else {
        format!("{base}Z")
    }
}

/// Stat of `path` (not following a final symlink) reported under `name`.
pub fn stat_path(path: &Path, name: &str) -> Result<PathStat> {
    stat_located(&Located::host(path)?, name)
}

/// Stat of a located entry (not following a final symlink) reported under `name`.
pub fn stat_located(entry: &Located, name: &str) -> Result<PathStat> {
    let ctx = || format!("inspecting {name}");
    let st = entry.stat().ctx(ctx)?;
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        entry.link_target().ctx(ctx)?.to_string_lossy().into_owned()
    } else {
        String::new()
    };
    Ok(PathStat {
        name: name.to_string(),
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime: go_time(st.st_mtime, i64::try_from(st.st_mtime_nsec).unwrap_or(0)),
        link_target,
    })
}

/// Engine API `X-Docker-Container-Path-Stat` header value: base64 of
/// `{"name","size","mode","mtime","linkTarget"}` with Go `os.FileMode` bits. `linkTarget`
/// is the symlink's own target text; the daemon resolves it in the container if it wants
/// Docker's absolute form.
pub fn path_stat(path: &Path, name: &str) -> Result<String> {
    Ok(stat_path(path, name)?.header_value())
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn go_modes() {
        assert_eq!(go_file_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(go_file_mode(0o041777), (1 << 31) | (1 << 20) | 0o777);
        assert_eq!(go_file_mode(0o020666), (1 << 26) | (1 << 21) | 0o666);
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            go_time(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
    }
}
