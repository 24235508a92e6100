//! Issue 8: a QoS 0 message to many subscribers is encoded once per wire format and the bytes
//! are shared. Every subscriber must still get exactly its own packet: MQTT 3.1.1 and MQTT 5
//! side by side, MQTT 5 with and without a Subscription Identifier, over TCP, over WebSocket,
//! and over WebSocket with permessage-deflate; RETAIN set only where it belongs. Packets are
//! encoded and checked by hand here, never with the broker's codec.

mod common;

use std::net::SocketAddr;

use common::raw_mqtt::{connect5, mqtt_str, packet, publish, split_packet, subscribe311, Mqtt};
use common::{broker, mqtt_connect_bytes, ws_connect, Conn, PATIENCE};
use futures::SinkExt;

/// One subscriber's transport.
enum Link {
    Tcp(Mqtt),
    Ws(Conn, Vec<u8>),
    Deflate(Box<yawc::TcpWebSocket>, Vec<u8>),
}

impl Link {
    async fn tcp(addr: SocketAddr) -> Link {
        Link::Tcp(Mqtt::open(addr).await)
    }

    async fn ws(addr: SocketAddr) -> Link {
        let conn = ws_connect(addr, "/ws", &["mqtt"]).await.ok().expect("handshake");
        Link::Ws(conn, Vec::new())
    }

    /// A WebSocket on `/mqtt` (MQTT by default) that offers permessage-deflate.
    async fn deflate(addr: SocketAddr) -> Link {
        let io = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let url = format!("ws://{addr}/mqtt").parse().expect("url");
        let options = yawc::Options::default().with_balanced_compression();
        let ws = yawc::WebSocket::handshake(url, yawc::MaybeTlsStream::Plain(io), options).await.expect("handshake");
        Link::Deflate(Box::new(ws), Vec::new())
    }

    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Link::Tcp(m) => m.send(bytes).await,
            Link::Ws(c, _) => c.send(bytes).await.expect("send"),
            Link::Deflate(ws, _) => ws.send(yawc::Frame::binary(bytes.to_vec())).await.expect("send"),
        }
    }

    /// The next packet: its first byte and body.
    async fn packet(&mut self) -> (u8, Vec<u8>) {
        loop {
            let buf = match self {
                Link::Tcp(m) => return m.packet().await.expect("a packet"),
                Link::Ws(_, buf) | Link::Deflate(_, buf) => buf,
            };
            if let Some((p, used)) = split_packet(buf) {
                buf.drain(..used);
                return p;
            }
            match self {
                Link::Tcp(_) => {}
                Link::Ws(c, buf) => buf.extend(c.recv().await.expect("a message")),
                Link::Deflate(ws, buf) => {
                    let frame = tokio::time::timeout(PATIENCE, ws.next_frame()).await.expect("in time").expect("frame");
                    buf.extend_from_slice(frame.payload());
                }
            }
        }
    }
}

/// A subscriber: how it connects and what it subscribes with.
struct Sub {
    link: Link,
    v5: bool,
}

impl Sub {
    /// Connects, and subscribes to `filter` at QoS 1, with Subscription Identifier `ident`
    /// (MQTT 5 only).
    async fn open(mut link: Link, v5: bool, id: &str, filter: &str, ident: Option<u8>) -> Sub {
        link.send(&if v5 { connect5(id) } else { mqtt_connect_bytes(id, 60, true) }).await;
        let (first, ack) = link.packet().await;
        assert_eq!((first >> 4, ack[1]), (2, 0), "{id}: CONNACK accepted");
        let mut body = 1u16.to_be_bytes().to_vec();
        if v5 {
            match ident {
                Some(i) => body.extend([2, 0x0B, i]),
                None => body.push(0),
            }
        }
        body.extend(mqtt_str(filter.as_bytes()));
        body.push(1);
        link.send(&packet(0x82, &body)).await;
        let (first, _) = link.packet().await;
        assert_eq!(first >> 4, 9, "{id}: SUBACK");
        Sub { link, v5 }
    }
}

/// The QoS 0 PUBLISH a subscriber must get, as (first byte, body).
fn expected(v5: bool, ident: Option<u8>, retain: bool, topic: &str, payload: &[u8]) -> (u8, Vec<u8>) {
    let mut body = mqtt_str(topic.as_bytes());
    if v5 {
        match ident {
            Some(i) => body.extend([2, 0x0B, i]),
            None => body.push(0),
        }
    }
    body.extend_from_slice(payload);
    (0x30 | u8::from(retain), body)
}

