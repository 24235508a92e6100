//! Session tests: byte strings in, Output frames and Actions out. This module holds the
//! harness; each submodule tests one area.

mod auth;
mod connect;
mod delivery;
mod durable;
mod errors;
mod messaging;
mod pipelining;
mod temp_and_expiry;
mod timers;
mod topic_separator;
mod transactions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use diglot_core::{
    Action, Adapter, CloseReason, ConnInfo, Delivery, DurableRef, Filter, Grant, Limits, LoginOutcome, LoginRequest,
    Message, Output, Props, PublishError, Qos, SubId, Topic, Transport, WireSlot,
};

use super::{Config, Session};
use crate::codec::{Decoded, Decoder};
use crate::frame::{Command, Frame};
use crate::version::Version;

struct H {
    s: Session,
    out: Output,
    actions: Vec<Action>,
    input: BytesMut,
    t0: Instant,
    /// How the harness answers [`Action::Login`], as the driver would (removing the action
    /// and calling `on_login` before the next frame); `None` leaves the action in `actions`
    /// and the login unanswered.
    login: Option<LoginOutcome>,
    /// The logins the harness answered.
    logins: Vec<LoginRequest>,
}

fn info(subprotocol: Option<&str>) -> ConnInfo {
    ConnInfo {
        id: 7,
        transport: Transport::WebSocket,
        peer: SocketAddr::from(([127, 0, 0, 1], 4000)),
        subprotocol: subprotocol.map(str::to_owned),
    }
}

impl H {
    fn new() -> H {
        H::with(None, Limits::default())
    }

    fn with(subprotocol: Option<&str>, limits: Limits) -> H {
        let t0 = Instant::now();
        let config = Config { server_name: "diglot/test".into(), ..Config::default() };
        H {
            s: Session::new(info(subprotocol), limits, config, t0),
            out: Output::new(),
            actions: Vec::new(),
            input: BytesMut::new(),
            t0,
            login: Some(LoginOutcome::Granted(Grant::allow_all())),
            logins: Vec::new(),
        }
    }

    /// A harness whose logins are answered with `outcome`, or not at all.
    fn answering(outcome: Option<LoginOutcome>) -> H {
        H { login: outcome, ..H::new() }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds bytes as the driver would: call `on_input` until it returns false.
    fn feed_at(&mut self, bytes: &[u8], now: Instant) {
        self.input.extend_from_slice(bytes);
        while self.s.on_input(&mut self.input, now, &mut self.out, &mut self.actions) {
            self.answer_logins();
        }
        self.answer_logins();
    }

    /// Answers every pending [`Action::Login`] with `self.login`, if set.
    fn answer_logins(&mut self) {
        let Some(outcome) = self.login.clone() else { return };
        let mut i = 0;
        while i < self.actions.len() {
            if matches!(self.actions[i], Action::Login(_)) {
                if let Action::Login(req) = self.actions.remove(i) {
                    self.logins.push(req);
                }
                self.s.on_login(outcome.clone(), &mut self.out, &mut self.actions);
            } else {
                i += 1;
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.t0;
        self.feed_at(bytes, now);
    }

    /// The frames written so far; checks that every Output frame is exactly one STOMP frame
    /// (or one heart-beat EOL) and that text is preferred.
    fn frames(&mut self) -> Vec<Frame> {
        let mut chunks = Vec::new();
        self.out.take_frames(&mut chunks);
        let version = self.s.version().unwrap_or(Version::V1_0);
        chunks
            .into_iter()
            .filter(|c| !c.is_empty() && &c[..] != b"\n")
            .map(|c| {
                assert!(self.out.prefers_text());
                let mut d = Decoder::new(&Limits::default());
                d.set_version(version);
                let mut buf = BytesMut::from(&c[..]);
                match d.decode(&mut buf) {
                    Ok(Some(Decoded::Frame(f))) => {
                        assert!(buf.is_empty(), "one frame per end_frame: {c:?}");
                        f
                    }
                    other => panic!("not a frame: {other:?} in {c:?}"),
                }
            })
            .collect()
    }

    fn chunks(&mut self) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        self.out.take_frames(&mut chunks);
        // `Output::take_frames` yields one empty chunk when nothing was written.
        chunks.retain(|c| !c.is_empty());
        chunks
    }

    fn one(&mut self) -> Frame {
        let mut fs = self.frames();
        assert_eq!(fs.len(), 1, "{fs:?}");
        fs.remove(0)
    }

    /// Reports a publish done, as the driver does for every token (until then, frames that
    /// could reply before its receipt are held).
    fn done(&mut self, token: Option<u64>) {
        if let Some(token) = token {
            self.s.on_publish_done(token, Ok(()), &mut self.out, &mut self.actions);
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn connect(&mut self, accept: &str) -> Frame {
        self.feed(format!("CONNECT\naccept-version:{accept}\nhost:/\n\n\0").as_bytes());
        let f = self.one();
        assert_eq!(f.command, Command::Connected, "{f:?}");
        f
    }

    fn expect_error(&mut self, message: &str) -> (Frame, CloseReason) {
        let f = self.frames().pop().expect("an ERROR frame");
        assert_eq!(f.command, Command::Error, "{f:?}");
        assert_eq!(f.header("message"), Some(message), "{f:?}");
        assert_eq!(f.header("content-type"), Some("text/plain"));
        let close = match self.actions().pop() {
            Some(Action::Close(r)) => r,
            other => panic!("expected Close, got {other:?}"),
        };
        assert!(!self.s.can_deliver());
        assert_eq!(self.s.next_timer(), None);
        (f, close)
    }

    fn subscribe(&mut self, id: &str, dest: &str, ack: &str) -> SubId {
        self.feed(format!("SUBSCRIBE\nid:{id}\ndestination:{dest}\nack:{ack}\n\n\0").as_bytes());
        match self.actions().pop() {
            Some(Action::Subscribe { sub, .. }) => sub,
            other => panic!("expected Subscribe, got {other:?}"),
        }
    }

    fn deliver(&mut self, sub: SubId, msg: Message) -> Frame {
        let qos = msg.qos;
        self.deliver_with(Delivery::new(Arc::new(msg), sub, qos))
    }

    /// Delivers `msg` as the store entry `seq` of queue 1, delivered `redeliveries` times
    /// before.
    fn deliver_durable(&mut self, sub: SubId, msg: Message, seq: u64, redeliveries: u32) -> Frame {
        let qos = msg.qos;
        let mut d = Delivery::new(Arc::new(msg), sub, qos);
        d.durable = Some(durable_ref(seq));
        d.redeliveries = redeliveries;
        self.deliver_with(d)
    }

    fn deliver_with(&mut self, d: Delivery) -> Frame {
        let now = self.t0;
        self.s.on_delivery(d, now, &mut self.out);
        self.one()
    }
}

fn message(id: u64, topic: &str, body: &'static [u8]) -> Message {
    let mut m = Message::new(Topic::new(topic).unwrap(), Bytes::from_static(body), Qos::AtMostOnce, false);
    m.id = id;
    m
}

fn durable_ref(seq: u64) -> DurableRef {
    DurableRef { queue: 1, seq }
}

fn publish(a: Action) -> (Message, Option<u64>) {
    match a {
        Action::Publish { msg, token } => (msg, token),
        other => panic!("expected Publish, got {other:?}"),
    }
}
