//! Deliveries as MESSAGE frames (STOMP 1.2 "MESSAGE").
//!
//! Headers, in order: `subscription` (the client's id), `message-id` (the broker's message
//! id), `destination` (`/topic/<topic>`, `/queue/<name>` for a message published into a
//! named queue: topic `$queue/<name>`, or `/temp-queue/<name>` for a reply to the session's
//! temporary queue), `ack` (1.2, on `client` and `client-individual`
//! subscriptions: the id to ACK with), `persistent:true` for QoS ≥ 1 messages, `expires`
//! (ms since the Unix epoch) for a message that expires,
//! `redelivered:true` and `redelivery-count:<n>` for a message delivered before (STOMP has no
//! standard header for this; RabbitMQ sends `redelivered`), `content-type`, `reply-to`,
//! `correlation-id` (only if the correlation data is UTF-8), then the user properties,
//! escaped per version, and `content-length`. User properties whose names the session writes
//! itself are left out, so they cannot shadow the real headers.
//!
//! A delivery from a durable queue ([`Delivery::durable`]) on a `client` or
//! `client-individual` subscription keeps its store entry with its unacked record, for the
//! ACK or NACK; on an `auto` subscription the driver has already deleted the entry.
//!
//! A message that has expired by the time it is delivered is not sent. If it came from a
//! durable queue on a `client` or `client-individual` subscription, its store entry is
//! acknowledged, so that it leaves the queue (the `auto` entry is deleted by the driver).

use std::time::Instant;

use diglot_core::{Action, Delivery, Output, Qos};

use super::subs::{AckMode, Source};
use super::{expiry, Phase, Session};
use crate::codec::FrameWriter;
use crate::destination::{self, QUEUE_PREFIX, TEMP_QUEUE_PREFIX, TOPIC_PREFIX};
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
        let ack = self.subs.track(d.sub, msg.id, d.durable);
        let Some(sub) = self.subs.get(d.sub) else {
            // Unsubscribed while the delivery sat in the outbox.
            tracing::trace!(conn = self.info.id, sub = d.sub, "delivery for a removed subscription dropped");
            return;
        };
        out.set_prefer_text(true);
        let mut w = FrameWriter::begin(out.buf(), Command::Message, version);
        w.header("subscription", &sub.id);
        w.header_u64("message-id", msg.id);
        match (&sub.source, destination::queue_name(msg.topic.as_str())) {
            (Source::Temp { name, .. }, _) => w.header_concat("destination", &[TEMP_QUEUE_PREFIX, name]),
            (_, Some(name)) => w.header_concat("destination", &[QUEUE_PREFIX, name]),
            (_, None) => w.header_concat("destination", &[TOPIC_PREFIX, msg.topic.as_str()]),
        };
        if let (Some(ack), Version::V1_2) = (ack, version) {
            w.header_u64("ack", ack);
        }
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
                w.header("reply-to", &destination::reply_to_stomp(rt));
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
        out.end_frame();
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
