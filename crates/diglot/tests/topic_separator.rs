//! `stomp.topic_separator = "."` end to end: a broker started with RabbitMQ-style STOMP names,
//! a STOMP client with hand-built frames over raw TCP and an MQTT 5 client (rumqttc v5) crossing
//! messages both ways with dotted names, the `*` and `#` wildcards, `reply-to` ⇔ response
//! topic, and topics with a literal `.`, `*` and `%` that round-trip unchanged; the errors; the
//! HTTP API's `destination`; and a reload that leaves the separator alone.
//!
//! Tests assert what happens, never how fast: every wait is bounded by `PATIENCE`.

mod common;

use std::time::Duration;

use common::*;
use diglot::{Broker, Config};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, EventLoop, MqttOptions};

/// A topic with every character that the dotted form escapes, a space and non-ASCII.
const ODD: &str = "fw/v1.2/50% * x/ü";
/// [`ODD`] as the STOMP clients of a broker with `topic_separator = "."` see it.
const ODD_DOTTED: &str = "/topic/fw.v1%2E2.50%25 %2A x.ü";

fn dotted_config() -> Config {
    let mut c = Config::ephemeral();
    c.stomp.topic_separator = ".".into();
    c
}

async fn stomp(b: &Broker) -> Stomp {
    let mut s = Stomp::new(tcp_connect(b.stomp_addr().expect("stomp listener")).await);
    s.connect("1.2").await;
    s
}

/// The next frame, which must come within [`PATIENCE`].
async fn next(s: &mut Stomp) -> StompFrame {
    tokio::time::timeout(PATIENCE, s.frame()).await.expect("a frame in time").expect("the connection is open")
}

/// The next frame, which must be a MESSAGE with `body`.
async fn message(s: &mut Stomp, body: &str) -> StompFrame {
    let f = next(s).await;
    assert_eq!((f.command.as_str(), String::from_utf8_lossy(&f.body).as_ref()), ("MESSAGE", body), "{f:?}");
    f
}

async fn receipt(s: &mut Stomp, id: &str) {
    let f = next(s).await;
    assert_eq!((f.command.as_str(), f.header("receipt-id")), ("RECEIPT", Some(id)), "{f:?}");
}

async fn subscribe(s: &mut Stomp, id: &str, dest: &str) {
    s.send("SUBSCRIBE", &[("id", id), ("destination", dest), ("receipt", id)], "").await;
    receipt(s, id).await;
}

async fn send(s: &mut Stomp, headers: &[(&str, &str)], body: &str) {
    let mut all = headers.to_vec();
    all.push(("receipt", "sent"));
    s.send("SEND", &all, body).await;
    receipt(s, "sent").await;
}

/// The ERROR that answers the last frame, after which the broker closes the connection.
async fn error_then_close(s: &mut Stomp) -> StompFrame {
    let f = next(s).await;
    assert_eq!(f.command, "ERROR", "{f:?}");
    assert!(tokio::time::timeout(PATIENCE, s.frame()).await.expect("closed in time").is_none(), "closed");
    f
}

fn mqtt(id: &str, b: &Broker) -> MqttOptions {
    let addr = b.mqtt_addr().expect("mqtt listener");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// An MQTT 5 client subscribed to `filter` (its SUBACK received).
async fn mqtt_subscribed(id: &str, b: &Broker, filter: &str) -> (AsyncClient, EventLoop) {
    let (c, mut ev) = AsyncClient::new(mqtt(id, b), 10);
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while !matches!(ev.poll().await.expect("mqtt event loop"), rumqttc::v5::Event::Incoming(Packet::SubAck(_))) {}
    })
    .await
    .expect("SUBACK in time");
    (c, ev)
}

