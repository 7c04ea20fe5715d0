//! Group commit: write requests that arrive together share one database transaction.
//!
//! ```text
//!   atomic(job) ─► queue ─► writer thread: take the first job, then every job already waiting
//!                           (up to MAX_GROUP) ─► one transaction (a job alone: no savepoint):
//!                              job 1 in a savepoint ─► ok
//!                              job 2 in a savepoint ─► fails: only its writes are undone
//!                              bulk job (never fails as a whole) ─► no savepoint
//!                              marked bulk job ─► no savepoint; its mark fails ─► the
//!                                                 whole transaction rolls back
//!                              …
//!                           ─► commit (one WAL append, one log append, one extents flush)
//!                           ─► change events ─► each job's caller gets its own result
//! ```
//!
//! Each job still succeeds or fails as a whole (its savepoint), and is acknowledged only after
//! the commit that makes it durable. Under load, hundreds of single POSTs or MQTT messages cost
//! one commit instead of hundreds; alone, a job commits at once (nothing waits for a group).

use std::any::Any;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use crate::writer::Writer;
use crate::{Inner, ServiceError, now_micros};

/// The most jobs one transaction takes.
const MAX_GROUP: usize = 512;

/// A job's result with its type erased.
type Output = Box<dyn Any + Send>;

/// What a job that can fail as a whole runs.
type AtomicFn = Box<dyn FnOnce(&mut Writer<'_, '_>) -> Result<Output, ServiceError> + Send>;

/// A write job with its result type erased, so that jobs of any kind share a queue.
pub(crate) enum Job {
    /// Succeeds or fails as a whole: in a group, it runs in a savepoint of its own.
    Atomic(AtomicFn),
    /// Never fails as a whole (a bulk create, whose items are each undone on their own): it
    /// needs no savepoint, in which SQLite would copy every page the job changes.
    Infallible(InfallibleFn),
    /// An infallible job that also advances the ingest mark of a journal (`source`) to `seq`:
    /// the mark and the job's rows must commit together or not at all. The mark is advanced
    /// first (a failure then wastes no bulk work), without a savepoint like the job, and when
    /// it fails the whole transaction rolls back, with every job of the group (which then all
    /// report its error). Failing only this
    /// job instead would need a savepoint around the bulk create (the cost `Infallible`
    /// avoids), and on PostgreSQL a failed statement aborts the transaction anyway. The
    /// service refuses a `seq` the store cannot hold before it queues the job, so a failing
    /// mark means a failing database, which the other jobs would meet too.
    Marked { source: String, seq: u64, job: InfallibleFn },
}

/// What an infallible job runs.
type InfallibleFn = Box<dyn FnOnce(&mut Writer<'_, '_>) -> Output + Send>;

/// A job's result in a group (inner), or the error that must roll back the whole
/// transaction (outer).
type GroupResult = Result<Result<Output, ServiceError>, ServiceError>;

impl Job {
    /// Runs the job in a group: in a savepoint when it can fail as a whole.
    fn run_in_group(self, writer: &mut Writer<'_, '_>) -> GroupResult {
        match self {
            Job::Atomic(job) => Ok(writer.isolated(job)),
            Job::Infallible(job) => Ok(Ok(job(writer))),
            Job::Marked { source, seq, job } => {
                writer.tx.advance_ingest_mark(&source, seq)?;
                Ok(Ok(job(writer)))
            }
        }
    }

    /// Runs the job alone in its transaction (whose rollback undoes it when it fails).
    fn run_alone(self, writer: &mut Writer<'_, '_>) -> Result<Output, ServiceError> {
        match self {
            Job::Atomic(job) => job(writer),
            Job::Infallible(job) => Ok(job(writer)),
            Job::Marked { source, seq, job } => {
                writer.tx.advance_ingest_mark(&source, seq)?;
                Ok(job(writer))
            }
        }
    }
}

/// A job and where its result goes.
pub(crate) struct Request {
    pub(crate) job: Job,
    pub(crate) reply: oneshot::Sender<Result<Output, ServiceError>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

/// The writer thread: runs until every handle on the service is gone.
pub(crate) fn run_writer(inner: Weak<Inner>, requests: Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        commit_group(&inner, group);
    }
}

fn commit_group(inner: &Arc<Inner>, mut group: Vec<Request>) {
    if group.len() == 1
        && let Some(request) = group.pop()
    {
        return commit_alone(inner, request);
    }
    let mut replies = Vec::with_capacity(group.len());
    let mut jobs = Vec::with_capacity(group.len());
    for request in group {
        replies.push(request.reply);
        jobs.push(request.job);
    }
    // The first error that must not commit stops the group: the transaction rolls back and
    // every job gets that error.
    let outcome = inner.store.write(now_micros(), |tx| {
        let mut writer = Writer { tx };
        jobs.into_iter()
            .map(|job| job.run_in_group(&mut writer))
            .collect::<Result<Vec<Result<Output, ServiceError>>, ServiceError>>()
    });
    match outcome {
        Ok((results, changes)) => {
            inner.publish(&changes);
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away (a closed connection) needs no answer.
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            tracing::error!(%error, jobs = replies.len(), "a group commit failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// A job alone in its transaction needs no savepoint: when it fails, the rollback of the
/// transaction undoes it (and SQLite copies no page into a sub-journal for it, which for a
/// bulk job of thousands of rows is a large part of the cost).
fn commit_alone(inner: &Arc<Inner>, request: Request) {
    let outcome = inner.store.write(now_micros(), |tx| request.job.run_alone(&mut Writer { tx }));
    let answer = outcome.map(|(result, changes)| {
        inner.publish(&changes);
        result
    });
    // A caller that went away (a closed connection) needs no answer.
    let _ = request.reply.send(answer);
}
