//! Reading the client's opening handshake (RFC 6455 §4.2.1) before anything is negotiated.
//!
//! yawc builds the 101 answer but checks little of the request: it takes any
//! `Sec-WebSocket-Key`, any method, HTTP/1.0, and a missing `Sec-WebSocket-Version` as a wrong
//! one. This module checks the request against §4.2.1 first and says how to refuse it:
//!
//! - A request with no sign of WebSocket (no `Upgrade: websocket`, no `Sec-WebSocket-Key`, no
//!   `Sec-WebSocket-Version`) is plain HTTP to a WebSocket path: 426 Upgrade Required with
//!   `Upgrade: websocket` (RFC 9110 §15.5.22) and `Connection: Upgrade` (RFC 9110 §7.8).
//! - A handshake that breaks §4.2.1 is malformed: 400 Bad Request, the RFC's own example, with
//!   a body naming the fault. That covers a method other than GET, HTTP/1.0, a missing
//!   `Upgrade: websocket` or `Connection: Upgrade` token, no `Host` or two (RFC 9112 §3.2
//!   makes that a 400 for any HTTP/1.1 request), a `Sec-WebSocket-Key` that is missing, sent
//!   twice or not the base64 of 16 bytes, and a `Sec-WebSocket-Version` that is missing, sent
//!   twice (§11.3.5) or not a version number. These 400s also carry `Sec-WebSocket-Version: 13`,
//!   which helps a client that got the version wrong and harms no other.
//! - A well-formed `Sec-WebSocket-Version` other than 13: 426 with `Sec-WebSocket-Version: 13`
//!   (§4.4), plus `Upgrade` and `Connection` as every 426 needs.
//!
//! Tokens of `Upgrade` and `Connection` are compared ignoring ASCII case, in any position of a
//! comma-separated list and on any header line (`Connection: keep-alive, Upgrade` is what
//! Firefox sends). `Origin`, authentication and the subprotocol are checked elsewhere.

use base64::Engine;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Method, Request, StatusCode, Version};

/// Why an opening handshake is refused, and how to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 400 or 426.
    pub(crate) status: StatusCode,
    /// The fault, for the plain-text body.
    pub(crate) reason: &'static str,
    /// The request was a WebSocket handshake, not plain HTTP: the answer names the version the
    /// server speaks and counts as a refused handshake.
    pub(crate) attempted: bool,
}

impl Refusal {
    fn malformed(reason: &'static str) -> Refusal {
        Refusal { status: StatusCode::BAD_REQUEST, reason, attempted: true }
    }

    /// Whether the answer asks the client to upgrade (a 426), so that it carries
    /// `Upgrade: websocket` and `Connection: Upgrade`.
    pub(crate) fn asks_upgrade(&self) -> bool {
        self.status == StatusCode::UPGRADE_REQUIRED
    }
}

/// Whether some line of header `name` lists `token` (ignoring ASCII case).
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))).unwrap_or(false))
}

/// Checks a request to a WebSocket path against RFC 6455 §4.2.1.
pub(crate) fn check<B>(req: &Request<B>) -> Result<(), Refusal> {
    let headers = req.headers();
    let upgrade = has_token(headers, header::UPGRADE, "websocket");
    if !upgrade
        && !headers.contains_key(header::SEC_WEBSOCKET_KEY)
        && !headers.contains_key(header::SEC_WEBSOCKET_VERSION)
    {
        return Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "this is a WebSocket endpoint for MQTT and STOMP; connect with a WebSocket client",
            attempted: false,
        });
    }
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method() != Method::GET {
        return Err(Refusal::malformed("the opening handshake must be a GET request (RFC 6455 §4.2.1)"));
    }
    if req.version() < Version::HTTP_11 {
        return Err(Refusal::malformed("the opening handshake needs HTTP/1.1 or higher (RFC 6455 §4.2.1)"));
    }
    // Items 3 and 4.
    if !upgrade {
        return Err(Refusal::malformed("Upgrade: websocket is missing (RFC 6455 §4.2.1)"));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Refusal::malformed("Connection: Upgrade is missing (RFC 6455 §4.2.1)"));
    }
    // Item 2, and RFC 9112 §3.2: exactly one Host.
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(Refusal::malformed("an HTTP/1.1 request needs exactly one Host header"));
    }
    check_version(headers)?;
    check_key(headers)
}

/// Item 6 and §4.4: one `Sec-WebSocket-Version`, and it is 13.
fn check_version(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut values = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Refusal::malformed("send one Sec-WebSocket-Version header: 13 (RFC 6455 §4.2.1, §11.3.5)"));
    };
    let value = value.as_bytes();
    // §4.1: version = 1*3DIGIT without leading zeros, 0..255.
    let number = std::str::from_utf8(value)
        .ok()
        .filter(|v| {
            (1..=3).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) && (v.len() == 1 || !v.starts_with('0'))
        })
        .and_then(|v| v.parse::<u8>().ok());
    match number {
        Some(13) => Ok(()),
        Some(_) => Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "unsupported WebSocket version; use 13",
            attempted: true,
        }),
        None => Err(Refusal::malformed("Sec-WebSocket-Version is not a version number; use 13")),
    }
}

