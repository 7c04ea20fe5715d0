//! The verifiable log in the store: one entry per committed change, appended in the same
//! transaction as the change itself, and the perfect-subtree hashes of the Merkle tree.
//!
//! ```text
//!   WriteTx::flush ─► for each Change: entity JSON after the write (or {"@iot.id"} for a
//!                     delete) ─► LogEntry (RFC 8785 canonical JSON) ─► leaf hash
//!                 ─► Appender (a copy of the store's) ─► new perfect-subtree hashes
//!                 ─► INSERT log_bundles (the commit's entries, one row per tile),
//!                    log_creates (runs of creates), log_history (updates, deletes),
//!                    log_nodes                             (same transaction)
//!   commit ok    ─► the copy replaces the store's Appender  (rollback: it is dropped)
//! ```
//!
//! Storage (schema version 4): a commit's entries are stored as bundles, one row per
//! 256-entry tile it touches, the entries joined by newlines (canonical JSON holds none) and
//! compressed (see [`pack_bundle`]); an entity's entries are found through `log_creates` (one
//! row per run of consecutive creates of one type, e.g. a bulk insert) and `log_history` (a row
//! per update and delete). A row per entry and an index row per entry were two thirds of what
//! the log cost on ingest (version 3); the uncompressed bundles most of the rest (version 4).
//!
//! Invariant: a change is never committed without its entry, an entry never without its
//! change. Entities removed by a cascade are covered by the entry of the delete that caused it.

use rusqlite::params;
use rusqlite::types::Value as Sql;
use stela_log::{Appender, Hash, HashReader, LogEntry, NodeId, Operation, jcs};
use stela_model::{Entity, EntityType, Link, TimeValue, Value, is_own_property, write_instant};

use crate::StoreError;
use crate::db::Conn;
use crate::write::{Change, ChangeKind, Pending};

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

/// Hashes of tiles read so far, by (base level, tile): `None` where a stored node is not (yet)
/// in the store.
type TileCache = std::collections::HashMap<(u8, u64), Vec<Option<Hash>>>;

impl NodeReader<'_> {
    /// The hashes at `base` level (a multiple of 8) of one tile, by position: the leaf hashes
    /// of its entries, or its stored nodes (`None` where one is not stored); fewer at the right
    /// edge.
    fn tile_hashes(&self, base: u8, tile: u64) -> Result<Vec<Option<Hash>>, StoreError> {
        let start = tile
            .checked_mul(TILE_WIDTH)
            .filter(|start| i64::try_from(*start).is_ok())
            .ok_or_else(|| StoreError::Corrupt("log node index".into()))?;
        let end = start.saturating_add(TILE_WIDTH);
        let mut hashes = Vec::with_capacity(TILE_WIDTH as usize);
        if base == 0 {
            for_each_entry(self.conn, start, end, |_, text| {
                hashes.push(Some(stela_log::leaf_hash(text.as_bytes())));
                Ok(())
            })?;
        } else {
            self.conn.query_each(
                "SELECT idx, hash FROM log_nodes WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
                params![i64::from(base), sql_index(start), sql_index(end)],
                |row| {
                    let position = (index_from_sql(row.get(0)?)? - start) as usize;
                    let bytes: Vec<u8> = row.get(1)?;
                    let hash: Hash = bytes.as_slice().try_into().map_err(|_| {
                        StoreError::Corrupt(format!("a log node at level {base} is not 32 bytes"))
                    })?;
                    if hashes.len() <= position {
                        hashes.resize(position + 1, None);
                    }
                    hashes[position] = Some(hash);
                    Ok(())
                },
            )?;
        }
        Ok(hashes)
    }

    /// The hashes at `base` level of positions `range` of a tile. A stored node the store does
    /// not hold (written after its entries, see `hasher.rs`) is folded from the tile below it.
    fn hashes_in(
        &self,
        tiles: &mut TileCache,
        base: u8,
        tile: u64,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<Hash>, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = tiles.entry((base, tile)) {
            slot.insert(self.tile_hashes(base, tile)?);
        }
        let mut hashes = Vec::with_capacity(range.len());
        for position in range {
            let known = tiles.get(&(base, tile)).and_then(|t| t.get(position).copied().flatten());
            let hash = match known {
                Some(hash) => hash,
                None if base > 0 => {
                    let below = tile * TILE_WIDTH + position as u64;
                    let leaves =
                        self.hashes_in(tiles, base - TILE_HEIGHT, below, 0..TILE_WIDTH as usize)?;
                    let hash = fold_perfect(&leaves);
                    if let Some(cached) = tiles.get_mut(&(base, tile)) {
                        if cached.len() <= position {
                            cached.resize(position + 1, None);
                        }
                        cached[position] = Some(hash);
                    }
                    hash
                }
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "log entry {} is missing",
                        tile * TILE_WIDTH + position as u64
                    )));
                }
            };
            hashes.push(hash);
        }
        Ok(hashes)
    }
}

