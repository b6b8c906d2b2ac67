//! YAML text → JSON trees: one `Doc` per YAML document, with the position of every node, the
//! merge tags (`!reset`, `!override`) taken out of the tree, `<<` merge keys and aliases expanded.
//!
//! The tree is built from saphyr-parser's events (not saphyr's own loader) so that duplicate keys
//! can be reported by name with both lines, and aliases stay shared until conversion, where an
//! expansion budget refuses alias bombs before they take memory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Tag as YamlTag};
use serde_json::{Map, Number, Value};

use super::{child, Doc, Error, Marks, Pos, Tag};

/// Nodes that may be produced by expanding aliases (merge keys included), per file.
const ALIAS_BUDGET: usize = 100_000;
/// Deepest nesting of sequences and mappings accepted as written; twice that once aliases and
/// merge keys are expanded.
const MAX_DEPTH: usize = 256;

/// Parses `text` (the contents of `file`) into one `Doc` per YAML document. A file without any
/// document (empty, or only comments) gives one empty mapping, which the merge ignores.
pub fn parse(file: Arc<PathBuf>, text: &str) -> Result<Vec<Doc>, Error> {
    let roots = build(&file, text)?;
    let mut conv = Conv {
        file: &file,
        marks: Vec::new(),
        tags: Vec::new(),
        budget: ALIAS_BUDGET,
        alias_site: None,
        depth: 0,
    };
    if roots.is_empty() {
        let mut marks = Marks::default();
        marks.insert(String::new(), conv.pos((1, 1)));
        return Ok(vec![Doc {
            value: Value::Object(Map::new()),
            marks,
            tags: Vec::new(),
        }]);
    }
    let mut docs = Vec::with_capacity(roots.len());
    for root in roots {
        let value = match &target(&root).kind {
            Kind::Map(_) => conv.value(&root, "", true)?,
            _ => return Err(conv.err(root.pos, "top-level object must be a mapping")),
        };
        let root_pos = conv.pos(root.pos);
        let mut marks = Marks::default();
        marks.insert(String::new(), root_pos);
        for (pointer, pos) in conv.marks.drain(..) {
            marks.insert(pointer, pos);
        }
        let mut tags: Vec<(String, Tag)> = Vec::new();
        for t in conv.tags.drain(..) {
            // A tag on the document itself has nothing to reset or override.
            if !t.0.is_empty() && !tags.contains(&t) {
                tags.push(t);
            }
        }
        docs.push(Doc {
            // A `!reset` root is a document that resets nothing: keep it as an empty mapping.
            value: value.unwrap_or_else(|| Value::Object(Map::new())),
            marks,
            tags,
        });
    }
    Ok(docs)
}

/// A parsed node: aliases point at the shared anchored node until conversion.
struct Node {
    /// 1-based line and column.
    pos: (usize, usize),
    tag: Option<YamlTag>,
    kind: Kind,
}

enum Kind {
    Scalar(String, ScalarStyle),
    Seq(Vec<Rc<Node>>),
    Map(Vec<(Rc<Node>, Rc<Node>)>),
    Alias(Rc<Node>),
}

/// The node an alias stands for (the node itself otherwise).
fn target(node: &Node) -> &Node {
    match &node.kind {
        Kind::Alias(t) => t,
        _ => node,
    }
}

/// A collection being built.
struct Frame {
    pos: (usize, usize),
    anchor: usize,
    tag: Option<YamlTag>,
    items: Vec<Rc<Node>>,
    is_map: bool,
}

fn pos_of(m: &saphyr_parser::Marker) -> (usize, usize) {
    (m.line(), m.col() + 1)
}

fn scan_error(file: &Arc<PathBuf>, e: &ScanError) -> Error {
    let (line, col) = pos_of(e.marker());
    Error {
        pos: Some(Pos {
            file: file.clone(),
            line,
            col,
        }),
        msg: e.info().to_string(),
    }
}

