//! Authentication and ACLs end to end: static users with argon2id passwords and HS256 JWTs
//! over MQTT 3.1.1, MQTT 5 and STOMP, on TCP and on WebSocket; tokens at the WebSocket
//! handshake (`Authorization: Bearer`, a cookie, `?token=`); `server.allow_anonymous`; token
//! expiry and MQTT 5 re-authentication; the failed-login limit; topic ACLs with `%u`/`%c`; the
//! `$SYS` counters; and a TLS client certificate's CN as the username.
//!
//! Clients: MQTT packets encoded and decoded in this file (never with the broker's codec),
//! rumqttc (3.1.1 and 5) for the ACL round trips, tokio-tungstenite for WebSocket and
//! tokio-rustls for TLS. Tokens are signed with jsonwebtoken, password hashes come from
//! `diglot_auth::password::hash`.
//!
//! Nothing asserts on timing: "eventually" means within [`PATIENCE`], and a negative ("the
//! denied message is not delivered") is shown with a marker message sent after it. Tests of
//! token expiry use tokens that expire a few seconds after they are made (`leeway_secs = 0`)
//! and wait for the close.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::raw_mqtt::{mqtt_str, packet, varint};
use common::users::*;
use common::*;
use diglot::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";
const COOKIE: &str = "diglot_token";

/// The ACL of most ACL tests: role admin may do anything (including `$SYS`), bob has `a/#`,
/// and everyone (anonymous clients included) has `public/#`, `users/%u/#` and `clients/%c/#`.
const ACL: &str = r##"
[[auth.acl]]
role = "admin"
publish = ["#"]
subscribe = ["#", "$SYS/#"]

[[auth.acl]]
user = "bob"
publish = ["a/#"]
subscribe = ["a/#"]

[[auth.acl]]
everyone = true
publish = ["public/#", "users/%u/#", "clients/%c/#"]
subscribe = ["public/#", "users/%u/#", "clients/%c/#"]
"##;

/// A broker configuration as `broker.toml` text: users alice (role admin) and bob, HS256
/// tokens for audience "diglot" with no leeway (also read from the `diglot_token` cookie).
struct Setup {
    /// `server.allow_anonymous` as a TOML value; `None` leaves the default.
    anonymous: Option<&'static str>,
    /// `auth.failed_login_limit.per_minute`; high by default so that tests full of refusals
    /// are not limited.
    per_minute: u32,
    /// More `[server]` lines.
    server: String,
    /// More `[auth.jwt]` lines.
    jwt: String,
    /// Sections after `[auth.jwt]`: ACL rules, listeners.
    tail: String,
}

impl Setup {
    fn new(anonymous: &'static str) -> Setup {
        Setup {
            anonymous: Some(anonymous),
            per_minute: 1000,
            server: String::new(),
            jwt: String::new(),
            tail: String::new(),
        }
    }

    fn tail(mut self, tail: &str) -> Setup {
        self.tail.push_str(tail);
        self
    }

    fn toml(&self) -> String {
        let (alice, bob) = hashes();
        let anonymous = self.anonymous.map(|a| format!("allow_anonymous = {a}\n")).unwrap_or_default();
        format!(
            "[server]\n{anonymous}{server}\n\
             [auth]\n\
             users = [{{ username = \"alice\", password_hash = \"{alice}\", roles = [\"admin\"] }}, \
                      {{ username = \"bob\", password_hash = \"{bob}\" }}]\n\
             failed_login_limit = {{ per_minute = {pm}, max_addresses = 10000 }}\n\
             [auth.jwt]\n\
             hs256_secret = \"{SECRET}\"\n\
             audience = \"{AUDIENCE}\"\n\
             leeway_secs = 0\n\
             cookie_name = \"{COOKIE}\"\n{jwt}\n{tail}",
            server = self.server,
            pm = self.per_minute,
            jwt = self.jwt,
            tail = self.tail,
        )
    }

    async fn start(&self) -> TestBroker {
        broker_with(config_from(&self.toml())).await
    }
}

/// Parses `toml` as `broker.toml` and moves it to the test's world: a fresh store directory,
/// and port 0 for every listener the text did not give an explicit port-0 address.
fn config_from(toml: &str) -> Config {
    let mut c = Config::parse(toml, "auth-test.toml").unwrap_or_else(|e| panic!("config refused: {e}\n{toml}"));
    let e = Config::ephemeral();
    c.store.path = e.store.path;
    let ls = &mut c.listeners;
    for (addr, port0) in [
        (&mut ls.ws.addr, e.listeners.ws.addr),
        (&mut ls.mqtt.addr, e.listeners.mqtt.addr),
        (&mut ls.stomp.addr, e.listeners.stomp.addr),
        (&mut ls.wss.addr, e.listeners.wss.addr),
        (&mut ls.mqtts.addr, e.listeners.mqtts.addr),
        (&mut ls.stomps.addr, e.listeners.stomps.addr),
    ] {
        if addr.port() != 0 {
            *addr = port0;
        }
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn sign_with(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign")
}

fn sign(claims: &Value) -> String {
    sign_with(claims, SECRET)
}

/// A valid token for `sub` with `roles`, expiring at `exp` (seconds since the epoch).
fn token_until(sub: &str, roles: &[&str], exp: u64) -> String {
    sign(&json!({ "sub": sub, "roles": roles, "aud": AUDIENCE, "exp": exp, "iat": unix_now() }))
}

/// A valid token for `sub` with `roles`, for an hour.
fn token(sub: &str, roles: &[&str]) -> String {
    token_until(sub, roles, unix_now() + 3600)
}

/// Tokens that must be refused, with what is wrong with each.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let now = unix_now();
    vec![
        ("expired", sign(&json!({ "sub": "alice", "aud": AUDIENCE, "exp": now - 120 }))),
        ("not yet valid", sign(&json!({ "sub": "alice", "aud": AUDIENCE, "exp": now + 3600, "nbf": now + 1800 }))),
        ("wrong audience", sign(&json!({ "sub": "alice", "aud": "someone-else", "exp": now + 3600 }))),
        ("no audience", sign(&json!({ "sub": "alice", "exp": now + 3600 }))),
        ("wrong key", sign_with(&json!({ "sub": "alice", "aud": AUDIENCE, "exp": now + 3600 }), OTHER_SECRET)),
        ("not a JWT", "not.a.token".to_string()),
    ]
}

// ---------------------------------------------------------------------------------------------
// MQTT packets, encoded and decoded here
// ---------------------------------------------------------------------------------------------

/// An MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s) with optional credentials.
fn connect311_bytes(id: &str, user: Option<&str>, pass: Option<&[u8]>) -> Vec<u8> {
    let flags = 0x02 | if user.is_some() { 0x80 } else { 0 } | if pass.is_some() { 0x40 } else { 0 };
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
    body.extend(mqtt_str(id.as_bytes()));
    if let Some(u) = user {
        body.extend(mqtt_str(u.as_bytes()));
    }
    if let Some(p) = pass {
        body.extend(mqtt_str(p));
    }
    packet(0x10, &body)
}

/// Authentication Method and Authentication Data properties.
fn auth_props(method: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut props = vec![0x15];
    props.extend(mqtt_str(method.as_bytes()));
    if let Some(d) = data {
        props.push(0x16);
        props.extend(mqtt_str(d));
    }
    props
}

/// An MQTT 5 CONNECT (clean start, keep-alive 60 s) with optional credentials and an optional
/// enhanced authentication `(method, data)`.
fn connect5_bytes(id: &str, user: Option<&str>, pass: Option<&[u8]>, auth: Option<(&str, &[u8])>) -> Vec<u8> {
    let flags = 0x02 | if user.is_some() { 0x80 } else { 0 } | if pass.is_some() { 0x40 } else { 0 };
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, flags, 0, 60];
    let props = auth.map(|(m, d)| auth_props(m, Some(d))).unwrap_or_default();
    body.extend(varint(props.len()));
    body.extend(props);
    body.extend(mqtt_str(id.as_bytes()));
    if let Some(u) = user {
        body.extend(mqtt_str(u.as_bytes()));
    }
    if let Some(p) = pass {
        body.extend(mqtt_str(p));
    }
    packet(0x10, &body)
}

/// An MQTT 5 AUTH packet.
fn auth_bytes(reason: u8, method: &str, data: &[u8]) -> Vec<u8> {
    let props = auth_props(method, Some(data));
    let mut body = vec![reason];
    body.extend(varint(props.len()));
    body.extend(props);
    packet(0xF0, &body)
}

/// A SUBSCRIBE of `filters`, each at QoS 1.
fn subscribe_bytes(v5: bool, id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        body.extend(mqtt_str(f.as_bytes()));
        body.push(1);
    }
    packet(0x82, &body)
}

