//! Validation of one file's interpolated tree against the official compose-spec JSON schema
//! (draft-07, `src/compose-spec.json`), reporting the most specific failure the way Compose
//! words it, at the position of the offending node.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use super::{child, dotted, Doc, Error};

/// The compose-spec project's schema (Apache-2.0), kept byte-identical to its source.
const SCHEMA: &str = include_str!("../compose-spec.json");

/// The compiled schema, built on first use; an error here is a bug in the embedded schema.
fn validator() -> Result<&'static Validator, Error> {
    static VALIDATOR: OnceLock<Result<Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
            jsonschema::validator_for(&schema).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Error::new(format!(
                "the embedded compose-spec schema does not compile: {e}"
            ))
        })
}

/// Checks `doc` against the compose-spec schema. On failure, returns the single most specific
/// error (the deepest instance path; an unexpected key counts one deeper than its mapping).
pub fn validate(doc: &Doc) -> Result<(), Error> {
    let validator = validator()?;
    let mut best: Option<(usize, Error)> = None;
    for err in validator.iter_errors(&doc.value) {
        most_specific(doc, &err, &mut best);
    }
    match best {
        None => Ok(()),
        Some((_, err)) => Err(err),
    }
}

/// Depth of an error: the number of segments of its instance path, plus one for an unexpected
/// key (which is about the key, below its mapping).
fn specificity(err: &ValidationError<'_>) -> usize {
    let depth = err.instance_path().segments().count();
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { .. } => depth + 1,
        _ => depth,
    }
}

/// Keeps in `best` the deepest error among `err` and, for `anyOf`/`oneOf` failures, the errors
/// of their branches; on a tie the first one seen stays.
fn most_specific(doc: &Doc, err: &ValidationError<'_>, best: &mut Option<(usize, Error)>) {
    match err.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context }
            if context.iter().any(|branch| !branch.is_empty()) =>
        {
            for e in context.iter().flatten() {
                most_specific(doc, e, best);
            }
        }
        _ => {
            let s = specificity(err);
            if best.as_ref().is_none_or(|(b, _)| s > *b) {
                *best = Some((s, describe(doc, err)));
            }
        }
    }
}

/// Compose's name for a JSON type.
fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Object => "mapping",
        other => other.as_str(),
    }
}

/// `'a', 'b'`: strings quoted the way Compose's schema messages quote them.
fn quoted<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    items
        .into_iter()
        .map(|s| format!("'{}'", s.replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON value as it reads in a message: strings quoted, other scalars bare.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => quoted([s.as_str()]),
        Value::Array(_) | Value::Object(_) => "value".to_string(),
        other => other.to_string(),
    }
}

/// The first pair of equal items of an array, for a `uniqueItems` failure.
fn duplicates(v: &Value) -> Option<(usize, usize)> {
    let items = v.as_array()?;
    (0..items.len()).find_map(|j| (0..j).find(|&i| items[i] == items[j]).map(|i| (i, j)))
}

