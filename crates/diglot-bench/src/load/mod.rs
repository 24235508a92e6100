//! `diglot-bench load`: a load generator for MQTT 3.1.1 and STOMP 1.2 brokers over WebSocket
//! and raw TCP (Diglot, Mosquitto, RabbitMQ), and for the bare relay of `diglot-bench relay`
//! (raw WebSocket messages), which is the ceiling every report compares against.
//!
//! Each run is one scenario against one target URL, bounded in time and in count; it prints
//! one JSON line on stdout and a human summary on stderr. The scenarios are in [`scenario`];
//! the wire formats are this module's own ([`mqtt`], [`stomp`]), small and batched, so that the
//! generator is not the bottleneck and shares no code with the broker it measures.

mod client;
mod measure;
mod mqtt;
mod scenario;
mod stomp;
mod transport;

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use client::{Auth, Endpoint};

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N publishers → 1 subscriber, QoS 0, as fast as they can.
    Fanin,
    /// 1 publisher → N subscribers, QoS 0, as fast as it can.
    Fanout,
    /// 1 → 1 at a fixed rate; stamp-to-arrival percentiles.
    Latency,
    /// N idle connections (MQTT keep-alive 60): setup rate and the broker's memory per connection.
    Conns,
    /// Persistent session / durable queue: QoS 1 while the subscriber is away, then drain.
    Durable,
    /// A subscriber 10× slower than the publish rate next to a fast one; broker memory over time.
    SlowConsumer,
}

impl Scenario {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Latency => "latency",
            Scenario::Conns => "conns",
            Scenario::Durable => "durable",
            Scenario::SlowConsumer => "slow-consumer",
        }
    }
}

/// Options of `diglot-bench load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Target URL: mqtt://H:P, mqtt+ws://H:P/path, stomp://H:P, stomp+ws://H:P/path, or
    /// ws://H:P for the relay.
    #[arg(long)]
    pub url: String,
    /// Name of the target in the report (diglot, mosquitto, rabbitmq, relay …).
    #[arg(long, default_value = "target")]
    pub target: String,
    /// PID of the broker, for its resident memory (conns, slow-consumer).
    #[arg(long)]
    pub pid: Option<u32>,
    /// STOMP `host` header (RabbitMQ: `/`); default: the target's IP.
    #[arg(long)]
    pub stomp_host: Option<String>,
    /// STOMP login / MQTT username.
    #[arg(long)]
    pub login: Option<String>,
    /// STOMP passcode / MQTT password.
    #[arg(long)]
    pub passcode: Option<String>,
    /// Seconds of publishing (fanin, fanout, latency; each phase of slow-consumer).
    #[arg(long, default_value_t = 5.0)]
    pub duration_secs: f64,
    /// Publishers (default: fanin 4, otherwise 1).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Subscribers (default: fanout 100, otherwise 1).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Payload bytes (at least 16: a stamp; default 16, slow-consumer 1024).
    #[arg(long)]
    pub size: Option<usize>,
    /// Messages per second (latency default 1000, slow-consumer default 5000).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Publishes per batched write.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Distinct topics the publishers spread their messages over (fanin, fanout; MQTT only):
    /// with more than one, message k of a publisher goes to `<topic>/<k mod N>` (each publisher
    /// starting elsewhere) and the subscribers subscribe to `<topic>/#`. A fleet of devices
    /// that each publish to a topic of their own.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Most messages published and not yet delivered to the slowest subscriber (fanin, fanout):
    /// the publishers wait beyond it, so the run measures a steady state instead of filling
    /// socket buffers with a backlog the broker works through long after the run.
    #[arg(long, default_value_t = 2000)]
    pub inflight: u64,
    /// Connections to open (conns).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connection handshakes in flight at once (conns).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Connections per source address before the next one (127.0.0.2, .3, …) is used (conns).
    #[arg(long, default_value_t = 28_000)]
    pub ports_per_source: usize,
    /// Seconds to hold the connections open before reading memory (conns).
    #[arg(long, default_value_t = 1.0)]
    pub hold_secs: f64,
    /// With the idle connections held (conns), run this scenario (fanin or fanout, with its
    /// options) on extra connections, check with an MQTT PINGREQ that the idle ones still
    /// answer, then close them and run it again: the throughput with and without them.
    #[arg(long, value_enum)]
    pub traffic: Option<Scenario>,
    /// QoS 1 messages to publish while the subscriber is away (durable).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Unacknowledged publishes in flight, and the drain's prefetch (durable).
    #[arg(long, default_value_t = 64)]
    pub window: u32,
    /// How many times slower the slow consumer reads than the publish rate (slow-consumer).
    #[arg(long, default_value_t = 10.0)]
    pub slow_factor: f64,
    /// Seconds a subscriber keeps draining after the publishers stopped (at most).
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
}

