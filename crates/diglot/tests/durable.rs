//! Durable delivery end to end: MQTT persistent sessions and STOMP queues keep acknowledged
//! messages across reconnects, restarts and `kill -9`, and redeliver them in order.

mod common;

use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn session(id: &str, addr: std::net::SocketAddr) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(false);
    o
}

/// Creates a persistent session subscribed to `filter`, then leaves.
async fn park_session(id: &str, addr: std::net::SocketAddr, filter: &str) {
    let (c, mut ev) = AsyncClient::new(session(id, addr), 10);
    until(&mut ev, |e| matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())).await;
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    until(&mut ev, |e| matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())).await;
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(PATIENCE, async { while ev.poll().await.is_ok() {} }).await;
}

/// Publishes `n` QoS 1 messages and waits for every PUBACK.
async fn publish_acked(addr: std::net::SocketAddr, topic: &str, n: usize) {
    let mut o = MqttOptions::new("publisher", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut ev) = AsyncClient::new(o, n + 10);
    for i in 0..n {
        c.publish(topic, QoS::AtLeastOnce, false, format!("m{i}")).await.unwrap();
    }
    let mut acks = 0;
    until(&mut ev, |e| {
        if matches!(e, Event::Incoming(Packet::PubAck(_))) {
            acks += 1;
        }
        (acks == n).then_some(())
    })
    .await;
    c.disconnect().await.unwrap();
}

/// Reconnects the session and returns the first `n` messages it receives.
async fn drain_session(id: &str, addr: std::net::SocketAddr, n: usize) -> (bool, Vec<String>) {
    let (_c, mut ev) = AsyncClient::new(session(id, addr), 10);
    let present = until(&mut ev, |e| match e {
        Event::Incoming(Packet::ConnAck(a)) => Some(a.session_present),
        _ => None,
    })
    .await;
    let mut got = Vec::new();
    while got.len() < n {
        let p = until(&mut ev, |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(p.qos, QoS::AtLeastOnce);
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    (present, got)
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

#[tokio::test]
async fn mqtt_persistent_session_keeps_messages_while_away() {
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    park_session("away", addr, "jobs/#").await;
    publish_acked(addr, "jobs/a", 50).await;
    let (present, got) = drain_session("away", addr, 50).await;
    assert!(present, "CONNACK session present");
    assert_eq!(got, expected(50));
    b.shutdown().await;
}

/// A session that subscribed at QoS 1 gets QoS 2 messages queued while it was away at QoS 1
/// [MQTT-3.8.4-8], also when it comes back without subscribing again (its queue's bindings
/// carry the granted QoS).
#[tokio::test]
async fn mqtt_persistent_session_gets_at_most_its_granted_qos() {
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    park_session("capped", addr, "capped/#").await;
    let mut o = MqttOptions::new("capped-pub", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut ev) = AsyncClient::new(o, 10);
    for i in 0..3 {
        c.publish("capped/t", QoS::ExactlyOnce, false, format!("m{i}")).await.unwrap();
    }
    let mut done = 0;
    until(&mut ev, |e| {
        if matches!(e, Event::Incoming(Packet::PubComp(_))) {
            done += 1;
        }
        (done == 3).then_some(())
    })
    .await;
    c.disconnect().await.unwrap();
    // `drain_session` checks that each arrives at QoS 1.
    let (present, got) = drain_session("capped", addr, 3).await;
    assert!(present);
    assert_eq!(got, expected(3));
    b.shutdown().await;
}

#[tokio::test]
async fn mqtt_persistent_session_survives_a_restart() {
    let b = broker().await;
    park_session("restart", b.mqtt_addr().unwrap(), "jobs/+").await;
    publish_acked(b.mqtt_addr().unwrap(), "jobs/b", 30).await;
    let config = b.stop_keeping_data().await;
    let b = broker_with(config).await;
    let (present, got) = drain_session("restart", b.mqtt_addr().unwrap(), 30).await;
    assert!(present);
    assert_eq!(got, expected(30));
    b.shutdown().await;
}

#[tokio::test]
async fn clean_session_discards_the_stored_session() {
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    park_session("cleaned", addr, "jobs/#").await;
    publish_acked(addr, "jobs/c", 5).await;
    let mut o = session("cleaned", addr);
    o.set_clean_session(true);
    let (_c, mut ev) = AsyncClient::new(o, 10);
    let present = until(&mut ev, |e| match e {
        Event::Incoming(Packet::ConnAck(a)) => Some(a.session_present),
        _ => None,
    })
    .await;
    assert!(!present);
    drop(ev);
    // The session and its five messages are gone: a new persistent session starts empty.
    let (present, _) = {
        let (_c, mut ev) = AsyncClient::new(session("cleaned", addr), 10);
        let present = until(&mut ev, |e| match e {
            Event::Incoming(Packet::ConnAck(a)) => Some(a.session_present),
            _ => None,
        })
        .await;
        (present, ())
    };
    assert!(!present);
    b.shutdown().await;
}

/// Unacknowledged messages come back first, in order, with DUP=1, after a reconnect.
#[tokio::test]
async fn mqtt_unacked_messages_are_redelivered_in_order_with_dup() {
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    park_session("raw", addr, "raw/#").await;
    publish_acked(addr, "raw/x", 6).await;

    // A raw client reads the six PUBLISHes, acknowledges only the 2nd and 4th, and leaves.
    let mut c = tcp_connect(addr).await;
    c.send(&mqtt_connect_bytes("raw", 30, false)).await.unwrap();
    let mut buf = Vec::new();
    let publishes = loop {
        buf.extend(c.recv().await.expect("data"));
        let ps: Vec<_> = mqtt_packets(&buf).into_iter().filter(|(k, _)| *k == 3).collect();
        if ps.len() >= 6 {
            break ps;
        }
    };
    assert_eq!(mqtt_packets(&buf)[0].1, vec![0x20, 2, 1, 0], "CONNACK with session present");
    let pid = |p: &[u8]| {
        let tlen = u16::from_be_bytes([p[2], p[3]]) as usize;
        [p[4 + tlen], p[5 + tlen]]
    };
    for i in [1, 3] {
        let id = pid(&publishes[i].1);
        c.send(&[0x40, 2, id[0], id[1]]).await.unwrap();
    }
    c.send(&[0xE0, 0]).await.unwrap();
    c.read_to_close().await;

    let mut c = tcp_connect(addr).await;
    c.send(&mqtt_connect_bytes("raw", 30, false)).await.unwrap();
    let mut buf = Vec::new();
    let again = loop {
        buf.extend(c.recv().await.expect("data"));
        let ps: Vec<_> = mqtt_packets(&buf).into_iter().filter(|(k, _)| *k == 3).collect();
        if ps.len() >= 4 {
            break ps;
        }
    };
    let payloads: Vec<String> = again
        .iter()
        .map(|(_, p)| {
            let tlen = u16::from_be_bytes([p[2], p[3]]) as usize;
            String::from_utf8_lossy(&p[6 + tlen..]).into_owned()
        })
        .collect();
    assert_eq!(payloads, vec!["m0", "m2", "m4", "m5"]);
    for (_, p) in &again {
        assert_eq!(p[0] & 0x08, 0x08, "DUP set on a redelivery");
    }
    // The original packet identifiers are reused [MQTT-4.4.0-1].
    assert_eq!(pid(&again[0].1), pid(&publishes[0].1));
    b.shutdown().await;
}

/// Encodes a QoS 1 PUBLISH with packet id `pid`.
fn publish_qos1(topic: &str, pid: u16, payload: &[u8]) -> Vec<u8> {
    let mut var = Vec::new();
    var.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    var.extend_from_slice(topic.as_bytes());
    var.extend_from_slice(&pid.to_be_bytes());
    var.extend_from_slice(payload);
    let mut p = vec![0x32];
    let mut len = var.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        p.push(byte);
        if len == 0 {
            break;
        }
    }
    p.extend(var);
    p
}

/// The payload of a PUBLISH packet (QoS ≥ 1), given the whole packet.
fn publish_payload(packet: &[u8]) -> (bool, [u8; 2], Vec<u8>) {
    let mut i = 1;
    while packet[i] & 0x80 != 0 {
        i += 1;
    }
    i += 1;
    let tlen = u16::from_be_bytes([packet[i], packet[i + 1]]) as usize;
    let pid = [packet[i + 2 + tlen], packet[i + 3 + tlen]];
    (packet[0] & 0x08 != 0, pid, packet[i + 4 + tlen..].to_vec())
}

/// `kill -9` mid-stream loses no acknowledged message: after a restart on the same data
/// directory every acknowledged message is delivered, in publish order, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_no_acknowledged_message() {
    const N: usize = 3000;
    for (round, kill_after) in [40usize, 700, 1900].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path());
        park_session("victim", daemon.mqtt, "kill/#").await;

        let mut publisher = tokio::net::TcpStream::connect(daemon.mqtt).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        publisher.write_all(&mqtt_connect_bytes("killer", 30, true)).await.unwrap();
        let (mut rd, mut wr) = publisher.into_split();
        let writer = tokio::spawn(async move {
            for i in 0..N {
                let pid = (i + 1) as u16;
                if wr.write_all(&publish_qos1("kill/x", pid, i.to_string().as_bytes())).await.is_err() {
                    break;
                }
            }
        });
        // Record every PUBACK; kill the broker once `kill_after` have arrived.
        let mut acked = std::collections::BTreeSet::new();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut killed = false;
        loop {
            let n = match tokio::time::timeout(PATIENCE, rd.read(&mut chunk)).await.expect("publisher reads") {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let packets = mqtt_packets(&buf);
            let used: usize = packets.iter().map(|(_, p)| p.len()).sum();
            for (kind, p) in packets {
                if kind == 4 {
                    acked.insert(u16::from_be_bytes([p[2], p[3]]) as usize - 1);
                }
            }
            buf.drain(..used);
            if !killed && acked.len() >= kill_after {
                signal(&daemon.child, "-KILL");
                killed = true;
            }
        }
        assert!(killed, "round {round}: the kill point was reached");
        writer.abort();
        let Daemon { child, guard: _guard, .. } = daemon;
        assert!(!wait_exit(child).success());

        // Restart on the same data directory and drain the session.
        let daemon = Daemon::start(dir.path());
        let mut sub = tcp_connect(daemon.mqtt).await;
        sub.send(&mqtt_connect_bytes("victim", 30, false)).await.unwrap();
        let last_acked = *acked.iter().max().unwrap();
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        while seen.last().is_none_or(|&l| l < last_acked) {
            let Some(data) = sub.recv().await else { panic!("round {round}: closed after {} messages", seen.len()) };
            buf.extend(data);
            let packets = mqtt_packets(&buf);
            let used: usize = packets.iter().map(|(_, p)| p.len()).sum();
            for (kind, p) in packets {
                if kind == 3 {
                    let (_, pid, payload) = publish_payload(&p);
                    seen.push(String::from_utf8(payload).unwrap().parse::<usize>().unwrap());
                    sub.send(&[0x40, 2, pid[0], pid[1]]).await.unwrap();
                }
            }
            buf.drain(..used);
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "round {round}: in publish order, no duplicates: {seen:?}");
        let seen: std::collections::BTreeSet<usize> = seen.into_iter().collect();
        let lost: Vec<&usize> = acked.difference(&seen).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged but lost: {lost:?}");
        signal(&daemon.child, "-TERM");
        let Daemon { child, guard: _guard, .. } = daemon;
        assert!(wait_exit(child).success());
    }
}

