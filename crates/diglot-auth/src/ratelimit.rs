//! A per-source-address limit on failed logins: a token bucket per address, in a bounded map.
//!
//! Each address starts with `per_minute` tokens, and gets them back at `per_minute` per minute.
//! A failed login takes one token; an address with less than one token left is blocked. The
//! broker checks [`FailedLogins::is_blocked`] *before* verifying a password (so a blocked
//! address costs no argon2 work) and answers a blocked client as it would a bad password.
//! A successful login neither takes nor gives back a token: a client that knows one password
//! must not be able to reset the count for guesses at another.
//!
//! Addresses are grouped: an IPv4 address counts alone, an IPv6 address counts with its /64
//! (one host usually holds a whole /64), and an IPv4-mapped IPv6 address counts as its IPv4
//! address. The map holds at most `max_addresses` entries: when it is full, entries that have
//! refilled completely (indistinguishable from absent ones) are dropped, and if none has, the
//! sixteenth of them that failed least recently goes. An attacker with many addresses can thus
//! push others out, but each of its own addresses is still limited.
//!
//! Sans-IO: the caller passes the time in, and wraps the limiter in a mutex to share it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::FailedLoginLimitConfig;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The failed-login limiter.
#[derive(Debug)]
pub struct FailedLogins {
    capacity: f64,
    per_sec: f64,
    max_addresses: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl FailedLogins {
    /// A limiter from `failed_login_limit`; `per_minute = 0` turns it off.
    pub fn new(cfg: &FailedLoginLimitConfig) -> FailedLogins {
        let capacity = f64::from(cfg.per_minute);
        FailedLogins {
            capacity,
            per_sec: capacity / 60.0,
            max_addresses: cfg.max_addresses.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Whether logins from `ip` are refused at `now`.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        if self.capacity == 0.0 {
            return false;
        }
        self.buckets.get(&key(ip)).is_some_and(|b| self.refilled(b, now) < 1.0)
    }

    /// How long until `ip` may try again (zero when it is not blocked).
    pub fn retry_after(&self, ip: IpAddr, now: Instant) -> Duration {
        match self.buckets.get(&key(ip)) {
            Some(b) if self.capacity > 0.0 => {
                let missing = 1.0 - self.refilled(b, now);
                Duration::try_from_secs_f64(missing / self.per_sec).unwrap_or(Duration::ZERO)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed login from `ip` at `now`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        if self.capacity == 0.0 {
            return;
        }
        let k = key(ip);
        if !self.buckets.contains_key(&k) && self.buckets.len() >= self.max_addresses {
            self.evict(now);
        }
        let tokens = match self.buckets.get(&k) {
            Some(b) => self.refilled(b, now),
            None => self.capacity,
        };
        self.buckets.insert(k, Bucket { tokens: (tokens - 1.0).max(0.0), updated: now });
    }

    /// How many address groups are tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        (b.tokens + elapsed * self.per_sec).min(self.capacity)
    }

    /// Makes room in a full map: drops the entries that have refilled, then, while fewer than
    /// a sixteenth of the map's places (at least one) are free, the entries that failed least
    /// recently, until that many are. Each call walks the whole map, so it frees room for many
    /// addresses at once: a flood of failures from new addresses costs one walk per
    /// `max_addresses / 16` of them, not one each, whether or not some entries have refilled.
    fn evict(&mut self, now: Instant) {
        let capacity = self.capacity;
        let per_sec = self.per_sec;
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * per_sec < capacity
        });
        let keep = self.max_addresses - (self.max_addresses / 16).max(1).min(self.max_addresses);
        let excess = self.buckets.len().saturating_sub(keep);
        if excess > 0 {
            let mut by_age: Vec<(Instant, IpAddr)> = self.buckets.iter().map(|(k, b)| (b.updated, *k)).collect();
            if excess < by_age.len() {
                by_age.select_nth_unstable(excess - 1);
            }
            for (_, k) in by_age.iter().take(excess) {
                self.buckets.remove(k);
            }
        }
    }
}

/// The group an address counts in: itself for IPv4, its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, max_addresses: usize) -> FailedLogins {
        FailedLogins::new(&FailedLoginLimitConfig { per_minute, max_addresses })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_refill() {
        let mut l = limiter(3, 10);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(!l.is_blocked(a, t0));
            l.record_failure(a, t0);
        }
        assert!(l.is_blocked(a, t0));
        let wait = l.retry_after(a, t0);
        assert!(wait > Duration::from_millis(19_990) && wait < Duration::from_millis(20_010), "{wait:?}");
        // Another address is unaffected.
        assert!(!l.is_blocked(ip("192.0.2.2"), t0));
        // One token per 20 s comes back.
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(l.is_blocked(a, at(19)));
        assert!(!l.is_blocked(a, at(21)));
        assert_eq!(l.retry_after(a, at(21)), Duration::ZERO);
        l.record_failure(a, at(21));
        assert!(l.is_blocked(a, at(22)));
        // Failures while blocked keep it blocked without going negative.
        l.record_failure(a, at(22));
        assert!(l.is_blocked(a, at(41)));
        assert!(!l.is_blocked(a, at(43)));
    }

    #[test]
    fn disabled() {
        let mut l = limiter(0, 10);
        let t0 = Instant::now();
        for _ in 0..100 {
            l.record_failure(ip("192.0.2.1"), t0);
        }
        assert!(!l.is_blocked(ip("192.0.2.1"), t0));
        assert!(l.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let mut l = limiter(2, 10);
        let t0 = Instant::now();
        l.record_failure(ip("2001:db8:1:2::1"), t0);
        l.record_failure(ip("2001:db8:1:2:ffff::9"), t0);
        assert!(l.is_blocked(ip("2001:db8:1:2::77"), t0));
        assert!(!l.is_blocked(ip("2001:db8:1:3::1"), t0));
        l.record_failure(ip("::ffff:192.0.2.7"), t0);
        l.record_failure(ip("192.0.2.7"), t0);
        assert!(l.is_blocked(ip("192.0.2.7"), t0));
        assert!(l.is_blocked(ip("::ffff:192.0.2.7"), t0));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn bounded_with_eviction() {
        let mut l = limiter(2, 3);
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            l.record_failure(ip(a), t0 + s * i as u32);
            l.record_failure(ip(a), t0 + s * i as u32);
        }
        assert_eq!(l.len(), 3);
        // Full, nobody refilled: the least recently failing address (10.0.0.1) goes.
        l.record_failure(ip("10.0.0.4"), t0 + s * 3);
        assert_eq!(l.len(), 3);
        assert!(!l.is_blocked(ip("10.0.0.1"), t0 + s * 3));
        assert!(l.is_blocked(ip("10.0.0.2"), t0 + s * 3));
        // Much later everyone has refilled: all are dropped to make room.
        let later = t0 + Duration::from_secs(3600);
        l.record_failure(ip("10.0.0.5"), later);
        assert_eq!(l.len(), 1);
        // Known addresses never evict anyone.
        l.record_failure(ip("10.0.0.5"), later);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_full_map_makes_room_for_a_sixteenth_at_once() {
        let mut l = limiter(1, 64);
        let t0 = Instant::now();
        let at = |i: u32| t0 + Duration::from_millis(u64::from(i));
        let addr = |i: u32| IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
        for i in 0..64 {
            l.record_failure(addr(i), at(i));
        }
        assert_eq!(l.len(), 64);
        // Full, nobody refilled: the four that failed least recently go, and the next three
        // new addresses fit without another sweep.
        a_65th_frees_four(&mut l, addr, at);
        for i in 65..68 {
            l.record_failure(addr(i), at(i));
        }
        assert_eq!(l.len(), 64);
        l.record_failure(addr(68), at(68));
        assert_eq!(l.len(), 61);
        assert_eq!(l.retry_after(addr(4), at(69)), Duration::ZERO, "the next least recent went");
    }

    #[test]
    fn a_full_map_makes_room_for_a_sixteenth_even_when_some_have_refilled() {
        // One try a minute: an entry refills 60 s after its failure.
        let mut l = limiter(1, 64);
        let t0 = Instant::now() + Duration::from_secs(100);
        let later = t0 + Duration::from_secs(61);
        let at = |i: u32| later + Duration::from_millis(u64::from(i));
        let addr = |i: u32| IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
        l.record_failure(addr(0), t0);
        for i in 1..64 {
            l.record_failure(addr(i), at(i));
        }
        assert_eq!(l.len(), 64);
        // Address 0 has refilled and goes; three more, the least recent, go with it, so the
        // next three new addresses fit without another sweep.
        a_65th_frees_four(&mut l, addr, at);
    }

    /// In a full map of 64 (addresses 0 to 63, the lower the less recent), a failure from a
    /// 65th address frees a sixteenth: addresses 0 to 3 are forgotten, the rest kept.
    fn a_65th_frees_four(l: &mut FailedLogins, addr: impl Fn(u32) -> IpAddr, at: impl Fn(u32) -> Instant) {
        l.record_failure(addr(64), at(64));
        assert_eq!(l.len(), 61);
        for i in 0..4 {
            assert_eq!(l.retry_after(addr(i), at(65)), Duration::ZERO, "address {i} forgotten");
        }
        for i in 4..=64 {
            assert!(l.retry_after(addr(i), at(65)) > Duration::ZERO, "address {i} kept");
        }
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut l = limiter(1, 10);
        let t0 = Instant::now() + Duration::from_secs(100);
        l.record_failure(ip("192.0.2.1"), t0);
        assert!(l.is_blocked(ip("192.0.2.1"), t0 - Duration::from_secs(50)));
    }
}
