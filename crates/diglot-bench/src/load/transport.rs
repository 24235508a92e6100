//! The byte pipes under the load generator's clients: raw TCP, or a WebSocket client of its
//! own over TCP. Split into a [`Reader`] and a [`Writer`] so that one task can publish while
//! another reads.
//!
//! The WebSocket client is hand-made rather than tokio-tungstenite's, because the generator
//! shares the machine's two cores with the broker it measures: every cycle it spends is one the
//! broker does not get. It does one handshake (`Sec-WebSocket-Accept` checked), writes masked
//! frames straight into the batch buffer, and reads by parsing frame headers in its read buffer
//! and copying the payloads out: no `Message` per frame, no split stream behind a lock. A ping
//! from the server is answered at once. No TLS, no compression, no redirects.
//!
//! Writes are batched: [`Writer::push`] only appends to one buffer (WebSocket: one message per
//! protocol packet) and [`Writer::flush`] hands the whole batch to the socket.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;

/// How a connection is made at the socket level.
#[derive(Debug, Clone, Default)]
pub struct SocketOpts {
    /// Bind to this source address before connecting (port chosen by the kernel).
    pub source: Option<IpAddr>,
    /// `SO_RCVBUF` in bytes, to make a slow reader push back on the sender sooner.
    pub recv_buffer: Option<u32>,
}

/// Opens a TCP connection with `TCP_NODELAY` (the writer batches by itself).
pub async fn tcp(addr: SocketAddr, opts: &SocketOpts) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = opts.source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The largest handshake response and the largest message the client accepts.
const MAX_HEAD: usize = 16 * 1024;
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A small xorshift generator for `Sec-WebSocket-Key` and the masking keys: a load generator
/// needs keys that differ, not keys an attacker cannot guess.
pub struct Keys(u64);

impl Keys {
    fn new(seed: u64) -> Keys {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Keys((nanos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Opens a WebSocket at `url` (`ws://host:port/path?query`) over a connection to `addr`,
/// offering `subprotocol` if given. Text messages are used when `text` is set (STOMP).
pub async fn websocket(
    addr: SocketAddr,
    url: &str,
    subprotocol: Option<&str>,
    text: bool,
    opts: &SocketOpts,
) -> io::Result<(Reader, Writer)> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| io::Error::other(format!("{url}: not a ws:// URL")))?;
    // `ws://h:p?q` asks for `/?q`: the query stays.
    let (host, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let mut stream = tcp(addr, opts).await?;
    let local = stream.local_addr().map_or(0, |a| u64::from(a.port()));
    let mut keys = Keys::new(local);
    let key = base64::engine::general_purpose::STANDARD
        .encode([keys.next().to_le_bytes(), keys.next().to_le_bytes()].concat());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = subprotocol {
        request.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    let mut buf = BytesMut::with_capacity(4096);
    let head_len = loop {
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("the handshake response is too long"));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("the server closed the connection during the handshake"));
        }
    };
    let head = buf.split_to(head_len);
    check_response(&head, &key, subprotocol)?;

    let (read, write) = stream.into_split();
    let write = Arc::new(Mutex::new(write));
    let reader = WsReader {
        read,
        buf,
        pos: 0,
        write: write.clone(),
        keys: Keys::new(local ^ 0x5555),
        message: BytesMut::new(),
        pong: None,
    };
    let writer = Writer::Ws { write, buf: BytesMut::with_capacity(64 * 1024), text, keys };
    Ok((Reader::Ws(reader), writer))
}

/// Checks the server's answer to the upgrade: 101, the right `Sec-WebSocket-Accept`, and no
/// subprotocol other than the one offered.
fn check_response(head: &[u8], key: &str, subprotocol: Option<&str>) -> io::Result<()> {
    let text = std::str::from_utf8(head).map_err(|_| io::Error::other("the handshake response is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("the server refused the upgrade: {status}")));
    }
    let expected = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(format!("{key}{GUID}").as_bytes()));
    let mut accepted = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == expected;
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") && Some(value) != subprotocol {
            return Err(io::Error::other(format!("the server chose the subprotocol {value:?}")));
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") && !value.is_empty() {
            return Err(io::Error::other(format!("the server chose extensions it was not offered: {value}")));
        }
    }
    if accepted {
        Ok(())
    } else {
        Err(io::Error::other("no or a wrong Sec-WebSocket-Accept in the handshake response"))
    }
}

