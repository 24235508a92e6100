//! The bounded per-connection outbox between the router and a connection's driver.
//!
//! The router pushes without ever waiting; the driver drains in batches. The outbox is bounded
//! by messages and by bytes. When it is full, a QoS 0 delivery is dropped and counted, and a
//! QoS ≥ 1 delivery marks the consumer as slow, which closes the connection with
//! [`crate::CloseReason::SlowConsumer`]. Durable queues (persistent sessions, STOMP queues and
//! durable subscriptions) never overflow an outbox: they hand over only while
//! [`Outbox::has_room`] and their consumer's window allow, and otherwise keep the message in the
//! store, so a slow durable consumer is parked, not closed.
//!
//! The outbox is also how the connection's driver is woken for anything else that closes it
//! (a takeover, an administrator's kick, the server's shutdown: [`Outbox::signal`]). The driver
//! is the only task that waits on it, so one [`AtomicWaker`] does: registering the waker and
//! waking it are a few atomic operations, where a `Notify` per reason took its waiter list's
//! lock twice per reason on every event the driver handled.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;

use crate::message::{Delivery, Qos};

/// What happened to one pushed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Dropped because the outbox was full (QoS 0), and counted.
    Dropped,
    /// The outbox was full for a QoS ≥ 1 delivery: the consumer is slow and will be closed.
    SlowConsumer,
    /// The connection has already gone.
    Closed,
}

/// Control signals for a connection's driver ([`Outbox::signal`]); bits of one byte.
pub mod signal {
    /// Another connection took the client id (and its session) over.
    pub const TAKEOVER: u8 = 1;
    /// An administrator closed the connection.
    pub const KICKED: u8 = 2;
    /// The server is shutting down.
    pub const SHUTDOWN: u8 = 4;
}

/// What the driver was woken for ([`Outbox::poll_wake`]), in the order it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// One or more [`signal`] bits (all of them that are set).
    Signal(u8),
    /// The consumer was marked slow.
    Slow,
    /// A delivery is waiting.
    Ready,
}

struct State {
    queue: VecDeque<Delivery>,
    bytes: usize,
    closed: bool,
    slow: bool,
}

/// A bounded queue of deliveries for one connection.
pub struct Outbox {
    state: Mutex<State>,
    /// The driver's waker: woken when a delivery arrives in an empty outbox, when the consumer
    /// is marked slow, and for a signal.
    waker: AtomicWaker,
    signals: AtomicU8,
    max_messages: usize,
    max_bytes: usize,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("Outbox")
            .field("queued", &st.queue.len())
            .field("bytes", &st.bytes)
            .field("slow", &st.slow)
            .field("signals", &self.signals.load(Ordering::Relaxed))
            .finish()
    }
}

impl Outbox {
    /// An empty outbox with the given bounds.
    pub fn new(max_messages: usize, max_bytes: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State { queue: VecDeque::new(), bytes: 0, closed: false, slow: false }),
            waker: AtomicWaker::new(),
            signals: AtomicU8::new(0),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a delivery without waiting.
    pub fn try_push(&self, d: Delivery) -> PushOutcome {
        let cost = d.cost();
        let mut st = self.state.lock();
        if st.closed {
            return PushOutcome::Closed;
        }
        // A single delivery larger than the byte bound still fits into an empty outbox, so a
        // large message is never undeliverable just because of the bound.
        let full = st.queue.len() >= self.max_messages || (!st.queue.is_empty() && st.bytes + cost > self.max_bytes);
        if full {
            if d.qos == Qos::AtMostOnce {
                drop(st);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return PushOutcome::Dropped;
            }
            st.slow = true;
            drop(st);
            self.waker.wake();
            return PushOutcome::SlowConsumer;
        }
        st.bytes += cost;
        st.queue.push_back(d);
        let was_empty = st.queue.len() == 1;
        drop(st);
        if was_empty {
            self.waker.wake();
        }
        PushOutcome::Queued
    }

    /// Queues deliveries without waiting, each as [`Outbox::try_push`] would, under one lock;
    /// `outcome` is told what happened to each.
    pub fn push_all(&self, ds: &mut dyn Iterator<Item = Delivery>, outcome: &mut dyn FnMut(PushOutcome)) {
        let mut st = self.state.lock();
        let was_empty = st.queue.is_empty();
        let (mut dropped, mut slow) = (0u64, false);
        for d in ds {
            if st.closed {
                outcome(PushOutcome::Closed);
                continue;
            }
            let cost = d.cost();
            let full =
                st.queue.len() >= self.max_messages || (!st.queue.is_empty() && st.bytes + cost > self.max_bytes);
            if !full {
                st.bytes += cost;
                st.queue.push_back(d);
                outcome(PushOutcome::Queued);
            } else if d.qos == Qos::AtMostOnce {
                dropped += 1;
                outcome(PushOutcome::Dropped);
            } else {
                st.slow = true;
                slow = true;
                outcome(PushOutcome::SlowConsumer);
            }
        }
        let wake = slow || (was_empty && !st.queue.is_empty());
        drop(st);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if wake {
            self.waker.wake();
        }
    }

    /// Whether a delivery would be queued now rather than dropped or refused (used by durable
    /// queues, which keep a message rather than overflow an outbox).
    pub fn has_room(&self) -> bool {
        let st = self.state.lock();
        !st.closed && !st.slow && st.queue.len() < self.max_messages && st.bytes < self.max_bytes
    }

    /// Moves up to `max` deliveries into `into`. Returns `false` once the consumer was marked
    /// slow (the driver then closes the connection).
    pub fn drain(&self, into: &mut Vec<Delivery>, max: usize) -> bool {
        let mut st = self.state.lock();
        let st = &mut *st;
        let n = st.queue.len().min(max);
        for d in st.queue.drain(..n) {
            st.bytes -= d.cost();
            into.push(d);
        }
        !st.slow
    }

