//! Compose variable interpolation (`$VAR`, `${VAR:-default}`, ...) with the same reading as
//! compose-go's template package, and the type casts compose-go applies afterwards to values
//! that must be numbers or booleans (`ports[].target: "${PORT}"` → 80).

use std::fmt;

use serde_json::{Number, Value};

use super::{dotted, Doc, Error, Marks};

/// Substitutes the variables of `template`. Unset `$VAR` / `${VAR}` become "" and add a warning
/// to `warnings`. The error is one line: `required variable X is missing a value: msg` or
/// `Invalid template: "<template>"`.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let mut cx = Ctx {
        lookup,
        warnings,
        depth: 0,
    };
    subst(template, &mut cx).map_err(|e| e.to_string())
}

/// Interpolates every string value of `doc` (keys are left alone; `x-` extensions included),
/// then casts the values compose-go casts. Errors carry the position of the value.
pub fn interpolate(
    doc: &mut Doc,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let mut walk = Walk {
        cx: Ctx {
            lookup,
            warnings,
            depth: 0,
        },
        marks: &doc.marks,
        pointer: String::new(),
        path: Vec::new(),
    };
    walk.value(&mut doc.value)
}

enum SubstError {
    /// A `$` that starts no valid form, and the template it was found in.
    Invalid(String),
    Required {
        name: String,
        reason: String,
    },
    TooDeep,
}

impl fmt::Display for SubstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubstError::Invalid(t) => write!(f, "Invalid template: {t:?}"),
            SubstError::Required { name, reason } if reason.is_empty() => {
                write!(f, "required variable {name} is missing a value")
            }
            SubstError::Required { name, reason } => {
                write!(f, "required variable {name} is missing a value: {reason}")
            }
            SubstError::TooDeep => write!(
                f,
                "defaults nested more than {MAX_NESTING} levels deep in one another"
            ),
        }
    }
}

struct Ctx<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: &'a mut Vec<String>,
    /// Templates being substituted inside one another.
    depth: usize,
}

/// The six operators of `${NAME<op>word}`.
#[derive(Clone, Copy)]
enum Op {
    /// `:-` default when unset or empty.
    DefaultEmpty,
    /// `-` default when unset.
    Default,
    /// `:+` word when set and not empty.
    AltNonEmpty,
    /// `+` word when set.
    Alt,
    /// `:?` error when unset or empty.
    RequiredNonEmpty,
    /// `?` error when unset.
    Required,
}

/// What a `$` at some position starts.
enum Found {
    /// Not a substitution: the `$` is kept.
    Nothing,
    /// `$$`.
    Escaped,
    /// `$NAME` or `${NAME}`: the name's range, the end of the form.
    Plain(usize, usize, usize),
    /// `${NAME<op>...}`: the name's range, the operator, where its word starts, the end of the
    /// form (after the last `}` of the line, as compose-go's greedy pattern reads it).
    Braced(usize, usize, Op, usize, usize),
    /// `${` not followed by a valid form.
    Invalid,
}

fn name_end(b: &[u8], start: usize) -> Option<usize> {
    let first = *b.get(start)?;
    if !(first == b'_' || first.is_ascii_alphabetic()) {
        return None;
    }
    let len = b[start + 1..]
        .iter()
        .take_while(|c| **c == b'_' || c.is_ascii_alphanumeric())
        .count();
    Some(start + 1 + len)
}

/// The line holding some position: where it ends, and its last `}` from that position on.
struct Line {
    start: usize,
    end: usize,
    last_close: Option<usize>,
}

