//! The loader's driver, in compose-go's order: find the files and the environment, then for
//! each file parse → interpolate → validate → canonical → include → extends → merge; then the
//! project name, profiles, normalization, environment resolution and the checks that need the
//! whole project.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{child, dotted, Doc, Error};
use crate::project::Project;

const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The command line's say in loading.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `-f` (a `-` reads stdin).
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_dir: Option<PathBuf>,
    pub env_files: Vec<PathBuf>,
    /// `--profile` (when given, replaces `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// Services named on the command line: enabled whatever their profiles.
    pub services: Vec<String>,
    /// For `stack deploy`: the swarm's `deploy` keys and external secrets and configs are
    /// kept for the caller instead of refused, and not warned about.
    pub swarm: bool,
}

/// The environment `${}` reads: the shell first, then the env files.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn get(&self, k: &str) -> Option<String> {
        self.vars.get(k).cloned()
    }

    /// Adds the variables not already set (the shell wins over files).
    fn add_missing(&mut self, vars: Vec<(String, Option<String>)>) {
        for (k, v) in vars {
            if let Some(v) = v {
                self.vars.entry(k).or_insert(v);
            }
        }
    }
}

/// Compose's normalization of a project name taken from a file or a directory.
pub fn normalize_name(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

fn invalid_name(n: &str) -> Error {
    Error::new(format!(
        "invalid project name {n:?}: must consist only of lowercase alphanumeric characters, \
         hyphens, and underscores as well as start with a letter or number"
    ))
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// The files in the working dir or its nearest parent that has one, with the override.
fn discover(cwd: &Path, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>, Error> {
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        let found: Vec<PathBuf> = DEFAULT_FILES
            .iter()
            .map(|f| d.join(f))
            .filter(|p| p.is_file())
            .collect();
        if let Some(first) = found.first() {
            if found.len() > 1 {
                let all: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
                warnings.push(format!(
                    "Found multiple config files with supported names: {}",
                    all.join(", ")
                ));
                warnings.push(format!("Using {}", first.display()));
            }
            let mut files = vec![first.clone()];
            if let Some(o) = OVERRIDE_FILES
                .iter()
                .map(|f| d.join(f))
                .find(|p| p.is_file())
            {
                files.push(o);
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(Error::new("no configuration file provided: not found"))
}

fn read_env_file(path: &Path, env: &Env) -> Result<Vec<(String, Option<String>)>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("couldn't read env file {}: {e}", path.display())))?;
    let lookup = |k: &str| env.get(k);
    super::dotenv::parse(&text, &lookup)
        .map_err(|e| Error::new(format!("failed to read {}: {e}", path.display())))
}

/// A compose file's text (`-` is stdin).
fn read_text(path: &Path) -> Result<String, Error> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Error::new(format!("reading the compose file from stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Error::new(format!("open {}: {e}", path.display())))
    }
}

/// Loads one file (every document, merged in order) up to its canonical form; `text` when
/// already read.
fn load_file(
    path: &Path,
    text: Option<String>,
    base_dir: &Path,
    env: &Env,
    warn: &mut Vec<String>,
) -> Result<Doc, Error> {
    let text = match text {
        Some(t) => t,
        None => read_text(path)?,
    };
    let file = Arc::new(path.to_path_buf());
    let mut acc: Option<Doc> = None;
    for mut doc in super::yaml::parse(file, &text)? {
        let lookup = |k: &str| env.get(k);
        super::interp::interpolate(&mut doc, &lookup, warn)?;
        super::schema::validate(&doc)?;
        if doc.value.get("version").is_some() {
            warn.push(format!(
                "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                path.display()
            ));
        }
        super::canon::canonical(&mut doc, base_dir)?;
        acc = Some(match acc {
            None => doc,
            Some(mut a) => {
                super::merge::merge(&mut a, doc)?;
                a
            }
        });
    }
    Ok(acc.unwrap_or_default())
}

/// A file with its includes imported and its `extends` resolved.
fn load_complete(
    path: &Path,
    text: Option<String>,
    base_dir: &Path,
    env: &Env,
    warn: &mut Vec<String>,
    stack: &mut Vec<PathBuf>,
) -> Result<Doc, Error> {
    stack.push(path.to_path_buf());
    let mut doc = load_file(path, text, base_dir, env, warn)?;
    for inc in super::include::entries(&doc)? {
        inc.check_cycle(stack)?;
        let dir = inc.directory();
        // The including project's environment, then the included one's env files.
        let mut sub_env = env.clone();
        for f in &inc.env_files {
            if !f.is_file() {
                return Err(Error::at(
                    inc.pos.as_ref(),
                    format!("couldn't find env file: {}", f.display()),
                ));
            }
            let vars = read_env_file(f, &sub_env)?;
            sub_env.add_missing(vars);
        }
        let mut included: Option<Doc> = None;
        for p in &inc.paths {
            let d = load_complete(p, None, &dir, &sub_env, warn, stack)?;
            included = Some(match included {
                None => d,
                Some(mut a) => {
                    super::merge::merge(&mut a, d)?;
                    a
                }
            });
        }
        if let Some(d) = included {
            super::include::import(&mut doc, d)?;
        }
    }
    if let Some(m) = doc.value.as_object_mut() {
        m.remove("include");
    }
    let mut cache: HashMap<PathBuf, Doc> = HashMap::new();
    let mut other = |p: &Path| -> Result<Doc, Error> {
        if let Some(d) = cache.get(p) {
            return Ok(d.clone());
        }
        let dir = p.parent().unwrap_or(Path::new("/"));
        let mut w = Vec::new();
        let d = load_file(p, None, dir, env, &mut w)?;
        cache.insert(p.to_path_buf(), d.clone());
        Ok(d)
    };
    super::extends::resolve(&mut doc, path, &mut other)?;
    stack.pop();
    Ok(doc)
}

/// The `name:` of the files (interpolated, the last non-empty one), normalized; read before
/// the full load so that `${COMPOSE_PROJECT_NAME}` has it. Errors are left to the full load.
fn file_name(files: &[PathBuf], texts: &[String], env: &Env) -> Option<String> {
    let mut name = None;
    for (f, text) in files.iter().zip(texts) {
        let Ok(docs) = super::yaml::parse(Arc::new(f.clone()), text) else {
            continue;
        };
        for d in docs {
            if let Some(raw) = d.value.get("name").and_then(Value::as_str) {
                let lookup = |k: &str| env.get(k);
                if let Ok(n) = super::interp::substitute(raw, &lookup, &mut Vec::new()) {
                    let n = normalize_name(&n);
                    if !n.is_empty() {
                        name = Some(n);
                    }
                }
            }
        }
    }
    name
}

/// Everything the project loading produced.
pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<String>,
}

/// Loads the project the options describe.
pub fn load(o: &Options) -> Result<Loaded, Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::new(format!("working directory: {e}")))?;
    let mut warnings = Vec::new();
    let mut env = Env::default();
    for (k, v) in std::env::vars() {
        env.vars.insert(k, v);
    }
    let env_dir = o
        .project_dir
        .as_ref()
        .map(|d| absolute(d, &cwd))
        .or_else(|| {
            o.files
                .first()
                .filter(|f| f.as_os_str() != "-")
                .and_then(|f| absolute(f, &cwd).parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| cwd.clone());
    let mut env_files = Vec::new();
    if o.env_files.is_empty() {
        let dot = env_dir.join(".env");
        let disabled = env
            .get("COMPOSE_DISABLE_ENV_FILE")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "True"));
        if dot.is_file() && !disabled {
            let vars = read_env_file(&dot, &env)?;
            env.add_missing(vars);
        }
    } else {
        // Later files win over earlier ones; the shell wins over all.
        let mut from_files: Vec<(String, Option<String>)> = Vec::new();
        let mut file_env = env.clone();
        for f in &o.env_files {
            let p = absolute(f, &cwd);
            if !p.is_file() {
                return Err(Error::new(format!(
                    "couldn't find env file: {}",
                    p.display()
                )));
            }
            let vars = read_env_file(&p, &file_env)?;
            for (k, v) in &vars {
                if let Some(v) = v {
                    file_env.vars.insert(k.clone(), v.clone());
                }
            }
            from_files.extend(vars);
            env_files.push(p);
        }
        let mut merged: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v) in from_files {
            merged.insert(k, v);
        }
        env.add_missing(merged.into_iter().collect());
    }
    let files: Vec<PathBuf> = if !o.files.is_empty() {
        o.files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    f.clone()
                } else {
                    absolute(f, &cwd)
                }
            })
            .collect()
    } else if let Some(list) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .unwrap_or_else(|| ":".into());
        list.split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(|f| absolute(Path::new(f), &env_dir))
            .collect()
    } else {
        discover(
            o.project_dir
                .as_deref()
                .map(|d| absolute(d, &cwd))
                .as_deref()
                .unwrap_or(&cwd),
            &mut warnings,
        )?
    };
    for f in &files {
        if f.as_os_str() != "-" && !f.is_file() {
            return Err(Error::new(format!(
                "open {}: no such file or directory",
                f.display()
            )));
        }
    }
    let working_dir = o
        .project_dir
        .as_ref()
        .map(|d| absolute(d, &cwd))
        .or_else(|| {
            files
                .first()
                .filter(|f| f.as_os_str() != "-")
                .and_then(|f| f.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| cwd.clone());
    // Compose reads the environment again once the files are known: the `.env` beside them
    // adds what is not set yet.
    if o.env_files.is_empty() && working_dir != env_dir {
        let dot = working_dir.join(".env");
        if dot.is_file() {
            let vars = read_env_file(&dot, &env)?;
            env.add_missing(vars);
        }
    }
    let mut texts = Vec::new();
    for f in &files {
        texts.push(read_text(f)?);
    }
    // -p and COMPOSE_PROJECT_NAME are checked, not normalized; `${COMPOSE_PROJECT_NAME}` reads
    // the resolved name, whichever way it came.
    let explicit = o
        .project_name
        .clone()
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").filter(|s| !s.is_empty()));
    if let Some(n) = &explicit {
        if normalize_name(n) != *n || n.is_empty() {
            return Err(invalid_name(n));
        }
    }
    let name = match explicit {
        Some(n) => n,
        None => file_name(&files, &texts, &env).unwrap_or_else(|| {
            normalize_name(
                &working_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        }),
    };
    if name.is_empty() {
        return Err(Error::new("project name must not be empty"));
    }
    env.vars.insert("COMPOSE_PROJECT_NAME".into(), name.clone());
    // Starting from an empty tree gives the first file the merge's duplicate removal too.
    let mut doc = Doc::default();
    let mut stack = Vec::new();
    for (f, text) in files.iter().zip(texts) {
        let d = load_complete(f, Some(text), &working_dir, &env, &mut warnings, &mut stack)?;
        super::merge::merge(&mut doc, d)?;
    }
    if let Some(m) = doc.value.as_object_mut() {
        m.insert("name".into(), json!(name));
    }
    let profiles: Vec<String> = if o.profiles.is_empty() {
        env.get("COMPOSE_PROFILES")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        o.profiles.clone()
    };
    implicit_dependencies(&mut doc.value);
    let disabled = apply_profiles(&mut doc, &profiles, &o.services)?;
    check_references(&doc)?;
    normalize(&mut doc.value, &name);
    resolve_environment(&mut doc, &env)?;
    resolve_file_sources(&mut doc, &env)?;
    check_files(&doc)?;
    let model: crate::model::Project = serde_json::from_value(doc.value.clone())
        .map_err(|e| Error::new(format!("invalid compose project: {e}")))?;
    refuse_unsupported(&doc, &model, o.swarm)?;
    check_model(&doc, &model)?;
    if !o.swarm {
        swarm_only(&model, &mut warnings);
    }
    let config_files = files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                working_dir.join("-")
            } else {
                f.clone()
            }
        })
        .collect();
    Ok(Loaded {
        project: Project {
            name,
            model,
            tree: doc.value,
            working_dir,
            config_files,
            env_files,
            disabled,
            env: env.vars,
        },
        warnings,
    })
}

