//! The MQTT session of one connection: the sans-IO [`Adapter`] for MQTT 3.1, 3.1.1 and 5.0.
//!
//! [`Session`] frames and decodes inbound packets, keeps the protocol state (the CONNECT
//! handshake, keep-alive, inbound QoS 2 packet ids, the outbound QoS 1/2 window, topic
//! aliases both ways, the client's subscriptions with their options, and its will) and turns
//! packets into core [`Action`]s and deliveries into PUBLISH packets. The packet handlers
//! live in child modules, one per concept: `connect.rs` (CONNECT, the session handshake,
//! CONNACK, will), `auth.rs` (the login at CONNECT, MQTT 5 re-authentication, and the
//! permissions everything is checked against), `publish.rs` (PUBLISH in and out, the QoS
//! flows, durable deliveries, message expiry, topic aliases), `subscribe.rs`
//! (SUBSCRIBE/UNSUBSCRIBE, bindings, shared subscriptions, `$queue/` consumers).
//!
//! Persistent sessions (Clean Session 0, or MQTT 5 Session Expiry Interval > 0) live in a
//! durable queue, [`diglot_core::session_queue`]`(client_id)`, owned by the driver and the
//! store: the session binds its filters to that queue and consumes it as [`SESSION_SUB`],
//! and acknowledges each durable delivery when its flow ends. The adapter itself keeps
//! nothing across connections.
//!
//! It does no I/O, no routing and no credential checks: the connection driver carries out
//! the actions, `Action::Login` included, and answers with `Adapter::on_login`. The grant's
//! permissions are checked here, for every PUBLISH, every SUBSCRIBE entry and the will.
//! MQTT 5 enhanced authentication is supported for the method `JWT` only (the token is the
//! Authentication Data; re-authentication with AUTH 0x19 included); any other method is
//! refused with 0x8C.

mod auth;
mod connect;
mod publish;
mod subscribe;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use diglot_core::{
    session_queue, Action, Adapter, CloseReason, ConnInfo, Delivery, KeptSubscription, Limits, LoginOutcome, Output,
    Permissions, PublishError, Qos2Flows, QueueId, Seq, SubId, Topic,
};

pub use connect::SESSION_SUB;

use crate::codec::{self, Frame, Inbound, Wire};
use crate::config::Config;
use crate::inflight::Inflight;
use crate::keepalive::KeepAlive;
use crate::reason::{self, Violation};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the CONNECT packet.
    AwaitConnect,
    /// CONNECT valid and `Action::Login` pushed; waiting for `Adapter::on_login`. No input
    /// is read meanwhile, and the CONNECT deadline keeps running.
    Authenticating,
    /// CONNECT accepted (logged in) and `Action::OpenSession` pushed; waiting for
    /// `Adapter::on_session_opened` to write the CONNACK. No input is read meanwhile.
    Opening,
    /// CONNECT accepted, CONNACK sent.
    Connected,
    /// A close was decided; nothing more is read or written.
    Closed,
}

