//! Reading changed entities and rendering them exactly as HTTP does
//! (`stela_server::render::entity_json`), with links under the HTTP base URL.
//!
//! The notifiers read for a batch of change events at once ([`Wanted`] → [`Fetched`]): one
//! read per entity type and one per relation followed, whatever the number of events. A
//! topic's `$select` does not change what is read (it applies when rendering), so one read
//! serves every `$select`.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value as Json, json};
use stela_model::{Entity, EntityType, Relation, ResourcePath, Step, Tail, value_to_json};
use stela_query::QueryOptions;
use stela_server::render::{Links, entity_json};
use stela_service::{ErrorCode, ReadResult, Service, ServiceError};

/// The links of payloads on topics of `version` (`v1.1`).
pub(crate) fn links(http_base_url: &str, version: &str) -> Links {
    Links { root: format!("{}/{version}", http_base_url.trim_end_matches('/')) }
}

/// The path `<Set>(id)`.
pub(crate) fn entity_path(ty: EntityType, id: i64) -> ResourcePath {
    ResourcePath { steps: vec![Step { ty, via: None, id: Some(id) }], tail: Tail::None }
}

/// Reads the entity `path` addresses; `None` when it does not exist (deleted since, or not
/// in the addressed collection).
pub(crate) async fn read_entity(
    service: &Service,
    path: ResourcePath,
    options: QueryOptions,
) -> Result<Option<Entity>, ServiceError> {
    match service.read(path, options, None).await {
        Ok(ReadResult::Entity(entity)) => Ok(Some(entity)),
        Ok(ReadResult::Collection { .. }) => Ok(None),
        Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// A JSON document as message bytes.
pub(crate) fn to_bytes(json: &Json) -> Bytes {
    Bytes::from(json.to_string())
}

/// The payload of a property topic: `{"name": value}`, as `GET Things(1)/name` returns it.
pub(crate) fn property_json(entity: &Entity, index: usize) -> Json {
    let Some(property) = entity.ty.properties().get(index) else { return Json::Null };
    let value =
        entity.values.get(index).cloned().flatten().map_or(Json::Null, |v| value_to_json(&v));
    json!({ property.name: value })
}

/// Renders `entity` for a topic of `version` with its `$select`.
pub(crate) fn render(
    http_base_url: &str,
    version: &str,
    entity: &Entity,
    options: &QueryOptions,
) -> Bytes {
    to_bytes(&entity_json(&links(http_base_url, version), entity, options))
}

/// What a batch of change events needs read: changed entities, and the ids of entities
/// related to them (to find navigation topics such as `Datastreams(id)/Observations`).
#[derive(Debug, Default)]
pub(crate) struct Wanted {
    entities: HashMap<EntityType, Vec<i64>>,
    related: HashMap<(EntityType, &'static str), (&'static Relation, Vec<i64>)>,
}

impl Wanted {
    /// `<ty>(id)` is needed.
    pub fn entity(&mut self, ty: EntityType, id: i64) {
        self.entities.entry(ty).or_default().push(id);
    }

    /// The ids `relation` (of `ty`) leads to from `<ty>(id)` are needed.
    pub fn related(&mut self, ty: EntityType, relation: &'static Relation, id: i64) {
        self.related
            .entry((ty, relation.name))
            .or_insert_with(|| (relation, Vec::new()))
            .1
            .push(id);
    }

    /// Reads it all: one request per entity type and one per (type, relation), however many
    /// events asked.
    pub async fn read(self, service: &Service) -> Result<Fetched, ServiceError> {
        let mut fetched = Fetched::default();
        for (ty, mut ids) in self.entities {
            ids.sort_unstable();
            ids.dedup();
            for entity in service.read_many(ty, ids).await? {
                fetched.entities.insert((ty, entity.id), entity);
            }
        }
        for ((ty, name), (relation, mut ids)) in self.related {
            ids.sort_unstable();
            ids.dedup();
            for (id, related) in service.related_ids_many(ty, relation, ids).await? {
                fetched.related.entry((ty, name, id)).or_default().push(related);
            }
        }
        Ok(fetched)
    }
}

/// What [`Wanted::read`] found.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    entities: HashMap<(EntityType, i64), Entity>,
    related: HashMap<(EntityType, &'static str, i64), Vec<i64>>,
}

impl Fetched {
    /// `<ty>(id)`, as `GET <Set>(id)` reads it; `None` when it is gone.
    pub fn entity(&self, ty: EntityType, id: i64) -> Option<&Entity> {
        self.entities.get(&(ty, id))
    }

    /// The ids `relation` (of `ty`) leads to from `<ty>(id)`, ascending.
    pub fn related(&self, ty: EntityType, relation: &'static Relation, id: i64) -> &[i64] {
        self.related.get(&(ty, relation.name, id)).map_or(&[], Vec::as_slice)
    }
}
