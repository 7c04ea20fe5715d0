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
use crate::hasher::LogHasher;
use crate::ledger::NewEntries;
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

/// The write connection and the log's size, guarded together: the size advances exactly when
/// a transaction with log entries commits; the tree follows on the hasher thread.
#[derive(Debug)]
struct Writer {
    conn: Connection,
    log_size: u64,
    hasher: LogHasher,
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
    /// of the transaction's changes, from index `log_size`. Returns the changes and the new
    /// entries (`None` when the log is not appended to), to hash into the tree.
    pub(crate) fn before_commit(
        &mut self,
        log_size: u64,
        log_appending: bool,
    ) -> Result<(Vec<Change>, Option<NewEntries>), StoreError> {
        if self.pending.poisoned {
            return Err(StoreError::Corrupt("the write could not be undone in part".into()));
        }
        self.flush()?;
        let changes = self.pending.take_changes();
        let entries =
            if log_appending { Some(self.write_log_entries(log_size, &changes)?) } else { None };
        Ok((changes, entries))
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
        // Stored nodes a crash took before they were written (see hasher.rs).
        let missing = crate::ledger::missing_nodes(Conn::Sqlite(&writer), log.size())?;
        if !missing.is_empty() {
            let tx = writer.transaction()?;
            crate::ledger::insert_nodes(Conn::Sqlite(&tx), &missing)?;
            tx.commit()?;
        }
        writer.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)?;
        let checkpointer = Checkpointer::start(path)?;
        let log_size = log.size();
        let hasher = LogHasher::start(log)
            .map_err(|e| StoreError::Corrupt(format!("cannot start the log hasher: {e}")))?;
        Ok(SqliteStore {
            checkpointer,
            path: path.to_owned(),
            writer: Mutex::new(Writer { conn: writer, log_size, hasher, known: Known::default() }),
            readers: Mutex::new(Vec::new()),
            query_timeout: Duration::from_secs(30),
            log_appending: true,
        })
    }

    /// Turns the log off or on (entries neither rendered nor appended). Only for measuring what
    /// the log costs (the benchmark):
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
        let Writer { conn, log_size, hasher, known } = &mut *writer;
        // Taken, and put back only after the commit: a transaction that fails may have
        // learnt facts its rollback undoes.
        let carried = std::mem::take(known);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let (result, changes, entries, next_known) = {
            let mut pending = Pending::knowing(carried);
            pending.unlogged = !self.log_appending;
            pending.log_first = Some(*log_size);
            let mut write_tx = WriteTx { conn: Conn::Sqlite(&tx), pending };
            write_tx.set_now(now);
            let result = f(&mut write_tx)?;
            let (changes, entries) = write_tx.before_commit(*log_size, self.log_appending)?;
            (result, changes, entries, write_tx.pending.known.carry())
        };
        // The tree's nodes hashed since the last commit go in with this one.
        let nodes = hasher.take();
        let committed = crate::ledger::insert_nodes(Conn::Sqlite(&tx), &nodes)
            .and_then(|()| tx.commit().map_err(StoreError::from));
        if let Err(error) = committed {
            hasher.give_back(nodes);
            return Err(error.into());
        }
        if let Some(entries) = entries {
            *log_size += entries.texts.len() as u64;
            hasher.hash(entries);
        }
        *known = next_known;
        self.checkpointer.committed();
        Ok((result, changes))
    }

    /// Waits until the log's tree holds every committed entry and writes its stored nodes
    /// (normally they go in with the next commit or checkpoint; see `hasher.rs`).
    pub fn sync_log(&self) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Writer { conn, hasher, .. } = &mut *writer;
        hasher.wait();
        write_hashed_nodes(conn, hasher, |_| Ok(()))
    }

    /// Stores a signed checkpoint of the log (not itself a logged change).
    pub fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Writer { conn, hasher, .. } = &mut *writer;
        // The tree's nodes hashed since the last commit go in with the checkpoint (when no
        // writes follow, they would otherwise wait).
        write_hashed_nodes(conn, hasher, |tx| crate::ledger::store_checkpoint(tx, size, note))
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

/// Writes the tree nodes the hasher produced, and what `also` writes, in one transaction of
/// their own; the nodes go back to the hasher when it does not commit.
fn write_hashed_nodes(
    conn: &mut Connection,
    hasher: &LogHasher,
    also: impl FnOnce(Conn<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let nodes = hasher.take();
    let stored = (|| {
        let tx = conn.transaction()?;
        crate::ledger::insert_nodes(Conn::Sqlite(&tx), &nodes)?;
        also(Conn::Sqlite(&tx))?;
        Ok(tx.commit()?)
    })();
    if stored.is_err() {
        hasher.give_back(nodes);
    }
    stored
}

/// A reader's page cache is 4 MB: up to eight pooled readers each filled theirs with the same
/// pages (the operating system caches the file once for all), so that at 10 M Observations the
/// reads alone took the server from 33 to 131 MiB with 16 MB caches, and to 21–99 MiB with 4 MB
/// ones, their latencies unchanged (GET by id, latest, `$count`, receipt; interleaved runs).
fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -4000;")?;
    conn.set_prepared_statement_cache_capacity(256);
    stable_plans(conn)?;
    crate::spatial::register(conn)?;
    Ok(())
}
