//! Every mapping from Diglot's errors and close reasons to MQTT return and reason codes.
//!
//! MQTT 3.x has few codes (CONNACK return codes, SUBACK 0x80) and answers most errors by
//! closing the socket; MQTT 5 has a reason code for nearly everything (§2.4). Keeping the
//! mapping in this one module, as mosquitto does, means a new error is mapped once, for both
//! versions, and a missing case is a compile error here rather than a wrong byte elsewhere.
//!
//! This module decides codes; it writes no packets and holds no state.

use diglot_core::{CloseReason, LoginRefusal, PublishError, TopicError};
use rmqtt_codec::error::DecodeError;

use crate::codec::Version;

/// MQTT 5 reason codes used by this crate (§2.4, Table 2-6).
pub(crate) mod code {
    /// Success / granted QoS 0 / normal disconnection.
    pub const SUCCESS: u8 = 0x00;
    /// UNSUBACK: no subscription existed.
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    /// AUTH: re-authenticate (§4.12.1).
    pub const REAUTHENTICATE: u8 = 0x19;
    /// Unspecified error.
    pub const UNSPECIFIED: u8 = 0x80;
    /// Malformed Packet.
    pub const MALFORMED: u8 = 0x81;
    /// Protocol Error.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// CONNACK: unsupported protocol version.
    pub const UNSUPPORTED_VERSION: u8 = 0x84;
    /// CONNACK: client identifier not valid.
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    /// CONNACK: bad user name or password.
    pub const BAD_CREDENTIALS: u8 = 0x86;
    /// Not authorized (CONNACK, PUBACK, PUBREC, SUBACK, DISCONNECT).
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// CONNACK: server unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    /// Server shutting down.
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    /// Administrative action.
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    /// CONNACK: bad authentication method.
    pub const BAD_AUTH_METHOD: u8 = 0x8C;
    /// Keep Alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    /// Session taken over.
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    /// Topic Filter invalid.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// Topic Name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// PUBREL/PUBCOMP: Packet Identifier not found.
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    /// Receive Maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    /// Topic Alias invalid.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// Packet too large.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
}

