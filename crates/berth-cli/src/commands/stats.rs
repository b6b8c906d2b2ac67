//! `berth stats`: live resource usage of containers, one stats stream per container, drawn
//! as the docker CLI draws it (redrawn in place on a terminal). Without names it follows the
//! daemon's events to pick up containers that start and drop those that die.

use crate::client::{enc, Client};
use crate::format::{self, Format};
use berth_api::event::Message;
use berth_api::stats::StatsResponse;
use berth_api::units::{bytes_size, human_size_with_precision};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
    /// Label filters (`key=value`) on the listed and followed containers (`compose stats`).
    #[arg(skip)]
    pub labels: Vec<String>,
}

/// The table's columns: template field and header.
const COLUMNS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("ID", "CONTAINER ID"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// The default table's fields.
const DEFAULT: &[&str] = &[
    "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
];

/// The docker CLI's tab writer makes columns at least this wide.
const MIN_WIDTH: usize = 10;

/// The latest figures of one container.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// What the user named it, or its short id.
    container: String,
    name: String,
    id: String,
    cpu: f64,
    mem: f64,
    mem_limit: f64,
    mem_percent: f64,
    net: (u64, u64),
    block: (u64, u64),
    pids: u64,
    /// No figures (the stream failed or ended): shown as `--`.
    invalid: bool,
    error: Option<String>,
    /// A sample or an error has arrived.
    seen: bool,
}

impl Entry {
    fn update(&mut self, s: &StatsResponse) {
        self.name = s.name.clone();
        self.id = s.id.clone();
        self.cpu = s.cpu_percent();
        self.mem = s.memory_used();
        self.mem_limit = s.memory_stats.limit as f64;
        self.mem_percent = s.memory_percent();
        self.net = s.network_io();
        self.block = s.block_io();
        self.pids = s.pids_stats.current;
        self.invalid = false;
        self.seen = true;
    }

    /// The template fields `docker stats --format` offers.
    fn fields(&self, trunc: bool) -> Value {
        let na = |s: String| if self.invalid { "--".to_string() } else { s };
        let pair = |(a, b): (u64, u64)| {
            format!(
                "{} / {}",
                human_size_with_precision(a as f64, 3),
                human_size_with_precision(b as f64, 3)
            )
        };
        json!({
            "Container": self.container,
            "Name": if self.name.len() > 1 { &self.name[1..] } else { "--" },
            "ID": if trunc { self.id.chars().take(12).collect() } else { self.id.clone() },
            "CPUPerc": na(format!("{:.2}%", self.cpu)),
            "MemUsage": if self.invalid {
                "-- / --".to_string()
            } else {
                format!("{} / {}", bytes_size(self.mem), bytes_size(self.mem_limit))
            },
            "MemPerc": na(format!("{:.2}%", self.mem_percent)),
            "NetIO": na(pair(self.net)),
            "BlockIO": na(pair(self.block)),
            "PIDs": na(self.pids.to_string()),
        })
    }
}

/// The containers shown, in the order they came.
#[derive(Clone, Default)]
struct Board(Arc<Mutex<Vec<Entry>>>);

impl Board {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `key` unless it is there; true if added.
    fn add(&self, key: &str) -> bool {
        let mut v = self.lock();
        if v.iter().any(|e| e.container == key) {
            return false;
        }
        v.push(Entry {
            container: key.to_string(),
            ..Entry::default()
        });
        true
    }

    fn remove(&self, key: &str) {
        self.lock().retain(|e| e.container != key);
    }

    /// Change `key`'s entry; false once it is gone.
    fn with(&self, key: &str, f: impl FnOnce(&mut Entry)) -> bool {
        match self.lock().iter_mut().find(|e| e.container == key) {
            Some(e) => {
                f(e);
                true
            }
            None => false,
        }
    }
}

/// Read `key`'s stats (a stream, or one sample) into the board.
async fn collect(c: Client, board: Board, key: String, stream: bool) {
    let path = format!(
        "/containers/{}/stats?stream={}",
        enc(&key),
        u8::from(stream)
    );
    let resp = match c
        .send(
            Method::GET,
            &path,
            crate::client::empty(),
            "application/json",
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            board.with(&key, |en| {
                en.invalid = true;
                en.seen = true;
                en.error = Some(e.to_string());
            });
            return;
        }
    };
    let res = crate::client::for_each_line(resp, |line| {
        match serde_json::from_slice::<StatsResponse>(line) {
            Ok(s) => board.with(&key, |en| en.update(&s)) && stream,
            Err(_) => true,
        }
    })
    .await;
    // The stream is over: the container went, or the daemon did.
    if stream || res.is_err() {
        board.with(&key, |en| {
            en.invalid = true;
            en.seen = true;
        });
    }
}

