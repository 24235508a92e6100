//! PUBLISH in both directions and the QoS acknowledgement flows (§4.3).
//!
//! Inbound: QoS 0 is routed; QoS 1 is routed and PUBACKed once the driver reports it done;
//! QoS 2 is routed once per packet id and PUBRECed, the id is kept until PUBREL, and a
//! re-sent PUBLISH with that id is answered PUBREC without routing it again (method B of
//! §4.3.3). A refused publish gets its reason code in MQTT 5 (0x97 for a full durable queue,
//! 0x80 for a store failure) and closes an MQTT 3.x connection, which has no other way to say
//! no [MQTT-3.3.5-2]. Any valid topic name may be published to, `$`-topics included: MQTT
//! only warns clients off `$SYS`, and `$queue/<name>` is how a client publishes straight into
//! a named durable queue (the router does that; nothing here special-cases it).
//!
//! Outbound: QoS 0 goes out as is; QoS ≥ 1 goes out as QoS 1 inside the inflight window until
//! its PUBACK. A durable delivery (from a queue, `Delivery::durable` set) always goes out at
//! QoS ≥ 1, because only a PUBACK can remove it from its queue: a session queue holds QoS ≥ 1
//! messages only, but one that arrives marked QoS 0 is sent as QoS 1 rather than left
//! unacknowledged. Its packet id is derived from its queue position when free
//! ([`crate::inflight::durable_id`]), so a redelivery after a reconnect reuses the id
//! [MQTT-4.4.0-1]; a redelivery has DUP=1 [MQTT-3.3.1-1] and, in MQTT 5, the user property
//! `redelivery-count`. Its PUBACK pushes `Action::Ack`.
//!
//! Not here yet: outbound QoS 2, retained messages (MQTT 5 clients are told Retain
//! Available 0), Message Expiry (accepted and ignored), and topic aliases (Topic Alias
//! Maximum 0).

use std::num::NonZeroU16;
use std::time::Instant;

use bytestring::ByteString;
use diglot_core::{Action, Delivery, Message, Output, PublishError, Qos, Topic};
use rmqtt_codec::types::{Publish, QoS as WireQos};

use super::subscribe::MAX_GRANTED_QOS;
use super::{Phase, Session};
use crate::inflight::durable_id;
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

impl Session {
    /// An inbound PUBLISH.
    pub(super) fn on_publish(&mut self, p: Publish, out: &mut Output, actions: &mut Vec<Action>) {
        match self.check_publish(&p, out) {
            Ok(Some(msg)) => self.route(msg, p.packet_id, actions),
            Ok(None) => {}
            Err(v) => self.fail(v, out, actions),
        }
    }

