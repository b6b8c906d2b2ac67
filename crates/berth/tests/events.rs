//! `GET /events` and `berth events`: what a container, image and network do is reported in
//! order with Docker's fields and attributes, filters narrow it, the stream replays and
//! follows, and the docker CLI reads it.

mod common;
use common::{eventually, stderr, stdout, Daemon};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now as the API's `since`/`until` (`seconds.nanoseconds`).
fn now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// `berth events --since --until --format json` with filters, parsed.
fn events(d: &Daemon, since: &str, until: &str, filters: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "events", "--since", since, "--until", until, "--format", "json",
    ];
    for f in filters {
        args.extend(["--filter", f]);
    }
    d.ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn actions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect()
}

fn attr<'a>(e: &'a Value, k: &str) -> &'a str {
    e["Actor"]["Attributes"][k].as_str().unwrap_or("")
}

#[test]
fn container_lifecycle_events_in_order_with_dockers_fields() {
    let d = Daemon::start();
    let t0 = now();
    let id = d.ok(&[
        "run", "-d", "--name", "ev1", "-l", "tier=db", "busybox", "sleep", "60",
    ]);
    // sleep as pid 1 ignores SIGTERM: TERM, then KILL right away with -t 0.
    d.ok(&["stop", "-t", "0", "ev1"]);
    d.ok(&["rename", "ev1", "ev2"]);
    d.ok(&["rm", "ev2"]);
    let t1 = now();
    let all = events(&d, &t0, &t1, &[]);
    let mine: Vec<Value> = all
        .iter()
        .filter(|e| e["Actor"]["ID"] == id.as_str() || attr(e, "container") == id)
        .cloned()
        .collect();
    assert_eq!(
        actions(&mine),
        [
            "container create",
            "network connect",
            "container start",
            "container kill",
            "container kill",
            "network disconnect",
            "container die",
            "container stop",
            "container rename",
            "container destroy"
        ],
        "{all:#?}"
    );
    let start = &mine[2];
    assert_eq!(start["status"], "start");
    assert_eq!(start["id"], id.as_str());
    assert_eq!(start["from"], "busybox");
    assert_eq!(start["scope"], "local");
    assert_eq!(attr(start, "name"), "ev1");
    assert_eq!(attr(start, "image"), "busybox");
    assert_eq!(attr(start, "tier"), "db");
    let nanos = start["timeNano"].as_i64().unwrap();
    assert_eq!(start["time"].as_i64().unwrap(), nanos / 1_000_000_000);
    assert_eq!(
        (attr(&mine[3], "signal"), attr(&mine[4], "signal")),
        ("15", "9")
    );
    let die = &mine[6];
    assert_eq!(attr(die, "exitCode"), "137");
    assert!(attr(die, "execDuration").parse::<u64>().is_ok(), "{die}");
    let connect = &mine[1];
    assert!(connect.get("status").is_none() && connect.get("from").is_none());
    assert_eq!(attr(connect, "name"), "bridge");
    assert_eq!(attr(connect, "type"), "bridge");
    assert_eq!(attr(&mine[8], "oldName"), "/ev1");
    assert_eq!(attr(&mine[8], "name"), "ev2");
    // Times only grow.
    let times: Vec<i64> = mine
        .iter()
        .map(|e| e["timeNano"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The default output is docker's line.
    let out = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "event=start",
    ]);
    let (stamp, rest) = out.split_once(' ').unwrap();
    assert_eq!(
        rest,
        format!("container start {id} (image=busybox, name=ev1, tier=db)")
    );
    assert_eq!(
        stamp.len(),
        "2026-12-02T21:40:01.123456789Z".len(),
        "{stamp}"
    );
    assert!(stamp.ends_with('Z') || stamp.contains('+'), "{stamp}");
    // Templates see Go's field names.
    let out = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "container=ev",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(out.lines().next(), Some("container create ev1"), "{out}");
    // `since` after `until` is refused.
    let (code, body) = d.curl("GET", &format!("/events?since={t1}&until={t0}"), None);
    assert_eq!(code, 400, "{body}");
}

