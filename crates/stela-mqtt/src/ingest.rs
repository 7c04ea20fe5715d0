//! Creating Observations from MQTT messages (conformance class A.7), through
//! `Writer::create_decoded`: the same write path and rules as `POST` over HTTP, many messages per
//! transaction.
//!
//! ```text
//!  sessions, bridge ─► Ingest::submit: parse topic and JSON, decode the Observation
//!                        (refusals answered at once; on the session's task, so that
//!                        sessions decode in parallel and the batcher only gathers)
//!                        ├─► journal (when configured): written, then answered ─┐
//!                        └─► (no journal) ─────────────────────────────────────┴► bounded
//!                              queue (QUEUE_CAPACITY; full = the caller waits, so a flood
//!                              becomes TCP backpressure, not memory)
//!  batcher task ─► take what is waiting (≤ MAX_BATCH) ─► Service::create_decoded[_marked]
//!                  (≤ BATCHES_IN_FLIGHT at once, handed to the writer in arrival order)
//!                  └─► after the commit: count; answer each waiting message, log the
//!                        refusals of journaled ones
//! ```
//!
//! A message is answered once it is durable: written to the journal (see [`crate::journal`]:
//! created exactly once, after a crash too), or without a journal once the transaction holding
//! it committed; a QoS 1 PUBACK sent on that answer acknowledges a message that will not be
//! lost. Each message still succeeds or fails on its own. A refused message is counted in
//! `rejected` and its reason logged; it never ends the session or the broker. A refusal known
//! before the journal (topic, JSON, an Observation that does not decode, authorisation) goes
//! back to an MQTT 5 client as the PUBACK's reason code; one found at the commit (an unknown
//! Datastream) follows a PUBACK already sent, and is counted and logged only, as it is for every
//! refusal with MQTT 3.1.1, which has no negative acknowledgement.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value as Json;
use stela_model::ResourcePath;
use stela_service::{DecodedCreate, ErrorCode, Service, ServiceError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::journal::{self, Appended, Journal, Marks, PreparedJournal};
use crate::metrics::{Metrics, bump};
use crate::topic::{TopicError, parse_create_topic};

/// Messages parsed and waiting for the batcher, across all clients.
const QUEUE_CAPACITY: usize = 8192;

/// The most messages one transaction takes.
const MAX_BATCH: usize = 4096;

/// Batches handed to the writer and not yet answered: one committing, one waiting, so that the
/// writer never idles between batches.
const BATCHES_IN_FLIGHT: usize = 2;

/// Journaled messages, already acknowledged, can wait a little for company: under load (the
/// last batch held at least [`LINGER_FROM`]) a batch waits up to [`LINGER`] until it holds
/// [`LINGER_UNTIL`]. Each commit writes the index pages its batch touched (for Observations of
/// many Datastreams, a page per Datastream and index whatever the batch size), so a writer
/// committing small batches spends a core on pages, not rows. A trickle is not held back.
const LINGER: Duration = Duration::from_millis(10);
const LINGER_FROM: usize = 128;
const LINGER_UNTIL: usize = 4096;

/// Why a message created nothing.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// Not a create topic.
    Topic(TopicError),
    /// Not a JSON object.
    Payload(String),
    /// The write path refused it (invalid Observation, unknown Datastream, …).
    Refused(ServiceError),
    /// The client may not publish there.
    NotAuthorized,
    /// The server failed; not the client's fault.
    Internal(ServiceError),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Topic(error) => write!(f, "{error}"),
            Rejection::Payload(message) => f.write_str(message),
            Rejection::Refused(error) => write!(f, "refused: {error}"),
            Rejection::NotAuthorized => f.write_str("not authorised to publish on this topic"),
            Rejection::Internal(error) => write!(f, "{error}"),
        }
    }
}

impl Rejection {
    fn from_service(error: ServiceError) -> Rejection {
        if error.code() == ErrorCode::Internal {
            Rejection::Internal(error)
        } else {
            Rejection::Refused(error)
        }
    }
}

