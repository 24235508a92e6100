//! The `diglot` daemon: command line, configuration, logging, signals.

use std::io::Write;
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
    /// Print the effective configuration as TOML and exit (secrets shown as REDACTED).
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
    let hash = diglot_auth::password::hash(password.as_bytes())?;
    writeln!(std::io::stdout(), "{hash}").context("cannot print the hash")?;
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
            // Not `eprintln!`, which panics when stderr is gone.
            let _ = writeln!(std::io::stderr(), "diglot: error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: an error whose message already
/// quotes its cause (`cannot listen on …: Address already in use`) does not repeat it.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
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
        std::io::stdout()
            .write_all(config.redacted().to_toml().as_bytes())
            .context("cannot print the configuration")?;
        return Ok(());
    }
    // `--log-level` and RUST_LOG override the file's `log.level`, at start and at a reload.
    let (filter, overridden_by) = match (&cli.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => {
            diglot::config::check_log_level(level).map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
            (EnvFilter::try_new(level).context("--log-level")?, Some("--log-level"))
        }
        (None, Ok(env)) if !env.is_empty() => (EnvFilter::try_new(env).context("RUST_LOG")?, Some("RUST_LOG")),
        _ => (EnvFilter::try_new(&config.log.level).context("log.level")?, None),
    };
    // A log pipe that closes (a log shipper that died) must not take the broker down: the
    // subscriber's own report of a failed write would go to stderr with `eprintln!`, which
    // panics when stderr is that pipe too. Lines that cannot be written are dropped.
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).log_internal_errors(false);
    // The two formats are different types, so the same steps are spelled once for both here:
    // a filter that can be replaced, installed, and the way to replace it.
    macro_rules! init_reloadable {
        ($fmt:expr) => {{
            let fmt = $fmt.with_filter_reloading();
            let handle = fmt.reload_handle();
            fmt.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }};
    }
    let replace_filter: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync> = match config.log.format {
        diglot::config::LogFormat::Json => init_reloadable!(fmt.json().with_current_span(false)),
        diglot::config::LogFormat::Text => {
            init_reloadable!(fmt.with_target(false).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())))
        }
    };
    let log_level = log_level_setter(config.log.level.clone(), overridden_by, replace_filter);

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if config.server.worker_threads > 0 {
        rt.worker_threads(config.server.worker_threads);
    }
    rt.on_thread_park(collect_allocator);
    let rt = rt.build().context("cannot start the async runtime")?;
    rt.block_on(serve(config, path, log_level))
}

/// What a reload does with the file's `log.level`: puts it in force if it changed (through
/// `replace_filter`), unless `--log-level` or RUST_LOG (`overridden_by`) set the filter.
fn log_level_setter(
    current: String,
    overridden_by: Option<&'static str>,
    replace_filter: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
) -> diglot::LogLevelSetter {
    let current = std::sync::Mutex::new(current);
    std::sync::Arc::new(move |level: &str| {
        let mut current = current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == level {
            return;
        }
        if let Some(by) = overridden_by {
            tracing::info!(level, by, "log.level changed in the file; not applied while the filter is set this way");
            *current = level.to_string();
            return;
        }
        let filter = match EnvFilter::try_new(level) {
            Ok(filter) => filter,
            Err(e) => return tracing::error!(level, error = %e, "log.level not applied; the old filter stays"),
        };
        // Said under the old filter, which the new one may silence.
        tracing::info!(from = %*current, to = level, "log level changed");
        match replace_filter(filter) {
            Ok(()) => *current = level.to_string(),
            Err(e) => tracing::error!(level, error = %e, "log.level not applied; the old filter stays"),
        }
    })
}

async fn serve(config: Config, path: Option<PathBuf>, log_level: diglot::LogLevelSetter) -> anyhow::Result<()> {
    // Before the store is opened, which can take a while: a SIGHUP meanwhile (a reload hook)
    // must not end the process, as its default action would; a SIGTERM or SIGINT ends it.
    let mut signals = Signals::listen()?;
    let broker = tokio::select! {
        broker = Broker::start(&config) => broker?,
        () = signals.stop_requested() => {
            // Nothing is served yet; the store being recovered is safe to leave as after
            // `kill -9`. Not waiting for a long recovery to finish first.
            let _ = writeln!(std::io::stderr(), "diglot: stopped by a signal during start-up");
            std::process::exit(1);
        }
    };
    if !config.http.static_dir.is_empty() {
        tracing::info!(dir = %config.http.static_dir, "serving static files");
    }
    if let Some(path) = path {
        broker.reload_from(path, Some(log_level));
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "diglot started");
    signals.stop_requested().await;
    tracing::info!("shutting down");
    let stopped = tokio::select! {
        stopped = broker.stop() => stopped,
        () = signals.stop_requested() => {
            // An operator who does not want to wait for the shutdown grace. What the broker
            // acknowledged is on disk under the durability policy, as after `kill -9`.
            tracing::warn!("a second stop signal: exiting now, without waiting for clients");
            let _ = writeln!(std::io::stderr(), "diglot: stopped by a second signal before the shutdown finished");
            std::process::exit(1);
        }
    };
    tracing::info!(clean = stopped.clean, "stopped");
    match stopped.store_failure {
        // What the store acknowledged before the failure is on disk; a supervisor should see
        // that this run did not end well.
        Some(reason) => anyhow::bail!("the store failed while the broker ran and refused writes since: {reason}"),
        None => Ok(()),
    }
}

/// The signals the daemon handles, listened for from the start.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    /// Held so that SIGHUP never takes its default action (the server reloads on it).
    #[cfg(unix)]
    _hup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn listen() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            _hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> anyhow::Result<Signals> {
        Ok(Signals {})
    }

    /// Until SIGTERM or SIGINT (one that came during start-up counts).
    #[cfg(unix)]
    async fn stop_requested(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn stop_requested(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
