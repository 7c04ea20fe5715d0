//! Copying a whole store from SQLite to PostgreSQL (`stela migrate`), ids kept, the log
//! byte for byte, in one PostgreSQL transaction.
//!
//! ```text
//!   SqliteStore::open(from)   schema brought up to date      PgStore::open(to)   schema created
//!   SQLite read snapshot ─► tables from sqlite_master, columns from PRAGMA table_info,
//!                           parents first (PRAGMA foreign_key_list)
//!   PostgreSQL  BEGIN ─► every table and column has its counterpart? the tables are empty?
//!               (locked against writers) ─► rows in multi-row INSERTs, table by table
//!               ─► id sequences past the copied ids ─► row counts and the log's size and
//!               root equal on both? ─► COMMIT (anything wrong: ROLLBACK, nothing copied)
//!   Store::open(to) ─► the committed store reads the same log size and root
//! ```
//!
//! The tables are not listed here: whatever the SQLite schema holds is copied into the
//! same-named PostgreSQL table and columns, so new tables (the log's among them) need no
//! change here. Values cross as in the store (`db::Conn`), the declared PostgreSQL type
//! deciding the wire form; the one value that must be rewritten is a typed result (a `jsonb`
//! column `c` beside an integer `c_type`, the Observation's `result`): SQLite keeps a string
//! raw and a boolean as 0/1, PostgreSQL keeps JSON.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OpenFlags, params};
use stela_log::Hash;

use crate::columns::{RESULT_BOOL, RESULT_JSON, RESULT_NULL, RESULT_NUMBER, RESULT_STRING};
use crate::db::{Conn, PgConn};
use crate::{PgStore, ReadTx, SqliteStore, Store, StoreError};

/// Rows read from SQLite before they are inserted (and progress is reported).
const ROWS_PER_STEP: usize = 4096;

/// The PostgreSQL schema's own version table: never copied, may hold a row.
const SCHEMA_BOOKKEEPING: &str = "stela_schema";

/// How far the copy of one table has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress<'a> {
    /// The table being copied.
    pub table: &'a str,
    /// Rows copied so far.
    pub copied: u64,
    /// Rows the table holds in the SQLite snapshot.
    pub total: u64,
}

/// One table copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    pub table: String,
    /// Its rows, the same number on both (checked).
    pub rows: u64,
}

/// What [`copy_sqlite_to_postgres`] copied, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The tables in the order they were copied (parents first).
    pub tables: Vec<TableCopied>,
    /// The log's size, the same on both (checked).
    pub log_size: u64,
    /// The log's root at that size, the same on both (checked): checkpoints signed on the
    /// SQLite store verify against the PostgreSQL one.
    pub log_root: Hash,
}

