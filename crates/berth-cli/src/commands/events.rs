//! `berth events`: the daemon's event stream, printed as the docker CLI prints it (local
//! timestamp, type, action, actor and its attributes), as JSON, or through a Go template.

use crate::client::{enc, Client};
use crate::format;
use berth_api::event::Message;
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use std::io::Write;

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template: 'json' or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

enum Output {
    Pretty,
    Json,
    Template(String),
}

/// The event as Go templates see `events.Message`: by field name, not JSON key.
fn template_data(m: &Message) -> Value {
    json!({
        "Status": m.status,
        "ID": m.id,
        "From": m.from,
        "Type": m.kind,
        "Action": m.action,
        "Actor": {"ID": m.actor.id, "Attributes": m.actor.attributes},
        "Scope": m.scope,
        "Time": m.time,
        "TimeNano": m.time_nano,
    })
}

/// `2026-12-02T21:40:01.123456789Z container start <id> (image=busybox, name=foo)`.
fn pretty(m: &Message) -> String {
    let mut s = String::new();
    if m.time_nano != 0 {
        s = format!("{} ", crate::timearg::local_nanos(m.time_nano));
    } else if m.time != 0 {
        s = format!("{} ", crate::timearg::local_nanos(m.time * 1_000_000_000));
    }
    s.push_str(&format!("{} {} {}", m.kind, m.action, m.actor.id));
    if !m.actor.attributes.is_empty() {
        let attrs: Vec<String> = m
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(" ({})", attrs.join(", ")));
    }
    s
}

fn render(out: &Output, m: &Message) -> Result<String, String> {
    match out {
        Output::Pretty => Ok(pretty(m)),
        Output::Json => serde_json::to_string(m).map_err(|e| e.to_string()),
        Output::Template(t) => format::render(t, &template_data(m)),
    }
}

pub async fn events(c: &Client, a: EventsArgs) -> i32 {
    let out = match a.format.as_deref() {
        None | Some("") => Output::Pretty,
        Some("json") | Some("{{json .}}") => Output::Json,
        Some(t) => {
            // Checked on an empty event first, as docker does.
            if let Err(e) = format::render(t, &template_data(&Message::default())) {
                eprintln!("Error parsing format: {e}");
                return 64;
            }
            Output::Template(t.to_string())
        }
    };
    let mut q = Vec::new();
    let now = std::time::SystemTime::now();
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            match crate::timearg::timestamp(v, now) {
                Ok(t) => q.push(format!("{k}={t}")),
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            }
        }
    }
    if !a.filter.is_empty() {
        match super::container::filters_json(&a.filter) {
            Ok(f) => q.push(format!("filters={}", enc(&f))),
            Err(e) => {
                eprintln!("invalid argument for \"-f, --filter\" flag: {e}");
                return 125;
            }
        }
    }
    let resp = match c
        .send(
            Method::GET,
            &format!("/events?{}", q.join("&")),
            crate::client::empty(),
            "application/json",
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return super::report(&e, 1),
    };
    let mut failed = None;
    let res = crate::client::for_each_line(resp, |line| {
        if line.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        let text = serde_json::from_slice::<Message>(line)
            .map_err(|e| format!("bad event from daemon: {e}"))
            .and_then(|m| render(&out, &m));
        match text {
            Ok(t) => {
                let mut o = std::io::stdout().lock();
                // A closed output (`| head`) ends the command quietly.
                writeln!(o, "{t}").and_then(|()| o.flush()).is_ok()
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .await;
    if let Err(e) = res {
        return super::report(&e, 1);
    }
    match failed {
        Some(e) => {
            eprintln!("{e}");
            1
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn outputs() {
        let m = Message::new(
            "container",
            "start".into(),
            "abc".into(),
            BTreeMap::from([
                ("name".to_string(), "foo".to_string()),
                ("image".to_string(), "busybox".to_string()),
            ]),
            1_700_000_000_000_000_001,
        );
        let p = pretty(&m);
        assert!(
            p.ends_with(" container start abc (image=busybox, name=foo)"),
            "{p}"
        );
        let t = Output::Template("{{.Type}} {{.Action}} {{.Actor.Attributes.name}}".into());
        assert_eq!(render(&t, &m).unwrap(), "container start foo");
        assert!(render(&Output::Json, &m)
            .unwrap()
            .starts_with(r#"{"status":"start","id":"abc","from":"busybox","Type":"container""#));
    }
}
