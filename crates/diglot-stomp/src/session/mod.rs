//! The sans-IO STOMP adapter: one [`Session`] per connection, implementing
//! [`diglot_core::Adapter`].
//!
//! The session decodes frames with the [`Decoder`], negotiates the version and heart-beats at
//! CONNECT, turns SEND / SUBSCRIBE / UNSUBSCRIBE / ACK / NACK into router and store
//! [`Action`]s, keeps receipts, the prefetch window of unacked messages and in-memory
//! transactions, and encodes deliveries as MESSAGE frames. Every error is an ERROR frame
//! followed by [`Action::Close`] (STOMP 1.2 "ERROR"); no input can make it panic.
//!
//! Output: exactly one STOMP frame (or one heart-beat EOL) per [`Output::end_frame`], and text
//! is preferred, so a WebSocket driver sends one text message per frame as STOMP over
//! WebSocket clients expect.
//!
//! # Actions, frame by frame
//!
//! | Frame | Actions |
//! |---|---|
//! | CONNECT / STOMP | `Login` (`client-id` or `""`, `login`, `passcode`) |
//! | … its login granted ([`Adapter::on_login`]), with `client-id` | `ClaimClientId` |
//! | … its login refused | `Close` |
//! | SEND `/topic/<t>` | `Publish` (QoS 1 with `persistent:true`, else 0) |
//! | SEND `/queue/<q>` | `Publish` to `$queue/<q>`, always QoS 1 |
//! | SEND naming `/temp-queue/<x>` (`reply-to` or `destination`), the first time | `Subscribe` to `$temp/<token>/<x>`, then `Publish` |
//! | SUBSCRIBE `/topic/<f>` | `Subscribe` |
//! | SUBSCRIBE `/temp-queue/<x>` | `Unsubscribe` of the automatic one, if any; `Subscribe` |
//! | SUBSCRIBE `/queue/<q>` | `Bind { queue/<q>, $queue/<q>, QoS 1 }`, `Consume` |
//! | SUBSCRIBE `/topic/<f>` `durable:true` | `Bind { $durable/<client-id>/<id>, <f>, QoS 1 }`, `Consume` |
//! | UNSUBSCRIBE (topic / queue / durable) | `Unsubscribe` / `Unconsume` / `Unconsume` |
//! | UNSUBSCRIBE `durable:true` of a durable subscription | `Unconsume`, `DeleteQueue` |
//! | ACK / NACK of durable deliveries | one `Ack` / `Nack { requeue }` per delivery, oldest first |
//! | COMMIT | the transaction's `Publish`, `Ack` and `Nack` actions, in frame order |
//! | ERROR, DISCONNECT | `Close` |
//!
//! `Consume` carries the subscription's `prefetch-count` (default `Limits::max_inflight`) and
//! `auto_ack` for `ack:auto`. A `Publish` carries a token when the SEND (or COMMIT) asked for
//! a receipt, and also for every QoS 1 SEND without one, so that a failed publish
//! ([`PublishError`]) always reaches the client: ERROR `publish refused`, `queue full` or
//! `store error` (with `receipt-id` if there was a receipt), then `Close`.
//!
//! `/temp-queue/<x>` (RabbitMQ's semantics): the first SEND that names it (as its `reply-to` or
//! its `destination`) subscribes the session to its private topic `$temp/<token>/<x>` with the
//! subscription id `/temp-queue/<x>` (`Subscribe`, pushed before the `Publish`), and the
//! `reply-to` is rewritten to that topic, so STOMP and MQTT repliers can answer it. Replies
//! arrive as MESSAGEs with `destination:/temp-queue/<x>` and `subscription:/temp-queue/<x>`
//! (a client without such a subscription, like stompjs, hands them to its
//! `onUnhandledMessage`). An explicit SUBSCRIBE to `/temp-queue/<x>` takes the replies under
//! the client's own id instead.
//!
//! `/topic/` names are read and written with [`Config::topic_separator`]: `/` (the default,
//! the name is the MQTT topic) or `.` (RabbitMQ-style, escaped reversibly); the rules are in
//! [`crate::destination`]. Queue and temporary queue names are never split.
//!
//! `expires` (ms since the Unix epoch, 0 = never) ⇔ `Message::expires_at`. An expired delivery
//! is not sent; one from a durable queue on a `client`/`client-individual` subscription is
//! acknowledged (`Ack`) at the next call that takes actions (the session asks for a timer).
//!
//! # Authentication and authorization
//!
//! CONNECT's `login` and `passcode` go to the driver in [`Action::Login`]; CONNECTED is sent
//! only once [`Adapter::on_login`] grants the login, and a refusal is an ERROR (`bad
//! credentials`, `not authorized` or `authentication unavailable`) and a close (see
//! `connect.rs`). The grant's [`Permissions`] then decide every SEND and SUBSCRIBE (before a
//! grant, everything is denied):
//!
//! - SEND: the destination's canonical topic (`<t>` for `/topic/<t>`, so `$temp/…` for a reply
//!   to another session's temporary queue; `$queue/<q>` for `/queue/<q>`; `$temp/<token>/<x>`
//!   for the session's own `/temp-queue/<x>`) must pass [`Permissions::may_publish`], checked
//!   when the SEND arrives, also inside a transaction.
//! - SUBSCRIBE: `/topic/<f>`, durable or not, must pass [`Permissions::may_subscribe`] for
//!   `<f>`, and `/queue/<q>` (`dlq.<q>` included) for `$queue/<q>`. The session's own
//!   `/temp-queue/<x>` is always allowed, also when a SEND's `reply-to` subscribes it.
//!
//! STOMP has no per-frame refusal, so a denied SEND or SUBSCRIBE is an ERROR `not authorized`
//! (with `receipt-id` if it asked for a receipt, and the destination in the body) and a close
//! with [`CloseReason::NotAuthorized`]; nothing is published or subscribed. A server close
//! for [`CloseReason::AuthExpired`] is told as ERROR `credentials expired`.

