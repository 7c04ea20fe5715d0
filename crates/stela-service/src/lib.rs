//! The service layer: the one write path and the read API shared by every door (HTTP today;
//! MQTT, batch and import later).
//!
//! ```text
//!   door ──► Service::create / update / patch_json / delete
//!              decode + validate (stela-model)
//!              └─► store.write(now, |tx| …)        one transaction, server rules
//!                    └─► commit ──► ChangeEvent broadcast (after commit, never before)
//!   door ──► Service::read(path, options) ──► store.read(|rx| …)
//! ```
//!
//! Invariant: nothing else writes to the store. Later issues hook the verifiable log into the
//! transaction here and MQTT onto the change events.

mod bulk;
mod group;
mod ledger;
mod read_many;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use stela_model::{Entity, EntityType, Micros, Page, ResourcePath, Tail};
use stela_query::QueryOptions;
use stela_store::{Change, ReadLimits, Resolved, SqliteStore, Store, StoreError};
use tokio::sync::broadcast;

pub use bulk::{DecodedCreate, decode_creates};
pub use ledger::{KEY_FILE, Proof, verifier_key_in};
pub use stela_log::Receipt;
pub use stela_store::{AuditReport, ChangeKind};
pub use writer::Writer;

/// Options of the read and write API that do not depend on the transport.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Page size used when a request has no `$top`.
    pub default_top: u32,
    /// Largest `$top` a client may ask for; larger values are capped to this.
    pub max_top: u32,
    /// How long one read may run before it is stopped with an error.
    pub query_timeout: std::time::Duration,
    /// The origin line of the log's checkpoints and the name of its signing key, a
    /// schema-less URL naming this log (C2SP tlog-checkpoint).
    pub log_origin: String,
    /// How often a checkpoint is signed while the log grows.
    pub checkpoint_interval: std::time::Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            default_top: 100,
            max_top: 10_000,
            query_timeout: std::time::Duration::from_secs(30),
            log_origin: "stela.localhost/log".to_owned(),
            checkpoint_interval: std::time::Duration::from_secs(1),
        }
    }
}

/// A small, transport-agnostic classification of errors; the HTTP layer maps it to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The addressed entity, set or property does not exist.
    NotFound,
    /// The request body or its links are invalid.
    BadRequest,
    /// A query option is malformed or does not fit the model.
    InvalidQuery,
    /// The operation is not allowed on the addressed resource.
    MethodNotAllowed,
    /// A read ran longer than the query timeout.
    QueryTimeout,
    /// The database cannot be reached; the request may be retried later.
    Unavailable,
    /// Something failed inside the server.
    Internal,
}

/// Errors of the service layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    QueryTimeout(String),
    /// The database cannot be reached (a PostgreSQL outage); nothing was changed, or the
    /// outcome of the commit is unknown (the message says which).
    #[error("{0}")]
    Unavailable(String),
    /// An internal failure; its text is logged, never shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::BadRequest(_) => ErrorCode::BadRequest,
            ServiceError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ServiceError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ServiceError::QueryTimeout(_) => ErrorCode::QueryTimeout,
            ServiceError::Unavailable(_) => ErrorCode::Unavailable,
            ServiceError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(m) => ServiceError::NotFound(m),
            StoreError::Invalid(m) => ServiceError::BadRequest(m),
            StoreError::Query { option, message } => {
                ServiceError::InvalidQuery(format!("invalid {option}: {message}"))
            }
            StoreError::Timeout(_) => ServiceError::QueryTimeout(error.to_string()),
            StoreError::Database(rusqlite_error) => {
                // A constraint violation is the client's doing; anything else is ours.
                let text = rusqlite_error.to_string();
                if text.contains("constraint failed") {
                    ServiceError::BadRequest(format!(
                        "the change violates a constraint of the model: {text}"
                    ))
                } else {
                    ServiceError::Internal(text)
                }
            }
            StoreError::Unavailable(m) => ServiceError::Unavailable(m),
            StoreError::Postgres(pg_error) => {
                // Integrity violations (class 23) are the client's doing; anything else is ours.
                let text = pg_error.to_string();
                match pg_error.code() {
                    Some(code) if code.code().starts_with("23") => ServiceError::BadRequest(
                        format!("the change violates a constraint of the model: {text}"),
                    ),
                    _ => ServiceError::Internal(text),
                }
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// An entity changed by a committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeEvent {
    pub kind: ChangeKind,
    pub ty: EntityType,
    pub id: i64,
}

