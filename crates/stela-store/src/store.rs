//! A store on either backend, chosen by configuration.

use std::time::Duration;

use stela_model::Micros;

use crate::{Change, Dialect, PgStore, ReadTx, SqliteStore, StoreError, WriteTx};

/// The store of a service: SQLite (embedded, the default) or PostgreSQL.
// One per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store a database setting names: a `postgres://` or `postgresql://` URL, or an
    /// SQLite file (`sqlite://path` or a plain path).
    pub fn open(database: &str) -> Result<Store, StoreError> {
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            PgStore::open(database).map(Store::Postgres)
        } else {
            let path = database.strip_prefix("sqlite://").unwrap_or(database);
            SqliteStore::open(std::path::Path::new(path)).map(Store::Sqlite)
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Sqlite(_) => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
        }
    }

    /// See [`SqliteStore::set_log_appending`].
    pub fn set_log_appending(&mut self, on: bool) {
        match self {
            Store::Sqlite(store) => store.set_log_appending(on),
            Store::Postgres(store) => store.set_log_appending(on),
        }
    }

    /// Sets how long one read may run before it is stopped.
    pub fn set_query_timeout(&mut self, timeout: Duration) {
        match self {
            Store::Sqlite(store) => store.set_query_timeout(timeout),
            Store::Postgres(store) => store.set_query_timeout(timeout),
        }
    }

    /// Runs `f` in one write transaction; commits when it returns `Ok`, rolls back otherwise.
    /// Returns `f`'s result and the entities the transaction changed.
    pub fn write<R, E: From<StoreError>>(
        &self,
        now: Micros,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, E>,
    ) -> Result<(R, Vec<Change>), E> {
        match self {
            Store::Sqlite(store) => store.write(now, f),
            Store::Postgres(store) => store.write(now, f),
        }
    }

    /// Runs `f` on a consistent snapshot.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ReadTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match self {
            Store::Sqlite(store) => store.read(f),
            Store::Postgres(store) => store.read(f),
        }
    }

    /// Stores a signed checkpoint of the log (not itself a logged change).
    pub fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.store_checkpoint(size, note),
            Store::Postgres(store) => store.store_checkpoint(size, note),
        }
    }
}
