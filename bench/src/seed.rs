//! The dataset every measurement runs against, written through the API as a client would.
//!
//! 100 weather stations (Things), each with a Location and three Datastreams (air temperature,
//! relative humidity, air pressure), each Datastream with its own Sensor and ObservedProperty,
//! all in one deep insert per Thing. Then N Observations: Observation `k` belongs to Datastream
//! `k % D` (D = 300) and was taken at `T0 + (k / D)` minutes, so every Datastream has one
//! Observation a minute; its result is a daily cycle plus noise. The values depend on `k` only,
//! so two runs with the same N store the same data whatever the order of the requests.
//!
//! Observations go through the fastest path the server offers: `CreateObservations`
//! (dataArray) when it answers 201, else single POSTs, 32 in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value as Json, json};

use crate::client::{Api, OpError};
use crate::runner;

/// Weather stations.
pub const THINGS: usize = 100;
/// 2024-01-01T00:00:00Z, the time of the first Observation of every Datastream.
pub const T0: i64 = 1_704_067_200;
/// One Observation a minute per Datastream.
pub const STEP_SECONDS: i64 = 60;
/// Observations per `CreateObservations` request while seeding.
const SEED_CHUNK: u64 = 1000;

/// What a station measures.
struct Quantity {
    name: &'static str,
    unit: (&'static str, &'static str, &'static str),
    definition: &'static str,
    sensor: &'static str,
    /// Mean, daily amplitude and noise of the values.
    base: f64,
    amplitude: f64,
    noise: f64,
}

const QUANTITIES: [Quantity; 3] = [
    Quantity {
        name: "Air temperature",
        unit: ("degree Celsius", "°C", "http://unitsofmeasure.org/ucum.html#para-30"),
        definition: "http://vocab.nerc.ac.uk/collection/P07/current/CFSN0023/",
        sensor: "SHT31 temperature",
        base: 12.0,
        amplitude: 6.0,
        noise: 0.4,
    },
    Quantity {
        name: "Relative humidity",
        unit: ("percent", "%", "http://unitsofmeasure.org/ucum.html#para-29"),
        definition: "http://vocab.nerc.ac.uk/collection/P07/current/CFSN0413/",
        sensor: "SHT31 humidity",
        base: 70.0,
        amplitude: 15.0,
        noise: 2.0,
    },
    Quantity {
        name: "Air pressure",
        unit: ("hectopascal", "hPa", "http://unitsofmeasure.org/ucum.html#para-30"),
        definition: "http://vocab.nerc.ac.uk/collection/P07/current/CFSN0015/",
        sensor: "BMP280 pressure",
        base: 1013.0,
        amplitude: 1.5,
        noise: 0.3,
    },
];

/// Datastreams per Thing.
pub const DATASTREAMS_PER_THING: usize = QUANTITIES.len();

/// The seeded dataset, as the measurements need to address it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dataset {
    pub things: Vec<i64>,
    pub locations: Vec<i64>,
    /// Datastream `d` holds Observations `k` with `k % datastreams.len() == d`.
    pub datastreams: Vec<i64>,
    /// Observations written by the seeding.
    pub observations: u64,
    /// Smallest and largest Observation id after seeding.
    pub observation_ids: (i64, i64),
    /// `CreateObservations` or `single POST`.
    pub seed_method: String,
    pub seed_entities_seconds: f64,
    pub seed_observations_seconds: f64,
}

impl Dataset {
    /// Observations of one Datastream (the first ones have one more when N is not a multiple
    /// of the Datastream count).
    pub fn steps(&self) -> u64 {
        self.observations.div_ceil(self.datastreams.len() as u64)
    }
}

