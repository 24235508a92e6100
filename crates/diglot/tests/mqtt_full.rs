//! The end-to-end MQTT suite of issue 4: every feature with the independent client rumqttc
//! (its MQTT 3.1.1 client `rumqttc::*` and its MQTT 5 client `rumqttc::v5::*`), over TCP and
//! over WebSocket, plus raw packets where exact bytes, reason codes or the absence of an
//! acknowledgement matter. Raw MQTT 5 packets are encoded and decoded with rumqttc's own
//! codec (`rumqttc::v5::mqttbytes`), never with the broker's.
//!
//! Nothing here asserts on timing: "eventually" means within [`PATIENCE`], and a negative
//! ("X is not delivered") is checked with a marker message sent after X had its chance.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use diglot::{Broker, Config};
use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::{Outgoing, QoS as Q4};

/// TCP, then WebSocket.
const BOTH: [bool; 2] = [false, true];

fn via(ws: bool) -> &'static str {
    if ws {
        "ws"
    } else {
        "tcp"
    }
}

fn q4(n: u8) -> Q4 {
    match n {
        0 => Q4::AtMostOnce,
        1 => Q4::AtLeastOnce,
        _ => Q4::ExactlyOnce,
    }
}

fn q5(n: u8) -> Q5 {
    match n {
        0 => Q5::AtMostOnce,
        1 => Q5::AtLeastOnce,
        _ => Q5::ExactlyOnce,
    }
}

/// Waits until the broker counts exactly `n` open connections.
async fn settle(b: &Broker, n: usize) {
    tokio::time::timeout(PATIENCE, async {
        while b.connections() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("broker did not settle at {n} connections (has {})", b.connections()));
}

// ---------------------------------------------------------------------------------------------
// rumqttc clients
// ---------------------------------------------------------------------------------------------

fn opts4(id: &str, b: &Broker, ws: bool) -> rumqttc::MqttOptions {
    let mut o = if ws {
        let addr = b.ws_addr().unwrap();
        let mut o = rumqttc::MqttOptions::new(id, format!("ws://{addr}/ws"), addr.port());
        o.set_transport(rumqttc::Transport::Ws);
        o
    } else {
        let addr = b.mqtt_addr().unwrap();
        rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port())
    };
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn opts5(id: &str, b: &Broker, ws: bool) -> r5::MqttOptions {
    let mut o = if ws {
        let addr = b.ws_addr().unwrap();
        let mut o = r5::MqttOptions::new(id, format!("ws://{addr}/ws"), addr.port());
        o.set_transport(rumqttc::Transport::Ws);
        o
    } else {
        let addr = b.mqtt_addr().unwrap();
        r5::MqttOptions::new(id, addr.ip().to_string(), addr.port())
    };
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// A delivered message, whichever client received it.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    props: Option<p5::PublishProperties>,
}

impl Msg {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// rumqttc's MQTT 3.1.1 client.
struct C4 {
    c: rumqttc::AsyncClient,
    ev: rumqttc::EventLoop,
    /// Deliveries that arrived while waiting for something else.
    pending: std::collections::VecDeque<rumqttc::Publish>,
}

impl C4 {
    async fn open(o: rumqttc::MqttOptions) -> (C4, rumqttc::ConnAck) {
        let (c, ev) = rumqttc::AsyncClient::new(o, 1000);
        let mut me = C4 { c, ev, pending: Default::default() };
        let ack = me
            .until(|e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => Some(a.clone()),
                _ => None,
            })
            .await;
        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
        (me, ack)
    }

    async fn until<T>(&mut self, mut want: impl FnMut(&rumqttc::Event) -> Option<T>) -> T {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let e = self.ev.poll().await.expect("MQTT 3.1.1 event loop");
                if let Some(t) = want(&e) {
                    return t;
                }
                if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = e {
                    self.pending.push_back(p);
                }
            }
        })
        .await
        .expect("expected MQTT 3.1.1 event within patience")
    }

    async fn sub(&mut self, filter: &str, qos: u8) {
        self.c.subscribe(filter, q4(qos)).await.unwrap();
        let codes = self
            .until(|e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(s)) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(q4(qos))], "SUBACK for {filter}");
    }

    /// Publishes and waits until the QoS flow is complete (for QoS 2: PUBREC in, PUBREL out,
    /// PUBCOMP in, in that order).
    async fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        self.c.publish(topic, q4(qos), retain, payload.into()).await.unwrap();
        match qos {
            0 => self.until(|e| matches!(e, rumqttc::Event::Outgoing(Outgoing::Publish(_))).then_some(())).await,
            1 => self.until(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))).then_some(())).await,
            _ => {
                self.until(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubRec(_))).then_some(())).await;
                self.until(|e| matches!(e, rumqttc::Event::Outgoing(Outgoing::PubRel(_))).then_some(())).await;
                self.until(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_))).then_some(())).await;
            }
        }
    }

    async fn msg(&mut self) -> Msg {
        if let Some(p) = self.pending.pop_front() {
            return Msg {
                topic: p.topic,
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
                props: None,
            };
        }
        self.until(|e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(Msg {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
                props: None,
            }),
            _ => None,
        })
        .await
    }

    /// Polls until the connection fails (the server closed it).
    async fn error(&mut self) -> rumqttc::ConnectionError {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Err(e) = self.ev.poll().await {
                    return e;
                }
            }
        })
        .await
        .expect("connection closed within patience")
    }

    /// DISCONNECT, then wait until the connection is gone.
    async fn close(mut self) {
        self.c.disconnect().await.unwrap();
        let _ = tokio::time::timeout(PATIENCE, async { while self.ev.poll().await.is_ok() {} }).await;
    }
}

/// rumqttc's MQTT 5 client.
struct C5 {
    c: r5::AsyncClient,
    ev: r5::EventLoop,
    /// Deliveries that arrived while waiting for something else.
    pending: std::collections::VecDeque<p5::Publish>,
}

impl C5 {
    async fn open(o: r5::MqttOptions) -> (C5, p5::ConnAck) {
        let (c, ev) = r5::AsyncClient::new(o, 1000);
        let mut me = C5 { c, ev, pending: Default::default() };
        let ack = me
            .until(|e| match e {
                r5::Event::Incoming(p5::Packet::ConnAck(a)) => Some(a.clone()),
                _ => None,
            })
            .await;
        assert_eq!(ack.code, p5::ConnectReturnCode::Success);
        (me, ack)
    }

