//! The measurements: what each one sends, what it counts, and the DESIGN.md target it is held
//! against.
//!
//! ```text
//! reads  (dataset exactly as seeded)  GET by id · latest Observation · time window · $expand
//!                                     · $count · st_within
//! paging                              follow @iot.nextLink: one Datastream, then all Observations
//! ingest (adds Observations)          POST ×1, ×32 · CreateObservations · JSON $batch
//!                                     · MQTT QoS 1 (one and a window in flight), QoS 0
//! notify (adds Observations)          MQTT notification latency at 10,000 messages/s fan-out
//! ```
//!
//! A feature the server lacks shows as "not available" with its answer; it never fails the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde_json::{Value as Json, json};

use crate::client::{Api, OpError, encode};
use crate::mqtt::Publisher;
use crate::report::{Figure, Status, load_average};
use crate::runner::{self, Latency, Plan, Run};
use crate::seed::{self, Dataset, STEP_SECONDS, T0, iso, mix, reading};

/// Observations per `CreateObservations` request.
const DATA_ARRAY_SIZE: u64 = 1000;
/// Marks the Observations of the notification-latency figure (in their `parameters`).
const NOTIFY_MARK: &str = "notify_mqtt_latency";
/// Requests per JSON `$batch`.
const BATCH_SIZE: u64 = 1000;
/// Requests in flight for the bulk paths: a few large ones keep the single writer busy.
const BULK_CONCURRENCY: usize = 4;
/// Results of the time-window `$filter` (minutes of one Datastream).
const WINDOW: u64 = 100;
/// The DESIGN.md target of MQTT ingest, Observations per second.
const MQTT_TARGET: f64 = 50_000.0;
/// QoS 1 PUBLISHes each connection keeps unacknowledged in `ingest_mqtt_qos1_window`: the
/// default of paho-mqtt (`max_inflight_messages`); rumqttc's is 100.
const MQTT_QOS1_WINDOW: usize = 20;
/// Subscribers of `v1.1/Observations` in `notify_mqtt_latency`.
const NOTIFY_SUBSCRIBERS: usize = 10;
/// Notifications per second the subscribers receive together in `notify_mqtt_latency`.
const NOTIFY_FAN_OUT_RATE: f64 = 10_000.0;
/// The DESIGN.md target of notification latency, p99 in ms.
const NOTIFY_P99_TARGET_MS: f64 = 20.0;
/// Pages timed at each end of a walk.
const EDGE_PAGES: usize = 50;

/// What every measurement needs.
#[derive(Debug, Clone)]
pub struct Bench {
    pub api: Api,
    pub dataset: Arc<Dataset>,
    /// The server process, when the harness started it (CPU time).
    pub pid: Option<u32>,
    pub duration: Duration,
    pub concurrency: usize,
    /// `host:port` of the server's MQTT listener, when known.
    pub mqtt: Option<String>,
    /// Figure ids (or prefixes of them) to measure; all when empty.
    pub only: Vec<String>,
    /// Seconds after the seeded data handed out to ingested Observations, so that every one
    /// has its own, increasing phenomenonTime.
    clock: Arc<AtomicU64>,
}

impl Bench {
    pub fn new(
        api: Api,
        dataset: Dataset,
        pid: Option<u32>,
        duration: Duration,
        concurrency: usize,
        mqtt: Option<String>,
    ) -> Bench {
        Bench {
            api,
            dataset: Arc::new(dataset),
            pid,
            duration,
            concurrency,
            mqtt,
            only: Vec::new(),
            clock: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether the figure `id` is to be measured (`--only`).
    pub fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|prefix| id.starts_with(prefix.as_str()))
    }

    /// Whether `--only` names `id` exactly and nothing else that `id` is a prefix of asks for
    /// more (so `--only ingest_mqtt_qos1_window` does not also run `ingest_mqtt_qos1`).
    fn only_prefix_of(&self, id: &str) -> bool {
        !self.only.is_empty() && self.only.iter().all(|prefix| prefix == id)
    }

    fn plan(&self, concurrency: usize) -> Plan {
        Plan { concurrency, duration: self.duration }
    }

    /// The first Unix time after the seeded data, plus an hour.
    fn ingest_epoch(&self) -> i64 {
        T0 + self.dataset.steps() as i64 * STEP_SECONDS + 3600
    }
}

/// Fills a figure from a run (or marks it not available).
fn fill(mut figure: Figure, concurrency: usize, result: Result<Run, String>) -> Figure {
    figure.concurrency = concurrency;
    figure.load_average = load_average()[0];
    match result {
        Err(reason) => {
            figure.status = Status::NotAvailable;
            figure.note = Some(reason);
        }
        Ok(run) => {
            figure.requests = run.requests;
            figure.errors = run.errors;
            figure.first_error = run.first_error.clone();
            figure.items = run.items;
            figure.seconds = run.elapsed.as_secs_f64();
            figure.requests_per_second = run.requests_per_second();
            figure.items_per_second = run.items_per_second();
            figure.latency_ms = Latency::from_histogram(&run.histogram);
            let attempts = (run.requests + run.errors).max(1) as f64;
            figure.server_cpu_ms_per_request =
                run.server_cpu_seconds.map(|s| s * 1000.0 / attempts);
            figure.server_cpu_ms_per_item =
                run.server_cpu_seconds.map(|s| s * 1000.0 / run.items.max(1) as f64);
            figure.harness_cpu_ms_per_request =
                run.client_cpu_seconds.map(|s| s * 1000.0 / attempts);
        }
    }
    figure
}

/// Sets the target text and verdict.
fn judge(mut figure: Figure, target: &'static str, check: impl Fn(&Figure) -> bool) -> Figure {
    figure.target = Some(target);
    if figure.status == Status::Ok && figure.requests > 0 {
        figure.met = Some(check(&figure));
    }
    figure
}

fn p50(figure: &Figure) -> f64 {
    figure.latency_ms.map_or(f64::INFINITY, |l| l.p50)
}

