//! Settings of the MQTT adapter that are not shared with other protocols.
//!
//! Limits shared by every protocol (frame size, inflight window, subscriptions) live in
//! [`diglot_core::Limits`]; this module holds only what is MQTT's own.

use std::time::Duration;

/// MQTT-specific settings of a [`Session`](crate::Session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a client may take to send its CONNECT after the connection opened; a client
    /// that is slower is closed with `CloseReason::HandshakeTimeout`. Default 10 s.
    pub connect_timeout: Duration,
    /// The longest keep-alive the broker grants, in seconds; 0 (the default) means no cap.
    /// An MQTT 5 client that asks for more (or for none) is told the capped value as Server
    /// Keep Alive [MQTT-3.2.2-21]. MQTT 3.x has no way to announce a cap, so the client's own
    /// value is used there.
    pub max_keep_alive_secs: u16,
    /// The MQTT 5 Topic Alias Maximum announced in CONNACK: how many topic aliases a client
    /// may set up towards the broker (§3.2.2.3.8); 0 refuses aliases. It also caps how many
    /// aliases the broker uses towards a client. Default 16.
    pub topic_alias_max: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config { connect_timeout: Duration::from_secs(10), max_keep_alive_secs: 0, topic_alias_max: 16 }
    }
}
