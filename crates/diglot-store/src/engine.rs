//! The storage engine seam: a small synchronous trait over ordered key-value partitions.
//!
//! The [`Store`](crate::Store) speaks only this trait, so the same logical layout (see
//! [`crate::keys`]) lives in both engines: [`FjallEngine`] (the default) and
//! [`SledEngine`]. An engine offers point reads, atomic batches across partitions,
//! bounded ordered scans, and an explicit durability call ([`Engine::persist`]).
//!
//! Every call here may block on disk I/O. The store makes its writes and syncs on its own
//! writer thread; only its synchronous read methods (documented as blocking) call the
//! engine on the caller's thread.
//!
//! This module deliberately knows nothing about queues, messages or refcounts.

use std::path::Path;

use crate::config::EngineKind;

mod fjall;
mod sled;

pub use self::fjall::FjallEngine;
pub use self::sled::SledEngine;

/// One ordered key space. Each engine keeps one physical tree (fjall keyspace, sled tree) per
/// partition, named by [`Partition::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Partition {
    /// Store metadata: the format version, the engine name, id counters.
    Meta,
    /// Message bodies, stored once however many queues hold them.
    Messages,
    /// Reference counts of stored messages.
    Refs,
    /// Queue entries, ordered by (queue id, seq).
    Entries,
    /// Queue records: name → id and next seq.
    Queues,
    /// Opaque per-client session state.
    Sessions,
    /// Retained messages by topic.
    Retained,
}

impl Partition {
    /// Every partition, in a fixed order.
    pub const ALL: [Partition; 7] = [
        Partition::Meta,
        Partition::Messages,
        Partition::Refs,
        Partition::Entries,
        Partition::Queues,
        Partition::Sessions,
        Partition::Retained,
    ];

