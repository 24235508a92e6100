//! Issue #9: two Diglot nodes acting as one broker through a real redis-server.
//!
//! Each test starts its own `redis-server` on a free loopback port with no persistence and
//! kills it at the end (`scripts/redis-test-server` installs the binary if it is missing; the
//! tests fail with that advice when it is not found). The brokers run in-process on port 0.

mod common;
mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use diglot::Config;
use redis::{free_port, Redis};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn node_config(redis: &Redis, node: &str, prefix: &str) -> Config {
    let mut c = Config::ephemeral();
    c.cluster.redis_url = redis.url();
    c.cluster.node_id = node.to_string();
    c.cluster.channel_prefix = prefix.to_string();
    c
}

async fn cluster_view(b: &diglot::Broker) -> serde_json::Value {
    let (status, body) = http_get(b.ws_addr().unwrap(), "/api/v1/cluster").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Waits until `check` holds for `b`'s cluster view.
async fn wait_view(b: &diglot::Broker, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let ok = tokio::time::timeout(PATIENCE, async {
        loop {
            if check(&cluster_view(b).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if ok.is_err() {
        panic!("{what}: last view {}", cluster_view(b).await);
    }
}

/// Waits until `b` knows that `node` subscribed to `filter`.
async fn wait_interest(b: &diglot::Broker, node: &str, filter: &str) {
    wait_view(b, &format!("{node} wants {filter}"), |v| {
        v["nodes"].as_array().is_some_and(|ns| {
            ns.iter()
                .any(|n| n["node_id"] == node && n["filters"].as_array().is_some_and(|f| f.iter().any(|f| f == filter)))
        })
    })
    .await;
}

async fn wait_link(b: &diglot::Broker, nodes: usize) {
    wait_view(b, "link up", |v| v["link_up"] == true && v["nodes"].as_array().is_some_and(|n| n.len() == nodes)).await;
}

/// The incoming packets of an MQTT client whose event loop runs in its own task (so that its
/// publishes go out while the test waits on another client).
type Events = tokio::sync::mpsc::UnboundedReceiver<Packet>;

fn mqtt(id: &str, b: &diglot::Broker) -> (AsyncClient, Events) {
    let addr = b.mqtt_addr().unwrap();
    mqtt_with(MqttOptions::new(id, addr.ip().to_string(), addr.port()))
}

fn mqtt_with(mut o: MqttOptions) -> (AsyncClient, Events) {
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(p) = e {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    (client, rx)
}

async fn next_packet<T>(ev: &mut Events, mut want: impl FnMut(Packet) -> Option<T>) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(t) = want(ev.recv().await.expect("MQTT client running")) {
                return t;
            }
        }
    })
    .await
    .expect("MQTT packet within patience")
}

async fn subscribed(client: &AsyncClient, ev: &mut Events, filter: &str) {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    next_packet(ev, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
}

async fn next_publish(ev: &mut Events) -> (String, Vec<u8>) {
    next_packet(ev, |p| match p {
        Packet::Publish(p) => Some((p.topic, p.payload.to_vec())),
        _ => None,
    })
    .await
}

async fn stomp_at(b: &diglot::Broker, headers: &[(&str, &str)]) -> Stomp {
    let mut s = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    let mut h = vec![("accept-version", "1.2"), ("host", "localhost"), ("heart-beat", "0,0")];
    h.extend_from_slice(headers);
    s.send("CONNECT", &h, "").await;
    assert_eq!(s.frame().await.unwrap().command, "CONNECTED");
    s
}

async fn stomp_subscribe(s: &mut Stomp, destination: &str) {
    s.send("SUBSCRIBE", &[("id", "0"), ("destination", destination), ("receipt", "r")], "").await;
    assert_eq!(s.frame().await.unwrap().command, "RECEIPT");
}

/// A raw RESP connection subscribed to a channel: what the nodes really publish.
struct Spy {
    conn: TcpStream,
    seen: Vec<u8>,
}

impl Spy {
    async fn subscribe(redis: &Redis, channel: &str) -> Spy {
        let mut conn = TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap();
        let cmd = format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n", channel.len());
        conn.write_all(cmd.as_bytes()).await.unwrap();
        let mut spy = Spy { conn, seen: Vec::new() };
        spy.read_until(b"subscribe").await;
        spy.seen.clear();
        spy
    }

    async fn read_until(&mut self, needle: &[u8]) {
        tokio::time::timeout(PATIENCE, async {
            while !self.seen.windows(needle.len()).any(|w| w == needle) {
                let mut buf = [0u8; 4096];
                let n = self.conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "redis closed the spy");
                self.seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("the spy saw it");
    }

    /// Pub/Sub messages seen so far.
    fn messages(&self) -> usize {
        self.seen.windows(9).filter(|w| w == b"\r\nmessage").count()
    }
}

#[tokio::test]
async fn messages_cross_nodes_both_ways_once_each() {
    let redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t1")).await;
    let b = broker_with(node_config(&redis, "b", "t1")).await;
    wait_link(&a, 2).await;
    wait_link(&b, 2).await;

    // STOMP on B and MQTT on A (the publishing node) subscribe to the same topics.
    let mut stomp = stomp_at(&b, &[]).await;
    stomp_subscribe(&mut stomp, "/topic/x/#").await;
    let (client, mut ev) = mqtt("mqtt-a", &a);
    subscribed(&client, &mut ev, "x/#").await;
    wait_interest(&a, "b", "x/#").await;
    wait_interest(&b, "a", "x/#").await;

    // MQTT on A → STOMP on B (and once to A's own subscriber).
    client.publish("x/1", QoS::AtLeastOnce, false, "from-mqtt").await.unwrap();
    let m = stomp.frame().await.unwrap();
    assert_eq!(
        (m.command.as_str(), m.header("destination"), m.body.as_slice()),
        ("MESSAGE", Some("/topic/x/1"), &b"from-mqtt"[..])
    );
    assert_eq!(next_publish(&mut ev).await, ("x/1".to_string(), b"from-mqtt".to_vec()));

    // STOMP on B → MQTT on A, and once to B's own subscriber.
    stomp.send("SEND", &[("destination", "/topic/x/2"), ("persistent", "true")], "from-stomp").await;
    assert_eq!(next_publish(&mut ev).await, ("x/2".to_string(), b"from-stomp".to_vec()));
    let m = stomp.frame().await.unwrap();
    assert_eq!(m.body, b"from-stomp");

    // No duplicates on either side: the next message each client sees is the next one sent.
    client.publish("x/3", QoS::AtMostOnce, false, "marker").await.unwrap();
    assert_eq!(next_publish(&mut ev).await.1, b"marker");
    assert_eq!(stomp.frame().await.unwrap().body, b"marker");

    // The HTTP API publishes into the cluster too, with its properties.
    let body =
        r#"{"topic":"x/api","payload":"from-http","qos":1,"properties":[["k","v"]],"content_type":"text/plain"}"#;
    let req = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut http = TcpStream::connect(a.ws_addr().unwrap()).await.unwrap();
    http.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, http.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    let m = stomp.frame().await.unwrap();
    assert_eq!(
        (m.body.as_slice(), m.header("k"), m.header("content-type")),
        (&b"from-http"[..], Some("v"), Some("text/plain"))
    );
    assert_eq!(next_publish(&mut ev).await.1, b"from-http");

    // Per-publisher order across nodes.
    for i in 0..50 {
        client.publish("x/seq", QoS::AtLeastOnce, false, i.to_string()).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(stomp.frame().await.unwrap().body, i.to_string().as_bytes());
        assert_eq!(next_publish(&mut ev).await.1, i.to_string().as_bytes());
    }

    let (status, body) = http_get(a.ws_addr().unwrap(), "/readyz").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"cluster\":\"up\""), "{body}");
    let metrics = scrape(a.ws_addr().unwrap()).await;
    assert_eq!(sample(&metrics, "diglot_cluster_link_up", &[]), 1.0);
    assert!(sample(&metrics, "diglot_cluster_messages_total", &[("outcome", "forwarded")]) >= 52.0);
    assert!(sample(&metrics, "diglot_cluster_messages_total", &[("outcome", "received")]) >= 1.0);

    // SIGTERM-style shutdown unregisters at once: B forgets A before A could time out.
    a.shutdown().await;
    wait_view(&b, "a left", |v| v["nodes"].as_array().is_some_and(|n| n.len() == 1)).await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_without_remote_interest_publishes_nothing() {
    let redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t2")).await;
    let b = broker_with(node_config(&redis, "b", "t2")).await;
    wait_link(&a, 2).await;
    wait_link(&b, 2).await;
    let mut spy = Spy::subscribe(&redis, "t2:msg").await;

    let (client, mut ev) = mqtt("local-only", &a);
    subscribed(&client, &mut ev, "local/#").await;
    // A share group whose only member is on A is served on A: nothing crosses for it either.
    let (member, mut mev) = mqtt("local-member", &a);
    subscribed(&member, &mut mev, "$share/g/local/#").await;
    for i in 0..20 {
        client.publish("local/x", QoS::AtLeastOnce, false, format!("l{i}")).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(next_publish(&mut ev).await.1, format!("l{i}").as_bytes());
        assert_eq!(next_publish(&mut mev).await.1, format!("l{i}").as_bytes());
    }

    // Now B wants something: the first message on the channel is the one B wants.
    let mut stomp = stomp_at(&b, &[]).await;
    stomp_subscribe(&mut stomp, "/topic/wanted").await;
    wait_interest(&a, "b", "wanted").await;
    client.publish("local/x", QoS::AtLeastOnce, false, "still-local").await.unwrap();
    client.publish("wanted", QoS::AtLeastOnce, false, "remote-marker").await.unwrap();
    assert_eq!(stomp.frame().await.unwrap().body, b"remote-marker");
    spy.read_until(b"remote-marker").await;
    assert_eq!(spy.messages(), 1, "only the wanted message went to Redis");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_retained_message_set_on_a_is_received_on_subscribe_at_b() {
    let redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t3")).await;
    wait_link(&a, 1).await;
    let (client, mut ev) = mqtt("retainer", &a);
    client.publish("status/a", QoS::AtLeastOnce, true, "online").await.unwrap();
    next_packet(&mut ev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;

    // B starts later: it reads the cluster's retained messages when its link comes up.
    let b = broker_with(node_config(&redis, "b", "t3")).await;
    wait_link(&b, 2).await;
    let (sub, mut sev) = mqtt("sub-b", &b);
    subscribed(&sub, &mut sev, "status/+").await;
    assert_eq!(next_publish(&mut sev).await, ("status/a".to_string(), b"online".to_vec()));

    // A change on A reaches B's subscriber and B's cache; a later subscriber on B gets it.
    wait_interest(&a, "b", "status/+").await;
    client.publish("status/a", QoS::AtLeastOnce, true, "away").await.unwrap();
    assert_eq!(next_publish(&mut sev).await.1, b"away");
    let (late, mut lev) = mqtt("late-sub", &b);
    subscribed(&late, &mut lev, "status/#").await;
    assert_eq!(next_publish(&mut lev).await.1, b"away");
    a.shutdown().await;
    b.shutdown().await;
}

/// An MQTT 5 CONNECT (clean start, no properties) by hand.
fn mqtt5_connect(client_id: &str) -> Vec<u8> {
    let mut var = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    var.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    var.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10, var.len() as u8];
    p.extend_from_slice(&var);
    p
}

#[tokio::test]
async fn a_client_id_held_on_a_is_taken_over_from_b() {
    let redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t4")).await;
    let b = broker_with(node_config(&redis, "b", "t4")).await;
    wait_link(&a, 2).await;
    wait_link(&b, 2).await;

    // MQTT 5 on A, then the same client id on B: A sends DISCONNECT 0x8E and closes.
    let mut old = tcp_connect(a.mqtt_addr().unwrap()).await;
    old.send(&mqtt5_connect("dev-1")).await.unwrap();
    assert_eq!(old.recv().await.unwrap()[0], 0x20, "CONNACK");
    let mut new = tcp_connect(b.mqtt_addr().unwrap()).await;
    new.send(&mqtt_connect_bytes("dev-1", 60, true)).await.unwrap();
    assert_eq!(new.recv().await.unwrap()[0], 0x20, "CONNACK on B");
    let goodbye = old.read_to_close().await;
    let packets = mqtt_packets(&goodbye);
    assert!(
        packets.iter().any(|(t, p)| *t == 0xE && p.get(2) == Some(&0x8E)),
        "DISCONNECT 0x8E (session taken over), got {packets:?}"
    );

    // STOMP on A with a client-id, then on B: A sends ERROR.
    let mut old = stomp_at(&a, &[("client-id", "desk-7")]).await;
    let _new = stomp_at(&b, &[("client-id", "desk-7")]).await;
    let f = old.frame().await.expect("ERROR before the close");
    assert_eq!(f.command, "ERROR");
    assert!(f.header("message").is_some_and(|m| m.contains("taken over")), "{f:?}");
    // B still works for its new holder.
    assert!(b.connections() >= 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_restart_keeps_local_traffic_and_cross_node_traffic_resumes() {
    let mut redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t5")).await;
    let b = broker_with(node_config(&redis, "b", "t5")).await;
    wait_link(&a, 2).await;
    wait_link(&b, 2).await;
    let mut stomp = stomp_at(&b, &[]).await;
    stomp_subscribe(&mut stomp, "/topic/r/#").await;
    let (client, mut ev) = mqtt("pub-a", &a);
    subscribed(&client, &mut ev, "r/#").await;
    wait_interest(&a, "b", "r/#").await;
    client.publish("r/1", QoS::AtLeastOnce, false, "before").await.unwrap();
    assert_eq!(stomp.frame().await.unwrap().body, b"before");
    assert_eq!(next_publish(&mut ev).await.1, b"before");

    redis.kill();
    wait_view(&a, "link down on a", |v| v["link_up"] == false).await;
    let ws = a.ws_addr().unwrap();
    assert_eq!(sample(&scrape(ws).await, "diglot_cluster_link_up", &[]), 0.0);
    let (status, body) = http_get(ws, "/readyz").await;
    assert_eq!(status, 503, "a node without its link is not ready for new clients (it still serves its own)");
    assert!(body.contains("\"cluster\":\"down\""), "{body}");
    // Local traffic continues.
    client.publish("r/2", QoS::AtLeastOnce, false, "local-during-outage").await.unwrap();
    assert_eq!(next_publish(&mut ev).await.1, b"local-during-outage");

    // Redis comes back empty: both nodes reconnect and register their interest again.
    redis.spawn().await;
    wait_link(&a, 2).await;
    wait_link(&b, 2).await;
    wait_interest(&a, "b", "r/#").await;
    client.publish("r/3", QoS::AtLeastOnce, false, "after").await.unwrap();
    assert_eq!(next_publish(&mut ev).await.1, b"after");
    let m = stomp.frame().await.unwrap();
    assert_eq!(m.body, b"after", "cross-node traffic resumed (the outage's message is lost across nodes)");
    assert_eq!(sample(&scrape(ws).await, "diglot_cluster_link_up", &[]), 1.0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_starts_in_local_mode_when_redis_is_unreachable() {
    let port = free_port();
    let mut config = Config::ephemeral();
    config.cluster.redis_url = format!("redis://127.0.0.1:{port}/");
    config.cluster.channel_prefix = "t6".into();
    let a = broker_with(config).await;
    let view = cluster_view(&a).await;
    assert_eq!(view["link_up"], false);
    let node_id = view["node_id"].as_str().unwrap().to_string();
    let port_of: SocketAddr = a.bound()[0].addr;
    assert!(node_id.ends_with(&format!(":{}", port_of.port())), "default node id is host:port, got {node_id}");
    let (client, mut ev) = mqtt("alone", &a);
    subscribed(&client, &mut ev, "t").await;
    client.publish("t", QoS::AtMostOnce, false, "still works").await.unwrap();
    assert_eq!(next_publish(&mut ev).await.1, b"still works");

    // Redis appears on that port later: the node joins.
    let mut redis = Redis { child: None, port, args: Vec::new(), dir: None };
    redis.spawn().await;
    wait_link(&a, 1).await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_qos1_message_from_another_node_waits_in_a_persistent_session() {
    let redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t7")).await;
    let b = broker_with(node_config(&redis, "b", "t7")).await;
    wait_link(&a, 2).await;
    wait_link(&b, 2).await;
    let persistent = |b: &diglot::Broker| {
        let addr = b.mqtt_addr().unwrap();
        let mut o = MqttOptions::new("sleeper", addr.ip().to_string(), addr.port());
        o.set_clean_session(false);
        o
    };
    let (sub, mut sev) = mqtt_with(persistent(&b));
    subscribed(&sub, &mut sev, "p/#").await;
    sub.disconnect().await.unwrap();
    tokio::time::timeout(PATIENCE, async { while sev.recv().await.is_some() {} }).await.unwrap();
    // The session's subscription stays, so B still wants p/#.
    wait_interest(&a, "b", "p/#").await;

    let (client, mut ev) = mqtt("waker", &a);
    client.publish("p/1", QoS::AtLeastOnce, false, "kept").await.unwrap();
    next_packet(&mut ev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    // Stored on B before the next remote message is taken; the marker makes sure it arrived.
    let mut stomp = stomp_at(&b, &[]).await;
    stomp_subscribe(&mut stomp, "/topic/p/marker").await;
    wait_interest(&a, "b", "p/marker").await;
    client.publish("p/marker", QoS::AtLeastOnce, false, "m").await.unwrap();
    assert_eq!(stomp.frame().await.unwrap().body, b"m");

    let (_again, mut aev) = mqtt_with(persistent(&b));
    let (topic, payload) = next_publish(&mut aev).await;
    assert_eq!((topic.as_str(), payload.as_slice()), ("p/1", &b"kept"[..]));
    a.shutdown().await;
    b.shutdown().await;
}

/// Sends one command to Redis over RESP and returns the raw reply.
async fn redis_cmd(redis: &Redis, args: &[&[u8]]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap();
    let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    }
    conn.write_all(&cmd).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, conn.read(&mut buf)).await.unwrap().unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn a_dead_node_times_out_and_garbage_on_the_channels_is_ignored() {
    let redis = Redis::start().await;
    let a = broker_with(node_config(&redis, "a", "t8")).await;
    wait_link(&a, 1).await;
    // A node that heartbeat once and then died (kill -9): it never says goodbye.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    redis_cmd(&redis, &[b"SADD", b"t8:interest:ghost", b"g/#"]).await;
    redis_cmd(&redis, &[b"HSET", b"t8:nodes", b"ghost", now.as_bytes()]).await;
    wait_interest(&a, "ghost", "g/#").await;

    // Strangers publish on the cluster's channels: nothing breaks, the junk is counted.
    let mut truncated = b"DGM\x01\x00\x01\x00\x00\x00\x05ghost".to_vec();
    truncated.extend_from_slice(&[0xff, 0xff]);
    for junk in [&b"hello"[..], &truncated, b"DGM\x07later-version"] {
        redis_cmd(&redis, &[b"PUBLISH", b"t8:msg", junk]).await;
    }
    redis_cmd(&redis, &[b"PUBLISH", b"t8:ctl", b"{not json"]).await;
    redis_cmd(&redis, &[b"PUBLISH", b"t8:ctl", br#"{"v":1,"op":"claim","node":"ghost"}"#]).await;

    wait_view(&a, "ghost timed out", |v| {
        v["nodes"].as_array().is_some_and(|n| n.len() == 1) && v["messages"]["rejected"].as_u64() >= Some(4)
    })
    .await;
    assert_eq!(redis_cmd(&redis, &[b"HEXISTS", b"t8:nodes", b"ghost"]).await, b":0\r\n", "its entry is cleared");
    let (client, mut ev) = mqtt("still-here", &a);
    subscribed(&client, &mut ev, "g/1").await;
    client.publish("g/1", QoS::AtMostOnce, false, "ok").await.unwrap();
    assert_eq!(next_publish(&mut ev).await.1, b"ok");
    a.shutdown().await;
}

/// The retained topics `b` holds now: a fresh subscriber to `filter` gets them before the
/// marker it publishes itself (retained messages are queued at SUBSCRIBE).
async fn retained_at(b: &diglot::Broker, filter: &str, marker: &str) -> Vec<(String, Vec<u8>)> {
    let (c, mut ev) = mqtt(&format!("look-{marker}"), b);
    subscribed(&c, &mut ev, filter).await;
    c.publish(marker, QoS::AtLeastOnce, false, "marker").await.unwrap();
    let mut seen = Vec::new();
    loop {
        let (topic, payload) = next_publish(&mut ev).await;
        if topic == marker {
            c.disconnect().await.unwrap();
            return seen;
        }
        seen.push((topic, payload));
    }
}

#[tokio::test]
async fn a_retained_clear_missed_during_an_outage_is_reconciled_from_redis() {
    let data = tempfile::tempdir().unwrap();
    let mut redis = Redis::start_persistent(data.path()).await;
    let b = broker_with(node_config(&redis, "b", "t9")).await;
    wait_link(&b, 1).await;
    let (client, mut ev) = mqtt("setter", &b);
    for (topic, payload) in [("r/gone", "old"), ("r/kept", "stays")] {
        client.publish(topic, QoS::AtLeastOnce, true, payload).await.unwrap();
        next_packet(&mut ev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }
    let ok = tokio::time::timeout(PATIENCE, async {
        while redis_cmd(&redis, &[b"HLEN", b"t9:retained"]).await != b":2\r\n" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    ok.await.expect("both retained messages in Redis");

    // The link drops; meanwhile another node clears r/gone in Redis (B never hears of it),
    // and B's own client sets r/new.
    redis.kill();
    wait_view(&b, "link down", |v| v["link_up"] == false).await;
    client.publish("r/new", QoS::AtLeastOnce, true, "during").await.unwrap();
    next_packet(&mut ev, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    let mut elsewhere = Redis::start_persistent(data.path()).await;
    let deleted = tokio::time::timeout(PATIENCE, async {
        loop {
            // It answers -LOADING while it reads the append-only file.
            let reply = redis_cmd(&elsewhere, &[b"HDEL", b"t9:retained", b"r/gone"]).await;
            if !reply.starts_with(b"-LOADING") {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let deleted = deleted.await.expect("Redis loads its file");
    assert_eq!(String::from_utf8_lossy(&deleted), ":1\r\n", "the file kept r/gone");
    elsewhere.kill();

    redis.spawn().await;
    wait_link(&b, 1).await;
    // Redis is the truth for what it holds: r/gone goes, r/kept stays, r/new (set here during
    // the outage) stays and is now in Redis too.
    let ok = tokio::time::timeout(PATIENCE, async {
        let mut round = 0;
        loop {
            round += 1;
            let mut topics: Vec<String> =
                retained_at(&b, "r/#", &format!("r/marker{round}")).await.into_iter().map(|(t, _)| t).collect();
            topics.sort();
            if topics == ["r/kept", "r/new"] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    ok.await.expect("r/gone cleared on B after the link came back");
    assert_eq!(redis_cmd(&redis, &[b"HEXISTS", b"t9:retained", b"r/new"]).await, b":1\r\n");
    b.shutdown().await;
}
