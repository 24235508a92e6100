//! The transport seam: one byte stream whether it came over raw TCP or a WebSocket.
//!
//! The driver reads bytes and writes an adapter's [`Output`]; a `Link` hides whether those
//! bytes travel as TCP segments or as WebSocket messages. MQTT packets may span WebSocket
//! messages and one message may hold several [MQTT-6.0.0-2], so WebSocket payloads are simply
//! appended to the input buffer. Keeping this seam thin lets another WebSocket implementation
//! (tokio-tungstenite, once it speaks permessage-deflate) return without touching the driver.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use diglot_core::{CloseReason, Output};
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yawc::close::CloseCode;
use yawc::{Frame, HttpStream, OpCode, WebSocket};

/// What one read produced.
pub enum Read {
    /// This many bytes were appended to the input buffer.
    Data(usize),
    /// The peer ended the stream (EOF or a WebSocket close frame).
    Closed,
    /// The peer broke the transport's rules.
    Violation(String),
    /// A WebSocket frame or message over `limits.max_ws_frame_bytes` / `max_ws_message_bytes`.
    TooLarge(String),
}

/// A byte stream: plain TCP or TLS over TCP. yawc's trait, so that a WebSocket listener's
/// stream, handed to hyper as `Box<dyn Io>`, is taken back out of hyper after the upgrade and
/// read and written directly (the yawc patch's `HttpStream::Raw`).
pub use yawc::RawStream as Io;

/// A connection's transport.
pub enum Link {
    /// Raw TCP (or TLS over TCP).
    Tcp(Box<dyn Io>),
    /// A WebSocket; `binary_only` refuses text messages (MQTT requires binary [MQTT-6.0.0-1]).
    Ws { ws: Box<WsConn>, binary_only: bool, ping: Option<Ping> },
}

/// A WebSocket and what its reads and writes keep, in one allocation (504 bytes: mimalloc's
/// 512-byte bin), out of the connection task, whose allocation tokio keeps for the
/// connection's life and which must stay in mimalloc's 2,048-byte bin (the test
/// `a_connection_task_stays_small`).
pub struct WsConn {
    ws: WebSocket<HttpStream>,
    scratch: Vec<Bytes>,
    /// How the stream ended, found by a read that still had data to return (boxed: every idle
    /// connection carries the field).
    deferred: Option<Box<io::Result<Read>>>,
    /// Tells a read whether the WebSocket can have anything for it ([`ReadGate`]).
    gate: ReadGate,
    /// yawc failed the connection on a frame (a protocol error, invalid UTF-8, a frame over
    /// the limit) and reads no more frames: [`Link::linger`] discards raw input instead.
    failed: bool,
    /// The client sent a text message to MQTT, which takes binary ones only [MQTT-6.0.0-1]:
    /// the close says so with 1003 (RFC 6455 §7.4.1, "a type of data it cannot accept").
    unsupported: bool,
}

impl WsConn {
    /// A WebSocket ready for the driver.
    pub fn new(ws: WebSocket<HttpStream>) -> WsConn {
        WsConn { ws, scratch: Vec::new(), deferred: None, gate: ReadGate::new(), failed: false, unsupported: false }
    }
}

/// Lets a WebSocket read that cannot find anything return at once. The driver's `select!`
/// polls the read on every wake-up of the connection's task, also when it was woken for
/// deliveries, and after each event; each such poll went down through yawc, tokio-util's
/// `Framed` and the socket's readiness, about 560 instructions, for nothing four times per
/// message at 1,000 messages/s (docs/benchmarks.md, "Latency: …"). So the WebSocket is polled
/// with a waker of its own, which marks the gate open before it wakes the task: while the last
/// poll came back empty and nothing has woken that waker since, the read is still empty.
/// A write, a ping or a close through the WebSocket opens the gate too: yawc holds back the
/// end of the stream until a pong it owes has been sent, and a send by the writer wakes no
/// reader.
struct ReadGate(Arc<GateWaker>);

struct GateWaker {
    open: AtomicBool,
    /// The last poll of the WebSocket came back pending, with this waker registered (only the
    /// connection's task reads and writes it).
    parked: AtomicBool,
    task: futures::task::AtomicWaker,
}

