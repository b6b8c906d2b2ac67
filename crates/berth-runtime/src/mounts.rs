//! The spec's `mounts`: option parsing, safe mount-point resolution inside the rootfs, bind and
//! filesystem mounts, and the cgroup filesystem mount (v1 tmpfs + one mount per hierarchy, or v2).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::sys;

/// Parsed mount options: flags to set, propagation changes, and the filesystem data string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
}

impl Options {
    pub(crate) fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    pub(crate) fn data_string(&self) -> String {
        self.data.join(",")
    }
}

/// Parse mount(8)-style options as runc/crun do; unknown options go to the data string.
pub(crate) fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        let (clear, set): (bool, libc::c_ulong) = match opt.as_str() {
            "defaults" => (false, 0),
            "ro" => (false, libc::MS_RDONLY),
            "rw" => (true, libc::MS_RDONLY),
            "suid" => (true, libc::MS_NOSUID),
            "nosuid" => (false, libc::MS_NOSUID),
            "dev" => (true, libc::MS_NODEV),
            "nodev" => (false, libc::MS_NODEV),
            "exec" => (true, libc::MS_NOEXEC),
            "noexec" => (false, libc::MS_NOEXEC),
            "sync" => (false, libc::MS_SYNCHRONOUS),
            "async" => (true, libc::MS_SYNCHRONOUS),
            "dirsync" => (false, libc::MS_DIRSYNC),
            "remount" => (false, libc::MS_REMOUNT),
            "mand" => (false, libc::MS_MANDLOCK),
            "nomand" => (true, libc::MS_MANDLOCK),
            "atime" => (true, libc::MS_NOATIME),
            "noatime" => (false, libc::MS_NOATIME),
            "diratime" => (true, libc::MS_NODIRATIME),
            "nodiratime" => (false, libc::MS_NODIRATIME),
            "relatime" => (false, libc::MS_RELATIME),
            "norelatime" => (true, libc::MS_RELATIME),
            "strictatime" => (false, libc::MS_STRICTATIME),
            "nostrictatime" => (true, libc::MS_STRICTATIME),
            "lazytime" => (false, libc::MS_LAZYTIME),
            "nolazytime" => (true, libc::MS_LAZYTIME),
            "silent" => (false, libc::MS_SILENT),
            "loud" => (true, libc::MS_SILENT),
            "iversion" => (false, libc::MS_I_VERSION),
            "noiversion" => (true, libc::MS_I_VERSION),
            "bind" => (false, libc::MS_BIND),
            "rbind" => (false, libc::MS_BIND | libc::MS_REC),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                let rec = if opt.starts_with('r') {
                    libc::MS_REC
                } else {
                    0
                };
                o.propagation.push(base | rec);
                continue;
            }
            // crun's extension and the mount tool's own options have no kernel meaning.
            "tmpcopyup" | "notmpcopyup" | "nofail" | "auto" | "noauto" | "user" | "nouser"
            | "_netdev" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        if clear {
            o.flags &= !set;
        } else {
            o.flags |= set;
        }
    }
    o
}

/// Resolve `unsafe_path` inside `root` following symlinks, never leaving `root`
/// (the semantics of filepath-securejoin). Missing components are kept literally.
pub(crate) fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    let mut queue: VecDeque<OsString> = VecDeque::new();
    for c in unsafe_path.components() {
        match c {
            Component::Normal(n) => queue.push_back(n.to_os_string()),
            Component::ParentDir => queue.push_back("..".into()),
            _ => {}
        }
    }
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let cand = resolved.join(&c);
        let full = root.join(&cand);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(Error::io(
                        "resolve",
                        root.join(unsafe_path.strip_prefix("/").unwrap_or(unsafe_path)),
                        io::Error::from_raw_os_error(libc::ELOOP),
                    ));
                }
                let target = fs::read_link(&full).map_err(|e| Error::io("readlink", &full, e))?;
                let mut front = Vec::new();
                for tc in target.components() {
                    match tc {
                        Component::RootDir => resolved = PathBuf::new(),
                        Component::Normal(n) => front.push(n.to_os_string()),
                        Component::ParentDir => front.push("..".into()),
                        _ => {}
                    }
                }
                for n in front.into_iter().rev() {
                    queue.push_front(n);
                }
            }
            _ => resolved = cand,
        }
    }
    Ok(root.join(resolved))
}

