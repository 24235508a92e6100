//! Opening, closing and recovering a store on a real data directory, run against both
//! engines: recovery after reopen, persisted redelivery counts, sessions and retained
//! messages, and the refusals (newer format, other engine, foreign directory, corrupt
//! records) that must fail loudly without touching the data.

mod common;

use common::{config, msg, open, partition_len, poke, text};
use diglot_store::engine::{self, Partition};
use diglot_store::keys;
use diglot_store::{EngineKind, Seq, Store, StoreError};

async fn recovery_after_reopen(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    let (a, b) = (store.queue("a").expect("q"), store.queue("b").expect("q"));
    for i in 1..=5 {
        store.append(&msg("t", &format!("a{i}")), &[a]).await.expect("append");
    }
    store.append(&msg("t", "shared"), &[a, b]).await.expect("append");
    for s in 1..=3 {
        store.ack(a, Seq(s)).await.expect("ack");
    }
    store.close().await.expect("close");

    let (store, rec) = Store::open(&cfg).expect("reopen");
    assert_eq!((rec.queues, rec.messages, rec.entries, rec.expired), (2, 3, 4, 0));
    assert!(rec.bytes > 0);
    assert!(rec.to_string().contains("2 queues, 3 messages"), "{rec}");
    assert_eq!(store.queue("a").expect("same id"), a);
    assert_eq!(store.queue("b").expect("same id"), b);
    let left: Vec<(u64, String)> =
        store.read(a, None, 10).expect("read").iter().map(|e| (e.seq.0, text(&e.msg))).collect();
    assert_eq!(left, vec![(4, "a4".into()), (5, "a5".into()), (6, "shared".into())]);
    // Empty the queue, restart again: seqs still continue, never reused.
    for s in 4..=6 {
        store.ack(a, Seq(s)).await.expect("ack");
    }
    store.close().await.expect("close");
    let store = open(&cfg);
    assert_eq!(store.queue_info(a).expect("info").depth, 0);
    let r = store.append(&msg("t", "after restart"), &[a, b]).await.expect("append");
    assert_eq!(r, vec![Ok(Seq(7)), Ok(Seq(2))]);
    let ids: Vec<u64> = store.read(b, None, 10).expect("read").iter().map(|e| e.msg_id).collect();
    assert!(ids[1] > ids[0], "message ids keep growing: {ids:?}");
    store.close().await.expect("close");
}
both_engines!(recovery, recovery_after_reopen);

async fn redelivery_count_survives_restart(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    let q = store.queue("r").expect("q");
    store.append(&msg("t", "m"), &[q]).await.expect("append");
    for want in 1..=3 {
        assert_eq!(store.record_delivery(q, Seq(1)).await.expect("delivery"), want);
    }
    store.close().await.expect("close");
    let store = open(&cfg);
    assert_eq!(store.read(q, None, 1).expect("read")[0].delivery_count, 3);
    assert_eq!(store.record_delivery(q, Seq(1)).await.expect("delivery"), 4);
    assert!(matches!(store.record_delivery(q, Seq(9)).await, Err(StoreError::NoSuchEntry { .. })));
    // Unsynced records are applied in order with the other jobs and survive a clean close;
    // one for an entry that does not exist is dropped without failing the store.
    for _ in 0..3 {
        store.record_delivery_unsynced(q, Seq(1)).await.expect("unsynced delivery");
    }
    store.record_delivery_unsynced(q, Seq(9)).await.expect("unsynced delivery of nothing");
    assert_eq!(store.record_delivery(q, Seq(1)).await.expect("delivery"), 8);
    // Deliveries taken back (their consumer never got them) lower the count, never below 0,
    // in order with the other jobs; one for an entry that does not exist is dropped.
    store.unrecord_delivery_unsynced(q, Seq(1)).await.expect("undo");
    store.unrecord_delivery_unsynced(q, Seq(1)).await.expect("undo");
    store.unrecord_delivery_unsynced(q, Seq(9)).await.expect("undo of nothing");
    assert_eq!(store.record_delivery(q, Seq(1)).await.expect("delivery"), 7);
    store.unrecord_delivery_unsynced(q, Seq(1)).await.expect("undo");
    store.close().await.expect("close");
    let store = open(&cfg);
    assert_eq!(store.read(q, None, 1).expect("read")[0].delivery_count, 6);
    store.append(&msg("t", "n"), &[q]).await.expect("append");
    store.unrecord_delivery_unsynced(q, Seq(2)).await.expect("undo of nothing recorded");
    assert_eq!(store.record_delivery(q, Seq(2)).await.expect("delivery"), 1);
    store.close().await.expect("close");
}
both_engines!(redelivery_count, redelivery_count_survives_restart);

