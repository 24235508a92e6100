//! STOMP destinations mapped onto Diglot's canonical topic namespace.
//!
//! Rules (ARCHITECTURE.md, "Protocol mapping"), with the default [`Separator::Slash`]
//! (`stomp.topic_separator = "/"`):
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
//! # RabbitMQ-style names: [`Separator::Dot`] (`stomp.topic_separator = "."`)
//!
//! Only the text after `/topic/` changes; it is read and written by the `dotted` module,
//! whose table lists every escape:
//!
//! - Levels are separated by `.`: `/topic/a.b.c` is `a/b/c`, `/topic/.x` is `/x`,
//!   `/topic/a..b` is `a//b`, `/topic/$SYS.broker.uptime` is `$SYS/broker/uptime`.
//! - The wildcards are `*` (one whole level, MQTT `+`) and `#` (the whole last level):
//!   SUBSCRIBE `/topic/a.*.c` is the filter `a/+/c`, `/topic/a.#` is `a/#`. `/topic/a*` and
//!   `/topic/a.#.b` are misplaced wildcards; SEND `/topic/a.*` is a name with a wildcard.
//! - Lossless: `%`, `.` and `*` inside a level are written `%25`, `%2E`, `%2A`, so MQTT
//!   `fw/v1.2` is `/topic/fw.v1%2E2`, `a*b/50%` is `/topic/a%2Ab.50%25`, and every valid MQTT
//!   topic survives MQTT → STOMP → MQTT unchanged. Spaces, `$`, `:` and any UTF-8 are
//!   written as they are.
//! - Refused ([`DestinationError::Dotted`]): a `%` that starts none of the escapes
//!   (`/topic/50%`, `/topic/a%41`), a `/` (`/topic/a/b`: no level can contain one), a `+`
//!   (`/topic/a.+`: the wildcard is `*`), and `%2B` / `%23` (a literal `+` or `#`) except in
//!   `reply-to`.
//! - The queue and temporary-queue spaces are read from the canonical text: `/topic/$queue.jobs`
//!   is `/queue/jobs`, and `/topic/$temp.<session>.<name>` is another session's temporary
//!   queue (a replier SENDs there; nobody may SUBSCRIBE). Queue and temporary queue names are
//!   never split or escaped, as in RabbitMQ: `/queue/a.b` is `$queue/a.b` under either
//!   separator, and a MESSAGE from it says `destination:/queue/a.b`.
//! - `reply-to` follows the same rules both ways: `reply-to:/topic/resp.1` is the response topic
//!   `resp/1`, an MQTT response topic `resp/v1.2` is shown as `reply-to:/topic/resp.v1%2E2`, and
//!   a `$temp` reply topic as `/topic/$temp.<session>.<name>`. A `/topic/` reply-to that cannot
//!   be read is an error (ERROR `invalid reply-to`), not kept verbatim.
//!
//! The separator is broker-wide: a message's encoded MESSAGE tail is shared by every STOMP
//! subscriber of one version, so every session of a broker must use the same one.

mod dotted;

use std::borrow::Cow;
use std::fmt;

use diglot_core::{queue_topic, Filter, Topic, TopicError};

pub use self::dotted::DottedError;
use self::dotted::Read;

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

/// How the name after `/topic/` separates its levels (`[stomp] topic_separator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Separator {
    /// `"/"`, the default: the name is the canonical topic, byte for byte.
    #[default]
    Slash,
    /// `"."`: RabbitMQ-style names, `*` and `#` as wildcards, escaped reversibly (see the
    /// module's rules).
    Dot,
}

impl Separator {
    /// The separator that `value` (the configuration's text) names: `"/"` or `"."`.
    pub fn parse(value: &str) -> Option<Separator> {
        match value {
            "/" => Some(Separator::Slash),
            "." => Some(Separator::Dot),
            _ => None,
        }
    }

    /// The configuration's text for this separator.
    pub fn as_str(self) -> &'static str {
        match self {
            Separator::Slash => "/",
            Separator::Dot => ".",
        }
    }
}

impl fmt::Display for Separator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// The name of a `/temp-queue/<name>` destination (`None` for any other destination, and for
/// an empty name). Temporary queue names are never split, so this needs no separator.
pub fn temp_queue_name(dest: &str) -> Option<&str> {
    dest.strip_prefix(TEMP_QUEUE_PREFIX).filter(|n| !n.is_empty())
}

