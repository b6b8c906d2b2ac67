//! Engine API conformance: requests shaped as dockerd's clients send them (nulls, absent and
//! unknown fields, odd key case, old API versions in the path) decode as dockerd decodes them,
//! the swarm routes answer as on a node outside a swarm, and a walk over the Engine API swagger
//! (../shared/reference/engine-api-v1.50.yaml) checks every route berth serves: its status code is
//! one the swagger lists and its body has every required field, with the swagger's types.

#![recursion_limit = "512"]

mod common;

use common::Daemon;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// A request body and the content type it goes with.
enum Body {
    None,
    Json(String),
    Tar(Vec<u8>),
}

struct Reply {
    status: u16,
    content_type: String,
    /// Header names, lowercased.
    headers: BTreeSet<String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP request over the daemon's socket with curl.
fn request(d: &Daemon, method: &str, path: &str, body: Body) -> Reply {
    let dir = tempdir();
    let headers = dir.join("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-D"])
        .arg(&headers)
        .args(["--max-time", "120", "--unix-socket"])
        .arg(&d.sock);
    if method == "HEAD" {
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method]);
    }
    let file = dir.join("body");
    match body {
        Body::None => {}
        Body::Json(s) => {
            std::fs::write(&file, s).unwrap();
            cmd.args(["-H", "Content-Type: application/json"]);
        }
        Body::Tar(b) => {
            std::fs::write(&file, b).unwrap();
            cmd.args(["-H", "Content-Type: application/x-tar"]);
        }
    }
    if file.exists() {
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    let out = cmd
        .arg(format!("http://berth{path}"))
        .output()
        .expect("curl");
    let head = std::fs::read_to_string(&headers).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let status = head
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        out.stdout
    };
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, _)| k.trim().to_ascii_lowercase())
        .collect();
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("berth-conf-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // uid, gid and mtime left blank, as SDK examples build tars: Go reads them as 0.
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn message(r: &Reply) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn null_fields_decode_as_zero_values() {
    let d = Daemon::start();
    // Every optional member null, as Go clients marshal nil pointers, slices and maps.
    let create = json!({
        "Hostname": null, "Domainname": null, "User": null, "AttachStdin": null,
        "AttachStdout": null, "AttachStderr": null, "ExposedPorts": null, "Tty": null,
        "OpenStdin": null, "StdinOnce": null, "Env": null, "Cmd": ["sleep", "60"],
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": null, "Timeout": null,
            "Retries": null, "StartPeriod": null, "StartInterval": null},
        "ArgsEscaped": null, "Image": "busybox", "Volumes": null, "WorkingDir": null,
        "Entrypoint": null, "NetworkDisabled": null, "MacAddress": null, "OnBuild": null,
        "Labels": {"a": null}, "StopSignal": null, "StopTimeout": null, "Shell": null,
        "UnknownField": {"x": [1, null]},
        "HostConfig": {
            "Binds": null, "ContainerIDFile": null, "LogConfig": {"Type": null, "Config": null},
            "NetworkMode": null, "PortBindings": {"80/tcp": null}, "RestartPolicy": null,
            "AutoRemove": null, "VolumeDriver": null, "VolumesFrom": null, "ConsoleSize": null,
            "Annotations": null, "CapAdd": null, "CapDrop": null, "CgroupnsMode": null,
            "Dns": null, "DnsOptions": null, "DnsSearch": null, "ExtraHosts": null,
            "GroupAdd": null, "IpcMode": null, "Cgroup": null, "Links": null,
            "OomScoreAdj": null, "PidMode": null, "Privileged": null, "PublishAllPorts": null,
            "ReadonlyRootfs": null, "SecurityOpt": null, "StorageOpt": null, "Tmpfs": null,
            "UTSMode": null, "UsernsMode": null, "ShmSize": null, "Sysctls": null,
            "Runtime": null, "Isolation": null, "CpuShares": null, "Memory": null,
            "NanoCpus": null, "CgroupParent": null, "BlkioWeight": null,
            "BlkioWeightDevice": null, "BlkioDeviceReadBps": null, "CpuPeriod": null,
            "CpuQuota": null, "CpuRealtimePeriod": null, "CpuRealtimeRuntime": null,
            "CpusetCpus": null, "CpusetMems": null, "Devices": null,
            "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": null,
            "MemorySwap": null, "MemorySwappiness": null, "OomKillDisable": null,
            "PidsLimit": null, "Ulimits": null, "Init": null, "Mounts": null,
            "MaskedPaths": null, "ReadonlyPaths": null
        },
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": null,
            "Links": null, "Aliases": null, "MacAddress": null, "DriverOpts": null,
            "NetworkID": null, "EndpointID": null, "Gateway": null, "IPAddress": null,
            "IPPrefixLen": null, "DNSNames": null}}}
    });
    let r = request(
        &d,
        "POST",
        "/v1.41/containers/create?name=nulls",
        Body::Json(create.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = request(&d, "POST", "/containers/nulls/start", Body::None);
    assert_eq!(r.status, 204, "{}", r.text());
    let inspect = request(&d, "GET", "/containers/nulls/json", Body::None).json();
    assert_eq!(inspect["State"]["Running"], true, "{inspect}");
    assert_eq!(inspect["Config"]["Labels"]["a"], "");
    assert_eq!(
        inspect["Config"]["Healthcheck"]["Test"],
        json!(["CMD", "true"])
    );

    // Field names match whatever their case, as Go's decoder matches them.
    let r = request(
        &d,
        "POST",
        "/containers/create?name=folded",
        Body::Json(r#"{"image":"busybox","cmd":["true"],"hostconfig":{"memory":0}}"#.into()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let inspect = request(&d, "GET", "/containers/folded/json", Body::None).json();
    assert_eq!(inspect["Config"]["Cmd"], json!(["true"]), "{inspect}");

    // Only a wrong type is an error, with Docker's JSON message.
    for bad in [
        r#"{"Image":"busybox","Cmd":"true","Tty":"yes"}"#,
        r#"{"Image":"busybox","HostConfig":{"Memory":"1g"}}"#,
        r#"{"Image":"busybox","Healthcheck":{"Interval":"1s"}}"#,
    ] {
        let r = request(&d, "POST", "/containers/create", Body::Json(bad.into()));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(message(&r).contains("invalid JSON"), "{}", r.text());
    }

    let update = json!({"CpuShares": null, "Memory": null, "NanoCpus": null,
        "BlkioWeight": null, "CpuPeriod": null, "CpuQuota": null, "CpusetCpus": null,
        "CpusetMems": null, "MemoryReservation": null, "MemorySwap": null,
        "MemorySwappiness": null, "OomKillDisable": null, "PidsLimit": null,
        "KernelMemory": null, "RestartPolicy": null, "Devices": null, "Ulimits": null});
    let r = request(
        &d,
        "POST",
        "/containers/nulls/update",
        Body::Json(update.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let exec = json!({"AttachStdin": null, "AttachStdout": true, "AttachStderr": null,
        "ConsoleSize": null, "DetachKeys": null, "Tty": null, "Env": null,
        "Cmd": ["true"], "Privileged": null, "User": null, "WorkingDir": null});
    let r = request(
        &d,
        "POST",
        "/containers/nulls/exec",
        Body::Json(exec.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    let start = r#"{"Detach":true,"Tty":null,"ConsoleSize":null}"#;
    let r = request(
        &d,
        "POST",
        &format!("/exec/{id}/start"),
        Body::Json(start.into()),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let subnet = d.user_subnet(1);
    let net = json!({"Name": "nullnet", "CheckDuplicate": null, "Driver": null,
        "Scope": null, "Internal": null, "Attachable": null, "Ingress": null,
        "ConfigOnly": null, "ConfigFrom": null, "EnableIPv4": null, "EnableIPv6": null,
        "Options": null, "Labels": null,
        "IPAM": {"Driver": null, "Options": null, "Config": [{"Subnet": subnet,
            "IPRange": null, "Gateway": null, "AuxiliaryAddresses": null}]}});
    let r = request(&d, "POST", "/networks/create", Body::Json(net.to_string()));
    assert_eq!(r.status, 201, "{}", r.text());
    let connect = json!({"Container": "nulls", "EndpointConfig": {"IPAMConfig": null,
        "Links": null, "Aliases": null, "MacAddress": null, "DriverOpts": null}});
    let r = request(
        &d,
        "POST",
        "/networks/nullnet/connect",
        Body::Json(connect.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        &d,
        "POST",
        "/networks/nullnet/disconnect",
        Body::Json(r#"{"Container":"nulls","Force":null}"#.into()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(&d, "DELETE", "/networks/nullnet", Body::None);
    assert_eq!(r.status, 204, "{}", r.text());

    let vol = r#"{"Name":"nullvol","Driver":null,"DriverOpts":null,"Labels":null,"ClusterVolumeSpec":null}"#;
    let r = request(&d, "POST", "/volumes/create", Body::Json(vol.into()));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = request(&d, "DELETE", "/volumes/nullvol", Body::None);
    assert_eq!(r.status, 204, "{}", r.text());

    let commit = json!({"Hostname": null, "Env": null, "Cmd": null, "Labels": null,
        "Healthcheck": null, "ExposedPorts": null});
    let r = request(
        &d,
        "POST",
        "/commit?container=nulls&repo=nullimg&tag=v1",
        Body::Json(commit.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn swarm_routes_answer_as_a_node_outside_a_swarm() {
    let d = Daemon::start();
    let not_manager = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
    for (method, path) in [
        ("GET", "/swarm"),
        ("GET", "/v1.41/swarm"),
        ("POST", "/swarm/update?version=1"),
        ("GET", "/swarm/unlockkey"),
        ("POST", "/swarm/unlock"),
        ("GET", "/nodes"),
        ("GET", "/nodes/x"),
        ("DELETE", "/nodes/x"),
        ("GET", "/services"),
        ("POST", "/services/create"),
        ("GET", "/services/x/logs"),
        ("GET", "/tasks"),
        ("GET", "/tasks/x"),
        ("GET", "/secrets"),
        ("POST", "/secrets/create"),
        ("GET", "/configs"),
        ("DELETE", "/configs/x"),
    ] {
        let r = request(&d, method, path, Body::None);
        assert_eq!(r.status, 503, "{method} {path}: {}", r.text());
        assert_eq!(message(&r), not_manager, "{method} {path}");
    }
    let r = request(&d, "POST", "/v1.50/swarm/leave", Body::None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(message(&r), "This node is not part of a swarm");
    // A join without a token is refused before anything is tried (init is tests/swarm.rs').
    let r = request(&d, "POST", "/swarm/join", Body::Json("{}".into()));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(message(&r).contains("invalid join token"), "{}", r.text());
    let r = request(&d, "PUT", "/volumes/x", Body::Json("{}".into()));
    assert_eq!(r.status, 503, "{}", r.text());
    let info = request(&d, "GET", "/info", Body::None).json();
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive", "{info}");
    assert_eq!(info["Swarm"]["ControlAvailable"], false);
    assert_eq!(info["Swarm"]["NodeID"], "");
}

/// An unknown path, and a known one with the wrong method, are dockerd's 404 "page not found".
#[test]
fn unknown_pages_and_wrong_methods_are_not_found() {
    let d = Daemon::start();
    for (method, path) in [
        ("GET", "/nothing/here"),
        ("POST", "/containers/x/nothing"),
        ("PUT", "/containers/x/json"),
        ("DELETE", "/v1.41/images/json"),
        ("POST", "/exec/x/json"),
    ] {
        let r = request(&d, method, path, Body::None);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(
            message(&r).starts_with("page not found"),
            "{method} {path}: {}",
            r.text()
        );
    }
}

/// The swagger as JSON (python3-yaml reads the YAML).
fn swagger() -> Value {
    let candidates = [
        PathBuf::from("/work/shared/reference/engine-api-v1.50.yaml"),
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/engine-api-v1.50.yaml"
        )),
    ];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .expect("the Engine API swagger in ../shared/reference");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3 yaml: {}",
        common::stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("swagger JSON")
}

/// Resolve `$ref` chains to the schema they name.
fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        s = &root["definitions"][name];
        assert!(s.is_object(), "the swagger has no definition {r}");
    }
    s
}

/// Check `v` against the swagger schema `s`; differences go to `errs` with their JSON path.
fn check(root: &Value, s: &Value, v: &Value, at: &str, required: bool, errs: &mut Vec<String>) {
    let s = resolve(root, s);
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for part in all {
            check(root, part, v, at, required, errs);
        }
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or(
        if s.get("properties").is_some() || s.get("additionalProperties").is_some() {
            "object"
        } else {
            ""
        },
    );
    if v.is_null() {
        // Go marshals nil slices, maps and pointers as null; a pointer to a scalar (such as
        // `MemorySwappiness`) is an optional field.
        let nullable = s.get("x-nullable").and_then(Value::as_bool) == Some(true);
        if required && !(nullable || matches!(ty, "array" | "object" | "")) {
            errs.push(format!("{at}: null for a {ty}"));
        }
        return;
    }
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errs.push(format!("{at}: {v} is not a {ty}"));
        return;
    }
    if let Some(items) = s.get("items") {
        for (i, e) in v.as_array().into_iter().flatten().enumerate() {
            check(root, items, e, &format!("{at}[{i}]"), true, errs);
        }
    }
    let Some(obj) = v.as_object() else { return };
    let props = s.get("properties").and_then(Value::as_object);
    for req in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = req.as_str().unwrap_or_default();
        if !obj.contains_key(name) {
            errs.push(format!("{at}: required field {name} missing"));
        }
    }
    let required: BTreeSet<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (k, e) in obj {
        let req = required.contains(k.as_str());
        match props.and_then(|p| p.get(k)) {
            Some(ps) => check(root, ps, e, &format!("{at}.{k}"), req, errs),
            None => {
                if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    check(root, extra, e, &format!("{at}.{k}"), true, errs);
                }
            }
        }
    }
}

#[test]
fn the_schema_check_finds_missing_and_mistyped_fields() {
    let root = swagger();
    let schema = json!({"$ref": "#/definitions/IDResponse"});
    let mut errs = Vec::new();
    check(&root, &schema, &json!({"Id": "abc"}), "$", true, &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    check(&root, &schema, &json!({}), "$", true, &mut errs);
    check(&root, &schema, &json!({"Id": 5}), "$", true, &mut errs);
    check(&root, &schema, &json!({"Id": null}), "$", true, &mut errs);
    assert_eq!(errs.len(), 3, "{errs:?}");
    let mut errs = Vec::new();
    let summary = json!({"$ref": "#/definitions/ContainerSummary"});
    check(
        &root,
        &summary,
        &json!({"Ports": [{"PrivatePort": "80"}]}),
        "$",
        true,
        &mut errs,
    );
    assert!(errs.iter().any(|e| e.contains("PrivatePort")), "{errs:?}");
}

/// A request of the walk: the swagger path it exercises and the status berth must answer.
struct Call {
    method: &'static str,
    template: &'static str,
    path: String,
    body: Body,
    expect: u16,
}

fn call(method: &'static str, template: &'static str, path: &str, body: Body, expect: u16) -> Call {
    Call {
        method,
        template,
        path: path.to_string(),
        body,
        expect,
    }
}

/// Routes of the swagger that the walk does not call, and why.
const NOT_WALKED: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/containers/{id}/attach/ws",
        "websocket attach: not served by berth",
    ),
    (
        "POST",
        "/images/{name}/push",
        "pushes to a registry: tests/registry.rs",
    ),
    (
        "GET",
        "/images/search",
        "searches Docker Hub: no network here",
    ),
    ("POST", "/auth", "logs in to a registry: tests/registry.rs"),
    (
        "GET",
        "/distribution/{name}/json",
        "asks a registry: not served by berth",
    ),
    (
        "POST",
        "/session",
        "BuildKit sessions: not served by berth (classic builder only)",
    ),
    (
        "POST",
        "/swarm/init",
        "makes the node a swarm manager listening on the swarm port: tests/swarm.rs",
    ),
    ("GET", "/plugins", "plugins: berth has no plugin system"),
    (
        "GET",
        "/plugins/privileges",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/pull",
        "plugins: berth has no plugin system",
    ),
    (
        "GET",
        "/plugins/{name}/json",
        "plugins: berth has no plugin system",
    ),
    (
        "DELETE",
        "/plugins/{name}",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/{name}/enable",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/{name}/disable",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/{name}/upgrade",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/create",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/{name}/push",
        "plugins: berth has no plugin system",
    ),
    (
        "POST",
        "/plugins/{name}/set",
        "plugins: berth has no plugin system",
    ),
];

/// The swarm routes: on a node outside a swarm each answers 503 (also checked above), but
/// `/swarm/join`, which wants a join token first (400).
const SWARM: &[(&str, &str)] = &[
    ("GET", "/nodes"),
    ("GET", "/nodes/{id}"),
    ("DELETE", "/nodes/{id}"),
    ("POST", "/nodes/{id}/update"),
    ("GET", "/swarm"),
    ("POST", "/swarm/join"),
    ("POST", "/swarm/leave"),
    ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/unlock"),
    ("GET", "/services"),
    ("POST", "/services/create"),
    ("GET", "/services/{id}"),
    ("DELETE", "/services/{id}"),
    ("POST", "/services/{id}/update"),
    ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("GET", "/secrets/{id}"),
    ("DELETE", "/secrets/{id}"),
    ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"),
    ("POST", "/configs/create"),
    ("GET", "/configs/{id}"),
    ("DELETE", "/configs/{id}"),
    ("POST", "/configs/{id}/update"),
    ("PUT", "/volumes/{name}"),
];

/// Every request of the walk, in an order where each finds the objects it needs. The API
/// version in the path alternates between the oldest and newest berth serves.
fn walk_calls(d: &Daemon) -> Vec<Call> {
    let j = |s: &str| Body::Json(s.to_string());
    let ctx = tar_of(&[("Dockerfile", b"FROM busybox\nLABEL conformance=1\n")]);
    let put = tar_of(&[("hello.txt", b"hello\n")]);
    let subnet = d.user_subnet(2);
    let mut calls = vec![
        call("GET", "/_ping", "/_ping", Body::None, 200),
        call("HEAD", "/_ping", "/_ping", Body::None, 200),
        call("GET", "/version", "/version", Body::None, 200),
        call("GET", "/info", "/info", Body::None, 200),
        call("GET", "/images/json", "/images/json", Body::None, 200),
        call(
            "GET",
            "/images/{name}/json",
            "/images/busybox/json",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/images/{name}/history",
            "/images/busybox/history",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/images/{name}/tag",
            "/images/busybox/tag?repo=conf&tag=t1",
            Body::None,
            201,
        ),
        call(
            "GET",
            "/images/{name}/get",
            "/images/conf:t1/get",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/images/get",
            "/images/get?names=conf:t1",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/containers/create",
            "/containers/create?name=walk",
            j(
                r#"{"Image":"busybox","Cmd":["sleep","300"],"Labels":{"k":"v"},"Tty":true,"OpenStdin":true}"#,
            ),
            201,
        ),
        call(
            "POST",
            "/containers/{id}/start",
            "/containers/walk/start",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/start",
            "/containers/walk/start",
            Body::None,
            304,
        ),
        call(
            "GET",
            "/containers/json",
            "/containers/json?all=1",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/containers/{id}/json",
            "/containers/walk/json?size=1",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/containers/{id}/json",
            "/containers/nosuch/json",
            Body::None,
            404,
        ),
        call(
            "GET",
            "/containers/{id}/top",
            "/containers/walk/top",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/containers/{id}/logs",
            "/containers/walk/logs?stdout=1&stderr=1",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/containers/{id}/changes",
            "/containers/walk/changes",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/containers/{id}/stats",
            "/containers/walk/stats?stream=false",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/containers/{id}/update",
            "/containers/walk/update",
            j(r#"{"CpuShares":512}"#),
            200,
        ),
        call(
            "POST",
            "/containers/{id}/rename",
            "/containers/walk/rename?name=walk2",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/resize",
            "/containers/walk2/resize?h=20&w=80",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/containers/{id}/pause",
            "/containers/walk2/pause",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/unpause",
            "/containers/walk2/unpause",
            Body::None,
            204,
        ),
        call(
            "HEAD",
            "/containers/{id}/archive",
            "/containers/walk2/archive?path=/etc/hostname",
            Body::None,
            200,
        ),
        call(
            "GET",
            "/containers/{id}/archive",
            "/containers/walk2/archive?path=/etc/hostname",
            Body::None,
            200,
        ),
        call(
            "PUT",
            "/containers/{id}/archive",
            "/containers/walk2/archive?path=/tmp",
            Body::Tar(put),
            200,
        ),
        call(
            "GET",
            "/containers/{id}/export",
            "/containers/walk2/export",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/containers/{id}/exec",
            "/containers/walk2/exec",
            j(r#"{"Cmd":["sleep","30"],"Tty":true}"#),
            201,
        ),
        call(
            "POST",
            "/commit",
            "/commit?container=walk2&repo=conf&tag=c1",
            j("{}"),
            201,
        ),
        call(
            "POST",
            "/networks/create",
            "/networks/create",
            j(&json!({"Name": "confnet", "IPAM": {"Config": [{"Subnet": subnet}]}}).to_string()),
            201,
        ),
        call("GET", "/networks", "/networks", Body::None, 200),
        call(
            "GET",
            "/networks/{id}",
            "/networks/confnet",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/networks/{id}/connect",
            "/networks/confnet/connect",
            j(r#"{"Container":"walk2"}"#),
            200,
        ),
        call(
            "POST",
            "/networks/{id}/disconnect",
            "/networks/confnet/disconnect",
            j(r#"{"Container":"walk2"}"#),
            200,
        ),
        call(
            "DELETE",
            "/networks/{id}",
            "/networks/confnet",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/networks/prune",
            "/networks/prune",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/volumes/create",
            "/volumes/create",
            j(r#"{"Name":"confvol","Labels":{"a":"b"}}"#),
            201,
        ),
        call("GET", "/volumes", "/volumes", Body::None, 200),
        call(
            "GET",
            "/volumes/{name}",
            "/volumes/confvol",
            Body::None,
            200,
        ),
        call(
            "DELETE",
            "/volumes/{name}",
            "/volumes/confvol",
            Body::None,
            204,
        ),
        call("POST", "/volumes/prune", "/volumes/prune", Body::None, 200),
        call("POST", "/build", "/build?t=conf:b1", Body::Tar(ctx), 200),
        call(
            "POST",
            "/images/load",
            "/images/load?quiet=1",
            Body::None,
            200,
        ),
        // An import (`fromSrc=-`); pulls are in tests/registry.rs.
        call(
            "POST",
            "/images/create",
            "/images/create?fromSrc=-&repo=conf&tag=imp",
            Body::Tar(tar_of(&[("imported.txt", b"imported\n")])),
            200,
        ),
        // The logs of a stopped stream: the answer ends by itself (hijacked attaches are in
        // tests/tty.rs and the docker CLI tests).
        call(
            "POST",
            "/containers/{id}/attach",
            "/containers/walk2/attach?logs=1&stream=0&stdout=1",
            Body::None,
            200,
        ),
        call("GET", "/system/df", "/system/df", Body::None, 200),
        call(
            "POST",
            "/containers/{id}/restart",
            "/containers/walk2/restart?t=0",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/kill",
            "/containers/walk2/kill",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/wait",
            "/containers/walk2/wait",
            Body::None,
            200,
        ),
        call(
            "POST",
            "/containers/{id}/start",
            "/containers/walk2/start",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/stop",
            "/containers/walk2/stop?t=0",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/{id}/stop",
            "/containers/walk2/stop",
            Body::None,
            304,
        ),
        call(
            "DELETE",
            "/containers/{id}",
            "/containers/walk2?v=1",
            Body::None,
            204,
        ),
        call(
            "POST",
            "/containers/prune",
            "/containers/prune",
            Body::None,
            200,
        ),
        call(
            "DELETE",
            "/images/{name}",
            "/images/conf:t1",
            Body::None,
            200,
        ),
        call("POST", "/images/prune", "/images/prune", Body::None, 200),
        call("POST", "/build/prune", "/build/prune", Body::None, 200),
        // `until` is set when it is sent: every event of the walk so far.
        call("GET", "/events", "/events?since=0", Body::None, 200),
    ];
    for (method, template) in SWARM {
        let path = template.replace("{id}", "x").replace("{name}", "x");
        let want = if *template == "/swarm/join" { 400 } else { 503 };
        calls.push(call(method, template, &path, j("{}"), want));
    }
    calls
}

#[test]
fn every_swagger_route_berth_serves_answers_by_its_schema() {
    let root = swagger();
    let d = Daemon::start();
    let mut calls = walk_calls(&d);
    let mut errs = Vec::new();
    let mut walked = BTreeSet::new();
    let mut i = 0;
    while i < calls.len() {
        // The exec of the walk is started, resized and inspected once it exists.
        let c = &mut calls[i];
        let version = if i % 2 == 0 { "/v1.41" } else { "/v1.50" };
        let body = std::mem::replace(&mut c.body, Body::None);
        let body = match (c.template, body) {
            // Load what `GET /images/get` saved.
            ("/images/load", _) => {
                let saved = request(&d, "GET", "/images/get?names=conf:t1", Body::None);
                Body::Tar(saved.body)
            }
            (_, b) => b,
        };
        if c.template == "/events" {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_secs());
            c.path = format!("{}&until={now}", c.path);
        }
        let r = request(&d, c.method, &format!("{version}{}", c.path), body);
        walked.insert((c.method.to_string(), c.template.to_string()));
        let op = &root["paths"][c.template][c.method.to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} is not in the swagger",
            c.method,
            c.template
        );
        let what = format!("{} {}{}", c.method, version, c.path);
        // dockerd's headers on every answer.
        for h in ["api-version", "docker-experimental", "ostype", "server"] {
            if !r.headers.contains(h) {
                errs.push(format!("{what}: no {h} header"));
            }
        }
        if r.status != c.expect {
            errs.push(format!(
                "{what}: status {} (want {}): {}",
                r.status,
                c.expect,
                r.text()
            ));
        }
        let responses = &op["responses"];
        let listed = responses
            .get(r.status.to_string())
            .or_else(|| responses.get("default"));
        match listed {
            None => errs.push(format!("{what}: status {} is not in the swagger", r.status)),
            Some(resp) => check_body(&root, resp, &r, &what, &mut errs),
        }
        if c.template == "/containers/{id}/exec" && r.status == 201 {
            let id = r.json()["Id"].as_str().unwrap_or_default().to_string();
            let extra = [
                call(
                    "POST",
                    "/exec/{id}/start",
                    &format!("/exec/{id}/start"),
                    Body::Json(r#"{"Detach":true}"#.into()),
                    200,
                ),
                call(
                    "GET",
                    "/exec/{id}/json",
                    &format!("/exec/{id}/json"),
                    Body::None,
                    200,
                ),
                call(
                    "POST",
                    "/exec/{id}/resize",
                    &format!("/exec/{id}/resize?h=10&w=10"),
                    Body::None,
                    200,
                ),
            ];
            calls.splice(i + 1..i + 1, extra);
        }
        i += 1;
    }
    // Each route on an object that does not exist: a 4xx the swagger lists, with a message.
    let mut seen = BTreeSet::new();
    for c in calls
        .iter()
        .filter(|c| c.expect != 503 && c.method != "HEAD")
    {
        if !c.template.contains('{') || !seen.insert((c.method, c.template)) {
            continue;
        }
        let mut path = c
            .template
            .replace("{id}", "nosuch0")
            .replace("{name}", "nosuch0");
        if let Some((_, q)) = c.path.split_once('?') {
            path = format!("{path}?{q}");
        }
        let r = request(&d, c.method, &path, Body::None);
        let what = format!("{} {path}", c.method);
        let responses = &root["paths"][c.template][c.method.to_lowercase()]["responses"];
        // dockerd answers 404 for a missing object also where the swagger omits it
        // (`GET /images/{name}/get`).
        let not_found = json!({"schema": {"$ref": "#/definitions/ErrorResponse"}});
        let listed = responses
            .get(r.status.to_string())
            .or(Some(&not_found).filter(|_| r.status == 404));
        match listed {
            Some(resp) if (400..500).contains(&r.status) => {
                check_body(&root, resp, &r, &what, &mut errs)
            }
            _ => errs.push(format!("{what}: status {}: {}", r.status, r.text())),
        }
    }
    // Every operation of the swagger is walked, or listed with why it is not.
    let skipped: BTreeSet<(String, String)> = NOT_WALKED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    for (path, ops) in root["paths"].as_object().expect("swagger paths") {
        for method in ops.as_object().into_iter().flatten().map(|(m, _)| m) {
            if method == "parameters" {
                continue;
            }
            let key = (method.to_uppercase(), path.clone());
            if !walked.contains(&key) && !skipped.contains(&key) {
                errs.push(format!(
                    "{} {path}: neither walked nor listed as skipped",
                    key.0
                ));
            }
        }
    }
    for (m, p, why) in NOT_WALKED {
        eprintln!("not walked: {m} {p}: {why}");
    }
    assert!(
        errs.is_empty(),
        "{} differences:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

/// Check a reply's body against the swagger response it got: JSON bodies (one document or
/// a stream of them) by the schema, error bodies as Docker's `{"message": ...}`.
fn check_body(root: &Value, resp: &Value, r: &Reply, what: &str, errs: &mut Vec<String>) {
    let Some(schema) = resp.get("schema") else {
        return;
    };
    if r.status >= 400 {
        let ok = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .is_some();
        if !ok {
            errs.push(format!(
                "{what}: error body is not {{\"message\": ...}}: {}",
                r.text()
            ));
        }
        return;
    }
    let schema = resolve(root, schema);
    if schema.get("type").and_then(Value::as_str) == Some("string") || r.body.is_empty() {
        return;
    }
    if !r.content_type.starts_with("application/json") {
        errs.push(format!(
            "{what}: content type {:?} for a JSON schema",
            r.content_type
        ));
        return;
    }
    let docs: Vec<Value> = match serde_json::from_slice::<Value>(&r.body) {
        Ok(v) => vec![v],
        Err(_) => serde_json::Deserializer::from_slice(&r.body)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| {
                errs.push(format!("{what}: body is not JSON ({e}): {}", r.text()));
                Vec::new()
            }),
    };
    for doc in docs {
        let mut found = Vec::new();
        check(root, schema, &doc, "$", true, &mut found);
        errs.extend(found.into_iter().map(|e| format!("{what}: {e}")));
    }
}
