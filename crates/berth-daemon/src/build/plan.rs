//! Stage planning: the Dockerfile located in the unpacked context (symlinks resolved inside
//! it), parsed and split into stages, the meta ARGs (before the first FROM) applied, and the
//! stages the target needs worked out. Owns no state and runs nothing: it must not touch the
//! image store or containers.

use super::options::Options;
use crate::error::{Error, Result};
use crate::util::Query;
use berth_build::{Instruction, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One stage of the Dockerfile.
pub(super) struct StagePlan {
    pub(super) name: Option<String>,
    pub(super) from: Node,
    pub(super) nodes: Vec<Node>,
}

/// What a build runs: its stages, the target and the stages it needs, and the meta ARGs.
pub(super) struct Plan {
    pub(super) stages: Vec<StagePlan>,
    pub(super) escape: char,
    pub(super) meta_args: BTreeMap<String, String>,
    /// Build args a meta ARG consumed.
    pub(super) used: BTreeSet<String>,
    pub(super) target: usize,
    /// The stages to build, each with the stages it uses.
    pub(super) needed: BTreeMap<usize, BTreeSet<usize>>,
}

/// Reads the Dockerfile the query names (`dockerfile`, `Dockerfile` by default) from the
/// context `ctx` and plans the build of `opts.target` (the last stage by default).
pub(super) fn plan(ctx: &Path, q: &Query, opts: &Options) -> Result<Plan> {
    let df_name = q
        .get("dockerfile")
        .filter(|s| !s.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    // Inside the context whatever the name says.
    // Symlinks (a Dockerfile linking to another) resolve inside the context too.
    let mut rel = berth_build::ignore::clean(&format!("/{df_name}"));
    let locate = || Error::bad_request(format!("Cannot locate specified Dockerfile: {df_name}"));
    let mut hops = 0;
    let df_path = loop {
        let p = berth_image::archive::resolve_in_root(ctx, Path::new(rel.trim_start_matches('/')))
            .map_err(|_| locate())?;
        let m = std::fs::symlink_metadata(&p).map_err(|_| locate())?;
        if m.is_file() {
            break p;
        }
        hops += 1;
        if !m.file_type().is_symlink() || hops > 40 {
            return Err(locate());
        }
        let target = std::fs::read_link(&p).map_err(|_| locate())?;
        let target = target.to_string_lossy();
        let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
        rel = berth_build::ignore::clean(&if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{parent}/{target}")
        });
    };
    // Its size is checked before it is read (the parser checks its instructions).
    let len = std::fs::metadata(&df_path).map_err(|_| locate())?.len();
    if len > berth_build::MAX_DOCKERFILE_BYTES as u64 {
        return Err(Error::bad_request(format!(
            "{df_name}: {}",
            berth_build::parser::too_large(len)
        )));
    }
    let text = std::fs::read_to_string(&df_path).map_err(|_| locate())?;
    let df = berth_build::parse(&text, &df_name).map_err(|e| Error::bad_request(e.to_string()))?;
    leave_out_build_files(ctx, &df_name)?;
    if df.nodes.is_empty() {
        return Err(Error::bad_request(format!(
            "the Dockerfile ({df_name}) cannot be empty"
        )));
    }
    let mut meta = Vec::new();
    let mut stages: Vec<StagePlan> = Vec::new();
    for n in df.nodes {
        if n.keyword == "FROM" {
            stages.push(StagePlan {
                name: None,
                from: n,
                nodes: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.nodes.push(n);
        } else if n.keyword == "ARG" {
            meta.push(n);
        } else {
            return Err(Error::bad_request(format!(
                "{df_name}:{}: no build stage in current context",
                n.line
            )));
        }
    }
    // Meta ARGs (before the first FROM) serve the FROM lines.
    let mut meta_args: BTreeMap<String, String> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for n in &meta {
        let lookup = |k: &str| meta_args.get(k).cloned();
        if let Instruction::Arg(list) = Instruction::from_node(n, df.escape, &lookup)
            .map_err(|e| Error::bad_request(with_file(e, &df_name)))?
        {
            for (k, v) in list {
                let val = match opts.build_args.get(&k) {
                    Some(b) => {
                        used.insert(k.clone());
                        Some(b.clone())
                    }
                    None => v,
                };
                if let Some(val) = val {
                    meta_args.insert(k, val);
                }
            }
        }
    }
    for s in &mut stages {
        let lookup = |k: &str| meta_args.get(k).cloned();
        if let Instruction::From { name, .. } = Instruction::from_node(&s.from, df.escape, &lookup)
            .map_err(|e| Error::bad_request(with_file(e, &df_name)))?
        {
            s.name = name;
        }
    }
    let target = match &opts.target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                Error::bad_request(format!("failed to reach build target {t} in Dockerfile"))
            })?,
        None => stages.len() - 1,
    };
    let needed = needed_stages(&stages, target, df.escape, &meta_args);
    Ok(Plan {
        stages,
        escape: df.escape,
        meta_args,
        used,
        target,
        needed,
    })
}

fn with_file(mut e: berth_build::Error, file: &str) -> String {
    e.file = file.to_string();
    e.to_string()
}

/// The stages `target` needs (itself, the stages its FROM and `COPY --from` name), as indexes.
fn needed_stages(
    stages: &[StagePlan],
    target: usize,
    escape: char,
    meta: &BTreeMap<String, String>,
) -> BTreeMap<usize, BTreeSet<usize>> {
    let lookup = |k: &str| meta.get(k).cloned();
    let find = |name: &str, before: usize| -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    };
    let mut out: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if out.contains_key(&i) {
            continue;
        }
        let s = &stages[i];
        let mut deps = BTreeSet::new();
        if let Ok(Instruction::From { image, .. }) =
            Instruction::from_node(&s.from, escape, &lookup)
        {
            deps.extend(find(&image, i));
        }
        for n in &s.nodes {
            for f in &n.flags {
                if let Some(v) = f.strip_prefix("--from=") {
                    let v = berth_build::expand::word(v, escape, &lookup).unwrap_or_default();
                    deps.extend(find(&v, i));
                }
            }
        }
        todo.extend(deps.iter().copied());
        out.insert(i, deps);
    }
    out
}

/// As dockerd does once the Dockerfile is read: `.dockerignore` and the Dockerfile (which the
/// client sends even when `.dockerignore` lists them; the docker CLI lists a Dockerfile it adds
/// under a generated name) leave the context when `.dockerignore` lists them, so `COPY .`
/// does not copy them.
fn leave_out_build_files(ctx: &Path, dockerfile: &str) -> Result<()> {
    let text = match std::fs::read_to_string(ctx.join(".dockerignore")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let m = berth_build::ignore::Matcher::parse(&text);
    for name in [".dockerignore", dockerfile] {
        let rel = berth_build::ignore::clean(name.trim_start_matches('/'));
        if rel.is_empty() || !m.excluded(&rel) {
            continue;
        }
        let Ok(p) = berth_image::archive::resolve_in_root(ctx, Path::new(&rel)) else {
            continue;
        };
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => std::fs::remove_dir_all(&p)?,
            Ok(_) => std::fs::remove_file(&p)?,
            Err(_) => {}
        }
    }
    Ok(())
}
