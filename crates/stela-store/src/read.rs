//! Reading: resolving resource paths, collections with query options, `$expand` trees.
//!
//! A collection is one SQL statement (plus one for `$count`); each `$expand` level is one
//! statement for all parents together, using a window function for per-parent `$top`/`$skip`,
//! so expanding Observations under 100 Datastreams costs one query, not a hundred.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use rusqlite::params;
use rusqlite::types::Value as Sql;
use stela_model::{
    Entity, EntityType, Expanded, ExpandedContent, Link, Page, Relation, ResourcePath, Step,
};
use stela_query::{ExpandItem, QueryOptions};

use crate::StoreError;
use crate::columns::{column_names, from_row};
use crate::db::{Conn, Dialect, Row, params_of};
use crate::filter::{lower_filter, lower_orderby};
use crate::sqlite::ReadTx;

/// Paging limits of the service.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// `$top` when none is given.
    pub default_top: u64,
    /// The largest page served; larger `$top` values are reduced to it.
    pub max_top: u64,
}

/// Which entities of a type a collection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole entity set.
    All,
    /// The entities related to one parent: `relation` is followed from the parent.
    Related { relation: &'static Relation, parent_id: i64 },
}

/// What a resource path addresses, once checked against the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Entity { ty: EntityType, id: i64 },
    Collection { ty: EntityType, scope: Scope },
}

/// The comma-separated, `t.`-qualified column list of a type: id first, then each property.
pub(crate) fn select_columns(ty: EntityType) -> &'static str {
    static LISTS: OnceLock<Vec<String>> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        EntityType::ALL
            .iter()
            .map(|ty| {
                let mut list = String::from("t.id");
                for property in ty.properties() {
                    for column in column_names(property) {
                        let _ = write!(list, ", t.{column}");
                    }
                }
                list
            })
            .collect()
    });
    let index = EntityType::ALL.iter().position(|t| *t == ty).unwrap_or(0);
    &lists[index]
}

/// Reads an entity whose columns (as [`select_columns`]) start at `offset`.
pub(crate) fn entity_from_row(
    ty: EntityType,
    row: &Row<'_>,
    offset: usize,
) -> Result<Entity, StoreError> {
    let id: i64 = row.get(offset)?;
    let mut index = offset + 1;
    let mut values = Vec::with_capacity(ty.properties().len());
    for (property, columns) in ty.properties().iter().zip(crate::columns::columns_of(ty)) {
        values.push(Some(from_row(property, row, index)?));
        index += columns.len();
    }
    Ok(Entity { ty, id, values, expanded: Vec::new() })
}

/// The FROM clause joining a relation's target (alias `t`) to its parent, and the SQL
/// expression holding the parent's id.
pub(crate) fn relation_source(relation: &Relation, parent: EntityType) -> (String, String) {
    let target = relation.target.table();
    match relation.link {
        Link::Forward { column } => (
            format!("{target} t JOIN {} p ON t.id = p.{column}", parent.table()),
            "p.id".to_owned(),
        ),
        Link::Reverse { column } => (format!("{target} t"), format!("t.{column}")),
        Link::Join { table, this_column, target_column, .. } => (
            format!("{target} t JOIN {table} j ON t.id = j.{target_column}"),
            format!("j.{this_column}"),
        ),
    }
}

/// Whether a relation keeps the order of linking (`rank` in its join table).
fn is_ranked(relation: &Relation) -> bool {
    matches!(relation.link, Link::Join { ordered: true, .. })
}

fn parent_of(relation: &Relation) -> EntityType {
    relation.inverse_relation().target
}

