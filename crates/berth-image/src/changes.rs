//! `--change` instructions (`docker import`/`docker commit`): CMD, ENTRYPOINT, ENV, EXPOSE,
//! HEALTHCHECK, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL and ONBUILD applied to an image config.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// Applies Dockerfile-style `--change` lines to `config`. ONBUILD triggers are validated but
/// `oci_spec`'s `Config` has no field for them; configs the store writes itself keep them.
pub fn apply_changes(config: &mut oci_spec::image::Config, changes: &[String]) -> Result<()> {
    let mut v = serde_json::to_value(&*config)
        .map_err(|e| Error::InvalidInput(format!("config does not serialize: {e}")))?;
    let Some(map) = v.as_object_mut() else {
        return Err(Error::InvalidInput(
            "config is not a JSON object".to_string(),
        ));
    };
    apply_changes_json(map, changes)?;
    map.remove("OnBuild");
    *config = serde_json::from_value(v)
        .map_err(|e| Error::InvalidInput(format!("config after changes is invalid: {e}")))?;
    Ok(())
}

/// Applies `--change` lines to a Docker/OCI config object (`Cmd`, `Env`, ... keys).
pub(crate) fn apply_changes_json(
    config: &mut Map<String, Value>,
    changes: &[String],
) -> Result<()> {
    let mut cmd_set = false;
    for line in changes {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        let instr = word.to_ascii_uppercase();
        match instr.as_str() {
            "CMD" => {
                config.insert("Cmd".into(), strings(&exec_or_shell(&instr, rest)?));
                cmd_set = true;
            }
            "ENTRYPOINT" => {
                config.insert("Entrypoint".into(), strings(&exec_or_shell(&instr, rest)?));
                if !cmd_set {
                    // As in a Dockerfile: a new ENTRYPOINT drops the inherited CMD.
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            "ENV" => {
                for (k, v) in name_values(&instr, rest)? {
                    set_env(config, &k, &v);
                }
            }
            "LABEL" => {
                let pairs = name_values(&instr, rest)?;
                extend_object(
                    config,
                    "Labels",
                    pairs.into_iter().map(|(k, v)| (k, Value::String(v))),
                );
            }
            "EXPOSE" => {
                let words = split_words(rest)?;
                if words.is_empty() {
                    return Err(need_arg(&instr));
                }
                let mut ports = Vec::new();
                for w in &words {
                    ports.extend(expand_port(w)?);
                }
                extend_object(
                    config,
                    "ExposedPorts",
                    ports.into_iter().map(|p| (p, Value::Object(Map::new()))),
                );
            }
            "USER" => {
                let words = split_words(rest)?;
                if words.len() != 1 {
                    return Err(Error::InvalidInput(
                        "dockerfile: USER requires exactly one argument".to_string(),
                    ));
                }
                config.insert("User".into(), Value::String(words[0].clone()));
            }
            "VOLUME" => {
                let vols = match json_array(rest) {
                    Some(v) => v,
                    None => split_words(rest)?,
                };
                if vols.is_empty() || vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(Error::InvalidInput(
                        "dockerfile: VOLUME specified can not be an empty string".to_string(),
                    ));
                }
                extend_object(
                    config,
                    "Volumes",
                    vols.into_iter().map(|v| (v, Value::Object(Map::new()))),
                );
            }
            "WORKDIR" => {
                let words = split_words(rest)?;
                if words.len() != 1 {
                    return Err(Error::InvalidInput(
                        "dockerfile: WORKDIR requires exactly one argument".to_string(),
                    ));
                }
                let current = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("/")
                    .to_string();
                let joined = if words[0].starts_with('/') {
                    words[0].clone()
                } else {
                    format!("{current}/{}", words[0])
                };
                config.insert("WorkingDir".into(), Value::String(clean_abs(&joined)));
            }
            "STOPSIGNAL" => {
                let words = split_words(rest)?;
                if words.len() != 1 || !valid_signal(&words[0]) {
                    return Err(Error::InvalidInput(format!(
                        "dockerfile: invalid STOPSIGNAL {rest:?}"
                    )));
                }
                config.insert("StopSignal".into(), Value::String(words[0].clone()));
            }
            "ONBUILD" => {
                let trigger = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                match trigger.as_str() {
                    "" => return Err(need_arg(&instr)),
                    "ONBUILD" => {
                        return Err(Error::InvalidInput(
                            "dockerfile: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
                                .to_string(),
                        ))
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(Error::InvalidInput(format!(
                            "dockerfile: {trigger} isn't allowed as an ONBUILD trigger"
                        )))
                    }
                    _ => {}
                }
                let list = config
                    .entry("OnBuild")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                if let Value::Array(a) = list {
                    a.push(Value::String(rest.to_string()));
                }
            }
            "HEALTHCHECK" => {
                config.insert("Healthcheck".into(), healthcheck(rest)?);
            }
            "ADD" | "ARG" | "COPY" | "FROM" | "MAINTAINER" | "RUN" | "SHELL" => {
                return Err(Error::InvalidInput(format!(
                    "dockerfile: {instr} is not a valid change command"
                )))
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "dockerfile: unknown instruction: {word}"
                )))
            }
        }
    }
    Ok(())
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
/// [--retries=N] CMD command` (exec or shell form) or `HEALTHCHECK NONE`, as Docker's
/// `config.Healthcheck` (durations in nanoseconds, 0 = the default).
fn healthcheck(rest: &str) -> Result<Value> {
    let bad = |m: String| Error::InvalidInput(format!("dockerfile: {m}"));
    let mut rest = rest.trim_start();
    let mut opts = Map::new();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = match flag[..end].split_once('=') {
            Some((n, v)) => (n, v),
            None => (&flag[..end], ""),
        };
        rest = flag[end..].trim_start();
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| bad(format!("invalid value for --retries: {value:?}")))?;
                if n < 0 {
                    return Err(bad(format!("--retries cannot be negative ({n})")));
                }
                opts.insert("Retries".into(), Value::from(n));
                continue;
            }
            other => return Err(bad(format!("Unknown flag: {other}"))),
        };
        if value.is_empty() {
            continue;
        }
        let nanos = berth_api::duration::parse(value).map_err(bad)?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(bad(format!("Interval \"{name}\" cannot be less than 1ms")));
        }
        opts.insert(key.into(), Value::from(nanos));
    }
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let kind = rest[..end].to_ascii_uppercase();
    let args = rest[end..].trim();
    match kind.as_str() {
        "" => Err(need_arg("HEALTHCHECK")),
        "NONE" => {
            if !args.is_empty() || !opts.is_empty() {
                return Err(bad("HEALTHCHECK NONE takes no arguments".into()));
            }
            Ok(serde_json::json!({"Test": ["NONE"]}))
        }
        "CMD" => {
            let test = match json_array(args) {
                Some(v) if !v.is_empty() => std::iter::once("CMD".to_string()).chain(v).collect(),
                Some(_) => Vec::new(),
                None if args.is_empty() => Vec::new(),
                None => vec!["CMD-SHELL".to_string(), args.to_string()],
            };
            if test.is_empty() {
                return Err(bad("Missing command after HEALTHCHECK CMD".into()));
            }
            opts.insert("Test".into(), strings(&test));
            Ok(Value::Object(opts))
        }
        other => Err(bad(format!(
            "Unknown type \"{other}\" in HEALTHCHECK (try CMD)"
        ))),
    }
}