/// The outcome of one message: the id of the Observation created, or why none was.
pub(crate) type Outcome = Result<i64, Rejection>;

/// A submitted message whose outcome may not be known yet.
#[derive(Debug)]
pub(crate) enum Pending {
    /// Answered at once (refused before reaching the write path).
    Done(Outcome),
    /// Queued; answered after its batch committed.
    Queued(oneshot::Receiver<Outcome>),
}

impl Pending {
    /// Waits for the outcome.
    pub async fn outcome(self) -> Outcome {
        match self {
            Pending::Done(outcome) => outcome,
            Pending::Queued(answer) => answer.await.unwrap_or_else(|_| {
                Err(Rejection::Internal(ServiceError::Internal(
                    "the mqtt create batcher stopped before answering".into(),
                )))
            }),
        }
    }
}

/// A decoded message on its way to the batcher.
#[derive(Debug)]
pub(crate) struct CreateRequest {
    create: DecodedCreate,
    origin: Origin,
}

/// Who hears how a create went.
#[derive(Debug)]
enum Origin {
    /// A session or the bridge, waiting to acknowledge the message.
    Waiting(oneshot::Sender<Outcome>),
    /// Already acknowledged from the journal: the outcome is counted and a refusal logged. The
    /// message is kept to decode it again should its transaction fail.
    Journaled { seq: u64, topic: String, payload: Bytes },
}

impl CreateRequest {
    pub(crate) fn answered(create: DecodedCreate, answer: oneshot::Sender<Outcome>) -> Self {
        CreateRequest { create, origin: Origin::Waiting(answer) }
    }

    pub(crate) fn journaled(
        create: DecodedCreate,
        seq: u64,
        topic: String,
        payload: Bytes,
    ) -> Self {
        CreateRequest { create, origin: Origin::Journaled { seq, topic, payload } }
    }

    /// The journal's sequence number of a journaled message.
    #[cfg(test)]
    pub(crate) fn seq(&self) -> Option<u64> {
        match self.origin {
            Origin::Journaled { seq, .. } => Some(seq),
            Origin::Waiting(_) => None,
        }
    }
}

/// The create side shared by the embedded broker and the external bridge.
#[derive(Debug)]
pub(crate) struct Ingest {
    service: Service,
    metrics: Arc<Metrics>,
    queue: mpsc::Sender<CreateRequest>,
    /// The batcher's end of the queue, until [`Ingest::start`] hands it to the batcher task.
    receiver: Mutex<Option<mpsc::Receiver<CreateRequest>>>,
    /// Where the ingest journal lives, if messages are journaled.
    journal_dir: Option<PathBuf>,
    /// The running journal, once [`Ingest::start`] opened it.
    journal: OnceLock<Journal>,
}

impl Ingest {
    /// Creates go through the journal in `journal_dir` when given (see [`crate::journal`]),
    /// else each message is acknowledged after its commit.
    pub fn new(service: Service, metrics: Arc<Metrics>, journal_dir: Option<PathBuf>) -> Ingest {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Ingest {
            service,
            metrics,
            queue,
            receiver: Mutex::new(Some(receiver)),
            journal_dir,
            journal: OnceLock::new(),
        }
    }

    /// Starts the batcher task and, when configured, the journal, whose messages acknowledged
    /// before the last stop and never created are queued first (once; later calls return
    /// `None`). Messages submitted before wait.
    ///
    /// A journal that cannot be opened is logged as an error; messages are then acknowledged
    /// after their commit.
    pub async fn start(&self) -> Option<JoinHandle<()>> {
        let receiver = self.receiver.lock().ok()?.take()?;
        let journal = match &self.journal_dir {
            Some(dir) => match self.prepare_journal(dir).await {
                Ok(journal) => Some(journal),
                Err(error) => {
                    tracing::error!(%error, journal = %dir.display(), "mqtt ingest journal cannot be opened; messages are acknowledged after their commit");
                    None
                }
            },
            None => None,
        };
        let batcher = tokio::spawn(run_batcher(
            self.service.clone(),
            Arc::clone(&self.metrics),
            receiver,
            journal.as_ref().map(|(_, marks)| marks.clone()),
        ));
        if let Some((prepared, marks)) = journal {
            // The replay goes to the running batcher before any new message is journaled.
            match prepared.start(&marks, self.queue.clone(), Arc::clone(&self.metrics)).await {
                Ok(journal) => {
                    let _ = self.journal.set(journal);
                }
                Err(error) => {
                    tracing::error!(%error, "mqtt ingest journal cannot be started; messages are acknowledged after their commit");
                }
            }
        }
        Some(batcher)
    }