fn services(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v["services"].as_object().into_iter().flatten()
}

/// The dependencies Compose infers: `links`, `volumes_from`, and `service:` namespaces.
fn implicit_dependencies(v: &mut Value) {
    let mut add: Vec<(String, String)> = Vec::new();
    for (name, s) in services(v) {
        for l in s["links"].as_array().into_iter().flatten() {
            if let Some(l) = l.as_str() {
                add.push((name.clone(), l.split(':').next().unwrap_or(l).to_string()));
            }
        }
        for vf in s["volumes_from"].as_array().into_iter().flatten() {
            if let Some(vf) = vf.as_str() {
                if !vf.starts_with("container:") {
                    add.push((name.clone(), vf.split(':').next().unwrap_or(vf).to_string()));
                }
            }
        }
        for k in ["network_mode", "ipc", "pid"] {
            if let Some(t) = s[k].as_str().and_then(|m| m.strip_prefix("service:")) {
                add.push((name.clone(), t.to_string()));
            }
        }
    }
    for (svc, dep) in add {
        let deps = &mut v["services"][&svc]["depends_on"];
        if deps.is_null() {
            *deps = json!({});
        }
        if let Some(m) = deps.as_object_mut() {
            m.entry(dep).or_insert_with(
                || json!({"condition": "service_started", "required": true, "restart": false}),
            );
        }
    }
}