/// Make sure a mount point exists: a directory, or an empty file when `file` is true.
pub(crate) fn ensure_mountpoint(path: &Path, file: bool) -> Result<()> {
    // Opening an existing file for writing would copy it up into the overlay's upper dir.
    if file && path.symlink_metadata().is_ok() {
        return Ok(());
    }
    if file {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", parent, e))?;
        }
        match fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
        {
            Ok(_) => Ok(()),
            // A directory or a device node already there is a usable mount point.
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Ok(()),
            Err(e) if path.exists() => {
                let _ = e;
                Ok(())
            }
            Err(e) => Err(Error::io("create", path, e)),
        }
    } else {
        fs::create_dir_all(path).map_err(|e| Error::io("mkdir", path, e))
    }
}

/// Mount flags (MS_*) that the kernel locks on a mount and that a bind remount must keep.
fn locked_flags(path: &Path) -> libc::c_ulong {
    let Ok(st) = sys::statvfs_flags(path) else {
        return 0;
    };
    let mut f = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st & st_flag != 0 {
            f |= ms_flag;
        }
    }
    f
}

/// Remount a bind mount with `flags` (ro, nosuid, …); with `keep`, the mount's current
/// nosuid/nodev/noexec/atime flags are kept too. If the kernel refuses because some flags are
/// locked (user namespaces), retry keeping the current ones.
pub(crate) fn bind_remount(target: &Path, flags: libc::c_ulong, keep: bool) -> Result<()> {
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    let mut flags = flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if keep {
        flags |= locked_flags(target);
    }
    match sys::mount(None, target, None, base | flags, None) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let keep = locked_flags(target);
            sys::mount(None, target, None, base | flags | keep, None)
                .map_err(|e| Error::sys("mount", format!("remount {}", target.display()), e))
        }
        Err(e) => Err(Error::sys(
            "mount",
            format!("remount {}", target.display()),
            e,
        )),
    }
}

/// Bind `source` onto `target` (recursively if asked), then apply flags and propagation.
pub(crate) fn bind(source: &Path, target: &Path, o: &Options) -> Result<()> {
    let rec = o.flags & libc::MS_REC;
    sys::mount(Some(source), target, None, libc::MS_BIND | rec, None).map_err(|e| {
        Error::sys(
            "mount",
            format!("bind {} on {}", source.display(), target.display()),
            e,
        )
    })?;
    let extra = o.flags & !(libc::MS_BIND | libc::MS_REC);
    if extra != 0 {
        bind_remount(target, extra, false)?;
    }
    propagate(target, o)
}

fn propagate(target: &Path, o: &Options) -> Result<()> {
    for &p in &o.propagation {
        sys::mount(None, target, None, p, None)
            .map_err(|e| Error::sys("mount", format!("propagation of {}", target.display()), e))?;
    }
    Ok(())
}

/// What mounting needs to know besides the mount itself.
pub(crate) struct Context<'a> {
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup: Option<&'a Cgroup>,
    pub new_cgroupns: bool,
}

/// The host source (relative ones are in the bundle) and options of a spec mount that is a
/// bind; `None` for any other mount.
pub(crate) fn bind_spec(bundle: &Path, m: &Mount) -> Option<(PathBuf, Options)> {
    let typ = m.typ().as_deref().unwrap_or("");
    let mut o = parse_options(m.options().as_deref().unwrap_or(&[]));
    if !(o.is_bind() || typ == "bind") || typ == "cgroup" || typ == "cgroup2" {
        return None;
    }
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let source = if source.is_absolute() {
        source
    } else {
        bundle.join(source)
    };
    o.flags |= libc::MS_BIND;
    Some((source, o))
}

/// Attach `tree`, the detached clone of the source of the bind `m` made by the creator (see
/// `idmap::bind_source`, which has set its flags), under the (not yet pivoted) rootfs, and
/// apply the propagation asked for.
pub(crate) fn attach_bind(ctx: &Context<'_>, m: &Mount, tree: BorrowedFd<'_>) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::Config(format!(
            "mount destination {} is not absolute",
            dest.display()
        )));
    }
    let o = parse_options(m.options().as_deref().unwrap_or(&[]));
    let target = secure_join(ctx.rootfs, dest)?;
    let st = rustix::fs::fstat(tree).map_err(|e| {
        Error::io(
            "stat",
            m.source().as_deref().unwrap_or(Path::new("")),
            io::Error::from(e),
        )
    })?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    ensure_mountpoint(&target, !is_dir)?;
    crate::idmap::attach(tree, &target, "bind")?;
    propagate(&target, &o)
}

