//! A test client: drives a `Session` with packets encoded by rmqtt-codec and decodes what
//! the session writes back, one packet per output frame.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use diglot_core::{
    Action, Adapter, CloseReason, ConnInfo, Delivery, DurableRef, Filter, Grant, Limits, LoginOutcome, LoginRequest,
    Message, Output, Permissions, Qos, Topic, Transport,
};
use diglot_mqtt::{Config, Session};
use rmqtt_codec::{v3, v5};
use tokio_util::codec::{Decoder, Encoder};

pub const CONN_ID: u64 = 7;

pub struct Client {
    pub session: Session,
    pub now: Instant,
    pub start: Instant,
    /// Like the driver: answer each `OpenSession` at once with this Session Present, before
    /// the next frame is decoded. `None` leaves the answer to the test (`opened`).
    pub open: Option<bool>,
    /// Like the driver: answer each `Action::Login` at once with this outcome, before the next
    /// frame is decoded, taking the action out of the returned list (its request goes to
    /// `logins`). `None` leaves the action in the list and the answer to the test (`login`).
    pub login: Option<LoginOutcome>,
    /// The login requests answered through `login`, in order.
    pub logins: Vec<LoginRequest>,
    inbuf: BytesMut,
    out: Output,
}

impl Client {
    pub fn new() -> Client {
        Client::with(Limits::default(), Config::default())
    }

    pub fn with(limits: Limits, config: Config) -> Client {
        let info = ConnInfo {
            id: CONN_ID,
            transport: Transport::Tcp,
            peer: "127.0.0.1:1883".parse::<SocketAddr>().unwrap(),
            subprotocol: Some("mqtt".into()),
        };
        let now = Instant::now();
        Client {
            session: Session::new(info, limits, config, now),
            now,
            start: now,
            open: Some(false),
            login: Some(LoginOutcome::Granted(Grant::allow_all())),
            logins: Vec::new(),
            inbuf: BytesMut::new(),
            out: Output::new(),
        }
    }

    /// Feeds raw bytes and runs the session over them until it wants more.
    pub fn raw(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.inbuf.extend_from_slice(bytes);
        let mut actions = Vec::new();
        let mut guard = 0;
        loop {
            let from = actions.len();
            let progressed = self.session.on_input(&mut self.inbuf, self.now, &mut self.out, &mut actions);
            if let Some(outcome) = self.login.clone() {
                if let Some(i) = actions[from..].iter().position(|a| matches!(a, Action::Login(_))) {
                    if let Action::Login(req) = actions.remove(from + i) {
                        self.logins.push(req);
                    }
                    self.session.on_login(outcome, &mut self.out, &mut actions);
                }
            }
            if let Some(present) = self.open {
                if actions[from..].iter().any(|a| matches!(a, Action::OpenSession { .. })) {
                    self.session.on_session_opened(present, &mut self.out, &mut actions);
                }
            }
            if !progressed {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "on_input keeps returning true");
        }
        actions
    }

    /// A client whose logins are granted with `permissions`.
    pub fn granted(permissions: impl Permissions + 'static) -> Client {
        let mut c = Client::new();
        c.login = Some(grant(permissions));
        c
    }

    /// The driver answered a login.
    pub fn answer_login(&mut self, outcome: LoginOutcome) -> Vec<Action> {
        let mut actions = Vec::new();
        self.session.on_login(outcome, &mut self.out, &mut actions);
        if let Some(present) = self.open {
            if actions.iter().any(|a| matches!(a, Action::OpenSession { .. })) {
                self.session.on_session_opened(present, &mut self.out, &mut actions);
            }
        }
        actions
    }

    /// The driver opened the session.
    pub fn opened(&mut self, present: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        self.session.on_session_opened(present, &mut self.out, &mut actions);
        actions
    }

    pub fn send3(&mut self, p: v3::Packet) -> Vec<Action> {
        self.raw(&enc3(p))
    }

    pub fn send5(&mut self, p: v5::Packet) -> Vec<Action> {
        self.raw(&enc5(p))
    }

    /// The frames written so far.
    pub fn frames(&mut self) -> Vec<Bytes> {
        let mut v = Vec::new();
        self.out.take_frames(&mut v);
        v.retain(|f| !f.is_empty());
        v
    }

    /// Decodes each output frame as exactly one MQTT 3.x packet.
    pub fn recv3(&mut self) -> Vec<v3::Packet> {
        self.frames().into_iter().map(|f| one(v3::Codec::new(0), f).0).collect()
    }

    /// Decodes each output frame as exactly one MQTT 5 packet.
    pub fn recv5(&mut self) -> Vec<v5::Packet> {
        self.frames().into_iter().map(|f| one(v5::Codec::new(0, 0), f).0).collect()
    }