async fn stomp_client(b: &diglot::Broker) -> Stomp {
    let mut s = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    s.connect("1.2").await;
    s
}

async fn send_with_receipt(s: &mut Stomp, destination: &str, body: &str) {
    s.send("SEND", &[("destination", destination), ("receipt", body)], body).await;
    let r = s.frame().await.expect("RECEIPT");
    assert_eq!((r.command.as_str(), r.header("receipt-id")), ("RECEIPT", Some(body)), "{r:?}");
}

#[tokio::test]
async fn stomp_queue_competing_consumers_round_robin() {
    let b = broker().await;
    let mut c1 = stomp_client(&b).await;
    let mut c2 = stomp_client(&b).await;
    for c in [&mut c1, &mut c2] {
        c.send("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/work"), ("receipt", "sub")], "").await;
        assert_eq!(c.frame().await.unwrap().command, "RECEIPT");
    }
    let mut p = stomp_client(&b).await;
    for i in 0..10 {
        send_with_receipt(&mut p, "/queue/work", &format!("job{i}")).await;
    }
    let mut got = Vec::new();
    for (c, name) in [(&mut c1, "c1"), (&mut c2, "c2")] {
        for _ in 0..5 {
            let m = c.frame().await.unwrap();
            assert_eq!(m.command, "MESSAGE");
            assert_eq!(m.header("destination"), Some("/queue/work"));
            got.push((String::from_utf8(m.body).unwrap(), name));
        }
    }
    got.sort();
    let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    let mut want: Vec<String> = (0..10).map(|i| format!("job{i}")).collect();
    want.sort();
    assert_eq!(bodies, want, "each message reaches exactly one consumer");
    b.shutdown().await;
}

/// A consumer with a window > 1 acks out of order, leaves, and comes back: the rest arrive
/// first, in order, flagged as redelivered with their count.
#[tokio::test]
async fn stomp_unacked_queue_messages_are_redelivered_in_order() {
    let b = broker().await;
    let mut p = stomp_client(&b).await;
    for i in 0..6 {
        send_with_receipt(&mut p, "/queue/orders", &format!("o{i}")).await;
    }
    let mut c = stomp_client(&b).await;
    c.send("SUBSCRIBE", &[("id", "s"), ("destination", "/queue/orders"), ("ack", "client-individual")], "").await;
    let mut msgs = Vec::new();
    for _ in 0..6 {
        msgs.push(c.frame().await.unwrap());
    }
    let bodies: Vec<String> = msgs.iter().map(|m| String::from_utf8(m.body.clone()).unwrap()).collect();
    assert_eq!(bodies, ["o0", "o1", "o2", "o3", "o4", "o5"]);
    assert!(msgs.iter().all(|m| m.header("redelivered").is_none()));
    for i in [4, 1] {
        c.send("ACK", &[("id", msgs[i].header("ack").unwrap())], "").await;
    }
    c.send("DISCONNECT", &[("receipt", "bye")], "").await;
    assert_eq!(c.frame().await.unwrap().command, "RECEIPT");

    let mut c = stomp_client(&b).await;
    c.send("SUBSCRIBE", &[("id", "s"), ("destination", "/queue/orders"), ("ack", "client-individual")], "").await;
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(c.frame().await.unwrap());
    }
    let bodies: Vec<String> = again.iter().map(|m| String::from_utf8(m.body.clone()).unwrap()).collect();
    assert_eq!(bodies, ["o0", "o2", "o3", "o5"]);
    for m in &again {
        assert_eq!(m.header("redelivered"), Some("true"), "{m:?}");
        assert_eq!(m.header("redelivery-count"), Some("1"), "{m:?}");
    }
    b.shutdown().await;
}

/// A queue entry that waited in a connection's outbox, because the connection's window was
/// full with another subscription's messages, was never sent: when the connection ends it goes
/// back as not delivered, so its next delivery carries no `redelivered` flag (MQTT: no DUP) and
/// its count toward `max_redeliveries` is unchanged. The entries that were sent come back
/// flagged.
#[tokio::test]
async fn a_queue_entry_the_client_never_got_is_not_flagged_as_redelivered() {
    let mut config = diglot::Config::ephemeral();
    config.limits.max_inflight = 2;
    let b = broker_with(config).await;
    let mut p = stomp_client(&b).await;
    for (queue, body) in
        [("/queue/full", "f0"), ("/queue/full", "f1"), ("/queue/waiting", "w0"), ("/queue/waiting", "w1")]
    {
        send_with_receipt(&mut p, queue, body).await;
    }
    let mut c = stomp_client(&b).await;
    let sub = |id, dest| [("id", id), ("destination", dest), ("ack", "client-individual"), ("receipt", id)];
    c.send("SUBSCRIBE", &sub("f", "/queue/full"), "").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let f = c.frame().await.unwrap();
        if f.command == "MESSAGE" {
            got.push(String::from_utf8(f.body).unwrap());
        }
    }
    assert_eq!(got, ["f0", "f1"]);
    // The window (2) is full: `/queue/waiting` hands its entries to the connection's outbox,
    // where they wait.
    c.send("SUBSCRIBE", &sub("w", "/queue/waiting"), "").await;
    let r = c.frame().await.unwrap();
    assert_eq!((r.command.as_str(), r.header("receipt-id")), ("RECEIPT", Some("w")), "{r:?}");
    c.send("DISCONNECT", &[("receipt", "bye")], "").await;
    assert_eq!(c.frame().await.unwrap().command, "RECEIPT");

    let mut c = stomp_client(&b).await;
    c.send("SUBSCRIBE", &sub("w", "/queue/waiting"), "").await;
    c.send("SUBSCRIBE", &sub("f", "/queue/full"), "").await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let f = c.frame().await.unwrap();
        if f.command == "MESSAGE" {
            // Acknowledged as they come, so that the window (2) lets the rest through.
            c.send("ACK", &[("id", f.header("ack").unwrap())], "").await;
            let flag = f.header("redelivered").map(str::to_owned);
            seen.push((String::from_utf8(f.body).unwrap(), flag));
        }
    }
    seen.sort();
    let t = Some("true".to_owned());
    assert_eq!(seen, [("f0".into(), t.clone()), ("f1".into(), t), ("w0".into(), None), ("w1".into(), None)]);
    b.shutdown().await;
}

