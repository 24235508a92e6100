//! The link to Redis: a writer task (outbound operations in order, heartbeats, registration
//! after every (re)connect, the clean leave) and a reader task (Pub/Sub pushes: messages from
//! other nodes, control notices, confirmations of the messages this node handed over).
//!
//! The connection is a lazy `ConnectionManager`: when Redis is unreachable at start or the
//! link drops, commands fail, the node keeps serving local traffic, and the manager reconnects
//! with backoff (it resubscribes by itself). The heartbeat is what notices both edges: the
//! first one that fails marks the link down, the first one that succeeds again re-registers
//! the node's interest and sessions.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use diglot_core::cluster::{Assigned, Assignment, Node};
use diglot_core::{Message, Qos};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{envelope, Inner, Out, Peer};

/// Most Pub/Sub pushes waiting for the reader.
const INBOUND_CAPACITY: usize = 16 * 1024;

/// Most outbound operations sent in one pipeline.
const BATCH: usize = 512;

/// Every this many heartbeats, every peer's filters are read again (heals a lost notice).
const FULL_REFRESH_BEATS: u64 = 5;

/// Deletes a client id's owner entry only if this node still owns it.
const RELEASE_SCRIPT: &str =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A client for `url`, speaking RESP3 (Pub/Sub pushes on the command connection).
pub(crate) fn client(url: &str) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss:") {
        // redis-rs builds its TLS config on the process's default provider: make it the one
        // crypto provider the rest of Diglot uses (a no-op if one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings))
}

/// A control notice on `<prefix>:ctl`.
#[derive(Debug, Serialize, Deserialize)]
struct Ctl {
    v: u8,
    op: String,
    node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    /// When a client id was claimed (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<u64>,
}

impl Ctl {
    fn notice(op: &str, node: &str) -> String {
        Ctl::claim(op, node, None, None)
    }

    fn claim(op: &str, node: &str, client_id: Option<&str>, at: Option<u64>) -> String {
        let ctl =
            Ctl { v: 1, op: op.to_string(), node: node.to_string(), client_id: client_id.map(str::to_string), at };
        serde_json::to_string(&ctl).unwrap_or_default()
    }
}

/// Resolves once the bridge is stopping (the watch guard is not held across an await).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Starts the writer and the reader.
pub(crate) fn spawn(
    inner: Arc<Inner>,
    node: Arc<dyn Node>,
    out_rx: mpsc::Receiver<Out>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (push_tx, push_rx) = mpsc::channel::<PushInfo>(INBOUND_CAPACITY);
    let counted = inner.clone();
    // The push sender must not block the connection: a full queue drops (and counts).
    let sender = move |info: PushInfo| -> Result<(), redis::aio::SendError> {
        if push_tx.try_send(info).is_err() {
            counted.stats.dropped_inbound.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    let config = ConnectionManagerConfig::new()
        .set_push_sender(sender)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(5));
    let conn = match ConnectionManager::new_lazy_with_config(inner.client.clone(), config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot set up the Redis connection; running in local mode");
            return Vec::new();
        }
    };
    let reader = tokio::spawn(read(inner.clone(), node.clone(), conn.clone(), push_rx));
    let writer = tokio::spawn(write(inner, node, conn, out_rx));
    vec![writer, reader]
}

/// The writer: outbound operations, heartbeats, registration, the leave.
async fn write(inner: Arc<Inner>, node: Arc<dyn Node>, mut conn: ConnectionManager, mut out_rx: mpsc::Receiver<Out>) {
    let mut stopping = inner.stopping.subscribe();
    let mut tick = tokio::time::interval(inner.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = 0u64;
    let mut subscribed = false;
    let mut warned = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = stopped(&mut stopping) => break,
            n = out_rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                flush(&inner, &mut conn, &mut batch).await;
            }
            _ = tick.tick() => {
                beats += 1;
                heartbeat(&inner, node.as_ref(), &mut conn, &mut subscribed, &mut warned, beats).await;
            }
        }
    }
    // Connections closed during shutdown released their client ids: send that, then leave.
    while let Ok(op) = out_rx.try_recv() {
        batch.push(op);
    }
    flush(&inner, &mut conn, &mut batch).await;
    leave(&inner, &mut conn).await;
}

