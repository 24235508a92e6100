//! CONNECT: protocol detection, validation, the session handshake, the will, and CONNACK.
//!
//! The first packet decides the protocol level and so the codec. A refused CONNECT gets the
//! CONNACK code that `reason.rs` picks (or none, where MQTT 3.x requires a plain close) and
//! ends the connection. A valid one pushes `Action::Login` with the credentials (see
//! `auth.rs`) and waits for [`Adapter::on_login`](diglot_core::Adapter::on_login); a refused
//! login is a refused CONNECT (3.x return codes 0x03/0x04/0x05, MQTT 5 0x88/0x86/0x87). A
//! granted one pushes, in this order, `Action::ClaimClientId` and `Action::OpenSession`, and
//! waits again: the CONNACK is written by
//! [`Adapter::on_session_opened`](diglot_core::Adapter::on_session_opened), with Session
//! Present as the driver reports it (and always 0 with a clean start [MQTT-3.2.2-1],
//! [MQTT-3.2.2-2]). A persistent session then pushes `Action::Consume` of its session queue
//! as [`SESSION_SUB`], and so does a resumed one (Session Present 1) that is not persistent:
//! its stored bindings feed the queue for as long as the connection lasts. The CONNECT
//! deadline runs, through the login, until the CONNACK is written; the keep-alive starts
//! then, and so does the will.
//!
//! Session kinds: MQTT 3.x Clean Session 1 is clean and not persistent, 0 is persistent and
//! resumes what is stored (`expiry_secs: None`, kept until a clean session). MQTT 5 Clean
//! Start decides `clean` and Session Expiry Interval > 0 decides `persistent`; the interval
//! goes to the driver as `OpenSession::expiry_secs` (`None` for 0xFFFFFFFF, "never
//! expires"), which runs the expiry timer once the connection is gone.
//!
//! The will becomes a message when CONNECT is accepted, with its RETAIN flag, QoS and (MQTT
//! 5) properties: content type, response topic, correlation data, payload format indicator
//! and user properties map to `Props`, the Message Expiry Interval to `expires_at` (counted
//! from when the will is due), and the Will Delay Interval to `Action::Will::delay_secs`,
//! capped at the Session Expiry Interval because the will goes out when the session ends at
//! the latest [MQTT-3.1.3-9].
//!
//! CONNACK (MQTT 5) announces: Receive Maximum, Maximum Packet Size, Topic Alias Maximum
//! (`Config::topic_alias_max`), Retain Available, Wildcard, Subscription Identifier and
//! Shared Subscription Available (all 1, so left out as the defaults), the Assigned Client
//! Identifier, Server Keep Alive when the keep-alive is capped, and, when the client sets
//! Request Response Information, Response Information `$response/<client id>/`: a topic
//! prefix the client may use for response topics (nothing enforces it), and the
//! Authentication Method `JWT` when the client authenticated with it. Maximum QoS is left
//! out (2). A refused CONNECT's CONNACK carries a Reason String.
//!
//! Authentication methods: a CONNECT without one logs in with its User Name and Password
//! (in 3.x a Password without a User Name is a protocol error [MQTT-3.1.2-22]); one with
//! the method `JWT` logs in with its Authentication Data as the token; any other method is
//! refused with 0x8C Bad authentication method [MQTT-4.12.0-1], and Authentication Data
//! without a method with 0x82 (§3.1.2.11.10). Checking the credentials is the driver's.

use std::hash::BuildHasher;
use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use diglot_core::{
    session_queue, Action, CloseReason, Credentials, Limits, LoginRequest, Message, Output, Qos, SubId, Topic,
    JWT_AUTH_METHOD,
};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::v5;

use super::{Phase, Session};
use crate::codec::{self, reason_string, ConnectReq, Detect, Inbound, Version, Wire};
use crate::props;
use crate::reason::{Refusal, Violation};

/// The [`SubId`] of a persistent session's consumer of its session queue: durable deliveries
/// carry it. It is never given to a subscription's filter.
pub const SESSION_SUB: SubId = SubId::MAX;

/// The prefix of the MQTT 5 Response Information Diglot offers: `$response/<client id>/`.
pub(crate) const RESPONSE_PREFIX: &str = "$response/";

/// A will, armed once the CONNACK is written.
#[derive(Debug)]
pub(crate) struct Will {
    /// The message, with its properties.
    msg: Message,
    /// MQTT 5 Will Delay Interval (0 in 3.x).
    delay_secs: u32,
    /// MQTT 5 Message Expiry Interval of the will, counted from when it is published.
    expiry_secs: Option<NonZeroU32>,
}

impl Will {
    /// The will's topic, for the permission check before it is published.
    pub(crate) fn topic(&self) -> &Topic {
        &self.msg.topic
    }
}

