//! `extends` (spec 05-services.md#extends, compose-go `loader/extends.go`): a service built on
//! another one of the same file or of another file, the base's own `extends` first, the local
//! definition merged over a copy of it by the `-f` merge rules.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::merge::{apply_tags, merge_at};
use super::{child, Doc, Error, Pos};

/// Resolves every `extends` of `doc`, the canonical tree of `file`. `load` returns the canonical
/// tree of another file named by `extends.file` (already absolute); the caller caches and
/// interpolates. The base's positions move with it (they keep naming the base's file).
pub fn resolve(
    doc: &mut Doc,
    file: &Path,
    load: &mut dyn FnMut(&Path) -> Result<Doc, Error>,
) -> Result<(), Error> {
    let names: Vec<String> = match doc.value.get("services") {
        Some(Value::Object(services)) => services.keys().cloned().collect(),
        _ => return Ok(()),
    };
    let mut files = Files {
        main: file,
        doc,
        others: HashMap::new(),
        load,
    };
    for name in names {
        files.resolve(file.to_path_buf(), &name, &mut Vec::new())?;
    }
    Ok(())
}

/// The file being resolved and the others its services extend, each loaded once.
struct Files<'a> {
    main: &'a Path,
    doc: &'a mut Doc,
    others: HashMap<PathBuf, Doc>,
    load: &'a mut dyn FnMut(&Path) -> Result<Doc, Error>,
}

/// What one `extends` names.
struct Base {
    file: PathBuf,
    service: String,
    /// Whether the base comes from another file (`extends.file`).
    foreign: bool,
}

impl Files<'_> {
    fn doc(&mut self, file: &Path) -> Result<&mut Doc, Error> {
        if file == self.main {
            return Ok(&mut *self.doc);
        }
        Ok(match self.others.entry(file.to_path_buf()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert((self.load)(file)?),
        })
    }

    /// Resolves the `extends` of service `name` of `file` in place. `chain` holds the services
    /// being resolved, outermost first.
    fn resolve(
        &mut self,
        file: PathBuf,
        name: &str,
        chain: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), Error> {
        let sp = child("/services", name);
        let doc = self.doc(&file)?;
        let Some(extends) = doc.value.pointer(&sp).and_then(|s| s.get("extends")) else {
            return Ok(());
        };
        let pos = doc.marks.nearest(&child(&sp, "extends")).cloned();
        let base = base(extends, &file, name, pos.as_ref())?;

        chain.push((file.clone(), name.to_string()));
        if chain
            .iter()
            .any(|(f, s)| *f == base.file && *s == base.service)
        {
            return Err(Error::at(pos.as_ref(), circular(chain, &base)));
        }
        self.check_base(&file, name, &base, pos.as_ref())?;
        self.resolve(base.file.clone(), &base.service, chain)?;
        chain.pop();

        let bp = child("/services", &base.service);
        let based = self.doc(&base.file)?;
        let mut value = based.value.pointer(&bp).cloned().unwrap_or(Value::Null);
        let mut marks = based.marks.moved(&bp, &sp);

        let doc = self.doc(&file)?;
        let Some(slot) = doc.value.pointer_mut(&sp) else {
            return Ok(());
        };
        let mut local = slot.take();
        let mut local_marks = doc.marks.take(&sp);
        if let Value::Object(m) = &mut local {
            m.remove("extends");
            local_marks.take(&child(&sp, "extends"));
        }
        // The local file's `!reset` and `!override` apply to the copy of the base.
        apply_tags(&mut value, &mut marks, &doc.tags, &sp);
        merge_at(&mut value, &mut marks, local, local_marks, &sp)?;
        if let Some(slot) = doc.value.pointer_mut(&sp) {
            *slot = value;
        }
        doc.marks.extend(marks);
        Ok(())
    }

    /// Refuses a base that is not there, with compose-go's messages.
    fn check_base(
        &mut self,
        file: &Path,
        name: &str,
        base: &Base,
        pos: Option<&Pos>,
    ) -> Result<(), Error> {
        let services = self.doc(&base.file)?.value.get("services");
        let found = match (services, base.foreign) {
            (Some(Value::Object(s)), _) => s.contains_key(&base.service),
            (None, true) => {
                return Err(Error::at(
                    pos,
                    format!(
                        "cannot extend service {name:?} in {}: no services section",
                        base.file.display()
                    ),
                ))
            }
            (Some(_), true) => {
                return Err(Error::at(
                    pos,
                    format!(
                        "cannot extend service {name:?} in {}: services must be a mapping",
                        base.file.display()
                    ),
                ))
            }
            (_, false) => false,
        };
        match (found, base.foreign) {
            (true, _) => Ok(()),
            (false, false) => Err(Error::at(
                pos,
                format!(
                    "cannot extend service {name:?} in {}: service {:?} not found",
                    file.display(),
                    base.service
                ),
            )),
            (false, true) => Err(Error::at(
                pos,
                format!(
                    "cannot extend service {name:?} in {}: service {:?} not found in {}",
                    file.display(),
                    base.service,
                    base.file.display()
                ),
            )),
        }
    }
}

