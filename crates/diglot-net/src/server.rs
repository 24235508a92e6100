//! Starting and stopping the broker's network side: binding listeners, the accept loops, the
//! connection limit, and graceful shutdown.
//!
//! The accept loop only accepts: it takes a connection permit and spawns a task, and every
//! handshake (HTTP upgrade, protocol CONNECT) runs in that task under a timeout. Accept errors
//! (such as running out of file descriptors) back off instead of spinning.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use diglot_core::{Limits, Router, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::driver;
use crate::durable::Durable;
use crate::http;
use crate::link::Link;
use crate::negotiate::Proto;
use crate::registry::Registry;

/// WebSocket paths of one listener and the protocol each assumes for clients that offer none.
pub type WsPaths = HashMap<String, Option<Proto>>;

/// The WebSocket paths of one listener.
#[derive(Debug, Clone, Default)]
pub struct WsRoutes {
    /// Path → default protocol for clients that offer no subprotocol.
    pub paths: WsPaths,
    /// A path that echoes every message back, for WebSocket conformance suites (Autobahn);
    /// off unless configured.
    pub echo_path: Option<String>,
    /// permessage-deflate (RFC 7692), when the client offers it; `None` turns it off.
    pub compression: Option<Compression>,
    /// Which browser origins may open a WebSocket.
    pub origins: crate::origin::Origins,
    /// Server-side WebSocket pings after this much silence, with the same deadline for the
    /// answer; `None` turns them off.
    pub ping_interval: Option<Duration>,
}

/// permessage-deflate settings of a WebSocket listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// zlib level 0–9 for outgoing messages.
    pub level: u8,
    /// Messages smaller than this many bytes are sent uncompressed.
    pub threshold: usize,
    /// Keep the deflate window between messages (better ratio, about 200 KiB more memory per
    /// connection). Without it, both sides reset after each message (`server_no_context_takeover`,
    /// `client_no_context_takeover`) and idle connections share pooled deflate state.
    pub context_takeover: bool,
}

/// What a listener serves.
#[derive(Debug, Clone)]
pub enum ListenerKind {
    /// HTTP + WebSocket, with the paths that accept upgrades.
    Ws(WsRoutes),
    /// MQTT over raw TCP.
    Mqtt,
    /// STOMP over raw TCP.
    Stomp,
}

impl ListenerKind {
    /// A short label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            ListenerKind::Ws(_) => "ws",
            ListenerKind::Mqtt => "mqtt",
            ListenerKind::Stomp => "stomp",
        }
    }
}

/// One listener to bind.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// The name used in logs and errors (the config key, such as `listeners.ws`).
    pub name: String,
    /// Where to listen (port 0 picks a free port).
    pub addr: SocketAddr,
    /// What to serve.
    pub kind: ListenerKind,
    /// TLS on this listener (`wss`, `mqtts`, `stomps`).
    pub tls: Option<crate::tls::TlsSettings>,
    /// Whether clients without credentials are accepted here (`server.allow_anonymous`).
    pub allow_anonymous: bool,
}

/// Everything the network side needs to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Most connections open at once, over all listeners.
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Largest HTTP request head on WebSocket and HTTP listeners (431 over it).
    pub max_http_header_bytes: usize,
    /// Largest WebSocket frame payload from a client (close 1009 over it).
    pub max_ws_frame_bytes: usize,
    /// Largest WebSocket message from a client, reassembled and inflated (close 1009 over it).
    pub max_ws_message_bytes: usize,
    /// How long a client has for the TCP-to-WebSocket handshake.
    pub handshake_timeout: Duration,
    /// How long one write may stall before the client counts as a slow consumer.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// MQTT adapter settings.
    pub mqtt: diglot_mqtt::Config,
    /// STOMP adapter settings.
    pub stomp: diglot_stomp::Config,
    /// The durable store.
    pub store: diglot_store::StoreConfig,
    /// How often broker statistics are published on `$SYS/broker/...` (zero: never).
    pub sys_interval: Duration,
    /// Users, JWT validation, ACL rules and the failed-login limit.
    pub auth: diglot_auth::AuthConfig,
    /// The HTTP API's settings.
    pub http: crate::api::HttpSettings,
    /// The bridge to the other nodes of a cluster (`[cluster]`); `None`: a lone broker.
    pub cluster: Option<Arc<dyn diglot_core::cluster::Bridge>>,
}

