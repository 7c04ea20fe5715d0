//! Ingest marks (the MQTT journal's high-water mark per source) on both backends (PostgreSQL
//! when `STELA_TEST_PG_URL` is set): 0 when absent, advanced only forward, per source, committed
//! with their transaction or not at all, kept across reopening, and added to an existing
//! database of the previous schema version.

use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::test_database::TestDatabase;
use stela_store::{Store, StoreError};

const NOW: i64 = 1_700_000_000_000_000;

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

fn sqlite_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("stela.db")
}

impl Backend {
    fn open(&self) -> Store {
        match self {
            Backend::Sqlite(dir) => Store::open(sqlite_file(dir).to_str().unwrap()),
            Backend::Postgres(database) => Store::open(database.url()),
        }
        .unwrap()
    }

    /// The database's schema version, read behind the store's back.
    fn schema_version(&self) -> i64 {
        match self {
            Backend::Sqlite(dir) => rusqlite::Connection::open(sqlite_file(dir))
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap(),
            Backend::Postgres(database) => {
                postgres::Client::connect(database.url(), postgres::NoTls)
                    .unwrap()
                    .query_one("SELECT version FROM stela_schema", &[])
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// Turns the (closed) database back into one of the schema version before the marks.
    fn downgrade_to_before_marks(&self) {
        match self {
            Backend::Sqlite(dir) => rusqlite::Connection::open(sqlite_file(dir))
                .unwrap()
                .execute_batch("DROP TABLE ingest_marks; PRAGMA user_version = 4;")
                .unwrap(),
            Backend::Postgres(database) => {
                postgres::Client::connect(database.url(), postgres::NoTls)
                    .unwrap()
                    .batch_execute("DROP TABLE ingest_marks; UPDATE stela_schema SET version = 2;")
                    .unwrap()
            }
        }
    }

    /// The schema version that has the marks.
    fn version_with_marks(&self) -> i64 {
        match self {
            Backend::Sqlite(_) => 5,
            Backend::Postgres(_) => 3,
        }
    }
}

fn mark(store: &Store, source: &str) -> u64 {
    store.read(|rx| rx.ingest_mark(source)).unwrap().expect("a registered source")
}

fn registered(store: &Store, source: &str) -> bool {
    store.read(|rx| rx.ingest_mark(source)).unwrap().is_some()
}

fn advance(store: &Store, marks: &[(&str, u64)]) {
    store
        .write(NOW, |tx| {
            for (source, seq) in marks {
                tx.advance_ingest_mark(source, *seq)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn a_mark_only_advances_per_source_and_survives_reopening() {
    for backend in backends() {
        let store = backend.open();
        assert!(!registered(&store, "journal-a"), "absent");
        advance(&store, &[("journal-a", 0)]);
        assert_eq!(mark(&store, "journal-a"), 0, "registered");
        advance(&store, &[("journal-a", 5)]);
        assert_eq!(mark(&store, "journal-a"), 5);
        advance(&store, &[("journal-a", 3)]);
        assert_eq!(mark(&store, "journal-a"), 5, "never goes back");
        assert!(!registered(&store, "journal-b"), "per source");
        // Two batches of one journal in one transaction, in either order.
        advance(&store, &[("journal-a", 9), ("journal-b", 2), ("journal-a", 7)]);
        assert_eq!((mark(&store, "journal-a"), mark(&store, "journal-b")), (9, 2));
        // A transaction that does not commit leaves the mark where it was.
        let failed = store.write(NOW, |tx| {
            tx.advance_ingest_mark("journal-a", 20)?;
            Err::<(), _>(StoreError::Invalid("the batch failed".into()))
        });
        assert!(failed.is_err());
        assert_eq!(mark(&store, "journal-a"), 9);
        // What the store holds: 2^63 - 1, not beyond.
        advance(&store, &[("journal-c", i64::MAX as u64)]);
        let refused = store.write(NOW, |tx| tx.advance_ingest_mark("journal-c", u64::MAX));
        assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
        // Marks are not entities: no log entry.
        assert_eq!(store.read(|rx| rx.log_size()).unwrap(), 0);
        drop(store);
        let reopened = backend.open();
        assert_eq!(mark(&reopened, "journal-a"), 9);
        assert_eq!(mark(&reopened, "journal-b"), 2);
        assert_eq!(mark(&reopened, "journal-c"), i64::MAX as u64);
    }
}

#[test]
fn a_database_of_the_previous_schema_version_gets_the_marks() {
    for backend in backends() {
        let store = backend.open();
        let thing = json!({"name": "t", "description": "d"});
        let thing = decode_entity(EntityType::Thing, &thing, DecodeMode::Create).unwrap();
        store.write(NOW, |tx| tx.create(&thing, None)).map_err(|e: StoreError| e).unwrap();
        drop(store);
        backend.downgrade_to_before_marks();

        let store = backend.open();
        assert_eq!(backend.schema_version(), backend.version_with_marks());
        let name = store
            .read(|rx| rx.entity(EntityType::Thing, 1, &Default::default()))
            .unwrap()
            .value("name")
            .cloned();
        assert_eq!(name, Some(stela_model::Value::Text("t".into())));
        assert!(!registered(&store, "journal-a"));
        advance(&store, &[("journal-a", 42)]);
        assert_eq!(mark(&store, "journal-a"), 42);
        drop(store);
        // Opening again migrates nothing.
        let store = backend.open();
        assert_eq!(backend.schema_version(), backend.version_with_marks());
        assert_eq!(mark(&store, "journal-a"), 42);
    }
}
