//! Typed instructions from parsed nodes, expanding variables where Docker does (ADD, ARG,
//! COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR; not RUN, CMD,
//! ENTRYPOINT, SHELL, HEALTHCHECK, whose shell does it).

use crate::expand::{self, Lookup};
use crate::parser::{Heredoc, Node};
use crate::{Error, Result};

/// A command in exec form (JSON array) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// A HEALTHCHECK instruction; `test` is `["NONE"]` for `HEALTHCHECK NONE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub test: Vec<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

/// COPY or ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copy {
    pub add: bool,
    pub srcs: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// Inline sources: `<<EOF` named in `srcs`.
    pub heredocs: Vec<Heredoc>,
}

/// One instruction, evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        cmd: Command,
        /// `--mount` and `--network` flags as written.
        flags: Vec<String>,
        heredocs: Vec<Heredoc>,
    },
    Cmd(Command),
    Entrypoint(Command),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Expose(Vec<String>),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Health),
    Shell(Vec<String>),
    Onbuild(String),
    Maintainer(String),
    Copy(Copy),
}

impl Instruction {
    /// Evaluates `node`; `lookup` gives the variables in scope.
    pub fn from_node(node: &Node, escape: char, lookup: Lookup) -> Result<Instruction> {
        let err = |m: String| Error::new(node.line, m);
        let kw = node.keyword.as_str();
        let w = |s: &str| expand::word(s, escape, lookup).map_err(err);
        let ws = |s: &str| expand::words(s, escape, lookup).map_err(err);
        let allowed: &[&str] = match kw {
            "FROM" => &["platform"],
            "RUN" => &["mount", "network", "security"],
            "COPY" => &["from", "chown", "chmod", "link"],
            "ADD" => &["chown", "chmod", "link"],
            "HEALTHCHECK" => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        let mut flags: Vec<(String, Option<String>)> = Vec::new();
        for f in &node.flags {
            let body = &f[2..];
            let (k, v) = match body.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (body, None),
            };
            if !allowed.contains(&k) {
                return Err(err(format!("unknown flag: {k}")));
            }
            flags.push((k.to_string(), v));
        }
        let flag = |k: &str| -> Result<Option<String>> {
            match flags.iter().rev().find(|(n, _)| n == k) {
                Some((_, Some(v))) => Ok(Some(w(v)?)),
                Some((_, None)) => Ok(Some(String::new())),
                None => Ok(None),
            }
        };
        let rest = node.rest.as_str();
        let need_args = |n: usize| -> Result<()> {
            if rest.trim().is_empty() && n > 0 {
                Err(err(format!("{kw} requires at least one argument")))
            } else {
                Ok(())
            }
        };
        Ok(match kw {
            "FROM" => {
                need_args(1)?;
                let parts = ws(rest)?;
                let (image, name) = match parts.as_slice() {
                    [i] => (i.clone(), None),
                    [i, as_, n] if as_.eq_ignore_ascii_case("as") => {
                        let n = n.to_ascii_lowercase();
                        if !valid_stage_name(&n) {
                            return Err(err(format!("invalid name for build stage: {n:?}, name can't start with a number or contain symbols")));
                        }
                        (i.clone(), Some(n))
                    }
                    _ => {
                        return Err(err(
                            "FROM requires either one or three arguments".to_string()
                        ))
                    }
                };
                if image.is_empty() {
                    return Err(err("base name (".to_string()
                        + rest
                        + ") should not be blank"));
                }
                Instruction::From {
                    image,
                    name,
                    platform: flag("platform")?,
                }
            }
            "RUN" => {
                need_args(1)?;
                Instruction::Run {
                    cmd: command(rest),
                    flags: node.flags.clone(),
                    heredocs: node.heredocs.clone(),
                }
            }
            "CMD" => Instruction::Cmd(command(rest)),
            "ENTRYPOINT" => Instruction::Entrypoint(command(rest)),
            "ENV" | "LABEL" => {
                need_args(1)?;
                let pairs = pairs(kw, rest, escape, lookup, node.line)?;
                if kw == "ENV" {
                    Instruction::Env(pairs)
                } else {
                    Instruction::Label(pairs)
                }
            }
            "ARG" => {
                need_args(1)?;
                let mut out = Vec::new();
                for raw in expand::split_raw(rest, escape) {
                    match raw.split_once('=') {
                        Some((k, v)) => out.push((k.to_string(), Some(w(v)?))),
                        None => out.push((raw, None)),
                    }
                }
                Instruction::Arg(out)
            }
            "EXPOSE" => {
                need_args(1)?;
                Instruction::Expose(ws(rest)?)
            }
            "WORKDIR" => {
                need_args(1)?;
                Instruction::Workdir(w(rest)?)
            }
            "USER" => {
                need_args(1)?;
                Instruction::User(w(rest)?)
            }
            "VOLUME" => {
                need_args(1)?;
                let v = match json_array(rest) {
                    Some(a) => a.iter().map(|s| w(s)).collect::<Result<Vec<_>>>()?,
                    None => ws(rest)?,
                };
                if v.iter().any(|s| s.trim().is_empty()) {
                    return Err(err("VOLUME specified can not be an empty string".into()));
                }
                Instruction::Volume(v)
            }
            "STOPSIGNAL" => {
                need_args(1)?;
                Instruction::StopSignal(w(rest)?)
            }
            "SHELL" => match json_array(rest) {
                Some(a) if !a.is_empty() => Instruction::Shell(a),
                _ => return Err(err("SHELL requires the arguments to be in JSON form".into())),
            },
            "ONBUILD" => {
                need_args(1)?;
                let inner = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(err(format!("{inner} isn't allowed as an ONBUILD trigger")));
                }
                crate::parser::split_node(rest, node.line)?;
                Instruction::Onbuild(rest.to_string())
            }
            "MAINTAINER" => Instruction::Maintainer(rest.to_string()),
            "HEALTHCHECK" => {
                need_args(1)?;
                let mut words = rest.split_whitespace();
                let kind = words.next().unwrap_or("").to_ascii_uppercase();
                let after = rest.trim_start()[kind.len()..].trim_start();
                let mut h = Health::default();
                match kind.as_str() {
                    "NONE" => {
                        if !after.is_empty() || !flags.is_empty() {
                            return Err(err("HEALTHCHECK NONE takes no arguments".into()));
                        }
                        h.test = vec!["NONE".into()];
                    }
                    "CMD" => {
                        h.test = match command(after) {
                            Command::Exec(a) => {
                                std::iter::once("CMD".to_string()).chain(a).collect()
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s],
                        };
                        let dur = |k: &str| -> Result<Option<i64>> {
                            flag(k)?
                                .map(|v| {
                                    berth_duration(&v).ok_or_else(|| {
                                        err(format!("Cannot parse the {k} flag value {v:?}"))
                                    })
                                })
                                .transpose()
                        };
                        h.interval = dur("interval")?;
                        h.timeout = dur("timeout")?;
                        h.start_period = dur("start-period")?;
                        h.start_interval = dur("start-interval")?;
                        h.retries = flag("retries")?
                            .map(|v| {
                                v.parse::<i64>().map_err(|_| {
                                    err(format!("Cannot parse the retries flag value {v:?}"))
                                })
                            })
                            .transpose()?;
                    }
                    other => {
                        return Err(err(format!(
                            "Unknown type {other:?} in HEALTHCHECK (try CMD)"
                        )))
                    }
                }
                Instruction::Healthcheck(h)
            }
            "COPY" | "ADD" => {
                let mut parts = match json_array(rest) {
                    Some(a) => a.iter().map(|s| w(s)).collect::<Result<Vec<_>>>()?,
                    None => ws(rest)?,
                };
                if parts.len() < 2 {
                    return Err(err(format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined")));
                }
                let dest = parts.pop().unwrap_or_default();
                Instruction::Copy(Copy {
                    add: kw == "ADD",
                    srcs: parts,
                    dest,
                    from: if kw == "COPY" { flag("from")? } else { None },
                    chown: flag("chown")?.filter(|s| !s.is_empty()),
                    chmod: flag("chmod")?.filter(|s| !s.is_empty()),
                    link: flag("link")?.is_some_and(|v| v != "false"),
                    heredocs: node.heredocs.clone(),
                })
            }
            other => return Err(err(format!("unknown instruction: {other}"))),
        })
    }
}

fn valid_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// A JSON array of strings, when `s` is one (exec form).
pub fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Exec form when `s` is a JSON array of strings, shell form otherwise.
pub fn command(s: &str) -> Command {
    match json_array(s) {
        Some(a) => Command::Exec(a),
        None => Command::Shell(s.trim().to_string()),
    }
}

/// `key=value ...` pairs of ENV/LABEL, or the legacy `ENV key value with spaces`.
fn pairs(
    kw: &str,
    rest: &str,
    escape: char,
    lookup: Lookup,
    line: usize,
) -> Result<Vec<(String, String)>> {
    let err = |m: String| Error::new(line, m);
    let raw = expand::split_raw(rest, escape);
    let first_has_eq = raw.first().is_some_and(|r| r.contains('='));
    if !first_has_eq {
        // Legacy form: the first word is the key, the rest of the line the value.
        let key = raw.first().cloned().unwrap_or_default();
        let value = rest.trim_start()[key.len()..].trim();
        if value.is_empty() {
            return Err(err(format!("{kw} must have two arguments")));
        }
        let v = expand::word(value, escape, lookup).map_err(err)?;
        return Ok(vec![(key, v)]);
    }
    let mut out = Vec::new();
    for r in raw {
        let Some((k, v)) = r.split_once('=') else {
            return Err(err(format!(
                "Syntax error - can't find = in {r:?}. Must be of the form: name=value"
            )));
        };
        let k = expand::word(k, escape, lookup).map_err(err)?;
        if k.is_empty() {
            return Err(err(format!("{kw} names can not be blank")));
        }
        out.push((k, expand::word(v, escape, lookup).map_err(err)?));
    }
    Ok(out)
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn berth_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn eval(src: &str) -> Result<Vec<Instruction>> {
        let df = parse(src, "Dockerfile")?;
        let env = |k: &str| match k {
            "V" => Some("1.2".to_string()),
            "D" => Some("/srv".to_string()),
            _ => None,
        };
        df.nodes
            .iter()
            .map(|n| Instruction::from_node(n, df.escape, &env))
            .collect()
    }

    #[test]
    fn from_forms() {
        let i = eval("FROM --platform=linux/amd64 busybox:$V AS Build\nFROM scratch\n").unwrap();
        assert_eq!(
            i[0],
            Instruction::From {
                image: "busybox:1.2".into(),
                name: Some("build".into()),
                platform: Some("linux/amd64".into())
            }
        );
        assert!(eval("FROM a b\n").is_err());
        assert!(eval("FROM a AS 1x\n").is_err());
    }

    #[test]
    fn run_cmd_entrypoint_forms() {
        let i = eval("RUN echo $V\nCMD [\"a\", \"b\"]\nENTRYPOINT [\"bad\"\nRUN --mount=type=cache,target=/c make\n").unwrap();
        assert_eq!(
            i[0],
            Instruction::Run {
                cmd: Command::Shell("echo $V".into()),
                flags: vec![],
                heredocs: vec![]
            }
        );
        assert_eq!(
            i[1],
            Instruction::Cmd(Command::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            i[2],
            Instruction::Entrypoint(Command::Shell("[\"bad\"".into()))
        );
        assert!(matches!(&i[3], Instruction::Run { flags, .. } if flags.len() == 1));
        assert!(eval("RUN --bogus x\n").is_err());
    }

    #[test]
    fn env_label_arg() {
        let i = eval("ENV A=1 B=\"two words\" C=$V\nENV legacy value with spaces\nLABEL \"k\"=v l=\"$D x\"\nARG X Y=${V:-0}\n").unwrap();
        assert_eq!(
            i[0],
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "1.2".into())
            ])
        );
        assert_eq!(
            i[1],
            Instruction::Env(vec![("legacy".into(), "value with spaces".into())])
        );
        assert_eq!(
            i[2],
            Instruction::Label(vec![
                ("k".into(), "v".into()),
                ("l".into(), "/srv x".into())
            ])
        );
        assert_eq!(
            i[3],
            Instruction::Arg(vec![("X".into(), None), ("Y".into(), Some("1.2".into()))])
        );
        assert!(eval("ENV A\n").is_err());
        assert!(eval("ENV A=1 B\n").is_err());
    }

    #[test]
    fn copy_forms() {
        let i =
            eval("COPY --chown=1:1 --from=build a $D/b /dst/\nADD [\"x y\", \"/z\"]\nCOPY one\n");
        assert!(i.is_err());
        let i =
            eval("COPY --chown=1:1 --from=build a $D/b /dst/\nADD [\"x y\", \"/z\"]\n").unwrap();
        let Instruction::Copy(c) = &i[0] else {
            panic!()
        };
        assert_eq!(c.srcs, vec!["a", "/srv/b"]);
        assert_eq!(c.dest, "/dst/");
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chown.as_deref(), Some("1:1"));
        let Instruction::Copy(c) = &i[1] else {
            panic!()
        };
        assert!(c.add);
        assert_eq!(c.srcs, vec!["x y"]);
    }

    #[test]
    fn misc() {
        let i = eval("EXPOSE 80/tcp $V\nWORKDIR $D/app\nUSER 1000:1000\nVOLUME [\"/a\", \"/b\"]\nVOLUME /c /d\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/bash\", \"-c\"]\nONBUILD RUN echo hi\nHEALTHCHECK --interval=5s --retries=2 CMD true\nHEALTHCHECK NONE\n").unwrap();
        assert_eq!(
            i[0],
            Instruction::Expose(vec!["80/tcp".into(), "1.2".into()])
        );
        assert_eq!(i[1], Instruction::Workdir("/srv/app".into()));
        assert_eq!(i[3], Instruction::Volume(vec!["/a".into(), "/b".into()]));
        assert_eq!(i[4], Instruction::Volume(vec!["/c".into(), "/d".into()]));
        assert_eq!(
            i[6],
            Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
        );
        assert_eq!(i[7], Instruction::Onbuild("RUN echo hi".into()));
        let Instruction::Healthcheck(h) = &i[8] else {
            panic!()
        };
        assert_eq!(h.test, vec!["CMD-SHELL", "true"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(2));
        assert!(eval("SHELL /bin/sh\n").is_err());
        assert!(eval("ONBUILD FROM x\n").is_err());
        assert!(eval("HEALTHCHECK --interval=x CMD true\n").is_err());
    }
}