/// Re-reads the configuration and applies it with [`ReloadHandle::apply`].
pub type Reloader = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Applies a new [`Spec`] to a running server: what can change without a restart.
#[derive(Clone)]
pub struct ReloadHandle(std::sync::Weak<Shared>);

impl ReloadHandle {
    /// Puts the reloadable parts of `spec` in force: users, JWT settings and ACLs (for new
    /// logins and every open connection's checks), the per-connection limits and the
    /// per-address connection limit (for new connections), and the TLS certificates (loaded
    /// again from their files). All or nothing: on error nothing changes. Listeners, the store
    /// and the protocol settings need a restart. A changed `stomp.topic_separator` is not
    /// applied either, but warned about: it would change what STOMP names mean under live and
    /// durable subscriptions, so it only changes with a restart.
    pub fn apply(&self, spec: &Spec) -> Result<(), String> {
        let Some(shared) = self.0.upgrade() else { return Err("the server has stopped".into()) };
        // Live and durable subscriptions hold the canonical filters their STOMP names were read
        // into; a new separator would make the same names mean other topics under them.
        if spec.stomp.topic_separator != shared.stomp.topic_separator {
            tracing::warn!(
                running = %shared.stomp.topic_separator,
                configured = %spec.stomp.topic_separator,
                "stomp.topic_separator cannot change while the broker runs; the running value stays until a restart"
            );
        }
        // Check everything first, then swap.
        let tls = shared.tls.lock().clone();
        for t in &tls {
            t.check().map_err(|e| e.to_string())?;
        }
        shared.auth.reload(&spec.auth).map_err(|e| e.to_string())?;
        {
            // The breach counters outlive a reload.
            let mut limits = shared.limits.write();
            let breaches = limits.breaches.clone();
            *limits = Limits { breaches, ..spec.limits.clone() };
        }
        shared.edge.store(spec);
        shared.max_per_ip.store(spec.max_connections_per_ip.max(1), std::sync::atomic::Ordering::Relaxed);
        for t in &tls {
            t.reload();
        }
        tracing::info!("configuration reloaded: users, ACLs, limits and TLS certificates");
        Ok(())
    }
}

impl Shared {
    /// The per-connection limits for a new connection.
    pub(crate) fn limits(&self) -> Limits {
        self.limits.read().clone()
    }

    /// Counts a refused WebSocket handshake (or API call) with its HTTP status.
    pub(crate) fn rejected(&self, status: u16) {
        self.rejected_handshakes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.rejected(status);
    }

    /// Counts one breach of `limit`.
    pub(crate) fn breach(&self, limit: diglot_core::Limit) {
        self.limits.read().breaches.hit(limit);
    }

    /// The breach counters.
    pub(crate) fn breaches(&self) -> Arc<diglot_core::Breaches> {
        self.limits.read().breaches.clone()
    }

    /// Reloads the configuration through the embedding binary's reloader, or, without one,
    /// just the TLS certificates.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let reloader = self.reloader.lock().clone();
        match reloader {
            Some(f) => f(),
            None => {
                for t in self.tls.lock().iter() {
                    t.reload();
                }
                Ok(())
            }
        }
    }
}

