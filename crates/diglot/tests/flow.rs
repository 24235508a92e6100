//! Flow control end to end: a durable consumer that cannot keep up is parked (its messages
//! wait in the store, bounded by its inflight window, never by broker memory), is not closed,
//! and resumes without losing a message or breaking order; a QoS 0 subscriber that cannot keep
//! up loses QoS 0 messages, each one counted.
//!
//! Clients: hand-encoded MQTT over TCP (`common::raw_mqtt`).

mod common;

use common::raw_mqtt::*;
use common::*;

/// The topic and packet id of a QoS 1 PUBLISH body (3.1.1 layout).
fn topic_and_id(body: &[u8]) -> (String, u16, Vec<u8>) {
    let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8_lossy(&body[2..2 + n]).into_owned();
    let id = u16::from_be_bytes([body[2 + n], body[3 + n]]);
    (topic, id, body[4 + n..].to_vec())
}

#[tokio::test]
async fn a_slow_durable_consumer_is_parked_and_resumes_in_order() {
    const N: u32 = 500;
    let mut c = diglot::Config::ephemeral();
    c.limits.outbox_max_messages = 16;
    c.limits.max_inflight = 4;
    let b = broker_with(c).await;
    let mqtt = b.mqtt_addr().unwrap();

    // A persistent session subscribed at QoS 1 that reads nothing for now.
    let mut slow = Mqtt::subscribed_persistent311(mqtt, "parked", 600, "work/#").await;

    // N QoS 1 publishes, each acknowledged (so stored), far more than the outbox holds.
    let mut publisher = Mqtt::connected311(mqtt, "producer").await;
    for i in 0..N {
        let id = (i % 60_000 + 1) as u16;
        publisher.send(&publish(false, "work/item", 1, id, &i.to_be_bytes())).await;
        let ack = publisher.expect(4, "PUBACK").await;
        assert_eq!(u16::from_be_bytes([ack[0], ack[1]]), id);
    }

    // Nobody was closed as a slow consumer: the durable consumer was parked.
    let s = scrape(b.ws_addr().unwrap()).await;
    assert_eq!(sample(&s, "diglot_limit_breaches_total", &[("limit", "slow_consumer")]), 0.0);
    assert!(sample(&s, "diglot_queue_depth", &[("queue", "$session/parked")]) >= f64::from(N - 16));

    // Now it reads and acknowledges: every message arrives once, in publish order.
    for want in 0..N {
        let body = slow.expect(3, "PUBLISH").await;
        let (topic, id, payload) = topic_and_id(&body);
        assert_eq!(topic, "work/item");
        assert_eq!(payload, want.to_be_bytes(), "message {want} in order");
        let mut puback = vec![0x40, 2];
        puback.extend(id.to_be_bytes());
        slow.send(&puback).await;
    }
    slow.send(&[0xc0, 0]).await;
    slow.expect(13, "PINGRESP after the last message: nothing more was queued").await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_slow_qos0_subscriber_loses_only_counted_qos0_messages() {
    let mut c = diglot::Config::ephemeral();
    c.limits.outbox_max_messages = 4;
    c.limits.outbox_max_bytes = 64 * 1024;
    let b = broker_with(c).await;
    let mqtt = b.mqtt_addr().unwrap();
    let mut slow = Mqtt::connected311(mqtt, "slow0").await;
    slow.send(&subscribe311(1, &["fast/#"])).await;
    slow.expect(9, "SUBACK").await;
    // The subscriber reads nothing while large QoS 0 messages pour in, until its socket and
    // then its outbox are full and the broker drops (and counts) the surplus.
    let mut publisher = Mqtt::connected311(mqtt, "pour").await;
    let dropped = tokio::time::timeout(PATIENCE, async {
        loop {
            for _ in 0..64 {
                publisher.send(&publish(false, "fast/x", 0, 0, &[b'p'; 32 * 1024])).await;
            }
            publisher.send(&[0xc0, 0]).await;
            publisher.expect(13, "PINGRESP").await;
            let s = scrape(b.ws_addr().unwrap()).await;
            let n = sample(&s, "diglot_messages_dropped_total", &[("reason", "slow_consumer")]);
            if n > 0.0 {
                return n;
            }
        }
    })
    .await
    .expect("QoS 0 deliveries were dropped and counted");
    assert!(dropped >= 1.0);
    // The slow subscriber was not closed: it still answers.
    slow.send(&[0xc0, 0]).await;
    loop {
        let (first, _) = slow.packet().await.expect("still connected");
        if first >> 4 == 13 {
            break;
        }
    }
    b.shutdown().await;
}
