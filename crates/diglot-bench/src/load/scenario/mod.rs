//! The scenarios of `diglot-bench load`, one file each (fan-in and fan-out share one), and
//! what they share: resolved parameters, client specs, and the summary columns.

mod conns;
mod durable;
mod latency;
mod slow;
mod throughput;

use serde_json::{json, Map, Value};

use super::client::{Client, Proto, Spec};
use super::{Ctx, LoadArgs, Scenario};

/// The scenario's metrics, merged into its record.
pub type Metrics = Map<String, Value>;

/// Metrics shown in the stderr summary, with their labels, in order.
pub const SUMMARY_KEYS: &[(&str, &str)] = &[
    ("msgs_per_s", "msgs/s"),
    ("deliveries_per_s", "deliveries/s"),
    ("p50_us", "p50µs"),
    ("p99_us", "p99µs"),
    ("max_us", "maxµs"),
    ("connected", "conns"),
    ("setup_per_s", "setup/s"),
    ("per_conn_bytes", "B/conn"),
    ("during_deliveries_per_s", "deliveries/s-held"),
    ("alone_deliveries_per_s", "deliveries/s-alone"),
    ("alive_after_traffic", "alive"),
    ("ack_per_s", "acked/s"),
    ("drain_per_s", "drained/s"),
    ("complete", "complete"),
    ("in_order", "in-order"),
    ("fast_baseline_per_s", "fast-alone/s"),
    ("fast_with_slow_per_s", "fast-with-slow/s"),
    ("rss_max_bytes", "rss-max"),
];

/// Publishers, subscribers, payload size and rate after the scenario's defaults.
pub struct Shape {
    /// Publishers.
    pub publishers: usize,
    /// Subscribers.
    pub subscribers: usize,
    /// Payload bytes.
    pub size: usize,
    /// Messages per second (fixed-rate scenarios).
    pub rate: f64,
}

/// The resolved shape of a run.
pub fn shape(ctx: &Ctx) -> Shape {
    let a = &ctx.args;
    let s = a.scenario;
    Shape {
        publishers: a.publishers.unwrap_or(if s == Scenario::Fanin { 4 } else { 1 }),
        subscribers: a.subscribers.unwrap_or(if s == Scenario::Fanout { 100 } else { 1 }),
        size: a.size.unwrap_or(if s == Scenario::SlowConsumer { 1024 } else { 16 }).max(16),
        rate: a.rate.unwrap_or(if s == Scenario::SlowConsumer { 5000.0 } else { 1000.0 }),
    }
}

/// The parameters that matter for the scenario, for the record.
pub fn params(ctx: &Ctx) -> Value {
    let a = &ctx.args;
    let sh = shape(ctx);
    match a.scenario {
        Scenario::Fanin | Scenario::Fanout => json!({
            "publishers": sh.publishers, "subscribers": sh.subscribers, "size": sh.size, "qos": 0,
            "duration_secs": a.duration_secs, "batch": a.batch, "inflight": a.inflight,
            "topics": a.topics.max(1),
        }),
        Scenario::Latency => json!({"rate": sh.rate, "size": sh.size, "qos": 0, "duration_secs": a.duration_secs}),
        Scenario::Conns => {
            let mut p = json!({
                "connections": a.connections, "concurrency": a.concurrency, "keep_alive": 60,
                "ports_per_source": a.ports_per_source, "hold_secs": a.hold_secs,
            });
            if let Some(t) = a.traffic {
                let traffic = Ctx { args: LoadArgs { scenario: t, ..a.clone() }, ..ctx.clone() };
                p["traffic"] = json!(t.name());
                p["traffic_params"] = params(&traffic);
            }
            p
        }
        Scenario::Durable => json!({"messages": a.messages, "window": a.window, "size": sh.size, "qos": 1}),
        Scenario::SlowConsumer => json!({
            "rate": sh.rate, "size": sh.size, "qos": 0, "slow_factor": a.slow_factor,
            "duration_secs": a.duration_secs,
        }),
    }
}

/// Runs the scenario of `ctx` and returns its metrics.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    match ctx.args.scenario {
        Scenario::Fanin | Scenario::Fanout => throughput::run(ctx).await,
        Scenario::Latency => latency::run(ctx).await,
        Scenario::Conns => conns::run(ctx).await,
        Scenario::Durable => durable::run(ctx).await,
        Scenario::SlowConsumer => slow::run(ctx).await,
    }
}

/// The topic (queue, room) name of this run.
fn topic(ctx: &Ctx) -> String {
    format!("bench-{}-{}", ctx.args.scenario.name(), ctx.run_id)
}

/// Connects a subscriber of `topic` (QoS 0).
async fn subscriber(ctx: &Ctx, topic: &str, n: usize) -> anyhow::Result<Client> {
    subscriber_of(ctx, topic, topic, n).await
}

/// Connects a subscriber, named after `topic`, to `filter` (QoS 0).
async fn subscriber_of(ctx: &Ctx, topic: &str, filter: &str, n: usize) -> anyhow::Result<Client> {
    let spec = Spec::new(format!("{topic}-s{n}"), topic);
    let mut client = Client::connect(&ctx.ep, &ctx.auth, &spec).await?;
    client.subscribe(filter, 0, false, 0).await?;
    Ok(client)
}

/// Connects a publisher to `topic` (on the relay: a sender that receives nothing).
async fn publisher(ctx: &Ctx, topic: &str, n: usize) -> anyhow::Result<Client> {
    let mut spec = Spec::new(format!("{topic}-p{n}"), topic);
    spec.send_only = ctx.ep.proto == Proto::Raw;
    Client::connect(&ctx.ep, &ctx.auth, &spec).await
}

/// Messages per second, 0 when no time passed.
fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Inserts `key: value` into `m` (any JSON value).
fn put(m: &mut Metrics, key: &str, value: impl Into<Value>) {
    m.insert(key.to_string(), value.into());
}

/// The latency percentiles of a histogram (µs).
fn percentiles(m: &mut Metrics, h: &hdrhistogram::Histogram<u64>) {
    put(m, "p50_us", h.value_at_quantile(0.50));
    put(m, "p90_us", h.value_at_quantile(0.90));
    put(m, "p99_us", h.value_at_quantile(0.99));
    put(m, "p999_us", h.value_at_quantile(0.999));
    put(m, "max_us", h.max());
    put(m, "mean_us", (h.mean() * 10.0).round() / 10.0);
}
