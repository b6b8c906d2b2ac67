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

/// Loads one file (every document, merged in order) up to its canonical form.
fn load_file(
    path: &Path,
    base_dir: &Path,
    env: &Env,
    warn: &mut Vec<String>,
) -> Result<Doc, Error> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Error::new(format!("reading the compose file from stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Error::new(format!("open {}: {e}", path.display())))?
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
    base_dir: &Path,
    env: &Env,
    warn: &mut Vec<String>,
    stack: &mut Vec<PathBuf>,
) -> Result<Doc, Error> {
    stack.push(path.to_path_buf());
    let mut doc = load_file(path, base_dir, env, warn)?;
    for inc in super::include::entries(&doc)? {
        inc.check_cycle(stack)?;
        let dir = inc.directory();
        let mut sub_env = Env::default();
        for (k, v) in std::env::vars() {
            sub_env.vars.insert(k, v);
        }
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
            let d = load_complete(p, &dir, &sub_env, warn, stack)?;
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
        let d = load_file(p, dir, env, &mut w)?;
        cache.insert(p.to_path_buf(), d.clone());
        Ok(d)
    };
    super::extends::resolve(&mut doc, path, &mut other)?;
    stack.pop();
    Ok(doc)
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
    // -p and COMPOSE_PROJECT_NAME are checked, not normalized; and `${COMPOSE_PROJECT_NAME}`
    // reads them.
    let explicit = o
        .project_name
        .clone()
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").filter(|s| !s.is_empty()));
    if let Some(n) = &explicit {
        if normalize_name(n) != *n || n.is_empty() {
            return Err(invalid_name(n));
        }
        env.vars.insert("COMPOSE_PROJECT_NAME".into(), n.clone());
    }
    // Starting from an empty tree gives the first file the merge's duplicate removal too.
    let mut doc = Doc::default();
    let mut stack = Vec::new();
    for f in &files {
        let d = load_complete(f, &working_dir, &env, &mut warnings, &mut stack)?;
        super::merge::merge(&mut doc, d)?;
    }
    let name = match explicit {
        Some(n) => n,
        None => {
            let from_file = doc.value["name"].as_str().map(normalize_name);
            from_file.filter(|n| !n.is_empty()).unwrap_or_else(|| {
                normalize_name(
                    &working_dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            })
        }
    };
    if name.is_empty() {
        return Err(Error::new("project name must not be empty"));
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
    check_references(&doc)?;
    let disabled = apply_profiles(&mut doc, &profiles, &o.services)?;
    normalize(&mut doc.value, &name);
    resolve_environment(&mut doc, &env)?;
    check_files(&doc)?;
    let model: crate::model::Project = serde_json::from_value(doc.value.clone())
        .map_err(|e| Error::new(format!("invalid compose project: {e}")))?;
    refuse_unsupported(&doc, &model)?;
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
/// `*` enables all; named services and their dependencies are enabled whatever theirs).
fn apply_profiles(
    doc: &mut Doc,
    profiles: &[String],
    named: &[String],
) -> Result<Vec<String>, Error> {
    let v = &doc.value;
    let mut on: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = Vec::new();
    for (n, s) in services(v) {
        let own: Vec<&str> = s["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if own.is_empty()
            || profiles
                .iter()
                .any(|p| p == "*" || own.contains(&p.as_str()))
            || named.contains(n)
        {
            stack.push(n.clone());
        }
    }
    while let Some(n) = stack.pop() {
        if !on.insert(n.clone()) {
            continue;
        }
        for d in v["services"][&n]["depends_on"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let required = d.1["required"].as_bool().unwrap_or(true);
            if required && v["services"].get(d.0).is_some() {
                stack.push(d.0.clone());
            }
        }
    }
    let mut disabled = Vec::new();
    if let Some(m) = doc.value["services"].as_object_mut() {
        let all: Vec<String> = m.keys().cloned().collect();
        for n in all {
            if !on.contains(&n) {
                m.remove(&n);
                disabled.push(n);
            }
        }
        // Optional dependencies on disabled services are dropped.
        for s in m.values_mut() {
            if let Some(d) = s.get_mut("depends_on").and_then(Value::as_object_mut) {
                d.retain(|k, _| on.contains(k));
            }
        }
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
            if o["networks"].get("default").is_some() && !has_mode {
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
            for (k, v) in read_env_file(p, env)? {
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

/// Secrets and configs from files must exist before anything is created.
fn check_files(doc: &Doc) -> Result<(), Error> {
    for top in ["secrets", "configs"] {
        for (k, r) in doc.value[top].as_object().into_iter().flatten() {
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
fn refuse_unsupported(doc: &Doc, m: &crate::model::Project) -> Result<(), Error> {
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
            refuse(doc, &child(&at, "deploy"), &d.rest)?;
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
            refuse(doc, &child(&format!("/{top}"), k), &o.rest)?;
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
