//! MQTT over TCP and WebSocket with the independent client rumqttc.

mod common;

use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};

fn options(id: &str, b: &diglot::Broker, ws: bool) -> MqttOptions {
    let mut o = if ws {
        let addr = b.ws_addr().unwrap();
        let mut o = MqttOptions::new(id, format!("ws://{addr}/ws"), addr.port());
        o.set_transport(Transport::Ws);
        o
    } else {
        let addr = b.mqtt_addr().unwrap();
        MqttOptions::new(id, addr.ip().to_string(), addr.port())
    };
    o.set_keep_alive(Duration::from_secs(30));
    o
}

async fn round_trips(ws: bool) {
    let b = broker().await;
    let (sub, mut sub_ev) = AsyncClient::new(options("sub", &b, ws), 10);
    let (publ, mut pub_ev) = AsyncClient::new(options("pub", &b, ws), 10);
    until(&mut sub_ev, |e| matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())).await;
    sub.subscribe("sensors/+/temp", QoS::AtLeastOnce).await.unwrap();
    let granted = until(&mut sub_ev, |e| match e {
        Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(granted, vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    until(&mut pub_ev, |e| matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())).await;

    publ.publish("sensors/kitchen/temp", QoS::AtMostOnce, false, "21.5").await.unwrap();
    publ.publish("sensors/kitchen/humidity", QoS::AtMostOnce, false, "no").await.unwrap();
    publ.publish("sensors/hall/temp", QoS::AtLeastOnce, false, "19.0").await.unwrap();
    // The publisher gets its PUBACK for the QoS 1 message.
    until(&mut pub_ev, |e| matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())).await;
    tokio::spawn(async move { while pub_ev.poll().await.is_ok() {} });

    let first = until(&mut sub_ev, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first.topic, "sensors/kitchen/temp");
    assert_eq!(&first.payload[..], b"21.5");
    assert_eq!(first.qos, QoS::AtMostOnce);
    let second = until(&mut sub_ev, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(second.topic, "sensors/hall/temp", "the humidity message does not match the filter");
    assert_eq!(&second.payload[..], b"19.0");
    assert_eq!(second.qos, QoS::AtLeastOnce);
    // rumqttc acknowledges it; the broker's inflight window frees, so more still flows.
    publ.publish("sensors/attic/temp", QoS::AtLeastOnce, false, "30").await.unwrap();
    let third = until(&mut sub_ev, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(third.topic, "sensors/attic/temp");
    sub.disconnect().await.unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn tcp_wildcard_qos0_and_qos1() {
    round_trips(false).await;
}

#[tokio::test]
async fn websocket_wildcard_qos0_and_qos1() {
    round_trips(true).await;
}

#[tokio::test]
async fn many_messages_keep_their_order() {
    let b = broker().await;
    let (sub, mut sub_ev) = AsyncClient::new(options("order-sub", &b, true), 100);
    let (publ, mut pub_ev) = AsyncClient::new(options("order-pub", &b, false), 100);
    until(&mut sub_ev, |e| matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())).await;
    sub.subscribe("order/#", QoS::AtLeastOnce).await.unwrap();
    until(&mut sub_ev, |e| matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())).await;
    let n = 500;
    tokio::spawn(async move {
        for i in 0..n {
            publ.publish("order/x", QoS::AtLeastOnce, false, i.to_string()).await.unwrap();
        }
    });
    tokio::spawn(async move { while pub_ev.poll().await.is_ok() {} });
    for i in 0..n {
        let p = until(&mut sub_ev, |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(String::from_utf8_lossy(&p.payload), i.to_string());
    }
    b.shutdown().await;
}

/// A client that goes silent is closed after 1.5 × its keep-alive [MQTT-3.1.2-24].
#[tokio::test]
async fn keep_alive_expiry_closes_the_connection() {
    let b = broker().await;
    for ws in [false, true] {
        let mut conn = if ws {
            ws_connect(b.ws_addr().unwrap(), "/ws", &["mqtt"]).await.ok().unwrap()
        } else {
            tcp_connect(b.mqtt_addr().unwrap()).await
        };
        conn.send(&mqtt_connect_bytes("sleepy", 1, true)).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
        // Say nothing more: the broker must close the connection by itself.
        assert!(conn.read_to_close().await.is_empty(), "no packet is sent before the close");
    }
    b.shutdown().await;
}

/// PINGREQ is answered with PINGRESP on both transports.
#[tokio::test]
async fn pingreq_gets_pingresp() {
    let b = broker().await;
    for ws in [false, true] {
        let mut conn = if ws {
            ws_connect(b.ws_addr().unwrap(), "/mqtt", &[]).await.ok().unwrap()
        } else {
            tcp_connect(b.mqtt_addr().unwrap()).await
        };
        conn.send(&mqtt_connect_bytes("pinger", 10, true)).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
        conn.send(&[0xC0, 0x00]).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), vec![0xD0, 0x00], "PINGRESP");
    }
    b.shutdown().await;
}

/// A subscriber that stops reading and acknowledging is closed as a slow consumer once its
/// bounded outbox overflows with QoS 1 messages, instead of growing broker memory; the
/// publisher and other clients carry on.
#[tokio::test]
async fn a_stalled_subscriber_is_closed_not_buffered() {
    let mut config = diglot::Config::ephemeral();
    config.limits.outbox_max_messages = 5;
    config.limits.max_inflight = 4;
    let b = broker_with(config).await;
    let mut stalled = tcp_connect(b.mqtt_addr().unwrap()).await;
    stalled.send(&mqtt_connect_bytes("stalled", 60, true)).await.unwrap();
    assert_eq!(stalled.recv().await.unwrap(), vec![0x20, 2, 0, 0]);
    // SUBSCRIBE packet id 1 to "slow/#" at QoS 1.
    stalled.send(&[0x82, 11, 0, 1, 0, 6, b's', b'l', b'o', b'w', b'/', b'#', 1]).await.unwrap();
    assert_eq!(stalled.recv().await.unwrap(), vec![0x90, 3, 0, 1, 1]);

    let (publ, mut pub_ev) = AsyncClient::new(options("flood", &b, false), 100);
    tokio::spawn(async move {
        for i in 0..100 {
            if publ.publish("slow/x", QoS::AtLeastOnce, false, format!("{i}")).await.is_err() {
                break;
            }
        }
    });
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while acks < 100 {
            match pub_ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher failed: {e}"),
            }
        }
        acks
    });
    // Never acknowledge: the broker sends at most its inflight window, then closes us.
    let received = stalled.read_to_close().await;
    let publishes = mqtt_packets(&received).iter().filter(|(kind, _)| *kind == 3).count();
    assert!((1..=4).contains(&publishes), "delivered up to the inflight window, got {publishes}");
    assert_eq!(tokio::time::timeout(PATIENCE, acks).await.unwrap().unwrap(), 100, "the publisher was never blocked");
    b.shutdown().await;
}
