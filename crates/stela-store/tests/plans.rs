//! Query plans on 100,000 Observations (20,000 on PostgreSQL): the latest-Observation,
//! count-per-Datastream and keyset-page queries are answered from indexes, without scanning or
//! sorting, on both backends (PostgreSQL when `STELA_TEST_PG_URL` is set).

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_query::parse_query_options;
use stela_store::test_database::TestDatabase;
use stela_store::{ReadLimits, Scope, Store};

const LIMITS: ReadLimits = ReadLimits { default_top: 100, max_top: 10_000 };

fn options(query: &[(&str, &str)]) -> stela_query::QueryOptions {
    let pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse_query_options(&pairs).expect("valid options")
}

/// Where a test runs: SQLite in a temporary directory, or a fresh PostgreSQL database.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

/// SQLite always; PostgreSQL too when `STELA_TEST_PG_URL` names a server.
fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite(tempfile::tempdir().unwrap())];
    if let Some(server) = TestDatabase::server() {
        backends.push(Backend::Postgres(TestDatabase::create(&server).unwrap()));
    }
    backends
}

/// A store with one Thing, a Datastream (1) with `n` Observations, one per second, and a
/// Datastream (2) with `n / 20`.
fn seeded(backend: &Backend, n: i64) -> (Store, i64) {
    let store = match backend {
        Backend::Sqlite(dir) => Store::open(dir.path().join("stela.db").to_str().unwrap()),
        Backend::Postgres(database) => Store::open(database.url()),
    }
    .unwrap();
    let thing = json!({"name": "t", "description": "d",
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json", "location": {"type": "Point", "coordinates": [1, 2]}}],
        "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": {"name": "s", "description": "d", "encodingType": "x", "metadata": "x"},
            "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}},
            {"name": "small", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}}]});
    let input = decode_entity(EntityType::Thing, &thing, DecodeMode::Create).unwrap();
    store.write(0, |tx| tx.create(&input, None)).map_err(|e: stela_store::StoreError| e).unwrap();
    let datastream = EntityType::Datastream.relation("Observations").unwrap().inverse_relation();
    store
        .write(0, |tx| {
            for i in 0..n {
                let body = json!({"result": i, "phenomenonTime": format!("2020-01-01T00:00:00Z"), "resultTime": null});
                let mut input = decode_entity(EntityType::Observation, &body, DecodeMode::Create).unwrap();
                input.set_value("phenomenonTime", stela_model::Value::Time(stela_model::TimeValue::Instant(1_577_836_800_000_000 + i * 1_000_000)));
                tx.create(&input, Some((datastream, 1)))?;
            }
            // A smaller Datastream beside it: counting its Observations must not read the
            // others'.
            for i in 0..n / 20 {
                let body = json!({"result": i, "phenomenonTime": "2021-01-01T00:00:00Z"});
                let input = decode_entity(EntityType::Observation, &body, DecodeMode::Create).unwrap();
                tx.create(&input, Some((datastream, 2)))?;
            }
            Ok::<(), stela_store::StoreError>(())
        })
        .unwrap();
    if let Backend::Postgres(database) = backend {
        // Statistics, as autovacuum would gather them on a live database.
        let mut client = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
        client.batch_execute("VACUUM ANALYZE observations").unwrap();
    }
    (store, 1)
}

fn observations_of(datastream: i64) -> Scope {
    Scope::Related {
        relation: EntityType::Datastream.relation("Observations").unwrap(),
        parent_id: datastream,
    }
}

fn assert_indexed(plan: &[String], index: &str) {
    let text = plan.join(" | ");
    assert!(text.contains(index), "expected {index} in the plan: {text}");
    // SQLite's and PostgreSQL's words for a sort step and a table scan.
    assert!(!text.contains("TEMP B-TREE") && !text.contains("Sort"), "no sort expected: {text}");
    assert!(!text.contains("SCAN t") || text.contains("USING"), "no table scan expected: {text}");
    assert!(!text.contains("Seq Scan"), "no table scan expected: {text}");
}

#[test]
fn reads_of_a_datastream_use_its_index() {
    for backend in backends() {
        reads_of_a_datastream_use_its_index_on(&backend);
    }
}