/// Why the network side could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A TLS listener's certificate or key could not be loaded.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The `[auth]` section is invalid (a bad hash, a JWT key file that cannot be read, a bad
    /// ACL pattern).
    #[error("{0}")]
    Auth(#[from] diglot_auth::AuthError),
    /// The store could not be opened (or is corrupt, or of a newer format).
    #[error("cannot open the store at {path}: {source}")]
    Store {
        /// The data directory.
        path: String,
        /// Why.
        source: diglot_store::StoreError,
    },
    /// The `[cluster]` section is invalid.
    #[error("{0}")]
    Cluster(String),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// The listener's name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// State shared by every connection task.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) durable: Durable,
    pub(crate) registry: Registry,
    /// The QoS 2 exchanges under way of persistent sessions whose client is away, by client
    /// id ([`diglot_core::Adapter::qos2_flows`]), at most `QOS2_SESSIONS` (driver.rs).
    pub(crate) qos2: parking_lot::Mutex<HashMap<String, driver::KeptQos2>>,
    /// Connections (client id, connection) whose session was taken over before they ended
    /// (the takeover stopped waiting): their QoS 2 state is not kept when they end.
    pub(crate) stale_qos2: parking_lot::Mutex<std::collections::HashSet<(String, u64)>>,
    /// Delayed wills waiting to be published: shutdown waits for them (they publish at once
    /// then) before it closes the store.
    pub(crate) wills: TaskTracker,
    /// Per-connection limits for new connections (a reload replaces them).
    limits: parking_lot::RwLock<Limits>,
    /// HTTP and WebSocket limits for new connections (a reload replaces them).
    pub(crate) edge: EdgeLimits,
    pub(crate) mqtt: diglot_mqtt::Config,
    pub(crate) stomp: diglot_stomp::Config,
    pub(crate) handshake_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) connections: AtomicUsize,
    pub(crate) rejected_handshakes: AtomicU64,
    pub(crate) bytes_in: diglot_core::Counter,
    pub(crate) bytes_out: diglot_core::Counter,
    pub(crate) started: std::time::Instant,
    /// Deflate state shared by connections between messages (no-context-takeover mode).
    pub(crate) deflate_pool: yawc::DeflatePool,
    /// Open connections per source address.
    pub(crate) per_ip: dashmap::DashMap<std::net::IpAddr, usize>,
    pub(crate) max_per_ip: std::sync::atomic::AtomicUsize,
    /// `[http]` settings of the API.
    pub(crate) http: crate::api::HttpSettings,
    /// Re-reads the configuration and applies it (SIGHUP, `POST /api/v1/reload`); set by the
    /// embedding binary, which knows where the configuration lives.
    reloader: parking_lot::Mutex<Option<Reloader>>,
    /// TLS listeners, whose certificates a reload loads again.
    tls: parking_lot::Mutex<Vec<Arc<crate::tls::Tls>>>,
    /// Logins and ACLs.
    pub(crate) auth: Arc<crate::auth::Auth>,
    /// Open connections and recent closes.
    pub(crate) conns: crate::conns::Conns,
    /// Publishes per topic (the busiest ones).
    pub(crate) topics: crate::conns::TopTopics,
    /// Prometheus metrics.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Every listener is bound and accepting (`GET /readyz`).
    pub(crate) ready: std::sync::atomic::AtomicBool,
    /// The cluster bridge, if this node is part of a cluster.
    pub(crate) cluster: Option<Arc<dyn diglot_core::cluster::Bridge>>,
}

/// A bound listener.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The listener's name.
    pub name: String,
    /// What it serves.
    pub kind: &'static str,
    /// The address it actually listens on (with the real port when 0 was asked for).
    pub addr: SocketAddr,
}

/// A running broker network side.
pub struct Server {
    shared: Arc<Shared>,
    bound: Vec<Bound>,
    shutdown_tx: watch::Sender<bool>,
    tracker: TaskTracker,
    grace: Duration,
}

