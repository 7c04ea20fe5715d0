//! The verifiable log in the store: one entry per committed change, appended in the same
//! transaction as the change itself, and the perfect-subtree hashes of the Merkle tree.
//!
//! ```text
//!   WriteTx::flush ─► for each Change: entity JSON after the write (or {"@iot.id"} for a
//!                     delete) ─► LogEntry (RFC 8785 canonical JSON) ─► leaf hash
//!                 ─► Appender (a copy of the store's) ─► new perfect-subtree hashes
//!                 ─► INSERT log_entries, log_nodes          (same transaction)
//!   commit ok    ─► the copy replaces the store's Appender  (rollback: it is dropped)
//! ```
//!
//! Invariant: a change is never committed without its entry, an entry never without its
//! change. Entities removed by a cascade are covered by the entry of the delete that caused it.

use rusqlite::params;
use rusqlite::types::Value as Sql;
use stela_log::{Appender, Hash, HashReader, LogEntry, NodeId, Operation, jcs};
use stela_model::{Entity, EntityType, Link, TimeValue, Value, is_own_property, write_instant};

use crate::StoreError;
use crate::db::Conn;
use crate::write::{Change, ChangeKind};

/// Reads perfect-subtree hashes from what the store keeps: the entries (level 0, hashed on
/// read) and the stored nodes of the levels that are multiples of 8 (the levels of the hash
/// tiles above level 0). A node between those levels is folded from the at most 128 hashes of
/// the level below it that is a multiple of 8, all inside one tile.
///
/// Storing only the tile levels is what keeps the log append cheap: one stored node per 256
/// entries instead of one per entry and level.
pub(crate) struct NodeReader<'a> {
    pub(crate) conn: Conn<'a>,
}

/// Hashes per tile (C2SP tlog-tiles), and the levels a tile spans.
const TILE_WIDTH: u64 = 256;
const TILE_HEIGHT: u8 = 8;

/// Whether the log stores the hash of a node at `level` (rather than computing it).
pub(crate) fn stores_level(level: u8) -> bool {
    level > 0 && level.is_multiple_of(TILE_HEIGHT)
}

impl NodeReader<'_> {
    /// The hashes at `base` level (a multiple of 8) of one tile: the leaf hashes of 256
    /// entries, or 256 stored nodes; fewer at the right edge.
    fn tile_hashes(&self, base: u8, tile: u64) -> Result<Vec<Hash>, StoreError> {
        let start = i64::try_from(tile * TILE_WIDTH)
            .map_err(|_| StoreError::Corrupt("log node index".into()))?;
        let end = start.saturating_add(TILE_WIDTH as i64);
        let mut hashes = Vec::with_capacity(TILE_WIDTH as usize);
        if base == 0 {
            self.conn.query_each(
                "SELECT entry FROM log_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
                params![start, end],
                |row| {
                    let text: String = row.get(0)?;
                    hashes.push(stela_log::leaf_hash(text.as_bytes()));
                    Ok(())
                },
            )?;
        } else {
            self.conn.query_each(
                "SELECT hash FROM log_nodes WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
                params![i64::from(base), start, end],
                |row| {
                    let bytes: Vec<u8> = row.get(0)?;
                    let hash: Hash = bytes.as_slice().try_into().map_err(|_| {
                        StoreError::Corrupt(format!("a log node at level {base} is not 32 bytes"))
                    })?;
                    hashes.push(hash);
                    Ok(())
                },
            )?;
        }
        Ok(hashes)
    }
}

