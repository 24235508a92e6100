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
//!   the node for each matched group ([`groups`]) and the envelope carries the choice;
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
use diglot_core::cluster::{Assignment, BoxFuture, Bridge, Node};
use diglot_core::{Filter, Message};
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::sync::mpsc;

/// How often a node heartbeats (and checks its link), unless `heartbeat_ms` says otherwise.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node whose last heartbeat is older than this is taken as gone, unless `node_timeout_ms`
/// says otherwise.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most operations waiting for the link (messages, interest and session changes).
const OUTBOUND_CAPACITY: usize = 16 * 1024;

/// Most retained changes kept while the link is down, to publish once it is back.
const MAX_PENDING_RETAINED: usize = 10_000;

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
}

/// One operation for the link, in the order the node did it.
pub(crate) enum Out {
    /// A message to publish; with the topic when it is retained (kept in the retained hash).
    Message {
        data: Bytes,
        retained: Option<(String, bool)>,
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

    fn send(&self, op: Out) {
        match self.out.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Out::Message { .. })) => {
                let n = self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(10_000) {
                    tracing::warn!(dropped = n + 1, "cluster outbound queue full: message not forwarded");
                }
            }
            // Interest and session changes are rebuilt whole at the next heartbeat.
            Err(_) => self.resync.store(true, Ordering::Relaxed),
        }
    }
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

    fn forward(&self, msg: &Arc<Message>, assignment: Option<&Assignment>) {
        let topic = msg.topic.as_str();
        let crosses = assignment.is_some_and(Assignment::any_elsewhere);
        // `$SYS/…` is per node; `$queue/<name>` crosses only to the node that serves the queue.
        if topic.starts_with('$') && !(crosses && topic.starts_with("$queue/")) {
            return;
        }
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
            return;
        }
        if !msg.retain && !crosses && !inner.remote.read().wants(&msg.topic) {
            return;
        }
        let data = envelope::encode_assigned(inner.id(), msg, assignment);
        let retained = msg.retain.then(|| (topic.to_string(), msg.payload.is_empty()));
        inner.send(Out::Message { data, retained });
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
