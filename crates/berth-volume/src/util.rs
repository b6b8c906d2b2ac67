//! Small helpers of the volume service: ids, times, and what the
//! kernel says is mounted. Nothing here knows about volumes' records or containers.

use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// 64 random hex digits: an anonymous volume's name, or a trash entry's.
pub fn random_id() -> Result<String> {
    berth_api::fsutil::random_hex()
        .map_err(|e| Error::internal(format!("reading /dev/urandom: {e}")))
}

pub fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Mount points of the daemon's namespace, from /proc/self/mountinfo (octal escapes undone).
pub fn mount_points() -> BTreeSet<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| {
            let mut out = Vec::new();
            let b = p.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && i + 3 < b.len() {
                    if let Ok(v) = u8::from_str_radix(&p[i + 1..i + 4], 8) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
        })
        .collect()
}

/// Whether `p` is the root of a mount (statx's STATX_ATTR_MOUNT_ROOT; it also sees bind mounts
/// within one file system, which a device number comparison would not).
pub fn is_mount_root(p: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
        .map(|r| {
            r.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && r.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        })
        .unwrap_or(false)
}
