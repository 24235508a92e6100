//! Prometheus metrics (`GET /metrics`), through the `metrics` facade and
//! `metrics-exporter-prometheus`, which writes the exposition format.
//!
//! Each server has its own recorder (never the process-wide one), so brokers embedded side by
//! side in one process count apart. Most values already live in atomics elsewhere (the router,
//! the store, the auth counters, the limit breaches); a scrape copies them into the recorder
//! and renders. Only the two latency histograms are recorded as things happen: store syncs
//! (every one) and publish-to-delivery latency (one delivery in [`LATENCY_SAMPLE`] per
//! connection, so the hot path stays cheap).
//!
//! Per-queue series are capped at [`MAX_QUEUE_SERIES`] queues (the deepest), so a broker with
//! many queues cannot blow up a Prometheus server; `diglot_queues` gives the full count.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use diglot_core::{CloseReason, Limit, Transport};
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use parking_lot::Mutex;

use crate::server::Shared;

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Most durable queues with their own series.
pub(crate) const MAX_QUEUE_SERIES: usize = 100;

/// One delivery in this many (per connection, the first included) has its latency recorded: a
/// histogram sample is an atomic push that every core shares, 3 % of the broker in a 100-way
/// fan-out when it was one in 16.
pub(crate) const LATENCY_SAMPLE: u64 = 64;

const META: Metadata<'static> = Metadata::new("diglot", Level::INFO, None);

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Who moved messages and bytes: the two protocols and the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// MQTT over any transport.
    Mqtt,
    /// STOMP over any transport.
    Stomp,
    /// `POST /api/v1/publish`.
    Http,
}

impl Source {
    const ALL: [Source; 3] = [Source::Mqtt, Source::Stomp, Source::Http];

    fn label(self) -> &'static str {
        match self {
            Source::Mqtt => "mqtt",
            Source::Stomp => "stomp",
            Source::Http => "http",
        }
    }

    /// The source of an adapter's protocol name (`mqtt/5`, `stomp/1.2`, …).
    pub(crate) fn of(protocol: &str) -> Source {
        if protocol.starts_with("stomp") {
            Source::Stomp
        } else {
            Source::Mqtt
        }
    }
}

/// Messages and bytes of one [`Source`].
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) messages_in: diglot_core::Counter,
    pub(crate) messages_out: diglot_core::Counter,
    pub(crate) bytes_in: diglot_core::Counter,
    pub(crate) bytes_out: diglot_core::Counter,
}

/// The broker's metrics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    traffic: [Traffic; 3],
    /// Connections opened, by (protocol, transport).
    opened: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Connections closed, by (reason, protocol).
    closed: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Refused WebSocket handshakes and API calls, by HTTP status.
    rejected: Mutex<BTreeMap<u16, u64>>,
    /// Store sync durations.
    pub(crate) store_sync: Histogram,
    /// Publish-to-delivery latency (sampled).
    pub(crate) delivery_latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A recorder of this server's own, with every metric described.
    pub(crate) fn new() -> Metrics {
        // Gauges are set at every scrape; one that was not set for a minute belongs to a queue
        // that is gone (or out of the top), and is forgotten.
        let builder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(60)))
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, unit, help) in DESCRIPTIONS {
            recorder.describe_counter(name.into(), unit, SharedString::const_str(help));
        }
        let store_sync = recorder.register_histogram(&Key::from_static_name("diglot_store_sync_seconds"), &META);
        let delivery_latency =
            recorder.register_histogram(&Key::from_static_name("diglot_delivery_latency_seconds"), &META);
        Metrics {
            recorder,
            handle,
            traffic: Default::default(),
            opened: Mutex::default(),
            closed: Mutex::default(),
            rejected: Mutex::default(),
            store_sync,
            delivery_latency,
        }
    }

    /// The traffic counters of `source`.
    pub(crate) fn traffic(&self, source: Source) -> &Traffic {
        &self.traffic[source as usize]
    }

    /// Messages clients published (MQTT, STOMP and the HTTP API; never the broker's own
    /// `$SYS` updates).
    pub(crate) fn messages_in(&self) -> u64 {
        self.traffic.iter().map(|t| t.messages_in.get()).sum()
    }

    /// Messages written to clients, from topics and from durable queues alike.
    pub(crate) fn messages_out(&self) -> u64 {
        self.traffic.iter().map(|t| t.messages_out.get()).sum()
    }

    /// Counts a connection that reached its protocol adapter.
    pub(crate) fn opened(&self, protocol: &str, transport: Transport) {
        *self.opened.lock().entry((Source::of(protocol).label(), transport.label())).or_default() += 1;
    }

    /// Counts a connection's end.
    pub(crate) fn closed(&self, reason: &CloseReason, protocol: &str) {
        *self.closed.lock().entry((reason.label(), Source::of(protocol).label())).or_default() += 1;
    }

    /// Counts a refused WebSocket handshake or API call.
    pub(crate) fn rejected(&self, status: u16) {
        *self.rejected.lock().entry(status).or_default() += 1;
    }

    /// Drains the histograms' pending samples into their summaries; run it now and then, so
    /// that samples never pile up between scrapes.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder.register_counter(&key(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &META)
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect();
    Key::from_parts(name, labels)
}

