//! The daemon's event bus: every event goes to a broadcast channel (live `GET /events`
//! streams) and into a ring of the most recent ones (replayed for `since`/`until`), plus
//! Docker's event filters and the helpers that give container and image events Docker's
//! attributes (network events are built by the network glue). Emitting never blocks: it
//! takes a short lock and sends on the channel.

use crate::state::{Container, Daemon};
use berth_api::event::Message;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many recent events are kept for replay.
const RING: usize = 1024;
/// How far a live stream may fall behind before it loses events.
const CHANNEL: usize = 1024;

pub struct Events {
    tx: broadcast::Sender<Arc<Message>>,
    ring: Mutex<VecDeque<Arc<Message>>>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            tx: broadcast::channel(CHANNEL).0,
            ring: Mutex::new(VecDeque::with_capacity(RING)),
        }
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Events {
    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Message>>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many live `GET /events` streams are subscribed.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn publish(&self, m: Message) {
        let m = Arc::new(m);
        let mut ring = self.ring();
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(m.clone());
        // Sent under the ring's lock, so a subscriber sees every event exactly once.
        let _ = self.tx.send(m);
    }

    /// The kept events between `since` and `until` (nanoseconds; Docker replays nothing when
    /// neither is given) that pass `filter`, and a receiver for the events after them.
    pub fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &Filter,
    ) -> (Vec<Arc<Message>>, broadcast::Receiver<Arc<Message>>) {
        let ring = self.ring();
        let rx = self.tx.subscribe();
        if since.is_none() && until.is_none() {
            return (Vec::new(), rx);
        }
        let from = since.unwrap_or(0);
        let past = ring
            .iter()
            .filter(|m| m.time_nano >= from && until.is_none_or(|u| m.time_nano <= u))
            .filter(|m| filter.includes(m))
            .cloned()
            .collect();
        (past, rx)
    }
}

/// Docker's event filters: values of one key are alternatives, keys must all match; `label`
/// values must all match; names and ids match by prefix.
#[derive(Debug, Default, Clone)]
pub struct Filter(HashMap<String, Vec<String>>);

impl Filter {
    pub fn new(f: HashMap<String, Vec<String>>) -> Filter {
        Filter(f)
    }

    fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when the key is not filtered on or `source` is one of its values.
    fn exact(&self, key: &str, source: &str) -> bool {
        let v = self.values(key);
        v.is_empty() || v.iter().any(|x| x == source)
    }

    /// [`Filter::exact`], or `source` starts with one of the values.
    fn fuzzy(&self, key: &str, source: &str) -> bool {
        self.exact(key, source) || self.values(key).iter().any(|p| source.starts_with(p))
    }

    /// The actor of a `kind` filter, by id or name prefix.
    fn name(&self, m: &Message, kind: &str) -> bool {
        let name = m.actor.attributes.get("name").map(String::as_str);
        self.fuzzy(kind, &m.actor.id) || self.fuzzy(kind, name.unwrap_or(""))
    }

    fn event(&self, m: &Message) -> bool {
        // `exec_create` and friends carry the command after a colon: prefixes match then.
        let prefixed = self
            .values("event")
            .iter()
            .any(|v| matches!(v.as_str(), "health_status" | "exec_create" | "exec_start"));
        if prefixed {
            self.fuzzy("event", &m.action)
        } else {
            self.exact("event", &m.action)
        }
    }

    /// The image filter matches image events by id or name, container events by their image,
    /// with or without the tag.
    fn image(&self, m: &Message) -> bool {
        let attr = if m.kind == "image" { "name" } else { "image" };
        let name = m.actor.attributes.get(attr).cloned().unwrap_or_default();
        let want = self.values("image");
        want.is_empty()
            || [
                strip_tag(&m.actor.id),
                strip_tag(&name),
                m.actor.id.clone(),
                name,
            ]
            .iter()
            .any(|s| want.contains(s))
    }

    fn labels(&self, attrs: &BTreeMap<String, String>) -> bool {
        self.values("label")
            .iter()
            .all(|l| match l.split_once('=') {
                Some((k, v)) => attrs.get(k).is_some_and(|x| x == v),
                None => attrs.contains_key(l.as_str()),
            })
    }

    pub fn includes(&self, m: &Message) -> bool {
        self.event(m)
            && self.exact("type", &m.kind)
            && self.exact("scope", &m.scope)
            && ["daemon", "container", "plugin", "volume", "network"]
                .iter()
                .all(|k| self.name(m, k))
            && self.image(m)
            && self.labels(&m.actor.attributes)
    }
}

/// `busybox` for `busybox:latest` or `docker.io/library/busybox`; other input unchanged.
fn strip_tag(image: &str) -> String {
    berth_image::reference::Reference::parse(image)
        .map(|r| r.familiar_name())
        .unwrap_or_else(|_| image.to_string())
}

