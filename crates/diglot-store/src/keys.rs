//! The store's key layouts and its small fixed-size records. **Format version 1.**
//!
//! All integers are big-endian, so that byte order is numeric order and an ordered scan of
//! `entries` is delivery order. A change to anything below bumps [`FORMAT_VERSION`] and comes
//! with a test that opens the old layout.
//!
//! | partition  | key                                  | value                                   |
//! |------------|--------------------------------------|-----------------------------------------|
//! | `meta`     | `format-version`                     | `u32` format version (= 1)              |
//! | `meta`     | `engine`                             | `fjall` or `sled` (UTF-8)               |
//! | `meta`     | `next-msg-id`                        | `u64` next message id to allocate       |
//! | `meta`     | `next-queue-id`                      | `u64` next queue id to allocate         |
//! | `messages` | `u64` message id                     | the message ([`crate::codec`])          |
//! | `refs`     | `u64` message id                     | `u32` refcount, `u32` encoded size      |
//! | `entries`  | `u64` queue id, `u64` seq            | [`EntryRecord`]: `u64` message id, `u32` delivery count, `u32` size, `u64` expiry (unix ms, 0 = never) |
//! | `queues`   | queue name (UTF-8)                   | [`QueueRecord`]: `u64` id, `u64` next seq |
//! | `sessions` | client id (UTF-8)                    | opaque bytes owned by the protocol crates |
//! | `retained` | topic (UTF-8)                        | the message ([`crate::codec`])          |
//!
//! A message fanned out to several queues is stored once in `messages`; `refs` counts the
//! entries that point at it, and the message and its ref go when the count reaches zero. An
//! entry carries its message's size and its expiry (the earlier of the message's own expiry
//! and the queue's TTL) beside the message id and the delivery count, so that recovery,
//! limits and expiry never have to read message bodies.
//!
//! Seqs start at 1 and only grow: the queue record keeps the next seq even when the queue is
//! empty, so a seq is never reused across restarts.

use crate::types::{QueueId, Seq};

/// The store format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// `meta` key of the format version.
pub const META_FORMAT_VERSION: &[u8] = b"format-version";
/// `meta` key of the engine name.
pub const META_ENGINE: &[u8] = b"engine";
/// `meta` key of the next message id.
pub const META_NEXT_MSG_ID: &[u8] = b"next-msg-id";
/// `meta` key of the next queue id.
pub const META_NEXT_QUEUE_ID: &[u8] = b"next-queue-id";

/// A record that does not have the shape its layout says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} has {len} bytes, expected {expected}")]
pub struct BadRecord {
    /// What was being decoded.
    pub what: &'static str,
    /// Its length.
    pub len: usize,
    /// The length the layout requires.
    pub expected: usize,
}

fn fixed<const N: usize>(what: &'static str, b: &[u8]) -> Result<[u8; N], BadRecord> {
    b.try_into().map_err(|_| BadRecord { what, len: b.len(), expected: N })
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

/// Decodes a `u64` value (a meta counter).
pub fn decode_u64(what: &'static str, b: &[u8]) -> Result<u64, BadRecord> {
    fixed::<8>(what, b).map(u64::from_be_bytes)
}

/// Decodes a `u32` value (the format version).
pub fn decode_u32(what: &'static str, b: &[u8]) -> Result<u32, BadRecord> {
    fixed::<4>(what, b).map(u32::from_be_bytes)
}

/// The key of a message or its ref.
pub fn msg_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The key prefix of every entry of `queue`.
pub fn queue_prefix(queue: QueueId) -> [u8; 8] {
    queue.0.to_be_bytes()
}

/// The key of the entry `seq` of `queue`.
pub fn entry_key(queue: QueueId, seq: Seq) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.0.to_be_bytes());
    k
}

/// The queue and seq of an entry key.
pub fn parse_entry_key(k: &[u8]) -> Result<(QueueId, Seq), BadRecord> {
    let a = fixed::<16>("entry key", k)?;
    Ok((QueueId(be64(&a[..8])), Seq(be64(&a[8..]))))
}

