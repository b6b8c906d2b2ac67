//! Swarm mode end to end on the multi-node harness (each berth daemon in namespaces of its
//! own on one bridge LAN), driven by the docker CLI: a cluster of 3 managers and 2 workers,
//! services that converge and spread, scale, rolling update and rollback, drain, leader
//! failover, node death and rejoin, daemon restart with live tasks; secrets only inside
//! tasks, join refusals, quorum loss and `--force-new-cluster`; swarm networks and `docker
//! stack` (deploy, update, ls, services, ps, rm); autolock; root CA rotation (`swarm ca
//! --rotate`); nothing left after teardown.

mod common;
use common::stdout;
use common::swarm::Cluster;
use std::collections::BTreeMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// Running tasks of a service as (name, node), from `docker service ps`.
fn running(c: &Cluster, via: usize, service: &str) -> Vec<(String, String)> {
    let out = c.docker(
        via,
        &[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.Node}} {{.CurrentState}}",
        ],
    );
    stdout(&out)
        .lines()
        .filter(|l| l.contains(" Running "))
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect()
}

fn replicas(c: &Cluster, via: usize, service: &str) -> String {
    c.ok(
        via,
        &[
            "service",
            "ls",
            "--filter",
            &format!("name={service}"),
            "--format",
            "{{.Replicas}}",
        ],
    )
}

