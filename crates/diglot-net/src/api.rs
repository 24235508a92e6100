//! The HTTP side of the broker besides WebSockets: `GET /metrics`, `GET /readyz`,
//! `GET /dashboard`, and the JSON API under `/api/v1/` (see `web/openapi.json`).
//!
//! API callers authenticate with `Authorization: Bearer <JWT>` or `Authorization: Basic`
//! (a static user; an argon2 check per request, so prefer tokens for frequent calls). Without
//! credentials a caller is anonymous, which the listener's `allow_anonymous` decides. Publishing
//! is checked against the same topic ACLs as MQTT and STOMP; the admin endpoints (connections,
//! kick, queues, purge, subscriptions, reload) need the `http.admin_role` role, or, when no
//! authentication method is configured at all, an anonymous caller on a listener that accepts
//! them (a loopback development broker).
//!
//! Errors are JSON `{"error": "..."}` with 400 (bad request), 401 (no or bad credentials), 403
//! (origin, ACL or role), 404 (no such path), 405 (another method, with `Allow`), 413 (body
//! over `http.max_body_bytes`, batch over 1000), 429 (too many failed logins, a full queue) or
//! 500/503. A request is routed before its credentials are checked, so 404 and 405 do not
//! depend on who asks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use diglot_auth::Identity;
use diglot_core::{Message, Props, PublishError, Qos, Topic};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::{Shared, WsRoutes};

type Body = Full<Bytes>;

/// The OpenAPI document of `/api/v1`.
const OPENAPI: &str = include_str!("web/openapi.json");
/// The dashboard page: static, self-contained.
const DASHBOARD: &str = include_str!("web/dashboard.html");

/// Most messages in one `POST /api/v1/publish/batch`.
const MAX_BATCH: usize = 1000;
/// Most connections in one page of `GET /api/v1/connections`.
const MAX_PAGE: usize = 1000;

/// Settings of the HTTP endpoints (`[http]`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The role that may use the admin endpoints.
    pub admin_role: String,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// A directory whose files `GET`/`HEAD` of other paths serve (`None`: off).
    pub static_dir: Option<std::path::PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { admin_role: "admin".into(), max_body_bytes: 1024 * 1024, static_dir: None }
    }
}

/// Whether this module answers `path`.
pub(crate) fn owns(path: &str) -> bool {
    matches!(path, "/metrics" | "/readyz" | "/dashboard" | "/dashboard/") || path.starts_with("/api/")
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
/// A JSON error answer `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": message.into() }))
}

fn static_page(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The dashboard renders client-supplied text only as text; forbid everything else too.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// Who is calling the API.
struct Caller {
    identity: Option<Identity>,
    admin: bool,
}

/// Answers a request on one of this module's paths.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    routes: &WsRoutes,
    req: Request<Incoming>,
    peer: SocketAddr,
    anonymous_ok: bool,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // A page on another site must not drive the API through a visitor's browser.
    let origin = req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if origin.is_some() && !routes.origins.allows(origin) {
        return error(StatusCode::FORBIDDEN, "origin not allowed");
    }
    match (path.as_str(), &method) {
        ("/readyz", &Method::GET | &Method::HEAD) => return readyz(shared),
        ("/metrics", &Method::GET | &Method::HEAD) => {
            let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render(shared))));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
            return resp;
        }
        ("/dashboard" | "/dashboard/", &Method::GET | &Method::HEAD) => {
            return static_page("text/html; charset=utf-8", DASHBOARD)
        }
        ("/api/v1/openapi.json", &Method::GET | &Method::HEAD) => return static_page("application/json", OPENAPI),
        ("/readyz" | "/metrics" | "/dashboard" | "/dashboard/" | "/api/v1/openapi.json", _) => {
            return method_not_allowed("GET, HEAD")
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else { return error(StatusCode::NOT_FOUND, "not found") };
    // Route first: an unknown path is 404 and a wrong method 405 for every caller, and no
    // credentials are checked (argon2 for Basic) for a request that cannot succeed anyway.
    let route = match Route::parse(rest, &method) {
        Ok(r) => r,
        Err(None) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(Some(allowed)) => return method_not_allowed(allowed.as_str()),
    };
    let caller = match authenticate(shared, &req, peer, anonymous_ok).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    // Everything but publishing names other clients (ids, addresses, session queues).
    if route.admin_only() && !caller.admin {
        return error(StatusCode::FORBIDDEN, "this endpoint needs the admin role");
    }
    match route {
        Route::Publish => match read_json::<PublishRequest>(shared, req).await {
            Ok(p) => publish_one(shared, &caller, p).await,
            Err(resp) => resp,
        },
        Route::Batch => match read_json::<BatchRequest>(shared, req).await {
            Ok(b) => publish_batch(shared, &caller, b).await,
            Err(resp) => resp,
        },
        Route::Stats => json_response(StatusCode::OK, &stats(shared)),
        Route::Connections => connections(shared, req.uri().query()),
        Route::Kick(client_id) => match percent_decode(client_id) {
            Some(id) => kick(shared, &id),
            None => error(StatusCode::BAD_REQUEST, "bad percent-encoding in the client id"),
        },
        Route::Queues => json_response(StatusCode::OK, &json!({ "queues": shared.durable.views() })),
        Route::Purge(name) => match percent_decode(name) {
            Some(name) => purge(shared, &name).await,
            None => error(StatusCode::BAD_REQUEST, "bad percent-encoding in the queue name"),
        },
        Route::Subscriptions => subscriptions(shared),
        Route::Reload => reload(shared),
        Route::Cluster => json_response(StatusCode::OK, &crate::cluster::view(shared)),
    }
}

