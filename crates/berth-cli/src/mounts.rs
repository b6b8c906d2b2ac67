//! Client-side parsing of `-v` and `--mount` as the docker CLI does it: `-v` entries with a
//! source are binds and the rest anonymous volumes; `--mount` CSV becomes `HostConfig.Mounts`.

use serde_json::{json, Map, Value};

/// Split `-v` values into `HostConfig.Binds` and `Config.Volumes`. A relative host path that
/// starts with `.` is made absolute, as docker does.
pub fn split_volumes(specs: &[String]) -> (Vec<String>, Map<String, Value>) {
    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for spec in specs {
        match spec.split_once(':') {
            Some((src, rest)) => {
                let src = if src.starts_with('.') {
                    std::path::absolute(src)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| src.to_string())
                } else {
                    src.to_string()
                };
                binds.push(format!("{src}:{rest}"));
            }
            None => {
                volumes.insert(spec.clone(), json!({}));
            }
        }
    }
    (binds, volumes)
}

/// One CSV record (fields may be double-quoted, `""` inside quotes is a quote).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err(format!(
            "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
            s.len()
        ));
    }
    out.push(cur);
    Ok(out)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

fn set_on_map(map: &mut Value, kv: &str) {
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    if !map.is_object() {
        *map = json!({});
    }
    map[k] = json!(v);
}

/// Parse one `--mount` value into an Engine API `Mount`, with the docker CLI's messages.
pub fn parse_mount(value: &str) -> Result<Value, String> {
    let mut kind = "volume".to_string();
    let (mut source, mut target) = (String::new(), String::new());
    let mut read_only = false;
    let mut consistency = String::new();
    let mut volume: Option<Value> = None;
    let mut bind: Option<Value> = None;
    let mut tmpfs: Option<Value> = None;
    for field in csv_fields(value)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => read_only = true,
                    "volume-nocopy" => {
                        volume.get_or_insert_with(|| json!({}))["NoCopy"] = json!(true)
                    }
                    "bind-nonrecursive" => {
                        return Err(
                            "bind-nonrecursive is deprecated, use bind-recursive=disabled instead"
                                .into(),
                        )
                    }
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
                continue;
            }
        };
        match key.as_str() {
            "type" => kind = val.to_ascii_lowercase(),
            "source" | "src" => {
                source = if val == "." || val.starts_with("./") {
                    std::path::absolute(&val)
                        .map(|p| p.display().to_string())
                        .unwrap_or(val)
                } else {
                    val
                }
            }
            "target" | "dst" | "destination" => target = val,
            "readonly" | "ro" => read_only = parse_bool(&key, &val)?,
            "consistency" => consistency = val.to_ascii_lowercase(),
            "bind-propagation" => {
                bind.get_or_insert_with(|| json!({}))["Propagation"] =
                    json!(val.to_ascii_lowercase())
            }
            "bind-recursive" => {
                let b = bind.get_or_insert_with(|| json!({}));
                match val.as_str() {
                    "enabled" => {}
                    "disabled" => b["NonRecursive"] = json!(true),
                    _ => {
                        return Err(format!(
                            "invalid value for {key}: {val} (must be \"enabled\" or \"disabled\")"
                        ))
                    }
                }
            }
            "bind-create-src" => {
                bind.get_or_insert_with(|| json!({}))["CreateMountpoint"] =
                    json!(parse_bool(&key, &val)?)
            }
            "volume-subpath" => volume.get_or_insert_with(|| json!({}))["Subpath"] = json!(val),
            "volume-nocopy" => {
                volume.get_or_insert_with(|| json!({}))["NoCopy"] =
                    json!(parse_bool("volume-nocopy", &val)?)
            }
            "volume-label" => {
                set_on_map(&mut volume.get_or_insert_with(|| json!({}))["Labels"], &val)
            }
            "volume-driver" => {
                volume.get_or_insert_with(|| json!({}))["DriverConfig"]["Name"] = json!(val)
            }
            "volume-opt" => {
                let v = volume.get_or_insert_with(|| json!({}));
                if !v["DriverConfig"].is_object() {
                    v["DriverConfig"] = json!({});
                }
                set_on_map(&mut v["DriverConfig"]["Options"], &val)
            }
            "tmpfs-size" => {
                let n = berth_api::units::ram_in_bytes(&val)
                    .map_err(|_| format!("invalid value for {key}: {val}"))?;
                tmpfs.get_or_insert_with(|| json!({}))["SizeBytes"] = json!(n)
            }
            "tmpfs-mode" => {
                let n = u32::from_str_radix(&val, 8)
                    .map_err(|_| format!("invalid value for {key}: {val}"))?;
                tmpfs.get_or_insert_with(|| json!({}))["Mode"] = json!(n)
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if kind.is_empty() {
        return Err("type is required".into());
    }
    if target.is_empty() {
        return Err("target is required".into());
    }
    for (opts, prefix, wanted) in [
        (&volume, "volume", "volume"),
        (&bind, "bind", "bind"),
        (&tmpfs, "tmpfs", "tmpfs"),
    ] {
        if opts.is_some() && kind != wanted {
            return Err(format!(
                "cannot mix '{prefix}-*' options with mount type '{kind}'"
            ));
        }
    }
    let mut m = json!({"Type": kind, "Source": source, "Target": target, "ReadOnly": read_only});
    if !consistency.is_empty() {
        m["Consistency"] = json!(consistency);
    }
    for (k, v) in [
        ("VolumeOptions", volume),
        ("BindOptions", bind),
        ("TmpfsOptions", tmpfs),
    ] {
        if let Some(v) = v {
            m[k] = v;
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_csv() {
        let m = parse_mount(
            "type=volume,src=data,dst=/srv,readonly,volume-opt=o=size=1m,volume-nocopy",
        )
        .unwrap();
        assert_eq!(m["Source"], "data");
        assert_eq!(m["Target"], "/srv");
        assert_eq!(m["ReadOnly"], true);
        assert_eq!(m["VolumeOptions"]["NoCopy"], true);
        assert_eq!(
            m["VolumeOptions"]["DriverConfig"]["Options"]["o"],
            "size=1m"
        );
        let t = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777").unwrap();
        assert_eq!(t["TmpfsOptions"]["SizeBytes"], 1048576);
        assert_eq!(t["TmpfsOptions"]["Mode"], 0o1777);
        assert_eq!(
            parse_mount("type=bind,src=/x").unwrap_err(),
            "target is required"
        );
        assert_eq!(
            parse_mount("type=bind,src=/x,dst=/y,volume-nocopy").unwrap_err(),
            "cannot mix 'volume-*' options with mount type 'bind'"
        );
        assert_eq!(
            parse_mount("type=bind,bogus=1,dst=/y").unwrap_err(),
            "unexpected key 'bogus' in 'bogus=1'"
        );
        assert_eq!(
            parse_mount("type=bind,dst=/y,junk").unwrap_err(),
            "invalid field 'junk' must be a key=value pair"
        );
        assert_eq!(
            csv_fields("a=\"x,y\",b").unwrap(),
            vec!["a=x,y".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn volumes_split() {
        let (b, v) = split_volumes(&["/data".into(), "name:/x:ro".into(), "/h:/c".into()]);
        assert_eq!(b, vec!["name:/x:ro", "/h:/c"]);
        assert!(v.contains_key("/data"));
    }
}
