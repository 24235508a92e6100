//! The HTTP side of the WebSocket port: the upgrade with subprotocol negotiation, `/healthz`,
//! and plain answers for everything else.
//!
//! The whole exchange runs in the connection's own task (never the accept loop), under the
//! handshake timeout. hyper parses the request; `handshake` checks it against RFC 6455 §4.2.1;
//! yawc builds the 101 answer, to which the negotiator's choice is added.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use diglot_core::Transport;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::time::timeout;
use yawc::{DeflateOptions, Options, UpgradeFut, WebSocket};

use crate::auth::{ConnAuth, HandshakeRefusal};
use crate::handshake::{has_token, Refusal};
use crate::link::Link;
use crate::negotiate::{choose, refusal_body, Choice, Proto};
use crate::server::{Shared, WsRoutes};

type Body = Full<Bytes>;

/// A WebSocket upgrade the HTTP exchange agreed on, waiting for hyper to hand over the socket.
struct Pending {
    fut: UpgradeFut,
    /// The protocol, or `None` for the echo path.
    proto: Option<Proto>,
    echo: Option<String>,
    /// The identity a handshake token proved.
    identity: Option<diglot_auth::Identity>,
}

/// What a WebSocket listener's HTTP exchange ended with.
pub(crate) enum Upgraded {
    /// A protocol connection for the driver.
    Protocol(Box<crate::server::Handshaken>),
    /// The echo path (WebSocket conformance suites).
    Echo(Box<WebSocket<yawc::HttpStream>>),
}

/// Serves one TCP connection on a WebSocket listener: plain HTTP requests until a WebSocket
/// upgrade (or the end). Returns the upgraded connection, which the caller runs once this
/// exchange's state (hyper's connection, the upgrade future) is gone.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    routes: Arc<WsRoutes>,
    stream: S,
    peer: SocketAddr,
    tls: bool,
    mut conn_auth: ConnAuth,
) -> Option<Upgraded>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + shared.handshake_timeout;
    let slot: Arc<Mutex<Option<Pending>>> = Arc::new(Mutex::new(None));
    let ping_interval = routes.ping_interval;
    let anonymous_ok = conn_auth.anonymous_ok;
    let service = {
        let shared = shared.clone();
        let slot = slot.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let shared = shared.clone();
            let routes = routes.clone();
            let slot = slot.clone();
            async move {
                // /metrics, /readyz, /dashboard and the JSON API.
                if crate::api::owns(req.uri().path()) && !is_upgrade(&req) {
                    return Ok::<_, Infallible>(crate::api::handle(&shared, &routes, req, peer, anonymous_ok).await);
                }
                Ok(respond(&shared, &routes, &mut req, &slot, peer))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.handshake_timeout)
        .max_buf_size(shared.edge.http_header_bytes.load(std::sync::atomic::Ordering::Relaxed))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        // hyper has answered 431 (head too large) or 408 (head not read in time) itself.
        if e.is_parse_too_large() {
            shared.breach(diglot_core::Limit::MaxHttpHeaderBytes);
        } else if e.is_timeout() {
            shared.breach(diglot_core::Limit::HandshakeTimeout);
        }
        tracing::debug!(%peer, error = %e, "http connection ended");
        return None;
    }
    let Pending { fut, proto, echo, identity } = slot.lock().take()?;
    let ws = match timeout(deadline.saturating_duration_since(Instant::now()), fut).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "websocket upgrade failed");
            return None;
        }
        Err(_) => {
            shared.breach(diglot_core::Limit::HandshakeTimeout);
            tracing::debug!(%peer, "websocket upgrade timed out");
            return None;
        }
    };
    let Some(proto) = proto else { return Some(Upgraded::Echo(Box::new(ws))) };
    let ping = ping_interval.map(crate::link::Ping::new);
    let link = Link::Ws { ws: Box::new(crate::link::WsConn::new(ws)), binary_only: proto == Proto::Mqtt, ping };
    if identity.is_some() {
        conn_auth.identity = identity;
    }
    Some(Upgraded::Protocol(Box::new(crate::server::Handshaken {
        link,
        proto,
        transport: Transport::WebSocket,
        tls,
        peer,
        subprotocol: echo,
        conn_auth,
    })))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    has_token(req.headers(), header::UPGRADE, "websocket") && has_token(req.headers(), header::CONNECTION, "upgrade")
}

/// The answer to an opening handshake that [`crate::handshake::check`] refused.
fn refuse(shared: &Shared, refusal: Refusal) -> Response<Body> {
    let mut resp = text(refusal.status, format!("{}\n", refusal.reason));
    let headers = resp.headers_mut();
    if refusal.asks_upgrade() {
        // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to; §7.8: Upgrade goes with
        // Connection: Upgrade.
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    if refusal.attempted {
        // RFC 6455 §4.4: the versions the server speaks.
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        shared.rejected(refusal.status.as_u16());
    }
    resp
}

fn respond(
    shared: &Shared,
    routes: &WsRoutes,
    req: &mut Request<Incoming>,
    slot: &Mutex<Option<Pending>>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path();
    if path == "/healthz" {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return text(StatusCode::OK, "ok\n");
        }
        let mut resp = crate::api::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let is_echo = routes.echo_path.as_deref() == Some(path);
    let path_default = match routes.paths.get(path) {
        Some(&d) => d,
        None if is_echo => None,
        None => return crate::files::serve(&shared.http, req),
    };
    let resp = upgrade(shared, routes, req, slot, peer, path_default, is_echo);
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return resp;
    }
    closing(resp)
}

