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
//! - `/queue/<name>` is the named durable queue [`diglot_core::named_queue`]`(name)` with
//!   competing consumers. Its canonical topic is [`queue_topic`]`(name)` = `$queue/<name>`
//!   (MQTT publishes into it there): a SEND publishes to that topic, and a SUBSCRIBE consumes the
//!   queue, which is bound to that topic. The name is anything non-empty that makes
//!   `$queue/<name>` a valid topic name: no NUL, no `+` or `#`; `/` and `.` are fine
//!   (`/queue/a/b`, `/queue/dlq.jobs`).
//! - `/topic/$queue/<name>` is the same destination as `/queue/<name>`, for SEND and for
//!   SUBSCRIBE alike: `$queue/<name>` is the queue's canonical topic, so a STOMP client that
//!   spells it as a topic reaches the queue, as an MQTT client does. A plain topic
//!   subscription can therefore never watch a queue's traffic past its consumers, and
//!   `/topic/$queue/+` or `/topic/$queue/#` is an invalid queue name, not a wildcard. (The
//!   router's rule that wildcards at the first level do not match `$` topics keeps
//!   `/topic/#` away from queues too.) `/topic/$queue` alone is an ordinary topic.
//! - `/temp-queue/<name>` (request/response, RabbitMQ's semantics) is private to the session
//!   that uses it: it is the canonical topic [`temp_topic`]`(session, name)` =
//!   `$temp/<session>/<name>`, where `<session>` is a broker-wide unique, unguessable token of
//!   the connection. A SEND whose `reply-to` is `/temp-queue/<name>` has it rewritten to that
//!   topic ([`reply_to_canonical`]), which any replier can publish to: an MQTT replier uses it
//!   as its response topic, a STOMP replier sees `reply-to:/topic/$temp/<session>/<name>` and
//!   SENDs there. Nobody can SUBSCRIBE to `/topic/$temp/...` ([`DestinationError::PrivateTemp`]):
//!   only the owner receives it, through `/temp-queue/<name>`.
//! - Anything else (`/exchange/x`, `/amq/queue/x`, `topic/a`, `/topic`, `/a`) is an unknown
//!   destination.
//!
//! The reverse, [`to_stomp`], turns a canonical topic into MESSAGE's `destination` header:
//! `$queue/<name>` becomes `/queue/<name>`, anything else `/topic/<t>`.
//! [`reply_to_canonical`] and [`reply_to_stomp`] map `reply-to` ⇔ MQTT response topic the same
//! way (`/queue/q` ⇔ `$queue/q`), and `/temp-queue/<name>` becomes the session's private
//! `$temp/<session>/<name>` (shown to other STOMP clients as `/topic/$temp/<session>/<name>`).
//!
//! Not here (yet): the RabbitMQ-style `stomp.topic_separator = "."` option.

use diglot_core::{queue_topic, Filter, Topic, TopicError};

/// The prefix of topic destinations.
pub const TOPIC_PREFIX: &str = "/topic/";
/// The prefix of queue destinations.
pub const QUEUE_PREFIX: &str = "/queue/";
/// The prefix of temporary queue destinations.
pub const TEMP_QUEUE_PREFIX: &str = "/temp-queue/";
/// The prefix of the canonical topics that publish into named queues
/// ([`diglot_core::queue_topic`]).
pub const QUEUE_TOPIC_PREFIX: &str = "$queue/";
/// The prefix of the canonical topics behind `/temp-queue/` destinations ([`temp_topic`]).
pub const TEMP_TOPIC_PREFIX: &str = "$temp/";

/// The canonical topic of the temporary queue `name` of the session whose token is `session`:
/// `$temp/<session>/<name>`.
pub fn temp_topic(session: &str, name: &str) -> String {
    let mut s = String::with_capacity(TEMP_TOPIC_PREFIX.len() + session.len() + 1 + name.len());
    s.push_str(TEMP_TOPIC_PREFIX);
    s.push_str(session);
    s.push('/');
    s.push_str(name);
    s
}

/// Whether a topic or filter lies in the private `$temp/` space.
pub fn is_temp(topic: &str) -> bool {
    topic.starts_with(TEMP_TOPIC_PREFIX)
}

