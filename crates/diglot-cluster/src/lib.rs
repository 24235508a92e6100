//! Diglot's cluster: nodes that act as one broker through Redis Pub/Sub.
//!
//! A [`Cluster`] is the [`Bridge`] the network side calls. Each node:
//! - publishes what its clients publish on `<prefix>:msg`, in a versioned [`envelope`] that
//!   names the origin node, but only when some other node subscribed to a matching filter
//!   (retained messages always go, so that every node's cache stays whole);
//! - delivers what it receives on that channel to its local subscribers only, and skips its
//!   own messages, so nothing loops and nothing is stored twice;
//! - keeps its filters in the set `<prefix>:interest:<node>` and its share groups and named
//!   queues, with their local member or consumer count, in the hash `<prefix>:groups:<node>`,
//!   and announces changes on `<prefix>:ctl`; the other nodes read them and keep a trie of
//!   what each node wants;
//! - serves each share group and named queue once cluster-wide: the publishing node picks
//!   the node for each matched group ([`groups`]) and the envelope carries the choice; for a
//!   QoS ≥ 1 message it also asks those nodes to confirm, on `<prefix>:confirm:<origin>`,
//!   once they stored it, and its acknowledgement waits for that (at most
//!   `handoff_timeout_ms`; unconfirmed groups it serves itself, see [`Confirmation`]);
//! - heartbeats into the hash `<prefix>:nodes` (node → last heartbeat, Unix ms) every
//!   `heartbeat_ms`; a node whose heartbeat is older than `node_timeout_ms` is forgotten by its
//!   peers;
//! - keeps retained messages in the hash `<prefix>:retained` (topic → envelope), with its own
//!   retained store as a cache, and the owner of each client id in `<prefix>:clients`: a claim
//!   is announced on `<prefix>:ctl`, and the node that held the client id closes it.
//!
//! One Redis connection (redis-rs's `ConnectionManager`, RESP3, automatic resubscription)
//! carries commands and Pub/Sub. Every queue between the node and the link is bounded, and
//! every message dropped on the way is counted. It is not a consensus protocol: what can be
//! lost across nodes while Redis is away is written in docs/operations.md.

pub mod envelope;
mod groups;
mod interest;
mod link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use diglot_core::cluster::{Assigned, Assignment, BoxFuture, Bridge, Confirmation, Node};
use diglot_core::{Filter, Message, Qos};
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// How often a node heartbeats (and checks its link), unless `heartbeat_ms` says otherwise.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node whose last heartbeat is older than this is taken as gone, unless `node_timeout_ms`
/// says otherwise.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most operations waiting for the link (messages, interest and session changes).
const OUTBOUND_CAPACITY: usize = 16 * 1024;

/// Most retained changes kept while the link is down, to publish once it is back.
const MAX_PENDING_RETAINED: usize = 10_000;

/// Most QoS ≥ 1 messages waiting for other nodes' confirmations; beyond it, the publishing
/// node serves the groups itself at once.
pub const MAX_PENDING_CONFIRMATIONS: usize = 16 * 1024;

/// How long a publisher's acknowledgement waits for the confirmation of a node it handed a
/// group to, unless `handoff_timeout_ms` says otherwise.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);

/// `[cluster]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `redis://…` or `rediss://…` (TLS).
    pub redis_url: String,
    /// This node's name in the cluster; `None`: the hostname and the port of the first
    /// listener (`host:8080`).
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel the cluster uses.
    pub channel_prefix: String,
    /// How often this node heartbeats and checks its link.
    pub heartbeat: Duration,
    /// A peer whose last heartbeat is older than this is taken as gone; longer than
    /// `heartbeat`.
    pub node_timeout: Duration,
    /// How long a QoS ≥ 1 message's acknowledgement waits for the nodes its groups were
    /// handed to; not zero.
    pub handoff_timeout: Duration,
}

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis URL does not parse.
    #[error("cluster.redis_url: {0}")]
    Url(String),
    /// The heartbeat is zero or not shorter than the node timeout.
    #[error("cluster.node_timeout_ms must be greater than cluster.heartbeat_ms, which must not be 0")]
    Timing,
    /// The hand-off timeout is zero.
    #[error("cluster.handoff_timeout_ms must not be 0")]
    Handoff,
}

