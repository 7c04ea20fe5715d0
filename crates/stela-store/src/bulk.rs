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
    /// Where its log entry's values are in the batch's [`LogInputs`] (`None` when the log is
    /// off).
    log: Option<LogSpan>,
    parent: (EntityType, i64),
    feature: i64,
}

/// The values and links the log entries of a batch's Observations show, checked to be
/// loggable, in one buffer for the batch: a buffer per Observation, each alive until its run
/// was inserted, cost the writer's allocator more than the rendering they let it hand off.
#[derive(Debug, Default)]
struct LogInputs {
    logged: Vec<(&'static stela_model::Property, stela_model::Value)>,
    links: Vec<(&'static str, i64)>,
    /// The batch's items: room for all of them is made when the first arrives (grown by
    /// doubling, the buffers were copied again and again on the writer).
    items: usize,
}

impl LogInputs {
    fn for_items(items: usize) -> LogInputs {
        LogInputs { items, ..LogInputs::default() }
    }

    /// Adds one Observation's values and links; where they are.
    fn push(
        &mut self,
        logged: Vec<(&'static stela_model::Property, stela_model::Value)>,
        links: impl Iterator<Item = (&'static str, i64)>,
    ) -> LogSpan {
        if self.logged.capacity() == 0 {
            // An Observation links to its Datastream (or MultiDatastream) and Feature.
            self.logged.reserve(logged.len() * self.items);
            self.links.reserve(2 * self.items);
        }
        let (from, links_from) = (self.logged.len(), self.links.len());
        self.logged.extend(logged);
        self.links.extend(links);
        LogSpan { logged: from..self.logged.len(), links: links_from..self.links.len() }
    }
}

/// Where one Observation's values and links are in [`LogInputs`].
#[derive(Debug, Clone)]
struct LogSpan {
    logged: std::ops::Range<usize>,
    links: std::ops::Range<usize>,
}

/// Runs of at least this many rows have their log entries rendered on a thread of their own
/// while the writer inserts the rows (rendering was a fifth of the writer's time on a bulk
/// insert; a thread costs about as much as rendering twenty).
const PARALLEL_RENDERING: usize = 64;

/// What is rendered of an Observation's log entry before its row is written: the whole entry
/// when the id its row will get was known (see [`render_entries`]), its body otherwise.
enum RenderedEntry {
    Entry(String),
    Body(crate::ledger::BodyMembers),
}

/// [`RenderedEntry`], or why the values cannot be logged; `None` when the log is off.
type Rendered = Option<Result<RenderedEntry, StoreError>>;

/// Where a run's entries will be in the log, when known before its rows are written: the ids
/// the rows get, the envelope of their entries, the offset of the first row's change in the
/// transaction and, on SQLite, its log index.
#[derive(Debug, Clone)]
struct Foreseen {
    first_id: i64,
    envelope: stela_log::EntryEnvelope,
    first_change: usize,
    first_index: Option<u64>,
}

/// The log entries of `inputs` (`None` where the log is off), in order: each body, and when
/// the run's place is `foreseen`, the whole entry; with its log index also the entries joined
/// and compressed into bundles (one per tile they reach), which the writer then need not build.
fn render_entries(
    inputs: &LogInputs,
    spans: &[Option<LogSpan>],
    foreseen: Option<&Foreseen>,
) -> (Vec<Rendered>, Vec<crate::ledger::PackedSegment>) {
    let ty = EntityType::Observation;
    // The members of each body in turn: rendered straight into the entry, no string per body.
    let mut members = String::with_capacity(256);
    let rendered: Vec<Rendered> = spans
        .iter()
        .enumerate()
        .map(|(k, span)| {
            let span = span.as_ref()?;
            let (Some(logged), Some(links)) =
                (inputs.logged.get(span.logged.clone()), inputs.links.get(span.links.clone()))
            else {
                return Some(Err(StoreError::Corrupt(
                    "the log's values of a row were lost".into(),
                )));
            };
            let logged = logged.iter().map(|(p, v)| (*p, v));
            let links = links.iter().copied();
            let Some(foreseen) = foreseen else {
                return Some(
                    crate::ledger::BodyMembers::new(ty, logged, links).map(RenderedEntry::Body),
                );
            };
            members.clear();
            let rendered =
                crate::ledger::BodyMembers::render(ty, logged, links, &mut members).map(|()| {
                    let id = foreseen.first_id + k as i64;
                    match foreseen.envelope.entity_entry(
                        Operation::Create,
                        ty.name(),
                        id,
                        id,
                        &members,
                    ) {
                        Ok(entry) => RenderedEntry::Entry(entry),
                        // The writer renders it again, and reports why it cannot be logged.
                        Err(_) => {
                            RenderedEntry::Body(crate::ledger::BodyMembers::from(members.clone()))
                        }
                    }
                });
            Some(rendered)
        })
        .collect();
    let entries: Option<Vec<&str>> = rendered
        .iter()
        .map(|rendered| match rendered {
            Some(Ok(RenderedEntry::Entry(entry))) => Some(entry.as_str()),
            _ => None,
        })
        .collect();
    let segments = match (foreseen, entries) {
        (Some(Foreseen { first_change, first_index: Some(first_index), .. }), Some(entries)) => {
            crate::ledger::PackedSegment::of(*first_change, *first_index, &entries)
        }
        _ => Vec::new(),
    };
    (rendered, segments)
}

/// The thread that renders the log entries of bulk inserts beside the writer (one for the
/// process, started on first use: a thread per insert cost more than it saved, in thread starts,
/// stack unmappings and their TLB shootdowns on the writer's core).
mod renderer {
    use std::sync::OnceLock;
    use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};

    use super::{Foreseen, LogInputs, LogSpan, Rendered, render_entries};
    use crate::ledger::PackedSegment;

    type Done = (LogInputs, (Vec<Rendered>, Vec<PackedSegment>));

    struct Job {
        inputs: LogInputs,
        spans: Vec<Option<LogSpan>>,
        foreseen: Option<Foreseen>,
        reply: SyncSender<Done>,
    }

    /// A job handed to the thread.
    pub(super) struct Started(Receiver<Done>);

    impl Started {
        /// Waits for the job: the inputs back and what was rendered; `None` if the thread died.
        pub(super) fn finish(self) -> Option<Done> {
            self.0.recv().ok()
        }
    }

    static THREAD: OnceLock<Option<std::sync::Mutex<Sender<Job>>>> = OnceLock::new();

    /// Hands `inputs` to the thread, to render the entries of `spans`; gives them back when
    /// there is no thread.
    pub(super) fn start(
        inputs: LogInputs,
        spans: Vec<Option<LogSpan>>,
        foreseen: Option<Foreseen>,
    ) -> Result<Started, LogInputs> {
        let thread = THREAD.get_or_init(|| {
            let (sender, jobs) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("stela-log-render".into())
                .spawn(move || {
                    for job in jobs {
                        let rendered =
                            render_entries(&job.inputs, &job.spans, job.foreseen.as_ref());
                        let _ = job.reply.send((job.inputs, rendered));
                    }
                })
                .ok()
                .map(|_| std::sync::Mutex::new(sender))
        });
        let Some(sender) = thread else { return Err(inputs) };
        let (reply, done) = sync_channel(1);
        let sender = sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match sender.send(Job { inputs, spans, foreseen, reply }) {
            Ok(()) => Ok(Started(done)),
            Err(failed) => Err(failed.0.inputs),
        }
    }
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
        let mut log = LogInputs::for_items(items.len());
        for (position, (input, implicit)) in items.iter().enumerate() {
            match self.plan_observation(position, input, *implicit, &mut widths, &mut log) {
                Ok(Some(plan)) => planned.push(plan),
                Ok(None) => {
                    // Keep ids in input order: what is planned goes in first.
                    let earlier = std::mem::take(&mut planned);
                    self.insert_planned(earlier, items, &mut results, &mut log);
                    results[position] = Some(self.isolated(|tx| tx.create(input, *implicit)));
                }
                Err(error) => results[position] = Some(Err(error)),
            }
        }
        self.insert_planned(planned, items, &mut results, &mut log);
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
        log: &mut LogInputs,
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
            Some(log.push(logged, links))
        };
        Ok(Some(Planned { position, columns, values, log, parent, feature }))
    }

    /// Inserts planned rows, runs of the same columns together.
    fn insert_planned(
        &mut self,
        planned: Vec<Planned>,
        items: &[BatchItem],
        results: &mut [Option<Result<i64, StoreError>>],
        log: &mut LogInputs,
    ) {
        let mut rest = planned;
        while !rest.is_empty() {
            let same = rest.iter().take_while(|p| p.columns == rest[0].columns).count();
            let later = rest.split_off(same);
            let run = std::mem::replace(&mut rest, later);
            if let Err(run) = self.insert_run(run, items, results, log) {
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
        log: &mut LogInputs,
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
        let spans = || run.iter().map(|p| p.log.clone()).collect::<Vec<Option<LogSpan>>>();
        let parallel = run.len() >= PARALLEL_RENDERING && run.iter().any(|p| p.log.is_some());
        // The ids the rows will get, when the database can say (SQLite's AUTOINCREMENT counter;
        // checked against the ids given below): the thread then renders whole entries.
        let first_id = if parallel {
            self.conn.next_autoincrement_id("observations").ok().flatten()
        } else {
            None
        };
        let first_change = self.pending.changes.len();
        let foreseen = match (first_id, &self.pending.envelope) {
            (Some(first_id), Some(envelope)) => Some(Foreseen {
                first_id,
                envelope: envelope.clone(),
                first_change,
                first_index: self.pending.log_first.map(|first| first + first_change as u64),
            }),
            _ => None,
        };
        // Rendered by the render thread while the rows go in; on the writer after the insert
        // when the run is short or the thread is not there.
        let foresaw = foreseen.is_some();
        let mut job = None;
        if parallel {
            match renderer::start(std::mem::take(log), spans(), foreseen) {
                Ok(started) => job = Some(started),
                Err(given) => *log = given,
            }
        }
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
        // The buffer comes back with what was rendered; only a failed thread keeps it, and
        // then the rows of this run (and later ones of the batch) fail alone.
        let rendered = job.and_then(|job| {
            let (inputs, rendered) = job.finish()?;
            *log = inputs;
            Some(rendered)
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
        let first = done.first().map(|(last, count)| last + 1 - *count as i64);
        // Whole entries only with the ids the rows got: one run of ids from the one foreseen.
        let as_foreseen = first.is_some()
            && first == first_id
            && done.windows(2).all(|pair| pair[1].0 - pair[1].1 as i64 == pair[0].0);
        // Rendered here when the run was short, or the rows got other ids than foreseen (then
        // the bodies alone). Were the values lost with a failed thread, each row fails alone.
        let (rendered, segments) = match rendered {
            Some(rendered) if as_foreseen || !foresaw => rendered,
            _ => render_entries(log, &spans(), None),
        };
        let ids = done.into_iter().flat_map(|(last, count)| (last + 1 - count as i64)..=last);
        let mut all_created = true;
        for ((plan, rendered), id) in run.into_iter().zip(rendered).zip(ids) {
            let position = plan.position;
            let (input, _) = &items[position];
            let created = self.created_observation(plan, rendered, input, id);
            all_created &= created.is_ok();
            results[position] = Some(created);
        }
        // The packed bundles hold exactly the run's entries only when each row got its entry
        // (`write_entries` checks their place and lengths again).
        if as_foreseen && all_created {
            self.pending.packed.extend(segments);
        }
        Ok(())
    }

    /// Records an inserted Observation: its change, its log entry, its Datastream's extent.
    fn created_observation(
        &mut self,
        plan: Planned,
        rendered: Rendered,
        input: &EntityInput,
        id: i64,
    ) -> Result<i64, StoreError> {
        let ty = EntityType::Observation;
        if let Some(rendered) = rendered {
            let entry = rendered.and_then(|rendered| match rendered {
                RenderedEntry::Entry(entry) => Ok(entry),
                RenderedEntry::Body(body) => {
                    crate::ledger::entry_text(Operation::Create, ty, id, &body, &self.pending)
                }
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
