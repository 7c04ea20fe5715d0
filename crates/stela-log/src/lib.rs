//! The verifiable Merkle log core of Stela: ITU-T Y.4561's "data blockchain representation"
//! in the formats of the transparency-log world (RFC 6962/9162 trees, C2SP checkpoints,
//! signed notes and tiles), so that existing tools can check Stela's log.
//!
//! Pure: no I/O, no clock, no randomness, no database. Time arrives as a string in
//! [`LogEntry::committed_at`], keys arrive as bytes, stored hashes arrive through
//! [`HashReader`].
//!
//! ```text
//!  SERVER (write path)                          STORE                 ANYONE (verify path)
//!
//!  LogEntry
//!    │ to_canonical_json (RFC 8785 JCS)
//!    ▼
//!  bytes ─► leaf_hash ─► Appender::append ──(NodeId, Hash)…──► perfect
//!                         ▲       │ root                       subtree
//!                         │       ▼                            hashes
//!      Appender::restore ─┘  Checkpoint                          │
//!      (size, right edge)     │ to_text                          │ HashReader
//!                             ▼                                  ▼
//!                     sign_note(SignerKey)       inclusion_proof(s), consistency_proof,
//!                             │                  tree_root, read_tile ─► tile/<L>/<N>
//!                             ▼                                  │
//!                  Receipt { entries, proofs, tree_size, checkpoint note }
//!                             │
//!                             ▼
//!  verify_receipt(VerifierKey): open_note ─► Checkpoint::parse ─► leaf_hash
//!                               ─► verify_inclusion (RFC 9162 §2.1.3.2)
//!  witnesses, monitors:         verify_consistency (§2.1.4.2),
//!                               root_from_tiles / TileHashReader over fetched tiles
//! ```
//!
//! One write, one checkpoint, one receipt, verified offline:
//!
//! ```
//! use stela_log::{
//!     Checkpoint, LogEntry, MemoryTree, Receipt, ReceiptEntry, SignerKey, inclusion_proof,
//!     sign_note, verify_receipt,
//! };
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The server: canonical entry → leaf → tree (a database-backed HashReader in Stela).
//! let entry = LogEntry::delete("Thing", 7, "2026-11-02T10:00:00Z", "").to_canonical_json()?;
//! let mut tree = MemoryTree::new();
//! let index = tree.append_entry(entry.as_bytes())?;
//! let signer = SignerKey::from_seed("stela.example/log", &[1; 32])?; // key bytes from config
//! let checkpoint = Checkpoint {
//!     origin: "stela.example/log".into(),
//!     size: tree.size(),
//!     root: tree.root(),
//!     extensions: vec![],
//! };
//! let note = sign_note(&checkpoint.to_text()?, &[&signer])?;
//! let proof = inclusion_proof(index, tree.size(), &tree)?;
//! let receipt = Receipt {
//!     entries: vec![ReceiptEntry::new(index, entry, &proof)],
//!     tree_size: tree.size(),
//!     checkpoint: note,
//! };
//!
//! // Anyone holding the log's verifier key, later and offline.
//! let verified = verify_receipt(&receipt, &signer.verifier_key())?;
//! assert_eq!(verified.entries[0].entry.entity_id, 7);
//! # Ok(())
//! # }
//! ```
//!
//! Module map: [`hash`] (leaf/node hashing), [`node`] (perfect-subtree addresses),
//! [`appender`] (write side), [`proof`] (read side), [`verify`] (RFC 9162 verifiers),
//! [`memory`] (in-memory tree), [`checkpoint`], [`note`], [`tile`], [`entry`], [`receipt`].
//!
//! **Invariant**: the store only ever holds hashes of *perfect* subtrees; they never change
//! once written, and tlog tiles are cut from them directly. Nodes on the right edge of a tree
//! size are recomputed on every read.
//!
//! **API boundary**: everything that takes bytes from outside (proofs, notes, keys, paths,
//! bundles, receipts) returns an error instead of panicking, and every error maps to an
//! [`ErrorCode`].

pub mod appender;
pub mod checkpoint;
pub mod entry;
pub mod error;
pub mod hash;
pub mod jcs;
pub mod memory;
pub mod node;
pub mod note;
pub mod proof;
pub mod receipt;
pub mod tile;
pub mod verify;

pub use appender::{AppendError, Appended, Appender};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use entry::{
    EntryEnvelope, EntryError, LogEntry, Operation, canonical_entity_entry, canonical_entry,
    check_body_member,
};
pub use error::ErrorCode;
pub use hash::{EMPTY_ROOT, HASH_SIZE, Hash, leaf_hash, node_hash};
pub use memory::{MemoryTree, MissingNode};
pub use node::NodeId;
pub use note::{
    KeyError, Note, NoteError, NoteSignature, OpenedNote, SignerKey, VerifierKey, open_note,
    sign_note,
};
pub use proof::{
    HashReader, RangeError, TreeError, consistency_proof, consistency_proof_node_ids,
    inclusion_proof, inclusion_proof_node_ids, inclusion_proofs, tree_root, tree_root_node_ids,
};
pub use receipt::{
    Receipt, ReceiptEntry, VerifiedEntry, VerifiedReceipt, VerifyError, verify_receipt,
};
pub use tile::{
    EntryBundleId, TileError, TileFetchError, TileHashReader, TileId, TilePath,
    decode_entry_bundle, encode_entry_bundle, entry_bundles_for_growth, parse_tile_path, read_tile,
    root_from_tiles, tiles_for_growth,
};
pub use verify::{ProofError, root_from_inclusion_proof, verify_consistency, verify_inclusion};

/// Re-exported so callers build keys with the same `ed25519-dalek` version.
pub use ed25519_dalek;