fn p99(figure: &Figure) -> f64 {
    figure.latency_ms.map_or(f64::INFINITY, |l| l.p99)
}

fn announce(title: &str) {
    eprintln!("measuring: {title}");
}

// ---------------------------------------------------------------------------------------------
// Reads

/// A read of `make_url(seq)`, counted as one item per request.
async fn read(
    bench: &Bench,
    mut figure: Figure,
    concurrency: usize,
    make_url: impl Fn(u64) -> String + Send + Sync + 'static,
    describe: impl FnOnce(&Json) -> Option<String>,
) -> Option<Figure> {
    if !bench.wants(figure.id) {
        return None;
    }
    announce(figure.title);
    // One request outside the measurement says what a response holds.
    let first = bench.api.get_json(&make_url(u64::MAX / 2)).await;
    let note = first.as_ref().ok().and_then(describe);
    let api = bench.api.clone();
    let make_url = Arc::new(make_url);
    let result = runner::measure(figure.title, bench.plan(concurrency), bench.pid, move |n| {
        let api = api.clone();
        let url = make_url(n);
        async move { api.get_bytes(&url).await.map(|_| 1) }
    })
    .await;
    figure = fill(figure, concurrency, result);
    if figure.status == Status::Ok {
        figure.note = note;
    }
    Some(figure)
}

fn values(json: &Json) -> usize {
    json.get("value").and_then(Json::as_array).map_or(0, Vec::len)
}

/// Every read measurement, against the dataset as seeded.
pub async fn reads(bench: &Bench) -> Vec<Figure> {
    let mut figures = Vec::new();
    let (low, high) = bench.dataset.observation_ids;
    let span = (high - low + 1).max(1) as u64;
    let by_id = move |n: u64| format!("Observations({})", low + (mix(n) % span) as i64);

    let figure = Figure::new(
        "read_get_by_id",
        "read",
        "GET one Observation by id",
        "GET /v1.1/Observations(<random id>)".into(),
        "responses",
    );
    let figure = read(bench, figure, 1, by_id, |_| None).await;
    figures.extend(
        figure
            .map(|f| judge(f, "p50 ≤ 0.3 ms, p99 ≤ 3 ms", |f| p50(f) <= 0.3 && p99(f) <= 3.0)),
    );

    let figure = Figure::new(
        "read_get_by_id_c32",
        "read",
        "GET one Observation by id (throughput)",
        "GET /v1.1/Observations(<random id>)".into(),
        "responses",
    );
    figures.extend(read(bench, figure, bench.concurrency, by_id, |_| None).await);

    let streams = Arc::clone(&bench.dataset);
    let latest = move |n: u64| {
        let d = streams.datastreams[(mix(n) % streams.datastreams.len() as u64) as usize];
        format!("Datastreams({d})/Observations?$orderby={}&$top=1", encode("phenomenonTime desc"))
    };
    let figure = Figure::new(
        "read_latest",
        "read",
        "latest Observation of a Datastream",
        "GET /v1.1/Datastreams(<random>)/Observations?$orderby=phenomenonTime desc&$top=1".into(),
        "responses",
    );
    let figure = read(bench, figure, 1, latest, |json| {
        Some(format!("returns {} Observation", values(json)))
    })
    .await;
    figures.extend(figure.map(|f| judge(f, "p50 ≤ 0.5 ms (at 10 M)", |f| p50(f) <= 0.5)));

    let streams = Arc::clone(&bench.dataset);
    let steps = bench.dataset.steps();
    let window = WINDOW.min(steps.saturating_sub(1)).max(1);
    let time_window = move |n: u64| {
        let d = streams.datastreams[(mix(n) % streams.datastreams.len() as u64) as usize];
        let last_start = steps.saturating_sub(window + 1).max(1);
        let start = mix(n ^ 0x5bd1) % last_start;
        let from = iso(T0 + start as i64 * STEP_SECONDS);
        let to = iso(T0 + (start + window) as i64 * STEP_SECONDS);
        let filter = format!("phenomenonTime ge {from} and phenomenonTime lt {to}");
        format!("Datastreams({d})/Observations?$filter={}&$top={WINDOW}", encode(&filter))
    };
    let figure = Figure::new(
        "read_time_window",
        "read",
        "time-window $filter, one Datastream",
        format!(
            "GET /v1.1/Datastreams(<random>)/Observations?$filter=phenomenonTime ge <t> and phenomenonTime lt <t + {window} min>&$top={WINDOW}"
        ),
        "responses",
    );
    let figure = read(bench, figure, 1, time_window, |json| {
        Some(format!("returns {} Observations", values(json)))
    })
    .await;
    figures.extend(figure.map(|f| judge(f, "p50 ≤ 1 ms (100 results)", |f| p50(f) <= 1.0)));

    let expand = "Things?$top=100&$expand=".to_owned()
        + &encode("Datastreams($expand=Observations($top=5))");
    let figure = Figure::new(
        "read_expand",
        "read",
        "$expand Datastreams/Observations, 100 Things",
        "GET /v1.1/Things?$top=100&$expand=Datastreams($expand=Observations($top=5))".into(),
        "responses",
    );
    let figure = read(
        bench,
        figure,
        1,
        move |_| expand.clone(),
        |json| {
            let things = json.get("value").and_then(Json::as_array)?;
            let observations: usize = things
                .iter()
                .flat_map(|t| t.get("Datastreams").and_then(Json::as_array).into_iter().flatten())
                .map(|d| d.get("Observations").and_then(Json::as_array).map_or(0, Vec::len))
                .sum();
            Some(format!("returns {} Things, {observations} Observations", things.len()))
        },
    )
    .await;
    figures.extend(figure.map(|f| judge(f, "p50 ≤ 5 ms", |f| p50(f) <= 5.0)));

    let figure = Figure::new(
        "read_count",
        "read",
        "$count=true over all Observations",
        "GET /v1.1/Observations?$count=true&$top=1".into(),
        "responses",
    );
    let figure = read(
        bench,
        figure,
        1,
        |_| "Observations?$count=true&$top=1".into(),
        |json| json.get("@iot.count").map(|c| format!("@iot.count = {c}")),
    )
    .await;
    figures.extend(figure.map(|f| judge(f, "≤ 50 ms (at 10 M)", |f| p50(f) <= 50.0)));

    let receipt = move |n: u64| format!("{}/$receipt", by_id(n));
    let figure = Figure::new(
        "read_receipt",
        "read",
        "receipt (inclusion proof) of an Observation",
        "GET /v1.1/Observations(<random id>)/$receipt".into(),
        "responses",
    );
    let figure = read(bench, figure, 1, receipt, |_| None).await;
    figures.extend(figure.map(|f| judge(f, "p99 ≤ 2 ms", |f| p99(f) <= 2.0)));

    // The south-west quarter of the station grid: about 25 of the 100 Locations.
    let polygon = "POLYGON((8.0 50.0, 8.5 50.0, 8.5 50.5, 8.0 50.5, 8.0 50.0))";
    let spatial = format!(
        "Locations?$filter={}",
        encode(&format!("st_within(location, geography'{polygon}')"))
    );
    let figure = Figure::new(
        "read_st_within",
        "read",
        "st_within over Locations",
        format!("GET /v1.1/Locations?$filter=st_within(location, geography'{polygon}')"),
        "responses",
    );
    let figure = read(
        bench,
        figure,
        1,
        move |_| spatial.clone(),
        |json| Some(format!("returns {} Locations", values(json))),
    )
    .await;
    figures.extend(figure);
    figures
}

