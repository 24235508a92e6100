//! Per-connection limits shared by every protocol adapter and the connection driver, and the
//! counters of their breaches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Limits that bound what one connection may make the broker hold. Every buffer, frame,
/// header and queue has one; the values come from `[limits]` in `broker.toml`.
///
/// Equality compares the values only, not [`Limits::breaches`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest inbound protocol frame (MQTT packet, STOMP frame) in bytes, headers included.
    pub max_frame_bytes: usize,
    /// Most headers in one STOMP frame.
    pub max_headers: usize,
    /// Largest STOMP header line (name, colon and value) in bytes.
    pub max_header_bytes: usize,
    /// Most subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Most deliveries waiting in one connection's outbox.
    pub outbox_max_messages: usize,
    /// Most memory held by one connection's outbox: each waiting delivery counts
    /// [`Delivery::cost`](crate::Delivery::cost), twice its payload and topic plus a fixed overhead.
    pub outbox_max_bytes: usize,
    /// Most unacknowledged QoS 1/2 deliveries in flight to one client.
    pub max_inflight: u16,
    /// Longest accepted MQTT client id or STOMP client-id, in bytes.
    pub max_client_id_bytes: usize,
    /// Most publishes per second one connection may make (0: no limit). Over it, the broker
    /// stops reading from the connection until the rate is back, so the client slows down.
    pub max_publish_rate: u32,
    /// Most bytes per second one connection may send (0: no limit), enforced the same way.
    pub max_bytes_rate: u64,
    /// Where every breach of these limits is counted (one set of counters per broker, kept
    /// across configuration reloads).
    pub breaches: Arc<Breaches>,
}

impl PartialEq for Limits {
    fn eq(&self, o: &Limits) -> bool {
        let Limits {
            max_frame_bytes,
            max_headers,
            max_header_bytes,
            max_subscriptions,
            outbox_max_messages,
            outbox_max_bytes,
            max_inflight,
            max_client_id_bytes,
            max_publish_rate,
            max_bytes_rate,
            breaches: _,
        } = self;
        (*max_frame_bytes, *max_headers, *max_header_bytes, *max_subscriptions, *outbox_max_messages)
            == (o.max_frame_bytes, o.max_headers, o.max_header_bytes, o.max_subscriptions, o.outbox_max_messages)
            && (*outbox_max_bytes, *max_inflight, *max_client_id_bytes, *max_publish_rate, *max_bytes_rate)
                == (o.outbox_max_bytes, o.max_inflight, o.max_client_id_bytes, o.max_publish_rate, o.max_bytes_rate)
    }
}

impl Eq for Limits {}

/// A configured limit whose breaches are counted: the label of its counter is the name of its
/// key in `broker.toml` (or, for the outbox, what happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_connections`: a connection refused because the broker is full.
    MaxConnections,
    /// `limits.max_connections_per_ip`: a connection refused because its address has too many.
    MaxConnectionsPerIp,
    /// `server.handshake_timeout_secs`, `mqtt.connect_timeout_secs`, `stomp.connect_timeout_secs`:
    /// a client that did not finish its handshake or CONNECT in time.
    HandshakeTimeout,
    /// `limits.max_http_header_bytes`: an HTTP request head too large (431).
    MaxHttpHeaderBytes,
    /// `limits.max_ws_frame_bytes` / `limits.max_ws_message_bytes`: a WebSocket frame or
    /// message (reassembled or inflated) too large (close 1009).
    MaxWsMessageBytes,
    /// `limits.max_frame_bytes`: an MQTT packet or STOMP frame too large.
    MaxFrameBytes,
    /// `limits.max_headers`: a STOMP frame with too many headers.
    MaxHeaders,
    /// `limits.max_header_bytes`: a STOMP header line too long.
    MaxHeaderBytes,
    /// `limits.max_subscriptions`: a subscription refused.
    MaxSubscriptions,
    /// `limits.max_inflight`: a client that sent more unacknowledged QoS 2 publishes than
    /// allowed (MQTT 5 Receive Maximum).
    MaxInflight,
    /// `limits.max_client_id_bytes`: a client id too long.
    MaxClientIdBytes,
    /// `limits.max_publish_rate`: reading paused because a connection published too fast.
    MaxPublishRate,
    /// `limits.max_bytes_rate`: reading paused because a connection sent too many bytes.
    MaxBytesRate,
    /// `limits.outbox_max_messages` / `outbox_max_bytes`: a consumer closed as too slow.
    SlowConsumer,
}

