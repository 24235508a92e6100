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
//! This crate opens no sockets, runs no tasks and touches no store.

mod codec;
mod config;
mod inflight;
mod keepalive;
mod props;
mod reason;
mod session;

pub use config::Config;
pub use session::Session;