fn reads_of_a_datastream_use_its_index_on(backend: &Backend) {
    let postgres = matches!(backend, Backend::Postgres(_));
    let n = if postgres { 20_000 } else { 100_000 };
    let (store, ds) = seeded(backend, n);
    store
        .read(|rx| {
            // The latest Observation of a Datastream.
            let latest = options(&[("$orderby", "phenomenonTime desc"), ("$top", "1")]);
            let plans = rx.explain_collection(
                EntityType::Observation,
                observations_of(ds),
                &latest,
                LIMITS,
                None,
            )?;
            assert_indexed(&plans[0], "observations_by_datastream_time");
            let page =
                rx.collection(EntityType::Observation, observations_of(ds), &latest, LIMITS, None)?;
            assert_eq!(
                page.items[0].value("result"),
                Some(&stela_model::Value::Json(json!(n - 1)))
            );

            // $count on a Datastream's Observations: a covering index, no table rows.
            let count = options(&[("$count", "true"), ("$top", "1")]);
            let small = observations_of(2);
            let plans =
                rx.explain_collection(EntityType::Observation, small, &count, LIMITS, None)?;
            let covering = if postgres {
                "Index Only Scan using observations_by_datastream"
            } else {
                "COVERING INDEX observations_by_datastream"
            };
            assert!(plans[0].join(" ").contains(covering), "{:?}", plans[0]);
            let page = rx.collection(EntityType::Observation, small, &count, LIMITS, None)?;
            assert_eq!(page.count, Some(n / 20));

            // A keyset page deep in the collection seeks instead of skipping.
            let middle = n / 2;
            let after = [json!(1_577_836_800_000_000_i64 + middle * 1_000_000), json!(middle + 3)];
            let plans = rx.explain_collection(
                EntityType::Observation,
                observations_of(ds),
                &latest,
                LIMITS,
                Some(&after),
            )?;
            assert_indexed(&plans[0], "observations_by_datastream_time");
            Ok(())
        })
        .unwrap();
}

#[test]
fn keyset_pages_equal_offset_pages() {
    for backend in backends() {
        keyset_pages_equal_offset_pages_on(&backend);
    }
}

fn keyset_pages_equal_offset_pages_on(backend: &Backend) {
    let (store, ds) = seeded(backend, 1_000);
    store
        .read(|rx| {
            for order in ["phenomenonTime desc", "phenomenonTime", "id desc", "resultTime,id"] {
                let by_offset = options(&[("$orderby", order), ("$top", "1000")]);
                let all = rx.collection(
                    EntityType::Observation,
                    observations_of(ds),
                    &by_offset,
                    LIMITS,
                    None,
                )?;
                let expected: Vec<i64> = all.items.iter().map(|e| e.id).collect();
                let page_options = options(&[("$orderby", order), ("$top", "70")]);
                let mut seen = Vec::new();
                let mut after = None;
                let mut skip = 0;
                loop {
                    let mut opts = page_options.clone();
                    opts.skip = Some(skip);
                    let page = rx.collection(
                        EntityType::Observation,
                        observations_of(ds),
                        &opts,
                        LIMITS,
                        after.as_deref(),
                    )?;
                    seen.extend(page.items.iter().map(|e| e.id));
                    match (page.next_after, page.next_skip) {
                        (Some(next), _) => {
                            after = Some(next);
                        }
                        (None, Some(next)) => skip = next,
                        (None, None) => break,
                    }
                }
                assert_eq!(seen, expected, "{order}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn runaway_queries_are_stopped_by_the_timeout() {
    for backend in backends() {
        runaway_queries_are_stopped_by_the_timeout_on(&backend);
    }
}

fn runaway_queries_are_stopped_by_the_timeout_on(backend: &Backend) {
    let (mut store, _) = seeded(backend, 3_000);
    store.set_query_timeout(std::time::Duration::from_millis(20));
    // Every Observation against every Observation of its Datastream: quadratic.
    let heavy = options(&[
        ("$filter", "Datastream/Observations/any(o: o/result add result eq -1)"),
        ("$count", "true"),
    ]);
    let started = std::time::Instant::now();
    let result =
        store.read(|rx| rx.collection(EntityType::Observation, Scope::All, &heavy, LIMITS, None));
    match result {
        Err(stela_store::StoreError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The connection is usable again afterwards.
    store.set_query_timeout(std::time::Duration::from_secs(30));
    let light = options(&[("$top", "1")]);
    store
        .read(|rx| rx.collection(EntityType::Observation, Scope::All, &light, LIMITS, None))
        .unwrap();
}
