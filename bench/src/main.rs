//! `stela-bench`, the benchmark harness of Stela: starts the release server on a fresh data
//! directory (or targets `--url`), seeds a realistic dataset through the API, measures ingest,
//! reads, paging, memory and storage, prints a table and writes the figures as JSON.
//!
//! ```text
//! cargo build --release -p stela
//! cargo run --release -p stela-bench -- [--observations N] [--large] [--url URL] [--quick]
//!                                       [--out bench/results/latest.json]
//! ```
//!
//! ```text
//! start server ─▶ memory at rest ─▶ seed Things (deep insert) ─▶ seed Observations
//!   ─▶ reads ─▶ paging ─▶ ingest (adds Observations) ─▶ memory ─▶ table + JSON ─▶ stop server
//! ```
//!
//! The harness never asserts times: it exits non-zero only when it cannot do its job (the
//! server does not start, seeding fails). Features the server lacks are reported as
//! "not available". docs/PERFORMANCE.md explains each figure.

/// The server's allocator, so that the in-process log measurement costs what the server pays.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod client;
mod cpu_time;
mod log_overhead;
mod mqtt;
mod mqtt_writer;
mod report;
mod runner;
mod scenarios;
mod seed;
mod server;
mod storage;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use crate::client::Api;
use crate::report::{Machine, MemoryReport, Report, ServerInfo, Settings, StorageReport};
use crate::scenarios::Bench;
use crate::seed::Dataset;
use crate::server::Server;