/// After `max_redeliveries` a message goes to the dead-letter queue, `/queue/dlq.<name>`.
#[tokio::test]
async fn stomp_nacked_messages_reach_the_dead_letter_queue() {
    let mut config = diglot::Config::ephemeral();
    config.store.max_redeliveries = 2;
    let b = broker_with(config).await;
    let mut p = stomp_client(&b).await;
    send_with_receipt(&mut p, "/queue/poison", "bad").await;
    send_with_receipt(&mut p, "/queue/poison", "rejected").await;

    let mut c = stomp_client(&b).await;
    c.send(
        "SUBSCRIBE",
        &[("id", "s"), ("destination", "/queue/poison"), ("ack", "client-individual"), ("prefetch-count", "1")],
        "",
    )
    .await;
    // "bad" is refused with requeue three times (first delivery + 2 redeliveries).
    for n in 0..3 {
        let m = c.frame().await.unwrap();
        assert_eq!(m.body, b"bad", "delivery {n}");
        c.send("NACK", &[("id", m.header("ack").unwrap())], "").await;
    }
    // Then it is dead-lettered, and "rejected" is refused without requeue: straight to the DLQ.
    let m = c.frame().await.unwrap();
    assert_eq!(m.body, b"rejected");
    c.send("NACK", &[("id", m.header("ack").unwrap()), ("requeue", "false")], "").await;

    let mut d = stomp_client(&b).await;
    d.send("SUBSCRIBE", &[("id", "d"), ("destination", "/queue/dlq.poison"), ("ack", "client-individual")], "").await;
    let first = d.frame().await.unwrap();
    let second = d.frame().await.unwrap();
    assert_eq!((first.body.as_slice(), second.body.as_slice()), (&b"bad"[..], &b"rejected"[..]));
    b.shutdown().await;
}

#[tokio::test]
async fn stomp_queue_survives_a_restart_and_mqtt_reaches_it() {
    let b = broker().await;
    let mut p = stomp_client(&b).await;
    send_with_receipt(&mut p, "/queue/mixed", "from-stomp").await;
    // MQTT publishes into the same queue as $queue/mixed.
    publish_acked_to(b.mqtt_addr().unwrap(), "$queue/mixed", "from-mqtt").await;
    drop(p);
    let config = b.stop_keeping_data().await;
    let b = broker_with(config).await;
    let mut c = stomp_client(&b).await;
    c.send("SUBSCRIBE", &[("id", "s"), ("destination", "/queue/mixed"), ("ack", "client")], "").await;
    let a = c.frame().await.unwrap();
    let z = c.frame().await.unwrap();
    assert_eq!((a.body.as_slice(), z.body.as_slice()), (&b"from-stomp"[..], &b"from-mqtt"[..]));
    b.shutdown().await;
}

async fn publish_acked_to(addr: std::net::SocketAddr, topic: &str, body: &str) {
    let mut o = MqttOptions::new("queue-publisher", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut ev) = AsyncClient::new(o, 10);
    c.publish(topic, QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
    until(&mut ev, |e| matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())).await;
}

/// A STOMP durable topic subscription keeps what is published while its client is away.
#[tokio::test]
async fn stomp_durable_topic_subscription_keeps_messages_while_away() {
    let b = broker().await;
    let mut s = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    s.send("CONNECT", &[("accept-version", "1.2"), ("host", "x"), ("client-id", "dash")], "").await;
    assert_eq!(s.frame().await.unwrap().command, "CONNECTED");
    s.send("SUBSCRIBE", &[("id", "news"), ("destination", "/topic/news/#"), ("durable", "true"), ("receipt", "r")], "")
        .await;
    assert_eq!(s.frame().await.unwrap().command, "RECEIPT");
    s.send("DISCONNECT", &[("receipt", "bye")], "").await;
    assert_eq!(s.frame().await.unwrap().command, "RECEIPT");

    // An MQTT publisher while the STOMP client is away.
    publish_acked_to(b.mqtt_addr().unwrap(), "news/today", "headline").await;

    let mut s = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    s.send("CONNECT", &[("accept-version", "1.2"), ("host", "x"), ("client-id", "dash")], "").await;
    assert_eq!(s.frame().await.unwrap().command, "CONNECTED");
    s.send("SUBSCRIBE", &[("id", "news"), ("destination", "/topic/news/#"), ("durable", "true")], "").await;
    let m = s.frame().await.unwrap();
    assert_eq!(m.command, "MESSAGE");
    assert_eq!(m.body, b"headline");
    assert_eq!(m.header("destination"), Some("/topic/news/today"));
    b.shutdown().await;
}

/// The same durable behaviour on the sled engine.
#[tokio::test]
async fn sled_engine_keeps_a_session_across_a_restart() {
    let mut config = diglot::Config::ephemeral();
    config.store.engine = diglot_store::EngineKind::Sled;
    let b = broker_with(config).await;
    park_session("sled", b.mqtt_addr().unwrap(), "s/#").await;
    publish_acked(b.mqtt_addr().unwrap(), "s/x", 10).await;
    let config = b.stop_keeping_data().await;
    let b = broker_with(config).await;
    let (present, got) = drain_session("sled", b.mqtt_addr().unwrap(), 10).await;
    assert!(present);
    assert_eq!(got, expected(10));
    b.shutdown().await;
}

/// A session taken over by a new connection hands its unacknowledged messages to the new one
/// first, in order.
#[tokio::test]
async fn takeover_keeps_redelivery_order() {
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    park_session("twin", addr, "t/#").await;
    publish_acked(addr, "t/x", 8).await;
    // The first connection reads everything and acknowledges nothing.
    let mut first = tcp_connect(addr).await;
    first.send(&mqtt_connect_bytes("twin", 30, false)).await.unwrap();
    let mut buf = Vec::new();
    while mqtt_packets(&buf).iter().filter(|(k, _)| *k == 3).count() < 8 {
        buf.extend(first.recv().await.unwrap());
    }
    // A second connection with the same client id takes over while the first is still open.
    let mut second = tcp_connect(addr).await;
    second.send(&mqtt_connect_bytes("twin", 30, false)).await.unwrap();
    let mut buf = Vec::new();
    let got = loop {
        buf.extend(second.recv().await.unwrap());
        let ps: Vec<_> = mqtt_packets(&buf).into_iter().filter(|(k, _)| *k == 3).collect();
        if ps.len() >= 8 {
            break ps;
        }
    };
    let bodies: Vec<String> = got.iter().map(|(_, p)| String::from_utf8(publish_payload(p).2).unwrap()).collect();
    assert_eq!(bodies, expected(8));
    assert!(got.iter().all(|(_, p)| publish_payload(p).0), "all flagged DUP");
    // The first connection was closed by the takeover.
    first.read_to_close().await;
    b.shutdown().await;
}

