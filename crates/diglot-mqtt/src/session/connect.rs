//! CONNECT: protocol detection, validation, the will, and CONNACK.
//!
//! The first packet decides the protocol level and so the codec. A refused CONNECT gets the
//! CONNACK code that `reason.rs` picks (or none, where MQTT 3.x requires a plain close) and
//! ends the connection. An accepted one claims its client id broker-wide and starts the
//! keep-alive timer.
//!
//! Not here yet: authentication (user name and password are accepted and ignored until the
//! auth issue), persistent sessions (Session Present is always 0; a Clean Session 0 client
//! works, but its session is not kept after the connection ends until the durable store
//! arrives), retained wills, the Will Delay Interval, and MQTT 5 enhanced authentication.

use std::hash::BuildHasher;
use std::num::NonZeroU16;
use std::time::Instant;

use bytes::BytesMut;
use bytestring::ByteString;
use diglot_core::{Action, CloseReason, Message, Output, Qos, Topic};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::v5;

use super::{Phase, Session};
use crate::codec::{self, ConnectReq, Detect, Inbound, Version, Wire};
use crate::props;
use crate::reason::{Refusal, Violation};

/// What an accepted CONNECT settles.
struct Accepted {
    client_id: String,
    /// Whether the server chose the id (sent back as MQTT 5 Assigned Client Identifier).
    assigned: bool,
    /// The Keep Alive in force.
    keep_alive: u16,
    /// The MQTT 5 Server Keep Alive to announce, when the client's value was capped.
    server_keep_alive: Option<u16>,
    will: Option<Message>,
}

impl Session {
    /// The first complete packet: detect the level, choose the codec, handle the CONNECT.
    pub(super) fn on_first_packet(
        &mut self,
        packet: BytesMut,
        now: Instant,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        let version = match codec::detect(&packet) {
            Detect::Supported(v) => v,
            // [MQTT-3.1.2-1] A wrong protocol name: close without CONNACK.
            Detect::BadName => {
                self.shut(CloseReason::ProtocolError("not an MQTT protocol name".into()), None, out, actions);
                return;
            }
            // [MQTT-3.1.2-2] An unsupported level: CONNACK 0x01, then close. The client's own
            // CONNACK format is unknown, so the 3.1.1 one is used, as the spec suggests.
            Detect::UnsupportedLevel => {
                codec::connack_unsupported_level(out);
                self.shut(CloseReason::ConnectRefused("unsupported protocol level".into()), None, out, actions);
                return;
            }
        };
        let mut wire = Wire::new(version);
        let decoded = wire.decode(packet);
        self.wire = Some(wire);
        match decoded {
            Ok(Inbound::Connect(c)) => self.on_connect(*c, now, out, actions),
            Ok(_) => self.shut(CloseReason::ProtocolError("first packet is not CONNECT".into()), None, out, actions),
            // The codec checks [MQTT-3.1.3-8] itself: an empty client id needs Clean Session 1.
            Err(DecodeError::InvalidClientId) => self.refuse(Refusal::IdentifierRejected, out, actions),
            Err(DecodeError::UnsupportedProtocolLevel) => self.refuse(Refusal::UnsupportedVersion, out, actions),
            // A reserved flag [MQTT-3.1.2-3], bad will flags [MQTT-3.1.2-11], bad UTF-8 and the
            // like: close without CONNACK.
            Err(e) => {
                let reason = Violation::decode(&e).close_reason();
                self.shut(reason, None, out, actions)
            }
        }
    }

    /// A decoded CONNECT.
    fn on_connect(&mut self, c: ConnectReq, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        let Some(version) = self.wire.as_ref().map(Wire::version) else { return };
        let mut accepted = match self.accept(&c, version, now) {
            Ok(a) => a,
            Err(r) => return self.refuse(r, out, actions),
        };
        self.timers.start(accepted.keep_alive, now);
        self.will = accepted.will.take();
        self.session_expiry_secs = c.session_expiry_secs;
        // [MQTT-3.3.4-9] Never more unacknowledged QoS > 0 PUBLISHes than the client's
        // Receive Maximum (65,535 when absent).
        let receive_max = c.receive_max.map_or(u16::MAX, NonZeroU16::get);
        self.inflight.set_window(self.limits.max_inflight.min(receive_max));
        self.client_max_packet = c.max_packet_size;
        self.client_id = Some(accepted.client_id.clone());
        actions.push(Action::ClaimClientId(accepted.client_id.clone()));
        if version.is_v5() {
            let ack = self.connack_v5(&accepted);
            if let Some(wire) = self.wire.as_mut() {
                wire.connack_v5(ack, out);
            }
        } else if let Some(wire) = self.wire.as_mut() {
            wire.connack_v3(0x00, out);
        }
        self.connack_sent = true;
        self.phase = Phase::Connected;
        tracing::debug!(
            conn = self.info.id,
            client_id = %accepted.client_id,
            protocol = version.label(),
            keep_alive = accepted.keep_alive,
            "MQTT CONNECT accepted"
        );
    }

