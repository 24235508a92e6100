//! Issue #9 with real `diglot` processes: three daemons (the built binary, port 0, their own
//! config and store) on one real redis-server. A shared subscription with members on every
//! node, and a STOMP `/queue` with consumers on two nodes and its sender on the third, get
//! each message exactly once cluster-wide; a node killed with SIGKILL is timed out by the
//! others, after which its group gets nothing more. A `/queue` message handed to another node
//! is acknowledged only once that node stored it, or, if it cannot answer, once the sender's
//! node stored it itself.
//!
//! Every daemon is killed when its guard drops, so a failing test leaves no process behind.

mod common;
mod redis;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use redis::Redis;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// A daemon with its temp directory (config, store), killed on drop.
struct Node {
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

/// Starts `diglot` as cluster node `id`, heartbeating fast so that a killed node times out
/// within the test.
fn node(redis: &Redis, id: &str, prefix: &str) -> Node {
    node_with(redis, id, prefix, "node_timeout_ms = 1500\n")
}

/// [`node`] with more `[cluster]` keys (`node_timeout_ms` among them).
fn node_with(redis: &Redis, id: &str, prefix: &str, cluster: &str) -> Node {
    let dir = tempfile::Builder::new().prefix(&format!("diglot-node-{id}-")).tempdir().unwrap();
    let extra = format!(
        "[cluster]\nredis_url = {:?}\nnode_id = {id:?}\nchannel_prefix = {prefix:?}\nheartbeat_ms = 200\n{cluster}",
        redis.url()
    );
    Node { daemon: Daemon::start_with(dir.path(), &extra), _dir: dir }
}

async fn view(ws: SocketAddr) -> serde_json::Value {
    let (status, body) = http_get(ws, "/api/v1/cluster").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Waits until `check` holds for the node's cluster view.
async fn wait_view(ws: SocketAddr, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let ok = tokio::time::timeout(PATIENCE, async {
        loop {
            if check(&view(ws).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if ok.is_err() {
        panic!("{what}: last view {}", view(ws).await);
    }
}

/// The members (or consumers) that `node` has of `key`, as `ws`'s node sees them.
fn members(v: &serde_json::Value, node: &str, key: &str) -> u64 {
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    nodes.iter().find(|n| n["node_id"] == node).and_then(|n| n["groups"][key].as_u64()).unwrap_or(0)
}

/// Waits until the node at `ws` sees exactly `expect` (node → members of `key`).
async fn wait_members(ws: SocketAddr, key: &str, expect: &[(&str, u64)]) {
    wait_view(ws, &format!("members of {key}: {expect:?}"), |v| {
        v["link_up"] == true
            && v["nodes"].as_array().is_some_and(|n| n.len() == expect.len())
            && expect.iter().all(|(node, n)| members(v, node, key) == *n)
    })
    .await;
}

/// An MQTT client whose publishes arrive on `tx`, labelled with `who`; it runs as long as
/// the returned handle is kept.
async fn member(
    addr: SocketAddr,
    who: &str,
    filters: &[&str],
    tx: mpsc::UnboundedSender<(String, String, String)>,
) -> AsyncClient {
    let mut o = MqttOptions::new(who, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 100);
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    let who = who.to_string();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            match e {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = acked_tx.send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    if tx.send((who.clone(), p.topic, payload)).is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
    for f in filters {
        client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(PATIENCE, acked.recv()).await.expect("SUBACK in time").expect("client running");
    }
    client
}

/// Receives until every member in `waiting` got the marker topic `end`; returns the other
/// payloads that start with `prefix`, by member.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(String, String, String)>,
    mut waiting: BTreeSet<String>,
    end: &str,
    prefix: &str,
) -> BTreeMap<String, Vec<String>> {
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let done = tokio::time::timeout(PATIENCE, async {
        while !waiting.is_empty() {
            let (who, topic, payload) = rx.recv().await.expect("members running");
            if topic == end {
                waiting.remove(&who);
            } else if payload.starts_with(prefix) {
                got.entry(who).or_default().push(payload);
            }
        }
    })
    .await;
    assert!(done.is_ok(), "markers missing from {waiting:?}; got {got:?}");
    got
}

/// Every payload `<prefix><i>` for i in 0..n exactly once over all members.
fn exactly_once(got: &BTreeMap<String, Vec<String>>, prefix: &str, n: usize) {
    let all: Vec<&String> = got.values().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    let want: BTreeSet<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(all.len(), unique.len(), "duplicates: {got:?}");
    let missing: Vec<&String> = want.iter().filter(|w| !unique.contains(w)).collect();
    assert!(missing.is_empty(), "missing {missing:?}; got {got:?}");
    assert_eq!(all.len(), n);
}

async fn publisher(addr: SocketAddr, id: &str) -> AsyncClient {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 200);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    client
}

const N: usize = 60;
const GROUP: &str = "$share/w/jobs/#";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_over_three_processes_gets_each_message_once_and_survives_a_kill() {
    let redis = Redis::start().await;
    let a = node(&redis, "a", "n1");
    let b = node(&redis, "b", "n1");
    let mut c = node(&redis, "c", "n1");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let filters = [GROUP, "end/#"];
    let _members = [
        member(a.daemon.mqtt, "a1", &filters, tx.clone()).await,
        member(b.daemon.mqtt, "b1", &filters, tx.clone()).await,
        member(c.daemon.mqtt, "c1", &filters, tx.clone()).await,
        member(c.daemon.mqtt, "c2", &filters, tx.clone()).await,
        // A plain subscriber on the publishing node gets every message once, beside the group.
        member(a.daemon.mqtt, "a-plain", &["jobs/#", "end/#"], tx.clone()).await,
    ];
    let key = GROUP;
    wait_members(a.daemon.ws, key, &[("a", 1), ("b", 1), ("c", 2)]).await;

    let publish = publisher(a.daemon.mqtt, "pub-a").await;
    for i in 0..N {
        publish.publish("jobs/x", QoS::AtLeastOnce, false, format!("m{i}")).await.unwrap();
    }
    // Per-publisher order holds across nodes: once a member has the marker, it has every
    // group message that went to it.
    publish.publish("end/1", QoS::AtLeastOnce, false, "end").await.unwrap();
    let every = ["a1", "b1", "c1", "c2", "a-plain"].map(String::from).into_iter().collect();
    let mut got = collect(&mut rx, every, "end/1", "m").await;
    let plain = got.remove("a-plain").unwrap_or_default();
    assert_eq!(plain.len(), N, "the plain subscriber on the publishing node: each message once");
    exactly_once(&got, "m", N);
    for who in ["a1", "b1", "c1", "c2"] {
        assert!(got.get(who).is_some_and(|m| !m.is_empty()), "{who} got a share: {got:?}");
    }

    // kill -9 C: A and B time it out and give its share to the survivors only.
    c.daemon.child.kill().unwrap();
    let _ = c.daemon.child.wait();
    wait_members(a.daemon.ws, key, &[("a", 1), ("b", 1)]).await;
    wait_members(b.daemon.ws, key, &[("a", 1), ("b", 1)]).await;
    for i in 0..N {
        publish.publish("jobs/y", QoS::AtLeastOnce, false, format!("k{i}")).await.unwrap();
    }
    publish.publish("end/2", QoS::AtLeastOnce, false, "end").await.unwrap();
    let survivors = ["a1", "b1", "a-plain"].map(String::from).into_iter().collect();
    let mut got = collect(&mut rx, survivors, "end/2", "k").await;
    got.remove("a-plain");
    exactly_once(&got, "k", N);
    assert!(got.keys().all(|w| w == "a1" || w == "b1"), "{got:?}");
    assert!(got.get("b1").is_some_and(|m| !m.is_empty()), "the remote survivor got a share: {got:?}");
}

async fn stomp(addr: SocketAddr) -> Stomp {
    let mut s = Stomp::new(tcp_connect(addr).await);
    s.connect("1.2").await;
    s
}

/// A STOMP consumer of `/queue/work` whose MESSAGE bodies arrive on `tx`.
async fn consumer(addr: SocketAddr, who: &str, tx: mpsc::UnboundedSender<(String, String)>) {
    let mut s = stomp(addr).await;
    s.send("SUBSCRIBE", &[("id", "0"), ("destination", "/queue/work"), ("ack", "auto"), ("receipt", "r")], "").await;
    assert_eq!(s.frame().await.unwrap().command, "RECEIPT");
    let who = who.to_string();
    tokio::spawn(async move {
        while let Some(f) = s.frame().await {
            if f.command == "MESSAGE" && tx.send((who.clone(), String::from_utf8_lossy(&f.body).into_owned())).is_err()
            {
                return;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stomp_queue_with_consumers_on_two_processes_gets_each_message_once_from_a_third() {
    let redis = Redis::start().await;
    let a = node(&redis, "a", "n2");
    let b = node(&redis, "b", "n2");
    let c = node(&redis, "c", "n2");
    let (tx, mut rx) = mpsc::unbounded_channel();
    consumer(a.daemon.stomp, "a", tx.clone()).await;
    consumer(b.daemon.stomp, "b", tx.clone()).await;
    wait_members(c.daemon.ws, "$queue/work", &[("a", 1), ("b", 1), ("c", 0)]).await;

    let mut sender = stomp(c.daemon.stomp).await;
    for i in 0..N {
        sender.send("SEND", &[("destination", "/queue/work"), ("persistent", "true")], &format!("q{i}")).await;
    }
    sender.send("SEND", &[("destination", "/queue/work"), ("persistent", "true"), ("receipt", "sent")], "q-last").await;
    assert_eq!(sender.frame().await.unwrap().command, "RECEIPT");
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let done = tokio::time::timeout(PATIENCE, async {
        // The last message goes to one consumer: collect until it and N others arrived.
        let mut total = 0;
        let mut last = false;
        while !(last && total > N) {
            let (who, body) = rx.recv().await.expect("consumers running");
            last |= body == "q-last";
            total += 1;
            got.entry(who).or_default().push(body);
        }
    })
    .await;
    assert!(done.is_ok(), "not everything arrived: {got:?}");
    for m in got.values_mut() {
        m.retain(|b| b != "q-last");
    }
    exactly_once(&got, "q", N);
    assert!(got.len() == 2 && got.values().all(|m| !m.is_empty()), "both consumers got a share: {got:?}");
    // Nothing was kept on the sender's node: its copy of the queue stayed empty.
    let (status, body) = http_get(c.daemon.ws, "/api/v1/queues").await;
    assert_eq!(status, 200, "{body}");
    let queues: serde_json::Value = serde_json::from_str(&body).unwrap();
    let depth = queues["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == "queue/work"))
        .map(|q| q["depth"].clone());
    assert!(depth.is_none() || depth == Some(serde_json::json!(0)), "stored on the sender's node too: {body}");
}

/// Sends `signal` (`STOP`, `CONT`) to a daemon.
fn signal(daemon: &Daemon, signal: &str) {
    let pid = daemon.child.id().to_string();
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The depth of `queue/<name>` on a node (0 if it has no such queue).
async fn depth(ws: SocketAddr, name: &str) -> u64 {
    let (status, body) = http_get(ws, "/api/v1/queues").await;
    assert_eq!(status, 200, "{body}");
    let queues: serde_json::Value = serde_json::from_str(&body).unwrap();
    let queue = format!("queue/{name}");
    let found = queues["queues"].as_array().and_then(|qs| qs.iter().find(|q| q["name"] == queue.as_str()).cloned());
    found.map_or(0, |q| q["depth"].as_u64().expect("a depth"))
}

/// The node's `messages` counter `outcome` in its cluster view.
async fn counter(ws: SocketAddr, outcome: &str) -> u64 {
    view(ws).await["messages"][outcome].as_u64().unwrap_or(0)
}

/// A STOMP client subscribed to `/queue/<name>` (with `ack`), receipt confirmed.
async fn queue_consumer(addr: SocketAddr, name: &str, ack: &str) -> Stomp {
    let mut s = stomp(addr).await;
    let destination = format!("/queue/{name}");
    s.send("SUBSCRIBE", &[("id", "0"), ("destination", &destination), ("ack", ack), ("receipt", "r")], "").await;
    assert_eq!(s.frame().await.unwrap().command, "RECEIPT");
    s
}

async fn frame_in_time(s: &mut Stomp) -> StompFrame {
    tokio::time::timeout(PATIENCE, s.frame()).await.expect("a frame in time").expect("connection open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_a_queue_message_handed_to_another_node_waits_until_it_stored_it() {
    let redis = Redis::start().await;
    // Long timeouts: B stays assigned while it is stopped, and no fallback can answer first.
    let cluster = "node_timeout_ms = 30000\nhandoff_timeout_ms = 60000\n";
    let a = node_with(&redis, "a", "n3", cluster);
    let b = node_with(&redis, "b", "n3", cluster);
    let mut on_b = queue_consumer(b.daemon.stomp, "handed", "client").await;
    wait_members(a.daemon.ws, "$queue/handed", &[("a", 0), ("b", 1)]).await;
    let mut sender = stomp(a.daemon.stomp).await;

    // B cannot store anything while it is stopped: A must not acknowledge meanwhile.
    signal(&b.daemon, "STOP");
    let receipt = [("destination", "/queue/handed"), ("persistent", "true"), ("receipt", "one")];
    sender.send("SEND", &receipt, "kept on b").await;
    let early = tokio::time::timeout(Duration::from_millis(1500), sender.frame()).await;
    signal(&b.daemon, "CONT");
    assert!(early.is_err(), "acknowledged before the node it was handed to stored it: {early:?}");

    let f = frame_in_time(&mut sender).await;
    assert_eq!((f.command.as_str(), f.header("receipt-id")), ("RECEIPT", Some("one")), "{f:?}");
    let m = frame_in_time(&mut on_b).await;
    assert_eq!((m.command.as_str(), m.body.as_slice()), ("MESSAGE", &b"kept on b"[..]));
    assert!(counter(a.daemon.ws, "confirmed").await >= 1);
    assert!(counter(b.daemon.ws, "confirms_sent").await >= 1);
    assert_eq!(depth(a.daemon.ws, "handed").await, 0, "confirmed, so not kept on the sender's node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_message_whose_node_died_is_kept_on_the_senders_node_after_the_handoff_timeout() {
    let redis = Redis::start().await;
    // B stays assigned for the whole test after its kill; A waits 300 ms for it.
    let a = node_with(&redis, "a", "n4", "node_timeout_ms = 30000\nhandoff_timeout_ms = 300\n");
    let mut b = node_with(&redis, "b", "n4", "node_timeout_ms = 30000\n");
    let _on_b = queue_consumer(b.daemon.stomp, "orphan", "auto").await;
    wait_members(a.daemon.ws, "$queue/orphan", &[("a", 0), ("b", 1)]).await;
    b.daemon.child.kill().unwrap();
    let _ = b.daemon.child.wait();

    let mut sender = stomp(a.daemon.stomp).await;
    let receipt = [("destination", "/queue/orphan"), ("persistent", "true"), ("receipt", "two")];
    sender.send("SEND", &receipt, "saved on a").await;
    let f = frame_in_time(&mut sender).await;
    assert_eq!((f.command.as_str(), f.header("receipt-id")), ("RECEIPT", Some("two")), "{f:?}");
    // Acknowledged, so stored: in A's own copy of the queue, since B never confirmed.
    assert_eq!(depth(a.daemon.ws, "orphan").await, 1);
    assert_eq!(counter(a.daemon.ws, "handoff_timeout").await, 1);

    // The same over MQTT, whose PUBACKs are pipelined: the PUBACK waits for the fallback too.
    let addr = a.daemon.mqtt;
    let (client, mut ev) = AsyncClient::new(MqttOptions::new("mqtt-sender", addr.ip().to_string(), addr.port()), 10);
    client.publish("$queue/orphan", QoS::AtLeastOnce, false, "mqtt on a").await.unwrap();
    let acked = tokio::time::timeout(PATIENCE, async {
        while !matches!(ev.poll().await.expect("MQTT connection"), Event::Incoming(Packet::PubAck(_))) {}
    })
    .await;
    assert!(acked.is_ok(), "a PUBACK in time");
    assert_eq!(depth(a.daemon.ws, "orphan").await, 2, "acknowledged, so in A's copy of the queue");
    assert_eq!(counter(a.daemon.ws, "handoff_timeout").await, 2);

    let mut on_a = queue_consumer(a.daemon.stomp, "orphan", "auto").await;
    for body in [&b"saved on a"[..], b"mqtt on a"] {
        let m = frame_in_time(&mut on_a).await;
        assert_eq!((m.command.as_str(), m.body.as_slice()), ("MESSAGE", body));
    }
}