/// One operation for the link, in the order the node did it.
pub(crate) enum Out {
    /// A message to publish; with the topic when it is retained (kept in the retained hash),
    /// and the id of the confirmation the publisher waits for.
    Message {
        data: Bytes,
        retained: Option<(String, bool)>,
        confirm: Option<u64>,
    },
    /// This node stored a message that `origin` asked it to confirm under `id`.
    Confirm {
        origin: String,
        id: u64,
    },
    Interest {
        filter: String,
        added: bool,
    },
    /// A local group's member count (0: none left).
    Group {
        key: String,
        members: usize,
    },
    /// A client id claimed here at a time (Unix ms).
    Claim(String, u64),
    Release(String),
}

/// Counters of what crossed the link.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) forwarded: AtomicU64,
    pub(crate) received: AtomicU64,
    /// Not sent: the link was down.
    pub(crate) dropped_link_down: AtomicU64,
    /// Not sent: the outbound queue was full.
    pub(crate) dropped_full: AtomicU64,
    /// Received but not taken: the inbound queue was full.
    pub(crate) dropped_inbound: AtomicU64,
    /// Received but malformed (or from a newer envelope version).
    pub(crate) rejected: AtomicU64,
    /// QoS ≥ 1 messages whose groups every node they went to confirmed.
    pub(crate) confirmed: AtomicU64,
    /// … that some node did not confirm in `handoff_timeout_ms`: served here.
    pub(crate) handoff_timeout: AtomicU64,
    /// … whose wait ended because the link was or went down: served here.
    pub(crate) handoff_link_down: AtomicU64,
    /// … that found `MAX_PENDING_CONFIRMATIONS` waits (or a full outbound queue): served
    /// here at once.
    pub(crate) handoff_full: AtomicU64,
    /// Confirmations this node sent for messages it stored.
    pub(crate) confirms_sent: AtomicU64,
}

/// One message waiting for confirmations.
pub(crate) struct Wait {
    /// The nodes that have not confirmed yet.
    nodes: Vec<String>,
    /// Wakes the publisher: all confirmed, or the wait was cut short.
    done: Option<oneshot::Sender<()>>,
}

/// Every message waiting for confirmations, by request id.
#[derive(Default)]
pub(crate) struct Waits {
    next: u64,
    map: HashMap<u64, Wait>,
}

/// A peer as the last heartbeat read saw it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) id: String,
    pub(crate) heartbeat_ms: u64,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) client: redis::Client,
    pub(crate) node_id: OnceLock<String>,
    pub(crate) out: mpsc::Sender<Out>,
    out_rx: Mutex<Option<mpsc::Receiver<Out>>>,
    pub(crate) up: AtomicBool,
    pub(crate) remote: RwLock<interest::Remote>,
    pub(crate) peers: RwLock<Vec<Peer>>,
    pub(crate) stats: Stats,
    /// Interest or session changes were lost (link down, queue full): register everything
    /// again at the next heartbeat.
    pub(crate) resync: AtomicBool,
    /// Client ids held here → when they were claimed (Unix ms): of two claims on two nodes,
    /// the later one wins on both.
    pub(crate) claims: Mutex<HashMap<String, u64>>,
    /// Retained changes made while the link was down: topic → envelope.
    pub(crate) pending_retained: Mutex<HashMap<String, Bytes>>,
    /// Some retained change made while the link was down did not fit `pending_retained`: the
    /// next reconcile must not clear what Redis lacks.
    pub(crate) pending_overflow: AtomicBool,
    /// The Redis epoch (`<prefix>:epoch`) this node last saw: another one means Redis lost its
    /// data, and the nodes seed it again.
    pub(crate) epoch: Mutex<Option<String>>,
    pub(crate) waits: Mutex<Waits>,
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Inner {
    /// This node's id (set at start).
    pub(crate) fn id(&self) -> &str {
        self.node_id.get().map_or("", String::as_str)
    }

    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.settings.channel_prefix)
    }

    /// Queues `op` for the writer; `false` if a message or confirmation was dropped.
    fn send(&self, op: Out) -> bool {
        match self.out.try_send(op) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(Out::Message { .. } | Out::Confirm { .. })) => {
                let n = self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(10_000) {
                    tracing::warn!(dropped = n + 1, "cluster outbound queue full: message not forwarded");
                }
            }
            // Interest and session changes are rebuilt whole at the next heartbeat.
            Err(_) => self.resync.store(true, Ordering::Relaxed),
        }
        false
    }

    /// `c.node` confirmed request `c.id`: wakes the publisher once every node did.
    pub(crate) fn confirmed(&self, c: &envelope::Confirm) {
        let mut waits = self.waits.lock();
        let Some(w) = waits.map.get_mut(&c.id) else { return };
        w.nodes.retain(|n| *n != c.node);
        if w.nodes.is_empty() {
            if let Some(done) = w.done.take() {
                let _ = done.send(());
            }
        }
    }

    /// Ends the wait of request `id` (its message was not sent), or of every request (`None`:
    /// the link went down): the publishers serve what is unconfirmed themselves.
    pub(crate) fn cut_short(&self, id: Option<u64>) {
        let mut waits = self.waits.lock();
        let wake = |w: &mut Wait| {
            if let Some(done) = w.done.take() {
                let _ = done.send(());
            }
        };
        match id {
            Some(id) => waits.map.get_mut(&id).into_iter().for_each(wake),
            None => waits.map.values_mut().for_each(wake),
        }
    }

    /// For a QoS ≥ 1 message with groups assigned to other nodes: the request id to put in
    /// its envelope (or `None`: too many waits already) and the [`Confirmation`].
    fn request(self: &Arc<Self>, assignment: &Assignment) -> Option<(u64, Confirmation)> {
        let mut nodes: Vec<String> = assignment.groups.iter().filter(|g| !g.here).map(|g| g.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut waits = self.waits.lock();
            if waits.map.len() >= MAX_PENDING_CONFIRMATIONS {
                return None;
            }
            waits.next = waits.next.wrapping_add(1);
            let id = waits.next;
            waits.map.insert(id, Wait { nodes, done: Some(tx) });
            id
        };
        // Dropped with the future (a connection that closes first): the entry goes too.
        let guard = WaitGuard { inner: self.clone(), id };
        let groups: Vec<Assigned> = assignment.groups.iter().filter(|g| !g.here).cloned().collect();
        let wait = async move {
            let inner = &guard.inner;
            let woken = tokio::time::timeout(inner.settings.handoff_timeout, rx).await.is_ok();
            let left = inner.waits.lock().map.remove(&id).map(|w| w.nodes).unwrap_or_default();
            let counter = match (left.is_empty(), woken) {
                (true, _) => &inner.stats.confirmed,
                (false, true) => &inner.stats.handoff_link_down,
                (false, false) => &inner.stats.handoff_timeout,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if !left.is_empty() {
                tracing::debug!(request = id, nodes = ?left, woken, "cluster: a hand-off was not confirmed; serving it here");
            }
            groups.into_iter().filter(|g| left.contains(&g.node)).map(|g| g.key).collect()
        };
        Some((id, Box::pin(wait)))
    }
}