    /// Refuses the CONNECT: CONNACK with the refusal's code where the version has one, then close.
    fn refuse(&mut self, r: Refusal, out: &mut Output, actions: &mut Vec<Action>) {
        let Some(wire) = self.wire.as_mut() else { return };
        let version = wire.version();
        match r.connack_code(version) {
            Some(code) if version.is_v5() => {
                let reason_code =
                    v5::ConnectAckReason::try_from(code).unwrap_or(v5::ConnectAckReason::UnspecifiedError);
                wire.connack_v5(v5::ConnectAck { reason_code, ..v5::ConnectAck::default() }, out);
            }
            Some(code) => wire.connack_v3(code, out),
            None => {}
        }
        self.shut(r.close_reason(version), None, out, actions);
    }

    /// Validates the CONNECT and settles the client id, keep-alive and will.
    fn accept(&self, c: &ConnectReq, version: Version, now: Instant) -> Result<Accepted, Refusal> {
        if c.auth_method {
            return Err(Refusal::BadAuthMethod);
        }
        // [MQTT-3.1.2-22] In 3.x a password needs a user name (MQTT 5 allows it alone).
        if !version.is_v5() && c.password.is_some() && c.username.is_none() {
            return Err(Refusal::Protocol("password without a user name"));
        }
        let (client_id, assigned) = self.client_id_for(c, version, now)?;
        let will = match &c.will {
            Some(w) => Some(self.will_message(w, version)?),
            None => None,
        };
        let (keep_alive, server_keep_alive) = self.keep_alive_for(c.keep_alive, version);
        Ok(Accepted { client_id, assigned, keep_alive, server_keep_alive, will })
    }

    /// The client id: the client's own, or one assigned for an empty id.
    fn client_id_for(&self, c: &ConnectReq, version: Version, now: Instant) -> Result<(String, bool), Refusal> {
        if c.client_id.is_empty() {
            // [MQTT-3.1.3-8] Clean Session 0 with an empty id is refused (the codec already
            // checks; this keeps the rule visible). MQTT 3.1 requires 1 to 23 characters.
            if !c.clean_start || version == Version::V31 {
                return Err(Refusal::IdentifierRejected);
            }
            // [MQTT-3.1.3-6] An empty id with Clean Session 1 gets a unique one. The
            // connection id makes it unique; the hash keeps it from being guessed.
            let salt = std::collections::hash_map::RandomState::new().hash_one((self.info.id, now));
            return Ok((format!("diglot-{}-{:08x}", self.info.id, salt as u32), true));
        }
        // [MQTT-3.1.3-5] Servers MAY allow longer ids than 23 bytes; Diglot allows up to the limit.
        if c.client_id.len() > self.limits.max_client_id_bytes {
            return Err(Refusal::IdentifierRejected);
        }
        Ok((c.client_id.to_string(), false))
    }

    /// The will as a message ready to publish [MQTT-3.1.2-8].
    fn will_message(&self, w: &v5::LastWill, version: Version) -> Result<Message, Refusal> {
        // The Will Topic must be a valid topic name (§3.1.3.3, §4.7).
        let topic = Topic::new(&w.topic).map_err(Refusal::WillTopic)?;
        let mut props = None;
        if version.is_v5() {
            // Retain Available is announced as 0 (§3.2.2.3.5): a retained will is refused.
            if w.retain {
                return Err(Refusal::WillRetain);
            }
            if w.is_utf8_payload == Some(true) && std::str::from_utf8(&w.message).is_err() {
                return Err(Refusal::WillPayloadFormat);
            }
            props = props::from_will(w).map_err(|_| Refusal::Protocol("will response topic is not a topic name"))?;
        }
        let qos = Qos::from_u8(w.qos.value()).unwrap_or(Qos::AtMostOnce);
        // In 3.x a retained will is routed with its flag but not retained: retained messages
        // arrive in a later issue.
        let mut msg = Message::new(topic, w.message.clone(), qos, w.retain);
        msg.origin = Some(self.info.id);
        msg.props = props;
        Ok(msg)
    }

    /// The Keep Alive in force and, for MQTT 5 when capped, the Server Keep Alive to announce
    /// [MQTT-3.2.2-21]. MQTT 3.x cannot be told a different value, so it is never capped.
    fn keep_alive_for(&self, requested: u16, version: Version) -> (u16, Option<u16>) {
        let cap = self.config.max_keep_alive_secs;
        if version.is_v5() && cap > 0 && (requested == 0 || requested > cap) {
            (cap, Some(cap))
        } else {
            (requested, None)
        }
    }

    /// The MQTT 5 CONNACK announcing what this server supports (§3.2.2.3).
    fn connack_v5(&self, a: &Accepted) -> v5::ConnectAck {
        let receive_max = NonZeroU16::new(self.limits.max_inflight).unwrap_or(NonZeroU16::MIN);
        let max_packet_size = u32::try_from(self.limits.max_frame_bytes).unwrap_or(u32::MAX);
        v5::ConnectAck {
            // Sessions are not persisted yet, so there is never one to resume.
            session_present: false,
            reason_code: v5::ConnectAckReason::Success,
            receive_max,
            // Maximum QoS is not sent: every inbound QoS (0, 1 and 2) is supported.
            max_qos: v5::QoS::ExactlyOnce,
            max_packet_size: (max_packet_size > 0).then_some(max_packet_size),
            assigned_client_id: a.assigned.then(|| ByteString::from(a.client_id.as_str())),
            topic_alias_max: 0,
            retain_available: false,
            wildcard_subscription_available: true,
            subscription_identifiers_available: false,
            shared_subscription_available: false,
            server_keepalive_sec: a.server_keep_alive,
            ..v5::ConnectAck::default()
        }
    }
}
