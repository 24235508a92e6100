//! [`Store`]: the cheap, cloneable handle the broker uses for durable queues, sessions and
//! retained messages.
//!
//! Writes (`append`, `ack`, `record_delivery`, `dead_letter`, `drop_queue`, the session and
//! retained puts and deletes) are `async`: they go to the writer thread (see
//! [`crate::writer`]) and resolve once the write is durable under the configured
//! [`Durability`]. Reads (`read`, `get_session`, `sessions`, `retained`) are synchronous
//! engine reads on the caller's thread: they are short (memtable or block-cache hits in the
//! common case) but may touch the disk, so call them from `spawn_blocking` or a blocking
//! context when latency matters. `queue` is synchronous too: a lookup in memory, plus one
//! small unsynced engine write the first time a name is seen.
//!
//! The key layouts are in [`crate::keys`]; what each engine promises is in
//! [`crate::engine`]'s submodules.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};

use crate::codec::StoredMessage;
use crate::config::{Durability, StoreConfig};
use crate::engine::{self, Partition};
use crate::error::{AppendError, StoreError};
use crate::keys::{self, EntryRecord};
use crate::ops::Shared;
use crate::recovery;
use crate::types::{Entry, QueueId, QueueInfo, Recovery, Seq, StoreStats};
use crate::writer::{self, Cmd, Job, Reply};

/// Jobs that may wait for the writer before callers are held back.
const CHANNEL_CAPACITY: usize = 8192;
/// Records read per engine scan by the synchronous readers.
const READ_PAGE: usize = 512;

/// The durable store. Clones share one engine and one writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    writer: Mutex<Option<JoinHandle<()>>>,
    config: StoreConfig,
}

impl Drop for Inner {
    /// The last handle is gone without [`Store::close`]: stop the writer, which syncs first.
    /// This blocks for that sync.
    fn drop(&mut self) {
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = self.tx.send(Job { cmd: Cmd::Close { reply: None }, permit: None });
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.config.path)
            .field("engine", &self.inner.config.engine)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store described by `config`, recovers its queues, expires what
    /// expired while it was closed, and starts the writer thread. Blocks on disk I/O.
    ///
    /// Refuses, without changing anything: a directory holding the other engine's files, a
    /// non-empty directory that is not a store, a newer or unknown format version, and a
    /// malformed record.
    pub fn open(config: &StoreConfig) -> Result<(Store, Recovery), StoreError> {
        let (shared, recovery) = recovery::open(config)?;
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel();
        let durability = config.durability;
        let group = Duration::from_millis(config.group_commit_ms);
        let for_writer = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("diglot-store-writer".into())
            .spawn(move || writer::run(for_writer, rx, durability, group))
            .map_err(engine::EngineError::from)?;
        let inner = Inner {
            shared,
            tx,
            permits: Arc::new(Semaphore::new(CHANNEL_CAPACITY)),
            writer: Mutex::new(Some(handle)),
            config: config.clone(),
        };
        tracing::info!(path = %config.path.display(), engine = %config.engine, "{recovery}");
        Ok((Store { inner: Arc::new(inner) }, recovery))
    }

    /// The sequence the store takes message keys from (a stored message is read back with
    /// its key as its id). A broker takes the ids of the messages it routes from the same
    /// sequence, so that no two messages have one id: live or read back, within a run and,
    /// for stored ones, across restarts.
    pub fn msg_ids(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.inner.shared.msg_ids)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Sends a job to the writer and waits for its durable reply.
    async fn call<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StoreError> {
        self.submit(make).await?.await
    }