/// Removes a wait whose [`Confirmation`] is gone.
struct WaitGuard {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.inner.waits.lock().map.remove(&self.id);
    }
}

/// The keys of the groups assigned to other nodes.
fn elsewhere(assignment: &Assignment) -> Vec<String> {
    assignment.groups.iter().filter(|g| !g.here).map(|g| g.key.clone()).collect()
}

/// A confirmation that ends at once: the publisher serves `keys` itself.
fn serve_here(keys: Vec<String>) -> Confirmation {
    Box::pin(std::future::ready(keys))
}

/// The Redis bridge of one node.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.inner.id()).finish_non_exhaustive()
    }
}

impl Cluster {
    /// A bridge for `settings`; nothing connects until [`Bridge::start`].
    pub fn new(settings: Settings) -> Result<Cluster, Error> {
        if settings.heartbeat.is_zero() || settings.node_timeout <= settings.heartbeat {
            return Err(Error::Timing);
        }
        if settings.handoff_timeout.is_zero() {
            return Err(Error::Handoff);
        }
        let client = link::client(&settings.redis_url).map_err(|e| Error::Url(e.to_string()))?;
        let (out, out_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let inner = Inner {
            settings,
            client,
            node_id: OnceLock::new(),
            out,
            out_rx: Mutex::new(Some(out_rx)),
            up: AtomicBool::new(false),
            remote: RwLock::default(),
            peers: RwLock::default(),
            stats: Stats::default(),
            resync: AtomicBool::new(false),
            claims: Mutex::default(),
            pending_retained: Mutex::default(),
            pending_overflow: AtomicBool::new(false),
            epoch: Mutex::default(),
            waits: Mutex::default(),
            stopping: tokio::sync::watch::channel(false).0,
            tasks: Mutex::default(),
        };
        Ok(Cluster { inner: Arc::new(inner) })
    }

    /// Checks that `url` is a Redis URL this build can use (`redis://`, `rediss://`).
    pub fn check_url(url: &str) -> Result<(), Error> {
        link::client(url).map(|_| ()).map_err(|e| Error::Url(e.to_string()))
    }
}

/// The machine's hostname, for the default node id.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

impl Bridge for Cluster {
    fn start(&self, node: Arc<dyn Node>, port: u16) {
        let id = self.inner.settings.node_id.clone().unwrap_or_else(|| format!("{}:{port}", hostname()));
        if self.inner.node_id.set(id).is_err() {
            return;
        }
        let Some(out_rx) = self.inner.out_rx.lock().take() else { return };
        tracing::info!(node_id = self.inner.id(), prefix = %self.inner.settings.channel_prefix, "cluster: starting");
        let tasks = link::spawn(self.inner.clone(), node, out_rx);
        self.inner.tasks.lock().extend(tasks);
    }

