//! The writer thread: the only place that mutates the store and the only place that syncs.
//!
//! Async callers send a [`Job`] over a channel and await a tokio oneshot reply, so the
//! engines' blocking calls never run on a reactor thread. The channel is bounded by a
//! semaphore: a caller first takes a permit (awaiting it when the writer is behind), and the
//! permit travels with the job and is released when the writer has taken it. That keeps the
//! sending side async and the receiving side a plain blocking `std::sync::mpsc` receiver
//! with `recv_timeout`, which the group commit needs.
//!
//! Each job becomes one atomic engine batch as soon as the writer takes it (so later jobs and
//! readers see it), but its reply waits for the sync that makes it durable under the policy:
//! - `every`: one sync (`fsync` on fjall) after each job, then its reply.
//! - `group`: the writer takes every job already queued (at most [`MAX_GROUP`], and for at
//!   most `group_commit_ms` while jobs keep arriving), does one sync, then replies to all of
//!   them. Jobs that arrive during a sync form the next group, so the batch grows with the
//!   load and a lone publisher waits for one sync, not for a timer.
//! - `none`: the writer collects what is already queued, pushes it to the OS (no `fsync`),
//!   and replies: a reply then says nothing about disks.
//!
//! A reader may see an entry before its append's sync completes; that is harmless for
//! at-least-once delivery, since the publisher has not been acknowledged yet.
//!
//! If a sync fails the store is marked failed and refuses every later write (after a failed
//! `fsync` the page cache cannot be trusted); the waiting callers get the error.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::config::Durability;
use crate::engine::{Partition, PersistMode};
use crate::error::{AppendError, StoreError};
use crate::ops::Shared;
use crate::types::{QueueId, Seq};

/// Most jobs one group commit collects before it syncs.
pub(crate) const MAX_GROUP: usize = 4096;

/// The reply channel of a job.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A job for the writer thread.
pub(crate) enum Cmd {
    Append {
        encoded: Vec<u8>,
        expires_ms: Option<u64>,
        queues: Vec<QueueId>,
        reply: Reply<Vec<Result<Seq, AppendError>>>,
    },
    Ack {
        queue: QueueId,
        seq: Seq,
        reply: Reply<()>,
    },
    RecordDelivery {
        queue: QueueId,
        seq: Seq,
        /// Take one delivery back instead of adding one.
        undo: bool,
        reply: Reply<u32>,
    },
    DeadLetter {
        queue: QueueId,
        seq: Seq,
        reply: Reply<(QueueId, Seq)>,
    },
    DropQueue {
        name: String,
        reply: Reply<bool>,
    },
    /// Puts (`Some`) or deletes (`None`) a session or retained message.
    Put {
        part: Partition,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    /// A hint from a reader that an entry expired; no reply.
    Expire {
        queue: QueueId,
        seq: Seq,
    },
    /// Sync everything and stop.
    Close {
        reply: Option<Reply<()>>,
    },
}

/// A command and the channel permit it holds until the writer takes it.
pub(crate) struct Job {
    pub cmd: Cmd,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// A reply that waits for the group's sync: called with the sync error, if any.
type Pending = Box<dyn FnOnce(Option<&str>) + Send>;

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Pending {
    Box::new(move |sync_error: Option<&str>| {
        let result = match (result, sync_error) {
            (Ok(_), Some(e)) => Err(StoreError::Failed(e.to_owned())),
            (r, _) => r,
        };
        // The caller may have stopped waiting (its future was dropped); the write stands.
        let _ = reply.send(result);
    })
}

/// Current unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// The writer loop; returns when it gets `Close` or every sender is gone.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Job>, durability: Durability, group: Duration) {
    let mode = match durability {
        Durability::None => PersistMode::Os,
        Durability::Group | Durability::Every => PersistMode::Sync,
    };
    let mut group_replies: Vec<Pending> = Vec::new();
    loop {
        let first = match rx.recv_timeout(IDLE_COMPACT_AFTER) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                // Quiet now: give back the space of whatever was deleted since the last compaction.
                maybe_compact(&shared, 1);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                final_sync(&shared);
                return;
            }
        };
        let mut close = None;
        let mut dirty = false;
        apply(&shared, first, &mut group_replies, &mut dirty, &mut close);
        let deadline = Instant::now() + group;
        while close.is_none() && group_replies.len() < MAX_GROUP {
            let next = match durability {
                Durability::Every => break,
                Durability::None => rx.try_recv().map_err(|_| ()),
                Durability::Group if Instant::now() >= deadline => break,
                Durability::Group => rx.try_recv().map_err(|_: TryRecvError| ()),
            };
            match next {
                Ok(job) => apply(&shared, job, &mut group_replies, &mut dirty, &mut close),
                Err(()) => break,
            }
        }
        let sync_error = if dirty { sync(&shared, mode) } else { None };
        for reply in group_replies.drain(..) {
            reply(sync_error.as_deref());
        }
        maybe_compact(&shared, COMPACT_AFTER_DELETES);
        if let Some(reply) = close {
            compact_before_close(&shared);
            let result = match final_sync(&shared) {
                None => Ok(()),
                Some(e) => Err(StoreError::Failed(e)),
            };
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
            return;
        }
    }
}