/// The error as Compose words it (`services.web.restart must be a string`), at the node's
/// position (for an unexpected key, the key's own).
fn describe(doc: &Doc, err: &ValidationError<'_>) -> Error {
    let pointer = err.instance_path().as_str();
    let path = dotted(pointer);
    let subject = |msg: String| {
        if path.is_empty() {
            msg
        } else {
            format!("{path} {msg}")
        }
    };
    let instance = err.instance();
    let (at, msg) = match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let msg = format!(
                "additional properties {} not allowed",
                quoted(unexpected.iter().map(String::as_str))
            );
            let at = unexpected
                .first()
                .map_or_else(|| pointer.to_string(), |k| child(pointer, k));
            let msg = if path.is_empty() {
                msg
            } else {
                format!("{path}: {msg}")
            };
            return Error::at(doc.marks.nearest(&at), msg);
        }
        ValidationErrorKind::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => type_name(*t).to_string(),
                TypeKind::Multiple(set) => {
                    let mut names: Vec<&str> = set.iter().map(type_name).collect();
                    names.sort_unstable();
                    match names.split_last() {
                        Some((last, rest)) if !rest.is_empty() => {
                            format!("{} or {last}", rest.join(", "))
                        }
                        _ => names.join(""),
                    }
                }
            };
            (pointer, subject(format!("must be a {want}")))
        }
        ValidationErrorKind::Minimum { limit } => (
            pointer,
            subject(format!("must be greater than or equal to {limit}")),
        ),
        ValidationErrorKind::Maximum { limit } => (
            pointer,
            subject(format!("must be less than or equal to {limit}")),
        ),
        ValidationErrorKind::Enum { options } => {
            let msg = match options.as_array() {
                Some(opts) if opts.len() == 1 => format!("must be {}", display(&opts[0])),
                Some(opts) => format!(
                    "must be one of {}",
                    opts.iter().map(display).collect::<Vec<_>>().join(", ")
                ),
                None => "'enum' failed".to_string(),
            };
            (pointer, subject(msg))
        }
        ValidationErrorKind::Constant { expected_value } => (
            pointer,
            subject(format!("must be {}", display(expected_value))),
        ),
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), |s| s.to_string());
            (
                pointer,
                subject(format!("missing property {}", quoted([name.as_str()]))),
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            let got = instance.as_str().unwrap_or_default();
            (
                pointer,
                subject(format!(
                    "{} does not match pattern {}",
                    quoted([got]),
                    quoted([pattern.as_str()])
                )),
            )
        }
        ValidationErrorKind::UniqueItems => {
            let msg = match duplicates(instance) {
                Some((i, j)) => format!("items at {i} and {j} are equal"),
                None => "items are not unique".to_string(),
            };
            (pointer, subject(msg))
        }
        ValidationErrorKind::MinItems { limit } => {
            let got = instance.as_array().map_or(0, Vec::len);
            (
                pointer,
                subject(format!("minItems: got {got}, want {limit}")),
            )
        }
        ValidationErrorKind::MinProperties { limit } => {
            let got = instance.as_object().map_or(0, |m| m.len());
            (
                pointer,
                subject(format!("minProperties: got {got}, want {limit}")),
            )
        }
        ValidationErrorKind::OneOfNotValid { .. } => {
            (pointer, subject("'oneOf' failed, none matched".to_string()))
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => (
            pointer,
            subject("'oneOf' failed, more than one matched".to_string()),
        ),
        ValidationErrorKind::AnyOf { .. } => (pointer, subject("'anyOf' failed".to_string())),
        _ => (pointer, subject(err.to_string())),
    };
    Error::at(doc.marks.nearest(at), msg)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::load::{Marks, Pos};

    fn pos(line: usize, col: usize) -> Pos {
        Pos {
            file: Arc::new(PathBuf::from("compose.yaml")),
            line,
            col,
        }
    }

    /// A doc with positions: each pointer gets the line given.
    fn doc(value: Value, lines: &[(&str, usize)]) -> Doc {
        let mut marks = Marks::default();
        for (p, line) in lines {
            marks.insert((*p).to_string(), pos(*line, 3));
        }
        Doc {
            value,
            marks,
            tags: Vec::new(),
        }
    }

    fn error(value: Value, lines: &[(&str, usize)]) -> Error {
        match validate(&doc(value, lines)) {
            Err(e) => e,
            Ok(()) => panic!("expected a schema error"),
        }
    }

    #[test]
    fn schema_is_draft_07() {
        // The schema declares draft-07 in `$schema`; a validator for any other draft (the
        // library's default is 2020-12) would be the wrong one.
        let v = validator().expect("schema compiles");
        assert_eq!(v.draft(), jsonschema::Draft::Draft7);
        assert!(SCHEMA.contains("\"$schema\": \"https://json-schema.org/draft-07/schema\""));
    }

    #[test]
    fn valid_projects_pass() {
        let ok = [
            json!({"services": {"web": {"image": "nginx"}}}),
            json!({
                "version": "3.8",
                "name": "demo",
                "x-common": {"anything": [1, 2]},
                "services": {
                    "web": {
                        "image": "nginx:1",
                        "build": {"context": ".", "args": ["A=1"]},
                        "command": "sh -c 'echo hi'",
                        "ports": ["8080:80", 9000, {"target": 81, "published": "8081"}],
                        "volumes": ["./data:/data:ro", {"type": "volume", "source": "v", "target": "/v"}],
                        "environment": {"A": 1, "B": true, "C": null},
                        "labels": ["a=b"],
                        "depends_on": {"db": {"condition": "service_healthy"}},
                        "restart": "unless-stopped",
                        "healthcheck": {"test": "curl -f localhost", "interval": "10s"},
                        "ulimits": {"nofile": {"soft": 1, "hard": 2}, "nproc": 65535},
                        "extra_hosts": {"db": "10.0.0.1"},
                        "x-mine": 1
                    },
                    "db": {"image": "postgres", "networks": ["back"]}
                },
                "networks": {"back": null, "ext": {"external": true}},
                "volumes": {"v": {}, "old": {"external": {"name": "o"}}},
                "secrets": {"s": {"file": "./s.txt"}},
                "include": ["other.yaml"]
            }),
        ];
        for v in ok {
            assert_eq!(validate(&doc(v.clone(), &[])), Ok(()), "{v}");
        }
    }

    #[test]
    fn unknown_key_is_named_at_its_line() {
        let e = error(
            json!({"services": {"web": {"image": "nginx", "portz": ["80"]}}}),
            &[
                ("/services", 1),
                ("/services/web", 2),
                ("/services/web/portz", 4),
            ],
        );
        assert_eq!(
            e.msg,
            "services.web: additional properties 'portz' not allowed"
        );
        assert_eq!(e.pos, Some(pos(4, 3)));

        let e = error(json!({"helicopters": {}}), &[("/helicopters", 7)]);
        assert_eq!(e.msg, "additional properties 'helicopters' not allowed");
        assert_eq!(e.pos.map(|p| p.line), Some(7));
    }

    #[test]
    fn wrong_types_name_the_path() {
        let cases = [
            (
                json!({"services": {"web": {"image": "x", "restart": 5}}}),
                "services.web.restart must be a string",
                "/services/web/restart",
            ),
            (
                json!({"services": {"web": {"image": "x", "privileged": []}}}),
                "services.web.privileged must be a boolean or string",
                "/services/web/privileged",
            ),
            (
                json!({"services": []}),
                "services must be a mapping",
                "/services",
            ),
            (
                // A port entry that is an object with an unknown key: the unexpected key is
                // deeper than the "must be a number/string" of the other oneOf branches.
                json!({"services": {"web": {"image": "x", "ports": ["80", {"target": 80, "bogus": 1}]}}}),
                "services.web.ports[1]: additional properties 'bogus' not allowed",
                "/services/web/ports/1/bogus",
            ),
            (
                json!({"services": {"web": {"image": "x", "ports": [[80]]}}}),
                "services.web.ports[0] must be a number",
                "/services/web/ports/0",
            ),
            (
                json!({"services": {"web": {"image": "x", "depends_on": {"db": {"condition": "soon"}}}}}),
                "services.web.depends_on.db.condition must be one of 'service_started', 'service_healthy', 'service_completed_successfully'",
                "/services/web/depends_on/db/condition",
            ),
            (
                json!({"services": {"web": {"image": "x", "depends_on": {"db": {"required": true}}}}}),
                "services.web.depends_on.db missing property 'condition'",
                "/services/web/depends_on/db",
            ),
        ];
        for (value, msg, at) in cases {
            let e = error(value, &[(at, 9)]);
            assert_eq!(e.msg, msg);
            assert_eq!(e.pos.map(|p| p.line), Some(9), "{msg}");
        }
    }

    #[test]
    fn position_falls_back_to_the_nearest_ancestor() {
        let e = error(
            json!({"services": {"web": {"image": "x", "cpu_count": []}}}),
            &[("/services/web", 2)],
        );
        assert!(e.msg.starts_with("services.web.cpu_count "), "{}", e.msg);
        assert_eq!(e.pos.map(|p| p.line), Some(2));
    }
}
