//! `stela`, the Stela binary: parses the command line, loads the configuration and starts the
//! SensorThings API server.
//!
//! ```text
//! stela serve [--config FILE] [--listen ADDR] [--data-dir DIR] [--database URL]
//!             [--default-top N] [--max-top N]
//!             [--query-timeout-ms MS] [--max-body-bytes N] [--max-batch-requests N]
//!             [--public-url URL] [--log-format text|json] [--mqtt-listen ADDR|off]
//!             [--mqtt-broker mqtt://HOST:PORT] [--ledger-origin NAME]
//!             [--checkpoint-interval-ms MS]
//! ```
//!
//! How flags, `STELA_*` variables and the configuration file combine is documented once, in
//! the `config` module.

/// jemalloc: the write path allocates and frees many small buffers per row (SQL values, log
/// entries), which the system allocator serves markedly slower (a fifth of the writer thread in
/// its profiles), while jemalloc returns freed memory to the system in the background.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod config;
mod ledger_cli;
mod logging;
mod migrate_cli;
mod mqtt;
mod serve;
mod shutdown;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Stela: an OGC SensorThings API 1.1 server.
#[derive(Debug, Parser)]
#[command(name = "stela", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the SensorThings API over HTTP until Ctrl-C or SIGTERM
    ///
    /// Settings come from built-in defaults, then the file named by --config (or STELA_CONFIG),
    /// then STELA_* environment variables, then these flags; later ones win.
    Serve(config::Flags),
    /// The verifiable log of a data directory
    Log {
        #[command(subcommand)]
        command: ledger_cli::LogCommand,
    },
    /// Verify a receipt offline, or a server's log against a checkpoint saved earlier
    Verify(ledger_cli::VerifyArgs),
    /// Audit a data directory: re-hash the log, check checkpoints and entities (exit 1 on problems)
    Audit(ledger_cli::AuditArgs),
    /// Copy a whole store from SQLite to an empty PostgreSQL database (ids and log kept, checked)
    Migrate(migrate_cli::MigrateArgs),
}

/// Threads for blocking work (database reads and writes wait on them). Tokio's default, 512,
/// lets a burst of concurrent reads start hundreds of threads, each keeping allocator memory of
/// its own; SQLite gains nothing from more concurrent readers than this on the machines Stela
/// runs on.
const MAX_BLOCKING_THREADS: usize = 32;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(flags) => {
            let config = load_config(&flags)?;
            logging::init(&config.log)?;
            serve::serve(config).await
        }
        Command::Log { command } => ledger_cli::log_command(command),
        Command::Verify(args) => ledger_cli::verify(args).await,
        Command::Audit(args) => ledger_cli::audit(args).await,
        Command::Migrate(args) => migrate_cli::migrate(args).await,
    }
}

/// Reads the process environment and the configuration file, if one is named, and merges them
/// with the flags.
fn load_config(flags: &config::Flags) -> anyhow::Result<config::Config> {
    let env = config::process_env().context("invalid configuration")?;
    let file_path = config::config_file_path(&env, flags);
    let file_text = match &file_path {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?,
        ),
        None => None,
    };
    config::load(file_text.as_deref(), &env, flags).with_context(|| match &file_path {
        Some(path) => format!("invalid configuration (config file {})", path.display()),
        None => "invalid configuration".to_owned(),
    })
}
