//! Creating Observations from MQTT messages (conformance class A.7), through
//! `Writer::create_decoded`: the same write path and rules as `POST` over HTTP, many messages per
//! transaction.
//!
//! ```text
//!  sessions, bridge ─► Ingest::submit: parse topic and JSON, decode the Observation
//!                        (refusals answered at once; on the session's task, so that
//!                        sessions decode in parallel and the batcher only gathers)
//!                        └─► bounded queue (QUEUE_CAPACITY; full = the caller waits, so a
//!                              flood becomes TCP backpressure, not memory)
//!  batcher task ─► take what is waiting (≤ MAX_BATCH) ─► Service::create_decoded
//!                  (≤ BATCHES_IN_FLIGHT at once, handed to the writer in arrival order)
//!                  └─► after the commit: count, answer each message (its Pending resolves)
//! ```
//!
//! A message is answered only after the transaction holding it committed, so that a QoS 1
//! PUBACK sent on that answer acknowledges a durable Observation. Each message still succeeds
//! or fails on its own. A refused message is counted in `rejected` and its reason logged by
//! the caller; it never ends the session or the broker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use serde_json::Value as Json;
use stela_model::ResourcePath;
use stela_service::{DecodedCreate, ErrorCode, Service, ServiceError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, bump};
use crate::topic::{TopicError, parse_create_topic};

/// Messages parsed and waiting for the batcher, across all clients.
const QUEUE_CAPACITY: usize = 8192;

/// The most messages one transaction takes.
const MAX_BATCH: usize = 4096;

/// Batches handed to the writer and not yet answered: one committing, one waiting, so that the
/// writer never idles between batches.
const BATCHES_IN_FLIGHT: usize = 2;

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
struct CreateRequest {
    create: DecodedCreate,
    answer: oneshot::Sender<Outcome>,
}

/// The create side shared by the embedded broker and the external bridge.
#[derive(Debug)]
pub(crate) struct Ingest {
    service: Service,
    metrics: Arc<Metrics>,
    queue: mpsc::Sender<CreateRequest>,
    /// The batcher's end of the queue, until [`Ingest::start`] hands it to the batcher task.
    receiver: Mutex<Option<mpsc::Receiver<CreateRequest>>>,
}

impl Ingest {
    pub fn new(service: Service, metrics: Arc<Metrics>) -> Ingest {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Ingest { service, metrics, queue, receiver: Mutex::new(Some(receiver)) }
    }

    /// Starts the batcher task (once; later calls return `None`). Messages submitted before
    /// wait in the queue.
    pub fn start(&self) -> Option<JoinHandle<()>> {
        let receiver = self.receiver.lock().ok()?.take()?;
        Some(tokio::spawn(run_batcher(self.service.clone(), Arc::clone(&self.metrics), receiver)))
    }

    pub fn reject(&self, rejection: Rejection) -> Rejection {
        bump(&self.metrics.rejected);
        rejection
    }

    /// Parses the message `payload` published at `topic` and queues it for creation; waits
    /// while the queue is full. The returned [`Pending`] resolves once the Observation is
    /// committed or refused.
    pub async fn submit(&self, topic: &str, payload: &[u8]) -> Pending {
        let (path, body) = match parse_message(topic, payload) {
            Ok(parsed) => parsed,
            Err(rejection) => return Pending::Done(Err(self.reject(rejection))),
        };
        // Decoded here, on the session's task: the batcher and the writer thread only write.
        let Some(create) = stela_service::decode_creates([(path, &body)]).pop() else {
            return Pending::Done(Err(self.reject(Rejection::Internal(ServiceError::Internal(
                "decoding an mqtt message gave no create".into(),
            )))));
        };
        let (answer, outcome) = oneshot::channel();
        match self.queue.send(CreateRequest { create, answer }).await {
            Ok(()) => Pending::Queued(outcome),
            Err(_) => Pending::Done(Err(self.reject(Rejection::Internal(ServiceError::Internal(
                "the mqtt create batcher is not running".into(),
            ))))),
        }
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
/// until every [`Ingest`] handle is gone.
async fn run_batcher(
    service: Service,
    metrics: Arc<Metrics>,
    mut queue: mpsc::Receiver<CreateRequest>,
) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let requests = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        let mut commit = commit_batch(service.clone(), Arc::clone(&metrics), requests, slot);
        // The first poll hands the job to the writer's queue (`Service::atomic` sends it before
        // its first await): batches reach the writer, and so commit, in the order the messages
        // came, though each is then awaited by a task of its own.
        let first = std::future::poll_fn(|cx| Poll::Ready(commit.as_mut().poll(cx))).await;
        if first.is_pending() {
            tokio::spawn(commit);
        }
    }
}

/// Creates the Observations of `requests` in one transaction and answers each message.
fn commit_batch(
    service: Service,
    metrics: Arc<Metrics>,
    requests: Vec<CreateRequest>,
    slot: OwnedSemaphorePermit,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut answers = Vec::with_capacity(requests.len());
        let mut creates = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(request.answer);
            creates.push(request.create);
        }
        let count = creates.len();
        let committed = service.create_decoded(creates).await;
        drop(slot);
        let results: Vec<Result<i64, ServiceError>> = match committed {
            Ok(results) if results.len() == count => results,
            Ok(results) => {
                let error =
                    format!("create_decoded answered {} of {count} messages", results.len());
                (0..count).map(|_| Err(ServiceError::Internal(error.clone()))).collect()
            }
            Err(error) => {
                tracing::error!(%error, messages = count, "a batch of mqtt creates failed");
                (0..count).map(|_| Err(error.clone())).collect()
            }
        };
        for (answer, result) in answers.into_iter().zip(results) {
            let outcome = result.map_err(Rejection::from_service);
            bump(if outcome.is_ok() { &metrics.created } else { &metrics.rejected });
            // A session that went away needs no answer; its Observation is committed anyway.
            let _ = answer.send(outcome);
        }
    })
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