/// An endpoint under `/api/v1/`, with its path parameter (still percent-encoded).
enum Route<'a> {
    Publish,
    Batch,
    Stats,
    Connections,
    Kick(&'a str),
    Queues,
    Purge(&'a str),
    Subscriptions,
    Reload,
    Cluster,
}

impl<'a> Route<'a> {
    /// The endpoint that `rest` (the path after `/api/v1/`) and `method` name; otherwise
    /// `Err(None)` for no such path (404) or `Err(Some(allowed))` for another method (405).
    fn parse(rest: &'a str, method: &Method) -> Result<Route<'a>, Option<Method>> {
        let segments: Vec<&'a str> = rest.split('/').collect();
        let (route, allowed) = match segments.as_slice() {
            ["publish"] => (Route::Publish, Method::POST),
            ["publish", "batch"] => (Route::Batch, Method::POST),
            ["stats"] => (Route::Stats, Method::GET),
            ["connections"] => (Route::Connections, Method::GET),
            ["connections", client_id] => (Route::Kick(client_id), Method::DELETE),
            ["queues"] => (Route::Queues, Method::GET),
            ["queues", name] => (Route::Purge(name), Method::DELETE),
            ["subscriptions"] => (Route::Subscriptions, Method::GET),
            ["reload"] => (Route::Reload, Method::POST),
            ["cluster"] => (Route::Cluster, Method::GET),
            _ => return Err(None),
        };
        if *method != allowed {
            return Err(Some(allowed));
        }
        Ok(route)
    }

    /// Whether only administrators may call it.
    fn admin_only(&self) -> bool {
        !matches!(self, Route::Publish | Route::Batch)
    }
}

/// 405 with the `Allow` header that RFC 9110 §15.5.6 requires.
fn method_not_allowed(allow: &str) -> Response<Body> {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    if let Ok(v) = HeaderValue::from_str(allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

fn readyz(shared: &Shared) -> Response<Body> {
    let store_failure = shared.durable.store_failure();
    let cluster = crate::cluster::link(shared);
    // With [cluster], a node is ready only with its Redis link up (issue #9/#7): it still serves
    // the clients it has, but a load balancer should send new ones where the cluster works.
    let ready = shared.ready.load(Ordering::Relaxed)
        && !*shared.shutdown.borrow()
        && store_failure.is_none()
        && cluster != "down";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let store = match store_failure {
        None => "open".to_string(),
        Some(why) => format!("failed: {why}"),
    };
    let body = json!({
        "ready": ready,
        "store": store,
        "listeners": if shared.ready.load(Ordering::Relaxed) { "bound" } else { "starting" },
        "shutting_down": *shared.shutdown.borrow(),
        "cluster": cluster,
    });
    json_response(status, &body)
}

async fn authenticate(
    shared: &Arc<Shared>,
    req: &Request<Incoming>,
    peer: SocketAddr,
    anonymous_ok: bool,
) -> Result<Caller, Response<Body>> {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let identity = match shared.auth.api_login(header, peer.ip()).await {
        Ok(identity) => identity,
        Err(crate::auth::ApiRefusal::Unauthorized) => {
            let mut resp = error(StatusCode::UNAUTHORIZED, "bad credentials");
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(resp);
        }
        Err(crate::auth::ApiRefusal::TooManyFailures(secs)) => {
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "too many failed logins from this address");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Err(resp);
        }
        Err(crate::auth::ApiRefusal::Unavailable) => {
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, "authentication unavailable"))
        }
    };
    let admin = match &identity {
        Some(id) => id.has_role(&shared.http.admin_role),
        None => {
            if !anonymous_ok {
                shared.auth.counters.failures.fetch_add(1, Ordering::Relaxed);
                let mut resp = error(StatusCode::UNAUTHORIZED, "credentials required");
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Err(resp);
            }
            !shared.auth.has_methods()
        }
    };
    Ok(Caller { identity, admin })
}

async fn read_json<T: for<'de> Deserialize<'de>>(shared: &Shared, req: Request<Incoming>) -> Result<T, Response<Body>> {
    let limit = shared.http.max_body_bytes;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > limit {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes")));
        }
    }
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes")))
        }
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))),
    };
    serde_json::from_slice(&body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

/// One message to publish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// An MQTT topic name.
    topic: Option<String>,
    /// A STOMP destination (`/topic/...`, `/queue/...`), instead of `topic`.
    destination: Option<String>,
    /// The payload, as UTF-8 text or base64 (`encoding`).
    #[serde(default)]
    payload: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
    /// MQTT 5 user properties / STOMP headers.
    #[serde(default)]
    properties: Vec<(String, String)>,
    content_type: Option<String>,
    /// Message expiry, in seconds.
    expiry_secs: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    messages: Vec<PublishRequest>,
}

