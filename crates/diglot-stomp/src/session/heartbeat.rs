//! Heart-beat negotiation and timing (STOMP 1.1+ "Heart-beating").
//!
//! CONNECT carries `heart-beat:cx,cy` (the client can send every `cx` ms; it wants to hear from
//! the server every `cy` ms) and the server answers `heart-beat:sx,sy` in CONNECTED. Then:
//!
//! - server → client: none if `sx` or `cy` is 0, else every `max(sx, cy)` ms;
//! - client → server: none if `cx` or `sy` is 0, else every `max(cx, sy)` ms.
//!
//! The server sends an EOL when it has written nothing for nine tenths of its interval (the
//! spec says "at least every <n> milliseconds": a beat timed at exactly `n` reaches the client
//! a little after it, the timer and the network being late, never early), and closes the
//! connection when it has read nothing for the client's interval × a grace factor (the spec
//! asks for "some tolerance"). STOMP 1.0 has no heart-beats. This module only keeps time; the
//! session writes the EOL and the ERROR.

use std::time::{Duration, Instant};

/// The CONNECT frame's `heart-beat` header as `(cx, cy)`: absent means `0,0`.
pub(crate) fn parse_header(value: Option<&str>) -> Option<(u64, u64)> {
    let Some(value) = value else { return Some((0, 0)) };
    let (cx, cy) = value.split_once(',')?;
    Some((cx.trim().parse().ok()?, cy.trim().parse().ok()?))
}

/// What [`Heartbeat::poll`] found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Nothing yet.
    Idle,
    /// Send a heart-beat EOL now.
    Send,
    /// The client has been silent too long.
    TimedOut,
}

/// The negotiated heart-beat intervals and the last traffic in each direction.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    send: Option<Duration>,
    recv_timeout: Option<Duration>,
    last_sent: Instant,
    last_recv: Instant,
}

impl Heartbeat {
    /// No heart-beats (STOMP 1.0, or before CONNECT).
    pub(crate) fn off(now: Instant) -> Heartbeat {
        Heartbeat { send: None, recv_timeout: None, last_sent: now, last_recv: now }
    }

    /// Negotiates from the client's `(cx, cy)` and the server's `(sx, sy)`. Returns the timer
    /// and the `(send, receive)` intervals in ms to announce in CONNECTED (0 = none), which are
    /// the effective ones, so the client's own computation reaches the same result.
    pub(crate) fn negotiate(
        client: (u64, u64),
        server: (u64, u64),
        grace: f64,
        now: Instant,
    ) -> (Heartbeat, (u64, u64)) {
        let (cx, cy) = client;
        let (sx, sy) = server;
        let send_ms = if sx == 0 || cy == 0 { 0 } else { sx.max(cy) };
        let recv_ms = if cx == 0 || sy == 0 { 0 } else { cx.max(sy) };
        // Non-finite or sub-1 grace factors would close healthy clients; clamp them.
        let grace = if grace >= 1.0 { grace } else { 1.0 };
        let timeout_ms = (recv_ms as f64 * grace).min(u64::MAX as f64) as u64;
        let hb = Heartbeat {
            send: (send_ms > 0).then(|| Duration::from_millis(send_ms - send_ms / 10)),
            recv_timeout: (recv_ms > 0).then(|| Duration::from_millis(timeout_ms)),
            last_sent: now,
            last_recv: now,
        };
        (hb, (send_ms, recv_ms))
    }

    /// Bytes were written to the client.
    pub(crate) fn on_sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// Bytes were read from the client.
    pub(crate) fn on_recv(&mut self, now: Instant) {
        self.last_recv = self.last_recv.max(now);
    }

    fn send_due(&self) -> Option<Instant> {
        self.last_sent.checked_add(self.send?)
    }

    fn recv_due(&self) -> Option<Instant> {
        self.last_recv.checked_add(self.recv_timeout?)
    }

    /// When something is next due, if ever.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.send_due(), self.recv_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What is due at `now`. A due heart-beat counts as sent.
    pub(crate) fn poll(&mut self, now: Instant) -> Tick {
        if self.recv_due().is_some_and(|due| now >= due) {
            return Tick::TimedOut;
        }
        if self.send_due().is_some_and(|due| now >= due) {
            self.last_sent = now;
            return Tick::Send;
        }
        Tick::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        assert_eq!(parse_header(None), Some((0, 0)));
        assert_eq!(parse_header(Some("100,200")), Some((100, 200)));
        assert_eq!(parse_header(Some(" 1 , 2 ")), Some((1, 2)));
        for bad in ["", "1", "a,b", "1,2,3", "-1,0", "99999999999999999999,0"] {
            assert_eq!(parse_header(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn negotiation_follows_the_spec() {
        let now = Instant::now();
        assert_eq!(Heartbeat::negotiate((0, 0), (10_000, 10_000), 1.5, now).1, (0, 0));
        assert_eq!(Heartbeat::negotiate((4_000, 20_000), (10_000, 10_000), 1.5, now).1, (20_000, 10_000));
        assert_eq!(Heartbeat::negotiate((30_000, 1_000), (10_000, 0), 1.5, now).1, (10_000, 0));
        assert_eq!(Heartbeat::negotiate((1, 1), (0, 0), 1.5, now).0.next_deadline(), None);
    }

    #[test]
    fn timing() {
        let t0 = Instant::now();
        let (mut hb, _) = Heartbeat::negotiate((1_000, 2_000), (500, 1_000), 1.5, t0);
        // send every 2 s, expect the client every 1 s × 1.5.
        assert_eq!(hb.next_deadline(), Some(t0 + Duration::from_millis(1_500)));
        hb.on_recv(t0 + Duration::from_millis(1_000));
        assert_eq!(hb.poll(t0 + Duration::from_millis(2_000)), Tick::Send);
        assert_eq!(hb.poll(t0 + Duration::from_millis(2_100)), Tick::Idle);
        assert_eq!(hb.poll(t0 + Duration::from_millis(2_500)), Tick::TimedOut);
    }

    /// "The sender MUST send new data over the network connection at least every <n>
    /// milliseconds": the beat is due a tenth of the interval early, so that a late timer
    /// still keeps to it.
    #[test]
    fn a_beat_is_due_before_the_interval_is_up() {
        let t0 = Instant::now();
        let (mut hb, announced) = Heartbeat::negotiate((0, 10_000), (10_000, 0), 1.5, t0);
        assert_eq!(announced, (10_000, 0));
        assert_eq!(hb.next_deadline(), Some(t0 + Duration::from_millis(9_000)));
        assert_eq!(hb.poll(t0 + Duration::from_millis(8_999)), Tick::Idle);
        assert_eq!(hb.poll(t0 + Duration::from_millis(9_000)), Tick::Send);
        hb.on_sent(t0 + Duration::from_millis(9_500));
        assert_eq!(hb.next_deadline(), Some(t0 + Duration::from_millis(18_500)));
    }

    #[test]
    fn huge_intervals_do_not_overflow() {
        let t0 = Instant::now();
        let (hb, _) = Heartbeat::negotiate((u64::MAX, u64::MAX), (1, 1), f64::INFINITY, t0);
        let _ = hb.next_deadline();
        let (hb, _) = Heartbeat::negotiate((5, 5), (1, 1), f64::NAN, t0);
        assert_eq!(hb.next_deadline(), Some(t0 + Duration::from_millis(5)));
    }
}
