//! Compose's merge rules over canonical trees (spec 13-merge.md; the rules compose-go applies in
//! `override/merge.go` and `override/uncity.go`): one `-f` file over the files before it, a
//! service over the one it `extends`, a local resource over one an `include` brings in.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{child, dotted, Doc, Error, Marks, Tag};

/// Merges `over` (a later `-f` file) into `base` (the files before it). The nodes `over` tags
/// with `!reset` or `!override` are first deleted from `base`; then mappings merge key by key,
/// scalars replace, sequences append (with the exceptions `rule` lists), and the sequences whose
/// items must be unique keep one item per key, a later duplicate replacing the earlier in place.
/// Positions: `over`'s win. `base.tags` are left as they are.
///
/// Start from `Doc::default()` for the first file: that applies the uniqueness rules to it too,
/// as Compose does for every file it loads.
pub fn merge(base: &mut Doc, over: Doc) -> Result<(), Error> {
    let Doc { value, marks, tags } = over;
    apply_tags(&mut base.value, &mut base.marks, &tags, "");
    merge_at(&mut base.value, &mut base.marks, value, marks, "")
}

/// Merges `over` into `base`, both the node at `pointer` (the whole tree at `""`, a service at
/// `/services/<name>`, a resource at `/networks/<name>`...), by the rules of that place, then
/// keeps unique the sequences below it that must be. `base_marks` receives `over_marks`.
pub(crate) fn merge_at(
    base: &mut Value,
    base_marks: &mut Marks,
    over: Value,
    mut over_marks: Marks,
    pointer: &str,
) -> Result<(), Error> {
    merge_node(base, base_marks, over, &mut over_marks, pointer)?;
    base_marks.extend(over_marks);
    let segs = segments(pointer);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        [] => unique_tree(base, base_marks),
        ["services", _] => unique_service(base, base_marks, pointer),
        ["networks", _] => unique_labels(base, base_marks, pointer),
        _ => Ok(()),
    }
}

/// Deletes from `value` (the node at `at`) the nodes that `tags` name at or below `at`, with
/// their positions. As in compose-go, an item of a sequence is never deleted (only keys of
/// mappings); a tag on `at` itself empties the whole node.
pub(crate) fn apply_tags(value: &mut Value, marks: &mut Marks, tags: &[(String, Tag)], at: &str) {
    for (pointer, _) in tags {
        let Some(rest) = pointer.strip_prefix(at) else {
            continue;
        };
        if rest.is_empty() {
            *value = Value::Null;
            marks.take(at);
            continue;
        }
        if !rest.starts_with('/') {
            continue;
        }
        let segs = segments(rest);
        let Some((last, parents)) = segs.split_last() else {
            continue;
        };
        if let Some(Value::Object(m)) = descend(value, parents) {
            if m.remove(last.as_str()).is_some() {
                marks.take(pointer);
            }
        }
    }
}

/// The node at `segs` below `value`.
fn descend<'a>(value: &'a mut Value, segs: &[String]) -> Option<&'a mut Value> {
    segs.iter().try_fold(value, |node, seg| match node {
        Value::Object(m) => m.get_mut(seg.as_str()),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// The unescaped segments of a JSON pointer.
fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// How the two values at one place of the tree merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Mappings merge, sequences append, scalars replace; `null` over keeps the base.
    Default,
    /// The later value replaces the earlier (`command`, `entrypoint`, `healthcheck.test`,
    /// each of `ulimits`).
    Replace,
    /// `KEY=VALUE` maps (`environment`, `labels`...): the later value of a key wins, `null` too.
    KeyValue,
    /// A string is a one-item sequence; sequences append (`dns`, `env_file`, `tmpfs`...).
    Sequence,
    /// `extra_hosts`: the later entries not already present are appended.
    ExtraHosts,
    /// `logging`: merged when both name the same driver (or one names none), else replaced.
    Logging,
    /// A sequence of names is a mapping of them; mappings merge (`networks`, `models`).
    Names,
    /// `depends_on`: as `Names`, a name alone meaning `service_started`, required.
    DependsOn,
    /// `ipam.config`: entries with the same subnet merge, others append.
    Ipam,
}

fn rule(pointer: &str) -> Rule {
    let segs = segments(pointer);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["services", _, rest @ ..] => match rest {
            ["command"] | ["entrypoint"] | ["healthcheck", "test"] | ["ulimits", _] => {
                Rule::Replace
            }
            ["annotations"]
            | ["environment"]
            | ["labels"]
            | ["sysctls"]
            | ["build", "args"]
            | ["build", "labels"]
            | ["build", "additional_contexts"]
            | ["deploy", "labels"] => Rule::KeyValue,
            ["dns"] | ["dns_opt"] | ["dns_search"] | ["env_file"] | ["label_file"] | ["tmpfs"] => {
                Rule::Sequence
            }
            ["extra_hosts"] | ["build", "extra_hosts"] => Rule::ExtraHosts,
            ["logging"] => Rule::Logging,
            ["networks"] | ["models"] => Rule::Names,
            ["depends_on"] => Rule::DependsOn,
            _ => Rule::Default,
        },
        ["networks", _, "labels"] | ["volumes", _, "labels"] => Rule::KeyValue,
        ["networks", _, "ipam", "config"] => Rule::Ipam,
        _ => Rule::Default,
    }
}

