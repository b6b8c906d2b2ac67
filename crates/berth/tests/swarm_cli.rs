//! The `berth` CLI's swarm commands end to end on the multi-node harness: `berth swarm init`
//! and `join`, `node`, `service` (detached and waiting for convergence), `secret`, `config`
//! and `swarm leave`, with outputs compared to the docker CLI's on the same cluster.

mod common;
use common::swarm::Cluster;
use common::{berth_bin, stderr, stdout};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// The berth CLI against node `i`, with `stdin` fed when given.
fn berth_in(c: &Cluster, i: usize, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(berth_bin());
    cmd.env("DOCKER_CONFIG", format!("/run/{}/docker-config", c.name))
        .arg("-H")
        .arg(c.sock(i))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run berth");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        if let Some(data) = stdin {
            input.write_all(data).expect("write stdin");
        }
    }
    child.wait_with_output().expect("berth output")
}

fn berth(c: &Cluster, i: usize, args: &[&str]) -> Output {
    berth_in(c, i, args, None)
}

/// berth that must succeed; trimmed stdout.
fn ok(c: &Cluster, i: usize, args: &[&str]) -> String {
    let out = berth(c, i, args);
    assert!(
        out.status.success(),
        "berth {args:?} on node{i} failed ({:?}): {}\n{}\n--- node{i} log tail ---\n{}",
        out.status.code(),
        stderr(&out),
        stdout(&out),
        c.log_tail(i)
    );
    stdout(&out).trim().to_string()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(|l| l.trim_end().to_string()).collect();
    v.sort();
    v
}

