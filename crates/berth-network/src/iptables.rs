//! Living beside Docker: dockerd sets the iptables `FORWARD` policy to DROP, and a packet must
//! pass every base chain on the forward hook, so an accept in berth's own table is not enough.
//! When (and only when) that policy is DROP, berth's bridges get accept rules in `FORWARD`;
//! berth's own table still applies its isolation rules on top. It touches nothing in iptables but
//! those accept rules for berth's bridges, and never changes the policy or another chain.

use std::process::Command;

fn iptables(args: &[&str]) -> Option<std::process::Output> {
    Command::new("iptables").args(args).output().ok()
}

/// Whether iptables is present and its filter `FORWARD` chain drops by default.
pub fn forward_drops() -> bool {
    iptables(&["-w", "-S", "FORWARD"]).is_some_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "-P FORWARD DROP")
    })
}

fn run(op: &str, dir: &str, bridge: &str) -> Option<std::process::Output> {
    iptables(&["-w", op, "FORWARD", dir, bridge, "-j", "ACCEPT"])
}

/// Let the bridge's traffic through a DROP policy (idempotent).
pub fn allow_bridge(bridge: &str) -> crate::Result<()> {
    for dir in ["-i", "-o"] {
        if run("-C", dir, bridge).is_some_and(|o| o.status.success()) {
            continue;
        }
        match run("-I", dir, bridge) {
            Some(o) if o.status.success() => {}
            Some(o) => {
                return Err(crate::Error::Nft(format!(
                    "iptables -I FORWARD {dir} {bridge} -j ACCEPT: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            None => return Err(crate::Error::Nft("iptables could not be run".into())),
        }
    }
    Ok(())
}

/// Remove the accept rules of a bridge, if there are any.
pub fn forget_bridge(bridge: &str) {
    for dir in ["-i", "-o"] {
        // Inserted at most once, but a rule added by hand twice goes too.
        while run("-D", dir, bridge).is_some_and(|o| o.status.success()) {}
    }
}
