//! Deliveries as MESSAGE frames (STOMP 1.2 "MESSAGE").
//!
//! Headers, in order: `subscription` (the client's id), `message-id` (the broker's message
//! id), `ack` (1.2, on `client` and `client-individual` subscriptions: the id to ACK with),
//! `destination` (`/topic/<topic>`, `/queue/<name>` for a message published into a
//! named queue: topic `$queue/<name>`, or `/temp-queue/<name>` for a reply to the session's
//! temporary queue), `persistent:true` for QoS ≥ 1 messages, `expires`
//! (ms since the Unix epoch) for a message that expires,
//! `redelivered:true` and `redelivery-count:<n>` for a message delivered before (STOMP has no
//! standard header for this; RabbitMQ sends `redelivered`), `content-type`, `reply-to`,
//! `correlation-id` (only if the correlation data is UTF-8), then the user properties,
//! escaped per version, and `content-length`. User properties whose names the session writes
//! itself are left out, so they cannot shadow the real headers.
//!
//! Encoded once: those three headers are this subscription's; everything after them (from
//! `destination` to the body's NUL) depends on the message alone, so when a message goes to
//! several connections it is encoded once per STOMP version and kept with the message
//! ([`diglot_core::Encodings`]): as the whole frame of the first subscription it went to,
//! without `ack`, behind its WebSocket frame header. A subscription with the same id and no
//! `ack` header copies that frame whole (subscription ids repeat across connections: every
//! stompjs client calls its first subscription `sub-0`), with its header over a WebSocket
//! without compression ([`Output::push_ws_framed`]); any other copies the part after the first
//! two headers behind its own. Not shared: a `/temp-queue/` destination, a redelivery, and an
//! `expires` computed from the clock.
//!
//! A delivery from a durable queue ([`Delivery::durable`]) on a `client` or
//! `client-individual` subscription keeps its store entry with its unacked record, for the
//! ACK or NACK; on an `auto` subscription the driver has already deleted the entry.
//!
//! A message that has expired by the time it is delivered is not sent. If it came from a
//! durable queue on a `client` or `client-individual` subscription, its store entry is
//! acknowledged, so that it leaves the queue (the `auto` entry is deleted by the driver).

use std::time::Instant;

use bytes::BytesMut;
use diglot_core::{ws_header_len_of, Action, Delivery, Output, Qos, WireSlot, WsFramed};

use super::subs::{AckMode, Source, Sub};
use super::{expiry, Phase, Session};
use crate::codec::FrameWriter;
use crate::destination::{self, Separator, QUEUE_PREFIX, TEMP_QUEUE_PREFIX, TOPIC_PREFIX};
use crate::frame::Command;
use crate::version::Version;

/// Header names a user property may not take on a MESSAGE.
const RESERVED: [&str; 14] = [
    "subscription",
    "message-id",
    "destination",
    "ack",
    "content-length",
    "content-type",
    "reply-to",
    "correlation-id",
    "persistent",
    "receipt",
    "transaction",
    "redelivered",
    "redelivery-count",
    "expires",
];