/// Why one publish was not taken: the HTTP status and the text.
type Refused = (StatusCode, String);

/// A publish request as a router message; a `destination` is read as a STOMP client's would be,
/// with the broker's `stomp.topic_separator` (`sep`).
fn to_message(p: PublishRequest, sep: diglot_stomp::Separator) -> Result<Message, Refused> {
    let bad = |s: String| (StatusCode::BAD_REQUEST, s);
    let topic = match (p.topic, p.destination) {
        (Some(t), None) => Topic::new(&t).map_err(|e| bad(format!("invalid topic: {e}")))?,
        (None, Some(d)) => {
            if d.starts_with("/temp-queue/") {
                return Err(bad("a /temp-queue/ belongs to a STOMP session; publish to its reply topic".into()));
            }
            diglot_stomp::destination::send_topic(&d, "", sep).map_err(|e| bad(format!("invalid destination: {e}")))?
        }
        _ => return Err(bad("give exactly one of topic and destination".into())),
    };
    let payload = match p.encoding.as_deref() {
        None | Some("utf8") | Some("utf-8") => Bytes::from(p.payload),
        Some("base64") => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(p.payload.as_bytes())
                .map_err(|e| bad(format!("payload is not base64: {e}")))?,
        ),
        Some(other) => return Err(bad(format!("unknown encoding {other:?}; use utf8 or base64"))),
    };
    let qos = Qos::from_u8(p.qos).ok_or_else(|| bad("qos must be 0, 1 or 2".into()))?;
    let mut msg = Message::new(topic, payload, qos, p.retain);
    if let Some(secs) = p.expiry_secs {
        msg.expires_at = Some(msg.received_at + std::time::Duration::from_secs(u64::from(secs)));
        msg.expires_unix_ms = Some(crate::durable::now_ms() + u64::from(secs) * 1000);
    }
    if p.content_type.is_some() || !p.properties.is_empty() {
        msg.props = Some(Box::new(Props { content_type: p.content_type, user: p.properties, ..Props::default() }));
    }
    Ok(msg)
}

/// Checks and publishes one message; answers once it is routed, and for QoS ≥ 1 once the
/// durable queues it matched have it under the store's durability policy.
async fn publish_checked(shared: &Arc<Shared>, caller: &Caller, p: PublishRequest) -> Result<Value, Refused> {
    let msg = to_message(p, shared.stomp.topic_separator)?;
    let permissions = shared.auth.permissions(caller.identity.as_ref(), "");
    // `may_publish` counts a denial itself (`diglot_acl_denied_total{action="publish"}`).
    if !permissions.may_publish(&msg.topic) {
        return Err((StatusCode::FORBIDDEN, format!("not authorized to publish to {}", msg.topic)));
    }
    let topic = msg.topic.to_string();
    let qos = msg.qos as u8;
    shared.topics.record(&msg.topic);
    let traffic = shared.metrics.traffic(crate::metrics::Source::Http);
    traffic.messages_in.add(1);
    traffic.bytes_in.add(msg.payload.len() as u64);
    match crate::driver::publish(shared, msg).await {
        // A message published into a queue is stored whatever its QoS (`driver::route`).
        Ok(()) => {
            let durable = qos > 0 || topic.starts_with(crate::driver::QUEUE_TOPIC_PREFIX);
            Ok(json!({ "topic": topic, "qos": qos, "durable": durable }))
        }
        Err(PublishError::QueueFull(e)) => Err((StatusCode::TOO_MANY_REQUESTS, format!("queue full: {e}"))),
        Err(PublishError::Refused(e)) => Err((StatusCode::FORBIDDEN, e)),
        Err(PublishError::Store(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("store error: {e}"))),
    }
}

