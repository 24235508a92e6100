//! `/metrics` after known traffic, parsed as Prometheus text: messages and bytes by protocol,
//! open connections, a refused publish to a full queue, a kick, a dead-lettered message; and
//! the `$SYS/broker/events/...` messages for the last two.
//!
//! Clients: hand-encoded MQTT over TCP (`common::raw_mqtt`) and the shared STOMP test client.

mod common;

use common::raw_mqtt::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `DELETE path` over raw HTTP/1.1: the status.
async fn http_delete(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("DELETE {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut raw)).await.expect("answer").unwrap();
    String::from_utf8_lossy(&raw).split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status")
}

/// The topic and payload of a PUBLISH body (3.1.1 layout, QoS 0).
fn topic_payload(body: &[u8]) -> (String, String) {
    let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
    (String::from_utf8_lossy(&body[2..2 + n]).into_owned(), String::from_utf8_lossy(&body[2 + n..]).into_owned())
}

#[tokio::test]
async fn counters_follow_known_traffic() {
    let mut c = diglot::Config::ephemeral();
    c.store.queue_defaults.max_messages = 2;
    let b = broker_with(c).await;
    let (mqtt, stomp, ws) = (b.mqtt_addr().unwrap(), b.stomp_addr().unwrap(), b.ws_addr().unwrap());

    // Subscribers: one MQTT, one STOMP, and one MQTT watcher of the event topics.
    let mut msub = Mqtt::connected311(mqtt, "m-sub").await;
    msub.send(&subscribe311(1, &["m/#"])).await;
    msub.expect(9, "SUBACK").await;
    let mut events = Mqtt::connected311(mqtt, "events").await;
    events.send(&subscribe311(1, &["$SYS/broker/events/#"])).await;
    events.expect(9, "SUBACK").await;
    let mut ssub = Stomp::new(tcp_connect(stomp).await);
    ssub.connect("1.2").await;
    ssub.send("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/m/#"), ("receipt", "r1")], "").await;
    assert_eq!(ssub.frame().await.expect("RECEIPT").command, "RECEIPT");

    // 10 MQTT publishes and 5 STOMP SENDs; both subscribers get all 15.
    let mut mpub = Mqtt::connected311(mqtt, "m-pub").await;
    for i in 0..10 {
        mpub.send(&publish(false, "m/x", 0, 0, format!("mqtt-{i}").as_bytes())).await;
    }
    let mut spub = Stomp::new(tcp_connect(stomp).await);
    spub.connect("1.2").await;
    for i in 0..5 {
        spub.send("SEND", &[("destination", "/topic/m/y")], &format!("stomp-{i}")).await;
    }
    for _ in 0..15 {
        msub.expect(3, "PUBLISH").await;
        assert_eq!(ssub.frame().await.expect("MESSAGE").command, "MESSAGE");
    }

    // A persistent MQTT 5 session away with a queue limit of 2: the third QoS 1 publish into
    // it is refused with PUBACK 0x97 Quota exceeded.
    let mut away = Mqtt::open(mqtt).await;
    away.send(&connect5_persistent("away", 300)).await;
    away.expect(2, "CONNACK").await;
    away.send(&packet(0x82, &[0, 1, 0, 0, 6, b'q', b'/', b'f', b'u', b'l', b'l', 1])).await;
    away.expect(9, "SUBACK").await;
    away.send(&[0xe0, 0]).await;
    assert!(away.until_close().await.is_empty());
    let mut qpub = Mqtt::connected5(mqtt, "q-pub").await;
    let mut reasons = Vec::new();
    for id in 1..=3u16 {
        qpub.send(&publish(true, "q/full", 1, id, b"x")).await;
        reasons.push(ack_reason(&qpub.expect(4, "PUBACK").await));
    }
    assert_eq!(reasons, [0, 0, 0x97]);
    let (topic, body) = topic_payload(&events.expect(3, "queue-full event").await);
    assert_eq!(topic, "$SYS/broker/events/queue-full");
    let event: serde_json::Value = serde_json::from_str(&body).expect("JSON event");
    assert_eq!((event["queue"].as_str(), event["topic"].as_str()), (Some("$session/away"), Some("q/full")), "{event}");

    // A STOMP client that NACKs a /queue message with requeue:false dead-letters it.
    let mut nacker = Stomp::new(tcp_connect(stomp).await);
    nacker.connect("1.2").await;
    nacker.send("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/jobs"), ("ack", "client-individual")], "").await;
    spub.send("SEND", &[("destination", "/queue/jobs"), ("receipt", "sent")], "job").await;
    assert_eq!(spub.frame().await.expect("RECEIPT").command, "RECEIPT");
    let m = nacker.frame().await.expect("MESSAGE");
    let ack = m.header("ack").expect("ack header").to_string();
    nacker.send("NACK", &[("id", &ack), ("requeue", "false")], "").await;
    let (topic, body) = topic_payload(&events.expect(3, "dead-letter event").await);
    assert_eq!(topic, "$SYS/broker/events/dead-letter");
    assert!(body.contains("\"dead_letter_queue\":\"$dlq/queue/jobs\""), "{body}");

    // Kick the MQTT publisher.
    assert_eq!(http_delete(ws, "/api/v1/connections/m-pub").await, 200);
    assert!(mpub.until_close().await.is_empty(), "3.1.1 has no DISCONNECT from the server");

    let s = scrape(ws).await;
    let v = |name: &str, labels: &[(&str, &str)]| sample(&s, name, labels);
    assert_eq!(v("diglot_messages_received_total", &[("protocol", "mqtt")]), 13.0, "10 + 3 QoS 1");
    assert_eq!(v("diglot_messages_received_total", &[("protocol", "stomp")]), 6.0, "5 + the queued job");
    assert_eq!(v("diglot_messages_sent_total", &[("protocol", "stomp")]), 16.0, "15 + the job");
    // 15 to m-sub and two events to the watcher.
    assert_eq!(v("diglot_messages_sent_total", &[("protocol", "mqtt")]), 17.0);
    assert_eq!(v("diglot_messages_dropped_total", &[("reason", "queue_full")]), 1.0);
    assert_eq!(v("diglot_dead_lettered_total", &[]), 1.0);
    assert_eq!(v("diglot_connections_closed_total", &[("reason", "kicked")]), 1.0);
    assert_eq!(v("diglot_connections_closed_total", &[("reason", "client_disconnect"), ("protocol", "mqtt")]), 1.0);
    assert_eq!(v("diglot_queue_depth", &[("queue", "$session/away")]), 2.0);
    assert_eq!(v("diglot_queue_depth", &[("queue", "$dlq/queue/jobs")]), 1.0);
    assert!(v("diglot_bytes_received_total", &[("protocol", "mqtt")]) > 0.0);
    assert!(v("diglot_bytes_sent_total", &[("protocol", "stomp")]) > 0.0);
    // Open now: m-sub, events, q-pub (MQTT); ssub, spub, nacker (STOMP), all over TCP.
    assert_eq!(v("diglot_connections", &[("protocol", "mqtt"), ("transport", "tcp")]), 3.0);
    assert_eq!(v("diglot_connections", &[("protocol", "stomp"), ("transport", "tcp")]), 3.0);
    // m-sub, events, m-pub, away, q-pub.
    assert_eq!(v("diglot_connections_opened_total", &[("protocol", "mqtt")]), 5.0);
    assert!(s.samples.iter().any(|x| x.metric == "diglot_store_sync_seconds_count"), "the sync histogram is there");
    b.shutdown().await;
}

/// A broker that has served nobody already shows every protocol, transport and close reason
/// of the connection counters, at 0, so that `rate()` and alerts have a series before the first
/// event. Before, each series appeared with its first event.
#[tokio::test]
async fn connection_counters_are_there_at_zero_from_the_start() {
    let b = broker().await;
    let s = scrape(b.ws_addr().unwrap()).await;
    let present = |name: &str, labels: &[(&str, &str)]| {
        s.samples.iter().any(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
    };
    for protocol in ["mqtt", "stomp"] {
        for transport in ["tcp", "ws"] {
            let labels = [("protocol", protocol), ("transport", transport)];
            assert!(present("diglot_connections_opened_total", &labels), "{labels:?}");
            assert_eq!(sample(&s, "diglot_connections_opened_total", &labels), 0.0);
        }
        for reason in ["client_disconnect", "slow_consumer", "keepalive_timeout", "io_error"] {
            let labels = [("reason", reason), ("protocol", protocol)];
            assert!(present("diglot_connections_closed_total", &labels), "{labels:?}");
            assert_eq!(sample(&s, "diglot_connections_closed_total", &labels), 0.0);
        }
    }
    b.shutdown().await;
}
