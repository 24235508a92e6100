//! The contract between a protocol adapter (MQTT, STOMP) and the connection driver.
//!
//! An adapter is sans-IO: the driver hands it inbound bytes, deliveries from the outbox and
//! timer ticks; the adapter writes protocol frames into an [`Output`] and returns [`Action`]s
//! for the driver to carry out against the router (and, later, the store). The same adapter
//! serves raw TCP and WebSocket, and unit tests drive it without sockets.
//!
//! Ordering: the driver calls [`Adapter::on_input`] once per inbound frame and carries out that
//! frame's actions before it decodes the next frame. A publish that must wait for the store
//! does not hold up the next frames: the driver reads on (at most `limits.max_inflight`
//! publishes waiting) and reports the publishes through [`Adapter::on_publish_done`] in the
//! order they were handed over, so their acknowledgements leave in order. A frame whose reply
//! must not overtake those acknowledgements (STOMP answers every frame in order) is held by
//! the adapter, which says so with [`Adapter::awaits_publishes`]; the driver then finishes
//! the waiting publishes before it calls `on_input` again.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::auth::{LoginOutcome, LoginRequest};
use crate::close::CloseReason;
use crate::message::{Delivery, DurableRef, Message, Qos, Seq};
use crate::router::{ConnId, SubId};
use crate::topic::Filter;

/// How a connection reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A raw TCP socket.
    Tcp,
    /// A WebSocket.
    WebSocket,
}

impl Transport {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket => "ws",
        }
    }
}

/// What the adapter knows about its connection when it is created.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The broker-wide connection id.
    pub id: ConnId,
    /// TCP or WebSocket.
    pub transport: Transport,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The WebSocket subprotocol the negotiator chose (`mqtt`, `v12.stomp`, …), if any.
    pub subprotocol: Option<String>,
}

/// Why the broker did not take a publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The publish was refused; the text says why.
    #[error("publish refused: {0}")]
    Refused(String),
    /// A durable queue the message goes to is full and its overflow policy is `reject`
    /// (MQTT 5 reason 0x97 Quota exceeded).
    #[error("queue full: {0}")]
    QueueFull(String),
    /// The store could not write the message (MQTT 5 reason 0x80; STOMP ERROR).
    #[error("store error: {0}")]
    Store(String),
}

