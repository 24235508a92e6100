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
//! Sessions: after a valid CONNECT the session pushes `Action::ClaimClientId` and
//! `Action::OpenSession`, and writes the CONNACK (with Session Present) only when the driver
//! calls `Adapter::on_session_opened`. A persistent session (Clean Session 0, or MQTT 5
//! Session Expiry Interval > 0), and a resumed one (Session Present 1), binds its filters to
//! its durable queue (`diglot_core::session_queue`), consumes that queue as [`SESSION_SUB`],
//! and acknowledges each durable delivery with `Action::Ack` when the client's PUBACK
//! arrives. A durable delivery always goes out at QoS ≥ 1. Redeliveries go out with DUP=1, the packet id derived from their queue position, and (MQTT 5) the user
//! property `redelivery-count`. A publish refused because a durable queue is full gets
//! PUBACK/PUBREC 0x97 in MQTT 5 and closes an MQTT 3.x connection.
//!
//! Not implemented yet: retained messages, outbound QoS 2, shared subscriptions,
//! Subscription Identifiers, topic aliases, the Will Delay Interval, the length of the
//! Session Expiry Interval (the driver and store own session lifetime), No Local in
//! persistent sessions, and enhanced authentication.
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
