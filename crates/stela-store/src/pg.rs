//! The PostgreSQL backend (with PostGIS): one writer connection and a pool of readers, the
//! same statements as SQLite through [`Conn`], the schema of `pg_schema.rs`.
//!
//! ```text
//!   write ─► writer connection (reconnects when lost) ─► BEGIN
//!            ─► pg_advisory_xact_lock: one writer at a time, across processes
//!            ─► log size changed under us (another server)? reload the appender
//!            ─► f(WriteTx) ─► extents, log entries ─► COMMIT
//!   read  ─► pooled reader (or a new one) ─► BEGIN REPEATABLE READ READ ONLY,
//!            statement_timeout ─► f(ReadTx) ─► COMMIT
//! ```
//!
//! The pool is a stack of idle connections like the SQLite readers: the store's calls are
//! synchronous (the service runs them on blocking threads) and need nothing more; a lost
//! connection is dropped and the next call connects again. While the database is unreachable
//! every call fails with [`StoreError::Unavailable`] (503 at the HTTP door) and the server
//! keeps running. A commit whose outcome is unknown (the connection dropped during COMMIT) is
//! reported as unavailable, never as success, and the log's right edge is reloaded from the
//! database before the next write.

use std::sync::Mutex;
use std::time::Duration;

use postgres::NoTls;
use stela_log::Appender;
use stela_model::Micros;

use crate::StoreError;
use crate::db::{Conn, PgConn};
use crate::sqlite::{ReadTx, WriteTx};
use crate::write::{Change, Pending};

/// Readers kept open between requests.
const MAX_IDLE_READERS: usize = 8;

/// Serialises the writers of every server sharing one database.
const WRITER_LOCK: i64 = 0x5354_454c_4102;

