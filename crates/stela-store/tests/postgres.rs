//! The PostgreSQL backend against a real server (`STELA_TEST_PG_URL`); without it these tests
//! have nothing to run against and pass vacuously only outside CI, which always sets it.

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::test_database::TestDatabase;
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
