//! STOMP 1.0, 1.1 and 1.2 end to end, over raw TCP and WebSocket alike, with hand-built frames:
//! the codec's edge cases (escaping per version, binary bodies, frames split byte by byte,
//! several frames in one write, CRLF, repeated headers), heart-beats, transactions, ack modes,
//! NACK and dead-lettering, bad input, version negotiation through the WebSocket subprotocol,
//! `/temp-queue/` request/reply, `expires`, and interop with MQTT 5 (rumqttc v5).
//!
//! Tests assert what happens, never how fast: every wait is bounded by `PATIENCE`.

mod common;

use std::time::Duration;

use common::*;
use diglot::{Broker, Config};

/// The transport a test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Ws,
}

/// Runs `async fn name(via: Via)` as two tests, `name::tcp` and `name::ws`.
macro_rules! over_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn tcp() {
                super::$name(super::Via::Tcp).await
            }
            #[tokio::test]
            async fn ws() {
                super::$name(super::Via::Ws).await
            }
        }
    )*};
}

over_both!(
    header_escaping_follows_the_version,
    bodies_binary_nul_and_content_length,
    frames_split_byte_by_byte,
    several_frames_in_one_write,
    crlf_line_endings,
    repeated_headers_first_wins,
    transactions_commit_abort_and_disconnect,
    transactional_acks,
    ack_modes_on_a_queue,
    nack_requeues_or_dead_letters,
    bad_input_gets_an_error_and_a_close,
    limits_are_enforced_before_the_frame_completes,
    temp_queue_request_reply_between_stomp_clients,
    temp_queue_reply_from_mqtt,
    expires_header,
    mqtt_5_interop_both_ways,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn open_with(b: &Broker, via: Via, subprotocol: &str) -> Stomp {
    let conn = match via {
        Via::Tcp => tcp_connect(b.stomp_addr().expect("stomp listener")).await,
        Via::Ws => ws_connect(b.ws_addr().expect("ws listener"), "/ws", &[subprotocol]).await.ok().expect("ws"),
    };
    Stomp::new(conn)
}

async fn open(b: &Broker, via: Via) -> Stomp {
    open_with(b, via, "v12.stomp").await
}

/// A client connected with `accept-version:versions` and heart-beats off.
async fn client(b: &Broker, via: Via, versions: &str) -> Stomp {
    let mut s = open(b, via).await;
    s.connect(versions).await;
    s
}

/// Sends raw bytes: one TCP write or one (binary) WebSocket message.
async fn raw(s: &mut Stomp, bytes: &[u8]) {
    s.conn.send_binary(bytes).await.expect("send");
}

/// The next frame, which must be a `command`.
async fn expect(s: &mut Stomp, command: &str) -> StompFrame {
    let f = s.frame().await.unwrap_or_else(|| panic!("expected {command}, the server closed"));
    assert_eq!(f.command, command, "{f:?}");
    f
}

/// The next frame must be the RECEIPT `id`.
async fn receipt(s: &mut Stomp, id: &str) {
    let f = expect(s, "RECEIPT").await;
    assert_eq!(f.header("receipt-id"), Some(id), "{f:?}");
}

/// The next frame must be a MESSAGE with `body`.
async fn message(s: &mut Stomp, body: &str) -> StompFrame {
    let f = expect(s, "MESSAGE").await;
    assert_eq!(String::from_utf8_lossy(&f.body), body, "{f:?}");
    f
}

/// The next frame must be an ERROR with a non-empty `message` header, and the server must then
/// close the connection. Returns the ERROR.
async fn error_then_close(s: &mut Stomp) -> StompFrame {
    let f = s.frame().await.expect("an ERROR frame before the close");
    assert_eq!(f.command, "ERROR", "{f:?}");
    assert!(f.header("message").is_some_and(|m| !m.is_empty()), "ERROR without message: {f:?}");
    assert!(s.frame().await.is_none(), "the connection closes after ERROR");
    f
}

/// SUBSCRIBE with a receipt, waiting for it.
async fn subscribe(s: &mut Stomp, id: &str, dest: &str, extra: &[(&str, &str)]) {
    let r = format!("sub-{id}");
    let mut h = vec![("id", id), ("destination", dest), ("receipt", r.as_str())];
    h.extend_from_slice(extra);
    s.send("SUBSCRIBE", &h, "").await;
    receipt(s, &r).await;
}

/// SEND with a receipt, waiting for it.
async fn send_receipted(s: &mut Stomp, dest: &str, extra: &[(&str, &str)], body: &str) {
    let r = format!("send-{}", body.chars().take(16).collect::<String>());
    let mut h = vec![("destination", dest), ("receipt", r.as_str())];
    h.extend_from_slice(extra);
    s.send("SEND", &h, body).await;
    receipt(s, &r).await;
}

/// DISCONNECT with a receipt; the server closes after it.
async fn disconnect(mut s: Stomp) {
    s.send("DISCONNECT", &[("receipt", "bye")], "").await;
    receipt(&mut s, "bye").await;
    assert!(s.frame().await.is_none());
}

fn ephemeral() -> Config {
    Config::ephemeral()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------

/// STOMP 1.2 escapes `\\`, `\n`, `\r`, `\c`; 1.1 the same without `\r`; 1.0 has no escapes (the
/// server replaces what cannot be expressed). Undefined escapes are fatal.
async fn header_escaping_follows_the_version(via: Via) {
    let b = broker().await;
    let mut s12 = client(&b, via, "1.2").await;
    let mut s11 = client(&b, via, "1.1").await;
    let mut s10 = client(&b, via, "1.0").await;
    for s in [&mut s12, &mut s11, &mut s10] {
        subscribe(s, "s", "/topic/esc", &[]).await;
    }

    // Header name `k:ey`, value `a<LF>b\c:d`, and `cr` = `x<CR>y`, sent escaped by a 1.2 client.
    let mut p12 = client(&b, via, "1.2").await;
    raw(&mut p12, b"SEND\ndestination:/topic/esc\nk\\cey:a\\nb\\\\c\\cd\ncr:x\\ry\nreceipt:r\n\none\0").await;
    receipt(&mut p12, "r").await;
    let m = message(&mut s12, "one").await;
    assert_eq!(m.header("k\\cey"), Some("a\\nb\\\\c\\cd"));
    assert_eq!(m.header("cr"), Some("x\\ry"));
    let m = message(&mut s11, "one").await;
    assert_eq!(m.header("k\\cey"), Some("a\\nb\\\\c\\cd"));
    assert_eq!(m.header("cr"), Some("x\ry"), "1.1 cannot escape CR: written raw");
    let m = message(&mut s10, "one").await;
    assert_eq!(m.header("k_ey"), Some("a b\\c:d"), "1.0: LF becomes a space, ':' in a name '_'");
    assert_eq!(m.header("cr"), Some("x y"));

    // A 1.0 client's backslashes are data, not escapes.
    let mut p10 = client(&b, via, "1.0").await;
    raw(&mut p10, b"SEND\ndestination:/topic/esc\nraw:a\\nb\\c\nreceipt:r\n\ntwo\0").await;
    receipt(&mut p10, "r").await;
    assert_eq!(message(&mut s12, "two").await.header("raw"), Some("a\\\\nb\\\\c"));
    assert_eq!(message(&mut s11, "two").await.header("raw"), Some("a\\\\nb\\\\c"));
    assert_eq!(message(&mut s10, "two").await.header("raw"), Some("a\\nb\\c"));

    // A 1.1 client's escapes (\n, \c, \\) decode the same as 1.2's.
    let mut p11 = client(&b, via, "1.1").await;
    raw(&mut p11, b"SEND\ndestination:/topic/esc\nv:1\\c2\\n3\\\\\nreceipt:r\n\nthree\0").await;
    receipt(&mut p11, "r").await;
    assert_eq!(message(&mut s12, "three").await.header("v"), Some("1\\c2\\n3\\\\"));
    assert_eq!(message(&mut s11, "three").await.header("v"), Some("1\\c2\\n3\\\\"));
    assert_eq!(message(&mut s10, "three").await.header("v"), Some("1:2 3\\"));

    // Undefined escapes: `\t` in 1.2, `\r` in 1.1.
    raw(&mut p12, b"SEND\ndestination:/topic/esc\nbad:\\t\n\n\0").await;
    error_then_close(&mut p12).await;
    raw(&mut p11, b"SEND\ndestination:/topic/esc\nbad:\\r\n\n\0").await;
    error_then_close(&mut p11).await;
    // ... but 1.0 does not escape, so the same bytes are fine there.
    raw(&mut p10, b"SEND\ndestination:/topic/esc\nbad:\\t\nreceipt:r\n\nfour\0").await;
    receipt(&mut p10, "r").await;
    assert_eq!(message(&mut s10, "four").await.header("bad"), Some("\\t"));
    b.shutdown().await;
}

/// `content-length` bodies may hold NUL bytes; without it, the body ends at the first NUL.
/// Every MESSAGE carries `content-length`.
async fn bodies_binary_nul_and_content_length(via: Via) {
    let b = broker().await;
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", "/topic/bin", &[]).await;
    let mut p = client(&b, via, "1.2").await;

    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let mut f = format!("SEND\ndestination:/topic/bin\ncontent-length:{}\n\n", body.len()).into_bytes();
    f.extend_from_slice(&body);
    f.push(0);
    raw(&mut p, &f).await;
    let m = expect(&mut sub, "MESSAGE").await;
    assert_eq!(m.header("content-length"), Some("5000"));
    assert_eq!(m.body, body);

    // No content-length: the body ends at the first NUL, and the next frame follows.
    raw(&mut p, b"SEND\ndestination:/topic/bin\n\nplain text\0SEND\ndestination:/topic/bin\ncontent-length:0\n\n\0")
        .await;
    let m = message(&mut sub, "plain text").await;
    assert_eq!(m.header("content-length"), Some("10"));
    let m = message(&mut sub, "").await;
    assert_eq!(m.header("content-length"), Some("0"));

    // A body that is only NULs.
    raw(&mut p, b"SEND\ndestination:/topic/bin\ncontent-length:3\n\n\0\0\0\0").await;
    assert_eq!(expect(&mut sub, "MESSAGE").await.body, vec![0, 0, 0]);
    b.shutdown().await;
}

/// A connection whose every byte arrives on its own (one TCP write or one WebSocket message per
/// byte) works like any other.
async fn frames_split_byte_by_byte(via: Via) {
    let b = broker().await;
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", "/topic/split", &[]).await;

    let mut p = open(&b, via).await;
    if let Conn::Tcp(t) = &p.conn {
        t.set_nodelay(true).unwrap();
    }
    let mut stream = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0\n".to_vec();
    stream.extend_from_slice("SEND\ndestination:/topic/split\nk:v\\cü\ncontent-length:4\nreceipt:r\n\n".as_bytes());
    stream.extend_from_slice(b"a\0b\xff\0");
    for byte in &stream {
        raw(&mut p, std::slice::from_ref(byte)).await;
        tokio::task::yield_now().await;
    }
    expect(&mut p, "CONNECTED").await;
    receipt(&mut p, "r").await;
    let m = expect(&mut sub, "MESSAGE").await;
    assert_eq!(m.header("k"), Some("v\\cü"));
    assert_eq!(m.body, b"a\0b\xff");
    b.shutdown().await;
}

/// Several frames, and heart-beat EOLs between them, in one write or WebSocket message.
async fn several_frames_in_one_write(via: Via) {
    let b = broker().await;
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", "/topic/many", &[]).await;
    let mut s = open(&b, via).await;
    raw(
        &mut s,
        b"CONNECT\naccept-version:1.2\nhost:x\n\n\0\n\r\n\
SUBSCRIBE\nid:1\ndestination:/topic/elsewhere\nreceipt:s\n\n\0\
SEND\ndestination:/topic/many\n\nfirst\0\n\
SEND\ndestination:/topic/many\ncontent-length:6\n\nsecond\0\
DISCONNECT\nreceipt:bye\n\n\0",
    )
    .await;
    expect(&mut s, "CONNECTED").await;
    receipt(&mut s, "s").await;
    receipt(&mut s, "bye").await;
    assert!(s.frame().await.is_none());
    message(&mut sub, "first").await;
    message(&mut sub, "second").await;
    b.shutdown().await;
}

/// STOMP 1.2 lines may end in CRLF; the CR is not part of the header.
async fn crlf_line_endings(via: Via) {
    let b = broker().await;
    let mut s = open(&b, via).await;
    raw(&mut s, b"CONNECT\r\naccept-version:1.2\r\nhost:x\r\n\r\n\0\r\n").await;
    assert_eq!(expect(&mut s, "CONNECTED").await.header("version"), Some("1.2"));
    raw(&mut s, b"SUBSCRIBE\r\nid:1\r\ndestination:/topic/crlf\r\nreceipt:s\r\n\r\n\0").await;
    receipt(&mut s, "s").await;
    raw(&mut s, b"SEND\r\ndestination:/topic/crlf\r\nk:v\r\n\r\nbody\r\n\0").await;
    let m = message(&mut s, "body\r\n").await;
    assert_eq!(m.header("k"), Some("v"));
    assert_eq!(m.header("destination"), Some("/topic/crlf"));
    b.shutdown().await;
}

/// A repeated header counts once: the first occurrence wins (also `destination` and
/// `content-length`).
async fn repeated_headers_first_wins(via: Via) {
    let b = broker().await;
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "1", "/topic/one", &[]).await;
    subscribe(&mut sub, "2", "/topic/two", &[]).await;
    let mut p = client(&b, via, "1.2").await;
    raw(
        &mut p,
        b"SEND\ndestination:/topic/one\ndestination:/topic/two\nx:1\nx:2\ncontent-type:text/a\ncontent-type:text/b\n\
content-length:3\ncontent-length:1\n\nabc\0",
    )
    .await;
    let m = message(&mut sub, "abc").await;
    assert_eq!(m.header("destination"), Some("/topic/one"));
    assert_eq!(m.header("subscription"), Some("1"));
    assert_eq!(m.header("content-type"), Some("text/a"));
    assert_eq!(m.headers.iter().filter(|(k, _)| k == "x").map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["1"]);
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Heart-beats and version negotiation
// ---------------------------------------------------------------------------------------------

fn heartbeat_config() -> Config {
    let mut c = ephemeral();
    c.stomp.heartbeat_send_ms = 100;
    c.stomp.heartbeat_recv_ms = 100;
    c.stomp.heartbeat_grace = 3.0;
    c
}

#[tokio::test]
async fn heart_beats_are_negotiated_sent_and_a_silent_peer_is_closed() {
    let b = broker_with(heartbeat_config()).await;
    for via in [Via::Tcp, Via::Ws] {
        // Both ways: the server sends every max(100, 50) ms and expects max(50, 100) ms.
        let mut s = open(&b, via).await;
        s.send("CONNECT", &[("accept-version", "1.1,1.2"), ("host", "x"), ("heart-beat", "50,50")], "").await;
        let c = expect(&mut s, "CONNECTED").await;
        assert_eq!(c.header("heart-beat"), Some("100,100"), "{via:?}");
        // Silent: the server's EOLs arrive, then an ERROR, then the close.
        let rest = String::from_utf8_lossy(&s.conn.read_to_close().await).into_owned();
        let error_at = rest.find("ERROR\n").unwrap_or_else(|| panic!("no ERROR in {rest:?}"));
        assert!(rest[..error_at].contains('\n'), "heart-beats before the close: {rest:?}");
        assert!(rest[error_at..].contains("message:heart-beat timeout"), "{rest:?}");

        // A client that beats stays connected well past the timeout.
        let mut s = open(&b, via).await;
        s.send("CONNECT", &[("accept-version", "1.2"), ("host", "x"), ("heart-beat", "50,0")], "").await;
        assert_eq!(expect(&mut s, "CONNECTED").await.header("heart-beat"), Some("0,100"));
        for _ in 0..16 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            raw(&mut s, b"\n").await;
        }
        send_receipted(&mut s, "/topic/alive", &[], "still-here").await;
        disconnect(s).await;

        // Declined heart-beats (0,0) and STOMP 1.0 (none at all): never closed for silence.
        let mut s = open(&b, via).await;
        s.send("CONNECT", &[("accept-version", "1.2"), ("host", "x"), ("heart-beat", "0,0")], "").await;
        assert_eq!(expect(&mut s, "CONNECTED").await.header("heart-beat"), Some("0,0"));
        let mut s10 = open(&b, via).await;
        s10.send("CONNECT", &[("heart-beat", "50,50")], "").await;
        let c = expect(&mut s10, "CONNECTED").await;
        assert_eq!((c.header("version"), c.header("heart-beat")), (Some("1.0"), None));
        tokio::time::sleep(Duration::from_millis(800)).await;
        disconnect(s).await;
        disconnect(s10).await;

        // A bad heart-beat header is an ERROR.
        let mut s = open(&b, via).await;
        s.send("CONNECT", &[("accept-version", "1.2"), ("heart-beat", "soon")], "").await;
        error_then_close(&mut s).await;
    }
    b.shutdown().await;
}

#[tokio::test]
async fn websocket_subprotocol_caps_the_version() {
    let b = broker().await;
    for (proto, offer, want) in [
        ("v10.stomp", "1.0,1.1,1.2", "1.0"),
        ("v11.stomp", "1.0,1.1,1.2", "1.1"),
        ("v12.stomp", "1.0,1.1,1.2", "1.2"),
        ("v12.stomp", "1.1", "1.1"),
    ] {
        let mut s = open_with(&b, Via::Ws, proto).await;
        assert_eq!(s.conn.protocol(), Some(proto));
        let c = s.connect(offer).await;
        assert_eq!(c.header("version"), Some(want), "{proto} offering {offer}");
        assert!(c.header("session").is_some_and(|v| !v.is_empty()));
        assert!(c.header("server").is_some_and(|v| v.starts_with("diglot")));
    }
    // Without accept-version the client speaks 1.0.
    let mut s = open_with(&b, Via::Ws, "v12.stomp").await;
    s.send("CONNECT", &[("host", "x")], "").await;
    assert_eq!(expect(&mut s, "CONNECTED").await.header("version"), Some("1.0"));
    // A subprotocol below every offered version: ERROR listing the supported ones.
    let mut s = open_with(&b, Via::Ws, "v11.stomp").await;
    s.send("STOMP", &[("accept-version", "1.2"), ("host", "x")], "").await;
    let e = error_then_close(&mut s).await;
    assert!(e.header("version").is_some_and(|v| v.contains("1.2")), "{e:?}");
    // STOMP is CONNECT's 1.1+ name.
    let mut s = open_with(&b, Via::Ws, "v12.stomp").await;
    s.send("STOMP", &[("accept-version", "1.2"), ("host", "x"), ("login", "u"), ("passcode", "p")], "").await;
    expect(&mut s, "CONNECTED").await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Transactions, acks, NACK
// ---------------------------------------------------------------------------------------------

/// SENDs in a transaction are delivered at COMMIT, never after ABORT or a disconnect; unknown
/// transactions are an ERROR.
async fn transactions_commit_abort_and_disconnect(via: Via) {
    let b = broker().await;
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", "/topic/tx", &[]).await;

    let mut p = client(&b, via, "1.2").await;
    p.send("BEGIN", &[("transaction", "t1"), ("receipt", "b1")], "").await;
    receipt(&mut p, "b1").await;
    p.send("SEND", &[("destination", "/topic/tx"), ("transaction", "t1")], "a").await;
    p.send("SEND", &[("destination", "/topic/tx"), ("transaction", "t1"), ("receipt", "in-tx")], "b").await;
    receipt(&mut p, "in-tx").await;
    send_receipted(&mut p, "/topic/tx", &[], "outside").await;
    message(&mut sub, "outside").await;
    p.send("COMMIT", &[("transaction", "t1"), ("receipt", "c1")], "").await;
    receipt(&mut p, "c1").await;
    message(&mut sub, "a").await;
    message(&mut sub, "b").await;

    p.send("BEGIN", &[("transaction", "t2")], "").await;
    p.send("SEND", &[("destination", "/topic/tx"), ("transaction", "t2")], "aborted").await;
    p.send("ABORT", &[("transaction", "t2"), ("receipt", "a2")], "").await;
    receipt(&mut p, "a2").await;
    // The transaction is gone: committing it now is an ERROR.
    p.send("BEGIN", &[("transaction", "t3")], "").await;
    p.send("SEND", &[("destination", "/topic/tx"), ("transaction", "t3")], "lost-at-disconnect").await;
    disconnect(p).await;

    let mut p = client(&b, via, "1.2").await;
    send_receipted(&mut p, "/topic/tx", &[], "next").await;
    message(&mut sub, "next").await;

    for frame in [
        ("COMMIT", vec![("transaction", "t2")]),
        ("ABORT", vec![("transaction", "nope")]),
        ("SEND", vec![("destination", "/topic/tx"), ("transaction", "nope")]),
        ("COMMIT", vec![]),
    ] {
        let mut p = client(&b, via, "1.2").await;
        p.send(frame.0, &frame.1, "").await;
        let e = error_then_close(&mut p).await;
        if !frame.1.is_empty() {
            assert_eq!(e.header("message"), Some("unknown transaction"), "{frame:?}");
        }
    }
    let mut p = client(&b, via, "1.2").await;
    p.send("BEGIN", &[("transaction", "t")], "").await;
    p.send("BEGIN", &[("transaction", "t")], "").await;
    error_then_close(&mut p).await;

    // Nothing from the aborted transactions ever arrived.
    send_receipted(&mut client(&b, via, "1.2").await, "/topic/tx", &[], "end").await;
    message(&mut sub, "end").await;
    b.shutdown().await;
}

/// ACK inside a transaction takes effect at COMMIT; ABORT leaves the message unacknowledged,
/// so it is redelivered when its consumer leaves.
async fn transactional_acks(via: Via) {
    let b = broker().await;
    let q = format!("/queue/txacks-{via:?}");
    let mut p = client(&b, via, "1.2").await;
    send_receipted(&mut p, &q, &[], "m1").await;

    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "c", &q, &[("ack", "client-individual")]).await;
    let m = message(&mut c, "m1").await;
    let ack = m.header("ack").unwrap().to_owned();
    c.send("BEGIN", &[("transaction", "t")], "").await;
    c.send("ACK", &[("id", &ack), ("transaction", "t")], "").await;
    c.send("ABORT", &[("transaction", "t"), ("receipt", "a")], "").await;
    receipt(&mut c, "a").await;
    disconnect(c).await;

    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "c", &q, &[("ack", "client-individual")]).await;
    let m = message(&mut c, "m1").await;
    assert_eq!(m.header("redelivered"), Some("true"));
    let ack = m.header("ack").unwrap().to_owned();
    c.send("BEGIN", &[("transaction", "t")], "").await;
    c.send("ACK", &[("id", &ack), ("transaction", "t")], "").await;
    c.send("COMMIT", &[("transaction", "t"), ("receipt", "c")], "").await;
    receipt(&mut c, "c").await;
    disconnect(c).await;

    send_receipted(&mut p, &q, &[], "m2").await;
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "c", &q, &[]).await;
    message(&mut c, "m2").await;
    b.shutdown().await;
}