impl Line {
    /// The last `}` of the line from position `d` on (the facts are kept while `d` stays on the
    /// same line, so that many forms on one long line cost linear time).
    fn last_close(cached: &mut Option<Line>, b: &[u8], d: usize) -> Option<usize> {
        match cached {
            Some(l) if l.start <= d && d <= l.end => l.last_close,
            _ => {
                let end = b[d..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(b.len(), |i| d + i);
                let last_close = b[d..end].iter().rposition(|c| *c == b'}').map(|i| d + i);
                *cached = Some(Line {
                    start: d,
                    end,
                    last_close,
                });
                last_close
            }
        }
    }
}

/// Reads the form starting with the `$` at `d`; `last_close` is the last `}` on its line.
fn find(b: &[u8], d: usize, last_close: Option<usize>) -> Found {
    match b.get(d + 1) {
        Some(b'$') => Found::Escaped,
        Some(b'{') => {
            let start = d + 2;
            let Some(end) = name_end(b, start) else {
                return Found::Invalid;
            };
            let (colon, at) = if b.get(end) == Some(&b':') {
                (true, end + 1)
            } else {
                (false, end)
            };
            let op = match (colon, b.get(at)) {
                (true, Some(b'-')) => Some(Op::DefaultEmpty),
                (false, Some(b'-')) => Some(Op::Default),
                (true, Some(b'+')) => Some(Op::AltNonEmpty),
                (false, Some(b'+')) => Some(Op::Alt),
                (true, Some(b'?')) => Some(Op::RequiredNonEmpty),
                (false, Some(b'?')) => Some(Op::Required),
                _ => None,
            };
            if let Some(op) = op {
                let word = at + 1;
                // compose-go's pattern reads `.*}` greedily: up to the line's last `}`.
                if let Some(close) = last_close.filter(|c| *c >= word) {
                    return Found::Braced(start, end, op, word, close + 1);
                }
            }
            if b.get(end) == Some(&b'}') {
                Found::Plain(start, end, end + 1)
            } else {
                Found::Invalid
            }
        }
        _ => match name_end(b, d + 1) {
            Some(end) => Found::Plain(d + 1, end, end),
            None => Found::Nothing,
        },
    }
}

/// compose-go's `getFirstBraceClosingIndex`: the `}` closing the first `{`, counting braces and
/// skipping the character right after each `{`.
fn first_closing(b: &[u8]) -> Option<usize> {
    let mut open = 0i64;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if b[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// How deep defaults and messages may nest (`${A:-${B:-...}}`).
const MAX_NESTING: usize = 64;

/// Substitutes `t` (a whole value, or a default or message inside one).
fn subst(t: &str, cx: &mut Ctx) -> Result<String, SubstError> {
    if cx.depth >= MAX_NESTING {
        return Err(SubstError::TooDeep);
    }
    cx.depth += 1;
    let r = subst_in(t, cx);
    cx.depth -= 1;
    r
}

fn subst_in(t: &str, cx: &mut Ctx) -> Result<String, SubstError> {
    let b = t.as_bytes();
    let mut out = String::with_capacity(t.len());
    let mut copied = 0;
    let mut scan = 0;
    // compose-go cuts a greedy `${NAME<op>...}` match at the brace closing its first `{` and
    // substitutes the rest of the match as a template of its own. Every such rest ends where
    // the match did, so it is read here in place; an invalid form in it names that rest.
    let mut rest: Option<(usize, usize)> = None;
    let mut line = None;
    while let Some(rel) = t[scan..].find('$') {
        let d = scan + rel;
        if rest.is_some_and(|(_, end)| d >= end) {
            rest = None;
        }
        let last_close = Line::last_close(&mut line, b, d);
        let (text, end) = match find(b, d, last_close) {
            Found::Nothing => {
                scan = d + 1;
                continue;
            }
            Found::Escaped => ("$".to_string(), d + 2),
            Found::Invalid => {
                let template = rest.map_or(t, |(s, e)| &t[s..e]);
                return Err(SubstError::Invalid(template.to_string()));
            }
            Found::Plain(s, e, end) => (plain(&t[s..e], cx), end),
            Found::Braced(s, e, op, word, end) => match first_closing(&b[d..end]) {
                Some(c) => {
                    let value = operator(&t[s..e], op, &t[word..d + c], cx)?;
                    if d + c + 1 < end {
                        rest = Some((d + c + 1, end));
                    }
                    (value, d + c + 1)
                }
                None => (operator(&t[s..e], op, &t[word..end - 1], cx)?, end),
            },
        };
        out.push_str(&t[copied..d]);
        out.push_str(&text);
        copied = end;
        scan = end;
    }
    out.push_str(&t[copied..]);
    Ok(out)
}

fn plain(name: &str, cx: &mut Ctx) -> String {
    (cx.lookup)(name).unwrap_or_else(|| {
        cx.warnings.push(format!(
            "The \"{name}\" variable is not set. Defaulting to a blank string."
        ));
        String::new()
    })
}

/// `${name<op>word}`; `word` is substituted only when it is used.
fn operator(name: &str, op: Op, word: &str, cx: &mut Ctx) -> Result<String, SubstError> {
    let value = (cx.lookup)(name);
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    match op {
        Op::DefaultEmpty if non_empty => Ok(value.unwrap_or_default()),
        Op::DefaultEmpty => subst(word, cx),
        Op::Default => match value {
            Some(v) => Ok(v),
            None => subst(word, cx),
        },
        Op::AltNonEmpty if non_empty => subst(word, cx),
        Op::AltNonEmpty => Ok(value.unwrap_or_default()),
        Op::Alt if value.is_some() => subst(word, cx),
        Op::Alt => Ok(String::new()),
        Op::RequiredNonEmpty if non_empty => Ok(value.unwrap_or_default()),
        Op::Required if value.is_some() => Ok(value.unwrap_or_default()),
        Op::RequiredNonEmpty | Op::Required => Err(SubstError::Required {
            name: name.to_string(),
            reason: subst(word, cx)?,
        }),
    }
}

/// The types compose-go casts interpolated strings to (loader/interpolate.go).
#[derive(Clone, Copy)]
enum Cast {
    Int,
    Float,
    /// A float that must fit in 32 bits (`cpus`).
    Float32,
    Bool,
}

/// Paths whose string values are cast: `*` is any key or item, `[]` a sequence item.
const CASTS: &[(&[&str], Cast)] = &[
    (&["services", "*", "cpu_count"], Cast::Int),
    (&["services", "*", "cpu_percent"], Cast::Float),
    (&["services", "*", "cpu_period"], Cast::Int),
    (&["services", "*", "cpu_quota"], Cast::Int),
    (&["services", "*", "cpu_rt_period"], Cast::Int),
    (&["services", "*", "cpu_rt_runtime"], Cast::Int),
    (&["services", "*", "cpus"], Cast::Float32),
    (&["services", "*", "cpu_shares"], Cast::Int),
    (&["services", "*", "init"], Cast::Bool),
    (
        &["services", "*", "depends_on", "*", "required"],
        Cast::Bool,
    ),
    (&["services", "*", "depends_on", "*", "restart"], Cast::Bool),
    (&["services", "*", "deploy", "replicas"], Cast::Int),
    (
        &["services", "*", "deploy", "update_config", "parallelism"],
        Cast::Int,
    ),
    (
        &[
            "services",
            "*",
            "deploy",
            "update_config",
            "max_failure_ratio",
        ],
        Cast::Float,
    ),
    (
        &["services", "*", "deploy", "rollback_config", "parallelism"],
        Cast::Int,
    ),
    (
        &[
            "services",
            "*",
            "deploy",
            "rollback_config",
            "max_failure_ratio",
        ],
        Cast::Float,
    ),
    (
        &["services", "*", "deploy", "restart_policy", "max_attempts"],
        Cast::Int,
    ),
    (
        &[
            "services",
            "*",
            "deploy",
            "placement",
            "max_replicas_per_node",
        ],
        Cast::Int,
    ),
    (&["services", "*", "healthcheck", "retries"], Cast::Int),
    (&["services", "*", "healthcheck", "disable"], Cast::Bool),
    (&["services", "*", "oom_kill_disable"], Cast::Bool),
    (&["services", "*", "oom_score_adj"], Cast::Int),
    (&["services", "*", "pids_limit"], Cast::Int),
    (&["services", "*", "ports", "[]", "target"], Cast::Int),
    (&["services", "*", "privileged"], Cast::Bool),
    (&["services", "*", "read_only"], Cast::Bool),
    (&["services", "*", "scale"], Cast::Int),
    (&["services", "*", "stdin_open"], Cast::Bool),
    (&["services", "*", "tty"], Cast::Bool),
    (&["services", "*", "ulimits", "*"], Cast::Int),
    (&["services", "*", "ulimits", "*", "hard"], Cast::Int),
    (&["services", "*", "ulimits", "*", "soft"], Cast::Int),
    (&["services", "*", "volumes", "[]", "read_only"], Cast::Bool),
    (
        &["services", "*", "volumes", "[]", "volume", "nocopy"],
        Cast::Bool,
    ),
    (&["networks", "*", "external"], Cast::Bool),
    (&["networks", "*", "internal"], Cast::Bool),
    (&["networks", "*", "attachable"], Cast::Bool),
    (&["networks", "*", "enable_ipv4"], Cast::Bool),
    (&["networks", "*", "enable_ipv6"], Cast::Bool),
    (&["volumes", "*", "external"], Cast::Bool),
    (&["secrets", "*", "external"], Cast::Bool),
    (&["configs", "*", "external"], Cast::Bool),
];

fn cast_for(path: &[String]) -> Option<Cast> {
    CASTS.iter().find_map(|(pattern, cast)| {
        (pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, s)| *p == "*" || p == s))
            .then_some(*cast)
    })
}

fn cast(value: &str, to: Cast, warnings: &mut Vec<String>) -> Result<Value, String> {
    match to {
        Cast::Int => value
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("invalid integer: {value}")),
        Cast::Float | Cast::Float32 => {
            let limit = match to {
                Cast::Float32 => f64::from(f32::MAX),
                _ => f64::MAX,
            };
            value
                .parse::<f64>()
                .ok()
                .filter(|f| f.abs() <= limit)
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("invalid number: {value}"))
        }
        Cast::Bool => match value.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            word @ ("y" | "yes" | "on" | "n" | "no" | "off") => {
                let yes = matches!(word, "y" | "yes" | "on");
                warnings.push(format!(
                    "{value:?} for boolean is not supported by YAML 1.2, please use `{yes}`"
                ));
                Ok(Value::Bool(yes))
            }
            _ => Err(format!("invalid boolean: {value}")),
        },
    }
}