impl ReadTx<'_> {
    /// Checks a resource path against the data: every id exists and is related as the path says.
    pub fn resolve(&self, path: &ResourcePath) -> Result<Resolved, StoreError> {
        resolve(self.conn, &path.steps)
    }

    /// Reads one entity with the `$expand` (and `$select` bookkeeping) of `options`.
    pub fn entity(
        &self,
        ty: EntityType,
        id: i64,
        options: &QueryOptions,
    ) -> Result<Entity, StoreError> {
        let sql = format!("SELECT {} FROM {} t WHERE t.id = ?1", select_columns(ty), ty.table());
        let mut entity = self
            .conn
            .query_opt(&sql, params![id], |row| entity_from_row(ty, row, 0))?
            .ok_or_else(|| StoreError::NotFound(format!("no {ty} with id {id}")))?;
        check_select(ty, options)?;
        let items = std::slice::from_mut(&mut entity);
        self.expand(ty, items, &options.expand, 0)?;
        Ok(entity)
    }

    /// Reads one page of a collection.
    pub fn collection(
        &self,
        ty: EntityType,
        scope: Scope,
        options: &QueryOptions,
        limits: ReadLimits,
        after: Option<&[serde_json::Value]>,
    ) -> Result<Page, StoreError> {
        let plan = collection_sql(self.conn.dialect(), ty, scope, options, limits, after)?;
        let count = match &plan.count {
            Some((sql, params)) => {
                Some(self.conn.query_row(sql, &params_of(params), |row| row.get::<i64>(0))?)
            }
            None => None,
        };
        let Some((sql, params)) = &plan.page else {
            return Ok(Page { items: Vec::new(), count, next_skip: None, next_after: None });
        };
        let mut items =
            self.conn.query_map(sql, &params_of(params), |row| entity_from_row(ty, row, 0))?;
        let (next_skip, next_after) = if items.len() as u64 > plan.top {
            items.truncate(plan.top as usize);
            let after = match (&plan.keyset, items.last()) {
                (Some(keys), Some(last)) => Some(keyset_values(keys, last)),
                _ => None,
            };
            (Some(plan.skip + plan.top), after)
        } else {
            (None, None)
        };
        self.expand(ty, &mut items, &options.expand, 0)?;
        Ok(Page { items, count, next_skip, next_after })
    }

    /// The query plans (`EXPLAIN QUERY PLAN` details) of the statements a collection read
    /// runs: the `$count` statement first when there is one, then the page.
    pub fn explain_collection(
        &self,
        ty: EntityType,
        scope: Scope,
        options: &QueryOptions,
        limits: ReadLimits,
        after: Option<&[serde_json::Value]>,
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let dialect = self.conn.dialect();
        let plan = collection_sql(dialect, ty, scope, options, limits, after)?;
        let mut plans = Vec::new();
        for (sql, params) in plan.count.iter().chain(plan.page.iter()) {
            let (explain, column) = match dialect {
                Dialect::Sqlite => (format!("EXPLAIN QUERY PLAN {sql}"), 3),
                Dialect::Postgres => (format!("EXPLAIN {sql}"), 0),
            };
            plans.push(
                self.conn
                    .query_map(&explain, &params_of(params), |row| row.get::<String>(column))?,
            );
        }
        Ok(plans)
    }

    /// Fills in the expanded relations of `items`, one query per relation and level.
    fn expand(
        &self,
        ty: EntityType,
        items: &mut [Entity],
        expand: &[ExpandItem],
        depth: usize,
    ) -> Result<(), StoreError> {
        if items.is_empty() || expand.is_empty() {
            return Ok(());
        }
        if depth > 16 {
            return Err(StoreError::query("$expand", "$expand nested too deeply"));
        }
        let dialect = self.conn.dialect();
        let ids = Sql::Text(
            serde_json::to_string(&items.iter().map(|e| e.id).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        for item in expand {
            let name = item.path.first().map(String::as_str).unwrap_or_default();
            let relation = ty.relation(name).ok_or_else(|| {
                StoreError::query("$expand", format!("{ty} has no relation '{name}'"))
            })?;
            check_select(relation.target, &item.options)?;
            let target = relation.target;
            let (source, parent_key) = relation_source(relation, ty);
            let mut params = vec![ids.clone()];
            let id_table = dialect.id_table("?1");
            let mut conditions = vec![format!("{parent_key} IN (SELECT value FROM {id_table} i)")];
            let mut filter_sql = None;
            if let Some(filter) = &item.options.filter {
                let lowered = lower_filter(dialect, target, filter, &mut params)?;
                conditions.push(lowered.clone());
                filter_sql = Some(lowered);
            }
            // The parameters the WHERE clause uses; paging parameters come after them.
            let where_params = params.len();
            let where_clause = conditions.join(" AND ");
            let mut children: Vec<(i64, Entity)> = Vec::new();
            let mut has_more: HashMap<i64, u64> = HashMap::new();
            let top = item.options.top.unwrap_or(100);
            let skip = item.options.skip.unwrap_or(0);
            if relation.many && !is_ranked(relation) {
                // Per parent, the children's page is found through the index on the parent key
                // (a correlated subquery with LIMIT): the cost grows with parents × $top, not with
                // all the children of all parents, which a window function would have to rank.
                let inner_order =
                    lower_orderby(dialect, target, &item.options.orderby, &mut params)?;
                params.push(Sql::Integer(i64::try_from(top.saturating_add(1)).unwrap_or(i64::MAX)));
                let limit_index = params.len();
                params.push(Sql::Integer(i64::try_from(skip).unwrap_or(i64::MAX)));
                let filter = filter_sql.as_deref().map(|f| format!(" AND {f}")).unwrap_or_default();
                let sql = match dialect {
                    Dialect::Sqlite => {
                        let outer_order =
                            lower_orderby(dialect, target, &item.options.orderby, &mut params)?;
                        format!(
                            "SELECT p.value AS parent_id, {} FROM {id_table} p JOIN {} t ON t.id IN \
                             (SELECT t.id FROM {source} WHERE {parent_key} = p.value{filter} \
                              ORDER BY {inner_order} LIMIT ?{limit_index} OFFSET ?{}) \
                             ORDER BY p.value, {outer_order}",
                            select_columns(target),
                            target.table(),
                            limit_index + 1
                        )
                    }
                    // PostgreSQL plans `t.id IN (correlated subquery)` as a scan of the whole
                    // table; a lateral join reads each parent's page from the index. The rank
                    // column (after the entity's columns) keeps each page's order.
                    Dialect::Postgres => format!(
                        "SELECT p.value AS parent_id, t.* FROM {id_table} p CROSS JOIN LATERAL \
                         (SELECT {}, row_number() OVER (ORDER BY {inner_order}) AS stela_rank \
                          FROM {source} WHERE {parent_key} = p.value{filter} \
                          ORDER BY {inner_order} LIMIT ?{limit_index} OFFSET ?{}) t \
                         ORDER BY p.value, t.stela_rank",
                        select_columns(target),
                        limit_index + 1
                    ),
                };
                let mut seen: HashMap<i64, u64> = HashMap::new();
                self.conn.query_each(&sql, &params_of(&params), |row| {
                    let parent: i64 = row.get(0)?;
                    let count = seen.entry(parent).or_insert(0);
                    *count += 1;
                    if *count > top {
                        has_more.insert(parent, skip + top);
                    } else {
                        children.push((parent, entity_from_row(target, row, 1)?));
                    }
                    Ok(())
                })?;
            } else if relation.many {
                let order = if is_ranked(relation) && item.options.orderby.is_empty() {
                    "j.rank, t.id".to_owned()
                } else {
                    lower_orderby(dialect, target, &item.options.orderby, &mut params)?
                };
                params.push(Sql::Integer(i64::try_from(skip).unwrap_or(i64::MAX)));
                let skip_index = params.len();
                params.push(Sql::Integer(
                    i64::try_from(skip.saturating_add(top).saturating_add(1)).unwrap_or(i64::MAX),
                ));
                let sql = format!(
                    "SELECT * FROM (SELECT {parent_key} AS parent_id, {}, \
                     ROW_NUMBER() OVER (PARTITION BY {parent_key} ORDER BY {order}) AS rn \
                     FROM {source} WHERE {where_clause}) ranked WHERE rn > ?{skip_index} AND rn <= ?{} \
                     ORDER BY parent_id, rn",
                    select_columns(target),
                    skip_index + 1
                );
                // parent_id, the entity's columns, rn.
                let rn_index =
                    2 + crate::columns::columns_of(target).iter().map(|c| c.len()).sum::<usize>();
                self.conn.query_each(&sql, &params_of(&params), |row| {
                    let parent: i64 = row.get(0)?;
                    let rn: i64 = row.get(rn_index)?;
                    if rn as u64 > skip + top {
                        has_more.insert(parent, skip + top);
                    } else {
                        children.push((parent, entity_from_row(target, row, 1)?));
                    }
                    Ok(())
                })?;
            } else {
                let sql = format!(
                    "SELECT {parent_key} AS parent_id, {} FROM {source} WHERE {where_clause}",
                    select_columns(target)
                );
                self.conn.query_each(&sql, &params_of(&params), |row| {
                    children.push((row.get(0)?, entity_from_row(target, row, 1)?));
                    Ok(())
                })?;
            }
            let counts = if relation.many && item.options.count == Some(true) {
                self.expanded_counts(&source, &parent_key, &where_clause, &params[..where_params])?
            } else {
                HashMap::new()
            };
            // Expand the next level for all children of this level at once.
            let mut flat: Vec<Entity> = Vec::with_capacity(children.len());
            let mut parents: Vec<i64> = Vec::with_capacity(children.len());
            for (parent, child) in children {
                parents.push(parent);
                flat.push(child);
            }
            self.expand(target, &mut flat, &item.options.expand, depth + 1)?;
            let mut by_parent: HashMap<i64, Vec<Entity>> = HashMap::new();
            for (parent, child) in parents.into_iter().zip(flat) {
                by_parent.entry(parent).or_default().push(child);
            }
            for entity in items.iter_mut() {
                let mut related = by_parent.remove(&entity.id).unwrap_or_default();
                let content = if relation.many {
                    ExpandedContent::Many(Page {
                        items: related,
                        count: if item.options.count == Some(true) {
                            Some(counts.get(&entity.id).copied().unwrap_or(0))
                        } else {
                            None
                        },
                        next_skip: has_more.get(&entity.id).copied(),
                        next_after: None,
                    })
                } else {
                    ExpandedContent::One(related.pop().map(Box::new))
                };
                entity.expanded.push(Expanded { relation, content });
            }
        }
        Ok(())
    }

    fn expanded_counts(
        &self,
        source: &str,
        parent_key: &str,
        where_clause: &str,
        params: &[Sql],
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let sql =
            format!("SELECT {parent_key}, COUNT(*) FROM {source} WHERE {where_clause} GROUP BY 1");
        let mut counts = HashMap::new();
        self.conn.query_each(&sql, &params_of(params), |row| {
            counts.insert(row.get(0)?, row.get(1)?);
            Ok(())
        })?;
        Ok(counts)
    }

    /// Ids of the entities related to `parent_id` through `relation` (for `$ref` and links).
    pub fn related_ids(
        &self,
        relation: &Relation,
        parent: EntityType,
        parent_id: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let (source, parent_key) = relation_source(relation, parent);
        query_ids(
            self.conn,
            &format!("SELECT t.id FROM {source} WHERE {parent_key} = ?1 ORDER BY t.id"),
            &[Sql::Integer(parent_id)],
        )
    }
}

/// Checks path steps against the data: every id exists and is related as the path says.
pub(crate) fn resolve(conn: Conn<'_>, steps: &[Step]) -> Result<Resolved, StoreError> {
    let mut current: Option<Resolved> = None;
    for step in steps {
        let next = match (current, step.via) {
            (None, _) => match step.id {
                Some(id) => {
                    require_exists(conn, step.ty, id)?;
                    Resolved::Entity { ty: step.ty, id }
                }
                None => Resolved::Collection { ty: step.ty, scope: Scope::All },
            },
            (Some(Resolved::Entity { ty: parent, id: parent_id }), Some(relation)) => {
                let (source, parent_key) = relation_source(relation, parent);
                if relation.many {
                    match step.id {
                        Some(id) => {
                            let sql = format!(
                                "SELECT t.id FROM {source} WHERE {parent_key} = ?1 AND t.id = ?2"
                            );
                            let found = query_ids(
                                conn,
                                &sql,
                                &[Sql::Integer(parent_id), Sql::Integer(id)],
                            )?;
                            if found.is_empty() {
                                return Err(StoreError::NotFound(format!(
                                    "no {} with id {id} related to {parent}({parent_id})",
                                    step.ty
                                )));
                            }
                            Resolved::Entity { ty: step.ty, id }
                        }
                        None => Resolved::Collection {
                            ty: step.ty,
                            scope: Scope::Related { relation, parent_id },
                        },
                    }
                } else {
                    let sql = format!("SELECT t.id FROM {source} WHERE {parent_key} = ?1");
                    let found = query_ids(conn, &sql, &[Sql::Integer(parent_id)])?;
                    match found.first() {
                        Some(id) => Resolved::Entity { ty: step.ty, id: *id },
                        None => {
                            return Err(StoreError::NotFound(format!(
                                "{parent}({parent_id}) has no {}",
                                relation.name
                            )));
                        }
                    }
                }
            }
            _ => return Err(StoreError::NotFound("the path does not address an entity".into())),
        };
        current = Some(next);
    }
    current.ok_or_else(|| StoreError::NotFound("empty path".into()))
}

fn require_exists(conn: Conn<'_>, ty: EntityType, id: i64) -> Result<(), StoreError> {
    if entity_exists(conn, ty, id)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("no {ty} with id {id}")))
    }
}

