//! The canonical tree: every short syntax of one file rewritten to Compose's long form and every
//! relative path made absolute (the contract in docs: `docker compose config --format json`),
//! keeping a position for each node it creates.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{Map, Value};

use super::{child, dotted, Doc, Error, Marks, Pos};

/// Rewrites `doc` to its canonical form; relative paths are resolved against `base_dir`, and
/// `~` against `$HOME`.
pub fn canonical(doc: &mut Doc, base_dir: &Path) -> Result<(), Error> {
    let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    canonical_with(doc, base_dir, home.as_deref())
}

fn canonical_with(doc: &mut Doc, base_dir: &Path, home: Option<&str>) -> Result<(), Error> {
    let base = base_dir.to_string_lossy();
    let mut cx = Canon {
        marks: &mut doc.marks,
        base: &base,
        home,
    };
    cx.project(&mut doc.value)
}

/// How a list entry without `=` (or a null map value) reads in a key/value mapping.
#[derive(Clone, Copy)]
enum Bare {
    /// `environment`, `build.args`: `"A"` → `A: null` (take the value from the environment).
    Null,
    /// labels, sysctls, annotations: `"A"` → `A: ""`.
    Empty,
}

struct Canon<'a> {
    marks: &'a mut Marks,
    base: &'a str,
    home: Option<&'a str>,
}

/// The children of a map that hold a mapping of resources by name.
const RESOURCES: [&str; 4] = ["networks", "volumes", "secrets", "configs"];

/// Prefixes of a build context that is not a local path.
const REMOTE_CONTEXTS: [&str; 6] = [
    "https://",
    "http://",
    "git://",
    "ssh://",
    "github.com/",
    "git@",
];