impl HashReader for NodeReader<'_> {
    type Error = StoreError;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        // Proofs and tiles ask for several nodes of the same tile: read each tile once.
        let mut tiles: std::collections::HashMap<(u8, u64), Vec<Hash>> =
            std::collections::HashMap::new();
        let mut hashes = Vec::with_capacity(ids.len());
        for id in ids {
            let base = id.level - id.level % TILE_HEIGHT;
            let height = id.level - base;
            let first = id
                .index
                .checked_shl(u32::from(height))
                .ok_or_else(|| StoreError::Corrupt("log node index".into()))?;
            let tile = first / TILE_WIDTH;
            let below = match tiles.entry((base, tile)) {
                std::collections::hash_map::Entry::Occupied(read) => read.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(self.tile_hashes(base, tile)?)
                }
            };
            let offset = (first % TILE_WIDTH) as usize;
            let span = 1usize << height;
            let Some(leaves) = below.get(offset..offset + span) else {
                return Err(StoreError::Corrupt(format!(
                    "log node ({}, {}) is missing",
                    id.level, id.index
                )));
            };
            hashes.push(fold_perfect(leaves));
        }
        Ok(hashes)
    }
}

/// The root of a perfect subtree from its hashes at one level (a power-of-two count).
fn fold_perfect(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|pair| stela_log::node_hash(&pair[0], &pair[1])).collect();
    }
    level[0]
}

/// Restores the appender from the stored tree.
pub(crate) fn load_appender(conn: Conn<'_>) -> Result<Appender, StoreError> {
    // The size from the primary key (no scan), the right edge from the stored nodes: the tree
    // is never recomputed on start.
    let size = log_size(conn)?;
    let ids = Appender::right_edge_ids(size);
    let edge = NodeReader { conn }.read_hashes(&ids)?;
    Appender::restore(size, edge).map_err(|e| StoreError::Corrupt(format!("log: {e}")))
}

/// The body of an entity as logged, `{"@iot.id": id, …}`, without its id: the canonical text
/// (RFC 8785) of its other members, sorted and comma-separated. The members are its properties
/// (as [`stela_model::own_properties_json`] has them) and the ids of the entities it links to
/// (`"Datastream":{"@iot.id":5}`).
///
/// Rendered straight from the values, without building a JSON object: every write logs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyMembers(String);

impl BodyMembers {
    /// Checks every value (a number the canonical form would round fails the write alone) and
    /// renders the members.
    pub(crate) fn new<'a>(
        ty: EntityType,
        values: impl IntoIterator<Item = (&'a stela_model::Property, &'a Value)>,
        links: impl IntoIterator<Item = (&'static str, i64)>,
    ) -> Result<BodyMembers, StoreError> {
        enum Member<'a> {
            Value(&'a Value),
            Link(i64),
        }
        let mut members: Vec<(&'static str, Member<'a>)> = values
            .into_iter()
            .filter(|(property, value)| is_own_property(property, value))
            .map(|(property, value)| (property.name, Member::Value(value)))
            .collect();
        members.extend(links.into_iter().map(|(name, id)| (name, Member::Link(id))));
        // Names are ASCII: byte order is the UTF-16 order of RFC 8785.
        members.sort_unstable_by_key(|(name, _)| *name);
        let mut out = String::with_capacity(192);
        for (index, (name, member)) in members.into_iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            jcs::write_string(name, &mut out);
            out.push(':');
            match member {
                Member::Link(id) => {
                    out.push_str("{\"@iot.id\":");
                    out.push_str(&id.to_string());
                    out.push('}');
                }
                Member::Value(Value::Null) => out.push_str("null"),
                Member::Value(Value::Text(text)) => jcs::write_string(text, &mut out),
                Member::Value(Value::Json(json)) => {
                    stela_log::check_body_member(name, json).map_err(|e| unloggable(ty, e))?;
                    jcs::write_canonical(json, &mut out);
                }
                // Digits, '-', ':', '.', '+', 'T', 'Z' and '/': nothing to escape.
                Member::Value(Value::Time(time)) => {
                    out.push('"');
                    match time {
                        TimeValue::Instant(t) => write_instant(*t, &mut out),
                        TimeValue::Interval(start, end) => {
                            write_instant(*start, &mut out);
                            out.push('/');
                            write_instant(*end, &mut out);
                        }
                    }
                    out.push('"');
                }
            }
        }
        Ok(BodyMembers(out))
    }

    /// The whole body of entity `id`, in canonical form.
    pub(crate) fn body(&self, id: i64) -> String {
        if self.0.is_empty() {
            format!("{{\"@iot.id\":{id}}}")
        } else {
            format!("{{\"@iot.id\":{id},{}}}", self.0)
        }
    }
}

