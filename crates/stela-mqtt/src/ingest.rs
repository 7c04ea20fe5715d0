//! Creating Observations from MQTT messages (conformance class A.7), through
//! `Service::create`: the same write path and rules as `POST` over HTTP.
//!
//! A refused message is counted in `rejected` and its reason logged by the caller; it never
//! ends the session or the broker.

use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;
use stela_service::{ErrorCode, Service, ServiceError};
use tokio::sync::Semaphore;

use crate::metrics::{Metrics, bump};
use crate::topic::{TopicError, parse_create_topic};

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

/// The create side shared by the embedded broker and the external bridge.
#[derive(Debug)]
pub(crate) struct Ingest {
    service: Service,
    metrics: Arc<Metrics>,
    /// Bounds the creates in progress across all clients, so that a flood of messages turns
    /// into TCP backpressure instead of memory.
    permits: Arc<Semaphore>,
}

/// Creates running at once, across clients.
pub(crate) const MAX_CONCURRENT_CREATES: usize = 256;

impl Ingest {
    pub fn new(service: Service, metrics: Arc<Metrics>) -> Ingest {
        Ingest { service, metrics, permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CREATES)) }
    }

    pub fn permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.permits)
    }

    pub fn reject(&self, rejection: Rejection) -> Rejection {
        bump(&self.metrics.rejected);
        rejection
    }

    /// Creates the Observation `payload` describes at `topic`; returns its id.
    pub async fn create(&self, topic: &str, payload: &[u8]) -> Result<i64, Rejection> {
        let result = self.try_create(topic, payload).await;
        match &result {
            Ok(_) => bump(&self.metrics.created),
            Err(_) => bump(&self.metrics.rejected),
        }
        result
    }

    async fn try_create(&self, topic: &str, payload: &[u8]) -> Result<i64, Rejection> {
        let path = parse_create_topic(topic).map_err(Rejection::Topic)?;
        let body: Json = serde_json::from_slice(payload)
            .map_err(|error| Rejection::Payload(format!("the payload is not JSON: {error}")))?;
        if !body.is_object() {
            return Err(Rejection::Payload(
                "the payload must be an Observation as a JSON object".into(),
            ));
        }
        match self.service.create(path, body).await {
            Ok(entity) => Ok(entity.id),
            Err(error) if error.code() == ErrorCode::Internal => Err(Rejection::Internal(error)),
            Err(error) => Err(Rejection::Refused(error)),
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