// ---------------------------------------------------------------------------------------------
// Paging

/// A walk along `@iot.nextLink`.
struct Walk {
    /// Time of each page, in order.
    page_micros: Vec<u64>,
    items: u64,
    reached_end: bool,
    elapsed: Duration,
    server_cpu_seconds: Option<f64>,
}

async fn walk(bench: &Bench, label: &str, start: &str, budget: Duration) -> Result<Walk, String> {
    let bar = ProgressBar::new_spinner();
    bar.set_prefix(label.to_owned());
    let cpu_before = bench.pid.and_then(crate::server::cpu_seconds);
    let started = Instant::now();
    let mut next = Some(start.to_owned());
    let mut page_micros = Vec::new();
    let mut items = 0;
    while let Some(url) = next.take() {
        if started.elapsed() > budget {
            next = Some(url);
            break;
        }
        let sent = Instant::now();
        let page = bench.api.get_json(&url).await;
        page_micros.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
        let page = page.map_err(|e| {
            if page_micros.len() == 1 { e.0 } else { format!("page {}: {e}", page_micros.len()) }
        })?;
        items += values(&page) as u64;
        next = page.get("@iot.nextLink").and_then(Json::as_str).map(str::to_owned);
        if page_micros.len().is_multiple_of(20) {
            bar.set_message(format!("{label}: page {}", page_micros.len()));
            bar.tick();
        }
    }
    bar.finish_and_clear();
    let server_cpu_seconds = match (cpu_before, bench.pid.and_then(crate::server::cpu_seconds)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    Ok(Walk {
        page_micros,
        items,
        reached_end: next.is_none(),
        elapsed: started.elapsed(),
        server_cpu_seconds,
    })
}

/// Pages per second over `micros`.
fn rate(micros: &[u64]) -> f64 {
    let total: u64 = micros.iter().sum();
    micros.len() as f64 / (total as f64 / 1e6).max(1e-9)
}

fn paging_figure(mut figure: Figure, walk: Result<Walk, String>, expected: u64) -> Figure {
    let walk = match walk {
        Ok(walk) => walk,
        Err(reason) => {
            figure.status = Status::NotAvailable;
            figure.note = Some(reason);
            return figure;
        }
    };
    figure.load_average = load_average()[0];
    let pages = walk.page_micros.len();
    let edge = EDGE_PAGES.min(pages / 2).max(1).min(pages);
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid");
    for micros in &walk.page_micros {
        histogram.saturating_record((*micros).max(1));
    }
    figure.requests = pages as u64;
    figure.items = walk.items;
    figure.seconds = walk.elapsed.as_secs_f64();
    figure.requests_per_second = pages as f64 / figure.seconds.max(1e-9);
    figure.items_per_second = walk.items as f64 / figure.seconds.max(1e-9);
    figure.latency_ms = Latency::from_histogram(&histogram);
    // CPU time is counted in 10 ms ticks: a walk shorter than half a second says nothing.
    figure.server_cpu_ms_per_request = walk
        .server_cpu_seconds
        .filter(|_| walk.elapsed >= Duration::from_millis(500))
        .map(|s| s * 1000.0 / pages.max(1) as f64);
    let first = rate(&walk.page_micros[..edge]);
    let last = rate(&walk.page_micros[pages - edge..]);
    figure.extra.insert("pages".into(), json!(pages));
    figure.extra.insert("edge_pages".into(), json!(edge));
    figure.extra.insert("first_pages_per_second".into(), json!(first.round()));
    figure.extra.insert("last_pages_per_second".into(), json!(last.round()));
    figure.extra.insert("reached_last_page".into(), json!(walk.reached_end));
    let mut note = format!(
        "{pages} pages of {} Observations; first {edge} pages {first:.0} pages/s, last {edge} pages {last:.0} pages/s",
        walk.items
    );
    if walk.reached_end && walk.items != expected {
        note.push_str(&format!("; {expected} Observations expected"));
    } else if !walk.reached_end {
        note.push_str("; stopped before the last page when the time budget ran out");
    }
    figure.note = Some(note);
    figure
}

/// Pages/s from the first and last pages of a walk, for the target.
fn page_rates(figure: &Figure) -> (f64, f64) {
    let get = |key: &str| figure.extra.get(key).and_then(Json::as_f64).unwrap_or(0.0);
    (get("first_pages_per_second"), get("last_pages_per_second"))
}

/// Follows `@iot.nextLink` through one Datastream's Observations, then through all of them.
pub async fn paging(bench: &Bench) -> Vec<Figure> {
    let mut figures = Vec::new();
    let budget = bench.duration * 12;
    if bench.wants("paging_datastream") {
        let datastream = bench.dataset.datastreams[0];
        let title = "paging one Datastream by nextLink";
        announce(title);
        let start = format!("Datastreams({datastream})/Observations");
        let result = walk(bench, title, &start, budget).await;
        let figure = Figure::new(
            "paging_datastream",
            "paging",
            title,
            "GET /v1.1/Datastreams(<id>)/Observations, then each @iot.nextLink (default page size)"
                .into(),
            "Observations",
        );
        figures.push(paging_figure(figure, result, bench.dataset.steps()));
    }
    if bench.wants("paging_all") {
        let title = "paging all Observations by nextLink";
        announce(title);
        let result = walk(bench, title, "Observations?$top=100", budget).await;
        let figure = Figure::new(
            "paging_all",
            "paging",
            title,
            "GET /v1.1/Observations?$top=100, then each @iot.nextLink to the last page".into(),
            "Observations",
        );
        let figure = paging_figure(figure, result, bench.dataset.observations);
        figures.push(judge(figure, "≥ 2,000 pages/s, deep = first", |f| {
            let (first, last) = page_rates(f);
            first >= 2000.0 && last >= 2000.0 && last >= 0.8 * first
        }));
    }
    figures
}

// ---------------------------------------------------------------------------------------------
// Ingest

/// A new Observation of Datastream index `d` with the next free phenomenonTime.
fn new_observation(bench: &Bench, d: usize) -> (String, f64) {
    let second = bench.clock.fetch_add(1, Ordering::Relaxed);
    let time = iso(bench.ingest_epoch() + second as i64);
    (time, reading(d, second / 60, second))
}

fn single_post_body(bench: &Bench, n: u64) -> String {
    let streams = &bench.dataset.datastreams;
    let d = (mix(n) % streams.len() as u64) as usize;
    let (time, result) = new_observation(bench, d);
    format!(
        r#"{{"phenomenonTime":"{time}","result":{result},"Datastream":{{"@iot.id":{}}}}}"#,
        streams[d]
    )
}

async fn single_posts(
    bench: &Bench,
    id: &'static str,
    title: &'static str,
    c: usize,
) -> Option<Figure> {
    if !bench.wants(id) {
        return None;
    }
    announce(title);
    let figure = Figure::new(id, "ingest", title, "POST /v1.1/Observations".into(), "Observations");
    let worker = bench.clone();
    let result = runner::measure(title, bench.plan(c), bench.pid, move |n| {
        let body = single_post_body(&worker, n);
        let api = worker.api.clone();
        async move { api.post("Observations", body).await.map(|_| 1) }
    })
    .await;
    Some(fill(figure, c, result))
}

/// Every ingest measurement; each adds Observations after the seeded ones.
pub async fn ingest(bench: &Bench) -> Vec<Figure> {
    let mut figures = Vec::new();
    figures.extend(single_posts(bench, "ingest_post_c1", "single POST, 1 connection", 1).await);
    let figure =
        single_posts(bench, "ingest_post_c32", "single POST, 32 connections", bench.concurrency)
            .await;
    figures.extend(figure.map(|f| {
        judge(f, "≥ 20,000/s, CPU ≤ 0.1 ms", |f| {
            f.items_per_second >= 20_000.0 && f.server_cpu_ms_per_item.is_none_or(|c| c <= 0.1)
        })
    }));

    figures.extend(create_observations(bench).await);
    figures.extend(batch(bench).await);
    // QoS 0 last: a server that cannot keep up is still draining its backlog afterwards.
    if bench.wants("ingest_mqtt_qos1") && !bench.only_prefix_of("ingest_mqtt_qos1_window") {
        figures.push(mqtt_qos1(bench).await);
    }
    if bench.wants("ingest_mqtt_qos1_window") {
        figures.push(mqtt_qos1_window(bench).await);
    }
    if bench.wants("notify_mqtt_latency") {
        figures.push(mqtt_notification_latency(bench).await);
    }
    if bench.wants("ingest_mqtt_qos0") {
        figures.push(mqtt_qos0(bench).await);
    }
    figures
}

/// `CreateObservations` with dataArrays, a few requests in flight.
async fn create_observations(bench: &Bench) -> Vec<Figure> {
    let mut figures = Vec::new();
    if !bench.wants("ingest_create_observations") {
        return figures;
    }
    let title = "CreateObservations (dataArray)";
    announce(title);
    let figure = Figure::new(
        "ingest_create_observations",
        "ingest",
        title,
        format!(
            "POST /v1.1/CreateObservations, {DATA_ARRAY_SIZE} Observations of one Datastream per request"
        ),
        "Observations",
    );
    let worker = bench.clone();
    let result = runner::measure(title, bench.plan(BULK_CONCURRENCY), bench.pid, move |n| {
        let streams = &worker.dataset.datastreams;
        let d = (mix(n) % streams.len() as u64) as usize;
        let rows: Vec<Json> = (0..DATA_ARRAY_SIZE)
            .map(|_| {
                let (time, result) = new_observation(&worker, d);
                json!([time, result])
            })
            .collect();
        let body = json!([{
            "Datastream": {"@iot.id": streams[d]},
            "components": ["phenomenonTime", "result"],
            "dataArray@iot.count": rows.len(),
            "dataArray": rows
        }])
        .to_string();
        let api = worker.api.clone();
        async move { seed::created_count(&api.post_json("CreateObservations", body).await?) }
    })
    .await;
    let figure = fill(figure, BULK_CONCURRENCY, result);
    figures.push(judge(figure, "≥ 150,000/s", |f| f.items_per_second >= 150_000.0));
    figures
}

/// JSON `$batch` of single POSTs, a few batches in flight.
async fn batch(bench: &Bench) -> Vec<Figure> {
    let mut figures = Vec::new();
    if !bench.wants("ingest_batch") {
        return figures;
    }
    let title = "JSON $batch of single POSTs";
    announce(title);
    let figure = Figure::new(
        "ingest_batch",
        "ingest",
        title,
        format!("POST /v1.1/$batch (JSON), {BATCH_SIZE} POST Observations per batch"),
        "Observations",
    );
    let worker = bench.clone();
    let result = runner::measure(title, bench.plan(BULK_CONCURRENCY), bench.pid, move |n| {
        let requests: Vec<Json> = (0..BATCH_SIZE)
            .map(|i| {
                let body: Json =
                    serde_json::from_str(&single_post_body(&worker, n * BATCH_SIZE + i))
                        .unwrap_or(Json::Null);
                json!({
                    "id": format!("r{i}"),
                    "method": "post",
                    "url": "Observations",
                    "headers": {"content-type": "application/json"},
                    "body": body
                })
            })
            .collect();
        let body = json!({ "requests": requests }).to_string();
        let api = worker.api.clone();
        async move {
            let answer = api.post_json("$batch", body).await?;
            let responses = answer
                .get("responses")
                .and_then(Json::as_array)
                .ok_or_else(|| OpError("the $batch answer has no responses".into()))?;
            let created = responses
                .iter()
                .filter(|r| r.get("status").and_then(Json::as_u64) == Some(201))
                .count() as u64;
            if created < BATCH_SIZE {
                return Err(OpError(format!("$batch created {created} of {BATCH_SIZE}")));
            }
            Ok(created)
        }
    })
    .await;
    let figure = fill(figure, BULK_CONCURRENCY, result);
    figures.push(judge(figure, "≥ 150,000/s", |f| f.items_per_second >= 150_000.0));
    figures
}

// ---------------------------------------------------------------------------------------------
// MQTT

fn mqtt_topic_and_payload(bench: &Bench, n: u64) -> (String, Vec<u8>) {
    let streams = &bench.dataset.datastreams;
    let d = (mix(n) % streams.len() as u64) as usize;
    let (time, result) = new_observation(bench, d);
    (
        format!("v1.1/Datastreams({})/Observations", streams[d]),
        format!(r#"{{"phenomenonTime":"{time}","result":{result}}}"#).into_bytes(),
    )
}

fn mqtt_unavailable(figure: Figure, concurrency: usize, reason: String) -> Figure {
    judge(fill(figure, concurrency, Err(reason)), "≥ 50,000/s", |_| false)
}

async fn observation_count(api: &Api) -> Result<u64, OpError> {
    let page = api.get_json("Observations?$count=true&$top=0").await?;
    page.get("@iot.count")
        .and_then(Json::as_u64)
        .ok_or_else(|| OpError("no @iot.count in the answer".into()))
}

/// Polls the Observation count (at once, then every 50 ms) until it reaches `target`, stops growing for
/// 3 s, or `limit` passes; returns the last count and when it was last seen growing (`since`
/// when it never grew).
async fn wait_until_stored(
    api: &Api,
    from: u64,
    target: u64,
    since: Instant,
    limit: Instant,
) -> (u64, Instant) {
    let mut stored = from;
    let mut last_growth = since;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first = false;
        let poll = tokio::time::timeout(Duration::from_secs(5), observation_count(api)).await;
        let checked = Instant::now();
        if let Ok(Ok(count)) = poll
            && count > stored
        {
            stored = count;
            last_growth = checked;
        }
        if stored >= target
            || checked.duration_since(last_growth) >= Duration::from_secs(3)
            || checked >= limit
        {
            return (stored, last_growth);
        }
    }
}

/// A QoS 1 figure counts what was stored, not only what was acknowledged: the server may
/// acknowledge a message once it is in its ingest journal, before its transaction. Waits until
/// `acknowledged` more than `before` are stored (after the run that ended at `ended`) and
/// divides the figure's items by its time plus that wait.
async fn count_stored(
    bench: &Bench,
    figure: &mut Figure,
    before: u64,
    acknowledged: u64,
    ended: Instant,
) {
    let limit = ended + (bench.duration * 2).max(Duration::from_secs(10));
    let target = before + acknowledged;
    let (stored, at) = wait_until_stored(&bench.api, before, target, ended, limit).await;
    let wait = at.saturating_duration_since(ended);
    figure.seconds += wait.as_secs_f64();
    figure.items_per_second = figure.items as f64 / figure.seconds.max(1e-3);
    figure.extra.insert("acknowledged".into(), json!(acknowledged));
    figure.extra.insert("stored".into(), json!(stored.saturating_sub(before)));
    figure.extra.insert("stored_after_the_last_ack_ms".into(), json!(wait.as_millis() as u64));
    let created = if stored >= target {
        format!("all stored {} ms after the last PUBACK", wait.as_millis())
    } else {
        format!("only {} of them stored when the wait ended", stored.saturating_sub(before))
    };
    let note = format!("{acknowledged} acknowledged, {created}");
    figure.note = Some(match figure.note.take() {
        Some(earlier) => format!("{earlier}; {note}"),
        None => note,
    });
}

/// QoS 1: every PUBLISH waits for its PUBACK; one connection per worker.
async fn mqtt_qos1(bench: &Bench) -> Figure {
    let title = "MQTT publish, QoS 1";
    announce(title);
    let figure = Figure::new(
        "ingest_mqtt_qos1",
        "ingest",
        title,
        "PUBLISH v1.1/Datastreams(<id>)/Observations, QoS 1, waits for PUBACK".into(),
        "Observations",
    );
    let c = bench.concurrency;
    let Some(addr) = bench.mqtt.clone() else {
        return mqtt_unavailable(figure, c, no_mqtt_reason());
    };
    let before = match observation_count(&bench.api).await {
        Ok(count) => count,
        Err(error) => return mqtt_unavailable(figure, c, error.0),
    };
    let pool: Arc<Mutex<Vec<Publisher>>> = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicU64::new(0));
    // Every acknowledgement, the probe's and the warm-up's too: all are stored before the end.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let worker = bench.clone();
    let counted = Arc::clone(&acknowledged);
    let result = runner::measure(title, bench.plan(c), bench.pid, move |n| {
        let (topic, payload) = mqtt_topic_and_payload(&worker, n);
        let pool = Arc::clone(&pool);
        let connections = Arc::clone(&connections);
        let counted = Arc::clone(&counted);
        let addr = addr.clone();
        async move {
            let pooled = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut publisher = match pooled {
                Some(publisher) => publisher,
                None => {
                    let id = connections.fetch_add(1, Ordering::Relaxed);
                    Publisher::connect(&addr, &format!("stela-bench-q1-{id}")).await?
                }
            };
            publisher.publish_qos1(&topic, &payload).await?;
            counted.fetch_add(1, Ordering::Relaxed);
            pool.lock().unwrap_or_else(|p| p.into_inner()).push(publisher);
            Ok(1)
        }
    })
    .await;
    let ended = Instant::now();
    let measured = result.is_ok();
    let mut figure = fill(figure, c, result);
    if measured {
        let acknowledged = acknowledged.load(Ordering::Relaxed);
        count_stored(bench, &mut figure, before, acknowledged, ended).await;
    }
    judge(figure, "≥ 50,000/s", |f| f.items_per_second >= MQTT_TARGET)
}

