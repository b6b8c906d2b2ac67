//! Process capabilities: bounding set drop, effective/permitted/inheritable in one capset,
//! ambient set. Capability names are mapped through the `caps` crate.

use std::io;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability as OciCap, LinuxCapabilities};

use crate::error::{Error, Result};
use crate::sys;

/// Kernel capability number of an OCI capability (None if this build does not know it).
fn index(c: &OciCap) -> Option<u8> {
    let name = serde_json::to_value(c).ok()?;
    caps::Capability::from_str(name.as_str()?)
        .ok()
        .map(|c| c.index())
}

fn mask(set: &Option<Capabilities>) -> u64 {
    set.iter()
        .flatten()
        .filter_map(index)
        .fold(0u64, |m, i| m | (1u64 << i))
}

/// The capability sets to give the process, as bit masks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Sets {
    pub(crate) fn from_spec(c: Option<&LinuxCapabilities>) -> Sets {
        match c {
            None => Sets::default(),
            Some(c) => Sets {
                bounding: mask(c.bounding()),
                effective: mask(c.effective()),
                permitted: mask(c.permitted()),
                inheritable: mask(c.inheritable()),
                ambient: mask(c.ambient()),
            },
        }
    }
}

/// Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP, so this runs
/// before the user switch).
pub(crate) fn drop_bounding(keep: u64) -> Result<()> {
    for cap in caps::all() {
        let i = cap.index();
        if keep & (1u64 << i) != 0 {
            continue;
        }
        match sys::prctl(libc::PR_CAPBSET_DROP, i.into()) {
            Ok(()) => {}
            // A capability the running kernel does not have.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(Error::sys("prctl", format!("PR_CAPBSET_DROP {cap}"), e)),
        }
    }
    Ok(())
}

/// Set effective, permitted and inheritable in one capset(2), then the ambient set.
pub(crate) fn apply(s: &Sets) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(s.effective);
    let (p0, p1) = split(s.permitted);
    let (i0, i1) = split(s.inheritable);
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset(2) reads a v3 header and two data structs, which is what we pass.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
    if r < 0 {
        return Err(Error::sys(
            "capset",
            format!("{:#x}", s.effective),
            io::Error::last_os_error(),
        ));
    }
    // The kernel only lets a capability into the ambient set when it is both permitted and
    // inheritable; like runc and crun, the others are left out rather than failing the start
    // (`crun spec` lists ambient capabilities with an empty inheritable set).
    ambient(s.ambient & s.permitted & s.inheritable)
}

fn ambient(mask: u64) -> Result<()> {
    let prctl5 = |op: libc::c_ulong, cap: libc::c_ulong| -> io::Result<()> {
        // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, op, cap, 0, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    if mask == 0 {
        // Nothing to raise; clearing is only needed if something is set, and an unsupported
        // kernel (EINVAL) has none.
        return match prctl5(libc::PR_CAP_AMBIENT_CLEAR_ALL as _, 0) {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                Err(Error::sys("prctl", "PR_CAP_AMBIENT_CLEAR_ALL", e))
            }
            _ => Ok(()),
        };
    }
    prctl5(libc::PR_CAP_AMBIENT_CLEAR_ALL as _, 0)
        .map_err(|e| Error::sys("prctl", "PR_CAP_AMBIENT_CLEAR_ALL", e))?;
    for i in 0..64u64 {
        if mask & (1 << i) != 0 {
            prctl5(libc::PR_CAP_AMBIENT_RAISE as _, i as _)
                .map_err(|e| Error::sys("prctl", format!("PR_CAP_AMBIENT_RAISE {i}"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let set: Capabilities = [OciCap::Chown, OciCap::NetBindService, OciCap::Kill]
            .into_iter()
            .collect();
        let m = mask(&Some(set));
        assert_eq!(m, (1 << 0) | (1 << 10) | (1 << 5));
    }
}
