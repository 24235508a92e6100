//! `diglot-bench store`: the durable store's throughput and disk space, per engine (fjall,
//! sled) and durability policy (group, every, none), through the public `diglot_store` API
//! the broker uses (`Store::open`, `queue`, `append`, `ack`, `close`).
//!
//! One run of one configuration:
//! 1. open a fresh store in its own directory, with queue limits lifted (the defaults would
//!    refuse a million messages), and create one queue;
//! 2. `concurrency` tokio tasks (like that many publishers) each append their share of the
//!    messages, one at a time, each awaiting its acknowledgement before the next (which is
//!    what a publisher waiting for PUBACK does); appends/s = messages / wall time from the
//!    start until the last append resolved. Payloads are pseudo-random, so compression in an
//!    engine cannot flatter the space figures;
//! 3. the size of the directory while it holds every message ("full"), as `du` counts it
//!    (allocated blocks) and as apparent length;
//! 4. the same tasks ack their own messages (acks/s likewise);
//! 5. the size after the acks (still open), after `close`, right after reopening, after
//!    waiting for it to stop changing (the engines compact in the background; the wait is
//!    reported), and after the final close.
//!
//! With `--space`, the run appends a million 1 KiB messages per engine, also closes and
//! reopens the full store (timing the recovery), then acks them all and follows the space.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use diglot_core::{Qos, Topic};
use diglot_store::{Durability, EngineKind, QueueId, QueueLimits, Seq, Store, StoreConfig, StoredMessage};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// Options of `diglot-bench store`.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Engines to measure.
    #[arg(long, value_delimiter = ',', default_value = "fjall,sled")]
    engines: Vec<Engine>,
    /// Durability policies to measure (ignored with --space, which uses --space-durability).
    #[arg(long, value_delimiter = ',', default_value = "group,every,none")]
    durability: Vec<Policy>,
    /// Concurrent publishing tasks.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Messages each task appends (throughput mode).
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    /// Most messages in total of one `every` run (one sync per append is slow).
    #[arg(long, default_value_t = 5000)]
    every_cap: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Runs of each configuration.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// `group_commit_ms` of the store (the broker's default is 2).
    #[arg(long, default_value_t = StoreConfig::default().group_commit_ms)]
    group_commit_ms: u64,
    /// Parent directory for the stores (default: a fresh temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// After reopening, wait at most this long for the directory size to stop changing.
    #[arg(long, default_value_t = 10.0)]
    settle_max_secs: f64,
    /// The size counts as settled once unchanged for this long.
    #[arg(long, default_value_t = 3.0)]
    settle_stable_secs: f64,
    /// Give up on a run when no append or ack has resolved for this long (an engine hang);
    /// the run is reported as stalled and its store is abandoned, not closed.
    #[arg(long, default_value_t = 60.0)]
    stall_secs: f64,
    /// Space mode: append --space-messages messages and ack them all, per engine; report the
    /// directory size at each stage.
    #[arg(long)]
    space: bool,
    /// Messages of one space run.
    #[arg(long, default_value_t = 1_000_000)]
    space_messages: u64,
    /// Durability policy of the space runs.
    #[arg(long, value_enum, default_value = "group")]
    space_durability: Policy,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    Fjall,
    Sled,
}

impl Engine {
    fn kind(self) -> EngineKind {
        match self {
            Engine::Fjall => EngineKind::Fjall,
            Engine::Sled => EngineKind::Sled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    Group,
    Every,
    None,
}

impl Policy {
    fn durability(self) -> Durability {
        match self {
            Policy::Group => Durability::Group,
            Policy::Every => Durability::Every,
            Policy::None => Durability::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Policy::Group => "group",
            Policy::Every => "every",
            Policy::None => "none",
        }
    }
}

/// The size of a directory tree: allocated bytes (what `du` counts) and apparent bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    alloc: u64,
    apparent: u64,
}

/// Sums the sizes of every file under `path`. Files that vanish during the walk (an engine
/// deleting a segment) are skipped.
fn dir_size(path: &Path) -> Size {
    use std::os::unix::fs::MetadataExt;
    let mut total = Size::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total.alloc += meta.blocks() * 512;
                total.apparent += meta.len();
            }
        }
    }
    total
}