/// Sends a batch of operations in one pipeline, in order.
async fn flush(inner: &Inner, conn: &mut ConnectionManager, batch: &mut Vec<Out>) {
    if batch.is_empty() {
        return;
    }
    if !inner.up.load(Ordering::Relaxed) {
        drop_batch(inner, batch);
        return;
    }
    let id = inner.id();
    let (msg, ctl, retained) = (inner.key("msg"), inner.key("ctl"), inner.key("retained"));
    let (interest, clients) = (inner.key(&format!("interest:{id}")), inner.key("clients"));
    let groups = inner.key(&format!("groups:{id}"));
    let mut pipe = redis::pipe();
    let mut messages = 0u64;
    let mut interest_changed = false;
    for op in batch.iter() {
        match op {
            Out::Message { data, retained: r, .. } => {
                messages += 1;
                match r {
                    Some((topic, true)) => pipe.hdel(&retained, topic).ignore(),
                    Some((topic, false)) => pipe.hset(&retained, topic, data.as_ref()).ignore(),
                    None => &mut pipe,
                };
                pipe.publish(&msg, data.as_ref()).ignore();
            }
            Out::Interest { filter, added: true } => {
                interest_changed = true;
                pipe.sadd(&interest, filter).ignore();
            }
            Out::Interest { filter, added: false } => {
                interest_changed = true;
                pipe.srem(&interest, filter).ignore();
            }
            Out::Group { key, members: 0 } => {
                interest_changed = true;
                pipe.hdel(&groups, key).ignore();
            }
            Out::Group { key, members } => {
                interest_changed = true;
                pipe.hset(&groups, key, *members).ignore();
            }
            Out::Claim(client_id, at) => {
                pipe.hset(&clients, client_id, id).ignore();
                pipe.publish(&ctl, Ctl::claim("claim", id, Some(client_id), Some(*at))).ignore();
            }
            Out::Release(client_id) => {
                pipe.cmd("EVAL").arg(RELEASE_SCRIPT).arg(1).arg(&clients).arg(client_id).arg(id).ignore();
            }
            Out::Confirm { origin, id: request } => {
                let confirm = envelope::Confirm { id: *request, node: id.to_string() };
                pipe.publish(inner.key(&format!("confirm:{origin}")), confirm.encode().as_ref()).ignore();
            }
        }
    }
    if interest_changed {
        pipe.publish(&ctl, Ctl::notice("interest", id)).ignore();
    }
    match pipe.query_async::<()>(conn).await {
        Ok(()) => {
            inner.stats.forwarded.fetch_add(messages, Ordering::Relaxed);
            let confirms = batch.iter().filter(|op| matches!(op, Out::Confirm { .. })).count();
            inner.stats.confirms_sent.fetch_add(confirms as u64, Ordering::Relaxed);
            batch.clear();
        }
        Err(e) => {
            tracing::debug!(error = %e, "cluster: a pipeline failed");
            mark_down(inner, &e);
            drop_batch(inner, batch);
        }
    }
}

/// Operations that could not be sent: messages are lost (counted), the rest is registered
/// again once the link is back.
fn drop_batch(inner: &Inner, batch: &mut Vec<Out>) {
    for op in batch.drain(..) {
        match op {
            Out::Message { confirm, .. } => {
                inner.stats.dropped_link_down.fetch_add(1, Ordering::Relaxed);
                if confirm.is_some() {
                    inner.cut_short(confirm);
                }
            }
            // The publisher times out and serves it itself.
            Out::Confirm { .. } => {
                inner.stats.dropped_link_down.fetch_add(1, Ordering::Relaxed);
            }
            _ => inner.resync.store(true, Ordering::Relaxed),
        }
    }
}

fn mark_down(inner: &Inner, e: &redis::RedisError) {
    if inner.up.swap(false, Ordering::Relaxed) {
        tracing::warn!(error = %e, "cluster: link to Redis down; serving local traffic only, reconnecting");
    }
    // No confirmation can come now: the publishers serve their hand-offs themselves.
    inner.cut_short(None);
}