impl std::task::Wake for GateWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.open.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl ReadGate {
    /// A gate that lets the first read through.
    fn new() -> ReadGate {
        ReadGate(Arc::new(GateWaker {
            open: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            task: Default::default(),
        }))
    }

    /// Whether a read may skip the WebSocket: its last poll was pending and its waker has not
    /// been woken since. Registers `cx`'s waker to be woken when it is.
    fn closed(&mut self, cx: &Context<'_>) -> bool {
        self.0.task.register(cx.waker());
        self.0.parked.load(Ordering::Relaxed) && !self.0.open.load(Ordering::Acquire)
    }

    /// The waker to poll the WebSocket with, for a poll that starts now.
    fn waker(&mut self) -> Waker {
        self.0.open.store(false, Ordering::Release);
        self.0.parked.store(false, Ordering::Relaxed);
        Waker::from(self.0.clone())
    }

    /// The poll with [`ReadGate::waker`] came back pending.
    fn park(&mut self) {
        self.0.parked.store(true, Ordering::Relaxed);
    }

    /// Lets the next read through.
    fn open(&mut self) {
        self.0.parked.store(false, Ordering::Relaxed);
    }
}

/// Server-side WebSocket pings: after `interval` without any frame from the client, send a
/// ping; if nothing (a pong or anything else) arrives within another `interval`, the
/// connection is dead, even when the protocol's own keep-alive is off (a peer vanished behind
/// a proxy that keeps the TCP connection open).
pub struct Ping {
    interval: std::time::Duration,
    /// When the peer was last heard from, or, once a ping is out, when it was sent.
    since: std::time::Instant,
    /// A ping is out and unanswered.
    sent: bool,
}

impl Ping {
    /// Pings after `interval` of silence.
    pub fn new(interval: std::time::Duration) -> Ping {
        Ping { interval, since: std::time::Instant::now(), sent: false }
    }

    fn seen(&mut self, now: std::time::Instant) {
        self.since = now;
        self.sent = false;
    }

    fn deadline(&self) -> std::time::Instant {
        self.since + self.interval
    }
}

/// What a link timer found.
pub enum LinkTimer {
    /// Nothing to do yet, or a ping went out.
    Alive,
    /// The peer did not answer a ping in time.
    Dead,
}

/// How much a TCP read asks for at once.
const TCP_READ_CHUNK: usize = 8 * 1024;

/// After this many bytes of WebSocket payload, a read returns without taking the next frame.
const WS_READ_BATCH: usize = 16 * 1024;