impl Server {
    /// Binds every listener (all or nothing) and starts serving. Must run inside a tokio runtime.
    pub async fn start(spec: Spec) -> Result<Server, StartError> {
        let auth = Arc::new(crate::auth::Auth::new(&spec.auth)?);
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        let mut tls_all = Vec::new();
        for l in &spec.listeners {
            let tls = match &l.tls {
                Some(settings) => Some(Arc::new(crate::tls::Tls::new(settings.clone())?)),
                None => None,
            };
            tls_all.extend(tls.clone());
            let listener = TcpListener::bind(l.addr).await.map_err(|source| StartError::Bind {
                name: l.name.clone(),
                addr: l.addr,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                name: l.name.clone(),
                addr: l.addr,
                source,
            })?;
            let kind = match (&l.kind, tls.is_some()) {
                (ListenerKind::Ws(_), true) => "wss",
                (ListenerKind::Ws(r), false) if r.paths.is_empty() && r.echo_path.is_none() => "http",
                (ListenerKind::Mqtt, true) => "mqtts",
                (ListenerKind::Stomp, true) => "stomps",
                (k, false) => k.label(),
            };
            bound.push(Bound { name: l.name.clone(), kind, addr });
            listeners.push((listener, l.kind.clone(), tls, l.allow_anonymous));
        }
        let (router, durable) = open_store(&spec.store, spec.cluster.is_some()).await?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            router,
            durable,
            registry: Registry::default(),
            qos2: parking_lot::Mutex::new(HashMap::new()),
            stale_qos2: parking_lot::Mutex::new(std::collections::HashSet::new()),
            wills: TaskTracker::new(),
            // Fresh counters: two servers started from one Spec count apart.
            limits: parking_lot::RwLock::new(Limits { breaches: Default::default(), ..spec.limits.clone() }),
            edge: EdgeLimits::new(&spec),
            mqtt: spec.mqtt.clone(),
            stomp: spec.stomp.clone(),
            handshake_timeout: spec.handshake_timeout,
            write_timeout: spec.write_timeout,
            shutdown,
            connections: AtomicUsize::new(0),
            rejected_handshakes: AtomicU64::new(0),
            bytes_in: diglot_core::Counter::default(),
            bytes_out: diglot_core::Counter::default(),
            started: std::time::Instant::now(),
            deflate_pool: yawc::DeflatePool::new(64),
            per_ip: dashmap::DashMap::new(),
            max_per_ip: std::sync::atomic::AtomicUsize::new(spec.max_connections_per_ip.max(1)),
            http: spec.http.clone(),
            reloader: parking_lot::Mutex::new(None),
            tls: parking_lot::Mutex::new(tls_all.clone()),
            auth,
            conns: crate::conns::Conns::default(),
            topics: crate::conns::TopTopics::default(),
            metrics: crate::metrics::Metrics::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
            cluster: spec.cluster.clone(),
        });
        // Sessions that were waiting to expire when the broker stopped keep their deadlines,
        // their QoS 2 exchanges under way and their delayed wills (restored below).
        let saved = shared.durable.saved_sessions().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the sessions' saved state");
            Default::default()
        });
        for (queue, deadline) in saved.deadlines {
            let client_id = queue.strip_prefix(diglot_core::SESSION_QUEUE_PREFIX).unwrap_or(&queue).to_string();
            let back = shared.registry.on_return(&client_id);
            driver::expire_session_at(shared.clone(), back, queue, deadline);
        }
        {
            let mut kept = shared.qos2.lock();
            for (queue, flows) in saved.qos2 {
                let client_id = queue.strip_prefix(diglot_core::SESSION_QUEUE_PREFIX).unwrap_or(&queue).to_string();
                kept.insert(client_id, driver::KeptQos2 { flows, saved: true });
            }
        }
        {
            let sync = shared.metrics.store_sync.clone();
            shared.durable.observe_syncs(move |d| sync.record(d.as_secs_f64()));
        }
        tokio::spawn(crate::metrics::upkeep(Arc::downgrade(&shared), shared.shutdown.clone()));
        {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            shared.durable.send_events_to(tx);
            tokio::spawn(crate::sys::events(Arc::downgrade(&shared), rx, shared.shutdown.clone()));
        }
        if !spec.sys_interval.is_zero() {
            tokio::spawn(crate::sys::run(shared.clone(), spec.sys_interval));
        }
        let permits = Arc::new(Semaphore::new(spec.max_connections.max(1)));
        // An HTTP-only listener (`[listeners.http]`, the scrape and admin port) has permits
        // of its own: a broker full of clients still answers its health checks and scrapes.
        let admin_permits = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));
        let tracker = TaskTracker::new();
        // Always handle SIGHUP: its default action would end the process.
        tokio::spawn(reload_on_sighup(Arc::downgrade(&shared), shared.shutdown.clone()));
        for ((listener, kind, tls, allow_anonymous), b) in listeners.into_iter().zip(&bound) {
            tracing::info!(listener = %b.name, kind = b.kind, addr = %b.addr, "listening");
            let http_only = matches!(&kind, ListenerKind::Ws(r) if r.paths.is_empty() && r.echo_path.is_none());
            let acceptor = Acceptor {
                http_only,
                refusals: Throttle::default(),
                shared: shared.clone(),
                permits: if http_only { admin_permits.clone() } else { permits.clone() },
                tracker: tracker.clone(),
                kind: Arc::new(kind),
                tls,
                allow_anonymous,
            };
            tracker.spawn(acceptor.run(listener));
        }
        crate::cluster::start(&shared, bound.first().map_or(0, |b| b.addr.port()));
        // Delayed wills that were not due when the broker stopped (after the cluster link was
        // started, so that those due already can reach the other nodes once it is up).
        driver::restore_wills(&shared, saved.wills);
        shared.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Server { shared, bound, shutdown_tx, tracker, grace: spec.shutdown_grace })
    }

    /// A handle that applies a new [`Spec`] to this server (see [`ReloadHandle::apply`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(Arc::downgrade(&self.shared))
    }

    /// Sets what SIGHUP and `POST /api/v1/reload` run: typically, read the configuration file
    /// again and [`ReloadHandle::apply`] it.
    pub fn set_reloader(&self, reloader: Reloader) {
        *self.shared.reloader.lock() = Some(reloader);
    }

    /// The bound listeners with their real addresses.
    pub fn bound(&self) -> &[Bound] {
        &self.bound
    }

    /// The address of the first listener of `kind` (`ws`, `mqtt`, `stomp`).
    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.bound.iter().find(|b| b.kind == kind).map(|b| b.addr)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection with the protocol's goodbye, and waits (up to the
    /// shutdown grace) for them to finish. Returns `false` if some did not finish in time.
    pub async fn shutdown(self) -> bool {
        self.stop().await.clean
    }

    /// [`Server::shutdown`], saying also whether the store had failed (it then refused writes
    /// until now: the daemon exits non-zero).
    pub async fn stop(self) -> Stopped {
        let shared = self.shared.clone();
        let clean = self.shutdown_inner().await;
        Stopped { clean, store_failure: shared.durable.store_failure() }
    }

    async fn shutdown_inner(self) -> bool {
        let _ = self.shutdown_tx.send(true);
        // Every connection's driver is woken through its outbox; one that opens after this
        // sees the flag just sent.
        self.shared.conns.signal_all(diglot_core::outbox::signal::SHUTDOWN);
        self.tracker.close();
        let started = std::time::Instant::now();
        let done = tokio::time::timeout(self.grace, self.tracker.wait()).await.is_ok();
        if !done {
            tracing::warn!(open = self.connections(), "shutdown grace elapsed with connections still open");
        }
        // Delayed wills stay in the store for the next start; those that could not be saved
        // are published now (the connections just closed may have added some). Within the
        // same grace as the connections.
        self.shared.wills.close();
        // At least a moment, for the wills that could not be saved, even when the connections
        // took the whole grace.
        let left = self.grace.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
        if tokio::time::timeout(left, self.shared.wills.wait()).await.is_err() {
            tracing::warn!("shutdown grace elapsed with delayed wills still being published");
        }
        crate::cluster::stop(&self.shared).await;
        self.shared.durable.close().await;
        done
    }
}