/// One heartbeat: say this node is alive, notice the link's edges, read the peers.
async fn heartbeat(
    inner: &Inner,
    node: &dyn Node,
    conn: &mut ConnectionManager,
    subscribed: &mut bool,
    warned: &mut bool,
    beats: u64,
) {
    let id = inner.id();
    let beat: redis::RedisResult<()> =
        redis::cmd("HSET").arg(inner.key("nodes")).arg(id).arg(now_ms()).query_async(conn).await;
    if let Err(e) = beat {
        if !*warned && !inner.up.load(Ordering::Relaxed) {
            *warned = true;
            tracing::warn!(error = %e, url = %redact(&inner.settings.redis_url), "cluster: Redis unreachable; running in local mode, retrying");
        }
        mark_down(inner, &e);
        return;
    }
    let came_up = !inner.up.load(Ordering::Relaxed);
    if came_up {
        if !*subscribed {
            let confirm = inner.key(&format!("confirm:{id}"));
            match conn.subscribe(&[inner.key("msg"), inner.key("ctl"), confirm]).await {
                Ok(()) => *subscribed = true,
                Err(e) => return mark_down(inner, &e),
            }
        }
        if let Err(e) = register(inner, node, conn).await {
            return mark_down(inner, &e);
        }
        inner.up.store(true, Ordering::Relaxed);
        *warned = false;
        tracing::info!(node_id = id, "cluster: link to Redis up; interest and sessions registered");
        if let Err(e) = load_retained(inner, node, conn).await {
            tracing::warn!(error = %e, "cluster: cannot read the retained messages");
        }
        inner.pending_overflow.store(false, Ordering::Relaxed);
    } else if inner.resync.swap(false, Ordering::Relaxed) {
        if let Err(e) = register(inner, node, conn).await {
            inner.resync.store(true, Ordering::Relaxed);
            return mark_down(inner, &e);
        }
    }
    if let Err(e) = read_peers(inner, conn, came_up || beats.is_multiple_of(FULL_REFRESH_BEATS)).await {
        mark_down(inner, &e);
    }
}