/// The same for a STOMP `/queue`: every SEND that got its RECEIPT before `kill -9` is
/// delivered after the restart, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_no_receipted_stomp_send() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const N: usize = 2000;
    for (round, kill_after) in [25usize, 600].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path());
        let stream = tokio::net::TcpStream::connect(daemon.stomp).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        wr.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0").await.unwrap();
        let writer = tokio::spawn(async move {
            for i in 0..N {
                let frame =
                    format!("SEND\ndestination:/queue/k\nreceipt:{i}\ncontent-length:{}\n\n{i}\0", i.to_string().len());
                if wr.write_all(frame.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let mut receipted = std::collections::BTreeSet::new();
        let mut order = Vec::new();
        let mut text = String::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut killed = false;
        loop {
            let n = match tokio::time::timeout(PATIENCE, rd.read(&mut chunk)).await.expect("reads") {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
            while let Some(end) = text.find('\0') {
                let frame: String = text.drain(..=end).collect();
                if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("receipt-id:")) {
                    receipted.insert(id.parse::<usize>().unwrap());
                    order.push(id.parse::<usize>().unwrap());
                }
            }
            if !killed && receipted.len() >= kill_after {
                signal(&daemon.child, "-KILL");
                killed = true;
            }
        }
        assert!(killed, "round {round}");
        // The SENDs are pipelined (read on while earlier ones are stored); receipts keep order.
        assert!(order.windows(2).all(|w| w[0] + 1 == w[1]) && order.first() == Some(&0), "round {round}: {order:?}");
        writer.abort();
        let Daemon { child, guard: _guard, .. } = daemon;
        assert!(!wait_exit(child).success());

        let daemon = Daemon::start(dir.path());
        let mut c = Stomp::new(tcp_connect(daemon.stomp).await);
        c.connect("1.2").await;
        c.send("SUBSCRIBE", &[("id", "k"), ("destination", "/queue/k"), ("ack", "auto")], "").await;
        let last = *receipted.iter().max().unwrap();
        let mut seen = Vec::new();
        while seen.last().is_none_or(|&l| l < last) {
            let m = c.frame().await.expect("MESSAGE");
            assert_eq!(m.command, "MESSAGE");
            seen.push(String::from_utf8(m.body).unwrap().parse::<usize>().unwrap());
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "round {round}: in order, once: {seen:?}");
        let seen: std::collections::BTreeSet<usize> = seen.into_iter().collect();
        let lost: Vec<&usize> = receipted.difference(&seen).collect();
        assert!(lost.is_empty(), "round {round}: receipted but lost: {lost:?}");
        signal(&daemon.child, "-TERM");
        let Daemon { child, guard: _guard, .. } = daemon;
        assert!(wait_exit(child).success());
    }
}

/// Issue 8: SENDs with receipts are pipelined, and every frame is still answered in order: the
/// RECEIPTs of 300 durable SENDs written at once, then a SUBSCRIBE's and a DISCONNECT's
/// (STOMP 1.2: a DISCONNECT receipt comes after every earlier frame was processed), and the
/// messages are all in the queue.
#[tokio::test]
async fn issue_8_pipelined_stomp_sends_are_answered_in_frame_order() {
    const N: usize = 300;
    let b = broker().await;
    let mut c = Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await);
    c.connect("1.2").await;
    let mut burst = String::new();
    for i in 0..N {
        burst.push_str(&format!("SEND\ndestination:/queue/p\npersistent:true\nreceipt:{i}\n\n{i}\0"));
    }
    burst.push_str("SUBSCRIBE\nid:t\ndestination:/topic/p\nreceipt:sub\n\n\0DISCONNECT\nreceipt:bye\n\n\0");
    c.conn.send(burst.as_bytes()).await.expect("send");
    let mut ids = Vec::new();
    while let Some(f) = c.frame().await {
        assert_eq!(f.command, "RECEIPT", "{f:?}");
        ids.push(f.header("receipt-id").unwrap_or_default().to_owned());
    }
    let want: Vec<String> = (0..N).map(|i| i.to_string()).chain(["sub".into(), "bye".into()]).collect();
    assert_eq!(ids, want);
    let mut d = stomp_client(&b).await;
    d.send("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/p"), ("ack", "auto")], "").await;
    for i in 0..N {
        let m = d.frame().await.expect("MESSAGE");
        assert_eq!(String::from_utf8(m.body).unwrap(), i.to_string());
    }
    b.shutdown().await;
}

/// A client that sends to a queue and closes at once, without DISCONNECT and without waiting
/// for its RECEIPT or PUBACK: the message still reaches the queue's consumer now (STOMP 1.2:
/// "If the client disconnects, previously received frames SHOULD continue to get processed by
/// the server"). Before, the connection's store writes still under way were dropped with it:
/// the message was in the store, but its queue never heard of it until a restart read the
/// store again.
#[tokio::test]
async fn a_message_sent_just_before_a_close_reaches_the_queue_now() {
    let b = broker().await;
    let mut c = stomp_client(&b).await;
    c.send("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/closing"), ("receipt", "sub")], "").await;
    assert_eq!(c.frame().await.unwrap().command, "RECEIPT");
    for round in 0..3 {
        let body = format!("stomp{round}");
        let mut p = stomp_client(&b).await;
        p.send("SEND", &[("destination", "/queue/closing"), ("receipt", "r")], &body).await;
        drop(p);
        let m = c.frame().await.expect("MESSAGE");
        assert_eq!((m.command.as_str(), String::from_utf8(m.body).unwrap()), ("MESSAGE", body));
    }
    // MQTT: QoS 1 into the same queue, closed before the PUBACK.
    for round in 0..3u16 {
        let body = format!("mqtt{round}");
        let mut p = tcp_connect(b.mqtt_addr().unwrap()).await;
        p.send(&mqtt_connect_bytes(&format!("closing-{round}"), 30, true)).await.unwrap();
        let connack = p.recv().await.expect("CONNACK");
        assert_eq!(connack[..2], [0x20, 2], "CONNACK");
        p.send(&publish_qos1("$queue/closing", 1, body.as_bytes())).await.unwrap();
        drop(p);
        let m = c.frame().await.expect("MESSAGE");
        assert_eq!((m.command.as_str(), String::from_utf8(m.body).unwrap()), ("MESSAGE", body));
    }
    b.shutdown().await;
}

/// Reads from `c` until a whole MQTT packet of type `kind` arrives; returns it.
async fn mqtt_expect(c: &mut Conn, kind: u8, what: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    loop {
        let chunk = c.recv().await.unwrap_or_else(|| panic!("{what}: closed"));
        buf.extend_from_slice(&chunk);
        if let Some((_, p)) = mqtt_packets(&buf).into_iter().find(|(t, _)| *t == kind) {
            return p;
        }
    }
}

/// A QoS 2 publish received but not released when the connection drops stays unreleased in
/// the persistent session [MQTT-4.3.3-10]: the client reconnects, sends the PUBLISH again with
/// DUP=1 and gets PUBREC without the message being routed a second time, and its PUBREL gets
/// PUBCOMP. Before, the ids were the connection's: the message was delivered twice.
#[tokio::test]
async fn an_unreleased_qos_2_publish_is_routed_once_across_a_reconnect() {
    let b = broker().await;
    let addr = b.mqtt_addr().unwrap();
    let (sub, mut sub_ev) = AsyncClient::new(session("qos2-sub", addr), 10);
    until(&mut sub_ev, |e| matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())).await;
    sub.subscribe("qos2/#", QoS::ExactlyOnce).await.unwrap();
    until(&mut sub_ev, |e| matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())).await;

    let mut publish = publish_qos1("qos2/t", 12, b"once");
    publish[0] = 0x34;
    let mut p = tcp_connect(addr).await;
    p.send(&mqtt_connect_bytes("qos2-pub", 30, false)).await.unwrap();
    mqtt_expect(&mut p, 2, "CONNACK").await;
    p.send(&publish).await.unwrap();
    assert_eq!(mqtt_expect(&mut p, 5, "PUBREC").await, [0x50, 2, 0, 12]);
    drop(p);
    // The session comes back; the client resends the PUBLISH (DUP=1), then releases it.
    resend_and_release(addr, "qos2-pub", &mut publish).await;
    // A marker after it: everything routed before the marker has reached the subscriber.
    publish_acked_to(addr, "qos2/end", "end").await;
    let mut got = Vec::new();
    loop {
        let payload = until(&mut sub_ev, |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        })
        .await;
        if payload == "end" {
            break;
        }
        got.push(payload);
    }
    assert_eq!(got, ["once"], "routed once");
    b.shutdown().await;
}

/// An unreleased QoS 2 publish is remembered across a restart too: the session's state is
/// stored when its connection ends, and a PUBLISH resent after the restart is not routed again.
#[tokio::test]
async fn an_unreleased_qos_2_publish_is_routed_once_across_a_restart() {
    let b = broker().await;
    park_session("qos2-away", b.mqtt_addr().unwrap(), "qos2r/#").await;
    let mut publish = publish_qos1("qos2r/t", 12, b"once");
    publish[0] = 0x34;
    let mut p = tcp_connect(b.mqtt_addr().unwrap()).await;
    p.send(&mqtt_connect_bytes("qos2r-pub", 30, false)).await.unwrap();
    mqtt_expect(&mut p, 2, "CONNACK").await;
    p.send(&publish).await.unwrap();
    assert_eq!(mqtt_expect(&mut p, 5, "PUBREC").await, [0x50, 2, 0, 12]);
    p.send(&[0xE0, 0]).await.unwrap();
    p.read_to_close().await;

    let b = broker_with(b.stop_keeping_data().await).await;
    let addr = b.mqtt_addr().unwrap();
    let mut p = resend_and_release(addr, "qos2r-pub", &mut publish).await;
    // A PUBREL for an id the session no longer holds is answered all the same (3.1.1).
    p.send(&[0x62, 2, 0, 12]).await.unwrap();
    assert_eq!(mqtt_expect(&mut p, 7, "PUBCOMP").await, [0x70, 2, 0, 12]);
    publish_acked_to(addr, "qos2r/end", "end").await;
    let (present, got) = drain_session("qos2-away", addr, 2).await;
    assert!(present);
    assert_eq!(got, ["once", "end"], "routed once");
    b.shutdown().await;
}

