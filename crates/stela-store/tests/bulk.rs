//! `WriteTx::create_batch` writes exactly what creating the same items one by one (each in
//! its own savepoint) writes: the same ids, rows, refusals with the same messages, log entries
//! and Datastream extents.

use rusqlite::Connection;
use serde_json::{Value as Json, json};
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::{BatchItem, SqliteStore, StoreError};

const NOW: i64 = 1_700_000_000_000_000;

/// A store with a Thing at a Location, its Datastream (1) and MultiDatastream (1) of two
/// ObservedProperties, and FeatureOfInterest 1.
fn seeded() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("stela.db")).unwrap();
    let sensor = json!({"name": "s", "description": "d", "encodingType": "x", "metadata": "x"});
    let thing = json!({"name": "t", "description": "d",
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": [1, 2]}}],
        "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": sensor, "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}}],
        "MultiDatastreams": [{"name": "mds", "description": "d", "multiObservationDataTypes": ["x", "y"],
            "unitOfMeasurements": [{}, {}], "Sensor": {"@iot.id": 1},
            "ObservedProperties": [{"@iot.id": 1}, {"name": "op2", "definition": "y", "description": "d"}]}]});
    let feature = json!({"name": "f", "description": "d", "encodingType": "application/geo+json",
        "feature": {"type": "Point", "coordinates": [5, 6]}});
    store
        .write(NOW, |tx| {
            tx.create(
                &decode_entity(EntityType::Sensor, &sensor, DecodeMode::Create).unwrap(),
                None,
            )?;
            tx.create(
                &decode_entity(EntityType::FeatureOfInterest, &feature, DecodeMode::Create)
                    .unwrap(),
                None,
            )?;
            tx.create(&decode_entity(EntityType::Thing, &thing, DecodeMode::Create).unwrap(), None)
        })
        .map_err(|e: StoreError| e)
        .unwrap();
    (dir, store)
}

fn items() -> Vec<BatchItem> {
    let observation =
        |body: Json| decode_entity(EntityType::Observation, &body, DecodeMode::Create).unwrap();
    let datastream = EntityType::Datastream.relation("Observations").unwrap().inverse_relation();
    let t = |minute: u32| format!("2020-01-01T00:{minute:02}:00Z");
    vec![
        // Plain, its FeatureOfInterest generated from the Thing's Location.
        (
            observation(
                json!({"phenomenonTime": t(1), "result": 1.5, "Datastream": {"@iot.id": 1}}),
            ),
            None,
        ),
        (
            observation(json!({"phenomenonTime": t(2), "result": "two", "resultTime": t(3),
            "parameters": {"k": [1, 2]}, "Datastream": {"@iot.id": 1}, "FeatureOfInterest": {"@iot.id": 1}})),
            None,
        ),
        // Refused: no such Datastream.
        (observation(json!({"result": 3, "Datastream": {"@iot.id": 999}})), None),
        (
            observation(
                json!({"phenomenonTime": t(4), "result": [1, 2], "MultiDatastream": {"@iot.id": 1}}),
            ),
            None,
        ),
        // Refused: one value for two ObservedProperties.
        (
            observation(
                json!({"phenomenonTime": t(5), "result": [1], "MultiDatastream": {"@iot.id": 1}}),
            ),
            None,
        ),
        // Refused: both parents.
        (
            observation(
                json!({"result": 6, "Datastream": {"@iot.id": 1}, "MultiDatastream": {"@iot.id": 1}}),
            ),
            None,
        ),
        // Refused: the log cannot hold this integer exactly.
        (
            observation(
                json!({"phenomenonTime": t(7), "result": 1_152_921_504_606_846_976_i64, "Datastream": {"@iot.id": 1}}),
            ),
            None,
        ),
        // A new FeatureOfInterest nested in it: created one by one.
        (
            observation(json!({"phenomenonTime": t(8), "result": 8, "Datastream": {"@iot.id": 1},
            "FeatureOfInterest": {"name": "n", "description": "d", "encodingType": "application/geo+json",
                "feature": {"type": "Point", "coordinates": [50, 60]}}})),
            None,
        ),
        // Linked by its path (Datastreams(1)/Observations), no phenomenonTime: the server's time.
        (observation(json!({"result": null})), Some((datastream, 1))),
        // Another type: created one by one.
        (
            decode_entity(
                EntityType::Sensor,
                &json!({"name": "s2", "description": "d", "encodingType": "x", "metadata": "x"}),
                DecodeMode::Create,
            )
            .unwrap(),
            None,
        ),
        (
            observation(
                json!({"phenomenonTime": t(10), "result": true, "Datastream": {"@iot.id": 1}}),
            ),
            None,
        ),
        // Refused: no such FeatureOfInterest.
        (
            observation(
                json!({"result": 11, "Datastream": {"@iot.id": 1}, "FeatureOfInterest": {"@iot.id": 77}}),
            ),
            None,
        ),
    ]
}

/// The integers a query returns, in order.
fn integers(dir: &tempfile::TempDir, sql: &str) -> Vec<i64> {
    let conn = Connection::open(dir.path().join("stela.db")).unwrap();
    let mut statement = conn.prepare(sql).unwrap();
    statement.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Observations of Datastream 1 with the results `results`.
fn observations(results: impl IntoIterator<Item = i64>) -> Vec<BatchItem> {
    results
        .into_iter()
        .map(|i| {
            let body = json!({"result": i, "phenomenonTime": "2021-01-01T00:00:00Z", "Datastream": {"@iot.id": 1}});
            (decode_entity(EntityType::Observation, &body, DecodeMode::Create).unwrap(), None)
        })
        .collect()
}

/// Every table's rows, as text, in a fixed order.
fn dump(dir: &tempfile::TempDir) -> Vec<String> {
    let conn = Connection::open(dir.path().join("stela.db")).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).unwrap();
        let width = statement.column_count();
        let mut query = statement.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> =
                (0..width).map(|i| format!("{:?}", row.get_ref(i).unwrap())).collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows
}

