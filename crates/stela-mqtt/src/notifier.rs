//! From committed changes to notifications (conformance class A.8), for the embedded broker.
//!
//! ```text
//! Service change events (after commit), taken in batches: all that wait, up to MAX_EVENTS
//!   └─► Subscriptions::matching per event ─► no topic? nothing to read for it
//!   └─► Wanted ─► one read per entity type, one per relation followed (Fetched)
//!   └─► per event, in commit order:
//!         ├─ set / entity topics ─► entity_json with the topic's $select
//!         ├─ property topics     ─► value changed since last time? ─► {"name": value}
//!         ├─ Nav topics          ─► related ids (Fetched) ─► Subscriptions::navigation
//!         └─ deep Nav topics     ─► read <path>(id): found means member
//!   └─► ClientHandle::offer to each subscriber (never waits)
//! ```
//!
//! One task, in event order, so every topic sees its notifications in commit order. Reading
//! for a whole batch keeps the notifier ahead of writers that commit thousands of Observations
//! per transaction. Should it still fall behind by more than the service's event buffer, the
//! missed events are counted (`events_lost`) and logged; writers are never slowed down.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value as Json;
use stela_model::Entity;
use stela_service::{ChangeEvent, ServiceError};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::broker::Shared;
use crate::client::{ClientHandle, Outgoing};
use crate::metrics::Metrics;
use crate::payload::{Fetched, Wanted, property_json, read_entity, render, to_bytes};
use crate::subscriptions::{Matches, TopicMatch};
use crate::topic::TopicKind;

type Match = TopicMatch<Arc<ClientHandle>>;

/// The most change events handled as one batch.
pub(crate) const MAX_EVENTS: usize = 1024;

/// Waits for change events and takes every one already waiting, up to [`MAX_EVENTS`], into
/// `batch`. Events missed because the receiver fell behind are counted in `events_lost`.
/// Returns false once the channel is closed and drained.
pub(crate) async fn receive_batch(
    events: &mut broadcast::Receiver<ChangeEvent>,
    batch: &mut Vec<ChangeEvent>,
    metrics: &Metrics,
) -> bool {
    let lost = |missed: u64| {
        metrics.events_lost.fetch_add(missed, Ordering::Relaxed);
        tracing::warn!(missed, "mqtt notifier fell behind the writers; notifications were lost");
    };
    while batch.is_empty() {
        match events.recv().await {
            Ok(event) => batch.push(event),
            Err(RecvError::Lagged(missed)) => lost(missed),
            Err(RecvError::Closed) => return false,
        }
    }
    while batch.len() < MAX_EVENTS {
        match events.try_recv() {
            Ok(event) => batch.push(event),
            Err(TryRecvError::Lagged(missed)) => lost(missed),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    true
}

pub(crate) async fn run(shared: Arc<Shared>, mut events: broadcast::Receiver<ChangeEvent>) {
    let mut batch = Vec::with_capacity(MAX_EVENTS);
    while receive_batch(&mut events, &mut batch, &shared.metrics).await {
        if let Err(error) = notify(&shared, &batch).await {
            tracing::error!(%error, events = batch.len(), "mqtt notifications for a batch of changes failed");
        }
        batch.clear();
    }
}

async fn notify(shared: &Shared, batch: &[ChangeEvent]) -> Result<(), ServiceError> {
    let matched: Vec<(ChangeEvent, Matches<Arc<ClientHandle>>)> = match shared.subscriptions.lock()
    {
        Ok(subscriptions) => batch
            .iter()
            .map(|event| (*event, subscriptions.matching(event)))
            .filter(|(_, matches)| !matches.is_empty())
            .collect(),
        Err(_) => return Err(ServiceError::Internal("subscription index poisoned".into())),
    };
    if matched.is_empty() {
        return Ok(());
    }
    let mut wanted = Wanted::default();
    for (event, matches) in &matched {
        if !matches.direct.is_empty() || !matches.relations.is_empty() {
            wanted.entity(event.ty, event.id);
        }
        for &relation in &matches.relations {
            wanted.related(event.ty, relation, event.id);
        }
    }
    let fetched = wanted.read(&shared.service).await?;
    for (event, matches) in &matched {
        notify_event(shared, event, matches, &fetched).await?;
    }
    Ok(())
}

async fn notify_event(
    shared: &Shared,
    event: &ChangeEvent,
    matches: &Matches<Arc<ClientHandle>>,
    fetched: &Fetched,
) -> Result<(), ServiceError> {
    let entity = fetched.entity(event.ty, event.id);
    for topic in &matches.direct {
        publish_entity_topic(shared, topic, entity);
    }
    for &relation in &matches.relations {
        let parent = relation.target;
        for &parent_id in fetched.related(event.ty, relation, event.id) {
            let topics = match shared.subscriptions.lock() {
                Ok(subscriptions) => subscriptions.navigation(parent, parent_id, relation.inverse),
                Err(_) => Vec::new(),
            };
            for topic in &topics {
                publish_entity_topic(shared, topic, entity);
            }
        }
    }
    for topic in &matches.deep {
        let mut path = topic.topic.path.clone();
        if let Some(last) = path.steps.last_mut() {
            last.id = Some(event.id);
        }
        if let Some(member) =
            read_entity(&shared.service, path, topic.topic.options.clone()).await?
        {
            let payload = render(
                &shared.options.http_base_url,
                topic.topic.version,
                &member,
                &topic.topic.options,
            );
            deliver(shared, topic, &payload);
        }
    }
    Ok(())
}

/// Set, entity, property and one-hop navigation topics: the payload is the changed entity
/// (`None` when it is gone by now: nothing is published).
fn publish_entity_topic(shared: &Shared, topic: &Match, entity: Option<&Entity>) {
    let Some(current) = entity else { return };
    let spec = &topic.topic;
    if let TopicKind::Property(_, _, index) = spec.kind {
        let json = property_json(current, index);
        let value = json
            .as_object()
            .and_then(|object| object.values().next())
            .cloned()
            .unwrap_or(Json::Null);
        let changed = shared
            .subscriptions
            .lock()
            .map(|mut subs| subs.replace_value(&topic.name, &value))
            .unwrap_or(false);
        if changed {
            deliver(shared, topic, &to_bytes(&json));
        }
        return;
    }
    let payload = render(&shared.options.http_base_url, spec.version, current, &spec.options);
    deliver(shared, topic, &payload);
}

fn deliver(shared: &Shared, topic: &Match, payload: &bytes::Bytes) {
    for (client, qos) in &topic.subscribers {
        let message =
            Outgoing { topic: Arc::clone(&topic.name), payload: payload.clone(), qos: *qos };
        client.offer(message, &shared.metrics);
    }
}
