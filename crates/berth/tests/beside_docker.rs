//! berth beside a dockerd that set the iptables FORWARD policy to DROP (with br_netfilter,
//! even traffic between containers on one bridge passes that chain). Alone in its test binary:
//! the policy change is host-wide.

mod common;

use common::{stdout, Daemon};
use std::process::Command;

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Sets FORWARD to DROP as dockerd does, and puts things back on drop.
struct DropPolicy {
    had_filter_table: bool,
    was_drop: bool,
}

impl DropPolicy {
    fn set() -> DropPolicy {
        let tables = stdout(
            &Command::new("nft")
                .args(["list", "tables"])
                .output()
                .unwrap(),
        );
        let had_filter_table = tables.lines().any(|l| l.trim() == "table ip filter");
        let rules = stdout(
            &Command::new("iptables")
                .args(["-S", "FORWARD"])
                .output()
                .unwrap(),
        );
        let was_drop = rules.lines().any(|l| l == "-P FORWARD DROP");
        assert!(iptables(&["-P", "FORWARD", "DROP"]));
        DropPolicy {
            had_filter_table,
            was_drop,
        }
    }
}

impl Drop for DropPolicy {
    fn drop(&mut self) {
        if !self.was_drop {
            iptables(&["-P", "FORWARD", "ACCEPT"]);
        }
        if !self.had_filter_table {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", "filter"])
                .status();
        }
    }
}

#[test]
fn containers_talk_through_a_forward_drop_policy() {
    let _policy = DropPolicy::set();
    let d = Daemon::start();
    d.ok(&[
        "run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
    ]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let probe = format!("timeout 3 wget -qO- http://{ip}/hostname || echo blocked");
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "sh", "-c", &probe]),
        &id[..12]
    );
    // Without berth's accept rules the same request is dropped: they are what lets it pass.
    assert!(iptables(&[
        "-D", "FORWARD", "-i", &d.bridge, "-j", "ACCEPT"
    ]));
    assert!(iptables(&[
        "-D", "FORWARD", "-o", &d.bridge, "-j", "ACCEPT"
    ]));
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "sh", "-c", &probe]),
        "blocked"
    );
    // A user network made now gets its rules too, and loses them when removed.
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &d.user_subnet(0),
        "-o",
        "com.docker.network.bridge.name=btdrop",
        "dn",
    ]);
    assert!(iptables(&["-C", "FORWARD", "-i", "btdrop", "-j", "ACCEPT"]));
    d.ok(&["network", "rm", "dn"]);
    assert!(!iptables(&[
        "-C", "FORWARD", "-i", "btdrop", "-j", "ACCEPT"
    ]));
    d.ok(&["rm", "-f", "web"]);
}
