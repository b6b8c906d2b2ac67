//! Entry points for the fuzz targets in `fuzz/` (not an API of the daemon): the parsers of the
//! `filters` query parameter and what consumes it (prune and event filters), and the
//! `since`/`until` times of the events endpoint, fed with arbitrary input. It only calls those
//! parsers: it must not open the daemon's state, sockets or files.

use std::collections::BTreeMap;

/// Parse `raw` as a query string, its `filters` as prune and event filters, and its `since`
/// and `until` as event times, and apply the filters to a sample object and event.
pub fn query(raw: &str) {
    let q = crate::util::Query::parse(Some(raw));
    for k in ["since", "until"] {
        let _ = q.unix_time(k);
    }
    let Ok(f) = q.filters() else { return };
    let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
    if let Ok(p) = crate::prune::PruneFilter::new(&f, &["dangling"]) {
        let _ = p.matches("2024-01-02T03:04:05.123456789Z", &labels);
    }
    let mut m = berth_api::event::Message {
        kind: "container".into(),
        action: "start".into(),
        ..Default::default()
    };
    m.actor.id = "0123456789abcdef".into();
    m.actor.attributes = labels;
    m.actor
        .attributes
        .insert("image".into(), "busybox:latest".into());
    let _ = crate::events::Filter::new(f).includes(&m);
}