    async fn until<T>(&mut self, mut want: impl FnMut(&r5::Event) -> Option<T>) -> T {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let e = self.ev.poll().await.expect("MQTT 5 event loop");
                if let Some(t) = want(&e) {
                    return t;
                }
                if let r5::Event::Incoming(p5::Packet::Publish(p)) = e {
                    self.pending.push_back(p);
                }
            }
        })
        .await
        .expect("expected MQTT 5 event within patience")
    }

    async fn suback(&mut self) -> Vec<p5::SubscribeReasonCode> {
        self.until(|e| match e {
            r5::Event::Incoming(p5::Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await
    }

    async fn sub(&mut self, filter: &str, qos: u8) {
        self.c.subscribe(filter, q5(qos)).await.unwrap();
        assert_eq!(self.suback().await, vec![p5::SubscribeReasonCode::Success(q5(qos))], "SUBACK for {filter}");
    }

    /// Subscribes with explicit options (and a Subscription Identifier).
    async fn sub_with(&mut self, f: p5::Filter, id: Option<usize>) {
        let qos = f.qos;
        let filter = f.path.clone();
        match id {
            Some(id) => self
                .c
                .subscribe_many_with_properties([f], p5::SubscribeProperties { id: Some(id), user_properties: vec![] })
                .await
                .unwrap(),
            None => self.c.subscribe_many([f]).await.unwrap(),
        }
        assert_eq!(self.suback().await, vec![p5::SubscribeReasonCode::Success(qos)], "SUBACK for {filter}");
    }

    async fn publish_props(
        &mut self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        props: Option<p5::PublishProperties>,
    ) {
        let payload = Bytes::from(payload.into());
        match props {
            Some(p) => self.c.publish_with_properties(topic, q5(qos), retain, payload, p).await.unwrap(),
            None => self.c.publish(topic, q5(qos), retain, payload).await.unwrap(),
        }
        match qos {
            0 => self.until(|e| matches!(e, r5::Event::Outgoing(Outgoing::Publish(_))).then_some(())).await,
            1 => {
                let reason = self
                    .until(|e| match e {
                        r5::Event::Incoming(p5::Packet::PubAck(a)) => Some(a.reason),
                        _ => None,
                    })
                    .await;
                assert!(
                    matches!(reason, p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers),
                    "PUBACK {reason:?}"
                );
            }
            _ => {
                self.until(|e| matches!(e, r5::Event::Incoming(p5::Packet::PubRec(_))).then_some(())).await;
                self.until(|e| matches!(e, r5::Event::Outgoing(Outgoing::PubRel(_))).then_some(())).await;
                self.until(|e| matches!(e, r5::Event::Incoming(p5::Packet::PubComp(_))).then_some(())).await;
            }
        }
    }

    async fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        self.publish_props(topic, qos, retain, payload, None).await
    }

    /// The next PUBLISH exactly as it arrived (a topic aliased by the broker is empty here).
    async fn raw_msg(&mut self) -> p5::Publish {
        if let Some(p) = self.pending.pop_front() {
            return p;
        }
        self.until(|e| match e {
            r5::Event::Incoming(p5::Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    async fn msg(&mut self) -> Msg {
        let p = self.raw_msg().await;
        Msg {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.to_vec(),
            qos: p.qos as u8,
            retain: p.retain,
            props: p.properties,
        }
    }

    async fn error(&mut self) -> r5::ConnectionError {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Err(e) = self.ev.poll().await {
                    return e;
                }
            }
        })
        .await
        .expect("connection closed within patience")
    }

    async fn close(mut self) {
        self.c.disconnect().await.unwrap();
        let _ = tokio::time::timeout(PATIENCE, async { while self.ev.poll().await.is_ok() {} }).await;
    }
}

/// The reason code of a server DISCONNECT that ended an MQTT 5 rumqttc connection.
fn server_disconnect(e: &r5::ConnectionError) -> Option<u8> {
    match e {
        r5::ConnectionError::MqttState(r5::StateError::ServerDisconnect { reason_code, .. }) => {
            Some(*reason_code as u8)
        }
        _ => None,
    }
}

/// Either client, for tests that run the same steps with both protocol versions.
enum Cl {
    V4(Box<C4>),
    V5(Box<C5>),
}

impl Cl {
    async fn open(v5: bool, id: &str, b: &Broker, ws: bool) -> Cl {
        if v5 {
            Cl::V5(Box::new(C5::open(opts5(id, b, ws)).await.0))
        } else {
            Cl::V4(Box::new(C4::open(opts4(id, b, ws)).await.0))
        }
    }

    async fn sub(&mut self, filter: &str, qos: u8) {
        match self {
            Cl::V4(c) => c.sub(filter, qos).await,
            Cl::V5(c) => c.sub(filter, qos).await,
        }
    }

    async fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        match self {
            Cl::V4(c) => c.publish(topic, qos, retain, payload).await,
            Cl::V5(c) => c.publish(topic, qos, retain, payload).await,
        }
    }

    async fn msg(&mut self) -> Msg {
        match self {
            Cl::V4(c) => c.msg().await,
            Cl::V5(c) => c.msg().await,
        }
    }

    /// Messages up to and including the first whose payload is `marker`.
    async fn until_marker(&mut self, marker: &str) -> Vec<Msg> {
        let mut got = Vec::new();
        loop {
            let m = self.msg().await;
            let done = m.payload == marker.as_bytes();
            got.push(m);
            if done {
                return got;
            }
        }
    }

    async fn close(self) {
        match self {
            Cl::V4(c) => c.close().await,
            Cl::V5(c) => c.close().await,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Cl::V4(_) => "v4",
            Cl::V5(_) => "v5",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw packets
// ---------------------------------------------------------------------------------------------

fn varint(mut n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        v.push(b);
        if n == 0 {
            return v;
        }
    }
}

/// A packet from its first byte and body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(varint(body.len()));
    p.extend_from_slice(body);
    p
}

fn mqtt_str(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A PUBLISH with raw topic bytes; `props` is the MQTT 5 property block content (without
/// its length), `None` for MQTT 3.1.1.
fn publish_bytes(topic: &[u8], qos: u8, id: u16, retain: bool, payload: &[u8], props: Option<&[u8]>) -> Vec<u8> {
    let mut body = mqtt_str(topic);
    if qos > 0 {
        body.extend(id.to_be_bytes());
    }
    if let Some(p) = props {
        body.extend(varint(p.len()));
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// A SUBSCRIBE of `(filter, options byte)` pairs.
fn subscribe_bytes(v5: bool, id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for (f, o) in filters {
        body.extend(mqtt_str(f.as_bytes()));
        body.push(*o);
    }
    packet(0x82, &body)
}

fn ack_bytes(first: u8, id: u16) -> Vec<u8> {
    packet(first, &id.to_be_bytes())
}

/// The packet type nibble.
fn kind(f: &[u8]) -> u8 {
    f[0] >> 4
}

/// The body of a packet (after the fixed header).
fn body(f: &[u8]) -> &[u8] {
    let mut i = 1;
    while f[i] & 0x80 != 0 {
        i += 1;
    }
    &f[i + 1..]
}

/// The packet id of PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK.
fn ack_id(f: &[u8]) -> u16 {
    let b = body(f);
    u16::from_be_bytes([b[0], b[1]])
}

/// The MQTT 5 reason code of PUBACK/PUBREC/PUBREL/PUBCOMP (absent means 0).
fn ack_reason(f: &[u8]) -> u8 {
    body(f).get(2).copied().unwrap_or(0)
}

/// The reason code of a DISCONNECT (absent means 0).
fn disconnect_reason(f: &[u8]) -> u8 {
    body(f).first().copied().unwrap_or(0)
}

/// A PUBLISH as raw fields (QoS, packet id, topic, payload), for either version.
#[derive(Debug)]
struct RawPub {
    qos: u8,
    dup: bool,
    id: u16,
    topic: String,
    payload: Vec<u8>,
}

fn parse_publish(f: &[u8], v5: bool) -> RawPub {
    assert_eq!(kind(f), 3, "a PUBLISH: {f:02x?}");
    let qos = (f[0] >> 1) & 3;
    let b = body(f);
    let tl = u16::from_be_bytes([b[0], b[1]]) as usize;
    let topic = String::from_utf8(b[2..2 + tl].to_vec()).expect("UTF-8 topic");
    let mut i = 2 + tl;
    let mut id = 0;
    if qos > 0 {
        id = u16::from_be_bytes([b[i], b[i + 1]]);
        i += 2;
    }
    if v5 {
        let (mut len, mut mult) = (0usize, 1usize);
        loop {
            let byte = b[i];
            i += 1;
            len += (byte & 0x7f) as usize * mult;
            mult *= 128;
            if byte & 0x80 == 0 {
                break;
            }
        }
        i += len;
    }
    RawPub { qos, dup: f[0] & 0x08 != 0, id, topic, payload: b[i..].to_vec() }
}

/// Decodes an MQTT 5 packet with rumqttc's codec (which cannot read a zero-length DISCONNECT).
fn decode5(f: &[u8]) -> p5::Packet {
    if kind(f) == 14 && f.len() == 2 {
        return p5::Packet::Disconnect(p5::Disconnect::new(p5::DisconnectReasonCode::NormalDisconnection));
    }
    p5::Packet::read(&mut BytesMut::from(f), None)
        .unwrap_or_else(|e| panic!("undecodable MQTT 5 packet {f:02x?}: {e:?}"))
}

fn connect5(id: &str, keep_alive: u16, clean: bool, props: Option<p5::ConnectProperties>) -> p5::Connect {
    p5::Connect { keep_alive, client_id: id.into(), clean_start: clean, properties: props }
}

fn session_props(expiry: u32) -> p5::ConnectProperties {
    let mut p = p5::ConnectProperties::new();
    p.session_expiry_interval = Some(expiry);
    p
}

fn encode5(p: p5::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(&mut b, None).expect("encode");
    b.to_vec()
}

fn encode4(p: rumqttc::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(&mut b, 1 << 24).expect("encode");
    b.to_vec()
}

/// A raw MQTT connection over TCP or WebSocket.
struct Raw {
    conn: Conn,
    buf: Vec<u8>,
    v5: bool,
}

impl Raw {
    async fn new(b: &Broker, ws: bool, v5: bool) -> Raw {
        let conn = if ws {
            match ws_connect(b.ws_addr().unwrap(), "/ws", &["mqtt"]).await {
                Ok(c) => c,
                Err(a) => panic!("WebSocket refused: {} {}", a.status, a.body),
            }
        } else {
            tcp_connect(b.mqtt_addr().unwrap()).await
        };
        Raw { conn, buf: Vec::new(), v5 }
    }

    /// Connects with a clean session; panics unless accepted.
    async fn open(b: &Broker, ws: bool, v5: bool, id: &str) -> Raw {
        let mut r = Raw::new(b, ws, v5).await;
        if v5 {
            r.connect5(connect5(id, 60, true, None), None).await;
        } else {
            r.send(&mqtt_connect_bytes(id, 60, true)).await;
            let f = r.frame().await.expect("CONNACK");
            assert_eq!(f, vec![0x20, 2, 0, 0], "MQTT 3.1.1 CONNACK accepted");
        }
        r
    }

    async fn connect5(&mut self, c: p5::Connect, will: Option<p5::LastWill>) -> p5::ConnAck {
        self.send(&encode5(p5::Packet::Connect(c, will, None))).await;
        match self.frame().await.map(|f| decode5(&f)) {
            Some(p5::Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.conn.send(bytes).await.expect("send");
    }

    /// The next whole packet, or `None` once the server closed the connection.
    async fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some((_, p)) = mqtt_packets(&self.buf).into_iter().next() {
                self.buf.drain(..p.len());
                return Some(p);
            }
            let chunk = self.conn.recv().await?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next packet, which must be of type `k` (deliveries are not expected meanwhile).
    async fn expect(&mut self, k: u8) -> Vec<u8> {
        let f = self.frame().await.unwrap_or_else(|| panic!("closed while waiting for packet type {k}"));
        assert_eq!(kind(&f), k, "expected packet type {k}, got {f:02x?}");
        f
    }

    /// SUBSCRIBE and the SUBACK's return/reason codes.
    async fn subscribe(&mut self, id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.send(&subscribe_bytes(self.v5, id, filters)).await;
        let f = self.expect(9).await;
        assert_eq!(ack_id(&f), id);
        let b = body(&f);
        if self.v5 {
            let props = b[2] as usize; // short property blocks only
            b[3 + props..].to_vec()
        } else {
            b[2..].to_vec()
        }
    }

    /// PINGREQ; returns the packets that arrived before the PINGRESP.
    async fn ping(&mut self) -> Vec<Vec<u8>> {
        self.send(&[0xC0, 0]).await;
        let mut before = Vec::new();
        loop {
            let f = self.frame().await.expect("PINGRESP before the close");
            if kind(&f) == 13 {
                return before;
            }
            before.push(f);
        }
    }

    /// Every packet until the server closes the connection.
    async fn until_close(&mut self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(f) = self.frame().await {
            all.push(f);
        }
        all
    }

    /// Waits for the close: the reason of the DISCONNECT the server sent first, if any, after
    /// checking that nothing else came.
    async fn closed(&mut self, what: &str) -> Option<u8> {
        let all = self.until_close().await;
        let others: Vec<_> = all.iter().filter(|f| kind(f) != 14).collect();
        assert!(others.is_empty(), "{what}: unexpected packets before the close: {others:02x?}");
        assert!(all.len() <= 1, "{what}: more than one DISCONNECT: {all:02x?}");
        all.first().map(|f| disconnect_reason(f))
    }
}

// ---------------------------------------------------------------------------------------------
// QoS
// ---------------------------------------------------------------------------------------------

/// Every combination of publish QoS and subscription QoS, both directions, with the full
/// PUBREC/PUBREL/PUBCOMP exchange at QoS 2; delivery QoS = min(publish, subscription)
/// [MQTT-3.8.4-8] (3.1.1: [MQTT-3.8.4-6]).
#[tokio::test]
async fn qos_0_1_2_both_directions_with_downgrade() {
    let b = broker().await;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("qos-{}-{}", if v5 { "v5" } else { "v4" }, via(ws));
            let (mut sub, mut publ) = if v5 {
                let s = C5::open(opts5(&format!("{tag}-sub"), &b, ws)).await.0;
                let p = C5::open(opts5(&format!("{tag}-pub"), &b, ws)).await.0;
                (Cl::V5(Box::new(s)), Cl::V5(Box::new(p)))
            } else {
                let s = C4::open(opts4(&format!("{tag}-sub"), &b, ws)).await.0;
                let p = C4::open(opts4(&format!("{tag}-pub"), &b, ws)).await.0;
                (Cl::V4(Box::new(s)), Cl::V4(Box::new(p)))
            };
            for s in 0..3u8 {
                sub.sub(&format!("{tag}/s{s}/#"), s).await;
            }
            for s in 0..3u8 {
                for p in 0..3u8 {
                    // The publisher's helper checks PUBACK (QoS 1) and PUBREC, PUBREL, PUBCOMP (QoS 2).
                    publ.publish(&format!("{tag}/s{s}/p{p}"), p, false, format!("{s}{p}")).await;
                }
            }
            // The subscriber: nine messages, each once, at the downgraded QoS; the QoS 2 one
            // completes with PUBREL in and PUBCOMP out.
            let mut got = BTreeMap::new();
            let (mut pubrel_in, mut pubcomp_out) = (0, 0);
            tokio::time::timeout(PATIENCE, async {
                while got.len() < 9 || pubcomp_out < 1 {
                    match &mut sub {
                        Cl::V4(c) => match c.ev.poll().await.expect("sub") {
                            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                                let old = got.insert(p.topic.clone(), (p.qos as u8, p.payload.to_vec()));
                                assert!(old.is_none(), "{tag}: {} delivered twice", p.topic);
                            }
                            rumqttc::Event::Incoming(rumqttc::Packet::PubRel(_)) => pubrel_in += 1,
                            rumqttc::Event::Outgoing(Outgoing::PubComp(_)) => pubcomp_out += 1,
                            _ => {}
                        },
                        Cl::V5(c) => match c.ev.poll().await.expect("sub") {
                            r5::Event::Incoming(p5::Packet::Publish(p)) => {
                                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                                let old = got.insert(topic.clone(), (p.qos as u8, p.payload.to_vec()));
                                assert!(old.is_none(), "{tag}: {topic} delivered twice");
                            }
                            r5::Event::Incoming(p5::Packet::PubRel(_)) => pubrel_in += 1,
                            r5::Event::Outgoing(Outgoing::PubComp(_)) => pubcomp_out += 1,
                            _ => {}
                        },
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{tag}: deliveries within patience"));
            assert_eq!(pubrel_in, 1, "{tag}: one QoS 2 delivery, one PUBREL");
            for s in 0..3u8 {
                for p in 0..3u8 {
                    let (qos, payload) = &got[&format!("{tag}/s{s}/p{p}")];
                    assert_eq!(*qos, s.min(p), "{tag}: publish QoS {p} to subscription QoS {s}");
                    assert_eq!(payload, format!("{s}{p}").as_bytes());
                }
            }
            sub.close().await;
            publ.close().await;
        }
    }
    b.shutdown().await;
}

/// Inbound QoS 2 is exactly once: a re-sent PUBLISH (DUP) before PUBREL is answered PUBREC
/// but not delivered again; after PUBCOMP the packet id is free and means a new message
/// (§4.3.3, [MQTT-4.3.3-9]/[MQTT-4.3.3-10] in 3.1.1); a PUBREL of an unknown id gets PUBCOMP
/// (MQTT 5: 0x92 Packet Identifier not found).
#[tokio::test]
async fn qos2_inbound_exactly_once_and_packet_id_reuse() {
    let b = broker().await;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("eo-{}-{}", if v5 { "v5" } else { "v4" }, via(ws));
            let mut sub = Cl::open(!v5, &format!("{tag}-sub"), &b, ws).await;
            sub.sub(&format!("{tag}/#"), 2).await;
            let mut r = Raw::open(&b, ws, v5, &format!("{tag}-pub")).await;
            let props: Option<&[u8]> = if v5 { Some(&[]) } else { None };
            let topic = format!("{tag}/x");
            let first = publish_bytes(topic.as_bytes(), 2, 7, false, b"first", props);
            r.send(&first).await;
            let rec = r.expect(5).await;
            assert_eq!((ack_id(&rec), ack_reason(&rec)), (7, 0));
            // The same PUBLISH again with DUP=1 before PUBREL.
            let mut dup = first.clone();
            dup[0] |= 0x08;
            r.send(&dup).await;
            let rec = r.expect(5).await;
            assert_eq!(ack_id(&rec), 7, "{tag}: a duplicate is answered PUBREC again");
            r.send(&ack_bytes(0x62, 7)).await;
            let comp = r.expect(7).await;
            assert_eq!((ack_id(&comp), ack_reason(&comp)), (7, 0), "{tag}: PUBCOMP");
            // Id 7 is free again: a new message.
            r.send(&publish_bytes(topic.as_bytes(), 2, 7, false, b"second", props)).await;
            assert_eq!(ack_id(&r.expect(5).await), 7);
            r.send(&ack_bytes(0x62, 7)).await;
            assert_eq!(ack_id(&r.expect(7).await), 7);
            // PUBREL of an id that is not in use.
            r.send(&ack_bytes(0x62, 99)).await;
            let comp = r.expect(7).await;
            assert_eq!(ack_id(&comp), 99);
            if v5 {
                assert_eq!(ack_reason(&comp), 0x92, "{tag}: PUBCOMP Packet Identifier not found (§3.7.2.1)");
            }
            r.send(&publish_bytes(topic.as_bytes(), 0, 0, false, b"end", props)).await;
            let got: Vec<String> = sub.until_marker("end").await.iter().map(Msg::text).collect();
            assert_eq!(got, ["first", "second", "end"], "{tag}");
            sub.close().await;
        }
    }
    b.shutdown().await;
}

/// Many QoS 1 and QoS 2 messages through small inflight windows on both sides (the client's
/// `set_inflight`, the broker's `limits.max_inflight`), so that packet ids are reused all the
/// time: every message arrives once, in order, at its QoS.
#[tokio::test]
async fn packet_ids_reused_through_small_inflight_windows() {
    let mut config = Config::ephemeral();
    config.limits.max_inflight = 2;
    let b = broker_with(config).await;
    let n = 200usize;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("reuse-{}-{}", if v5 { "v5" } else { "v4" }, via(ws));
            let mut sub = Cl::open(v5, &format!("{tag}-sub"), &b, ws).await;
            sub.sub(&format!("{tag}/#"), 2).await;
            let topic = format!("{tag}/t");
            let max_id = if v5 {
                let mut o = opts5(&format!("{tag}-pub"), &b, ws);
                o.set_outgoing_inflight_upper_limit(2);
                let (c, ack) = C5::open(o).await;
                let rm = ack.properties.as_ref().and_then(|p| p.receive_max);
                assert_eq!(rm, Some(2), "{tag}: CONNACK Receive Maximum = limits.max_inflight");
                let C5 { c, mut ev, .. } = c;
                tokio::spawn(async move {
                    for i in 0..n {
                        c.publish(topic.clone(), q5(1 + (i % 2) as u8), false, i.to_string()).await.unwrap();
                    }
                });
                tokio::spawn(async move {
                    let (mut done, mut max_id) = (0, 0u16);
                    while done < n {
                        match ev.poll().await.expect("publisher") {
                            r5::Event::Outgoing(Outgoing::Publish(id)) => max_id = max_id.max(id),
                            r5::Event::Incoming(p5::Packet::PubAck(_) | p5::Packet::PubComp(_)) => done += 1,
                            _ => {}
                        }
                    }
                    max_id
                })
            } else {
                let mut o = opts4(&format!("{tag}-pub"), &b, ws);
                o.set_inflight(2);
                let C4 { c, mut ev, .. } = C4::open(o).await.0;
                tokio::spawn(async move {
                    for i in 0..n {
                        c.publish(topic.clone(), q4(1 + (i % 2) as u8), false, i.to_string()).await.unwrap();
                    }
                });
                tokio::spawn(async move {
                    let (mut done, mut max_id) = (0, 0u16);
                    while done < n {
                        match ev.poll().await.expect("publisher") {
                            rumqttc::Event::Outgoing(Outgoing::Publish(id)) => max_id = max_id.max(id),
                            rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_) | rumqttc::Packet::PubComp(_)) => {
                                done += 1
                            }
                            _ => {}
                        }
                    }
                    max_id
                })
            };
            for i in 0..n {
                let m = sub.msg().await;
                assert_eq!(m.text(), i.to_string(), "{tag}: in order, each once");
                assert_eq!(m.qos, 1 + (i % 2) as u8, "{tag}: message {i} at its QoS");
            }
            let max_id = tokio::time::timeout(PATIENCE, max_id).await.expect("all acknowledged").unwrap();
            assert!(max_id <= 2, "{tag}: the publisher reused its few packet ids (max {max_id})");
            sub.close().await;
        }
    }
    b.shutdown().await;
}

/// The broker never has more unacknowledged QoS 1 PUBLISHes towards a client than its window:
/// MQTT 5 the client's Receive Maximum [MQTT-3.3.4-9], otherwise `limits.max_inflight`; and
/// it fills the window again as acknowledgements come. A client that exceeds the broker's
/// Receive Maximum with QoS 2 gets DISCONNECT 0x93 [MQTT-3.3.4-8]... (§3.3.4).
#[tokio::test]
async fn receive_maximum_honoured_both_ways() {
    let mut config = Config::ephemeral();
    config.limits.max_inflight = 3;
    let b = broker_with(config).await;
    for ws in BOTH {
        for (v5, window) in [(true, 2usize), (false, 3usize)] {
            let tag = format!("rm-{}-{}", if v5 { "v5" } else { "v4" }, via(ws));
            let mut r = Raw::new(&b, ws, v5).await;
            if v5 {
                let mut p = p5::ConnectProperties::new();
                p.receive_maximum = Some(2);
                let ack = r.connect5(connect5(&format!("{tag}-sub"), 60, true, Some(p)), None).await;
                assert_eq!(ack.properties.and_then(|p| p.receive_max), Some(3), "{tag}: the broker's Receive Maximum");
            } else {
                r.send(&mqtt_connect_bytes(&format!("{tag}-sub"), 60, true)).await;
                assert_eq!(r.frame().await.unwrap(), vec![0x20, 2, 0, 0]);
            }
            assert_eq!(r.subscribe(1, &[(&format!("{tag}/#"), 1)]).await, vec![1]);
            let mut publ = Cl::open(false, &format!("{tag}-pub"), &b, ws).await;
            for i in 0..10 {
                publ.publish(&format!("{tag}/t"), 1, false, i.to_string()).await;
            }
            // All ten are routed (acknowledged to the publisher). Now receive, acknowledging
            // only once the window is full, and after giving the broker a round trip to
            // (wrongly) send more.
            let mut outstanding = std::collections::VecDeque::new();
            let mut received = Vec::new();
            while received.len() < 10 {
                let f = r.frame().await.expect("deliveries");
                let mut batch = vec![f];
                if outstanding.len() + 1 >= window {
                    batch.extend(r.ping().await);
                }
                for f in batch {
                    let p = parse_publish(&f, v5);
                    assert_eq!((p.qos, p.dup, p.topic.as_str()), (1, false, format!("{tag}/t").as_str()));
                    outstanding.push_back(p.id);
                    received.push(String::from_utf8(p.payload).unwrap());
                    assert!(
                        outstanding.len() <= window,
                        "{tag}: {} unacknowledged QoS 1 PUBLISHes, window {window}",
                        outstanding.len()
                    );
                }
                if outstanding.len() == window || received.len() == 10 {
                    let id = outstanding.pop_front().unwrap();
                    r.send(&ack_bytes(0x40, id)).await;
                }
            }
            let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
            assert_eq!(received, want, "{tag}: in order");
            publ.close().await;
        }
        // MQTT 5: a client with more unfinished inbound QoS 2 exchanges than the broker's
        // Receive Maximum (3) is disconnected with 0x93.
        let mut r = Raw::open(&b, ws, true, &format!("rm-flood-{}", via(ws))).await;
        for id in 1..=3u16 {
            r.send(&publish_bytes(b"rm/flood", 2, id, false, b"x", Some(&[]))).await;
            assert_eq!(ack_id(&r.expect(5).await), id);
        }
        r.send(&publish_bytes(b"rm/flood", 2, 4, false, b"x", Some(&[]))).await;
        assert_eq!(r.closed("Receive Maximum exceeded").await, Some(0x93), "{}: DISCONNECT 0x93", via(ws));
    }
    b.shutdown().await;
}

/// A client that is still writing when the broker closes its connection can go on writing
/// and reads the reason. Here, as paho's interoperability client does, it answers each PUBREC
/// with a PUBREL after it went over the Receive Maximum, all in one write. The broker sends
/// its PUBRECs and DISCONNECT 0x93, then shuts its side and reads on, discarding, until the
/// client closes. A socket closed at once with unread input is reset instead, and the
/// client's next write fails before it has read the DISCONNECT.
#[tokio::test]
async fn a_client_still_writing_when_the_broker_closes_reads_why() {
    let mut config = Config::ephemeral();
    config.limits.max_inflight = 3;
    let b = broker_with(config).await;
    for ws in BOTH {
        let mut r = Raw::open(&b, ws, true, &format!("linger-{}", via(ws))).await;
        let mut flood = Vec::new();
        for id in 1..=4u16 {
            flood.extend(publish_bytes(b"linger/t", 2, id, false, b"x", Some(&[])));
        }
        r.send(&flood).await;
        let mut pubrecs = 0;
        let reason = loop {
            let f = r.frame().await.unwrap_or_else(|| panic!("{}: closed before the DISCONNECT", via(ws)));
            match kind(&f) {
                5 => {
                    pubrecs += 1;
                    let rel = ack_bytes(0x62, ack_id(&f));
                    if let Err(e) = r.conn.send(&rel).await {
                        panic!("{}: PUBREL {pubrecs} could not be written after the broker's goodbye: {e}", via(ws));
                    }
                }
                14 => break disconnect_reason(&f),
                k => panic!("{}: unexpected packet type {k}", via(ws)),
            }
        };
        assert_eq!((pubrecs, reason), (3, 0x93), "{}: three PUBRECs, then DISCONNECT 0x93", via(ws));
        assert_eq!(r.until_close().await, Vec::<Vec<u8>>::new(), "{}: nothing after the DISCONNECT", via(ws));
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// Clean session / clean start and the Session Present flag [MQTT-3.2.2-1..3]; a persistent
/// session keeps its subscriptions and messages; MQTT 5 Session Expiry 0 ends the session
/// with the connection, and DISCONNECT with Session Expiry 0 deletes it.
#[tokio::test]
async fn clean_and_persistent_sessions_with_session_present() {
    let b = broker().await;
    for ws in BOTH {
        // MQTT 3.1.1
        let id = format!("sess4-{}", via(ws));
        let topic = format!("sess4/{}/t", via(ws));
        let persistent = |clean: bool| {
            let mut o = opts4(&id, &b, ws);
            o.set_clean_session(clean);
            o
        };
        let (mut c, ack) = C4::open(persistent(false)).await;
        assert!(!ack.session_present, "v4 {}: a new session", via(ws));
        c.sub(&topic, 1).await;
        c.close().await;
        let mut publ = Cl::open(false, &format!("{id}-pub"), &b, ws).await;
        publ.publish(&topic, 1, false, "while away").await;
        let (mut c, ack) = C4::open(persistent(false)).await;
        assert!(ack.session_present, "v4 {}: the stored session resumed", via(ws));
        assert_eq!(c.msg().await.text(), "while away");
        c.close().await;
        let (c, ack) = C4::open(persistent(true)).await;
        assert!(!ack.session_present, "v4 {}: clean session: Session Present 0 [MQTT-3.2.2-1]", via(ws));
        c.close().await;
        let (c, ack) = C4::open(persistent(false)).await;
        assert!(!ack.session_present, "v4 {}: the clean session discarded the stored one", via(ws));
        c.close().await;

        // MQTT 5
        let id = format!("sess5-{}", via(ws));
        let topic = format!("sess5/{}/t", via(ws));
        let session = |clean: bool, expiry: u32| {
            let mut o = opts5(&id, &b, ws);
            o.set_clean_start(clean);
            o.set_session_expiry_interval(Some(expiry));
            o
        };
        let (mut c, ack) = C5::open(session(true, 3600)).await;
        assert!(!ack.session_present);
        c.sub(&topic, 1).await;
        c.close().await;
        publ.publish(&topic, 1, false, "while away 5").await;
        let (mut c, ack) = C5::open(session(false, 3600)).await;
        assert!(ack.session_present, "v5 {}: Clean Start 0 resumes [MQTT-3.2.2-2]", via(ws));
        assert_eq!(c.msg().await.text(), "while away 5");
        c.close().await;
        // Clean Start 0 with Session Expiry 0: resumed now, but ends with this connection.
        let (c, ack) = C5::open(session(false, 0)).await;
        assert!(ack.session_present);
        c.close().await;
        let (c, ack) = C5::open(session(false, 3600)).await;
        assert!(!ack.session_present, "v5 {}: Session Expiry 0 ended the session at the close", via(ws));
        // DISCONNECT with Session Expiry Interval 0 deletes a session that had 3600.
        drop(c);
        let mut r = Raw::new(&b, ws, true).await;
        let ack = r.connect5(connect5(&id, 60, false, Some(session_props(3600))), None).await;
        let _ = ack;
        disconnect5(&mut r, Some(0)).await;
        let (c, ack) = C5::open(session(false, 3600)).await;
        assert!(!ack.session_present, "v5 {}: DISCONNECT with Session Expiry 0 deleted the session", via(ws));
        c.close().await;
        publ.close().await;
    }
    b.shutdown().await;
}

/// Sends an MQTT 5 DISCONNECT (reason 0) with a Session Expiry Interval, or none, and waits
/// for the close; the server answers nothing (§3.14.4).
async fn disconnect5(r: &mut Raw, expiry: Option<u32>) {
    let props = p5::DisconnectProperties {
        session_expiry_interval: expiry,
        reason_string: None,
        user_properties: vec![],
        server_reference: None,
    };
    r.send(&encode5(p5::Packet::Disconnect(p5::Disconnect {
        reason_code: p5::DisconnectReasonCode::NormalDisconnection,
        properties: Some(props),
    })))
    .await;
    assert!(r.until_close().await.is_empty());
}

/// Paho interoperability suite, client_test5 `test_zero_length_clientid`: an MQTT 5 CONNECT
/// with an empty client id and Clean Start 0 is accepted with an Assigned Client Identifier
/// [MQTT-3.1.3-6] [MQTT-3.1.3-7] (the 3.1.1 refusal [MQTT-3.1.3-8] is not MQTT 5's), and its
/// persistent session is kept under that id.
#[tokio::test]
async fn mqtt5_empty_client_id_without_clean_start_is_assigned_one() {
    let b = broker().await;
    for ws in BOTH {
        let mut r = Raw::new(&b, ws, true).await;
        let ack = r.connect5(connect5("", 60, false, Some(session_props(3600))), None).await;
        assert_eq!(ack.code, p5::ConnectReturnCode::Success, "{}", via(ws));
        assert!(!ack.session_present, "{}: a new id has no stored session", via(ws));
        let id = ack.properties.and_then(|p| p.assigned_client_identifier).expect("Assigned Client Identifier");
        assert!(!id.is_empty());
        r.send(&[0xE0, 0]).await;
        assert!(r.until_close().await.is_empty());
        let mut r = Raw::new(&b, ws, true).await;
        let ack = r.connect5(connect5(&id, 60, false, Some(session_props(3600))), None).await;
        assert!(ack.session_present, "{}: the session was kept under the assigned id", via(ws));
        r.send(&[0xE0, 0]).await;
        assert!(r.until_close().await.is_empty());
    }
    b.shutdown().await;
}

/// A second CONNECT with the same client id closes the first connection [MQTT-3.1.4-2]; MQTT
/// 5 tells the first client DISCONNECT 0x8E Session taken over (§4.13); the new connection
/// works.
#[tokio::test]
async fn session_takeover_closes_the_first_connection() {
    let b = broker().await;
    for ws in BOTH {
        // MQTT 3.1.1
        let id = format!("take4-{}", via(ws));
        let (mut first, _) = C4::open(opts4(&id, &b, ws)).await;
        let (mut second, _) = C4::open(opts4(&id, &b, ws)).await;
        let e = first.error().await;
        drop(first);
        let _ = e;
        second.sub(&format!("{id}/t"), 1).await;
        second.publish(&format!("{id}/t"), 1, false, "still here").await;
        assert_eq!(second.msg().await.text(), "still here");
        second.close().await;

        // MQTT 5
        let id = format!("take5-{}", via(ws));
        let (mut first, _) = C5::open(opts5(&id, &b, ws)).await;
        let (mut second, _) = C5::open(opts5(&id, &b, ws)).await;
        let e = first.error().await;
        drop(first);
        assert_eq!(server_disconnect(&e), Some(0x8E), "v5 {}: DISCONNECT Session taken over, got {e:?}", via(ws));
        second.sub(&format!("{id}/t"), 1).await;
        second.publish(&format!("{id}/t"), 1, false, "still here").await;
        assert_eq!(second.msg().await.text(), "still here");
        second.close().await;

        // Raw MQTT 5: exactly one DISCONNECT 0x8E, then the close.
        let id = format!("take5raw-{}", via(ws));
        let mut first = Raw::open(&b, ws, true, &id).await;
        let _second = Raw::open(&b, ws, true, &id).await;
        assert_eq!(first.closed("takeover").await, Some(0x8E));
    }
    b.shutdown().await;
}

/// MQTT 5 Session Expiry Interval: a session with expiry 1 s is gone once that lapsed (after a
/// DISCONNECT and after an abrupt close alike).
#[tokio::test]
async fn session_expiry_interval_ends_the_session() {
    let b = broker().await;
    for ws in BOTH {
        let id = format!("expiry-{}", via(ws));
        let mut r = Raw::new(&b, ws, true).await;
        r.connect5(connect5(&id, 60, true, Some(session_props(1))), None).await;
        assert_eq!(r.subscribe(1, &[("expiry/t", 1)]).await, vec![1]);
        if ws {
            drop(r); // abrupt close
        } else {
            r.send(&[0xE0, 0]).await;
            assert!(r.until_close().await.is_empty());
        }
        let mut gone = false;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut r = Raw::new(&b, ws, true).await;
            let ack = r.connect5(connect5(&id, 60, false, Some(session_props(1))), None).await;
            r.send(&[0xE0, 0]).await;
            let _ = r.until_close().await;
            if !ack.session_present {
                gone = true;
                break;
            }
        }
        assert!(gone, "{}: the session with Session Expiry Interval 1 s expired", via(ws));
    }
    b.shutdown().await;
}

/// MQTT 5 DISCONNECT with a Session Expiry Interval replaces the one from CONNECT
/// (§3.14.2.2.2, Paho client_test5 `test_session_expiry`): a session opened for 1 s and left
/// with 3600 s is still there after a second, and one opened for 3600 s and left with 1 s is
/// gone. A third session, opened for 1 s and left without the property, shows the second has
/// passed.
#[tokio::test]
async fn disconnect_session_expiry_replaces_the_connects() {
    /// Connects with Clean Start 0 and leaves the session as it finds it (expiry 1 s again for
    /// `control`, kept for the others); returns Session Present.
    async fn present(b: &Broker, ws: bool, id: &str, expiry: u32) -> bool {
        let mut r = Raw::new(b, ws, true).await;
        let ack = r.connect5(connect5(id, 60, false, Some(session_props(expiry))), None).await;
        disconnect5(&mut r, None).await;
        ack.session_present
    }
    let b = broker().await;
    for ws in BOTH {
        let [longer, shorter, control] = ["longer", "shorter", "control"].map(|n| format!("dexp-{n}-{}", via(ws)));
        for (id, on_connect, on_disconnect) in
            [(&longer, 1, Some(3600)), (&shorter, 3600, Some(1)), (&control, 1, None)]
        {
            let mut r = Raw::new(&b, ws, true).await;
            let ack = r.connect5(connect5(id, 60, true, Some(session_props(on_connect))), None).await;
            assert!(!ack.session_present);
            disconnect5(&mut r, on_disconnect).await;
        }
        let mut control_gone = false;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            if !present(&b, ws, &control, 1).await {
                control_gone = true;
                break;
            }
        }
        assert!(control_gone, "{}: the session left with its CONNECT expiry of 1 s expired", via(ws));
        assert!(!present(&b, ws, &shorter, 0).await, "{}: DISCONNECT shortened 3600 s to 1 s", via(ws));
        assert!(present(&b, ws, &longer, 3600).await, "{}: DISCONNECT lengthened 1 s to 3600 s", via(ws));
        // Leave nothing behind.
        let mut r = Raw::new(&b, ws, true).await;
        r.connect5(connect5(&longer, 60, true, Some(session_props(0))), None).await;
        disconnect5(&mut r, None).await;
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------------------------

/// Set, replace and clear (empty payload) a retained message; a new subscription gets it with
/// RETAIN=1 [MQTT-3.3.1-6]/[MQTT-3.3.1-8]; current subscribers get it with RETAIN=0
/// [MQTT-3.3.1-9]; the empty message still reaches current subscribers [MQTT-3.3.1-10] and
/// a cleared topic gives a new subscription nothing [MQTT-3.3.1-11].
#[tokio::test]
async fn retained_set_replace_clear() {
    let b = broker().await;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("ret-{}-{}", if v5 { "v5" } else { "v4" }, via(ws));
            let topic = format!("{tag}/a");
            let mut live = Cl::open(v5, &format!("{tag}-live"), &b, ws).await;
            live.sub(&format!("{tag}/#"), 1).await;
            let mut publ = Cl::open(v5, &format!("{tag}-pub"), &b, ws).await;
            publ.publish(&topic, 1, true, "one").await;
            publ.publish(&topic, 1, true, "two").await;
            for want in ["one", "two"] {
                let m = live.msg().await;
                assert_eq!((m.text().as_str(), m.retain), (want, false), "{tag}: a live delivery has RETAIN 0");
            }
            let mut late = Cl::open(v5, &format!("{tag}-late"), &b, ws).await;
            late.sub(&format!("{tag}/#"), 1).await;
            let m = late.msg().await;
            assert_eq!((m.topic.as_str(), m.text().as_str(), m.retain), (topic.as_str(), "two", true), "{tag}");
            publ.publish(&topic, 1, false, "marker").await;
            let m = late.msg().await;
            assert_eq!((m.text().as_str(), m.retain), ("marker", false), "{tag}: only the latest retained");
            assert_eq!(live.msg().await.text(), "marker");
            // Clear.
            publ.publish(&topic, 1, true, Vec::new()).await;
            let m = live.msg().await;
            assert!(m.payload.is_empty(), "{tag}: the clearing message reaches current subscribers");
            let mut later = Cl::open(v5, &format!("{tag}-later"), &b, ws).await;
            later.sub(&format!("{tag}/#"), 1).await;
            publ.publish(&topic, 1, false, "marker2").await;
            let m = later.msg().await;
            assert_eq!(m.text(), "marker2", "{tag}: nothing retained after the clear");
            for c in [live, publ, late, later] {
                c.close().await;
            }
        }
    }
    b.shutdown().await;
}

/// MQTT 5 Retain Handling 0/1/2 and Retain As Published (§3.8.3.1, [MQTT-3.3.1-9..13]).
#[tokio::test]
async fn retain_handling_and_retain_as_published() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("rh-{}", via(ws));
        let topic = format!("{tag}/t");
        let filter = format!("{tag}/#");
        let (mut publ, _) = C5::open(opts5(&format!("{tag}-pub"), &b, ws)).await;
        publ.publish(&topic, 1, true, "kept").await;
        let opt = |rule: p5::RetainForwardRule, rap: bool| p5::Filter {
            path: filter.clone(),
            qos: Q5::AtLeastOnce,
            nolocal: false,
            preserve_retain: rap,
            retain_forward_rule: rule,
        };
        for (rule, first, again) in [
            (p5::RetainForwardRule::OnEverySubscribe, true, true),
            (p5::RetainForwardRule::OnNewSubscribe, true, false),
            (p5::RetainForwardRule::Never, false, false),
        ] {
            let (c, _) = C5::open(opts5(&format!("{tag}-{rule:?}"), &b, ws)).await;
            let mut c = Cl::V5(Box::new(c));
            for (round, want) in [("first", first), ("again", again)] {
                if let Cl::V5(c5) = &mut c {
                    c5.sub_with(opt(rule.clone(), false), None).await;
                }
                publ.publish(&topic, 1, false, format!("marker-{round}")).await;
                let got = c.until_marker(&format!("marker-{round}")).await;
                let retained: Vec<_> = got.iter().filter(|m| m.text() == "kept").collect();
                assert_eq!(retained.len(), usize::from(want), "{tag}: {rule:?} {round} subscribe: {got:?}");
                assert!(retained.iter().all(|m| m.retain), "{tag}: retained deliveries have RETAIN 1");
            }
            c.close().await;
        }
        // Retain As Published: a live retained publish keeps RETAIN 1 only for RAP subscriptions.
        let (mut rap, _) = C5::open(opts5(&format!("{tag}-rap"), &b, ws)).await;
        rap.sub_with(opt(p5::RetainForwardRule::Never, true), None).await;
        let (mut plain, _) = C5::open(opts5(&format!("{tag}-plain"), &b, ws)).await;
        plain.sub_with(opt(p5::RetainForwardRule::Never, false), None).await;
        publ.publish(&topic, 1, true, "live").await;
        let m = rap.msg().await;
        assert_eq!((m.text().as_str(), m.retain), ("live", true), "{tag}: Retain As Published keeps RETAIN");
        let m = plain.msg().await;
        assert_eq!((m.text().as_str(), m.retain), ("live", false), "{tag}: without it RETAIN is 0");
        publ.publish(&topic, 1, true, Vec::new()).await;
        for c in [rap, plain, publ] {
            c.close().await;
        }
    }
    b.shutdown().await;
}

/// Retained messages are kept in the store: they survive a restart, and so does a clear.
#[tokio::test]
async fn retained_messages_survive_a_restart() {
    let b = broker().await;
    let mut publ = Cl::open(false, "persist-pub", &b, false).await;
    publ.publish("persist/a", 1, true, "alpha").await;
    publ.publish("persist/b", 1, true, "beta").await;
    publ.publish("persist/b", 1, true, Vec::new()).await;
    publ.publish("persist/c", 2, true, "gamma").await;
    publ.close().await;
    let config = b.stop_keeping_data().await;
    let b = broker_with(config).await;
    for ws in BOTH {
        for v5 in [false, true] {
            let mut c = Cl::open(v5, &format!("persist-{}-{}", c_label(v5), via(ws)), &b, ws).await;
            c.sub("persist/#", 2).await;
            let mut got = Vec::new();
            for _ in 0..2 {
                let m = c.msg().await;
                assert!(m.retain, "{}: RETAIN 1", c.label());
                got.push((m.topic.clone(), m.text()));
            }
            got.sort();
            assert_eq!(
                got,
                [("persist/a".to_string(), "alpha".to_string()), ("persist/c".to_string(), "gamma".to_string())]
            );
            c.publish("persist/z", 0, false, "marker").await;
            assert_eq!(c.msg().await.text(), "marker", "the cleared persist/b stayed cleared");
            c.close().await;
        }
    }
    b.shutdown().await;
}

fn c_label(v5: bool) -> &'static str {
    if v5 {
        "v5"
    } else {
        "v4"
    }
}

