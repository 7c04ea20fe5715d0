//! Ingest marks: per journal (a "source"), the highest journal sequence number whose writes
//! are committed.
//!
//! ```text
//!   MQTT journal ─► batch of messages ..= seq ─► one write transaction:
//!                      create the Observations + advance_ingest_mark(source, seq) ─► COMMIT
//!   after a crash ─► ingest_mark(source) ─► replay only what lies after it
//! ```
//!
//! The mark is advanced in the transaction that creates the rows, so both commit or neither
//! does: replaying the journal from the mark creates each message exactly once. Marks are
//! bookkeeping, not entities: no log entry, no change event.

use rusqlite::params;

use crate::StoreError;
use crate::sqlite::{ReadTx, WriteTx};

impl WriteTx<'_> {
    /// Advances the mark of `source` to `seq`; a lower `seq` than the stored one leaves it as
    /// it is (several batches of one journal may share a transaction, in any order).
    pub fn advance_ingest_mark(&mut self, source: &str, seq: u64) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).map_err(|_| {
            StoreError::Invalid(format!("the ingest mark {seq} is larger than the store holds"))
        })?;
        self.conn.execute(
            "INSERT INTO ingest_marks (source, seq) VALUES (?1, ?2)
             ON CONFLICT (source) DO UPDATE SET seq = excluded.seq
             WHERE excluded.seq > ingest_marks.seq",
            params![source, seq],
        )?;
        Ok(())
    }
}

impl ReadTx<'_> {
    /// The mark of `source`: the highest sequence number committed; `None` when the store has
    /// never heard of `source` (a journal registers itself with a mark of 0 when it is created,
    /// so that a store it did not feed can be told from one it did).
    pub fn ingest_mark(&self, source: &str) -> Result<Option<u64>, StoreError> {
        let seq: Option<i64> = self.conn.query_opt(
            "SELECT seq FROM ingest_marks WHERE source = ?1",
            params![source],
            |row| row.get(0),
        )?;
        seq.map(|seq| {
            u64::try_from(seq)
                .map_err(|_| StoreError::Corrupt(format!("the ingest mark of {source} is {seq}")))
        })
        .transpose()
    }
}