struct Acceptor {
    /// `[listeners.http]`: its own connection permits, and no per-address limit.
    http_only: bool,
    /// Refused connections are logged at most once a second (a flood at the limit must not
    /// flood the log too); they are all counted in `diglot_limit_breaches_total`.
    refusals: Throttle,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    kind: Arc<ListenerKind>,
    tls: Option<Arc<crate::tls::Tls>>,
    allow_anonymous: bool,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let mut shutdown = self.shared.shutdown.clone();
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.changed() => return,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(s) => {
                    backoff = Duration::from_millis(5);
                    s
                }
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning; connections that close free
                    // descriptors.
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.shared.breach(diglot_core::Limit::MaxConnections);
                if let Some(also) = self.refusals.due() {
                    tracing::warn!(%peer, refused_since_last_line = also, "connection limit reached; refusing");
                }
                let http = matches!(*self.kind, ListenerKind::Ws(_));
                if http {
                    self.shared.metrics.rejected(503);
                }
                self.tracker.spawn(refuse(stream, http));
                continue;
            };
            // The HTTP-only listener's own permits bound it; behind a local proxy every client
            // comes from one address, whose limit must not shut the health checks out.
            let ip_slot = if self.http_only { Some(None) } else { IpSlot::take(&self.shared, peer.ip()).map(Some) };
            let Some(ip_slot) = ip_slot else {
                self.shared.breach(diglot_core::Limit::MaxConnectionsPerIp);
                if let Some(also) = self.refusals.due() {
                    tracing::warn!(%peer, refused_since_last_line = also, "per-address connection limit reached; refusing");
                }
                let http = matches!(*self.kind, ListenerKind::Ws(_));
                if http {
                    self.shared.metrics.rejected(503);
                }
                self.tracker.spawn(refuse(stream, http));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let accepted = Accepted {
                shared: self.shared.clone(),
                kind: self.kind.clone(),
                tls: self.tls.as_ref().map(|t| (t.acceptor(), t.cert_cn_as_username())),
                conn_auth: crate::auth::ConnAuth { anonymous_ok: self.allow_anonymous, identity: None },
                stream,
                peer,
                ip_slot,
                permit,
            };
            self.tracker.spawn(serve_conn(Box::new(accepted)));
        }
    }
}

