//! Helpers of the `berth compose` tests: a project directory removed at the end, and the
//! command run in it against a test daemon.

use super::{stderr, stdout, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A project directory of this test, removed at the end.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("berth-compose-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("project dir");
        Dir(p)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Dir {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(p, text).expect("write");
        self
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `berth -H <daemon> compose ARGS` in `dir`, without the caller's COMPOSE_* variables.
pub fn command(d: &Daemon, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(super::berth_bin());
    c.current_dir(dir)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .arg("-H")
        .arg(d.host())
        .arg("compose")
        .args(args)
        .stdin(Stdio::null());
    c
}

/// `berth compose ARGS` run in `dir`.
pub fn compose(d: &Daemon, dir: &Path, args: &[&str]) -> Output {
    command(d, dir, args).output().expect("run berth compose")
}

/// The same with extra environment variables.
pub fn compose_env(d: &Daemon, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(d, dir, args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run berth compose")
}

/// `berth compose ARGS` that must succeed; its stdout.
pub fn ok(d: &Daemon, dir: &Path, args: &[&str]) -> String {
    let out = compose(d, dir, args);
    assert!(
        out.status.success(),
        "compose {args:?} failed ({:?}): {}\n--- stdout ---\n{}\n--- daemon log ---\n{}",
        out.status.code(),
        stderr(&out),
        stdout(&out),
        d.daemon_log()
    );
    stdout(&out)
}

/// `berth compose ARGS` that must fail with exit code 1 and `msg` on stderr.
pub fn refused(d: &Daemon, dir: &Path, args: &[&str], msg: &str) {
    let out = compose(d, dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(msg),
        "{args:?}: wanted {msg:?} in: {}",
        stderr(&out)
    );
}
