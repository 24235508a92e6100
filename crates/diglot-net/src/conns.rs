//! The table of open connections, for the admin API, the dashboard and metrics: who is
//! connected, over what, since when, with what traffic; and the most recent closes.
//!
//! The driver inserts its entry when the connection starts, fills in the client id, username
//! and protocol version as CONNECT settles them, counts traffic on the entry's atomics (one
//! writer, relaxed), and removes it when the connection ends. An administrator's kick wakes the
//! driver through the entry, which closes with [`CloseReason::Kicked`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use diglot_core::{CloseReason, ConnId, Transport};
use parking_lot::Mutex;
use serde::Serialize;

/// How many closed connections [`Conns::recent_closes`] remembers.
const RECENT_CLOSES: usize = 100;

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What CONNECT settled about a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Details {
    /// The client id, once claimed.
    pub(crate) client_id: Option<String>,
    /// The authenticated username.
    pub(crate) username: Option<String>,
    /// `mqtt/3.1.1`, `stomp/1.2`, … (the protocol name alone before CONNECT).
    pub(crate) protocol: &'static str,
}

/// One open connection.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(crate) id: ConnId,
    pub(crate) transport: Transport,
    /// Whether the connection came over TLS.
    pub(crate) tls: bool,
    pub(crate) peer: SocketAddr,
    pub(crate) connected_at: SystemTime,
    pub(crate) details: Mutex<Details>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    /// The connection's outbox, which also wakes its driver for an administrator's kick and
    /// the server's shutdown ([`diglot_core::Outbox::signal`]).
    pub(crate) outbox: Arc<diglot_core::Outbox>,
    /// The connection's subscriptions: sub id → (filter, QoS, share group).
    pub(crate) subscriptions: Mutex<std::collections::HashMap<diglot_core::SubId, SubView>>,
    /// The durable queues the connection consumes: sub id → (queue, prefetch).
    pub(crate) consuming: Mutex<std::collections::HashMap<diglot_core::SubId, (String, u16)>>,
}

/// One subscription as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubView {
    pub(crate) filter: String,
    pub(crate) qos: u8,
    /// The MQTT share group (`$share/<group>/...`), if any.
    pub(crate) share: Option<String>,
}

impl ConnEntry {
    /// A JSON view for the admin API.
    pub(crate) fn view(&self) -> ConnView {
        let d = self.details.lock().clone();
        ConnView {
            id: self.id,
            client_id: d.client_id,
            username: d.username,
            protocol: d.protocol,
            transport: self.transport.label(),
            tls: self.tls,
            peer: self.peer.to_string(),
            connected_at_ms: unix_ms(self.connected_at),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
        }
    }
}

/// An open connection as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnView {
    pub(crate) id: ConnId,
    pub(crate) client_id: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) protocol: &'static str,
    pub(crate) transport: &'static str,
    pub(crate) tls: bool,
    pub(crate) peer: String,
    pub(crate) connected_at_ms: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
}

/// A connection that ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClosedView {
    pub(crate) id: ConnId,
    pub(crate) client_id: Option<String>,
    pub(crate) protocol: &'static str,
    pub(crate) transport: &'static str,
    pub(crate) tls: bool,
    pub(crate) peer: String,
    pub(crate) closed_at_ms: u64,
    /// The close reason's stable label (`client_disconnect`, `slow_consumer`, …).
    pub(crate) reason: &'static str,
    /// The reason with its detail.
    pub(crate) detail: String,
}

/// Every open connection, and the last [`RECENT_CLOSES`] that ended.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    open: DashMap<ConnId, Arc<ConnEntry>>,
    recent: Mutex<VecDeque<ClosedView>>,
}

impl Conns {
    /// Adds a connection that just started.
    pub(crate) fn open(
        &self,
        id: ConnId,
        transport: Transport,
        tls: bool,
        peer: SocketAddr,
        protocol: &'static str,
        outbox: Arc<diglot_core::Outbox>,
    ) -> Arc<ConnEntry> {
        let entry = Arc::new(ConnEntry {
            id,
            transport,
            tls,
            peer,
            connected_at: SystemTime::now(),
            details: Mutex::new(Details { client_id: None, username: None, protocol }),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            outbox,
            subscriptions: Mutex::new(std::collections::HashMap::new()),
            consuming: Mutex::new(std::collections::HashMap::new()),
        });
        self.open.insert(id, entry.clone());
        entry
    }