/// The MQTT adapter for one connection. Create it with [`Session::new`] and drive it
/// through [`Adapter`].
#[derive(Debug)]
pub struct Session {
    info: ConnInfo,
    limits: Limits,
    config: Config,
    phase: Phase,
    /// The codec, once the CONNECT revealed the protocol level.
    wire: Option<Wire>,
    /// The accepted (or assigned) client id.
    client_id: Option<String>,
    timers: KeepAlive,
    /// The will, published when the connection ends without a normal DISCONNECT (set once
    /// the CONNACK is written).
    will: Option<connect::Will>,
    /// The client sent DISCONNECT with a reason other than 0x00: the will is still published
    /// (§3.14.2.1) when the connection ends.
    will_after_disconnect: bool,
    /// What an accepted CONNECT settled, kept until the session is open and CONNACK written.
    opening: Option<Box<connect::Opening>>,
    /// What the connection may publish and subscribe to, from the last grant; `None` (no
    /// grant yet) denies everything.
    permissions: Option<Arc<dyn Permissions>>,
    /// CONNECT used the Authentication Method `JWT`: the client may re-authenticate (§4.12.1).
    jwt_auth: bool,
    /// A re-authentication was handed to the driver (`Action::Login` with `reauth`) and not
    /// answered yet; no input is read meanwhile.
    reauth_pending: bool,
    /// Whether the session lives in its session queue (it is persistent, or it resumed a
    /// stored session): subscriptions are bindings of that queue, and it is consumed.
    uses_queue: bool,
    /// MQTT 5 Session Expiry Interval from CONNECT (0 in 3.x).
    session_expiry_secs: u32,
    /// Inbound QoS 2 packet ids published and awaiting PUBREL [MQTT-4.3.3-2].
    awaiting_rel: HashSet<u16>,
    /// Outbound QoS 1 and 2 packet ids whose flow has not ended.
    inflight: Inflight,
    /// The session queue's entries whose QoS 2 PUBREL an earlier connection sent, with its
    /// packet id: when the queue redelivers one, the PUBREL goes again instead of the PUBLISH
    /// [MQTT-4.4.0-1].
    released_before: HashMap<Seq, u16>,
    /// The session queue's store id, once a delivery from it came.
    session_queue_id: Option<QueueId>,
    /// Packet ids of other QoS 2 deliveries whose PUBREL an earlier connection sent, to be
    /// released again once the CONNACK is out (`Adapter::qos2_flows`).
    release_only: Vec<u16>,
    /// Subscriptions a resumed persistent session kept outside its queue's bindings, to be
    /// subscribed again once the CONNACK is out (`Adapter::restore_subscriptions`).
    restored_subs: Vec<KeptSubscription>,
    /// Subscribing `restored_subs`: they are kept already.
    restoring: bool,
    /// The outbound window, min(`limits.max_inflight`, Receive Maximum): the prefetch of
    /// every queue this connection consumes.
    window: u16,
    /// MQTT 5 Request Problem Information: whether Reason Strings may go on packets other
    /// than CONNACK and DISCONNECT [MQTT-3.1.2-29]. Always true in 3.x (which has none).
    problem_info: bool,
    /// Inbound topic aliases the client set up (MQTT 5), alias → topic.
    aliases_in: HashMap<u16, Topic>,
    /// The topic of the last PUBLISH without an alias: a publisher usually sends to one topic,
    /// and it is then neither validated nor allocated again.
    last_topic: Option<Topic>,
    /// Outbound topic aliases (MQTT 5), topic → alias, assigned first come first served.
    aliases_out: HashMap<Topic, NonZeroU16>,
    /// How many outbound aliases may be used: min(client's Topic Alias Maximum,
    /// `config.topic_alias_max`).
    aliases_out_max: u16,
    /// Each subscription, keyed by its canonical text (the filter, `$share/<group>/<filter>`
    /// or `$queue/<name>`), and its id [MQTT-3.8.4-3].
    subs: HashMap<String, SubId>,
    /// The options of each subscription, by id, for its deliveries.
    sub_opts: rustc_hash::FxHashMap<SubId, subscribe::SubOpts>,
    /// How many of the connection's own plain subscriptions carry a Subscription Identifier
    /// or Retain As Published: while any does, a delivery collects the identifiers of every
    /// plain subscription its topic matches, and Retain As Published if any of them asked,
    /// since the router sends one copy for all of them. While none does, the copy's own
    /// subscription has the same options as the merge of them all (none).
    plain_shown: u32,
    next_sub: SubId,
    /// Whether a CONNACK accepting the connection was written; no DISCONNECT goes out
    /// before it [MQTT-3.14.0-1].
    connack_sent: bool,
    /// Whether the protocol goodbye (MQTT 5 DISCONNECT) was written or decided against.
    goodbye_done: bool,
    /// Actions decided where the [`Adapter`] method has no `actions` argument
    /// (`on_delivery`); pushed at the next call that has one. While any wait,
    /// [`Adapter::next_timer`] is due at once so that the driver calls `on_timer` soon.
    deferred: Vec<Action>,
    /// When the first of `deferred` was decided.
    deferred_at: Option<Instant>,
}