#[test]
fn exec_attach_pause_restart_and_run_rm_events() {
    let d = Daemon::start();
    let t0 = now();
    d.ok(&["run", "-d", "--name", "x1", "busybox", "sleep", "60"]);
    assert_eq!(
        d.berth(&["exec", "x1", "sh", "-c", "exit 3"]).status.code(),
        Some(3)
    );
    d.ok(&["pause", "x1"]);
    d.ok(&["unpause", "x1"]);
    d.ok(&["restart", "-t", "0", "x1"]);
    d.ok(&["run", "--rm", "--name", "x2", "busybox", "true"]);
    d.ok(&["rm", "-f", "x1"]);
    let t1 = now();
    let evs = events(&d, &t0, &t1, &["type=container", "container=x1"]);
    let acts: Vec<String> = evs
        .iter()
        .map(|e| e["Action"].as_str().unwrap().to_string())
        .collect();
    let exec_id = evs
        .iter()
        .find(|e| e["Action"] == "exec_create: sh -c exit 3")
        .map(|e| attr(e, "execID").to_string())
        .unwrap_or_else(|| panic!("{acts:?}"));
    assert_eq!(exec_id.len(), 64);
    let pos = |a: &str| {
        acts.iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("{a} not in {acts:?}"))
    };
    assert!(pos("exec_create: sh -c exit 3") < pos("exec_start: sh -c exit 3"));
    assert!(pos("exec_start: sh -c exit 3") < pos("exec_die"));
    let die = evs.iter().find(|e| e["Action"] == "exec_die").unwrap();
    assert_eq!(
        (attr(die, "execID"), attr(die, "exitCode")),
        (exec_id.as_str(), "3")
    );
    assert!(pos("pause") < pos("unpause") && pos("unpause") < pos("restart"));
    let after_restart = &acts[pos("unpause") + 1..];
    assert_eq!(
        after_restart,
        ["kill", "kill", "die", "stop", "start", "restart", "kill", "die", "destroy"],
        "{acts:?}"
    );
    // `run --rm` attaches before it starts and is destroyed after it dies.
    let x2 = events(&d, &t0, &t1, &["container=x2", "type=container"]);
    assert_eq!(
        actions(&x2),
        [
            "container create",
            "container attach",
            "container start",
            "container die",
            "container destroy"
        ]
    );
}

#[test]
fn filters_narrow_by_type_event_container_image_and_label() {
    // Names that are not hex, so that no random id begins with one (a container filter
    // also takes id prefixes).
    let d = Daemon::start();
    let t0 = now();
    d.ok(&[
        "run", "--rm", "--name", "ka", "-l", "team=red", "-l", "x=1", "busybox", "true",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "--name",
        "kb",
        "-l",
        "team=blue",
        "busybox",
        "true",
    ]);
    d.ok(&["tag", "busybox", "filtered:1"]);
    let t1 = now();
    let names = |f: &[&str]| -> Vec<String> {
        events(&d, &t0, &t1, f)
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["Type"].as_str().unwrap(),
                    e["Action"].as_str().unwrap(),
                    attr(e, "name")
                )
            })
            .collect()
    };
    assert_eq!(
        names(&["event=die"]),
        ["container die ka", "container die kb"]
    );
    assert_eq!(
        names(&["event=create", "event=destroy", "container=kb"]),
        ["container create kb", "container destroy kb"]
    );
    assert_eq!(names(&["container=ka"]).len(), 5);
    // An id prefix names the container too, and a container filter keeps network events out.
    let created = events(&d, &t0, &t1, &["event=create", "container=ka"]);
    let a = created[0]["id"].as_str().unwrap();
    let by_id = format!("container={}", &a[..10]);
    assert_eq!(names(&[by_id.as_str()]).len(), 5);
    assert_eq!(
        names(&["type=network"]),
        [
            "network connect bridge",
            "network disconnect bridge",
            "network connect bridge",
            "network disconnect bridge"
        ]
    );
    assert_eq!(
        names(&["label=team=blue", "event=start"]),
        ["container start kb"]
    );
    assert_eq!(
        names(&["label=team", "label=x=1", "event=start"]),
        ["container start ka"]
    );
    assert_eq!(names(&["label=team=green"]), Vec::<String>::new());
    assert_eq!(names(&["type=image"]), ["image tag filtered:1"]);
    // The image filter matches containers by the image they name and images by name, with
    // or without the tag.
    assert_eq!(names(&["image=busybox", "event=start"]).len(), 2);
    assert_eq!(names(&["image=filtered"]), ["image tag filtered:1"]);
    assert_eq!(names(&["image=filtered:1"]), ["image tag filtered:1"]);
    assert_eq!(names(&["image=alpine"]), Vec::<String>::new());
    let bad = d.curl("GET", "/events?filters=notjson", None);
    assert_eq!(bad.0, 400, "{}", bad.1);
}

