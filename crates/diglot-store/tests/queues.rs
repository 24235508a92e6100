//! Queue behaviour on a real data directory, run against both engines: ordering, ack,
//! refcounted fan-out, limits and overflow policies, TTL, dead-lettering, dropping queues.

mod common;

use common::{config, eventually, msg, now_ms, open, partition_len, text};
use diglot_store::engine::Partition;
use diglot_store::{AppendError, EngineKind, Overflow, QueueLimits, Seq, StoreError};

async fn ordering_of_many_appends(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&config(dir.path(), kind));
    let q = store.queue("orders").expect("queue");
    for i in 0..300 {
        let r = store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append");
        assert_eq!(r, vec![Ok(Seq(i + 1))]);
    }
    // Read in pages with a cursor: delivery order is append order.
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store.read(q, after, 64).expect("read");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        seen.extend(page.iter().map(|e| (e.seq.0, text(&e.msg))));
    }
    let want: Vec<_> = (0..300).map(|i| (i + 1, format!("m{i}"))).collect();
    assert_eq!(seen, want);
    let info = store.queue_info(q).expect("info");
    assert_eq!(info.depth, 300);
    store.close().await.expect("close");
}
both_engines!(ordering, ordering_of_many_appends);

async fn ack_deletes(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&config(dir.path(), kind));
    let q = store.queue("acks").expect("queue");
    for i in 1..=6 {
        store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append");
    }
    let before = store.queue_info(q).expect("info");
    store.ack(q, Seq(1)).await.expect("ack 1");
    store.ack(q, Seq(4)).await.expect("ack 4 (out of order)");
    let left: Vec<u64> = store.read(q, None, 100).expect("read").iter().map(|e| e.seq.0).collect();
    assert_eq!(left, vec![2, 3, 5, 6]);
    let after = store.queue_info(q).expect("info");
    assert_eq!(after.depth, 4);
    assert!(after.bytes < before.bytes && after.bytes > 0);
    match store.ack(q, Seq(4)).await {
        Err(StoreError::NoSuchEntry { seq, .. }) => assert_eq!(seq, Seq(4)),
        other => panic!("double ack: {other:?}"),
    }
    for s in [2, 3, 5, 6] {
        store.ack(q, Seq(s)).await.expect("ack");
    }
    assert!(store.read(q, None, 10).expect("read").is_empty());
    assert_eq!(store.queue_info(q).expect("info").bytes, 0);
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Entries), 0);
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 0);
}
both_engines!(ack, ack_deletes);

async fn fan_out_is_stored_once(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&config(dir.path(), kind));
    let qs = [store.queue("a").expect("q"), store.queue("b").expect("q"), store.queue("c").expect("q")];
    let r = store.append(&msg("fan/out", "shared"), &qs).await.expect("append");
    assert_eq!(r, vec![Ok(Seq(1)), Ok(Seq(1)), Ok(Seq(1))]);
    let ids: Vec<u64> = qs.iter().map(|q| store.read(*q, None, 1).expect("read")[0].msg_id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one message id: {ids:?}");

    store.ack(qs[0], Seq(1)).await.expect("ack a");
    store.ack(qs[1], Seq(1)).await.expect("ack b");
    let last = store.read(qs[2], None, 1).expect("read");
    assert_eq!(text(&last[0].msg), "shared", "still there for the last queue");
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 1);
    assert_eq!(partition_len(dir.path(), kind, Partition::Refs), 1);

    let store = open(&config(dir.path(), kind));
    store.ack(qs[2], Seq(1)).await.expect("ack c");
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 0);
    assert_eq!(partition_len(dir.path(), kind, Partition::Refs), 0);
    assert_eq!(partition_len(dir.path(), kind, Partition::Entries), 0);
}
both_engines!(fan_out, fan_out_is_stored_once);

async fn reject_when_full(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), kind);
    cfg.queue_defaults = QueueLimits { max_messages: 3, ..QueueLimits::default() };
    let store = open(&cfg);
    let (q, roomy) = (store.queue("small").expect("q"), store.queue("other").expect("q"));
    for i in 0..3 {
        store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append");
    }
    let r = store.append(&msg("t", "m3"), &[q, roomy]).await.expect("append");
    assert_eq!(r, vec![Err(AppendError::QueueFull(q)), Ok(Seq(1))]);
    assert_eq!(store.stats().rejected_full, 1);
    store.ack(q, Seq(2)).await.expect("ack");
    assert_eq!(store.append(&msg("t", "m4"), &[q]).await.expect("append"), vec![Ok(Seq(4))]);
    store.close().await.expect("close");

    // By bytes: each message is ~30 bytes encoded; 100 bytes take three.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), kind);
    cfg.queue_defaults = QueueLimits { max_bytes: 100, ..QueueLimits::default() };
    let store = open(&cfg);
    let q = store.queue("bytes").expect("q");
    let mut taken = 0;
    for i in 0..10 {
        if store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append")[0].is_ok() {
            taken += 1;
        }
    }
    let info = store.queue_info(q).expect("info");
    assert_eq!(info.depth, taken);
    assert!(taken >= 2 && info.bytes <= 100, "{info:?}");
    assert_eq!(store.stats().rejected_full, 10 - taken);
    // A message larger than the whole limit never fits.
    let big = msg("t", &"x".repeat(200));
    assert_eq!(store.append(&big, &[q]).await.expect("append"), vec![Err(AppendError::QueueFull(q))]);
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Refs) as u64, taken);
}
both_engines!(reject, reject_when_full);

