//! The node's side of a cluster: the small hooks the driver and the server call (each a
//! no-op without `[cluster]`), the [`Node`] the bridge calls back, and `GET /api/v1/cluster`.
//!
//! A message from another node is routed here to local subscribers only: it is never handed
//! to the bridge again (so nothing loops), and QoS ≥ 1 messages that match durable queues
//! (persistent sessions, `/queue` bindings, durable subscriptions) are stored through the same
//! path as local ones before the next remote message is taken.
//!
//! Share groups and named queues are served once cluster-wide: the publishing node asks the
//! bridge which node serves each group the message matches ([`Bridge::assign`]), routes
//! locally without the groups assigned elsewhere, and the receiving nodes serve only the
//! groups assigned to them. A named queue assigned elsewhere is not stored here; one with no
//! consumer anywhere stays in this node's queue.
//!
//! Acknowledged means durable across nodes too: a QoS ≥ 1 message handed to other nodes is
//! acknowledged once they confirmed they stored it ([`Handoff`]); a group that no node
//! confirmed within `handoff_timeout_ms` (or when the link is down) is served here: a named
//! queue gets the message in this node's copy, a share group a local member. That may
//! duplicate a message the other node did store (at least once in faults).

use std::sync::{Arc, Weak};

use diglot_core::cluster::{queue_group, Assignment, BoxFuture, Confirmation, Node};
use diglot_core::{Filter, Message, PublishError, PublishReport, Qos};
use serde_json::{json, Value};

use crate::server::Shared;

/// Starts the bridge, if any, once the node can route.
pub(crate) fn start(shared: &Arc<Shared>, port: u16) {
    let Some(bridge) = &shared.cluster else { return };
    let hook = bridge.clone();
    shared.router.set_interest_hook(Arc::new(move |filter: &Filter, added| hook.interest(filter, added)));
    let hook = bridge.clone();
    shared.router.set_group_hook(Arc::new(move |key: &str, members| hook.group(key, members)));
    let hook = bridge.clone();
    shared.durable.set_consumers_hook(Box::new(move |name: &str, n| hook.group(&queue_group(name), n)));
    bridge.start(Arc::new(LocalNode(Arc::downgrade(shared))), port);
}

/// Unregisters the node (SIGTERM, shutdown).
pub(crate) async fn stop(shared: &Shared) {
    if let Some(bridge) = &shared.cluster {
        bridge.stop().await;
    }
}

/// What a publisher's acknowledgement waits for besides the local store: the nodes that a
/// QoS ≥ 1 message's groups were handed to, and then this node serving the groups they did
/// not confirm.
pub(crate) type Handoff = BoxFuture<'static, Result<(), PublishError>>;

/// Routes a message published on this node: locally, without the share groups and named
/// queue that the cluster assigned to other nodes, and then to the nodes that want it.
/// Without a cluster it is `Router::publish` alone (no hand-off).
#[inline]
pub(crate) fn publish(shared: &Arc<Shared>, msg: Message) -> (Arc<Message>, PublishReport, Option<Handoff>) {
    let Some(bridge) = &shared.cluster else {
        let (msg, report) = shared.router.publish(msg);
        return (msg, report, None);
    };
    let Some(assignment) = bridge.assign(&msg) else {
        let (msg, report) = shared.router.publish(msg);
        let _ = bridge.forward(&msg, None);
        return (msg, report, None);
    };
    let queue_elsewhere = queue_of(&msg).filter(|name| !assignment.serves_here(&queue_group(name)));
    let excluded = queue_elsewhere.and_then(|name| shared.durable.named_id(name));
    let (msg, mut report) = shared.router.publish_serving(msg, &|key| assignment.serves_here(key));
    if let Some(id) = excluded {
        report.queues.retain(|(q, _)| *q != id);
    }
    let handoff = bridge.forward(&msg, Some(&assignment)).map(|wait| handoff(shared.clone(), msg.clone(), wait));
    (msg, report, handoff)
}

/// Waits for the confirmations, then serves here what they did not confirm.
fn handoff(shared: Arc<Shared>, msg: Arc<Message>, wait: Confirmation) -> Handoff {
    Box::pin(async move {
        let unconfirmed = wait.await;
        if unconfirmed.is_empty() {
            return Ok(());
        }
        serve_here(&shared, &msg, &unconfirmed).await
    })
}