fn pos_err(doc: &Doc, pointer: &str, msg: String) -> Error {
    Error::at(doc.marks.nearest(pointer), msg)
}

/// What compose-go's validation refuses about references between services and resources,
/// and dependency cycles.
fn check_references(doc: &Doc) -> Result<(), Error> {
    let v = &doc.value;
    let names: BTreeSet<&String> = services(v).map(|(n, _)| n).collect();
    for (name, s) in services(v) {
        let at = child("/services", name);
        let at = at.as_str();
        for k in ["network_mode", "ipc", "pid"] {
            if let Some(t) = s[k].as_str().and_then(|m| m.strip_prefix("service:")) {
                if !names.contains(&t.to_string()) {
                    return Err(pos_err(
                        doc,
                        &child(at, k),
                        format!("service {t:?} not found for {k} 'service:{t}'"),
                    ));
                }
            }
        }
        for d in s["depends_on"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(d, _)| d)
        {
            let required = s["depends_on"][d]["required"].as_bool().unwrap_or(true);
            if !names.contains(d) && required {
                return Err(pos_err(
                    doc,
                    &child(&child(at, "depends_on"), d),
                    format!("service {name:?} depends on undefined service {d:?}: invalid compose project"),
                ));
            }
        }
        if s.get("network_mode").is_some_and(|m| !m.is_null())
            && s.get("networks").is_some_and(|m| !m.is_null())
        {
            return Err(pos_err(
                doc,
                &child(at, "networks"),
                format!(
                    "service {name:?} declares mutually exclusive `network_mode` and `networks`"
                ),
            ));
        }
        for (key, top) in [
            ("networks", "networks"),
            ("secrets", "secrets"),
            ("configs", "configs"),
        ] {
            let refs: Vec<String> = match &s[key] {
                Value::Object(m) => m.keys().cloned().collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x["source"].as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            for r in refs {
                let declared = v[top].get(&r).is_some() || (key == "networks" && r == "default");
                if !declared {
                    let singular = top.trim_end_matches('s');
                    return Err(pos_err(
                        doc,
                        &child(at, key),
                        format!("service {name:?} refers to undefined {singular} {r}: invalid compose project"),
                    ));
                }
            }
        }
        for (i, m) in s["volumes"].as_array().into_iter().flatten().enumerate() {
            if m["type"] == "volume" {
                if let Some(src) = m["source"].as_str().filter(|s| !s.is_empty()) {
                    if v["volumes"].get(src).is_none() {
                        return Err(pos_err(
                            doc,
                            &format!("{}/{i}", child(at, "volumes")),
                            format!("service {name:?} refers to undefined volume {src}: invalid compose project"),
                        ));
                    }
                }
            }
        }
        if s.get("image").is_none_or(Value::is_null) && s.get("build").is_none_or(Value::is_null) {
            return Err(pos_err(
                doc,
                at,
                format!("service {name:?} has neither an image nor a build context specified: invalid compose project"),
            ));
        }
        if let (Some(a), Some(b)) = (s["scale"].as_u64(), s["deploy"]["replicas"].as_u64()) {
            if a != b {
                return Err(pos_err(
                    doc,
                    &child(at, "scale"),
                    format!("services.{name}: can't set distinct values on 'scale' and 'deploy.replicas'"),
                ));
            }
        }
        if let Some(t) = s["healthcheck"]["test"].as_array().and_then(|t| t.first()) {
            if !matches!(t.as_str(), Some("CMD" | "CMD-SHELL" | "NONE")) {
                return Err(pos_err(
                    doc,
                    &child(&child(at, "healthcheck"), "test"),
                    format!("services.{name}.healthcheck.test must start either by \"CMD\", \"CMD-SHELL\" or \"NONE\""),
                ));
            }
        }
    }
    // Cycles, reported as compose-go does: `dependency cycle detected: a -> b -> a`.
    fn visit<'a>(
        v: &'a Value,
        n: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), String> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut cyc: Vec<&str> = path[i..].to_vec();
            cyc.push(n);
            return Err(format!("dependency cycle detected: {}", cyc.join(" -> ")));
        }
        if !done.insert(n) {
            return Ok(());
        }
        path.push(n);
        for d in v["services"][n]["depends_on"]
            .as_object()
            .into_iter()
            .flatten()
        {
            visit(v, d.0, path, done)?;
        }
        path.pop();
        Ok(())
    }
    let mut done = BTreeSet::new();
    for (n, _) in services(v) {
        let mut path = Vec::new();
        visit(v, n, &mut path, &mut done).map_err(Error::new)?;
    }
    Ok(())
}