/// What an accepted CONNECT settles.
#[derive(Debug)]
struct Accepted {
    client_id: String,
    /// Whether the server chose the id (sent back as MQTT 5 Assigned Client Identifier).
    assigned: bool,
    /// The Keep Alive in force.
    keep_alive: u16,
    /// The MQTT 5 Server Keep Alive to announce, when the client's value was capped.
    server_keep_alive: Option<u16>,
    will: Option<Will>,
    /// MQTT 5 Request Response Information.
    response_info: bool,
    /// The client authenticated with the MQTT 5 Authentication Method `JWT`.
    jwt: bool,
}

/// A valid CONNECT whose login, then session, is being opened.
#[derive(Debug)]
pub(super) struct Opening {
    accepted: Accepted,
    /// Stored session state is discarded first: Session Present is 0.
    clean: bool,
    /// The session outlives the connection: it lives in (and consumes) its queue.
    persistent: bool,
    /// `OpenSession::expiry_secs`.
    expiry_secs: Option<u32>,
    /// The outbound window, min(`limits.max_inflight`, Receive Maximum): the consumer's
    /// prefetch.
    window: u16,
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
            // The codec checks [MQTT-3.1.3-8] itself for 3.x: an empty client id needs Clean
            // Session 1.
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

    /// A decoded CONNECT: validate it, then ask the driver to log the client in.
    fn on_connect(&mut self, c: ConnectReq, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        let Some(version) = self.wire.as_ref().map(Wire::version) else { return };
        let accepted = match self.accept(&c, version, now) {
            Ok(a) => a,
            Err(r) => return self.refuse(r, out, actions),
        };
        self.session_expiry_secs = c.session_expiry_secs;
        // [MQTT-3.3.4-9] Never more unacknowledged QoS > 0 PUBLISHes than the client's
        // Receive Maximum (65,535 when absent).
        let receive_max = c.receive_max.map_or(u16::MAX, NonZeroU16::get);
        let window = self.limits.max_inflight.min(receive_max).max(1);
        self.inflight.set_window(window);
        self.window = window;
        if let Some(wire) = self.wire.as_mut() {
            wire.set_client_max(c.max_packet_size);
        }
        self.problem_info = c.request_problem_info;
        // [MQTT-3.3.2-12] Never more outbound aliases than the client's Topic Alias Maximum.
        self.aliases_out_max = c.topic_alias_max.min(self.config.topic_alias_max);
        self.client_id = Some(accepted.client_id.clone());
        let clean = c.clean_start;
        let (persistent, expiry_secs) = if version.is_v5() {
            let e = c.session_expiry_secs;
            (e > 0, (e != u32::MAX).then_some(e))
        } else {
            (!c.clean_start, if c.clean_start { Some(0) } else { None })
        };
        let credentials = Credentials {
            username: c.username.as_ref().map(|u| u.to_string()),
            password: c.password.clone(),
            // With the method `JWT`, the Authentication Data is the token (empty if absent).
            token: accepted.jwt.then(|| c.auth_data.clone().unwrap_or_default()),
        };
        actions.push(Action::Login(LoginRequest { client_id: accepted.client_id.clone(), credentials, reauth: false }));
        tracing::debug!(
            conn = self.info.id,
            client_id = %accepted.client_id,
            protocol = version.label(),
            keep_alive = accepted.keep_alive,
            clean,
            persistent,
            jwt = accepted.jwt,
            "MQTT CONNECT valid; logging in"
        );
        self.opening = Some(Box::new(Opening { accepted, clean, persistent, expiry_secs, window }));
        self.phase = Phase::Authenticating;
    }

    /// The login was granted: claim the client id and open the session.
    pub(super) fn open_session(&mut self, actions: &mut Vec<Action>) {
        let Some(opening) = self.opening.as_ref() else { return };
        let Opening { accepted, clean, persistent, expiry_secs, .. } = opening.as_ref();
        let client_id = accepted.client_id.clone();
        actions.push(Action::ClaimClientId(client_id.clone()));
        actions.push(Action::OpenSession {
            client_id: client_id.clone(),
            clean: *clean,
            persistent: *persistent,
            expiry_secs: *expiry_secs,
        });
        tracing::debug!(conn = self.info.id, client_id = %client_id, "MQTT login granted; opening the session");
        self.phase = Phase::Opening;
    }

