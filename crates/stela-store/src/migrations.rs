//! The SQLite schema, versioned with `PRAGMA user_version`.
//!
//! Each migration runs once, in order, in one transaction; a database written by a newer Stela
//! (a higher version than this code knows) is refused rather than guessed at.

use rusqlite::Connection;

use crate::StoreError;
use crate::db::Conn;

/// One version's change: SQL, and for a version that moves data SQL cannot compute, a step in
/// code and SQL run after it, all in the one transaction.
/// (PostgreSQL's schema, `pg_schema.rs`, is versioned the same way.)
pub(crate) struct Migration {
    pub(crate) sql: &'static str,
    pub(crate) code: Option<fn(Conn<'_>) -> Result<(), StoreError>>,
    pub(crate) after: &'static str,
}

impl Migration {
    pub(crate) const fn sql(sql: &'static str) -> Migration {
        Migration { sql, code: None, after: "" }
    }

    /// Runs the migration's SQL, code and SQL after it on `conn`, inside its transaction.
    pub(crate) fn apply(&self, conn: Conn<'_>) -> Result<(), StoreError> {
        conn.execute_batch(self.sql)?;
        if let Some(code) = self.code {
            code(conn)?;
        }
        conn.execute_batch(self.after)
    }
}

/// The schema, one entry per version. Never edit a released entry: append a new one.
const MIGRATIONS: &[Migration] = &[
    Migration::sql(
        r#"
CREATE TABLE things (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    properties TEXT
);
CREATE TABLE locations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    encoding_type TEXT NOT NULL,
    location TEXT NOT NULL,
    properties TEXT
);
CREATE TABLE things_locations (
    thing_id INTEGER NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    location_id INTEGER NOT NULL REFERENCES locations(id) ON DELETE CASCADE,
    PRIMARY KEY (thing_id, location_id)
) WITHOUT ROWID;
CREATE INDEX things_locations_by_location ON things_locations(location_id, thing_id);
CREATE TABLE historical_locations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    thing_id INTEGER NOT NULL REFERENCES things(id) ON DELETE CASCADE
);
CREATE INDEX historical_locations_by_thing ON historical_locations(thing_id, time);
CREATE TABLE locations_historical_locations (
    location_id INTEGER NOT NULL REFERENCES locations(id) ON DELETE CASCADE,
    historical_location_id INTEGER NOT NULL REFERENCES historical_locations(id) ON DELETE CASCADE,
    PRIMARY KEY (location_id, historical_location_id)
) WITHOUT ROWID;
CREATE INDEX locations_historical_locations_by_hl
    ON locations_historical_locations(historical_location_id, location_id);
CREATE TABLE sensors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    encoding_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    properties TEXT
);
CREATE TABLE observed_properties (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    description TEXT NOT NULL,
    properties TEXT
);
CREATE TABLE datastreams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    unit_of_measurement TEXT NOT NULL,
    observation_type TEXT NOT NULL,
    observed_area TEXT,
    phenomenon_time_start INTEGER,
    phenomenon_time_end INTEGER,
    result_time_start INTEGER,
    result_time_end INTEGER,
    properties TEXT,
    thing_id INTEGER NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    sensor_id INTEGER NOT NULL REFERENCES sensors(id) ON DELETE CASCADE,
    observed_property_id INTEGER NOT NULL REFERENCES observed_properties(id) ON DELETE CASCADE
);
CREATE INDEX datastreams_by_thing ON datastreams(thing_id);
CREATE INDEX datastreams_by_sensor ON datastreams(sensor_id);
CREATE INDEX datastreams_by_observed_property ON datastreams(observed_property_id);
CREATE TABLE features (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    encoding_type TEXT NOT NULL,
    feature TEXT NOT NULL,
    properties TEXT,
    -- The Location this feature was generated from, while that Location is unchanged.
    generated_from_location INTEGER REFERENCES locations(id) ON DELETE SET NULL
);
CREATE INDEX features_by_location ON features(generated_from_location);
CREATE TABLE multi_datastreams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    unit_of_measurements TEXT NOT NULL,
    observation_type TEXT NOT NULL,
    multi_observation_data_types TEXT NOT NULL,
    observed_area TEXT,
    phenomenon_time_start INTEGER,
    phenomenon_time_end INTEGER,
    result_time_start INTEGER,
    result_time_end INTEGER,
    properties TEXT,
    thing_id INTEGER NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    sensor_id INTEGER NOT NULL REFERENCES sensors(id) ON DELETE CASCADE
);
CREATE INDEX multi_datastreams_by_thing ON multi_datastreams(thing_id);
CREATE INDEX multi_datastreams_by_sensor ON multi_datastreams(sensor_id);
CREATE TABLE multi_datastreams_observed_properties (
    multi_datastream_id INTEGER NOT NULL REFERENCES multi_datastreams(id) ON DELETE CASCADE,
    observed_property_id INTEGER NOT NULL REFERENCES observed_properties(id) ON DELETE CASCADE,
    -- The position of the ObservedProperty in the MultiDatastream's result arrays.
    rank INTEGER NOT NULL,
    PRIMARY KEY (multi_datastream_id, observed_property_id)
) WITHOUT ROWID;
CREATE INDEX multi_datastreams_observed_properties_by_op
    ON multi_datastreams_observed_properties(observed_property_id, multi_datastream_id);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    phenomenon_time_start INTEGER NOT NULL,
    -- NULL when phenomenonTime is an instant.
    phenomenon_time_end INTEGER,
    result_time INTEGER,
    -- 0 null, 1 boolean, 2 number, 3 string, 4 object or array (JSON text in result).
    result_type INTEGER NOT NULL,
    result,
    result_quality TEXT,
    valid_time_start INTEGER,
    valid_time_end INTEGER,
    parameters TEXT,
    datastream_id INTEGER REFERENCES datastreams(id) ON DELETE CASCADE,
    feature_id INTEGER NOT NULL REFERENCES features(id) ON DELETE CASCADE,
    multi_datastream_id INTEGER REFERENCES multi_datastreams(id) ON DELETE CASCADE,
    -- An Observation belongs to a Datastream or to a MultiDatastream, never both.
    CHECK ((datastream_id IS NULL) <> (multi_datastream_id IS NULL))
);
CREATE INDEX observations_by_datastream_time ON observations(datastream_id, phenomenon_time_start, id);
-- Ordered by (datastream_id, id): a Datastream's Observations in the default order (by id)
-- without sorting, e.g. the first few of every Datastream in an $expand.
CREATE INDEX observations_by_datastream ON observations(datastream_id);
CREATE INDEX observations_by_multi_datastream_time
    ON observations(multi_datastream_id, phenomenon_time_start, id) WHERE multi_datastream_id IS NOT NULL;
