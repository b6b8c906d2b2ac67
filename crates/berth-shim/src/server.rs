//! The shim's single-threaded event loop: container stdio, the control socket and child reaping
//! multiplexed with poll(2), with no async runtime so the shim stays small.

use crate::config::{ExitRecord, ShimConfig};
use crate::logfile::{Format, LogFile};
use crate::protocol::{Ready, Reply, Request};
use berth_api::stdcopy;
use berth_runtime::{Created, Runtime, Stdio};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Stop reading a process's output while an attached client has this much unsent.
const CLIENT_HIGH_WATER: usize = 1 << 20;
/// Stop reading a client's stdin while the process has this much unwritten.
const STDIN_HIGH_WATER: usize = 1 << 20;
/// After the main process is gone, how long unsent output may hold the shim up.
const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// Idle time after which the shim gives back memory it no longer needs.
const TRIM_AFTER_IDLE_MS: i32 = 1000;

/// A process whose stdio the shim holds: the container's main process or an exec.
struct Proc {
    pid: i32,
    tty: bool,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    stdin_eof: bool,
    stdin_once: bool,
    /// Readable ends: pipes, or the PTY master (stream 1).
    outputs: Vec<(OwnedFd, u8)>,
    pty: Option<OwnedFd>,
    exit: Option<ExitRecord>,
}

/// Which process a stream client follows: None = main.
type ProcKey = Option<String>;

enum Mode {
    /// Reading the request line.
    Request,
    Stream {
        key: ProcKey,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Waits for the main process's exit reply.
    Waiting,
    /// Reply sent; close once flushed.
    Done,
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    mode: Mode,
    read_closed: bool,
    dead: bool,
}

struct Shim {
    cfg: ShimConfig,
    runtime: Runtime,
    procs: HashMap<ProcKey, Proc>,
    clients: Vec<Client>,
    log: Option<LogFile>,
    /// The last log write failed (reported once until one succeeds).
    log_failing: bool,
    /// Set when the main process failed to start: the exit it maps to.
    start_failure: Option<(i32, String)>,
    main_done: Option<ExitRecord>,
    done_at: Option<Instant>,
    /// The control socket; dropped (closed) when the main process is gone.
    listener: Option<UnixListener>,
}

pub fn run(dir: &Path) -> i32 {
    let cfg: ShimConfig = match std::fs::read(dir.join(ShimConfig::FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = report_ready(&Ready {
                error: Some(format!("shim: reading {}: {e}", ShimConfig::FILE)),
                ..Ready::default()
            });
            return 1;
        }
    };
    // Detach from the daemon: the parent returns at once, the child carries on in its own session.
    // SAFETY: the shim is single-threaded here (no threads were started), so fork is sound.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            let _ = report_ready(&Ready {
                error: Some(format!("shim: fork: {e}")),
                ..Ready::default()
            });
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shim.log"))
    {
        let _ = nix::unistd::dup2_stderr(f.as_fd());
    }
    match Shim::create(cfg) {
        Ok(mut shim) => shim.serve(),
        Err(e) => {
            let _ = report_ready(&Ready {
                error: Some(e.0),
                exit_code: Some(e.1),
                ..Ready::default()
            });
            1
        }
    }
}

/// Print the readiness line on stdout and let go of the daemon's pipe. False when the line
/// could not be written: the daemon that asked for this shim is gone (killed meanwhile).
fn report_ready(r: &Ready) -> bool {
    let mut out = std::io::stdout();
    let written = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())
        .and_then(|()| out.flush())
        .is_ok();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null.as_fd());
        let _ = nix::unistd::dup2_stdin(null.as_fd());
    }
    written
}