/// Polls the size of `path` until it has not changed for `stable` or `max` has passed.
/// Returns the last size and how long it waited.
async fn settle(path: &Path, max: Duration, stable: Duration) -> (Size, Duration) {
    let start = Instant::now();
    let mut last = dir_size(path);
    let mut last_change = start;
    loop {
        if last_change.elapsed() >= stable || start.elapsed() >= max {
            return (last, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = dir_size(path);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct RunResult {
    messages: u64,
    append_secs: f64,
    ack_secs: f64,
    /// Append latency percentiles (p50, p99), milliseconds.
    append_p50_ms: f64,
    append_p99_ms: f64,
    /// Engine syncs the writer did during the append phase.
    append_syncs: u64,
    full: Size,
    /// Space mode only: the full store after close, and after reopen (with recovery time).
    full_closed: Option<Size>,
    full_reopened: Option<(Size, Duration)>,
    acked_open: Size,
    closed: Size,
    reopened: Size,
    reopen_took: Duration,
    settled: Size,
    settle_waited: Duration,
    final_closed: Size,
}

impl RunResult {
    fn appends_per_sec(&self) -> f64 {
        self.messages as f64 / self.append_secs
    }
    fn acks_per_sec(&self) -> f64 {
        self.messages as f64 / self.ack_secs
    }
    fn appends_per_sync(&self) -> f64 {
        self.messages as f64 / self.append_syncs.max(1) as f64
    }
}

/// A small, fast PRNG (xorshift64*) for incompressible payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

struct RunSpec {
    engine: Engine,
    policy: Policy,
    concurrency: usize,
    total: u64,
    size: usize,
    group_commit_ms: u64,
    reopen_full: bool,
    settle_max: Duration,
    settle_stable: Duration,
    stall: Duration,
}

fn config(path: &Path, spec: &RunSpec) -> StoreConfig {
    StoreConfig {
        engine: spec.engine.kind(),
        durability: spec.policy.durability(),
        group_commit_ms: spec.group_commit_ms,
        queue_defaults: QueueLimits { max_messages: u64::MAX, max_bytes: u64::MAX, ..QueueLimits::default() },
        ..StoreConfig::at(path)
    }
}

fn open(cfg: &StoreConfig) -> anyhow::Result<(Store, Duration)> {
    let cfg = cfg.clone();
    let (store, recovery) = Store::open(&cfg).with_context(|| format!("opening {}", cfg.path.display()))?;
    Ok((store, recovery.took))
}

/// A phase that stopped making progress: no append or ack resolved for `RunSpec::stall`.
#[derive(Debug, Clone)]
struct Stall {
    phase: &'static str,
    done: u64,
    total: u64,
    /// Seconds from the start of the phase to the last progress.
    at_secs: f64,
}

/// Waits for every task of `set`, watching `progress` (operations resolved so far). Returns
/// the tasks' outputs, or the stall if nothing resolved for `stall`. On a stall the
/// remaining tasks are aborted when `set` is dropped.
async fn drive<T: 'static>(
    mut set: JoinSet<anyhow::Result<T>>,
    progress: &AtomicU64,
    total: u64,
    phase: &'static str,
    stall: Duration,
    start: Instant,
) -> anyhow::Result<Result<Vec<T>, Stall>> {
    let mut out = Vec::with_capacity(set.len());
    let mut last = progress.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                None => return Ok(Ok(out)),
                Some(result) => out.push(result??),
            },
            _ = tick.tick() => {
                let now = progress.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    last_change = Instant::now();
                } else if last_change.elapsed() >= stall {
                    let at_secs = last_change.duration_since(start).as_secs_f64();
                    return Ok(Err(Stall { phase, done: now, total, at_secs }));
                }
            }
        }
    }
}

/// Each task's seqs, the wall time and every append latency in microseconds.
type Appended = (Vec<Vec<Seq>>, Duration, Vec<u32>);

