//! The HTTP upgrade handshake against RFC 6455 §4.2 and RFC 7692, with hand-written requests
//! over raw TCP (a WebSocket client library would never send most of these).

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3's example answer to [`KEY`].
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A handshake request line and headers; `drop` leaves out the headers it names, `extra` adds.
fn request(request_line: &str, drop: &[&str], extra: &[&str]) -> String {
    let mut lines = vec![request_line.to_string()];
    for h in [
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: mqtt",
    ] {
        if !drop.iter().any(|d| h.to_ascii_lowercase().starts_with(&format!("{}:", d.to_ascii_lowercase()))) {
            lines.push(h.to_string());
        }
    }
    lines.extend(extra.iter().map(|s| s.to_string()));
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// One HTTP answer: the status, the head, and the bytes after it.
struct Answer {
    status: u16,
    head: String,
    rest: Vec<u8>,
}

impl Answer {
    /// A header's value (`name` in lowercase).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads an answer's head, then (for a non-101 answer) its `content-length` body, or for a 101
/// at least `more` bytes after the head.
async fn read_answer(s: &mut TcpStream, more: usize) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
                let answer = Answer { status, head, rest: buf[end + 4..].to_vec() };
                let want = if status == 101 {
                    more
                } else {
                    answer.header("content-length").map_or(0, |n| n.parse().expect("a length"))
                };
                if answer.rest.len() >= want {
                    return answer;
                }
            }
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed before answering: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read).await.expect("an answer in time")
}

async fn exchange(addr: std::net::SocketAddr, req: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    read_answer(&mut s, 0).await
}

/// Whether the answer's `Connection` lists `upgrade`.
fn lists_upgrade(a: &Answer) -> bool {
    a.header("connection").is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// A masked client frame (RFC 6455 §5.3) with a payload under 126 bytes.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | opcode];
    // RFC 6455 §5.2: a 7-bit, 16-bit or 64-bit length.
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn a_good_handshake_is_101_with_the_rfc_accept_and_tokens_in_any_case() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    for (drop, extra) in [
        (&[][..], &[][..]),
        (&["Upgrade"][..], &["Upgrade: WebSocket"][..]),
        (&["Connection"][..], &["Connection: keep-alive, Upgrade"][..]),
        (&["Connection"][..], &["Connection: UPGRADE"][..]),
    ] {
        let a = exchange(addr, &request("GET /ws HTTP/1.1", drop, extra)).await;
        assert_eq!(a.status, 101, "{extra:?}: {}", a.head);
        assert_eq!(a.header("sec-websocket-accept"), Some(ACCEPT), "{}", a.head);
        assert_eq!(a.header("sec-websocket-protocol"), Some("mqtt"));
    }
    b.shutdown().await;
}

/// Handshake audit: each of these was answered 101 (key, method, HTTP/1.0, Host) or 426
/// (Upgrade, Connection, a missing version) before; RFC 6455 §4.2.1 makes them malformed.
#[tokio::test]
async fn malformed_handshakes_are_400() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("GET /ws HTTP/1.1", &["Sec-WebSocket-Key"], &[]),
        ("GET /ws HTTP/1.1", &["Sec-WebSocket-Key"], &["Sec-WebSocket-Key: not base64!!"]),
        ("GET /ws HTTP/1.1", &["Sec-WebSocket-Key"], &["Sec-WebSocket-Key: eHh4eHh4eHh4eHh4eHh4"]),
        ("GET /ws HTTP/1.1", &["Sec-WebSocket-Key"], &["Sec-WebSocket-Key: eHh4eHh4eHh4eHh4eHh4eHg="]),
        ("GET /ws HTTP/1.1", &[], &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
        ("POST /ws HTTP/1.1", &[], &["Content-Length: 0"]),
        ("GET /ws HTTP/1.0", &[], &[]),
        ("GET /ws HTTP/1.1", &["Upgrade"], &[]),
        ("GET /ws HTTP/1.1", &["Connection"], &[]),
        ("GET /ws HTTP/1.1", &["Connection"], &["Connection: keep-alive"]),
        ("GET /ws HTTP/1.1", &["Host"], &[]),
        ("GET /ws HTTP/1.1", &["Sec-WebSocket-Version"], &[]),
        ("GET /ws HTTP/1.1", &["Sec-WebSocket-Version"], &["Sec-WebSocket-Version: 13, 8"]),
    ];
    for (line, drop, extra) in cases {
        let a = exchange(addr, &request(line, drop, extra)).await;
        assert_eq!(a.status, 400, "{line} without {drop:?} with {extra:?}: {}", a.head);
        assert_eq!(a.header("sec-websocket-version"), Some("13"), "{}", a.head);
    }
    b.shutdown().await;
}