/// Lets a repeated log line through at most once a (wall-clock) second; shared, so it can be
/// a `static`.
#[derive(Default)]
pub(crate) struct Throttle {
    /// The second (since the Unix epoch) of the last line let through.
    second: std::sync::atomic::AtomicU64,
    /// Lines held back since.
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Throttle {
        Throttle { second: std::sync::atomic::AtomicU64::new(0), held: std::sync::atomic::AtomicU64::new(0) }
    }

    /// `Some(n)` when a line is due now, `n` being how many were held back since the last one;
    /// `None` to hold this one back.
    pub(crate) fn due(&self) -> Option<u64> {
        self.due_at(crate::durable::now_ms() / 1000)
    }

    /// [`Throttle::due`] at second `now`.
    fn due_at(&self, now: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.second.swap(now, Relaxed) == now {
            self.held.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.held.swap(0, Relaxed))
    }
}

/// How a server stopped ([`Server::stop`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Every connection finished within the shutdown grace.
    pub clean: bool,
    /// Why the store refused writes, if it failed while the broker ran or as it closed.
    pub store_failure: Option<String>,
}

/// How many connections the HTTP-only listeners (`[listeners.http]`) hold at once, apart from
/// `limits.max_connections`.
const ADMIN_CONNECTIONS: usize = 64;

