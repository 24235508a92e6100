//! Every configured limit, end to end: each breach gets the protocol's answer (HTTP status,
//! CONNACK/SUBACK/DISCONNECT code, STOMP ERROR, WebSocket close code), is counted in
//! `diglot_limit_breaches_total{limit=...}` on `/metrics` (parsed as Prometheus text), and the
//! broker goes on serving other clients.
//!
//! Clients: MQTT packets encoded and decoded by hand here, STOMP frames by the shared test
//! client, tokio-tungstenite for WebSocket. Nothing asserts on timing.

mod common;

use std::time::Duration;

use common::raw_mqtt::*;
use common::*;
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A broker with small limits, so that each is easy to reach.
async fn small_broker(tweak: impl FnOnce(&mut diglot::Config)) -> TestBroker {
    let mut c = diglot::Config::ephemeral();
    c.limits.max_frame_bytes = 4096;
    c.limits.max_headers = 8;
    c.limits.max_header_bytes = 256;
    c.limits.max_subscriptions = 2;
    c.limits.max_client_id_bytes = 16;
    c.limits.max_inflight = 2;
    c.limits.max_http_header_bytes = 8192;
    c.limits.max_ws_frame_bytes = 16 * 1024;
    c.limits.max_ws_message_bytes = 16 * 1024;
    tweak(&mut c);
    broker_with(c).await
}

/// `diglot_limit_breaches_total{limit}`.
async fn breaches(b: &TestBroker, limit: &str) -> f64 {
    sample(&scrape(b.ws_addr().expect("ws")).await, "diglot_limit_breaches_total", &[("limit", limit)])
}

/// A fresh MQTT client still gets through: the broker carries on after a breach.
async fn still_serving(b: &TestBroker) {
    let mut m = Mqtt::connected311(b.mqtt_addr().expect("mqtt"), "after").await;
    m.send(&[0xc0, 0]).await;
    m.expect(13, "PINGRESP").await;
}

