//! The HTTP API end to end (`/api/v1/...`, `/metrics`, `/healthz`, `/readyz`): every endpoint
//! against a real broker on port 0, called with hyper's HTTP/1.1 client (one connection per
//! request), with MQTT (rumqttc) and STOMP (the hand-written client of `common`) on the other
//! side.
//!
//! Covered: the OpenAPI document against the routes the broker answers; publish (UTF-8 and
//! base64, topic and STOMP destination, properties, content type) reaching MQTT and STOMP
//! subscribers; a QoS 1 publish that survives a restart right after its 200; batches with good
//! and refused messages; kicks of MQTT 5 and STOMP clients; queues and purge; subscriptions;
//! reload; connection paging; and every error status (400, 401, 403, 404, 405, 413, 429).
//!
//! Nothing asserts on timing: "eventually" is within [`PATIENCE`], and a negative (the refused
//! message is not delivered) is shown with a marker message published after it.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use common::users::*;
use common::*;
use diglot::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::v5 as p5;
use serde_json::{json, Value};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// An HTTP client: hyper's, one connection per request
// ---------------------------------------------------------------------------------------------

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }

    /// Checks that this is a JSON error with `status`, and returns its text.
    fn error(&self, status: u16, what: &str) -> String {
        assert_eq!(self.status, status, "{what}: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/json"), "{what}");
        let v = self.json();
        let obj = v.as_object().unwrap_or_else(|| panic!("{what}: {v}"));
        assert_eq!(obj.len(), 1, "{what}: only \"error\": {v}");
        obj["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}")).to_string()
    }
}

/// Sends one request (with `Content-Length` when there is a body) on a new connection.
async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    tokio::time::timeout(PATIENCE, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
        Answer { status, headers, body }
    })
    .await
    .expect("answer within patience")
}

/// Credentials for [`Api`]: none, an `Authorization` header value.
type Auth<'a> = Option<&'a str>;

/// The API of one broker, called as one caller.
#[derive(Clone, Copy)]
struct Api<'a> {
    addr: SocketAddr,
    auth: Auth<'a>,
}

impl<'a> Api<'a> {
    fn new(b: &TestBroker, auth: Auth<'a>) -> Api<'a> {
        Api { addr: b.ws_addr().expect("ws listener"), auth }
    }

    fn headers(&self) -> Vec<(&'a str, &'a str)> {
        self.auth.map(|a| ("authorization", a)).into_iter().collect()
    }

    async fn get(&self, path: &str) -> Answer {
        call(self.addr, "GET", path, &self.headers(), b"").await
    }

    async fn delete(&self, path: &str) -> Answer {
        call(self.addr, "DELETE", path, &self.headers(), b"").await
    }

    async fn post_raw(&self, path: &str, body: &[u8]) -> Answer {
        call(self.addr, "POST", path, &self.headers(), body).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, body.to_string().as_bytes()).await
    }

    /// `POST /api/v1/publish`, expecting 200; returns the answer's JSON.
    async fn publish(&self, body: &Value) -> Value {
        let a = self.post("/api/v1/publish", body).await;
        assert_eq!(a.status, 200, "publish {body}: {}", String::from_utf8_lossy(&a.body));
        a.json()
    }

    /// `GET path` until `done` holds for its JSON, failing after [`PATIENCE`]. No sleeps: each
    /// try is a round trip to the broker.
    async fn until_json(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let v = self.get_json(path).await;
                if done(&v) {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("GET {path}: not as expected within patience"))
    }

    /// `GET path`, expecting 200 with JSON.
    async fn get_json(&self, path: &str) -> Value {
        let a = self.get(path).await;
        assert_eq!(a.status, 200, "GET {path}: {}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("content-type"), Some("application/json"), "GET {path}");
        a.json()
    }
}

// ---------------------------------------------------------------------------------------------
// Brokers with authentication
// ---------------------------------------------------------------------------------------------

/// `broker.toml` text: no anonymous clients; alice (role admin, may do anything) and bob (may
/// publish and subscribe under `bob/`), by password or HS256 token; `per_minute` failed logins;
/// then `extra`.
fn auth_toml(per_minute: u32, bob_topics: &str, extra: &str) -> String {
    let (alice, bob) = hashes();
    format!(
        "[server]\nallow_anonymous = false\n\
         [auth]\n\
         users = [{{ username = \"alice\", password_hash = \"{alice}\", roles = [\"admin\"] }}, \
                  {{ username = \"bob\", password_hash = \"{bob}\" }}]\n\
         failed_login_limit = {{ per_minute = {per_minute}, max_addresses = 10000 }}\n\
         [auth.jwt]\nhs256_secret = \"{SECRET}\"\naudience = \"{AUDIENCE}\"\nleeway_secs = 0\n\
         [[auth.acl]]\nrole = \"admin\"\npublish = [\"#\", \"$queue/#\"]\nsubscribe = [\"#\", \"$queue/#\"]\n\
         [[auth.acl]]\nuser = \"bob\"\npublish = [\"{bob_topics}\"]\nsubscribe = [\"{bob_topics}\"]\n{extra}"
    )
}

/// Parses `toml` and gives it a fresh store and port 0 for every listener.
fn config_from(toml: &str) -> Config {
    let mut c = Config::parse(toml, "api-test.toml").unwrap_or_else(|e| panic!("config refused: {e}\n{toml}"));
    let e = Config::ephemeral();
    c.store.path = e.store.path;
    c.listeners.ws.addr = e.listeners.ws.addr;
    c.listeners.mqtt.addr = e.listeners.mqtt.addr;
    c.listeners.stomp.addr = e.listeners.stomp.addr;
    c
}

/// A broker with [`auth_toml`] (bob may use `bob/#`).
async fn auth_broker(per_minute: u32, extra: &str) -> TestBroker {
    broker_with(config_from(&auth_toml(per_minute, "bob/#", extra))).await
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A valid HS256 token for `sub` with `roles`, for an hour.
fn token(sub: &str, roles: &[&str]) -> String {
    let claims = json!({ "sub": sub, "roles": roles, "aud": AUDIENCE, "exp": unix_now() + 3600 });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).expect("sign")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// `diglot_acl_denied_total{action="publish"}` on `/metrics`.
async fn publish_denials(b: &TestBroker) -> f64 {
    sample(&scrape(b.ws_addr().expect("ws")).await, "diglot_acl_denied_total", &[("action", "publish")])
}

// ---------------------------------------------------------------------------------------------
// MQTT and STOMP clients
// ---------------------------------------------------------------------------------------------

/// rumqttc 3.1.1 options for the broker's MQTT TCP listener, optionally with a token login.
fn mqtt_options(b: &TestBroker, id: &str, token: Option<&str>) -> rumqttc::MqttOptions {
    let addr = b.mqtt_addr().expect("mqtt listener");
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(t) = token {
        o.set_credentials("jwt", t);
    }
    o
}

/// A connected 3.1.1 client subscribed to `filter` at QoS 1.
async fn mqtt_subscriber(o: rumqttc::MqttOptions, filter: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (c, mut ev) = rumqttc::AsyncClient::new(o, 100);
    until(&mut ev, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))).then_some(())).await;
    c.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.expect("subscribe");
    let codes = until(&mut ev, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::SubAck(s)) => Some(s.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)], "{filter}");
    (c, ev)
}

