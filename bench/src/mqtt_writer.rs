//! What the writer thread spends per Observation on batches shaped like the MQTT figures' (each
//! Observation to one of 300 Datastreams at random, the FeatureOfInterest generated from the
//! Thing's Location), in-process: the store's write path alone, timed by the CPU time of the
//! thread that writes, which hardly moves when other processes share the cores.
//!
//! ```text
//! 100 Things (Location, 3 Datastreams each) ─► 100,000 Observations seeded, 1,000 per
//! transaction ─► measured: batches of N, random Datastreams, one transaction each
//! (`WriteTx::create_batch`, as an MQTT batch is written) ─► writer CPU µs per Observation
//! ```

use std::time::Instant;

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::{SqliteStore, StoreError};

use crate::cpu_time;
use crate::seed::mix;

/// The result for one batch size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MqttWriter {
    pub batch: u64,
    pub observations: u64,
    pub per_second: f64,
    /// CPU time per Observation (µs) of the thread that writes (Linux only).
    pub writer_cpu_us: Option<f64>,
    /// CPU time per Observation (µs) of the whole process (the writer and the WAL
    /// checkpointer).
    pub process_cpu_us: Option<f64>,
}

const THINGS: u64 = 100;
const DATASTREAMS_PER_THING: u64 = 3;
const SEEDED: u64 = 100_000;

/// Writes `observations` Observations in batches of `batch` after the seed.
pub fn measure(batch: u64, observations: u64) -> anyhow::Result<MqttWriter> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("stela.db"))?;
    for t in 0..THINGS {
        let (x, y) = (8.0 + (t % 10) as f64 * 0.1, 50.0 + (t / 10) as f64 * 0.1);
        let streams: Vec<_> = (0..DATASTREAMS_PER_THING)
            .map(|d| {
                json!({"name": format!("ds {t} {d}"), "description": "d", "observationType": "x",
                    "unitOfMeasurement": {},
                    "Sensor": {"name": "s", "description": "d", "encodingType": "x", "metadata": "x"},
                    "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}})
            })
            .collect();
        let thing = json!({"name": format!("t {t}"), "description": "d",
            "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
                           "location": {"type": "Point", "coordinates": [x, y]}}],
            "Datastreams": streams});
        let input = decode_entity(EntityType::Thing, &thing, DecodeMode::Create)?;
        store.write(0, |tx| tx.create(&input, None).map_err(anyhow::Error::from))?;
    }
    // A fresh database numbers the Datastreams from 1 in creation order.
    let datastreams: Vec<i64> = (1..=(THINGS * DATASTREAMS_PER_THING) as i64).collect();
    let relation = EntityType::Datastream
        .relation("Observations")
        .map(|r| r.inverse_relation())
        .ok_or_else(|| anyhow::anyhow!("the model has no Datastream.Observations"))?;
    let write = |from: u64, count: u64, random: bool| {
        store.write(1_700_000_000_000_000, |tx| {
            let mut items = Vec::with_capacity(count as usize);
            for k in from..from + count {
                let d = if random { mix(k) } else { k } % datastreams.len() as u64;
                let body = json!({"result": (k % 1000) as f64 / 10.0,
                                  "phenomenonTime": crate::seed::iso(crate::seed::T0 + k as i64)});
                let input = decode_entity(EntityType::Observation, &body, DecodeMode::Create)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                items.push((input, Some((relation, datastreams[d as usize]))));
            }
            for created in tx.create_batch(&items) {
                created?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let mut k = 0;
    while k < SEEDED {
        write(k, 1_000, false)?;
        k += 1_000;
    }
    let (writer_before, process_before) = (cpu_time::thread_ns(), cpu_time::process_ns());
    let started = Instant::now();
    let end = k + observations;
    while k < end {
        let count = batch.min(end - k);
        write(k, count, true)?;
        k += count;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_observation = |before: Option<u64>, after: Option<u64>| {
        Some(after?.checked_sub(before?)? as f64 / 1_000.0 / observations as f64)
    };
    Ok(MqttWriter {
        batch,
        observations,
        per_second: observations as f64 / elapsed,
        writer_cpu_us: per_observation(writer_before, cpu_time::thread_ns()),
        process_cpu_us: per_observation(process_before, cpu_time::process_ns()),
    })
}