#[tokio::test]
async fn mqtt_packet_size_subscriptions_client_id_and_inflight() {
    let b = small_broker(|_| {}).await;
    let addr = b.mqtt_addr().unwrap();

    // max_frame_bytes: MQTT 5 DISCONNECT 0x95 Packet too large.
    let mut m = Mqtt::connected5(addr, "big").await;
    m.send(&publish(true, "t", 0, 0, &[b'x'; 5000])).await;
    let rest = m.until_close().await;
    assert_eq!(rest.first().map(|(f, b)| (f >> 4, b.first().copied())), Some((14, Some(0x95))), "{rest:?}");
    assert_eq!(breaches(&b, "max_frame_bytes").await, 1.0);

    // max_subscriptions = 2: the third filter is refused (3.1.1 SUBACK 0x80).
    let mut m = Mqtt::connected311(addr, "subs").await;
    m.send(&subscribe311(1, &["a", "b", "c"])).await;
    let ack = m.expect(9, "SUBACK").await;
    assert_eq!(&ack[2..], &[1, 1, 0x80]);
    assert_eq!(breaches(&b, "max_subscriptions").await, 1.0);

    // max_client_id_bytes = 16: CONNACK 0x02 Identifier rejected.
    let mut m = Mqtt::open(addr).await;
    m.send(&mqtt_connect_bytes("a-client-id-longer-than-16", 60, true)).await;
    let ack = m.expect(2, "CONNACK").await;
    assert_eq!(ack[1], 2);
    assert_eq!(breaches(&b, "max_client_id_bytes").await, 1.0);

    // max_inflight = 2 is the Receive Maximum for QoS 2: a third unreleased QoS 2 publish is a
    // DISCONNECT 0x93 Receive Maximum exceeded [MQTT-3.3.4-9].
    let mut m = Mqtt::connected5(addr, "qos2").await;
    for id in 1..=3u16 {
        m.send(&publish(true, "q2", 2, id, b"x")).await;
    }
    let rest = m.until_close().await;
    let disconnect = rest.iter().find(|(f, _)| f >> 4 == 14).map(|(_, b)| b.first().copied());
    assert_eq!(disconnect, Some(Some(0x93)), "{rest:?}");
    assert_eq!(breaches(&b, "max_inflight").await, 1.0);

    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_frame_header_subscription_and_client_id_limits() {
    let b = small_broker(|_| {}).await;
    let addr = b.stomp_addr().unwrap();
    // (limit, headers, body, ERROR message)
    type Case = (&'static str, Vec<(String, String)>, String, &'static str);
    let cases: [Case; 3] = [
        ("max_frame_bytes", vec![("destination".into(), "/topic/t".into())], "x".repeat(5000), "frame too large"),
        (
            "max_headers",
            (0..10)
                .map(|i| (format!("h{i}"), "v".to_string()))
                .chain([("destination".into(), "/topic/t".into())])
                .collect(),
            String::new(),
            "frame too large",
        ),
        (
            "max_header_bytes",
            vec![("destination".into(), "/topic/t".into()), ("long".into(), "v".repeat(300))],
            String::new(),
            "frame too large",
        ),
    ];
    for (limit, headers, body, message) in cases {
        let mut s = Stomp::new(tcp_connect(addr).await);
        s.connect("1.2").await;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        s.send("SEND", &headers, &body).await;
        let f = s.frame().await.expect("ERROR");
        assert_eq!((f.command.as_str(), f.header("message")), ("ERROR", Some(message)), "{limit}: {f:?}");
        assert!(s.frame().await.is_none(), "{limit}: closed after the ERROR");
        assert_eq!(breaches(&b, limit).await, 1.0, "{limit}");
    }

    // max_subscriptions = 2.
    let mut s = Stomp::new(tcp_connect(addr).await);
    s.connect("1.2").await;
    for id in ["1", "2", "3"] {
        s.send("SUBSCRIBE", &[("id", id), ("destination", "/topic/s")], "").await;
    }
    let f = s.frame().await.expect("ERROR");
    assert_eq!(f.header("message"), Some("too many subscriptions"), "{f:?}");
    assert_eq!(breaches(&b, "max_subscriptions").await, 1.0);

    // max_client_id_bytes = 16.
    let mut s = Stomp::new(tcp_connect(addr).await);
    s.send("CONNECT", &[("accept-version", "1.2"), ("host", "h"), ("client-id", "a-client-id-longer-than-16")], "")
        .await;
    let f = s.frame().await.expect("ERROR");
    assert_eq!(f.command, "ERROR", "{f:?}");
    assert_eq!(breaches(&b, "max_client_id_bytes").await, 1.0);

    still_serving(&b).await;
    b.shutdown().await;
}

/// `limits.max_ws_frame_bytes` and `max_ws_message_bytes` are the largest frame and message
/// a client may send: one of exactly that size is taken, one byte more closes with 1009.
/// Before, yawc refused a frame or message of exactly the limit.
#[tokio::test]
async fn a_websocket_message_of_exactly_the_limit_is_taken() {
    let b = small_broker(|c| c.limits.max_frame_bytes = 64 * 1024).await;
    let publish = |total: usize| {
        // PUBLISH QoS 0 to "t": the fixed header with a two-byte remaining length, then the topic.
        let rest = total - 3;
        let mut p = vec![0x30, (rest % 128) as u8 | 0x80, (rest / 128) as u8, 0, 1, b't'];
        p.resize(total, 7);
        p
    };
    let mut c = ws_connect(b.ws_addr().unwrap(), "/ws", &["mqtt"]).await.ok().expect("upgrade");
    c.send(&mqtt_connect_bytes("ws-exact", 60, true)).await.unwrap();
    assert!(c.recv().await.is_some(), "CONNACK");
    c.send_binary(&publish(16 * 1024)).await.unwrap();
    c.send(&[0xc0, 0]).await.unwrap();
    assert_eq!(c.recv().await, Some(vec![0xd0, 0]), "PINGRESP: the message of 16 KiB was taken");
    c.send_binary(&publish(16 * 1024 + 1)).await.unwrap();
    assert_eq!(c.close_code().await, Some(1009));
    b.shutdown().await;
}

#[tokio::test]
async fn websocket_message_and_http_header_limits() {
    let b = small_broker(|_| {}).await;
    let ws = b.ws_addr().unwrap();

    // max_ws_message_bytes = 16 KiB: close 1009 (Message Too Big, RFC 6455 §7.4.1).
    let mut c = ws_connect(ws, "/ws", &["mqtt"]).await.ok().expect("upgrade");
    c.send(&mqtt_connect_bytes("ws-big", 60, true)).await.unwrap();
    assert!(c.recv().await.is_some(), "CONNACK");
    if let Conn::Ws { ws, .. } = &mut c {
        ws.send(WsMessage::Binary(vec![0u8; 20 * 1024].into())).await.unwrap();
    }
    assert_eq!(c.close_code().await, Some(1009));
    assert_eq!(breaches(&b, "max_ws_message_bytes").await, 1.0);

    // max_http_header_bytes = 8192: 431.
    let mut s = TcpStream::connect(ws).await.unwrap();
    let big = "x".repeat(10_000);
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut answer)).await.expect("answer in time");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(breaches(&b, "max_http_header_bytes").await, 1.0);

    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn connection_limits_and_handshake_timeouts() {
    let b = small_broker(|c| {
        c.limits.max_connections = 2;
        c.listeners.http.enabled = true;
        c.server.handshake_timeout_secs = 1;
        c.mqtt.connect_timeout_secs = 1;
    })
    .await;
    let (mqtt, ws) = (b.mqtt_addr().unwrap(), b.ws_addr().unwrap());

    let held = [Mqtt::connected311(mqtt, "held1").await, Mqtt::connected311(mqtt, "held2").await];
    // The broker is full: the WebSocket port answers 503, the MQTT port closes at once.
    let (status, _) = http_get(ws, "/ws").await;
    assert_eq!(status, 503);
    // The HTTP-only listener has connections of its own: a full broker still answers its
    // health checks and scrapes there.
    let admin = b.addr("http").expect("listeners.http");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(http_get(admin, path).await.0, 200, "{path} on listeners.http while full");
    }
    let mut refused = Mqtt::open(mqtt).await;
    refused.send(&mqtt_connect_bytes("third", 60, true)).await;
    assert!(refused.packet().await.is_none(), "closed without a CONNACK");
    drop(held);
    // The held connections' slots come back once the broker has seen them go.
    let full = tokio::time::timeout(PATIENCE, async {
        loop {
            if b.connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    full.await.expect("closed connections are released");
    assert_eq!(breaches(&b, "max_connections").await, 2.0);

    // A client that never finishes its HTTP request, and one that never sends CONNECT.
    let mut silent_http = TcpStream::connect(ws).await.unwrap();
    silent_http.write_all(b"GET /ws HTTP/1.1\r\n").await.unwrap();
    let mut silent_mqtt = Mqtt::open(mqtt).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, silent_http.read_to_end(&mut sink)).await.expect("closed in time");
    assert!(silent_mqtt.packet().await.is_none(), "closed without a CONNACK");
    let timed_out = tokio::time::timeout(PATIENCE, async {
        loop {
            if breaches(&b, "handshake_timeout").await >= 2.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    timed_out.await.expect("both handshake timeouts counted");

    still_serving(&b).await;
    b.shutdown().await;
}

#[tokio::test]
async fn per_address_limit_and_rates_are_counted() {
    let b = small_broker(|c| {
        c.limits.max_connections_per_ip = 2;
        c.listeners.http.enabled = true;
        c.limits.max_publish_rate = 20;
        c.limits.max_bytes_rate = 2000;
    })
    .await;
    let mqtt = b.mqtt_addr().unwrap();
    let mut sub = Mqtt::connected311(mqtt, "rate-sub").await;
    sub.send(&subscribe311(1, &["rate/#"])).await;
    sub.expect(9, "SUBACK").await;
    let mut publisher = Mqtt::connected311(mqtt, "rate-pub").await;
    // A third connection from 127.0.0.1 is closed at once.
    let mut third = Mqtt::open(mqtt).await;
    third.send(&mqtt_connect_bytes("third", 60, true)).await;
    assert!(third.packet().await.is_none());
    // The HTTP-only listener is not held to the per-address limit (behind a local proxy every
    // client has the probes' address).
    assert_eq!(http_get(b.addr("http").expect("listeners.http"), "/healthz").await.0, 200);
    // 60 publishes of 100 bytes: over both rates, so reading pauses; every one arrives.
    for i in 0..60u16 {
        publisher.send(&publish(false, &format!("rate/{i}"), 0, 0, &[b'r'; 100])).await;
    }
    for i in 0..60u16 {
        let body = sub.expect(3, "PUBLISH").await;
        let topic = format!("rate/{i}");
        assert_eq!(&body[2..2 + topic.len()], topic.as_bytes(), "in order, none dropped");
    }
    drop((sub, publisher));
    let released = tokio::time::timeout(PATIENCE, async {
        while b.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    released.await.expect("connections released");
    let s = scrape(b.ws_addr().unwrap()).await;
    assert_eq!(sample(&s, "diglot_limit_breaches_total", &[("limit", "max_connections_per_ip")]), 1.0);
    assert!(sample(&s, "diglot_limit_breaches_total", &[("limit", "max_publish_rate")]) >= 1.0);
    assert!(sample(&s, "diglot_limit_breaches_total", &[("limit", "max_bytes_rate")]) >= 1.0);
    b.shutdown().await;
}

/// A QoS 1 subscriber that never acknowledges and never reads: its inflight window fills, then
/// its outbox, and it is closed as a slow consumer; the publisher and everyone else go on.
#[tokio::test]
async fn a_slow_consumer_is_closed_and_counted() {
    let b = small_broker(|c| {
        c.limits.outbox_max_messages = 8;
        c.limits.max_frame_bytes = 64 * 1024;
    })
    .await;
    let mqtt = b.mqtt_addr().unwrap();
    let mut slow = Mqtt::connected311(mqtt, "slow").await;
    slow.send(&subscribe311(1, &["flood"])).await;
    slow.expect(9, "SUBACK").await;
    let mut publisher = Mqtt::connected5(mqtt, "flooder").await;
    let scraped = tokio::time::timeout(PATIENCE, async {
        let mut id = 1u16;
        loop {
            for _ in 0..16 {
                publisher.send(&publish(true, "flood", 1, id, &[b'f'; 1000])).await;
                publisher.expect(4, "PUBACK").await;
                id = id.wrapping_add(1).max(1);
            }
            let s = scrape(b.ws_addr().unwrap()).await;
            if sample(&s, "diglot_limit_breaches_total", &[("limit", "slow_consumer")]) >= 1.0 {
                return s;
            }
        }
    });
    let s = scraped.await.expect("the slow consumer was closed");
    assert_eq!(sample(&s, "diglot_connections_closed_total", &[("reason", "slow_consumer")]), 1.0);
    still_serving(&b).await;
    b.shutdown().await;
}
