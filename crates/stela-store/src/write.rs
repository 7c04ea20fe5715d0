//! Writing: inserts of entity graphs (deep insert), updates, deletes, and the server rules
//! of SensorThings that go with them.
//!
//! Server rules implemented here:
//! - an Observation without a FeatureOfInterest gets one generated from its Thing's Location,
//!   reused for later Observations while that Location is unchanged;
//! - linking Locations to a Thing creates a HistoricalLocation, and makes them the Thing's
//!   current Locations; a HistoricalLocation created by a client with the latest time of its
//!   Thing makes its Locations current, an older one does not;
//! - a Datastream's phenomenonTime, resultTime and observedArea follow its Observations. New
//!   Observations only widen the extents, accumulated in memory and written once per
//!   Datastream per transaction (no per-row trigger); updates and deletes recompute them.
//!
//! Deletes cascade through the foreign keys of the schema (the table of the standard);
//! deleting a Location also deletes its HistoricalLocations.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use geo::{ConvexHull, Coord, MultiPoint, Point};
use rusqlite::params;
use rusqlite::types::Value as Sql;
use serde_json::{Value as Json, json};
use stela_log::Operation;
use stela_model::Link;

/// The fixed observationType of a MultiDatastream.
const COMPLEX_OBSERVATION: &str =
    "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation";
use stela_model::{
    Entity, EntityInput, EntityType, LinkTarget, Micros, PropertyKind, Relation, TimeValue, Value,
};

use crate::StoreError;
use crate::columns::{column_names, to_sql};
use crate::db::params_of;
use crate::read::{entity_exists, entity_from_row, query_ids, select_columns};
use crate::sqlite::WriteTx;

/// What happened to an entity in a committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One entity changed by a transaction, reported to subscribers after the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub ty: EntityType,
    pub id: i64,
}

/// Pending widening of a Datastream's extents by new Observations.
#[derive(Debug, Default, Clone)]
pub(crate) struct Extent {
    phenomenon: Option<(Micros, Micros)>,
    result: Option<(Micros, Micros)>,
    features: BTreeSet<i64>,
}

/// The row of a new entity: see [`WriteTx::row_values`].
pub(crate) struct RowValues {
    pub(crate) columns: Vec<&'static str>,
    pub(crate) values: Vec<Sql>,
    pub(crate) logged: Vec<(&'static stela_model::Property, Value)>,
}

/// Work deferred to the end of a write transaction.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) changes: Vec<Change>,
    /// By Datastream or MultiDatastream.
    extents: BTreeMap<(EntityType, i64), Extent>,
    recompute: BTreeSet<(EntityType, i64)>,
    pub(crate) now: Micros,
    /// Set when the transaction is in a state that must not be committed.
    pub(crate) poisoned: bool,
    /// `now` as the log records it.
    pub(crate) committed_at: String,
    /// The parts the transaction's log entries share, rendered once (`None` before `now` is
    /// set, or when it is no RFC 3339 time: each entry then reports why).
    pub(crate) envelope: Option<stela_log::EntryEnvelope>,
    /// The log entries (canonical text) of the changes that wrote them, with the index of the
    /// change in `changes` (increasing), so that the log neither reads the entities back nor
    /// serialises twice.
    pub(crate) entries: Vec<(usize, String)>,
    /// Runs of those entries already joined and compressed as bundles (see
    /// [`crate::ledger::PackedSegment`]), in change order.
    pub(crate) packed: Vec<crate::ledger::PackedSegment>,
    /// The log index the transaction's first change gets, when known while it runs (SQLite:
    /// the write connection is the log's only appender).
    pub(crate) log_first: Option<u64>,
    /// What this transaction knows of the database without asking it; on SQLite carried
    /// over from the transactions before (see [`Known`]).
    pub(crate) known: Known,
    /// PostgreSQL: the next id of each sequence when the transaction began (see
    /// `Conn::next_ids`).
    pub(crate) next_ids: Option<Vec<i64>>,
    /// No log entries are rendered or appended: only for measuring what the log costs (see
    /// `SqliteStore::set_log_appending`).
    pub(crate) unlogged: bool,
}

/// Facts about the database that writes look up again and again (an MQTT batch checks and
/// looks up the same 300 Datastreams as the batch before): kept for a transaction and, on
/// SQLite, from one committed transaction to the next (`SqliteStore` keeps them beside the
/// write connection, the only writer of its file, as it keeps the log's right edge). On
/// PostgreSQL each transaction starts without them: other servers may write in between.
///
/// **Invariant:** every write that can make a fact false forgets it in the same transaction:
/// deletes forget every fact, updates, relinks and moves of a Thing forget the generated
/// Features and the covered positions, an undone savepoint forgets what it created, and a
/// transaction that does not commit is not carried over at all.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Entities known to exist (links checked once).
    pub(crate) exists: HashSet<(EntityType, i64)>,
    /// The Feature generated from the Location of a Datastream's or MultiDatastream's Thing.
    generated: HashMap<(EntityType, i64), i64>,
    /// Per Datastream or MultiDatastream, Features whose positions lie inside its stored
    /// observedArea: new Observations of them do not change the area.
    covered: HashMap<(EntityType, i64), HashSet<i64>>,
}

/// The most facts of each kind carried to the next transaction: a bound on memory (a
/// Datastream, a Feature or a check costs a few dozen bytes).
const MAX_CARRIED: usize = 65_536;