#[tokio::test]
async fn an_unsupported_version_is_426_naming_13_and_plain_http_is_asked_to_upgrade() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let a =
        exchange(addr, &request("GET /ws HTTP/1.1", &["Sec-WebSocket-Version"], &["Sec-WebSocket-Version: 8"])).await;
    assert_eq!(a.status, 426, "{}", a.head);
    assert_eq!(a.header("sec-websocket-version"), Some("13"));
    // RFC 9110 §15.5.22 and §7.8: a 426 names the protocol, with Connection: Upgrade.
    assert_eq!(a.header("upgrade"), Some("websocket"), "{}", a.head);
    assert!(lists_upgrade(&a), "{}", a.head);

    let a = exchange(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(a.status, 426, "{}", a.head);
    assert_eq!(a.header("upgrade"), Some("websocket"), "{}", a.head);
    assert!(lists_upgrade(&a), "{}", a.head);
    b.shutdown().await;
}

/// RFC 7692 §7.1.2.2: the answer's `client_max_window_bits` is at most the offered value. An
/// offer of 8 was answered with 9. A bare offer (browsers') is left unanswered, so the client
/// keeps its 15-bit window instead of being told 9.
#[tokio::test]
async fn deflate_never_answers_a_client_window_larger_than_offered() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    for (offer, answer) in [
        ("permessage-deflate; client_max_window_bits=8", Some("permessage-deflate")),
        ("permessage-deflate; client_max_window_bits", Some("permessage-deflate")),
        ("permessage-deflate; client_max_window_bits=10", Some("permessage-deflate; client_max_window_bits=10")),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        (
            "permessage-deflate; foo, permessage-deflate; server_max_window_bits=10",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
    ] {
        let ext = format!("Sec-WebSocket-Extensions: {offer}");
        let a = exchange(addr, &request("GET /ws HTTP/1.1", &[], &[&ext])).await;
        assert_eq!(a.status, 101, "{offer}: {}", a.head);
        let got = a.header("sec-websocket-extensions");
        match answer {
            None => assert_eq!(got, None, "{offer}"),
            Some(prefix) => {
                let got = got.unwrap_or_else(|| panic!("{offer} declined"));
                // The rest is this listener's no-context-takeover mode.
                assert_eq!(got, format!("{prefix}; server_no_context_takeover; client_no_context_takeover"), "{offer}");
            }
        }
    }
    b.shutdown().await;
}

/// The first WebSocket frame may arrive in the same segment as the handshake, or the whole
/// exchange one byte per write; neither loses a byte.
#[tokio::test]
async fn a_frame_pipelined_after_the_request_or_a_request_in_one_byte_writes_is_kept() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let mut bytes = request("GET /ws HTTP/1.1", &[], &[]).into_bytes();
    bytes.extend(client_frame(0x2, &mqtt_connect_bytes("pipelined", 30, true)));
    let connack = [0x82, 0x04, 0x20, 0x02, 0x00, 0x00];

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let a = read_answer(&mut s, connack.len()).await;
    assert_eq!((a.status, a.rest.as_slice()), (101, &connack[..]), "{}", a.head);

    let mut s = TcpStream::connect(addr).await.unwrap();
    for byte in &bytes {
        s.write_all(std::slice::from_ref(byte)).await.unwrap();
        s.flush().await.unwrap();
    }
    let a = read_answer(&mut s, connack.len()).await;
    assert_eq!((a.status, a.rest.as_slice()), (101, &connack[..]), "{}", a.head);
    b.shutdown().await;
}