    /// Reads the journal in `dir`, and its marks from the database.
    ///
    /// A new journal registers its source in the database (mark 0) before it takes a message.
    /// A journal whose source the database has never heard of fed another database (this one
    /// was replaced, or the data directory holds a journal from elsewhere): what it holds is
    /// not this database's to create. It is set aside, kept for whoever wants it, and a new
    /// journal begun.
    async fn prepare_journal(&self, dir: &Path) -> Result<(PreparedJournal, Marks), String> {
        let failed = |error: &dyn std::fmt::Display| error.to_string();
        let mut prepared = journal::open(dir).map_err(|e| failed(&e))?;
        let mut mark = self.service.ingest_mark(prepared.source()).await.map_err(|e| failed(&e))?;
        if mark.is_none() && !prepared.created() {
            let aside = journal::set_aside(dir).map_err(|e| failed(&e))?;
            tracing::warn!(
                journal = %dir.display(),
                set_aside = %aside.display(),
                "the mqtt ingest journal fed another database; set aside, a new one begun"
            );
            prepared = journal::open(dir).map_err(|e| failed(&e))?;
            mark = None;
        }
        if mark.is_none() {
            let source = prepared.source().to_owned();
            self.service
                .create_decoded_marked(Vec::new(), source, 0)
                .await
                .map_err(|e| failed(&e))?;
        }
        let marks = prepared.marks(mark.unwrap_or(0));
        Ok((prepared, marks))
    }

    pub fn reject(&self, rejection: Rejection) -> Rejection {
        bump(&self.metrics.rejected);
        rejection
    }

    /// Parses the message `payload` published at `topic` and queues it for creation; waits
    /// while the queue is full. The returned [`Pending`] resolves once the message is
    /// journaled, or without a journal once the Observation is committed or refused.
    pub async fn submit(&self, topic: &str, payload: &Bytes) -> Pending {
        // Decoded here, on the session's task: the batcher and the writer thread only write.
        let create = match decode_message(topic, payload) {
            Ok(create) => create,
            Err(rejection) => return Pending::Done(Err(self.reject(rejection))),
        };
        let queued = match self.journal.get() {
            Some(journal) => match journal.append(topic, payload, create).await {
                Appended::Journaled => return Pending::Done(Ok(0)),
                Appended::Queued(outcome) => Some(outcome),
                Appended::Stopped => None,
            },
            None => {
                let (answer, outcome) = oneshot::channel();
                let request = CreateRequest::answered(create, answer);
                self.queue.send(request).await.is_ok().then_some(outcome)
            }
        };
        match queued {
            Some(outcome) => Pending::Queued(outcome),
            None => Pending::Done(Err(self.reject(Rejection::Internal(ServiceError::Internal(
                "the mqtt create batcher is not running".into(),
            ))))),
        }
    }
}

/// Parses and decodes the message `payload` published at `topic`. An Observation that does not
/// decode is refused here, before it is journaled or queued.
pub(crate) fn decode_message(topic: &str, payload: &[u8]) -> Result<DecodedCreate, Rejection> {
    let (path, body) = parse_message(topic, payload)?;
    let create = stela_service::decode_creates([(path, &body)]).pop().ok_or_else(|| {
        Rejection::Internal(ServiceError::Internal(
            "decoding an mqtt message gave no create".into(),
        ))
    })?;
    match &create.input {
        Ok(_) => Ok(create),
        Err(error) => Err(Rejection::from_service(error.clone())),
    }
}