    /// The driver opened the session: write the CONNACK, start the keep-alive, arm the will,
    /// and consume the session queue of a persistent or resumed session.
    pub(super) fn session_opened(&mut self, present: bool, out: &mut Output, actions: &mut Vec<Action>) {
        // After a close (the CONNECT timer, a takeover), or a second call: nothing to answer.
        if self.phase != Phase::Opening {
            return;
        }
        let Some(opening) = self.opening.take() else { return };
        let Opening { mut accepted, clean, persistent, window, .. } = *opening;
        // [MQTT-3.2.2-1] [MQTT-3.2.2-2] Session Present is 0 after a clean start.
        let present = present && !clean;
        let topic_alias_max = self.config.topic_alias_max;
        let Some(wire) = self.wire.as_mut() else { return };
        if wire.version().is_v5() {
            let ack = connack_v5(&self.limits, topic_alias_max, &accepted, present);
            wire.connack_v5(ack, out);
        } else {
            wire.connack_v3(0x00, present, out);
        }
        self.connack_sent = true;
        self.phase = Phase::Connected;
        // [MQTT-4.4.0-1] The PUBRELs of the QoS 2 deliveries that had no session-queue entry
        // go again at once, with their packet ids (those with one go when the queue
        // redelivers them), even past the client's window, which may have shrunk.
        for id in std::mem::take(&mut self.release_only).into_iter().filter_map(NonZeroU16::new) {
            if self.inflight.resume_released_anyway(id, None) {
                wire.pubrel(id, crate::reason::code::SUCCESS, out);
            }
        }
        self.timers.start(accepted.keep_alive);
        self.will = accepted.will.take();
        // A copy in the store while connected, so that a broker that dies publishes it when it
        // starts again (the driver deletes the copy when the connection ends).
        if let Some(w) = self.will.as_ref().filter(|w| self.may_publish(w.topic())) {
            actions.push(Action::SaveWill {
                msg: w.msg.clone(),
                delay_secs: w.delay_secs.min(self.session_expiry_secs),
                expiry_secs: w.expiry_secs.map(NonZeroU32::get),
            });
        }
        self.jwt_auth = accepted.jwt;
        // A persistent session lives in its queue. So does a resumed one that ends with this
        // connection (MQTT 5 Clean Start 0, Session Expiry 0): its stored bindings feed the
        // queue, which must be consumed now; the driver deletes the queue when the
        // connection ends.
        self.uses_queue = persistent || present;
        if self.uses_queue {
            // Deliveries from the queue share the connection's window, so the queue never
            // hands over more than the client accepts [MQTT-3.3.4-9]. Entries are deleted
            // only when the client acknowledges them (PUBACK, PUBCOMP).
            actions.push(Action::Consume {
                queue: session_queue(&accepted.client_id),
                sub: SESSION_SUB,
                prefetch: window,
                auto_ack: false,
            });
        }
        self.resubscribe_kept(actions);
        tracing::debug!(conn = self.info.id, client_id = %accepted.client_id, present, "MQTT CONNACK sent");
    }

    /// Refuses the CONNECT: CONNACK with the refusal's code where the version has one, then close.
    pub(super) fn refuse(&mut self, r: Refusal, out: &mut Output, actions: &mut Vec<Action>) {
        let Some(wire) = self.wire.as_mut() else { return };
        let version = wire.version();
        match r.connack_code(version) {
            Some(code) if version.is_v5() => {
                let reason_code =
                    v5::ConnectAckReason::try_from(code).unwrap_or(v5::ConnectAckReason::UnspecifiedError);
                let reason_string = Some(reason_string(&r.to_string()));
                wire.connack_v5(v5::ConnectAck { reason_code, reason_string, ..v5::ConnectAck::default() }, out);
            }
            Some(code) => wire.connack_v3(code, false, out),
            None => {}
        }
        self.shut(r.close_reason(version), None, out, actions);
    }

    /// Validates the CONNECT and settles the client id, keep-alive and will.
    fn accept(&self, c: &ConnectReq, version: Version, now: Instant) -> Result<Accepted, Refusal> {
        // §4.12: only the method `JWT` is supported [MQTT-4.12.0-1]; Authentication Data
        // without a method is a protocol error (§3.1.2.11.10).
        let jwt = match c.auth_method.as_deref() {
            Some(JWT_AUTH_METHOD) => true,
            Some(_) => return Err(Refusal::BadAuthMethod),
            None if c.auth_data.is_some() => {
                return Err(Refusal::Protocol("authentication data without an authentication method"))
            }
            None => false,
        };
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
        Ok(Accepted {
            client_id,
            assigned,
            keep_alive,
            server_keep_alive,
            will,
            response_info: c.request_response_info,
            jwt,
        })
    }