/// Handshake audit: a refused handshake left the connection open until the handshake timeout,
/// so a client reading the answer to its end waited that long. The timeout here is longer
/// than the test's patience, so only the server's own close ends these reads.
#[tokio::test]
async fn a_refused_handshake_closes_its_connection() {
    let mut config = diglot::Config::ephemeral();
    config.server.handshake_timeout_secs = 600;
    let b = broker_with(config).await;
    let addr = b.ws_addr().unwrap();
    for (req, status) in [
        (request("GET /ws HTTP/1.1", &["Sec-WebSocket-Key"], &[]), 400),
        (request("GET /ws HTTP/1.1", &["Sec-WebSocket-Version"], &["Sec-WebSocket-Version: 8"]), 426),
        (request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol"], &["Sec-WebSocket-Protocol: chat"]), 400),
        (request("GET /ws HTTP/1.1", &[], &["Origin: https://elsewhere.example"]), 403),
        ("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 426),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(PATIENCE, s.read_to_end(&mut all)).await.expect("closed").expect("read");
        let all = String::from_utf8_lossy(&all);
        assert!(all.starts_with(&format!("HTTP/1.1 {status} ")), "{all}");
    }
    b.shutdown().await;
}

/// After the upgrade the WebSocket reads the socket itself (taken back from hyper), and a read
/// that found nothing is not repeated until something wakes it (`link::ReadGate`). Pings sent
/// while the server's read waits, and after the server has just written, are answered at once,
/// and messages still flow both ways between them.
#[tokio::test]
async fn pings_between_messages_are_answered_in_both_read_states() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let mut sub = ws_connect(addr, "/mqtt", &["mqtt"]).await.ok().unwrap();
    sub.send(&mqtt_connect_bytes("gate-sub", 0, true)).await.unwrap();
    assert_eq!(sub.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    // SUBSCRIBE id 1 to `g/t` at QoS 0.
    sub.send(&[0x82, 8, 0, 1, 0, 3, b'g', b'/', b't', 0]).await.unwrap();
    assert_eq!(sub.recv().await.unwrap(), vec![0x90, 3, 0, 1, 0]);
    let mut publisher = ws_connect(addr, "/mqtt", &["mqtt"]).await.ok().unwrap();
    publisher.send(&mqtt_connect_bytes("gate-pub", 0, true)).await.unwrap();
    assert_eq!(publisher.recv().await.unwrap(), vec![0x20, 2, 0, 0]);

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;
    async fn pong(ws: &mut Ws, payload: &[u8]) {
        ws.send(WsMessage::Ping(payload.to_vec().into())).await.unwrap();
        let next = tokio::time::timeout(PATIENCE, ws.next()).await.expect("a pong in time");
        match next {
            Some(Ok(WsMessage::Pong(p))) => assert_eq!(&p[..], payload),
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    let Conn::Ws { ws, .. } = &mut sub else { unreachable!() };
    for round in 0..3u8 {
        // The server's read has been waiting since the last exchange.
        pong(ws, b"idle").await;
        // PUBLISH g/t with one byte, QoS 0: the server writes to this connection, which lets
        // its next read through, then waits again.
        publisher.send(&[0x30, 6, 0, 3, b'g', b'/', b't', round]).await.unwrap();
        let got = tokio::time::timeout(PATIENCE, ws.next()).await.expect("the message in time");
        match got {
            Some(Ok(WsMessage::Binary(m))) => assert_eq!(&m[..], &[0x30, 6, 0, 3, b'g', b'/', b't', round]),
            other => panic!("expected the message, got {other:?}"),
        }
        pong(ws, b"after a write").await;
    }
    // And the subscriber's own packets are still read: PINGREQ gets PINGRESP.
    sub.send(&[0xC0, 0]).await.unwrap();
    assert_eq!(sub.recv().await.unwrap(), vec![0xD0, 0]);
    b.shutdown().await;
}

/// The server frames (unmasked, payloads under 126 bytes) in `bytes`: (opcode, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126 && bytes[1] & 0x80 == 0, "a short unmasked server frame: {bytes:02x?}");
        frames.push((bytes[0] & 0x0f, bytes[2..2 + len].to_vec()));
        bytes = &bytes[2 + len..];
    }
    frames
}

/// A raw TCP connection upgraded to an MQTT WebSocket at `/ws`, and the bytes read past the
/// 101.
async fn upgraded(addr: std::net::SocketAddr, what: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request("GET /ws HTTP/1.1", &[], &[]).as_bytes()).await.unwrap();
    let a = read_answer(&mut s, 0).await;
    assert_eq!(a.status, 101, "{what}: {}", a.head);
    (s, a.rest)
}

/// Reads on from `got` up to the server's first frame, which must be its only one and a close
/// frame; returns the close frame's payload.
async fn the_one_close_frame(s: &mut TcpStream, mut got: Vec<u8>, what: &str) -> Vec<u8> {
    let mut chunk = [0u8; 1024];
    while got.len() < 2 || got.len() < 2 + usize::from(got[1] & 0x7f) {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await.expect("a close in time").expect("read");
        assert!(n > 0, "{what}: the server ended the connection without a close frame");
        got.extend_from_slice(&chunk[..n]);
    }
    let mut frames = server_frames(&got);
    assert_eq!(frames.len(), 1, "{what}: {frames:02x?}");
    let (opcode, payload) = frames.remove(0);
    assert_eq!(opcode, 0x8, "{what}: a close frame");
    payload
}

/// When the server closes a WebSocket for a protocol error, it sends one close frame (RFC 6455
/// §5.5.1: the answer to a Close goes only from an endpoint that has not sent one), and then
/// ends the TCP connection (§7.1.1): after an MQTT violation (a first packet that is not
/// CONNECT), once the client's close has come; after a WebSocket one (a reserved bit set,
/// which yawc answers itself, and after which it reads no more frames), when the client ends
/// its side or the linger's 2 seconds are up. Before, the second got two close frames.
#[tokio::test]
async fn a_server_close_is_one_close_frame_then_the_tcp_close() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let mut rsv = client_frame(0x2, &[0xC0, 0]);
    rsv[0] |= 0x40;
    for (what, bad) in [("MQTT", client_frame(0x2, &[0xC0, 0])), ("WebSocket", rsv)] {
        let (mut s, got) = upgraded(addr, what).await;
        s.write_all(&bad).await.unwrap();
        let payload = the_one_close_frame(&mut s, got, what).await;
        assert_eq!(payload[..2], 1002u16.to_be_bytes(), "{what}: close code 1002 (protocol error)");
        // The client answers; the server then closes TCP, with nothing more sent.
        s.write_all(&client_frame(0x8, &payload[..2])).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await.expect("the TCP close in time").expect("read");
        assert_eq!(server_frames(&rest), vec![], "{what}: nothing after the one close frame");
    }
    b.shutdown().await;
}

