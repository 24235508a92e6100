//! PUBLISH in both directions and the QoS acknowledgement flows (§4.3).
//!
//! Inbound: QoS 0 is routed; QoS 1 is routed and PUBACKed once the driver reports it done;
//! QoS 2 is routed once per packet id and PUBRECed, the id is kept until PUBREL, and a
//! re-sent PUBLISH with that id is answered PUBREC without routing it again (method B of
//! §4.3.3). A publish the broker refuses gets its reason code in MQTT 5 (0x97 for a full
//! durable queue, 0x80 for a store failure) and closes an MQTT 3.x connection, which has no
//! other way to say no [MQTT-3.3.5-2]. Before routing, the topic (after alias resolution) is
//! checked against the connection's permissions (`auth.rs`): a denied publish is not routed,
//! and gets PUBACK/PUBREC 0x87 in MQTT 5 (the QoS 2 exchange ends there), a normal PUBACK or
//! PUBREC (then PUBCOMP) in 3.x, whose other choice would be to close [MQTT-3.3.5-2]; QoS 0
//! is dropped. Otherwise any valid topic name may be published to, `$`-topics included: MQTT
//! only warns clients off `$SYS`, and `$queue/<name>` is how a client publishes straight into
//! a named durable queue (the router does that; the ACL sees it as that topic).
//!
//! RETAIN=1 is routed as `Message::retain`; the driver stores the message as the topic's
//! retained message, or clears it when the payload is empty (§3.3.1.3). MQTT 5 properties:
//! the cross-protocol ones map to `Props`; Message Expiry Interval sets `expires_at`; a Topic
//! Alias with a topic sets up the alias, one with an empty topic uses it (an alias of 0 or
//! above `Config::topic_alias_max` is DISCONNECT 0x94 [MQTT-3.3.2-8] [MQTT-3.3.2-9], an
//! unknown alias with an empty topic, or an empty topic without alias, 0x82); a Subscription
//! Identifier from a client is a protocol error [MQTT-3.3.4-6].
//!
//! Outbound: a delivery goes out at its QoS, capped by its subscription's granted QoS
//! [MQTT-3.8.4-8]. QoS 1 and 2 share the inflight window (the client's Receive Maximum)
//! until the flow ends: PUBACK for QoS 1; PUBREC → PUBREL → PUBCOMP for QoS 2, or a PUBREC
//! with a reason code ≥ 0x80, which ends it at once (§4.3.3). A delivery whose message has
//! expired is dropped; otherwise MQTT 5 deliveries carry the remaining expiry, in whole
//! seconds rounded up so that it never reads 0 before the message expires [MQTT-3.3.2-6].
//! RETAIN is set on a retained message sent because of a new subscription
//! (`Delivery::retained`) [MQTT-3.3.1-8], and otherwise only for a subscription with Retain
//! As Published and a message published with RETAIN [MQTT-3.3.1-9] [MQTT-3.3.1-12]. MQTT 5
//! deliveries carry their subscription's Subscription Identifier(s) [MQTT-3.3.4-3], and use
//! topic aliases when the client allows them (§3.3.2.3.4): the first `min(client's Topic
//! Alias Maximum, Config::topic_alias_max)` topics delivered get an alias each, sent once
//! with the topic and afterwards alone; other topics go out in full.
//!
//! Durable deliveries (`Delivery::durable` set: a session queue or a `$queue/` consumer)
//! always go out at QoS ≥ 1, because only the client's acknowledgement may remove them from
//! their queue, except for a `$queue/` consumer granted QoS 0, whose queue deletes entries
//! as it hands them over (`auto_ack`). The packet id is derived from the queue position when
//! free ([`crate::inflight::durable_id`]), so a redelivery after a reconnect reuses the id
//! [MQTT-4.4.0-1]; a redelivery has DUP=1 [MQTT-3.3.1-1] and, in MQTT 5, the user property
//! `redelivery-count`. `Action::Ack` is pushed when the flow ends: on PUBACK (QoS 1), on
//! PUBCOMP (QoS 2) or on a refusing PUBREC. Acknowledging QoS 2 only at PUBCOMP keeps the
//! entry in its queue until the whole exchange is over. If the connection drops between
//! PUBREC and PUBCOMP, the session keeps the entry's packet id (`Adapter::qos2_flows`), and
//! when its queue redelivers the entry to the next connection the PUBREL is sent again in its
//! place, not the PUBLISH [MQTT-4.4.0-1]. An expired durable delivery is acknowledged without
//! being sent, so it leaves its queue.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use diglot_core::{Action, Delivery, Message, Output, PublishError, Qos, Topic, WireSlot};
use rmqtt_codec::types::{Publish, QoS as WireQos};

