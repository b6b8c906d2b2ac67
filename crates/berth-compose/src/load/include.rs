//! `include` (spec 14-include.md, compose-go `loader/include.go`): the entries of a canonical
//! tree, the cycle rule, and the import of an included project's resources into the tree.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::merge::{apply_tags, merge_at};
use super::{child, Doc, Error, Pos};

/// One `include` entry: a Compose project of its own, loaded and then imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    /// Its files: the first one, then the ones merged over it.
    pub paths: Vec<PathBuf>,
    /// The directory its relative paths are resolved against; `None`: the first file's.
    pub project_directory: Option<PathBuf>,
    /// The files that give its interpolation defaults, in order: the ones written (without
    /// `/dev/null`, which names none), else `<project directory>/.env` when that file exists.
    pub env_files: Vec<PathBuf>,
    /// Where the entry was written.
    pub pos: Option<Pos>,
}

impl Include {
    /// The included project's directory: `project_directory`, else the first file's directory.
    pub fn directory(&self) -> PathBuf {
        match (&self.project_directory, self.paths.first()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(first)) => first
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            (None, None) => PathBuf::from("."),
        }
    }

    /// Refuses to include a file already being loaded; `stack` holds the files being loaded,
    /// the outermost first (the top-level file, then each included one down to this entry's).
    pub fn check_cycle(&self, stack: &[PathBuf]) -> Result<(), Error> {
        let Some(again) = self.paths.iter().find(|p| stack.contains(p)) else {
            return Ok(());
        };
        let mut msg = String::from("include cycle detected:");
        for (i, f) in stack.iter().chain([again]).enumerate() {
            let verb = if i == 0 { "" } else { " include" };
            msg.push_str(&format!("{verb} {}", f.display()));
        }
        Err(Error::at(self.pos.as_ref(), msg))
    }
}

/// The `include` entries of a canonical tree, in order.
pub fn entries(doc: &Doc) -> Result<Vec<Include>, Error> {
    let items = match doc.value.get("include") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Error::at(
                doc.marks.nearest("/include"),
                format!("`include` must be a list, got {other}"),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| entry(doc, item, &child("/include", &i.to_string())))
        .collect()
}

fn entry(doc: &Doc, item: &Value, p: &str) -> Result<Include, Error> {
    let pos = doc.marks.nearest(p).cloned();
    let err = |at: &str, what: &str| {
        Error::at(
            doc.marks.nearest(at),
            format!("{} {what}", super::dotted(at)),
        )
    };
    let strings = |v: &Value, at: &str| -> Result<Vec<PathBuf>, Error> {
        match v {
            Value::String(s) => Ok(vec![PathBuf::from(s)]),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    Value::String(s) => Ok(PathBuf::from(s)),
                    _ => Err(err(&child(at, &i.to_string()), "must be a string")),
                })
                .collect(),
            _ => Err(err(at, "must be a string or a list of strings")),
        }
    };
    let empty = Map::new();
    let (paths, fields) = match item {
        Value::String(s) => (vec![PathBuf::from(s)], &empty),
        Value::Object(m) => match m.get("path") {
            Some(v) => (strings(v, &child(p, "path"))?, m),
            None => return Err(err(p, "requires a path")),
        },
        _ => return Err(err(p, "must be a string or a mapping")),
    };
    if paths.is_empty() {
        return Err(err(&child(p, "path"), "must name at least one file"));
    }
    let project_directory = match fields.get("project_directory") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(PathBuf::from(d)),
        Some(_) => return Err(err(&child(p, "project_directory"), "must be a string")),
    };
    let mut include = Include {
        paths,
        project_directory,
        env_files: Vec::new(),
        pos,
    };
    include.env_files = match fields.get("env_file") {
        None | Some(Value::Null) => {
            let dotenv = include.directory().join(".env");
            if dotenv.is_file() {
                vec![dotenv]
            } else {
                Vec::new()
            }
        }
        Some(v) => strings(v, &child(p, "env_file"))?
            .into_iter()
            .filter(|f| f != Path::new("/dev/null"))
            .collect(),
    };
    Ok(include)
}

/// The top-level sections an included project brings in.
const SECTIONS: [&str; 6] = [
    "services", "volumes", "networks", "secrets", "configs", "models",
];

/// Imports the resources of an included project (its own loading finished) into `doc`: a name
/// only the included project defines is added as it is; a name both define is merged as current
/// Compose does (compose-go since v2.10), the local definition over the included one, after
/// this file's `!reset` / `!override` are applied to the included one.
pub fn import(doc: &mut Doc, included: Doc) -> Result<(), Error> {
    let Doc {
        value: mut from,
        marks: mut from_marks,
        ..
    } = included;
    let Doc { value, marks, tags } = doc;
    for section in SECTIONS {
        let Some(Value::Object(resources)) = from.get_mut(section).map(Value::take) else {
            continue;
        };
        let sp = format!("/{section}");
        if value.is_null() {
            *value = Value::Object(Map::new());
        }
        let Value::Object(top) = value else {
            return Err(Error::at(
                marks.nearest(""),
                "top-level object must be a mapping",
            ));
        };
        let target = top
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        if target.is_null() {
            *target = Value::Object(Map::new());
        }
        let Value::Object(target) = target else {
            return Err(Error::at(
                marks.nearest(&sp),
                format!("{section} must be a mapping"),
            ));
        };
        for (name, resource) in resources {
            let p = child(&sp, &name);
            let mut resource_marks = from_marks.take(&p);
            match target.remove(&name) {
                None => {
                    target.insert(name, resource);
                    marks.extend(resource_marks);
                }
                Some(local) => {
                    let mut merged = resource;
                    apply_tags(&mut merged, &mut resource_marks, tags, &p);
                    let local_marks = marks.take(&p);
                    merge_at(&mut merged, &mut resource_marks, local, local_marks, &p)?;
                    target.insert(name, merged);
                    marks.extend(resource_marks);
                }
            }
        }
    }
    Ok(())
}
