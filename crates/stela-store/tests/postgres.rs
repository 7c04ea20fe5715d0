//! The PostgreSQL backend against a real server (`STELA_TEST_PG_URL`); without it these tests
//! have nothing to run against and pass vacuously only outside CI, which always sets it.

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::test_database::{TestDatabase, thing_with_datastream};
use stela_store::{Store, StoreError};

const NOW: i64 = 1_700_000_000_000_000;

fn database() -> Option<TestDatabase> {
    let server = TestDatabase::server()?;
    Some(TestDatabase::create(&server).expect("test database"))
}

#[test]
fn a_thing_is_written_read_back_and_logged() {
    let Some(db) = database() else { return };
    let store = Store::open(db.url()).unwrap();
    let thing = json!({"name": "t", "description": "d", "properties": {"b": 1, "a": [true, null]},
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": [1, 2]}}]});
    let (id, changes) = store
        .write(NOW, |tx| {
            tx.create(&decode_entity(EntityType::Thing, &thing, DecodeMode::Create).unwrap(), None)
        })
        .map_err(|e: StoreError| e)
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(changes.len(), 4, "{changes:?}");
    let (entity, size) = store
        .read(|rx| Ok((rx.entity(EntityType::Thing, 1, &Default::default())?, rx.log_size()?)))
        .unwrap();
    assert_eq!(entity.id, 1);
    assert_eq!(size, 4);
}

/// The graph of the HTTP filter suite: two Things with a Location and a Datastream each, and
/// Observations of every result type (1..6: 1..6; 7: "high"; 8: true; 9: 10.5 over an
/// interval; 10: null).
fn seed_filter_graph(store: &Store) {
    let things = [
        json!({"name": "Alpha", "description": "weather station",
            "properties": {"kind": "weather", "level": 3, "active": true, "tags": {"colour": "red"}, "code": "7"},
            "Locations": [{"name": "roof", "description": "on the roof", "encodingType": "application/geo+json",
                "location": {"type": "Point", "coordinates": [8.0, 50.0]}}],
            "Datastreams": [{"name": "temperature", "description": "air temperature", "observationType": "x",
                "unitOfMeasurement": {"name": "degree Celsius", "symbol": "degC", "definition": "ucum:Cel"},
                "Sensor": {"name": "thermometer", "description": "PT100", "encodingType": "text/html", "metadata": "m"},
                "ObservedProperty": {"name": "temperature", "definition": "d", "description": "heat"}}]}),
        json!({"name": "beta station", "description": "air quality",
            "properties": {"kind": "air", "level": 7, "active": 1, "code": 7},
            "Locations": [{"name": "street", "description": "by the street", "encodingType": "application/geo+json",
                "location": {"type": "Point", "coordinates": [10.0, 52.0]}}],
            "Datastreams": [{"name": "pm10", "description": "particles", "observationType": "x",
                "unitOfMeasurement": {"name": "ug/m3", "symbol": "ug/m3", "definition": "ucum:ug/m3"},
                "Sensor": {"name": "dust counter", "description": "optical", "encodingType": "text/html", "metadata": "m"},
                "ObservedProperty": {"name": "pm10", "definition": "d", "description": "dust"}}]}),
    ];
    let mut observations: Vec<(i64, serde_json::Value)> = (1..=6)
        .map(|day| {
            let quality = if day % 2 == 0 { "good" } else { "bad" };
            (
                1,
                json!({"result": day, "phenomenonTime": format!("2015-03-{day:02}T12:30:00Z"),
                "parameters": {"quality": quality, "n": day}}),
            )
        })
        .collect();
    observations.extend([
        (1, json!({"result": "high", "phenomenonTime": "2015-03-07T00:00:00Z"})),
        (1, json!({"result": true, "phenomenonTime": "2015-03-08T00:00:00Z"})),
        (
            2,
            json!({"result": 10.5, "phenomenonTime": "2015-03-01T00:00:00Z/2015-03-03T00:00:00Z",
            "resultTime": "2015-03-03T01:00:00Z"}),
        ),
        (2, json!({"result": null, "phenomenonTime": "2015-04-01T00:00:00Z"})),
    ]);
    let datastream = EntityType::Datastream.relation("Observations").unwrap().inverse_relation();
    store
        .write(NOW, |tx| {
            for thing in &things {
                tx.create(
                    &decode_entity(EntityType::Thing, thing, DecodeMode::Create).unwrap(),
                    None,
                )?;
            }
            for (parent, body) in &observations {
                let input =
                    decode_entity(EntityType::Observation, body, DecodeMode::Create).unwrap();
                tx.create(&input, Some((datastream, *parent)))?;
            }
            Ok::<(), StoreError>(())
        })
        .unwrap();
}

/// The ids a `$filter` and `$orderby` select, in order.
fn ids_of(
    store: &Store,
    ty: EntityType,
    filter: &str,
    orderby: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut pairs = Vec::new();
    if !filter.is_empty() {
        pairs.push(("$filter".to_owned(), filter.to_owned()));
    }
    if !orderby.is_empty() {
        pairs.push(("$orderby".to_owned(), orderby.to_owned()));
    }
    let options = stela_query::parse_query_options(&pairs).expect("valid options");
    let limits = stela_store::ReadLimits { default_top: 100, max_top: 100 };
    let page =
        store.read(|rx| rx.collection(ty, stela_store::Scope::All, &options, limits, None))?;
    Ok(page.items.iter().map(|e| e.id).collect())
}

/// Every `$filter` and `$orderby` gives PostgreSQL the same answer as SQLite, including where
/// types mix (a JSON member compared with a number, a result with a string).
#[test]
fn filters_and_orders_answer_as_on_sqlite() {
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(dir.path().join("stela.db").to_str().unwrap()).unwrap();
    let postgres = Store::open(db.url()).unwrap();
    seed_filter_graph(&sqlite);
    seed_filter_graph(&postgres);
    use EntityType::{Datastream, FeatureOfInterest, Location, Observation, Thing};
    let square = "geography'POLYGON((7 49, 9 49, 9 51, 7 51, 7 49))'";
    let st = |f: &str| f.replace("SQUARE", square);
    // (collection, $filter, $orderby, the ids in order)
    let cases: Vec<(EntityType, String, &str, Vec<i64>)> = vec![
        (Observation, "result eq 3".into(), "", vec![3]),
        (Observation, "result ne 3 and result le 4".into(), "", vec![1, 2, 4]),
        (Observation, "result gt 5".into(), "", vec![6, 9]),
        (Observation, "result eq 'high'".into(), "", vec![7]),
        (Observation, "result eq true".into(), "", vec![8]),
        (Observation, "result eq null".into(), "", vec![10]),
        (Observation, "result ne null and result gt '5'".into(), "", vec![6, 7, 8]),
        (Observation, "not (result lt 5) and result le 6".into(), "", vec![5, 6]),
        (Observation, "result add 1 eq 3".into(), "", vec![2]),
        (Observation, "result div 2 eq 1.5".into(), "", vec![3]),
        (Observation, "result mod 2 eq 1 and result lt 7".into(), "", vec![1, 3, 5]),
        (Observation, "result mod 4 eq 2".into(), "", vec![2, 6, 9]),
        (Observation, "result div 0 eq 1".into(), "", vec![]),
        (Observation, "-result eq -2".into(), "", vec![2]),
        (Observation, "result in (1, 4, 'high')".into(), "", vec![1, 4, 7]),
        (Observation, "result eq result".into(), "", vec![1, 2, 3, 4, 5, 6, 7, 8, 9]),
        (Observation, "result gt 'a' or result lt 2".into(), "", vec![1, 7, 8]),
        (Observation, "1 eq 1 and 2 lt 3 and 'a' lt 'b' and 2 add 3 eq 5 and result eq 1".into(), "", vec![1]),
        (Observation, "phenomenonTime eq 2015-03-02T14:30:00+02:00".into(), "", vec![2]),
        (Observation, "phenomenonTime le 2015-03-03T00:00:00Z".into(), "", vec![1, 2, 9]),
        (Observation, "resultTime eq null and result eq 1".into(), "", vec![1]),
        (Observation, "year(phenomenonTime) eq 2015 and month(phenomenonTime) eq 4".into(), "", vec![10]),
        (Observation, "hour(phenomenonTime) eq 12 and minute(phenomenonTime) eq 30 and second(phenomenonTime) eq 0 and day(phenomenonTime) le 2".into(), "", vec![1, 2]),
        (Observation, "fractionalseconds(phenomenonTime) eq 0 and result eq 2".into(), "", vec![2]),
        (Observation, "date(phenomenonTime) eq 2015-03-04".into(), "", vec![4]),
        (Observation, "time(phenomenonTime) eq 12:30:00 and result le 2".into(), "", vec![1, 2]),
        (Observation, "totaloffsetminutes(phenomenonTime) eq 0 and result eq 1".into(), "", vec![1]),
        (Observation, "phenomenonTime lt now() and phenomenonTime gt mindatetime() and phenomenonTime lt maxdatetime() and result eq 1".into(), "", vec![1]),
        (Observation, "phenomenonTime add duration'P1D' eq 2015-03-02T12:30:00Z".into(), "", vec![1]),
        (Observation, "phenomenonTime sub duration'PT30M' eq 2015-03-02T12:00:00Z".into(), "", vec![2]),
        (Observation, "phenomenonTime sub 2015-03-01T12:30:00Z eq 86400000000".into(), "", vec![2]),
        (Observation, "before(phenomenonTime, 2015-03-02T00:00:00Z)".into(), "", vec![1]),
        (Observation, "overlaps(phenomenonTime, 2015-03-02T00:00:00Z)".into(), "", vec![9]),
        (Observation, "not (phenomenonTime gt 2015-03-02T00:00:00Z)".into(), "", vec![1, 9]),
        (Datastream, "phenomenonTime ge 2015-03-01T00:00:00Z and phenomenonTime le 2015-03-08T00:00:00Z".into(), "", vec![1]),
        (Thing, "substringof('station', name)".into(), "", vec![2]),
        (Thing, "endswith(name, 'tion') and startswith(name, 'be')".into(), "", vec![2]),
        (Thing, "indexof(name, 'station') eq 5".into(), "", vec![2]),
        (Thing, "substring(name, 1) eq 'lpha'".into(), "", vec![1]),
        (Thing, "substring(name, 0, 4) eq 'beta'".into(), "", vec![2]),
        (Thing, "trim(concat(' ', name)) eq 'Alpha'".into(), "", vec![1]),
        (Thing, "toupper(name) eq 'BETA STATION' or tolower(name) eq 'alpha'".into(), "", vec![1, 2]),
        (Thing, "length(name) eq 5".into(), "", vec![1]),
        (Thing, "concat(name, 'x') gt 'B'".into(), "", vec![2]),
        (Observation, "round(result div 4) eq 1 and result lt 7".into(), "", vec![2, 3, 4, 5]),
        (Observation, "floor(result) eq 10 and ceiling(result) eq 11".into(), "", vec![9]),
        (Observation, "length(result) eq 4".into(), "", vec![7, 9]),
        (Observation, "contains(result, '.')".into(), "", vec![9]),
        (Observation, "Datastream/Thing/name eq 'beta station'".into(), "", vec![9, 10]),
        (Thing, "Datastreams/Observations/result eq 10.5".into(), "", vec![2]),
        (Datastream, "Thing/Datastreams/Sensor/name eq 'thermometer'".into(), "", vec![1]),
        (Thing, "properties/kind eq 'air'".into(), "", vec![2]),
        (Thing, "properties/level gt 5".into(), "", vec![2]),
        (Thing, "properties/level add 1 eq 4".into(), "", vec![1]),
        (Thing, "properties/active eq true".into(), "", vec![1, 2]),
        (Thing, "properties/active".into(), "", vec![1, 2]),
        (Thing, "properties/tags/colour eq 'red'".into(), "", vec![1]),
        (Thing, "properties/missing eq null".into(), "", vec![1, 2]),
        (Thing, "properties/kind eq 3".into(), "", vec![]),
        (Thing, "properties/kind gt 3".into(), "", vec![1, 2]),
        (Thing, "properties/code eq 7".into(), "", vec![2]),
        (Thing, "properties/code eq '7'".into(), "", vec![1]),
        (Thing, "properties/code lt 'a'".into(), "", vec![1, 2]),
        (Thing, "properties/level lt properties/code".into(), "", vec![1]),
        (Thing, "contains(properties/kind, 'ai')".into(), "", vec![2]),
        (Thing, "not (properties/level gt 5)".into(), "", vec![1]),
        (Datastream, "unitOfMeasurement/symbol eq 'degC'".into(), "", vec![1]),
        (Observation, "parameters/quality eq 'good'".into(), "", vec![2, 4, 6]),
        (Observation, "parameters/n ge 5".into(), "", vec![5, 6]),
        (Observation, "parameters/n eq result".into(), "", vec![1, 2, 3, 4, 5, 6]),
        (Thing, "Datastreams/any(d: d/name eq 'pm10')".into(), "", vec![2]),
        (Thing, "Datastreams/Observations/any(o: o/result eq 'high')".into(), "", vec![1]),
        (Datastream, "Observations/all(o: o/phenomenonTime lt 2015-03-05T00:00:00Z)".into(), "", vec![]),
        (Datastream, "Observations/all(o: o/result ne 'x')".into(), "", vec![1]),
        (Thing, "Datastreams/any()".into(), "", vec![1, 2]),
        (Location, st("st_within(location, SQUARE)"), "", vec![1]),
        (Location, st("geo.intersects(location, SQUARE)"), "", vec![1]),
        (Location, st("st_disjoint(location, SQUARE)"), "", vec![2]),
        (Location, st("st_contains(SQUARE, location)"), "", vec![1]),
        (Location, "st_equals(location, geography'POINT(10 52)')".into(), "", vec![2]),
        (Location, "st_touches(location, geography'LINESTRING(10 52, 11 53)')".into(), "", vec![2]),
        (Location, "st_crosses(geography'LINESTRING(7 50, 9 50)', location)".into(), "", vec![]),
        (Location, st("st_overlaps(location, SQUARE)"), "", vec![]),
        (Location, st("st_relate(location, SQUARE, 'T********')"), "", vec![1]),
        (Location, "geo.distance(location, geography'POINT(8 50.01)') lt 2000".into(), "", vec![1]),
        (Location, "geo.length(geography'LINESTRING(0 0, 0 1)') gt 111000".into(), "", vec![1, 2]),
        (FeatureOfInterest, st("st_within(feature, SQUARE)"), "", vec![1]),
        (Datastream, st("st_intersects(observedArea, SQUARE)"), "", vec![1]),
        (Thing, st("st_within(Locations/location, SQUARE)"), "", vec![1]),
        (Location, String::new(), "geo.distance(location, geography'POINT(10 52)')", vec![2, 1]),
        (Observation, String::new(), "result", vec![10, 1, 8, 2, 3, 4, 5, 6, 9, 7]),
        (Observation, String::new(), "result desc", vec![7, 9, 6, 5, 4, 3, 2, 1, 8, 10]),
        (Observation, String::new(), "resultTime desc, id desc", vec![9, 10, 8, 7, 6, 5, 4, 3, 2, 1]),
        (Observation, String::new(), "resultTime, id desc", vec![10, 8, 7, 6, 5, 4, 3, 2, 1, 9]),
        (Observation, String::new(), "parameters/quality, parameters/n desc", vec![7, 8, 9, 10, 5, 3, 1, 6, 4, 2]),
        (Thing, String::new(), "properties/code desc", vec![1, 2]),
        (Observation, String::new(), "Datastream/Thing/name desc, result desc", vec![9, 10, 7, 6, 5, 4, 3, 2, 1, 8]),
        (Observation, "day(phenomenonTime) le 3".into(), "phenomenonTime desc", vec![10, 3, 2, 1, 9]),
    ];
    let mut failures = Vec::new();
    for (ty, filter, orderby, expected) in &cases {
        let on_sqlite = ids_of(&sqlite, *ty, filter, orderby);
        let on_postgres = ids_of(&postgres, *ty, filter, orderby);
        let agree =
            matches!((&on_sqlite, &on_postgres), (Ok(a), Ok(b)) if a == expected && b == expected);
        if !agree {
            failures.push(format!(
                "{ty} $filter={filter} $orderby={orderby}: expected {expected:?}, SQLite {on_sqlite:?}, PostgreSQL {on_postgres:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Ids after rollbacks are the same on both backends: PostgreSQL's sequences are put back as
/// SQLite's AUTOINCREMENT counter is, and an id is never handed out twice.
#[test]
fn ids_after_rollbacks_are_as_on_sqlite() {
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(dir.path().join("stela.db").to_str().unwrap()).unwrap();
    let postgres = Store::open(db.url()).unwrap();
    let thing = decode_entity(
        EntityType::Thing,
        &json!({"name": "t", "description": "d"}),
        DecodeMode::Create,
    )
    .unwrap();
    let run = |store: &Store| -> Vec<i64> {
        let mut ids = Vec::new();
        // A transaction that fails as a whole draws no id.
        let failed = store.write(NOW, |tx| {
            tx.create(&thing, None)?;
            Err::<(), _>(StoreError::Invalid("rolled back".into()))
        });
        assert!(failed.is_err());
        let (created, _) = store
            .write(NOW, |tx| {
                let mut ids = Vec::new();
                // Created, then deleted in the same transaction: its id stays used.
                ids.push(tx.isolated(|tx| tx.create(&thing, None))?);
                tx.isolated(|tx| tx.delete(EntityType::Thing, ids[0]))?;
                // A job that fails after drawing an id.
                let refused = tx.isolated(|tx| {
                    tx.create(&thing, None)?;
                    Err::<i64, _>(StoreError::Invalid("refused".into()))
                });
                assert!(refused.is_err());
                ids.push(tx.isolated(|tx| tx.create(&thing, None))?);
                Ok::<_, StoreError>(ids)
            })
            .unwrap();
        ids.extend(created);
        let (next, _) =
            store.write(NOW, |tx| tx.create(&thing, None)).map_err(|e: StoreError| e).unwrap();
        ids.push(next);
        ids
    };
    let on_sqlite = run(&sqlite);
    assert_eq!(on_sqlite, [1, 2, 3]);
    assert_eq!(run(&postgres), on_sqlite);
}

/// The schema is created once, opening again changes nothing, and a database with a newer
/// schema than this code knows is refused.
#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(db) = database() else { return };
    drop(Store::open(db.url()).unwrap());
    drop(Store::open(db.url()).unwrap());
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let versions: Vec<i64> = client
        .query("SELECT version FROM stela_schema", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [3]);
    client.batch_execute("UPDATE stela_schema SET version = 99").unwrap();
    drop(client);
    match Store::open(db.url()) {
        Err(StoreError::Schema(message)) => {
            assert!(message.contains("schema version 99, newer than this Stela knows"), "{message}")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

/// A database of schema version 1 (the log's bundles as text) migrates through version 2
/// (bundles compressed) to the newest with the same entries, root and inclusion proofs.
#[test]
fn text_bundles_of_version_1_are_compressed_with_the_same_entries_and_root() {
    let Some(db) = database() else { return };
    let store = Store::open(db.url()).unwrap();
    let thing = thing_with_datastream(json!([1, 2]));
    let thing = decode_entity(EntityType::Thing, &thing, DecodeMode::Create).unwrap();
    store.write(NOW, |tx| tx.create(&thing, None)).map_err(|e: StoreError| e).unwrap();
    let base = store.read(|rx| rx.log_size()).unwrap();
    let datastream = EntityType::Datastream.relation("Observations").unwrap().inverse_relation();
    for commit in 0..3_i64 {
        let items: Vec<_> = (0..200)
            .map(|k| {
                let body =
                    json!({"result": commit * 1_000 + k, "phenomenonTime": "2024-01-01T00:00:00Z"});
                (
                    decode_entity(EntityType::Observation, &body, DecodeMode::Create).unwrap(),
                    Some((datastream, 1)),
                )
            })
            .collect();
        store
            .write(NOW + commit, |tx| {
                tx.create_batch(&items).into_iter().collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
    }
    let (size, entries, root) = store
        .read(|rx| {
            let size = rx.log_size()?;
            Ok((size, rx.log_entries(0, size)?, rx.log_root(size)?))
        })
        .unwrap();
    assert!(size > base + 600, "{size}");
    drop(store);
    // The log as version 1 stored it: one text row per commit and tile, entries joined by
    // newlines (here one row per tile: the same entries either way); no ingest marks yet
    // (version 3).
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    client
        .batch_execute(
            "DROP TABLE ingest_marks;
             DROP TABLE log_bundles;
             CREATE TABLE log_bundles (first bigint PRIMARY KEY, entries text NOT NULL);
             CREATE TRIGGER log_bundles_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON log_bundles
                 FOR EACH STATEMENT EXECUTE FUNCTION stela_log_append_only();
             UPDATE stela_schema SET version = 1;",
        )
        .unwrap();
    for (tile, chunk) in entries.chunks(256).enumerate() {
        let first = (tile * 256) as i64;
        client
            .execute(
                "INSERT INTO log_bundles (first, entries) VALUES ($1, $2)",
                &[&first, &chunk.join("\n")],
            )
            .unwrap();
    }
    drop(client);
    let store = Store::open(db.url()).unwrap();
    let (size_after, entries_after, root_after, some) = store
        .read(|rx| {
            let size = rx.log_size()?;
            Ok((size, rx.log_entries(0, size)?, rx.log_root(size)?, rx.log_entries(300, 2)?))
        })
        .unwrap();
    assert_eq!((size_after, root_after), (size, root));
    assert_eq!(entries_after, entries);
    assert_eq!(some, entries[300..302]);
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let version: i64 = client.query_one("SELECT version FROM stela_schema", &[]).unwrap().get(0);
    assert_eq!(version, 3);
    let tables: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'log_bundles_text'", &[])
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the text bundles are gone");
    let refused = client.batch_execute("DELETE FROM log_bundles").unwrap_err();
    assert!(
        refused.to_string().contains("append-only")
            || format!("{refused:?}").contains("append-only"),
        "{refused:?}"
    );
}
