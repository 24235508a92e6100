//! `conns`: opens `--connections` idle connections (MQTT: CONNECT with keep-alive 60 and its
//! CONNACK; STOMP: CONNECT/CONNECTED; relay: the WebSocket handshake), `--concurrency` at a
//! time, and reports the setup rate and the broker's resident memory (`VmRSS` of `--pid`)
//! before, after, and per connection. The first `--ports-per-source` connections use the
//! kernel's choice of source address (127.0.0.1); later ones bind 127.0.0.2, 127.0.0.3, … so
//! that one source address running out of ephemeral ports (about 28k) does not end the run.
//!
//! With `--traffic fanin|fanout`, messages flow while the connections are held: that
//! scenario runs on extra connections (`during_*` metrics, and the broker's memory after it),
//! every idle connection is asked for a PINGRESP (`alive_after_traffic`), the idle ones are
//! closed, and the scenario runs again on its own (`alone_*`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::client::{Client, Spec};
use super::super::{measure, Ctx, LoadArgs, Scenario};
use super::{per_sec, put, throughput, Metrics};

/// The source address of connection `i`: the kernel's choice for the first block, then
/// 127.0.0.2, 127.0.0.3, ….
fn source(i: usize, per_source: usize) -> Option<IpAddr> {
    let block = i / per_source.max(1);
    (block > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, (1 + block).min(254) as u8)))
}

/// Runs the connection scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Metrics> {
    let a = &ctx.args;
    let topic = super::topic(ctx);
    let rss_before = a.pid.and_then(measure::rss);
    let gate = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for i in 0..a.connections {
        let permit = gate.clone().acquire_owned().await?;
        let mut spec = Spec::new(format!("{topic}-{i}"), &topic);
        spec.keep_alive = 60;
        spec.socket.source = source(i, a.ports_per_source);
        let (ep, auth) = (ctx.ep.clone(), ctx.auth.clone());
        tasks.spawn(async move {
            let result = tokio::time::timeout(Duration::from_secs(15), Client::connect(&ep, &auth, &spec)).await;
            drop(permit);
            match result {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("no handshake within 15 s")),
            }
        });
    }
    let (mut open, mut failed, mut first_error) = (Vec::with_capacity(a.connections), 0u64, None);
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(client) => open.push(client),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let setup_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(a.hold_secs)).await;
    let rss_after = a.pid.and_then(measure::rss);
    let connected = open.len() as u64;
    let mut m = Metrics::new();
    put(&mut m, "connected", connected);
    put(&mut m, "failed", failed);
    put(&mut m, "setup_secs", setup_secs);
    put(&mut m, "setup_per_s", per_sec(connected, setup_secs).round());
    put(&mut m, "source_addresses", a.connections.div_ceil(a.ports_per_source.max(1)));
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        put(&mut m, "rss_before_bytes", before);
        put(&mut m, "rss_after_bytes", after);
        if connected > 0 {
            put(&mut m, "per_conn_bytes", (after as f64 - before as f64) / connected as f64);
        }
    }
    if let Some(e) = first_error {
        put(&mut m, "first_error", e);
    }
    if let Some(traffic) = a.traffic {
        anyhow::ensure!(
            matches!(traffic, Scenario::Fanin | Scenario::Fanout),
            "--traffic takes fanin or fanout, not {}",
            traffic.name()
        );
        let run = |phase: &str| Ctx {
            args: LoadArgs { scenario: traffic, ..a.clone() },
            run_id: format!("{}-{phase}", ctx.run_id),
            ..ctx.clone()
        };
        let during = throughput::run(&run("during")).await?;
        merge(&mut m, "during", &during);
        if let Some(rss) = a.pid.and_then(measure::rss) {
            put(&mut m, "rss_after_traffic_bytes", rss);
        }
        let (alive, checked) = alive(&mut open, a.concurrency).await;
        if checked > 0 {
            put(&mut m, "alive_after_traffic", alive);
        }
        drop(open);
        // Let the broker take the closed connections down before the run without them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let alone = throughput::run(&run("alone")).await?;
        merge(&mut m, "alone", &alone);
        let ratio = |k: &str| Some(m.get(&format!("during_{k}"))?.as_f64()? / m.get(&format!("alone_{k}"))?.as_f64()?);
        if let Some(r) = ratio("deliveries_per_s").filter(|r| r.is_finite()) {
            put(&mut m, "during_vs_alone", (r * 1000.0).round() / 1000.0);
        }
        return Ok(m);
    }
    // Closing is not measured; dropping the sockets closes them.
    drop(open);
    Ok(m)
}

/// Copies a traffic run's main figures into `m` as `{prefix}_{key}`.
fn merge(m: &mut Metrics, prefix: &str, run: &Metrics) {
    for key in ["msgs_per_s", "deliveries_per_s", "delivered_ratio", "sent", "received", "first_error"] {
        if let Some(v) = run.get(key) {
            put(m, &format!("{prefix}_{key}"), v.clone());
        }
    }
}

/// Pings every connection (`concurrency` at a time): how many answered, of how many that can
/// be asked (MQTT only).
async fn alive(open: &mut [Client], concurrency: usize) -> (u64, u64) {
    use futures::stream::{self, StreamExt};
    let answers: Vec<Option<bool>> = stream::iter(open.iter_mut())
        .map(|c| async move { c.ping().await.unwrap_or(Some(false)) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let checked = answers.iter().flatten().count() as u64;
    let alive = answers.iter().flatten().filter(|ok| **ok).count() as u64;
    (alive, checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_roll_over_per_block() {
        assert_eq!(source(0, 28_000), None);
        assert_eq!(source(27_999, 28_000), None);
        assert_eq!(source(28_000, 28_000), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert_eq!(source(56_000, 28_000), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
    }
}