/// A client still writing when the server fails the WebSocket on a bad frame reads a close
/// frame with the code RFC 6455 §7.4.1 gives the fault, answers it and sees the TCP connection
/// end cleanly: after a frame yawc fails the connection on (a reserved bit or opcode, a close
/// frame over 125 bytes, a text message that is not UTF-8, a frame over
/// `limits.max_ws_frame_bytes`, whose payload is left unread), the server reads on and
/// discards the raw bytes until the client closes. Before, it closed the socket with the
/// client's input unread, and the kernel reset the connection; the reserved opcode got 1003,
/// the long close frame was echoed back, and the text message got 1011 (an internal error).
#[tokio::test]
async fn a_client_still_writing_after_a_bad_frame_reads_the_close() {
    let mut config = diglot::Config::ephemeral();
    config.limits.max_ws_frame_bytes = 16 * 1024;
    let b = broker_with(config).await;
    let addr = b.ws_addr().unwrap();
    let mut rsv = client_frame(0x2, &[0xC0, 0]);
    rsv[0] |= 0x40;
    let mut long_close = 1000u16.to_be_bytes().to_vec();
    long_close.extend_from_slice(&[b'a'; 124]);
    let cases = [
        ("a reserved bit", rsv, 1002u16),
        ("a reserved opcode", client_frame(0x3, &[]), 1002),
        // RFC 6455 §5.5: a control frame has at most 125 bytes of payload.
        ("a close frame of 126 bytes", client_frame(0x8, &long_close), 1002),
        ("a text message that is not UTF-8", client_frame(0x1, &[0xC0, 0xFF]), 1007),
        ("a frame over the limit", client_frame(0x2, &[7; 40 * 1024]), 1009),
    ];
    for (what, bad, code) in cases {
        let (mut s, got) = upgraded(addr, what).await;
        // The bad frame, and 100 KiB of frames after it, in one write.
        let mut flood = bad;
        for _ in 0..800 {
            flood.extend(client_frame(0x2, &[0xC0; 125]));
        }
        s.write_all(&flood).await.unwrap();
        let payload = the_one_close_frame(&mut s, got, what).await;
        assert_eq!(payload[..2], code.to_be_bytes(), "{what}: close {code}");
        // The client answers the close and ends its side; the server's side then ends too,
        // with no reset.
        s.write_all(&client_frame(0x8, &payload[..2])).await.unwrap_or_else(|e| panic!("{what}: the answer: {e}"));
        s.shutdown().await.unwrap_or_else(|e| panic!("{what}: the shutdown: {e}"));
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest))
            .await
            .expect("the TCP close in time")
            .unwrap_or_else(|e| panic!("{what}: the end of the stream: {e}"));
        assert_eq!(server_frames(&rest), vec![], "{what}: nothing after the close frame");
    }
    b.shutdown().await;
}