impl Session {
    /// A session for a connection opened at `now`; the client has `config.connect_timeout`
    /// to send its CONNECT.
    pub fn new(info: ConnInfo, limits: Limits, config: Config, now: Instant) -> Session {
        let timers = KeepAlive::new(now, config.connect_timeout);
        let inflight = Inflight::new(limits.max_inflight);
        let window = limits_window(&limits);
        Session {
            info,
            limits,
            config,
            phase: Phase::AwaitConnect,
            wire: None,
            client_id: None,
            timers,
            will: None,
            will_after_disconnect: false,
            opening: None,
            permissions: None,
            jwt_auth: false,
            reauth_pending: false,
            uses_queue: false,
            session_expiry_secs: 0,
            awaiting_rel: HashSet::new(),
            inflight,
            released_before: HashMap::new(),
            session_queue_id: None,
            release_only: Vec::new(),
            restored_subs: Vec::new(),
            restoring: false,
            window,
            problem_info: true,
            aliases_in: HashMap::new(),
            last_topic: None,
            aliases_out: HashMap::new(),
            aliases_out_max: 0,
            subs: HashMap::new(),
            sub_opts: rustc_hash::FxHashMap::default(),
            plain_shown: 0,
            next_sub: 1,
            connack_sent: false,
            goodbye_done: false,
            deferred: Vec::new(),
            deferred_at: None,
        }
    }

    /// Keeps an action for the next call that can push it (see `deferred`).
    fn defer(&mut self, action: Action, now: Instant) {
        self.deferred_at.get_or_insert(now);
        self.deferred.push(action);
    }

    /// Pushes the deferred actions.
    fn flush_deferred(&mut self, actions: &mut Vec<Action>) {
        actions.append(&mut self.deferred);
        self.deferred_at = None;
    }

    fn is_v5(&self) -> bool {
        self.wire.as_ref().is_some_and(|w| w.version().is_v5())
    }