/// Reconnects `client` to its persistent session, sends `publish` (a QoS 2 PUBLISH with
/// packet id 12) again with DUP=1, expects PUBREC, releases it and expects PUBCOMP. Returns
/// the connection.
async fn resend_and_release(addr: std::net::SocketAddr, client: &str, publish: &mut [u8]) -> Conn {
    let mut p = tcp_connect(addr).await;
    p.send(&mqtt_connect_bytes(client, 30, false)).await.unwrap();
    assert_eq!(mqtt_expect(&mut p, 2, "CONNACK").await, [0x20, 2, 1, 0], "session present");
    publish[0] = 0x3C;
    p.send(publish).await.unwrap();
    assert_eq!(mqtt_expect(&mut p, 5, "PUBREC").await, [0x50, 2, 0, 12]);
    p.send(&[0x62, 2, 0, 12]).await.unwrap();
    assert_eq!(mqtt_expect(&mut p, 7, "PUBCOMP").await, [0x70, 2, 0, 12]);
    p
}

/// Reads the next whole MQTT packet from `c`, keeping what follows it in `buf`.
async fn next_packet(c: &mut Conn, buf: &mut Vec<u8>, what: &str) -> Vec<u8> {
    loop {
        if let Some((_, used)) = common::raw_mqtt::split_packet(buf) {
            return buf.drain(..used).collect();
        }
        let chunk = c.recv().await.unwrap_or_else(|| panic!("{what}: closed"));
        buf.extend_from_slice(&chunk);
    }
}

/// A QoS 2 delivery whose PUBREL the broker sent, and whose PUBCOMP it did not get before the
/// connection dropped, gets that PUBREL again when the session resumes, with the same packet
/// identifier, and not the PUBLISH [MQTT-4.4.0-1]: the client delivered the message on the
/// PUBLISH and may have released the id, so a PUBLISH would be a second message to it. The
/// PUBCOMP then ends the flow and the entry leaves the session queue. After a reconnect and
/// after a restart.
#[tokio::test]
async fn a_released_qos_2_delivery_gets_its_pubrel_again_when_the_session_resumes() {
    for restart in [false, true] {
        let mut b = broker().await;
        let client = format!("released-{restart}");
        let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
        c.send(&mqtt_connect_bytes(&client, 30, false)).await.unwrap();
        mqtt_expect(&mut c, 2, "CONNACK").await;
        c.send(&[0x82, 10, 0, 1, 0, 5, b'r', b'e', b'l', b'/', b'#', 2]).await.unwrap();
        assert_eq!(mqtt_expect(&mut c, 9, "SUBACK").await, [0x90, 3, 0, 1, 2]);

        let mut p = tcp_connect(b.mqtt_addr().unwrap()).await;
        p.send(&mqtt_connect_bytes("rel-pub", 30, true)).await.unwrap();
        mqtt_expect(&mut p, 2, "CONNACK").await;
        let mut publish = publish_qos1("rel/t", 5, b"exactly");
        publish[0] = 0x34;
        p.send(&publish).await.unwrap();
        mqtt_expect(&mut p, 5, "PUBREC").await;
        p.send(&[0x62, 2, 0, 5]).await.unwrap();
        mqtt_expect(&mut p, 7, "PUBCOMP").await;

        let delivered = mqtt_expect(&mut c, 3, "PUBLISH").await;
        assert_eq!(delivered[0] & 0x06, 0x04, "QoS 2");
        let (_, id, payload) = publish_payload(&delivered);
        assert_eq!(payload, b"exactly");
        c.send(&[0x50, 2, id[0], id[1]]).await.unwrap();
        assert_eq!(mqtt_expect(&mut c, 6, "PUBREL").await, [0x62, 2, id[0], id[1]]);
        // Gone before the PUBCOMP.
        c.send(&[0xE0, 0]).await.unwrap();
        c.read_to_close().await;
        if restart {
            b = broker_with(b.stop_keeping_data().await).await;
        }
        let addr = b.mqtt_addr().unwrap();

        let mut c = tcp_connect(addr).await;
        c.send(&mqtt_connect_bytes(&client, 30, false)).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_packet(&mut c, &mut buf, "CONNACK").await, [0x20, 2, 1, 0], "restart: {restart}");
        assert_eq!(next_packet(&mut c, &mut buf, "PUBREL").await, [0x62, 2, id[0], id[1]], "restart: {restart}");
        c.send(&[0x70, 2, id[0], id[1]]).await.unwrap();
        publish_acked_to(addr, "rel/end", "end").await;
        let next = next_packet(&mut c, &mut buf, "PUBLISH").await;
        let (_, end_id, end) = publish_payload(&next);
        assert_eq!(end, b"end", "restart: {restart}");
        c.send(&[0x40, 2, end_id[0], end_id[1]]).await.unwrap();
        c.send(&[0xE0, 0]).await.unwrap();
        c.read_to_close().await;

        // The PUBCOMP acknowledged the entry: nothing is left to resend.
        let mut c = tcp_connect(addr).await;
        c.send(&mqtt_connect_bytes(&client, 30, false)).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_packet(&mut c, &mut buf, "CONNACK").await, [0x20, 2, 1, 0]);
        publish_acked_to(addr, "rel/end", "end 2").await;
        let next = next_packet(&mut c, &mut buf, "PUBLISH").await;
        assert_eq!(publish_payload(&next).2, b"end 2", "restart: {restart}");
        b.shutdown().await;
    }
}

/// An MQTT 5 CONNECT (clean start, keep-alive 60, Session Expiry Interval 60 s) with a QoS 1
/// will on `topic` that waits `delay_secs` (Will Delay Interval).
fn connect5_with_delayed_will(id: &str, topic: &str, payload: &[u8], delay_secs: u32) -> Vec<u8> {
    use common::raw_mqtt::{mqtt_str, packet};
    let mut body = mqtt_str(b"MQTT");
    // Level 5; Clean Start, Will Flag, Will QoS 1; keep-alive 60; Session Expiry Interval 60.
    body.extend([5, 0x0E, 0, 60, 5, 0x11, 0, 0, 0, 60]);
    body.extend(mqtt_str(id.as_bytes()));
    body.extend([5, 0x18]);
    body.extend(delay_secs.to_be_bytes());
    body.extend(mqtt_str(topic.as_bytes()));
    body.extend(mqtt_str(payload));
    packet(0x10, &body)
}

/// A delayed will (MQTT 5 Will Delay Interval) is kept in the store while it waits: a broker
/// killed with `kill -9` before it is due publishes it after the restart, when it is due.
/// Before, delayed wills lived in memory only and were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_survives_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    park_session("will-watcher", daemon.mqtt, "wills/#").await;
    let mut c = tcp_connect(daemon.mqtt).await;
    c.send(&connect5_with_delayed_will("will-client", "wills/gone", b"gone", 3)).await.unwrap();
    let connack = mqtt_expect(&mut c, 2, "CONNACK").await;
    assert_eq!((connack[2], connack[3]), (0, 0), "accepted, no session present");
    // An abrupt close: the will is due in 3 s. Killed once the broker has handled the close.
    drop(c);
    daemon.wait_for_log(&["connection closed", "will-client"]);
    signal(&daemon.child, "-KILL");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(!wait_exit(child).success());

    let daemon = Daemon::start(dir.path());
    let (present, got) = drain_session("will-watcher", daemon.mqtt, 1).await;
    assert!(present);
    assert_eq!(got, ["gone"]);
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
}