// ---------------------------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------------------------

/// The will is published when the connection ends without DISCONNECT [MQTT-3.1.2-8], and not
/// after a DISCONNECT [MQTT-3.1.2-10]; MQTT 5 DISCONNECT 0x04 asks for it to be published.
#[tokio::test]
async fn will_on_abrupt_close_not_on_disconnect() {
    let b = broker().await;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("will-{}-{}", c_label(v5), via(ws));
            let mut watcher = Cl::open(v5, &format!("{tag}-watch"), &b, ws).await;
            watcher.sub(&format!("{tag}/#"), 1).await;
            let base = b.connections();
            // Abrupt close: the event loop (and its socket) is dropped without DISCONNECT.
            let abrupt = open_with_will(v5, &format!("{tag}-a"), &b, ws, &format!("{tag}/a"), "a is gone").await;
            drop(abrupt);
            let m = watcher.msg().await;
            assert_eq!((m.topic.as_str(), m.text().as_str()), (format!("{tag}/a").as_str(), "a is gone"), "{tag}");
            settle(&b, base).await;
            // Normal DISCONNECT: no will.
            let polite = open_with_will(v5, &format!("{tag}-b"), &b, ws, &format!("{tag}/b"), "b is gone").await;
            polite.close().await;
            settle(&b, base).await;
            watcher.publish(&format!("{tag}/b"), 1, false, "marker").await;
            let got = watcher.until_marker("marker").await;
            assert_eq!(got.len(), 1, "{tag}: no will after DISCONNECT: {got:?}");
            if v5 {
                // DISCONNECT 0x04 Disconnect with Will Message.
                let mut r = Raw::new(&b, ws, true).await;
                let will = p5::LastWill::new(format!("{tag}/c"), "c asked", Q5::AtLeastOnce, false, None);
                r.connect5(connect5(&format!("{tag}-c"), 60, true, None), Some(will)).await;
                r.send(&[0xE0, 1, 0x04]).await;
                assert!(r.until_close().await.is_empty());
                assert_eq!(watcher.msg().await.text(), "c asked", "{tag}: DISCONNECT 0x04 publishes the will");
            }
            watcher.close().await;
        }
    }
    b.shutdown().await;
}