/// The next publish a 3.1.1 client receives.
async fn next_publish(ev: &mut rumqttc::EventLoop) -> rumqttc::Publish {
    until(ev, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await
}

/// A connected MQTT 5 client.
async fn mqtt5(b: &TestBroker, id: &str) -> (r5::AsyncClient, r5::EventLoop) {
    let addr = b.mqtt_addr().expect("mqtt listener");
    let mut o = r5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut ev) = r5::AsyncClient::new(o, 100);
    until5(&mut ev, |e| matches!(e, r5::Event::Incoming(p5::Packet::ConnAck(_))).then_some(())).await;
    (c, ev)
}

/// A STOMP 1.2 client over TCP, connected with `headers` besides the usual ones.
async fn stomp(b: &TestBroker, headers: &[(&str, &str)]) -> Stomp {
    let mut s = Stomp::new(tcp_connect(b.stomp_addr().expect("stomp listener")).await);
    let mut all = vec![("accept-version", "1.2"), ("host", "localhost"), ("heart-beat", "0,0")];
    all.extend_from_slice(headers);
    s.send("CONNECT", &all, "").await;
    let f = s.frame().await.expect("CONNECTED");
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    s
}

/// SUBSCRIBE with a receipt, waiting for it.
async fn stomp_subscribe(s: &mut Stomp, id: &str, destination: &str, ack: &str) {
    s.send("SUBSCRIBE", &[("id", id), ("destination", destination), ("ack", ack), ("receipt", id)], "").await;
    let r = s.frame().await.expect("RECEIPT");
    assert_eq!((r.command.as_str(), r.header("receipt-id")), ("RECEIPT", Some(id)), "{r:?}");
}

/// The next MESSAGE frame.
async fn stomp_message(s: &mut Stomp) -> StompFrame {
    let f = s.frame().await.expect("MESSAGE");
    assert_eq!(f.command, "MESSAGE", "{f:?}");
    f
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document
// ---------------------------------------------------------------------------------------------

/// Every route the broker's HTTP side answers (besides WebSocket upgrades and static files),
/// as `(path, method)`, mirroring `crates/diglot-net/src/api.rs` and `/healthz` in `http.rs`.
const ROUTES: &[(&str, &str)] = &[
    ("/api/v1/publish", "post"),
    ("/api/v1/publish/batch", "post"),
    ("/api/v1/stats", "get"),
    ("/api/v1/connections", "get"),
    ("/api/v1/connections/{client_id}", "delete"),
    ("/api/v1/queues", "get"),
    ("/api/v1/queues/{name}", "delete"),
    ("/api/v1/subscriptions", "get"),
    ("/api/v1/reload", "post"),
    ("/api/v1/cluster", "get"),
    ("/api/v1/openapi.json", "get"),
    ("/api/v1/openapi.json", "head"),
    ("/metrics", "get"),
    ("/metrics", "head"),
    ("/healthz", "get"),
    ("/healthz", "head"),
    ("/readyz", "get"),
    ("/readyz", "head"),
    ("/dashboard", "get"),
    ("/dashboard", "head"),
    ("/dashboard/", "get"),
    ("/dashboard/", "head"),
];

const METHODS: &[&str] = &["get", "head", "post", "put", "delete", "patch"];

/// Every `$ref` in `v` points at something in `doc`.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                let r = r.as_str().expect("$ref is a string");
                let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("local $ref: {r}"));
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
            }
            m.values().for_each(|x| check_refs(doc, x));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(doc, x)),
        _ => {}
    }
}