use super::subscribe::{SubKind, SubOpts};
use super::{Phase, Session, SESSION_SUB};
use crate::inflight::{durable_id, RecOutcome};
use crate::props;
use crate::reason::{self, code, Violation};

/// The MQTT 5 user property that counts earlier delivery attempts of a redelivered message.
pub(crate) const REDELIVERY_COUNT: &str = "redelivery-count";

/// The token for the driver's `on_publish_done`: the QoS above the 16-bit packet id.
fn token(qos: Qos, id: NonZeroU16) -> u64 {
    (qos as u64) << 16 | u64::from(id.get())
}

/// The QoS and packet id a token was made from.
fn untoken(token: u64) -> Option<(Qos, NonZeroU16)> {
    let qos = Qos::from_u8(u8::try_from(token >> 16).ok()?)?;
    let id = NonZeroU16::new((token & 0xffff) as u16)?;
    Some((qos, id))
}

/// The MQTT 5 Message Expiry Interval left at `now`: whole seconds, rounded up, at least 1.
fn remaining_secs(expires_at: Instant, now: Instant) -> NonZeroU32 {
    let left = expires_at.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    NonZeroU32::new(u32::try_from(secs).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// What a delivery's subscription says about how it goes out.
#[derive(Debug, Default)]
struct Treatment {
    /// The subscription's granted QoS, if known.
    granted: Option<Qos>,
    /// Retain As Published.
    rap: bool,
    /// MQTT 5 Subscription Identifiers to send.
    idents: Vec<NonZeroU32>,
    /// Whether a durable delivery waits for the client's acknowledgement (not `auto_ack`).
    acked: bool,
}

impl Session {
    /// An inbound PUBLISH; `as_sent`: the packet's own bytes, when they are exactly what an
    /// MQTT 3.x subscriber of the message is sent.
    pub(super) fn on_publish(
        &mut self,
        p: Publish,
        as_sent: Option<Bytes>,
        now: Instant,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        match self.check_publish(&p, as_sent, now, out) {
            Ok(Some(msg)) if !self.may_publish(&msg.topic) => self.deny(&msg, p.packet_id, out),
            Ok(Some(msg)) => self.route(msg, p.packet_id, actions),
            Ok(None) => {}
            Err(v) => self.fail(v, out, actions),
        }
    }

    /// Validates a PUBLISH and builds its message; `Ok(None)` when it was answered without
    /// routing (a QoS 2 duplicate, or a refused MQTT 5 payload).
    fn check_publish(
        &mut self,
        p: &Publish,
        as_sent: Option<Bytes>,
        now: Instant,
        out: &mut Output,
    ) -> Result<Option<Message>, Violation> {
        let v5 = self.is_v5();
        let qos = Qos::from_u8(p.qos.value()).unwrap_or(Qos::AtMostOnce);
        // [MQTT-3.3.1-2] DUP must be 0 on QoS 0.
        if qos == Qos::AtMostOnce && p.dup {
            return Err(Violation::Malformed("DUP set on a QoS 0 PUBLISH".into()));
        }
        let (id, properties) = (p.packet_id, p.properties.as_ref().filter(|_| v5));
        // [MQTT-3.3.4-6] A client's PUBLISH carries no Subscription Identifier.
        if properties.is_some_and(|pp| !pp.subscription_ids.is_empty()) {
            return Err(Violation::Protocol("PUBLISH from a client with a Subscription Identifier"));
        }
        let topic = match properties.and_then(|pp| pp.topic_alias) {
            Some(alias) => self.resolve_alias(alias, &p.topic)?,
            // §3.3.2.3.4 An empty topic without a Topic Alias is a protocol error in MQTT 5.
            None if v5 && p.topic.is_empty() => {
                return Err(Violation::Protocol("empty topic name without topic alias"))
            }
            // [MQTT-3.3.2-2] No wildcards in a topic name; [MQTT-4.7.3-1] not empty.
            None => match &self.last_topic {
                Some(last) if last.as_str() == &*p.topic => last.clone(),
                _ => {
                    let topic = Topic::new(&p.topic).map_err(Violation::TopicName)?;
                    self.last_topic = Some(topic.clone());
                    topic
                }
            },
        };
        if let (Qos::ExactlyOnce, Some(id)) = (qos, id) {
            // [MQTT-4.3.3-2] Until PUBREL, a PUBLISH with the same id (DUP or not) is
            // answered PUBREC and not routed again.
            if self.awaiting_rel.contains(&id.get()) {
                if let Some(wire) = self.wire.as_mut() {
                    wire.pubrec(id, code::SUCCESS, None, out);
                }
                return Ok(None);
            }
            // The QoS 2 ids awaiting PUBREL count against the Receive Maximum we announced
            // (§3.3.4). MQTT 3.x has no way to tell a client such a bound, so there the set is
            // bounded only by the 16-bit packet identifier space it is keyed by.
            if self.is_v5() && self.awaiting_rel.len() >= usize::from(self.limits.max_inflight.max(1)) {
                self.limits.breaches.hit(diglot_core::Limit::MaxInflight);
                return Err(Violation::ReceiveMaximum);
            }
        }
        let props = match properties {
            Some(pp) => props::from_publish(pp)?,
            None => None,
        };
        // §3.3.2.3.2 A payload that claims to be UTF-8 and is not: PUBACK/PUBREC 0x99 for
        // QoS > 0, DISCONNECT 0x99 for QoS 0.
        if props.as_ref().is_some_and(|p| p.utf8_payload) && std::str::from_utf8(&p.payload).is_err() {
            return match id {
                Some(id) => {
                    let reason = self.problem("payload is not valid UTF-8");
                    self.ack(qos, id, code::PAYLOAD_FORMAT_INVALID, reason, out);
                    Ok(None)
                }
                None => Err(Violation::PayloadFormat),
            };
        }
        // RETAIN=1 asks the broker to keep (or, with an empty payload, clear) the topic's
        // retained message (§3.3.1.3); the driver does that when it routes the message.
        let mut msg = match as_sent.filter(|w| w.len() > p.payload.len() && qos == Qos::AtMostOnce && !p.retain) {
            Some(wire) => Message::with_wire(topic, wire, p.payload.len(), qos, false, now, WireSlot::Mqtt3Qos0),
            None => Message::received(topic, p.payload.clone(), qos, p.retain, now),
        };
        msg.origin = Some(self.info.id);
        msg.props = props;
        // §3.3.2.3.3 The message expires this many seconds after it reached the broker.
        msg.expires_at =
            properties.and_then(|pp| pp.message_expiry_interval).map(|e| now + Duration::from_secs(e.get().into()));
        Ok(Some(msg))
    }

    /// The topic of a PUBLISH with Topic Alias `alias` (§3.3.2.3.4): a non-empty topic sets
    /// the alias up (or replaces it), an empty one uses it.
    fn resolve_alias(&mut self, alias: NonZeroU16, topic: &str) -> Result<Topic, Violation> {
        // [MQTT-3.3.2-9] Not above the Topic Alias Maximum announced in CONNACK (0 is refused
        // before decoding gets here).
        if alias.get() > self.config.topic_alias_max {
            return Err(Violation::TopicAlias);
        }
        if topic.is_empty() {
            return self
                .aliases_in
                .get(&alias.get())
                .cloned()
                .ok_or(Violation::Protocol("topic alias not set up, and no topic name"));
        }
        let topic = Topic::new(topic).map_err(Violation::TopicName)?;
        self.aliases_in.insert(alias.get(), topic.clone());
        Ok(topic)
    }

    /// Answers a publish the connection's permissions do not allow, without routing it.
    fn deny(&mut self, msg: &Message, id: Option<NonZeroU16>, out: &mut Output) {
        tracing::debug!(
            conn = self.info.id,
            client_id = ?self.client_id,
            topic = msg.topic.as_str(),
            "PUBLISH not authorized; not routed"
        );
        // QoS 0: dropped.
        let Some(id) = id.filter(|_| msg.qos != Qos::AtMostOnce) else { return };
        if self.is_v5() {
            // §3.4.2.1, §3.5.2.1: 0x87 Not authorized. A PUBREC with a failure code ends the
            // QoS 2 exchange, so the id is not kept.
            let reason = self.problem("not authorized");
            self.ack(msg.qos, id, reason::PUBLISH_DENIED_CODE, reason, out);
        } else {
            // [MQTT-3.3.5-2] 3.x cannot say no: acknowledge normally, so that the client does
            // not resend it. A QoS 2 id waits for its PUBREL like any other.
            if msg.qos == Qos::ExactlyOnce {
                self.awaiting_rel.insert(id.get());
            }
            self.ack(msg.qos, id, code::SUCCESS, None, out);
        }
    }

    /// Hands a checked message to the driver; QoS > 0 owes an acknowledgement once routed.
    fn route(&mut self, msg: Message, id: Option<NonZeroU16>, actions: &mut Vec<Action>) {
        let token = match (msg.qos, id) {
            (Qos::AtMostOnce, _) | (_, None) => None,
            (Qos::AtLeastOnce, Some(id)) => Some(token(Qos::AtLeastOnce, id)),
            (Qos::ExactlyOnce, Some(id)) => {
                self.awaiting_rel.insert(id.get());
                Some(token(Qos::ExactlyOnce, id))
            }
        };
        actions.push(Action::Publish { msg, token });
    }

    /// The driver routed (or refused) a QoS > 0 publish: PUBACK (QoS 1) or PUBREC (QoS 2).
    pub(super) fn publish_done(
        &mut self,
        token: u64,
        result: Result<(), PublishError>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        if self.phase != Phase::Connected {
            return;
        }
        let Some((qos, id)) = untoken(token) else { return };
        match result {
            Ok(()) => self.ack(qos, id, code::SUCCESS, None, out),
            Err(e) if self.is_v5() => {
                // A PUBREC with a failure code ends the QoS 2 exchange: no PUBREL follows
                // (§4.3.3), so the id is free again.
                self.awaiting_rel.remove(&id.get());
                let text = e.to_string();
                let reason = self.problem(&text);
                self.ack(qos, id, reason::publish_error_code(&e), reason, out);
            }
            // [MQTT-3.3.5-2] 3.x cannot refuse a publish; it closes the connection.
            Err(e) => self.fail(reason::publish_error_violation(e), out, actions),
        }
    }

    /// PUBACK for QoS 1, PUBREC for QoS 2, with an MQTT 5 reason code and Reason String.
    fn ack(&mut self, qos: Qos, id: NonZeroU16, code: u8, reason: Option<&str>, out: &mut Output) {
        let Some(wire) = self.wire.as_mut() else { return };
        match qos {
            Qos::AtMostOnce => {}
            Qos::AtLeastOnce => wire.puback(id, code, reason, out),
            Qos::ExactlyOnce => wire.pubrec(id, code, reason, out),
        }
    }

    /// PUBREL: the QoS 2 exchange ends with PUBCOMP [MQTT-4.3.3-2]. An unknown id gets
    /// "Packet Identifier not found" in MQTT 5 (§3.7.2.1) and a plain PUBCOMP in 3.x.
    pub(super) fn on_pubrel(&mut self, id: NonZeroU16, out: &mut Output) {
        let known = self.awaiting_rel.remove(&id.get());
        let code = if known || !self.is_v5() { code::SUCCESS } else { code::PACKET_ID_NOT_FOUND };
        if let Some(wire) = self.wire.as_mut() {
            wire.pubcomp(id, code, out);
        }
    }

    /// PUBACK: the QoS 1 flow ends whatever the MQTT 5 reason code (§4.3.2), so a durable
    /// delivery leaves its queue. An id not in flight is ignored (a late duplicate, or an id
    /// from before a reconnect whose entry was redelivered).
    pub(super) fn on_puback(&mut self, id: NonZeroU16, actions: &mut Vec<Action>) {
        if let Some(Some(at)) = self.inflight.puback(id) {
            actions.push(Action::Ack(at));
        }
    }

    /// PUBREC of one of our QoS 2 PUBLISHes: answer PUBREL [MQTT-4.3.3-4] (again, for a
    /// repeated PUBREC), or end the flow if the client refused the message (MQTT 5 reason
    /// ≥ 0x80). An id not in flight gets PUBREL "Packet Identifier not found" in MQTT 5
    /// (§3.6.2.1) and a plain PUBREL in 3.x.
    pub(super) fn on_pubrec(&mut self, id: NonZeroU16, rc: u8, out: &mut Output, actions: &mut Vec<Action>) {
        let v5 = self.is_v5();
        let outcome = self.inflight.pubrec(id, if v5 { rc } else { 0 });
        let Some(wire) = self.wire.as_mut() else { return };
        match outcome {
            RecOutcome::Release => wire.pubrel(id, code::SUCCESS, out),
            RecOutcome::Unknown => wire.pubrel(id, if v5 { code::PACKET_ID_NOT_FOUND } else { code::SUCCESS }, out),
            // The client refused it: like a PUBACK with an error code, that ends the delivery.
            RecOutcome::Refused(durable) => actions.extend(durable.map(Action::Ack)),
        }
    }

    /// PUBCOMP: the QoS 2 flow ended; a durable delivery leaves its queue. An id not waiting
    /// for PUBCOMP is ignored.
    pub(super) fn on_pubcomp(&mut self, id: NonZeroU16, actions: &mut Vec<Action>) {
        if let Some(Some(at)) = self.inflight.pubcomp(id) {
            actions.push(Action::Ack(at));
        }
    }

    /// How a delivery's subscription wants it sent.
    fn treatment(&self, d: &Delivery) -> Treatment {
        if d.sub == SESSION_SUB {
            // The session queue delivers one copy for all of its bindings: at most the highest
            // QoS granted among the matching subscriptions of this connection [MQTT-3.8.4-8],
            // Retain As Published if any of them asked for it, and the Subscription
            // Identifiers of all of them [MQTT-3.3.4-4]. Bindings made by an earlier
            // connection are unknown here, so carry neither, and keep the queue's QoS.
            return self.merged(d, None, |o| o.kind == SubKind::Bound);
        }
        match self.sub_opts.get(&d.sub) {
            // The router merged the connection's overlapping plain subscriptions into this one
            // copy [MQTT-3.3.4-2], so it carries the identifiers of all of them that match
            // [MQTT-3.3.4-4] (those with No Local excepted on the connection's own message) and
            // Retain As Published if any asked for it. A retained message sent for a new
            // subscription is that subscription's alone.
            Some(o) if o.kind == SubKind::Plain && self.plain_shown > 0 && !d.retained => {
                let own = d.msg.origin == Some(self.info.id);
                self.merged(d, Some(o.granted), |m| m.kind == SubKind::Plain && !(own && m.no_local))
            }
            Some(o) => Treatment {
                granted: Some(o.granted),
                rap: o.rap,
                idents: o.ident.into_iter().collect(),
                acked: !matches!(o.kind, SubKind::Queue { auto_ack: true, .. }),
            },
            // A subscription removed while its deliveries were on their way.
            None => Treatment { acked: true, ..Treatment::default() },
        }
    }

    /// The treatment of one copy that stands for every subscription `counts` admits whose
    /// filter matches the delivery's topic: at most `granted`, or else the highest QoS granted
    /// to them (none if none matches), Retain As Published if any of them asked for it, and
    /// the Subscription Identifiers of all of them [MQTT-3.3.4-4].
    fn merged(&self, d: &Delivery, granted: Option<Qos>, counts: impl Fn(&SubOpts) -> bool) -> Treatment {
        let mut t = Treatment { granted, acked: true, ..Treatment::default() };
        let mut highest = None;
        for o in self.sub_opts.values().filter(|o| counts(o) && o.filter.matches(&d.msg.topic)) {
            highest = highest.max(Some(o.granted));
            t.rap |= o.rap;
            t.idents.extend(o.ident);
        }
        t.granted = granted.or(highest);
        t.idents.sort_unstable();
        t.idents.dedup();
        t
    }

    /// Encodes one delivery as a PUBLISH.
    pub(super) fn deliver(&mut self, d: Delivery, now: Instant, out: &mut Output) {
        if self.phase != Phase::Connected {
            // `can_deliver` is false: a driver bug. A durable entry goes back to its queue.
            tracing::debug!(conn = self.info.id, "delivery to a session that is not connected dropped");
            self.give_back(&d, now);
            return;
        }
        if self.resend_pubrel(&d, out) {
            return;
        }
        let t = self.treatment(&d);
        // A `$queue/` consumer granted QoS 0 is `auto_ack`: its queue deletes the entry on
        // handover, so nothing waits for an acknowledgement.
        let durable = d.durable.filter(|_| t.acked);
        // §3.3.2.3.3 An expired message is not sent, unless it went out before: its onward
        // delivery has begun, and an unacknowledged PUBLISH is sent again [MQTT-3.3.2-5]
        // [MQTT-4.4.0-1], with a Message Expiry Interval of 1. A durable one not sent is
        // acknowledged so that it leaves its queue.
        if d.msg.is_expired(now) && !d.is_redelivery() {
            if let Some(at) = durable {
                self.defer(Action::Ack(at), now);
            }
            return;
        }
        // [MQTT-3.8.4-8] At most the granted QoS. A durable delivery is removed from its queue
        // only by an acknowledgement, so it never goes out at QoS 0.
        let mut qos = t.granted.map_or(d.qos, |g| d.qos.min(g));
        if durable.is_some() {
            qos = qos.max(Qos::AtLeastOnce);
        }
        let packet_id = match qos {
            Qos::AtMostOnce => None,
            _ => {
                let preferred = durable.map(|r| durable_id(r.seq));
                match self.inflight.allocate(preferred, durable, qos == Qos::ExactlyOnce) {
                    Some(id) => Some(id),
                    None => {
                        // The driver checks `can_deliver` first; this is a driver bug, not a client's.
                        tracing::warn!(conn = self.info.id, "delivery beyond the inflight window dropped");
                        self.give_back(&d, now);
                        return;
                    }
                }
            }
        };
        let v5 = self.is_v5();
        // [MQTT-3.3.1-8] [MQTT-3.3.1-9] [MQTT-3.3.1-12] RETAIN, as below.
        let retain = d.retained || (t.rap && d.msg.retain);
        if packet_id.is_none() && self.shares_encoding(&d, &t) {
            let Some(wire) = self.wire.as_mut() else { return };
            if !wire.publish_shared(&d.msg, retain, out) {
                tracing::debug!(conn = self.info.id, "PUBLISH larger than the client's Maximum Packet Size discarded");
            }
            return;
        }
        let mut topic = ByteString::from(d.msg.topic.as_str());
        let mut new_alias = None;
        let properties = v5.then(|| {
            let mut p = props::to_publish(d.msg.props.as_deref());
            if d.is_redelivery() {
                p.user_properties.push((REDELIVERY_COUNT.into(), d.redeliveries.to_string().into()));
            }
            // [MQTT-3.3.2-6] The expiry left.
            p.message_expiry_interval = d.msg.expires_at.map(|e| remaining_secs(e, now));
            p.subscription_ids = t.idents;
            match self.aliases_out.get(&d.msg.topic) {
                Some(&alias) => {
                    p.topic_alias = Some(alias);
                    topic = ByteString::new();
                }
                None if self.aliases_out.len() < usize::from(self.aliases_out_max) => {
                    let alias = u16::try_from(self.aliases_out.len() + 1).ok().and_then(NonZeroU16::new);
                    p.topic_alias = alias;
                    new_alias = alias;
                }
                None => {}
            }
            p
        });
        let publish = Publish {
            // [MQTT-3.3.1-1] DUP=1 on a re-delivery attempt; never on QoS 0 [MQTT-3.3.1-2].
            dup: packet_id.is_some() && d.is_redelivery(),
            // [MQTT-3.3.1-8] A retained message sent for a new subscription has RETAIN=1;
            // otherwise RETAIN is 0 [MQTT-3.3.1-9] unless Retain As Published keeps the
            // publisher's flag [MQTT-3.3.1-12].
            retain,
            qos: match (packet_id, qos) {
                (None, _) => WireQos::AtMostOnce,
                (Some(_), Qos::ExactlyOnce) => WireQos::ExactlyOnce,
                (Some(_), _) => WireQos::AtLeastOnce,
            },
            topic,
            packet_id,
            payload: d.msg.payload.clone(),
            properties,
        };
        let Some(wire) = self.wire.as_mut() else { return };
        if wire.publish(publish, out) {
            // The client knows the alias from now on.
            if let Some(alias) = new_alias {
                self.aliases_out.insert(d.msg.topic.clone(), alias);
            }
        } else {
            // [MQTT-3.1.2-25] Too large for the client: discarded as if it had been sent.
            // A durable entry cannot wait for an acknowledgement that will never come: it goes
            // to the dead-letter queue rather than block the window or vanish silently.
            if let Some(id) = packet_id {
                self.inflight.release(id);
            }
            if let Some(at) = durable {
                self.defer(Action::Nack { at, requeue: false }, now);
            }
            tracing::debug!(conn = self.info.id, "PUBLISH larger than the client's Maximum Packet Size discarded");
        }
    }

    /// A session-queue entry whose PUBREL an earlier connection sent goes out as that PUBREL
    /// again, with its packet id, and waits for PUBCOMP [MQTT-4.4.0-1]: the client delivered
    /// the message when it got the PUBLISH and may have released the id since, so a PUBLISH
    /// would be a new message to it. Before the expiry check: the client has the message.
    /// Returns whether it did; if the id is taken by now, the PUBLISH goes again instead.
    fn resend_pubrel(&mut self, d: &Delivery, out: &mut Output) -> bool {
        let Some(at) = d.durable.filter(|_| d.sub == SESSION_SUB) else { return false };
        self.session_queue_id = Some(at.queue);
        if self.released_before.is_empty() {
            return false;
        }
        // The session queue has one consumer and redelivers in order, so an entry before this
        // one that has not come is gone (expired, dead-lettered, purged): forget it.
        let inflight = &mut self.inflight;
        self.released_before.retain(|&seq, &mut id| {
            if seq < at.seq {
                inflight.unreserve(id);
            }
            seq >= at.seq
        });
        let Some(id) = self.released_before.remove(&at.seq).and_then(NonZeroU16::new) else { return false };
        self.inflight.unreserve(id.get());
        if !self.inflight.resume_released(id, Some(at)) {
            tracing::debug!(
                conn = self.info.id,
                id,
                "packet id of a released QoS 2 delivery in use; PUBLISH sent again"
            );
            return false;
        }
        if let Some(wire) = self.wire.as_mut() {
            wire.pubrel(id, code::SUCCESS, out);
        }
        true
    }

    /// Whether a QoS 0 delivery goes out as the PUBLISH that all subscribers of this protocol
    /// version share: the message goes to other connections as well (or was encoded for
    /// them already), it is a first delivery, and, in MQTT 5, this subscriber adds no
    /// property of its own: no Subscription Identifier, no remaining Message Expiry Interval
    /// (it changes with time), no Topic Alias (one is used once the topic has one, or while
    /// aliases are left to give out).
    fn shares_encoding(&self, d: &Delivery, t: &Treatment) -> bool {
        let slot = if self.is_v5() { WireSlot::Mqtt5Qos0 } else { WireSlot::Mqtt3Qos0 };
        if d.is_redelivery() || !d.shares(slot) {
            return false;
        }
        !self.is_v5()
            || (t.idents.is_empty()
                && d.msg.expires_at.is_none()
                && !self.aliases_out.contains_key(&d.msg.topic)
                && self.aliases_out.len() >= usize::from(self.aliases_out_max))
    }

    /// Returns a durable delivery that was not sent to its queue, for redelivery.
    fn give_back(&mut self, d: &Delivery, now: Instant) {
        if let (Some(at), false) = (d.durable, self.phase == Phase::Closed) {
            self.defer(Action::Nack { at, requeue: true }, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let id = NonZeroU16::new(65535).unwrap();
        assert_eq!(untoken(token(Qos::ExactlyOnce, id)), Some((Qos::ExactlyOnce, id)));
        assert_eq!(untoken(token(Qos::AtLeastOnce, NonZeroU16::MIN)), Some((Qos::AtLeastOnce, NonZeroU16::MIN)));
        assert_eq!(untoken(7 << 16 | 1), None);
        assert_eq!(untoken(1 << 16), None);
    }

    #[test]
    fn remaining_expiry_rounds_up() {
        let now = Instant::now();
        assert_eq!(remaining_secs(now + Duration::from_secs(10), now).get(), 10);
        assert_eq!(remaining_secs(now + Duration::from_millis(9_001), now).get(), 10);
        assert_eq!(remaining_secs(now + Duration::from_millis(1), now).get(), 1);
        assert_eq!(remaining_secs(now, now).get(), 1);
    }
}
