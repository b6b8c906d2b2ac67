//! Docker's file log drivers: json-file (one JSON object per line: `log`, `stream`, `time`)
//! and local (protobuf entries framed by their length, see `berth_api::locallog`), with
//! rotated files gzip-compressed if asked (local's default), and rotation by size (`max-size`) keeping `max-file` files
//! (`x.log`, `x.log.1` or `x.log.1.gz`, ...).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Docker splits lines longer than this into partial entries.
const MAX_ENTRY: usize = 16 * 1024;

/// How entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// json-file; rotated files are compressed if `compress`.
    Json { compress: bool },
    /// Docker's `local` driver; rotated files are compressed if `compress`.
    Local { compress: bool },
}

pub struct LogFile {
    format: Format,
    /// Numbers the lines split into partial entries (their id in the local format).
    split_lines: u64,
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Unterminated tail of each stream (stdout, stderr).
    partial: [Vec<u8>; 2],
}

impl LogFile {
    pub fn open(
        path: &Path,
        max_size: u64,
        max_files: u32,
        format: Format,
    ) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            format,
            split_lines: 0,
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Record output of `stream` (1 stdout, 2 stderr); complete lines are written at once.
    pub fn write(&mut self, stream: u8, data: &[u8]) -> std::io::Result<()> {
        let idx = usize::from(stream == 2);
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        let mut out = Vec::new();
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos + 1;
            match self.format {
                Format::Json { .. } => {
                    for chunk in buf[start..end].chunks(MAX_ENTRY) {
                        entry(&mut out, stream, chunk);
                    }
                }
                Format::Local { .. } => {
                    let line = &buf[start..end - 1];
                    if line.len() <= MAX_ENTRY {
                        local_entry(&mut out, stream, line, None);
                    } else {
                        self.split_lines += 1;
                        let n = line.len().div_ceil(MAX_ENTRY);
                        for (i, chunk) in line.chunks(MAX_ENTRY).enumerate() {
                            let part = (self.split_lines, i + 1, i + 1 == n);
                            local_entry(&mut out, stream, chunk, Some(part));
                        }
                    }
                }
            }
            start = end;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_ENTRY {
            let tail = rest.split_off(MAX_ENTRY);
            self.unterminated(&mut out, stream, &rest);
            rest = tail;
        }
        self.partial[idx] = rest;
        self.append(&out)
    }

    /// Write out unterminated tails (at exit).
    pub fn flush_partial(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        for (idx, stream) in [(0usize, 1u8), (1, 2)] {
            let p = std::mem::take(&mut self.partial[idx]);
            if !p.is_empty() {
                self.unterminated(&mut out, stream, &p);
            }
        }
        self.append(&out)
    }

    /// Output without its newline (yet): a json-file line without "\n", a partial local entry.
    fn unterminated(&mut self, out: &mut Vec<u8>, stream: u8, data: &[u8]) {
        match self.format {
            Format::Json { .. } => entry(out, stream, data),
            Format::Local { .. } => {
                self.split_lines += 1;
                local_entry(out, stream, data, Some((self.split_lines, 1, false)));
            }
        }
    }

    /// Write whole entries, rotating before the one that would take the file past max-size
    /// (a file holds at least one entry).
    fn append(&mut self, mut out: &[u8]) -> std::io::Result<()> {
        while !out.is_empty() {
            if self.max_size == 0 || self.size + out.len() as u64 <= self.max_size {
                self.file.write_all(out)?;
                self.size += out.len() as u64;
                return Ok(());
            }
            let room = usize::try_from(self.max_size.saturating_sub(self.size)).unwrap_or(0);
            let mut cut = self.entries_within(out, room);
            if cut == 0 {
                if self.size > 0 {
                    self.rotate()?;
                    continue;
                }
                // An entry larger than a whole file gets a file of its own.
                cut = self
                    .entries_within(out, usize::MAX)
                    .min(self.first_entry(out));
            }
            self.file.write_all(&out[..cut])?;
            self.size += cut as u64;
            out = &out[cut..];
            if !out.is_empty() {
                self.rotate()?;
            }
        }
        Ok(())
    }

    /// The length of the first entry of `out`.
    fn first_entry(&self, out: &[u8]) -> usize {
        match self.format {
            Format::Json { .. } => out
                .iter()
                .position(|&b| b == b'\n')
                .map_or(out.len(), |p| p + 1),
            Format::Local { .. } => local_frame_len(out).unwrap_or(out.len()),
        }
    }

    /// How many bytes of whole entries at the start of `out` fit in `room`.
    fn entries_within(&self, out: &[u8], room: usize) -> usize {
        let mut used = 0;
        while used < out.len() {
            let n = self.first_entry(&out[used..]);
            if used + n > room {
                break;
            }
            used += n;
        }
        used
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let compress = matches!(
            self.format,
            Format::Json { compress: true } | Format::Local { compress: true }
        );
        let name = |n: u32, gz: bool| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            if gz {
                p.push(".gz");
            }
            PathBuf::from(p)
        };
        if self.max_files > 1 {
            for n in (1..self.max_files - 1).rev() {
                let from = name(n, compress);
                if from.exists() {
                    std::fs::rename(&from, name(n + 1, compress))?;
                }
            }
            std::fs::rename(&self.path, name(1, false))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        // The live file is back first: a compression that fails (a full disk) leaves the
        // rotated file uncompressed, and logging goes on.
        if compress && self.max_files > 1 {
            let _ = gzip(&name(1, false), &name(1, true));
        }
        Ok(())
    }
}

