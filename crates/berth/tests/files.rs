//! cp (both directions), diff, export, commit and top through the berth CLI.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn cp_diff_export_commit_top() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-files-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "fs",
        "busybox",
        "sh",
        "-c",
        "echo data > /root/made; rm /etc/group; sleep 60",
    ]);
    common::eventually("file written", || {
        d.berth(&["exec", "fs", "test", "-f", "/root/made"])
            .status
            .success()
    });

    // cp out of a running container, to a new name and into a directory.
    d.ok(&["cp", "fs:/root/made", tmp.join("copy").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(tmp.join("copy")).unwrap(), "data\n");
    d.ok(&["cp", "fs:/etc", tmp.to_str().unwrap()]);
    assert!(tmp.join("etc/passwd").exists());
    // cp in.
    std::fs::write(tmp.join("in.txt"), "from host\n").unwrap();
    d.ok(&["cp", tmp.join("in.txt").to_str().unwrap(), "fs:/tmp/"]);
    assert_eq!(d.ok(&["exec", "fs", "cat", "/tmp/in.txt"]), "from host");
    d.ok(&[
        "cp",
        tmp.join("in.txt").to_str().unwrap(),
        "fs:/tmp/renamed.txt",
    ]);
    assert_eq!(
        d.ok(&["exec", "fs", "cat", "/tmp/renamed.txt"]),
        "from host"
    );
    let out = d.berth(&["cp", "fs:/nonexistent", tmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Could not find the file /nonexistent"),
        "{}",
        stderr(&out)
    );

    // diff shows the container's own changes only (not the mount points berth created).
    let diff = d.ok(&["diff", "fs"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert!(lines.contains(&"A /root/made"), "{diff}");
    assert!(lines.contains(&"D /etc/group"), "{diff}");
    assert!(lines.contains(&"A /tmp/in.txt"), "{diff}");
    assert!(
        !diff.contains("hosts") && !diff.contains("resolv.conf"),
        "{diff}"
    );

    // top lists the container's processes.
    let top = d.ok(&["top", "fs"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sleep 60"), "{top}");

    // commit makes an image with the changes.
    let img = d.ok(&[
        "commit",
        "-m",
        "snapshot",
        "-c",
        "ENV COMMITTED=yes",
        "fs",
        "snap:v1",
    ]);
    assert!(img.starts_with("sha256:"), "{img}");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "snap:v1",
            "sh",
            "-c",
            "cat /root/made; echo $COMMITTED; test -e /etc/group || echo nogroup"
        ]),
        "data\nyes\nnogroup"
    );
    let hist = d.ok(&["history", "--format", "{{.Comment}}", "snap:v1"]);
    assert_eq!(hist.lines().next(), Some("snapshot"));

    // export of a stopped container: the merged filesystem.
    d.ok(&["stop", "-t", "0", "fs"]);
    let tar = tmp.join("export.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "fs"]);
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = stdout(&listing);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "root/made"),
        "{listing}"
    );
    assert!(listing
        .lines()
        .any(|l| l.trim_start_matches("./") == "bin/busybox"));
    // cp from a stopped container mounts its filesystem just for the copy.
    d.ok(&["cp", "fs:/root/made", tmp.join("copy2").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(tmp.join("copy2")).unwrap(),
        "data\n"
    );
    d.ok(&["rm", &id]);
    d.ok(&["rmi", "snap:v1"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn cp_follow_link_copies_the_target() {
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "lk",
        "busybox",
        "sh",
        "-c",
        "ln -s /etc/hostname /link && sleep 300",
    ]);
    common::eventually("the link", || {
        d.berth(&["exec", "lk", "test", "-L", "/link"])
            .status
            .success()
    });
    let tmp = std::env::temp_dir().join(format!("berth-cpL-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    // Without -L the link itself comes out; with -L its target, under the link's name.
    d.ok(&["cp", "lk:/link", tmp.join("plain").to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(tmp.join("plain"))
        .unwrap()
        .file_type()
        .is_symlink());
    d.ok(&[
        "cp",
        "-L",
        "lk:/link",
        tmp.join("followed").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(tmp.join("followed"))
            .unwrap()
            .trim(),
        &id[..12]
    );
    d.ok(&["cp", "-L", "lk:/link", tmp.to_str().unwrap()]);
    assert!(std::fs::metadata(tmp.join("link")).unwrap().is_file());
    // Host to container: -L sends the file a local link points to.
    std::fs::write(tmp.join("real"), "payload\n").unwrap();
    std::os::unix::fs::symlink(tmp.join("real"), tmp.join("ln")).unwrap();
    d.ok(&["cp", "-L", tmp.join("ln").to_str().unwrap(), "lk:/copied"]);
    assert_eq!(d.ok(&["exec", "lk", "cat", "/copied"]), "payload");
    let o = d.berth(&["exec", "lk", "test", "-f", "/copied"]);
    assert!(
        o.status.success(),
        "{:?} {} {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    d.ok(&["cp", tmp.join("ln").to_str().unwrap(), "lk:/aslink"]);
    assert!(d
        .berth(&["exec", "lk", "test", "-L", "/aslink"])
        .status
        .success());
    let _ = std::fs::remove_dir_all(&tmp);
    d.ok(&["rm", "-f", "lk"]);
}