impl HashReader for NodeReader<'_> {
    type Error = StoreError;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        // Proofs and tiles ask for several nodes of the same tile: read each tile once.
        let mut tiles = TileCache::new();
        let mut hashes = Vec::with_capacity(ids.len());
        for id in ids {
            let base = id.level - id.level % TILE_HEIGHT;
            let height = id.level - base;
            let first = id
                .index
                .checked_shl(u32::from(height))
                .ok_or_else(|| StoreError::Corrupt("log node index".into()))?;
            let tile = first / TILE_WIDTH;
            let offset = (first % TILE_WIDTH) as usize;
            let span = 1usize << height;
            let leaves =
                self.hashes_in(&mut tiles, base, tile, offset..offset + span).map_err(|error| {
                    match error {
                        StoreError::Corrupt(message) if message.contains("missing") => {
                            StoreError::Corrupt(format!(
                                "log node ({}, {}) is missing: {message}",
                                id.level, id.index
                            ))
                        }
                        other => other,
                    }
                })?;
            hashes.push(fold_perfect(&leaves));
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BodyMembers(String);

impl BodyMembers {
    /// Checks every value (a number the canonical form would round fails the write alone) and
    /// renders the members.
    pub(crate) fn new<'a>(
        ty: EntityType,
        values: impl IntoIterator<Item = (&'a stela_model::Property, &'a Value)>,
        links: impl IntoIterator<Item = (&'static str, i64)>,
    ) -> Result<BodyMembers, StoreError> {
        let mut out = String::with_capacity(192);
        BodyMembers::render(ty, values, links, &mut out)?;
        Ok(BodyMembers(out))
    }

    /// [`BodyMembers::new`]'s text, appended to `out`.
    pub(crate) fn render<'a>(
        ty: EntityType,
        values: impl IntoIterator<Item = (&'a stela_model::Property, &'a Value)>,
        links: impl IntoIterator<Item = (&'static str, i64)>,
        out: &mut String,
    ) -> Result<(), StoreError> {
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
        for (index, (name, member)) in members.into_iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            jcs::write_string(name, out);
            out.push(':');
            match member {
                Member::Link(id) => {
                    out.push_str("{\"@iot.id\":");
                    jcs::write_integer(id, out);
                    out.push('}');
                }
                Member::Value(Value::Null) => out.push_str("null"),
                Member::Value(Value::Text(text)) => jcs::write_string(text, out),
                Member::Value(Value::Json(json)) => {
                    stela_log::check_body_member(name, json).map_err(|e| unloggable(ty, e))?;
                    jcs::write_canonical(json, out);
                }
                // Digits, '-', ':', '.', '+', 'T', 'Z' and '/': nothing to escape.
                Member::Value(Value::Time(time)) => {
                    out.push('"');
                    match time {
                        TimeValue::Instant(t) => write_instant(*t, out),
                        TimeValue::Interval(start, end) => {
                            write_instant(*start, out);
                            out.push('/');
                            write_instant(*end, out);
                        }
                    }
                    out.push('"');
                }
            }
        }
        Ok(())
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

/// Checks that the values of an entity of type `ty` can be logged exactly, as
/// [`BodyMembers::new`] checks them, without rendering them.
pub(crate) fn check_loggable<'a>(
    ty: EntityType,
    values: impl IntoIterator<Item = (&'a stela_model::Property, &'a Value)>,
) -> Result<(), StoreError> {
    for (property, value) in values {
        if let Value::Json(json) = value
            && is_own_property(property, value)
        {
            stela_log::check_body_member(property.name, json).map_err(|e| unloggable(ty, e))?;
        }
    }
    Ok(())
}

impl From<String> for BodyMembers {
    /// Members rendered by [`BodyMembers::render`].
    fn from(members: String) -> BodyMembers {
        BodyMembers(members)
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
    pending: &Pending,
) -> Result<String, StoreError> {
    match &pending.envelope {
        Some(envelope) => envelope.entity_entry(op, ty.name(), id, id, &body.0),
        None => {
            let at = &pending.committed_at;
            stela_log::canonical_entity_entry(op, ty.name(), id, id, &body.0, at, "")
        }
    }
    .map_err(|e| unloggable(ty, e))
}

fn unloggable(ty: EntityType, error: stela_log::EntryError) -> StoreError {
    StoreError::Invalid(format!("the {ty} cannot be logged exactly: {error}"))
}

/// The entries a transaction appends, in log order from index `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewEntries {
    pub(crate) first: u64,
    pub(crate) texts: Vec<String>,
}

/// Appends one entry per change to the log in one step: the entries written, hashed into the
/// tree and its stored nodes written, all in `conn`'s transaction. Returns the appender after
/// the append.
#[cfg(test)]
pub(crate) fn append_changes(
    conn: Conn<'_>,
    appender: &Appender,
    changes: &[Change],
    committed_at: &str,
    entries: Vec<(usize, String)>,
    read_entity: impl Fn(EntityType, i64) -> Result<Entity, StoreError>,
) -> Result<Appender, StoreError> {
    let mut next = appender.clone();
    let mut pending = Pending::default();
    pending.committed_at = committed_at.to_owned();
    pending.envelope = stela_log::EntryEnvelope::new(committed_at, "").ok();
    let new = write_entries(conn, next.size(), changes, &pending, entries, read_entity)?;
    let nodes = hash_entries(&mut next, &new)?;
    insert_nodes(conn, &nodes)?;
    Ok(next)
}

/// Hashes new entries into the tree; returns the nodes of the levels the log stores (see
/// [`NodeReader`]), to be written with [`insert_nodes`].
pub(crate) fn hash_entries(
    appender: &mut Appender,
    new: &NewEntries,
) -> Result<Vec<(NodeId, Hash)>, StoreError> {
    if new.texts.is_empty() {
        return Ok(Vec::new());
    }
    if appender.size() != new.first {
        return Err(StoreError::Corrupt(format!(
            "log entries from {} hashed into a tree of {}",
            new.first,
            appender.size()
        )));
    }
    let leaves: Vec<Hash> =
        new.texts.iter().map(|text| stela_log::leaf_hash(text.as_bytes())).collect();
    let appended =
        appender.append(&leaves).map_err(|e| StoreError::Corrupt(format!("log: {e}")))?;
    Ok(appended.nodes.into_iter().filter(|(id, _)| stores_level(id.level)).collect())
}

/// Stores nodes of the tree (a node already stored is left as it is: the same hash).
pub(crate) fn insert_nodes(conn: Conn<'_>, nodes: &[(NodeId, Hash)]) -> Result<(), StoreError> {
    for (id, hash) in nodes {
        conn.execute(
            "INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![i64::from(id.level), sql_index(id.index), hash.as_slice()],
        )?;
    }
    Ok(())
}

/// The stored nodes a tree of `size` entries should have that the store lacks: those a crash
/// took before they were written (they are written after the entries, see `hasher.rs`).
/// Computed from the levels below, at most a few tiles' worth.
pub(crate) fn missing_nodes(conn: Conn<'_>, size: u64) -> Result<Vec<(NodeId, Hash)>, StoreError> {
    let reader = NodeReader { conn };
    let mut missing = Vec::new();
    let mut level = TILE_HEIGHT;
    while level < 64 && (size >> level) > 0 {
        let expected = size >> level;
        let stored: i64 = conn.query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_nodes WHERE level = ?1",
            params![i64::from(level)],
            |r| r.get(0),
        )?;
        let ids: Vec<NodeId> =
            (index_from_sql(stored)?..expected).map(|index| NodeId { level, index }).collect();
        let hashes = reader.read_hashes(&ids)?;
        missing.extend(ids.into_iter().zip(hashes));
        level += TILE_HEIGHT;
    }
    Ok(missing)
}

/// Consecutive entries of a transaction inside one tile, joined and compressed as a bundle
/// before the commit (on the thread that renders a bulk insert's entries, see `bulk.rs`):
/// [`write_entries`] stores it as it is when the changes `first_change ..` still get the log
/// indexes `first_index ..` and their entries are as long as `text_length` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedSegment {
    pub(crate) first_change: usize,
    pub(crate) first_index: u64,
    pub(crate) count: usize,
    pub(crate) text_length: usize,
    pub(crate) packed: Vec<u8>,
}

