//! `copy_sqlite_to_postgres` against a real server (`STELA_TEST_PG_URL`): an SQLite store with
//! every entity type, every result type and every kind of change, copied to a fresh PostgreSQL
//! database, reads the same through the store's API (entities with their relations, the log,
//! receipts), gives the next entity the same id, and a second copy is refused.

use serde_json::{Value as Json, json};
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_query::{QueryOptions, parse_query_options};
use stela_store::test_database::TestDatabase;
use stela_store::{
    CopyProgress, ReadLimits, Scope, Store, StoreError, TableCopied, copy_sqlite_to_postgres,
};

const NOW: i64 = 1_700_000_000_000_000;
const LIMITS: ReadLimits = ReadLimits { default_top: 10_000, max_top: 10_000 };

fn database() -> Option<TestDatabase> {
    let server = TestDatabase::server()?;
    Some(TestDatabase::create(&server).expect("test database"))
}

fn decode(ty: EntityType, body: &Json, mode: DecodeMode) -> stela_model::EntityInput {
    decode_entity(ty, body, mode).unwrap_or_else(|e| panic!("{ty} {body}: {e:?}"))
}

/// Two Things with Locations (one moved: HistoricalLocations, a generated FeatureOfInterest),
/// Datastreams, a MultiDatastream, Observations of every result type, an update and deletes,
/// and a checkpoint note (not signed: the copy does not read it).
fn seed(store: &Store) {
    let sensor = json!({"name": "s", "description": "d", "encodingType": "x", "metadata": "x",
        "properties": {"z": 1, "a": [true, null]}});
    let thing = json!({"name": "t", "description": "d", "properties": {"b": 1, "a": "é \"q\""},
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": [1, 2]}}],
        "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {"name": "m"},
            "Sensor": sensor, "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}},
            {"name": "ds2", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}}],
        "MultiDatastreams": [{"name": "mds", "description": "d", "multiObservationDataTypes": ["x", "y"],
            "unitOfMeasurements": [{}, {}], "Sensor": {"@iot.id": 1},
            "ObservedProperties": [{"name": "op2", "definition": "y", "description": "d"}, {"@iot.id": 1}]}]});
    let other = json!({"name": "t2", "description": "d",
        "Locations": [{"name": "l2", "description": "d", "encodingType": "application/geo+json",
            "location": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]});
    let results = [
        json!(null),
        json!(true),
        json!(false),
        json!(42),
        json!(-7),
        json!(1.5),
        json!(2.0),
        json!("a string with \"quotes\", a \\ and ünïcode\n"),
        json!(""),
        json!({"b": [1, 2], "a": {"c": null}}),
        json!([1, "two", 3.5, null]),
    ];
    let write = |f: &mut dyn FnMut(&mut stela_store::WriteTx<'_>) -> Result<(), StoreError>| {
        store.write(NOW, |tx| f(tx)).map_err(|e: StoreError| e).unwrap();
    };
    write(&mut |tx| {
        tx.create(&decode(EntityType::Thing, &thing, DecodeMode::Create), None)?;
        tx.create(&decode(EntityType::Thing, &other, DecodeMode::Create), None)?;
        Ok(())
    });
    write(&mut |tx| {
        for (i, result) in results.iter().enumerate() {
            let body = json!({"phenomenonTime": format!("2020-01-01T00:00:{i:02}Z"), "result": result,
                "resultTime": "2020-01-01T01:00:00Z", "Datastream": {"@iot.id": 1 + i % 2}});
            tx.create(&decode(EntityType::Observation, &body, DecodeMode::Create), None)?;
        }
        let body = json!({"phenomenonTime": "2020-01-01T00:00:00Z/2020-01-01T00:10:00Z",
            "validTime": "2020-01-01T00:00:00Z/2020-01-02T00:00:00Z", "result": [1, "x"],
            "parameters": {"k": 1}, "resultQuality": ["good"], "MultiDatastream": {"@iot.id": 1}});
        tx.create(&decode(EntityType::Observation, &body, DecodeMode::Create), None)?;
        Ok(())
    });
    // An update (Thing 1 moves: a new HistoricalLocation; a PATCH of properties), deletes (the
    // last Observation: SQLite will not hand its id out again, nor must PostgreSQL).
    write(&mut |tx| {
        let patch = json!({"description": "moved", "Locations": [{"@iot.id": 2}]});
        tx.update(
            EntityType::Thing,
            1,
            &decode(EntityType::Thing, &patch, DecodeMode::Patch),
            false,
        )?;
        let patch = json!({"result": "changed"});
        let input = decode(EntityType::Observation, &patch, DecodeMode::Patch);
        tx.update(EntityType::Observation, 4, &input, false)?;
        Ok(())
    });
    write(&mut |tx| {
        tx.delete(EntityType::Observation, 12)?;
        tx.delete(EntityType::Observation, 3)?;
        Ok(())
    });
    let size = store.read(|rx| rx.log_size()).unwrap();
    store.store_checkpoint(size, "not a signed note\n").unwrap();
}