/// Entries deleted before the writer asks the engine to compact the queue partitions.
const COMPACT_AFTER_DELETES: u64 = 50_000;

/// A writer with nothing to do for this long compacts what was deleted meanwhile.
const IDLE_COMPACT_AFTER: Duration = Duration::from_secs(2);

/// Deletes below this are not worth a compaction at a quiet moment or at close.
const IDLE_COMPACT_MIN_DELETES: u64 = 1_000;

/// Quiet-moment and closing compactions are skipped above this much live data, so that they
/// stay short (shutdown must finish within its grace).
const IDLE_COMPACT_MAX_LIVE_BYTES: u64 = 256 * 1024 * 1024;

/// Entries and bytes the queues hold now.
fn live_size(shared: &Shared) -> (u64, u64) {
    let st = shared.lock();
    st.queues.values().fold((0, 0), |(e, b), q| (e + q.depth, b + q.bytes))
}

/// Starts a compaction on a thread of its own once enough entries were deleted, so that the
/// space of acknowledged messages comes back while the writer keeps writing.
fn maybe_compact(shared: &Arc<Shared>, threshold: u64) {
    let c = &shared.counters;
    let idle = threshold <= 1;
    let deletes = c.deletes_since_compaction.load(Ordering::Relaxed);
    let due = if idle {
        // Quiet moments and closing: worth it only when a good share of the data was deleted
        // (a major compaction rewrites what is still live) or a busy compaction may have kept
        // tombstones that were too new to drop; and never for a large live store at close.
        let (live_entries, live_bytes) = live_size(shared);
        let worth = deletes >= IDLE_COMPACT_MIN_DELETES && deletes.saturating_mul(4) >= live_entries;
        (worth || c.recompact_when_idle.load(Ordering::Relaxed)) && live_bytes <= IDLE_COMPACT_MAX_LIVE_BYTES
    } else {
        deletes >= threshold
    };
    if !due || c.compacting.swap(true, Ordering::AcqRel) {
        return;
    }
    c.recompact_when_idle.store(!idle, Ordering::Relaxed);
    c.deletes_since_compaction.store(0, Ordering::Relaxed);
    let shared = shared.clone();
    let spawned = std::thread::Builder::new().name("diglot-store-compact".into()).spawn(move || {
        // Every partition, so that each flushes its memtable and the journal can be dropped.
        for part in Partition::ALL {
            if let Err(e) = shared.engine.compact(part) {
                tracing::warn!(partition = ?part, error = %e, "store compaction failed");
            }
        }
        shared.counters.compactions.fetch_add(1, Ordering::Relaxed);
        shared.counters.compacting.store(false, Ordering::Release);
    });
    match spawned {
        Ok(handle) => *c.compactor.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
        Err(_) => c.compacting.store(false, Ordering::Release),
    }
}