    fn assign(&self, msg: &Message) -> Option<Assignment> {
        let inner = &self.inner;
        let local_only = !inner.up.load(Ordering::Relaxed);
        inner.remote.read().groups.assign(&msg.topic, inner.id(), local_only)
    }

    fn forward(&self, msg: &Arc<Message>, assignment: Option<&Assignment>) -> Option<Confirmation> {
        let topic = msg.topic.as_str();
        let crosses = assignment.is_some_and(Assignment::any_elsewhere);
        // `$SYS/…` is per node; `$queue/<name>` crosses only to the node that serves the queue.
        if topic.starts_with('$') && !(crosses && topic.starts_with("$queue/")) {
            return None;
        }
        // A QoS ≥ 1 message handed to other nodes: the acknowledgement waits for them.
        let handed = assignment.filter(|_| crosses && msg.qos != Qos::AtMostOnce);
        let inner = &self.inner;
        if !inner.up.load(Ordering::Relaxed) {
            if msg.retain {
                let mut pending = inner.pending_retained.lock();
                if pending.len() < MAX_PENDING_RETAINED || pending.contains_key(topic) {
                    pending.insert(topic.to_string(), envelope::encode(inner.id(), msg));
                } else {
                    inner.pending_overflow.store(true, Ordering::Relaxed);
                }
            }
            if msg.retain || crosses || inner.remote.read().wants(&msg.topic) {
                inner.stats.dropped_link_down.fetch_add(1, Ordering::Relaxed);
            }
            return handed.map(|a| {
                inner.stats.handoff_link_down.fetch_add(1, Ordering::Relaxed);
                serve_here(elsewhere(a))
            });
        }
        if !msg.retain && !crosses && !inner.remote.read().wants(&msg.topic) {
            return None;
        }
        let retained = msg.retain.then(|| (topic.to_string(), msg.payload.is_empty()));
        let Some(a) = handed else {
            let data = envelope::encode_assigned(inner.id(), msg, assignment);
            inner.send(Out::Message { data, retained, confirm: None });
            return None;
        };
        let Some((id, wait)) = inner.request(a) else {
            // Too many waits: this node serves the groups, and tells the others it does.
            inner.stats.handoff_full.fetch_add(1, Ordering::Relaxed);
            let me = inner.id();
            let kept = Assignment {
                groups: a
                    .groups
                    .iter()
                    .map(|g| Assigned { key: g.key.clone(), node: me.to_string(), here: true })
                    .collect(),
            };
            let data = envelope::encode_assigned(me, msg, Some(&kept));
            inner.send(Out::Message { data, retained, confirm: None });
            return Some(serve_here(elsewhere(a)));
        };
        let data = envelope::encode_confirmed(inner.id(), msg, Some(a), Some(id));
        if !inner.send(Out::Message { data, retained, confirm: Some(id) }) {
            // Not sent (the outbound queue is full): dropping the wait forgets it.
            drop(wait);
            inner.stats.handoff_full.fetch_add(1, Ordering::Relaxed);
            return Some(serve_here(elsewhere(a)));
        }
        Some(wait)
    }

    fn interest(&self, filter: &Filter, added: bool) {
        if !filter.as_str().starts_with('$') {
            self.inner.send(Out::Interest { filter: filter.to_string(), added });
        }
    }

    fn group(&self, key: &str, members: usize) {
        if self.inner.remote.write().groups.set_local(key, members) {
            self.inner.send(Out::Group { key: key.to_string(), members });
        }
    }

    fn claim(&self, client_id: &str) {
        let at = link::now_ms();
        self.inner.claims.lock().insert(client_id.to_string(), at);
        self.inner.send(Out::Claim(client_id.to_string(), at));
    }

    fn release(&self, client_id: &str) {
        self.inner.claims.lock().remove(client_id);
        self.inner.send(Out::Release(client_id.to_string()));
    }