#[test]
fn image_events_tag_untag_delete_commit_save_load() {
    let d = Daemon::start();
    let busybox = d.ok(&["inspect", "-f", "{{.Id}}", "busybox"]);
    let t0 = now();
    d.ok(&["tag", "busybox", "mine:1"]);
    d.ok(&["rmi", "mine:1"]);
    d.ok(&["run", "--name", "src", "busybox", "touch", "/new"]);
    let img = d.ok(&["commit", "-m", "note", "src", "committed:2"]);
    d.ok(&["rm", "src"]);
    d.ok(&["rmi", "committed:2"]);
    let tar = std::env::temp_dir().join(format!("berth-events-save-{}.tar", std::process::id()));
    let tar_s = tar.to_str().unwrap();
    d.ok(&["save", "-o", tar_s, "busybox"]);
    d.ok(&["load", "-i", tar_s]);
    let _ = std::fs::remove_file(&tar);
    let t1 = now();
    let evs = events(&d, &t0, &t1, &["type=image"]);
    let got: Vec<(String, String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["Action"].as_str().unwrap().to_string(),
                e["Actor"]["ID"].as_str().unwrap().to_string(),
                attr(e, "name").to_string(),
            )
        })
        .collect();
    let want = |a: &str, id: &str, name: &str| (a.to_string(), id.to_string(), name.to_string());
    assert_eq!(
        got,
        [
            want("tag", &busybox, "mine:1"),
            want("untag", &busybox, &busybox),
            want("create", &img, &img),
            want("tag", &img, "committed:2"),
            want("untag", &img, &img),
            want("delete", &img, &img),
            want("save", &busybox, &busybox),
            want("load", &busybox, &busybox),
        ]
    );
    assert!(evs
        .iter()
        .all(|e| e["status"] == e["Action"] && e["id"] == e["Actor"]["ID"]));
    let commit = events(&d, &t0, &t1, &["event=commit"]);
    assert_eq!(commit.len(), 1);
    assert_eq!(attr(&commit[0], "comment"), "note");
    assert_eq!(attr(&commit[0], "imageID"), img);
    assert_eq!(attr(&commit[0], "imageRef"), "committed:2");
    assert_eq!(attr(&commit[0], "name"), "src");
    // Image create events are new in API 1.46: older clients do not see them.
    let (code, body) = d.curl(
        "GET",
        &format!(
            "/v1.45/events?since={t0}&until={t1}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D"
        ),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(body.lines().count(), 7, "{body}");
}

