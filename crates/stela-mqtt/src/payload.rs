//! Reading changed entities and rendering them exactly as HTTP does
//! (`stela_server::render::entity_json`), with links under the HTTP base URL.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value as Json, json};
use stela_model::{
    Entity, EntityType, ExpandedContent, Relation, ResourcePath, Step, Tail, value_to_json,
};
use stela_query::{QueryOptions, parse_query_options};
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

/// A cache of the entity of one change event, read once per distinct `$select`.
#[derive(Debug)]
pub(crate) struct EventEntity<'a> {
    service: &'a Service,
    ty: EntityType,
    id: i64,
    read: HashMap<String, Option<Entity>>,
}

impl<'a> EventEntity<'a> {
    pub fn new(service: &'a Service, ty: EntityType, id: i64) -> EventEntity<'a> {
        EventEntity { service, ty, id, read: HashMap::new() }
    }

    /// The entity read with `options`; `None` when it is gone.
    pub async fn get(&mut self, options: &QueryOptions) -> Result<Option<&Entity>, ServiceError> {
        let key = select_key(options);
        if !self.read.contains_key(&key) {
            let entity =
                read_entity(self.service, entity_path(self.ty, self.id), options.clone()).await?;
            self.read.insert(key.clone(), entity);
        }
        Ok(self.read.get(&key).and_then(Option::as_ref))
    }
}

fn select_key(options: &QueryOptions) -> String {
    match &options.select {
        None => String::new(),
        Some(items) => items.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
    }
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

/// The entities related to `<ty>(id)` through `relations` (e.g. an Observation's Datastream
/// and FeatureOfInterest), as `(relation, related type, related id)`, read in one request
/// with `$expand=<relation>($select=id)`.
pub(crate) async fn related_ids(
    service: &Service,
    ty: EntityType,
    id: i64,
    relations: &[&'static Relation],
) -> Result<Vec<(&'static Relation, EntityType, i64)>, ServiceError> {
    if relations.is_empty() {
        return Ok(Vec::new());
    }
    let expand: Vec<String> = relations.iter().map(|r| format!("{}($select=id)", r.name)).collect();
    let pairs = [("$select".to_owned(), "id".to_owned()), ("$expand".to_owned(), expand.join(","))];
    let options = parse_query_options(&pairs)
        .map_err(|error| ServiceError::Internal(format!("expand of related ids: {error}")))?;
    let Some(entity) = read_entity(service, entity_path(ty, id), options).await? else {
        return Ok(Vec::new());
    };
    let mut related = Vec::new();
    for expanded in &entity.expanded {
        match &expanded.content {
            ExpandedContent::One(Some(one)) => related.push((expanded.relation, one.ty, one.id)),
            ExpandedContent::One(None) => {}
            ExpandedContent::Many(page) => {
                related.extend(page.items.iter().map(|item| (expanded.relation, item.ty, item.id)));
            }
        }
    }
    Ok(related)
}
