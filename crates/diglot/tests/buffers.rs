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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await.expect("request");
    // Byte by byte up to the blank line, so that no WebSocket frame is read with the head.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(io.read_u8().await.expect("response head"));
    }
    let head = String::from_utf8(head).expect("ascii head");
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade: {head}");
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