fn mismatch(marks: &Marks, pointer: &str) -> Error {
    Error::at(
        marks.nearest(pointer),
        format!("cannot override {}", dotted(pointer)),
    )
}

/// Merges `over` into `base`, the nodes at `p`. Positions: the base nodes that go away lose
/// theirs from `bm`; `om` is renumbered where `over`'s sequence items move (the caller adds it
/// to `bm` afterwards).
fn merge_node(
    base: &mut Value,
    bm: &mut Marks,
    over: Value,
    om: &mut Marks,
    p: &str,
) -> Result<(), Error> {
    let rule = rule(p);
    if rule == Rule::Replace {
        replace(base, bm, over, p);
        return Ok(());
    }
    if over.is_null() {
        om.take(p);
        return Ok(());
    }
    if base.is_null() {
        replace(base, bm, over, p);
        return Ok(());
    }
    match rule {
        Rule::KeyValue => {
            let mut merged = key_values(std::mem::take(base), bm, p)?;
            for (k, v) in key_values(over, om, p)? {
                if let Some(old) = merged.insert(k.clone(), v) {
                    forget(&old, bm, &child(p, &k));
                }
            }
            *base = Value::Object(merged);
            Ok(())
        }
        Rule::Sequence => {
            let one = |v: Value| match v {
                Value::String(_) => Value::Array(vec![v]),
                v => v,
            };
            *base = one(std::mem::take(base));
            merge_default(base, bm, one(over), om, p)
        }
        Rule::ExtraHosts => match (&mut *base, over) {
            (Value::Array(b), Value::Array(o)) => {
                let n = b.len();
                let mut moves = Vec::new();
                for (j, item) in o.into_iter().enumerate() {
                    if !b[..n].contains(&item) {
                        moves.push((j, b.len()));
                        b.push(item);
                    }
                }
                renumber(om, p, &moves);
                Ok(())
            }
            (_, over) => merge_default(base, bm, over, om, p),
        },
        Rule::Logging => match (base.get("driver"), over.get("driver")) {
            (Some(b), Some(o)) if b != o => {
                replace(base, bm, over, p);
                Ok(())
            }
            _ => merge_default(base, bm, over, om, p),
        },
        Rule::Names | Rule::DependsOn => {
            let default = (rule == Rule::DependsOn)
                .then(|| serde_json::json!({"condition": "service_started", "required": true}));
            let mut b = names(std::mem::take(base), bm, p, default.as_ref())?;
            let o = names(over, om, p, default.as_ref())?;
            merge_maps(&mut b, bm, o, om, p)?;
            *base = Value::Object(b);
            Ok(())
        }
        Rule::Ipam => match (&mut *base, over) {
            (Value::Array(b), Value::Array(o)) => merge_ipam(b, bm, o, om, p),
            (_, over) => merge_default(base, bm, over, om, p),
        },
        Rule::Default | Rule::Replace => merge_default(base, bm, over, om, p),
    }
}

fn replace(base: &mut Value, bm: &mut Marks, over: Value, p: &str) {
    forget(base, bm, p);
    *base = over;
}

/// Drops the positions below a node that goes away. A scalar has none below it, and its own is
/// overwritten by the node replacing it, so only a container costs the walk over all positions.
fn forget(node: &Value, marks: &mut Marks, p: &str) {
    if node.is_object() || node.is_array() {
        marks.take(p);
    }
}

fn merge_default(
    base: &mut Value,
    bm: &mut Marks,
    over: Value,
    om: &mut Marks,
    p: &str,
) -> Result<(), Error> {
    if over.is_null() {
        om.take(p);
        return Ok(());
    }
    match base {
        Value::Object(b) => match over {
            Value::Object(o) => merge_maps(b, bm, o, om, p),
            _ => Err(mismatch(om, p)),
        },
        Value::Array(b) => match over {
            Value::Array(o) => {
                let n = b.len();
                let moves: Vec<(usize, usize)> = (0..o.len()).map(|j| (j, n + j)).collect();
                renumber(om, p, &moves);
                b.extend(o);
                Ok(())
            }
            _ => Err(mismatch(om, p)),
        },
        _ => {
            replace(base, bm, over, p);
            Ok(())
        }
    }
}

