//! Housekeeping: container/image prune with filters, `system df` figures (berth and the docker
//! CLI), and `system prune -a` leaving no orphaned blob, snapshot, log or container file.

mod common;

use common::{stderr, stdout, Daemon};

/// Files (not directories) below `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn container_prune_removes_stopped_containers_the_filters_select() {
    let d = Daemon::start();
    let keep = d.ok(&["create", "--label", "keep=yes", "busybox", "true"]);
    d.ok(&["run", "--name", "gone", "busybox", "true"]);
    let gone = d.ok(&["inspect", "-f", "{{.Id}}", "gone"]);
    let running = d.ok(&["run", "-d", "busybox", "sleep", "30"]);
    // Only containers created before a time long ago: nothing.
    let out = d.ok(&[
        "container",
        "prune",
        "-f",
        "--filter",
        "until=2020-01-01T00:00:00Z",
    ]);
    assert_eq!(out, "Total reclaimed space: 0B", "{out}");
    let out = d.ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.starts_with("Deleted Containers:"), "{out}");
    assert!(out.contains(&gone), "{out}");
    let left = d.ok(&["ps", "-aq", "--no-trunc"]);
    assert!(!left.contains(&gone), "{left}");
    assert!(left.contains(&keep) && left.contains(&running), "{left}");
    // Without filters every stopped one goes; the running one stays.
    d.ok(&["container", "prune", "-f"]);
    let left = d.ok(&["ps", "-aq", "--no-trunc"]);
    assert_eq!(left.trim(), running, "{left}");
    // A bad filter is refused.
    let o = d.berth(&["container", "prune", "-f", "--filter", "colour=red"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid filter 'colour'"),
        "{}",
        stderr(&o)
    );
    d.ok(&["rm", "-f", &running]);
    // The docker CLI prunes through berthd too.
    let id = d.ok(&["create", "busybox", "true"]);
    let o = d.docker(&["container", "prune", "-f"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));
}

#[test]
fn image_prune_honours_until_and_label() {
    let d = Daemon::start();
    d.ok(&["tag", "busybox", "old:1"]);
    let labelled = d.ok(&[
        "commit",
        "-c",
        "LABEL tier=test",
        &d.ok(&["create", "busybox", "true"]),
        "withlabel:1",
    ]);
    d.ok(&["container", "prune", "-f"]);
    // Every image was created after 2020: an until in 2020 keeps them all.
    let out = d.ok(&[
        "image",
        "prune",
        "-a",
        "-f",
        "--filter",
        "until=2020-01-01T00:00:00Z",
    ]);
    assert_eq!(out, "Total reclaimed space: 0B", "{out}");
    // The label selects only the committed image.
    let out = d.ok(&["image", "prune", "-a", "-f", "--filter", "label=tier=test"]);
    assert!(out.contains("untagged: withlabel:1"), "{out}");
    assert!(out.contains(&format!("deleted: {labelled}")), "{out}");
    assert!(!out.contains("busybox"), "{out}");
    d.ok(&["image", "inspect", "old:1"]);
}

