//! STOMP destinations mapped onto Diglot's canonical topic namespace.
//!
//! Rules (ARCHITECTURE.md, "Protocol mapping"):
//!
//! - `/topic/<t>` is the canonical (MQTT) topic `<t>`, byte for byte. Nothing is rewritten, so
//!   the mapping is lossless both ways: dots, `*`, spaces and any UTF-8 survive a round trip
//!   MQTT → STOMP → MQTT. `/topic/a/b` is `a/b`, `/topic/a.b` is `a.b` (not `a/b`),
//!   `/topic//x` is `/x`, `/topic/$SYS/x` is `$SYS/x`.
//! - SEND needs a valid topic name: no `+` or `#`, no NUL, not empty.
//!   Valid: `/topic/a`, `/topic/a b/ü`, `/topic/a.b*c`. Invalid: `/topic/` (empty),
//!   `/topic/a/+`, `/topic/#`.
//! - SUBSCRIBE takes a topic filter, so the MQTT wildcards work: `+` fills one whole level and
//!   `#` is the whole last level. Valid: `/topic/a/+/c`, `/topic/#`, `/topic/a/#`.
//!   Invalid: `/topic/a#`, `/topic/a/#/b`, `/topic/a+`.
//! - `/queue/<name>` (a durable queue with competing consumers) and `/temp-queue/<name>`
//!   (request/response) are recognised and parsed, but they need the durable store, which
//!   comes later; until then the session answers them with an ERROR that says so.
//! - Anything else (`/exchange/x`, `/amq/queue/x`, `topic/a`, `/topic`, `/a`) is an unknown
//!   destination.
//!
//! The reverse, [`to_stomp`], turns a canonical topic into `/topic/<t>` for MESSAGE's
//! `destination` header. [`reply_to_canonical`] and [`reply_to_stomp`] map `reply-to` ⇔ MQTT
//! response topic.
//!
//! Not here (yet): the RabbitMQ-style `stomp.topic_separator = "."` option.

use diglot_core::{Filter, Topic, TopicError};

/// The prefix of topic destinations.
pub const TOPIC_PREFIX: &str = "/topic/";
/// The prefix of queue destinations.
pub const QUEUE_PREFIX: &str = "/queue/";
/// The prefix of temporary queue destinations.
pub const TEMP_QUEUE_PREFIX: &str = "/temp-queue/";

