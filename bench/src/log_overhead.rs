//! What the verifiable log costs on ingest: the same Observations written through the store's
//! write path (one transaction per 1,000, written in bulk as `CreateObservations` writes them)
//! with the log on and off (off: no entry rendered, appended or hashed), in-process so that
//! HTTP and JSON parsing do not blur the difference.

use std::time::Instant;

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::{SqliteStore, StoreError};

/// The result of the comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogOverhead {
    pub observations: u64,
    pub per_transaction: u64,
    /// Runs of each kind; every figure below is the median of its runs.
    pub rounds: usize,
    pub with_log_per_second: f64,
    pub without_log_per_second: f64,
    /// How much lower the throughput is with the log, in percent of the rate without it.
    pub overhead_percent: f64,
    /// CPU time per Observation (µs) of the thread that writes, with and without the log, and
    /// of all the process's threads (the writer and the store's WAL checkpointer). Unlike the
    /// rates, these hardly move when other processes share the cores (Linux only).
    pub with_log_writer_cpu_us: Option<f64>,
    pub without_log_writer_cpu_us: Option<f64>,
    pub with_log_process_cpu_us: Option<f64>,
    pub without_log_process_cpu_us: Option<f64>,
    /// The overhead computed from the writer thread's CPU time: how much lower its throughput
    /// is with the log when it has a core to itself.
    pub writer_cpu_overhead_percent: Option<f64>,
    /// DESIGN.md: log append overhead on ingest ≤ 10 %.
    pub met: bool,
}

const PER_TRANSACTION: u64 = 1_000;

/// What one run measured.
struct Run {
    per_second: f64,
    writer_cpu_us: Option<f64>,
    process_cpu_us: Option<f64>,
}

/// The time (ns) a thread has run on a CPU, from `/proc/.../schedstat` (Linux).
fn cpu_ns(schedstat: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(schedstat).ok()?.split_whitespace().next()?.parse().ok()
}

/// The CPU time of every thread of this process.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        total += cpu_ns(&task.ok()?.path().join("schedstat"))?;
    }
    Some(total)
}

fn rate(observations: u64, logged: bool) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let mut store = SqliteStore::open(&dir.path().join("stela.db"))?;
    store.set_log_appending(logged);
    let thing = json!({"name": "t", "description": "d",
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
                       "location": {"type": "Point", "coordinates": [8.5, 50.5]}}],
        "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": {"name": "s", "description": "d", "encodingType": "x", "metadata": "x"},
            "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}}]});
    let input = decode_entity(EntityType::Thing, &thing, DecodeMode::Create)?;
    store.write(0, |tx| tx.create(&input, None).map_err(anyhow::Error::from))?;
    let datastream = EntityType::Datastream
        .relation("Observations")
        .map(|r| r.inverse_relation())
        .ok_or_else(|| anyhow::anyhow!("the model has no Datastream.Observations"))?;
    let thread_schedstat = std::path::Path::new("/proc/thread-self/schedstat");
    let (writer_before, process_before) = (cpu_ns(thread_schedstat), process_cpu_ns());
    let started = Instant::now();
    let mut written = 0;
    while written < observations {
        let batch = PER_TRANSACTION.min(observations - written);
        store.write(1_700_000_000_000_000, |tx| {
            let mut items = Vec::with_capacity(batch as usize);
            for k in written..written + batch {
                let body = json!({"result": (k % 1000) as f64 / 10.0,
                                  "phenomenonTime": seed_time(k)});
                let input = decode_entity(EntityType::Observation, &body, DecodeMode::Create)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                items.push((input, Some((datastream, 1))));
            }
            for created in tx.create_batch(&items) {
                created?;
            }
            Ok::<_, StoreError>(())
        })?;
        written += batch;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Read while the store (and its checkpointer thread) is still open.
    let per_observation = |before: Option<u64>, after: Option<u64>| {
        Some(after?.checked_sub(before?)? as f64 / 1_000.0 / observations as f64)
    };
    Ok(Run {
        per_second: observations as f64 / elapsed,
        writer_cpu_us: per_observation(writer_before, cpu_ns(thread_schedstat)),
        process_cpu_us: per_observation(process_before, process_cpu_ns()),
    })
}

fn seed_time(k: u64) -> String {
    format!("2024-01-01T{:02}:{:02}:{:02}Z", (k / 3600) % 24, (k / 60) % 60, k % 60)
}

/// Runs with and without the log alternate this many times; each figure is the median.
const ROUNDS: usize = 3;

/// Writes `observations` Observations with and without the log, [`ROUNDS`] times each in
/// turn after a run that warms the process up (allocator, page cache, CPU frequency: the first
/// run of a process was up to a third slower, whichever came first), and compares the medians.
pub fn measure(observations: u64) -> anyhow::Result<LogOverhead> {
    rate(observations.min(20_000), true)?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        without.push(rate(observations, false)?);
        with.push(rate(observations, true)?);
    }
    let median = |runs: &[Run], figure: fn(&Run) -> Option<f64>| {
        let mut values: Vec<f64> = runs.iter().filter_map(figure).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let per_second = |runs: &[Run]| median(runs, |run| Some(run.per_second)).unwrap_or(0.0);
    let (with_rate, without_rate) = (per_second(&with), per_second(&without));
    let overhead = (1.0 - with_rate / without_rate) * 100.0;
    let writer = |runs: &[Run]| median(runs, |run| run.writer_cpu_us);
    let process = |runs: &[Run]| median(runs, |run| run.process_cpu_us);
    let writer_cpu_overhead = match (writer(&with), writer(&without)) {
        (Some(with), Some(without)) if with > 0.0 => Some((1.0 - without / with) * 100.0),
        _ => None,
    };
    Ok(LogOverhead {
        observations,
        per_transaction: PER_TRANSACTION,
        rounds: ROUNDS,
        with_log_per_second: with_rate,
        without_log_per_second: without_rate,
        overhead_percent: overhead,
        with_log_writer_cpu_us: writer(&with),
        without_log_writer_cpu_us: writer(&without),
        with_log_process_cpu_us: process(&with),
        without_log_process_cpu_us: process(&without),
        writer_cpu_overhead_percent: writer_cpu_overhead,
        met: overhead <= 10.0,
    })
}