async fn open_with_will(v5: bool, id: &str, b: &Broker, ws: bool, topic: &str, payload: &str) -> Cl {
    if v5 {
        let mut o = opts5(id, b, ws);
        o.set_last_will(p5::LastWill::new(topic, payload, Q5::AtLeastOnce, false, None));
        Cl::V5(Box::new(C5::open(o).await.0))
    } else {
        let mut o = opts4(id, b, ws);
        o.set_last_will(rumqttc::LastWill::new(topic, payload, Q4::AtLeastOnce, false));
        Cl::V4(Box::new(C4::open(o).await.0))
    }
}

/// A client that goes silent past 1.5 × its keep-alive is closed and its will published
/// [MQTT-3.1.2-24] (MQTT 5 may say DISCONNECT 0x8D first).
#[tokio::test]
async fn will_on_keep_alive_expiry() {
    let b = broker().await;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("kaw-{}-{}", c_label(v5), via(ws));
            let mut watcher = Cl::open(v5, &format!("{tag}-watch"), &b, ws).await;
            watcher.sub(&format!("{tag}/#"), 1).await;
            let mut r = Raw::new(&b, ws, v5).await;
            if v5 {
                let will = p5::LastWill::new(format!("{tag}/w"), "timed out", Q5::AtLeastOnce, false, None);
                r.connect5(connect5(&format!("{tag}-sleepy"), 1, true, None), Some(will)).await;
            } else {
                let mut c = rumqttc::Connect::new(format!("{tag}-sleepy"));
                c.keep_alive = 1;
                c.last_will = Some(rumqttc::LastWill::new(format!("{tag}/w"), "timed out", Q4::AtLeastOnce, false));
                r.send(&encode4(rumqttc::Packet::Connect(c))).await;
                assert_eq!(r.frame().await.unwrap(), vec![0x20, 2, 0, 0]);
            }
            let reason = r.closed("keep-alive expiry").await;
            if v5 {
                assert!(matches!(reason, None | Some(0x8D)), "{tag}: DISCONNECT 0x8D or a plain close, got {reason:?}");
            } else {
                assert_eq!(reason, None, "{tag}: MQTT 3.1.1 has no server DISCONNECT");
            }
            let m = watcher.msg().await;
            assert_eq!(m.text(), "timed out", "{tag}");
            watcher.close().await;
        }
    }
    b.shutdown().await;
}