/// The value of an `entries` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRecord {
    /// The message it points at.
    pub msg_id: u64,
    /// How many times it has been delivered.
    pub delivery_count: u32,
    /// The encoded size of the message, charged to the queue's byte limit.
    pub size: u32,
    /// When the entry expires, unix ms; 0 for never.
    pub expires_ms: u64,
}

impl EntryRecord {
    /// The encoded value.
    pub fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.msg_id.to_be_bytes());
        v[8..12].copy_from_slice(&self.delivery_count.to_be_bytes());
        v[12..16].copy_from_slice(&self.size.to_be_bytes());
        v[16..].copy_from_slice(&self.expires_ms.to_be_bytes());
        v
    }

    /// Decodes a value written by [`EntryRecord::encode`].
    pub fn decode(b: &[u8]) -> Result<EntryRecord, BadRecord> {
        let a = fixed::<24>("entry record", b)?;
        Ok(EntryRecord {
            msg_id: be64(&a[..8]),
            delivery_count: be32(&a[8..12]),
            size: be32(&a[12..16]),
            expires_ms: be64(&a[16..]),
        })
    }

    /// Whether the entry has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && self.expires_ms <= now_ms
    }
}

/// The value of a `refs` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefRecord {
    /// How many entries point at the message.
    pub count: u32,
    /// The encoded size of the message.
    pub size: u32,
}

impl RefRecord {
    /// The encoded value.
    pub fn encode(&self) -> [u8; 8] {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&self.count.to_be_bytes());
        v[4..].copy_from_slice(&self.size.to_be_bytes());
        v
    }

    /// Decodes a value written by [`RefRecord::encode`].
    pub fn decode(b: &[u8]) -> Result<RefRecord, BadRecord> {
        let a = fixed::<8>("ref record", b)?;
        Ok(RefRecord { count: be32(&a[..4]), size: be32(&a[4..]) })
    }
}

/// The value of a `queues` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRecord {
    /// The queue's id.
    pub id: QueueId,
    /// The seq the next entry gets.
    pub next_seq: Seq,
}

impl QueueRecord {
    /// The encoded value.
    pub fn encode(&self) -> [u8; 16] {
        entry_key(self.id, self.next_seq)
    }

    /// Decodes a value written by [`QueueRecord::encode`].
    pub fn decode(b: &[u8]) -> Result<QueueRecord, BadRecord> {
        let a = fixed::<16>("queue record", b)?;
        Ok(QueueRecord { id: QueueId(be64(&a[..8])), next_seq: Seq(be64(&a[8..])) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_by_queue_then_seq() {
        let mut keys = [
            entry_key(QueueId(2), Seq(1)),
            entry_key(QueueId(1), Seq(256)),
            entry_key(QueueId(1), Seq(2)),
            entry_key(QueueId(1), Seq(u64::MAX)),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_entry_key(k).expect("valid")).collect();
        assert_eq!(
            parsed,
            vec![(QueueId(1), Seq(2)), (QueueId(1), Seq(256)), (QueueId(1), Seq(u64::MAX)), (QueueId(2), Seq(1)),]
        );
        assert!(parse_entry_key(&[0; 15]).is_err());
    }

    #[test]
    fn records_round_trip_and_check_lengths() {
        let e = EntryRecord { msg_id: 7, delivery_count: 3, size: 99, expires_ms: 5 };
        assert_eq!(EntryRecord::decode(&e.encode()), Ok(e));
        assert!(EntryRecord::decode(&e.encode()[..23]).is_err());
        let r = RefRecord { count: 2, size: 10 };
        assert_eq!(RefRecord::decode(&r.encode()), Ok(r));
        assert!(RefRecord::decode(&[]).is_err());
        let q = QueueRecord { id: QueueId(4), next_seq: Seq(9) };
        assert_eq!(QueueRecord::decode(&q.encode()), Ok(q));
        assert!(QueueRecord::decode(&[1; 17]).is_err());
        assert_eq!(decode_u32("v", &1u32.to_be_bytes()), Ok(1));
        assert!(decode_u64("v", &[1, 2]).is_err());
    }
}