impl Session {
    /// Writes `d` as one MESSAGE frame and tracks it if the subscription needs an ACK.
    pub(super) fn deliver(&mut self, d: &Delivery, now: Instant, out: &mut Output) {
        let Some(version) = self.version.filter(|_| self.phase == Phase::Connected) else { return };
        let msg = &d.msg;
        if msg.is_expired(now) {
            self.drop_expired(d, now);
            return;
        }
        let Some((ack, sub)) = self.subs.deliver(d.sub, msg.id, d.durable) else {
            // Unsubscribed while the delivery sat in the outbox.
            tracing::trace!(conn = self.info.id, sub = d.sub, "delivery for a removed subscription dropped");
            return;
        };
        out.set_prefer_text(true);
        let temp = match &sub.source {
            Source::Temp { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let slot = match version {
            Version::V1_0 => WireSlot::Stomp10,
            Version::V1_1 => WireSlot::Stomp11,
            Version::V1_2 => WireSlot::Stomp12,
        };
        let ack = ack.filter(|_| version == Version::V1_2);
        // Broker-wide, so every subscriber of a message shares one encoding of its name.
        let sep = self.config.topic_separator;
        // The frame after the per-subscription headers is the same for every subscriber of
        // this version, unless it names this session's temporary queue, flags a redelivery,
        // or carries an `expires` computed from the clock: then it is written here.
        let fixed_expiry = msg.expires_at.is_none() || msg.expires_unix_ms.is_some();
        if temp.is_none() && !d.is_redelivery() && fixed_expiry && d.shares(slot) {
            let framed = msg.encoded.get_or_encode(slot, || {
                // A MESSAGE's headers take about 96 bytes besides the topic.
                let mut framed = WsFramed::with_capacity(msg.payload.len() + msg.topic.as_str().len() + 96);
                let w = message_head(framed.buf(), version, sub, msg.id, None);
                write_tail(w, d, None, now, sep);
                // The message's encodings exist by now, so the check is kept for the others.
                framed.finish(msg.encoded.is_utf8(&msg.payload))
            });
            let whole = framed.get(ws_header_len_of(framed)..).unwrap_or_default();
            if ack.is_none() && sub.plain_id && is_for(whole, sub) {
                // Subscribers that gave their subscriptions the same id (every stompjs client
                // calls its first one `sub-0`) share the whole frame, and its WebSocket header.
                out.push_ws_framed(framed, msg.encoded.is_utf8(&msg.payload));
                return;
            }
            if let Some(tail) = tail_start(whole).and_then(|at| whole.get(at..)) {
                // About as long as the shared frame (its own id and `ack` line aside).
                message_head(out.buf_sized(whole.len()), version, sub, msg.id, ack);
                out.buf().extend_from_slice(tail);
            } else {
                write_tail(message_head(out.buf(), version, sub, msg.id, ack), d, None, now, sep);
            }
        } else {
            write_tail(message_head(out.buf(), version, sub, msg.id, ack), d, temp, now, sep);
        }
        // Headers are text, so a MESSAGE is valid UTF-8 exactly when its body is.
        if msg.encoded.is_utf8(&msg.payload) {
            out.end_utf8_frame();
        } else {
            out.end_frame();
        }
    }

    /// Skips an expired delivery; a durable one that the client would have had to acknowledge
    /// is acknowledged for it at the next opportunity.
    fn drop_expired(&mut self, d: &Delivery, now: Instant) {
        tracing::trace!(conn = self.info.id, sub = d.sub, msg = d.msg.id, "expired delivery dropped");
        let Some(at) = d.durable else { return };
        if self.subs.get(d.sub).is_some_and(|s| s.ack != AckMode::Auto) {
            self.pending.push(Action::Ack(at));
            self.pending_since.get_or_insert(now);
        }
    }
}

/// Where the per-subscription headers of a MESSAGE end.
const SUBSCRIPTION_AT: usize = "MESSAGE\nsubscription:".len();

/// Begins a MESSAGE with its per-subscription headers: `subscription` (`sub`'s id),
/// `message-id` and, on a STOMP 1.2 `client` or `client-individual` subscription, `ack`.
fn message_head<'a>(
    buf: &'a mut BytesMut,
    version: Version,
    sub: &Sub,
    msg_id: u64,
    ack: Option<u64>,
) -> FrameWriter<'a> {
    let mut w = FrameWriter::begin(buf, Command::Message, version);
    if sub.plain_id {
        w.plain_header("subscription", &sub.id);
    } else {
        w.known_header("subscription", &sub.id);
    }
    w.header_u64("message-id", msg_id);
    if let Some(ack) = ack {
        w.header_u64("ack", ack);
    }
    w
}

/// Whether a whole MESSAGE (as [`message_head`] began it, without `ack`) is for a subscription
/// with `sub`'s id, an id with nothing to escape.
fn is_for(whole: &[u8], sub: &Sub) -> bool {
    if let Some(line) = sub.id_line {
        // One comparison of a word, for ids like stompjs's `sub-0` (once per delivery).
        return whole.get(SUBSCRIPTION_AT..).is_some_and(|at| line.starts(at));
    }
    let id = sub.id.as_bytes();
    let Some(line) = whole.get(SUBSCRIPTION_AT..=SUBSCRIPTION_AT + id.len()) else { return false };
    // Byte by byte: a slice comparison is a call to `memcmp`, once per delivery (2 % of the
    // broker's samples in a STOMP fan-out profile).
    line.last() == Some(&b'\n') && line.iter().zip(id).all(|(a, b)| a == b)
}

