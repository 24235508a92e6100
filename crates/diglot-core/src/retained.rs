//! Retained messages: the last retained message of each topic, handed to new subscriptions.
//!
//! MQTT §3.3.1.3: a PUBLISH with RETAIN=1 replaces the topic's retained message; one with an
//! empty payload removes it [MQTT-3.3.1-10]. A new subscription receives the retained
//! messages its filter matches, with RETAIN=1 [MQTT-3.3.1-6]. Expired ones are dropped.
//!
//! This is the in-memory view; the network side persists every change in the store and
//! restores the view at start. It knows no protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::message::Message;
use crate::topic::{Filter, Topic};

/// Topic → its retained message.
#[derive(Default)]
pub struct Retained {
    map: RwLock<HashMap<Topic, Arc<Message>>>,
}

/// What [`Retained::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainChange {
    /// The message is now the topic's retained message.
    Stored,
    /// The topic's retained message was removed (empty payload).
    Cleared,
    /// Nothing changed (an empty payload for a topic with no retained message).
    Unchanged,
}

impl Retained {
    /// An empty set.
    pub fn new() -> Retained {
        Retained::default()
    }

    /// Applies a published message with RETAIN=1.
    pub fn update(&self, msg: &Arc<Message>) -> RetainChange {
        let mut map = self.map.write();
        if msg.payload.is_empty() {
            return match map.remove(&msg.topic) {
                Some(_) => RetainChange::Cleared,
                None => RetainChange::Unchanged,
            };
        }
        map.insert(msg.topic.clone(), msg.clone());
        RetainChange::Stored
    }

    /// Puts a message back (at start, from the store).
    pub fn restore(&self, msg: Arc<Message>) {
        self.map.write().insert(msg.topic.clone(), msg);
    }

    /// The retained messages that `filter` matches, oldest publish first, without expired ones.
    pub fn matching(&self, filter: &Filter) -> Vec<Arc<Message>> {
        let now = Instant::now();
        let map = self.map.read();
        let mut out: Vec<Arc<Message>> = if filter.has_wildcard() {
            map.values().filter(|m| !m.is_expired(now) && filter.matches(&m.topic)).cloned().collect()
        } else {
            Topic::new(filter.as_str())
                .ok()
                .and_then(|t| map.get(&t))
                .filter(|m| !m.is_expired(now))
                .cloned()
                .into_iter()
                .collect()
        };
        out.sort_by_key(|m| m.id);
        out
    }

    /// How many topics have a retained message.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Whether no topic has a retained message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Qos;
    use bytes::Bytes;

    fn m(topic: &str, body: &'static [u8], id: u64) -> Arc<Message> {
        let mut m = Message::new(Topic::new(topic).unwrap(), Bytes::from_static(body), Qos::AtMostOnce, true);
        m.id = id;
        Arc::new(m)
    }

    #[test]
    fn set_replace_clear_and_match() {
        let r = Retained::new();
        assert_eq!(r.update(&m("a/b", b"1", 1)), RetainChange::Stored);
        assert_eq!(r.update(&m("a/c", b"2", 2)), RetainChange::Stored);
        assert_eq!(r.update(&m("a/b", b"3", 3)), RetainChange::Stored);
        assert_eq!(r.update(&m("$SYS/x", b"s", 4)), RetainChange::Stored);
        let all: Vec<Bytes> = r.matching(&Filter::new("a/+").unwrap()).iter().map(|m| m.payload.clone()).collect();
        assert_eq!(all, vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")]);
        assert_eq!(r.matching(&Filter::new("#").unwrap()).len(), 2, "$SYS is not matched by #");
        assert_eq!(r.matching(&Filter::new("a/b").unwrap()).len(), 1);
        assert_eq!(r.update(&m("a/b", b"", 5)), RetainChange::Cleared);
        assert_eq!(r.update(&m("a/b", b"", 6)), RetainChange::Unchanged);
        assert!(r.matching(&Filter::new("a/b").unwrap()).is_empty());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn expired_messages_are_not_handed_out() {
        let r = Retained::new();
        let mut msg = Message::new(Topic::new("t").unwrap(), Bytes::from_static(b"x"), Qos::AtMostOnce, true);
        msg.expires_at = Some(Instant::now());
        r.update(&Arc::new(msg));
        assert!(r.matching(&Filter::new("t").unwrap()).is_empty());
    }
}
