//! `Service::create_decoded_marked`: the items are created as by `create_decoded` (each on its
//! own) and the journal's ingest mark advances in the same transaction, also when batches of
//! one journal share a group commit, and not at all when nothing commits.

use serde_json::{Value as Json, json};
use stela_model::parse_resource_path;
use stela_query::QueryOptions;
use stela_service::{ReadResult, Service, ServiceError, ServiceOptions, decode_creates};
use stela_store::test_database::{TestDatabase, thing_with_datastream};

/// A store in a temporary directory (which also holds the log key): SQLite, or a fresh
/// PostgreSQL database.
struct Backend {
    dir: tempfile::TempDir,
    postgres: Option<TestDatabase>,
}

/// SQLite always; PostgreSQL too when `STELA_TEST_PG_URL` names a server.
fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend { dir: tempfile::tempdir().unwrap(), postgres: None }];
    if let Some(server) = TestDatabase::server() {
        let database = TestDatabase::create(&server).unwrap();
        backends.push(Backend { dir: tempfile::tempdir().unwrap(), postgres: Some(database) });
    }
    backends
}

impl Backend {
    fn sqlite_file(&self) -> std::path::PathBuf {
        self.dir.path().join("stela.db")
    }

    /// A service with a Thing at a Location (the Observations' generated FeatureOfInterest) and
    /// its Datastream 1.
    async fn seeded(&self) -> Service {
        let database = match &self.postgres {
            Some(database) => database.url().to_owned(),
            None => self.sqlite_file().to_string_lossy().into_owned(),
        };
        let service = Service::open(&database, self.dir.path(), ServiceOptions::default()).unwrap();
        let thing = thing_with_datastream(json!([1, 2]));
        service.create(parse_resource_path("Things").unwrap(), thing).await.unwrap();
        service
    }
}

/// An Observation of Datastream `datastream` for each result.
fn observations(items: &[(i64, i64)]) -> Vec<stela_service::DecodedCreate> {
    let path = parse_resource_path("Observations").unwrap();
    let bodies: Vec<Json> = items
        .iter()
        .map(|(datastream, result)| {
            json!({"result": result, "phenomenonTime": "2024-01-01T00:00:00Z",
                "Datastream": {"@iot.id": datastream}})
        })
        .collect();
    decode_creates(bodies.iter().map(|body| (path.clone(), body)))
}

/// The results of the stored Observations, in id order.
async fn stored_results(service: &Service) -> Vec<Json> {
    let path = parse_resource_path("Observations").unwrap();
    match service.read(path, QueryOptions::default(), None).await.unwrap() {
        ReadResult::Collection { page, .. } => page
            .items
            .iter()
            .map(|o| stela_model::value_to_json(o.value("result").unwrap()))
            .collect(),
        ReadResult::Entity(entity) => panic!("a collection was read as {entity:?}"),
    }
}

/// A job that keeps the writer thread busy until released, so that the jobs submitted
/// meanwhile commit as one group.
struct HeldWriter {
    release: std::sync::mpsc::Sender<()>,
    job: tokio::task::JoinHandle<Result<(), ServiceError>>,
}

fn hold_writer(service: &Service) -> HeldWriter {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let service = service.clone();
    let job = tokio::spawn(async move {
        service
            .atomic(move |_| {
                let _ = gate.recv();
                Ok(())
            })
            .await
    });
    HeldWriter { release, job }
}

impl HeldWriter {
    /// Lets the writer go once every task spawned so far has queued its job (the test runtime
    /// has one thread: they run up to their wait for the writer before this task goes on);
    /// returns the holding job's result.
    async fn release(self) -> Result<(), ServiceError> {
        tokio::task::yield_now().await;
        self.release.send(()).unwrap();
        self.job.await.unwrap()
    }
}

