//! `stela serve`: opens the store, binds the listener, starts MQTT, announces the addresses
//! and runs the HTTP server until a shutdown signal.
//!
//! ```text
//! storage.database ─▶ Service::open ───────┐
//! none: <data dir>/stela.db ─▶ open_sqlite ┴▶ bind ─▶ mqtt::start ─▶ stdout: "stela mqtt listening on mqtt://ADDR"
//!                                                                             "stela listening on http://ADDR"
//!                                               │
//!               SIGINT / SIGTERM ─▶ shutdown ─▶ stela_server::run drains, MQTT closes ─▶ exit 0
//! ```

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use stela_server::ServerOptions;
use stela_service::{Service, ServiceOptions};
use tokio::net::TcpListener;

use crate::config::{Config, StorageConfig};
use crate::shutdown::ShutdownSignals;

/// How long open requests may take to finish once shutdown has begun; past it the process
/// exits anyway, with an error.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The MQTT ingest journal's directory in the data directory.
const MQTT_JOURNAL_DIR: &str = "mqtt-journal";

/// Runs the server described by `config` until Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let Config { server, storage, query, log: _, mqtt, ledger } = config;

    std::fs::create_dir_all(&storage.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (choose another with --data-dir or STELA_DATA_DIR)",
            storage.data_dir.display()
        )
    })?;
    let service_options = ServiceOptions {
        default_top: query.default_top,
        max_top: query.max_top,
        query_timeout: query.timeout,
        log_origin: ledger.origin,
        checkpoint_interval: ledger.checkpoint_interval,
    };
    let (service, database) = open_service(&storage, service_options)?;

    let signals = ShutdownSignals::install().context("cannot install the signal handlers")?;
    let listener = bind(server.listen).await?;
    let local_addr = listener.local_addr().context("cannot read the bound address")?;
    let http_base_url = server.public_url.clone().unwrap_or_else(|| format!("http://{local_addr}"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mqtt = crate::mqtt::start(
        &mqtt,
        &service,
        &storage.data_dir.join(MQTT_JOURNAL_DIR),
        &http_base_url,
        server.public_url.as_deref(),
        stop_rx,
    )
    .await;
    tracing::info!(
        address = %local_addr,
        database = %database,
        "listening"
    );
    if let Some(line) = &mqtt.announcement {
        announce_line(line)?;
    }
    announce(local_addr)?;

    let (shutdown_started_tx, shutdown_started_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let signal = signals.recv().await;
        tracing::info!(signal, "shutdown requested, finishing open requests");
        // The receiver only disappears once serving is over; nothing to tell then.
        let _ = shutdown_started_tx.send(());
        // The MQTT side may be off; then nobody listens.
        let _ = stop_tx.send(true);
    };
    let server_options = ServerOptions {
        max_body_bytes: server.max_body_bytes,
        max_batch_requests: server.max_batch_requests,
        public_url: server.public_url,
        mqtt_endpoints: mqtt.endpoints.clone(),
        health: mqtt.health.clone().into_iter().collect(),
    };
    let running = stela_server::run(listener, service, server_options, shutdown);
    let grace_expired = async {
        if shutdown_started_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            // The server stopped without a signal; `running` completes at the same time.
            std::future::pending::<()>().await;
        }
    };

    tokio::select! {
        result = running => {
            result.context("the HTTP server failed")?;
            mqtt.stopped().await;
            tracing::info!("stopped");
            Ok(())
        }
        () = grace_expired => Err(anyhow::anyhow!(
            "open requests did not finish within {} s of the shutdown signal; exiting anyway",
            SHUTDOWN_GRACE.as_secs()
        )),
    }
}

/// Opens the service on the configured database, or on `<data_dir>/stela.db` when none is
/// named; returns it with the database's printable name (never a password).
fn open_service(
    storage: &StorageConfig,
    options: ServiceOptions,
) -> anyhow::Result<(Service, String)> {
    match &storage.database {
        None => {
            let path = storage.database_path();
            let service = Service::open_sqlite(&path, options)
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            Ok((service, path.display().to_string()))
        }
        Some(database) => {
            let service = Service::open(&database.store_setting(), &storage.data_dir, options)
                .with_context(|| {
                    format!(
                        "cannot open the database {database} (choose another with --database, \
                         STELA_DATABASE or `database` under [storage] in the config file)"
                    )
                })?;
            Ok((service, database.to_string()))
        }
    }
}

/// Binds `addr`, explaining how to choose another address when that fails.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr}; choose another address with --listen ADDR \
             (or STELA_LISTEN, or `listen` under [server] in the config file), \
             e.g. --listen 127.0.0.1:0 for any free port"
        )
    })
}

/// Prints the line that scripts and tests wait for, and flushes it at once: stdout is a pipe
/// for them, hence block-buffered.
fn announce(local_addr: SocketAddr) -> anyhow::Result<()> {
    announce_line(&format!("stela listening on http://{local_addr}"))
}

/// Prints one announcement line on stdout and flushes it.
fn announce_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write the listening address to stdout")
}
