//! Diglot's STOMP 1.0/1.1/1.2 support: the wire codec, the mapping from STOMP destinations to
//! the canonical topic namespace, and the sans-IO [`Session`] adapter that the connection
//! driver runs for every STOMP connection (over WebSocket or raw TCP alike).
//!
//! This crate does no I/O and knows no socket; it depends only on `diglot-core`.

pub mod codec;
pub mod destination;
pub mod frame;
pub mod session;
pub mod version;

#[cfg(test)]
mod test_rng;

pub use codec::{CodecError, Decoded, Decoder};
pub use destination::Separator;
pub use frame::{Command, Frame};
pub use session::{Config, Session};
pub use version::Version;