CREATE INDEX observations_by_multi_datastream
    ON observations(multi_datastream_id) WHERE multi_datastream_id IS NOT NULL;
CREATE INDEX observations_by_feature ON observations(feature_id);
"#,
    ),
    Migration::sql(
        r#"
-- The verifiable log: one entry per committed change (RFC 8785 canonical JSON), the hashes of
-- the perfect subtrees of its Merkle tree (RFC 6962), and the signed checkpoints.
CREATE TABLE log_entries (
    idx INTEGER PRIMARY KEY,
    entity_type TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX log_entries_by_entity ON log_entries(entity_type, entity_id, idx);
CREATE TABLE log_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE log_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
-- The log is append-only: the store itself refuses to change or remove what it recorded.
CREATE TRIGGER log_entries_append_only_update BEFORE UPDATE ON log_entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_entries_append_only_delete BEFORE DELETE ON log_entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_nodes_append_only_update BEFORE UPDATE ON log_nodes
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_nodes_append_only_delete BEFORE DELETE ON log_nodes
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_checkpoints_append_only_update BEFORE UPDATE ON log_checkpoints
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_checkpoints_append_only_delete BEFORE DELETE ON log_checkpoints
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
"#,
    ),
    Migration::sql(
        r#"
-- The log's entries in bundles (issue #7): a row per entry and an index row per entry were
-- most of what the log cost on ingest. Now a commit writes one row per 256-entry tile it
-- touches, and the entity -> entries lookup keeps no row per entry:
--   log_bundles  the entries of one commit inside one tile, in order, joined by newlines
--                (canonical JSON never holds a raw newline); `first` is the index of its first
--                entry. A bundle never spans two tiles, so a tile's entries are the bundles
--                starting inside it.
--   log_creates  runs of create entries: entity ids first_id .. first_id + count - 1 of one type
--                created by the consecutive entries first_idx .. first_idx + count - 1 (a bulk
--                insert of 1,000 Observations is one row).
--   log_history  every other entry (updates and deletes, which are rare) by entity.
-- An entity's history is its create (log_creates) and its history rows, also after it was
-- deleted: ids are never reused and both tables are append-only.
CREATE TABLE log_bundles (
    first INTEGER PRIMARY KEY,
    entries TEXT NOT NULL
);
CREATE TABLE log_creates (
    entity_type TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    first_idx INTEGER NOT NULL,
    PRIMARY KEY (entity_type, first_id)
) WITHOUT ROWID;
CREATE TABLE log_history (
    entity_type TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (entity_type, entity_id, idx)
) WITHOUT ROWID;

-- The old entries move only if they can be joined by newlines and renumbered by position:
-- numbered 0 .. n - 1 without gaps, no raw newline in any of them. Otherwise the migration
-- fails (a CHECK constraint) and the database stays at version 2.
CREATE TEMP TABLE migration_v3_precondition (
    log_entries_are_numbered_from_0_without_gaps_and_hold_no_newline INTEGER NOT NULL
        CHECK (log_entries_are_numbered_from_0_without_gaps_and_hold_no_newline)
);
INSERT INTO migration_v3_precondition
    SELECT COALESCE(MIN(idx), 0) = 0 AND COALESCE(MAX(idx) + 1, 0) = COUNT(*)
       AND NOT EXISTS (SELECT 1 FROM log_entries WHERE instr(entry, char(10)) > 0)
    FROM log_entries;
DROP TABLE migration_v3_precondition;

INSERT INTO log_bundles (first, entries)
    SELECT MIN(idx), group_concat(entry, char(10) ORDER BY idx)
    FROM log_entries GROUP BY idx / 256;
-- A run continues while the next create entry directly follows (idx + 1) and creates the next
-- id of the same type.
INSERT INTO log_creates (entity_type, first_id, count, first_idx)
    SELECT entity_type, MIN(entity_id), COUNT(*), MIN(idx) FROM (
        SELECT entity_type, entity_id, idx, SUM(starts) OVER (ORDER BY idx) AS run FROM (
            SELECT entity_type, entity_id, idx,
                NOT (LAG(entity_type) OVER previous IS entity_type
                     AND LAG(entity_id) OVER previous IS entity_id - 1
                     AND LAG(idx) OVER previous IS idx - 1) AS starts
            FROM log_entries WHERE json_extract(entry, '$.op') = 'create'
            WINDOW previous AS (ORDER BY idx)))
    GROUP BY run;
INSERT INTO log_history (entity_type, entity_id, idx)
    SELECT entity_type, entity_id, idx FROM log_entries
    WHERE json_extract(entry, '$.op') <> 'create';

DROP TRIGGER log_entries_append_only_update;
DROP TRIGGER log_entries_append_only_delete;
DROP TABLE log_entries;

CREATE TRIGGER log_bundles_append_only_update BEFORE UPDATE ON log_bundles
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_bundles_append_only_delete BEFORE DELETE ON log_bundles
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_creates_append_only_update BEFORE UPDATE ON log_creates
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_creates_append_only_delete BEFORE DELETE ON log_creates
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_history_append_only_update BEFORE UPDATE ON log_history
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_history_append_only_delete BEFORE DELETE ON log_history
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
"#,
    ),
    Migration {
        sql: r#"
-- The log's bundles compressed (issue #7): their text was two thirds of the database and
-- most of the bytes each commit writes. A bundle is now its entries joined by newlines,
-- compressed with LZ4 (block format, the uncompressed length first as 4 bytes little-endian,
-- see ledger.rs `pack_bundle`), and says how many entries it holds.
ALTER TABLE log_bundles RENAME TO log_bundles_text;
CREATE TABLE log_bundles (
    first INTEGER PRIMARY KEY,
    count INTEGER NOT NULL CHECK (count > 0),
    entries_lz4 BLOB NOT NULL
);
"#,
        // Each version 3 bundle compressed into the new table, checked to read back the same.
        code: Some(crate::ledger::compress_v3_bundles),
        after: r#"
DROP TABLE log_bundles_text;
CREATE TRIGGER log_bundles_append_only_update BEFORE UPDATE ON log_bundles
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_bundles_append_only_delete BEFORE DELETE ON log_bundles
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
"#,
    },
    Migration::sql(
        r#"
-- How far each MQTT ingest journal has been written into the store: the highest journal
-- sequence number whose Observations a committed transaction created, advanced in that same
-- transaction, so that a replay after a crash skips exactly what is in. A source is one
-- journal (servers sharing a database each have their own). Bookkeeping, not an entity: not
-- in the log, not in the API.
CREATE TABLE ingest_marks (
    source TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    ),
];

/// Brings the schema of `conn` up to the newest version.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Brings the schema of `conn` up to `version` (tests build older databases with it).
pub(crate) fn migrate_to(conn: &mut Connection, version: usize) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::Schema(format!(
            "the database has schema version {current}, newer than this Stela knows ({known}); upgrade Stela"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().take(version).skip(current as usize) {
        let tx = conn.transaction()?;
        migration.apply(Conn::Sqlite(&tx))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}
