//! `slow-consumer`: one publisher at a fixed `--rate` (default 5000 msg/s of 1 KiB, QoS 0) and a
//! fast subscriber, run twice for `--duration-secs` each: alone (the baseline), then with a
//! slow subscriber that reads `--slow-factor` (10) times slower than the publish rate through a
//! 16 KiB receive buffer, so that the broker has to hold, drop or shed what it cannot send.
//!
//! Reports the fast subscriber's rate in both phases, what the slow one got and whether the
//! broker closed it, and the broker's resident memory (`--pid`) sampled every 250 ms during the
//! slow phase (`rss_series`, every other sample), at its end, and a second after the slow
//! subscriber left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::time::Instant;

use super::super::client::{Client, Spec};
use super::super::measure::{self, Plan};
use super::super::Ctx;
use super::{per_sec, put, shape, Metrics};

struct Phase {
    sent: u64,
    fast_received: u64,
    fast_per_s: f64,
    slow_received: u64,
    slow_closed: bool,
    rss: Vec<(u64, u64)>,
    rss_end: Option<u64>,
    rss_after_close: Option<u64>,
}

/// Runs the slow-consumer scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    let rss_before = ctx.args.pid.and_then(measure::rss);
    let alone = phase(ctx, false).await.context("baseline phase")?;
    let with = phase(ctx, true).await.context("slow phase")?;
    let mut m = Metrics::new();
    put(&mut m, "msgs_per_s", per_sec(with.sent, ctx.args.duration_secs).round());
    put(&mut m, "deliveries_per_s", with.fast_per_s.round());
    put(&mut m, "fast_baseline_per_s", alone.fast_per_s.round());
    put(&mut m, "fast_with_slow_per_s", with.fast_per_s.round());
    put(&mut m, "fast_ratio", if alone.fast_per_s > 0.0 { with.fast_per_s / alone.fast_per_s } else { 0.0 });
    put(&mut m, "sent_baseline", alone.sent);
    put(&mut m, "sent_with_slow", with.sent);
    put(&mut m, "fast_received_baseline", alone.fast_received);
    put(&mut m, "fast_received_with_slow", with.fast_received);
    put(&mut m, "slow_received", with.slow_received);
    put(&mut m, "slow_closed_by_broker", with.slow_closed);
    if let Some(before) = rss_before {
        put(&mut m, "rss_before_bytes", before);
        let max = |p: &Phase| p.rss.iter().map(|s| s.1).max();
        put(&mut m, "rss_baseline_max_bytes", max(&alone));
        put(&mut m, "rss_max_bytes", max(&with));
        put(&mut m, "rss_end_bytes", with.rss_end);
        put(&mut m, "rss_after_close_bytes", with.rss_after_close);
        let series: Vec<_> = with.rss.iter().step_by(2).map(|(t, b)| json!([t, b])).collect();
        put(&mut m, "rss_series", series);
    }
    Ok(m)
}

async fn phase(ctx: &Ctx, with_slow: bool) -> anyhow::Result<Phase> {
    let sh = shape(ctx);
    let topic = format!("{}-{}", super::topic(ctx), if with_slow { "slow" } else { "alone" });
    let fast = super::subscriber(ctx, &topic, 0).await.context("fast subscriber")?;
    let slow = if with_slow {
        let mut spec = Spec::new(format!("{topic}-slow"), &topic);
        spec.socket.recv_buffer = Some(16 * 1024);
        let mut c = Client::connect(&ctx.ep, &ctx.auth, &spec).await.context("slow subscriber")?;
        c.subscribe(&topic, 0, false, 0).await?;
        Some(c)
    } else {
        None
    };
    let mut publisher = super::publisher(ctx, &topic, 0).await.context("publisher")?;
    let duration = Duration::from_secs_f64(ctx.args.duration_secs);
    let start = Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (sampling, pid) = (sampling.clone(), ctx.args.pid);
        async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Acquire) {
                if let Some(b) = pid.and_then(measure::rss) {
                    samples.push((start.elapsed().as_millis() as u64, b));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        }
    });
    let plan = Plan::until(start + duration + Duration::from_secs_f64(ctx.args.drain_secs), false);
    let fast = tokio::spawn(measure::consume(fast, plan.clone()));
    let slow = slow.map(|c| {
        let plan = Plan { stop_at_done: true, pace: Some(sh.rate / ctx.args.slow_factor.max(1.0)), ..plan.clone() };
        tokio::spawn(measure::consume(c, plan))
    });
    let mut payload = measure::payload(sh.size);
    let mut sent = 0u64;
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * sh.rate) as u64;
        while sent < due {
            measure::stamp(&mut payload, sent);
            publisher.tx.publish(&topic, &payload, 0, false).await?;
            sent += 1;
        }
        publisher.tx.flush().await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    plan.expected.store(sent, Ordering::Release);
    plan.done.store(true, Ordering::Release);
    let (fast_seen, fast) = fast.await?;
    let (slow_received, slow_closed, slow) = match slow {
        Some(task) => {
            let (seen, client) = task.await?;
            (seen.received, seen.closed, Some(client))
        }
        None => (0, false, None),
    };
    let rss_end = ctx.args.pid.and_then(measure::rss);
    drop(slow);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_close = ctx.args.pid.and_then(measure::rss);
    sampling.store(false, Ordering::Release);
    let rss = sampler.await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), fast.disconnect()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), publisher.disconnect()).await;
    Ok(Phase {
        sent,
        fast_received: fast_seen.received,
        fast_per_s: per_sec(fast_seen.received, ctx.args.duration_secs),
        slow_received,
        slow_closed,
        rss,
        rss_end,
        rss_after_close,
    })
}
