//! A raw MQTT client for end-to-end tests: packets encoded and decoded by hand (never with the
//! broker's codec), read whole from a TCP stream.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{mqtt_connect_bytes, PATIENCE};

/// An MQTT variable byte integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(varint(body.len()));
    p.extend_from_slice(body);
    p
}

/// An MQTT length-prefixed string or binary.
pub fn mqtt_str(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// An MQTT 5 CONNECT, clean start, keep-alive 60, no properties.
pub fn connect5(id: &str) -> Vec<u8> {
    let mut body = mqtt_str(b"MQTT");
    body.extend([5, 0x02, 0, 60, 0]);
    body.extend(mqtt_str(id.as_bytes()));
    packet(0x10, &body)
}

/// An MQTT 5 CONNECT that resumes or starts a persistent session (clean start 0) kept
/// `expiry_secs` after the connection ends.
pub fn connect5_persistent(id: &str, expiry_secs: u32) -> Vec<u8> {
    let mut body = mqtt_str(b"MQTT");
    body.extend([5, 0x00, 0, 60, 5, 0x11]);
    body.extend(expiry_secs.to_be_bytes());
    body.extend(mqtt_str(id.as_bytes()));
    packet(0x10, &body)
}

/// The reason code of an MQTT 5 PUBACK/PUBREC body (absent means 0x00 Success).
pub fn ack_reason(body: &[u8]) -> u8 {
    body.get(2).copied().unwrap_or(0)
}

/// A SUBSCRIBE (3.1.1 layout) of `filters`, each at QoS 1.
pub fn subscribe311(id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for f in filters {
        body.extend(mqtt_str(f.as_bytes()));
        body.push(1);
    }
    packet(0x82, &body)
}

/// A PUBLISH; `v5` adds an empty property list.
pub fn publish(v5: bool, topic: &str, qos: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = mqtt_str(topic.as_bytes());
    if qos > 0 {
        body.extend(id.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// An MQTT client over TCP that reads whole packets.
pub struct Mqtt {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Mqtt {
    /// Connects (TCP only; nothing is sent).
    pub async fn open(addr: SocketAddr) -> Mqtt {
        Mqtt { s: TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    /// Sends bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }

    /// The next packet (first byte and body), or `None` once the server closed.
    pub async fn packet(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((p, used)) = split_packet(&self.buf) {
                self.buf.drain(..used);
                return Some(p);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(PATIENCE, self.s.read(&mut chunk)).await.expect("answer in time").unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next packet, which must be of type `kind`: its body.
    pub async fn expect(&mut self, kind: u8, what: &str) -> Vec<u8> {
        match self.packet().await {
            Some((first, body)) if first >> 4 == kind => body,
            other => panic!("{what}: expected packet type {kind}, got {other:?}"),
        }
    }

    /// Everything the server sends until it closes.
    pub async fn until_close(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut all = Vec::new();
        while let Some(p) = self.packet().await {
            all.push(p);
        }
        all
    }

    /// An MQTT 3.1.1 client with a clean session, accepted.
    pub async fn connected311(addr: SocketAddr, id: &str) -> Mqtt {
        let mut m = Mqtt::open(addr).await;
        m.send(&mqtt_connect_bytes(id, 60, true)).await;
        let ack = m.expect(2, "CONNACK").await;
        assert_eq!(ack[1], 0, "CONNACK accepted");
        m
    }

    /// An MQTT 3.1.1 client with a persistent session (clean session 0, keep-alive
    /// `keep_alive`), subscribed to `filter` at QoS 1.
    pub async fn subscribed_persistent311(addr: SocketAddr, id: &str, keep_alive: u16, filter: &str) -> Mqtt {
        let mut m = Mqtt::open(addr).await;
        m.send(&mqtt_connect_bytes(id, keep_alive, false)).await;
        m.expect(2, "CONNACK").await;
        m.send(&subscribe311(1, &[filter])).await;
        m.expect(9, "SUBACK").await;
        m
    }

    /// An MQTT 5 client with a clean start, accepted.
    pub async fn connected5(addr: SocketAddr, id: &str) -> Mqtt {
        let mut m = Mqtt::open(addr).await;
        m.send(&connect5(id)).await;
        let ack = m.expect(2, "CONNACK").await;
        assert_eq!(ack[1], 0, "CONNACK accepted");
        m
    }
}

/// The first whole packet in `b` (first byte, body) and its length.
pub fn split_packet(b: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
    loop {
        let byte = *b.get(i)?;
        len += usize::from(byte & 0x7f) * mult;
        mult *= 128;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = i + len;
    (b.len() >= end).then(|| ((b[0], b[i..end].to_vec()), end))
}
