//! Seccomp: compile `linux.seccomp` with libseccomp (unknown syscall names for this
//! architecture are skipped) and load it.

use std::str::FromStr;

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

/// Load a compiled filter into the calling thread.
pub(crate) fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(|e| err("load", e))
}
