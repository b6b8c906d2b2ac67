//! Docker's json-file log driver: one JSON object per line (`log`, `stream`, `time`), with
//! rotation by size (`max-size`) keeping `max-file` files (`x.log`, `x.log.1`, ...).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Docker splits lines longer than this into partial entries.
const MAX_ENTRY: usize = 16 * 1024;

pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Unterminated tail of each stream (stdout, stderr).
    partial: [Vec<u8>; 2],
}

impl LogFile {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> std::io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
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
            for chunk in buf[start..end].chunks(MAX_ENTRY) {
                entry(&mut out, stream, chunk);
            }
            start = end;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_ENTRY {
            let tail = rest.split_off(MAX_ENTRY);
            entry(&mut out, stream, &rest);
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
                entry(&mut out, stream, &p);
            }
        }
        self.append(&out)
    }

    fn append(&mut self, out: &[u8]) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if self.max_size > 0 && self.size > 0 && self.size + out.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(out)?;
        self.size += out.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.max_files > 1 {
            for n in (1..self.max_files - 1).rev() {
                let from = name(n);
                if from.exists() {
                    std::fs::rename(&from, name(n + 1))?;
                }
            }
            std::fs::rename(&self.path, name(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
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
        let mut l = LogFile::open(&p, 0, 1).unwrap();
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
        let mut l = LogFile::open(&p, 200, 3).unwrap();
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
}
