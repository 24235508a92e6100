//! Who a connection is, once authenticated.
//!
//! An anonymous connection has no `Identity`; APIs take `Option<&Identity>`.

use std::time::{Duration, SystemTime};

/// An authenticated principal: a static user or the subject of a JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The username (static user name, or the JWT's username claim).
    pub username: String,
    /// Role names, for ACL rules with `role = "..."`.
    pub roles: Vec<String>,
    /// When the credentials stop being valid: the JWT's `exp`; `None` for static users.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// Whether the identity holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the credentials have expired at `now` (exactly at `exp` counts as expired).
    /// The leeway applies only when a token is accepted, not here: a connection is closed at
    /// `exp` itself.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| now >= exp)
    }

    /// How long until expiry at `now` (zero once expired); `None` if it never expires. The
    /// connection task sleeps this long, then closes the connection (MQTT 5 DISCONNECT 0x87,
    /// STOMP ERROR) unless MQTT 5 re-authentication replaced the identity meanwhile.
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at.map(|exp| exp.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut id = Identity { username: "a".into(), roles: vec!["r".into()], expires_at: None };
        assert!(!id.is_expired(t0));
        assert_eq!(id.expires_in(t0), None);
        assert!(id.has_role("r"));
        assert!(!id.has_role("R"));
        id.expires_at = Some(t0 + Duration::from_secs(5));
        assert!(!id.is_expired(t0));
        assert_eq!(id.expires_in(t0), Some(Duration::from_secs(5)));
        assert!(id.is_expired(t0 + Duration::from_secs(5)));
        assert_eq!(id.expires_in(t0 + Duration::from_secs(9)), Some(Duration::ZERO));
    }
}
