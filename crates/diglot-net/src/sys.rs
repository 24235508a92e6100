//! `$SYS/broker/...`: broker statistics published as retained QoS 0 messages, in Mosquitto's
//! naming where it has one, so existing dashboards work.
//!
//! First-level wildcards do not match `$SYS` topics [MQTT-4.7.2-1]: subscribe to `$SYS/#`.
//! These messages are never written to the store.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use diglot_core::{Message, Qos, Topic};

use crate::durable::QueueEvent;
use crate::server::Shared;

/// Publishes the statistics every `interval` until shutdown.
pub(crate) async fn run(shared: Arc<Shared>, interval: Duration) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    publish("$SYS/broker/version", format!("diglot {}", env!("CARGO_PKG_VERSION")), &shared);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|down| *down) => return,
            _ = tick.tick() => {}
        }
        let stats = shared.router.stats();
        let auth = &shared.auth.counters;
        let values = [
            ("$SYS/broker/uptime", format!("{} seconds", shared.started.elapsed().as_secs())),
            ("$SYS/broker/clients/connected", shared.connections.load(Ordering::Relaxed).to_string()),
            ("$SYS/broker/messages/received", shared.metrics.messages_in().to_string()),
            ("$SYS/broker/messages/sent", shared.metrics.messages_out().to_string()),
            ("$SYS/broker/messages/dropped", stats.dropped.get().to_string()),
            ("$SYS/broker/bytes/received", shared.bytes_in.get().to_string()),
            ("$SYS/broker/bytes/sent", shared.bytes_out.get().to_string()),
            ("$SYS/broker/subscriptions/count", shared.router.subscription_count().to_string()),
            ("$SYS/broker/retained messages/count", shared.router.retained().len().to_string()),
            ("$SYS/broker/publish/rate limited", shared.breaches().get(diglot_core::Limit::MaxPublishRate).to_string()),
            ("$SYS/broker/auth/failures", auth.failures.load(Ordering::Relaxed).to_string()),
            ("$SYS/broker/acl/publish denied", auth.publish_denied.load(Ordering::Relaxed).to_string()),
            ("$SYS/broker/acl/subscribe denied", auth.subscribe_denied.load(Ordering::Relaxed).to_string()),
        ];
        for (topic, value) in values {
            publish(topic, value, &shared);
        }
    }
}

/// Publishes queue events as they happen, as JSON on `$SYS/broker/events/queue-full` and
/// `$SYS/broker/events/dead-letter` (QoS 0, not retained), until shutdown.
pub(crate) async fn events(
    shared: std::sync::Weak<Shared>,
    mut rx: tokio::sync::mpsc::Receiver<QueueEvent>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|down| *down) => return,
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let Some(shared) = shared.upgrade() else { return };
        let at_ms = crate::durable::now_ms();
        let (topic, body) = match event {
            QueueEvent::Full { queue, topic } => (
                "$SYS/broker/events/queue-full",
                serde_json::json!({ "event": "queue-full", "queue": queue, "topic": topic, "at_ms": at_ms }),
            ),
            QueueEvent::DeadLettered { queue, dead_letter_queue, topic } => (
                "$SYS/broker/events/dead-letter",
                serde_json::json!({
                    "event": "dead-letter", "queue": queue, "dead_letter_queue": dead_letter_queue,
                    "topic": topic, "at_ms": at_ms,
                }),
            ),
        };
        let Ok(topic) = Topic::new(topic) else { continue };
        let _ = shared.router.publish(Message::new(topic, Bytes::from(body.to_string()), Qos::AtMostOnce, false));
    }
}

fn publish(topic: &str, value: String, shared: &Shared) {
    let Ok(topic) = Topic::new(topic) else { return };
    let msg = Message::new(topic, Bytes::from(value), Qos::AtMostOnce, true);
    let (msg, _) = shared.router.publish(msg);
    shared.router.retained().update(&msg);
}