/// Appends `spec.total` messages from `spec.concurrency` tasks.
async fn append_all(store: &Store, queue: QueueId, spec: &RunSpec) -> anyhow::Result<Result<Appended, Stall>> {
    let topic = Topic::new("bench/store").map_err(|e| anyhow::anyhow!("topic: {e}"))?;
    let c = spec.concurrency as u64;
    let barrier = Arc::new(Barrier::new(spec.concurrency + 1));
    let progress = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for t in 0..c {
        let share = spec.total / c + u64::from(t < spec.total % c);
        let store = store.clone();
        let topic = topic.clone();
        let barrier = Arc::clone(&barrier);
        let progress = Arc::clone(&progress);
        let size = spec.size;
        set.spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut seqs = Vec::with_capacity(share as usize);
            let mut lat = Vec::with_capacity(share as usize);
            barrier.wait().await;
            for _ in 0..share {
                let mut body = vec![0u8; size];
                rng.fill(&mut body);
                let msg = StoredMessage {
                    topic: topic.clone(),
                    payload: Bytes::from(body),
                    qos: Qos::AtLeastOnce,
                    retain: false,
                    props: None,
                    published_ms: 0,
                    expires_ms: None,
                    retained_copy: false,
                };
                let t0 = Instant::now();
                let result = store.append(&msg, &[queue]).await?;
                lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                progress.fetch_add(1, Ordering::Relaxed);
                match result.into_iter().next() {
                    Some(Ok(seq)) => seqs.push(seq),
                    Some(Err(e)) => bail!("append refused: {e}"),
                    None => bail!("append returned no result"),
                }
            }
            Ok((seqs, lat))
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    let done = match drive(set, &progress, spec.total, "append", spec.stall, start).await? {
        Ok(done) => done,
        Err(stall) => return Ok(Err(stall)),
    };
    let elapsed = start.elapsed();
    let mut all_seqs = Vec::with_capacity(spec.concurrency);
    let mut all_lat = Vec::with_capacity(spec.total as usize);
    for (seqs, lat) in done {
        all_seqs.push(seqs);
        all_lat.extend(lat);
    }
    Ok(Ok((all_seqs, elapsed, all_lat)))
}

/// Acks every seq, each task its own list; returns the wall time.
async fn ack_all(
    store: &Store,
    queue: QueueId,
    seqs: Vec<Vec<Seq>>,
    spec: &RunSpec,
) -> anyhow::Result<Result<Duration, Stall>> {
    let barrier = Arc::new(Barrier::new(seqs.len() + 1));
    let progress = Arc::new(AtomicU64::new(0));
    let total = seqs.iter().map(|s| s.len() as u64).sum();
    let mut set = JoinSet::new();
    for list in seqs {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        let progress = Arc::clone(&progress);
        set.spawn(async move {
            barrier.wait().await;
            for seq in list {
                store.ack(queue, seq).await?;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    Ok(drive(set, &progress, total, "ack", spec.stall, start).await?.map(|_| start.elapsed()))
}

/// Closes the store, or reports a stall if the close does not finish within `spec.stall`.
async fn close(store: Store, spec: &RunSpec, phase: &'static str) -> anyhow::Result<Result<(), Stall>> {
    let keep = store.clone();
    match tokio::time::timeout(spec.stall, store.close()).await {
        Ok(result) => {
            result?;
            Ok(Ok(()))
        }
        Err(_) => {
            // The writer is stuck; dropping the last handle would join it and hang too.
            std::mem::forget(keep);
            Ok(Err(Stall { phase, done: 0, total: 0, at_secs: 0.0 }))
        }
    }
}

/// Abandons a store whose writer hangs: its handle is leaked so that no drop joins the
/// stuck writer thread, and its directory is left for the temporary directory's cleanup.
fn abandon(store: Store, stall: Stall) -> anyhow::Result<Outcome> {
    std::mem::forget(store);
    Ok(Outcome::Stalled(stall))
}

/// What a run ended with.
#[derive(Debug, Clone)]
enum Outcome {
    Done(Box<RunResult>),
    Stalled(Stall),
}

async fn one_run(path: &Path, spec: &RunSpec) -> anyhow::Result<Outcome> {
    if path.exists() {
        std::fs::remove_dir_all(path)?;
    }
    let cfg = config(path, spec);
    let (mut store, _) = open(&cfg)?;
    let queue = store.queue("bench")?;
    let syncs_before = store.stats().syncs;
    let (seqs, append_time, mut lat) = match append_all(&store, queue, spec).await? {
        Ok(appended) => appended,
        Err(stall) => return abandon(store, stall),
    };
    let append_syncs = store.stats().syncs - syncs_before;
    lat.sort_unstable();
    let full = dir_size(path);
    let mut r = RunResult {
        messages: spec.total,
        append_secs: append_time.as_secs_f64(),
        append_p50_ms: percentile(&lat, 0.50),
        append_p99_ms: percentile(&lat, 0.99),
        append_syncs,
        full,
        ..RunResult::default()
    };
    drop(lat);
    if spec.reopen_full {
        if let Err(stall) = close(store, spec, "close (full)").await? {
            return Ok(Outcome::Stalled(stall));
        }
        r.full_closed = Some(dir_size(path));
        let (s, took) = open(&cfg)?;
        store = s;
        r.full_reopened = Some((dir_size(path), took));
    }
    let queue = store.queue_id("bench").context("queue vanished after reopen")?;
    r.ack_secs = match ack_all(&store, queue, seqs, spec).await? {
        Ok(took) => took.as_secs_f64(),
        Err(stall) => return abandon(store, stall),
    };
    let left = store.queue_info(queue).map_or(0, |q| q.depth);
    if left != 0 {
        bail!("{left} entries left after acking every message");
    }
    r.acked_open = dir_size(path);
    if let Err(stall) = close(store, spec, "close (acked)").await? {
        return Ok(Outcome::Stalled(stall));
    }
    r.closed = dir_size(path);
    let (store, took) = open(&cfg)?;
    r.reopen_took = took;
    r.reopened = dir_size(path);
    let (settled, waited) = settle(path, spec.settle_max, spec.settle_stable).await;
    r.settled = settled;
    r.settle_waited = waited;
    if let Err(stall) = close(store, spec, "final close").await? {
        return Ok(Outcome::Stalled(stall));
    }
    r.final_closed = dir_size(path);
    if std::env::var_os("DIGLOT_BENCH_KEEP").is_none() {
        std::fs::remove_dir_all(path)?;
    }
    Ok(Outcome::Done(Box::new(r)))
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// Formats a number with thousands separators and no decimals.
fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// "median (min–max)" of a per-run figure, with `fmt` for each number; just the number when
/// there is one run.
fn stat(runs: &[RunResult], f: impl Fn(&RunResult) -> f64, fmt: impl Fn(f64) -> String) -> String {
    let v: Vec<f64> = runs.iter().map(f).collect();
    if v.is_empty() {
        return "stalled".to_owned();
    }
    let med = median(v.clone());
    if v.len() == 1 {
        return fmt(med);
    }
    let (lo, hi) = min_max(&v);
    format!("{} ({}–{})", fmt(med), fmt(lo), fmt(hi))
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / (1024.0 * 1024.0))
}

fn one_decimal(x: f64) -> String {
    format!("{x:.1}")
}

fn two_decimals(x: f64) -> String {
    format!("{x:.2}")
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "n/a".into()
    }
}

fn print_header(out: &mut String, args: &StoreArgs, base: &Path) {
    let argv: Vec<String> = std::env::args().collect();
    out.push_str(&format!("Command: `{}`\n\n", argv.join(" ")));
    out.push_str(&format!(
        "Stores under `{}`; {} concurrent tasks, {} B pseudo-random payloads, group_commit_ms = {}, \
         {} run(s) per configuration; figures are median (min–max) over the runs.\n\n",
        base.display(),
        args.concurrency,
        args.size,
        args.group_commit_ms,
        args.runs,
    ));
}

// ---------------------------------------------------------------------------------------------
// The two modes

/// Runs `diglot-bench store`.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.runs == 0 {
        bail!("--concurrency and --runs must be at least 1");
    }
    let temp;
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("diglot-bench-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut out = String::new();
    print_header(&mut out, &args, &base);
    if args.space {
        space_mode(&args, &base, &mut out).await?;
    } else {
        throughput_mode(&args, &base, &mut out).await?;
    }
    print!("{out}");
    if let Some(path) = &args.out {
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn describe(st: &Stall, stall: Duration) -> String {
    if st.total == 0 {
        format!("{} did not finish within {:.0} s", st.phase, stall.as_secs_f64())
    } else {
        format!(
            "{} phase: {} of {} resolved, then none for {:.0} s (last progress {:.1} s into the phase)",
            st.phase,
            thousands(st.done as f64),
            thousands(st.total as f64),
            stall.as_secs_f64(),
            st.at_secs
        )
    }
}

fn report_stalls(out: &mut String, stalls: &[String]) {
    if stalls.is_empty() {
        return;
    }
    out.push_str("**Stalled runs** (left out of the figures above; the store was abandoned, not closed):\n\n");
    for s in stalls {
        out.push_str(&format!("- {s}\n"));
    }
    out.push('\n');
}

fn spec(args: &StoreArgs, engine: Engine, policy: Policy, total: u64, reopen_full: bool) -> RunSpec {
    RunSpec {
        engine,
        policy,
        concurrency: args.concurrency,
        total,
        size: args.size,
        group_commit_ms: args.group_commit_ms,
        reopen_full,
        settle_max: Duration::from_secs_f64(args.settle_max_secs),
        settle_stable: Duration::from_secs_f64(args.settle_stable_secs),
        stall: Duration::from_secs_f64(args.stall_secs),
    }
}

async fn throughput_mode(args: &StoreArgs, base: &Path, out: &mut String) -> anyhow::Result<()> {
    let mut results: Vec<(Engine, Policy, Vec<RunResult>)> = Vec::new();
    let mut stalls: Vec<String> = Vec::new();
    // sled's I/O thread pool is process-wide: once one sled store hangs, later sled stores in
    // this process may hang in synchronous calls the watchdog cannot see, so skip them.
    let mut poisoned: Vec<Engine> = Vec::new();
    for &engine in &args.engines {
        for &policy in &args.durability {
            let mut total = args.messages * args.concurrency as u64;
            if policy == Policy::Every {
                total = total.min(args.every_cap);
            }
            let spec = spec(args, engine, policy, total, false);
            let mut runs = Vec::new();
            for i in 0..args.runs {
                if poisoned.contains(&engine) {
                    stalls.push(format!(
                        "{} {} run {}: skipped after an earlier {} stall in this process",
                        engine.kind(),
                        policy.name(),
                        i + 1,
                        engine.kind()
                    ));
                    continue;
                }
                let path = base.join(format!("{}-{}-{i}", spec.engine.kind(), policy.name()));
                let r = match one_run(&path, &spec).await? {
                    Outcome::Done(r) => *r,
                    Outcome::Stalled(st) => {
                        eprintln!(
                            "{} {} run {}: STALLED {}",
                            engine.kind(),
                            policy.name(),
                            i + 1,
                            describe(&st, spec.stall)
                        );
                        stalls.push(format!(
                            "{} {} run {}: {}",
                            engine.kind(),
                            policy.name(),
                            i + 1,
                            describe(&st, spec.stall)
                        ));
                        poisoned.push(engine);
                        continue;
                    }
                };
                eprintln!(
                    "{} {} run {}: {} msgs, {} appends/s, {} acks/s, full {} B/msg, after reopen {} MiB, \
                     after waiting {:.1} s {} MiB",
                    engine.kind(),
                    policy.name(),
                    i + 1,
                    r.messages,
                    thousands(r.appends_per_sec()),
                    thousands(r.acks_per_sec()),
                    thousands(r.full.alloc as f64 / r.messages as f64),
                    mib(r.reopened.alloc as f64),
                    r.settle_waited.as_secs_f64(),
                    mib(r.settled.alloc as f64),
                );
                runs.push(r);
            }
            results.push((engine, policy, runs));
        }
    }

    out.push_str("#### Throughput (acknowledged = the append/ack future resolved)\n\n");
    out.push_str(
        "| engine | durability | messages/run | appends/s | acks/s | append latency p50 ms | append latency p99 ms | appends per sync |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (engine, policy, runs) in &results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            engine.kind(),
            policy.name(),
            runs.first().map_or("—".to_owned(), |r| thousands(r.messages as f64)),
            stat(runs, RunResult::appends_per_sec, thousands),
            stat(runs, RunResult::acks_per_sec, thousands),
            stat(runs, |r| r.append_p50_ms, two_decimals),
            stat(runs, |r| r.append_p99_ms, two_decimals),
            stat(runs, RunResult::appends_per_sync, one_decimal),
        ));
    }

    out.push_str("\n#### Disk (du = allocated blocks; MiB = 2^20 bytes)\n\n");
    out.push_str(
        "| engine | durability | full: du B/msg | full: apparent B/msg | all acked, open: MiB | after close: MiB | \
         after reopen: MiB | after waiting: MiB | waited s | after final close: MiB |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (engine, policy, runs) in &results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            engine.kind(),
            policy.name(),
            stat(runs, |r| r.full.alloc as f64 / r.messages as f64, thousands),
            stat(runs, |r| r.full.apparent as f64 / r.messages as f64, thousands),
            stat(runs, |r| r.acked_open.alloc as f64, mib),
            stat(runs, |r| r.closed.alloc as f64, mib),
            stat(runs, |r| r.reopened.alloc as f64, mib),
            stat(runs, |r| r.settled.alloc as f64, mib),
            stat(runs, |r| r.settle_waited.as_secs_f64(), one_decimal),
            stat(runs, |r| r.final_closed.alloc as f64, mib),
        ));
    }

    // Ratios of medians.
    let med = |e: Engine, p: Policy, f: fn(&RunResult) -> f64| -> Option<f64> {
        results.iter().find(|(re, rp, _)| *re == e && *rp == p).map(|(_, _, runs)| median(runs.iter().map(f).collect()))
    };
    out.push_str("\n#### Ratios of medians\n\n");
    out.push_str("| comparison | appends/s | acks/s |\n|---|---:|---:|\n");
    let pairs = [(Policy::Group, Policy::Every), (Policy::None, Policy::Group), (Policy::None, Policy::Every)];
    for &engine in &args.engines {
        for (a, b) in pairs {
            if let (Some(a1), Some(b1), Some(a2), Some(b2)) = (
                med(engine, a, RunResult::appends_per_sec),
                med(engine, b, RunResult::appends_per_sec),
                med(engine, a, RunResult::acks_per_sec),
                med(engine, b, RunResult::acks_per_sec),
            ) {
                out.push_str(&format!(
                    "| {}: {} / {} | {} | {} |\n",
                    engine.kind(),
                    a.name(),
                    b.name(),
                    ratio(a1, b1),
                    ratio(a2, b2)
                ));
            }
        }
    }
    for &policy in &args.durability {
        if let (Some(a1), Some(b1), Some(a2), Some(b2)) = (
            med(Engine::Fjall, policy, RunResult::appends_per_sec),
            med(Engine::Sled, policy, RunResult::appends_per_sec),
            med(Engine::Fjall, policy, RunResult::acks_per_sec),
            med(Engine::Sled, policy, RunResult::acks_per_sec),
        ) {
            out.push_str(&format!("| {}: fjall / sled | {} | {} |\n", policy.name(), ratio(a1, b1), ratio(a2, b2)));
        }
    }
    out.push('\n');
    report_stalls(out, &stalls);
    Ok(())
}

async fn space_mode(args: &StoreArgs, base: &Path, out: &mut String) -> anyhow::Result<()> {
    let mut results: Vec<(Engine, Vec<RunResult>)> = Vec::new();
    let mut stalls: Vec<String> = Vec::new();
    let mut poisoned: Vec<Engine> = Vec::new();
    for &engine in &args.engines {
        let spec = spec(args, engine, args.space_durability, args.space_messages, true);
        let mut runs = Vec::new();
        for i in 0..args.runs {
            if poisoned.contains(&engine) {
                stalls.push(format!(
                    "{} run {}: skipped after an earlier {} stall in this process",
                    engine.kind(),
                    i + 1,
                    engine.kind()
                ));
                continue;
            }
            let path = base.join(format!("space-{}-{i}", engine.kind()));
            let r = match one_run(&path, &spec).await? {
                Outcome::Done(r) => *r,
                Outcome::Stalled(st) => {
                    eprintln!("space {} run {}: STALLED {}", engine.kind(), i + 1, describe(&st, spec.stall));
                    stalls.push(format!("{} run {}: {}", engine.kind(), i + 1, describe(&st, spec.stall)));
                    poisoned.push(engine);
                    continue;
                }
            };
            eprintln!(
                "space {} run {}: {} msgs, full {} MiB, after close {} MiB, after reopen {} MiB, after waiting {:.1} s {} MiB, final {} MiB",
                engine.kind(),
                i + 1,
                r.messages,
                mib(r.full.alloc as f64),
                mib(r.closed.alloc as f64),
                mib(r.reopened.alloc as f64),
                r.settle_waited.as_secs_f64(),
                mib(r.settled.alloc as f64),
                mib(r.final_closed.alloc as f64),
            );
            runs.push(r);
        }
        results.push((engine, runs));
    }

    out.push_str(&format!(
        "#### Space: {} × {} B messages appended, then all acked (durability = {}; du, MiB = 2^20 bytes)\n\n",
        thousands(args.space_messages as f64),
        args.size,
        args.space_durability.name()
    ));
    out.push_str("| stage |");
    for (engine, _) in &results {
        out.push_str(&format!(" {} |", engine.kind()));
    }
    out.push_str("\n|---|");
    for _ in &results {
        out.push_str("---:|");
    }
    out.push('\n');
    type Row = (&'static str, Box<dyn Fn(&RunResult) -> f64>, fn(f64) -> String);
    let rows: Vec<Row> = vec![
        ("appends/s", Box::new(RunResult::appends_per_sec), thousands),
        ("acks/s", Box::new(RunResult::acks_per_sec), thousands),
        ("full, store open: MiB", Box::new(|r| r.full.alloc as f64), mib),
        ("full, store open: du B/msg", Box::new(|r| r.full.alloc as f64 / r.messages as f64), thousands),
        ("full, after close: MiB", Box::new(|r| r.full_closed.map_or(f64::NAN, |s| s.alloc as f64)), mib),
        ("full, after reopen: MiB", Box::new(|r| r.full_reopened.map_or(f64::NAN, |(s, _)| s.alloc as f64)), mib),
        (
            "full, reopen (recovery) took: s",
            Box::new(|r| r.full_reopened.map_or(f64::NAN, |(_, t)| t.as_secs_f64())),
            two_decimals,
        ),
        ("all acked, store open: MiB", Box::new(|r| r.acked_open.alloc as f64), mib),
        ("all acked, after close: MiB", Box::new(|r| r.closed.alloc as f64), mib),
        ("all acked, after reopen: MiB", Box::new(|r| r.reopened.alloc as f64), mib),
        ("all acked, after waiting (open): MiB", Box::new(|r| r.settled.alloc as f64), mib),
        ("waited after reopen: s", Box::new(|r| r.settle_waited.as_secs_f64()), one_decimal),
        ("all acked, after final close: MiB", Box::new(|r| r.final_closed.alloc as f64), mib),
    ];
    for (label, f, fmt) in &rows {
        out.push_str(&format!("| {label} |"));
        for (_, runs) in &results {
            out.push_str(&format!(" {} |", stat(runs, f, fmt)));
        }
        out.push('\n');
    }
    out.push('\n');
    report_stalls(out, &stalls);
    Ok(())
}