    fn link_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.inner.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("forwarded", load(&s.forwarded)),
            ("received", load(&s.received)),
            ("rejected", load(&s.rejected)),
            ("dropped_link_down", load(&s.dropped_link_down)),
            ("dropped_outbound_full", load(&s.dropped_full)),
            ("dropped_inbound_full", load(&s.dropped_inbound)),
            ("confirmed", load(&s.confirmed)),
            ("handoff_timeout", load(&s.handoff_timeout)),
            ("handoff_link_down", load(&s.handoff_link_down)),
            ("handoff_full", load(&s.handoff_full)),
            ("confirms_sent", load(&s.confirms_sent)),
        ]
    }

    fn view(&self) -> serde_json::Value {
        let inner = &self.inner;
        let now = link::now_ms();
        let remote = inner.remote.read();
        let nodes: Vec<serde_json::Value> = inner
            .peers
            .read()
            .iter()
            .map(|p| {
                let me = p.id == inner.id();
                json!({
                    "node_id": p.id,
                    "self": me,
                    "last_heartbeat_ms": p.heartbeat_ms,
                    "age_ms": now.saturating_sub(p.heartbeat_ms),
                    "filters": if me { serde_json::Value::Null } else { json!(remote.filters_of(&p.id)) },
                    "groups": remote.groups.of((!me).then_some(p.id.as_str())),
                })
            })
            .collect();
        let messages: serde_json::Map<String, serde_json::Value> =
            self.counters().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({
            "node_id": inner.id(),
            "link_up": self.link_up(),
            "channel_prefix": inner.settings.channel_prefix,
            "heartbeat_ms": inner.settings.heartbeat.as_millis() as u64,
            "node_timeout_ms": inner.settings.node_timeout.as_millis() as u64,
            "handoff_timeout_ms": inner.settings.handoff_timeout.as_millis() as u64,
            "nodes": nodes,
            "messages": messages,
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.stopping.send_replace(true);
            let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock());
            for t in tasks {
                // The writer unregisters the node first; bounded, Redis may be away.
                let abort = t.abort_handle();
                if tokio::time::timeout(Duration::from_secs(3), t).await.is_err() {
                    abort.abort();
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(handoff: Duration) -> Arc<Inner> {
        let settings = Settings {
            redis_url: "redis://127.0.0.1:1/".into(),
            node_id: Some("a".into()),
            channel_prefix: "t".into(),
            heartbeat: HEARTBEAT,
            node_timeout: NODE_TIMEOUT,
            handoff_timeout: handoff,
        };
        Cluster::new(settings).unwrap().inner
    }

    fn handed() -> Assignment {
        let g = |key: &str, node: &str| Assigned { key: key.into(), node: node.into(), here: node == "a" };
        Assignment { groups: vec![g("$queue/q", "b"), g("$share/s/#", "c"), g("$share/t/#", "a")] }
    }

    #[tokio::test]
    async fn a_hand_off_ends_with_what_no_node_confirmed() {
        let inner = inner(Duration::from_secs(60));
        let (id, wait) = inner.request(&handed()).unwrap();
        inner.confirmed(&envelope::Confirm { id, node: "b".into() });
        inner.confirmed(&envelope::Confirm { id: id + 1, node: "c".into() });
        inner.confirmed(&envelope::Confirm { id, node: "c".into() });
        assert!(wait.await.is_empty(), "both nodes confirmed");
        assert_eq!(inner.stats.confirmed.load(Ordering::Relaxed), 1);

        let (id, wait) = inner.request(&handed()).unwrap();
        inner.confirmed(&envelope::Confirm { id, node: "c".into() });
        inner.cut_short(None);
        assert_eq!(wait.await, vec!["$queue/q".to_string()], "the link went down before b answered");
        assert_eq!(inner.stats.handoff_link_down.load(Ordering::Relaxed), 1);
        assert!(inner.waits.lock().map.is_empty());

        let (_, wait) = inner.request(&handed()).unwrap();
        drop(wait);
        assert!(inner.waits.lock().map.is_empty(), "a dropped wait is forgotten");
    }

    #[tokio::test]
    async fn an_unanswered_hand_off_times_out_and_the_waits_are_bounded() {
        let inner = inner(Duration::from_millis(20));
        let (_, wait) = inner.request(&handed()).unwrap();
        assert_eq!(wait.await, vec!["$queue/q".to_string(), "$share/s/#".to_string()]);
        assert_eq!(inner.stats.handoff_timeout.load(Ordering::Relaxed), 1);
        let held: Vec<_> = (0..MAX_PENDING_CONFIRMATIONS).map(|_| inner.request(&handed()).unwrap()).collect();
        assert!(inner.request(&handed()).is_none(), "beyond the cap the publisher serves at once");
        drop(held);
        assert!(inner.request(&handed()).is_some());
    }
}
