//! External broker mode: Stela as a client of an existing broker (Mosquitto, EMQX), so that
//! several Stela instances behind one load balancer share one bus.
//!
//! ```text
//!  broker ──► $share/<group>/v1.1/Observations, v1.1/+/Observations (and v1.0)
//!             (a shared subscription: each message goes to one Stela instance)
//!             ──► Ingest::submit (batched creates) ──► ack task: PUBACKs in arrival order,
//!                                                      each after its commit
//!  Service change events of this instance, in batches ──► v1.1/<Set>, v1.1/<Set>(id),
//!             v1.1/<Parent>(id)/<NavSet> (and v1.0) ──► broker
//! ```
//!
//! The bridge cannot see SUBSCRIBE packets, so it publishes every change on the topics of the
//! set, the entity and the related collections. Property and `$select` topics need the
//! embedded broker. A message carrying `@iot.selfLink` is a notification (this or another
//! instance published it on a create topic, which doubles as the set topic) and is skipped.
//!
//! The connection is retried every `reconnect_delay` while the broker is away; the state
//! (`connected`, `reconnecting` with the last error) is logged and shown by `/health`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS};
use serde_json::Value as Json;
use stela_service::{ChangeEvent, ChangeKind, Service, ServiceError};
use tokio::sync::{broadcast, mpsc};

use crate::ingest::{Ingest, Pending, log_rejection};
use crate::metrics::{Metrics, MqttState, bump};
use crate::notifier::{MAX_EVENTS, receive_batch};
use crate::payload::{Wanted, render};
use crate::topic::VERSIONS;

/// Errors of the MQTT side's set-up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker URL is not `mqtt://host[:port]`.
    #[error("invalid broker URL '{0}' (expected mqtt://host:port, e.g. mqtt://127.0.0.1:1883)")]
    InvalidBrokerUrl(String),
}

/// Settings of external broker mode.
#[derive(Clone)]
pub struct BridgeOptions {
    /// `mqtt://host[:port]` (port 1883 when omitted); `tcp://` is accepted too.
    pub broker_url: String,
    /// Client id of this instance at the broker; unique per instance.
    pub client_id: String,
    /// Base URL of the HTTP API, for the links in payloads.
    pub http_base_url: String,
    /// Group of the shared subscription to the create topics (`$share/<group>/…`), so that
    /// each message creates one Observation however many instances run; `None` subscribes
    /// plainly (one instance only, or a broker without shared subscriptions).
    pub shared_group: Option<String>,
    /// Pause between connection attempts while the broker is away.
    pub reconnect_delay: Duration,
    /// Largest packet sent or received.
    pub max_packet_bytes: usize,
    /// Username and password presented to the broker.
    pub credentials: Option<(String, String)>,
    /// Directory of the ingest journal, as [`crate::BrokerOptions::journal_dir`]: create
    /// messages are acknowledged to the broker once journaled.
    pub journal_dir: Option<PathBuf>,
}

impl std::fmt::Debug for BridgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeOptions")
            .field("broker_url", &self.broker_url)
            .field("client_id", &self.client_id)
            .field("http_base_url", &self.http_base_url)
            .field("shared_group", &self.shared_group)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("username", &self.credentials.as_ref().map(|(username, _)| username))
            .finish_non_exhaustive()
    }
}

impl BridgeOptions {
    pub fn new(broker_url: impl Into<String>, http_base_url: impl Into<String>) -> BridgeOptions {
        BridgeOptions {
            broker_url: broker_url.into(),
            client_id: format!("stela-{}", std::process::id()),
            http_base_url: http_base_url.into(),
            shared_group: Some("stela".to_owned()),
            reconnect_delay: Duration::from_secs(1),
            max_packet_bytes: 1024 * 1024,
            credentials: None,
            journal_dir: None,
        }
    }
}

/// Splits `mqtt://host:port` into host and port.
pub fn parse_broker_url(url: &str) -> Result<(String, u16), MqttError> {
    let invalid = || MqttError::InvalidBrokerUrl(url.to_owned());
    let rest =
        url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")).ok_or_else(invalid)?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(invalid());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| invalid())?)
        }
        _ => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

/// Requests queued towards the broker; beyond it notifications are dropped and counted.
const REQUEST_QUEUE: usize = 4096;

/// Messages received and not yet acknowledged (queued or committing); beyond it the bridge
/// stops reading from the broker until commits catch up.
const MAX_PENDING_ACKS: usize = 4096;