/// Something the driver must do on the adapter's behalf.
#[derive(Debug)]
pub enum Action {
    /// Route a message. If `token` is set, the driver calls [`Adapter::on_publish_done`] with
    /// it once the message is routed (and, for persistent messages, stored).
    Publish {
        /// The message (its id is assigned by the router).
        msg: Message,
        /// The adapter's handle for the acknowledgement, if one is owed.
        token: Option<u64>,
    },
    /// Add (or replace) a subscription of this connection.
    Subscribe {
        /// The canonical filter.
        filter: Filter,
        /// The adapter's id for it.
        sub: SubId,
        /// The highest QoS to deliver with.
        qos: Qos,
        /// MQTT 5 No Local.
        no_local: bool,
        /// Merge overlapping subscriptions into one copy per message (MQTT), or not (STOMP).
        merge: bool,
        /// Which retained messages to send for this subscription.
        retained: RetainHandling,
        /// The share group of an MQTT shared subscription (`$share/<group>/<filter>`): each
        /// message goes to one member of the group.
        share: Option<String>,
    },
    /// Remove a subscription of this connection.
    Unsubscribe {
        /// The canonical filter.
        filter: Filter,
        /// The adapter's id for it.
        sub: SubId,
    },
    /// Open the client's session before answering CONNECT. With `clean`, any stored session
    /// of that client id is deleted first [MQTT-3.1.2-6]. With `persistent`, the durable queue
    /// [`session_queue`]`(client_id)` is then created unless it exists, and it outlives the
    /// connection; without it, a stored session that was resumed is deleted when the
    /// connection ends. The driver answers with [`Adapter::on_session_opened`], whose
    /// `present` is true when a stored session existed and was kept.
    OpenSession {
        /// The client id.
        client_id: String,
        /// Discard any stored session first (MQTT clean session 1 / clean start 1).
        clean: bool,
        /// Keep the session after the connection (MQTT clean session 0 / session expiry > 0).
        persistent: bool,
        /// How long a persistent session outlives its connection, in seconds (`None`: until a
        /// clean start deletes it; MQTT 3.x and MQTT 5 expiry 0xFFFFFFFF).
        expiry_secs: Option<u32>,
    },
    /// Remember (`keep`) or forget a subscription of a persistent session that is not a
    /// binding of its queue (an MQTT 5 shared subscription, a `$queue/` consumer): it is part
    /// of the session, and the session's next connection gets it back
    /// ([`Adapter::restore_subscriptions`]). Ignored for a session that is not persistent.
    KeepSubscription {
        /// The subscription (the key is its filter text).
        sub: KeptSubscription,
        /// Remember it (SUBSCRIBE) or forget it (UNSUBSCRIBE).
        keep: bool,
    },
    /// Publish the connection's will: now if `delay_secs` is 0, else after the delay unless a
    /// connection takes the client id over first (MQTT 5 Will Delay Interval), and at the latest
    /// when the session ends [MQTT-3.1.3-9].
    Will {
        /// The will message.
        msg: Message,
        /// The Will Delay Interval.
        delay_secs: u32,
    },
    /// Keep a copy of the connection's will in the store while the connection lasts, so that
    /// a broker killed (`kill -9`, a crash) publishes it when it starts again, as if the
    /// connection had ended then: after `delay_secs` unless the client comes back first. The
    /// driver deletes the copy when the connection ends, once the [`Action::Will`] (if any)
    /// is published or waits in the store.
    SaveWill {
        /// The will message.
        msg: Message,
        /// The Will Delay Interval, capped at the session's expiry.
        delay_secs: u32,
        /// The will's MQTT 5 Message Expiry Interval, counted from when it is published.
        expiry_secs: Option<u32>,
    },
    /// Attach this connection as a consumer of a durable queue (created on first use).
    /// Deliveries from it carry [`Delivery::durable`] and `sub`.
    Consume {
        /// The queue's name (see [`session_queue`], [`named_queue`]).
        queue: String,
        /// The adapter's id for this consumer.
        sub: SubId,
        /// Most unacknowledged deliveries at once to this consumer.
        prefetch: u16,
        /// Delete each entry as soon as it is handed to the connection (STOMP `ack:auto`).
        auto_ack: bool,
    },
    /// Detach this connection's consumer; its unacknowledged deliveries return to the queue
    /// and are redelivered, in order, to the next consumer.
    Unconsume {
        /// The queue's name.
        queue: String,
        /// The adapter's id for the consumer.
        sub: SubId,
    },
    /// Make a durable queue receive what is published on `filter` (kept across restarts).
    Bind {
        /// The queue's name.
        queue: String,
        /// The topic filter.
        filter: Filter,
        /// The highest QoS the queue keeps messages with.
        qos: Qos,
    },
    /// Send this connection the retained messages that `filter` matches, with RETAIN set
    /// (after a [`Action::Bind`] of an MQTT persistent session, whose subscriptions are
    /// bindings rather than [`Action::Subscribe`]s). Those that go out at QoS 1 or 2 are
    /// stored in the session's queue `queue`, as copies marked [`Message::retained_copy`], and
    /// come through its consumer, so that one not acknowledged is sent again after a reconnect
    /// or a restart [MQTT-4.4.0-1]; those at QoS 0 (and, if the queue refuses a copy, that
    /// one) are deliveries for `sub`.
    SendRetained {
        /// The filter just subscribed to.
        filter: Filter,
        /// The adapter's id for the deliveries.
        sub: SubId,
        /// The highest QoS to deliver them with.
        qos: Qos,
        /// The session queue.
        queue: String,
    },
    /// Undo a [`Action::Bind`].
    Unbind {
        /// The queue's name.
        queue: String,
        /// The topic filter.
        filter: Filter,
    },
    /// Delete a durable queue, its bindings and its messages.
    DeleteQueue(String),
    /// Change how long the persistent session opened with [`Action::OpenSession`] outlives
    /// the connection, in seconds (`None`: until a clean start deletes it). MQTT 5 DISCONNECT
    /// with a Session Expiry Interval (§3.14.2.2.2). Nothing happens without such a session.
    SetSessionExpiry(Option<u32>),
    /// The client acknowledged a durable delivery: delete it from the store.
    Ack(DurableRef),
    /// The client refused a durable delivery: return it to the queue (`requeue`) or move it to
    /// the dead-letter queue.
    Nack {
        /// The delivery.
        at: DurableRef,
        /// Redeliver it rather than dead-letter it.
        requeue: bool,
    },
    /// Verify what the client presented at CONNECT (or, with `reauth`, in an MQTT 5 AUTH
    /// packet). The driver answers with [`Adapter::on_login`] before the next frame is decoded;
    /// until then the adapter holds back its CONNECT reply.
    Login(LoginRequest),
    /// Claim a client id broker-wide; an older connection holding it is closed with
    /// [`CloseReason::SessionTakenOver`].
    ClaimClientId(String),
    /// Close the connection after flushing the output.
    Close(CloseReason),
}

