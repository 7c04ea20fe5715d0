//! Writes inside one transaction: the operations every door performs, usable one at a time
//! (a POST) or many in one transaction (a batch change set, a bulk import).

use serde_json::Value as Json;
use stela_model::{
    DecodeMode, Entity, EntityType, ResourcePath, Step, Tail, decode_entity, own_properties_json,
};
use stela_store::{Resolved, StoreError, WriteTx};

use crate::ServiceError;

/// The write operations of one transaction.
#[derive(Debug)]
pub struct Writer<'a, 'tx> {
    pub(crate) tx: &'a mut WriteTx<'tx>,
}

fn bad_request(error: impl ToString) -> ServiceError {
    ServiceError::BadRequest(error.to_string())
}

impl Writer<'_, '_> {
    /// Creates an entity (with everything nested in it) in the collection `path` addresses.
    pub fn create(&mut self, path: &ResourcePath, body: &Json) -> Result<Entity, ServiceError> {
        let id = self.create_id(path, body)?;
        Ok(self.tx.entity(path.target().ty, id)?)
    }

    /// Creates an entity like [`Writer::create`], returning only its id (bulk paths do not
    /// read each entity back).
    pub fn create_id(&mut self, path: &ResourcePath, body: &Json) -> Result<i64, ServiceError> {
        let implicit = crate::bulk::implicit_link(self, path)?;
        let input =
            decode_entity(path.target().ty, body, DecodeMode::Create).map_err(bad_request)?;
        Ok(self.tx.create(&input, implicit)?)
    }

    /// Creates many entities, each as [`Writer::create_id`] would and each on its own: a
    /// failing item is undone alone and reported in its place, the others are created. The
    /// results are in input order.
    ///
    /// Observations are written in bulk (multi-row inserts, one log append); anything else
    /// one by one. Decode the items before the transaction with
    /// [`crate::decode_creates`] (it needs no database, and the writer thread is the one every
    /// write waits for).
    pub fn create_decoded(
        &mut self,
        items: Vec<crate::DecodedCreate>,
    ) -> Vec<Result<i64, ServiceError>> {
        crate::bulk::create_decoded(self, items)
    }

    /// Updates the entity `path` addresses: merge (PATCH) or replace (PUT).
    pub fn update(
        &mut self,
        path: &ResourcePath,
        body: &Json,
        replace: bool,
    ) -> Result<Entity, ServiceError> {
        let target = entity_target(path)?;
        let mode = if replace { DecodeMode::Put } else { DecodeMode::Patch };
        let input = decode_entity(target.ty, body, mode).map_err(bad_request)?;
        let (ty, id) = resolve_entity(self.tx.resolve(&path.steps)?)?;
        self.tx.update(ty, id, &input, replace)?;
        Ok(self.tx.entity(ty, id)?)
    }

    /// Applies an RFC 6902 JSON Patch to the entity `path` addresses.
    pub fn patch_json(
        &mut self,
        path: &ResourcePath,
        patch: &json_patch::Patch,
    ) -> Result<Entity, ServiceError> {
        entity_target(path)?;
        let (ty, id) = resolve_entity(self.tx.resolve(&path.steps)?)?;
        let current = self.tx.entity(ty, id)?;
        let mut document = entity_properties_json(&current);
        json_patch::patch(&mut document, patch)
            .map_err(|e| ServiceError::BadRequest(format!("the JSON Patch does not apply: {e}")))?;
        let input = decode_entity(ty, &document, DecodeMode::Put).map_err(bad_request)?;
        self.tx.update(ty, id, &input, true)?;
        Ok(self.tx.entity(ty, id)?)
    }

    /// Deletes the entity `path` addresses, with the cascades of the standard.
    pub fn delete(&mut self, path: &ResourcePath) -> Result<(), ServiceError> {
        entity_target(path)?;
        let (ty, id) = resolve_entity(self.tx.resolve(&path.steps)?)?;
        Ok(self.tx.delete(ty, id)?)
    }

    /// Runs `f` so that, when it fails, only its own writes are undone and the transaction
    /// continues (a failed row of a bulk request).
    pub fn isolated<R>(
        &mut self,
        f: impl FnOnce(&mut Writer<'_, '_>) -> Result<R, ServiceError>,
    ) -> Result<R, ServiceError> {
        self.tx.isolated(|tx| f(&mut Writer { tx }))
    }
}

fn entity_target(path: &ResourcePath) -> Result<&Step, ServiceError> {
    let target = path.target();
    if path.tail != Tail::None || !target.is_single() {
        return Err(ServiceError::MethodNotAllowed(
            "this operation applies to a single entity, e.g. /Things(1)".into(),
        ));
    }
    Ok(target)
}

fn resolve_entity(resolved: Resolved) -> Result<(EntityType, i64), StoreError> {
    match resolved {
        Resolved::Entity { ty, id } => Ok((ty, id)),
        Resolved::Collection { .. } => Err(StoreError::NotFound("not a single entity".into())),
    }
}

/// The writable properties of an entity as a JSON object (the document a JSON Patch edits).
fn entity_properties_json(entity: &Entity) -> Json {
    let values = entity
        .ty
        .properties()
        .iter()
        .zip(&entity.values)
        .filter_map(|(p, v)| v.as_ref().map(|v| (p, v)));
    Json::Object(own_properties_json(values))
}
