//! Helpers shared by the store's integration tests: configs on a tempdir, messages, direct
//! engine access for checking and corrupting partitions, and [`both_engines!`], which runs a
//! test body once per engine.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use diglot_core::{Qos, Topic};
use diglot_store::engine::{self, Partition};
use diglot_store::{Durability, EngineKind, Store, StoreConfig, StoredMessage};

/// Runs `$body(kind)` as two tokio tests, `$name::fjall` and `$name::sled`.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fjall() {
                super::$body(diglot_store::EngineKind::Fjall).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                super::$body(diglot_store::EngineKind::Sled).await;
            }
        }
    };
}

/// A default config for `kind` at `dir`.
pub fn config(dir: &Path, kind: EngineKind) -> StoreConfig {
    StoreConfig { engine: kind, durability: Durability::Group, ..StoreConfig::at(dir) }
}

/// Opens a store, failing the test on error.
pub fn open(cfg: &StoreConfig) -> Store {
    Store::open(cfg).expect("store opens").0
}

/// Now in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A QoS 1 message on `topic` with `payload`.
pub fn msg(topic: &str, payload: &str) -> StoredMessage {
    StoredMessage {
        topic: Topic::new(topic).expect("valid topic"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: Qos::AtLeastOnce,
        retain: false,
        props: None,
        published_ms: now_ms(),
        expires_ms: None,
        retained_copy: false,
    }
}

/// The payload of a stored message as text.
pub fn text(m: &StoredMessage) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

/// How many records partition `part` holds (the store must be closed).
pub fn partition_len(dir: &Path, kind: EngineKind, part: Partition) -> usize {
    let e = engine::open(kind, dir).expect("engine opens");
    e.scan(part, &[], None, usize::MAX).expect("scan").len()
}

/// Writes raw `value` at `key` in `part` and syncs (the store must be closed).
pub fn poke(dir: &Path, kind: EngineKind, part: Partition, key: &[u8], value: &[u8]) {
    let e = engine::open(kind, dir).expect("engine opens");
    let mut b = engine::Batch::new();
    b.put(part, key.to_vec(), value.to_vec());
    e.write(&b).expect("write");
    e.persist(engine::PersistMode::Sync).expect("persist");
}

/// Waits (up to 5 s) until `f` is true.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}
