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
