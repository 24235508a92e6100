//! Random bytes and truncated frames on every listener get the protocol's error and a close,
//! and the broker keeps serving everyone else.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// Proves the broker still serves: a fresh MQTT and a fresh STOMP client each complete CONNECT
/// over TCP and over WebSocket.
async fn still_serving(b: &diglot::Broker) {
    let mut m = tcp_connect(b.mqtt_addr().unwrap()).await;
    m.send(&mqtt_connect_bytes("after", 10, true)).await.unwrap();
    assert_eq!(m.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    let mut m = ws_connect(b.ws_addr().unwrap(), "/ws", &["mqtt"]).await.ok().unwrap();
    m.send(&mqtt_connect_bytes("after-ws", 10, true)).await.unwrap();
    assert_eq!(m.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await).connect("1.2").await;
    Stomp::new(ws_connect(b.ws_addr().unwrap(), "/ws", &["v12.stomp"]).await.ok().unwrap()).connect("1.2").await;
}

#[tokio::test]
async fn mqtt_random_bytes_close_the_connection() {
    let b = broker().await;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..20 {
        let mut junk = rng.bytes(1 + round * 97);
        // Never a valid CONNECT: the first packet must be CONNECT [MQTT-3.1.0-1].
        junk[0] = 0x30 | (junk[0] & 0x0F);
        for ws in [false, true] {
            let mut c = if ws {
                ws_connect(b.ws_addr().unwrap(), "/ws", &["mqtt"]).await.ok().unwrap()
            } else {
                tcp_connect(b.mqtt_addr().unwrap()).await
            };
            let _ = c.send(&junk).await;
            // MQTT 3.1.1 has no error packet before CONNACK: the answer is a close.
            c.read_to_close().await;
        }
    }
    // Garbage after a valid CONNECT also closes (a reserved packet type 0).
    let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
    c.send(&mqtt_connect_bytes("junk", 10, true)).await.unwrap();
    assert_eq!(c.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    c.send(&[0x00, 0x02, 0xff, 0xff]).await.unwrap();
    c.read_to_close().await;
    // An impossible remaining length (five continuation bytes).
    let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
    c.send(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]).await.unwrap();
    c.read_to_close().await;
    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn mqtt_truncated_packets_end_cleanly() {
    let b = broker().await;
    let connect = mqtt_connect_bytes("truncated", 10, true);
    for cut in 1..connect.len() {
        let mut s = TcpStream::connect(b.mqtt_addr().unwrap()).await.unwrap();
        s.write_all(&connect[..cut]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "no CONNACK for a truncated CONNECT (cut at {cut})");
    }
    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_random_bytes_get_error_and_close() {
    let b = broker().await;
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    for round in 0..20 {
        let mut junk = b"\x01\x02not-a-command\n".to_vec();
        junk.extend(rng.bytes(round * 131));
        junk.push(0);
        for ws in [false, true] {
            let conn = if ws {
                ws_connect(b.ws_addr().unwrap(), "/ws", &["v12.stomp"]).await.ok().unwrap()
            } else {
                tcp_connect(b.stomp_addr().unwrap()).await
            };
            let mut s = Stomp::new(conn);
            s.conn.send_binary(&junk).await.unwrap();
            let e = s.frame().await.expect("an ERROR frame before the close");
            assert_eq!(e.command, "ERROR");
            assert!(e.header("message").is_some_and(|m| !m.is_empty()));
            assert!(s.frame().await.is_none(), "closed after ERROR");
        }
    }
    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_limits_stop_endless_headers() {
    let b = broker().await;
    let mut s = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    s.connect("1.2").await;
    // A header line that never ends: refused at the header limit, not buffered forever.
    let mut line = b"SEND\ndestination:/topic/x\nx:".to_vec();
    line.extend(std::iter::repeat_n(b'a', 64 * 1024));
    s.conn.send(&line).await.unwrap();
    let e = s.frame().await.expect("ERROR");
    assert_eq!(e.command, "ERROR");
    assert!(s.frame().await.is_none());
    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_truncated_frames_end_cleanly() {
    let b = broker().await;
    let frame = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0";
    for cut in 1..frame.len() {
        let mut s = TcpStream::connect(b.stomp_addr().unwrap()).await.unwrap();
        s.write_all(&frame[..cut]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(!String::from_utf8_lossy(&rest).contains("CONNECTED"), "cut at {cut}");
    }
    still_serving(&b).await;
    b.shutdown().await;
}

/// Bytes that are not WebSocket frames after a valid upgrade: the broker closes the socket.
#[tokio::test]
async fn websocket_framing_errors_close() {
    let b = broker().await;
    let mut rng = XorShift(42);
    for round in 0..10 {
        let mut s = TcpStream::connect(b.ws_addr().unwrap()).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        // An unmasked client frame is a protocol error (RFC 6455 §5.1), then random bytes.
        let mut junk = vec![0x82, 0x03, 1, 2, 3];
        junk.extend(rng.bytes(round * 50));
        let _ = s.write_all(&junk).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await.expect("closed");
    }
    // A malformed HTTP request gets a 400 from the HTTP layer.
    let mut s = TcpStream::connect(b.ws_addr().unwrap()).await.unwrap();
    s.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await.expect("closed");
    assert!(rest.is_empty() || rest.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&rest));
    still_serving(&b).await;
    b.shutdown().await;
}

/// A client that connects and says nothing is closed by the handshake or CONNECT timeout on
/// every listener, so idle sockets cannot pile up.
#[tokio::test]
async fn silent_clients_are_closed() {
    let mut config = diglot::Config::ephemeral();
    config.server.handshake_timeout_secs = 1;
    config.mqtt.connect_timeout_secs = 1;
    config.stomp.connect_timeout_secs = 1;
    let b = broker_with(config).await;
    for addr in [b.ws_addr().unwrap(), b.mqtt_addr().unwrap(), b.stomp_addr().unwrap()] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await.expect("closed by the broker");
    }
    // Upgraded to WebSocket but never sending CONNECT: closed too.
    for proto in ["mqtt", "v12.stomp"] {
        let mut c = ws_connect(b.ws_addr().unwrap(), "/ws", &[proto]).await.ok().unwrap();
        c.read_to_close().await;
    }
    still_serving(&b).await;
    b.shutdown().await;
}

/// What ends a connection that sent a malformed packet: the packets the broker sent first (MQTT
/// 5 gets DISCONNECT 0x81 Malformed Packet), then the close.
async fn mqtt_closes_on(addr: std::net::SocketAddr, v5: bool, bad: &[u8], what: &str) {
    use common::raw_mqtt::Mqtt;
    let mut m =
        if v5 { Mqtt::connected5(addr, "malformed").await } else { Mqtt::connected311(addr, "malformed").await };
    m.send(bad).await;
    let got = m.until_close().await;
    let expected: Vec<(u8, Option<u8>)> = if v5 { vec![(0xE0, Some(0x81))] } else { vec![] };
    assert_eq!(got.iter().map(|(k, b)| (*k, b.first().copied())).collect::<Vec<_>>(), expected, "{what}");
}

/// [MQTT-3.8.3-4] A 3.1.1 SUBSCRIBE with a reserved bit set in a Requested QoS byte is
/// malformed: the connection closes without a SUBACK. And [MQTT-1.5.3-2] [MQTT-1.5.4-2] U+0000
/// in a UTF-8 string (a client id, a user name, a filter, a property) makes a packet malformed
/// in both versions: the connection closes (MQTT 5: DISCONNECT 0x81 first). So does a PINGREQ
/// with a body, a 3.1.1 acknowledgement longer than its Packet Identifier, and an MQTT 5 CONNECT
/// with Will QoS or Will Retain but no will [MQTT-3.1.2-11] [MQTT-3.1.2-13]. Before, rmqtt-codec
/// let all of these through: it reads only the QoS bits, lets a NUL through everywhere but in
/// topic names, and checks the will flags only in 3.1.1.
#[tokio::test]
async fn mqtt_reserved_subscribe_bits_and_nul_in_strings_are_malformed() {
    use common::raw_mqtt::{connect5, mqtt_str, packet, Mqtt};
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    let subscribe = |v5: bool, filter: &[u8], options: u8| {
        let mut body = vec![0, 1];
        if v5 {
            body.push(0);
        }
        body.extend(mqtt_str(filter));
        body.push(options);
        packet(0x82, &body)
    };
    for options in [0x04, 0x80, 0xC0, 0xFD] {
        mqtt_closes_on(addr, false, &subscribe(false, b"a/b", options), &format!("3.1.1 options {options:#04x}")).await;
    }
    mqtt_closes_on(addr, false, &subscribe(false, b"a/\0", 1), "3.1.1 filter with NUL").await;
    let mut unsubscribe = vec![0, 2];
    unsubscribe.extend(mqtt_str(b"x\0"));
    mqtt_closes_on(addr, false, &packet(0xA2, &unsubscribe), "3.1.1 UNSUBSCRIBE filter with NUL").await;
    mqtt_closes_on(addr, true, &subscribe(true, b"a/\0", 1), "5.0 filter with NUL").await;
    // Packets of a fixed length with another one: a PINGREQ with a byte of body, a 3.1.1 PUBACK
    // of three bytes.
    mqtt_closes_on(addr, false, &[0xC0, 1, 0], "3.1.1 PINGREQ of one byte").await;
    mqtt_closes_on(addr, true, &[0xC0, 1, 0], "5.0 PINGREQ of one byte").await;
    mqtt_closes_on(addr, false, &[0x40, 3, 0, 1, 0], "3.1.1 PUBACK of three bytes").await;
    // MQTT 5 PUBLISH QoS 0 to "t" with a User Property ("k\0", "v").
    let mut props = vec![0x26];
    props.extend(mqtt_str(b"k\0"));
    props.extend(mqtt_str(b"v"));
    let mut body = mqtt_str(b"t");
    body.push(props.len() as u8);
    body.extend(props);
    body.extend_from_slice(b"payload");
    mqtt_closes_on(addr, true, &packet(0x30, &body), "5.0 user property with NUL").await;

    // A CONNECT with NUL in the client id or the user name gets no accepting CONNACK.
    let mut with_user = mqtt_str(b"MQTT");
    with_user.extend([4, 0x82, 0, 60]);
    with_user.extend(mqtt_str(b"ok"));
    with_user.extend(mqtt_str(b"u\0"));
    for (what, connect) in [
        ("3.1.1 client id", mqtt_connect_bytes("a\0b", 60, true)),
        ("3.1.1 user name", packet(0x10, &with_user)),
        ("5.0 client id", connect5("a\0b")),
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] Will QoS 1, or Will Retain, without the Will Flag.
        ("5.0 Will QoS without a will", {
            let mut c = connect5("wq");
            c[9] |= 0x08;
            c
        }),
        ("5.0 Will Retain without a will", {
            let mut c = connect5("wr");
            c[9] |= 0x20;
            c
        }),
    ] {
        let mut m = Mqtt::open(addr).await;
        m.send(&connect).await;
        let got = m.until_close().await;
        assert!(got.iter().all(|(k, b)| *k != 0x20 || b.get(1) != Some(&0)), "{what}: not accepted: {got:?}");
    }
    still_serving(&b).await;
    b.shutdown().await;
}
