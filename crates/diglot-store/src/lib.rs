//! Diglot's durable store: durable queues with ordered, refcounted entries, client sessions,
//! retained messages, and the durability policy that decides when a write counts as done.
//!
//! - [`Store`] is the handle the broker uses; [`Store::open`] recovers an existing store and
//!   returns a [`Recovery`] summary.
//! - [`StoreConfig`] is the `[store]` section of `broker.toml`.
//! - [`engine`] is the seam to the storage engines: fjall 3 (the default) and sled 0.34.
//! - [`keys`] lists every key layout and the format version; [`codec`] encodes messages.
//!
//! What "durable" means per engine and policy is written in [`engine::FjallEngine`],
//! [`engine::SledEngine`] and [`Durability`]; `docs/durability.md` repeats it for users.
//!
//! This crate knows no protocol: sessions are opaque bytes that the protocol crates encode,
//! and the delivery, redelivery and dead-letter decisions are the caller's.

#![warn(missing_docs)]

pub mod codec;
pub mod config;
pub mod engine;
pub mod error;
pub mod keys;
mod ops;
mod recovery;
mod store;
mod types;
mod writer;

pub use codec::{CodecError, StoredMessage};
pub use config::{Durability, EngineKind, Overflow, QueueLimits, StoreConfig};
pub use error::{AppendError, StoreError};
pub use store::Store;
pub use types::{Entry, QueueId, QueueInfo, Recovery, Seq, StoreStats};