/// Splits a TCP stream into the two halves.
pub fn split_tcp(stream: TcpStream) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    (Reader::Tcp { read: r, buf: BytesMut::new() }, Writer::Tcp { write: w, buf: BytesMut::with_capacity(64 * 1024) })
}

/// Appends one client frame (FIN set, masked) with `opcode` and `payload` to `out`.
fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8], keys: &mut Keys) {
    out.reserve(14 + payload.len());
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.put_u8(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.put_u8(0x80 | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0x80 | 127);
            out.put_u64(n as u64);
        }
    }
    let mask = (keys.next() as u32).to_ne_bytes();
    out.put_slice(&mask);
    let start = out.len();
    out.put_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeated 4-byte `mask`, eight bytes at a time.
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// One frame header as read from the server: (fin, opcode, header length, payload length), or
/// `None` when the buffer does not hold the whole header yet.
#[inline(always)]
fn parse_header(buf: &[u8]) -> io::Result<Option<(bool, u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(io::Error::other("a frame with RSV bits set (no extension was negotiated)"));
    }
    if b1 & 0x80 != 0 {
        return Err(io::Error::other("a masked frame from the server"));
    }
    let (head, len) = match b1 & 0x7F {
        126 if buf.len() < 4 => return Ok(None),
        126 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() < 10 => return Ok(None),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (10, usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX))
        }
        n => (2, usize::from(n)),
    };
    if len > MAX_MESSAGE {
        return Err(io::Error::other(format!("a {len}-byte frame")));
    }
    Ok(Some((b0 & 0x80 != 0, b0 & 0x0F, head, len)))
}

/// The receiving half of a WebSocket.
pub struct WsReader {
    read: OwnedReadHalf,
    buf: BytesMut,
    /// How many bytes at the front of `buf` were handled already.
    pos: usize,
    write: Arc<Mutex<OwnedWriteHalf>>,
    keys: Keys,
    /// The fragments of a message not finished yet ([`Reader::next_chunk`]).
    message: BytesMut,
    /// Pongs not written yet (the result of a read of data stays small without them).
    pong: Option<BytesMut>,
}

/// What [`WsReader::step`] found in the read buffer.
enum Step {
    /// A data frame's payload was handed out; `true` if it ended its message.
    Data(bool),
    /// A pong frame was ignored.
    Control,
    /// A ping came: its pong waits in [`WsReader::pong`] to be written.
    Ping,
    /// The server closed the WebSocket.
    Closed,
    /// The buffer holds no whole frame.
    More,
}

impl WsReader {
    /// Handles the first frame of the read buffer: a data frame's payload goes to `out`,
    /// unless it is a whole message, `out` is empty and `whole` takes it in place. Not async:
    /// the frames one read brought are taken in one loop, and only a ping's pong is left for
    /// the caller to write.
    fn step(&mut self, out: &mut BytesMut, whole: &mut impl FnMut(&[u8]) -> bool) -> io::Result<Step> {
        let unread = &self.buf[self.pos..];
        let Some((fin, opcode, head, len)) = parse_header(unread)? else { return Ok(Step::More) };
        let Some(payload) = unread.get(head..head + len) else {
            self.discard_read();
            self.buf.reserve(head + len - self.buf.len());
            return Ok(Step::More);
        };
        // The read buffer is advanced once per read, not once per frame (a STOMP fan-out
        // brings one frame per message).
        self.pos += head + len;
        match opcode {
            0..=2 => {
                if !(fin && out.is_empty() && whole(payload)) {
                    out.extend_from_slice(payload);
                }
                Ok(Step::Data(fin))
            }
            8 => Ok(Step::Closed),
            9 => {
                let pong = self.pong.get_or_insert_with(BytesMut::new);
                put_frame(pong, 0xA, payload, &mut self.keys);
                Ok(Step::Ping)
            }
            0xA => Ok(Step::Control),
            other => Err(io::Error::other(format!("a frame with the unknown opcode {other}"))),
        }
    }