/// MQTT 5 Will Delay Interval (§3.1.3.2.2): published after the delay; not published if the
/// client reconnects within it [MQTT-3.1.3-9]; published when the session ends if that is
/// sooner; and the will properties are passed through [MQTT-3.1.3-10].
#[tokio::test]
async fn will_delay_and_will_properties() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("wd-{}", via(ws));
        let (mut watcher, _) = C5::open(opts5(&format!("{tag}-watch"), &b, ws)).await;
        watcher.sub(&format!("{tag}/#"), 1).await;

        // Published after a 1 s delay, with every will property.
        let props = p5::LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(600),
            content_type: Some("text/plain".into()),
            response_topic: Some(format!("{tag}/reply")),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
            user_properties: vec![("why".into(), "test".into()), ("why".into(), "again".into())],
        };
        let mut o = opts5(&format!("{tag}-x"), &b, ws);
        o.set_session_expiry_interval(Some(60));
        o.set_last_will(p5::LastWill::new(format!("{tag}/x"), "x is gone", Q5::AtLeastOnce, false, Some(props)));
        let (x, _) = C5::open(o).await;
        drop(x);
        let m = watcher.msg().await;
        assert_eq!(m.text(), "x is gone");
        let p = m.props.expect("will properties");
        assert_eq!(p.payload_format_indicator, Some(1));
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.response_topic, Some(format!("{tag}/reply")));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"\x00\x01corr"[..]));
        assert_eq!(
            p.user_properties,
            vec![("why".to_string(), "test".to_string()), ("why".to_string(), "again".to_string())]
        );
        let expiry = p.message_expiry_interval.expect("the will's Message Expiry Interval");
        assert!((1..=600).contains(&expiry), "expiry {expiry}");

        // Reconnect within the 2 s delay: the will is not published.
        let id = format!("{tag}-y");
        let mut o = opts5(&id, &b, ws);
        o.set_session_expiry_interval(Some(60));
        o.set_last_will(p5::LastWill::new(format!("{tag}/y"), "y is gone", Q5::AtLeastOnce, false, {
            let mut p = will_props();
            p.delay_interval = Some(2);
            Some(p)
        }));
        let (y, _) = C5::open(o).await;
        drop(y);
        let mut o = opts5(&id, &b, ws);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(60));
        let (y, ack) = C5::open(o).await;
        assert!(ack.session_present);
        // Well past the delay.
        tokio::time::sleep(Duration::from_secs(3)).await;
        watcher.publish(&format!("{tag}/y"), 1, false, "marker").await;
        let m = watcher.msg().await;
        assert_eq!(m.text(), "marker", "{tag}: no will when the client came back within the Will Delay Interval");
        y.close().await;

        // Will Delay 300 s but Session Expiry 1 s: the will goes out when the session ends.
        let mut o = opts5(&format!("{tag}-z"), &b, ws);
        o.set_session_expiry_interval(Some(1));
        o.set_last_will(p5::LastWill::new(format!("{tag}/z"), "z session ended", Q5::AtLeastOnce, false, {
            let mut p = will_props();
            p.delay_interval = Some(300);
            Some(p)
        }));
        let (z, _) = C5::open(o).await;
        drop(z);
        assert_eq!(watcher.msg().await.text(), "z session ended", "{tag}: the will at the session's end");
        watcher.close().await;
    }
    b.shutdown().await;
}