/// A client error that ends the connection. In MQTT 5 it is announced with a DISCONNECT
/// (once CONNACK was sent, §4.13.1); MQTT 3.x just closes the socket (§4.8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// The codec could not decode a packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A packet larger than `limits.max_frame_bytes`.
    #[error("packet of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced packet size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Some other breach of the protocol; the text says which.
    #[error("{0}")]
    Protocol(&'static str),
    /// A packet a client must not send: one only a server sends (CONNACK, SUBACK, UNSUBACK,
    /// PINGRESP).
    #[error("unexpected {0} packet from a client")]
    Unexpected(&'static str),
    /// A PUBLISH topic that is not a valid topic name.
    #[error("invalid topic name: {0}")]
    TopicName(TopicError),
    /// A PUBLISH with a Topic Alias of 0 or above the Topic Alias Maximum announced in
    /// CONNACK [MQTT-3.3.2-8] [MQTT-3.3.2-9].
    #[error("topic alias 0 or above the Topic Alias Maximum")]
    TopicAlias,
    /// More unacknowledged QoS > 0 PUBLISHes than the announced Receive Maximum.
    #[error("receive maximum exceeded")]
    ReceiveMaximum,
    /// A QoS 0 PUBLISH whose payload is not the UTF-8 it claims to be.
    #[error("payload is not valid UTF-8")]
    PayloadFormat,
    /// The broker refused a publish and MQTT 3.x has no negative acknowledgement
    /// [MQTT-3.3.5-2].
    #[error("publish refused: {0}")]
    PublishRefused(String),
    /// A durable queue the publish goes to is full (overflow policy `reject`), and MQTT 3.x
    /// cannot refuse a publish [MQTT-3.3.5-2]: the publisher is disconnected instead.
    #[error("{0}; MQTT 3.x cannot refuse a publish, so the publisher is disconnected")]
    QueueFull(String),
}

impl Violation {
    /// A decode error from the codec.
    pub(crate) fn decode(e: &DecodeError) -> Violation {
        Violation::Malformed(e.to_string())
    }

    /// The reason the connection ends with.
    pub(crate) fn close_reason(&self) -> CloseReason {
        match self {
            Violation::TooLarge { .. } | Violation::QueueFull(_) => CloseReason::LimitExceeded(self.to_string()),
            _ => CloseReason::ProtocolError(self.to_string()),
        }
    }

    /// The MQTT 5 DISCONNECT reason code.
    pub(crate) fn disconnect_code(&self) -> u8 {
        match self {
            Violation::Malformed(_) => code::MALFORMED,
            Violation::TooLarge { .. } => code::PACKET_TOO_LARGE,
            Violation::Protocol(_) | Violation::Unexpected(_) => code::PROTOCOL_ERROR,
            Violation::TopicName(_) => code::TOPIC_NAME_INVALID,
            Violation::TopicAlias => code::TOPIC_ALIAS_INVALID,
            Violation::ReceiveMaximum => code::RECEIVE_MAXIMUM_EXCEEDED,
            Violation::PayloadFormat => code::PAYLOAD_FORMAT_INVALID,
            Violation::PublishRefused(_) => code::UNSPECIFIED,
            Violation::QueueFull(_) => code::QUOTA_EXCEEDED,
        }
    }
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The protocol level is not one Diglot speaks.
    #[error("unsupported protocol level")]
    UnsupportedVersion,
    /// The client identifier is empty where that is not allowed, or too long.
    #[error("client identifier rejected")]
    IdentifierRejected,
    /// MQTT 5 enhanced authentication with a method other than `JWT` [MQTT-4.12.0-1].
    #[error("unsupported authentication method")]
    BadAuthMethod,
    /// The driver refused the login.
    #[error("{}", login_text(.0))]
    Login(LoginRefusal),
    /// The will topic is not a valid topic name.
    #[error("invalid will topic: {0}")]
    WillTopic(TopicError),
    /// A will whose payload is not the UTF-8 it claims to be (§3.1.3.2.3).
    #[error("will payload is not valid UTF-8")]
    WillPayloadFormat,
    /// Some other breach of the CONNECT rules; the text says which.
    #[error("{0}")]
    Protocol(&'static str),
}

impl Refusal {
    /// The CONNACK return code (3.x) or reason code (5), or `None` where 3.x requires closing
    /// the connection without a CONNACK.
    pub(crate) fn connack_code(&self, version: Version) -> Option<u8> {
        match (self, version.is_v5()) {
            (Refusal::UnsupportedVersion, false) => Some(0x01),
            (Refusal::UnsupportedVersion, true) => Some(code::UNSUPPORTED_VERSION),
            (Refusal::IdentifierRejected, false) => Some(0x02),
            (Refusal::IdentifierRejected, true) => Some(code::CLIENT_ID_NOT_VALID),
            (Refusal::BadAuthMethod, true) => Some(code::BAD_AUTH_METHOD),
            // §3.2.2.3 (3.x return codes 3, 4, 5) and §3.2.2.2 (MQTT 5 reason codes).
            (Refusal::Login(LoginRefusal::Unavailable), false) => Some(0x03),
            (Refusal::Login(LoginRefusal::BadCredentials), false) => Some(0x04),
            (Refusal::Login(LoginRefusal::NotAuthorized), false) => Some(0x05),
            (Refusal::Login(LoginRefusal::BadCredentials), true) => Some(code::BAD_CREDENTIALS),
            (Refusal::Login(LoginRefusal::NotAuthorized), true) => Some(code::NOT_AUTHORIZED),
            (Refusal::Login(LoginRefusal::Unavailable), true) => Some(code::SERVER_UNAVAILABLE),
            (Refusal::WillTopic(_), true) => Some(code::TOPIC_NAME_INVALID),
            (Refusal::WillPayloadFormat, true) => Some(code::PAYLOAD_FORMAT_INVALID),
            (Refusal::Protocol(_), true) => Some(code::PROTOCOL_ERROR),
            (_, false) => None,
        }
    }

    /// The reason the connection ends with: a refusal the client was told about with a
    /// CONNACK, or a protocol error where it was not.
    pub(crate) fn close_reason(&self, version: Version) -> CloseReason {
        match self.connack_code(version) {
            Some(_) => CloseReason::ConnectRefused(self.to_string()),
            None => CloseReason::ProtocolError(self.to_string()),
        }
    }
}

/// The text a refused login is told (and logged) with; it never says whether the user exists.
fn login_text(r: &LoginRefusal) -> &'static str {
    match r {
        LoginRefusal::BadCredentials => "bad user name or password",
        LoginRefusal::NotAuthorized => "not authorized",
        LoginRefusal::Unavailable => "authentication unavailable",
    }
}

/// Why one filter of a SUBSCRIBE was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubFailure {
    /// Not a valid topic filter (or `$share/` or `$queue/` subscription).
    InvalidFilter,
    /// Over `limits.max_subscriptions`.
    Quota,
    /// The connection's permissions do not allow the filter, or it is a private destination
    /// of another session (STOMP `/temp-queue` replies under `$temp/`).
    NotAuthorized,
}

