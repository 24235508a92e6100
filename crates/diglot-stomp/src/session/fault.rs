//! Everything that ends a STOMP session badly, and how each is told to the client: one place
//! that maps codec, destination and transaction errors to an ERROR frame's `message` header,
//! its body, and the connection's [`CloseReason`] (STOMP 1.2 "ERROR": the server closes the
//! connection right after sending it).

use diglot_core::{CloseReason, LoginRefusal, PublishError};

use super::tx::TxError;
use crate::codec::CodecError;
use crate::destination::DestinationError;
use crate::frame::Command;
use crate::version::Version;

/// A fatal problem: what the ERROR frame says and why the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// The ERROR frame's short `message` header.
    pub(crate) message: &'static str,
    /// The ERROR frame's body: the detail.
    pub(crate) detail: String,
    /// How the connection ends.
    pub(crate) close: CloseReason,
    /// Whether the ERROR lists the supported versions in a `version` header (failed
    /// negotiation, STOMP 1.2 "Protocol Negotiation").
    pub(crate) version_header: bool,
}

impl Fault {
    fn new(message: &'static str, detail: String, close: CloseReason) -> Fault {
        Fault { message, detail, close, version_header: false }
    }

    /// The client broke the protocol.
    pub(crate) fn protocol(message: &'static str, detail: impl Into<String>) -> Fault {
        let detail = detail.into();
        let close = CloseReason::ProtocolError(format!("{message}: {detail}"));
        Fault::new(message, detail, close)
    }

    /// The client exceeded a configured limit.
    pub(crate) fn limit(message: &'static str, detail: impl Into<String>) -> Fault {
        let detail = detail.into();
        let close = CloseReason::LimitExceeded(format!("{message}: {detail}"));
        Fault::new(message, detail, close)
    }

    /// The CONNECT was refused.
    pub(crate) fn refused(message: &'static str, detail: impl Into<String>) -> Fault {
        let detail = detail.into();
        let close = CloseReason::ConnectRefused(format!("{message}: {detail}"));
        Fault::new(message, detail, close)
    }

    /// The login was refused (STOMP has no refusal codes, so the `message` header names the
    /// kind). The text never says whether the login exists.
    pub(crate) fn login_refused(refusal: LoginRefusal) -> Fault {
        match refusal {
            LoginRefusal::BadCredentials => {
                Fault::refused("bad credentials", "The login and passcode were not accepted.")
            }
            LoginRefusal::NotAuthorized => Fault::refused(
                "not authorized",
                "This listener does not accept anonymous clients; CONNECT with login and passcode.",
            ),
            LoginRefusal::Unavailable => Fault::refused(
                "authentication unavailable",
                "The credentials could not be checked right now; try again later.",
            ),
        }
    }

    /// The connection's permissions do not allow what the frame asks for (`detail` says what).
    /// STOMP has no per-frame refusal, so the session ends.
    pub(crate) fn not_authorized(detail: impl Into<String>) -> Fault {
        let detail = detail.into();
        let close = CloseReason::NotAuthorized(detail.clone());
        Fault::new("not authorized", detail, close)
    }

    /// No version in common with the client.
    pub(crate) fn no_common_version(offered: Option<&str>, cap: Option<Version>) -> Fault {
        let mut detail = format!(
            "Supported protocol versions are {}; the client offered {}.",
            Version::SUPPORTED,
            offered.unwrap_or("1.0")
        );
        if let Some(cap) = cap {
            detail.push_str(&format!(" The WebSocket subprotocol allows at most {}.", cap.as_str()));
        }
        Fault { version_header: true, ..Fault::refused("unsupported STOMP version", detail) }
    }

    /// A required header is missing.
    pub(crate) fn missing(command: Command, header: &str) -> Fault {
        Fault::protocol("missing header", format!("{command} requires the {header:?} header."))
    }

    /// No CONNECT within the connect timeout.
    pub(crate) fn connect_timeout() -> Fault {
        Fault::new("CONNECT timeout", "No CONNECT frame arrived in time.".into(), CloseReason::HandshakeTimeout)
    }

    /// The client's heart-beats stopped.
    pub(crate) fn heartbeat_timeout() -> Fault {
        Fault::new(
            "heart-beat timeout",
            "Nothing was received from the client within the negotiated heart-beat interval.".into(),
            CloseReason::KeepAliveTimeout,
        )
    }