    pub fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    pub fn timer(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        self.session.on_timer(self.now, &mut self.out, &mut actions);
        actions
    }

    pub fn done(&mut self, token: u64, result: Result<(), diglot_core::PublishError>) -> Vec<Action> {
        let mut actions = Vec::new();
        self.session.on_publish_done(token, result, &mut self.out, &mut actions);
        actions
    }

    pub fn deliver(&mut self, msg: Message, qos: Qos) {
        let d = Delivery::new(std::sync::Arc::new(msg), 1, qos);
        self.session.on_delivery(d, self.now, &mut self.out);
    }

    /// Hands the session any delivery.
    pub fn deliver_with(&mut self, d: Delivery) {
        self.session.on_delivery(d, self.now, &mut self.out);
    }

    /// A delivery from the session queue: entry `seq` of queue 9.
    pub fn deliver_durable(&mut self, msg: Message, qos: Qos, seq: u64, redeliveries: u32) {
        let d = Delivery {
            msg: std::sync::Arc::new(msg),
            sub: diglot_mqtt::SESSION_SUB,
            qos,
            durable: Some(DurableRef { queue: 9, seq }),
            redeliveries,
            retained: false,
        };
        self.session.on_delivery(d, self.now, &mut self.out);
    }

    pub fn server_close(&mut self, reason: CloseReason) {
        self.session.on_server_close(&reason, &mut self.out);
    }

    pub fn closed(&mut self, reason: CloseReason) -> Vec<Action> {
        let mut actions = Vec::new();
        self.session.on_closed(&reason, &mut actions);
        actions
    }

    /// Connects with MQTT 3.1.1 as `id` (clean session) and drains the CONNACK.
    pub fn connected3(id: &str) -> Client {
        let mut c = Client::new();
        c.connect3(connect3(id));
        c
    }

    /// Connects with MQTT 5 as `id` (clean start) and drains the CONNACK.
    pub fn connected5(id: &str) -> Client {
        let mut c = Client::new();
        c.connect5(connect5(id));
        c
    }

    pub fn connect3(&mut self, connect: v3::Connect) {
        let a = self.send3(v3::Packet::Connect(Box::new(connect)));
        assert_opened(&a);
        assert!(
            matches!(&self.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.return_code == v3::ConnectAckReason::ConnectionAccepted)
        );
    }

    pub fn connect5(&mut self, connect: v5::Connect) {
        let a = self.send5(v5::Packet::Connect(Box::new(connect)));
        assert_opened(&a);
        assert!(
            matches!(&self.recv5()[..], [v5::Packet::ConnectAck(ack)] if ack.reason_code == v5::ConnectAckReason::Success)
        );
    }
}

/// The actions of an accepted CONNECT of a clean session: the client id claimed, the session
/// opened, and with a will, its copy kept in the store while connected.
fn assert_opened(a: &[Action]) {
    assert!(
        matches!(
            a,
            [Action::ClaimClientId(_), Action::OpenSession { .. }]
                | [Action::ClaimClientId(_), Action::OpenSession { .. }, Action::SaveWill { .. }]
        ),
        "{a:?}"
    );
}

fn one<C: Decoder>(mut codec: C, frame: Bytes) -> C::Item
where
    C::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::from(&frame[..]);
    let item = codec.decode(&mut buf).expect("server wrote a valid packet").expect("a whole packet per frame");
    assert!(buf.is_empty(), "one packet per frame");
    item
}

pub fn enc3(p: v3::Packet) -> BytesMut {
    let mut b = BytesMut::new();
    v3::Codec::new(0).encode(p, &mut b).unwrap();
    b
}

pub fn enc5(p: v5::Packet) -> BytesMut {
    let mut b = BytesMut::new();
    v5::Codec::new(0, 0).encode(p, &mut b).unwrap();
    b
}

pub fn connect3(id: &str) -> v3::Connect {
    v3::Connect { clean_session: true, ..v3::Connect::default() }.client_id(id.to_string())
}

pub fn connect5(id: &str) -> v5::Connect {
    v5::Connect { clean_start: true, ..v5::Connect::default() }.client_id(id.to_string())
}

pub fn msg(topic: &str, payload: &'static [u8], qos: Qos) -> Message {
    Message::new(Topic::new(topic).unwrap(), Bytes::from_static(payload), qos, false)
}

pub fn pid(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).unwrap()
}

pub fn publish(topic: &str, payload: &'static [u8], qos: u8, id: Option<u16>) -> rmqtt_codec::types::Publish {
    rmqtt_codec::types::Publish {
        dup: false,
        retain: false,
        qos: v3::QoS::try_from(qos).unwrap(),
        topic: topic.into(),
        packet_id: id.map(pid),
        payload: Bytes::from_static(payload),
        properties: None,
    }
}

