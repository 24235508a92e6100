//! Acknowledged means durable across a process crash: a child process (this test binary,
//! re-run as `crash_child`) appends to a queue and prints each acknowledged message; the
//! parent kills it with SIGKILL mid-stream, reopens the directory, and checks that every
//! acknowledged message is there, in order, once. Run against both engines, several kill
//! points each.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{config, msg, open, text};
use diglot_store::EngineKind;

const DIR_VAR: &str = "DIGLOT_STORE_CRASH_DIR";
const KIND_VAR: &str = "DIGLOT_STORE_CRASH_ENGINE";

/// The child: appends until killed. Does nothing unless started by `crash_round`.
#[test]
#[ignore = "run by the crash tests as a child process"]
fn crash_child() {
    let (Ok(dir), Ok(kind)) = (std::env::var(DIR_VAR), std::env::var(KIND_VAR)) else { return };
    let kind = EngineKind::from_name(&kind).expect("engine name");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let store = open(&config(std::path::Path::new(&dir), kind));
        let q = store.queue("crash").expect("queue");
        for i in 0u64.. {
            let r = store.append(&msg("t", &format!("m{i}")), &[q]).await.expect("append");
            r[0].expect("accepted");
            println!("acked {i}");
        }
    });
}

fn crash_round(kind: EngineKind, dir: &std::path::Path, kill_after: u64) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(KIND_VAR, kind.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(i) = line.strip_prefix("acked ") {
            let i: u64 = i.parse().expect("number");
            acked = Some(i);
            if i >= kill_after {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let acked = acked.expect("the child acknowledged something");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = open(&config(dir, kind));
        let q = store.queue("crash").expect("queue");
        let entries = store.read(q, None, usize::MAX).expect("read");
        let bodies: Vec<String> = entries.iter().map(|e| text(&e.msg)).collect();
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
        // Everything acknowledged is there, in order, once; at most a few unacknowledged
        // appends that were already written follow.
        for i in 0..=acked {
            assert_eq!(bodies.get(i as usize).map(String::as_str), Some(format!("m{i}").as_str()));
        }
        for (j, b) in bodies.iter().enumerate() {
            assert_eq!(b, &format!("m{j}"), "no gaps or duplicates");
        }
        // Drain, so that the next round starts from an empty queue with growing seqs.
        for e in &entries {
            store.ack(q, e.seq).await.expect("ack");
        }
        store.close().await.expect("close");
    });
}

fn crash_rounds(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    for kill_after in [5, 60, 17] {
        crash_round(kind, dir.path(), kill_after);
    }
}

#[test]
fn crash_fjall() {
    crash_rounds(EngineKind::Fjall);
}

#[test]
fn crash_sled() {
    crash_rounds(EngineKind::Sled);
}