/// Creates `items` one by one, each in its own savepoint, in one transaction.
fn one_by_one(store: &SqliteStore, items: &[BatchItem]) -> Vec<Result<i64, StoreError>> {
    let (results, _) = store
        .write(NOW + 1, |tx| {
            Ok::<_, StoreError>(
                items
                    .iter()
                    .map(|(input, implicit)| tx.isolated(|tx| tx.create(input, *implicit)))
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap();
    results
}

#[test]
fn a_batch_writes_what_one_by_one_writes() {
    let items = items();
    let (bulk_dir, bulk) = seeded();
    let (single_dir, single) = seeded();
    let (bulk_results, _) =
        bulk.write(NOW + 1, |tx| Ok::<_, StoreError>(tx.create_batch(&items))).unwrap();
    let single_results = one_by_one(&single, &items);
    let show = |results: &[Result<i64, StoreError>]| -> Vec<String> {
        results.iter().map(|r| format!("{r:?}")).collect()
    };
    assert_eq!(show(&bulk_results), show(&single_results));
    let refused: Vec<usize> =
        bulk_results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    assert_eq!(refused, [2, 4, 5, 6, 11]);
    assert_eq!(dump(&bulk_dir), dump(&single_dir));
}

#[test]
fn a_large_batch_gets_consecutive_ids_in_input_order() {
    let (dir, store) = seeded();
    let items = observations(0..1_000);
    let (results, changes) =
        store.write(NOW, |tx| Ok::<_, StoreError>(tx.create_batch(&items))).unwrap();
    let ids: Vec<i64> = results.into_iter().map(Result::unwrap).collect();
    let first = ids[0];
    assert_eq!(ids, (first..first + 1_000).collect::<Vec<_>>());
    // One change per Observation, and the FeatureOfInterest generated for the first.
    assert_eq!(changes.len(), 1_001);
    let results = integers(&dir, "SELECT result FROM observations ORDER BY id");
    assert_eq!(results, (0..1_000).collect::<Vec<_>>());
}

#[test]
fn a_run_the_database_refuses_is_undone_and_retried_row_by_row() {
    let (dir, store) = seeded();
    // A rule the bulk checks do not know about: the database refuses result 280 (in the second statement of the run).
    Connection::open(dir.path().join("stela.db"))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_280 BEFORE INSERT ON observations WHEN NEW.result = 280
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let items = observations(0..300);
    let (results, changes) =
        store.write(NOW, |tx| Ok::<_, StoreError>(tx.create_batch(&items))).unwrap();
    let refused: Vec<usize> =
        results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    assert_eq!(refused, [280]);
    assert!(format!("{:?}", results[280]).contains("refused"), "{:?}", results[280]);
    // 299 Observations and the generated FeatureOfInterest, each logged once.
    assert_eq!(changes.len(), 300);
    let stored = integers(&dir, "SELECT result FROM observations ORDER BY id");
    assert_eq!(stored, (0..300).filter(|i| *i != 280).collect::<Vec<i64>>());
    let logged =
        integers(&dir, "SELECT SUM(count) FROM log_creates WHERE entity_type = 'Observation'");
    assert_eq!(logged, [299]);
    let ids: Vec<i64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(ids, integers(&dir, "SELECT id FROM observations ORDER BY id"));
}

/// A batch large enough to have its log entries rendered and packed beside the insert logs
/// what one-by-one creation logs: the same entries, the same tree, every other table the
/// same; only the bundles are cut differently (the run's own start on a bundle of its own).
#[test]
fn a_large_batch_logs_what_one_by_one_logs() {
    let items = observations(0..700);
    let (bulk_dir, bulk) = seeded();
    let (single_dir, single) = seeded();
    bulk.write(NOW + 1, |tx| Ok::<_, StoreError>(tx.create_batch(&items))).unwrap();
    one_by_one(&single, &items);
    let log = |store: &SqliteStore| {
        store
            .read(|rx| {
                let size = rx.log_size()?;
                Ok((rx.log_entries(0, size)?, rx.log_root(size)?))
            })
            .unwrap()
    };
    let (entries, root) = log(&bulk);
    assert_eq!((entries.len(), root), (log(&single).0.len(), log(&single).1));
    assert_eq!(entries, log(&single).0);
    let but_the_bundles = |dir: &tempfile::TempDir| -> Vec<String> {
        dump(dir)
            .into_iter()
            .filter(|row| !row.starts_with("log_bundles") && !row.starts_with("log_nodes"))
            .collect()
    };
    assert_eq!(but_the_bundles(&bulk_dir), but_the_bundles(&single_dir));
    // The run's entries start a bundle of their own (packed beside the insert); one by one,
    // the commit's entries share the tile's bundle.
    let run_start =
        "SELECT first_idx FROM log_creates WHERE entity_type = 'Observation' ORDER BY first_id";
    let first_entry = integers(&bulk_dir, run_start)[0];
    assert_ne!(first_entry % 256, 0, "the run does not start a tile");
    let starts = "SELECT first FROM log_bundles ORDER BY first";
    assert!(integers(&bulk_dir, starts).contains(&first_entry));
    assert!(!integers(&single_dir, starts).contains(&first_entry));
    // No bundle reaches into the next tile.
    let counts = integers(&bulk_dir, "SELECT first + count - 1 FROM log_bundles ORDER BY first");
    for (start, last) in integers(&bulk_dir, starts).into_iter().zip(counts) {
        assert_eq!(start / 256, last / 256, "bundle at {start}");
    }
}