/// A parsed STOMP destination, borrowing its name from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/topic/<name>`: the canonical topic text (not yet validated).
    Topic(&'a str),
    /// `/queue/<name>`.
    Queue(&'a str),
    /// `/temp-queue/<name>`.
    TempQueue(&'a str),
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// The prefix is not one this broker serves.
    #[error("unknown destination {0:?}: use /topic/<name>")]
    Unknown(String),
    /// Nothing follows the prefix.
    #[error("destination {0:?} has no name")]
    Empty(String),
    /// The topic is not a valid topic name (SEND) or topic filter (SUBSCRIBE).
    #[error("invalid topic in {dest:?}: {err}")]
    Topic {
        /// The destination as given.
        dest: String,
        /// What is wrong with the topic.
        err: TopicError,
    },
    /// A `/queue/` or `/temp-queue/` destination: queues need the durable store.
    #[error("{0:?}: queues arrive with the durable store and are not supported yet; use /topic/<name>")]
    QueueUnsupported(String),
}

impl<'a> Destination<'a> {
    /// Recognises the prefix of `dest` and splits off the name.
    pub fn parse(dest: &'a str) -> Result<Destination<'a>, DestinationError> {
        let (kind, name): (fn(&'a str) -> Destination<'a>, &str) = if let Some(n) = dest.strip_prefix(TOPIC_PREFIX) {
            (Destination::Topic, n)
        } else if let Some(n) = dest.strip_prefix(QUEUE_PREFIX) {
            (Destination::Queue, n)
        } else if let Some(n) = dest.strip_prefix(TEMP_QUEUE_PREFIX) {
            (Destination::TempQueue, n)
        } else {
            return Err(DestinationError::Unknown(dest.to_owned()));
        };
        if name.is_empty() {
            return Err(DestinationError::Empty(dest.to_owned()));
        }
        Ok(kind(name))
    }
}

/// The topic a SEND to `dest` publishes to.
pub fn send_topic(dest: &str) -> Result<Topic, DestinationError> {
    match Destination::parse(dest)? {
        Destination::Topic(t) => Topic::new(t).map_err(|err| DestinationError::Topic { dest: dest.to_owned(), err }),
        Destination::Queue(_) | Destination::TempQueue(_) => Err(DestinationError::QueueUnsupported(dest.to_owned())),
    }
}

/// The filter a SUBSCRIBE to `dest` subscribes to.
pub fn subscribe_filter(dest: &str) -> Result<Filter, DestinationError> {
    match Destination::parse(dest)? {
        Destination::Topic(t) => Filter::new(t).map_err(|err| DestinationError::Topic { dest: dest.to_owned(), err }),
        Destination::Queue(_) | Destination::TempQueue(_) => Err(DestinationError::QueueUnsupported(dest.to_owned())),
    }
}

/// The STOMP destination of a canonical topic: `a/b` → `/topic/a/b`.
pub fn to_stomp(topic: &str) -> String {
    let mut s = String::with_capacity(TOPIC_PREFIX.len() + topic.len());
    s.push_str(TOPIC_PREFIX);
    s.push_str(topic);
    s
}

/// A SEND's `reply-to` as an MQTT response topic: `/topic/<t>` becomes `<t>`; any other value
/// (a `/queue/` or `/temp-queue/` name, or something this broker does not know) is kept
/// verbatim, so it still reaches a STOMP replier unchanged.
pub fn reply_to_canonical(reply_to: &str) -> String {
    match reply_to.strip_prefix(TOPIC_PREFIX) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => reply_to.to_owned(),
    }
}

/// An MQTT response topic as a MESSAGE's `reply-to`: the reverse of [`reply_to_canonical`].
/// A value that starts with `/queue/` or `/temp-queue/` was kept verbatim and is returned as
/// is; everything else is a canonical topic and gains `/topic/`. (An MQTT response topic that
/// itself starts with `/queue/` is therefore shown as a queue: the one ambiguous corner.)
pub fn reply_to_stomp(response_topic: &str) -> String {
    if response_topic.starts_with(QUEUE_PREFIX) || response_topic.starts_with(TEMP_QUEUE_PREFIX) {
        response_topic.to_owned()
    } else {
        to_stomp(response_topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_losslessly() {
        let cases = [
            ("/topic/a", "a"),
            ("/topic/a/b", "a/b"),
            ("/topic/a.b.c", "a.b.c"),
            ("/topic//x", "/x"),
            ("/topic/a b/ü/€", "a b/ü/€"),
            ("/topic/a*b", "a*b"),
            ("/topic/a//b/", "a//b/"),
            ("/topic/$SYS/x", "$SYS/x"),
            ("/topic//", "/"),
        ];
        for (dest, topic) in cases {
            assert_eq!(send_topic(dest).unwrap().as_str(), topic, "{dest}");
            assert_eq!(to_stomp(topic), dest);
            assert_eq!(subscribe_filter(dest).unwrap().as_str(), topic);
        }
    }

    #[test]
    fn send_refuses_wildcards_and_empty_names() {
        for dest in ["/topic/a/+", "/topic/#", "/topic/a+b"] {
            assert!(
                matches!(send_topic(dest), Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })),
                "{dest}"
            );
        }
        assert_eq!(send_topic("/topic/"), Err(DestinationError::Empty("/topic/".into())));
        assert!(matches!(send_topic("/topic/a\0b"), Err(DestinationError::Topic { err: TopicError::Nul, .. })));
    }

    #[test]
    fn subscribe_takes_mqtt_wildcards() {
        for dest in ["/topic/a/+/c", "/topic/#", "/topic/a/#", "/topic/+", "/topic//+"] {
            assert!(subscribe_filter(dest).is_ok(), "{dest}");
        }
        for dest in ["/topic/a#", "/topic/a/#/b", "/topic/a+", "/topic/+a/b"] {
            assert!(
                matches!(subscribe_filter(dest), Err(DestinationError::Topic { err: TopicError::BadWildcard, .. })),
                "{dest}"
            );
        }
    }

    #[test]
    fn queues_are_recognised_but_not_served_yet() {
        assert_eq!(Destination::parse("/queue/jobs"), Ok(Destination::Queue("jobs")));
        assert_eq!(Destination::parse("/temp-queue/r1"), Ok(Destination::TempQueue("r1")));
        assert_eq!(send_topic("/queue/jobs"), Err(DestinationError::QueueUnsupported("/queue/jobs".into())));
        assert!(subscribe_filter("/temp-queue/r1").unwrap_err().to_string().contains("durable store"));
        assert_eq!(Destination::parse("/queue/"), Err(DestinationError::Empty("/queue/".into())));
    }

    #[test]
    fn unknown_prefixes() {
        for dest in ["/exchange/x", "/amq/queue/x", "topic/a", "/topic", "/a", "", "/TOPIC/a"] {
            assert_eq!(Destination::parse(dest), Err(DestinationError::Unknown(dest.into())), "{dest}");
        }
    }

    #[test]
    fn reply_to_round_trips() {
        for (stomp, canonical) in [("/topic/a/b", "a/b"), ("/temp-queue/r", "/temp-queue/r"), ("/queue/q", "/queue/q")]
        {
            assert_eq!(reply_to_canonical(stomp), canonical);
            assert_eq!(reply_to_stomp(canonical), stomp);
        }
        // Unknown STOMP names are kept verbatim on the way in.
        assert_eq!(reply_to_canonical("/exchange/x"), "/exchange/x");
        // An MQTT response topic gains /topic/.
        assert_eq!(reply_to_stomp("resp/1"), "/topic/resp/1");
    }
}