    /// The goodbye for a close the server decided on, or `None` if the reason has none
    /// (the client left, or the socket failed).
    pub(crate) fn for_server_close(reason: &CloseReason, client_id: Option<&str>) -> Option<Fault> {
        let (message, detail): (&'static str, String) = match reason {
            CloseReason::ServerShutdown => {
                ("server shutting down", "The broker is shutting down; reconnect later.".into())
            }
            CloseReason::SessionTakenOver => (
                "session taken over",
                format!("Another connection connected with client-id {:?}.", client_id.unwrap_or("")),
            ),
            // The driver's own check (the session's heart-beats end in `heartbeat_timeout`):
            // a WebSocket that answered none of the broker's pings.
            CloseReason::KeepAliveTimeout => (
                "keep-alive timeout",
                "The client answered no WebSocket ping in time (listeners.ws.ping_interval_secs).".into(),
            ),
            CloseReason::HandshakeTimeout => return Some(Fault::connect_timeout()),
            CloseReason::SlowConsumer => {
                ("slow consumer", "The client did not read its messages fast enough and its outbox is full.".into())
            }
            CloseReason::ProtocolError(s) => ("protocol error", s.clone()),
            CloseReason::LimitExceeded(s) => ("limit exceeded", s.clone()),
            CloseReason::ConnectRefused(s) => ("connection refused", s.clone()),
            CloseReason::AuthExpired => (
                "credentials expired",
                "The connection's credentials expired; reconnect with valid credentials.".into(),
            ),
            CloseReason::NotAuthorized(s) => ("not authorized", s.clone()),
            CloseReason::Kicked => ("closed by an administrator", "An administrator closed this connection.".into()),
            CloseReason::ClientDisconnect | CloseReason::PeerClosed | CloseReason::Io(_) => return None,
        };
        Some(Fault::new(message, detail, reason.clone()))
    }
}

impl From<CodecError> for Fault {
    fn from(e: CodecError) -> Fault {
        if e.is_limit() {
            Fault::limit("frame too large", e.to_string())
        } else {
            Fault::protocol("malformed frame", e.to_string())
        }
    }
}

impl From<DestinationError> for Fault {
    fn from(e: DestinationError) -> Fault {
        let message = match e {
            DestinationError::Unknown(_) => "unknown destination",
            DestinationError::PrivateTemp(_) => "private destination",
            DestinationError::Empty(_) | DestinationError::Topic { .. } | DestinationError::Dotted { .. } => {
                "invalid destination"
            }
        };
        Fault::protocol(message, e.to_string())
    }
}

impl Fault {
    /// A SEND's `reply-to` that cannot be read (with `stomp.topic_separator = "."`: a
    /// `/topic/` name with a bad escape, a `/` or a `+`).
    pub(crate) fn reply_to(e: DestinationError) -> Fault {
        Fault::protocol("invalid reply-to", e.to_string())
    }
}

impl From<PublishError> for Fault {
    /// A publish the driver could not carry out: refused (a protocol error), a durable queue
    /// full under the `reject` overflow policy (a limit), or a store failure (the broker's
    /// fault, closed like an I/O error). The body is the driver's text: the refusal's reason,
    /// or `queue full: <detail>` / `store error: <detail>`.
    fn from(e: PublishError) -> Fault {
        let detail = e.to_string();
        match e {
            PublishError::Refused(why) => Fault::protocol("publish refused", why),
            PublishError::QueueFull(_) => Fault::limit("queue full", detail),
            PublishError::Store(_) => Fault::new("store error", detail.clone(), CloseReason::Io(detail)),
        }
    }
}

impl From<TxError> for Fault {
    fn from(e: TxError) -> Fault {
        match e {
            TxError::Duplicate => {
                Fault::protocol("duplicate transaction", "BEGIN named a transaction that is already open.")
            }
            TxError::Unknown => {
                Fault::protocol("unknown transaction", "The frame names a transaction that is not open.")
            }
            TxError::TooManyOpen => Fault::limit(
                "too many transactions",
                format!("At most {} transactions may be open.", super::tx::MAX_OPEN),
            ),
            TxError::TooLarge => {
                Fault::limit("transaction too large", "The transaction buffers too many frames or bytes.")
            }
        }
    }
}