fn merge_maps(
    base: &mut Map<String, Value>,
    bm: &mut Marks,
    over: Map<String, Value>,
    om: &mut Marks,
    p: &str,
) -> Result<(), Error> {
    for (k, v) in over {
        let cp = child(p, &k);
        match base.get_mut(&k) {
            Some(b) => merge_node(b, bm, v, om, &cp)?,
            None => {
                base.insert(k, v);
            }
        }
    }
    Ok(())
}

/// A `KEY=VALUE` node as a mapping: a mapping as it is, a sequence's `K=V` as `K: "V"` and a
/// bare `K` as `K: null`.
fn key_values(v: Value, marks: &mut Marks, p: &str) -> Result<Map<String, Value>, Error> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Array(items) => {
            let taken = marks.take(p);
            if let Some(pos) = taken.get(p) {
                marks.insert(p.to_string(), pos.clone());
            }
            let mut out = Map::new();
            for (i, item) in items.into_iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(mismatch(&taken, &child(p, &i.to_string())));
                };
                let (k, v) = match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                    None => (s, Value::Null),
                };
                marks.extend(taken.moved(&child(p, &i.to_string()), &child(p, &k)));
                out.insert(k, v);
            }
            Ok(out)
        }
        _ => Err(mismatch(marks, p)),
    }
}

/// A sequence of names as a mapping from each to `default` (`null` without one).
fn names(
    v: Value,
    marks: &mut Marks,
    p: &str,
    default: Option<&Value>,
) -> Result<Map<String, Value>, Error> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Array(items) => {
            let taken = marks.take(p);
            if let Some(pos) = taken.get(p) {
                marks.insert(p.to_string(), pos.clone());
            }
            let mut out = Map::new();
            for (i, item) in items.into_iter().enumerate() {
                let Value::String(name) = item else {
                    return Err(mismatch(&taken, &child(p, &i.to_string())));
                };
                marks.extend(taken.moved(&child(p, &i.to_string()), &child(p, &name)));
                out.insert(name, default.cloned().unwrap_or(Value::Null));
            }
            Ok(out)
        }
        _ => Err(mismatch(marks, p)),
    }
}

fn merge_ipam(
    base: &mut Vec<Value>,
    bm: &mut Marks,
    over: Vec<Value>,
    om: &mut Marks,
    p: &str,
) -> Result<(), Error> {
    let subnet = |v: &Value| v.get("subnet").cloned();
    let mut subnets: Vec<Option<Value>> = base.iter().map(subnet).collect();
    let mut places = Vec::with_capacity(over.len());
    for item in &over {
        let s = subnet(item);
        let at = match subnets.iter().position(|x| *x == s) {
            Some(at) => at,
            None => {
                subnets.push(s);
                subnets.len() - 1
            }
        };
        places.push(at);
    }
    let moves: Vec<(usize, usize)> = places.iter().copied().enumerate().collect();
    renumber(om, p, &moves);
    for (item, at) in over.into_iter().zip(places) {
        if at < base.len() {
            merge_node(&mut base[at], bm, item, om, &child(p, &at.to_string()))?;
        } else {
            base.push(item);
        }
    }
    Ok(())
}

/// Moves the positions of the items of the sequence at `p`: item `from` becomes item `to` for
/// each `(from, to)`; items not named lose theirs. The sequence's own position stays.
fn renumber(marks: &mut Marks, p: &str, moves: &[(usize, usize)]) {
    let taken = marks.take(p);
    if let Some(pos) = taken.get(p) {
        marks.insert(p.to_string(), pos.clone());
    }
    for (from, to) in moves {
        marks.extend(taken.moved(&child(p, &from.to_string()), &child(p, &to.to_string())));
    }
}

