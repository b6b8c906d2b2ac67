//! The raft directory on disk: an append-only log file of sealed records (hard state, log
//! entries, the compaction point) and one sealed file per snapshot, all written with fsync.
//!
//! Record layout: `len u32 | !len u32 | kind u8 | index u64 | nonce [12] | sealed [len]`,
//! little endian, `sealed` being AES-256-GCM ciphertext and tag with `kind, index` as
//! associated data. A record cut short at the end of the log (a crash in the middle of a
//! write) or a zero-filled tail is dropped; any other damage, or a wrong key, is an error.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};
use ring::aead::NONCE_LEN;

use super::seal::{Sealer, TAG_LEN};
use super::Error;

const WAL: &str = "wal";
const WAL_TMP: &str = "wal.tmp";
const SNAP_PREFIX: &str = "snap-";
const SNAP_SUFFIX: &str = ".snap";

const KIND_META: u8 = 1;
const KIND_BASE: u8 = 2;
const KIND_HARD_STATE: u8 = 3;
const KIND_ENTRY: u8 = 4;
const KIND_SNAPSHOT: u8 = 5;

const META_MAGIC: &[u8] = b"berth-raft-log/1";
const HEADER_LEN: usize = 4 + 4 + 1 + 8 + NONCE_LEN;

/// What was read back from the raft directory.
pub(crate) struct Loaded {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Index and term of the entry just before the first entry kept.
    pub base: (u64, u64),
    pub entries: Vec<Entry>,
}

