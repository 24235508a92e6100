//! The seam between one broker node and a cluster of them.
//!
//! The network side calls a [`Bridge`] (implemented by `diglot-cluster` over Redis) with what
//! happens locally: messages published here, filters that gained their first or lost their last
//! local subscription, client ids claimed here. The bridge calls back into the node through
//! [`Node`]: messages published on other nodes, retained messages set elsewhere, client ids
//! taken over by another node.
//!
//! Share groups (`$share/<group>/<filter>`) and named queues (`$queue/<name>`, STOMP
//! `/queue/<name>`) are served once cluster-wide: each node tells the bridge its *groups* with
//! their local member (or consumer) count, the publishing node picks one node per matched
//! group ([`Bridge::assign`]), and every node serves only the groups assigned to it
//! ([`Assignment::serves_here`]).
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

/// What [`Bridge::forward`] returns for a QoS ≥ 1 message whose groups went to other nodes:
/// it resolves once every such node confirmed that it stored what the message matched there,
/// or the wait ended (`handoff_timeout_ms`, the link went down, too many waits): to the keys
/// of the groups that no node confirmed, which the publishing node then serves itself before
/// it acknowledges.
pub type Confirmation = BoxFuture<'static, Vec<String>>;

/// The cluster name of the named queue `name` (STOMP `/queue/<name>`): its topic,
/// `$queue/<name>`. A share group's is its [`crate::ShareGroup::key`].
pub fn queue_group(name: &str) -> String {
    crate::adapter::queue_topic(name)
}

/// One matched group and the node that serves it for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// `$share/<group>/<filter>` or `$queue/<name>`.
    pub key: String,
    /// The node id that serves it.
    pub node: String,
    /// Whether that node is this one.
    pub here: bool,
}

/// For one message, the node that serves each share group and named queue it matched
/// cluster-wide, as the publishing node chose them (carried in the envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// One entry per group, sorted by key.
    pub groups: Vec<Assigned>,
}

impl Assignment {
    /// On the publishing node: serve `key` here unless it was assigned to another node (a
    /// group the bridge did not know yet is served here).
    pub fn serves_here(&self, key: &str) -> bool {
        self.groups.iter().find(|g| g.key == key).is_none_or(|g| g.here)
    }

    /// On a receiving node: serve `key` only if it was assigned to this node.
    pub fn assigned_here(&self, key: &str) -> bool {
        self.groups.iter().any(|g| g.key == key && g.here)
    }

    /// Whether some group went to another node (the message must cross).
    pub fn any_elsewhere(&self) -> bool {
        self.groups.iter().any(|g| !g.here)
    }

    /// Whether some group was assigned to this node (a receiving node confirms it).
    pub fn any_here(&self) -> bool {
        self.groups.iter().any(|g| g.here)
    }
}

/// What the local node tells the cluster.
pub trait Bridge: Send + Sync + std::fmt::Debug + 'static {
    /// Starts the bridge's tasks; `node` is how it reaches the local broker, `port` the port
    /// of its first listener (for a default node id). Called once, after the node is ready to
    /// route.
    fn start(&self, node: Arc<dyn Node>, port: u16);

    /// Picks, for a message about to be published on this node, the node that serves each
    /// share group and named queue it matches anywhere in the cluster (weighted by their
    /// members). `None` when it matches none (the common case; no allocation). While the link
    /// is down only this node's groups count.
    fn assign(&self, msg: &Message) -> Option<Assignment>;

    /// A message was published on this node by a client or the HTTP API and routed locally
    /// (with `assignment`, from [`Bridge::assign`]). The bridge sends it on if another node
    /// wants it or serves one of its groups; it must not wait. For a QoS ≥ 1 message with a
    /// group assigned to another node it returns the [`Confirmation`] that the publisher's
    /// acknowledgement also waits for; otherwise `None` (no allocation).
    fn forward(&self, msg: &Arc<Message>, assignment: Option<&Assignment>) -> Option<Confirmation>;

    /// `filter` got its first local plain subscription (`true`) or lost its last one (`false`).
    fn interest(&self, filter: &Filter, added: bool);

    /// A local share group or named queue (by key, see [`queue_group`]) now has `members`
    /// members or consumers here (0: none).
    fn group(&self, key: &str, members: usize);

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
    /// again), and to the local groups the publisher assigned here; with no assignment (an
    /// older publishing node), to every local group. QoS ≥ 1 messages that match durable
    /// queues are stored before this resolves: to `false` if the store refused or failed
    /// (the publishing node then gets no confirmation and serves the groups itself).
    fn deliver(&self, msg: Message, assignment: Option<Assignment>) -> BoxFuture<'_, bool>;

    /// Puts a retained message set (or cleared, with an empty payload) on another node into
    /// the local cache and store, without delivering it.
    fn retain(&self, msg: Message) -> BoxFuture<'_, ()>;

    /// Every local retained message (to reconcile with the cluster's after an outage).
    fn retained_messages(&self) -> Vec<Arc<Message>>;

    /// Another node took `client_id` over: close the local connection that holds it.
    fn taken_over(&self, client_id: &str);

    /// Every filter with a local plain subscription, to register after (re)connecting.
    fn filters(&self) -> Vec<Filter>;

    /// Every local share group and named queue with members or consumers, with their count.
    fn groups(&self) -> Vec<(String, usize)>;

    /// Every client id held by a local connection, to register after (re)connecting.
    fn client_ids(&self) -> Vec<String>;
}
