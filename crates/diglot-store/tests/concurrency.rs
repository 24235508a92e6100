//! The writer thread and the durability policies, run against both engines: concurrent
//! appends under group commit, one sync per write under `every`, no sync under `none`, and
//! a closed store.

mod common;

use std::collections::HashMap;

use common::{config, msg, open, text};
use diglot_store::{Durability, EngineKind, Seq, StoreError};

const TASKS: usize = 8;
const PER_TASK: usize = 60;

async fn concurrent_group_commit(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    let store = open(&cfg);
    let q = store.queue("shared").expect("q");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                let r = store.append(&msg("t", &format!("{t}:{i}")), &[q]).await.expect("append");
                seqs.push(r[0].expect("accepted"));
            }
            seqs
        }));
    }
    for task in tasks {
        let seqs = task.await.expect("task");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "each task's seqs grow");
    }
    let total = TASKS * PER_TASK;
    let stats = store.stats();
    assert!(stats.syncs < total as u64, "group commit shared syncs: {stats:?}");
    let all = store.read(q, None, total + 10).expect("read");
    assert_eq!(all.len(), total);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    // Per task, the messages are in the order the task sent them.
    let mut next: HashMap<usize, usize> = HashMap::new();
    for e in &all {
        let body = text(&e.msg);
        let (t, i) = body.split_once(':').expect("t:i");
        let (t, i): (usize, usize) = (t.parse().expect("t"), i.parse().expect("i"));
        let want = next.entry(t).or_insert(0);
        assert_eq!(i, *want, "task {t} out of order");
        *want += 1;
    }
    assert!(next.values().all(|n| *n == PER_TASK));

    // Acks from many tasks at once, interleaved with appends to another queue.
    let other = store.queue("other").expect("q");
    let mut tasks = Vec::new();
    for chunk in all.chunks(PER_TASK) {
        let store = store.clone();
        let seqs: Vec<Seq> = chunk.iter().map(|e| e.seq).collect();
        tasks.push(tokio::spawn(async move {
            for s in seqs {
                store.ack(q, s).await.expect("ack");
                store.append(&msg("t", "x"), &[other]).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(store.queue_info(q).expect("info").depth, 0);
    assert_eq!(store.queue_info(other).expect("info").depth, total as u64);
    store.close().await.expect("close");
}
both_engines!(group_commit, concurrent_group_commit);

async fn every_and_none_policies(kind: EngineKind) {
    for durability in [Durability::Every, Durability::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path(), kind);
        cfg.durability = durability;
        let store = open(&cfg);
        let q = store.queue("p").expect("q");
        for i in 0..20 {
            store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append");
        }
        store.ack(q, Seq(1)).await.expect("ack");
        let syncs = store.stats().syncs;
        match durability {
            Durability::Every => assert!(syncs >= 21, "one sync per write: {syncs}"),
            _ => assert!(!store.syncs_writes()),
        }
        store.close().await.expect("close");
        let store = open(&cfg);
        assert_eq!(store.read(q, None, 100).expect("read").len(), 19, "{durability:?}");
        store.close().await.expect("close");
    }
}
both_engines!(policies, every_and_none_policies);

async fn closed_store_refuses_writes(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&config(dir.path(), kind));
    let q = store.queue("c").expect("q");
    let clone = store.clone();
    store.close().await.expect("close");
    assert!(matches!(clone.append(&msg("t", "late"), &[q]).await, Err(StoreError::Closed)));
    assert!(matches!(clone.ack(q, Seq(1)).await, Err(StoreError::Closed)));
    assert!(matches!(clone.queue("new"), Err(StoreError::Closed)));
    drop(clone);
    // Dropping the last handle released the directory: it opens again.
    open(&config(dir.path(), kind)).close().await.expect("close");
}
both_engines!(closed, closed_store_refuses_writes);

async fn drop_without_close_syncs(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), kind);
    {
        let store = open(&cfg);
        let q = store.queue("d").expect("q");
        store.append(&msg("t", "kept"), &[q]).await.expect("append");
    }
    let store = open(&cfg);
    let q = store.queue("d").expect("q");
    assert_eq!(text(&store.read(q, None, 1).expect("read")[0].msg), "kept");
    store.close().await.expect("close");
}
both_engines!(drop_closes, drop_without_close_syncs);