fn publish_bytes(v5: bool, topic: &str, qos: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = mqtt_str(topic.as_bytes());
    if qos > 0 {
        body.extend(id.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

fn kind(p: &[u8]) -> u8 {
    p[0] >> 4
}

/// The packet after its fixed header.
fn body(p: &[u8]) -> &[u8] {
    let mut i = 1;
    while p[i] & 0x80 != 0 {
        i += 1;
    }
    &p[i + 1..]
}

fn read_varint(b: &[u8], i: &mut usize) -> usize {
    let (mut n, mut mult) = (0usize, 1usize);
    loop {
        let byte = b[*i];
        *i += 1;
        n += (byte & 0x7f) as usize * mult;
        mult *= 128;
        if byte & 0x80 == 0 {
            return n;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Prop {
    Int(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// An MQTT 5 property block at `b[*i..]` (length first).
fn read_props(b: &[u8], i: &mut usize) -> Vec<(u8, Prop)> {
    let len = read_varint(b, i);
    let end = *i + len;
    let mut props = Vec::new();
    let string = |b: &[u8], i: &mut usize| {
        let n = u16::from_be_bytes([b[*i], b[*i + 1]]) as usize;
        let s = b[*i + 2..*i + 2 + n].to_vec();
        *i += 2 + n;
        s
    };
    while *i < end {
        let id = b[*i];
        *i += 1;
        let value = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                *i += 1;
                Prop::Int(u32::from(b[*i - 1]))
            }
            0x13 | 0x21 | 0x22 | 0x23 => {
                *i += 2;
                Prop::Int(u32::from(u16::from_be_bytes([b[*i - 2], b[*i - 1]])))
            }
            0x02 | 0x11 | 0x18 | 0x27 => {
                *i += 4;
                Prop::Int(u32::from_be_bytes([b[*i - 4], b[*i - 3], b[*i - 2], b[*i - 1]]))
            }
            0x0B => Prop::Int(read_varint(b, i) as u32),
            0x09 | 0x16 => Prop::Bin(string(b, i)),
            0x26 => {
                let k = String::from_utf8(string(b, i)).expect("UTF-8");
                let v = String::from_utf8(string(b, i)).expect("UTF-8");
                Prop::Pair(k, v)
            }
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => {
                Prop::Str(String::from_utf8(string(b, i)).expect("UTF-8 property"))
            }
            other => panic!("unknown MQTT 5 property 0x{other:02x} in {b:02x?}"),
        };
        props.push((id, value));
    }
    props
}

fn str_prop(props: &[(u8, Prop)], id: u8) -> Option<String> {
    props.iter().find_map(|(k, v)| match v {
        Prop::Str(s) if *k == id => Some(s.clone()),
        _ => None,
    })
}

/// The reason code and properties of an MQTT 5 CONNACK, AUTH or DISCONNECT (or the return code
/// of a 3.1.1 CONNACK, with no properties).
#[derive(Debug)]
struct Reason {
    code: u8,
    props: Vec<(u8, Prop)>,
}

impl Reason {
    fn method(&self) -> Option<String> {
        str_prop(&self.props, 0x15)
    }
}

fn parse_connack(p: &[u8], v5: bool) -> Reason {
    assert_eq!(kind(p), 2, "a CONNACK: {p:02x?}");
    let b = body(p);
    if !v5 {
        assert_eq!(b.len(), 2, "3.1.1 CONNACK: {p:02x?}");
        return Reason { code: b[1], props: Vec::new() };
    }
    let mut i = 2;
    let props = read_props(b, &mut i);
    Reason { code: b[1], props }
}

/// AUTH or DISCONNECT: the reason (absent means 0) and properties.
fn parse_reason(p: &[u8]) -> Reason {
    let b = body(p);
    if b.is_empty() {
        return Reason { code: 0, props: Vec::new() };
    }
    let mut i = 1;
    let props = if b.len() > 1 { read_props(b, &mut i) } else { Vec::new() };
    Reason { code: b[0], props }
}

/// A client byte stream: plain (TCP or WebSocket) or TLS.
enum Link {
    Plain(Conn),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Link {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Plain(c) => c.send(bytes).await,
            Link::Tls(s) => s.write_all(bytes).await,
        }
    }

    async fn recv(&mut self) -> Option<Vec<u8>> {
        match self {
            Link::Plain(c) => c.recv().await,
            Link::Tls(s) => {
                let mut buf = vec![0u8; 64 * 1024];
                match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.expect("TLS server answered in time") {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some(buf)
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Ws,
}

const VIAS: [Via; 2] = [Via::Tcp, Via::Ws];

/// A raw MQTT connection.
struct Mqtt {
    link: Link,
    buf: Vec<u8>,
    v5: bool,
    /// PUBLISH packets that arrived while waiting for an acknowledgement.
    stash: std::collections::VecDeque<Vec<u8>>,
}

impl Mqtt {
    fn over(conn: Conn) -> Mqtt {
        Mqtt { link: Link::Plain(conn), buf: Vec::new(), v5: false, stash: Default::default() }
    }

    /// A connection over TCP, or over WebSocket at `/mqtt` (no token).
    async fn open(b: &TestBroker, via: Via) -> Mqtt {
        match via {
            Via::Tcp => Mqtt::over(tcp_connect(b.mqtt_addr().unwrap()).await),
            Via::Ws => Mqtt::ws(b, "/mqtt", &[]).await.unwrap_or_else(|a| panic!("handshake refused: {}", a.status)),
        }
    }

    /// A WebSocket connection at `path` with extra handshake headers.
    async fn ws(b: &TestBroker, path: &str, headers: &[(&str, &str)]) -> Result<Mqtt, WsAnswer> {
        ws_connect_with(b.ws_addr().unwrap(), path, &["mqtt"], headers).await.map(Mqtt::over)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.link.send(bytes).await.expect("send");
    }

    /// The next whole packet, or `None` once the server closed the connection.
    async fn packet(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some((_, p)) = mqtt_packets(&self.buf).into_iter().next() {
                self.buf.drain(..p.len());
                return Some(p);
            }
            let chunk = self.link.recv().await?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next packet, which must be of type `k`.
    async fn expect(&mut self, k: u8, what: &str) -> Vec<u8> {
        let p = self.packet().await.unwrap_or_else(|| panic!("{what}: closed while waiting for packet type {k}"));
        assert_eq!(kind(&p), k, "{what}: expected packet type {k}, got {p:02x?}");
        p
    }

    /// Every packet until the server closes the connection.
    async fn until_close(&mut self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(p) = self.packet().await {
            all.push(p);
        }
        all
    }

    /// MQTT 3.1.1 CONNECT; the CONNACK's return code.
    async fn connect311(&mut self, id: &str, user: Option<&str>, pass: Option<&[u8]>) -> u8 {
        self.v5 = false;
        self.send(&connect311_bytes(id, user, pass)).await;
        let p = self.expect(2, "CONNACK").await;
        parse_connack(&p, false).code
    }

    /// MQTT 5 CONNECT; the CONNACK's reason code and properties.
    async fn connect5(
        &mut self,
        id: &str,
        user: Option<&str>,
        pass: Option<&[u8]>,
        auth: Option<(&str, &[u8])>,
    ) -> Reason {
        self.v5 = true;
        self.send(&connect5_bytes(id, user, pass, auth)).await;
        let p = self.expect(2, "CONNACK").await;
        parse_connack(&p, true)
    }

    /// PINGREQ, and the PINGRESP (nothing else may come first).
    async fn ping(&mut self, what: &str) {
        self.send(&[0xC0, 0]).await;
        let p = self.packet().await.unwrap_or_else(|| panic!("{what}: closed instead of answering PINGREQ"));
        assert_eq!(p, vec![0xD0, 0], "{what}: PINGRESP");
    }

    /// SUBSCRIBE `filters` at QoS 1; the SUBACK's codes.
    async fn subscribe(&mut self, id: u16, filters: &[&str]) -> Vec<u8> {
        self.send(&subscribe_bytes(self.v5, id, filters)).await;
        let p = self.expect(9, "SUBACK").await;
        let b = body(&p);
        assert_eq!(u16::from_be_bytes([b[0], b[1]]), id);
        let mut i = 2;
        if self.v5 {
            read_props(b, &mut i);
        }
        b[i..].to_vec()
    }

    /// PUBLISH at QoS 1; the PUBACK's reason code (0 for 3.1.1).
    async fn publish1(&mut self, topic: &str, id: u16, payload: &[u8]) -> u8 {
        self.send(&publish_bytes(self.v5, topic, 1, id, payload)).await;
        loop {
            let p = self.packet().await.expect("PUBACK before the close");
            if kind(&p) == 3 {
                // A delivery of one of our own subscriptions: for `delivery`.
                self.stash.push_back(p);
                continue;
            }
            assert_eq!(kind(&p), 4, "expected PUBACK, got {p:02x?}");
            let b = body(&p);
            assert_eq!(u16::from_be_bytes([b[0], b[1]]), id);
            return b.get(2).copied().unwrap_or(0);
        }
    }

    /// The next PUBLISH: (topic, payload); acknowledges QoS 1.
    async fn delivery(&mut self) -> (String, Vec<u8>) {
        let p = match self.stash.pop_front() {
            Some(p) => p,
            None => self.expect(3, "PUBLISH").await,
        };
        let qos = (p[0] >> 1) & 3;
        let b = body(&p);
        let tl = u16::from_be_bytes([b[0], b[1]]) as usize;
        let topic = String::from_utf8(b[2..2 + tl].to_vec()).expect("UTF-8 topic");
        let mut i = 2 + tl;
        if qos > 0 {
            let pid = [b[i], b[i + 1]];
            i += 2;
            self.send(&packet(0x40, &pid)).await;
        }
        if self.v5 {
            read_props(b, &mut i);
        }
        (topic, b[i..].to_vec())
    }
}

/// Connects with MQTT 3.1.1 and expects refusal `rc`, then the close with nothing more.
async fn refused311(mut m: Mqtt, user: Option<&str>, pass: Option<&[u8]>, rc: u8, what: &str) {
    assert_eq!(m.connect311("refused", user, pass).await, rc, "{what}: CONNACK return code");
    let rest = m.until_close().await;
    assert!(rest.is_empty(), "{what}: nothing after the refusal but the close: {rest:02x?}");
}

/// Connects with MQTT 5 and expects refusal `reason`, then the close with nothing more.
async fn refused5(
    mut m: Mqtt,
    user: Option<&str>,
    pass: Option<&[u8]>,
    auth: Option<(&str, &[u8])>,
    reason: u8,
    what: &str,
) {
    let ack = m.connect5("refused", user, pass, auth).await;
    assert_eq!(ack.code, reason, "{what}: CONNACK reason code ({ack:?})");
    let rest = m.until_close().await;
    assert!(rest.is_empty(), "{what}: nothing after the refusal but the close: {rest:02x?}");
}

// ---------------------------------------------------------------------------------------------
// STOMP
// ---------------------------------------------------------------------------------------------

async fn stomp_open(b: &TestBroker, via: Via) -> Stomp {
    match via {
        Via::Tcp => Stomp::new(tcp_connect(b.stomp_addr().unwrap()).await),
        Via::Ws => stomp_ws(b, "/stomp", &[]).await.unwrap_or_else(|a| panic!("handshake refused: {}", a.status)),
    }
}

async fn stomp_ws(b: &TestBroker, path: &str, headers: &[(&str, &str)]) -> Result<Stomp, WsAnswer> {
    ws_connect_with(b.ws_addr().unwrap(), path, &["v12.stomp"], headers).await.map(Stomp::new)
}

/// CONNECT with `headers` added; the server's answer.
async fn stomp_login(s: &mut Stomp, headers: &[(&str, &str)]) -> StompFrame {
    let mut h = vec![("accept-version", "1.2"), ("host", "localhost"), ("heart-beat", "0,0")];
    h.extend_from_slice(headers);
    s.send("CONNECT", &h, "").await;
    s.frame().await.expect("an answer to CONNECT")
}

async fn stomp_accepted(s: &mut Stomp, headers: &[(&str, &str)], what: &str) {
    let f = stomp_login(s, headers).await;
    assert_eq!(f.command, "CONNECTED", "{what}: {f:?}");
}

/// Expects an ERROR with `message`, then the close.
/// MESSAGE frames of the client's own subscriptions may come first.
async fn stomp_error_then_close(s: &mut Stomp, message: &str, what: &str) {
    let f = loop {
        let f = s.frame().await.unwrap_or_else(|| panic!("{what}: closed without an ERROR"));
        if f.command != "MESSAGE" {
            break f;
        }
    };
    assert_eq!(f.command, "ERROR", "{what}: {f:?}");
    assert_eq!(f.header("message"), Some(message), "{what}: {f:?}");
    assert!(s.frame().await.is_none(), "{what}: the connection closes after the ERROR");
}

async fn stomp_refused(mut s: Stomp, headers: &[(&str, &str)], message: &str, what: &str) {
    let mut h = vec![("accept-version", "1.2"), ("host", "localhost"), ("heart-beat", "0,0")];
    h.extend_from_slice(headers);
    s.send("CONNECT", &h, "").await;
    stomp_error_then_close(&mut s, message, what).await;
}

/// Waits for the RECEIPT `id`, skipping MESSAGE frames.
async fn stomp_receipt(s: &mut Stomp, id: &str) {
    loop {
        let f = s.frame().await.unwrap_or_else(|| panic!("closed while waiting for RECEIPT {id}"));
        if f.command == "RECEIPT" {
            assert_eq!(f.header("receipt-id"), Some(id));
            return;
        }
        assert_eq!(f.command, "MESSAGE", "waiting for RECEIPT {id}: {f:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// rumqttc clients
// ---------------------------------------------------------------------------------------------

fn opts4(b: &TestBroker, via: Via, id: &str, login: Option<(&str, &str)>) -> rumqttc::MqttOptions {
    let mut o = match via {
        Via::Tcp => {
            let addr = b.mqtt_addr().unwrap();
            rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port())
        }
        Via::Ws => {
            let addr = b.ws_addr().unwrap();
            let mut o = rumqttc::MqttOptions::new(id, format!("ws://{addr}/mqtt"), addr.port());
            o.set_transport(rumqttc::Transport::Ws);
            o
        }
    };
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    o
}

fn opts5(b: &TestBroker, via: Via, id: &str, login: Option<(&str, &str)>) -> r5::MqttOptions {
    let mut o = match via {
        Via::Tcp => {
            let addr = b.mqtt_addr().unwrap();
            r5::MqttOptions::new(id, addr.ip().to_string(), addr.port())
        }
        Via::Ws => {
            let addr = b.ws_addr().unwrap();
            let mut o = r5::MqttOptions::new(id, format!("ws://{addr}/mqtt"), addr.port());
            o.set_transport(rumqttc::Transport::Ws);
            o
        }
    };
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    o
}

/// A connected rumqttc 3.1.1 client.
async fn open4(o: rumqttc::MqttOptions) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (c, mut ev) = rumqttc::AsyncClient::new(o, 100);
    let ack = until(&mut ev, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => Some(a.code),
        _ => None,
    })
    .await;
    assert_eq!(ack, rumqttc::ConnectReturnCode::Success);
    (c, ev)
}

async fn sub4(
    c: &rumqttc::AsyncClient,
    ev: &mut rumqttc::EventLoop,
    filters: &[&str],
) -> Vec<rumqttc::SubscribeReasonCode> {
    c.subscribe_many(filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.to_string(), rumqttc::QoS::AtLeastOnce)))
        .await
        .unwrap();
    until(ev, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::SubAck(s)) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await
}

/// Publishes and waits for the end of the QoS flow (for QoS 0: until it was written).
async fn pub4(c: &rumqttc::AsyncClient, ev: &mut rumqttc::EventLoop, topic: &str, qos: u8, payload: &str) {
    let q = match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    };
    c.publish(topic, q, false, payload.to_string()).await.unwrap();
    until(ev, |e| {
        use rumqttc::{Event, Outgoing, Packet};
        let done = match qos {
            0 => matches!(e, Event::Outgoing(Outgoing::Publish(_))),
            1 => matches!(e, Event::Incoming(Packet::PubAck(_))),
            _ => matches!(e, Event::Incoming(Packet::PubComp(_))),
        };
        done.then_some(())
    })
    .await;
}

/// Topics a 3.1.1 watcher receives up to and including the first with payload `marker`.
async fn watch4_until(ev: &mut rumqttc::EventLoop, marker: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let (topic, payload) = until(ev, |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some((p.topic.clone(), p.payload.clone())),
            _ => None,
        })
        .await;
        got.push(topic);
        if payload == marker.as_bytes() {
            return got;
        }
    }
}

async fn open5(o: r5::MqttOptions) -> (r5::AsyncClient, r5::EventLoop, p5::ConnAck) {
    let (c, mut ev) = r5::AsyncClient::new(o, 100);
    let ack = until5(&mut ev, |e| match e {
        r5::Event::Incoming(p5::Packet::ConnAck(a)) => Some(a.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    (c, ev, ack)
}

// ---------------------------------------------------------------------------------------------
// Passwords and anonymous clients
// ---------------------------------------------------------------------------------------------

/// A login attempt: user, password, the expected refusal code, and what it is.
type Login<'a> = (Option<&'a str>, Option<&'a [u8]>, u8, &'a str);

/// Good and bad passwords with MQTT 3.1.1, MQTT 5 and STOMP, over TCP and WebSocket, with
/// anonymous clients refused (`allow_anonymous = false`).
#[tokio::test]
async fn passwords_over_mqtt_and_stomp_on_tcp_and_websocket() {
    let b = Setup::new("false").start().await;
    for via in VIAS {
        // MQTT 3.1.1.
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect311("alice-311", Some("alice"), Some(ALICE_PW.as_bytes())).await, 0, "{via:?}");
        m.ping(&format!("alice 3.1.1 {via:?}")).await;
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect311("bob-311", Some("bob"), Some(BOB_PW.as_bytes())).await, 0, "{via:?}");
        m.ping(&format!("bob 3.1.1 {via:?}")).await;
        let cases311: [Login; 5] = [
            (Some("alice"), Some(b"wrong"), 4, "wrong password"),
            (Some("alice"), Some(BOB_PW.as_bytes()), 4, "another user's password"),
            (Some("mallory"), Some(ALICE_PW.as_bytes()), 4, "unknown user"),
            (Some("alice"), None, 4, "a username without a password"),
            (None, None, 5, "no credentials"),
        ];
        for (user, pass, rc, what) in cases311 {
            refused311(Mqtt::open(&b, via).await, user, pass, rc, &format!("3.1.1 {via:?} {what}")).await;
        }

        // MQTT 5.
        let mut m = Mqtt::open(&b, via).await;
        let ack = m.connect5("alice-5", Some("alice"), Some(ALICE_PW.as_bytes()), None).await;
        assert_eq!(ack.code, 0, "{via:?} {ack:?}");
        m.ping(&format!("alice 5 {via:?}")).await;
        let cases5: [Login; 4] = [
            (Some("alice"), Some(b"wrong"), 0x86, "wrong password"),
            (Some("mallory"), Some(ALICE_PW.as_bytes()), 0x86, "unknown user"),
            (Some("bob"), Some(ALICE_PW.as_bytes()), 0x86, "another user's password"),
            (None, None, 0x87, "no credentials"),
        ];
        for (user, pass, reason, what) in cases5 {
            refused5(Mqtt::open(&b, via).await, user, pass, None, reason, &format!("5 {via:?} {what}")).await;
        }

        // STOMP.
        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &[("login", "alice"), ("passcode", ALICE_PW)], &format!("STOMP alice {via:?}")).await;
        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &[("login", "bob"), ("passcode", BOB_PW)], &format!("STOMP bob {via:?}")).await;
        // (CONNECT headers, ERROR message, what it is)
        type StompLogin<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [StompLogin; 5] = [
            (&[("login", "alice"), ("passcode", "wrong")], "bad credentials", "wrong passcode"),
            (&[("login", "mallory"), ("passcode", ALICE_PW)], "bad credentials", "unknown login"),
            (&[("login", "alice")], "bad credentials", "a login without a passcode"),
            (&[], "not authorized", "no credentials"),
            (&[("login", ""), ("passcode", "")], "not authorized", "empty credentials"),
        ];
        for (headers, message, what) in cases {
            stomp_refused(stomp_open(&b, via).await, headers, message, &format!("STOMP {via:?} {what}")).await;
        }
    }
    b.shutdown().await;
}

/// A non-loopback address of this machine, if it has one.
fn non_loopback_ipv4() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `allow_anonymous = true` accepts anonymous clients everywhere; the default `"loopback"`
/// accepts them on loopback listeners only; without any authentication method, credentials
/// are not checked at all.
#[tokio::test]
async fn anonymous_clients_follow_allow_anonymous() {
    async fn anonymous_accepted(b: &TestBroker, what: &str) {
        for via in VIAS {
            let mut m = Mqtt::open(b, via).await;
            assert_eq!(m.connect311(&format!("anon-311-{via:?}"), None, None).await, 0, "{what} 3.1.1 {via:?}");
            m.ping(what).await;
            let mut m = Mqtt::open(b, via).await;
            let ack = m.connect5(&format!("anon-5-{via:?}"), None, None, None).await;
            assert_eq!(ack.code, 0, "{what} 5 {via:?}");
            let mut s = stomp_open(b, via).await;
            stomp_accepted(&mut s, &[], &format!("{what} STOMP {via:?}")).await;
        }
    }

    // true: everywhere; and a password still works and a wrong one is still refused.
    let b = Setup::new("true").start().await;
    anonymous_accepted(&b, "allow_anonymous = true").await;
    let mut m = Mqtt::open(&b, Via::Tcp).await;
    assert_eq!(m.connect311("alice", Some("alice"), Some(ALICE_PW.as_bytes())).await, 0);
    refused311(Mqtt::open(&b, Via::Tcp).await, Some("alice"), Some(b"wrong"), 4, "true, wrong password").await;
    b.shutdown().await;

    // "loopback", written and by default: the test's listeners are on 127.0.0.1.
    let b = Setup::new("\"loopback\"").start().await;
    anonymous_accepted(&b, "allow_anonymous = \"loopback\"").await;
    b.shutdown().await;
    let b = Setup { anonymous: None, ..Setup::new("") }.start().await;
    anonymous_accepted(&b, "allow_anonymous unset").await;
    b.shutdown().await;

    // "loopback" with MQTT and STOMP listeners on a non-loopback address: anonymous clients are
    // refused there and still accepted on the loopback WebSocket listener.
    if let Some(ip) = non_loopback_ipv4() {
        let listeners = format!("[listeners.mqtt]\naddr = \"{ip}:0\"\n[listeners.stomp]\naddr = \"{ip}:0\"\n");
        let b = Setup { anonymous: None, ..Setup::new("") }.tail(&listeners).start().await;
        assert_eq!(b.mqtt_addr().unwrap().ip(), ip);
        refused311(Mqtt::open(&b, Via::Tcp).await, None, None, 5, "off-loopback 3.1.1 anonymous").await;
        refused5(Mqtt::open(&b, Via::Tcp).await, None, None, None, 0x87, "off-loopback 5 anonymous").await;
        stomp_refused(stomp_open(&b, Via::Tcp).await, &[], "not authorized", "off-loopback STOMP anonymous").await;
        let mut m = Mqtt::open(&b, Via::Tcp).await;
        assert_eq!(m.connect311("alice-off", Some("alice"), Some(ALICE_PW.as_bytes())).await, 0, "off-loopback alice");
        let mut s = stomp_open(&b, Via::Tcp).await;
        stomp_accepted(&mut s, &[("login", "bob"), ("passcode", BOB_PW)], "off-loopback STOMP bob").await;
        let mut m = Mqtt::open(&b, Via::Ws).await;
        assert_eq!(m.connect311("anon-lo", None, None).await, 0, "the WebSocket listener is on loopback");
        b.shutdown().await;
    } else {
        eprintln!("no non-loopback IPv4 address here: the off-loopback part is skipped");
    }

    // No authentication method at all: any credentials are accepted, unchecked.
    let b = broker().await;
    for via in VIAS {
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect311("any-311", Some("whoever"), Some(b"whatever")).await, 0, "{via:?}");
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect5("any-5", Some("whoever"), Some(b"whatever"), None).await.code, 0, "{via:?}");
        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &[("login", "whoever"), ("passcode", "whatever")], "no auth configured").await;
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Carry {
    Header,
    Cookie,
    Query,
}

const CARRIES: [Carry; 3] = [Carry::Header, Carry::Cookie, Carry::Query];

/// The request path and headers that carry `token` the `carry` way.
fn carried(carry: Carry, path: &str, token: &str) -> (String, Vec<(String, String)>) {
    match carry {
        Carry::Header => (path.into(), vec![("Authorization".into(), format!("Bearer {token}"))]),
        Carry::Cookie => (path.into(), vec![("Cookie".into(), format!("theme=dark; {COOKIE}={token}; lang=en"))]),
        Carry::Query => (format!("{path}?lang=en&token={token}"), Vec::new()),
    }
}

fn header_refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A token in the `Authorization` header, the cookie or the query authenticates a WebSocket at
/// the handshake, for MQTT (`/mqtt`, and `/ws` with MQTT 5) and STOMP (`/stomp`); a bad one
/// gets HTTP 401 and no upgrade.
#[tokio::test]
async fn tokens_at_the_websocket_handshake() {
    let b = Setup::new("false").start().await;
    let good = token("carol", &[]);
    for carry in CARRIES {
        let what = format!("{carry:?}");
        // MQTT 3.1.1 on /mqtt.
        let (path, headers) = carried(carry, "/mqtt", &good);
        let mut m =
            Mqtt::ws(&b, &path, &header_refs(&headers)).await.unwrap_or_else(|a| panic!("{what}: {}", a.status));
        assert_eq!(m.connect311(&format!("tok-311-{what}"), None, None).await, 0, "{what}: no credentials needed");
        m.ping(&what).await;
        // MQTT 5 on /ws with the mqtt subprotocol.
        let (path, headers) = carried(carry, "/ws", &good);
        let mut m =
            Mqtt::ws(&b, &path, &header_refs(&headers)).await.unwrap_or_else(|a| panic!("{what}: {}", a.status));
        assert_eq!(m.connect5(&format!("tok-5-{what}"), None, None, None).await.code, 0, "{what}");
        m.ping(&what).await;
        // STOMP on /stomp.
        let (path, headers) = carried(carry, "/stomp", &good);
        let mut s =
            stomp_ws(&b, &path, &header_refs(&headers)).await.unwrap_or_else(|a| panic!("{what}: {}", a.status));
        stomp_accepted(&mut s, &[], &format!("STOMP {what}")).await;

        for (why, bad) in bad_tokens() {
            for route in ["/mqtt", "/ws", "/stomp"] {
                let (path, headers) = carried(carry, route, &bad);
                let protocols: &[&str] = if route == "/stomp" { &["v12.stomp"] } else { &["mqtt"] };
                match ws_connect_with(b.ws_addr().unwrap(), &path, protocols, &header_refs(&headers)).await {
                    Ok(_) => panic!("{why} token in the {what} on {route}: upgraded"),
                    Err(a) => assert_eq!(a.status, 401, "{why} token in the {what} on {route}"),
                }
            }
        }
    }
    // Without a token the upgrade happens, and CONNECT decides: anonymous is refused, a
    // password is checked.
    let m = Mqtt::ws(&b, "/mqtt", &[]).await.ok().expect("upgrade without a token");
    refused311(m, None, None, 5, "no token, no credentials").await;
    let mut m = Mqtt::ws(&b, "/mqtt", &[]).await.ok().unwrap();
    assert_eq!(m.connect311("pw-after-no-token", Some("bob"), Some(BOB_PW.as_bytes())).await, 0);
    let s = stomp_ws(&b, "/stomp", &[]).await.ok().unwrap();
    stomp_refused(s, &[], "not authorized", "STOMP, no token, no credentials").await;
    // An Authorization header with another scheme carries no token.
    let m = Mqtt::ws(&b, "/mqtt", &[("Authorization", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=")]).await.ok().unwrap();
    refused311(m, None, None, 5, "Basic is not a token").await;
    b.shutdown().await;
}

/// The handshake token's subject and roles are the connection's identity for the ACL.
#[tokio::test]
async fn handshake_token_subject_and_roles_drive_acls() {
    let b = Setup::new("false").tail(ACL).start().await;

    // sub "bob" in a header, over MQTT 3.1.1: bob's rules (a/#, users/bob/#) apply.
    let bob = token("bob", &[]);
    let auth = format!("Bearer {bob}");
    let mut m = Mqtt::ws(&b, "/mqtt", &[("Authorization", &auth)]).await.ok().expect("upgrade");
    assert_eq!(m.connect311("tok-bob", None, None).await, 0);
    assert_eq!(
        m.subscribe(1, &["users/bob/#", "users/alice/#", "a/#", "#", "$SYS/#"]).await,
        vec![1, 0x80, 1, 0x80, 0x80]
    );

    // sub "zed" with role admin in the cookie, over MQTT 5: the admin rule applies.
    let zed = token("zed", &["admin"]);
    let cookie = format!("{COOKIE}={zed}");
    let mut m = Mqtt::ws(&b, "/ws", &[("Cookie", &cookie)]).await.ok().expect("upgrade");
    assert_eq!(m.connect5("tok-zed", None, None, None).await.code, 0);
    assert_eq!(m.subscribe(1, &["#", "$SYS/#", "users/alice/#"]).await, vec![1, 1, 1]);

    // sub "yan" without roles in the query, over STOMP: only everyone's rule.
    let yan = token("yan", &[]);
    let mut s = stomp_ws(&b, &format!("/stomp?token={yan}"), &[]).await.ok().expect("upgrade");
    stomp_accepted(&mut s, &[], "yan").await;
    s.send("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/users/yan/#"), ("receipt", "r1")], "").await;
    stomp_receipt(&mut s, "r1").await;
    s.send("SUBSCRIBE", &[("id", "2"), ("destination", "/topic/a/#"), ("receipt", "r2")], "").await;
    stomp_error_then_close(&mut s, "not authorized", "yan may not subscribe to a/#").await;

    // rumqttc (3.1.1) over WebSocket with the bearer header: bob again, publish side.
    let (watch, mut watch_ev) = open4(opts4(&b, Via::Tcp, "watch", Some(("alice", ALICE_PW)))).await;
    let codes = sub4(&watch, &mut watch_ev, &["#"]).await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]);
    let mut o = opts4(&b, Via::Ws, "rumqttc-bob", None);
    let header = auth.clone();
    o.set_request_modifier(move |mut req| {
        let header = header.clone();
        async move {
            req.headers_mut().insert("authorization", header.parse().expect("header value"));
            req
        }
    });
    let (c, mut ev) = open4(o).await;
    pub4(&c, &mut ev, "users/alice/x", 1, "denied").await;
    pub4(&c, &mut ev, "users/bob/x", 1, "allowed").await;
    pub4(&c, &mut ev, "public/marker", 1, "marker").await;
    assert_eq!(watch4_until(&mut watch_ev, "marker").await, vec!["users/bob/x", "public/marker"]);
    b.shutdown().await;
}

/// A token as the MQTT password (username "jwt", empty or absent) and as the STOMP passcode
/// (login "jwt" or none); bad tokens are bad credentials (0x04 / 0x86 / ERROR).
#[tokio::test]
async fn tokens_as_mqtt_password_and_stomp_passcode() {
    let b = Setup::new("false").start().await;
    let good = token("carol", &[]);
    for via in VIAS {
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect311("jwt-311-a", Some("jwt"), Some(good.as_bytes())).await, 0, "{via:?} username jwt");
        m.ping("3.1.1 token").await;
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect311("jwt-311-b", Some(""), Some(good.as_bytes())).await, 0, "{via:?} empty username");
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect5("jwt-5-a", None, Some(good.as_bytes()), None).await.code, 0, "{via:?} no username");
        m.ping("5 token").await;
        let mut m = Mqtt::open(&b, via).await;
        assert_eq!(m.connect5("jwt-5-b", Some("jwt"), Some(good.as_bytes()), None).await.code, 0, "{via:?} jwt");
        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &[("login", "jwt"), ("passcode", good.as_str())], "STOMP login jwt").await;
        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &[("passcode", good.as_str())], "STOMP passcode alone").await;

        for (why, bad) in bad_tokens() {
            let what = format!("{via:?} {why} token");
            refused311(Mqtt::open(&b, via).await, Some("jwt"), Some(bad.as_bytes()), 4, &what).await;
            refused5(Mqtt::open(&b, via).await, None, Some(bad.as_bytes()), None, 0x86, &what).await;
            stomp_refused(
                stomp_open(&b, via).await,
                &[("login", "jwt"), ("passcode", bad.as_str())],
                "bad credentials",
                &what,
            )
            .await;
        }
    }
    b.shutdown().await;
}

