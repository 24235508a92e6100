//! Deliveries as MESSAGE frames (STOMP 1.2 "MESSAGE").
//!
//! Headers, in order: `subscription` (the client's id), `message-id` (the broker's message
//! id), `destination` (`/topic/<topic>`, or `/queue/<name>` for a message published into a
//! named queue: topic `$queue/<name>`), `ack` (1.2, on `client` and `client-individual`
//! subscriptions: the id to ACK with), `persistent:true` for QoS ≥ 1 messages,
//! `redelivered:true` and `redelivery-count:<n>` for a message delivered before (STOMP has no
//! standard header for this; RabbitMQ sends `redelivered`), `content-type`, `reply-to`,
//! `correlation-id` (only if the correlation data is UTF-8), then the user properties,
//! escaped per version, and `content-length`. User properties whose names the session writes
//! itself are left out, so they cannot shadow the real headers.
//!
//! A delivery from a durable queue ([`Delivery::durable`]) on a `client` or
//! `client-individual` subscription keeps its store entry with its unacked record, for the
//! ACK or NACK; on an `auto` subscription the driver has already deleted the entry.

use diglot_core::{Delivery, Output, Qos};

use super::{Phase, Session};
use crate::codec::FrameWriter;
use crate::destination::{self, QUEUE_PREFIX, TOPIC_PREFIX};
use crate::frame::Command;
use crate::version::Version;

/// Header names a user property may not take on a MESSAGE.
const RESERVED: [&str; 13] = [
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
];

impl Session {
    /// Writes `d` as one MESSAGE frame and tracks it if the subscription needs an ACK.
    pub(super) fn deliver(&mut self, d: &Delivery, out: &mut Output) {
        let Some(version) = self.version.filter(|_| self.phase == Phase::Connected) else { return };
        let msg = &d.msg;
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
        match destination::queue_name(msg.topic.as_str()) {
            Some(name) => w.header_concat("destination", &[QUEUE_PREFIX, name]),
            None => w.header_concat("destination", &[TOPIC_PREFIX, msg.topic.as_str()]),
        };
        if let (Some(ack), Version::V1_2) = (ack, version) {
            w.header_u64("ack", ack);
        }
        if msg.qos != Qos::AtMostOnce {
            w.header("persistent", "true");
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
}