mod commands;
mod connect;
mod deliver;
mod expiry;
mod fault;
mod heartbeat;
mod receipts;
mod subs;
#[cfg(test)]
mod tests;
mod tx;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use diglot_core::{
    Action, Adapter, CloseReason, ConnInfo, Delivery, Filter, Limits, LoginOutcome, Output, Permissions, PublishError,
    Topic,
};

use self::connect::PendingConnect;
use self::fault::Fault;
use self::heartbeat::{Heartbeat, Tick};
use self::receipts::{Done, Receipts};
use self::subs::Subscriptions;
use self::tx::Transactions;
use crate::codec::{CodecError, Decoded, Decoder, FrameWriter};
use crate::destination::Separator;
use crate::frame::{Command, Frame};
use crate::version::Version;

/// Server-side STOMP settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The CONNECTED frame's `server` header (default `diglot/<version>`); empty omits it.
    pub server_name: String,
    /// How often the server can send heart-beats, in ms: its `cx` (default 10 000; 0 = never).
    pub heartbeat_send_ms: u64,
    /// How often the server wants the client's heart-beats, in ms: its `cy` (default 10 000;
    /// 0 = never).
    pub heartbeat_recv_ms: u64,
    /// How many receive intervals of silence the server tolerates before it closes the
    /// connection (default 1.5; values below 1 count as 1).
    pub heartbeat_grace: f64,
    /// How long a client has to send CONNECT after the connection opens (default 10 s).
    pub connect_timeout: Duration,
    /// How `/topic/` names separate their levels (default [`Separator::Slash`]: the name is the
    /// MQTT topic). Broker-wide: every session of one router must use the same value, since a
    /// message's encoded MESSAGE tail is shared by its subscribers
    /// ([`crate::destination`] has the rules).
    pub topic_separator: Separator,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: concat!("diglot/", env!("CARGO_PKG_VERSION")).to_owned(),
            heartbeat_send_ms: 10_000,
            heartbeat_recv_ms: 10_000,
            heartbeat_grace: 1.5,
            connect_timeout: Duration::from_secs(10),
            topic_separator: Separator::Slash,
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for CONNECT or STOMP.
    AwaitingConnect,
    /// CONNECT was accepted and [`Action::Login`] pushed; waiting for [`Adapter::on_login`].
    /// Nothing more is decoded meanwhile, and the CONNECT deadline still runs.
    AwaitingLogin,
    /// CONNECTED was sent.
    Connected,
    /// A close was requested (or reported); nothing more is read or delivered.
    Closing,
}

