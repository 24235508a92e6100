//! `fanin` (N publishers → 1 subscriber) and `fanout` (1 publisher → N subscribers): QoS 0,
//! publishers as fast as the broker delivers for `--duration-secs`, in batches of `--batch`
//! publishes per write, with at most `--inflight` messages published and not yet delivered to
//! the slowest subscriber. Without that bound the publishers would only fill socket buffers
//! (loopback buffers hold hundreds of thousands of small messages), and the broker would work
//! through the backlog long after the run. A broker that drops QoS 0 would stall the window:
//! after 500 ms without progress the publishers count what is missing as `presumed_dropped`
//! and go on. Then the subscribers drain (until they have everything, or a second passes
//! without a delivery, or `--drain-secs`).
//!
//! With `--topics N` (MQTT), each publisher sends its messages to `<topic>/0` … `<topic>/<N-1>`
//! in turn and the subscribers subscribe to `<topic>/#`: a fleet of devices, each with a topic
//! of its own, rather than one topic.
//!
//! `msgs_per_s` is what the publishers sent (sent / publishing time); `deliveries_per_s` is
//! what the subscribers got (deliveries / time from the start to the last delivery), and
//! `delivered_ratio` shows drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::client::{Client, Proto};
use super::super::measure::{self, Plan, Waiting};
use super::super::Ctx;
use super::{per_sec, put, shape, Metrics};

/// The publishers' shared view of delivery progress.
struct Flow {
    sent: AtomicU64,
    forgiven: AtomicU64,
    delivered: Vec<Arc<AtomicU64>>,
    window: u64,
    waiting: Arc<Waiting>,
}

impl Flow {
    fn slowest(&self) -> u64 {
        self.delivered.iter().map(|d| d.load(Ordering::Acquire)).min().unwrap_or(u64::MAX)
    }

    fn lag(&self) -> u64 {
        let behind = self.sent.load(Ordering::Acquire).saturating_sub(self.forgiven.load(Ordering::Acquire));
        behind.saturating_sub(self.slowest())
    }

    /// Waits until the slowest subscriber is less than a window behind (or `until` passes),
    /// woken by the subscribers as they read.
    async fn wait(&self, until: Instant) {
        let (mut seen, mut since) = (self.slowest(), Instant::now());
        loop {
            let woken = self.waiting.notify.notified();
            tokio::pin!(woken);
            // Registered before the check, so a wake between the check and the wait counts.
            // Counted as waiting before the check, so a subscriber that moves on after the
            // check sees the count and wakes us.
            woken.as_mut().enable();
            self.waiting.count.fetch_add(1, Ordering::SeqCst);
            if self.lag() < self.window || Instant::now() >= until {
                self.waiting.count.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            // The timeout is for a broker that dropped what is missing: nothing wakes us then.
            let _ = tokio::time::timeout(Duration::from_millis(5), woken).await;
            self.waiting.count.fetch_sub(1, Ordering::SeqCst);
            let now = self.slowest();
            if now != seen {
                (seen, since) = (now, Instant::now());
            } else if since.elapsed() >= Duration::from_millis(500) {
                // No progress: the broker dropped what is missing (QoS 0 may be dropped).
                self.forgiven.fetch_add(self.lag(), Ordering::AcqRel);
                since = Instant::now();
            }
        }
    }
}

/// What one publisher sends: its messages go to the topics in turn, from `first` on.
struct Publish {
    topics: Arc<[String]>,
    first: usize,
    size: usize,
    batch: usize,
}

async fn publish(mut client: Client, p: Publish, flow: Arc<Flow>, end: Instant) -> Sent {
    let mut payload = measure::payload(p.size);
    let mut sent = 0u64;
    let mut error = None;
    let mut next = p.first % p.topics.len();
    'run: while Instant::now() < end {
        flow.wait(end).await;
        for _ in 0..p.batch {
            measure::stamp(&mut payload, sent);
            let topic = &p.topics[next];
            next = if next + 1 == p.topics.len() { 0 } else { next + 1 };
            if let Err(e) = client.tx.publish(topic, &payload, 0, false).await {
                error = Some(e);
                break 'run;
            }
            sent += 1;
        }
        flow.sent.fetch_add(p.batch as u64, Ordering::AcqRel);
        if let Err(e) = client.tx.flush().await {
            error = Some(e);
            break;
        }
    }
    Sent { sent, end: Instant::now(), error: error.map(|e| e.to_string()), client }
}

struct Sent {
    sent: u64,
    end: Instant,
    error: Option<String>,
    client: Client,
}

