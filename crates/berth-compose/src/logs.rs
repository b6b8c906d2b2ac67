//! Several containers' logs on one stdout, each line prefixed `web-1  | ` (coloured on a
//! terminal) as Compose prints them; used by `logs` and by an attached `up`.

use std::io::Write;
use std::sync::Arc;

use berth_cli::client::enc;

use crate::api::{Ctr, Engine};

#[derive(Clone, Debug, Default)]
pub struct LogOpts {
    pub follow: bool,
    pub timestamps: bool,
    pub tail: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub no_color: bool,
    /// `--ansi always`: colours even when stdout is not a terminal.
    pub force_color: bool,
    pub no_prefix: bool,
    /// Print `<name> exited with code N` when a followed container stops (attached `up`).
    pub exit_lines: bool,
}

/// Compose's palette, in its order.
const COLOURS: [&str; 12] = [
    "36", "33", "32", "35", "34", "96", "93", "92", "95", "94", "31", "91",
];

/// The name a log line is prefixed with: the container name without `<project>-`.
pub fn short_name(project: &str, c: &Ctr) -> String {
    c.name
        .strip_prefix(&format!("{project}-"))
        .unwrap_or(&c.name)
        .to_string()
}

struct Printer {
    prefix: String,
    pending: Vec<u8>,
}

impl Printer {
    fn feed(&mut self, data: &[u8], flush_all: bool) {
        self.pending.extend_from_slice(data);
        let mut out = std::io::stdout().lock();
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let _ = out.write_all(self.prefix.as_bytes());
            let _ = out.write_all(&line);
        }
        if flush_all && !self.pending.is_empty() {
            let _ = out.write_all(self.prefix.as_bytes());
            let _ = out.write_all(&self.pending);
            let _ = out.write_all(b"\n");
            self.pending.clear();
        }
        let _ = out.flush();
    }
}

async fn one(
    e: Engine,
    c: Ctr,
    prefix: String,
    name: String,
    o: Arc<LogOpts>,
) -> Result<(), String> {
    let mut q = format!(
        "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        enc(&c.id),
        o.follow as u8,
        o.timestamps as u8,
        enc(o.tail.as_deref().unwrap_or("all"))
    );
    for (k, v) in [("since", &o.since), ("until", &o.until)] {
        if let Some(v) = v {
            let t = berth_cli::timearg::timestamp(v, std::time::SystemTime::now())?;
            q.push_str(&format!("&{k}={t}"));
        }
    }
    let info = e.inspect(&c.id).await.map_err(|e| e.to_string())?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let resp =
        e.c.send(
            hyper::Method::GET,
            &q,
            berth_cli::client::empty(),
            "application/json",
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut p = Printer {
        prefix: prefix.clone(),
        pending: Vec::new(),
    };
    let mut dec = berth_api::stdcopy::Decoder::default();
    berth_cli::client::for_each_chunk(resp, |chunk| {
        if tty {
            p.feed(chunk, false);
            return;
        }
        dec.feed(chunk);
        while let Ok(Some((_, payload))) = dec.next_frame() {
            p.feed(&payload, false);
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    p.feed(&[], true);
    if o.exit_lines {
        let code = e.wait(&c.id).await.map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{name} exited with code {code}");
    }
    Ok(())
}

/// Prints the containers' logs side by side; returns when every stream has ended.
pub async fn print(e: &Engine, project: &str, ctrs: &[Ctr], o: LogOpts) -> Result<(), String> {
    let names: Vec<String> = ctrs.iter().map(|c| short_name(project, c)).collect();
    // Compose pads names to the longest plus one.
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 1;
    let colour = !o.no_color && (o.force_color || berth_cli::stream::is_tty(std::io::stdout()));
    let o = Arc::new(o);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (c, n)) in ctrs.iter().zip(names).enumerate() {
        let n = n.clone();
        let prefix = if o.no_prefix {
            String::new()
        } else if colour {
            format!("\x1b[{}m{n:<width$} | \x1b[0m", COLOURS[i % COLOURS.len()])
        } else {
            format!("{n:<width$} | ")
        };
        tasks.spawn(one(e.clone(), c.clone(), prefix, n, o.clone()));
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(m)) = r {
            first_err.get_or_insert(m);
        }
    }
    match first_err {
        Some(m) => Err(m),
        None => Ok(()),
    }
}
