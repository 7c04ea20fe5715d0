//! The verifiable Merkle log core of Stela: ITU-T Y.4561's "data blockchain representation"
//! in the formats of the transparency-log world (RFC 6962/9162 trees, C2SP checkpoints,
//! signed notes and tiles), so that existing tools can check Stela's log.
//!
//! Pure: no I/O, no clock, no randomness, no database. Time arrives as a string in
//! [`LogEntry::committed_at`], keys arrive as bytes, stored hashes arrive through
//! [`HashReader`].
//!
//! ```text
//!   write path (server)                              read / verify path (anyone)
//!   ───────────────────                              ───────────────────────────
//!   LogEntry ──to_canonical_json (RFC 8785)──► bytes ──leaf_hash──► Hash
//!                                                                    │
//!   Appender::restore(size, right edge)                              │
//!        │ append(&[Hash])                                           │
//!        ▼                                                           │
//!   Appended { nodes: (NodeId, Hash)…, root } ──persist──► store of perfect subtrees
//!        │                                                  │ HashReader::read_hashes
//!        │                                                  ▼
//!        │                         tree_root / inclusion_proof(s) / consistency_proof
//!        │                         read_tile (tile/<L>/<N>)      │
//!        ▼                                                        ▼
//!   Checkpoint { origin, size, root } ──sign_note(SignerKey)──► signed note
//!                                                                 │
//!   Receipt { entries + proofs, tree_size, checkpoint } ◄─────────┘
//!        │
//!        └─verify_receipt(VerifierKey)──► open_note ─► Checkpoint::parse
//!                                          ─► verify_inclusion (RFC 9162 §2.1.3.2)
//!   witnesses / monitors: verify_consistency (RFC 9162 §2.1.4.2),
//!                         root_from_tiles / TileHashReader over fetched tiles
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
pub mod memory;
pub mod node;
pub mod note;
pub mod proof;
pub mod receipt;
pub mod tile;
pub mod verify;

pub use appender::{AppendError, Appended, Appender};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use entry::{EntryError, LogEntry, Operation};
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