/// Stela as a client of an external broker.
#[derive(Debug)]
pub struct Bridge {
    service: Service,
    options: BridgeOptions,
    host: String,
    port: u16,
    metrics: Arc<Metrics>,
    ingest: Arc<Ingest>,
}

impl Bridge {
    pub fn new(service: Service, options: BridgeOptions) -> Result<Bridge, MqttError> {
        let (host, port) = parse_broker_url(&options.broker_url)?;
        let metrics = Arc::new(Metrics::new("external"));
        metrics.set_endpoint(options.broker_url.clone());
        let ingest = Arc::new(Ingest::new(
            service.clone(),
            Arc::clone(&metrics),
            options.journal_dir.clone(),
        ));
        Ok(Bridge { service, options, host, port, metrics, ingest })
    }

    /// Counters and connection state; also the `/health` report.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The topics subscribed to for creating Observations.
    fn create_topics(&self) -> Vec<String> {
        let prefix = match &self.options.shared_group {
            Some(group) => format!("$share/{group}/"),
            None => String::new(),
        };
        VERSIONS
            .iter()
            .flat_map(|version| {
                [
                    format!("{prefix}{version}/Observations"),
                    format!("{prefix}{version}/+/Observations"),
                ]
            })
            .collect()
    }

    /// Runs until `shutdown` completes, reconnecting whenever the broker goes away.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let mut mqtt_options =
            MqttOptions::new(self.options.client_id.clone(), self.host.clone(), self.port);
        mqtt_options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_manual_acks(true)
            .set_max_packet_size(self.options.max_packet_bytes, self.options.max_packet_bytes);
        if let Some((username, password)) = &self.options.credentials {
            mqtt_options.set_credentials(username.clone(), password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt_options, REQUEST_QUEUE);
        let notifier = tokio::spawn(notify_loop(
            self.service.clone(),
            client.clone(),
            Arc::clone(&self.metrics),
            self.options.http_base_url.clone(),
            self.service.subscribe(),
        ));
        let topics = self.create_topics();
        let batcher = self.ingest.start().await;
        let (acks, pending_acks) = mpsc::channel(MAX_PENDING_ACKS);
        let ack_task =
            tokio::spawn(ack_loop(pending_acks, client.clone(), Arc::clone(&self.metrics)));
        let mut connected_before = false;
        let mut connected = false;
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                () = &mut shutdown => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    if connected_before {
                        bump(&self.metrics.reconnects);
                        tracing::info!(broker = %self.options.broker_url, "reconnected to the mqtt broker");
                    } else {
                        tracing::info!(broker = %self.options.broker_url, "connected to the mqtt broker");
                    }
                    connected_before = true;
                    connected = true;
                    // "connected" in /health once the create topics are subscribed (SUBACK).
                    let filters = topics.iter().map(|topic| {
                        rumqttc::SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce)
                    });
                    if let Err(error) = client.try_subscribe_many(filters) {
                        tracing::error!(%error, "subscribing to the mqtt create topics failed");
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(topics = ?topics, "the mqtt broker refused a subscription to the create topics");
                        self.metrics.set_state(MqttState::Failed(
                            "the broker refused the subscription to the create topics (does it support shared subscriptions?)".into(),
                        ));
                    } else {
                        self.metrics.set_state(MqttState::Connected);
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    bump(&self.metrics.messages_in);
                    // Waits only while the create queue is full: the backpressure of a flood.
                    let outcome = if is_notification(&publish.payload) {
                        None
                    } else {
                        Some(self.ingest.submit(&publish.topic, &publish.payload).await)
                    };
                    if acks.send((publish, outcome)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if connected {
                        tracing::warn!(broker = %self.options.broker_url, %error, "lost the connection to the mqtt broker; reconnecting");
                    } else {
                        tracing::warn!(broker = %self.options.broker_url, %error, "cannot reach the mqtt broker; retrying");
                    }
                    connected = false;
                    self.metrics.set_state(MqttState::Reconnecting(error.to_string()));
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(self.options.reconnect_delay) => {}
                    }
                }
            }
        }
        notifier.abort();
        drop(acks);
        // The messages received are committed (or refused) and acknowledged before leaving.
        let _ = ack_task.await;
        if let Some(batcher) = batcher {
            batcher.abort();
        }
        let _ = client.try_disconnect();
        self.metrics.set_state(MqttState::Stopped);
    }
}