/// One accepted connection, with the permits it holds until it ends.
struct Accepted {
    shared: Arc<Shared>,
    kind: Arc<ListenerKind>,
    tls: Option<(tokio_rustls::TlsAcceptor, bool)>,
    conn_auth: crate::auth::ConnAuth,
    stream: TcpStream,
    peer: SocketAddr,
    ip_slot: Option<IpSlot>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// A connection's task: the handshakes, then the driver (or the echo path) until it ends.
///
/// tokio keeps a task's whole future in one allocation for the connection's life, sized for
/// its largest state, so this future is part of every idle connection's memory. The
/// handshakes (TLS, hyper's HTTP exchange, the WebSocket upgrade) run boxed, and their state
/// is freed before the driver starts; the test `a_connection_task_stays_small` bounds the rest.
async fn serve_conn(accepted: Box<Accepted>) {
    // Boxed for the same reason as the handshake: an async fn's arguments stay in its state.
    let Accepted { shared, kind, tls, conn_auth, stream, peer, ip_slot, permit } = unbox(accepted);
    // A statement of its own, so that the boxed handshake is freed before the driver starts.
    let upgraded = Box::pin(handshake(shared.clone(), kind, tls, conn_auth, stream, peer)).await;
    match upgraded {
        Some(http::Upgraded::Protocol(h)) => driver::run(shared, h).await,
        // The echo path (conformance suites) is rare: its state is boxed rather than sizing
        // every connection's task.
        Some(http::Upgraded::Echo(ws)) => Box::pin(crate::echo::run(&shared, *ws)).await,
        None => {}
    }
    drop(ip_slot);
    drop(permit);
}

/// Moves a value out of its box and frees the box now (moving out of `*b` in place would keep
/// the allocation until the end of the enclosing scope: in an async fn, the connection's life).
// Taking the box by value is the point: it is freed when this returns.
#[allow(clippy::boxed_local)]
pub(crate) fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// A connection whose handshakes are done, ready for the driver.
pub(crate) struct Handshaken {
    pub(crate) link: Link,
    pub(crate) proto: Proto,
    pub(crate) transport: Transport,
    /// Whether the connection came over TLS (`wss`, `mqtts`, `stomps`).
    pub(crate) tls: bool,
    pub(crate) peer: SocketAddr,
    /// The WebSocket subprotocol value echoed to the client.
    pub(crate) subprotocol: Option<String>,
    pub(crate) conn_auth: crate::auth::ConnAuth,
}

/// TLS (under the handshake timeout, in the connection's task, never on the accept loop),
/// then, on a WebSocket listener, the HTTP exchange up to the upgrade.
async fn handshake(
    shared: Arc<Shared>,
    kind: Arc<ListenerKind>,
    tls: Option<(tokio_rustls::TlsAcceptor, bool)>,
    mut conn_auth: crate::auth::ConnAuth,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<http::Upgraded> {
    let over_tls = tls.is_some();
    let stream: Box<dyn crate::link::Io> = match tls {
        None => Box::new(stream),
        Some((acceptor, cn_as_username)) => {
            match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    if cn_as_username {
                        conn_auth.identity = cert_identity(&tls_stream);
                    }
                    Box::new(tls_stream)
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    shared.breach(diglot_core::Limit::HandshakeTimeout);
                    tracing::info!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    let proto = match &*kind {
        ListenerKind::Ws(routes) => {
            return http::serve(shared, Arc::new(routes.clone()), stream, peer, over_tls, conn_auth).await
        }
        ListenerKind::Mqtt => Proto::Mqtt,
        ListenerKind::Stomp => Proto::Stomp,
    };
    let link = Link::Tcp(stream);
    let h = Handshaken { link, proto, transport: Transport::Tcp, tls: over_tls, peer, subprotocol: None, conn_auth };
    Some(http::Upgraded::Protocol(Box::new(h)))
}

/// The identity a verified client certificate names: its subject's CN as the username.
fn cert_identity<S>(tls: &tokio_rustls::server::TlsStream<S>) -> Option<diglot_auth::Identity> {
    let cert = tls.get_ref().1.peer_certificates()?.first()?;
    let username = crate::auth::cert_common_name(cert.as_ref())?;
    Some(diglot_auth::Identity { username, roles: Vec::new(), expires_at: None })
}

/// Opens (or creates) the store and restores its queues and bindings, off the reactor.
async fn open_store(config: &diglot_store::StoreConfig, cluster: bool) -> Result<(Router, Durable), StartError> {
    let path = config.path.display().to_string();
    let config = config.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let (store, _recovery) = diglot_store::Store::open(&config)?;
        // A cluster node tells the others which filters it wants.
        let mut router = if cluster { Router::tracking_interest() } else { Router::new() };
        // One sequence of message ids for the messages routed and those read back from the
        // store (STOMP `message-id` is unique).
        router.share_msg_ids(store.msg_ids());
        let durable = Durable::restore(store, &router)?;
        Ok((router, durable))
    })
    .await
    .map_err(|e| diglot_store::StoreError::Task(e.to_string()))
    .and_then(|r| r);
    opened.map_err(|source| StartError::Store { path, source })
}

/// Reloads the configuration on SIGHUP (see [`Shared::reload`]), without dropping connections.
async fn reload_on_sighup(shared: std::sync::Weak<Shared>, mut shutdown: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the configuration will not reload on it");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|down| *down) => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading");
                    let Some(shared) = shared.upgrade() else { return };
                    if let Err(e) = shared.reload() {
                        tracing::error!(error = %e, "reload refused; the old configuration stays in force");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (shared, shutdown.wait_for(|down| *down).await);
    }
}

/// The HTTP and WebSocket limits of new connections; a reload stores new values.
#[derive(Debug)]
pub(crate) struct EdgeLimits {
    /// Largest HTTP request head.
    pub(crate) http_header_bytes: AtomicUsize,
    /// Largest WebSocket frame payload.
    pub(crate) ws_frame_bytes: AtomicUsize,
    /// Largest WebSocket message, reassembled and inflated.
    pub(crate) ws_message_bytes: AtomicUsize,
}

impl EdgeLimits {
    fn new(spec: &Spec) -> EdgeLimits {
        EdgeLimits {
            http_header_bytes: AtomicUsize::new(spec.max_http_header_bytes),
            ws_frame_bytes: AtomicUsize::new(spec.max_ws_frame_bytes),
            ws_message_bytes: AtomicUsize::new(spec.max_ws_message_bytes),
        }
    }