#[tokio::test]
async fn the_items_and_the_mark_commit_together() {
    for backend in backends() {
        let service = backend.seeded().await;
        assert_eq!(service.ingest_mark("journal-a").await.unwrap(), None);
        let created = service
            .create_decoded_marked(observations(&[(1, 10), (1, 11)]), "journal-a".into(), 7)
            .await
            .unwrap();
        assert_eq!(
            created.iter().map(|r| r.as_ref().ok()).collect::<Vec<_>>(),
            [Some(&1), Some(&2)]
        );
        assert_eq!(service.ingest_mark("journal-a").await.unwrap(), Some(7));
        assert_eq!(service.ingest_mark("journal-b").await.unwrap(), None);
        assert_eq!(stored_results(&service).await, [json!(10), json!(11)]);
        // A sequence number the store cannot hold is refused before anything is written.
        let refused = service
            .create_decoded_marked(observations(&[(1, 12)]), "journal-a".into(), u64::MAX)
            .await;
        assert!(matches!(refused, Err(ServiceError::BadRequest(_))), "{refused:?}");
        assert_eq!(service.ingest_mark("journal-a").await.unwrap(), Some(7));
        assert_eq!(stored_results(&service).await.len(), 2);
    }
}

#[tokio::test]
async fn a_failing_item_fails_alone_and_the_mark_still_advances() {
    for backend in backends() {
        let service = backend.seeded().await;
        // The second Observation's Datastream does not exist.
        let created = service
            .create_decoded_marked(observations(&[(1, 1), (999, 2), (1, 3)]), "journal-a".into(), 3)
            .await
            .unwrap();
        assert!(created[0].is_ok() && created[2].is_ok(), "{created:?}");
        assert!(created[1].is_err(), "{created:?}");
        assert_eq!(service.ingest_mark("journal-a").await.unwrap(), Some(3));
        assert_eq!(stored_results(&service).await, [json!(1), json!(3)]);
    }
}

/// Batches queued together share a transaction (group commit), in any order of their marks.
#[tokio::test]
async fn batches_of_one_journal_in_one_group_leave_the_highest_mark() {
    for backend in backends() {
        let service = backend.seeded().await;
        let held = hold_writer(&service);
        let tasks: Vec<_> = (1..=32_u64)
            .rev()
            .map(|seq| {
                let service = service.clone();
                let items = observations(&[(1, seq as i64)]);
                tokio::spawn(async move {
                    service.create_decoded_marked(items, "journal-a".into(), seq).await
                })
            })
            .collect();
        held.release().await.unwrap();
        for task in tasks {
            let created = task.await.unwrap().unwrap();
            assert!(created.iter().all(Result::is_ok), "{created:?}");
        }
        assert_eq!(service.ingest_mark("journal-a").await.unwrap(), Some(32));
        assert_eq!(stored_results(&service).await.len(), 32);
    }
}

/// When the mark cannot be written (here its table is gone, behind the service's back),
/// neither are the rows: alone, or with the other jobs of its group.
#[tokio::test]
async fn when_the_mark_fails_nothing_commits() {
    let backend = Backend { dir: tempfile::tempdir().unwrap(), postgres: None };
    let service = backend.seeded().await;
    rusqlite::Connection::open(backend.sqlite_file())
        .unwrap()
        .execute_batch("DROP TABLE ingest_marks")
        .unwrap();
    let failed =
        service.create_decoded_marked(observations(&[(1, 1)]), "journal-a".into(), 1).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(stored_results(&service).await, Vec::<Json>::new());
    // In a group, the whole transaction rolls back: the other jobs fail with it.
    let held = hold_writer(&service);
    let marked = tokio::spawn({
        let service = service.clone();
        async move {
            service.create_decoded_marked(observations(&[(1, 2)]), "journal-a".into(), 2).await
        }
    });
    let plain = tokio::spawn({
        let service = service.clone();
        async move { service.create_decoded(observations(&[(1, 3)])).await }
    });
    let _ = held.release().await;
    let marked = marked.await.unwrap();
    let plain = plain.await.unwrap();
    assert!(marked.is_err() && plain.is_err(), "{marked:?} {plain:?}");
    assert_eq!(stored_results(&service).await, Vec::<Json>::new());
    // The writer goes on with later writes.
    let created = service.create_decoded(observations(&[(1, 4)])).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    assert_eq!(stored_results(&service).await, [json!(4)]);
}