/// The document roots of `text`.
fn build(file: &Arc<PathBuf>, text: &str) -> Result<Vec<Rc<Node>>, Error> {
    let at = |pos: (usize, usize), msg: &str| Error {
        pos: Some(Pos {
            file: file.clone(),
            line: pos.0,
            col: pos.1,
        }),
        msg: msg.to_string(),
    };
    let mut roots = Vec::new();
    let mut root: Option<Rc<Node>> = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Rc<Node>> = HashMap::new();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| scan_error(file, &e))?;
        let pos = pos_of(&span.start);
        let is_map = matches!(ev, Event::MappingStart(..) | Event::MappingEnd);
        let (node, anchor) = match ev {
            Event::DocumentStart(_) => {
                // Anchors do not reach across documents.
                root = None;
                anchors.clear();
                continue;
            }
            Event::DocumentEnd => {
                if let Some(r) = root.take() {
                    roots.push(r);
                }
                continue;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(at(pos, &format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                stack.push(Frame {
                    pos,
                    anchor,
                    tag: tag.map(Cow::into_owned),
                    items: Vec::new(),
                    is_map,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(f) = stack.pop().filter(|f| f.is_map == is_map) else {
                    return Err(at(pos, "unbalanced end of a collection"));
                };
                let kind = if f.is_map {
                    let mut entries = Vec::with_capacity(f.items.len() / 2);
                    let mut it = f.items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    Kind::Map(entries)
                } else {
                    Kind::Seq(f.items)
                };
                let node = Node {
                    pos: f.pos,
                    tag: f.tag,
                    kind,
                };
                (Rc::new(node), f.anchor)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    pos,
                    tag: tag.map(Cow::into_owned),
                    kind: Kind::Scalar(text.into_owned(), style),
                };
                (Rc::new(node), anchor)
            }
            Event::Alias(id) => {
                let Some(t) = anchors.get(&id) else {
                    return Err(at(
                        pos,
                        "unknown anchor: an alias must follow the whole node its anchor marks, \
                         in the same document",
                    ));
                };
                let node = Node {
                    pos,
                    tag: None,
                    kind: Kind::Alias(t.clone()),
                };
                (Rc::new(node), 0)
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => continue,
        };
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            Some(f) => f.items.push(node),
            None => root = Some(node),
        }
    }
    Ok(roots)
}

/// How a tag reads in messages: `!!int`, `!reset`, `!<uri>`.
fn tag_name(t: &YamlTag) -> String {
    match core_suffix(t) {
        Some(s) => format!("!!{s}"),
        None if t.handle == "!" => format!("!{}", t.suffix),
        None if t.handle.is_empty() => format!("!<{}>", t.suffix),
        None => format!("{}{}", t.handle, t.suffix),
    }
}

/// `str` for `!!str` (and its verbatim form `!<tag:yaml.org,2002:str>`).
fn core_suffix(t: &YamlTag) -> Option<&str> {
    const CORE: &str = "tag:yaml.org,2002:";
    if t.handle == CORE {
        Some(&t.suffix)
    } else if t.handle.is_empty() {
        t.suffix.strip_prefix(CORE)
    } else {
        None
    }
}

/// The non-specific tag `!`, which makes a scalar a string.
fn is_non_specific(t: &YamlTag) -> bool {
    (t.handle.is_empty() && t.suffix == "!") || (t.handle == "!" && t.suffix.is_empty())
}

/// Conversion state for one file.
struct Conv<'a> {
    file: &'a Arc<PathBuf>,
    marks: Vec<(String, Pos)>,
    tags: Vec<(String, Tag)>,
    /// Nodes that alias expansion may still produce.
    budget: usize,
    /// Where the outermost alias being expanded was written.
    alias_site: Option<(usize, usize)>,
    /// Nesting of the conversion, which aliases can make deeper than the text.
    depth: usize,
}