/// Benchmark harness of Stela: seeds a server through its API and measures it.
#[derive(Debug, Parser)]
#[command(name = "stela-bench", version)]
struct Args {
    /// Observations to seed [default: 100,000; 1,000 with --quick; 10,000,000 with --large]
    #[arg(long)]
    observations: Option<u64>,
    /// Seed 10 million Observations (the size the DESIGN.md targets for latest and $count)
    #[arg(long)]
    large: bool,
    /// Smallest run (1,000 Observations, about 1 s per measurement): checks the harness works
    #[arg(long)]
    quick: bool,
    /// Measure the server at this base URL (e.g. http://127.0.0.1:8080) instead of starting one
    #[arg(long)]
    url: Option<String>,
    /// The server binary to start [default: $CARGO_TARGET_DIR or target, then /release/stela]
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where the temporary data directory is created [default: the system temp directory]
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// Run the server on this data directory and keep it afterwards (to reuse with --no-seed)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run the server on this database (`stela serve --database`, e.g. a PostgreSQL URL of an
    /// empty database) instead of SQLite in the data directory
    #[arg(long)]
    database: Option<String>,
    /// Do not seed: measure the dataset an earlier run left (with --data-dir or --url)
    #[arg(long)]
    no_seed: bool,
    /// Measure only these figures: comma-separated ids or prefixes, e.g. read_expand,ingest_post
    /// (`log_overhead` alone: only the in-process log overhead, no server)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// MQTT listener (HOST:PORT) when the server does not announce one on stdout
    #[arg(long)]
    mqtt: Option<String>,
    /// Seconds of each measurement [default: 5; 1 with --quick]
    #[arg(long)]
    duration: Option<f64>,
    /// Requests in flight for the concurrent measurements and for seeding
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where to write the JSON results [default: bench/results/latest.json; quick.json with --quick]
    #[arg(long)]
    out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On Ctrl-C the run is dropped, and with it the server it started and its data directory.
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.only == ["mqtt_writer"] {
        // The in-process writer cost of MQTT-shaped batches alone: no server.
        for batch in [256, 1024, 4096] {
            let measured = mqtt_writer::measure(batch, args.observations.unwrap_or(60_000))?;
            println!("{}", serde_json::to_string(&measured)?);
        }
        return Ok(());
    }
    if args.only == ["log_overhead"] {
        // The in-process comparison alone: no server, no dataset.
        let overhead = log_overhead::measure(args.observations.unwrap_or(200_000))?;
        println!("{}", serde_json::to_string_pretty(&overhead)?);
        return Ok(());
    }
    let observations = args.observations.unwrap_or(if args.large {
        10_000_000
    } else if args.quick {
        1_000
    } else {
        100_000
    });
    let seconds = args.duration.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    anyhow::ensure!(seconds > 0.0, "--duration must be positive");
    let duration = Duration::from_secs_f64(seconds);
    let concurrency = args.concurrency.max(1);
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "bench/results/quick.json"
        } else {
            "bench/results/latest.json"
        })
    });
    let data_parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    let mut machine = Machine::describe(&data_parent);

    // The server under test.
    let (server, info) = match &args.url {
        Some(url) => {
            let info = ServerInfo {
                version: "external server (version unknown)".into(),
                url: url.trim_end_matches('/').to_owned(),
                started_by_harness: false,
                binary: None,
                mqtt: args.mqtt.clone(),
                exited_during_run: false,
            };
            (None, info)
        }
        None => {
            let bin = args.server_bin.clone().unwrap_or_else(server::default_server_bin);
            anyhow::ensure!(
                bin.exists(),
                "the server binary {} does not exist; build it with `cargo build --release -p stela` \
                 (or name one with --server-bin, or measure a running server with --url)",
                bin.display()
            );
            let version = std::process::Command::new(&bin)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            match &args.data_dir {
                Some(dir) => eprintln!("starting {} on {}", bin.display(), dir.display()),
                None => eprintln!(
                    "starting {} on a fresh data directory in {}",
                    bin.display(),
                    data_parent.display()
                ),
            }
            let server = Server::start(
                &bin,
                &data_parent,
                args.data_dir.as_deref(),
                args.database.as_deref(),
            )?;
            let info = ServerInfo {
                version,
                url: server.base_url.clone(),
                started_by_harness: true,
                binary: Some(bin.display().to_string()),
                mqtt: args.mqtt.clone(),
                exited_during_run: false,
            };
            (Some(server), info)
        }
    };
    let pid = server.as_ref().map(Server::pid);
    let api = Api::new(&info.url, concurrency * 2)?;
    api.get_json("")
        .await
        .with_context(|| format!("the service root {} does not answer", api.root))?;

    let mut memory = MemoryReport {
        at_rest: pid.and_then(server::memory),
        target_at_rest: "≤ 30 MB",
        target_under_ingest: "≤ 100 MB",
        ..MemoryReport::default()
    };

    let data_dir = server.as_ref().map(|s| s.data_dir().to_owned());
    let mut storage = StorageReport::default();
    let dataset = if args.no_seed {
        let (things, locations, datastreams, observations) =
            seed::discover(&api).await.context("finding the dataset of an earlier run failed")?;
        eprintln!(
            "reusing {} Things, {} Datastreams, {} Observations",
            things.len(),
            datastreams.len(),
            report::group_digits(observations)
        );
        Dataset {
            things,
            locations,
            datastreams,
            observations,
            observation_ids: seed::observation_id_range(&api).await?,
            seed_method: "reused from an earlier run (--no-seed)".into(),
            seed_entities_seconds: 0.0,
            seed_observations_seconds: 0.0,
        }
    } else {
        seed_dataset(&api, observations, concurrency, data_dir.as_deref(), &mut storage).await?
    };
    memory.after_seeding = pid.and_then(server::memory);

    let mqtt = args.mqtt.clone().or_else(|| server.as_ref().and_then(Server::mqtt_announced));
    let mut info = info;
    info.mqtt.clone_from(&mqtt);
    let mut server = server;
    let mut bench = Bench::new(api.clone(), dataset.clone(), pid, duration, concurrency, mqtt);
    bench.only.clone_from(&args.only);
    let mut figures = scenarios::reads(&bench).await;
    memory.after_reads = pid.and_then(server::memory);
    figures.extend(scenarios::paging(&bench).await);
    // The ingest target is about the ingest phase: its peak, not the peak of the reads before.
    memory.peak_reset_before_ingest = pid.is_some_and(server::reset_peak_memory);
    figures.extend(scenarios::ingest(&bench).await);
    memory.after_ingest = pid.and_then(server::memory);
    memory.met_at_rest = memory.at_rest.map(|m| m.peak_bytes <= 30_000_000);
    memory.met_under_ingest = memory.after_ingest.map(|m| m.peak_bytes <= 100_000_000);
    machine.load_average_end = report::load_average();

    // The size of the database once the server has shut down cleanly (SQLite folds the WAL
    // into the database file then), over every Observation stored.
    let stored = api
        .get_json("Observations?$count=true&$top=0")
        .await
        .ok()
        .and_then(|page| page.get("@iot.count").and_then(serde_json::Value::as_u64));
    if let Some(server) = server.as_mut() {
        if !server.is_running() {
            eprintln!("warning: the server exited during the run; its log:\n{}", server.log_tail());
            info.exited_during_run = true;
        } else if !server.shut_down(Duration::from_secs(30)) {
            eprintln!("warning: the server did not stop within 30 s of SIGTERM; it was killed");
        }
        let database = server.data_dir().join("stela.db");
        match storage::inspect(&database) {
            Ok(objects) => storage.objects = objects,
            Err(error) => eprintln!("warning: cannot inspect {}: {error}", database.display()),
        }
        storage.after_shutdown = server::directory_files(server.data_dir());
        storage.observations_stored = stored;
        if let Some(count) = stored.filter(|c| *c > 0) {
            let database: u64 = storage
                .after_shutdown
                .iter()
                .filter(|(name, _)| !name.ends_with("-shm"))
                .map(|(_, size)| size)
                .sum();
            storage.bytes_per_observation_after_shutdown = Some(database as f64 / count as f64);
        }
    }

    // The log's cost, in-process on a store of its own (not with --url: another machine).
    let log_overhead = if args.url.is_none() {
        eprintln!("measuring: log append overhead on ingest (in-process store)");
        match log_overhead::measure(if args.quick { 2_000 } else { 200_000 }) {
            Ok(overhead) => Some(overhead),
            Err(error) => {
                eprintln!("warning: the log overhead could not be measured: {error:#}");
                None
            }
        }
    } else {
        None
    };

    let report = Report {
        timestamp: seed::iso(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        ),
        harness_version: env!("CARGO_PKG_VERSION"),
        server: info,
        machine,
        settings: Settings {
            quick: args.quick,
            seconds_per_measurement: seconds,
            concurrency,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            http_retries: api.retries(),
        },
        dataset,
        figures,
        memory,
        storage,
        log_overhead,
    };
    println!("{}", report.table());
    if let Some(overhead) = &report.log_overhead {
        println!(
            "log append overhead on ingest (store, {} Observations, {} per transaction, stores with and without the log written in turn): {:.0}/s with the log, {:.0}/s without, {:.1} % (target ≤ 10 %: {})",
            overhead.observations,
            overhead.per_transaction,
            overhead.with_log_per_second,
            overhead.without_log_per_second,
            overhead.overhead_percent,
            if overhead.met { "met" } else { "NOT MET" }
        );
    }
    report.write_json(&out)?;
    println!("results written to {}", out.display());

    drop(server);
    Ok(())
}