    /// Validates a PUBLISH and builds its message; `Ok(None)` when it was answered without
    /// routing (a QoS 2 duplicate, or a refused MQTT 5 payload).
    fn check_publish(&mut self, p: &Publish, out: &mut Output) -> Result<Option<Message>, Violation> {
        let v5 = self.is_v5();
        let qos = Qos::from_u8(p.qos.value()).unwrap_or(Qos::AtMostOnce);
        // [MQTT-3.3.1-2] DUP must be 0 on QoS 0.
        if qos == Qos::AtMostOnce && p.dup {
            return Err(Violation::Malformed("DUP set on a QoS 0 PUBLISH".into()));
        }
        let (id, properties) = (p.packet_id, p.properties.as_ref());
        if let Some(pp) = properties {
            // Topic Alias Maximum was announced as 0 (§3.3.2.3.4).
            if pp.topic_alias.is_some() {
                return Err(Violation::TopicAlias);
            }
            // [MQTT-3.3.4-6] A client's PUBLISH carries no Subscription Identifier.
            if !pp.subscription_ids.is_empty() {
                return Err(Violation::Protocol("PUBLISH from a client with a Subscription Identifier"));
            }
        }
        // [MQTT-3.3.2-2] No wildcards in a topic name; [MQTT-4.7.3-1] not empty.
        let topic = Topic::new(&p.topic).map_err(Violation::TopicName)?;
        if v5 && p.retain {
            return Err(Violation::RetainNotSupported);
        }
        if let (Qos::ExactlyOnce, Some(id)) = (qos, id) {
            // [MQTT-4.3.3-2] Until PUBREL, a PUBLISH with the same id (DUP or not) is
            // answered PUBREC and not routed again.
            if self.awaiting_rel.contains(&id.get()) {
                if let Some(wire) = self.wire.as_mut() {
                    wire.pubrec(id, code::SUCCESS, out);
                }
                return Ok(None);
            }
            // The QoS 2 ids awaiting PUBREL count against the Receive Maximum we announced
            // (§3.3.4); 3.x clients are held to the same bound.
            if self.awaiting_rel.len() >= usize::from(self.limits.max_inflight.max(1)) {
                return Err(Violation::ReceiveMaximum);
            }
        }
        let props = match properties {
            Some(pp) if v5 => props::from_publish(pp)?,
            _ => None,
        };
        // §3.3.2.3.2 A payload that claims to be UTF-8 and is not: PUBACK/PUBREC 0x99 for
        // QoS > 0, DISCONNECT 0x99 for QoS 0.
        if props.as_ref().is_some_and(|p| p.utf8_payload) && std::str::from_utf8(&p.payload).is_err() {
            return match id {
                Some(id) => {
                    self.ack(qos, id, code::PAYLOAD_FORMAT_INVALID, out);
                    Ok(None)
                }
                None => Err(Violation::PayloadFormat),
            };
        }
        let mut msg = Message::new(topic, p.payload.clone(), qos, p.retain);
        msg.origin = Some(self.info.id);
        msg.props = props;
        Ok(Some(msg))
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
            Ok(()) => self.ack(qos, id, code::SUCCESS, out),
            Err(e) if self.is_v5() => {
                // A PUBREC with a failure code ends the QoS 2 exchange: no PUBREL follows
                // (§4.3.3), so the id is free again.
                self.awaiting_rel.remove(&id.get());
                self.ack(qos, id, reason::publish_error_code(&e), out);
            }
            // [MQTT-3.3.5-2] 3.x cannot refuse a publish; it closes the connection.
            Err(e) => self.fail(reason::publish_error_violation(e), out, actions),
        }
    }

    /// PUBACK for QoS 1, PUBREC for QoS 2.
    fn ack(&mut self, qos: Qos, id: NonZeroU16, code: u8, out: &mut Output) {
        let Some(wire) = self.wire.as_mut() else { return };
        match qos {
            Qos::AtMostOnce => {}
            Qos::AtLeastOnce => wire.puback(id, code, out),
            Qos::ExactlyOnce => wire.pubrec(id, code, out),
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

    /// Encodes one delivery as a PUBLISH.
    pub(super) fn deliver(&mut self, d: Delivery, now: Instant, out: &mut Output) {
        if self.phase != Phase::Connected {
            // `can_deliver` is false: a driver bug. A durable entry goes back to its queue.
            tracing::debug!(conn = self.info.id, "delivery to a session that is not connected dropped");
            self.give_back(&d, now);
            return;
        }
        // Outbound QoS 2 is not implemented: subscriptions are granted at most
        // MAX_GRANTED_QOS, and anything above goes out at that QoS. A durable delivery is
        // acknowledged by PUBACK alone, so it never goes out at QoS 0.
        let mut qos = d.qos.min(MAX_GRANTED_QOS);
        if d.durable.is_some() {
            qos = qos.max(Qos::AtLeastOnce);
        }
        let packet_id = match qos {
            Qos::AtMostOnce => None,
            _ => match self.inflight.allocate(d.durable.map(|r| durable_id(r.seq)), d.durable) {
                Some(id) => Some(id),
                None => {
                    // The driver checks `can_deliver` first; this is a driver bug, not a client's.
                    tracing::warn!(conn = self.info.id, "delivery beyond the inflight window dropped");
                    self.give_back(&d, now);
                    return;
                }
            },
        };
        let v5 = self.is_v5();
        let properties = v5.then(|| {
            let mut p = props::to_publish(d.msg.props.as_deref());
            if d.is_redelivery() {
                p.user_properties.push((REDELIVERY_COUNT.into(), d.redeliveries.to_string().into()));
            }
            p
        });
        let publish = Publish {
            // [MQTT-3.3.1-1] DUP=1 on a re-delivery attempt; never on QoS 0 [MQTT-3.3.1-2].
            dup: packet_id.is_some() && d.is_redelivery(),
            // Retained messages arrive in a later issue; nothing is delivered as retained.
            retain: false,
            qos: if packet_id.is_some() { WireQos::AtLeastOnce } else { WireQos::AtMostOnce },
            topic: ByteString::from(d.msg.topic.as_str()),
            packet_id,
            payload: d.msg.payload.clone(),
            properties,
        };
        let client_max = self.client_max_packet;
        let Some(wire) = self.wire.as_mut() else { return };
        if !wire.publish(publish, client_max, out) {
            // [MQTT-3.1.2-25] Too large for the client: discarded as if it had been sent.
            // A durable entry cannot wait for a PUBACK that will never come: it goes to the
            // dead-letter queue rather than block the window or vanish silently.
            if let Some(id) = packet_id {
                self.inflight.release(id);
            }
            if let Some(at) = d.durable {
                self.defer(Action::Nack { at, requeue: false }, now);
            }
            tracing::debug!(conn = self.info.id, "PUBLISH larger than the client's Maximum Packet Size discarded");
        }
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
}
