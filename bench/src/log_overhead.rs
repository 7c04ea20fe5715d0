//! What the verifiable log costs on ingest: the same Observations written through the store's
//! write path (one transaction per 1,000, written in bulk as `CreateObservations` writes them) with the log append on
//! and off, in-process so that HTTP and JSON parsing do not blur the difference.

use std::time::Instant;

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::{SqliteStore, StoreError};

/// The result of the comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogOverhead {
    pub observations: u64,
    pub per_transaction: u64,
    pub with_log_per_second: f64,
    pub without_log_per_second: f64,
    /// How much lower the throughput is with the log, in percent of the rate without it.
    pub overhead_percent: f64,
    /// DESIGN.md: log append overhead on ingest ≤ 10 %.
    pub met: bool,
}

const PER_TRANSACTION: u64 = 1_000;

fn rate(observations: u64, logged: bool) -> anyhow::Result<f64> {
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
    Ok(observations as f64 / started.elapsed().as_secs_f64())
}

fn seed_time(k: u64) -> String {
    format!("2024-01-01T{:02}:{:02}:{:02}Z", (k / 3600) % 24, (k / 60) % 60, k % 60)
}

/// Writes `observations` Observations with and without the log and compares the rates.
pub fn measure(observations: u64) -> anyhow::Result<LogOverhead> {
    // Without first, so that the page cache favours neither run.
    let without = rate(observations, false)?;
    let with = rate(observations, true)?;
    let overhead = (1.0 - with / without) * 100.0;
    Ok(LogOverhead {
        observations,
        per_transaction: PER_TRANSACTION,
        with_log_per_second: with,
        without_log_per_second: without,
        overhead_percent: overhead,
        met: overhead <= 10.0,
    })
}