/// A sort key usable for keyset paging: a non-null column of the entity itself.
#[derive(Debug, Clone)]
pub(crate) struct KeysetKey {
    /// `t.column`, or `t.id` for the final tiebreak.
    column: String,
    descending: bool,
    /// The property the key reads, `None` for the id.
    property: Option<usize>,
}

/// The keys of an order that keyset paging can continue: plain non-null columns, with the id
/// appended in the direction of the last key (so that a single composite index serves it).
pub(crate) fn keyset_keys(
    ty: EntityType,
    orderby: &[stela_query::OrderBy],
) -> Option<Vec<KeysetKey>> {
    let mut keys = Vec::new();
    for key in orderby {
        let stela_query::ExprKind::Path(segments) = &key.expr.kind else { return None };
        let [name] = segments.as_slice() else { return None };
        if name == "id" || name == "@iot.id" {
            keys.push(KeysetKey {
                column: "t.id".into(),
                descending: key.descending,
                property: None,
            });
            return Some(keys);
        }
        let index = ty.property_index(name)?;
        let property = &ty.properties()[index];
        let column = match (ty, property.kind) {
            (EntityType::Observation, stela_model::PropertyKind::InstantOrInterval) => {
                format!("t.{}_start", property.column)
            }
            (_, stela_model::PropertyKind::Text | stela_model::PropertyKind::Instant)
                if property.required =>
            {
                format!("t.{}", property.column)
            }
            _ => return None,
        };
        keys.push(KeysetKey { column, descending: key.descending, property: Some(index) });
    }
    let descending = keys.last().is_some_and(|k| k.descending);
    keys.push(KeysetKey { column: "t.id".into(), descending, property: None });
    Some(keys)
}

