//! Multi-row `INSERT`s: many rows per statement, the statements prepared once and cached.
//!
//! Rows go in chunks of at most [`MAX_CHUNK`], every chunk a power of two, so that a table has
//! at most eight statements in the cache whatever the row counts.

use rusqlite::types::Value as Sql;

use crate::StoreError;
use crate::db::{Conn, params_of};

/// The most rows one statement inserts.
pub(crate) const MAX_CHUNK: usize = 256;

/// Inserts `values.len() / width` rows into `table (columns)`, in order. Pushes to `done` the
/// rowid of the last row of each statement with the number of rows it inserted, as it goes
/// (on an error, `done` says what is already in): rows of one statement get consecutive rowids
/// (one writer; SQLite numbers the rows of a `VALUES` list in order). A statement that fails
/// inserts nothing. `done` is `None` for a table without an `id` key.
pub(crate) fn insert_rows(
    conn: Conn<'_>,
    table: &str,
    columns: &str,
    width: usize,
    values: &[Sql],
    done: Option<&mut Vec<(i64, usize)>>,
) -> Result<(), StoreError> {
    insert_rows_chunked(conn, table, columns, width, values, done, MAX_CHUNK)
}

/// [`insert_rows`] with at most `max_chunk` rows per statement (a power of two).
///
/// On SQLite a statement of several rows keeps a statement journal: a copy of every page it
/// changes, so that a foreign-key violation can undo it alone. Rows that go to many places of
/// an index (Observations of many Datastreams) change a page each, and one row per statement
/// (which needs no journal) is then cheaper.
pub(crate) fn insert_rows_chunked(
    conn: Conn<'_>,
    table: &str,
    columns: &str,
    width: usize,
    values: &[Sql],
    mut done: Option<&mut Vec<(i64, usize)>>,
    max_chunk: usize,
) -> Result<(), StoreError> {
    debug_assert!(width > 0 && values.len().is_multiple_of(width));
    debug_assert!(max_chunk.is_power_of_two() && max_chunk <= MAX_CHUNK);
    let mut rest = values;
    while !rest.is_empty() {
        let rows = rest.len() / width;
        let chunk = if rows >= max_chunk { max_chunk } else { 1 << rows.ilog2() };
        let (now, later) = rest.split_at(chunk * width);
        let sql = insert_sql(table, columns, width, chunk);
        let last = match conn {
            Conn::Sqlite(sqlite) => {
                let inserted = conn.execute(&sql, &params_of(now))?;
                if inserted != chunk {
                    return Err(StoreError::Corrupt(format!(
                        "inserting {chunk} rows into {table} inserted {inserted}"
                    )));
                }
                sqlite.last_insert_rowid()
            }
            Conn::Postgres(_) if done.is_none() => {
                conn.execute(&sql, &params_of(now))?;
                0
            }
            Conn::Postgres(_) => {
                // The ids of one statement come from one sequence, in the order of the rows
                // (one writer at a time); checked rather than assumed.
                let ids =
                    conn.query_map(&format!("{sql} RETURNING id"), &params_of(now), |row| {
                        row.get::<i64>(0)
                    })?;
                let consecutive = ids.len() == chunk && ids.windows(2).all(|w| w[1] == w[0] + 1);
                if !consecutive {
                    return Err(StoreError::Corrupt(format!(
                        "inserting {chunk} rows into {table} gave ids that are not consecutive"
                    )));
                }
                ids.last().copied().unwrap_or_default()
            }
        };
        if let Some(done) = done.as_deref_mut() {
            done.push((last, chunk));
        }
        rest = later;
    }
    Ok(())
}

fn insert_sql(table: &str, columns: &str, width: usize, rows: usize) -> String {
    // Anonymous `?` placeholders: SQLite numbers them in order.
    let row = format!("({})", vec!["?"; width].join(","));
    format!("INSERT INTO {table} ({columns}) VALUES {}", vec![row; rows].join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn rows_go_in_power_of_two_chunks_with_consecutive_ids() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a, b)").unwrap();
        let values: Vec<Sql> =
            (0..600).flat_map(|i| [Sql::Integer(i), Sql::Text(format!("row {i}"))]).collect();
        let mut done = Vec::new();
        insert_rows(Conn::Sqlite(&conn), "t", "a, b", 2, &values, Some(&mut done)).unwrap();
        assert_eq!(done.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![256, 256, 64, 16, 8]);
        assert_eq!(
            done.iter().map(|(last, _)| *last).collect::<Vec<_>>(),
            vec![256, 512, 576, 592, 600]
        );
        let mut statement = conn.prepare("SELECT id, a, b FROM t ORDER BY id").unwrap();
        let rows: Vec<(i64, i64, String)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 600);
        for (n, (id, a, b)) in rows.into_iter().enumerate() {
            assert_eq!((id, a, b), (n as i64 + 1, n as i64, format!("row {n}")));
        }
    }
}
