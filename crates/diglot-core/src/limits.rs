//! Per-connection limits shared by every protocol adapter and the connection driver.

/// Limits that bound what one connection may make the broker hold. Every buffer, frame,
/// header and queue has one; the values come from `[limits]` in `broker.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Most payload bytes waiting in one connection's outbox.
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
