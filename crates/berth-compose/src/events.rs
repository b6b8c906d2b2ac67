//! `events`: the engine's container events of the project, one line each as Docker Compose
//! v2 prints them (`<time> container <action> <id> (<attributes>)`, or JSON with `--json`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::api::{label, Engine};

/// The event's time: `timeNano` when the engine gives it, else `time` in seconds.
fn when(v: &Value) -> SystemTime {
    match v["timeNano"].as_u64() {
        Some(n) if n > 0 => UNIX_EPOCH + Duration::from_nanos(n),
        _ => UNIX_EPOCH + Duration::from_secs(v["time"].as_u64().unwrap_or(0)),
    }
}

/// `2006-01-02 15:04:05.000000` (Go's layout Compose prints events with), in UTC.
fn text_time(t: SystemTime) -> String {
    let s = berth_api::timefmt::rfc3339_nano(t);
    let s = s.trim_end_matches('Z');
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    format!("{}.{:0<6.6}", secs.replacen('T', " ", 1), frac)
}

/// One line for an engine event, or `None` for events Compose does not show (other types,
/// one-off containers, services not asked for).
pub fn line(v: &Value, services: &[String], as_json: bool) -> Option<String> {
    if v["Type"].as_str() != Some("container") {
        return None;
    }
    let attrs = v["Actor"]["Attributes"].as_object()?;
    if attrs.get(label::ONEOFF).and_then(Value::as_str) == Some("True") {
        return None;
    }
    let service = attrs
        .get(label::SERVICE)
        .and_then(Value::as_str)
        .unwrap_or("");
    if !services.is_empty() && !services.iter().any(|s| s == service) {
        return None;
    }
    let shown: Map<String, Value> = attrs
        .iter()
        .filter(|(k, _)| !k.starts_with("com.docker.compose."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let action = v["Action"].as_str().or(v["status"].as_str()).unwrap_or("");
    let id = v["Actor"]["ID"].as_str().or(v["id"].as_str()).unwrap_or("");
    let t = when(v);
    if as_json {
        let j = json!({
            "time": berth_api::timefmt::rfc3339_nano(t),
            "type": "container",
            "service": service,
            "id": id,
            "action": action,
            "attributes": shown,
        });
        return Some(j.to_string());
    }
    let attrs: Vec<String> = shown
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    Some(format!(
        "{} container {action} {id} ({})",
        text_time(t),
        attrs.join(", ")
    ))
}

/// `--since` / `--until`: Docker's timestamps or durations (`10m`).
pub struct Window {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Streams the project's events until the engine closes the stream (or `--until` passes).
pub async fn run(
    e: &Engine,
    project: &str,
    services: &[String],
    as_json: bool,
    w: &Window,
) -> Result<(), String> {
    let mut query = String::new();
    for (k, v) in [("since", &w.since), ("until", &w.until)] {
        if let Some(v) = v {
            let t = berth_cli::timearg::timestamp(v, std::time::SystemTime::now())?;
            query.push_str(&format!("&{k}={}", berth_cli::client::enc(&t)));
        }
    }
    let resp = e
        .project_events_with(project, &query)
        .await
        .map_err(|e| e.to_string())?;
    berth_cli::client::for_each_line(resp, |l| {
        if let Ok(v) = serde_json::from_slice::<Value>(l) {
            if let Some(s) = line(&v, services, as_json) {
                println!("{s}");
            }
        }
        true
    })
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn events_print_as_compose_prints_them() {
        let ev = json!({"Type": "container", "Action": "start", "time": 1700000000u64,
            "timeNano": 1_700_000_000_120_000_000u64,
            "Actor": {"ID": "abc", "Attributes": {"com.docker.compose.service": "web",
                "com.docker.compose.project": "p", "image": "busybox", "name": "p-web-1"}}});
        assert_eq!(
            super::line(&ev, &[], false).as_deref(),
            Some("2023-11-14 22:13:20.120000 container start abc (image=busybox, name=p-web-1)")
        );
        let j: serde_json::Value =
            serde_json::from_str(&super::line(&ev, &[], true).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(j["service"], "web");
        assert_eq!(j["action"], "start");
        assert_eq!(j["time"], "2023-11-14T22:13:20.12Z");
        assert_eq!(
            j["attributes"],
            json!({"image": "busybox", "name": "p-web-1"})
        );
        assert_eq!(super::line(&ev, &["db".to_string()], false), None);
        let oneoff = json!({"Type": "container", "Action": "start",
            "Actor": {"ID": "x", "Attributes": {"com.docker.compose.oneoff": "True"}}});
        assert_eq!(super::line(&oneoff, &[], false), None);
    }
}