/// The walk over a tree: its JSON pointer and its compose-go path (keys, `[]` for items).
struct Walk<'a, 'b> {
    cx: Ctx<'a>,
    marks: &'b Marks,
    pointer: String,
    path: Vec<String>,
}

impl Walk<'_, '_> {
    fn value(&mut self, v: &mut Value) -> Result<(), Error> {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    self.enter(&super::escape(k), k.clone(), child)?;
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    self.enter(&i.to_string(), "[]".to_string(), child)?;
                }
                Ok(())
            }
            Value::String(s) => {
                let at = |w: &Self, msg: String| Error::at(w.marks.nearest(&w.pointer), msg);
                let text = subst(s, &mut self.cx).map_err(|e| match e {
                    SubstError::Invalid(t) => at(
                        self,
                        format!(
                            "invalid interpolation format for {}.\nYou may need to escape any $ \
                             with another $.\n{}",
                            dotted(&self.pointer),
                            t
                        ),
                    ),
                    e => at(
                        self,
                        format!("error while interpolating {}: {e}", dotted(&self.pointer)),
                    ),
                })?;
                *v = match cast_for(&self.path) {
                    Some(to) => cast(&text, to, self.cx.warnings).map_err(|e| {
                        at(
                            self,
                            format!(
                                "error while interpolating {}: failed to cast to expected type: \
                                 {e}",
                                dotted(&self.pointer)
                            ),
                        )
                    })?,
                    None => Value::String(text),
                };
                Ok(())
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    fn enter(&mut self, segment: &str, part: String, child: &mut Value) -> Result<(), Error> {
        let len = self.pointer.len();
        self.pointer.push('/');
        self.pointer.push_str(segment);
        self.path.push(part);
        let r = self.value(child);
        self.path.pop();
        self.pointer.truncate(len);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn env(name: &str) -> Option<String> {
        match name {
            "FOO" => Some("first".into()),
            "BAR" => Some(String::new()),
            "JSON" => Some(r#"{"json":2}"#.into()),
            "lower" => Some("low".into()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    fn run(t: &str) -> (Result<String, String>, Vec<String>) {
        let mut warnings = Vec::new();
        let r = substitute(t, &env, &mut warnings);
        (r, warnings)
    }

    #[test]
    fn every_form_substitutes_as_compose_go() {
        let cases: &[(&str, &str)] = &[
            ("foo", "foo"),
            ("$$", "$"),
            ("$${foo}", "${foo}"),
            ("$$FOO", "$FOO"),
            ("a $ string", "a $ string"),
            ("^REGEX$", "^REGEX$"),
            ("$}", "$}"),
            ("$", "$"),
            ("$1", "$1"),
            ("$FOO-bar", "first-bar"),
            ("This $FOO var", "This first var"),
            ("This ${FOO} var", "This first var"),
            ("${lower}", "low"),
            ("$lower.x", "low.x"),
            ("This ${BAR} var", "This  var"),
            ("ok ${missing:-def}", "ok def"),
            ("ok ${missing-def}", "ok def"),
            ("ok ${BAR:-def}", "ok def"),
            ("ok ${FOO:-def}", "ok first"),
            ("ok ${BAR-def}", "ok "),
            ("ok ${UNSET:+presence}", "ok "),
            ("ok ${UNSET+presence}", "ok "),
            ("ok ${FOO:+presence}", "ok presence"),
            ("ok ${FOO+presence}", "ok presence"),
            ("ok ${BAR+presence}", "ok presence"),
            ("ok ${BAR:+presence}", "ok "),
            ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
            ("ok ${FOO:?err}", "ok first"),
            ("ok ${FOO?err}", "ok first"),
            ("ok ${BAR?err}", "ok "),
            ("ok ${UNSET_VAR-$FOO}", "ok first"),
            ("ok ${UNSET_VAR-${FOO}}", "ok first"),
            ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
            ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
            ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
            ("${A:-${B:-c}}", "c"),
            ("${A:-${B:-${FOO}}}!", "first!"),
            ("${A:+${A},}B", "B"),
            ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
            ("${FOO?bar-baz}", "first"),
            ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
            (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
            (r#"ok ${missing:-{"json":1}}"#, r#"ok {"json":1}"#),
            (r#"ok ${JSON-{"json":1}}"#, r#"ok {"json":2}"#),
            ("ok ${SUBDOMAIN:-redis}.${FOO:?}", "ok redis.first"),
            ("${A:-x} and ${B-y}", "x and y"),
            ("${A-x}${FOO}", "xfirst"),
            ("${A:-a}}", "a}"),
            ("${A:-{}}", "{}"),
            ("h\u{e9}${FOO}\u{e9}", "h\u{e9}first\u{e9}"),
        ];
        for (t, want) in cases {
            let (r, _) = run(t);
            assert_eq!(r.as_deref(), Ok(*want), "{t:?}");
        }
    }

    #[test]
    fn long_and_deep_templates() {
        // Many cut matches on one line are read in place, not by recursion.
        let t = "${A:-x}".repeat(50_000);
        assert_eq!(run(&t).0.map(|v| v.len()), Ok(50_000));
        let t = format!("{}{}", "${A:-".repeat(63), "}".repeat(63));
        assert_eq!(run(&t).0.as_deref(), Ok(""));
        let t = format!("{}{}", "${A:-".repeat(64), "}".repeat(64));
        assert_eq!(
            run(&t).0.err().as_deref(),
            Some("defaults nested more than 64 levels deep in one another")
        );
    }

    #[test]
    fn unset_variables_warn_only_when_read() {
        let cases: &[(&str, &[&str])] = &[
            ("${A}", &["A"]),
            ("$A $B", &["A", "B"]),
            ("${A:-x}", &[]),
            ("${FOO:+${A}}", &["A"]),
            ("${A:+${B}}", &[]),
            ("${A:-${B}}", &["B"]),
            ("${FOO?${B}}", &[]),
        ];
        for (t, names) in cases {
            let (_, warnings) = run(t);
            let want: Vec<String> = names
                .iter()
                .map(|n| format!("The \"{n}\" variable is not set. Defaulting to a blank string."))
                .collect();
            assert_eq!(warnings, want, "{t:?}");
        }
    }

    #[test]
    fn errors_read_as_compose_go() {
        let cases: &[(&str, &str)] = &[
            (
                "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
                "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
            ),
            (
                "not ok ${BAR:?Mandatory Variable Empty}",
                "required variable BAR is missing a value: Mandatory Variable Empty",
            ),
            (
                "${UNSET_VAR:?}",
                "required variable UNSET_VAR is missing a value",
            ),
            (
                "${UNSET_VAR?}",
                "required variable UNSET_VAR is missing a value",
            ),
            (
                "${UNSET_VAR?bar-baz}",
                "required variable UNSET_VAR is missing a value: bar-baz",
            ),
            (
                "${UNSET:?Mandatory ${FOO}}",
                "required variable UNSET is missing a value: Mandatory first",
            ),
            ("${", "Invalid template: \"${\""),
            ("${}", "Invalid template: \"${}\""),
            ("${ }", "Invalid template: \"${ }\""),
            ("${ foo}", "Invalid template: \"${ foo}\""),
            ("${foo }", "Invalid template: \"${foo }\""),
            ("${foo!}", "Invalid template: \"${foo!}\""),
            ("${foo:x}", "Invalid template: \"${foo:x}\""),
            ("${A-x", "Invalid template: \"${A-x\""),
            ("a ${A:-${}}", "Invalid template: \"${}\""),
            ("${A:-x} ${", "Invalid template: \"${A:-x} ${\""),
            ("${A:-x} ${ }", "Invalid template: \" ${ }\""),
            ("${A:-x\n}", "Invalid template: \"${A:-x\\n}\""),
        ];
        for (t, want) in cases {
            let (r, _) = run(t);
            assert_eq!(r.err().as_deref(), Some(*want), "{t:?}");
        }
    }

    fn doc(value: Value) -> Doc {
        let mut marks = Marks::default();
        let file = Arc::new(PathBuf::from("c.yaml"));
        marks.insert(
            "/services/web".into(),
            super::super::Pos {
                file,
                line: 2,
                col: 3,
            },
        );
        Doc {
            value,
            marks,
            tags: Vec::new(),
        }
    }

    fn interp(value: Value) -> (Result<Value, String>, Vec<String>) {
        let mut d = doc(value);
        let mut warnings = Vec::new();
        let r = interpolate(&mut d, &env, &mut warnings);
        (r.map(|()| d.value).map_err(|e| e.to_string()), warnings)
    }

    #[test]
    fn values_are_interpolated_keys_are_not() {
        let (r, _) = interp(json!({
            "services": {"web": {"image": "${FOO}:${TAG:-latest}", "command": ["$$HOME", "$FOO"],
                                 "labels": {"$FOO": "${BAR:-x}"}}},
            "x-ext": {"a": ["${FOO}"]},
            "n": 1, "b": true, "z": null
        }));
        assert_eq!(
            r,
            Ok(json!({
                "services": {"web": {"image": "first:latest", "command": ["$HOME", "first"],
                                     "labels": {"$FOO": "x"}}},
                "x-ext": {"a": ["first"]},
                "n": 1, "b": true, "z": null
            }))
        );
    }

    #[test]
    fn casts_apply_where_compose_go_casts() {
        let (r, warnings) = interp(json!({
            "services": {"web": {
                "ports": [{"target": "${PORT}", "published": "${PORT}"}, "80:80"],
                "privileged": "true", "read_only": "Off", "tty": false,
                "cpus": "0.5", "cpu_percent": "12.5", "scale": "2", "pids_limit": "-1",
                "ulimits": {"nofile": {"soft": "10", "hard": "20"}, "nproc": "65535"},
                "depends_on": {"db": {"required": "false", "restart": "yes"}},
                "volumes": [{"read_only": "true", "volume": {"nocopy": "false"}}],
                "deploy": {"replicas": "3", "update_config": {"max_failure_ratio": "0.1"}},
                "healthcheck": {"retries": "5", "disable": "false"},
                "environment": {"A": "1"}
            }},
            "networks": {"n": {"external": "true", "internal": "false"}},
            "volumes": {"v": {"external": "false"}},
            "secrets": {"s": {"external": "true"}},
            "configs": {"c": {"external": "false"}}
        }));
        assert_eq!(
            r,
            Ok(json!({
                "services": {"web": {
                    "ports": [{"target": 8080, "published": "8080"}, "80:80"],
                    "privileged": true, "read_only": false, "tty": false,
                    "cpus": 0.5, "cpu_percent": 12.5, "scale": 2, "pids_limit": -1,
                    "ulimits": {"nofile": {"soft": 10, "hard": 20}, "nproc": 65535},
                    "depends_on": {"db": {"required": false, "restart": true}},
                    "volumes": [{"read_only": true, "volume": {"nocopy": false}}],
                    "deploy": {"replicas": 3, "update_config": {"max_failure_ratio": 0.1}},
                    "healthcheck": {"retries": 5, "disable": false},
                    "environment": {"A": "1"}
                }},
                "networks": {"n": {"external": true, "internal": false}},
                "volumes": {"v": {"external": false}},
                "secrets": {"s": {"external": true}},
                "configs": {"c": {"external": false}}
            }))
        );
        let mut warnings = warnings;
        warnings.sort();
        assert_eq!(
            warnings,
            vec![
                "\"Off\" for boolean is not supported by YAML 1.2, please use `false`",
                "\"yes\" for boolean is not supported by YAML 1.2, please use `true`",
            ]
        );
    }

    #[test]
    fn a_parsed_file_interpolates_with_positions() {
        let text = "\
services:
  web:
    image: \"busybox:${TAG:-1.36}\"
    ports:
      - target: ${PORT}
        published: \"${PORT}\"
    command: [\"echo\", \"$$HOME\", \"${NOPE:?say why}\"]
";
        let file = Arc::new(PathBuf::from("c.yaml"));
        let mut docs = super::super::yaml::parse(file, text).unwrap_or_else(|e| panic!("{e}"));
        let mut warnings = Vec::new();
        let e = interpolate(&mut docs[0], &env, &mut warnings).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:7:33: error while interpolating services.web.command[2]: required variable \
             NOPE is missing a value: say why"
        );
        let text = text.replace("${NOPE:?say why}", "${NOPE:-}");
        let file = Arc::new(PathBuf::from("c.yaml"));
        let mut docs = super::super::yaml::parse(file, &text).unwrap_or_else(|e| panic!("{e}"));
        interpolate(&mut docs[0], &env, &mut warnings).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            docs[0].value,
            json!({"services": {"web": {
                "image": "busybox:1.36",
                "ports": [{"target": 8080, "published": "8080"}],
                "command": ["echo", "$HOME", ""]
            }}})
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn interpolation_errors_name_the_path_and_position() {
        let cases: &[(Value, &str)] = &[
            (
                json!({"services": {"web": {"image": "${TAG:?tag it}"}}}),
                "c.yaml:2:3: error while interpolating services.web.image: required variable \
                 TAG is missing a value: tag it",
            ),
            (
                json!({"services": {"web": {"command": ["ok", "${"]}}}),
                "c.yaml:2:3: invalid interpolation format for services.web.command[1].\nYou may \
                 need to escape any $ with another $.\n${",
            ),
            (
                json!({"services": {"web": {"ports": [{"target": "eighty"}]}}}),
                "c.yaml:2:3: error while interpolating services.web.ports[0].target: failed to \
                 cast to expected type: invalid integer: eighty",
            ),
            (
                json!({"services": {"web": {"privileged": "${BAR}"}}}),
                "c.yaml:2:3: error while interpolating services.web.privileged: failed to cast \
                 to expected type: invalid boolean: ",
            ),
            (
                json!({"services": {"web": {"cpus": "1e40"}}}),
                "c.yaml:2:3: error while interpolating services.web.cpus: failed to cast to \
                 expected type: invalid number: 1e40",
            ),
            (
                json!({"x-a": "${A?}"}),
                "error while interpolating x-a: required variable A is missing a value",
            ),
        ];
        for (value, want) in cases {
            let (r, _) = interp(value.clone());
            assert_eq!(r.as_ref().map_err(String::as_str), Err(*want), "{value}");
        }
    }
}