impl Known {
    /// Forgets what depends on Locations, Things, Features and extents (after an update, a
    /// delete, a move).
    fn forget_derived(&mut self) {
        self.generated.clear();
        self.covered.clear();
    }

    /// What the next transaction may reuse once this one has committed: Observations are
    /// never looked up again (they are not linked to), the rest is bounded.
    pub(crate) fn carry(&mut self) -> Known {
        let mut carried = std::mem::take(self);
        carried.exists.retain(|(ty, _)| *ty != EntityType::Observation);
        if carried.exists.len() > MAX_CARRIED {
            carried.exists.clear();
        }
        if carried.generated.len() > MAX_CARRIED || carried.covered.len() > MAX_CARRIED {
            carried.forget_derived();
        }
        carried
    }
}

fn widen(range: &mut Option<(Micros, Micros)>, start: Micros, end: Micros) {
    *range = Some(match *range {
        Some((s, e)) => (s.min(start), e.max(end)),
        None => (start, end),
    });
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(message.into())
}

impl WriteTx<'_> {
    /// Sets the server time used for defaults and HistoricalLocations in this transaction.
    pub fn set_now(&mut self, now: Micros) {
        self.pending.now = now;
        self.pending.committed_at = stela_model::format_instant(now);
        self.pending.envelope = stela_log::EntryEnvelope::new(&self.pending.committed_at, "").ok();
    }

    /// Runs `f` as one unit inside the transaction: when it fails, what it wrote is undone and
    /// the rest of the transaction goes on (one row of a bulk request failing alone).
    pub fn isolated<R, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, E> {
        self.conn.execute_batch("SAVEPOINT isolated")?;
        let changes = self.pending.changes.len();
        let extents = self.pending.extents.clone();
        let recompute = self.pending.recompute.clone();
        match f(self) {
            Ok(result) => {
                self.conn.execute_batch("RELEASE isolated")?;
                Ok(result)
            }
            Err(error) => {
                self.conn.execute_batch("ROLLBACK TO isolated; RELEASE isolated")?;
                for undone in self.pending.changes.drain(changes..) {
                    self.pending.known.exists.remove(&(undone.ty, undone.id));
                }
                self.conn.restore_ids(self.pending.next_ids.as_deref(), &self.pending.changes)?;
                self.pending.entries.retain(|(index, _)| *index < changes);
                self.pending
                    .packed
                    .retain(|segment| segment.first_change + segment.count <= changes);
                self.pending.known.forget_derived();
                self.pending.extents = extents;
                self.pending.recompute = recompute;
                Err(error)
            }
        }
    }

    /// Reads an entity inside the transaction (for responses and JSON Patch).
    pub fn entity(&self, ty: EntityType, id: i64) -> Result<Entity, StoreError> {
        let sql = format!("SELECT {} FROM {} t WHERE t.id = ?1", select_columns(ty), ty.table());
        self.conn
            .query_opt(&sql, params![id], |row| entity_from_row(ty, row, 0))?
            .ok_or_else(|| StoreError::NotFound(format!("no {ty} with id {id}")))
    }

    /// Checks path steps against the data (see [`crate::ReadTx::resolve`]).
    pub fn resolve(&mut self, steps: &[stela_model::Step]) -> Result<crate::Resolved, StoreError> {
        // `Datastreams(5)`, the parent of every MQTT create: checked once, then known.
        if let [step] = steps
            && let Some(id) = step.id
        {
            if self.pending.known.exists.contains(&(step.ty, id)) {
                return Ok(crate::Resolved::Entity { ty: step.ty, id });
            }
            let resolved = crate::read::resolve(self.conn, steps)?;
            self.pending.known.exists.insert((step.ty, id));
            return Ok(resolved);
        }
        crate::read::resolve(self.conn, steps)
    }

    /// Checks that an entity exists.
    pub fn exists(&self, ty: EntityType, id: i64) -> Result<bool, StoreError> {
        entity_exists(self.conn, ty, id)
    }

    /// Creates an entity and every new entity nested in it; returns its id.
    ///
    /// `implicit` links the new entity to an existing one by one of its own relations, as a POST
    /// to `Things(1)/Datastreams` links the new Datastream to Thing 1.
    pub fn create(
        &mut self,
        input: &EntityInput,
        implicit: Option<(&'static Relation, i64)>,
    ) -> Result<i64, StoreError> {
        self.insert(input, implicit, 0)
    }

    fn insert(
        &mut self,
        input: &EntityInput,
        implicit: Option<(&'static Relation, i64)>,
        depth: usize,
    ) -> Result<i64, StoreError> {
        let ty = input.ty;
        if depth > 64 {
            return Err(invalid("deep insert nested too deeply"));
        }
        // 1. To-one relations: the ids to store in this entity's row.
        let mut forward: BTreeMap<&'static str, (&'static Relation, i64)> = BTreeMap::new();
        if let Some((relation, id)) = implicit
            && let Link::Forward { column } = relation.link
        {
            self.require(relation.target, id)?;
            forward.insert(column, (relation, id));
        }
        for link in &input.links {
            let Link::Forward { column } = link.relation.link else { continue };
            for target in &link.targets {
                let id = match target {
                    LinkTarget::Existing(id) => {
                        self.require(link.relation.target, *id)?;
                        *id
                    }
                    LinkTarget::New(child) => self.insert(child, None, depth + 1)?,
                };
                if let Some((_, previous)) = forward.get(column)
                    && *previous != id
                {
                    return Err(invalid(format!(
                        "conflicting {} for the {ty}: {previous} and {id}",
                        link.relation.name
                    )));
                }
                forward.insert(column, (link.relation, id));
            }
        }
        crate::bulk::check_required_links(ty, |column| forward.contains_key(column))?;
        let parent = if ty == EntityType::Observation {
            let parent = crate::bulk::observation_parent(
                forward.get("datastream_id").map(|(_, d)| *d),
                forward.get("multi_datastream_id").map(|(_, m)| *m),
            )?;
            if parent.0 == EntityType::MultiDatastream {
                self.check_multi_result(parent.1, input.value("result"))?;
            }
            if !forward.contains_key("feature_id") {
                let feature = self.feature_from_location(parent)?;
                let relation = ty.relation("FeatureOfInterest").ok_or_else(|| invalid("model"))?;
                forward.insert("feature_id", (relation, feature));
            }
            Some(parent)
        } else {
            None
        };

        // 2. The row itself.
        let RowValues { mut columns, mut values, logged } = self.row_values(input)?;
        for (column, (_, id)) in &forward {
            columns.push(column);
            values.push(Sql::Integer(*id));
        }
        let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            ty.table(),
            columns.join(", "),
            placeholders.join(", ")
        );
        let id = self.conn.insert_id(&sql, &params_of(&values))?;
        let change_index = self.pending.changes.len();
        self.pending.changes.push(Change { kind: ChangeKind::Created, ty, id });
        self.pending.known.exists.insert((ty, id));
        let links = ty.relations().iter().filter_map(|relation| match relation.link {
            Link::Forward { column } => {
                forward.get(column).map(|(_, target)| (relation.name, *target))
            }
            _ => None,
        });
        if !self.pending.unlogged {
            let logged = logged.iter().map(|(p, v)| (*p, v));
            let body = crate::ledger::BodyMembers::new(ty, logged, links)?;
            let entry = crate::ledger::entry_text(Operation::Create, ty, id, &body, &self.pending)?;
            self.pending.entries.push((change_index, entry));
        }

        // 3. To-many relations: children pointing at this entity, and join rows.
        if let Some((relation, other)) = implicit {
            match relation.link {
                Link::Forward { .. } => {}
                Link::Reverse { column } => self.relink(relation, column, other, id)?,
                Link::Join { .. } => {
                    self.require(relation.target, other)?;
                    self.join(relation, id, other)?;
                }
            }
        }
        let mut linked_locations: Vec<i64> = Vec::new();
        let mut linked_things: Vec<i64> = Vec::new();
        for link in &input.links {
            let relation = link.relation;
            match relation.link {
                Link::Forward { .. } => {}
                Link::Reverse { column } => {
                    for target in &link.targets {
                        match target {
                            LinkTarget::Existing(other) => {
                                self.relink(relation, column, *other, id)?
                            }
                            LinkTarget::New(child) => {
                                self.insert(
                                    child,
                                    Some((relation.inverse_relation(), id)),
                                    depth + 1,
                                )?;
                            }
                        }
                    }
                }
                Link::Join { .. } => {
                    for target in &link.targets {
                        let other = match target {
                            LinkTarget::Existing(other) => {
                                self.require(relation.target, *other)?;
                                *other
                            }
                            LinkTarget::New(child) => self.insert(child, None, depth + 1)?,
                        };
                        match (ty, relation.name) {
                            (EntityType::Thing, "Locations") => linked_locations.push(other),
                            (EntityType::Location, "Things") => linked_things.push(other),
                            _ => self.join(relation, id, other)?,
                        }
                    }
                }
            }
        }

        // 4. Server rules.
        match ty {
            EntityType::Thing if !linked_locations.is_empty() => {
                self.move_thing(id, &linked_locations)?
            }
            EntityType::Location => {
                if let Some((relation, thing)) = implicit
                    && relation.name == "Things"
                {
                    // POST Things(1)/Locations: the new Location becomes the Thing's location.
                    self.conn.execute(
                        "DELETE FROM things_locations WHERE thing_id = ?1 AND location_id = ?2",
                        params![thing, id],
                    )?;
                    self.move_thing(thing, &[id])?;
                }
                for thing in linked_things {
                    self.move_thing(thing, &[id])?;
                }
            }
            EntityType::HistoricalLocation => self.apply_manual_historical_location(id)?,
            EntityType::Observation => {
                let feature = forward.get("feature_id").map(|(_, id)| *id).unwrap_or_default();
                if let Some(parent) = parent {
                    self.widen_extent(parent, feature, input)?;
                }
            }
            EntityType::MultiDatastream => self.check_multi_datastream(id)?,
            _ => {}
        }
        Ok(id)
    }

    /// The columns and values of the row of a new entity (its own properties, defaults
    /// filled in), and the values as the log records them.
    pub(crate) fn row_values(&self, input: &EntityInput) -> Result<RowValues, StoreError> {
        let ty = input.ty;
        let count = ty.properties().len();
        let mut columns: Vec<&'static str> = Vec::with_capacity(count + 4);
        let mut values: Vec<Sql> = Vec::with_capacity(count + 4);
        let mut logged: Vec<(&'static stela_model::Property, Value)> = Vec::with_capacity(count);
        let names = crate::columns::columns_of(ty);
        for (index, property) in ty.properties().iter().enumerate() {
            let given = input.values.iter().find(|(i, _)| *i == index).map(|(_, v)| v);
            let value = match (given, ty, property.name) {
                (Some(v), EntityType::MultiDatastream, "observationType") => {
                    if *v != Value::Text(COMPLEX_OBSERVATION.into()) {
                        return Err(invalid(format!(
                            "the observationType of a MultiDatastream is always {COMPLEX_OBSERVATION}"
                        )));
                    }
                    v.clone()
                }
                (None, EntityType::MultiDatastream, "observationType") => {
                    Value::Text(COMPLEX_OBSERVATION.into())
                }
                (Some(v), _, _) => v.clone(),
                (None, EntityType::Observation, "phenomenonTime") => {
                    Value::Time(TimeValue::Instant(self.pending.now))
                }
                (None, _, _) if property.server_maintained => continue,
                (None, _, _) => Value::Null,
            };
            columns.extend(names[index].iter().map(String::as_str));
            values.extend(to_sql(self.conn.dialect(), property, &value));
            logged.push((property, value));
        }
        Ok(RowValues { columns, values, logged })
    }

    /// The Datastream or MultiDatastream an Observation belongs to.
    fn observation_parents(&self, observation: i64) -> Result<Vec<(EntityType, i64)>, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> = self.conn.query_opt(
            "SELECT datastream_id, multi_datastream_id FROM observations WHERE id = ?1",
            params![observation],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let Some((datastream, multi)) = row else { return Ok(Vec::new()) };
        Ok(datastream
            .map(|d| (EntityType::Datastream, d))
            .into_iter()
            .chain(multi.map(|m| (EntityType::MultiDatastream, m)))
            .collect())
    }

    /// The number of ObservedProperties of a MultiDatastream.
    pub(crate) fn multi_width(&self, multi: i64) -> Result<usize, StoreError> {
        let count: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM multi_datastreams_observed_properties WHERE multi_datastream_id = ?1",
            params![multi],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// A MultiDatastream's arrays have one item per ObservedProperty.
    fn check_multi_datastream(&self, multi: i64) -> Result<(), StoreError> {
        let width = self.multi_width(multi)?;
        if width == 0 {
            return Err(invalid("a MultiDatastream needs at least one ObservedProperty"));
        }
        let (units, types): (String, String) = self.conn.query_row(
            "SELECT unit_of_measurements, multi_observation_data_types FROM multi_datastreams WHERE id = ?1",
            params![multi],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (name, text) in [("unitOfMeasurements", units), ("multiObservationDataTypes", types)] {
            let length =
                serde_json::from_str::<Json>(&text).ok().and_then(|j| j.as_array().map(Vec::len));
            if length != Some(width) {
                return Err(invalid(format!(
                    "'{name}' has {} items but the MultiDatastream has {width} ObservedProperties",
                    length.unwrap_or(0)
                )));
            }
        }
        Ok(())
    }

    /// The result of an Observation of a MultiDatastream is an array with one value per
    /// ObservedProperty.
    fn check_multi_result(&self, multi: i64, result: Option<&Value>) -> Result<(), StoreError> {
        crate::bulk::check_multi_result(self.multi_width(multi)?, result)
    }

    pub(crate) fn require(&mut self, ty: EntityType, id: i64) -> Result<(), StoreError> {
        if self.pending.known.exists.contains(&(ty, id)) {
            return Ok(());
        }
        if entity_exists(self.conn, ty, id)? {
            self.pending.known.exists.insert((ty, id));
            Ok(())
        } else {
            Err(invalid(format!("no {ty} with id {id} to link to")))
        }
    }

    /// Points an existing child (by a to-many relation of the parent) at `parent`.
    fn relink(
        &mut self,
        relation: &Relation,
        column: &str,
        child: i64,
        parent: i64,
    ) -> Result<(), StoreError> {
        // A Datastream moved to another Thing has another generated Feature.
        self.pending.known.forget_derived();
        let target = relation.target;
        let old_parents = if target == EntityType::Observation {
            self.observation_parents(child)?
        } else {
            Vec::new()
        };
        let sql = format!("UPDATE {} SET {column} = ?1 WHERE id = ?2", target.table());
        let updated = self.conn.execute(&sql, params![parent, child])?;
        if updated == 0 {
            return Err(invalid(format!("no {target} with id {child} to link to")));
        }
        self.pending.changes.push(Change { kind: ChangeKind::Updated, ty: target, id: child });
        if target == EntityType::Observation {
            self.pending.recompute.extend(old_parents);
            let new_parents = self.observation_parents(child)?;
            self.pending.recompute.extend(new_parents);
        }
        Ok(())
    }

    fn join(&mut self, relation: &Relation, this: i64, other: i64) -> Result<(), StoreError> {
        let Link::Join { table, this_column, target_column, ordered } = relation.link else {
            return Ok(());
        };
        let sql = if ordered {
            // The rank counts per MultiDatastream, whichever side the link is made from.
            let multi = if this_column == "multi_datastream_id" { "?1" } else { "?2" };
            format!(
                "INSERT INTO {table} ({this_column}, {target_column}, rank) VALUES (?1, ?2,
                 (SELECT COALESCE(MAX(rank), 0) + 1 FROM {table} WHERE multi_datastream_id = {multi}))
                 ON CONFLICT DO NOTHING"
            )
        } else {
            format!(
                "INSERT INTO {table} ({this_column}, {target_column}) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
            )
        };
        self.conn.execute(&sql, params![this, other])?;
        Ok(())
    }

    /// Makes `locations` the current Locations of `thing` and records a HistoricalLocation.
    fn move_thing(&mut self, thing: i64, locations: &[i64]) -> Result<(), StoreError> {
        self.pending.known.forget_derived();
        self.conn.execute("DELETE FROM things_locations WHERE thing_id = ?1", params![thing])?;
        for location in locations {
            self.conn.execute("INSERT INTO things_locations (thing_id, location_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params![thing, *location])?;
        }
        let historical = self.conn.insert_id(
            "INSERT INTO historical_locations (time, thing_id) VALUES (?1, ?2)",
            params![self.pending.now, thing],
        )?;
        for location in locations {
            self.conn.execute(
                "INSERT INTO locations_historical_locations (location_id, historical_location_id) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                params![*location, historical],
            )?;
        }
        self.pending.changes.push(Change {
            kind: ChangeKind::Created,
            ty: EntityType::HistoricalLocation,
            id: historical,
        });
        self.pending.changes.push(Change {
            kind: ChangeKind::Updated,
            ty: EntityType::Thing,
            id: thing,
        });
        Ok(())
    }

    /// A HistoricalLocation created by a client moves its Thing when it is the Thing's latest.
    fn apply_manual_historical_location(&mut self, id: i64) -> Result<(), StoreError> {
        let (thing, time): (i64, i64) = self.conn.query_row(
            "SELECT thing_id, time FROM historical_locations WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let newer: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM historical_locations WHERE thing_id = ?1 AND id <> ?2 AND time > ?3)",
            params![thing, id, time],
            |r| r.get(0),
        )?;
        if newer {
            return Ok(());
        }
        let locations = query_ids(
            self.conn,
            "SELECT location_id FROM locations_historical_locations WHERE historical_location_id = ?1",
            &[Sql::Integer(id)],
        )?;
        if locations.is_empty() {
            return Ok(());
        }
        self.pending.known.forget_derived();
        self.conn.execute("DELETE FROM things_locations WHERE thing_id = ?1", params![thing])?;
        for location in locations {
            self.conn.execute("INSERT INTO things_locations (thing_id, location_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params![thing, location])?;
        }
        self.pending.changes.push(Change {
            kind: ChangeKind::Updated,
            ty: EntityType::Thing,
            id: thing,
        });
        Ok(())
    }

    /// The FeatureOfInterest for an Observation that names none: generated from the current
    /// Location of the Datastream's Thing, or reused when generated from it before.
    pub(crate) fn feature_from_location(
        &mut self,
        parent: (EntityType, i64),
    ) -> Result<i64, StoreError> {
        if let Some(feature) = self.pending.known.generated.get(&parent) {
            return Ok(*feature);
        }
        let feature = self.find_or_generate_feature(parent)?;
        self.pending.known.generated.insert(parent, feature);
        Ok(feature)
    }

    fn find_or_generate_feature(&mut self, parent: (EntityType, i64)) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT l.id, l.name, l.description, l.encoding_type, l.location
             FROM {} d JOIN things_locations tl ON tl.thing_id = d.thing_id
             JOIN locations l ON l.id = tl.location_id
             WHERE d.id = ?1 ORDER BY l.id LIMIT 1",
            parent.0.table()
        );
        let location = self.conn.query_opt(&sql, params![parent.1], |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<String>(4)?,
            ))
        })?;
        let Some((location, name, description, encoding, geometry)) = location else {
            return Err(invalid(
                "the Observation has no FeatureOfInterest, and the Thing of its Datastream has no Location to generate one from",
            ));
        };
        let existing: Option<i64> = self.conn.query_opt(
            "SELECT id FROM features WHERE generated_from_location = ?1 ORDER BY id LIMIT 1",
            params![location],
            |r| r.get(0),
        )?;
        if let Some(feature) = existing {
            return Ok(feature);
        }
        let feature = self.conn.insert_id(
            "INSERT INTO features (name, description, encoding_type, feature, generated_from_location)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, description, encoding, geometry, location],
        )?;
        self.pending.changes.push(Change {
            kind: ChangeKind::Created,
            ty: EntityType::FeatureOfInterest,
            id: feature,
        });
        Ok(feature)
    }

    pub(crate) fn widen_extent(
        &mut self,
        datastream: (EntityType, i64),
        feature: i64,
        input: &EntityInput,
    ) -> Result<(), StoreError> {
        let phenomenon = match input.value("phenomenonTime") {
            Some(Value::Time(t)) => *t,
            _ => TimeValue::Instant(self.pending.now),
        };
        let extent = self.pending.extents.entry(datastream).or_default();
        widen(&mut extent.phenomenon, phenomenon.start(), phenomenon.end());
        if let Some(Value::Time(t)) = input.value("resultTime") {
            widen(&mut extent.result, t.start(), t.end());
        }
        extent.features.insert(feature);
        Ok(())
    }

    /// Updates an entity: the given properties (all of them with `replace`, as PUT does) and
    /// the given links to existing entities.
    pub fn update(
        &mut self,
        ty: EntityType,
        id: i64,
        input: &EntityInput,
        replace: bool,
    ) -> Result<(), StoreError> {
        // A Datastream's Thing, a Location's position, a Feature's geometry: what the
        // generated Features and the covered positions depend on may change.
        self.pending.known.forget_derived();
        if !entity_exists(self.conn, ty, id)? {
            return Err(StoreError::NotFound(format!("no {ty} with id {id}")));
        }
        let mut assignments: Vec<String> = Vec::new();
        let mut values: Vec<Sql> = Vec::new();
        for (index, property) in ty.properties().iter().enumerate() {
            if property.server_maintained {
                continue;
            }
            let given = input.values.iter().find(|(i, _)| *i == index).map(|(_, v)| v);
            let value = match given {
                Some(value) => value.clone(),
                None if replace
                    && ty == EntityType::Observation
                    && property.name == "phenomenonTime" =>
                {
                    Value::Time(TimeValue::Instant(self.pending.now))
                }
                None if replace => Value::Null,
                None => continue,
            };
            if property.required && value == Value::Null && property.kind != PropertyKind::Result {
                return Err(invalid(format!("'{}' of {ty} must not be null", property.name)));
            }
            for (column, sql) in
                column_names(property).iter().zip(to_sql(self.conn.dialect(), property, &value))
            {
                values.push(sql);
                assignments.push(format!("{column} = ?{}", values.len()));
            }
        }
        let old_parents =
            if ty == EntityType::Observation { self.observation_parents(id)? } else { Vec::new() };
        for link in &input.links {
            let relation = link.relation;
            for target in &link.targets {
                let LinkTarget::Existing(other) = target else {
                    return Err(invalid("related entities cannot be created in an update"));
                };
                self.require(relation.target, *other)?;
                match relation.link {
                    Link::Forward { column } => {
                        values.push(Sql::Integer(*other));
                        assignments.push(format!("{column} = ?{}", values.len()));
                    }
                    Link::Reverse { column } => self.relink(relation, column, *other, id)?,
                    Link::Join { .. } => {}
                }
            }
            match (ty, relation.name, &relation.link) {
                (EntityType::Thing, "Locations", _) => {
                    let locations: Vec<i64> = existing_ids(&link.targets);
                    self.move_thing(id, &locations)?;
                }
                (EntityType::Location, "Things", _) => {
                    for thing in existing_ids(&link.targets) {
                        self.move_thing(thing, &[id])?;
                    }
                }
                (_, _, Link::Join { .. }) => {
                    for other in existing_ids(&link.targets) {
                        self.join(relation, id, other)?;
                    }
                }
                _ => {}
            }
        }
        if !assignments.is_empty() {
            values.push(Sql::Integer(id));
            let sql = format!(
                "UPDATE {} SET {} WHERE id = ?{}",
                ty.table(),
                assignments.join(", "),
                values.len()
            );
            self.conn.execute(&sql, &params_of(&values))?;
        }
        match ty {
            EntityType::Observation => {
                self.pending.recompute.extend(old_parents);
                let parents = self.observation_parents(id)?;
                if let Some((EntityType::MultiDatastream, multi)) = parents.first().copied() {
                    let current = self.entity(EntityType::Observation, id)?;
                    self.check_multi_result(multi, current.value("result"))?;
                }
                self.pending.recompute.extend(parents);
            }
            EntityType::MultiDatastream => self.check_multi_datastream(id)?,
            EntityType::Location if input.value("location").is_some() => {
                // Features generated from the old position are no longer reused.
                self.conn.execute("UPDATE features SET generated_from_location = NULL WHERE generated_from_location = ?1", params![id])?;
            }
            EntityType::FeatureOfInterest if input.value("feature").is_some() => {
                let parents = self.parents_of_feature(id)?;
                self.pending.recompute.extend(parents);
            }
            _ => {}
        }
        // The body after the update, checked now so that a value the log cannot hold fails
        // this request alone.
        if !self.pending.unlogged {
            let entity = self.entity(ty, id)?;
            let body = crate::ledger::entity_body(self.conn, &entity)?;
            let entry = crate::ledger::entry_text(Operation::Update, ty, id, &body, &self.pending)?;
            self.pending.entries.push((self.pending.changes.len(), entry));
        }
        self.pending.changes.push(Change { kind: ChangeKind::Updated, ty, id });
        Ok(())
    }

    /// Deletes an entity and, through the schema's cascades, what depends on it.
    pub fn delete(&mut self, ty: EntityType, id: i64) -> Result<(), StoreError> {
        self.pending.known = Known::default();
        if !entity_exists(self.conn, ty, id)? {
            return Err(StoreError::NotFound(format!("no {ty} with id {id}")));
        }
        // Entities the cascade removes are deleted too, and each gets its own log entry, so
        // that the log accounts for every entity that ever existed.
        let cascade = self.cascade_of(ty, id)?;
        for (dependent_ty, dependent) in cascade {
            self.pending.changes.push(Change {
                kind: ChangeKind::Deleted,
                ty: dependent_ty,
                id: dependent,
            });
        }
        match ty {
            EntityType::Observation => {
                let parents = self.observation_parents(id)?;
                self.pending.recompute.extend(parents);
            }
            EntityType::FeatureOfInterest => {
                let parents = self.parents_of_feature(id)?;
                self.pending.recompute.extend(parents);
            }
            EntityType::ObservedProperty => {
                // A MultiDatastream cannot lose one of its ObservedProperties: it goes too.
                self.conn.execute(
                    "DELETE FROM multi_datastreams WHERE id IN
                     (SELECT multi_datastream_id FROM multi_datastreams_observed_properties WHERE observed_property_id = ?1)",
                    params![id],
                )?;
            }
            EntityType::Location => {
                self.conn.execute(
                    "DELETE FROM historical_locations WHERE id IN
                     (SELECT historical_location_id FROM locations_historical_locations WHERE location_id = ?1)",
                    params![id],
                )?;
            }
            _ => {}
        }
        let sql = format!("DELETE FROM {} WHERE id = ?1", ty.table());
        self.conn.execute(&sql, params![id])?;
        self.pending.changes.push(Change { kind: ChangeKind::Deleted, ty, id });
        Ok(())
    }

    /// Adds `parents` (Datastreams or MultiDatastreams) and, before them, their Observations.
    fn cascade_through(
        &self,
        parent_ty: EntityType,
        parents: Vec<i64>,
        cascade: &mut Vec<(EntityType, i64)>,
    ) -> Result<(), StoreError> {
        let sql = format!("SELECT id FROM observations WHERE {} = ?1", parent_column(parent_ty));
        for parent in &parents {
            let observations = query_ids(self.conn, &sql, &[Sql::Integer(*parent)])?;
            cascade.extend(observations.into_iter().map(|o| (EntityType::Observation, o)));
        }
        cascade.extend(parents.into_iter().map(|p| (parent_ty, p)));
        Ok(())
    }

    /// The entities deleting `ty(id)` removes with it, dependents first.
    fn cascade_of(&self, ty: EntityType, id: i64) -> Result<Vec<(EntityType, i64)>, StoreError> {
        let ids = |sql: &str| query_ids(self.conn, sql, &[Sql::Integer(id)]);
        let datastreams = match ty {
            EntityType::Thing => ids("SELECT id FROM datastreams WHERE thing_id = ?1")?,
            EntityType::Sensor => ids("SELECT id FROM datastreams WHERE sensor_id = ?1")?,
            EntityType::ObservedProperty => {
                ids("SELECT id FROM datastreams WHERE observed_property_id = ?1")?
            }
            _ => Vec::new(),
        };
        let mut cascade = Vec::new();
        self.cascade_through(EntityType::Datastream, datastreams, &mut cascade)?;
        let multis = match ty {
            EntityType::Thing => ids("SELECT id FROM multi_datastreams WHERE thing_id = ?1")?,
            EntityType::Sensor => ids("SELECT id FROM multi_datastreams WHERE sensor_id = ?1")?,
            EntityType::ObservedProperty => ids(
                "SELECT multi_datastream_id FROM multi_datastreams_observed_properties WHERE observed_property_id = ?1",
            )?,
            _ => Vec::new(),
        };
        self.cascade_through(EntityType::MultiDatastream, multis, &mut cascade)?;
        let (dependent_ty, sql) = match ty {
            EntityType::Thing => (
                EntityType::HistoricalLocation,
                "SELECT id FROM historical_locations WHERE thing_id = ?1",
            ),
            EntityType::Location => (
                EntityType::HistoricalLocation,
                "SELECT historical_location_id FROM locations_historical_locations WHERE location_id = ?1",
            ),
            EntityType::Datastream => {
                (EntityType::Observation, "SELECT id FROM observations WHERE datastream_id = ?1")
            }
            EntityType::FeatureOfInterest => {
                (EntityType::Observation, "SELECT id FROM observations WHERE feature_id = ?1")
            }
            EntityType::MultiDatastream => (
                EntityType::Observation,
                "SELECT id FROM observations WHERE multi_datastream_id = ?1",
            ),
            _ => return Ok(cascade),
        };
        cascade.extend(ids(sql)?.into_iter().map(|d| (dependent_ty, d)));
        Ok(cascade)
    }

    /// Writes the log entries of `changes`, from index `first` (the log's size).
    pub(crate) fn write_log_entries(
        &mut self,
        first: u64,
        changes: &[Change],
    ) -> Result<crate::ledger::NewEntries, StoreError> {
        let entries = std::mem::take(&mut self.pending.entries);
        crate::ledger::write_entries(self.conn, first, changes, &self.pending, entries, |ty, id| {
            self.entity(ty, id)
        })
    }

    /// Writes the deferred Datastream extents; called once before commit.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        let extents = std::mem::take(&mut self.pending.extents);
        for (datastream, extent) in extents {
            if self.pending.recompute.contains(&datastream) {
                continue;
            }
            let table = datastream.0.table();
            let (ps, pe) = extent.phenomenon.map_or((None, None), |(s, e)| (Some(s), Some(e)));
            let (rs, re) = extent.result.map_or((None, None), |(s, e)| (Some(s), Some(e)));
            // One statement: the widened times, and the observed area to widen next.
            let (min, max) = self.conn.dialect().min_max();
            let current: Option<Option<String>> = self.conn.query_opt(
                &format!(
                    "UPDATE {table} SET
                       phenomenon_time_start = {min}(COALESCE(phenomenon_time_start, ?2), COALESCE(?2, phenomenon_time_start)),
                       phenomenon_time_end = {max}(COALESCE(phenomenon_time_end, ?3), COALESCE(?3, phenomenon_time_end)),
                       result_time_start = {min}(COALESCE(result_time_start, ?4), COALESCE(?4, result_time_start)),
                       result_time_end = {max}(COALESCE(result_time_end, ?5), COALESCE(?5, result_time_end))
                     WHERE id = ?1
                     RETURNING observed_area"
                ),
                params![datastream.1, ps, pe, rs, re],
                |r| r.get(0),
            )?;
            let covered = self.pending.known.covered.get(&datastream);
            if covered.is_some_and(|covered| extent.features.iter().all(|f| covered.contains(f))) {
                // Positions checked against this very area before: it stays as it is.
                continue;
            }
            let mut points: Vec<Coord<f64>> = Vec::new();
            let mut area = None;
            if let Some(Some(text)) = current
                && let Ok(json) = serde_json::from_str::<Json>(&text)
            {
                collect_coordinates(&json, &mut points, 0);
                area = crate::spatial::parse_geometry(&text);
            }
            let before = points.len();
            for feature in &extent.features {
                self.feature_coordinates(*feature, &mut points)?;
            }
            // The hull changes only when a new position lies outside the current area (the
            // common case, Observations of the same features, costs no geometry work).
            let grows = match &area {
                Some(area) => points[before..]
                    .iter()
                    .any(|c| !geo::Intersects::intersects(area, &Point::from(*c))),
                None => points.len() > before,
            };
            if grows {
                self.store_observed_area(datastream, &points)?;
                // A new area: what lay inside the old one is checked again next time.
                self.pending.known.covered.remove(&datastream);
            } else {
                self.pending.known.covered.entry(datastream).or_default().extend(extent.features);
            }
        }
        let recompute = std::mem::take(&mut self.pending.recompute);
        for datastream in recompute {
            self.pending.known.covered.remove(&datastream);
            let table = datastream.0.table();
            let column = parent_column(datastream.0);
            self.conn.execute(
                &format!(
                    "UPDATE {table} SET
                       phenomenon_time_start = (SELECT MIN(phenomenon_time_start) FROM observations WHERE {column} = ?1),
                       phenomenon_time_end = (SELECT MAX(COALESCE(phenomenon_time_end, phenomenon_time_start)) FROM observations WHERE {column} = ?1),
                       result_time_start = (SELECT MIN(result_time) FROM observations WHERE {column} = ?1),
                       result_time_end = (SELECT MAX(result_time) FROM observations WHERE {column} = ?1)
                     WHERE id = ?1"
                ),
                params![datastream.1],
            )?;
            let features = query_ids(
                self.conn,
                &format!("SELECT DISTINCT feature_id FROM observations WHERE {column} = ?1"),
                &[Sql::Integer(datastream.1)],
            )?;
            let mut points = Vec::new();
            for feature in features {
                self.feature_coordinates(feature, &mut points)?;
            }
            self.store_observed_area(datastream, &points)?;
        }
        Ok(())
    }

    fn feature_coordinates(
        &self,
        feature: i64,
        points: &mut Vec<Coord<f64>>,
    ) -> Result<(), StoreError> {
        let text: Option<String> = self.conn.query_opt(
            "SELECT feature FROM features WHERE id = ?1",
            params![feature],
            |r| r.get(0),
        )?;
        if let Some(text) = text
            && let Ok(json) = serde_json::from_str::<Json>(&text)
        {
            collect_coordinates(&json, points, 0);
        }
        Ok(())
    }

    fn store_observed_area(
        &self,
        datastream: (EntityType, i64),
        points: &[Coord<f64>],
    ) -> Result<(), StoreError> {
        let area = observed_area(points).map(|json| json.to_string());
        let sql = format!("UPDATE {} SET observed_area = ?2 WHERE id = ?1", datastream.0.table());
        self.conn.execute(&sql, params![datastream.1, area])?;
        Ok(())
    }

    /// The Datastreams and MultiDatastreams with Observations of a feature.
    fn parents_of_feature(&self, feature: i64) -> Result<Vec<(EntityType, i64)>, StoreError> {
        let mut parents = Vec::new();
        for ty in [EntityType::Datastream, EntityType::MultiDatastream] {
            let sql = format!(
                "SELECT DISTINCT {0} FROM observations WHERE feature_id = ?1 AND {0} IS NOT NULL",
                parent_column(ty)
            );
            parents.extend(
                query_ids(self.conn, &sql, &[Sql::Integer(feature)])?
                    .into_iter()
                    .map(|id| (ty, id)),
            );
        }
        Ok(parents)
    }
}