/// Mount one spec mount under the (not yet pivoted) rootfs.
pub(crate) fn mount(ctx: &Context<'_>, m: &Mount) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::Config(format!(
            "mount destination {} is not absolute",
            dest.display()
        )));
    }
    let typ = m.typ().as_deref().unwrap_or("");
    let o = parse_options(m.options().as_deref().unwrap_or(&[]));
    let target = secure_join(ctx.rootfs, dest)?;
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, &target, &o);
    }
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    if let Some((source, o)) = bind_spec(ctx.bundle, m) {
        let md = fs::metadata(&source).map_err(|e| Error::io("stat", &source, e))?;
        ensure_mountpoint(&target, !md.is_dir())?;
        return bind(&source, &target, &o);
    }
    ensure_mountpoint(&target, false)?;
    let data = o.data_string();
    let r = sys::mount(Some(&source), &target, Some(typ), o.flags, Some(&data));
    match r {
        Ok(()) => {}
        // Without its own network namespace (or in a user namespace) sysfs cannot be
        // mounted fresh: bind the host's instead, as runc does. Same for mqueue.
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EBUSY))
                && (typ == "sysfs" || typ == "mqueue") =>
        {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            let mut bo = o.clone();
            bo.flags |= libc::MS_BIND | libc::MS_REC;
            bo.data.clear();
            return bind(Path::new(host), &target, &bo);
        }
        Err(e) => {
            return Err(Error::sys(
                "mount",
                format!("{typ} {} on {}", source.display(), target.display()),
                e,
            ))
        }
    }
    propagate(&target, &o)
}

/// The cgroup filesystem: on v2 one cgroup2 mount; on v1 a tmpfs holding one mount per
/// hierarchy (fresh cgroup mounts inside a cgroup namespace, binds of the container's
/// directories otherwise), with symlinks for co-mounted controllers.
fn mount_cgroup(ctx: &Context<'_>, target: &Path, o: &Options) -> Result<()> {
    ensure_mountpoint(target, false)?;
    let flags = o.flags & !(libc::MS_BIND | libc::MS_REC);
    let Some(cg) = ctx.cgroup else {
        return Err(Error::Config(
            "cgroup mount without a container cgroup".into(),
        ));
    };
    if cg.v2 {
        let r = if ctx.new_cgroupns {
            sys::mount(
                Some(Path::new("cgroup2")),
                target,
                Some("cgroup2"),
                flags,
                None,
            )
        } else {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        };
        if r.is_err() {
            if let Some(d) = cg.dirs.first() {
                let bo = Options {
                    flags: flags | libc::MS_BIND | libc::MS_REC,
                    propagation: Vec::new(),
                    data: Vec::new(),
                };
                return bind(&d.path, target, &bo);
            }
        }
        return r.map_err(|e| Error::sys("mount", format!("cgroup2 on {}", target.display()), e));
    }
    let tmpfs_flags = flags & !libc::MS_RDONLY;
    sys::mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .map_err(|e| Error::sys("mount", format!("tmpfs on {}", target.display()), e))?;
    for d in &cg.dirs {
        if d.name.is_empty() {
            continue;
        }
        let sub = target.join(&d.name);
        ensure_mountpoint(&sub, false)?;
        if ctx.new_cgroupns {
            sys::mount(
                Some(Path::new("cgroup")),
                &sub,
                Some("cgroup"),
                flags,
                Some(&d.subsystems),
            )
            .map_err(|e| {
                Error::sys(
                    "mount",
                    format!("cgroup {} on {}", d.subsystems, sub.display()),
                    e,
                )
            })?;
        } else {
            let bo = Options {
                flags: flags | libc::MS_BIND | libc::MS_REC,
                propagation: Vec::new(),
                data: Vec::new(),
            };
            bind(&d.path, &sub, &bo)?;
        }
        if d.name.contains(',') {
            for s in d.name.split(',') {
                let link = target.join(s);
                if let Err(e) = std::os::unix::fs::symlink(&d.name, &link) {
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(Error::io("symlink", link, e));
                    }
                }
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        bind_remount(target, flags, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse_options(&s(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data_string(), "mode=755,size=65536k");
        let o = parse_options(&s(&["rbind", "rprivate", "ro"]));
        assert!(o.is_bind());
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        let o = parse_options(&s(&["ro", "rw"]));
        assert_eq!(o.flags, 0);
    }

    #[test]
    fn secure_join_stays_inside() {
        let dir = std::env::temp_dir().join(format!("berth-sj-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("a/abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", dir.join("a/up")).unwrap();
        std::os::unix::fs::symlink("b", dir.join("a/rel")).unwrap();
        assert_eq!(
            secure_join(&dir, Path::new("/a/abs/passwd")).unwrap(),
            dir.join("etc/passwd")
        );
        assert_eq!(
            secure_join(&dir, Path::new("/a/up/x")).unwrap(),
            dir.join("x")
        );
        assert_eq!(
            secure_join(&dir, Path::new("/../../x")).unwrap(),
            dir.join("x")
        );
        assert_eq!(
            secure_join(&dir, Path::new("/a/rel/c")).unwrap(),
            dir.join("a/b/c")
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
