//! The sled 0.34 engine (`engine = "sled"`): one sled `Db` with one `Tree` per [`Partition`].
//!
//! What it promises, honestly:
//! - **Atomicity**: a [`Batch`] that touches one partition is applied with `Tree::apply_batch`
//!   (atomic within that tree). A batch that touches several partitions runs as one sled
//!   multi-tree transaction (`Transactional` over the touched trees), which sled applies
//!   atomically across them. So every [`Batch`] is all-or-nothing, as the trait requires.
//! - **Durability**: sled's only durability call is `Db::flush`. On Linux sled 0.34 makes its
//!   log durable with `sync_file_range(2)` and **never calls `fsync`** on that path
//!   (sled#1452, open), so neither the file's metadata nor the drive's write cache is flushed:
//!   an acknowledged write may be lost on power loss or a kernel crash even under
//!   `durability = "every"`. It does survive a process crash once flushed.
//!   [`PersistMode::Sync`] calls `flush`. [`PersistMode::Os`] does nothing: sled keeps
//!   unflushed writes in its own in-process buffers and its background flusher writes them
//!   every 500 ms, so under `durability = "none"` a `kill -9` may lose the last half second.
//! - **Space**: sled 0.34 does not give back the space of deleted data reliably (measured
//!   here: 1.4 GiB kept after a million 1 KiB messages were appended and all deleted). This is
//!   why fjall is the default.

use std::path::Path;
use std::time::{Duration, Instant};

use ::sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use ::sled::{Db, Tree};

use super::{Batch, Engine, EngineError, Kv, Op, Partition, PersistMode};
use crate::config::EngineKind;

fn backend(e: ::sled::Error) -> EngineError {
    EngineError::Backend { engine: "sled", source: Box::new(e) }
}

/// How long [`SledEngine::open`] waits for a lock that a just-closed handle still holds.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The sled engine.
pub struct SledEngine {
    db: Db,
    /// Indexed by [`Partition::index`].
    parts: Vec<Tree>,
}

impl SledEngine {
    /// Opens or creates a sled database in `path`, with a tree for every partition.
    ///
    /// sled releases its directory lock from a background thread a moment after the last
    /// handle is dropped, so an open right after a close in the same process can find the
    /// lock still held; that case is retried for up to five seconds.
    pub fn open(path: &Path) -> Result<SledEngine, EngineError> {
        let deadline = Instant::now() + LOCK_WAIT;
        let db = loop {
            match ::sled::Config::new().path(path).open() {
                Ok(db) => break db,
                Err(::sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(backend(e)),
            }
        };
        let mut parts = Vec::with_capacity(Partition::ALL.len());
        for part in Partition::ALL {
            parts.push(db.open_tree(part.name()).map_err(backend)?);
        }
        Ok(SledEngine { db, parts })
    }

    fn part(&self, part: Partition) -> &Tree {
        // `parts` is built from `Partition::ALL` in index order, so every index exists.
        &self.parts[part.index()]
    }

    /// Applies a batch that touches several trees as one sled transaction.
    fn write_multi(&self, batch: &Batch, touched: &[Partition]) -> Result<(), EngineError> {
        let trees: Vec<&Tree> = touched.iter().map(|p| self.part(*p)).collect();
        // Position of each partition's view inside the transaction.
        let mut slot = [usize::MAX; Partition::ALL.len()];
        for (i, p) in touched.iter().enumerate() {
            slot[p.index()] = i;
        }
        let result: Result<(), TransactionError<()>> = trees.as_slice().transaction(|views| {
            for op in batch.ops() {
                match op {
                    Op::Put { part, key, value } => {
                        views[slot[part.index()]].insert(key.as_slice(), value.as_slice())?;
                    }
                    Op::Delete { part, key } => {
                        views[slot[part.index()]].remove(key.as_slice())?;
                    }
                }
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
            // The closure never aborts.
            Err(TransactionError::Abort(())) => {
                Err(backend(::sled::Error::Unsupported("sled transaction aborted".into())))
            }
        }
    }
}

impl Engine for SledEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sled
    }

    fn get(&self, part: Partition, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.part(part).get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn write(&self, batch: &Batch) -> Result<(), EngineError> {
        let mut touched: Vec<Partition> = Vec::new();
        for op in batch.ops() {
            let p = match op {
                Op::Put { part, .. } | Op::Delete { part, .. } => *part,
            };
            if !touched.contains(&p) {
                touched.push(p);
            }
        }
        match touched.as_slice() {
            [] => Ok(()),
            [only] => {
                let mut sb = ::sled::Batch::default();
                for op in batch.ops() {
                    match op {
                        Op::Put { key, value, .. } => sb.insert(key.as_slice(), value.as_slice()),
                        Op::Delete { key, .. } => sb.remove(key.as_slice()),
                    }
                }
                self.part(*only).apply_batch(sb).map_err(backend)
            }
            _ => self.write_multi(batch, &touched),
        }
    }

    fn scan(&self, part: Partition, prefix: &[u8], start: Option<&[u8]>, max: usize) -> Result<Vec<Kv>, EngineError> {
        let from = match start {
            Some(s) if s > prefix => s,
            _ => prefix,
        };
        super::collect_prefixed(self.part(part).range(from..).map(|item| item.map_err(backend)), prefix, max)
    }

    fn compact(&self, _part: Partition) -> Result<(), EngineError> {
        // sled 0.34 has no compaction call; its own background GC is what it has, and it was
        // measured not to give the space of deleted queue entries back (docs/durability.md).
        Ok(())
    }

    fn persist(&self, mode: PersistMode) -> Result<(), EngineError> {
        match mode {
            PersistMode::Os => Ok(()),
            PersistMode::Sync => self.db.flush().map(|_| ()).map_err(backend),
        }
    }
}