/// The create path and the Observation of a message.
fn parse_message(topic: &str, payload: &[u8]) -> Result<(ResourcePath, Json), Rejection> {
    let path = parse_create_topic(topic).map_err(Rejection::Topic)?;
    let body: Json = serde_json::from_slice(payload)
        .map_err(|error| Rejection::Payload(format!("the payload is not JSON: {error}")))?;
    if !body.is_object() {
        return Err(Rejection::Payload(
            "the payload must be an Observation as a JSON object".into(),
        ));
    }
    Ok((path, body))
}

/// Takes what is waiting, up to [`MAX_BATCH`], and hands it to the writer as one job; runs
/// until every sender of `queue` is gone.
async fn run_batcher(
    service: Service,
    metrics: Arc<Metrics>,
    mut queue: mpsc::Receiver<CreateRequest>,
    marks: Option<Marks>,
) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let refused_after_ack = Arc::new(AtomicU64::new(0));
    let mut last_len = 0;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        if marks.is_some() && last_len >= LINGER_FROM {
            let until = tokio::time::Instant::now() + LINGER;
            while batch.len() < LINGER_UNTIL {
                let room = MAX_BATCH - batch.len();
                let more = queue.recv_many(&mut batch, room);
                // `recv_many` is cancel safe: what the timeout cuts off stays queued.
                match tokio::time::timeout_at(until, more).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        last_len = batch.len();
        let requests = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        let batcher = Batch {
            service: service.clone(),
            metrics: Arc::clone(&metrics),
            marks: marks.clone(),
            refused_after_ack: Arc::clone(&refused_after_ack),
        };
        let mut commit = Box::pin(batcher.commit(requests, slot));
        // The first poll hands the job to the writer's queue (`Service::atomic` sends it before
        // its first await): batches reach the writer, and so commit, in the order the messages
        // came, though each is then awaited by a task of its own. The journal's marks rely on
        // it.
        let first = std::future::poll_fn(|cx| Poll::Ready(commit.as_mut().poll(cx))).await;
        if first.is_pending() {
            tokio::spawn(commit);
        }
    }
}

/// What committing a batch needs.
#[derive(Debug)]
struct Batch {
    service: Service,
    metrics: Arc<Metrics>,
    marks: Option<Marks>,
    /// Journaled messages refused by the write path, for the log's rate limit.
    refused_after_ack: Arc<AtomicU64>,
}

