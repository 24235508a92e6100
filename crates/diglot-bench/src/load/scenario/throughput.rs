//! `fanin` (N publishers → 1 subscriber) and `fanout` (1 publisher → N subscribers): QoS 0,
//! publishers as fast as they can for `--duration-secs`, in batches of `--batch` publishes
//! per write. Then the subscribers drain (until they have everything, or a second passes
//! without a delivery, or `--drain-secs`).
//!
//! `msgs_per_s` is what the publishers got written (sent / publishing time); `deliveries_per_s`
//! is what the subscribers got (deliveries / time from the start to the last delivery); a
//! broker that drops QoS 0 under load shows it in `delivered_ratio`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::measure::{self, Plan};
use super::super::Ctx;
use super::{per_sec, put, shape, Metrics};

/// Runs fan-in or fan-out (the shape decides which).
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    let sh = shape(ctx);
    let topic = super::topic(ctx);
    let mut subs = Vec::new();
    for i in 0..sh.subscribers {
        subs.push(super::subscriber(ctx, &topic, i).await.context("subscriber")?);
    }
    let mut pubs = Vec::new();
    for i in 0..sh.publishers {
        pubs.push(super::publisher(ctx, &topic, i).await.context("publisher")?);
    }
    let duration = Duration::from_secs_f64(ctx.args.duration_secs);
    let start = Instant::now();
    let plan = Plan {
        done: Arc::new(AtomicBool::new(false)),
        expected: Arc::new(AtomicU64::new(u64::MAX)),
        idle: Duration::from_secs(1),
        deadline: start + duration + Duration::from_secs_f64(ctx.args.drain_secs),
        stop_at_done: false,
        pace: None,
        latency: false,
    };
    let mut readers = JoinSet::new();
    for client in subs {
        readers.spawn(measure::consume(client, plan.clone()));
    }
    let mut writers = JoinSet::new();
    for mut client in pubs {
        let (topic, size, batch) = (topic.clone(), sh.size, ctx.args.batch.max(1));
        writers.spawn(async move {
            let mut payload = measure::payload(size);
            let mut sent = 0u64;
            let mut error = None;
            'run: while start.elapsed() < duration {
                for _ in 0..batch {
                    measure::stamp(&mut payload, sent);
                    if let Err(e) = client.tx.publish(&topic, &payload, 0, false).await {
                        error = Some(e);
                        break 'run;
                    }
                    sent += 1;
                }
                if let Err(e) = client.tx.flush().await {
                    error = Some(e);
                    break;
                }
                tokio::task::yield_now().await;
            }
            (sent, Instant::now(), error.map(|e| e.to_string()), client)
        });
    }
    let (mut sent, mut pub_end, mut pub_errors, mut keep) = (0u64, start, Vec::new(), Vec::new());
    while let Some(done) = writers.join_next().await {
        let (n, end, error, client) = done?;
        sent += n;
        pub_end = pub_end.max(end);
        pub_errors.extend(error);
        keep.push(client);
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
    put(&mut m, "deliveries_per_s", per_sec(received, (last - start).as_secs_f64()).round());
    put(&mut m, "min_per_subscriber", if min_sub == u64::MAX { 0 } else { min_sub });
    put(&mut m, "max_per_subscriber", max_sub);
    put(&mut m, "subscribers_closed", closed);
    if let Some(e) = pub_errors.first().or(sub_errors.first()) {
        put(&mut m, "first_error", e.as_str());
    }
    Ok(m)
}