/// What makes two items of a sequence the same (compose-go's `unique` indexers).
#[derive(Clone, Copy)]
enum Key {
    /// The text before `=` (the whole string without one).
    Name,
    /// `host_ip:published:target/protocol`.
    Port,
    /// The mount target.
    Target,
    /// The device's path in the container.
    Device,
    /// The mount target, else `<dir>/<source>`.
    Mount(&'static str),
    /// The port (range) as text.
    Expose,
    /// The file's path.
    EnvFile,
}

/// The service sequences whose items are unique, by path below the service.
const UNIQUE: &[(&[&str], Key)] = &[
    (&["annotations"], Key::Name),
    (&["build", "args"], Key::Name),
    (&["build", "additional_contexts"], Key::Name),
    (&["build", "labels"], Key::Name),
    (&["build", "tags"], Key::Name),
    (&["cap_add"], Key::Name),
    (&["cap_drop"], Key::Name),
    (&["configs"], Key::Mount("")),
    (&["deploy", "labels"], Key::Name),
    (&["devices"], Key::Device),
    (&["dns"], Key::Name),
    (&["dns_opt"], Key::Name),
    (&["dns_search"], Key::Name),
    (&["environment"], Key::Name),
    (&["env_file"], Key::EnvFile),
    (&["expose"], Key::Expose),
    (&["labels"], Key::Name),
    (&["links"], Key::Name),
    (&["ports"], Key::Port),
    (&["profiles"], Key::Name),
    (&["secrets"], Key::Mount("/run/secrets")),
    (&["sysctls"], Key::Name),
    (&["tmpfs"], Key::Name),
    (&["volumes"], Key::Target),
];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn key(item: &Value, kind: Key, marks: &Marks, p: &str) -> Result<String, Error> {
    let missing = |what: &str| {
        Error::at(
            marks.nearest(p),
            format!("service {what} {} is missing a mount target", dotted(p)),
        )
    };
    Ok(match (kind, item) {
        (Key::Name, Value::String(s)) => s.split_once('=').map_or(s.as_str(), |(k, _)| k).into(),
        (Key::Port, Value::Object(m)) => {
            let Some(target) = m.get("target") else {
                return Err(Error::at(
                    marks.nearest(p),
                    format!("service ports {} is missing a target port", dotted(p)),
                ));
            };
            format!(
                "{}:{}:{}/{}",
                m.get("host_ip").map_or("0.0.0.0".into(), text),
                m.get("published").map_or(String::new(), text),
                text(target),
                m.get("protocol").map_or("tcp".into(), text),
            )
        }
        (Key::Target, Value::Object(m)) => match m.get("target") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(missing("volume")),
        },
        (Key::Device, Value::Object(m)) => match m.get("target") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(missing("device")),
        },
        (Key::Device, Value::String(s)) => {
            let mut parts = s.split(':');
            let first = parts.next().unwrap_or_default();
            parts.next().unwrap_or(first).to_string()
        }
        (Key::Mount(dir), Value::Object(m)) => match m.get("target") {
            Some(t) => text(t),
            None => format!("{dir}/{}", m.get("source").map_or(String::new(), text)),
        },
        (Key::Mount(dir), Value::String(s)) => format!("{dir}/{s}"),
        (Key::EnvFile, Value::Object(m)) => match m.get("path") {
            Some(path) => text(path),
            None => {
                return Err(Error::at(
                    marks.nearest(p),
                    format!("environment path attribute {} is missing", dotted(p)),
                ))
            }
        },
        (_, item) => text(item),
    })
}

/// Keeps one item per key in the sequence at `p`; a later item replaces the earlier one with
/// its key, in the earlier one's place.
fn dedupe(items: &mut Vec<Value>, marks: &mut Marks, p: &str, kind: Key) -> Result<(), Error> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut from: Vec<usize> = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, item) in std::mem::take(items).into_iter().enumerate() {
        let k = key(&item, kind, marks, &child(p, &i.to_string()))?;
        match seen.get(&k) {
            Some(&at) => {
                out[at] = item;
                from[at] = i;
            }
            None => {
                seen.insert(k, out.len());
                out.push(item);
                from.push(i);
            }
        }
    }
    // A duplicate moves a later item into an earlier place; without one nothing moves.
    if from.iter().enumerate().any(|(to, from)| to != *from) {
        let moves: Vec<(usize, usize)> = from.iter().enumerate().map(|(to, f)| (*f, to)).collect();
        renumber(marks, p, &moves);
    }
    *items = out;
    Ok(())
}

fn unique_tree(root: &mut Value, marks: &mut Marks) -> Result<(), Error> {
    if let Some(Value::Object(services)) = root.get_mut("services") {
        for (name, service) in services.iter_mut() {
            unique_service(service, marks, &child("/services", name))?;
        }
    }
    if let Some(Value::Object(networks)) = root.get_mut("networks") {
        for (name, network) in networks.iter_mut() {
            unique_labels(network, marks, &child("/networks", name))?;
        }
    }
    Ok(())
}

fn unique_service(service: &mut Value, marks: &mut Marks, p: &str) -> Result<(), Error> {
    for (path, kind) in UNIQUE {
        let mut node = Some(&mut *service);
        let mut at = p.to_string();
        for seg in *path {
            node = node.and_then(|n| n.get_mut(*seg));
            at = child(&at, seg);
        }
        if let Some(Value::Array(items)) = node {
            dedupe(items, marks, &at, *kind)?;
        }
    }
    if let Some(Value::Object(networks)) = service.get_mut("networks") {
        for (name, network) in networks.iter_mut() {
            let np = child(&child(p, "networks"), name);
            for list in ["aliases", "link_local_ips"] {
                if let Some(Value::Array(items)) = network.get_mut(list) {
                    dedupe(items, marks, &child(&np, list), Key::Name)?;
                }
            }
        }
    }
    Ok(())
}