async fn drop_oldest_when_full(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), kind);
    cfg.queue_defaults = QueueLimits { max_messages: 3, overflow: Overflow::DropOldest, ..QueueLimits::default() };
    let store = open(&cfg);
    let (q, other) = (store.queue("drops").expect("q"), store.queue("keeps").expect("q"));
    for i in 0..5 {
        let targets = if i == 0 { vec![q, other] } else { vec![q] };
        let r = store.append(&msg("t", &format!("m{i}")), &targets).await.expect("append");
        assert!(r.iter().all(Result::is_ok));
    }
    let left: Vec<String> = store.read(q, None, 10).expect("read").iter().map(|e| text(&e.msg)).collect();
    assert_eq!(left, vec!["m2", "m3", "m4"]);
    assert_eq!(store.stats().dropped_overflow, 2);
    // m0 was dropped from `drops` but `keeps` still holds it.
    assert_eq!(text(&store.read(other, None, 1).expect("read")[0].msg), "m0");
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 4);

    // By bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), kind);
    cfg.queue_defaults = QueueLimits { max_bytes: 100, overflow: Overflow::DropOldest, ..QueueLimits::default() };
    let store = open(&cfg);
    let q = store.queue("bytes").expect("q");
    for i in 0..10 {
        let r = store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append");
        assert!(r[0].is_ok());
    }
    let info = store.queue_info(q).expect("info");
    assert!(info.bytes <= 100);
    let left: Vec<String> = store.read(q, None, 10).expect("read").iter().map(|e| text(&e.msg)).collect();
    assert_eq!(left.last().map(String::as_str), Some("m9"), "newest kept: {left:?}");
    assert_eq!(store.stats().dropped_overflow, 10 - info.depth);
    store.close().await.expect("close");
}
both_engines!(drop_oldest, drop_oldest_when_full);

/// Long enough that a slow CI machine reads the first entry before it expires.
const TTL_MS: u64 = 500;

async fn ttl_and_expiry(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), kind);
    cfg.queue_defaults = QueueLimits { ttl_ms: Some(TTL_MS), ..QueueLimits::default() };
    let store = open(&cfg);
    let q = store.queue("ttl").expect("q");
    store.append(&msg("t", "old"), &[q]).await.expect("append");
    let mut short = msg("t", "short");
    short.expires_ms = Some(now_ms().saturating_sub(1));
    store.append(&short, &[q]).await.expect("append");
    let read = store.read(q, None, 10).expect("read");
    assert_eq!(read.iter().map(|e| text(&e.msg)).collect::<Vec<_>>(), vec!["old"]);
    tokio::time::sleep(std::time::Duration::from_millis(TTL_MS + 100)).await;
    store.append(&msg("t", "new"), &[q]).await.expect("append");
    let read = store.read(q, None, 10).expect("read");
    assert_eq!(read.iter().map(|e| text(&e.msg)).collect::<Vec<_>>(), vec!["new"]);
    // The skipped entries are deleted by the writer, and counted.
    eventually(|| store.stats().expired == 2).await;
    eventually(|| store.queue_info(q).map(|i| i.depth) == Some(1)).await;
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 1);

    // Expired while the broker was down: deleted and counted at recovery.
    let store = open(&cfg);
    tokio::time::sleep(std::time::Duration::from_millis(TTL_MS + 100)).await;
    store.close().await.expect("close");
    let (store, recovery) = diglot_store::Store::open(&cfg).expect("reopen");
    assert_eq!(recovery.expired, 1);
    assert_eq!(recovery.entries, 0);
    assert_eq!(store.stats().expired, 1);
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 0);
}
both_engines!(ttl, ttl_and_expiry);

