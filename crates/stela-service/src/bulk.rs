//! Bulk creation: many entities in one transaction, each succeeding or failing alone.
//!
//! Items are decoded before the transaction ([`decode_creates`], on the caller's thread) and
//! their collection paths checked in it (as `Writer::create` does); the store then writes the plain Observations among them with multi-row inserts
//! (`WriteTx::create_batch`) and everything else one by one.

use serde_json::Value as Json;
use stela_model::{DecodeMode, EntityInput, Relation, ResourcePath, Tail, decode_entity};
use stela_store::{BatchItem, Resolved};

use crate::ServiceError;
use crate::writer::Writer;

/// An entity to create, decoded ahead of its transaction (see [`decode_creates`]).
#[derive(Debug)]
pub struct DecodedCreate {
    pub path: ResourcePath,
    pub input: Result<EntityInput, ServiceError>,
}

/// Decodes the bodies of creates. It needs no database: callers do it before they submit the
/// write, so that the writer thread, which every write waits for, does not.
pub fn decode_creates<'a>(
    items: impl IntoIterator<Item = (ResourcePath, &'a Json)>,
) -> Vec<DecodedCreate> {
    items
        .into_iter()
        .map(|(path, body)| {
            let input = decode_entity(path.target().ty, body, DecodeMode::Create)
                .map_err(|e| ServiceError::BadRequest(e.to_string()));
            DecodedCreate { path, input }
        })
        .collect()
}

/// See [`Writer::create_decoded`].
pub(crate) fn create_decoded(
    writer: &mut Writer<'_, '_>,
    items: Vec<DecodedCreate>,
) -> Vec<Result<i64, ServiceError>> {
    let mut results: Vec<Option<Result<i64, ServiceError>>> =
        std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut batch: Vec<BatchItem> = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    // Items of one request mostly share their path: its parent is resolved once.
    let mut parent: Option<(ResourcePath, Option<(&'static Relation, i64)>)> = None;
    for (position, DecodedCreate { path, input }) in items.into_iter().enumerate() {
        let implicit = match &parent {
            Some((known, implicit)) if *known == path => Ok(*implicit),
            _ => implicit_link(writer, &path).inspect(|implicit| {
                parent = Some((path.clone(), *implicit));
            }),
        };
        match implicit.and_then(|implicit| Ok((input?, implicit))) {
            Ok(item) => {
                batch.push(item);
                positions.push(position);
            }
            Err(error) => results[position] = Some(Err(error)),
        }
    }
    let created = writer.tx.create_batch(&batch);
    for (position, result) in positions.into_iter().zip(created) {
        results[position] = Some(result.map_err(ServiceError::from));
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ServiceError::Internal("a bulk item was lost".into()))))
        .collect()
}

/// The relation and entity a POST to `path` links the new entity to (`Datastreams(5)/
/// Observations` → the new Observation's Datastream is 5); `None` for a top-level collection.
pub(crate) fn implicit_link(
    writer: &Writer<'_, '_>,
    path: &ResourcePath,
) -> Result<Option<(&'static Relation, i64)>, ServiceError> {
    let target = *path.target();
    if target.id.is_some() || path.tail != Tail::None || target.via.is_some_and(|r| !r.many) {
        return Err(ServiceError::MethodNotAllowed(
            "POST creates entities in a collection, e.g. /Things or /Things(1)/Datastreams".into(),
        ));
    }
    let Some(relation) = target.via else { return Ok(None) };
    match writer.tx.resolve(&path.steps[..path.steps.len() - 1])? {
        Resolved::Entity { id, .. } => Ok(Some((relation.inverse_relation(), id))),
        Resolved::Collection { .. } => {
            Err(ServiceError::NotFound("the parent of the collection is not an entity".into()))
        }
    }
}
