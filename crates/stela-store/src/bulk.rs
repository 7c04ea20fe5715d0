//! Bulk creation of Observations: many rows per `INSERT`, no savepoint per row.
//!
//! ```text
//!   create_batch(items)
//!     ├─ plain Observation (links to existing entities only) ─► plan: every check that can
//!     │    refuse it (links exist, Datastream xor MultiDatastream, result width), its
//!     │    FeatureOfInterest, its row ─► refused: Err in its place, nothing written
//!     ├─ anything else (deep insert, other types) ─► WriteTx::create in a savepoint
//!     └─ runs of planned rows with the same columns ─► rows::insert_rows (no savepoint;
//!          if the database refuses the run, it is undone and its rows go one by one instead)
//!          ─► ids, change records, log entry texts, Datastream extents
//! ```
//!
//! The rules are those of `WriteTx::create` (write.rs); a row refused here is refused there
//! with the same message.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use rusqlite::types::Value as Sql;
use stela_log::Operation;
use stela_model::{EntityInput, EntityType, Link, LinkTarget, Relation, Value};

use crate::StoreError;
use crate::db::Dialect;
use crate::sqlite::WriteTx;
use crate::write::{Change, ChangeKind, RowValues};

/// An item to create: the entity, and the relation and entity a path links it to
/// (`Datastreams(5)/Observations`).
pub type BatchItem = (EntityInput, Option<(&'static Relation, i64)>);

/// A planned Observation row.
struct Planned {
    /// Position in the batch.
    position: usize,
    columns: Vec<&'static str>,
    values: Vec<Sql>,
    /// What its log entry's body is rendered from (`None` when the log is off).
    log: Option<LogInput>,
    parent: (EntityType, i64),
    feature: i64,
}

/// The values and links an Observation's log entry shows, checked to be loggable.
struct LogInput {
    logged: Vec<(&'static stela_model::Property, stela_model::Value)>,
    links: Vec<(&'static str, i64)>,
}

/// Runs of at least this many rows have their log entries' bodies rendered on a thread of their
/// own while the writer inserts the rows (rendering is a fifth of the writer's time on a bulk
/// insert; a thread costs about as much as rendering twenty).
const PARALLEL_RENDERING: usize = 64;

/// The bodies of the log entries of `inputs`, in order.
fn render_bodies(
    inputs: &[Option<LogInput>],
) -> Vec<Option<Result<crate::ledger::BodyMembers, StoreError>>> {
    inputs
        .iter()
        .map(|input| {
            input.as_ref().map(|input| {
                let logged = input.logged.iter().map(|(p, v)| (*p, v));
                let links = input.links.iter().copied();
                crate::ledger::BodyMembers::new(EntityType::Observation, logged, links)
            })
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(message.into())
}

impl WriteTx<'_> {
    /// Creates every item on its own: a refused item leaves nothing behind and gets its error
    /// in its place; the others are created. Results are in input order; ids increase in
    /// input order.
    pub fn create_batch(&mut self, items: &[BatchItem]) -> Vec<Result<i64, StoreError>> {
        let mut results: Vec<Option<Result<i64, StoreError>>> =
            std::iter::repeat_with(|| None).take(items.len()).collect();
        let mut widths: HashMap<i64, usize> = HashMap::new();
        let mut planned: Vec<Planned> = Vec::new();
        for (position, (input, implicit)) in items.iter().enumerate() {
            match self.plan_observation(position, input, *implicit, &mut widths) {
                Ok(Some(plan)) => planned.push(plan),
                Ok(None) => {
                    // Keep ids in input order: what is planned goes in first.
                    self.insert_planned(std::mem::take(&mut planned), items, &mut results);
                    results[position] = Some(self.isolated(|tx| tx.create(input, *implicit)));
                }
                Err(error) => results[position] = Some(Err(error)),
            }
        }
        self.insert_planned(planned, items, &mut results);
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Corrupt("a batch item was lost".into()))))
            .collect()
    }

    /// Checks a plain Observation and computes its row; `None` for anything the general path
    /// must create (another type, or new entities nested in it).
    fn plan_observation(
        &mut self,
        position: usize,
        input: &EntityInput,
        implicit: Option<(&'static Relation, i64)>,
        widths: &mut HashMap<i64, usize>,
    ) -> Result<Option<Planned>, StoreError> {
        let ty = input.ty;
        if ty != EntityType::Observation {
            return Ok(None);
        }
        let mut forward: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut pending_links: Vec<(&'static Relation, &'static str, i64)> = Vec::new();
        if let Some((relation, id)) = implicit {
            let Link::Forward { column } = relation.link else { return Ok(None) };
            pending_links.push((relation, column, id));
        }
        for link in &input.links {
            let Link::Forward { column } = link.relation.link else { return Ok(None) };
            for target in &link.targets {
                let LinkTarget::Existing(id) = target else { return Ok(None) };
                pending_links.push((link.relation, column, *id));
            }
        }
        for (relation, column, id) in pending_links {
            self.require(relation.target, id)?;
            if let Some(previous) = forward.get(column)
                && *previous != id
            {
                return Err(invalid(format!(
                    "conflicting {} for the {ty}: {previous} and {id}",
                    relation.name
                )));
            }
            forward.insert(column, id);
        }
        check_required_links(ty, |column| forward.contains_key(column))?;
        let parent = observation_parent(
            forward.get("datastream_id").copied(),
            forward.get("multi_datastream_id").copied(),
        )?;
        if parent.0 == EntityType::MultiDatastream {
            let width = match widths.get(&parent.1) {
                Some(width) => *width,
                None => {
                    let width = self.multi_width(parent.1)?;
                    widths.insert(parent.1, width);
                    width
                }
            };
            check_multi_result(width, input.value("result"))?;
        }
        let feature = match forward.get("feature_id") {
            Some(feature) => *feature,
            None => {
                let feature = self.feature_from_location(parent)?;
                forward.insert("feature_id", feature);
                feature
            }
        };
        let RowValues { mut columns, mut values, logged } = self.row_values(input)?;
        for (column, id) in &forward {
            columns.push(column);
            values.push(Sql::Integer(*id));
        }
        let links = ty.relations().iter().filter_map(|relation| match relation.link {
            Link::Forward { column } => forward.get(column).map(|id| (relation.name, *id)),
            _ => None,
        });
        let log = if self.pending.unlogged {
            None
        } else {
            // Refused now rather than after the insert, as the one-by-one path refuses it.
            crate::ledger::check_loggable(ty, logged.iter().map(|(p, v)| (*p, v)))?;
            Some(LogInput { logged, links: links.collect() })
        };
        Ok(Some(Planned { position, columns, values, log, parent, feature }))
    }

    /// Inserts planned rows, runs of the same columns together.
    fn insert_planned(
        &mut self,
        planned: Vec<Planned>,
        items: &[BatchItem],
        results: &mut [Option<Result<i64, StoreError>>],
    ) {
        let mut rest = planned;
        while !rest.is_empty() {
            let same = rest.iter().take_while(|p| p.columns == rest[0].columns).count();
            let later = rest.split_off(same);
            let run = std::mem::replace(&mut rest, later);
            if let Err(run) = self.insert_run(run, items, results) {
                // The database refused the run (it should not, after the checks): each row
                // on its own, so that only the failing ones fail.
                for plan in run {
                    let (input, implicit) = &items[plan.position];
                    results[plan.position] = Some(self.isolated(|tx| tx.create(input, *implicit)));
                }
            }
        }
    }

    /// One run of rows with the same columns; gives the run back when the database refuses it
    /// (nothing of it left written).
    fn insert_run(
        &mut self,
        mut run: Vec<Planned>,
        items: &[BatchItem],
        results: &mut [Option<Result<i64, StoreError>>],
    ) -> Result<(), Vec<Planned>> {
        let width = run[0].values.len();
        let columns = run[0].columns.join(", ");
        // Moved, not copied: a refused run is retried from its items, not from these.
        let values: Vec<Sql> = run.iter_mut().flat_map(|p| std::mem::take(&mut p.values)).collect();
        let mut done = Vec::new();
        // On SQLite no savepoint (it would copy every page the run touches into a
        // sub-journal): a failing statement inserts nothing, and the statements before it are
        // undone here. PostgreSQL aborts the whole transaction on a failing statement, so there
        // the run goes in a savepoint.
        let savepoint = self.conn.dialect() == Dialect::Postgres;
        let max_chunk = if !savepoint && scattered(&run) { 1 } else { crate::rows::MAX_CHUNK };
        let inputs: Vec<Option<LogInput>> = run.iter_mut().map(|p| p.log.take()).collect();
        let (inserted, bodies) = std::thread::scope(|scope| {
            // Rendered on the writer after the insert when no thread can be started.
            let renderer = (inputs.len() >= PARALLEL_RENDERING)
                .then(|| {
                    std::thread::Builder::new()
                        .name("stela-log-render".into())
                        .spawn_scoped(scope, || render_bodies(&inputs))
                        .ok()
                })
                .flatten();
            let inserted = (|| {
                if savepoint {
                    self.conn.execute_batch("SAVEPOINT bulk_run")?;
                }
                crate::rows::insert_rows_chunked(
                    self.conn,
                    "observations",
                    &columns,
                    width,
                    &values,
                    Some(&mut done),
                    max_chunk,
                )
            })();
            (inserted, renderer.and_then(|thread| thread.join().ok()))
        });
        if savepoint {
            let end = if inserted.is_ok() {
                "RELEASE bulk_run"
            } else {
                "ROLLBACK TO bulk_run; RELEASE bulk_run"
            };
            let ended = self.conn.execute_batch(end).and_then(|()| {
                if inserted.is_err() {
                    self.conn.restore_ids(self.pending.next_ids.as_deref(), &self.pending.changes)
                } else {
                    Ok(())
                }
            });
            if let Err(error) = ended {
                let message = format!("ending a bulk insert failed: {error}");
                for plan in &run {
                    results[plan.position] = Some(Err(StoreError::Corrupt(message.clone())));
                }
                self.pending.poisoned = true;
                return Ok(());
            }
            if inserted.is_err() {
                return Err(run);
            }
        }
        if inserted.is_err() {
            for (last, count) in done {
                let first = last + 1 - count as i64;
                let undone = self.conn.execute(
                    "DELETE FROM observations WHERE id >= ?1 AND id <= ?2",
                    params![first, last],
                );
                if let Err(error) = undone {
                    // The transaction cannot be trusted any more: every row of the run fails
                    // and the caller's transaction must not commit.
                    let message = format!("undoing a refused bulk insert failed: {error}");
                    for plan in &run {
                        results[plan.position] = Some(Err(StoreError::Corrupt(message.clone())));
                    }
                    self.pending.poisoned = true;
                    return Ok(());
                }
            }
            return Err(run);
        }
        // Rendered here when the run was short (or the thread could not finish).
        let bodies = bodies.unwrap_or_else(|| render_bodies(&inputs));
        let ids = done.into_iter().flat_map(|(last, count)| (last + 1 - count as i64)..=last);
        for ((plan, body), id) in run.into_iter().zip(bodies).zip(ids) {
            let position = plan.position;
            let (input, _) = &items[position];
            results[position] = Some(self.created_observation(plan, body, input, id));
        }
        Ok(())
    }

    /// Records an inserted Observation: its change, its log entry, its Datastream's extent.
    fn created_observation(
        &mut self,
        plan: Planned,
        body: Option<Result<crate::ledger::BodyMembers, StoreError>>,
        input: &EntityInput,
        id: i64,
    ) -> Result<i64, StoreError> {
        let ty = EntityType::Observation;
        if let Some(body) = body {
            let entry = body.and_then(|body| {
                crate::ledger::entry_text(Operation::Create, ty, id, &body, &self.pending)
            });
            match entry {
                Ok(entry) => self.pending.entries.push((self.pending.changes.len(), entry)),
                Err(error) => {
                    // A value the log cannot hold exactly fails this row alone.
                    self.conn.execute("DELETE FROM observations WHERE id = ?1", params![id])?;
                    return Err(error);
                }
            }
        }
        self.pending.changes.push(Change { kind: ChangeKind::Created, ty, id });
        self.pending.known.exists.insert((ty, id));
        self.widen_extent(plan.parent, plan.feature, input)?;
        Ok(id)
    }
}

/// Whether the rows of a run go to so many Datastreams that SQLite's statement journal of a
/// multi-row insert (a copy of each index page a statement changes; three per Datastream)
/// costs more than a statement per row (measured on MQTT batches spread over 300
/// Datastreams: one row per statement saves a tenth of the writer's time; `CreateObservations`,
/// one Datastream per request, is twice as fast with many rows per statement).
fn scattered(run: &[Planned]) -> bool {
    let rows = run.len().min(crate::rows::MAX_CHUNK);
    let parents: std::collections::HashSet<(EntityType, i64)> =
        run.iter().map(|plan| plan.parent).collect();
    parents.len() * 3 > rows
}

/// Every to-one relation a new entity of type `ty` cannot exist without is given (`has` says
/// whether a foreign-key column has a value).
pub(crate) fn check_required_links(
    ty: EntityType,
    has: impl Fn(&str) -> bool,
) -> Result<(), StoreError> {
    for relation in ty.relations() {
        if let Link::Forward { column } = relation.link
            && relation.required
            && !has(column)
        {
            return Err(invalid(format!(
                "a {ty} needs a {}: missing relation '{}'",
                relation.target, relation.name
            )));
        }
    }
    Ok(())
}

/// The Datastream or MultiDatastream of a new Observation, from its links: exactly one.
pub(crate) fn observation_parent(
    datastream: Option<i64>,
    multi_datastream: Option<i64>,
) -> Result<(EntityType, i64), StoreError> {
    match (datastream, multi_datastream) {
        (Some(d), None) => Ok((EntityType::Datastream, d)),
        (None, Some(m)) => Ok((EntityType::MultiDatastream, m)),
        (Some(_), Some(_)) => {
            Err(invalid("an Observation belongs to a Datastream or to a MultiDatastream, not both"))
        }
        (None, None) => Err(invalid(
            "an Observation needs a Datastream (or a MultiDatastream): missing relation 'Datastream'",
        )),
    }
}

/// The result of an Observation of a MultiDatastream is an array with one value per
/// ObservedProperty.
pub(crate) fn check_multi_result(width: usize, result: Option<&Value>) -> Result<(), StoreError> {
    match result {
        Some(Value::Json(serde_json::Value::Array(items))) if items.len() == width => Ok(()),
        Some(Value::Json(serde_json::Value::Array(items))) => Err(invalid(format!(
            "the result has {} values but the MultiDatastream has {width} ObservedProperties",
            items.len()
        ))),
        _ => Err(invalid(format!(
            "the result of an Observation of a MultiDatastream is an array of {width} values"
        ))),
    }
}