async fn sessions_and_retained(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    store.put_session("client-1", b"state one").await.expect("put");
    store.put_session("client-2", b"state two").await.expect("put");
    store.put_session("client-1", b"state one v2").await.expect("overwrite");
    let mut retained = msg("sensors/1", "21.5");
    retained.retain = true;
    store.put_retained("sensors/1", &retained).await.expect("put");
    store.put_retained("sensors/2", &msg("sensors/2", "x")).await.expect("put");
    store.delete_retained("sensors/2").await.expect("delete");
    store.close().await.expect("close");

    let store = open(&cfg);
    assert_eq!(store.get_session("client-1").expect("get"), Some(b"state one v2".to_vec()));
    store.delete_session("client-2").await.expect("delete");
    assert_eq!(store.get_session("client-2").expect("get"), None);
    let all = store.sessions().expect("sessions");
    assert_eq!(all, vec![("client-1".to_string(), b"state one v2".to_vec())]);
    let r = store.retained().expect("retained");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, "sensors/1");
    assert_eq!(r[0].1, retained);
    store.close().await.expect("close");
}
both_engines!(sessions_retained, sessions_and_retained);

async fn newer_format_is_refused(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    let q = store.queue("keep").expect("q");
    store.append(&msg("t", "precious"), &[q]).await.expect("append");
    store.close().await.expect("close");
    poke(dir.path(), kind, Partition::Meta, keys::META_FORMAT_VERSION, &99u32.to_be_bytes());

    match Store::open(&cfg) {
        Err(e @ StoreError::UnsupportedVersion { found: 99, supported: 1 }) => {
            let text = e.to_string();
            assert!(text.contains("99") && text.contains("untouched"), "{text}");
        }
        other => panic!("expected a version refusal, got {:?}", other.map(|(_, r)| r)),
    }
    // Nothing was wiped.
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 1);
    assert_eq!(partition_len(dir.path(), kind, Partition::Entries), 1);

    // A version record of the wrong length is corruption, also refused.
    poke(dir.path(), kind, Partition::Meta, keys::META_FORMAT_VERSION, &[0, 1]);
    assert!(matches!(Store::open(&cfg), Err(StoreError::Corrupt(_))));
}
both_engines!(format_version, newer_format_is_refused);

async fn corrupt_records_are_errors(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    let q = store.queue("c").expect("q");
    store.append(&msg("t", "good"), &[q]).await.expect("append");
    let id = store.read(q, None, 1).expect("read")[0].msg_id;
    store.close().await.expect("close");

    // A garbled message body: recovery does not read bodies, the read reports it.
    poke(dir.path(), kind, Partition::Messages, &keys::msg_key(id), &[1, 0, 9, 9]);
    let store = open(&cfg);
    match store.read(q, None, 10) {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("messages"), "{why}"),
        other => panic!("expected corruption, got {other:?}"),
    }
    store.close().await.expect("close");

    // A garbled entry record is refused at open.
    poke(dir.path(), kind, Partition::Entries, &keys::entry_key(q, Seq(1)), b"short");
    assert!(matches!(Store::open(&cfg), Err(StoreError::Corrupt(_))));
    // So is a stray entry of a queue that does not exist.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    open(&cfg).close().await.expect("close");
    let stray = keys::EntryRecord { msg_id: 1, delivery_count: 0, size: 1, expires_ms: 0 };
    let key = keys::entry_key(diglot_store::QueueId(77), Seq(1));
    poke(dir.path(), kind, Partition::Entries, &key, &stray.encode());
    assert!(matches!(Store::open(&cfg), Err(StoreError::Corrupt(_))));
}
both_engines!(corrupt, corrupt_records_are_errors);

async fn foreign_directories_are_refused(kind: EngineKind) {
    let other = match kind {
        EngineKind::Fjall => EngineKind::Sled,
        EngineKind::Sled => EngineKind::Fjall,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    open(&config(dir.path(), other)).close().await.expect("close");
    match Store::open(&config(dir.path(), kind)) {
        Err(e @ StoreError::EngineMismatch { .. }) => {
            assert!(e.to_string().contains(other.name()), "{e}");
        }
        r => panic!("expected an engine mismatch, got {:?}", r.map(|(_, r)| r)),
    }
    // The other engine still opens it.
    open(&config(dir.path(), other)).close().await.expect("close");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"not a store").expect("write");
    assert!(matches!(Store::open(&config(dir.path(), kind)), Err(StoreError::NotAStore(_))));

    // Data without a format version is refused rather than adopted.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = engine::open(kind, dir.path()).expect("engine");
        let mut b = engine::Batch::new();
        b.put(Partition::Sessions, b"x".to_vec(), b"y".to_vec());
        e.write(&b).expect("write");
        e.persist(engine::PersistMode::Sync).expect("persist");
    }
    assert!(matches!(Store::open(&config(dir.path(), kind)), Err(StoreError::Corrupt(_))));
}
both_engines!(foreign_dirs, foreign_directories_are_refused);
