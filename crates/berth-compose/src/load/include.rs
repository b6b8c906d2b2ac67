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

/// The `include` entries of a canonical tree, in order. Each is loaded as a project of its own
/// (its files merged, its own includes and extends applied), then [`import`]ed; the loader then
/// removes `include` from the tree, as compose-go does.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::merge::tests::doc;
    use super::super::Tag;
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn entries_read() {
        // A project directory with a `.env`, and one without.
        let dir = std::env::temp_dir().join(format!("berth-include-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), "A=1\n").unwrap();
        let d = dir.display().to_string();
        let cases: Vec<(Value, Include)> = vec![
            (
                json!({"path": ["/q/compose.yaml", "/q/override.yaml"]}),
                Include {
                    paths: paths(&["/q/compose.yaml", "/q/override.yaml"]),
                    project_directory: None,
                    env_files: vec![],
                    pos: None,
                },
            ),
            (
                json!({"path": format!("{d}/compose.yaml")}),
                Include {
                    paths: vec![dir.join("compose.yaml")],
                    project_directory: None,
                    env_files: vec![dir.join(".env")],
                    pos: None,
                },
            ),
            (
                json!({"path": ["/q/compose.yaml"], "project_directory": d}),
                Include {
                    paths: paths(&["/q/compose.yaml"]),
                    project_directory: Some(dir.clone()),
                    env_files: vec![dir.join(".env")],
                    pos: None,
                },
            ),
            (
                json!({"path": [format!("{d}/compose.yaml")], "env_file": ["/dev/null"]}),
                Include {
                    paths: vec![dir.join("compose.yaml")],
                    project_directory: None,
                    env_files: vec![],
                    pos: None,
                },
            ),
            (
                json!({"path": ["/q/c.yaml"], "env_file": ["/q/a.env", "/q/b.env"]}),
                Include {
                    paths: paths(&["/q/c.yaml"]),
                    project_directory: None,
                    env_files: paths(&["/q/a.env", "/q/b.env"]),
                    pos: None,
                },
            ),
            (
                json!("/q/short.yaml"),
                Include {
                    paths: paths(&["/q/short.yaml"]),
                    project_directory: None,
                    env_files: vec![],
                    pos: None,
                },
            ),
        ];
        let items: Vec<Value> = cases.iter().map(|(v, _)| v.clone()).collect();
        let file = doc("/p/compose.yaml", json!({ "include": items }));
        let got = entries(&file);
        std::fs::remove_dir_all(&dir).unwrap();
        let got = got.unwrap();
        assert_eq!(got.len(), cases.len());
        for (i, (got, (_, mut want))) in got.into_iter().zip(cases).enumerate() {
            want.pos = file.marks.get(&format!("/include/{i}")).cloned();
            assert_eq!(got, want, "include[{i}]");
        }
        assert_eq!(entries(&doc("c.yaml", json!({"services": {}}))), Ok(vec![]));
    }

    #[test]
    fn entries_refused() {
        let cases: Vec<(Value, &str, usize)> = vec![
            (
                json!({"include": "x.yaml"}),
                "`include` must be a list, got \"x.yaml\"",
                2,
            ),
            (
                json!({"include": [3]}),
                "include[0] must be a string or a mapping",
                3,
            ),
            (
                json!({"include": [{"env_file": "a"}]}),
                "include[0] requires a path",
                3,
            ),
            (
                json!({"include": [{"path": []}]}),
                "include[0].path must name at least one file",
                4,
            ),
            (
                json!({"include": [{"path": ["a", 1]}]}),
                "include[0].path[1] must be a string",
                6,
            ),
            (
                json!({"include": [{"path": "a", "project_directory": 1}]}),
                "include[0].project_directory must be a string",
                5,
            ),
        ];
        for (v, want, line) in cases {
            let err = entries(&doc("c.yaml", v)).unwrap_err();
            assert_eq!(err.msg, want);
            assert_eq!(err.pos.map(|p| p.line), Some(line), "{want}");
        }
    }

    #[test]
    fn cycles() {
        let inc = Include {
            paths: paths(&["/a/compose.yaml"]),
            project_directory: None,
            env_files: vec![],
            pos: None,
        };
        assert_eq!(inc.directory(), PathBuf::from("/a"));
        assert_eq!(inc.check_cycle(&paths(&["/p/compose.yaml"])), Ok(()));
        let err = inc
            .check_cycle(&paths(&["/a/compose.yaml", "/b/compose.yaml"]))
            .unwrap_err();
        assert_eq!(
            err.msg,
            "include cycle detected: /a/compose.yaml include /b/compose.yaml include /a/compose.yaml"
        );
    }

    #[test]
    fn imports() {
        let included = json!({
            "services": {"db": {"image": "postgres", "environment": {"A": "1", "B": "2"}, "ports": [{"target": 5432}]},
                         "cache": {"image": "redis"}},
            "volumes": {"data": {}},
            "networks": {"back": {"driver": "bridge"}},
            "secrets": {"s": {"file": "/q/s"}},
            "configs": {"c": {"file": "/q/c"}},
            "x-ignored": {"a": 1}});
        type Case = (&'static str, Value, Vec<(&'static str, Tag)>, Value);
        let cases: Vec<Case> = vec![
            (
                "names only in the included project are added",
                json!({"services": {"web": {"image": "w"}}}),
                vec![],
                json!({"services": {"web": {"image": "w"}, "db": {"image": "postgres", "environment": {"A": "1", "B": "2"}, "ports": [{"target": 5432}]},
                                    "cache": {"image": "redis"}},
                       "volumes": {"data": {}}, "networks": {"back": {"driver": "bridge"}},
                       "secrets": {"s": {"file": "/q/s"}}, "configs": {"c": {"file": "/q/c"}}}),
            ),
            (
                "a name defined in both: the local definition merged over the included one",
                json!({"services": {"db": {"environment": {"B": "3"}, "ports": [{"target": 5432}, {"target": 1}]}},
                       "volumes": {"data": {"driver": "local"}}, "networks": {"back": {"driver": "bridge"}}}),
                vec![],
                json!({"services": {"db": {"image": "postgres", "environment": {"A": "1", "B": "3"}, "ports": [{"target": 5432}, {"target": 1}]},
                                    "cache": {"image": "redis"}},
                       "volumes": {"data": {"driver": "local"}}, "networks": {"back": {"driver": "bridge"}},
                       "secrets": {"s": {"file": "/q/s"}}, "configs": {"c": {"file": "/q/c"}}}),
            ),
            (
                "the local file's tags apply to the included definition",
                json!({"services": {"db": {"environment": {"C": "3"}}, "cache": {"image": "valkey"}}}),
                vec![
                    ("/services/db/environment", Tag::Override),
                    ("/services/db/ports", Tag::Reset),
                    ("/services/cache", Tag::Override),
                ],
                json!({"services": {"db": {"image": "postgres", "environment": {"C": "3"}}, "cache": {"image": "valkey"}},
                       "volumes": {"data": {}}, "networks": {"back": {"driver": "bridge"}},
                       "secrets": {"s": {"file": "/q/s"}}, "configs": {"c": {"file": "/q/c"}}}),
            ),
        ];
        for (name, local, tags, want) in cases {
            let mut d = doc("/p/compose.yaml", local);
            d.tags = tags.into_iter().map(|(p, t)| (p.to_string(), t)).collect();
            let inc = doc("/q/compose.yaml", included.clone());
            let inc_marks = inc.marks.clone();
            import(&mut d, inc).unwrap();
            assert_eq!(d.value, want, "{name}");
            assert_eq!(
                d.marks.get("/services/db/image"),
                inc_marks.get("/services/db/image"),
                "{name}"
            );
            assert!(d.marks.get("/x-ignored").is_none(), "{name}");
        }
        let mut d = doc(
            "/p/compose.yaml",
            json!({"services": {"db": {"ports": "5432"}}}),
        );
        let err = import(&mut d, doc("/q/compose.yaml", included)).unwrap_err();
        assert_eq!(err.msg, "cannot override services.db.ports");
        assert_eq!(
            err.pos.map(|p| p.file.display().to_string()).as_deref(),
            Some("/p/compose.yaml")
        );
    }
}