impl Link {
    /// Reads the next chunk of bytes into `input`. Cancel-safe: nothing is lost if the future is
    /// dropped before it completes.
    pub async fn read(&mut self, input: &mut BytesMut) -> io::Result<Read> {
        match self {
            Link::Tcp(s) => {
                input.reserve(TCP_READ_CHUNK);
                let n = s.read_buf(input).await?;
                Ok(if n == 0 { Read::Closed } else { Read::Data(n) })
            }
            Link::Ws { ws, binary_only, ping } => {
                let WsConn { ws, deferred, gate, failed, unsupported, .. } = &mut **ws;
                if let Some(end) = deferred.take() {
                    return *end;
                }
                // Every data frame that has already arrived, up to `WS_READ_BATCH` bytes, in one
                // read: a client sends one frame per packet, and the driver's cost per event
                // (the select, the counters, the clock) should not be paid per packet. What
                // ends the stream after some data waits in `deferred` for the next read. Within
                // one poll either data is taken and returned, or nothing is: cancel-safe.
                let mut got: Option<usize> = None;
                std::future::poll_fn(|cx| {
                    if gate.closed(cx) {
                        return Poll::Pending;
                    }
                    let waker = gate.waker();
                    let mut cx = Context::from_waker(&waker);
                    loop {
                        let end = match ws.poll_next_frame(&mut cx) {
                            Poll::Pending => {
                                gate.park();
                                return got.map_or(Poll::Pending, |n| Poll::Ready(Ok(Read::Data(n))));
                            }
                            Poll::Ready(Ok(frame)) => {
                                let text = frame.opcode() == OpCode::Text;
                                match frame.opcode() {
                                    OpCode::Binary | OpCode::Text if !(text && *binary_only) => {
                                        // A data frame is marked seen by the driver ([`Link::heard`]),
                                        // with the clock reading it takes for the event anyway.
                                        input.extend_from_slice(frame.payload());
                                        let n = got.unwrap_or(0) + frame.payload().len();
                                        got = Some(n);
                                        if input.len() >= WS_READ_BATCH {
                                            return Poll::Ready(Ok(Read::Data(n)));
                                        }
                                        continue;
                                    }
                                    OpCode::Binary | OpCode::Text => {
                                        *unsupported = true;
                                        Ok(Read::Violation("text WebSocket message on an MQTT connection".into()))
                                    }
                                    OpCode::Close => Ok(Read::Closed),
                                    // yawc answers pings itself and reassembles continuation frames.
                                    OpCode::Ping | OpCode::Pong | OpCode::Continuation => {
                                        if let Some(p) = ping.as_mut() {
                                            p.seen(std::time::Instant::now());
                                        }
                                        continue;
                                    }
                                }
                            }
                            Poll::Ready(Err(yawc::WebSocketError::ConnectionClosed)) => Ok(Read::Closed),
                            Poll::Ready(Err(e @ yawc::WebSocketError::FrameTooLarge)) => {
                                *failed = true;
                                Ok(Read::TooLarge(e.to_string()))
                            }
                            // RFC 6455 §8.1: a text message that is not UTF-8 fails the
                            // connection (close code 1007), like any other bad frame.
                            Poll::Ready(Err(e))
                                if e.is_protocol_error() || matches!(e, yawc::WebSocketError::InvalidUTF8) =>
                            {
                                *failed = true;
                                Ok(Read::Violation(e.to_string()))
                            }
                            Poll::Ready(Err(e)) => Err(io::Error::other(e.to_string())),
                        };
                        return Poll::Ready(match got {
                            None => end,
                            Some(n) => {
                                *deferred = Some(Box::new(end));
                                Ok(Read::Data(n))
                            }
                        });
                    }
                })
                .await
            }
        }
    }

    /// Whether an adapter that wants one WebSocket message per frame (STOMP) can have its
    /// output framed in place ([`Output::set_ws_framing`]): a WebSocket without compression.
    pub fn frames_in_place(&mut self) -> bool {
        match self {
            Link::Tcp(_) => false,
            Link::Ws { ws, .. } => ws.ws.raw_write_buffer().is_some(),
        }
    }

    /// The peer sent data at `now` (a [`Read::Data`] from this link): no server ping is due
    /// until an interval after it.
    pub fn heard(&mut self, now: std::time::Instant) {
        if let Link::Ws { ping: Some(p), .. } = self {
            p.seen(now);
        }
    }

    /// When [`Link::on_timer`] wants to run next (server-side WebSocket pings), if ever.
    pub fn next_timer(&self) -> Option<std::time::Instant> {
        match self {
            Link::Ws { ping: Some(p), .. } => Some(p.deadline()),
            _ => None,
        }
    }

    /// Sends a ping after silence, or reports a peer that did not answer the last one.
    pub async fn on_timer(&mut self, now: std::time::Instant) -> io::Result<LinkTimer> {
        let Link::Ws { ws, ping: Some(p), .. } = self else { return Ok(LinkTimer::Alive) };
        if now < p.deadline() {
            return Ok(LinkTimer::Alive);
        }
        if p.sent {
            return Ok(LinkTimer::Dead);
        }
        p.sent = true;
        p.since = now;
        ws.gate.open();
        ws.ws.send(Frame::ping(Bytes::from_static(b"diglot"))).await.map_err(ws_err)?;
        Ok(LinkTimer::Alive)
    }