    /// Drops the frames [`WsReader::step`] has handled from the read buffer.
    fn discard_read(&mut self) {
        self.buf.advance(self.pos);
        self.pos = 0;
    }

    /// Writes the pongs that answer the pings read so far.
    async fn send_pongs(&mut self) -> io::Result<()> {
        if let Some(pong) = self.pong.take() {
            self.write.lock().await.write_all(&pong).await?;
        }
        Ok(())
    }

    async fn read_more(&mut self) -> io::Result<bool> {
        self.discard_read();
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        Ok(self.read.read_buf(&mut self.buf).await? > 0)
    }
}

/// The receiving half.
pub enum Reader {
    /// Raw TCP.
    Tcp {
        /// The socket's read half.
        read: OwnedReadHalf,
        /// Where reads land for [`Reader::next_chunk`].
        buf: BytesMut,
    },
    /// WebSocket.
    Ws(WsReader),
}

impl Reader {
    /// Appends what arrives next to `out`: for TCP the bytes of one read, for a WebSocket the
    /// payloads of every whole data frame one read brought (at least one). A WebSocket message
    /// that arrives whole while `out` is empty is first offered to `whole`, which may take it in
    /// place instead (then it is not appended); whatever follows a message that was appended is
    /// appended too, so `out` keeps the order. `Ok(false)` when the peer closed. Cancel-safe
    /// while it waits for the socket: nothing is lost if the future is dropped then (not while
    /// it writes a pong, which the broker only asks for when idle).
    pub async fn fill_with(&mut self, out: &mut BytesMut, mut whole: impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
        match self {
            Reader::Tcp { read, .. } => {
                if out.capacity() - out.len() < 4096 {
                    out.reserve(64 * 1024);
                }
                Ok(read.read_buf(out).await? > 0)
            }
            Reader::Ws(ws) => {
                let mut got = false;
                loop {
                    match ws.step(out, &mut whole)? {
                        Step::Data(_) => got = true,
                        Step::Control => {}
                        Step::Ping => ws.send_pongs().await?,
                        Step::Closed => return Ok(got),
                        Step::More if got => return Ok(true),
                        Step::More => {
                            if !ws.read_more().await? {
                                return Ok(false);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The next chunk of bytes; for a WebSocket, exactly one message's payload. `Ok(None)` when
    /// the peer closed. Cancel-safe.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Reader::Tcp { read, buf } => {
                if buf.capacity() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                match read.read_buf(buf).await? {
                    0 => Ok(None),
                    _ => Ok(Some(buf.split().freeze())),
                }
            }
            Reader::Ws(ws) => loop {
                let mut message = std::mem::take(&mut ws.message);
                let step = ws.step(&mut message, &mut |_| false);
                ws.message = message;
                match step? {
                    Step::Data(true) => return Ok(Some(ws.message.split().freeze())),
                    Step::Data(false) | Step::Control => {}
                    Step::Ping => ws.send_pongs().await?,
                    Step::Closed => return Ok(None),
                    Step::More => {
                        if !ws.read_more().await? {
                            return Ok(None);
                        }
                    }
                }
            },
        }
    }
}

/// The sending half, which batches.
pub enum Writer {
    /// Raw TCP: packets are appended to one buffer.
    Tcp {
        /// The socket's write half.
        write: OwnedWriteHalf,
        /// The batch not yet written.
        buf: BytesMut,
    },
    /// WebSocket: one masked frame per packet, appended to one buffer.
    Ws {
        /// The socket's write half, shared with the reader (which answers pings).
        write: Arc<Mutex<OwnedWriteHalf>>,
        /// The batch not yet written.
        buf: BytesMut,
        /// Send text messages (STOMP) rather than binary ones.
        text: bool,
        /// Masking keys.
        keys: Keys,
    },
}

impl Writer {
    /// Queues one packet (one WebSocket message) without writing it yet.
    pub async fn push(&mut self, packet: Bytes) -> io::Result<()> {
        self.push_known(packet, false).await
    }

    /// [`Writer::push`] for a packet the caller knows to be valid UTF-8 if `utf8` (a STOMP
    /// frame of text headers around a checked body), which a text message then need not check
    /// again.
    pub async fn push_known(&mut self, packet: Bytes, utf8: bool) -> io::Result<()> {
        match self {
            Writer::Tcp { buf, .. } => buf.extend_from_slice(&packet),
            Writer::Ws { buf, text, keys, .. } => {
                if *text && !utf8 && std::str::from_utf8(&packet).is_err() {
                    return Err(io::Error::other("a text message that is not UTF-8"));
                }
                put_frame(buf, if *text { 1 } else { 2 }, &packet, keys);
            }
        }
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp { write, buf } => {
                if !buf.is_empty() {
                    write.write_all(buf).await?;
                    buf.clear();
                }
            }
            Writer::Ws { write, buf, .. } => {
                if !buf.is_empty() {
                    write.lock().await.write_all(buf).await?;
                    buf.clear();
                }
            }
        }
        Ok(())
    }

    /// Flushes and closes the sending direction (TCP FIN; a WebSocket close frame, 1000, first).
    pub async fn close(&mut self) -> io::Result<()> {
        if let Writer::Ws { buf, keys, .. } = self {
            put_frame(buf, 8, &1000u16.to_be_bytes(), keys);
        }
        self.flush().await?;
        match self {
            Writer::Tcp { write, .. } => write.shutdown().await,
            Writer::Ws { write, .. } => write.lock().await.shutdown().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_twice_gives_the_payload_back() {
        let payload: Vec<u8> = (0..=255u8).collect();
        for len in [0, 1, 7, 8, 9, 125, 126, 200, 256] {
            let mut data = payload[..len].to_vec();
            apply_mask(&mut data, [1, 2, 3, 4]);
            if len > 0 {
                assert_eq!(data[0], payload[0] ^ 1);
                assert_eq!(data[len - 1], payload[len - 1] ^ [1, 2, 3, 4][(len - 1) % 4]);
            }
            apply_mask(&mut data, [1, 2, 3, 4]);
            assert_eq!(data, payload[..len]);
        }
    }

    #[test]
    fn frame_headers_carry_the_length_in_its_three_sizes() {
        let mut keys = Keys::new(1);
        for (len, head) in [(5usize, 6usize), (126, 8), (70_000, 14)] {
            let mut out = BytesMut::new();
            put_frame(&mut out, 2, &vec![7u8; len], &mut keys);
            assert_eq!(out.len(), head + len);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
            // Unmasked (as a server would see it) the header parses to the same length.
            let mut server = out.to_vec();
            server[1] &= 0x7F;
            let mut unmasked = server[..head - 4].to_vec();
            unmasked.extend_from_slice(&server[head..]);
            assert_eq!(parse_header(&unmasked).unwrap(), Some((true, 2, head - 4, len)));
        }
    }

    #[test]
    fn a_partial_header_asks_for_more_and_bad_ones_are_refused() {
        assert_eq!(parse_header(&[0x82]).unwrap(), None);
        assert_eq!(parse_header(&[0x82, 126, 0]).unwrap(), None);
        assert!(parse_header(&[0xC2, 1]).is_err(), "RSV1 without an extension");
        assert!(parse_header(&[0x82, 0x81]).is_err(), "a masked server frame");
        assert!(parse_header(&[0x82, 127, 0xFF, 0, 0, 0, 0, 0, 0, 0]).is_err(), "an absurd length");
    }

    #[test]
    fn the_accept_header_is_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
        check_response(good, key, Some("mqtt")).unwrap();
        assert!(check_response(good, key, Some("v12.stomp")).is_err());
        assert!(check_response(good, "AAAAAAAAAAAAAAAAAAAAAA==", Some("mqtt")).is_err());
        assert!(check_response(b"HTTP/1.1 400 Bad Request\r\n\r\n", key, None).is_err());
    }
}