/// A PostgreSQL database holding a SensorThings service.
pub struct PgStore {
    config: postgres::Config,
    /// Where the database is, for messages (no password).
    target: String,
    writer: Mutex<PgWriter>,
    readers: Mutex<Vec<PgConn>>,
    log_appending: bool,
    query_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("target", &self.target).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct PgWriter {
    conn: Option<PgConn>,
    /// The log's right edge as of the last commit; `None` after a commit of unknown outcome.
    log: Option<Appender>,
}

fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{}:{port}/{}", hosts.join(","), config.get_dbname().unwrap_or_default())
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), creating and
    /// migrating the schema as needed.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        crate::db::off_async_runtime(|| PgStore::open_here(url))
            .unwrap_or_else(|| Err(StoreError::Corrupt("opening the store panicked".into())))
    }

    fn open_here(url: &str) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Schema(format!("'{url}' is not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("stela");
        let target = describe(&config);
        let store = PgStore {
            config,
            target,
            writer: Mutex::new(PgWriter { conn: None, log: None }),
            readers: Mutex::new(Vec::new()),
            log_appending: true,
            query_timeout: Duration::from_secs(30),
        };
        let conn = store.connect()?;
        crate::pg_schema::migrate(&conn)?;
        let log = crate::ledger::load_appender(Conn::Postgres(&conn))?;
        *store.writer.lock().unwrap_or_else(|p| p.into_inner()) =
            PgWriter { conn: Some(conn), log: Some(log) };
        Ok(store)
    }

    fn connect(&self) -> Result<PgConn, StoreError> {
        let client = self.config.connect(NoTls).map_err(|e| {
            // The client's message stops at "error connecting to server"; the cause (refused,
            // unknown host, authentication) is its source.
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {e}{cause}",
                self.target
            ))
        })?;
        Ok(PgConn::new(client))
    }

    /// See [`crate::SqliteStore::set_log_appending`].
    pub fn set_log_appending(&mut self, on: bool) {
        self.log_appending = on;
    }

    /// Sets how long one read may run before it is cancelled.
    pub fn set_query_timeout(&mut self, timeout: Duration) {
        self.query_timeout = timeout;
    }

    /// Runs `f` in one write transaction; commits when it returns `Ok`, rolls back otherwise.
    pub fn write<R, E: From<StoreError>>(
        &self,
        now: Micros,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, E>,
    ) -> Result<(R, Vec<Change>), E> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match writer.conn.take() {
            Some(conn) if !conn.is_closed() => conn,
            _ => self.connect()?,
        };
        let result = self.write_on(&conn, &mut writer.log, now, f);
        if !conn.is_closed() {
            writer.conn = Some(conn);
        }
        result
    }

    fn write_on<R, E: From<StoreError>>(
        &self,
        conn: &PgConn,
        log: &mut Option<Appender>,
        now: Micros,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, E>,
    ) -> Result<(R, Vec<Change>), E> {
        // The savepoint lets a failed transaction put the id sequences back before it ends
        // (see `Conn::next_ids`), still holding the writer lock.
        conn.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK}); SAVEPOINT stela_start"
        ))?;
        let db = Conn::Postgres(conn);
        let ids = match db.next_ids() {
            Ok(ids) => ids,
            Err(error) => {
                let _ = conn.batch("ROLLBACK");
                return Err(error.into());
            }
        };
        let outcome = (|| {
            let size = crate::ledger::log_size(db)?;
            let appender = match log.take() {
                Some(appender) if appender.size() == size => appender,
                // Another server wrote, or the last commit's outcome is unknown.
                _ => crate::ledger::load_appender(db)?,
            };
            let mut write_tx = WriteTx { conn: db, pending: Pending::default() };
            write_tx.pending.unlogged = !self.log_appending;
            write_tx.pending.next_ids.clone_from(&ids);
            write_tx.set_now(now);
            let result = match f(&mut write_tx) {
                Ok(result) => result,
                Err(error) => {
                    *log = Some(appender);
                    return Ok(Err(error));
                }
            };
            // Hashed in the transaction: another server may append next, from this tree.
            let mut next = appender.clone();
            let written = write_tx.before_commit(appender.size(), self.log_appending).and_then(
                |(changes, entries)| {
                    if let Some(entries) = &entries {
                        let nodes = crate::ledger::hash_entries(&mut next, entries)?;
                        crate::ledger::insert_nodes(db, &nodes)?;
                    }
                    Ok((changes, entries.map(|_| next)))
                },
            );
            let (changes, next_log) = match written {
                Ok(done) => done,
                Err(error) => {
                    *log = Some(appender);
                    return Err(error);
                }
            };
            // From here the outcome is only known once COMMIT answers.
            conn.batch("COMMIT").map_err(|e| {
                StoreError::Unavailable(format!(
                    "the commit's outcome is unknown, the connection to PostgreSQL failed: {e}"
                ))
            })?;
            *log = Some(next_log.unwrap_or(appender));
            Ok(Ok((result, changes)))
        })();
        let roll_back = || {
            if !conn.is_closed() {
                let restored = conn
                    .batch("ROLLBACK TO SAVEPOINT stela_start")
                    .and_then(|()| db.restore_ids(ids.as_deref(), &[]));
                if let Err(error) = restored {
                    tracing::warn!(%error, "could not put the id sequences back after a rollback");
                }
                let _ = conn.batch("ROLLBACK");
            }
        };
        match outcome {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => {
                roll_back();
                Err(error)
            }
            Err(error) => {
                roll_back();
                Err(error.into())
            }
        }
    }

    /// Stores a signed checkpoint of the log.
    pub fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let conn = self.reader()?;
        let result = crate::ledger::store_checkpoint(Conn::Postgres(&conn), size, note);
        self.give_back(conn);
        result
    }

    fn reader(&self) -> Result<PgConn, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(conn) if !conn.is_closed() => Ok(conn),
            _ => self.connect(),
        }
    }

    fn give_back(&self, conn: PgConn) {
        if conn.is_closed() {
            return;
        }
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
    }

    /// Runs `f` on a consistent snapshot.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ReadTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.reader()?;
        let timeout = self.query_timeout.as_millis().max(1);
        let begun = conn.batch(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {timeout}"
        ));
        let result = begun.and_then(|()| f(&ReadTx { conn: Conn::Postgres(&conn) }));
        let result = match result {
            Ok(value) => conn.batch("COMMIT").map(|()| value),
            Err(error) => {
                if !conn.is_closed() {
                    let _ = conn.batch("ROLLBACK");
                }
                Err(error)
            }
        };
        self.give_back(conn);
        result.map_err(|error| match error {
            StoreError::Postgres(e)
                if e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED) =>
            {
                StoreError::Timeout(self.query_timeout)
            }
            other => other,
        })
    }
}