impl SubFailure {
    /// The SUBACK code: 0x80 in 3.x [MQTT-3.9.3-2], a specific reason code in 5.
    pub(crate) fn suback_code(self, version: Version) -> u8 {
        if !version.is_v5() {
            return 0x80;
        }
        match self {
            SubFailure::InvalidFilter => code::TOPIC_FILTER_INVALID,
            SubFailure::Quota => code::QUOTA_EXCEEDED,
            SubFailure::NotAuthorized => code::NOT_AUTHORIZED,
        }
    }

    /// The MQTT 5 Reason String.
    pub(crate) fn text(self) -> &'static str {
        match self {
            SubFailure::InvalidFilter => "invalid topic filter",
            SubFailure::Quota => "too many subscriptions",
            SubFailure::NotAuthorized => "not authorized",
        }
    }
}

/// The MQTT 5 PUBACK/PUBREC reason code for a publish the connection's permissions do not
/// allow (§3.4.2.1, §3.5.2.1). MQTT 3.x has none: the publish is acknowledged and dropped.
pub(crate) const PUBLISH_DENIED_CODE: u8 = code::NOT_AUTHORIZED;

/// The MQTT 5 PUBACK/PUBREC reason code for a publish the broker did not take.
pub(crate) fn publish_error_code(e: &PublishError) -> u8 {
    match e {
        // The ACL is checked by the session before routing (`PUBLISH_DENIED_CODE`, 0x87);
        // what the broker refuses after that has no finer code.
        PublishError::Refused(_) | PublishError::Store(_) => code::UNSPECIFIED,
        PublishError::QueueFull(_) => code::QUOTA_EXCEEDED,
    }
}

/// The violation that ends an MQTT 3.x connection whose publish the broker did not take:
/// 3.x has no negative acknowledgement, so the only way to tell the publisher is to close
/// [MQTT-3.3.5-2].
pub(crate) fn publish_error_violation(e: PublishError) -> Violation {
    match e {
        PublishError::QueueFull(_) => Violation::QueueFull(e.to_string()),
        PublishError::Refused(_) | PublishError::Store(_) => Violation::PublishRefused(e.to_string()),
    }
}

/// The MQTT 5 DISCONNECT reason code the server sends when it closes the connection for
/// `reason`, or `None` when it sends no DISCONNECT: the client left, the socket failed, or
/// the CONNECT was refused (its CONNACK already said why).
pub(crate) fn server_disconnect_code(reason: &CloseReason) -> Option<u8> {
    match reason {
        CloseReason::ServerShutdown => Some(code::SERVER_SHUTTING_DOWN),
        CloseReason::SessionTakenOver => Some(code::SESSION_TAKEN_OVER),
        CloseReason::KeepAliveTimeout => Some(code::KEEP_ALIVE_TIMEOUT),
        CloseReason::SlowConsumer => Some(code::QUOTA_EXCEEDED),
        CloseReason::LimitExceeded(_) => Some(code::PACKET_TOO_LARGE),
        CloseReason::ProtocolError(_) => Some(code::PROTOCOL_ERROR),
        CloseReason::AuthExpired | CloseReason::NotAuthorized(_) => Some(code::NOT_AUTHORIZED),
        CloseReason::Kicked => Some(code::ADMINISTRATIVE_ACTION),
        CloseReason::ClientDisconnect
        | CloseReason::PeerClosed
        | CloseReason::HandshakeTimeout
        | CloseReason::ConnectRefused(_)
        | CloseReason::Io(_) => None,
    }
}

