//! Issue 8: an idle connection keeps small buffers (a 256-byte WebSocket read buffer, no write
//! buffer, no input buffer past what a frame needs), and they grow for a large message and are
//! given back after it. These tests check that messages larger than every buffer still arrive
//! whole after the buffers shrank, in both directions, over WebSocket (plain and with
//! permessage-deflate) and over raw TCP.

mod common;

use common::raw_mqtt::*;
use common::*;
use futures::SinkExt;

/// Payload sizes in the order sent: small, large, small, larger, small again, so that each
/// large message comes after the buffers went back to their idle size.
const SIZES: [usize; 6] = [10, 300_000, 5, 1_000_000, 1, 70_000];

/// A payload of `len` bytes that compresses poorly (so that deflate cannot make it small).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One MQTT client over some transport.
enum Peer {
    /// tokio-tungstenite (no compression) or raw TCP, from the common helpers.
    Plain(Conn, Vec<u8>),
    /// yawc's client with permessage-deflate.
    Deflate(Box<yawc::WebSocket<tokio::net::TcpStream>>, Vec<u8>),
}

impl Peer {
    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Peer::Plain(c, _) => c.send_binary(bytes).await.expect("send"),
            Peer::Deflate(ws, _) => ws.send(yawc::Frame::binary(bytes.to_vec())).await.expect("send"),
        }
    }

    /// The next MQTT packet (first byte, body).
    async fn packet(&mut self) -> (u8, Vec<u8>) {
        loop {
            let buf = match self {
                Peer::Plain(_, b) | Peer::Deflate(_, b) => b,
            };
            if let Some((p, used)) = split_packet(buf) {
                buf.drain(..used);
                return p;
            }
            let chunk = match self {
                Peer::Plain(c, _) => c.recv().await.expect("the broker closed the connection"),
                Peer::Deflate(ws, _) => {
                    let frame = tokio::time::timeout(PATIENCE, ws.next_frame())
                        .await
                        .expect("an answer in time")
                        .expect("the broker closed the connection");
                    frame.payload().to_vec()
                }
            };
            match self {
                Peer::Plain(_, b) | Peer::Deflate(_, b) => b.extend_from_slice(&chunk),
            }
        }
    }

    async fn expect(&mut self, kind: u8, what: &str) -> Vec<u8> {
        let (first, body) = self.packet().await;
        assert_eq!(first >> 4, kind, "{what}: packet type");
        body
    }
}

/// A yawc client that offers permessage-deflate and `mqtt`; panics unless the broker agreed
/// to deflate. The handshake is written by hand, so that the agreed extension can be checked.
async fn deflate_client(addr: std::net::SocketAddr) -> Peer {
    let (io, head) = raw_upgrade(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let extension = head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-extensions: ").or(l.strip_prefix("Sec-WebSocket-Extensions: ")))
        .expect("the broker agreed to an extension")
        .to_string();
    assert!(extension.starts_with("permessage-deflate"), "{extension}");
    let options = yawc::Options::default().with_low_latency_compression().with_limits(4 << 20, 4 << 20);
    let ws = yawc::WebSocket::from_stream_with_extensions(io, yawc::Role::Client, Some(&extension), options)
        .expect("a deflate client");
    Peer::Deflate(Box::new(ws), Vec::new())
}

/// A WebSocket upgrade to `/ws` offering `mqtt` (and `extra` header lines), written by hand;
/// the response head is read byte by byte up to the blank line, so that no WebSocket frame is
/// read with it. Panics unless the broker answered 101.
async fn raw_upgrade(addr: std::net::SocketAddr, extra: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n{extra}\r\n"
    );
    io.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(io.read_u8().await.expect("response head"));
    }
    let head = String::from_utf8(head).expect("ascii head");
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade: {head}");
    (io, head)
}

/// Subscribes to `t`, publishes every size of [`SIZES`] to it at QoS 0, and checks that each
/// comes back whole and in order: the broker reads each publish and writes each delivery.
async fn round_trip(mut peer: Peer, id: &str) {
    peer.send(&mqtt_connect_bytes(id, 60, true)).await;
    assert_eq!(peer.expect(2, "CONNACK").await[1], 0, "CONNACK accepted");
    peer.send(&subscribe311(1, &["t"])).await;
    peer.expect(9, "SUBACK").await;
    for (i, &len) in SIZES.iter().enumerate() {
        let sent = payload(len, i as u64);
        peer.send(&publish(false, "t", 0, 0, &sent)).await;
        let body = peer.expect(3, "PUBLISH").await;
        // MQTT 3.1.1 QoS 0 PUBLISH body: topic length (2), topic, payload.
        assert_eq!(&body[..3], b"\x00\x01t", "topic of message {i}");
        assert!(body[3..] == sent[..], "message {i} ({len} bytes) arrived whole");
    }
}

fn config() -> diglot::Config {
    let mut config = diglot::Config::ephemeral();
    config.limits.max_frame_bytes = 2 << 20;
    config.limits.max_ws_frame_bytes = 4 << 20;
    config.limits.max_ws_message_bytes = 4 << 20;
    config
}