    /// A Reason String for a packet other than CONNACK and DISCONNECT, if the client did not
    /// ask to go without [MQTT-3.1.2-29].
    fn problem<'a>(&self, text: &'a str) -> Option<&'a str> {
        self.problem_info.then_some(text)
    }

    /// Ends the connection for `reason`, after an MQTT 5 DISCONNECT with `code` if one may
    /// be sent (MQTT 5, CONNACK sent, no goodbye yet).
    fn shut(&mut self, reason: CloseReason, code: Option<u8>, out: &mut Output, actions: &mut Vec<Action>) {
        if !self.goodbye_done && self.connack_sent {
            if let (Some(code), Some(wire)) = (code, self.wire.as_mut()) {
                if wire.version().is_v5() {
                    wire.disconnect(code, Some(&reason::server_disconnect_text(&reason)), out);
                }
            }
        }
        tracing::debug!(conn = self.info.id, client_id = ?self.client_id, %reason, "closing MQTT session");
        self.goodbye_done = true;
        self.phase = Phase::Closed;
        actions.push(Action::Close(reason));
    }

    /// Ends the connection for a client error.
    fn fail(&mut self, v: Violation, out: &mut Output, actions: &mut Vec<Action>) {
        self.shut(v.close_reason(), Some(v.disconnect_code()), out, actions);
    }

    /// Handles one complete packet.
    fn on_packet(&mut self, packet: BytesMut, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        let Some(wire) = self.wire.as_mut() else {
            self.on_first_packet(packet, now, out, actions);
            return;
        };
        let v5 = wire.version().is_v5();
        // A Topic Alias of 0 fails the codec's decoding, but is "Topic Alias invalid"
        // [MQTT-3.3.2-8], not a malformed packet.
        let alias_zero = v5 && packet.first().is_some_and(|b| b >> 4 == 3) && codec::publish_has_alias_zero(&packet);
        // A QoS 0 PUBLISH to a 3.x session is kept as it came: it is already what a 3.x
        // subscriber is sent, so the message can own those bytes once ([`Message::with_wire`])
        // instead of a copy of its payload and, later, an encoding of it.
        let as_sent = (!v5
            && packet.first() == Some(&codec::PLAIN_PUBLISH_BYTE)
            && packet.len() <= diglot_core::Message::OWN_COPY_MAX
            && codec::minimal_length(&packet))
        .then(|| bytes::Bytes::copy_from_slice(&packet));
        match wire.decode(packet) {
            Ok(Inbound::Publish(p)) => self.on_publish(*p, as_sent, now, out, actions),
            Ok(p) => self.dispatch(p, now, out, actions),
            Err(_) if alias_zero => self.fail(Violation::TopicAlias, out, actions),
            Err(e) => self.fail(Violation::decode(&e), out, actions),
        }
    }

    /// Handles a decoded packet after CONNECT was accepted.
    fn dispatch(&mut self, p: Inbound, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        match p {
            // [MQTT-3.1.0-2] A second CONNECT is a protocol violation: the connection is closed,
            // without a DISCONNECT (which MQTT 5 allows, §4.13.1, and Mosquitto does not send
            // either). A client that sends it is likely to read the socket from two places at
            // once (Paho's interoperability client does: its reader thread and the connect
            // call), and a DISCONNECT's bytes split between them hang it; a bare close reaches
            // both as the end of the stream.
            Inbound::Connect(_) => {
                let v = Violation::Protocol("second CONNECT on one connection");
                self.shut(v.close_reason(), None, out, actions)
            }
            Inbound::Publish(p) => self.on_publish(*p, None, now, out, actions),
            Inbound::PubAck(id) => self.on_puback(id, actions),
            Inbound::PubRec(id, code) => self.on_pubrec(id, code, out, actions),
            Inbound::PubRel(id) => self.on_pubrel(id, out),
            Inbound::PubComp(id) => self.on_pubcomp(id, actions),
            Inbound::Subscribe { packet_id, sub_id, filters } => {
                self.on_subscribe(packet_id, sub_id, filters, out, actions)
            }
            Inbound::Unsubscribe { packet_id, filters } => self.on_unsubscribe(packet_id, filters, out, actions),
            // [MQTT-3.12.4-1] The Server MUST send a PINGRESP in response to a PINGREQ.
            Inbound::PingReq => {
                if let Some(wire) = self.wire.as_mut() {
                    wire.pingresp(out);
                }
            }
            Inbound::Disconnect { reason, session_expiry_secs } => {
                self.on_disconnect(reason, session_expiry_secs, out, actions)
            }
            Inbound::Auth { reason, method, data } => self.on_auth(reason, method, data, out, actions),
            Inbound::Unexpected(name) => self.fail(Violation::Unexpected(name), out, actions),
        }
    }

    /// DISCONNECT from the client.
    fn on_disconnect(&mut self, code: u8, session_expiry: Option<u32>, out: &mut Output, actions: &mut Vec<Action>) {
        // A non-zero Session Expiry Interval in DISCONNECT is a protocol error when CONNECT set
        // it to zero (§3.14.2.2.2; [MQTT-3.14.2-2] is the server's side: it never sends one).
        if self.session_expiry_secs == 0 && session_expiry.is_some_and(|s| s > 0) {
            self.fail(Violation::Protocol("session expiry set on DISCONNECT after 0 on CONNECT"), out, actions);
            return;
        }
        // Reason 0x00 discards the will [MQTT-3.14.4-3]; 0x04 "disconnect with will" and
        // the error codes keep it (§3.14.2.1): `on_closed` hands it over with its Will Delay
        // Interval, as for any other close.
        if code == reason::code::SUCCESS {
            self.will = None;
        } else {
            self.will_after_disconnect = true;
        }
        // The Session Expiry Interval on DISCONNECT replaces CONNECT's (§3.14.2.2.2). Set to
        // 0, the persistent session ends with this connection: its queue is deleted now, and
        // a delayed will goes out at once, as the session ends [MQTT-3.1.3-9]. Any other
        // value is how long the session now outlives the connection (0xFFFFFFFF: it never
        // expires), and caps the will's delay in the same way.
        match session_expiry {
            Some(0) if self.session_expiry_secs > 0 => {
                self.session_expiry_secs = 0;
                if let (true, Some(id)) = (self.uses_queue, self.client_id.as_deref()) {
                    actions.push(Action::DeleteQueue(session_queue(id)));
                }
            }
            Some(secs) if secs != self.session_expiry_secs => {
                self.session_expiry_secs = secs;
                actions.push(Action::SetSessionExpiry((secs != u32::MAX).then_some(secs)));
            }
            _ => {}
        }
        // The server sends nothing in reply to the client's DISCONNECT (§3.14.4).
        self.shut(CloseReason::ClientDisconnect, None, out, actions);
    }
}