/// Which retained messages a new subscription receives (MQTT 5 Retain Handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    /// Send the retained messages that match, at every SUBSCRIBE (MQTT 3.x; MQTT 5 value 0).
    Always,
    /// Send them only if the subscription did not exist yet (MQTT 5 value 1).
    IfNew,
    /// Never send them (MQTT 5 value 2; STOMP).
    Never,
}

/// How the name of every MQTT session's queue ([`session_queue`]) begins.
pub const SESSION_QUEUE_PREFIX: &str = "$session/";

/// The durable queue that holds an MQTT persistent session's messages.
pub fn session_queue(client_id: &str) -> String {
    format!("{SESSION_QUEUE_PREFIX}{client_id}")
}

/// The durable queue behind STOMP `/queue/<name>` and MQTT `$queue/<name>`. The name
/// `dlq.<name>` addresses the dead-letter queue of queue `<name>` (`$dlq/queue/<name>`), where
/// messages go after too many deliveries or a NACK with `requeue:false`.
pub fn named_queue(name: &str) -> String {
    match name.strip_prefix("dlq.") {
        Some(of) if !of.is_empty() => format!("$dlq/queue/{of}"),
        _ => format!("queue/{name}"),
    }
}

/// The topic that publishes straight into the named queue `name` (STOMP SEND to
/// `/queue/<name>`, MQTT PUBLISH to `$queue/<name>`). A named queue is bound to it.
pub fn queue_topic(name: &str) -> String {
    format!("$queue/{name}")
}

/// The durable queue behind a STOMP durable topic subscription.
pub fn durable_subscription_queue(client_id: &str, sub_id: &str) -> String {
    format!("$durable/{client_id}/{sub_id}")
}

/// Protocol frames the adapter has written, with the boundaries between frames, so that a
/// WebSocket transport can send one frame per message where a protocol expects that (STOMP).
///
/// For such a protocol over a WebSocket without compression, the transport can ask for the
/// frames to be written as WebSocket frames in place ([`Output::set_ws_framing`]): two bytes
/// are kept in front of each frame for its WebSocket header, filled in when the frame ends,
/// and the transport sends the buffer as it is, without copying each frame behind a header.
#[derive(Debug, Default)]
pub struct Output {
    buf: BytesMut,
    /// Where each frame ends, with [`Output::KNOWN_UTF8`] set for a frame the adapter knows to
    /// be valid UTF-8 (with WebSocket framing: where each WebSocket frame ends).
    ends: Vec<usize>,
    text: bool,
    /// Frames are written as final, unmasked WebSocket frames (RFC 6455 §5.2), text when
    /// valid UTF-8, binary otherwise.
    ws: bool,
    /// With WebSocket framing: where the payload of the frame being written starts, and the
    /// room left in front of it for its header.
    open: Option<(usize, usize)>,
    /// With WebSocket framing: the bytes of `buf` that are WebSocket headers.
    headers: usize,
}

impl Output {
    /// An empty output.
    pub fn new() -> Output {
        Output::default()
    }

    /// The buffer to append the next frame to. Call [`Output::end_frame`] after each frame.
    pub fn buf(&mut self) -> &mut BytesMut {
        self.buf_sized(0)
    }

    /// [`Output::buf`], for a frame expected to be about `len` bytes long: with WebSocket
    /// framing, its header gets the room that length needs, so that the frame does not have
    /// to be moved when it ends (it still is if the guess was wrong).
    pub fn buf_sized(&mut self, len: usize) -> &mut BytesMut {
        if self.ws && self.open.is_none() {
            let head = ws_header_len(len);
            // Of a known length, as in `end_ws_frame`.
            match head {
                2 => self.buf.extend_from_slice(&[0; 2]),
                4 => self.buf.extend_from_slice(&[0; 4]),
                _ => self.buf.extend_from_slice(&[0; 10]),
            }
            self.headers += head;
            self.open = Some((self.buf.len(), head));
        }
        &mut self.buf
    }

    /// Makes room for at least `additional` more bytes, at once: in the space a buffer sent
    /// before left (no allocation), in a new buffer if nothing is waiting (no copy), else by
    /// growing this one.
    pub fn reserve(&mut self, additional: usize) {
        // True at once when the room is already there.
        if self.buf.try_reclaim(additional) {
            return;
        }
        if self.buf.is_empty() {
            self.buf = BytesMut::with_capacity(additional);
        } else {
            self.buf.reserve(additional);
        }
    }

    /// Writes each frame from now on as a WebSocket frame in place (see [`Output`]); the
    /// transport then takes them with [`Output::take_ws_frames`] (or [`Output::take_frames`],
    /// which gives the bare frames). Set before anything is written.
    pub fn set_ws_framing(&mut self, on: bool) {
        debug_assert!(self.buf.is_empty(), "WebSocket framing is chosen before the first frame");
        self.ws = on;
    }