/// The length of the framed local entry at the start of `b`.
fn local_frame_len(b: &[u8]) -> Option<usize> {
    let len: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(len) as usize + 8).filter(|n| *n <= b.len())
}

/// Compress `from` into `to` (gzip, its header naming the time of the last entry as dockerd's
/// rotation does) and remove `from`.
fn gzip(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = File::open(from)?;
    let meta = serde_json::json!({ "LastTime": berth_api::timefmt::now() }).to_string();
    let tmp = to.with_extension("tmp");
    let f = File::create(&tmp)?;
    let mut gz = flate2::GzBuilder::new()
        .extra(meta.into_bytes())
        .write(f, flate2::Compression::fast());
    let done = std::io::copy(&mut src, &mut gz)
        .and_then(|_| gz.finish())
        .and_then(|_| std::fs::rename(&tmp, to));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::remove_file(from)
}

/// A local-format entry; `part` is (line id, ordinal, last) for pieces of a split line.
fn local_entry(out: &mut Vec<u8>, stream: u8, line: &[u8], part: Option<(u64, usize, bool)>) {
    let time_nano = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut e = berth_api::locallog::Entry {
        source: if stream == 2 { "stderr" } else { "stdout" }.into(),
        time_nano,
        line: line.to_vec(),
        ..Default::default()
    };
    if let Some((id, ordinal, last)) = part {
        e.partial = true;
        e.id = format!("{id:016x}");
        e.ordinal = i32::try_from(ordinal).unwrap_or(i32::MAX);
        e.last = last;
    }
    berth_api::locallog::encode(out, &e);
}

fn entry(out: &mut Vec<u8>, stream: u8, line: &[u8]) {
    let v = serde_json::json!({
        "log": String::from_utf8_lossy(line),
        "stream": if stream == 2 { "stderr" } else { "stdout" },
        "time": berth_api::timefmt::now(),
    });
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn splits_lines_and_keeps_partials() {
        let dir = std::env::temp_dir().join(format!("berth-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.log");
        let mut l = LogFile::open(&p, 0, 1, Format::Json { compress: false }).unwrap();
        l.write(1, b"one\ntw").unwrap();
        l.write(2, b"err\n").unwrap();
        l.write(1, b"o\nthree").unwrap();
        l.flush_partial().unwrap();
        let v = lines(&p);
        let got: Vec<(&str, &str)> = v
            .iter()
            .map(|e| (e["log"].as_str().unwrap(), e["stream"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("one\n", "stdout"),
                ("err\n", "stderr"),
                ("two\n", "stdout"),
                ("three", "stdout")
            ]
        );
        assert!(v[0]["time"].as_str().unwrap().ends_with('Z'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("berth-logrot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.log");
        let mut l = LogFile::open(&p, 200, 3, Format::Json { compress: false }).unwrap();
        for i in 0..20 {
            l.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(p.exists());
        assert!(dir.join("a.log.1").exists());
        assert!(dir.join("a.log.2").exists());
        assert!(!dir.join("a.log.3").exists());
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
        let last = lines(&p);
        assert_eq!(last.last().unwrap()["log"], "line 19\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_format_rotates_compressed() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("berth-loglocal-{}", std::process::id()));
        let p = dir.join("local-logs/container.log");
        let mut l = LogFile::open(&p, 300, 3, Format::Local { compress: true }).unwrap();
        for i in 0..40 {
            l.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        l.write(2, b"tail").unwrap();
        l.flush_partial().unwrap();
        let gz = dir.join("local-logs/container.log.1.gz");
        assert!(gz.exists());
        assert!(dir.join("local-logs/container.log.2.gz").exists());
        assert!(!dir.join("local-logs/container.log.3.gz").exists());
        assert!(!dir.join("local-logs/container.log.1").exists());
        let mut old = Vec::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut old)
            .unwrap();
        let (entries, used) = berth_api::locallog::decode(&old);
        assert_eq!(used, old.len());
        assert!(entries.iter().all(|e| e.source == "stdout" && !e.partial));
        let (live, _) = berth_api::locallog::decode(&std::fs::read(&p).unwrap());
        let last = live.last().unwrap();
        assert_eq!(
            (last.source.as_str(), last.text()),
            ("stderr", b"tail".to_vec())
        );
        let last_out = entries
            .iter()
            .chain(&live)
            .rfind(|e| e.source == "stdout")
            .unwrap();
        assert_eq!(last_out.text(), b"line 39\n");
        // Rotation keeps each file within max-size.
        assert!(old.len() <= 300, "{}", old.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