impl Batch {
    /// Creates the Observations of `requests` in one transaction (advancing the journal's mark
    /// to the last journaled one) and reports each outcome.
    ///
    /// A transaction that fails as a whole answers the waiting messages with its error. The
    /// journaled ones were acknowledged already: they are decoded again and retried, with a
    /// growing pause, until they commit. Meanwhile the batch after it may commit, and its
    /// mark passes the retried records: should the process die before the retry commits, they
    /// are not replayed. That takes a failing database and a crash together.
    async fn commit(self, requests: Vec<CreateRequest>, slot: OwnedSemaphorePermit) {
        let mut origins = Vec::with_capacity(requests.len());
        let mut creates = Vec::with_capacity(requests.len());
        for request in requests {
            origins.push(request.origin);
            creates.push(request.create);
        }
        let mut pause = Duration::from_millis(100);
        loop {
            let last_seq = origins
                .iter()
                .filter_map(|origin| match origin {
                    Origin::Journaled { seq, .. } => Some(*seq),
                    Origin::Waiting(_) => None,
                })
                .max();
            let count = creates.len();
            let committed = match (&self.marks, last_seq) {
                (Some(marks), Some(seq)) => {
                    self.service.create_decoded_marked(creates, marks.source.clone(), seq).await
                }
                _ => self.service.create_decoded(creates).await,
            };
            let results = match committed {
                Ok(results) if results.len() == count => results,
                Ok(results) => {
                    let error =
                        format!("create_decoded answered {} of {count} messages", results.len());
                    (0..count).map(|_| Err(ServiceError::Internal(error.clone()))).collect()
                }
                Err(error) if last_seq.is_some() => {
                    tracing::error!(%error, messages = count, retry_in_ms = pause.as_millis() as u64, "a batch of journaled mqtt creates failed; retrying");
                    (origins, creates) = self.retry_journaled(origins, &error);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, messages = count, "a batch of mqtt creates failed");
                    (0..count).map(|_| Err(error.clone())).collect()
                }
            };
            if let (Some(marks), Some(seq)) = (&self.marks, last_seq) {
                marks.applied.fetch_max(seq, Ordering::AcqRel);
            }
            drop(slot);
            for (origin, result) in origins.into_iter().zip(results) {
                self.report(origin, result.map_err(Rejection::from_service));
            }
            return;
        }
    }

    /// After a failed transaction: answers the waiting messages with `error` and decodes the
    /// journaled ones again for the next attempt.
    fn retry_journaled(
        &self,
        origins: Vec<Origin>,
        error: &ServiceError,
    ) -> (Vec<Origin>, Vec<DecodedCreate>) {
        let mut kept = Vec::new();
        let mut creates = Vec::new();
        for origin in origins {
            match origin {
                Origin::Waiting(_) => {
                    self.report(origin, Err(Rejection::from_service(error.clone())));
                }
                Origin::Journaled { ref topic, ref payload, .. } => {
                    match decode_message(topic, payload) {
                        Ok(create) => {
                            creates.push(create);
                            kept.push(origin);
                        }
                        Err(rejection) => self.report(origin, Err(rejection)),
                    }
                }
            }
        }
        (kept, creates)
    }

    /// Counts an outcome and hands it to whoever waits for it (the log, for a journaled
    /// message).
    fn report(&self, origin: Origin, outcome: Outcome) {
        bump(if outcome.is_ok() { &self.metrics.created } else { &self.metrics.rejected });
        match origin {
            // A session that went away needs no answer; its Observation is committed anyway.
            Origin::Waiting(answer) => {
                let _ = answer.send(outcome);
            }
            Origin::Journaled { topic, .. } => {
                if let Err(rejection) = outcome {
                    let count = self.refused_after_ack.fetch_add(1, Ordering::Relaxed) + 1;
                    log_rejection("(journaled)", &topic, &rejection, count);
                }
            }
        }
    }
}

/// Logs a rejection: the first few of a connection at `warn`, then one in a thousand, so that
/// a misbehaving device cannot flood the log. Server failures are always logged as errors.
pub(crate) fn log_rejection(client_id: &str, topic: &str, rejection: &Rejection, count: u64) {
    if let Rejection::Internal(error) = rejection {
        tracing::error!(client_id, topic, %error, "mqtt message failed inside the server");
    } else if count <= 10 || count.is_multiple_of(1000) {
        tracing::warn!(client_id, topic, reason = %rejection, rejected_so_far = count, "mqtt message rejected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(topic: &str, payload: &str, expected: &str) {
        let actual = match parse_message(topic, payload.as_bytes()) {
            Ok((path, body)) => format!("ok {} {body}", path.steps.len()),
            Err(rejection) => format!("rejected: {rejection}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn messages_are_parsed_before_they_are_queued() {
        check("v1.1/Datastreams(1)/Observations", r#"{"result":1}"#, r#"ok 2 {"result":1}"#);
        check("v1.0/Observations", r#"{"result":2}"#, r#"ok 1 {"result":2}"#);
        check(
            "v1.1/Observations",
            "[1]",
            "rejected: the payload must be an Observation as a JSON object",
        );
        check(
            "v1.1/Observations",
            "nope",
            "rejected: the payload is not JSON: expected ident at line 1 column 2",
        );
        assert!(parse_message("v1.1/Things", b"{}").is_err());
    }
}