    /// Whether frames are written as WebSocket frames in place.
    pub fn ws_framing(&self) -> bool {
        self.ws
    }

    /// Marks the end of a frame.
    pub fn end_frame(&mut self) {
        self.end_frame_as(0);
    }

    /// Marks the end of a frame that the adapter knows to be valid UTF-8 (a STOMP MESSAGE
    /// whose body is), so that the transport need not check it again for each subscriber.
    pub fn end_utf8_frame(&mut self) {
        self.end_frame_as(Self::KNOWN_UTF8);
    }

    /// Set in an entry of `ends` whose frame is known to be valid UTF-8 (buffer offsets never
    /// reach the top bit).
    const KNOWN_UTF8: usize = 1 << (usize::BITS - 1);

    fn last_end(&self) -> usize {
        self.ends.last().map_or(0, |e| e & !Self::KNOWN_UTF8)
    }

    /// Whether a frame has been begun and not ended: looked at before the call that would end
    /// it where that runs once per delivery, mostly with no frame open (`push_ws_framed`).
    #[inline]
    fn frame_open(&self) -> bool {
        if self.ws {
            self.open.is_some()
        } else {
            self.buf.len() > self.last_end()
        }
    }

    fn end_frame_as(&mut self, flag: usize) {
        if !self.frame_open() {
            return;
        }
        if self.ws {
            self.end_ws_frame(flag != 0);
        } else {
            self.ends.push(self.buf.len() | flag);
        }
    }

    /// Fills in the WebSocket header in front of the frame being written: text if it is known
    /// to be valid UTF-8 or checked to be, binary otherwise; the length in the shortest form
    /// (RFC 6455 §5.2 "the minimal number of bytes MUST be used"), moving the frame if the
    /// room left for the header was not that form's. An empty frame is taken back with its
    /// header.
    fn end_ws_frame(&mut self, utf8: bool) {
        let Some((start, room)) = self.open.take() else { return };
        let len = self.buf.len() - start;
        if len == 0 {
            self.buf.truncate(start - room);
            self.headers -= room;
            return;
        }
        let utf8 = utf8 || std::str::from_utf8(&self.buf[start..]).is_ok();
        let head = ws_header_len(len);
        let at = start - room;
        if head > room {
            self.buf.resize(self.buf.len() + head - room, 0);
            self.buf.copy_within(start..start + len, at + head);
        } else if head < room {
            self.buf.copy_within(start..start + len, at + head);
            self.buf.truncate(at + head + len);
        }
        self.headers = self.headers + head - room;
        let (header, _) = ws_frame_header(if utf8 { 0x1 } else { 0x2 }, len);
        // One copy of a known length per form: a copy of `head` bytes would be a call to
        // `memmove`, once per frame (a profile of STOMP fan-out put 9 % of the broker there).
        match head {
            2 => self.buf[at..at + 2].copy_from_slice(&header[..2]),
            4 => self.buf[at..at + 4].copy_from_slice(&header[..4]),
            _ => self.buf[at..at + 10].copy_from_slice(&header),
        }
        self.ends.push(self.buf.len());
    }

    /// Hands everything written so far, as complete WebSocket frames, to the end of `into`
    /// (with WebSocket framing): when `into` is empty, by exchanging the buffers, so nothing
    /// is copied. The buffer kept for the next batch follows [`Output::KEPT_CAPACITY`].
    pub fn take_ws_frames(&mut self, into: &mut BytesMut) {
        self.end_frame();
        if into.is_empty() {
            std::mem::swap(into, &mut self.buf);
        } else {
            into.extend_from_slice(&self.buf);
        }
        self.clear();
    }

    /// Appends one complete frame that comes with its WebSocket header, as
    /// [`WsFramed::finish`] wrote it; `utf8` says whether the frame is valid UTF-8. With
    /// WebSocket framing it is copied whole, header and all; without, the frame alone. A frame
    /// encoded once for many connections (a STOMP MESSAGE) is kept that way, so that each
    /// connection copies it in one piece instead of framing it again.
    pub fn push_ws_framed(&mut self, framed: &[u8], utf8: bool) {
        let head = ws_header_len_of(framed);
        if framed.len() <= head {
            return;
        }
        // A frame left open ends here, as the transport would end it.
        if self.frame_open() {
            self.end_frame();
        }
        if self.ws {
            self.buf.extend_from_slice(framed);
            self.headers += head;
            self.ends.push(self.buf.len());
        } else {
            self.buf.extend_from_slice(&framed[head..]);
            self.end_frame_as(if utf8 { Self::KNOWN_UTF8 } else { 0 });
        }
    }

