//! `berth compose` end to end against a private daemon: multi-service projects with busybox
//! (httpd, healthchecks, a one-shot seeder, named volumes, secrets, profiles, scale with DNS),
//! convergence (no-op re-up, recreate of only the changed service), `down -v` leaving nothing,
//! and bad input refused before anything is made.

mod common;
use common::compose::{compose, compose_env, ok, Dir};
use common::{stderr, stdout, Daemon};
use serde_json::Value;

fn ids(d: &Daemon, project: &str) -> Vec<(String, String)> {
    let out = d.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}} {{.ID}}",
    ]);
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).expect("inspect JSON");
    v[0].clone()
}

/// Nothing of the project is left: containers, networks, volumes (by label).
fn assert_gone(d: &Daemon, project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    assert_eq!(d.ok(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(d.ok(&["network", "ls", "-q", "--filter", &label]), "");
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", &label]), "");
}

const SHOP: &str = r#"
name: shop
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    environment:
      GREETING: ${GREETING:-hello}
    volumes:
      - data:/data
    depends_on:
      db:
        condition: service_healthy
      seed:
        condition: service_completed_successfully
  db:
    image: busybox
    command: ["sh", "-c", "touch /ready; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 200ms
      retries: 20
  seed:
    image: busybox
    command: ["sh", "-c", "echo seeded > /data/index.html"]
    volumes:
      - data:/data
volumes:
  data: {}
"#;

#[test]
fn up_waits_on_conditions_then_down_leaves_nothing() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("shop");
    dir.write("compose.yaml", SHOP);
    let out = compose(&d, &dir.0, &["up", "-d"]);
    assert!(out.status.success(), "up: {}", stderr(&out));
    let err = stderr(&out);
    for line in [
        "Network shop_default  Created",
        "Volume shop_data  Created",
        "Container shop-db-1  Healthy",
        "Container shop-seed-1  Exited",
        "Container shop-web-1  Started",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    // The seeder ran before web started and wrote into the shared named volume.
    let names: Vec<String> = ids(&d, "shop").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["shop-db-1", "shop-seed-1", "shop-web-1"]);
    let web = inspect(&d, "shop-web-1");
    assert_eq!(web["State"]["Status"], "running");
    assert_eq!(web["Config"]["Labels"]["com.docker.compose.service"], "web");
    assert_eq!(
        web["Config"]["Labels"]["com.docker.compose.depends_on"],
        "db:service_healthy:false,seed:service_completed_successfully:false"
    );
    assert!(web["Config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|v| v == "GREETING=hello")));
    // web answers on the project network, by service name, from db.
    let got = d.ok(&[
        "exec",
        "shop-db-1",
        "sh",
        "-c",
        "timeout 5 wget -qO- http://web/",
    ]);
    assert_eq!(got, "seeded");
    // ps: running containers only; -a adds the exited seeder.
    let ps = ok(
        &d,
        &dir.0,
        &["ps", "--format", "{{.Name}} {{.Service}} {{.State}}"],
    );
    assert_eq!(ps.trim(), "shop-db-1 db running\nshop-web-1 web running");
    let ps_all = ok(&d, &dir.0, &["ps", "-a", "--services"]);
    assert_eq!(ps_all.trim(), "db\nseed\nweb");
    let ls = ok(&d, &dir.0, &["ls", "--format", "json"]);
    let ls: Value = serde_json::from_str(&ls).expect("ls json");
    let shop = ls
        .as_array()
        .and_then(|a| a.iter().find(|p| p["Name"] == "shop"))
        .cloned()
        .expect("shop listed");
    assert_eq!(shop["Status"], "exited(1), running(2)");
    assert_eq!(
        shop["ConfigFiles"],
        dir.0.join("compose.yaml").display().to_string()
    );
    // The named volume survives down and up; down -v removes it.
    ok(&d, &dir.0, &["down"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "shop_data");
    ok(&d, &dir.0, &["up", "-d", "web"]);
    ok(&d, &dir.0, &["down", "-v"]);
    assert_gone(&d, "shop");
}

#[test]
fn re_up_leaves_unchanged_services_alone_and_recreates_changed_ones() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("conv");
    let file = |greeting: &str| {
        format!(
            "name: conv\nservices:\n  a:\n    image: busybox\n    command: sleep 1000\n    environment:\n      G: {greeting}\n    volumes:\n      - /anon\n  b:\n    image: busybox\n    command: sleep 1000\n"
        )
    };
    dir.write("compose.yaml", &file("one"));
    ok(&d, &dir.0, &["up", "-d"]);
    let before = ids(&d, "conv");
    assert_eq!(before.len(), 2, "{before:?}");
    let anon = inspect(&d, "conv-a-1")["Mounts"][0]["Name"].clone();
    // Nothing changed: nothing is touched.
    let out = compose(&d, &dir.0, &["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Container conv-a-1  Running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ids(&d, "conv"), before);
    // a's environment changes: a is recreated (keeping its anonymous volume), b is not.
    dir.write("compose.yaml", &file("two"));
    let out = compose(&d, &dir.0, &["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Container conv-a-1  Recreated"),
        "{}",
        stderr(&out)
    );
    let after = ids(&d, "conv");
    assert_eq!(after[1], before[1], "b kept");
    assert_ne!(after[0].1, before[0].1, "a recreated");
    assert_eq!(after[0].0, "conv-a-1");
    assert_eq!(inspect(&d, "conv-a-1")["Mounts"][0]["Name"], anon);
    // --force-recreate replaces everything; --no-recreate nothing.
    ok(&d, &dir.0, &["up", "-d", "--no-recreate"]);
    assert_eq!(ids(&d, "conv"), after);
    ok(&d, &dir.0, &["up", "-d", "--force-recreate"]);
    let forced = ids(&d, "conv");
    assert!(forced.iter().zip(&after).all(|(x, y)| x.1 != y.1));
    ok(&d, &dir.0, &["down", "-v"]);
    assert_gone(&d, "conv");
    assert_eq!(
        d.ok(&["volume", "ls", "-q"]),
        "",
        "the anonymous volume went with -v"
    );
}

#[test]
fn scale_adds_and_removes_from_the_top_and_dns_returns_every_replica() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("sc");
    dir.write(
        "compose.yaml",
        "name: sc\nservices:\n  web:\n    image: busybox\n    command: sleep 1000\n  probe:\n    image: busybox\n    command: sleep 1000\n",
    );
    ok(&d, &dir.0, &["up", "-d", "--scale", "web=3"]);
    let names: Vec<String> = ids(&d, "sc").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["sc-probe-1", "sc-web-1", "sc-web-2", "sc-web-3"]);
    let ips: Vec<String> = ["sc-web-1", "sc-web-2", "sc-web-3"]
        .iter()
        .map(|n| {
            inspect(&d, n)["NetworkSettings"]["Networks"]["sc_default"]["IPAddress"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let answer = d.ok(&["exec", "sc-probe-1", "nslookup", "web"]);
    for ip in &ips {
        assert!(
            !ip.is_empty() && answer.contains(ip.as_str()),
            "{ip} not in {answer}"
        );
    }
    ok(&d, &dir.0, &["up", "-d", "--scale", "web=1"]);
    let names: Vec<String> = ids(&d, "sc").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["sc-probe-1", "sc-web-1"]);
    ok(&d, &dir.0, &["down"]);
    assert_gone(&d, "sc");
}

#[test]
fn config_interpolates_merges_and_applies_profiles() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("cfg");
    dir.write(".env", "TAG=from-dotenv\nPORT=8080\n")
        .write("other.env", "TAG=from-env-file\n")
        .write(
            "compose.yaml",
            "services:\n  web:\n    image: busybox:${TAG}\n    ports: [\"${PORT}:80\"]\n    environment: [A=1, \"P=${COMPOSE_PROJECT_NAME}\"]\n  debug:\n    image: busybox\n    profiles: [dev]\n  hostnet:\n    image: busybox\n    network_mode: host\n",
        )
        .write(
            "compose.override.yaml",
            "services:\n  web:\n    environment:\n      B: \"2\"\n    ports: !reset []\n",
        );
    let v: Value =
        serde_json::from_str(&ok(&d, &dir.0, &["config", "--format", "json"])).expect("json");
    assert_eq!(
        v["name"],
        format!("berth-compose-{}-cfg", std::process::id())
    );
    let web = &v["services"]["web"];
    assert_eq!(web["image"], "busybox:from-dotenv");
    assert_eq!(web["environment"]["A"], "1");
    assert_eq!(web["environment"]["B"], "2");
    assert_eq!(web["environment"]["P"], v["name"]);
    assert_eq!(v["services"]["hostnet"]["network_mode"], "host");
    assert!(v["services"]["hostnet"].get("networks").is_none());
    assert!(
        web.get("ports")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)),
        "{web}"
    );
    assert!(v["services"].get("debug").is_none(), "profile off: {v}");
    // An explicit --env-file replaces .env; the shell wins over both.
    let v: Value = serde_json::from_str(&ok(
        &d,
        &dir.0,
        &["--env-file", "other.env", "config", "--format", "json"],
    ))
    .expect("json");
    assert_eq!(v["services"]["web"]["image"], "busybox:from-env-file");
    let out = compose_env(&d, &dir.0, &["config", "--images"], &[("TAG", "shell")]);
    assert_eq!(stdout(&out).trim(), "busybox\nbusybox:shell");
    // --profile enables the service; naming it enables it too.
    let s = ok(&d, &dir.0, &["--profile", "dev", "config", "--services"]);
    assert_eq!(s.trim(), "debug\nhostnet\nweb");
    let s = ok(
        &d,
        &dir.0,
        &["-p", "other", "config", "--services", "debug"],
    );
    assert_eq!(s.trim(), "debug\nhostnet\nweb");
    // Swarm-only deploy settings are said to have no effect, not dropped in silence.
    dir.write(
        "compose.override.yaml",
        "services:\n  web:\n    deploy:\n      labels: {a: b}\n      resources:\n        reservations:\n          cpus: \"0.5\"\n",
    );
    let out = compose(&d, &dir.0, &["config", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for k in ["deploy.labels", "deploy.resources.reservations.cpus"] {
        assert!(
            stderr(&out).contains(&format!("services.web.{k} applies to swarm services only")),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_input_is_refused_with_file_and_line_before_anything_is_made() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("bad");
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web:\n    image: busybox\n    portz: [80]\n",
            "compose.yaml:4:5: services.web: additional properties 'portz' not allowed",
        ),
        (
            "services:\n  web:\n    image: busybox\n    depends_on: [db]\n",
            "service \"web\" depends on undefined service \"db\"",
        ),
        (
            "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [a]\n",
            "dependency cycle detected",
        ),
        (
            "services:\n  web:\n    image: ${IMG:?set IMG please}\n",
            "required variable IMG is missing a value: set IMG please",
        ),
        (
            "services:\n  web:\n    image: busybox\n    network_mode: service:nope\n",
            "not found for network_mode 'service:nope'",
        ),
        (
            "services:\n  web:\n    image: busybox\n    secrets: [s]\nsecrets:\n  s:\n    file: ./missing.txt\n",
            "missing.txt not found",
        ),
        (
            "services:\n  web:\n    image: busybox\n    gpus: all\n",
            "compose.yaml:4:5: services.web.gpus: not supported by berth compose",
        ),
        ("services:\n  web:\n   image: [\n", "compose.yaml:"),
        (
            "services:\n  web:\n    image: busybox\n    depends_on: [db]\n  db:\n    image: busybox\n    profiles: [x]\n",
            "service \"web\" depends on undefined service \"db\"",
        ),
        (
            "services:\n  web:\n    image: busybox\n    secrets: [s]\nsecrets:\n  s:\n    environment: BERTH_TEST_UNSET_VAR\n",
            "environment variable \"BERTH_TEST_UNSET_VAR\" required by secret \"s\" is not set",
        ),
        (
            "services:\n  web:\n    image: busybox\n    configs:\n      - source: c\n        target: /etc/../../x\nconfigs:\n  c:\n    content: x\n",
            "must not contain \"..\"",
        ),
        (
            "services:\n  web:\n    image: busybox\n    container_name: one\n    scale: 2\n",
            "cannot be used with 2 replicas",
        ),
    ];
    for (yaml, want) in cases {
        dir.write("compose.yaml", yaml);
        let out = compose(&d, &dir.0, &["up", "-d"]);
        assert_eq!(out.status.code(), Some(1), "{yaml}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{yaml}: want {want:?}, got {}",
            stderr(&out)
        );
        assert_eq!(d.ok(&["ps", "-aq"]), "", "{yaml}");
        assert_eq!(
            d.ok(&[
                "network",
                "ls",
                "-q",
                "--filter",
                "label=com.docker.compose.project"
            ]),
            "",
            "{yaml}"
        );
    }
    // An image that cannot be pulled: refused before the network is made.
    dir.write(
        "compose.yaml",
        "services:\n  web:\n    image: 127.0.0.1:1/none/such:img\n",
    );
    let out = compose(&d, &dir.0, &["up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        d.ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project"
        ]),
        ""
    );
}

#[test]
fn secrets_configs_and_one_shot_dependencies() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("sec");
    dir.write("pw.txt", "s3cret")
        .write(
            "compose.yaml",
            "name: sec\nservices:\n  app:\n    image: busybox\n    command: sleep 1000\n    secrets: [pw]\n    configs:\n      - source: motd\n        target: /etc/motd\n        mode: 0440\n  fails:\n    image: busybox\n    command: [\"sh\", \"-c\", \"exit 3\"]\n    profiles: [broken]\n  after:\n    image: busybox\n    profiles: [broken]\n    depends_on:\n      fails:\n        condition: service_completed_successfully\nsecrets:\n  pw:\n    file: ./pw.txt\nconfigs:\n  motd:\n    content: hello ${USER_NAME:-there}\n",
        );
    ok(&d, &dir.0, &["up", "-d"]);
    assert_eq!(
        d.ok(&["exec", "sec-app-1", "cat", "/run/secrets/pw"]),
        "s3cret"
    );
    assert_eq!(
        d.ok(&["exec", "sec-app-1", "cat", "/etc/motd"]),
        "hello there"
    );
    assert_eq!(
        d.ok(&["exec", "sec-app-1", "stat", "-c", "%a", "/etc/motd"]),
        "440"
    );
    let out = compose(&d, &dir.0, &["--profile", "broken", "up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("service \"fails\" didn't complete successfully: exit 3"),
        "{}",
        stderr(&out)
    );
    // What was made stays visible and removable.
    let ps = ok(
        &d,
        &dir.0,
        &["--profile", "broken", "ps", "-a", "--services"],
    );
    assert_eq!(ps.trim(), "app\nfails");
    ok(&d, &dir.0, &["--profile", "broken", "down"]);
    assert_gone(&d, "sec");
}

#[test]
fn attached_up_prefixes_logs_and_exit_code_from_wait_and_dry_run() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("att");
    dir.write(
        "compose.yaml",
        "name: att\nservices:\n  task:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo hello; sleep 0.3; exit 3\"]\n  side:\n    image: busybox\n    command: sleep 1000\n    stop_signal: SIGKILL\n",
    );
    // --dry-run makes nothing and says what it would do.
    let out = compose(&d, &dir.0, &["--dry-run", "up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DRY-RUN MODE - ") && stderr(&out).contains("Container att-task-1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_eq!(
        d.ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project"
        ]),
        ""
    );
    // Attached: prefixed lines, the exit line, and the task's exit code stops everything.
    let out = compose(
        &d,
        &dir.0,
        &["up", "--exit-code-from", "task", "--no-color"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let so = stdout(&out);
    assert!(so.contains("task-1  | hello"), "{so}");
    assert!(so.contains("task-1 exited with code 3"), "{so}");
    assert!(
        stderr(&out).contains("Aborting on container exit..."),
        "{}",
        stderr(&out)
    );
    assert_eq!(inspect(&d, "att-side-1")["State"]["Status"], "exited");
    // --wait fails naming the unhealthy container.
    dir.write(
        "compose.yaml",
        "name: att\nservices:\n  sick:\n    image: busybox\n    command: sleep 1000\n    stop_signal: SIGKILL\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 100ms\n      retries: 2\n",
    );
    let out = compose(&d, &dir.0, &["up", "-d", "--wait", "--remove-orphans"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("container att-sick-1 is unhealthy"),
        "{}",
        stderr(&out)
    );
    ok(&d, &dir.0, &["down"]);
    assert_gone(&d, "att");
}

#[test]
fn a_failure_mid_up_leaves_what_was_made_visible_and_removable() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("mid");
    let port = common::free_port().to_string();
    dir.write(
        "compose.yaml",
        &format!("name: mid\nservices:\n  a:\n    image: busybox\n    command: sleep 1000\n    ports: [\"127.0.0.1:{port}:80\"]\n  b:\n    image: busybox\n    command: sleep 1000\n    depends_on: [a]\n    ports: [\"127.0.0.1:{port}:81\"]\n"),
    );
    let out = compose(&d, &dir.0, &["up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already allocated"),
        "{}",
        stderr(&out)
    );
    let ps = ok(
        &d,
        &dir.0,
        &["ps", "-a", "--format", "{{.Name}} {{.State}}"],
    );
    assert_eq!(ps.trim(), "mid-a-1 running\nmid-b-1 created");
    ok(&d, &dir.0, &["down"]);
    assert_gone(&d, "mid");
}

#[test]
fn ctrl_c_stops_an_attached_up() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("ctlc");
    dir.write(
        "compose.yaml",
        "name: ctlc\nservices:\n  a:\n    image: busybox\n    command: [\"sh\", \"-c\", \"trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done\"]\n",
    );
    let mut child = std::process::Command::new(common::berth_bin())
        .current_dir(&dir.0)
        .arg("-H")
        .arg(d.host())
        .args(["compose", "up", "--no-color"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn compose up");
    common::eventually("the attached container runs", || {
        !d.ok(&["ps", "-q", "--filter", "name=ctlc-a-1"]).is_empty()
    });
    // Give the log stream a moment to be attached before the interrupt.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let t = std::time::Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "compose up did not end on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    assert_eq!(code, Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Gracefully Stopping... press Ctrl+C again to force"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("a-1  | up"), "{}", stdout(&out));
    assert_eq!(inspect(&d, "ctlc-a-1")["State"]["Status"], "exited");
    ok(&d, &dir.0, &["down"]);
    assert_gone(&d, "ctlc");
}