/// The logged body of an entity read from the store (see [`BodyMembers`]).
pub(crate) fn entity_body(conn: Conn<'_>, entity: &Entity) -> Result<BodyMembers, StoreError> {
    let values = entity
        .ty
        .properties()
        .iter()
        .zip(&entity.values)
        .filter_map(|(p, v)| v.as_ref().map(|v| (p, v)));
    let mut links = Vec::new();
    for relation in entity.ty.relations() {
        if let Link::Forward { column } = relation.link {
            let sql = format!("SELECT {column} FROM {} WHERE id = ?1", entity.ty.table());
            let target: Option<i64> =
                conn.query_opt(&sql, params![entity.id], |r| r.get(0))?.flatten();
            if let Some(target) = target {
                links.push((relation.name, target));
            }
        }
    }
    BodyMembers::new(entity.ty, values, links)
}

/// The canonical text of the log entry of a change, written when the change is made (so that
/// the append does not serialise again).
pub(crate) fn entry_text(
    op: Operation,
    ty: EntityType,
    id: i64,
    body: &BodyMembers,
    committed_at: &str,
) -> Result<String, StoreError> {
    stela_log::canonical_entity_entry(op, ty.name(), id, id, &body.0, committed_at, "")
        .map_err(|e| unloggable(ty, e))
}

fn unloggable(ty: EntityType, error: stela_log::EntryError) -> StoreError {
    StoreError::Invalid(format!("the {ty} cannot be logged exactly: {error}"))
}

/// Appends one entry per change to the log; returns the appender after the append.
pub(crate) fn append_changes(
    conn: Conn<'_>,
    appender: &Appender,
    changes: &[Change],
    committed_at: &str,
    entries: Vec<(usize, String)>,
    read_entity: impl Fn(EntityType, i64) -> Result<Entity, StoreError>,
) -> Result<Appender, StoreError> {
    let mut next = appender.clone();
    if changes.is_empty() {
        return Ok(next);
    }
    // In the order of the changes, as they were written.
    let mut entries = entries.into_iter().peekable();
    let mut leaves = Vec::with_capacity(changes.len());
    let mut rows: Vec<Sql> = Vec::with_capacity(changes.len() * 4);
    for (offset, change) in changes.iter().enumerate() {
        let given = entries.next_if(|(index, _)| *index == offset).map(|(_, text)| text);
        let text = match (change.kind, given) {
            // Entries written by the change itself.
            (_, Some(text)) => text,
            (ChangeKind::Deleted, None) => {
                LogEntry::delete(change.ty.name(), change.id, committed_at, "")
                    .to_canonical_json()
                    .map_err(|e| StoreError::Corrupt(format!("log entry: {e}")))?
            }
            // Re-linked children and moved Things are read back.
            (kind, None) => {
                let body = entity_body(conn, &read_entity(change.ty, change.id)?)?;
                let op =
                    if kind == ChangeKind::Created { Operation::Create } else { Operation::Update };
                entry_text(op, change.ty, change.id, &body, committed_at)?
            }
        };
        leaves.push(stela_log::leaf_hash(text.as_bytes()));
        let index = i64::try_from(appender.size() + offset as u64).unwrap_or(i64::MAX);
        rows.extend([
            Sql::Integer(index),
            Sql::Text(change.ty.name().to_owned()),
            Sql::Integer(change.id),
            Sql::Text(text),
        ]);
    }
    let columns = "idx, entity_type, entity_id, entry";
    crate::rows::insert_rows(conn, "log_entries", columns, 4, &rows, None)?;
    let appended = next.append(&leaves).map_err(|e| StoreError::Corrupt(format!("log: {e}")))?;
    // Only the levels of the hash tiles are stored (see `NodeReader`).
    for (id, hash) in appended.nodes.iter().filter(|(id, _)| stores_level(id.level)) {
        let index = i64::try_from(id.index).unwrap_or(i64::MAX);
        conn.execute(
            "INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
            params![i64::from(id.level), index, hash.as_slice()],
        )?;
    }
    Ok(next)
}

