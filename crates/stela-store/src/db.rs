//! One connection interface over both backends, so that the store's logic (validation, links,
//! generated Features, extents, the log) is written once.
//!
//! ```text
//!   write.rs / read.rs / ledger.rs … ──► Conn::{execute, query_row, query_each, insert_id}
//!                                          ├─ Conn::Sqlite   rusqlite, statements cached
//!                                          └─ Conn::Postgres postgres (sync client), statements
//!                                             cached per connection; `?N` placeholders become `$N`
//! ```
//!
//! Values cross the interface as SQLite's five storage classes (`rusqlite::types::Value`): the
//! store's code reads and binds integers, reals, text. On PostgreSQL the column's declared type
//! decides the wire form ([`PgValue`], [`PgCell`]): an integer bound to a `timestamptz` is
//! microseconds since the Unix epoch, text bound to a `jsonb` is JSON text, and back. So a time
//! column is a real `timestamptz` and a JSON column real `jsonb` on PostgreSQL, while the code
//! above sees microseconds and JSON text on both.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

use postgres::types::{FromSql as PgFromSql, IsNull, ToSql as PgToSql, Type};
use rusqlite::types::{FromSql, ToSql, ToSqlOutput, Value as Sql, ValueRef};

use crate::StoreError;

/// The SQL dialect of a connection, for the few statements whose text differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The scalar minimum and maximum of two values (`MIN(a, b)` is an aggregate on PostgreSQL).
    pub(crate) fn min_max(self) -> (&'static str, &'static str) {
        match self {
            Dialect::Sqlite => ("MIN", "MAX"),
            Dialect::Postgres => ("LEAST", "GREATEST"),
        }
    }

    /// A table of ids, one per row in a column `value`, from a JSON array bound to `param`.
    pub(crate) fn id_table(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({param})"),
            Dialect::Postgres => format!(
                "(SELECT CAST(value AS bigint) AS value FROM jsonb_array_elements_text(CAST({param} AS jsonb)))"
            ),
        }
    }
}

/// The entity types whose ids come from a sequence on PostgreSQL (every type), in a fixed
/// order.
const ID_TYPES: [stela_model::EntityType; 9] = stela_model::EntityType::ALL;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Bound parameters: `rusqlite`'s `ToSql` values, converted per backend.
pub(crate) type Params<'p> = &'p [&'p dyn ToSql];

/// `values` as bound parameters.
pub(crate) fn params_of(values: &[Sql]) -> Vec<&dyn ToSql> {
    values.iter().map(|v| v as &dyn ToSql).collect()
}

/// A connection inside a transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgConn),
}

/// A row being read.
pub(crate) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r [Sql]),
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Row::Sqlite(_) => "Row::Sqlite",
            Row::Postgres(_) => "Row::Postgres",
        })
    }
}

impl Row<'_> {
    /// The value of column `index`, converted as `rusqlite` converts it.
    pub(crate) fn get<T: FromSql>(&self, index: usize) -> Result<T, StoreError> {
        match self {
            Row::Sqlite(row) => Ok(row.get(index)?),
            Row::Postgres(cells) => {
                let cell = cells.get(index).ok_or_else(|| {
                    StoreError::Corrupt(format!("no column {index} in a row of {}", cells.len()))
                })?;
                T::column_result(ValueRef::from(cell))
                    .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
            }
        }
    }

    /// The backend the row comes from.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Row::Sqlite(_) => Dialect::Sqlite,
            Row::Postgres(_) => Dialect::Postgres,
        }
    }
}

impl<'a> Conn<'a> {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize, StoreError> {
        match self {
            Conn::Sqlite(conn) => Ok(conn.prepare_cached(sql)?.execute(params)?),
            Conn::Postgres(pg) => pg.execute(sql, params),
        }
    }

    /// Runs an `INSERT` into a table with an `id` key; returns the new row's id.
    pub(crate) fn insert_id(&self, sql: &str, params: Params<'_>) -> Result<i64, StoreError> {
        match self {
            Conn::Sqlite(conn) => {
                conn.prepare_cached(sql)?.execute(params)?;
                Ok(conn.last_insert_rowid())
            }
            Conn::Postgres(pg) => {
                let sql = format!("{sql} RETURNING id");
                let mut id = None;
                pg.query(&sql, params, &mut |row| {
                    id = Some(row.get(0)?);
                    Ok(())
                })?;
                id.ok_or_else(|| StoreError::Corrupt("an INSERT returned no id".into()))
            }
        }
    }

