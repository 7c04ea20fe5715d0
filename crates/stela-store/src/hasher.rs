//! Hashing the log off the writer thread (SQLite).
//!
//! ```text
//!   writer: BEGIN ─► rows + log entries (bundles, entity index) ─► stored nodes hashed
//!           since the last commit ─► COMMIT ─► entries ──channel──► hasher thread
//!   hasher: leaf hashes, the tree's right edge (Appender) ─► nodes of the stored levels
//!           ─► pending, written by the next write transaction (or the next checkpoint)
//! ```
//!
//! The entries are the log: they are written in the change's transaction, so a change is never
//! committed without its entry. The stored nodes only save recomputation; a node not written
//! yet (or lost to a crash) is folded from the level below when read (`NodeReader`), and
//! `SqliteStore::open` writes back any a crash took. Hashing (SHA-256 of every entry and of the
//! tree's new nodes) then costs the writer nothing.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use stela_log::{Appender, Hash, NodeId};

use crate::ledger::{NewEntries, hash_entries};

/// Commits whose entries may wait for the hasher before the writer waits for it (it is many
/// times faster than the writer; this only bounds memory if it is ever starved of CPU).
const QUEUE: usize = 256;

/// Stored-level nodes hashed but not yet written.
type Pending = Arc<Mutex<Vec<(NodeId, Hash)>>>;

/// What the writer sends the hasher.
#[derive(Debug)]
enum Message {
    Entries(NewEntries),
    /// Answered once everything sent before is hashed.
    Barrier(SyncSender<()>),
}

/// The hasher thread and what it produced.
#[derive(Debug)]
pub(crate) struct LogHasher {
    sender: Option<SyncSender<Message>>,
    pending: Pending,
    thread: Option<JoinHandle<()>>,
}

impl LogHasher {
    /// Starts hashing after the tree `appender` holds.
    pub(crate) fn start(appender: Appender) -> std::io::Result<LogHasher> {
        let (sender, receiver) = sync_channel(QUEUE);
        let pending = Pending::default();
        let produced = Arc::clone(&pending);
        let thread = std::thread::Builder::new()
            .name("stela-log-hasher".into())
            .spawn(move || run(appender, &receiver, &produced))?;
        Ok(LogHasher { sender: Some(sender), pending, thread: Some(thread) })
    }

    /// Hashes the entries of a committed transaction.
    pub(crate) fn hash(&self, entries: NewEntries) {
        if entries.texts.is_empty() {
            return;
        }
        if let Some(sender) = &self.sender
            && sender.send(Message::Entries(entries)).is_err()
        {
            tracing::error!("the log hasher stopped; tree nodes are computed on read");
        }
    }

    /// The nodes hashed so far and not yet taken, in order.
    pub(crate) fn take(&self) -> Vec<(NodeId, Hash)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Gives back nodes taken for a transaction that did not commit.
    pub(crate) fn give_back(&self, mut nodes: Vec<(NodeId, Hash)>) {
        if nodes.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        nodes.append(&mut pending);
        *pending = nodes;
    }

    /// Waits until every entry sent so far is hashed.
    pub(crate) fn wait(&self) {
        let (done, hashed) = sync_channel(1);
        if let Some(sender) = &self.sender
            && sender.send(Message::Barrier(done)).is_ok()
        {
            let _ = hashed.recv();
        }
    }

    /// Stops the thread once everything sent so far is hashed.
    pub(crate) fn finish(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogHasher {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(mut appender: Appender, receiver: &Receiver<Message>, pending: &Pending) {
    while let Ok(message) = receiver.recv() {
        let entries = match message {
            Message::Entries(entries) => entries,
            Message::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        match hash_entries(&mut appender, &entries) {
            Ok(nodes) => {
                if !nodes.is_empty() {
                    pending.lock().unwrap_or_else(|p| p.into_inner()).extend(nodes);
                }
            }
            Err(error) => {
                // Cannot happen with one writer; the nodes are then computed on read.
                tracing::error!(%error, "the log hasher stopped");
                return;
            }
        }
    }
}
