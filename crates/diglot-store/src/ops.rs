//! The store's mutations: each one builds a single atomic engine [`Batch`] plus the matching
//! change to the in-memory queue state, and nothing changes in memory unless the batch was
//! written.
//!
//! [`Shared::run`] is the only way to mutate: it takes the state lock, lets an operation
//! plan its writes in a [`Work`], writes the batch, and then commits the in-memory changes.
//! The writer thread runs every operation through it; so do recovery (expiring entries) and
//! queue creation. It does not sync: durability is the writer's job.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::config::{Overflow, QueueLimits};
use crate::engine::{Batch, Engine, Partition};
use crate::error::{AppendError, StoreError};
use crate::keys::{self, EntryRecord, QueueRecord, RefRecord};
use crate::types::{QueueId, Seq, StoreStats};

/// How many entries a scan inside an operation reads at a time.
const SCAN_PAGE: usize = 256;

/// One queue as the store tracks it in memory.
#[derive(Debug, Clone)]
pub(crate) struct QueueState {
    pub name: String,
    pub next_seq: u64,
    pub depth: u64,
    pub bytes: u64,
    /// A lower bound of the live seqs: every entry below it is gone. Scans start here so that
    /// they do not walk the tombstones of acknowledged entries.
    pub head: u64,
}

/// The in-memory index over the store, guarded by [`Shared::state`].
#[derive(Debug, Default)]
pub(crate) struct State {
    pub by_name: HashMap<String, QueueId>,
    pub queues: HashMap<QueueId, QueueState>,
    pub next_queue_id: u64,
    pub next_msg_id: u64,
}

/// Drop and sync counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub dropped_overflow: AtomicU64,
    pub rejected_full: AtomicU64,
    pub expired: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub syncs: AtomicU64,
    /// Entries deleted since the last compaction started.
    pub deletes_since_compaction: AtomicU64,
    /// Whether a compaction is running.
    pub compacting: std::sync::atomic::AtomicBool,
    /// Whether the next idle moment should compact once more.
    pub recompact_when_idle: std::sync::atomic::AtomicBool,
    /// Compactions completed.
    pub compactions: AtomicU64,
    /// The running compaction's thread, joined before the store closes (it holds the engine).
    pub compactor: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Told how long each successful sync took (metrics), once set.
    pub sync_observer: OnceLock<SyncObserver>,
}

/// Called with the duration of every successful sync (see [`crate::Store::observe_syncs`]).
pub(crate) struct SyncObserver(pub Box<dyn Fn(std::time::Duration) + Send + Sync>);

impl std::fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncObserver")
    }
}

