//! WAL checkpoints off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! writer thread: copying a thousand pages back into the database file while every writer
//! waits (a seventh of the writer's time under ingest in the profiles). Here a thread of its
//! own, on its own connection, runs passive checkpoints (they never block the writer or
//! readers) shortly after commits; the automatic checkpoint stays on, with a high threshold,
//! only as a bound on the WAL should this thread fall behind.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// Pages in the WAL after which the writer checkpoints itself (64 MiB with 4 KiB pages).
pub(crate) const FALLBACK_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// How long the thread lets commits gather before a checkpoint.
const PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Shared {
    commits: AtomicU64,
    stop: AtomicBool,
    wake: Condvar,
    lock: Mutex<()>,
}

/// The checkpoint thread; stops when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("stela-checkpoint".into())
            .spawn(move || run(&conn, &worker))
            .map_err(|e| StoreError::Corrupt(format!("starting the checkpoint thread: {e}")))?;
        Ok(Checkpointer { shared, thread: Some(thread) })
    }

    /// Called after every commit.
    pub(crate) fn committed(&self) {
        if self.shared.commits.fetch_add(1, Ordering::Relaxed) == 0 {
            self.shared.wake.notify_one();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let guard = shared.lock.lock().unwrap_or_else(|p| p.into_inner());
            let _unused = shared
                .wake
                .wait_timeout_while(guard, Duration::from_secs(1), |()| {
                    shared.commits.load(Ordering::Relaxed) == 0
                        && !shared.stop.load(Ordering::Relaxed)
                })
                .unwrap_or_else(|p| p.into_inner());
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if shared.commits.swap(0, Ordering::Relaxed) == 0 {
            continue;
        }
        std::thread::sleep(PAUSE);
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "a WAL checkpoint failed; the writer's own checkpoints bound the WAL");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
