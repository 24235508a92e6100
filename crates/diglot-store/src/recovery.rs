//! Opening a store: refuse what is not ours, check the format version, rebuild the
//! in-memory queue index from disk, and expire what expired while the broker was down.
//!
//! Nothing here ever deletes or rewrites data it does not understand: a foreign directory,
//! the other engine's files, a newer format or a malformed record is an error that names the
//! problem, and the directory is left as it was. (The only writes are the format-version key
//! of a brand-new store and the deletion of expired entries.)

use std::path::Path;
use std::time::Instant;

use crate::config::{EngineKind, StoreConfig};
use crate::engine::{self, Batch, Engine, Partition, PersistMode};
use crate::error::StoreError;
use crate::keys::{self, EntryRecord, QueueRecord, RefRecord, FORMAT_VERSION};
use crate::ops::{QueueState, Shared, State};
use crate::types::{QueueId, Recovery, Seq};
use crate::writer::now_ms;

/// How many records recovery reads per scan.
const PAGE: usize = 4096;

/// Entries of the filesystem that do not make a directory "non-empty".
const IGNORED: &[&str] = &["lost+found", MARKER];

/// A file the store writes next to the engine's once it has initialised itself, outside the
/// engine: a store directory that has it but whose engine holds no format version lost its
/// metadata (a damaged journal that the engine dropped as a torn tail, for instance), and is
/// refused rather than taken for a brand-new, empty store.
const MARKER: &str = "diglot-store";

/// Opens the engine at `config.path` and rebuilds the state; returns the shared core and a
/// summary. The writer thread is not running yet.
pub(crate) fn open(config: &StoreConfig) -> Result<(Shared, Recovery), StoreError> {
    let started = Instant::now();
    check_dir(&config.path, config.engine)?;
    let engine = engine::open(config.engine, &config.path)?;
    check_meta(engine.as_ref(), config.engine, &config.path)?;
    let mut st = State {
        next_msg_id: meta_u64(engine.as_ref(), keys::META_NEXT_MSG_ID)?.unwrap_or(1),
        next_queue_id: meta_u64(engine.as_ref(), keys::META_NEXT_QUEUE_ID)?.unwrap_or(1),
        ..State::default()
    };
    load_queues(engine.as_ref(), &mut st)?;
    let now = now_ms();
    let (entries, expired) = load_entries(engine.as_ref(), &mut st, now)?;
    // Before any write, so that the message id counter is right.
    count_messages(engine.as_ref(), &mut st)?;
    let shared = Shared {
        engine,
        state: std::sync::Mutex::new(st),
        counters: Default::default(),
        limits: config.queue_defaults,
        failed: Default::default(),
        msg_ids: Default::default(),
    };
    let mut expired_count = 0;
    for chunk in expired.chunks(PAGE) {
        expired_count += shared.run(|sh, st, w| {
            let mut n = 0;
            for &(q, seq) in chunk {
                n += u64::from(sh.expire(st, w, q, seq, now)?);
            }
            Ok(n)
        })?;
    }
    if expired_count > 0 {
        shared.engine.persist(PersistMode::Sync)?;
    }
    // Counted again after expiry, which may have deleted messages.
    let (messages, bytes) = count_messages(shared.engine.as_ref(), &mut shared.lock())?;
    // Ids go on from the highest one stored.
    let next = shared.lock().next_msg_id;
    shared.msg_ids.store(next, std::sync::atomic::Ordering::Relaxed);
    let queues = shared.lock().queues.len();
    let recovery = Recovery {
        queues,
        messages,
        entries: entries - expired_count,
        bytes,
        expired: expired_count,
        took: started.elapsed(),
    };
    Ok((shared, recovery))
}