#[tokio::test]
async fn issue8_large_messages_after_idle_buffers_shrank_over_websocket() {
    let b = broker_with(config()).await;
    let Ok(conn) = ws_connect(b.ws_addr().expect("ws"), "/ws", &["mqtt"]).await else { panic!("upgrade refused") };
    round_trip(Peer::Plain(conn, Vec::new()), "ws-plain").await;
    b.shutdown().await;
}

#[tokio::test]
async fn issue8_large_messages_after_idle_buffers_shrank_over_websocket_with_deflate() {
    let b = broker_with(config()).await;
    round_trip(deflate_client(b.ws_addr().expect("ws")).await, "ws-deflate").await;
    b.shutdown().await;
}

#[tokio::test]
async fn issue8_large_messages_after_idle_buffers_shrank_over_tcp() {
    let b = broker_with(config()).await;
    let conn = tcp_connect(b.mqtt_addr().expect("mqtt")).await;
    round_trip(Peer::Plain(conn, Vec::new()), "tcp").await;
    b.shutdown().await;
}

/// A client frame (RFC 6455 §5.2: FIN, binary, masked with `key`) around `payload`.
fn masked_frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A publisher whose frames arrive back to back, many per read, with frame boundaries falling
/// anywhere in a read: the broker raises its small idle read buffer for the burst, lowers it
/// when the socket runs dry, raises it again for the next burst, and every message of both
/// bursts arrives whole and in order (the partial frame at the end of each read survives
/// each change of buffer).
#[tokio::test]
async fn back_to_back_frames_across_read_buffer_changes_arrive_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = broker_with(config()).await;
    let addr = b.ws_addr().expect("ws");
    let Ok(mut sub) = ws_connect(addr, "/ws", &["mqtt"]).await else { panic!("upgrade refused") };
    sub.send_binary(&mqtt_connect_bytes("burst-sub", 60, true)).await.expect("connect");
    let mut inbox = Vec::new();
    let first = next_packet(&mut sub, &mut inbox).await;
    assert_eq!(first.0 >> 4, 2, "CONNACK");
    sub.send_binary(&subscribe311(1, &["burst"])).await.expect("subscribe");
    let p = next_packet(&mut sub, &mut inbox).await;
    assert_eq!(p.0 >> 4, 9, "SUBACK");

    // The publisher: a hand-made handshake, then raw frames.
    let (mut io, _) = raw_upgrade(addr, "").await;
    io.write_all(&masked_frame(&mqtt_connect_bytes("burst-pub", 60, true), [1, 2, 3, 4])).await.expect("connect");
    let mut connack = [0u8; 6];
    io.read_exact(&mut connack).await.expect("CONNACK");
    assert_eq!(connack, [0x82, 4, 0x20, 2, 0, 0], "CONNACK in one frame");

    // Sizes from 1 byte to past the 16 KiB busy buffer, pseudo-random; written in pieces of
    // odd lengths so that reads end mid-frame.
    let mut seq = 0u32;
    let mut sizes = payload(1200, 7).into_iter();
    let mut expected = Vec::new();
    for burst in 0..2 {
        let mut bytes = Vec::new();
        for _ in 0..600 {
            let r = usize::from(sizes.next().expect("a size"));
            let len = if r % 50 == 0 { 20_000 + r } else { 4 + r };
            let mut body = payload(len, u64::from(seq));
            body[..4].copy_from_slice(&seq.to_be_bytes());
            bytes.extend(masked_frame(&publish(false, "burst", 0, 0, &body), seq.to_be_bytes()));
            expected.push(body);
            seq += 1;
        }
        for piece in bytes.chunks(7_001 + burst * 2_048) {
            io.write_all(piece).await.expect("publish");
        }
        // A round trip between the bursts: the broker has read everything and found the socket
        // empty (PINGRESP, alone in its frame, comes after every publish was handled).
        io.write_all(&masked_frame(&[0xc0, 0], [9, 9, 9, 9])).await.expect("PINGREQ");
        let mut pingresp = [0u8; 4];
        io.read_exact(&mut pingresp).await.expect("PINGRESP");
        assert_eq!(pingresp, [0x82, 2, 0xd0, 0], "PINGRESP");
    }

    for (i, want) in expected.iter().enumerate() {
        let (first, body) = next_packet(&mut sub, &mut inbox).await;
        assert_eq!(first >> 4, 3, "message {i}: PUBLISH");
        assert_eq!(&body[..7], b"\x00\x05burst", "message {i}: topic");
        assert!(body[7..] == want[..], "message {i} ({} bytes) arrived whole and in order", want.len());
    }
    b.shutdown().await;
}

/// The next MQTT packet from `sub`, with `inbox` holding what arrived past the last one.
async fn next_packet(sub: &mut Conn, inbox: &mut Vec<u8>) -> (u8, Vec<u8>) {
    loop {
        if let Some((p, used)) = split_packet(inbox) {
            inbox.drain(..used);
            return p;
        }
        inbox.extend_from_slice(&sub.recv().await.expect("the broker closed the subscriber"));
    }
}