/// Every server frame in `bytes` (unmasked, any length form): (first byte, payload).
fn server_frames_any(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let (len, at) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
            n @ 0..=125 => (usize::from(n), 2),
            _ => break,
        };
        if bytes.len() < at + len {
            break;
        }
        frames.push((bytes[0], bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    frames
}

/// A STOMP WebSocket that fails on a text message that is not UTF-8 sends its goodbye (the
/// ERROR frame) and then its close frame (1007), nothing after it (RFC 6455 §5.5.1: no data
/// frame after a close), with and without permessage-deflate. Before, with permessage-deflate,
/// the close frame yawc queued went first and the ERROR after it. And RSV1, the "Per-Message
/// Compressed" bit, fails the connection with 1002 on a control frame or a continuation frame,
/// with or without the extension (RFC 7692 §6, RFC 6455 §5.2); before, a ping with RSV1 got its
/// pong and a close with RSV1 was honoured. Compressed data that does not inflate is a protocol
/// error too (1002, with the ERROR first); it was an internal error (1011) and no ERROR.
#[tokio::test]
async fn the_goodbye_goes_before_the_close_and_rsv1_fails_control_and_continuation_frames() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let with_rsv1 = |mut frame: Vec<u8>| {
        frame[0] |= 0x40;
        frame
    };
    let mut first = client_frame(0x1, b"SEND\ndestination:/topic/x\n\nab");
    first[0] &= 0x7f;
    // (what, frames before, permessage-deflate, the bad frame, the close code)
    type Case<'a> = (&'a str, &'a [u8], bool, Vec<u8>, u16);
    let cases: [Case; 7] = [
        ("not UTF-8", b"", false, client_frame(0x1, b"SEND\ndestination:/topic/x\n\n\xC0\xFF\0"), 1007),
        ("not UTF-8, deflate", b"", true, client_frame(0x1, b"SEND\ndestination:/topic/x\n\n\xC0\xFF\0"), 1007),
        ("a ping with RSV1", b"", false, with_rsv1(client_frame(0x9, b"p")), 1002),
        ("a ping with RSV1, deflate", b"", true, with_rsv1(client_frame(0x9, b"p")), 1002),
        ("a close with RSV1, deflate", b"", true, with_rsv1(client_frame(0x8, &1000u16.to_be_bytes())), 1002),
        // An uncompressed first fragment, then a continuation with RSV1.
        ("a continuation with RSV1, deflate", &first, true, with_rsv1(client_frame(0x0, b"\0")), 1002),
        // Compressed data that does not inflate (a reserved block type).
        ("data that does not inflate", b"", true, with_rsv1(client_frame(0x1, &[0xFF; 8])), 1002),
    ];
    for (what, before, deflate, bad, code) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut extra = vec!["Sec-WebSocket-Protocol: v12.stomp"];
        if deflate {
            extra.push("Sec-WebSocket-Extensions: permessage-deflate");
        }
        s.write_all(request("GET /ws HTTP/1.1", &["Sec-WebSocket-Protocol"], &extra).as_bytes()).await.unwrap();
        let a = read_answer(&mut s, 0).await;
        assert_eq!(a.status, 101, "{what}: {}", a.head);
        assert_eq!(a.header("sec-websocket-extensions").is_some(), deflate, "{what}: {}", a.head);
        s.write_all(&client_frame(0x1, b"CONNECT\naccept-version:1.2\nhost:h\n\n\0")).await.unwrap();
        let mut got = a.rest;
        let mut chunk = [0u8; 4096];
        while server_frames_any(&got).is_empty() {
            let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await.expect("CONNECTED in time").unwrap();
            assert!(n > 0, "{what}: closed before CONNECTED");
            got.extend_from_slice(&chunk[..n]);
        }
        got.clear();
        let mut send = before.to_vec();
        send.extend_from_slice(&bad);
        s.write_all(&send).await.unwrap();
        // Up to the end of the stream (the client answers the close once it has one).
        let mut answered = false;
        loop {
            let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await.expect("the end in time").unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            let frames = server_frames_any(&got);
            if !answered && frames.iter().any(|(b0, _)| b0 & 0x0f == 0x8) {
                answered = true;
                let _ = s.write_all(&client_frame(0x8, &code.to_be_bytes())).await;
                let _ = s.shutdown().await;
            }
        }
        let frames = server_frames_any(&got);
        let kinds: Vec<u8> = frames.iter().map(|(b0, _)| b0 & 0x0f).collect();
        assert_eq!(kinds.last(), Some(&0x8), "{what}: ends with a close frame: {kinds:?}");
        assert_eq!(kinds.iter().filter(|&&k| k == 0x8).count(), 1, "{what}: one close frame: {kinds:?}");
        assert!(!kinds.contains(&0xA), "{what}: no pong: {kinds:?}");
        let close = &frames[frames.len() - 1];
        assert_eq!(close.0 & 0x70, 0, "{what}: no RSV bit on the close");
        assert_eq!(close.1[..2], code.to_be_bytes(), "{what}: close {code}");
        assert_eq!(kinds, [0x1, 0x8], "{what}: the ERROR, then the close");
    }
    b.shutdown().await;
}