/// The will of a client still connected when the broker dies (`kill -9`) is published when it
/// starts again: the connection ended without a DISCONNECT [MQTT-3.1.2-8]. A client that
/// disconnected normally leaves no will behind, and a graceful restart publishes a connected
/// client's will once, not again at the next start. Before, a connected client's will lived
/// in memory only and a crash lost it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_clients_will_survives_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    park_session("cwill-watcher", daemon.mqtt, "cwills/#").await;
    let mut gone = tcp_connect(daemon.mqtt).await;
    gone.send(&connect5_with_delayed_will("cwill-gone", "cwills/gone", b"gone", 0)).await.unwrap();
    mqtt_expect(&mut gone, 2, "CONNACK").await;
    let mut polite = tcp_connect(daemon.mqtt).await;
    polite.send(&connect5_with_delayed_will("cwill-polite", "cwills/polite", b"polite", 0)).await.unwrap();
    mqtt_expect(&mut polite, 2, "CONNACK").await;
    polite.send(&[0xE0, 0]).await.unwrap();
    polite.read_to_close().await;
    daemon.wait_for_log(&["connection closed", "cwill-polite"]);
    signal(&daemon.child, "-KILL");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(!wait_exit(child).success());
    drop(gone);

    let daemon = Daemon::start(dir.path());
    publish_acked_to(daemon.mqtt, "cwills/marker", "marker").await;
    let (present, mut got) = drain_session("cwill-watcher", daemon.mqtt, 2).await;
    assert!(present);
    got.sort();
    assert_eq!(got, ["gone", "marker"], "the connected client's will, and none of the one that disconnected");

    // A graceful stop publishes a connected client's will once.
    let mut again = tcp_connect(daemon.mqtt).await;
    again.send(&connect5_with_delayed_will("cwill-again", "cwills/again", b"again", 0)).await.unwrap();
    mqtt_expect(&mut again, 2, "CONNACK").await;
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
    drop(again);
    let daemon = Daemon::start(dir.path());
    publish_acked_to(daemon.mqtt, "cwills/marker", "marker 2").await;
    let (_, mut got) = drain_session("cwill-watcher", daemon.mqtt, 2).await;
    got.sort();
    assert_eq!(got, ["again", "marker 2"], "published at the stop, not again at the start");
    // Nothing else is waiting: a third marker comes next.
    publish_acked_to(daemon.mqtt, "cwills/marker", "marker 3").await;
    assert_eq!(drain_session("cwill-watcher", daemon.mqtt, 1).await.1, ["marker 3"]);
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
}

/// An MQTT 5 CONNECT with Clean Start `clean`, keep-alive 60 and Session Expiry Interval
/// `expiry_secs`.
fn connect5_session(id: &str, clean: bool, expiry_secs: u32) -> Vec<u8> {
    use common::raw_mqtt::{mqtt_str, packet};
    let mut body = mqtt_str(b"MQTT");
    body.extend([5, if clean { 0x02 } else { 0 }, 0, 60, 5, 0x11]);
    body.extend(expiry_secs.to_be_bytes());
    body.extend(mqtt_str(id.as_bytes()));
    body.push(0);
    packet(0x10, &body)
}

/// A persistent session whose client is still connected when the broker dies (`kill -9`)
/// expires its Session Expiry Interval after the next start, unless the client comes back
/// [MQTT-3.1.2-23]; a session with a longer interval is still there. Before, a session's
/// deadline was written only when its connection ended, and such a session was kept for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_connected_at_kill_dash_nine_still_expires() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let mut clients = Vec::new();
    for (id, expiry) in [("crash-short", 1), ("crash-long", 3600)] {
        let mut c = tcp_connect(daemon.mqtt).await;
        c.send(&connect5_session(id, true, expiry)).await.unwrap();
        let connack = mqtt_expect(&mut c, 2, "CONNACK").await;
        assert_eq!((connack[2], connack[3]), (0, 0), "{id}: accepted, no session present");
        clients.push(c);
    }
    signal(&daemon.child, "-KILL");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(!wait_exit(child).success());
    drop(clients);

    let daemon = Daemon::start(dir.path());
    // Not resumed meanwhile: the probe below would resume it and start its interval again.
    daemon.wait_for_log(&["session expired", "crash-short"]);
    for (id, expiry, present) in [("crash-short", 1, 0), ("crash-long", 3600, 1)] {
        let mut c = tcp_connect(daemon.mqtt).await;
        c.send(&connect5_session(id, false, expiry)).await.unwrap();
        let connack = mqtt_expect(&mut c, 2, "CONNACK").await;
        assert_eq!((connack[2], connack[3]), (present, 0), "{id}: session present {present}");
        c.send(&[0xE0, 0]).await.unwrap();
        c.read_to_close().await;
    }
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
}

/// STOMP 1.2 "MESSAGE": every MESSAGE has a unique `message-id` (and a 1.0 or 1.1 client
/// acknowledges by it). Messages delivered live and those read back from the store (past the
/// 1,024 a queue keeps in memory, or after a restart) take their ids from one sequence. Before,
/// the router and the store counted apart, both from 1 at every start: a queue's backlog read
/// from the store repeated ids of messages delivered live, and after a restart new messages
/// repeated ids of stored ones.
#[tokio::test]
async fn message_ids_are_unique_live_from_the_store_and_across_a_restart() {
    /// Reads `n` MESSAGEs on `s`, acknowledges each, and checks every id against `ids`.
    async fn read(s: &mut Stomp, n: usize, ids: &mut std::collections::HashMap<String, String>) -> Vec<String> {
        let mut bodies = Vec::new();
        while bodies.len() < n {
            let m = s.frame().await.expect("MESSAGE");
            assert_eq!(m.command, "MESSAGE", "{m:?}");
            let body = String::from_utf8(m.body.clone()).unwrap();
            let id = m.header("message-id").expect("message-id").to_string();
            if let Some(earlier) = ids.insert(id.clone(), body.clone()) {
                panic!("message-id {id} of {body} was also {earlier}'s");
            }
            s.send("ACK", &[("id", m.header("ack").unwrap())], "").await;
            bodies.push(body);
        }
        bodies
    }
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let mut ids = std::collections::HashMap::new();

    // Stored before a restart, read back after it; then new ones delivered live.
    let b = broker().await;
    let mut s = stomp_client(&b).await;
    for i in 0..40 {
        send_with_receipt(&mut s, "/queue/kept", &format!("old{i}")).await;
    }
    let b = broker_with(b.stop_keeping_data().await).await;
    let mut c = stomp_client(&b).await;
    c.send(
        "SUBSCRIBE",
        &[("id", "k"), ("destination", "/queue/kept"), ("ack", "client-individual"), ("receipt", "k")],
        "",
    )
    .await;
    assert_eq!(c.frame().await.unwrap().command, "RECEIPT");
    assert_eq!(read(&mut c, 40, &mut ids).await, names("old", 40));
    let mut s = stomp_client(&b).await;
    for i in 0..5 {
        send_with_receipt(&mut s, "/queue/kept", &format!("new{i}")).await;
    }
    assert_eq!(read(&mut c, 5, &mut ids).await, names("new", 5));

    // A backlog past the 1,024 a queue keeps in memory, read while ids go on being taken.
    for _ in 0..100 {
        s.send("SEND", &[("destination", "/topic/noise")], "x").await;
    }
    const BACKLOG: usize = 1_200;
    for i in 0..BACKLOG {
        send_with_receipt(&mut s, "/queue/backlog", &format!("b{i}")).await;
    }
    c.send("SUBSCRIBE", &[("id", "b"), ("destination", "/queue/backlog"), ("ack", "client-individual")], "").await;
    assert_eq!(read(&mut c, BACKLOG, &mut ids).await, names("b", BACKLOG));
    b.shutdown().await;
}

