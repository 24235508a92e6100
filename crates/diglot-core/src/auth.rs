//! Authentication and authorization as the adapters see them.
//!
//! The adapters never verify a password or a token themselves: at CONNECT they push
//! [`Action::Login`](crate::Action::Login) with what the client presented, and the driver
//! answers with [`Adapter::on_login`](crate::Adapter::on_login). A granted login carries the
//! connection's [`Permissions`], which the adapter consults for every PUBLISH/SEND and every
//! SUBSCRIBE (and for the MQTT will), and answers a refusal with the protocol's error:
//! SUBACK 0x80/0x87, PUBACK/PUBREC 0x87 (MQTT 5), a dropped and counted publish (MQTT 3.x),
//! a STOMP ERROR.
//!
//! The same action re-authenticates an MQTT 5 connection (`reauth: true`, from an AUTH packet
//! with reason 0x19): the driver answers with `on_login` again, and a grant replaces the
//! permissions and the expiry.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::topic::{Filter, Topic};

/// The MQTT 5 Authentication Method under which Authentication Data is a JWT, at CONNECT
/// and in re-authentication (AUTH 0x19).
pub const JWT_AUTH_METHOD: &str = "JWT";

/// What a client presented at CONNECT (or in an MQTT 5 AUTH packet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// MQTT User Name / STOMP `login`.
    pub username: Option<String>,
    /// MQTT Password / STOMP `passcode`.
    pub password: Option<Bytes>,
    /// MQTT 5 enhanced authentication: Authentication Data under [`JWT_AUTH_METHOD`], a token.
    /// When set, it is the credential and `username`/`password` are not checked.
    pub token: Option<Bytes>,
}

/// What the adapter asks the driver to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The client id in force (assigned or the client's; empty for a STOMP client without one),
    /// for ACL `%c` substitution.
    pub client_id: String,
    /// What the client presented.
    pub credentials: Credentials,
    /// An MQTT 5 re-authentication of a connected client rather than a CONNECT.
    pub reauth: bool,
}

/// May this connection publish to / subscribe to that? Answered from the connection's identity
/// and the broker's ACL rules; implementations count their refusals.
pub trait Permissions: Send + Sync + fmt::Debug {
    /// Whether the connection may publish to `topic`.
    fn may_publish(&self, topic: &Topic) -> bool;
    /// Whether the connection may subscribe to `filter` (for an MQTT shared subscription, its
    /// inner filter; for a queue, the queue's topic `$queue/<name>`).
    fn may_subscribe(&self, filter: &Filter) -> bool;
}

/// Permissions that allow everything (no ACL rules configured; adapters' unit tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Permissions for AllowAll {
    fn may_publish(&self, _topic: &Topic) -> bool {
        true
    }

    fn may_subscribe(&self, _filter: &Filter) -> bool {
        true
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The authenticated username; `None` for an anonymous client.
    pub username: Option<String>,
    /// What the connection may do.
    pub permissions: Arc<dyn Permissions>,
}

impl Grant {
    /// An anonymous grant that allows everything.
    pub fn allow_all() -> Grant {
        Grant { username: None, permissions: Arc::new(AllowAll) }
    }
}

/// Why a login was refused. The adapter maps it to the protocol's answer; the text the client
/// sees never says whether the username exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Unknown user, wrong password, or an invalid, expired or not-yet-valid token (MQTT 3.x
    /// CONNACK 0x04, MQTT 5 0x86; STOMP ERROR "bad credentials"). Also when the source address
    /// has failed too often.
    BadCredentials,
    /// No credentials, and this listener does not accept anonymous clients (MQTT 3.x 0x05,
    /// MQTT 5 0x87; STOMP ERROR "not authorized").
    NotAuthorized,
    /// The credentials could not be checked in time (MQTT 3.x 0x03, MQTT 5 0x88).
    Unavailable,
}

/// The driver's answer to [`Action::Login`](crate::Action::Login).
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// Logged in (or re-authenticated).
    Granted(Grant),
    /// Refused.
    Refused(LoginRefusal),
}
