//! The timers of one MQTT connection: the CONNECT deadline, then the keep-alive window.
//!
//! Before CONNACK the client has `Config::connect_timeout` from the moment the connection
//! opened: the deadline covers the CONNECT and the opening of its session, and stops only
//! once the CONNACK is written. Afterwards, with a non-zero Keep Alive, the server closes a client from which nothing arrived for one and a
//! half times the Keep Alive [MQTT-3.1.2-24]. Any inbound bytes count, not only PINGREQ.
//!
//! This module only computes instants; the session decides what a firing timer means.

use std::time::{Duration, Instant};

/// When the connection must next hear from its client.
#[derive(Debug, Clone)]
pub(crate) struct KeepAlive {
    /// One and a half times the Keep Alive, or `None` for no keep-alive (Keep Alive 0).
    window: Option<Duration>,
    /// The CONNECT deadline, until CONNECT is accepted.
    connect_deadline: Option<Instant>,
    /// When bytes last arrived.
    last_in: Instant,
}

impl KeepAlive {
    /// A connection opened at `now`, waiting for CONNECT until `now + connect_timeout`.
    pub(crate) fn new(now: Instant, connect_timeout: Duration) -> KeepAlive {
        KeepAlive { window: None, connect_deadline: Some(now + connect_timeout), last_in: now }
    }

    /// CONNACK was written, with this effective Keep Alive in seconds; the window counts from
    /// the last inbound bytes (the CONNECT, or a packet the client sent right after it).
    pub(crate) fn start(&mut self, keep_alive_secs: u16) {
        self.connect_deadline = None;
        self.window = (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500));
    }

    /// Bytes arrived at `now`.
    pub(crate) fn touch(&mut self, now: Instant) {
        self.last_in = self.last_in.max(now);
    }

    /// The next instant at which [`KeepAlive::expired`] may become true.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.connect_deadline.or_else(|| self.window.map(|w| self.last_in + w))
    }

    /// Whether the deadline has passed at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_deadline_then_keep_alive() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(t0, Duration::from_secs(10));
        assert_eq!(k.deadline(), Some(t0 + Duration::from_secs(10)));
        k.touch(t0 + Duration::from_secs(1));
        k.start(4);
        assert_eq!(k.deadline(), Some(t0 + Duration::from_secs(7)));
        k.touch(t0 + Duration::from_secs(5));
        assert!(!k.expired(t0 + Duration::from_secs(10)));
        assert!(k.expired(t0 + Duration::from_secs(11)));
        k.start(0);
        assert_eq!(k.deadline(), None);
    }
}