    /// Calls `f` on each row the statement returns.
    pub(crate) fn query_each(
        &self,
        sql: &str,
        params: Params<'_>,
        mut f: impl FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query(params)?;
                while let Some(row) = rows.next()? {
                    f(&Row::Sqlite(row))?;
                }
                Ok(())
            }
            Conn::Postgres(pg) => pg.query(sql, params, &mut f),
        }
    }

    /// The rows the statement returns, each mapped by `f`.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.query_each(sql, params, |row| {
            out.push(f(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row the statement returns, if any, mapped by `f`.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query(params)?;
                match rows.next()? {
                    Some(row) => Ok(Some(f(&Row::Sqlite(row))?)),
                    None => Ok(None),
                }
            }
            Conn::Postgres(pg) => {
                let mut f = Some(f);
                let mut out = None;
                pg.query(sql, params, &mut |row| {
                    if let Some(f) = f.take() {
                        out = Some(f(row)?);
                    }
                    Ok(())
                })?;
                Ok(out)
            }
        }
    }

    /// The first row the statement returns, mapped by `f`; no row is corruption (the caller
    /// knows one exists, e.g. an aggregate).
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {}", first_line(sql))))
    }

    /// The next id of each of PostgreSQL's id sequences (`None` on SQLite), in the order of
    /// [`ID_TYPES`]. Sequences are not transactional: what a rolled-back insert drew stays
    /// drawn, where SQLite's AUTOINCREMENT counter rolls back with the transaction. Putting them
    /// back after a rollback ([`Conn::restore_ids`]) gives both backends the same ids for the
    /// same requests. Read once per transaction.
    pub(crate) fn next_ids(&self) -> Result<Option<Vec<i64>>, StoreError> {
        let Conn::Postgres(_) = self else { return Ok(None) };
        let sql = ID_TYPES
            .iter()
            .map(|ty| {
                format!(
                    "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {}_id_seq",
                    ty.table()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        Ok(Some(self.query_map(&sql, &[], |row| row.get(0))?))
    }

    /// The id the next row inserted into `table` (an `AUTOINCREMENT` table) gets, when the
    /// database can say: on SQLite its counter plus one (the only writer of its file holds the
    /// write lock); on PostgreSQL `None`.
    pub(crate) fn next_autoincrement_id(&self, table: &str) -> Result<Option<i64>, StoreError> {
        let Conn::Sqlite(_) = self else { return Ok(None) };
        let seq: Option<i64> = self.query_opt(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            rusqlite::params![table],
            |r| r.get(0),
        )?;
        Ok(Some(seq.unwrap_or(0) + 1))
    }

    /// Puts the id sequences back after a rollback (to a savepoint) as SQLite's counter would
    /// be: past the ids of the transaction's start (`next_ids`) and past every id the
    /// transaction still created (`created`). Call it while the transaction holds the writer
    /// lock.
    pub(crate) fn restore_ids(
        &self,
        next_ids: Option<&[i64]>,
        created: &[crate::Change],
    ) -> Result<(), StoreError> {
        let Some(next_ids) = next_ids else { return Ok(()) };
        for (ty, start) in ID_TYPES.iter().zip(next_ids) {
            let after_created = created
                .iter()
                .filter(|change| change.ty == *ty && change.kind == crate::ChangeKind::Created)
                .map(|change| change.id + 1)
                .max()
                .unwrap_or(0);
            let sql = format!("SELECT setval('{}_id_seq', ?1, false)", ty.table());
            let next = (*start).max(after_created);
            self.query_each(&sql, rusqlite::params![next], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Runs several statements without parameters.
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Conn::Postgres(pg) => pg.batch(sql),
        }
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// A PostgreSQL connection with its statement cache. Interior mutability: the store passes
/// connections by shared reference, and a connection is used by one thread at a time.
pub struct PgConn {
    /// `None` only while the connection is dropped (see `Drop`).
    client: RefCell<Option<postgres::Client>>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

/// Statements kept prepared per connection; past this the cache starts over (filters with
/// many shapes must not grow it without bound).
const MAX_PREPARED: usize = 512;

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn { client: RefCell::new(Some(client)), statements: RefCell::new(HashMap::new()) }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.borrow().as_ref().is_none_or(postgres::Client::is_closed)
    }

    fn client(&self) -> Result<std::cell::RefMut<'_, postgres::Client>, StoreError> {
        std::cell::RefMut::filter_map(self.client.borrow_mut(), Option::as_mut)
            .map_err(|_| StoreError::Unavailable("the PostgreSQL connection is closed".into()))
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let translated = placeholders(sql);
        let statement = self.client()?.prepare(&translated)?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= MAX_PREPARED {
            cache.clear();
        }
        cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn bind<'p>(
        statement: &postgres::Statement,
        params: Params<'p>,
    ) -> Result<Vec<PgValue<'p>>, StoreError> {
        if statement.params().len() != params.len() {
            return Err(StoreError::Corrupt(format!(
                "a statement with {} parameters was given {}",
                statement.params().len(),
                params.len()
            )));
        }
        params.iter().map(|p| Ok(PgValue(p.to_sql()?))).collect()
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize, StoreError> {
        let statement = self.statement(sql)?;
        let values = Self::bind(&statement, params)?;
        let refs: Vec<&(dyn PgToSql + Sync)> =
            values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect();
        let changed = self.client()?.execute(&statement, &refs)?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
        f: &mut dyn FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        let values = Self::bind(&statement, params)?;
        let refs: Vec<&(dyn PgToSql + Sync)> =
            values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect();
        let rows = self.client()?.query(&statement, &refs)?;
        let mut cells = Vec::new();
        for row in &rows {
            cells.clear();
            for index in 0..row.len() {
                let PgCell(value) = row.try_get(index)?;
                cells.push(value);
            }
            f(&Row::Postgres(&cells))?;
        }
        Ok(())
    }

    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client()?.batch_execute(sql)?)
    }
}

impl Drop for PgConn {
    /// The client says goodbye to the server on its own runtime (see [`off_async_runtime`]).
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            off_async_runtime(move || drop(client));
        }
    }
}

