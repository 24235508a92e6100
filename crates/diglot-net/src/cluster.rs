//! The node's side of a cluster: the small hooks the driver and the server call (each a
//! no-op without `[cluster]`), the [`Node`] the bridge calls back, and `GET /api/v1/cluster`.
//!
//! A message from another node is routed here to local subscribers only: it is never handed
//! to the bridge again (so nothing loops), and QoS ≥ 1 messages that match durable queues
//! (persistent sessions, `/queue` bindings, durable subscriptions) are stored through the same
//! path as local ones before the next remote message is taken.

use std::sync::{Arc, Weak};

use diglot_core::cluster::{BoxFuture, Node};
use diglot_core::{Filter, Message};
use serde_json::{json, Value};

use crate::server::Shared;

/// Starts the bridge, if any, once the node can route.
pub(crate) fn start(shared: &Arc<Shared>, port: u16) {
    let Some(bridge) = &shared.cluster else { return };
    let hook = bridge.clone();
    shared.router.set_interest_hook(Arc::new(move |filter: &Filter, added| hook.interest(filter, added)));
    bridge.start(Arc::new(LocalNode(Arc::downgrade(shared))), port);
}

/// Unregisters the node (SIGTERM, shutdown).
pub(crate) async fn stop(shared: &Shared) {
    if let Some(bridge) = &shared.cluster {
        bridge.stop().await;
    }
}

/// A message published on this node was routed locally: send it to the nodes that want it.
#[inline]
pub(crate) fn forward(shared: &Shared, msg: &Arc<Message>) {
    if let Some(bridge) = &shared.cluster {
        bridge.forward(msg);
    }
}

/// A local connection claimed `client_id`.
#[inline]
pub(crate) fn claimed(shared: &Shared, client_id: &str) {
    if let Some(bridge) = &shared.cluster {
        bridge.claim(client_id);
    }
}

/// A local connection released `client_id`.
#[inline]
pub(crate) fn released(shared: &Shared, client_id: &str) {
    if let Some(bridge) = &shared.cluster {
        if !shared.registry.is_held(client_id) {
            bridge.release(client_id);
        }
    }
}

/// The link's state for `/readyz`: `"off"`, `"up"` or `"down"`. A node whose link is down
/// still serves its local clients, so it stays ready.
pub(crate) fn link(shared: &Shared) -> &'static str {
    match &shared.cluster {
        None => "off",
        Some(b) if b.link_up() => "up",
        Some(_) => "down",
    }
}

/// `GET /api/v1/cluster`: this node, the link, the nodes with their last heartbeat.
pub(crate) fn view(shared: &Shared) -> Value {
    match &shared.cluster {
        None => json!({ "enabled": false, "nodes": [] }),
        Some(b) => {
            let mut v = b.view();
            if let Some(o) = v.as_object_mut() {
                o.insert("enabled".into(), Value::Bool(true));
            }
            v
        }
    }
}

/// The local broker as the bridge sees it; weak, so that the bridge's tasks do not keep a
/// stopped server alive.
struct LocalNode(Weak<Shared>);

impl Node for LocalNode {
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else { return };
            deliver(&shared, msg).await;
        })
    }

    fn retain(&self, mut msg: Message) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else { return };
            let retained = shared.router.retained();
            let current = Filter::new(msg.topic.as_str()).ok().and_then(|f| retained.matching(&f).pop());
            let same = match &current {
                Some(c) => c.payload == msg.payload && c.qos == msg.qos && c.props == msg.props,
                None => msg.payload.is_empty(),
            };
            if same {
                return;
            }
            msg.id = shared.router.next_msg_id();
            let msg = Arc::new(msg);
            let change = retained.update(&msg);
            if let Err(e) = shared.durable.save_retained(&msg, change).await {
                tracing::error!(topic = %msg.topic, error = %e, "cannot store a cluster retained message");
            }
        })
    }

    fn taken_over(&self, client_id: &str) {
        if let Some(shared) = self.0.upgrade() {
            shared.registry.kick(client_id);
        }
    }

    fn filters(&self) -> Vec<Filter> {
        self.0.upgrade().map(|s| s.router.filters()).unwrap_or_default()
    }

    fn client_ids(&self) -> Vec<String> {
        self.0.upgrade().map(|s| s.registry.held()).unwrap_or_default()
    }
}

/// Routes a remote message locally, as `driver::route` does a local one but without
/// forwarding it, and waits for the durable queues it matched.
async fn deliver(shared: &Arc<Shared>, msg: Message) {
    let (msg, report) = shared.router.publish(msg);
    if msg.retain {
        let change = shared.router.retained().update(&msg);
        if let Err(e) = shared.durable.save_retained(&msg, change).await {
            tracing::error!(topic = %msg.topic, error = %e, "cannot store a cluster retained message");
        }
    }
    if report.queues.is_empty() {
        return;
    }
    let stored = match shared.durable.submit(&msg, &report.queues).await {
        Ok(Some(append)) => {
            let reply = append.write.await;
            shared.durable.complete(&msg, append.queues, reply).await
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        tracing::warn!(topic = %msg.topic, error = %e, "a message from another node was not stored");
    }
}