    /// Appends one complete frame.
    pub fn push_frame(&mut self, frame: &[u8]) {
        self.buf().extend_from_slice(frame);
        self.end_frame();
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of frames waiting to be sent (without WebSocket headers).
    pub fn len(&self) -> usize {
        self.buf.len() - self.headers
    }

    /// How many frames are waiting, counting one being written.
    pub fn frames(&self) -> usize {
        if self.ws {
            return self.ends.len() + usize::from(self.open.is_some_and(|(start, _)| self.buf.len() > start));
        }
        self.ends.len() + usize::from(self.buf.len() > self.last_end())
    }

    /// Prefer WebSocket text messages for frames that are valid UTF-8 (STOMP).
    pub fn set_prefer_text(&mut self, text: bool) {
        self.text = text;
    }

    /// Whether the protocol prefers text WebSocket messages.
    pub fn prefers_text(&self) -> bool {
        self.text
    }

    /// Takes everything written so far as one chunk.
    pub fn take_all(&mut self) -> Bytes {
        debug_assert!(!self.ws, "frames framed for a WebSocket are taken with take_ws_frames");
        self.ends.clear();
        self.buf.split().freeze()
    }

    /// Hands every frame written so far to `f`, in order, with whether it is valid UTF-8
    /// (checked here unless the adapter said so), then forgets them; the buffer keeps its
    /// capacity for the next batch unless it grew past [`Output::KEPT_CAPACITY`].
    pub fn drain_frames(&mut self, mut f: impl FnMut(&[u8], bool)) {
        debug_assert!(!self.ws, "frames framed for a WebSocket are taken with take_ws_frames");
        self.end_frame();
        let mut start = 0;
        for &e in &self.ends {
            let end = e & !Self::KNOWN_UTF8;
            let frame = &self.buf[start..end];
            f(frame, e & Self::KNOWN_UTF8 != 0 || std::str::from_utf8(frame).is_ok());
            start = end;
        }
        self.clear();
    }

    /// Hands everything written so far to `f` as one slice, then forgets it (see
    /// [`Output::drain_frames`]).
    pub fn drain_all(&mut self, f: impl FnOnce(&[u8])) {
        debug_assert!(!self.ws, "frames framed for a WebSocket are taken with take_ws_frames");
        f(&self.buf);
        self.clear();
    }

    /// The most a drained buffer keeps for the next batch; a larger one (after a burst) is
    /// given back, so an idle connection does not hold a burst's memory.
    pub const KEPT_CAPACITY: usize = 16 * 1024;

    fn clear(&mut self) {
        self.ends.clear();
        self.open = None;
        self.headers = 0;
        if self.buf.capacity() > Self::KEPT_CAPACITY {
            self.buf = BytesMut::new();
        } else {
            self.buf.clear();
        }
    }

    /// Takes everything written so far, one chunk per frame.
    /// With WebSocket framing, the frames come without their WebSocket headers.
    pub fn take_frames(&mut self, into: &mut Vec<Bytes>) {
        self.end_frame();
        let mut start = 0;
        for &e in &self.ends {
            let end = e & !Self::KNOWN_UTF8;
            let mut frame = self.buf.split_to(end - start);
            if self.ws {
                frame.advance(ws_header_len_of(&frame));
            }
            into.push(frame.freeze());
            start = end;
        }
        self.ends.clear();
        self.headers = 0;
    }
}

/// The length of a server's WebSocket frame header for a payload of `len` bytes (RFC 6455
/// §5.2, unmasked, the shortest form).
fn ws_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The length of the server's WebSocket frame header at the start of `framed` (2, 4 or 10
/// bytes, as its second byte says; unmasked).
pub fn ws_header_len_of(framed: &[u8]) -> usize {
    match framed.get(1) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

/// A frame written behind room for its WebSocket header, which [`WsFramed::finish`] fills in
/// once the frame's length is known: [`Output::push_ws_framed`] takes the result.
#[derive(Debug)]
pub struct WsFramed {
    buf: BytesMut,
}

impl WsFramed {
    /// The room for the longest header (RFC 6455 §5.2: 10 bytes for a server's frame).
    const ROOM: usize = 10;

    /// Starts a frame, expected to be about `len` bytes long.
    pub fn with_capacity(len: usize) -> WsFramed {
        let mut buf = BytesMut::with_capacity(Self::ROOM + len);
        buf.extend_from_slice(&[0; Self::ROOM]);
        WsFramed { buf }
    }

    /// The buffer to write the frame into (after what is there).
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The frame behind its header: a final, unmasked text frame if `utf8`, binary otherwise,
    /// with the length in the shortest form; the room the header did not need is dropped.
    pub fn finish(mut self, utf8: bool) -> Bytes {
        let Some(len) = self.buf.len().checked_sub(Self::ROOM) else {
            // The room was taken back through `buf`: there is no frame.
            return Bytes::new();
        };
        let (header, head) = ws_frame_header(if utf8 { 0x1 } else { 0x2 }, len);
        let at = Self::ROOM - head;
        self.buf[at..Self::ROOM].copy_from_slice(&header[..head]);
        self.buf.advance(at);
        self.buf.freeze()
    }
}

/// A final, unmasked WebSocket frame header (RFC 6455 §5.2: FIN, no RSV bits, the length in
/// the shortest form) for `opcode` and a `len`-byte payload: its bytes, and how many of the
/// ten are used (2, 4 or 10).
pub fn ws_frame_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x80 | opcode;
    let head = ws_header_len(len);
    match head {
        2 => header[1] = len as u8,
        4 => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
    (header, head)
}

/// A subscription that a persistent session keeps outside its queue's bindings
/// ([`Action::KeepSubscription`]): the filter as the client wrote it and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptSubscription {
    /// The filter text (`$share/<group>/<filter>`, `$queue/<name>`).
    pub filter: String,
    /// The requested QoS (0–2).
    pub qos: u8,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Retain Handling (0–2).
    pub retain_handling: u8,
    /// The MQTT 5 Subscription Identifier (0: none).
    pub ident: u32,
}

impl KeptSubscription {
    /// The stored form of a list: a version byte (1), then per subscription a flags byte (bit
    /// 0 No Local, bit 1 Retain As Published), the QoS, the Retain Handling, the identifier
    /// (u32) and the filter (u16 length, UTF-8), big-endian.
    pub fn encode_list(subs: &[KeptSubscription]) -> Vec<u8> {
        let mut out = vec![1];
        for s in subs {
            let Ok(len) = u16::try_from(s.filter.len()) else { continue };
            out.push(u8::from(s.no_local) | u8::from(s.retain_as_published) << 1);
            out.extend_from_slice(&[s.qos, s.retain_handling]);
            out.extend_from_slice(&s.ident.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.filter.as_bytes());
        }
        out
    }

