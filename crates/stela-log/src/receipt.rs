//! Receipts: what a client keeps after a write to check, offline and later, that its entries
//! are in the log the server's key vouches for.
//!
//! ```text
//! Receipt ─┬─ checkpoint (signed note) ──open_note(key)──► Checkpoint { origin, size, root }
//!          ├─ tree_size ───────────────── must equal checkpoint.size
//!          └─ entries[i] ─ entry (canonical JSON) ─leaf_hash─┐
//!                        ─ leaf_index, inclusion_proof ──────┴─verify_inclusion─► root?
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError, decode_hash_base64};
use crate::entry::{EntryError, LogEntry};
use crate::error::ErrorCode;
use crate::hash::{Hash, leaf_hash};
use crate::note::{NoteError, VerifierKey, open_note};
use crate::verify::{ProofError, verify_inclusion};

/// Evidence that entries are in a signed tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The entries, each with its inclusion proof in the tree of `tree_size`.
    pub entries: Vec<ReceiptEntry>,
    /// Size of the tree the proofs are for; equals the checkpoint's size.
    pub tree_size: u64,
    /// The signed checkpoint note, as served at `<prefix>/checkpoint`.
    pub checkpoint: String,
}

/// One logged entry and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptEntry {
    /// The entry's leaf index.
    pub leaf_index: u64,
    /// The entry's canonical JSON, exactly the bytes that were hashed.
    pub entry: String,
    /// Base64 hashes of the RFC 9162 inclusion proof, nearest the leaf first.
    pub inclusion_proof: Vec<String>,
}

/// A receipt whose every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedReceipt {
    /// The verified checkpoint (origin, size, root).
    pub checkpoint: Checkpoint,
    /// The entries, parsed, in receipt order.
    pub entries: Vec<VerifiedEntry>,
}

/// One entry of a [`VerifiedReceipt`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEntry {
    /// Its leaf index.
    pub leaf_index: u64,
    /// The parsed entry.
    pub entry: LogEntry,
}

/// Which check of a receipt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The checkpoint note is malformed or not signed by the key.
    #[error("checkpoint signature: {0}")]
    Signature(#[source] NoteError),
    /// The signed text is not a checkpoint.
    #[error("checkpoint body: {0}")]
    Checkpoint(#[source] CheckpointError),
    /// The receipt's tree size differs from the checkpoint's.
    #[error("receipt is for tree size {receipt} but the checkpoint is for size {checkpoint}")]
    TreeSizeMismatch {
        /// `Receipt::tree_size`.
        receipt: u64,
        /// The checkpoint's size.
        checkpoint: u64,
    },
    /// The receipt lists no entries, so it proves nothing.
    #[error("receipt has no entries")]
    NoEntries,
    /// An inclusion-proof element is not the base64 of 32 bytes.
    #[error("entry {entry}: inclusion proof element {element} is not a base64 32-byte hash")]
    ProofEncoding {
        /// Position of the entry in the receipt (0-based).
        entry: usize,
        /// Position of the element in its proof (0-based).
        element: usize,
    },
    /// An entry is not a canonical log entry.
    #[error("entry {entry}: {source}")]
    Entry {
        /// Position of the entry in the receipt (0-based).
        entry: usize,
        /// What is wrong with it.
        source: EntryError,
    },
    /// An inclusion proof does not lead to the checkpoint's root.
    #[error("entry {entry} (leaf {leaf_index}): inclusion proof: {source}")]
    Inclusion {
        /// Position of the entry in the receipt (0-based).
        entry: usize,
        /// Its claimed leaf index.
        leaf_index: u64,
        /// Which proof check failed.
        source: ProofError,
    },
}

impl VerifyError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            VerifyError::Signature(note) => note.code(),
            VerifyError::Checkpoint(checkpoint) => checkpoint.code(),
            VerifyError::Entry { source, .. } => source.code(),
            VerifyError::ProofEncoding { .. } | VerifyError::NoEntries => ErrorCode::Malformed,
            VerifyError::TreeSizeMismatch { .. } | VerifyError::Inclusion { .. } => {
                ErrorCode::VerificationFailed
            }
        }
    }
}

impl ReceiptEntry {
    /// An entry of a receipt from its canonical JSON, leaf index and proof.
    pub fn new(leaf_index: u64, entry: String, inclusion_proof: &[Hash]) -> ReceiptEntry {
        ReceiptEntry {
            leaf_index,
            entry,
            inclusion_proof: inclusion_proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
        }
    }
}

/// Checks a receipt: the note is signed by `key`, its text is a checkpoint of
/// `receipt.tree_size`, and every entry is canonical and included under the checkpoint's
/// root. The first failure is returned, naming the entry and the check.
pub fn verify_receipt(
    receipt: &Receipt,
    key: &VerifierKey,
) -> Result<VerifiedReceipt, VerifyError> {
    let note = open_note(&receipt.checkpoint, std::slice::from_ref(key))
        .map_err(VerifyError::Signature)?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(VerifyError::Checkpoint)?;
    if checkpoint.size != receipt.tree_size {
        return Err(VerifyError::TreeSizeMismatch {
            receipt: receipt.tree_size,
            checkpoint: checkpoint.size,
        });
    }
    if receipt.entries.is_empty() {
        return Err(VerifyError::NoEntries);
    }
    let mut entries = Vec::with_capacity(receipt.entries.len());
    for (position, item) in receipt.entries.iter().enumerate() {
        let proof = item
            .inclusion_proof
            .iter()
            .enumerate()
            .map(|(element, text)| {
                decode_hash_base64(text)
                    .ok_or(VerifyError::ProofEncoding { entry: position, element })
            })
            .collect::<Result<Vec<Hash>, VerifyError>>()?;
        let leaf = leaf_hash(item.entry.as_bytes());
        verify_inclusion(&leaf, item.leaf_index, checkpoint.size, &proof, &checkpoint.root)
            .map_err(|source| VerifyError::Inclusion {
                entry: position,
                leaf_index: item.leaf_index,
                source,
            })?;
        let entry = LogEntry::from_canonical_json(&item.entry)
            .map_err(|source| VerifyError::Entry { entry: position, source })?;
        entries.push(VerifiedEntry { leaf_index: item.leaf_index, entry });
    }
    Ok(VerifiedReceipt { checkpoint, entries })
}
