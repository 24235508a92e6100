//! MQTT and STOMP clients on one WebSocket port see each other's messages.

mod common;

use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};

fn mqtt_ws(id: &str, b: &diglot::Broker) -> MqttOptions {
    let addr = b.ws_addr().unwrap();
    let mut o = MqttOptions::new(id, format!("ws://{addr}/ws"), addr.port());
    o.set_transport(Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

#[tokio::test]
async fn mqtt_publish_reaches_stomp_subscriber() {
    let b = broker().await;
    let mut stomp = Stomp::new(ws_connect(b.ws_addr().unwrap(), "/ws", &["v12.stomp"]).await.ok().unwrap());
    stomp.connect("1.2").await;
    stomp.send("SUBSCRIBE", &[("id", "0"), ("destination", "/topic/home/#"), ("receipt", "s")], "").await;
    assert_eq!(stomp.frame().await.unwrap().command, "RECEIPT");

    let (client, mut ev) = AsyncClient::new(mqtt_ws("mqtt-pub", &b), 10);
    client.publish("home/kitchen/light", QoS::AtLeastOnce, false, "on").await.unwrap();
    // A topic with dots, stars and spaces survives the mapping unchanged.
    client.publish("home/a.b*c d/ü", QoS::AtMostOnce, false, "odd").await.unwrap();
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });

    let m = stomp.frame().await.unwrap();
    assert_eq!(m.command, "MESSAGE");
    assert_eq!(m.header("destination"), Some("/topic/home/kitchen/light"));
    assert_eq!(m.body, b"on");
    let m = stomp.frame().await.unwrap();
    assert_eq!(m.header("destination"), Some("/topic/home/a.b*c d/ü"));
    assert_eq!(m.body, b"odd");
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_send_reaches_mqtt_subscriber() {
    let b = broker().await;
    let (client, mut ev) = AsyncClient::new(mqtt_ws("mqtt-sub", &b), 10);
    client.subscribe("office/+/door", QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = ev.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .unwrap();

    let mut stomp = Stomp::new(ws_connect(b.ws_addr().unwrap(), "/stomp", &[]).await.ok().unwrap());
    stomp.connect("1.2").await;
    stomp.send("SEND", &[("destination", "/topic/office/3.14/door"), ("persistent", "true")], "open").await;
    stomp.send("SEND", &[("destination", "/topic/office/3.14/window")], "nope").await;
    stomp.send("SEND", &[("destination", "/topic/office/lobby/door")], "closed").await;

    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while got.len() < 2 {
            if let Event::Incoming(Packet::Publish(p)) = ev.poll().await.unwrap() {
                got.push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned(), p.qos));
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            ("office/3.14/door".to_string(), "open".to_string(), QoS::AtLeastOnce),
            ("office/lobby/door".to_string(), "closed".to_string(), QoS::AtMostOnce),
        ]
    );
    b.shutdown().await;
}

/// A STOMP `reply-to` that is no MQTT topic name (a wildcard in it) does not reach MQTT 5
/// subscribers as a Response Topic, which must not hold one [MQTT-3.3.2-14] (the broker closes
/// a client that sends one); a valid one does. Before, `reply-to:/topic/plain/+/x` went out as
/// the Response Topic `plain/+/x`.
#[tokio::test]
async fn a_stomp_reply_to_with_a_wildcard_is_no_mqtt_response_topic() {
    use rumqttc::v5::{mqttbytes::v5::Packet as P5, mqttbytes::QoS as Q5, AsyncClient as C5, Event as E5, MqttOptions};
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    let mut o = MqttOptions::new("reply-watch", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = C5::new(o, 10);
    client.subscribe("ask/#", Q5::AtMostOnce).await.unwrap();
    until5(&mut ev, |e| matches!(e, E5::Incoming(P5::SubAck(_))).then_some(())).await;

    let mut stomp = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    stomp.connect("1.2").await;
    stomp.send("SEND", &[("destination", "/topic/ask/1"), ("reply-to", "/topic/plain/+/x")], "wild").await;
    stomp.send("SEND", &[("destination", "/topic/ask/2"), ("reply-to", "/topic/ok/r")], "fine").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let p = until5(&mut ev, |e| match e {
            E5::Incoming(P5::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await;
        let response = p.properties.and_then(|pp| pp.response_topic);
        got.push((String::from_utf8_lossy(&p.payload).into_owned(), response));
    }
    assert_eq!(got, [("wild".to_string(), None), ("fine".to_string(), Some("ok/r".to_string()))]);
    b.shutdown().await;
}

/// A queue is durable: an MQTT QoS 0 PUBLISH to `$queue/<name>` is stored like a STOMP SEND to
/// `/queue/<name>`, and a consumer that comes later gets it (docs/protocol-mapping.md,
/// "Queues"). Before, QoS 0 reached a queue only while a consumer was online.
#[tokio::test]
async fn an_mqtt_qos_0_publish_to_a_queue_is_kept_for_a_later_consumer() {
    let b = broker().await;
    let mut p = tcp_connect(b.mqtt_addr().unwrap()).await;
    p.send(&mqtt_connect_bytes("q0-pub", 30, true)).await.unwrap();
    assert_eq!(p.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    let topic = b"$queue/q0";
    let mut publish = vec![0x30, (2 + topic.len() + 4) as u8, 0, topic.len() as u8];
    publish.extend_from_slice(topic);
    publish.extend_from_slice(b"kept");
    p.send(&publish).await.unwrap();
    // PINGREQ after it: once answered, the PUBLISH has been handled.
    p.send(&[0xC0, 0]).await.unwrap();
    assert_eq!(p.recv().await.unwrap(), vec![0xD0, 0]);

    let mut stomp = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    stomp.connect("1.2").await;
    stomp.send("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/q0"), ("ack", "client-individual")], "").await;
    let m = stomp.frame().await.expect("the stored message");
    assert_eq!((m.command.as_str(), m.body.as_slice()), ("MESSAGE", &b"kept"[..]), "{m:?}");
    b.shutdown().await;
}