/// Seeds the Things and `observations` Observations, noting the data directory's growth.
async fn seed_dataset(
    api: &Api,
    observations: u64,
    concurrency: usize,
    data_dir: Option<&std::path::Path>,
    storage: &mut StorageReport,
) -> anyhow::Result<Dataset> {
    // A failure here means the harness cannot measure anything.
    eprintln!(
        "seeding {} Things with {} Datastreams each, then {} Observations",
        seed::THINGS,
        seed::DATASTREAMS_PER_THING,
        report::group_digits(observations)
    );
    let (things, locations, datastreams, entities_elapsed) =
        seed::seed_entities(api, concurrency).await.context("seeding the Things failed")?;
    if let Some(dir) = data_dir {
        storage.before_observations = server::directory_files(dir);
    }
    let (seed_method, observations_elapsed) =
        seed::seed_observations(api, &datastreams, observations, concurrency)
            .await
            .context("seeding the Observations failed")?;
    eprintln!(
        "seeded {} Observations in {:.1} s ({:.0}/s) by {seed_method}",
        report::group_digits(observations),
        observations_elapsed.as_secs_f64(),
        observations as f64 / observations_elapsed.as_secs_f64().max(1e-9)
    );
    if let Some(dir) = data_dir {
        storage.after_observations = server::directory_files(dir);
        fill_storage(storage, observations);
    }
    let observation_ids = if observations > 0 {
        seed::observation_id_range(api).await.context("reading the Observation ids failed")?
    } else {
        (1, 1)
    };
    Ok(Dataset {
        things,
        locations,
        datastreams,
        observations,
        observation_ids,
        seed_method,
        seed_entities_seconds: entities_elapsed.as_secs_f64(),
        seed_observations_seconds: observations_elapsed.as_secs_f64(),
    })
}

/// Growth of the data directory per million Observations.
fn fill_storage(storage: &mut StorageReport, observations: u64) {
    if observations == 0 {
        return;
    }
    let total = |files: &[(String, u64)]| files.iter().map(|(_, size)| size).sum::<u64>();
    let database = |files: &[(String, u64)]| {
        files.iter().filter(|(name, _)| name.ends_with(".db")).map(|(_, size)| size).sum::<u64>()
    };
    let per_million = |before: u64, after: u64| {
        after.saturating_sub(before) as f64 / observations as f64 * 1_000_000.0
    };
    storage.bytes_per_million_observations =
        Some(per_million(total(&storage.before_observations), total(&storage.after_observations)));
    storage.database_bytes_per_million_observations = Some(per_million(
        database(&storage.before_observations),
        database(&storage.after_observations),
    ));
}