/// Every relation of `ty` expanded: the links are compared too.
fn expand_all(ty: EntityType) -> QueryOptions {
    let names: Vec<&str> = ty.relations().iter().map(|r| r.name).collect();
    let pairs = vec![("$expand".to_owned(), names.join(","))];
    parse_query_options(&pairs).expect("valid options")
}

/// Everything the store's read API shows of a store: each collection with its relations, each
/// entity alone, each entity's log, the log's size, root, entries and latest checkpoint.
#[derive(Debug, PartialEq)]
struct Contents {
    collections: Vec<Vec<stela_model::Entity>>,
    entities: Vec<stela_model::Entity>,
    receipts: Vec<Vec<(u64, String)>>,
    log_size: u64,
    log_root: stela_log::Hash,
    log_entries: Vec<String>,
    checkpoint: Option<(u64, String)>,
}

fn contents(store: &Store) -> Contents {
    store
        .read(|rx| {
            let mut contents = Contents {
                collections: Vec::new(),
                entities: Vec::new(),
                receipts: Vec::new(),
                log_size: rx.log_size()?,
                log_root: [0; 32],
                log_entries: Vec::new(),
                checkpoint: rx.latest_checkpoint()?,
            };
            contents.log_root = rx.log_root(contents.log_size)?;
            contents.log_entries = rx.log_entries(0, contents.log_size)?;
            for ty in EntityType::ALL {
                let options = expand_all(ty);
                let page = rx.collection(ty, Scope::All, &options, LIMITS, None)?;
                for entity in &page.items {
                    contents.entities.push(rx.entity(ty, entity.id, &options)?);
                }
                // Deleted ids too: their history stays in the log.
                for id in 1..=12 {
                    contents.receipts.push(rx.entity_log(ty, id)?);
                }
                contents.collections.push(page.items);
            }
            Ok(contents)
        })
        .unwrap()
}

/// A progress report: the table, rows copied, rows in all.
type Seen = (String, u64, u64);

/// `copied` equals `expected`, compared piece by piece for a readable failure.
fn assert_same(copied: &Contents, expected: &Contents) {
    assert_eq!((copied.log_size, copied.log_root), (expected.log_size, expected.log_root));
    assert_eq!(copied.log_entries, expected.log_entries);
    assert_eq!(copied.checkpoint, expected.checkpoint);
    assert_eq!(copied.receipts, expected.receipts);
    for (index, ty) in EntityType::ALL.iter().enumerate() {
        assert_eq!(copied.collections[index], expected.collections[index], "{ty}");
    }
    for (copied, expected) in copied.entities.iter().zip(&expected.entities) {
        assert_eq!(copied, expected, "{} {}", expected.ty, expected.id);
    }
    assert_eq!(copied, expected);
}

fn copy(
    from: &std::path::Path,
    to: &str,
) -> (Result<stela_store::CopyReport, StoreError>, Vec<Seen>) {
    let mut seen = Vec::new();
    let mut progress = |p: CopyProgress<'_>| seen.push((p.table.to_owned(), p.copied, p.total));
    let report = copy_sqlite_to_postgres(from, to, &mut progress);
    (report, seen)
}

