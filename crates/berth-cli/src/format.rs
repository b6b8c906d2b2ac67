//! Output helpers: Docker-style aligned tables and Go-template `--format` rendering.

use gtmpl::{Context, Func, FuncError, Template};
use gtmpl_value::Value as GValue;
use std::collections::HashMap;

/// Convert JSON into the template engine's values.
fn to_gvalue(v: &serde_json::Value) -> GValue {
    match v {
        serde_json::Value::Null => GValue::Nil,
        serde_json::Value::Bool(b) => GValue::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                GValue::from(i)
            } else if let Some(u) = n.as_u64() {
                GValue::from(u)
            } else {
                GValue::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => GValue::String(s.clone()),
        serde_json::Value::Array(a) => GValue::Array(a.iter().map(to_gvalue).collect()),
        serde_json::Value::Object(o) => GValue::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_gvalue(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn from_gvalue(v: &GValue) -> serde_json::Value {
    match v {
        GValue::Nil | GValue::NoValue => serde_json::Value::Null,
        GValue::Bool(b) => serde_json::Value::Bool(*b),
        GValue::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::json!(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::json!(u)
            } else {
                serde_json::json!(n.as_f64())
            }
        }
        GValue::String(s) => serde_json::Value::String(s.clone()),
        GValue::Array(a) => serde_json::Value::Array(a.iter().map(from_gvalue).collect()),
        GValue::Map(m) | GValue::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), from_gvalue(v))).collect())
        }
        GValue::Function(_) => serde_json::Value::Null,
    }
}

fn f_json(args: &[GValue]) -> Result<GValue, FuncError> {
    let v = args
        .first()
        .map(from_gvalue)
        .unwrap_or(serde_json::Value::Null);
    Ok(GValue::String(
        serde_json::to_string(&v).unwrap_or_default(),
    ))
}

/// Go's len: of a map, slice or string (the engine's own does not take maps).
fn f_len(args: &[GValue]) -> Result<GValue, FuncError> {
    let n = match args.first() {
        Some(GValue::Map(m) | GValue::Object(m)) => m.len(),
        Some(GValue::Array(a)) => a.len(),
        Some(GValue::String(s)) => s.len(),
        Some(GValue::Nil | GValue::NoValue) | None => 0,
        Some(other) => {
            return Err(FuncError::Generic(format!("len of {other}")));
        }
    };
    Ok(GValue::from(n as i64))
}

fn f_upper(args: &[GValue]) -> Result<GValue, FuncError> {
    Ok(GValue::String(
        args.first()
            .map(|a| a.to_string().to_uppercase())
            .unwrap_or_default(),
    ))
}

fn f_lower(args: &[GValue]) -> Result<GValue, FuncError> {
    Ok(GValue::String(
        args.first()
            .map(|a| a.to_string().to_lowercase())
            .unwrap_or_default(),
    ))
}

fn f_join(args: &[GValue]) -> Result<GValue, FuncError> {
    let sep = args.get(1).map(|s| s.to_string()).unwrap_or_default();
    let items: Vec<String> = match args.first() {
        Some(GValue::Array(a)) => a.iter().map(|x| x.to_string()).collect(),
        _ => Vec::new(),
    };
    Ok(GValue::String(items.join(&sep)))
}

/// A parsed `--format` value.
pub enum Format {
    /// Docker's default table.
    Table,
    /// One JSON object per line.
    Json,
    /// `table ...`: a template with a header row.
    TableTemplate(String),
    Template(String),
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s {
            None | Some("") | Some("table") => Format::Table,
            Some("json") => Format::Json,
            Some(t) => match t.strip_prefix("table ") {
                Some(rest) => Format::TableTemplate(unescape(rest)),
                None => Format::Template(unescape(t)),
            },
        }
    }
}

