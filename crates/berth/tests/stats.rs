//! `GET /containers/{id}/stats`, `berth stats` and `docker stats`: CPU, memory, pids and
//! network figures read from the container's cgroups and network namespace, in Docker's shape.

mod common;
use common::{stderr, stdout, Daemon};
use serde_json::Value;
use std::process::Command;

/// A one-shot sample through the API.
fn one_shot(d: &Daemon, name: &str) -> Value {
    let (code, body) = d.curl(
        "GET",
        &format!("/containers/{name}/stats?stream=false&one-shot=true"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A percentage cell (`12.34%`) as a number.
fn percent(cell: &Value) -> f64 {
    cell.as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {cell}"))
}

#[test]
fn api_samples_have_dockers_keys_and_real_values() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "s1",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "sleep 300 & sleep 300 & while :; do :; done",
    ]);
    let s = one_shot(&d, "s1");
    for key in [
        "read",
        "preread",
        "pids_stats",
        "blkio_stats",
        "num_procs",
        "storage_stats",
        "cpu_stats",
        "precpu_stats",
        "memory_stats",
        "networks",
    ] {
        assert!(s.get(key).is_some(), "{key} missing in {s}");
    }
    assert_eq!(s["name"], "/s1");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["preread"], "0001-01-01T00:00:00Z");
    assert!(s["read"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s["pids_stats"]["current"], 3, "{s}");
    let cpu = &s["cpu_stats"];
    assert!(
        cpu["cpu_usage"]["total_usage"].as_u64().unwrap() > 0,
        "{cpu}"
    );
    assert!(cpu["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(cpu["online_cpus"].as_u64().unwrap() >= 1);
    assert!(cpu["throttling_data"].get("periods").is_some());
    assert_eq!(s["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    let mem = &s["memory_stats"];
    assert!(mem["usage"].as_u64().unwrap() > 0, "{mem}");
    assert_eq!(mem["limit"], 64u64 << 20);
    assert!(
        mem["stats"]
            .as_object()
            .unwrap()
            .contains_key("total_inactive_file")
            || mem["stats"]
                .as_object()
                .unwrap()
                .contains_key("inactive_file")
    );
    assert!(s["networks"]["eth0"]["rx_bytes"].is_u64(), "{s}");
    assert!(s["blkio_stats"]["io_service_bytes_recursive"].is_array());

    // Without one-shot the daemon compares with a sample a second earlier.
    let (code, body) = d.curl("GET", "/containers/s1/stats?stream=false", None);
    assert_eq!(code, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    let (now, before) = (
        s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap(),
        s["precpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap(),
    );
    assert!(before > 0 && now > before, "{now} {before}");
    assert_ne!(s["preread"], "0001-01-01T00:00:00Z");

    // Unlimited memory shows the host's.
    d.ok(&["run", "-d", "--name", "s2", "busybox", "sleep", "300"]);
    let host_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert_eq!(one_shot(&d, "s2")["memory_stats"]["limit"], host_kb * 1024);

    // A stopped container gives Docker's empty sample; errors are Docker's.
    d.ok(&["create", "--name", "idle", "busybox"]);
    let s = one_shot(&d, "idle");
    assert_eq!(s["name"], "/idle");
    assert_eq!(s["read"], "0001-01-01T00:00:00Z");
    assert_eq!(s["memory_stats"], serde_json::json!({}));
    assert!(s.get("networks").is_none());
    assert_eq!(
        d.curl("GET", "/containers/nosuch/stats?stream=0", None).0,
        404
    );
    let (code, body) = d.curl("GET", "/containers/s1/stats?stream=1&one-shot=1", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("cannot have stream=true and one-shot=true"));
}

#[test]
fn streams_sample_every_second_and_end_with_the_container() {
    let d = Daemon::start();
    d.ok(&["run", "-d", "--name", "st", "busybox", "sleep", "300"]);
    let mut curl = Command::new("curl")
        .args(["-s", "-N", "--max-time", "60", "--unix-socket"])
        .arg(&d.sock)
        .arg("http://berth/containers/st/stats")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(curl.stdout.take().unwrap()));
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    assert_eq!(second["precpu_stats"], first["cpu_stats"]);
    assert_eq!(second["preread"], first["read"]);
    // Stopped: empty samples; removed: the stream ends (curl exits 0, not on its timeout).
    d.ok(&["stop", "-t", "0", "st"]);
    let stopped = loop {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["read"] == "0001-01-01T00:00:00Z" {
            break v;
        }
    };
    assert_eq!(stopped["name"], "/st");
    d.ok(&["rm", "st"]);
    for _ in lines.by_ref() {}
    assert!(curl.wait().unwrap().success());
}

#[test]
fn docker_and_berth_stats_show_cpu_memory_and_pids() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "sleep 300 & while :; do :; done",
    ]);
    d.ok(&["run", "-d", "--name", "calm", "busybox", "sleep", "300"]);
    let out = d.docker(&["stats", "--no-stream", "--format", "json", "busy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(percent(&row["CPUPerc"]) > 0.0, "{row}");
    assert!(percent(&row["MemPerc"]) > 0.0, "{row}");
    let mem = row["MemUsage"].as_str().unwrap();
    assert!(mem.ends_with(" / 64MiB") && !mem.starts_with("0B"), "{mem}");
    assert_eq!(row["PIDs"], "2");
    assert_eq!(row["Name"], "busy");

    // docker's table with every running container.
    let out = d.docker(&["stats", "--no-stream"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // The docker CLI's tab writer: columns at least 10 wide, three spaces apart.
    let header = "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O";
    assert!(text.starts_with(header), "{text}");
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names.len(), 2, "{text}");
    assert!(names.contains(&"busy") && names.contains(&"calm"), "{text}");

    // berth's own, as docker draws it.
    let out = d.berth(&["stats", "--no-stream"]);
    let text = stdout(&out);
    assert!(text.starts_with(header), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    let out = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
        "busy",
        "calm",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("busy ") && lines[0].ends_with(" / 64MiB 2"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("calm ") && lines[1].ends_with(" 1"),
        "{out}"
    );
    let row: Value =
        serde_json::from_str(&d.ok(&["stats", "--no-stream", "--format", "json", "busy"])).unwrap();
    assert!(percent(&row["CPUPerc"]) > 0.0, "{row}");
    assert_eq!(row["Container"], "busy");
    assert_eq!(row["ID"].as_str().unwrap().len(), 12);
    let out = d.berth(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );
    // -a includes stopped containers, with empty figures.
    d.ok(&["create", "--name", "idle", "busybox"]);
    let out = d.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.PIDs}}",
    ]);
    assert!(out.lines().any(|l| l == "idle 0.00% 0"), "{out}");
}

#[test]
fn network_counters_grow_with_traffic_between_containers() {
    let d = Daemon::start();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &d.user_subnet(0),
        "statnet",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "--network",
        "statnet",
        "busybox",
        "sleep",
        "300",
    ]);
    let rx = |d: &Daemon| {
        one_shot(d, "target")["networks"]["eth0"]["rx_bytes"]
            .as_u64()
            .unwrap()
    };
    let before = rx(&d);
    d.ok(&[
        "run",
        "--rm",
        "--network",
        "statnet",
        "busybox",
        "ping",
        "-c",
        "5",
        "-s",
        "1000",
        "target",
    ]);
    let after = rx(&d);
    assert!(after >= before + 5 * 1000, "rx {before} -> {after}");
    let row: Value =
        serde_json::from_str(&d.ok(&["stats", "--no-stream", "--format", "json", "target"]))
            .unwrap();
    let net = row["NetIO"].as_str().unwrap();
    assert!(net.split(" / ").next().unwrap().ends_with("kB"), "{net}");
    d.ok(&["rm", "-f", "target"]);
    d.ok(&["network", "rm", "statnet"]);
}
