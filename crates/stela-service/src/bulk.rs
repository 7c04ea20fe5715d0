//! Bulk creation: many entities in one transaction, each succeeding or failing alone.
//!
//! Items are decoded before the transaction ([`decode_creates`], on the caller's thread) and
//! their collection paths checked in it (as `Writer::create` does); the store then writes the plain Observations among them with multi-row inserts
//! (`WriteTx::create_batch`) and everything else one by one.

use std::collections::HashMap;

use serde_json::Value as Json;
use stela_model::{
    DecodeMode, EntityInput, EntityType, Relation, ResourcePath, Tail, decode_entity,
};
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
    let mut pending = Pending { batch: Vec::with_capacity(items.len()), positions: Vec::new() };
    // Each parent path is resolved once per call (MQTT batches go to many Datastreams).
    let mut parents: HashMap<PathKey, Option<(&'static Relation, i64)>> = HashMap::new();
    for (position, DecodedCreate { path, input }) in items.into_iter().enumerate() {
        let key = path_key(&path);
        let implicit = match key.as_ref().and_then(|key| parents.get(key)) {
            Some(implicit) => Ok(*implicit),
            None => {
                let mut resolved = implicit_link(writer, &path);
                if matches!(resolved, Err(ServiceError::NotFound(_))) && !pending.batch.is_empty() {
                    // The parent may be one of the items before this one (`Things` then
                    // `Things(7)/Datastreams`): write those first, as one by one would have.
                    pending.write(writer, &mut results);
                    resolved = implicit_link(writer, &path);
                }
                resolved.inspect(|implicit| {
                    if let Some(key) = key {
                        parents.insert(key, *implicit);
                    }
                })
            }
        };
        match implicit.and_then(|implicit| Ok((input?, implicit))) {
            Ok(item) => {
                pending.batch.push(item);
                pending.positions.push(position);
            }
            Err(error) => results[position] = Some(Err(error)),
        }
    }
    pending.write(writer, &mut results);
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ServiceError::Internal("a bulk item was lost".into()))))
        .collect()
}

/// Items checked and waiting to be written, with their positions in the call.
struct Pending {
    batch: Vec<BatchItem>,
    positions: Vec<usize>,
}

impl Pending {
    fn write(
        &mut self,
        writer: &mut Writer<'_, '_>,
        results: &mut [Option<Result<i64, ServiceError>>],
    ) {
        let created = writer.tx.create_batch(&self.batch);
        for (position, result) in self.positions.drain(..).zip(created) {
            results[position] = Some(result.map_err(ServiceError::from));
        }
        self.batch.clear();
    }
}

/// What [`implicit_link`] depends on: the steps of a collection path (type, id, relation
/// followed); `None` for a path with a tail, which is never cached.
type PathKey = Vec<(EntityType, Option<i64>, Option<&'static str>)>;

fn path_key(path: &ResourcePath) -> Option<PathKey> {
    (path.tail == Tail::None)
        .then(|| path.steps.iter().map(|s| (s.ty, s.id, s.via.map(|r| r.name))).collect())
}

/// The relation and entity a POST to `path` links the new entity to (`Datastreams(5)/
/// Observations` → the new Observation's Datastream is 5); `None` for a top-level collection.
pub(crate) fn implicit_link(
    writer: &mut Writer<'_, '_>,
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
