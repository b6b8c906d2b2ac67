//! Applying one instruction to a stage: the dispatch (RUN and COPY/ADD go to `run` and
//! `copy`) and the metadata steps (ENV, LABEL, CMD, WORKDIR, ...), which change only the image
//! config and commit an empty layer. It must not run containers or copy files itself.

use super::files;
use super::{bad, bad_msg, lock, BResult, Builder, Stage, Work};
use berth_build::cache::Inputs;
use berth_build::instruction::{Command, Health};
use berth_build::{Instruction, Node};
use serde_json::{json, Map, Value};

impl Builder {
    /// One instruction of a stage.
    pub(super) async fn instruction(&self, st: &mut Stage, n: &Node) -> BResult<()> {
        let ins = {
            let lookup = |k: &str| st.lookup(k);
            Instruction::from_node(n, self.escape, &lookup).map_err(bad)?
        };
        self.apply(st, &ins, &n.original).await
    }

    /// Applies one instruction (variables already expanded) to the stage.
    pub(super) async fn apply(
        &self,
        st: &mut Stage,
        ins: &Instruction,
        original: &str,
    ) -> BResult<()> {
        // Docker's history text: the instruction with its variables expanded, so that a
        // `--cache-from` image's entry matches only the same effect.
        let nop = format!("/bin/sh -c #(nop)  {}", describe(ins, original));
        let mut inputs = Inputs {
            parent: st.parent(),
            instruction: format!("{ins:?}"),
            ..Inputs::default()
        };
        let env_now = st.env();
        let workdir_now = st.str("WorkingDir");
        let cfg = &mut st.config;
        let set_list = |cfg: &mut Map<String, Value>, k: &str, v: &[String]| {
            cfg.insert(k.into(), json!(v));
        };
        match ins {
            Instruction::From { .. } => {
                return Err(bad_msg("FROM inside a stage".to_string()));
            }
            Instruction::Run {
                cmd,
                flags,
                heredocs,
            } => return self.run_step(st, cmd, flags, heredocs, inputs).await,
            Instruction::Copy(c) => return self.copy(st, c, inputs).await,
            Instruction::Cmd(c) => {
                set_list(cfg, "Cmd", &command_argv(c, &st_shell(cfg)));
                st.cmd_set = true;
            }
            Instruction::Entrypoint(c) => {
                set_list(cfg, "Entrypoint", &command_argv(c, &st_shell(cfg)));
                if !st.cmd_set {
                    cfg.insert("Cmd".into(), Value::Null);
                }
                inputs
                    .instruction
                    .push_str(&format!(" cmd_set={}", st.cmd_set));
            }
            Instruction::Env(pairs) => {
                let mut env: Vec<String> = env_now;
                for (k, v) in pairs {
                    env.retain(|e| e.split('=').next() != Some(k));
                    env.push(format!("{k}={v}"));
                }
                set_list(cfg, "Env", &env);
            }
            Instruction::Label(pairs) => {
                let labels = obj(cfg, "Labels");
                for (k, v) in pairs {
                    labels.insert(k.clone(), json!(v));
                }
            }
            Instruction::Arg(list) => {
                for (k, default) in list {
                    let val = match self.opts.build_args.get(k) {
                        Some(v) => {
                            lock(&self.used).insert(k.clone());
                            Some(v.clone())
                        }
                        None => default.clone().or_else(|| self.meta_args.get(k).cloned()),
                    };
                    match val {
                        Some(v) => st.args.insert(k.clone(), v),
                        None => st.args.remove(k),
                    };
                }
                inputs.args = st.args.clone();
            }
            Instruction::Expose(ports) => {
                let exposed = obj(cfg, "ExposedPorts");
                for p in ports {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    exposed.insert(p, json!({}));
                }
            }
            Instruction::Workdir(w) => {
                let cur = workdir_now;
                let path = berth_build::ignore::clean(&if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{w}", if cur.is_empty() { "/" } else { &cur })
                });
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                cfg.insert("WorkingDir".into(), json!(path));
                let rel = path.trim_start_matches('/').to_string();
                if !rel.is_empty() && !self.view(&st.image)?.is_dir(&rel) {
                    if self.hit(st, &inputs, &nop).await? {
                        return Ok(());
                    }
                    let stage = self.scratch.join(format!("stage-{}", st.step));
                    files::mkdirs(&stage, &rel)?;
                    return self.commit_step(st, inputs, nop, Work::Layer(stage)).await;
                }
            }
            Instruction::User(u) => {
                cfg.insert("User".into(), json!(u));
            }
            Instruction::Volume(v) => {
                let vols = obj(cfg, "Volumes");
                for p in v {
                    vols.insert(p.clone(), json!({}));
                }
            }
            Instruction::StopSignal(s) => {
                cfg.insert("StopSignal".into(), json!(s));
            }
            Instruction::Healthcheck(h) => {
                cfg.insert("Healthcheck".into(), health_json(h));
            }
            Instruction::Shell(s) => set_list(cfg, "Shell", s),
            Instruction::Onbuild(t) => {
                let list = cfg
                    .entry("OnBuild")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                if let Value::Array(a) = list {
                    a.push(json!(t));
                }
            }
            Instruction::Maintainer(m) => {
                inputs.instruction = format!("MAINTAINER {m}");
            }
        }
        self.commit_step(st, inputs, nop, Work::Meta).await
    }
}

/// A metadata instruction as history shows it, variables expanded.
pub(super) fn describe(ins: &Instruction, original: &str) -> String {
    let pairs = |kw: &str, p: &[(String, String)]| {
        let body: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{kw} {}", body.join(" "))
    };
    let js = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    let cmd = |kw: &str, c: &Command| match c {
        Command::Exec(v) => format!("{kw} {}", js(v)),
        Command::Shell(s) => format!("{kw} {s}"),
    };
    match ins {
        Instruction::Env(p) => pairs("ENV", p),
        Instruction::Label(p) => pairs("LABEL", p),
        Instruction::Cmd(c) => cmd("CMD", c),
        Instruction::Entrypoint(c) => cmd("ENTRYPOINT", c),
        Instruction::Expose(p) => format!("EXPOSE {}", p.join(" ")),
        Instruction::Workdir(w) => format!("WORKDIR {w}"),
        Instruction::User(u) => format!("USER {u}"),
        Instruction::Volume(v) => format!("VOLUME {}", js(v)),
        Instruction::StopSignal(sig) => format!("STOPSIGNAL {sig}"),
        Instruction::Shell(v) => format!("SHELL {}", js(v)),
        Instruction::Onbuild(t) => format!("ONBUILD {t}"),
        Instruction::Healthcheck(h) => format!("HEALTHCHECK {}", health_json(h)),
        _ => original.to_string(),
    }
}

/// The config's `Shell`, `/bin/sh -c` by default.
pub(super) fn st_shell(cfg: &Map<String, Value>) -> Vec<String> {
    match cfg.get("Shell").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => vec!["/bin/sh".into(), "-c".into()],
    }
}

pub(super) fn command_argv(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell
            .iter()
            .cloned()
            .chain(std::iter::once(s.clone()))
            .collect(),
    }
}

/// The object `k` of the config, created when missing.
pub(super) fn obj<'a>(cfg: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    let v = cfg.entry(k).or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub(super) fn health_json(h: &Health) -> Value {
    let mut m = Map::new();
    m.insert("Test".into(), json!(h.test));
    for (k, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
        ("Retries", h.retries),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}
