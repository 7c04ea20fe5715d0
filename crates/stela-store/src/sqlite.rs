//! The SQLite backend: one writer connection, a small pool of readers (WAL mode).
//!
//! SQLite allows one writer at a time anyway; keeping exactly one write connection behind a
//! mutex serialises writers without `SQLITE_BUSY` retries, while readers proceed in parallel
//! on their own connections thanks to WAL.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use stela_model::Micros;

use crate::StoreError;
use crate::checkpoint::{Checkpointer, FALLBACK_AUTOCHECKPOINT_PAGES};
use crate::db::Conn;
use crate::migrations::migrate;
use crate::write::{Change, Known, Pending};

/// Readers kept open between requests.
const MAX_IDLE_READERS: usize = 8;

/// An SQLite database holding a SensorThings service.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// Whether writes append to the verifiable log; always on, except to measure its cost.
    log_appending: bool,
    /// Checkpoints the WAL off the writer thread.
    checkpointer: Checkpointer,
    /// Reads running longer than this are interrupted (a runaway `$filter` must not hold a
    /// reader and a CPU forever).
    query_timeout: Duration,
}

/// The write connection and the log's right edge, guarded together: the appender advances
/// exactly when a transaction with log entries commits.
#[derive(Debug)]
struct Writer {
    conn: Connection,
    log: stela_log::Appender,
    /// What the last committed transaction knew of the database, for the next one (this
    /// connection is the only writer of the file); emptied when a transaction fails.
    known: Known,
}

/// A write transaction; every change of one request happens inside one.
#[derive(Debug)]
pub struct WriteTx<'a> {
    pub(crate) conn: Conn<'a>,
    /// Changes to report and Datastream extents to write before commit.
    pub(crate) pending: Pending,
}

/// A read snapshot.
#[derive(Debug)]
pub struct ReadTx<'a> {
    pub(crate) conn: Conn<'a>,
}

impl WriteTx<'_> {
    /// The work every backend does before its commit: deferred extents, then the log entries
    /// of the transaction's changes. Returns the changes and the appender to keep once the
    /// transaction has committed (`None` when the log is not appended to).
    pub(crate) fn before_commit(
        &mut self,
        log: &stela_log::Appender,
        log_appending: bool,
    ) -> Result<(Vec<Change>, Option<stela_log::Appender>), StoreError> {
        if self.pending.poisoned {
            return Err(StoreError::Corrupt("the write could not be undone in part".into()));
        }
        self.flush()?;
        let changes = self.pending.take_changes();
        let next_log = if log_appending { Some(self.append_to_log(log, &changes)?) } else { None };
        Ok((changes, next_log))
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    // NORMAL in WAL mode: a commit survives a crash of the process (kill -9); only a power loss
    // may lose the last transactions. FULL would cost an fsync per commit.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA busy_timeout = 10000;
         PRAGMA cache_size = -32000;",
    )?;
    conn.set_prepared_statement_cache_capacity(256);
    stable_plans(conn)?;
    crate::spatial::register(conn)?;
    Ok(())
}

/// Keeps a prepared statement's plan instead of re-planning it for each new set of bound values
/// (the query planner stability guarantee): cached statements are then really reused.
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

impl SqliteStore {
    /// Opens the database at `path`, creating and migrating it as needed.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let log = crate::ledger::load_appender(Conn::Sqlite(&writer))?;
        writer.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(SqliteStore {
            checkpointer,
            path: path.to_owned(),
            writer: Mutex::new(Writer { conn: writer, log, known: Known::default() }),
            readers: Mutex::new(Vec::new()),
            query_timeout: Duration::from_secs(30),
            log_appending: true,
        })
    }

    /// Turns the log append off or on. Only for measuring what the log costs (the benchmark):
    /// a store written without it has changes the log does not account for, which
    /// `stela audit` reports. Nothing in the server or its configuration turns it off.
    pub fn set_log_appending(&mut self, on: bool) {
        self.log_appending = on;
    }

    /// Sets how long one read may run before it is interrupted.
    pub fn set_query_timeout(&mut self, timeout: Duration) {
        self.query_timeout = timeout;
    }

    /// Runs `f` in one write transaction; commits when it returns `Ok`, rolls back otherwise.
    /// Returns `f`'s result and the entities the transaction changed.
    pub fn write<R, E: From<StoreError>>(
        &self,
        now: Micros,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<R, E>,
    ) -> Result<(R, Vec<Change>), E> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Writer { conn, log, known } = &mut *writer;
        // Taken, and put back only after the commit: a transaction that fails may have
        // learnt facts its rollback undoes.
        let carried = std::mem::take(known);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let (result, changes, next_log, next_known) = {
            let pending = Pending::knowing(carried);
            let mut write_tx = WriteTx { conn: Conn::Sqlite(&tx), pending };
            write_tx.set_now(now);
            let result = f(&mut write_tx)?;
            let (changes, next_log) = write_tx.before_commit(log, self.log_appending)?;
            (result, changes, next_log, write_tx.pending.known.carry())
        };
        tx.commit().map_err(StoreError::from)?;
        if let Some(next_log) = next_log {
            *log = next_log;
        }
        *known = next_known;
        self.checkpointer.committed();
        Ok((result, changes))
    }

    /// Stores a signed checkpoint of the log (not itself a logged change).
    pub fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        crate::ledger::store_checkpoint(Conn::Sqlite(&writer.conn), size, note)
    }

    /// Runs `f` on a consistent snapshot.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ReadTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure_reader(&conn)?;
                conn
            }
        };
        let deadline = Instant::now() + self.query_timeout;
        conn.progress_handler(10_000, Some(move || Instant::now() > deadline))?;
        let result = {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
            let result = f(&ReadTx { conn: Conn::Sqlite(&tx) });
            tx.finish()?;
            result
        };
        conn.progress_handler(0, None::<fn() -> bool>)?;
        let result = result.map_err(|error| match error {
            StoreError::Database(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) =>
            {
                StoreError::Timeout(self.query_timeout)
            }
            other => other,
        });
        let mut readers = self.readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }
}

fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -16000;")?;
    conn.set_prepared_statement_cache_capacity(256);
    stable_plans(conn)?;
    crate::spatial::register(conn)?;
    Ok(())
}
