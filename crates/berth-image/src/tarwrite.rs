//! Tar writer for directory trees (export, `docker cp` out, commit): sorted walk, hardlinks
//! kept, xattrs as PAX `SCHILY.xattr.*` records, and optionally overlay whiteouts converted
//! to the image-layer form (`.wh.<name>`, `.wh..wh..opq`).

use crate::error::{Error, IoContext, Result};
use crate::unpack::{OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub(crate) struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), String>,
    overlay: bool,
    entries: u64,
}

/// The xattrs of `path` (not following symlinks) worth archiving.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::llistxattr_query(path)
                    .unwrap_or(0)
                    .max(names.len() * 2);
                names.resize(need, 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::io(
                    format!("listing xattrs of {}", path.display()),
                    e.into(),
                ))
            }
        }
    };
    let mut out = Vec::new();
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if name.starts_with("trusted.overlay.") || name == "security.selinux" {
            continue;
        }
        if let Some(v) = get_xattr(path, name)? {
            out.push((name.to_string(), v));
        }
    }
    Ok(out)
}

/// One xattr of `path` (not following symlinks); `None` when absent or unsupported.
pub(crate) fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => {
                let len = buf.len();
                buf.resize(len * 4, 0);
                if buf.len() > 1 << 20 {
                    return Err(Error::Corrupt(format!(
                        "xattr {name} of {} is too large",
                        path.display()
                    )));
                }
            }
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading xattr {name} of {}", path.display()),
                    e.into(),
                ))
            }
        }
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n" where <len> counts the whole record, itself included.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl<W: Write> TarWriter<W> {
    /// `overlay`: convert overlay whiteouts and opaque directories (for layer tars).
    pub(crate) fn new(out: W, overlay: bool) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        TarWriter {
            builder,
            links: HashMap::new(),
            overlay,
            entries: 0,
        }
    }

    /// Number of entries written so far.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn finish(mut self) -> Result<W> {
        self.builder
            .finish()
            .ctx(|| "finishing the tar stream".to_string())?;
        self.builder
            .into_inner()
            .ctx(|| "finishing the tar stream".to_string())
    }

    /// Archives `src` as `name` (and, for a directory, its contents below `name/`). With an
    /// empty `name`, only the contents of the directory `src` are archived, at the root.
    pub(crate) fn append_tree(&mut self, src: &Path, name: &str) -> Result<()> {
        let meta = fs::symlink_metadata(src).ctx(|| format!("inspecting {}", src.display()))?;
        if !name.is_empty() {
            self.append_entry(src, name, &meta)?;
        }
        if meta.is_dir() {
            self.append_children(src, name)?;
        }
        Ok(())
    }

    fn append_children(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .ctx(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(|| format!("reading {}", dir.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let path = dir.join(&n);
            let child = if prefix.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{prefix}/{}", n.to_string_lossy())
            };
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Removed while we walk (a running container): skip it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
            };
            self.append_entry(&path, &child, &meta)?;
            if meta.is_dir() {
                self.append_children(&path, &child)?;
            }
        }
        Ok(())
    }

    fn base_header(meta: &Metadata) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(0);
        h
    }

    fn write_pax(&mut self, name: &str, xattrs: &[(String, Vec<u8>)]) -> Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut data = Vec::new();
        for (k, v) in xattrs {
            data.extend_from_slice(&pax_record(&format!("SCHILY.xattr.{k}"), v));
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        // The name of a PAX header entry is informational only.
        let short: String = format!("PaxHeaders/{}", name.rsplit('/').next().unwrap_or(""))
            .chars()
            .take(90)
            .collect();
        h.set_path(&short)
            .or_else(|_| h.set_path("PaxHeaders"))
            .ctx(|| format!("archiving {name}"))?;
        h.set_cksum();
        self.builder
            .append(&h, &data[..])
            .ctx(|| format!("archiving {name}"))
    }

    fn append_entry(&mut self, path: &Path, name: &str, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        let ctx = || format!("archiving {}", path.display());
        if ft.is_socket() {
            // Like Docker (Go's archive/tar cannot represent sockets).
            return Ok(());
        }
        if self.overlay && ft.is_char_device() && meta.rdev() == 0 {
            let (dir, base) = match name.rsplit_once('/') {
                Some((d, b)) => (format!("{d}/"), b),
                None => (String::new(), name),
            };
            let mut h = Self::base_header(meta);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            self.builder
                .append_data(&mut h, format!("{dir}{WHITEOUT_PREFIX}{base}"), io::empty())
                .ctx(ctx)?;
            self.entries += 1;
            return Ok(());
        }
        let mut xattrs = read_xattrs(path)?;
        let opaque = self.overlay
            && ft.is_dir()
            && get_xattr(path, OPAQUE_XATTR)?.is_some_and(|v| v == b"y");
        xattrs.retain(|(k, _)| !k.starts_with("trusted.overlay."));
        let mut h = Self::base_header(meta);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.write_pax(name, &xattrs)?;
            self.builder
                .append_data(&mut h, format!("{name}/"), io::empty())
                .ctx(ctx)?;
            self.entries += 1;
            if opaque {
                let mut wh = tar::Header::new_gnu();
                wh.set_entry_type(tar::EntryType::Regular);
                wh.set_mode(meta.mode() & 0o777);
                wh.set_uid(u64::from(meta.uid()));
                wh.set_gid(u64::from(meta.gid()));
                wh.set_mtime(0);
                wh.set_size(0);
                self.builder
                    .append_data(&mut wh, format!("{name}/{WHITEOUT_OPAQUE}"), io::empty())
                    .ctx(ctx)?;
                self.entries += 1;
            }
            return Ok(());
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).ctx(ctx)?;
            h.set_entry_type(tar::EntryType::Symlink);
            self.write_pax(name, &xattrs)?;
            self.builder.append_link(&mut h, name, &target).ctx(ctx)?;
            self.entries += 1;
            return Ok(());
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    h.set_entry_type(tar::EntryType::Link);
                    self.builder.append_link(&mut h, name, &first).ctx(ctx)?;
                    self.entries += 1;
                    return Ok(());
                }
                self.links.insert(key, name.to_string());
            }
            let size = meta.len();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(ctx(), e)),
            };
            // Exactly `size` bytes even if the file changes under us.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            self.write_pax(name, &xattrs)?;
            self.builder.append_data(&mut h, name, data).ctx(ctx)?;
            self.entries += 1;
            return Ok(());
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            return Ok(());
        };
        h.set_entry_type(kind);
        if kind != tar::EntryType::Fifo {
            let rdev = meta.rdev();
            h.set_device_major(rustix::fs::major(rdev)).ctx(ctx)?;
            h.set_device_minor(rustix::fs::minor(rdev)).ctx(ctx)?;
        }
        self.write_pax(name, &xattrs)?;
        self.builder
            .append_data(&mut h, name, io::empty())
            .ctx(ctx)?;
        self.entries += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        let r = pax_record("path", b"a");
        assert_eq!(r, b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = pax_record("k", &long);
        let s = String::from_utf8(r.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }
}