fn no_mqtt_reason() -> String {
    "the server announced no MQTT listener (pass --mqtt HOST:PORT to name one)".into()
}

/// QoS 0: nothing is acknowledged, so the rate is what the server stored, read back with
/// `$count` until it stops growing.
async fn mqtt_qos0(bench: &Bench) -> Figure {
    let title = "MQTT publish, QoS 0";
    announce(title);
    let mut figure = Figure::new(
        "ingest_mqtt_qos0",
        "ingest",
        title,
        "PUBLISH v1.1/Datastreams(<id>)/Observations, QoS 0; stored count read back by $count"
            .into(),
        "Observations",
    );
    let c = bench.concurrency;
    let Some(addr) = bench.mqtt.clone() else {
        return mqtt_unavailable(figure, c, no_mqtt_reason());
    };
    let mut publishers = Vec::with_capacity(c);
    for i in 0..c {
        match Publisher::connect(&addr, &format!("stela-bench-q0-{i}")).await {
            Ok(publisher) => publishers.push(publisher),
            Err(error) => return mqtt_unavailable(figure, c, error.0),
        }
    }
    let before = match observation_count(&bench.api).await {
        Ok(count) => count,
        Err(error) => return mqtt_unavailable(figure, c, error.0),
    };
    let cpu_before = bench.pid.and_then(crate::server::cpu_seconds);
    let started = Instant::now();
    let deadline = started + bench.duration;
    // Nothing slows a QoS 0 publisher but TCP, and the kernel buffers hold minutes of backlog:
    // the publishers are paced together, a quarter above the target rate, and the figure is
    // what was stored over the time until the last was stored. Paced at the target itself, a
    // server that keeps up could not show it (the last commit and the polling of the count
    // come after the last publish); paced without a limit, a backlog of minutes would build.
    let pace = MQTT_TARGET * 1.25;
    let cap = (bench.duration.as_secs_f64() * pace).ceil() as u64;
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut publisher in publishers {
        let worker = bench.clone();
        let seq = Arc::clone(&seq);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if n >= cap {
                    break;
                }
                let due = started + Duration::from_secs_f64(n as f64 / pace);
                if due > Instant::now() + Duration::from_millis(2) {
                    publisher.flush().await?;
                    tokio::time::sleep_until(due.into()).await;
                }
                let (topic, payload) = mqtt_topic_and_payload(&worker, n);
                publisher.publish_qos0(&topic, &payload).await?;
                sent += 1;
                if sent.is_multiple_of(64) {
                    publisher.flush().await?;
                }
            }
            publisher.flush().await?;
            Ok::<_, OpError>((sent, publisher))
        }));
    }
    let (published, keep_open, failure) = join_publishers(tasks).await;
    let published_after = started.elapsed();
    // Wait until everything is stored, the count stops growing for 3 s, or the wait is over.
    let wait_limit = started + (bench.duration * 2).max(Duration::from_secs(10));
    let (stored, last_growth) =
        wait_until_stored(&bench.api, before, before + published, Instant::now(), wait_limit).await;
    drop(keep_open);
    let stored = stored - before;
    let elapsed = last_growth.duration_since(started);
    if stored == 0 {
        let reason = failure.unwrap_or_else(|| {
            format!("published {published} Observations, the server stored none")
        });
        return mqtt_unavailable(figure, c, reason);
    }
    figure.concurrency = c;
    figure.load_average = load_average()[0];
    figure.requests = published;
    figure.items = stored;
    figure.first_error = failure;
    figure.extra.insert("published".into(), json!(published));
    figure
        .extra
        .insert("not_stored_when_the_wait_ended".into(), json!(published - stored.min(published)));
    figure.seconds = elapsed.as_secs_f64();
    figure.requests_per_second = published as f64 / published_after.as_secs_f64().max(1e-3);
    figure.items_per_second = stored as f64 / figure.seconds;
    figure.server_cpu_ms_per_item =
        match (cpu_before, bench.pid.and_then(crate::server::cpu_seconds)) {
            (Some(before), Some(after)) => Some((after - before) * 1000.0 / stored as f64),
            _ => None,
        };
    figure.server_cpu_ms_per_request = figure.server_cpu_ms_per_item;
    figure.note = Some(format!(
        "published {published} in {:.1} s, {stored} stored {:.1} s after the start{}",
        published_after.as_secs_f64(),
        elapsed.as_secs_f64(),
        if stored < published {
            "; the rest was lost or still queued when the wait ended"
        } else {
            ""
        }
    ));
    judge(figure, "≥ 50,000/s", |f| f.items_per_second >= MQTT_TARGET)
}

