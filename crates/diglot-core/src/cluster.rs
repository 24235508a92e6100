//! The seam between one broker node and a cluster of them.
//!
//! The network side calls a [`Bridge`] (implemented by `diglot-cluster` over Redis) with what
//! happens locally: messages published here, filters that gained their first or lost their last
//! local subscription, client ids claimed here. The bridge calls back into the node through
//! [`Node`]: messages published on other nodes, retained messages set elsewhere, client ids
//! taken over by another node.
//!
//! A broker without a cluster holds no bridge at all, so none of this costs it anything. This
//! module knows no Redis, no protocol and no socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::message::Message;
use crate::topic::Filter;

/// A boxed future, for the async methods of the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the local node tells the cluster.
pub trait Bridge: Send + Sync + std::fmt::Debug + 'static {
    /// Starts the bridge's tasks; `node` is how it reaches the local broker, `port` the port
    /// of its first listener (for a default node id). Called once, after the node is ready to
    /// route.
    fn start(&self, node: Arc<dyn Node>, port: u16);

    /// A message was published on this node by a client or the HTTP API and routed locally.
    /// The bridge sends it on if another node wants it; it must not wait.
    fn forward(&self, msg: &Arc<Message>);

    /// `filter` got its first local subscription (`true`) or lost its last one (`false`).
    fn interest(&self, filter: &Filter, added: bool);

    /// A client connected here with `client_id`: other nodes close their connection with it.
    fn claim(&self, client_id: &str);

    /// The connection holding `client_id` here ended.
    fn release(&self, client_id: &str);

    /// Whether the link to the other nodes is up now.
    fn link_up(&self) -> bool;

    /// Message counters by outcome (`forwarded`, `received`, `rejected`, `dropped_…`), for
    /// `/metrics`.
    fn counters(&self) -> Vec<(&'static str, u64)>;

    /// A JSON view of the cluster for `GET /api/v1/cluster`: this node, the link, the nodes.
    fn view(&self) -> serde_json::Value;

    /// Unregisters this node (a clean leave) and stops the bridge's tasks.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// What the cluster asks of the local node.
pub trait Node: Send + Sync + 'static {
    /// Routes a message published on another node to local subscribers only (never forwarded
    /// again). QoS ≥ 1 messages that match durable queues are stored before this resolves.
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()>;

    /// Puts a retained message set (or cleared, with an empty payload) on another node into
    /// the local cache and store, without delivering it.
    fn retain(&self, msg: Message) -> BoxFuture<'_, ()>;

    /// Another node took `client_id` over: close the local connection that holds it.
    fn taken_over(&self, client_id: &str);

    /// Every filter with a local subscription, to register after (re)connecting.
    fn filters(&self) -> Vec<Filter>;

    /// Every client id held by a local connection, to register after (re)connecting.
    fn client_ids(&self) -> Vec<String>;
}