#[test]
fn a_store_copied_to_postgres_reads_the_same_and_a_second_copy_is_refused() {
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stela.db");
    let sqlite = Store::open(path.to_str().unwrap()).unwrap();
    seed(&sqlite);
    let expected = contents(&sqlite);
    assert_eq!(
        expected.collections
            [EntityType::ALL.iter().position(|t| *t == EntityType::Observation).unwrap()]
        .len(),
        10
    );
    assert!(expected.receipts.iter().any(|log| log.len() == 2), "an entity with two entries");

    let (report, seen) = copy(&path, db.url());
    let report = report.unwrap();
    let rows = |table: &str| report.tables.iter().find(|t| t.table == table).map(|t| t.rows);
    assert_eq!(rows("observations"), Some(10));
    assert_eq!(rows("things_locations"), Some(2));
    assert_eq!(rows("log_checkpoints"), Some(1));
    // The log's tables, whatever their layout, are copied.
    assert!(report.tables.iter().any(|t| t.table.starts_with("log_") && t.rows > 0));
    assert_eq!((report.log_size, report.log_root), (expected.log_size, expected.log_root));
    // Parents first.
    let position = |table: &str| report.tables.iter().position(|t| t.table == table).unwrap();
    assert!(position("things") < position("datastreams"));
    assert!(position("datastreams") < position("observations"));
    assert!(position("features") < position("observations"));
    // Each table reported from 0 to its total.
    for TableCopied { table, rows } in &report.tables {
        let of_table: Vec<_> = seen.iter().filter(|(t, ..)| t == table).collect();
        assert_eq!(of_table.first().map(|(_, c, t)| (*c, *t)), Some((0, *rows)), "{table}");
        assert_eq!(of_table.last().map(|(_, c, _)| *c), Some(*rows), "{table}");
    }

    let postgres = Store::open(db.url()).unwrap();
    assert_same(&contents(&postgres), &expected);

    // The next entity gets the same id on both (the deleted last Observation's id is not
    // reused), and the logs stay equal.
    let next = |store: &Store| {
        let body = json!({"phenomenonTime": "2021-01-01T00:00:00Z", "result": 1, "Datastream": {"@iot.id": 1}});
        let input = decode(EntityType::Observation, &body, DecodeMode::Create);
        let (id, _) =
            store.write(NOW, |tx| tx.create(&input, None)).map_err(|e: StoreError| e).unwrap();
        let root = store.read(|rx| rx.log_size().and_then(|size| rx.log_root(size))).unwrap();
        (id, root)
    };
    let after = next(&sqlite);
    assert_eq!(after.0, 13);
    assert_eq!(next(&postgres), after);

    // A second copy into a store that holds data is refused and changes nothing.
    let before = contents(&postgres);
    let (refused, _) = copy(&path, db.url());
    let error = refused.unwrap_err();
    assert!(error.to_string().contains("already holds data"), "{error}");
    assert_eq!(contents(&postgres), before);
}

#[test]
fn a_missing_sqlite_database_is_refused_without_creating_it() {
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.db");
    let error = copy(&path, db.url()).0.unwrap_err();
    assert!(error.to_string().contains("no SQLite database"), "{error}");
    assert!(!path.exists());
}

#[test]
fn a_sqlite_table_without_counterpart_is_refused_and_nothing_is_copied() {
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stela.db");
    seed(&Store::open(path.to_str().unwrap()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE extra (id INTEGER PRIMARY KEY, note TEXT)").unwrap();
    let error = copy(&path, db.url()).0.unwrap_err();
    assert!(error.to_string().contains("extra has no counterpart"), "{error}");

    conn.execute_batch("DROP TABLE extra; ALTER TABLE things ADD COLUMN colour TEXT").unwrap();
    let error = copy(&path, db.url()).0.unwrap_err();
    assert!(error.to_string().contains("things.colour has no counterpart"), "{error}");

    let postgres = Store::open(db.url()).unwrap();
    assert_eq!(postgres.read(|rx| rx.log_size()).unwrap(), 0);
}