/// HELP texts, in the order they render.
const DESCRIPTIONS: [(&str, Option<Unit>, &str); 27] = [
    ("diglot_uptime_seconds", Some(Unit::Seconds), "Seconds since the broker started."),
    ("diglot_connections", None, "Open connections by protocol and transport."),
    ("diglot_connections_opened_total", None, "Connections that reached MQTT or STOMP, by protocol and transport."),
    ("diglot_connections_closed_total", None, "Connections closed, by close reason and protocol."),
    ("diglot_messages_received_total", None, "Messages published by clients, by protocol (http: the API)."),
    ("diglot_messages_sent_total", None, "Messages delivered to clients, by protocol."),
    ("diglot_bytes_received_total", Some(Unit::Bytes), "Bytes read from clients, by protocol."),
    ("diglot_bytes_sent_total", Some(Unit::Bytes), "Bytes written to clients, by protocol."),
    ("diglot_deliveries_total", None, "Deliveries the router handed to subscribers' outboxes."),
    ("diglot_messages_dropped_total", None, "Messages not delivered or not kept, by reason."),
    ("diglot_dead_lettered_total", None, "Messages moved to a dead-letter queue."),
    ("diglot_events_dropped_total", None, "$SYS/broker/events/... messages dropped because too many came at once."),
    ("diglot_subscriptions", None, "Subscriptions in the router."),
    ("diglot_retained_messages", None, "Retained messages."),
    ("diglot_queues", None, "Durable queues (all of them; per-queue series are capped)."),
    ("diglot_queue_depth", None, "Entries in a durable queue (ready and unacknowledged)."),
    ("diglot_queue_bytes", Some(Unit::Bytes), "Bytes held by a durable queue."),
    ("diglot_queue_lag", None, "Entries of a durable queue waiting for a consumer."),
    ("diglot_queue_consumers", None, "Consumers of a durable queue."),
    ("diglot_store_sync_seconds", Some(Unit::Seconds), "Duration of the durable store's syncs."),
    ("diglot_delivery_latency_seconds", Some(Unit::Seconds), "Publish-to-delivery latency (sampled)."),
    ("diglot_auth_failures_total", None, "Failed logins (bad credentials, refused anonymous clients)."),
    ("diglot_acl_denied_total", None, "Publishes and subscriptions refused by the topic ACLs."),
    ("diglot_handshake_rejections_total", None, "Refused WebSocket handshakes and API calls, by HTTP status."),
    ("diglot_limit_breaches_total", None, "Breaches of configured limits, by limit."),
    ("diglot_cluster_link_up", None, "1 while the cluster's link to Redis is up, else 0 (only with [cluster])."),
    (
        "diglot_cluster_messages_total",
        None,
        "Messages between nodes, by outcome (forwarded, received, rejected, dropped_*).",
    ),
];