/// Copies the SQLite store at `from` into the PostgreSQL database at `to` (a `postgres://`
/// URL), keeping ids and the log exactly. The target's schema is created first; a target
/// holding any data is refused, and so is a SQLite table or column without a counterpart.
/// Everything is copied in one transaction, checked (row counts, log size and root) before it
/// commits: an error leaves the target as it was, schema aside.
///
/// `progress` is called as each table starts and after each step of rows. The copy runs on a
/// thread of its own (the synchronous PostgreSQL client cannot run on an async runtime's
/// thread), hence `Send`. Stop the servers using `from` first: rows written after the copy
/// starts are not copied.
pub fn copy_sqlite_to_postgres(
    from: &Path,
    to: &str,
    progress: &mut (dyn FnMut(CopyProgress<'_>) + Send),
) -> Result<CopyReport, StoreError> {
    crate::db::off_async_runtime(|| copy_here(from, to, progress))
        .unwrap_or_else(|| Err(StoreError::Corrupt("the copy panicked".into())))
}

/// A table of the SQLite store, as it will be copied.
#[derive(Debug)]
struct SourceTable {
    name: String,
    columns: Vec<String>,
    /// The tables its foreign keys point to.
    parents: Vec<String>,
    rows: u64,
}

/// A column of the PostgreSQL schema.
#[derive(Debug)]
struct TargetColumn {
    name: String,
    /// As `format_type` spells it (`bigint`, `jsonb`, `timestamp with time zone`, …).
    ty: String,
    generated: bool,
    identity: bool,
    /// NOT NULL without a default: the copy must give it a value.
    required: bool,
}

fn copy_here(
    from: &Path,
    to: &str,
    progress: &mut (dyn FnMut(CopyProgress<'_>) + Send),
) -> Result<CopyReport, StoreError> {
    if !from.is_file() {
        return Err(StoreError::Invalid(format!("no SQLite database at {}", from.display())));
    }
    // Both schemas at this Stela's version: the source migrated as a server start would, the
    // target created.
    drop(SqliteStore::open(from)?);
    drop(PgStore::open(to)?);

    let mut source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    // One snapshot for the counts, the rows and the log (WAL: writers do not disturb it).
    let snapshot = source.transaction()?;
    let tables = source_tables(&snapshot)?;
    let source_log = log_size_and_root(&ReadTx { conn: Conn::Sqlite(&snapshot) })?;

    let target = connect(to)?;
    target.batch("BEGIN")?;
    let copied = copy_in_transaction(&snapshot, &target, &tables, source_log, progress);
    match copied {
        Ok(()) => target.batch("COMMIT")?,
        Err(error) => {
            if !target.is_closed() {
                let _ = target.batch("ROLLBACK");
            }
            return Err(error);
        }
    }
    drop(target);

    // The committed store, opened as a server opens it (the log's right edge loaded).
    let store = Store::open(to)?;
    let target_log = store.read(log_size_and_root)?;
    if target_log != source_log {
        return Err(StoreError::Corrupt(format!(
            "after the copy the PostgreSQL store's log has {} entries, root {}, where the SQLite \
             store's has {}, root {}",
            target_log.0,
            hex(&target_log.1),
            source_log.0,
            hex(&source_log.1)
        )));
    }
    Ok(CopyReport {
        tables: tables
            .iter()
            .map(|table| TableCopied { table: table.name.clone(), rows: table.rows })
            .collect(),
        log_size: source_log.0,
        log_root: source_log.1,
    })
}

fn connect(url: &str) -> Result<PgConn, StoreError> {
    let mut config: postgres::Config =
        url.parse().map_err(|e| StoreError::Schema(format!("not a PostgreSQL URL: {e}")))?;
    config.application_name("stela migrate");
    let client = config.connect(postgres::NoTls).map_err(|e| {
        StoreError::Unavailable(format!("cannot connect to the target PostgreSQL database: {e}"))
    })?;
    Ok(PgConn::new(client))
}

fn log_size_and_root(rx: &ReadTx<'_>) -> Result<(u64, Hash), StoreError> {
    let size = rx.log_size()?;
    Ok((size, rx.log_root(size)?))
}

/// The SQLite store's tables, parents before children.
fn source_tables(source: &Connection) -> Result<Vec<SourceTable>, StoreError> {
    let names: Vec<String> = source
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY rowid",
        )?
        .query_map(params![SCHEMA_BOOKKEEPING], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let columns: Vec<String> = source
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map(params![name], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let parents: Vec<String> = source
            .prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")?
            .query_map(params![name], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let rows: i64 =
            source.query_row(&format!("SELECT COUNT(*) FROM {}", quoted(&name)), [], |row| {
                row.get(0)
            })?;
        tables.push(SourceTable { name, columns, parents, rows: u64::try_from(rows).unwrap_or(0) });
    }
    parents_first(tables)
}

/// `tables` ordered so that every table comes after the tables its foreign keys point to; among
/// the tables ready at a time, the first in the given order goes first.
fn parents_first(mut pending: Vec<SourceTable>) -> Result<Vec<SourceTable>, StoreError> {
    let known: HashSet<String> = pending.iter().map(|table| table.name.clone()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|table| {
            table.parents.iter().all(|parent| {
                *parent == table.name || !known.contains(parent) || placed.contains(parent)
            })
        });
        let Some(ready) = ready else {
            let names: Vec<&str> = pending.iter().map(|table| table.name.as_str()).collect();
            return Err(StoreError::Schema(format!(
                "the foreign keys of the SQLite tables {} form a cycle; no copy order",
                names.join(", ")
            )));
        };
        let table = pending.remove(ready);
        placed.insert(table.name.clone());
        ordered.push(table);
    }
    Ok(ordered)
}

/// The PostgreSQL schema's tables (not an extension's, like PostGIS's `spatial_ref_sys`) and
/// their columns, in order.
fn target_tables(target: Conn<'_>) -> Result<HashMap<String, Vec<TargetColumn>>, StoreError> {
    let mut tables: HashMap<String, Vec<TargetColumn>> = HashMap::new();
    target.query_each(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                a.attgenerated <> '', a.attidentity <> '',
                a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                             AND d.deptype = 'e')
         ORDER BY c.relname, a.attnum",
        params![],
        |row| {
            let table: String = row.get(0)?;
            tables.entry(table).or_default().push(TargetColumn {
                name: row.get(1)?,
                ty: row.get(2)?,
                generated: row.get::<i64>(3)? != 0,
                identity: row.get::<i64>(4)? != 0,
                required: row.get::<i64>(5)? != 0,
            });
            Ok(())
        },
    )?;
    Ok(tables)
}

/// Refuses a copy the PostgreSQL schema cannot hold: a table or column it lacks, a column it
/// generates itself, a column it requires that SQLite does not have.
fn check_counterparts(
    tables: &[SourceTable],
    target: &HashMap<String, Vec<TargetColumn>>,
) -> Result<(), StoreError> {
    for table in tables {
        let Some(columns) = target.get(&table.name) else {
            return Err(StoreError::Schema(format!(
                "the SQLite table {} has no counterpart in the PostgreSQL schema; \
                 nothing was copied",
                table.name
            )));
        };
        for column in &table.columns {
            match columns.iter().find(|c| c.name == *column) {
                None => {
                    return Err(StoreError::Schema(format!(
                        "the SQLite column {}.{column} has no counterpart in the PostgreSQL \
                         schema; nothing was copied",
                        table.name
                    )));
                }
                Some(c) if c.generated => {
                    return Err(StoreError::Schema(format!(
                        "the column {}.{column} is generated on PostgreSQL and cannot be \
                         copied; nothing was copied",
                        table.name
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(missing) =
            columns.iter().find(|c| c.required && !table.columns.contains(&c.name))
        {
            return Err(StoreError::Schema(format!(
                "the PostgreSQL column {}.{} needs a value the SQLite table does not have; \
                 nothing was copied",
                table.name, missing.name
            )));
        }
    }
    Ok(())
}

fn copy_in_transaction(
    source: &Connection,
    target_conn: &PgConn,
    tables: &[SourceTable],
    source_log: (u64, Hash),
    progress: &mut (dyn FnMut(CopyProgress<'_>) + Send),
) -> Result<(), StoreError> {
    let target = Conn::Postgres(target_conn);
    let schema = target_tables(target)?;
    check_counterparts(tables, &schema)?;

    // No writer (a server, another copy) while the tables are checked and filled.
    let mut all: Vec<&String> =
        schema.keys().filter(|name| name.as_str() != SCHEMA_BOOKKEEPING).collect();
    all.sort();
    let list = all.iter().map(|name| quoted(name)).collect::<Vec<_>>().join(", ");
    target.execute_batch(&format!("LOCK TABLE {list} IN SHARE ROW EXCLUSIVE MODE"))?;
    let mut holding = Vec::new();
    for name in &all {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(name));
        if target.query_row(&sql, params![], |row| row.get::<i64>(0))? != 0 {
            holding.push(name.as_str());
        }
    }
    if !holding.is_empty() {
        return Err(StoreError::Invalid(format!(
            "the PostgreSQL database already holds data (tables {}); a store is copied only \
             into an empty one",
            holding.join(", ")
        )));
    }

    for table in tables {
        let columns = &schema[&table.name];
        copy_table(source, target, table, columns, progress)?;
        advance_sequences(source, target, table, columns)?;
    }

    for table in tables {
        let sql = format!("SELECT COUNT(*) FROM {}", quoted(&table.name));
        let rows = target.query_row(&sql, params![], |row| row.get::<i64>(0))?;
        if u64::try_from(rows).ok() != Some(table.rows) {
            return Err(StoreError::Corrupt(format!(
                "the copy of {} has {rows} rows, the SQLite table {}; nothing was copied",
                table.name, table.rows
            )));
        }
    }
    let target_log = log_size_and_root(&ReadTx { conn: target })?;
    if target_log != source_log {
        return Err(StoreError::Corrupt(format!(
            "the copied log has {} entries, root {}, the SQLite store's {}, root {}; nothing \
             was copied",
            target_log.0,
            hex(&target_log.1),
            source_log.0,
            hex(&source_log.1)
        )));
    }
    Ok(())
}

/// How a column's SQLite value becomes the PostgreSQL one.
#[derive(Debug, Clone, Copy)]
enum Cell {
    /// As it is; the PostgreSQL column's type decides the wire form (`db::PgValue`).
    AsIs,
    /// A typed result, its type code in the column at this index.
    TypedResult { type_column: usize },
}

fn copy_table(
    source: &Connection,
    target: Conn<'_>,
    table: &SourceTable,
    target_columns: &[TargetColumn],
    progress: &mut (dyn FnMut(CopyProgress<'_>) + Send),
) -> Result<(), StoreError> {
    let mut report = |copied: u64| {
        progress(CopyProgress { table: &table.name, copied, total: table.rows });
    };
    report(0);
    let width = table.columns.len();
    if width == 0 || table.rows == 0 {
        return Ok(());
    }
    let cells: Vec<Cell> = table
        .columns
        .iter()
        .map(|column| {
            let is_jsonb = target_columns.iter().any(|c| c.name == *column && c.ty == "jsonb");
            let type_column = table.columns.iter().position(|c| *c == format!("{column}_type"));
            match type_column {
                Some(type_column) if is_jsonb => Cell::TypedResult { type_column },
                _ => Cell::AsIs,
            }
        })
        .collect();
    let column_list = table.columns.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
    let table_name = quoted(&table.name);
    let mut statement = source.prepare(&format!("SELECT {column_list} FROM {table_name}"))?;
    let mut rows = statement.query([])?;
    let mut values: Vec<Sql> = Vec::with_capacity(ROWS_PER_STEP * width);
    let mut row_values: Vec<Sql> = Vec::with_capacity(width);
    let mut copied = 0u64;
    while let Some(row) = rows.next()? {
        row_values.clear();
        for index in 0..width {
            row_values.push(row.get::<_, Sql>(index)?);
        }
        for (index, cell) in cells.iter().enumerate() {
            if let Cell::TypedResult { type_column } = *cell {
                let value = std::mem::replace(&mut row_values[index], Sql::Null);
                row_values[index] =
                    typed_result_as_json(&table.name, &row_values[type_column], value)?;
            }
        }
        values.append(&mut row_values);
        if values.len() == ROWS_PER_STEP * width {
            crate::rows::insert_rows(target, &table_name, &column_list, width, &values, None)?;
            copied += ROWS_PER_STEP as u64;
            values.clear();
            report(copied);
        }
    }
    if !values.is_empty() {
        crate::rows::insert_rows(target, &table_name, &column_list, width, &values, None)?;
        copied += (values.len() / width) as u64;
        report(copied);
    }
    Ok(())
}

/// A typed result as SQLite stores it (see `columns.rs`) as the JSON PostgreSQL stores.
fn typed_result_as_json(table: &str, code: &Sql, value: Sql) -> Result<Sql, StoreError> {
    let Sql::Integer(code) = *code else {
        return Err(StoreError::Corrupt(format!("a result type code in {table} is no integer")));
    };
    Ok(match (code, value) {
        (_, Sql::Null) | (RESULT_NULL, _) => Sql::Null,
        (RESULT_BOOL, Sql::Integer(b)) => Sql::Text(if b != 0 { "true" } else { "false" }.into()),
        // Bound to jsonb, numbers are written as JSON numbers (`db::PgValue`).
        (RESULT_NUMBER, value @ (Sql::Integer(_) | Sql::Real(_))) => value,
        (RESULT_STRING, Sql::Text(text)) => Sql::Text(
            serde_json::to_string(&text)
                .map_err(|e| StoreError::Corrupt(format!("a string result in {table}: {e}")))?,
        ),
        (RESULT_JSON, Sql::Text(json)) => Sql::Text(json),
        (code, value) => {
            return Err(StoreError::Corrupt(format!(
                "a result in {table} of type {code} is stored as {:?}; nothing was copied",
                value.data_type()
            )));
        }
    })
}

/// Sets the id sequences of `table` past its copied ids, and past ids SQLite has handed out
/// and that were deleted since (`sqlite_sequence`), so that both give the next entity the
/// same id.
fn advance_sequences(
    source: &Connection,
    target: Conn<'_>,
    table: &SourceTable,
    target_columns: &[TargetColumn],
) -> Result<(), StoreError> {
    let has_sqlite_sequence: bool = source.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence')",
        [],
        |row| row.get(0),
    )?;
    for column in target_columns.iter().filter(|c| c.identity) {
        let handed_out: i64 = if has_sqlite_sequence {
            source
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                    params![table.name],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .or_else(|error| match error {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    other => Err(other),
                })?
                .unwrap_or(0)
        } else {
            0
        };
        let sql = format!("SELECT MAX({}) FROM {}", quoted(&column.name), quoted(&table.name));
        let copied: Option<i64> = target.query_row(&sql, params![], |row| row.get(0))?;
        let last = handed_out.max(copied.unwrap_or(0));
        // `setval(seq, 1, false)`: the next id is 1, as on a new store.
        let (value, is_called) = if last > 0 { (last, true) } else { (1, false) };
        target.query_each(
            "SELECT setval(pg_get_serial_sequence(?1, ?2), ?3, ?4)",
            params![quoted(&table.name), column.name, value, is_called],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// A table or column name as an SQL identifier (the names come from the schemas, never from
/// a request; quoted all the same).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> SourceTable {
        SourceTable {
            name: name.into(),
            columns: vec!["id".into()],
            parents: parents.iter().map(|p| (*p).into()).collect(),
            rows: 0,
        }
    }

    fn order(tables: Vec<SourceTable>) -> Vec<String> {
        parents_first(tables).unwrap().into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn parents_are_copied_first_and_the_order_is_kept_otherwise() {
        let tables = vec![
            table("observations", &["datastreams", "features"]),
            table("log_entries", &[]),
            table("datastreams", &["things"]),
            table("things", &[]),
            table("features", &["locations"]),
            table("locations", &[]),
            table("tree", &["tree"]),
        ];
        assert_eq!(
            order(tables),
            [
                "log_entries",
                "things",
                "datastreams",
                "locations",
                "features",
                "observations",
                "tree"
            ]
        );
    }

    #[test]
    fn a_cycle_of_foreign_keys_is_refused() {
        let error = parents_first(vec![table("a", &["b"]), table("b", &["a"])]).unwrap_err();
        assert!(error.to_string().contains("cycle"), "{error}");
    }

    #[test]
    fn typed_results_become_json() {
        let t = "observations";
        let int = |i| Sql::Integer(i);
        assert_eq!(typed_result_as_json(t, &int(0), Sql::Null).unwrap(), Sql::Null);
        assert_eq!(typed_result_as_json(t, &int(1), int(1)).unwrap(), Sql::Text("true".into()));
        assert_eq!(typed_result_as_json(t, &int(1), int(0)).unwrap(), Sql::Text("false".into()));
        assert_eq!(typed_result_as_json(t, &int(2), int(7)).unwrap(), int(7));
        assert_eq!(typed_result_as_json(t, &int(2), Sql::Real(1.5)).unwrap(), Sql::Real(1.5));
        assert_eq!(
            typed_result_as_json(t, &int(3), Sql::Text("a \"b\"\n".into())).unwrap(),
            Sql::Text(r#""a \"b\"\n""#.into())
        );
        assert_eq!(
            typed_result_as_json(t, &int(4), Sql::Text("[1,{}]".into())).unwrap(),
            Sql::Text("[1,{}]".into())
        );
        assert!(typed_result_as_json(t, &int(3), int(3)).is_err());
    }
}