/// The Reason String of the MQTT 5 DISCONNECT the server sends when it closes for `reason`.
pub(crate) fn server_disconnect_text(reason: &CloseReason) -> String {
    match reason {
        CloseReason::AuthExpired => "credentials expired".to_string(),
        CloseReason::Kicked => "closed by an administrator".to_string(),
        _ => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connack_codes_per_version() {
        assert_eq!(Refusal::UnsupportedVersion.connack_code(Version::V311), Some(0x01));
        assert_eq!(Refusal::IdentifierRejected.connack_code(Version::V31), Some(0x02));
        assert_eq!(Refusal::IdentifierRejected.connack_code(Version::V5), Some(0x85));
        assert_eq!(Refusal::WillTopic(TopicError::Empty).connack_code(Version::V311), None);
        assert_eq!(Refusal::WillTopic(TopicError::Empty).connack_code(Version::V5), Some(0x90));
        assert!(matches!(Refusal::Protocol("x").close_reason(Version::V311), CloseReason::ProtocolError(_)));
        assert!(matches!(Refusal::IdentifierRejected.close_reason(Version::V5), CloseReason::ConnectRefused(_)));
    }

    #[test]
    fn server_close_codes() {
        assert_eq!(server_disconnect_code(&CloseReason::ServerShutdown), Some(0x8B));
        assert_eq!(server_disconnect_code(&CloseReason::SessionTakenOver), Some(0x8E));
        assert_eq!(server_disconnect_code(&CloseReason::KeepAliveTimeout), Some(0x8D));
        assert_eq!(server_disconnect_code(&CloseReason::SlowConsumer), Some(0x97));
        assert_eq!(server_disconnect_code(&CloseReason::LimitExceeded(String::new())), Some(0x95));
        assert_eq!(server_disconnect_code(&CloseReason::ProtocolError(String::new())), Some(0x82));
        assert_eq!(server_disconnect_code(&CloseReason::ConnectRefused(String::new())), None);
        assert_eq!(server_disconnect_code(&CloseReason::ClientDisconnect), None);
        assert_eq!(server_disconnect_code(&CloseReason::AuthExpired), Some(0x87));
        assert_eq!(server_disconnect_code(&CloseReason::NotAuthorized(String::new())), Some(0x87));
        assert_eq!(server_disconnect_text(&CloseReason::AuthExpired), "credentials expired");
        assert_eq!(server_disconnect_code(&CloseReason::Kicked), Some(0x98));
    }

    #[test]
    fn login_refusal_codes() {
        let cases = [
            (LoginRefusal::BadCredentials, 0x04, 0x86),
            (LoginRefusal::NotAuthorized, 0x05, 0x87),
            (LoginRefusal::Unavailable, 0x03, 0x88),
        ];
        for (r, v3, v5) in cases {
            assert_eq!(Refusal::Login(r).connack_code(Version::V31), Some(v3));
            assert_eq!(Refusal::Login(r).connack_code(Version::V311), Some(v3));
            assert_eq!(Refusal::Login(r).connack_code(Version::V5), Some(v5));
            assert!(matches!(Refusal::Login(r).close_reason(Version::V311), CloseReason::ConnectRefused(_)));
        }
    }

    #[test]
    fn publish_errors() {
        let full = PublishError::QueueFull("queue/orders".into());
        assert_eq!(publish_error_code(&full), 0x97);
        assert_eq!(publish_error_code(&PublishError::Store("disk".into())), 0x80);
        let v = publish_error_violation(full);
        assert!(matches!(v.close_reason(), CloseReason::LimitExceeded(t) if t.contains("queue/orders")));
        let v = publish_error_violation(PublishError::Store("disk".into()));
        assert!(matches!(v.close_reason(), CloseReason::ProtocolError(t) if t.contains("store error: disk")));
    }

    #[test]
    fn suback_codes() {
        assert_eq!(SubFailure::Quota.suback_code(Version::V311), 0x80);
        assert_eq!(SubFailure::InvalidFilter.suback_code(Version::V5), 0x8F);
        assert_eq!(SubFailure::Quota.suback_code(Version::V5), 0x97);
        assert_eq!(SubFailure::NotAuthorized.suback_code(Version::V5), 0x87);
        assert_eq!(SubFailure::NotAuthorized.suback_code(Version::V311), 0x80);
    }
}