/// An expired entry of an MQTT session's queue that went out before (delivery count > 0)
/// stays until it is acknowledged [MQTT-3.3.2-5] [MQTT-4.4.0-1]: reads return it, the writer
/// and recovery keep it. Not in other queues, not one that never went out, and not under a
/// queue TTL (which the entry's expiry may be).
async fn started_session_entries_outlive_their_expiry(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    let session = store.queue("$session/c").expect("q");
    let plain = store.queue("plain").expect("q");
    let expiring = |payload: &str| {
        let mut m = msg("t", payload);
        m.expires_ms = Some(now_ms() + TTL_MS);
        m
    };
    store.append(&expiring("started"), &[session, plain]).await.expect("append");
    store.append(&expiring("not sent"), &[session, plain]).await.expect("append");
    for q in [session, plain] {
        let first = store.read(q, None, 1).expect("read")[0].seq;
        assert_eq!(store.record_delivery(q, first).await.expect("record"), 1);
    }
    tokio::time::sleep(std::time::Duration::from_millis(TTL_MS + 100)).await;
    let texts = |q| store.read(q, None, 10).expect("read").iter().map(|e| text(&e.msg)).collect::<Vec<_>>();
    assert_eq!(texts(session), vec!["started"]);
    assert_eq!(texts(plain), Vec::<String>::new());
    eventually(|| store.stats().expired == 3).await;
    store.close().await.expect("close");

    let (store, recovery) = diglot_store::Store::open(&cfg).expect("reopen");
    assert_eq!((recovery.entries, recovery.expired), (1, 0));
    let read = store.read(session, None, 10).expect("read");
    assert_eq!(read.iter().map(|e| (text(&e.msg), e.delivery_count)).collect::<Vec<_>>(), vec![("started".into(), 1)]);
    store.close().await.expect("close");

    // Under a queue TTL the entry's expiry may be the TTL's: not kept.
    let mut cfg = cfg;
    cfg.queue_defaults = QueueLimits { ttl_ms: Some(TTL_MS), ..QueueLimits::default() };
    let (store, recovery) = diglot_store::Store::open(&cfg).expect("reopen");
    assert_eq!((recovery.entries, recovery.expired), (0, 1));
    store.close().await.expect("close");
}
both_engines!(started_session_entries, started_session_entries_outlive_their_expiry);

async fn dead_letter_moves_the_entry(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), kind);
    cfg.max_redeliveries = 2;
    let store = open(&cfg);
    let q = store.queue("work").expect("q");
    store.append(&msg("t", "poison"), &[q]).await.expect("append");
    store.append(&msg("t", "fine"), &[q]).await.expect("append");
    let mut count = 0;
    while !store.exceeds_redeliveries(count) {
        count = store.record_delivery(q, Seq(1)).await.expect("delivery");
    }
    assert_eq!(count, 4, "first delivery + 2 redeliveries, then the 4th is refused");
    let (dlq, seq) = store.dead_letter(q, Seq(1)).await.expect("dead letter");
    assert_eq!(seq, Seq(1));
    assert_eq!(store.queue_id("$dlq/work"), Some(dlq));
    assert_eq!(store.stats().dead_lettered, 1);
    let rest: Vec<String> = store.read(q, None, 10).expect("read").iter().map(|e| text(&e.msg)).collect();
    assert_eq!(rest, vec!["fine"]);
    let dead = store.read(dlq, None, 10).expect("read");
    assert_eq!(dead.len(), 1);
    assert_eq!((text(&dead[0].msg).as_str(), dead[0].delivery_count), ("poison", 4));
    assert!(matches!(store.ack(q, Seq(1)).await, Err(StoreError::NoSuchEntry { .. })));
    store.ack(dlq, Seq(1)).await.expect("ack dead letter");
    store.ack(q, Seq(2)).await.expect("ack");
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 0);
}
both_engines!(dead_letter, dead_letter_moves_the_entry);

async fn drop_queue_releases_messages(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&config(dir.path(), kind));
    let (a, b) = (store.queue("a").expect("q"), store.queue("b").expect("q"));
    store.append(&msg("t", "both"), &[a, b]).await.expect("append");
    store.append(&msg("t", "only-a"), &[a]).await.expect("append");
    assert!(store.drop_queue("a").await.expect("drop"));
    assert!(!store.drop_queue("a").await.expect("drop again"));
    assert_eq!(store.queue_id("a"), None);
    assert!(matches!(store.read(a, None, 1), Err(StoreError::UnknownQueue(_))));
    let r = store.append(&msg("t", "late"), &[a]).await.expect("append");
    assert_eq!(r, vec![Err(AppendError::UnknownQueue(a))]);
    let again = store.queue("a").expect("recreate");
    assert_ne!(again, a, "queue ids are not reused");
    assert_eq!(text(&store.read(b, None, 1).expect("read")[0].msg), "both");
    store.close().await.expect("close");
    assert_eq!(partition_len(dir.path(), kind, Partition::Messages), 1);
}
both_engines!(drop_queue, drop_queue_releases_messages);