/// A store whose metadata is gone is refused at start, not taken for a new, empty store. The
/// case found: after `kill -9`, the first bytes of fjall's journal damaged; fjall takes a
/// damaged journal start for a torn write and drops the whole journal, metadata included, and
/// the broker started with 0 queues, losing every acknowledged message without a word. The
/// store now keeps a marker file beside the engine's, and a marked directory without metadata
/// is an error that says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_lost_its_metadata_is_refused_not_started_empty() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let mut s = Stomp::new(tcp_connect(daemon.stomp).await);
    s.connect("1.2").await;
    for i in 0..20 {
        send_with_receipt(&mut s, "/queue/precious", &format!("m{i}")).await;
    }
    signal(&daemon.child, "-KILL");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(!wait_exit(child).success());

    let journal = dir.path().join("data").join("0.jnl");
    let mut bytes = std::fs::read(&journal).expect("fjall's journal");
    bytes[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    std::fs::write(&journal, bytes).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_diglot"))
        .args(["--config", dir.path().join("broker.toml").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let mut stderr = child.stderr.take().unwrap();
    // (A broker that starts anyway never exits: `wait_exit` fails the test after its bound.)
    assert!(!wait_exit(child).success(), "refused");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    assert!(err.contains("metadata is gone"), "{err}");
    assert!(dir.path().join("data").join("0.jnl").exists(), "nothing removed");
}

/// A graceful restart ends neither a will's delay nor its session (MQTT 5 §3.1.3.2.2): the
/// delayed will of a client that the stop disconnected stays in the store, and the client
/// that comes back within the delay after the restart cancels it. Before, a stop published
/// every delayed will at once, so every restart announced every client as gone.
#[tokio::test]
async fn a_delayed_will_waits_across_a_graceful_restart() {
    let b = broker().await;
    park_session("will-watcher-2", b.mqtt_addr().unwrap(), "wills2/#").await;
    let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
    c.send(&connect5_with_delayed_will("will-restart", "wills2/gone", b"gone", 30)).await.unwrap();
    mqtt_expect(&mut c, 2, "CONNACK").await;
    let b = broker_with(b.stop_keeping_data().await).await;
    drop(c);
    // Back within the delay, to its session.
    let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
    c.send(&common::raw_mqtt::connect5_persistent("will-restart", 60)).await.unwrap();
    mqtt_expect(&mut c, 2, "CONNACK").await;
    publish_acked_to(b.mqtt_addr().unwrap(), "wills2/marker", "marker").await;
    let (present, got) = drain_session("will-watcher-2", b.mqtt_addr().unwrap(), 1).await;
    assert!(present);
    assert_eq!(got, ["marker"], "no will: the client came back within its delay");
    b.shutdown().await;
}

/// The PUBREL of a QoS 2 delivery that has no session-queue entry (here a retained message
/// sent for a new subscription) goes again when the session resumes, right after the CONNACK,
/// with its packet id [MQTT-4.4.0-1], after a reconnect and after a restart: otherwise the
/// client would hold that id as awaiting PUBREL for good, and take a later PUBLISH with it for
/// a duplicate.
#[tokio::test]
async fn a_released_retained_qos_2_delivery_gets_its_pubrel_again() {
    for restart in [false, true] {
        let mut b = broker().await;
        let mut p = tcp_connect(b.mqtt_addr().unwrap()).await;
        p.send(&mqtt_connect_bytes("relr-pub", 30, true)).await.unwrap();
        mqtt_expect(&mut p, 2, "CONNACK").await;
        let mut retained = publish_qos1("relr/t", 3, b"kept");
        retained[0] = 0x35; // QoS 2, RETAIN
        p.send(&retained).await.unwrap();
        mqtt_expect(&mut p, 5, "PUBREC").await;
        p.send(&[0x62, 2, 0, 3]).await.unwrap();
        mqtt_expect(&mut p, 7, "PUBCOMP").await;

        let client = format!("relr-{restart}");
        let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
        c.send(&mqtt_connect_bytes(&client, 30, false)).await.unwrap();
        mqtt_expect(&mut c, 2, "CONNACK").await;
        c.send(&[0x82, 11, 0, 1, 0, 6, b'r', b'e', b'l', b'r', b'/', b'#', 2]).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_packet(&mut c, &mut buf, "SUBACK").await, [0x90, 3, 0, 1, 2]);
        let delivered = next_packet(&mut c, &mut buf, "PUBLISH").await;
        assert_eq!(delivered[0], 0x35, "the retained message at QoS 2 with RETAIN");
        let (_, id, payload) = publish_payload(&delivered);
        assert_eq!(payload, b"kept");
        c.send(&[0x50, 2, id[0], id[1]]).await.unwrap();
        assert_eq!(next_packet(&mut c, &mut buf, "PUBREL").await, [0x62, 2, id[0], id[1]]);
        c.send(&[0xE0, 0]).await.unwrap();
        c.read_to_close().await;
        if restart {
            b = broker_with(b.stop_keeping_data().await).await;
        }

        let mut c = tcp_connect(b.mqtt_addr().unwrap()).await;
        c.send(&mqtt_connect_bytes(&client, 30, false)).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_packet(&mut c, &mut buf, "CONNACK").await, [0x20, 2, 1, 0], "restart: {restart}");
        assert_eq!(next_packet(&mut c, &mut buf, "PUBREL").await, [0x62, 2, id[0], id[1]], "restart: {restart}");
        c.send(&[0x70, 2, id[0], id[1]]).await.unwrap();
        // The flow is over: a marker comes next, and the session is healthy.
        publish_acked_to(b.mqtt_addr().unwrap(), "relr/end", "end").await;
        let next = next_packet(&mut c, &mut buf, "PUBLISH").await;
        assert_eq!(publish_payload(&next).2, b"end", "restart: {restart}");
        b.shutdown().await;
    }
}

/// A retained message sent at QoS 1 for a new subscription of a persistent session and not
/// acknowledged is sent again when the session resumes [MQTT-4.4.0-1], with DUP, RETAIN and
/// its packet identifier, after a reconnect, a graceful restart and `kill -9`; once
/// acknowledged, it does not come again. Before, it went straight to the connection and was
/// lost with it.
#[tokio::test]
async fn an_unacknowledged_retained_delivery_is_sent_again_when_the_session_resumes() {
    /// Publishes the retained message, subscribes `client`'s persistent session to it, and
    /// returns the packet id of its delivery, not acknowledged.
    async fn subscribe_unacked(addr: std::net::SocketAddr, client: &str) -> [u8; 2] {
        let mut p = tcp_connect(addr).await;
        p.send(&mqtt_connect_bytes(&format!("{client}-pub"), 30, true)).await.unwrap();
        mqtt_expect(&mut p, 2, "CONNACK").await;
        let mut retained = publish_qos1("rr/t", 1, b"kept");
        retained[0] = 0x33; // QoS 1, RETAIN
        p.send(&retained).await.unwrap();
        mqtt_expect(&mut p, 4, "PUBACK").await;

        let mut c = tcp_connect(addr).await;
        c.send(&mqtt_connect_bytes(client, 30, false)).await.unwrap();
        mqtt_expect(&mut c, 2, "CONNACK").await;
        c.send(&[0x82, 9, 0, 1, 0, 4, b'r', b'r', b'/', b'#', 1]).await.unwrap();
        let mut buf = Vec::new();
        let mut packets = vec![next_packet(&mut c, &mut buf, "SUBACK").await];
        packets.push(next_packet(&mut c, &mut buf, "PUBLISH").await);
        // The retained message may come before the SUBACK (§3.8.4 allows it).
        packets.sort_by_key(|p| p[0] != 0x90);
        assert_eq!(packets[0], [0x90, 3, 0, 1, 1]);
        let delivered = &packets[1];
        assert_eq!(delivered[0], 0x33, "the retained message at QoS 1 with RETAIN, first time");
        let (_, id, payload) = publish_payload(delivered);
        assert_eq!(payload, b"kept");
        id
    }
    /// Resumes `client`'s session: the retained message comes again, with DUP and the same
    /// id; acknowledged, it does not come a third time.
    async fn resume(addr: std::net::SocketAddr, client: &str, id: [u8; 2], case: &str) {
        let mut c = tcp_connect(addr).await;
        c.send(&mqtt_connect_bytes(client, 30, false)).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_packet(&mut c, &mut buf, "CONNACK").await, [0x20, 2, 1, 0], "{case}");
        let again = next_packet(&mut c, &mut buf, "PUBLISH").await;
        assert_eq!(again[0], 0x3B, "DUP, QoS 1, RETAIN; {case}");
        let (_, id2, payload) = publish_payload(&again);
        assert_eq!((id2, payload.as_slice()), (id, &b"kept"[..]), "{case}");
        c.send(&[0x40, 2, id[0], id[1]]).await.unwrap();
        c.send(&[0xE0, 0]).await.unwrap();
        c.read_to_close().await;

        let mut c = tcp_connect(addr).await;
        c.send(&mqtt_connect_bytes(client, 30, false)).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_packet(&mut c, &mut buf, "CONNACK").await, [0x20, 2, 1, 0], "{case}");
        publish_acked_to(addr, "rr/end", "end").await;
        let next = next_packet(&mut c, &mut buf, "PUBLISH").await;
        assert_eq!(next[0], 0x32, "a new delivery, not the retained message again; {case}");
        assert_eq!(publish_payload(&next).2, b"end", "{case}");
    }

    resumed_three_ways(
        "rr",
        |addr, client| async move { subscribe_unacked(addr, &client).await },
        |addr, client, id, case| async move { resume(addr, &client, id, case).await },
    )
    .await;
}