/// Start following `key` if it is new.
fn follow(c: &Client, board: &Board, key: &str, stream: bool) {
    if board.add(key) {
        tokio::spawn(collect(c.clone(), board.clone(), key.to_string(), stream));
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Watch container events: `start` (and `create` with `all`) adds, `die` (without `all`)
/// removes. Returns once subscribed.
async fn watch_events(
    c: &Client,
    board: &Board,
    all: bool,
    stream: bool,
    labels: &[String],
) -> Result<(), String> {
    let mut f = json!({"type": ["container"]});
    if !labels.is_empty() {
        f["label"] = json!(labels);
    }
    let filters = enc(&f.to_string());
    let resp = c
        .send(
            Method::GET,
            &format!("/events?filters={filters}"),
            crate::client::empty(),
            "application/json",
        )
        .await
        .map_err(|e| e.to_string())?;
    let (c, board) = (c.clone(), board.clone());
    tokio::spawn(async move {
        let _ = crate::client::for_each_line(resp, |line| {
            if let Ok(m) = serde_json::from_slice::<Message>(line) {
                let key = short(&m.actor.id);
                match m.action.as_str() {
                    "start" => follow(&c, &board, &key, stream),
                    "create" if all => follow(&c, &board, &key, stream),
                    "die" if !all => board.remove(&key),
                    _ => {}
                }
            }
            true
        })
        .await;
    });
    Ok(())
}

/// The board as text in the chosen format.
fn draw(f: &Format, entries: &[Entry], trunc: bool) -> Result<String, String> {
    let rows: Vec<Value> = entries.iter().map(|e| e.fields(trunc)).collect();
    let cell = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match f {
        Format::Table => {
            let header: Vec<&str> = DEFAULT
                .iter()
                .filter_map(|k| COLUMNS.iter().find(|(f, _)| f == k).map(|(_, h)| *h))
                .collect();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| DEFAULT.iter().map(|k| cell(&r[*k])).collect())
                .collect();
            Ok(format::table_with(&header, &cells, MIN_WIDTH))
        }
        Format::Json => Ok(rows.iter().map(|r| format!("{r}\n")).collect()),
        Format::TableTemplate(t) => format::template_table_with(t, &rows, COLUMNS, MIN_WIDTH),
        Format::Template(t) => rows
            .iter()
            .map(|r| format::render(t, r).map(|s| s + "\n"))
            .collect(),
    }
}

/// `&filters=` for the label filters, when there are any.
fn label_query(labels: &[String]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    format!("&filters={}", enc(&json!({ "label": labels }).to_string()))
}

pub async fn stats(c: &Client, a: StatsArgs) -> i32 {
    let f = Format::parse(a.format.as_deref());
    let stream = !a.no_stream;
    let board = Board::default();
    let show_all = a.containers.is_empty();
    if show_all {
        if let Err(e) = watch_events(c, &board, a.all, stream, &a.labels).await {
            eprintln!("{e}");
            return 1;
        }
        let list = match c
            .get(&format!(
                "/containers/json?all={}{}",
                u8::from(a.all),
                label_query(&a.labels)
            ))
            .await
        {
            Ok(v) => v,
            Err(e) => return super::report(&e, 1),
        };
        for ctr in list.as_array().into_iter().flatten() {
            follow(
                c,
                &board,
                &short(ctr["Id"].as_str().unwrap_or_default()),
                stream,
            );
        }
    } else {
        for name in &a.containers {
            follow(c, &board, name, stream);
        }
    }
    // Each container's first sample (or failure), as docker waits for them.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) && board.lock().iter().any(|e| !e.seen) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !show_all {
        let errors: Vec<String> = board
            .lock()
            .iter()
            .filter_map(|e| e.error.clone())
            .collect();
        if !errors.is_empty() {
            eprintln!("{}", errors.join("\n"));
            return 1;
        }
    }
    let tty = crate::stream::is_tty(std::io::stdout());
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    loop {
        let entries = board.lock().clone();
        let text = match draw(&f, &entries, !a.no_trunc) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let out = if stream && tty {
            // Over the previous table: home, each line cleared to its end, the rest erased.
            let mut s = String::from("\x1b[H");
            for line in text.lines() {
                s.push_str(line);
                s.push_str("\x1b[K\n");
            }
            s.push_str("\x1b[J");
            s
        } else {
            text
        };
        let mut o = std::io::stdout().lock();
        if o.write_all(out.as_bytes())
            .and_then(|()| o.flush())
            .is_err()
        {
            return 0;
        }
        drop(o);
        if !stream || (entries.is_empty() && !show_all) {
            return 0;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_as_docker() {
        let mut e = Entry {
            container: "web".into(),
            ..Entry::default()
        };
        let mut s = StatsResponse {
            name: "/web".into(),
            id: "0123456789abcdef".into(),
            ..StatsResponse::default()
        };
        s.memory_stats.usage = 1_572_864;
        s.memory_stats.limit = 64 << 20;
        s.pids_stats.current = 3;
        e.update(&s);
        let v = e.fields(true);
        assert_eq!(v["ID"], "0123456789ab");
        assert_eq!(v["Name"], "web");
        assert_eq!(v["MemUsage"], "1.5MiB / 64MiB");
        assert_eq!(v["MemPerc"], "2.34%");
        assert_eq!(v["NetIO"], "0B / 0B");
        assert_eq!(v["PIDs"], "3");
        let t = draw(&Format::Table, &[e.clone()], true).unwrap();
        assert_eq!(
            t.lines().next().unwrap(),
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS"
        );
        e.invalid = true;
        assert_eq!(e.fields(true)["CPUPerc"], "--");
        assert_eq!(e.fields(true)["MemUsage"], "-- / --");
        let j = draw(&Format::Json, &[e], false).unwrap();
        assert!(
            j.starts_with(r#"{"BlockIO":"--","CPUPerc":"--","Container":"web""#),
            "{j}"
        );
    }
}