/// The document is valid JSON, OpenAPI 3.x, describes exactly the routes the broker answers
/// (each answered, each other method on those paths refused with 405), and gives every error
/// a JSON `{"error"}` body.
#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_served() {
    let b = broker().await;
    let api = Api::new(&b, None);
    let doc = api.get_json("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "openapi: {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    check_refs(&doc, &doc);
    let schemes = doc["components"]["securitySchemes"].as_object().expect("securitySchemes");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["basicAuth"]["scheme"], "basic");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            documented.insert((path.clone(), method.clone()));
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let code: u16 = status.parse().unwrap_or_else(|_| panic!("{path} {method}: status {status}"));
                let response = match response.get("$ref").and_then(Value::as_str) {
                    Some(r) => doc.pointer(r.trim_start_matches('#')).expect("response ref"),
                    None => response,
                };
                // Every error is `{"error"}`, but for `/readyz`, whose 503 is its usual body.
                if code >= 400 && !(path == "/readyz" && code == 503) {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                        "{path} {method} {status}"
                    );
                }
            }
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(documented, served, "documented routes = served routes");
    // Each documented route is answered (not the router's 404 or 405), and each other method
    // on a documented path is 405 with `Allow`. Path parameters name nothing, so kick and
    // purge answer their own 404.
    let paths_only: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    for path in paths_only {
        let concrete = path.replace("{client_id}", "nobody").replace("{name}", "nothing");
        for method in METHODS {
            let body: &[u8] = match (path, *method) {
                ("/api/v1/publish", "post") => br#"{"topic":"t"}"#,
                ("/api/v1/publish/batch", "post") => br#"{"messages":[]}"#,
                _ => b"",
            };
            let a = call(api.addr, &method.to_uppercase(), &concrete, &[], body).await;
            let what = format!("{method} {concrete}");
            if documented.contains(&(path.to_string(), method.to_string())) {
                assert!(a.status != 405, "{what}: {}", a.status);
                if a.status == 404 {
                    assert_ne!(a.error(404, &what), "not found", "{what}: the route exists");
                } else {
                    assert!(a.status < 300, "{what}: {} {}", a.status, String::from_utf8_lossy(&a.body));
                }
            } else {
                // A HEAD answer has no body, so only its status says it.
                if *method == "head" {
                    assert_eq!(a.status, 405, "{what}");
                } else {
                    a.error(405, &what);
                }
                assert!(a.header("allow").is_some(), "{what}: Allow");
            }
        }
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------------

/// A publish reaches MQTT 3.1.1, MQTT 5 and STOMP subscribers, by topic and by STOMP
/// destination, with a UTF-8 or base64 payload, user properties, a content type and an expiry;
/// a retained one reaches a later subscriber.
#[tokio::test]
async fn publishes_reach_mqtt_and_stomp_subscribers() {
    let b = broker().await;
    let api = Api::new(&b, None);
    let (_c4, mut ev4) = mqtt_subscriber(mqtt_options(&b, "sub-311", None), "chat/#").await;
    let (c5, mut ev5) = mqtt5(&b, "sub-5").await;
    c5.subscribe("chat/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
    until5(&mut ev5, |e| matches!(e, r5::Event::Incoming(p5::Packet::SubAck(_))).then_some(())).await;
    let mut s = stomp(&b, &[]).await;
    stomp_subscribe(&mut s, "chat", "/topic/chat/#", "auto").await;

    let answer = api
        .publish(&json!({
            "topic": "chat/room 1",
            "payload": "héllo from HTTP",
            "qos": 1,
            "properties": [["source", "billing"], ["trace", "t-1"]],
            "content_type": "text/plain",
            "expiry_secs": 600,
        }))
        .await;
    assert_eq!(answer, json!({ "topic": "chat/room 1", "qos": 1, "durable": true }));
    let binary: Vec<u8> = vec![0, 1, 2, 0xfe, 0xff];
    let answer = api
        .publish(&json!({
            "destination": "/topic/chat/bin",
            "payload": base64::engine::general_purpose::STANDARD.encode(&binary),
            "encoding": "base64",
        }))
        .await;
    assert_eq!(answer, json!({ "topic": "chat/bin", "qos": 0, "durable": false }));

    let p = next_publish(&mut ev4).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("chat/room 1", "héllo from HTTP".as_bytes()));
    assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
    let p = next_publish(&mut ev4).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("chat/bin", &binary[..]));

    let p = until5(&mut ev5, |e| match e {
        r5::Event::Incoming(p5::Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&p.topic[..], b"chat/room 1");
    let props = p.properties.expect("MQTT 5 properties");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert!(props.message_expiry_interval.is_some_and(|s| s > 0 && s <= 600), "{props:?}");
    assert_eq!(
        props.user_properties,
        vec![("source".to_string(), "billing".to_string()), ("trace".to_string(), "t-1".to_string())]
    );

    let m = stomp_message(&mut s).await;
    assert_eq!(m.header("destination"), Some("/topic/chat/room 1"));
    assert_eq!(m.body, "héllo from HTTP".as_bytes());
    assert_eq!(m.header("content-type"), Some("text/plain"));
    assert_eq!((m.header("source"), m.header("trace")), (Some("billing"), Some("t-1")));
    let m = stomp_message(&mut s).await;
    assert_eq!((m.header("destination"), &m.body[..]), (Some("/topic/chat/bin"), &binary[..]));

    // A retained publish is kept for subscribers that come later.
    api.publish(&json!({ "topic": "chat/topic-of-the-day", "payload": "retained", "qos": 1, "retain": true })).await;
    let (_late, mut late) = mqtt_subscriber(mqtt_options(&b, "late", None), "chat/topic-of-the-day").await;
    let p = next_publish(&mut late).await;
    assert_eq!((&p.payload[..], p.retain), (&b"retained"[..], true));
    b.shutdown().await;
}

/// "The answer comes once the message is durable": QoS 1 publishes to a persistent MQTT
/// session and to a named queue, then the broker stops right after the 200s and starts again on
/// the same store; both messages are there.
#[tokio::test]
async fn a_qos1_publish_survives_a_restart_right_after_the_answer() {
    let b = broker().await;
    {
        let mut o = mqtt_options(&b, "away", None);
        o.set_clean_session(false);
        let (c, mut ev) = mqtt_subscriber(o, "jobs/#").await;
        c.disconnect().await.unwrap();
        let _ = tokio::time::timeout(PATIENCE, async { while ev.poll().await.is_ok() {} }).await;
    }
    let api = Api::new(&b, None);
    api.publish(&json!({ "topic": "jobs/1", "payload": "for the session", "qos": 1 })).await;
    api.publish(&json!({ "destination": "/queue/work", "payload": "for the queue", "qos": 1 })).await;
    api.publish(&json!({ "topic": "$queue/work", "payload": "by its MQTT name", "qos": 2 })).await;
    let config = b.stop_keeping_data().await;

    let b = broker_with(config).await;
    let mut o = mqtt_options(&b, "away", None);
    o.set_clean_session(false);
    let (_c, mut ev) = rumqttc::AsyncClient::new(o, 10);
    let present = until(&mut ev, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => Some(a.session_present),
        _ => None,
    })
    .await;
    assert!(present, "the session outlived the restart");
    let p = next_publish(&mut ev).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("jobs/1", &b"for the session"[..]));
    let mut s = stomp(&b, &[]).await;
    s.send("SUBSCRIBE", &[("id", "w"), ("destination", "/queue/work"), ("ack", "client")], "").await;
    let first = stomp_message(&mut s).await;
    let second = stomp_message(&mut s).await;
    assert_eq!((&first.body[..], &second.body[..]), (&b"for the queue"[..], &b"by its MQTT name"[..]));
    b.shutdown().await;
}