/// QoS 1 with a window: each connection keeps up to [`MQTT_QOS1_WINDOW`] PUBLISHes
/// unacknowledged, as MQTT clients do, and counts what is acknowledged.
async fn mqtt_qos1_window(bench: &Bench) -> Figure {
    let title = "MQTT publish, QoS 1, window of 20";
    announce(title);
    let mut figure = Figure::new(
        "ingest_mqtt_qos1_window",
        "ingest",
        title,
        format!(
            "PUBLISH v1.1/Datastreams(<id>)/Observations, QoS 1, up to {MQTT_QOS1_WINDOW} \
             unacknowledged per connection"
        ),
        "Observations",
    );
    let c = bench.concurrency;
    let Some(addr) = bench.mqtt.clone() else {
        return mqtt_unavailable(figure, c, no_mqtt_reason());
    };
    let mut publishers = Vec::with_capacity(c);
    for i in 0..c {
        match Publisher::connect(&addr, &format!("stela-bench-q1w-{i}")).await {
            Ok(publisher) => publishers.push(publisher),
            Err(error) => return mqtt_unavailable(figure, c, error.0),
        }
    }
    let before = match observation_count(&bench.api).await {
        Ok(count) => count,
        Err(error) => return mqtt_unavailable(figure, c, error.0),
    };
    let cpu_before = bench.pid.and_then(crate::server::cpu_seconds);
    let started = Instant::now();
    let deadline = started + bench.duration;
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut publisher in publishers {
        let worker = bench.clone();
        let seq = Arc::clone(&seq);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).map_err(|e| OpError(e.to_string()))?;
            let mut in_flight: std::collections::VecDeque<(u16, Instant)> =
                std::collections::VecDeque::new();
            let mut acknowledged = 0u64;
            loop {
                let open = Instant::now() < deadline;
                while open && in_flight.len() < MQTT_QOS1_WINDOW {
                    let (topic, payload) =
                        mqtt_topic_and_payload(&worker, seq.fetch_add(1, Ordering::Relaxed));
                    let id = publisher.send_qos1(&topic, &payload).await?;
                    in_flight.push_back((id, Instant::now()));
                }
                if in_flight.is_empty() {
                    break;
                }
                publisher.flush().await?;
                let id = publisher.next_puback().await?;
                // PUBACKs come in PUBLISH order (MQTT 3.1.1 §4.6); anything else is skipped.
                if let Some(position) = in_flight.iter().position(|(sent, _)| *sent == id) {
                    if let Some((_, sent_at)) = in_flight.remove(position) {
                        let micros = sent_at.elapsed().as_micros() as u64;
                        let _ = histogram.record(micros.max(1));
                    }
                    acknowledged += 1;
                }
            }
            Ok::<_, OpError>((acknowledged, histogram))
        }));
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut acknowledged = 0;
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok((count, own))) => {
                acknowledged += count;
                let _ = histogram.add(own);
            }
            Ok(Err(error)) => {
                failure.get_or_insert(error.0);
            }
            Err(join) => {
                failure.get_or_insert(join.to_string());
            }
        }
    }
    let elapsed = started.elapsed();
    if acknowledged == 0 {
        let reason = failure.unwrap_or_else(|| "no PUBLISH was acknowledged".into());
        return mqtt_unavailable(figure, c, reason);
    }
    figure.concurrency = c;
    figure.load_average = load_average()[0];
    figure.requests = acknowledged;
    figure.items = acknowledged;
    figure.first_error = failure;
    figure.seconds = elapsed.as_secs_f64();
    figure.requests_per_second = acknowledged as f64 / figure.seconds;
    figure.items_per_second = figure.requests_per_second;
    figure.latency_ms = Latency::from_histogram(&histogram);
    count_stored(bench, &mut figure, before, acknowledged, started + elapsed).await;
    figure.server_cpu_ms_per_item =
        match (cpu_before, bench.pid.and_then(crate::server::cpu_seconds)) {
            (Some(before), Some(after)) => Some((after - before) * 1000.0 / acknowledged as f64),
            _ => None,
        };
    figure.server_cpu_ms_per_request = figure.server_cpu_ms_per_item;
    figure.extra.insert("window".into(), json!(MQTT_QOS1_WINDOW));
    judge(figure, "≥ 50,000/s", |f| f.items_per_second >= MQTT_TARGET)
}