/// `client` acks are cumulative, `client-individual` ones are not, `auto` needs none; what is
/// left unacknowledged comes back, in order, flagged, when the consumer leaves.
async fn ack_modes_on_a_queue(via: Via) {
    let b = broker().await;
    let mut p = client(&b, via, "1.2").await;

    // client: ACK of the 2nd covers the 1st.
    let q = "/queue/ack-client";
    for m in ["c1", "c2", "c3"] {
        send_receipted(&mut p, q, &[], m).await;
    }
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "s", q, &[("ack", "client")]).await;
    message(&mut c, "c1").await;
    let m2 = message(&mut c, "c2").await;
    message(&mut c, "c3").await;
    c.send("ACK", &[("id", m2.header("ack").unwrap()), ("receipt", "a")], "").await;
    receipt(&mut c, "a").await;
    disconnect(c).await;
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "s", q, &[("ack", "client")]).await;
    let m = message(&mut c, "c3").await;
    assert_eq!((m.header("redelivered"), m.header("redelivery-count")), (Some("true"), Some("1")));
    assert_eq!(m.header("destination"), Some(q));
    assert_eq!(m.header("subscription"), Some("s"));
    c.send("ACK", &[("id", m.header("ack").unwrap()), ("receipt", "a")], "").await;
    receipt(&mut c, "a").await;
    disconnect(c).await;

    // client-individual: ACK 1 and 3, 2 comes back.
    let q = "/queue/ack-individual";
    for m in ["i1", "i2", "i3"] {
        send_receipted(&mut p, q, &[], m).await;
    }
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "s", q, &[("ack", "client-individual")]).await;
    let acks: Vec<String> = [message(&mut c, "i1").await, message(&mut c, "i2").await, message(&mut c, "i3").await]
        .iter()
        .map(|m| m.header("ack").unwrap().to_owned())
        .collect();
    c.send("ACK", &[("id", &acks[0])], "").await;
    c.send("ACK", &[("id", &acks[2]), ("receipt", "a")], "").await;
    receipt(&mut c, "a").await;
    disconnect(c).await;
    // STOMP 1.1 acknowledges by message-id and subscription.
    let mut c = client(&b, via, "1.1").await;
    subscribe(&mut c, "s11", q, &[("ack", "client-individual")]).await;
    let m = message(&mut c, "i2").await;
    assert_eq!(m.header("redelivered"), Some("true"));
    assert_eq!(m.header("ack"), None, "no ack header before 1.2");
    c.send("ACK", &[("message-id", m.header("message-id").unwrap()), ("subscription", "s11"), ("receipt", "a")], "")
        .await;
    receipt(&mut c, "a").await;
    disconnect(c).await;

    // auto: nothing comes back.
    let q = "/queue/ack-auto";
    send_receipted(&mut p, q, &[], "a1").await;
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "s", q, &[]).await;
    assert_eq!(message(&mut c, "a1").await.header("ack"), None);
    disconnect(c).await;
    send_receipted(&mut p, q, &[], "a2").await;
    for q in ["/queue/ack-client", "/queue/ack-individual"] {
        send_receipted(&mut p, q, &[], "sentinel").await;
    }
    for (q, first) in
        [("/queue/ack-auto", "a2"), ("/queue/ack-client", "sentinel"), ("/queue/ack-individual", "sentinel")]
    {
        let mut c = client(&b, via, "1.2").await;
        subscribe(&mut c, "s", q, &[]).await;
        let m = message(&mut c, first).await;
        assert_eq!(m.header("redelivered"), None, "{q}");
    }
    b.shutdown().await;
}