/// Drops the services no active profile enables (services without profiles are always on;
/// `*` enables all; a service named on the command line enables its own profiles). Optional
/// dependencies on dropped services are dropped with them; required ones are then refused by
/// the reference check, as compose-go refuses them.
fn apply_profiles(
    doc: &mut Doc,
    profiles: &[String],
    named: &[String],
) -> Result<Vec<String>, Error> {
    let mut active: BTreeSet<String> = profiles.iter().cloned().collect();
    for n in named {
        let Some(s) = doc.value["services"].get(n) else {
            return Err(Error::new(format!("no such service: {n}")));
        };
        active.extend(
            s["profiles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
    }
    let enabled = |s: &Value| {
        let own: Vec<&str> = s["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        own.is_empty() || active.contains("*") || own.iter().any(|p| active.contains(*p))
    };
    let mut disabled = Vec::new();
    if let Some(m) = doc.value["services"].as_object_mut() {
        let off: Vec<String> = m
            .iter()
            .filter(|(_, s)| !enabled(s))
            .map(|(n, _)| n.clone())
            .collect();
        for n in &off {
            m.remove(n);
        }
        for s in m.values_mut() {
            if let Some(d) = s.get_mut("depends_on").and_then(Value::as_object_mut) {
                d.retain(|k, dep| !off.contains(k) || dep["required"].as_bool().unwrap_or(true));
            }
        }
        disabled = off;
    }
    Ok(disabled)
}

/// compose-go's Normalize: the implicit `default` network, and resource names.
fn normalize(v: &mut Value, project: &str) {
    let mut uses_default = false;
    if let Some(m) = v["services"].as_object_mut() {
        for s in m.values_mut() {
            let Some(o) = s.as_object_mut() else { continue };
            let has_mode = o.get("network_mode").is_some_and(|m| !m.is_null());
            let nets = o.get("networks").filter(|n| !n.is_null());
            if !has_mode && nets.is_none() {
                o.insert("networks".into(), json!({"default": null}));
            }
            if !has_mode
                && o.get("networks")
                    .is_some_and(|n| n.get("default").is_some())
            {
                uses_default = true;
            }
        }
    }
    if uses_default && v["networks"].get("default").is_none() {
        if !v["networks"].is_object() {
            v["networks"] = json!({});
        }
        v["networks"]["default"] = json!({});
    }
    for top in ["networks", "volumes", "secrets", "configs"] {
        let Some(m) = v[top].as_object_mut() else {
            continue;
        };
        for (k, r) in m.iter_mut() {
            if r.is_null() {
                *r = json!({});
            }
            let Some(o) = r.as_object_mut() else { continue };
            if o.get("name").and_then(Value::as_str).is_none() {
                let external = o.get("external").and_then(Value::as_bool).unwrap_or(false);
                let n = if external {
                    k.clone()
                } else {
                    format!("{project}_{k}")
                };
                o.insert("name".into(), json!(n));
            }
        }
    }
}

/// `env_file` contents under `environment`, and bare `FOO` entries given the value the
/// environment has (unset ones stay bare, so the engine treats them as unset).
fn resolve_environment(doc: &mut Doc, env: &Env) -> Result<(), Error> {
    let names: Vec<String> = services(&doc.value).map(|(n, _)| n.clone()).collect();
    for n in names {
        let svc = &doc.value["services"][&n];
        let mut merged: Map<String, Value> = Map::new();
        for (i, f) in svc["env_file"].as_array().into_iter().flatten().enumerate() {
            let Some(path) = f["path"].as_str() else {
                continue;
            };
            let required = f["required"].as_bool().unwrap_or(true);
            let p = Path::new(path);
            if !p.is_file() {
                if required {
                    return Err(pos_err(
                        doc,
                        &format!("/services/{}/env_file/{i}", super::escape(&n)),
                        format!(
                            "env file {path} not found: stat {path}: no such file or directory"
                        ),
                    ));
                }
                continue;
            }
            let vars = if f["format"].as_str() == Some("raw") {
                raw_env_file(p)?
            } else {
                read_env_file(p, env)?
            };
            for (k, v) in vars {
                let v = v.or_else(|| env.get(&k));
                merged.insert(k, v.map_or(Value::Null, Value::String));
            }
        }
        for (k, v) in svc["environment"].as_object().into_iter().flatten() {
            let v = match v {
                Value::Null => env.get(k).map_or(Value::Null, Value::String),
                other => other.clone(),
            };
            merged.insert(k.clone(), v);
        }
        if !merged.is_empty() {
            doc.value["services"][&n]["environment"] = Value::Object(merged);
        }
    }
    Ok(())
}

/// An env file in `format: raw`: `KEY=VALUE` lines taken as written (no quotes, no `${}`).
fn raw_env_file(path: &Path) -> Result<Vec<(String, Option<String>)>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("couldn't read env file {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (l.to_string(), None),
        })
        .collect())
}