/// A parsed STOMP destination, borrowing its name from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/topic/<name>`: the canonical topic text (not yet validated).
    Topic(&'a str),
    /// `/queue/<name>` or `/topic/$queue/<name>`: the queue's name (not yet validated).
    Queue(&'a str),
    /// `/temp-queue/<name>`.
    TempQueue(&'a str),
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// The prefix is not one this broker serves.
    #[error("unknown destination {0:?}: use /topic/<name> or /queue/<name>")]
    Unknown(String),
    /// Nothing follows the prefix.
    #[error("destination {0:?} has no name")]
    Empty(String),
    /// The topic is not a valid topic name (SEND) or topic filter (SUBSCRIBE), or the queue
    /// name does not make a valid topic name.
    #[error("invalid topic in {dest:?}: {err}")]
    Topic {
        /// The destination as given.
        dest: String,
        /// What is wrong with the topic.
        err: TopicError,
    },
    /// A SUBSCRIBE to another session's temporary queue (`/topic/$temp/...`).
    #[error("{0:?} is a private temporary destination; subscribe to /temp-queue/<name> for your own")]
    PrivateTemp(String),
}

/// What a SUBSCRIBE attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeTo<'a> {
    /// A topic filter (pub/sub).
    Topic(Filter),
    /// The named queue `name`, whose canonical topic is `filter` (`$queue/<name>`).
    Queue {
        /// The queue's name, as in `/queue/<name>`.
        name: &'a str,
        /// [`queue_topic`]`(name)` as a filter, for the queue's binding.
        filter: Filter,
    },
    /// The session's temporary queue `name` (`/temp-queue/<name>`), whose canonical topic is
    /// `filter` ([`temp_topic`]).
    Temp {
        /// The name, as in `/temp-queue/<name>`.
        name: &'a str,
        /// [`temp_topic`]`(session, name)` as a filter.
        filter: Filter,
    },
}

impl<'a> Destination<'a> {
    /// Recognises the prefix of `dest` and splits off the name.
    pub fn parse(dest: &'a str) -> Result<Destination<'a>, DestinationError> {
        let (kind, name): (fn(&'a str) -> Destination<'a>, &str) = if let Some(n) = dest.strip_prefix(TOPIC_PREFIX) {
            match n.strip_prefix(QUEUE_TOPIC_PREFIX) {
                Some(q) => (Destination::Queue, q),
                None => (Destination::Topic, n),
            }
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

fn topic_err(dest: &str) -> impl FnOnce(TopicError) -> DestinationError + '_ {
    move |err| DestinationError::Topic { dest: dest.to_owned(), err }
}

/// The topic a SEND to `dest` publishes to: the topic itself, `$queue/<name>` for a queue
/// (see [`queue_name`]), or `$temp/<session>/<name>` for the sending session's own temporary
/// queue. A SEND to `/topic/$temp/...` is allowed: that is how a STOMP replier answers.
pub fn send_topic(dest: &str, session: &str) -> Result<Topic, DestinationError> {
    match Destination::parse(dest)? {
        Destination::Topic(t) => Topic::new(t).map_err(topic_err(dest)),
        Destination::Queue(name) => Topic::new(&queue_topic(name)).map_err(topic_err(dest)),
        Destination::TempQueue(name) => Topic::new(&temp_topic(session, name)).map_err(topic_err(dest)),
    }
}

/// What a SUBSCRIBE to `dest` by the session with token `session` attaches to.
pub fn subscribe_target<'a>(dest: &'a str, session: &str) -> Result<SubscribeTo<'a>, DestinationError> {
    match Destination::parse(dest)? {
        Destination::Topic(t) if is_temp(t) => Err(DestinationError::PrivateTemp(dest.to_owned())),
        Destination::Topic(t) => Filter::new(t).map(SubscribeTo::Topic).map_err(topic_err(dest)),
        Destination::Queue(name) => {
            // A valid topic name (no wildcards) is a valid filter that matches only itself.
            let topic = queue_topic(name);
            Topic::new(&topic).map_err(topic_err(dest))?;
            let filter = Filter::new(&topic).map_err(topic_err(dest))?;
            Ok(SubscribeTo::Queue { name, filter })
        }
        Destination::TempQueue(name) => {
            let topic = temp_topic(session, name);
            Topic::new(&topic).map_err(topic_err(dest))?;
            let filter = Filter::new(&topic).map_err(topic_err(dest))?;
            Ok(SubscribeTo::Temp { name, filter })
        }
    }
}

/// The filter a SUBSCRIBE to `dest` subscribes to: the topic filter, `$queue/<name>` for a
/// queue, or `$temp/<session>/<name>` for a temporary queue.
pub fn subscribe_filter(dest: &str, session: &str) -> Result<Filter, DestinationError> {
    Ok(match subscribe_target(dest, session)? {
        SubscribeTo::Topic(f) | SubscribeTo::Queue { filter: f, .. } | SubscribeTo::Temp { filter: f, .. } => f,
    })
}

/// The queue name of a canonical topic that publishes into a named queue: `$queue/jobs` →
/// `jobs`. `None` for any other topic (including `$queue/` with an empty name).
pub fn queue_name(topic: &str) -> Option<&str> {
    topic.strip_prefix(QUEUE_TOPIC_PREFIX).filter(|n| !n.is_empty())
}

/// The STOMP destination of a canonical topic: `a/b` → `/topic/a/b`, `$queue/q` → `/queue/q`.
pub fn to_stomp(topic: &str) -> String {
    let (prefix, rest) = match queue_name(topic) {
        Some(name) => (QUEUE_PREFIX, name),
        None => (TOPIC_PREFIX, topic),
    };
    let mut s = String::with_capacity(prefix.len() + rest.len());
    s.push_str(prefix);
    s.push_str(rest);
    s
}

/// A SEND's `reply-to` as an MQTT response topic: `/topic/<t>` becomes `<t>`, `/queue/<q>`
/// becomes `$queue/<q>` (so an MQTT replier publishes into the queue), and `/temp-queue/<x>`
/// becomes the sending session's private `$temp/<session>/<x>` (RabbitMQ rewrites it the same
/// way, to a `/reply-queue/`). Any other value (something this broker does not know) is kept
/// verbatim, so it still reaches a STOMP replier unchanged.
pub fn reply_to_canonical(reply_to: &str, session: &str) -> String {
    match Destination::parse(reply_to) {
        Ok(Destination::Topic(t)) => t.to_owned(),
        Ok(Destination::Queue(q)) => queue_topic(q),
        Ok(Destination::TempQueue(x)) => temp_topic(session, x),
        _ => reply_to.to_owned(),
    }
}

/// An MQTT response topic as a MESSAGE's `reply-to`: the reverse of [`reply_to_canonical`]
/// through [`to_stomp`]. A temporary queue's `$temp/<session>/<x>` is shown as
/// `/topic/$temp/<session>/<x>`, which a STOMP replier can SEND to. (A `reply-to` this broker
/// did not know and kept verbatim, such as `/exchange/x`, comes back as `/topic//exchange/x`:
/// it is a topic like any other.)
pub fn reply_to_stomp(response_topic: &str) -> String {
    to_stomp(response_topic)
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
            assert_eq!(send_topic(dest, "S").unwrap().as_str(), topic, "{dest}");
            assert_eq!(to_stomp(topic), dest);
            assert_eq!(subscribe_filter(dest, "S").unwrap().as_str(), topic);
        }
    }

    #[test]
    fn send_refuses_wildcards_and_empty_names() {
        for dest in ["/topic/a/+", "/topic/#", "/topic/a+b"] {
            assert!(
                matches!(send_topic(dest, "S"), Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })),
                "{dest}"
            );
        }
        assert_eq!(send_topic("/topic/", "S"), Err(DestinationError::Empty("/topic/".into())));
        assert!(matches!(send_topic("/topic/a\0b", "S"), Err(DestinationError::Topic { err: TopicError::Nul, .. })));
    }

    #[test]
    fn subscribe_takes_mqtt_wildcards() {
        for dest in ["/topic/a/+/c", "/topic/#", "/topic/a/#", "/topic/+", "/topic//+"] {
            assert!(subscribe_filter(dest, "S").is_ok(), "{dest}");
        }
        for dest in ["/topic/a#", "/topic/a/#/b", "/topic/a+", "/topic/+a/b"] {
            assert!(
                matches!(
                    subscribe_filter(dest, "S"),
                    Err(DestinationError::Topic { err: TopicError::BadWildcard, .. })
                ),
                "{dest}"
            );
        }
    }

    #[test]
    fn queues_map_to_their_canonical_topic() {
        assert_eq!(QUEUE_TOPIC_PREFIX, queue_topic(""));
        assert_eq!(Destination::parse("/queue/jobs"), Ok(Destination::Queue("jobs")));
        assert_eq!(Destination::parse("/topic/$queue/jobs"), Ok(Destination::Queue("jobs")));
        assert_eq!(Destination::parse("/topic/$queue"), Ok(Destination::Topic("$queue")));
        for (dest, name) in [("/queue/jobs", "jobs"), ("/queue/a/b", "a/b"), ("/queue/dlq.x y", "dlq.x y")] {
            let topic = send_topic(dest, "S").unwrap();
            assert_eq!(topic.as_str(), queue_topic(name));
            assert_eq!(queue_name(topic.as_str()), Some(name));
            assert_eq!(to_stomp(topic.as_str()), dest);
            match subscribe_target(dest, "S").unwrap() {
                SubscribeTo::Queue { name: n, filter } => {
                    assert_eq!(n, name);
                    assert_eq!(filter.as_str(), queue_topic(name));
                }
                other => panic!("{other:?}"),
            }
        }
        // `/topic/$queue/<name>` is the same queue, in both directions.
        assert_eq!(send_topic("/topic/$queue/jobs", "S").unwrap().as_str(), "$queue/jobs");
        assert_eq!(
            subscribe_target("/topic/$queue/jobs", "S").unwrap(),
            SubscribeTo::Queue { name: "jobs", filter: Filter::new("$queue/jobs").unwrap() }
        );
        // The only topic with the prefix that is not a queue: the empty name.
        assert_eq!(queue_name("$queue/"), None);
        assert_eq!(queue_name("queue/x"), None);
        assert_eq!(to_stomp("$queue"), "/topic/$queue");
    }

    #[test]
    fn queue_names_are_checked() {
        for dest in ["/queue/", "/topic/$queue/"] {
            assert_eq!(send_topic(dest, "S"), Err(DestinationError::Empty(dest.into())));
            assert_eq!(subscribe_target(dest, "S"), Err(DestinationError::Empty(dest.into())));
        }
        for dest in ["/queue/a/+", "/queue/#", "/topic/$queue/+", "/topic/$queue/#", "/queue/a+b"] {
            assert!(
                matches!(send_topic(dest, "S"), Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })),
                "{dest}"
            );
            assert!(
                matches!(
                    subscribe_target(dest, "S"),
                    Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })
                ),
                "{dest}"
            );
        }
        assert!(matches!(send_topic("/queue/a\0b", "S"), Err(DestinationError::Topic { err: TopicError::Nul, .. })));
        assert!(matches!(
            subscribe_target("/queue/\0", "S"),
            Err(DestinationError::Topic { err: TopicError::Nul, .. })
        ));
    }

    #[test]
    fn temp_queues_are_private_to_their_session() {
        assert_eq!(Destination::parse("/temp-queue/r1"), Ok(Destination::TempQueue("r1")));
        assert_eq!(temp_topic("S", "r1"), "$temp/S/r1");
        assert_eq!(send_topic("/temp-queue/r1", "S").unwrap().as_str(), "$temp/S/r1");
        assert_eq!(send_topic("/temp-queue/a/b", "S").unwrap().as_str(), "$temp/S/a/b");
        assert_eq!(
            subscribe_target("/temp-queue/r1", "S").unwrap(),
            SubscribeTo::Temp { name: "r1", filter: Filter::new("$temp/S/r1").unwrap() }
        );
        // Repliers SEND to someone's temp topic; nobody may subscribe to it as a topic.
        assert_eq!(send_topic("/topic/$temp/T/r1", "S").unwrap().as_str(), "$temp/T/r1");
        for dest in ["/topic/$temp/T/r1", "/topic/$temp/#", "/topic/$temp/+/r1"] {
            assert_eq!(subscribe_target(dest, "S"), Err(DestinationError::PrivateTemp(dest.into())), "{dest}");
        }
        assert!(subscribe_target("/topic/$temp", "S").is_ok(), "an ordinary topic");
        for dest in ["/temp-queue/a/+", "/temp-queue/#", "/temp-queue/a\0"] {
            assert!(send_topic(dest, "S").is_err() && subscribe_target(dest, "S").is_err(), "{dest}");
        }
        assert_eq!(send_topic("/temp-queue/", "S"), Err(DestinationError::Empty("/temp-queue/".into())));
        // reply-to is rewritten to the private topic and shown to repliers as a topic.
        assert_eq!(reply_to_canonical("/temp-queue/r1", "S"), "$temp/S/r1");
        assert_eq!(reply_to_stomp("$temp/S/r1"), "/topic/$temp/S/r1");
        assert_eq!(reply_to_canonical("/topic/$temp/S/r1", "X"), "$temp/S/r1");
    }

    #[test]
    fn unknown_prefixes() {
        for dest in ["/exchange/x", "/amq/queue/x", "topic/a", "/topic", "/a", "", "/TOPIC/a"] {
            assert_eq!(Destination::parse(dest), Err(DestinationError::Unknown(dest.into())), "{dest}");
        }
    }

    #[test]
    fn reply_to_round_trips() {
        for (stomp, canonical) in [("/topic/a/b", "a/b"), ("/topic/$temp/S/r", "$temp/S/r"), ("/queue/q", "$queue/q")] {
            assert_eq!(reply_to_canonical(stomp, "S"), canonical);
            assert_eq!(reply_to_stomp(canonical), stomp);
        }
        // Unknown STOMP names are kept verbatim on the way in.
        assert_eq!(reply_to_canonical("/exchange/x", "S"), "/exchange/x");
        // An MQTT response topic gains /topic/.
        assert_eq!(reply_to_stomp("resp/1"), "/topic/resp/1");
        // An MQTT response topic that looks like a STOMP queue is a topic like any other.
        assert_eq!(reply_to_stomp("/queue/q"), "/topic//queue/q");
        assert_eq!(reply_to_canonical("/topic//queue/q", "S"), "/queue/q");
        assert_eq!(reply_to_canonical("/topic/$queue/q", "S"), "$queue/q");
    }
}