/// The open raft directory.
pub(crate) struct Disk {
    dir: PathBuf,
    sealer: Sealer,
    id: u64,
    wal: File,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn snap_name(index: u64) -> String {
    format!("{SNAP_PREFIX}{index:016x}{SNAP_SUFFIX}")
}

fn parse_snap_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(SNAP_PREFIX)?.strip_suffix(SNAP_SUFFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

fn write_file_durably(dir: &Path, name: &str, tmp: &str, data: &[u8]) -> Result<(), Error> {
    let tmp_path = dir.join(tmp);
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(io_err(format!("creating {}", tmp_path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", tmp_path.display())))?;
    drop(f);
    fs::rename(&tmp_path, &path).map_err(io_err(format!(
        "renaming {} to {}",
        tmp_path.display(),
        path.display()
    )))?;
    sync_dir(dir)
}

fn encode(
    sealer: &Sealer,
    kind: u8,
    index: u64,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let (nonce, sealed) = sealer.seal(kind, index, plain).map_err(Error::State)?;
    let len = u32::try_from(sealed.len()).map_err(|_| {
        Error::State(format!(
            "a raft record of {} bytes is too large",
            plain.len()
        ))
    })?;
    out.reserve(HEADER_LEN + sealed.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(())
}

fn pb_bytes(m: &impl protobuf::Message) -> Result<Vec<u8>, Error> {
    m.write_to_bytes()
        .map_err(|e| Error::State(format!("encoding a raft record: {e}")))
}

/// One record read back: kind, index and plaintext.
struct Record {
    kind: u8,
    index: u64,
    plain: Vec<u8>,
}

/// How a sealed file ends.
enum Tail {
    Clean,
    /// The last record was cut short (or the tail is zero-filled) from this offset.
    Torn(usize),
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Parses and opens every record of `data`. A damaged record that is not a torn tail is an
/// error; the first record failing authentication means a wrong key.
fn parse(sealer: &Sealer, data: &[u8], file: &Path) -> Result<(Vec<Record>, Tail), Error> {
    let mut records = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        if rest.len() < HEADER_LEN {
            return Ok((records, Tail::Torn(off)));
        }
        let len = le_u32(&rest[0..4]);
        let check = le_u32(&rest[4..8]);
        if len != !check {
            if rest.iter().all(|b| *b == 0) {
                return Ok((records, Tail::Torn(off)));
            }
            return Err(Error::Corrupt(format!(
                "{}: the record header at offset {off} is damaged",
                file.display()
            )));
        }
        let len = len as usize;
        if len < TAG_LEN {
            return Err(Error::Corrupt(format!(
                "{}: the record at offset {off} is too short",
                file.display()
            )));
        }
        if rest.len() - HEADER_LEN < len {
            return Ok((records, Tail::Torn(off)));
        }
        let kind = rest[8];
        let index = le_u64(&rest[9..17]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&rest[17..HEADER_LEN]);
        let Some(plain) = sealer.open(kind, index, nonce, &rest[HEADER_LEN..HEADER_LEN + len])
        else {
            if off == 0 {
                return Err(Error::Decrypt(file.to_path_buf()));
            }
            return Err(Error::Corrupt(format!(
                "{}: the record at offset {off} fails authentication (damaged data)",
                file.display()
            )));
        };
        records.push(Record { kind, index, plain });
        off += HEADER_LEN + len;
    }
    Ok((records, Tail::Clean))
}

impl Disk {
    /// Whether the directory holds a raft log.
    pub(crate) fn exists(dir: &Path) -> bool {
        dir.join(WAL).exists()
    }

    /// Creates a fresh raft directory (any leftover snapshot of an unfinished creation is
    /// removed) holding `snapshot`, `hard_state` and the compaction point `base`.
    pub(crate) fn create(
        dir: &Path,
        dek: &[u8; 32],
        id: u64,
        snapshot: Option<&Snapshot>,
        hard_state: &HardState,
        base: (u64, u64),
    ) -> Result<Disk, Error> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let sealer = Sealer::new(dek).map_err(Error::State)?;
        remove_leftovers(dir, u64::MAX)?;
        if let Some(snap) = snapshot {
            write_snapshot(&sealer, dir, snap)?;
        }
        let wal = write_log(&sealer, dir, id, base, hard_state, &[])?;
        Ok(Disk {
            dir: dir.to_path_buf(),
            sealer,
            id,
            wal,
        })
    }

    /// Opens an existing raft directory and reads everything back.
    pub(crate) fn open(dir: &Path, dek: &[u8; 32], id: u64) -> Result<(Disk, Loaded), Error> {
        let sealer = Sealer::new(dek).map_err(Error::State)?;
        let _ = fs::remove_file(dir.join(WAL_TMP));
        let wal_path = dir.join(WAL);
        let mut data = Vec::new();
        File::open(&wal_path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io_err(format!("reading {}", wal_path.display())))?;
        let (records, tail) = parse(&sealer, &data, &wal_path)?;
        let mut records = records.into_iter();
        match records.next() {
            Some(r) if r.kind == KIND_META && r.plain.len() == META_MAGIC.len() + 8 => {
                if &r.plain[..META_MAGIC.len()] != META_MAGIC {
                    return Err(Error::Corrupt(format!(
                        "{}: not a berth raft log",
                        wal_path.display()
                    )));
                }
                let owner = le_u64(&r.plain[META_MAGIC.len()..]);
                if owner != id {
                    return Err(Error::State(format!(
                        "the raft data in {} belongs to raft node {owner:x}, not {id:x}",
                        dir.display()
                    )));
                }
            }
            _ => {
                return Err(Error::Corrupt(format!(
                    "{}: the log does not start with its header",
                    wal_path.display()
                )))
            }
        }
        let mut hard_state = HardState::default();
        let mut base = (0u64, 0u64);
        let mut entries: Vec<Entry> = Vec::new();
        for r in records {
            match r.kind {
                KIND_BASE if r.plain.len() == 16 => {
                    base = (le_u64(&r.plain[..8]), le_u64(&r.plain[8..]));
                    entries.clear();
                }
                KIND_HARD_STATE => {
                    hard_state = HardState::parse_from_bytes(&r.plain).map_err(|e| {
                        Error::Corrupt(format!("{}: a hard state record: {e}", wal_path.display()))
                    })?;
                }
                KIND_ENTRY => {
                    let e = Entry::parse_from_bytes(&r.plain).map_err(|e| {
                        Error::Corrupt(format!("{}: a log entry record: {e}", wal_path.display()))
                    })?;
                    if e.index != r.index || e.index <= base.0 {
                        return Err(Error::Corrupt(format!(
                            "{}: log entry {} is out of place",
                            wal_path.display(),
                            e.index
                        )));
                    }
                    let next = base.0 + 1 + entries.len() as u64;
                    if e.index > next {
                        return Err(Error::Corrupt(format!(
                            "{}: log entry {} follows entry {} (gap)",
                            wal_path.display(),
                            e.index,
                            next - 1
                        )));
                    }
                    entries.truncate((e.index - base.0 - 1) as usize);
                    entries.push(e);
                }
                kind => {
                    return Err(Error::Corrupt(format!(
                        "{}: unknown record kind {kind} at index {}",
                        wal_path.display(),
                        r.index
                    )))
                }
            }
        }
        if let Tail::Torn(off) = tail {
            tracing::warn!(
                "{}: dropping a record cut short at offset {off} (interrupted write)",
                wal_path.display()
            );
            OpenOptions::new()
                .write(true)
                .open(&wal_path)
                .and_then(|f| {
                    f.set_len(off as u64)?;
                    f.sync_all()
                })
                .map_err(io_err(format!("truncating {}", wal_path.display())))?;
        }
        let snapshot = read_latest_snapshot(&sealer, dir)?;
        match &snapshot {
            None if base.0 != 0 => {
                return Err(Error::Corrupt(format!(
                    "{}: the log starts after index {} but there is no snapshot",
                    wal_path.display(),
                    base.0
                )))
            }
            Some(snap) if snap.get_metadata().index < base.0 => {
                return Err(Error::Corrupt(format!(
                    "{}: the log starts after index {} but the newest snapshot is at {}",
                    wal_path.display(),
                    base.0,
                    snap.get_metadata().index
                )))
            }
            _ => {}
        }
        if let Some(snap) = &snapshot {
            let meta = snap.get_metadata();
            let has_point = meta.index == base.0 && meta.term == base.1
                || (meta.index > base.0
                    && entries
                        .get((meta.index - base.0 - 1) as usize)
                        .is_some_and(|e| e.term == meta.term));
            if !has_point {
                // A snapshot received from the leader replaced the log, and the log was
                // not rewritten yet: what the log holds is superseded.
                entries.clear();
                base = (meta.index, meta.term);
            }
            if hard_state.commit < meta.index {
                hard_state.commit = meta.index;
            }
            if hard_state.term < meta.term {
                hard_state.term = meta.term;
            }
        }
        let last = base.0 + entries.len() as u64;
        if hard_state.commit > last {
            tracing::warn!(
                "raft log in {}: commit index {} beyond the last entry {last}; using {last}",
                dir.display(),
                hard_state.commit
            );
            hard_state.commit = last;
        }
        let wal = OpenOptions::new()
            .append(true)
            .open(&wal_path)
            .map_err(io_err(format!("opening {}", wal_path.display())))?;
        let disk = Disk {
            dir: dir.to_path_buf(),
            sealer,
            id,
            wal,
        };
        Ok((
            disk,
            Loaded {
                hard_state,
                snapshot,
                base,
                entries,
            },
        ))
    }

    /// Appends entries then the hard state; with `sync`, they are on disk when this returns.
    pub(crate) fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), Error> {
        let mut buf = Vec::new();
        for e in entries {
            encode(&self.sealer, KIND_ENTRY, e.index, &pb_bytes(e)?, &mut buf)?;
        }
        if let Some(hs) = hard_state {
            encode(&self.sealer, KIND_HARD_STATE, 0, &pb_bytes(hs)?, &mut buf)?;
        }
        if buf.is_empty() {
            return Ok(());
        }
        let what = || format!("writing {}", self.dir.join(WAL).display());
        self.wal.write_all(&buf).map_err(io_err(what()))?;
        if sync {
            self.wal.sync_data().map_err(io_err(what()))?;
        }
        Ok(())
    }

    /// Stores a snapshot durably in its own sealed file.
    pub(crate) fn save_snapshot(&mut self, snap: &Snapshot) -> Result<(), Error> {
        write_snapshot(&self.sealer, &self.dir, snap)
    }

    /// Replaces the log with one holding the compaction point `base`, the hard state and
    /// `entries`, then removes snapshots older than the newest one.
    pub(crate) fn rewrite(
        &mut self,
        base: (u64, u64),
        hard_state: &HardState,
        entries: &[Entry],
    ) -> Result<(), Error> {
        self.wal = write_log(&self.sealer, &self.dir, self.id, base, hard_state, entries)?;
        let newest = snapshot_indexes(&self.dir)?.into_iter().max().unwrap_or(0);
        remove_leftovers(&self.dir, newest)
    }
}

fn write_snapshot(sealer: &Sealer, dir: &Path, snap: &Snapshot) -> Result<(), Error> {
    let index = snap.get_metadata().index;
    let mut buf = Vec::new();
    encode(sealer, KIND_SNAPSHOT, index, &pb_bytes(snap)?, &mut buf)?;
    let name = snap_name(index);
    write_file_durably(dir, &name, &format!("{name}.tmp"), &buf)
}

/// Writes a whole new log (header, compaction point, hard state, entries) in place of the
/// old one and opens it for appending.
fn write_log(
    sealer: &Sealer,
    dir: &Path,
    id: u64,
    base: (u64, u64),
    hard_state: &HardState,
    entries: &[Entry],
) -> Result<File, Error> {
    let mut buf = Vec::new();
    let mut meta = META_MAGIC.to_vec();
    meta.extend_from_slice(&id.to_le_bytes());
    encode(sealer, KIND_META, 0, &meta, &mut buf)?;
    let mut b = base.0.to_le_bytes().to_vec();
    b.extend_from_slice(&base.1.to_le_bytes());
    encode(sealer, KIND_BASE, base.0, &b, &mut buf)?;
    encode(sealer, KIND_HARD_STATE, 0, &pb_bytes(hard_state)?, &mut buf)?;
    for e in entries {
        encode(sealer, KIND_ENTRY, e.index, &pb_bytes(e)?, &mut buf)?;
    }
    write_file_durably(dir, WAL, WAL_TMP, &buf)?;
    let path = dir.join(WAL);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))
}

/// Indexes of the snapshot files in `dir`.
fn snapshot_indexes(dir: &Path) -> Result<Vec<u64>, Error> {
    let rd = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(io_err(format!("listing {}", dir.display())))?;
        if let Some(i) = ent.file_name().to_str().and_then(parse_snap_name) {
            out.push(i);
        }
    }
    Ok(out)
}

/// Removes temporary files and snapshots older than `keep` (all of them for `u64::MAX`).
fn remove_leftovers(dir: &Path, keep: u64) -> Result<(), Error> {
    let rd = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    for ent in rd {
        let ent = ent.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = name.ends_with(".tmp")
            || parse_snap_name(name).is_some_and(|i| keep == u64::MAX || i < keep);
        if stale {
            let p = ent.path();
            fs::remove_file(&p).map_err(io_err(format!("removing {}", p.display())))?;
        }
    }
    Ok(())
}

/// Reads and opens the newest snapshot file, if any.
fn read_latest_snapshot(sealer: &Sealer, dir: &Path) -> Result<Option<Snapshot>, Error> {
    let Some(index) = snapshot_indexes(dir)?.into_iter().max() else {
        return Ok(None);
    };
    let path = dir.join(snap_name(index));
    let mut data = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(format!("reading {}", path.display())))?;
    let (records, tail) = parse(sealer, &data, &path)?;
    let record = match (records.as_slice(), tail) {
        ([r], Tail::Clean) if r.kind == KIND_SNAPSHOT && r.index == index => &records[0],
        _ => {
            return Err(Error::Corrupt(format!(
                "{}: not a complete snapshot file",
                path.display()
            )))
        }
    };
    let snap = Snapshot::parse_from_bytes(&record.plain)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    if snap.get_metadata().index != index {
        return Err(Error::Corrupt(format!(
            "{}: the snapshot inside is at index {}",
            path.display(),
            snap.get_metadata().index
        )));
    }
    Ok(Some(snap))
}
