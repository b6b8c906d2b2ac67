//! Small file helpers every berth crate that keeps records needs: atomic writes and random
//! ids. No knowledge of what the records are.

use std::io::Write;
use std::path::Path;

/// Write `data` to `path` atomically: temp file, rename. With `durable`, the file is
/// fsynced first, so it also survives a power loss (not only a crash of the process). A
/// failed write (a full disk) leaves `path` as it was and no temp file behind.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// 64 random hex digits (container, exec, network and anonymous volume ids) from the
/// kernel's random pool.
pub fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_ids() {
        let dir = std::env::temp_dir().join(format!("berth-fsutil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("r.json");
        write_atomic(&f, b"one", true).unwrap();
        write_atomic(&f, b"two", false).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert!(!dir.join("r.tmp").exists());
        // A write that cannot happen leaves nothing behind.
        assert!(write_atomic(&dir.join("missing/x.json"), b"x", true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()) && a != b);
    }
}