impl Conv<'_> {
    fn pos(&self, (line, col): (usize, usize)) -> Pos {
        Pos {
            file: self.file.clone(),
            line,
            col,
        }
    }

    fn err(&self, pos: (usize, usize), msg: impl Into<String>) -> Error {
        Error {
            pos: Some(self.pos(pos)),
            msg: msg.into(),
        }
    }

    /// Runs `f` on the node `node` stands for, counting it against the alias budget when it is
    /// reached through an alias.
    fn through<T>(
        &mut self,
        node: &Node,
        f: impl FnOnce(&mut Self, &Node) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.depth >= 2 * MAX_DEPTH {
            return Err(self.err(
                self.alias_site.unwrap_or(node.pos),
                format!(
                    "nesting deeper than {} levels once aliases are expanded",
                    2 * MAX_DEPTH
                ),
            ));
        }
        self.depth += 1;
        let r = match &node.kind {
            Kind::Alias(t) => {
                let outer = self.alias_site.is_none();
                if outer {
                    self.alias_site = Some(node.pos);
                }
                let r = f(self, t);
                if outer {
                    self.alias_site = None;
                }
                r
            }
            _ => f(self, node),
        };
        self.depth -= 1;
        r
    }

    /// Counts one produced node against the alias budget when inside an alias.
    fn spend(&mut self) -> Result<(), Error> {
        if let Some(site) = self.alias_site {
            if self.budget == 0 {
                return Err(self.err(
                    site,
                    format!(
                        "document contains excessive aliasing: more than {ALIAS_BUDGET} nodes \
                         expanded from aliases"
                    ),
                ));
            }
            self.budget -= 1;
        }
        Ok(())
    }

    /// Converts the node at `pointer`; `None` when a `!reset` removes it. `record` is false
    /// under a sequence: as in compose-go, tags there only act on this document.
    fn value(&mut self, node: &Node, pointer: &str, record: bool) -> Result<Option<Value>, Error> {
        self.through(node, |c, node| {
            c.spend()?;
            let mut tag = node.tag.as_ref();
            if let Some(t) = tag.filter(|t| t.handle == "!") {
                let merge_tag = match t.suffix.as_str() {
                    "reset" => Tag::Reset,
                    "override" => Tag::Override,
                    _ => return Err(c.err(node.pos, format!("unknown tag {}", tag_name(t)))),
                };
                if record {
                    c.tags.push((pointer.to_string(), merge_tag));
                }
                if merge_tag == Tag::Reset {
                    return Ok(None);
                }
                tag = None;
            }
            let value = match &node.kind {
                Kind::Scalar(text, style) => c.scalar(text, *style, tag, node.pos)?,
                Kind::Seq(items) => {
                    c.collection_tag(tag, "seq", node.pos)?;
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        let p = child(pointer, &out.len().to_string());
                        if let Some(v) = c.value(item, &p, false)? {
                            c.marks.push((p, c.pos(item.pos)));
                            out.push(v);
                        }
                    }
                    Value::Array(out)
                }
                Kind::Map(entries) => {
                    c.collection_tag(tag, "map", node.pos)?;
                    Value::Object(c.map(entries, pointer, record)?)
                }
                Kind::Alias(_) => return Err(c.err(node.pos, "an alias of an alias")),
            };
            Ok(Some(value))
        })
    }

    /// Refuses a tag on a collection other than the core `!!seq` / `!!map` it is.
    fn collection_tag(
        &self,
        tag: Option<&YamlTag>,
        want: &str,
        pos: (usize, usize),
    ) -> Result<(), Error> {
        match tag {
            None => Ok(()),
            Some(t) if core_suffix(t) == Some(want) || is_non_specific(t) => Ok(()),
            Some(t) if core_suffix(t).is_some() => Err(self.err(
                pos,
                format!(
                    "cannot decode a {} as {}",
                    if want == "seq" { "sequence" } else { "mapping" },
                    tag_name(t)
                ),
            )),
            Some(t) => Err(self.err(pos, format!("unknown tag {}", tag_name(t)))),
        }
    }

    /// A mapping's entries, then its `<<` merge sources for the keys it does not have itself.
    fn map(
        &mut self,
        entries: &[(Rc<Node>, Rc<Node>)],
        pointer: &str,
        record: bool,
    ) -> Result<Map<String, Value>, Error> {
        let mut out = Map::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut merges = Vec::new();
        for (k, v) in entries {
            let key = self.key(k)?;
            if let Some(line) = seen.get(&key) {
                return Err(self.err(
                    k.pos,
                    format!("mapping key {key:?} already defined at line {line}"),
                ));
            }
            seen.insert(key.clone(), k.pos.0);
            if is_merge_key(k) {
                merges.push(v);
                continue;
            }
            let p = child(pointer, &key);
            self.marks.push((p.clone(), self.pos(k.pos)));
            if let Some(value) = self.value(v, &p, record)? {
                out.insert(key, value);
            }
        }
        for m in merges {
            self.merge(&mut out, m, pointer, record)?;
        }
        Ok(out)
    }

    /// Adds the keys of a `<<` value (a mapping, or a sequence of mappings where the earlier
    /// wins) that `out` does not have yet.
    fn merge(
        &mut self,
        out: &mut Map<String, Value>,
        value: &Node,
        pointer: &str,
        record: bool,
    ) -> Result<(), Error> {
        const NOT_MAPS: &str = "map merge requires map or sequence of maps as the value";
        self.through(value, |c, node| {
            c.spend()?;
            match (&node.kind, node.tag.as_ref()) {
                (_, Some(t)) if core_suffix(t).is_none() => Err(c.err(
                    node.pos,
                    format!("unexpected tag {} on a merge key's value", tag_name(t)),
                )),
                (Kind::Map(entries), _) => c.merge_one(out, entries, pointer, record),
                (Kind::Seq(items), _) => {
                    for item in items {
                        c.through(item, |c, source| {
                            c.spend()?;
                            match (&source.kind, source.tag.as_ref()) {
                                (Kind::Map(entries), None) => {
                                    c.merge_one(out, entries, pointer, record)
                                }
                                (Kind::Map(entries), Some(t)) if core_suffix(t) == Some("map") => {
                                    c.merge_one(out, entries, pointer, record)
                                }
                                _ => Err(c.err(source.pos, NOT_MAPS)),
                            }
                        })?;
                    }
                    Ok(())
                }
                _ => Err(c.err(node.pos, NOT_MAPS)),
            }
        })
    }

    fn merge_one(
        &mut self,
        out: &mut Map<String, Value>,
        entries: &[(Rc<Node>, Rc<Node>)],
        pointer: &str,
        record: bool,
    ) -> Result<(), Error> {
        let first_mark = self.marks.len();
        let source = self.map(entries, pointer, record)?;
        let mut added = Vec::new();
        for (k, v) in source {
            if !out.contains_key(&k) {
                added.push(child(pointer, &k));
                out.insert(k, v);
            }
        }
        // Keep the positions of what was taken only.
        let mut i = first_mark;
        while i < self.marks.len() {
            let p = &self.marks[i].0;
            let taken = added.iter().any(|a| {
                p.strip_prefix(a.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            });
            if taken {
                i += 1;
            } else {
                self.marks.swap_remove(i);
            }
        }
        Ok(())
    }

    /// A mapping key as a string: scalars as written (`80: x` → "80"); collections are refused.
    fn key(&mut self, k: &Node) -> Result<String, Error> {
        self.through(k, |c, k| match (&k.kind, k.tag.as_ref()) {
            (_, Some(t)) if core_suffix(t).is_none() && !is_non_specific(t) => Err(c.err(
                k.pos,
                format!("unexpected tag {} on a mapping key", tag_name(t)),
            )),
            (Kind::Scalar(text, _), _) => Ok(text.clone()),
            _ => Err(c.err(k.pos, "a mapping key must be a string, not a collection")),
        })
    }

    /// A scalar resolved by the YAML 1.2 core schema, or as its core tag says.
    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&YamlTag>,
        pos: (usize, usize),
    ) -> Result<Value, Error> {
        let Some(t) = tag else {
            return Ok(if style == ScalarStyle::Plain {
                plain(text)
            } else {
                Value::String(text.to_string())
            });
        };
        if is_non_specific(t) {
            return Ok(Value::String(text.to_string()));
        }
        let bad = || self.err(pos, format!("cannot decode {text:?} as {}", tag_name(t)));
        match core_suffix(t) {
            Some("str") => Ok(Value::String(text.to_string())),
            Some("int") => match plain(text) {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Value::Number(n)),
                _ => Err(bad()),
            },
            Some("float") => match plain(text) {
                Value::Number(n) => n
                    .as_f64()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(bad),
                _ => Err(bad()),
            },
            Some("bool") => match plain(text) {
                v @ Value::Bool(_) => Ok(v),
                _ => Err(bad()),
            },
            Some("null") => match plain(text) {
                Value::Null => Ok(Value::Null),
                _ => Err(bad()),
            },
            _ => Err(self.err(pos, format!("unknown tag {}", tag_name(t)))),
        }
    }
}