/// What a handled frame still owes the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Send the RECEIPT now, if the frame asked for one.
    Receipt,
    /// Nothing more now (the receipt was sent, or waits for a publish).
    Done,
}

/// One STOMP connection's protocol state.
#[derive(Debug)]
pub struct Session {
    info: ConnInfo,
    limits: Limits,
    config: Config,
    decoder: Decoder,
    phase: Phase,
    version: Option<Version>,
    client_id: Option<String>,
    connect_deadline: Option<Instant>,
    /// What CONNECTED will say, kept while the login is checked.
    login: Option<PendingConnect>,
    /// What the connection may do: set by a granted login; until then everything is denied.
    permissions: Option<Arc<dyn Permissions>>,
    heartbeat: Heartbeat,
    subs: Subscriptions,
    txs: Transactions,
    receipts: Receipts,
    error_sent: bool,
    /// The broker-wide unique, unguessable token that names this session's temporary queues
    /// (`$temp/<token>/<name>`).
    temp_token: String,
    /// The destination of the last SEND and the topic it maps to: a sender usually sends to
    /// one destination, and its topic is then neither validated nor allocated again.
    last_send: Option<(Box<str>, Topic)>,
    /// Actions owed from a call that had no action list ([`Adapter::on_delivery`] of an
    /// expired durable message: its [`Action::Ack`]), pushed at the next call that has one.
    pending: Vec<Action>,
    /// Since when `pending` has been waiting: [`Adapter::next_timer`] asks to be woken then.
    pending_since: Option<Instant>,
    /// A frame (or a decoding error) held back until every earlier publish is reported, so
    /// that its reply cannot overtake their receipts ([`Adapter::awaits_publishes`]).
    held: Option<Held>,
}

/// What [`Session::held`] keeps.
#[derive(Debug)]
enum Held {
    /// A decoded frame, not handled yet.
    Frame(Frame),
    /// The ERROR for a frame that failed, with the frame's receipt, not written yet.
    Fault(Fault, Option<String>),
}

impl Session {
    /// A session for a connection that opened at `now`.
    pub fn new(info: ConnInfo, limits: Limits, config: Config, now: Instant) -> Session {
        Session {
            decoder: Decoder::new(&limits),
            phase: Phase::AwaitingConnect,
            version: None,
            client_id: None,
            connect_deadline: now.checked_add(config.connect_timeout),
            login: None,
            permissions: None,
            heartbeat: Heartbeat::off(now),
            subs: Subscriptions::new(limits.max_subscriptions),
            txs: Transactions::new(limits.max_frame_bytes),
            receipts: Receipts::default(),
            error_sent: false,
            temp_token: temp_token(info.id),
            last_send: None,
            pending: Vec::new(),
            pending_since: None,
            held: None,
            info,
            limits,
            config,
        }
    }

    /// The negotiated version, once CONNECT was accepted (CONNECTED follows a granted login).
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The token that names this session's temporary queues: `/temp-queue/<x>` is the canonical
    /// topic `$temp/<token>/<x>`.
    pub fn temp_token(&self) -> &str {
        &self.temp_token
    }

    /// Whether the granted permissions allow publishing to `topic` (never before a grant).
    fn may_publish(&self, topic: &Topic) -> bool {
        self.permissions.as_ref().is_some_and(|p| p.may_publish(topic))
    }

