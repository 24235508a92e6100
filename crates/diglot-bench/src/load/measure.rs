//! What the scenarios share: payload stamps, the process clock, resident memory from `/proc`,
//! and the subscriber loop that counts (and optionally times, or paces) deliveries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::client::{Client, Event};

static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process: publishers and subscribers run in one
/// process, so stamps need no clock sync.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

/// A payload of `size` bytes (at least 16) whose first 16 bytes are `value` in hex; the rest is
/// `x`. Plain ASCII, so STOMP over WebSocket can send it as a text message.
pub fn payload(size: usize) -> Vec<u8> {
    vec![b'x'; size.max(16)]
}

/// Writes `value` as 16 hex digits at the start of `payload`.
pub fn stamp(payload: &mut [u8], value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in payload[..16].iter_mut().enumerate() {
        *byte = HEX[((value >> (60 - 4 * i)) & 0xF) as usize];
    }
}

/// Reads the value written by [`stamp`]; `None` if the payload is not one of ours.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(payload.get(..16)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// `VmRSS` of a process in bytes, from `/proc/PID/status`.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time a process has used (user + system), in seconds, from `/proc/PID/stat` (fields 14
/// and 15, in clock ticks of 1/100 s on Linux).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// When a subscriber stops: once `done` is set (publishers finished), after `expected`
/// deliveries, or after `idle` without one, and in any case at `deadline`.
#[derive(Clone)]
pub struct Plan {
    /// Set by the scenario when the publishers are done.
    pub done: Arc<AtomicBool>,
    /// Deliveries this subscriber should see in all (valid once `done` is set).
    pub expected: Arc<AtomicU64>,
    /// Stop after this long without a delivery once `done` is set.
    pub idle: Duration,
    /// Stop at this instant whatever happens.
    pub deadline: Instant,
    /// Stop as soon as `done` is set, without draining (the slow consumer).
    pub stop_at_done: bool,
    /// Read at most this many messages per second (the slow consumer).
    pub pace: Option<f64>,
    /// Record stamp-to-arrival latency in microseconds.
    pub latency: bool,
    /// Where to publish the running count of deliveries (the publishers' flow control).
    pub progress: Option<Arc<AtomicU64>>,
    /// Publishers waiting for that count to move, woken every [`Waiting::EVERY`] deliveries.
    pub waiting: Option<Arc<Waiting>>,
}

/// Publishers that wait for subscribers to catch up: woken as deliveries arrive, not by a
/// timer (tokio's timers tick in milliseconds, and a publisher that slept a millisecond each
/// time its window filled would cap the rate it measures at about the window per millisecond).
#[derive(Default)]
pub struct Waiting {
    /// How many publishers wait (a subscriber only wakes them then).
    pub count: std::sync::atomic::AtomicUsize,
    /// Where they wait.
    pub notify: tokio::sync::Notify,
}

impl Waiting {
    /// A subscriber wakes the waiting publishers once per this many deliveries.
    pub const EVERY: u64 = 64;
}

impl Plan {
    /// A plain subscriber that stops at `deadline` (or a second after the last delivery once the
    /// publishers are done), recording latency when `latency` is set.
    pub fn until(deadline: Instant, latency: bool) -> Plan {
        Plan {
            done: Arc::new(AtomicBool::new(false)),
            expected: Arc::new(AtomicU64::new(u64::MAX)),
            idle: Duration::from_secs(1),
            deadline,
            stop_at_done: false,
            pace: None,
            latency,
            progress: None,
            waiting: None,
        }
    }
}

/// What one subscriber saw.
pub struct Seen {
    /// Deliveries.
    pub received: u64,
    /// When the last one arrived.
    pub last: Option<Instant>,
    /// The broker closed the connection (or it failed: `error`).
    pub closed: bool,
    /// The error that ended it, if any.
    pub error: Option<String>,
    /// Latencies in µs, if asked for.
    pub hist: Option<Histogram<u64>>,
}

/// Reads deliveries on `client` until `plan` says stop, acknowledging any that need it.
pub async fn consume(mut client: Client, plan: Plan) -> (Seen, Client) {
    let start = Instant::now();
    let mut seen = Seen {
        received: 0,
        last: None,
        closed: false,
        error: None,
        hist: plan.latency.then(|| Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")),
    };
    let mut done_at = None;
    // The clock is read once per wait for the socket, not once per message: events that were
    // already buffered arrived when the read that brought them returned.
    let mut now = Instant::now();
    loop {
        if now >= plan.deadline {
            break;
        }
        if plan.done.load(Ordering::Acquire) {
            let since = *done_at.get_or_insert(now);
            let quiet = seen.last.map_or(since, |l| l.max(since));
            if plan.stop_at_done || seen.received >= plan.expected.load(Ordering::Acquire) || now - quiet >= plan.idle {
                break;
            }
        }
        let next = match client.rx.try_next() {
            Ok(Some(event)) => Ok(Ok(event)),
            Ok(None) => match client.tx.flush().await {
                Ok(()) => {
                    let next = tokio::time::timeout_at(now + Duration::from_millis(100), client.rx.next()).await;
                    now = Instant::now();
                    next
                }
                Err(e) => Ok(Err(e.into())),
            },
            Err(e) => Ok(Err(e)),
        };
        match next {
            Err(_) => continue,
            Ok(Ok(Event::Message { payload, ack })) => {
                seen.received += 1;
                seen.last = Some(now);
                if let Some(p) = &plan.progress {
                    p.store(seen.received, Ordering::Release);
                }
                if let Some(w) = &plan.waiting {
                    if seen.received.is_multiple_of(Waiting::EVERY) && w.count.load(Ordering::SeqCst) > 0 {
                        w.notify.notify_waiters();
                    }
                }
                if let Some(h) = seen.hist.as_mut() {
                    if let Some(t) = read_stamp(&payload) {
                        let _ = h.record((now_ns().saturating_sub(t) / 1000).max(1));
                    }
                }
                if let Some(ack) = ack {
                    if let Err(e) = client.tx.ack(&ack).await {
                        seen.error = Some(e.to_string());
                        break;
                    }
                }
                if let Some(rate) = plan.pace {
                    let due = start + Duration::from_secs_f64(seen.received as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    now = Instant::now();
                }
            }
            Ok(Ok(Event::Closed)) => {
                seen.closed = true;
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                seen.closed = true;
                seen.error = Some(e.to_string());
                break;
            }
        }
    }
    (seen, client)
}