fn unique_labels(network: &mut Value, marks: &mut Marks, p: &str) -> Result<(), Error> {
    match network.get_mut("labels") {
        Some(Value::Array(items)) => dedupe(items, marks, &child(p, "labels"), Key::Name),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use serde_json::json;

    use super::super::{Pos, Tag};
    use super::*;

    /// A tree as if read from `file`: every node has a position, lines numbered in document order.
    pub(crate) fn doc(file: &str, value: Value) -> Doc {
        fn walk(v: &Value, p: &str, file: &Arc<PathBuf>, line: &mut usize, marks: &mut Marks) {
            *line += 1;
            let pos = Pos {
                file: file.clone(),
                line: *line,
                col: 1,
            };
            marks.insert(p.to_string(), pos);
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        walk(v, &child(p, k), file, line, marks);
                    }
                }
                Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        walk(v, &child(p, &i.to_string()), file, line, marks);
                    }
                }
                _ => {}
            }
        }
        let file = Arc::new(PathBuf::from(file));
        let mut marks = Marks::default();
        walk(&value, "", &file, &mut 0, &mut marks);
        Doc {
            value,
            marks,
            tags: Vec::new(),
        }
    }

    fn svc(web: Value) -> Value {
        json!({"services": {"web": web}})
    }

    fn merged(base: Value, over: Value) -> Result<Value, Error> {
        let mut b = doc("base.yaml", base);
        merge(&mut b, doc("over.yaml", over))?;
        Ok(b.value)
    }

    #[test]
    fn merge_rules() {
        let dep = |c: &str| json!({"condition": c, "required": true, "restart": false});
        let port = |t: u16, p: &str| json!({"mode": "ingress", "target": t, "published": p, "protocol": "tcp"});
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "mappings merge, scalars replace, null keeps",
                json!({"image": "a", "user": "u", "x-k": {"a": 1}}),
                json!({"image": "b", "user": null, "x-k": {"b": 2}, "init": true}),
                json!({"image": "b", "user": "u", "x-k": {"a": 1, "b": 2}, "init": true}),
            ),
            (
                "command, entrypoint and healthcheck.test replace",
                json!({"command": ["a", "b"], "entrypoint": ["sh"], "healthcheck": {"test": ["CMD", "x"], "retries": 3}}),
                json!({"command": ["c"], "entrypoint": null, "healthcheck": {"test": ["NONE"]}}),
                json!({"command": ["c"], "entrypoint": null, "healthcheck": {"test": ["NONE"], "retries": 3}}),
            ),
            (
                "key=value maps merge by key, null included",
                json!({"environment": {"A": "1", "B": "2"}, "labels": {"l": "1"}, "annotations": {"a": "1"},
                       "sysctls": {"s": "1"}, "deploy": {"labels": {"d": "1"}},
                       "build": {"context": "/p", "args": {"X": "1"}, "labels": {"b": "1"}}}),
                json!({"environment": {"B": "3", "C": null, "A": null}, "labels": {"l": "2", "m": ""},
                       "annotations": {"b": "2"}, "sysctls": {"s": "2"}, "deploy": {"labels": {"e": "2"}},
                       "build": {"dockerfile": "D", "args": {"X": null, "Y": "2"}, "labels": {"b": "2"}}}),
                json!({"environment": {"A": null, "B": "3", "C": null}, "labels": {"l": "2", "m": ""},
                       "annotations": {"a": "1", "b": "2"}, "sysctls": {"s": "2"}, "deploy": {"labels": {"d": "1", "e": "2"}},
                       "build": {"context": "/p", "dockerfile": "D", "args": {"X": null, "Y": "2"}, "labels": {"b": "2"}}}),
            ),
            (
                "a KEY=VALUE list merges into a mapping",
                json!({"build": {"additional_contexts": ["a=/x", "b=/y"]}}),
                json!({"build": {"additional_contexts": {"b": "/z"}}}),
                json!({"build": {"additional_contexts": {"a": "/x", "b": "/z"}}}),
            ),
            (
                "ports append, a duplicate replaces the earlier in place",
                json!({"ports": [port(80, "8080"), port(443, "8443"), {"mode": "ingress", "target": 53, "protocol": "udp"}]}),
                json!({"ports": [port(9000, "9000"), {"mode": "host", "target": 80, "published": "8080", "protocol": "tcp"},
                                 {"mode": "ingress", "target": 53, "protocol": "tcp"}, {"mode": "ingress", "host_ip": "127.0.0.1", "target": 443, "published": "8443", "protocol": "tcp"}]}),
                json!({"ports": [{"mode": "host", "target": 80, "published": "8080", "protocol": "tcp"}, port(443, "8443"),
                                 {"mode": "ingress", "target": 53, "protocol": "udp"}, port(9000, "9000"),
                                 {"mode": "ingress", "target": 53, "protocol": "tcp"},
                                 {"mode": "ingress", "host_ip": "127.0.0.1", "target": 443, "published": "8443", "protocol": "tcp"}]}),
            ),
            (
                "volumes and devices by target",
                json!({"volumes": [{"type": "volume", "source": "a", "target": "/data"}, {"type": "bind", "source": "/h", "target": "/h"}],
                       "devices": [{"source": "/dev/a", "target": "/dev/x", "permissions": "rwm"}]}),
                json!({"volumes": [{"type": "volume", "source": "b", "target": "/data", "read_only": true}],
                       "devices": [{"source": "/dev/b", "target": "/dev/x", "permissions": "r"}, {"source": "/dev/c", "target": "/dev/c", "permissions": "rwm"}]}),
                json!({"volumes": [{"type": "volume", "source": "b", "target": "/data", "read_only": true}, {"type": "bind", "source": "/h", "target": "/h"}],
                       "devices": [{"source": "/dev/b", "target": "/dev/x", "permissions": "r"}, {"source": "/dev/c", "target": "/dev/c", "permissions": "rwm"}]}),
            ),
            (
                "secrets and configs by target, defaulted from the source",
                json!({"secrets": [{"source": "s"}, {"source": "t", "target": "/x"}], "configs": [{"source": "c"}]}),
                json!({"secrets": [{"source": "s", "target": "/run/secrets/s", "mode": 256}, {"source": "t"}],
                       "configs": [{"source": "d", "target": "/c"}, {"source": "c", "target": "/elsewhere"}]}),
                json!({"secrets": [{"source": "s", "target": "/run/secrets/s", "mode": 256}, {"source": "t", "target": "/x"}, {"source": "t"}],
                       "configs": [{"source": "d", "target": "/c"}, {"source": "c", "target": "/elsewhere"}]}),
            ),
            (
                "value lists append without duplicates; env_file by path",
                json!({"dns": ["1.1.1.1"], "dns_search": ["a"], "dns_opt": ["ndots:1"], "tmpfs": ["/t"], "expose": ["80"],
                       "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"], "profiles": ["p"], "links": ["db"],
                       "env_file": [{"path": "/a.env", "required": true}]}),
                json!({"dns": ["8.8.8.8", "1.1.1.1"], "dns_search": ["a", "b"], "dns_opt": ["ndots:1"], "tmpfs": ["/t", "/u"],
                       "expose": ["80", "81"], "cap_add": ["NET_ADMIN", "SYS_TIME"], "cap_drop": ["ALL"], "profiles": ["q", "p"],
                       "links": ["db", "db:alias"],
                       "env_file": [{"path": "/b.env", "required": true}, {"path": "/a.env", "required": false}]}),
                json!({"dns": ["1.1.1.1", "8.8.8.8"], "dns_search": ["a", "b"], "dns_opt": ["ndots:1"], "tmpfs": ["/t", "/u"],
                       "expose": ["80", "81"], "cap_add": ["NET_ADMIN", "SYS_TIME"], "cap_drop": ["ALL"], "profiles": ["p", "q"],
                       "links": ["db", "db:alias"],
                       "env_file": [{"path": "/a.env", "required": false}, {"path": "/b.env", "required": true}]}),
            ),
            (
                "extra_hosts skip entries already there; other lists append as they are",
                json!({"extra_hosts": ["a:1.1.1.1", "b:2.2.2.2"], "security_opt": ["label:disable"], "volumes_from": ["x"], "group_add": ["g"]}),
                json!({"extra_hosts": ["b:2.2.2.2", "c:3.3.3.3"], "security_opt": ["label:disable"], "volumes_from": ["x"], "group_add": ["h"]}),
                json!({"extra_hosts": ["a:1.1.1.1", "b:2.2.2.2", "c:3.3.3.3"], "security_opt": ["label:disable", "label:disable"],
                       "volumes_from": ["x", "x"], "group_add": ["g", "h"]}),
            ),
            (
                "depends_on and networks merge as mappings; aliases without duplicates",
                json!({"depends_on": {"db": dep("service_started"), "cache": dep("service_started")},
                       "networks": {"front": null, "back": {"aliases": ["a"], "priority": 1}}}),
                json!({"depends_on": {"db": {"condition": "service_healthy"}, "queue": dep("service_started")},
                       "networks": {"front": {"aliases": ["f"]}, "back": {"aliases": ["b", "a"]}, "admin": null}}),
                json!({"depends_on": {"db": {"condition": "service_healthy", "required": true, "restart": false},
                                      "cache": dep("service_started"), "queue": dep("service_started")},
                       "networks": {"front": {"aliases": ["f"]}, "back": {"aliases": ["a", "b"], "priority": 1}, "admin": null}}),
            ),
            (
                "a list of networks or dependencies is a mapping",
                json!({"networks": ["a"], "depends_on": ["db"]}),
                json!({"networks": {"b": null}, "depends_on": {"db": {"required": false}}}),
                json!({"networks": {"a": null, "b": null}, "depends_on": {"db": {"condition": "service_started", "required": false}}}),
            ),
            (
                "logging options merge for the same driver",
                json!({"logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "2"}}}),
                json!({"logging": {"driver": "json-file", "options": {"max-size": "5m"}}}),
                json!({"logging": {"driver": "json-file", "options": {"max-size": "5m", "max-file": "2"}}}),
            ),
            (
                "logging without a driver merges",
                json!({"logging": {"driver": "json-file", "options": {"max-size": "1m"}}}),
                json!({"logging": {"options": {"max-file": "3"}}}),
                json!({"logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "3"}}}),
            ),
            (
                "logging with another driver replaces",
                json!({"logging": {"driver": "json-file", "options": {"max-size": "1m"}}}),
                json!({"logging": {"driver": "syslog", "options": {"tag": "t"}}}),
                json!({"logging": {"driver": "syslog", "options": {"tag": "t"}}}),
            ),
            (
                "each ulimit replaces",
                json!({"ulimits": {"nofile": {"soft": 1, "hard": 2}, "nproc": {"soft": 5, "hard": 5}}}),
                json!({"ulimits": {"nofile": {"soft": 3}}}),
                json!({"ulimits": {"nofile": {"soft": 3}, "nproc": {"soft": 5, "hard": 5}}}),
            ),
        ];
        for (name, base, over, want) in cases {
            let got = merged(svc(base), svc(over));
            assert_eq!(got, Ok(svc(want)), "{name}");
        }
    }

    #[test]
    fn top_level_rules() {
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "new resources are added, names replace",
                json!({"name": "a", "services": {"web": {"image": "w"}}, "volumes": {"v": {}}}),
                json!({"name": "b", "services": {"db": {"image": "d"}}, "networks": {"n": {}}}),
                json!({"name": "b", "services": {"web": {"image": "w"}, "db": {"image": "d"}},
                       "volumes": {"v": {}}, "networks": {"n": {}}}),
            ),
            (
                "network and volume labels merge by key",
                json!({"networks": {"n": {"labels": {"a": "1"}}}, "volumes": {"v": {"labels": {"a": "1"}}}}),
                json!({"networks": {"n": {"labels": {"a": "2", "b": "2"}}}, "volumes": {"v": {"labels": {"c": "3"}}}}),
                json!({"networks": {"n": {"labels": {"a": "2", "b": "2"}}}, "volumes": {"v": {"labels": {"a": "1", "c": "3"}}}}),
            ),
            (
                "ipam configs merge by subnet",
                json!({"networks": {"n": {"ipam": {"driver": "default", "config": [
                    {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}, {"subnet": "10.1.0.0/24"}]}}}}),
                json!({"networks": {"n": {"ipam": {"config": [
                    {"subnet": "10.2.0.0/24"}, {"subnet": "10.0.0.0/24", "ip_range": "10.0.0.128/25"}]}}}}),
                json!({"networks": {"n": {"ipam": {"driver": "default", "config": [
                    {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "ip_range": "10.0.0.128/25"},
                    {"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/24"}]}}}}),
            ),
        ];
        for (name, base, over, want) in cases {
            assert_eq!(merged(base, over), Ok(want), "{name}");
        }
    }

    #[test]
    fn tags_reset_and_override() {
        let base = svc(
            json!({"image": "a", "ports": [{"target": 80}], "environment": {"A": "1", "B": "2"},
                              "networks": {"front": {"aliases": ["x"]}}}),
        );
        type Case = (&'static str, Value, Vec<(&'static str, Tag)>, Value);
        let cases: Vec<Case> = vec![
            (
                "reset removes the key",
                svc(json!({})),
                vec![
                    ("/services/web/ports", Tag::Reset),
                    ("/services/web/environment/A", Tag::Reset),
                ],
                svc(
                    json!({"image": "a", "environment": {"B": "2"}, "networks": {"front": {"aliases": ["x"]}}}),
                ),
            ),
            (
                "override replaces instead of merging",
                svc(json!({"environment": {"C": "3"}, "networks": {"back": null}})),
                vec![
                    ("/services/web/environment", Tag::Override),
                    ("/services/web/networks", Tag::Override),
                ],
                svc(
                    json!({"image": "a", "ports": [{"target": 80}], "environment": {"C": "3"}, "networks": {"back": null}}),
                ),
            ),
            (
                "override of a whole service",
                svc(json!({"image": "b"})),
                vec![("/services/web", Tag::Override)],
                svc(json!({"image": "b"})),
            ),
            (
                "a tag on a sequence item removes nothing",
                svc(json!({})),
                vec![
                    ("/services/web/ports/0", Tag::Reset),
                    ("/services/nothere/image", Tag::Reset),
                ],
                base.clone(),
            ),
        ];
        for (name, over, tags, want) in cases {
            let mut b = doc("base.yaml", base.clone());
            let mut o = doc("over.yaml", over);
            o.tags = tags.into_iter().map(|(p, t)| (p.to_string(), t)).collect();
            merge(&mut b, o).unwrap();
            assert_eq!(b.value, want, "{name}");
            if name.starts_with("reset") {
                assert!(b.marks.get("/services/web/ports").is_none(), "{name}");
                assert!(
                    b.marks.get("/services/web/ports/0/target").is_none(),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn type_mismatch_names_the_path_and_over_position() {
        let cases: Vec<(Value, Value, &str)> = vec![
            (
                json!({"ports": [{"target": 80}]}),
                json!({"ports": "80"}),
                "services.web.ports",
            ),
            (
                json!({"build": {"context": "/p"}}),
                json!({"build": "/q"}),
                "services.web.build",
            ),
            (
                json!({"environment": {"A": "1"}}),
                json!({"environment": 3}),
                "services.web.environment",
            ),
            (
                json!({"networks": {"a": {"aliases": ["x"]}}}),
                json!({"networks": {"a": ["x"]}}),
                "services.web.networks.a",
            ),
            (
                json!({"dns": ["1.1.1.1"]}),
                json!({"dns": {"a": 1}}),
                "services.web.dns",
            ),
        ];
        for (base, over, path) in cases {
            let over = doc("over.yaml", svc(over));
            let want = over
                .marks
                .get(&format!("/{}", path.replace('.', "/")))
                .cloned();
            let mut b = doc("base.yaml", svc(base));
            let err = merge(&mut b, over).unwrap_err();
            assert_eq!(err.msg, format!("cannot override {path}"));
            assert!(want.is_some());
            assert_eq!(err.pos, want, "{path}");
        }
    }

    #[test]
    fn positions_follow_the_items() {
        let mut b = doc(
            "base.yaml",
            svc(json!({"ports": [{"target": 80}, {"target": 443}], "image": "a"})),
        );
        let o = doc(
            "over.yaml",
            svc(json!({"ports": [{"target": 53}, {"target": 80, "mode": "host"}], "image": "b"})),
        );
        let orig = (b.clone(), o.clone());
        merge(&mut b, o).unwrap();
        let at = |d: &Doc, p: &str| d.marks.get(p).cloned();
        let (ob, oo) = orig;
        // [over's 80 in base's place, base's 443, over's 53]
        assert_eq!(
            at(&b, "/services/web/ports/0"),
            at(&oo, "/services/web/ports/1")
        );
        assert_eq!(
            at(&b, "/services/web/ports/0/mode"),
            at(&oo, "/services/web/ports/1/mode")
        );
        assert_eq!(
            at(&b, "/services/web/ports/1/target"),
            at(&ob, "/services/web/ports/1/target")
        );
        assert_eq!(
            at(&b, "/services/web/ports/2/target"),
            at(&oo, "/services/web/ports/0/target")
        );
        assert_eq!(at(&b, "/services/web/ports/3"), None);
        assert_eq!(
            at(&b, "/services/web/image"),
            at(&oo, "/services/web/image")
        );
        assert_eq!(
            at(&b, "/services/web/ports"),
            at(&oo, "/services/web/ports")
        );
    }

    #[test]
    fn the_first_file_is_made_unique_too() {
        let mut b = Doc::default();
        let o = doc(
            "c.yaml",
            svc(json!({"expose": ["80", "80"], "volumes": [
            {"type": "volume", "source": "a", "target": "/d"}, {"type": "volume", "source": "b", "target": "/d"}]})),
        );
        merge(&mut b, o).unwrap();
        assert_eq!(
            b.value,
            svc(
                json!({"expose": ["80"], "volumes": [{"type": "volume", "source": "b", "target": "/d"}]})
            )
        );
        assert_eq!(
            b.marks
                .get("/services/web/volumes/0/source")
                .map(|p| p.line),
            Some(13)
        );
        let bad = doc("c.yaml", svc(json!({"volumes": [{"type": "tmpfs"}]})));
        let err = merge(&mut Doc::default(), bad).unwrap_err();
        assert_eq!(
            err.msg,
            "service volume services.web.volumes[0] is missing a mount target"
        );
        assert_eq!(err.pos.map(|p| p.line), Some(5));
    }
}