    /// Whether the granted permissions allow subscribing to `filter` (never before a grant).
    fn may_subscribe(&self, filter: &Filter) -> bool {
        self.permissions.as_ref().is_some_and(|p| p.may_subscribe(filter))
    }

    /// Hands over the actions that calls without an action list left owed.
    fn flush_pending(&mut self, actions: &mut Vec<Action>) {
        if self.pending_since.take().is_some() {
            actions.append(&mut self.pending);
        }
    }

    /// Whether `frame` must wait until every earlier publish is reported. A SEND outside a
    /// transaction need not: its receipt, if any, is itself a publish's and leaves in order.
    /// Nor need an ACK or NACK without a receipt, which writes nothing when it succeeds. Any
    /// other frame may write a RECEIPT, an ERROR or close the connection at once, and STOMP
    /// 1.2 answers frames in order ("DISCONNECT": the receipt comes after every earlier frame
    /// was processed).
    fn must_wait(&self, frame: &Frame) -> bool {
        if self.receipts.unreported() == 0 || self.phase != Phase::Connected {
            return false;
        }
        let in_tx = frame.header("transaction").is_some();
        match frame.command {
            Command::Send => in_tx,
            Command::Ack | Command::Nack => frame.header("receipt").is_some(),
            _ => true,
        }
    }

    /// Writes the ERROR for `fault` and closes, or, while publishes are not reported yet,
    /// holds it back until they are.
    fn fail_in_order(&mut self, fault: Fault, receipt: Option<String>, out: &mut Output, actions: &mut Vec<Action>) {
        if self.receipts.unreported() > 0 && self.phase == Phase::Connected {
            self.held = Some(Held::Fault(fault, receipt));
        } else {
            self.fail(fault, receipt.as_deref(), out, actions);
        }
    }

    fn on_frame(&mut self, frame: Frame, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        if self.must_wait(&frame) {
            self.held = Some(Held::Frame(frame));
            return;
        }
        let receipt = frame.header("receipt").map(str::to_owned);
        let command = frame.command;
        let result = if !command.is_client() {
            Err(Fault::protocol("unexpected frame", format!("{command} is sent by servers, not clients.")))
        } else if !command.allows_body() && !is_blank(&frame.body) {
            // STOMP 1.2 "Frame Body": only SEND, MESSAGE and ERROR frames MAY have a body. A
            // "body" of line ends only (`CONNECT\n\n\n\0`, as RabbitMQ's own tests and
            // hand-typed frames send) is the client's spacing, not content: it is ignored.
            Err(Fault::protocol("unexpected body", format!("{command} frames must not have a body.")))
        } else {
            match self.phase {
                Phase::AwaitingConnect => self.on_connect(&frame, now, actions).map(|()| Reply::Done),
                // `on_input` decodes nothing while the login is checked, so this cannot happen.
                Phase::AwaitingLogin => {
                    Err(Fault::protocol("unexpected frame", format!("{command} arrived before the login was checked.")))
                }
                Phase::Connected => self.on_command(frame, receipt.as_deref(), now, out, actions),
                Phase::Closing => return,
            }
        };
        match result {
            Ok(Reply::Receipt) => {
                if let Some(receipt) = &receipt {
                    self.write_receipt(receipt, out);
                }
            }
            Ok(Reply::Done) => {}
            Err(fault) => self.fail_in_order(fault, receipt, out, actions),
        }
    }