/// The outbound window before CONNECT settles it.
fn limits_window(limits: &Limits) -> u16 {
    limits.max_inflight.max(1)
}

impl Adapter for Session {
    fn on_input(&mut self, input: &mut BytesMut, now: Instant, out: &mut Output, actions: &mut Vec<Action>) -> bool {
        self.flush_deferred(actions);
        if self.phase == Phase::Closed || input.is_empty() {
            return false;
        }
        // A client may send packets right after CONNECT (§3.1.4); they wait in `input` until
        // the login is answered and the session is open, and so do packets after an AUTH
        // until its re-authentication is answered. The driver answers Login and OpenSession
        // before it decodes the next frame, so this is only a guard.
        if matches!(self.phase, Phase::Authenticating | Phase::Opening) || self.reauth_pending {
            return false;
        }
        self.timers.touch(now);
        // [MQTT-3.1.0-1] The first packet from the client MUST be CONNECT; anything else is
        // closed without a reply, as soon as its first byte shows it.
        if self.wire.is_none() && input[0] != codec::CONNECT_BYTE {
            self.shut(CloseReason::ProtocolError("first packet is not CONNECT".into()), None, out, actions);
            return false;
        }
        let max = self.limits.max_frame_bytes;
        match codec::frame(input, max) {
            Frame::Incomplete => false,
            Frame::Malformed => {
                self.fail(Violation::Malformed("remaining length longer than four bytes".into()), out, actions);
                false
            }
            Frame::TooLarge(size) => {
                self.limits.breaches.hit(diglot_core::Limit::MaxFrameBytes);
                self.fail(Violation::TooLarge { size, max }, out, actions);
                false
            }
            Frame::Packet(len) => {
                let packet = input.split_to(len);
                self.on_packet(packet, now, out, actions);
                true
            }
        }
    }

    fn on_publish_done(
        &mut self,
        token: u64,
        result: Result<(), PublishError>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        self.flush_deferred(actions);
        self.publish_done(token, result, out, actions);
    }

    fn qos2_flows(&self) -> Qos2Flows {
        let mut unreleased: Vec<u16> = self.awaiting_rel.iter().copied().collect();
        unreleased.sort_unstable();
        // Those resumed from the previous connection and not redelivered yet, and this
        // connection's own.
        let mut released: Vec<(u16, Seq)> = self.released_before.iter().map(|(&seq, &id)| (id, seq)).collect();
        if let Some(queue) = self.session_queue_id {
            released.extend(self.inflight.released(queue));
        }
        released.sort_unstable_by_key(|&(_, seq)| seq);
        let mut release_only = self.release_only.clone();
        release_only.extend(self.inflight.released_elsewhere(self.session_queue_id));
        release_only.sort_unstable();
        release_only.dedup();
        Qos2Flows { unreleased, released, release_only }
    }