/// Connects a persistent MQTT 3.1.1 session (Clean Session 0) as `id`, with a stored session
/// present, and checks the actions; drains the CONNACK.
pub fn persistent3(id: &str, limits: Limits) -> Client {
    let mut c = Client::with(limits, diglot_mqtt::Config::default());
    c.open = Some(true);
    let a = c.send3(v3::Packet::Connect(Box::new(v3::Connect { clean_session: false, ..connect3(id) })));
    assert!(
        matches!(
            &a[..],
            [Action::ClaimClientId(_), Action::OpenSession { persistent: true, .. }, Action::Consume { .. }]
        ),
        "{a:?}"
    );
    assert!(matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.session_present));
    c
}

/// Connects a persistent MQTT 5 session (Clean Start 0, Session Expiry 3600) as `id`.
pub fn persistent5(id: &str, limits: Limits) -> Client {
    let mut c = Client::with(limits, diglot_mqtt::Config::default());
    c.open = Some(true);
    let connect = v5::Connect { clean_start: false, session_expiry_interval_secs: 3600, ..connect5(id) };
    let a = c.send5(v5::Packet::Connect(Box::new(connect)));
    assert!(
        matches!(
            &a[..],
            [Action::ClaimClientId(_), Action::OpenSession { persistent: true, .. }, Action::Consume { .. }]
        ),
        "{a:?}"
    );
    assert!(matches!(&c.recv5()[..], [v5::Packet::ConnectAck(ack)] if ack.session_present));
    c
}

/// The close reason, if the actions end with a close.
pub fn close_of(actions: &[Action]) -> Option<&CloseReason> {
    match actions.last() {
        Some(Action::Close(r)) => Some(r),
        _ => None,
    }
}

/// A delivery of `msg` for subscription `sub` at `qos`.
pub fn delivery(msg: Message, sub: u32, qos: Qos) -> Delivery {
    Delivery::new(std::sync::Arc::new(msg), sub, qos)
}

/// A v5 SUBSCRIBE of one filter with these options.
pub fn subscribe5(id: u16, sub_id: Option<u32>, filter: &str, o: v5::SubscriptionOptions) -> v5::Packet {
    v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(id),
        id: sub_id.and_then(std::num::NonZeroU32::new),
        user_properties: Vec::new(),
        topic_filters: vec![(filter.into(), o)],
    })
}

/// v5 subscription options with this QoS.
pub fn qos5(qos: u8) -> v5::SubscriptionOptions {
    v5::SubscriptionOptions { qos: v5::QoS::try_from(qos).unwrap(), ..v5::SubscriptionOptions::default() }
}

/// The PUBLISH packets among `packets`.
pub fn publishes5(packets: Vec<v5::Packet>) -> Vec<rmqtt_codec::types::Publish> {
    packets
        .into_iter()
        .map(|p| match p {
            v5::Packet::Publish(p) => *p,
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect()
}

/// The PUBLISH packets among `packets`.
pub fn publishes3(packets: Vec<v3::Packet>) -> Vec<rmqtt_codec::types::Publish> {
    packets
        .into_iter()
        .map(|p| match p {
            v3::Packet::Publish(p) => *p,
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect()
}

/// A v5 acknowledgement packet body.
pub fn ack5(id: u16, reason_code: v5::PublishAckReason) -> v5::PublishAck {
    v5::PublishAck { packet_id: pid(id), reason_code, properties: Vec::new(), reason_string: None }
}

/// A v5 PUBREL/PUBCOMP body.
pub fn ack2_5(id: u16) -> v5::PublishAck2 {
    v5::PublishAck2 {
        packet_id: pid(id),
        reason_code: v5::PublishAck2Reason::Success,
        properties: Vec::new(),
        reason_string: None,
    }
}

/// A grant of `permissions` to the user `user`.
pub fn grant(permissions: impl Permissions + 'static) -> LoginOutcome {
    LoginOutcome::Granted(Grant { username: Some("user".into()), permissions: std::sync::Arc::new(permissions) })
}

/// Test permissions: publish to topics, and subscribe to filters, whose text starts with one of
/// the prefixes.
#[derive(Debug, Clone, Copy)]
pub struct Prefixes(pub &'static [&'static str]);

impl Permissions for Prefixes {
    fn may_publish(&self, topic: &Topic) -> bool {
        self.0.iter().any(|p| topic.as_str().starts_with(p))
    }

    fn may_subscribe(&self, filter: &Filter) -> bool {
        self.0.iter().any(|p| filter.as_str().starts_with(p))
    }
}