/// Where the part of a whole MESSAGE (as [`message_head`] began it, without `ack`) that is
/// the same for every subscriber begins: after the `subscription` and `message-id` lines.
/// Header values hold no raw line feed in any version, so the second line feed after the
/// command line ends them.
fn tail_start(whole: &[u8]) -> Option<usize> {
    let sub_end = SUBSCRIPTION_AT + memchr::memchr(b'\n', whole.get(SUBSCRIPTION_AT..)?)?;
    let id_end = sub_end + 1 + memchr::memchr(b'\n', whole.get(sub_end + 1..)?)?;
    Some(id_end + 1)
}

/// Writes the headers of a MESSAGE after `subscription`, `message-id` and `ack`, then the
/// body: everything that depends on the message alone, and on the temporary queue `temp` if
/// the subscription is on one.
fn write_tail(mut w: FrameWriter<'_>, d: &Delivery, temp: Option<&str>, now: Instant, sep: Separator) {
    let msg = &d.msg;
    match (temp, destination::queue_name(msg.topic.as_str())) {
        (Some(name), _) => w.known_header_after("destination", TEMP_QUEUE_PREFIX, name),
        (_, Some(name)) => w.known_header_after("destination", QUEUE_PREFIX, name),
        (_, None) => {
            w.known_header_after("destination", TOPIC_PREFIX, &destination::topic_name(msg.topic.as_str(), sep))
        }
    };
    if msg.qos != Qos::AtMostOnce {
        w.header("persistent", "true");
    }
    if let Some(at) = msg.expires_at {
        let value = msg.expires_unix_ms.unwrap_or_else(|| expiry::header(at, now, expiry::unix_ms_now()));
        w.header_u64("expires", value);
    }
    if d.is_redelivery() {
        w.header("redelivered", "true");
        w.header_u64("redelivery-count", u64::from(d.redeliveries));
    }
    if let Some(p) = &msg.props {
        if let Some(ct) = &p.content_type {
            w.header("content-type", ct);
        }
        if let Some(rt) = &p.response_topic {
            w.header("reply-to", &destination::reply_to_stomp(rt, sep));
        }
        if let Some(cid) = p.correlation_data.as_ref().and_then(|c| std::str::from_utf8(c).ok()) {
            w.header("correlation-id", cid);
        }
        for (name, value) in &p.user {
            if !name.is_empty() && !RESERVED.contains(&name.as_str()) {
                w.header(name, value);
            }
        }
    }
    w.finish(&msg.payload, true);
}

#[cfg(test)]
mod tests {
    use super::super::subs::{AckMode, Source, Subscriptions};
    use super::{is_for, tail_start};

    #[test]
    fn a_shared_frame_is_for_exactly_the_id_it_was_written_for() {
        let ids = ["", "0", "sub-0", "sub-1", "sub-10", "1234567", "12345678", "123456789", "long-subscription-id"];
        let mut subs = Subscriptions::new(64);
        for written in ids {
            let whole = format!("MESSAGE\nsubscription:{written}\nmessage-id:7\ndestination:/topic/t\n\nbody\0");
            for id in ids {
                let sub = subs.add(id, Source::Queue("q".into()), AckMode::Auto).unwrap();
                assert_eq!(is_for(whole.as_bytes(), subs.get(sub).unwrap()), id == written, "{id:?} in {whole:?}");
                subs.remove(id);
            }
        }
        // A frame cut short is for no one.
        let sub = subs.add("sub-0", Source::Queue("q".into()), AckMode::Auto).unwrap();
        assert!(!is_for(b"MESSAGE\nsubscription:sub-0", subs.get(sub).unwrap()));
        assert!(!is_for(b"MESSAGE\nsubscription:sub-", subs.get(sub).unwrap()));
        let whole = b"MESSAGE\nsubscription:sub-1\nmessage-id:7\ndestination:/topic/t\n\nx\0";
        assert_eq!(tail_start(whole).map(|at| &whole[at..]), Some(&b"destination:/topic/t\n\nx\0"[..]));
    }
}