async fn publish_one(shared: &Arc<Shared>, caller: &Caller, p: PublishRequest) -> Response<Body> {
    match publish_checked(shared, caller, p).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err((status, text)) => error(status, text),
    }
}

async fn publish_batch(shared: &Arc<Shared>, caller: &Caller, b: BatchRequest) -> Response<Body> {
    if b.messages.len() > MAX_BATCH {
        return error(StatusCode::PAYLOAD_TOO_LARGE, format!("at most {MAX_BATCH} messages per batch"));
    }
    let mut results = Vec::with_capacity(b.messages.len());
    let mut failed = 0;
    for p in b.messages {
        match publish_checked(shared, caller, p).await {
            Ok(v) => results.push(v),
            Err((status, text)) => {
                failed += 1;
                results.push(json!({ "error": text, "status": status.as_u16() }));
            }
        }
    }
    json_response(StatusCode::OK, &json!({ "failed": failed, "results": results }))
}

/// Broker statistics for the stats API and the dashboard.
pub(crate) fn stats(shared: &Shared) -> Value {
    let conns = shared.conns.list();
    let mut by_protocol = serde_json::Map::new();
    let mut by_transport = serde_json::Map::new();
    for c in &conns {
        let proto = c.details.lock().protocol.split('/').next().unwrap_or("").to_string();
        let n = by_protocol.entry(proto).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
        let n = by_transport.entry(c.transport.label().to_string()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    let router = shared.router.stats();
    let store = shared.durable.store_stats();
    let auth = &shared.auth.counters;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": shared.started.elapsed().as_secs(),
        "connections": { "total": conns.len(), "by_protocol": by_protocol, "by_transport": by_transport },
        "messages": {
            "received": shared.metrics.messages_in(),
            "sent": shared.metrics.messages_out(),
            "dropped": router.dropped.get(),
        },
        "bytes": {
            "received": shared.bytes_in.get(),
            "sent": shared.bytes_out.get(),
        },
        "subscriptions": shared.router.subscription_count(),
        "retained": shared.router.retained().len(),
        "topics": shared.topics.top(10).into_iter().map(|(topic, messages)| json!({ "topic": topic, "messages": messages })).collect::<Vec<_>>(),
        "queues": shared.durable.views(),
        "store": {
            "dropped_overflow": store.dropped_overflow,
            "rejected_full": store.rejected_full,
            "expired": store.expired,
            "dead_lettered": store.dead_lettered,
        },
        "auth": {
            "failures": auth.failures.load(Ordering::Relaxed),
            "publish_denied": auth.publish_denied.load(Ordering::Relaxed),
            "subscribe_denied": auth.subscribe_denied.load(Ordering::Relaxed),
        },
        "rate_limited": shared.breaches().get(diglot_core::Limit::MaxPublishRate),
        "limits": diglot_core::Limit::ALL.iter().map(|l| (l.label().to_string(), json!(shared.breaches().get(*l)))).collect::<serde_json::Map<_, _>>(),
        "rejected_handshakes": shared.rejected_handshakes.load(Ordering::Relaxed),
        "recent_closes": shared.conns.recent_closes(),
    })
}

/// The first value of query parameter `name`: `None` when it is absent, `Some(None)` when its
/// percent-encoding is bad (which must not read as "absent").
fn query_param(query: Option<&str>, name: &str) -> Option<Option<String>> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn connections(shared: &Shared, query: Option<&str>) -> Response<Body> {
    let parse = |name: &str, default: usize| match query_param(query, name) {
        None => Some(default),
        Some(v) => v?.parse::<usize>().ok(),
    };
    let Some(offset) = parse("offset", 0) else { return error(StatusCode::BAD_REQUEST, "offset must be a number") };
    let Some(limit) = parse("limit", 100).filter(|&l| l > 0) else {
        return error(StatusCode::BAD_REQUEST, "limit must be a number from 1 up (pages hold at most 1000)");
    };
    let limit = limit.min(MAX_PAGE);
    let all = shared.conns.list();
    let items: Vec<_> = all.iter().skip(offset).take(limit).map(|e| e.view()).collect();
    json_response(StatusCode::OK, &json!({ "total": all.len(), "offset": offset, "limit": limit, "items": items }))
}