/// Runs `f` on a thread of its own and waits for it; `None` when it panicked. The synchronous
/// PostgreSQL client drives its connection on a runtime of its own, which cannot start on a
/// thread that already runs one (a server opens and drops its store from async code, tests are
/// async): everything that connects, or drops a connection, where that may happen goes
/// through here.
pub(crate) fn off_async_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| scope.spawn(f).join().ok())
}

/// `?N` and `?` placeholders (SQLite's) as PostgreSQL's `$N`; quoted text is left alone.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut anonymous = 0;
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        out.push(d);
                    }
                } else {
                    anonymous += 1;
                    out.push_str(&anonymous.to_string());
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A bound value on its way to PostgreSQL, in the wire form of the parameter's declared type.
#[derive(Debug)]
struct PgValue<'a>(ToSqlOutput<'a>);

type BoxError = Box<dyn StdError + Sync + Send>;

fn mismatch(value: &str, ty: &Type) -> BoxError {
    format!("a {value} cannot be bound to a parameter of type {ty}").into()
}

impl PgToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let value = match &self.0 {
            ToSqlOutput::Borrowed(v) => *v,
            ToSqlOutput::Owned(v) => ValueRef::from(v),
            _ => return Err("unsupported parameter".into()),
        };
        match value {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(i) => match *ty {
                Type::INT8 => put(i, ty, out),
                Type::INT4 => put(i32::try_from(i)?, ty, out),
                Type::INT2 => put(i16::try_from(i)?, ty, out),
                Type::BOOL => put(i != 0, ty, out),
                Type::FLOAT8 => put(i as f64, ty, out),
                Type::TIMESTAMPTZ | Type::TIMESTAMP => put(
                    i.checked_sub(PG_EPOCH_MICROS).ok_or("time out of range")?,
                    &Type::INT8,
                    out,
                ),
                Type::TEXT | Type::VARCHAR => put(i.to_string(), ty, out),
                Type::JSONB => jsonb(&i.to_string(), out),
                _ => Err(mismatch("integer", ty)),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => put(f, ty, out),
                Type::FLOAT4 => put(f as f32, ty, out),
                Type::JSONB => {
                    jsonb(&serde_json::Number::from_f64(f).ok_or("not a number")?.to_string(), out)
                }
                _ => Err(mismatch("real", ty)),
            },
            ValueRef::Text(bytes) => {
                let text = std::str::from_utf8(bytes)?;
                match *ty {
                    Type::JSONB => jsonb(text, out),
                    Type::INT8 => put(text.parse::<i64>()?, ty, out),
                    _ => put(text, ty, out),
                }
            }
            ValueRef::Blob(bytes) => match *ty {
                Type::BYTEA => put(bytes, ty, out),
                _ => Err(mismatch("blob", ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn put<T: PgToSql>(value: T, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
    value.to_sql(ty, out)
}

fn jsonb(text: &str, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
    out.extend_from_slice(&[1]);
    out.extend_from_slice(text.as_bytes());
    Ok(IsNull::No)
}

/// A value read from PostgreSQL, as the SQLite storage class the store's code expects.
struct PgCell(Sql);

impl<'a> PgFromSql<'a> for PgCell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<PgCell, BoxError> {
        Ok(PgCell(match *ty {
            Type::INT8 => Sql::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Sql::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Sql::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Sql::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Sql::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Sql::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                Sql::Integer(i64::from_sql(&Type::INT8, raw)? + PG_EPOCH_MICROS)
            }
            Type::JSONB => match raw.split_first() {
                Some((1, text)) => Sql::Text(std::str::from_utf8(text)?.to_owned()),
                _ => return Err("unknown jsonb format version".into()),
            },
            Type::BYTEA => Sql::Blob(raw.to_vec()),
            _ => Sql::Text(String::from_sql(ty, raw)?),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<PgCell, BoxError> {
        Ok(PgCell(Sql::Null))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::TIMESTAMPTZ
                | Type::TIMESTAMP
                | Type::JSONB
                | Type::BYTEA
        ) || <String as PgFromSql<'_>>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered() {
        assert_eq!(placeholders("SELECT ?1, ?12 WHERE a = ?2"), "SELECT $1, $12 WHERE a = $2");
        assert_eq!(placeholders("VALUES (?,?),(?,?)"), "VALUES ($1,$2),($3,$4)");
        assert_eq!(placeholders("SELECT '?1' || ?1"), "SELECT '?1' || $1");
    }
}
