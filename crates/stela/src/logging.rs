//! Installs the global `tracing` subscriber: an `EnvFilter` from `[log] level` / `STELA_LOG`,
//! text or JSON lines, written to stderr (stdout carries only the `stela listening on` line).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the subscriber; fails if one is already installed.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    // The level was parsed once during validation; parsing again cannot fail, but an error is
    // still reported rather than unwrapped.
    let filter = EnvFilter::builder()
        .parse(&config.level)
        .map_err(|error| anyhow::anyhow!("invalid log filter '{}': {error}", config.level))?;
    // Colours only for a person at a terminal, never into files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}