/// IDs of the running tasks of a service.
fn running_ids(c: &Cluster, via: usize, service: &str) -> std::collections::BTreeSet<String> {
    let out = c.docker(
        via,
        &[
            "service",
            "ps",
            service,
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.CurrentState}}",
        ],
    );
    stdout(&out)
        .lines()
        .filter(|l| l.contains(" Running "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The running task containers of a service on nodes 1..=n: task id → container env.
fn task_envs(c: &Cluster, n: usize, service: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for i in 1..=n {
        let label = format!("label=com.docker.swarm.service.name={service}");
        for id in c.ok(i, &["ps", "-q", "--filter", &label]).lines() {
            let out = c.docker(
                i,
                &[
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"com.docker.swarm.task.id\"}} {{json .Config.Env}}",
                    id,
                ],
            );
            if let Some((task, env)) = stdout(&out).trim().split_once(' ') {
                found.insert(task.to_string(), env.to_string());
            }
        }
    }
    found
}

/// The leader's hostname as node `via` sees it.
fn leader(c: &Cluster, via: usize) -> Option<String> {
    let out = c.docker(
        via,
        &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
    );
    stdout(&out)
        .lines()
        .find(|l| l.ends_with(" Leader"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
}

#[test]
fn cluster_schedules_updates_and_survives_failures() {
    let c = Cluster::up(5);
    c.form(3);

    // The CLI's view: one leader, two reachable managers, two workers; swarm commands hidden
    // nowhere; a worker refuses manager requests with dockerd's message.
    let nodes = c.ok(
        1,
        &[
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
        ],
    );
    let mut lines: Vec<&str> = nodes.lines().map(str::trim_end).collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "node1 Ready Leader",
            "node2 Ready Reachable",
            "node3 Ready Reachable",
            "node4 Ready",
            "node5 Ready"
        ],
        "{nodes}"
    );
    let info = c.ok(
        4,
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
    );
    assert_eq!(info, "active false");
    let refused = c.docker(4, &["node", "ls"]);
    assert!(!refused.status.success());
    assert!(
        common::stderr(&refused)
            .contains("Worker nodes can't be used to view or modify cluster state"),
        "{}",
        common::stderr(&refused)
    );

    // A replicated service converges (the CLI's --detach=false progress with _up-to-date) and
    // spreads over every node.
    c.ok(
        1,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--name",
            "web",
            "--replicas",
            "10",
            "busybox",
            "sleep",
            "100000",
        ],
    );
    assert_eq!(replicas(&c, 1, "web"), "10/10");
    let tasks = running(&c, 1, "web");
    assert_eq!(tasks.len(), 10);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (_, n) in &tasks {
        *per_node.entry(n.clone()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 5, "spread: {per_node:?}");
    assert!(per_node.values().all(|v| *v == 2), "spread: {per_node:?}");
    // Task containers carry Docker's names and labels.
    let names = c.ok(
        4,
        &[
            "ps",
            "--filter",
            "label=com.docker.swarm.service.name=web",
            "--format",
            "{{.Names}} {{.Label \"com.docker.swarm.task.id\"}}",
        ],
    );
    for l in names.lines() {
        let (name, id) = l.split_once(' ').expect("name and task id");
        assert!(name.starts_with("web.") && name.ends_with(id), "{l}");
    }

    // Service logs come from every node, each line after the task and node it came from;
    // asked on a follower manager (the subscription goes through the leader).
    c.ok(
        1,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--name",
            "talk",
            "--replicas",
            "5",
            "--replicas-max-per-node",
            "1",
            "busybox",
            "sh",
            "-c",
            "echo hello from $(hostname); echo oops >&2; exec sleep 100000",
        ],
    );
    c.until("logs of the five tasks", LONG, || {
        let o = c.docker(2, &["service", "logs", "talk"]);
        (stdout(&o) + &common::stderr(&o))
            .matches("hello from")
            .count()
            == 5
    });
    let o = c.docker(2, &["service", "logs", "talk"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let (out, err) = (stdout(&o), common::stderr(&o));
    let mut from: Vec<String> = Vec::new();
    for l in out.lines() {
        // talk.3.abcdefghijkl@node4    | hello from 0123456789ab
        let (who, text) = l.split_once('|').expect("a prefix");
        let (task, node) = who.trim().split_once('@').expect("task@node");
        assert!(task.starts_with("talk.") && task.len() > 12, "{l}");
        assert!(text.trim().starts_with("hello from "), "{l}");
        from.push(node.to_string());
    }
    from.sort();
    assert_eq!(from, ["node1", "node2", "node3", "node4", "node5"], "{out}");
    assert_eq!(err.matches("| oops").count(), 5, "stderr: {err}");
    // Raw, the last two lines of each task (hello, then oops on stderr); one task's log by
    // its id.
    let raw = c.ok(3, &["service", "logs", "--raw", "--tail", "2", "talk"]);
    assert_eq!(raw.matches("hello from").count(), 5, "{raw}");
    assert!(!raw.contains('|'), "{raw}");
    let one = c.ok(
        1,
        &[
            "service",
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "name=talk.2",
            "--filter",
            "desired-state=running",
            "talk",
        ],
    );
    let task_log = c.ok(1, &["service", "logs", "--no-task-ids", one.trim()]);
    assert_eq!(task_log.lines().count(), 1, "{task_log}");
    assert!(task_log.starts_with("talk.2@"), "{task_log}");
    // Follow keeps the stream open until the reader leaves (here: timeout ends the CLI).
    let followed = std::process::Command::new("timeout")
        .args(["3", "docker", "-H", &c.sock(2)])
        .args(["service", "logs", "-f", "talk"])
        .output()
        .unwrap();
    assert_eq!(followed.status.code(), Some(124), "follow ended early");
    assert_eq!(stdout(&followed).matches("hello from").count(), 5);
    c.ok(1, &["service", "rm", "talk"]);

    // A global service: one task per node.
    c.ok(
        2,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--name",
            "agent",
            "--mode",
            "global",
            "busybox",
            "sleep",
            "100000",
        ],
    );
    let g = running(&c, 1, "agent");
    let mut gn: Vec<String> = g.iter().map(|(_, n)| n.clone()).collect();
    gn.sort();
    assert_eq!(gn, ["node1", "node2", "node3", "node4", "node5"]);

    // Scale down and up.
    c.ok(1, &["service", "scale", "web=4"]);
    assert_eq!(running(&c, 1, "web").len(), 4);

    // A rolling update replaces every task in its slot; rollback brings the old spec back.
    let first = running_ids(&c, 1, "web");
    assert_eq!(first.len(), 4, "{first:?}");
    c.ok(
        1,
        &[
            "service",
            "update",
            "--update-parallelism",
            "2",
            "--env-add",
            "COLOR=blue",
            "web",
        ],
    );
    // New tasks, whose containers have the new environment, and no old container left running.
    let updated = running_ids(&c, 1, "web");
    assert_eq!(updated.len(), 4, "{updated:?}");
    assert!(updated.is_disjoint(&first), "{first:?} -> {updated:?}");
    c.until("the updated containers alone run", LONG, || {
        let envs = task_envs(&c, 5, "web");
        envs.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            == updated
            && envs.values().all(|e| e.contains("\"COLOR=blue\""))
    });
    let after: Vec<String> = running(&c, 1, "web").into_iter().map(|t| t.0).collect();
    let mut sorted = after.clone();
    sorted.sort();
    assert_eq!(sorted.len(), 4, "{after:?}");
    let env = c.ok(
        1,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        ],
    );
    assert_eq!(env, "[\"COLOR=blue\"]");
    let state = c.ok(
        1,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.UpdateStatus.State}}",
        ],
    );
    assert_eq!(state, "completed");
    c.ok(1, &["service", "rollback", "web"]);
    let env = c.ok(
        1,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        ],
    );
    assert_eq!(env, "null");
    assert_eq!(running(&c, 1, "web").len(), 4);
    let rolled = running_ids(&c, 1, "web");
    assert_eq!(rolled.len(), 4, "{rolled:?}");
    assert!(
        rolled.is_disjoint(&updated) && rolled.is_disjoint(&first),
        "rollback made no new tasks: {updated:?} -> {rolled:?}"
    );
    c.until("the rolled-back containers alone run", LONG, || {
        let envs = task_envs(&c, 5, "web");
        envs.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            == rolled
            && envs.values().all(|e| !e.contains("COLOR="))
    });

    // A worker's daemon stalled for 2.5 s (SIGSTOP, then SIGCONT) is no failure: the failure
    // detector tolerates a 2 s stall, so node4 is never reported Down and none of its tasks is
    // replaced (ARCHITECTURE.md: Down after three 1 s heartbeats and a second).
    let tasks_before = c.ok(1, &["service", "ps", "-q", "--no-trunc", "web", "agent"]);
    assert!(
        !c.ok(4, &["ps", "-q"]).is_empty(),
        "node4 runs tasks to replace"
    );
    let node4 = || {
        stdout(&c.docker(1, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]))
            .lines()
            .find(|l| l.starts_with("node4 "))
            .unwrap_or("node4 ?")
            .to_string()
    };
    c.signal(4, "STOP");
    let stalled = std::time::Instant::now();
    let mut seen = Vec::new();
    while stalled.elapsed() < Duration::from_millis(2500) {
        seen.push(node4());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.signal(4, "CONT");
    // A verdict would come within a few heartbeats of the stall: watch a while longer.
    while stalled.elapsed() < Duration::from_secs(8) {
        seen.push(node4());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.iter().all(|s| s == "node4 Ready"),
        "a 2.5 s stall gave a verdict: {seen:?}"
    );
    assert_eq!(
        c.ok(1, &["service", "ps", "-q", "--no-trunc", "web", "agent"]),
        tasks_before,
        "tasks replaced after a 2.5 s stall"
    );

    // Drain: node5's tasks move away; the global task there stops.
    c.ok(1, &["node", "update", "--availability", "drain", "node5"]);
    c.until("node5 drained", LONG, || {
        running(&c, 1, "web").iter().all(|(_, n)| n != "node5")
            && running(&c, 1, "web").len() == 4
            && running(&c, 1, "agent").iter().all(|(_, n)| n != "node5")
    });
    c.ok(1, &["node", "update", "--availability", "active", "node5"]);

    // Leader failover: kill -9 of the leader's daemon; another manager leads and the CLI
    // keeps working through it.
    assert_eq!(leader(&c, 2).as_deref(), Some("node1"));
    c.crash(1);
    c.until("a new leader", LONG, || {
        leader(&c, 2).is_some_and(|l| l != "node1")
    });
    c.ok(2, &["service", "scale", "web=6"]);
    c.until("web at 6", LONG, || running(&c, 2, "web").len() == 6);

    // Node death: node4's daemon and tasks die; its tasks run elsewhere; it comes back Ready
    // with no duplicate of what moved away.
    c.start(1);
    c.until("node1 back", LONG, || {
        c.docker(2, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
            .status
            .success()
            && stdout(&c.docker(2, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]))
                .contains("node1 Ready")
    });
    let on4 = running(&c, 2, "web")
        .iter()
        .filter(|(_, n)| n == "node4")
        .count();
    assert!(on4 > 0, "node4 runs part of web");
    c.kill(4);
    c.until("node4's tasks elsewhere", LONG, || {
        let r = running(&c, 2, "web");
        r.len() == 6 && r.iter().all(|(_, n)| n != "node4")
    });
    let down = c.ok(2, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    assert!(down.contains("node4 Down"), "{down}");
    c.start(4);
    c.until("node4 ready again", LONG, || {
        stdout(&c.docker(2, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]))
            .contains("node4 Ready")
    });
    c.until("no duplicate of web on node4", LONG, || {
        let names = c.ok(
            4,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=web",
            ],
        );
        names.is_empty()
    });
    assert_eq!(running(&c, 2, "web").len(), 6);

    // A daemon restart keeps its running tasks (live restore) and resumes.
    let before = c.ok(
        3,
        &[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "label=com.docker.swarm.service.name=web",
        ],
    );
    assert!(!before.is_empty());
    c.crash(3);
    c.start(3);
    c.until("node3 ready after restart", LONG, || {
        stdout(&c.docker(2, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]))
            .contains("node3 Ready")
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = c.ok(
        3,
        &[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "label=com.docker.swarm.service.name=web",
        ],
    );
    assert_eq!(before, after, "the task containers are the same");
    assert_eq!(running(&c, 2, "web").len(), 6);

    // berth's rebalance (POST /services/{id}/rebalance): the nodes that came back or were
    // drained get their share of web's six tasks; no node runs more than one more than another.
    // (Asked again while tasks are still moving: a pass counts only running tasks.)
    let sock = c.sock(2);
    c.until("web spread over the five nodes", LONG, || {
        let moved = std::process::Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "--unix-socket",
                sock.trim_start_matches("unix://"),
            ])
            .arg("http://berth/services/web/rebalance")
            .output()
            .unwrap();
        assert!(moved.status.success(), "{}", stdout(&moved));
        let r = running(&c, 2, "web");
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for (_, n) in &r {
            *per.entry(n.clone()).or_default() += 1;
        }
        r.len() == 6 && per.len() == 5 && per.values().all(|v| *v <= 2)
    });

    c.ok(2, &["service", "rm", "web", "agent"]);
    c.until("tasks gone", LONG, || {
        (1..=5).all(|i| c.ok(i, &["ps", "-aq"]).is_empty())
    });
    c.down_and_check();
}