/// What a GET addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadResult {
    Entity(Entity),
    Collection { ty: EntityType, page: Page },
}

/// Handle on the service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// The queue of the writer thread (group commit); `None` only while the service is built.
    writes: std::sync::Mutex<Option<std::sync::mpsc::Sender<group::Request>>>,
    /// The node's log signing key.
    signer: stela_log::SignerKey,
    options: ServiceOptions,
    events: broadcast::Sender<ChangeEvent>,
}

/// The current time; the service is the layer that reads the clock for the pure crates below.
fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Service {
    /// Opens (creating when missing) the SQLite database at `path`; the log key lives beside it.
    pub fn open_sqlite(path: &Path, options: ServiceOptions) -> Result<Service, ServiceError> {
        let store = SqliteStore::open(path)
            .map_err(|e| ServiceError::Internal(format!("opening {}: {e}", path.display())))?;
        let data_dir =
            path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Service::with_store(Store::Sqlite(store), data_dir, options)
    }

    /// Opens the store a database setting names (see [`Store::open`]); the log key lives in
    /// `data_dir`.
    pub fn open(
        database: &str,
        data_dir: &Path,
        options: ServiceOptions,
    ) -> Result<Service, ServiceError> {
        let store = Store::open(database).map_err(|e| match e {
            StoreError::Unavailable(m) => ServiceError::Unavailable(m),
            other => ServiceError::Internal(format!("opening the database: {other}")),
        })?;
        Service::with_store(store, data_dir, options)
    }

    fn with_store(
        mut store: Store,
        data_dir: &Path,
        options: ServiceOptions,
    ) -> Result<Service, ServiceError> {
        store.set_query_timeout(options.query_timeout);
        let signer = ledger::load_or_create_key(data_dir, &options.log_origin)?;
        // Room for bursts of group commits; a subscriber further behind than this loses events
        // (and is told so by the channel), writers are never slowed down.
        let (events, _) = broadcast::channel(65_536);
        let inner =
            Arc::new(Inner { store, writes: std::sync::Mutex::new(None), signer, options, events });
        let (sender, receiver) = std::sync::mpsc::channel();
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("stela-writer".into())
            .spawn(move || group::run_writer(weak, receiver))
            .map_err(|e| ServiceError::Internal(format!("cannot start the writer thread: {e}")))?;
        *inner.writes.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
        Ok(Service { inner })
    }

    pub fn options(&self) -> &ServiceOptions {
        &self.inner.options
    }

    /// Change events of committed transactions.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.events.subscribe()
    }

    fn limits(&self) -> ReadLimits {
        ReadLimits {
            default_top: u64::from(self.inner.options.default_top),
            max_top: u64::from(self.inner.options.max_top),
        }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<R, ServiceError> + Send + 'static,
    ) -> Result<R, ServiceError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))?
    }

    /// Reads what `path` addresses with the query `options`; `after` continues a keyset-paged
    /// collection after the given sort key values (from a `$skiptoken`).
    pub async fn read(
        &self,
        path: ResourcePath,
        options: QueryOptions,
        after: Option<Vec<Json>>,
    ) -> Result<ReadResult, ServiceError> {
        let limits = self.limits();
        self.blocking(move |inner| {
            Ok(inner.store.read(|rx| {
                let resolved = rx.resolve(&path)?;
                match resolved {
                    Resolved::Entity { ty, id } => {
                        let options =
                            if path.tail == Tail::None { options } else { QueryOptions::default() };
                        rx.entity(ty, id, &options).map(ReadResult::Entity)
                    }
                    Resolved::Collection { ty, scope } => rx
                        .collection(ty, scope, &options, limits, after.as_deref())
                        .map(|page| ReadResult::Collection { ty, page }),
                }
            })?)
        })
        .await
    }

    /// Creates an entity (with everything nested in it) in the collection `path` addresses.
    pub async fn create(&self, path: ResourcePath, body: Json) -> Result<Entity, ServiceError> {
        self.atomic(move |w| w.create(&path, &body)).await
    }

    /// Updates the entity `path` addresses: merge (PATCH) or replace (PUT).
    pub async fn update(
        &self,
        path: ResourcePath,
        body: Json,
        replace: bool,
    ) -> Result<Entity, ServiceError> {
        self.atomic(move |w| w.update(&path, &body, replace)).await
    }

    /// Applies an RFC 6902 JSON Patch to the entity `path` addresses.
    pub async fn patch_json(
        &self,
        path: ResourcePath,
        patch: json_patch::Patch,
    ) -> Result<Entity, ServiceError> {
        self.atomic(move |w| w.patch_json(&path, &patch)).await
    }

    /// Deletes the entity `path` addresses, with the cascades of the standard.
    pub async fn delete(&self, path: ResourcePath) -> Result<(), ServiceError> {
        self.atomic(move |w| w.delete(&path)).await
    }

    /// The one commit function: runs `f` in one write transaction (all of its writes commit,
    /// or none), then publishes the changes. Every door writes through here.
    pub async fn atomic<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer<'_, '_>) -> Result<R, ServiceError> + Send + 'static,
    ) -> Result<R, ServiceError> {
        let job = group::Job::Atomic(Box::new(move |writer| {
            f(writer).map(|r| Box::new(r) as Box<dyn std::any::Any + Send>)
        }));
        self.submit(job).await
    }

    /// Creates many entities in one transaction, each as [`Writer::create_decoded`] creates
    /// it and each succeeding or failing on its own; the results are in input order. Unlike
    /// `atomic(|w| Ok(w.create_decoded(items)))` the job cannot fail as a whole, so that
    /// sharing a transaction with other writes costs it no savepoint.
    pub async fn create_decoded(
        &self,
        items: Vec<DecodedCreate>,
    ) -> Result<Vec<Result<i64, ServiceError>>, ServiceError> {
        let job = group::Job::Infallible(Box::new(move |writer| {
            Box::new(writer.create_decoded(items)) as Box<dyn std::any::Any + Send>
        }));
        self.submit(job).await
    }

    /// Creates the items as [`Service::create_decoded`] does (each succeeding or failing on
    /// its own) and, in the same transaction, advances the ingest mark of the journal
    /// `source` to `seq` (never back: see [`Service::ingest_mark`]). The rows and the mark
    /// commit together or not at all, so a journal replayed after a crash from its mark
    /// creates each message exactly once. When the mark cannot be advanced nothing commits
    /// and the call fails as a whole.
    pub async fn create_decoded_marked(
        &self,
        items: Vec<DecodedCreate>,
        source: String,
        seq: u64,
    ) -> Result<Vec<Result<i64, ServiceError>>, ServiceError> {
        // Refused here rather than in the transaction, where it would fail the whole group.
        if i64::try_from(seq).is_err() {
            return Err(ServiceError::BadRequest(format!(
                "the ingest mark {seq} is larger than the store holds"
            )));
        }
        let job = group::Job::Marked {
            source,
            seq,
            job: Box::new(move |writer| {
                Box::new(writer.create_decoded(items)) as Box<dyn std::any::Any + Send>
            }),
        };
        self.submit(job).await
    }

    /// The ingest mark of the journal `source`: the highest sequence number a committed
    /// [`Service::create_decoded_marked`] advanced it to; `None` when no transaction ever
    /// named `source` (a journal registers itself with an empty call at mark 0).
    pub async fn ingest_mark(&self, source: &str) -> Result<Option<u64>, ServiceError> {
        let source = source.to_owned();
        self.blocking(move |inner| Ok(inner.store.read(|rx| rx.ingest_mark(&source))?)).await
    }

    /// Queues a job for the writer thread and waits for its result.
    async fn submit<R: Send + 'static>(&self, job: group::Job) -> Result<R, ServiceError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sender = self.inner.writes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let sender =
            sender.ok_or_else(|| ServiceError::Internal("the writer is not running".into()))?;
        sender
            .send(group::Request { job, reply })
            .map_err(|_| ServiceError::Internal("the writer thread stopped".into()))?;
        let result = answer
            .await
            .map_err(|_| ServiceError::Internal("the writer thread stopped".into()))??;
        result
            .downcast::<R>()
            .map(|boxed| *boxed)
            .map_err(|_| ServiceError::Internal("a write job returned an unexpected type".into()))
    }
}

impl Inner {
    fn publish(&self, changes: &[Change]) {
        for change in changes {
            // No subscriber is not an error.
            let _ =
                self.events.send(ChangeEvent { kind: change.kind, ty: change.ty, id: change.id });
        }
    }
}