fn will_props() -> p5::LastWillProperties {
    p5::LastWillProperties {
        delay_interval: None,
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

/// `+` and `#` (§4.7.1, `#` also matches the parent level [MQTT-4.7.1-2]), and `$SYS/...` not
/// matched by a filter starting with a wildcard [MQTT-4.7.2-1] but by `$SYS/#`.
#[tokio::test]
async fn wildcards_and_sys_topics() {
    let mut config = Config::ephemeral();
    config.server.sys_interval_secs = 1;
    for ws in BOTH {
        for v5 in [false, true] {
            let b = broker_with(config.clone()).await;
            let tag = format!("{}-{}", c_label(v5), via(ws));
            let filters = ["w/+/t", "w/#", "+/+", "w/+", "+", "#", "+/broker/#"];
            let mut subs = Vec::new();
            for (i, f) in filters.iter().enumerate() {
                let mut c = Cl::open(v5, &format!("wild-{tag}-{i}"), &b, ws).await;
                c.sub(f, 0).await;
                subs.push(c);
            }
            let mut sys = Cl::open(v5, &format!("sys-{tag}"), &b, ws).await;
            sys.sub("$SYS/#", 0).await;
            // $SYS statistics arrive (Mosquitto's names): first the retained value (which may
            // predate these clients), then a periodic update, sent while all eight clients
            // are connected. After it the wildcard subscribers have had every chance to
            // (wrongly) receive $SYS messages, retained and periodic.
            let n = loop {
                let m = sys.msg().await;
                assert!(m.topic.starts_with("$SYS/"), "{tag}: {}", m.topic);
                if m.topic == "$SYS/broker/clients/connected" && !m.retain {
                    break m.text().trim().parse::<usize>().expect("a number of clients");
                }
            };
            assert!(n >= 8, "{tag}: $SYS/broker/clients/connected = {n} with eight clients connected");
            let mut publ = Cl::open(v5, &format!("wild-pub-{tag}"), &b, ws).await;
            for t in ["w", "w/a", "w/a/t", "w/a/b/t", "w/a/t/x", "/w", "x/broker/y"] {
                publ.publish(t, 1, false, t).await;
            }
            for t in ["w/end/t", "w/end", "end", "x/broker/end"] {
                publ.publish(t, 1, false, "end").await;
            }
            let expected: [&[&str]; 7] = [
                &["w/a/t"],
                &["w", "w/a", "w/a/t", "w/a/b/t", "w/a/t/x"],
                &["w/a", "/w"],
                &["w/a"],
                &["w"],
                &["w", "w/a", "w/a/t", "w/a/b/t", "w/a/t/x", "/w", "x/broker/y"],
                &["x/broker/y"],
            ];
            for ((f, c), want) in filters.iter().zip(subs.iter_mut()).zip(expected) {
                let got: Vec<String> =
                    c.until_marker("end").await.into_iter().filter(|m| m.text() != "end").map(|m| m.topic).collect();
                assert_eq!(got, want, "{tag}: filter {f:?} (no $SYS/ topics for a leading wildcard)");
            }
            for c in subs {
                c.close().await;
            }
            b.shutdown().await;
        }
    }
}

/// Invalid topic filters get a failure code in SUBACK (3.1.1: 0x80; MQTT 5: 0x8F Topic Filter
/// invalid) while the valid ones in the same SUBSCRIBE are granted and work (§4.7.1,
/// [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1], [MQTT-4.8.2-2]).
#[tokio::test]
async fn invalid_filters_get_suback_failure() {
    let b = broker().await;
    for ws in BOTH {
        for v5 in [false, true] {
            let tag = format!("filt-{}-{}", c_label(v5), via(ws));
            let mut r = Raw::open(&b, ws, v5, &tag).await;
            let fail = if v5 { 0x8F } else { 0x80 };
            let codes = r
                .subscribe(
                    3,
                    &[
                        ("ok/+", 1),
                        ("a/#/b", 1),
                        ("a+", 0),
                        ("sport/ten#", 0),
                        ("a/b+/c", 0),
                        ("$share/g+/x", 0),
                        ("$share/g", 0),
                        ("$share/g/", 0),
                    ],
                )
                .await;
            assert_eq!(codes, vec![1, fail, fail, fail, fail, fail, fail, fail], "{tag}: SUBACK codes");
            // The connection is fine and the valid subscription works.
            let props: Option<&[u8]> = if v5 { Some(&[]) } else { None };
            r.send(&publish_bytes(b"ok/x", 0, 0, false, b"granted", props)).await;
            let f = r.frame().await.expect("delivery");
            assert_eq!(parse_publish(&f, v5).payload, b"granted");
            assert!(r.ping().await.is_empty());
            // An empty filter [MQTT-4.7.3-1]: MQTT 5 SUBACK 0x8F. MQTT 3.1.1 may instead close
            // the connection ([MQTT-4.8.0-1]: a protocol violation closes it).
            r.send(&subscribe_bytes(v5, 4, &[("", 0)])).await;
            match r.frame().await {
                Some(f) => {
                    assert_eq!(kind(&f), 9, "{tag}: SUBACK for an empty filter, got {f:02x?}");
                    assert_eq!(f.last(), Some(&fail), "{tag}: empty filter refused");
                    assert!(r.ping().await.is_empty());
                }
                None => assert!(!v5, "{tag}: MQTT 5 closed without DISCONNECT on an empty filter"),
            }
        }
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 properties and features
// ---------------------------------------------------------------------------------------------

/// User properties (order kept [MQTT-3.3.2-18]), content type, payload format indicator,
/// response topic, correlation data and message expiry reach MQTT 5 subscribers; an MQTT
/// 3.1.1 subscriber gets the payload.
#[tokio::test]
async fn publish_properties_pass_through() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("props-{}", via(ws));
        let (mut s5, _) = C5::open(opts5(&format!("{tag}-s5"), &b, ws)).await;
        s5.sub(&format!("{tag}/#"), 1).await;
        let (mut s4, _) = C4::open(opts4(&format!("{tag}-s4"), &b, ws)).await;
        s4.sub(&format!("{tag}/#"), 1).await;
        let (mut publ, _) = C5::open(opts5(&format!("{tag}-pub"), &b, ws)).await;
        let user = vec![
            ("k".to_string(), "1".to_string()),
            ("a".to_string(), "z".to_string()),
            ("k".to_string(), "2".to_string()),
        ];
        let props = p5::PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            topic_alias: None,
            response_topic: Some(format!("{tag}/replies")),
            correlation_data: Some(Bytes::from_static(b"\xffcorr\x00")),
            user_properties: user.clone(),
            subscription_identifiers: vec![],
            content_type: Some("application/json".into()),
        };
        publ.publish_props(&format!("{tag}/t"), 1, false, r#"{"a":1}"#, Some(props)).await;
        let m = s5.msg().await;
        assert_eq!(m.text(), r#"{"a":1}"#);
        let p = m.props.expect("properties");
        assert_eq!(p.user_properties, user, "{tag}: user properties in order");
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.payload_format_indicator, Some(1));
        assert_eq!(p.response_topic, Some(format!("{tag}/replies")));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"\xffcorr\x00"[..]));
        let e = p.message_expiry_interval.expect("Message Expiry Interval");
        assert!((1..=3600).contains(&e), "{tag}: delivered expiry {e} ≤ published 3600 [MQTT-3.3.2-6]");
        assert!(p.subscription_identifiers.is_empty());
        assert_eq!(s4.msg().await.text(), r#"{"a":1}"#);
        // A message without expiry carries none.
        publ.publish(&format!("{tag}/t"), 1, false, "plain").await;
        let p = s5.msg().await.props;
        assert!(p.as_ref().is_none_or(|p| p.message_expiry_interval.is_none() && p.user_properties.is_empty()));
        assert_eq!(s4.msg().await.text(), "plain");
        for c in [s5, publ] {
            c.close().await;
        }
        s4.close().await;
    }
    b.shutdown().await;
}

/// Request/response: Request Response Information 1 gets Response Information in CONNACK
/// (§3.1.2.11.6, §3.2.2.3.15); the response topic and correlation data go to the responder,
/// whose answer comes back with the same correlation data.
#[tokio::test]
async fn request_response() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("rr-{}", via(ws));
        let mut o = opts5(&format!("{tag}-req"), &b, ws);
        o.set_request_response_info(Some(1));
        let (mut req, ack) = C5::open(o).await;
        let info = ack.properties.and_then(|p| p.response_information).expect("CONNACK Response Information");
        assert!(!info.is_empty());
        let (plain, ack) = C5::open(opts5(&format!("{tag}-plain"), &b, ws)).await;
        assert!(
            ack.properties.is_none_or(|p| p.response_information.is_none()),
            "no Response Information unless requested"
        );
        plain.close().await;
        let reply_topic = format!("{info}{tag}");
        req.sub(&reply_topic, 1).await;
        let (mut svc, _) = C5::open(opts5(&format!("{tag}-svc"), &b, ws)).await;
        svc.sub(&format!("{tag}/service"), 1).await;
        let props = p5::PublishProperties {
            response_topic: Some(reply_topic.clone()),
            correlation_data: Some(Bytes::from_static(b"id-42")),
            ..Default::default()
        };
        req.publish_props(&format!("{tag}/service"), 1, false, "question", Some(props)).await;
        let q = svc.msg().await;
        let qp = q.props.expect("request properties");
        assert_eq!(qp.response_topic.as_deref(), Some(reply_topic.as_str()));
        assert_eq!(qp.correlation_data.as_deref(), Some(&b"id-42"[..]));
        let props = p5::PublishProperties { correlation_data: qp.correlation_data.clone(), ..Default::default() };
        svc.publish_props(&reply_topic, 1, false, "answer", Some(props)).await;
        let a = req.msg().await;
        assert_eq!(a.text(), "answer");
        assert_eq!(a.props.and_then(|p| p.correlation_data).as_deref(), Some(&b"id-42"[..]));
        req.close().await;
        svc.close().await;
    }
    b.shutdown().await;
}

/// Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK/PUBREC 0x99 Payload
/// format invalid (§3.3.2.3.2), not delivered, and the connection goes on.
#[tokio::test]
async fn payload_format_indicator_is_checked() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("pfi-{}", via(ws));
        let mut r = Raw::open(&b, ws, true, &tag).await;
        assert_eq!(r.subscribe(1, &[(&format!("{tag}/#"), 1)]).await, vec![1]);
        let topic = format!("{tag}/t");
        let pfi: &[u8] = &[0x01, 1];
        r.send(&publish_bytes(topic.as_bytes(), 1, 10, false, &[0xff, 0xfe, 0xfd], Some(pfi))).await;
        let ack = r.expect(4).await;
        assert_eq!((ack_id(&ack), ack_reason(&ack)), (10, 0x99), "{tag}: PUBACK 0x99");
        r.send(&publish_bytes(topic.as_bytes(), 2, 11, false, &[0xc3, 0x28], Some(pfi))).await;
        let rec = r.expect(5).await;
        assert_eq!((ack_id(&rec), ack_reason(&rec)), (11, 0x99), "{tag}: PUBREC 0x99");
        // Valid UTF-8 with the indicator: accepted and delivered with it.
        r.send(&publish_bytes(topic.as_bytes(), 1, 12, false, "grüße".as_bytes(), Some(pfi))).await;
        let mut delivered = Vec::new();
        let mut acked = false;
        while !acked || delivered.is_empty() {
            let f = r.frame().await.expect("answer");
            match decode5(&f) {
                p5::Packet::PubAck(a) => {
                    assert_eq!(a.pkid, 12);
                    assert!(matches!(a.reason, p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers));
                    acked = true;
                }
                p5::Packet::Publish(p) => {
                    r.send(&ack_bytes(0x40, p.pkid)).await;
                    delivered.push(p);
                }
                other => panic!("{tag}: unexpected {other:?}"),
            }
        }
        assert_eq!(delivered.len(), 1, "{tag}: only the valid message was delivered");
        assert_eq!(&delivered[0].payload[..], "grüße".as_bytes());
        assert_eq!(delivered[0].properties.as_ref().and_then(|p| p.payload_format_indicator), Some(1));
        assert!(r.ping().await.is_empty());
    }
    b.shutdown().await;
}

