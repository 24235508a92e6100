//! STOMP protocol versions and their negotiation (STOMP 1.2 "Protocol Negotiation").
//!
//! The client lists what it speaks in `accept-version` (`1.0,1.1,1.2`); a CONNECT without that
//! header speaks 1.0. The server picks the highest version both sides support. Over WebSocket
//! the negotiated subprotocol (`v10.stomp`, `v11.stomp`, `v12.stomp`) caps the choice, because
//! the client has already promised to speak at most that version.
//!
//! This module only chooses a version; what differs between versions lives where it matters
//! (escaping in the codec, ACK headers and heart-beats in the session).

/// A STOMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: no header escaping, no heart-beats, no NACK.
    V1_0,
    /// STOMP 1.1: escaping of `\n`, `\c`, `\\`; heart-beats; NACK.
    V1_1,
    /// STOMP 1.2: adds `\r`, CRLF line endings and ACK by `id`.
    V1_2,
}

impl Version {
    /// Every version this server speaks, lowest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The value for an ERROR frame's `version` header listing what the server supports.
    pub const SUPPORTED: &'static str = "1.0,1.1,1.2";

    /// The version as written in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// The protocol label for logs (`stomp/1.2`).
    pub fn label(self) -> &'static str {
        match self {
            Version::V1_0 => "stomp/1.0",
            Version::V1_1 => "stomp/1.1",
            Version::V1_2 => "stomp/1.2",
        }
    }

    /// Parses `1.0`, `1.1` or `1.2`.
    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The highest version a WebSocket subprotocol allows (`v12.stomp` → 1.2). Other
    /// subprotocols (or none) set no cap.
    pub fn from_subprotocol(subprotocol: &str) -> Option<Version> {
        match subprotocol {
            "v10.stomp" => Some(Version::V1_0),
            "v11.stomp" => Some(Version::V1_1),
            "v12.stomp" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Picks the highest version in `accept_version` (a comma-separated list; `None` means the
    /// header was absent, which is 1.0) that does not exceed `cap`. Entries this server does
    /// not know are ignored; `None` means there is no version in common.
    pub fn negotiate(accept_version: Option<&str>, cap: Option<Version>) -> Option<Version> {
        let cap = cap.unwrap_or(Version::V1_2);
        let Some(list) = accept_version else {
            return Some(Version::V1_0);
        };
        list.split(',').filter_map(|v| Version::parse(v.trim())).filter(|v| *v <= cap).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_matrix() {
        use Version::*;
        let cases: [(Option<&str>, Option<Version>, Option<Version>); 11] = [
            (None, None, Some(V1_0)),
            (Some("1.0"), None, Some(V1_0)),
            (Some("1.1"), None, Some(V1_1)),
            (Some("1.2"), None, Some(V1_2)),
            (Some("1.0,1.2"), None, Some(V1_2)),
            (Some("1.2,1.0"), None, Some(V1_2)),
            (Some("1.0, 1.1"), None, Some(V1_1)),
            (Some("1.0,1.1,1.2"), Some(V1_1), Some(V1_1)),
            (Some("1.2"), Some(V1_1), None),
            (Some("2.0,3.1"), None, None),
            (Some(""), None, None),
        ];
        for (accept, cap, want) in cases {
            assert_eq!(Version::negotiate(accept, cap), want, "{accept:?} cap {cap:?}");
        }
    }

    #[test]
    fn subprotocols() {
        assert_eq!(Version::from_subprotocol("v11.stomp"), Some(Version::V1_1));
        assert_eq!(Version::from_subprotocol("mqtt"), None);
        assert_eq!(Version::V1_2.label(), "stomp/1.2");
    }
}