    fn on_command(
        &mut self,
        frame: Frame,
        receipt: Option<&str>,
        now: Instant,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) -> Result<Reply, Fault> {
        match frame.command {
            Command::Connect | Command::Stomp => {
                Err(Fault::protocol("already connected", "CONNECT may only be sent once per connection."))
            }
            Command::Send => self.on_send(frame, receipt, now, actions),
            Command::Subscribe => self.on_subscribe(&frame, actions),
            Command::Unsubscribe => self.on_unsubscribe(&frame, actions),
            Command::Ack => self.on_ack(&frame, false, actions),
            Command::Nack => self.on_ack(&frame, true, actions),
            Command::Begin => self.on_begin(&frame),
            Command::Commit => self.on_commit(&frame, receipt, actions),
            Command::Abort => self.on_abort(&frame),
            Command::Disconnect => Ok(self.on_disconnect(receipt, out, actions)),
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                Err(Fault::protocol("unexpected frame", format!("{} is sent by servers, not clients.", frame.command)))
            }
        }
    }

    /// The version to encode with: the negotiated one, or 1.0 (no escaping) before that.
    fn wire_version(&self) -> Version {
        self.version.unwrap_or(Version::V1_0)
    }

    fn write_receipt(&mut self, receipt: &str, out: &mut Output) {
        out.set_prefer_text(true);
        let mut w = FrameWriter::begin(out.buf(), Command::Receipt, self.wire_version());
        w.header("receipt-id", receipt);
        w.finish(b"", false);
        out.end_frame();
    }

    fn write_error(&mut self, fault: &Fault, receipt: Option<&str>, out: &mut Output) {
        if self.error_sent {
            return;
        }
        self.error_sent = true;
        out.set_prefer_text(true);
        let mut w = FrameWriter::begin(out.buf(), Command::Error, self.wire_version());
        w.header("message", fault.message);
        if let Some(receipt) = receipt {
            w.header("receipt-id", receipt);
        }
        if fault.version_header {
            w.header("version", Version::SUPPORTED);
        }
        w.header("content-type", "text/plain");
        w.finish(fault.detail.as_bytes(), true);
        out.end_frame();
    }

    /// Writes the ERROR for `fault` and closes the connection.
    fn fail(&mut self, fault: Fault, receipt: Option<&str>, out: &mut Output, actions: &mut Vec<Action>) {
        tracing::debug!(conn = self.info.id, message = fault.message, detail = %fault.detail, "stomp error");
        self.write_error(&fault, receipt, out);
        self.close(fault.close, actions);
    }

    fn close(&mut self, reason: CloseReason, actions: &mut Vec<Action>) {
        if self.phase != Phase::Closing {
            self.phase = Phase::Closing;
            self.txs.abort_all();
            actions.push(Action::Close(reason));
        }
    }
}

