//! A closed stdout or stderr ends the client quietly, the way it ends Unix tools
//! (`berth ps | head -1`): a write to fd 1 or 2 whose reader is gone kills the process with
//! SIGPIPE. A write to any other descriptor (the daemon's socket) still just fails with EPIPE,
//! as under Go's runtime, so a closed connection stays an error the command reports.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Route SIGPIPE through [`on_sigpipe`]. Only the client calls this: the daemon, shims and
/// the registry keep SIGPIPE ignored, as the Rust runtime leaves it.
pub fn install() {
    let act = SigAction::new(
        SigHandler::Handler(on_sigpipe),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler makes only async-signal-safe calls (poll, signal, raise) and keeps
    // errno as it found it.
    if let Err(e) = unsafe { sigaction(Signal::SIGPIPE, &act) } {
        eprintln!("berth: cannot handle SIGPIPE: {e}");
    }
}

/// Runs in the thread whose write raised SIGPIPE: when stdout or stderr is a pipe without a
/// reader (poll reports POLLERR on its write end), die of the signal; otherwise return and let
/// the write fail with EPIPE.
extern "C" fn on_sigpipe(_: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    let mut fds = [1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is an array of two initialised pollfd that outlives the call; a zero
    // timeout never blocks.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if ready > 0 && fds.iter().any(|p| p.revents & libc::POLLERR != 0) {
        // SAFETY: signal and raise are async-signal-safe. SIGPIPE is blocked while this
        // handler runs, so the raised signal is delivered, with the default action of ending
        // the process, as soon as the handler returns.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
    // SAFETY: as above; restores the value the interrupted code may still read.
    unsafe { *libc::__errno_location() = errno };
}
