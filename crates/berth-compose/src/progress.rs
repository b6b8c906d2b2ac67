//! Compose v2's progress lines on stderr: ` ✔ Container shop-web-1  Started` on a terminal,
//! ` Container shop-web-1  Starting` / `… Started` lines otherwise, nothing with `quiet`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Quiet,
}

impl Mode {
    /// `--progress` (auto, tty, plain, quiet, json is read as plain) and whether stderr is a tty.
    pub fn pick(flag: Option<&str>) -> Mode {
        match flag {
            Some("quiet") => Mode::Quiet,
            Some("plain") | Some("json") => Mode::Plain,
            Some("tty") => Mode::Tty,
            _ if berth_cli::stream::is_tty(std::io::stderr()) => Mode::Tty,
            _ => Mode::Plain,
        }
    }
}

pub struct Progress {
    mode: Mode,
    /// `DRY-RUN MODE - ` before every line of a `--dry-run`.
    prefix: &'static str,
    started: Mutex<Vec<(String, Instant)>>,
}

impl Progress {
    pub fn new(mode: Mode, dry: bool) -> Progress {
        Progress {
            mode,
            prefix: if dry { "DRY-RUN MODE - " } else { "" },
            started: Mutex::new(Vec::new()),
        }
    }

    fn line(&self, s: &str) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{}{s}", self.prefix);
    }

    /// An operation on `id` (e.g. `Container shop-web-1`) begins: `Creating`.
    pub fn working(&self, id: &str, text: &str) {
        if let Ok(mut s) = self.started.lock() {
            s.retain(|(i, _)| i != id);
            s.push((id.to_string(), Instant::now()));
        }
        if self.mode == Mode::Plain {
            self.line(&format!(" {id}  {text}"));
        }
    }

    fn elapsed(&self, id: &str) -> Option<f64> {
        let s = self.started.lock().ok()?;
        s.iter()
            .find(|(i, _)| i == id)
            .map(|(_, t)| t.elapsed().as_secs_f64())
    }

    /// It ended well: `Created`, `Started`, `Running`.
    pub fn done(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => {
                let t = self
                    .elapsed(id)
                    .map(|s| format!("  {s:.1}s"))
                    .unwrap_or_default();
                self.line(&format!(" \u{2714} {id}  {text}{t}"))
            }
        }
    }

    /// A warning about `id` (`!` on a terminal).
    pub fn warn(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => self.line(&format!(" ! {id}  {text}")),
        }
    }

    /// It failed (`✘` on a terminal); the error itself is reported by the command.
    pub fn failed(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => self.line(&format!(" \u{2718} {id}  {text}")),
        }
    }
}
