//! Device nodes in the container's /dev: the default set, `linux.devices`, the /dev symlinks
//! and /dev/console for a terminal. Nodes are created with mknod, or bind-mounted from the host
//! inside a user namespace (where mknod is not allowed).

use std::fs;
use std::io;
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::error::{Error, Result};
use crate::mounts::{ensure_mountpoint, secure_join};
use crate::sys;

/// A device node to create.
struct Node<'a> {
    path: &'a Path,
    kind: libc::mode_t,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// runc's default devices: null, zero, full, random, urandom, tty (all 0666, root-owned).
const DEFAULTS: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn create_node(rootfs: &Path, n: &Node<'_>, bind_from_host: bool) -> Result<()> {
    let target = secure_join(rootfs, n.path)?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", parent, e))?;
    }
    if bind_from_host {
        ensure_mountpoint(&target, true)?;
        return sys::mount(Some(n.path), &target, None, libc::MS_BIND, None).map_err(|e| {
            Error::sys(
                "mount",
                format!("bind {} on {}", n.path.display(), target.display()),
                e,
            )
        });
    }
    let dev = libc::makedev(n.major as u32, n.minor as u32);
    match sys::mknod(&target, n.kind | (n.mode & 0o7777), dev) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&target);
            sys::mknod(&target, n.kind | (n.mode & 0o7777), dev)
                .map_err(|e| Error::sys("mknod", target.display(), e))?;
        }
        Err(e) => return Err(Error::sys("mknod", target.display(), e)),
    }
    sys::lchown(&target, n.uid, n.gid).map_err(|e| Error::sys("chown", target.display(), e))
}

fn kind_of(t: LinuxDeviceType) -> Result<libc::mode_t> {
    Ok(match t {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::Config(
                "device type \"a\" is only valid in cgroup rules".into(),
            ))
        }
    })
}

/// Create the default devices plus `devices` under `<rootfs>/dev`, and the standard symlinks.
pub(crate) fn setup(rootfs: &Path, devices: &[LinuxDevice], in_userns: bool) -> Result<()> {
    for &(path, major, minor) in DEFAULTS {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        let n = Node {
            path: Path::new(path),
            kind: libc::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        create_node(rootfs, &n, in_userns)?;
    }
    for d in devices {
        if !d.path().is_absolute() {
            return Err(Error::Config(format!(
                "device path {} is not absolute",
                d.path().display()
            )));
        }
        let n = Node {
            path: d.path(),
            kind: kind_of(d.typ())?,
            major: d.major().max(0) as u64,
            minor: d.minor().max(0) as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        create_node(rootfs, &n, in_userns)?;
    }
    symlinks(rootfs)
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx → pts/ptmx, and /dev/core → /proc/kcore as runc does.
fn symlinks(rootfs: &Path) -> Result<()> {
    let mut links = vec![
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "dev/core"));
    }
    for (src, dst) in links {
        let p = rootfs.join(dst);
        if let Err(e) = std::os::unix::fs::symlink(src, &p) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(Error::io("symlink", p, e));
            }
        }
    }
    let ptmx = rootfs.join("dev/ptmx");
    match fs::remove_file(&ptmx) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", ptmx, e)),
    }
    std::os::unix::fs::symlink("pts/ptmx", &ptmx).map_err(|e| Error::io("symlink", ptmx, e))
}

/// The container's resources with device cgroup rules that always allow the default devices
/// (null, zero, full, random, urandom, tty, console, ptmx, the pts and tun) and the config's
/// own `linux.devices` its rules do not name, after its rules, as runc and crun do: a config that denies all
/// devices (as `crun spec` writes) still gets a working /dev.
pub(crate) fn with_default_rules(
    linux: &oci_spec::runtime::Linux,
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules: Vec<LinuxDeviceCgroup> = res.devices().clone().unwrap_or_default();
    let mut allow = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".to_string()));
        rules.push(r);
    };
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        allow(LinuxDeviceType::C, Some(major), Some(minor));
    }
    allow(LinuxDeviceType::C, Some(136), None);
    // A device the config's own rules already name keeps the access they give it
    // (`--device /dev/x:/dev/x:r`).
    let named: Vec<(Option<LinuxDeviceType>, Option<i64>, Option<i64>)> = res
        .devices()
        .iter()
        .flatten()
        .map(|r| (r.typ(), r.major(), r.minor()))
        .collect();
    for d in linux.devices().iter().flatten() {
        if !named.contains(&(Some(d.typ()), Some(d.major()), Some(d.minor()))) {
            allow(d.typ(), Some(d.major()), Some(d.minor()));
        }
    }
    res.set_devices(Some(rules));
    res
}