/// Log queries shared by readers.
pub(crate) fn entries_of(
    conn: Conn<'_>,
    ty: EntityType,
    id: i64,
) -> Result<Vec<(u64, String)>, StoreError> {
    conn.query_map(
        "SELECT idx, entry FROM log_entries WHERE entity_type = ?1 AND entity_id = ?2 ORDER BY idx",
        params![ty.name(), id],
        |r| Ok((u64::try_from(r.get::<i64>(0)?).unwrap_or(0), r.get::<String>(1)?)),
    )
}

pub(crate) fn entries_range(
    conn: Conn<'_>,
    start: u64,
    count: u64,
) -> Result<Vec<String>, StoreError> {
    let start = i64::try_from(start).unwrap_or(i64::MAX);
    let end = start.saturating_add(i64::try_from(count).unwrap_or(i64::MAX));
    conn.query_map(
        "SELECT entry FROM log_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        params![start, end],
        |r| r.get::<String>(0),
    )
}

pub(crate) fn log_size(conn: Conn<'_>) -> Result<u64, StoreError> {
    let size: Option<i64> =
        conn.query_row("SELECT MAX(idx) + 1 FROM log_entries", params![], |r| r.get(0))?;
    Ok(size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

pub(crate) fn latest_checkpoint(conn: Conn<'_>) -> Result<Option<(u64, String)>, StoreError> {
    let row: Option<(i64, String)> = conn.query_opt(
        "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(row.map(|(size, note)| (u64::try_from(size).unwrap_or(0), note)))
}

pub(crate) fn checkpoint_at(conn: Conn<'_>, size: u64) -> Result<Option<String>, StoreError> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    conn.query_opt("SELECT note FROM log_checkpoints WHERE size = ?1", params![size], |r| r.get(0))
}

pub(crate) fn store_checkpoint(conn: Conn<'_>, size: u64, note: &str) -> Result<(), StoreError> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO log_checkpoints (size, note) VALUES (?1, ?2)
         ON CONFLICT (size) DO NOTHING",
        params![size, note],
    )?;
    Ok(())
}

impl crate::ReadTx<'_> {
    /// The number of entries in the log.
    pub fn log_size(&self) -> Result<u64, StoreError> {
        log_size(self.conn)
    }

    /// The root of the log's tree at `size` entries.
    pub fn log_root(&self, size: u64) -> Result<Hash, StoreError> {
        stela_log::tree_root(size, &NodeReader { conn: self.conn }).map_err(tree_error)
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        stela_log::inclusion_proof(index, size, &NodeReader { conn: self.conn }).map_err(tree_error)
    }

    /// The consistency proof between the trees of `old_size` and `new_size` entries.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError> {
        stela_log::consistency_proof(old_size, new_size, &NodeReader { conn: self.conn })
            .map_err(tree_error)
    }

    /// The bytes of a hash tile (C2SP tlog-tiles).
    pub fn log_tile(&self, tile: &stela_log::TileId) -> Result<Vec<u8>, StoreError> {
        stela_log::read_tile(tile, &NodeReader { conn: self.conn }).map_err(tree_error)
    }

    /// The entries of a bundle, in order.
    pub fn log_entries(&self, start: u64, count: u64) -> Result<Vec<String>, StoreError> {
        entries_range(self.conn, start, count)
    }

    /// Every log entry of one entity (its whole history), with its index.
    pub fn entity_log(&self, ty: EntityType, id: i64) -> Result<Vec<(u64, String)>, StoreError> {
        entries_of(self.conn, ty, id)
    }

    /// The newest signed checkpoint and its tree size.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        latest_checkpoint(self.conn)
    }

    /// The signed checkpoint of a given tree size, when one was signed.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        checkpoint_at(self.conn, size)
    }
}