/// Runs fan-in or fan-out (the shape decides which).
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    let sh = shape(ctx);
    let topic = super::topic(ctx);
    let n = ctx.args.topics.max(1);
    anyhow::ensure!(
        n == 1 || ctx.ep.proto == Proto::Mqtt,
        "--topics above 1 needs an MQTT target (it subscribes to <topic>/#)"
    );
    let (topics, filter): (Arc<[String]>, String) = if n == 1 {
        (Arc::from([topic.clone()]), topic.clone())
    } else {
        ((0..n).map(|i| format!("{topic}/{i}")).collect(), format!("{topic}/#"))
    };
    let mut subs = Vec::new();
    for i in 0..sh.subscribers {
        subs.push(super::subscriber_of(ctx, &topic, &filter, i).await.context("subscriber")?);
    }
    let mut pubs = Vec::new();
    for i in 0..sh.publishers {
        pubs.push(super::publisher(ctx, &topic, i).await.context("publisher")?);
    }
    let duration = Duration::from_secs_f64(ctx.args.duration_secs);
    let cpu_before = ctx.args.pid.and_then(measure::cpu_secs);
    let start = Instant::now();
    let plan = Plan::until(start + duration + Duration::from_secs_f64(ctx.args.drain_secs), false);
    let flow = Arc::new(Flow {
        sent: AtomicU64::new(0),
        forgiven: AtomicU64::new(0),
        delivered: (0..subs.len()).map(|_| Arc::new(AtomicU64::new(0))).collect(),
        window: ctx.args.inflight.max(ctx.args.batch as u64),
        waiting: Arc::new(Waiting::default()),
    });
    let mut readers = JoinSet::new();
    for (mut client, progress) in subs.into_iter().zip(&flow.delivered) {
        // Counted, not read (no latency here).
        client.rx.skip_payloads();
        readers.spawn(measure::consume(
            client,
            Plan { progress: Some(progress.clone()), waiting: Some(flow.waiting.clone()), ..plan.clone() },
        ));
    }
    let mut writers = JoinSet::new();
    for (i, client) in pubs.into_iter().enumerate() {
        let p = Publish {
            topics: topics.clone(),
            first: i * n / sh.publishers.max(1),
            size: sh.size,
            batch: ctx.args.batch.max(1),
        };
        writers.spawn(publish(client, p, flow.clone(), start + duration));
    }
    let (mut sent, mut pub_end, mut pub_errors, mut keep) = (0u64, start, Vec::new(), Vec::new());
    while let Some(done) = writers.join_next().await {
        let done = done?;
        sent += done.sent;
        pub_end = pub_end.max(done.end);
        pub_errors.extend(done.error);
        keep.push(done.client);
    }
    plan.expected.store(sent, Ordering::Release);
    plan.done.store(true, Ordering::Release);
    let (mut received, mut last, mut closed, mut min_sub, mut max_sub) = (0u64, start, 0u64, u64::MAX, 0u64);
    let mut sub_errors = Vec::new();
    while let Some(done) = readers.join_next().await {
        let (seen, client) = done?;
        received += seen.received;
        last = last.max(seen.last.unwrap_or(start));
        closed += u64::from(seen.closed);
        min_sub = min_sub.min(seen.received);
        max_sub = max_sub.max(seen.received);
        sub_errors.extend(seen.error);
        keep.push(client);
    }
    for client in keep {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
    }
    let expected = sent * sh.subscribers as u64;
    let mut m = Metrics::new();
    put(&mut m, "sent", sent);
    put(&mut m, "publish_secs", (pub_end - start).as_secs_f64());
    put(&mut m, "msgs_per_s", per_sec(sent, (pub_end - start).as_secs_f64()).round());
    put(&mut m, "received", received);
    put(&mut m, "expected", expected);
    put(&mut m, "delivered_ratio", if expected > 0 { received as f64 / expected as f64 } else { 0.0 });
    put(&mut m, "presumed_dropped", flow.forgiven.load(Ordering::Acquire));
    put(&mut m, "deliveries_per_s", per_sec(received, (last - start).as_secs_f64()).round());
    // The target's own CPU per delivery: what a delivery costs the broker, whatever limits
    // the rate (on 2 shared cores that can be the generator itself).
    if let (Some(before), Some(after)) = (cpu_before, ctx.args.pid.and_then(measure::cpu_secs)) {
        put(&mut m, "target_cpu_secs", after - before);
        if received > 0 {
            put(&mut m, "target_cpu_ns_per_delivery", ((after - before) * 1e9 / received as f64).round());
        }
    }
    put(&mut m, "min_per_subscriber", if min_sub == u64::MAX { 0 } else { min_sub });
    put(&mut m, "max_per_subscriber", max_sub);
    put(&mut m, "subscribers_closed", closed);
    if let Some(e) = pub_errors.first().or(sub_errors.first()) {
        put(&mut m, "first_error", e.as_str());
    }
    Ok(m)
}
