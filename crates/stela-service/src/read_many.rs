//! Reads of many entities by id in one request, for the change notifiers: a burst of commits
//! costs one read per entity type (and per relation followed), not one per change.

use stela_model::{Entity, EntityType, Relation};

use crate::{Service, ServiceError};

impl Service {
    /// The entities of type `ty` with the given ids, as [`Service::read`] of `<Set>(id)` without
    /// query options returns them, in ascending id order; ids that no longer exist are left out.
    pub async fn read_many(
        &self,
        ty: EntityType,
        ids: Vec<i64>,
    ) -> Result<Vec<Entity>, ServiceError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |inner| Ok(inner.store.read(|rx| rx.entities_by_ids(ty, &ids))?)).await
    }

    /// For each of the entities `ids` of type `ty`, the ids of the entities `relation` (a
    /// relation of `ty`, e.g. an Observation's `Datastream`) leads to, as `(id, related id)`
    /// pairs ordered by both.
    pub async fn related_ids_many(
        &self,
        ty: EntityType,
        relation: &'static Relation,
        ids: Vec<i64>,
    ) -> Result<Vec<(i64, i64)>, ServiceError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |inner| {
            Ok(inner.store.read(|rx| rx.related_ids_of_many(ty, relation, &ids))?)
        })
        .await
    }
}
