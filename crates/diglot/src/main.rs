//! The `diglot` daemon: command line, configuration, logging, signals.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use diglot::{Broker, Config};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: a broker allocates and frees small blocks on every
/// message, from both worker threads (docs/architecture.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Diglot: an MQTT and STOMP broker on one WebSocket port.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file (default: ./broker.toml when it exists, else built-in defaults).
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive list);
    /// overrides RUST_LOG and the config's `log.level`.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Serve the repository's `examples/` directory (found from the current directory) as
    /// static files: the chat page is then http://127.0.0.1:8080/chat/. Sets `http.static_dir`.
    #[arg(long)]
    serve_examples: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Commands other than running the broker.
#[derive(Debug, Subcommand)]
enum Command {
    /// Read a password (one line) from standard input and print its argon2id hash, for
    /// `password_hash` in `[auth] users`.
    HashPassword,
}

/// `diglot hash-password`: one line from stdin (without its line ending) to an argon2id PHC
/// string on stdout.
fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    println!("{}", diglot_auth::password::hash(password.as_bytes())?);
    Ok(())
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike; the Rust bindings do
/// not name it for v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed pages before it gives them back to the system, in ms, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. mimalloc v3 waits 1,000 ms (v2 waited 10): after a
/// burst, a slow consumer's outbox or a drain, the broker's resident memory then stays up to
/// a second higher than what it holds, which is what an operator and an outbox bound are
/// judged by. At 10 ms the QoS 0 fan-in and fan-out over WebSocket measured the same within
/// noise (docs/benchmarks.md, section 7, "Payload copy, outbox cost and the purge delay").
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets mimalloc's options that the environment does not set.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` only stores an integer option; any thread may call it at any
        // time, and the purge delay is read afresh on every purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// How often a worker thread that runs out of work lets mimalloc collect, and how often it
/// also has it give freed memory back to the system at once.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_millis(10);
const RETURN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Run when a worker thread parks. At most every [`COLLECT_EVERY`] it lets mimalloc take back
/// the blocks that other threads freed into this thread's pages (a message is allocated on the
/// publisher's thread and freed wherever its last delivery went) and reuse or release the pages
/// that emptied; at most every [`RETURN_EVERY`] it also returns freed memory to the system
/// without waiting for the purge delay. Measured in docs/benchmarks.md ("One waker, whole
/// STOMP frames and messages kept as they came"): a forced collection every 10 ms cost about
/// 15 % more CPU at 1,000 messages/s; these two cost nothing measurable.
fn collect_allocator() {
    use std::cell::Cell;
    use std::time::Instant;
    thread_local! {
        static COLLECTED: Cell<Option<Instant>> = const { Cell::new(None) };
        static RETURNED: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = |last: Option<Instant>, every| last.is_none_or(|at| now.duration_since(at) >= every);
    if !due(COLLECTED.get(), COLLECT_EVERY) {
        return;
    }
    COLLECTED.set(Some(now));
    let force = due(RETURNED.get(), RETURN_EVERY);
    if force {
        RETURNED.set(Some(now));
    }
    // SAFETY: `mi_collect` only works on the calling thread's own heap and mimalloc's shared
    // structures under their own locks; any thread may call it at any time.
    unsafe { libmimalloc_sys::mi_collect(force) };
}

fn main() -> ExitCode {
    tune_allocator();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diglot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration and the file it came from (none: built-in defaults).
fn load(cli: &Cli) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = match &cli.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("broker.toml")).filter(|p| p.exists()),
    };
    let (mut config, path) = match path {
        Some(p) => (Config::load(&p)?, Some(p)),
        None => (Config::default(), None),
    };
    if cli.serve_examples {
        config.http.static_dir = examples_dir()?.display().to_string();
    }
    Ok((config, path))
}

/// `--serve-examples`: `./examples`, made absolute so the log and `--print-config` say where.
fn examples_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_dir().context("--serve-examples: cannot read the current directory")?.join("examples");
    anyhow::ensure!(
        dir.join("chat").is_dir(),
        "--serve-examples: {} is not Diglot's examples directory; run diglot from the repository root",
        dir.display()
    );
    Ok(dir)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let (config, path) = load(&cli)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let filter = match (&cli.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => EnvFilter::try_new(level).context("--log-level")?,
        (None, Ok(env)) if !env.is_empty() => EnvFilter::try_new(env).context("RUST_LOG")?,
        _ => EnvFilter::try_new(&config.log.level).context("log.level")?,
    };
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        diglot::config::LogFormat::Json => fmt.json().with_current_span(false).init(),
        diglot::config::LogFormat::Text => {
            fmt.with_target(false).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).init()
        }
    }

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if config.server.worker_threads > 0 {
        rt.worker_threads(config.server.worker_threads);
    }
    rt.on_thread_park(collect_allocator);
    let rt = rt.build().context("cannot start the async runtime")?;
    rt.block_on(serve(config, path))
}

async fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let broker = Broker::start(&config).await?;
    if !config.http.static_dir.is_empty() {
        tracing::info!(dir = %config.http.static_dir, "serving static files");
    }
    if let Some(path) = path {
        broker.reload_from(path);
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "diglot started");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let clean = broker.shutdown().await;
    tracing::info!(clean, "stopped");
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("cannot listen for Ctrl-C")
}