impl PackedSegment {
    /// The segments of `entries`, the entries of consecutive changes from `first_change` that
    /// get the log indexes from `first_index`: one per tile they reach.
    pub(crate) fn of(
        first_change: usize,
        first_index: u64,
        entries: &[&str],
    ) -> Vec<PackedSegment> {
        let mut segments = Vec::new();
        let mut start = 0;
        while start < entries.len() {
            let index = first_index + start as u64;
            let room = (TILE_WIDTH - index % TILE_WIDTH) as usize;
            let end = entries.len().min(start + room);
            let text = entries[start..end].join("\n");
            segments.push(PackedSegment {
                first_change: first_change + start,
                first_index: index,
                count: end - start,
                text_length: text.len(),
                packed: pack_bundle(&text),
            });
            start = end;
        }
        segments
    }
}

/// The segments of `pending` that still hold exactly the given `entries` at the indexes
/// they were packed for (the log starts this transaction at `first`); a segment that does not
/// is left out, its entries then bundled one by one.
fn packed_segments<'a>(
    first: u64,
    pending: &'a Pending,
    entries: &[(usize, String)],
) -> Vec<&'a PackedSegment> {
    let mut after = 0;
    pending
        .packed
        .iter()
        .filter(|segment| {
            let holds = segment.first_change >= after
                && segment.first_index == first + segment.first_change as u64
                && entries
                    .binary_search_by_key(&segment.first_change, |(offset, _)| *offset)
                    .ok()
                    .and_then(|at| entries.get(at..at + segment.count))
                    .is_some_and(|run| {
                        let length: usize = run.iter().map(|(_, text)| text.len()).sum();
                        run.last().map(|(offset, _)| *offset)
                            == Some(segment.first_change + segment.count - 1)
                            && length + segment.count - 1 == segment.text_length
                    });
            if holds {
                after = segment.first_change + segment.count;
            }
            holds
        })
        .collect()
}

/// Writes the entries of `changes` (bundles, the entity index); the log's tree is not touched.
pub(crate) fn write_entries(
    conn: Conn<'_>,
    first: u64,
    changes: &[Change],
    pending: &Pending,
    entries: Vec<(usize, String)>,
    read_entity: impl Fn(EntityType, i64) -> Result<Entity, StoreError>,
) -> Result<NewEntries, StoreError> {
    let mut texts = Vec::with_capacity(changes.len());
    if changes.is_empty() {
        return Ok(NewEntries { first, texts });
    }
    // In the order of the changes, as they were written.
    let mut bundles = BundleWriter::new(conn, first);
    let mut creates = CreateRuns::default();
    let mut history: Vec<Sql> = Vec::new();
    let mut segments = packed_segments(first, pending, &entries).into_iter().peekable();
    // Changes before this offset are in a packed segment already stored.
    let mut packed_until = 0;
    let mut entries = entries.into_iter().peekable();
    for (offset, change) in changes.iter().enumerate() {
        if let Some(segment) = segments.next_if(|segment| segment.first_change == offset) {
            bundles.store_packed(segment)?;
            packed_until = offset + segment.count;
        }
        let given = entries.next_if(|(index, _)| *index == offset).map(|(_, text)| text);
        let text = match (change.kind, given) {
            // Entries written by the change itself.
            (_, Some(text)) => text,
            (ChangeKind::Deleted, None) => {
                LogEntry::delete(change.ty.name(), change.id, &pending.committed_at, "")
                    .to_canonical_json()
                    .map_err(|e| StoreError::Corrupt(format!("log entry: {e}")))?
            }
            // Re-linked children and moved Things are read back.
            (kind, None) => {
                let body = entity_body(conn, &read_entity(change.ty, change.id)?)?;
                let op =
                    if kind == ChangeKind::Created { Operation::Create } else { Operation::Update };
                entry_text(op, change.ty, change.id, &body, pending)?
            }
        };
        let index = first + offset as u64;
        if offset >= packed_until {
            bundles.push(index, &text)?;
        }
        if change.kind == ChangeKind::Created {
            creates.push(change.ty, change.id, index);
        } else {
            history.extend([
                Sql::Text(change.ty.name().to_owned()),
                Sql::Integer(change.id),
                Sql::Integer(sql_index(index)),
            ]);
        }
        texts.push(text);
    }
    bundles.finish()?;
    let runs: Vec<Sql> = creates
        .runs
        .iter()
        .flat_map(|run| {
            [
                Sql::Text(run.ty.name().to_owned()),
                Sql::Integer(run.first_id),
                Sql::Integer(run.count),
                Sql::Integer(sql_index(run.first_index)),
            ]
        })
        .collect();
    if !runs.is_empty() {
        let columns = "entity_type, first_id, count, first_idx";
        crate::rows::insert_rows(conn, "log_creates", columns, 4, &runs, None)?;
    }
    if !history.is_empty() {
        let columns = "entity_type, entity_id, idx";
        crate::rows::insert_rows(conn, "log_history", columns, 3, &history, None)?;
    }
    Ok(NewEntries { first, texts })
}

/// The index of log position `index` as SQLite stores it.
fn sql_index(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn index_from_sql(index: i64) -> Result<u64, StoreError> {
    u64::try_from(index).map_err(|_| StoreError::Corrupt(format!("log index {index}")))
}

/// A bundle as the store keeps it (schema version 4): its entries joined by newlines,
/// compressed with LZ4 (block format), the uncompressed length first (4 bytes, little-endian).
/// Consecutive entries share most of their text (member names, the entity type, the commit
/// time): a bundle of Observations shrinks about eight times, at about 3 GB/s. Writing the
/// bundles uncompressed was most of what the log still cost on ingest (twice the bytes of
/// every commit, two thirds of the database file).
pub(crate) fn pack_bundle(text: &str) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(text.as_bytes())
}

