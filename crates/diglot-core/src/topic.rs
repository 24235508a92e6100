//! The canonical topic namespace: MQTT topic names and topic filters.
//!
//! Every protocol rewrites its names into these types at the edge (STOMP `/topic/a/b` becomes
//! the topic `a/b`). The rules are MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7:
//!
//! - A topic name is 1..=65535 bytes of UTF-8 with no NUL character and no wildcard
//!   (`+`, `#`) [MQTT-4.7.3-1], [MQTT-4.7.3-2], [MQTT-3.3.2-2]. `a/b`, `/a`, `a//b`, `a b`
//!   and `a.b*c` are valid; `a/+`, `#` and `` (empty) are not.
//! - A topic filter is 1..=65535 bytes of UTF-8 with no NUL. `#` may only stand alone as the
//!   last level [MQTT-4.7.1-2]; `+` may only fill a whole level [MQTT-4.7.1-3].
//!   `#`, `a/#`, `+/b`, `+`, `a/+/c`, `/+` are valid; `a#`, `a/#/b`, `a+`, `+a/b` are not.
//! - Topics that start with `$` are not matched by a filter whose first level is a wildcard
//!   [MQTT-4.7.2-1].
//!
//! This module does not know about STOMP destinations or shared subscriptions; the adapters
//! map those onto these types.

use std::fmt;
use std::sync::Arc;

/// Longest topic name or filter in bytes (a UTF-8 encoded string's u16 length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic or filter is empty [MQTT-4.7.3-1].
    #[error("topic is empty")]
    Empty,
    /// The topic or filter is longer than 65,535 bytes.
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// The topic or filter contains U+0000 [MQTT-4.7.3-2].
    #[error("topic contains a NUL character")]
    Nul,
    /// A topic name contains `+` or `#` [MQTT-3.3.2-2].
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `#` is not alone as the last level, or `+` does not fill a whole level.
    #[error("misplaced wildcard in topic filter")]
    BadWildcard,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// A validated topic name: where a message is published. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Validates `s` as a topic name.
    pub fn new(s: &str) -> Result<Topic, TopicError> {
        Topic::validate(s)?;
        Ok(Topic(Arc::from(s)))
    }

    /// Checks `s` as [`Topic::new`] does, without making a topic of it.
    pub fn validate(s: &str) -> Result<(), TopicError> {
        check_common(s)?;
        if s.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(())
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the topic, split on `/` (empty levels included).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether this is a `$`-topic (such as `$SYS/...`) that first-level wildcards skip.
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated topic filter: what a subscription matches. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter(Arc<str>);

impl Filter {
    /// Validates `s` as a topic filter.
    pub fn new(s: &str) -> Result<Filter, TopicError> {
        check_common(s)?;
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            let last = levels.peek().is_none();
            match level {
                "#" if !last => return Err(TopicError::BadWildcard),
                "#" | "+" => {}
                l if l.contains(['+', '#']) => return Err(TopicError::BadWildcard),
                _ => {}
            }
        }
        Ok(Filter(Arc::from(s)))
    }

    /// The filter as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the filter, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter has a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.0.contains(['+', '#'])
    }

    /// Whether `topic` matches this filter, by the rules of MQTT §4.7. The trie is the fast
    /// path; this is the reference it is tested against.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut f = self.levels();
        let mut t = topic.levels();
        let mut first = true;
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return !(first && topic.is_dollar()),
                (Some("+"), Some(_)) => {
                    if first && topic.is_dollar() {
                        return false;
                    }
                }
                (Some(fl), Some(tl)) => {
                    if fl != tl {
                        return false;
                    }
                }
                (None, None) => return true,
                _ => return false,
            }
            first = false;
        }
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({:?})", &*self.0)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "a/b", "/a", "a/", "a//b", "/", "a b", "a.b*c", "$SYS/x", "ü/€"] {
            assert!(Topic::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(Topic::new(""), Err(TopicError::Empty));
        assert_eq!(Topic::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(Topic::new("#"), Err(TopicError::WildcardInName));
        assert_eq!(Topic::new("a\0b"), Err(TopicError::Nul));
        assert_eq!(Topic::new(&"x".repeat(65_536)), Err(TopicError::TooLong));
    }

    #[test]
    fn filters() {
        for ok in ["#", "a/#", "+/b", "+", "a/+/c", "/+", "+/+", "/", "a//#", "sport/tennis/#"] {
            assert!(Filter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["a#", "a/#/b", "a+", "+a/b", "sport/tennis#", "sport+", "#/"] {
            assert_eq!(Filter::new(bad), Err(TopicError::BadWildcard), "{bad}");
        }
        assert_eq!(Filter::new(""), Err(TopicError::Empty));
    }

    fn m(f: &str, t: &str) -> bool {
        Filter::new(f).unwrap().matches(&Topic::new(t).unwrap())
    }

    #[test]
    fn matching_mqtt_4_7_examples() {
        // §4.7.1.2 multi-level wildcard
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
        assert!(m("sport/#", "sport"));
        assert!(m("#", "sport/tennis"));
        // §4.7.1.3 single-level wildcard
        assert!(m("sport/tennis/+", "sport/tennis/player1"));
        assert!(m("sport/tennis/+", "sport/tennis/player2"));
        assert!(!m("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!m("sport/+", "sport"));
        assert!(m("sport/+", "sport/"));
        assert!(m("+/+", "/finance"));
        assert!(m("/+", "/finance"));
        assert!(!m("+", "/finance"));
        // §4.7.2 topics beginning with $
        assert!(!m("#", "$SYS/x"));
        assert!(!m("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(m("$SYS/#", "$SYS/monitor/Clients"));
        assert!(m("$SYS/monitor/+", "$SYS/monitor/Clients"));
        // near misses
        assert!(!m("sport/tennis", "sport/tennis/"));
        assert!(!m("sport/tennis", "Sport/tennis"));
        assert!(!m("a/b", "a"));
        assert!(m("a//b", "a//b"));
        assert!(!m("a/+/b", "a/b"));
        assert!(m("a/+/b", "a//b"));
    }
}