/// Notification latency: [`NOTIFY_SUBSCRIBERS`] subscribers of `v1.1/Observations` while
/// Observations are published over MQTT at [`NOTIFY_FAN_OUT_RATE`] / subscribers per second,
/// so that the broker sends [`NOTIFY_FAN_OUT_RATE`] notifications per second. Each
/// Observation's result is the time it was published (µs after the start), so that each
/// subscriber times every notification from PUBLISH to its arrival: the whole path of create,
/// commit, change event, read, render and delivery.
async fn mqtt_notification_latency(bench: &Bench) -> Figure {
    let title = "MQTT notification latency";
    announce(title);
    let mut figure = Figure::new(
        "notify_mqtt_latency",
        "notify",
        title,
        format!(
            "{NOTIFY_SUBSCRIBERS} subscribers of v1.1/Observations (QoS 0), {} Observations/s \
             published (QoS 0, 4 connections): {NOTIFY_FAN_OUT_RATE} notifications/s",
            NOTIFY_FAN_OUT_RATE / NOTIFY_SUBSCRIBERS as f64
        ),
        "notifications",
    );
    let c = NOTIFY_SUBSCRIBERS;
    let Some(addr) = bench.mqtt.clone() else {
        return mqtt_unavailable(figure, c, no_mqtt_reason());
    };
    let mut subscribers = Vec::with_capacity(c);
    for i in 0..c {
        let subscriber = match Publisher::connect(&addr, &format!("stela-bench-sub-{i}")).await {
            Ok(mut subscriber) => {
                subscriber.subscribe_qos0("v1.1/Observations").await.map(|()| subscriber)
            }
            Err(error) => Err(error),
        };
        match subscriber {
            Ok(subscriber) => subscribers.push(subscriber),
            Err(error) => return mqtt_unavailable(figure, c, error.0),
        }
    }
    let mut publishers = Vec::new();
    for i in 0..4 {
        match Publisher::connect(&addr, &format!("stela-bench-notify-{i}")).await {
            Ok(publisher) => publishers.push(publisher),
            Err(error) => return mqtt_unavailable(figure, c, error.0),
        }
    }
    let rate = NOTIFY_FAN_OUT_RATE / c as f64;
    let started = Instant::now();
    let deadline = started + bench.duration;
    let cap = (bench.duration.as_secs_f64() * rate).ceil() as u64;
    let cpu_before = bench.pid.and_then(crate::server::cpu_seconds);
    // Subscribers read until nothing has come for a while after publishing ended.
    let mut listening = Vec::new();
    for mut subscriber in subscribers {
        listening.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).map_err(|e| OpError(e.to_string()))?;
            let mut received = 0u64;
            loop {
                // Until nothing has come for 2 s after publishing ended.
                let quiet_until = Instant::now().max(deadline) + Duration::from_secs(2);
                let next = tokio::time::timeout_at(quiet_until.into(), subscriber.next_message());
                let payload = match next.await {
                    Ok(Ok(Some(payload))) => payload,
                    Ok(Ok(None)) | Err(_) => break,
                    Ok(Err(error)) => return Err(error),
                };
                // Only this figure's Observations (others may still be stored from the
                // figure before), marked in their parameters.
                let Some(sent_micros) = serde_json::from_slice::<Json>(&payload)
                    .ok()
                    .filter(|json| json["parameters"]["figure"] == NOTIFY_MARK)
                    .and_then(|json| json.get("result").and_then(Json::as_f64))
                else {
                    continue;
                };
                let now = started.elapsed().as_micros() as u64;
                let _ = histogram.record(now.saturating_sub(sent_micros as u64).max(1));
                received += 1;
            }
            Ok::<_, OpError>((received, histogram))
        }));
    }
    let seq = Arc::new(AtomicU64::new(0));
    let mut sending = Vec::new();
    for mut publisher in publishers {
        let worker = bench.clone();
        let seq = Arc::clone(&seq);
        sending.push(tokio::spawn(async move {
            let streams = &worker.dataset.datastreams;
            let mut sent = 0u64;
            loop {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if n >= cap || Instant::now() >= deadline {
                    break;
                }
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let d = (mix(n) % streams.len() as u64) as usize;
                let (time, _) = new_observation(&worker, d);
                let result = started.elapsed().as_micros() as u64;
                let payload = format!(
                    r#"{{"phenomenonTime":"{time}","result":{result},"parameters":{{"figure":"{NOTIFY_MARK}"}}}}"#
                );
                let topic = format!("v1.1/Datastreams({})/Observations", streams[d]);
                publisher.publish_qos0(&topic, payload.as_bytes()).await?;
                publisher.flush().await?;
                sent += 1;
            }
            Ok::<_, OpError>((sent, publisher))
        }));
    }
    let (published, keep_open, mut failure) = join_publishers(sending).await;
    let publishing = started.elapsed();
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut received = 0u64;
    for task in listening {
        match task.await {
            Ok(Ok((count, own))) => {
                received += count;
                let _ = histogram.add(own);
            }
            Ok(Err(error)) => {
                failure.get_or_insert(error.0);
            }
            Err(join) => {
                failure.get_or_insert(join.to_string());
            }
        }
    }
    drop(keep_open);
    let expected = published * c as u64;
    if received == 0 {
        let reason = failure
            .unwrap_or_else(|| format!("published {published} Observations, no notification came"));
        return mqtt_unavailable(figure, c, reason);
    }
    figure.concurrency = c;
    figure.load_average = load_average()[0];
    figure.requests = published;
    figure.items = received;
    figure.first_error = failure;
    figure.seconds = publishing.as_secs_f64();
    figure.requests_per_second = published as f64 / figure.seconds;
    figure.items_per_second = received as f64 / figure.seconds;
    figure.latency_ms = Latency::from_histogram(&histogram);
    figure.server_cpu_ms_per_item =
        match (cpu_before, bench.pid.and_then(crate::server::cpu_seconds)) {
            (Some(before), Some(after)) => Some((after - before) * 1000.0 / received as f64),
            _ => None,
        };
    figure.server_cpu_ms_per_request = figure.server_cpu_ms_per_item;
    figure.extra.insert("subscribers".into(), json!(c));
    figure.extra.insert("expected".into(), json!(expected));
    figure.extra.insert("lost".into(), json!(expected.saturating_sub(received)));
    figure.note = Some(format!(
        "{published} Observations published, {received} of {expected} notifications received"
    ));
    judge(figure, "p99 ≤ 20 ms, none lost", |f| {
        f.latency_ms.is_some_and(|l| l.p99 <= NOTIFY_P99_TARGET_MS) && f.items == expected
    })
}

/// Waits for the publishing tasks: how many messages they sent, their publishers (kept open
/// until the figure is done), and the first failure.
async fn join_publishers(
    tasks: Vec<tokio::task::JoinHandle<Result<(u64, crate::mqtt::Publisher), OpError>>>,
) -> (u64, Vec<crate::mqtt::Publisher>, Option<String>) {
    let mut published = 0;
    let mut keep_open = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok((sent, publisher))) => {
                published += sent;
                keep_open.push(publisher);
            }
            Ok(Err(error)) => {
                failure.get_or_insert(error.0);
            }
            Err(join) => {
                failure.get_or_insert(join.to_string());
            }
        }
    }
    (published, keep_open, failure)
}