    /// The on-disk name of the partition.
    pub fn name(self) -> &'static str {
        match self {
            Partition::Meta => "meta",
            Partition::Messages => "messages",
            Partition::Refs => "refs",
            Partition::Entries => "entries",
            Partition::Queues => "queues",
            Partition::Sessions => "sessions",
            Partition::Retained => "retained",
        }
    }

    /// The position of the partition in [`Partition::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One write in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or overwrite `key` with `value`.
    Put {
        /// The partition written.
        part: Partition,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` (a no-op if it is absent).
    Delete {
        /// The partition written.
        part: Partition,
        /// The key.
        key: Vec<u8>,
    },
}

/// Puts and deletes across partitions that an engine applies atomically, in order: after a
/// crash either all of them are visible or none is (within what [`Engine::persist`] made
/// durable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, part: Partition, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { part, key: key.into(), value: value.into() });
    }

    /// Adds a delete.
    pub fn delete(&mut self, part: Partition, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { part, key: key.into() });
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// How far [`Engine::persist`] pushes earlier writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    /// Out of the process into the operating system's page cache: survives a process crash
    /// (`kill -9`), not a power loss or kernel crash.
    Os,
    /// Onto the disk, as far as the engine can promise (fjall: `fsync`; sled: see
    /// [`SledEngine`]).
    Sync,
}

/// An owned key and value returned by [`Engine::scan`].
pub type Kv = (Vec<u8>, Vec<u8>);

/// Failure inside an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine reported an error (I/O, corruption it detected, poisoning).
    #[error("{engine}: {source}")]
    Backend {
        /// The engine's name.
        engine: &'static str,
        /// The engine's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An I/O error outside the engine's calls (for example creating the directory).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A synchronous ordered key-value store with named partitions. Implementations are
/// thread-safe: reads may run concurrently with one writer.
pub trait Engine: Send + Sync + 'static {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// The value of `key`, if any.
    fn get(&self, part: Partition, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Applies `batch` atomically. Its durability is whatever the engine gives before the next
    /// [`Engine::persist`].
    fn write(&self, batch: &Batch) -> Result<(), EngineError>;

    /// Up to `max` pairs whose keys start with `prefix`, in ascending key order, beginning at
    /// the first key `>= start` (or at the prefix itself when `start` is `None`).
    fn scan(&self, part: Partition, prefix: &[u8], start: Option<&[u8]>, max: usize) -> Result<Vec<Kv>, EngineError>;

    /// Pushes every earlier write as far as `mode` says.
    fn persist(&self, mode: PersistMode) -> Result<(), EngineError>;

    /// Rewrites a partition so that the space of deleted records comes back. Blocking and
    /// possibly long; the writer runs it on a thread of its own.
    fn compact(&self, part: Partition) -> Result<(), EngineError>;
}

/// Collects up to `max` pairs from an ordered iterator, stopping at the first key without
/// `prefix`: the shared tail of both engines' `scan`.
pub(crate) fn collect_prefixed<K: AsRef<[u8]>, V: AsRef<[u8]>, E>(
    items: impl Iterator<Item = Result<(K, V), E>>,
    prefix: &[u8],
    max: usize,
) -> Result<Vec<Kv>, E> {
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    for item in items {
        let (k, v) = item?;
        if !k.as_ref().starts_with(prefix) {
            break;
        }
        out.push((k.as_ref().to_vec(), v.as_ref().to_vec()));
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// Opens (or creates) an engine of `kind` in the directory `path`. This does not check that
/// the directory belongs to that engine; [`Store::open`](crate::Store::open) does.
pub fn open(kind: EngineKind, path: &Path) -> Result<Box<dyn Engine>, EngineError> {
    std::fs::create_dir_all(path)?;
    Ok(match kind {
        EngineKind::Fjall => Box::new(FjallEngine::open(path)?),
        EngineKind::Sled => Box::new(SledEngine::open(path)?),
    })
}

/// The smallest key strictly greater than `key`: where a paged scan resumes after `key`.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The file names that mark a directory as written by an engine, used to refuse opening one
/// engine's directory with the other.
pub(crate) fn signature(kind: EngineKind) -> &'static [&'static str] {
    match kind {
        // fjall 3 writes a `version` marker file at the root of its directory.
        EngineKind::Fjall => &["version"],
        // sled 0.34 writes `conf` and `db` at the root of its directory.
        EngineKind::Sled => &["conf", "db"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_engine(kind: EngineKind) {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open(kind, dir.path()).expect("open");
        let mut b = Batch::new();
        for i in 0u8..10 {
            b.put(Partition::Entries, vec![1, i], vec![i]);
            b.put(Partition::Entries, vec![2, i], vec![i]);
        }
        b.put(Partition::Meta, b"k".to_vec(), b"v".to_vec());
        engine.write(&b).expect("write");
        assert_eq!(engine.get(Partition::Meta, b"k").expect("get"), Some(b"v".to_vec()));
        assert_eq!(engine.get(Partition::Messages, b"k").expect("get"), None);

        let all = engine.scan(Partition::Entries, &[1], None, 100).expect("scan");
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|(k, _)| k[0] == 1));
        let from = engine.scan(Partition::Entries, &[1], Some(&[1, 7]), 100).expect("scan");
        assert_eq!(from.iter().map(|(k, _)| k[1]).collect::<Vec<_>>(), vec![7, 8, 9]);
        let capped = engine.scan(Partition::Entries, &[2], Some(&[2, 3]), 2).expect("scan");
        assert_eq!(capped.iter().map(|(k, _)| k[1]).collect::<Vec<_>>(), vec![3, 4]);
        let everything = engine.scan(Partition::Entries, &[], None, 1000).expect("scan");
        assert_eq!(everything.len(), 20);

        let mut d = Batch::new();
        d.delete(Partition::Entries, vec![1, 0]);
        d.put(Partition::Refs, vec![9], vec![9]);
        engine.write(&d).expect("write");
        engine.persist(PersistMode::Sync).expect("persist");
        engine.persist(PersistMode::Os).expect("persist");
        assert_eq!(engine.get(Partition::Entries, &[1, 0]).expect("get"), None);
        assert_eq!(engine.get(Partition::Refs, &[9]).expect("get"), Some(vec![9]));
        drop(engine);

        let engine = open(kind, dir.path()).expect("reopen");
        assert_eq!(engine.scan(Partition::Entries, &[], None, 1000).expect("scan").len(), 19);
    }

    #[test]
    fn fjall_engine_basics() {
        check_engine(EngineKind::Fjall);
    }

    #[test]
    fn sled_engine_basics() {
        check_engine(EngineKind::Sled);
    }
}