    /// Signals every open connection's driver ([`diglot_core::outbox::signal`]): the server's
    /// shutdown. A connection opened after this looks at the shutdown flag itself.
    pub(crate) fn signal_all(&self, bits: u8) {
        for e in self.open.iter() {
            e.outbox.signal(bits);
        }
    }

    /// Removes a connection that ended, and remembers why.
    pub(crate) fn close(&self, entry: &ConnEntry, reason: &CloseReason) {
        self.open.remove(&entry.id);
        let d = entry.details.lock().clone();
        let closed = ClosedView {
            id: entry.id,
            client_id: d.client_id,
            protocol: d.protocol,
            transport: entry.transport.label(),
            tls: entry.tls,
            peer: entry.peer.to_string(),
            closed_at_ms: unix_ms(SystemTime::now()),
            reason: reason.label(),
            detail: reason.to_string(),
        };
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_CLOSES {
            recent.pop_front();
        }
        recent.push_back(closed);
    }

    /// Open connections, ordered by id (oldest first).
    pub(crate) fn list(&self) -> Vec<Arc<ConnEntry>> {
        let mut all: Vec<_> = self.open.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// The connections whose client id is `client_id`.
    pub(crate) fn by_client_id(&self, client_id: &str) -> Vec<Arc<ConnEntry>> {
        self.open
            .iter()
            .filter(|e| e.details.lock().client_id.as_deref() == Some(client_id))
            .map(|e| e.value().clone())
            .collect()
    }

    /// Closes the connections whose client id is `client_id` ([`CloseReason::Kicked`]);
    /// returns how many there were.
    pub(crate) fn kick(&self, client_id: &str) -> usize {
        let found = self.by_client_id(client_id);
        for e in &found {
            e.outbox.signal(diglot_core::outbox::signal::KICKED);
        }
        found.len()
    }

    /// The most recent closes, newest last.
    pub(crate) fn recent_closes(&self) -> Vec<ClosedView> {
        self.recent.lock().iter().cloned().collect()
    }
}

/// How many distinct topics [`TopTopics`] counts at once.
const TOP_TOPICS_CAP: usize = 1024;

/// Publishes per topic, for "the busiest topics" on the dashboard and in the stats API.
///
/// At most [`TOP_TOPICS_CAP`] topics are counted. When a new topic arrives at a full table,
/// the least-counted topic is replaced by it and the newcomer inherits that count (the
/// Space-Saving algorithm): a topic that is really busy always ends up in the table, and
/// counts are upper bounds. Retained `$SYS` statistics are not published through here.
///
/// The least-counted topic is kept at the top of a min-heap, so a publish costs one hash
/// lookup and O(log cap) steps even when every publish names a new topic (a fleet of devices
/// that each publish to a topic of their own), not a scan of the whole table under its lock.
#[derive(Debug, Default)]
pub(crate) struct TopTopics {
    table: Mutex<SpaceSaving>,
}

/// The table behind [`TopTopics`]: the counters in `slots`, which never move; `index` finds a
/// topic's slot by the topic's hash, which is worked out once per publish (SipHash, keyed
/// per process: clients choose topics) and kept with the counter for its removal; `heap`
/// orders the slots by count, least first, and each slot knows its place in it.
#[derive(Debug, Default)]
struct SpaceSaving {
    hasher: std::hash::RandomState,
    index: hashbrown::HashTable<usize>,
    slots: Vec<Counter>,
    heap: Vec<usize>,
}

#[derive(Debug)]
struct Counter {
    topic: diglot_core::Topic,
    hash: u64,
    count: u64,
    at: usize,
}

impl SpaceSaving {
    fn record(&mut self, topic: &diglot_core::Topic, n: u64) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(topic);
        let Self { index, slots, .. } = self;
        if let Some(&slot) = index.find(hash, |&s| slots[s].hash == hash && slots[s].topic == *topic) {
            slots[slot].count += n;
            self.sift_down(self.slots[slot].at);
            return;
        }
        if slots.len() < TOP_TOPICS_CAP {
            let slot = slots.len();
            slots.push(Counter { topic: topic.clone(), hash, count: n, at: slot });
            index.insert_unique(hash, slot, |&s| slots[s].hash);
            self.heap.push(slot);
            self.sift_up(slot);
            return;
        }
        // The least-counted topic makes room; the newcomer takes over its count.
        let Some(&slot) = self.heap.first() else { return };
        if let Ok(entry) = index.find_entry(slots[slot].hash, |&s| s == slot) {
            entry.remove();
        }
        let counter = &mut slots[slot];
        counter.topic = topic.clone();
        counter.hash = hash;
        counter.count += n;
        index.insert_unique(hash, slot, |&s| slots[s].hash);
        self.sift_down(0);
    }

