//! Compose v2's progress display on stderr. On a terminal: a `[+] Running 3/4` header and one
//! line per object (` ✔ Container shop-web-1  Started  0.3s`, a spinner while it works),
//! redrawn in place. Otherwise plain lines (` Container shop-web-1  Starting`, `… Started`);
//! nothing with `quiet`.

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Working,
    Done,
    Warning,
    Error,
}

struct Entry {
    id: String,
    text: String,
    state: State,
    start: Instant,
    end: Option<Instant>,
}

#[derive(Default)]
struct Screen {
    entries: Vec<Entry>,
    /// Lines drawn last time (moved over before the next drawing).
    drawn: usize,
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

pub struct Progress {
    mode: Mode,
    /// `DRY-RUN MODE - ` before every line of a `--dry-run`.
    prefix: &'static str,
    screen: Mutex<Screen>,
    born: Instant,
}

impl Progress {
    pub fn new(mode: Mode, dry: bool) -> Progress {
        Progress {
            mode,
            prefix: if dry { "DRY-RUN MODE - " } else { "" },
            screen: Mutex::new(Screen::default()),
            born: Instant::now(),
        }
    }

    fn line(&self, s: &str) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{}{s}", self.prefix);
    }

    /// Records the new state of `id` and, on a terminal, redraws.
    fn update(&self, id: &str, text: &str, state: State) {
        let Ok(mut sc) = self.screen.lock() else {
            return;
        };
        let now = Instant::now();
        match sc.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                if e.state != State::Working && state == State::Working {
                    e.start = now;
                }
                e.text = text.to_string();
                e.state = state;
                e.end = (state != State::Working).then_some(now);
            }
            None => sc.entries.push(Entry {
                id: id.to_string(),
                text: text.to_string(),
                state,
                start: now,
                end: (state != State::Working).then_some(now),
            }),
        }
        if self.mode == Mode::Tty {
            self.draw(&mut sc);
        }
    }

    fn draw(&self, sc: &mut Screen) {
        let done = sc
            .entries
            .iter()
            .filter(|e| e.state != State::Working)
            .count();
        let idw = sc
            .entries
            .iter()
            .map(|e| e.id.chars().count())
            .max()
            .unwrap_or(0);
        let textw = sc
            .entries
            .iter()
            .map(|e| e.text.chars().count())
            .max()
            .unwrap_or(0);
        let frame = SPINNER[(self.born.elapsed().as_millis() / 80) as usize % SPINNER.len()];
        let mut out = String::new();
        if sc.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", sc.drawn));
        }
        out.push_str(&format!(
            "\x1b[2K{}[+] Running {done}/{}\n",
            self.prefix,
            sc.entries.len()
        ));
        for e in &sc.entries {
            let mark = match e.state {
                State::Working => frame,
                State::Done => '✔',
                State::Warning => '!',
                State::Error => '✘',
            };
            let secs = e.end.unwrap_or_else(Instant::now).duration_since(e.start);
            out.push_str(&format!(
                "\x1b[2K{} {mark} {:<idw$}  {:<textw$}  {:.1}s\n",
                self.prefix,
                e.id,
                e.text,
                secs.as_secs_f64()
            ));
        }
        sc.drawn = sc.entries.len() + 1;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// Ends the current block: later updates draw a new one below whatever was printed since
    /// (an attached `up`'s logs, then its stop).
    pub fn reset(&self) {
        if let Ok(mut sc) = self.screen.lock() {
            *sc = Screen::default();
        }
    }

    /// An operation on `id` (e.g. `Container shop-web-1`) begins: `Creating`.
    pub fn working(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => self.update(id, text, State::Working),
            Mode::Quiet => {}
        }
    }

    /// It ended well: `Created`, `Started`, `Running`.
    pub fn done(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => self.update(id, text, State::Done),
            Mode::Quiet => {}
        }
    }

    /// A warning about `id`.
    pub fn warn(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => self.update(id, text, State::Warning),
            Mode::Quiet => {}
        }
    }

    /// It failed; the error itself is reported by the command.
    pub fn failed(&self, id: &str, text: &str) {
        match self.mode {
            Mode::Plain => self.line(&format!(" {id}  {text}")),
            Mode::Tty => self.update(id, text, State::Error),
            Mode::Quiet => {}
        }
    }
}