/// NACK returns a message to its queue; `requeue:false` moves it to `/queue/dlq.<name>`.
async fn nack_requeues_or_dead_letters(via: Via) {
    let b = broker().await;
    let q = format!("/queue/nack-{via:?}");
    let dlq = format!("/queue/dlq.nack-{via:?}");
    let mut p = client(&b, via, "1.2").await;
    send_receipted(&mut p, &q, &[("x-k", "v")], "n1").await;

    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "s", &q, &[("ack", "client-individual")]).await;
    let m = message(&mut c, "n1").await;
    c.send("NACK", &[("id", m.header("ack").unwrap())], "").await;
    let m = message(&mut c, "n1").await;
    assert_eq!(m.header("redelivered"), Some("true"));
    assert!(m.header("redelivery-count").is_some_and(|n| n.parse::<u32>().unwrap() >= 1), "{m:?}");
    c.send("NACK", &[("id", m.header("ack").unwrap()), ("requeue", "false"), ("receipt", "n")], "").await;
    receipt(&mut c, "n").await;

    let mut d = client(&b, via, "1.2").await;
    subscribe(&mut d, "d", &dlq, &[("ack", "client-individual")]).await;
    let m = message(&mut d, "n1").await;
    assert_eq!(m.header("x-k"), Some("v"), "the dead letter keeps its headers");
    d.send("ACK", &[("id", m.header("ack").unwrap()), ("receipt", "a")], "").await;
    receipt(&mut d, "a").await;

    // The queue itself is empty now.
    send_receipted(&mut p, &q, &[], "n2").await;
    let m = message(&mut c, "n2").await;
    c.send("ACK", &[("id", m.header("ack").unwrap()), ("receipt", "a")], "").await;
    receipt(&mut c, "a").await;
    disconnect(c).await;

    // NACK is not part of STOMP 1.0; a bad requeue value is an ERROR.
    let mut c10 = client(&b, via, "1.0").await;
    c10.send("NACK", &[("message-id", "1")], "").await;
    error_then_close(&mut c10).await;
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "s", &q, &[("ack", "client")]).await;
    send_receipted(&mut p, &q, &[], "n3").await;
    let m = message(&mut c, "n3").await;
    c.send("NACK", &[("id", m.header("ack").unwrap()), ("requeue", "maybe")], "").await;
    error_then_close(&mut c).await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Each case gets an ERROR with a `message` header, then the close; the broker is unaffected.