impl Limit {
    /// Every limit, in counter order.
    pub const ALL: [Limit; 14] = [
        Limit::MaxConnections,
        Limit::MaxConnectionsPerIp,
        Limit::HandshakeTimeout,
        Limit::MaxHttpHeaderBytes,
        Limit::MaxWsMessageBytes,
        Limit::MaxFrameBytes,
        Limit::MaxHeaders,
        Limit::MaxHeaderBytes,
        Limit::MaxSubscriptions,
        Limit::MaxInflight,
        Limit::MaxClientIdBytes,
        Limit::MaxPublishRate,
        Limit::MaxBytesRate,
        Limit::SlowConsumer,
    ];

    /// The counter's label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxConnectionsPerIp => "max_connections_per_ip",
            Limit::HandshakeTimeout => "handshake_timeout",
            Limit::MaxHttpHeaderBytes => "max_http_header_bytes",
            Limit::MaxWsMessageBytes => "max_ws_message_bytes",
            Limit::MaxFrameBytes => "max_frame_bytes",
            Limit::MaxHeaders => "max_headers",
            Limit::MaxHeaderBytes => "max_header_bytes",
            Limit::MaxSubscriptions => "max_subscriptions",
            Limit::MaxInflight => "max_inflight",
            Limit::MaxClientIdBytes => "max_client_id_bytes",
            Limit::MaxPublishRate => "max_publish_rate",
            Limit::MaxBytesRate => "max_bytes_rate",
            Limit::SlowConsumer => "slow_consumer",
        }
    }
}

/// How often each [`Limit`] was breached.
#[derive(Debug, Default)]
pub struct Breaches([AtomicU64; Limit::ALL.len()]);

impl Breaches {
    /// Counts one breach of `limit`.
    pub fn hit(&self, limit: Limit) {
        self.0[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How often `limit` was breached.
    pub fn get(&self, limit: Limit) -> u64 {
        self.0[limit as usize].load(Ordering::Relaxed)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_headers: 64,
            max_header_bytes: 8 * 1024,
            max_subscriptions: 1024,
            outbox_max_messages: 10_000,
            outbox_max_bytes: 16 * 1024 * 1024,
            max_inflight: 64,
            max_client_id_bytes: 256,
            max_publish_rate: 0,
            max_bytes_rate: 0,
            breaches: Arc::default(),
        }
    }
}

/// A token bucket: `rate` tokens a second, at most one second's worth saved up. Taking more
/// than there are puts it in debt, and [`Bucket::ready_at`] says when the debt is paid.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Bucket {
    /// A full bucket for `rate` tokens a second.
    pub fn new(rate: f64, now: std::time::Instant) -> Bucket {
        Bucket { rate, tokens: rate, last: now }
    }

    /// Takes `n` tokens at `now`.
    pub fn take(&mut self, n: f64, now: std::time::Instant) {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate) - n;
        self.last = now;
    }

    /// When the bucket is out of debt (`None` if it is not in debt).
    pub fn ready_at(&self) -> Option<std::time::Instant> {
        (self.tokens < 0.0).then(|| self.last + std::time::Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn breaches_are_counted_per_limit_and_labels_are_distinct() {
        let b = Breaches::default();
        b.hit(Limit::MaxSubscriptions);
        b.hit(Limit::MaxSubscriptions);
        b.hit(Limit::SlowConsumer);
        assert_eq!(b.get(Limit::MaxSubscriptions), 2);
        assert_eq!(b.get(Limit::SlowConsumer), 1);
        assert_eq!(b.get(Limit::MaxConnections), 0);
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "ALL is in discriminant order");
        }
        let labels: std::collections::HashSet<_> = Limit::ALL.iter().map(|l| l.label()).collect();
        assert_eq!(labels.len(), Limit::ALL.len());
    }

    #[test]
    fn limits_compare_by_value_not_by_counters() {
        let a = Limits::default();
        a.breaches.hit(Limit::MaxHeaders);
        assert_eq!(a, Limits::default());
        assert_ne!(a, Limits { max_headers: 1, ..Limits::default() });
    }

    #[test]
    fn bucket_goes_into_debt_and_recovers() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        b.take(10.0, t0);
        assert_eq!(b.ready_at(), None);
        b.take(5.0, t0);
        assert_eq!(b.ready_at(), Some(t0 + Duration::from_millis(500)));
        b.take(0.0, t0 + Duration::from_secs(1));
        assert_eq!(b.ready_at(), None, "repaid and refilled, but never above one second's worth");
        b.take(10.0, t0 + Duration::from_secs(100));
        assert_eq!(b.ready_at(), None);
    }
}