/// Renders every metric in the Prometheus text exposition format.
pub(crate) fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    m.gauge("diglot_uptime_seconds", &[]).set(shared.started.elapsed().as_secs_f64());
    connections(shared);
    for s in Source::ALL {
        let t = m.traffic(s);
        let l = [("protocol", s.label())];
        m.counter("diglot_messages_received_total", &l).absolute(t.messages_in.get());
        m.counter("diglot_messages_sent_total", &l).absolute(t.messages_out.get());
        m.counter("diglot_bytes_received_total", &l).absolute(t.bytes_in.get());
        m.counter("diglot_bytes_sent_total", &l).absolute(t.bytes_out.get());
    }
    // Every protocol, transport and close reason from the start, at 0 until it happens, so that
    // `rate()` and alerts see a series before its first event. The counts are copied first, so
    // that the two locks are never held together.
    let (opened, closed) = (m.opened.lock().clone(), m.closed.lock().clone());
    for p in [Source::Mqtt.label(), Source::Stomp.label()] {
        for t in [Transport::Tcp.label(), Transport::WebSocket.label()] {
            let n = opened.get(&(p, t)).copied().unwrap_or(0);
            m.counter("diglot_connections_opened_total", &[("protocol", p), ("transport", t)]).absolute(n);
        }
        for reason in CloseReason::LABELS {
            let n = closed.get(&(reason, p)).copied().unwrap_or(0);
            m.counter("diglot_connections_closed_total", &[("reason", reason), ("protocol", p)]).absolute(n);
        }
    }
    for (&status, &n) in m.rejected.lock().iter() {
        m.counter("diglot_handshake_rejections_total", &[("status", &status.to_string())]).absolute(n);
    }
    let router = shared.router.stats();
    let store = shared.durable.store_stats();
    let auth = &shared.auth.counters;
    m.counter("diglot_deliveries_total", &[]).absolute(router.delivered.get());
    let drops = [
        ("slow_consumer", router.dropped.get()),
        ("queue_full", store.rejected_full),
        ("queue_overflow", store.dropped_overflow),
        ("expired", store.expired),
        ("acl", auth.publish_denied.load(Ordering::Relaxed)),
    ];
    for (reason, n) in drops {
        m.counter("diglot_messages_dropped_total", &[("reason", reason)]).absolute(n);
    }
    m.counter("diglot_dead_lettered_total", &[]).absolute(store.dead_lettered);
    m.counter("diglot_events_dropped_total", &[]).absolute(shared.durable.events_dropped.load(Ordering::Relaxed));
    m.gauge("diglot_subscriptions", &[]).set(shared.router.subscription_count() as f64);
    m.gauge("diglot_retained_messages", &[]).set(shared.router.retained().len() as f64);
    m.counter("diglot_auth_failures_total", &[]).absolute(auth.failures.load(Ordering::Relaxed));
    m.counter("diglot_acl_denied_total", &[("action", "publish")])
        .absolute(auth.publish_denied.load(Ordering::Relaxed));
    m.counter("diglot_acl_denied_total", &[("action", "subscribe")])
        .absolute(auth.subscribe_denied.load(Ordering::Relaxed));
    let breaches = shared.breaches();
    for l in Limit::ALL {
        m.counter("diglot_limit_breaches_total", &[("limit", l.label())]).absolute(breaches.get(l));
    }
    queues(shared);
    if let Some(c) = &shared.cluster {
        m.gauge("diglot_cluster_link_up", &[]).set(if c.link_up() { 1.0 } else { 0.0 });
        for (outcome, n) in c.counters() {
            m.counter("diglot_cluster_messages_total", &[("outcome", outcome)]).absolute(n);
        }
    }
    m.handle.render()
}

/// Open connections by protocol and transport, every combination present (zeros included).
fn connections(shared: &Shared) {
    let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for s in [Source::Mqtt, Source::Stomp] {
        for t in [Transport::Tcp, Transport::WebSocket] {
            counts.insert((s.label(), t.label()), 0);
        }
    }
    for c in shared.conns.list() {
        let protocol = Source::of(c.details.lock().protocol).label();
        *counts.entry((protocol, c.transport.label())).or_default() += 1;
    }
    for ((protocol, transport), n) in counts {
        shared.metrics.gauge("diglot_connections", &[("protocol", protocol), ("transport", transport)]).set(n as f64);
    }
}

/// Per-queue gauges for the deepest [`MAX_QUEUE_SERIES`] queues. The series of a queue that
/// left the top (or was deleted) goes after the gauges' idle timeout.
fn queues(shared: &Shared) {
    let mut views = shared.durable.views();
    shared.metrics.gauge("diglot_queues", &[]).set(views.len() as f64);
    views.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.name.cmp(&b.name)));
    for v in views.iter().take(MAX_QUEUE_SERIES) {
        let l = [("queue", v.name.as_str())];
        let m = &shared.metrics;
        m.gauge("diglot_queue_depth", &l).set(v.depth as f64);
        m.gauge("diglot_queue_bytes", &l).set(v.bytes as f64);
        m.gauge("diglot_queue_lag", &l).set(v.lag as f64);
        m.gauge("diglot_queue_consumers", &l).set(v.consumers as f64);
    }
}

/// Runs [`Metrics::upkeep`] every few seconds until shutdown.
pub(crate) async fn upkeep(shared: std::sync::Weak<Shared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|down| *down) => return,
            _ = tick.tick() => {}
        }
        let Some(shared) = shared.upgrade() else { return };
        shared.metrics.upkeep();
    }
}