impl Canon<'_> {
    fn fail(&self, pointer: &str, msg: impl std::fmt::Display) -> Error {
        Error::at(
            self.marks.nearest(pointer),
            format!("{}: {msg}", dotted(pointer)),
        )
    }

    /// Gives every node under `pointer` that has no position the position of its nearest
    /// ancestor (nodes this pass created).
    fn fill(&mut self, pointer: &str, value: &Value) {
        if self.marks.get(pointer).is_none() {
            if let Some(pos) = self.marks.nearest(pointer).cloned() {
                self.marks.insert(pointer.to_string(), pos);
            }
        }
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    self.fill(&child(pointer, k), v);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.fill(&child(pointer, &i.to_string()), v);
                }
            }
            _ => {}
        }
    }

    /// Moves the positions of the children of `pointer` after they were renamed or renumbered:
    /// each `(old, new)` pair moves the old child's positions to the new one; then `value`'s
    /// remaining new nodes get their nearest ancestor's position.
    fn rekey(&mut self, pointer: &str, moves: &[(String, String)], value: &Value) {
        let old = self.marks.take(pointer);
        let parent: Option<Pos> = old
            .get(pointer)
            .or_else(|| self.marks.nearest(pointer))
            .cloned();
        if let Some(p) = &parent {
            self.marks.insert(pointer.to_string(), p.clone());
        }
        for (from, to) in moves {
            let (from, to) = (child(pointer, from), child(pointer, to));
            let moved = old.moved(&from, &to);
            if moved.get(&to).is_none() {
                if let Some(p) = old.nearest(&from).or(parent.as_ref()) {
                    self.marks.insert(to.clone(), p.clone());
                }
            }
            self.marks.extend(moved);
        }
        self.fill(pointer, value);
    }

    /// A path made absolute: `~` is `$HOME`, a relative path is joined to the base directory;
    /// joined paths are cleaned, an absolute path is kept as written.
    fn abs(&self, p: &str) -> String {
        if p.is_empty() {
            return String::new();
        }
        if let (Some(rest), Some(home)) = (p.strip_prefix('~'), self.home) {
            return clean(&format!("{home}/{rest}"));
        }
        if p.starts_with('/') {
            p.to_string()
        } else {
            clean(&format!("{}/{p}", self.base))
        }
    }

    /// A string node made an absolute path in place.
    fn abs_in_place(&self, v: &mut Value) {
        if let Value::String(s) = v {
            *s = self.abs(s);
        }
    }

    /// A build context: local paths made absolute, URLs and `service:` references kept.
    fn abs_context(&self, v: &mut Value) {
        if let Value::String(s) = v {
            let remote = s.contains("://")
                || s.starts_with("service:")
                || REMOTE_CONTEXTS.iter().any(|r| s.starts_with(r));
            if !remote {
                *s = self.abs(s);
            }
        }
    }

    fn project(&mut self, root: &mut Value) -> Result<(), Error> {
        let Some(root) = root.as_object_mut() else {
            return Ok(());
        };
        if let Some(Value::Object(services)) = root.get_mut("services") {
            for (name, svc) in services.iter_mut() {
                if let Value::Object(svc) = svc {
                    self.service(&child("/services", name), svc)?;
                }
            }
        }
        for kind in RESOURCES {
            if let Some(Value::Object(all)) = root.get_mut(kind) {
                for (name, res) in all.iter_mut() {
                    self.resource(kind, &format!("/{kind}/{}", super::escape(name)), res)?;
                }
            }
        }
        if let Some(v) = root.get_mut("include") {
            self.include("/include", v);
        }
        Ok(())
    }

    fn service(&mut self, ptr: &str, svc: &mut Map<String, Value>) -> Result<(), Error> {
        for (key, v) in svc.iter_mut() {
            let at = child(ptr, key);
            match key.as_str() {
                "build" => self.build(&at, v)?,
                "command" | "entrypoint" => self.command(&at, v)?,
                "environment" => self.mapping(&at, v, Bare::Null, true)?,
                "labels" | "sysctls" | "annotations" => self.mapping(&at, v, Bare::Empty, false)?,
                "label_file" => {
                    self.string_to_list(&at, v);
                    self.each(v, |cx, _, item| cx.abs_in_place(item));
                }
                "env_file" => self.env_file(&at, v),
                "ports" => self.ports(&at, v)?,
                "expose" => {
                    if let Value::Array(items) = v {
                        for item in items {
                            if let Some(s) = scalar_string(item) {
                                *item = Value::String(s);
                            }
                        }
                    }
                }
                "volumes" => self.items(&at, v, Canon::volume)?,
                "tmpfs" | "dns" | "dns_search" | "dns_opt" => self.string_to_list(&at, v),
                "networks" | "models" => self.names_to_map(&at, v),
                "depends_on" => self.depends_on(&at, v),
                "extends" => {
                    if let Value::String(s) = v {
                        *v = Value::Object(Map::from_iter([(
                            "service".to_string(),
                            Value::String(s.clone()),
                        )]));
                        self.fill(&at, v);
                    } else if let Some(file) = v.get_mut("file") {
                        self.abs_in_place(file);
                    }
                }
                "ulimits" => self.ulimits(&at, v),
                "devices" => self.items(&at, v, Canon::device)?,
                "secrets" | "configs" => self.items(&at, v, Canon::file_mount)?,
                "healthcheck" => {
                    if let Some(test) = v.get_mut("test").filter(|t| t.is_string()) {
                        let s = test.take();
                        *test = Value::Array(vec![Value::String("CMD-SHELL".into()), s]);
                        self.fill(&child(&at, "test"), test);
                    }
                }
                "develop" => self.develop(&at, v),
                "gpus" if v.is_string() => {
                    *v = serde_json::json!([{"count": "all"}]);
                    self.fill(&at, v);
                }
                "post_start" | "pre_stop" => {
                    if let Value::Array(hooks) = v {
                        for (i, hook) in hooks.iter_mut().enumerate() {
                            let h = child(&at, &i.to_string());
                            if let Some(c) = hook.get_mut("command") {
                                self.command(&child(&h, "command"), c)?;
                            }
                            if let Some(e) = hook.get_mut("environment") {
                                self.mapping(&child(&h, "environment"), e, Bare::Null, true)?;
                            }
                        }
                    }
                }
                "extra_hosts" => self.extra_hosts(&at, v)?,
                "deploy" => {
                    if let Some(labels) = v.get_mut("labels") {
                        self.mapping(&child(&at, "labels"), labels, Bare::Empty, false)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies `f` to each item of a sequence (with its index).
    fn each(&mut self, v: &mut Value, mut f: impl FnMut(&mut Self, usize, &mut Value)) {
        if let Value::Array(items) = v {
            for (i, item) in items.iter_mut().enumerate() {
                f(self, i, item);
            }
        }
    }

    /// Applies a fallible per-item rewrite to each item of a sequence at `ptr`.
    fn items(
        &mut self,
        ptr: &str,
        v: &mut Value,
        f: fn(&mut Self, &str, &mut Value) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let Value::Array(items) = v {
            for (i, item) in items.iter_mut().enumerate() {
                let at = child(ptr, &i.to_string());
                f(self, &at, item)?;
                self.fill(&at, item);
            }
        }
        Ok(())
    }

    fn string_to_list(&mut self, ptr: &str, v: &mut Value) {
        if v.is_string() {
            *v = Value::Array(vec![v.take()]);
            self.fill(ptr, v);
        }
    }

    /// `["a", "b"]` → `{"a": null, "b": null}` (service networks, models).
    fn names_to_map(&mut self, ptr: &str, v: &mut Value) {
        let Value::Array(items) = v else { return };
        let mut map = Map::new();
        let mut moves = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(name) = scalar_string(item) {
                moves.push((i.to_string(), name.clone()));
                map.insert(name, Value::Null);
            }
        }
        *v = Value::Object(map);
        self.rekey(ptr, &moves, v);
    }

    /// A key/value mapping: a `["K=V", "K"]` list becomes a map, and values become strings
    /// (null per `bare`).
    fn mapping(&mut self, ptr: &str, v: &mut Value, bare: Bare, env: bool) -> Result<(), Error> {
        let bare_value = || match bare {
            Bare::Null => Value::Null,
            Bare::Empty => Value::String(String::new()),
        };
        match v {
            Value::Object(m) => {
                for val in m.values_mut() {
                    if val.is_null() {
                        *val = bare_value();
                    } else if let Some(s) = scalar_string(val) {
                        *val = Value::String(s);
                    }
                }
            }
            Value::Array(items) => {
                let mut map = Map::new();
                let mut moves = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Some(entry) = scalar_string(item) else {
                        continue;
                    };
                    let (key, val) = match entry.split_once('=') {
                        Some((k, val)) => (k.to_string(), Value::String(val.to_string())),
                        None => (entry.clone(), bare_value()),
                    };
                    if env && key.ends_with(char::is_whitespace) {
                        return Err(self.fail(
                            &child(ptr, &i.to_string()),
                            format!("environment variable {key} is declared with a trailing space"),
                        ));
                    }
                    moves.push((i.to_string(), key.clone()));
                    map.insert(key, val);
                }
                *v = Value::Object(map);
                self.rekey(ptr, &moves, v);
            }
            _ => {}
        }
        Ok(())
    }

    fn command(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        if let Value::String(s) = v {
            let words = shlex::split(s).ok_or_else(|| {
                self.fail(ptr, format!("unbalanced quotes in command line {s:?}"))
            })?;
            *v = Value::Array(words.into_iter().map(Value::String).collect());
            self.fill(ptr, v);
        }
        Ok(())
    }

    fn build(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        if v.is_string() {
            let mut ctx = v.take();
            self.abs_context(&mut ctx);
            *v = Value::Object(Map::from_iter([("context".to_string(), ctx)]));
            self.fill(ptr, v);
            return Ok(());
        }
        let Value::Object(b) = v else { return Ok(()) };
        for (key, v) in b.iter_mut() {
            let at = child(ptr, key);
            match key.as_str() {
                "context" => self.abs_context(v),
                "args" => self.mapping(&at, v, Bare::Null, false)?,
                "labels" => self.mapping(&at, v, Bare::Empty, false)?,
                "extra_hosts" => self.extra_hosts(&at, v)?,
                "secrets" => self.items(&at, v, Canon::file_mount)?,
                "ulimits" => self.ulimits(&at, v),
                "additional_contexts" => {
                    self.key_values(&at, v)?;
                    if let Value::Object(m) = v {
                        for c in m.values_mut() {
                            self.abs_context(c);
                        }
                    }
                }
                "ssh" => self.ssh(&at, v)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// A strict `["k=v"]` list → map (build.additional_contexts); an entry without `=` is an error.
    fn key_values(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        let Value::Array(items) = v else {
            return Ok(());
        };
        let mut map = Map::new();
        let mut moves = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let entry = scalar_string(item).unwrap_or_default();
            let Some((k, val)) = entry.split_once('=') else {
                return Err(self.fail(
                    &child(ptr, &i.to_string()),
                    format!("invalid value {entry:?}, expected key=value"),
                ));
            };
            moves.push((i.to_string(), k.to_string()));
            map.insert(k.to_string(), Value::String(val.to_string()));
        }
        *v = Value::Object(map);
        self.rekey(ptr, &moves, v);
        Ok(())
    }

    /// build.ssh: `["default", "id=path"]` → `{"default": null, "id": "<abs path>"}`.
    fn ssh(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        if let Value::Array(items) = v {
            let mut map = Map::new();
            let mut moves = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let entry = scalar_string(item).unwrap_or_default();
                let (id, path) = match entry.split_once('=') {
                    Some((id, path)) => (id.to_string(), Value::String(path.to_string())),
                    None if entry == "default" => (entry.clone(), Value::Null),
                    None => {
                        return Err(self.fail(
                            &child(ptr, &i.to_string()),
                            format!("invalid ssh key {entry:?}"),
                        ))
                    }
                };
                moves.push((i.to_string(), id.clone()));
                map.insert(id, path);
            }
            *v = Value::Object(map);
            self.rekey(ptr, &moves, v);
        }
        if let Value::Object(m) = v {
            for path in m.values_mut() {
                self.abs_in_place(path);
            }
        }
        Ok(())
    }

    fn env_file(&mut self, ptr: &str, v: &mut Value) {
        self.string_to_list(ptr, v);
        self.each(v, |cx, _, item| {
            if item.is_string() {
                *item = Value::Object(Map::from_iter([
                    ("path".to_string(), item.take()),
                    ("required".to_string(), Value::Bool(true)),
                ]));
            }
            if let Value::Object(m) = item {
                if let Some(path) = m.get_mut("path") {
                    cx.abs_in_place(path);
                }
                m.entry("required").or_insert(Value::Bool(true));
            }
        });
        self.fill(ptr, v);
    }

    fn ports(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        let Value::Array(items) = v else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(items.len());
        let mut moves = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            let at = child(ptr, &i.to_string());
            let spec = match item {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
            let produced = match spec {
                Some(spec) => parse_port(&spec)
                    .map_err(|e| self.fail(&at, format!("invalid port {spec:?}: {e}")))?,
                None => {
                    if let Value::Object(m) = item {
                        port_defaults(m).map_err(|e| self.fail(&at, e))?;
                    }
                    vec![item.take()]
                }
            };
            for p in produced {
                moves.push((i.to_string(), out.len().to_string()));
                out.push(p);
            }
        }
        *v = Value::Array(out);
        self.rekey(ptr, &moves, v);
        Ok(())
    }

    fn volume(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        if let Value::String(spec) = v {
            let parsed = parse_volume(spec)
                .map_err(|e| self.fail(ptr, format!("invalid volume {spec:?}: {e}")))?;
            *v = Value::Object(parsed);
        }
        let Value::Object(m) = v else { return Ok(()) };
        if m.get("type").and_then(Value::as_str) == Some("bind") {
            match m.get_mut("source") {
                Some(src) => self.abs_in_place(src),
                None => {
                    return Err(self.fail(
                        ptr,
                        "invalid mount config for type \"bind\": field source must not be empty",
                    ))
                }
            }
        }
        Ok(())
    }

    fn depends_on(&mut self, ptr: &str, v: &mut Value) {
        let defaults = |m: &mut Map<String, Value>| {
            m.entry("condition")
                .or_insert_with(|| Value::String("service_started".into()));
            m.entry("required").or_insert(Value::Bool(true));
            m.entry("restart").or_insert(Value::Bool(false));
        };
        match v {
            Value::Array(items) => {
                let mut map = Map::new();
                let mut moves = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = scalar_string(item) {
                        let mut dep = Map::new();
                        defaults(&mut dep);
                        moves.push((i.to_string(), name.clone()));
                        map.insert(name, Value::Object(dep));
                    }
                }
                *v = Value::Object(map);
                self.rekey(ptr, &moves, v);
            }
            Value::Object(m) => {
                for dep in m.values_mut() {
                    if let Value::Object(d) = dep {
                        defaults(d);
                    }
                }
                self.fill(ptr, v);
            }
            _ => {}
        }
    }

    fn ulimits(&mut self, ptr: &str, v: &mut Value) {
        if let Value::Object(m) = v {
            for limit in m.values_mut() {
                let n = match limit {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                if let Some(n) = n {
                    *limit = serde_json::json!({"soft": n, "hard": n});
                }
            }
            self.fill(ptr, v);
        }
    }

    fn device(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        let Value::String(spec) = v else {
            return Ok(());
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, perms) = match parts.as_slice() {
            [src] => (*src, "", "rwm"),
            [src, dst] => (*src, *dst, "rwm"),
            [src, dst, perms] => (*src, *dst, *perms),
            _ => {
                return Err(self.fail(
                    ptr,
                    format!("confusing device mapping {spec:?}, please use long syntax"),
                ))
            }
        };
        let dst = if dst.is_empty() { src } else { dst };
        *v = serde_json::json!({"source": src, "target": dst, "permissions": perms});
        Ok(())
    }

    /// A service's (or build's) secret or config: `"s"` → `{"source": "s"}`.
    fn file_mount(&mut self, _ptr: &str, v: &mut Value) -> Result<(), Error> {
        if v.is_string() {
            *v = Value::Object(Map::from_iter([("source".to_string(), v.take())]));
        }
        Ok(())
    }

    fn develop(&mut self, ptr: &str, v: &mut Value) {
        let Some(Value::Array(watch)) = v.get_mut("watch") else {
            return;
        };
        for (i, w) in watch.iter_mut().enumerate() {
            let at = child(&child(ptr, "watch"), &i.to_string());
            if let Some(path) = w.get_mut("path") {
                self.abs_in_place(path);
            }
            for key in ["ignore", "include"] {
                if let Some(list) = w.get_mut(key) {
                    self.string_to_list(&child(&at, key), list);
                }
            }
        }
    }

    /// `extra_hosts` → `["host:ip", ...]` from a map `{host: ip | [ips]}` or from `host=ip` /
    /// `host:ip` entries (several comma-separated IPs give several entries).
    fn extra_hosts(&mut self, ptr: &str, v: &mut Value) -> Result<(), Error> {
        let mut pairs: Vec<(String, String, String)> = Vec::new(); // (old segment, host, ip)
        match v {
            Value::Object(m) => {
                for (host, ips) in m.iter() {
                    let ips: Vec<String> = match ips {
                        Value::Array(a) => a.iter().filter_map(scalar_string).collect(),
                        Value::Null => vec![String::new()],
                        other => scalar_string(other).into_iter().collect(),
                    };
                    for ip in ips {
                        pairs.push((host.clone(), host.clone(), ip));
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let entry = scalar_string(item).unwrap_or_default();
                    let Some((host, ips)) = entry.split_once('=').or_else(|| entry.split_once(':'))
                    else {
                        return Err(self.fail(
                            &child(ptr, &i.to_string()),
                            format!("invalid additional host, missing IP: {entry}"),
                        ));
                    };
                    for ip in ips.split(',') {
                        pairs.push((i.to_string(), host.to_string(), ip.to_string()));
                    }
                }
            }
            _ => return Ok(()),
        }
        let mut out = Vec::with_capacity(pairs.len());
        let mut moves = Vec::with_capacity(pairs.len());
        for (seg, host, ip) in pairs {
            if host.is_empty() || host.contains([':', '=']) {
                return Err(self.fail(&child(ptr, &seg), format!("bad host name '{host}'")));
            }
            let ip = match ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                Some(inner) if !inner.is_empty() => inner.to_string(),
                _ => ip,
            };
            moves.push((seg, out.len().to_string()));
            out.push(Value::String(format!("{host}:{ip}")));
        }
        *v = Value::Array(out);
        self.rekey(ptr, &moves, v);
        Ok(())
    }

    /// A top-level network, volume, secret or config.
    fn resource(&mut self, kind: &str, ptr: &str, v: &mut Value) -> Result<(), Error> {
        if v.is_null() {
            *v = Value::Object(Map::new());
            return Ok(());
        }
        let Value::Object(m) = v else { return Ok(()) };
        if let Some(Value::Object(ext)) = m.get("external") {
            let ext_name = ext.get("name").cloned();
            m.insert("external".into(), Value::Bool(true));
            self.marks.take(&child(ptr, "external"));
            if let Some(p) = self.marks.nearest(ptr).cloned() {
                self.marks.insert(child(ptr, "external"), p);
            }
            if let Some(ext_name) = ext_name {
                match m.get("name") {
                    Some(name) if *name != ext_name => {
                        return Err(self.fail(ptr, "name and external.name conflict; only use name"))
                    }
                    Some(_) => {}
                    None => {
                        m.insert("name".into(), ext_name);
                    }
                }
            }
        }
        if let Some(labels) = m.get_mut("labels") {
            self.mapping(&child(ptr, "labels"), labels, Bare::Empty, false)?;
        }
        match kind {
            "secrets" | "configs" => {
                if let Some(file) = m.get_mut("file") {
                    self.abs_in_place(file);
                }
            }
            "volumes" if m.get("driver").and_then(Value::as_str) == Some("local") => {
                if let Some(Value::Object(opts)) = m.get_mut("driver_opts") {
                    if opts.get("o").and_then(Value::as_str) == Some("bind") {
                        if let Some(dev) = opts.get_mut("device") {
                            self.abs_in_place(dev);
                        }
                    }
                }
            }
            _ => {}
        }
        self.fill(ptr, v);
        Ok(())
    }

    fn include(&mut self, ptr: &str, v: &mut Value) {
        self.each(v, |cx, i, item| {
            let at = child(ptr, &i.to_string());
            if item.is_string() {
                *item = Value::Object(Map::from_iter([("path".to_string(), item.take())]));
            }
            if let Value::Object(m) = item {
                for key in ["path", "env_file"] {
                    if let Some(list) = m.get_mut(key) {
                        if list.is_string() {
                            *list = Value::Array(vec![list.take()]);
                        }
                        cx.each(list, |cx, _, p| cx.abs_in_place(p));
                    }
                }
                if let Some(dir) = m.get_mut("project_directory") {
                    cx.abs_in_place(dir);
                }
            }
            cx.fill(&at, item);
        });
    }
}

/// A scalar as a string: strings as written, numbers and booleans printed.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A long port entry completed: mode `ingress`, protocol `tcp`, `published` a string,
/// `target` a number.
fn port_defaults(m: &mut Map<String, Value>) -> Result<(), String> {
    m.entry("mode")
        .or_insert_with(|| Value::String("ingress".into()));
    m.entry("protocol")
        .or_insert_with(|| Value::String("tcp".into()));
    if let Some(p) = m.get_mut("published") {
        if let Value::Number(n) = p {
            *p = Value::String(n.to_string());
        }
    }
    if let Some(t) = m.get_mut("target") {
        if let Value::String(s) = t {
            let n = port_number(s).ok_or_else(|| format!("invalid target port {s:?}"))?;
            *t = Value::from(n);
        }
    }
    Ok(())
}

/// A port number: decimal digits only, 0 to 65535.
fn port_number(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `80` or `8000-8010`.
fn port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        None => port_number(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (port_number(a)?, port_number(b)?);
            (a <= b).then_some((a, b))
        }
    }
}

/// A short port spec (`[[ip:]host:]container[/proto]`, ranges allowed) as long entries, the
/// way Docker's port-spec parser reads it.
fn parse_port(spec: &str) -> Result<Vec<Value>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let (raw_ip, host, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (container, proto) = match container.split('/').collect::<Vec<_>>().as_slice() {
        [c] => (*c, "tcp"),
        [c, "", ..] => (*c, "tcp"),
        [c, p, ..] => (*c, *p),
        [] => ("", "tcp"),
    };
    let ip = if let Some(inner) = raw_ip.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .ok_or_else(|| format!("invalid ip address {raw_ip}"))?
            .to_string()
    } else if raw_ip.contains(':') {
        return Err(format!(
            "invalid ip address {raw_ip}: an IPv6 address needs brackets"
        ));
    } else {
        raw_ip.clone()
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid ip address: {ip}"));
    }
    if container.is_empty() {
        return Err("no port specified".into());
    }
    let (start, end) =
        port_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    let (hstart, hend) = if host.is_empty() {
        (0, 0)
    } else {
        port_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?
    };
    if !host.is_empty() && end - start != hend - hstart && end != start {
        return Err(format!(
            "invalid ranges specified for container and host ports: {container} and {host}"
        ));
    }
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid proto: {proto}"));
    }
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let mut m = Map::new();
        m.insert("mode".into(), Value::String("ingress".into()));
        if !ip.is_empty() {
            m.insert("host_ip".into(), Value::String(ip.clone()));
        }
        m.insert("target".into(), Value::from(start + i));
        if !host.is_empty() {
            let published = if start == end && hstart != hend {
                format!("{hstart}-{hend}")
            } else {
                (hstart + i).to_string()
            };
            m.insert("published".into(), Value::String(published));
        }
        m.insert("protocol".into(), Value::String(proto.clone()));
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// Mount propagation words accepted as short volume options.
const PROPAGATIONS: [&str; 6] = [
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

/// A short volume spec (`[source:]target[:options]`) as a long entry.
fn parse_volume(spec: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    match spec.len() {
        0 => return Err("empty volume spec".into()),
        1 | 2 => {
            out.insert("type".into(), Value::String("volume".into()));
            out.insert("target".into(), Value::String(spec.to_string()));
            return Ok(out);
        }
        _ => {}
    }
    // Split on ':' outside `${...}` (a literal left by `$${...}`).
    let mut fields: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut depth = 0usize;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek() == Some(&'{') => {
                depth += 1;
                buf.push(c);
            }
            '}' if depth > 0 => {
                depth -= 1;
                buf.push(c);
            }
            ':' if depth == 0 => fields.push(std::mem::take(&mut buf)),
            _ => buf.push(c),
        }
    }
    fields.push(buf);
    if fields.iter().any(String::is_empty) {
        return Err("empty section between colons".into());
    }
    let (source, target, options) = match fields.as_slice() {
        [target] => ("", target.as_str(), ""),
        [source, target] => (source.as_str(), target.as_str(), ""),
        [source, target, options] => (source.as_str(), target.as_str(), options.as_str()),
        _ => return Err("too many colons".into()),
    };
    let mut read_only = false;
    let mut nocopy = false;
    let mut bind = Map::new();
    for option in options.split(',') {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => nocopy = true,
            "z" | "Z" => {
                bind.insert("selinux".into(), Value::String(option.into()));
            }
            p if PROPAGATIONS.contains(&p) => {
                bind.insert("propagation".into(), Value::String(p.into()));
            }
            _ => {}
        }
    }
    let is_bind = source.starts_with(['.', '/', '~']);
    out.insert(
        "type".into(),
        Value::String(if is_bind { "bind" } else { "volume" }.into()),
    );
    if !source.is_empty() {
        out.insert("source".into(), Value::String(source.into()));
    }
    out.insert("target".into(), Value::String(clean(target)));
    if read_only {
        out.insert("read_only".into(), Value::Bool(true));
    }
    if is_bind {
        bind.insert("create_host_path".into(), Value::Bool(true));
    }
    if !bind.is_empty() {
        out.insert("bind".into(), Value::Object(bind));
    }
    if nocopy {
        out.insert("volume".into(), serde_json::json!({"nocopy": true}));
    }
    Ok(out)
}

