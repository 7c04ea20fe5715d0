//! What the verifiable log costs on ingest: the same Observations written through the store's
//! write path (one transaction per 1,000, written in bulk as `CreateObservations` writes them)
//! with the log on and off (off: no entry rendered, appended or hashed), in-process so that
//! HTTP and JSON parsing do not blur the difference.

use std::time::Instant;

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::test_database::thing_with_datastream;
use stela_store::{SqliteStore, StoreError};

use crate::cpu_time;

/// The result of the comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogOverhead {
    pub observations: u64,
    pub per_transaction: u64,
    pub with_log_per_second: f64,
    pub without_log_per_second: f64,
    /// How much lower the throughput is with the log, in percent of the rate without it.
    pub overhead_percent: f64,
    /// CPU time per Observation (µs) of the thread that writes, with and without the log
    /// (Linux only): unlike the rates, it hardly moves when other processes share the cores.
    pub with_log_writer_cpu_us: Option<f64>,
    pub without_log_writer_cpu_us: Option<f64>,
    /// The overhead computed from the writer thread's CPU time: how much lower its throughput
    /// is with the log when it has a core to itself.
    pub writer_cpu_overhead_percent: Option<f64>,
    /// DESIGN.md: log append overhead on ingest ≤ 10 %.
    pub met: bool,
}

const PER_TRANSACTION: u64 = 1_000;

/// Observations written to each store before the measurement (allocator, page cache and CPU
/// frequency warmed up; not counted).
const WARM_UP: u64 = 20_000;

/// One store, with the log on or off, and what writing to it took.
struct Side {
    store: SqliteStore,
    seconds: f64,
    writer_ns: Option<u64>,
    // Dropped after the store.
    _dir: tempfile::TempDir,
}

impl Side {
    fn open(logged: bool) -> anyhow::Result<Side> {
        let dir = tempfile::tempdir()?;
        let mut store = SqliteStore::open(&dir.path().join("stela.db"))?;
        store.set_log_appending(logged);
        let thing = thing_with_datastream(json!([8.5, 50.5]));
        let input = decode_entity(EntityType::Thing, &thing, DecodeMode::Create)?;
        store.write(0, |tx| tx.create(&input, None).map_err(anyhow::Error::from))?;
        Ok(Side { store, seconds: 0.0, writer_ns: Some(0), _dir: dir })
    }

    /// Writes Observations `first .. first + count` in one transaction, as `CreateObservations`
    /// writes a request (decoded, then created in bulk), and counts its time.
    fn write(&mut self, first: u64, count: u64) -> anyhow::Result<()> {
        let datastream = EntityType::Datastream
            .relation("Observations")
            .map(|r| r.inverse_relation())
            .ok_or_else(|| anyhow::anyhow!("the model has no Datastream.Observations"))?;
        let (cpu_before, started) = (cpu_time::thread_ns(), Instant::now());
        self.store.write(1_700_000_000_000_000, |tx| {
            let mut items = Vec::with_capacity(count as usize);
            for k in first..first + count {
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
        self.seconds += started.elapsed().as_secs_f64();
        self.writer_ns = match (self.writer_ns, cpu_before, cpu_time::thread_ns()) {
            (Some(total), Some(before), Some(after)) => Some(total + after.saturating_sub(before)),
            _ => None,
        };
        Ok(())
    }

    fn reset(&mut self) {
        self.seconds = 0.0;
        self.writer_ns = Some(0);
    }
}

fn seed_time(k: u64) -> String {
    format!("2024-01-01T{:02}:{:02}:{:02}Z", (k / 3600) % 24, (k / 60) % 60, k % 60)
}

/// Writes the same `observations` Observations to a store with the log and to one without,
/// a transaction of 1,000 to each in turn (the first of each pair alternating), after a warm-up
/// of [`WARM_UP`] each, and compares the time each store's writes took. Interleaved, both
/// see the same machine: on a shared VM its speed drifts by a third over minutes, which made
/// runs measured one after the other disagree by ±15 points.
pub fn measure(observations: u64) -> anyhow::Result<LogOverhead> {
    let mut with = Side::open(true)?;
    let mut without = Side::open(false)?;
    let mut written = 0;
    for counted in [false, true] {
        let total = if counted { observations } else { WARM_UP.min(observations) };
        let end = written + total;
        while written < end {
            let batch = PER_TRANSACTION.min(end - written);
            if (written / PER_TRANSACTION).is_multiple_of(2) {
                with.write(written, batch)?;
                without.write(written, batch)?;
            } else {
                without.write(written, batch)?;
                with.write(written, batch)?;
            }
            written += batch;
        }
        if !counted {
            with.reset();
            without.reset();
        }
    }
    let per_second = |side: &Side| observations as f64 / side.seconds;
    let writer_us =
        |side: &Side| side.writer_ns.map(|ns| ns as f64 / 1_000.0 / observations as f64);
    let (with_rate, without_rate) = (per_second(&with), per_second(&without));
    let overhead = (1.0 - with_rate / without_rate) * 100.0;
    let writer_cpu_overhead = match (writer_us(&with), writer_us(&without)) {
        (Some(with), Some(without)) if with > 0.0 => Some((1.0 - without / with) * 100.0),
        _ => None,
    };
    Ok(LogOverhead {
        observations,
        per_transaction: PER_TRANSACTION,
        with_log_per_second: with_rate,
        without_log_per_second: without_rate,
        overhead_percent: overhead,
        with_log_writer_cpu_us: writer_us(&with),
        without_log_writer_cpu_us: writer_us(&without),
        writer_cpu_overhead_percent: writer_cpu_overhead,
        met: overhead <= 10.0,
    })
}