/// Whether a body holds nothing but line ends (CR and LF octets), or nothing at all.
fn is_blank(body: &[u8]) -> bool {
    body.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

/// `<connection id>-<64 random bits in hex>`: unique among the broker's live connections (the
/// id is), not reused after a restart, and not guessable by other clients.
fn temp_token(conn: diglot_core::ConnId) -> String {
    use std::hash::BuildHasher;
    let nonce = std::collections::hash_map::RandomState::new().hash_one((conn, Instant::now()));
    format!("{conn}-{nonce:016x}")
}

impl Adapter for Session {
    fn on_input(&mut self, input: &mut BytesMut, now: Instant, out: &mut Output, actions: &mut Vec<Action>) -> bool {
        // While the login is checked, frames that followed CONNECT stay in `input`: the
        // driver answers the login before it calls again, and they are read after CONNECTED.
        if matches!(self.phase, Phase::Closing | Phase::AwaitingLogin) {
            return false;
        }
        self.flush_pending(actions);
        if let Some(held) = self.held.take() {
            if self.receipts.unreported() > 0 {
                self.held = Some(held);
                return false;
            }
            match held {
                Held::Frame(frame) => self.on_frame(frame, now, out, actions),
                Held::Fault(fault, receipt) => self.fail(fault, receipt.as_deref(), out, actions),
            }
            return self.phase != Phase::Closing;
        }
        if !input.is_empty() {
            self.heartbeat.on_recv(now);
        }
        match self.decoder.decode(input) {
            Ok(None) => false,
            Ok(Some(Decoded::HeartBeat)) => true,
            Ok(Some(Decoded::Frame(frame))) => {
                self.on_frame(frame, now, out, actions);
                self.phase != Phase::Closing
            }
            Err(e) => {
                let breached = match e {
                    CodecError::FrameTooLarge(_) => Some(diglot_core::Limit::MaxFrameBytes),
                    CodecError::TooManyHeaders(_) => Some(diglot_core::Limit::MaxHeaders),
                    CodecError::HeaderTooLong(_) => Some(diglot_core::Limit::MaxHeaderBytes),
                    _ => None,
                };
                if let Some(limit) = breached {
                    self.limits.breaches.hit(limit);
                }
                // The failed frame's receipt, before or after the fault among its headers.
                let receipt = self.decoder.failed_receipt(input);
                self.fail_in_order(Fault::from(e), receipt, out, actions);
                self.held.is_some()
            }
        }
    }

    fn on_login(&mut self, outcome: LoginOutcome, out: &mut Output, actions: &mut Vec<Action>) {
        if self.phase == Phase::Closing {
            return;
        }
        self.flush_pending(actions);
        self.finish_login(outcome, out, actions);
    }

    fn on_publish_done(
        &mut self,
        token: u64,
        result: Result<(), PublishError>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        self.receipts.reported();
        if self.phase == Phase::Closing {
            return;
        }
        self.flush_pending(actions);
        match result {
            Ok(()) => {
                if let Done::Receipt(receipt) = self.receipts.succeeded(token) {
                    self.write_receipt(&receipt, out);
                }
            }
            Err(e) => {
                let receipt = self.receipts.failed(token);
                self.fail(Fault::from(e), receipt.as_deref(), out, actions);
            }
        }
    }

    fn awaits_publishes(&self) -> bool {
        self.held.is_some() && self.receipts.unreported() > 0
    }

    fn can_deliver(&self) -> bool {
        self.delivery_room() > 0
    }

    fn delivery_room(&self) -> usize {
        if self.phase == Phase::Connected {
            usize::from(self.limits.max_inflight.max(1)).saturating_sub(self.subs.unacked())
        } else {
            0
        }
    }

    fn on_delivery(&mut self, delivery: Delivery, now: Instant, out: &mut Output) {
        self.deliver(&delivery, now, out);
    }

    fn next_timer(&self) -> Option<Instant> {
        let due = match self.phase {
            Phase::AwaitingConnect | Phase::AwaitingLogin => self.connect_deadline,
            Phase::Connected => self.heartbeat.next_deadline(),
            Phase::Closing => return None,
        };
        match (due, self.pending_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, now: Instant, out: &mut Output, actions: &mut Vec<Action>) {
        if self.phase != Phase::Closing {
            self.flush_pending(actions);
        }
        match self.phase {
            Phase::AwaitingConnect | Phase::AwaitingLogin => {
                if self.connect_deadline.is_some_and(|deadline| now >= deadline) {
                    self.fail(Fault::connect_timeout(), None, out, actions);
                }
            }
            Phase::Connected => match self.heartbeat.poll(now) {
                Tick::TimedOut => self.fail(Fault::heartbeat_timeout(), None, out, actions),
                Tick::Send => {
                    out.set_prefer_text(true);
                    out.buf().put_u8(b'\n');
                    out.end_frame();
                }
                Tick::Idle => {}
            },
            Phase::Closing => {}
        }
    }

    fn on_sent(&mut self, now: Instant) {
        self.heartbeat.on_sent(now);
    }

    fn on_server_close(&mut self, reason: &CloseReason, out: &mut Output) {
        if self.phase == Phase::Closing {
            return;
        }
        if let Some(fault) = Fault::for_server_close(reason, self.client_id.as_deref()) {
            self.write_error(&fault, None, out);
        }
        self.phase = Phase::Closing;
        self.txs.abort_all();
    }

    fn on_closed(&mut self, _reason: &CloseReason, _actions: &mut Vec<Action>) {
        // STOMP has no will message; open transactions are aborted (STOMP 1.2 "BEGIN": "any
        // transaction which has not been committed will be implicitly aborted").
        self.phase = Phase::Closing;
        self.txs.abort_all();
    }

    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    fn protocol(&self) -> &'static str {
        self.version.map_or("stomp", Version::label)
    }
}