/// With `issuer` set, `iss` must be present and equal.
#[tokio::test]
async fn the_issuer_is_checked_when_configured() {
    let mut setup = Setup::new("false");
    setup.jwt = "issuer = \"https://login.test/\"\n".into();
    let b = setup.start().await;
    let exp = unix_now() + 3600;
    let right = sign(&json!({ "sub": "carol", "aud": AUDIENCE, "iss": "https://login.test/", "exp": exp }));
    let wrong = sign(&json!({ "sub": "carol", "aud": AUDIENCE, "iss": "https://evil.test/", "exp": exp }));
    let missing = sign(&json!({ "sub": "carol", "aud": AUDIENCE, "exp": exp }));
    let mut s = stomp_open(&b, Via::Tcp).await;
    stomp_accepted(&mut s, &[("passcode", &right)], "right issuer").await;
    for (why, t) in [("wrong issuer", &wrong), ("no issuer", &missing)] {
        stomp_refused(stomp_open(&b, Via::Tcp).await, &[("passcode", t.as_str())], "bad credentials", why).await;
        let auth = format!("Bearer {t}");
        let Err(a) = Mqtt::ws(&b, "/mqtt", &[("Authorization", &auth)]).await else { panic!("{why}: upgraded") };
        assert_eq!(a.status, 401, "{why}");
    }
    let auth = format!("Bearer {right}");
    let mut m = Mqtt::ws(&b, "/mqtt", &[("Authorization", &auth)]).await.ok().expect("right issuer upgrades");
    assert_eq!(m.connect311("iss", None, None).await, 0);
    b.shutdown().await;
}