#[test]
fn secrets_tokens_and_quorum() {
    let c = Cluster::up(4);
    c.form(3);

    // Join refusals: a wrong secret, and a token whose CA digest does not match.
    let mt = c.ok(1, &["swarm", "join-token", "-q", "worker"]);
    let remote = format!("{}:2377", c.addr(1));
    // A manager's leave without --force is refused, with moby's text (quorum is not at risk).
    let out = c.docker(2, &["swarm", "leave"]);
    assert!(
        common::stderr(&out).contains("You are attempting to leave the swarm on a node that is participating as a manager. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."),
        "{}",
        common::stderr(&out)
    );
    // node4 is already in the swarm: leave it first to try the bad tokens.
    c.ok(4, &["swarm", "leave"]);
    let mut parts: Vec<String> = mt.split('-').map(str::to_string).collect();
    parts[3] = "0".repeat(25);
    let wrong_secret = parts.join("-");
    let out = c.docker(4, &["swarm", "join", "--token", &wrong_secret, &remote]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("A valid join token is necessary"),
        "{}",
        common::stderr(&out)
    );
    let mut parts: Vec<String> = mt.split('-').map(str::to_string).collect();
    parts[2] = "1".repeat(50);
    let tampered = parts.join("-");
    let out = c.docker(4, &["swarm", "join", "--token", &tampered, &remote]);
    assert!(
        common::stderr(&out).contains("remote CA does not match fingerprint. Expected: "),
        "{}",
        common::stderr(&out)
    );
    let info = c.ok(4, &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(info, "inactive");

    // A secret is visible inside the task, on a tmpfs, and nowhere on the nodes' disks.
    let out = std::process::Command::new("docker")
        .env("DOCKER_HOST", c.sock(1))
        .args(["secret", "create", "topsecret", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin
                .take()
                .expect("stdin")
                .write_all(b"s3cr3t-v4lue-7781")?;
            ch.wait_with_output()
        })
        .expect("secret create");
    assert!(out.status.success());
    c.ok(
        1,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--name",
            "sec",
            "--secret",
            "topsecret",
            "--constraint",
            "node.hostname==node2",
            "busybox",
            "sleep",
            "100000",
        ],
    );
    let id = c.ok(
        2,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=sec",
        ],
    );
    let got = c.ok(2, &["exec", &id, "cat", "/run/secrets/topsecret"]);
    assert_eq!(got, "s3cr3t-v4lue-7781");
    // Not in the clear, not base64 (a SecretSpec's Data), not as a JSON array of bytes (a
    // Payload), in the data roots or the exec roots (where only the task's tmpfs under
    // swarm/files may hold it): every file on those file systems is searched.
    let secret = "s3cr3t-v4lue-7781";
    let b64 = std::process::Command::new("sh")
        .args(["-c", &format!("printf %s {secret} | base64")])
        .output()
        .expect("base64");
    // (The whole 3-byte groups only: their encoding does not depend on what follows.)
    let b64 = stdout(&b64)[..secret.len() / 3 * 4].to_string();
    let bytes: Vec<String> = secret.bytes().map(|b| b.to_string()).collect();
    let array = bytes.join(",[[:space:]]*");
    // Files under `root` (on its file system, outside swarm/files) holding any of the forms.
    let search = |root: &str| {
        let grep = std::process::Command::new("sh")
            .args([
                "-c",
                "find \"$1\" -xdev -path '*/swarm/files' -prune -o -type f -print0 \
                 | xargs -0 -r grep -l -z -E -e \"$2\" -e \"$3\" -e \"$4\"",
                "sh",
                root,
                secret,
                &b64,
                &array,
            ])
            .output()
            .expect("grep");
        stdout(&grep).trim().to_string()
    };
    // The search finds each form (control files: a spec with the base64, a pretty-printed
    // payload).
    let control = format!("/run/{}/grep-control", c.name);
    std::fs::create_dir_all(&control).unwrap();
    let spec = serde_json::json!({ "Name": "x", "Data": format!("{b64}{}", "xyz=") });
    std::fs::write(format!("{control}/spec.json"), spec.to_string()).unwrap();
    let payload =
        serde_json::to_string_pretty(&serde_json::json!({ "Payload": secret.as_bytes() })).unwrap();
    std::fs::write(format!("{control}/payload.json"), payload).unwrap();
    assert_eq!(search(&control).lines().count(), 2, "{}", search(&control));
    std::fs::remove_dir_all(&control).unwrap();
    for root in [format!("/var/lib/{}", c.name), format!("/run/{}", c.name)] {
        assert_eq!(
            search(&root),
            "",
            "the secret is in {root} in the clear, in base64 ({b64}) or as bytes"
        );
    }
    let ls = c.ok(1, &["secret", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls, "topsecret");
    let rm = c.docker(1, &["secret", "rm", "topsecret"]);
    assert!(!rm.status.success(), "a secret in use is kept");

    // Quorum loss: two of three managers die; writes fail with Docker's message, the task
    // keeps running; --force-new-cluster on the survivor recovers.
    c.crash(1);
    c.crash(3);
    c.until("no leader on node2", LONG, || {
        let out = c.docker(2, &["service", "scale", "sec=2"]);
        !out.status.success() && common::stderr(&out).contains("The swarm does not have a leader")
    });
    assert!(
        c.ok(
            2,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=sec"
            ]
        ) == id
    );
    c.ok(
        2,
        &[
            "swarm",
            "init",
            "--force-new-cluster",
            "--advertise-addr",
            &c.addr(2),
        ],
    );
    c.until("writes work again", LONG, || {
        c.docker(2, &["service", "scale", "sec=1"]).status.success()
    });
    let managers = c.ok(
        2,
        &[
            "node",
            "ls",
            "--filter",
            "role=manager",
            "--format",
            "{{.Hostname}}",
        ],
    );
    assert_eq!(managers, "node2");
    c.ok(2, &["service", "rm", "sec"]);
    c.ok(2, &["secret", "rm", "topsecret"]);
    c.until("tasks gone", LONG, || c.ok(2, &["ps", "-aq"]).is_empty());
    c.down_and_check();
}