/// Refuses a directory that holds the other engine's files or anything that is not a store.
fn check_dir(path: &Path, kind: EngineKind) -> Result<(), StoreError> {
    let names: Vec<String> = match std::fs::read_dir(path) {
        Ok(dir) => {
            let mut names = Vec::new();
            for entry in dir {
                let name = entry.map_err(engine::EngineError::from)?.file_name();
                let name = name.to_string_lossy().into_owned();
                if !IGNORED.contains(&name.as_str()) {
                    names.push(name);
                }
            }
            names
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(engine::EngineError::from(e).into()),
    };
    if names.is_empty() {
        return Ok(());
    }
    let has = |k: EngineKind| engine::signature(k).iter().all(|f| names.iter().any(|n| n == f));
    let other = match kind {
        EngineKind::Fjall => EngineKind::Sled,
        EngineKind::Sled => EngineKind::Fjall,
    };
    if has(kind) {
        Ok(())
    } else if has(other) {
        Err(StoreError::EngineMismatch { path: path.to_owned(), found: other, configured: kind })
    } else {
        Err(StoreError::NotAStore(path.to_owned()))
    }
}

/// Checks the format version and engine name, or initialises a brand-new store.
fn check_meta(engine: &dyn Engine, kind: EngineKind, path: &Path) -> Result<(), StoreError> {
    let marker = path.join(MARKER);
    let marked = marker.try_exists().map_err(engine::EngineError::from)?;
    match engine.get(Partition::Meta, keys::META_FORMAT_VERSION)? {
        None if marked => Err(StoreError::Corrupt(format!(
            "the store's metadata is gone although {} says the store was set up: its journal or \
             tables are damaged; restore the directory from a backup, or move it away to start empty",
            marker.display()
        ))),
        Some(raw) => {
            let found = keys::decode_u32("format version", &raw)?;
            if found != FORMAT_VERSION {
                return Err(StoreError::UnsupportedVersion { found, supported: FORMAT_VERSION });
            }
            let name = engine.get(Partition::Meta, keys::META_ENGINE)?;
            let written = name.as_deref().and_then(|n| std::str::from_utf8(n).ok());
            match written.and_then(EngineKind::from_name) {
                Some(k) if k == kind => {}
                Some(k) => {
                    return Err(StoreError::EngineMismatch { path: path.to_owned(), found: k, configured: kind })
                }
                None => return Err(StoreError::Corrupt("meta `engine` is missing or unknown".into())),
            }
            if !marked {
                // A store set up before the marker existed.
                write_marker(&marker)?;
            }
            Ok(())
        }
        None => {
            for part in Partition::ALL {
                if !engine.scan(part, &[], None, 1)?.is_empty() {
                    return Err(StoreError::Corrupt(format!(
                        "partition `{}` holds data but the store has no format version",
                        part.name()
                    )));
                }
            }
            let mut b = Batch::new();
            b.put(Partition::Meta, keys::META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
            b.put(Partition::Meta, keys::META_ENGINE, kind.name());
            engine.write(&b)?;
            engine.persist(PersistMode::Sync)?;
            write_marker(&marker)
        }
    }
}

/// Writes the marker file ([`MARKER`]) and syncs it and its directory.
fn write_marker(marker: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::from(engine::EngineError::from(e));
    let file = std::fs::File::create(marker).map_err(io)?;
    std::io::Write::write_all(&mut &file, b"Diglot store: do not delete; see docs/durability.md\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    if let Some(dir) = marker.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

fn meta_u64(engine: &dyn Engine, key: &'static [u8]) -> Result<Option<u64>, StoreError> {
    match engine.get(Partition::Meta, key)? {
        Some(raw) => Ok(Some(keys::decode_u64("meta counter", &raw)?)),
        None => Ok(None),
    }
}

/// Calls `f` on every record of `part`, a page at a time.
fn for_each(
    engine: &dyn Engine,
    part: Partition,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut start: Option<Vec<u8>> = None;
    loop {
        let rows = engine.scan(part, &[], start.as_deref(), PAGE)?;
        for (k, v) in &rows {
            f(k, v)?;
        }
        match rows.last() {
            Some((k, _)) if rows.len() == PAGE => start = Some(engine::successor(k)),
            _ => return Ok(()),
        }
    }
}

fn load_queues(engine: &dyn Engine, st: &mut State) -> Result<(), StoreError> {
    for_each(engine, Partition::Queues, |k, v| {
        let name =
            std::str::from_utf8(k).map_err(|_| StoreError::corrupt("queues", k, "name is not UTF-8"))?.to_owned();
        let rec = QueueRecord::decode(v).map_err(|e| StoreError::corrupt("queues", k, e))?;
        if st.queues.contains_key(&rec.id) {
            return Err(StoreError::corrupt("queues", k, format!("duplicate id {}", rec.id)));
        }
        if rec.id.0 >= st.next_queue_id {
            tracing::warn!(queue = %name, id = %rec.id, "queue id above the id counter; bumping it");
            st.next_queue_id = rec.id.0 + 1;
        }
        let head = rec.next_seq.0;
        let qs = QueueState { name: name.clone(), next_seq: rec.next_seq.0, depth: 0, bytes: 0, head };
        st.by_name.insert(name, rec.id);
        st.queues.insert(rec.id, qs);
        Ok(())
    })
}

/// Counts entries into their queues; returns the count and the entries that have expired.
fn load_entries(engine: &dyn Engine, st: &mut State, now: u64) -> Result<(u64, Vec<(QueueId, Seq)>), StoreError> {
    let mut count = 0;
    let mut expired = Vec::new();
    for_each(engine, Partition::Entries, |k, v| {
        let (q, seq) = keys::parse_entry_key(k).map_err(|e| StoreError::corrupt("entries", k, e))?;
        let rec = EntryRecord::decode(v).map_err(|e| StoreError::corrupt("entries", k, e))?;
        let qs =
            st.queues.get_mut(&q).ok_or_else(|| StoreError::corrupt("entries", k, format!("unknown queue {q}")))?;
        if seq.0 >= qs.next_seq {
            tracing::warn!(queue = %qs.name, %seq, "entry above the queue's next seq; bumping it");
            qs.next_seq = seq.0 + 1;
        }
        // Entries come in key order, so the first one of a queue is its head.
        if qs.depth == 0 {
            qs.head = qs.head.min(seq.0);
        }
        qs.depth += 1;
        qs.bytes += u64::from(rec.size);
        count += 1;
        if rec.is_expired(now) {
            expired.push((q, seq));
        }
        Ok(())
    })?;
    Ok((count, expired))
}

/// Counts the distinct stored messages and their bytes from `refs` (not reading bodies).
fn count_messages(engine: &dyn Engine, st: &mut State) -> Result<(u64, u64), StoreError> {
    let (mut messages, mut bytes) = (0u64, 0u64);
    for_each(engine, Partition::Refs, |k, v| {
        let id = keys::decode_u64("ref key", k).map_err(|e| StoreError::corrupt("refs", k, e))?;
        let rec = RefRecord::decode(v).map_err(|e| StoreError::corrupt("refs", k, e))?;
        if id >= st.next_msg_id {
            tracing::warn!(id, "message id above the id counter; bumping it");
            st.next_msg_id = id + 1;
        }
        messages += 1;
        bytes += u64::from(rec.size);
        Ok(())
    })?;
    Ok((messages, bytes))
}
