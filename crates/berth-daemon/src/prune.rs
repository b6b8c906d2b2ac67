//! The filters every `prune` endpoint shares (`until`, `label`, `label!`), so containers,
//! images, networks and volumes are pruned by the same rules as Docker's. It only parses and
//! matches filters (beside `error` it imports no other module of the daemon): what is pruned, and
//! removing it, are the routes' and the services'.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parsed prune filters; an object passes when it matches all of them.
pub struct PruneFilter {
    until: Vec<SystemTime>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilter {
    /// From the `filters` query map; `allowed` are extra keys the caller handles itself.
    pub fn new(f: &HashMap<String, Vec<String>>, allowed: &[&str]) -> Result<PruneFilter> {
        let mut out = PruneFilter {
            until: Vec::new(),
            labels: Vec::new(),
            not_labels: Vec::new(),
        };
        for (k, vals) in f {
            match k.as_str() {
                "until" => {
                    for v in vals {
                        out.until.push(parse_until(v).ok_or_else(|| {
                            Error::bad_request(format!(
                                "failed to parse value {v:?} of filter \"until\": use a Unix timestamp, an RFC 3339 date or a duration like 24h"
                            ))
                        })?);
                    }
                }
                "label" => out.labels.extend(vals.iter().cloned()),
                "label!" => out.not_labels.extend(vals.iter().cloned()),
                other if allowed.contains(&other) => {}
                other => return Err(Error::bad_request(format!("invalid filter '{other}'"))),
            }
        }
        Ok(out)
    }

    /// Whether an object created at `created` (RFC 3339) with `labels` is to be pruned.
    pub fn matches(&self, created: &str, labels: &BTreeMap<String, String>) -> bool {
        if !self.until.is_empty() {
            let Some(c) = berth_api::timefmt::parse(created) else {
                return false;
            };
            if !self.until.iter().all(|u| c < *u) {
                return false;
            }
        }
        self.labels.iter().all(|l| label_matches(labels, l))
            && !self.not_labels.iter().any(|l| label_matches(labels, l))
    }
}

/// `key` or `key=value` against a label map.
pub fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// `until`: a Unix timestamp (fractions allowed), an RFC 3339 time, or a duration ago
/// (`90s`, `10m`, `24h`, `1h30m`).
fn parse_until(s: &str) -> Option<SystemTime> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d));
    }
    if let Some(t) = berth_api::timefmt::parse(s) {
        return Some(t);
    }
    parse_duration(s).and_then(|d| SystemTime::now().checked_sub(d))
}

/// Go-style durations made of `h`, `m`, `s` and `ms` parts.
fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn until_and_labels() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let old = "2020-01-01T00:00:00Z";
        let p = PruneFilter::new(&f(&[("until", "1h")]), &[]).unwrap();
        assert!(p.matches(old, &labels));
        assert!(!p.matches(&berth_api::timefmt::now(), &labels));
        let p = PruneFilter::new(&f(&[("until", "1577836799.5")]), &[]).unwrap();
        assert!(p.matches("2019-12-31T23:59:59Z", &labels));
        assert!(!p.matches(old, &labels));
        let p = PruneFilter::new(&f(&[("label", "app=web"), ("label!", "keep")]), &[]).unwrap();
        assert!(p.matches(old, &labels));
        let p = PruneFilter::new(&f(&[("label!", "app")]), &[]).unwrap();
        assert!(!p.matches(old, &labels));
        assert!(PruneFilter::new(&f(&[("until", "soon")]), &[]).is_err());
        for huge in ["1e300", "1e19", "-5", "NaN"] {
            assert!(
                PruneFilter::new(&f(&[("until", huge)]), &[]).is_err(),
                "{huge}"
            );
        }
        assert!(PruneFilter::new(&f(&[("colour", "red")]), &[]).is_err());
        assert!(PruneFilter::new(&f(&[("all", "true")]), &["all"]).is_ok());
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("h"), None);
    }
}
