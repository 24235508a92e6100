//! Diglot's network side: listeners (WebSocket, raw TCP), the subprotocol negotiator, the
//! connection driver and the HTTP endpoints on the WebSocket port.
//!
//! It ties the sans-IO protocol adapters to sockets; it holds no protocol logic of its own.

mod api;
mod auth;
mod cluster;
mod conns;
mod driver;
mod durable;
mod echo;
mod extensions;
mod files;
mod handshake;
mod http;
mod link;
mod metrics;
pub mod negotiate;
pub mod origin;
mod registry;
mod server;
mod sys;
pub mod tls;

pub use api::HttpSettings;
pub use negotiate::Proto;
pub use server::{
    Bound, Compression, ListenerKind, ListenerSpec, ReloadHandle, Reloader, Server, Spec, StartError, Stopped, WsPaths,
    WsRoutes,
};