/// MQTT 5 enhanced authentication: Authentication Method "JWT" with the token as
/// Authentication Data; CONNACK carries the method back; other methods get 0x8C.
#[tokio::test]
async fn mqtt5_enhanced_authentication() {
    let b = Setup::new("false").start().await;
    let good = token("carol", &[]);

    // rumqttc's MQTT 5 client.
    for via in VIAS {
        let mut o = opts5(&b, via, &format!("enh-{via:?}"), None);
        o.set_authentication_method(Some("JWT".into()));
        o.set_authentication_data(Some(bytes::Bytes::from(good.clone())));
        let (c, mut ev, ack) = open5(o).await;
        let method = ack.properties.as_ref().and_then(|p| p.authentication_method.clone());
        assert_eq!(method.as_deref(), Some("JWT"), "{via:?}: CONNACK names the method");
        c.subscribe("enh/t", Q5::AtLeastOnce).await.unwrap();
        let codes = until5(&mut ev, |e| match e {
            r5::Event::Incoming(p5::Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await;
        assert_eq!(codes, vec![p5::SubscribeReasonCode::Success(Q5::AtLeastOnce)]);
    }

    // Raw packets: the success, then refusals.
    for via in VIAS {
        let mut m = Mqtt::open(&b, via).await;
        let ack = m.connect5("enh-raw", None, None, Some(("JWT", good.as_bytes()))).await;
        assert_eq!((ack.code, ack.method().as_deref()), (0, Some("JWT")), "{via:?} {ack:?}");
        m.ping("enhanced auth").await;
        for method in ["SCRAM-SHA-256", "jwt-but-lowercase"] {
            let what = format!("{via:?} method {method}");
            refused5(Mqtt::open(&b, via).await, None, None, Some((method, good.as_bytes())), 0x8C, &what).await;
        }
        for (why, bad) in bad_tokens() {
            let what = format!("{via:?} enhanced auth with a {why} token");
            refused5(Mqtt::open(&b, via).await, None, None, Some(("JWT", bad.as_bytes())), 0x86, &what).await;
        }
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Expiry and re-authentication
// ---------------------------------------------------------------------------------------------

/// A connection whose token expires is closed when `exp` passes: MQTT 5 with DISCONNECT 0x87,
/// MQTT 3.1.1 without a packet, STOMP with ERROR "credentials expired". A password connection
/// in the same broker stays.
#[tokio::test]
async fn an_expiring_token_closes_the_connection() {
    let b = Setup::new("false").start().await;
    let exp = unix_now() + 3;
    let t = token_until("carol", &[], exp);

    async fn mqtt5_disconnected(mut m: Mqtt, what: &str) {
        m.ping(what).await;
        let rest = m.until_close().await;
        assert_eq!(rest.len(), 1, "{what}: one DISCONNECT, then the close: {rest:02x?}");
        assert_eq!(kind(&rest[0]), 14, "{what}: {rest:02x?}");
        assert_eq!(parse_reason(&rest[0]).code, 0x87, "{what}: DISCONNECT reason");
    }

    let mqtt5_password = async {
        let mut m = Mqtt::open(&b, Via::Tcp).await;
        assert_eq!(m.connect5("exp-5", None, Some(t.as_bytes()), None).await.code, 0);
        mqtt5_disconnected(m, "MQTT 5, token as password").await;
    };
    let mqtt5_enhanced = async {
        let mut m = Mqtt::open(&b, Via::Tcp).await;
        assert_eq!(m.connect5("exp-5e", None, None, Some(("JWT", t.as_bytes()))).await.code, 0);
        mqtt5_disconnected(m, "MQTT 5, enhanced auth").await;
    };
    let mqtt5_ws_header = async {
        let auth = format!("Bearer {t}");
        let mut m = Mqtt::ws(&b, "/ws", &[("Authorization", &auth)]).await.ok().expect("upgrade");
        assert_eq!(m.connect5("exp-5w", None, None, None).await.code, 0);
        mqtt5_disconnected(m, "MQTT 5 over WebSocket, handshake token").await;
    };
    let mqtt311 = async {
        let mut m = Mqtt::open(&b, Via::Tcp).await;
        assert_eq!(m.connect311("exp-311", Some("jwt"), Some(t.as_bytes())).await, 0);
        m.ping("MQTT 3.1.1").await;
        let rest = m.until_close().await;
        assert!(rest.is_empty(), "MQTT 3.1.1: a plain close: {rest:02x?}");
    };
    let stomp_tcp = async {
        let mut s = stomp_open(&b, Via::Tcp).await;
        stomp_accepted(&mut s, &[("login", "jwt"), ("passcode", t.as_str())], "STOMP").await;
        s.send("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/x"), ("receipt", "r")], "").await;
        stomp_receipt(&mut s, "r").await;
        stomp_error_then_close(&mut s, "credentials expired", "STOMP over TCP").await;
    };
    let stomp_ws_cookie = async {
        let cookie = format!("{COOKIE}={t}");
        let mut s = stomp_ws(&b, "/stomp", &[("Cookie", &cookie)]).await.ok().expect("upgrade");
        stomp_accepted(&mut s, &[], "STOMP over WebSocket").await;
        stomp_error_then_close(&mut s, "credentials expired", "STOMP over WebSocket, cookie").await;
    };
    let mut control = Mqtt::open(&b, Via::Tcp).await;
    assert_eq!(control.connect5("control", Some("alice"), Some(ALICE_PW.as_bytes()), None).await.code, 0);
    tokio::join!(mqtt5_password, mqtt5_enhanced, mqtt5_ws_header, mqtt311, stomp_tcp, stomp_ws_cookie);
    assert!(unix_now() >= exp, "the closes came once exp had passed");
    control.ping("the password connection stays").await;
    b.shutdown().await;
}

/// MQTT 5 re-authentication (AUTH 0x19, method "JWT") with a longer token keeps the connection
/// open past the first token's expiry; a connection that did not re-authenticate is closed.
#[tokio::test]
async fn mqtt5_reauthentication_extends_the_connection() {
    let b = Setup::new("false").start().await;
    let exp = unix_now() + 3;
    let short = token_until("carol", &[], exp);

    let renewed = |via: Via| {
        let (b, short) = (&b, short.clone());
        async move {
            let what = format!("re-authenticated over {via:?}");
            let mut m = Mqtt::open(b, via).await;
            let ack = m.connect5(&format!("reauth-{via:?}"), None, None, Some(("JWT", short.as_bytes()))).await;
            assert_eq!((ack.code, ack.method().as_deref()), (0, Some("JWT")), "{what}");
            let topic = format!("reauth/{via:?}");
            assert_eq!(m.subscribe(1, &[&topic]).await, vec![1], "{what}");
            let long = token("carol", &[]);
            m.send(&auth_bytes(0x19, "JWT", long.as_bytes())).await;
            let answer = m.expect(15, &what).await;
            let answer = parse_reason(&answer);
            assert_eq!((answer.code, answer.method().as_deref()), (0, Some("JWT")), "{what}: AUTH answer");
            m
        }
    };
    let expiring = async {
        let mut m = Mqtt::open(&b, Via::Tcp).await;
        assert_eq!(m.connect5("not-renewed", None, None, Some(("JWT", short.as_bytes()))).await.code, 0);
        let rest = m.until_close().await;
        assert_eq!(rest.len(), 1, "not renewed: one DISCONNECT: {rest:02x?}");
        assert_eq!(parse_reason(&rest[0]).code, 0x87);
    };
    let (mut tcp, mut ws, ()) = tokio::join!(renewed(Via::Tcp), renewed(Via::Ws), expiring);
    // The first token has expired now (the control connection was closed for it); give the
    // broker another second to act on it wrongly, then show both renewed connections work.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (via, m) in [(Via::Tcp, &mut tcp), (Via::Ws, &mut ws)] {
        m.ping(&format!("renewed {via:?} after the first exp")).await;
        let topic = format!("reauth/{via:?}");
        assert_eq!(m.publish1(&topic, 7, b"still here").await, 0);
        let (t, payload) = m.delivery().await;
        assert_eq!((t.as_str(), payload.as_slice()), (topic.as_str(), &b"still here"[..]));
    }
    b.shutdown().await;
}

/// Re-authentication with a bad token ends the connection with DISCONNECT 0x87.
#[tokio::test]
async fn mqtt5_reauthentication_with_a_bad_token_disconnects() {
    let b = Setup::new("false").start().await;
    let good = token("carol", &[]);
    for via in VIAS {
        for (why, bad) in bad_tokens() {
            let what = format!("{via:?} re-auth with a {why} token");
            let mut m = Mqtt::open(&b, via).await;
            assert_eq!(m.connect5("bad-reauth", None, None, Some(("JWT", good.as_bytes()))).await.code, 0, "{what}");
            m.send(&auth_bytes(0x19, "JWT", bad.as_bytes())).await;
            let rest = m.until_close().await;
            assert_eq!(rest.len(), 1, "{what}: one DISCONNECT, then the close: {rest:02x?}");
            assert_eq!(kind(&rest[0]), 14, "{what}: {rest:02x?}");
            assert_eq!(parse_reason(&rest[0]).code, 0x87, "{what}");
        }
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Failed-login limit
// ---------------------------------------------------------------------------------------------

/// After `per_minute` failed logins from 127.0.0.1, even the right password is refused as bad
/// credentials, and a WebSocket handshake with a valid token gets HTTP 429.
#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let b = Setup { per_minute: 3, ..Setup::new("false") }.start().await;
    let mut m = Mqtt::open(&b, Via::Tcp).await;
    assert_eq!(m.connect311("before", Some("alice"), Some(ALICE_PW.as_bytes())).await, 0, "before any failure");
    for i in 0..3 {
        refused311(Mqtt::open(&b, Via::Tcp).await, Some("alice"), Some(b"guess"), 4, &format!("failure {i}")).await;
    }
    refused311(Mqtt::open(&b, Via::Tcp).await, Some("alice"), Some(ALICE_PW.as_bytes()), 4, "blocked 3.1.1").await;
    refused311(Mqtt::open(&b, Via::Ws).await, Some("alice"), Some(ALICE_PW.as_bytes()), 4, "blocked 3.1.1 ws").await;
    refused5(Mqtt::open(&b, Via::Tcp).await, Some("alice"), Some(ALICE_PW.as_bytes()), None, 0x86, "blocked 5").await;
    let t = token("alice", &[]);
    refused5(Mqtt::open(&b, Via::Tcp).await, None, None, Some(("JWT", t.as_bytes())), 0x86, "blocked 5 JWT").await;
    stomp_refused(
        stomp_open(&b, Via::Tcp).await,
        &[("login", "alice"), ("passcode", ALICE_PW)],
        "bad credentials",
        "blocked STOMP",
    )
    .await;
    let auth = format!("Bearer {t}");
    let Err(a) = Mqtt::ws(&b, "/mqtt", &[("Authorization", &auth)]).await else { panic!("blocked handshake upgraded") };
    assert_eq!(a.status, 429, "blocked handshake with a valid token");
    // The connection made before the failures is unaffected.
    m.ping("connected before the block").await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ACLs
// ---------------------------------------------------------------------------------------------

/// MQTT 3.1.1 (rumqttc): denied filters get 0x80 and the others are granted; denied publishes
/// are acknowledged as usual but reach nobody.
#[tokio::test]
async fn acl_mqtt311() {
    use rumqttc::QoS::AtLeastOnce;
    use rumqttc::SubscribeReasonCode::{Failure, Success};
    let b = Setup::new("false").tail(ACL).start().await;
    for via in VIAS {
        let (watch, mut watch_ev) = open4(opts4(&b, via, &format!("watch-{via:?}"), Some(("alice", ALICE_PW)))).await;
        assert_eq!(sub4(&watch, &mut watch_ev, &["#"]).await, vec![Success(AtLeastOnce)]);

        let cid = format!("bob-dev-{via:?}");
        let (c, mut ev) = open4(opts4(&b, via, &cid, Some(("bob", BOB_PW)))).await;
        let own = format!("clients/{cid}/#");
        let codes = sub4(
            &c,
            &mut ev,
            &["users/bob/#", "users/alice/#", &own, "clients/other/#", "a/#", "public/#", "#", "$SYS/#", "users/+/x"],
        )
        .await;
        assert_eq!(
            codes,
            vec![
                Success(AtLeastOnce),
                Failure,
                Success(AtLeastOnce),
                Failure,
                Success(AtLeastOnce),
                Success(AtLeastOnce),
                Failure,
                Failure,
                Failure
            ],
            "{via:?}"
        );
        // Denied at every QoS: acknowledged normally, never delivered.
        pub4(&c, &mut ev, "users/alice/x", 1, "denied-1").await;
        pub4(&c, &mut ev, "private/x", 0, "denied-0").await;
        pub4(&c, &mut ev, "private/y", 2, "denied-2").await;
        pub4(&c, &mut ev, "clients/other/x", 1, "denied-c").await;
        pub4(&c, &mut ev, "$SYS/broker/fake", 1, "denied-sys").await;
        // Allowed by %u, %c, the user rule and everyone's rule.
        pub4(&c, &mut ev, "users/bob/1", 1, "ok-u").await;
        let own_topic = format!("clients/{cid}/2");
        pub4(&c, &mut ev, &own_topic, 1, "ok-c").await;
        pub4(&c, &mut ev, "a/3", 1, "ok-a").await;
        pub4(&c, &mut ev, "public/marker", 1, "marker").await;
        let got = watch4_until(&mut watch_ev, "marker").await;
        assert_eq!(got, vec!["users/bob/1".to_string(), own_topic, "a/3".into(), "public/marker".into()], "{via:?}");
        c.disconnect().await.unwrap();
        watch.disconnect().await.unwrap();
    }
    // An anonymous client (the default "loopback" broker) is governed by everyone's rule only,
    // and %u never matches it.
    let b2 = Setup { anonymous: None, ..Setup::new("") }.tail(ACL).start().await;
    let mut m = Mqtt::open(&b2, Via::Tcp).await;
    assert_eq!(m.connect311("anon-acl", None, None).await, 0);
    assert_eq!(
        m.subscribe(1, &["public/#", "users/anon-acl/#", "clients/anon-acl/#", "a/#"]).await,
        vec![1, 0x80, 1, 0x80]
    );
    b2.shutdown().await;
    b.shutdown().await;
}

/// MQTT 5 (rumqttc v5): denied filters get 0x87 (shared subscriptions are checked on their
/// inner filter), denied QoS 1 publishes get PUBACK 0x87 and QoS 2 PUBREC 0x87.
#[tokio::test]
async fn acl_mqtt5() {
    use p5::SubscribeReasonCode::{NotAuthorized, Success};
    use Q5::AtLeastOnce;
    let b = Setup::new("false").tail(ACL).start().await;
    for via in VIAS {
        let (watch, mut watch_ev) = open4(opts4(&b, via, &format!("watch5-{via:?}"), Some(("alice", ALICE_PW)))).await;
        assert_eq!(sub4(&watch, &mut watch_ev, &["#"]).await.len(), 1);

        let cid = format!("bob5-{via:?}");
        let (c, mut ev, _) = open5(opts5(&b, via, &cid, Some(("bob", BOB_PW)))).await;
        let own = format!("clients/{cid}/#");
        let filters = [
            "users/bob/#",
            "users/alice/#",
            own.as_str(),
            "clients/other/#",
            "a/#",
            "#",
            "$SYS/#",
            "$share/g/users/bob/#",
            "$share/g/users/alice/#",
        ];
        c.subscribe_many(filters.iter().map(|f| p5::Filter::new(*f, AtLeastOnce))).await.unwrap();
        let codes = until5(&mut ev, |e| match e {
            r5::Event::Incoming(p5::Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await;
        let ok = Success(AtLeastOnce);
        assert_eq!(
            codes,
            vec![ok, NotAuthorized, ok, NotAuthorized, ok, NotAuthorized, NotAuthorized, ok, NotAuthorized],
            "{via:?}"
        );

        // One publish at a time, each with its acknowledgement's reason.
        let cases: [(&str, u8, Option<bool>); 7] = [
            ("users/alice/x", 1, Some(false)),
            ("users/alice/y", 2, Some(false)),
            ("private/x", 0, None),
            ("users/bob/1", 1, Some(true)),
            ("a/2", 2, Some(true)),
            ("clients/other/x", 1, Some(false)),
            ("public/marker", 1, Some(true)),
        ];
        for (topic, qos, allowed) in cases {
            let q = match qos {
                0 => Q5::AtMostOnce,
                1 => Q5::AtLeastOnce,
                _ => Q5::ExactlyOnce,
            };
            let payload = if topic == "public/marker" { "marker".to_string() } else { format!("m-{topic}") };
            c.publish(topic, q, false, payload).await.unwrap();
            let reason = until5(&mut ev, |e| match (qos, e) {
                (0, r5::Event::Outgoing(rumqttc::Outgoing::Publish(_))) => Some(None),
                (1, r5::Event::Incoming(p5::Packet::PubAck(a))) => Some(Some(format!("{:?}", a.reason))),
                (2, r5::Event::Incoming(p5::Packet::PubRec(a))) => Some(Some(format!("{:?}", a.reason))),
                _ => None,
            })
            .await;
            match allowed {
                None => assert_eq!(reason, None),
                Some(false) => assert_eq!(reason.as_deref(), Some("NotAuthorized"), "{via:?} {topic} QoS {qos}"),
                Some(true) => assert!(
                    matches!(reason.as_deref(), Some("Success") | Some("NoMatchingSubscribers")),
                    "{via:?} {topic} QoS {qos}: {reason:?}"
                ),
            }
            if qos == 2 && allowed == Some(true) {
                until5(&mut ev, |e| matches!(e, r5::Event::Incoming(p5::Packet::PubComp(_))).then_some(())).await;
            }
        }
        let got = watch4_until(&mut watch_ev, "marker").await;
        assert_eq!(got, vec!["users/bob/1", "a/2", "public/marker"], "{via:?}");
        c.disconnect().await.unwrap();
        watch.disconnect().await.unwrap();
    }
    b.shutdown().await;
}

/// STOMP: allowed SUBSCRIBE and SEND get their RECEIPT; a denied one is ERROR "not authorized"
/// and the close, and the denied message reaches nobody.
#[tokio::test]
async fn acl_stomp() {
    let b = Setup::new("false").tail(ACL).start().await;
    for via in VIAS {
        let (watch, mut watch_ev) =
            open4(opts4(&b, Via::Tcp, &format!("swatch-{via:?}"), Some(("alice", ALICE_PW)))).await;
        assert_eq!(sub4(&watch, &mut watch_ev, &["#"]).await.len(), 1);
        let cid = format!("bob-stomp-{via:?}");
        let login = [("login", "bob"), ("passcode", BOB_PW), ("client-id", cid.as_str())];

        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &login, "bob").await;
        let own = format!("/topic/clients/{cid}/#");
        for (i, dest) in ["/topic/users/bob/#", own.as_str(), "/topic/a/#", "/topic/public/#"].iter().enumerate() {
            let (id, receipt) = (format!("s{i}"), format!("sub-{i}"));
            s.send("SUBSCRIBE", &[("id", &id), ("destination", dest), ("receipt", &receipt)], "").await;
            stomp_receipt(&mut s, &receipt).await;
        }
        let own_topic = format!("clients/{cid}/2");
        for (i, topic) in ["users/bob/1", own_topic.as_str(), "a/3"].iter().enumerate() {
            let (dest, receipt) = (format!("/topic/{topic}"), format!("send-{i}"));
            s.send("SEND", &[("destination", &dest), ("receipt", &receipt)], "ok").await;
            stomp_receipt(&mut s, &receipt).await;
        }
        s.send("SEND", &[("destination", "/topic/users/alice/x"), ("receipt", "denied")], "denied").await;
        stomp_error_then_close(&mut s, "not authorized", &format!("{via:?} SEND users/alice/x")).await;

        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &login, "bob again").await;
        s.send("SEND", &[("destination", "/topic/clients/other/x")], "denied").await;
        stomp_error_then_close(&mut s, "not authorized", &format!("{via:?} SEND clients/other/x")).await;

        for dest in ["/topic/users/alice/#", "/topic/#", "/topic/clients/other/#"] {
            let mut s = stomp_open(&b, via).await;
            stomp_accepted(&mut s, &login, "bob subscribing").await;
            s.send("SUBSCRIBE", &[("id", "1"), ("destination", dest), ("receipt", "r")], "").await;
            stomp_error_then_close(&mut s, "not authorized", &format!("{via:?} SUBSCRIBE {dest}")).await;
        }

        let mut s = stomp_open(&b, via).await;
        stomp_accepted(&mut s, &login, "bob's marker").await;
        s.send("SEND", &[("destination", "/topic/public/marker"), ("receipt", "m")], "marker").await;
        stomp_receipt(&mut s, "m").await;
        let got = watch4_until(&mut watch_ev, "marker").await;
        assert_eq!(
            got,
            vec!["users/bob/1".to_string(), own_topic.clone(), "a/3".into(), "public/marker".into()],
            "{via:?}"
        );
        watch.disconnect().await.unwrap();
    }
    b.shutdown().await;
}

/// `$SYS/broker/auth/failures`, `$SYS/broker/acl/publish denied` and
/// `$SYS/broker/acl/subscribe denied` count, retained, for a subscriber allowed to see them.
#[tokio::test]
async fn acl_denials_and_failed_logins_are_counted_in_sys() {
    let mut setup = Setup::new("false").tail(ACL);
    setup.server = "sys_interval_secs = 1\n".into();
    let b = setup.start().await;

    // Cause exactly: 1 failed login, 2 denied publishes, 3 denied subscriptions.
    refused311(Mqtt::open(&b, Via::Tcp).await, Some("bob"), Some(b"wrong"), 4, "counted failure").await;
    let mut m = Mqtt::open(&b, Via::Tcp).await;
    assert_eq!(m.connect5("sys-bob", Some("bob"), Some(BOB_PW.as_bytes()), None).await.code, 0);
    assert_eq!(m.publish1("users/alice/1", 1, b"x").await, 0x87);
    assert_eq!(m.publish1("users/alice/2", 2, b"x").await, 0x87);
    assert_eq!(m.publish1("users/bob/ok", 3, b"x").await & 0x80, 0, "an allowed publish is not denied");
    assert_eq!(m.subscribe(4, &["users/alice/#", "users/bob/#", "#"]).await, vec![0x87, 1, 0x87]);
    assert_eq!(m.subscribe(5, &["$SYS/#"]).await, vec![0x87]);

    let (watch, mut ev) = open4(opts4(&b, Via::Tcp, "sys-watch", Some(("alice", ALICE_PW)))).await;
    let codes = sub4(&watch, &mut ev, &["$SYS/broker/acl/#", "$SYS/broker/auth/#"]).await;
    assert!(codes.iter().all(|c| *c != rumqttc::SubscribeReasonCode::Failure), "{codes:?}");
    let want: HashMap<&str, u64> = [
        ("$SYS/broker/auth/failures", 1),
        ("$SYS/broker/acl/publish denied", 2),
        ("$SYS/broker/acl/subscribe denied", 3),
    ]
    .into();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let result = tokio::time::timeout(PATIENCE, async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev.poll().await.expect("event loop") {
                let v = String::from_utf8_lossy(&p.payload).trim().parse::<u64>();
                let v = v.unwrap_or_else(|_| panic!("{} is not a count: {:?}", p.topic, p.payload));
                seen.insert(p.topic.clone(), v);
                if want.iter().all(|(k, n)| seen.get(*k).is_some_and(|v| v >= n)) {
                    return;
                }
            }
        }
    })
    .await;
    assert!(result.is_ok(), "counters did not reach {want:?}; last seen {seen:?}");
    for (k, n) in &want {
        assert_eq!(seen.get(*k), Some(n), "{k} (all seen: {seen:?})");
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// TLS client certificates
// ---------------------------------------------------------------------------------------------

/// A test CA (as in tls.rs), issuing server and client certificates.
struct Pki {
    ca_pem: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("diglot auth test CA {name}"));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), ca: rcgen::Issuer::new(params, key) }
    }

    /// Writes `{prefix}cert.pem` and `{prefix}key.pem` with subject alt names `names` and, if
    /// given, the common name `cn`.
    fn issue(&self, dir: &Path, prefix: &str, names: &[&str], cn: Option<&str>) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some(cn) = cn {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::OrganizationName, "diglot tests");
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (dir.join(format!("{prefix}cert.pem")), dir.join(format!("{prefix}key.pem")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn client_config(&self, client_cert: (&str, &str)) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = CertificateDer::pem_file_iter(client_cert.0).unwrap().map(|c| c.unwrap()).collect();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(client_cert.1).unwrap())
            .unwrap();
        Arc::new(config)
    }
}

async fn mqtts(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Mqtt {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS handshake");
    Mqtt { link: Link::Tls(Box::new(tls)), buf: Vec::new(), v5: false, stash: Default::default() }
}

/// `cert_cn_as_username`: the client certificate's CN is the username, without a password and
/// with `allow_anonymous = false`, and that user's ACL applies.
#[tokio::test]
async fn client_certificate_cn_is_the_username() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Pki::new("servers");
    let clients = Pki::new("clients");
    let (cert, key) = servers.issue(dir.path(), "server-", &["localhost", "127.0.0.1"], None);
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &clients.ca_pem).unwrap();
    // The SAN differs from the CN on purpose: the CN is the username.
    let alice = clients.issue(dir.path(), "alice-", &["alice-laptop.example"], Some("alice"));
    let bob = clients.issue(dir.path(), "bob-", &["bob-phone.example"], Some("bob"));
    let tail = format!(
        r##"
[[auth.acl]]
user = "alice"
publish = ["alice/#"]
subscribe = ["alice/#"]

[[auth.acl]]
everyone = true
publish = ["users/%u/#"]
subscribe = ["users/%u/#"]

[listeners.mqtts]
enabled = true
addr = "127.0.0.1:0"
cert_file = {cert:?}
key_file = {key:?}
client_ca_file = {ca:?}
require_client_cert = true
cert_cn_as_username = true
"##,
        ca = ca_file.display().to_string()
    );
    let b = Setup::new("false").tail(&tail).start().await;
    let addr = b.addr("mqtts").expect("mqtts listener");
    let filters = ["alice/#", "users/alice/#", "users/bob/#", "other/#"];

    let mut m = mqtts(addr, servers_trusting_client(&servers, &alice)).await;
    assert_eq!(m.connect311("cert-alice", None, None).await, 0, "alice by certificate, no password");
    assert_eq!(m.subscribe(1, &filters).await, vec![1, 1, 0x80, 0x80], "alice's ACL");
    assert_eq!(m.publish1("alice/x", 2, b"x").await, 0);

    let mut m = mqtts(addr, servers_trusting_client(&servers, &alice)).await;
    assert_eq!(m.connect5("cert-alice-5", None, None, None).await.code, 0, "MQTT 5 too");
    assert_eq!(m.subscribe(1, &filters).await, vec![1, 1, 0x87, 0x87]);

    let mut m = mqtts(addr, servers_trusting_client(&servers, &bob)).await;
    assert_eq!(m.connect311("cert-bob", None, None).await, 0, "bob by certificate");
    assert_eq!(m.subscribe(1, &filters).await, vec![0x80, 0x80, 1, 0x80], "bob's ACL");

    // Anonymous clients are refused on the plain listener of the same broker.
    refused311(Mqtt::open(&b, Via::Tcp).await, None, None, 5, "anonymous on plain TCP").await;
    b.shutdown().await;
}

/// A client config trusting `servers` and presenting `client`'s certificate (issued by the
/// clients' CA, which the broker trusts).
fn servers_trusting_client(servers: &Pki, client: &(String, String)) -> Arc<rustls::ClientConfig> {
    servers.client_config((&client.0, &client.1))
}