/// Secrets and configs with an `environment` source take the variable's value from the
/// project's environment now (as `content`); an unset one is an error, as in Compose.
fn resolve_file_sources(doc: &mut Doc, env: &Env) -> Result<(), Error> {
    for top in ["secrets", "configs"] {
        let keys: Vec<String> = doc.value[top]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for k in keys {
            let Some(var) = doc.value[top][&k]["environment"]
                .as_str()
                .map(str::to_string)
            else {
                continue;
            };
            match env.get(&var) {
                Some(v) => doc.value[top][&k]["content"] = Value::String(v),
                None => {
                    let singular = top.trim_end_matches('s');
                    return Err(pos_err(
                        doc,
                        &child(&child(&format!("/{top}"), &k), "environment"),
                        format!(
                            "environment variable {var:?} required by {singular} {k:?} is not set"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What compose-go's validation refuses in the typed model: distinct values for one setting
/// in its two spellings, a fixed container name on several replicas, both Dockerfile forms,
/// secret and config targets that climb out with `..`.
fn check_model(doc: &Doc, m: &crate::model::Project) -> Result<(), Error> {
    for (n, s) in &m.services {
        let at = child("/services", n);
        let limits = s
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.limits.as_ref());
        let reservations = s
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.reservations.as_ref());
        let distinct = |a: &str, b: &str| {
            Err(pos_err(
                doc,
                &at,
                format!("services.{n}: can't set distinct values on '{a}' and '{b}'"),
            ))
        };
        if let (Some(a), Some(b)) = (s.mem_limit, limits.and_then(|l| l.memory)) {
            if a != b {
                return distinct("mem_limit", "deploy.resources.limits.memory");
            }
        }
        if let (Some(a), Some(b)) = (s.mem_reservation, reservations.and_then(|l| l.memory)) {
            if a != b {
                return distinct("mem_reservation", "deploy.resources.reservations.memory");
            }
        }
        if let (Some(a), Some(b)) = (s.cpus, limits.and_then(|l| l.cpus)) {
            if (a - b).abs() > f64::EPSILON {
                return distinct("cpus", "deploy.resources.limits.cpus");
            }
        }
        if let (Some(a), Some(b)) = (s.pids_limit, limits.and_then(|l| l.pids)) {
            if a != b {
                return distinct("pids_limit", "deploy.resources.limits.pids");
            }
        }
        let replicas = s
            .scale
            .or_else(|| s.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1);
        if s.container_name.is_some() && replicas > 1 {
            return Err(pos_err(
                doc,
                &child(&at, "container_name"),
                format!("services.{n}: container_name {:?} is unique and cannot be used with {replicas} replicas", s.container_name.as_deref().unwrap_or("")),
            ));
        }
        if let Some(b) = &s.build {
            if b.dockerfile.is_some() && b.dockerfile_inline.is_some() {
                return Err(pos_err(
                    doc,
                    &child(&at, "build"),
                    format!("service {n:?} declares mutually exclusive dockerfile and dockerfile_inline"),
                ));
            }
        }
        for (key, refs) in [("secrets", &s.secrets), ("configs", &s.configs)] {
            for (i, r) in refs.iter().enumerate() {
                if r.target
                    .as_deref()
                    .is_some_and(|t| t.split('/').any(|c| c == ".."))
                {
                    return Err(pos_err(
                        doc,
                        &format!("{}/{i}", child(&at, key)),
                        format!("services.{n}.{key}[{i}].target must not contain \"..\""),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `deploy` settings that only a swarm carries out: Docker Compose ignores them for containers,
/// and so does berth, saying so.
fn swarm_only(m: &crate::model::Project, warnings: &mut Vec<String>) {
    for (n, s) in &m.services {
        let Some(d) = &s.deploy else { continue };
        let mut keys = Vec::new();
        if !d.labels.is_empty() {
            keys.push("deploy.labels");
        }
        if d.mode.as_deref().is_some_and(|m| m != "replicated") {
            keys.push("deploy.mode");
        }
        if let Some(r) = d.resources.as_ref().and_then(|r| r.reservations.as_ref()) {
            if r.cpus.is_some() {
                keys.push("deploy.resources.reservations.cpus");
            }
            if r.pids.is_some() {
                keys.push("deploy.resources.reservations.pids");
            }
        }
        if let Some(rp) = &d.restart_policy {
            if rp.delay.is_some() {
                keys.push("deploy.restart_policy.delay");
            }
            if rp.window.is_some() {
                keys.push("deploy.restart_policy.window");
            }
        }
        for k in keys {
            warnings.push(format!(
                "services.{n}.{k} applies to swarm services only; a container ignores it, as with Docker Compose"
            ));
        }
    }
}

/// Secrets and configs the services use must have their files before anything is created.
fn check_files(doc: &Doc) -> Result<(), Error> {
    for top in ["secrets", "configs"] {
        let used: BTreeSet<&str> = services(&doc.value)
            .flat_map(|(_, s)| s[top].as_array().into_iter().flatten())
            .filter_map(|r| r["source"].as_str())
            .collect();
        for (k, r) in doc.value[top].as_object().into_iter().flatten() {
            if !used.contains(k.as_str()) {
                continue;
            }
            if let Some(f) = r["file"].as_str() {
                if !Path::new(f).exists() {
                    let singular = top.trim_end_matches('s');
                    return Err(pos_err(
                        doc,
                        &child(&child(&format!("/{top}"), k), "file"),
                        format!("{singular} {k:?}: file {f} not found"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn refuse(doc: &Doc, pointer: &str, rest: &crate::model::Rest) -> Result<(), Error> {
    for k in rest.keys() {
        if k.starts_with("x-") {
            continue;
        }
        let at = child(pointer, k);
        return Err(pos_err(
            doc,
            &at,
            format!("{}: not supported by berth compose", dotted(&at)),
        ));
    }
    Ok(())
}

/// Every key berth does not carry out is an error naming it and where it is written.
fn refuse_unsupported(doc: &Doc, m: &crate::model::Project, swarm: bool) -> Result<(), Error> {
    // The obsolete top-level `version` is only warned about, as Compose v2 does.
    let mut top = m.rest.clone();
    top.remove("version");
    refuse(doc, "", &top)?;
    for (n, s) in &m.services {
        let at = child("/services", n);
        refuse(doc, &at, &s.rest)?;
        if let Some(b) = &s.build {
            refuse(doc, &child(&at, "build"), &b.rest)?;
        }
        if let Some(d) = &s.deploy {
            if !swarm {
                refuse(doc, &child(&at, "deploy"), &d.rest)?;
            }
            if let Some(r) = &d.resources {
                for (k, res) in [("limits", &r.limits), ("reservations", &r.reservations)] {
                    if let Some(res) = res {
                        refuse(
                            doc,
                            &child(&child(&child(&at, "deploy"), "resources"), k),
                            &res.rest,
                        )?;
                    }
                }
            }
        }
        for (i, v) in s.volumes.iter().enumerate() {
            let vp = format!("{}/{i}", child(&at, "volumes"));
            refuse(doc, &vp, &v.rest)?;
            if let Some(b) = &v.bind {
                refuse(doc, &child(&vp, "bind"), &b.rest)?;
            }
            if let Some(o) = &v.volume {
                refuse(doc, &child(&vp, "volume"), &o.rest)?;
            }
            if let Some(t) = &v.tmpfs {
                refuse(doc, &child(&vp, "tmpfs"), &t.rest)?;
            }
        }
        if let Some(d) = &s.develop {
            let dp = child(&at, "develop");
            refuse(doc, &dp, &d.rest)?;
            for (i, w) in d.watch.iter().enumerate() {
                refuse(doc, &format!("{}/{i}", child(&dp, "watch")), &w.rest)?;
            }
        }
        for (k, net) in s.networks.iter().flatten() {
            if let Some(net) = net {
                refuse(doc, &child(&child(&at, "networks"), k), &net.rest)?;
            }
        }
        if s.platform.as_deref().is_some_and(|p| !host_platform(p)) {
            return Err(pos_err(
                doc,
                &child(&at, "platform"),
                format!(
                    "{}: platform {:?} is not this host's (linux/{})",
                    dotted(&child(&at, "platform")),
                    s.platform.as_deref().unwrap_or(""),
                    host_arch()
                ),
            ));
        }
    }
    for (top, map) in [("networks", &m.networks)] {
        for (k, n) in map {
            refuse(doc, &child(&format!("/{top}"), k), &n.rest)?;
        }
    }
    for (k, v) in &m.volumes {
        refuse(doc, &child("/volumes", k), &v.rest)?;
    }
    for (top, map) in [("secrets", &m.secrets), ("configs", &m.configs)] {
        for (k, o) in map {
            let at = child(&format!("/{top}"), k);
            refuse(doc, &at, &o.rest)?;
            if o.external && !swarm {
                return Err(pos_err(
                    doc,
                    &child(&at, "external"),
                    format!(
                        "{}: external {top} live in a swarm; not supported by berth compose",
                        dotted(&at)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn host_platform(p: &str) -> bool {
    let mut parts = p.split('/');
    parts.next() == Some("linux") && parts.next().is_none_or(|a| a == host_arch())
}
