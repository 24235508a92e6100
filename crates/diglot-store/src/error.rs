//! The store's errors: one enum for the whole store ([`StoreError`]) and the per-queue outcome
//! of an append ([`AppendError`]).

use std::path::PathBuf;

use crate::codec::CodecError;
use crate::config::EngineKind;
use crate::engine::EngineError;
use crate::keys::BadRecord;
use crate::types::{QueueId, Seq};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, or corruption the engine itself detected).
    #[error("store engine error: {0}")]
    Engine(#[from] EngineError),
    /// The directory was written by a newer (or unknown) store format. Nothing was changed.
    #[error(
        "store format version {found} is not supported (this build reads version {supported}); \
         the data was written by another Diglot version and was left untouched"
    )]
    UnsupportedVersion {
        /// The version found on disk.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The directory holds the other engine's files. Nothing was changed.
    #[error(
        "{path} holds a {found} store but the configured engine is {configured}; \
         set `[store] engine = \"{found}\"` or use another directory"
    )]
    EngineMismatch {
        /// The data directory.
        path: PathBuf,
        /// The engine whose files are there.
        found: EngineKind,
        /// The configured engine.
        configured: EngineKind,
    },
    /// The directory is not empty and holds no store. Nothing was changed.
    #[error("{0} is not empty and holds no Diglot store; refusing to write into it")]
    NotAStore(PathBuf),
    /// A record on disk is malformed. The store refuses to guess.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A message could not be encoded (a field longer than 4 GiB).
    #[error("message cannot be stored: {0}")]
    Encode(#[source] CodecError),
    /// No queue has this id (it was never created, or it was dropped).
    #[error("unknown queue {0}")]
    UnknownQueue(QueueId),
    /// A queue name is empty.
    #[error("queue name is empty")]
    EmptyName,
    /// The queue has no entry with this seq (already acked, expired, dropped or moved).
    #[error("queue {queue} has no entry {seq}")]
    NoSuchEntry {
        /// The queue.
        queue: QueueId,
        /// The seq.
        seq: Seq,
    },
    /// An earlier sync failed; after a failed fsync the page cache cannot be trusted, so the
    /// store refuses further writes until it is reopened.
    #[error("the store refuses writes after an earlier write or sync error ({0}); restart the broker")]
    Failed(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// A blocking task that read the store did not finish (it panicked or was cancelled).
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// A corrupt-record error naming the partition and key.
    pub(crate) fn corrupt(part: &str, key: &[u8], why: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!("{part} record {}: {why}", hex(key)))
    }
}

impl From<BadRecord> for StoreError {
    fn from(e: BadRecord) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why one queue did not take a message in [`Store::append`](crate::Store::append).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The queue is full and its overflow policy is `reject` (or the message alone exceeds
    /// its byte limit).
    #[error("queue {0} is full")]
    QueueFull(QueueId),
    /// No queue has this id.
    #[error("unknown queue {0}")]
    UnknownQueue(QueueId),
}
