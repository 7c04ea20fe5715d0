//! The log's tree is hashed off the writer thread (`hasher.rs`): its stored nodes reach the
//! database after the entries. Roots and proofs are right whenever they are asked for, the
//! nodes are all written in the end, and those a crash took are written back on open.

use rusqlite::Connection;
use serde_json::json;
use stela_model::{DecodeMode, EntityType, decode_entity};
use stela_store::{SqliteStore, StoreError};

fn write_things(store: &SqliteStore, count: usize) {
    let thing = json!({"name": "t", "description": "d"});
    let input = decode_entity(EntityType::Thing, &thing, DecodeMode::Create).unwrap();
    store
        .write(1_700_000_000_000_000, |tx| {
            for _ in 0..count {
                tx.create(&input, None)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// The root recomputed from the entries alone.
fn root_from_entries(store: &SqliteStore) -> (u64, stela_log::Hash, stela_log::Hash) {
    store
        .read(|rx| {
            let size = rx.log_size()?;
            let mut tree = stela_log::MemoryTree::new();
            for entry in rx.log_entries(0, size)? {
                tree.append_entry(entry.as_bytes()).unwrap();
            }
            Ok((size, tree.root(), rx.log_root(size)?))
        })
        .unwrap()
}

fn stored_nodes(path: &std::path::Path, level: i64) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log_nodes WHERE level = ?1", [level], |r| r.get(0))
        .unwrap()
}

#[test]
fn roots_are_right_before_and_after_the_nodes_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stela.db");
    let store = SqliteStore::open(&path).unwrap();
    for count in [300, 1, 700, 50] {
        write_things(&store, count);
        // Whatever the hasher has written so far, the root is the entries' root.
        let (size, expected, stored) = root_from_entries(&store);
        assert_eq!(stored, expected, "root of {size}");
    }
    store.sync_log().unwrap();
    assert_eq!(stored_nodes(&path, 8), 1051 / 256);
    let (_, expected, stored) = root_from_entries(&store);
    assert_eq!(stored, expected);
    // Inclusion proofs of entries whose tiles' nodes are stored and not stored both verify.
    store
        .read(|rx| {
            let size = rx.log_size()?;
            let root = rx.log_root(size)?;
            for index in [0, 255, 256, 1000, size - 1] {
                let entry = rx.log_entries(index, 1)?.remove(0);
                let proof = rx.inclusion_proof(index, size)?;
                let leaf = stela_log::leaf_hash(entry.as_bytes());
                stela_log::verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn nodes_a_crash_took_are_written_back_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stela.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        write_things(&store, 600);
        write_things(&store, 600);
        // Closed without a later commit or checkpoint: the nodes hashed last are not written.
    }
    assert!(stored_nodes(&path, 8) < 1200 / 256, "the test needs nodes left unwritten");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(stored_nodes(&path, 8), 1200 / 256);
    let (_, expected, stored) = root_from_entries(&store);
    assert_eq!(stored, expected);
    write_things(&store, 100);
    store.sync_log().unwrap();
    let (_, expected, stored) = root_from_entries(&store);
    assert_eq!(stored, expected);
    let audit = store
        .read(|rx| {
            let key = stela_log::SignerKey::from_seed("test", &[7; 32]).unwrap();
            rx.audit_log(&key.verifier_key())
        })
        .unwrap();
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);
}