    /// The slot that counts `topic`, if one does.
    #[cfg(test)]
    fn slot_of(&self, topic: &diglot_core::Topic) -> Option<usize> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(topic);
        self.index.find(hash, |&s| self.slots[s].topic == *topic).copied()
    }

    fn count_at(&self, at: usize) -> u64 {
        self.slots[self.heap[at]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a]].at = a;
        self.slots[self.heap[b]].at = b;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if left < self.heap.len() && self.count_at(left) < self.count_at(least) {
                least = left;
            }
            if right < self.heap.len() && self.count_at(right) < self.count_at(least) {
                least = right;
            }
            if least == at {
                return;
            }
            self.swap(at, least);
            at = least;
        }
    }
}

impl TopTopics {
    /// Counts one publish to `topic`.
    pub(crate) fn record(&self, topic: &diglot_core::Topic) {
        self.record_n(topic, 1);
    }

    /// Counts `n` publishes to `topic`.
    pub(crate) fn record_n(&self, topic: &diglot_core::Topic, n: u64) {
        self.table.lock().record(topic, n);
    }

    /// Counts each `(topic, n)` of `runs` under one lock, and empties it.
    pub(crate) fn record_all(&self, runs: &mut Vec<(diglot_core::Topic, u64)>) {
        if runs.is_empty() {
            return;
        }
        let mut table = self.table.lock();
        for (topic, n) in runs.drain(..) {
            table.record(&topic, n);
        }
    }

