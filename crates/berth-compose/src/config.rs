//! `config`: the fully resolved project (interpolated, merged, canonical, normalized) as YAML
//! or JSON, or one of its lists (`--services`, `--volumes`, `--profiles`, `--images`).

use serde_json::Value;

use crate::project::Project;

/// A string as a YAML scalar: plain when YAML reads it back as the same string, else in
/// double quotes with JSON's escapes (a subset of YAML's).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c) || c.is_ascii_digit())
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.chars().all(|c| !c.is_control())
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | ".inf" | ".nan"
        );
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, val) in o {
                out.push_str(&format!("{pad}{}:", scalar(k)));
                block(val, indent + 2, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for val in a {
                out.push_str(&format!("{pad}-"));
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        // The first key on the dash's line, the rest below it.
                        let mut first = true;
                        for (k, x) in o {
                            if first {
                                out.push_str(&format!(" {}:", scalar(k)));
                                first = false;
                            } else {
                                out.push_str(&format!("{pad}  {}:", scalar(k)));
                            }
                            block(x, indent + 4, out);
                        }
                    }
                    other => block(other, indent + 2, out),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", inline(other))),
    }
}

/// A value after `key:` or `-`: inline when scalar or empty, else on the following lines.
fn block(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            out.push('\n');
            emit(v, indent, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit(v, indent, out);
        }
        other => out.push_str(&format!(" {}\n", inline(other))),
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// The project's top-level keys in Compose's order (then any other).
fn top_level(tree: &Value) -> Vec<(String, Value)> {
    let order = [
        "name", "services", "networks", "volumes", "secrets", "configs",
    ];
    let mut out = Vec::new();
    for k in order {
        if let Some(v) = tree.get(k).filter(|v| !v.is_null()) {
            out.push((k.to_string(), v.clone()));
        }
    }
    if let Some(o) = tree.as_object() {
        for (k, v) in o {
            if !order.contains(&k.as_str()) && !v.is_null() {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

/// The model as `config --format yaml|json` prints it.
pub fn render(p: &Project, format: &str) -> Result<String, String> {
    let top = top_level(&p.tree);
    match format {
        "json" => {
            let v: serde_json::Map<String, Value> = top.into_iter().collect();
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
        }
        "yaml" | "" => {
            let mut s = String::new();
            for (k, v) in top {
                let one: serde_json::Map<String, Value> = [(k, v)].into_iter().collect();
                emit(&Value::Object(one), 0, &mut s);
            }
            Ok(s)
        }
        other => Err(format!("unsupported format {other:?} (yaml or json)")),
    }
}

/// `--services`, `--volumes`, `--profiles`, `--images`: one name per line.
pub fn list(p: &Project, what: &str) -> Vec<String> {
    match what {
        "services" => p.order(),
        "volumes" => p.model.volumes.keys().cloned().collect(),
        "profiles" => {
            let mut v: Vec<String> = p
                .model
                .services
                .values()
                .flat_map(|s| s.profiles.iter().cloned())
                .collect();
            v.sort();
            v.dedup();
            v
        }
        "images" => p
            .order()
            .iter()
            .filter_map(|s| p.model.services.get(s).map(|svc| p.image_name(s, svc)))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_output_keeps_compose_order_and_round_trips() {
        let mut p = Project::named("shop".into());
        p.tree = serde_json::json!({"volumes": {"db": {"name": "shop_db"}}, "name": "shop",
            "services": {"web": {"image": "busybox", "command": ["httpd", "-f"], "tty": true,
                                  "environment": {"A": "1", "B": null, "C": "yes", "D": "a: b",
                                                  "E": "08", "F": "", "G": "-x", "H": "x\ny"},
                                  "ports": [{"target": 80, "published": "8080"}, {"target": 81}],
                                  "labels": {}, "cap_add": []}}});
        let y = render(&p, "yaml").expect("renders");
        assert!(y.starts_with("name: shop\nservices:\n"), "{y}");
        assert!(y.find("services:") < y.find("volumes:"), "{y}");
        let docs =
            crate::load::yaml::parse(std::sync::Arc::new("c.yaml".into()), &y).expect("parses");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].value, p.tree);
        let j = render(&p, "json").expect("renders");
        let v: Value = serde_json::from_str(&j).expect("json");
        assert_eq!(v["services"]["web"]["environment"]["B"], Value::Null);
    }
}
