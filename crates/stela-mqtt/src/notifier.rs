//! From committed changes to notifications (conformance class A.8), for the embedded broker.
//!
//! ```text
//! Service change event (after commit)
//!   └─► Subscriptions::matching ─► no topic? done (no read at all)
//!         ├─ set / entity topics ─► read <Set>(id) once per $select ─► entity_json
//!         ├─ property topics     ─► value changed since last time? ─► {"name": value}
//!         ├─ Nav topics          ─► read related ids once ($expand=Datastream($select=id),…)
//!         └─ deep Nav topics     ─► read <path>(id): found means member
//!   └─► ClientHandle::offer to each subscriber (never waits)
//! ```
//!
//! One task, in event order, so every topic sees its notifications in commit order. When it
//! falls behind by more than the service's event buffer, the missed events are counted
//! (`events_lost`) and logged; writers are never slowed down.

use std::sync::Arc;

use serde_json::Value as Json;
use stela_service::{ChangeEvent, ServiceError};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::broker::Shared;
use crate::client::{ClientHandle, Outgoing};
use crate::payload::{EventEntity, property_json, read_entity, related_ids, render, to_bytes};
use crate::subscriptions::TopicMatch;
use crate::topic::TopicKind;

type Match = TopicMatch<Arc<ClientHandle>>;

pub(crate) async fn run(shared: Arc<Shared>, mut events: broadcast::Receiver<ChangeEvent>) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                shared.metrics.events_lost.fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    missed,
                    "mqtt notifier fell behind the writers; notifications were lost"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let Err(error) = notify(&shared, event).await {
            tracing::error!(%error, ?event, "mqtt notifications for a change failed");
        }
    }
}

async fn notify(shared: &Shared, event: ChangeEvent) -> Result<(), ServiceError> {
    let matches = match shared.subscriptions.lock() {
        Ok(subscriptions) => subscriptions.matching(&event),
        Err(_) => return Err(ServiceError::Internal("subscription index poisoned".into())),
    };
    if matches.is_empty() {
        return Ok(());
    }
    let mut entity = EventEntity::new(&shared.service, event.ty, event.id);
    for topic in &matches.direct {
        publish_entity_topic(shared, topic, &mut entity).await?;
    }
    let related = related_ids(&shared.service, event.ty, event.id, &matches.relations).await?;
    for (relation, parent, parent_id) in related {
        let topics = match shared.subscriptions.lock() {
            Ok(subscriptions) => subscriptions.navigation(parent, parent_id, relation.inverse),
            Err(_) => Vec::new(),
        };
        for topic in &topics {
            publish_entity_topic(shared, topic, &mut entity).await?;
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

/// Set, entity, property and one-hop navigation topics: the payload is the changed entity.
async fn publish_entity_topic(
    shared: &Shared,
    topic: &Match,
    entity: &mut EventEntity<'_>,
) -> Result<(), ServiceError> {
    let spec = &topic.topic;
    if let TopicKind::Property(_, _, index) = spec.kind {
        let Some(current) = entity.get(&spec.options).await? else { return Ok(()) };
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
        return Ok(());
    }
    let Some(current) = entity.get(&spec.options).await? else { return Ok(()) };
    let payload = render(&shared.options.http_base_url, spec.version, current, &spec.options);
    deliver(shared, topic, &payload);
    Ok(())
}

fn deliver(shared: &Shared, topic: &Match, payload: &bytes::Bytes) {
    for (client, qos) in &topic.subscribers {
        let message =
            Outgoing { topic: Arc::clone(&topic.name), payload: payload.clone(), qos: *qos };
        client.offer(message, &shared.metrics);
    }
}