fn keyset_order(keys: &[KeysetKey]) -> String {
    keys.iter()
        .map(|k| if k.descending { format!("{} DESC", k.column) } else { k.column.clone() })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `WHERE` condition selecting the rows after the given key values.
fn keyset_condition(
    keys: &[KeysetKey],
    after: &[serde_json::Value],
    params: &mut Vec<Sql>,
) -> Result<String, StoreError> {
    if after.len() != keys.len() {
        return Err(StoreError::query("$skiptoken", "the $skiptoken does not fit this $orderby"));
    }
    let mut placeholders = Vec::new();
    for value in after {
        let sql = match value {
            serde_json::Value::Number(n) if n.is_i64() => {
                Sql::Integer(n.as_i64().unwrap_or_default())
            }
            serde_json::Value::String(s) => Sql::Text(s.clone()),
            _ => return Err(StoreError::query("$skiptoken", "malformed $skiptoken")),
        };
        params.push(sql);
        placeholders.push(format!("?{}", params.len()));
    }
    let uniform = keys.iter().all(|k| k.descending == keys[0].descending);
    if uniform {
        let columns: Vec<&str> = keys.iter().map(|k| k.column.as_str()).collect();
        let op = if keys[0].descending { "<" } else { ">" };
        return Ok(format!("({}) {op} ({})", columns.join(", "), placeholders.join(", ")));
    }
    // Mixed directions: (k1 > v1) OR (k1 = v1 AND k2 < v2) OR …
    let mut alternatives = Vec::new();
    for i in 0..keys.len() {
        let mut parts: Vec<String> =
            (0..i).map(|j| format!("{} = {}", keys[j].column, placeholders[j])).collect();
        let op = if keys[i].descending { "<" } else { ">" };
        parts.push(format!("{} {op} {}", keys[i].column, placeholders[i]));
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    Ok(format!("({})", alternatives.join(" OR ")))
}

/// The key values of an entity, for the next page's `$skiptoken`.
fn keyset_values(keys: &[KeysetKey], entity: &Entity) -> Vec<serde_json::Value> {
    keys.iter()
        .map(|key| match key.property.and_then(|i| entity.values.get(i).cloned().flatten()) {
            None => serde_json::Value::from(entity.id),
            Some(stela_model::Value::Time(t)) => serde_json::Value::from(t.start()),
            Some(stela_model::Value::Text(text)) => serde_json::Value::String(text),
            Some(_) => serde_json::Value::Null,
        })
        .collect()
}

/// The SQL statements of one collection read.
#[derive(Debug)]
struct CollectionSql {
    count: Option<(String, Vec<Sql>)>,
    /// `None` when `$top=0`.
    page: Option<(String, Vec<Sql>)>,
    keyset: Option<Vec<KeysetKey>>,
    top: u64,
    skip: u64,
}

fn collection_sql(
    dialect: Dialect,
    ty: EntityType,
    scope: Scope,
    options: &QueryOptions,
    limits: ReadLimits,
    after: Option<&[serde_json::Value]>,
) -> Result<CollectionSql, StoreError> {
    check_select(ty, options)?;
    let mut params = Vec::new();
    let (source, mut conditions) = match scope {
        Scope::All => (format!("{} t", ty.table()), Vec::new()),
        Scope::Related { relation, parent_id } => {
            let (source, parent_key) = relation_source(relation, parent_of(relation));
            params.push(Sql::Integer(parent_id));
            (source, vec![format!("{parent_key} = ?{}", params.len())])
        }
    };
    if let Some(filter) = &options.filter {
        conditions.push(lower_filter(dialect, ty, filter, &mut params)?);
    }
    let count = if options.count == Some(true) {
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        Some((format!("SELECT COUNT(*) FROM {source}{where_clause}"), params.clone()))
    } else {
        None
    };
    let ranked = matches!(scope, Scope::Related { relation, .. } if is_ranked(relation));
    let keyset =
        if ranked && options.orderby.is_empty() { None } else { keyset_keys(ty, &options.orderby) };
    let order = match &keyset {
        Some(keys) => keyset_order(keys),
        // A MultiDatastream's ObservedProperties come in the order of its result arrays.
        None if ranked && options.orderby.is_empty() => "j.rank, t.id".to_owned(),
        None => lower_orderby(dialect, ty, &options.orderby, &mut params)?,
    };
    if let Some(after) = after {
        let keys = keyset.as_ref().ok_or_else(|| {
            StoreError::query(
                "$skiptoken",
                "the $skiptoken does not fit this $orderby; start again from the first page",
            )
        })?;
        conditions.push(keyset_condition(keys, after, &mut params)?);
    }
    let top = options.top.unwrap_or(limits.default_top).min(limits.max_top);
    let skip = options.skip.unwrap_or(0);
    let page = if top == 0 {
        None
    } else {
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        params.push(Sql::Integer(i64::try_from(top + 1).unwrap_or(i64::MAX)));
        let limit_index = params.len();
        params.push(Sql::Integer(i64::try_from(skip).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {} FROM {source}{where_clause} ORDER BY {order} LIMIT ?{limit_index} OFFSET ?{}",
            select_columns(ty),
            limit_index + 1
        );
        Some((sql, params))
    };
    Ok(CollectionSql { count, page, keyset, top, skip })
}

/// Rejects `$select` names that are neither a property nor a relation of `ty`.
fn check_select(ty: EntityType, options: &QueryOptions) -> Result<(), StoreError> {
    for item in options.select.iter().flatten() {
        let name = item.path.first().map(String::as_str).unwrap_or_default();
        let known = name == "id"
            || name == "@iot.id"
            || ty.property(name).is_some()
            || ty.relation(name).is_some();
        if !known || item.path.len() > 1 {
            return Err(StoreError::query(
                "$select",
                format!("{ty} has no property or relation '{}'", item.path.join("/")),
            ));
        }
    }
    Ok(())
}

pub(crate) fn entity_exists(conn: Conn<'_>, ty: EntityType, id: i64) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 FROM {} WHERE id = ?1", ty.table());
    Ok(conn.query_opt(&sql, params![id], |_| Ok(()))?.is_some())
}

pub(crate) fn query_ids(conn: Conn<'_>, sql: &str, params: &[Sql]) -> Result<Vec<i64>, StoreError> {
    conn.query_map(sql, &params_of(params), |row| row.get::<i64>(0))
}