fn kick(shared: &Shared, client_id: &str) -> Response<Body> {
    match shared.conns.kick(client_id) {
        0 => error(StatusCode::NOT_FOUND, format!("no connection with client id {client_id:?}")),
        n => {
            tracing::info!(client_id, connections = n, "connection closed by an administrator");
            json_response(StatusCode::OK, &json!({ "client_id": client_id, "closed": n }))
        }
    }
}

async fn purge(shared: &Shared, name: &str) -> Response<Body> {
    match shared.durable.purge(name).await {
        Ok(Some(n)) => json_response(StatusCode::OK, &json!({ "queue": name, "purged": n })),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no queue {name:?}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("store error: {e}")),
    }
}

fn subscriptions(shared: &Shared) -> Response<Body> {
    let mut items = Vec::new();
    let mut consumers = Vec::new();
    for c in shared.conns.list() {
        let client_id = c.details.lock().client_id.clone();
        let mut subs: Vec<_> = c.subscriptions.lock().values().cloned().collect();
        subs.sort_by(|a, b| a.filter.cmp(&b.filter));
        for s in subs {
            items.push(json!({ "client_id": client_id, "connection": c.id, "filter": s.filter, "qos": s.qos, "share": s.share }));
        }
        let mut queues: Vec<_> = c.consuming.lock().values().cloned().collect();
        queues.sort();
        for (queue, prefetch) in queues {
            consumers.push(json!({ "client_id": client_id, "connection": c.id, "queue": queue, "prefetch": prefetch }));
        }
    }
    let bindings: Vec<_> = shared
        .durable
        .views()
        .into_iter()
        .flat_map(|q| q.bindings.into_iter().map(move |f| json!({ "queue": q.name, "filter": f })))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "subscriptions": items, "consumers": consumers, "queue_bindings": bindings }),
    )
}

fn reload(shared: &Shared) -> Response<Body> {
    match shared.reload() {
        Ok(()) => json_response(StatusCode::OK, &json!({ "reloaded": true })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("reload refused; the old configuration stays: {e}")),
    }
}

/// Decodes `%XX` escapes (and nothing else); `None` for a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    diglot_auth::request::percent_decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("queue%2Fjobs").as_deref(), Some("queue/jobs"));
        assert_eq!(percent_decode("%24session%2Fc1").as_deref(), Some("$session/c1"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn publish_requests_become_messages() {
        let p: PublishRequest = serde_json::from_str(
            r#"{"destination":"/queue/jobs","payload":"aGk=","encoding":"base64","qos":1,"properties":[["k","v"]]}"#,
        )
        .unwrap();
        let m = to_message(p, diglot_stomp::Separator::Slash).unwrap();
        assert_eq!(m.topic.as_str(), "$queue/jobs");
        assert_eq!(&m.payload[..], b"hi");
        assert_eq!(m.qos, Qos::AtLeastOnce);
        assert_eq!(m.props.unwrap().user, vec![("k".to_string(), "v".to_string())]);
        for bad in [
            r#"{"payload":"x"}"#,
            r#"{"topic":"a/+","payload":"x"}"#,
            r#"{"topic":"a","destination":"/topic/a"}"#,
            r#"{"topic":"a","qos":3}"#,
            r#"{"topic":"a","payload":"!","encoding":"base64"}"#,
            r#"{"destination":"/temp-queue/x"}"#,
        ] {
            let p: PublishRequest = serde_json::from_str(bad).unwrap();
            assert!(to_message(p, diglot_stomp::Separator::Slash).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<PublishRequest>(r#"{"topic":"a","qoss":1}"#).is_err());
        // A destination is read with the broker's STOMP topic separator.
        let dotted = r#"{"destination":"/topic/a.b%2Ec"}"#;
        for (sep, topic) in [(diglot_stomp::Separator::Slash, "a.b%2Ec"), (diglot_stomp::Separator::Dot, "a/b.c")] {
            assert_eq!(to_message(serde_json::from_str(dotted).unwrap(), sep).unwrap().topic.as_str(), topic);
        }
        let p: PublishRequest = serde_json::from_str(r#"{"destination":"/topic/a/b"}"#).unwrap();
        assert!(to_message(p, diglot_stomp::Separator::Dot).is_err());
    }
}
