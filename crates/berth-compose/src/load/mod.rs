//! Loading a Compose project: each file becomes a JSON tree with the position of every node,
//! then interpolation, schema validation, canonical long forms, include, extends and the `-f`
//! merge produce one tree that deserializes into `crate::model`.

pub mod dotenv;
pub mod interp;
pub mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub mod assemble;
pub mod canon;
pub mod extends;
pub mod include;
pub mod merge;
pub mod schema;

/// Where a node was written: file, 1-based line, 1-based column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<PathBuf>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// The positions of a tree's nodes, by JSON pointer (RFC 6901: `/services/web/ports/0`).
#[derive(Clone, Debug, Default)]
pub struct Marks {
    map: HashMap<String, Pos>,
}

impl Marks {
    pub fn insert(&mut self, pointer: String, pos: Pos) {
        self.map.insert(pointer, pos);
    }

    /// The position of exactly this node.
    pub fn get(&self, pointer: &str) -> Option<&Pos> {
        self.map.get(pointer)
    }

    /// The position of this node or of its nearest ancestor that has one.
    pub fn nearest(&self, pointer: &str) -> Option<&Pos> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(pos);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// Adds `other`'s positions; where both have a node, `other`'s (the later file) wins.
    pub fn extend(&mut self, other: Marks) {
        self.map.extend(other.map);
    }

    /// Removes and returns the positions of this node and of everything under it (a node the
    /// merge replaces, or a sequence whose items it renumbers).
    pub fn take(&mut self, pointer: &str) -> Marks {
        let mut map = HashMap::new();
        self.map.retain(|k, v| {
            let under = k
                .strip_prefix(pointer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if under {
                map.insert(k.clone(), v.clone());
            }
            !under
        });
        Marks { map }
    }

    /// The positions under `from`, moved to sit under `to` (a service copied by `extends`, a
    /// resource imported by `include`).
    pub fn moved(&self, from: &str, to: &str) -> Marks {
        let map = self
            .map
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(from)?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| (format!("{to}{rest}"), v.clone()))
            })
            .collect();
        Marks { map }
    }
}

/// A YAML tag that changes how the `-f` merge treats a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: the key is removed from the merged result.
    Reset,
    /// `!override`: the value replaces the earlier one instead of merging with it.
    Override,
}

/// One loaded file (or one document of it): the tree, its positions and its merge tags.
#[derive(Clone, Debug, Default)]
pub struct Doc {
    pub value: serde_json::Value,
    pub marks: Marks,
    /// JSON pointers of tagged nodes, in document order.
    pub tags: Vec<(String, Tag)>,
}

/// A loading error: one line, with the position of the node it is about when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub pos: Option<Pos>,
    pub msg: String,
}

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error {
            pos: None,
            msg: msg.into(),
        }
    }

    pub fn at(pos: Option<&Pos>, msg: impl Into<String>) -> Error {
        Error {
            pos: pos.cloned(),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Error {}

/// One JSON-pointer segment, escaped (`~` → `~0`, `/` → `~1`).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A pointer appended with one more segment.
pub fn child(pointer: &str, segment: &str) -> String {
    format!("{pointer}/{}", escape(segment))
}

/// A pointer as Compose writes paths in its messages: `/services/web/ports/0` → `services.web.ports[0]`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_read_as_compose_paths() {
        assert_eq!(dotted("/services/web/ports/0"), "services.web.ports[0]");
        assert_eq!(dotted(&child("/labels", "a/b~c")), "labels.a/b~c");
        assert_eq!(dotted(""), "");
    }

    #[test]
    fn nearest_and_moved_positions() {
        let pos = |line| Pos {
            file: Arc::new(PathBuf::from("c.yaml")),
            line,
            col: 1,
        };
        let mut m = Marks::default();
        m.insert("/services/base".into(), pos(2));
        m.insert("/services/base/image".into(), pos(3));
        m.insert("/services/basement".into(), pos(9));
        assert_eq!(m.nearest("/services/base/ports/0").map(|p| p.line), Some(2));
        assert_eq!(m.nearest("/volumes"), None);
        let moved = m.moved("/services/base", "/services/web");
        assert_eq!(moved.get("/services/web/image").map(|p| p.line), Some(3));
        assert_eq!(moved.get("/services/web").map(|p| p.line), Some(2));
        assert!(moved.get("/services/webment").is_none());
        assert_eq!(
            format!("{}", Error::at(Some(&pos(4)), "bad")),
            "c.yaml:4:1: bad"
        );
    }
}