async fn next_publish(ev: &mut EventLoop) -> Publish {
    mqtt5_until(ev, |p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await
}

/// MQTT → STOMP with dotted names and RabbitMQ's wildcards; a topic with a literal `.`, `*` and
/// `%` arrives escaped, goes back through a STOMP SEND to the very destination it came with,
/// and reaches MQTT unchanged; MQTT 5 response topics ⇔ `reply-to` both ways.
#[tokio::test]
async fn mqtt_and_stomp_cross_with_dotted_names() {
    let b = broker_with(dotted_config()).await;
    let mut sub = stomp(&b).await;
    subscribe(&mut sub, "one", "/topic/sensors.*.temp").await;
    subscribe(&mut sub, "rest", "/topic/fw.#").await;
    let (mqtt_sub, mut mqtt_ev) = mqtt_subscribed("mqtt-sub", &b, "#").await;

    // MQTT → STOMP. `*` is one level, so the first two publishes match nothing; one publisher's
    // messages arrive in order, so the first MESSAGE shows they were skipped.
    let (p, mut ev) = AsyncClient::new(mqtt("mqtt-pub", &b), 10);
    p.publish("sensors/kitchen/hum", QoS::AtLeastOnce, false, "no").await.unwrap();
    p.publish("sensors/a/b/temp", QoS::AtLeastOnce, false, "no").await.unwrap();
    p.publish("sensors/kitchen/temp", QoS::AtLeastOnce, false, "21").await.unwrap();
    let props = PublishProperties { response_topic: Some("replies/x.y z".into()), ..PublishProperties::default() };
    p.publish_with_properties(ODD, QoS::AtMostOnce, false, "odd", props).await.unwrap();
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let m = message(&mut sub, "21").await;
    assert_eq!((m.header("subscription"), m.header("destination")), (Some("one"), Some("/topic/sensors.kitchen.temp")));
    let m = message(&mut sub, "odd").await;
    assert_eq!((m.header("subscription"), m.header("destination")), (Some("rest"), Some(ODD_DOTTED)));
    assert_eq!(m.header("reply-to"), Some("/topic/replies.x%2Ey z"));

    // STOMP → MQTT: back to the destination and reply-to the STOMP client was given.
    let mut sender = stomp(&b).await;
    let (dest, reply_to) = (m.header("destination").unwrap(), m.header("reply-to").unwrap());
    send(&mut sender, &[("destination", dest), ("reply-to", reply_to)], "back").await;
    send(&mut sender, &[("destination", "/topic/sensors.hall.temp"), ("persistent", "true")], "22").await;
    for _ in ["no", "no", "21", "odd"] {
        next_publish(&mut mqtt_ev).await;
    }
    let got = next_publish(&mut mqtt_ev).await;
    assert_eq!((&got.topic[..], &got.payload[..]), (ODD.as_bytes(), &b"back"[..]));
    assert_eq!(got.properties.and_then(|p| p.response_topic).as_deref(), Some("replies/x.y z"));
    let got = next_publish(&mut mqtt_ev).await;
    assert_eq!((&got.topic[..], &got.payload[..], got.qos), (&b"sensors/hall/temp"[..], &b"22"[..], QoS::AtLeastOnce));
    drop(mqtt_sub);
    b.shutdown().await;
}

/// Dotted names that cannot be read are an ERROR with a `message` header, then a close.
#[tokio::test]
async fn unreadable_names_are_errors() {
    let b = broker_with(dotted_config()).await;
    let cases = [
        ("SEND\ndestination:/topic/a/b\n\n\0", "invalid destination", "'/'"),
        ("SEND\ndestination:/topic/50%\n\n\0", "invalid destination", "%25"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/a.+\n\n\0", "invalid destination", "'*'"),
        ("SEND\ndestination:/topic/t\nreply-to:/topic/a%zz\n\n\0", "invalid reply-to", "byte 1"),
    ];
    for (frame, message, detail) in cases {
        let mut s = stomp(&b).await;
        s.conn.send(frame.as_bytes()).await.expect("send");
        let f = error_then_close(&mut s).await;
        assert_eq!(f.header("message"), Some(message), "{frame:?}");
        assert!(String::from_utf8_lossy(&f.body).contains(detail), "{f:?}");
    }
    b.shutdown().await;
}

/// Queue names are not split, `/topic/$queue.<name>` is the queue, and the HTTP API reads a
/// `destination` as a STOMP client's.
#[tokio::test]
async fn queues_and_the_http_api() {
    let b = broker_with(dotted_config()).await;
    let mut consumer = stomp(&b).await;
    subscribe(&mut consumer, "q", "/topic/$queue.jobs%2Eeu").await;
    let (p, mut ev) = AsyncClient::new(mqtt("queue-pub", &b), 10);
    p.publish("$queue/jobs.eu", QoS::AtLeastOnce, false, "job").await.unwrap();
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let m = message(&mut consumer, "job").await;
    assert_eq!(m.header("destination"), Some("/queue/jobs.eu"));

    let (_c, mut mqtt_ev) = mqtt_subscribed("api-sub", &b, "api/#").await;
    let addr = b.ws_addr().unwrap();
    let (status, body) =
        http_post(addr, "/api/v1/publish", r#"{"destination":"/topic/api.v1%2E0","payload":"x"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_post(addr, "/api/v1/publish", r#"{"destination":"/topic/api/v1"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(&next_publish(&mut mqtt_ev).await.topic[..], b"api/v1.0");
    b.shutdown().await;
}

/// A reload whose file changes `stomp.topic_separator` succeeds for everything else, and the
/// running separator stays.
#[tokio::test]
async fn a_reload_keeps_the_separator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    let toml = |sep: &str| {
        format!(
            "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.mqtt]\naddr = \"127.0.0.1:0\"\n\
             [listeners.stomp]\naddr = \"127.0.0.1:0\"\n[store]\npath = {:?}\n[stomp]\ntopic_separator = {sep:?}\n",
            dir.path().join("data").display().to_string()
        )
    };
    std::fs::write(&file, toml(".")).unwrap();
    let b = broker_with(Config::load(&file).unwrap()).await;
    b.reload_from(file.clone(), None);
    std::fs::write(&file, toml("/")).unwrap();
    assert_eq!(http_post(b.ws_addr().unwrap(), "/api/v1/reload", "").await, (200, r#"{"reloaded":true}"#.into()));

    let (_c, mut ev) = mqtt_subscribed("after-reload", &b, "x/#").await;
    let mut s = stomp(&b).await;
    send(&mut s, &[("destination", "/topic/x.y")], "still dotted").await;
    let got = next_publish(&mut ev).await;
    assert_eq!((&got.topic[..], &got.payload[..]), (&b"x/y"[..], &b"still dotted"[..]));
    b.shutdown().await;
}