fn need_arg(instr: &str) -> Error {
    Error::InvalidInput(format!(
        "dockerfile: {instr} requires at least one argument"
    ))
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// Adds entries to the object at `key` (replacing a non-object value).
fn extend_object(
    config: &mut Map<String, Value>,
    key: &str,
    items: impl IntoIterator<Item = (String, Value)>,
) {
    let mut m = match config.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.extend(items);
    config.insert(key.to_string(), Value::Object(m));
}

fn set_env(config: &mut Map<String, Value>, key: &str, value: &str) {
    let v = config
        .entry("Env")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    if let Value::Array(list) = v {
        let entry = Value::String(format!("{key}={value}"));
        let prefix = format!("{key}=");
        match list.iter_mut().find(|e| {
            e.as_str()
                .is_some_and(|s| s.starts_with(&prefix) || s == key)
        }) {
            Some(slot) => *slot = entry,
            None => list.push(entry),
        }
    }
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    if rest.starts_with('[') {
        serde_json::from_str::<Vec<String>>(rest).ok()
    } else {
        None
    }
}

/// JSON (exec) form, or shell form wrapped in `/bin/sh -c`.
fn exec_or_shell(instr: &str, rest: &str) -> Result<Vec<String>> {
    if let Some(v) = json_array(rest) {
        return Ok(v);
    }
    if rest.is_empty() {
        return Err(need_arg(instr));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

/// Splits on whitespace, honouring '...' and "..." quoting and backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => {
                            return Err(Error::InvalidInput(format!(
                                "dockerfile: unmatched single quote in {s:?}"
                            )))
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => {
                                return Err(Error::InvalidInput(format!(
                                    "dockerfile: unmatched double quote in {s:?}"
                                )))
                            }
                        },
                        Some(x) => cur.push(x),
                        None => {
                            return Err(Error::InvalidInput(format!(
                                "dockerfile: unmatched double quote in {s:?}"
                            )))
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `k=v k2="v 2"` pairs, or the legacy `key value with spaces` form.
fn name_values(instr: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let words = split_words(rest)?;
    let Some(first) = words.first() else {
        return Err(need_arg(instr));
    };
    if !first.contains('=') {
        let value = rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..].trim();
        if value.is_empty() {
            return Err(Error::InvalidInput(format!(
                "dockerfile: {instr} must have two arguments"
            )));
        }
        let value = split_words(value)?.join(" ");
        return Ok(vec![(first.clone(), value)]);
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "dockerfile: {instr} names can not be blank and must be name=value: {w:?}"
                )))
            }
        }
    }
    Ok(out)
}