/// The text of a bundle stored by [`pack_bundle`], checked to hold `count` entries; `first` is
/// the index of its first entry (for the error).
pub(crate) fn unpack_bundle(first: u64, count: i64, packed: &[u8]) -> Result<String, StoreError> {
    let corrupt =
        |what: String| StoreError::Corrupt(format!("the log bundle at entry {first} {what}"));
    let (length, block) = packed
        .split_first_chunk::<4>()
        .map(|(length, block)| (u32::from_le_bytes(*length) as usize, block))
        .ok_or_else(|| corrupt("is too short".into()))?;
    // LZ4 expands at most 255 times: a longer length is damage (and no allocation is made).
    if length > block.len().saturating_mul(255).saturating_add(16) {
        return Err(corrupt(format!("claims {length} bytes from {}", block.len())));
    }
    let bytes = lz4_flex::block::decompress(block, length)
        .map_err(|e| corrupt(format!("cannot be decompressed: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| corrupt("is not UTF-8".into()))?;
    let entries = entries_in(&text);
    if i64::try_from(entries).ok() != Some(count) {
        return Err(corrupt(format!("holds {entries} entries, not {count}")));
    }
    Ok(text)
}

/// The entries of a bundle's text (joined by newlines).
fn entries_in(text: &str) -> usize {
    text.bytes().filter(|b| *b == b'\n').count() + 1
}

/// Stores a bundle packed by [`pack_bundle`]: `count` entries from log index `first`.
fn insert_bundle(
    conn: Conn<'_>,
    first: u64,
    count: usize,
    packed: &[u8],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO log_bundles (first, count, entries_lz4) VALUES (?1, ?2, ?3)",
        params![sql_index(first), count as i64, packed],
    )?;
    Ok(())
}

/// A schema migration (SQLite version 4, PostgreSQL version 2): every bundle of the old table
/// `log_bundles_text` (the entries joined by newlines, as text) compressed into `log_bundles`
/// and checked to read back the same, a few at a time (a log of millions of entries is never
/// held whole).
pub(crate) fn compress_v3_bundles(conn: Conn<'_>) -> Result<(), StoreError> {
    let mut after = -1i64;
    loop {
        let rows: Vec<(i64, String)> = conn.query_map(
            "SELECT first, entries FROM log_bundles_text WHERE first > ?1 ORDER BY first LIMIT 256",
            params![after],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(());
        };
        after = last;
        for (first, text) in rows {
            let count = entries_in(&text);
            let packed = pack_bundle(&text);
            if unpack_bundle(index_from_sql(first)?, count as i64, &packed)? != text {
                return Err(StoreError::Corrupt(format!(
                    "the log bundle at entry {first} does not read back as it was"
                )));
            }
            insert_bundle(conn, index_from_sql(first)?, count, &packed)?;
        }
    }
}

/// Writes the entries of one commit as bundles: one row per tile the commit touches.
struct BundleWriter<'a> {
    conn: Conn<'a>,
    /// The index of the first entry of the bundle being filled.
    first: u64,
    /// Its entries, joined by newlines.
    text: String,
    /// Whether it holds an entry yet (an entry could in principle be empty text).
    filled: bool,
    /// How many entries it holds.
    count: usize,
}

impl<'a> BundleWriter<'a> {
    fn new(conn: Conn<'a>, first: u64) -> BundleWriter<'a> {
        BundleWriter { conn, first, text: String::new(), filled: false, count: 0 }
    }

    /// Adds entry `index` (the one after the previous); starts a new bundle at a tile boundary.
    fn push(&mut self, index: u64, entry: &str) -> Result<(), StoreError> {
        // Canonical JSON escapes every control character; a raw newline would cut the entry
        // in two when the bundle is read.
        if entry.contains('\n') {
            return Err(StoreError::Corrupt(format!("log entry {index} holds a newline")));
        }
        if self.filled && index.is_multiple_of(TILE_WIDTH) {
            self.flush()?;
        }
        if !self.filled {
            self.first = index;
        }
        if self.filled {
            self.text.push('\n');
        } else if self.text.capacity() == 0 {
            self.text.reserve(entry.len() * TILE_WIDTH as usize);
        }
        self.text.push_str(entry);
        self.filled = true;
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.filled {
            insert_bundle(self.conn, self.first, self.count, &pack_bundle(&self.text))?;
            self.text.clear();
            self.filled = false;
            self.count = 0;
        }
        Ok(())
    }

    /// Stores a segment packed beforehand as a bundle of its own, after the entries before it.
    fn store_packed(&mut self, segment: &PackedSegment) -> Result<(), StoreError> {
        self.flush()?;
        insert_bundle(self.conn, segment.first_index, segment.count, &segment.packed)
    }

    fn finish(mut self) -> Result<(), StoreError> {
        self.flush()
    }
}

/// A row of `log_creates`: entities `first_id .. first_id + count` of one type, created by the
/// entries `first_index .. first_index + count`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CreateRun {
    ty: EntityType,
    first_id: i64,
    count: i64,
    first_index: u64,
}

/// The create entries of one commit gathered into runs.
#[derive(Debug, Default)]
struct CreateRuns {
    runs: Vec<CreateRun>,
}

impl CreateRuns {
    fn push(&mut self, ty: EntityType, id: i64, index: u64) {
        if let Some(run) = self.runs.last_mut()
            && run.ty == ty
            && run.first_id + run.count == id
            && run.first_index + run.count as u64 == index
        {
            run.count += 1;
        } else {
            self.runs.push(CreateRun { ty, first_id: id, count: 1, first_index: index });
        }
    }
}

/// Calls `f` with the index and text of every entry in `start .. end`, in order.
fn for_each_entry(
    conn: Conn<'_>,
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, &str) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    // A bundle never spans two tiles: the one holding `start` begins in start's tile.
    let from = start - start % TILE_WIDTH;
    let mut expected = from;
    conn.query_each(
        "SELECT first, count, entries_lz4 FROM log_bundles WHERE first >= ?1 AND first < ?2 ORDER BY first",
        params![sql_index(from), sql_index(end)],
        |row| {
            let first = index_from_sql(row.get(0)?)?;
            if first != expected {
                return Err(StoreError::Corrupt(format!(
                    "log entries {expected} to {} are missing",
                    first.saturating_sub(1)
                )));
            }
            let text = unpack_bundle(first, row.get(1)?, &row.get::<Vec<u8>>(2)?)?;
            let mut index = first;
            for entry in text.split('\n') {
                if index >= start && index < end {
                    f(index, entry)?;
                }
                index += 1;
            }
            expected = index;
            Ok(())
        },
    )
}

/// Reads entries one at a time, keeping the last bundle read split into entries: an entity's
/// entries, and the entities the audit walks in id order, are mostly in the same bundle.
struct EntryReader<'a> {
    conn: Conn<'a>,
    /// The index of the bundle's first entry, and its entries.
    bundle: Option<(u64, Vec<String>)>,
}