/// What a scenario needs to run.
#[derive(Clone)]
pub struct Ctx {
    /// The parsed target.
    pub ep: Endpoint,
    /// STOMP host and credentials.
    pub auth: Auth,
    /// The options.
    pub args: LoadArgs,
    /// Unique per run: topic, queue and client-id suffix.
    pub run_id: String,
}

/// Runs one scenario and prints its record (JSON on stdout, a summary on stderr).
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let ep = Endpoint::parse(&args.url).await?;
    let auth = Auth { stomp_host: args.stomp_host.clone(), login: args.login.clone(), passcode: args.passcode.clone() };
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let run_id = format!("{millis}-{}", std::process::id());
    let ctx = Ctx { ep, auth, args, run_id };
    // The hard bound of the whole run: its phases are bounded one by one, this is the backstop.
    // conns: setting up (and pinging) tens of thousands of connections takes its own time.
    let conns = ctx.args.hold_secs + ctx.args.connections as f64 / 250.0;
    let bound = Duration::from_secs_f64(3.0 * ctx.args.duration_secs + 2.0 * ctx.args.drain_secs + 120.0 + conns);
    let load_before = loadavg();
    let result = tokio::time::timeout(bound, scenario::run(&ctx)).await;
    let params = scenario::params(&ctx);
    let mut record = Map::new();
    record.insert("scenario".into(), json!(ctx.args.scenario.name()));
    record.insert("target".into(), json!(ctx.args.target));
    record.insert("protocol".into(), json!(ctx.ep.proto.name()));
    record.insert("transport".into(), json!(ctx.ep.transport()));
    record.insert("url".into(), json!(ctx.args.url));
    record.insert("params".into(), params);
    // The machine is shared: the 1-minute load average says how quiet it was.
    record.insert("loadavg_before".into(), json!(load_before));
    record.insert("loadavg_after".into(), json!(loadavg()));
    match result {
        Ok(Ok(m)) => {
            record.insert("ok".into(), json!(true));
            record.extend(m);
        }
        Ok(Err(e)) => {
            record.insert("ok".into(), json!(false));
            record.insert("error".into(), json!(format!("{e:#}")));
        }
        Err(_) => {
            record.insert("ok".into(), json!(false));
            record.insert("error".into(), json!(format!("run exceeded its bound of {:.0} s", bound.as_secs_f64())));
        }
    }
    let line = Value::Object(record);
    println!("{line}");
    eprintln!("{}", summary(&line));
    Ok(())
}

/// The 1-minute load average from `/proc/loadavg`.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// One human-readable line for a record.
fn summary(r: &Value) -> String {
    let num = |k: &str| r.get(k).and_then(Value::as_f64);
    let mut cols = vec![format!(
        "{:<13} {:<10} {:>5}/{:<3}",
        r["scenario"].as_str().unwrap_or(""),
        r["target"].as_str().unwrap_or(""),
        r["protocol"].as_str().unwrap_or(""),
        r["transport"].as_str().unwrap_or("")
    )];
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        cols.push(format!("FAILED: {e}"));
    }
    for (key, label) in scenario::SUMMARY_KEYS {
        if let Some(v) = num(key) {
            cols.push(format!("{label} {v:.0}"));
        } else if let Some(v) = r.get(*key).and_then(Value::as_bool) {
            cols.push(format!("{label} {v}"));
        }
    }
    cols.join("  ")
}
