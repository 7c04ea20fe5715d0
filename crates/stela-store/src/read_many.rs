//! Reading many entities by id at once: the change notifier reads every entity a burst of
//! commits touched with one statement per entity type, instead of one read per change.
//!
//! ```text
//!   ids [7, 8, 9, …] ─► chunks of MAX_IDS_PER_STATEMENT ─► JSON array bound as ?1
//!     SELECT <columns> FROM <table> t WHERE t.id IN (SELECT value FROM json_each(?1))
//! ```
//!
//! The ids travel as one bound parameter (a JSON array), never as SQL text.

use rusqlite::params;
use rusqlite::types::Value as Sql;
use stela_model::{Entity, EntityType, Relation};

use crate::StoreError;
use crate::read::{entity_from_row, relation_source, select_columns};
use crate::sqlite::ReadTx;

/// Ids bound to one statement; larger requests are split.
const MAX_IDS_PER_STATEMENT: usize = 1000;

/// The ids as the JSON array `json_each` reads.
fn id_array(ids: &[i64]) -> Sql {
    Sql::Text(serde_json::Value::from(ids).to_string())
}

impl ReadTx<'_> {
    /// The entities of type `ty` with the given ids, without expansions, in ascending id order;
    /// ids that do not exist (deleted since) are left out.
    pub fn entities_by_ids(&self, ty: EntityType, ids: &[i64]) -> Result<Vec<Entity>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} t WHERE t.id IN (SELECT value FROM {} i) ORDER BY t.id",
            select_columns(ty),
            ty.table(),
            self.conn.dialect().id_table("?1"),
        );
        let mut entities = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            self.conn.query_each(&sql, params![id_array(chunk)], |row| {
                entities.push(entity_from_row(ty, row, 0)?);
                Ok(())
            })?;
        }
        Ok(entities)
    }

    /// For each of the entities `ids` of type `ty`, the ids of the entities `relation` (a
    /// relation of `ty`) leads to, as `(id, related id)` pairs ordered by both.
    pub fn related_ids_of_many(
        &self,
        ty: EntityType,
        relation: &Relation,
        ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let (source, parent_key) = relation_source(relation, ty);
        let sql = format!(
            "SELECT {parent_key}, t.id FROM {source} \
             WHERE {parent_key} IN (SELECT value FROM {} i) ORDER BY 1, 2",
            self.conn.dialect().id_table("?1"),
        );
        let mut pairs = Vec::new();
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            self.conn.query_each(&sql, params![id_array(chunk)], |row| {
                pairs.push((row.get(0)?, row.get(1)?));
                Ok(())
            })?;
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bound_as_a_json_array() {
        assert_eq!(id_array(&[]), Sql::Text("[]".into()));
        assert_eq!(id_array(&[7, -1, 9]), Sql::Text("[7,-1,9]".into()));
    }
}