    /// Reads [`KeptSubscription::encode_list`]'s form; `None` if it is not that.
    pub fn decode_list(bytes: &[u8]) -> Option<Vec<KeptSubscription>> {
        let (&version, mut bytes) = bytes.split_first()?;
        if version != 1 {
            return None;
        }
        let mut subs = Vec::new();
        while !bytes.is_empty() {
            let (&flags, rest) = bytes.split_first()?;
            let (&qos, rest) = rest.split_first()?;
            let (&retain_handling, mut rest) = rest.split_first()?;
            let ident = take_u32(&mut rest)?;
            let len = usize::from(take_u16(&mut rest)?);
            let filter = std::str::from_utf8(rest.get(..len)?).ok()?.to_string();
            bytes = &rest[len..];
            subs.push(KeptSubscription {
                filter,
                qos,
                no_local: flags & 1 != 0,
                retain_as_published: flags & 2 != 0,
                retain_handling,
                ident,
            });
        }
        Some(subs)
    }
}

/// The QoS 2 exchanges a persistent MQTT session has under way, which outlive its connection
/// ([`Adapter::qos2_flows`]). Kept by the broker while the client is away, and in the store
/// across a restart ([`Qos2Flows::encode`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qos2Flows {
    /// Packet identifiers of the client's QoS 2 publishes that wait for their release (PUBREC
    /// sent or owed, PUBREL not received): a PUBLISH resent with one of them is not routed
    /// again [MQTT-4.3.3-10].
    pub unreleased: Vec<u16>,
    /// The broker's QoS 2 deliveries from the session queue whose PUBREL was sent and whose
    /// PUBCOMP has not come: (packet identifier, queue entry), in the order of their PUBRECs.
    /// When the queue redelivers such an entry, the PUBREL is sent again instead of the
    /// PUBLISH [MQTT-4.4.0-1].
    pub released: Vec<(u16, Seq)>,
    /// Packet identifiers of the broker's other QoS 2 deliveries whose PUBREL was sent and
    /// whose PUBCOMP has not come (a retained message sent for a new subscription, a
    /// `$queue/` delivery): their PUBREL goes again when the session resumes, so that the
    /// client frees the identifier [MQTT-4.4.0-1].
    pub release_only: Vec<u16>,
}