/// Registers this node's filters, groups, client ids and the retained messages set while the
/// link was down, and tells the peers.
async fn register(inner: &Inner, node: &dyn Node, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    // Changes from now on go through the outbound queue after this.
    inner.resync.store(false, Ordering::Relaxed);
    let id = inner.id();
    let interest = inner.key(&format!("interest:{id}"));
    let groups_key = inner.key(&format!("groups:{id}"));
    let filters: Vec<String> = node.filters().iter().map(|f| f.to_string()).filter(|f| !f.starts_with('$')).collect();
    let groups = node.groups();
    {
        // The bridge's own copy follows the node's (a change lost on the way is healed here).
        let mut remote = inner.remote.write();
        let stale: Vec<String> =
            remote.groups.of(None).into_keys().filter(|k| !groups.iter().any(|(g, _)| g == k)).collect();
        for key in stale {
            remote.groups.set_local(&key, 0);
        }
        for (key, n) in &groups {
            remote.groups.set_local(key, *n);
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic().del(&interest).ignore();
    if !filters.is_empty() {
        pipe.sadd(&interest, &filters).ignore();
    }
    pipe.del(&groups_key).ignore();
    for (key, n) in &groups {
        pipe.hset(&groups_key, key, *n).ignore();
    }
    for client_id in node.client_ids() {
        pipe.hset(inner.key("clients"), client_id, id).ignore();
    }
    let pending: Vec<(String, Bytes)> = inner.pending_retained.lock().drain().collect();
    for (topic, data) in &pending {
        let is_clear = envelope::decode(data.clone()).is_ok_and(|e| e.msg.payload.is_empty());
        if is_clear {
            pipe.hdel(inner.key("retained"), topic).ignore();
        } else {
            pipe.hset(inner.key("retained"), topic, data.as_ref()).ignore();
        }
        pipe.publish(inner.key("msg"), data.as_ref()).ignore();
    }
    pipe.hset(inner.key("nodes"), id, now_ms()).ignore();
    pipe.publish(inner.key("ctl"), Ctl::notice("interest", id)).ignore();
    let result = pipe.query_async::<()>(conn).await;
    if result.is_err() {
        let mut back = inner.pending_retained.lock();
        for (topic, data) in pending {
            back.entry(topic).or_insert(data);
        }
    }
    result
}

/// Reads the cluster's retained messages into the local cache (a new node, or one that was
/// cut off while others changed them), after [`register`] wrote the changes made here while
/// the link was down.
///
/// Redis is the truth for the topics it holds. On a reconnect to the same Redis (the same
/// epoch), a local retained message that Redis lacks was cleared elsewhere during the outage:
/// it is cleared here too (unless some change made here did not fit the pending list). If
/// Redis lost its data (a new epoch: it restarted without persistence), the nodes seed it
/// with their retained messages instead. At a node's first connection nothing is cleared: its
/// store may be older than Redis or newer, and only Redis's topics are taken.
async fn load_retained(inner: &Inner, node: &dyn Node, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    let epoch_key = inner.key("epoch");
    let fresh = format!("{}-{}", now_ms(), inner.id());
    let (epoch,): (String,) = redis::pipe()
        .cmd("SET")
        .arg(&epoch_key)
        .arg(&fresh)
        .arg("NX")
        .ignore()
        .get(&epoch_key)
        .query_async(conn)
        .await?;
    let before = inner.epoch.lock().replace(epoch.clone());
    let local: Vec<Arc<Message>> = node.retained_messages();
    let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(inner.key("retained")).query_async(conn).await?;
    if before.as_ref().is_some_and(|b| *b != epoch) {
        let mut pipe = redis::pipe();
        for msg in local.iter().filter(|m| !all.iter().any(|(t, _)| t == m.topic.as_str())) {
            pipe.hset_nx(inner.key("retained"), msg.topic.as_str(), envelope::encode(inner.id(), msg).as_ref())
                .ignore();
        }
        tracing::info!(seeded = local.len(), "cluster: Redis lost its data; retained messages seeded from this node");
        pipe.query_async::<()>(conn).await?;
    } else if before.is_some() && !inner.pending_overflow.load(Ordering::Relaxed) {
        for msg in local.iter().filter(|m| !all.iter().any(|(t, _)| t == m.topic.as_str())) {
            let clear = Message::new(msg.topic.clone(), Bytes::new(), Qos::AtMostOnce, true);
            tracing::debug!(topic = %msg.topic, "cluster: a retained message cleared during the outage");
            node.retain(clear).await;
        }
    }
    for (_, data) in all {
        match envelope::decode(Bytes::from(data)) {
            Ok(e) => node.retain(e.msg).await,
            Err(_) => {
                inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// Reads the node table: forgets peers that timed out (and clears their entries, so that a
/// `kill -9`ed node does not linger), and reads the filters of new peers (all of them when
/// `all`).
async fn read_peers(inner: &Inner, conn: &mut ConnectionManager, all: bool) -> redis::RedisResult<()> {
    let id = inner.id();
    let nodes_key = inner.key("nodes");
    let table: Vec<(String, String)> = redis::cmd("HGETALL").arg(&nodes_key).query_async(conn).await?;
    let now = now_ms();
    let timeout = inner.settings.node_timeout.as_millis() as u64;
    let mut peers = Vec::new();
    let mut dead = Vec::new();
    for (node, beat) in table {
        let Ok(beat) = beat.parse::<u64>() else { continue };
        if node != id && now.saturating_sub(beat) > timeout {
            dead.push(node);
        } else {
            peers.push(Peer { id: node, heartbeat_ms: beat });
        }
    }
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    if !dead.is_empty() {
        let mut pipe = redis::pipe();
        for node in &dead {
            tracing::info!(node_id = %node, "cluster: node timed out");
            pipe.hdel(&nodes_key, node).ignore();
            pipe.del(inner.key(&format!("interest:{node}"))).ignore();
            pipe.del(inner.key(&format!("groups:{node}"))).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    let known: Vec<String> = inner.remote.read().nodes().map(str::to_string).collect();
    {
        let mut remote = inner.remote.write();
        for node in known.iter().filter(|n| !peers.iter().any(|p| &p.id == *n)) {
            remote.remove(node);
        }
    }
    let to_read: Vec<String> =
        peers.iter().filter(|p| p.id != id && (all || !known.contains(&p.id))).map(|p| p.id.clone()).collect();
    *inner.peers.write() = peers;
    for node in to_read {
        read_interest(inner, conn, &node).await?;
    }
    Ok(())
}

async fn read_interest(inner: &Inner, conn: &mut ConnectionManager, node: &str) -> redis::RedisResult<()> {
    let (filters, groups): (Vec<String>, Vec<(String, String)>) = redis::pipe()
        .smembers(inner.key(&format!("interest:{node}")))
        .hgetall(inner.key(&format!("groups:{node}")))
        .query_async(conn)
        .await?;
    let groups = groups.into_iter().filter_map(|(k, n)| Some((k, n.parse::<usize>().ok()?)));
    let mut remote = inner.remote.write();
    let changed = remote.set(node, filters);
    if remote.groups.set(node, groups) || changed {
        tracing::debug!(node_id = node, "cluster: a node's interest changed");
    }
    Ok(())
}

/// A clean leave (SIGTERM): the peers forget this node at once.
async fn leave(inner: &Inner, conn: &mut ConnectionManager) {
    if !inner.up.load(Ordering::Relaxed) {
        return;
    }
    let id = inner.id();
    let mut pipe = redis::pipe();
    pipe.hdel(inner.key("nodes"), id).ignore();
    pipe.del(inner.key(&format!("interest:{id}"))).ignore();
    pipe.del(inner.key(&format!("groups:{id}"))).ignore();
    pipe.publish(inner.key("ctl"), Ctl::notice("leave", id)).ignore();
    match pipe.query_async::<()>(conn).await {
        Ok(()) => tracing::info!(node_id = id, "cluster: left"),
        Err(e) => tracing::warn!(error = %e, "cluster: could not unregister; peers will time this node out"),
    }
    inner.up.store(false, Ordering::Relaxed);
}

/// The reader: messages from other nodes go to local subscribers, control notices update the
/// view of the cluster.
async fn read(inner: Arc<Inner>, node: Arc<dyn Node>, mut conn: ConnectionManager, mut rx: mpsc::Receiver<PushInfo>) {
    let (msg_channel, ctl_channel) = (inner.key("msg"), inner.key("ctl"));
    let confirm_channel = inner.key(&format!("confirm:{}", inner.id()));
    let mut stopping = inner.stopping.subscribe();
    loop {
        let push = tokio::select! {
            _ = stopped(&mut stopping) => return,
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        match push.kind {
            PushKind::Message => {}
            PushKind::Disconnection => {
                inner.up.store(false, Ordering::Relaxed);
                inner.cut_short(None);
                continue;
            }
            _ => continue,
        }
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (data.next(), data.next()) else {
            continue;
        };
        if channel == msg_channel.as_bytes() {
            on_message(&inner, node.as_ref(), payload).await;
        } else if channel == ctl_channel.as_bytes() {
            on_ctl(&inner, node.as_ref(), &mut conn, &payload).await;
        } else if channel == confirm_channel.as_bytes() {
            match envelope::Confirm::decode(Bytes::from(payload)) {
                Ok(c) => inner.confirmed(&c),
                Err(_) => {
                    inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn on_message(inner: &Inner, node: &dyn Node, payload: Vec<u8>) {
    if envelope::origin(&payload) == Some(inner.id()) {
        return;
    }
    match envelope::decode(Bytes::from(payload)) {
        Ok(e) => {
            inner.stats.received.fetch_add(1, Ordering::Relaxed);
            let me = inner.id();
            let assignment = e.groups.map(|groups| Assignment {
                groups: groups.into_iter().map(|(key, node)| Assigned { here: node == me, key, node }).collect(),
            });
            let confirm = e.confirm.filter(|_| assignment.as_ref().is_some_and(Assignment::any_here));
            let stored = node.deliver(e.msg, assignment).await;
            // Unstored (the store refused or failed): no confirmation; the publisher serves it.
            if let (Some(id), true) = (confirm, stored) {
                inner.send(Out::Confirm { origin: e.origin, id });
            }
        }
        Err(e) => {
            let n = inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(error = %e, rejected = n + 1, "cluster: malformed message on the channel ignored");
            }
        }
    }
}

async fn on_ctl(inner: &Inner, node: &dyn Node, conn: &mut ConnectionManager, payload: &[u8]) {
    let Ok(ctl) = serde_json::from_slice::<Ctl>(payload) else {
        inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if ctl.v != 1 || ctl.node == inner.id() {
        return;
    }
    match (ctl.op.as_str(), ctl.client_id) {
        ("interest", _) => {
            if let Err(e) = read_interest(inner, conn, &ctl.node).await {
                tracing::debug!(error = %e, "cluster: cannot read a node's interest");
            }
        }
        ("claim", Some(client_id)) => {
            // The later claim wins (ties: the greater node id), whichever notice comes first.
            let theirs = (ctl.at.unwrap_or(u64::MAX), ctl.node.as_str());
            let ours = inner.claims.lock().get(&client_id).copied();
            if ours.is_some_and(|t| (t, inner.id()) < theirs) {
                inner.claims.lock().remove(&client_id);
                node.taken_over(&client_id);
            }
        }
        ("leave", _) => {
            tracing::info!(node_id = %ctl.node, "cluster: node left");
            inner.remote.write().remove(&ctl.node);
            inner.peers.write().retain(|p| p.id != ctl.node);
        }
        _ => {}
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}