/// Every task of a service: (name, state word), from `docker service ps`.
fn all_tasks(c: &Cluster, via: usize, service: &str) -> Vec<(String, String)> {
    let out = c.docker(
        via,
        &[
            "service",
            "ps",
            service,
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ],
    );
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect()
}

#[test]
fn promotion_tokens_jobs_and_restart_limits() {
    let c = Cluster::up(4);
    c.form(1);

    // berth's extension: a service whose tasks are privileged and get a host device (the
    // docker CLI has no flags for it; the API takes them in the container spec).
    let spec = r#"{"Name":"priv","Mode":{"Replicated":{"Replicas":1}},
        "TaskTemplate":{"ContainerSpec":{"Image":"busybox","Args":["sleep","100000"],
        "Privileged":true,"Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/berth-null",
        "CgroupPermissions":"rwm"}]},"Placement":{"Constraints":["node.role==manager"]}}}"#;
    let sock = c.sock(1);
    let made = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket", sock.trim_start_matches("unix://")])
        .args(["-H", "Content-Type: application/json", "-d", spec])
        .arg("http://berth/services/create")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stdout(&made));
    // The docker CLI decodes into Docker's types, which lack the fields: read the API.
    let shown = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket", sock.trim_start_matches("unix://")])
        .arg("http://berth/services/priv")
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let cs = &shown["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Privileged"], true, "{cs}");
    assert_eq!(
        cs["Devices"][0]["PathInContainer"], "/dev/berth-null",
        "{cs}"
    );
    c.until("the privileged task runs", LONG, || {
        stdout(&c.docker(
            1,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=priv",
            ],
        ))
        .lines()
        .count()
            == 1
    });
    let ctr = c.ok(
        1,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=priv",
        ],
    );
    assert_eq!(
        c.ok(
            1,
            &[
                "inspect",
                "--format",
                "{{.HostConfig.Privileged}} {{len .HostConfig.Devices}}",
                &ctr
            ]
        ),
        "true 1"
    );
    c.ok(1, &["exec", &ctr, "test", "-c", "/dev/berth-null"]);
    c.ok(1, &["service", "rm", "priv"]);

    // --cert-expiry: swarmkit's floor refused; a longer one is what certificates get (node2's
    // comes with its promotion below).
    let short = c.docker(1, &["swarm", "update", "--cert-expiry", "30m"]);
    assert!(!short.status.success());
    assert!(
        common::stderr(&short).contains("minimum certificate expiry time is: 1h0m0s"),
        "{}",
        common::stderr(&short)
    );
    c.ok(1, &["swarm", "update", "--cert-expiry", "2h"]);
    assert_eq!(
        c.ok(
            1,
            &[
                "info",
                "--format",
                "{{.Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}"
            ]
        ),
        "2h0m0s"
    );

    // Promote two workers, then demote the first manager through its own API.
    c.ok(1, &["node", "promote", "node2", "node3"]);
    c.until("three managers", LONG, || {
        let out = stdout(&c.docker(
            1,
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
        ));
        out.contains("node2 Reachable") && out.contains("node3 Reachable")
    });
    assert_eq!(
        c.ok(2, &["info", "--format", "{{.Swarm.ControlAvailable}}"]),
        "true"
    );
    let cert = format!("/var/lib/{}/node2/swarm/certs/swarm-node.crt", c.name);
    let checkend = |secs: &str| {
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-checkend", secs, "-in", &cert])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(
        checkend("3600") && !checkend("10800"),
        "node2's certificate lasts 2h"
    );
    c.ok(1, &["node", "demote", "node1"]);
    c.until("node1 a worker", LONG, || {
        let out = c.docker(
            2,
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
        );
        let s = stdout(&out);
        out.status.success() && s.lines().any(|l| l.trim_end() == "node1") && s.contains("Leader")
    });
    c.until("node1 knows it is a worker", LONG, || {
        c.ok(1, &["info", "--format", "{{.Swarm.ControlAvailable}}"]) == "false"
    });

    // Rotating the worker token: the old one no longer admits, the new one does.
    let old = c.ok(2, &["swarm", "join-token", "-q", "worker"]);
    c.ok(2, &["swarm", "join-token", "--rotate", "-q", "worker"]);
    let new = c.ok(2, &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(old, new);
    c.ok(4, &["swarm", "leave"]);
    let remote = format!("{}:2377", c.addr(2));
    let refused = c.docker(4, &["swarm", "join", "--token", &old, &remote]);
    assert!(!refused.status.success());
    c.ok(4, &["swarm", "join", "--token", &new, &remote]);

    // A replicated job runs to its completions, at most two at a time.
    c.ok(
        2,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--name",
            "once",
            "--mode",
            "replicated-job",
            "--replicas",
            "3",
            "--max-concurrent",
            "2",
            "busybox",
            "true",
        ],
    );
    c.until("three completions", LONG, || {
        all_tasks(&c, 2, "once")
            .iter()
            .filter(|(_, s)| s == "Complete")
            .count()
            == 3
    });
    assert_eq!(all_tasks(&c, 2, "once").len(), 3);

    // A job whose task fails, with restarts refused, makes exactly one task.
    c.ok(
        2,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--detach",
            "--name",
            "failjob",
            "--mode",
            "replicated-job",
            "--restart-condition",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    c.until("the job failed", LONG, || {
        all_tasks(&c, 2, "failjob")
            .iter()
            .any(|(_, s)| s == "Failed")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(all_tasks(&c, 2, "failjob").len(), 1);

    // A failing service restarts at most its max attempts.
    c.ok(
        2,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--detach",
            "--name",
            "flaky",
            "--restart-max-attempts",
            "2",
            "--restart-delay",
            "100ms",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    c.until("three failed tasks", LONG, || {
        all_tasks(&c, 2, "flaky")
            .iter()
            .filter(|(_, s)| s == "Failed")
            .count()
            == 3
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(all_tasks(&c, 2, "flaky").len(), 3);

    c.ok(2, &["service", "rm", "once", "failjob", "flaky"]);
    c.until("tasks gone", LONG, || {
        (1..=4).all(|i| c.ok(i, &["ps", "-aq"]).is_empty())
    });
    c.down_and_check();
}

const STACK_V1: &str = r#"version: "3.8"
services:
  web:
    image: busybox:latest
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    stop_grace_period: 1s
    configs:
      - source: greeting
        target: /etc/greeting
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
  client:
    image: busybox:latest
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    deploy:
      placement:
        constraints: ["node.hostname == node1"]
configs:
  greeting:
    file: ./greeting.txt
"#;

/// The local bridges on node `i` that realise swarm networks (`br-<id>`), and nftables rules
/// for the stack network's subnet.
fn swarm_network_traces(c: &Cluster, i: usize) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args([
            "-n",
            &format!("{}-n{i}", c.name),
            "-o",
            "link",
            "show",
            "type",
            "bridge",
        ])
        .output()
        .expect("ip link");
    let mut found: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("br-") || n.starts_with("bov") || n.starts_with("vxl"))
        .collect();
    // And the nftables rules berth keeps for a network's subnet (swarm ones are in 10.0/16).
    let nft = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-n{i}", c.name),
            "nft",
            "list",
            "ruleset",
        ])
        .output()
        .expect("nft list ruleset");
    found.extend(
        stdout(&nft)
            .lines()
            .filter(|l| l.contains("10.0."))
            .map(|l| format!("nft: {}", l.trim())),
    );
    found
}

#[test]
fn stack_deploy_networks_update_and_rm() {
    let c = Cluster::up(2);
    // Outside a swarm an overlay or swarm-scoped network is refused as dockerd does.
    let out = c.docker(1, &["network", "create", "-d", "overlay", "ov"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out)
            .contains("This node is not a swarm manager. Use \"docker swarm init\""),
        "{}",
        common::stderr(&out)
    );
    let out = c.docker(1, &["network", "create", "--scope", "swarm", "ov"]);
    assert!(
        common::stderr(&out)
            .contains("cannot create a swarm scoped network when swarm is not active"),
        "{}",
        common::stderr(&out)
    );
    c.form(1);
    let out = c.docker(2, &["network", "create", "-d", "overlay", "ov"]);
    assert!(!out.status.success());

    // A swarm network by hand: listed, inspected, removed.
    let id = c.ok(
        1,
        &[
            "network", "create", "-d", "overlay", "--label", "k=v", "plain",
        ],
    );
    assert_eq!(id.len(), 25, "{id}");
    let shown = c.ok(
        1,
        &[
            "network",
            "ls",
            "--filter",
            "label=k=v",
            "--format",
            "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}",
        ],
    );
    assert_eq!(shown, format!("{} plain overlay swarm", &id[..12]));
    let subnet = c.ok(
        1,
        &[
            "network",
            "inspect",
            "plain",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        ],
    );
    // (10.0.0.0/24 is the predefined ingress network's, as in Docker.)
    assert_eq!(subnet, "10.0.1.0/24 10.0.1.1");
    let out = c.docker(1, &["network", "create", "-d", "overlay", "plain"]);
    assert!(
        common::stderr(&out).contains("network with name plain already exists"),
        "{}",
        common::stderr(&out)
    );
    c.ok(1, &["network", "rm", &id[..6]]);
    assert_eq!(
        c.ok(1, &["network", "ls", "-q", "--filter", "name=plain"]),
        ""
    );

    // The stack: a network, a config, two services; 2 web tasks spread over the nodes.
    // In the cluster's run directory: teardown removes it, also after a failure.
    let dir = std::path::PathBuf::from(format!("/run/{}/stack", c.name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("greeting.txt"), "hello from the stack\n").unwrap();
    let compose = dir.join("compose.yaml");
    std::fs::write(&compose, STACK_V1).unwrap();
    let compose = compose.to_string_lossy().into_owned();
    let deployed = c.ok(
        1,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            &compose,
            "st",
        ],
    );
    assert!(
        deployed.contains("Creating network st_default"),
        "{deployed}"
    );
    let net = c.ok(
        1,
        &[
            "network",
            "ls",
            "--filter",
            "label=com.docker.stack.namespace=st",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ],
    );
    assert_eq!(net, "st_default overlay swarm");
    let net_id = c.ok(
        1,
        &["network", "inspect", "st_default", "--format", "{{.ID}}"],
    );
    assert_eq!(
        c.ok(
            1,
            &[
                "service",
                "inspect",
                "st_web",
                "--format",
                "{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{.Aliases}}{{end}}"
            ]
        ),
        format!("{net_id} [web]")
    );
    assert_eq!(
        c.ok(1, &["stack", "ls", "--format", "{{.Name}} {{.Services}}"]),
        "st 2"
    );
    c.until("the stack's services converge", LONG, || {
        stdout(&c.docker(
            1,
            &[
                "stack",
                "services",
                "st",
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
        ))
        .trim()
            == "st_client 1/1\nst_web 2/2 (max 1 per node)"
    });
    let ps = c.ok(
        1,
        &[
            "stack",
            "ps",
            "st",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.Node}}",
        ],
    );
    let mut rows: Vec<&str> = ps.lines().collect();
    rows.sort_unstable();
    assert_eq!(rows.len(), 3, "{ps}");
    assert_eq!(rows[0], "st_client.1 node1", "{ps}");
    assert!(
        rows[1].starts_with("st_web.") && rows[2].starts_with("st_web."),
        "{ps}"
    );
    assert_ne!(rows[1].split(' ').nth(1), rows[2].split(' ').nth(1), "{ps}");
    // Both nodes realise the network as an overlay; a worker shows it as it has it.
    for i in [1, 2] {
        let made = swarm_network_traces(&c, i);
        assert!(
            made.iter().filter(|b| b.starts_with("bov")).count() == 1,
            "{made:?}"
        );
        assert!(made.iter().any(|b| b.starts_with("nft: ")), "{made:?}");
    }
    // A worker shows the network it runs tasks on as the swarm network; only managers remove it.
    assert_eq!(
        c.ok(
            2,
            &[
                "network",
                "ls",
                "--filter",
                "scope=swarm",
                "--format",
                "{{.ID}} {{.Name}} {{.Driver}}"
            ]
        ),
        format!("{} st_default overlay", &net_id[..12])
    );
    assert_eq!(
        c.ok(
            2,
            &["network", "inspect", &net_id, "--format", "{{.Scope}}"]
        ),
        "swarm"
    );
    let out = c.docker(2, &["network", "rm", "st_default"]);
    assert!(
        common::stderr(&out).contains("Worker nodes can't be used"),
        "{}",
        common::stderr(&out)
    );
    // On one node, tasks reach each other by service name and by the stack's short alias; the
    // web task serves the config it was given.
    let client = c.ok(
        1,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=st_client",
        ],
    );
    // (busybox's `wget -T` crashes: `timeout` bounds it.)
    for name in ["web", "st_web"] {
        let url = format!("timeout 5 wget -qO- http://{name}:8080/greeting");
        assert_eq!(
            c.ok(1, &["exec", &client, "sh", "-c", &url]),
            "hello from the stack"
        );
    }
    let looked = c.ok(1, &["exec", &client, "nslookup", "tasks.st_web"]);
    assert!(looked.contains("10.0."), "{looked}");
    // Plain containers are not put on a swarm network that is not attachable.
    for i in [1, 2] {
        let out = c.docker(
            i,
            &["run", "--rm", "--network", "st_default", "busybox", "true"],
        );
        assert!(
            common::stderr(&out).contains("network st_default not manually attachable"),
            "{}",
            common::stderr(&out)
        );
    }
    let out = c.docker(1, &["network", "rm", "st_default"]);
    assert!(
        common::stderr(&out).contains(&format!("network {net_id} is in use by service")),
        "{}",
        common::stderr(&out)
    );

    // A second deploy after an edit updates the service in place (same network, new task).
    std::fs::write(
        dir.join("compose.yaml"),
        STACK_V1.replace(
            "command: [\"sleep\", \"100000\"]",
            "command: [\"sleep\", \"100000\"]\n    environment:\n      STAGE: two",
        ),
    )
    .unwrap();
    let again = c.ok(
        1,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            &compose,
            "st",
        ],
    );
    assert!(again.contains("Updating service st_client"), "{again}");
    assert!(!again.contains("Creating network"), "{again}");
    assert_eq!(
        c.ok(
            1,
            &[
                "service",
                "inspect",
                "st_client",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Env}}"
            ]
        ),
        "[STAGE=two]"
    );
    c.until("the updated client runs", LONG, || {
        let id = stdout(&c.docker(
            1,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=st_client",
            ],
        ));
        let id = id.trim();
        !id.is_empty()
            && stdout(&c.docker(
                1,
                &[
                    "exec",
                    id,
                    "sh",
                    "-c",
                    "echo $STAGE; timeout 5 wget -qO- http://web:8080/greeting",
                ],
            )) == "two\nhello from the stack\n"
    });

    // stack rm takes services, config and network; the bridges go from both nodes.
    let removed = c.ok(1, &["stack", "rm", "st"]);
    assert!(removed.contains("Removing network st_default"), "{removed}");
    assert_eq!(c.ok(1, &["service", "ls", "-q"]), "");
    assert_eq!(c.ok(1, &["config", "ls", "-q"]), "");
    assert_eq!(
        c.ok(1, &["network", "ls", "-q", "--filter", "name=st_"]),
        ""
    );
    c.until("the stack's bridges are gone", LONG, || {
        (1..=2).all(|i| {
            swarm_network_traces(&c, i).is_empty()
                && stdout(&c.docker(i, &["network", "ls", "-q", "--filter", "name=st_"]))
                    .trim()
                    .is_empty()
                && stdout(&c.docker(i, &["ps", "-aq"])).trim().is_empty()
        })
    });
    assert_eq!(c.ok(1, &["stack", "ls", "--format", "{{.Name}}"]), "");
    c.down_and_check();
}

