//! Seccomp: compile `linux.seccomp` with libseccomp (unknown syscall names for this
//! architecture are skipped), cache the resulting BPF program under the state root (compiling
//! Docker's profile costs ~15 ms; loading cached BPF costs microseconds), and load it.

use std::fs;
use std::io;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::error::{Error, Result};

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Seccomp(format!("{what}: {e}"))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Seccomp(
                "SCMP_ACT_NOTIFY (seccomp agents) is not supported".into(),
            ))
        }
    })
}

fn op(o: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

/// Compile the filter (no privileges needed; loading it is separate).
pub(crate) fn compile(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("init", e))?;
    // The runtime sets no_new_privs itself when the process asks for it.
    ctx.set_ctl_nnp(false)
        .map_err(|e| err("nnp attribute", e))?;
    for a in s.architectures().iter().flatten() {
        let name = serde_json::to_value(a).ok();
        let Some(arch) = name
            .as_ref()
            .and_then(|v| v.as_str())
            .and_then(|n| ScmpArch::from_str(n).ok())
        else {
            continue;
        };
        ctx.add_arch(arch).map_err(|e| err("add arch", e))?;
    }
    for f in s.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true).map_err(|e| err("log flag", e))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true)
                    .map_err(|e| err("spec_allow flag", e))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                ctx.set_ctl_tsync(true).map_err(|e| err("tsync flag", e))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {}
        }
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (o, datum) = match a.op() {
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        (op(a.op(), a.value()), a.value_two().unwrap_or(0))
                    }
                    other => (op(other, a.value()), a.value()),
                };
                ScmpArgCompare::new(a.index() as u32, o, datum)
            })
            .collect();
        // libseccomp cannot compare the same argument twice in one rule: then each condition
        // becomes its own rule (OR), as runc does.
        let mut counts = [0u8; 6];
        for a in rule.args().iter().flatten() {
            if let Some(c) = counts.get_mut(a.index()) {
                *c += 1;
            }
        }
        let split = counts.iter().any(|&c| c > 1);
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let r = if conds.is_empty() {
                ctx.add_rule(act, sc).map(drop)
            } else if split {
                conds
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, sc, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, sc, &conds).map(drop)
            };
            r.map_err(|e| err(&format!("rule for {name}"), e))?;
        }
    }
    Ok(ctx)
}

/// A compiled filter: classic BPF instructions and the seccomp(2) flags to load them with.
pub(crate) struct Program {
    bpf: Vec<u8>,
    flags: libc::c_ulong,
}

fn load_flags(s: &LinuxSeccomp) -> libc::c_ulong {
    const TSYNC: libc::c_ulong = 1;
    const LOG: libc::c_ulong = 2;
    const SPEC_ALLOW: libc::c_ulong = 4;
    s.flags().iter().flatten().fold(0, |f, fl| {
        f | match fl {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        }
    })
}

/// Cache key: the profile, the kernel (libseccomp adapts to its API level) and libseccomp.
fn cache_key(s: &LinuxSeccomp) -> Result<String> {
    let json = serde_json::to_vec(s).map_err(|e| err("serialize", e))?;
    let kernel = fs::read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let v =
        libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro));
    let mut h = Sha256::new();
    h.update(b"berth-seccomp-v1\0");
    h.update(v.unwrap_or_default().as_bytes());
    h.update(b"\0");
    h.update(&kernel);
    h.update(b"\0");
    h.update(&json);
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The BPF program for `s`, from `cache_dir` or compiled (and then stored there).
pub(crate) fn program(s: &LinuxSeccomp, cache_dir: &Path) -> Result<Program> {
    let flags = load_flags(s);
    let key = cache_key(s)?;
    let path = cache_dir.join(format!("{key}.bpf"));
    if let Ok(bpf) = fs::read(&path) {
        if !bpf.is_empty() && bpf.len() % 8 == 0 {
            return Ok(Program { bpf, flags });
        }
    }
    let ctx = compile(s)?;
    fs::create_dir_all(cache_dir).map_err(|e| Error::io("mkdir", cache_dir, e))?;
    let tmp = cache_dir.join(format!("{key}.{}.tmp", std::process::id()));
    let f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let exported = ctx.export_bpf(&f).map_err(|e| err("export", e));
    drop(f);
    let bpf = exported.and_then(|()| fs::read(&tmp).map_err(|e| Error::io("read", &tmp, e)));
    let bpf = match bpf {
        Ok(b) => b,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Publishing is best effort: a failed rename only costs the next container a compile.
    if fs::rename(&tmp, &path).is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(Program { bpf, flags })
}

/// Load the program into the calling thread with seccomp(SECCOMP_SET_MODE_FILTER).
pub(crate) fn load(p: &Program) -> Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const u8,
    }
    let len = libc::c_ushort::try_from(p.bpf.len() / 8)
        .map_err(|_| Error::Seccomp("filter has more than 65535 instructions".into()))?;
    let prog = SockFprog {
        len,
        filter: p.bpf.as_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    // SAFETY: prog points at `len` 8-byte sock_filter instructions in p.bpf, which outlives
    // the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            p.flags,
            &prog as *const SockFprog,
        )
    };
    if r < 0 {
        return Err(Error::sys(
            "seccomp",
            "SECCOMP_SET_MODE_FILTER",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