#[test]
fn system_df_counts_images_containers_and_logs() {
    let d = Daemon::start();
    // 2 MB in the rw layer of a stopped container, and some log lines.
    d.ok(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/blob bs=1024 count=2048 2>/dev/null; seq 1 2000",
    ]);
    let running = d.ok(&[
        "run",
        "-d",
        "-v",
        "dfvol:/v",
        "busybox",
        "sh",
        "-c",
        "echo hello > /v/f; sleep 30",
    ]);
    common::eventually("the volume file", || {
        d.berth(&["exec", &running, "cat", "/v/f"]).status.success()
    });
    let v: serde_json::Value = serde_json::from_str(&d.curl("GET", "/system/df", None).1).unwrap();
    assert!(v["LayersSize"].as_i64().unwrap() > 500_000, "{v}");
    assert!(v["LogsSize"].as_i64().unwrap() > 2000 * 3, "{v}");
    assert_eq!(v["Volumes"][0]["UsageData"]["RefCount"], 1, "{v}");
    assert!(
        v["Volumes"][0]["UsageData"]["Size"].as_i64().unwrap() >= 5,
        "{v}"
    );
    let imgs = v["Images"].as_array().unwrap();
    assert_eq!(imgs.len(), 1, "{v}");
    assert_eq!(imgs[0]["Containers"], 2);
    // Docker's figures: the one image's layers, unpacked and counted once (not once more
    // for the compressed blob kept beside each layer).
    assert_eq!(v["LayersSize"], imgs[0]["Size"], "{v}");
    let writer = v["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == "/writer")
        .unwrap();
    assert!(writer["SizeRw"].as_i64().unwrap() >= 2 << 20, "{writer}");
    // berth's table: the idle container's 2 MB is reclaimable; one of two is active.
    let out = d.ok(&["system", "df"]);
    let containers = out.lines().find(|l| l.starts_with("Containers")).unwrap();
    let cols: Vec<&str> = containers.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["2", "1"], "{out}");
    assert!(cols[4].ends_with("MB"), "{out}");
    assert!(out.contains("Container Logs"), "{out}");
    let json = d.ok(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]);
    assert!(json.contains("Images=1"), "{json}");
    let verbose = d.ok(&["system", "df", "-v"]);
    assert!(verbose.contains("Images space usage:"), "{verbose}");
    assert!(verbose.contains("writer"), "{verbose}");
    // The docker CLI draws its own table from the same answer.
    let o = d.docker(&["system", "df"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("Containers"))
        .map(String::from)
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["2", "1"], "{line}");
    // Both tables give the images the size `images` shows for busybox.
    let image_size = d.ok(&["images", "--format", "{{.Size}}", "busybox"]);
    for table in [out.clone(), stdout(&o)] {
        let images = table.lines().find(|l| l.starts_with("Images")).unwrap();
        let cols: Vec<&str> = images.split_whitespace().collect();
        assert_eq!(cols[3], image_size, "{table}");
    }
    let bad = d.curl("GET", "/system/df?type=nothing", None);
    assert_eq!(bad.0, 400, "{}", bad.1);
    d.ok(&["rm", "-f", &running]);
    d.ok(&["volume", "rm", "dfvol"]);
}

#[test]
fn system_prune_all_leaves_no_orphaned_files() {
    let d = Daemon::start();
    d.ok(&[
        "run",
        "--name",
        "pa",
        "busybox",
        "sh",
        "-c",
        "echo data > /f; echo logged",
    ]);
    d.ok(&["tag", "busybox", "second:tag"]);
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &d.user_subnet(0),
        "prunenet",
    ]);
    d.ok(&[
        "run",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/f",
    ]);
    d.ok(&["volume", "create", "named"]);
    let running = d.ok(&["run", "-d", "busybox", "sleep", "30"]);
    // With a running container its image stays, and so do its layers.
    let out = d.ok(&["system", "prune", "-a", "-f", "--volumes"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    // Named volumes stay (Docker prunes only anonymous ones unless asked for all).
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "named");
    d.ok(&["volume", "rm", "named"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("Deleted Networks:\nprunenet"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    d.ok(&["image", "inspect", "busybox"]);
    d.ok(&["rm", "-f", &running]);
    let out = d.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    // Nothing is left: no blob, snapshot, image record, container directory or log.
    for sub in [
        "content",
        "snapshots",
        "images",
        "containers",
        "trash",
        "volumes",
    ] {
        let left = files_under(&d.data_root.join(sub));
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
    let v: serde_json::Value = serde_json::from_str(&d.curl("GET", "/system/df", None).1).unwrap();
    assert_eq!(v["LayersSize"], 0, "{v}");
    // Volume and prune events were reported.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = d.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        &now.to_string(),
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]);
    for want in ["create named", "destroy named", "prune "] {
        assert!(events.contains(want), "{want}: {events}");
    }
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("destroy ") && !l.ends_with("named")),
        "{events}"
    );
    assert_eq!(v["LogsSize"], 0, "{v}");
    assert_eq!(v["Volumes"], serde_json::json!([]), "{v}");
}