    /// The client id: the client's own, or one assigned for an empty id.
    fn client_id_for(&self, c: &ConnectReq, version: Version, now: Instant) -> Result<(String, bool), Refusal> {
        if c.client_id.is_empty() {
            // MQTT 3.1.1 [MQTT-3.1.3-8]: Clean Session 0 with an empty id is refused (the codec
            // already checks; this keeps the rule visible). MQTT 3.1 requires 1 to 23
            // characters. MQTT 5 has no such rule: its Clean Start does not matter here.
            if (!c.clean_start && !version.is_v5()) || version == Version::V31 {
                return Err(Refusal::IdentifierRejected);
            }
            // [MQTT-3.1.3-6] An empty id gets a unique one, and the CONNECT is processed as if
            // the client had sent it [MQTT-3.1.3-7] (MQTT 5: no stored session can match, so
            // Session Present is 0 even with Clean Start 0). The connection id makes it
            // unique; the hash keeps it from being guessed.
            let salt = std::collections::hash_map::RandomState::new().hash_one((self.info.id, now));
            return Ok((format!("diglot-{}-{:08x}", self.info.id, salt as u32), true));
        }
        // [MQTT-3.1.3-5] Servers MAY allow longer ids than 23 bytes; Diglot allows up to the limit.
        if c.client_id.len() > self.limits.max_client_id_bytes {
            self.limits.breaches.hit(diglot_core::Limit::MaxClientIdBytes);
            return Err(Refusal::IdentifierRejected);
        }
        Ok((c.client_id.to_string(), false))
    }

    /// The will as a message ready to publish [MQTT-3.1.2-8].
    fn will_message(&self, w: &v5::LastWill, version: Version) -> Result<Will, Refusal> {
        // The Will Topic must be a valid topic name (§3.1.3.3, §4.7).
        let topic = Topic::new(&w.topic).map_err(Refusal::WillTopic)?;
        let mut props = None;
        if version.is_v5() {
            if w.is_utf8_payload == Some(true) && std::str::from_utf8(&w.message).is_err() {
                return Err(Refusal::WillPayloadFormat);
            }
            props = props::from_will(w).map_err(|_| Refusal::Protocol("will response topic is not a topic name"))?;
        }
        let qos = Qos::from_u8(w.qos.value()).unwrap_or(Qos::AtMostOnce);
        // [MQTT-3.1.2-17] A will with Will Retain 1 is published as a retained message.
        let mut msg = Message::new(topic, w.message.clone(), qos, w.retain);
        msg.origin = Some(self.info.id);
        msg.props = props;
        Ok(Will { msg, delay_secs: w.will_delay_interval_sec.unwrap_or(0), expiry_secs: w.message_expiry_interval })
    }

    /// The action that hands the will to the driver at `now`: its delay is capped at the
    /// Session Expiry Interval [MQTT-3.1.3-9], and its Message Expiry Interval counts from
    /// when it is due.
    pub(super) fn will_action(&self, will: Will, now: Instant) -> Action {
        let Will { mut msg, delay_secs, expiry_secs } = will;
        let delay_secs = delay_secs.min(self.session_expiry_secs);
        msg.received_at = now;
        msg.expires_at =
            expiry_secs.map(|e| now + Duration::from_secs(u64::from(delay_secs)) + Duration::from_secs(e.get().into()));
        Action::Will { msg, delay_secs }
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
}

/// The MQTT 5 CONNACK announcing what this server supports (§3.2.2.3).
fn connack_v5(limits: &Limits, topic_alias_max: u16, a: &Accepted, session_present: bool) -> v5::ConnectAck {
    let receive_max = NonZeroU16::new(limits.max_inflight).unwrap_or(NonZeroU16::MIN);
    let max_packet_size = u32::try_from(limits.max_frame_bytes).unwrap_or(u32::MAX);
    v5::ConnectAck {
        session_present,
        reason_code: v5::ConnectAckReason::Success,
        receive_max,
        // Maximum QoS is not sent: every inbound QoS (0, 1 and 2) is supported.
        max_qos: v5::QoS::ExactlyOnce,
        max_packet_size: (max_packet_size > 0).then_some(max_packet_size),
        assigned_client_id: a.assigned.then(|| ByteString::from(a.client_id.as_str())),
        topic_alias_max,
        retain_available: true,
        wildcard_subscription_available: true,
        subscription_identifiers_available: true,
        shared_subscription_available: true,
        server_keepalive_sec: a.server_keep_alive,
        response_info: response_info(a),
        // §3.2.2.3.17 The method the client authenticated with.
        auth_method: a.jwt.then(|| ByteString::from_static(JWT_AUTH_METHOD)),
        ..v5::ConnectAck::default()
    }
}

/// The Response Information for a client that asked for it (§3.1.2.11.6): the topic prefix
/// `$response/<client id>/`, unless the client id holds a wildcard character and so cannot
/// be part of a topic name (the property is optional, so it is then left out).
fn response_info(a: &Accepted) -> Option<ByteString> {
    let usable = a.response_info && !a.client_id.contains(['+', '#']);
    usable.then(|| ByteString::from(format!("{RESPONSE_PREFIX}{}/", a.client_id)))
}