    fn store(&self, spec: &Spec) {
        use std::sync::atomic::Ordering::Relaxed;
        self.http_header_bytes.store(spec.max_http_header_bytes, Relaxed);
        self.ws_frame_bytes.store(spec.max_ws_frame_bytes, Relaxed);
        self.ws_message_bytes.store(spec.max_ws_message_bytes, Relaxed);
    }
}

/// One connection counted against its source address; released on drop.
struct IpSlot {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
}

impl IpSlot {
    fn take(shared: &Arc<Shared>, ip: std::net::IpAddr) -> Option<IpSlot> {
        let mut n = shared.per_ip.entry(ip).or_insert(0);
        if *n >= shared.max_per_ip.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        *n += 1;
        Some(IpSlot { shared: shared.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.shared.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// Turns away a connection over the limit: HTTP 503 on a WebSocket port, a plain close otherwise.
async fn refuse(mut stream: TcpStream, http: bool) {
    if http {
        let body = "too many connections\n";
        let resp = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            body.len(),
            body
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(resp.as_bytes())).await;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_line_goes_once_a_second_with_the_count_held_back() {
        let t = Throttle::new();
        assert_eq!(t.due_at(100), Some(0));
        assert_eq!(t.due_at(100), None);
        assert_eq!(t.due_at(100), None);
        assert_eq!(t.due_at(102), Some(2));
        assert_eq!(t.due_at(102), None);
    }

    /// The size of the future that `f` returns, without calling it.
    fn future_size<A, Fut: std::future::Future, F: FnOnce(A) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Issue 8: the connection task's future is part of every idle connection's memory. It
    /// was 5.3 KB (debug build) with the handshakes and the driver's handlers inline; boxed,
    /// it is about 1.9 KB. tokio adds about 100 bytes to it (task header, scheduler, id,
    /// trailer, the task tracker's token) and aligns the task to 128 bytes on x86-64. With a
    /// future of 1,936 bytes the task took mimalloc's 2,048-byte bin; with 1,952 it took the
    /// 2,560-byte one, 0.6 KB more per idle connection (`load conns`, docs/benchmarks.md
    /// "Latency: …"). Release builds measure the same size as this test.
    #[test]
    fn a_connection_task_stays_small() {
        let size = future_size(&serve_conn);
        assert!(size <= 1_936, "the connection task's future is {size} bytes");
    }
}