impl Counters {
    pub fn snapshot(&self) -> StoreStats {
        StoreStats {
            dropped_overflow: self.dropped_overflow.load(Ordering::Relaxed),
            rejected_full: self.rejected_full.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }

    fn add(&self, d: &StoreStats) {
        self.dropped_overflow.fetch_add(d.dropped_overflow, Ordering::Relaxed);
        self.rejected_full.fetch_add(d.rejected_full, Ordering::Relaxed);
        self.expired.fetch_add(d.expired, Ordering::Relaxed);
        self.dead_lettered.fetch_add(d.dead_lettered, Ordering::Relaxed);
    }
}

/// What the writer thread, the handles and recovery share.
pub(crate) struct Shared {
    pub engine: Box<dyn Engine>,
    pub state: Mutex<State>,
    pub counters: Counters,
    pub limits: QueueLimits,
    /// Set once a sync failed; every later write is refused.
    pub failed: OnceLock<String>,
    /// The sequence message keys are taken from, set above every stored key at recovery
    /// (`State::next_msg_id` is what is persisted of it): shared with
    /// the broker, which takes the ids of the messages it routes from it too
    /// ([`crate::Store::msg_ids`]).
    pub msg_ids: std::sync::Arc<AtomicU64>,
}

/// The planned writes and in-memory changes of one operation.
#[derive(Default)]
pub(crate) struct Work {
    batch: Batch,
    /// Current refcounts of the messages this operation touched.
    refs: HashMap<u64, RefRecord>,
    /// Working copies of the queues this operation touched.
    queues: HashMap<QueueId, QueueState>,
    created: Vec<(String, QueueId)>,
    removed: Vec<(String, QueueId)>,
    next_queue_id: Option<u64>,
    next_msg_id: Option<u64>,
    delta: StoreStats,
}

impl Work {
    /// The working copy of queue `q`, copied from `st` on first use.
    fn queue<'w>(&'w mut self, st: &State, q: QueueId) -> Option<&'w mut QueueState> {
        match self.queues.entry(q) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) => Some(e.insert(st.queues.get(&q)?.clone())),
        }
    }

    fn ref_mut(&mut self, engine: &dyn Engine, id: u64) -> Result<&mut RefRecord, StoreError> {
        match self.refs.entry(id) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let key = keys::msg_key(id);
                let raw = engine
                    .get(Partition::Refs, &key)?
                    .ok_or_else(|| StoreError::corrupt("refs", &key, "missing for a queued entry"))?;
                let rec = RefRecord::decode(&raw).map_err(|err| StoreError::corrupt("refs", &key, err))?;
                Ok(e.insert(rec))
            }
        }
    }

    fn unref(&mut self, engine: &dyn Engine, id: u64) -> Result<(), StoreError> {
        let r = self.ref_mut(engine, id)?;
        if r.count == 0 {
            return Err(StoreError::corrupt("refs", &keys::msg_key(id), "refcount underflow"));
        }
        r.count -= 1;
        Ok(())
    }

    /// Deletes entry `seq` of `q` (whose record is `rec`) and releases its message.
    fn delete_entry(
        &mut self,
        engine: &dyn Engine,
        st: &State,
        q: QueueId,
        seq: Seq,
        rec: &EntryRecord,
    ) -> Result<(), StoreError> {
        self.batch.delete(Partition::Entries, keys::entry_key(q, seq).to_vec());
        self.unref(engine, rec.msg_id)?;
        if let Some(qs) = self.queue(st, q) {
            qs.depth = qs.depth.saturating_sub(1);
            qs.bytes = qs.bytes.saturating_sub(u64::from(rec.size));
            if seq.0 == qs.head {
                qs.head = seq.0 + 1;
            }
        }
        Ok(())
    }

    /// Adds the refcount, queue-record and counter writes to the batch.
    fn finish(&mut self, st: &State) {
        for (id, r) in self.refs.drain() {
            let key = keys::msg_key(id).to_vec();
            if r.count == 0 {
                self.batch.delete(Partition::Refs, key.clone());
                self.batch.delete(Partition::Messages, key);
            } else {
                self.batch.put(Partition::Refs, key, r.encode().to_vec());
            }
        }
        for (id, qs) in &self.queues {
            let changed = st.queues.get(id).is_none_or(|old| old.next_seq != qs.next_seq);
            if changed {
                let rec = QueueRecord { id: *id, next_seq: Seq(qs.next_seq) };
                self.batch.put(Partition::Queues, qs.name.as_bytes(), rec.encode().to_vec());
            }
        }
        if let Some(n) = self.next_queue_id {
            self.batch.put(Partition::Meta, keys::META_NEXT_QUEUE_ID, n.to_be_bytes().to_vec());
        }
        if let Some(n) = self.next_msg_id {
            self.batch.put(Partition::Meta, keys::META_NEXT_MSG_ID, n.to_be_bytes().to_vec());
        }
    }

    /// Applies the in-memory changes after the batch was written.
    fn commit(self, st: &mut State, counters: &Counters) {
        for (name, id) in self.created {
            st.by_name.insert(name, id);
        }
        for (id, qs) in self.queues {
            st.queues.insert(id, qs);
        }
        for (name, id) in self.removed {
            st.by_name.remove(&name);
            st.queues.remove(&id);
        }
        if let Some(n) = self.next_queue_id {
            st.next_queue_id = n;
        }
        if let Some(n) = self.next_msg_id {
            st.next_msg_id = n;
        }
        counters.add(&self.delta);
    }
}