/// Message expiry: a retained message whose Message Expiry Interval lapsed is not delivered
/// to a later subscriber; one that has not lapsed is, with the remaining interval
/// (decremented, [MQTT-3.3.2-6]); one without expiry carries none.
#[tokio::test]
async fn message_expiry_of_retained_messages() {
    let b = broker().await;
    let mut publ = Vec::new();
    for ws in BOTH {
        let tag = format!("mx-{}", via(ws));
        let (mut p, _) = C5::open(opts5(&format!("{tag}-pub"), &b, ws)).await;
        for (t, expiry) in [("short", Some(1)), ("long", Some(3600)), ("none", None)] {
            let props = p5::PublishProperties { message_expiry_interval: expiry, ..Default::default() };
            p.publish_props(&format!("{tag}/{t}"), 1, true, t, Some(props)).await;
        }
        publ.push(p);
    }
    // At least 2.5 s pass: the 1 s message has lapsed and the 3600 s one has less left.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (ws, p) in BOTH.into_iter().zip(publ.iter_mut()) {
        let tag = format!("mx-{}", via(ws));
        let (sub, _) = C5::open(opts5(&format!("{tag}-sub"), &b, ws)).await;
        let mut sub = Cl::V5(Box::new(sub));
        sub.sub(&format!("{tag}/#"), 1).await;
        p.publish(&format!("{tag}/marker"), 1, false, "marker").await;
        let got = sub.until_marker("marker").await;
        let mut retained: Vec<_> = got.iter().filter(|m| m.retain).collect();
        retained.sort_by(|a, b| a.topic.cmp(&b.topic));
        let topics: Vec<&str> = retained.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, [format!("{tag}/long"), format!("{tag}/none")], "{tag}: the lapsed one is gone");
        let left = retained[0].props.as_ref().and_then(|p| p.message_expiry_interval).expect("remaining expiry");
        assert!((1..=3599).contains(&left), "{tag}: remaining expiry {left} decremented from 3600");
        assert!(retained[1].props.as_ref().is_none_or(|p| p.message_expiry_interval.is_none()));
        sub.close().await;
    }
    for p in publ {
        p.close().await;
    }
    b.shutdown().await;
}

/// Topic aliases (§3.3.2.3.4): the client sets one up and then sends the empty topic with it;
/// the broker uses aliases towards a client that allows them (never above its Topic Alias
/// Maximum), and none towards one that does not.
#[tokio::test]
async fn topic_aliases_both_directions() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("ta-{}", via(ws));
        let (mut plain, ack) = C5::open(opts5(&format!("{tag}-plain"), &b, ws)).await;
        assert_eq!(ack.properties.and_then(|p| p.topic_alias_max), Some(16), "CONNACK Topic Alias Maximum");
        plain.sub(&format!("{tag}/#"), 1).await;
        let mut o = opts5(&format!("{tag}-aliased"), &b, ws);
        o.set_topic_alias_max(Some(2));
        let (mut aliased, _) = C5::open(o).await;
        aliased.sub(&format!("{tag}/#"), 1).await;

        // Client → broker: alias 1 set up with the topic, then used with an empty topic.
        let (mut publ, _) = C5::open(opts5(&format!("{tag}-pub"), &b, ws)).await;
        let alias = |a: u16| p5::PublishProperties { topic_alias: Some(a), ..Default::default() };
        let t1 = format!("{tag}/one");
        publ.publish_props(&t1, 1, false, "a", Some(alias(1))).await;
        publ.publish_props("", 1, false, "b", Some(alias(1))).await;
        // Then more topics, for the broker's aliases.
        let (t2, t3) = (format!("{tag}/two"), format!("{tag}/three"));
        let sequence = [(&t2, "c"), (&t1, "d"), (&t3, "e"), (&t2, "f"), (&t3, "g"), (&t1, "h")];
        for (t, p) in sequence {
            publ.publish(t, 1, false, p).await;
        }
        let want: Vec<(String, String)> =
            [(&t1, "a"), (&t1, "b")].into_iter().chain(sequence).map(|(t, p)| (t.clone(), p.to_string())).collect();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let m = plain.msg().await;
            assert!(m.props.as_ref().is_none_or(|p| p.topic_alias.is_none()), "{tag}: no alias without permission");
            got.push((m.topic.clone(), m.text()));
        }
        assert_eq!(got, want, "{tag}: the client's alias resolved to its topic");
        let mut map = BTreeMap::new();
        let (mut got, mut used) = (Vec::new(), 0);
        for _ in 0..want.len() {
            let p = aliased.raw_msg().await;
            let a = p.properties.as_ref().and_then(|p| p.topic_alias);
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let topic = match a {
                Some(a) => {
                    assert!((1..=2).contains(&a), "{tag}: alias {a} within the client's maximum 2 [MQTT-3.3.2-12]");
                    if topic.is_empty() {
                        used += 1;
                        map.get(&a).cloned().unwrap_or_else(|| panic!("{tag}: alias {a} used before it was set up"))
                    } else {
                        map.insert(a, topic.clone());
                        topic
                    }
                }
                None => topic,
            };
            got.push((topic, String::from_utf8_lossy(&p.payload).into_owned()));
        }
        assert_eq!(got, want, "{tag}: the broker's aliases resolve to the right topics");
        assert!(used > 0, "{tag}: the broker used topic aliases towards a client that allows them");
        for c in [plain, aliased, publ] {
            c.close().await;
        }
    }
    b.shutdown().await;
}

/// Subscription Identifiers are delivered with the messages they matched [MQTT-3.3.4-3]: a
/// client whose subscriptions overlap gets one copy [MQTT-3.3.4-2] with the identifiers of
/// all of them [MQTT-3.3.4-4] (as paho's interoperability suite expects), and none for a
/// subscription without; No Local keeps a client's own messages from it [MQTT-3.8.3-3].
#[tokio::test]
async fn subscription_identifiers_and_no_local() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("si-{}", via(ws));
        let (c, _) = C5::open(opts5(&format!("{tag}-ids"), &b, ws)).await;
        let mut ids = Cl::V5(Box::new(c));
        if let Cl::V5(c) = &mut ids {
            c.sub_with(p5::Filter::new(format!("{tag}/+"), Q5::AtLeastOnce), Some(7)).await;
            c.sub_with(p5::Filter::new(format!("{tag}/#"), Q5::AtLeastOnce), Some(9)).await;
        }
        let (c, _) = C5::open(opts5(&format!("{tag}-noid"), &b, ws)).await;
        let mut noid = Cl::V5(Box::new(c));
        noid.sub(&format!("{tag}/#"), 1).await;
        let mut publ = Cl::open(true, &format!("{tag}-pub"), &b, ws).await;
        publ.publish(&format!("{tag}/a"), 1, false, "both").await;
        publ.publish(&format!("{tag}/a/b"), 1, false, "end").await;
        let got = ids.until_marker("end").await;
        let both: Vec<_> = got.iter().filter(|m| m.text() == "both").collect();
        assert_eq!(both.len(), 1, "{tag}: one copy for the overlapping subscriptions: {got:?}");
        let mut idents = both[0].props.as_ref().map(|p| p.subscription_identifiers.clone()).unwrap_or_default();
        idents.sort_unstable();
        assert_eq!(idents, [7, 9], "{tag}: identifiers of both matching subscriptions: {got:?}");
        let last = got.last().unwrap();
        assert_eq!(last.props.as_ref().map(|p| p.subscription_identifiers.clone()), Some(vec![9]), "{tag}");
        for m in noid.until_marker("end").await {
            assert!(
                m.props.as_ref().is_none_or(|p| p.subscription_identifiers.is_empty()),
                "{tag}: no identifier {m:?}"
            );
        }

        // No Local.
        let (mut own, _) = C5::open(opts5(&format!("{tag}-own"), &b, ws)).await;
        let mut f = p5::Filter::new(format!("{tag}/nl/#"), Q5::AtLeastOnce);
        f.nolocal = true;
        own.sub_with(f, None).await;
        own.sub(&format!("{tag}/local/#"), 1).await;
        own.publish(&format!("{tag}/nl/x"), 1, false, "mine").await;
        own.publish(&format!("{tag}/local/x"), 1, false, "mine too").await;
        publ.publish(&format!("{tag}/nl/x"), 1, false, "theirs").await;
        let mut own = Cl::V5(Box::new(own));
        let got: Vec<String> = own.until_marker("theirs").await.iter().map(Msg::text).collect();
        assert_eq!(got, ["mine too", "theirs"], "{tag}: No Local drops only the own message on that subscription");
        for c in [ids, noid, publ, own] {
            c.close().await;
        }
    }
    b.shutdown().await;
}

/// Maximum Packet Size: the CONNACK announces the broker's (`limits.max_frame_bytes`), and
/// the broker never sends a client a packet larger than the client's: it drops that message
/// [MQTT-3.1.2-25] and goes on.
#[tokio::test]
async fn maximum_packet_size_both_ways() {
    let mut config = Config::ephemeral();
    config.limits.max_frame_bytes = 4096;
    let b = broker_with(config).await;
    for ws in BOTH {
        let tag = format!("mps-{}", via(ws));
        let mut o = opts5(&format!("{tag}-small"), &b, ws);
        o.set_max_packet_size(Some(256));
        let (mut small, ack) = C5::open(o).await;
        assert_eq!(ack.properties.and_then(|p| p.max_packet_size), Some(4096), "{tag}: CONNACK Maximum Packet Size");
        small.sub(&format!("{tag}/#"), 1).await;
        let (mut big, _) = C5::open(opts5(&format!("{tag}-big"), &b, ws)).await;
        big.sub(&format!("{tag}/#"), 1).await;
        let (mut publ, _) = C5::open(opts5(&format!("{tag}-pub"), &b, ws)).await;
        publ.publish(&format!("{tag}/t"), 1, false, vec![b'x'; 1000]).await;
        publ.publish(&format!("{tag}/t"), 0, false, vec![b'y'; 1000]).await;
        publ.publish(&format!("{tag}/t"), 1, false, "small").await;
        // rumqttc's own limit would fail the event loop if a larger packet arrived.
        let m = small.msg().await;
        assert_eq!(m.text(), "small", "{tag}: the oversize messages were not sent to the small client");
        assert_eq!(big.msg().await.payload.len(), 1000);
        assert_eq!(big.msg().await.payload.len(), 1000);
        assert_eq!(big.msg().await.text(), "small");
        for c in [small, big, publ] {
            c.close().await;
        }
    }
    b.shutdown().await;
}

/// Server Keep Alive (§3.2.2.3.14): with `mqtt.max_keep_alive_secs` the broker caps an MQTT 5
/// client's keep-alive (0 included) and says so in CONNACK; the capped value is enforced.
#[tokio::test]
async fn server_keep_alive() {
    let mut config = Config::ephemeral();
    config.mqtt.max_keep_alive_secs = 1;
    let b = broker_with(config).await;
    for ws in BOTH {
        for (asked, told) in [(60u16, Some(1u16)), (0, Some(1)), (1, None)] {
            let mut r = Raw::new(&b, ws, true).await;
            let ack = r.connect5(connect5(&format!("ska-{}-{asked}", via(ws)), asked, true, None), None).await;
            let ska = ack.properties.and_then(|p| p.server_keep_alive);
            assert_eq!(ska, told, "{}: keep-alive {asked}", via(ws));
            if asked == 0 {
                // The client asked for no keep-alive but was told 1 s: silence closes it.
                let reason = r.closed("server keep-alive").await;
                assert!(matches!(reason, None | Some(0x8D)), "{reason:?}");
            }
        }
    }
    b.shutdown().await;
}