/// Whether a message on a create topic is an entity as rendered by Stela (it has a self
/// link), that is a notification rather than a request to create.
fn is_notification(payload: &[u8]) -> bool {
    serde_json::from_slice::<Json>(payload).is_ok_and(|json| json.get("@iot.selfLink").is_some())
}

/// Acknowledges the messages in the order they came, each once its create is committed or
/// refused (MQTT 3.1.1 has no negative acknowledgement: refused messages are acknowledged too,
/// otherwise the broker would redeliver them forever).
async fn ack_loop(
    mut pending: mpsc::Receiver<(Publish, Option<Pending>)>,
    client: AsyncClient,
    metrics: Arc<Metrics>,
) {
    while let Some((publish, outcome)) = pending.recv().await {
        if let Some(outcome) = outcome
            && let Err(rejection) = outcome.outcome().await
        {
            let count = Metrics::get(&metrics.rejected);
            log_rejection("(external broker)", &publish.topic, &rejection, count);
        }
        if client.try_ack(&publish).is_err() {
            tracing::warn!("mqtt acknowledgement could not be queued; the broker will redeliver");
        }
    }
}

async fn notify_loop(
    service: Service,
    client: AsyncClient,
    metrics: Arc<Metrics>,
    http_base_url: String,
    mut events: broadcast::Receiver<ChangeEvent>,
) {
    let mut batch = Vec::with_capacity(MAX_EVENTS);
    while receive_batch(&mut events, &mut batch, &metrics).await {
        if let Err(error) = notify(&service, &client, &metrics, &http_base_url, &batch).await {
            tracing::error!(%error, events = batch.len(), "mqtt notifications for a batch of changes failed");
        }
        batch.clear();
    }
}

/// The relations of `event`'s type whose inverse is a collection: the navigation topics
/// (`Datastreams(id)/Observations`) a creation is published on.
fn navigation_relations(
    event: &ChangeEvent,
) -> impl Iterator<Item = &'static stela_model::Relation> {
    let created = event.kind == ChangeKind::Created;
    event.ty.relations().iter().filter(move |relation| created && relation.inverse_relation().many)
}

async fn notify(
    service: &Service,
    client: &AsyncClient,
    metrics: &Metrics,
    http_base_url: &str,
    batch: &[ChangeEvent],
) -> Result<(), ServiceError> {
    let mut wanted = Wanted::default();
    for event in batch.iter().filter(|event| event.kind != ChangeKind::Deleted) {
        wanted.entity(event.ty, event.id);
        for relation in navigation_relations(event) {
            wanted.related(event.ty, relation, event.id);
        }
    }
    let fetched = wanted.read(service).await?;
    for event in batch {
        let Some(current) = fetched.entity(event.ty, event.id) else { continue };
        let set = event.ty.set_name();
        let mut topics: Vec<String> = Vec::new();
        match event.kind {
            ChangeKind::Created => {
                topics.push(set.to_owned());
                topics.push(format!("{set}({})", event.id));
                for relation in navigation_relations(event) {
                    for parent_id in fetched.related(event.ty, relation, event.id) {
                        let parent = relation.target.set_name();
                        topics.push(format!("{parent}({parent_id})/{}", relation.inverse));
                    }
                }
            }
            ChangeKind::Updated => topics.push(format!("{set}({})", event.id)),
            ChangeKind::Deleted => {}
        }
        for version in VERSIONS {
            let payload = render(http_base_url, version, current, &Default::default());
            for topic in &topics {
                match client.try_publish(
                    format!("{version}/{topic}"),
                    QoS::AtLeastOnce,
                    false,
                    payload.to_vec(),
                ) {
                    Ok(()) => bump(&metrics.messages_out),
                    Err(_) => bump(&metrics.dropped),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1883").ok(),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            parse_broker_url("mqtt://broker.local").ok(),
            Some(("broker.local".into(), 1883))
        );
        assert_eq!(parse_broker_url("tcp://[::1]:1884/").ok(), Some(("::1".into(), 1884)));
        for bad in [
            "http://x:1",
            "mqtt://",
            "mqtt://x:port",
            "mqtt://x:1/path",
            "mqtt://u@x",
            "127.0.0.1:1883",
        ] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn notifications_are_recognised() {
        assert!(is_notification(
            br#"{"@iot.selfLink": "http://x/v1.1/Observations(1)", "result": 1}"#
        ));
        assert!(!is_notification(br#"{"result": 1, "Datastream": {"@iot.id": 1}}"#));
        assert!(!is_notification(b"not json"));
    }
}
