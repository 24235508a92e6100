//! `durable`: a persistent session (MQTT clean session 0, QoS 1 subscription) or a durable queue
//! (STOMP `/queue/…`, `ack:client-individual`) while its consumer is away.
//!
//! 1. the subscriber connects, subscribes, and disconnects (and waits until the broker closed);
//! 2. a publisher sends `--messages` QoS 1 messages (STOMP: `persistent:true` with a receipt),
//!    at most `--window` unacknowledged, and `ack_per_s` = messages / time to the last ack;
//! 3. the subscriber reconnects (MQTT: the same client id; STOMP: subscribes again, with
//!    `prefetch-count` = window), acknowledges every delivery, and drains until it has all or
//!    5 s pass without one; each payload carries its sequence number, so the run checks
//!    completeness (`complete`, `missing`) and order (`in_order`: first deliveries arrive in
//!    publish order; redeliveries are counted as `duplicates`);
//! 4. MQTT: a clean-session connect with the same id removes the session.
//!
//! The relay keeps nothing, so against it the scenario reports `applicable: false`.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use super::super::client::{Client, Event, Proto, Spec};
use super::super::measure;
use super::super::Ctx;
use super::{per_sec, put, shape, Metrics};

/// Runs the durable scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    let mut m = Metrics::new();
    if ctx.ep.proto == Proto::Raw {
        put(&mut m, "applicable", false);
        return Ok(m);
    }
    let (n, window) = (ctx.args.messages, ctx.args.window.max(1));
    let name = super::topic(ctx);
    let queue = ctx.ep.proto == Proto::Stomp;
    let mut spec = Spec::new(format!("{name}-sub"), &name);
    spec.clean = false;
    let mut sub = Client::connect(&ctx.ep, &ctx.auth, &spec).await.context("subscriber")?;
    sub.subscribe(&name, 1, queue, window).await.context("subscribe")?;
    sub.disconnect().await?;

    let mut publisher = super::publisher(ctx, &name, 0).await.context("publisher")?;
    let mut payload = measure::payload(shape(ctx).size);
    let start = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < n {
        while sent < n && sent - acked < u64::from(window) {
            measure::stamp(&mut payload, sent);
            publisher.tx.publish(&name, &payload, 1, queue).await?;
            sent += 1;
        }
        publisher.tx.flush().await?;
        let event = tokio::time::timeout(Duration::from_secs(10), publisher.rx.next()).await;
        let Ok(event) = event else { bail!("no acknowledgement for 10 s after {acked} of {n}") };
        let mut next = Some(event?);
        while let Some(event) = next {
            match event {
                Event::Acked => acked += 1,
                Event::Closed => bail!("the broker closed the publisher after {acked} acknowledgements"),
                _ => {}
            }
            next = publisher.rx.try_next()?;
        }
    }
    let ack_secs = start.elapsed().as_secs_f64();
    publisher.disconnect().await?;

    let mut sub = Client::connect(&ctx.ep, &ctx.auth, &spec).await.context("reconnect")?;
    let drain_start = Instant::now();
    if queue {
        sub.subscribe(&name, 1, true, window).await.context("resubscribe")?;
    }
    let mut seen = vec![false; n as usize];
    let (mut received, mut distinct, mut duplicates, mut out_of_order, mut foreign) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut highest, mut last) = (None::<u64>, drain_start);
    let bound = drain_start + Duration::from_secs_f64(30.0 + n as f64 / 500.0);
    while distinct < n && Instant::now() < bound {
        let event = match sub.rx.try_next()? {
            Some(event) => event,
            None => {
                sub.tx.flush().await?;
                match tokio::time::timeout(Duration::from_secs(5), sub.rx.next()).await {
                    Ok(event) => event?,
                    Err(_) => break,
                }
            }
        };
        match event {
            Event::Message { payload, ack } => {
                received += 1;
                last = Instant::now();
                match measure::read_stamp(&payload).filter(|s| *s < n) {
                    Some(s) if seen[s as usize] => duplicates += 1,
                    Some(s) => {
                        seen[s as usize] = true;
                        distinct += 1;
                        out_of_order += u64::from(highest.is_some_and(|h| s < h));
                        highest = highest.max(Some(s));
                    }
                    None => foreign += 1,
                }
                if let Some(ack) = ack {
                    sub.tx.ack(&ack).await?;
                }
            }
            Event::Closed => break,
            _ => {}
        }
    }
    let _ = sub.tx.flush().await;
    let _ = sub.disconnect().await;
    if ctx.ep.proto == Proto::Mqtt {
        spec.clean = true;
        if let Ok(c) = Client::connect(&ctx.ep, &ctx.auth, &spec).await {
            let _ = c.disconnect().await;
        }
    }
    let drain_secs = (last - drain_start).as_secs_f64();
    put(&mut m, "applicable", true);
    put(&mut m, "messages", n);
    put(&mut m, "acked", acked);
    put(&mut m, "ack_secs", ack_secs);
    put(&mut m, "ack_per_s", per_sec(acked, ack_secs).round());
    put(&mut m, "msgs_per_s", per_sec(acked, ack_secs).round());
    put(&mut m, "received", received);
    put(&mut m, "distinct", distinct);
    put(&mut m, "missing", n - distinct);
    put(&mut m, "duplicates", duplicates);
    put(&mut m, "out_of_order", out_of_order);
    put(&mut m, "foreign", foreign);
    put(&mut m, "complete", distinct == n);
    put(&mut m, "in_order", out_of_order == 0);
    put(&mut m, "drain_secs", drain_secs);
    put(&mut m, "drain_per_s", per_sec(distinct, drain_secs).round());
    put(&mut m, "deliveries_per_s", per_sec(distinct, drain_secs).round());
    Ok(m)
}