fn replicas(c: &Cluster, service: &str) -> String {
    ok(
        c,
        1,
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

#[test]
fn berth_cli_drives_a_swarm() {
    let c = Cluster::up(2);
    let remote = format!("{}:2377", c.addr(1));

    // init: docker's text, the worker join command with the manager's address.
    let out = ok(&c, 1, &["swarm", "init", "--advertise-addr", &c.addr(1)]);
    assert!(
        out.starts_with("Swarm initialized: current node (") && out.contains(") is now a manager."),
        "{out}"
    );
    assert!(
        out.contains("To add a worker to this swarm, run the following command:\n\n    docker swarm join --token SWMTKN-")
            && out.contains(&format!(" {remote}\n"))
            && out.ends_with("To add a manager to this swarm, run 'docker swarm join-token manager' and follow the instructions."),
        "{out}"
    );
    // join-token prints what docker prints.
    for role in ["worker", "manager"] {
        assert_eq!(
            ok(&c, 1, &["swarm", "join-token", role]),
            c.ok(1, &["swarm", "join-token", role])
        );
    }
    let token = ok(&c, 1, &["swarm", "join-token", "-q", "worker"]);
    assert!(token.starts_with("SWMTKN-1-"), "{token}");
    let bad = berth(&c, 1, &["swarm", "join-token", "boss"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(stderr(&bad).trim(), "unknown role boss");

    // join node2 as a worker.
    let out = ok(
        &c,
        2,
        &[
            "swarm",
            "join",
            "--token",
            &token,
            "--advertise-addr",
            &c.addr(2),
            &remote,
        ],
    );
    assert_eq!(out, "This node joined a swarm as a worker.");
    c.until("both nodes ready", LONG, || {
        let out = berth(&c, 1, &["node", "ls", "--format", "{{.Status}}"]);
        out.status.success() && stdout(&out).lines().filter(|l| *l == "Ready").count() == 2
    });

    // node ls: the same fields as docker's, and the table with the current node marked.
    let f = "{{.ID}} {{.Self}} {{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}} {{.EngineVersion}}";
    assert_eq!(
        ok(&c, 1, &["node", "ls", "--format", f]),
        c.ok(1, &["node", "ls", "--format", f])
    );
    let table = ok(&c, 1, &["node", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID ")
            && lines[0].contains("HOSTNAME")
            && lines[0].ends_with("MANAGER STATUS   ENGINE VERSION"),
        "{table}"
    );
    assert!(
        lines[1].contains(" * ") && lines[1].contains("node1") && lines[1].contains("Leader"),
        "{table}"
    );
    assert!(
        lines[2].contains("node2") && !lines[2].contains('*'),
        "{table}"
    );
    assert_eq!(ok(&c, 1, &["node", "ls", "-q"]).lines().count(), 2);
    // A worker refuses manager requests with the daemon's message, exit 1 as docker.
    let refused = berth(&c, 2, &["node", "ls"]);
    let docker_refused = c.docker(2, &["node", "ls"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(stderr(&refused), stderr(&docker_refused));
    assert_eq!(
        ok(
            &c,
            1,
            &[
                "node",
                "inspect",
                "self",
                "--format",
                "{{.Description.Hostname}}"
            ]
        ),
        "node1"
    );
    let pretty = ok(&c, 1, &["node", "inspect", "--pretty", "node2"]);
    assert!(
        pretty.contains("Hostname:              \tnode2") && pretty.contains(" State:\t\t\tReady"),
        "{pretty}"
    );
    assert_eq!(
        ok(&c, 1, &["node", "update", "--label-add", "zone=a", "node2"]),
        "node2"
    );
    assert_eq!(
        ok(
            &c,
            1,
            &[
                "node",
                "inspect",
                "node2",
                "--format",
                "{{.Spec.Labels.zone}}"
            ]
        ),
        "a"
    );
    let out = berth(&c, 1, &["node", "update", "--label-rm", "nope", "node2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("key nope doesn't exist in node's labels"));

    // promote and demote, with docker's messages.
    let node2 = ok(&c, 1, &["node", "inspect", "node2", "--format", "{{.ID}}"]);
    assert_eq!(
        ok(&c, 1, &["node", "promote", "node2"]),
        "Node node2 promoted to a manager in the swarm."
    );
    assert_eq!(
        ok(&c, 1, &["node", "promote", "node2"]),
        format!("Node {node2} is already a manager.")
    );
    c.until("node2 reachable", LONG, || {
        stdout(&berth(
            &c,
            1,
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
        ))
        .contains("node2 Reachable")
    });
    assert_eq!(
        ok(&c, 1, &["node", "demote", "node2"]),
        "Manager node2 demoted in the swarm."
    );
    c.until("node2 a worker again", LONG, || {
        c.ok(2, &["info", "--format", "{{.Swarm.ControlAvailable}}"]) == "false"
    });
    assert_eq!(
        ok(&c, 1, &["node", "demote", "node2"]),
        format!("Node {node2} is already a worker.")
    );

    // swarm update and unlock-key; init filled in the settings berth runs with.
    assert_eq!(
        c.ok(
            1,
            &[
                "info",
                "--format",
                "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}} {{.Swarm.Cluster.Spec.Raft.ElectionTick}} {{.Swarm.Cluster.Spec.Raft.HeartbeatTick}} {{.Swarm.Cluster.Spec.Raft.SnapshotInterval}} {{.Swarm.Cluster.Spec.Raft.LogEntriesForSlowFollowers}} {{json .Swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod}} {{json .Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}"
            ]
        ),
        "5 10 1 10000 500 1000000000 7776000000000000"
    );
    assert_eq!(
        ok(
            &c,
            1,
            &[
                "swarm",
                "update",
                "--task-history-limit",
                "3",
                "--dispatcher-heartbeat",
                "5s"
            ]
        ),
        "Swarm updated."
    );
    assert_eq!(
        c.ok(
            1,
            &[
                "info",
                "--format",
                "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}} {{json .Swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod}}"
            ]
        ),
        "3 5000000000"
    );
    let out = berth(&c, 1, &["swarm", "update"]);
    assert_eq!(out.status.code(), Some(1));
    let b = berth(&c, 1, &["swarm", "unlock-key"]);
    let d = c.docker(1, &["swarm", "unlock-key"]);
    assert_eq!((b.status.code(), stderr(&b)), (d.status.code(), stderr(&d)));

    // Secrets and configs.
    let sid = stdout(&berth_in(
        &c,
        1,
        &["secret", "create", "-l", "k=v", "pw", "-"],
        Some(b"hunter2"),
    ))
    .trim()
    .to_string();
    assert_eq!(sid.len(), 25, "{sid}");
    let cfg_file =
        std::env::temp_dir().join(format!("berth-swarm-cli-{}.conf", std::process::id()));
    std::fs::write(&cfg_file, "listen 80\n").unwrap();
    let cid = ok(
        &c,
        1,
        &["config", "create", "site", cfg_file.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&cfg_file);
    assert_eq!(cid.len(), 25, "{cid}");
    for kind in ["secret", "config"] {
        let f = "{{.ID}} {{.Name}} {{.Labels}}";
        assert_eq!(
            ok(&c, 1, &[kind, "ls", "--format", f]),
            c.ok(1, &[kind, "ls", "--format", f])
        );
    }
    let pretty = ok(&c, 1, &["config", "inspect", "--pretty", "site"]);
    assert!(pretty.ends_with("Data:\nlisten 80"), "{pretty}");
    let pretty = ok(&c, 1, &["secret", "inspect", "--pretty", "pw"]);
    assert!(pretty.contains("Labels:\n - k=v\n"), "{pretty}");
    let empty = berth_in(&c, 1, &["secret", "create", "x", "-"], Some(b""));
    assert_eq!(empty.status.code(), Some(1));
    assert_eq!(
        stderr(&empty).trim(),
        "error reading from STDIN: data is empty"
    );

    // A detached service: the ID only; then converged as docker sees it.
    let id = ok(
        &c,
        1,
        &[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            "web",
            "--replicas",
            "2",
            "-e",
            "A=1",
            "--secret",
            "source=pw,target=db_pw",
            "--config",
            "site",
            "--restart-delay",
            "1s",
            "busybox",
            "sleep",
            "100000",
        ],
    );
    assert_eq!(id.len(), 25, "{id}");
    c.until("web 2/2", LONG, || replicas(&c, "web") == "2/2");
    // Not detached: progress lines until converged (plain lines off a terminal).
    let out = ok(
        &c,
        1,
        &[
            "service",
            "create",
            "--detach=false",
            "--no-resolve-image",
            "--name",
            "one",
            "--constraint",
            "node.labels.zone==a",
            "--update-monitor",
            "1s",
            "busybox",
            "sh",
            "-c",
            "echo hello-from-one; exec sleep 100000",
        ],
    );
    let first = out.lines().next().unwrap_or_default();
    assert_eq!(first.len(), 25, "{out}");
    assert!(
        out.contains("overall progress: 1 out of 1 tasks")
            && out.contains("1/1: running")
            && out.ends_with(&format!("verify: Service {first} converged")),
        "{out}"
    );

    // ls, ps, inspect against docker's view.
    let f = "{{.ID}} {{.Name}} {{.Mode}} {{.Replicas}} {{.Image}} {{.Ports}}";
    assert_eq!(
        ok(&c, 1, &["service", "ls", "--format", f]),
        c.ok(1, &["service", "ls", "--format", f])
    );
    assert_eq!(
        ok(&c, 1, &["service", "ls", "-q"]),
        c.ok(1, &["service", "ls", "-q"])
    );
    let ls = ok(&c, 1, &["service", "ls"]);
    assert!(
        ls.starts_with("ID ")
            && ls.contains("NAME")
            && ls.contains("MODE")
            && ls.contains("replicated"),
        "{ls}"
    );
    let f = "{{.Name}} {{.Node}} {{.DesiredState}} {{.Image}} {{.Error}}";
    assert_eq!(
        sorted_lines(&ok(&c, 1, &["service", "ps", "web", "one", "--format", f])),
        sorted_lines(&c.ok(1, &["service", "ps", "web", "one", "--format", f]))
    );
    assert_eq!(
        ok(
            &c,
            1,
            &["service", "ps", "one", "--format", "{{.Name}} {{.Node}}"]
        ),
        "one.1 node2"
    );
    assert_eq!(
        ok(&c, 1, &["service", "ps", "-q", "web"]).lines().count(),
        2
    );
    assert_eq!(
        sorted_lines(&ok(
            &c,
            1,
            &["node", "ps", "node2", "--format", "{{.Name}}"]
        )),
        sorted_lines(&c.ok(1, &["node", "ps", "node2", "--format", "{{.Name}}"]))
    );
    let missing = berth(&c, 1, &["service", "ps", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).trim(), "no such service: nosuch");
    let inspect = ok(
        &c,
        1,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.Spec.Name}} {{json .Spec.TaskTemplate.ContainerSpec.Env}} {{(index .Spec.TaskTemplate.ContainerSpec.Secrets 0).File.Name}}",
        ],
    );
    assert_eq!(inspect, "web [\"A=1\"] db_pw");
    let pretty = ok(&c, 1, &["service", "inspect", "--pretty", "web"]);
    assert!(
        pretty.contains("Name:\t\tweb")
            && pretty.contains(" Replicas:\t2")
            && pretty.contains("Secrets:\n Target:\tdb_pw\n  Source:\tpw"),
        "{pretty}"
    );
    let out = berth(&c, 1, &["service", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "Error: no such service: nosuch");

    // scale, update, rollback.
    assert_eq!(
        ok(&c, 1, &["service", "scale", "-d", "web=3"]),
        "web scaled to 3"
    );
    c.until("web 3/3", LONG, || replicas(&c, "web") == "3/3");
    let out = ok(
        &c,
        1,
        &[
            "service",
            "update",
            "--env-add",
            "B=2",
            "--env-rm",
            "A",
            "--update-parallelism",
            "3",
            "--update-monitor",
            "1s",
            "web",
        ],
    );
    assert!(out.starts_with("web"), "{out}");
    c.until("the update completed", LONG, || {
        ok(
            &c,
            1,
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{json .Spec.TaskTemplate.ContainerSpec.Env}} {{.UpdateStatus.State}}",
            ],
        ) == "[\"B=2\"] completed"
    });
    // The replaced tasks are listed under their slot.
    let table = ok(&c, 1, &["service", "ps", "web"]);
    assert!(table.contains(" \\_ web.1"), "{table}");
    assert!(
        table.lines().next().unwrap_or_default().starts_with("ID "),
        "{table}"
    );
    let out = ok(&c, 1, &["service", "rollback", "-q", "web"]);
    assert_eq!(out, "web");
    assert_eq!(
        ok(
            &c,
            1,
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"
            ]
        ),
        "[\"A=1\"]"
    );
    let out = berth(
        &c,
        1,
        &["service", "update", "--rollback", "--replicas", "1", "web"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "other flags may not be combined with --rollback"
    );
    let out = berth(&c, 1, &["service", "update", "--bogus", "web"]);
    assert_eq!(out.status.code(), Some(125));

    // Logs, compared with docker's: the same prefixed lines.
    let b = berth(&c, 1, &["service", "logs", "--no-task-ids", "one"]);
    let d = c.docker(1, &["service", "logs", "--no-task-ids", "one"]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(d.status.success(), "{}", stderr(&d));
    assert!(stdout(&b).contains("| hello-from-one"), "{}", stdout(&b));
    assert_eq!(sorted_lines(&stdout(&b)), sorted_lines(&stdout(&d)));

    // berth's own: privileged services with host devices, and rebalance.
    ok(
        &c,
        1,
        &[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            "priv",
            "--privileged",
            "--device",
            "/dev/null:/dev/berth-null",
            "busybox",
            "sleep",
            "100000",
        ],
    );
    assert_eq!(
        ok(
            &c,
            1,
            &[
                "service",
                "inspect",
                "priv",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Privileged}} {{(index .Spec.TaskTemplate.ContainerSpec.Devices 0).PathInContainer}}"
            ]
        ),
        "true /dev/berth-null"
    );
    let bad = berth(
        &c,
        1,
        &["service", "create", "--device", "/dev/null:rel", "busybox"],
    );
    assert!(!bad.status.success());
    ok(&c, 1, &["service", "rm", "priv"]);
    let moved = ok(&c, 1, &["service", "rebalance", "one"]);
    assert!(
        moved.starts_with("one: ") && moved.ends_with("task(s) moved"),
        "{moved}"
    );

    // Removal; a secret in use is kept.
    let out = berth(&c, 1, &["secret", "rm", "pw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error response from daemon: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(&c, 1, &["service", "rm", "web", "one"]), "web\none");
    assert_eq!(ok(&c, 1, &["secret", "rm", "pw"]), "pw");
    assert_eq!(ok(&c, 1, &["config", "rm", "site"]), "site");
    assert_eq!(ok(&c, 1, &["secret", "ls", "-q"]), "");
    c.until("tasks gone", LONG, || {
        (1..=2).all(|i| c.ok(i, &["ps", "-aq"]).is_empty())
    });

    // Leave: the worker, then the last manager with --force.
    assert_eq!(ok(&c, 2, &["swarm", "leave"]), "Node left the swarm.");
    let out = berth(&c, 1, &["swarm", "leave"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        ok(&c, 1, &["swarm", "leave", "--force"]),
        "Node left the swarm."
    );
    assert_eq!(
        c.ok(1, &["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        "inactive"
    );
    c.down_and_check();
}

/// A stack for `berth stack`: a replicated web server given a config, and a client.
const BERTH_STACK: &str = r#"services:
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
    configs: [greeting]
    deploy:
      placement:
        constraints: ["node.hostname == node1"]
configs:
  greeting:
    file: ./greeting.txt
"#;

#[test]
fn berth_stack_deploy_update_and_rm() {
    let c = Cluster::up(2);
    c.form(1);
    let dir = std::path::PathBuf::from(format!("/run/{}/bstack", c.name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("greeting.txt"), "hello\n").unwrap();
    let file = dir.join("compose.yaml");
    std::fs::write(&file, BERTH_STACK).unwrap();
    let file = file.to_string_lossy().into_owned();

    let out = ok(&c, 1, &["stack", "deploy", "-c", &file, "bs"]);
    for line in [
        "Creating network bs_default",
        "Creating config bs_greeting",
        "Creating service bs_client",
        "Creating service bs_web",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let ls = ["stack", "ls", "--format", "{{.Name}} {{.Services}}"];
    assert_eq!(ok(&c, 1, &ls), "bs 2");
    assert_eq!(ok(&c, 1, &ls), c.ok(1, &ls));
    let services = [
        "stack",
        "services",
        "bs",
        "--format",
        "{{.Name}} {{.Replicas}}",
    ];
    c.until("the stack converges", LONG, || {
        stdout(&berth(&c, 1, &services)).trim() == "bs_client 1/1\nbs_web 2/2 (max 1 per node)"
    });
    assert_eq!(ok(&c, 1, &services), c.ok(1, &services));
    assert_eq!(
        c.ok(
            1,
            &[
                "service",
                "inspect",
                "bs_web",
                "--format",
                "{{index .Spec.Labels \"com.docker.stack.namespace\"}} {{range .Spec.TaskTemplate.Networks}}{{.Aliases}}{{end}}"
            ]
        ),
        "bs [web]"
    );
    let ps = [
        "stack",
        "ps",
        "bs",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Name}} {{.Node}} {{.CurrentState}}",
    ];
    let mine = sorted_lines(&ok(&c, 1, &ps));
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert_eq!(mine, sorted_lines(&c.ok(1, &ps)));
    // docker's own stack deploy of the same file gives the same specs (but for IDs).
    let dout = c.docker(
        1,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            &file,
            "ds",
        ],
    );
    assert!(dout.status.success(), "{}", stderr(&dout));
    for svc in ["web", "client"] {
        let spec = |ns: &str| {
            let raw = c.ok(
                1,
                &[
                    "service",
                    "inspect",
                    &format!("{ns}_{svc}"),
                    "--format",
                    "{{json .Spec}}",
                ],
            );
            let mut v: serde_json::Value = serde_json::from_str(
                &raw.replace(&format!("{ns}_"), "NS_")
                    .replace(&format!("\"{ns}\""), "\"NS\""),
            )
            .unwrap();
            let cs = &mut v["TaskTemplate"]["ContainerSpec"];
            for r in cs["Configs"].as_array_mut().into_iter().flatten() {
                r["ConfigID"] = serde_json::Value::Null;
            }
            for n in v["TaskTemplate"]["Networks"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                n["Target"] = serde_json::Value::Null;
            }
            v
        };
        assert_eq!(spec("bs"), spec("ds"), "{svc}");
    }
    c.ok(1, &["stack", "rm", "ds"]);
    // A config without a target lands at /<source>, as docker places it.
    let client = c.ok(
        1,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=bs_client",
        ],
    );
    assert_eq!(c.ok(1, &["exec", &client, "cat", "/greeting"]), "hello");

    // A redeploy after an edit updates the services in place.
    std::fs::write(&file, BERTH_STACK.replace("100000", "200000")).unwrap();
    let out = ok(&c, 1, &["stack", "deploy", "-c", &file, "bs"]);
    assert!(out.contains("Updating service bs_client (id: "), "{out}");
    assert!(out.contains("Updating service bs_web (id: "), "{out}");
    assert!(!out.contains("Creating"), "{out}");
    assert_eq!(
        c.ok(
            1,
            &[
                "service",
                "inspect",
                "bs_client",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Args}}"
            ]
        ),
        "[sleep 200000]"
    );

    // --prune: a service no longer in the file goes.
    let (head, tail) = BERTH_STACK.split_once("  client:").unwrap();
    let web_only = format!("{head}{}", &tail[tail.find("configs:\n").unwrap()..]);
    assert!(!web_only.contains("client"));
    std::fs::write(&file, web_only).unwrap();
    let out = ok(
        &c,
        1,
        &[
            "stack",
            "deploy",
            "--prune",
            "--detach=false",
            "-q",
            "-c",
            &file,
            "bs",
        ],
    );
    assert!(out.contains("Removing service bs_client"), "{out}");
    assert!(out.contains("Updating service bs_web (id: "), "{out}");
    assert_eq!(ok(&c, 1, &ls), "bs 1");

    // rm: service, config, network; then nothing is left.
    let out = ok(&c, 1, &["stack", "rm", "bs"]);
    for line in [
        "Removing service bs_web",
        "Removing config bs_greeting",
        "Removing network bs_default",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let label = "label=com.docker.stack.namespace=bs";
    c.until("the stack is gone", LONG, || {
        ["network", "service", "config"].iter().all(|k| {
            stdout(&c.docker(1, &[k, "ls", "-q", "--filter", label]))
                .trim()
                .is_empty()
        })
    });
    assert_eq!(ok(&c, 1, &["stack", "ls", "--format", "{{.Name}}"]), "");
    let again = berth(&c, 1, &["stack", "rm", "bs"]);
    assert!(again.status.success());
    assert_eq!(stderr(&again).trim(), "Nothing found in stack: bs");
    // The nodes remove the task containers and the network's bridge (bov<VNI>) themselves.
    c.until(
        "the tasks and the overlay gone from the nodes",
        LONG,
        || {
            (1..=2).all(|i| {
                let bridges = Command::new("ip")
                    .args(["-n", &format!("{}-n{i}", c.name), "-o", "link", "show"])
                    .output()
                    .expect("ip link");
                stdout(&c.docker(i, &["ps", "-aq"])).trim().is_empty()
                    && !stdout(&bridges).contains(": bov")
            })
        },
    );
    c.down_and_check();
}