/// MQTT 5 Assigned Client Identifier for an empty client id [MQTT-3.2.2-16]; MQTT 3.1.1
/// accepts an empty id with Clean Session 1 [MQTT-3.1.3-6] and refuses it with Clean Session
/// 0 (CONNACK 0x02) [MQTT-3.1.3-8].
#[tokio::test]
async fn assigned_client_identifier() {
    let b = broker().await;
    for ws in BOTH {
        let (mut a, ack) = C5::open(opts5("", &b, ws)).await;
        let id_a = ack.properties.and_then(|p| p.assigned_client_identifier).expect("Assigned Client Identifier");
        let (b2, ack) = C5::open(opts5("", &b, ws)).await;
        let id_b = ack.properties.and_then(|p| p.assigned_client_identifier).expect("Assigned Client Identifier");
        assert!(!id_a.is_empty() && id_a != id_b, "{}: unique ids {id_a} {id_b}", via(ws));
        a.sub(&format!("aci/{}", via(ws)), 1).await;
        a.publish(&format!("aci/{}", via(ws)), 1, false, "works").await;
        assert_eq!(a.msg().await.text(), "works");
        let (named, ack) = C5::open(opts5("named", &b, ws)).await;
        assert!(ack.properties.is_none_or(|p| p.assigned_client_identifier.is_none()));
        for c in [a, b2, named] {
            c.close().await;
        }
        let mut r = Raw::new(&b, ws, false).await;
        r.send(&mqtt_connect_bytes("", 30, true)).await;
        assert_eq!(r.frame().await.unwrap(), vec![0x20, 2, 0, 0], "3.1.1 empty id, clean session");
        let mut r = Raw::new(&b, ws, false).await;
        r.send(&mqtt_connect_bytes("", 30, false)).await;
        assert_eq!(r.frame().await.unwrap(), vec![0x20, 2, 0, 2], "3.1.1 empty id, persistent: 0x02");
        assert!(r.until_close().await.is_empty());
    }
    b.shutdown().await;
}

/// Shared subscriptions `$share/<group>/<filter>` (§4.8.2): each message goes to one member,
/// members together get all of them; an ordinary subscriber gets every message; a shared
/// subscription gets no retained messages. Members here are an MQTT 5 and an MQTT 3.1.1
/// client.
#[tokio::test]
async fn shared_subscriptions_split_the_load() {
    let b = broker().await;
    for ws in BOTH {
        let tag = format!("sh-{}", via(ws));
        let mut publ = Cl::open(true, &format!("{tag}-pub"), &b, ws).await;
        publ.publish(&format!("{tag}/retained"), 1, true, "retained").await;
        let share = format!("$share/g{}/{tag}/#", via(ws));
        let mut members = Vec::new();
        for (i, v5) in [(0, true), (1, false)] {
            let mut m = Cl::open(v5, &format!("{tag}-m{i}"), &b, ws).await;
            m.sub(&share, 1).await;
            members.push(m);
        }
        let mut all = Cl::open(true, &format!("{tag}-all"), &b, ws).await;
        all.sub(&format!("{tag}/#"), 1).await;
        assert_eq!(all.msg().await.text(), "retained");
        for i in 0..20 {
            publ.publish(&format!("{tag}/n"), 1, false, i.to_string()).await;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (i, mut m) in members.into_iter().enumerate() {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let msg = m.msg().await;
                    if tx.send((i, msg.text())).is_err() {
                        return;
                    }
                }
            }));
        }
        let mut per = [BTreeSet::new(), BTreeSet::new()];
        let mut total = 0;
        while total < 20 {
            let (i, text) = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("shared deliveries").unwrap();
            assert_ne!(text, "retained", "{tag}: no retained message for a shared subscription");
            assert!(per[i].insert(text.clone()), "{tag}: {text} twice to member {i}");
            total += 1;
        }
        assert!(per[0].is_disjoint(&per[1]), "{tag}: each message to one member only");
        let union: BTreeSet<String> = per[0].union(&per[1]).cloned().collect();
        assert_eq!(union, (0..20).map(|i| i.to_string()).collect(), "{tag}");
        assert!(!per[0].is_empty() && !per[1].is_empty(), "{tag}: both members got some: {per:?}");
        for i in 0..20 {
            assert_eq!(all.msg().await.text(), i.to_string(), "{tag}: the ordinary subscriber gets all");
        }
        for t in tasks {
            t.abort();
        }
        publ.publish(&format!("{tag}/retained"), 1, true, Vec::new()).await;
        all.close().await;
        publ.close().await;
    }
    b.shutdown().await;
}

/// Shutdown: MQTT 5 clients get DISCONNECT 0x8B Server shutting down (§4.13), MQTT 3.1.1
/// clients a close.
#[tokio::test]
async fn shutdown_sends_disconnect_0x8b() {
    let b = broker().await;
    let mut v5s = Vec::new();
    let mut raws = Vec::new();
    for ws in BOTH {
        v5s.push((ws, C5::open(opts5(&format!("bye5-{}", via(ws)), &b, ws)).await.0));
        raws.push((ws, true, Raw::open(&b, ws, true, &format!("byeraw5-{}", via(ws))).await));
        raws.push((ws, false, Raw::open(&b, ws, false, &format!("byeraw4-{}", via(ws))).await));
    }
    let (mut c4, _) = C4::open(opts4("bye4", &b, false)).await;
    let stop = tokio::spawn(b.shutdown());
    for (ws, mut c) in v5s {
        let e = c.error().await;
        assert_eq!(server_disconnect(&e), Some(0x8B), "{}: {e:?}", via(ws));
    }
    for (ws, v5, mut r) in raws {
        let reason = r.closed("shutdown").await;
        if v5 {
            assert_eq!(reason, Some(0x8B), "{}", via(ws));
        } else {
            assert_eq!(reason, None, "{}: 3.1.1 gets a plain close", via(ws));
        }
    }
    let _ = c4.error().await;
    tokio::time::timeout(PATIENCE, stop).await.expect("shutdown finishes").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Each violation closes that connection (MQTT 5: DISCONNECT with the reason code of §4.13 /
/// §2.1.4 first; MQTT 3.1.1: a plain close), and nothing else is affected: a bystander keeps
/// working and a fresh client connects.
#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let mut config = Config::ephemeral();
    config.limits.max_frame_bytes = 1024;
    let b = broker_with(config).await;
    for ws in BOTH {
        let mut bystander = Cl::open(true, &format!("bystander-{}", via(ws)), &b, ws).await;
        bystander.sub("by/#", 1).await;
        for v5 in [false, true] {
            let p: Option<&[u8]> = if v5 { Some(&[]) } else { None };
            let mut cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
                // [MQTT-3.8.1-1] reserved flags of SUBSCRIBE must be 0010.
                (
                    "SUBSCRIBE with reserved flags 0000",
                    {
                        let mut s = subscribe_bytes(v5, 1, &[("a", 0)]);
                        s[0] = 0x80;
                        s
                    },
                    &[0x81],
                ),
                // A topic length that runs past the packet.
                ("topic length beyond the packet", packet(0x30, &[0, 40, b'a', b'b']), &[0x81]),
                // Remaining Length with a fifth byte (§1.5.5: at most four).
                ("bad remaining length", vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01], &[0x81]),
                // [MQTT-1.5.4-1] ill-formed UTF-8.
                ("invalid UTF-8 topic", publish_bytes(&[b'a', 0xc3, 0x28], 0, 0, false, b"x", p), &[0x81]),
                // [MQTT-3.3.1-4] QoS 3 is malformed.
                (
                    "PUBLISH QoS 3",
                    {
                        let mut f = publish_bytes(b"a/b", 1, 1, false, b"x", p);
                        f[0] = 0x36;
                        f
                    },
                    &[0x81],
                ),
                // [MQTT-3.3.2-2] no wildcards in a topic name: 0x90 Topic Name invalid.
                ("wildcard + in PUBLISH topic", publish_bytes(b"a/+/b", 0, 0, false, b"x", p), &[0x90]),
                ("wildcard # in PUBLISH topic", publish_bytes(b"a/#", 1, 2, false, b"x", p), &[0x90]),
                // [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
                (
                    "DUP on QoS 0",
                    {
                        let mut f = publish_bytes(b"a/b", 0, 0, false, b"x", p);
                        f[0] |= 0x08;
                        f
                    },
                    &[0x81],
                ),
                // [MQTT-3.8.3-3] (3.1.1) / §3.8.3 (5): a SUBSCRIBE with no filter.
                ("SUBSCRIBE without filters", subscribe_bytes(v5, 1, &[]), &[0x81, 0x82]),
                // Packet type 0 is reserved.
                ("reserved packet type 0", vec![0x00, 0x00], &[0x81, 0x82]),
                // Larger than the broker's maximum (1024): MQTT 5 0x95 Packet too large.
                ("oversize PUBLISH", publish_bytes(b"by/big", 0, 0, false, &[b'z'; 2000], p), &[0x95]),
            ];
            if v5 {
                cases.push(("Topic Alias 0", publish_bytes(b"a/b", 0, 0, false, b"x", Some(&[0x23, 0, 0])), &[0x94]));
                cases.push((
                    "Topic Alias above the maximum",
                    publish_bytes(b"a/b", 0, 0, false, b"x", Some(&[0x23, 0, 17])),
                    &[0x94],
                ));
                cases.push((
                    "unknown Topic Alias with an empty topic",
                    publish_bytes(b"", 0, 0, false, b"x", Some(&[0x23, 0, 5])),
                    &[0x82],
                ));
                cases.push(("empty topic without alias", publish_bytes(b"", 0, 0, false, b"x", Some(&[])), &[0x82]));
                // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
                cases.push((
                    "No Local on a shared subscription",
                    subscribe_bytes(true, 1, &[("$share/g/a", 0x04)]),
                    &[0x82],
                ));
                // [MQTT-3.3.4-6] a client's PUBLISH with a Subscription Identifier.
                cases.push((
                    "Subscription Identifier from a client",
                    publish_bytes(b"a/b", 0, 0, false, b"x", Some(&[0x0B, 5])),
                    &[0x82],
                ));
            }
            for (what, bytes, want) in cases {
                let label = format!("{} {} {what}", c_label(v5), via(ws));
                let mut r = Raw::open(&b, ws, v5, &format!("bad-{}-{}", c_label(v5), via(ws))).await;
                r.send(&bytes).await;
                let reason = r.closed(&label).await;
                if v5 {
                    let reason = reason.unwrap_or_else(|| panic!("{label}: closed without DISCONNECT"));
                    assert!(want.contains(&reason), "{label}: DISCONNECT 0x{reason:02X}, want {want:02X?}");
                } else {
                    assert_eq!(reason, None, "{label}: MQTT 3.1.1 gets a plain close");
                }
            }
        }
        // [MQTT-3.1.0-2] A second CONNECT is a protocol error: closed, in MQTT 5 too without a
        // DISCONNECT, as Mosquitto does (a client reading from two threads, as Paho's
        // interoperability client does then, could split a DISCONNECT's bytes and hang).
        for v5 in [false, true] {
            let label = format!("{} {} second CONNECT", c_label(v5), via(ws));
            let mut r = Raw::open(&b, ws, v5, &format!("again-{}-{}", c_label(v5), via(ws))).await;
            let again = if v5 {
                encode5(p5::Packet::Connect(connect5("again", 60, true, None), None, None))
            } else {
                mqtt_connect_bytes("again", 60, true)
            };
            r.send(&again).await;
            assert_eq!(r.closed(&label).await, None, "{label}: a plain close");
        }
        // A packet before CONNECT [MQTT-3.1.0-1]: closed, nothing answered.
        for first in
            [vec![0xC0, 0], publish_bytes(b"a/b", 0, 0, false, b"x", None), subscribe_bytes(false, 1, &[("a", 0)])]
        {
            let mut r = Raw::new(&b, ws, false).await;
            r.send(&first).await;
            assert!(r.until_close().await.is_empty(), "{}: packet before CONNECT {first:02x?}", via(ws));
        }
        // The bystander and a fresh client are fine.
        bystander.publish("by/x", 1, false, "still fine").await;
        assert_eq!(bystander.msg().await.text(), "still fine");
        let mut fresh = Cl::open(false, &format!("fresh-{}", via(ws)), &b, ws).await;
        fresh.sub("by/#", 1).await;
        fresh.publish("by/y", 1, false, "fresh").await;
        assert_eq!(fresh.msg().await.text(), "fresh");
        assert_eq!(bystander.msg().await.text(), "fresh");
        fresh.close().await;
        bystander.close().await;
    }
    b.shutdown().await;
}
