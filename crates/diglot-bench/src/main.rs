//! `diglot-bench`: Diglot's benchmarks. These measure; they assert nothing, and they are not
//! run by CI. Results and the commands that produced them live in `docs/benchmarks.md`.
//!
//! - `diglot-bench store`: durable-store throughput (appends/s and acks/s acknowledged under
//!   each durability policy, both engines) and disk bytes per message.
//! - `diglot-bench store --space`: disk space after a million 1 KiB messages are appended and
//!   all acked, after close and after reopen, both engines.
//!
//! - `diglot-bench cluster`: cross-node throughput and added latency through Redis against a
//!   single node (a redis-server of its own and in-process brokers).
//!
//! Progress goes to stderr; the Markdown report goes to stdout (and to `--out` if given).

use clap::{Parser, Subcommand};

mod cluster;
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
    /// Cluster: cross-node throughput and latency vs one node.
    Cluster(cluster::ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Store(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(store::run(args))
        }
        Command::Cluster(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(cluster::run(args))
        }
    }
}