/// A plain scalar resolved as compose-go's YAML library (yaml.v3/v4) resolves it into a generic
/// value, so that numbers read the same as with Docker Compose: YAML 1.2 core booleans and nulls,
/// integers by Go's `ParseInt(s, 0, 64)` after dropping `_` (`0x1F`, `0o17`, `0b101`, and `0440`
/// as octal, which `mode: 0440` relies on), then u64, then floats. A float that JSON cannot
/// hold (`.inf`, `.nan`, `1e999`) and anything else stays the string it was written as.
fn plain(text: &str) -> Value {
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "-0" | "-0.0" => return Number::from_f64(-0.0).map_or(Value::Null, Value::Number),
        _ => {}
    }
    let float = |s: &str| {
        s.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
    };
    let number = match text.as_bytes().first() {
        Some(b'.') => float(text),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            let s = text.replace('_', "");
            go_int(&s)
                .map(Value::from)
                .or_else(|| go_uint(&s).map(Value::from))
                .or_else(|| yaml_float(&s).then(|| float(&s)).flatten())
        }
        _ => None,
    };
    number.unwrap_or_else(|| Value::String(text.to_string()))
}

/// Go's `strconv.ParseUint(s, 0, 64)` for a string without `_`.
fn go_uint(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let (digits, radix) = match (b.first(), b.get(1).map(u8::to_ascii_lowercase)) {
        (Some(b'0'), Some(b'b')) if s.len() >= 3 => (&s[2..], 2),
        (Some(b'0'), Some(b'o')) if s.len() >= 3 => (&s[2..], 8),
        (Some(b'0'), Some(b'x')) if s.len() >= 3 => (&s[2..], 16),
        (Some(b'0'), Some(_)) => (&s[1..], 8),
        _ => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Go's `strconv.ParseInt(s, 0, 64)` for a string without `_`.
fn go_int(s: &str) -> Option<i64> {
    match s.as_bytes().first() {
        Some(b'-') => 0i64.checked_sub_unsigned(go_uint(&s[1..])?),
        Some(b'+') => i64::try_from(go_uint(&s[1..])?).ok(),
        _ => i64::try_from(go_uint(s)?).ok(),
    }
}

/// yaml.v3's float pattern: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn yaml_float(s: &str) -> bool {
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let digits = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = if b.first() == Some(&b'.') {
        match digits(1) {
            0 => return false,
            n => 1 + n,
        }
    } else {
        match digits(0) {
            0 => return false,
            n if b.get(n) == Some(&b'.') => n + 1 + digits(n + 1),
            n => n,
        }
    };
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        match digits(i) {
            0 => return false,
            n => i += n,
        }
    }
    i == b.len()
}