    /// Sends a job to the writer; the returned future waits for its durable reply. Jobs are
    /// applied in the order they were submitted.
    async fn submit<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Cmd,
    ) -> Result<impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static, StoreError>
    where
        T: Send + 'static,
    {
        let permit = self.inner.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        let (tx, rx) = oneshot::channel();
        let job = Job { cmd: make(tx), permit: Some(permit) };
        self.inner.tx.send(job).map_err(|_| StoreError::Closed)?;
        Ok(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    /// The id of queue `name`, creating the queue if it does not exist. Names are any
    /// non-empty UTF-8; dead-letter queues are named `$dlq/<name>`.
    pub fn queue(&self, name: &str) -> Result<QueueId, StoreError> {
        if name.is_empty() {
            return Err(StoreError::EmptyName);
        }
        if let Some(id) = self.inner.shared.lock().by_name.get(name) {
            return Ok(*id);
        }
        if self.inner.permits.is_closed() {
            return Err(StoreError::Closed);
        }
        self.inner.shared.run(|sh, st, w| Ok(sh.ensure_queue(st, w, name)))
    }

    /// The id of queue `name`, if it exists.
    pub fn queue_id(&self, name: &str) -> Option<QueueId> {
        self.inner.shared.lock().by_name.get(name).copied()
    }

    /// Deletes queue `name` with all its entries (their messages go once no other queue holds
    /// them). Returns whether the queue existed.
    pub async fn drop_queue(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.call(|reply| Cmd::DropQueue { name, reply }).await
    }

    /// Every queue, sorted by name.
    pub fn queues(&self) -> Vec<QueueInfo> {
        let st = self.inner.shared.lock();
        let mut out: Vec<QueueInfo> = st
            .queues
            .iter()
            .map(|(id, q)| QueueInfo { name: q.name.clone(), id: *id, depth: q.depth, bytes: q.bytes })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One queue's summary.
    pub fn queue_info(&self, queue: QueueId) -> Option<QueueInfo> {
        let st = self.inner.shared.lock();
        st.queues.get(&queue).map(|q| QueueInfo { name: q.name.clone(), id: queue, depth: q.depth, bytes: q.bytes })
    }

    /// Stores `msg` once and appends an entry for it to each of `queues`, in one atomic write;
    /// resolves when that write is durable under the policy.
    ///
    /// The outer error means nothing was written. Otherwise the result has one item per
    /// queue, in order: the entry's seq, or why that queue did not take the message
    /// (`QueueFull` under `overflow = "reject"`, or when the message alone is larger than
    /// the queue's byte limit; `UnknownQueue`). Under `drop-oldest` the oldest entries are
    /// deleted to make room, counted in [`StoreStats::dropped_overflow`]. A queue named twice
    /// gets one entry. If no queue takes the message, nothing is stored.
    ///
    /// Cancel safety: dropping the future after the job was sent does not cancel the write.
    pub async fn append(
        &self,
        msg: &StoredMessage,
        queues: &[QueueId],
    ) -> Result<Vec<Result<Seq, AppendError>>, StoreError> {
        let encoded = msg.encode().map_err(StoreError::Encode)?;
        let expires_ms = msg.expires_ms;
        let queues = queues.to_vec();
        self.call(|reply| Cmd::Append { encoded, expires_ms, queues, reply }).await
    }

    /// Like [`Store::append`], but returns once the write is queued to the writer: the returned
    /// future resolves when it is durable. Appends submitted one after another get increasing
    /// seqs in that order, so a caller can pipeline writes and still keep their order.
    pub async fn append_submit(
        &self,
        msg: &StoredMessage,
        queues: &[QueueId],
    ) -> Result<
        impl std::future::Future<Output = Result<Vec<Result<Seq, AppendError>>, StoreError>> + Send + 'static,
        StoreError,
    > {
        let encoded = msg.encode().map_err(StoreError::Encode)?;
        let expires_ms = msg.expires_ms;
        let queues = queues.to_vec();
        self.submit(move |reply| Cmd::Append { encoded, expires_ms, queues, reply }).await
    }

    /// Deletes an acknowledged entry, and its message once no queue holds it.
    /// `NoSuchEntry` if it is already gone (acked, expired, dropped or dead-lettered).
    pub async fn ack(&self, queue: QueueId, seq: Seq) -> Result<(), StoreError> {
        self.call(|reply| Cmd::Ack { queue, seq, reply }).await
    }

    /// Like [`Store::ack`], but returns as soon as the writer has the deletion, without waiting
    /// for it to be synced: acknowledgements then cost no sync round trip each. Jobs stay in
    /// submission order. What a crash can do is redeliver an entry whose deletion had not been
    /// synced yet (at least once, never lost); a failure is logged by the writer and fails the
    /// store's later writes.
    pub async fn ack_unsynced(&self, queue: QueueId, seq: Seq) -> Result<(), StoreError> {
        self.submit(|reply| Cmd::Ack { queue, seq, reply }).await.map(drop)
    }

    /// Increments and persists the delivery count of an entry, returning the new count (1
    /// for a first delivery), so that a restart still knows how often it was delivered. Call
    /// it before each delivery; when [`Store::exceeds_redeliveries`] says so, call
    /// [`Store::dead_letter`] instead of delivering.
    pub async fn record_delivery(&self, queue: QueueId, seq: Seq) -> Result<u32, StoreError> {
        self.call(|reply| Cmd::RecordDelivery { queue, seq, undo: false, reply }).await
    }

    /// Like [`Store::record_delivery`], but returns as soon as the writer has the job, without
    /// waiting for its sync (nor for the new count). A broker that hands entries to consumers
    /// at its drain rate cannot wait a group commit per delivery: one task awaiting each record
    /// in turn fell behind by more the longer a drain ran, and its backlog competed with the
    /// acknowledgements for the writer's channel. What a crash can cost is an under-count by
    /// one for entries delivered since the last sync; errors (an entry acknowledged before its
    /// record arrived) are dropped with the reply.
    pub async fn record_delivery_unsynced(&self, queue: QueueId, seq: Seq) -> Result<(), StoreError> {
        self.submit(|reply| Cmd::RecordDelivery { queue, seq, undo: false, reply }).await.map(drop)
    }

    /// Takes back one delivery recorded by [`Store::record_delivery`] or
    /// [`Store::record_delivery_unsynced`] for an entry that never reached its consumer (its
    /// connection ended first), down to 0. Like [`Store::record_delivery_unsynced`], it returns
    /// once the writer has the job; submitted after the record it takes back, it is applied
    /// after it (the writer applies jobs in order).
    pub async fn unrecord_delivery_unsynced(&self, queue: QueueId, seq: Seq) -> Result<(), StoreError> {
        self.submit(|reply| Cmd::RecordDelivery { queue, seq, undo: true, reply }).await.map(drop)
    }

    /// Moves an entry to the queue `$dlq/<queue name>` (created if needed), with the same
    /// message (stored once, refcount unchanged), delivery count and expiry. Returns the
    /// dead-letter queue and the entry's new seq there. Counted in
    /// [`StoreStats::dead_lettered`] and logged. A full dead-letter queue drops its oldest
    /// entries, whatever the overflow policy.
    pub async fn dead_letter(&self, queue: QueueId, seq: Seq) -> Result<(QueueId, Seq), StoreError> {
        self.call(|reply| Cmd::DeadLetter { queue, seq, reply }).await
    }

    /// Up to `max` entries of `queue` with seq greater than `after` (from the start when
    /// `None`), in seq order. Entries whose TTL or message expiry has passed are skipped and
    /// handed to the writer for deletion (counted in [`StoreStats::expired`]), except those
    /// that went out before in a queue that keeps them ([`QueueLimits::keeps_started_entries`]).
    ///
    /// Blocking: see the module documentation.
    pub fn read(&self, queue: QueueId, after: Option<Seq>, max: usize) -> Result<Vec<Entry>, StoreError> {
        let sh = &self.inner.shared;
        let (head, next_seq, keeps_started) = {
            let st = sh.lock();
            let qs = st.queues.get(&queue).ok_or(StoreError::UnknownQueue(queue))?;
            (qs.head, qs.next_seq, sh.limits.keeps_started_entries(&qs.name))
        };
        let start = after.map_or(0, |s| s.0.saturating_add(1)).max(head);
        let prefix = keys::queue_prefix(queue);
        let now = writer::now_ms();
        let mut out = Vec::new();
        let mut from = start;
        let mut first_seen = None;
        let mut exhausted = false;
        while out.len() < max {
            let want = (max - out.len()).min(READ_PAGE);
            let from_key = keys::entry_key(queue, Seq(from));
            let rows = sh.engine.scan(Partition::Entries, &prefix, Some(&from_key), want)?;
            for (k, v) in &rows {
                let (_, seq) = keys::parse_entry_key(k)?;
                first_seen.get_or_insert(seq.0);
                from = seq.0.saturating_add(1);
                let rec = EntryRecord::decode(v).map_err(|e| StoreError::corrupt("entries", k, e))?;
                if rec.is_expired(now) && !(keeps_started && rec.delivery_count > 0) {
                    self.hint_expired(queue, seq);
                    continue;
                }
                if let Some(msg) = self.load_message(queue, seq, rec.msg_id)? {
                    let delivery_count = rec.delivery_count;
                    out.push(Entry { seq, delivery_count, msg_id: rec.msg_id, msg });
                }
            }
            if rows.len() < want {
                exhausted = true;
                break;
            }
        }
        // A scan that started at the head learned where the live entries begin.
        if start == head && (first_seen.is_some() || exhausted) {
            let new_head = first_seen.unwrap_or(next_seq);
            if let Some(qs) = sh.lock().queues.get_mut(&queue) {
                qs.head = qs.head.max(new_head);
            }
        }
        Ok(out)
    }

    /// The message an entry points at; `None` if the entry vanished meanwhile (acked).
    fn load_message(&self, queue: QueueId, seq: Seq, id: u64) -> Result<Option<StoredMessage>, StoreError> {
        let engine = &self.inner.shared.engine;
        let key = keys::msg_key(id);
        match engine.get(Partition::Messages, &key)? {
            Some(raw) => StoredMessage::decode(&raw).map(Some).map_err(|e| StoreError::corrupt("messages", &key, e)),
            None if engine.get(Partition::Entries, &keys::entry_key(queue, seq))?.is_none() => Ok(None),
            None => Err(StoreError::corrupt("messages", &key, format!("missing for entry {queue}/{seq}"))),
        }
    }

    /// Asks the writer to delete an expired entry, if the channel has room; otherwise a later
    /// read or the next recovery will.
    fn hint_expired(&self, queue: QueueId, seq: Seq) {
        if let Ok(permit) = self.inner.permits.clone().try_acquire_owned() {
            let _ = self.inner.tx.send(Job { cmd: Cmd::Expire { queue, seq }, permit: Some(permit) });
        }
    }

    /// Saves a client's session state (opaque bytes encoded by the protocol crate).
    pub async fn put_session(&self, client_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.put(Partition::Sessions, client_id.as_bytes(), Some(state.to_vec())).await
    }

    /// A client's saved session state. Blocking: see the module documentation.
    pub fn get_session(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.shared.engine.get(Partition::Sessions, client_id.as_bytes())?)
    }

    /// Deletes a client's session state (a no-op if there is none).
    pub async fn delete_session(&self, client_id: &str) -> Result<(), StoreError> {
        self.put(Partition::Sessions, client_id.as_bytes(), None).await
    }

    /// Every saved session, by client id. Blocking: see the module documentation.
    pub fn sessions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan_all(Partition::Sessions, |k, v| {
            let id =
                std::str::from_utf8(k).map_err(|_| StoreError::corrupt("sessions", k, "client id is not UTF-8"))?;
            Ok((id.to_owned(), v))
        })
    }

    /// Saves the retained message of `topic`, replacing any earlier one.
    pub async fn put_retained(&self, topic: &str, msg: &StoredMessage) -> Result<(), StoreError> {
        let encoded = msg.encode().map_err(StoreError::Encode)?;
        self.put(Partition::Retained, topic.as_bytes(), Some(encoded)).await
    }

    /// Deletes the retained message of `topic` (a no-op if there is none).
    pub async fn delete_retained(&self, topic: &str) -> Result<(), StoreError> {
        self.put(Partition::Retained, topic.as_bytes(), None).await
    }

    /// Every retained message, by topic. Blocking: see the module documentation.
    pub fn retained(&self) -> Result<Vec<(String, StoredMessage)>, StoreError> {
        self.scan_all(Partition::Retained, |k, v| {
            let topic = std::str::from_utf8(k).map_err(|_| StoreError::corrupt("retained", k, "topic is not UTF-8"))?;
            let msg = StoredMessage::decode(&v).map_err(|e| StoreError::corrupt("retained", k, e))?;
            Ok((topic.to_owned(), msg))
        })
    }

    async fn put(&self, part: Partition, key: &[u8], value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let key = key.to_vec();
        self.call(|reply| Cmd::Put { part, key, value, reply }).await
    }

    fn scan_all<T>(
        &self,
        part: Partition,
        mut f: impl FnMut(&[u8], Vec<u8>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let engine = &self.inner.shared.engine;
        let mut out = Vec::new();
        let mut start: Option<Vec<u8>> = None;
        loop {
            let rows = engine.scan(part, &[], start.as_deref(), READ_PAGE)?;
            let full = rows.len() == READ_PAGE;
            for (k, v) in rows {
                out.push(f(&k, v)?);
                start = Some(engine::successor(&k));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Whether an entry whose delivery count (as returned by [`Store::record_delivery`]) is
    /// `count` has used up its redeliveries: the first delivery plus
    /// [`StoreConfig::max_redeliveries`] redeliveries are allowed.
    pub fn exceeds_redeliveries(&self, count: u32) -> bool {
        count > self.inner.config.max_redeliveries.saturating_add(1)
    }

    /// Calls `observe` with the duration of every successful sync from now on (a flush
    /// latency histogram). Only the first observer set is kept; returns whether this one was.
    pub fn observe_syncs(&self, observe: impl Fn(std::time::Duration) + Send + Sync + 'static) -> bool {
        self.inner.shared.counters.sync_observer.set(crate::ops::SyncObserver(Box::new(observe))).is_ok()
    }

    /// Why the store refuses writes, once a sync has failed (it then stays failed until it is
    /// reopened); `None` while it is healthy.
    pub fn failure(&self) -> Option<String> {
        self.inner.shared.failed.get().cloned()
    }

    /// Drop and sync counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        self.inner.shared.counters.snapshot()
    }

    /// Whether writes are acknowledged only after a sync (`group` or `every`).
    pub fn syncs_writes(&self) -> bool {
        self.inner.config.durability != Durability::None
    }

    /// Stops the writer after it has synced everything (with `fsync` on fjall, whatever the
    /// policy), and waits for it. Later calls on clones of this handle fail with `Closed`;
    /// the engine's files are released when the last clone is dropped. Blocks briefly while
    /// the writer thread exits.
    pub async fn close(self) -> Result<(), StoreError> {
        self.inner.permits.close();
        let (tx, rx) = oneshot::channel();
        let sent = self.inner.tx.send(Job { cmd: Cmd::Close { reply: Some(tx) }, permit: None });
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let handle = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_a_cheap_shareable_handle() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Store>();
    }
}