fn tree_error<E: std::fmt::Display>(error: E) -> StoreError {
    let text = error.to_string();
    if text.contains("missing") || text.contains("32 bytes") {
        StoreError::Corrupt(text)
    } else {
        StoreError::NotFound(text)
    }
}

/// The outcome of an audit of the log against the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries re-hashed.
    pub entries: u64,
    /// Signed checkpoints checked against the recomputed tree.
    pub checkpoints: u64,
    /// Current entities compared with their newest log entry.
    pub entities: u64,
    /// Every problem found; empty when the log and the data agree.
    pub problems: Vec<String>,
}

impl crate::ReadTx<'_> {
    /// Audits the log: re-hashes every entry and recomputes the tree from them, compares it
    /// with the stored tree and with every signed checkpoint (signature included), and checks
    /// that every current entity equals the body of its newest entry.
    pub fn audit_log(&self, verifier: &stela_log::VerifierKey) -> Result<AuditReport, StoreError> {
        let mut report = AuditReport::default();
        let mut tree = stela_log::MemoryTree::new();
        {
            self.conn.query_each(
                "SELECT idx, entity_type, entity_id, entry FROM log_entries ORDER BY idx",
                params![],
                |row| {
                    let index: i64 = row.get(0)?;
                    let ty: String = row.get(1)?;
                    let id: i64 = row.get(2)?;
                    let text: String = row.get(3)?;
                    if u64::try_from(index).ok() != Some(report.entries) {
                        report
                            .problems
                            .push(format!("entry {index}: expected index {}", report.entries));
                    }
                    match LogEntry::from_canonical_json(&text) {
                        Ok(entry) if entry.entity_type == ty && entry.entity_id == id => {}
                        Ok(entry) => report.problems.push(format!(
                            "entry {index}: indexed as {ty}({id}) but records {}({})",
                            entry.entity_type, entry.entity_id
                        )),
                        Err(e) => report
                            .problems
                            .push(format!("entry {index}: not a canonical log entry: {e}")),
                    }
                    if tree.append_entry(text.as_bytes()).is_err() {
                        report.problems.push(format!("entry {index}: the tree cannot grow"));
                    }
                    report.entries += 1;
                    Ok(())
                },
            )?;
        }
        let size = tree.size();
        match self.log_root(size) {
            Ok(stored) if stored == tree.root() => {}
            Ok(_) => report
                .problems
                .push(format!("the stored tree of {size} entries does not match the entries")),
            Err(e) => report.problems.push(format!("the stored tree cannot be read: {e}")),
        }
        let checkpoints = self.conn.query_map(
            "SELECT size, note FROM log_checkpoints ORDER BY size",
            params![],
            |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)),
        )?;
        for (checkpoint_size, note) in checkpoints {
            report.checkpoints += 1;
            let opened = match stela_log::open_note(&note, std::slice::from_ref(verifier)) {
                Ok(opened) => opened,
                Err(e) => {
                    report.problems.push(format!("checkpoint {checkpoint_size}: signature: {e}"));
                    continue;
                }
            };
            let checkpoint = match stela_log::Checkpoint::parse(&opened.text) {
                Ok(checkpoint) => checkpoint,
                Err(e) => {
                    report.problems.push(format!("checkpoint {checkpoint_size}: {e}"));
                    continue;
                }
            };
            let expected = stela_log::tree_root(checkpoint.size, &tree);
            if u64::try_from(checkpoint_size).ok() != Some(checkpoint.size)
                || expected.ok() != Some(checkpoint.root)
            {
                report.problems.push(format!(
                    "checkpoint {checkpoint_size}: its root is not the root of the first {} entries",
                    checkpoint.size
                ));
            }
        }
        for ty in EntityType::ALL {
            let sql = format!(
                "SELECT {} FROM {} t ORDER BY t.id",
                crate::read::select_columns(ty),
                ty.table()
            );
            self.conn.query_each(&sql, params![], |row| {
                let entity = crate::read::entity_from_row(ty, row, 0)?;
                report.entities += 1;
                let body = entity_body(self.conn, &entity)?;
                let newest = entries_of(self.conn, ty, entity.id)?.pop();
                let logged = newest.and_then(|(_, text)| LogEntry::from_canonical_json(&text).ok());
                match logged {
                    Some(entry)
                        if entry.op != Operation::Delete
                            && jcs::to_canonical_string(&entry.body) == body.body(entity.id) => {}
                    Some(_) => report
                        .problems
                        .push(format!("{ty}({}) differs from its newest log entry", entity.id)),
                    None => report.problems.push(format!("{ty}({}) has no log entry", entity.id)),
                }
                Ok(())
            })?;
        }
        // Entities the log says exist must exist.
        let newest = self.conn.query_map(
            "SELECT e.entity_type, e.entity_id, e.entry FROM log_entries e
             JOIN (SELECT entity_type, entity_id, MAX(idx) AS idx FROM log_entries GROUP BY entity_type, entity_id) n
               ON n.idx = e.idx",
            params![],
            |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<String>(2)?)),
        )?;
        for (type_name, id, text) in newest {
            let Some(ty) = EntityType::ALL.into_iter().find(|t| t.name() == type_name) else {
                report.problems.push(format!("the log names an unknown entity type '{type_name}'"));
                continue;
            };
            let deleted =
                LogEntry::from_canonical_json(&text).is_ok_and(|e| e.op == Operation::Delete);
            if !deleted && !crate::read::entity_exists(self.conn, ty, id)? {
                report
                    .problems
                    .push(format!("{ty}({id}) is in the log but missing from the store"));
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stela_log::{MemoryTree, TileId};

    /// A log of `n` entries written as the store writes it (entries, nodes of the tile levels
    /// only), with the same tree in memory (every node) to compare with.
    use rusqlite::Connection;

    fn log_of(n: u64) -> (Connection, MemoryTree) {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let mut appender = Appender::new();
        let mut memory = MemoryTree::new();
        // Several appends of different sizes, as commits of different group sizes do.
        let mut next = 0u64;
        let mut step = 1u64;
        while next < n {
            let count = step.min(n - next);
            let texts: Vec<String> = (next..next + count).map(|i| format!("entry {i}")).collect();
            let changes: Vec<Change> = (next..next + count)
                .map(|i| Change {
                    kind: ChangeKind::Created,
                    ty: EntityType::Thing,
                    id: i as i64 + 1,
                })
                .collect();
            let entries: Vec<(usize, String)> = texts.iter().cloned().enumerate().collect();
            appender = append_changes(
                Conn::Sqlite(&tx),
                &appender,
                &changes,
                "1970-01-01T00:00:00Z",
                entries,
                |_, _| unreachable!("every entry is given"),
            )
            .unwrap();
            for text in &texts {
                memory.append_entry(text.as_bytes()).unwrap();
            }
            next += count;
            step = step * 3 + 1;
        }
        tx.commit().unwrap();
        (conn, memory)
    }

    #[test]
    fn body_members_are_the_canonical_json_of_the_body() {
        use serde_json::json;
        use stela_model::{DecodeMode, decode_entity};
        let cases = [
            (
                EntityType::Observation,
                json!({"phenomenonTime": "2024-01-01T00:00:00.5Z/2024-01-02T00:00:00Z",
                    "resultTime": "2024-01-01T00:00:00Z", "result": {"z": [1, 2.5e-7], "a": "é\u{1F600}"},
                    "parameters": {"b": null, "a": true}, "resultQuality": null}),
                vec![("Datastream", 3), ("FeatureOfInterest", 9)],
            ),
            (EntityType::Observation, json!({"result": null}), vec![("MultiDatastream", 1)]),
            (
                EntityType::Thing,
                json!({"name": "tab\there \"quoted\"", "description": "", "properties": {"k": 1}}),
                vec![],
            ),
            (
                EntityType::Datastream,
                json!({"name": "n", "description": "d", "observationType": "x",
                    "unitOfMeasurement": {"name": null, "symbol": "°C"}}),
                vec![("Thing", 1), ("Sensor", 2), ("ObservedProperty", 3)],
            ),
        ];
        for (ty, body, links) in cases {
            let input = decode_entity(ty, &body, DecodeMode::Create).unwrap();
            let values: Vec<(&stela_model::Property, &Value)> =
                input.values.iter().map(|(i, v)| (&ty.properties()[*i], v)).collect();
            let mut object = stela_model::own_properties_json(values.iter().copied());
            object.insert("@iot.id".into(), json!(12));
            for (name, id) in &links {
                object.insert((*name).into(), json!({"@iot.id": id}));
            }
            let members = BodyMembers::new(ty, values.iter().copied(), links.clone()).unwrap();
            assert_eq!(
                members.body(12),
                jcs::to_canonical_string(&serde_json::Value::Object(object)),
                "{ty}"
            );
        }
    }

    #[test]
    fn only_the_tile_levels_are_stored() {
        let (conn, _) = log_of(1000);
        let levels: Vec<(i64, i64)> = conn
            .prepare("SELECT level, COUNT(*) FROM log_nodes GROUP BY level")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(levels, vec![(8, 3)]);
    }

    #[test]
    fn computed_nodes_equal_the_whole_tree() {
        // Past 65,536 entries: level-16 nodes are stored, levels 9..15 folded from level 8.
        let n = 65_536 + 700;
        let (conn, memory) = log_of(n);
        let reader = NodeReader { conn: Conn::Sqlite(&conn) };
        let sizes = [1, 2, 7, 255, 256, 257, 511, 512, 1000, 65_535, 65_536, 65_537, n];
        for size in sizes {
            assert_eq!(
                stela_log::tree_root(size, &reader).unwrap(),
                stela_log::tree_root(size, &memory).unwrap(),
                "root at {size}"
            );
            for index in [0, size / 3, size - 1] {
                assert_eq!(
                    stela_log::inclusion_proof(index, size, &reader).unwrap(),
                    stela_log::inclusion_proof(index, size, &memory).unwrap(),
                    "inclusion of {index} in {size}"
                );
            }
        }
        for (old, new) in [(1, 2), (255, 257), (700, 65_537), (65_536, n)] {
            assert_eq!(
                stela_log::consistency_proof(old, new, &reader).unwrap(),
                stela_log::consistency_proof(old, new, &memory).unwrap(),
                "consistency {old} → {new}"
            );
        }
        for tile in [
            TileId { level: 0, index: 0, width: 256 },
            TileId { level: 0, index: 258, width: 188 },
            TileId { level: 1, index: 0, width: 256 },
            TileId { level: 1, index: 1, width: 2 },
            TileId { level: 2, index: 0, width: 1 },
        ] {
            assert_eq!(
                stela_log::read_tile(&tile, &reader).unwrap(),
                stela_log::read_tile(&tile, &memory).unwrap(),
                "{tile:?}"
            );
        }
        let restored = load_appender(Conn::Sqlite(&conn)).unwrap();
        assert_eq!((restored.size(), restored.root()), (n, memory.root()));
    }

    #[test]
    fn a_missing_node_is_reported_as_corruption() {
        let (conn, _) = log_of(300);
        let reader = NodeReader { conn: Conn::Sqlite(&conn) };
        let error = stela_log::tree_root(512, &reader).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
