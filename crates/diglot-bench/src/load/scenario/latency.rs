//! `latency`: one publisher at a fixed `--rate` (default 1000 msg/s) for `--duration-secs`, one
//! subscriber, QoS 0. Each payload carries its send time (this process's clock, so no clock
//! sync); the subscriber records arrival − send in an HdrHistogram (µs, 3 significant digits).
//! Messages are sent on a fixed schedule and stamped when they are actually written, so a late
//! generator does not charge its lateness to the broker (nor does a broker that stalls the
//! generator get charged for the messages not sent meanwhile: compare `sent` with the plan).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::super::measure::{self, Plan};
use super::super::Ctx;
use super::{per_sec, percentiles, put, shape, Metrics};

/// Runs the latency scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    let sh = shape(ctx);
    let topic = super::topic(ctx);
    let sub = super::subscriber(ctx, &topic, 0).await.context("subscriber")?;
    let mut publisher = super::publisher(ctx, &topic, 0).await.context("publisher")?;
    let duration = Duration::from_secs_f64(ctx.args.duration_secs);
    let planned = (sh.rate * ctx.args.duration_secs).round().max(1.0) as u64;
    let start = Instant::now();
    let plan = Plan::until(start + duration + Duration::from_secs_f64(ctx.args.drain_secs), true);
    let reader = tokio::spawn(measure::consume(sub, plan.clone()));
    let mut payload = measure::payload(sh.size);
    let mut sent = 0u64;
    let mut error = None;
    for i in 0..planned {
        let due = start + Duration::from_secs_f64(i as f64 / sh.rate);
        if due > start + duration {
            break;
        }
        tokio::time::sleep_until(due).await;
        measure::stamp(&mut payload, measure::now_ns());
        let wrote = match publisher.tx.publish(&topic, &payload, 0, false).await {
            Ok(()) => publisher.tx.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = wrote {
            error = Some(e.to_string());
            break;
        }
        sent += 1;
    }
    let pub_secs = start.elapsed().as_secs_f64();
    plan.expected.store(sent, Ordering::Release);
    plan.done.store(true, Ordering::Release);
    let (seen, sub) = reader.await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), sub.disconnect()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), publisher.disconnect()).await;
    let mut m = Metrics::new();
    put(&mut m, "planned", planned);
    put(&mut m, "sent", sent);
    put(&mut m, "msgs_per_s", per_sec(sent, pub_secs).round());
    put(&mut m, "received", seen.received);
    put(&mut m, "deliveries_per_s", per_sec(seen.received, pub_secs).round());
    if let Some(h) = seen.hist.as_ref().filter(|h| !h.is_empty()) {
        percentiles(&mut m, h);
    }
    if let Some(e) = error.or(seen.error) {
        put(&mut m, "first_error", e);
    }
    Ok(m)
}