    /// The `n` busiest topics, busiest first.
    pub(crate) fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            self.table.lock().slots.iter().map(|c| (c.topic.as_str().to_string(), c.count)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// How many runs [`TopicCounts`] holds before it counts them into the table.
pub(crate) const TOPIC_COUNTS_MAX: usize = 64;

/// A connection's publishes of one read, counted into [`TopTopics`] together: the table is one
/// lock that every publishing connection takes, so it is taken once for up to
/// [`TOPIC_COUNTS_MAX`] runs of publishes to one topic, not once per publish. That holds for a
/// publisher that sends many messages to one topic and for a fleet of devices whose every
/// message names a topic of its own.
pub(crate) struct TopicCounts(Vec<(diglot_core::Topic, u64)>);

impl TopicCounts {
    /// Counts into `runs`, an empty vector (the driver lends out a spare one).
    pub(crate) fn with(runs: Vec<(diglot_core::Topic, u64)>) -> TopicCounts {
        TopicCounts(runs)
    }

    /// One more publish to `topic`.
    pub(crate) fn count(&mut self, top: &TopTopics, topic: &diglot_core::Topic) {
        if let Some((t, n)) = self.0.last_mut() {
            if t == topic {
                *n += 1;
                return;
            }
        }
        if self.0.len() >= TOPIC_COUNTS_MAX {
            top.record_all(&mut self.0);
        }
        self.0.push((topic.clone(), 1));
    }

    /// Counts everything so far into the table, and returns the emptied vector.
    pub(crate) fn flush(mut self, top: &TopTopics) -> Vec<(diglot_core::Topic, u64)> {
        top.record_all(&mut self.0);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_topics_survive_a_full_table() {
        let t = TopTopics::default();
        let hot = diglot_core::Topic::new("hot").unwrap();
        for i in 0..(TOP_TOPICS_CAP * 3) {
            t.record(&diglot_core::Topic::new(&format!("cold/{i}")).unwrap());
            t.record(&hot);
            t.record(&hot);
        }
        let top = t.top(3);
        assert_eq!(top[0].0, "hot");
        assert!(top[0].1 >= (TOP_TOPICS_CAP * 6) as u64);
        assert_eq!(t.top(usize::MAX).len(), TOP_TOPICS_CAP);
    }

    /// The Space-Saving guarantees, on a skewed stream of many more topics than the table
    /// holds (a few hot topics among a fleet's per-device ones): the counts add up to every
    /// publish, no topic's count is below its true count, every topic with more than
    /// 1/cap of the publishes is in the table, and the heap keeps the least count on top.
    #[test]
    fn the_table_keeps_the_space_saving_guarantees_on_a_fleet_of_topics() {
        let t = TopTopics::default();
        let topics: Vec<_> =
            (0..5_000).map(|i| diglot_core::Topic::new(&format!("sensors/{i}/temp")).unwrap()).collect();
        let mut truth = vec![0u64; topics.len()];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut total = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A quarter of the publishes go to 4 hot topics, the rest anywhere.
            let i = if x.is_multiple_of(4) { (x >> 8) as usize % 4 } else { (x >> 8) as usize % topics.len() };
            let n = 1 + (x >> 40) % 3;
            t.record_n(&topics[i], n);
            truth[i] += n;
            total += n;
        }
        let table = t.table.lock();
        assert_eq!(table.slots.len(), TOP_TOPICS_CAP);
        assert_eq!(table.index.len(), TOP_TOPICS_CAP);
        assert_eq!(table.heap.len(), TOP_TOPICS_CAP);
        assert_eq!(table.slots.iter().map(|c| c.count).sum::<u64>(), total);
        for (at, &slot) in table.heap.iter().enumerate() {
            assert_eq!(table.slots[slot].at, at);
            assert_eq!(table.slot_of(&table.slots[slot].topic), Some(slot));
            if at > 0 {
                assert!(table.count_at((at - 1) / 2) <= table.count_at(at), "heap order at {at}");
            }
        }
        for (i, topic) in topics.iter().enumerate() {
            match table.slot_of(topic) {
                Some(slot) => assert!(table.slots[slot].count >= truth[i], "{topic:?} under-counted"),
                None => assert!(truth[i] <= total / TOP_TOPICS_CAP as u64, "{topic:?} ({}) missing", truth[i]),
            }
        }
        drop(table);
        let top: Vec<String> = t.top(4).into_iter().map(|(name, _)| name).collect();
        for i in 0..4 {
            assert!(top.contains(&format!("sensors/{i}/temp")), "{top:?}");
        }
    }

    #[test]
    fn publishes_are_counted_when_flushed_or_when_the_runs_fill_up() {
        let t = TopTopics::default();
        let (a, b) = (diglot_core::Topic::new("a").unwrap(), diglot_core::Topic::new("b").unwrap());
        let mut counts = TopicCounts::with(Vec::new());
        counts.count(&t, &a);
        counts.count(&t, &a);
        counts.count(&t, &b);
        counts.count(&t, &a);
        assert!(t.top(9).is_empty(), "counted at the flush");
        let _ = counts.flush(&t);
        assert_eq!(t.top(9), [("a".to_string(), 3), ("b".to_string(), 1)]);

        // A fleet: every publish to another topic. The runs are counted as they fill up, and
        // the rest at the flush.
        let fleet: Vec<_> =
            (0..TOPIC_COUNTS_MAX + 5).map(|i| diglot_core::Topic::new(&format!("d/{i}")).unwrap()).collect();
        let mut counts = TopicCounts::with(Vec::new());
        for topic in &fleet {
            counts.count(&t, topic);
        }
        assert_eq!(t.top(usize::MAX).len(), 2 + TOPIC_COUNTS_MAX, "the full runs are counted");
        let _ = counts.flush(&t);
        assert_eq!(t.top(usize::MAX).len(), 2 + fleet.len());
        assert_eq!(t.top(usize::MAX).iter().map(|(_, n)| n).sum::<u64>(), 4 + fleet.len() as u64);
    }
}