/// `docker swarm unlock` reading the key from its standard input.
fn unlock(c: &Cluster, i: usize, key: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .env("DOCKER_HOST", c.sock(i))
        .env("DOCKER_CONFIG", format!("/run/{}/docker-config", c.name))
        .args(["swarm", "unlock"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{key}").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn autolock_seals_a_manager_until_it_is_unlocked() {
    let c = Cluster::up(2);
    let out = c.ok(
        1,
        &[
            "swarm",
            "init",
            "--autolock",
            "--advertise-addr",
            &c.addr(1),
        ],
    );
    let key = c.ok(1, &["swarm", "unlock-key", "-q"]);
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    assert!(out.contains(&key), "init prints the unlock key: {out}");
    c.ok(1, &["secret", "create", "kept", "/etc/hostname"]);
    // The data key is on disk only sealed.
    let state = format!("/var/lib/{}/node1/swarm/state.json", c.name);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["dek"], "", "{saved}");
    assert!(
        saved["dek_sealed"].as_str().is_some_and(|s| s.len() > 64),
        "{saved}"
    );
    // So is the node's TLS key: no PEM private key on disk while autolock is on.
    let node_key = format!("/var/lib/{}/node1/swarm/certs/swarm-node.key", c.name);
    let sealed_key = std::fs::read_to_string(&node_key).unwrap();
    assert!(!sealed_key.contains("PRIVATE KEY"), "{sealed_key}");

    // Restarted, the manager is locked: manager requests get dockerd's message, a wrong key
    // is refused, the right one opens it with its data.
    c.crash(1);
    c.start(1);
    assert_eq!(
        c.ok(1, &["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        "locked"
    );
    assert!(!std::fs::read_to_string(&node_key)
        .unwrap()
        .contains("PRIVATE KEY"));
    let refused = c.docker(1, &["node", "ls"]);
    assert!(
        common::stderr(&refused).contains("Swarm is encrypted and needs to be unlocked"),
        "{}",
        common::stderr(&refused)
    );
    let wrong = unlock(
        &c,
        1,
        "SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    assert!(!wrong.status.success());
    assert!(
        common::stderr(&wrong).contains("invalid key provided"),
        "{}",
        common::stderr(&wrong)
    );
    let right = unlock(&c, 1, &key);
    assert!(right.status.success(), "{}", common::stderr(&right));
    c.until("unlocked and leading", LONG, || {
        stdout(&c.docker(1, &["node", "ls", "--format", "{{.ManagerStatus}}"])).trim() == "Leader"
    });
    assert_eq!(c.ok(1, &["secret", "ls", "--format", "{{.Name}}"]), "kept");

    // A rotated key replaces the old one; autolock off leaves the key in the clear again.
    c.ok(1, &["swarm", "unlock-key", "--rotate", "-q"]);
    let rotated = c.ok(1, &["swarm", "unlock-key", "-q"]);
    assert_ne!(rotated, key);
    // The node key is sealed again, under the new key.
    c.until("the node key sealed under the new key", LONG, || {
        let now = std::fs::read_to_string(&node_key).unwrap();
        now != sealed_key && !now.contains("PRIVATE KEY")
    });
    c.ok(1, &["swarm", "update", "--autolock=false"]);
    c.until("the data key in the clear", LONG, || {
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        saved["dek"].as_str().is_some_and(|d| d.len() == 64)
    });
    c.until("the node key in the clear", LONG, || {
        std::fs::read_to_string(&node_key)
            .unwrap()
            .contains("PRIVATE KEY")
    });
    c.crash(1);
    c.start(1);
    c.until("active after a restart", LONG, || {
        c.ok(1, &["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active"
    });
    c.ok(1, &["secret", "rm", "kept"]);
    c.down_and_check();
}

/// A node's `Description.TLSInfo` as `docker node inspect` shows it.
fn node_tls(c: &Cluster, via: usize, node: &str) -> serde_json::Value {
    let out = c.ok(
        via,
        &[
            "node",
            "inspect",
            "--format",
            "{{json .Description.TLSInfo}}",
            node,
        ],
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn ca_rotation_moves_every_node_to_a_new_root() {
    let c = Cluster::up(4);
    c.form(2);
    // Nodes 1 and 2 are managers, 3 a worker; node 4 stays out to try the tokens.
    c.ok(4, &["swarm", "leave"]);
    c.until("three nodes ready", LONG, || {
        c.ok(1, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
            .lines()
            .filter(|l| l.ends_with(" Ready"))
            .count()
            == 3
    });
    let old_root = c.ok(1, &["swarm", "ca"]);
    assert!(
        old_root.starts_with("-----BEGIN CERTIFICATE-----"),
        "{old_root}"
    );
    let old_token = c.ok(1, &["swarm", "join-token", "-q", "worker"]);
    let ids: Vec<String> = c
        .ok(1, &["node", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 4, "node4's entry stays until removed: {ids:?}");
    let live: Vec<String> = ids
        .iter()
        .filter(|id| c.ok(1, &["node", "inspect", "--format", "{{.Status.State}}", id]) == "ready")
        .cloned()
        .collect();
    assert_eq!(live.len(), 3);
    // node4 left: remove it so that the rotation does not wait for it.
    for id in ids.iter().filter(|id| !live.contains(id)) {
        c.ok(1, &["node", "rm", "--force", id]);
    }
    // Every node reports its certificate's issuer and the root it trusts.
    c.until("every node reports its TLS info", LONG, || {
        live.iter().all(|id| {
            let t = node_tls(&c, 1, id);
            t["TrustRoot"].as_str().map(str::trim) == Some(old_root.as_str())
                && t["CertIssuerPublicKey"]
                    .as_str()
                    .is_some_and(|k| !k.is_empty())
        })
    });
    let old_issuer = node_tls(&c, 1, &live[0])["CertIssuerPublicKey"].clone();

    // The docker CLI rotates and follows the progress to the end, then prints the new root.
    let out = std::process::Command::new("timeout")
        .env("DOCKER_HOST", c.sock(1))
        .env("DOCKER_CONFIG", format!("/run/{}/docker-config", c.name))
        .args(["120", "docker", "swarm", "ca", "--rotate"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{}\n{text}\n{}",
        common::stderr(&out),
        c.log_tail(1)
    );
    assert!(text.contains("rotated TLS certificates"), "{text}");
    assert!(text.contains("rotated CA certificates"), "{text}");
    let new_root = c.ok(1, &["swarm", "ca"]);
    assert_ne!(new_root, old_root);
    assert!(text.trim_end().ends_with(&new_root), "{text}");
    assert_eq!(
        c.ok(2, &["swarm", "ca"]),
        new_root,
        "the other manager agrees"
    );
    // Every node has a certificate from the new root and trusts only it, on disk too.
    for id in &live {
        let t = node_tls(&c, 1, id);
        assert_eq!(
            t["TrustRoot"].as_str().map(str::trim),
            Some(new_root.as_str())
        );
        assert_ne!(t["CertIssuerPublicKey"], old_issuer, "{id}: {t}");
    }
    for i in 1..=3 {
        let on_disk = std::fs::read_to_string(format!(
            "/var/lib/{}/node{i}/swarm/certs/swarm-root-ca.crt",
            c.name
        ))
        .unwrap();
        assert_eq!(on_disk.trim(), new_root, "node{i}");
    }

    // berth's CLI rotates to a root given with its key, and waits for every node to trust it.
    let dir = format!("/run/{}/given-ca", c.name);
    std::fs::create_dir_all(&dir).unwrap();
    let (key_file, cert_file) = (format!("{dir}/ca.key"), format!("{dir}/ca.crt"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &key_file,
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &key_file,
        "-subj",
        "/CN=swarm-ca",
        "-days",
        "3650",
        "-out",
        &cert_file,
    ]);
    let given = std::fs::read_to_string(&cert_file).unwrap();
    let out = std::process::Command::new("timeout")
        .env("DOCKER_CONFIG", format!("/run/{}/docker-config", c.name))
        .args(["120", common::berth_bin(), "-H", &c.sock(2)])
        .args(["swarm", "ca", "--rotate", "--ca-cert", &cert_file])
        .args(["--ca-key", &key_file])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}
{}",
        common::stderr(&out),
        c.log_tail(2)
    );
    assert_eq!(stdout(&out).trim(), given.trim());
    assert_eq!(c.ok(1, &["swarm", "ca"]), given.trim());
    for id in &live {
        let t = node_tls(&c, 1, id);
        assert_eq!(t["TrustRoot"].as_str().map(str::trim), Some(given.trim()));
    }
    let new_root = given.trim().to_string();

    // The join tokens changed with the root: the old one is refused, the new one admits.
    let new_token = c.ok(1, &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(new_token, old_token);
    let remote = format!("{}:2377", c.addr(1));
    let refused = c.docker(4, &["swarm", "join", "--token", &old_token, &remote]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    c.ok(
        4,
        &[
            "swarm",
            "join",
            "--token",
            &new_token,
            "--advertise-addr",
            &c.addr(4),
            &remote,
        ],
    );
    c.until("four nodes ready", LONG, || {
        c.ok(1, &["node", "ls", "--format", "{{.Status}}"])
            .lines()
            .filter(|l| *l == "Ready")
            .count()
            == 4
    });

    // The cluster keeps working: a service runs on the nodes, and a restarted manager
    // comes back with its new certificate.
    c.ok(
        1,
        &[
            "service",
            "create",
            "--no-resolve-image",
            "--name",
            "web",
            "--replicas",
            "4",
            "busybox",
            "sleep",
            "3600",
        ],
    );
    c.until("4 replicas", LONG, || replicas(&c, 1, "web") == "4/4");
    c.crash(2);
    c.start(2);
    c.until("the restarted manager answers", LONG, || {
        c.docker(2, &["node", "ls"]).status.success()
            && c.ok(2, &["node", "ls", "--format", "{{.Status}}"])
                .lines()
                .filter(|l| *l == "Ready")
                .count()
                == 4
    });
    assert_eq!(c.ok(2, &["swarm", "ca"]), new_root);
    c.ok(2, &["service", "rm", "web"]);
    c.down_and_check();
}

/// `testuser` / `s3cret-pass`, bcrypt cost 5 (made with `htpasswd -nbB`).
const HTPASSWD: &str = "testuser:$2y$05$im/nWSseHHX3RCQDOoZa4.07v36VN4juSE8jzQ/3iWiEd77GBgk7G";

/// A process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An image pushed twice under one tag to a registry that wants credentials: the service pins
/// the second push and its task runs that one with the credentials of `--with-registry-auth`,
/// though the node has the first under the tag; inspect never shows the credentials. A
/// container with a task's label made by the user is no task (`ps --filter is-task`, and the
/// agent leaves it be), and a task container the user removes takes its secret tmpfs along.
#[test]
fn private_registry_pinned_digest_tasks_and_secret_files() {
    let c = Cluster::up(1);
    // berth's registry with Basic auth, on the loopback of node1's network namespace.
    let dir = std::env::temp_dir().join(format!("berth-swreg-{}", c.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("{HTPASSWD}\n")).unwrap();
    let reg = Killed(
        std::process::Command::new("ip")
            .args(["netns", "exec", &format!("{}-n1", c.name)])
            .arg(common::berth_bin())
            .args(["registry", "serve", "--addr", "127.0.0.1:5000", "--root"])
            .arg(dir.join("root"))
            .arg("--htpasswd")
            .arg(dir.join("htpasswd"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    c.until("the registry answers a login", LONG, || {
        c.docker(
            1,
            &[
                "login",
                "-u",
                "testuser",
                "-p",
                "s3cret-pass",
                "127.0.0.1:5000",
            ],
        )
        .status
        .success()
    });
    let app = "127.0.0.1:5000/app:latest";
    let mut ids = Vec::new();
    for v in ["one", "two"] {
        c.ok(
            1,
            &[
                "run",
                "--name",
                v,
                "busybox",
                "sh",
                "-c",
                &format!("echo {v} > /v"),
            ],
        );
        ids.push(c.ok(1, &["commit", v, app]));
        let out = c.ok(1, &["push", app]);
        assert!(out.contains("digest: sha256:"), "{out}");
        c.ok(1, &["rm", v]);
    }
    // The node keeps only the first push under the tag.
    c.ok(1, &["tag", &ids[0], app]);
    c.ok(1, &["rmi", "-f", &ids[1]]);
    c.form(1);
    c.ok(
        1,
        &[
            "service",
            "create",
            "-d",
            "--with-registry-auth",
            "--name",
            "pinned",
            app,
            "sh",
            "-c",
            "cat /v; sleep 600",
        ],
    );
    let image = c.ok(
        1,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            "pinned",
        ],
    );
    assert!(image.starts_with(&format!("{app}@sha256:")), "{image}");
    c.until("the pinned task runs", LONG, || {
        replicas(&c, 1, "pinned") == "1/1"
    });
    let task_ctr = c.ok(
        1,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=pinned",
        ],
    );
    assert_eq!(c.ok(1, &["exec", &task_ctr, "cat", "/v"]), "two");
    // The credentials are in no answer of the API.
    let shown = c.ok(1, &["service", "inspect", "pinned"]);
    let tasks = c.ok(1, &["service", "ps", "-q", "pinned"]);
    let shown = format!("{shown}{}", c.ok(1, &["inspect", "--type", "task", &tasks]));
    assert!(!shown.contains("RegistryAuth"), "{shown}");
    // An update without new credentials keeps them (registryAuthFrom=spec): it still pulls.
    c.ok(1, &["rmi", "-f", &image]);
    c.ok(1, &["service", "update", "-d", "--force", "pinned"]);
    c.until("the updated task runs", LONG, || {
        let ctr = c.ok(
            1,
            &[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=pinned",
            ],
        );
        !ctr.is_empty() && ctr != task_ctr && replicas(&c, 1, "pinned") == "1/1"
    });

    // A user's container with a task's label is no task.
    let fake = c.ok(
        1,
        &[
            "run",
            "-d",
            "--label",
            "com.docker.swarm.task.id=faketask",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let tasks_now = c.ok(1, &["ps", "-q", "--no-trunc", "--filter", "is-task=true"]);
    assert!(
        !tasks_now.is_empty() && !tasks_now.contains(&fake),
        "{tasks_now}"
    );
    let plain = c.ok(1, &["ps", "-q", "--no-trunc", "--filter", "is-task=false"]);
    assert_eq!(plain, fake);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(1, &["inspect", "--format", "{{.State.Running}}", &fake]),
        "true",
        "the agent must leave a user's container be"
    );

    // A secret's tmpfs goes with a task container the user removes.
    let out = std::process::Command::new("docker")
        .env("DOCKER_HOST", c.sock(1))
        .args(["secret", "create", "pw", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(b"hunter2")?;
            ch.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    c.ok(
        1,
        &[
            "service", "create", "-d", "--name", "sec", "--secret", "pw", "busybox", "sleep", "600",
        ],
    );
    c.until("the secret task runs", LONG, || {
        replicas(&c, 1, "sec") == "1/1"
    });
    let ctr = c.ok(
        1,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=sec",
        ],
    );
    let task = c.ok(
        1,
        &[
            "inspect",
            "--format",
            "{{index .Config.Labels \"com.docker.swarm.task.id\"}}",
            &ctr,
        ],
    );
    let files = format!("/run/{}/node1/swarm/files/{task}", c.name);
    assert!(std::path::Path::new(&files).exists(), "{files}");
    c.ok(1, &["rm", "-f", &ctr]);
    assert!(
        !std::path::Path::new(&files).exists(),
        "{files} outlived its container"
    );
    c.ok(1, &["service", "rm", "pinned", "sec"]);
    c.ok(1, &["rm", "-f", &fake]);
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
    c.down_and_check();
}