/// Waits for a running compaction, so that closing releases the engine (and its directory lock).
fn join_compaction(shared: &Shared) {
    let handle = shared.counters.compactor.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(handle) = handle {
        if handle.join().is_err() {
            tracing::error!("store compaction thread panicked");
        }
    }
}

/// Syncs with `mode`; on failure marks the store failed and returns the reason.
fn sync(shared: &Shared, mode: PersistMode) -> Option<String> {
    if let Some(reason) = shared.failed.get() {
        return Some(reason.clone());
    }
    let started = std::time::Instant::now();
    match shared.engine.persist(mode) {
        Ok(()) => {
            shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            if let Some(observe) = shared.counters.sync_observer.get() {
                (observe.0)(started.elapsed());
            }
            None
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(error = %reason, "store sync failed; refusing further writes");
            let _ = shared.failed.set(reason.clone());
            Some(reason)
        }
    }
}

fn final_sync(shared: &Shared) -> Option<String> {
    join_compaction(shared);
    sync(shared, PersistMode::Sync)
}

/// At close: one last compaction pass if deletes happened since the last one, so that a store
/// closed right after draining a queue does not keep the space until the next quiet moment.
fn compact_before_close(shared: &Arc<Shared>) {
    join_compaction(shared);
    maybe_compact(shared, 1);
    join_compaction(shared);
}

/// Runs one job against the engine and queues its reply.
fn apply(
    shared: &Shared,
    job: Job,
    replies: &mut Vec<Pending>,
    dirty: &mut bool,
    close: &mut Option<Option<Reply<()>>>,
) {
    // The writer has taken the job: let another caller in.
    drop(job.permit);
    match job.cmd {
        Cmd::Append { encoded, expires_ms, queues, reply } => {
            let now = now_ms();
            let r = shared.run(|sh, st, w| sh.append(st, w, &encoded, expires_ms, &queues, now));
            *dirty |= r.is_ok();
            replies.push(pending(reply, r));
        }
        Cmd::Ack { queue, seq, reply } => {
            let r = shared.run(|sh, st, w| sh.ack(st, w, queue, seq));
            if r.is_ok() {
                shared.counters.deletes_since_compaction.fetch_add(1, Ordering::Relaxed);
            }
            *dirty |= r.is_ok();
            replies.push(pending(reply, r));
        }
        Cmd::RecordDelivery { queue, seq, undo, reply } => {
            let r = shared.run(|sh, _, w| sh.record_delivery(w, queue, seq, undo));
            *dirty |= r.is_ok();
            replies.push(pending(reply, r));
        }
        Cmd::DeadLetter { queue, seq, reply } => {
            let r = shared.run(|sh, st, w| sh.dead_letter(st, w, queue, seq));
            if let Ok((dlq, _)) = &r {
                tracing::warn!(%queue, %seq, dead_letter_queue = %dlq, "message dead-lettered");
            }
            *dirty |= r.is_ok();
            replies.push(pending(reply, r));
        }
        Cmd::DropQueue { name, reply } => {
            let r = shared.run(|sh, st, w| sh.drop_queue(st, w, &name));
            *dirty |= r.is_ok();
            replies.push(pending(reply, r));
        }
        Cmd::Put { part, key, value, reply } => {
            let r = shared.run(|_, _, w| {
                Shared::put_or_delete(w, part, &key, value);
                Ok(())
            });
            *dirty |= r.is_ok();
            replies.push(pending(reply, r));
        }
        Cmd::Expire { queue, seq } => {
            let now = now_ms();
            match shared.run(|sh, st, w| sh.expire(st, w, queue, seq, now)) {
                Ok(expired) => *dirty |= expired,
                Err(e) => tracing::warn!(%queue, %seq, error = %e, "could not expire entry"),
            }
        }
        Cmd::Close { reply } => *close = Some(reply),
    }
}