impl Shared {
    /// Locks the state, ignoring poisoning: the state is only changed after a successful
    /// write, in [`Work::commit`], which does not panic.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans an operation with `f`, writes its batch atomically, then commits it in memory.
    pub fn run<T>(&self, f: impl FnOnce(&Shared, &State, &mut Work) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if let Some(reason) = self.failed.get() {
            return Err(StoreError::Failed(reason.clone()));
        }
        let mut st = self.lock();
        let mut work = Work::default();
        let out = f(self, &st, &mut work)?;
        work.finish(&st);
        if let Err(e) = self.engine.write(&work.batch) {
            // The engine could not append to its journal (a full disk, an I/O error; fjall
            // then refuses every later write as "poisoned"): like a failed sync, the store
            // refuses writes from now on and says why (`/readyz` answers 503).
            let reason = e.to_string();
            if self.failed.set(reason.clone()).is_ok() {
                tracing::error!(error = %reason, "store write failed; refusing further writes");
            }
            return Err(e.into());
        }
        work.commit(&mut st, &self.counters);
        Ok(out)
    }

    /// The id of queue `name`, creating it if needed.
    pub fn ensure_queue(&self, st: &State, w: &mut Work, name: &str) -> QueueId {
        if let Some(id) = st.by_name.get(name) {
            return *id;
        }
        if let Some((_, id)) = w.created.iter().find(|(n, _)| n == name) {
            return *id;
        }
        let id = QueueId(w.next_queue_id.unwrap_or(st.next_queue_id));
        w.next_queue_id = Some(id.0 + 1);
        w.created.push((name.to_owned(), id));
        let qs = QueueState { name: name.to_owned(), next_seq: 1, depth: 0, bytes: 0, head: 1 };
        w.queues.insert(id, qs);
        id
    }