/// A batch publishes its good messages and reports each refused one with its status; the
/// refused ones reach nobody (shown with a marker), and the ACL denial is counted once.
#[tokio::test]
async fn a_batch_mixes_published_and_refused_messages() {
    let b = auth_broker(1000, "").await;
    let alice = token("alice", &["admin"]);
    let (_c, mut ev) = mqtt_subscriber(mqtt_options(&b, "watcher", Some(&alice)), "#").await;
    let bob = bearer(&token("bob", &[]));
    let api = Api::new(&b, Some(&bob));
    let denied_before = publish_denials(&b).await;
    let a = api
        .post(
            "/api/v1/publish/batch",
            &json!({ "messages": [
                { "topic": "bob/1", "payload": "one" },
                { "topic": "alice/secret", "payload": "denied" },
                { "topic": "bob/2", "payload": "%%%", "encoding": "base64" },
                { "topic": "bob/+", "payload": "wildcard" },
                { "payload": "no topic" },
                { "destination": "/topic/bob/3", "payload": "three", "qos": 1 },
            ]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    assert_eq!(v["failed"], 4, "{v}");
    let statuses: Vec<Value> = v["results"].as_array().unwrap().iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, vec![Value::Null, json!(403), json!(400), json!(400), json!(400), Value::Null], "{v}");
    assert_eq!(v["results"][0], json!({ "topic": "bob/1", "qos": 0, "durable": false }));
    assert_eq!(v["results"][5], json!({ "topic": "bob/3", "qos": 1, "durable": true }));
    assert!(v["results"][1]["error"].as_str().unwrap().contains("alice/secret"), "{v}");
    assert_eq!(publish_denials(&b).await - denied_before, 1.0, "one denial, counted once");
    // The marker comes after the batch: whatever the watcher got from the batch came first.
    Api::new(&b, Some(&bearer(&alice))).publish(&json!({ "topic": "marker", "payload": "end" })).await;
    let mut got = Vec::new();
    loop {
        let p = next_publish(&mut ev).await;
        if p.topic == "marker" {
            break;
        }
        got.push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned()));
    }
    assert_eq!(got, vec![("bob/1".to_string(), "one".to_string()), ("bob/3".to_string(), "three".to_string())]);
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// 400 for what cannot be a valid request: bad JSON, unknown fields, bad base64, bad topics
/// and destinations, bad QoS, bad encodings, bad paging and bad percent-encoding.
#[tokio::test]
async fn malformed_requests_are_400() {
    let b = broker().await;
    let api = Api::new(&b, None);
    for (body, what, says) in [
        (&b"{\"topic\": \"a\""[..], "truncated JSON", "invalid JSON"),
        (b"not json", "not JSON", "invalid JSON"),
        (b"[1, 2]", "an array", "invalid JSON"),
        (b"", "no body", "invalid JSON"),
        (br#"{"topic":"a","qoss":1}"#, "unknown field", "unknown field `qoss`"),
        (br#"{"topic":"a","payload":"!!","encoding":"base64"}"#, "bad base64", "base64"),
        (br#"{"topic":"a","payload":"x","encoding":"hex"}"#, "unknown encoding", "encoding"),
        (br#"{"topic":"a/+/b","payload":"x"}"#, "wildcard topic", "invalid topic"),
        (br#"{"topic":"a/#","payload":"x"}"#, "wildcard topic", "invalid topic"),
        (br#"{"topic":"","payload":"x"}"#, "empty topic", "invalid topic"),
        (br#"{"destination":"/nowhere/x","payload":"x"}"#, "bad destination", "invalid destination"),
        (br#"{"destination":"/temp-queue/x","payload":"x"}"#, "temp queue", "temp-queue"),
        (br#"{"topic":"a","destination":"/topic/a"}"#, "both", "exactly one"),
        (br#"{"payload":"x"}"#, "neither", "exactly one"),
        (br#"{"topic":"a","qos":3}"#, "qos 3", "qos"),
        (br#"{"topic":"a","qos":-1}"#, "qos -1", "invalid JSON"),
        (br#"{"topic":"a","properties":{"k":"v"}}"#, "properties as an object", "invalid JSON"),
    ] {
        let text = api.post_raw("/api/v1/publish", body).await.error(400, what);
        assert!(text.contains(says), "{what}: {text}");
    }
    let text =
        api.post("/api/v1/publish/batch", &json!({ "messages": [{ "topic": "a", "x": 1 }] })).await.error(400, "");
    assert!(text.contains("unknown field `x`"), "{text}");
    let text = api.post("/api/v1/publish/batch", &json!({ "topic": "a" })).await.error(400, "not a batch");
    assert!(text.contains("invalid JSON"), "{text}");
    for query in ["offset=x", "offset=-1", "limit=ten", "limit=-5", "limit=0", "offset=%zz"] {
        api.get(&format!("/api/v1/connections?{query}")).await.error(400, query);
    }
    api.delete("/api/v1/connections/bad%zzid").await.error(400, "bad percent-encoding");
    api.delete("/api/v1/queues/%e2%28").await.error(400, "not UTF-8");
    b.shutdown().await;
}

/// 401 without credentials where anonymous callers are refused, and for bad ones (with
/// `WWW-Authenticate`); good passwords and tokens pass; 403 for a non-admin on every admin
/// endpoint; 404 and 405 do not depend on the caller.
#[tokio::test]
async fn credentials_and_roles() {
    let b = auth_broker(1000, "").await;
    let publish = json!({ "topic": "bob/x", "payload": "p" });
    let expired = {
        let claims = json!({ "sub": "bob", "aud": AUDIENCE, "exp": unix_now() - 120 });
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
    };
    let (bad_pw, bad_scheme, expired) =
        (basic("bob", "wrong"), "Digest username=\"bob\"".to_string(), bearer(&expired));
    for (auth, what) in [
        (None, "no credentials"),
        (Some("Bearer not.a.token"), "not a JWT"),
        (Some(expired.as_str()), "expired token"),
        (Some(bad_pw.as_str()), "wrong password"),
        (Some("Basic !!!"), "bad Basic"),
        (Some(bad_scheme.as_str()), "unknown scheme"),
    ] {
        let api = Api::new(&b, auth);
        let a = api.post("/api/v1/publish", &publish).await;
        a.error(401, what);
        assert_eq!(a.header("www-authenticate"), Some("Bearer"), "{what}");
        api.get("/api/v1/stats").await.error(401, what);
    }
    let bob_token = bearer(&token("bob", &[]));
    let bob_pw = basic("bob", BOB_PW);
    for auth in [&bob_token, &bob_pw] {
        let api = Api::new(&b, Some(auth));
        assert_eq!(api.publish(&publish).await["topic"], "bob/x");
        for (method, path) in [
            ("GET", "/api/v1/stats"),
            ("GET", "/api/v1/connections"),
            ("DELETE", "/api/v1/connections/someone"),
            ("GET", "/api/v1/queues"),
            ("DELETE", "/api/v1/queues/queue%2Fjobs"),
            ("GET", "/api/v1/subscriptions"),
            ("POST", "/api/v1/reload"),
        ] {
            let text = call(api.addr, method, path, &api.headers(), b"").await.error(403, path);
            assert!(text.contains("admin"), "{text}");
        }
        // Routing comes first: a non-admin gets 404 and 405 like anyone.
        api.get("/api/v1/nothing-here").await.error(404, "unknown path");
        let a = api.get("/api/v1/publish").await;
        a.error(405, "GET publish");
        assert_eq!(a.header("allow"), Some("POST"));
    }
    for auth in [bearer(&token("alice", &["admin"])), basic("alice", ALICE_PW), bearer(&token("carol", &["admin"]))] {
        let stats = Api::new(&b, Some(&auth)).get_json("/api/v1/stats").await;
        assert!(stats["connections"]["total"].is_u64(), "{stats}");
    }
    // 404 and 405 before credentials: nothing to check for a route that does not exist.
    let anonymous = Api::new(&b, None);
    anonymous.get("/api/v1/nothing-here").await.error(404, "anonymous unknown path");
    anonymous.get("/api/v2/stats").await.error(404, "another version");
    anonymous.delete("/api/v1/stats").await.error(405, "anonymous DELETE stats");
    b.shutdown().await;
}

/// Once authentication is configured, an anonymous caller (accepted on loopback by default)
/// gets the ACLs' verdict for publishing and is no admin.
#[tokio::test]
async fn anonymous_callers_are_not_admins_once_authentication_is_configured() {
    let toml = auth_toml(1000, "bob/#", "[[auth.acl]]\neveryone = true\npublish = [\"public/#\"]\n");
    let b = broker_with(config_from(&toml.replace("allow_anonymous = false", "allow_anonymous = \"loopback\""))).await;
    let anonymous = Api::new(&b, None);
    anonymous.publish(&json!({ "topic": "public/news", "payload": "hi" })).await;
    anonymous.post("/api/v1/publish", &json!({ "topic": "bob/x" })).await.error(403, "not in the ACL");
    assert!(anonymous.get("/api/v1/stats").await.error(403, "stats").contains("admin"));
    assert!(anonymous.get("/api/v1/queues").await.error(403, "queues").contains("admin"));
    b.shutdown().await;
}

/// 403 for a publish the ACLs refuse, counted once in `diglot_acl_denied_total`; the message
/// reaches nobody.
#[tokio::test]
async fn acl_denials_are_403_and_counted() {
    let b = auth_broker(1000, "").await;
    let alice = token("alice", &["admin"]);
    let (_c, mut ev) = mqtt_subscriber(mqtt_options(&b, "watcher", Some(&alice)), "#").await;
    let bob = bearer(&token("bob", &[]));
    let api = Api::new(&b, Some(&bob));
    assert_eq!(publish_denials(&b).await, 0.0);
    let text = api.post("/api/v1/publish", &json!({ "topic": "alice/x", "payload": "no" })).await.error(403, "ACL");
    assert!(text.contains("not authorized to publish to alice/x"), "{text}");
    api.post("/api/v1/publish", &json!({ "destination": "/queue/jobs", "payload": "no" })).await.error(403, "queue");
    assert_eq!(publish_denials(&b).await, 2.0, "each denial counted once");
    let stats = Api::new(&b, Some(&bearer(&alice))).get_json("/api/v1/stats").await;
    assert_eq!(stats["auth"]["publish_denied"], 2, "{stats}");
    api.publish(&json!({ "topic": "bob/marker", "payload": "end" })).await;
    let p = next_publish(&mut ev).await;
    assert_eq!(p.topic, "bob/marker", "the denied messages reached nobody");
    b.shutdown().await;
}

/// 403 for a request from a page whose `Origin` the listener does not allow, on the API and on
/// `/metrics`; allowed origins and requests without `Origin` pass.
#[tokio::test]
async fn disallowed_origins_are_403() {
    let b = broker().await;
    let addr = b.ws_addr().unwrap();
    let publish = br#"{"topic":"o/x","payload":"p"}"#;
    for (method, path, body) in [
        ("POST", "/api/v1/publish", &publish[..]),
        ("GET", "/api/v1/stats", b""),
        ("GET", "/metrics", b""),
        ("GET", "/readyz", b""),
    ] {
        let a = call(addr, method, path, &[("origin", "https://evil.example")], body).await;
        assert_eq!(a.error(403, path), "origin not allowed");
        let a = call(addr, method, path, &[("origin", "http://localhost:3000")], body).await;
        assert_eq!(a.status, 200, "{path} from an allowed origin");
        assert_eq!(call(addr, method, path, &[], body).await.status, 200, "{path} without Origin");
    }
    b.shutdown().await;
}

/// 404 for unknown paths and unknown ids, 405 (with `Allow`) for a known path with another
/// method.
#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let b = broker().await;
    let api = Api::new(&b, None);
    for path in ["/api/v1/", "/api/v1/nothing", "/api/v1/publish/", "/api/v1/publish/batch/x", "/api/v1/queues/a/b"] {
        assert_eq!(api.get(path).await.error(404, path), "not found");
    }
    assert!(api.delete("/api/v1/connections/nobody").await.error(404, "kick").contains("nobody"));
    assert!(api.delete("/api/v1/queues/queue%2Fnothing").await.error(404, "purge").contains("queue/nothing"));
    for (method, path, allow) in [
        ("GET", "/api/v1/publish", "POST"),
        ("PUT", "/api/v1/publish/batch", "POST"),
        ("POST", "/api/v1/stats", "GET"),
        ("DELETE", "/api/v1/connections", "GET"),
        ("GET", "/api/v1/connections/x", "DELETE"),
        ("POST", "/api/v1/queues", "GET"),
        ("PATCH", "/api/v1/queues/x", "DELETE"),
        ("DELETE", "/api/v1/subscriptions", "GET"),
        ("GET", "/api/v1/reload", "POST"),
        ("POST", "/metrics", "GET, HEAD"),
        ("DELETE", "/readyz", "GET, HEAD"),
        ("POST", "/api/v1/openapi.json", "GET, HEAD"),
    ] {
        let a = call(api.addr, method, path, &[], b"").await;
        assert_eq!(a.error(405, path), "method not allowed");
        assert_eq!(a.header("allow"), Some(allow), "{method} {path}");
    }
    b.shutdown().await;
}

/// 413 for a body over `http.max_body_bytes` and for a batch of more than 1000 messages; a
/// batch of 1000 is fine.
#[tokio::test]
async fn oversized_bodies_and_batches_are_413() {
    let b = broker_with({
        let mut c = Config::ephemeral();
        c.http.max_body_bytes = 64 * 1024;
        c
    })
    .await;
    let api = Api::new(&b, None);
    let big = json!({ "topic": "big", "payload": "x".repeat(64 * 1024) });
    let text = api.post("/api/v1/publish", &big).await.error(413, "big publish");
    assert!(text.contains("65536"), "{text}");
    api.post("/api/v1/publish/batch", &json!({ "messages": [big] })).await.error(413, "big batch");
    let just_fits = json!({ "topic": "big", "payload": "x".repeat(60 * 1024) });
    api.publish(&just_fits).await;
    let messages =
        |n: usize| json!({ "messages": (0..n).map(|i| json!({ "topic": format!("t/{i}") })).collect::<Vec<_>>() });
    let text = api.post("/api/v1/publish/batch", &messages(1001)).await.error(413, "1001 messages");
    assert!(text.contains("1000"), "{text}");
    let a = api.post("/api/v1/publish/batch", &messages(1000)).await;
    assert_eq!((a.status, a.json()["failed"].clone()), (200, json!(0)));
    b.shutdown().await;
}

/// 429 with `Retry-After` once an address has failed `per_minute` logins, even with good
/// credentials.
#[tokio::test]
async fn too_many_failed_logins_are_429() {
    let b = auth_broker(3, "").await;
    let bad = basic("bob", "wrong");
    for i in 0..3 {
        Api::new(&b, Some(&bad)).get("/api/v1/stats").await.error(401, &format!("failure {i}"));
    }
    let alice = bearer(&token("alice", &["admin"]));
    for auth in [&bad, &alice] {
        let a = Api::new(&b, Some(auth)).get("/api/v1/stats").await;
        assert!(a.error(429, "blocked").contains("too many failed logins"));
        assert!(a.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1), "Retry-After");
    }
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Admin endpoints
// ---------------------------------------------------------------------------------------------

/// The server DISCONNECT reason code that ended an MQTT 5 connection.
async fn disconnect_reason(ev: &mut r5::EventLoop) -> Option<u8> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match ev.poll().await {
                Ok(_) => continue,
                Err(r5::ConnectionError::MqttState(r5::StateError::ServerDisconnect { reason_code, .. })) => {
                    return Some(reason_code as u8)
                }
                Err(_) => return None,
            }
        }
    })
    .await
    .expect("disconnected within patience")
}

/// A kick closes every connection with that client id: MQTT 5 gets DISCONNECT 0x98, MQTT
/// 3.1.1 a close, STOMP an ERROR; unknown ids are 404.
#[tokio::test]
async fn kicks_close_mqtt_and_stomp_clients() {
    let b = auth_broker(1000, "").await;
    let alice = bearer(&token("alice", &["admin"]));
    let api = Api::new(&b, Some(&alice));
    let addr = b.mqtt_addr().unwrap();
    let mut o = r5::MqttOptions::new("kick-5", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials("bob", BOB_PW);
    let (_c5, mut ev5) = r5::AsyncClient::new(o, 10);
    until5(&mut ev5, |e| matches!(e, r5::Event::Incoming(p5::Packet::ConnAck(_))).then_some(())).await;
    let bob = token("bob", &[]);
    let (_c4, mut ev4) = mqtt_subscriber(mqtt_options(&b, "dev/7", Some(&bob)), "bob/#").await;
    let mut s = stomp(&b, &[("client-id", "kick-stomp"), ("login", "jwt"), ("passcode", bob.as_str())]).await;

    assert_eq!(api.delete("/api/v1/connections/kick-5").await.json(), json!({ "client_id": "kick-5", "closed": 1 }));
    assert_eq!(disconnect_reason(&mut ev5).await, Some(0x98), "MQTT 5 DISCONNECT Administrative action");

    let a = api.delete("/api/v1/connections/dev%2F7").await;
    assert_eq!((a.status, a.json()), (200, json!({ "client_id": "dev/7", "closed": 1 })));
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            if ev4.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the 3.1.1 client was closed");

    assert_eq!(api.delete("/api/v1/connections/kick-stomp").await.status, 200);
    let f = s.frame().await.expect("ERROR");
    assert_eq!((f.command.as_str(), f.header("message")), ("ERROR", Some("closed by an administrator")), "{f:?}");
    assert!(s.frame().await.is_none(), "closed after the ERROR");

    // The clients saw their close; the broker lists them as closed once its side is done.
    let kicked = |v: &Value| v["recent_closes"].as_array().unwrap().iter().filter(|c| c["reason"] == "kicked").count();
    let stats = api.until_json("/api/v1/stats", |v| kicked(v) == 3).await;
    assert_eq!(stats["connections"]["total"], 0, "{stats}");
    api.delete("/api/v1/connections/kick-5").await.error(404, "already gone");
    api.delete("/api/v1/connections/nobody").await.error(404, "unknown");
    b.shutdown().await;
}

/// Queues are listed with their depth, and a purge empties one (depth 0) and keeps it.
#[tokio::test]
async fn queues_are_listed_and_purged() {
    let b = broker().await;
    let api = Api::new(&b, None);
    for i in 0..5 {
        api.publish(&json!({ "destination": "/queue/jobs", "payload": format!("job {i}"), "qos": 1 })).await;
    }
    let queue = |v: &Value| v["queues"].as_array().unwrap().iter().find(|q| q["name"] == "queue/jobs").cloned();
    let q = queue(&api.get_json("/api/v1/queues").await).expect("queue/jobs listed");
    assert_eq!((q["depth"].clone(), q["lag"].clone(), q["consumers"].clone()), (json!(5), json!(5), json!(0)), "{q}");
    assert_eq!(q["bindings"], json!(["$queue/jobs"]));
    let a = api.delete("/api/v1/queues/queue%2Fjobs").await;
    assert_eq!((a.status, a.json()), (200, json!({ "queue": "queue/jobs", "purged": 5 })));
    let q = queue(&api.get_json("/api/v1/queues").await).expect("the queue stays");
    assert_eq!(q["depth"], 0, "{q}");
    // Nothing is left to deliver: a consumer's first message is the one published now.
    api.publish(&json!({ "destination": "/queue/jobs", "payload": "after", "qos": 1 })).await;
    let mut s = stomp(&b, &[]).await;
    stomp_subscribe(&mut s, "j", "/queue/jobs", "client").await;
    assert_eq!(stomp_message(&mut s).await.body, b"after");
    b.shutdown().await;
}

/// Every connection's subscriptions (MQTT, shared, STOMP), its consumers of durable queues, and
/// the durable queues' bindings.
#[tokio::test]
async fn subscriptions_are_listed() {
    let b = broker().await;
    let api = Api::new(&b, None);
    let mut o = mqtt_options(&b, "lister", None);
    o.set_clean_session(false);
    let (c, mut ev) = mqtt_subscriber(o, "s/+/x").await;
    c.subscribe("$share/g/t/#", rumqttc::QoS::AtMostOnce).await.unwrap();
    until(&mut ev, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))).then_some(())).await;
    let mut s = stomp(&b, &[("client-id", "stomp-lister")]).await;
    stomp_subscribe(&mut s, "t", "/topic/news/#", "auto").await;
    stomp_subscribe(&mut s, "q", "/queue/orders", "client").await;

    let v = api.get_json("/api/v1/subscriptions").await;
    let subs: BTreeSet<(String, String, u64, Option<String>)> = v["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = s["client_id"].as_str().unwrap_or("").to_string();
            let share = s["share"].as_str().map(str::to_string);
            (id, s["filter"].as_str().unwrap().to_string(), s["qos"].as_u64().unwrap(), share)
        })
        .collect();
    // A persistent session's subscription and a STOMP queue subscription feed durable queues:
    // they are listed as those queues' bindings, not under the connection.
    let want: BTreeSet<(String, String, u64, Option<String>)> =
        [("lister", "t/#", 0, Some("g")), ("stomp-lister", "news/#", 1, None)]
            .into_iter()
            .map(|(c, f, q, s)| (c.to_string(), f.to_string(), q, s.map(str::to_string)))
            .collect();
    assert_eq!(subs, want, "{v}");
    let bindings = v["queue_bindings"].as_array().unwrap();
    assert!(bindings.contains(&json!({ "queue": "$session/lister", "filter": "s/+/x" })), "{v}");
    assert!(bindings.contains(&json!({ "queue": "queue/orders", "filter": "$queue/orders" })), "{v}");
    // Who consumes those queues, with the consumer's window.
    let consumers: BTreeSet<(String, String)> = v["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["client_id"].as_str().unwrap_or("").to_string(), c["queue"].as_str().unwrap().to_string()))
        .collect();
    let want: BTreeSet<(String, String)> = [("lister", "$session/lister"), ("stomp-lister", "queue/orders")]
        .into_iter()
        .map(|(c, q)| (c.to_string(), q.to_string()))
        .collect();
    assert_eq!(consumers, want, "{v}");
    assert!(v["consumers"].as_array().unwrap().iter().all(|c| c["prefetch"].as_u64().is_some_and(|p| p >= 1)), "{v}");
    b.shutdown().await;
}

/// `POST /api/v1/reload` reads the configuration file again: a new ACL is in force at once; a
/// file with errors is refused and the running configuration stays.
#[tokio::test]
async fn reload_applies_a_new_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    let listeners = format!(
        "[listeners.ws]\naddr = \"127.0.0.1:0\"\n[listeners.mqtt]\naddr = \"127.0.0.1:0\"\n\
         [listeners.stomp]\naddr = \"127.0.0.1:0\"\n[store]\npath = {:?}\n",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&file, auth_toml(1000, "bob/#", &listeners)).unwrap();
    let b = broker_with(Config::load(&file).unwrap()).await;
    b.reload_from(file.clone(), None);
    let alice = bearer(&token("alice", &["admin"]));
    let admin = Api::new(&b, Some(&alice));
    let bob_token = bearer(&token("bob", &[]));
    let bob = Api::new(&b, Some(&bob_token));
    bob.publish(&json!({ "topic": "bob/1" })).await;
    bob.post("/api/v1/publish", &json!({ "topic": "robert/1" })).await.error(403, "before the reload");

    std::fs::write(&file, auth_toml(1000, "robert/#", &listeners)).unwrap();
    assert_eq!(admin.post_raw("/api/v1/reload", b"").await.json(), json!({ "reloaded": true }));
    bob.publish(&json!({ "topic": "robert/1" })).await;
    bob.post("/api/v1/publish", &json!({ "topic": "bob/1" })).await.error(403, "after the reload");

    std::fs::write(&file, format!("{}\n[limits]\nmax_frame_byte = 3\n", auth_toml(1000, "bob/#", &listeners))).unwrap();
    let text = admin.post_raw("/api/v1/reload", b"").await.error(500, "a bad file");
    assert!(text.contains("max_frame_byte") && text.contains("old configuration stays"), "{text}");
    bob.publish(&json!({ "topic": "robert/2" })).await;
    bob.post("/api/v1/publish", &json!({ "topic": "bob/2" })).await.error(403, "the old file stays in force");
    bob.post_raw("/api/v1/reload", b"").await.error(403, "bob is no admin");
    b.shutdown().await;
}

/// Connections come in pages, oldest first, without gaps or repeats; `limit` is capped at
/// 1000.
#[tokio::test]
async fn connections_are_paged() {
    let b = broker().await;
    let api = Api::new(&b, None);
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut o = mqtt_options(&b, &format!("page-{i}"), None);
        o.set_clean_session(true);
        let (c, mut ev) = rumqttc::AsyncClient::new(o, 10);
        until(&mut ev, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))).then_some(())).await;
        clients.push((c, ev));
    }
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let page = api.get_json(&format!("/api/v1/connections?offset={offset}&limit=2")).await;
        assert_eq!(
            (page["total"].clone(), page["offset"].clone(), page["limit"].clone()),
            (json!(5), json!(offset), json!(2))
        );
        for item in page["items"].as_array().unwrap() {
            assert_eq!(
                (item["protocol"].as_str(), item["transport"].as_str()),
                (Some("mqtt/3.1.1"), Some("tcp")),
                "{item}"
            );
            assert!(item["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{item}");
            seen.push(item["client_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, (0..5).map(|i| format!("page-{i}")).collect::<Vec<_>>(), "oldest first, each once");
    let page = api.get_json("/api/v1/connections?offset=9").await;
    assert_eq!((page["items"].clone(), page["limit"].clone()), (json!([]), json!(100)));
    let page = api.get_json("/api/v1/connections?limit=5000").await;
    assert_eq!((page["limit"].clone(), page["items"].as_array().unwrap().len()), (json!(1000), 5));
    b.shutdown().await;
}

/// `/healthz`, `/readyz`, `/metrics`, `/api/v1/stats` and `/dashboard` answer, and HEAD gives
/// headers without a body.
#[tokio::test]
async fn health_readiness_metrics_and_stats() {
    let b = broker().await;
    let api = Api::new(&b, None);
    let a = api.get("/healthz").await;
    assert_eq!((a.status, &a.body[..]), (200, &b"ok\n"[..]));
    assert_eq!(
        api.get_json("/readyz").await,
        json!({ "ready": true, "store": "open", "listeners": "bound", "shutting_down": false, "cluster": "off" })
    );
    let a = call(api.addr, "HEAD", "/readyz", &[], b"").await;
    assert_eq!((a.status, a.body.len()), (200, 0));
    api.publish(&json!({ "topic": "stats/x", "payload": "12345" })).await;
    let stats = api.get_json("/api/v1/stats").await;
    assert_eq!(stats["messages"]["received"], 1, "{stats}");
    assert_eq!(stats["topics"], json!([{ "topic": "stats/x", "messages": 1 }]));
    for key in ["version", "uptime_secs", "connections", "bytes", "queues", "store", "auth", "limits", "recent_closes"]
    {
        assert!(stats.get(key).is_some(), "stats.{key}: {stats}");
    }
    let s = scrape(api.addr).await;
    assert_eq!(sample(&s, "diglot_messages_received_total", &[("protocol", "http")]), 1.0);
    let a = api.get("/dashboard").await;
    assert_eq!((a.status, a.header("content-type")), (200, Some("text/html; charset=utf-8")));
    b.shutdown().await;
}