/// A refused handshake ends its connection: a client whose upgrade failed does not reuse the
/// socket (browsers close it), and one that reads to the end of the answer should not wait
/// for the handshake timeout. `Connection` may already hold `Upgrade` (a 426).
fn closing(mut resp: Response<Body>) -> Response<Body> {
    let value = match resp.headers().get(header::CONNECTION).and_then(|v| v.to_str().ok()) {
        Some(v) => HeaderValue::from_str(&format!("{v}, close")).unwrap_or(HeaderValue::from_static("close")),
        None => HeaderValue::from_static("close"),
    };
    resp.headers_mut().insert(header::CONNECTION, value);
    resp
}

/// The opening handshake on a WebSocket path: `Origin`, the request itself, the token, the
/// subprotocol, permessage-deflate, then yawc's 101.
fn upgrade(
    shared: &Shared,
    routes: &WsRoutes,
    req: &mut Request<Incoming>,
    slot: &Mutex<Option<Pending>>,
    peer: SocketAddr,
    path_default: Option<Proto>,
    is_echo: bool,
) -> Response<Body> {
    // A browser names the page that opens the WebSocket in `Origin` (RFC 6455 §4.2.1, §10.2):
    // refuse pages that are not allowed before anything else happens.
    let origin = req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if !routes.origins.allows(origin) {
        shared.rejected(403);
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    if let Err(refusal) = crate::handshake::check(req) {
        return refuse(shared, refusal);
    }
    // A bearer token (header, cookie or `?token=`; browsers cannot set headers on a WebSocket)
    // is checked before the upgrade, so a bad one never gets a socket.
    let identity = if is_echo {
        None
    } else {
        let headers = req.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        match shared.auth.handshake(headers, req.uri().query(), peer.ip()) {
            Ok(identity) => identity,
            Err(HandshakeRefusal::Unauthorized) => {
                shared.rejected(401);
                let mut resp = text(StatusCode::UNAUTHORIZED, "invalid token\n");
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
                return resp;
            }
            Err(HandshakeRefusal::TooManyFailures(secs)) => {
                shared.rejected(429);
                let mut resp = text(StatusCode::TOO_MANY_REQUESTS, "too many failed logins from this address\n");
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return resp;
            }
        }
    };
    let offered: Vec<&str> =
        req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()).collect();
    let (proto, echo) = match choose(offered, path_default) {
        _ if is_echo => (None, None),
        Choice::Accept { proto, echo } => (Some(proto), echo),
        Choice::Refuse => {
            shared.rejected(400);
            return text(StatusCode::BAD_REQUEST, refusal_body());
        }
    };
    let echo_value = match echo.as_deref().map(HeaderValue::from_str) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            shared.rejected(400);
            return text(StatusCode::BAD_REQUEST, refusal_body());
        }
        None => None,
    };
    if routes.compression.is_some() {
        // Hand yawc the one permessage-deflate offer to accept (RFC 7692 §5.1), or none.
        let offers = req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok());
        let chosen = crate::extensions::choose_deflate_offer(offers).and_then(|o| HeaderValue::from_str(&o).ok());
        req.headers_mut().remove(header::SEC_WEBSOCKET_EXTENSIONS);
        if let Some(offer) = chosen {
            req.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, offer);
        }
    }
    match WebSocket::upgrade_with_options(&mut *req, ws_options(shared, routes)) {
        Ok((resp, fut)) => {
            let (mut parts, _) = resp.into_parts();
            if let Some(v) = echo_value {
                parts.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
            }
            *slot.lock() = Some(Pending { fut, proto, echo, identity });
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        // `handshake::check` has seen the key and the version; what yawc still refuses is malformed.
        Err(e) => {
            shared.rejected(400);
            text(StatusCode::BAD_REQUEST, format!("bad WebSocket handshake: {e}\n"))
        }
    }
}

/// The WebSocket read buffer an idle connection keeps. yawc grows it for a larger frame and
/// gives the growth back after that frame; a client's control frames, PINGREQs and small
/// publishes fit as they are.
const WS_READ_BUFFER: usize = 128;

/// The write buffer an idle connection keeps: none; each write reserves what its frame needs.
const WS_WRITE_BUFFER: usize = 0;

fn ws_options(shared: &Shared, routes: &WsRoutes) -> Options {
    // `limits.max_ws_frame_bytes` bounds one frame; `limits.max_ws_message_bytes` bounds a
    // reassembled fragmented message and an inflated one (a decompression bomb is refused at
    // the limit, not allocated). UTF-8 of text messages is always checked (RFC 6455 §8.1).
    let frame = shared.edge.ws_frame_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let message = shared.edge.ws_message_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let mut options = Options::default()
        .with_utf8()
        .with_no_delay()
        // yawc refuses a frame or message of `limit` bytes or more; the settings are the
        // largest allowed.
        .with_limits(frame.saturating_add(1), message.saturating_add(1))
        .with_read_buffer_capacity(WS_READ_BUFFER)
        .with_write_buffer_capacity(WS_WRITE_BUFFER);
    if let Some(c) = routes.compression {
        // Offered by the client, agreed here (RFC 7692 §7.1). Without context takeover the
        // server also asks the client to reset its window after each message, which RFC 7692
        // §7.1.1.2 allows even if the client did not offer it.
        options.compression = Some(DeflateOptions {
            level: yawc::CompressionLevel::new(u32::from(c.level.min(9))),
            server_no_context_takeover: !c.context_takeover,
            client_no_context_takeover: !c.context_takeover,
            compression_threshold: c.threshold,
            pool: (!c.context_takeover).then(|| shared.deflate_pool.clone()),
            // Take the window sizes the client offers (`client_max_window_bits`,
            // `server_max_window_bits`), as RFC 7692 §7.1.2 lets the server accept them.
            server_max_window_bits: None,
            client_max_window_bits: None,
        });
    }
    options
}
