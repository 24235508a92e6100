//! Diglot's MQTT 3.1, 3.1.1 and 5.0 adapter: sans-IO, over the maintained rmqtt-codec.
//!
//! A [`Session`] serves one connection, TCP or WebSocket alike. The connection driver hands
//! it inbound bytes, deliveries and timer ticks through [`diglot_core::Adapter`]; the session
//! writes MQTT packets (one per output frame) and returns actions for the router. All three
//! protocol levels are served on the same listener: the first CONNECT decides which.
//!
//! Layout: `codec` (framing, level detection, the v3/v5 codec wrapper), `reason` (every
//! mapping to MQTT return and reason codes), `props` (MQTT 5 properties ⇔ core `Props`),
//! `keepalive` and `inflight` (timers and the outbound window), and `session` with one child
//! module per packet family.
//!
//! Authentication: after a valid CONNECT the session pushes `Action::Login` with the User
//! Name and Password, or, for MQTT 5 enhanced authentication with the Authentication Method
//! `JWT` (the only one supported; others get CONNACK 0x8C), the Authentication Data as a
//! token. A refused login gets CONNACK 0x04/0x05/0x03 (3.x) or 0x86/0x87/0x88 (5). A client
//! that connected with `JWT` may re-authenticate with AUTH 0x19 (§4.12.1): AUTH 0x00 on
//! success, DISCONNECT 0x87 on failure. The grant's `Permissions` are checked for every
//! PUBLISH (MQTT 5: PUBACK/PUBREC 0x87; 3.x: acknowledged but not routed), every SUBSCRIBE
//! entry (SUBACK 0x80/0x87) and the will (not published if denied).
//!
//! Sessions: once the login is granted the session pushes `Action::ClaimClientId` and
//! `Action::OpenSession` (with the MQTT 5 Session Expiry Interval as `expiry_secs`), and
//! writes the CONNACK (with Session Present) only when the driver calls
//! `Adapter::on_session_opened`. A persistent session (Clean Session 0, or MQTT 5 Session
//! Expiry Interval > 0), and a resumed one (Session Present 1), binds its filters to its
//! durable queue (`diglot_core::session_queue`), consumes that queue as [`SESSION_SUB`], and
//! acknowledges each durable delivery with `Action::Ack` when its QoS flow ends (PUBACK,
//! PUBCOMP). The QoS 2 exchanges under way are handed to the driver when the connection ends
//! (`Adapter::qos2_flows`: the packet ids of the client's publishes awaiting PUBREL, and the
//! session-queue entries whose PUBREL was sent) and back to the session's next connection
//! (`Adapter::restore_qos2_flows`) [MQTT-4.3.3-10] [MQTT-4.4.0-1]. Redeliveries go out with
//! DUP=1, the packet id derived from their queue
//! position, and (MQTT 5) the user property `redelivery-count`. A publish refused because a
//! durable queue is full gets PUBACK/PUBREC 0x97 in MQTT 5 and closes an MQTT 3.x
//! connection.
//!
//! Implemented: QoS 0, 1 and 2 both ways with the Receive Maximum both ways; retained
//! messages (RETAIN in, RETAIN out for retained deliveries and Retain As Published, Retain
//! Handling); shared subscriptions `$share/<group>/<filter>`; named-queue consumers
//! `$queue/<name>`; MQTT 5 message expiry, topic aliases in both directions, Subscription
//! Identifiers, No Local, Maximum Packet Size both ways, Server Keep Alive, Assigned Client
//! Identifier, Request/Response Information, Request Problem Information and Reason
//! Strings, the Will Delay Interval and will properties (`Action::Will`), and the Session
//! Expiry Interval (`OpenSession::expiry_secs`; a new value on DISCONNECT replaces it with
//! `Action::SetSessionExpiry`, and 0 deletes the session queue).
//!
//! Not implemented: enhanced authentication methods other than `JWT`, and challenges (AUTH
//! 0x18 from the server); No Local in persistent sessions (`Action::Bind`
//! does not carry it); and persisting the PUBREL state of outbound QoS 2 (a durable QoS 2
//! delivery stays in its queue until PUBCOMP, and is redelivered as a PUBLISH instead).
//!
//! This crate opens no sockets, runs no tasks and touches no store.

mod codec;
mod config;
mod inflight;
mod keepalive;
mod props;
mod reason;
mod session;

pub use config::Config;
pub use session::{Session, SESSION_SUB};
