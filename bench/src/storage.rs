//! What the Observations cost on disk, read from the database file once the server has stopped:
//! the WAL folded in, then the bytes of every table and index (SQLite's `dbstat`).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// Bytes of one table or index.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectSize {
    pub name: String,
    pub bytes: u64,
}

/// Folds the WAL of the database at `path` into it, then lists its tables and indexes by size.
/// Only for a database no server has open.
pub fn inspect(path: &Path) -> Result<Vec<ObjectSize>, rusqlite::Error> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let mut statement = conn
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC")?;
    let rows = statement.query_map([], |row| {
        Ok(ObjectSize { name: row.get(0)?, bytes: row.get::<_, i64>(1)?.max(0) as u64 })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_tables_and_indexes_by_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE big (id INTEGER PRIMARY KEY, text TEXT);
                 CREATE INDEX big_by_text ON big(text);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO big (text) SELECT printf('row %d of the test table', i) FROM n;",
            )
            .expect("fill");
        }
        let sizes = inspect(&path).expect("inspect");
        // Both the table and its index are listed with their pages, largest first.
        assert!(sizes.iter().any(|s| s.name == "big" && s.bytes > 0), "{sizes:?}");
        assert!(sizes.iter().any(|s| s.name == "big_by_text" && s.bytes > 0), "{sizes:?}");
        assert!(sizes.windows(2).all(|pair| pair[0].bytes >= pair[1].bytes), "{sizes:?}");
    }
}
