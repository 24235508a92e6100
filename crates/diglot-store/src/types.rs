//! The small public value types of the store: ids, entries, queue and recovery summaries,
//! and drop counters. No behaviour lives here beyond formatting.

use std::fmt;
use std::time::Duration;

use crate::codec::StoredMessage;

/// A durable queue's id, stable across restarts. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// The position of an entry in its queue: delivery order. Seqs start at 1, only grow, and are
/// never reused, not even after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One queued message as [`Store::read`](crate::Store::read) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the queue.
    pub seq: Seq,
    /// How many times it has been delivered (see
    /// [`Store::record_delivery`](crate::Store::record_delivery)); 0 if never.
    pub delivery_count: u32,
    /// The store's id of the message, shared by every queue that holds it.
    pub msg_id: u64,
    /// The message.
    pub msg: StoredMessage,
}

/// A summary of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: QueueId,
    /// Entries waiting in it.
    pub depth: u64,
    /// Bytes (encoded message sizes) charged to it.
    pub bytes: u64,
}

/// What [`Store::open`](crate::Store::open) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Durable queues.
    pub queues: usize,
    /// Distinct stored messages (a fanned-out message counts once).
    pub messages: u64,
    /// Queue entries (a fanned-out message counts once per queue).
    pub entries: u64,
    /// Bytes of the distinct stored messages.
    pub bytes: u64,
    /// Entries that expired while the broker was down, deleted during recovery.
    pub expired: u64,
    /// How long opening and recovering took.
    pub took: Duration,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store recovered {} queues, {} messages ({} entries, {} bytes), {} expired, in {} ms",
            self.queues,
            self.messages,
            self.entries,
            self.bytes,
            self.expired,
            self.took.as_millis()
        )
    }
}

/// Counters since the store was opened. Every drop is counted under its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Entries deleted to make room under `overflow = "drop-oldest"`.
    pub dropped_overflow: u64,
    /// Appends refused because a queue was full under `overflow = "reject"`.
    pub rejected_full: u64,
    /// Entries deleted because their TTL or message expiry passed (including at recovery).
    pub expired: u64,
    /// Entries moved to a dead-letter queue.
    pub dead_lettered: u64,
    /// Group or single syncs done by the writer.
    pub syncs: u64,
}
