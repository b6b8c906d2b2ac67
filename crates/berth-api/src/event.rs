//! `GET /events` messages: Docker's `events.Message` with the deprecated `status`/`id`/`from`
//! fields that container and image events still carry.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The object an event is about and its attributes (name, image, labels...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in the field order Docker encodes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time: i64,
    #[serde(rename = "timeNano", default, skip_serializing_if = "is_zero")]
    pub time_nano: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Message {
    /// A local event stamped `time_nano` (nanoseconds since the epoch), with the deprecated
    /// fields filled as Docker does for container and image events.
    pub fn new(
        kind: &str,
        action: String,
        actor_id: String,
        attributes: BTreeMap<String, String>,
        time_nano: i64,
    ) -> Message {
        let (status, id, from) = match kind {
            "container" => (
                action.clone(),
                actor_id.clone(),
                attributes.get("image").cloned().unwrap_or_default(),
            ),
            "image" => (action.clone(), actor_id.clone(), String::new()),
            _ => Default::default(),
        };
        Message {
            status,
            id,
            from,
            kind: kind.to_string(),
            action,
            actor: Actor {
                id: actor_id,
                attributes,
            },
            scope: "local".into(),
            time: time_nano.div_euclid(1_000_000_000),
            time_nano,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_events_carry_the_deprecated_fields() {
        let attrs = BTreeMap::from([
            ("image".to_string(), "busybox".to_string()),
            ("name".to_string(), "web".to_string()),
        ]);
        let m = Message::new(
            "container",
            "start".into(),
            "abc".into(),
            attrs,
            1_700_000_000_123_456_789,
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"status":"start","id":"abc","from":"busybox","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"image":"busybox","name":"web"}},"scope":"local","time":1700000000,"timeNano":1700000000123456789}"#
        );
        let n = Message::new("network", "create".into(), "n1".into(), BTreeMap::new(), 1);
        let v = serde_json::to_value(&n).unwrap();
        assert!(v.get("status").is_none() && v.get("from").is_none());
        assert_eq!(serde_json::from_value::<Message>(v).unwrap(), n);
    }
}