/// MQTT over WebSocket takes binary messages only [MQTT-6.0.0-1]: a text message closes the
/// connection with 1003, "a type of data it cannot accept" (RFC 6455 §7.4.1), where it used to
/// get 1002. And a client's close with 1014 (Bad Gateway, registered like 1012 and 1013) is
/// echoed, as those are, instead of being refused with 1002.
#[tokio::test]
async fn a_text_message_to_mqtt_is_1003_and_a_close_with_1014_is_echoed() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let (mut s, mut got) = upgraded(addr, "text").await;
    s.write_all(&client_frame(0x2, &mqtt_connect_bytes("text", 60, true))).await.unwrap();
    let mut chunk = [0u8; 1024];
    while got.len() < 6 {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk)).await.expect("CONNACK in time").unwrap();
        assert!(n > 0, "closed before CONNACK");
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(server_frames(&got[..6]), vec![(0x2, vec![0x20, 2, 0, 0])], "CONNACK");
    s.write_all(&client_frame(0x1, b"text")).await.unwrap();
    let payload = the_one_close_frame(&mut s, got[6..].to_vec(), "text").await;
    assert_eq!(payload[..2], 1003u16.to_be_bytes(), "close 1003");

    for code in [1012u16, 1013, 1014] {
        let (mut s, got) = upgraded(addr, "1014").await;
        s.write_all(&client_frame(0x8, &code.to_be_bytes())).await.unwrap();
        let payload = the_one_close_frame(&mut s, got, "close").await;
        assert_eq!(payload[..2], code.to_be_bytes(), "{code} echoed");
    }
    b.shutdown().await;
}