/// Serves the groups `keys` of a message published here whose nodes did not confirm it: a
/// named queue stores it in this node's copy, a share group goes to a local member (stored
/// if that member is a durable queue). Resolves once that is durable.
async fn serve_here(shared: &Arc<Shared>, msg: &Message, keys: &[String]) -> Result<(), PublishError> {
    let mut fresh = msg.clone();
    fresh.id = 0;
    let (msg, mut queues) = if keys.iter().any(|k| k.starts_with("$share/")) {
        let (msg, report) = shared.router.publish_groups(fresh, &|key| keys.iter().any(|k| k == key));
        (msg, report.queues)
    } else {
        fresh.id = shared.router.next_msg_id();
        (Arc::new(fresh), Vec::new())
    };
    if let Some(name) = queue_of(&msg).filter(|name| keys.contains(&queue_group(name))) {
        shared.durable.ensure_named(&shared.router, name).await.map_err(|e| PublishError::Store(e.to_string()))?;
        if let Some(id) = shared.durable.named_id(name) {
            queues.push((id, msg.qos.max(Qos::AtLeastOnce)));
        }
    }
    if queues.is_empty() {
        return Ok(());
    }
    match shared.durable.submit(&msg, &queues).await? {
        Some(append) => {
            let reply = append.write.await;
            shared.durable.complete(&msg, append.queues, reply).await
        }
        None => Ok(()),
    }
}

/// The queue name of a `$queue/<name>` topic.
fn queue_of(msg: &Message) -> Option<&str> {
    msg.topic.as_str().strip_prefix("$queue/")
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
    fn deliver(&self, msg: Message, assignment: Option<Assignment>) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else { return false };
            deliver(&shared, msg, assignment).await
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

    fn retained_messages(&self) -> Vec<Arc<Message>> {
        let (Some(s), Ok(all)) = (self.0.upgrade(), Filter::new("#")) else { return Vec::new() };
        s.router.retained().matching(&all)
    }

    fn taken_over(&self, client_id: &str) {
        if let Some(shared) = self.0.upgrade() {
            shared.registry.kick(client_id);
        }
    }

    fn filters(&self) -> Vec<Filter> {
        self.0.upgrade().map(|s| s.router.filters()).unwrap_or_default()
    }

    fn groups(&self) -> Vec<(String, usize)> {
        let Some(s) = self.0.upgrade() else { return Vec::new() };
        let mut groups = s.router.groups();
        groups.extend(s.durable.named_consumers().into_iter().map(|(name, n)| (queue_group(&name), n)));
        groups
    }

    fn client_ids(&self) -> Vec<String> {
        self.0.upgrade().map(|s| s.registry.held()).unwrap_or_default()
    }
}

/// Routes a remote message locally, as `driver::route` does a local one but without
/// forwarding it, and waits for the durable queues it matched. Only the groups assigned here
/// are served; a named queue assigned here is created if needed, one assigned elsewhere (or
/// with no assignment: the older node kept it) is not stored here. `false`: what it matched
/// could not be stored.
async fn deliver(shared: &Arc<Shared>, msg: Message, assignment: Option<Assignment>) -> bool {
    let queue = queue_of(&msg).map(str::to_string);
    let queue_here = match (&queue, &assignment) {
        (Some(name), Some(a)) => a.assigned_here(&queue_group(name)),
        _ => false,
    };
    if let (Some(name), true) = (&queue, queue_here) {
        if let Err(e) = shared.durable.ensure_named(&shared.router, name).await {
            tracing::warn!(queue = %name, error = %e, "a message from another node was not stored");
            return false;
        }
    }
    let excluded = queue.as_deref().filter(|_| !queue_here).and_then(|name| shared.durable.named_id(name));
    let (msg, mut report) = match &assignment {
        Some(a) => shared.router.publish_serving(msg, &|key| a.assigned_here(key)),
        None => shared.router.publish(msg),
    };
    if let Some(id) = excluded {
        report.queues.retain(|(q, _)| *q != id);
    }
    if msg.retain {
        let change = shared.router.retained().update(&msg);
        if let Err(e) = shared.durable.save_retained(&msg, change).await {
            tracing::error!(topic = %msg.topic, error = %e, "cannot store a cluster retained message");
        }
    }
    if report.queues.is_empty() {
        return true;
    }
    let stored = match shared.durable.submit(&msg, &report.queues).await {
        Ok(Some(append)) => {
            let reply = append.write.await;
            shared.durable.complete(&msg, append.queues, reply).await
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = &stored {
        tracing::warn!(topic = %msg.topic, error = %e, "a message from another node was not stored");
    }
    stored.is_ok()
}