#[test]
fn network_events_create_connect_disconnect_destroy() {
    let d = Daemon::start();
    let t0 = now();
    let net = d.ok(&["network", "create", "--subnet", &d.user_subnet(0), "evnet"]);
    let c = d.ok(&[
        "run",
        "-d",
        "--name",
        "nc1",
        "--network",
        "evnet",
        "busybox",
        "sleep",
        "60",
    ]);
    d.ok(&["network", "connect", "bridge", "nc1"]);
    d.ok(&["network", "disconnect", "bridge", "nc1"]);
    d.ok(&["rm", "-f", "nc1"]);
    d.ok(&["network", "rm", "evnet"]);
    let t1 = now();
    let evs = events(&d, &t0, &t1, &["type=network"]);
    let got: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["Action"].as_str().unwrap(),
                attr(e, "name"),
                attr(e, "type"),
                attr(e, "container") == c
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "create evnet bridge false",
            "connect evnet bridge true",
            "connect bridge bridge true",
            "disconnect bridge bridge true",
            "disconnect evnet bridge true",
            "destroy evnet bridge false"
        ]
    );
    assert_eq!(evs[0]["Actor"]["ID"], net.as_str());
    assert_eq!(
        events(&d, &t0, &t1, &["network=evnet", "event=destroy"]).len(),
        1
    );
}

#[test]
fn live_stream_follows_until_the_client_or_until_ends_it() {
    let d = Daemon::start();
    let mut child = Command::new(common::berth_bin())
        .args([
            "-H",
            &d.host(),
            "events",
            "--since",
            &now(),
            "--filter",
            "container=live",
            "--format",
            "{{.Action}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Whether the stream is subscribed before or after the run, `since` makes every event
    // of it arrive once: replayed or live.
    std::thread::sleep(Duration::from_millis(100));
    d.ok(&["run", "--rm", "--name", "live", "busybox", "true"]);
    let mut seen = Vec::new();
    while let Some(Ok(l)) = lines.next() {
        seen.push(l);
        if seen.last().map(String::as_str) == Some("destroy") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, ["create", "attach", "start", "die", "destroy"]);

    // An `until` in the future ends the stream then, with what happened in between.
    let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(2);
    let child = Command::new(common::berth_bin())
        .args([
            "-H",
            &d.host(),
            "events",
            "--until",
            &format!("{}.{:09}", until.as_secs(), until.subsec_nanos()),
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
            "--filter",
            "event=create",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.ok(&["create", "--name", "later", "busybox"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // Without `since`, `until` replays what the daemon kept from before, as Docker does.
    assert_eq!(stdout(&out).trim(), "create live\ncreate later");

    // The docker CLI reads the same stream.
    let t0 = now();
    d.ok(&["rm", "later"]);
    let t1 = now();
    let out = d.docker(&["events", "--since", &t0, "--until", &t1]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.trim().ends_with("(image=busybox, name=later)")
            && text.contains(" container destroy "),
        "{text}"
    );
    let out = d.docker(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--format",
        "{{json .}}",
    ]);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (v["Type"].as_str(), v["Action"].as_str()),
        (Some("container"), Some("destroy"))
    );
}

#[test]
fn die_is_reported_for_exits_seen_after_a_daemon_restart() {
    let mut d = Daemon::start();
    let quick = d.ok(&[
        "run",
        "-d",
        "--name",
        "quick",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]);
    let slow = d.ok(&["run", "-d", "--name", "slow", "busybox", "sleep", "60"]);
    d.crash();
    let exit_file = d.exec_root.join("c").join(&quick).join("exit.json");
    eventually("quick to exit while the daemon is down", || {
        exit_file.exists()
    });
    d.spawn();
    let t0 = "0";
    let after_boot = events(&d, t0, &now(), &["event=die"]);
    assert_eq!(after_boot.len(), 1, "{after_boot:?}");
    assert_eq!(after_boot[0]["id"], quick.as_str());
    assert_eq!(attr(&after_boot[0], "exitCode"), "4");
    // The monitor re-armed at boot reports the other one.
    d.ok(&["kill", "slow"]);
    eventually("slow's die event", || {
        events(&d, t0, &now(), &["event=die", "container=slow"]).len() == 1
    });
    let die = &events(&d, t0, &now(), &["event=die", "container=slow"])[0];
    assert_eq!(die["id"], slow.as_str());
    assert_eq!(attr(die, "exitCode"), "137");
    d.ok(&["rm", "quick", "slow"]);
}