    /// Writes everything in `out`. Over a WebSocket, a protocol that prefers text (STOMP) gets one
    /// message per frame, as text when it is valid UTF-8; MQTT gets one binary message.
    pub async fn write(&mut self, out: &mut Output) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        match self {
            Link::Tcp(s) => {
                let bytes = out.take_all();
                s.write_all(&bytes).await
            }
            Link::Ws { ws, .. } => {
                let WsConn { ws, scratch, gate, .. } = &mut **ws;
                gate.open();
                if let Some(buf) = ws.raw_write_buffer() {
                    // Framed here, straight into the write buffer: one header per frame next
                    // to the adapter's bytes, no `Frame` per message (no permessage-deflate on
                    // this connection, so nothing to compress).
                    put_ws_frames(buf, out);
                } else if out.prefers_text() || out.ws_framing() {
                    out.take_frames(scratch);
                    for chunk in scratch.drain(..) {
                        let frame =
                            if std::str::from_utf8(&chunk).is_ok() { Frame::text(chunk) } else { Frame::binary(chunk) };
                        ws.feed(frame).await.map_err(ws_err)?;
                    }
                } else {
                    ws.feed(Frame::binary(out.take_all())).await.map_err(ws_err)?;
                }
                ws.flush().await.map_err(ws_err)
            }
        }
    }

    /// Ends the transport: a WebSocket close frame with a code that fits `reason`, or a TCP
    /// shutdown. Errors are ignored: the peer may already be gone.
    pub async fn close(&mut self, reason: &CloseReason) {
        match self {
            Link::Tcp(s) => {
                let _ = s.shutdown().await;
            }
            Link::Ws { ws, .. } => {
                let WsConn { ws, gate, unsupported, .. } = &mut **ws;
                gate.open();
                let (code, text) = match (*unsupported, reason) {
                    (true, CloseReason::ProtocolError(_)) => (CloseCode::Unsupported, "binary messages only"),
                    _ => ws_close_code(reason),
                };
                let _ = ws.send(Frame::close(code, text)).await;
                let _ = ws.flush().await;
            }
        }
    }

    /// After [`Link::close`]: reads, and throws away, what the peer still sends, until it ends
    /// the stream (EOF, or its WebSocket close frame) or has sent `max` bytes. A socket closed
    /// with unread input is reset by the kernel, and a peer still writing (pipelined frames, a
    /// PUBREL for each PUBREC) then fails on its next write, before it has read the goodbye
    /// that tells it why; reading on until the peer closes (what HTTP servers call a lingering
    /// close) lets it read that goodbye. Once yawc has failed the WebSocket on a bad frame (a
    /// protocol error, invalid UTF-8, a frame over the limit, whose payload it leaves unread),
    /// it reads no more frames, and the raw bytes are discarded up to EOF instead. The caller
    /// bounds the time.
    pub async fn linger(&mut self, scratch: &mut BytesMut, max: usize) {
        let mut seen = 0usize;
        while seen < max {
            if let Link::Ws { ws, .. } = self {
                if ws.failed {
                    let ws = &mut ws.ws;
                    match std::future::poll_fn(|cx| ws.poll_discard_input(cx)).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen += n,
                    }
                    continue;
                }
            }
            scratch.clear();
            match self.read(scratch).await {
                Ok(Read::Data(n)) => seen += n,
                // A frame yawc fails the WebSocket on (the raw bytes are read from then on), or
                // a text message to MQTT: discarded like the rest.
                Ok(Read::Violation(_) | Read::TooLarge(_)) => {}
                Ok(Read::Closed) | Err(_) => return,
            }
        }
    }
}

/// Appends `out` to a server's WebSocket write buffer as complete frames (RFC 6455 §5.2: FIN,
/// no RSV bits, unmasked): one text frame per protocol frame that is valid UTF-8 when the
/// protocol prefers text (STOMP; a binary frame otherwise), or all of it as one binary frame
/// (MQTT packets may share a WebSocket message [MQTT-6.0.0-2]).
fn put_ws_frames(buf: &mut BytesMut, out: &mut Output) {
    if out.ws_framing() {
        // Framed by the adapter's output as it wrote them.
        out.take_ws_frames(buf);
    } else if out.prefers_text() {
        // Room for every frame and its header (at most 10 bytes each) at once, so that the
        // buffer does not have to grow, copying what it already holds, halfway through.
        buf.reserve(out.len() + 10 * out.frames());
        out.drain_frames(|frame, utf8| {
            let opcode = if utf8 { WS_TEXT } else { WS_BINARY };
            put_ws_header(buf, opcode, frame.len());
            buf.extend_from_slice(frame);
        });
    } else {
        out.drain_all(|all| {
            buf.reserve(all.len() + 10);
            put_ws_header(buf, WS_BINARY, all.len());
            buf.extend_from_slice(all);
        });
    }
}