/// SplitMix64: a fixed, well-mixed hash of `k`, to derive noise and jitter without state.
pub fn mix(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in [-1, 1) derived from `k`.
fn unit_noise(k: u64) -> f64 {
    (mix(k) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// RFC 3339 text of a Unix time, in UTC (`2024-01-01T00:00:00Z`).
pub fn iso(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The result of a reading of Datastream `d` at `step` (its `k` gives the noise).
pub fn reading(d: usize, step: u64, k: u64) -> f64 {
    let quantity = &QUANTITIES[d % QUANTITIES.len()];
    let day = step as f64 / 1440.0 * std::f64::consts::TAU;
    let value = quantity.base
        + quantity.amplitude * (day + d as f64).sin()
        + quantity.noise * unit_noise(k);
    (value * 100.0).round() / 100.0
}

/// Position of station `i`: a 10 × 10 grid of 0.1° cells around 8.5° E 50.5° N, jittered.
pub fn station_position(i: usize) -> (f64, f64) {
    let jitter = |salt: u64| unit_noise(i as u64 * 7 + salt) * 0.03;
    let lon = 8.05 + (i % 10) as f64 * 0.1 + jitter(1);
    let lat = 50.05 + (i / 10) as f64 * 0.1 + jitter(2);
    ((lon * 1e5).round() / 1e5, (lat * 1e5).round() / 1e5)
}

/// The deep insert of station `i`.
fn thing_body(i: usize) -> Json {
    let (lon, lat) = station_position(i);
    let datastreams: Vec<Json> = QUANTITIES
        .iter()
        .map(|q| {
            json!({
                "name": format!("{} at station {i}", q.name),
                "description": format!("{} measured once a minute at station {i}", q.name),
                "unitOfMeasurement": {"name": q.unit.0, "symbol": q.unit.1, "definition": q.unit.2},
                "observationType":
                    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                "Sensor": {
                    "name": format!("{} sensor of station {i}", q.sensor),
                    "description": format!("{} sensor", q.sensor),
                    "encodingType": "application/pdf",
                    "metadata": "https://example.org/datasheets/sensor.pdf"
                },
                "ObservedProperty": {
                    "name": q.name,
                    "definition": q.definition,
                    "description": format!("{} near the ground", q.name)
                }
            })
        })
        .collect();
    json!({
        "name": format!("Weather station {i}"),
        "description": format!("Automatic weather station number {i}"),
        "properties": {"network": "stela-bench", "station": i, "elevation_m": 100 + (i % 37) * 9},
        "Locations": [{
            "name": format!("Site of station {i}"),
            "description": format!("Where station {i} stands"),
            "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": [lon, lat]}
        }],
        "Datastreams": datastreams
    })
}

/// The single-POST body of Observation `k`.
pub fn observation_body(dataset_datastreams: &[i64], k: u64) -> String {
    let count = dataset_datastreams.len() as u64;
    let d = (k % count) as usize;
    let step = k / count;
    format!(
        r#"{{"phenomenonTime":"{}","result":{},"Datastream":{{"@iot.id":{}}}}}"#,
        iso(T0 + step as i64 * STEP_SECONDS),
        reading(d, step, k),
        dataset_datastreams[d]
    )
}

/// The `CreateObservations` body of Observations `range`, one dataArray per Datastream.
pub fn create_observations_body(datastreams: &[i64], range: std::ops::Range<u64>) -> String {
    let count = datastreams.len() as u64;
    let mut rows: Vec<Vec<Json>> = vec![Vec::new(); datastreams.len()];
    for k in range {
        let d = (k % count) as usize;
        let step = k / count;
        rows[d].push(json!([iso(T0 + step as i64 * STEP_SECONDS), reading(d, step, k)]));
    }
    let arrays: Vec<Json> = rows
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(d, rows)| {
            json!({
                "Datastream": {"@iot.id": datastreams[d]},
                "components": ["phenomenonTime", "result"],
                "dataArray@iot.count": rows.len(),
                "dataArray": rows
            })
        })
        .collect();
    Json::Array(arrays).to_string()
}

/// Checks a `CreateObservations` answer: one link per Observation, none of them `"error"`.
pub fn created_count(answer: &Json) -> Result<u64, OpError> {
    let links = answer
        .as_array()
        .ok_or_else(|| OpError("CreateObservations did not answer with an array".into()))?;
    let failed = links.iter().filter(|l| l.as_str() == Some("error")).count();
    if failed > 0 {
        return Err(OpError(format!("CreateObservations refused {failed} Observations")));
    }
    Ok(links.len() as u64)
}

/// Ids of `path`'s related entities, following `@iot.nextLink`.
async fn ids(api: &Api, path: &str) -> Result<Vec<i64>, OpError> {
    let mut ids = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(url) = next {
        let page = api.get_json(&url).await?;
        for item in page.get("value").and_then(Json::as_array).into_iter().flatten() {
            if let Some(id) = item.get("@iot.id").and_then(Json::as_i64) {
                ids.push(id);
            }
        }
        next = page.get("@iot.nextLink").and_then(Json::as_str).map(str::to_owned);
    }
    Ok(ids)
}

/// Writes the Things (deep inserts, 32 in flight) and reads back their ids.
pub async fn seed_entities(
    api: &Api,
    concurrency: usize,
) -> anyhow::Result<(Vec<i64>, Vec<i64>, Vec<i64>, Duration)> {
    let created: Arc<Mutex<Vec<(usize, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&created);
    let api_for_things = api.clone();
    let elapsed = runner::for_each("seeding Things", THINGS as u64, concurrency, move |n| {
        let api = api_for_things.clone();
        let sink = Arc::clone(&sink);
        async move {
            let i = n as usize;
            let answer = api.post_json("Things", thing_body(i).to_string()).await?;
            let id = answer
                .get("@iot.id")
                .and_then(Json::as_i64)
                .ok_or_else(|| OpError("the created Thing has no @iot.id".into()))?;
            sink.lock().unwrap_or_else(|p| p.into_inner()).push((i, id));
            Ok(1)
        }
    })
    .await?;
    let mut things = std::mem::take(&mut *created.lock().unwrap_or_else(|p| p.into_inner()));
    things.sort_unstable();
    let things: Vec<i64> = things.into_iter().map(|(_, id)| id).collect();

    let (locations, datastreams) = related(api, &things).await?;
    Ok((things, locations, datastreams, elapsed))
}

/// The Locations and Datastreams of `things`, in the order of `things` and then of ids: the
/// order that maps Observation `k` to Datastream `k % D`.
async fn related(api: &Api, things: &[i64]) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let mut locations = Vec::with_capacity(things.len());
    let mut datastreams = Vec::with_capacity(things.len() * DATASTREAMS_PER_THING);
    for thing in things {
        let found = ids(api, &format!("Things({thing})/Locations?$select=id&$orderby=id")).await?;
        locations.extend(found);
        let found = ids(api, &format!("Things({thing})/Datastreams?$select=id&$orderby=id"))
            .await
            .context("reading back the Datastreams")?;
        anyhow::ensure!(
            found.len() == DATASTREAMS_PER_THING,
            "Thing {thing} has {} Datastreams, not {DATASTREAMS_PER_THING}",
            found.len()
        );
        datastreams.extend(found);
    }
    Ok((locations, datastreams))
}

/// Finds a dataset an earlier run seeded (`--no-seed`): its Things, their Locations and
/// Datastreams, and the number of Observations.
pub async fn discover(api: &Api) -> anyhow::Result<(Vec<i64>, Vec<i64>, Vec<i64>, u64)> {
    let things = ids(api, "Things?$select=id&$orderby=id").await?;
    anyhow::ensure!(!things.is_empty(), "the server holds no Things; run once without --no-seed");
    let (locations, datastreams) = related(api, &things).await?;
    let page = api.get_json("Observations?$count=true&$top=0").await?;
    let observations = page
        .get("@iot.count")
        .and_then(Json::as_u64)
        .context("the server did not count the Observations")?;
    Ok((things, locations, datastreams, observations))
}

/// Writes Observations `0..total` and tells which path it used.
pub async fn seed_observations(
    api: &Api,
    datastreams: &[i64],
    total: u64,
    concurrency: usize,
) -> anyhow::Result<(String, Duration)> {
    if total == 0 {
        return Ok(("none".into(), Duration::ZERO));
    }
    let datastreams: Arc<Vec<i64>> = Arc::new(datastreams.to_vec());
    let first = 0..SEED_CHUNK.min(total);
    let started = std::time::Instant::now();
    let probe =
        api.post_json("CreateObservations", create_observations_body(&datastreams, first.clone()));
    match probe.await {
        Ok(answer) => {
            let created = created_count(&answer)?;
            anyhow::ensure!(
                created == first.end,
                "CreateObservations created {created} of {} Observations",
                first.end
            );
            let chunks = (total - first.end).div_ceil(SEED_CHUNK);
            let api = api.clone();
            let offset = first.end;
            let streams = Arc::clone(&datastreams);
            // A few large requests in flight are enough to keep the single writer busy.
            runner::for_each("seeding (CreateObservations)", chunks, 4, move |chunk| {
                let api = api.clone();
                let streams = Arc::clone(&streams);
                async move {
                    let start = offset + chunk * SEED_CHUNK;
                    let end = (start + SEED_CHUNK).min(total);
                    let body = create_observations_body(&streams, start..end);
                    let answer = api.post_json("CreateObservations", body).await?;
                    created_count(&answer)
                }
            })
            .await?;
            Ok((
                "CreateObservations (dataArray, 1,000 per request, 4 in flight)".into(),
                started.elapsed(),
            ))
        }
        Err(_) => {
            let api = api.clone();
            let streams = Arc::clone(&datastreams);
            let elapsed = runner::for_each("seeding (single POST)", total, concurrency, move |k| {
                let api = api.clone();
                let body = observation_body(&streams, k);
                async move { api.post("Observations", body).await.map(|_| 1) }
            })
            .await?;
            Ok((
                format!("single POST, {concurrency} in flight (CreateObservations not available)"),
                elapsed,
            ))
        }
    }
}

/// Smallest and largest Observation id.
pub async fn observation_id_range(api: &Api) -> anyhow::Result<(i64, i64)> {
    let first = |order: &'static str| async move {
        let page =
            api.get_json(&format!("Observations?$select=id&$orderby=id {order}&$top=1")).await?;
        page.pointer("/value/0/@iot.id")
            .and_then(Json::as_i64)
            .ok_or_else(|| OpError("no Observation found".into()))
    };
    let low = first("asc").await?;
    let high = first("desc").await?;
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_spread_one_a_minute_per_datastream() {
        let streams = [11, 12, 13];
        let body: Json = serde_json::from_str(&observation_body(&streams, 3)).expect("json");
        assert_eq!(body["Datastream"]["@iot.id"], 11);
        assert_eq!(body["phenomenonTime"], "2024-01-01T00:01:00Z");
        assert!(body["result"].as_f64().is_some_and(|v| (0.0..30.0).contains(&v)));
    }

    #[test]
    fn data_arrays_group_by_datastream() {
        let body: Json =
            serde_json::from_str(&create_observations_body(&[5, 6], 0..5)).expect("json");
        let arrays = body.as_array().expect("array");
        assert_eq!(arrays.len(), 2);
        assert_eq!(arrays[0]["Datastream"]["@iot.id"], 5);
        assert_eq!(arrays[0]["dataArray@iot.count"], 3);
        assert_eq!(arrays[1]["dataArray"][1][0], "2024-01-01T00:01:00Z");
    }

    #[test]
    fn readings_are_deterministic_and_plausible() {
        assert_eq!(reading(2, 100, 700), reading(2, 100, 700));
        assert!((1005.0..1020.0).contains(&reading(2, 100, 700)));
        assert!(iso(T0).ends_with('Z'));
        let (lon, lat) = station_position(99);
        assert!((8.9..9.1).contains(&lon) && (50.9..51.1).contains(&lat));
    }

    #[test]
    fn counts_created_observations() {
        assert_eq!(created_count(&json!(["a", "b"])).ok(), Some(2));
        assert!(created_count(&json!(["a", "error"])).is_err());
    }
}