/// The column of `observations` that points at a Datastream or a MultiDatastream.
fn parent_column(ty: EntityType) -> &'static str {
    if ty == EntityType::MultiDatastream { "multi_datastream_id" } else { "datastream_id" }
}

fn existing_ids(targets: &[LinkTarget]) -> Vec<i64> {
    targets
        .iter()
        .filter_map(|t| match t {
            LinkTarget::Existing(id) => Some(*id),
            LinkTarget::New(_) => None,
        })
        .collect()
}

/// Collects the positions of a GeoJSON geometry, feature or collection.
fn collect_coordinates(json: &Json, points: &mut Vec<Coord<f64>>, depth: usize) {
    if depth > 32 {
        return;
    }
    match json {
        Json::Array(items) => {
            if let [Json::Number(x), Json::Number(y), ..] = items.as_slice()
                && let (Some(x), Some(y)) = (x.as_f64(), y.as_f64())
            {
                points.push(Coord { x, y });
                return;
            }
            for item in items {
                collect_coordinates(item, points, depth + 1);
            }
        }
        Json::Object(object) => {
            for key in ["coordinates", "geometry", "geometries", "features"] {
                if let Some(inner) = object.get(key) {
                    collect_coordinates(inner, points, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// The convex hull of the positions as GeoJSON: a Point for one position, else a Polygon.
fn observed_area(points: &[Coord<f64>]) -> Option<Json> {
    let first = points.first()?;
    if points.iter().all(|p| p == first) {
        return Some(json!({"type": "Point", "coordinates": [first.x, first.y]}));
    }
    let hull =
        MultiPoint::from(points.iter().map(|c| Point::from(*c)).collect::<Vec<_>>()).convex_hull();
    let ring: Vec<Json> = hull.exterior().coords().map(|c| json!([c.x, c.y])).collect();
    Some(json!({"type": "Polygon", "coordinates": [ring]}))
}

impl Pending {
    /// The state of a transaction that starts with what an earlier one knew.
    pub(crate) fn knowing(known: Known) -> Pending {
        Pending { known, ..Pending::default() }
    }

    pub(crate) fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }
}