/// A parsed STOMP destination, borrowing its name from the header where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/topic/<name>`: the canonical topic text (not yet validated), read with the separator.
    Topic(Cow<'a, str>),
    /// `/queue/<name>`, or a `/topic/` whose canonical text is `$queue/<name>`: the queue's name
    /// (not yet validated).
    Queue(Cow<'a, str>),
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
    /// With [`Separator::Dot`]: the name after `/topic/` cannot be read (a bad escape, a `/`,
    /// a `+`, or a literal `+` or `#`).
    #[error("invalid topic in {dest:?}: {err}")]
    Dotted {
        /// The destination as given.
        dest: String,
        /// What cannot be read.
        err: DottedError,
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
        name: Cow<'a, str>,
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
    /// Recognises the prefix of `dest`, splits off the name, and reads a `/topic/` name with
    /// `sep` into its canonical text.
    pub fn parse(dest: &'a str, sep: Separator) -> Result<Destination<'a>, DestinationError> {
        Destination::parse_as(dest, sep, Read::Destination)
    }

    fn parse_as(dest: &'a str, sep: Separator, what: Read) -> Result<Destination<'a>, DestinationError> {
        let empty = || DestinationError::Empty(dest.to_owned());
        if let Some(n) = dest.strip_prefix(TOPIC_PREFIX) {
            if n.is_empty() {
                return Err(empty());
            }
            let canonical = match sep {
                Separator::Slash => Cow::Borrowed(n),
                Separator::Dot => Cow::Owned(
                    dotted::read(n, what).map_err(|err| DestinationError::Dotted { dest: dest.to_owned(), err })?,
                ),
            };
            return match strip_queue_prefix(canonical) {
                Ok(q) if q.is_empty() => Err(empty()),
                Ok(q) => Ok(Destination::Queue(q)),
                Err(t) => Ok(Destination::Topic(t)),
            };
        }
        let (kind, name): (fn(&'a str) -> Destination<'a>, &str) = if let Some(n) = dest.strip_prefix(QUEUE_PREFIX) {
            (|n| Destination::Queue(Cow::Borrowed(n)), n)
        } else if let Some(n) = dest.strip_prefix(TEMP_QUEUE_PREFIX) {
            (Destination::TempQueue, n)
        } else {
            return Err(DestinationError::Unknown(dest.to_owned()));
        };
        if name.is_empty() {
            return Err(empty());
        }
        Ok(kind(name))
    }
}

/// The queue name of a canonical text `$queue/<name>` (`Ok`, possibly empty), or the text
/// itself (`Err`), without copying what was borrowed.
fn strip_queue_prefix(canonical: Cow<'_, str>) -> Result<Cow<'_, str>, Cow<'_, str>> {
    if !canonical.starts_with(QUEUE_TOPIC_PREFIX) {
        return Err(canonical);
    }
    Ok(match canonical {
        Cow::Borrowed(s) => Cow::Borrowed(&s[QUEUE_TOPIC_PREFIX.len()..]),
        Cow::Owned(mut s) => {
            s.drain(..QUEUE_TOPIC_PREFIX.len());
            Cow::Owned(s)
        }
    })
}

fn topic_err(dest: &str) -> impl FnOnce(TopicError) -> DestinationError + '_ {
    move |err| DestinationError::Topic { dest: dest.to_owned(), err }
}

/// The topic a SEND to `dest` publishes to: the topic itself, `$queue/<name>` for a queue
/// (see [`queue_name`]), or `$temp/<session>/<name>` for the sending session's own temporary
/// queue. A SEND to `/topic/$temp/...` is allowed: that is how a STOMP replier answers.
pub fn send_topic(dest: &str, session: &str, sep: Separator) -> Result<Topic, DestinationError> {
    match Destination::parse(dest, sep)? {
        Destination::Topic(t) => Topic::new(&t).map_err(topic_err(dest)),
        Destination::Queue(name) => Topic::new(&queue_topic(&name)).map_err(topic_err(dest)),
        Destination::TempQueue(name) => Topic::new(&temp_topic(session, name)).map_err(topic_err(dest)),
    }
}

/// What a SUBSCRIBE to `dest` by the session with token `session` attaches to.
pub fn subscribe_target<'a>(dest: &'a str, session: &str, sep: Separator) -> Result<SubscribeTo<'a>, DestinationError> {
    match Destination::parse(dest, sep)? {
        Destination::Topic(t) if is_temp(&t) => Err(DestinationError::PrivateTemp(dest.to_owned())),
        Destination::Topic(t) => Filter::new(&t).map(SubscribeTo::Topic).map_err(topic_err(dest)),
        Destination::Queue(name) => {
            // A valid topic name (no wildcards) is a valid filter that matches only itself.
            let topic = queue_topic(&name);
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
pub fn subscribe_filter(dest: &str, session: &str, sep: Separator) -> Result<Filter, DestinationError> {
    Ok(match subscribe_target(dest, session, sep)? {
        SubscribeTo::Topic(f) | SubscribeTo::Queue { filter: f, .. } | SubscribeTo::Temp { filter: f, .. } => f,
    })
}

/// The queue name of a canonical topic that publishes into a named queue: `$queue/jobs` →
/// `jobs`. `None` for any other topic (including `$queue/` with an empty name).
pub fn queue_name(topic: &str) -> Option<&str> {
    topic.strip_prefix(QUEUE_TOPIC_PREFIX).filter(|n| !n.is_empty())
}

/// The text after `/topic/` for the canonical `topic`: the topic itself with
/// [`Separator::Slash`] (borrowed: nothing is scanned or copied), its dotted form with
/// [`Separator::Dot`].
pub fn topic_name(topic: &str, sep: Separator) -> Cow<'_, str> {
    match sep {
        Separator::Slash => Cow::Borrowed(topic),
        Separator::Dot => {
            let mut s = String::new();
            dotted::write(topic, &mut s);
            Cow::Owned(s)
        }
    }
}

/// The STOMP destination of a canonical topic: `a/b` → `/topic/a/b` (`/topic/a.b` with
/// [`Separator::Dot`]), `$queue/q` → `/queue/q` (queue names are never split).
pub fn to_stomp(topic: &str, sep: Separator) -> String {
    let mut s = String::with_capacity(TOPIC_PREFIX.len() + topic.len());
    match (queue_name(topic), sep) {
        (Some(name), _) => {
            s.push_str(QUEUE_PREFIX);
            s.push_str(name);
        }
        (None, Separator::Slash) => {
            s.push_str(TOPIC_PREFIX);
            s.push_str(topic);
        }
        (None, Separator::Dot) => {
            s.push_str(TOPIC_PREFIX);
            dotted::write(topic, &mut s);
        }
    }
    s
}

/// A SEND's `reply-to` as an MQTT response topic: `/topic/<t>` becomes `<t>` (read with `sep`),
/// `/queue/<q>` becomes `$queue/<q>` (so an MQTT replier publishes into the queue), and
/// `/temp-queue/<x>` becomes the sending session's private `$temp/<session>/<x>` (RabbitMQ
/// rewrites it the same way, to a `/reply-queue/`). Any other value (something this broker
/// does not know) is kept verbatim, so it still reaches a STOMP replier unchanged. With
/// [`Separator::Dot`], a `/topic/` name that cannot be read is an error; with
/// [`Separator::Slash`] this never fails.
pub fn reply_to_canonical(reply_to: &str, session: &str, sep: Separator) -> Result<String, DestinationError> {
    match Destination::parse_as(reply_to, sep, Read::ReplyTo) {
        Ok(Destination::Topic(t)) => Ok(t.into_owned()),
        Ok(Destination::Queue(q)) => Ok(queue_topic(&q)),
        Ok(Destination::TempQueue(x)) => Ok(temp_topic(session, x)),
        Err(e @ DestinationError::Dotted { .. }) => Err(e),
        Err(_) => Ok(reply_to.to_owned()),
    }
}

/// An MQTT response topic as a MESSAGE's `reply-to`: the reverse of [`reply_to_canonical`]
/// through [`to_stomp`]. A temporary queue's `$temp/<session>/<x>` is shown as
/// `/topic/$temp/<session>/<x>` (`/topic/$temp.<session>.<x>` with [`Separator::Dot`]), which
/// a STOMP replier can SEND to. (A `reply-to` this broker did not know and kept verbatim, such
/// as `/exchange/x`, comes back as `/topic//exchange/x`, or `/topic/.exchange.x`: it is a topic
/// like any other.)
pub fn reply_to_stomp(response_topic: &str, sep: Separator) -> String {
    to_stomp(response_topic, sep)
}

#[cfg(test)]
mod tests;