impl<'a> EntryReader<'a> {
    fn new(conn: Conn<'a>) -> EntryReader<'a> {
        EntryReader { conn, bundle: None }
    }

    fn entry(&mut self, index: u64) -> Result<&str, StoreError> {
        let offset = |bundle: &Option<(u64, Vec<String>)>| match bundle {
            Some((first, entries)) => index
                .checked_sub(*first)
                .and_then(|k| usize::try_from(k).ok())
                .filter(|k| *k < entries.len()),
            None => None,
        };
        if offset(&self.bundle).is_none() {
            let row: Option<(i64, i64, Vec<u8>)> = self.conn.query_opt(
                "SELECT first, count, entries_lz4 FROM log_bundles WHERE first <= ?1 ORDER BY first DESC LIMIT 1",
                params![sql_index(index)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            self.bundle = match row {
                Some((first, count, packed)) => {
                    let first = index_from_sql(first)?;
                    let text = unpack_bundle(first, count, &packed)?;
                    Some((first, text.split('\n').map(str::to_owned).collect()))
                }
                None => None,
            };
        }
        match (offset(&self.bundle), &self.bundle) {
            (Some(k), Some((_, entries))) => Ok(entries[k].as_str()),
            _ => Err(StoreError::Corrupt(format!("log entry {index} is missing"))),
        }
    }
}

/// Finds the create entry of an entity in `log_creates`, keeping the last run found (entities
/// read in id order, and creates read in log order, are mostly in the same run).
struct CreateIndex<'a> {
    conn: Conn<'a>,
    /// The last run read: its type's name, first id, count and first index.
    run: Option<(String, i64, i64, i64)>,
}

impl<'a> CreateIndex<'a> {
    fn new(conn: Conn<'a>) -> CreateIndex<'a> {
        CreateIndex { conn, run: None }
    }

    /// The index of the entry that created `type_name(id)`.
    fn of(&mut self, type_name: &str, id: i64) -> Result<Option<u64>, StoreError> {
        let within = |run: &Option<(String, i64, i64, i64)>| match run {
            Some((ty, first_id, count, first_index))
                if ty == type_name && id >= *first_id && id - first_id < *count =>
            {
                Some(first_index + (id - first_id))
            }
            _ => None,
        };
        if within(&self.run).is_none() {
            self.run = self.conn.query_opt(
                "SELECT first_id, count, first_idx FROM log_creates
                 WHERE entity_type = ?1 AND first_id <= ?2 ORDER BY first_id DESC LIMIT 1",
                params![type_name, id],
                |r| Ok((type_name.to_owned(), r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
        }
        within(&self.run).map(index_from_sql).transpose()
    }
}

/// The indexes of an entity's updates and deletes, in order.
fn history_of(conn: Conn<'_>, type_name: &str, id: i64) -> Result<Vec<u64>, StoreError> {
    conn.query_map(
        "SELECT idx FROM log_history WHERE entity_type = ?1 AND entity_id = ?2 ORDER BY idx",
        params![type_name, id],
        |r| index_from_sql(r.get(0)?),
    )
}

/// Every entry of one entity (its whole history, also after a delete), with its index.
pub(crate) fn entries_of(
    conn: Conn<'_>,
    ty: EntityType,
    id: i64,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut indexes: Vec<u64> = CreateIndex::new(conn).of(ty.name(), id)?.into_iter().collect();
    indexes.extend(history_of(conn, ty.name(), id)?);
    indexes.sort_unstable();
    let mut reader = EntryReader::new(conn);
    let mut entries = Vec::with_capacity(indexes.len());
    for index in indexes {
        entries.push((index, reader.entry(index)?.to_owned()));
    }
    Ok(entries)
}

/// The entries `start .. start + count` (fewer at the end of the log).
pub(crate) fn entries_range(
    conn: Conn<'_>,
    start: u64,
    count: u64,
) -> Result<Vec<String>, StoreError> {
    let mut entries = Vec::new();
    for_each_entry(conn, start, start.saturating_add(count), |_, text| {
        entries.push(text.to_owned());
        Ok(())
    })?;
    Ok(entries)
}

pub(crate) fn log_size(conn: Conn<'_>) -> Result<u64, StoreError> {
    // The last bundle: the index of its first entry, and how many it holds (PostgreSQL asks on
    // every write).
    let last: Option<(i64, i64)> = conn.query_opt(
        "SELECT first, count FROM log_bundles ORDER BY first DESC LIMIT 1",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match last {
        Some((first, count)) => Ok(index_from_sql(first)? + index_from_sql(count)?),
        None => Ok(0),
    }
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
        let mut creates = CreateIndex::new(self.conn);
        {
            let conn = self.conn;
            conn.query_each(
                "SELECT first, count, entries_lz4 FROM log_bundles ORDER BY first",
                params![],
                |row| {
                    let first: i64 = row.get(0)?;
                    let count: i64 = row.get(1)?;
                    if u64::try_from(first).ok() != Some(report.entries) {
                        report.problems.push(format!(
                            "the bundle at entry {first}: expected entry {}",
                            report.entries
                        ));
                    }
                    let text = match unpack_bundle(report.entries, count, &row.get::<Vec<u8>>(2)?) {
                        Ok(text) => text,
                        Err(e) => {
                            // Its entries cannot be hashed: the root differs (reported below).
                            report.problems.push(e.to_string());
                            report.entries += u64::try_from(count).unwrap_or(0);
                            return Ok(());
                        }
                    };
                    for text in text.split('\n') {
                        let index = report.entries;
                        match LogEntry::from_canonical_json(text) {
                            Ok(entry) => {
                                // Found under its entity, as what it is.
                                let indexed = if entry.op == Operation::Create {
                                    creates.of(&entry.entity_type, entry.entity_id)? == Some(index)
                                } else {
                                    history_of(conn, &entry.entity_type, entry.entity_id)?
                                        .contains(&index)
                                };
                                if !indexed {
                                    report.problems.push(format!(
                                        "entry {index}: not indexed as the {:?} of {}({})",
                                        entry.op, entry.entity_type, entry.entity_id
                                    ));
                                }
                            }
                            Err(e) => report
                                .problems
                                .push(format!("entry {index}: not a canonical log entry: {e}")),
                        }
                        if tree.append_entry(text.as_bytes()).is_err() {
                            report.problems.push(format!("entry {index}: the tree cannot grow"));
                        }
                        report.entries += 1;
                    }
                    Ok(())
                },
            )?;
        }
        // Every entry is found under its entity (above) and the index names no more entries
        // than there are: it names each entry exactly once.
        let indexed: i64 = self.conn.query_row(
            "SELECT CAST((SELECT COALESCE(SUM(count), 0) FROM log_creates)
                  + (SELECT COUNT(*) FROM log_history) AS BIGINT)",
            params![],
            |r| r.get(0),
        )?;
        if u64::try_from(indexed).ok() != Some(report.entries) {
            report.problems.push(format!(
                "the index of the log by entity names {indexed} entries, the log has {}",
                report.entries
            ));
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
        let mut reader = EntryReader::new(self.conn);
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
                let created = creates.of(ty.name(), entity.id)?;
                let changed = history_of(self.conn, ty.name(), entity.id)?.pop();
                let logged = match created.max(changed) {
                    Some(index) => LogEntry::from_canonical_json(reader.entry(index)?).ok(),
                    None => None,
                };
                let newest_is_missing = created.is_none() && changed.is_none();
                match logged {
                    Some(entry)
                        if entry.op != Operation::Delete
                            && jcs::to_canonical_string(&entry.body) == body.body(entity.id) => {}
                    _ if newest_is_missing => {
                        report.problems.push(format!("{ty}({}) has no log entry", entity.id))
                    }
                    _ => report
                        .problems
                        .push(format!("{ty}({}) differs from its newest log entry", entity.id)),
                }
                Ok(())
            })?;
        }
        // Entities the log says exist must exist. The newest update or delete of each entity
        // that has one (few), then every created entity without one.
        let mut changed: std::collections::BTreeMap<(String, i64), i64> =
            std::collections::BTreeMap::new();
        self.conn.query_each(
            "SELECT entity_type, entity_id, MAX(idx) FROM log_history GROUP BY entity_type, entity_id",
            params![],
            |row| {
                changed.insert((row.get(0)?, row.get(1)?), row.get(2)?);
                Ok(())
            },
        )?;
        let entity_type =
            |type_name: &str| EntityType::ALL.into_iter().find(|t| t.name() == type_name);
        for ((type_name, id), index) in &changed {
            let Some(ty) = entity_type(type_name) else {
                report.problems.push(format!("the log names an unknown entity type '{type_name}'"));
                continue;
            };
            let deleted = LogEntry::from_canonical_json(reader.entry(index_from_sql(*index)?)?)
                .is_ok_and(|e| e.op == Operation::Delete);
            if !deleted && !crate::read::entity_exists(self.conn, ty, *id)? {
                report
                    .problems
                    .push(format!("{ty}({id}) is in the log but missing from the store"));
            }
        }
        let runs = self.conn.query_map(
            "SELECT entity_type, first_id, count FROM log_creates ORDER BY entity_type, first_id",
            params![],
            |row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?, row.get::<i64>(2)?)),
        )?;
        for (type_name, first_id, count) in runs {
            let Some(ty) = entity_type(&type_name) else {
                report.problems.push(format!("the log names an unknown entity type '{type_name}'"));
                continue;
            };
            let end = first_id.saturating_add(count);
            let stored = crate::read::query_ids(
                self.conn,
                &format!("SELECT id FROM {} WHERE id >= ?1 AND id < ?2 ORDER BY id", ty.table()),
                &[Sql::Integer(first_id), Sql::Integer(end)],
            )?;
            let mut stored = stored.into_iter().peekable();
            for id in first_id..end {
                let exists = stored.next_if_eq(&id).is_some();
                if !exists && !changed.contains_key(&(type_name.clone(), id)) {
                    report
                        .problems
                        .push(format!("{ty}({id}) is in the log but missing from the store"));
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use stela_log::{MemoryTree, TileId};

    /// A log of `n` entries written as the store writes it (entries, nodes of the tile levels
    /// only), with the same tree in memory (every node) to compare with.
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
    fn a_damaged_bundle_is_reported_not_read() {
        let text = ["{\"a\":1}"; 40].join("\n");
        let packed = pack_bundle(&text);
        assert!(packed.len() < text.len() / 4, "{} of {}", packed.len(), text.len());
        assert_eq!(unpack_bundle(512, 40, &packed).unwrap(), text);
        let error = |count: i64, packed: &[u8]| unpack_bundle(512, count, packed).unwrap_err();
        assert!(error(39, &packed).to_string().contains("at entry 512 holds 40 entries, not 39"));
        assert!(error(40, &packed[..3]).to_string().contains("too short"));
        // A length no LZ4 block of this size can have: refused before allocating it.
        let mut huge = packed.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(error(40, &huge).to_string().contains("claims 4294967295 bytes"));
        let mut cut = packed.clone();
        cut.truncate(packed.len() - 2);
        assert!(error(40, &cut).to_string().contains("cannot be decompressed"));
        let not_utf8 = lz4_flex::block::compress_prepend_size(&[0xff, 0xfe]);
        assert!(error(1, &not_utf8).to_string().contains("not UTF-8"));
    }

    #[test]
    fn a_missing_node_is_reported_as_corruption() {
        let (conn, _) = log_of(300);
        let reader = NodeReader { conn: Conn::Sqlite(&conn) };
        let error = stela_log::tree_root(512, &reader).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }

    /// Appends `changes` with the given entry texts, as one commit.
    fn commit(
        conn: &mut Connection,
        appender: &Appender,
        changes: &[(ChangeKind, EntityType, i64, String)],
    ) -> Appender {
        let tx = conn.transaction().unwrap();
        let list: Vec<Change> = changes
            .iter()
            .map(|(kind, ty, id, _)| Change { kind: *kind, ty: *ty, id: *id })
            .collect();
        let texts = changes.iter().map(|(.., text)| text.clone()).enumerate().collect();
        let next = append_changes(
            Conn::Sqlite(&tx),
            appender,
            &list,
            "1970-01-01T00:00:00Z",
            texts,
            |_, _| unreachable!("every entry is given"),
        )
        .unwrap();
        tx.commit().unwrap();
        next
    }

    /// The canonical entry of a change (the body holds only the id: enough for the log).
    fn entry_of(kind: ChangeKind, ty: EntityType, id: i64) -> String {
        let op = match kind {
            ChangeKind::Created => Operation::Create,
            ChangeKind::Updated => Operation::Update,
            ChangeKind::Deleted => Operation::Delete,
        };
        stela_log::canonical_entity_entry(op, ty.name(), id, id, "", "1970-01-01T00:00:00Z", "")
            .unwrap()
    }

    /// A history of commits of different sizes: runs of created Observations and Things,
    /// updates, deletes, entities created in the middle of others' runs, commits crossing
    /// tile boundaries.
    fn history() -> Vec<Vec<(ChangeKind, EntityType, i64)>> {
        use ChangeKind::{Created, Deleted, Updated};
        let (thing, observation) = (EntityType::Thing, EntityType::Observation);
        let mut commits = vec![vec![(Created, thing, 1), (Created, thing, 2)]];
        let mut next_observation = 1;
        for size in [1, 200, 300, 5, 1000] {
            commits.push(
                (next_observation..next_observation + size)
                    .map(|id| (Created, observation, id))
                    .collect(),
            );
            next_observation += size;
        }
        commits.push(vec![
            (Created, thing, 3),
            (Updated, observation, 7),
            (Created, observation, next_observation),
            (Created, thing, 5), // 4 was rolled back: ids have gaps
            (Deleted, observation, 8),
            (Updated, thing, 2),
        ]);
        commits.push(vec![(Updated, observation, 7), (Deleted, thing, 2), (Created, thing, 6)]);
        commits
    }

    /// A log with [`history`] written to it, commit by commit; its entries in order.
    fn log_of_history() -> (Connection, Vec<String>) {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn).unwrap();
        let mut appender = Appender::new();
        let mut all = Vec::new();
        for changes in history() {
            let changes: Vec<_> = changes
                .into_iter()
                .map(|(kind, ty, id)| (kind, ty, id, entry_of(kind, ty, id)))
                .collect();
            appender = commit(&mut conn, &appender, &changes);
            all.extend(changes.into_iter().map(|(.., text)| text));
        }
        (conn, all)
    }

    #[test]
    fn bundles_hold_a_commits_entries_within_one_tile() {
        let (conn, all) = log_of_history();
        let mut memory = MemoryTree::new();
        for text in &all {
            memory.append_entry(text.as_bytes()).unwrap();
        }
        let n = all.len() as u64;
        let bundles: Vec<(u64, usize)> = conn
            .prepare("SELECT first, count, entries_lz4 FROM log_bundles ORDER BY first")
            .unwrap()
            .query_map([], |r| {
                let first = r.get::<_, i64>(0)? as u64;
                let text = unpack_bundle(first, r.get(1)?, &r.get::<_, Vec<u8>>(2)?).unwrap();
                Ok((first, text.split('\n').count()))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // One row per commit and tile: the commit of 1,000 entries at 508 is five.
        assert_eq!(bundles.len(), 13, "{bundles:?}");
        for (first, count) in &bundles {
            assert_eq!(first / 256, (first + *count as u64 - 1) / 256, "bundle at {first}");
        }
        assert_eq!(log_size(Conn::Sqlite(&conn)).unwrap(), n);
        assert_eq!(entries_range(Conn::Sqlite(&conn), 0, n + 10).unwrap(), all);
        assert_eq!(entries_range(Conn::Sqlite(&conn), 250, 20).unwrap(), all[250..270]);
        assert_eq!(entries_range(Conn::Sqlite(&conn), 512, 256).unwrap(), all[512..768]);
        let restored = load_appender(Conn::Sqlite(&conn)).unwrap();
        assert_eq!((restored.size(), restored.root()), (n, memory.root()));
        assert_eq!(
            stela_log::read_tile(
                &TileId { level: 0, index: 5, width: (n - 1280) as u16 },
                &NodeReader { conn: Conn::Sqlite(&conn) }
            )
            .unwrap(),
            stela_log::read_tile(&TileId { level: 0, index: 5, width: (n - 1280) as u16 }, &memory)
                .unwrap(),
        );
    }

    /// What `entries_of` must give: every entry of the entity in log order, from the texts.
    fn expected_history(all: &[String], ty: EntityType, id: i64) -> Vec<(u64, String)> {
        all.iter()
            .enumerate()
            .filter(|(_, text)| {
                let entry = LogEntry::from_canonical_json(text).unwrap();
                entry.entity_type == ty.name() && entry.entity_id == id
            })
            .map(|(index, text)| (index as u64, text.clone()))
            .collect()
    }

    #[test]
    fn an_entitys_whole_history_is_found_also_after_its_delete() {
        let (conn, all) = log_of_history();
        for (ty, ids) in [(EntityType::Thing, 1..8), (EntityType::Observation, 1..1510)] {
            for id in ids {
                assert_eq!(
                    entries_of(Conn::Sqlite(&conn), ty, id).unwrap(),
                    expected_history(&all, ty, id),
                    "{ty}({id})"
                );
            }
        }
        assert_eq!(entries_of(Conn::Sqlite(&conn), EntityType::Thing, 2).unwrap().len(), 3);
        let runs: i64 =
            conn.query_row("SELECT COUNT(*) FROM log_creates", [], |r| r.get(0)).unwrap();
        let history: i64 =
            conn.query_row("SELECT COUNT(*) FROM log_history", [], |r| r.get(0)).unwrap();
        // Thing 1-2; the five Observation commits; Thing 3, Observation 1507, Thing 5; Thing 6.
        assert_eq!((runs, history), (10, 5));
        for table in ["log_bundles", "log_creates", "log_history"] {
            let refused = conn.execute(&format!("DELETE FROM {table}"), []).unwrap_err();
            assert!(refused.to_string().contains("append-only"), "{table}: {refused}");
        }
    }

    /// Writes `commits` the way schema version 2 stored the log: a row per entry, the nodes of
    /// the tile levels, a checkpoint.
    fn write_version_2(conn: &mut Connection, all: &mut Vec<String>, memory: &mut MemoryTree) {
        crate::migrations::migrate_to(conn, 2).unwrap();
        let tx = conn.transaction().unwrap();
        let mut appender = Appender::new();
        for changes in history() {
            let mut leaves = Vec::new();
            for (kind, ty, id) in changes {
                let text = entry_of(kind, ty, id);
                tx.execute(
                    "INSERT INTO log_entries (idx, entity_type, entity_id, entry) VALUES (?1, ?2, ?3, ?4)",
                    params![all.len() as i64, ty.name(), id, text],
                )
                .unwrap();
                leaves.push(stela_log::leaf_hash(text.as_bytes()));
                memory.append_entry(text.as_bytes()).unwrap();
                all.push(text);
            }
            for (id, hash) in appender.append(&leaves).unwrap().nodes {
                if stores_level(id.level) {
                    tx.execute(
                        "INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
                        params![i64::from(id.level), id.index as i64, hash.as_slice()],
                    )
                    .unwrap();
                }
            }
        }
        store_checkpoint(Conn::Sqlite(&tx), all.len() as u64, "a signed note").unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_version_2_log_migrates_with_the_same_entries_root_and_receipts() {
        let mut conn = Connection::open_in_memory().unwrap();
        let (mut all, mut memory) = (Vec::new(), MemoryTree::new());
        write_version_2(&mut conn, &mut all, &mut memory);
        let n = all.len() as u64;
        crate::migrations::migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 5);
        let old: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'log_entries%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the old table, its index and triggers are gone");
        assert_eq!(log_size(Conn::Sqlite(&conn)).unwrap(), n);
        assert_eq!(entries_range(Conn::Sqlite(&conn), 0, n).unwrap(), all);
        let reader = NodeReader { conn: Conn::Sqlite(&conn) };
        assert_eq!(stela_log::tree_root(n, &reader).unwrap(), memory.root());
        let restored = load_appender(Conn::Sqlite(&conn)).unwrap();
        assert_eq!((restored.size(), restored.root()), (n, memory.root()));
        // A receipt: the entity's entries, each with its inclusion proof, and the checkpoint.
        for (ty, ids) in [(EntityType::Thing, 1..8), (EntityType::Observation, 1..1510)] {
            for id in ids {
                let entries = entries_of(Conn::Sqlite(&conn), ty, id).unwrap();
                assert_eq!(entries, expected_history(&all, ty, id), "{ty}({id})");
                for (index, _) in entries {
                    assert_eq!(
                        stela_log::inclusion_proof(index, n, &reader).unwrap(),
                        stela_log::inclusion_proof(index, n, &memory).unwrap(),
                        "{ty}({id}) at {index}"
                    );
                }
            }
        }
        assert_eq!(
            checkpoint_at(Conn::Sqlite(&conn), n).unwrap().as_deref(),
            Some("a signed note")
        );
        // Migrated bundles are whole tiles; the log goes on growing after them.
        let first_bundles: Vec<i64> = conn
            .prepare("SELECT first FROM log_bundles ORDER BY first")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(first_bundles, (0..=n as i64 / 256).map(|t| t * 256).collect::<Vec<_>>());
        let text = entry_of(ChangeKind::Created, EntityType::Thing, 7);
        let next = commit(
            &mut conn,
            &restored,
            &[(ChangeKind::Created, EntityType::Thing, 7, text.clone())],
        );
        memory.append_entry(text.as_bytes()).unwrap();
        assert_eq!(next.root(), memory.root());
        assert_eq!(entries_of(Conn::Sqlite(&conn), EntityType::Thing, 7).unwrap(), vec![(n, text)]);
    }

    #[test]
    fn a_version_2_log_that_cannot_be_bundled_is_not_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate_to(&mut conn, 2).unwrap();
        conn.execute(
            "INSERT INTO log_entries (idx, entity_type, entity_id, entry) VALUES (0, 'Thing', 1, ?1)",
            ["{\"a\":\n1}"],
        )
        .unwrap();
        let refused = crate::migrations::migrate(&mut conn).unwrap_err();
        assert!(refused.to_string().contains("hold_no_newline"), "{refused}");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 2);
    }

    #[test]
    fn the_audit_checks_data_and_log_and_the_index_of_entries_by_entity() {
        use serde_json::json;
        use stela_model::{DecodeMode, decode_entity};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stela.db");
        let store = crate::SqliteStore::open(&path).unwrap();
        let thing = json!({"name": "t", "description": "d",
            "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {},
                "Sensor": {"name": "s", "description": "d", "encodingType": "x", "metadata": "x"},
                "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}}]});
        let feature = json!({"name": "f", "description": "d", "encodingType": "application/geo+json",
            "feature": {"type": "Point", "coordinates": [5, 6]}});
        let decode = |ty, body: &serde_json::Value, mode| decode_entity(ty, body, mode).unwrap();
        store
            .write(0, |tx| {
                tx.create(
                    &decode(EntityType::FeatureOfInterest, &feature, DecodeMode::Create),
                    None,
                )?;
                tx.create(&decode(EntityType::Thing, &thing, DecodeMode::Create), None)
            })
            .unwrap();
        let items: Vec<crate::BatchItem> = (0..600)
            .map(|i| {
                let body = json!({"result": i, "phenomenonTime": "2024-01-01T00:00:00Z",
                    "Datastream": {"@iot.id": 1}, "FeatureOfInterest": {"@iot.id": 1}});
                (decode(EntityType::Observation, &body, DecodeMode::Create), None)
            })
            .collect();
        store.write(1, |tx| Ok::<_, StoreError>(tx.create_batch(&items))).unwrap();
        let patch = decode(EntityType::Observation, &json!({"result": -1}), DecodeMode::Patch);
        store
            .write(2, |tx| {
                tx.update(EntityType::Observation, 10, &patch, false)?;
                tx.delete(EntityType::Observation, 11)
            })
            .unwrap();
        let key =
            stela_log::SignerKey::from_seed("stela.test/log", &[7; 32]).unwrap().verifier_key();
        let audit = || store.read(|rx| rx.audit_log(&key)).unwrap();
        let clean = audit();
        assert_eq!(clean.problems, Vec::<String>::new());
        assert_eq!(clean.entries, store.read(|rx| rx.log_size()).unwrap());
        // A deleted Observation keeps its whole history.
        let deleted = store.read(|rx| rx.entity_log(EntityType::Observation, 11)).unwrap();
        let ops: Vec<Operation> = deleted
            .iter()
            .map(|(_, text)| LogEntry::from_canonical_json(text).unwrap().op)
            .collect();
        assert_eq!(ops, [Operation::Create, Operation::Delete]);
        let updated = store.read(|rx| rx.entity_log(EntityType::Observation, 10)).unwrap();
        assert_eq!(updated.len(), 2);

        // Behind the server's back: an Observation edited, another removed.
        let db = Connection::open(&path).unwrap();
        db.execute("UPDATE observations SET result = 99 WHERE id = 300", []).unwrap();
        db.execute("DELETE FROM observations WHERE id = 400", []).unwrap();
        let tampered = audit();
        assert_eq!(
            tampered.problems,
            [
                "Observation(300) differs from its newest log entry",
                "Observation(400) is in the log but missing from the store"
            ]
        );
        // The index of entries by entity, rewritten (its triggers dropped): found too.
        db.execute_batch(
            "DROP TRIGGER log_creates_append_only_update;
             UPDATE log_creates SET count = count - 1 WHERE entity_type = 'Observation' AND count > 100;",
        )
        .unwrap();
        let unindexed = audit().problems;
        assert!(
            unindexed.iter().any(|p| p.contains("not indexed as the Create of Observation(600)")),
            "{unindexed:?}"
        );
        assert!(
            unindexed.iter().any(|p| p.contains("the index of the log by entity names")),
            "{unindexed:?}"
        );
    }
}