#[tokio::test]
async fn issue_8_every_subscriber_gets_its_own_exact_packet_from_a_shared_encoding() {
    let b = broker().await;
    let (mqtt, ws) = (b.mqtt_addr().expect("mqtt"), b.ws_addr().expect("ws"));
    let mut subs = vec![
        (Sub::open(Link::tcp(mqtt).await, false, "t3a", "fan/#", None).await, None),
        (Sub::open(Link::tcp(mqtt).await, false, "t3b", "fan/#", None).await, None),
        (Sub::open(Link::ws(ws).await, false, "w3", "fan/#", None).await, None),
        (Sub::open(Link::deflate(ws).await, false, "d3", "fan/#", None).await, None),
        (Sub::open(Link::tcp(mqtt).await, true, "t5a", "fan/#", None).await, None),
        (Sub::open(Link::ws(ws).await, true, "w5", "fan/#", None).await, None),
        (Sub::open(Link::deflate(ws).await, true, "d5", "fan/#", None).await, None),
        (Sub::open(Link::tcp(mqtt).await, true, "t5id", "fan/#", Some(7)).await, Some(7)),
        (Sub::open(Link::ws(ws).await, true, "w5id", "fan/#", Some(9)).await, Some(9)),
    ];
    let mut publisher = Mqtt::connected311(mqtt, "pub").await;
    // Large enough to be compressed on the deflate connections (threshold 128 bytes).
    let big: Vec<u8> = (0..600u32).map(|i| b"fan-out "[i as usize % 8]).collect();
    publisher.send(&packet(0x30, &[mqtt_str(b"fan/a").as_slice(), b"small"].concat())).await;
    publisher.send(&packet(0x30, &[mqtt_str(b"fan/b").as_slice(), &big].concat())).await;
    // A retained message reaches the live subscribers with RETAIN 0 [MQTT-3.3.1-9].
    publisher.send(&packet(0x31, &[mqtt_str(b"fan/r").as_slice(), b"kept"].concat())).await;
    for (sub, ident) in &mut subs {
        let v5 = sub.v5;
        assert_eq!(sub.link.packet().await, expected(v5, *ident, false, "fan/a", b"small"));
        assert_eq!(sub.link.packet().await, expected(v5, *ident, false, "fan/b", &big));
        assert_eq!(sub.link.packet().await, expected(v5, *ident, false, "fan/r", b"kept"));
    }
    // A new subscription gets the retained message with RETAIN 1 [MQTT-3.3.1-8], from the
    // same shared encoding (the retained store holds the message too).
    for (link, v5, id) in [(Link::tcp(mqtt).await, false, "late3"), (Link::ws(ws).await, true, "late5")] {
        let mut late = Sub::open(link, v5, id, "fan/r", None).await;
        assert_eq!(late.link.packet().await, expected(v5, None, true, "fan/r", b"kept"));
    }
    b.shutdown().await;
}

/// QoS 0 publishes that arrive together are routed together (issue 8). A burst in one write,
/// with a QoS 1 publish and a SUBSCRIBE of the publisher's own in the middle, must still reach
/// a plain and a persistent-session subscriber complete and in order, and the SUBSCRIBE must
/// take effect exactly between the publishes before it and those after it.
#[tokio::test]
async fn issue_8_a_burst_of_publishes_keeps_its_order_around_other_packets() {
    let b = broker().await;
    let mqtt = b.mqtt_addr().expect("mqtt");
    let mut plain = Mqtt::connected311(mqtt, "plain").await;
    plain.send(&subscribe311(1, &["burst/#"])).await;
    plain.expect(9, "SUBACK").await;
    let mut kept = Mqtt::subscribed_persistent311(mqtt, "kept", 60, "burst/#").await;

    let mut publisher = Mqtt::connected311(mqtt, "burster").await;
    let mut burst = Vec::new();
    let mut sent = Vec::new();
    for i in 0..300u32 {
        let payload = i.to_string().into_bytes();
        if i == 100 {
            burst.extend(publish(false, "burst/q1", 1, 7, &payload));
        } else if i == 200 {
            burst.extend(subscribe311(3, &["burst/#"]));
            continue;
        } else {
            burst.extend(publish(false, "burst/q0", 0, 0, &payload));
        }
        sent.push(payload);
    }
    publisher.send(&burst).await;

    let sent_with_qos: Vec<(u8, Vec<u8>)> =
        sent.iter().map(|p| (u8::from(p.as_slice() == b"100"), p.clone())).collect();
    assert_eq!(received(&mut plain, sent.len()).await, sent_with_qos, "plain: all, in order");
    // A persistent session gets its QoS 1 message once the store has it, so a later QoS 0
    // message to another topic may overtake it; each topic and QoS keeps its order
    // [MQTT-4.6.0-6].
    let mut kept_got = received(&mut kept, sent.len()).await;
    kept_got.sort_by_key(|(qos, _)| *qos);
    let mut sent_sorted = sent_with_qos.clone();
    sent_sorted.sort_by_key(|(qos, _)| *qos);
    assert_eq!(kept_got, sent_sorted, "kept: all, in order per topic and QoS");
    // The publisher: PUBACK for its QoS 1 publish, its SUBACK and (MQTT 3.1.1 has no No Local)
    // exactly its own publishes after the SUBSCRIBE, in order. The PUBACK waits for the store
    // (the persistent session), so it may come after some of them: MQTT orders
    // acknowledgements only among publishes.
    let (mut acks, mut own) = (Vec::new(), Vec::new());
    while acks.len() < 2 || own.len() < 99 {
        match publisher.packet().await.expect("a packet") {
            (0x30, body) => own.push(String::from_utf8(body[2 + "burst/q0".len()..].to_vec()).expect("text")),
            ack => acks.push(ack),
        }
    }
    acks.sort();
    assert_eq!(acks, [(0x40, 7u16.to_be_bytes().to_vec()), (0x90, vec![0, 3, 1])]);
    assert_eq!(own, (201..300u32).map(|i| i.to_string()).collect::<Vec<_>>(), "own messages, in order");
    b.shutdown().await;
}

/// The next `n` PUBLISHes: QoS and payload of each.
async fn received(sub: &mut Mqtt, n: usize) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    for i in 0..n {
        let (first, body) = sub.packet().await.unwrap_or_else(|| panic!("message {i}"));
        assert_eq!(first >> 4, 3, "a PUBLISH");
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        // A QoS 1 publish comes with a packet identifier after the topic.
        let qos = (first >> 1) & 3;
        got.push((qos, body[2 + topic_len + if qos > 0 { 2 } else { 0 }..].to_vec()));
    }
    got
}
