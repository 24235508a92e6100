//! Per-connection limits shared by every protocol adapter and the connection driver.

/// Limits that bound what one connection may make the broker hold. Every buffer, frame,
/// header and queue has one; the values come from `[limits]` in `broker.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest inbound protocol frame (MQTT packet, STOMP frame) in bytes, headers included.
    pub max_frame_bytes: usize,
    /// Most headers in one STOMP frame.
    pub max_headers: usize,
    /// Largest STOMP header line (name, colon and value) in bytes.
    pub max_header_bytes: usize,
    /// Most subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Most deliveries waiting in one connection's outbox.
    pub outbox_max_messages: usize,
    /// Most payload bytes waiting in one connection's outbox.
    pub outbox_max_bytes: usize,
    /// Most unacknowledged QoS 1/2 deliveries in flight to one client.
    pub max_inflight: u16,
    /// Longest accepted MQTT client id or STOMP client-id, in bytes.
    pub max_client_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_headers: 64,
            max_header_bytes: 8 * 1024,
            max_subscriptions: 1024,
            outbox_max_messages: 10_000,
            outbox_max_bytes: 16 * 1024 * 1024,
            max_inflight: 64,
            max_client_id_bytes: 256,
        }
    }
}