async fn bad_input_gets_an_error_and_a_close(via: Via) {
    let b = broker().await;
    let mut watcher = client(&b, via, "1.2").await;
    subscribe(&mut watcher, "w", "/topic/still-fine", &[]).await;

    let after_connect: [(&[u8], &str); 15] = [
        (b"FROBNICATE\n\n\0", "malformed frame"),
        (b"send\ndestination:/topic/x\n\n\0", "malformed frame"),
        (b"SEND\n\nno destination\0", "missing header"),
        (b"SEND\ndestination:/topic/x\ncontent-length:abc\n\n\0", "malformed frame"),
        (b"SEND\ndestination:/topic/x\ncontent-length:-1\n\n\0", "malformed frame"),
        (b"SEND\ndestination:/topic/x\ncontent-length:2\n\nabc\0", "malformed frame"),
        (b"SEND\ndestination:/topic/a/+\n\n\0", "invalid destination"),
        (b"SEND\ndestination:/exchange/x\n\n\0", "unknown destination"),
        (b"SUBSCRIBE\ndestination:/topic/x\n\n\0", "missing header"),
        (
            b"SUBSCRIBE\nid:1\ndestination:/topic/x\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/y\n\n\0",
            "duplicate subscription id",
        ),
        (b"ACK\nid:999\n\n\0", "unknown message"),
        (b"UNSUBSCRIBE\nid:nope\n\n\0", "unknown subscription"),
        (b"CONNECT\naccept-version:1.2\n\n\0", "already connected"),
        (b"MESSAGE\ndestination:/topic/x\n\n\0", "unexpected frame"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/x\n\nbody\0", "unexpected body"),
    ];
    for (frame, want) in after_connect {
        let mut s = client(&b, via, "1.2").await;
        raw(&mut s, frame).await;
        let e = error_then_close(&mut s).await;
        assert_eq!(e.header("message"), Some(want), "{:?}: {e:?}", String::from_utf8_lossy(frame));
    }
    // With a receipt, the ERROR names it.
    let mut s = client(&b, via, "1.2").await;
    raw(&mut s, b"SEND\ndestination:/topic/a/#\nreceipt:r-bad\n\n\0").await;
    assert_eq!(error_then_close(&mut s).await.header("receipt-id"), Some("r-bad"));

    // Before CONNECT.
    for frame in [&b"SEND\ndestination:/topic/x\n\nearly\0"[..], b"SUBSCRIBE\nid:1\ndestination:/topic/x\n\n\0"] {
        let mut s = open(&b, via).await;
        raw(&mut s, frame).await;
        assert_eq!(error_then_close(&mut s).await.header("message"), Some("not connected"));
    }
    // No version in common.
    let mut s = open(&b, via).await;
    raw(&mut s, b"CONNECT\naccept-version:2.0\nhost:x\n\n\0").await;
    let e = error_then_close(&mut s).await;
    assert_eq!(e.header("version"), Some("1.0,1.1,1.2"));

    // The rest of the broker did not notice.
    let mut p = client(&b, via, "1.2").await;
    send_receipted(&mut p, "/topic/still-fine", &[], "ok").await;
    message(&mut watcher, "ok").await;
    b.shutdown().await;
}

/// Header count, header size and body size are checked as the bytes arrive: a frame that
/// announces or streams more than the limit is refused before it completes.
async fn limits_are_enforced_before_the_frame_completes(via: Via) {
    let mut config = ephemeral();
    config.limits.max_frame_bytes = 4096;
    config.limits.max_headers = 8;
    config.limits.max_header_bytes = 256;
    let b = broker_with(config).await;

    // content-length beyond the limit: refused at once, without the body.
    let mut s = client(&b, via, "1.2").await;
    raw(&mut s, b"SEND\ndestination:/topic/x\ncontent-length:100000\n\n").await;
    assert_eq!(error_then_close(&mut s).await.header("message"), Some("frame too large"));
    // A body streaming past the limit without a NUL.
    let mut s = client(&b, via, "1.2").await;
    raw(&mut s, b"SEND\ndestination:/topic/x\n\n").await;
    raw(&mut s, &[b'x'; 5000]).await;
    assert_eq!(error_then_close(&mut s).await.header("message"), Some("frame too large"));
    // Too many headers.
    let mut s = client(&b, via, "1.2").await;
    let mut f = b"SEND\ndestination:/topic/x\n".to_vec();
    for i in 0..10 {
        f.extend_from_slice(format!("h{i}:v\n").as_bytes());
    }
    raw(&mut s, &f).await;
    assert_eq!(error_then_close(&mut s).await.header("message"), Some("frame too large"));
    // A header line that never ends.
    let mut s = client(&b, via, "1.2").await;
    let mut f = b"SEND\ndestination:/topic/x\nlong:".to_vec();
    f.extend_from_slice(&[b'v'; 400]);
    raw(&mut s, &f).await;
    assert_eq!(error_then_close(&mut s).await.header("message"), Some("frame too large"));

    // Just under the limits is fine.
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", "/topic/x", &[]).await;
    let mut p = client(&b, via, "1.2").await;
    let body = "y".repeat(3800);
    send_receipted(&mut p, "/topic/x", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")], &body).await;
    message(&mut sub, &body).await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Temporary queues
// ---------------------------------------------------------------------------------------------

/// A requester's `reply-to:/temp-queue/<x>` is rewritten to a private destination the replier
/// can SEND to; the reply arrives as `/temp-queue/<x>` without a SUBSCRIBE. Nobody else can
/// subscribe to it.
async fn temp_queue_request_reply_between_stomp_clients(via: Via) {
    let b = broker().await;
    let other = if via == Via::Tcp { Via::Ws } else { Via::Tcp };
    let mut server = client(&b, other, "1.2").await;
    subscribe(&mut server, "rpc", "/queue/rpc-stomp", &[("ack", "client-individual")]).await;

    let mut req = client(&b, via, "1.2").await;
    req.send(
        "SEND",
        &[("destination", "/queue/rpc-stomp"), ("reply-to", "/temp-queue/answers"), ("correlation-id", "c-1")],
        "ping",
    )
    .await;
    let m = message(&mut server, "ping").await;
    let reply_to = m.header("reply-to").expect("reply-to").to_owned();
    assert!(reply_to.starts_with("/topic/$temp/") && reply_to.ends_with("/answers"), "{reply_to}");
    assert_eq!(m.header("correlation-id"), Some("c-1"));
    server.send("ACK", &[("id", m.header("ack").unwrap())], "").await;
    server.send("SEND", &[("destination", &reply_to), ("correlation-id", "c-1"), ("receipt", "r")], "pong").await;
    receipt(&mut server, "r").await;

    let r = message(&mut req, "pong").await;
    assert_eq!(r.header("destination"), Some("/temp-queue/answers"));
    assert_eq!(r.header("subscription"), Some("/temp-queue/answers"));
    assert_eq!(r.header("correlation-id"), Some("c-1"));

    // A second request reuses the same private destination.
    req.send("SEND", &[("destination", "/queue/rpc-stomp"), ("reply-to", "/temp-queue/answers")], "ping2").await;
    let m = message(&mut server, "ping2").await;
    assert_eq!(m.header("reply-to"), Some(reply_to.as_str()));
    // A second requester's temp-queue of the same name is another destination.
    let mut req2 = client(&b, via, "1.2").await;
    req2.send("SEND", &[("destination", "/queue/rpc-stomp"), ("reply-to", "/temp-queue/answers")], "ping3").await;
    let m = message(&mut server, "ping3").await;
    assert_ne!(m.header("reply-to"), Some(reply_to.as_str()));

    // Someone else cannot listen in.
    let mut spy = client(&b, via, "1.2").await;
    spy.send("SUBSCRIBE", &[("id", "x"), ("destination", &reply_to)], "").await;
    assert_eq!(error_then_close(&mut spy).await.header("message"), Some("private destination"));
    let mut spy = client(&b, via, "1.2").await;
    spy.send("SUBSCRIBE", &[("id", "x"), ("destination", "/topic/$temp/#")], "").await;
    error_then_close(&mut spy).await;

    // After the requester leaves, its destination goes nowhere (and the replier is unaffected).
    disconnect(req).await;
    send_receipted(&mut server, &reply_to, &[], "late").await;

    // An explicit SUBSCRIBE to a temp queue receives the replies under the client's own id.
    let mut req = client(&b, via, "1.2").await;
    subscribe(&mut req, "mine", "/temp-queue/inbox", &[]).await;
    req.send("SEND", &[("destination", "/queue/rpc-stomp"), ("reply-to", "/temp-queue/inbox")], "ping4").await;
    let m = message(&mut server, "ping4").await;
    send_receipted(&mut server, m.header("reply-to").unwrap(), &[], "pong4").await;
    let r = message(&mut req, "pong4").await;
    assert_eq!((r.header("subscription"), r.header("destination")), (Some("mine"), Some("/temp-queue/inbox")));
    b.shutdown().await;
}

fn mqtt5(id: &str, b: &Broker) -> rumqttc::v5::MqttOptions {
    let addr = b.mqtt_addr().expect("mqtt listener");
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

async fn mqtt5_subscribed(id: &str, b: &Broker, filter: &str) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    let (c, mut ev) = rumqttc::v5::AsyncClient::new(mqtt5(id, b), 10);
    c.subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
    mqtt5_until(&mut ev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    (c, ev)
}

async fn mqtt5_next_publish(ev: &mut rumqttc::v5::EventLoop) -> rumqttc::v5::mqttbytes::v5::Publish {
    use rumqttc::v5::mqttbytes::v5::Packet;
    mqtt5_until(ev, |p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await
}

/// A STOMP request answered by an MQTT 5 replier through its response topic.
async fn temp_queue_reply_from_mqtt(via: Via) {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::mqttbytes::QoS;
    let b = broker().await;
    let (replier, mut ev) = mqtt5_subscribed(&format!("replier-{via:?}"), &b, "rpc/mqtt").await;

    let mut req = client(&b, via, "1.2").await;
    req.send(
        "SEND",
        &[("destination", "/topic/rpc/mqtt"), ("reply-to", "/temp-queue/r"), ("correlation-id", "id-7")],
        "question",
    )
    .await;
    let p = mqtt5_next_publish(&mut ev).await;
    let props = p.properties.clone().expect("properties");
    let response_topic = props.response_topic.clone().expect("response topic");
    assert!(response_topic.starts_with("$temp/") && response_topic.ends_with("/r"), "{response_topic}");
    assert_eq!(props.correlation_data.as_deref(), Some(&b"id-7"[..]));
    let answer = PublishProperties { correlation_data: props.correlation_data.clone(), ..PublishProperties::default() };
    replier.publish_with_properties(response_topic, QoS::AtLeastOnce, false, "answer", answer).await.unwrap();
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });

    let r = message(&mut req, "answer").await;
    assert_eq!(r.header("destination"), Some("/temp-queue/r"));
    assert_eq!(r.header("subscription"), Some("/temp-queue/r"));
    assert_eq!(r.header("correlation-id"), Some("id-7"));
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// expires
// ---------------------------------------------------------------------------------------------

/// `expires` (ms since the epoch) travels with the message; an expired message is not
/// delivered, from a topic or a queue.
async fn expires_header(via: Via) {
    let b = broker().await;
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", "/topic/exp", &[]).await;
    let mut p = client(&b, via, "1.2").await;

    let later = (unix_ms() + 60_000).to_string();
    send_receipted(&mut p, "/topic/exp", &[("expires", &later)], "fresh").await;
    let m = message(&mut sub, "fresh").await;
    let expires: u64 = m.header("expires").expect("expires").parse().unwrap();
    let want: u64 = later.parse().unwrap();
    assert!(expires.abs_diff(want) < 5_000, "{expires} vs {want}");

    send_receipted(&mut p, "/topic/exp", &[("expires", "1")], "stale").await;
    send_receipted(&mut p, "/topic/exp", &[("expires", "0")], "never").await;
    let m = message(&mut sub, "never").await;
    assert_eq!(m.header("expires"), None);

    // In a queue: expires while waiting for a consumer.
    let q = format!("/queue/exp-{via:?}");
    let soon = (unix_ms() + 300).to_string();
    send_receipted(&mut p, &q, &[("expires", &soon)], "short-lived").await;
    send_receipted(&mut p, &q, &[("expires", &later)], "long-lived").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "c", &q, &[("ack", "client-individual")]).await;
    let m = message(&mut c, "long-lived").await;
    c.send("ACK", &[("id", m.header("ack").unwrap()), ("receipt", "a")], "").await;
    receipt(&mut c, "a").await;
    disconnect(c).await;
    // ... and is gone for good, not waiting for another consumer.
    send_receipted(&mut p, &q, &[], "after").await;
    let mut c = client(&b, via, "1.2").await;
    subscribe(&mut c, "c", &q, &[]).await;
    message(&mut c, "after").await;

    let mut bad = client(&b, via, "1.2").await;
    bad.send("SEND", &[("destination", "/topic/exp"), ("expires", "tomorrow")], "").await;
    assert_eq!(error_then_close(&mut bad).await.header("message"), Some("invalid expires header"));
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 interop
// ---------------------------------------------------------------------------------------------

/// Content type, correlation data, response topic and user properties ⇔ STOMP headers, QoS ⇔
/// `persistent`, both ways, on topics with `.`, `*`, spaces and non-ASCII.
async fn mqtt_5_interop_both_ways(via: Via) {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::mqttbytes::QoS;
    let b = broker().await;
    let topic = "odd/a.b*c d/ü€";

    // MQTT → STOMP.
    let mut sub = client(&b, via, "1.2").await;
    subscribe(&mut sub, "s", &format!("/topic/{topic}"), &[]).await;
    let (c, mut ev) = rumqttc::v5::AsyncClient::new(mqtt5(&format!("pub-{via:?}"), &b), 10);
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr-1")),
        response_topic: Some("replies/x.y z".into()),
        user_properties: vec![("k1".into(), "v:1\nnext".into()), ("ü".into(), "€".into())],
        ..PublishProperties::default()
    };
    c.publish_with_properties(topic, QoS::AtLeastOnce, false, "{\"a\":1}", props).await.unwrap();
    c.publish(topic, QoS::AtMostOnce, false, "qos0").await.unwrap();
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let m = message(&mut sub, "{\"a\":1}").await;
    assert_eq!(m.header("destination"), Some(format!("/topic/{topic}").as_str()));
    assert_eq!(m.header("content-type"), Some("application/json"));
    assert_eq!(m.header("correlation-id"), Some("corr-1"));
    assert_eq!(m.header("reply-to"), Some("/topic/replies/x.y z"));
    assert_eq!(m.header("persistent"), Some("true"));
    assert_eq!(m.header("k1"), Some("v\\c1\\nnext"), "escaped on the wire");
    assert_eq!(m.header("ü"), Some("€"));
    let m = message(&mut sub, "qos0").await;
    assert_eq!(m.header("persistent"), None);

    // STOMP → MQTT.
    let (_m, mut ev) = mqtt5_subscribed(&format!("sub-{via:?}"), &b, topic).await;
    let mut p = client(&b, via, "1.2").await;
    raw(
        &mut p,
        format!(
            "SEND\ndestination:/topic/{topic}\npersistent:true\ncontent-type:text/plain\ncorrelation-id:c-2\n\
reply-to:/queue/answers\nx-custom:a\\cb\nx-custom:ignored\nü-key:ü-value\nreceipt:r\n\nfrom stomp\0"
        )
        .as_bytes(),
    )
    .await;
    receipt(&mut p, "r").await;
    p.send("SEND", &[("destination", &format!("/topic/{topic}"))], "not persistent").await;
    let got = mqtt5_next_publish(&mut ev).await;
    assert_eq!(&got.topic[..], topic.as_bytes());
    assert_eq!(&got.payload[..], b"from stomp");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let props = got.properties.expect("properties");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"c-2"[..]));
    assert_eq!(props.response_topic.as_deref(), Some("$queue/answers"));
    assert_eq!(
        props.user_properties,
        vec![("x-custom".to_string(), "a:b".to_string()), ("ü-key".to_string(), "ü-value".to_string())]
    );
    let got = mqtt5_next_publish(&mut ev).await;
    assert_eq!((&got.payload[..], got.qos), (&b"not persistent"[..], QoS::AtMostOnce));
    b.shutdown().await;
}

/// Two subscribers to one topic each get every message; two consumers of one queue share them.
#[tokio::test]
async fn topic_fan_out_and_queue_competing_consumers() {
    let b = broker().await;
    let mut a = client(&b, Via::Tcp, "1.2").await;
    let mut w = client(&b, Via::Ws, "1.2").await;
    subscribe(&mut a, "t", "/topic/fan", &[]).await;
    subscribe(&mut w, "t", "/topic/fan", &[]).await;
    subscribe(&mut a, "q", "/queue/compete", &[("ack", "client-individual"), ("prefetch-count", "1")]).await;
    subscribe(&mut w, "q", "/queue/compete", &[("ack", "client-individual"), ("prefetch-count", "1")]).await;
    let mut p = client(&b, Via::Tcp, "1.2").await;
    send_receipted(&mut p, "/topic/fan", &[], "all").await;
    message(&mut a, "all").await;
    message(&mut w, "all").await;
    send_receipted(&mut p, "/queue/compete", &[], "j1").await;
    send_receipted(&mut p, "/queue/compete", &[], "j2").await;
    let (x, y) = (expect(&mut a, "MESSAGE").await, expect(&mut w, "MESSAGE").await);
    let mut bodies = [String::from_utf8(x.body).unwrap(), String::from_utf8(y.body).unwrap()];
    bodies.sort();
    assert_eq!(bodies, ["j1", "j2"]);
    b.shutdown().await;
}