fn expand_port(spec: &str) -> Result<Vec<String>> {
    let bad = || Error::InvalidInput(format!("dockerfile: invalid containerPort: {spec}"));
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(Error::InvalidInput(format!(
            "dockerfile: invalid proto: {proto}"
        )));
    }
    let parse = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a).ok_or_else(bad)?, parse(b).ok_or_else(bad)?),
        None => {
            let p = parse(ports).ok_or_else(bad)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-')
}

/// Lexically cleans an absolute path (`/a/./b/../c` -> `/a/c`).
fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(changes: &[&str]) -> Result<Value> {
        let mut m = Map::new();
        m.insert("Cmd".into(), json!(["sh"]));
        let owned: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes_json(&mut m, &owned)?;
        Ok(Value::Object(m))
    }

    #[test]
    fn healthcheck() {
        let v = apply(&["HEALTHCHECK --interval=1s --retries=2 CMD true"]).unwrap();
        assert_eq!(
            v["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000i64, "Retries": 2})
        );
        let v = apply(&["HEALTHCHECK CMD [\"/bin/check\", \"-q\"]"]).unwrap();
        assert_eq!(
            v["Healthcheck"],
            json!({"Test": ["CMD", "/bin/check", "-q"]})
        );
        let v = apply(&["healthcheck none"]).unwrap();
        assert_eq!(v["Healthcheck"], json!({"Test": ["NONE"]}));
        assert!(apply(&["HEALTHCHECK"]).is_err());
        assert!(apply(&["HEALTHCHECK CMD"]).is_err());
        assert!(apply(&["HEALTHCHECK --interval=1q CMD true"]).is_err());
        assert!(apply(&["HEALTHCHECK --interval=10us CMD true"]).is_err());
        assert!(apply(&["HEALTHCHECK --bogus=1 CMD true"]).is_err());
        assert!(apply(&["HEALTHCHECK RUN true"]).is_err());
        assert!(apply(&["HEALTHCHECK NONE x"]).is_err());
    }

    #[test]
    fn cmd_and_entrypoint() {
        let v = apply(&["CMD [\"echo\", \"hi\"]"]).unwrap();
        assert_eq!(v["Cmd"], json!(["echo", "hi"]));
        let v = apply(&["cmd echo hi"]).unwrap();
        assert_eq!(v["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        let v = apply(&["ENTRYPOINT [\"/bin/app\"]"]).unwrap();
        assert_eq!(v["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(v["Cmd"], Value::Null);
        let v = apply(&["CMD [\"x\"]", "ENTRYPOINT top -b"]).unwrap();
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(v["Cmd"], json!(["x"]));
        // Not valid JSON: shell form, like Docker.
        let v = apply(&["CMD [oops"]).unwrap();
        assert_eq!(v["Cmd"], json!(["/bin/sh", "-c", "[oops"]));
        assert!(apply(&["CMD"]).is_err());
    }

    #[test]
    fn env_label_expose_volume() {
        let v = apply(&[
            "ENV A=1 B=\"two words\"",
            "ENV A=3",
            "ENV LEGACY some value",
            "LABEL com.example=x \"quoted key\"='y z'",
            "EXPOSE 80 53/udp 8000-8001",
            "VOLUME [\"/data\", \"/logs\"]",
            "VOLUME /cache",
        ])
        .unwrap();
        assert_eq!(v["Env"], json!(["A=3", "B=two words", "LEGACY=some value"]));
        assert_eq!(
            v["Labels"],
            json!({"com.example": "x", "quoted key": "y z"})
        );
        let ports: Vec<&String> = v["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        let vols: Vec<&String> = v["Volumes"].as_object().unwrap().keys().collect();
        assert_eq!(vols, ["/cache", "/data", "/logs"]);
        assert!(apply(&["EXPOSE 0"]).is_err());
        assert!(apply(&["EXPOSE 80/foo"]).is_err());
        assert!(apply(&["ENV =x"]).is_err());
    }

    #[test]
    fn user_workdir_stopsignal_onbuild() {
        let v = apply(&[
            "USER nobody",
            "WORKDIR /app",
            "WORKDIR sub/../src",
            "STOPSIGNAL SIGTERM",
            "ONBUILD RUN echo hi",
        ])
        .unwrap();
        assert_eq!(v["User"], "nobody");
        assert_eq!(v["WorkingDir"], "/app/src");
        assert_eq!(v["StopSignal"], "SIGTERM");
        assert_eq!(v["OnBuild"], json!(["RUN echo hi"]));
        assert!(apply(&["ONBUILD ONBUILD RUN x"]).is_err());
        assert!(apply(&["STOPSIGNAL sig term"]).is_err());
    }

    #[test]
    fn unknown_and_invalid_instructions() {
        let e = apply(&["FOO bar"]).unwrap_err().to_string();
        assert_eq!(e, "dockerfile: unknown instruction: FOO");
        let e = apply(&["RUN ls"]).unwrap_err().to_string();
        assert!(e.contains("RUN is not a valid change command"), "{e}");
        assert!(matches!(apply(&["nope"]), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn oci_config_round_trip() {
        let mut c = oci_spec::image::Config::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"/bin/sh\"]".to_string(),
                "ENV X=1".to_string(),
                "EXPOSE 80".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd().as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert_eq!(c.env().as_deref(), Some(&["X=1".to_string()][..]));
        assert_eq!(
            c.exposed_ports().as_deref(),
            Some(&["80/tcp".to_string()][..])
        );
    }
}