impl Daemon {
    /// Publish an event: `kind` is Docker's type (`container`, `image`, `network`, `volume`,
    /// `daemon`), `action` e.g. `create`, `actor_id` the object's id (a volume's name), and
    /// `attributes` what Docker attaches (for volumes: `driver`; for mounts also `container`,
    /// `destination`, `propagation`, `read/write`). Cheap and never blocks.
    pub fn emit(
        &self,
        kind: &str,
        action: impl Into<String>,
        actor_id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        self.events.publish(Message::new(
            kind,
            action.into(),
            actor_id.to_string(),
            attributes,
            now_nanos(),
        ));
    }

    /// A volume event (`create`, `destroy`) with Docker's `driver` attribute.
    pub fn volume_event(&self, action: &str, name: &str) {
        self.emit(
            "volume",
            action,
            name,
            BTreeMap::from([("driver".to_string(), "local".to_string())]),
        );
    }

    /// A container event with `extra` attributes, the container's labels, its image as the
    /// user named it and its name.
    pub fn container_event(
        &self,
        c: &Container,
        action: impl Into<String>,
        extra: &[(&str, String)],
    ) {
        let mut attrs: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        {
            let r = c.rec();
            if let Some(labels) = &r.config.labels {
                attrs.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if !r.image.is_empty() {
                attrs.insert("image".into(), r.image.clone());
            }
            attrs.insert("name".into(), r.bare_name().to_string());
        }
        self.emit("container", action, &c.id, attrs);
    }

    /// An image event: the image's labels (while it exists) and `name`.
    pub fn image_event(&self, id: &str, name: &str, action: &str) {
        let labels = self
            .images
            .get(id)
            .ok()
            .and_then(|img| {
                img.config
                    .config()
                    .as_ref()
                    .and_then(|c| c.labels().clone())
            })
            .unwrap_or_default();
        self.image_event_labelled(id, name, action, labels.into_iter().collect());
    }

    /// An image event with the labels given (the image may be gone by now).
    pub fn image_event_labelled(
        &self,
        id: &str,
        name: &str,
        action: &str,
        mut attrs: BTreeMap<String, String>,
    ) {
        if !name.is_empty() {
            attrs.insert("name".into(), name.to_string());
        }
        self.emit("image", action, id, attrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Message {
        Message::new(
            kind,
            action.into(),
            id.into(),
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            1,
        )
    }

    fn filter(pairs: &[(&str, &str)]) -> Filter {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        Filter::new(m)
    }

    #[test]
    fn filters_as_docker() {
        let start = msg(
            "container",
            "start",
            "abcdef",
            &[("name", "web"), ("image", "busybox:latest"), ("tier", "db")],
        );
        let exec = msg(
            "container",
            "exec_create: sh -c true",
            "abcdef",
            &[("name", "web")],
        );
        let net = msg(
            "network",
            "connect",
            "n123",
            &[("name", "bridge"), ("container", "abcdef")],
        );
        assert!(filter(&[]).includes(&start));
        assert!(filter(&[("type", "container"), ("type", "image")]).includes(&start));
        assert!(!filter(&[("type", "network")]).includes(&start));
        assert!(filter(&[("container", "web")]).includes(&start));
        assert!(filter(&[("container", "abc")]).includes(&start));
        assert!(filter(&[("container", "nope"), ("container", "we")]).includes(&start));
        assert!(!filter(&[("container", "web")]).includes(&net));
        assert!(filter(&[("network", "bridge")]).includes(&net));
        assert!(filter(&[("event", "start"), ("event", "die")]).includes(&start));
        assert!(!filter(&[("event", "stop")]).includes(&start));
        assert!(filter(&[("event", "exec_create")]).includes(&exec));
        assert!(!filter(&[("event", "exec_start")]).includes(&exec));
        assert!(filter(&[("image", "busybox")]).includes(&start));
        assert!(filter(&[("image", "busybox:latest")]).includes(&start));
        assert!(!filter(&[("image", "alpine")]).includes(&start));
        assert!(filter(&[("label", "tier=db")]).includes(&start));
        assert!(filter(&[("label", "tier")]).includes(&start));
        assert!(!filter(&[("label", "tier=db"), ("label", "other")]).includes(&start));
        assert!(!filter(&[("type", "container"), ("event", "die")]).includes(&start));
    }

    #[test]
    fn ring_replay() {
        let ev = Events::default();
        for (i, a) in ["create", "start", "die"].iter().enumerate() {
            let mut m = msg("container", a, "c1", &[]);
            m.time_nano = (i as i64 + 1) * 10;
            ev.publish(m);
        }
        let all = Filter::default();
        let (past, _) = ev.subscribe(None, None, &all);
        assert!(past.is_empty());
        let (past, _) = ev.subscribe(Some(20), None, &all);
        assert_eq!(past.len(), 2);
        let (past, mut rx) = ev.subscribe(Some(0), Some(20), &all);
        assert_eq!(
            past.iter().map(|m| m.action.as_str()).collect::<Vec<_>>(),
            ["create", "start"]
        );
        ev.publish(msg("container", "destroy", "c1", &[]));
        assert_eq!(rx.try_recv().unwrap().action, "destroy");
        for _ in 0..RING + 5 {
            ev.publish(msg("image", "tag", "i", &[]));
        }
        assert_eq!(ev.ring().len(), RING);
    }
}