const WS_TEXT: u8 = 0x1;
const WS_BINARY: u8 = 0x2;

/// A final, unmasked frame's header (RFC 6455 §5.2): 2, 4 or 10 bytes.
fn put_ws_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    let (header, head) = diglot_core::ws_frame_header(opcode, len);
    buf.extend_from_slice(&header[..head]);
}

fn ws_err(e: yawc::WebSocketError) -> io::Error {
    io::Error::other(e.to_string())
}

/// The WebSocket close code for a close reason (RFC 6455 §7.4.1).
fn ws_close_code(reason: &CloseReason) -> (CloseCode, &'static str) {
    match reason {
        CloseReason::ServerShutdown => (CloseCode::Away, "server shutting down"),
        CloseReason::ProtocolError(_) => (CloseCode::Protocol, "protocol error"),
        CloseReason::LimitExceeded(_) => (CloseCode::Size, "limit exceeded"),
        CloseReason::SlowConsumer => (CloseCode::Policy, "slow consumer"),
        CloseReason::KeepAliveTimeout => (CloseCode::Policy, "keep-alive timeout"),
        CloseReason::HandshakeTimeout => (CloseCode::Policy, "connect timeout"),
        CloseReason::SessionTakenOver => (CloseCode::Policy, "session taken over"),
        CloseReason::ConnectRefused(_) => (CloseCode::Policy, "connect refused"),
        CloseReason::AuthExpired => (CloseCode::Policy, "credentials expired"),
        CloseReason::Kicked => (CloseCode::Policy, "closed by an administrator"),
        CloseReason::NotAuthorized(_) => (CloseCode::Policy, "not authorized"),
        CloseReason::Io(_) => (CloseCode::Error, "i/o error"),
        CloseReason::ClientDisconnect | CloseReason::PeerClosed => (CloseCode::Normal, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diglot_core::WsFramed;

    #[test]
    fn ws_headers_take_the_shortest_length_form() {
        let header = |len: usize| {
            let mut b = BytesMut::new();
            put_ws_header(&mut b, WS_BINARY, len);
            b.to_vec()
        };
        assert_eq!(header(0), [0x82, 0]);
        assert_eq!(header(125), [0x82, 125]);
        assert_eq!(header(126), [0x82, 126, 0, 126]);
        assert_eq!(header(65_535), [0x82, 126, 0xff, 0xff]);
        assert_eq!(header(65_536), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn stomp_frames_become_one_message_each_and_text_only_when_utf8() {
        let mut out = Output::new();
        out.set_prefer_text(true);
        out.push_frame(b"MESSAGE\n\nhi\0");
        out.push_frame(b"MESSAGE\n\n\xff\0");
        let mut buf = BytesMut::new();
        put_ws_frames(&mut buf, &mut out);
        assert_eq!(&buf[..], &short_frames(&[(WS_TEXT, b"MESSAGE\n\nhi\0"), (WS_BINARY, b"MESSAGE\n\n\xff\0")])[..]);
        assert!(out.is_empty());
    }

    /// Final server frames under 126 bytes, one per `(opcode, payload)`.
    fn short_frames(frames: &[(u8, &[u8])]) -> Vec<u8> {
        let mut want = Vec::new();
        for (opcode, payload) in frames {
            want.extend_from_slice(&[0x80 | opcode, payload.len() as u8]);
            want.extend_from_slice(payload);
        }
        want
    }

    #[test]
    fn frames_the_adapter_knows_to_be_utf8_are_text_and_keep_their_bounds() {
        let mut out = Output::new();
        out.set_prefer_text(true);
        out.buf().extend_from_slice(b"MESSAGE\n\nhi\0");
        out.end_utf8_frame();
        out.buf().extend_from_slice(b"MESSAGE\n\n\xff\0");
        out.end_frame();
        out.buf().extend_from_slice(b"RECEIPT\n\n\0");
        assert_eq!(out.frames(), 3, "the frame being written counts");
        out.end_utf8_frame();
        assert_eq!(out.frames(), 3);
        let mut buf = BytesMut::new();
        put_ws_frames(&mut buf, &mut out);
        let want = short_frames(&[
            (WS_TEXT, b"MESSAGE\n\nhi\0"),
            (WS_BINARY, b"MESSAGE\n\n\xff\0"),
            (WS_TEXT, b"RECEIPT\n\n\0"),
        ]);
        assert_eq!(&buf[..], &want[..]);
        // The compressed path splits the same frames.
        out.buf().extend_from_slice(b"A\0");
        out.end_utf8_frame();
        out.buf().extend_from_slice(b"B\0");
        out.end_frame();
        let mut chunks = Vec::new();
        out.take_frames(&mut chunks);
        assert_eq!(chunks, [Bytes::from_static(b"A\0"), Bytes::from_static(b"B\0")]);
    }

    #[test]
    fn frames_framed_in_place_are_the_same_messages_and_the_same_frames() {
        let big = vec![b'x'; 70_000];
        let frames: [&[u8]; 5] = [b"MESSAGE\n\nhi\0", b"MESSAGE\n\n\xff\0", &big[..125], &big[..126], &big];
        let write = |out: &mut Output| {
            out.set_prefer_text(true);
            // Room made before a batch (a new buffer when nothing waits) or in the middle of
            // one, with a frame open, changes nothing in what is sent.
            out.reserve(64);
            for (i, f) in frames.iter().enumerate() {
                out.buf().extend_from_slice(f);
                if i == 0 {
                    out.end_utf8_frame();
                } else {
                    out.end_frame();
                }
            }
            // Room guessed wrong either way is made right; an empty frame is nothing; a frame
            // left open is ended by the transport.
            out.buf_sized(70_000).extend_from_slice(b"short");
            out.end_frame();
            out.buf_sized(10).extend_from_slice(&big[..300]);
            out.end_frame();
            out.buf_sized(200);
            out.end_frame();
            out.buf();
            out.end_frame();
            // Frames that come with their own header, of each header size, text and binary,
            // behind a frame left open.
            out.buf().extend_from_slice(b"open");
            out.reserve(200_000);
            for (frame, utf8) in
                [(&b"MESSAGE\n\nkept\0"[..], true), (&big[..300], true), (&big, true), (b"\xff", false)]
            {
                let mut framed = WsFramed::with_capacity(frame.len());
                framed.buf().extend_from_slice(frame);
                out.push_ws_framed(&framed.finish(utf8), utf8);
            }
            out.buf().extend_from_slice(b"\n");
        };
        let (mut copied, mut framed) = (Output::new(), Output::new());
        framed.set_ws_framing(true);
        write(&mut copied);
        write(&mut framed);
        assert_eq!(framed.len(), copied.len(), "WebSocket headers are not counted as output");
        assert_eq!(framed.frames(), copied.frames());
        let (mut want, mut got) = (BytesMut::new(), BytesMut::new());
        put_ws_frames(&mut want, &mut copied);
        put_ws_frames(&mut got, &mut framed);
        assert_eq!(got, want);
        assert!(framed.is_empty() && framed.frames() == 0);
        // Behind bytes already waiting in the write buffer, the frames are appended.
        write(&mut framed);
        put_ws_frames(&mut got, &mut framed);
        assert_eq!(&got[want.len()..], &want[..]);
        // Where frames cannot be written in place (compression), they come out bare.
        write(&mut framed);
        let mut chunks = Vec::new();
        framed.take_frames(&mut chunks);
        let mut bare: Vec<&[u8]> = frames.to_vec();
        bare.extend([&b"short"[..], &big[..300], b"open", b"MESSAGE\n\nkept\0", &big[..300], &big, b"\xff", b"\n"]);
        assert_eq!(chunks.iter().map(|c| &c[..]).collect::<Vec<_>>(), bare);
        assert!(framed.is_empty());
    }

    #[test]
    fn mqtt_packets_share_one_binary_message() {
        let mut out = Output::new();
        out.push_frame(&[0xd0, 0]);
        out.push_frame(&[0x30, 3, 0, 1, b't']);
        let mut buf = BytesMut::new();
        put_ws_frames(&mut buf, &mut out);
        assert_eq!(&buf[..], &[0x82, 7, 0xd0, 0, 0x30, 3, 0, 1, b't']);
        assert!(out.is_empty());
    }
}
