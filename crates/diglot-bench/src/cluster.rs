//! `diglot-bench cluster`: what a cluster costs, in bounded time. It starts a redis-server of
//! its own (no persistence, a free loopback port) and brokers in-process, and compares three
//! setups with the same MQTT clients (rumqttc over TCP):
//! - `single`: one broker without `[cluster]`, publisher and subscriber on it;
//! - `cluster, same node`: two nodes, publisher and subscriber on node A (nothing crosses);
//! - `cross-node`: publisher on A, subscriber on B (every message goes through Redis).
//!
//! Each setup runs two phases: throughput (a burst of QoS 1 publishes, the subscriber at
//! QoS 1, messages/s from the first publish to the last delivery) and latency (QoS 0 publishes
//! paced one every `--pace-us`, publish-to-delivery time, p50/p99/max). Every phase has a
//! deadline; a phase that misses it reports what arrived.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// Options of `diglot-bench cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Messages in the throughput phase.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Messages in the latency phase.
    #[arg(long, default_value_t = 2_000)]
    paced: usize,
    /// Microseconds between two paced messages.
    #[arg(long, default_value_t = 1_000)]
    pace_us: u64,
    /// Payload bytes (at least 16: a send timestamp).
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// The deadline of each phase, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    redis_server: String,
}

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis(binary: &str) -> anyhow::Result<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {binary} (scripts/redis-test-server installs it)"))?;
    let redis = Redis(child, port);
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(redis);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("redis-server did not listen")
}

fn config(redis: Option<(&Redis, &str)>) -> diglot::Config {
    let mut c = diglot::Config::ephemeral();
    if let Some((r, node)) = redis {
        c.cluster.redis_url = format!("redis://127.0.0.1:{}/", r.1);
        c.cluster.node_id = node.into();
        c.cluster.channel_prefix = "bench".into();
    }
    c
}

/// A client whose incoming publishes arrive on a channel: (receive time, payload).
fn client(id: &str, b: &diglot::Broker) -> (AsyncClient, mpsc::UnboundedReceiver<(Instant, bytes::Bytes)>) {
    let addr = b.mqtt_addr().expect("mqtt listener");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(100);
    let (c, mut ev) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = e {
                if tx.send((Instant::now(), p.payload)).is_err() {
                    return;
                }
            }
        }
    });
    (c, rx)
}

struct Phase {
    received: usize,
    rate: f64,
    latencies: Vec<Duration>,
}

async fn phase(
    args: &ClusterArgs,
    publisher: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<(Instant, bytes::Bytes)>,
    topic: &str,
    n: usize,
    paced: bool,
) -> Phase {
    let base = Instant::now();
    let size = args.size.max(16);
    let pace = Duration::from_micros(args.pace_us);
    let p = publisher.clone();
    let topic_owned = topic.to_string();
    tokio::spawn(async move {
        for i in 0..n {
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
            payload[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            let qos = if paced { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            if p.publish(topic_owned.as_str(), qos, false, payload).await.is_err() {
                return;
            }
            if paced {
                tokio::time::sleep(pace).await;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut latencies = Vec::with_capacity(n);
    let mut last = base;
    while latencies.len() < n {
        let Ok(Some((at, payload))) = tokio::time::timeout_at(deadline, rx.recv()).await else { break };
        let sent = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
        latencies.push(at.duration_since(base).saturating_sub(Duration::from_nanos(sent)));
        last = at;
    }
    let secs = last.duration_since(base).as_secs_f64().max(1e-9);
    Phase { received: latencies.len(), rate: latencies.len() as f64 / secs, latencies }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Waits until `b` knows that another node subscribed (the cluster view lists a filter).
async fn wait_remote_interest(b: &diglot::Broker, filter: &str) -> anyhow::Result<()> {
    let addr = b.ws_addr().context("ws listener")?;
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /api/v1/cluster HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        if body.contains(&format!("\"{filter}\"")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the other node's interest never arrived")
}

/// Runs the three setups and prints a Markdown table.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let redis = start_redis(&args.redis_server).await?;
    let mut rows = Vec::new();
    for setup in ["single", "cluster, same node", "cross-node"] {
        eprintln!("{setup}…");
        let (ca, cb) = (config((setup != "single").then_some((&redis, "a"))), config(Some((&redis, "b"))));
        let a = diglot::Broker::start(&ca).await?;
        let b = diglot::Broker::start(&cb).await?;
        let (sub_at, topic) = if setup == "cross-node" { (&b, "bench/cross") } else { (&a, "bench/local") };
        let (sub, mut rx) = client("bench-sub", sub_at);
        sub.subscribe(topic, QoS::AtLeastOnce).await?;
        if setup == "cross-node" {
            wait_remote_interest(&a, topic).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (publisher, _) = client("bench-pub", &a);
        let burst = phase(&args, &publisher, &mut rx, topic, args.messages, false).await;
        let mut paced = phase(&args, &publisher, &mut rx, topic, args.paced, true).await;
        paced.latencies.sort();
        rows.push((setup, burst, paced));
        let _ = publisher.disconnect().await;
        let _ = sub.disconnect().await;
        a.shutdown().await;
        b.shutdown().await;
        for c in [ca, cb] {
            let _ = std::fs::remove_dir_all(&c.store.path);
        }
    }
    println!("| setup | burst: delivered | burst: msgs/s | paced: delivered | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (setup, burst, paced) in &rows {
        let l = &paced.latencies;
        println!(
            "| {setup} | {}/{} | {:.0} | {}/{} | {:.3} | {:.3} | {:.3} |",
            burst.received,
            args.messages,
            burst.rate,
            paced.received,
            args.paced,
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        );
    }
    Ok(())
}