    /// Whether anything is waiting (or the consumer was marked slow).
    pub fn is_ready(&self) -> bool {
        let st = self.state.lock();
        !st.queue.is_empty() || st.slow
    }

    /// Sets signal bits ([`signal`]) and wakes the driver. A bit stays set: the driver closes
    /// the connection for it.
    pub fn signal(&self, bits: u8) {
        self.signals.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// What the driver should handle now: a signal, a slow consumer (even while the driver is
    /// not draining, for example because the client's inflight window is full), or, if
    /// `deliver`, a waiting delivery. Otherwise `Pending`, and the task in `cx` is woken when
    /// one of them happens. Only one task may wait on an outbox at a time (its driver).
    pub fn poll_wake(&self, cx: &mut Context<'_>, deliver: bool) -> Poll<Wake> {
        // Registered before looking, so that a push or signal after the look wakes the task.
        self.waker.register(cx.waker());
        let signals = self.signals.load(Ordering::Acquire);
        if signals != 0 {
            return Poll::Ready(Wake::Signal(signals));
        }
        let st = self.state.lock();
        if st.slow {
            Poll::Ready(Wake::Slow)
        } else if deliver && !st.queue.is_empty() {
            Poll::Ready(Wake::Ready)
        } else {
            Poll::Pending
        }
    }

    /// [`Outbox::poll_wake`] as a future. Cancel-safe.
    pub async fn wake(&self, deliver: bool) -> Wake {
        std::future::poll_fn(|cx| self.poll_wake(cx, deliver)).await
    }

    /// Refuses further pushes and discards what is queued.
    pub fn close(&self) {
        self.close_into(&mut Vec::new());
    }

    /// Refuses further pushes and moves what is queued into `into`, in order: deliveries that
    /// never reached the connection, which a durable queue takes back as not delivered.
    pub fn close_into(&self, into: &mut Vec<Delivery>) {
        let mut st = self.state.lock();
        st.closed = true;
        into.extend(st.queue.drain(..));
        st.bytes = 0;
    }

    /// How many QoS 0 deliveries were dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many deliveries are queued.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether no delivery is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::topic::Topic;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    fn d(qos: Qos, n: usize) -> Delivery {
        let m = Message::new(Topic::new("t").unwrap(), Bytes::from(vec![0u8; n]), qos, false);
        Delivery::new(Arc::new(m), 1, qos)
    }

    #[test]
    fn bounded_by_messages() {
        let o = Outbox::new(2, 1 << 20);
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 1)), PushOutcome::Queued);
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 1)), PushOutcome::Queued);
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 1)), PushOutcome::Dropped);
        assert_eq!(o.dropped(), 1);
        assert_eq!(o.try_push(d(Qos::AtLeastOnce, 1)), PushOutcome::SlowConsumer);
        let mut v = Vec::new();
        assert!(!o.drain(&mut v, 10));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn bounded_by_bytes_but_one_large_fits() {
        let o = Outbox::new(100, 1000);
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 5000)), PushOutcome::Queued);
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 10)), PushOutcome::Dropped);
        let mut v = Vec::new();
        assert!(o.drain(&mut v, 10));
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 10)), PushOutcome::Queued);
        o.close();
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 10)), PushOutcome::Closed);
    }

    #[test]
    fn push_all_keeps_the_bounds_of_one_push_at_a_time() {
        let o = Outbox::new(2, 1 << 20);
        let mut outcomes = Vec::new();
        let mut ds =
            [d(Qos::AtMostOnce, 1), d(Qos::AtMostOnce, 1), d(Qos::AtMostOnce, 1), d(Qos::AtLeastOnce, 1)].into_iter();
        o.push_all(&mut ds, &mut |p| outcomes.push(p));
        use PushOutcome::*;
        assert_eq!(outcomes, [Queued, Queued, Dropped, SlowConsumer]);
        assert_eq!(o.dropped(), 1);
        assert!(o.is_ready());
        let mut v = Vec::new();
        assert!(!o.drain(&mut v, 10), "marked slow");
        assert_eq!(v.len(), 2);
        o.close();
        outcomes.clear();
        o.push_all(&mut [d(Qos::AtMostOnce, 1)].into_iter(), &mut |p| outcomes.push(p));
        assert_eq!(outcomes, [Closed]);
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_driver_is_woken_for_deliveries_slowness_and_signals_in_that_order_of_looking() {
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let o = Outbox::new(2, 1 << 20);
        assert_eq!(o.poll_wake(&mut cx, true), Poll::Pending);
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 1)), PushOutcome::Queued);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "a delivery into an empty outbox wakes");
        assert_eq!(o.poll_wake(&mut cx, false), Poll::Pending, "not draining: deliveries wait");
        assert_eq!(o.poll_wake(&mut cx, true), Poll::Ready(Wake::Ready));
        assert_eq!(o.try_push(d(Qos::AtMostOnce, 1)), PushOutcome::Queued);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "a second delivery does not wake again");
        assert_eq!(o.try_push(d(Qos::AtLeastOnce, 1)), PushOutcome::SlowConsumer);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(o.poll_wake(&mut cx, false), Poll::Ready(Wake::Slow), "slow even while not draining");
        o.signal(signal::KICKED);
        o.signal(signal::SHUTDOWN);
        assert_eq!(count.0.load(Ordering::SeqCst), 3, "the waker was taken by the first wake");
        assert_eq!(o.poll_wake(&mut cx, true), Poll::Ready(Wake::Signal(signal::KICKED | signal::SHUTDOWN)));
        o.signal(signal::TAKEOVER);
        assert_eq!(count.0.load(Ordering::SeqCst), 4);
    }
}