fn is_merge_key(k: &Node) -> bool {
    match (&k.kind, k.tag.as_ref()) {
        (Kind::Scalar(text, ScalarStyle::Plain), None) => text == "<<",
        (Kind::Scalar(_, _), Some(t)) => core_suffix(t) == Some("merge"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Result<Vec<Doc>, Error> {
        parse(Arc::new(PathBuf::from("c.yaml")), text)
    }

    fn one(text: &str) -> Doc {
        let mut docs = load(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(docs.len(), 1, "{text:?}");
        docs.remove(0)
    }

    fn err(text: &str) -> String {
        match load(text) {
            Ok(d) => panic!("{text:?} loaded: {:?}", d[0].value),
            Err(e) => e.to_string(),
        }
    }

    fn at(doc: &Doc, pointer: &str) -> (usize, usize) {
        let p = doc
            .marks
            .get(pointer)
            .unwrap_or_else(|| panic!("no position for {pointer:?}"));
        (p.line, p.col)
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let cases: &[(&str, Value)] = &[
            ("1", json!(1)),
            ("-12", json!(-12)),
            ("+12", json!(12)),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0440", json!(288)),
            ("-0x10", json!(-16)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("0", json!(0)),
            ("08", json!(8.0)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("+18446744073709551615", json!(18446744073709551615.0)),
            ("-0", json!(-0.0)),
            (".5", json!(0.5)),
            ("1.", json!(1.0)),
            ("-1.5E+3", json!(-1500.0)),
            ("1e", json!("1e")),
            ("2001-12-14", json!("2001-12-14")),
            ("12:30", json!("12:30")),
            ("0x", json!("0x")),
            ("inf", json!("inf")),
            ("+.inf", json!("+.inf")),
            ("y", json!("y")),
            ("1.0.0", json!("1.0.0")),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            ("true", json!(true)),
            ("False", json!(false)),
            ("yes", json!("yes")),
            ("on", json!("on")),
            ("null", json!(null)),
            ("~", json!(null)),
            ("", json!(null)),
            ("'1'", json!("1")),
            ("\"true\"", json!("true")),
            ("18446744073709551615", json!(18446744073709551615u64)),
            ("99999999999999999999999", json!(1e23)),
            (".inf", json!(".inf")),
            ("1e999", json!("1e999")),
            (".nan", json!(".nan")),
            ("0x", json!("0x")),
            ("1.2.3", json!("1.2.3")),
            ("\"${X:-d}\"", json!("${X:-d}")),
            ("!!str 80", json!("80")),
            ("!!int \"80\"", json!(80)),
            ("!!float 1", json!(1.0)),
            ("!!bool \"true\"", json!(true)),
            ("!!null ''", json!(null)),
            ("! 12", json!("12")),
            ("!<tag:yaml.org,2002:str> 12", json!("12")),
            ("|\n  a\n  b\n", json!("a\nb\n")),
            (">-\n  a\n  b\n", json!("a b")),
        ];
        for (text, want) in cases {
            let doc = one(&format!("v: {text}\n"));
            assert_eq!(doc.value["v"], *want, "v: {text}");
        }
    }

    #[test]
    fn keys_are_strings_as_written() {
        let doc = one("80: a\ntrue: b\n1.50: c\nnull: d\n\"q\": e\n");
        assert_eq!(
            doc.value,
            json!({"80": "a", "true": "b", "1.50": "c", "null": "d", "q": "e"})
        );
        assert!(err("? [a]\n: x\n").contains("a mapping key must be a string"));
    }

    #[test]
    fn positions_are_those_of_keys_and_items() {
        let text = "\
services:
  web:
    image: busybox
    ports:
      - \"80:80\"
      - target: 81
        published: 8081
    labels: {a: 1,  b: 2}
";
        let doc = one(text);
        let cases = [
            ("", (1, 1)),
            ("/services", (1, 1)),
            ("/services/web", (2, 3)),
            ("/services/web/image", (3, 5)),
            ("/services/web/ports", (4, 5)),
            ("/services/web/ports/0", (5, 9)),
            ("/services/web/ports/1", (6, 9)),
            ("/services/web/ports/1/target", (6, 9)),
            ("/services/web/ports/1/published", (7, 9)),
            ("/services/web/labels/b", (8, 21)),
        ];
        for (pointer, want) in cases {
            assert_eq!(at(&doc, pointer), want, "{pointer}");
        }
        let e = load(text.replace("busybox", "[a, b").as_str()).unwrap_err();
        assert!(e.pos.is_some(), "{e}");
    }

    #[test]
    fn syntax_errors_carry_the_position() {
        let cases = [
            (
                "a: 1\n b: 2\n",
                "c.yaml:2:3: mapping values are not allowed in this context",
            ),
            (
                "key: \"open\n",
                "c.yaml:1:6: while scanning a quoted scalar, found unexpected end of stream",
            ),
            (
                "a: *nope\n",
                "c.yaml:1:4: while parsing node, found unknown anchor",
            ),
            (
                "a: &x [*x]\n",
                "c.yaml:1:8: unknown anchor: an alias must follow the whole node its anchor \
                 marks, in the same document",
            ),
            (
                "a: &x 1\n---\nb: *x\n",
                "c.yaml:3:4: unknown anchor: an alias must follow the whole node its anchor \
                 marks, in the same document",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "{text:?}");
        }
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let cases = [
            (
                "a: 1\nb: 2\na: 3\n",
                "c.yaml:3:1: mapping key \"a\" already defined at line 1",
            ),
            (
                "s:\n  x: 1\n  \"x\": 2\n",
                "c.yaml:3:3: mapping key \"x\" already defined at line 2",
            ),
            (
                "80: a\n\"80\": b\n",
                "c.yaml:2:1: mapping key \"80\" already defined at line 1",
            ),
            (
                "m: {a: 1, a: 2}\n",
                "c.yaml:1:11: mapping key \"a\" already defined at line 1",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "{text:?}");
        }
    }

    #[test]
    fn merge_keys_expand_with_local_and_earlier_winning() {
        let text = "\
x-a: &a {image: a, user: ua, x: 1}
x-b: &b {image: b, user: ub, y: 2, z: 3}
services:
  one:
    <<: *a
    image: local
  two:
    image: local
    <<: [*a, *b]
  three:
    <<: [*b, *a]
  four:
    <<: {image: inline}
";
        let doc = one(text);
        let s = &doc.value["services"];
        assert_eq!(s["one"], json!({"image": "local", "user": "ua", "x": 1}));
        assert_eq!(
            s["two"],
            json!({"image": "local", "user": "ua", "x": 1, "y": 2, "z": 3})
        );
        assert_eq!(
            s["three"],
            json!({"image": "b", "user": "ub", "x": 1, "y": 2, "z": 3})
        );
        assert_eq!(s["four"], json!({"image": "inline"}));
        // Merged keys point at where they were written; local keys at themselves.
        assert_eq!(at(&doc, "/services/one/image"), (6, 5));
        assert_eq!(at(&doc, "/services/one/user"), (1, 20));
        assert_eq!(at(&doc, "/services/three/image"), (2, 10));
        assert!(doc.marks.get("/services/one/<<").is_none());
        assert!(!s["one"].as_object().is_some_and(|m| m.contains_key("<<")));
    }

    #[test]
    fn merge_through_aliases_and_nested_merges() {
        let text = "\
x-base: &base {image: base, env: {A: 1}}
x-mid: &mid
  <<: *base
  user: mid
x-list: &list [*mid, {image: other, extra: true}]
services:
  web:
    <<: *list
  odd:
    \"<<\": quoted-is-a-plain-key
";
        let doc = one(text);
        assert_eq!(
            doc.value["services"]["web"],
            json!({"image": "base", "env": {"A": 1}, "user": "mid", "extra": true})
        );
        assert_eq!(
            doc.value["services"]["odd"],
            json!({"<<": "quoted-is-a-plain-key"})
        );
        let cases = [
            (
                "a: &a [1]\nb: {<<: *a}\n",
                "c.yaml:1:8: map merge requires map or sequence of maps as the value",
            ),
            (
                "b: {<<: [1]}\n",
                "c.yaml:1:10: map merge requires map or sequence of maps as the value",
            ),
            (
                "b: {<<: x}\n",
                "c.yaml:1:9: map merge requires map or sequence of maps as the value",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "{text:?}");
        }
    }

    #[test]
    fn aliases_are_expanded() {
        let doc = one("a: &x {k: [1, 2]}\nb: *x\nc: [*x, *x]\n");
        assert_eq!(doc.value["b"], json!({"k": [1, 2]}));
        assert_eq!(doc.value["c"], json!([{"k": [1, 2]}, {"k": [1, 2]}]));
        // The alias site for the node, the anchor's text for what is inside.
        assert_eq!(at(&doc, "/b"), (2, 1));
        assert_eq!(at(&doc, "/c/1"), (3, 9));
        assert_eq!(at(&doc, "/c/1/k"), (1, 8));
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = err(&text);
        assert!(e.contains("excessive aliasing"), "{e}");
        // The same through merge keys.
        let mut text = String::from("m0: &m0 {a: 1, b: 2}\n");
        for i in 1..12 {
            let refs: Vec<String> = (0..10).map(|j| format!("k{j}: *m{}", i - 1)).collect();
            text.push_str(&format!("m{i}: &m{i} {{{}}}\n", refs.join(", ")));
        }
        text.push_str("s: {<<: *m11}\n");
        let e = err(&text);
        assert!(e.contains("excessive aliasing"), "{e}");
        // Deep nesting is refused before it can exhaust the stack.
        let deep = format!("{}x\n", "- ".repeat(400));
        assert!(
            err(&deep).contains("nesting deeper than 256 levels"),
            "deep"
        );
        // Aliases nest anchors in one another beyond what the text shows.
        let mut chain = format!("a0: &a0 {}x{}\n", "[".repeat(200), "]".repeat(200));
        for i in 1..5 {
            let (open, close) = ("[".repeat(200), "]".repeat(200));
            chain.push_str(&format!("a{i}: &a{i} {open}*a{}{close}\n", i - 1));
        }
        let e = err(&chain);
        assert!(
            e.contains("nesting deeper than 512 levels once aliases"),
            "{e}"
        );
    }

    #[test]
    fn merge_tags_are_recorded_and_reset_nodes_removed() {
        let text = "\
services:
  web:
    image: !override busybox
    ports: !reset []
    command: !override [sh, -c]
    environment: !reset
    dns:
      - !reset 1.1.1.1
      - 8.8.8.8
";
        let doc = one(text);
        assert_eq!(
            doc.value,
            json!({"services": {"web": {"image": "busybox", "command": ["sh", "-c"],
                   "dns": ["8.8.8.8"]}}})
        );
        assert_eq!(
            doc.tags,
            vec![
                ("/services/web/image".to_string(), Tag::Override),
                ("/services/web/ports".to_string(), Tag::Reset),
                ("/services/web/command".to_string(), Tag::Override),
                ("/services/web/environment".to_string(), Tag::Reset),
            ]
        );
        assert_eq!(at(&doc, "/services/web/ports"), (4, 5));
        assert_eq!(at(&doc, "/services/web/dns/0"), (9, 9));
    }

    #[test]
    fn tags_reached_through_aliases_and_merges() {
        let text = "\
x-r: &r !reset []
x-base: &base
  ports: !reset []
  image: base
services:
  web:
    <<: *base
    ports: [\"80\"]
    volumes: *r
";
        let doc = one(text);
        assert_eq!(
            doc.value["services"],
            json!({"web": {"ports": ["80"], "image": "base"}})
        );
        assert!(doc
            .tags
            .contains(&("/services/web/ports".to_string(), Tag::Reset)));
        assert!(doc
            .tags
            .contains(&("/services/web/volumes".to_string(), Tag::Reset)));
        assert!(doc
            .tags
            .contains(&("/x-base/ports".to_string(), Tag::Reset)));
    }

    #[test]
    fn unknown_tags_are_refused_by_name_and_place() {
        let cases = [
            ("a: !foo 1\n", "c.yaml:1:4: unknown tag !foo"),
            (
                "a:\n  b: !!binary aGk=\n",
                "c.yaml:2:6: unknown tag !!binary",
            ),
            (
                "a: !!int abc\n",
                "c.yaml:1:4: cannot decode \"abc\" as !!int",
            ),
            (
                "a: !!int 1.5\n",
                "c.yaml:1:4: cannot decode \"1.5\" as !!int",
            ),
            (
                "a: !!map [1]\n",
                "c.yaml:1:4: cannot decode a sequence as !!map",
            ),
            ("a: !<urn:x> 1\n", "c.yaml:1:4: unknown tag !<urn:x>"),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "{text:?}");
        }
    }

    #[test]
    fn documents_and_empty_files() {
        for empty in ["", "# only a comment\n", "\n\n"] {
            let docs = load(empty).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(docs.len(), 1);
            assert_eq!(docs[0].value, json!({}));
        }
        let docs = load("a: 1\n---\nb: 2\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value, json!({"b": 2}));
        assert_eq!(at(&docs[1], "/b"), (3, 1));
        let docs =
            load("--- !reset\na: 1\n--- !override {b: 2}\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs[0].value, json!({}));
        assert_eq!(docs[1].value, json!({"b": 2}));
        assert!(docs[0].tags.is_empty() && docs[1].tags.is_empty());
        let cases = [
            ("- a\n", "c.yaml:1:1: top-level object must be a mapping"),
            (
                "just text\n",
                "c.yaml:1:1: top-level object must be a mapping",
            ),
            ("---\n", "c.yaml:2:1: top-level object must be a mapping"),
            (
                "a: 1\n---\n",
                "c.yaml:3:1: top-level object must be a mapping",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "{text:?}");
        }
    }
}