/// The service and file an `extends` value names.
fn base(extends: &Value, file: &Path, name: &str, pos: Option<&Pos>) -> Result<Base, Error> {
    let (service, other) = match extends {
        Value::String(s) => (s.clone(), None),
        Value::Object(m) => {
            let Some(Value::String(service)) = m.get("service") else {
                return Err(Error::at(
                    pos,
                    format!("extends.{name}.service is required"),
                ));
            };
            match m.get("file") {
                None | Some(Value::Null) => (service.clone(), None),
                Some(Value::String(f)) => (service.clone(), Some(PathBuf::from(f))),
                Some(_) => {
                    return Err(Error::at(
                        pos,
                        format!("extends.{name}.file must be a string"),
                    ))
                }
            }
        }
        _ => {
            return Err(Error::at(
                pos,
                format!("extends.{name}.service is required"),
            ))
        }
    };
    Ok(match other {
        Some(f) => Base {
            file: f,
            service,
            foreign: true,
        },
        None => Base {
            file: file.to_path_buf(),
            service,
            foreign: false,
        },
    })
}

/// compose-go's message for a cycle, on one line: `Circular reference: a in f extends b in f
/// extends a in f`.
fn circular(chain: &[(PathBuf, String)], closing: &Base) -> String {
    let mut out = String::from("Circular reference:");
    for (i, (f, s)) in chain.iter().enumerate() {
        let verb = if i == 0 { "" } else { " extends" };
        out.push_str(&format!("{verb} {s} in {}", f.display()));
    }
    out.push_str(&format!(
        " extends {} in {}",
        closing.service,
        closing.file.display()
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::super::merge::tests::doc;
    use super::super::Tag;
    use super::*;

    const MAIN: &str = "/p/compose.yaml";
    const COMMON: &str = "/p/common/common.yaml";

    /// Resolves `main` with `common` as the only other file; the files loaded, in order.
    fn run(main: &mut Doc, common: Value) -> (Result<(), Error>, Vec<PathBuf>) {
        let loaded = RefCell::new(Vec::new());
        let mut load = |f: &Path| {
            loaded.borrow_mut().push(f.to_path_buf());
            if f == Path::new(COMMON) {
                Ok(doc(COMMON, common.clone()))
            } else {
                Err(Error::new(format!("open {}: no such file", f.display())))
            }
        };
        let res = resolve(main, Path::new(MAIN), &mut load);
        (res, loaded.into_inner())
    }

    #[test]
    fn extends_resolves() {
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "same file: the local service over a copy of the base",
                json!({"services": {
                    "base": {"image": "a", "environment": {"A": "1"}, "ports": [{"target": 80}], "depends_on": {"db": {"condition": "service_started"}}},
                    "web": {"extends": {"service": "base"}, "environment": {"B": "2"}, "ports": [{"target": 80, "published": "8080"}], "command": ["x"]},
                    "db": {"image": "d"}}}),
                json!({}),
                json!({"services": {
                    "base": {"image": "a", "environment": {"A": "1"}, "ports": [{"target": 80}], "depends_on": {"db": {"condition": "service_started"}}},
                    "web": {"image": "a", "environment": {"A": "1", "B": "2"}, "ports": [{"target": 80}, {"target": 80, "published": "8080"}],
                            "command": ["x"], "depends_on": {"db": {"condition": "service_started"}}},
                    "db": {"image": "d"}}}),
            ),
            (
                "another file, whose service extends one of its own",
                json!({"services": {"web": {"extends": {"service": "app", "file": COMMON}, "image": "mine"}}}),
                json!({"services": {"app": {"extends": {"service": "root"}, "cap_add": ["A"]}, "root": {"image": "r", "cap_add": ["A", "B"], "user": "u"}}}),
                json!({"services": {"web": {"image": "mine", "cap_add": ["A", "B"], "user": "u"}}}),
            ),
            (
                "a chain in one file, resolved in any order",
                json!({"services": {
                    "a": {"extends": {"service": "b"}, "labels": {"a": "1"}},
                    "b": {"extends": {"service": "c"}, "labels": {"b": "1"}},
                    "c": {"image": "c", "labels": {"c": "1"}}}}),
                json!({}),
                json!({"services": {
                    "a": {"image": "c", "labels": {"a": "1", "b": "1", "c": "1"}},
                    "b": {"image": "c", "labels": {"b": "1", "c": "1"}},
                    "c": {"image": "c", "labels": {"c": "1"}}}}),
            ),
            (
                "a string names a service of the same file",
                json!({"services": {"a": {"extends": "b"}, "b": {"image": "b"}}}),
                json!({}),
                json!({"services": {"a": {"image": "b"}, "b": {"image": "b"}}}),
            ),
        ];
        for (name, main, common, want) in cases {
            let mut d = doc(MAIN, main);
            let (res, _) = run(&mut d, common);
            assert_eq!(res, Ok(()), "{name}");
            assert_eq!(d.value, want, "{name}");
        }
    }

    #[test]
    fn extends_refusals() {
        let ext = |s: Value| json!({"services": {"web": {"extends": s, "image": "x"}, "other": {"image": "o"}}});
        let cases: Vec<(Value, Value, &str)> = vec![
            (ext(json!({"service": "nope"})), json!({}),
             "cannot extend service \"web\" in /p/compose.yaml: service \"nope\" not found"),
            (ext(json!({"service": "nope", "file": COMMON})), json!({"services": {"app": {}}}),
             "cannot extend service \"web\" in /p/compose.yaml: service \"nope\" not found in /p/common/common.yaml"),
            (ext(json!({"service": "app", "file": COMMON})), json!({"volumes": {}}),
             "cannot extend service \"web\" in /p/common/common.yaml: no services section"),
            (ext(json!({"file": COMMON})), json!({}), "extends.web.service is required"),
            (ext(json!({"service": "app", "file": "/p/missing.yaml"})), json!({}), "open /p/missing.yaml: no such file"),
            (ext(json!({"service": "web"})), json!({}),
             "Circular reference: web in /p/compose.yaml extends web in /p/compose.yaml"),
            (json!({"services": {"a": {"extends": {"service": "b"}}, "b": {"extends": {"service": "c"}}, "c": {"extends": {"service": "a"}}}}),
             json!({}),
             "Circular reference: a in /p/compose.yaml extends b in /p/compose.yaml extends c in /p/compose.yaml extends a in /p/compose.yaml"),
            (ext(json!({"service": "app", "file": COMMON})),
             json!({"services": {"app": {"extends": {"service": "web", "file": MAIN}}}}),
             "Circular reference: web in /p/compose.yaml extends app in /p/common/common.yaml extends web in /p/compose.yaml"),
        ];
        for (main, common, want) in cases {
            let mut d = doc(MAIN, main);
            let (res, _) = run(&mut d, common);
            let err = res.unwrap_err();
            assert_eq!(err.msg, want);
            // The position is the `extends` that fails: the cross-file cycle closes in COMMON.
            let file = if want.contains("extends app in") {
                COMMON
            } else {
                MAIN
            };
            if !want.starts_with("open") {
                assert_eq!(
                    err.pos.map(|p| p.file.display().to_string()).as_deref(),
                    Some(file),
                    "{want}"
                );
            }
        }
    }

    #[test]
    fn positions_tags_and_one_load_per_file() {
        let mut d = doc(
            MAIN,
            json!({"services": {
                "web": {"extends": {"service": "app", "file": COMMON}, "environment": {"B": "2"}},
                "worker": {"extends": {"service": "app", "file": COMMON}, "ports": [{"target": 9}]}}}),
        );
        d.tags = vec![
            ("/services/web/environment".into(), Tag::Override),
            ("/services/worker/ports".into(), Tag::Override),
            ("/services/worker/user".into(), Tag::Reset),
        ];
        let common = json!({"services": {"app": {"image": "a", "user": "u", "environment": {"A": "1"}, "ports": [{"target": 80}]}}});
        let (res, loaded) = run(&mut d, common.clone());
        assert_eq!(res, Ok(()));
        assert_eq!(loaded, vec![PathBuf::from(COMMON)]);
        assert_eq!(
            d.value,
            json!({"services": {
                "web": {"image": "a", "user": "u", "environment": {"B": "2"}, "ports": [{"target": 80}]},
                "worker": {"image": "a", "environment": {"A": "1"}, "ports": [{"target": 9}]}}})
        );
        let c = doc(COMMON, common);
        assert_eq!(
            d.marks.get("/services/web/image"),
            c.marks.get("/services/app/image")
        );
        assert_eq!(
            d.marks.get("/services/web/ports/0/target"),
            c.marks.get("/services/app/ports/0/target")
        );
        let local = d
            .marks
            .get("/services/web/environment/B")
            .map(|p| p.file.display().to_string());
        assert_eq!(local.as_deref(), Some(MAIN));
        assert!(d.marks.get("/services/web/environment/A").is_none());
        assert!(d.marks.get("/services/web/extends").is_none());
        assert_eq!(
            d.marks
                .get("/services/worker/ports/0")
                .map(|p| p.file.display().to_string())
                .as_deref(),
            Some(MAIN)
        );
    }
}