/// A path cleaned lexically (`.` and empty segments dropped, `..` folded), as Go's
/// `path.Clean` does.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    const HOME: &str = "/home/u";
    const BASE: &str = "/proj";

    fn pos(line: usize) -> Pos {
        Pos {
            file: Arc::new(PathBuf::from("compose.yaml")),
            line,
            col: 1,
        }
    }

    /// Canonicalizes `value` with positions at the given pointers.
    fn run(value: Value, lines: &[(&str, usize)]) -> Result<Doc, Error> {
        let mut marks = Marks::default();
        for (p, line) in lines {
            marks.insert((*p).to_string(), pos(*line));
        }
        let mut doc = Doc {
            value,
            marks,
            tags: Vec::new(),
        };
        canonical_with(&mut doc, Path::new(BASE), Some(HOME))?;
        Ok(doc)
    }

    /// Canonicalizes one key of service `web` and returns its new value.
    fn svc_key(key: &str, value: Value) -> Result<Value, Error> {
        let doc = run(
            json!({"services": {"web": {key: value}}}),
            &[("/services/web", 2), (&format!("/services/web/{key}"), 3)],
        )?;
        Ok(doc.value["services"]["web"][key].clone())
    }

    fn ok(key: &str, value: Value) -> Value {
        match svc_key(key, value.clone()) {
            Ok(v) => v,
            Err(e) => panic!("{key}: {value}: {e}"),
        }
    }

    fn err(key: &str, value: Value) -> Error {
        match svc_key(key, value.clone()) {
            Ok(v) => panic!("{key}: {value}: expected an error, got {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn ports() {
        let p = |host_ip: Option<&str>, published: Option<&str>, target: u16, proto: &str| {
            let mut m = json!({"mode": "ingress", "target": target, "protocol": proto});
            if let Some(ip) = host_ip {
                m["host_ip"] = json!(ip);
            }
            if let Some(pb) = published {
                m["published"] = json!(pb);
            }
            m
        };
        let cases = [
            (json!(["80"]), vec![p(None, None, 80, "tcp")]),
            (json!([80]), vec![p(None, None, 80, "tcp")]),
            (json!(["8080:80"]), vec![p(None, Some("8080"), 80, "tcp")]),
            (
                json!(["127.0.0.1:8080:80/udp"]),
                vec![p(Some("127.0.0.1"), Some("8080"), 80, "udp")],
            ),
            (
                json!(["[::1]:8080:80"]),
                vec![p(Some("::1"), Some("8080"), 80, "tcp")],
            ),
            (json!([":8080:80"]), vec![p(None, Some("8080"), 80, "tcp")]),
            (
                json!(["127.0.0.1::80"]),
                vec![p(Some("127.0.0.1"), None, 80, "tcp")],
            ),
            (json!(["80/SCTP"]), vec![p(None, None, 80, "sctp")]),
            (json!(["80/"]), vec![p(None, None, 80, "tcp")]),
            (
                json!(["8000-8001:80-81"]),
                vec![
                    p(None, Some("8000"), 80, "tcp"),
                    p(None, Some("8001"), 81, "tcp"),
                ],
            ),
            (
                json!(["8000-8010:80"]),
                vec![p(None, Some("8000-8010"), 80, "tcp")],
            ),
            (
                json!(["80-81"]),
                vec![p(None, None, 80, "tcp"), p(None, None, 81, "tcp")],
            ),
            (
                json!([{"target": 80, "published": 8080}]),
                vec![p(None, Some("8080"), 80, "tcp")],
            ),
            (
                json!([{"target": "80", "protocol": "udp", "mode": "host", "x-a": 1}]),
                vec![json!({"target": 80, "protocol": "udp", "mode": "host", "x-a": 1})],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ok("ports", input.clone()), Value::Array(want), "{input}");
        }
        let bad = [
            ("80:abc", "invalid containerPort: abc"),
            ("abc:80", "invalid hostPort: abc"),
            ("127.0.1:8080:80", "invalid ip address: 127.0.1"),
            ("::1:8080:80", "needs brackets"),
            ("[::1:8080:80", "invalid ip address"),
            ("[::1]:8080:80:90", "invalid ip address"),
            ("80/icmp", "invalid proto: icmp"),
            ("8000:80-81", "invalid ranges"),
            ("8000-8002:80-81", "invalid ranges"),
            ("81-80", "invalid containerPort"),
            ("70000", "invalid containerPort"),
            ("+80", "invalid containerPort"),
            ("8080:", "no port specified"),
        ];
        for (spec, why) in bad {
            let e = err("ports", json!(["1", spec]));
            assert!(
                e.msg
                    .starts_with(&format!("services.web.ports[1]: invalid port {spec:?}")),
                "{spec}: {}",
                e.msg
            );
            assert!(e.msg.contains(why), "{spec}: {}", e.msg);
            assert_eq!(e.pos.map(|p| p.line), Some(3));
        }
    }

    #[test]
    fn port_positions_follow_their_entries() {
        let doc = run(
            json!({"services": {"web": {"ports": ["8000-8001:80-81", {"target": 90}]}}}),
            &[
                ("/services/web/ports", 3),
                ("/services/web/ports/0", 4),
                ("/services/web/ports/1", 5),
                ("/services/web/ports/1/target", 6),
            ],
        )
        .expect("canonical");
        let line = |p: &str| doc.marks.get(p).map(|p| p.line);
        assert_eq!(line("/services/web/ports/0"), Some(4));
        assert_eq!(line("/services/web/ports/1"), Some(4));
        assert_eq!(line("/services/web/ports/1/target"), Some(4));
        assert_eq!(line("/services/web/ports/2"), Some(5));
        assert_eq!(line("/services/web/ports/2/target"), Some(6));
        assert_eq!(line("/services/web/ports/2/protocol"), Some(5));
    }

    #[test]
    fn volumes() {
        let cases = [
            (
                "./data:/data",
                json!({"type": "bind", "source": "/proj/data", "target": "/data",
                       "bind": {"create_host_path": true}}),
            ),
            (
                "../x/./y:/y/:ro",
                json!({"type": "bind", "source": "/x/y", "target": "/y", "read_only": true,
                       "bind": {"create_host_path": true}}),
            ),
            (
                "~/cache:/c",
                json!({"type": "bind", "source": "/home/u/cache", "target": "/c",
                       "bind": {"create_host_path": true}}),
            ),
            (
                "/abs/p:/p:rw,z",
                json!({"type": "bind", "source": "/abs/p", "target": "/p",
                       "bind": {"create_host_path": true, "selinux": "z"}}),
            ),
            (
                "/abs:/a:Z,rshared",
                json!({"type": "bind", "source": "/abs", "target": "/a",
                       "bind": {"create_host_path": true, "selinux": "Z", "propagation": "rshared"}}),
            ),
            (
                "data:/var/lib/data",
                json!({"type": "volume", "source": "data", "target": "/var/lib/data"}),
            ),
            (
                "data:/d:ro,nocopy",
                json!({"type": "volume", "source": "data", "target": "/d", "read_only": true,
                       "volume": {"nocopy": true}}),
            ),
            ("/data", json!({"type": "volume", "target": "/data"})),
            ("/d", json!({"type": "volume", "target": "/d"})),
            (
                "${X}:/x",
                json!({"type": "volume", "source": "${X}", "target": "/x"}),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(ok("volumes", json!([spec])), json!([want]), "{spec}");
        }
        let long = ok(
            "volumes",
            json!([{"type": "bind", "source": "./conf", "target": "/etc/conf"},
                   {"type": "volume", "source": "./notapath", "target": "/v"}]),
        );
        assert_eq!(long[0]["source"], json!("/proj/conf"));
        assert_eq!(long[1]["source"], json!("./notapath"));
        for (spec, why) in [
            ("a:b:c:d", "too many colons"),
            ("/a:/b:ro:x", "too many colons"),
            ("a::b", "empty section between colons"),
            ("/a:/b:", "empty section between colons"),
        ] {
            let e = err("volumes", json!([spec]));
            assert_eq!(
                e.msg,
                format!("services.web.volumes[0]: invalid volume {spec:?}: {why}")
            );
            assert_eq!(e.pos.map(|p| p.line), Some(3));
        }
    }

    #[test]
    fn key_value_mappings() {
        let cases = [
            (
                "environment",
                json!(["A=1", "B", "C=", "D=x=y"]),
                json!({"A": "1", "B": null, "C": "", "D": "x=y"}),
            ),
            (
                "environment",
                json!({"A": 1, "B": true, "C": null, "D": 0.5, "E": "s"}),
                json!({"A": "1", "B": "true", "C": null, "D": "0.5", "E": "s"}),
            ),
            ("labels", json!(["a=1", "b"]), json!({"a": "1", "b": ""})),
            (
                "labels",
                json!({"a": 1, "b": null, "c": false}),
                json!({"a": "1", "b": "", "c": "false"}),
            ),
            (
                "sysctls",
                json!(["net.core.somaxconn=1024"]),
                json!({"net.core.somaxconn": "1024"}),
            ),
            (
                "sysctls",
                json!({"net.ipv4.ip_forward": 1}),
                json!({"net.ipv4.ip_forward": "1"}),
            ),
            ("annotations", json!(["a=b"]), json!({"a": "b"})),
        ];
        for (key, input, want) in cases {
            assert_eq!(ok(key, input.clone()), want, "{key}: {input}");
        }
        let e = err("environment", json!(["A=1", "B =2"]));
        assert_eq!(
            e.msg,
            "services.web.environment[1]: environment variable B  is declared with a trailing space"
        );
        // List entries renamed to keys keep their lines.
        let doc = run(
            json!({"services": {"web": {"environment": ["A=1", "B=2"]}}}),
            &[
                ("/services/web/environment", 3),
                ("/services/web/environment/0", 4),
                ("/services/web/environment/1", 5),
            ],
        )
        .expect("canonical");
        assert_eq!(
            doc.marks.get("/services/web/environment/B").map(|p| p.line),
            Some(5)
        );
        assert!(doc.marks.get("/services/web/environment/1").is_none());
        let deploy = ok("deploy", json!({"labels": ["a=b"], "replicas": 2}));
        assert_eq!(deploy, json!({"labels": {"a": "b"}, "replicas": 2}));
    }

    #[test]
    fn commands() {
        let cases = [
            (
                "command",
                json!("echo hello world"),
                json!(["echo", "hello", "world"]),
            ),
            (
                "command",
                json!("sh -c 'echo \"a b\"'"),
                json!(["sh", "-c", "echo \"a b\""]),
            ),
            (
                "command",
                json!(["sh", "-c", "x y"]),
                json!(["sh", "-c", "x y"]),
            ),
            ("command", json!(null), json!(null)),
            (
                "entrypoint",
                json!("/bin/app --flag=\"a b\""),
                json!(["/bin/app", "--flag=a b"]),
            ),
            ("command", json!(""), json!([])),
        ];
        for (key, input, want) in cases {
            assert_eq!(ok(key, input.clone()), want, "{input}");
        }
        let e = err("command", json!("sh -c 'unterminated"));
        assert!(
            e.msg.starts_with("services.web.command: unbalanced quotes"),
            "{}",
            e.msg
        );
        assert_eq!(e.pos.map(|p| p.line), Some(3));
        let hc = ok(
            "healthcheck",
            json!({"test": "curl -f http://localhost", "retries": 3}),
        );
        assert_eq!(
            hc,
            json!({"test": ["CMD-SHELL", "curl -f http://localhost"], "retries": 3})
        );
        let hc = ok("healthcheck", json!({"test": ["CMD", "true"]}));
        assert_eq!(hc, json!({"test": ["CMD", "true"]}));
    }

    #[test]
    fn depends_on() {
        let started = json!({"condition": "service_started", "required": true, "restart": false});
        assert_eq!(
            ok("depends_on", json!(["db", "cache"])),
            json!({"db": started, "cache": started})
        );
        assert_eq!(
            ok(
                "depends_on",
                json!({"db": {"condition": "service_healthy"}})
            ),
            json!({"db": {"condition": "service_healthy", "required": true, "restart": false}})
        );
        assert_eq!(
            ok(
                "depends_on",
                json!({"db": {"condition": "service_started", "required": false, "restart": true}})
            ),
            json!({"db": {"condition": "service_started", "required": false, "restart": true}})
        );
    }

    #[test]
    fn build() {
        let cases = [
            (json!("."), json!({"context": "/proj"})),
            (json!("./app"), json!({"context": "/proj/app"})),
            (
                json!("https://github.com/a/b.git#main"),
                json!({"context": "https://github.com/a/b.git#main"}),
            ),
            (
                json!("git@github.com:a/b.git"),
                json!({"context": "git@github.com:a/b.git"}),
            ),
            (
                json!("github.com/a/b"),
                json!({"context": "github.com/a/b"}),
            ),
            (
                json!({"context": "app", "dockerfile": "Dockerfile.dev", "args": ["A=1", "B"],
                       "labels": ["l"], "extra_hosts": {"h": "1.2.3.4"}, "secrets": ["s"],
                       "additional_contexts": ["base=../base", "img=docker-image://alpine"],
                       "ssh": ["default", "key=~/.ssh/id"]}),
                json!({"context": "/proj/app", "dockerfile": "Dockerfile.dev",
                       "args": {"A": "1", "B": null}, "labels": {"l": ""},
                       "extra_hosts": ["h:1.2.3.4"], "secrets": [{"source": "s"}],
                       "additional_contexts": {"base": "/base", "img": "docker-image://alpine"},
                       "ssh": {"default": null, "key": "/home/u/.ssh/id"}}),
            ),
            (
                json!({"args": {"N": 1, "B": false, "E": null}}),
                json!({"args": {"N": "1", "B": "false", "E": null}}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ok("build", input.clone()), want, "{input}");
        }
        let e = err("build", json!({"additional_contexts": ["nokey"]}));
        assert!(e.msg.contains("expected key=value"), "{}", e.msg);
    }

    #[test]
    fn env_file() {
        let cases = [
            (
                json!(".env"),
                json!([{"path": "/proj/.env", "required": true}]),
            ),
            (
                json!(["a.env", {"path": "/b.env", "required": false}, {"path": "c.env", "format": "raw"}]),
                json!([{"path": "/proj/a.env", "required": true},
                       {"path": "/b.env", "required": false},
                       {"path": "/proj/c.env", "required": true, "format": "raw"}]),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ok("env_file", input.clone()), want, "{input}");
        }
    }

    #[test]
    fn small_forms() {
        let cases = [
            (
                "ulimits",
                json!({"nofile": 1024, "nproc": {"soft": 1, "hard": 2}, "core": "0"}),
                json!({"nofile": {"soft": 1024, "hard": 1024}, "nproc": {"soft": 1, "hard": 2},
                    "core": {"soft": 0, "hard": 0}}),
            ),
            (
                "devices",
                json!(["/dev/fuse", "/dev/sda:/dev/xvda", "/dev/snd:/dev/snd:r",
                               {"source": "/dev/x", "target": "/dev/y", "permissions": "rw"}]),
                json!([{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"},
                    {"source": "/dev/sda", "target": "/dev/xvda", "permissions": "rwm"},
                    {"source": "/dev/snd", "target": "/dev/snd", "permissions": "r"},
                    {"source": "/dev/x", "target": "/dev/y", "permissions": "rw"}]),
            ),
            (
                "extra_hosts",
                json!({"db": "10.0.0.1", "multi": ["10.0.0.2", "[::1]"]}),
                json!(["db:10.0.0.1", "multi:10.0.0.2", "multi:::1"]),
            ),
            (
                "extra_hosts",
                json!(["a=1.2.3.4", "b:5.6.7.8", "c=::1", "d=1.1.1.1,2.2.2.2"]),
                json!(["a:1.2.3.4", "b:5.6.7.8", "c:::1", "d:1.1.1.1", "d:2.2.2.2"]),
            ),
            ("expose", json!([80, "90-91"]), json!(["80", "90-91"])),
            ("tmpfs", json!("/tmp"), json!(["/tmp"])),
            ("dns", json!("8.8.8.8"), json!(["8.8.8.8"])),
            ("dns_search", json!(["a.example"]), json!(["a.example"])),
            (
                "networks",
                json!(["front", "back"]),
                json!({"front": null, "back": null}),
            ),
            (
                "networks",
                json!({"front": {"aliases": ["a"]}}),
                json!({"front": {"aliases": ["a"]}}),
            ),
            ("extends", json!("base"), json!({"service": "base"})),
            (
                "extends",
                json!({"service": "base", "file": "common.yaml"}),
                json!({"service": "base", "file": "/proj/common.yaml"}),
            ),
            (
                "secrets",
                json!(["s", {"source": "t", "target": "/x"}]),
                json!([{"source": "s"}, {"source": "t", "target": "/x"}]),
            ),
            ("configs", json!(["c"]), json!([{"source": "c"}])),
            ("label_file", json!("./labels"), json!(["/proj/labels"])),
            (
                "develop",
                json!({"watch": [{"path": "./src", "action": "sync", "target": "/app", "ignore": "node_modules"}]}),
                json!({"watch": [{"path": "/proj/src", "action": "sync", "target": "/app", "ignore": ["node_modules"]}]}),
            ),
            ("gpus", json!("all"), json!([{"count": "all"}])),
            ("image", json!("nginx"), json!("nginx")),
            ("mem_limit", json!("64m"), json!("64m")),
        ];
        for (key, input, want) in cases {
            assert_eq!(ok(key, input.clone()), want, "{key}: {input}");
        }
        let e = err("devices", json!(["/a:/b:rwm:x"]));
        assert!(
            e.msg
                .starts_with("services.web.devices[0]: confusing device mapping"),
            "{}",
            e.msg
        );
        let e = err("extra_hosts", json!(["nohost"]));
        assert_eq!(
            e.msg,
            "services.web.extra_hosts[0]: invalid additional host, missing IP: nohost"
        );
        let e = err("extra_hosts", json!({"": "1.2.3.4"}));
        assert!(e.msg.contains("bad host name ''"), "{}", e.msg);
    }

    #[test]
    fn top_level_resources_and_include() {
        let doc = run(
            json!({
                "networks": {"n": null, "old": {"external": {"name": "real"}},
                             "lab": {"labels": ["a=b"]}},
                "volumes": {"v": null, "e": {"external": true},
                            "b": {"driver": "local", "driver_opts": {"o": "bind", "device": "./d", "type": "none"}}},
                "secrets": {"s": {"file": "./secret.txt"}, "x": {"external": {"name": "xx"}, "name": "xx"}},
                "configs": {"c": {"file": "/etc/c"}},
                "include": ["a.yaml", {"path": "b.yaml", "project_directory": "..", "env_file": "b.env"},
                            {"path": ["c.yaml", "/d.yaml"]}],
                "x-ext": {"volumes": ["keep:as:is:really"]}
            }),
            &[],
        )
        .expect("canonical");
        let v = &doc.value;
        assert_eq!(v["networks"]["n"], json!({}));
        assert_eq!(
            v["networks"]["old"],
            json!({"external": true, "name": "real"})
        );
        assert_eq!(v["networks"]["lab"], json!({"labels": {"a": "b"}}));
        assert_eq!(v["volumes"]["v"], json!({}));
        assert_eq!(v["volumes"]["e"], json!({"external": true}));
        assert_eq!(v["volumes"]["b"]["driver_opts"]["device"], json!("/proj/d"));
        assert_eq!(v["secrets"]["s"]["file"], json!("/proj/secret.txt"));
        assert_eq!(v["secrets"]["x"], json!({"external": true, "name": "xx"}));
        assert_eq!(v["configs"]["c"]["file"], json!("/etc/c"));
        assert_eq!(
            v["include"],
            json!([{"path": ["/proj/a.yaml"]},
                   {"path": ["/proj/b.yaml"], "project_directory": "/", "env_file": ["/proj/b.env"]},
                   {"path": ["/proj/c.yaml", "/d.yaml"]}])
        );
        assert_eq!(v["x-ext"], json!({"volumes": ["keep:as:is:really"]}));

        let e = run(
            json!({"volumes": {"v": {"name": "a", "external": {"name": "b"}}}}),
            &[("/volumes/v", 8)],
        )
        .expect_err("conflict");
        assert_eq!(
            e.msg,
            "volumes.v: name and external.name conflict; only use name"
        );
        assert_eq!(e.pos.map(|p| p.line), Some(8));
    }

    #[test]
    fn paths_clean_like_go() {
        for (input, want) in [
            ("/a/b/../c/./d/", "/a/c/d"),
            ("/..", "/"),
            ("a/../../b", "../b"),
            ("", "."),
            ("//x//y", "/x/y"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }
}
