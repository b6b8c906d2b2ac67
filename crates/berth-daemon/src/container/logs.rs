//! `GET /containers/{id}/logs`: reads the json-file or local log (rotated files included,
//! compressed ones too), filters by stream, time and tail, and follows new entries with
//! inotify until the container stops (or the `until` bound passes). Read only: it knows only the
//! container's handle and never writes, rotates or removes a log file (the shim writes them).

use super::handle::Container;
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
    /// `details=1`: the log attributes (`k=v,...`) that go before each line.
    pub details: Option<String>,
}

/// The attributes `details=1` shows, as Docker's log drivers record them: the container's
/// labels and environment variables named by the `labels` and `env` log options,
/// `key=value` (value query-escaped) joined by commas.
pub fn details(
    log_opts: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
    env: &[String],
) -> String {
    format_details(&detail_attrs(log_opts, labels, env))
}

/// `key=value` pairs (both query-escaped, as dockerd's) sorted by key, joined by commas.
pub fn format_details(attrs: &std::collections::BTreeMap<String, String>) -> String {
    attrs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The attributes of [`details`], unformatted.
pub fn detail_attrs(
    log_opts: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
    env: &[String],
) -> std::collections::BTreeMap<String, String> {
    let wanted = |opt: &str| -> Vec<String> {
        log_opts
            .get(opt)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut attrs = std::collections::BTreeMap::new();
    for k in wanted("labels") {
        if let Some(v) = labels.get(&k) {
            attrs.insert(k, v.clone());
        }
    }
    for k in wanted("env") {
        if let Some(v) = env
            .iter()
            .find_map(|e| e.split_once('=').filter(|(n, _)| *n == k).map(|(_, v)| v))
        {
            attrs.insert(k, v.to_string());
        }
    }
    attrs
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space is `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A log `since`/`until` bound from nanoseconds since the epoch (see
/// `Query::unix_time`); 0 means no bound, as in Docker.
pub fn bound(nanos: Option<i64>) -> Option<SystemTime> {
    let n = nanos.filter(|n| *n != 0)?;
    let d = std::time::Duration::from_nanos(n.unsigned_abs());
    if n > 0 {
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(d)
    }
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

/// A local-format entry as the json-file reader sees its lines.
fn from_local(e: berth_api::locallog::Entry) -> Entry {
    let d = std::time::Duration::from_nanos(e.time_nano.max(0) as u64);
    let t = SystemTime::UNIX_EPOCH
        .checked_add(d)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Entry {
        stream: if e.source == "stderr" {
            stdcopy::STDERR
        } else {
            stdcopy::STDOUT
        },
        time: berth_api::timefmt::rfc3339_nano(t),
        log: String::from_utf8_lossy(&e.text()).into_owned(),
    }
}

/// The entries of a rotated local log file, compressed or not.
fn read_local_file(f: &Path) -> Vec<Entry> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(f) else {
        return Vec::new();
    };
    let mut data = Vec::new();
    let read = if f.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut data)
    } else {
        BufReader::new(file).read_to_end(&mut data)
    };
    if read.is_err() {
        return Vec::new();
    }
    berth_api::locallog::decode(&data)
        .0
        .into_iter()
        .map(from_local)
        .collect()
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
    if let Some(d) = &o.details {
        text.extend_from_slice(d.as_bytes());
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
        for suffix in ["", ".gz"] {
            let mut p = log.as_os_str().to_owned();
            p.push(format!(".{n}{suffix}"));
            let p = PathBuf::from(p);
            if p.exists() {
                out.push(p);
            }
        }
    }
    out.push(log.to_path_buf());
    out
}

/// The live log file: an open handle and how far complete lines have been read.
struct Live {
    file: std::fs::File,
    pos: u64,
    /// The local driver's format, not json-file's.
    local: bool,
}

impl Live {
    fn open(log: &Path, local: bool) -> Option<Live> {
        std::fs::File::open(log).ok().map(|file| Live {
            file,
            pos: 0,
            local,
        })
    }

    /// Entries of the complete lines after `pos`; a line still being written waits.
    fn read_new(&mut self, o: &Options) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.file.seek(SeekFrom::Start(self.pos)).is_err() {
            return out;
        }
        if self.local {
            use std::io::Read;
            let mut data = Vec::new();
            if (&self.file).read_to_end(&mut data).is_err() {
                return out;
            }
            let (entries, used) = berth_api::locallog::decode(&data);
            self.pos += used as u64;
            return entries
                .into_iter()
                .filter_map(|e| render(&from_local(e), o))
                .collect();
        }
        let mut reader = BufReader::new(&self.file);
        let mut line = String::new();
        while let Ok(n) = reader.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.pos += n as u64;
            if let Some(b) = parse_line(line.trim_end()).and_then(|e| render(&e, o)) {
                out.push(b);
            }
            line.clear();
        }
        out
    }

    /// Whether `log` names another file now (the shim rotated it).
    fn rotated(&self, log: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(log)) {
            (Ok(a), Ok(b)) => a.ino() != b.ino(),
            _ => false,
        }
    }

    /// New entries, following a rotation: the rest of the old file, then the new one.
    fn poll(mut self, log: &Path, o: &Options) -> (Live, Vec<Vec<u8>>) {
        let mut out = self.read_new(o);
        if self.rotated(log) {
            if let Some(mut next) = Live::open(log, self.local) {
                out.extend(next.read_new(o));
                self = next;
            }
        }
        (self, out)
    }
}

/// Stream the logs into `tx`; returns when done or the receiver is gone.
pub async fn stream(c: Arc<Container>, o: Options, tx: mpsc::Sender<Vec<u8>>) {
    let driver = c.rec().host_config.log_config.kind.clone();
    if !readable(&driver) {
        return;
    }
    let local = driver == "local";
    let log = c.paths.log_of(&driver);
    let (o2, log2) = (o.clone(), log.clone());
    // The backlog, read on a blocking thread: rotated files whole, the live one up to its
    // last complete line, where following continues.
    let backlog = tokio::task::spawn_blocking(move || {
        let mut chunks = Vec::new();
        let all = files(&log2);
        for f in &all[..all.len().saturating_sub(1)] {
            if local {
                chunks.extend(read_local_file(f).iter().filter_map(|e| render(e, &o2)));
                continue;
            }
            let Ok(file) = std::fs::File::open(f) else {
                continue;
            };
            let reader: Box<dyn std::io::Read> = if f.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::read::GzDecoder::new(file))
            } else {
                Box::new(file)
            };
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if let Some(b) = parse_line(&line).and_then(|e| render(&e, &o2)) {
                    chunks.push(b);
                }
            }
        }
        let mut live = Live::open(&log2, local);
        if let Some(l) = live.as_mut() {
            chunks.extend(l.read_new(&o2));
        }
        if let Some(n) = o2.tail {
            let skip = chunks.len().saturating_sub(n);
            chunks.drain(..skip);
        }
        (chunks, live)
    })
    .await;
    let Ok((chunks, live)) = backlog else {
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
    let Some(mut live) = live.or_else(|| Live::open(&log, local)) else {
        return;
    };
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
    // Following ends at `until`, as dockerd's: no later line can fall within the bound.
    let until = o.until.map(|u| {
        let left = u.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    loop {
        let done = progress.borrow().exits > seen
            || progress.borrow().removed
            || until.is_some_and(|u| tokio::time::Instant::now() >= u);
        let (o2, log2) = (o.clone(), log.clone());
        let Ok((next, chunks)) = tokio::task::spawn_blocking(move || live.poll(&log2, &o2)).await
        else {
            return;
        };
        live = next;
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
            _ = async {
                match until {
                    Some(u) => tokio::time::sleep_until(u).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Whether `logs` can read what the log driver keeps (dockerd: "configured logging driver
/// does not support reading" otherwise).
pub fn readable(driver: &str) -> bool {
    matches!(driver, "" | "json-file" | "local")
}

/// An inotify instance the reactor can watch.
struct InotifyFd(Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn details_name_labels_and_env_escaped() {
        let opts = std::collections::BTreeMap::from([
            ("labels".to_string(), "team, missing".to_string()),
            ("env".to_string(), "STAGE".to_string()),
        ]);
        let labels = std::collections::BTreeMap::from([
            ("team".to_string(), "a b/c".to_string()),
            ("other".to_string(), "x".to_string()),
        ]);
        let env = vec!["STAGE=prod&1".to_string(), "X=1".to_string()];
        assert_eq!(details(&opts, &labels, &env), "STAGE=prod%261,team=a+b%2Fc");
        assert_eq!(details(&Default::default(), &labels, &env), "");
    }

    use super::*;

    #[test]
    fn unix_times() {
        assert_eq!(bound(Some(0)), None);
        assert_eq!(bound(None), None);
        assert!(bound(Some(-1)).is_some_and(|t| t < SystemTime::UNIX_EPOCH));
        let t = bound(Some(1_700_000_000_500_000_000)).unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_700_000_000_500
        );
    }
}
