//! Why a connection ended: one named reason per close, logged once by the driver.

use std::fmt;

/// The single reason a connection ended. Every close carries exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client said goodbye (MQTT DISCONNECT, STOMP DISCONNECT, WebSocket close).
    ClientDisconnect,
    /// The peer closed the socket without a protocol goodbye.
    PeerClosed,
    /// The peer broke the protocol; the text says how.
    ProtocolError(String),
    /// A frame, header or packet exceeded a configured limit.
    LimitExceeded(String),
    /// No traffic from the client within the negotiated keep-alive or heart-beat window.
    KeepAliveTimeout,
    /// The client did not finish the handshake or the protocol CONNECT in time.
    HandshakeTimeout,
    /// The client could not keep up with its outbox.
    SlowConsumer,
    /// Another connection took over this client id.
    SessionTakenOver,
    /// The client was refused at CONNECT (bad version, bad client id, bad credentials).
    ConnectRefused(String),
    /// The broker is shutting down.
    ServerShutdown,
    /// An administrator closed the connection (HTTP API; MQTT 5 DISCONNECT 0x98).
    Kicked,
    /// The connection's credentials (a JWT) expired and were not renewed (MQTT 5 DISCONNECT
    /// 0x87, STOMP ERROR).
    AuthExpired,
    /// The client did something its ACL forbids where the protocol's only answer is to close
    /// (a STOMP SEND or SUBSCRIBE), or its re-authentication failed; the text says what.
    NotAuthorized(String),
    /// A socket error.
    Io(String),
}

impl CloseReason {
    /// Every [`CloseReason::label`], so that a metric can show each at 0 before the first
    /// close of that kind.
    pub const LABELS: [&'static str; 14] = [
        "client_disconnect",
        "peer_closed",
        "protocol_error",
        "limit_exceeded",
        "keepalive_timeout",
        "handshake_timeout",
        "slow_consumer",
        "session_taken_over",
        "connect_refused",
        "server_shutdown",
        "kicked",
        "auth_expired",
        "not_authorized",
        "io_error",
    ];

    /// A short, stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientDisconnect => "client_disconnect",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::ProtocolError(_) => "protocol_error",
            CloseReason::LimitExceeded(_) => "limit_exceeded",
            CloseReason::KeepAliveTimeout => "keepalive_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::SessionTakenOver => "session_taken_over",
            CloseReason::ConnectRefused(_) => "connect_refused",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::Kicked => "kicked",
            CloseReason::AuthExpired => "auth_expired",
            CloseReason::NotAuthorized(_) => "not_authorized",
            CloseReason::Io(_) => "io_error",
        }
    }

    /// Whether the close was the client's own, orderly choice (so that, for example, an MQTT
    /// will message must not be published).
    pub fn is_graceful_client_close(&self) -> bool {
        matches!(self, CloseReason::ClientDisconnect)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ProtocolError(s)
            | CloseReason::LimitExceeded(s)
            | CloseReason::ConnectRefused(s)
            | CloseReason::NotAuthorized(s)
            | CloseReason::Io(s) => write!(f, "{}: {}", self.label(), s),
            _ => f.write_str(self.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_listed() {
        let s = String::new;
        let all = [
            CloseReason::ClientDisconnect,
            CloseReason::PeerClosed,
            CloseReason::ProtocolError(s()),
            CloseReason::LimitExceeded(s()),
            CloseReason::KeepAliveTimeout,
            CloseReason::HandshakeTimeout,
            CloseReason::SlowConsumer,
            CloseReason::SessionTakenOver,
            CloseReason::ConnectRefused(s()),
            CloseReason::ServerShutdown,
            CloseReason::Kicked,
            CloseReason::AuthExpired,
            CloseReason::NotAuthorized(s()),
            CloseReason::Io(s()),
        ];
        // A new variant makes `label`'s match fail to compile; this keeps the list in step.
        assert_eq!(all.iter().map(CloseReason::label).collect::<Vec<_>>(), CloseReason::LABELS);
    }
}