    /// Appends one message (already encoded) to `queues`. See `Store::append`.
    pub fn append(
        &self,
        st: &State,
        w: &mut Work,
        encoded: &[u8],
        msg_expires_ms: Option<u64>,
        queues: &[QueueId],
        now_ms: u64,
    ) -> Result<Vec<Result<Seq, AppendError>>, StoreError> {
        let size = u32::try_from(encoded.len()).map_err(|_| StoreError::Encode(crate::codec::CodecError::TooLarge))?;
        // From the sequence the broker's message ids come from: a stored message is read back
        // with this id, which no other message has.
        let msg_id = self.msg_ids.fetch_add(1, Ordering::Relaxed);
        let limits = self.limits;
        let queue_expiry = limits.ttl_ms.map(|t| now_ms.saturating_add(t));
        let expires_ms = match (msg_expires_ms, queue_expiry) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        };
        let mut results: Vec<Result<Seq, AppendError>> = Vec::with_capacity(queues.len());
        let mut refs = 0u32;
        for (i, &q) in queues.iter().enumerate() {
            // A queue named twice gets the one entry, and the same answer twice.
            if let Some(j) = queues[..i].iter().position(|&p| p == q) {
                results.push(results[j]);
                continue;
            }
            if w.queue(st, q).is_none() {
                results.push(Err(AppendError::UnknownQueue(q)));
                continue;
            }
            if !self.make_room(st, w, q, u64::from(size), limits)? {
                w.delta.rejected_full += 1;
                results.push(Err(AppendError::QueueFull(q)));
                continue;
            }
            let Some(qs) = w.queue(st, q) else {
                results.push(Err(AppendError::UnknownQueue(q)));
                continue;
            };
            let seq = Seq(qs.next_seq);
            qs.next_seq += 1;
            qs.depth += 1;
            qs.bytes += u64::from(size);
            let rec = EntryRecord { msg_id, delivery_count: 0, size, expires_ms };
            w.batch.put(Partition::Entries, keys::entry_key(q, seq).to_vec(), rec.encode().to_vec());
            refs += 1;
            results.push(Ok(seq));
        }
        if refs > 0 {
            w.batch.put(Partition::Messages, keys::msg_key(msg_id).to_vec(), encoded.to_vec());
            w.refs.insert(msg_id, RefRecord { count: refs, size });
            w.next_msg_id = Some(msg_id + 1);
        }
        Ok(results)
    }

    /// Makes room for one more entry of `size` bytes in `q` under `limits`. Returns whether
    /// it fits now; with `drop-oldest` it deletes (and counts) the oldest entries first.
    fn make_room(
        &self,
        st: &State,
        w: &mut Work,
        q: QueueId,
        size: u64,
        limits: QueueLimits,
    ) -> Result<bool, StoreError> {
        let fits =
            |qs: &QueueState| qs.depth < limits.max_messages && qs.bytes.saturating_add(size) <= limits.max_bytes;
        if limits.max_messages == 0 || size > limits.max_bytes {
            return Ok(false);
        }
        loop {
            let Some(qs) = w.queue(st, q) else { return Ok(false) };
            if fits(qs) {
                return Ok(true);
            }
            if limits.overflow == Overflow::Reject {
                return Ok(false);
            }
            let start = keys::entry_key(q, Seq(qs.head));
            let rows = self.engine.scan(Partition::Entries, &keys::queue_prefix(q), Some(&start), 16)?;
            if rows.is_empty() {
                // The counters say the queue is full but it holds nothing older: refuse
                // rather than loop.
                return Ok(false);
            }
            for (k, v) in rows {
                let (_, seq) = keys::parse_entry_key(&k)?;
                let rec = EntryRecord::decode(&v).map_err(|e| StoreError::corrupt("entries", &k, e))?;
                if let Some(qs) = w.queue(st, q) {
                    if fits(qs) {
                        break;
                    }
                    // Entries below `head` are already planned for deletion in this batch.
                    qs.head = seq.0 + 1;
                }
                w.delete_entry(self.engine.as_ref(), st, q, seq, &rec)?;
                w.delta.dropped_overflow += 1;
            }
        }
    }

    /// The entry record of (`q`, `seq`), or `NoSuchEntry`.
    fn entry(&self, q: QueueId, seq: Seq) -> Result<EntryRecord, StoreError> {
        let key = keys::entry_key(q, seq);
        let raw = self.engine.get(Partition::Entries, &key)?.ok_or(StoreError::NoSuchEntry { queue: q, seq })?;
        EntryRecord::decode(&raw).map_err(|e| StoreError::corrupt("entries", &key, e))
    }

    /// Deletes an acknowledged entry.
    pub fn ack(&self, st: &State, w: &mut Work, q: QueueId, seq: Seq) -> Result<(), StoreError> {
        if !st.queues.contains_key(&q) {
            return Err(StoreError::UnknownQueue(q));
        }
        let rec = self.entry(q, seq)?;
        w.delete_entry(self.engine.as_ref(), st, q, seq, &rec)
    }

    /// Deletes an entry if it has expired at `now_ms` (and is not one that
    /// [`QueueLimits::keeps_started_entries`] keeps); returns whether it did.
    pub fn expire(&self, st: &State, w: &mut Work, q: QueueId, seq: Seq, now_ms: u64) -> Result<bool, StoreError> {
        let rec = match self.entry(q, seq) {
            Ok(rec) => rec,
            Err(StoreError::NoSuchEntry { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(qs) = st.queues.get(&q) else { return Ok(false) };
        if !rec.is_expired(now_ms) || (rec.delivery_count > 0 && self.limits.keeps_started_entries(&qs.name)) {
            return Ok(false);
        }
        w.delete_entry(self.engine.as_ref(), st, q, seq, &rec)?;
        w.delta.expired += 1;
        Ok(true)
    }

    /// Increments (or, with `undo`, decrements down to 0) and returns the delivery count of an
    /// entry.
    pub fn record_delivery(&self, w: &mut Work, q: QueueId, seq: Seq, undo: bool) -> Result<u32, StoreError> {
        let mut rec = self.entry(q, seq)?;
        rec.delivery_count =
            if undo { rec.delivery_count.saturating_sub(1) } else { rec.delivery_count.saturating_add(1) };
        w.batch.put(Partition::Entries, keys::entry_key(q, seq).to_vec(), rec.encode().to_vec());
        Ok(rec.delivery_count)
    }

    /// Moves an entry to the dead-letter queue `$dlq/<name>`, keeping its message, delivery
    /// count and expiry. A full dead-letter queue drops its oldest entries (counted), whatever
    /// the overflow policy: a dead-letter queue that refused would leave the poison message
    /// at the head of the original queue for ever.
    pub fn dead_letter(&self, st: &State, w: &mut Work, q: QueueId, seq: Seq) -> Result<(QueueId, Seq), StoreError> {
        let name = st.queues.get(&q).ok_or(StoreError::UnknownQueue(q))?.name.clone();
        let rec = self.entry(q, seq)?;
        let dlq = self.ensure_queue(st, w, &format!("$dlq/{name}"));
        let limits = QueueLimits { overflow: Overflow::DropOldest, ..self.limits };
        // Take the entry out first so that its reference is not counted twice.
        w.batch.delete(Partition::Entries, keys::entry_key(q, seq).to_vec());
        if let Some(qs) = w.queue(st, q) {
            qs.depth = qs.depth.saturating_sub(1);
            qs.bytes = qs.bytes.saturating_sub(u64::from(rec.size));
            if seq.0 == qs.head {
                qs.head = seq.0 + 1;
            }
        }
        if !self.make_room(st, w, dlq, u64::from(rec.size), limits)? {
            // It can never fit (larger than the byte limit): drop it, counted.
            w.unref(self.engine.as_ref(), rec.msg_id)?;
            w.delta.dropped_overflow += 1;
            return Ok((dlq, Seq(0)));
        }
        let qs = w.queue(st, dlq).ok_or(StoreError::UnknownQueue(dlq))?;
        let new_seq = Seq(qs.next_seq);
        qs.next_seq += 1;
        qs.depth += 1;
        qs.bytes += u64::from(rec.size);
        w.batch.put(Partition::Entries, keys::entry_key(dlq, new_seq).to_vec(), rec.encode().to_vec());
        w.delta.dead_lettered += 1;
        Ok((dlq, new_seq))
    }

    /// Deletes queue `name` and all its entries; returns whether it existed.
    pub fn drop_queue(&self, st: &State, w: &mut Work, name: &str) -> Result<bool, StoreError> {
        let Some(&q) = st.by_name.get(name) else { return Ok(false) };
        let prefix = keys::queue_prefix(q);
        let mut start: Option<Vec<u8>> = None;
        loop {
            let rows = self.engine.scan(Partition::Entries, &prefix, start.as_deref(), SCAN_PAGE)?;
            let Some((last, _)) = rows.last() else { break };
            start = Some(crate::engine::successor(last));
            for (k, v) in &rows {
                let rec = EntryRecord::decode(v).map_err(|e| StoreError::corrupt("entries", k, e))?;
                w.batch.delete(Partition::Entries, k.clone());
                w.unref(self.engine.as_ref(), rec.msg_id)?;
            }
        }
        w.batch.delete(Partition::Queues, name.as_bytes());
        w.queues.remove(&q);
        w.removed.push((name.to_owned(), q));
        Ok(true)
    }

    /// Puts or deletes one key of a partition that has no cross-references (sessions,
    /// retained messages).
    pub fn put_or_delete(w: &mut Work, part: Partition, key: &[u8], value: Option<Vec<u8>>) {
        match value {
            Some(v) => w.batch.put(part, key, v),
            None => w.batch.delete(part, key),
        }
    }
}