/// A QoS 1 delivery of a persistent MQTT session whose Message Expiry ran out while it was
/// in flight is sent again when the session resumes (DUP, same packet id, a Message Expiry
/// Interval of 1): its onward delivery had begun, so expiry no longer deletes it
/// [MQTT-3.3.2-5], and an unacknowledged PUBLISH is sent again [MQTT-4.4.0-1]. A message that
/// expired before it went out is still not delivered. After a reconnect, a graceful restart and
/// `kill -9`. Before, the expired in-flight message was dropped.
#[tokio::test]
async fn an_in_flight_delivery_whose_expiry_ran_out_is_sent_again() {
    use common::raw_mqtt::{connect5_persistent, mqtt_str, packet, Mqtt};
    /// A QoS 1 MQTT 5 PUBLISH with packet id 1 and a Message Expiry Interval of 1 s.
    fn expiring(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = mqtt_str(topic.as_bytes());
        body.extend([0, 1, 5, 0x02, 0, 0, 0, 1]);
        body.extend_from_slice(payload);
        packet(0x32, &body)
    }
    /// An MQTT 5 QoS 1 PUBLISH body: packet id, Message Expiry Interval, payload.
    fn parse(body: &[u8]) -> ([u8; 2], Option<u32>, Vec<u8>) {
        let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let id = [body[2 + tlen], body[3 + tlen]];
        let mut i = 4 + tlen;
        let (mut plen, mut shift) = (0usize, 0);
        loop {
            let b = body[i];
            i += 1;
            plen |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let props = &body[i..i + plen];
        let mut expiry = None;
        let mut j = 0;
        while j < props.len() {
            match props[j] {
                0x02 => {
                    expiry = Some(u32::from_be_bytes([props[j + 1], props[j + 2], props[j + 3], props[j + 4]]));
                    j += 5;
                }
                0x0B => j += 2, // a one-byte Subscription Identifier
                0x26 => {
                    // A user property (the broker's redelivery count): two strings.
                    for _ in 0..2 {
                        j += 2 + usize::from(u16::from_be_bytes([props[j + 1], props[j + 2]]));
                    }
                    j += 1;
                }
                other => panic!("unexpected property {other:#x}"),
            }
        }
        (id, expiry, body[i + plen..].to_vec())
    }
    async fn publish(addr: std::net::SocketAddr, bytes: &[u8]) {
        let mut p = Mqtt::connected5(addr, "exp-pub").await;
        p.send(bytes).await;
        p.expect(4, "PUBACK").await;
        p.send(&[0xE0, 0]).await;
        p.until_close().await;
    }
    /// Starts the session, receives one expiring message without acknowledging it, leaves,
    /// and has another expiring message queued while away. Returns the packet id.
    async fn leave_one_in_flight(addr: std::net::SocketAddr, client: &str) -> [u8; 2] {
        let mut c = Mqtt::open(addr).await;
        c.send(&connect5_persistent(client, 300)).await;
        c.expect(2, "CONNACK").await;
        let mut sub = vec![0, 1, 0];
        sub.extend(mqtt_str(b"ex/#"));
        sub.push(1);
        c.send(&packet(0x82, &sub)).await;
        c.expect(9, "SUBACK").await;
        publish(addr, &expiring("ex/t", b"started")).await;
        let (first, body) = c.packet().await.expect("the delivery");
        assert_eq!(first, 0x32, "QoS 1, first time");
        let (id, expiry, payload) = parse(&body);
        assert_eq!((expiry, payload.as_slice()), (Some(1), &b"started"[..]));
        c.send(&[0xE0, 0]).await;
        c.until_close().await;
        publish(addr, &expiring("ex/t", b"never sent")).await;
        // Both expire.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        id
    }
    async fn resume(addr: std::net::SocketAddr, client: &str, id: [u8; 2], case: &str) {
        let mut c = Mqtt::open(addr).await;
        c.send(&connect5_persistent(client, 300)).await;
        assert_eq!(c.expect(2, "CONNACK").await[0], 1, "session present; {case}");
        let (first, body) = c.packet().await.expect("the redelivery");
        assert_eq!(first, 0x3A, "DUP, QoS 1; {case}");
        let (id2, expiry, payload) = parse(&body);
        assert_eq!((id2, expiry, payload.as_slice()), (id, Some(1), &b"started"[..]), "{case}");
        c.send(&[0x40, 2, id[0], id[1]]).await;
        publish(addr, &common::raw_mqtt::publish(true, "ex/end", 1, 1, b"end")).await;
        let (_, body) = c.packet().await.expect("the marker");
        assert_eq!(parse(&body).2, b"end", "the message that expired before it went out is not sent; {case}");
    }

    resumed_three_ways(
        "exp",
        |addr, client| async move { leave_one_in_flight(addr, &client).await },
        |addr, client, id, case| async move { resume(addr, &client, id, case).await },
    )
    .await;
}

/// Leaves a session's delivery unacknowledged (`leave`, which returns its packet id), then
/// resumes the session and checks what comes (`resume`, told which case it is): after a
/// reconnect, after a graceful restart, and after `kill -9` of the daemon. Each case has its
/// own client id, `prefix-<case>`.
async fn resumed_three_ways<L, LF, R, RF>(prefix: &str, leave: L, resume: R)
where
    L: Fn(std::net::SocketAddr, String) -> LF,
    LF: std::future::Future<Output = [u8; 2]>,
    R: Fn(std::net::SocketAddr, String, [u8; 2], &'static str) -> RF,
    RF: std::future::Future<Output = ()>,
{
    for restart in [false, true] {
        let mut b = broker().await;
        let client = format!("{prefix}-{restart}");
        let id = leave(b.mqtt_addr().unwrap(), client.clone()).await;
        if restart {
            b = broker_with(b.stop_keeping_data().await).await;
        }
        resume(b.mqtt_addr().unwrap(), client, id, if restart { "restart" } else { "reconnect" }).await;
        b.shutdown().await;
    }

    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let client = format!("{prefix}-kill");
    let id = leave(daemon.mqtt, client.clone()).await;
    signal(&daemon.child, "-KILL");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(!wait_exit(child).success());
    let daemon = Daemon::start(dir.path());
    resume(daemon.mqtt, client, id, "kill -9").await;
    signal(&daemon.child, "-TERM");
    let Daemon { child, guard: _guard, .. } = daemon;
    assert!(wait_exit(child).success());
}

/// A persistent session's subscriptions include those that are not bindings of its queue: a
/// `$queue/<name>` consumer and a shared subscription come back with the session, after a
/// reconnect and after a restart, without a new SUBSCRIBE (MQTT 5 §4.1: the session state
/// holds the client's subscriptions). Before, they ended with the connection: the queue's
/// messages waited for a new SUBSCRIBE and the shared subscription's were not delivered.
#[tokio::test]
async fn a_persistent_session_keeps_its_queue_and_shared_subscriptions() {
    use common::raw_mqtt::{subscribe311, Mqtt};
    /// The payload of a QoS 1 PUBLISH body, and its packet id.
    fn payload(body: &[u8]) -> (Vec<u8>, [u8; 2]) {
        let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        (body[4 + tlen..].to_vec(), [body[2 + tlen], body[3 + tlen]])
    }
    for restart in [false, true] {
        let mut b = broker().await;
        let client = format!("kept-subs-{restart}");
        let mut m = Mqtt::open(b.mqtt_addr().unwrap()).await;
        m.send(&mqtt_connect_bytes(&client, 30, false)).await;
        m.expect(2, "CONNACK").await;
        m.send(&subscribe311(1, &["$queue/kq", "$share/g/ks/#"])).await;
        assert_eq!(m.expect(9, "SUBACK").await, [0, 1, 1, 1]);
        m.send(&[0xE0, 0]).await;
        m.until_close().await;
        publish_acked_to(b.mqtt_addr().unwrap(), "$queue/kq", "queued").await;
        if restart {
            b = broker_with(b.stop_keeping_data().await).await;
        }

        let addr = b.mqtt_addr().unwrap();
        let mut m = Mqtt::open(addr).await;
        m.send(&mqtt_connect_bytes(&client, 30, false)).await;
        assert_eq!(m.expect(2, "CONNACK").await, [1, 0], "session present; restart: {restart}");
        let (body, id) = payload(&m.expect(3, "the queue's message").await);
        assert_eq!(body, b"queued", "restart: {restart}");
        m.send(&[0x40, 2, id[0], id[1]]).await;
        publish_acked_to(addr, "ks/x", "shared").await;
        let (body, id) = payload(&m.expect(3, "the shared subscription's message").await);
        assert_eq!(body, b"shared", "restart: {restart}");
        m.send(&[0x40, 2, id[0], id[1]]).await;

        // Unsubscribed, they are forgotten: the next connection gets neither.
        let mut unsubscribe = vec![0, 2];
        unsubscribe.extend(common::raw_mqtt::mqtt_str(b"$queue/kq"));
        unsubscribe.extend(common::raw_mqtt::mqtt_str(b"$share/g/ks/#"));
        m.send(&common::raw_mqtt::packet(0xA2, &unsubscribe)).await;
        m.expect(11, "UNSUBACK").await;
        m.send(&subscribe311(3, &["marker/#"])).await;
        m.expect(9, "SUBACK").await;
        m.send(&[0xE0, 0]).await;
        m.until_close().await;
        let mut m = Mqtt::open(addr).await;
        m.send(&mqtt_connect_bytes(&client, 30, false)).await;
        m.expect(2, "CONNACK").await;
        publish_acked_to(addr, "$queue/kq", "not for it").await;
        publish_acked_to(addr, "ks/y", "not for it").await;
        publish_acked_to(addr, "marker/z", "marker").await;
        let (body, _) = payload(&m.expect(3, "the marker").await);
        assert_eq!(body, b"marker", "restart: {restart}");
        b.shutdown().await;
    }
}