impl Qos2Flows {
    /// Whether there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.unreleased.is_empty() && self.released.is_empty() && self.release_only.is_empty()
    }

    /// The stored form: a version byte (2), then the count and ids of `unreleased` (u32 and
    /// u16 each, big-endian), then the count and pairs of `released` (u32; u16 and u64 each),
    /// then the count and ids of `release_only`. Version 1 ended after `released`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.unreleased.len() * 2 + self.released.len() * 10);
        // Version 1 when it says everything, so that the build before this one reads it.
        let version = if self.release_only.is_empty() { 1 } else { 2 };
        out.push(version);
        out.extend_from_slice(&u32::try_from(self.unreleased.len()).unwrap_or(u32::MAX).to_be_bytes());
        for id in self.unreleased.iter().take(u32::MAX as usize) {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&u32::try_from(self.released.len()).unwrap_or(u32::MAX).to_be_bytes());
        for (id, seq) in self.released.iter().take(u32::MAX as usize) {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        if version == 2 {
            out.extend_from_slice(&u32::try_from(self.release_only.len()).unwrap_or(u32::MAX).to_be_bytes());
            for id in self.release_only.iter().take(u32::MAX as usize) {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out
    }

    /// Reads [`Qos2Flows::encode`]'s form; `None` if it is not that.
    pub fn decode(mut bytes: &[u8]) -> Option<Qos2Flows> {
        let version = *bytes.first()?;
        if version != 1 && version != 2 {
            return None;
        }
        bytes = &bytes[1..];
        let mut flows = Qos2Flows::default();
        let n = take_u32(&mut bytes)?;
        for _ in 0..n {
            flows.unreleased.push(take_u16(&mut bytes)?);
        }
        let n = take_u32(&mut bytes)?;
        for _ in 0..n {
            let id = take_u16(&mut bytes)?;
            let seq = bytes.get(..8)?.try_into().ok().map(u64::from_be_bytes)?;
            bytes = &bytes[8..];
            flows.released.push((id, seq));
        }
        if version >= 2 {
            let n = take_u32(&mut bytes)?;
            for _ in 0..n {
                flows.release_only.push(take_u16(&mut bytes)?);
            }
        }
        bytes.is_empty().then_some(flows)
    }
}

fn take_u16(bytes: &mut &[u8]) -> Option<u16> {
    let v = bytes.get(..2)?.try_into().ok().map(u16::from_be_bytes)?;
    *bytes = &bytes[2..];
    Some(v)
}

fn take_u32(bytes: &mut &[u8]) -> Option<u32> {
    let v = bytes.get(..4)?.try_into().ok().map(u32::from_be_bytes)?;
    *bytes = &bytes[4..];
    Some(v)
}

/// A protocol adapter: the protocol's session state and frame handling, without I/O.
pub trait Adapter: Send + 'static {
    /// Decodes and handles at most one complete frame from the front of `input`, writing
    /// replies to `out` and pushing actions. Returns `true` if a frame was consumed (call again),
    /// `false` if `input` holds no complete frame. The driver calls it after every read, so the
    /// adapter may note `now` as the time of the last inbound traffic. Malformed input is never
    /// a panic: the adapter writes the protocol's error and pushes [`Action::Close`].
    fn on_input(&mut self, input: &mut BytesMut, now: Instant, out: &mut Output, actions: &mut Vec<Action>) -> bool;

    /// The QoS 2 exchanges of a persistent session still under way when its connection ends
    /// (MQTT [MQTT-4.3.3-10] [MQTT-4.4.0-1]): the driver keeps them and hands them to the
    /// session's next connection ([`Adapter::restore_qos2_flows`]). None by default.
    fn qos2_flows(&self) -> Qos2Flows {
        Qos2Flows::default()
    }

    /// Takes back [`Adapter::qos2_flows`] from the session's previous connection, just before
    /// [`Adapter::on_session_opened`] with `present`.
    fn restore_qos2_flows(&mut self, flows: Qos2Flows) {
        let _ = flows;
    }

    /// Takes back the subscriptions a resumed persistent session kept outside its queue's
    /// bindings ([`Action::KeepSubscription`]), just before [`Adapter::on_session_opened`]
    /// with `present`: the adapter subscribes them again once the session is open.
    fn restore_subscriptions(&mut self, subs: Vec<KeptSubscription>) {
        let _ = subs;
    }

    /// The session asked for with [`Action::OpenSession`] is open; `present` says whether a
    /// stored session existed (MQTT CONNACK Session Present).
    fn on_session_opened(&mut self, present: bool, out: &mut Output, actions: &mut Vec<Action>) {
        let _ = (present, out, actions);
    }

    /// The answer to [`Action::Login`]: on a grant, go on with CONNECT (or confirm the
    /// re-authentication) and check every publish and subscribe against the grant's
    /// permissions from now on; on a refusal, write the protocol's refusal and close.
    fn on_login(&mut self, outcome: LoginOutcome, out: &mut Output, actions: &mut Vec<Action>);

    /// A publish that asked for an acknowledgement was routed (or refused).
    fn on_publish_done(
        &mut self,
        token: u64,
        result: Result<(), PublishError>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    );

    /// Whether the adapter holds a frame back until every publish it handed over so far has
    /// been reported through [`Adapter::on_publish_done`]. The driver then reports them (it
    /// waits for the store) before it calls [`Adapter::on_input`] again, which handles the
    /// held frame. The default never holds anything: MQTT's acknowledgements keep their order
    /// only among PUBLISHes [MQTT-4.6.0-2].
    fn awaits_publishes(&self) -> bool {
        false
    }

    /// Whether the adapter can take another delivery now (its inflight window has room and the
    /// protocol session is established).
    fn can_deliver(&self) -> bool;

    /// How many deliveries the adapter can take now, at least: each delivery uses up at most
    /// one place (a QoS 0 one none), so the driver may hand over this many without asking
    /// again. 0 exactly when [`Adapter::can_deliver`] is false.
    fn delivery_room(&self) -> usize {
        usize::from(self.can_deliver())
    }

    /// Encodes one delivery for the client.
    fn on_delivery(&mut self, delivery: Delivery, now: Instant, out: &mut Output);

    /// When the adapter next wants [`Adapter::on_timer`] (keep-alive, heart-beats, CONNECT
    /// timeout), if ever.
    fn next_timer(&self) -> Option<Instant>;

    /// A timer fired: send heart-beats, or close a silent peer.
    fn on_timer(&mut self, now: Instant, out: &mut Output, actions: &mut Vec<Action>);

    /// The driver wrote bytes to the socket at `now` (for outgoing heart-beats).
    fn on_sent(&mut self, now: Instant);

    /// The server is closing the connection for `reason`: write the protocol's goodbye, if it
    /// has one (STOMP ERROR, MQTT 5 DISCONNECT).
    fn on_server_close(&mut self, reason: &CloseReason, out: &mut Output);

    /// The connection has ended for `reason`; push what must happen now (an MQTT will).
    fn on_closed(&mut self, reason: &CloseReason, actions: &mut Vec<Action>);

    /// The client id, once the protocol CONNECT has been accepted.
    fn client_id(&self) -> Option<&str>;

    /// The protocol's name and version for logs (`mqtt/3.1.1`, `stomp/1.2`).
    fn protocol(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::Qos2Flows;

    #[test]
    fn kept_subscriptions_round_trip() {
        use super::KeptSubscription;
        let subs = vec![
            KeptSubscription {
                filter: "$share/g/a/#".into(),
                qos: 2,
                no_local: false,
                retain_as_published: true,
                retain_handling: 2,
                ident: 7,
            },
            KeptSubscription { filter: "$queue/jobs".into(), qos: 1, ..KeptSubscription::default() },
        ];
        let bytes = KeptSubscription::encode_list(&subs);
        assert_eq!(KeptSubscription::decode_list(&bytes), Some(subs));
        assert_eq!(KeptSubscription::decode_list(&[1]), Some(Vec::new()));
        for cut in 1..bytes.len() - 1 {
            if let Some(subs) = KeptSubscription::decode_list(&bytes[..cut]) {
                assert!(subs.len() < 2, "cut at {cut}");
            }
        }
        assert_eq!(KeptSubscription::decode_list(&[]), None);
        assert_eq!(KeptSubscription::decode_list(&[2]), None);
    }

    #[test]
    fn qos2_flows_round_trip_and_refuse_what_they_did_not_write() {
        let flows =
            Qos2Flows { unreleased: vec![1, 65535], released: vec![(7, 7), (3, u64::MAX)], release_only: vec![9, 2] };
        let bytes = flows.encode();
        assert_eq!(Qos2Flows::decode(&bytes), Some(flows));
        assert_eq!(Qos2Flows::decode(&Qos2Flows::default().encode()), Some(Qos2Flows::default()));
        assert_eq!(Qos2Flows::default().encode()[0], 1, "version 1 without release_only");
        assert!(Qos2Flows::default().is_empty());
        for cut in 0..bytes.len() {
            assert_eq!(Qos2Flows::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Qos2Flows::decode(&longer), None);
        let mut other_version = bytes;
        other_version[0] = 3;
        assert_eq!(Qos2Flows::decode(&other_version), None);
        // Version 1 (before `release_only`) still reads.
        let v1 = [1, 0, 0, 0, 1, 0, 5, 0, 0, 0, 0];
        assert_eq!(Qos2Flows::decode(&v1), Some(Qos2Flows { unreleased: vec![5], ..Qos2Flows::default() }));
    }
}
