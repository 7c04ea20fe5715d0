//! Storage of SensorThings entities.
//!
//! ```text
//!   stela-service ──► SqliteStore::write(|tx| …)   one transaction per request
//!                      │   write::insert / update / delete  (server rules: FoI generation,
//!                      │   HistoricalLocations, Datastream extents)
//!                      └─► SqliteStore::read(|rx| …)      read::resolve / collection / entity
//!                              └─► filter: $filter/$orderby AST → parameterised SQL
//! ```
//!
//! Invariant: user values reach SQL only as bound parameters, never as SQL text.

mod bulk;
mod checkpoint;
mod columns;
mod copy;
mod db;
mod filter;
mod hasher;
mod ingest_mark;
mod ledger;
mod migrations;
mod pg;
mod pg_schema;
mod read;
mod read_many;
mod rows;
mod spatial;
mod sqlite;
mod store;
pub mod test_database;
mod write;

pub use bulk::BatchItem;
pub use copy::{CopyProgress, CopyReport, TableCopied, copy_sqlite_to_postgres};
pub use db::Dialect;
pub use ledger::AuditReport;
pub use pg::PgStore;
pub use read::{ReadLimits, Resolved, Scope};
pub use sqlite::{ReadTx, SqliteStore, WriteTx};
pub use store::Store;
pub use write::{Change, ChangeKind};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed entity does not exist (or is not related as the path says).
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but violates the model (a missing relation, a bad link).
    #[error("{0}")]
    Invalid(String),
    /// The query options do not fit the model or cannot be evaluated.
    #[error("{message}")]
    Query {
        /// The system query option, e.g. `$filter`.
        option: &'static str,
        message: String,
    },
    /// A read ran longer than the query timeout and was stopped.
    #[error("the query ran longer than {}.{:03} s and was stopped; narrow it with $filter or $top", .0.as_secs(), .0.subsec_millis())]
    Timeout(std::time::Duration),
    /// The database file was written by a newer schema, or cannot be migrated.
    #[error("schema: {0}")]
    Schema(String),
    /// Stored data does not decode; a bug or outside tampering.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Postgres(postgres::Error),
    /// The database cannot be reached (PostgreSQL down or the connection lost); the request
    /// may be retried.
    #[error("{0}")]
    Unavailable(String),
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        // No answer from the server (connection refused, lost, closed): the database is
        // unavailable, not wrong.
        // Connection exceptions (class 08), the server shutting down or refusing connections
        // (57P01–57P05), too many connections (53300): also the database being away.
        let away = error.code().map(|code| code.code()).is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        });
        let io =
            std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
        if away || io || error.is_closed() {
            StoreError::Unavailable(format!("the connection to PostgreSQL failed: {error}"))
        } else {
            StoreError::Postgres(error)
        }
    }
}

impl StoreError {
    pub(crate) fn query(option: &'static str, message: impl Into<String>) -> StoreError {
        StoreError::Query { option, message: message.into() }
    }
}
