//! `GET /containers/{id}/logs`: reads the json-file log (rotated files included), filters by
//! stream, time and tail, and follows new lines with inotify until the container stops.

use crate::state::Container;
use berth_api::stdcopy;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub tty: bool,
}

/// Docker's `since`/`until` values: unix seconds with optional fraction.
pub fn parse_unix(s: &str) -> Option<SystemTime> {
    if s.is_empty() || s == "0" {
        return None;
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = frac.to_string();
    nanos.truncate(9);
    while nanos.len() < 9 {
        nanos.push('0');
    }
    let nanos: u32 = nanos.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

struct Entry {
    stream: u8,
    time: String,
    log: String,
}

fn parse_line(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Entry {
        stream: if v["stream"] == "stderr" {
            stdcopy::STDERR
        } else {
            stdcopy::STDOUT
        },
        time: v["time"].as_str()?.to_string(),
        log: v["log"].as_str()?.to_string(),
    })
}

fn render(e: &Entry, o: &Options) -> Option<Vec<u8>> {
    if (e.stream == stdcopy::STDOUT && !o.stdout) || (e.stream == stdcopy::STDERR && !o.stderr) {
        return None;
    }
    if o.since.is_some() || o.until.is_some() {
        let t = berth_api::timefmt::parse(&e.time)?;
        if o.since.is_some_and(|s| t < s) || o.until.is_some_and(|u| t > u) {
            return None;
        }
    }
    let mut text = Vec::new();
    if o.timestamps {
        text.extend_from_slice(e.time.as_bytes());
        text.push(b' ');
    }
    text.extend_from_slice(e.log.as_bytes());
    Some(if o.tty {
        text
    } else {
        stdcopy::frame(e.stream, &text)
    })
}

fn files(log: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in (1..100).rev() {
        let mut p = log.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if p.exists() {
            out.push(p);
        }
    }
    out.push(log.to_path_buf());
    out
}

/// Stream the logs into `tx`; returns when done or the receiver is gone.
pub async fn stream(c: Arc<Container>, o: Options, tx: mpsc::Sender<Vec<u8>>) {
    let log = c.paths.log();
    let o2 = o.clone();
    let log2 = log.clone();
    // The backlog, read on a blocking thread.
    let backlog = tokio::task::spawn_blocking(move || {
        let mut chunks = Vec::new();
        for f in files(&log2) {
            let Ok(file) = std::fs::File::open(&f) else {
                continue;
            };
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some(e) = parse_line(&line) {
                    if let Some(b) = render(&e, &o2) {
                        chunks.push(b);
                    }
                }
            }
        }
        if let Some(n) = o2.tail {
            let skip = chunks.len().saturating_sub(n);
            chunks.drain(..skip);
        }
        let offset = std::fs::metadata(&log2).map(|m| m.len()).unwrap_or(0);
        (chunks, offset)
    })
    .await;
    let Ok((chunks, mut offset)) = backlog else {
        return;
    };
    for ch in chunks {
        if tx.send(ch).await.is_err() {
            return;
        }
    }
    if !o.follow || !c.rec().is_running() {
        return;
    }
    let Ok(ino) = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) else {
        return;
    };
    let Some(dir) = log.parent() else { return };
    if ino
        .add_watch(
            dir,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .is_err()
    {
        return;
    }
    // SAFETY: InotifyFd owns the inotify fd and returns that same open fd for its whole life.
    let Ok(afd) = (unsafe { AsyncFd::register(InotifyFd(ino)) }) else {
        return;
    };
    let mut progress = c.progress.subscribe();
    let seen = progress.borrow().exits;
    loop {
        let done = progress.borrow().exits > seen || progress.borrow().removed;
        let (chunks, new_offset) = read_from(&log, offset, &o);
        offset = new_offset;
        for ch in chunks {
            if tx.send(ch).await.is_err() {
                return;
            }
        }
        if done {
            return;
        }
        tokio::select! {
            r = afd.readable() => {
                if let Ok(mut guard) = r {
                    let _ = guard.get_inner().0.read_events();
                    guard.clear_ready();
                }
            }
            _ = progress.changed() => {}
            _ = tx.closed() => return,
        }
    }
}

/// An inotify instance the reactor can watch.
struct InotifyFd(Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// New entries after `offset`; a shrunk file (rotated) is read from its start.
fn read_from(log: &Path, offset: u64, o: &Options) -> (Vec<Vec<u8>>, u64) {
    let Ok(mut f) = std::fs::File::open(log) else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < offset { 0 } else { offset };
    if f.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), offset);
    }
    let mut out = Vec::new();
    let mut pos = start;
    let mut reader = BufReader::new(f);
    let mut line = String::new();
    while let Ok(n) = reader.read_line(&mut line) {
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Some(e) = parse_line(line.trim_end()) {
            if let Some(b) = render(&e, o) {
                out.push(b);
            }
        }
        line.clear();
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times() {
        assert_eq!(parse_unix("0"), None);
        let t = parse_unix("1700000000.5").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_700_000_000_500
        );
    }
}