    fn restore_subscriptions(&mut self, subs: Vec<KeptSubscription>) {
        self.restored_subs = subs;
    }

    fn restore_qos2_flows(&mut self, flows: Qos2Flows) {
        self.awaiting_rel.extend(flows.unreleased.into_iter().filter(|&id| id != 0));
        for (id, seq) in flows.released.into_iter().filter(|&(id, _)| id != 0) {
            self.inflight.reserve(id);
            self.released_before.insert(seq, id);
        }
        self.release_only.extend(flows.release_only.into_iter().filter(|&id| id != 0));
    }

    fn on_session_opened(&mut self, present: bool, out: &mut Output, actions: &mut Vec<Action>) {
        self.session_opened(present, out, actions);
    }

    fn on_login(&mut self, outcome: LoginOutcome, out: &mut Output, actions: &mut Vec<Action>) {
        self.flush_deferred(actions);
        self.login_done(outcome, out, actions);
    }

    fn can_deliver(&self) -> bool {
        self.phase == Phase::Connected && self.inflight.has_room()
    }

    fn delivery_room(&self) -> usize {
        if self.phase == Phase::Connected {
            self.inflight.room()
        } else {
            0
        }
    }

    fn on_delivery(&mut self, delivery: Delivery, now: Instant, out: &mut Output) {
        self.deliver(delivery, now, out);
    }

    fn next_timer(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            _ => match (self.deferred_at, self.timers.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn on_timer(&mut self, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        self.flush_deferred(actions);
        if self.phase == Phase::Closed || !self.timers.expired(now) {
            return;
        }
        let reason = match self.phase {
            Phase::AwaitConnect | Phase::Authenticating | Phase::Opening => CloseReason::HandshakeTimeout,
            _ => CloseReason::KeepAliveTimeout,
        };
        let code = reason::server_disconnect_code(&reason);
        self.shut(reason, code, out, actions);
    }

    fn on_sent(&mut self, _now: Instant) {
        // An MQTT server sends no heart-beats: keep-alive is the client's duty (§3.1.2.10).
    }

    fn on_server_close(&mut self, reason: &CloseReason, out: &mut Output) {
        if !self.goodbye_done && self.connack_sent {
            if let (Some(code), Some(wire)) = (reason::server_disconnect_code(reason), self.wire.as_mut()) {
                if wire.version().is_v5() {
                    wire.disconnect(code, Some(&reason::server_disconnect_text(reason)), out);
                }
            }
        }
        self.goodbye_done = true;
        self.phase = Phase::Closed;
    }

    fn on_closed(&mut self, reason: &CloseReason, actions: &mut Vec<Action>) {
        // Only a refused delivery can be deferred; if it is lost here, its entry returns to
        // the queue with the rest of the connection's unacknowledged ones.
        self.flush_deferred(actions);
        // [MQTT-3.1.2-8] The will is published when the connection closes without a normal
        // DISCONNECT, after the Will Delay Interval unless the session ends first
        // [MQTT-3.1.3-9]: the driver waits, this session only says how long. A will whose
        // topic the connection may not publish to (by its last grant) is dropped.
        if let Some(will) = self.will.take() {
            if self.will_after_disconnect || !reason.is_graceful_client_close() {
                if self.may_publish(will.topic()) {
                    actions.push(self.will_action(will, Instant::now()));
                } else {
                    tracing::info!(
                        conn = self.info.id,
                        client_id = ?self.client_id,
                        topic = will.topic().as_str(),
                        "will not published: the connection may not publish to its topic"
                    );
                }
            }
        }
        self.phase = Phase::Closed;
    }

    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    fn protocol(&self) -> &'static str {
        self.wire.as_ref().map_or("mqtt", |w| w.version().label())
    }
}
