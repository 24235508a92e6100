//! `diglot-bench`: Diglot's benchmarks. These measure; they assert nothing, and they are not
//! run by CI. Results and the commands that produced them live in `docs/benchmarks.md`.
//!
//! - `diglot-bench store`: durable-store throughput (appends/s and acks/s acknowledged under
//!   each durability policy, both engines) and disk bytes per message.
//! - `diglot-bench store --space`: disk space after a million 1 KiB messages are appended and
//!   all acked, after close and after reopen, both engines.
//! - `diglot-bench load SCENARIO --url URL`: a load generator for MQTT/STOMP brokers over
//!   WebSocket and TCP (fanin, fanout, latency, conns, durable, slow-consumer); one JSON line
//!   per run on stdout, a summary on stderr.
//! - `diglot-bench relay`: a bare WebSocket relay, the ceiling for the load scenarios.
//! - `diglot-bench report`: the Markdown section of `docs/benchmarks.md` from load runs.
//! - `diglot-bench cluster`: cross-node throughput and added latency through Redis against a
//!   single node (a redis-server of its own and in-process brokers).
//!
//! `store` prints progress on stderr and its Markdown report on stdout (and to `--out`).

use clap::{Parser, Subcommand};

mod cluster;
mod load;
mod relay;
mod report;
mod store;

#[derive(Debug, Parser)]
#[command(name = "diglot-bench", version, about = "Diglot benchmarks (measurements, not tests)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Durable store: throughput per engine × durability policy, and disk space.
    Store(store::StoreArgs),
    /// Load generator: one scenario against one broker (or the relay), one JSON line out.
    Load(load::LoadArgs),
    /// A bare WebSocket relay (rooms by path), the ceiling for `load`.
    Relay(relay::RelayArgs),
    /// The Markdown section of docs/benchmarks.md from the JSON lines of `load` runs.
    Report(report::ReportArgs),
    /// Cluster: cross-node throughput and latency vs one node.
    Cluster(cluster::ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Store(args) => runtime.block_on(store::run(args)),
        Command::Load(args) => runtime.block_on(load::run(args)),
        Command::Relay(args) => runtime.block_on(relay::run(args)),
        Command::Report(args) => report::run(args),
        Command::Cluster(args) => runtime.block_on(cluster::run(args)),
    }
}