/// Docker lets users write `\t` and `\n` in formats.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Render a template against `data`.
pub fn render(template: &str, data: &serde_json::Value) -> Result<String, String> {
    let mut t = Template::default();
    let funcs: &[(&str, Func)] = &[
        ("json", f_json as Func),
        ("len", f_len as Func),
        ("upper", f_upper as Func),
        ("lower", f_lower as Func),
        ("join", f_join as Func),
    ];
    t.add_funcs(funcs);
    t.parse(template)
        .map_err(|e| format!("template parsing error: {e}"))?;
    t.render(&Context::from(to_gvalue(data)))
        .map_err(|e| format!("template: {e}"))
}

/// Print rows as Docker's tabwriter does: columns padded to the widest cell plus three
/// spaces, and at least ten wide.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_with(header, rows, 10)
}

/// [`table`] with columns at least `min_width` wide, padding included (the minimum width
/// of the docker CLI's tab writer, 10 for `stats`).
pub fn table_with(header: &[&str], rows: &[Vec<String>], min_width: usize) -> String {
    lay_out(header, rows, min_width, true)
}

/// [`table`] exactly as Go's tab writer lays it out: every cell but a row's last is padded,
/// empty ones too, so a row whose last cells are empty ends in spaces (the swarm commands'
/// tables, which scripts compare with docker's).
pub fn table_go(header: &[&str], rows: &[Vec<String>]) -> String {
    lay_out(header, rows, 10, false)
}

fn lay_out(header: &[&str], rows: &[Vec<String>], min_width: usize, trim: bool) -> String {
    let cols = header.len();
    let mut width = vec![0usize; cols];
    for (i, h) in header.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for w in width.iter_mut() {
        *w = (*w + 3).max(min_width) - 3;
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(width[i] + 3 - c.chars().count()));
            }
        }
        out.push_str(if trim { l.trim_end() } else { &l });
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Table whose rows come from a `table` template; `headers` names known fields.
pub fn template_table(
    template: &str,
    items: &[serde_json::Value],
    headers: &[(&str, &str)],
) -> Result<String, String> {
    template_table_with(template, items, headers, 10)
}

/// [`template_table`] with [`table_with`]'s minimum column width.
pub fn template_table_with(
    template: &str,
    items: &[serde_json::Value],
    headers: &[(&str, &str)],
    min_width: usize,
) -> Result<String, String> {
    let mut header = template.to_string();
    for (field, title) in headers {
        header = header.replace(&format!("{{{{.{field}}}}}"), title);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for it in items {
        rows.push(
            render(template, it)?
                .split('\t')
                .map(String::from)
                .collect(),
        );
    }
    let head: Vec<&str> = header.split('\t').collect();
    Ok(table_with(&head, &rows, min_width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v =
            serde_json::json!({"Names": "web", "State": {"Status": "running"}, "L": ["a", "b"]});
        assert_eq!(render("{{.Names}}", &v).unwrap(), "web");
        assert_eq!(render("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(
            render("{{json .State}}", &v).unwrap(),
            r#"{"Status":"running"}"#
        );
        assert_eq!(render("{{join .L \",\"}}", &v).unwrap(), "a,b");
        assert_eq!(render("{{upper .Names}}", &v).unwrap(), "WEB");
        assert_eq!(render("{{len .State}} {{len .L}}", &v).unwrap(), "1 2");
        assert!(render("{{.Names", &v).is_err());
    }

    #[test]
    fn tables() {
        let t = table(&["A", "BB"], &[vec!["xxxx".into(), "y".into()]]);
        assert_eq!(t, "A         BB\nxxxx      y\n");
        let t = table(&["LONGHEADER", "B"], &[vec!["x".into(), "y".into()]]);
        assert_eq!(t, "LONGHEADER   B\nx            y\n");
        let t = table_with(&["A", "BB"], &[vec!["xxxx".into(), "y".into()]], 0);
        assert_eq!(t, "A      BB\nxxxx   y\n");
        let t = table_go(
            &["A", "B", "C"],
            &[vec!["x".into(), String::new(), String::new()]],
        );
        assert_eq!(t, "A         B         C\nx                   \n");
    }
}