/// Exit code for a runtime error: 127 not found, 126 not executable, 125 otherwise.
fn error_exit_code(e: &berth_runtime::Error) -> i32 {
    match e {
        berth_runtime::Error::Exec { kind, .. } => match kind {
            berth_runtime::ExecErrorKind::NotFound => 127,
            berth_runtime::ExecErrorKind::PermissionDenied => 126,
            _ => 125,
        },
        _ => 125,
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own; flags are only extended with O_NONBLOCK.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// Stdio for a new process and the shim's ends of it.
struct StdioPlan {
    stdio: Stdio,
    stdin: Option<OwnedFd>,
    outputs: Vec<(OwnedFd, u8)>,
}

fn plan_stdio(tty: bool, open_stdin: bool) -> std::io::Result<StdioPlan> {
    if tty {
        return Ok(StdioPlan {
            stdio: Stdio::Pty,
            stdin: None,
            outputs: Vec::new(),
        });
    }
    let (stdin_r, stdin_w) = if open_stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (std::fs::File::open("/dev/null")?.into(), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok(StdioPlan {
        stdio: Stdio::Fds {
            stdin: stdin_r,
            stdout: out_w,
            stderr: err_w,
        },
        stdin: stdin_w,
        outputs: vec![(out_r, stdcopy::STDOUT), (err_r, stdcopy::STDERR)],
    })
}

fn new_proc(created: Created, plan_stdin: Option<OwnedFd>, outputs: Vec<(OwnedFd, u8)>) -> Proc {
    let mut proc = Proc {
        pid: created.pid,
        tty: created.pty_master.is_some(),
        stdin: plan_stdin,
        stdin_buf: Vec::new(),
        stdin_eof: false,
        stdin_once: false,
        outputs,
        pty: None,
        exit: None,
    };
    if let Some(master) = created.pty_master {
        if let Ok(dup) = master.try_clone() {
            proc.stdin = Some(dup);
        }
        proc.pty = master.try_clone().ok();
        proc.outputs.push((master, stdcopy::STDOUT));
    }
    for (fd, _) in &proc.outputs {
        set_nonblocking(fd.as_raw_fd());
    }
    if let Some(fd) = &proc.stdin {
        set_nonblocking(fd.as_raw_fd());
    }
    proc
}

impl Shim {
    fn create(cfg: ShimConfig) -> Result<Shim, (String, i32)> {
        let io_err = |what: &str, e: std::io::Error| (format!("shim: {what}: {e}"), 125);
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer argument.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let runtime = Runtime::new(&cfg.runtime_root);
        let plan = plan_stdio(cfg.tty, cfg.open_stdin).map_err(|e| io_err("stdio", e))?;
        let created = runtime
            .create(&cfg.id, &cfg.bundle, plan.stdio)
            .map_err(|e| (e.to_string(), error_exit_code(&e)))?;
        let setup = || -> std::io::Result<(UnixListener, Option<LogFile>)> {
            let _ = std::fs::remove_file(&cfg.socket);
            let listener = UnixListener::bind(&cfg.socket)?;
            listener.set_nonblocking(true)?;
            let format = match cfg.log_driver.as_str() {
                "none" => return Ok((listener, None)),
                "local" => Format::Local {
                    compress: cfg.log_compress,
                },
                _ => Format::Json {
                    compress: cfg.log_compress,
                },
            };
            let log = LogFile::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files, format)?;
            Ok((listener, Some(log)))
        };
        let (listener, log) = match setup() {
            Ok(x) => x,
            Err(e) => {
                // Nothing may stay behind: the blocked init, its cgroups and state go.
                let _ = runtime.delete(&cfg.id, true);
                let _ = waitpid(Pid::from_raw(created.pid), None);
                return Err(io_err(
                    &format!(
                        "socket {} or log {}",
                        cfg.socket.display(),
                        cfg.log_path.display()
                    ),
                    e,
                ));
            }
        };
        let mut main = new_proc(created, plan.stdin, plan.outputs);
        main.stdin_once = cfg.stdin_once;
        if let (Some(pty), Some((rows, cols))) = (&main.pty, cfg.console_size) {
            let _ = set_winsize(pty, rows, cols);
        }
        let pid = main.pid;
        let mut procs = HashMap::new();
        procs.insert(None, main);
        let shim = Shim {
            cfg,
            runtime,
            procs,
            clients: Vec::new(),
            log,
            log_failing: false,
            start_failure: None,
            main_done: None,
            done_at: None,
            listener: Some(listener),
        };
        if !report_ready(&Ready {
            pid,
            ..Ready::default()
        }) {
            // Nobody will start, watch or remove this container: a daemon killed during the
            // start must not leave a blocked init behind (its next boot may already have
            // looked for this shim's socket).
            let _ = std::fs::remove_file(&shim.cfg.socket);
            let _ = shim.runtime.delete(&shim.cfg.id, true);
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err((
                "shim: the daemon went away before the container started".into(),
                125,
            ));
        }
        Ok(shim)
    }

    fn serve(&mut self) -> i32 {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        if mask.thread_block().is_err() {
            return 1;
        }
        let Ok(sfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        else {
            return 1;
        };
        // A child may have exited before SIGCHLD was blocked.
        self.reap();
        // Memory is given back once the shim has been idle for a moment after the start, and
        // again after each client (an attach or exec can touch much code once).
        let mut trim_due = true;
        loop {
            self.advance();
            if let Some(at) = self.done_at {
                let flushed = self.clients.iter().all(|c| c.out.is_empty() || c.dead);
                if flushed || at.elapsed() > FLUSH_GRACE {
                    break;
                }
            }
            let (mut fds, tags) = self.poll_set(sfd.as_fd().as_raw_fd());
            let timeout = match (self.done_at.is_some(), trim_due) {
                (true, _) => 100,
                (false, true) => TRIM_AFTER_IDLE_MS,
                (false, false) => -1,
            };
            // SAFETY: fds is a valid, exclusively borrowed array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                    continue;
                }
                return 1;
            }
            if n == 0 && trim_due && self.done_at.is_none() {
                crate::trim::trim();
                trim_due = false;
            }
            for (pfd, tag) in fds.iter().zip(tags) {
                if pfd.revents == 0 {
                    continue;
                }
                match tag {
                    Tag::Signal => {
                        while let Ok(Some(_)) = sfd.read_signal() {}
                        self.reap();
                    }
                    Tag::Listener => {
                        self.accept();
                        trim_due = true;
                    }
                    Tag::Output(key, idx) => self.read_output(&key, idx),
                    Tag::Stdin(key) => self.write_stdin(&key),
                    Tag::Client(i) => self.client_io(i, pfd.revents),
                }
            }
            self.clients
                .retain(|c| !(c.dead || (matches!(c.mode, Mode::Done) && c.out.is_empty())));
        }
        self.listener = None;
        let _ = std::fs::remove_file(&self.cfg.socket);
        0
    }

    fn poll_set(&self, sfd: RawFd) -> (Vec<libc::pollfd>, Vec<Tag>) {
        let mut fds = Vec::new();
        let mut tags = Vec::new();
        let mut add = |fd: RawFd, events: i16, tag: Tag| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tags.push(tag);
        };
        add(sfd, libc::POLLIN, Tag::Signal);
        if let Some(l) = &self.listener {
            add(l.as_raw_fd(), libc::POLLIN, Tag::Listener);
        }
        for (key, p) in &self.procs {
            let blocked = self.clients.iter().any(|c| {
                matches!(&c.mode, Mode::Stream { key: k, .. } if k == key)
                    && c.out.len() > CLIENT_HIGH_WATER
            });
            if !blocked {
                for (i, (fd, _)) in p.outputs.iter().enumerate() {
                    add(fd.as_raw_fd(), libc::POLLIN, Tag::Output(key.clone(), i));
                }
            }
            if let Some(fd) = &p.stdin {
                if !p.stdin_buf.is_empty() {
                    add(fd.as_raw_fd(), libc::POLLOUT, Tag::Stdin(key.clone()));
                }
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = 0;
            let want_read = match &c.mode {
                Mode::Request => true,
                Mode::Stream { key, .. } => self
                    .procs
                    .get(key)
                    .is_none_or(|p| p.stdin_buf.len() < STDIN_HIGH_WATER),
                Mode::Waiting | Mode::Done => true,
            };
            if want_read && !c.read_closed {
                ev |= libc::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.sock.as_raw_fd(), ev, Tag::Client(i));
        }
        (fds, tags)
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, pid: i32, code: i32) {
        let failure = self.start_failure.clone();
        for (key, p) in self.procs.iter_mut() {
            if p.pid == pid && p.exit.is_none() {
                let (exit_code, error) = match (&failure, key) {
                    (Some((c, e)), None) => (*c, e.clone()),
                    _ => (code, String::new()),
                };
                p.exit = Some(ExitRecord {
                    exit_code,
                    oom_killed: false,
                    finished_at: berth_api::timefmt::now(),
                    error,
                });
            }
        }
    }

    /// Finish processes whose exit is known and whose output is drained.
    fn advance(&mut self) {
        let finished: Vec<ProcKey> = self
            .procs
            .iter()
            .filter(|(_, p)| p.exit.is_some() && p.outputs.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in finished {
            let Some(p) = self.procs.remove(&key) else {
                continue;
            };
            let Some(exit) = p.exit else { continue };
            if key.is_none() {
                self.finish_main(exit.clone());
            }
            let frame = stdcopy::frame(
                stdcopy::SYSTEM,
                serde_json::to_string(&exit).unwrap_or_default().as_bytes(),
            );
            for c in &mut self.clients {
                if matches!(&c.mode, Mode::Stream { key: k, .. } if *k == key) {
                    c.out.extend_from_slice(&frame);
                    c.mode = Mode::Done;
                }
            }
        }
    }

    fn finish_main(&mut self, mut exit: ExitRecord) {
        exit.oom_killed = self.runtime.oom_killed(&self.cfg.id).unwrap_or(false);
        if let Some(mut log) = self.log.take() {
            let _ = log.flush_partial();
        }
        let data = serde_json::to_vec(&exit).unwrap_or_default();
        // The exit file lives under the exec root: it must outlive the daemon, not a reboot
        // (after which no container runs anyway).
        if let Err(e) = berth_api::fsutil::write_atomic(&self.cfg.exit_file, &data, false) {
            eprintln!("shim {}: writing exit file: {e}", self.cfg.id);
        }
        if let Err(e) = self.runtime.delete(&self.cfg.id, true) {
            eprintln!("shim {}: runtime delete: {e}", self.cfg.id);
        }
        let reply = Reply {
            exit: Some(exit.clone()),
            ..Reply::ok()
        };
        for c in &mut self.clients {
            if matches!(c.mode, Mode::Waiting) {
                push_reply(&mut c.out, &reply);
                c.mode = Mode::Done;
            }
        }
        self.main_done = Some(exit);
        self.done_at = Some(Instant::now());
        self.listener = None;
        let _ = std::fs::remove_file(&self.cfg.socket);
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((sock, _)) = listener.accept() {
            let _ = sock.set_nonblocking(true);
            self.clients.push(Client {
                sock,
                inbuf: Vec::new(),
                out: Vec::new(),
                mode: Mode::Request,
                read_closed: false,
                dead: false,
            });
        }
    }

    fn read_output(&mut self, key: &ProcKey, idx: usize) {
        let Some(p) = self.procs.get_mut(key) else {
            return;
        };
        let Some((fd, stream)) = p.outputs.get(idx) else {
            return;
        };
        let stream = *stream;
        let mut buf = [0u8; 32 * 1024];
        let n = match nix::unistd::read(fd, &mut buf) {
            Ok(0) => {
                p.outputs.remove(idx);
                return;
            }
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return,
            // EIO on a PTY master means the slave side is closed.
            Err(_) => {
                p.outputs.remove(idx);
                return;
            }
        };
        let data = &buf[..n];
        if key.is_none() {
            if let Some(log) = self.log.as_mut() {
                // Reported once per run of failures: a full disk must not flood shim.log.
                match log.write(stream, data) {
                    Err(e) if !self.log_failing => {
                        self.log_failing = true;
                        eprintln!("shim {}: log write: {e}; output dropped", self.cfg.id);
                    }
                    Err(_) => {}
                    Ok(()) if self.log_failing => {
                        self.log_failing = false;
                        eprintln!("shim {}: log writes work again", self.cfg.id);
                    }
                    Ok(()) => {}
                }
            }
        }
        let frame = stdcopy::frame(stream, data);
        for c in &mut self.clients {
            if let Mode::Stream {
                key: k,
                stdout,
                stderr,
                ..
            } = &c.mode
            {
                let wanted = if stream == stdcopy::STDERR {
                    *stderr
                } else {
                    *stdout
                };
                if k == key && wanted {
                    c.out.extend_from_slice(&frame);
                }
            }
        }
    }

    fn write_stdin(&mut self, key: &ProcKey) {
        let Some(p) = self.procs.get_mut(key) else {
            return;
        };
        let Some(fd) = &p.stdin else { return };
        match nix::unistd::write(fd, &p.stdin_buf) {
            Ok(n) => {
                p.stdin_buf.drain(..n);
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                p.stdin_buf.clear();
                p.stdin = None;
            }
        }
        if p.stdin_buf.is_empty() && p.stdin_eof && !p.tty {
            p.stdin = None;
        }
    }

    fn client_io(&mut self, i: usize, revents: i16) {
        // A peer that closed both directions keeps the socket in POLLHUP: once its input is
        // drained, drop it or poll(2) would report it forever.
        if revents & (libc::POLLHUP | libc::POLLERR) != 0 && self.clients[i].read_closed {
            self.clients[i].dead = true;
            return;
        }
        if revents & libc::POLLOUT != 0 {
            let c = &mut self.clients[i];
            match c.sock.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => c.dead = true,
            }
        }
        if revents & (libc::POLLIN | libc::POLLHUP) != 0 && !self.clients[i].read_closed {
            let mut buf = [0u8; 32 * 1024];
            let n = match self.clients[i].sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.clients[i].dead = true;
                    return;
                }
            };
            if n == 0 {
                self.clients[i].read_closed = true;
                self.client_stdin_eof(i);
                if matches!(self.clients[i].mode, Mode::Request) {
                    self.clients[i].dead = true;
                }
                return;
            }
            self.clients[i].inbuf.extend_from_slice(&buf[..n]);
            if matches!(self.clients[i].mode, Mode::Request) {
                let Some(pos) = self.clients[i].inbuf.iter().position(|&b| b == b'\n') else {
                    return;
                };
                let line: Vec<u8> = self.clients[i].inbuf.drain(..=pos).collect();
                let reply = match serde_json::from_slice::<Request>(&line) {
                    Ok(req) => self.handle(i, req),
                    Err(e) => Some(Reply::err(format!("bad shim request: {e}"))),
                };
                let c = &mut self.clients[i];
                if let Some(r) = reply {
                    push_reply(&mut c.out, &r);
                }
                if matches!(c.mode, Mode::Request) {
                    c.mode = Mode::Done;
                }
            }
            self.forward_stdin(i);
        }
    }

    /// Move bytes a stream client sent into its process's stdin buffer.
    fn forward_stdin(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Mode::Stream { key, stdin, .. } = &c.mode else {
            c.inbuf.clear();
            return;
        };
        if c.inbuf.is_empty() {
            return;
        }
        let data = std::mem::take(&mut c.inbuf);
        if !*stdin {
            return;
        }
        if let Some(p) = self.procs.get_mut(key) {
            if p.stdin.is_some() && !p.stdin_eof {
                p.stdin_buf.extend_from_slice(&data);
            }
        }
    }

    fn client_stdin_eof(&mut self, i: usize) {
        let Mode::Stream { key, stdin, .. } = &self.clients[i].mode else {
            return;
        };
        if !*stdin {
            return;
        }
        if let Some(p) = self.procs.get_mut(key) {
            // The main process keeps stdin open for later attaches unless StdinOnce; a TTY is
            // never closed by a client going away (it may just have detached).
            if !p.tty && (key.is_some() || p.stdin_once) {
                p.stdin_eof = true;
                if p.stdin_buf.is_empty() && !p.tty {
                    p.stdin = None;
                }
            }
        }
    }

    fn handle(&mut self, i: usize, req: Request) -> Option<Reply> {
        let running = self.main_done.is_none();
        match req {
            Request::Start => Some(self.start()),
            Request::State => {
                let pid = self.procs.get(&None).map(|p| p.pid);
                Some(Reply {
                    pid,
                    running,
                    exit: self.main_done.clone(),
                    ..Reply::ok()
                })
            }
            Request::Wait => {
                if let Some(exit) = &self.main_done {
                    Some(Reply {
                        exit: Some(exit.clone()),
                        ..Reply::ok()
                    })
                } else {
                    self.clients[i].mode = Mode::Waiting;
                    None
                }
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                if let Some(exit) = &self.main_done {
                    let c = &mut self.clients[i];
                    push_reply(&mut c.out, &Reply::ok());
                    let body = serde_json::to_string(exit).unwrap_or_default();
                    c.out
                        .extend_from_slice(&stdcopy::frame(stdcopy::SYSTEM, body.as_bytes()));
                    c.mode = Mode::Done;
                    return None;
                }
                self.clients[i].mode = Mode::Stream {
                    key: None,
                    stdin,
                    stdout,
                    stderr,
                };
                Some(Reply::ok())
            }
            Request::Kill { signal, all } => {
                if !running {
                    return Some(Reply::err("container is not running"));
                }
                Some(match self.runtime.kill(&self.cfg.id, signal, all) {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::err(e.to_string()),
                })
            }
            Request::KillExec { exec_id, signal } => Some(self.kill_exec(&exec_id, signal)),
            Request::Resize {
                exec_id,
                width,
                height,
            } => {
                let Some(p) = self.procs.get(&exec_id) else {
                    return Some(Reply::err("no such process"));
                };
                let Some(pty) = &p.pty else {
                    return Some(Reply::err("the process has no TTY"));
                };
                Some(match set_winsize(pty, height, width) {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::err(format!("resize: {e}")),
                })
            }
            Request::Exec {
                exec_id,
                process,
                stdin,
            } => {
                if !running {
                    return Some(Reply::err("container is not running"));
                }
                Some(self.exec(i, exec_id, &process, stdin))
            }
        }
    }

    /// Signal an exec that has not been reaped yet (so its pid is still its own).
    fn kill_exec(&self, exec_id: &str, signal: i32) -> Reply {
        let Some(p) = self.procs.get(&Some(exec_id.to_string())) else {
            return Reply::err(format!("no such exec: {exec_id}"));
        };
        if p.exit.is_some() {
            return Reply::ok();
        }
        let sig = match Signal::try_from(signal) {
            Ok(s) => s,
            Err(e) => return Reply::err(format!("signal {signal}: {e}")),
        };
        match nix::sys::signal::kill(Pid::from_raw(p.pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Reply::ok(),
            Err(e) => Reply::err(format!("kill {}: {e}", p.pid)),
        }
    }

    fn start(&mut self) -> Reply {
        // Output that races ahead of the reply is still read by the loop; start itself only
        // releases the process.
        match self.runtime.start(&self.cfg.id) {
            Ok(()) => Reply {
                pid: self.procs.get(&None).map(|p| p.pid),
                ..Reply::ok()
            },
            Err(e) => {
                let code = error_exit_code(&e);
                self.start_failure = Some((code, e.to_string()));
                if let Some(p) = self.procs.get_mut(&None) {
                    if let Some(exit) = p.exit.as_mut() {
                        exit.exit_code = code;
                        exit.error = e.to_string();
                    }
                }
                Reply {
                    error: Some(e.to_string()),
                    exit_code: Some(code),
                    ..Reply::ok()
                }
            }
        }
    }

    fn exec(
        &mut self,
        i: usize,
        exec_id: String,
        process: &oci_spec::runtime::Process,
        stdin: bool,
    ) -> Reply {
        let tty = process.terminal().unwrap_or(false);
        let plan = match plan_stdio(tty, stdin) {
            Ok(p) => p,
            Err(e) => return Reply::err(format!("exec stdio: {e}")),
        };
        // berth-runtime resets the signal mask and dispositions in the new process, so the
        // shim's blocked SIGCHLD does not leak into it.
        let res = self.runtime.exec(&self.cfg.id, process, plan.stdio);
        let reply = match res {
            Ok(created) => {
                let pid = created.pid;
                let mut p = new_proc(created, plan.stdin, plan.outputs);
                p.stdin_once = true;
                // Registered before reaping, so an exec that already ended is matched.
                self.procs.insert(Some(exec_id.clone()), p);
                self.clients[i].mode = Mode::Stream {
                    key: Some(exec_id),
                    stdin,
                    stdout: true,
                    stderr: true,
                };
                Reply {
                    pid: Some(pid),
                    ..Reply::ok()
                }
            }
            Err(e) => Reply {
                error: Some(e.to_string()),
                exit_code: Some(error_exit_code(&e)),
                ..Reply::ok()
            },
        };
        // An exec that already ended was registered above, so this reap matches it.
        self.reap();
        reply
    }
}

/// Set a PTY's window size.
fn set_winsize(pty: &OwnedFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    let rc = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn push_reply(out: &mut Vec<u8>, r: &Reply) {
    out.extend_from_slice(serde_json::to_string(r).unwrap_or_default().as_bytes());
    out.push(b'\n');
}

enum Tag {
    Signal,
    Listener,
    Output(ProcKey, usize),
    Stdin(ProcKey),
    Client(usize),
}