/// Item 5 and §11.3.1: one `Sec-WebSocket-Key`, the base64 of 16 bytes.
fn check_key(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut values = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (values.next(), values.next()) else {
        return Err(Refusal::malformed("send one Sec-WebSocket-Key header (RFC 6455 §4.2.1, §11.3.1)"));
    };
    match base64::engine::general_purpose::STANDARD.decode(key.as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(()),
        _ => Err(Refusal::malformed("Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 §4.2.1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(method: &str, version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/ws").version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("a valid test request")
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "x"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
    }

    /// [`good`] with header `name` left out, or given `value` instead.
    fn with(name: &'static str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut h: Vec<_> = good().into_iter().filter(|(k, _)| *k != name).collect();
        h.extend(value.map(|v| (name, v)));
        h
    }

    fn status(method: &str, version: Version, headers: &[(&str, &str)]) -> Option<u16> {
        check(&request(method, version, headers)).err().map(|r| r.status.as_u16())
    }

    #[test]
    fn a_good_handshake_passes_with_any_token_case_and_position() {
        assert_eq!(status("GET", Version::HTTP_11, &good()), None);
        assert_eq!(status("GET", Version::HTTP_11, &with("upgrade", Some("WebSocket"))), None);
        assert_eq!(status("GET", Version::HTTP_11, &with("connection", Some("keep-alive, Upgrade"))), None);
        assert_eq!(status("GET", Version::HTTP_11, &with("connection", Some("UPGRADE"))), None);
        let mut two_lines = with("connection", Some("keep-alive"));
        two_lines.push(("connection", "upgrade"));
        assert_eq!(status("GET", Version::HTTP_11, &two_lines), None);
    }

    #[test]
    fn plain_http_is_asked_to_upgrade() {
        let r = check(&request("GET", Version::HTTP_11, &[("host", "x")])).unwrap_err();
        assert_eq!((r.status.as_u16(), r.asks_upgrade(), r.attempted), (426, true, false));
        assert_eq!(status("POST", Version::HTTP_11, &[("host", "x")]), Some(426));
    }

    /// Handshake audit: each of these was answered 101 (or 426) before.
    #[test]
    fn malformed_handshakes_are_400() {
        let v11 = Version::HTTP_11;
        assert_eq!(status("POST", v11, &good()), Some(400));
        assert_eq!(status("HEAD", v11, &good()), Some(400));
        assert_eq!(status("GET", Version::HTTP_10, &good()), Some(400));
        assert_eq!(status("GET", v11, &with("upgrade", None)), Some(400));
        assert_eq!(status("GET", v11, &with("upgrade", Some("h2c"))), Some(400));
        assert_eq!(status("GET", v11, &with("connection", None)), Some(400));
        assert_eq!(status("GET", v11, &with("connection", Some("keep-alive"))), Some(400));
        assert_eq!(status("GET", v11, &with("host", None)), Some(400));
        let mut two_hosts = good();
        two_hosts.push(("host", "y"));
        assert_eq!(status("GET", v11, &two_hosts), Some(400));
        for key in [
            None,
            Some("not base64!!"),
            Some("eHh4eHh4eHh4eHh4eHh4"),     // 15 bytes
            Some("eHh4eHh4eHh4eHh4eHh4eHg="), // 17 bytes
            Some("dGhlIHNhbXBsZSBub25jZQ"),   // no padding
            Some(""),
        ] {
            assert_eq!(status("GET", v11, &with("sec-websocket-key", key)), Some(400), "{key:?}");
        }
        let mut two_keys = good();
        two_keys.push(("sec-websocket-key", KEY));
        assert_eq!(status("GET", v11, &two_keys), Some(400));
    }

    #[test]
    fn versions() {
        let v11 = Version::HTTP_11;
        for bad in ["8", "7", "0", "255"] {
            let r = check(&request("GET", v11, &with("sec-websocket-version", Some(bad)))).unwrap_err();
            assert_eq!((r.status.as_u16(), r.asks_upgrade(), r.attempted), (426, true, true), "{bad}");
        }
        for malformed in [None, Some("abc"), Some("13, 8"), Some("013"), Some("256"), Some("")] {
            let r = check(&request("GET", v11, &with("sec-websocket-version", malformed))).unwrap_err();
            assert_eq!((r.status.as_u16(), r.attempted), (400, true), "{malformed:?}");
        }
        let mut twice = good();
        twice.push(("sec-websocket-version", "13"));
        assert_eq!(status("GET", v11, &twice), Some(400));
    }
}
